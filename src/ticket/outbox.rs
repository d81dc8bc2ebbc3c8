//! The outbox worker: delivers queued ticket operations to one help desk.
//!
//! Operations were written to the `outbox` table in the same transaction as the incident
//! change that caused them, so nothing is lost across crashes and outages; the worker delivers
//! them at least once, in order per fingerprint, and makes the repeats harmless:
//!
//! - a *create* first looks for an open ticket carrying the fingerprint (a create whose
//!   response was lost is found, not duplicated) — where the help desk can search;
//! - an *update* first reads the ticket's status: a closed ticket is reopened (within the
//!   reopen window, counted from our last activity on it) or replaced by a new ticket that
//!   references it;
//! - network errors, 5xx, 429 and 503 retry with exponential backoff and jitter, honouring
//!   `Retry-After`; 401/403/404 and validation errors *block* the operation (error log,
//!   metric, `/readyz` degraded) until an operator runs `sentinela outbox retry`.
//!
//! Outgoing requests are paced per help desk by the adapter (`requests_per_second`, governor),
//! with jitter added here.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use crate::http::{Health, Metrics};
use crate::state::{OutboxRow, Store};
use crate::ticket::adapter::Adapter;
use crate::ticket::lifecycle::{Operation, TicketRecord};
use crate::ticket::render;
use crate::ticket::{DeliveryError, TicketRef, TicketStatus, UpdateKind};
use crate::timestamp::{now_millis, Millis};

/// Backoff after the `attempts`-th failure. When the help desk said when to come back
/// (`Retry-After` on a 429 or 503), that, plus up to 10% jitter so that queued operations do
/// not return in one burst (at least 1 s: a `Retry-After: 0` must not make us hammer it).
/// Otherwise (network errors, 5xx, timeouts) 1 s doubling up to 5 min, plus up to 25% jitter.
pub fn backoff(attempts: i64, retry_after: Option<Duration>) -> Duration {
    if let Some(after) = retry_after {
        let after = after.max(Duration::from_secs(1));
        return after + after.mul_f64(fastrand::f64() * 0.10);
    }
    let base = Duration::from_secs(1u64 << attempts.clamp(0, 9)).min(Duration::from_secs(300));
    base + base.mul_f64(fastrand::f64() * 0.25)
}

/// Delivers one help desk's operations.
pub struct Worker {
    /// The help desk.
    pub adapter: Adapter,

    client: reqwest::Client,
    /// Its own connection to the state store (a mutex only to make the worker `Sync`: it is
    /// the only user).
    store: std::sync::Mutex<Store>,
    reopen_window: Duration,
    /// Customer-facing status text template (None: the default).
    status_template: Option<String>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Woken by the pipeline after a commit that queued operations.
    pub wake: Arc<Notify>,
    /// Deliveries that failed (temporarily) since the last success, over all operations.
    failures: i64,
}

impl Worker {
    /// A worker for `adapter`, with its own connection to the state store.
    pub fn new(
        adapter: Adapter,
        store: Store,
        reopen_window: Duration,
        status_template: Option<String>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Worker, String> {
        let client = crate::ticket::adapter::http_client()?;
        Ok(Worker {
            adapter,
            client,
            store: std::sync::Mutex::new(store),
            reopen_window,
            status_template,
            metrics,
            health,
            wake: Arc::new(Notify::new()),
            failures: 0,
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn problem_key(&self) -> String {
        format!("helpdesk {}", self.adapter.name())
    }

    /// Delivers until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let name = self.adapter.name().to_string();
        // Start-up check: credentials, queue and fields. A refusal marks /readyz degraded;
        // operations stay queued either way.
        match self.adapter.check(&self.client).await {
            Ok(()) => info!(message = "Help desk check passed.", helpdesk = %name),
            Err(DeliveryError::Blocked { message }) => {
                error!(message = "Help desk check failed.", helpdesk = %name, error = %message);
                self.health.problem(&self.problem_key(), Some(message));
            }
            Err(e) => {
                warn!(message = "Help desk not reachable at start-up; will retry.", helpdesk = %name, error = %e)
            }
        }
        loop {
            if *shutdown.borrow() {
                return;
            }
            let due =
                tokio::task::block_in_place(|| self.db().due_operations(&name, now_millis(), 32));
            let due = match due {
                Ok(d) => d,
                Err(e) => {
                    error!(message = "Outbox read failed.", helpdesk = %name, error = %e);
                    Vec::new()
                }
            };
            self.export_gauges();
            if due.is_empty() {
                // Nothing to do for now: end the login session (GLPI) rather than leave it
                // open on the server.
                self.adapter.end_session(&self.client).await;
                let next = tokio::task::block_in_place(|| self.db().next_due(&name))
                    .ok()
                    .flatten();
                let wait = next
                    .map(|t| Duration::from_millis((t - now_millis()).clamp(10, 5_000) as u64))
                    .unwrap_or(Duration::from_secs(5));
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                continue;
            }
            for op in due {
                if *shutdown.borrow() {
                    return;
                }
                self.deliver(op).await;
            }
        }
    }

    fn export_gauges(&self) {
        let name = self.adapter.name();
        if let Ok(rows) = self.db().outbox(None) {
            for state in ["pending", "blocked"] {
                let n = rows
                    .iter()
                    .filter(|r| r.helpdesk == name && r.state == state)
                    .count();
                self.metrics.set(
                    "sentinela_outbox_operations",
                    &[("helpdesk", name), ("state", state)],
                    n as f64,
                );
            }
        }
    }

    /// Jitter between requests; the adapter itself enforces the help desk's
    /// `requests_per_second`.
    async fn paced(&self) {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..20))).await;
    }

    async fn deliver(&mut self, op: OutboxRow) {
        let name = self.adapter.name().to_string();
        let record = match self.db().ticket(&name, &op.fingerprint) {
            Ok(r) => r,
            Err(e) => {
                error!(message = "Cannot read the ticket record; will retry.", helpdesk = %name, error = %e);
                return;
            }
        };
        let kind = match &op.operation {
            Operation::Create { .. } => "create",
            Operation::Update { .. } => "update",
            Operation::SetPriority { .. } => "set_priority",
            Operation::Resolve { .. } => "resolve",
        };
        let result = self.execute(&op, record).await;
        let metrics = self.metrics.clone();
        let count = |result: &str| {
            metrics.add(
                "sentinela_ticket_operations_total",
                &[("helpdesk", &name), ("op", kind), ("result", result)],
                1.0,
            )
        };
        let stored = match result {
            Ok(rec) => {
                count("ok");
                self.failures = 0;
                self.health.problem(&self.problem_key(), None);
                tokio::task::block_in_place(|| {
                    // The help desk answers again: operations backing off after an outage
                    // need not wait out their (up to 5 min) backoff.
                    if op.attempts > 0 {
                        if let Err(e) = self.db().expedite(&name) {
                            warn!(message = "Could not reschedule waiting operations.", helpdesk = %name, error = %e);
                        }
                    }
                    self.db().complete_operation(op.id, rec.as_ref())
                })
            }
            Err(DeliveryError::Retry {
                message,
                retry_after,
            }) => {
                // The backoff follows the help desk's health, not the operation's history: an
                // operation that failed through a long outage starts again from a short wait
                // once the help desk has answered in between.
                let wait = backoff(op.attempts.min(self.failures), retry_after);
                self.failures += 1;
                warn!(
                    message = "Help desk delivery failed; will retry.",
                    helpdesk = %name, operation = op.id, attempt = op.attempts + 1,
                    retry_in = ?wait, error = %message
                );
                count("retry");
                let now = now_millis();
                let next = now + wait.as_millis() as Millis;
                let hold = retry_after.map(|d| now + d.as_millis() as Millis);
                tokio::task::block_in_place(|| {
                    self.db().fail_operation(op.id, Some(next), hold, &message)
                })
            }
            Err(DeliveryError::Blocked { message }) => {
                error!(
                    message = "Help desk refused an operation; it stays queued until `sentinela outbox retry` after fixing the config.",
                    helpdesk = %name, operation = op.id, error = %message
                );
                count("blocked");
                self.health
                    .problem(&self.problem_key(), Some(message.clone()));
                tokio::task::block_in_place(|| {
                    self.db().fail_operation(op.id, None, None, &message)
                })
            }
        };
        if let Err(e) = stored {
            error!(message = "Outbox update failed; the operation will be delivered again.", helpdesk = %name, error = %e);
        }
    }

    /// Performs one operation; returns the ticket record to store with its completion.
    async fn execute(
        &self,
        op: &OutboxRow,
        record: Option<TicketRecord>,
    ) -> Result<Option<TicketRecord>, DeliveryError> {
        match &op.operation {
            Operation::Create { incident } => {
                let mut rec = record.unwrap_or_else(|| TicketRecord {
                    fingerprint: op.fingerprint.clone(),
                    helpdesk: self.adapter.name().to_string(),
                    ticket_ref: None,
                    priority: incident.priority,
                    opened_count: incident.count,
                    escalations: 0,
                    last_update_at: now_millis(),
                    last_update_count: incident.count,
                    previous_ref: None,
                    pending_digest: Vec::new(),
                    pending_omitted: 0,
                });
                let content = incident.content(rec.previous_ref.clone());
                // Idempotency: a ticket with this key may exist already (a create whose
                // response was lost, another host, a restart).
                self.paced().await;
                let existing = self
                    .adapter
                    .find_open(&self.client, &op.fingerprint)
                    .await?;
                let t = match existing {
                    Some(t) => {
                        info!(message = "Found an open ticket for the incident; not creating another.", helpdesk = %self.adapter.name(), ticket = %t.0);
                        t
                    }
                    None => {
                        self.paced().await;
                        let body = render::body(
                            &content,
                            self.adapter.body_format(),
                            self.status_template.as_deref(),
                        );
                        self.adapter.create(&self.client, &content, &body).await?
                    }
                };
                rec.ticket_ref = Some(t.0);
                Ok(Some(rec))
            }
            Operation::Update {
                incident,
                kind,
                note,
            } => {
                let Some(mut rec) = record else {
                    return Err(DeliveryError::Blocked {
                        message: format!("no ticket record for {}", op.fingerprint),
                    });
                };
                let Some(tref) = rec.ticket_ref.clone() else {
                    return Err(DeliveryError::Retry {
                        message: "the ticket is not created yet".into(),
                        retry_after: None,
                    });
                };
                let t = TicketRef(tref);
                self.paced().await;
                let status = self.adapter.status(&self.client, &t).await?;
                let content = incident.content(rec.previous_ref.clone());
                if status != TicketStatus::Open {
                    let recent = status == TicketStatus::Closed
                        && now_millis() - rec.last_update_at
                            <= self.reopen_window.as_millis() as Millis;
                    if recent {
                        self.paced().await;
                        self.adapter.reopen(&self.client, &t).await?;
                        let text = render::comment(
                            &content,
                            UpdateKind::Reopen,
                            self.adapter.body_format(),
                            note,
                        );
                        self.paced().await;
                        self.adapter
                            .comment(&self.client, &t, &content, UpdateKind::Reopen, &text)
                            .await?;
                    } else {
                        // Too old to reopen: a new ticket that references the closed one.
                        let content = incident.content(Some(t.0.clone()));
                        let body = render::body(
                            &content,
                            self.adapter.body_format(),
                            self.status_template.as_deref(),
                        );
                        self.paced().await;
                        let new = self.adapter.create(&self.client, &content, &body).await?;
                        rec.previous_ref = Some(t.0);
                        rec.ticket_ref = Some(new.0);
                        rec.opened_count = incident.count;
                        rec.escalations = 0;
                    }
                } else {
                    let text = render::comment(&content, *kind, self.adapter.body_format(), note);
                    self.paced().await;
                    self.adapter
                        .comment(&self.client, &t, &content, *kind, &text)
                        .await?;
                }
                rec.last_update_at = now_millis();
                Ok(Some(rec))
            }
            Operation::SetPriority { priority } => {
                // Help desks without a separate state change (webhooks) learn the new priority
                // from the escalation comment that follows.
                if !self.adapter.capabilities().separate_state_changes {
                    return Ok(None);
                }
                let Some(rec) = record else {
                    return Ok(None);
                };
                let Some(tref) = rec.ticket_ref.clone() else {
                    return Err(DeliveryError::Retry {
                        message: "the ticket is not created yet".into(),
                        retry_after: None,
                    });
                };
                self.paced().await;
                self.adapter
                    .set_priority(&self.client, &TicketRef(tref), *priority)
                    .await?;
                Ok(None)
            }
            Operation::Resolve { incident } => {
                let Some(rec) = record else {
                    return Ok(None);
                };
                let Some(tref) = rec.ticket_ref.clone() else {
                    return Err(DeliveryError::Retry {
                        message: "the ticket is not created yet".into(),
                        retry_after: None,
                    });
                };
                let content = incident.content(rec.previous_ref.clone());
                self.paced().await;
                self.adapter
                    .resolve(&self.client, &TicketRef(tref), &content)
                    .await?;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_jittered_and_honours_retry_after() {
        for (attempts, lo, hi) in [
            (0, 1.0, 1.25),
            (1, 2.0, 2.5),
            (3, 8.0, 10.0),
            (20, 300.0, 375.0),
        ] {
            let b = backoff(attempts, None).as_secs_f64();
            assert!(b >= lo && b <= hi, "attempt {attempts}: {b}");
        }
        // The help desk's own word wins over the exponential backoff, in both directions.
        for attempts in [0, 8] {
            let b = backoff(attempts, Some(Duration::from_secs(30))).as_secs_f64();
            assert!((30.0..=33.0).contains(&b), "attempt {attempts}: {b}");
        }
        let b = backoff(8, Some(Duration::ZERO)).as_secs_f64();
        assert!((1.0..=1.1).contains(&b), "Retry-After: 0 -> {b}");
    }
}
