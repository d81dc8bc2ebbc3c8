//! The durable state: one SQLite file holding read positions, correlation state and the
//! incident record.
//!
//! **Invariant**: a read position advances only in the same transaction that records the
//! incidents (and correlation state) produced by the lines before it ([`Store::commit`]). After
//! a crash the lines after the last committed position are read again; their effects were
//! never committed, so they produce no duplicate incident and no double count.
//!
//! The schema is versioned with `PRAGMA user_version` and numbered migrations. The database is
//! in WAL mode so that `sentinela incidents` and `sentinela state` can read it while the daemon
//! writes.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::incident::{Evidence, Incident};
use crate::source::Position;
use crate::ticket::lifecycle::{Operation, TicketRecord};
use crate::timestamp::{now_millis, Millis};

/// File name of the state database inside the state directory.
pub const STATE_FILE: &str = "state.db";

/// Numbered migrations; migration `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: positions, incidents, correlation state.
    "CREATE TABLE positions (
        stream     TEXT PRIMARY KEY,
        source     TEXT NOT NULL,
        position   TEXT NOT NULL,
        updated_at INTEGER NOT NULL
     );
     CREATE TABLE incidents (
        fingerprint TEXT PRIMARY KEY,
        detector    TEXT NOT NULL,
        title       TEXT NOT NULL,
        category    TEXT NOT NULL,
        severity    TEXT NOT NULL,
        criticality TEXT NOT NULL,
        priority    TEXT NOT NULL,
        count       INTEGER NOT NULL,
        first_seen  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL,
        fields      TEXT NOT NULL,
        key         TEXT NOT NULL,
        source      TEXT NOT NULL,
        evidence    TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
     );
     CREATE INDEX incidents_last_seen ON incidents(last_seen);
     CREATE TABLE correlation (
        detector TEXT NOT NULL,
        key      TEXT NOT NULL,
        state    TEXT NOT NULL,
        PRIMARY KEY (detector, key)
     );",
    // 2: ticket records and the outbox.
    "CREATE TABLE tickets (
        fingerprint TEXT NOT NULL,
        helpdesk    TEXT NOT NULL,
        record      TEXT NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (fingerprint, helpdesk)
     );
     CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        helpdesk        TEXT NOT NULL,
        fingerprint     TEXT NOT NULL,
        operation       TEXT NOT NULL,
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
     );
     CREATE INDEX outbox_due ON outbox(helpdesk, state, next_attempt_at);
     CREATE INDEX outbox_fingerprint ON outbox(helpdesk, fingerprint, id);",
    // 3: the help desk's own `Retry-After`, which an early wake-up must not override.
    "ALTER TABLE outbox ADD COLUMN hold_until INTEGER NOT NULL DEFAULT 0;",
];

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("state database {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored value could not be decoded.
    #[error("state database {}: corrupt {what}: {detail}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which value.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The database was written by a newer version of sentinela.
    #[error("state database {} has schema version {found}; this sentinela knows up to {known}: upgrade sentinela", path.display())]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Highest version this build knows.
        known: i64,
    },
}

/// A stored read position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredPosition {
    /// Stream id (`file:<fingerprint>`, `journald:<name>`).
    pub stream: String,
    /// Source name from the config.
    pub source: String,
    /// The position.
    pub position: Position,
    /// When it was last committed.
    pub updated_at: Millis,
}

/// A saved correlation state: detector id, key values and the state as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCorrelation {
    /// Detector id.
    pub detector: String,
    /// Key values, JSON array.
    pub key: String,
    /// The state, JSON (see [`crate::correlate`]).
    pub state: String,
}

/// Everything one commit writes, atomically.
#[derive(Debug, Default)]
pub struct Commit<'a> {
    /// (stream, source name, position) to store.
    pub positions: Vec<(String, String, Position)>,
    /// Incidents to insert or update.
    pub incidents: Vec<&'a Incident>,
    /// Correlation states to store (`Some(state)`) or delete (`None`): (detector, key, state).
    pub correlation: Vec<(String, String, Option<String>)>,
    /// Ticket records to store.
    pub tickets: Vec<TicketRecord>,
    /// Operations to queue: (help desk, fingerprint, operation).
    pub outbox: Vec<(String, String, Operation)>,
}

impl Commit<'_> {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
            && self.incidents.is_empty()
            && self.correlation.is_empty()
            && self.tickets.is_empty()
            && self.outbox.is_empty()
    }
}

/// One queued ticket operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    /// Queue id (order of queueing).
    pub id: i64,
    /// Help desk name.
    pub helpdesk: String,
    /// Incident fingerprint (or digest key).
    pub fingerprint: String,
    /// What to do.
    pub operation: Operation,
    /// `pending`, `blocked` (needs an operator), `done`, `dropped`.
    pub state: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Not before this time (ms).
    pub next_attempt_at: Millis,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was queued (ms).
    pub created_at: Millis,
}

#[derive(Serialize, Deserialize)]
struct EvidenceRow {
    first: Vec<String>,
    last: VecDeque<String>,
    omitted: u64,
    cap: usize,
}

/// The state store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the state database in `dir` and migrates it.
    pub fn open_dir(dir: &Path) -> Result<Store, StateError> {
        Store::open(&dir.join(STATE_FILE))
    }

    /// Opens (creating if needed) the state database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Store, StateError> {
        let conn = Connection::open(path).map_err(|e| sqlite(path, e))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing database read-only (for `sentinela state` / `incidents` while the
    /// daemon runs). Use [`Store::open`] for operator changes (`sentinela outbox retry`).
    pub fn open_read_only(path: &Path) -> Result<Store, StateError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sqlite(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| sqlite(path, e))?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        let v = store.version()?;
        if v > MIGRATIONS.len() as i64 {
            return Err(StateError::TooNew {
                path: path.to_path_buf(),
                found: v,
                known: MIGRATIONS.len() as i64,
            });
        }
        Ok(store)
    }

    fn err(&self, e: rusqlite::Error) -> StateError {
        sqlite(&self.path, e)
    }

    fn configure(&self) -> Result<(), StateError> {
        self.conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| self.err(e))?;
        // WAL: readers never block the daemon; synchronous=FULL: a committed position
        // survives power loss, not only a process crash.
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| self.err(e))?;
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The schema version in the file.
    pub fn version(&self) -> Result<i64, StateError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let current = self.version()?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StateError::TooNew {
                path: self.path.clone(),
                found: current,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = self.conn.transaction().map_err(|e| sqlite(&self.path, e))?;
            tx.execute_batch(sql).map_err(|e| sqlite(&self.path, e))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| sqlite(&self.path, e))?;
            tx.commit().map_err(|e| sqlite(&self.path, e))?;
        }
        Ok(())
    }

    /// Writes positions, incidents and correlation state in one transaction.
    pub fn commit(&mut self, c: &Commit<'_>) -> Result<(), StateError> {
        if c.is_empty() {
            return Ok(());
        }
        let now = now_millis();
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut pos = tx
                .prepare_cached(
                    "INSERT INTO positions (stream, source, position, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(stream) DO UPDATE SET source = ?2, position = ?3, updated_at = ?4",
                )
                .map_err(e)?;
            for (stream, source, p) in &c.positions {
                let json = serde_json::to_string(p).expect("positions serialize");
                pos.execute(params![stream, source, json, now]).map_err(e)?;
            }
            let mut inc = tx
                .prepare_cached(
                    "INSERT INTO incidents (fingerprint, detector, title, category, severity, criticality,
                        priority, count, first_seen, last_seen, fields, key, source, evidence,
                        created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15)
                     ON CONFLICT(fingerprint) DO UPDATE SET title = ?3, category = ?4, severity = ?5,
                        criticality = ?6, priority = ?7, count = ?8, first_seen = ?9, last_seen = ?10,
                        fields = ?11, key = ?12, source = ?13, evidence = ?14, updated_at = ?15",
                )
                .map_err(e)?;
            for i in &c.incidents {
                let ev = EvidenceRow {
                    first: i.evidence.first.clone(),
                    last: i.evidence.last.clone(),
                    omitted: i.evidence.omitted,
                    cap: i.evidence.cap(),
                };
                inc.execute(params![
                    i.fingerprint,
                    i.detector,
                    i.title,
                    i.category.as_str(),
                    i.severity.as_str(),
                    i.criticality.as_str(),
                    i.priority.to_string(),
                    i.count as i64,
                    i.first_seen,
                    i.last_seen,
                    serde_json::to_string(&i.fields).expect("fields serialize"),
                    serde_json::to_string(&i.key).expect("key serializes"),
                    i.source,
                    serde_json::to_string(&ev).expect("evidence serializes"),
                    now,
                ])
                .map_err(e)?;
            }
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO correlation (detector, key, state) VALUES (?1, ?2, ?3)
                     ON CONFLICT(detector, key) DO UPDATE SET state = ?3",
                )
                .map_err(e)?;
            let mut del = tx
                .prepare_cached("DELETE FROM correlation WHERE detector = ?1 AND key = ?2")
                .map_err(e)?;
            for (det, key, state) in &c.correlation {
                match state {
                    Some(s) => put.execute(params![det, key, s]).map_err(e)?,
                    None => del.execute(params![det, key]).map_err(e)?,
                };
            }
            let mut tk = tx
                .prepare_cached(
                    "INSERT INTO tickets (fingerprint, helpdesk, record, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(fingerprint, helpdesk) DO UPDATE SET record = ?3, updated_at = ?4",
                )
                .map_err(e)?;
            let mut cur = tx
                .prepare_cached(
                    "SELECT record FROM tickets WHERE fingerprint = ?1 AND helpdesk = ?2",
                )
                .map_err(e)?;
            for r in &c.tickets {
                // The delivery worker owns the help desk's ticket ids: keep them when the
                // pipeline's copy of the record does not know them yet.
                let stored: Option<String> = cur
                    .query_row(params![r.fingerprint, r.helpdesk], |row| row.get(0))
                    .optional()
                    .map_err(e)?;
                let mut r = r.clone();
                if let Some(old) =
                    stored.and_then(|j| serde_json::from_str::<TicketRecord>(&j).ok())
                {
                    if r.ticket_ref.is_none() {
                        r.ticket_ref = old.ticket_ref;
                        r.previous_ref = old.previous_ref;
                    }
                }
                let json = serde_json::to_string(&r).expect("records serialize");
                tk.execute(params![r.fingerprint, r.helpdesk, json, now])
                    .map_err(e)?;
            }
            let mut ob = tx
                .prepare_cached(
                    "INSERT INTO outbox (helpdesk, fingerprint, operation, state, next_attempt_at, created_at, updated_at)
                     VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?4)",
                )
                .map_err(e)?;
            for (hd, fp, op) in &c.outbox {
                let json = serde_json::to_string(op).expect("operations serialize");
                ob.execute(params![hd, fp, json, now]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// Every ticket record of a help desk.
    pub fn tickets(&self, helpdesk: &str) -> Result<Vec<TicketRecord>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT record FROM tickets WHERE helpdesk = ?1")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([helpdesk], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(self.decode("ticket record", &r.map_err(|e| self.err(e))?)?);
        }
        Ok(out)
    }

    /// The ticket record of one fingerprint in one help desk.
    pub fn ticket(
        &self,
        helpdesk: &str,
        fingerprint: &str,
    ) -> Result<Option<TicketRecord>, StateError> {
        let raw: Option<String> = self
            .conn
            .query_row(
                "SELECT record FROM tickets WHERE helpdesk = ?1 AND fingerprint = ?2",
                [helpdesk, fingerprint],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        raw.map(|r| self.decode("ticket record", &r)).transpose()
    }

    /// Operations due for delivery: pending, due by `now`, and not behind an earlier
    /// undelivered operation of the same fingerprint (a comment waits for its create).
    pub fn due_operations(
        &self,
        helpdesk: &str,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StateError> {
        self.outbox_query(
            "WHERE o.helpdesk = ?1 AND o.state = 'pending' AND o.next_attempt_at <= ?2
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.helpdesk = o.helpdesk
                   AND p.fingerprint = o.fingerprint AND p.id < o.id AND p.state IN ('pending', 'blocked'))
             ORDER BY o.id LIMIT ?3",
            params![helpdesk, now, limit as i64],
        )
    }

    /// Operations in a state (`pending`, `blocked`, `done`, `dropped`), or all with `None`.
    pub fn outbox(&self, state: Option<&str>) -> Result<Vec<OutboxRow>, StateError> {
        match state {
            Some(s) => self.outbox_query("WHERE o.state = ?1 ORDER BY o.id", params![s]),
            None => self.outbox_query("ORDER BY o.id", params![]),
        }
    }

    /// Makes every pending operation of `helpdesk` that waits for a retry due now (the help
    /// desk is back after an outage), but never before the help desk's own `Retry-After`.
    /// Returns how many changed.
    pub fn expedite(&mut self, helpdesk: &str) -> Result<usize, StateError> {
        let now = now_millis();
        self.conn
            .execute(
                "UPDATE outbox SET next_attempt_at = max(?2, hold_until)
                 WHERE helpdesk = ?1 AND state = 'pending' AND next_attempt_at > max(?2, hold_until)",
                params![helpdesk, now],
            )
            .map_err(|e| self.err(e))
    }

    /// The earliest time a pending operation of `helpdesk` becomes due.
    pub fn next_due(&self, helpdesk: &str) -> Result<Option<Millis>, StateError> {
        self.conn
            .query_row(
                "SELECT min(next_attempt_at) FROM outbox WHERE helpdesk = ?1 AND state = 'pending'",
                [helpdesk],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map_err(|e| self.err(e))
    }

    fn outbox_query(
        &self,
        tail: &str,
        p: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<OutboxRow>, StateError> {
        let sql = format!(
            "SELECT o.id, o.helpdesk, o.fingerprint, o.operation, o.state, o.attempts, o.next_attempt_at,
                    o.last_error, o.created_at FROM outbox o {tail}"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = st
            .query_map(p, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, i64>(8)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, helpdesk, fingerprint, op, state, attempts, next, last_error, created) =
                row.map_err(|e| self.err(e))?;
            out.push(OutboxRow {
                id,
                helpdesk,
                fingerprint,
                operation: self.decode("outbox operation", &op)?,
                state,
                attempts,
                next_attempt_at: next,
                last_error,
                created_at: created,
            });
        }
        Ok(out)
    }

    /// Marks an operation delivered and stores the ticket record it changed, atomically.
    pub fn complete_operation(
        &mut self,
        id: i64,
        record: Option<&TicketRecord>,
    ) -> Result<(), StateError> {
        let now = now_millis();
        let path = self.path.clone();
        let e = |err| sqlite(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            "UPDATE outbox SET state = 'done', attempts = attempts + 1, last_error = NULL, updated_at = ?2 WHERE id = ?1",
            params![id, now],
        )
        .map_err(e)?;
        if let Some(r) = record {
            // Merge into the current record: the pipeline may have updated its counters since
            // this operation was read; the worker owns only the ticket ids (and the opening
            // count when it replaced a closed ticket).
            let stored: Option<String> = tx
                .query_row(
                    "SELECT record FROM tickets WHERE fingerprint = ?1 AND helpdesk = ?2",
                    params![r.fingerprint, r.helpdesk],
                    |row| row.get(0),
                )
                .optional()
                .map_err(e)?;
            let merged = match stored.and_then(|j| serde_json::from_str::<TicketRecord>(&j).ok()) {
                Some(mut cur) => {
                    if cur.previous_ref != r.previous_ref {
                        cur.opened_count = r.opened_count;
                        cur.escalations = r.escalations;
                    }
                    cur.ticket_ref.clone_from(&r.ticket_ref);
                    cur.previous_ref.clone_from(&r.previous_ref);
                    cur.last_update_at = cur.last_update_at.max(r.last_update_at);
                    cur
                }
                None => r.clone(),
            };
            let json = serde_json::to_string(&merged).expect("records serialize");
            tx.execute(
                "INSERT INTO tickets (fingerprint, helpdesk, record, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(fingerprint, helpdesk) DO UPDATE SET record = ?3, updated_at = ?4",
                params![merged.fingerprint, merged.helpdesk, json, now],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    /// Records a failed attempt: `Some(next)` reschedules it, `None` blocks it until an
    /// operator retries it. `hold_until` is the time the help desk itself asked us to wait
    /// for (`Retry-After`): [`Store::expedite`] never makes the operation due before it.
    pub fn fail_operation(
        &mut self,
        id: i64,
        next: Option<Millis>,
        hold_until: Option<Millis>,
        error: &str,
    ) -> Result<(), StateError> {
        let now = now_millis();
        let (state, next) = match next {
            Some(n) => ("pending", n),
            None => ("blocked", now),
        };
        self.conn
            .execute(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3, last_error = ?4,
                    updated_at = ?5, hold_until = ?6 WHERE id = ?1",
                params![id, state, next, error, now, hold_until.unwrap_or(0)],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Operator action: make blocked (or pending) operations due now; `None` = every blocked
    /// one. Returns how many changed.
    pub fn retry_operations(&mut self, id: Option<i64>) -> Result<usize, StateError> {
        let now = now_millis();
        let n = match id {
            Some(id) => self.conn.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?2, updated_at = ?2
                 WHERE id = ?1 AND state IN ('pending', 'blocked')",
                params![id, now],
            ),
            None => self.conn.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?1, updated_at = ?1 WHERE state = 'blocked'",
                params![now],
            ),
        };
        n.map_err(|e| self.err(e))
    }

    /// Operator action: give up on an operation (kept, marked `dropped`).
    pub fn drop_operation(&mut self, id: i64) -> Result<usize, StateError> {
        self.conn
            .execute(
                "UPDATE outbox SET state = 'dropped', updated_at = ?2 WHERE id = ?1 AND state IN ('pending', 'blocked')",
                params![id, now_millis()],
            )
            .map_err(|e| self.err(e))
    }

    /// All stored positions.
    pub fn positions(&self) -> Result<Vec<StoredPosition>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT stream, source, position, updated_at FROM positions ORDER BY source, stream")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (stream, source, json, updated_at) = row.map_err(|e| self.err(e))?;
            out.push(StoredPosition {
                stream,
                source,
                position: self.decode("position", &json)?,
                updated_at,
            });
        }
        Ok(out)
    }

    /// Incidents whose last hit is at or after `since` (all with `None`), newest first.
    pub fn incidents(&self, since: Option<Millis>) -> Result<Vec<Incident>, StateError> {
        self.recent_incidents(since, usize::MAX)
    }

    /// Like [`Store::incidents`], at most `limit` of them (the most recent): what the daemon
    /// keeps in memory at start-up.
    pub fn recent_incidents(
        &self,
        since: Option<Millis>,
        limit: usize,
    ) -> Result<Vec<Incident>, StateError> {
        self.query_incidents(
            "WHERE last_seen >= ?1 ORDER BY last_seen DESC, fingerprint LIMIT ?2",
            params![
                since.unwrap_or(i64::MIN),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    /// The incident with this fingerprint, if recorded.
    pub fn incident(&self, fingerprint: &str) -> Result<Option<Incident>, StateError> {
        Ok(self
            .query_incidents("WHERE fingerprint = ?1", params![fingerprint])?
            .pop())
    }

    fn query_incidents(
        &self,
        tail: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Incident>, StateError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT fingerprint, detector, title, category, severity, criticality, priority,
                        count, first_seen, last_seen, fields, key, source, evidence
                 FROM incidents {tail}"
            ))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(args, |r| {
                Ok((
                    (
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                    ),
                    (
                        r.get::<_, i64>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, i64>(9)?,
                        r.get::<_, String>(10)?,
                        r.get::<_, String>(11)?,
                        r.get::<_, String>(12)?,
                        r.get::<_, String>(13)?,
                    ),
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (
                (fp, detector, title, cat, sev, crit, prio),
                (count, first, last, fields, key, source, ev),
            ) = row.map_err(|e| self.err(e))?;
            let ev: EvidenceRow = self.decode("evidence", &ev)?;
            out.push(Incident {
                fingerprint: fp,
                detector,
                title,
                category: self.decode_str("category", &cat)?,
                severity: self.decode_str("severity", &sev)?,
                criticality: self.decode_str("criticality", &crit)?,
                priority: self.decode_str("priority", &prio)?,
                count: count.max(0) as u64,
                first_seen: first,
                last_seen: last,
                fields: self.decode("fields", &fields)?,
                key: self.decode("key", &key)?,
                source,
                evidence: Evidence::from_parts(ev.first, ev.last, ev.omitted, ev.cap),
            });
        }
        Ok(out)
    }

    /// All saved correlation states.
    pub fn correlation(&self) -> Result<Vec<StoredCorrelation>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT detector, key, state FROM correlation")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(StoredCorrelation {
                    detector: r.get(0)?,
                    key: r.get(1)?,
                    state: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    fn decode<T: DeserializeOwned>(&self, what: &'static str, json: &str) -> Result<T, StateError> {
        serde_json::from_str(json).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            what,
            detail: e.to_string(),
        })
    }

    fn decode_str<T: DeserializeOwned>(
        &self,
        what: &'static str,
        s: &str,
    ) -> Result<T, StateError> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| {
            StateError::Corrupt {
                path: self.path.clone(),
                what,
                detail: e.to_string(),
            }
        })
    }

    /// Whether an incident with this fingerprint is recorded.
    pub fn has_incident(&self, fingerprint: &str) -> Result<bool, StateError> {
        self.conn
            .query_row(
                "SELECT 1 FROM incidents WHERE fingerprint = ?1",
                [fingerprint],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| self.err(e))
    }
}

fn sqlite(path: &Path, source: rusqlite::Error) -> StateError {
    StateError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{Category, Severity};
    use crate::policy::{Criticality, Priority};
    use std::collections::BTreeMap;

    fn incident(fp: &str, count: u64, last: Millis) -> Incident {
        let mut ev = Evidence::new(2);
        for i in 0..count {
            ev.push(format!("line {i}"));
        }
        let mut fields = BTreeMap::new();
        fields.insert("source.address".to_string(), "203.0.113.9".to_string());
        Incident {
            fingerprint: fp.into(),
            detector: "ssh.password-failure".into(),
            title: "t".into(),
            category: Category::IntrusionAttempts,
            severity: Severity::Medium,
            criticality: Criticality::High,
            priority: Priority::P3,
            count,
            first_seen: 1000,
            last_seen: last,
            fields,
            key: vec!["source.address".into()],
            source: "/var/log/auth.log".into(),
            evidence: ev,
        }
    }

    #[test]
    fn commits_round_trip_positions_incidents_and_correlation() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open_dir(dir.path()).unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len() as i64);
        let a = incident("aa", 7, 5000);
        let pos = Position::File {
            fingerprint: "f1".into(),
            path: "/var/log/auth.log".into(),
            offset: 42,
            dev: 1,
            ino: 2,
        };
        s.commit(&Commit {
            positions: vec![("file:f1".into(), "auth".into(), pos.clone())],
            incidents: vec![&a],
            correlation: vec![("ssh.x".into(), "[\"1.2.3.4\"]".into(), Some("{}".into()))],
            ..Commit::default()
        })
        .unwrap();
        drop(s);
        // Reopening (a restart) sees exactly what was committed.
        let s = Store::open_dir(dir.path()).unwrap();
        let p = s.positions().unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].position, pos);
        let got = s.incidents(None).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].count, 7);
        assert_eq!(got[0].evidence, a.evidence);
        assert_eq!(got[0].criticality, Criticality::High);
        assert_eq!(got[0].fields, a.fields);
        assert_eq!(s.correlation().unwrap().len(), 1);
        assert!(s.incidents(Some(6000)).unwrap().is_empty());
    }

    #[test]
    fn expedite_makes_only_that_help_desks_waiting_operations_due() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open_dir(dir.path()).unwrap();
        let op = || Operation::SetPriority {
            priority: crate::policy::Priority::P1,
        };
        s.commit(&Commit {
            outbox: vec![
                ("a".into(), "f1".into(), op()),
                ("a".into(), "f2".into(), op()),
                ("b".into(), "f3".into(), op()),
            ],
            ..Commit::default()
        })
        .unwrap();
        let now = now_millis();
        let rows = s.outbox(None).unwrap();
        for r in &rows {
            s.fail_operation(r.id, Some(now + 3_600_000), None, "down")
                .unwrap();
        }
        assert!(s.due_operations("a", now, 10).unwrap().is_empty());
        assert_eq!(s.expedite("a").unwrap(), 2);
        assert_eq!(s.due_operations("a", now_millis(), 10).unwrap().len(), 2);
        assert!(s.due_operations("b", now_millis(), 10).unwrap().is_empty());
        // Blocked operations stay blocked: only an operator retries them.
        s.fail_operation(rows[0].id, None, None, "401").unwrap();
        assert_eq!(s.expedite("a").unwrap(), 0);
        assert_eq!(s.due_operations("a", now_millis(), 10).unwrap().len(), 1);
        // A help desk's Retry-After holds: expedited to that time, not to now.
        let hold = now_millis() + 60_000;
        s.fail_operation(rows[1].id, Some(hold + 1_000), Some(hold), "429")
            .unwrap();
        assert_eq!(s.expedite("a").unwrap(), 1);
        assert!(s.due_operations("a", now_millis(), 10).unwrap().is_empty());
        assert_eq!(s.due_operations("a", hold, 10).unwrap().len(), 1);
    }

    #[test]
    fn updates_replace_and_deletes_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open_dir(dir.path()).unwrap();
        let a = incident("aa", 1, 1000);
        s.commit(&Commit {
            incidents: vec![&a],
            correlation: vec![("d".into(), "k".into(), Some("1".into()))],
            ..Commit::default()
        })
        .unwrap();
        let a2 = incident("aa", 9, 2000);
        s.commit(&Commit {
            incidents: vec![&a2],
            correlation: vec![("d".into(), "k".into(), None)],
            ..Commit::default()
        })
        .unwrap();
        let got = s.incidents(None).unwrap();
        assert_eq!((got.len(), got[0].count, got[0].last_seen), (1, 9, 2000));
        assert!(s.correlation().unwrap().is_empty());
    }

    #[test]
    fn a_failed_transaction_leaves_the_previous_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open_dir(dir.path()).unwrap();
        let pos = |o| Position::Journal {
            cursor: format!("c{o}"),
        };
        s.commit(&Commit {
            positions: vec![("journald:j".into(), "j".into(), pos(1))],
            ..Commit::default()
        })
        .unwrap();
        // Make the incidents insert fail inside the transaction.
        s.conn.execute_batch("DROP TABLE incidents").unwrap();
        let a = incident("bb", 1, 1);
        let r = s.commit(&Commit {
            positions: vec![("journald:j".into(), "j".into(), pos(2))],
            incidents: vec![&a],
            ..Commit::default()
        });
        assert!(r.is_err());
        assert_eq!(s.positions().unwrap()[0].position, pos(1));
    }

    #[test]
    fn a_newer_schema_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = Store::open(&path).unwrap_err().to_string();
        assert!(e.contains("schema version 99"), "{e}");
    }

    #[test]
    fn readers_see_commits_while_the_writer_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Store::open_dir(dir.path()).unwrap();
        let r = Store::open_read_only(&dir.path().join(STATE_FILE)).unwrap();
        assert!(r.incidents(None).unwrap().is_empty());
        let a = incident("cc", 3, 10);
        w.commit(&Commit {
            incidents: vec![&a],
            ..Commit::default()
        })
        .unwrap();
        assert_eq!(r.incidents(None).unwrap().len(), 1);
    }
}
