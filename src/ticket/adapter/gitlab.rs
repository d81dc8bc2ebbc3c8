//! GitLab issues (REST API v4, `/api/v4`), with a personal, project or group access token
//! sent as `PRIVATE-TOKEN`.
//!
//! Checked against GitLab's documentation: <https://docs.gitlab.com/api/issues/>,
//! <https://docs.gitlab.com/api/notes/>, <https://docs.gitlab.com/api/projects/>,
//! <https://docs.gitlab.com/api/users/>, scoped labels in
//! <https://docs.gitlab.com/user/project/labels/>, roles in
//! <https://docs.gitlab.com/user/permissions/> and
//! <https://docs.gitlab.com/security/rate_limits/>. What GitLab does that shapes this adapter:
//!
//! - Tickets are issues of type `incident` (`issue_type`, configurable: `issue`, `incident`,
//!   `task`) in one project, named by its numeric id or its path (`group/project`, sent
//!   URL-encoded as one path segment). A ticket reference is the issue's `iid` (the `#12` people
//!   see), which only means something inside the project.
//! - The dedup key is a label, `sentinela::key::<fingerprint>`. GitLab creates a project label
//!   the first time a name is used. It is a *scoped* label of its own scope
//!   (`sentinela::key`): scoped labels of one scope are mutually exclusive, so the only label
//!   it can ever replace is another fingerprint label (an issue is one incident), never a
//!   priority or a team's own label. Without scoped labels (GitLab Free) it is an ordinary
//!   label with the same name.
//! - GitLab *silently ignores* the labels of a create by a user below the Planner/Reporter
//!   role (the issue is created without them). The key label is our dedup key, so the labels
//!   returned by the create are verified: a missing key label is `Blocked`.
//! - The search (`GET /projects/:id/issues?labels=...&state=opened`) matches label names as
//!   the database does; the labels of each result are compared exactly.
//! - Priority: GitLab issues have none, so it is a scoped label, by default `priority::1`
//!   (P1) to `priority::4` (P4), configurable. Changing it adds the new label and removes the
//!   three others in one `PUT` (`add_labels`/`remove_labels`), so it also works where scoped
//!   labels are not exclusive. An incident's own severity (S1..S4) is only settable through
//!   GraphQL and is left alone.
//! - Comments are internal notes (`internal: true`, GitLab 15.6+; older versions call it
//!   `confidential`), visible to project members of at least the Planner/Reporter role.
//! - Bodies are GitLab Flavored Markdown; the renderer escapes references (`#1`, `@user`,
//!   `~label`), HTML and links in log text.
//! - Errors: `{"message": "..."}`, where `message` may be an object of field errors
//!   (`{"title": ["can't be blank"]}`), or `{"error": "...", "error_description": "..."}`
//!   for OAuth tokens. 429 carries `Retry-After` and `RateLimit-Reset` (unix seconds).

use std::ops::Range;
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::{
    api_base, classify, header, json_request, one_line, percent_encode, prio_index, unexpected,
    unix_reset_wait, Api, HelpdeskConfig, PriorityValue, Secret, Secrets,
};
use crate::policy::Priority;
use crate::ticket::render::BodyFormat;
use crate::ticket::{
    DeliveryError, HttpRequest, TicketContent, TicketRef, TicketStatus, UpdateKind,
};

/// The keys only GitLab uses.
pub(crate) const KEYS: &[&str] = &["project", "issue_type", "create_fields"];

/// GitLab issue titles hold 255 characters.
const MAX_TITLE_CHARS: usize = 255;

/// The default issue type: GitLab's incident management lists and escalates these.
pub const DEFAULT_ISSUE_TYPE: &str = "incident";

/// The issue types a create may name (GitLab's `issue_type`; `test_case` is not a ticket).
const ISSUE_TYPES: &[&str] = &["issue", "incident", "task"];

/// Default priority labels for P1..P4.
pub const DEFAULT_PRIORITY_LABELS: [&str; 4] =
    ["priority::1", "priority::2", "priority::3", "priority::4"];

/// The prefix of the dedup key label; the fingerprint follows.
pub const KEY_LABEL_PREFIX: &str = "sentinela::key::";

/// Fields of the create that sentinela sets; `create_fields` may not replace them (its
/// `labels` are added to ours).
const OWN_FIELDS: &[&str] = &["title", "description", "issue_type"];

/// Access levels of GitLab roles: Planner (15) is the lowest that may set labels and read
/// internal notes.
const PLANNER: u64 = 15;

/// GitLab-specific problems of a `[[helpdesk]]` entry.
pub(crate) fn problems(cfg: &HelpdeskConfig, err: &mut dyn FnMut(Option<Range<usize>>, String)) {
    cfg.require_token("an access token with the api scope", err);
    if let Some(p) = cfg.required(
        "project",
        &cfg.project,
        "the project id or path, e.g. \"secops/incidents\"",
        err,
    ) {
        let path_ok = p.split('/').all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
        if !path_ok {
            err(
                cfg.project.as_ref().map(|s| s.span()),
                format!(
                    "`project` {p:?} is neither a numeric id nor a path like \"group/project\""
                ),
            );
        }
    }
    if let Some(t) = &cfg.issue_type {
        if !ISSUE_TYPES.contains(&t.get_ref().as_str()) {
            err(
                Some(t.span()),
                format!("`issue_type` is one of {}", ISSUE_TYPES.join(", ")),
            );
        }
    }
    for v in cfg.priority_map.values() {
        match v.get_ref() {
            PriorityValue::Text(t) if label_ok(t) => {}
            _ => err(
                Some(v.span()),
                "GitLab priorities are label names without commas (e.g. P1 = \"priority::1\")"
                    .into(),
            ),
        }
    }
    if let Some(f) = &cfg.create_fields {
        for key in OWN_FIELDS {
            if f.get_ref().contains_key(*key) {
                err(
                    Some(f.span()),
                    if *key == "issue_type" {
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
                    "`create_fields.labels`: a list of label names without commas".into(),
                );
            }
        }
    }
}

/// A label name we can send in a comma-separated list.
fn label_ok(l: &str) -> bool {
    !l.trim().is_empty() && !l.contains(',') && !l.chars().any(char::is_control)
}

/// The labels of `create_fields.labels` (a list, or a comma-separated string as GitLab takes
/// it); `None` when malformed.
fn extra_labels(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(
            s.split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .filter(|l| label_ok(l))
                    .map(|l| l.trim().to_string())
            })
            .collect(),
        _ => None,
    }
}

/// A GitLab project's issues.
#[derive(Debug, Clone)]
pub struct Gitlab {
    /// `https://gitlab.example.com/api/v4`
    api: String,
    /// The project as configured (id or path), for messages.
    project: String,
    token: Secret,
    issue_type: String,
    priorities: [String; 4],
    create_fields: Map<String, Value>,
}

impl Gitlab {
    pub(crate) fn new(cfg: &HelpdeskConfig, secrets: Secrets) -> Result<Gitlab, String> {
        let token = secrets.token.ok_or_else(|| {
            format!(
                "helpdesk {:?}: GitLab needs an access token: set `token_env` or `token_file`",
                cfg.name.get_ref()
            )
        })?;
        let defaults = DEFAULT_PRIORITY_LABELS.map(|l| PriorityValue::Text(l.into()));
        let priorities = cfg.priorities(defaults).map(|v| match v {
            PriorityValue::Text(t) => t.trim().to_string(),
            PriorityValue::Int(i) => i.to_string(),
        });
        Ok(Gitlab {
            api: api_base(cfg.url.get_ref(), "/api/v4"),
            project: cfg
                .project
                .as_ref()
                .map(|p| p.get_ref().trim().to_string())
                .unwrap_or_default(),
            token,
            issue_type: cfg
                .issue_type
                .as_ref()
                .map_or(DEFAULT_ISSUE_TYPE.to_string(), |t| t.get_ref().clone()),
            priorities,
            create_fields: cfg.create_fields_json(),
        })
    }

    /// The API base (`https://gitlab.example.com/api/v4`).
    pub fn api(&self) -> &str {
        &self.api
    }

    /// The label of priority `p`.
    pub fn priority(&self, p: Priority) -> &str {
        &self.priorities[prio_index(p)]
    }

    /// The dedup label of a fingerprint.
    pub fn key_label(fingerprint: &str) -> String {
        format!("{KEY_LABEL_PREFIX}{fingerprint}")
    }

    fn request(&self, method: &str, url: String, body: Option<Value>) -> HttpRequest {
        json_request(
            method,
            url,
            header("PRIVATE-TOKEN", &self.token.0, true),
            body,
        )
    }

    /// `/projects/<id or URL-encoded path>`
    fn project_url(&self) -> String {
        format!("{}/projects/{}", self.api, percent_encode(&self.project))
    }

    fn issue_url(&self, t: &TicketRef) -> String {
        format!("{}/issues/{}", self.project_url(), percent_encode(&t.0))
    }

    /// `GET /projects/:id`: the project, its issues feature and our role in it.
    pub fn project_request(&self) -> HttpRequest {
        self.request("GET", self.project_url(), None)
    }
}

impl Api for Gitlab {
    /// [`classify`] with GitLab's error bodies flattened to one message, `RateLimit-Reset`
    /// when `Retry-After` is missing, and hints for the token's usual problems.
    fn classify_answer(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let flat = flatten_error(body);
        let r = classify(status, headers, flat.as_deref().unwrap_or(body));
        let now = SystemTime::now();
        match r {
            Err(DeliveryError::Retry {
                message,
                retry_after: None,
            }) => Err(DeliveryError::Retry {
                message,
                retry_after: unix_reset_wait(headers, "ratelimit-reset", now),
            }),
            Err(DeliveryError::Blocked { message }) if status == 401 => {
                Err(DeliveryError::Blocked {
                    message: format!(
                        "{message} (the token was refused: check token_env/token_file, its \
                         expiry and that it has the api scope)"
                    ),
                })
            }
            Err(DeliveryError::Blocked { message }) if status == 403 || status == 404 => {
                Err(DeliveryError::Blocked {
                    message: format!(
                        "{message} (project {:?} does not exist, or the token's user is not a \
                         member with at least the Planner or Reporter role)",
                        self.project
                    ),
                })
            }
            r => r,
        }
    }

    fn body_format(&self) -> BodyFormat {
        BodyFormat::Markdown
    }

    /// `POST /projects/:id/issues` with the title, the Markdown body, the issue type and the
    /// key and priority labels (plus `create_fields`, which never replace ours).
    fn create_request(&self, c: &TicketContent, body: &str, _now: u64) -> HttpRequest {
        let mut labels = vec![
            Self::key_label(&c.fingerprint),
            self.priority(c.priority).to_string(),
        ];
        let mut doc = Map::new();
        for (k, v) in &self.create_fields {
            if k == "labels" {
                for l in extra_labels(v).unwrap_or_default() {
                    if !labels.contains(&l) {
                        labels.push(l);
                    }
                }
            } else if !OWN_FIELDS.contains(&k.as_str()) {
                doc.insert(k.clone(), v.clone());
            }
        }
        doc.insert(
            "title".into(),
            json!(defuse_references(&one_line(
                &c.title,
                MAX_TITLE_CHARS,
                false
            ))),
        );
        doc.insert("description".into(), json!(body));
        doc.insert("issue_type".into(), json!(self.issue_type));
        doc.insert("labels".into(), json!(labels.join(",")));
        self.request(
            "POST",
            format!("{}/issues", self.project_url()),
            Some(Value::Object(doc)),
        )
    }

    /// The issue `iid` from `201 {"iid": 12, "labels": [...]}`; `Blocked` when GitLab dropped
    /// the key label.
    fn parse_create(
        &self,
        c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let iid = v
            .get("iid")
            .and_then(Value::as_u64)
            .ok_or_else(|| unexpected("no issue iid", body))?;
        let key = Self::key_label(&c.fingerprint);
        if !labels_of(&v).iter().any(|l| *l == key) {
            return Err(DeliveryError::Blocked {
                message: format!(
                    "issue #{iid} was created without its label {key:?}: GitLab ignores the \
                     labels of users below the Planner/Reporter role in project {:?}; give \
                     the token's user that role, then close issue #{iid}",
                    self.project
                ),
            });
        }
        Ok(TicketRef(iid.to_string()))
    }

    /// `POST /projects/:id/issues/:iid/notes` as an internal note.
    fn comment_request(
        &self,
        t: &TicketRef,
        _c: &TicketContent,
        _kind: UpdateKind,
        text: &str,
        _now: u64,
    ) -> HttpRequest {
        let doc = json!({ "body": text, "internal": true });
        self.request("POST", format!("{}/notes", self.issue_url(t)), Some(doc))
    }

    /// `GET /projects/:id/issues?labels=KEY&state=opened`, oldest first.
    fn find_open_request(&self, fingerprint: &str) -> Option<HttpRequest> {
        let url = format!(
            "{}/issues?labels={}&state=opened&order_by=created_at&sort=asc&per_page=100",
            self.project_url(),
            percent_encode(&Self::key_label(fingerprint)),
        );
        Some(self.request("GET", url, None))
    }

    /// The oldest open issue carrying the key label of `fingerprint` exactly.
    fn parse_find_open(
        &self,
        fingerprint: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Option<TicketRef>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let items = v
            .as_array()
            .ok_or_else(|| unexpected("not a list of issues", body))?;
        let key = Self::key_label(fingerprint);
        let mut best: Option<u64> = None;
        for item in items {
            let Some(iid) = item.get("iid").and_then(Value::as_u64) else {
                return Err(unexpected("an issue without an iid", body));
            };
            if item.get("state").and_then(Value::as_str) != Some("opened")
                || !labels_of(item).iter().any(|l| *l == key)
            {
                continue; // closed meanwhile, or another incident's label but for case
            }
            if best.is_none_or(|b| iid < b) {
                best = Some(iid);
            }
        }
        Ok(best.map(|iid| TicketRef(iid.to_string())))
    }

    /// `GET /projects/:id/issues/:iid`, for its `state`.
    fn status_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        Some(self.request("GET", self.issue_url(t), None))
    }

    /// `opened` is open, `closed` closed.
    fn parse_status(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketStatus, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        match v.get("state").and_then(Value::as_str) {
            Some("opened") => Ok(TicketStatus::Open),
            Some("closed") => Ok(TicketStatus::Closed),
            _ => Err(unexpected("no issue state opened/closed", body)),
        }
    }

    /// `PUT /projects/:id/issues/:iid {"state_event": "reopen"}`.
    fn reopen_request(&self, t: &TicketRef, _now: u64) -> Option<HttpRequest> {
        let doc = json!({ "state_event": "reopen" });
        Some(self.request("PUT", self.issue_url(t), Some(doc)))
    }

    /// `PUT /projects/:id/issues/:iid` adding the priority label of `p` and removing the
    /// others.
    fn set_priority_request(&self, t: &TicketRef, p: Priority, _now: u64) -> Option<HttpRequest> {
        let want = self.priority(p);
        let others: Vec<&str> = self
            .priorities
            .iter()
            .map(String::as_str)
            .filter(|l| *l != want)
            .collect();
        let doc = json!({ "add_labels": want, "remove_labels": others.join(",") });
        Some(self.request("PUT", self.issue_url(t), Some(doc)))
    }

    /// `GET /user`: proves the URL and the token.
    fn check_request(&self) -> Option<HttpRequest> {
        Some(self.request("GET", format!("{}/user", self.api), None))
    }

    /// The user must be active; returns the project request.
    fn parse_check(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<HttpRequest>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let user = v
            .get("username")
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected("no username", body))?;
        match v.get("state").and_then(Value::as_str) {
            Some("active") | None => Ok(vec![self.project_request()]),
            Some(s) => Err(DeliveryError::Blocked {
                message: format!(
                    "the token's user {:?} is {}: GitLab refuses its writes",
                    super::clean_text(user),
                    super::clean_text(s)
                ),
            }),
        }
    }

    /// The project must have issues enabled, not be archived, and the token's user must hold
    /// at least the Planner role (below it, GitLab drops labels silently). When GitLab does not
    /// show the role (an administrator, or a token whose role comes from elsewhere), the role
    /// is not checked: each create still verifies its labels.
    fn parse_check_field(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let path = v
            .get("path_with_namespace")
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected("no project path", body))?;
        let path = super::clean_text(path);
        if v.get("archived").and_then(Value::as_bool) == Some(true) {
            return Err(DeliveryError::Blocked {
                message: format!("project {path:?} is archived (read-only)"),
            });
        }
        let issues_off = v.get("issues_enabled").and_then(Value::as_bool) == Some(false)
            || v.get("issues_access_level").and_then(Value::as_str) == Some("disabled");
        if issues_off {
            return Err(DeliveryError::Blocked {
                message: format!(
                    "project {path:?} has issues disabled: enable them in Settings > General > \
                     Visibility, project features, permissions"
                ),
            });
        }
        let level = ["project_access", "group_access"]
            .iter()
            .filter_map(|k| v.get("permissions")?.get(*k)?.get("access_level")?.as_u64())
            .max();
        match level {
            Some(l) if l < PLANNER => Err(DeliveryError::Blocked {
                message: format!(
                    "the token's user has access level {l} in project {path:?}: it needs at \
                     least the Planner or Reporter role, or GitLab drops the labels of new \
                     issues (our dedup key) and refuses internal notes"
                ),
            }),
            Some(_) => Ok(()),
            None => {
                tracing::warn!(
                    project = %path,
                    "GitLab does not show the token's role in the project: not checked"
                );
                Ok(())
            }
        }
    }
}

/// The label names of an issue object.
fn labels_of(issue: &Value) -> Vec<&str> {
    issue
        .get("labels")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// GitLab's error body as `{"message": "one line"}` when it is not a plain message already:
/// field errors (`{"message": {"title": ["can't be blank"]}}` becomes `title: can't be
/// blank`) and OAuth errors (`error_description`).
fn flatten_error(body: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let text = match (v.get("message"), v.get("error_description")) {
        (Some(Value::Object(fields)), _) => fields
            .iter()
            .map(|(k, e)| match e {
                Value::Array(a) => format!(
                    "{k}: {}",
                    a.iter()
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("; "),
        (None, Some(Value::String(d))) => d.clone(),
        _ => return None,
    };
    Some(json!({ "message": text }).to_string().into_bytes())
}

/// GitLab reads mentions (`@user`) and references (`#12`, `group/project!3`, `~label`,
/// `%milestone`, `$snippet`, `&epic`) in issue titles too: attacker text in a title would notify
/// users and post "mentioned in" notes on other issues, telling them of the incident. A WORD
/// JOINER (U+2060, invisible) after each of those characters breaks the reference; the body
/// is escaped by `render` the same way.
fn defuse_references(title: &str) -> String {
    let mut out = String::with_capacity(title.len() + 8);
    for ch in title.chars() {
        out.push(ch);
        if matches!(ch, '@' | '#' | '!' | '~' | '%' | '$' | '&') {
            out.push('\u{2060}');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_cannot_mention_or_reference() {
        let t = defuse_references("Probe by @root on #12 and group/p!3 ~bug");
        for broken in ["@\u{2060}root", "#\u{2060}12", "!\u{2060}3", "~\u{2060}bug"] {
            assert!(t.contains(broken), "{t:?}");
        }
        assert!(!t.contains("@root") && !t.contains("#12"));
        assert_eq!(defuse_references("plain title"), "plain title");
    }
    use crate::ticket::adapter::test_support::{config, problems_of, token};
    use std::time::UNIX_EPOCH;

    fn problems(extra: &str) -> Vec<String> {
        problems_of(&format!(
            "[[helpdesk]]\nname = \"gl\"\nkind = \"gitlab\"\nurl = \"https://gitlab.example.com\"\n\
             token_env = \"GL_TOKEN\"\n{extra}"
        ))
    }

    #[test]
    fn config_problems_are_located() {
        assert!(problems("project = \"secops/incidents\"\n").is_empty());
        assert!(problems("project = \"42\"\nissue_type = \"issue\"\n").is_empty());
        let cases: &[(&str, &str)] = &[
            ("", "3:8: helpdesk \"gl\": GitLab needs `project`"),
            (
                "project = \"secops/\"\n",
                "6:11: helpdesk \"gl\": `project` \"secops/\" is neither",
            ),
            (
                "project = \"a b\"\n",
                "6:11: helpdesk \"gl\": `project` \"a b\" is neither",
            ),
            (
                "project = \"p\"\nissue_type = \"bug\"\n",
                "7:14: helpdesk \"gl\": `issue_type` is one of issue, incident, task",
            ),
            (
                "project = \"p\"\npriority_map = { P1 = 1 }\n",
                "7:23: helpdesk \"gl\": GitLab priorities are label names",
            ),
            (
                "project = \"p\"\npriority_map = { P2 = \"a,b\" }\n",
                "7:23: helpdesk \"gl\": GitLab priorities are label names",
            ),
            (
                "project = \"p\"\ncreate_fields = { title = \"x\" }\n",
                "7:17: helpdesk \"gl\": `create_fields` must not set `title`",
            ),
            (
                "project = \"p\"\ncreate_fields = { labels = [\"a,b\"] }\n",
                "7:17: helpdesk \"gl\": `create_fields.labels`",
            ),
            (
                "project = \"p\"\nqueue = \"q\"\n",
                "7:9: helpdesk \"gl\": `queue` does not apply to kind = \"gitlab\"",
            ),
        ];
        for (extra, want) in cases {
            let got = problems(extra).join("\n");
            assert!(got.contains(want), "{extra}\n got: {got}\nwant: {want}");
        }
        let got = problems("project = \"p\"\n").join("\n");
        assert!(got.is_empty(), "{got}");
        let no_token = problems_of(
            "[[helpdesk]]\nname = \"gl\"\nkind = \"gitlab\"\nurl = \"https://g\"\nproject = \"p\"\n",
        );
        assert!(
            no_token[0].contains("3:8: helpdesk \"gl\": GitLab needs an access token"),
            "{no_token:?}"
        );
    }

    #[test]
    fn priorities_default_to_scoped_labels() {
        let cfg = config(
            "[[helpdesk]]\nname = \"gl\"\nkind = \"gitlab\"\nurl = \"https://g/api/v4/\"\n\
             token_env = \"T\"\nproject = \"p\"\npriority_map = { P1 = \"sev::critical\" }\n",
        );
        let g = Gitlab::new(&cfg, token("t")).unwrap();
        assert_eq!(g.api(), "https://g/api/v4");
        assert_eq!(g.priority(Priority::P1), "sev::critical");
        assert_eq!(g.priority(Priority::P2), "priority::2");
        assert_eq!(g.priority(Priority::P4), "priority::4");
    }

    #[test]
    fn titles_and_errors() {
        assert_eq!(one_line(" a\r\nb\t c ", 255, false), "a b c");
        let t = one_line(&"é".repeat(300), 255, false);
        assert_eq!(t.chars().count(), 255);
        assert!(t.ends_with('…'));
        let f = flatten_error(br#"{"message":{"title":["can't be blank"],"labels":["bad"]}}"#);
        assert_eq!(
            serde_json::from_slice::<Value>(&f.unwrap()).unwrap()["message"],
            json!("labels: bad; title: can't be blank")
        );
        assert_eq!(flatten_error(br#"{"message":"404 Not found"}"#), None);
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1000);
        let h = vec![("ratelimit-reset".to_string(), "1030".to_string())];
        assert_eq!(
            unix_reset_wait(&h, "ratelimit-reset", now),
            Some(std::time::Duration::from_secs(30))
        );
    }
}
