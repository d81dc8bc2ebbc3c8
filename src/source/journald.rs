//! The systemd journal, read by following `journalctl --output=json`.
//!
//! A subprocess rather than libsystemd: no C dependency, and journalctl already handles journal
//! rotation, vacuuming, new files in the directory and the file format versions of the system
//! it runs on. It needs systemd 236 or later (`--output-fields`).
//!
//! # Command
//!
//! `journalctl --output=json --all --follow --no-tail --merge --no-pager --output-fields=...`
//! plus `--directory=DIR` when configured, then where to start:
//!
//! - `--cursor=CURSOR` when a cursor is known (stored by the pipeline, or the last entry
//!   delivered before journalctl had to be restarted); the entry at the cursor, delivered
//!   before, is dropped when journalctl prints it first. Not `--after-cursor`: journalctl
//!   implements it by skipping two entries from the cursor position, so when the cursor's
//!   entry no longer matches (matches changed, other boot) the first new entry is lost;
//! - otherwise `start_at = "beginning"`: everything stored;
//! - otherwise (`end`): `--since=@T`, T the time [`run`] started, so entries written while
//!   journalctl was (re)starting are not lost.
//!
//! `--follow` alone limits journalctl to the current boot (and fails on a directory without
//! journal files): after a reboot the entries written between the last committed cursor and
//! the shutdown would be skipped, and `beginning` would mean "this boot". `--merge` lifts that
//! limit; it also makes journalctl read journals of other machines kept on this host
//! (systemd-journal-remote, `systemd-nspawn --link-journal`), whose lines carry their own
//! `_HOSTNAME`; a `_MACHINE_ID=` or `_HOSTNAME=` match restricts the source to one machine.
//! `--all` makes journalctl print fields longer than 4096 bytes instead of `null`. There is
//! no `--quiet`: its permission hints ("not seeing messages from other users") must reach the
//! log.
//!
//! The configured matches come last, after `--`, so none can be read as an option;
//! [`validate`] accepts `FIELD=value`, `+` (journalctl's OR) and absolute paths.
//!
//! journalctl is restarted when it exits, after a back-off of 1 s doubling up to 30 s (reset
//! once it delivers entries), resuming after the last cursor delivered. Its stderr is logged
//! with `tracing::warn`. It is killed when the source stops.
//!
//! # Line shape
//!
//! Each entry becomes `TIME HOST IDENT[PID]: MESSAGE`, the shape of a classic syslog line with
//! an RFC 3339 time, which the syslog-style detectors' header guard accepts:
//!
//! - TIME: `__REALTIME_TIMESTAMP` (microseconds since the epoch) as RFC 3339 UTC with
//!   microseconds, `2026-03-01T10:00:00.123456Z`; `-` if missing.
//! - HOST: `_HOSTNAME`, `-` if missing.
//! - IDENT: `SYSLOG_IDENTIFIER`, else `_COMM`, else `-`.
//! - PID: `_PID` (set by journald, not by the sender), else `SYSLOG_PID`; left out (`IDENT: `)
//!   when missing or not a number.
//! - MESSAGE: as bytes. journalctl prints a field as a string, as an array of byte values when
//!   it is not valid UTF-8, as an array of values when the entry has the field more than once
//!   (the first is used) and as `null` when it is missing or too long to print. Trailing
//!   newlines are removed and every other newline becomes a space, so one entry is one line
//!   and a message cannot forge a second line with its own header. A line longer than
//!   [`MAX_LINE_BYTES`] is cut (counted in `truncated_lines`).
//!
//! HOST and IDENT never contain whitespace, `[` or `]`, and do not end in `:` (such bytes become
//! `_`): a sender choosing its own identifier (`logger -t`, `SYSLOG_IDENTIFIER=`) cannot make
//! the header ambiguous.
//!
//! # Batches
//!
//! Entries are grouped while journalctl has more output ready, up to [`MAX_BATCH_ENTRIES`]
//! entries or [`MAX_BATCH_BYTES`]; `stream` and `name` are `journald:<name>`, `position` the
//! cursor of the batch's last entry. `_SYSTEMD_UNIT` becomes the `service.name` label, so a
//! batch holds entries of one unit only (a new batch starts when the unit changes).

use std::ffi::OsString;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use super::{Batch, Position};
use crate::config::{JournaldSourceConfig, StartAt};

/// A line (after its header) longer than this is cut.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// A batch holds at most this many entries.
pub const MAX_BATCH_ENTRIES: u64 = 1024;
/// A batch is sent once it holds this many bytes.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// journalctl output lines (one JSON entry each) longer than this are skipped and counted: a
/// field of several megabytes is not a log line.
pub const MAX_ENTRY_JSON_BYTES: usize = 8 << 20;
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The fields journalctl is asked to print (`__CURSOR` and `__REALTIME_TIMESTAMP` always are).
const FIELDS: &str = "MESSAGE,_HOSTNAME,SYSLOG_IDENTIFIER,_COMM,_PID,SYSLOG_PID,_SYSTEMD_UNIT";

/// Counters of one journald source, shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct JournaldStats {
    /// Entries delivered as lines.
    pub entries: AtomicU64,
    /// Bytes of lines delivered.
    pub bytes: AtomicU64,
    /// Batches sent to the pipeline.
    pub batches: AtomicU64,
    /// Lines cut at [`MAX_LINE_BYTES`].
    pub truncated: AtomicU64,
    /// journalctl output lines that were not a JSON entry, or longer than
    /// [`MAX_ENTRY_JSON_BYTES`] (skipped).
    pub invalid_entries: AtomicU64,
    /// Times journalctl was started.
    pub starts: AtomicU64,
    /// Times journalctl could not be started.
    pub spawn_failures: AtomicU64,
    /// Times journalctl exited on its own (it is then restarted).
    pub exits: AtomicU64,
    /// Lines journalctl wrote to stderr.
    pub stderr_lines: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Why a journald source cannot run.
#[derive(Debug, thiserror::Error)]
pub enum JournaldError {
    /// A match journalctl would not read as a match.
    #[error("journald source {name:?}: invalid match {value:?}: expected FIELD=value (FIELD in upper case, digits and '_', such as \"_SYSTEMD_UNIT=sshd.service\"), \"+\" or an absolute path")]
    InvalidMatch {
        /// Source name.
        name: String,
        /// The match.
        value: String,
    },
}

/// Checks the configured matches (also done by [`run`]); for config validation at start-up.
pub fn validate(cfg: &JournaldSourceConfig) -> Result<(), JournaldError> {
    for m in &cfg.matches {
        let ok = match m.split_once('=') {
            Some((field, _)) => {
                !field.is_empty()
                    && !field.starts_with(|c: char| c.is_ascii_digit())
                    && field
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            }
            None => m == "+" || m.starts_with('/'),
        };
        if !ok {
            return Err(JournaldError::InvalidMatch {
                name: cfg.name.clone(),
                value: m.clone(),
            });
        }
    }
    Ok(())
}

/// Whether `c` looks like a journald cursor (`s=...;i=...;b=...;m=...;t=...;x=...`, hex values).
/// A stored cursor that does not is ignored with a warning rather than making journalctl exit
/// at every start ("Failed to seek to cursor").
fn valid_cursor(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 512
        && c.split(';').all(|part| {
            part.split_once('=').is_some_and(|(k, v)| {
                matches!(k, "s" | "i" | "b" | "m" | "t" | "x")
                    && !v.is_empty()
                    && v.bytes().all(|b| b.is_ascii_hexdigit())
            })
        })
}

/// Where a (re)started journalctl begins.
enum StartPoint<'a> {
    Cursor(&'a str),
    Beginning,
    Since(i64),
}

fn args(cfg: &JournaldSourceConfig, from: StartPoint<'_>) -> Vec<OsString> {
    let mut a: Vec<OsString> = [
        "--output=json",
        "--all",
        "--follow",
        "--no-tail",
        "--merge",
        "--no-pager",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    a.push(format!("--output-fields={FIELDS}").into());
    if let Some(dir) = &cfg.directory {
        let mut d = OsString::from("--directory=");
        d.push(dir);
        a.push(d);
    }
    match from {
        StartPoint::Cursor(c) => a.push(format!("--cursor={c}").into()),
        StartPoint::Beginning => {}
        StartPoint::Since(t) => a.push(format!("--since=@{t}").into()),
    }
    a.push("--".into());
    a.extend(cfg.matches.iter().map(OsString::from));
    a
}

/// Follows the journal as configured until `shutdown` turns true (or its sender is dropped) or
/// `tx`'s receiver is gone, starting after `cursor` when given (else per `cfg.start_at`).
/// Fails only on an invalid config; journalctl failures are logged, counted and retried.
pub async fn run(
    cfg: JournaldSourceConfig,
    cursor: Option<String>,
    tx: mpsc::Sender<Batch>,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<JournaldStats>,
) -> Result<(), JournaldError> {
    validate(&cfg)?;
    let id = format!("journald:{}", cfg.name);
    let mut cursor = cursor.filter(|c| {
        let ok = valid_cursor(c);
        if !ok {
            tracing::warn!(source = %id, cursor = %c, "ignoring stored journal cursor that is not a cursor");
        }
        ok
    });
    let since = chrono::Utc::now().timestamp();
    let mut backoff = BACKOFF_MIN;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let from = match (&cursor, cfg.start_at) {
            (Some(c), _) => StartPoint::Cursor(c),
            (None, StartAt::Beginning) => StartPoint::Beginning,
            (None, StartAt::End) => StartPoint::Since(since),
        };
        let mut cmd = Command::new(&cfg.journalctl);
        cmd.args(args(&cfg, from))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match cmd.spawn() {
            Err(e) => {
                add(&stats.spawn_failures, 1);
                tracing::warn!(source = %id, journalctl = %cfg.journalctl.display(), error = %e, "cannot start journalctl");
            }
            Ok(mut child) => {
                add(&stats.starts, 1);
                if let Some(err) = child.stderr.take() {
                    tokio::spawn(log_stderr(err, id.clone(), stats.clone()));
                }
                let Some(out) = child.stdout.take() else {
                    return Ok(());
                };
                let mut pump = Pump {
                    id: &id,
                    tx: &tx,
                    stats: &stats,
                    skip_first: cursor.clone(),
                    cursor: &mut cursor,
                    delivered: false,
                };
                let end = pump.follow(out, &mut shutdown).await;
                let delivered = pump.delivered;
                match end {
                    End::Stop => {
                        let _ = child.kill().await;
                        return Ok(());
                    }
                    End::Exited => {
                        add(&stats.exits, 1);
                        // It closed its output; it should be gone, but do not wait forever.
                        let status = tokio::select! {
                            biased;
                            _ = shutdown_requested(&mut shutdown) => return Ok(()),
                            s = tokio::time::timeout(Duration::from_secs(10), child.wait()) => s,
                        };
                        match status {
                            Ok(status) => {
                                tracing::warn!(source = %id, status = ?status, "journalctl exited; restarting")
                            }
                            Err(_) => {
                                let _ = child.kill().await;
                                tracing::warn!(source = %id, "journalctl closed its output; killed, restarting")
                            }
                        }
                    }
                }
                if delivered {
                    backoff = BACKOFF_MIN;
                }
            }
        }
        tokio::select! {
            biased;
            _ = shutdown_requested(&mut shutdown) => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// How following one journalctl process ended.
enum End {
    /// Shutdown, or the pipeline is gone.
    Stop,
    /// journalctl closed its output.
    Exited,
}

struct Pump<'a> {
    id: &'a str,
    tx: &'a mpsc::Sender<Batch>,
    stats: &'a JournaldStats,
    /// The cursor journalctl was started at: its entry was delivered before and is dropped
    /// when it comes first.
    skip_first: Option<String>,
    /// The cursor of the last entry delivered.
    cursor: &'a mut Option<String>,
    delivered: bool,
}

/// A batch being filled.
struct Pending {
    data: Vec<u8>,
    lines: u64,
    truncated: u64,
    unit: Option<String>,
    cursor: Option<String>,
}

impl Pump<'_> {
    async fn follow(
        &mut self,
        out: tokio::process::ChildStdout,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let mut reader = BufReader::with_capacity(256 * 1024, out);
        let mut json = Vec::new();
        let mut pending = Pending {
            data: Vec::new(),
            lines: 0,
            truncated: 0,
            unit: None,
            cursor: None,
        };
        loop {
            let read = tokio::select! {
                biased;
                _ = shutdown_requested(shutdown) => return End::Stop,
                r = read_line_capped(&mut reader, &mut json, MAX_ENTRY_JSON_BYTES) => r,
            };
            match read {
                Ok(Some(false)) => {
                    let mut line = Vec::new();
                    let entry = format_entry(&json, &mut line);
                    let seen = self.skip_first.take();
                    match entry {
                        Ok(info) if seen.is_some() && info.cursor == seen => {}
                        Ok(info) => {
                            if pending.lines > 0
                                && pending.unit != info.unit
                                && !self.send(&mut pending, shutdown).await
                            {
                                return End::Stop;
                            }
                            pending.data.extend_from_slice(&line);
                            pending.lines += 1;
                            pending.truncated += u64::from(info.truncated);
                            pending.unit = info.unit;
                            if info.cursor.is_some() {
                                pending.cursor = info.cursor;
                            }
                        }
                        Err(e) => {
                            add(&self.stats.invalid_entries, 1);
                            tracing::debug!(source = %self.id, error = %e, "skipping journalctl output that is not an entry");
                        }
                    }
                }
                Ok(Some(true)) => {
                    add(&self.stats.invalid_entries, 1);
                    tracing::warn!(source = %self.id, limit = MAX_ENTRY_JSON_BYTES, "skipping an over-long journal entry");
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(source = %self.id, error = %e, "reading journalctl output failed");
                    break;
                }
            }
            let idle = reader.buffer().is_empty();
            if pending.lines > 0
                && (idle
                    || pending.lines >= MAX_BATCH_ENTRIES
                    || pending.data.len() >= MAX_BATCH_BYTES)
                && !self.send(&mut pending, shutdown).await
            {
                return End::Stop;
            }
        }
        if pending.lines > 0 && !self.send(&mut pending, shutdown).await {
            return End::Stop;
        }
        End::Exited
    }

    /// Sends the pending batch; false when stopping.
    async fn send(&mut self, p: &mut Pending, shutdown: &mut watch::Receiver<bool>) -> bool {
        let cursor = p.cursor.take().or_else(|| self.cursor.clone());
        let batch = Batch {
            stream: self.id.to_string(),
            name: self.id.to_string(),
            data: std::mem::take(&mut p.data),
            lines: std::mem::take(&mut p.lines),
            position: cursor.clone().map(|cursor| Position::Journal { cursor }),
            labels: p
                .unit
                .take()
                .map(|u| vec![("service.name".to_string(), u)])
                .unwrap_or_default(),
            truncated_lines: std::mem::take(&mut p.truncated),
        };
        let (lines, bytes, cut) = (batch.lines, batch.data.len(), batch.truncated_lines);
        let sent = tokio::select! {
            biased;
            _ = shutdown_requested(shutdown) => false,
            r = self.tx.send(batch) => r.is_ok(),
        };
        if sent {
            add(&self.stats.batches, 1);
            add(&self.stats.entries, lines);
            add(&self.stats.bytes, bytes as u64);
            add(&self.stats.truncated, cut);
            *self.cursor = cursor;
            self.delivered = true;
        }
        sent
    }
}

/// Reads one line into `buf` (without its `\n`), keeping at most `cap` bytes. Returns
/// `Some(over_cap)`, or `None` at end of input. A last line without `\n` is returned too.
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut over = false;
    let mut any = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(any.then_some(over));
        }
        any = true;
        let (part, used, done) = match memchr::memchr(b'\n', avail) {
            Some(i) => (&avail[..i], i + 1, true),
            None => (avail, avail.len(), false),
        };
        let room = cap.saturating_sub(buf.len());
        if part.len() > room {
            over = true;
        }
        buf.extend_from_slice(&part[..part.len().min(room)]);
        r.consume(used);
        if done {
            return Ok(Some(over));
        }
    }
}

async fn log_stderr(err: tokio::process::ChildStderr, id: String, stats: Arc<JournaldStats>) {
    let mut reader = BufReader::new(err);
    let mut line = Vec::new();
    while let Ok(Some(_)) = read_line_capped(&mut reader, &mut line, 4096).await {
        add(&stats.stderr_lines, 1);
        tracing::warn!(source = %id, "journalctl: {}", String::from_utf8_lossy(&line).trim_end());
    }
}

/// Resolves once shutdown is requested or its sender is gone.
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A journal field as journalctl prints it in JSON, reduced to the bytes of its first value.
#[derive(Debug, Default, PartialEq, Eq)]
struct Field(Vec<u8>);

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, an array of bytes, or an array of values")
            }
            fn visit_str<E>(self, v: &str) -> Result<Field, E> {
                Ok(Field(v.as_bytes().to_vec()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field, A::Error> {
                match seq.next_element::<Elem>()? {
                    None => Ok(Field(Vec::new())),
                    Some(Elem::Byte(b)) => {
                        let mut v = vec![b];
                        while let Some(b) = seq.next_element::<u8>()? {
                            v.push(b);
                        }
                        Ok(Field(v))
                    }
                    Some(Elem::Value(v)) => {
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        Ok(Field(v))
                    }
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// An element of a field's array: a byte (binary value) or one of several values.
enum Elem {
    Byte(u8),
    Value(Vec<u8>),
}

impl<'de> Deserialize<'de> for Elem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Elem;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte value, a string or an array of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Elem, E> {
                u8::try_from(v)
                    .map(Elem::Byte)
                    .map_err(|_| E::custom("byte value out of range"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Elem, E> {
                u8::try_from(v)
                    .map(Elem::Byte)
                    .map_err(|_| E::custom("byte value out of range"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Elem, E> {
                Ok(Elem::Value(v.as_bytes().to_vec()))
            }
            fn visit_unit<E>(self) -> Result<Elem, E> {
                Ok(Elem::Value(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Elem, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Elem::Value(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The fields used from one journalctl JSON entry; unknown fields are skipped unparsed.
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "__CURSOR", default)]
    cursor: Option<Field>,
    #[serde(rename = "__REALTIME_TIMESTAMP", default)]
    realtime: Option<Field>,
    #[serde(rename = "MESSAGE", default)]
    message: Option<Field>,
    #[serde(rename = "_HOSTNAME", default)]
    hostname: Option<Field>,
    #[serde(rename = "SYSLOG_IDENTIFIER", default)]
    identifier: Option<Field>,
    #[serde(rename = "_COMM", default)]
    comm: Option<Field>,
    #[serde(rename = "_PID", default)]
    pid: Option<Field>,
    #[serde(rename = "SYSLOG_PID", default)]
    syslog_pid: Option<Field>,
    #[serde(rename = "_SYSTEMD_UNIT", default)]
    unit: Option<Field>,
}

/// What the batching needs from an entry besides its line.
#[derive(Debug, PartialEq, Eq)]
struct EntryInfo {
    cursor: Option<String>,
    unit: Option<String>,
    truncated: bool,
}

fn non_empty(f: &Option<Field>) -> Option<&[u8]> {
    f.as_ref().map(|f| f.0.as_slice()).filter(|v| !v.is_empty())
}

/// Writes the line of one journalctl JSON entry to `out` (see the module documentation).
fn format_entry(json: &[u8], out: &mut Vec<u8>) -> Result<EntryInfo, serde_json::Error> {
    use std::io::Write;
    let e: Entry = serde_json::from_slice(json)?;
    let time = non_empty(&e.realtime)
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_micros);
    match time {
        Some(t) => {
            let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
        }
        None => out.push(b'-'),
    }
    out.push(b' ');
    push_token(out, non_empty(&e.hostname));
    out.push(b' ');
    push_token(out, non_empty(&e.identifier).or_else(|| non_empty(&e.comm)));
    let pid = [&e.pid, &e.syslog_pid]
        .into_iter()
        .filter_map(non_empty)
        .find(|p| p.len() <= 10 && p.iter().all(u8::is_ascii_digit));
    if let Some(pid) = pid {
        out.push(b'[');
        out.extend_from_slice(pid);
        out.push(b']');
    }
    out.extend_from_slice(b": ");
    let mut msg = non_empty(&e.message).unwrap_or(b"");
    while let Some(m) = msg.strip_suffix(b"\n") {
        msg = m;
    }
    let truncated = msg.len() > MAX_LINE_BYTES;
    let start = out.len();
    out.extend_from_slice(&msg[..msg.len().min(MAX_LINE_BYTES)]);
    for b in &mut out[start..] {
        if *b == b'\n' {
            *b = b' ';
        }
    }
    out.push(b'\n');
    let text = |f: &Option<Field>| non_empty(f).map(|v| String::from_utf8_lossy(v).into_owned());
    Ok(EntryInfo {
        cursor: text(&e.cursor),
        unit: text(&e.unit),
        truncated,
    })
}

/// A header token: whitespace, control bytes, `[` and `]` become `_`, as does a trailing `:`;
/// `-` when missing. At most 64 bytes.
fn push_token(out: &mut Vec<u8>, t: Option<&[u8]>) {
    let Some(t) = t else {
        out.push(b'-');
        return;
    };
    let t = &t[..t.len().min(64)];
    out.extend(t.iter().map(|&b| {
        if b <= b' ' || b == 0x7f || b == b'[' || b == b']' {
            b'_'
        } else {
            b
        }
    }));
    if out.last() == Some(&b':') {
        if let Some(last) = out.last_mut() {
            *last = b'_';
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> (String, EntryInfo) {
        let mut out = Vec::new();
        let info = format_entry(json.as_bytes(), &mut out).unwrap();
        (String::from_utf8_lossy(&out).into_owned(), info)
    }

    #[test]
    fn entries_become_syslog_lines() {
        let (l, info) = line(
            r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1772359200123456","MESSAGE":"Failed password\n","_HOSTNAME":"web1","SYSLOG_IDENTIFIER":"sshd","_PID":"4242","_SYSTEMD_UNIT":"sshd.service","OTHER":[1,2]}"#,
        );
        assert_eq!(
            l,
            "2026-03-01T10:00:00.123456Z web1 sshd[4242]: Failed password\n"
        );
        assert_eq!(
            info,
            EntryInfo {
                cursor: Some("s=1;i=2".into()),
                unit: Some("sshd.service".into()),
                truncated: false
            }
        );
        let (l, _) = line(
            r#"{"__REALTIME_TIMESTAMP":"1772359200000000","MESSAGE":[97,10,255],"_COMM":"cron","_PID":"x","SYSLOG_PID":"7"}"#,
        );
        assert_eq!(
            l.as_bytes(),
            b"2026-03-01T10:00:00.000000Z - cron[7]: a \xef\xbf\xbd\n"
        );
        let (l, _) = line(
            r#"{"MESSAGE":["first\nx","second"],"SYSLOG_IDENTIFIER":"a b:","_HOSTNAME":"h[1]"}"#,
        );
        assert_eq!(l, "- h_1_ a_b_: first x\n");
        let (l, _) = line(r#"{"MESSAGE":null,"SYSLOG_IDENTIFIER":"kernel"}"#);
        assert_eq!(l, "- - kernel: \n");
        let (l, _) = line(r#"{"MESSAGE":[[104,105],[0]],"SYSLOG_IDENTIFIER":"k"}"#);
        assert_eq!(l, "- - k: hi\n");
        assert!(format_entry(b"not json", &mut Vec::new()).is_err());
        assert!(format_entry(br#"{"MESSAGE":[300]}"#, &mut Vec::new()).is_err());
    }

    #[test]
    fn cursors_and_matches_are_checked() {
        assert!(valid_cursor(
            "s=9830b135101a4adab672fce17cd35d71;i=2;b=0123456789abcdef0123456789abcdef;m=7d0;t=64bf388970a40;x=983b1265198f50bb"
        ));
        assert!(!valid_cursor("garbage"));
        assert!(!valid_cursor(""));
        let mut cfg = JournaldSourceConfig {
            name: "j".into(),
            matches: vec![
                "_SYSTEMD_UNIT=sshd.service".into(),
                "+".into(),
                "/usr/sbin/sshd".into(),
            ],
            directory: None,
            start_at: StartAt::End,
            journalctl: "journalctl".into(),
        };
        assert!(validate(&cfg).is_ok());
        for bad in ["--file=/etc/shadow", "unit=x", "", "1X=2"] {
            cfg.matches = vec![bad.into()];
            assert!(validate(&cfg).is_err(), "{bad}");
        }
    }
}
