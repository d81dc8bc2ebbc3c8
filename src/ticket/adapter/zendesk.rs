//! Zendesk Support (Ticketing API v2), with an API token: HTTP basic authentication as
//! `{agent e-mail}/token:{api token}`.
//!
//! Documentation followed: tickets (JSON format, list by `external_id`, create, update)
//! <https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/>, comments
//! <https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/>,
//! idempotency <https://developer.zendesk.com/api-reference/ticketing/introduction/#idempotency>,
//! the current user <https://developer.zendesk.com/api-reference/ticketing/users/users/>,
//! groups <https://developer.zendesk.com/api-reference/ticketing/groups/groups/>,
//! authentication <https://developer.zendesk.com/api-reference/introduction/security-and-auth/>
//! and rate limits <https://developer.zendesk.com/api-reference/introduction/rate-limits/>.
//!
//! What Zendesk does that shapes this adapter:
//!
//! - The dedup key is the ticket's `external_id` ("an id you can use to link Zendesk Support
//!   tickets to local records"), set by the create itself; the tags `sentinela` and
//!   `sentinela-<fingerprint>` let agents build views and find every ticket of an incident.
//!   `GET /api/v2/tickets.json?external_id=` lists tickets from the database, with no search
//!   index delay. External ids need not be unique, so the answer is filtered: the stored
//!   `external_id` equal to the fingerprint (exactly) and an open status; the oldest wins.
//! - Creates carry an `Idempotency-Key`, derived from the fingerprint and the request body: a
//!   create retried after a lost answer gets the first ticket back (`x-idempotency-lookup:
//!   hit`), while a later ticket for the same incident (after the first was closed) follows
//!   another ticket, hence has another key. Zendesk keeps keys for a limited
//!   time; the search by `external_id` before every create covers the rest.
//! - The create answer echoes the ticket: an `external_id` other than the fingerprint is
//!   `Blocked` (the key would not find it again).
//! - The first comment and every later one are private (`public: false`, in `html_body`):
//!   nothing is mailed to the requester.
//! - Statuses: `new`, `open`, `pending` and `hold` are open, `solved` closed (with custom ticket
//!   statuses, `status` is still the category); any other is `Blocked`. A `solved` ticket
//!   reopens with `status: open`. A `closed` ticket cannot be updated at all (422 "Status:
//!   closed prevents ticket update"): it is [`TicketStatus::Final`], and a recurrence opens a
//!   new ticket that names it. Should a ticket close between the status read and the update,
//!   the 422 is `Blocked` with a message saying what to do.
//! - 429 comes with `Retry-After` (seconds); when it is missing, the `resets=N` of the
//!   endpoint's `Zendesk-RateLimit-*` header or `ratelimit-reset` is used instead.
//! - Errors: `{"error": "RecordInvalid", "description": "Record validation errors",
//!   "details": {"field": [{"description": "..."}]}}` (422), `{"error": "Couldn't
//!   authenticate you"}` (401), `{"error": {"title": "...", "message": "..."}}` (403): the
//!   messages quote all of it.
//! - `GET /api/v2/users/me.json` answers an anonymous user (`id: null`, role `end-user`) when
//!   the credentials were not accepted; the check reports that, and an end user, as `Blocked`.

use std::ops::Range;
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{
    api_base, basic_credentials, classify, clean_text, header, header_value, json_request,
    looks_like_email, merge_fields, numeric_id, one_line, percent_encode, prio_index,
    reserved_create_fields, unexpected, Api, HelpdeskConfig, PriorityValue, Secret, Secrets,
    MAX_RETRY_AFTER,
};
use crate::policy::Priority;
use crate::ticket::render::BodyFormat;
use crate::ticket::{
    DeliveryError, HttpRequest, TicketContent, TicketRef, TicketStatus, UpdateKind,
};

/// Subjects are cut to this many characters (they are shown in views and mail subjects).
const MAX_SUBJECT_CHARS: usize = 250;

/// Zendesk's priorities, highest first.
pub const PRIORITY_NAMES: [&str; 4] = ["urgent", "high", "normal", "low"];

/// Statuses (status categories) of Zendesk.
const OPEN_STATUSES: &[&str] = &["new", "open", "pending", "hold"];
const CLOSED_STATUSES: &[&str] = &["solved", "closed"];

/// The tag every ticket of sentinela carries, for views and triggers.
pub const TAG: &str = "sentinela";

/// The keys only Zendesk uses.
pub(crate) const KEYS: &[&str] = &["username", "group", "requester", "create_fields"];

/// Zendesk-specific problems of a `[[helpdesk]]` entry.
pub(crate) fn problems(cfg: &HelpdeskConfig, err: &mut dyn FnMut(Option<Range<usize>>, String)) {
    cfg.require_token(
        "an API token (Admin Center > Apps and integrations > Zendesk API)",
        err,
    );
    if let Some(u) = cfg.required(
        "username",
        &cfg.username,
        "the e-mail address of the agent the API token belongs to",
        err,
    ) {
        if !looks_like_email(u) {
            err(
                cfg.username.as_ref().map(|s| s.span()),
                format!("`username` must be the agent's e-mail address, not {u:?}"),
            );
        }
    }
    if let Some(g) = &cfg.group {
        if !is_number(g.get_ref().trim()) {
            err(
                Some(g.span()),
                "`group` is a Zendesk group id (digits, Admin Center > People > Groups)".into(),
            );
        }
    }
    if let Some(r) = &cfg.requester {
        if !looks_like_email(r.get_ref().trim()) {
            err(
                Some(r.span()),
                "`requester` must be an e-mail address (the ticket's requester)".into(),
            );
        }
    }
    cfg.check_named_priorities(&PRIORITY_NAMES, err);
    let mut reserved = vec![
        "subject",
        "raw_subject",
        "comment",
        "description",
        "priority",
        "external_id",
        // A ticket created solved or closed would never be found open again.
        "status",
    ];
    if cfg.group.is_some() {
        reserved.push("group_id");
    }
    if cfg.requester.is_some() {
        reserved.extend(["requester", "requester_id"]);
    }
    reserved_create_fields(cfg, &reserved, err);
}

/// A Zendesk help desk.
#[derive(Debug, Clone)]
pub struct Zendesk {
    /// `https://acme.zendesk.com/api/v2`
    api: String,
    /// `{email}/token:{token}`, base64: the basic authorization.
    credentials: Secret,
    group: Option<u64>,
    requester: Option<String>,
    priorities: [String; 4],
    create_fields: Map<String, Value>,
}

impl Zendesk {
    pub(crate) fn new(cfg: &HelpdeskConfig, secrets: Secrets) -> Result<Zendesk, String> {
        let name = cfg.name.get_ref();
        let token = secrets.token.ok_or_else(|| {
            format!(
                "helpdesk {name:?}: Zendesk needs an API token: set `token_env` or `token_file`"
            )
        })?;
        let email = cfg
            .username
            .as_ref()
            .map(|u| u.get_ref().trim().to_string())
            .ok_or_else(|| format!("helpdesk {name:?}: Zendesk needs `username`"))?;
        let defaults = PRIORITY_NAMES.map(|n| PriorityValue::Text(n.to_string()));
        let priorities = cfg.priorities(defaults).map(|v| match v {
            PriorityValue::Text(t) => t.to_ascii_lowercase(),
            PriorityValue::Int(i) => i.to_string(),
        });
        Ok(Zendesk {
            api: api_base(cfg.url.get_ref(), "/api/v2"),
            credentials: Secret(basic_credentials(&format!("{email}/token"), &token.0)),
            group: cfg
                .group
                .as_ref()
                .and_then(|g| g.get_ref().trim().parse().ok()),
            requester: cfg
                .requester
                .as_ref()
                .map(|r| r.get_ref().trim().to_string()),
            priorities,
            create_fields: cfg.create_fields_json(),
        })
    }

    /// The API base (`https://acme.zendesk.com/api/v2`).
    pub fn api(&self) -> &str {
        &self.api
    }

    /// The Zendesk priority of `p`.
    pub fn priority(&self, p: Priority) -> &str {
        &self.priorities[prio_index(p)]
    }

    /// The tag naming the incident of `fingerprint`.
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
        format!("{}/tickets/{}.json", self.api, percent_encode(&t.0))
    }

    /// `GET /groups/ID.json`: the configured group exists.
    pub fn group_request(&self, id: u64) -> HttpRequest {
        self.request("GET", format!("{}/groups/{id}.json", self.api), None)
    }
}

impl Api for Zendesk {
    fn classify_answer(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        classify_zendesk(status, headers, body)
    }

    fn body_format(&self) -> BodyFormat {
        BodyFormat::Html
    }

    /// `POST /tickets.json` with an `Idempotency-Key`: subject, a private HTML first comment,
    /// priority, `external_id` (the key), tags, requester and group when configured;
    /// `create_fields` fill in the rest.
    fn create_request(&self, c: &TicketContent, body: &str, _now: u64) -> HttpRequest {
        let mut t = Map::new();
        t.insert(
            "subject".into(),
            json!(one_line(&c.title, MAX_SUBJECT_CHARS, true)),
        );
        t.insert(
            "comment".into(),
            json!({ "html_body": body, "public": false }),
        );
        t.insert("priority".into(), json!(self.priority(c.priority)));
        t.insert("external_id".into(), json!(c.fingerprint));
        t.insert(
            "tags".into(),
            json!([TAG, Zendesk::key_tag(&c.fingerprint)]),
        );
        if let Some(r) = &self.requester {
            t.insert("requester".into(), json!({ "email": r }));
        }
        if let Some(g) = self.group {
            t.insert("group_id".into(), json!(g));
        }
        merge_fields(&mut t, &self.create_fields);
        let doc = json!({ "ticket": t });
        let mut req = self.request("POST", format!("{}/tickets.json", self.api), Some(doc));
        let key = idempotency_key(
            &c.fingerprint,
            c.previous_ticket.as_deref(),
            req.body.as_deref().unwrap_or(""),
        );
        req.headers.push(header("Idempotency-Key", &key, false));
        req
    }

    /// The ticket id from `201 {"ticket": {"id": 35436, "external_id": FP, ...}}`; another
    /// `external_id` is `Blocked`.
    fn parse_create(
        &self,
        c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let ticket = v
            .get("ticket")
            .ok_or_else(|| unexpected("no ticket", body))?;
        let id = ticket
            .get("id")
            .and_then(numeric_id)
            .ok_or_else(|| unexpected("no ticket id", body))?;
        let stored = ticket.get("external_id").and_then(Value::as_str);
        if stored != Some(c.fingerprint.as_str()) {
            return Err(DeliveryError::Blocked {
                message: format!(
                    "ticket {id} was created with external_id {stored:?} instead of {:?}: it \
                     cannot be found again and incidents would be duplicated (does a trigger \
                     or app rewrite external_id?); fix the ticket or close it",
                    c.fingerprint
                ),
            });
        }
        Ok(TicketRef(id.to_string()))
    }

    /// `PUT /tickets/ID.json` with a private HTML comment.
    fn comment_request(
        &self,
        t: &TicketRef,
        _c: &TicketContent,
        _kind: UpdateKind,
        text: &str,
        _now: u64,
    ) -> HttpRequest {
        let doc = json!({ "ticket": { "comment": { "html_body": text, "public": false } } });
        self.request("PUT", self.ticket_url(t), Some(doc))
    }

    /// `GET /tickets.json?external_id=FP`, newest first: closed tickets keep their
    /// `external_id` (a page holds 100), and the open one is among the newest.
    fn find_open_request(&self, fingerprint: &str) -> Option<HttpRequest> {
        let url = format!(
            "{}/tickets.json?sort_by=created_at&sort_order=desc&external_id={}",
            self.api,
            percent_encode(fingerprint)
        );
        Some(self.request("GET", url, None))
    }

    /// The oldest open ticket whose `external_id` is exactly `fingerprint`.
    fn parse_find_open(
        &self,
        fingerprint: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Option<TicketRef>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let tickets = v
            .get("tickets")
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected("no tickets", body))?;
        let mut best: Option<u64> = None;
        for t in tickets {
            let id = t
                .get("id")
                .and_then(numeric_id)
                .ok_or_else(|| unexpected("a ticket without an id", body))?;
            if t.get("external_id").and_then(Value::as_str) != Some(fingerprint) {
                continue; // another incident's key (the lookup may ignore case)
            }
            let open = t
                .get("status")
                .and_then(Value::as_str)
                .is_some_and(|s| OPEN_STATUSES.contains(&s));
            if open && best.is_none_or(|b| id < b) {
                best = Some(id);
            }
        }
        Ok(best.map(|id| TicketRef(id.to_string())))
    }

    /// `GET /tickets/ID.json`.
    fn status_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        Some(self.request("GET", self.ticket_url(t), None))
    }

    /// `new`, `open`, `pending`, `hold` are open; `solved` closed; `closed` closed for good;
    /// any other is `Blocked`.
    fn parse_status(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketStatus, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let s = v
            .get("ticket")
            .and_then(|t| t.get("status"))
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected("no ticket status", body))?;
        if OPEN_STATUSES.contains(&s) {
            Ok(TicketStatus::Open)
        } else if s == "closed" {
            Ok(TicketStatus::Final)
        } else if CLOSED_STATUSES.contains(&s) {
            Ok(TicketStatus::Closed)
        } else {
            Err(DeliveryError::Blocked {
                message: format!(
                    "unknown ticket status {:?}: only {} (open) and {} (closed) are understood",
                    clean_text(s),
                    OPEN_STATUSES.join(", "),
                    CLOSED_STATUSES.join(", ")
                ),
            })
        }
    }

    /// `PUT /tickets/ID.json {"ticket": {"status": "open"}}`.
    fn reopen_request(&self, t: &TicketRef, _now: u64) -> Option<HttpRequest> {
        let doc = json!({ "ticket": { "status": "open" } });
        Some(self.request("PUT", self.ticket_url(t), Some(doc)))
    }

    /// `PUT /tickets/ID.json {"ticket": {"priority": "urgent"}}`.
    fn set_priority_request(&self, t: &TicketRef, p: Priority, _now: u64) -> Option<HttpRequest> {
        let doc = json!({ "ticket": { "priority": self.priority(p) } });
        Some(self.request("PUT", self.ticket_url(t), Some(doc)))
    }

    /// A 2xx with a JSON body; a closed ticket's refusal says what to do.
    fn parse_ok(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        match self.json_answer(status, headers, body) {
            Ok(_) => Ok(()),
            Err(DeliveryError::Blocked { message })
                if status == 422 && message.contains("closed prevents ticket update") =>
            {
                Err(DeliveryError::Blocked {
                    message: format!(
                        "{message} (the ticket closed meanwhile: Zendesk never reopens or \
                         updates a closed ticket; `sentinela outbox retry` reads its status \
                         again and opens a new ticket that names it)"
                    ),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /users/me.json`: proves the URL and the credentials.
    fn check_request(&self) -> Option<HttpRequest> {
        Some(self.request("GET", format!("{}/users/me.json", self.api), None))
    }

    /// The credentials must be an agent's; returns the group check when a group is set.
    fn parse_check(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<HttpRequest>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let user = v.get("user").ok_or_else(|| unexpected("no user", body))?;
        if user.get("id").and_then(numeric_id).is_none() {
            return Err(DeliveryError::Blocked {
                message: "Zendesk answered as an anonymous user: the credentials were not \
                          accepted (`username` must be the agent's e-mail address, the token an \
                          active API token, and token access enabled in Admin Center > Apps \
                          and integrations > Zendesk API)"
                    .into(),
            });
        }
        let email = user.get("email").and_then(Value::as_str).unwrap_or("?");
        let role = user.get("role").and_then(Value::as_str).unwrap_or("");
        if role == "end-user" {
            return Err(DeliveryError::Blocked {
                message: format!(
                    "{email} is an end user: creating tickets with private comments needs an \
                     agent or admin"
                ),
            });
        }
        if user.get("suspended") == Some(&Value::Bool(true))
            || user.get("active") == Some(&Value::Bool(false))
        {
            return Err(DeliveryError::Blocked {
                message: format!("the user {email} is suspended or inactive"),
            });
        }
        Ok(self
            .group
            .map(|g| self.group_request(g))
            .into_iter()
            .collect())
    }

    /// The group must exist and not be deleted; a 403 (an agent who may not read groups)
    /// skips the check with a warning.
    fn parse_check_field(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let id = self.group.unwrap_or_default();
        if status == 403 {
            tracing::warn!(
                group = id,
                "cannot read the Zendesk group (403): not checked"
            );
            return Ok(());
        }
        if status == 404 {
            return Err(DeliveryError::Blocked {
                message: format!(
                    "group {id} does not exist (`group` is the id in Admin Center > People > \
                     Groups)"
                ),
            });
        }
        let v = self.json_answer(status, headers, body)?;
        let group = v.get("group").ok_or_else(|| unexpected("no group", body))?;
        if group.get("deleted") == Some(&Value::Bool(true)) {
            let name = group.get("name").and_then(Value::as_str).unwrap_or("?");
            return Err(DeliveryError::Blocked {
                message: format!("group {id} ({name}) is deleted"),
            });
        }
        Ok(())
    }

    /// The encoded credentials: a server or proxy that echoes the `Authorization` header
    /// would show them, and they decode to the token.
    fn derived_secrets(&self) -> Vec<Secret> {
        vec![self.credentials.clone()]
    }
}

/// `sentinela-` and 32 hex digits of SHA-256 over the fingerprint, the ticket it follows and
/// the request body: the same operation retried has the same key, another ticket for the
/// incident (which follows a closed one) another key.
fn idempotency_key(fingerprint: &str, previous: Option<&str>, body: &str) -> String {
    let mut h = Sha256::new();
    for part in [fingerprint, previous.unwrap_or(""), body] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let hex: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sentinela-{hex}")
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit())
}

/// [`classify`], with Zendesk's structured error message and, for a 429 without
/// `Retry-After`, the wait of its rate-limit headers.
fn classify_zendesk(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), DeliveryError> {
    let Err(e) = classify(status, headers, body) else {
        return Ok(());
    };
    let text = error_text(body);
    let reword = |message: String| match &text {
        Some(t) if (400..500).contains(&status) => {
            let head = message.split(": ").next().unwrap_or("").to_string();
            format!("{head}: {t}")
        }
        _ => message,
    };
    Err(match e {
        DeliveryError::Retry {
            message,
            retry_after,
        } => DeliveryError::Retry {
            message: reword(message),
            retry_after: match retry_after {
                None if status == 429 => reset_after(headers),
                given => given,
            },
        },
        DeliveryError::Blocked { message } => {
            let message = reword(message);
            DeliveryError::Blocked {
                message: if status == 401 {
                    format!(
                        "{message} (check `username` (the agent's e-mail address), the API \
                         token and that token access is enabled)"
                    )
                } else {
                    message
                },
            }
        }
    })
}

/// Zendesk's error body as one line: `error` (a code, or `{title, message}`), `description`
/// and each `details` entry; `None` when the body has none of them.
fn error_text(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let mut parts: Vec<String> = Vec::new();
    match v.get("error") {
        Some(Value::String(s)) => parts.push(s.clone()),
        Some(Value::Object(o)) => {
            for k in ["title", "message"] {
                if let Some(s) = o.get(k).and_then(Value::as_str) {
                    parts.push(s.to_string());
                }
            }
        }
        _ => {}
    }
    if let Some(s) = v.get("description").and_then(Value::as_str) {
        parts.push(s.to_string());
    }
    if let Some(details) = v.get("details").and_then(Value::as_object) {
        let mut d = Vec::new();
        for (field, items) in details {
            for item in items.as_array().into_iter().flatten() {
                if let Some(s) = item.get("description").and_then(Value::as_str) {
                    d.push(format!("{field}: {s}"));
                }
            }
        }
        if !d.is_empty() {
            parts.push(d.join("; "));
        }
    }
    (!parts.is_empty()).then(|| clean_text(&parts.join(": ")))
}

/// The wait named by Zendesk's rate-limit headers: `resets=N` in a `Zendesk-RateLimit-*`
/// header whose `remaining` is 0 (or any, when none is), else `ratelimit-reset: N`.
fn reset_after(headers: &[(String, String)]) -> Option<Duration> {
    let mut best: Option<u64> = None;
    for (name, value) in headers {
        if !name.to_ascii_lowercase().starts_with("zendesk-ratelimit-") {
            continue;
        }
        let field = |key: &str| {
            value.split(';').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == key).then(|| v.trim().parse::<u64>().ok())?
            })
        };
        if let (Some(resets), remaining) = (field("resets"), field("remaining")) {
            if remaining.is_none_or(|r| r == 0) {
                best = Some(best.map_or(resets, |b| b.max(resets)));
            }
        }
    }
    let secs = best.or_else(|| {
        header_value(headers, "ratelimit-reset")?
            .trim()
            .parse()
            .ok()
    })?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::adapter::test_support::{assert_problem, config, problems_of, token};

    const OK: &str = "[[helpdesk]]\nname = \"zd\"\nkind = \"zendesk\"\n\
                      url = \"https://acme.zendesk.com\"\ntoken_env = \"ZENDESK_TOKEN\"\n\
                      username = \"bot@example.com\"\n";

    fn zendesk(text: &str) -> Zendesk {
        Zendesk::new(&config(text), token("t0k3n")).unwrap()
    }

    #[test]
    fn a_complete_entry_has_no_problems() {
        assert_eq!(problems_of(OK), Vec::<String>::new());
        let full = format!(
            "{OK}group = \"360001\"\nrequester = \"secops@example.com\"\n\
             priority_map = {{ P1 = \"Urgent\", P4 = \"normal\" }}\n\
             create_fields = {{ type = \"incident\", tags = [\"ids\"] }}\n"
        );
        assert_eq!(problems_of(&full), Vec::<String>::new());
    }

    #[test]
    fn problems_are_located() {
        let bare = "[[helpdesk]]\nname = \"zd\"\nkind = \"zendesk\"\nurl = \"https://z.example\"\n";
        assert_problem(bare, "3:8: helpdesk \"zd\": Zendesk needs an API token");
        assert_problem(bare, "3:8: helpdesk \"zd\": Zendesk needs `username`");
        assert_problem(
            &OK.replace("bot@example.com", "bot"),
            "6:12: helpdesk \"zd\": `username` must be the agent's e-mail address",
        );
        assert_problem(
            &format!("{OK}group = \"Security\"\n"),
            "7:9: helpdesk \"zd\": `group` is a Zendesk group id",
        );
        assert_problem(
            &format!("{OK}requester = \"secops\"\n"),
            "7:13: helpdesk \"zd\": `requester` must be an e-mail address",
        );
        assert_problem(
            &format!("{OK}priority_map = {{ P2 = \"critical\" }}\n"),
            "7:23: helpdesk \"zd\": priorities of Zendesk are one of urgent, high, normal, low",
        );
        assert_problem(
            &format!("{OK}priority_map = {{ P2 = 2 }}\n"),
            "7:23: helpdesk \"zd\": priorities of Zendesk are one of",
        );
        assert_problem(
            &format!("{OK}create_fields = {{ external_id = \"x\" }}\n"),
            "7:17: helpdesk \"zd\": `create_fields` must not set `external_id`",
        );
        assert_problem(
            &format!("{OK}group = \"1\"\ncreate_fields = {{ group_id = 2 }}\n"),
            "8:17: helpdesk \"zd\": `create_fields` must not set `group_id`",
        );
        // Without `group`, the group may come from `create_fields`.
        assert_eq!(
            problems_of(&format!("{OK}create_fields = {{ group_id = 2 }}\n")),
            Vec::<String>::new()
        );
        assert_problem(
            &format!("{OK}queue = \"x\"\n"),
            "7:9: helpdesk \"zd\": `queue` does not apply to kind = \"zendesk\"",
        );
    }

    #[test]
    fn priorities_default_to_zendesks_names() {
        let z = zendesk(OK);
        let got: Vec<&str> = [Priority::P1, Priority::P2, Priority::P3, Priority::P4]
            .iter()
            .map(|p| z.priority(*p))
            .collect();
        assert_eq!(got, vec!["urgent", "high", "normal", "low"]);
        let z = zendesk(&format!("{OK}priority_map = {{ P1 = \"High\" }}\n"));
        assert_eq!(z.priority(Priority::P1), "high");
        assert_eq!(z.api(), "https://acme.zendesk.com/api/v2");
    }

    #[test]
    fn idempotency_keys_follow_the_request() {
        let a = idempotency_key("fp", None, "{\"a\":1}");
        assert_eq!(a, idempotency_key("fp", None, "{\"a\":1}"));
        assert_ne!(a, idempotency_key("fp", None, "{\"a\":2}"));
        assert_ne!(a, idempotency_key("fq", None, "{\"a\":1}"));
        assert_ne!(a, idempotency_key("fp", Some("41"), "{\"a\":1}"));
        assert!(a.starts_with("sentinela-") && a.len() == 42, "{a}");
    }

    #[test]
    fn error_bodies_and_rate_limit_headers() {
        let body = br#"{"error":"RecordInvalid","description":"Record validation errors","details":{"status":[{"description":"Status: closed prevents ticket update","error":"InvalidValue"}]}}"#;
        assert_eq!(
            error_text(body).as_deref(),
            Some("RecordInvalid: Record validation errors: status: Status: closed prevents ticket update")
        );
        let body =
            br#"{"error":{"title":"Forbidden","message":"You do not have access to this page."}}"#;
        assert_eq!(
            error_text(body).as_deref(),
            Some("Forbidden: You do not have access to this page.")
        );
        assert_eq!(error_text(br#"{"message":"x"}"#), None);
        let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(
            reset_after(&h(
                "zendesk-ratelimit-tickets-index",
                "total=100; remaining=0; resets=42"
            )),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            reset_after(&h(
                "zendesk-ratelimit-tickets-index",
                "total=100; remaining=7; resets=42"
            )),
            None
        );
        assert_eq!(
            reset_after(&h("ratelimit-reset", "9")),
            Some(Duration::from_secs(9))
        );
        assert_eq!(reset_after(&[]), None);
    }
}
