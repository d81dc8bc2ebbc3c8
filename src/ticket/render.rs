//! Ticket content: title, body and comments, escaped for each help desk's format, with
//! secrets redacted.
//!
//! Almost everything in a ticket comes from logs, and log content is attacker-controlled: a
//! user name, a URL or a user agent can carry markup, control characters, fake section
//! headings or template syntax, and a log line can carry someone's password. So every string
//! taken from a [`TicketContent`] goes through the same three steps, in this order:
//!
//! 1. [`redact`]: secrets become `<redacted>`. It runs on the raw text, before anything is
//!    cut, so a secret straddling a cut cannot half-survive.
//! 2. cleaning: characters that hide or disguise text (C0/C1 controls, ANSI escapes, bidi
//!    overrides, zero-width and other invisible characters) are replaced by a visible escape
//!    such as `\x1b` or `\u202e`, so an analyst sees that they were there; text that would
//!    forge our dedup marker is neutralised; long values are cut with a marker.
//! 3. escaping for the target format, at the very end, by one renderer per format.
//!
//! The body is first built as a small document model (`Block`s) and then rendered; the four
//! renderers never see raw content, and the size cap works on the model (dropping evidence
//! lines, then shortening values) so that the dedup marker is never cut off.
//!
//! This module is pure: no I/O, no clock.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{TicketContent, UpdateKind};

/// The markup a help desk expects in ticket bodies and comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// Plain text (Request Tracker, e-mail): only hidden characters are escaped.
    Plain,
    /// CommonMark / GitLab Flavored Markdown (GitLab, Redmine with the CommonMark formatter).
    Markdown,
    /// HTML (Zammad, Zendesk, Freshdesk, GLPI).
    Html,
    /// Atlassian Document Format (Jira Cloud): the ADF JSON document, as a string.
    Adf,
}

/// Customer-facing status text used when the config sets none. Placeholders: `{title}`,
/// `{first_seen}`, `{last_seen}`, `{priority}`, `{fingerprint}`.
pub const DEFAULT_STATUS_TEMPLATE: &str = "We detected a security event: {title}. \
It was first seen at {first_seen} and last seen at {last_seen}.\n\
Our security team is working on it now as a priority {priority} incident.\n\
We expect to resolve it within the response time agreed for {priority} incidents, \
and we will post updates on this ticket.\n\
If you have questions, reply to this ticket and quote reference {fingerprint}.";

/// The text that replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// Label of the dedup marker line (see [`fingerprint_marker`]).
pub const FINGERPRINT_LABEL: &str = "sentinela-fingerprint";

/// Bodies and comments are kept under this many bytes: help desks reject or truncate larger
/// ones (Zendesk comments stop at 64 KB). Bytes, not characters: it is the stricter bound.
pub const MAX_BODY_BYTES: usize = 60_000;

/// Titles (without the `[sentinela P2] ` prefix) are cut to this many characters; with the
/// prefix they stay under the 255 characters of GitLab and Jira summaries.
pub const MAX_TITLE_CHARS: usize = 200;

/// Evidence lines and field values are cut to this many characters.
pub const MAX_LINE_CHARS: usize = 1000;

/// Longer multi-line texts (description, playbook, note, status) are cut to this many
/// characters: a digest note can list many incidents.
const MAX_TEXT_CHARS: usize = 16_000;

/// At most this many fields are listed under "Who"; the rest are counted.
const MAX_FIELDS: usize = 50;

/// Comments show this many of the newest evidence lines.
const COMMENT_EVIDENCE_LINES: usize = 5;

/// Fields shown in their own place in the body, not again under "other fields".
const SHOWN_FIELDS: [&str; 5] = [
    "host.name",
    "service.name",
    "source.address",
    "source.ip",
    "user.name",
];

/// The dedup marker as it appears, on a line of its own, in every body format:
/// `sentinela-fingerprint: <hex>`. Adapters that find tickets by searching their text should
/// search for exactly this string; attacker text can never contain it (see the module docs).
pub fn fingerprint_marker(fingerprint: &str) -> String {
    format!("{FINGERPRINT_LABEL}: {fingerprint}")
}

/// The ticket title: `[sentinela P2] ` and the detector's rendered title on one line, with
/// secrets redacted, hidden characters escaped, whitespace (newlines included) collapsed and
/// the text cut to [`MAX_TITLE_CHARS`] characters with `…`. Help desks show titles as plain
/// text in lists and notification subjects, so nothing else is escaped here.
pub fn title(c: &TicketContent) -> String {
    format!("[sentinela {}] {}", c.priority, title_text(c))
}

/// The body of a new ticket, in `format` (for [`BodyFormat::Adf`], the ADF JSON document as a
/// string). `status_template` is the customer-facing status template
/// ([`DEFAULT_STATUS_TEMPLATE`] when `None`). Never longer than [`MAX_BODY_BYTES`].
pub fn body(c: &TicketContent, format: BodyFormat, status_template: Option<&str>) -> String {
    let p = Prepared::new(c, status_template.unwrap_or(DEFAULT_STATUS_TEMPLATE));
    fit(format, p.evidence.len(), &p, |lim| body_blocks(&p, lim))
}

/// A comment added to an existing ticket, in `format`. `note` is free text from the caller,
/// treated as untrusted (it may quote titles): for an escalation it says why the priority was
/// raised, for a digest it lists the incidents. Never longer than [`MAX_BODY_BYTES`].
pub fn comment(c: &TicketContent, kind: UpdateKind, format: BodyFormat, note: &str) -> String {
    let p = Prepared::new(c, "");
    let note = clean_text(note);
    let newest = p.evidence.len().saturating_sub(COMMENT_EVIDENCE_LINES);
    let evidence: Vec<String> = p.evidence[newest..].to_vec();
    fit(format, evidence.len(), &p, |lim| {
        comment_blocks(&p, kind, &note, &evidence, lim)
    })
}

/// Replaces secrets in `text` with `<redacted>`; borrows when nothing was found.
///
/// What is redacted, in this order:
/// - private key blocks, `-----BEGIN ... PRIVATE KEY-----` to the matching END (or to the end
///   of the text when the END line is not there);
/// - the password of URL credentials: `scheme://user:PASS@host` keeps the user name;
/// - `Authorization:` / `Proxy-Authorization:` values (the scheme word is kept), and a long
///   token after `Bearer`;
/// - tokens with a recognisable format: JWTs, AWS access key ids, GitHub, GitLab, Slack,
///   Stripe and Google API keys, Slack webhook paths;
/// - URL query parameters that carry credentials (`token`, `access_token`, `api_key`,
///   `apikey`, `key`, `secret`, `password`, `session`, `sid` and a few more);
/// - `password=...`, `passwd: ...`, `pwd=...`, `pass=...`, `"password":"..."` and keys ending
///   in those words (`db_password=`);
/// - a long secret-looking value (16+ characters of hex/base64 alphabet, with both a letter
///   and a digit) after a key ending in `secret`, `token` or `key`;
/// - `Cookie:` and `Set-Cookie:` header values.
///
/// Deliberately *not* redacted, because it is evidence an analyst needs and not a secret:
/// - the word "password" in prose (`Failed password for root from 1.2.3.4 port 22 ssh2`):
///   only a `=` or `:` separator followed by a value counts;
/// - `passwd:chauthtok` and similar `name:word` pairs without a space after the colon (PAM
///   service names, `pam_unix(passwd:chauthtok)`);
/// - `PWD=/home/bob` (sudo's working directory: a `pwd` value that starts with `/` or `~`);
/// - `using password: YES` (MySQL), and values `yes`, `no`, `true`, `false`, `null`, `none`
///   and `****`, which say whether there is a password, not what it is;
/// - SSH key fingerprints (`SHA256:...`, `MD5:aa:bb:...`) and public keys (`ssh-rsa AAAA...`):
///   the generic rule stops at `:` and needs 16 characters, so `key: SHA256:...` is kept;
/// - user names, addresses and hostnames.
///
/// Known gaps (false negatives): passwords on command lines (`mysql -phunter2`,
/// `sshpass -p x`), `user:pass` pairs outside URLs, secrets without a telling key word, and
/// an unencoded `@` inside a URL password (the part after it survives).
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for rule in RULES.iter() {
        // A closure that keeps an exception still makes `replace_all` allocate: compare, so
        // untouched text stays borrowed.
        let replaced = match rule
            .re
            .replace_all(&out, |caps: &Captures| (rule.replace)(caps))
        {
            Cow::Owned(s) if s != *out => Some(s),
            _ => None,
        };
        if let Some(s) = replaced {
            out = Cow::Owned(s);
        }
    }
    out
}

/// The customer-facing status text: `template` with `{title}`, `{first_seen}`, `{last_seen}`,
/// `{priority}` and `{fingerprint}` replaced, in one pass (a value that contains `{title}` is
/// not expanded again). Unknown `{...}` are kept as written so a typo shows. The result is
/// plain text with hidden characters escaped; formats escape it further. The title in it is
/// redacted like everywhere else; the template itself is the operator's and is not.
pub fn customer_status(c: &TicketContent, template: &str) -> String {
    let mut out = String::with_capacity(template.len() + 128);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after
            .find('}')
            .and_then(|close| placeholder(c, &after[..close]).map(|v| (close, v)));
        match value {
            Some((close, v)) => {
                out.push_str(&v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    cut(&sanitize_text(&out), MAX_TEXT_CHARS)
}

fn placeholder(c: &TicketContent, name: &str) -> Option<String> {
    Some(match name {
        "title" => title_text(c),
        "first_seen" => clean_value(&c.first_seen),
        "last_seen" => clean_value(&c.last_seen),
        "priority" => c.priority.to_string(),
        "fingerprint" => sanitize_line(&c.fingerprint),
        _ => return None,
    })
}

// ------------------------------------------------------------------------------------------
// Cleaning: redaction, hidden characters, the marker, cuts.

/// Characters that hide or disguise text: controls (except tab), bidi controls that reorder
/// what is shown (`\u{202e}` makes `exe.txt` read `txt.exe`), zero-width and other invisible
/// characters that make two different names look the same, line/paragraph separators that
/// break lines in some viewers, and Unicode tag characters (invisible ASCII look-alikes).
fn is_hidden(ch: char) -> bool {
    (ch.is_control() && ch != '\t')
        || matches!(
            ch,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// Pushes `ch`, or its visible escape when it is hidden: `\x1b`, `\u202e`, `\U000e0041` (no
/// braces, which Markdown and HTML would escape again). Escapes rather than deletes: an ANSI
/// sequence or an RTL override in a log line is itself evidence.
fn push_visible(out: &mut String, ch: char) {
    if is_hidden(ch) {
        let n = u32::from(ch);
        let _ = if n <= 0xff {
            write!(out, "\\x{n:02x}")
        } else if n <= 0xffff {
            write!(out, "\\u{n:04x}")
        } else {
            write!(out, "\\U{n:08x}")
        };
    } else {
        out.push(ch);
    }
}

/// One line with hidden characters escaped (newlines included) and the marker neutralised.
fn sanitize_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        push_visible(&mut out, ch);
    }
    neutralise_marker(out)
}

/// Multi-line text: lines kept (a trailing `\r` dropped), each sanitised.
fn sanitize_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        for ch in line.chars() {
            push_visible(&mut out, ch);
        }
    }
    neutralise_marker(out)
}

/// A single-line value from a log: redacted and sanitised, not cut.
fn clean_value(s: &str) -> String {
    sanitize_line(redact(s.strip_suffix('\r').unwrap_or(s)).as_ref())
}

/// Multi-line text that may quote logs: redacted and sanitised, not cut.
fn clean_text(s: &str) -> String {
    sanitize_text(redact(s).as_ref())
}

/// Our dedup marker must only ever appear where we put it, or an attacker who computes
/// another incident's fingerprint (detector id and key values are no secret) could make a
/// search for that fingerprint find this ticket. A look-alike in untrusted text gets a
/// non-breaking hyphen (U+2011) instead of `-`: it reads the same but no longer matches.
fn neutralise_marker(s: String) -> String {
    static MARKER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)(sentinela)-(fingerprint)").expect("marker regex"));
    match MARKER.replace_all(&s, "${1}\u{2011}${2}") {
        Cow::Borrowed(_) => s,
        Cow::Owned(o) => o,
    }
}

/// Cuts `s` to `max` characters, appending a marker that says how much was cut.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((at, _)) => {
            let more = s[at..].chars().count();
            format!("{} [... cut: {more} more characters]", &s[..at])
        }
    }
}

/// The title without prefix: redacted, one line, whitespace collapsed, cut with `…`.
fn title_text(c: &TicketContent) -> String {
    let mut t = one_line(&redact(&c.title));
    if t.is_empty() {
        t = one_line(&c.detector);
    }
    if t.chars().count() > MAX_TITLE_CHARS {
        t = t.chars().take(MAX_TITLE_CHARS - 1).collect();
        t.push('…');
    }
    t
}

/// Collapses all whitespace (newlines, tabs, Unicode spaces) to single spaces, trims, and
/// escapes hidden characters.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for ch in s.chars() {
        if ch.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        push_visible(&mut out, ch);
    }
    neutralise_marker(out)
}

// ------------------------------------------------------------------------------------------
// Redaction rules.

struct Rule {
    re: Regex,
    replace: fn(&Captures) -> String,
}

fn rule(pattern: &str, replace: fn(&Captures) -> String) -> Rule {
    Rule {
        re: Regex::new(pattern).expect("redaction regex"),
        replace,
    }
}

fn whole(_: &Captures) -> String {
    REDACTED.to_string()
}

fn keep_first(caps: &Captures) -> String {
    format!("{}{REDACTED}", &caps[1])
}

/// `Authorization:` values. Single-token schemes (`Basic`, `Bearer`...) keep the scheme word
/// and lose the token; multi-parameter schemes (`Digest`, `AWS4-HMAC-SHA256`...) are redacted
/// up to the closing quote when the value is quoted, else to the end of the line; a value
/// without a known scheme loses its first word, unless that word is only letters: that is a
/// setting (`security.authorization: enabled`), not a credential.
fn authorization(caps: &Captures) -> String {
    const TOKEN_SCHEMES: [&str; 5] = ["basic", "bearer", "token", "negotiate", "ntlm"];
    const PARAM_SCHEMES: [&str; 8] = [
        "digest",
        "aws4-hmac-sha256",
        "hoba",
        "mutual",
        "oauth",
        "scram-sha-1",
        "scram-sha-256",
        "vapid",
    ];
    let prefix = &caps[1];
    let quote = &caps[2];
    let rest = &caps[3];
    let (value, tail) = match quote.chars().next().and_then(|q| rest.find(q)) {
        Some(end) => rest.split_at(end),
        None => (rest, ""),
    };
    // A credential is token68 (RFC 9110): letters, digits and `-._~+/=`.
    let word_end = |s: &str| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || "-._~+/=".contains(c)))
            .unwrap_or(s.len())
    };
    let first = &value[..word_end(value)];
    let is = |list: &[&str]| list.iter().any(|s| first.eq_ignore_ascii_case(s));
    let (keep, secret) = if is(&TOKEN_SCHEMES) {
        let after = &value[first.len()..];
        let token = after.trim_start();
        let keep = &value[..value.len() - token.len()];
        (keep, &token[..word_end(token)])
    } else if is(&PARAM_SCHEMES) {
        ("", value)
    } else {
        ("", first)
    };
    let setting =
        keep.is_empty() && !is(&PARAM_SCHEMES) && secret.bytes().all(|b| b.is_ascii_alphabetic());
    if secret.is_empty() || secret.starts_with(REDACTED) || setting {
        return caps[0].to_string();
    }
    let after_secret = &value[keep.len() + secret.len()..];
    format!("{prefix}{quote}{keep}{REDACTED}{after_secret}{tail}")
}

/// Replaces a captured value, keeping its quotes: `"x"` -> `"<redacted>"`.
fn redact_value(value: &str) -> String {
    for q in ["\\\"", "\"", "'"] {
        if value.len() >= 2 * q.len() && value.starts_with(q) && value.ends_with(q) {
            return format!("{q}{REDACTED}{q}");
        }
    }
    REDACTED.to_string()
}

fn unquote(value: &str) -> &str {
    value
        .trim_start_matches("\\\"")
        .trim_end_matches("\\\"")
        .trim_matches(|c| c == '"' || c == '\'')
}

/// `password=...` and friends, with the exceptions documented on [`redact`].
fn password(caps: &Captures) -> String {
    let key = &caps["key"];
    let sep = &caps["sep"];
    let value = &caps["val"];
    let keep = || caps[0].to_string();
    let bare = unquote(value);
    let quoted = bare.len() != value.len();
    // `passwd:chauthtok`: a colon glued to a word, with an unquoted key and value.
    if !sep.contains('=')
        && !sep.starts_with(['"', '\'', '\\'])
        && !sep.ends_with(char::is_whitespace)
        && !quoted
    {
        return keep();
    }
    // sudo's `PWD=/home/bob` is the working directory.
    if key.to_ascii_lowercase().ends_with("pwd") && bare.starts_with(['/', '~']) {
        return keep();
    }
    // Whether there is a password, not what it is.
    const NOT_SECRETS: [&str; 6] = ["yes", "no", "true", "false", "null", "none"];
    if bare.is_empty()
        || NOT_SECRETS.iter().any(|w| bare.eq_ignore_ascii_case(w))
        || bare.chars().all(|c| c == '*')
    {
        return keep();
    }
    format!("{key}{sep}{}", redact_value(value))
}

/// A long value after a `secret`/`token`/`key` word: redacted only when it looks like a
/// secret (a letter and a digit), so `key=authentication_failure` stays.
fn generic_secret(caps: &Captures) -> String {
    let secret = &caps["secret"];
    let has_digit = secret.bytes().any(|b| b.is_ascii_digit());
    let has_letter = secret.bytes().any(|b| b.is_ascii_alphabetic());
    if has_digit && has_letter {
        format!("{}{}{}{REDACTED}", &caps["key"], &caps["sep"], &caps["q"])
    } else {
        caps[0].to_string()
    }
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        // Private key blocks; to the end of the text when the END line was cut off.
        rule(
            r"(?s)-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)",
            whole,
        ),
        // scheme://user:PASS@host
        rule(
            r"\b([A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:)[^\s/?#@]+@",
            |caps| format!("{}{REDACTED}@", &caps[1]),
        ),
        // Authorization headers (plain, quoted, JSON).
        rule(
            r#"(?i)\b((?:proxy-)?authorization["']?[ \t]*[:=][ \t]*)(["']?)([^\r\n]*)"#,
            authorization,
        ),
        // A bearer token anywhere.
        rule(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/-]{16,}=*", keep_first),
        // Tokens with a recognisable format.
        rule(
            concat!(
                r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
                r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
                r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b",
                r"|\bgithub_pat_[A-Za-z0-9_]{22,}",
                r"|\bglpat-[A-Za-z0-9_-]{20,}",
                r"|\bxox[abeoprs]-[A-Za-z0-9-]{10,}",
                r"|\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",
                r"|\bAIza[A-Za-z0-9_-]{35}",
            ),
            whole,
        ),
        rule(r"(hooks\.slack\.com/services/)[A-Za-z0-9/]+", keep_first),
        // Query (and `;` path) parameters that carry credentials.
        rule(
            concat!(
                r#"(?i)([?&;](?:access_token|refresh_token|id_token|auth_token|token|api_key|api-key|apikey|key"#,
                r#"|client_secret|secret|password|passwd|pwd|session|session_id|sessionid|jsessionid|phpsessid"#,
                r#"|sid|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&#;?\s"'<>]+"#,
            ),
            keep_first,
        ),
        // password=..., passwd: ..., "password":"...", db_password=...
        rule(
            concat!(
                r#"(?i)(?P<key>[a-z0-9_.-]*(?:password|passwd|pwd)[a-z0-9_]*|\bpass(?:phrase)?)"#,
                r#"(?P<sep>(?:\\?["']|\])?[ \t]*[:=][ \t]*)"#,
                r#"(?P<val>\\"(?:[^"\\]|\\[^"])*\\"|"(?:[^"\\]|\\.)*"|'[^']*'|[^\s"',;&<>)}\]]+)"#,
            ),
            password,
        ),
        // A long secret-looking value after a secret/token/key word.
        rule(
            concat!(
                r#"(?i)(?P<key>[a-z0-9_.-]*(?:secret|token|key))"#,
                r#"(?P<sep>(?:\\?["']|\])?[ \t]*[:=][ \t]*)(?P<q>\\?["']?)"#,
                r#"(?P<secret>[A-Za-z0-9+/_.~-]{16,}=*)"#,
            ),
            generic_secret,
        ),
        // Cookie headers.
        rule(
            r#"(?i)\b((?:set-)?cookie["']?[ \t]*:[ \t]*["']?)[^\r\n"']*[^\s"']"#,
            keep_first,
        ),
    ]
});

// ------------------------------------------------------------------------------------------
// Document model.

/// A piece of a body or comment. All strings are already redacted and sanitised; renderers
/// only escape.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    /// A section heading (our text).
    Heading(&'static str),
    /// Paragraphs: lines kept, blank lines separate paragraphs.
    Text(String),
    /// `label: value` pairs; values are untrusted and rendered as code where possible.
    Fields(Vec<(String, String)>),
    /// A bullet list.
    List(Vec<String>),
    /// Verbatim lines (evidence).
    Code(Vec<String>),
    /// The dedup marker line; the fingerprint is checked to be a plain id.
    Marker(String),
}

/// How much of the content fits; the cap lowers these until the body is small enough.
#[derive(Debug, Clone, Copy)]
struct Limits {
    evidence: usize,
    value: usize,
    text: usize,
    fields: usize,
}

const FULL: Limits = Limits {
    evidence: usize::MAX,
    value: MAX_LINE_CHARS,
    text: MAX_TEXT_CHARS,
    fields: MAX_FIELDS,
};

/// Everything taken from the content, cleaned once (redaction of a 100 KB line is not
/// repeated for every size attempt) and cut per attempt.
struct Prepared {
    title: String,
    detector: String,
    priority: String,
    severity: String,
    category: String,
    criticality: String,
    count: String,
    first_seen: String,
    last_seen: String,
    source: String,
    host: Option<String>,
    service: Option<String>,
    address: Vec<(String, String)>,
    user: Option<String>,
    other: Vec<(String, String)>,
    evidence: Vec<String>,
    description: String,
    response: String,
    references: Vec<String>,
    fingerprint: String,
    previous_ticket: Option<String>,
    status: String,
}

impl Prepared {
    fn new(c: &TicketContent, status_template: &str) -> Prepared {
        let field = |name: &str| c.fields.get(name).map(|v| clean_value(v));
        let address = ["source.address", "source.ip"]
            .iter()
            .filter_map(|k| c.fields.get(*k).map(|v| (k.to_string(), clean_value(v))))
            .collect();
        let other = c
            .fields
            .iter()
            .filter(|(k, _)| !SHOWN_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (sanitize_line(k), clean_value(v)))
            .collect();
        Prepared {
            title: title_text(c),
            detector: sanitize_line(&c.detector),
            priority: c.priority.to_string(),
            severity: sanitize_line(&c.severity),
            category: sanitize_line(&c.category),
            criticality: sanitize_line(&c.criticality),
            count: c.count.to_string(),
            first_seen: clean_value(&c.first_seen),
            last_seen: clean_value(&c.last_seen),
            source: clean_value(&c.source),
            host: field("host.name"),
            service: field("service.name"),
            address,
            user: field("user.name"),
            other,
            evidence: c.evidence.iter().map(|l| clean_value(l)).collect(),
            description: clean_text(c.description.trim()),
            response: clean_text(c.response.trim()),
            references: c.references.iter().map(|r| clean_value(r)).collect(),
            fingerprint: sanitize_line(&c.fingerprint),
            previous_ticket: c.previous_ticket.as_deref().map(clean_value),
            status: if status_template.is_empty() {
                String::new()
            } else {
                customer_status(c, status_template)
            },
        }
    }

    fn marker(&self) -> Block {
        let plain = !self.fingerprint.is_empty()
            && self.fingerprint.len() <= 128
            && self
                .fingerprint
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if plain {
            Block::Marker(self.fingerprint.clone())
        } else {
            // Not a fingerprint we made: shown as an ordinary (escaped) value, no marker.
            Block::Fields(vec![(
                "Malformed fingerprint".into(),
                cut(&self.fingerprint, MAX_LINE_CHARS),
            )])
        }
    }
}

/// Keeps at most `max` lines: the first half and the newest half, with a marker between.
fn keep_lines(lines: &[String], max: usize, value: usize) -> Vec<String> {
    let cut_all = |ls: &[String]| ls.iter().map(|l| cut(l, value)).collect::<Vec<_>>();
    if lines.len() <= max {
        return cut_all(lines);
    }
    let head = max.div_ceil(2);
    let tail = max / 2;
    let mut out = cut_all(&lines[..head]);
    out.push(format!(
        "[... {} lines left out to keep the ticket under {} KB ...]",
        lines.len() - max,
        MAX_BODY_BYTES / 1000
    ));
    out.extend(cut_all(&lines[lines.len() - tail..]));
    out
}

fn field(label: &str, value: &str, lim: &Limits) -> (String, String) {
    (label.to_string(), cut(value, lim.value))
}

fn body_blocks(p: &Prepared, lim: &Limits) -> Vec<Block> {
    let mut b = Vec::with_capacity(24);

    b.push(Block::Heading("What happened"));
    b.push(Block::Text(p.title.clone()));
    if !p.description.is_empty() {
        b.push(Block::Text(cut(&p.description, lim.text)));
    }
    b.push(Block::Fields(vec![
        field("Priority", &p.priority, lim),
        field("Severity", &p.severity, lim),
        field("Category", &p.category, lim),
        field("Asset criticality", &p.criticality, lim),
    ]));

    b.push(Block::Heading("Where"));
    let mut where_ = vec![field("Host", p.host.as_deref().unwrap_or("unknown"), lim)];
    if let Some(s) = &p.service {
        where_.push(field("Service", s, lim));
    }
    where_.push(field("Detector", &p.detector, lim));
    where_.push(field("Source", &p.source, lim));
    b.push(Block::Fields(where_));

    b.push(Block::Heading("When"));
    b.push(Block::Fields(vec![
        field("First seen", &p.first_seen, lim),
        field("Last seen", &p.last_seen, lim),
        field("Count", &p.count, lim),
    ]));

    b.push(Block::Heading("Who"));
    let mut who: Vec<(String, String)> = p.address.iter().map(|(k, v)| field(k, v, lim)).collect();
    if let Some(u) = &p.user {
        who.push(field("user.name", u, lim));
    }
    who.extend(
        p.other
            .iter()
            .take(lim.fields)
            .map(|(k, v)| (cut(k, lim.value), cut(v, lim.value))),
    );
    if who.is_empty() {
        b.push(Block::Text("No actor fields.".into()));
    } else {
        b.push(Block::Fields(who));
    }
    if p.other.len() > lim.fields {
        b.push(Block::Text(format!(
            "{} more fields left out.",
            p.other.len() - lim.fields
        )));
    }

    b.push(Block::Heading("Evidence"));
    if p.evidence.is_empty() {
        b.push(Block::Text("No evidence lines were kept.".into()));
    } else {
        b.push(Block::Code(keep_lines(
            &p.evidence,
            lim.evidence,
            lim.value,
        )));
    }

    b.push(Block::Heading("Response playbook"));
    if p.response.is_empty() {
        b.push(Block::Text("This detector has no playbook.".into()));
    } else {
        b.push(Block::Text(cut(&p.response, lim.text)));
    }

    b.push(Block::Heading("References"));
    if p.references.is_empty() {
        b.push(Block::Text("None.".into()));
    } else {
        b.push(Block::List(
            p.references
                .iter()
                .take(lim.fields)
                .map(|r| cut(r, lim.value))
                .collect(),
        ));
    }

    b.push(Block::Heading("Deduplication key"));
    b.push(p.marker());

    if let Some(prev) = &p.previous_ticket {
        b.push(Block::Heading("Previous ticket"));
        b.push(Block::Text(format!(
            "This incident came back after ticket {} was closed.",
            cut(prev, lim.value)
        )));
    }

    // An empty template means: no customer-facing text.
    if !p.status.trim().is_empty() {
        b.push(Block::Heading("Status for the customer"));
        b.push(Block::Text(cut(&p.status, lim.text)));
    }
    b
}

fn comment_blocks(
    p: &Prepared,
    kind: UpdateKind,
    note: &str,
    evidence: &[String],
    lim: &Limits,
) -> Vec<Block> {
    let mut b = Vec::with_capacity(8);
    let seen = format!(
        "{} hits so far, last seen {}.",
        p.count,
        cut(&p.last_seen, lim.value)
    );
    let with_evidence = match kind {
        UpdateKind::Recurrence => {
            b.push(Block::Text(format!("The incident recurred: {seen}")));
            true
        }
        UpdateKind::Escalation => {
            b.push(Block::Text(format!(
                "Priority raised to {} ({seen})",
                p.priority
            )));
            if note.trim().is_empty() {
                b.push(Block::Text("Reason: the incident grew.".into()));
            } else {
                b.push(Block::Text(format!("Reason: {}", cut(note, lim.text))));
            }
            false
        }
        UpdateKind::Reopen => {
            b.push(Block::Text(format!(
                "This incident came back after the ticket was closed: {seen}"
            )));
            true
        }
        UpdateKind::Digest => {
            b.push(Block::Text(
                "Storm digest: more incidents than the ticket quota allows. They are listed \
                 here instead of opening one ticket each."
                    .into(),
            ));
            b.push(Block::Text(cut(note, lim.text)));
            false
        }
    };
    if with_evidence {
        if !evidence.is_empty() {
            b.push(Block::Text("Newest evidence:".into()));
            b.push(Block::Code(keep_lines(evidence, lim.evidence, lim.value)));
        }
        if !note.trim().is_empty() {
            b.push(Block::Text(cut(note, lim.text)));
        }
    }
    b
}

/// Renders with the full limits, then lowers them until the result fits in
/// [`MAX_BODY_BYTES`]: evidence lines first (halving), then value and text lengths. The model
/// is cut, never the rendered string, so markup stays balanced and the dedup marker stays.
fn fit(
    format: BodyFormat,
    evidence: usize,
    p: &Prepared,
    build: impl Fn(&Limits) -> Vec<Block>,
) -> String {
    let mut attempts = Vec::new();
    let mut n = evidence;
    loop {
        attempts.push(Limits {
            evidence: n,
            ..FULL
        });
        if n == 0 {
            break;
        }
        n /= 2;
    }
    attempts.push(Limits {
        evidence: 0,
        value: 200,
        text: 2_000,
        fields: 20,
    });
    attempts.push(Limits {
        evidence: 0,
        value: 60,
        text: 300,
        fields: 5,
    });
    for lim in &attempts {
        let out = render(&build(lim), format);
        if out.len() <= MAX_BODY_BYTES {
            return out;
        }
    }
    // Unreachable with the limits above (about 20 KB at most), kept as a guarantee.
    render(
        &[
            Block::Text(cut(&p.title, 60)),
            Block::Text("The ticket content was too large to show.".into()),
            p.marker(),
        ],
        format,
    )
}

fn render(blocks: &[Block], format: BodyFormat) -> String {
    match format {
        BodyFormat::Plain => render_plain(blocks),
        BodyFormat::Markdown => render_markdown(blocks),
        BodyFormat::Html => render_html(blocks),
        BodyFormat::Adf => render_adf(blocks),
    }
}

/// Paragraphs of a text block: runs of non-blank lines.
fn paragraphs(text: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    let mut cur = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(line);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

// ------------------------------------------------------------------------------------------
// Plain text.

fn render_plain(blocks: &[Block]) -> String {
    let mut out = String::new();
    for block in blocks {
        match block {
            Block::Heading(h) => {
                out.push_str(h);
                out.push('\n');
                out.push_str(&"=".repeat(h.chars().count()));
                out.push('\n');
            }
            Block::Text(t) => {
                for para in paragraphs(t) {
                    for line in para {
                        out.push_str(line);
                        out.push('\n');
                    }
                    out.push('\n');
                }
                continue;
            }
            Block::Fields(fields) => {
                for (k, v) in fields {
                    let _ = writeln!(out, "{k}: {v}");
                }
            }
            Block::List(items) => {
                for i in items {
                    let _ = writeln!(out, "- {i}");
                }
            }
            // Indented, so no evidence line starts at column 0 and looks like our own text.
            Block::Code(lines) => {
                for l in lines {
                    let _ = writeln!(out, "    {l}");
                }
            }
            Block::Marker(fp) => {
                out.push_str(&fingerprint_marker(fp));
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

// ------------------------------------------------------------------------------------------
// Markdown.

/// ASCII punctuation that means something in CommonMark or GitLab Flavored Markdown
/// (emphasis, links, headings, lists, tables, strikethrough, `{+ +}` diffs, Redmine `{{macros}}`,
/// GitLab references `#1 !1 ~label %milestone $snippet &epic`, math `$`): escaped with `\`.
const MD_ESCAPED: &str = "\\`*_{}[]()#+-.!|~&$%^=";

/// Whether an `@` at this point could start a mention: GitLab and Redmine only look at `@`
/// after a non-word character (Redmine's `\W` is ASCII-only).
fn mention_start(prev: Option<char>) -> bool {
    prev.is_none_or(|p| !(p.is_ascii_alphanumeric() || p == '_'))
}

/// Escapes one line of inline Markdown. Tokens that look like URLs become code spans, because
/// GitLab links bare URLs after rendering, escapes or not. `<` and `>` become entities, so no
/// HTML passes. An `@` that could start a mention is escaped and followed by a WORD JOINER
/// (U+2060, invisible): `\@` alone stops GitLab but not Redmine, whose mention scanner reads
/// the raw text.
fn md_inline(line: &str, out: &mut String) {
    for (i, token) in line.trim_start().split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let lower = token.to_ascii_lowercase();
        if lower.contains("://") || lower.contains("www.") {
            md_code(token, out);
            continue;
        }
        let mut prev = None;
        for ch in token.chars() {
            match ch {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '@' => {
                    out.push_str("\\@");
                    if mention_start(prev) {
                        out.push('\u{2060}');
                    }
                }
                c if MD_ESCAPED.contains(c) => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
            prev = Some(ch);
        }
    }
}

/// A code span: nothing inside is Markdown, HTML, a link or a reference. The backtick fence
/// is longer than any backtick run inside, and spaces pad content that starts or ends with a
/// backtick or a space (CommonMark strips one on each side). Mention-like `@` get a WORD
/// JOINER, because Redmine looks for mentions in code spans too.
fn md_code(value: &str, out: &mut String) {
    if value.is_empty() {
        out.push_str("\\(empty\\)");
        return;
    }
    let mut content = String::with_capacity(value.len() + 4);
    let mut prev = None;
    for ch in value.chars() {
        content.push(ch);
        if ch == '@' && mention_start(prev) {
            content.push('\u{2060}');
        }
        prev = Some(ch);
    }
    let fence = "`".repeat(longest_run(&content, '`') + 1);
    let pad = content.starts_with(['`', ' ']) || content.ends_with(['`', ' ']);
    out.push_str(&fence);
    if pad {
        out.push(' ');
    }
    out.push_str(&content);
    if pad {
        out.push(' ');
    }
    out.push_str(&fence);
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for ch in s.chars() {
        if ch == c {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

/// The fence for a fenced code block: backticks, one more than the longest run in any line
/// (at least three), so no line can close it.
fn md_fence(lines: &[String]) -> String {
    let longest = lines.iter().map(|l| longest_run(l, '`')).max().unwrap_or(0);
    "`".repeat((longest + 1).max(3))
}

fn render_markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    for block in blocks {
        match block {
            Block::Heading(h) => {
                out.push_str("### ");
                md_inline(h, &mut out);
                out.push('\n');
            }
            Block::Text(t) => {
                for para in paragraphs(t) {
                    for (i, line) in para.iter().enumerate() {
                        if i > 0 {
                            // Hard line break: keeps playbook steps and digest lists apart.
                            out.push_str("  \n");
                        }
                        md_inline(line, &mut out);
                    }
                    out.push_str("\n\n");
                }
                continue;
            }
            Block::Fields(fields) => {
                for (k, v) in fields {
                    out.push_str("- ");
                    md_inline(k, &mut out);
                    out.push_str(": ");
                    md_code(v, &mut out);
                    out.push('\n');
                }
            }
            Block::List(items) => {
                for i in items {
                    out.push_str("- ");
                    md_inline(i, &mut out);
                    out.push('\n');
                }
            }
            Block::Code(lines) => {
                let fence = md_fence(lines);
                out.push_str(&fence);
                out.push('\n');
                for l in lines {
                    out.push_str(l);
                    out.push('\n');
                }
                out.push_str(&fence);
                out.push('\n');
            }
            Block::Marker(fp) => {
                out.push_str(&fingerprint_marker(fp));
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

// ------------------------------------------------------------------------------------------
// HTML.

/// Escapes text for HTML element content. Besides `& < > " '`, braces become character
/// references: Zendesk and Freshdesk run Liquid (`{{ticket.requester.email}}`) over some
/// texts, and an entity is not a placeholder.
fn html_escape(s: &str, out: &mut String) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '{' => out.push_str("&#123;"),
            '}' => out.push_str("&#125;"),
            c => out.push(c),
        }
    }
}

/// No attributes and no links are ever emitted: every piece of content is element text.
fn render_html(blocks: &[Block]) -> String {
    let mut out = String::new();
    for block in blocks {
        match block {
            Block::Heading(h) => {
                out.push_str("<h3>");
                html_escape(h, &mut out);
                out.push_str("</h3>\n");
            }
            Block::Text(t) => {
                for para in paragraphs(t) {
                    out.push_str("<p>");
                    for (i, line) in para.iter().enumerate() {
                        if i > 0 {
                            out.push_str("<br>\n");
                        }
                        html_escape(line, &mut out);
                    }
                    out.push_str("</p>\n");
                }
            }
            Block::Fields(fields) => {
                out.push_str("<ul>\n");
                for (k, v) in fields {
                    out.push_str("<li>");
                    html_escape(k, &mut out);
                    out.push_str(": <code>");
                    html_escape(v, &mut out);
                    out.push_str("</code></li>\n");
                }
                out.push_str("</ul>\n");
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for i in items {
                    out.push_str("<li>");
                    html_escape(i, &mut out);
                    out.push_str("</li>\n");
                }
                out.push_str("</ul>\n");
            }
            Block::Code(lines) => {
                out.push_str("<pre>");
                for (i, l) in lines.iter().enumerate() {
                    if i > 0 {
                        out.push('\n');
                    }
                    html_escape(l, &mut out);
                }
                out.push_str("</pre>\n");
            }
            Block::Marker(fp) => {
                out.push_str("<p>");
                out.push_str(&fingerprint_marker(fp));
                out.push_str("</p>\n");
            }
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// Atlassian Document Format.

fn adf_text(s: &str) -> Value {
    json!({ "type": "text", "text": s })
}

fn adf_paragraph(content: Vec<Value>) -> Value {
    json!({ "type": "paragraph", "content": content })
}

fn adf_bullets(items: impl Iterator<Item = String>) -> Value {
    let items: Vec<Value> = items
        .map(|i| json!({ "type": "listItem", "content": [adf_paragraph(vec![adf_text(&i)])] }))
        .collect();
    json!({ "type": "bulletList", "content": items })
}

/// Built with serde_json, never by concatenation: JSON escaping is serde's. Only plain text
/// nodes carry content (no marks, links or mentions), and no text node is empty (ADF rejects
/// empty text).
fn render_adf(blocks: &[Block]) -> String {
    let mut content: Vec<Value> = Vec::new();
    for block in blocks {
        match block {
            Block::Heading(h) => content.push(json!({
                "type": "heading",
                "attrs": { "level": 3 },
                "content": [adf_text(h)],
            })),
            Block::Text(t) => {
                for para in paragraphs(t) {
                    let mut nodes = Vec::with_capacity(para.len() * 2);
                    for (i, line) in para.iter().enumerate() {
                        if i > 0 {
                            nodes.push(json!({ "type": "hardBreak" }));
                        }
                        nodes.push(adf_text(line));
                    }
                    content.push(adf_paragraph(nodes));
                }
            }
            Block::Fields(fields) => content.push(adf_bullets(fields.iter().map(|(k, v)| {
                let v = if v.is_empty() { "(empty)" } else { v.as_str() };
                format!("{k}: {v}")
            }))),
            Block::List(items) => content.push(adf_bullets(items.iter().map(|i| {
                if i.is_empty() {
                    "(empty)".into()
                } else {
                    i.clone()
                }
            }))),
            Block::Code(lines) => {
                let text = lines.join("\n");
                if text.is_empty() {
                    content.push(json!({ "type": "codeBlock" }));
                } else {
                    content.push(json!({ "type": "codeBlock", "content": [adf_text(&text)] }));
                }
            }
            Block::Marker(fp) => {
                content.push(adf_paragraph(vec![adf_text(&fingerprint_marker(fp))]))
            }
        }
    }
    json!({ "version": 1, "type": "doc", "content": content }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Priority;
    use std::collections::BTreeMap;

    fn content() -> TicketContent {
        let mut fields = BTreeMap::new();
        fields.insert("source.address".to_string(), "203.0.113.9".to_string());
        fields.insert("user.name".to_string(), "root".to_string());
        fields.insert("host.name".to_string(), "web1".to_string());
        fields.insert("source.port".to_string(), "52214".to_string());
        TicketContent {
            fingerprint: "0123456789abcdef0123456789abcdef".into(),
            detector: "ssh.password-failure".into(),
            title: "SSH password guessing from 203.0.113.9".into(),
            priority: Priority::P2,
            severity: "medium".into(),
            category: "intrusion-attempts".into(),
            criticality: "normal".into(),
            count: 7,
            first_seen: "2026-03-01T10:00:00Z".into(),
            last_seen: "2026-03-01T10:05:00Z".into(),
            source: "/var/log/auth.log".into(),
            fields,
            evidence: vec![
                "Mar  1 10:00:00 web1 sshd[4242]: Failed password for root from 203.0.113.9 port 52214 ssh2".into(),
            ],
            description: "Repeated failed password logins from one address.".into(),
            response: "1. Check whether any login succeeded.\n2. Block the address.".into(),
            references: vec!["T1110.001".into()],
            previous_ticket: None,
        }
    }

    // --- title -------------------------------------------------------------------------

    fn check_title(input: &str, expected: &str) {
        let c = TicketContent {
            title: input.into(),
            ..content()
        };
        assert_eq!(title(&c), expected, "title of {input:?}");
    }

    #[test]
    fn titles() {
        check_title(
            "SSH password guessing from 1.2.3.4",
            "[sentinela P2] SSH password guessing from 1.2.3.4",
        );
        check_title("  a\n\r\tb \u{2028} c  ", "[sentinela P2] a b c");
        check_title("x\0y", "[sentinela P2] x\\x00y");
        check_title("\x1b[31mred\x1b[0m", "[sentinela P2] \\x1b[31mred\\x1b[0m");
        check_title("user \u{202e}gnp.exe", "[sentinela P2] user \\u202egnp.exe");
        check_title("bad \u{FFFD} utf8", "[sentinela P2] bad \u{FFFD} utf8");
        check_title(
            "<script>alert(1)</script>",
            "[sentinela P2] <script>alert(1)</script>",
        );
        check_title(
            "login from http://u:hunter2@evil/",
            "[sentinela P2] login from http://u:<redacted>@evil/",
        );
        check_title("", "[sentinela P2] ssh.password-failure");
        check_title("\n\t ", "[sentinela P2] ssh.password-failure");
        check_title(
            "fake sentinela-fingerprint: 00",
            "[sentinela P2] fake sentinela\u{2011}fingerprint: 00",
        );
        let long = "é".repeat(300);
        check_title(
            &long,
            &format!("[sentinela P2] {}…", "é".repeat(MAX_TITLE_CHARS - 1)),
        );
        let exact = "x".repeat(MAX_TITLE_CHARS);
        check_title(&exact, &format!("[sentinela P2] {exact}"));
    }

    // --- redaction ---------------------------------------------------------------------

    fn check_redact(input: &str, expected: &str) {
        assert_eq!(redact(input), expected, "redact({input:?})");
    }

    #[test]
    fn redacts_secrets() {
        check_redact("login password=hunter2 ok", "login password=<redacted> ok");
        check_redact("passwd: hunter2", "passwd: <redacted>");
        check_redact("pwd=s3cr3t&user=bob", "pwd=<redacted>&user=bob");
        check_redact(
            r#"{"password":"hunter 2","user":"bob"}"#,
            r#"{"password":"<redacted>","user":"bob"}"#,
        );
        check_redact(r#"{"password": "a\"b"}"#, r#"{"password": "<redacted>"}"#);
        check_redact(
            r#"{\"password\":\"x y\"}"#,
            r#"{\"password\":\"<redacted>\"}"#,
        );
        check_redact("'password': 'pw'", "'password': '<redacted>'");
        check_redact("DB_PASSWORD=abc", "DB_PASSWORD=<redacted>");
        check_redact("user[password]=x&y=1", "user[password]=<redacted>&y=1");
        check_redact("pass=letmein", "pass=<redacted>");
        check_redact("ARGS:password: hunter2", "ARGS:password: <redacted>");
        check_redact(
            "Authorization: Basic dXNlcjpwYXNz",
            "Authorization: Basic <redacted>",
        );
        check_redact(
            "authorization: Bearer abc.def-ghi next",
            "authorization: Bearer <redacted> next",
        );
        check_redact(
            r#""Authorization":"Bearer tok123""#,
            r#""Authorization":"Bearer <redacted>""#,
        );
        check_redact(
            "Authorization: Digest username=\"bob\", response=\"6629fae4\"",
            "Authorization: <redacted>",
        );
        check_redact(
            "Proxy-Authorization: s3krit",
            "Proxy-Authorization: <redacted>",
        );
        check_redact(
            "Authorization: AWS4-HMAC-SHA256 Credential=AKID/x, Signature=abc",
            "Authorization: <redacted>",
        );
        check_redact(
            r#"{"authorization": "Digest a=1", "b": 2}"#,
            r#"{"authorization": "<redacted>", "b": 2}"#,
        );
        check_redact(
            "curl -H bearer 0123456789abcdefghijKLMN",
            "curl -H bearer <redacted>",
        );
        check_redact(
            "GET https://bob:hunter2@example.com/x",
            "GET https://bob:<redacted>@example.com/x",
        );
        check_redact("redis://:pw@cache:6379", "redis://:<redacted>@cache:6379");
        check_redact(
            "GET /api?token=abc&x=1&api_key=k1;sid=z HTTP/1.1",
            "GET /api?token=<redacted>&x=1&api_key=<redacted>;sid=<redacted> HTTP/1.1",
        );
        check_redact(
            "/cb?Access_Token=abc#frag",
            "/cb?Access_Token=<redacted>#frag",
        );
        check_redact(
            "/p?password=x&session=y",
            "/p?password=<redacted>&session=<redacted>",
        );
        check_redact(
            "/login;jsessionid=ABC123?x",
            "/login;jsessionid=<redacted>?x",
        );
        check_redact("/x?a=1&amp;key=abc", "/x?a=1&amp;key=<redacted>");
        check_redact("key AKIAIOSFODNN7EXAMPLE used", "key <redacted> used");
        check_redact(
            "t=ghp_0123456789abcdefghijABCDEFGHIJ0123456789",
            "t=<redacted>",
        );
        check_redact("xoxb-123456789012-abcdefABCDEF", "<redacted>");
        check_redact(
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nat_ure rest",
            "jwt <redacted> rest",
        );
        check_redact(
            "glpat-abcdefghij0123456789 and sk_live_0123456789abcdefABCD",
            "<redacted> and <redacted>",
        );
        check_redact(
            "https://hooks.slack.com/services/T000/B000/XXXX",
            "https://hooks.slack.com/services/<redacted>",
        );
        check_redact(
            "a -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- b",
            "a <redacted> b",
        );
        check_redact(
            "key: -----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjE",
            "key: <redacted>",
        );
        check_redact(
            "client_secret=9f8e7d6c5b4a39281706 ok",
            "client_secret=<redacted> ok",
        );
        check_redact("api-key: 'a1b2c3d4e5f6a7b8c9d0'", "api-key: '<redacted>'");
        check_redact(
            "X-Api-Token=ZXhhbXBsZTEyMzQ1Njc4OTA=",
            "X-Api-Token=<redacted>",
        );
        check_redact("Cookie: sid=abc; theme=dark", "Cookie: <redacted>");
        check_redact(
            "\"Set-Cookie\": \"s=1; HttpOnly\"",
            "\"Set-Cookie\": \"<redacted>\"",
        );
    }

    #[test]
    fn keeps_ordinary_log_text() {
        for line in [
            "Mar  1 10:00:00 web1 sshd[4242]: Failed password for root from 1.2.3.4 port 22 ssh2",
            "sshd[1]: Failed password for invalid user admin from 192.168.1.2 port 51182 ssh2",
            "sshd[1]: Accepted password for alice from 203.0.113.9 port 52214 ssh2",
            "sshd[1]: Accepted publickey for bob from 1.2.3.4 port 22 ssh2: RSA SHA256:1M4RzhMyWuFS/86uPY/ce2prh/dVTHW7iD2RhpquOZA",
            "sshd[1]: Failed publickey for alice from 1.2.3.4 port 5 ssh2: ED25519 SHA256:abcdefghijklmnop0123456789",
            "Found matching RSA key: SHA256:1M4RzhMyWuFS/86uPY/ce2prh/dVTHW7iD2RhpquOZA",
            "host key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            "sshd[1]: pam_unix(passwd:chauthtok): password changed for bob",
            "passwd[901]: pam_unix(passwd:chauthtok): authentication token manipulation error",
            "sudo: bob : TTY=pts/0 ; PWD=/home/bob ; USER=root ; COMMAND=/bin/ls",
            "Access denied for user 'root'@'localhost' (using password: YES)",
            "dovecot: auth: passwd-file(bob,1.2.3.4): Password mismatch (given password: ,1.2.3.4)",
            "postgres: FATAL:  password authentication failed for user \"bob\"",
            "grafana: msg=\"Invalid username or password\" error=\"invalid username or password\"",
            "key=authentication_failure token=expired secret=none",
            "GET /users/password/new?reset=1 HTTP/1.1",
            "session opened for user root(uid=0) by (uid=0)",
            "sid=S-1-5-21-3623811015-3361044348-30300820-1013",
            "url=https://example.com/path?page=2&q=monkey",
            "ssh://git@github.com/org/repo.git",
            "password: ****",
            "keep `security.authorization: enabled` in mongod.conf",
            "Authorization: Basic",
        ] {
            assert!(
                matches!(redact(line), Cow::Borrowed(_)),
                "changed: {line:?} -> {:?}",
                redact(line)
            );
        }
    }

    /// The shipped detectors' examples are real log lines, and their descriptions and
    /// playbooks are our prose: redaction must leave all of it alone, except the few example
    /// lines that really carry a password (a honeypot's captured guess, Dovecot's
    /// `auth_debug_passwords` output).
    #[test]
    fn shipped_detector_text_is_not_redacted() {
        let expected = [
            ("dovecot.auth-failure", "(given password: <redacted> x)"),
            ("honeypot.sshesame-login", r#""password":"<redacted>""#),
        ];
        let set = crate::detector::DetectorSet::builtin().expect("builtin detectors");
        let mut unexpected = Vec::new();
        let mut seen = Vec::new();
        for d in &set.detectors {
            let texts = [&d.title, &d.description, &d.response]
                .into_iter()
                .chain(d.examples.iter().map(|e| &e.line))
                .chain(d.counterexamples.iter().map(|e| &e.line));
            for t in texts {
                if let Cow::Owned(o) = redact(t) {
                    match expected
                        .iter()
                        .find(|(id, frag)| *id == d.id && o.contains(frag))
                    {
                        Some(e) => seen.push(*e),
                        None => unexpected.push(format!("{}: {t:?} -> {o:?}", d.id)),
                    }
                }
            }
        }
        assert!(
            unexpected.is_empty(),
            "redacted:\n{}",
            unexpected.join("\n")
        );
        for e in expected {
            assert!(seen.contains(&e), "not redacted: {e:?}");
        }
    }

    // --- cleaning ----------------------------------------------------------------------

    fn check_clean(input: &str, expected: &str) {
        assert_eq!(clean_value(input), expected, "clean_value({input:?})");
    }

    #[test]
    fn hidden_characters_are_escaped() {
        check_clean("a\tb", "a\tb");
        check_clean("nul\0byte", "nul\\x00byte");
        check_clean("\x1b[31mred", "\\x1b[31mred");
        check_clean("rtl\u{202e}txt.exe", "rtl\\u202etxt.exe");
        check_clean("zero\u{200b}width", "zero\\u200bwidth");
        check_clean("tag\u{e0041}", "tag\\U000e0041");
        check_clean("c1\u{85}", "c1\\x85");
        check_clean("line\nbreak", "line\\x0abreak");
        check_clean("crlf\r", "crlf");
        check_clean("lossy \u{FFFD}", "lossy \u{FFFD}");
        check_clean("ünïcödé 日本", "ünïcödé 日本");
        check_clean(
            "SENTINELA-FINGERPRINT: abc",
            "SENTINELA\u{2011}FINGERPRINT: abc",
        );
        check_clean("password=x\0y", "password=<redacted>");
    }

    fn check_cut(input: &str, max: usize, expected: &str) {
        assert_eq!(cut(input, max), expected, "cut({input:?}, {max})");
    }

    #[test]
    fn cuts() {
        check_cut("abc", 3, "abc");
        check_cut("abcd", 3, "abc [... cut: 1 more characters]");
        check_cut("ééééé", 2, "éé [... cut: 3 more characters]");
        check_cut("", 0, "");
    }

    // --- markdown escaping -------------------------------------------------------------

    fn check_md_inline(input: &str, expected: &str) {
        let mut out = String::new();
        md_inline(input, &mut out);
        assert_eq!(out, expected, "md_inline({input:?})");
    }

    #[test]
    fn markdown_inline() {
        check_md_inline("plain words", "plain words");
        check_md_inline(
            "<script>alert(1)</script>",
            "&lt;script&gt;alert\\(1\\)&lt;/script&gt;",
        );
        check_md_inline("](javascript:alert(1))", "\\]\\(javascript:alert\\(1\\)\\)");
        check_md_inline("[x](y)", "\\[x\\]\\(y\\)");
        check_md_inline("@channel hi", "\\@\u{2060}channel hi");
        check_md_inline("(@root)", "\\(\\@\u{2060}root\\)");
        check_md_inline("bob@example", "bob\\@example");
        check_md_inline("{{7*7}}", "\\{\\{7\\*7\\}\\}");
        check_md_inline("# h", "\\# h");
        check_md_inline("1. x", "1\\. x");
        check_md_inline("- x", "\\- x");
        check_md_inline("===", "\\=\\=\\=");
        check_md_inline("a_b*c`d", "a\\_b\\*c\\`d");
        check_md_inline("#1 !2 ~l %m $s &e", "\\#1 \\!2 \\~l \\%m \\$s \\&e");
        check_md_inline("a | b", "a \\| b");
        check_md_inline("back\\slash", "back\\\\slash");
        check_md_inline("&lt;b&gt;", "\\&lt;b\\&gt;");
        check_md_inline("see http://evil.example/x", "see `http://evil.example/x`");
        check_md_inline("go www.evil.example now", "go `www.evil.example` now");
        check_md_inline("    indented", "indented");
    }

    fn check_md_code(input: &str, expected: &str) {
        let mut out = String::new();
        md_code(input, &mut out);
        assert_eq!(out, expected, "md_code({input:?})");
    }

    #[test]
    fn markdown_code_spans() {
        check_md_code("root", "`root`");
        check_md_code("a`b", "``a`b``");
        check_md_code("``x", "``` ``x ```");
        check_md_code("x ", "` x  `");
        check_md_code("<script>", "`<script>`");
        check_md_code("@admin", "`@\u{2060}admin`");
        check_md_code("bob@example.com", "`bob@example.com`");
        check_md_code("", "\\(empty\\)");
    }

    fn check_md_fence(lines: &[&str], expected: &str) {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(md_fence(&lines), expected, "md_fence({lines:?})");
    }

    #[test]
    fn markdown_fences() {
        check_md_fence(&["plain"], "```");
        check_md_fence(&["```"], "````");
        check_md_fence(&["a ````` b", "``"], "``````");
        check_md_fence(&["~~~~"], "```");
    }

    // --- html escaping -----------------------------------------------------------------

    fn check_html(input: &str, expected: &str) {
        let mut out = String::new();
        html_escape(input, &mut out);
        assert_eq!(out, expected, "html_escape({input:?})");
    }

    #[test]
    fn html_escaping() {
        check_html(
            "<script>alert(1)</script>",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
        );
        check_html(r#"a"b'c&d"#, "a&quot;b&#39;c&amp;d");
        check_html("{{7*7}}", "&#123;&#123;7*7&#125;&#125;");
        check_html("](javascript:alert(1))", "](javascript:alert(1))");
    }

    // --- customer status ---------------------------------------------------------------

    fn check_status(template: &str, expected: &str) {
        assert_eq!(
            customer_status(&content(), template),
            expected,
            "{template:?}"
        );
    }

    #[test]
    fn customer_status_placeholders() {
        check_status(
            "{title} at {first_seen}..{last_seen} ({priority}) ref {fingerprint}",
            "SSH password guessing from 203.0.113.9 at 2026-03-01T10:00:00Z..2026-03-01T10:05:00Z (P2) ref 0123456789abcdef0123456789abcdef",
        );
        check_status("{unknown} {{7*7}} {", "{unknown} {{7*7}} {");
        check_status("{{title}}", "{SSH password guessing from 203.0.113.9}");
        check_status("line1\r\nline2\x1b", "line1\nline2\\x1b");
        // The template is the operator's: our own fingerprint is never taken for a secret.
        check_status(
            "ticket key: {fingerprint}",
            "ticket key: 0123456789abcdef0123456789abcdef",
        );
        // Values are not expanded again.
        let c = TicketContent {
            title: "{fingerprint} password=x".into(),
            ..content()
        };
        assert_eq!(
            customer_status(&c, "[{title}]"),
            "[{fingerprint} password=<redacted>]"
        );
        let default = customer_status(&content(), DEFAULT_STATUS_TEMPLATE);
        assert!(!default.contains('{'), "{default}");
        assert!(default.contains("0123456789abcdef0123456789abcdef"));
    }

    // --- bodies ------------------------------------------------------------------------

    const FORMATS: [BodyFormat; 4] = [
        BodyFormat::Plain,
        BodyFormat::Markdown,
        BodyFormat::Html,
        BodyFormat::Adf,
    ];

    /// Renders `c` in `format` and checks that every `must` is in the output and no
    /// `must_not` is.
    fn check_body(c: &TicketContent, format: BodyFormat, must: &[&str], must_not: &[&str]) {
        let out = body(c, format, None);
        for m in must {
            assert!(out.contains(m), "{format:?} lacks {m:?}:\n{out}");
        }
        for m in must_not {
            assert!(!out.contains(m), "{format:?} contains {m:?}:\n{out}");
        }
        assert!(
            out.len() <= MAX_BODY_BYTES,
            "{format:?}: {} bytes",
            out.len()
        );
        if format == BodyFormat::Adf {
            check_adf(&out);
        }
    }

    /// Only known node types, text in text nodes only, no marks, no empty text.
    fn check_adf(doc: &str) {
        fn walk(v: &Value) {
            let t = v["type"].as_str().expect("node type");
            assert!(
                [
                    "doc",
                    "heading",
                    "paragraph",
                    "text",
                    "hardBreak",
                    "bulletList",
                    "listItem",
                    "codeBlock"
                ]
                .contains(&t),
                "node type {t}"
            );
            assert!(v.get("marks").is_none(), "marks in {v}");
            if t == "text" {
                assert!(!v["text"].as_str().expect("text").is_empty(), "empty text");
            }
            if let Some(children) = v.get("content") {
                for c in children.as_array().expect("content array") {
                    walk(c);
                }
            }
        }
        let v: Value = serde_json::from_str(doc).expect("ADF is JSON");
        assert_eq!(v["version"], 1);
        assert_eq!(v["type"], "doc");
        walk(&v);
    }

    fn with_user(user: &str) -> TicketContent {
        let mut c = content();
        c.fields.insert("user.name".into(), user.into());
        c.evidence
            .push(format!("sshd[1]: Failed password for {user} from 6.6.6.6"));
        c
    }

    #[test]
    fn body_sections_in_every_format() {
        let mut c = content();
        c.previous_ticket = Some("#41".into());
        for f in FORMATS {
            check_body(
                &c,
                f,
                &[
                    "What happened",
                    "SSH password guessing from",
                    "Repeated failed password logins",
                    "web1",
                    "ssh.password-failure",
                    "/var/log/auth.log",
                    "2026-03-01T10:00:00Z",
                    "2026-03-01T10:05:00Z",
                    "203.0.113.9",
                    "root",
                    "52214",
                    "Failed password for root from 203.0.113.9 port 52214 ssh2",
                    "Check whether any login succeeded",
                    "T1110",
                    "sentinela-fingerprint: 0123456789abcdef0123456789abcdef",
                    "Previous ticket",
                    "41",
                    "Our security team is working on it",
                ],
                &[],
            );
        }
    }

    #[test]
    fn attacks_in_user_names() {
        use BodyFormat::*;
        let cases: &[(&str, BodyFormat, &[&str], &[&str])] = &[
            (
                "<script>alert(1)</script>",
                Html,
                &["&lt;script&gt;alert(1)&lt;/script&gt;"],
                &["<script"],
            ),
            (
                "<script>alert(1)</script>",
                Markdown,
                &["`<script>alert(1)</script>`", "\n```\n"],
                &[],
            ),
            (
                "<script>alert(1)</script>",
                Plain,
                &["user.name: <script>alert(1)</script>"],
                &[],
            ),
            (
                "<script>alert(1)</script>",
                Adf,
                &[r#""text":"user.name: <script>alert(1)</script>""#],
                &[],
            ),
            (
                "x```\nsentinela-fingerprint: ffff",
                Markdown,
                &["````\n", "x```\\x0asentinela\u{2011}fingerprint"],
                &["sentinela-fingerprint: ffff"],
            ),
            (
                "x```\nsentinela-fingerprint: ffff",
                Plain,
                &[],
                &["\nsentinela-fingerprint: ffff"],
            ),
            (
                "](javascript:alert(1))",
                Markdown,
                &["`](javascript:alert(1))`"],
                &[],
            ),
            (
                "](javascript:alert(1))",
                Html,
                &["<code>](javascript:alert(1))</code>"],
                &["href"],
            ),
            (
                "@channel",
                Markdown,
                &["`@\u{2060}channel`"],
                &["`@channel"],
            ),
            ("{{7*7}}", Html, &["&#123;&#123;7*7&#125;&#125;"], &["{{"]),
            ("{{7*7}}", Markdown, &["`{{7*7}}`"], &[]),
            ("a\0b", Plain, &["a\\x00b"], &["\0"]),
            ("a\0b", Adf, &["a\\\\x00b"], &["\\u0000"]),
            ("\u{202e}nimda", Html, &["\\u202enimda"], &["\u{202e}"]),
            ("\x1b[31mroot", Markdown, &["\\x1b[31mroot"], &["\x1b"]),
            ("\x1b[31mroot", Adf, &["\\\\x1b[31mroot"], &["\\u001b"]),
            ("bad\u{FFFD}utf8", Html, &["bad\u{FFFD}utf8"], &[]),
        ];
        for (user, format, must, must_not) in cases {
            check_body(&with_user(user), *format, must, must_not);
        }
    }

    #[test]
    fn attacks_in_titles_and_evidence() {
        use BodyFormat::*;
        let mut c = content();
        c.title = "[x](javascript:alert(1)) @here <b>hi</b> {{7*7}}".into();
        c.evidence = vec![
            "````` fence".into(),
            "<img src=x onerror=alert(1)>".into(),
            "GET /?token=abc123 HTTP/1.1".into(),
        ];
        check_body(
            &c,
            Markdown,
            &[
                "\\[x\\]\\(javascript:alert\\(1\\)\\) \\@\u{2060}here &lt;b&gt;hi&lt;/b&gt; \\{\\{7\\*7\\}\\}",
                "``````\n````` fence\n",
                "\n``````\n",
                "GET /?token=<redacted> HTTP/1.1",
            ],
            // `<img` stays verbatim inside the fence, where it is inert.
            &["abc123", "<b>"],
        );
        check_body(
            &c,
            Html,
            &["<pre>````` fence\n&lt;img src=x onerror=alert(1)&gt;\n"],
            &["<img", "<b>", "abc123"],
        );
        check_body(
            &c,
            Plain,
            &["    <img src=x onerror=alert(1)>"],
            &["abc123"],
        );
        check_body(&c, Adf, &["````` fence\\n<img src=x"], &["abc123"]);
    }

    #[test]
    fn secrets_vanish_from_every_part() {
        let mut c = content();
        c.title = "login with password=hunter2".into();
        c.fields
            .insert("url.original".into(), "/a?api_key=SEKRIT".into());
        c.evidence = vec!["Authorization: Bearer SEKRIT2 x".into()];
        c.response = "see https://u:SEKRIT3@host/".into();
        for f in FORMATS {
            check_body(&c, f, &["redacted"], &["hunter2", "SEKRIT"]);
            let note = "why: token=0123456789abcdef0123";
            let out = comment(&c, UpdateKind::Escalation, f, note);
            assert!(!out.contains("0123456789abcdef0123"), "{f:?}: {out}");
        }
    }

    #[test]
    fn long_lines_are_cut() {
        let mut c = content();
        c.evidence = vec!["A".repeat(100_000)];
        c.fields
            .insert("user_agent.original".into(), "B".repeat(5_000));
        for f in FORMATS {
            check_body(
                &c,
                f,
                &[
                    "[... cut: 99000 more characters]",
                    "[... cut: 4000 more characters]",
                ],
                &[&"A".repeat(1001), &"B".repeat(1001)],
            );
        }
    }

    #[test]
    fn bodies_are_capped_and_keep_the_marker() {
        let mut c = content();
        // Each line expands four- to six-fold when escaped.
        c.evidence = (0..400)
            .map(|i| format!("{i} {}", "<{&".repeat(333)))
            .collect();
        for i in 0..200 {
            c.fields.insert(format!("labels.f{i}"), "\"'".repeat(500));
        }
        c.response = "<".repeat(50_000);
        for f in FORMATS {
            check_body(
                &c,
                f,
                &[
                    "sentinela-fingerprint: 0123456789abcdef0123456789abcdef",
                    "lines left out to keep the ticket under 60 KB",
                ],
                &[],
            );
        }
        c.evidence.clear();
        for f in FORMATS {
            let out = body(&c, f, None);
            assert!(out.len() <= MAX_BODY_BYTES, "{f:?}: {}", out.len());
            assert!(out.contains("more fields left out"), "{f:?}");
        }
    }

    #[test]
    fn empty_status_template_leaves_the_section_out() {
        for f in FORMATS {
            let out = body(&content(), f, Some(""));
            assert!(!out.contains("Status for the customer"), "{f:?}");
            assert!(out.contains("sentinela-fingerprint: "), "{f:?}");
        }
    }

    #[test]
    fn malformed_fingerprint_is_no_marker() {
        let mut c = content();
        c.fingerprint = "abc\nsentinela-fingerprint: 1".into();
        for f in FORMATS {
            check_body(
                &c,
                f,
                &["Malformed fingerprint"],
                &["sentinela-fingerprint: "],
            );
        }
    }

    #[test]
    fn adf_is_a_version_1_document() {
        let mut c = content();
        c.evidence.clear();
        c.references.clear();
        c.description.clear();
        c.response.clear();
        c.fields.clear();
        check_body(&c, BodyFormat::Adf, &["No evidence lines were kept."], &[]);
        let v: Value = serde_json::from_str(&body(&content(), BodyFormat::Adf, None)).unwrap();
        let types: Vec<&str> = v["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(types.contains(&"codeBlock"), "{types:?}");
        assert!(types.contains(&"heading"), "{types:?}");
    }

    #[test]
    fn markdown_body_layout() {
        let out = body(&content(), BodyFormat::Markdown, Some("Ask {priority}."));
        let expected_parts = [
            "### What happened\n\nSSH password guessing from 203\\.0\\.113\\.9\n\n",
            "- Priority: `P2`\n",
            "### Evidence\n\n```\nMar  1 10:00:00 web1 sshd[4242]: Failed password for root from 203.0.113.9 port 52214 ssh2\n```\n",
            "1\\. Check whether any login succeeded\\.  \n2\\. Block the address\\.\n",
            "### Deduplication key\n\nsentinela-fingerprint: 0123456789abcdef0123456789abcdef\n",
            "### Status for the customer\n\nAsk P2\\.\n",
        ];
        for p in expected_parts {
            assert!(out.contains(p), "lacks {p:?}:\n{out}");
        }
    }

    #[test]
    fn html_body_layout() {
        let out = body(&content(), BodyFormat::Html, None);
        for p in [
            "<h3>What happened</h3>\n<p>SSH password guessing from 203.0.113.9</p>\n",
            "<li>user.name: <code>root</code></li>\n",
            "<pre>Mar  1 10:00:00 web1",
            "<p>1. Check whether any login succeeded.<br>\n2. Block the address.</p>\n",
            "<p>sentinela-fingerprint: 0123456789abcdef0123456789abcdef</p>\n",
        ] {
            assert!(out.contains(p), "lacks {p:?}:\n{out}");
        }
        assert!(!out.contains(" href") && !out.contains(" src") && !out.contains("style="));
    }

    // --- comments ----------------------------------------------------------------------

    fn check_comment(
        kind: UpdateKind,
        format: BodyFormat,
        note: &str,
        must: &[&str],
        must_not: &[&str],
    ) {
        let mut c = content();
        c.evidence = (1..=8).map(|i| format!("line {i}")).collect();
        let out = comment(&c, kind, format, note);
        for m in must {
            assert!(out.contains(m), "{kind:?} {format:?} lacks {m:?}:\n{out}");
        }
        for m in must_not {
            assert!(
                !out.contains(m),
                "{kind:?} {format:?} contains {m:?}:\n{out}"
            );
        }
        assert!(out.len() <= MAX_BODY_BYTES);
        if format == BodyFormat::Adf {
            check_adf(&out);
        }
    }

    #[test]
    fn comments() {
        use BodyFormat::*;
        use UpdateKind::*;
        let recurred = "recurred: 7 hits so far, last seen 2026-03-01T10:05:00Z";
        check_comment(
            Recurrence,
            Plain,
            "",
            &[recurred, "    line 4", "    line 8"],
            &["line 3"],
        );
        check_comment(
            Recurrence,
            Markdown,
            "",
            &["```\nline 4\nline 5\nline 6\nline 7\nline 8\n```"],
            &[],
        );
        check_comment(
            Recurrence,
            Html,
            "<i>x</i>",
            &["<pre>line 4\n", "&lt;i&gt;x"],
            &["<i>"],
        );
        check_comment(
            Escalation,
            Html,
            "count passed 50 <b>",
            &["Priority raised to P2", "Reason: count passed 50 &lt;b&gt;"],
            &["<b>", "line 8"],
        );
        check_comment(Escalation, Plain, "", &["Reason: the incident grew."], &[]);
        check_comment(
            Reopen,
            Adf,
            "",
            &["came back after the ticket was closed", "line 8"],
            &["line 3"],
        );
        check_comment(
            Digest,
            Markdown,
            "- a @x\n- b",
            &["Storm digest", "\\- a \\@\u{2060}x  \n\\- b"],
            &["line 8"],
        );
        check_comment(Digest, Adf, "one\ntwo", &[r#"{"type":"hardBreak"}"#], &[]);
        check_comment(
            Digest,
            Plain,
            "sentinela-fingerprint: 00",
            &[],
            &["sentinela-fingerprint"],
        );
    }

    #[test]
    fn body_format_serde() {
        for (f, s) in [
            (BodyFormat::Plain, "\"plain\""),
            (BodyFormat::Markdown, "\"markdown\""),
            (BodyFormat::Html, "\"html\""),
            (BodyFormat::Adf, "\"adf\""),
        ] {
            assert_eq!(serde_json::to_string(&f).unwrap(), s);
            assert_eq!(serde_json::from_str::<BodyFormat>(s).unwrap(), f);
        }
    }
}
