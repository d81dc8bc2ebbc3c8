//! Jira Cloud (REST API v3) and Jira Service Management, with HTTP basic authentication: the
//! Atlassian account e-mail (`username`) and an API token.
//!
//! Checked against Atlassian's documentation:
//! <https://developer.atlassian.com/cloud/jira/platform/rest/v3/> (groups Issues, Issue
//! search, Issue comments, Issue priorities, Projects, Myself),
//! <https://developer.atlassian.com/cloud/jira/service-desk/rest/> (Request, Servicedesk,
//! Request type), <https://developer.atlassian.com/cloud/jira/platform/rate-limiting/> and
//! <https://developer.atlassian.com/cloud/jira/platform/apis/document/structure/> (ADF). What
//! Jira does that shapes this adapter:
//!
//! - Tickets are issues of `project` (its key), of type `issue_type` (default `Task`),
//!   created by `POST /rest/api/3/issue`. With `service_desk_id` and `request_type_id` they
//!   are Jira Service Management requests instead (`POST /rest/servicedeskapi/request`),
//!   which take only the fields the request type shows: its form must have Summary,
//!   Description and Labels (the check verifies it). Everything after the create uses the
//!   platform API, on the issue key, in both modes.
//! - Bodies and comments are Atlassian Document Format: the rendered body is an ADF
//!   document (a JSON value, sent as such; JSM needs `isAdfRequest: true`). Jira refuses a
//!   text field longer than 32,767 characters, so the largest blocks of a document that is
//!   too long are replaced by a note (the fingerprint line is kept).
//! - The dedup key is a label, `sentinela-<fingerprint>` (labels cannot hold spaces). The
//!   search is JQL through `GET /rest/api/3/search/jql` (the old `/search` is gone):
//!   `labels = "KEY" AND statusCategory != Done`, and the labels of each result are compared
//!   exactly. Jira's search index is eventually consistent: an issue created a moment ago may
//!   not be found yet. The outbox looks in its own records first and searches only after a
//!   lost state or a failed create, so this matters only when a create's answer was lost and
//!   the retry comes within the indexing delay (Jira has no idempotency key for creates).
//! - Jira refuses (400) a field that is not on the create screen, or a priority the project
//!   does not have, with `{"errorMessages": [...], "errors": {"field": "..."}}`; nothing is
//!   dropped silently, so creates are not read back.
//! - Priority is by name, Jira's defaults `Highest`, `High`, `Medium`, `Low`, `Lowest`: P1 =
//!   Highest, P2 = High, P3 = Medium, P4 = Low, configurable (sites rename and add
//!   priorities; priority schemes restrict them per project). JSM request forms rarely show
//!   Priority, so there it is set right after the create (`PUT` on the issue).
//! - Comments are internal: the `sd.public.comment` property `{"internal": true}` keeps them
//!   from customers in service projects and means nothing elsewhere, so it is always sent.
//! - Open or closed is the status category: `done` is closed. Reopening is a workflow
//!   transition whose id depends on the workflow and the current status: the status read
//!   asks for the issue's transitions (`expand=transitions`) and remembers the one leading
//!   out of Done (a transition named like "Reopen", else one to a To Do status, else to an
//!   In Progress status); the reopen then posts it. A workflow with no way out of Done
//!   leaves the issue closed: the comment alone is added, and after the reopen window a new
//!   ticket is opened.
//! - Rate limits: 429 with `Retry-After` (seconds) and `X-RateLimit-Reset` (an ISO 8601
//!   time), 503 with `Retry-After` under load.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use super::{
    api_base, basic_credentials, classify, clean_text, header, header_value, json_request,
    one_line, percent_encode, prio_index, unexpected, Api, HelpdeskConfig, PriorityValue, Secret,
    Secrets, MAX_RETRY_AFTER,
};
use crate::policy::Priority;
use crate::ticket::render::{fingerprint_marker, BodyFormat};
use crate::ticket::{
    DeliveryError, HttpRequest, TicketContent, TicketRef, TicketStatus, UpdateKind,
};

/// The keys only Jira uses.
pub(crate) const KEYS: &[&str] = &[
    "username",
    "project",
    "issue_type",
    "service_desk_id",
    "request_type_id",
    "create_fields",
];

/// Jira summaries hold 255 characters.
const MAX_SUMMARY_CHARS: usize = 255;

/// Jira refuses text fields (description, comment) over 32,767 characters; the ADF JSON is
/// kept under this, which leaves room for Jira's own counting.
pub const MAX_ADF_CHARS: usize = 32_000;

/// The default issue type.
pub const DEFAULT_ISSUE_TYPE: &str = "Task";

/// Default priority names for P1..P4 (Jira's default priorities).
pub const DEFAULT_PRIORITIES: [&str; 4] = ["Highest", "High", "Medium", "Low"];

/// The prefix of the dedup label; the fingerprint follows.
pub const LABEL_PREFIX: &str = "sentinela-";

/// Fields of the create that sentinela sets; `create_fields` may not replace them (its
/// `labels` are added to ours).
const OWN_FIELDS: &[&str] = &["project", "issuetype", "summary", "description", "priority"];

/// The fields a JSM request type must show for our create.
const JSM_FIELDS: &[&str] = &["summary", "description", "labels"];

/// The key under which the transition found by the last status read of a closed issue is
/// remembered too (not a valid issue key or id).
const LAST_READ: &str = "";

/// Remembered reopen transitions are forgotten past this many (a bound, not a cache policy:
/// each status read stores the one the next reopen needs).
const MAX_REMEMBERED: usize = 1024;

/// Jira-specific problems of a `[[helpdesk]]` entry.
pub(crate) fn problems(cfg: &HelpdeskConfig, err: &mut dyn FnMut(Option<Range<usize>>, String)) {
    cfg.require_token(
        "an API token (id.atlassian.com > Security > API tokens)",
        err,
    );
    if let Some(u) = cfg.required(
        "username",
        &cfg.username,
        "the Atlassian account e-mail",
        err,
    ) {
        if !u.contains('@') || u.chars().any(|c| c.is_whitespace() || c == ':') {
            err(
                cfg.username.as_ref().map(|s| s.span()),
                format!("`username` {u:?} is not an e-mail: Jira Cloud wants the account's e-mail"),
            );
        }
    }
    if let Some(p) = cfg.required(
        "project",
        &cfg.project,
        "the project key, e.g. \"SEC\"",
        err,
    ) {
        let mut b = p.bytes();
        let ok = b.next().is_some_and(|c| c.is_ascii_uppercase())
            && b.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
            && p.len() >= 2;
        if !ok {
            err(
                cfg.project.as_ref().map(|s| s.span()),
                format!("`project` {p:?} is not a Jira project key (upper-case, e.g. \"SEC\")"),
            );
        }
    }
    let jsm = match (&cfg.service_desk_id, &cfg.request_type_id) {
        (None, None) => false,
        (Some(d), Some(r)) => {
            for (key, v) in [("service_desk_id", d), ("request_type_id", r)] {
                if v.get_ref().trim().parse::<u64>().is_err() {
                    err(Some(v.span()), format!("`{key}` must be a numeric id"));
                }
            }
            true
        }
        (Some(v), None) | (None, Some(v)) => {
            err(
                Some(v.span()),
                "Jira Service Management needs both `service_desk_id` and `request_type_id`".into(),
            );
            true
        }
    };
    if let Some(t) = &cfg.issue_type {
        if jsm {
            err(
                Some(t.span()),
                "`issue_type` does not apply with `request_type_id`: the request type sets it"
                    .into(),
            );
        } else if t.get_ref().trim().is_empty() {
            err(Some(t.span()), "`issue_type` is empty".into());
        }
    }
    for v in cfg.priority_map.values() {
        match v.get_ref() {
            PriorityValue::Text(t) if !t.trim().is_empty() => {}
            _ => err(
                Some(v.span()),
                "Jira priorities are names (e.g. P1 = \"Highest\")".into(),
            ),
        }
    }
    if let Some(f) = &cfg.create_fields {
        for key in OWN_FIELDS {
            if f.get_ref().contains_key(*key) {
                err(
                    Some(f.span()),
                    if *key == "issuetype" {
                        format!("`create_fields` must not set `{key}`: use `issue_type`")
                    } else {
                        format!("`create_fields` must not set `{key}`: sentinela sets it")
                    },
                );
            }
        }
        if let Some(l) = f.get_ref().get("labels") {
            if extra_labels(&serde_json::to_value(l).unwrap_or(Value::Null)).is_none() {
                err(
                    Some(f.span()),
                    "`create_fields.labels`: a list of labels without spaces".into(),
                );
            }
        }
    }
}

/// `create_fields.labels`; `None` unless a list of labels without spaces.
fn extra_labels(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|l| {
            l.as_str()
                .filter(|l| {
                    !l.is_empty() && !l.chars().any(|c| c.is_whitespace() || c.is_control())
                })
                .map(str::to_string)
        })
        .collect()
}

/// A Jira Cloud site (or a Jira Service Management service desk).
#[derive(Debug)]
pub struct Jira {
    /// `https://example.atlassian.net`
    base: String,
    /// `Basic base64(username:token)`
    auth: Secret,
    project: String,
    issue_type: String,
    /// Service desk and request type ids, in JSM mode.
    jsm: Option<(String, String)>,
    priorities: [String; 4],
    create_fields: Map<String, Value>,
    /// Issue key or id -> the transition that takes it out of Done, learned by the last
    /// status read.
    reopen: Mutex<HashMap<String, String>>,
}

impl Jira {
    pub(crate) fn new(cfg: &HelpdeskConfig, secrets: Secrets) -> Result<Jira, String> {
        let token = secrets.token.ok_or_else(|| {
            format!(
                "helpdesk {:?}: Jira needs an API token: set `token_env` or `token_file`",
                cfg.name.get_ref()
            )
        })?;
        let user = cfg
            .username
            .as_ref()
            .map(|u| u.get_ref().trim().to_string())
            .unwrap_or_default();
        let defaults = DEFAULT_PRIORITIES.map(|p| PriorityValue::Text(p.into()));
        let priorities = cfg.priorities(defaults).map(|v| match v {
            PriorityValue::Text(t) => t.trim().to_string(),
            PriorityValue::Int(i) => i.to_string(),
        });
        let trimmed =
            |v: &Option<toml::Spanned<String>>| v.as_ref().map(|s| s.get_ref().trim().to_string());
        let jsm = trimmed(&cfg.service_desk_id).zip(trimmed(&cfg.request_type_id));
        Ok(Jira {
            base: api_base(cfg.url.get_ref(), ""),
            auth: Secret(format!("Basic {}", basic_credentials(&user, &token.0))),
            project: trimmed(&cfg.project).unwrap_or_default(),
            issue_type: trimmed(&cfg.issue_type).unwrap_or_else(|| DEFAULT_ISSUE_TYPE.into()),
            jsm,
            priorities,
            create_fields: cfg.create_fields_json(),
            reopen: Mutex::new(HashMap::new()),
        })
    }

    /// The priority name of `p`.
    pub fn priority(&self, p: Priority) -> &str {
        &self.priorities[prio_index(p)]
    }

    /// The dedup label of a fingerprint.
    pub fn label(fingerprint: &str) -> String {
        format!("{LABEL_PREFIX}{fingerprint}")
    }

    /// Whether tickets are JSM requests.
    pub fn is_service_desk(&self) -> bool {
        self.jsm.is_some()
    }

    fn request(&self, method: &str, url: String, body: Option<Value>) -> HttpRequest {
        json_request(
            method,
            url,
            header("Authorization", &self.auth.0, true),
            body,
        )
    }

    fn issue_url(&self, t: &TicketRef) -> String {
        format!("{}/rest/api/3/issue/{}", self.base, percent_encode(&t.0))
    }

    /// Our label, then the `create_fields` labels.
    fn labels(&self, c: &TicketContent) -> Vec<String> {
        let mut labels = vec![Self::label(&c.fingerprint)];
        if let Some(extra) = self.create_fields.get("labels").and_then(extra_labels) {
            for l in extra {
                if !labels.contains(&l) {
                    labels.push(l);
                }
            }
        }
        labels
    }

    /// `create_fields` without the fields sentinela sets, plus ours.
    fn fields(&self, ours: Vec<(&str, Value)>) -> Map<String, Value> {
        let mut m: Map<String, Value> = self
            .create_fields
            .iter()
            .filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str()) && k.as_str() != "labels")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in ours {
            m.insert(k.to_string(), v);
        }
        m
    }

    /// `PUT /rest/api/3/issue/KEY {"fields": {"priority": {"name": ...}}}`.
    fn priority_request(&self, t: &TicketRef, p: Priority) -> HttpRequest {
        let doc = json!({ "fields": { "priority": { "name": self.priority(p) } } });
        self.request("PUT", self.issue_url(t), Some(doc))
    }

    /// The check's follow-ups: the project, the priorities and, for JSM, the service desk and
    /// the request type's fields.
    pub fn check_follow_ups(&self) -> Vec<HttpRequest> {
        let mut out = vec![
            self.request(
                "GET",
                format!(
                    "{}/rest/api/3/project/{}",
                    self.base,
                    percent_encode(&self.project)
                ),
                None,
            ),
            self.request(
                "GET",
                format!("{}/rest/api/3/priority/search?maxResults=100", self.base),
                None,
            ),
        ];
        if let Some((desk, rtype)) = &self.jsm {
            let desk_url = format!(
                "{}/rest/servicedeskapi/servicedesk/{}",
                self.base,
                percent_encode(desk)
            );
            out.push(self.request(
                "GET",
                format!("{desk_url}/requesttype/{}/field", percent_encode(rtype)),
                None,
            ));
            out.push(self.request("GET", desk_url, None));
        }
        out
    }

    /// The project must not be archived and must have the issue type (Jira mode).
    fn check_project(&self, p: &Value) -> Result<(), DeliveryError> {
        if p.get("archived").and_then(Value::as_bool) == Some(true) {
            return Err(DeliveryError::Blocked {
                message: format!("project {:?} is archived", self.project),
            });
        }
        if self.jsm.is_some() {
            return Ok(());
        }
        let types: Vec<&str> = p
            .get("issueTypes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|t| t.get("subtask").and_then(Value::as_bool) != Some(true))
                    .filter_map(|t| t.get("name")?.as_str())
                    .collect()
            })
            .unwrap_or_default();
        if types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&self.issue_type))
        {
            return Ok(());
        }
        Err(DeliveryError::Blocked {
            message: format!(
                "project {:?} has no issue type {:?} (`issue_type`); it has: {}",
                self.project,
                self.issue_type,
                types
                    .iter()
                    .map(|t| clean_text(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    /// Every configured priority name must exist (when the list is complete).
    fn check_priorities(&self, values: &[Value], complete: bool) -> Result<(), DeliveryError> {
        let names: Vec<&str> = values
            .iter()
            .filter_map(|p| p.get("name")?.as_str())
            .collect();
        for p in [Priority::P1, Priority::P2, Priority::P3, Priority::P4] {
            let want = self.priority(p);
            if names.iter().any(|n| n.eq_ignore_ascii_case(want)) {
                continue;
            }
            if !complete {
                tracing::warn!(priority = %want, "Jira lists more than 100 priorities: not checked");
                return Ok(());
            }
            return Err(DeliveryError::Blocked {
                message: format!(
                    "priority {p} maps to {want:?}, which Jira does not have; its priorities: {} \
                     (set `priority_map`)",
                    names
                        .iter()
                        .map(|n| clean_text(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Ok(())
    }

    /// The JSM request type must show summary, description and labels, and require nothing
    /// else that `create_fields` does not give.
    fn check_request_type(&self, fields: &[Value]) -> Result<(), DeliveryError> {
        let ids: Vec<(&str, bool)> = fields
            .iter()
            .filter_map(|f| {
                Some((
                    f.get("fieldId")?.as_str()?,
                    f.get("required").and_then(Value::as_bool).unwrap_or(false),
                ))
            })
            .collect();
        let rtype = self.jsm.as_ref().map_or("?", |(_, r)| r.as_str());
        let missing: Vec<&str> = JSM_FIELDS
            .iter()
            .copied()
            .filter(|f| !ids.iter().any(|(i, _)| i == f))
            .collect();
        if !missing.is_empty() {
            return Err(DeliveryError::Blocked {
                message: format!(
                    "request type {rtype} does not show {} on its form: JSM refuses fields \
                     the form lacks; add them in the request type's Request form (Labels \
                     holds the dedup key)",
                    missing.join(", ")
                ),
            });
        }
        let unfilled: Vec<&str> = ids
            .iter()
            .filter(|(i, required)| {
                *required && !JSM_FIELDS.contains(i) && !self.create_fields.contains_key(*i)
            })
            .map(|(i, _)| *i)
            .collect();
        if !unfilled.is_empty() {
            return Err(DeliveryError::Blocked {
                message: format!(
                    "request type {rtype} requires {}: give them in `create_fields`",
                    unfilled
                        .iter()
                        .map(|i| clean_text(i))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Ok(())
    }
}

impl Api for Jira {
    /// [`classify`] with Jira's error bodies flattened, `X-RateLimit-Reset` when
    /// `Retry-After` is missing, and what to check for 401, 403 and 404.
    fn classify_answer(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let flat = flatten_error(body);
        let r = classify(status, headers, flat.as_deref().unwrap_or(body));
        let hint = match status {
            401 => Some(
                "the credentials were refused: `username` must be the Atlassian account \
                 e-mail and the token an API token of that account (check token_env/token_file)"
                    .to_string(),
            ),
            403 => Some(format!(
                "the account lacks a permission in project {:?}: Browse projects, Create \
                 issues, Add comments, Edit issues, Transition issues (in service projects: \
                 an agent)",
                self.project
            )),
            404 => Some(format!(
                "project {:?}, the issue or the service desk does not exist, or the account \
                 cannot see it",
                self.project
            )),
            _ => None,
        };
        match (r, hint) {
            (Err(DeliveryError::Blocked { message }), Some(h)) => Err(DeliveryError::Blocked {
                message: format!("{message} ({h})"),
            }),
            (
                Err(DeliveryError::Retry {
                    message,
                    retry_after: None,
                }),
                _,
            ) => Err(DeliveryError::Retry {
                message,
                retry_after: reset_wait(headers, SystemTime::now()),
            }),
            (r, _) => r,
        }
    }

    /// The encoded credentials: a server or proxy that echoes the `Authorization` header
    /// would show them, and they decode to the token.
    fn derived_secrets(&self) -> Vec<Secret> {
        vec![Secret(self.auth.0.trim_start_matches("Basic ").to_string())]
    }

    fn body_format(&self) -> BodyFormat {
        BodyFormat::Adf
    }

    /// `POST /rest/api/3/issue` (or, for JSM, `POST /rest/servicedeskapi/request`) with the
    /// summary, the ADF description and the dedup label.
    fn create_request(&self, c: &TicketContent, body: &str, _now: u64) -> HttpRequest {
        let summary = json!(one_line(&c.title, MAX_SUMMARY_CHARS, false));
        let description = fit_adf(body);
        let labels = json!(self.labels(c));
        match &self.jsm {
            None => {
                let fields = self.fields(vec![
                    ("project", json!({ "key": self.project })),
                    ("issuetype", json!({ "name": self.issue_type })),
                    ("summary", summary),
                    ("description", description),
                    ("labels", labels),
                    ("priority", json!({ "name": self.priority(c.priority) })),
                ]);
                self.request(
                    "POST",
                    format!("{}/rest/api/3/issue", self.base),
                    Some(json!({ "fields": fields })),
                )
            }
            Some((desk, rtype)) => {
                let values = self.fields(vec![
                    ("summary", summary),
                    ("description", description),
                    ("labels", labels),
                ]);
                let mut r = self.request(
                    "POST",
                    format!("{}/rest/servicedeskapi/request", self.base),
                    Some(json!({
                        "serviceDeskId": desk,
                        "requestTypeId": rtype,
                        "isAdfRequest": true,
                        "requestFieldValues": values,
                    })),
                );
                // `isAdfRequest` is marked experimental.
                r.headers.push(header("X-ExperimentalApi", "opt-in", false));
                r
            }
        }
    }

    /// The issue key from `201 {"id": "10001", "key": "SEC-12"}` (JSM: `issueKey`).
    fn parse_create(
        &self,
        _c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let field = if self.jsm.is_some() {
            "issueKey"
        } else {
            "key"
        };
        v.get(field)
            .and_then(Value::as_str)
            .filter(|k| is_issue_key(k))
            .map(|k| TicketRef(k.to_string()))
            .ok_or_else(|| unexpected("no issue key", body))
    }

    /// JSM: the priority, set on the new issue (request forms rarely show it).
    fn after_create_requests(&self, t: &TicketRef, c: &TicketContent) -> Vec<HttpRequest> {
        match self.jsm {
            Some(_) => vec![self.priority_request(t, c.priority)],
            None => Vec::new(),
        }
    }

    /// `POST /rest/api/3/issue/KEY/comment`: an ADF comment, internal in service projects.
    fn comment_request(
        &self,
        t: &TicketRef,
        _c: &TicketContent,
        _kind: UpdateKind,
        text: &str,
        _now: u64,
    ) -> HttpRequest {
        let doc = json!({
            "body": fit_adf(text),
            "properties": [{ "key": "sd.public.comment", "value": { "internal": true } }],
        });
        self.request("POST", format!("{}/comment", self.issue_url(t)), Some(doc))
    }

    /// `GET /rest/api/3/search/jql` for open issues with the dedup label, oldest first.
    /// Bounded to the configured project: the label is ours, but an issue of another project
    /// carrying it (a second deployment, a copied issue) must not receive this incident's
    /// comments.
    fn find_open_request(&self, fingerprint: &str) -> Option<HttpRequest> {
        let jql = format!(
            "project = \"{}\" AND labels = \"{}\" AND statusCategory != Done ORDER BY created ASC",
            jql_escape(&self.project),
            jql_escape(&Self::label(fingerprint))
        );
        let url = format!(
            "{}/rest/api/3/search/jql?jql={}&fields={}&maxResults=50",
            self.base,
            percent_encode(&jql),
            percent_encode("labels,status,created"),
        );
        Some(self.request("GET", url, None))
    }

    /// The oldest open issue whose labels hold the dedup label exactly.
    fn parse_find_open(
        &self,
        fingerprint: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Option<TicketRef>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let issues = v
            .get("issues")
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected("no issues", body))?;
        let label = Self::label(fingerprint);
        let mut best: Option<(u64, String)> = None;
        for issue in issues {
            let key = issue
                .get("key")
                .and_then(Value::as_str)
                .filter(|k| is_issue_key(k));
            let id = issue
                .get("id")
                .and_then(Value::as_str)
                .and_then(|i| i.parse::<u64>().ok());
            let (Some(key), Some(id)) = (key, id) else {
                return Err(unexpected("an issue without a key or id", body));
            };
            let fields = issue.get("fields");
            let labels = fields
                .and_then(|f| f.get("labels"))
                .and_then(Value::as_array)
                .ok_or_else(|| unexpected("an issue without labels", body))?;
            if !labels.iter().any(|l| l.as_str() == Some(label.as_str())) {
                continue; // the same label but for case: another incident
            }
            if status_category(fields) == Some("done") {
                continue; // closed since the index was updated
            }
            if best.as_ref().is_none_or(|(b, _)| id < *b) {
                best = Some((id, key.to_string()));
            }
        }
        Ok(best.map(|(_, k)| TicketRef(k)))
    }

    /// `GET /rest/api/3/issue/KEY?fields=status&expand=transitions`: the status, and the
    /// transitions a reopen may need.
    fn status_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        let url = format!("{}?fields=status&expand=transitions", self.issue_url(t));
        Some(self.request("GET", url, None))
    }

    /// Status category `done` is closed, `new` and `indeterminate` open; a closed issue's
    /// way out of Done is remembered for the reopen request.
    fn parse_status(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketStatus, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let state = match status_category(v.get("fields")) {
            Some("done") => TicketStatus::Closed,
            Some("new" | "indeterminate") => TicketStatus::Open,
            _ => return Err(unexpected("no status category", body)),
        };
        if state == TicketStatus::Closed {
            // Under the issue's current key and id, and as the last status read: an issue moved
            // to another project answers under its new key, while the reopen that follows this
            // read names it by the key it had when created.
            let names: Vec<String> = ["key", "id"]
                .iter()
                .filter_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
                .chain([LAST_READ.to_string()])
                .collect();
            let found = reopen_transition(&v);
            if let Ok(mut m) = self.reopen.lock() {
                if m.len() >= MAX_REMEMBERED {
                    m.clear();
                }
                for n in &names {
                    match &found {
                        Some(id) => m.insert(n.clone(), id.clone()),
                        None => m.remove(n), // a transition learned earlier is stale
                    };
                }
            }
            if found.is_none() {
                tracing::warn!(
                    issue = %names.first().map_or("?", String::as_str),
                    "Jira offers no transition out of Done: the issue stays closed and only the \
                     comment is added"
                );
            }
        }
        Ok(state)
    }

    /// `POST /rest/api/3/issue/KEY/transitions` with the transition the last status read
    /// found; `None` when there is none (the comment alone is added).
    fn reopen_request(&self, t: &TicketRef, _now: u64) -> Option<HttpRequest> {
        let id = {
            let m = self.reopen.lock().ok()?;
            m.get(&t.0).or_else(|| m.get(LAST_READ)).cloned()?
        };
        let doc = json!({ "transition": { "id": id } });
        Some(self.request(
            "POST",
            format!("{}/transitions", self.issue_url(t)),
            Some(doc),
        ))
    }

    /// `PUT /rest/api/3/issue/KEY {"fields": {"priority": {"name": ...}}}`.
    fn set_priority_request(&self, t: &TicketRef, p: Priority, _now: u64) -> Option<HttpRequest> {
        Some(self.priority_request(t, p))
    }

    /// `GET /rest/api/3/myself`: proves the URL, the e-mail and the token.
    fn check_request(&self) -> Option<HttpRequest> {
        Some(self.request("GET", format!("{}/rest/api/3/myself", self.base), None))
    }

    /// The account must be active; returns the follow-ups.
    fn parse_check(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<HttpRequest>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        v.get("accountId")
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected("no accountId", body))?;
        if v.get("active").and_then(Value::as_bool) == Some(false) {
            return Err(DeliveryError::Blocked {
                message: "the Jira account is deactivated".into(),
            });
        }
        Ok(self.check_follow_ups())
    }

    /// Reads one follow-up answer, told apart by its shape.
    fn parse_check_field(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        if let Some(fields) = v.get("requestTypeFields").and_then(Value::as_array) {
            self.check_request_type(fields)
        } else if let Some(key) = v.get("projectKey").and_then(Value::as_str) {
            if key.eq_ignore_ascii_case(&self.project) {
                Ok(())
            } else {
                Err(DeliveryError::Blocked {
                    message: format!(
                        "service desk {} belongs to project {:?}, not {:?} (`project`)",
                        self.jsm.as_ref().map_or("?", |(d, _)| d.as_str()),
                        clean_text(key),
                        self.project
                    ),
                })
            }
        } else if let Some(values) = v.get("values").and_then(Value::as_array) {
            self.check_priorities(
                values,
                v.get("isLast").and_then(Value::as_bool) != Some(false),
            )
        } else if v.get("key").is_some() {
            self.check_project(&v)
        } else {
            Err(unexpected(
                "not a project, priorities, service desk or request type",
                body,
            ))
        }
    }
}

/// `fields.status.statusCategory.key`.
fn status_category(fields: Option<&Value>) -> Option<&str> {
    fields?
        .get("status")?
        .get("statusCategory")?
        .get("key")?
        .as_str()
}

/// The transition out of Done: one named like "Reopen", else one to a To Do status, else one
/// to an In Progress status; unavailable transitions skipped.
fn reopen_transition(issue: &Value) -> Option<String> {
    let ts = issue.get("transitions")?.as_array()?;
    let usable = |t: &&Value| t.get("isAvailable").and_then(Value::as_bool) != Some(false);
    let to = |t: &Value| -> Option<String> {
        t.get("to")?
            .get("statusCategory")?
            .get("key")?
            .as_str()
            .map(str::to_string)
    };
    let id = |t: &Value| -> Option<String> {
        match t.get("id")? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let named = ts.iter().filter(usable).find(|t| {
        t.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.to_lowercase().contains("reopen"))
            && to(t).as_deref() != Some("done")
    });
    let by_category = |cat: &str| {
        ts.iter()
            .filter(usable)
            .find(|t| to(t).as_deref() == Some(cat))
    };
    named
        .or_else(|| by_category("new"))
        .or_else(|| by_category("indeterminate"))
        .and_then(id)
}

/// An issue key: `PROJECT-123`.
fn is_issue_key(k: &str) -> bool {
    k.rsplit_once('-').is_some_and(|(p, n)| {
        !p.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Quotes a JQL string value.
fn jql_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The rendered ADF document as a JSON value, cut under [`MAX_ADF_CHARS`]: the largest
/// top-level blocks are replaced by a note, one at a time, never the fingerprint line. A body
/// that is not an ADF document (not expected) becomes one paragraph of its text.
pub fn fit_adf(text: &str) -> Value {
    let mut doc = match serde_json::from_str::<Value>(text) {
        Ok(v) if v.get("type").and_then(Value::as_str) == Some("doc") => v,
        _ => json!({ "version": 1, "type": "doc", "content": [
            { "type": "paragraph", "content": [{ "type": "text", "text": text }] }
        ]}),
    };
    let note = json!({ "type": "paragraph", "content": [
        { "type": "text", "text": "[cut: too long for Jira]" }
    ]});
    while doc.to_string().chars().count() > MAX_ADF_CHARS {
        let Some(content) = doc.get_mut("content").and_then(Value::as_array_mut) else {
            break;
        };
        let largest = content
            .iter()
            .enumerate()
            .filter(|(_, n)| **n != note && !is_marker(n))
            .max_by_key(|(_, n)| n.to_string().len())
            .map(|(i, _)| i);
        match largest {
            Some(i) => content[i] = note.clone(),
            None => break,
        }
    }
    doc
}

/// The paragraph holding only the fingerprint line.
fn is_marker(node: &Value) -> bool {
    let text = node
        .get("content")
        .and_then(Value::as_array)
        .filter(|c| c.len() == 1)
        .and_then(|c| c[0].get("text"))
        .and_then(Value::as_str);
    text.is_some_and(|t| t.starts_with(&fingerprint_marker("")))
}

/// Jira's `{"errorMessages": [...], "errors": {"field": "..."}}` as `{"message": "one
/// line"}`.
fn flatten_error(body: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let mut parts: Vec<String> = v
        .get("errorMessages")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(errors) = v.get("errors").and_then(Value::as_object) {
        for (k, e) in errors {
            parts.push(format!(
                "{k}: {}",
                e.as_str().map_or_else(|| e.to_string(), str::to_string)
            ));
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(
        json!({ "message": parts.join("; ") })
            .to_string()
            .into_bytes(),
    )
}

/// The wait until `X-RateLimit-Reset` (`2024-01-01T12:30Z`, or any RFC 3339 time), capped.
fn reset_wait(headers: &[(String, String)], now: SystemTime) -> Option<Duration> {
    let v = header_value(headers, "x-ratelimit-reset")?.trim();
    let when = chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%MZ").map(|t| t.and_utc())
        })
        .ok()?;
    Some(
        SystemTime::from(when)
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::adapter::test_support::{config, problems_of, token};

    const BASE: &str = "[[helpdesk]]\nname = \"jira\"\nkind = \"jira\"\n\
                        url = \"https://example.atlassian.net\"\ntoken_env = \"JIRA_TOKEN\"\n";

    #[test]
    fn config_problems_are_located() {
        for ok in [
            "username = \"bot@example.com\"\nproject = \"SEC\"\n",
            "username = \"bot@example.com\"\nproject = \"SEC_2\"\nissue_type = \"Incident\"\n\
             create_fields = { labels = [\"security\"], components = [{ name = \"SOC\" }] }\n",
            "username = \"bot@example.com\"\nproject = \"HELP\"\nservice_desk_id = \"3\"\n\
             request_type_id = \"17\"\npriority_map = { P1 = \"Blocker\" }\n",
        ] {
            let got = problems_of(&format!("{BASE}{ok}"));
            assert!(got.is_empty(), "{ok}: {got:?}");
        }
        let u = "username = \"bot@example.com\"\n";
        let cases: Vec<(String, &str)> = vec![
            ("project = \"SEC\"\n".into(), "3:8: helpdesk \"jira\": Jira needs `username`"),
            (
                "username = \"bot\"\nproject = \"SEC\"\n".into(),
                "6:12: helpdesk \"jira\": `username` \"bot\" is not an e-mail",
            ),
            (u.into(), "3:8: helpdesk \"jira\": Jira needs `project`"),
            (
                format!("{u}project = \"sec\"\n"),
                "7:11: helpdesk \"jira\": `project` \"sec\" is not a Jira project key",
            ),
            (
                format!("{u}project = \"SEC\"\nservice_desk_id = \"3\"\n"),
                "8:19: helpdesk \"jira\": Jira Service Management needs both",
            ),
            (
                format!("{u}project = \"SEC\"\nservice_desk_id = \"x\"\nrequest_type_id = \"1\"\n"),
                "8:19: helpdesk \"jira\": `service_desk_id` must be a numeric id",
            ),
            (
                format!("{u}project = \"SEC\"\nservice_desk_id = \"3\"\nrequest_type_id = \"1\"\nissue_type = \"Bug\"\n"),
                "10:14: helpdesk \"jira\": `issue_type` does not apply with `request_type_id`",
            ),
            (
                format!("{u}project = \"SEC\"\npriority_map = {{ P1 = 1 }}\n"),
                "8:23: helpdesk \"jira\": Jira priorities are names",
            ),
            (
                format!("{u}project = \"SEC\"\ncreate_fields = {{ summary = \"x\" }}\n"),
                "8:17: helpdesk \"jira\": `create_fields` must not set `summary`",
            ),
            (
                format!("{u}project = \"SEC\"\ncreate_fields = {{ labels = [\"two words\"] }}\n"),
                "8:17: helpdesk \"jira\": `create_fields.labels`: a list of labels without spaces",
            ),
            (
                format!("{u}project = \"SEC\"\nqueue = \"q\"\n"),
                "8:9: helpdesk \"jira\": `queue` does not apply to kind = \"jira\"",
            ),
        ];
        for (extra, want) in cases {
            let got = problems_of(&format!("{BASE}{extra}")).join("\n");
            assert!(got.contains(want), "{extra}\n got: {got}\nwant: {want}");
        }
        let no_token = problems_of(
            "[[helpdesk]]\nname = \"jira\"\nkind = \"jira\"\nurl = \"https://x\"\n\
             username = \"a@b\"\nproject = \"SEC\"\n",
        );
        assert!(
            no_token[0].contains("3:8: helpdesk \"jira\": Jira needs an API token"),
            "{no_token:?}"
        );
    }

    #[test]
    fn priority_defaults_and_auth() {
        let cfg = config(&format!(
            "{BASE}username = \"bot@example.com\"\nproject = \"SEC\"\n\
             priority_map = {{ P4 = \"Lowest\" }}\n"
        ));
        let j = Jira::new(&cfg, token("tok")).unwrap();
        assert_eq!(
            [Priority::P1, Priority::P2, Priority::P3, Priority::P4].map(|p| j.priority(p)),
            ["Highest", "High", "Medium", "Lowest"]
        );
        // printf 'bot@example.com:tok' | base64
        assert_eq!(j.auth.0, "Basic Ym90QGV4YW1wbGUuY29tOnRvaw==");
    }

    #[test]
    fn long_documents_are_cut_but_keep_the_fingerprint_line() {
        let big = "x".repeat(20_000);
        let doc = json!({"version": 1, "type": "doc", "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "intro"}]},
            {"type": "codeBlock", "content": [{"type": "text", "text": big}]},
            {"type": "codeBlock", "content": [{"type": "text", "text": big}]},
            {"type": "paragraph", "content": [{"type": "text", "text": fingerprint_marker("ab")}]},
        ]});
        let fitted = fit_adf(&doc.to_string());
        let s = fitted.to_string();
        assert!(s.chars().count() <= MAX_ADF_CHARS, "{}", s.len());
        let content = fitted["content"].as_array().unwrap();
        assert_eq!(content.len(), 4);
        assert_eq!(content[0], doc["content"][0]);
        assert!(s.contains("[cut: too long for Jira]"));
        assert_eq!(content[3], doc["content"][3]);
        // Small documents pass as they are; text that is not ADF becomes a paragraph.
        assert_eq!(fit_adf(&doc["content"][0].to_string())["type"], "doc");
        let small = json!({"version": 1, "type": "doc", "content": []});
        assert_eq!(fit_adf(&small.to_string()), small);
    }

    #[test]
    fn transitions_rate_limits_and_keys() {
        let t = |id: &str, name: &str, cat: &str| json!({"id": id, "name": name, "to": {"name": name, "statusCategory": {"key": cat}}});
        let issue = |ts: Vec<Value>| json!({"key": "SEC-1", "transitions": ts});
        assert_eq!(
            reopen_transition(&issue(vec![
                t("11", "To Do", "new"),
                t("21", "In Progress", "indeterminate"),
                t("31", "Reopen issue", "indeterminate"),
            ])),
            Some("31".into())
        );
        assert_eq!(
            reopen_transition(&issue(vec![
                t("21", "Start", "indeterminate"),
                t("11", "Back to backlog", "new"),
            ])),
            Some("11".into())
        );
        assert_eq!(
            reopen_transition(&issue(vec![t("41", "Close", "done")])),
            None
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14T22:13:20Z
        let h = |v: &str| vec![("x-ratelimit-reset".to_string(), v.to_string())];
        assert_eq!(
            reset_wait(&h("2023-11-14T22:14Z"), now),
            Some(Duration::from_secs(40))
        );
        assert_eq!(
            reset_wait(&h("2023-11-14T22:13:50Z"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(reset_wait(&h("soon"), now), None);
        assert!(is_issue_key("SEC-12") && is_issue_key("A_B2-1"));
        assert!(!is_issue_key("SEC") && !is_issue_key("SEC-") && !is_issue_key("-1"));
        assert_eq!(jql_escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
