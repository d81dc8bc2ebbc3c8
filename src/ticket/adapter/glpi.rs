//! GLPI, legacy REST API (`apirest.php`): security incidents become tickets of type
//! "Incident".
//!
//! What GLPI does that shapes this adapter (GLPI's `apirest.md`, "GLPi REST API:
//! Documentation", shipped with GLPI and shown at `apirest.php/`):
//!
//! - Every call needs a *session*: `GET initSession` with `Authorization: user_token ...`
//!   (the API token of a user, from its preferences) returns a `session_token`, which every
//!   later call carries in `Session-Token`; `GET killSession` ends it. An API client may
//!   also require an `App-Token` header on every call. The session lives in the adapter:
//!   `open_session_request` asks for one when none is open, a 401 (`ERROR_SESSION_
//!   TOKEN_INVALID`: the session expired on the server) makes the shared code open a new one
//!   and repeat the request once, and `close_session_request` forgets it.
//! - A ticket has no field for an external key, so the fingerprint goes at the end of the
//!   title, `… [sentinela:KEY]`, which the search API can filter on (`criteria` on search
//!   option 1, the title, with `contains`; option 12, the status, `equals notold` = neither
//!   solved nor closed). `contains` is a case-insensitive `LIKE`, and attacker text in the
//!   title could quote a key, so only a title *ending* with exactly our suffix matches.
//! - Statuses: 1 New, 2 Processing (assigned), 3 Processing (planned), 4 Pending, 5 Solved,
//!   6 Closed. Reopening sets 2; closed tickets are normally read-only, and GLPI then
//!   answers the update with `false` and a message, which is `Blocked`.
//! - Priority is derived by GLPI from urgency and impact (1 very low .. 5 very high each,
//!   through the priority matrix of Setup > General > Assistance): `priority_map` values are
//!   `"urgency/impact"` (`P2 = "4/4"`), or one number for both. Defaults: P1 `5/5`, P2 `4/4`,
//!   P3 `3/3`, P4 `2/2`.
//! - Comments are private follow-ups (`ITILFollowup`, `is_private = 1`). Bodies are HTML
//!   (GLPI 10's rich text).
//! - Updates answer 200 (or 207) with one `{"ID": true|false, "message": ...}` per item: a
//!   `false` is a refusal (rights, a closed ticket) and is `Blocked`. Errors are JSON arrays
//!   `["ERROR_CODE", "message"]`, quoted as they are.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use super::{
    api_base, base_headers, classify, header, json_body, numeric_id, percent_encode, prio_index,
    unexpected, Api, HelpdeskConfig, PriorityValue, Secret, Secrets,
};
use crate::policy::Priority;
use crate::ticket::render::{self, BodyFormat};
use crate::ticket::{
    DeliveryError, HttpRequest, TicketContent, TicketRef, TicketStatus, UpdateKind,
};

/// A ticket's `name` holds 255 characters.
const MAX_NAME_CHARS: usize = 255;

/// What precedes the key at the end of a title.
const KEY_PREFIX: &str = "[sentinela:";

/// Ticket statuses that count as closed: Solved, Closed.
const CLOSED_STATUSES: [u64; 2] = [5, 6];

/// The status a reopened ticket gets: Processing (assigned).
const REOPEN_STATUS: u64 = 2;

/// Ticket type "Incident".
const TYPE_INCIDENT: u64 = 1;

/// The `CREATE` bit of a profile's `ticket` right.
const RIGHT_CREATE: u64 = 4;

/// Default `(urgency, impact)` of P1..P4.
pub const DEFAULT_PRIORITIES: [(u8, u8); 4] = [(5, 5), (4, 4), (3, 3), (2, 2)];

/// The session token the dry run shows when no session is open.
const NO_SESSION: &str = "<session token>";

/// Ticket fields sentinela sets on create: `create_fields` may not set them.
const OWN_FIELDS: &[&str] = &[
    "name",
    "content",
    "urgency",
    "impact",
    "priority",
    "type",
    "_users_id_requester",
    "_groups_id_assign",
    // A ticket created solved or closed would never be found open again.
    "status",
];

/// The keys only GLPI uses.
pub(crate) const KEYS: &[&str] = &[
    "app_token_env",
    "app_token_file",
    "group",
    "requester",
    "create_fields",
];

/// GLPI-specific problems of a `[[helpdesk]]` entry.
pub(crate) fn problems(cfg: &HelpdeskConfig, err: &mut dyn FnMut(Option<Range<usize>>, String)) {
    cfg.require_token("a user's API token (`user_token`)", err);
    if let Ok(u) = reqwest::Url::parse(cfg.url.get_ref()) {
        if u.query().is_some() || u.fragment().is_some() {
            err(
                Some(cfg.url.span()),
                "a GLPI `url` is the web address of GLPI (https://glpi.example.com), without a \
                 query"
                    .into(),
            );
        }
    }
    for (key, v, what) in [
        ("group", &cfg.group, "the group tickets are assigned to"),
        ("requester", &cfg.requester, "the requester user"),
    ] {
        if let Some(v) = v {
            let ok = v.get_ref().trim().parse::<u64>().is_ok_and(|n| n > 0);
            if !ok {
                err(
                    Some(v.span()),
                    format!("`{key}` must be the numeric id of {what} (the ID column in GLPI)"),
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
        if urgency_impact(v.get_ref()).is_none() {
            err(
                Some(v.span()),
                "GLPI priorities are \"urgency/impact\", each 1 (very low) to 5 (very high), \
                 e.g. P2 = \"4/4\", or one number for both"
                    .into(),
            );
        }
    }
}

/// `(urgency, impact)` of a `priority_map` value: `"4/3"`, or `4` for both.
fn urgency_impact(v: &PriorityValue) -> Option<(u8, u8)> {
    let level = |s: &str| s.trim().parse::<u8>().ok().filter(|n| (1..=5).contains(n));
    match v {
        PriorityValue::Int(i) => {
            let n = u8::try_from(*i).ok().filter(|n| (1..=5).contains(n))?;
            Some((n, n))
        }
        PriorityValue::Text(t) => {
            let (u, i) = t.split_once('/')?;
            Some((level(u)?, level(i)?))
        }
    }
}

/// A GLPI instance.
#[derive(Debug)]
pub struct Glpi {
    /// `https://glpi.example.com/apirest.php`
    api: String,
    user_token: Secret,
    app_token: Option<Secret>,
    /// The open session, if any.
    session: Mutex<Option<Secret>>,
    group: Option<u64>,
    requester: Option<u64>,
    priorities: [(u8, u8); 4],
    create_fields: Map<String, Value>,
    /// Which follow-up of the check `parse_check_field` reads next.
    check_step: AtomicUsize,
}

impl Glpi {
    pub(crate) fn new(cfg: &HelpdeskConfig, secrets: Secrets) -> Result<Glpi, String> {
        let user_token = secrets.token.ok_or_else(|| {
            format!(
                "helpdesk {:?}: GLPI needs a user's API token: set `token_env` or `token_file`",
                cfg.name.get_ref()
            )
        })?;
        let id = |v: &Option<toml::Spanned<String>>| {
            v.as_ref()
                .and_then(|s| s.get_ref().trim().parse::<u64>().ok())
        };
        let mut priorities = DEFAULT_PRIORITIES;
        for (p, v) in &cfg.priority_map {
            if let Some(ui) = urgency_impact(v.get_ref()) {
                priorities[prio_index(*p)] = ui;
            }
        }
        Ok(Glpi {
            api: api_base(cfg.url.get_ref(), "/apirest.php"),
            user_token,
            app_token: secrets.app_token,
            session: Mutex::new(None),
            group: id(&cfg.group),
            requester: id(&cfg.requester),
            priorities,
            create_fields: cfg.create_fields_json(),
            check_step: AtomicUsize::new(0),
        })
    }

    /// `(urgency, impact)` of `p`.
    pub fn urgency_impact(&self, p: Priority) -> (u8, u8) {
        self.priorities[prio_index(p)]
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Option<Secret>> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Headers of every call: JSON (GLPI wants a `Content-Type` on every call, GET included)
    /// and the `App-Token` when configured.
    fn headers(&self) -> Vec<crate::ticket::Header> {
        let mut h = base_headers(true);
        if let Some(t) = &self.app_token {
            h.push(header("App-Token", &t.0, true));
        }
        h
    }

    /// A call within the open session (a placeholder in the dry run, where none is open).
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> HttpRequest {
        let mut headers = self.headers();
        let session = self
            .session()
            .as_ref()
            .map_or_else(|| NO_SESSION.to_string(), |s| s.0.clone());
        headers.push(header("Session-Token", &session, true));
        HttpRequest {
            method: method.into(),
            url: format!("{}/{path}", self.api),
            headers,
            body: body.map(|b| b.to_string()),
        }
    }

    /// The configured records the check looks up, in order: (itemtype, id, config key).
    fn check_lookups(&self) -> Vec<(&'static str, u64, &'static str)> {
        let mut out = Vec::new();
        if let Some(g) = self.group {
            out.push(("Group", g, "group"));
        }
        if let Some(u) = self.requester {
            out.push(("User", u, "requester"));
        }
        out
    }
}

impl Api for Glpi {
    fn body_format(&self) -> BodyFormat {
        BodyFormat::Html
    }

    /// `POST Ticket` of an incident: the title ending with the key, the HTML body, urgency
    /// and impact, and the requester and assigned group when configured; `create_fields`
    /// fill in the rest.
    fn create_request(&self, c: &TicketContent, body: &str, _now: u64) -> HttpRequest {
        let mut input = self.create_fields.clone();
        let (urgency, impact) = self.urgency_impact(c.priority);
        input.insert("name".into(), json!(name(c)));
        input.insert("content".into(), json!(body));
        input.insert("type".into(), json!(TYPE_INCIDENT));
        input.insert("urgency".into(), json!(urgency));
        input.insert("impact".into(), json!(impact));
        if let Some(u) = self.requester {
            input.insert("_users_id_requester".into(), json!(u));
        }
        if let Some(g) = self.group {
            input.insert("_groups_id_assign".into(), json!(g));
        }
        self.request("POST", "Ticket", Some(json!({ "input": input })))
    }

    /// The ticket id of `201 {"id": N, "message": ""}`.
    fn parse_create(
        &self,
        _c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        match v.get("id").and_then(numeric_id) {
            Some(id) => Ok(TicketRef(id.to_string())),
            None => Err(DeliveryError::Blocked {
                message: format!(
                    "GLPI did not create the ticket: {}",
                    super::server_message(body).unwrap_or_default()
                ),
            }),
        }
    }

    /// `POST ITILFollowup`: a private follow-up.
    fn comment_request(
        &self,
        t: &TicketRef,
        _c: &TicketContent,
        _kind: UpdateKind,
        text: &str,
        _now: u64,
    ) -> HttpRequest {
        let input = json!({
            "itemtype": "Ticket",
            "items_id": ticket_id(t),
            "content": text,
            "is_private": 1,
        });
        self.request("POST", "ITILFollowup", Some(json!({ "input": input })))
    }

    /// `GET search/Ticket`: titles containing the key, neither solved nor closed, oldest
    /// first, with the title, id and status.
    fn find_open_request(&self, fingerprint: &str) -> Option<HttpRequest> {
        let params: [(&str, &str); 13] = [
            ("criteria[0][field]", "1"),
            ("criteria[0][searchtype]", "contains"),
            ("criteria[0][value]", fingerprint),
            ("criteria[1][link]", "AND"),
            ("criteria[1][field]", "12"),
            ("criteria[1][searchtype]", "equals"),
            ("criteria[1][value]", "notold"),
            ("forcedisplay[0]", "1"),
            ("forcedisplay[1]", "2"),
            ("forcedisplay[2]", "12"),
            ("sort", "2"),
            ("order", "ASC"),
            ("range", "0-99"),
        ];
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        Some(self.request("GET", &format!("search/Ticket?{}", query.join("&")), None))
    }

    /// The oldest ticket whose title ends with exactly our key and that is not solved or
    /// closed.
    fn parse_find_open(
        &self,
        fingerprint: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Option<TicketRef>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        if !v.get("totalcount").is_some_and(Value::is_number) {
            return Err(unexpected("no totalcount", body));
        }
        let rows = match v.get("data") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(rows)) => rows,
            Some(Value::Object(_)) => return Err(unexpected("rows indexed by id", body)),
            Some(_) => return Err(unexpected("data is not a list", body)),
        };
        let mut best: Option<u64> = None;
        for row in rows {
            let id = row
                .get("2")
                .and_then(numeric_id)
                .ok_or_else(|| unexpected("a row without the id (search option 2)", body))?;
            let title = row.get("1").and_then(Value::as_str).unwrap_or("");
            if key_of(title) != Some(fingerprint) {
                continue; // another ticket quoting the key, or a key differing in case
            }
            if row
                .get("12")
                .and_then(numeric_id)
                .is_some_and(|s| CLOSED_STATUSES.contains(&s))
            {
                continue;
            }
            if best.is_none_or(|b| id < b) {
                best = Some(id);
            }
        }
        Ok(best.map(|id| TicketRef(id.to_string())))
    }

    /// `GET Ticket/ID`, for its status.
    fn status_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        let path = format!(
            "Ticket/{}?expand_dropdowns=false&get_hateoas=false",
            percent_encode(&t.0)
        );
        Some(self.request("GET", &path, None))
    }

    /// 1-4 open, 5 (solved) closed, 6 (closed) or a ticket in the trash closed for good.
    fn parse_status(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketStatus, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let s = v
            .get("status")
            .and_then(numeric_id)
            .ok_or_else(|| unexpected("no status", body))?;
        let deleted = v.get("is_deleted").and_then(numeric_id) == Some(1);
        match s {
            _ if deleted => Ok(TicketStatus::Final),
            1..=4 => Ok(TicketStatus::Open),
            5 => Ok(TicketStatus::Closed),
            // GLPI reopens solved tickets, not closed ones: a follow-up ticket instead.
            6 => Ok(TicketStatus::Final),
            other => Err(DeliveryError::Blocked {
                message: format!("unknown ticket status {other}: only 1 to 6 are understood"),
            }),
        }
    }

    /// `PUT Ticket/ID` with status 2 (Processing).
    fn reopen_request(&self, t: &TicketRef, _now: u64) -> Option<HttpRequest> {
        let doc = json!({ "input": { "status": REOPEN_STATUS } });
        Some(self.request(
            "PUT",
            &format!("Ticket/{}", percent_encode(&t.0)),
            Some(doc),
        ))
    }

    /// `PUT Ticket/ID` with urgency and impact (GLPI derives the priority).
    fn set_priority_request(&self, t: &TicketRef, p: Priority, _now: u64) -> Option<HttpRequest> {
        let (urgency, impact) = self.urgency_impact(p);
        let doc = json!({ "input": { "urgency": urgency, "impact": impact } });
        Some(self.request(
            "PUT",
            &format!("Ticket/{}", percent_encode(&t.0)),
            Some(doc),
        ))
    }

    /// A created follow-up (`{"id": N}`), an update whose every item says `true`, or the
    /// empty 200 of `killSession`.
    fn parse_ok(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        classify(status, headers, body)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let v = self.json_answer(status, headers, body)?;
        if v.get("id").and_then(numeric_id).is_some() {
            return Ok(());
        }
        let items = match &v {
            Value::Array(a) => a.clone(),
            Value::Object(_) => vec![v.clone()],
            _ => return Err(unexpected("not an update result", body)),
        };
        for item in &items {
            let Some(o) = item.as_object() else {
                return Err(unexpected("not an update result", body));
            };
            let mut results = o.iter().filter(|(k, _)| k.as_str() != "message").peekable();
            let refused =
                results.peek().is_none() || results.any(|(_, ok)| ok != &Value::Bool(true));
            if refused {
                let msg = o.get("message").and_then(Value::as_str).unwrap_or("");
                return Err(DeliveryError::Blocked {
                    message: format!(
                        "GLPI answered {status} but refused: {}",
                        if msg.is_empty() {
                            super::clean_text(&item.to_string())
                        } else {
                            super::clean_text(msg)
                        }
                    ),
                });
            }
        }
        if items.is_empty() {
            return Err(unexpected("an empty update result", body));
        }
        Ok(())
    }

    /// `GET getActiveProfile`: proves the URL, the tokens and the session, and shows the
    /// rights of the profile the tickets are created with.
    fn check_request(&self) -> Option<HttpRequest> {
        Some(self.request("GET", "getActiveProfile", None))
    }

    /// The active profile may create tickets; returns the lookups of the configured group
    /// and requester.
    fn parse_check(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<HttpRequest>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let profile = v
            .get("active_profile")
            .ok_or_else(|| unexpected("no active_profile", body))?;
        let name = profile.get("name").and_then(Value::as_str).unwrap_or("?");
        if let Some(rights) = profile.get("ticket").and_then(numeric_id) {
            if rights & RIGHT_CREATE == 0 {
                return Err(DeliveryError::Blocked {
                    message: format!(
                        "the user's active profile {:?} cannot create tickets: give it the \
                         Create right on Assistance > Tickets (or a default profile that has it)",
                        super::clean_text(name)
                    ),
                });
            }
        }
        self.check_step.store(0, Ordering::SeqCst);
        Ok(self
            .check_lookups()
            .into_iter()
            .map(|(itemtype, id, _)| {
                let path = format!("{itemtype}/{id}?expand_dropdowns=false&get_hateoas=false");
                self.request("GET", &path, None)
            })
            .collect())
    }

    /// The configured group or user exists and is active.
    fn parse_check_field(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let step = self.check_step.fetch_add(1, Ordering::SeqCst);
        let lookups = self.check_lookups();
        let Some((itemtype, id, key)) = lookups.get(step) else {
            return Err(unexpected("an answer to no lookup", body));
        };
        let v = self
            .json_answer(status, headers, body)
            .map_err(|e| match e {
                DeliveryError::Blocked { message } if matches!(status, 403 | 404) => {
                    DeliveryError::Blocked {
                        message: format!(
                            "{message} (`{key}` = {id}: no such {itemtype}, or the user cannot \
                         see it)"
                        ),
                    }
                }
                e => e,
            })?;
        if v.get("is_active").and_then(numeric_id) == Some(0) {
            return Err(DeliveryError::Blocked {
                message: format!("`{key}` = {id}: {itemtype} {id} is inactive"),
            });
        }
        Ok(())
    }

    /// `GET initSession` with the user token, when no session is open.
    fn open_session_request(&self) -> Option<HttpRequest> {
        if self.session().is_some() {
            return None;
        }
        let mut headers = self.headers();
        headers.push(header(
            "Authorization",
            &format!("user_token {}", self.user_token.0),
            true,
        ));
        Some(HttpRequest {
            method: "GET".into(),
            url: format!("{}/initSession", self.api),
            headers,
            body: None,
        })
    }

    /// Keeps the `session_token` of `200 {"session_token": ...}`.
    fn parse_open_session(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        classify(status, headers, body).map_err(|e| match e {
            DeliveryError::Blocked { message } if matches!(status, 400 | 401) => {
                DeliveryError::Blocked {
                    message: format!(
                        "{message} (check the user's API token in token_env/token_file, that \
                         the user is active and may log in through the API, and the \
                         App-Token and IP range of the API client in Setup > General > API)"
                    ),
                }
            }
            e => e,
        })?;
        let v = json_body(body)?;
        let token = v
            .get("session_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && !t.chars().any(char::is_control))
            .ok_or_else(|| unexpected("no session_token", body))?;
        *self.session() = Some(Secret(token.to_string()));
        Ok(())
    }

    /// Forgets the session and returns its `GET killSession`.
    fn close_session_request(&self) -> Option<HttpRequest> {
        let token = self.session().take()?;
        let mut headers = self.headers();
        headers.push(header("Session-Token", &token.0, true));
        Some(HttpRequest {
            method: "GET".into(),
            url: format!("{}/killSession", self.api),
            headers,
            body: None,
        })
    }
}

/// The numeric id of a ticket reference (GLPI ids are numbers in JSON bodies).
fn ticket_id(t: &TicketRef) -> Value {
    t.0.parse::<u64>().map_or_else(|_| json!(t.0), |n| json!(n))
}

/// The key at the very end of a title (`… [sentinela:KEY]`).
fn key_of(title: &str) -> Option<&str> {
    let (_, rest) = title
        .trim_end()
        .strip_suffix(']')?
        .rsplit_once(KEY_PREFIX)?;
    (!rest.contains(']')).then_some(rest)
}

/// The ticket title: the rendered title, cut so that the key suffix fits in 255 characters
/// as GLPI stores them. GLPI 10 stores `<`, `>`, `&`, `'` and `"` as HTML entities (its input
/// sanitizer): a title of attacker text full of them would otherwise overflow the column and
/// lose the key (a new ticket per recurrence) or fail the create.
fn name(c: &TicketContent) -> String {
    let suffix = format!(" {KEY_PREFIX}{}]", c.fingerprint);
    let room = MAX_NAME_CHARS.saturating_sub(suffix.chars().count());
    let title = render::title(c);
    if title.chars().map(stored_width).sum::<usize>() <= room {
        return title + &suffix;
    }
    let mut out = String::new();
    let mut used = 0;
    for ch in title.chars() {
        let w = stored_width(ch);
        if used + w > room.saturating_sub(1) {
            break;
        }
        out.push(ch);
        used += w;
    }
    out.push('…');
    out + &suffix
}

/// Characters a character takes once GLPI has stored it (`&` as `&amp;`, `<` as `&lt;`, ...).
fn stored_width(ch: char) -> usize {
    match ch {
        '&' | '\'' => 5,
        '<' | '>' => 4,
        '"' => 6,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::adapter::test_support::{config, content, problems_of, token};

    const GLPI: &str = "[[helpdesk]]\nname = \"glpi\"\nkind = \"glpi\"\n\
                        url = \"https://glpi.example.com\"\ntoken_env = \"GLPI_USER_TOKEN\"\n";

    #[test]
    fn titles_keep_their_key_once_glpi_encodes_them() {
        let mut c = content("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "x", Priority::P2);
        c.title = "<".repeat(300);
        let n = name(&c);
        let stored: usize = n.chars().map(stored_width).sum();
        assert!(stored <= MAX_NAME_CHARS, "{stored}");
        assert_eq!(key_of(&n), Some(c.fingerprint.as_str()));
        c.title = "short & sweet".into();
        assert_eq!(
            name(&c),
            format!("{} [sentinela:{}]", render::title(&c), c.fingerprint)
        );
    }

    #[test]
    fn config_problems_are_located() {
        assert!(problems_of(GLPI).is_empty(), "{:?}", problems_of(GLPI));
        let ok = format!(
            "{GLPI}app_token_env = \"GLPI_APP_TOKEN\"\ngroup = \"3\"\nrequester = \"7\"\n\
             priority_map = {{ P1 = \"5/4\", P4 = 1 }}\ncreate_fields = {{ itilcategories_id = 4 }}\n"
        );
        assert!(problems_of(&ok).is_empty(), "{:?}", problems_of(&ok));
        let cases: &[(String, &str)] = &[
            (
                GLPI.replace("token_env = \"GLPI_USER_TOKEN\"\n", ""),
                "3:8: helpdesk \"glpi\": GLPI needs a user's API token (`user_token`)",
            ),
            (
                format!("{GLPI}group = \"Security\"\n"),
                "6:9: helpdesk \"glpi\": `group` must be the numeric id of the group",
            ),
            (
                format!("{GLPI}requester = \"0\"\n"),
                "6:13: helpdesk \"glpi\": `requester` must be the numeric id",
            ),
            (
                format!("{GLPI}priority_map = {{ P2 = \"4-4\" }}\n"),
                "6:23: helpdesk \"glpi\": GLPI priorities are \"urgency/impact\"",
            ),
            (
                format!("{GLPI}priority_map = {{ P2 = 6 }}\n"),
                "6:23: helpdesk \"glpi\": GLPI priorities",
            ),
            (
                format!("{GLPI}create_fields = {{ name = \"x\" }}\n"),
                "6:17: helpdesk \"glpi\": `create_fields`: \"name\" is set by sentinela",
            ),
            (
                format!("{GLPI}app_token_env = \"A\"\napp_token_file = \"/a\"\n"),
                "7:18: helpdesk \"glpi\": set either `app_token_env` or `app_token_file`",
            ),
            (
                format!("{GLPI}username = \"x\"\n"),
                "6:12: helpdesk \"glpi\": `username` does not apply to kind = \"glpi\"",
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

    fn glpi(text: &str) -> Glpi {
        Glpi::new(&config(text), token("ut")).unwrap()
    }

    #[test]
    fn priorities_default_and_map() {
        let all = [Priority::P1, Priority::P2, Priority::P3, Priority::P4];
        assert_eq!(
            all.map(|p| glpi(GLPI).urgency_impact(p)),
            DEFAULT_PRIORITIES
        );
        let a = glpi(&format!(
            "{GLPI}priority_map = {{ P1 = \"5/3\", P4 = 1 }}\n"
        ));
        assert_eq!(
            all.map(|p| a.urgency_impact(p)),
            [(5, 3), (4, 4), (3, 3), (1, 1)]
        );
        let b = glpi(&GLPI.replace("example.com\"", "example.com/apirest.php/\""));
        assert_eq!(b.api, "https://glpi.example.com/apirest.php");
    }

    #[test]
    fn the_key_is_read_from_the_end_of_the_title_only() {
        assert_eq!(key_of("SSH brute force [sentinela:ab12]"), Some("ab12"));
        assert_eq!(key_of("x [sentinela:ab12] "), Some("ab12"));
        assert_eq!(key_of("[sentinela:ab12] SSH brute force"), None);
        assert_eq!(
            key_of("quoted [sentinela:ab12] [sentinela:cd34]"),
            Some("cd34")
        );
        assert_eq!(key_of("x [sentinela:ab]12]"), None);
        assert_eq!(key_of("no key"), None);
    }

    #[test]
    fn sessions_open_once_and_close_once() {
        let a = glpi(GLPI);
        let open = a.open_session_request().unwrap();
        assert!(open.url.ends_with("/apirest.php/initSession"));
        // Before a session: the placeholder (dry run).
        let r = a.status_request(&TicketRef("7".into())).unwrap();
        let st = r
            .headers
            .iter()
            .find(|h| h.name == "Session-Token")
            .unwrap();
        assert_eq!((st.value.as_str(), st.secret), (NO_SESSION, true));
        a.parse_open_session(200, &[], br#"{"session_token":"s1"}"#)
            .unwrap();
        assert!(a.open_session_request().is_none());
        let r = a.status_request(&TicketRef("7".into())).unwrap();
        let st = r
            .headers
            .iter()
            .find(|h| h.name == "Session-Token")
            .unwrap();
        assert_eq!(st.value, "s1");
        let kill = a.close_session_request().unwrap();
        assert!(kill.url.ends_with("/apirest.php/killSession"));
        assert!(kill
            .headers
            .iter()
            .any(|h| h.name == "Session-Token" && h.value == "s1"));
        assert!(a.close_session_request().is_none());
        assert!(a.open_session_request().is_some());
    }

    #[test]
    fn names_keep_the_key_within_255_characters() {
        let mut c = content(
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            &"é".repeat(400),
            Priority::P3,
        );
        let n = name(&c);
        assert_eq!(n.chars().count(), 255);
        assert_eq!(key_of(&n), Some(c.fingerprint.as_str()));
        c.title = "short".into();
        assert_eq!(
            name(&c),
            "[sentinela P3] short [sentinela:0f1e2d3c4b5a69788796a5b4c3d2e1f0]"
        );
    }
}
