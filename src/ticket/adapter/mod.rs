//! Help desk adapters: one module per help desk behind one interface, [`Adapter`].
//!
//! Every operation is three steps, so that the dry run and the contract tests see exactly what
//! is sent and exactly how each answer is read:
//!
//! 1. a *builder* ([`Adapter::create_request`], ...) turns ticket content into an
//!    [`HttpRequest`] value, with no I/O;
//! 2. [`send`] executes a request (the only I/O here);
//! 3. a *parser* ([`Adapter::parse_create`], ...) turns the status, headers and body into a
//!    result or a [`DeliveryError`].
//!
//! The async methods ([`Adapter::create`], ...) chain the three, behind the help desk's rate
//! limit and timeout.
//!
//! Failures are classified once, in [`classify`]: what may succeed later (network errors,
//! timeouts, 5xx, 429) is [`DeliveryError::Retry`], honouring `Retry-After`; what needs an
//! operator (401, 403, 404, validation errors, redirects, a help desk that silently drops our
//! data) is [`DeliveryError::Blocked`] with the help desk's own message. Secrets (tokens, HMAC
//! keys) are read only by reference (environment variable or file), are never logged, are
//! redacted in [`HttpRequest::display_redacted`] and are scrubbed from error messages in case a
//! help desk echoes them back.
//!
//! Each help desk module implements the crate-internal `Api` trait (builders and parsers only)
//! and exports `KEYS` (the config keys only it accepts) and `problems` (its config checks);
//! [`Adapter`] wraps it with what every help desk shares. What several modules need (JSON
//! requests and answers, API base URLs, basic credentials, one-line titles, JSON ids,
//! rate-limit resets) is here too. Adding a help desk is one module, one [`HelpdeskKind`]
//! variant and its contract tests.
//!
//! - [`rt`]: Request Tracker 5, REST 2.0.
//! - [`webhook`]: a generic JSON webhook with an optional HMAC-SHA256 signature.
//! - [`zammad`], [`zendesk`], [`freshdesk`]: HTML bodies; tag / `external_id` keys.
//! - [`jira`]: Jira Cloud v3 and Jira Service Management; ADF bodies, label key.
//! - [`gitlab`], [`redmine`]: Markdown bodies; label / custom field keys.
//! - [`servicenow`]: Table API, `correlation_id` key.
//! - [`glpi`]: REST API with login sessions; key in the title.
//! - [`pagerduty`]: Events API v2, `dedup_key`; resolves when the incident closes locally.

pub mod freshdesk;
pub mod gitlab;
pub mod glpi;
pub mod jira;
pub mod pagerduty;
pub mod redmine;
pub mod rt;
pub mod servicenow;
pub mod webhook;
pub mod zammad;
pub mod zendesk;

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use toml::Spanned;

use crate::policy::Priority;
use crate::ticket::render::BodyFormat;
use crate::ticket::UpdateKind;
use crate::ticket::{DeliveryError, Header, HttpRequest, TicketContent, TicketRef, TicketStatus};

/// What [`send`] returns: status code, headers (names in lower case) and body.
pub type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// A help desk's answer is read into memory; a longer one is refused rather than letting a
/// misbehaving server exhaust memory. RT's largest answers we read (a ticket with its custom
/// fields, a search of a few tickets) are a few kilobytes.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// The longest wait a `Retry-After` may impose: one answer from a help desk must not park
/// deliveries for days (the outbox retries with its own backoff after that).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Help desk messages quoted in errors are cut to this many characters: enough to read the
/// reason, short enough for a log line.
const MAX_MESSAGE_CHARS: usize = 300;

/// Sent on every request, so help desk administrators can tell our traffic apart.
pub const USER_AGENT: &str = concat!("sentinela/", env!("CARGO_PKG_VERSION"));

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// Which help desk a `[[helpdesk]]` entry talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HelpdeskKind {
    /// Request Tracker 5 (REST 2.0).
    Rt,
    /// A generic JSON webhook.
    Webhook,
    /// Zammad.
    Zammad,
    /// GLPI.
    Glpi,
    /// Jira.
    Jira,
    /// Zendesk.
    Zendesk,
    /// Freshdesk.
    Freshdesk,
    /// ServiceNow.
    Servicenow,
    /// Redmine.
    Redmine,
    /// GitLab.
    Gitlab,
    /// PagerDuty.
    Pagerduty,
}

impl HelpdeskKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: &'static [HelpdeskKind] = &[
        HelpdeskKind::Rt,
        HelpdeskKind::Webhook,
        HelpdeskKind::Zammad,
        HelpdeskKind::Glpi,
        HelpdeskKind::Jira,
        HelpdeskKind::Zendesk,
        HelpdeskKind::Freshdesk,
        HelpdeskKind::Servicenow,
        HelpdeskKind::Redmine,
        HelpdeskKind::Gitlab,
        HelpdeskKind::Pagerduty,
    ];

    /// The name used in the config (`rt`, `webhook`).
    pub fn as_str(self) -> &'static str {
        match self {
            HelpdeskKind::Rt => "rt",
            HelpdeskKind::Webhook => "webhook",
            HelpdeskKind::Zammad => "zammad",
            HelpdeskKind::Glpi => "glpi",
            HelpdeskKind::Jira => "jira",
            HelpdeskKind::Zendesk => "zendesk",
            HelpdeskKind::Freshdesk => "freshdesk",
            HelpdeskKind::Servicenow => "servicenow",
            HelpdeskKind::Redmine => "redmine",
            HelpdeskKind::Gitlab => "gitlab",
            HelpdeskKind::Pagerduty => "pagerduty",
        }
    }

    /// The product name, for messages (`RT`, `Zammad`, ...).
    pub fn display_name(self) -> &'static str {
        match self {
            HelpdeskKind::Rt => "RT",
            HelpdeskKind::Webhook => "a webhook",
            HelpdeskKind::Zammad => "Zammad",
            HelpdeskKind::Glpi => "GLPI",
            HelpdeskKind::Jira => "Jira",
            HelpdeskKind::Zendesk => "Zendesk",
            HelpdeskKind::Freshdesk => "Freshdesk",
            HelpdeskKind::Servicenow => "ServiceNow",
            HelpdeskKind::Redmine => "Redmine",
            HelpdeskKind::Gitlab => "GitLab",
            HelpdeskKind::Pagerduty => "PagerDuty",
        }
    }

    /// The keys only this kind uses, beyond the common ones (`name`, `kind`, `url`,
    /// `token_env`, `token_file`, `priority_map`, `requests_per_second`, `timeout`,
    /// `allow_http`).
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            HelpdeskKind::Rt => rt::KEYS,
            HelpdeskKind::Webhook => webhook::KEYS,
            HelpdeskKind::Zammad => zammad::KEYS,
            HelpdeskKind::Glpi => glpi::KEYS,
            HelpdeskKind::Jira => jira::KEYS,
            HelpdeskKind::Zendesk => zendesk::KEYS,
            HelpdeskKind::Freshdesk => freshdesk::KEYS,
            HelpdeskKind::Servicenow => servicenow::KEYS,
            HelpdeskKind::Redmine => redmine::KEYS,
            HelpdeskKind::Gitlab => gitlab::KEYS,
            HelpdeskKind::Pagerduty => pagerduty::KEYS,
        }
    }
}

/// A `priority_map` value: RT wants integers, a webhook accepts either (sent as a JSON number
/// or string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriorityValue {
    /// `P1 = 90`
    Int(i64),
    /// `P1 = "urgent"`
    Text(String),
}

impl<'de> Deserialize<'de> for PriorityValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PriorityValue, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PriorityValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PriorityValue, E> {
                Ok(PriorityValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PriorityValue, E> {
                i64::try_from(v)
                    .map(PriorityValue::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PriorityValue, E> {
                Ok(PriorityValue::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One `[[helpdesk]]` entry.
///
/// A flat struct with a `kind` field rather than an internally tagged enum on purpose: serde
/// buffers the fields of an internally tagged enum before choosing the variant, and the `toml`
/// crate then reports an unknown key or a wrong type at the start of the `[[helpdesk]]` table
/// instead of at the key itself. Keys that belong to the other kind are reported by
/// [`HelpdeskConfig::problems`], with their span.
///
/// Spans (`Spanned`) are byte offsets in the config text, for `file:line:column` diagnostics.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelpdeskConfig {
    /// Names the help desk in logs, metrics and the outbox: letters, digits, `.`, `_`, `-`.
    pub name: Spanned<String>,
    /// `rt` or `webhook`.
    pub kind: Spanned<HelpdeskKind>,
    /// RT: the web base URL (`https://rt.example.com`, a trailing `/REST/2.0` is accepted);
    /// webhook: the URL to POST to. Not a secret: it is shown by the dry run.
    pub url: Spanned<String>,
    /// Name of the environment variable that holds the token (RT: an auth token, sent as
    /// `Authorization: token ...`; webhook: optional, sent as `Authorization: Bearer ...`).
    #[serde(default)]
    pub token_env: Option<Spanned<String>>,
    /// File that holds the token (trimmed), instead of `token_env`.
    #[serde(default)]
    pub token_file: Option<Spanned<PathBuf>>,
    /// Webhook: environment variable holding the HMAC-SHA256 signing key.
    #[serde(default)]
    pub hmac_secret_env: Option<Spanned<String>>,
    /// Webhook: file holding the HMAC-SHA256 signing key (trimmed).
    #[serde(default)]
    pub hmac_secret_file: Option<Spanned<PathBuf>>,
    /// RT: the queue tickets are created in (required).
    #[serde(default)]
    pub queue: Option<Spanned<String>>,
    /// The user of HTTP basic authentication, with the token as password: Jira (the account's
    /// e-mail), Zendesk (the agent's e-mail), ServiceNow (the integration user).
    #[serde(default)]
    pub username: Option<Spanned<String>>,
    /// GLPI: environment variable holding the API client's `App-Token` (optional in GLPI).
    #[serde(default)]
    pub app_token_env: Option<Spanned<String>>,
    /// GLPI: file holding the `App-Token` (trimmed).
    #[serde(default)]
    pub app_token_file: Option<Spanned<PathBuf>>,
    /// Where tickets are assigned: Zammad group (required), Zendesk and Freshdesk group id,
    /// ServiceNow assignment group.
    #[serde(default)]
    pub group: Option<Spanned<String>>,
    /// The project tickets are created in: Jira project key, GitLab project id or path,
    /// Redmine project identifier.
    #[serde(default)]
    pub project: Option<Spanned<String>>,
    /// Who the ticket is for: Zammad customer, Freshdesk and Zendesk requester e-mail,
    /// ServiceNow caller.
    #[serde(default)]
    pub requester: Option<Spanned<String>>,
    /// Jira issue type name (default `Task`); Redmine tracker id.
    #[serde(default)]
    pub issue_type: Option<Spanned<String>>,
    /// Jira Service Management: the service desk id; with `request_type_id`, tickets are
    /// created as customer requests (`/rest/servicedeskapi/request`).
    #[serde(default)]
    pub service_desk_id: Option<Spanned<String>>,
    /// Jira Service Management: the request type id.
    #[serde(default)]
    pub request_type_id: Option<Spanned<String>>,
    /// Extra fields merged into the create payload, for fields a help desk requires that
    /// sentinela does not know (Jira components, a ServiceNow category, a Redmine custom
    /// field). Shown by the dry run; never overrides the fields sentinela sets.
    #[serde(default)]
    pub create_fields: Option<Spanned<toml::Table>>,
    /// Where the fingerprint (the dedup key) is stored. RT: the ticket custom field (default
    /// `SentinelaFingerprint`, applied to the queue); Redmine: the id of an issue custom field
    /// marked "used as a filter" (without it, the key goes in the subject).
    #[serde(default)]
    pub fingerprint_field: Option<Spanned<String>>,
    /// RT: the ticket custom field set to the detector severity (default `Severity`; `""`
    /// sets none).
    #[serde(default)]
    pub severity_field: Option<Spanned<String>>,
    /// P1..P4 to the help desk's priority. RT: integers (default P1 = 90, P2 = 70, P3 = 50,
    /// P4 = 30); webhook: strings or integers (default "P1".."P4"). Missing keys keep their
    /// default.
    #[serde(default)]
    pub priority_map: BTreeMap<Priority, Spanned<PriorityValue>>,
    /// Webhook: extra request headers. Not secrets: they are shown by the dry run; use
    /// `token_env`/`token_file` or the HMAC signature for authentication.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Webhook: the JSON body with `{{name}}` placeholders (see [`webhook`]); default: the
    /// event object.
    #[serde(default)]
    pub body_template: Option<Spanned<String>>,
    /// At most this many requests a second to this help desk (a burst of as many is allowed).
    /// Default: 5, or 2 for PagerDuty (its Events API allows about 120 events a minute per
    /// routing key).
    #[serde(default)]
    pub requests_per_second: Option<Spanned<u32>>,
    /// Each request (connect, send, whole answer) must finish within this (`"10s"`).
    #[serde(
        default = "default_timeout",
        deserialize_with = "crate::detector::de_duration"
    )]
    pub timeout: Duration,
    /// Allow a plain `http://` URL to a host other than the loopback. Off by default because
    /// the token and the incident details would cross the network in clear text.
    #[serde(default)]
    pub allow_http: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A problem found by [`HelpdeskConfig::problems`]: where (a byte span in the config text, when
/// the problem is about one value) and what.
pub type Problem = (Option<Range<usize>>, String);

/// The default RT custom field holding the fingerprint.
pub const DEFAULT_FINGERPRINT_FIELD: &str = "SentinelaFingerprint";
/// The default RT custom field holding the severity.
pub const DEFAULT_SEVERITY_FIELD: &str = "Severity";
/// Default RT priorities for P1..P4.
pub const DEFAULT_RT_PRIORITIES: [i64; 4] = [90, 70, 50, 30];

/// Index of a priority in `[_; 4]` tables.
pub(crate) fn prio_index(p: Priority) -> usize {
    match p {
        Priority::P1 => 0,
        Priority::P2 => 1,
        Priority::P3 => 2,
        Priority::P4 => 3,
    }
}

const ALL_PRIORITIES: [Priority; 4] = [Priority::P1, Priority::P2, Priority::P3, Priority::P4];

/// Headers a `headers` table may not set: they are ours (framing, authentication, signature).
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "host",
    "transfer-encoding",
    "user-agent",
    "x-sentinela-event",
    "x-sentinela-signature",
    "x-sentinela-timestamp",
];

impl HelpdeskConfig {
    fn label(&self) -> String {
        format!("helpdesk {:?}", self.name.get_ref())
    }

    /// The RT custom field holding the fingerprint.
    pub fn fingerprint_field(&self) -> &str {
        self.fingerprint_field
            .as_ref()
            .map_or(DEFAULT_FINGERPRINT_FIELD, |f| f.get_ref())
    }

    /// The RT custom field holding the severity, if any.
    pub fn severity_field(&self) -> Option<&str> {
        match &self.severity_field {
            None => Some(DEFAULT_SEVERITY_FIELD),
            Some(f) if f.get_ref().is_empty() => None,
            Some(f) => Some(f.get_ref()),
        }
    }

    /// RT priorities for P1..P4 (defaults for missing or non-integer entries).
    pub fn rt_priorities(&self) -> [i64; 4] {
        let mut out = DEFAULT_RT_PRIORITIES;
        for (p, v) in &self.priority_map {
            if let PriorityValue::Int(i) = v.get_ref() {
                out[prio_index(*p)] = *i;
            }
        }
        out
    }

    /// Webhook priorities for P1..P4 as JSON values.
    pub fn webhook_priorities(&self) -> [serde_json::Value; 4] {
        let mut out = ALL_PRIORITIES.map(|p| serde_json::Value::String(p.to_string()));
        for (p, v) in &self.priority_map {
            out[prio_index(*p)] = match v.get_ref() {
                PriorityValue::Int(i) => serde_json::Value::from(*i),
                PriorityValue::Text(s) => serde_json::Value::String(s.clone()),
            };
        }
        out
    }

    /// Every problem with this entry, each located where possible. The single validation
    /// path: [`HelpdeskConfig::validate`], [`Adapter::from_config`] and the config check all
    /// use it. Names of other entries (uniqueness) are the caller's business.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out: Vec<Problem> = Vec::new();
        let label = self.label();
        let mut err = |span: Option<Range<usize>>, msg: String| {
            out.push((span.filter(|s| s.end > 0), format!("{label}: {msg}")))
        };
        let kind = *self.kind.get_ref();

        let name = self.name.get_ref();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            err(
                Some(self.name.span()),
                "`name` must be 1 to 64 letters, digits, '.', '_' or '-'".into(),
            );
        }

        // URL.
        match reqwest::Url::parse(self.url.get_ref()) {
            Err(e) => err(
                Some(self.url.span()),
                format!("invalid `url` {:?}: {e}", self.url.get_ref()),
            ),
            Ok(u) => {
                if u.scheme() != "https" && u.scheme() != "http" {
                    err(
                        Some(self.url.span()),
                        format!("`url` must be http:// or https://, not {}://", u.scheme()),
                    );
                }
                if !u.username().is_empty() || u.password().is_some() {
                    err(
                        Some(self.url.span()),
                        "`url` must not carry credentials: use `token_env` or `token_file`".into(),
                    );
                }
                if u.scheme() == "http" && !self.allow_http && !is_loopback(&u) {
                    err(
                        Some(self.url.span()),
                        "plain http:// to a remote host would send the token and incident \
                         details in clear text: use https://, or set `allow_http = true`"
                            .into(),
                    );
                }
                if kind == HelpdeskKind::Rt && (u.query().is_some() || u.fragment().is_some()) {
                    err(
                        Some(self.url.span()),
                        "an RT `url` is the web base address (https://rt.example.com), \
                         without a query or fragment"
                            .into(),
                    );
                }
            }
        }

        // Secrets by reference.
        for (env, file, what) in [
            (&self.token_env, &self.token_file, "token"),
            (&self.hmac_secret_env, &self.hmac_secret_file, "hmac_secret"),
            (&self.app_token_env, &self.app_token_file, "app_token"),
        ] {
            if let (Some(_), Some(f)) = (env, file) {
                err(
                    Some(f.span()),
                    format!("set either `{what}_env` or `{what}_file`, not both"),
                );
            }
            if let Some(e) = env {
                if !is_env_name(e.get_ref()) {
                    err(
                        Some(e.span()),
                        format!(
                            "`{what}_env` must name an environment variable (letters, digits, \
                             '_'), not hold the secret itself"
                        ),
                    );
                }
            }
            if let Some(f) = file {
                if f.get_ref().as_os_str().is_empty() {
                    err(Some(f.span()), format!("`{what}_file` is empty"));
                }
            }
        }

        // Keys of other kinds.
        let allowed = kind.keys();
        for (key, span) in self.specific_keys() {
            if !allowed.contains(&key) {
                err(
                    Some(span),
                    format!("`{key}` does not apply to kind = {:?}", kind.as_str()),
                );
            }
        }

        match kind {
            HelpdeskKind::Rt => rt::problems(self, &mut err),
            HelpdeskKind::Webhook => webhook::problems(self, &mut err),
            HelpdeskKind::Zammad => zammad::problems(self, &mut err),
            HelpdeskKind::Glpi => glpi::problems(self, &mut err),
            HelpdeskKind::Jira => jira::problems(self, &mut err),
            HelpdeskKind::Zendesk => zendesk::problems(self, &mut err),
            HelpdeskKind::Freshdesk => freshdesk::problems(self, &mut err),
            HelpdeskKind::Servicenow => servicenow::problems(self, &mut err),
            HelpdeskKind::Redmine => redmine::problems(self, &mut err),
            HelpdeskKind::Gitlab => gitlab::problems(self, &mut err),
            HelpdeskKind::Pagerduty => pagerduty::problems(self, &mut err),
        }

        if let Some(rps) = &self.requests_per_second {
            if *rps.get_ref() == 0 || *rps.get_ref() > 1000 {
                err(
                    Some(rps.span()),
                    "`requests_per_second` must be 1 to 1000".into(),
                );
            }
        }
        if self.timeout > Duration::from_secs(300) {
            err(None, "`timeout` must be at most 5m".into());
        }
        out
    }

    /// This entry with relative secret files (`token_file`, `hmac_secret_file`,
    /// `app_token_file`) taken relative to `dir`, the config file's directory.
    pub fn with_paths_relative_to(&self, dir: &Path) -> HelpdeskConfig {
        let mut h = self.clone();
        for f in [
            &mut h.token_file,
            &mut h.hmac_secret_file,
            &mut h.app_token_file,
        ]
        .into_iter()
        .flatten()
        {
            if f.get_ref().is_relative() && dir.is_dir() {
                *f = Spanned::new(f.span(), dir.join(f.get_ref()));
            }
        }
        h
    }

    /// Requests a second: the configured value, else the kind's default.
    pub fn requests_per_second(&self) -> u32 {
        match &self.requests_per_second {
            Some(r) => *r.get_ref(),
            None if *self.kind.get_ref() == HelpdeskKind::Pagerduty => 2,
            None => 5,
        }
    }

    /// The kind-specific keys that are set, with the span of their value.
    fn specific_keys(&self) -> Vec<(&'static str, Range<usize>)> {
        let mut out = Vec::new();
        let strings: [(&'static str, &Option<Spanned<String>>); 13] = [
            ("queue", &self.queue),
            ("fingerprint_field", &self.fingerprint_field),
            ("severity_field", &self.severity_field),
            ("hmac_secret_env", &self.hmac_secret_env),
            ("body_template", &self.body_template),
            ("username", &self.username),
            ("app_token_env", &self.app_token_env),
            ("group", &self.group),
            ("project", &self.project),
            ("requester", &self.requester),
            ("issue_type", &self.issue_type),
            ("service_desk_id", &self.service_desk_id),
            ("request_type_id", &self.request_type_id),
        ];
        for (key, v) in strings {
            if let Some(v) = v {
                out.push((key, v.span()));
            }
        }
        for (key, v) in [
            ("hmac_secret_file", &self.hmac_secret_file),
            ("app_token_file", &self.app_token_file),
        ] {
            if let Some(v) = v {
                out.push((key, v.span()));
            }
        }
        if let Some(v) = self.headers.values().next() {
            out.push(("headers", v.span()));
        }
        if let Some(v) = &self.create_fields {
            out.push(("create_fields", v.span()));
        }
        out
    }

    /// Priorities for P1..P4: `defaults`, with the entries of `priority_map` applied.
    pub fn priorities(&self, defaults: [PriorityValue; 4]) -> [PriorityValue; 4] {
        let mut out = defaults;
        for (p, v) in &self.priority_map {
            out[prio_index(*p)] = v.get_ref().clone();
        }
        out
    }

    /// `create_fields` as a JSON object (empty when not set).
    pub fn create_fields_json(&self) -> serde_json::Map<String, serde_json::Value> {
        match &self.create_fields {
            None => serde_json::Map::new(),
            Some(t) => match serde_json::to_value(t.get_ref()) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            },
        }
    }

    /// A required string setting: its trimmed value, or a problem naming the key (located at
    /// `kind` when missing, at the value when empty).
    pub(crate) fn required<'a>(
        &self,
        key: &str,
        v: &'a Option<Spanned<String>>,
        what: &str,
        err: &mut dyn FnMut(Option<Range<usize>>, String),
    ) -> Option<&'a str> {
        match v {
            None => {
                err(
                    Some(self.kind.span()),
                    format!(
                        "{} needs `{key}` ({what})",
                        self.kind.get_ref().display_name()
                    ),
                );
                None
            }
            Some(s) if s.get_ref().trim().is_empty() => {
                err(Some(s.span()), format!("`{key}` is empty"));
                None
            }
            Some(s) => Some(s.get_ref().trim()),
        }
    }

    /// Reports a missing token, for the kinds that need one.
    pub(crate) fn require_token(
        &self,
        what: &str,
        err: &mut dyn FnMut(Option<Range<usize>>, String),
    ) {
        if self.token_env.is_none() && self.token_file.is_none() {
            err(
                Some(self.kind.span()),
                format!(
                    "{} needs {what}: set `token_env` or `token_file`",
                    self.kind.get_ref().display_name()
                ),
            );
        }
    }

    /// Reports `priority_map` values that are not integers from `lo` to `hi`, with `msg`.
    pub(crate) fn check_int_priorities(
        &self,
        lo: i64,
        hi: i64,
        msg: &str,
        err: &mut dyn FnMut(Option<Range<usize>>, String),
    ) {
        for v in self.priority_map.values() {
            match v.get_ref() {
                PriorityValue::Int(i) if (lo..=hi).contains(i) => {}
                _ => err(Some(v.span()), msg.to_string()),
            }
        }
    }

    /// Reports `priority_map` values that are not one of `names` (compared without case).
    pub(crate) fn check_named_priorities(
        &self,
        names: &[&str],
        err: &mut dyn FnMut(Option<Range<usize>>, String),
    ) {
        for v in self.priority_map.values() {
            let ok = matches!(v.get_ref(), PriorityValue::Text(t) if names.iter().any(|n| n.eq_ignore_ascii_case(t)));
            if !ok {
                err(
                    Some(v.span()),
                    format!(
                        "priorities of {} are one of {}",
                        self.kind.get_ref().display_name(),
                        names.join(", ")
                    ),
                );
            }
        }
    }

    /// Checks this entry; the error lists every problem, one per line, each naming the help
    /// desk. Use [`HelpdeskConfig::problems`] for the locations.
    pub fn validate(&self) -> Result<(), String> {
        let p = self.problems();
        if p.is_empty() {
            Ok(())
        } else {
            Err(p.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("\n"))
        }
    }

    /// The token (`token_env` or `token_file`), trimmed; `None` when neither is set. Errors
    /// name the variable or file, never the value.
    pub fn secret(&self) -> Result<Option<String>, String> {
        read_secret(
            &self.label(),
            "token",
            self.token_env.as_ref().map(|s| s.get_ref().as_str()),
            self.token_file.as_ref().map(|s| s.get_ref().as_path()),
        )
    }

    /// The GLPI `App-Token` (`app_token_env` or `app_token_file`), trimmed; `None` when
    /// neither is set.
    pub fn app_token(&self) -> Result<Option<String>, String> {
        read_secret(
            &self.label(),
            "app_token",
            self.app_token_env.as_ref().map(|s| s.get_ref().as_str()),
            self.app_token_file.as_ref().map(|s| s.get_ref().as_path()),
        )
    }

    /// The webhook HMAC key (`hmac_secret_env` or `hmac_secret_file`), trimmed; `None` when
    /// neither is set (requests are then not signed).
    pub fn hmac_secret(&self) -> Result<Option<String>, String> {
        read_secret(
            &self.label(),
            "hmac_secret",
            self.hmac_secret_env.as_ref().map(|s| s.get_ref().as_str()),
            self.hmac_secret_file
                .as_ref()
                .map(|s| s.get_ref().as_path()),
        )
    }
}

fn is_loopback(u: &reqwest::Url) -> bool {
    let Some(host) = u.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Custom field names go into TicketSQL as `'CF.{Name}'`: braces and quotes would break out.
fn bad_cf_name(name: &str, may_be_empty: bool) -> Option<String> {
    if name.is_empty() {
        return (!may_be_empty).then(|| "the custom field name is empty".into());
    }
    if name
        .chars()
        .any(|c| matches!(c, '{' | '}' | '\'' | '"' | '\\') || c.is_control())
    {
        return Some(format!(
            "custom field name {name:?} has a brace, quote, backslash or control character"
        ));
    }
    None
}

fn read_secret(
    label: &str,
    what: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, String> {
    let (value, source) = if let Some(var) = env {
        let v = match std::env::var(var) {
            Ok(v) => v,
            Err(std::env::VarError::NotPresent) => {
                return Err(format!(
                    "{label}: environment variable {var} (`{what}_env`) is not set"
                ))
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!(
                    "{label}: environment variable {var} (`{what}_env`) is not valid UTF-8"
                ))
            }
        };
        (v, format!("environment variable {var} (`{what}_env`)"))
    } else if let Some(path) = file {
        let v = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "{label}: cannot read {} (`{what}_file`): {e}",
                path.display()
            )
        })?;
        (v, format!("{} (`{what}_file`)", path.display()))
    } else {
        return Ok(None);
    };
    let v = value.trim();
    if v.is_empty() {
        return Err(format!("{label}: {source} is empty"));
    }
    // A secret goes into a header: a line break would split it (and the value must not be
    // printed to say so).
    if v.chars().any(char::is_control) {
        return Err(format!(
            "{label}: {source} holds a line break or control character (one line expected)"
        ));
    }
    Ok(Some(v.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Shared state of an adapter
// ---------------------------------------------------------------------------------------------

/// A secret value: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What every adapter has: its name, timeout, rate limiter and the secrets to scrub from
/// messages.
#[derive(Clone)]
pub(crate) struct Common {
    pub(crate) name: String,
    pub(crate) timeout: Duration,
    limiter: Arc<DefaultDirectRateLimiter>,
    secrets: Vec<Secret>,
}

impl fmt::Debug for Common {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Common")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Common {
    fn new(cfg: &HelpdeskConfig, secrets: Vec<Secret>) -> Common {
        let rps = NonZeroU32::new(cfg.requests_per_second()).unwrap_or(NonZeroU32::MIN);
        Common {
            name: cfg.name.get_ref().clone(),
            timeout: cfg.timeout,
            limiter: Arc::new(RateLimiter::direct(Quota::per_second(rps))),
            secrets,
        }
    }

    /// Removes our secrets from a message, in case a help desk or proxy echoed a header back.
    fn scrub(&self, mut msg: String) -> String {
        for s in &self.secrets {
            if s.0.len() >= 4 && msg.contains(&s.0) {
                msg = msg.replace(&s.0, "<redacted>");
            }
        }
        msg
    }

    /// Prefixes the help desk and the operation, and scrubs secrets.
    fn context(&self, op: &str, e: DeliveryError) -> DeliveryError {
        let wrap = |m: String| self.scrub(format!("helpdesk {:?}: {op}: {m}", self.name));
        match e {
            DeliveryError::Retry {
                message,
                retry_after,
            } => DeliveryError::Retry {
                message: wrap(message),
                retry_after,
            },
            DeliveryError::Blocked { message } => DeliveryError::Blocked {
                message: wrap(message),
            },
        }
    }
}

/// The headers every request carries: who we are, what we accept.
pub(crate) fn base_headers(json_body: bool) -> Vec<Header> {
    let mut h = vec![
        header("User-Agent", USER_AGENT, false),
        header("Accept", "application/json", false),
    ];
    if json_body {
        h.push(header("Content-Type", "application/json", false));
    }
    h
}

/// A [`Header`].
pub(crate) fn header(name: &str, value: &str, secret: bool) -> Header {
    Header {
        name: name.to_string(),
        value: value.to_string(),
        secret,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters: for path segments and query
/// values built by hand, so the request value is exactly what goes on the wire.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------------
// Helpers of the help desk modules
// ---------------------------------------------------------------------------------------------

/// A request with our [`base_headers`], the help desk's credential header `auth`, and `body`
/// as JSON when there is one.
pub(crate) fn json_request(
    method: &str,
    url: String,
    auth: Header,
    body: Option<Value>,
) -> HttpRequest {
    let mut headers = base_headers(body.is_some());
    headers.push(auth);
    HttpRequest {
        method: method.to_string(),
        url,
        headers,
        body: body.map(|b| b.to_string()),
    }
}

/// The body of a successful answer as JSON; a body that is not JSON is an unexpected answer
/// (a proxy's page, another API).
pub(crate) fn json_body(body: &[u8]) -> Result<Value, DeliveryError> {
    serde_json::from_slice(body).map_err(|_| unexpected("not JSON", body))
}

/// `url` without a trailing `/` or `suffix` (an operator may paste the API address), then
/// `suffix`: `https://x.example.com/` and `https://x.example.com/api/v1` both give
/// `https://x.example.com/api/v1` (an empty `suffix` only removes trailing slashes).
pub(crate) fn api_base(url: &str, suffix: &str) -> String {
    let base = url.trim().trim_end_matches('/');
    let base = base.strip_suffix(suffix).unwrap_or(base);
    format!("{}{suffix}", base.trim_end_matches('/'))
}

/// The credentials of HTTP basic authentication (RFC 7617), `user:password` in base64: what
/// follows `Basic ` in the `Authorization` header.
pub(crate) fn basic_credentials(user: &str, password: &str) -> String {
    base64(format!("{user}:{password}").as_bytes())
}

/// Standard base64 with padding (RFC 4648).
pub(crate) fn base64(bytes: &[u8]) -> String {
    use ::base64::Engine as _;
    ::base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A title as help desks show it in lists and notification subjects: one line (control
/// characters and runs of white space become one space, none at either end), at most
/// `max_chars` characters, cut with `…`. With `drop_invisible`, zero-width and bidi controls,
/// which could disguise attacker text, are dropped as well (Zammad, Zendesk and Freshdesk drop
/// them; Jira, GitLab and Redmine keep them, as they always have).
pub(crate) fn one_line(title: &str, max_chars: usize, drop_invisible: bool) -> String {
    let mut out = String::with_capacity(title.len().min(max_chars * 4));
    for c in title.trim().chars() {
        if drop_invisible
            && matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        {
            continue;
        }
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_end();
    if out.chars().count() <= max_chars {
        return out.to_string();
    }
    let mut cut: String = out.chars().take(max_chars.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// `text` when it has at most `max_chars` characters, else its first `max_chars - 1` and `…`
/// (for text that is one line already, such as [`crate::ticket::render::title`]).
pub(crate) fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Field values for structured payloads (webhook events, PagerDuty `custom_details`): each
/// redacted (log text carries passwords and tokens) and cut to
/// [`crate::ticket::render::MAX_LINE_CHARS`], at most [`MAX_STRUCTURED_FIELDS`] of them.
/// Rendered bodies get the same treatment in `render`; these payloads carry the values raw
/// otherwise.
pub(crate) fn structured_fields(c: &TicketContent) -> Map<String, Value> {
    c.fields
        .iter()
        .take(MAX_STRUCTURED_FIELDS)
        .map(|(k, v)| (k.clone(), Value::String(structured_text(v))))
        .collect()
}

/// The newest `max` evidence lines, redacted and cut like [`structured_fields`].
pub(crate) fn structured_evidence(c: &TicketContent, max: usize) -> Vec<String> {
    let newest = c.evidence.len().saturating_sub(max);
    c.evidence[newest..]
        .iter()
        .map(|l| structured_text(l))
        .collect()
}

/// At most this many fields in a structured payload (as in rendered bodies).
pub(crate) const MAX_STRUCTURED_FIELDS: usize = 50;

fn structured_text(v: &str) -> String {
    cut(
        &crate::ticket::render::redact(v),
        crate::ticket::render::MAX_LINE_CHARS,
    )
}

/// Merges `create_fields` into a create body without replacing what sentinela set; `tags`
/// (an array, or Zammad's comma-separated string) are the union, sentinela's first.
pub(crate) fn merge_fields(doc: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (k, v) in extra {
        match (doc.get_mut(k), v) {
            (None, _) => {
                doc.insert(k.clone(), v.clone());
            }
            (Some(Value::Array(ours)), Value::Array(theirs)) if k == "tags" => {
                for t in theirs {
                    if !ours.contains(t) {
                        ours.push(t.clone());
                    }
                }
            }
            (Some(Value::String(ours)), Value::String(theirs)) if k == "tags" => {
                let mut all: Vec<String> = ours.split(',').map(str::to_string).collect();
                for t in theirs.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !all.iter().any(|x| x == t) {
                        all.push(t.to_string());
                    }
                }
                *ours = all.join(",");
            }
            _ => {} // sentinela's value stays
        }
    }
}

/// Reports `create_fields` keys that sentinela sets itself (they would be ignored).
pub(crate) fn reserved_create_fields(
    cfg: &HelpdeskConfig,
    reserved: &[&str],
    err: &mut dyn FnMut(Option<Range<usize>>, String),
) {
    if let Some(t) = &cfg.create_fields {
        for key in t.get_ref().keys() {
            if reserved.contains(&key.as_str()) {
                err(
                    Some(t.span()),
                    format!(
                        "`create_fields` must not set `{key}`: sentinela sets it (see the \
                         {} section of the documentation)",
                        cfg.kind.get_ref().display_name()
                    ),
                );
            }
        }
    }
}

/// A plain e-mail address (`local@domain.tld`), as help desks accept for users: no display
/// name, spaces, quotes or list separators.
pub(crate) fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && s.chars().all(|c| {
            !c.is_whitespace() && !c.is_control() && !matches!(c, ',' | ';' | '<' | '>' | '"')
        })
}

/// An id from JSON as its digits, kept as sent: a number, or a non-empty string of ASCII
/// digits.
pub(crate) fn id_digits(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_u64()?.to_string(),
        _ => return None,
    };
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// A numeric id from JSON: a number, or a string of digits.
pub(crate) fn numeric_id(v: &Value) -> Option<u64> {
    id_digits(v)?.parse().ok()
}

/// The wait until the unix time (seconds) in header `name`, a rate limit's reset, capped at
/// [`MAX_RETRY_AFTER`].
pub(crate) fn unix_reset_wait(
    headers: &[(String, String)],
    name: &str,
    now: SystemTime,
) -> Option<Duration> {
    let reset: u64 = header_value(headers, name)?.trim().parse().ok()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)).min(MAX_RETRY_AFTER))
}

// ---------------------------------------------------------------------------------------------
// The adapter
// ---------------------------------------------------------------------------------------------

/// One help desk's API as pure request builders and answer parsers: what each help desk
/// module implements. Operations a help desk does not have keep the default, which says so
/// (`None` for a request, the neutral answer for a parser); [`Capabilities`] tells the ticket
/// lifecycle what to expect.
///
/// `now` is the unix time in seconds, for signatures and timestamps in bodies (a parameter so
/// builders stay pure and tests deterministic). Parsers get the status, the headers (names in
/// lower case) and the body.
pub(crate) trait Api: fmt::Debug + Send + Sync {
    /// What this help desk supports; by default what a ticket system does: find the open
    /// ticket of a key, read its status, reopen and reprioritise it apart from comments, and
    /// leave closing to people.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            find_open: true,
            read_status: true,
            separate_state_changes: true,
            resolve_on_close: false,
        }
    }

    /// The markup of ticket bodies and comments.
    fn body_format(&self) -> BodyFormat;

    /// Creates a ticket: `c` gives the title, priority and metadata, `body` the text rendered
    /// in [`Api::body_format`]. The request must carry the fingerprint where
    /// [`Api::find_open_request`] looks for it.
    fn create_request(&self, c: &TicketContent, body: &str, now: u64) -> HttpRequest;

    /// Reads the answer to [`Api::create_request`].
    fn parse_create(
        &self,
        c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError>;

    /// Follow-ups of a successful create, in order, each answer read by [`Api::parse_ok`]
    /// (Zammad: add the dedup tag; when it fails the create is retried, and the retry finds
    /// nothing and creates again... so help desks that can carry the key in the create itself
    /// must do so).
    fn after_create_requests(&self, _t: &TicketRef, _c: &TicketContent) -> Vec<HttpRequest> {
        Vec::new()
    }

    /// Reads a just-created ticket back to verify what the help desk stored (RT drops custom
    /// field values silently).
    fn read_back_request(&self, _t: &TicketRef) -> Option<HttpRequest> {
        None
    }

    /// Reads the answer to [`Api::read_back_request`]: `Blocked` when the help desk did not
    /// store what [`Api::create_request`] sent for `c`.
    fn parse_read_back(
        &self,
        _t: &TicketRef,
        _c: &TicketContent,
        _status: u16,
        _headers: &[(String, String)],
        _body: &[u8],
    ) -> Result<(), DeliveryError> {
        Ok(())
    }

    /// Adds `text` to ticket `t` as an internal note where the help desk has them.
    fn comment_request(
        &self,
        t: &TicketRef,
        c: &TicketContent,
        kind: UpdateKind,
        text: &str,
        now: u64,
    ) -> HttpRequest;

    /// Searches the open ticket carrying `fingerprint`.
    fn find_open_request(&self, _fingerprint: &str) -> Option<HttpRequest> {
        None
    }

    /// Reads the answer to [`Api::find_open_request`]: the oldest open ticket whose stored
    /// key equals `fingerprint` exactly (searches are often case-insensitive or fuzzy).
    fn parse_find_open(
        &self,
        _fingerprint: &str,
        _status: u16,
        _headers: &[(String, String)],
        _body: &[u8],
    ) -> Result<Option<TicketRef>, DeliveryError> {
        Ok(None)
    }

    /// Reads a ticket's status.
    fn status_request(&self, _t: &TicketRef) -> Option<HttpRequest> {
        None
    }

    /// Reads the answer to [`Api::status_request`].
    fn parse_status(
        &self,
        _status: u16,
        _headers: &[(String, String)],
        _body: &[u8],
    ) -> Result<TicketStatus, DeliveryError> {
        Ok(TicketStatus::Open)
    }

    /// Reopens a closed ticket; `None` where the help desk cannot (the comment alone is
    /// sent).
    fn reopen_request(&self, t: &TicketRef, now: u64) -> Option<HttpRequest>;

    /// Sets a ticket's priority; `None` where the help desk cannot.
    fn set_priority_request(&self, t: &TicketRef, p: Priority, now: u64) -> Option<HttpRequest>;

    /// Resolves the ticket because the incident was closed locally (PagerDuty); `None` for
    /// help desks where people close tickets.
    fn resolve_request(
        &self,
        _t: &TicketRef,
        _c: &TicketContent,
        _now: u64,
    ) -> Option<HttpRequest> {
        None
    }

    /// Classifies an answer by its status: `Ok` on success, else `Retry` or `Blocked` with the
    /// help desk's message, rate-limit wait and hints. The shared [`classify`] by default; help
    /// desks with their own error shapes or rate-limit headers override it.
    fn classify_answer(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        classify(status, headers, body)
    }

    /// A successful answer's JSON body: [`Api::classify_answer`], then a body that is not
    /// JSON is unexpected. The first step of most parsers.
    fn json_answer(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Value, DeliveryError> {
        self.classify_answer(status, headers, body)?;
        json_body(body)
    }

    /// Reads the answer to a comment, reopen, priority, resolve or follow-up request.
    fn parse_ok(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        self.classify_answer(status, headers, body)
    }

    /// A harmless authenticated call that proves the URL, the credentials and the help desk's
    /// setup (`sentinela helpdesk test`, start-up). `None` when nothing can be checked without
    /// sending an event (webhook, PagerDuty).
    fn check_request(&self) -> Option<HttpRequest> {
        None
    }

    /// Reads the answer to [`Api::check_request`]; returns follow-up requests whose answers go
    /// to [`Api::parse_check_field`].
    fn parse_check(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<HttpRequest>, DeliveryError> {
        classify(status, headers, body).map(|()| Vec::new())
    }

    /// Reads the answer to a follow-up of [`Api::parse_check`].
    fn parse_check_field(
        &self,
        _status: u16,
        _headers: &[(String, String)],
        _body: &[u8],
    ) -> Result<(), DeliveryError> {
        Ok(())
    }

    /// Help desks with login sessions (GLPI): the request that opens one, when none is open.
    /// Builders use the open session; [`Adapter`] opens one before the first request and
    /// again after a 401.
    fn open_session_request(&self) -> Option<HttpRequest> {
        None
    }

    /// Reads the answer to [`Api::open_session_request`] and keeps the session.
    fn parse_open_session(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        classify(status, headers, body)
    }

    /// Forgets the session, returning the request that ends it on the server (`None` when
    /// there is none).
    fn close_session_request(&self) -> Option<HttpRequest> {
        None
    }

    /// Values derived from the secrets that messages must not show either (an encoded basic
    /// authorization, which decodes to the token): [`Adapter`] scrubs them from its errors,
    /// before the secrets themselves.
    fn derived_secrets(&self) -> Vec<Secret> {
        Vec::new()
    }
}

/// The secrets of one `[[helpdesk]]` entry, read by reference from the environment or files.
#[derive(Debug, Clone, Default)]
pub(crate) struct Secrets {
    /// `token_env` / `token_file`: the API token, password or routing key.
    pub(crate) token: Option<Secret>,
    /// `hmac_secret_env` / `hmac_secret_file` (webhook).
    pub(crate) hmac: Option<Secret>,
    /// `app_token_env` / `app_token_file` (GLPI).
    pub(crate) app_token: Option<Secret>,
}

impl Secrets {
    fn all(&self) -> Vec<Secret> {
        [&self.token, &self.hmac, &self.app_token]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// A configured help desk: its `Api` behind the shared rate limit, timeout, logging and
/// error context.
#[derive(Debug, Clone)]
pub struct Adapter {
    common: Common,
    kind: HelpdeskKind,
    api: Arc<dyn Api>,
}

/// What a help desk can do beyond receiving events; the ticket lifecycle adapts to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// It can find the open ticket of a fingerprint (dedup after a lost state).
    pub find_open: bool,
    /// It can tell whether a ticket is still open (reopen logic). Without it, tickets are
    /// always considered open.
    pub read_status: bool,
    /// Reopen and priority changes are separate operations from the comment that explains
    /// them. When false (webhook), a comment of kind `Reopen`/`Escalation` already carries
    /// the change, and sending `reopen`/`set_priority` as well would deliver two events.
    pub separate_state_changes: bool,
    /// Tickets are resolved by sentinela when the incident closes locally (PagerDuty, where
    /// an open alert keeps paging); elsewhere people close tickets.
    pub resolve_on_close: bool,
}

impl Adapter {
    /// Validates `cfg`, reads its secrets and builds the adapter.
    pub fn from_config(cfg: &HelpdeskConfig) -> Result<Adapter, String> {
        cfg.validate()?;
        let secrets = Secrets {
            token: cfg.secret()?.map(Secret),
            hmac: cfg.hmac_secret()?.map(Secret),
            app_token: cfg.app_token()?.map(Secret),
        };
        Adapter::build(cfg, secrets)
    }

    /// Like [`Adapter::from_config`], but with placeholder secrets instead of reading them, for
    /// the dry run on a machine without the secrets: requests show the same shape, with the
    /// token redacted (and a signature made with the placeholder key).
    pub fn for_dry_run(cfg: &HelpdeskConfig) -> Result<Adapter, String> {
        cfg.validate()?;
        let placeholder =
            |env: bool, file: bool, what: &str| (env || file).then(|| Secret(format!("<{what}>")));
        let secrets = Secrets {
            token: placeholder(cfg.token_env.is_some(), cfg.token_file.is_some(), "token"),
            hmac: placeholder(
                cfg.hmac_secret_env.is_some(),
                cfg.hmac_secret_file.is_some(),
                "hmac secret",
            ),
            app_token: placeholder(
                cfg.app_token_env.is_some(),
                cfg.app_token_file.is_some(),
                "app token",
            ),
        };
        Adapter::build(cfg, secrets)
    }

    fn build(cfg: &HelpdeskConfig, secrets: Secrets) -> Result<Adapter, String> {
        let configured = secrets.all();
        let kind = *cfg.kind.get_ref();
        let api: Arc<dyn Api> = match kind {
            HelpdeskKind::Rt => Arc::new(rt::Rt::new(cfg, secrets)?),
            HelpdeskKind::Webhook => Arc::new(webhook::Webhook::new(cfg, secrets)?),
            HelpdeskKind::Zammad => Arc::new(zammad::Zammad::new(cfg, secrets)?),
            HelpdeskKind::Glpi => Arc::new(glpi::Glpi::new(cfg, secrets)?),
            HelpdeskKind::Jira => Arc::new(jira::Jira::new(cfg, secrets)?),
            HelpdeskKind::Zendesk => Arc::new(zendesk::Zendesk::new(cfg, secrets)?),
            HelpdeskKind::Freshdesk => Arc::new(freshdesk::Freshdesk::new(cfg, secrets)?),
            HelpdeskKind::Servicenow => Arc::new(servicenow::Servicenow::new(cfg, secrets)?),
            HelpdeskKind::Redmine => Arc::new(redmine::Redmine::new(cfg, secrets)?),
            HelpdeskKind::Gitlab => Arc::new(gitlab::Gitlab::new(cfg, secrets)?),
            HelpdeskKind::Pagerduty => Arc::new(pagerduty::Pagerduty::new(cfg, secrets)?),
        };
        let mut scrubbed = api.derived_secrets();
        scrubbed.extend(configured);
        let common = Common::new(cfg, scrubbed);
        Ok(Adapter { common, kind, api })
    }

    /// The help desk's configured name.
    pub fn name(&self) -> &str {
        &self.common.name
    }

    /// Which kind of help desk this is.
    pub fn kind(&self) -> HelpdeskKind {
        self.kind
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.common.timeout
    }

    /// What this help desk supports.
    pub fn capabilities(&self) -> Capabilities {
        self.api.capabilities()
    }

    /// The markup of ticket bodies and comments for this help desk.
    pub fn body_format(&self) -> BodyFormat {
        self.api.body_format()
    }

    // --- builders (pure) ---------------------------------------------------------------------

    /// Creates a ticket: `c` gives the title, priority and metadata, `body` the text rendered
    /// in [`Adapter::body_format`].
    pub fn create_request(&self, c: &TicketContent, body: &str) -> HttpRequest {
        self.api.create_request(c, body, unix_now())
    }

    /// Follow-ups of a successful create (Zammad's tag), in order.
    pub fn after_create_requests(&self, t: &TicketRef, c: &TicketContent) -> Vec<HttpRequest> {
        self.api.after_create_requests(t, c)
    }

    /// Reads a just-created ticket back to verify what the help desk stored (RT drops
    /// custom field values silently); `None` when there is nothing to read back.
    pub fn read_back_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        self.api.read_back_request(t)
    }

    /// Adds `text` to ticket `t` (an internal note where the help desk has them; webhook: an
    /// event whose `action` follows `kind`).
    pub fn comment_request(
        &self,
        t: &TicketRef,
        c: &TicketContent,
        kind: UpdateKind,
        text: &str,
    ) -> HttpRequest {
        self.api.comment_request(t, c, kind, text, unix_now())
    }

    /// Searches the open ticket of a fingerprint; `None` when the help desk cannot search.
    pub fn find_open_request(&self, fingerprint: &str) -> Option<HttpRequest> {
        self.api.find_open_request(fingerprint)
    }

    /// Reads a ticket's status; `None` when the help desk cannot tell (always open).
    pub fn status_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        self.api.status_request(t)
    }

    /// Reopens a closed ticket (webhook: a `reopen` event); `None` where the help desk cannot.
    pub fn reopen_request(&self, t: &TicketRef) -> Option<HttpRequest> {
        self.api.reopen_request(t, unix_now())
    }

    /// Sets a ticket's priority (webhook: an `escalate` event); `None` where the help desk
    /// cannot.
    pub fn set_priority_request(&self, t: &TicketRef, p: Priority) -> Option<HttpRequest> {
        self.api.set_priority_request(t, p, unix_now())
    }

    /// Resolves a ticket whose incident was closed locally; `None` where people close
    /// tickets.
    pub fn resolve_request(&self, t: &TicketRef, c: &TicketContent) -> Option<HttpRequest> {
        self.api.resolve_request(t, c, unix_now())
    }

    /// A harmless authenticated call that proves the URL, the token and the help desk's setup
    /// (RT: `GET /REST/2.0/queue/<queue>`). `None` for a webhook: any POST to it is an event,
    /// so nothing can be checked without sending one.
    pub fn check_request(&self) -> Option<HttpRequest> {
        self.api.check_request()
    }

    /// The request that opens a login session, for help desks that have them (GLPI).
    pub fn open_session_request(&self) -> Option<HttpRequest> {
        self.api.open_session_request()
    }

    // --- parsers (pure) ----------------------------------------------------------------------

    /// Reads the answer to [`Adapter::create_request`]. A webhook has no ticket ids: the
    /// reference is the fingerprint of `c`.
    pub fn parse_create(
        &self,
        c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketRef, DeliveryError> {
        self.api
            .parse_create(c, status, headers, body)
            .map_err(|e| self.common.context("create ticket", e))
    }

    /// Reads the answer to [`Adapter::read_back_request`]: `Blocked` when the help desk did
    /// not store what [`Adapter::create_request`] sent for `c`.
    pub fn parse_read_back(
        &self,
        t: &TicketRef,
        c: &TicketContent,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        self.api
            .parse_read_back(t, c, status, headers, body)
            .map_err(|e| self.common.context("verify created ticket", e))
    }

    /// Reads the answer to [`Adapter::find_open_request`]: the oldest open ticket whose stored
    /// fingerprint equals `fingerprint` exactly.
    pub fn parse_find_open(
        &self,
        fingerprint: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Option<TicketRef>, DeliveryError> {
        self.api
            .parse_find_open(fingerprint, status, headers, body)
            .map_err(|e| self.common.context("find open ticket", e))
    }

    /// Reads the answer to [`Adapter::status_request`].
    pub fn parse_status(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<TicketStatus, DeliveryError> {
        self.api
            .parse_status(status, headers, body)
            .map_err(|e| self.common.context("read ticket status", e))
    }

    /// Reads the answer to a comment, reopen, priority or resolve request. RT answers 200 even
    /// when it refused a change, with the refusal as a message: those are `Blocked`.
    pub fn parse_ok(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        self.api
            .parse_ok(status, headers, body)
            .map_err(|e| self.common.context("update ticket", e))
    }

    /// Reads the answer to [`Adapter::check_request`]; returns the follow-up requests to make
    /// (RT: each custom field, whose answers go to [`Adapter::parse_check_field`]).
    pub fn parse_check(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<HttpRequest>, DeliveryError> {
        self.api
            .parse_check(status, headers, body)
            .map_err(|e| self.common.context("check", e))
    }

    /// Reads the answer to a follow-up of [`Adapter::parse_check`].
    pub fn parse_check_field(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        self.api
            .parse_check_field(status, headers, body)
            .map_err(|e| self.common.context("check custom field", e))
    }

    /// Reads the answer to [`Adapter::open_session_request`] and keeps the session.
    pub fn parse_open_session(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), DeliveryError> {
        self.api
            .parse_open_session(status, headers, body)
            .map_err(|e| self.common.context("open session", e))
    }

    // --- build + send + parse ----------------------------------------------------------------

    /// Sends one request, behind the rate limit and timeout, with the error in context.
    async fn send_one(
        &self,
        client: &reqwest::Client,
        op: &str,
        req: &HttpRequest,
    ) -> Result<Response, DeliveryError> {
        let common = &self.common;
        common.limiter.until_ready().await;
        let started = std::time::Instant::now();
        let r = send_with_timeout(client, req, Some(common.timeout)).await;
        // Method and status only: URLs can carry secrets (webhook addresses), bodies carry
        // incident details.
        match &r {
            Ok((status, _, _)) => tracing::debug!(
                helpdesk = %common.name,
                op,
                method = %req.method,
                status,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "help desk answered"
            ),
            Err(_) => tracing::debug!(
                helpdesk = %common.name,
                op,
                method = %req.method,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "help desk request failed"
            ),
        }
        r.map_err(|e| common.context(op, e))
    }

    /// Opens a login session when the help desk has them and none is open.
    async fn ensure_session(&self, client: &reqwest::Client) -> Result<(), DeliveryError> {
        if let Some(req) = self.api.open_session_request() {
            let (s, h, b) = self.send_one(client, "open session", &req).await?;
            self.parse_open_session(s, &h, &b)?;
        }
        Ok(())
    }

    /// Builds a request (after opening a session where needed: builders embed it) and sends
    /// it; `Ok(None)` when the help desk has no such request. A 401 on a session-based help
    /// desk means the session expired: it is opened again and the request rebuilt and sent
    /// once more.
    async fn exec(
        &self,
        client: &reqwest::Client,
        op: &str,
        build: impl Fn() -> Option<HttpRequest>,
    ) -> Result<Option<Response>, DeliveryError> {
        self.ensure_session(client).await?;
        let Some(req) = build() else {
            return Ok(None);
        };
        let r = self.send_one(client, op, &req).await?;
        if r.0 == 401 && self.api.close_session_request().is_some() {
            self.ensure_session(client).await?;
            let Some(req) = build() else {
                return Ok(None);
            };
            return self.send_one(client, op, &req).await.map(Some);
        }
        Ok(Some(r))
    }

    /// [`Adapter::exec`] for a request every help desk has.
    async fn exec_always(
        &self,
        client: &reqwest::Client,
        op: &str,
        build: impl Fn() -> HttpRequest,
    ) -> Result<Response, DeliveryError> {
        let r = self.exec(client, op, || Some(build())).await?;
        Ok(r.expect("the builder always builds"))
    }

    /// Ends the login session, if one is open (GLPI: `killSession`), so sessions do not pile
    /// up on the server between bursts of work. Failures are only logged: the server expires
    /// sessions on its own.
    pub async fn end_session(&self, client: &reqwest::Client) {
        if let Some(req) = self.api.close_session_request() {
            match self.send_one(client, "close session", &req).await {
                Ok((s, h, b)) => {
                    if let Err(e) = self.api.parse_ok(s, &h, &b) {
                        tracing::debug!(helpdesk = %self.common.name, error = %e, "closing the session failed");
                    }
                }
                Err(e) => {
                    tracing::debug!(helpdesk = %self.common.name, error = %e, "closing the session failed")
                }
            }
        }
    }

    /// Sends `build`'s request, if the help desk has it, and reads the answer with
    /// [`Adapter::parse_ok`].
    async fn exec_ok(
        &self,
        client: &reqwest::Client,
        op: &str,
        build: impl Fn() -> Option<HttpRequest>,
    ) -> Result<(), DeliveryError> {
        let Some((s, h, b)) = self.exec(client, op, build).await? else {
            return Ok(());
        };
        self.api
            .parse_ok(s, &h, &b)
            .map_err(|e| self.common.context(op, e))
    }

    /// Creates a ticket, sends the help desk's follow-ups (Zammad's tag) and, where the help
    /// desk may drop data silently (RT), reads it back and verifies the fingerprint and
    /// severity were stored (`Blocked` otherwise, naming the ticket). A failed follow-up or
    /// read-back is `Retry`: the ticket exists, so the retry must start with
    /// [`Adapter::find_open`], which finds it by its fingerprint.
    pub async fn create(
        &self,
        client: &reqwest::Client,
        c: &TicketContent,
        body: &str,
    ) -> Result<TicketRef, DeliveryError> {
        let (s, h, b) = self
            .exec_always(client, "create ticket", || self.create_request(c, body))
            .await?;
        let t = self.parse_create(c, s, &h, &b)?;
        let follow = self.after_create_requests(&t, c).len();
        for i in 0..follow {
            let op = format!("complete created ticket {}", t.0);
            self.exec_ok(client, &op, || {
                self.after_create_requests(&t, c).into_iter().nth(i)
            })
            .await?;
        }
        let op = format!("verify created ticket {}", t.0);
        if let Some((s, h, b)) = self
            .exec(client, &op, || self.read_back_request(&t))
            .await?
        {
            self.parse_read_back(&t, c, s, &h, &b)?;
        }
        Ok(t)
    }

    /// Adds a comment (see [`Adapter::comment_request`]).
    pub async fn comment(
        &self,
        client: &reqwest::Client,
        t: &TicketRef,
        c: &TicketContent,
        kind: UpdateKind,
        text: &str,
    ) -> Result<(), DeliveryError> {
        self.exec_ok(client, "comment", || {
            Some(self.comment_request(t, c, kind, text))
        })
        .await
    }

    /// Finds the open ticket of a fingerprint (`None` when there is none or the help desk
    /// cannot search).
    pub async fn find_open(
        &self,
        client: &reqwest::Client,
        fingerprint: &str,
    ) -> Result<Option<TicketRef>, DeliveryError> {
        match self
            .exec(client, "find open ticket", || {
                self.find_open_request(fingerprint)
            })
            .await?
        {
            Some((s, h, b)) => self.parse_find_open(fingerprint, s, &h, &b),
            None => Ok(None),
        }
    }

    /// Whether a ticket is open (always `Open` when the help desk cannot tell).
    pub async fn status(
        &self,
        client: &reqwest::Client,
        t: &TicketRef,
    ) -> Result<TicketStatus, DeliveryError> {
        match self
            .exec(client, "read ticket status", || self.status_request(t))
            .await?
        {
            Some((s, h, b)) => self.parse_status(s, &h, &b),
            None => Ok(TicketStatus::Open),
        }
    }

    /// Reopens a ticket (nothing where the help desk cannot: the comment that follows says
    /// it recurred).
    pub async fn reopen(
        &self,
        client: &reqwest::Client,
        t: &TicketRef,
    ) -> Result<(), DeliveryError> {
        self.exec_ok(client, "reopen ticket", || self.reopen_request(t))
            .await
    }

    /// Sets a ticket's priority (nothing where the help desk cannot).
    pub async fn set_priority(
        &self,
        client: &reqwest::Client,
        t: &TicketRef,
        p: Priority,
    ) -> Result<(), DeliveryError> {
        self.exec_ok(client, "set priority", || self.set_priority_request(t, p))
            .await
    }

    /// Resolves a ticket whose incident was closed locally (nothing where people close
    /// tickets).
    pub async fn resolve(
        &self,
        client: &reqwest::Client,
        t: &TicketRef,
        c: &TicketContent,
    ) -> Result<(), DeliveryError> {
        self.exec_ok(client, "resolve ticket", || self.resolve_request(t, c))
            .await
    }

    /// Checks the help desk at start-up and in `sentinela helpdesk test`: URL, credentials,
    /// and what the help desk needs set up (RT: the queue and its custom fields). A webhook
    /// has nothing to check without sending an event: `Ok`. Ends the session it opened.
    pub async fn check(&self, client: &reqwest::Client) -> Result<(), DeliveryError> {
        let r = self.check_inner(client).await;
        self.end_session(client).await;
        r
    }

    async fn check_inner(&self, client: &reqwest::Client) -> Result<(), DeliveryError> {
        let Some((s, h, b)) = self.exec(client, "check", || self.check_request()).await? else {
            return Ok(());
        };
        let follow = self.parse_check(s, &h, &b)?;
        for req in &follow {
            let (s, h, b) = self
                .exec_always(client, "check custom field", || req.clone())
                .await?;
            self.parse_check_field(s, &h, &b)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Sending and classifying
// ---------------------------------------------------------------------------------------------

/// A client for help desks: rustls, our user agent, and no redirects. A redirect is answered
/// with `Blocked` instead of followed: following would turn a POST into a GET (losing the
/// ticket) or carry the token to another host; the fix is to configure the final URL.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Executes `req` with the client's own timeouts. The help desk's answer is returned whatever
/// its status (parsers classify it); only failures to get an answer are errors, all `Retry`
/// except a request that cannot be built (`Blocked`).
pub async fn send(client: &reqwest::Client, req: &HttpRequest) -> Result<Response, DeliveryError> {
    send_with_timeout(client, req, None).await
}

/// [`send`] with a deadline over the whole exchange (connect, request, the whole answer).
pub async fn send_with_timeout(
    client: &reqwest::Client,
    req: &HttpRequest,
    timeout: Option<Duration>,
) -> Result<Response, DeliveryError> {
    match timeout {
        None => send_inner(client, req).await,
        Some(t) => match tokio::time::timeout(t, send_inner(client, req)).await {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::Retry {
                message: format!(
                    "no complete answer within {}",
                    humantime::format_duration(t)
                ),
                retry_after: None,
            }),
        },
    }
}

async fn send_inner(
    client: &reqwest::Client,
    req: &HttpRequest,
) -> Result<Response, DeliveryError> {
    let method =
        reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|_| DeliveryError::Blocked {
            message: format!("invalid HTTP method {:?}", req.method),
        })?;
    let mut b = client.request(method, &req.url);
    for h in &req.headers {
        b = b.header(&h.name, &h.value);
    }
    if let Some(body) = &req.body {
        b = b.body(body.clone());
    }
    let mut resp = b.send().await.map_err(net_error)?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(net_error)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(DeliveryError::Blocked {
                message: format!(
                    "HTTP {status}: answer larger than {} MiB, refused",
                    MAX_RESPONSE_BYTES / (1024 * 1024)
                ),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, body))
}

/// A transport failure: the request could not be built (`Blocked`), or there was no
/// (complete) answer (`Retry`). The URL is left out of the message (webhook URLs may carry
/// secrets); the causes are kept (`connection refused`, `connection reset`...).
fn net_error(e: reqwest::Error) -> DeliveryError {
    let builder = e.is_builder();
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    if builder {
        DeliveryError::Blocked {
            message: format!("cannot build the request: {msg}"),
        }
    } else {
        DeliveryError::Retry {
            message: if timeout {
                format!("timed out: {msg}")
            } else {
                msg
            },
            retry_after: None,
        }
    }
}

/// The first value of a header (names compared without case).
pub fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `Retry-After` as a wait from `now`: delay-seconds or an HTTP date (a date in the past is no
/// wait), capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &[(String, String)], now: SystemTime) -> Option<Duration> {
    let v = header_value(headers, "retry-after")?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    // IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) is RFC 2822 syntax.
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let when = SystemTime::from(when);
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// Classifies a non-success answer; `Ok` for 2xx.
///
/// - 408, 425, 429, 5xx: `Retry` (with `Retry-After` when given);
/// - 3xx: `Blocked` (we do not follow redirects: configure the final URL);
/// - other 4xx (400 validation, 401, 403, 404, 415, 422...): `Blocked`, quoting the help
///   desk's message (truncated).
pub fn classify(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), DeliveryError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut message = format!("HTTP {status} {reason}").trim_end().to_string();
    if let Some(m) = server_message(body) {
        message.push_str(": ");
        message.push_str(&m);
    }
    if matches!(status, 408 | 425 | 429) || status >= 500 {
        return Err(DeliveryError::Retry {
            message,
            retry_after: retry_after(headers, SystemTime::now()),
        });
    }
    if (300..400).contains(&status) {
        if let Some(loc) = header_value(headers, "location") {
            message.push_str(&format!(
                " (redirect to {}; redirects are not followed: set `url` to the final address)",
                clean_text(loc)
            ));
        }
    }
    Err(DeliveryError::Blocked { message })
}

/// The help desk's own explanation in an error body: a JSON `message` (RT), `error`, `detail`
/// or `errors`, a JSON array of messages, an HTML page's title, else the text itself;
/// truncated and stripped of control characters.
pub fn server_message(body: &[u8]) -> Option<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let pick = |v: &serde_json::Value| -> Option<String> {
            match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Array(a) => {
                    let parts: Vec<String> = a
                        .iter()
                        .map(|x| match x {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    Some(parts.join("; "))
                }
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        let found = match &v {
            serde_json::Value::Object(o) => ["message", "error", "detail", "errors"]
                .iter()
                .find_map(|k| o.get(*k).and_then(pick)),
            serde_json::Value::Array(_) => pick(&v),
            _ => None,
        };
        let text = found.unwrap_or_else(|| v.to_string());
        return Some(clean_text(&text));
    }
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    if lower.trim_start().starts_with('<') {
        let title = lower
            .find("<title>")
            .and_then(|i| lower[i + 7..].find("</title>").map(|j| (i + 7, i + 7 + j)))
            .map(|(a, b)| text[a..b].to_string());
        return Some(match title {
            Some(t) => format!("(HTML page) {}", clean_text(&t)),
            None => "(HTML page)".into(),
        });
    }
    Some(clean_text(&text))
}

/// One line, no control characters, at most [`MAX_MESSAGE_CHARS`] characters.
pub(crate) fn clean_text(s: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    let mut last_space = false;
    for c in s.trim().chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        if n == MAX_MESSAGE_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
        n += 1;
    }
    out
}

/// `Blocked` for an answer that is not what the help desk documents (a proxy's page, a
/// different API version).
pub(crate) fn unexpected(what: &str, body: &[u8]) -> DeliveryError {
    let shown = server_message(body).unwrap_or_else(|| "(empty body)".into());
    DeliveryError::Blocked {
        message: format!("unexpected answer ({what}): {shown}"),
    }
}

/// What the unit tests of the help desk modules share.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;

    use super::{HelpdeskConfig, Secret, Secrets};
    use crate::policy::Priority;
    use crate::ticket::TicketContent;

    /// The config of the first entry of `text`.
    pub(crate) fn config(text: &str) -> HelpdeskConfig {
        #[derive(Debug, serde::Deserialize)]
        struct File {
            helpdesk: Vec<HelpdeskConfig>,
        }
        let mut f: File = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        f.helpdesk.remove(0)
    }

    /// The problems of the first entry of `text`, as `line:column: message` (only the message
    /// when the problem has no location).
    pub(crate) fn problems_of(text: &str) -> Vec<String> {
        config(text)
            .problems()
            .into_iter()
            .map(|(span, m)| match span {
                Some(s) => {
                    let l = crate::error::Location::from_offset(Path::new("c.toml"), text, s.start);
                    format!("{}:{}: {m}", l.line, l.column)
                }
                None => m,
            })
            .collect()
    }

    /// Asserts that the problems of `text` include `want`.
    pub(crate) fn assert_problem(text: &str, want: &str) {
        let got = problems_of(text).join("\n");
        assert!(
            got.contains(want),
            "config:\n{text}\n got: {got}\nwant: {want}"
        );
    }

    /// Secrets with only the token `token`.
    pub(crate) fn token(token: &str) -> Secrets {
        Secrets {
            token: Some(Secret(token.into())),
            ..Secrets::default()
        }
    }

    /// An incident with `fingerprint`, `title` and `priority`, and nothing else.
    pub(crate) fn content(fingerprint: &str, title: &str, priority: Priority) -> TicketContent {
        TicketContent {
            fingerprint: fingerprint.into(),
            detector: "d".into(),
            title: title.into(),
            priority,
            severity: String::new(),
            category: String::new(),
            criticality: String::new(),
            count: 1,
            first_seen: String::new(),
            last_seen: String::new(),
            source: String::new(),
            fields: Default::default(),
            evidence: vec![],
            description: String::new(),
            response: String::new(),
            references: vec![],
            previous_ticket: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::problems_of;
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        helpdesk: Vec<Spanned<HelpdeskConfig>>,
    }

    /// `line:column` of a toml error, or the problems of the first entry.
    fn parse(text: &str) -> Result<Vec<HelpdeskConfig>, String> {
        let f: File = toml::from_str(text).map_err(|e| {
            let loc = crate::error::Location::from_span(Path::new("c.toml"), text, e.span());
            format!("{}:{}: {}", loc.line, loc.column, e.message())
        })?;
        Ok(f.helpdesk.into_iter().map(Spanned::into_inner).collect())
    }

    const RT: &str =
        "[[helpdesk]]\nname = \"rt\"\nkind = \"rt\"\nurl = \"https://rt.example.com\"\n\
                      token_env = \"RT_TOKEN\"\nqueue = \"Security\"\n";

    #[test]
    fn unknown_keys_bad_kinds_and_types_are_located() {
        let e = parse(&format!("{RT}qeue = \"x\"\n")).unwrap_err();
        assert!(e.starts_with("7:1: unknown field `qeue`"), "{e}");
        let e = parse("[[helpdesk]]\nname = \"a\"\nkind = \"jura\"\nurl = \"x\"\n").unwrap_err();
        assert!(
            e.starts_with("3:8: unknown variant `jura`, expected one of `rt`, `webhook`"),
            "{e}"
        );
        let e = parse(&format!("{RT}priority_map = {{ P5 = 1 }}\n")).unwrap_err();
        assert!(e.starts_with("7:18: unknown variant `P5`"), "{e}");
        let e = parse(&format!("{RT}priority_map = {{ P1 = true }}\n")).unwrap_err();
        assert!(e.contains("expected an integer or a string"), "{e}");
        let e = parse(&format!("{RT}timeout = \"soon\"\n")).unwrap_err();
        assert!(e.starts_with("7:11: invalid duration"), "{e}");
        let e = parse("[[helpdesk]]\nname = \"a\"\nurl = \"x\"\n").unwrap_err();
        assert!(e.contains("missing field `kind`"), "{e}");
    }

    #[test]
    fn defaults_and_valid_entries() {
        let c = &parse(RT).unwrap()[0];
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.fingerprint_field(), "SentinelaFingerprint");
        assert_eq!(c.severity_field(), Some("Severity"));
        assert_eq!(c.rt_priorities(), [90, 70, 50, 30]);
        assert_eq!(c.requests_per_second(), 5);
        assert_eq!(c.timeout, Duration::from_secs(10));
        let c = &parse(&format!(
            "{RT}severity_field = \"\"\npriority_map = {{ P1 = 100 }}\ntimeout = \"3s\"\n"
        ))
        .unwrap()[0];
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.severity_field(), None);
        assert_eq!(c.rt_priorities(), [100, 70, 50, 30]);
        let w = &parse(
            "[[helpdesk]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://h.example/x\"\n\
             priority_map = { P1 = \"urgent\", P4 = 1 }\nheaders = { X-Team = \"sec\" }\n\
             body_template = '{\"text\": \"[{{priority}}] {{title}}\", \"n\": {{count}}}'\n",
        )
        .unwrap()[0];
        assert_eq!(w.validate(), Ok(()));
        assert_eq!(
            w.webhook_priorities(),
            [
                serde_json::json!("urgent"),
                serde_json::json!("P2"),
                serde_json::json!("P3"),
                serde_json::json!(1)
            ]
        );
    }

    #[test]
    fn problems_name_the_helpdesk_and_point_at_the_value() {
        let cases: &[(&str, &str)] = &[
            (
                "[[helpdesk]]\nname = \"rt\"\nkind = \"rt\"\nurl = \"https://rt.example.com\"\n",
                "3:8: helpdesk \"rt\": RT needs an auth token",
            ),
            (
                "[[helpdesk]]\nname = \"rt\"\nkind = \"rt\"\nurl = \"https://rt.example.com\"\ntoken_env = \"T\"\n",
                "3:8: helpdesk \"rt\": RT needs `queue`",
            ),
            (
                &format!("{RT}body_template = \"{{}}\"\n"),
                "7:17: helpdesk \"rt\": `body_template` does not apply to kind = \"rt\"",
            ),
            (
                "[[helpdesk]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"https://x\"\nqueue = \"S\"\n",
                "5:9: helpdesk \"w\": `queue` does not apply to kind = \"webhook\"",
            ),
            (
                &RT.replace("https://rt.example.com", "http://rt.example.com"),
                "4:7: helpdesk \"rt\": plain http:// to a remote host",
            ),
            (
                &RT.replace("https://rt.example.com", "https://u:p@rt.example.com"),
                "4:7: helpdesk \"rt\": `url` must not carry credentials",
            ),
            (
                &RT.replace("https://rt.example.com", "rt.example.com"),
                "4:7: helpdesk \"rt\": invalid `url` \"rt.example.com\"",
            ),
            (
                &RT.replace("token_env = \"RT_TOKEN\"", "token_env = \"1-22-abcdef\""),
                "5:13: helpdesk \"rt\": `token_env` must name an environment variable",
            ),
            (
                &format!("{RT}token_file = \"/t\"\n"),
                "7:14: helpdesk \"rt\": set either `token_env` or `token_file`, not both",
            ),
            (
                &format!("{RT}priority_map = {{ P2 = \"high\" }}\n"),
                "7:23: helpdesk \"rt\": RT priorities are integers",
            ),
            (
                &format!("{RT}fingerprint_field = \"a}}b\"\n"),
                "7:21: helpdesk \"rt\": `fingerprint_field`: custom field name",
            ),
            (
                &format!("{RT}requests_per_second = 0\n"),
                "7:23: helpdesk \"rt\": `requests_per_second` must be 1 to 1000",
            ),
            (
                &RT.replace("name = \"rt\"", "name = \"my rt\""),
                "2:8: helpdesk \"my rt\": `name` must be",
            ),
            (
                "[[helpdesk]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"https://x\"\nheaders = { Authorization = \"Bearer x\" }\n",
                "5:29: helpdesk \"w\": header \"Authorization\" is set by sentinela",
            ),
            (
                "[[helpdesk]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"https://x\"\nbody_template = '{\"a\": {{title}'\n",
                "5:17: helpdesk \"w\": `body_template`: unterminated placeholder",
            ),
            (
                "[[helpdesk]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"https://x\"\nbody_template = '{\"a\": {{titel}}}'\n",
                "unknown placeholder {{titel}}",
            ),
            (
                "[[helpdesk]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"https://x\"\nbody_template = '{\"a\": {{title}} {{count}}}'\n",
                "`body_template`: not valid JSON after substitution",
            ),
        ];
        for (text, want) in cases {
            let got = problems_of(text).join("\n");
            assert!(
                got.contains(want),
                "config:\n{text}\n got: {got}\nwant: {want}"
            );
        }
    }

    #[test]
    fn secrets_are_read_trimmed_and_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cr3t-value\n").unwrap();
        let text = RT.replace(
            "token_env = \"RT_TOKEN\"",
            &format!("token_file = {:?}", file.display().to_string()),
        );
        let c = &parse(&text).unwrap()[0];
        assert_eq!(c.secret(), Ok(Some("s3cr3t-value".into())));
        std::fs::write(&file, "line1\nline2\n").unwrap();
        let e = c.secret().unwrap_err();
        assert!(e.contains("line break") && !e.contains("line1"), "{e}");
        std::fs::write(&file, "\n").unwrap();
        assert!(c.secret().unwrap_err().contains("is empty"));
        std::fs::remove_file(&file).unwrap();
        let e = c.secret().unwrap_err();
        assert!(
            e.contains(&file.display().to_string()) && e.contains("cannot read"),
            "{e}"
        );

        let var = "SENTINELA_ADAPTER_TEST_TOKEN_UNSET_42";
        let c = &parse(&RT.replace("RT_TOKEN", var)).unwrap()[0];
        let e = c.secret().unwrap_err();
        assert!(e.contains(var) && e.contains("is not set"), "{e}");
        let var = "SENTINELA_ADAPTER_TEST_TOKEN_SET_42";
        std::env::set_var(var, " env-secret ");
        let c = &parse(&RT.replace("RT_TOKEN", var)).unwrap()[0];
        assert_eq!(c.secret(), Ok(Some("env-secret".into())));
        assert_eq!(c.hmac_secret(), Ok(None));
        let a = Adapter::from_config(c).unwrap();
        assert!(!format!("{a:?}").contains("env-secret"));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let h = |v: &str| vec![("retry-after".to_string(), v.to_string())];
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784111777); // 1994-11-06 08:49:37Z
        assert_eq!(retry_after(&h("7"), now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&h("Sun, 06 Nov 1994 08:50:07 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&h("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&h("99999999"), now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&h("soon"), now), None);
        assert_eq!(retry_after(&[], now), None);
    }

    #[test]
    fn classification_and_messages() {
        let retry = |s: u16| matches!(classify(s, &[], b""), Err(DeliveryError::Retry { .. }));
        let blocked = |s: u16| matches!(classify(s, &[], b""), Err(DeliveryError::Blocked { .. }));
        assert!(classify(201, &[], b"").is_ok());
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retry(s), "{s}");
        }
        for s in [301, 400, 401, 403, 404, 409, 415, 422] {
            assert!(blocked(s), "{s}");
        }
        let e = classify(
            400,
            &[],
            br#"{"message":"Could not create ticket. Queue not set"}"#,
        );
        assert_eq!(
            e,
            Err(DeliveryError::Blocked {
                message: "HTTP 400 Bad Request: Could not create ticket. Queue not set".into()
            })
        );
        let long = "x".repeat(2000);
        let Err(DeliveryError::Blocked { message }) = classify(422, &[], long.as_bytes()) else {
            panic!()
        };
        assert!(message.chars().count() < 400, "{message}");
        assert_eq!(
            server_message(b"<html><head><title>502 Bad Gateway</title></head></html>"),
            Some("(HTML page) 502 Bad Gateway".into())
        );
        assert_eq!(server_message(b"[\"a\",\"b\"]"), Some("a; b".into()));
        assert_eq!(
            server_message(b"line\r\nbreak\x1b[31m"),
            Some("line break [31m".into())
        );
    }

    #[test]
    fn api_bases_are_normalised() {
        for url in [
            "https://z.example",
            "https://z.example/",
            "https://z.example/api/v1",
            "https://z.example/api/v1/",
        ] {
            assert_eq!(
                api_base(url, "/api/v1"),
                "https://z.example/api/v1",
                "{url}"
            );
        }
        assert_eq!(api_base("https://j.example//", ""), "https://j.example");
    }

    #[test]
    fn base64_follows_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn basic_credentials_are_user_colon_password() {
        // RFC 7617, section 2.
        assert_eq!(
            basic_credentials("Aladdin", "open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn titles_are_one_line_and_cut() {
        // Without `drop_invisible`, only line breaks and control characters go.
        assert_eq!(one_line(" a\r\nb\u{200b}c ", 100, false), "a b\u{200b}c");
        assert_eq!(
            one_line(" a\r\nb\t\tc \u{202e}d\u{200b}e ", 100, true),
            "a b c de"
        );
        let long = "é".repeat(300);
        let t = one_line(&long, 250, true);
        assert_eq!(t.chars().count(), 250);
        assert!(t.ends_with('…'));
        assert_eq!(one_line("abc", 3, true), "abc");
        assert_eq!(one_line("abcd", 3, true), "ab…");
    }

    #[test]
    fn one_line_text_is_cut_as_it_is() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("ab cd", 4), "ab …");
        assert_eq!(cut("abc", 0), "…");
    }

    #[test]
    fn create_fields_never_replace_ours_and_tags_are_merged() {
        let mut doc = Map::new();
        doc.insert("title".into(), json!("ours"));
        doc.insert("tags".into(), json!(["a", "b"]));
        let extra = json!({"title": "theirs", "tags": ["b", "c"], "type": "x"});
        merge_fields(&mut doc, extra.as_object().unwrap());
        assert_eq!(
            Value::Object(doc),
            json!({"title": "ours", "tags": ["a", "b", "c"], "type": "x"})
        );
        let mut doc = Map::new();
        doc.insert("tags".into(), json!("sentinela,sentinela-1"));
        merge_fields(
            &mut doc,
            json!({"tags": "ids, sentinela"}).as_object().unwrap(),
        );
        assert_eq!(doc["tags"], json!("sentinela,sentinela-1,ids"));
    }

    #[test]
    fn ids_and_emails() {
        assert_eq!(numeric_id(&json!(12)), Some(12));
        assert_eq!(numeric_id(&json!("12")), Some(12));
        assert_eq!(numeric_id(&json!("1/2")), None);
        assert_eq!(numeric_id(&json!(-1)), None);
        assert_eq!(id_digits(&json!("12")), Some("12".into()));
        assert_eq!(id_digits(&json!(12)), Some("12".into()));
        assert_eq!(id_digits(&json!("1/2")), None);
        assert!(looks_like_email("a.b+c@example.co"));
        for bad in [
            "a",
            "a@b",
            "@b.c",
            "a b@c.d",
            "a@b.c,d@e.f",
            "\"a\"@b.c",
            "a@.b",
        ] {
            assert!(!looks_like_email(bad), "{bad}");
        }
    }

    #[test]
    fn structured_payloads_redact_and_cut_log_text() {
        let mut c = crate::ticket::TicketContent {
            fingerprint: "f".into(),
            detector: "d".into(),
            title: "t".into(),
            priority: Priority::P3,
            severity: "high".into(),
            category: "c".into(),
            criticality: "normal".into(),
            count: 1,
            first_seen: String::new(),
            last_seen: String::new(),
            source: "s".into(),
            fields: BTreeMap::from([(
                "url.original".to_string(),
                "/login?user=bob&password=hunter2".to_string(),
            )]),
            evidence: vec![
                "GET /login?user=bob&password=hunter2 HTTP/1.1".into(),
                "x".repeat(5000),
            ],
            description: String::new(),
            response: String::new(),
            references: Vec::new(),
            previous_ticket: None,
        };
        let f = structured_fields(&c);
        assert!(
            !f["url.original"].as_str().unwrap().contains("hunter2"),
            "{f:?}"
        );
        let e = structured_evidence(&c, 10);
        assert!(
            !e[0].contains("hunter2") && e[0].contains("user=bob"),
            "{e:?}"
        );
        assert_eq!(e[1].chars().count(), crate::ticket::render::MAX_LINE_CHARS);
        assert_eq!(structured_evidence(&c, 1).len(), 1);
        for i in 0..80 {
            c.fields.insert(format!("k{i:02}"), "v".into());
        }
        assert_eq!(structured_fields(&c).len(), MAX_STRUCTURED_FIELDS);
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("a b'c/é~"), "a%20b%27c%2F%C3%A9~");
    }
}
