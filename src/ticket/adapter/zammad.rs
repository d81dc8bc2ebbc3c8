//! Zammad (REST API v1), with an access token (`Authorization: Token token=...`).
//!
//! Documentation followed: the API introduction (authentication, `expand`, sorting)
//! <https://docs.zammad.org/en/latest/api/intro.html>, tickets
//! <https://docs.zammad.org/en/latest/api/ticket/index.html>, articles
//! <https://docs.zammad.org/en/latest/api/ticket/articles.html>, tags
//! <https://docs.zammad.org/en/latest/api/ticket/tags.html>, users (`/users/me`)
//! <https://docs.zammad.org/en/latest/api/user.html> and the search syntax
//! <https://user-docs.zammad.org/en/latest/advanced/search.html>.
//!
//! What Zammad does that shapes this adapter:
//!
//! - Zammad has no field for an external key: the dedup key is the tag
//!   `sentinela-<fingerprint>` (next to a plain `sentinela` tag for views and triggers).
//!   `POST /api/v1/tickets` takes `tags` as a comma-separated string and adds them while
//!   handling the create, so the key does not depend on a second request of ours (a failed
//!   `/api/v1/tags/add` after a successful create would leave a ticket the retry cannot find,
//!   and a duplicate).
//! - Ticket answers never carry tags (by design: zammad/zammad#679). Each create is therefore
//!   read back with `GET /api/v1/tags?object=Ticket&o_id=ID`, and a ticket without the key (a
//!   Zammad that ignored `tags`, a tag that failed after the ticket was saved, a user who may
//!   not create tags) is `Blocked` at once rather than discovered later as duplicates.
//! - The search (`GET /api/v1/tickets/search`) is Elasticsearch's query string. Without
//!   Elasticsearch, Zammad only matches the words of titles and articles: the key is never
//!   found and a create whose answer was lost becomes a duplicate. With it, a new ticket is
//!   searchable within seconds (the same race, much narrower). The answer (`expand=true`)
//!   names each ticket's state but carries no tags: the state is compared exactly (the query
//!   matches words, so `state.name:open` also matches a custom `reopened` state... or a
//!   ticket closed since it was indexed), the tag cannot be. The query quotes the tag and
//!   fingerprints are lowercase hex, so only a tag an agent typed with the same words (in
//!   another case) could match.
//! - The first article is an internal note (`type: note`, `internal: true`): nothing is mailed
//!   to the customer. Comments are internal notes too (`POST /api/v1/ticket_articles`). Zammad
//!   makes the articles of a customer's token public without saying so: an article answer with
//!   `internal: false` is `Blocked`.
//! - The customer (`requester`) is an existing user's login or e-mail (`customer`; an unknown
//!   one is a 422), or `guess:EMAIL` (`customer_id`), with which Zammad creates the customer
//!   when it does not exist.
//! - States of a default Zammad: `new`, `open`, `pending reminder` and `pending close` are
//!   open; `closed`, `merged` and `removed` are closed; any other (a custom state) is `Blocked`
//!   rather than guessed. Priorities are ids: 1 low, 2 normal, 3 high (P1 and P2 are 3, P3 is
//!   2, P4 is 1 by default).
//! - Errors are `{"error": "...", "error_human": "..."}`: 401 (bad token, token access
//!   disabled), 403, 404, 422 (`No lookup value found for 'group': "x"`). Some validation
//!   errors of older versions are a 500, and are retried like any server error.

use std::ops::Range;

use serde_json::{json, Map, Value};

use super::{
    api_base, classify, header, json_request, looks_like_email, merge_fields, numeric_id, one_line,
    percent_encode, prio_index, reserved_create_fields, unexpected, Api, HelpdeskConfig,
    PriorityValue, Secret, Secrets,
};
use crate::policy::Priority;
use crate::ticket::render::BodyFormat;
use crate::ticket::{
    DeliveryError, HttpRequest, TicketContent, TicketRef, TicketStatus, UpdateKind,
};

/// Zammad's `tickets.title` column holds 250 characters.
const MAX_TITLE_CHARS: usize = 250;

/// States of a default Zammad.
const OPEN_STATES: &[&str] = &["new", "open", "pending reminder", "pending close"];
const CLOSED_STATES: &[&str] = &["closed"];
/// A merged ticket is an emptied shell linked to the ticket it was merged into, a removed one
/// is gone: closed for good (a recurrence opens a follow-up ticket).
const FINAL_STATES: &[&str] = &["merged", "removed"];

/// Default priority ids for P1..P4 (Zammad ships 1 low, 2 normal, 3 high).
pub const DEFAULT_PRIORITIES: [i64; 4] = [3, 3, 2, 1];

/// Results of one search: a key has one open ticket, a few more after races.
const SEARCH_LIMIT: u32 = 50;

/// The tag every ticket of sentinela carries, for views and triggers.
pub const TAG: &str = "sentinela";

/// Fields of the create that `create_fields` may not set.
const RESERVED: &[&str] = &[
    "title",
    "group",
    "group_id",
    "customer",
    "customer_id",
    "priority",
    "priority_id",
    "article",
    // A ticket created closed would never be found open again: one per recurrence.
    "state",
    "state_id",
];

/// The keys only Zammad uses.
pub(crate) const KEYS: &[&str] = &["group", "requester", "create_fields"];

/// Zammad-specific problems of a `[[helpdesk]]` entry.
pub(crate) fn problems(cfg: &HelpdeskConfig, err: &mut dyn FnMut(Option<Range<usize>>, String)) {
    cfg.require_token(
        "an access token (Profile > Token Access, permission ticket.agent)",
        err,
    );
    cfg.required("group", &cfg.group, "the group tickets are created in", err);
    if let Some(r) = cfg.required(
        "requester",
        &cfg.requester,
        "the customer of the tickets: a user's login or e-mail, or guess:EMAIL",
        err,
    ) {
        let span = cfg.requester.as_ref().map(|s| s.span());
        match r.strip_prefix("guess:") {
            Some(email) if !looks_like_email(email) => err(
                span,
                format!("`requester`: {email:?} after guess: is not an e-mail address"),
            ),
            _ if r.chars().any(|c| c.is_whitespace() || c.is_control()) => err(
                span,
                "`requester` must be a login or an e-mail address, without spaces".into(),
            ),
            _ => {}
        }
    }
    cfg.check_int_priorities(
        1,
        i64::MAX,
        "Zammad priorities are priority ids (1 low, 2 normal, 3 high)",
        err,
    );
    reserved_create_fields(cfg, RESERVED, err);
}

/// A Zammad help desk.
#[derive(Debug, Clone)]
pub struct Zammad {
    /// `https://zammad.example.com/api/v1`
    api: String,
    token: Secret,
    group: String,
    requester: String,
    priorities: [i64; 4],
    create_fields: Map<String, Value>,
}

impl Zammad {
    pub(crate) fn new(cfg: &HelpdeskConfig, secrets: Secrets) -> Result<Zammad, String> {
        let token = secrets.token.ok_or_else(|| {
            format!(
                "helpdesk {:?}: Zammad needs an access token: set `token_env` or `token_file`",
                cfg.name.get_ref()
            )
        })?;
        let trimmed = |v: &Option<toml::Spanned<String>>| {
            v.as_ref()
                .map(|s| s.get_ref().trim().to_string())
                .unwrap_or_default()
        };
        let defaults = DEFAULT_PRIORITIES.map(PriorityValue::Int);
        let mut priorities = DEFAULT_PRIORITIES;
        for (i, v) in cfg.priorities(defaults).iter().enumerate() {
            if let PriorityValue::Int(n) = v {
                priorities[i] = *n;
            }
        }
        Ok(Zammad {
            api: api_base(cfg.url.get_ref(), "/api/v1"),
            token,
            group: trimmed(&cfg.group),
            requester: trimmed(&cfg.requester),
            priorities,
            create_fields: cfg.create_fields_json(),
        })
    }

    /// The API base (`https://zammad.example.com/api/v1`).
    pub fn api(&self) -> &str {
        &self.api
    }

    /// The priority id of `p`.
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
                &format!("Token token={}", self.token.0),
                true,
            ),
            body,
        )
    }

    fn ticket_url(&self, t: &TicketRef) -> String {
        format!("{}/tickets/{}", self.api, percent_encode(&t.0))
    }
}

impl Api for Zammad {
    fn classify_answer(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        classify(status, headers, body).map_err(|e| hint(status, e))
    }

    fn body_format(&self) -> BodyFormat {
        BodyFormat::Html
    }

    /// `POST /tickets`: title, group, customer, priority, the tags (dedup key included) and
    /// the body as the first article, an internal HTML note; `create_fields` fill in the rest.
    fn create_request(&self, c: &TicketContent, body: &str, _now: u64) -> HttpRequest {
        let title = one_line(&c.title, MAX_TITLE_CHARS, true);
        let mut doc = Map::new();
        doc.insert("title".into(), json!(title));
        doc.insert("group".into(), json!(self.group));
        match self.requester.strip_prefix("guess:") {
            Some(_) => doc.insert("customer_id".into(), json!(self.requester)),
            None => doc.insert("customer".into(), json!(self.requester)),
        };
        doc.insert("priority_id".into(), json!(self.priority(c.priority)));
        doc.insert(
            "tags".into(),
            json!(format!("{TAG},{}", Zammad::key_tag(&c.fingerprint))),
        );
        doc.insert(
            "article".into(),
            json!({
                "subject": title,
                "body": body,
                "content_type": "text/html",
                "type": "note",
                "internal": true,
            }),
        );
        merge_fields(&mut doc, &self.create_fields);
        self.request(
            "POST",
            format!("{}/tickets", self.api),
            Some(Value::Object(doc)),
        )
    }

    /// The ticket id from `201 {"id": 19, ...}`.
    fn parse_create(
        &self,
        _c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        v.get("id")
            .and_then(numeric_id)
            .map(|id| TicketRef(id.to_string()))
            .ok_or_else(|| unexpected("no ticket id", body))
    }

    /// `GET /tags?object=Ticket&o_id=ID`: the tags a created ticket really has.
    fn read_back_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        let url = format!(
            "{}/tags?object=Ticket&o_id={}",
            self.api,
            percent_encode(&t.0)
        );
        Some(self.request("GET", url, None))
    }

    /// The created ticket must carry the key tag, exactly.
    fn parse_read_back(
        &self,
        t: &TicketRef,
        c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let tags = v
            .get("tags")
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected("no tags", body))?;
        let want = Zammad::key_tag(&c.fingerprint);
        if tags.iter().any(|x| x.as_str() == Some(want.as_str())) {
            return Ok(());
        }
        let have: Vec<&str> = tags.iter().filter_map(Value::as_str).collect();
        Err(DeliveryError::Blocked {
            message: format!(
                "ticket {} was created but does not carry the tag {want:?} (it has {have:?}): \
                 without it the ticket cannot be found again and incidents would be \
                 duplicated. Check that this Zammad accepts `tags` in a ticket create and that \
                 the token's user may create tags (Settings > Ticket > Tags: new tags), then \
                 add the tag to ticket {} or close it",
                t.0, t.0
            ),
        })
    }

    /// `POST /ticket_articles`: an internal HTML note.
    fn comment_request(
        &self,
        t: &TicketRef,
        _c: &TicketContent,
        kind: UpdateKind,
        text: &str,
        _now: u64,
    ) -> HttpRequest {
        let subject = match kind {
            UpdateKind::Recurrence => "The incident recurred",
            UpdateKind::Escalation => "Priority raised",
            UpdateKind::Reopen => "The incident recurred after the ticket was closed",
            UpdateKind::Digest => "Storm digest",
        };
        let doc = json!({
            "ticket_id": json_id(&t.0),
            "subject": subject,
            "body": text,
            "content_type": "text/html",
            "type": "note",
            "internal": true,
        });
        self.request("POST", format!("{}/ticket_articles", self.api), Some(doc))
    }

    /// `GET /tickets/search?query=tags:"KEY" AND state.name:(open states)&expand=true`,
    /// oldest first.
    fn find_open_request(&self, fingerprint: &str) -> Option<HttpRequest> {
        let states: Vec<String> = OPEN_STATES
            .iter()
            .map(|s| {
                if s.contains(' ') {
                    format!("\"{s}\"")
                } else {
                    s.to_string()
                }
            })
            .collect();
        let query = format!(
            "tags:\"{}\" AND state.name:({})",
            quote_escape(&Zammad::key_tag(fingerprint)),
            states.join(" OR ")
        );
        let url = format!(
            "{}/tickets/search?query={}&expand=true&sort_by=created_at&order_by=asc&limit={SEARCH_LIMIT}",
            self.api,
            percent_encode(&query),
        );
        Some(self.request("GET", url, None))
    }

    /// The oldest ticket of the answer in an open state (the search matches states by words).
    fn parse_find_open(
        &self,
        _fingerprint: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Option<TicketRef>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let items = v
            .as_array()
            .ok_or_else(|| unexpected("not a list of tickets", body))?;
        let mut best: Option<u64> = None;
        for item in items {
            let id = item
                .get("id")
                .and_then(numeric_id)
                .ok_or_else(|| unexpected("a search result without an id", body))?;
            let state = item
                .get("state")
                .and_then(Value::as_str)
                .ok_or_else(|| unexpected("a search result without a state name", body))?;
            if OPEN_STATES.contains(&state) && best.is_none_or(|b| id < b) {
                best = Some(id);
            }
        }
        Ok(best.map(|id| TicketRef(id.to_string())))
    }

    /// `GET /tickets/ID?expand=true`, for the state's name.
    fn status_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        Some(self.request("GET", format!("{}?expand=true", self.ticket_url(t)), None))
    }

    /// Open and closed states of a default Zammad; any other is `Blocked`.
    fn parse_status(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketStatus, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let s = v
            .get("state")
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected("no state name", body))?;
        if OPEN_STATES.contains(&s) {
            Ok(TicketStatus::Open)
        } else if CLOSED_STATES.contains(&s) {
            Ok(TicketStatus::Closed)
        } else if FINAL_STATES.contains(&s) {
            Ok(TicketStatus::Final)
        } else {
            Err(DeliveryError::Blocked {
                message: format!(
                    "unknown ticket state {:?} (a custom state?): only {} (open) and {} \
                     (closed) are understood",
                    super::clean_text(s),
                    OPEN_STATES.join(", "),
                    CLOSED_STATES.join(", ")
                ),
            })
        }
    }

    /// `PUT /tickets/ID {"state": "open"}`.
    fn reopen_request(&self, t: &TicketRef, _now: u64) -> Option<HttpRequest> {
        Some(self.request("PUT", self.ticket_url(t), Some(json!({ "state": "open" }))))
    }

    /// `PUT /tickets/ID {"priority_id": N}`.
    fn set_priority_request(&self, t: &TicketRef, p: Priority, _now: u64) -> Option<HttpRequest> {
        let doc = json!({ "priority_id": self.priority(p) });
        Some(self.request("PUT", self.ticket_url(t), Some(doc)))
    }

    /// A 2xx with a JSON body; an article Zammad made public is `Blocked`.
    fn parse_ok(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        if v.get("internal") == Some(&Value::Bool(false)) {
            return Err(DeliveryError::Blocked {
                message: format!(
                    "Zammad stored the note of ticket {} as public (visible to the customer): \
                     the token must belong to an agent of the group",
                    v.get("ticket_id").map_or("?".into(), Value::to_string)
                ),
            });
        }
        Ok(())
    }

    /// `GET /users/me?expand=true`: proves the URL and the token, and shows the user's roles
    /// and groups.
    fn check_request(&self) -> Option<HttpRequest> {
        Some(self.request("GET", format!("{}/users/me?expand=true", self.api), None))
    }

    /// The token's user must be an active agent; a group it does not list is only a warning
    /// (roles can grant groups too).
    fn parse_check(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<HttpRequest>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        if v.get("id").and_then(numeric_id).is_none() {
            return Err(unexpected("no user id", body));
        }
        let login = v.get("login").and_then(Value::as_str).unwrap_or("?");
        if v.get("active") == Some(&Value::Bool(false)) {
            return Err(DeliveryError::Blocked {
                message: format!("the token's user {login:?} is inactive"),
            });
        }
        let roles: Vec<&str> = v
            .get("roles")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !roles.is_empty() && roles.iter().all(|r| *r == "Customer") {
            return Err(DeliveryError::Blocked {
                message: format!(
                    "the token's user {login:?} is only a Customer: tickets would be its own \
                     and notes public; use the token of an agent of group {:?}",
                    self.group
                ),
            });
        }
        if let Some(groups) = v.get("groups").and_then(Value::as_object) {
            let access: Vec<&str> = groups
                .get(&self.group)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !access.iter().any(|a| matches!(*a, "full" | "create")) {
                tracing::warn!(
                    group = %self.group,
                    user = %login,
                    "the token's user has no create access to the group of its own (a role may grant it)"
                );
            }
        }
        Ok(Vec::new())
    }
}

/// Adds what the operator should check to Zammad's terse 401.
fn hint(status: u16, e: DeliveryError) -> DeliveryError {
    match (status, e) {
        (401, DeliveryError::Blocked { message }) => DeliveryError::Blocked {
            message: format!(
                "{message} (the access token was refused: check token_env/token_file, the \
                 token's expiry and that token access is enabled in Zammad)"
            ),
        },
        (_, e) => e,
    }
}

/// A ticket id as Zammad sends it in JSON: a number when it is one.
fn json_id(id: &str) -> Value {
    id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n))
}

/// Escapes `"` and `\` inside a quoted query-string value.
fn quote_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::adapter::test_support::{assert_problem, config, problems_of, token};

    const OK: &str = "[[helpdesk]]\nname = \"zammad\"\nkind = \"zammad\"\n\
                      url = \"https://zammad.example.com\"\ntoken_env = \"ZAMMAD_TOKEN\"\n\
                      group = \"Security\"\nrequester = \"secops@example.com\"\n";

    fn zammad(text: &str) -> Zammad {
        Zammad::new(&config(text), token("t0k3n")).unwrap()
    }

    #[test]
    fn a_complete_entry_has_no_problems() {
        assert_eq!(problems_of(OK), Vec::<String>::new());
        let guess = OK.replace("secops@example.com", "guess:secops@example.com");
        assert_eq!(problems_of(&guess), Vec::<String>::new());
        let login = OK.replace("secops@example.com", "secops");
        assert_eq!(problems_of(&login), Vec::<String>::new());
    }

    #[test]
    fn problems_are_located() {
        let bare = "[[helpdesk]]\nname = \"z\"\nkind = \"zammad\"\nurl = \"https://z.example\"\n";
        assert_problem(bare, "3:8: helpdesk \"z\": Zammad needs an access token");
        assert_problem(bare, "3:8: helpdesk \"z\": Zammad needs `group`");
        assert_problem(bare, "3:8: helpdesk \"z\": Zammad needs `requester`");
        assert_problem(
            &OK.replace("group = \"Security\"", "group = \" \""),
            "6:9: helpdesk \"zammad\": `group` is empty",
        );
        assert_problem(
            &OK.replace("secops@example.com", "guess:secops"),
            "7:13: helpdesk \"zammad\": `requester`: \"secops\" after guess: is not an e-mail",
        );
        assert_problem(
            &OK.replace("secops@example.com", "Sec Ops <secops@example.com>"),
            "7:13: helpdesk \"zammad\": `requester` must be a login or an e-mail address",
        );
        assert_problem(
            &format!("{OK}priority_map = {{ P1 = \"high\" }}\n"),
            "8:23: helpdesk \"zammad\": Zammad priorities are priority ids",
        );
        assert_problem(
            &format!("{OK}priority_map = {{ P4 = 0 }}\n"),
            "8:23: helpdesk \"zammad\": Zammad priorities are priority ids",
        );
        assert_problem(
            &format!("{OK}create_fields = {{ title = \"x\", organization = \"ACME\" }}\n"),
            "8:17: helpdesk \"zammad\": `create_fields` must not set `title`",
        );
        assert_problem(
            &format!("{OK}queue = \"x\"\n"),
            "8:9: helpdesk \"zammad\": `queue` does not apply to kind = \"zammad\"",
        );
        assert_problem(
            &format!("{OK}username = \"x\"\n"),
            "8:12: helpdesk \"zammad\": `username` does not apply to kind = \"zammad\"",
        );
        // Tags may be added through `create_fields`: they are merged.
        assert_eq!(
            problems_of(&format!("{OK}create_fields = {{ tags = \"ids\" }}\n")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn priorities_default_to_zammads_three_levels() {
        let z = zammad(OK);
        let got: Vec<i64> = [Priority::P1, Priority::P2, Priority::P3, Priority::P4]
            .iter()
            .map(|p| z.priority(*p))
            .collect();
        assert_eq!(got, vec![3, 3, 2, 1]);
        let z = zammad(&format!("{OK}priority_map = {{ P1 = 4 }}\n"));
        assert_eq!(z.priority(Priority::P1), 4);
        assert_eq!(z.priority(Priority::P2), 3);
    }

    #[test]
    fn base_urls_are_normalised() {
        assert_eq!(
            zammad(&OK.replace("zammad.example.com", "zammad.example.com/")).api(),
            "https://zammad.example.com/api/v1"
        );
    }

    #[test]
    fn ids_and_quotes() {
        assert_eq!(json_id("12"), json!(12));
        assert_eq!(quote_escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
