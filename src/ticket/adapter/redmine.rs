//! Redmine issues (REST API, JSON), with an API key sent as `X-Redmine-API-Key`.
//!
//! Checked against Redmine's REST API pages:
//! <https://www.redmine.org/projects/redmine/wiki/Rest_api> and its `Rest_Issues`,
//! `Rest_Projects`, `Rest_Users`, `Rest_Enumerations` and `Rest_IssueStatuses` pages. What
//! Redmine does that shapes this adapter:
//!
//! - The REST web service is off by default (Administration > Settings > API); the API key
//!   is on the user's "My account" page. Tickets are issues of one project (`project`: its
//!   identifier or numeric id), of the project's default tracker unless `issue_type` names a
//!   tracker id.
//! - The dedup key: with `fingerprint_field` (the id of an issue custom field of format
//!   "Text", enabled for the project and its tracker, "Used as a filter"), the fingerprint is
//!   that field's value and the search is `cf_ID=FP`. Without it, the subject starts with
//!   `[sentinela:FP]` and the search is `subject=~[sentinela:FP]` ("contains"). Only a subject
//!   that *starts* with the tag counts: attacker text in the title comes after it and cannot
//!   forge another incident's tag.
//! - Redmine *silently ignores* a custom field value when the field is not enabled for the
//!   project or tracker, or the user's role may not edit it; it also ignores an unknown
//!   filter, which then matches every issue. So the create's answer is verified (the field
//!   must hold the fingerprint), and a search result whose field holds another value means
//!   the field is not "Used as a filter": both `Blocked`.
//! - Its searches compare text as the database does (often without case): results are
//!   compared exactly after reading them back.
//! - Open or closed is a property of each status (`is_closed`), shown in issue answers only
//!   since Redmine 5.1. The status read asks Redmine itself, on every version: the issue is
//!   open when `GET /issues.json?issue_id=ID&status_id=open` lists it. An issue that was
//!   deleted or became invisible to the user therefore reads as closed.
//! - Reopening sets a status: the first open status in Redmine's order ("New" with the
//!   default data), read from `/issue_statuses.json` by the check at start-up; status 1
//!   until a check has run. Redmine ignores a status change the workflow does not allow for
//!   the user's role (the answer is still 204): allow "closed -> New" for the role.
//! - Comments are notes of `PUT /issues/ID.json`, private (`private_notes`); a role without
//!   "Set notes as private" makes them public without saying so. Grant it.
//! - Priority: `priority_id` from the "Issue priorities" enumeration. Defaults follow
//!   Redmine's default data: P1 = 4 (Urgent), P2 = 3 (High), P3 = 2 (Normal), P4 = 1 (Low);
//!   "Immediate" (5) is left to people. The check verifies the ids exist and are active.
//! - Bodies are Markdown: the instance's text formatting (Administration > Settings >
//!   General) must be "CommonMark Markdown" (Redmine 5+) or "Markdown". Under Textile the
//!   escaping done for Markdown does not hold, and the API does not tell which is set.
//! - Errors: 422 `{"errors": ["Subject cannot be blank"]}`, 401 (bad key, or the REST web
//!   service is off), 403, 404, mostly with empty bodies. Updates answer 204 without a body.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use super::{
    api_base, classify, header, json_request, one_line, percent_encode, prio_index, unexpected,
    Api, HelpdeskConfig, PriorityValue, Secret, Secrets,
};
use crate::policy::Priority;
use crate::ticket::render::BodyFormat;
use crate::ticket::{
    DeliveryError, HttpRequest, TicketContent, TicketRef, TicketStatus, UpdateKind,
};

/// The keys only Redmine uses.
pub(crate) const KEYS: &[&str] = &[
    "project",
    "issue_type",
    "fingerprint_field",
    "create_fields",
];

/// Redmine subjects hold 255 characters.
const MAX_SUBJECT_CHARS: usize = 255;

/// Default `priority_id` for P1..P4 (Redmine's default data: 4 Urgent, 3 High, 2 Normal,
/// 1 Low).
pub const DEFAULT_PRIORITIES: [i64; 4] = [4, 3, 2, 1];

/// The status a reopen sets until the check has read the statuses: "New" in Redmine's
/// default data.
pub const DEFAULT_REOPEN_STATUS: u64 = 1;

/// Fields of the create that sentinela sets; `create_fields` may not replace them (its
/// `custom_fields` are added to ours).
const OWN_FIELDS: &[&str] = &[
    "project_id",
    "subject",
    "description",
    "priority_id",
    "tracker_id",
];

/// A value no fingerprint can hold: the check searches for it to see whether Redmine applies
/// the custom field filter.
const NO_SUCH_VALUE: &str = "sentinela-check-no-such-value";

/// Redmine-specific problems of a `[[helpdesk]]` entry.
pub(crate) fn problems(cfg: &HelpdeskConfig, err: &mut dyn FnMut(Option<Range<usize>>, String)) {
    cfg.require_token("an API key (My account > API access key)", err);
    if let Some(p) = cfg.required(
        "project",
        &cfg.project,
        "the project identifier, e.g. \"security\"",
        err,
    ) {
        let ok = p
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            err(
                cfg.project.as_ref().map(|s| s.span()),
                format!(
                    "`project` {p:?} is not a Redmine project identifier (lower-case letters, \
                     digits, '-' and '_') or id"
                ),
            );
        }
    }
    for (key, v, what) in [
        ("issue_type", &cfg.issue_type, "the numeric id of a tracker"),
        (
            "fingerprint_field",
            &cfg.fingerprint_field,
            "the numeric id of an issue custom field (in its URL under Administration > \
             Custom fields)",
        ),
    ] {
        if let Some(v) = v {
            if positive_id(v.get_ref()).is_none() {
                err(Some(v.span()), format!("`{key}` must be {what}"));
            }
        }
    }
    cfg.check_int_priorities(
        1,
        i64::MAX,
        "Redmine priorities are ids of the Issue priorities enumeration (e.g. P1 = 4)",
        err,
    );
    if let Some(f) = &cfg.create_fields {
        for key in OWN_FIELDS {
            if f.get_ref().contains_key(*key) {
                err(
                    Some(f.span()),
                    if *key == "tracker_id" {
                        format!("`create_fields` must not set `{key}`: use `issue_type`")
                    } else {
                        format!("`create_fields` must not set `{key}`: sentinela sets it")
                    },
                );
            }
        }
        if let Some(cf) = f.get_ref().get("custom_fields") {
            let cf = serde_json::to_value(cf).unwrap_or(Value::Null);
            match extra_custom_fields(&cf) {
                None => err(
                    Some(f.span()),
                    "`create_fields.custom_fields`: a list of { id = N, value = ... }".into(),
                ),
                Some(list) => {
                    let ours = cfg
                        .fingerprint_field
                        .as_ref()
                        .and_then(|f| positive_id(f.get_ref()));
                    if ours.is_some_and(|id| list.iter().any(|(i, _)| *i == id)) {
                        err(
                            Some(f.span()),
                            "`create_fields.custom_fields` must not set the fingerprint field"
                                .into(),
                        );
                    }
                }
            }
        }
    }
}

/// A positive integer id.
fn positive_id(s: &str) -> Option<u64> {
    s.trim().parse::<u64>().ok().filter(|n| *n > 0)
}

/// `create_fields.custom_fields` as (id, entry) pairs; `None` when malformed.
fn extra_custom_fields(v: &Value) -> Option<Vec<(u64, Value)>> {
    v.as_array()?
        .iter()
        .map(|e| {
            let id = e.get("id")?.as_u64()?;
            e.get("value")?;
            Some((id, e.clone()))
        })
        .collect()
}

/// A Redmine project's issues.
#[derive(Debug)]
pub struct Redmine {
    /// `https://redmine.example.com` (a sub-URI kept).
    base: String,
    project: String,
    token: Secret,
    tracker: Option<u64>,
    fingerprint_field: Option<u64>,
    priorities: [i64; 4],
    create_fields: Map<String, Value>,
    /// The status a reopen sets: [`DEFAULT_REOPEN_STATUS`] until the check reads the first
    /// open status.
    reopen_status: AtomicU64,
}

impl Redmine {
    pub(crate) fn new(cfg: &HelpdeskConfig, secrets: Secrets) -> Result<Redmine, String> {
        let token = secrets.token.ok_or_else(|| {
            format!(
                "helpdesk {:?}: Redmine needs an API key: set `token_env` or `token_file`",
                cfg.name.get_ref()
            )
        })?;
        let defaults = DEFAULT_PRIORITIES.map(PriorityValue::Int);
        let priorities = cfg.priorities(defaults).map(|v| match v {
            PriorityValue::Int(i) => i,
            PriorityValue::Text(_) => 0, // refused by `problems`
        });
        let id_of =
            |v: &Option<toml::Spanned<String>>| v.as_ref().and_then(|s| positive_id(s.get_ref()));
        Ok(Redmine {
            base: api_base(cfg.url.get_ref(), ""),
            project: cfg
                .project
                .as_ref()
                .map(|p| p.get_ref().trim().to_string())
                .unwrap_or_default(),
            token,
            tracker: id_of(&cfg.issue_type),
            fingerprint_field: id_of(&cfg.fingerprint_field),
            priorities,
            create_fields: cfg.create_fields_json(),
            reopen_status: AtomicU64::new(DEFAULT_REOPEN_STATUS),
        })
    }

    /// The `priority_id` of `p`.
    pub fn priority(&self, p: Priority) -> i64 {
        self.priorities[prio_index(p)]
    }

    /// The subject tag of a fingerprint (used when no `fingerprint_field` is set).
    pub fn subject_tag(fingerprint: &str) -> String {
        format!("[sentinela:{fingerprint}]")
    }

    /// The status id a reopen sets.
    pub fn reopen_status(&self) -> u64 {
        self.reopen_status.load(Ordering::Relaxed)
    }

    fn request(&self, method: &str, url: String, body: Option<Value>) -> HttpRequest {
        json_request(
            method,
            url,
            header("X-Redmine-API-Key", &self.token.0, true),
            body,
        )
    }

    fn issue_url(&self, t: &TicketRef) -> String {
        format!("{}/issues/{}.json", self.base, percent_encode(&t.0))
    }

    fn project_url(&self) -> String {
        format!("{}/projects/{}", self.base, percent_encode(&self.project))
    }

    /// The subject: the title on one line, after the tag when the key lives there.
    fn subject(&self, c: &TicketContent) -> String {
        match self.fingerprint_field {
            Some(_) => one_line(&c.title, MAX_SUBJECT_CHARS, false),
            None => {
                let tag = Self::subject_tag(&c.fingerprint);
                let room = MAX_SUBJECT_CHARS
                    .saturating_sub(tag.chars().count() + 1)
                    .max(1);
                format!("{tag} {}", one_line(&c.title, room, false))
            }
        }
    }

    /// The check's follow-ups: the project with its trackers and custom fields, the
    /// priorities, the statuses, and (with a fingerprint field) a search proving the field
    /// is a filter.
    pub fn check_follow_ups(&self) -> Vec<HttpRequest> {
        let mut out = vec![
            self.request(
                "GET",
                format!(
                    "{}.json?include={}",
                    self.project_url(),
                    percent_encode("trackers,issue_custom_fields")
                ),
                None,
            ),
            self.request(
                "GET",
                format!("{}/enumerations/issue_priorities.json", self.base),
                None,
            ),
            self.request("GET", format!("{}/issue_statuses.json", self.base), None),
        ];
        if let Some(id) = self.fingerprint_field {
            out.push(self.request(
                "GET",
                format!(
                    "{}/issues.json?status_id=*&cf_{id}={NO_SUCH_VALUE}&limit=1",
                    self.project_url()
                ),
                None,
            ));
        }
        out
    }

    fn not_a_filter(&self, field: u64) -> DeliveryError {
        DeliveryError::Blocked {
            message: format!(
                "the search by custom field {field} returned issues with other values: the \
                 field is not \"Used as a filter\" (Administration > Custom fields), not \
                 enabled for project {:?}, or not visible to the key's user",
                self.project
            ),
        }
    }

    /// The project must be active, have the tracker and the fingerprint field.
    fn check_project(&self, p: &Value) -> Result<(), DeliveryError> {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        let name = super::clean_text(name);
        if let Some(s) = p.get("status").and_then(Value::as_u64) {
            if s != 1 {
                return Err(DeliveryError::Blocked {
                    message: format!(
                        "project {name:?} is {} (status {s}): Redmine refuses new issues",
                        match s {
                            5 => "closed",
                            9 => "archived",
                            _ => "not active",
                        }
                    ),
                });
            }
        }
        let ids = |key: &str| -> Vec<(u64, String)> {
            p.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| {
                            Some((
                                x.get("id")?.as_u64()?,
                                x.get("name")
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                                    .to_string(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let listing = |l: &[(u64, String)]| {
            l.iter()
                .map(|(i, n)| format!("{i} {}", super::clean_text(n)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(t) = self.tracker {
            let trackers = ids("trackers");
            if !trackers.iter().any(|(i, _)| *i == t) {
                return Err(DeliveryError::Blocked {
                    message: format!(
                        "tracker {t} (`issue_type`) is not enabled for project {name:?}; it \
                         has: {}",
                        listing(&trackers)
                    ),
                });
            }
        }
        if let Some(f) = self.fingerprint_field {
            let fields = ids("issue_custom_fields");
            if !fields.iter().any(|(i, _)| *i == f) {
                // The project's `issue_custom_fields` lists only fields enabled on the project
                // itself, not those "For all projects" (seen on Redmine 5.0): not a refusal.
                // The search probe (a filter the project does not have is ignored) and the
                // read-back after each create catch a field that really does not apply.
                tracing::warn!(
                    field = f,
                    project = %name,
                    listed = %listing(&fields),
                    "custom field not listed by the project: fine if it is \"For all projects\"; \
                     every create verifies the stored value"
                );
            }
        }
        Ok(())
    }

    /// Every configured priority id must exist and be active.
    fn check_priorities(&self, list: &[Value]) -> Result<(), DeliveryError> {
        let known: Vec<(i64, String, bool)> = list
            .iter()
            .filter_map(|p| {
                Some((
                    p.get("id")?.as_i64()?,
                    p.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    p.get("active").and_then(Value::as_bool).unwrap_or(true),
                ))
            })
            .collect();
        for (p, id) in [Priority::P1, Priority::P2, Priority::P3, Priority::P4]
            .into_iter()
            .map(|p| (p, self.priority(p)))
        {
            match known.iter().find(|(i, _, _)| *i == id) {
                Some((_, _, true)) => {}
                found => {
                    return Err(DeliveryError::Blocked {
                        message: format!(
                            "priority {p} maps to priority_id {id}, which is {}; Redmine's \
                             issue priorities: {}",
                            if found.is_some() {
                                "inactive"
                            } else {
                                "not defined"
                            },
                            known
                                .iter()
                                .filter(|(_, _, active)| *active)
                                .map(|(i, n, _)| format!("{i} {}", super::clean_text(n)))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
                }
            }
        }
        Ok(())
    }

    /// Learns the reopen status: the first open status, in Redmine's order.
    fn learn_statuses(&self, list: &[Value]) -> Result<(), DeliveryError> {
        let first_open = list.iter().find_map(|s| {
            (s.get("is_closed").and_then(Value::as_bool) == Some(false))
                .then(|| s.get("id")?.as_u64())
                .flatten()
        });
        match first_open {
            Some(id) => {
                self.reopen_status.store(id, Ordering::Relaxed);
                Ok(())
            }
            None => Err(DeliveryError::Blocked {
                message: "Redmine lists no open issue status: a reopen has nothing to set".into(),
            }),
        }
    }
}

impl Api for Redmine {
    /// [`classify`] with what to check for Redmine's terse 401, 403 and 404.
    fn classify_answer(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        classify(status, headers, body).map_err(|e| match (status, e) {
            (401, DeliveryError::Blocked { message }) => DeliveryError::Blocked {
                message: format!(
                    "{message} (the API key was refused: check token_env/token_file, and that \
                     the REST web service is enabled in Administration > Settings > API)"
                ),
            },
            (403 | 404, DeliveryError::Blocked { message }) => DeliveryError::Blocked {
                message: format!(
                    "{message} (project {:?} or the issue does not exist, or the key's user \
                     lacks the permission: a role with Add issues, Edit issues, Add notes and \
                     Set notes as private)",
                    self.project
                ),
            },
            (_, e) => e,
        })
    }

    fn body_format(&self) -> BodyFormat {
        BodyFormat::Markdown
    }

    /// `POST /issues.json` with the project, subject, Markdown description, priority,
    /// tracker and the fingerprint custom field (plus `create_fields`, which never replace
    /// ours).
    fn create_request(&self, c: &TicketContent, body: &str, _now: u64) -> HttpRequest {
        let mut issue = Map::new();
        let mut custom = Vec::new();
        if let Some(id) = self.fingerprint_field {
            custom.push(json!({ "id": id, "value": c.fingerprint }));
        }
        for (k, v) in &self.create_fields {
            if k == "custom_fields" {
                for (id, e) in extra_custom_fields(v).unwrap_or_default() {
                    if Some(id) != self.fingerprint_field {
                        custom.push(e);
                    }
                }
            } else if !OWN_FIELDS.contains(&k.as_str()) {
                issue.insert(k.clone(), v.clone());
            }
        }
        issue.insert("project_id".into(), json!(self.project));
        issue.insert("subject".into(), json!(self.subject(c)));
        issue.insert("description".into(), json!(body));
        issue.insert("priority_id".into(), json!(self.priority(c.priority)));
        if let Some(t) = self.tracker {
            issue.insert("tracker_id".into(), json!(t));
        }
        if !custom.is_empty() {
            issue.insert("custom_fields".into(), Value::Array(custom));
        }
        self.request(
            "POST",
            format!("{}/issues.json", self.base),
            Some(json!({ "issue": issue })),
        )
    }

    /// The issue id from `201 {"issue": {"id": 7, ...}}`; `Blocked` when Redmine dropped the
    /// fingerprint custom field.
    fn parse_create(
        &self,
        c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let issue = v.get("issue").ok_or_else(|| unexpected("no issue", body))?;
        let id = issue
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| unexpected("no issue id", body))?;
        if let Some(field) = self.fingerprint_field {
            let stored = cf_value(issue, field);
            if stored != Some(c.fingerprint.as_str()) {
                return Err(DeliveryError::Blocked {
                    message: format!(
                        "issue #{id} was created but custom field {field} does not hold the \
                         fingerprint ({}): Redmine drops values silently when the field is \
                         not enabled for project {:?} and its tracker, or the role may not \
                         edit it; fix Redmine, then close issue #{id}",
                        match stored {
                            None => "the field is not on the issue".to_string(),
                            Some(s) => format!("it holds {:?}", super::clean_text(s)),
                        },
                        self.project
                    ),
                });
            }
        }
        Ok(TicketRef(id.to_string()))
    }

    /// `PUT /issues/ID.json` with a private note.
    fn comment_request(
        &self,
        t: &TicketRef,
        _c: &TicketContent,
        _kind: UpdateKind,
        text: &str,
        _now: u64,
    ) -> HttpRequest {
        let doc = json!({ "issue": { "notes": text, "private_notes": true } });
        self.request("PUT", self.issue_url(t), Some(doc))
    }

    /// The project's open issues carrying `fingerprint` (custom field or subject tag), by id.
    fn find_open_request(&self, fingerprint: &str) -> Option<HttpRequest> {
        let filter = match self.fingerprint_field {
            Some(id) => format!("cf_{id}={}", percent_encode(fingerprint)),
            None => format!(
                "subject={}",
                percent_encode(&format!("~{}", Self::subject_tag(fingerprint)))
            ),
        };
        let url = format!(
            "{}/issues.json?status_id=open&{filter}&sort=id&limit=100",
            self.project_url()
        );
        Some(self.request("GET", url, None))
    }

    /// The oldest open issue whose custom field equals `fingerprint`, or whose subject starts
    /// with its tag, exactly.
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
        let tag = Self::subject_tag(fingerprint);
        let mut best: Option<u64> = None;
        for issue in issues {
            let Some(id) = issue.get("id").and_then(Value::as_u64) else {
                return Err(unexpected("an issue without an id", body));
            };
            let matches = match self.fingerprint_field {
                Some(field) => match cf_value(issue, field) {
                    Some(s) if s == fingerprint => true,
                    Some(s) if s.eq_ignore_ascii_case(fingerprint) => false,
                    // Redmine ignores a filter on a field that is not "Used as a filter",
                    // and lists every issue.
                    _ => return Err(self.not_a_filter(field)),
                },
                None => issue
                    .get("subject")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.starts_with(&tag)),
            };
            if matches && best.is_none_or(|b| id < b) {
                best = Some(id);
            }
        }
        Ok(best.map(|id| TicketRef(id.to_string())))
    }

    /// `GET /issues.json?issue_id=ID&status_id=open`: lists the issue only while it is open.
    fn status_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        let url = format!(
            "{}/issues.json?issue_id={}&status_id=open",
            self.base,
            percent_encode(&t.0)
        );
        Some(self.request("GET", url, None))
    }

    /// Open when the `status_id=open` list, filtered by the issue's id, shows it.
    fn parse_status(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketStatus, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        let issues = v
            .get("issues")
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected("no issues", body))?;
        match issues.len() {
            0 => Ok(TicketStatus::Closed),
            1 => Ok(TicketStatus::Open),
            _ => Err(unexpected("several issues for one issue_id", body)),
        }
    }

    /// `PUT /issues/ID.json` setting the first open status.
    fn reopen_request(&self, t: &TicketRef, _now: u64) -> Option<HttpRequest> {
        let doc = json!({ "issue": { "status_id": self.reopen_status() } });
        Some(self.request("PUT", self.issue_url(t), Some(doc)))
    }

    /// `PUT /issues/ID.json` setting `priority_id`.
    fn set_priority_request(&self, t: &TicketRef, p: Priority, _now: u64) -> Option<HttpRequest> {
        let doc = json!({ "issue": { "priority_id": self.priority(p) } });
        Some(self.request("PUT", self.issue_url(t), Some(doc)))
    }

    /// `GET /users/current.json`: proves the URL, the key and that the REST web service is
    /// on.
    fn check_request(&self) -> Option<HttpRequest> {
        Some(self.request("GET", format!("{}/users/current.json", self.base), None))
    }

    /// The key's user; returns the follow-ups.
    fn parse_check(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<HttpRequest>, DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        v.get("user")
            .and_then(|u| u.get("id"))
            .and_then(Value::as_u64)
            .ok_or_else(|| unexpected("no user", body))?;
        Ok(self.check_follow_ups())
    }

    /// Reads one follow-up answer, told apart by its top-level key.
    fn parse_check_field(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        let v = self.json_answer(status, headers, body)?;
        if let Some(p) = v.get("project") {
            self.check_project(p)
        } else if let Some(list) = v.get("issue_priorities").and_then(Value::as_array) {
            self.check_priorities(list)
        } else if let Some(list) = v.get("issue_statuses").and_then(Value::as_array) {
            self.learn_statuses(list)
        } else if let Some(n) = v.get("total_count").and_then(Value::as_u64) {
            match (n, self.fingerprint_field) {
                (0, _) | (_, None) => Ok(()),
                (_, Some(field)) => Err(self.not_a_filter(field)),
            }
        } else {
            Err(unexpected(
                "not a project, priorities, statuses or issues",
                body,
            ))
        }
    }
}

/// The value of custom field `id` on an issue (`None`: not on it, or a multiple value).
fn cf_value(issue: &Value, id: u64) -> Option<&str> {
    issue
        .get("custom_fields")?
        .as_array()?
        .iter()
        .find(|f| f.get("id").and_then(Value::as_u64) == Some(id))?
        .get("value")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::adapter::test_support::{config, content, problems_of, token};

    const BASE: &str = "[[helpdesk]]\nname = \"rm\"\nkind = \"redmine\"\n\
                        url = \"https://redmine.example.com\"\ntoken_env = \"RM_KEY\"\n";

    #[test]
    fn config_problems_are_located() {
        for ok in [
            "project = \"security\"\n",
            "project = \"42\"\nissue_type = \"3\"\nfingerprint_field = \"7\"\n",
            "project = \"sec-ops_2\"\ncreate_fields = { custom_fields = [{ id = 2, value = \"x\" }], assigned_to_id = 5 }\n",
        ] {
            let got = problems_of(&format!("{BASE}{ok}"));
            assert!(got.is_empty(), "{ok}: {got:?}");
        }
        let cases: &[(&str, &str)] = &[
            ("", "3:8: helpdesk \"rm\": Redmine needs `project`"),
            (
                "project = \"Security\"\n",
                "6:11: helpdesk \"rm\": `project` \"Security\" is not a Redmine project identifier",
            ),
            (
                "project = \"s\"\nissue_type = \"Bug\"\n",
                "7:14: helpdesk \"rm\": `issue_type` must be the numeric id of a tracker",
            ),
            (
                "project = \"s\"\nfingerprint_field = \"Fingerprint\"\n",
                "7:21: helpdesk \"rm\": `fingerprint_field` must be the numeric id of an issue custom field",
            ),
            (
                "project = \"s\"\npriority_map = { P1 = \"Urgent\" }\n",
                "7:23: helpdesk \"rm\": Redmine priorities are ids",
            ),
            (
                "project = \"s\"\npriority_map = { P4 = 0 }\n",
                "7:23: helpdesk \"rm\": Redmine priorities are ids",
            ),
            (
                "project = \"s\"\ncreate_fields = { subject = \"x\" }\n",
                "7:17: helpdesk \"rm\": `create_fields` must not set `subject`",
            ),
            (
                "project = \"s\"\ncreate_fields = { tracker_id = 1 }\n",
                "7:17: helpdesk \"rm\": `create_fields` must not set `tracker_id`: use `issue_type`",
            ),
            (
                "project = \"s\"\ncreate_fields = { custom_fields = [{ id = 2 }] }\n",
                "7:17: helpdesk \"rm\": `create_fields.custom_fields`: a list",
            ),
            (
                "project = \"s\"\nfingerprint_field = \"2\"\ncreate_fields = { custom_fields = [{ id = 2, value = \"x\" }] }\n",
                "8:17: helpdesk \"rm\": `create_fields.custom_fields` must not set the fingerprint field",
            ),
            (
                "project = \"s\"\nusername = \"u\"\n",
                "7:12: helpdesk \"rm\": `username` does not apply to kind = \"redmine\"",
            ),
        ];
        for (extra, want) in cases {
            let got = problems_of(&format!("{BASE}{extra}")).join("\n");
            assert!(got.contains(want), "{extra}\n got: {got}\nwant: {want}");
        }
        let no_key = problems_of(
            "[[helpdesk]]\nname = \"rm\"\nkind = \"redmine\"\nurl = \"https://r\"\nproject = \"s\"\n",
        );
        assert!(
            no_key[0].contains("3:8: helpdesk \"rm\": Redmine needs an API key"),
            "{no_key:?}"
        );
    }

    #[test]
    fn priority_defaults_and_subjects() {
        let cfg = config(&format!(
            "{BASE}project = \"s\"\npriority_map = {{ P1 = 5 }}\n"
        ));
        let r = Redmine::new(&cfg, token("k")).unwrap();
        assert_eq!(
            [Priority::P1, Priority::P2, Priority::P3, Priority::P4].map(|p| r.priority(p)),
            [5, 3, 2, 1]
        );
        assert_eq!(r.reopen_status(), DEFAULT_REOPEN_STATUS);
        let mut c = content("ab12", "x\ny", Priority::P2);
        assert_eq!(r.subject(&c), "[sentinela:ab12] x y");
        c.title = "z".repeat(400);
        let s = r.subject(&c);
        assert_eq!(s.chars().count(), MAX_SUBJECT_CHARS);
        assert!(s.starts_with("[sentinela:ab12] zzz") && s.ends_with('…'));
    }
}
