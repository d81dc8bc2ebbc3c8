//! A generic JSON webhook: every operation is a `POST` of one event to the configured URL.
//!
//! # The event
//!
//! By default the body is a JSON object:
//!
//! ```json
//! {"action": "create", "event_id": "…", "fingerprint": "…", "ticket": "…",
//!  "priority": "P2", "title": "…", "detector": "ssh.bruteforce", "severity": "high",
//!  "category": "…", "criticality": "normal", "count": 12, "first_seen": "…",
//!  "last_seen": "…", "source": "/var/log/auth.log", "fields": {"source.ip": "…"},
//!  "evidence": ["…"], "description": "…", "response": "…", "references": ["…"],
//!  "previous_ticket": null, "body": "rendered text"}
//! ```
//!
//! `action` is `create`, `update` (a recurrence), `reopen`, `escalate` or `digest`. A webhook
//! has no ticket ids: the ticket reference is the fingerprint (`ticket` = `fingerprint`). The
//! bare `reopen` and `escalate` events (the reopen and priority requests) carry only
//! `action`, `event_id`, `fingerprint`, `ticket` (and `priority`).
//!
//! `event_id` is a hash of the event: the same operation retried carries the same id, so a
//! receiver can drop duplicates (deliveries are at least once).
//!
//! # `body_template`
//!
//! A JSON text with `{{name}}` placeholders, `name` being a key of the event above or `event`
//! (the whole object). Values are always JSON-encoded, so event text cannot break out of the
//! template: inside a JSON string (`"text": "[{{priority}}] {{title}}"`) a placeholder becomes
//! the escaped text without quotes (objects and arrays as their escaped JSON text, absent
//! values as nothing); outside a string (`"n": {{count}}`, `"f": {{fields}}`) it becomes the
//! JSON value itself (`null` when absent). The template is checked at config time by filling
//! it with sample values and parsing the result.
//!
//! # Authentication and signature
//!
//! `token_env`/`token_file`: `Authorization: Bearer <token>`. With `hmac_secret_env` or
//! `hmac_secret_file`, each request carries
//!
//! - `X-Sentinela-Timestamp: <unix seconds>` and
//! - `X-Sentinela-Signature: sha256=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`,
//!
//! computed over the exact body bytes. The timestamp is signed so that a captured request
//! cannot be replayed later: a receiver recomputes the HMAC over the timestamp header, a dot
//! and the raw body, compares it in constant time, and rejects timestamps more than a few
//! minutes old. `X-Sentinela-Event` repeats `event_id`.

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use std::ops::Range;

use super::{
    base_headers, classify, header, is_token_byte, prio_index, Api, Capabilities, HelpdeskConfig,
    PriorityValue, Secret, Secrets, RESERVED_HEADERS,
};
use crate::policy::Priority;
use crate::ticket::render::BodyFormat;
use crate::ticket::{DeliveryError, HttpRequest, TicketContent, TicketRef, UpdateKind};

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new incident.
    Create,
    /// The incident recurred.
    Update,
    /// The incident recurred after its ticket was closed.
    Reopen,
    /// The priority was raised.
    Escalate,
    /// A storm digest.
    Digest,
}

impl Action {
    /// The `action` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Reopen => "reopen",
            Action::Escalate => "escalate",
            Action::Digest => "digest",
        }
    }

    /// The action of a comment of kind `kind`.
    pub fn of(kind: UpdateKind) -> Action {
        match kind {
            UpdateKind::Recurrence => Action::Update,
            UpdateKind::Escalation => Action::Escalate,
            UpdateKind::Reopen => Action::Reopen,
            UpdateKind::Digest => Action::Digest,
        }
    }
}

/// The names a `body_template` may use: the event's keys, and `event` (the whole event).
pub const PLACEHOLDERS: &[&str] = &[
    "action",
    "event_id",
    "fingerprint",
    "ticket",
    "priority",
    "title",
    "detector",
    "severity",
    "category",
    "criticality",
    "count",
    "first_seen",
    "last_seen",
    "source",
    "fields",
    "evidence",
    "description",
    "response",
    "references",
    "previous_ticket",
    "body",
    "event",
];

/// A parsed `body_template`: literal JSON text and placeholders, each knowing whether it sits
/// inside a JSON string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Slot { name: String, in_string: bool },
}

/// A webhook help desk.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: String,
    headers: Vec<(String, String)>,
    token: Option<Secret>,
    hmac: Option<Secret>,
    template: Option<Vec<Segment>>,
    priorities: [Value; 4],
}

impl Webhook {
    pub(crate) fn new(cfg: &HelpdeskConfig, secrets: Secrets) -> Result<Webhook, String> {
        let Secrets { token, hmac, .. } = secrets;
        let template =
            match &cfg.body_template {
                Some(t) => Some(parse_template(t.get_ref()).map_err(|e| {
                    format!("helpdesk {:?}: `body_template`: {e}", cfg.name.get_ref())
                })?),
                None => None,
            };
        Ok(Webhook {
            url: cfg.url.get_ref().clone(),
            headers: cfg
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                .collect(),
            token,
            hmac,
            template,
            priorities: cfg.webhook_priorities(),
        })
    }

    /// The ticket reference of an incident: its fingerprint.
    pub fn ticket_ref(&self, c: &TicketContent) -> TicketRef {
        TicketRef(c.fingerprint.clone())
    }

    /// The configured value of priority `p`.
    pub fn priority(&self, p: Priority) -> Value {
        self.priorities[prio_index(p)].clone()
    }

    /// The event object (see the module documentation), `event_id` included.
    pub fn event(
        &self,
        action: Action,
        ticket: &TicketRef,
        c: Option<&TicketContent>,
        text: Option<&str>,
        priority: Option<Priority>,
    ) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("action".into(), json!(action.as_str()));
        m.insert("ticket".into(), json!(ticket.0));
        match c {
            Some(c) => {
                m.insert("fingerprint".into(), json!(c.fingerprint));
                m.insert(
                    "priority".into(),
                    self.priority(priority.unwrap_or(c.priority)),
                );
                m.insert("title".into(), json!(c.title));
                m.insert("detector".into(), json!(c.detector));
                m.insert("severity".into(), json!(c.severity));
                m.insert("category".into(), json!(c.category));
                m.insert("criticality".into(), json!(c.criticality));
                m.insert("count".into(), json!(c.count));
                m.insert("first_seen".into(), json!(c.first_seen));
                m.insert("last_seen".into(), json!(c.last_seen));
                m.insert("source".into(), json!(c.source));
                // Log text: redacted and cut like the rendered body (`body`).
                m.insert("fields".into(), Value::Object(super::structured_fields(c)));
                m.insert(
                    "evidence".into(),
                    json!(super::structured_evidence(c, super::MAX_STRUCTURED_FIELDS)),
                );
                m.insert("description".into(), json!(c.description));
                m.insert("response".into(), json!(c.response));
                m.insert("references".into(), json!(c.references));
                m.insert("previous_ticket".into(), json!(c.previous_ticket));
            }
            None => {
                m.insert("fingerprint".into(), json!(ticket.0));
                if let Some(p) = priority {
                    m.insert("priority".into(), self.priority(p));
                }
            }
        }
        if let Some(t) = text {
            m.insert("body".into(), json!(t));
        }
        let digest = Sha256::digest(Value::Object(m.clone()).to_string().as_bytes());
        m.insert("event_id".into(), json!(hex(&digest[..16])));
        m
    }

    /// The body of `event`: the template filled in, or the event itself.
    pub fn body(&self, event: &Map<String, Value>) -> String {
        match &self.template {
            Some(t) => render(t, event),
            None => Value::Object(event.clone()).to_string(),
        }
    }

    /// The `POST` of `event`, signed with `timestamp` (unix seconds) when a key is set.
    pub fn request(&self, event: &Map<String, Value>, timestamp: u64) -> HttpRequest {
        let body = self.body(event);
        let mut headers = base_headers(true);
        for (k, v) in &self.headers {
            headers.push(header(k, v, false));
        }
        if let Some(t) = &self.token {
            headers.push(header("Authorization", &format!("Bearer {}", t.0), true));
        }
        if let Some(id) = event.get("event_id").and_then(Value::as_str) {
            headers.push(header("X-Sentinela-Event", id, false));
        }
        if let Some(key) = &self.hmac {
            headers.push(header(
                "X-Sentinela-Timestamp",
                &timestamp.to_string(),
                false,
            ));
            headers.push(header(
                "X-Sentinela-Signature",
                &signature(key.0.as_bytes(), timestamp, &body),
                false,
            ));
        }
        HttpRequest {
            method: "POST".into(),
            url: self.url.clone(),
            headers,
            body: Some(body),
        }
    }
}

impl Api for Webhook {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            find_open: false,
            read_status: false,
            separate_state_changes: false,
            resolve_on_close: false,
        }
    }

    fn body_format(&self) -> BodyFormat {
        BodyFormat::Plain
    }

    /// A `create` event.
    fn create_request(&self, c: &TicketContent, body: &str, now: u64) -> HttpRequest {
        let e = self.event(
            Action::Create,
            &self.ticket_ref(c),
            Some(c),
            Some(body),
            None,
        );
        self.request(&e, now)
    }

    /// Any 2xx is success (whatever the body), the rest is classified (as every answer of a
    /// webhook: [`Api::parse_ok`] keeps its default); the reference is the fingerprint.
    fn parse_create(
        &self,
        c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        classify(status, headers, body).map(|()| self.ticket_ref(c))
    }

    /// An `update`, `escalate`, `reopen` or `digest` event, after `kind`.
    fn comment_request(
        &self,
        t: &TicketRef,
        c: &TicketContent,
        kind: UpdateKind,
        text: &str,
        now: u64,
    ) -> HttpRequest {
        let e = self.event(Action::of(kind), t, Some(c), Some(text), None);
        self.request(&e, now)
    }

    /// A bare `reopen` event.
    fn reopen_request(&self, t: &TicketRef, now: u64) -> Option<HttpRequest> {
        let e = self.event(Action::Reopen, t, None, None, None);
        Some(self.request(&e, now))
    }

    /// A bare `escalate` event with the new priority.
    fn set_priority_request(&self, t: &TicketRef, p: Priority, now: u64) -> Option<HttpRequest> {
        let e = self.event(Action::Escalate, t, None, None, Some(p));
        Some(self.request(&e, now))
    }
}

/// The keys only the webhook uses.
pub(crate) const KEYS: &[&str] = &[
    "hmac_secret_env",
    "hmac_secret_file",
    "headers",
    "body_template",
];

/// Webhook-specific problems of a `[[helpdesk]]` entry.
pub(crate) fn problems(cfg: &HelpdeskConfig, err: &mut dyn FnMut(Option<Range<usize>>, String)) {
    for (name, v) in &cfg.headers {
        let lower = name.to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            err(
                Some(v.span()),
                format!("header name {name:?} is not a valid HTTP header name"),
            );
        } else if RESERVED_HEADERS.contains(&lower.as_str()) {
            err(
                Some(v.span()),
                format!(
                    "header {name:?} is set by sentinela (use `token_env` or `token_file` for \
                     Authorization)"
                ),
            );
        }
        if v.get_ref()
            .bytes()
            .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            err(
                Some(v.span()),
                format!("header {name:?}: the value has control characters"),
            );
        }
    }
    if let Some(t) = &cfg.body_template {
        if let Err(msg) = check_template(t.get_ref()) {
            err(Some(t.span()), format!("`body_template`: {msg}"));
        }
    }
    for v in cfg.priority_map.values() {
        if let PriorityValue::Text(s) = v.get_ref() {
            if s.is_empty() {
                err(Some(v.span()), "empty priority name".into());
            }
        }
    }
}

/// `sha256=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`: the `X-Sentinela-Signature` value.
pub fn signature(key: &[u8], timestamp: u64, body: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Splits a template into text and placeholders, tracking JSON string context in the text.
fn parse_template(t: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = t;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("{{") {
            let end = after.find("}}").ok_or_else(|| {
                format!(
                    "unterminated placeholder at character {}: expected `}}}}`",
                    t[..t.len() - rest.len()].chars().count() + 1
                )
            })?;
            let name = after[..end].trim();
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder {{{{{name}}}}}; known: {}",
                    PLACEHOLDERS.join(", ")
                ));
            }
            if !text.is_empty() {
                out.push(Segment::Text(std::mem::take(&mut text)));
            }
            out.push(Segment::Slot {
                name: name.to_string(),
                in_string,
            });
            escaped = false;
            rest = &after[end + 2..];
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        text.push(c);
        rest = &rest[c.len_utf8()..];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
    }
    if !text.is_empty() {
        out.push(Segment::Text(text));
    }
    Ok(out)
}

fn render(segments: &[Segment], event: &Map<String, Value>) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Text(t) => out.push_str(t),
            Segment::Slot { name, in_string } => {
                let whole;
                let v = if name == "event" {
                    whole = Value::Object(event.clone());
                    Some(&whole)
                } else {
                    event.get(name)
                };
                if *in_string {
                    let text = match v {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                    };
                    let quoted = Value::String(text).to_string();
                    out.push_str(&quoted[1..quoted.len() - 1]);
                } else {
                    match v {
                        Some(v) => out.push_str(&v.to_string()),
                        None => out.push_str("null"),
                    }
                }
            }
        }
    }
    out
}

/// Checks a `body_template`: placeholders known and closed, and valid JSON once filled with
/// sample values (text with quotes, backslashes and line breaks, objects, arrays, numbers).
pub fn check_template(t: &str) -> Result<(), String> {
    let segments = parse_template(t)?;
    let tricky = "a \"quoted\" \\ back\nslash </script> é";
    let mut e = Map::new();
    for name in PLACEHOLDERS {
        let v = match *name {
            "count" => json!(12),
            "fields" => json!({ "source.ip": "203.0.113.9", "user.name": tricky }),
            "evidence" | "references" => json!([tricky, "x"]),
            "previous_ticket" => Value::Null,
            "event" => continue,
            _ => json!(tricky),
        };
        e.insert((*name).to_string(), v);
    }
    let filled = render(&segments, &e);
    serde_json::from_str::<Value>(&filled)
        .map(|_| ())
        .map_err(|err| format!("not valid JSON after substitution: {err}; filled: {filled}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_encoded_for_their_context() {
        let t = parse_template(
            r#"{"text": "[{{priority}}] {{ title }}", "n": {{count}}, "f": {{fields}}, "x": "{{fields}}", "p": {{previous_ticket}}, "q": "{{missing_is_unknown}}"}"#,
        );
        assert!(t
            .unwrap_err()
            .contains("unknown placeholder {{missing_is_unknown}}"));
        let t = parse_template(
            r#"{"text": "[{{priority}}] {{ title }}", "n": {{count}}, "f": {{fields}}, "x": "{{fields}}", "p": {{previous_ticket}}, "b": "\"{{body}}"}"#,
        )
        .unwrap();
        let mut e = Map::new();
        e.insert("priority".into(), json!("P1"));
        e.insert("title".into(), json!("a\"b\n"));
        e.insert("count".into(), json!(3));
        e.insert("fields".into(), json!({"k": "v\""}));
        let out = render(&t, &e);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["text"], json!("[P1] a\"b\n"));
        assert_eq!(v["n"], json!(3));
        assert_eq!(v["f"], json!({"k": "v\""}));
        assert_eq!(v["x"], json!(r#"{"k":"v\""}"#));
        assert_eq!(v["p"], Value::Null);
        assert_eq!(v["b"], json!("\""));
    }

    #[test]
    fn templates_are_checked() {
        assert_eq!(
            check_template(r#"{"a": "{{title}}", "e": {{event}}}"#),
            Ok(())
        );
        assert!(check_template(r#"{"a": {{title}"#)
            .unwrap_err()
            .contains("unterminated placeholder at character 7"));
        assert!(check_template(r#"{"a": "{{title}}" "b": 1}"#)
            .unwrap_err()
            .contains("not valid JSON after substitution"));
    }

    #[test]
    fn signature_covers_timestamp_and_body() {
        // Known answer: HMAC-SHA256("key", "1700000000.{}").
        let s = signature(b"key", 1_700_000_000, "{}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64, "{s}");
        assert_ne!(s, signature(b"key", 1_700_000_001, "{}"));
        assert_ne!(s, signature(b"key", 1_700_000_000, "{} "));
        assert_ne!(s, signature(b"kez", 1_700_000_000, "{}"));
    }
}
