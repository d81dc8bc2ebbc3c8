//! Request Tracker 5, REST 2.0 (`/REST/2.0`), with an auth token (`Authorization: token ...`).
//!
//! What RT does that shapes this adapter (checked against RT 5.0.3, see `scripts/rt/smoke.sh`):
//!
//! - Create (`POST /ticket`) answers 201 even when it *drops* a custom field value: a field not
//!   applied to the queue, a value a select field does not allow, or a user without
//!   `ModifyCustomField`. The fingerprint custom field is our dedup key, so every create is
//!   read back (`GET /ticket/ID`) and verified; a missing or different value is `Blocked`.
//! - Updates (`PUT /ticket/ID`) answer 200 with a JSON array of messages, also when RT refused
//!   the change ("Status 'x' isn't a valid status", "Permission Denied", "Invalid value for
//!   custom field"): such messages are `Blocked`. A change to the current value answers `[]`.
//! - The search (`GET /tickets?query=TicketSQL`) compares custom field values without case, so
//!   the fingerprints of the results are compared exactly after reading them back.
//! - Ids are JSON strings, except the top-level numeric `id` of `GET /ticket/ID`; `Priority`
//!   comes back as a string.
//! - Errors: 400 (malformed, "Could not create ticket. Queue not set", and "Permission Denied"
//!   for a comment on a missing ticket), 401 (bad token), 403 (no right on the queue), 404,
//!   415 (no `Content-Type: application/json`), all with `{"message": "..."}`.
//!
//! Tickets are searched by fingerprint across all queues, so a ticket an operator moved to
//! another queue (where the field also applies) is still found.

use serde_json::{json, Map, Value};

use std::ops::Range;

use super::{
    api_base, bad_cf_name, classify, header, id_digits, json_body, json_request, percent_encode,
    prio_index, unexpected, Api, HelpdeskConfig, Secret, Secrets,
};
use crate::detector::Severity;
use crate::policy::Priority;
use crate::ticket::render::BodyFormat;
use crate::ticket::UpdateKind;
use crate::ticket::{DeliveryError, HttpRequest, TicketContent, TicketRef, TicketStatus};

/// RT's `Subject` column holds 200 bytes; a longer subject is cut by the database, possibly in
/// the middle of a character. We cut it ourselves, at a character boundary, with an ellipsis.
const MAX_SUBJECT_BYTES: usize = 200;

/// Statuses of RT's default lifecycle.
const ACTIVE: &[&str] = &["new", "open", "stalled"];
const INACTIVE: &[&str] = &["resolved", "rejected", "deleted"];

/// Messages in a 200 answer that mean RT refused the change (compared without case).
const REFUSALS: &[&str] = &[
    "permission denied",
    "no permission",
    "isn't a valid",
    "is not a valid",
    "invalid",
    "could not",
    "couldn't",
    "not allowed",
    "failed",
    "illegal",
    "unauthorized",
    "forbidden",
];

/// The keys only RT uses.
pub(crate) const KEYS: &[&str] = &["queue", "fingerprint_field", "severity_field"];

/// RT-specific problems of a `[[helpdesk]]` entry.
pub(crate) fn problems(cfg: &HelpdeskConfig, err: &mut dyn FnMut(Option<Range<usize>>, String)) {
    cfg.require_token("an auth token", err);
    cfg.required("queue", &cfg.queue, "the queue tickets are created in", err);
    if let Some(f) = &cfg.fingerprint_field {
        if let Some(msg) = bad_cf_name(f.get_ref(), false) {
            err(Some(f.span()), format!("`fingerprint_field`: {msg}"));
        }
    }
    if let Some(f) = &cfg.severity_field {
        if let Some(msg) = bad_cf_name(f.get_ref(), true) {
            err(Some(f.span()), format!("`severity_field`: {msg}"));
        }
        if f.get_ref() == cfg.fingerprint_field() {
            err(
                Some(f.span()),
                "`severity_field` and `fingerprint_field` must differ".into(),
            );
        }
    }
    cfg.check_int_priorities(
        0,
        i64::MAX,
        "RT priorities are integers of 0 or more (e.g. P1 = 90)",
        err,
    );
}

/// A Request Tracker 5 help desk.
#[derive(Debug, Clone)]
pub struct Rt {
    /// The configured name, for log lines.
    name: String,
    /// `https://rt.example.com/REST/2.0`
    api: String,
    queue: String,
    token: Secret,
    fingerprint_field: String,
    severity_field: Option<String>,
    priorities: [i64; 4],
}

impl Rt {
    pub(crate) fn new(cfg: &HelpdeskConfig, secrets: Secrets) -> Result<Rt, String> {
        let token = secrets.token.ok_or_else(|| {
            format!(
                "helpdesk {:?}: RT needs an auth token: set `token_env` or `token_file`",
                cfg.name.get_ref()
            )
        })?;
        Ok(Rt {
            name: cfg.name.get_ref().clone(),
            api: api_base(cfg.url.get_ref(), "/REST/2.0"),
            queue: cfg
                .queue
                .as_ref()
                .map(|q| q.get_ref().trim().to_string())
                .unwrap_or_default(),
            token,
            fingerprint_field: cfg.fingerprint_field().to_string(),
            severity_field: cfg.severity_field().map(str::to_string),
            priorities: cfg.rt_priorities(),
        })
    }

    /// The REST 2.0 base (`https://rt.example.com/REST/2.0`).
    pub fn api(&self) -> &str {
        &self.api
    }

    /// The RT priority of `p`.
    pub fn priority(&self, p: Priority) -> i64 {
        self.priorities[prio_index(p)]
    }

    fn request(&self, method: &str, url: String, body: Option<Value>) -> HttpRequest {
        json_request(
            method,
            url,
            header("Authorization", &format!("token {}", self.token.0), true),
            body,
        )
    }

    fn ticket_url(&self, t: &TicketRef) -> String {
        format!("{}/ticket/{}", self.api, percent_encode(&t.0))
    }

    /// `GET /customfield/ID`.
    pub fn field_request(&self, id: &str) -> HttpRequest {
        self.request(
            "GET",
            format!("{}/customfield/{}", self.api, percent_encode(id)),
            None,
        )
    }

    /// Adds what the operator should check to RT's terse 401/415 messages.
    fn hint(&self, status: u16, e: DeliveryError) -> DeliveryError {
        match (status, e) {
            (401, DeliveryError::Blocked { message }) => DeliveryError::Blocked {
                message: format!(
                    "{message} (the auth token was refused: check token_env/token_file)"
                ),
            },
            (_, e) => e,
        }
    }
}

impl Api for Rt {
    fn classify_answer(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        classify(status, headers, body).map_err(|e| self.hint(status, e))
    }

    fn body_format(&self) -> BodyFormat {
        BodyFormat::Plain
    }

    /// `POST /ticket` with the queue, subject, priority, body and the fingerprint and severity
    /// custom fields.
    fn create_request(&self, c: &TicketContent, body: &str, _now: u64) -> HttpRequest {
        let mut cf = Map::new();
        cf.insert(self.fingerprint_field.clone(), json!(c.fingerprint));
        if let Some(f) = &self.severity_field {
            if !c.severity.is_empty() {
                cf.insert(f.clone(), json!(c.severity));
            }
        }
        let doc = json!({
            "Queue": self.queue,
            "Subject": subject(&c.title),
            "Priority": self.priority(c.priority),
            "Content": body,
            "ContentType": "text/plain",
            "CustomFields": cf,
        });
        self.request("POST", format!("{}/ticket", self.api), Some(doc))
    }

    /// The ticket id from `201 {"id": "7", ...}`.
    fn parse_create(
        &self,
        _c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        v.get("id")
            .and_then(id_digits)
            .map(TicketRef)
            .ok_or_else(|| unexpected("no ticket id", body))
    }

    /// `GET /ticket/ID`, to verify what create stored.
    fn read_back_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        Some(self.request("GET", self.ticket_url(t), None))
    }

    /// Verifies that the ticket read back holds the fingerprint (exactly) and the severity.
    fn parse_read_back(
        &self,
        t: &TicketRef,
        c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let fields = v
            .get("CustomFields")
            .ok_or_else(|| unexpected("no CustomFields", body))?;
        let dropped = |field: &str, want: &str, got: Option<Vec<String>>| {
            let found = match got {
                None => "the field is not on the ticket".to_string(),
                Some(v) if v.is_empty() => "no value was stored".to_string(),
                Some(v) => format!("it holds {v:?}"),
            };
            DeliveryError::Blocked {
                message: format!(
                    "ticket {} was created but custom field {field:?} does not hold {want:?} \
                     ({found}): RT drops values silently when the field is not applied to \
                     queue {:?}, the value is not allowed, or the user lacks \
                     ModifyCustomField; fix RT, then resolve or fix ticket {}",
                    t.0, self.queue, t.0
                ),
            }
        };
        let fp = cf_values(fields, &self.fingerprint_field);
        if !fp
            .as_ref()
            .is_some_and(|v| v.iter().any(|x| x == &c.fingerprint))
        {
            return Err(dropped(&self.fingerprint_field, &c.fingerprint, fp));
        }
        if let Some(f) = &self.severity_field {
            if !c.severity.is_empty() {
                let sev = cf_values(fields, f);
                if !sev
                    .as_ref()
                    .is_some_and(|v| v.iter().any(|x| x == &c.severity))
                {
                    return Err(dropped(f, &c.severity, sev));
                }
            }
        }
        Ok(())
    }

    /// `POST /ticket/ID/comment`: an internal comment (not mailed to requestors).
    fn comment_request(
        &self,
        t: &TicketRef,
        _c: &TicketContent,
        _kind: UpdateKind,
        text: &str,
        _now: u64,
    ) -> HttpRequest {
        let doc = json!({ "Content": text, "ContentType": "text/plain" });
        self.request("POST", format!("{}/comment", self.ticket_url(t)), Some(doc))
    }

    /// `GET /tickets?query='CF.{field}'='FP' AND Status='__Active__'`, oldest first, with the
    /// fields needed to verify the fingerprint exactly.
    fn find_open_request(&self, fingerprint: &str) -> Option<HttpRequest> {
        let query = format!(
            "'CF.{{{}}}'='{}' AND Status='__Active__'",
            self.fingerprint_field,
            ticket_sql_escape(fingerprint)
        );
        let url = format!(
            "{}/tickets?query={}&fields={}&orderby=id&order=ASC&per_page=100",
            self.api,
            percent_encode(&query),
            percent_encode("Status,Priority,CustomFields"),
        );
        Some(self.request("GET", url, None))
    }

    /// The oldest open ticket whose fingerprint equals `fingerprint` exactly (RT's `=` ignores
    /// case).
    fn parse_find_open(
        &self,
        fingerprint: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Option<TicketRef>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected("no items", body))?;
        let mut best: Option<(u64, String)> = None;
        for item in items {
            let Some(id) = item.get("id").and_then(id_digits) else {
                return Err(unexpected("a search result without an id", body));
            };
            let values = item
                .get("CustomFields")
                .and_then(|f| cf_values(f, &self.fingerprint_field));
            let Some(values) = values else {
                return Err(DeliveryError::Blocked {
                    message: format!(
                        "search results do not show custom field {:?}: the user needs \
                         SeeCustomField on it",
                        self.fingerprint_field
                    ),
                });
            };
            if !values.iter().any(|x| x == fingerprint) {
                continue; // same fingerprint but for case: another incident
            }
            let status = item.get("Status").and_then(Value::as_str).unwrap_or("");
            if INACTIVE.contains(&status) {
                continue;
            }
            let n: u64 = id.parse().unwrap_or(u64::MAX);
            if best.as_ref().is_none_or(|(b, _)| n < *b) {
                best = Some((n, id));
            }
        }
        Ok(best.map(|(_, id)| TicketRef(id)))
    }

    /// `GET /ticket/ID`, for its `Status`.
    fn status_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        Some(self.request("GET", self.ticket_url(t), None))
    }

    /// `new`, `open`, `stalled` are open; `resolved`, `rejected`, `deleted` closed; any other
    /// status (a custom lifecycle) is `Blocked` rather than guessed.
    fn parse_status(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketStatus, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let s = v
            .get("Status")
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected("no Status", body))?;
        if ACTIVE.contains(&s) {
            Ok(TicketStatus::Open)
        } else if INACTIVE.contains(&s) {
            Ok(TicketStatus::Closed)
        } else {
            Err(DeliveryError::Blocked {
                message: format!(
                    "unknown ticket status {:?} (a custom lifecycle?): only new, open, stalled, \
                     resolved, rejected and deleted are understood",
                    super::clean_text(s)
                ),
            })
        }
    }

    /// `PUT /ticket/ID {"Status": "open"}`.
    fn reopen_request(&self, t: &TicketRef, _now: u64) -> Option<HttpRequest> {
        Some(self.request("PUT", self.ticket_url(t), Some(json!({ "Status": "open" }))))
    }

    /// `PUT /ticket/ID {"Priority": N}`.
    fn set_priority_request(&self, t: &TicketRef, p: Priority, _now: u64) -> Option<HttpRequest> {
        let doc = json!({ "Priority": self.priority(p) });
        Some(self.request("PUT", self.ticket_url(t), Some(doc)))
    }

    /// 200/201 with a JSON array of messages, none of which is a refusal.
    fn parse_ok(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let msgs = v
            .as_array()
            .ok_or_else(|| unexpected("not an array of messages", body))?;
        for m in msgs {
            let text = m.as_str().map_or_else(|| m.to_string(), str::to_string);
            let lower = text.to_lowercase();
            if REFUSALS.iter().any(|r| lower.contains(r)) {
                return Err(DeliveryError::Blocked {
                    message: format!(
                        "RT answered {status} but refused: {}",
                        super::clean_text(&text)
                    ),
                });
            }
        }
        Ok(())
    }

    /// `GET /queue/NAME`: proves the URL and the token, and lists the queue's ticket custom
    /// fields.
    fn check_request(&self) -> Option<HttpRequest> {
        Some(self.request(
            "GET",
            format!("{}/queue/{}", self.api, percent_encode(&self.queue)),
            None,
        ))
    }

    /// The queue must exist, be enabled and list the fingerprint (and severity) custom fields
    /// among its ticket custom fields; returns the requests that read those fields.
    fn parse_check(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<HttpRequest>, DeliveryError> {
        classify(status, headers, body).map_err(|e| match (status, e) {
            (403 | 404, DeliveryError::Blocked { message }) => DeliveryError::Blocked {
                message: format!(
                    "{message} (queue {:?} does not exist, or the token's user lacks \
                     SeeQueue on it)",
                    self.queue
                ),
            },
            (_, e) => self.hint(status, e),
        })?;
        let v = json_body(body)?;
        if v.get("Disabled").and_then(Value::as_str) == Some("1") {
            return Err(DeliveryError::Blocked {
                message: format!("queue {:?} is disabled", self.queue),
            });
        }
        let fields = v
            .get("TicketCustomFields")
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected("no TicketCustomFields", body))?;
        let listed: Vec<(&str, String)> = fields
            .iter()
            .filter_map(|f| Some((f.get("name")?.as_str()?, f.get("id").and_then(id_digits)?)))
            .collect();
        let mut wanted = vec![(&self.fingerprint_field, "the fingerprint (dedup key)")];
        if let Some(f) = &self.severity_field {
            wanted.push((f, "the severity"));
        }
        let mut follow = Vec::new();
        for (name, role) in wanted {
            match listed.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some((_, id)) => follow.push(self.field_request(id)),
                None => {
                    let have: Vec<&str> = listed.iter().map(|(n, _)| *n).collect();
                    return Err(DeliveryError::Blocked {
                        message: format!(
                            "custom field {name:?} ({role}) is not applied to queue {:?} or \
                             the token's user cannot see it (SeeCustomField); the queue has: \
                             {}. RT would drop the value silently: create the field (ticket \
                             custom field), apply it to the queue and grant SeeCustomField \
                             and ModifyCustomField",
                            self.queue,
                            if have.is_empty() {
                                "no ticket custom fields".to_string()
                            } else {
                                have.join(", ")
                            }
                        ),
                    });
                }
            }
        }
        Ok(follow)
    }

    /// The fingerprint field must take free text; a select severity field must allow every
    /// severity. A 403 (no SeeCustomField on the field itself) skips this check with a
    /// warning: the read-back after each create still catches a dropped value.
    fn parse_check_field(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        if status == 403 {
            tracing::warn!(
                helpdesk = %self.name,
                "cannot read the custom field definitions (403): allowed values not checked"
            );
            return Ok(());
        }
        let v = self.json_answer(status, headers, body)?;
        let name = v.get("Name").and_then(Value::as_str).unwrap_or("");
        let kind = v.get("Type").and_then(Value::as_str).unwrap_or("");
        if v.get("Disabled").and_then(Value::as_str) == Some("1") {
            return Err(DeliveryError::Blocked {
                message: format!("custom field {name:?} is disabled"),
            });
        }
        if name.eq_ignore_ascii_case(&self.fingerprint_field) {
            if !matches!(
                kind,
                "Freeform" | "Text" | "Wikitext" | "Autocomplete" | "Combobox"
            ) {
                return Err(DeliveryError::Blocked {
                    message: format!(
                        "custom field {name:?} is of type {kind:?}: the fingerprint needs a \
                         free text field (Freeform, one value)"
                    ),
                });
            }
        } else if self
            .severity_field
            .as_deref()
            .is_some_and(|f| name.eq_ignore_ascii_case(f))
            && kind == "Select"
        {
            let allowed: Vec<&str> = v
                .get("Values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let missing: Vec<&str> = Severity::ALL
                .iter()
                .map(|s| s.as_str())
                .filter(|s| !allowed.contains(s))
                .collect();
            if !missing.is_empty() {
                return Err(DeliveryError::Blocked {
                    message: format!(
                        "select custom field {name:?} does not allow {}: RT would drop those \
                         severities silently (allowed: {})",
                        missing.join(", "),
                        allowed.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The values of custom field `name` in an RT `CustomFields` array (`None`: not listed).
fn cf_values(fields: &Value, name: &str) -> Option<Vec<String>> {
    let f = fields.as_array()?.iter().find(|f| {
        f.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })?;
    Some(
        f.get("values")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// Quotes a TicketSQL string value.
fn ticket_sql_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// A subject RT stores as is: one line (the title carries attacker text: no line breaks or
/// control characters), at most 200 bytes (RT's column).
pub fn subject(title: &str) -> String {
    let mut one_line = String::with_capacity(title.len());
    for c in title.trim().chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && one_line.ends_with(' ') {
            continue;
        }
        one_line.push(c);
    }
    if one_line.len() <= MAX_SUBJECT_BYTES {
        return one_line;
    }
    let mut cut = MAX_SUBJECT_BYTES - '…'.len_utf8();
    while !one_line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", one_line[..cut].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_line_and_fit_the_column() {
        assert_eq!(subject(" a\r\nb\tc  d "), "a b c d");
        let long = "é".repeat(150);
        let s = subject(&long);
        assert!(
            s.len() <= MAX_SUBJECT_BYTES && s.ends_with('…'),
            "{}",
            s.len()
        );
    }

    #[test]
    fn quotes() {
        assert_eq!(ticket_sql_escape(r"a'b\c"), r"a\'b\\c");
    }
}
