//! Tickets: from incidents to the help desk.
//!
//! - [`render`]: ticket content (title, body, comments) escaped for each help desk's format,
//!   with secrets redacted.
//! - [`adapter`]: one module per help desk behind one interface. Every operation is first
//!   *built* as an [`HttpRequest`] (a plain value: the dry run prints it, contract tests
//!   check it) and then sent by the shared [`adapter::send`], so what the dry run shows is
//!   exactly what would be sent.
//!
//! The incident lifecycle (dedup, updates, escalation, reopen), flood control and the durable
//! outbox build on these types.

pub mod adapter;
pub mod lifecycle;
pub mod outbox;
pub mod render;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::Priority;

/// What a ticket says, before it is shaped for one help desk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketContent {
    /// The incident fingerprint: the dedup key stored in the ticket.
    pub fingerprint: String,
    /// Detector id.
    pub detector: String,
    /// Title rendered from the detector's template (attacker text included: adapters escape).
    pub title: String,
    /// Priority P1..P4.
    pub priority: Priority,
    /// Detector severity (`info`..`critical`).
    pub severity: String,
    /// Taxonomy category.
    pub category: String,
    /// Asset criticality.
    pub criticality: String,
    /// Hits so far.
    pub count: u64,
    /// RFC 3339.
    pub first_seen: String,
    /// RFC 3339.
    pub last_seen: String,
    /// Where it was read (file path or source name).
    pub source: String,
    /// Key and context fields (ECS names).
    pub fields: BTreeMap<String, String>,
    /// Evidence lines (attacker-controlled: escaped and redacted when rendered).
    pub evidence: Vec<String>,
    /// The detector's description.
    pub description: String,
    /// The response playbook.
    pub response: String,
    /// References (ATT&CK ids, CVEs).
    pub references: Vec<String>,
    /// The ticket this one follows, when an incident recurs after its ticket was closed.
    pub previous_ticket: Option<String>,
}

/// Why a comment is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateKind {
    /// The incident recurred: new count, last seen, new evidence.
    Recurrence,
    /// The priority was raised because the incident grew.
    Escalation,
    /// The incident recurred after the ticket was closed, within the reopen window.
    Reopen,
    /// A storm digest lists incidents past a quota.
    Digest,
}

/// A help desk's reference to a ticket (its id as the help desk spells it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TicketRef(pub String);

/// Whether the help desk considers a ticket active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    /// Being worked on (new, open, stalled...).
    Open,
    /// Resolved, closed, rejected, deleted: a recurrence within the reopen window reopens it.
    Closed,
    /// Closed for good: the help desk does not reopen it (Zendesk `closed`, ServiceNow
    /// `Closed`/`Canceled`, GLPI `Closed`, a deleted ticket). A recurrence opens a follow-up
    /// ticket that references it, even within the reopen window.
    Final,
}

/// An HTTP request as a value: built by adapters, printed by the dry run, checked by contract
/// tests, sent by [`adapter::send`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Headers. Values that carry secrets are marked so the dry run and logs redact them.
    pub headers: Vec<Header>,
    /// Body (usually JSON).
    pub body: Option<String>,
}

/// One request header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// Name.
    pub name: String,
    /// Value.
    #[serde(serialize_with = "ser_header_value")]
    pub value: String,
    /// Carries a secret (token, password, signature): never printed.
    #[serde(skip)]
    pub secret: bool,
}

fn ser_header_value<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

impl HttpRequest {
    /// The request as text for the dry run and logs, secrets redacted.
    pub fn display_redacted(&self) -> String {
        let mut out = format!("{} {}\n", self.method, self.url);
        for h in &self.headers {
            let v = if h.secret {
                "<redacted>"
            } else {
                h.value.as_str()
            };
            out.push_str(&format!("{}: {}\n", h.name, v));
        }
        if let Some(b) = &self.body {
            out.push('\n');
            out.push_str(b);
            out.push('\n');
        }
        out
    }
}

/// How a delivery attempt failed, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Try again later: network error, 5xx, 429/503 (with the server's `Retry-After`).
    #[error("temporary failure: {message}")]
    Retry {
        /// What happened.
        message: String,
        /// The server asked to wait this long.
        retry_after: Option<Duration>,
    },
    /// Needs an operator: 401/403/404, validation errors, a misconfigured help desk. The
    /// operation stays queued until the config is fixed (`sentinela outbox retry`).
    #[error("needs attention: {message}")]
    Blocked {
        /// What happened, with the help desk's own message.
        message: String,
    },
}
