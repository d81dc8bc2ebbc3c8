//! Freshdesk (API v2), with an API key: HTTP basic authentication as `{api key}:X`.
//!
//! Documentation followed: <https://developers.freshdesk.com/api/> (authentication, rate
//! limit, error codes; tickets: create, view, update, filter; conversations: create a note;
//! agents: currently authenticated agent; groups: view a group).
//!
//! What Freshdesk does that shapes this adapter:
//!
//! - Tickets have no external-key field (`unique_external_id` belongs to contacts): the dedup
//!   key is the tag `sentinela-<fingerprint>` (next to a plain `sentinela` tag for views), set
//!   by the create itself. The create answer echoes the tags; one without the key is
//!   `Blocked`.
//! - The search is `GET /api/v2/search/tickets?query="..."`: the query value is URL-encoded and
//!   enclosed in double quotes, strings in single quotes, at most 512 characters, 30 results a
//!   page. `tag:'KEY' AND (status:2 OR status:3 OR status:>6)` asks for open, pending and
//!   custom statuses (their ids start at 6; `:>` means "greater than or equal"), so the closed
//!   tickets of earlier occurrences, which keep the tag, never crowd the page. Tag search
//!   ignores case: the tags of each result are compared exactly, and a result without `tags`
//!   cannot be verified (`Blocked`). The index lags updates by up to a few minutes and
//!   Freshdesk has no idempotency key: a create whose answer was lost and that is retried
//!   within that delay may be duplicated.
//! - A ticket's description is its first message, visible to the requester, who also gets
//!   Freshdesk's "new ticket" notification when it is enabled: `requester` (required by
//!   Freshdesk) should be the security team's own address. Comments are private notes
//!   (`POST /api/v2/tickets/ID/notes`, `private: true`); an answer with `private: false` is
//!   `Blocked`.
//! - Statuses: 2 open, 3 pending, 4 resolved, 5 closed; custom statuses (6 and up, such as
//!   "Waiting on Customer") are open. A ticket reopens with `status: 2`. Priorities: 1 low,
//!   2 medium, 3 high, 4 urgent.
//! - 429 comes with `Retry-After` (seconds); the limit is per minute (`X-RateLimit-Total`,
//!   `X-RateLimit-Remaining`, `X-RateLimit-Used-CurrentRequest`), so a 429 without
//!   `Retry-After` waits a minute.
//! - Errors: `{"description": "Validation failed", "errors": [{"field": "email", "message":
//!   "...", "code": "invalid_value"}]}` (400), `{"code": "invalid_credentials", "message":
//!   "..."}` (401), `{"code": "access_denied", ...}` (403): the messages quote all of it.

use std::ops::Range;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{
    api_base, basic_credentials, classify, clean_text, header, json_request, looks_like_email,
    merge_fields, numeric_id, one_line, percent_encode, prio_index, reserved_create_fields,
    unexpected, Api, HelpdeskConfig, PriorityValue, Secret, Secrets,
};
use crate::policy::Priority;
use crate::ticket::render::BodyFormat;
use crate::ticket::{
    DeliveryError, HttpRequest, TicketContent, TicketRef, TicketStatus, UpdateKind,
};

/// Subjects are cut to this many characters (they are shown in lists and mail subjects).
const MAX_SUBJECT_CHARS: usize = 250;

/// Default priorities for P1..P4: 4 urgent, 3 high, 2 medium, 1 low.
pub const DEFAULT_PRIORITIES: [i64; 4] = [4, 3, 2, 1];

/// Freshdesk's fixed statuses.
const OPEN: i64 = 2;
const RESOLVED: i64 = 4;
const CLOSED: i64 = 5;
/// Custom statuses have ids from this one up.
const FIRST_CUSTOM_STATUS: i64 = 6;

/// A 429 without `Retry-After` waits this long: Freshdesk's limits are per minute.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The tag every ticket of sentinela carries, for views and automations.
pub const TAG: &str = "sentinela";

/// The keys only Freshdesk uses.
pub(crate) const KEYS: &[&str] = &["group", "requester", "create_fields"];

/// Freshdesk-specific problems of a `[[helpdesk]]` entry.
pub(crate) fn problems(cfg: &HelpdeskConfig, err: &mut dyn FnMut(Option<Range<usize>>, String)) {
    cfg.require_token(
        "an API key (Profile settings > View API key, of an agent)",
        err,
    );
    if let Some(r) = cfg.required(
        "requester",
        &cfg.requester,
        "the e-mail address tickets are requested by, e.g. the security team's",
        err,
    ) {
        if !looks_like_email(r) {
            err(
                cfg.requester.as_ref().map(|s| s.span()),
                format!("`requester` must be an e-mail address, not {r:?}"),
            );
        }
    }
    if let Some(g) = &cfg.group {
        let g_trim = g.get_ref().trim();
        if g_trim.is_empty() || g_trim.len() > 19 || !g_trim.bytes().all(|b| b.is_ascii_digit()) {
            err(
                Some(g.span()),
                "`group` is a Freshdesk group id (digits, Admin > Groups)".into(),
            );
        }
    }
    cfg.check_int_priorities(
        1,
        4,
        "Freshdesk priorities are 1 (low), 2 (medium), 3 (high) or 4 (urgent)",
        err,
    );
    let mut reserved = vec!["subject", "description", "email", "priority", "status"];
    if cfg.group.is_some() {
        reserved.push("group_id");
    }
    reserved_create_fields(cfg, &reserved, err);
}

/// A Freshdesk help desk.
#[derive(Debug, Clone)]
pub struct Freshdesk {
    /// `https://acme.freshdesk.com/api/v2`
    api: String,
    /// `{api key}:X`, base64: the basic authorization.
    credentials: Secret,
    requester: String,
    group: Option<u64>,
    priorities: [i64; 4],
    create_fields: Map<String, Value>,
}

impl Freshdesk {
    pub(crate) fn new(cfg: &HelpdeskConfig, secrets: Secrets) -> Result<Freshdesk, String> {
        let key = secrets.token.ok_or_else(|| {
            format!(
                "helpdesk {:?}: Freshdesk needs an API key: set `token_env` or `token_file`",
                cfg.name.get_ref()
            )
        })?;
        let defaults = DEFAULT_PRIORITIES.map(PriorityValue::Int);
        let mut priorities = DEFAULT_PRIORITIES;
        for (i, v) in cfg.priorities(defaults).iter().enumerate() {
            if let PriorityValue::Int(n) = v {
                priorities[i] = *n;
            }
        }
        Ok(Freshdesk {
            api: api_base(cfg.url.get_ref(), "/api/v2"),
            credentials: Secret(basic_credentials(&key.0, "X")),
            requester: cfg
                .requester
                .as_ref()
                .map(|r| r.get_ref().trim().to_string())
                .unwrap_or_default(),
            group: cfg
                .group
                .as_ref()
                .and_then(|g| g.get_ref().trim().parse().ok()),
            priorities,
            create_fields: cfg.create_fields_json(),
        })
    }

    /// The API base (`https://acme.freshdesk.com/api/v2`).
    pub fn api(&self) -> &str {
        &self.api
    }

    /// The Freshdesk priority of `p`.
    pub fn priority(&self, p: Priority) -> i64 {
        self.priorities[prio_index(p)]
    }

    /// The tag carrying the dedup key of `fingerprint`.
    pub fn key_tag(fingerprint: &str) -> String {
        format!("{TAG}-{fingerprint}")
    }

    fn request(&self, method: &str, url: String, body: Option<Value>) -> HttpRequest {
        json_request(
            method,
            url,
            header(
                "Authorization",
                &format!("Basic {}", self.credentials.0),
                true,
            ),
            body,
        )
    }

    fn ticket_url(&self, t: &TicketRef) -> String {
        format!("{}/tickets/{}", self.api, percent_encode(&t.0))
    }

    /// The search query: the key tag among open, pending and custom statuses.
    pub fn search_query(fingerprint: &str) -> String {
        format!(
            "\"tag:'{}' AND (status:2 OR status:3 OR status:>{FIRST_CUSTOM_STATUS})\"",
            Freshdesk::key_tag(fingerprint).replace(['\'', '"', '\\'], "")
        )
    }

    /// `GET /groups/ID`: the configured group exists.
    pub fn group_request(&self, id: u64) -> HttpRequest {
        self.request("GET", format!("{}/groups/{id}", self.api), None)
    }
}

impl Api for Freshdesk {
    fn classify_answer(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        classify_freshdesk(status, headers, body)
    }

    fn body_format(&self) -> BodyFormat {
        BodyFormat::Html
    }

    /// `POST /tickets`: subject, the HTML description, requester e-mail, priority, status
    /// open, the tags (dedup key included) and the group when configured; `create_fields`
    /// fill in the rest.
    fn create_request(&self, c: &TicketContent, body: &str, _now: u64) -> HttpRequest {
        let mut doc = Map::new();
        doc.insert(
            "subject".into(),
            json!(one_line(&c.title, MAX_SUBJECT_CHARS, true)),
        );
        doc.insert("description".into(), json!(body));
        doc.insert("email".into(), json!(self.requester));
        doc.insert("priority".into(), json!(self.priority(c.priority)));
        doc.insert("status".into(), json!(OPEN));
        doc.insert(
            "tags".into(),
            json!([TAG, Freshdesk::key_tag(&c.fingerprint)]),
        );
        if let Some(g) = self.group {
            doc.insert("group_id".into(), json!(g));
        }
        merge_fields(&mut doc, &self.create_fields);
        self.request(
            "POST",
            format!("{}/tickets", self.api),
            Some(Value::Object(doc)),
        )
    }

    /// The ticket id from `201 {"id": 79, "tags": [...], ...}`; tags without the key are
    /// `Blocked`.
    fn parse_create(
        &self,
        c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let id = v
            .get("id")
            .and_then(numeric_id)
            .ok_or_else(|| unexpected("no ticket id", body))?;
        if let Some(tags) = v.get("tags").and_then(Value::as_array) {
            let want = Freshdesk::key_tag(&c.fingerprint);
            if !tags.iter().any(|t| t.as_str() == Some(want.as_str())) {
                return Err(DeliveryError::Blocked {
                    message: format!(
                        "ticket {id} was created without the tag {want:?} (it has {}): it \
                         cannot be found again and incidents would be duplicated (does an \
                         automation rewrite tags?); fix the ticket or close it",
                        Value::Array(tags.clone())
                    ),
                });
            }
        }
        Ok(TicketRef(id.to_string()))
    }

    /// `POST /tickets/ID/notes`: a private HTML note.
    fn comment_request(
        &self,
        t: &TicketRef,
        _c: &TicketContent,
        _kind: UpdateKind,
        text: &str,
        _now: u64,
    ) -> HttpRequest {
        let doc = json!({ "body": text, "private": true });
        self.request("POST", format!("{}/notes", self.ticket_url(t)), Some(doc))
    }

    /// `GET /search/tickets?query="tag:'KEY' AND (...)"`.
    fn find_open_request(&self, fingerprint: &str) -> Option<HttpRequest> {
        let url = format!(
            "{}/search/tickets?query={}",
            self.api,
            percent_encode(&Freshdesk::search_query(fingerprint))
        );
        Some(self.request("GET", url, None))
    }

    /// The oldest open result whose tags hold the key exactly.
    fn parse_find_open(
        &self,
        fingerprint: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Option<TicketRef>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let results = v
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected("no results", body))?;
        let want = Freshdesk::key_tag(fingerprint);
        let mut best: Option<u64> = None;
        for r in results {
            let id = r
                .get("id")
                .and_then(numeric_id)
                .ok_or_else(|| unexpected("a search result without an id", body))?;
            // Freshdesk's documented search answers do not always show `tags`: the query
            // already matched the tag (without case: our keys are lower-case hex, so only a
            // tag typed by hand could differ in case). When the tags are shown, they are
            // compared exactly.
            if let Some(tags) = r.get("tags").and_then(Value::as_array) {
                if !tags.iter().any(|t| t.as_str() == Some(want.as_str())) {
                    continue; // another incident's key, differing in case
                }
            }
            let open = r.get("status").and_then(Value::as_i64).is_some_and(is_open);
            if open && best.is_none_or(|b| id < b) {
                best = Some(id);
            }
        }
        Ok(best.map(|id| TicketRef(id.to_string())))
    }

    /// `GET /tickets/ID`.
    fn status_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        Some(self.request("GET", self.ticket_url(t), None))
    }

    /// 2, 3 and custom statuses (6+) are open; 4 and 5 closed; any other is `Blocked`.
    fn parse_status(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketStatus, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let s = v
            .get("status")
            .and_then(Value::as_i64)
            .ok_or_else(|| unexpected("no ticket status", body))?;
        // A ticket marked as spam or deleted answers 405 to every update: closed for good.
        if v.get("spam") == Some(&Value::Bool(true)) || v.get("deleted") == Some(&Value::Bool(true))
        {
            return Ok(TicketStatus::Final);
        }
        if is_open(s) {
            Ok(TicketStatus::Open)
        } else if s == RESOLVED || s == CLOSED {
            Ok(TicketStatus::Closed)
        } else {
            Err(DeliveryError::Blocked {
                message: format!(
                    "unknown ticket status {s}: 2 (open), 3 (pending) and custom statuses (6 \
                     and up) are open, 4 (resolved) and 5 (closed) closed"
                ),
            })
        }
    }

    /// `PUT /tickets/ID {"status": 2}`.
    fn reopen_request(&self, t: &TicketRef, _now: u64) -> Option<HttpRequest> {
        Some(self.request("PUT", self.ticket_url(t), Some(json!({ "status": OPEN }))))
    }

    /// `PUT /tickets/ID {"priority": N}`.
    fn set_priority_request(&self, t: &TicketRef, p: Priority, _now: u64) -> Option<HttpRequest> {
        let doc = json!({ "priority": self.priority(p) });
        Some(self.request("PUT", self.ticket_url(t), Some(doc)))
    }

    /// A 2xx with a JSON body; a note Freshdesk made public is `Blocked`.
    fn parse_ok(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        if v.get("private") == Some(&Value::Bool(false)) {
            return Err(DeliveryError::Blocked {
                message: format!(
                    "Freshdesk stored the note of ticket {} as public (visible to the \
                     requester)",
                    v.get("ticket_id").map_or("?".into(), Value::to_string)
                ),
            });
        }
        Ok(())
    }

    /// `GET /agents/me`: proves the URL and that the key is an agent's.
    fn check_request(&self) -> Option<HttpRequest> {
        Some(self.request("GET", format!("{}/agents/me", self.api), None))
    }

    /// The key must be an active agent's; returns the group check when a group is set.
    fn parse_check(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<HttpRequest>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        if v.get("id").and_then(numeric_id).is_none() {
            return Err(unexpected("no agent id", body));
        }
        let contact = v.get("contact");
        if contact.and_then(|c| c.get("active")) == Some(&Value::Bool(false)) {
            let email = contact
                .and_then(|c| c.get("email"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            return Err(DeliveryError::Blocked {
                message: format!("the agent {email} of the API key is deactivated"),
            });
        }
        Ok(self
            .group
            .map(|g| self.group_request(g))
            .into_iter()
            .collect())
    }

    /// The group must exist; a 403 (an agent who may not read groups) skips the check with a
    /// warning.
    fn parse_check_field(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let id = self.group.unwrap_or_default();
        match status {
            403 => {
                tracing::warn!(
                    group = id,
                    "cannot read the Freshdesk group (403): not checked"
                );
                Ok(())
            }
            404 => Err(DeliveryError::Blocked {
                message: format!("group {id} does not exist (`group` is the id in Admin > Groups)"),
            }),
            _ => {
                let v = self.json_answer(status, headers, body)?;
                v.get("id")
                    .and_then(numeric_id)
                    .map(|_| ())
                    .ok_or_else(|| unexpected("no group id", body))
            }
        }
    }

    /// The encoded credentials: a server or proxy that echoes the `Authorization` header
    /// would show them, and they decode to the token.
    fn derived_secrets(&self) -> Vec<Secret> {
        vec![self.credentials.clone()]
    }
}

fn is_open(status: i64) -> bool {
    status == OPEN || status == 3 || status >= FIRST_CUSTOM_STATUS
}

/// [`classify`], with Freshdesk's validation errors spelled out, a hint on 401/403 and a
/// minute's wait for a 429 without `Retry-After`.
fn classify_freshdesk(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), DeliveryError> {
    let Err(e) = classify(status, headers, body) else {
        return Ok(());
    };
    Err(match e {
        DeliveryError::Retry {
            message,
            retry_after,
        } => DeliveryError::Retry {
            message,
            retry_after: retry_after.or((status == 429).then_some(RATE_LIMIT_WAIT)),
        },
        DeliveryError::Blocked { message } => {
            let message = match error_text(body) {
                Some(t) if (400..500).contains(&status) => {
                    format!("{}: {t}", message.split(": ").next().unwrap_or(""))
                }
                _ => message,
            };
            DeliveryError::Blocked {
                message: match status {
                    401 => {
                        format!("{message} (the API key was refused: check token_env/token_file)")
                    }
                    403 => format!(
                        "{message} (the API key's agent lacks a permission, or the key is not \
                         an agent's)"
                    ),
                    _ => message,
                },
            }
        }
    })
}

/// A validation error as one line: `description`, then each `field: message`; `None` when the
/// body has no `errors` list.
fn error_text(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let errors = v.get("errors")?.as_array()?;
    let mut parts: Vec<String> = Vec::new();
    if let Some(d) = v.get("description").and_then(Value::as_str) {
        parts.push(d.to_string());
    }
    let items: Vec<String> = errors
        .iter()
        .filter_map(|e| {
            let msg = e.get("message").and_then(Value::as_str)?;
            Some(match e.get("field").and_then(Value::as_str) {
                Some(f) if !f.is_empty() => format!("{f}: {msg}"),
                _ => msg.to_string(),
            })
        })
        .collect();
    if !items.is_empty() {
        parts.push(items.join("; "));
    }
    (!parts.is_empty()).then(|| clean_text(&parts.join(": ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::adapter::test_support::{assert_problem, config, problems_of, token};

    const OK: &str = "[[helpdesk]]\nname = \"fd\"\nkind = \"freshdesk\"\n\
                      url = \"https://acme.freshdesk.com\"\ntoken_env = \"FRESHDESK_KEY\"\n\
                      requester = \"secops@example.com\"\n";

    fn freshdesk(text: &str) -> Freshdesk {
        Freshdesk::new(&config(text), token("k3y")).unwrap()
    }

    #[test]
    fn a_complete_entry_has_no_problems() {
        assert_eq!(problems_of(OK), Vec::<String>::new());
        let full = format!(
            "{OK}group = \"42\"\npriority_map = {{ P1 = 4, P4 = 2 }}\n\
             create_fields = {{ type = \"Incident\", tags = [\"ids\"] }}\n"
        );
        assert_eq!(problems_of(&full), Vec::<String>::new());
    }

    #[test]
    fn problems_are_located() {
        let bare =
            "[[helpdesk]]\nname = \"fd\"\nkind = \"freshdesk\"\nurl = \"https://f.example\"\n";
        assert_problem(bare, "3:8: helpdesk \"fd\": Freshdesk needs an API key");
        assert_problem(bare, "3:8: helpdesk \"fd\": Freshdesk needs `requester`");
        assert_problem(
            &OK.replace("secops@example.com", "secops"),
            "6:13: helpdesk \"fd\": `requester` must be an e-mail address",
        );
        assert_problem(
            &format!("{OK}group = \"Security\"\n"),
            "7:9: helpdesk \"fd\": `group` is a Freshdesk group id",
        );
        assert_problem(
            &format!("{OK}priority_map = {{ P1 = 5 }}\n"),
            "7:23: helpdesk \"fd\": Freshdesk priorities are 1 (low)",
        );
        assert_problem(
            &format!("{OK}priority_map = {{ P1 = \"urgent\" }}\n"),
            "7:23: helpdesk \"fd\": Freshdesk priorities are 1 (low)",
        );
        assert_problem(
            &format!("{OK}create_fields = {{ status = 3 }}\n"),
            "7:17: helpdesk \"fd\": `create_fields` must not set `status`",
        );
        assert_problem(
            &format!("{OK}username = \"x\"\n"),
            "7:12: helpdesk \"fd\": `username` does not apply to kind = \"freshdesk\"",
        );
    }

    #[test]
    fn priorities_default_to_freshdesks_numbers() {
        let f = freshdesk(OK);
        let got: Vec<i64> = [Priority::P1, Priority::P2, Priority::P3, Priority::P4]
            .iter()
            .map(|p| f.priority(*p))
            .collect();
        assert_eq!(got, vec![4, 3, 2, 1]);
        let f = freshdesk(&format!("{OK}priority_map = {{ P2 = 4 }}\n"));
        assert_eq!(f.priority(Priority::P2), 4);
        assert_eq!(f.api(), "https://acme.freshdesk.com/api/v2");
    }

    #[test]
    fn statuses_and_queries() {
        assert!(is_open(2) && is_open(3) && is_open(6) && is_open(17));
        assert!(!is_open(4) && !is_open(5) && !is_open(1));
        assert_eq!(
            Freshdesk::search_query("ab12"),
            "\"tag:'sentinela-ab12' AND (status:2 OR status:3 OR status:>6)\""
        );
        // A quote in a key could not break out of the string.
        assert_eq!(
            Freshdesk::search_query("a'b"),
            "\"tag:'sentinela-ab' AND (status:2 OR status:3 OR status:>6)\""
        );
    }

    #[test]
    fn validation_errors_are_spelled_out() {
        let body = br#"{"description":"Validation failed","errors":[{"field":"email","message":"There is no contact matching the given email","code":"invalid_value"},{"field":"priority","message":"It should be one of these values: '1,2,3,4'","code":"invalid_value"}]}"#;
        assert_eq!(
            error_text(body).as_deref(),
            Some("Validation failed: email: There is no contact matching the given email; priority: It should be one of these values: '1,2,3,4'")
        );
        assert_eq!(error_text(br#"{"code":"x","message":"y"}"#), None);
        let Err(DeliveryError::Blocked { message }) = classify_freshdesk(400, &[], body) else {
            panic!()
        };
        assert!(
            message.starts_with("HTTP 400 Bad Request: Validation failed: email: There is no"),
            "{message}"
        );
        let Err(DeliveryError::Retry { retry_after, .. }) = classify_freshdesk(429, &[], b"{}")
        else {
            panic!()
        };
        assert_eq!(retry_after, Some(RATE_LIMIT_WAIT));
    }
}
