//! ServiceNow, Table API (`/api/now/table/incident`): security incidents become ITSM
//! incidents.
//!
//! What ServiceNow does that shapes this adapter (ServiceNow documentation: "Table API",
//! "Incident Management state model", "Inbound REST API rate limiting", "API Key and HMAC
//! Authentication for inbound REST APIs"):
//!
//! - The dedup key goes in the incident's own external key, `correlation_id` (with
//!   `correlation_display = "sentinela"`), which encoded queries can filter on:
//!   `correlation_id=KEY^active=true^stateNOT IN6,7,8^ORDERBYsys_created_on`. String
//!   comparisons in queries ignore case on most instances, so the keys of the results are
//!   compared exactly.
//! - A write the user may not make on one field (a field ACL, a business rule) is dropped
//!   silently and the create still answers 201. Every create therefore asks for the stored
//!   `correlation_id`, `assignment_group` and `caller_id` back (`sysparm_fields`) and a
//!   missing value is `Blocked`. Likewise a reopen asks for the `state` back: a closed
//!   incident is read-only under the default ACLs, and a refused reopen is `Blocked`.
//! - Values come back as strings (`"active": "true"`, `"state": "2"`), references as sys_ids
//!   with `sysparm_exclude_reference_link=true`.
//! - States: 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed, 8 Canceled. A resolved
//!   incident is still `active` (it closes itself after a few days), so 6, 7 and 8, and
//!   anything not `active`, count as closed. Reopening sets state 2: resolved incidents
//!   reopen, closed and canceled ones normally cannot (the operation is then `Blocked`
//!   with ServiceNow's answer).
//! - Comments are work notes (`work_notes`, visible to agents only), added by `PATCH`.
//! - Priority is derived by ServiceNow from impact and urgency (1 high .. 3 low each);
//!   `priority_map` values are `"impact/urgency"` (`P2 = "1/2"`), or one number for both.
//!   Defaults: P1 `1/1` (Critical), P2 `1/2` (High), P3 `2/2` (Moderate), P4 `2/3` (Low).
//! - Errors are `{"error": {"message": ..., "detail": ...}, "status": "failure"}`; both parts
//!   are quoted. A 429 (an inbound rate limit rule, counted per hour) may come without
//!   `Retry-After`: then `X-RateLimit-Reset` (unix time) says when to retry.
//! - Authentication: with `username`, HTTP basic (the user name and the token as password,
//!   for an integration user); without it, the token is a REST API key sent in
//!   `x-sn-apikey` (the token-based authentication plugin). OAuth access tokens are not
//!   offered: they expire after 30 minutes by default, and sentinela reads the token once.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::{
    api_base, basic_credentials, classify, cut, header, json_request, percent_encode, prio_index,
    unexpected, unix_reset_wait, Api, HelpdeskConfig, PriorityValue, Secret, Secrets,
};
use crate::policy::Priority;
use crate::ticket::render::{self, BodyFormat};
use crate::ticket::{
    DeliveryError, Header, HttpRequest, TicketContent, TicketRef, TicketStatus, UpdateKind,
};

/// `short_description` holds 160 characters.
const MAX_SHORT_DESCRIPTION_CHARS: usize = 160;

/// States that count as closed: Resolved, Closed, Canceled.
const CLOSED_STATES: [&str; 3] = ["6", "7", "8"];

/// The state a reopened incident gets: In Progress.
const REOPEN_STATE: &str = "2";

/// Default `(impact, urgency)` of P1..P4.
pub const DEFAULT_PRIORITIES: [(u8, u8); 4] = [(1, 1), (1, 2), (2, 2), (2, 3)];

/// Fields sentinela sets on create: `create_fields` may not set them.
const OWN_FIELDS: &[&str] = &[
    "short_description",
    "description",
    "impact",
    "urgency",
    "priority",
    "correlation_id",
    "correlation_display",
    "assignment_group",
    "caller_id",
];

/// The keys only ServiceNow uses.
pub(crate) const KEYS: &[&str] = &["username", "group", "requester", "create_fields"];

/// ServiceNow-specific problems of a `[[helpdesk]]` entry.
pub(crate) fn problems(cfg: &HelpdeskConfig, err: &mut dyn FnMut(Option<Range<usize>>, String)) {
    cfg.require_token(
        "a password (with `username`) or a REST API key (without)",
        err,
    );
    if let Ok(u) = reqwest::Url::parse(cfg.url.get_ref()) {
        if u.query().is_some() || u.fragment().is_some() {
            err(
                Some(cfg.url.span()),
                "a ServiceNow `url` is the instance address (https://example.service-now.com), \
                 without a query"
                    .into(),
            );
        }
    }
    if let Some(u) = &cfg.username {
        let name = u.get_ref().trim();
        if name.is_empty() {
            err(Some(u.span()), "`username` is empty".into());
        } else if name.contains(':') || name.chars().any(char::is_control) {
            err(
                Some(u.span()),
                "`username` cannot contain ':' or control characters (HTTP basic auth)".into(),
            );
        }
    }
    for (key, v, what) in [
        ("group", &cfg.group, "assignment group"),
        ("requester", &cfg.requester, "caller (a sys_user record)"),
    ] {
        if let Some(v) = v {
            if !is_sys_id(v.get_ref().trim()) {
                err(
                    Some(v.span()),
                    format!(
                        "`{key}` must be the sys_id of the {what}: 32 hexadecimal digits (open \
                         the record, then Copy sys_id from the form header's menu)"
                    ),
                );
            }
        }
    }
    if let Some(f) = &cfg.create_fields {
        for key in f.get_ref().keys() {
            if OWN_FIELDS.contains(&key.as_str()) {
                err(
                    Some(f.span()),
                    format!("`create_fields`: {key:?} is set by sentinela"),
                );
            }
        }
    }
    for v in cfg.priority_map.values() {
        if impact_urgency(v.get_ref()).is_none() {
            err(
                Some(v.span()),
                "ServiceNow priorities are \"impact/urgency\", each 1 (high) to 3 (low), e.g. \
                 P2 = \"1/2\", or one number for both"
                    .into(),
            );
        }
    }
}

/// `(impact, urgency)` of a `priority_map` value: `"1/2"`, or `2` for both.
fn impact_urgency(v: &PriorityValue) -> Option<(u8, u8)> {
    let level = |s: &str| s.trim().parse::<u8>().ok().filter(|n| (1..=3).contains(n));
    match v {
        PriorityValue::Int(i) => {
            let n = u8::try_from(*i).ok().filter(|n| (1..=3).contains(n))?;
            Some((n, n))
        }
        PriorityValue::Text(t) => {
            let (i, u) = t.split_once('/')?;
            Some((level(i)?, level(u)?))
        }
    }
}

fn is_sys_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How requests authenticate.
#[derive(Debug)]
enum Auth {
    /// `Authorization: Basic base64(user:password)`.
    Basic(Secret),
    /// `x-sn-apikey: KEY`.
    ApiKey(Secret),
}

/// A ServiceNow instance.
#[derive(Debug)]
pub struct Servicenow {
    /// `https://example.service-now.com/api/now/table`
    api: String,
    auth: Auth,
    group: Option<String>,
    requester: Option<String>,
    priorities: [(u8, u8); 4],
    create_fields: Map<String, Value>,
    /// Which follow-up of the check `parse_check_field` reads next (their
    /// answers do not say which record they were asked for).
    check_step: AtomicUsize,
}

impl Servicenow {
    pub(crate) fn new(cfg: &HelpdeskConfig, secrets: Secrets) -> Result<Servicenow, String> {
        let token = secrets.token.ok_or_else(|| {
            format!(
                "helpdesk {:?}: ServiceNow needs a password or API key: set `token_env` or \
                 `token_file`",
                cfg.name.get_ref()
            )
        })?;
        let auth = match &cfg.username {
            Some(u) => Auth::Basic(Secret(format!(
                "Basic {}",
                basic_credentials(u.get_ref().trim(), &token.0)
            ))),
            None => Auth::ApiKey(token),
        };
        // The instance address, or the API's (`/api/now/table`, `/api/now`).
        let url = cfg.url.get_ref().trim().trim_end_matches('/');
        let url = url.strip_suffix("/api/now").unwrap_or(url);
        let trimmed = |v: &Option<toml::Spanned<String>>| {
            v.as_ref().map(|s| s.get_ref().trim().to_ascii_lowercase())
        };
        let mut priorities = DEFAULT_PRIORITIES;
        for (p, v) in &cfg.priority_map {
            if let Some(iu) = impact_urgency(v.get_ref()) {
                priorities[prio_index(*p)] = iu;
            }
        }
        Ok(Servicenow {
            api: api_base(url, "/api/now/table"),
            auth,
            group: trimmed(&cfg.group),
            requester: trimmed(&cfg.requester),
            priorities,
            create_fields: cfg.create_fields_json(),
            check_step: AtomicUsize::new(0),
        })
    }

    /// `(impact, urgency)` of `p`.
    pub fn impact_urgency(&self, p: Priority) -> (u8, u8) {
        self.priorities[prio_index(p)]
    }

    fn auth_header(&self) -> Header {
        match &self.auth {
            Auth::Basic(v) => header("Authorization", &v.0, true),
            Auth::ApiKey(k) => header("x-sn-apikey", &k.0, true),
        }
    }

    fn request(&self, method: &str, url: String, body: Option<Value>) -> HttpRequest {
        json_request(method, url, self.auth_header(), body)
    }

    /// `{api}/incident/{sys_id}` with the fields to return.
    fn incident_url(&self, t: &TicketRef, fields: &str) -> String {
        format!(
            "{}/incident/{}?sysparm_exclude_reference_link=true&sysparm_fields={}",
            self.api,
            percent_encode(&t.0),
            percent_encode(fields)
        )
    }

    /// The configured records the check looks up, in order: (table, sys_id, config key).
    fn check_lookups(&self) -> Vec<(&'static str, &str, &'static str)> {
        let mut out = Vec::new();
        if let Some(g) = &self.group {
            out.push(("sys_user_group", g.as_str(), "group"));
        }
        if let Some(r) = &self.requester {
            out.push(("sys_user", r.as_str(), "requester"));
        }
        out
    }

    /// A successful answer's `result`: errors classified (ServiceNow's messages, rate-limit
    /// headers and hints), a body without `result` is unexpected.
    fn result(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Value, DeliveryError> {
        let mut v = self.json_answer(status, headers, body)?;
        match v.get_mut("result") {
            Some(r) => Ok(r.take()),
            None => Err(unexpected("no result", body)),
        }
    }
}

impl Api for Servicenow {
    fn classify_answer(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        classify_sn(status, headers, body)
    }

    /// The encoded basic credentials, when used: a server or proxy that echoes the
    /// `Authorization` header would show them, and they decode to the password.
    fn derived_secrets(&self) -> Vec<Secret> {
        match &self.auth {
            Auth::Basic(b) => vec![Secret(b.0.trim_start_matches("Basic ").to_string())],
            Auth::ApiKey(_) => Vec::new(),
        }
    }

    fn body_format(&self) -> BodyFormat {
        BodyFormat::Plain
    }

    /// `POST /incident` with the title, the body as description, impact and urgency, the
    /// key in `correlation_id`, and the group and caller when configured; `create_fields`
    /// fill in the rest. The answer shows what was stored.
    fn create_request(&self, c: &TicketContent, body: &str, _now: u64) -> HttpRequest {
        let mut doc = self.create_fields.clone();
        let (impact, urgency) = self.impact_urgency(c.priority);
        doc.insert("short_description".into(), json!(short_description(c)));
        doc.insert("description".into(), json!(fit_description(body)));
        doc.insert("impact".into(), json!(impact.to_string()));
        doc.insert("urgency".into(), json!(urgency.to_string()));
        doc.insert("correlation_id".into(), json!(c.fingerprint));
        doc.insert("correlation_display".into(), json!("sentinela"));
        if let Some(g) = &self.group {
            doc.insert("assignment_group".into(), json!(g));
        }
        if let Some(r) = &self.requester {
            doc.insert("caller_id".into(), json!(r));
        }
        let url = format!(
            "{}/incident?sysparm_exclude_reference_link=true&sysparm_fields={}",
            self.api,
            percent_encode("sys_id,number,correlation_id,assignment_group,caller_id")
        );
        self.request("POST", url, Some(Value::Object(doc)))
    }

    /// The new incident's sys_id, once the answer shows the key (and group and caller) were
    /// stored.
    fn parse_create(
        &self,
        c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        let r = self.result(status, headers, body)?;
        let sys_id = field(&r, "sys_id")
            .filter(|s| is_sys_id(s))
            .ok_or_else(|| unexpected("no sys_id", body))?;
        let number = field(&r, "number").unwrap_or(sys_id);
        let mut wanted = vec![("correlation_id", c.fingerprint.as_str(), "the dedup key")];
        if let Some(g) = &self.group {
            wanted.push(("assignment_group", g, "`group`"));
        }
        if let Some(u) = &self.requester {
            wanted.push(("caller_id", u, "`requester`"));
        }
        for (name, want, role) in wanted {
            let got = field(&r, name).unwrap_or("");
            if got != want {
                return Err(DeliveryError::Blocked {
                    message: format!(
                        "incident {} (sys_id {sys_id}) was created but {name} holds {:?}, not \
                         {want:?} ({role}): ServiceNow drops a value silently when a field ACL \
                         or business rule refuses it; grant the integration user write access \
                         to incident.{name}, then resolve incident {}",
                        super::clean_text(number),
                        super::clean_text(got),
                        super::clean_text(number)
                    ),
                });
            }
        }
        Ok(TicketRef(sys_id.to_string()))
    }

    /// `PATCH /incident/{sys_id}` with a work note.
    fn comment_request(
        &self,
        t: &TicketRef,
        _c: &TicketContent,
        _kind: UpdateKind,
        text: &str,
        _now: u64,
    ) -> HttpRequest {
        let url = self.incident_url(t, "sys_id");
        self.request(
            "PATCH",
            url,
            Some(json!({ "work_notes": defuse_code_tags(text) })),
        )
    }

    /// Open incidents whose `correlation_id` is `fingerprint`, oldest first.
    fn find_open_request(&self, fingerprint: &str) -> Option<HttpRequest> {
        let query = format!(
            "correlation_id={}^active=true^stateNOT IN{}^ORDERBYsys_created_on",
            fingerprint.replace('^', "^^"),
            CLOSED_STATES.join(",")
        );
        let url = format!(
            "{}/incident?sysparm_query={}&sysparm_fields={}&sysparm_exclude_reference_link=true\
             &sysparm_limit=100",
            self.api,
            percent_encode(&query),
            percent_encode("sys_id,number,correlation_id,state,active,sys_created_on")
        );
        Some(self.request("GET", url, None))
    }

    /// The oldest open incident whose `correlation_id` equals `fingerprint` exactly.
    fn parse_find_open(
        &self,
        fingerprint: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Option<TicketRef>, DeliveryError> {
        let r = self.result(status, headers, body)?;
        let items = r
            .as_array()
            .ok_or_else(|| unexpected("result is not a list", body))?;
        let mut best: Option<(&str, &str)> = None;
        for item in items {
            let sys_id = field(item, "sys_id")
                .filter(|s| is_sys_id(s))
                .ok_or_else(|| unexpected("a result without a sys_id", body))?;
            if field(item, "correlation_id") != Some(fingerprint) || is_closed(item) {
                continue; // another incident's key (case differs), or closed meanwhile
            }
            let created = field(item, "sys_created_on").unwrap_or("");
            if best.is_none_or(|(c, _)| created < c) {
                best = Some((created, sys_id));
            }
        }
        Ok(best.map(|(_, id)| TicketRef(id.to_string())))
    }

    /// `GET /incident/{sys_id}` for its state.
    fn status_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        Some(self.request(
            "GET",
            self.incident_url(t, "sys_id,number,state,active"),
            None,
        ))
    }

    /// Closed in state 6 (Resolved); closed for good when not `active` or in state 7 or 8.
    fn parse_status(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketStatus, DeliveryError> {
        let r = self.result(status, headers, body)?;
        if field(&r, "active").is_none() {
            return Err(unexpected("no active flag", body));
        }
        // Resolved incidents stay active and can be reopened; closed and canceled ones are
        // final (business rules refuse to reopen them): a follow-up incident instead.
        Ok(
            if field(&r, "active") == Some("false") || matches!(field(&r, "state"), Some("7" | "8"))
            {
                TicketStatus::Final
            } else if is_closed(&r) {
                TicketStatus::Closed
            } else {
                TicketStatus::Open
            },
        )
    }

    /// `PATCH` state 2 (In Progress); the answer shows the state ServiceNow kept.
    fn reopen_request(&self, t: &TicketRef, _now: u64) -> Option<HttpRequest> {
        let url = self.incident_url(t, "sys_id,number,state,active");
        Some(self.request("PATCH", url, Some(json!({ "state": REOPEN_STATE }))))
    }

    /// `PATCH` impact and urgency (ServiceNow derives the priority).
    fn set_priority_request(&self, t: &TicketRef, p: Priority, _now: u64) -> Option<HttpRequest> {
        let (impact, urgency) = self.impact_urgency(p);
        let url = self.incident_url(t, "sys_id,impact,urgency,priority");
        let doc = json!({ "impact": impact.to_string(), "urgency": urgency.to_string() });
        Some(self.request("PATCH", url, Some(doc)))
    }

    /// A 2xx with a `result`; when the result shows a state (a reopen), it must be open.
    fn parse_ok(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let r = self.result(status, headers, body)?;
        if field(&r, "state").is_some() && is_closed(&r) {
            let state = field(&r, "state").unwrap_or("");
            return Err(DeliveryError::Blocked {
                message: format!(
                    "ServiceNow kept incident {} in state {} ({}): closed and canceled \
                     incidents cannot be reopened under the default rules; drop this \
                     operation (`sentinela outbox drop`) or reopen it by hand",
                    super::clean_text(field(&r, "number").unwrap_or("?")),
                    super::clean_text(state),
                    state_name(state)
                ),
            });
        }
        Ok(())
    }

    /// `GET /incident?sysparm_limit=1`: proves the URL, the credentials and the right to read
    /// incidents.
    fn check_request(&self) -> Option<HttpRequest> {
        let url = format!(
            "{}/incident?sysparm_limit=1&sysparm_fields=sys_id",
            self.api
        );
        Some(self.request("GET", url, None))
    }

    /// Reads the incident list answer, then returns the lookups of the configured group and
    /// caller.
    fn parse_check(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<HttpRequest>, DeliveryError> {
        let r = self.result(status, headers, body).map_err(|e| match e {
            DeliveryError::Blocked { message } if status == 403 => DeliveryError::Blocked {
                message: format!(
                    "{message} (the user cannot read incidents: give it the itil role, or \
                     ACLs to read, create and write incident)"
                ),
            },
            e => e,
        })?;
        if !r.is_array() {
            return Err(unexpected("result is not a list", body));
        }
        self.check_step.store(0, Ordering::SeqCst);
        Ok(self
            .check_lookups()
            .into_iter()
            .map(|(table, id, _)| {
                let url = format!(
                    "{}/{table}/{}?sysparm_fields={}",
                    self.api,
                    percent_encode(id),
                    percent_encode("sys_id,name,active")
                );
                self.request("GET", url, None)
            })
            .collect())
    }

    /// The configured group or caller exists and is active.
    fn parse_check_field(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let step = self.check_step.fetch_add(1, Ordering::SeqCst);
        let lookups = self.check_lookups();
        let Some((table, id, key)) = lookups.get(step) else {
            return Err(unexpected("an answer to no lookup", body));
        };
        let r = self.result(status, headers, body).map_err(|e| match e {
            DeliveryError::Blocked { message } if status == 404 || status == 403 => {
                DeliveryError::Blocked {
                    message: format!(
                        "{message} (`{key}` = {id:?}: no such {table} record, or the user \
                         cannot read {table})"
                    ),
                }
            }
            e => e,
        })?;
        if field(&r, "active") == Some("false") {
            return Err(DeliveryError::Blocked {
                message: format!(
                    "`{key}` = {id:?}: {table} record {:?} is inactive",
                    super::clean_text(field(&r, "name").unwrap_or(""))
                ),
            });
        }
        Ok(())
    }
}

/// A string field of a result.
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

fn is_closed(v: &Value) -> bool {
    field(v, "active") == Some("false")
        || field(v, "state").is_some_and(|s| CLOSED_STATES.contains(&s))
}

fn state_name(state: &str) -> &'static str {
    match state {
        "1" => "New",
        "2" => "In Progress",
        "3" => "On Hold",
        "6" => "Resolved",
        "7" => "Closed",
        "8" => "Canceled",
        _ => "a custom state",
    }
}

/// [`classify`] with ServiceNow's specifics: the `error` object's message and detail are
/// quoted, a 429 without `Retry-After` waits until `X-RateLimit-Reset`, and 401 and 403
/// say what to check.
pub fn classify_sn(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), DeliveryError> {
    let reworded = error_text(body).map(|m| json!({ "message": m }).to_string());
    let body = reworded.as_deref().map_or(body, str::as_bytes);
    match classify(status, headers, body) {
        Ok(()) => Ok(()),
        Err(DeliveryError::Retry {
            message,
            retry_after: None,
        }) if status == 429 => Err(DeliveryError::Retry {
            message,
            retry_after: unix_reset_wait(headers, "x-ratelimit-reset", SystemTime::now()),
        }),
        Err(DeliveryError::Blocked { message }) if status == 401 => Err(DeliveryError::Blocked {
            message: format!(
                "{message} (check `username` and the password in token_env/token_file; without \
                 `username` the token is sent as a REST API key in x-sn-apikey)"
            ),
        }),
        Err(e) => Err(e),
    }
}

/// `message (detail)` of a ServiceNow error body.
fn error_text(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let message = field(e, "message").unwrap_or("").trim();
    let detail = field(e, "detail").unwrap_or("").trim();
    Some(match (message.is_empty(), detail.is_empty()) {
        (true, true) => return None,
        (false, true) => message.to_string(),
        (true, false) => detail.to_string(),
        (false, false) => format!("{message} ({detail})"),
    })
}

/// The title on one line, cut to `short_description`'s 160 characters.
fn short_description(c: &TicketContent) -> String {
    cut(&render::title(c), MAX_SHORT_DESCRIPTION_CHARS)
}

/// Journal fields (`work_notes`) render text between `[code]` and `[/code]` as HTML
/// (`glide.ui.security.allow_codetag`, on by default): log evidence must not bring HTML into
/// the activity stream. A WORD JOINER (U+2060, invisible) after every `[` breaks the tag.
fn defuse_code_tags(text: &str) -> String {
    text.replace('[', "[\u{2060}")
}

/// The `description` column holds 4,000 characters by default, and ServiceNow cuts a longer
/// value at the end: where the body keeps the dedup key and the customer status text.
const MAX_DESCRIPTION_CHARS: usize = 4000;

/// `body` when it fits the description, else its head and its tail around a note saying so
/// (the middle, evidence lines, is what goes).
fn fit_description(body: &str) -> String {
    let n = body.chars().count();
    if n <= MAX_DESCRIPTION_CHARS {
        return body.to_string();
    }
    let note = "\n\n[... cut: the incident's text is longer than the 4,000 characters of a \
                ServiceNow description ...]\n\n";
    let room = MAX_DESCRIPTION_CHARS - note.chars().count();
    let head: String = body.chars().take(room / 2).collect();
    let tail: String = body.chars().skip(n - (room - room / 2)).collect();
    format!("{head}{note}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bodies_keep_their_head_and_their_key_at_the_end() {
        assert_eq!(fit_description("short"), "short");
        let body = format!("HEAD{}sentinela-fingerprint: abc", "x".repeat(10_000));
        let d = fit_description(&body);
        assert_eq!(d.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(
            d.starts_with("HEAD") && d.ends_with("sentinela-fingerprint: abc"),
            "{d}"
        );
        assert!(d.contains("[... cut:"));
    }

    #[test]
    fn work_notes_cannot_open_code_tags() {
        let t = defuse_code_tags("x [code]<img src=x>[/code] [CODE]y[/CODE]");
        assert!(!t.to_ascii_lowercase().contains("[code]"), "{t:?}");
        assert!(!t.to_ascii_lowercase().contains("[/code]"), "{t:?}");
        assert_eq!(defuse_code_tags("no brackets"), "no brackets");
    }
    use crate::ticket::adapter::test_support::{config, problems_of, token};
    use crate::ticket::adapter::MAX_RETRY_AFTER;
    use std::time::{Duration, UNIX_EPOCH};

    const SN: &str = "[[helpdesk]]\nname = \"sn\"\nkind = \"servicenow\"\n\
                      url = \"https://acme.service-now.com\"\ntoken_env = \"SN_PASSWORD\"\n\
                      username = \"svc.sentinela\"\n";
    const GROUP: &str = "287ebd7da9fe198100f92cc8d1d2154e";

    #[test]
    fn config_problems_are_located() {
        assert!(problems_of(SN).is_empty(), "{:?}", problems_of(SN));
        let ok = format!(
            "{SN}group = \"{GROUP}\"\nrequester = \"{}\"\n\
             priority_map = {{ P1 = \"1/1\", P4 = 3 }}\ncreate_fields = {{ category = \"security\" }}\n",
            GROUP.to_uppercase()
        );
        assert!(problems_of(&ok).is_empty(), "{:?}", problems_of(&ok));
        let cases: &[(String, &str)] = &[
            (
                SN.replace("token_env = \"SN_PASSWORD\"\n", ""),
                "3:8: helpdesk \"sn\": ServiceNow needs a password (with `username`) or a REST \
                 API key (without)",
            ),
            (
                SN.replace("svc.sentinela", "a:b"),
                "6:12: helpdesk \"sn\": `username` cannot contain ':'",
            ),
            (
                format!("{SN}group = \"Security Ops\"\n"),
                "7:9: helpdesk \"sn\": `group` must be the sys_id of the assignment group",
            ),
            (
                format!("{SN}requester = \"jdoe\"\n"),
                "7:13: helpdesk \"sn\": `requester` must be the sys_id of the caller",
            ),
            (
                format!("{SN}priority_map = {{ P2 = \"2-1\" }}\n"),
                "7:23: helpdesk \"sn\": ServiceNow priorities are \"impact/urgency\"",
            ),
            (
                format!("{SN}priority_map = {{ P2 = \"1/4\" }}\n"),
                "7:23: helpdesk \"sn\": ServiceNow priorities",
            ),
            (
                format!("{SN}priority_map = {{ P2 = 0 }}\n"),
                "7:23: helpdesk \"sn\": ServiceNow priorities",
            ),
            (
                format!("{SN}create_fields = {{ correlation_id = \"x\" }}\n"),
                "7:17: helpdesk \"sn\": `create_fields`: \"correlation_id\" is set by sentinela",
            ),
            (
                format!("{SN}queue = \"x\"\n"),
                "7:9: helpdesk \"sn\": `queue` does not apply to kind = \"servicenow\"",
            ),
        ];
        for (text, want) in cases {
            let got = problems_of(text).join("\n");
            assert!(
                got.contains(want),
                "config:\n{text}\ngot: {got}\nwant: {want}"
            );
        }
    }

    fn sn(text: &str) -> Servicenow {
        Servicenow::new(&config(text), token("pw")).unwrap()
    }

    #[test]
    fn priorities_default_and_map() {
        let all = [Priority::P1, Priority::P2, Priority::P3, Priority::P4];
        assert_eq!(all.map(|p| sn(SN).impact_urgency(p)), DEFAULT_PRIORITIES);
        let a = sn(&format!("{SN}priority_map = {{ P3 = \"3/1\", P4 = 3 }}\n"));
        assert_eq!(
            all.map(|p| a.impact_urgency(p)),
            [(1, 1), (1, 2), (3, 1), (3, 3)]
        );
    }

    #[test]
    fn urls_and_auth() {
        let a = sn(&SN.replace("service-now.com\"", "service-now.com/api/now/\""));
        assert_eq!(a.api, "https://acme.service-now.com/api/now/table");
        let h = a.auth_header();
        // base64("svc.sentinela:pw")
        assert_eq!(
            (h.name.as_str(), h.value.as_str(), h.secret),
            ("Authorization", "Basic c3ZjLnNlbnRpbmVsYTpwdw==", true)
        );
        let b = sn(&SN.replace("username = \"svc.sentinela\"\n", ""));
        let h = b.auth_header();
        assert_eq!(
            (h.name.as_str(), h.value.as_str(), h.secret),
            ("x-sn-apikey", "pw", true)
        );
    }

    #[test]
    fn errors_and_rate_limits() {
        let e = classify_sn(
            400,
            &[],
            br#"{"error":{"message":"Invalid state","detail":"state 9 is not a choice"},"status":"failure"}"#,
        );
        assert_eq!(
            e,
            Err(DeliveryError::Blocked {
                message: "HTTP 400 Bad Request: Invalid state (state 9 is not a choice)".into()
            })
        );
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let h = vec![("x-ratelimit-reset".to_string(), "1000120".to_string())];
        assert_eq!(
            unix_reset_wait(&h, "x-ratelimit-reset", now),
            Some(Duration::from_secs(120))
        );
        let h = vec![("x-ratelimit-reset".to_string(), "999999999".to_string())];
        assert_eq!(
            unix_reset_wait(&h, "x-ratelimit-reset", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(unix_reset_wait(&[], "x-ratelimit-reset", now), None);
    }
}
