//! PagerDuty, Events API v2: every operation is a `POST /v2/enqueue` of one alert event.
//!
//! What PagerDuty does that shapes this adapter (Events API v2 documentation: "Send an Alert
//! Event", "Events API v2 Overview", "Events API Rate Limits" on developer.pagerduty.com):
//!
//! - There are no tickets to search or read: PagerDuty keeps its own *alert* per `dedup_key`.
//!   The incident fingerprint is the `dedup_key`, and the ticket reference is that key. A
//!   `trigger` with the key of an open alert is added to that alert's log (no second page); a
//!   `trigger` after the alert was resolved opens a new alert with the same key. So a
//!   recurrence, an escalation or a reopen is simply another `trigger` carrying the updated
//!   details ([`Capabilities::separate_state_changes`] is false, like the webhook), and
//!   `resolve` closes the alert when the incident is closed locally.
//! - Authentication is the integration's *routing key* (`token_env`/`token_file`), carried in
//!   the JSON body, not in a header. It is a secret like any token: the dry run shows the
//!   placeholder, and error messages are scrubbed of it by the shared adapter code.
//! - Answers: `202 {"status": "success", "dedup_key": ...}`; `400 {"status": "invalid event",
//!   "message": "Event object is invalid", "errors": [...]}` (the errors say what is wrong: they
//!   are quoted); `429` when the integration key sends more than about 120 events a minute,
//!   without `Retry-After`: PagerDuty asks to retry after some time (30 s apart), so a 429
//!   without `Retry-After` waits at least [`RATE_LIMIT_WAIT`]; 5xx and network errors retry.
//! - The Events API has no harmless call (every accepted event can page someone), so there is
//!   no check: `sentinela helpdesk test` says so.
//! - `payload.summary` holds at most 1024 characters, `dedup_key` 255.
//!
//! Priorities map to the alert `severity`: P1 `critical`, P2 `error`, P3 `warning`, P4 `info`
//! by default (`priority_map` takes those four names). The rest of the incident goes in
//! `payload.custom_details`, which responders see on the alert.

use std::ops::Range;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{
    api_base, base_headers, classify, cut, prio_index, unexpected, Api, Capabilities,
    HelpdeskConfig, PriorityValue, Secret, Secrets,
};
use crate::policy::Priority;
use crate::ticket::render::{self, BodyFormat};
use crate::ticket::{DeliveryError, HttpRequest, TicketContent, TicketRef, UpdateKind};

/// The path of alert events below the configured `url`.
const ENQUEUE_PATH: &str = "/v2/enqueue";

/// `payload.summary` limit.
const MAX_SUMMARY_CHARS: usize = 1024;

/// Evidence lines sent in `custom_details` (the newest): the alert shows the rest of the
/// story in its log of earlier triggers.
const MAX_EVIDENCE_LINES: usize = 20;

/// The severities PagerDuty accepts, from the most to the least severe.
pub const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

/// How long to wait after a 429 that carries no `Retry-After` (PagerDuty suggests retrying
/// 30 seconds apart).
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(30);

/// The keys only PagerDuty uses.
pub(crate) const KEYS: &[&str] = &["group"];

/// PagerDuty-specific problems of a `[[helpdesk]]` entry.
pub(crate) fn problems(cfg: &HelpdeskConfig, err: &mut dyn FnMut(Option<Range<usize>>, String)) {
    cfg.require_token("the integration's routing key (Events API v2)", err);
    if let Ok(u) = reqwest::Url::parse(cfg.url.get_ref()) {
        let path = u.path().trim_end_matches('/');
        if !(path.is_empty() || path == ENQUEUE_PATH) || u.query().is_some() {
            err(
                Some(cfg.url.span()),
                "a PagerDuty `url` is the Events API host (https://events.pagerduty.com, or \
                 https://events.eu.pagerduty.com), without a path"
                    .into(),
            );
        }
    }
    if let Some(g) = &cfg.group {
        if g.get_ref().trim().is_empty() {
            err(Some(g.span()), "`group` is empty".into());
        }
    }
    cfg.check_named_priorities(&SEVERITIES, err);
}

/// A PagerDuty service, reached through an Events API v2 integration.
#[derive(Debug, Clone)]
pub struct Pagerduty {
    /// `https://events.pagerduty.com/v2/enqueue`
    url: String,
    routing_key: Secret,
    group: Option<String>,
    /// `payload.source` when the incident names no host: this machine's name.
    host: String,
    severities: [String; 4],
}

impl Pagerduty {
    pub(crate) fn new(cfg: &HelpdeskConfig, secrets: Secrets) -> Result<Pagerduty, String> {
        let routing_key = secrets.token.ok_or_else(|| {
            format!(
                "helpdesk {:?}: PagerDuty needs the routing key: set `token_env` or \
                 `token_file`",
                cfg.name.get_ref()
            )
        })?;
        let defaults = SEVERITIES.map(|s| PriorityValue::Text(s.to_string()));
        let severities = cfg.priorities(defaults).map(|v| match v {
            PriorityValue::Text(s) => s.to_ascii_lowercase(),
            PriorityValue::Int(i) => i.to_string(), // refused by `problems`
        });
        Ok(Pagerduty {
            url: api_base(cfg.url.get_ref(), ENQUEUE_PATH),
            routing_key,
            group: cfg.group.as_ref().map(|g| g.get_ref().trim().to_string()),
            host: local_host_name(),
            severities,
        })
    }

    /// The alert severity of `p`.
    pub fn severity(&self, p: Priority) -> &str {
        &self.severities[prio_index(p)]
    }

    /// The `POST` of one event.
    fn request(&self, event: Value) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            url: self.url.clone(),
            headers: base_headers(true),
            body: Some(event.to_string()),
        }
    }

    /// A `trigger` event for `c`: `update` (the rendered comment of a recurrence, escalation
    /// or reopen) goes into `custom_details` with its kind.
    pub fn trigger(&self, c: &TicketContent, update: Option<(UpdateKind, &str)>) -> HttpRequest {
        let mut details = Map::new();
        details.insert("detector".into(), json!(c.detector));
        details.insert("priority".into(), json!(c.priority.to_string()));
        details.insert("severity".into(), json!(c.severity));
        details.insert("category".into(), json!(c.category));
        details.insert("criticality".into(), json!(c.criticality));
        details.insert("count".into(), json!(c.count));
        details.insert("first_seen".into(), json!(c.first_seen));
        details.insert("last_seen".into(), json!(c.last_seen));
        details.insert("log_source".into(), json!(c.source));
        // Log text, redacted and cut: at most 50 fields and 20 lines of 1,000 characters, with
        // the update text (at most 60 kB) well under the Events API's 512 kB per event.
        details.insert("fields".into(), Value::Object(super::structured_fields(c)));
        details.insert(
            "evidence".into(),
            json!(super::structured_evidence(c, MAX_EVIDENCE_LINES)),
        );
        details.insert("description".into(), json!(c.description));
        details.insert("response".into(), json!(c.response));
        details.insert("references".into(), json!(c.references));
        if let Some(p) = &c.previous_ticket {
            details.insert("previous_alert".into(), json!(p));
        }
        if let Some((kind, text)) = update {
            let kind = serde_json::to_value(kind).unwrap_or(Value::Null);
            details.insert("update".into(), kind);
            details.insert("update_text".into(), json!(text));
        }
        let mut payload = Map::new();
        payload.insert("summary".into(), json!(summary(c)));
        payload.insert("source".into(), json!(self.source(c)));
        payload.insert("severity".into(), json!(self.severity(c.priority)));
        if !c.last_seen.is_empty() {
            payload.insert("timestamp".into(), json!(c.last_seen));
        }
        payload.insert("component".into(), json!(c.category));
        if let Some(g) = &self.group {
            payload.insert("group".into(), json!(g));
        }
        payload.insert("class".into(), json!(c.detector));
        payload.insert("custom_details".into(), Value::Object(details));
        self.request(json!({
            "routing_key": self.routing_key.0,
            "event_action": "trigger",
            "dedup_key": c.fingerprint,
            "payload": payload,
            "client": "sentinela",
        }))
    }

    /// A `resolve` event for the alert `t`.
    pub fn resolve(&self, t: &TicketRef) -> HttpRequest {
        self.request(json!({
            "routing_key": self.routing_key.0,
            "event_action": "resolve",
            "dedup_key": t.0,
        }))
    }

    /// The affected system: the incident's `host.name`, else this machine (the logs are
    /// usually read where they are written).
    fn source(&self, c: &TicketContent) -> String {
        c.fields
            .get("host.name")
            .map(|h| super::clean_text(h))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| self.host.clone())
    }

    /// `202 {"status": "success", "dedup_key": ...}`, the key being ours.
    pub fn parse_event(
        &self,
        dedup_key: Option<&str>,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        if v.get("status").and_then(Value::as_str) != Some("success") {
            return Err(unexpected("no \"status\": \"success\"", body));
        }
        if let Some(want) = dedup_key {
            let got = v.get("dedup_key").and_then(Value::as_str);
            if got != Some(want) {
                return Err(DeliveryError::Blocked {
                    message: format!(
                        "PagerDuty accepted the event under dedup_key {:?} instead of {want:?}: \
                         an event rule or an integration that rewrites keys? Later events \
                         would not reach this alert",
                        got.map(super::clean_text).unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Classifies an answer like [`classify`], with PagerDuty's specifics: a 400 quotes the
/// `errors` list after the message, and a 429 without `Retry-After` waits at least
/// [`RATE_LIMIT_WAIT`].
pub fn classify_event(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), DeliveryError> {
    let reworded = error_text(body).map(|m| json!({ "message": m }).to_string());
    let body = reworded.as_deref().map_or(body, str::as_bytes);
    match classify(status, headers, body) {
        Err(DeliveryError::Retry {
            message,
            retry_after: None,
        }) if status == 429 => Err(DeliveryError::Retry {
            message: format!(
                "{message} (PagerDuty's limit is about 120 events a minute per integration key)"
            ),
            retry_after: Some(RATE_LIMIT_WAIT),
        }),
        r => r,
    }
}

/// `message: error; error` from a PagerDuty error body, when it has an `errors` list.
fn error_text(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let errors: Vec<String> = v
        .get("errors")?
        .as_array()?
        .iter()
        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
        .collect();
    let message = v.get("message").and_then(Value::as_str).unwrap_or("");
    Some(match (message.is_empty(), errors.is_empty()) {
        (_, true) => message.to_string(),
        (true, false) => errors.join("; "),
        (false, false) => format!("{message}: {}", errors.join("; ")),
    })
}

/// The alert summary: the ticket title on one line, within PagerDuty's limit.
fn summary(c: &TicketContent) -> String {
    cut(&render::title(c), MAX_SUMMARY_CHARS)
}

/// This machine's name (Linux), or `sentinela`.
fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| super::clean_text(&h))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sentinela".into())
}

impl Api for Pagerduty {
    fn classify_answer(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        classify_event(status, headers, body)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            find_open: false,
            read_status: false,
            separate_state_changes: false,
            resolve_on_close: true,
        }
    }

    fn body_format(&self) -> BodyFormat {
        BodyFormat::Plain
    }

    /// A `trigger`; the rendered body is not sent: the alert shows the structured details.
    fn create_request(&self, c: &TicketContent, _body: &str, _now: u64) -> HttpRequest {
        self.trigger(c, None)
    }

    fn parse_create(
        &self,
        c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        self.parse_event(Some(&c.fingerprint), status, headers, body)?;
        Ok(TicketRef(c.fingerprint.clone()))
    }

    /// Another `trigger` with the updated details: PagerDuty adds it to the open alert's log
    /// (or opens a new alert when the old one was resolved: the reopen). An escalation's
    /// trigger carries the new severity.
    fn comment_request(
        &self,
        _t: &TicketRef,
        c: &TicketContent,
        kind: UpdateKind,
        text: &str,
        _now: u64,
    ) -> HttpRequest {
        self.trigger(c, Some((kind, text)))
    }

    /// `None`: a bare event could not carry the alert's summary and details; the `Reopen`
    /// trigger that the outbox sends with the reopen comment does it.
    fn reopen_request(&self, _t: &TicketRef, _now: u64) -> Option<HttpRequest> {
        None
    }

    /// `None`: the escalation trigger (a comment of kind `Escalation`) carries the severity.
    fn set_priority_request(&self, _t: &TicketRef, _p: Priority, _now: u64) -> Option<HttpRequest> {
        None
    }

    fn resolve_request(&self, t: &TicketRef, _c: &TicketContent, _now: u64) -> Option<HttpRequest> {
        Some(self.resolve(t))
    }

    fn parse_ok(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        self.parse_event(None, status, headers, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::adapter::test_support::{config, problems_of, token};

    const PD: &str = "[[helpdesk]]\nname = \"pd\"\nkind = \"pagerduty\"\n\
                      url = \"https://events.pagerduty.com\"\ntoken_env = \"PD_ROUTING_KEY\"\n";

    #[test]
    fn config_problems_are_located() {
        assert!(problems_of(PD).is_empty(), "{:?}", problems_of(PD));
        let cases: &[(String, &str)] = &[
            (
                PD.replace("token_env = \"PD_ROUTING_KEY\"\n", ""),
                "3:8: helpdesk \"pd\": PagerDuty needs the integration's routing key",
            ),
            (
                PD.replace("pagerduty.com\"", "pagerduty.com/v1/events\""),
                "4:7: helpdesk \"pd\": a PagerDuty `url` is the Events API host",
            ),
            (
                format!("{PD}priority_map = {{ P1 = \"high\" }}\n"),
                "6:23: helpdesk \"pd\": priorities of PagerDuty are one of critical, error",
            ),
            (
                format!("{PD}priority_map = {{ P2 = 2 }}\n"),
                "6:23: helpdesk \"pd\": priorities of PagerDuty are one of",
            ),
            (
                format!("{PD}group = \" \"\n"),
                "6:9: helpdesk \"pd\": `group` is empty",
            ),
            (
                format!("{PD}queue = \"x\"\n"),
                "6:9: helpdesk \"pd\": `queue` does not apply to kind = \"pagerduty\"",
            ),
        ];
        for (text, want) in cases {
            let got = problems_of(text).join("\n");
            assert!(
                got.contains(want),
                "config:\n{text}\ngot: {got}\nwant: {want}"
            );
        }
        let ok = format!("{PD}priority_map = {{ P4 = \"Warning\" }}\ngroup = \"edge\"\n");
        assert!(problems_of(&ok).is_empty());
        let ok = PD.replace("pagerduty.com\"", "pagerduty.com/v2/enqueue/\"");
        assert!(problems_of(&ok).is_empty());
    }

    #[test]
    fn severities_default_and_map() {
        let pd = |text: &str| Pagerduty::new(&config(text), token("k")).unwrap();
        let a = pd(PD);
        let all = [Priority::P1, Priority::P2, Priority::P3, Priority::P4];
        assert_eq!(
            all.map(|p| a.severity(p).to_string()),
            ["critical", "error", "warning", "info"]
        );
        assert_eq!(a.url, "https://events.pagerduty.com/v2/enqueue");
        let b = pd(&format!(
            "{}priority_map = {{ P2 = \"Critical\", P4 = \"warning\" }}\n",
            PD.replace("pagerduty.com\"", "pagerduty.com/v2/enqueue\"")
        ));
        assert_eq!(
            all.map(|p| b.severity(p).to_string()),
            ["critical", "critical", "warning", "warning"]
        );
        assert_eq!(b.url, "https://events.pagerduty.com/v2/enqueue");
    }

    #[test]
    fn errors_quote_the_list_and_429_waits() {
        let e = classify_event(
            400,
            &[],
            br#"{"status":"invalid event","message":"Event object is invalid","errors":["'payload.severity' is invalid"]}"#,
        );
        assert_eq!(
            e,
            Err(DeliveryError::Blocked {
                message: "HTTP 400 Bad Request: Event object is invalid: 'payload.severity' is \
                          invalid"
                    .into()
            })
        );
        let Err(DeliveryError::Retry { retry_after, .. }) = classify_event(429, &[], b"") else {
            panic!()
        };
        assert_eq!(retry_after, Some(RATE_LIMIT_WAIT));
        let h = vec![("retry-after".to_string(), "5".to_string())];
        let Err(DeliveryError::Retry { retry_after, .. }) = classify_event(429, &h, b"") else {
            panic!()
        };
        assert_eq!(retry_after, Some(Duration::from_secs(5)));
    }
}
