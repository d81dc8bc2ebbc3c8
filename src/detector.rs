//! Detector files: their TOML format, validation and loading.
//!
//! A [`DetectorSet`] is built from the shipped pack (embedded in the binary by `build.rs`) and
//! from directories named in the config; a detector read later replaces a shipped one with the
//! same id. Every problem is reported with file, line and column ([`crate::error::Diagnostic`]).
//! The compiled patterns and their prefilter literals live here too; [`crate::detect`] turns
//! them into the matcher.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::error::{Diagnostic, Error, Location, Result};

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// Field names a pattern may capture: Elastic Common Schema names.
pub const KNOWN_FIELDS: &[&str] = &[
    "source.address",
    "source.ip",
    "source.port",
    "source.domain",
    "destination.address",
    "destination.ip",
    "destination.port",
    "user.name",
    "user.target.name",
    "user.id",
    "group.name",
    "url.original",
    "url.path",
    "http.request.method",
    "http.response.status_code",
    "http.version",
    "user_agent.original",
    "host.name",
    "process.name",
    "process.pid",
    "process.command_line",
    "email.from.address",
    "email.to.address",
    "server.address",
    "service.name",
    "event.reason",
    "error.message",
    "file.path",
    "rule.id",
    "container.id",
    "container.name",
    "orchestrator.namespace",
    "orchestrator.resource.name",
];

/// How bad an event is, before the asset it happened on is considered.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth recording, not worth a person's time alone.
    Info,
    /// Noise-like probing.
    Low,
    /// Targeted attempts: brute force, probes for known files.
    Medium,
    /// Attempts at privileged access, exploits of known vulnerabilities.
    High,
    /// Likely compromise.
    Critical,
}

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lowercase name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Incident class from the CERT.br / ENISA reference incident taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Spam, harmful speech.
    AbusiveContent,
    /// Malware, C2.
    MaliciousCode,
    /// Scanning, sniffing, social engineering.
    InformationGathering,
    /// Exploitation attempts, login attempts, new attack signatures.
    IntrusionAttempts,
    /// Privileged or unprivileged account compromise, application compromise.
    Intrusions,
    /// DoS, DDoS, sabotage, outage.
    Availability,
    /// Unauthorised access to or modification of information.
    InformationContentSecurity,
    /// Unauthorised use of resources, copyright, masquerade, phishing.
    Fraud,
    /// Weak crypto, open services, vulnerable systems.
    Vulnerable,
    /// Everything else.
    Other,
}

impl Category {
    /// The kebab-case name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::AbusiveContent => "abusive-content",
            Category::MaliciousCode => "malicious-code",
            Category::InformationGathering => "information-gathering",
            Category::IntrusionAttempts => "intrusion-attempts",
            Category::Intrusions => "intrusions",
            Category::Availability => "availability",
            Category::InformationContentSecurity => "information-content-security",
            Category::Fraud => "fraud",
            Category::Vulnerable => "vulnerable",
            Category::Other => "other",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `count` hits (or distinct values) within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// How many.
    pub count: u32,
    /// Within how long (`10m`, `1h`, `30s`).
    #[serde(deserialize_with = "de_duration")]
    pub window: Duration,
}

/// Sequence condition: a hit counts only after `count` hits of `detectors` by the same key
/// within `window`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct After {
    /// Detector ids whose hits are the "before".
    pub detectors: Vec<String>,
    /// How many of them.
    pub count: u32,
    /// Within how long before the hit.
    #[serde(deserialize_with = "de_duration")]
    pub window: Duration,
}

/// Parses a human duration (`10m`, `1h 30m`) for serde.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let dur = humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {s:?}: {e}; expected e.g. \"30s\", \"10m\", \"1h\""
        ))
    })?;
    if dur.is_zero() {
        return Err(serde::de::Error::custom(
            "duration must be greater than zero",
        ));
    }
    Ok(dur)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    detector: Vec<Spanned<RawDetector>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetector {
    id: Spanned<String>,
    title: Spanned<String>,
    #[serde(default)]
    description: String,
    category: Category,
    severity: Severity,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    response: String,
    patterns: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    literals: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    key: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    threshold: Option<Spanned<Threshold>>,
    #[serde(default)]
    distinct: Option<Spanned<String>>,
    #[serde(default)]
    after: Option<Spanned<After>>,
    #[serde(default)]
    examples: Vec<Spanned<RawExample>>,
    #[serde(default)]
    counterexamples: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExample {
    line: String,
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

/// A log line a detector must match, with fields it must yield.
#[derive(Debug, Clone)]
pub struct Example {
    /// The line.
    pub line: String,
    /// Fields that must be captured with exactly these values (others may be captured too).
    pub fields: BTreeMap<String, String>,
    /// Where the example is written.
    pub location: Location,
}

/// A line a detector must not match.
#[derive(Debug, Clone)]
pub struct Counterexample {
    /// The line.
    pub line: String,
    /// Where it is written.
    pub location: Location,
}

/// One compiled pattern of a detector.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The regex source as written.
    pub source: String,
    /// Compiled for bytes input: log lines need not be UTF-8.
    pub regex: regex::bytes::Regex,
    /// Prefilter literals: one of them occurs in every match. Empty: the pattern runs on
    /// every line.
    pub literals: Vec<Vec<u8>>,
    /// Search the literals ASCII-case-insensitively (they are stored lowercased).
    pub case_insensitive: bool,
    /// Where the pattern is written.
    pub location: Location,
}

/// A validated, compiled detector.
#[derive(Debug, Clone)]
pub struct Detector {
    /// Stable dotted id, e.g. `ssh.password-failure`.
    pub id: String,
    /// Title template with `{field}` placeholders.
    pub title: String,
    /// What it detects.
    pub description: String,
    /// Taxonomy class.
    pub category: Category,
    /// Severity before asset criticality.
    pub severity: Severity,
    /// ATT&CK ids, CVEs, URLs.
    pub references: Vec<String>,
    /// The response playbook tickets carry.
    pub response: String,
    /// Compiled patterns; the first that matches a line wins.
    pub patterns: Vec<Pattern>,
    /// Fields identifying the actor; empty means one incident for all hits.
    pub key: Vec<String>,
    /// Hits (or distinct values) per key within a window before an incident opens.
    pub threshold: Option<Threshold>,
    /// Count distinct values of this field instead of hits.
    pub distinct: Option<String>,
    /// Sequence condition.
    pub after: Option<After>,
    /// Positive examples.
    pub examples: Vec<Example>,
    /// Negative examples.
    pub counterexamples: Vec<Counterexample>,
    /// Where the detector is defined.
    pub location: Location,
}

/// All loaded detectors plus the warnings found while loading them.
#[derive(Debug, Clone, Default)]
pub struct DetectorSet {
    /// Detectors in load order (shipped first, overrides in place).
    pub detectors: Vec<Detector>,
    /// Non-fatal findings (e.g. patterns without a usable prefilter literal).
    pub warnings: Vec<Diagnostic>,
}

/// The origin of detector text, for error locations.
fn builtin_path(name: &str) -> PathBuf {
    PathBuf::from(format!("<builtin>/detectors/{name}"))
}

impl DetectorSet {
    /// The shipped pack, embedded in the binary.
    pub fn builtin() -> Result<DetectorSet> {
        let mut set = DetectorSet::default();
        let mut errors = Vec::new();
        for (name, text) in BUILTIN_DETECTORS {
            match parse_file(&builtin_path(name), text) {
                Ok((dets, warns)) => {
                    set.warnings.extend(warns);
                    set.add(dets, false, &mut errors);
                }
                Err(Error::Invalid(d)) => errors.extend(d),
                Err(e) => return Err(e),
            }
        }
        set.finish(errors)
    }

    /// Loads `*.toml` detector files from `paths` (files or directories, in order) on top of
    /// `self`; a detector whose id already exists replaces it.
    pub fn extend_from_paths(mut self, paths: &[PathBuf]) -> Result<DetectorSet> {
        let mut errors = Vec::new();
        for p in paths {
            for file in toml_files(p)? {
                let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
                match parse_file(&file, &text) {
                    Ok((dets, warns)) => {
                        self.warnings.extend(warns);
                        self.add(dets, true, &mut errors);
                    }
                    Err(Error::Invalid(d)) => errors.extend(d),
                    Err(e) => return Err(e),
                }
            }
        }
        self.finish(errors)
    }

    /// Loads only the given paths (no shipped pack).
    pub fn from_paths(paths: &[PathBuf]) -> Result<DetectorSet> {
        DetectorSet::default().extend_from_paths(paths)
    }

    /// Removes the detectors with these ids; unknown ids are an error so typos are noticed.
    pub fn disable(&mut self, ids: &[String]) -> std::result::Result<(), String> {
        for id in ids {
            let before = self.detectors.len();
            self.detectors.retain(|d| &d.id != id);
            if self.detectors.len() == before {
                return Err(format!("cannot disable unknown detector {id:?}"));
            }
        }
        Ok(())
    }

    fn add(&mut self, dets: Vec<Detector>, may_override: bool, errors: &mut Vec<Diagnostic>) {
        let mut seen_here: HashSet<String> = HashSet::new();
        for d in dets {
            if !seen_here.insert(d.id.clone()) {
                errors.push(Diagnostic {
                    location: d.location.clone(),
                    message: format!("duplicate detector id {:?} in the same file", d.id),
                });
                continue;
            }
            match self.detectors.iter().position(|x| x.id == d.id) {
                Some(i) if may_override => self.detectors[i] = d,
                Some(i) => errors.push(Diagnostic {
                    location: d.location.clone(),
                    message: format!(
                        "duplicate detector id {:?} (also defined at {})",
                        d.id, self.detectors[i].location
                    ),
                }),
                None => self.detectors.push(d),
            }
        }
    }

    /// Cross-detector checks (sequence references), then returns the set or all errors.
    fn finish(self, mut errors: Vec<Diagnostic>) -> Result<DetectorSet> {
        let ids: HashSet<&str> = self.detectors.iter().map(|d| d.id.as_str()).collect();
        for d in &self.detectors {
            if let Some(after) = &d.after {
                for other in &after.detectors {
                    if !ids.contains(other.as_str()) {
                        errors.push(Diagnostic {
                            location: d.location.clone(),
                            message: format!(
                                "detector {:?}: `after.detectors` names unknown detector {other:?}",
                                d.id
                            ),
                        });
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(Error::Invalid(errors))
        }
    }

    /// Index of a detector by id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.detectors.iter().position(|d| d.id == id)
    }
}

/// `*.toml` files of a path: the file itself, or a directory's files sorted by name.
fn toml_files(p: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
    if meta.is_file() {
        return Ok(vec![p.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(p)
        .map_err(|e| Error::io(p, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| f.extension().is_some_and(|x| x == "toml") && f.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Parses and validates one detector file.
pub fn parse_file(path: &Path, text: &str) -> Result<(Vec<Detector>, Vec<Diagnostic>)> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let mut err = Error::from_toml(path, text, &e);
        if let Error::Invalid(d) = &mut err {
            if e.message().contains("unknown field") && e.message().contains("expected `line` or `fields`") {
                d[0].message.push_str(
                    " (in TOML, keys written after a [[detector.examples]] header belong to that example: \
                     put them before the first [[detector.examples]] of the detector)",
                );
            }
        }
        err
    })?;
    let at = |offset: usize| Location::from_offset(path, text, offset);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    for sd in raw.detector {
        let sd_span = sd.span();
        let loc = at(sd_span.start);
        let r = sd.into_inner();
        let mut err = |offset: usize, msg: String| {
            errors.push(Diagnostic {
                location: at(offset),
                message: format!("detector {:?}: {msg}", r.id.get_ref()),
            })
        };
        let id = r.id.get_ref().clone();
        if !valid_id(&id) {
            err(
                r.id.span().start,
                "invalid id; expected lowercase dotted words such as \"ssh.password-failure\""
                    .into(),
            );
        }
        if r.patterns.get_ref().is_empty() {
            err(
                r.patterns.span().start,
                "`patterns` is empty; expected at least one regex".into(),
            );
        }
        let mut patterns = Vec::new();
        let mut captured_by_all: Option<HashSet<String>> = None;
        let mut captured_by_any: HashSet<String> = HashSet::new();
        for sp in r.patterns.get_ref() {
            let ploc = at(sp.span().start);
            let src = sp.get_ref();
            // Unicode off: `.` and `\S` then match any byte, so invalid UTF-8 in attacker text
            // (a user name) cannot make a pattern miss or stop a greedy capture early.
            let regex = match regex::bytes::RegexBuilder::new(src)
                .unicode(false)
                .size_limit(1 << 22)
                .dfa_size_limit(1 << 22)
                .build()
            {
                Ok(re) => re,
                Err(e) => {
                    err(sp.span().start, format!("invalid regex: {e}"));
                    continue;
                }
            };
            let names: HashSet<String> =
                regex.capture_names().flatten().map(String::from).collect();
            for n in &names {
                if !KNOWN_FIELDS.contains(&n.as_str()) {
                    err(
                        sp.span().start,
                        format!(
                            "capture group {n:?} is not a known field; expected one of: {}",
                            KNOWN_FIELDS.join(", ")
                        ),
                    );
                }
            }
            captured_by_any.extend(names.iter().cloned());
            captured_by_all = Some(match captured_by_all {
                None => names,
                Some(all) => all.intersection(&names).cloned().collect(),
            });
            let Literals {
                set: mut literals,
                case_insensitive,
            } = match &r.literals {
                Some(lits) => {
                    let ci = src.contains("(?i");
                    Literals {
                        set: lits
                            .iter()
                            .map(|l| {
                                let b = l.get_ref().as_bytes();
                                if ci {
                                    b.to_ascii_lowercase()
                                } else {
                                    b.to_vec()
                                }
                            })
                            .collect(),
                        case_insensitive: ci,
                    }
                }
                None => derive_literals(src),
            };
            // Literals shorter than 3 bytes occur on nearly every line: the automaton would
            // report them constantly, so such a pattern simply runs on every line.
            if literals.iter().any(|l| l.len() < 3) {
                warnings.push(Diagnostic {
                    location: ploc.clone(),
                    message: format!(
                        "detector {id:?}: pattern has no prefilter literal set whose members all have 3+ bytes, so it runs on every line ({}); add `literals` or a distinctive fixed string",
                        if literals.is_empty() {
                            "none found".to_string()
                        } else {
                            format!(
                                "best: {:?}",
                                literals.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect::<Vec<_>>()
                            )
                        }
                    ),
                });
                literals.clear();
            }
            patterns.push(Pattern {
                source: src.clone(),
                regex,
                literals,
                case_insensitive,
                location: ploc,
            });
        }
        if let Some(lits) = &r.literals {
            for l in lits {
                if l.get_ref().is_empty() || l.get_ref().contains('\n') {
                    err(
                        l.span().start,
                        "literals must be non-empty single-line strings".into(),
                    );
                }
            }
        }
        let all = captured_by_all.unwrap_or_default();
        let key_span = r
            .key
            .as_ref()
            .map_or(loc_offset(&sd_span), |k| k.span().start);
        let key: Vec<String> = r.key.map(Spanned::into_inner).unwrap_or_default();
        for k in &key {
            if !all.contains(k) {
                err(
                    key_span,
                    format!("key field {k:?} is not captured by every pattern"),
                );
            }
        }
        for ph in placeholders(r.title.get_ref()) {
            // `host.name` also comes from the syslog header, so it is always allowed.
            if ph != "host.name" && !captured_by_any.contains(ph) {
                err(
                    r.title.span().start,
                    format!("title placeholder {{{ph}}} is not captured by any pattern"),
                );
            }
        }
        if let Some(t) = &r.threshold {
            if t.get_ref().count == 0 {
                err(t.span().start, "threshold.count must be at least 1".into());
            }
        }
        if let Some(dist) = &r.distinct {
            if r.threshold.is_none() {
                err(dist.span().start, "`distinct` needs a `threshold`".into());
            }
            if !all.contains(dist.get_ref()) {
                err(
                    dist.span().start,
                    format!(
                        "distinct field {:?} is not captured by every pattern",
                        dist.get_ref()
                    ),
                );
            }
        }
        if let Some(a) = &r.after {
            if r.threshold.is_some() {
                err(
                    a.span().start,
                    "`after` and `threshold` cannot be combined".into(),
                );
            }
            if a.get_ref().count == 0 || a.get_ref().detectors.is_empty() {
                err(
                    a.span().start,
                    "`after` needs detectors and a count of at least 1".into(),
                );
            }
            if key.is_empty() {
                err(
                    a.span().start,
                    "`after` needs a `key` to relate the hits".into(),
                );
            }
        }
        out.push(Detector {
            id,
            title: r.title.into_inner(),
            description: r.description,
            category: r.category,
            severity: r.severity,
            references: r.references,
            response: r.response,
            patterns,
            key,
            threshold: r.threshold.map(Spanned::into_inner),
            distinct: r.distinct.map(Spanned::into_inner),
            after: r.after.map(Spanned::into_inner),
            examples: r
                .examples
                .into_iter()
                .map(|e| {
                    let location = at(e.span().start);
                    let e = e.into_inner();
                    Example {
                        line: e.line,
                        fields: e.fields,
                        location,
                    }
                })
                .collect(),
            counterexamples: r
                .counterexamples
                .into_iter()
                .map(|c| Counterexample {
                    location: at(c.span().start),
                    line: c.into_inner(),
                })
                .collect(),
            location: loc,
        });
    }
    if errors.is_empty() {
        Ok((out, warnings))
    } else {
        Err(Error::Invalid(errors))
    }
}

fn loc_offset(span: &std::ops::Range<usize>) -> usize {
    span.start
}

fn valid_id(id: &str) -> bool {
    let mut parts = id.split('.');
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    parts.clone().count() >= 2 && parts.all(ok_part)
}

/// `{field}` placeholders of a title template.
pub fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name))
}

/// Prefilter literals of a pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Literals {
    /// One of these occurs in every match.
    pub set: Vec<Vec<u8>>,
    /// The set is to be searched ASCII-case-insensitively (it was derived from a
    /// case-insensitive pattern and is stored lowercased).
    pub case_insensitive: bool,
}

/// Derives prefilter literals from a regex: a set of strings one of which occurs in every match,
/// preferring few, distinctive ones. Empty when none can be found (the pattern then runs on
/// every line).
pub fn derive_literals(pattern: &str) -> Literals {
    let hir = match regex_syntax::ParserBuilder::new()
        .utf8(false)
        .unicode(false)
        .build()
        .parse(pattern)
    {
        Ok(h) => h,
        Err(_) => return Literals::default(),
    };
    // `(?i)` turns letters into classes such as `[Uu]`, which multiply into thousands of
    // case variants; fold them back into lowercase letters and search case-insensitively.
    let mut case_insensitive = false;
    let hir = fold_case(&hir, &mut case_insensitive);
    let mut lits = required(&hir).unwrap_or_default();
    if case_insensitive {
        for l in &mut lits {
            l.make_ascii_lowercase();
        }
    }
    lits.sort();
    lits.dedup();
    // A literal that contains another is redundant: the shorter one is found anyway.
    let all = lits.clone();
    lits.retain(|l| {
        !all.iter()
            .any(|o| o.len() < l.len() && memchr::memmem::find(l, o).is_some())
    });
    Literals {
        set: lits,
        case_insensitive,
    }
}

/// Replaces each two-member class of an ASCII letter and its other case (`[Uu]`) with the
/// lowercase letter; sets `folded` when it did.
fn fold_case(hir: &Hir, folded: &mut bool) -> Hir {
    use regex_syntax::hir::{Capture, Class, Repetition};
    match hir.kind() {
        HirKind::Class(Class::Bytes(c)) => {
            let r = c.ranges();
            if r.len() == 2
                && r[0].start() == r[0].end()
                && r[1].start() == r[1].end()
                && r[0].start().is_ascii_uppercase()
                && r[1].start() == r[0].start().to_ascii_lowercase()
            {
                *folded = true;
                Hir::literal([r[1].start()])
            } else {
                hir.clone()
            }
        }
        HirKind::Class(Class::Unicode(c)) => {
            let r = c.ranges();
            if r.len() == 2
                && r[0].start() == r[0].end()
                && r[1].start() == r[1].end()
                && r[0].start().is_ascii_uppercase()
                && r[1].start() == r[0].start().to_ascii_lowercase()
            {
                *folded = true;
                Hir::literal([r[1].start() as u8])
            } else {
                hir.clone()
            }
        }
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(|s| fold_case(s, folded)).collect()),
        HirKind::Alternation(subs) => {
            Hir::alternation(subs.iter().map(|s| fold_case(s, folded)).collect())
        }
        HirKind::Capture(c) => Hir::capture(Capture {
            index: c.index,
            name: c.name.clone(),
            sub: Box::new(fold_case(&c.sub, folded)),
        }),
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            min: r.min,
            max: r.max,
            greedy: r.greedy,
            sub: Box::new(fold_case(&r.sub, folded)),
        }),
        _ => hir.clone(),
    }
}

fn lowered(lits: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut lower: Vec<Vec<u8>> = lits.iter().map(|l| l.to_ascii_lowercase()).collect();
    lower.sort();
    lower.dedup();
    lower
}

/// How distinctive a literal is: letters count fully, other bytes a quarter. Log lines are
/// full of digits and punctuation (timestamps, addresses), so ` [01/` is a poor prefilter
/// literal even though it is long, while `nmap` is a good one.
fn quality(lit: &[u8]) -> usize {
    let letters = lit.iter().filter(|b| b.is_ascii_alphabetic()).count();
    letters + (lit.len() - letters) / 4
}

/// Scores a literal set: its least distinctive member first (8 is distinctive enough), then
/// fewer members (case variants counted once) make a smaller, faster automaton, then longer.
fn score(lits: &[Vec<u8>]) -> (usize, isize, usize) {
    let worst = lits.iter().map(|l| quality(l)).min().unwrap_or(0);
    let min = lits.iter().map(Vec::len).min().unwrap_or(0);
    (worst.min(8), -(lowered(lits).len() as isize), min)
}

/// A candidate literal set and its [`score`], computed once.
type Scored = (Score, Vec<Vec<u8>>);
type Score = (usize, isize, usize);

fn scored(lits: Option<Vec<Vec<u8>>>) -> Option<Scored> {
    lits.map(|l| (score(&l), l))
}

/// The better of two candidates; `a` on a tie.
fn better(a: Option<Scored>, b: Option<Scored>) -> Option<Scored> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The prefixes regex-syntax extracts for `hir`, when finite and free of the empty string:
/// then every match of `hir` starts with one of them.
fn extracted(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    literals_of(&prefixes(hir))
}

fn prefixes(hir: &Hir) -> regex_syntax::hir::literal::Seq {
    Extractor::new()
        .kind(ExtractKind::Prefix)
        .limit_total(512)
        .extract(hir)
}

fn literals_of(seq: &regex_syntax::hir::literal::Seq) -> Option<Vec<Vec<u8>>> {
    let lits = seq.literals()?;
    if lits.is_empty() || lits.len() > 256 || lits.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    if lits.iter().any(|l| l.as_bytes().contains(&b'\n')) {
        return None;
    }
    Some(lits.iter().map(|l| l.as_bytes().to_vec()).collect())
}

/// A literal set required by every match of `hir`, the best found.
fn required(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    required_scored(hir).map(|(_, lits)| lits)
}

fn required_scored(hir: &Hir) -> Option<Scored> {
    let mut best = scored(extracted(hir));
    match hir.kind() {
        HirKind::Capture(c) => best = better(best, required_scored(&c.sub)),
        HirKind::Repetition(r) if r.min >= 1 => best = better(best, required_scored(&r.sub)),
        HirKind::Concat(subs) => {
            for i in 0..subs.len() {
                best = better(best, required_scored(&subs[i]));
                // The prefixes of a run of elements stop growing once all of them are inexact
                // (regex-syntax crosses only exact ones): longer runs then yield the same.
                if prefixes(&subs[i]).is_inexact() {
                    continue;
                }
                for j in (i + 2)..=subs.len().min(i + 6) {
                    let seq = prefixes(&Hir::concat(subs[i..j].to_vec()));
                    best = better(best, scored(literals_of(&seq)));
                    if seq.is_inexact() {
                        break;
                    }
                }
            }
        }
        HirKind::Alternation(subs) => {
            let mut union = Vec::new();
            for s in subs {
                union.extend(required_scored(s)?.1);
            }
            if union.len() <= 256 {
                best = better(best, scored(Some(union)));
            }
        }
        _ => {}
    }
    best
}

/// Detectors whose examples failed, with what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleFailure {
    /// Detector id.
    pub detector: String,
    /// Where the example is written.
    pub location: Location,
    /// What went wrong, as a readable diff.
    pub message: String,
}

/// Runs every detector's examples and counterexamples through `matcher` (the full matcher, so
/// that the prefilter is tested too). Returns the failures and the number of checks run.
pub fn run_examples(
    set: &DetectorSet,
    matcher: &crate::detect::Matcher,
) -> (Vec<ExampleFailure>, usize) {
    let mut failures = Vec::new();
    let mut checks = 0;
    let mut scratch = matcher.scratch();
    for (di, d) in set.detectors.iter().enumerate() {
        for ex in &d.examples {
            checks += 1;
            let hits = matcher.match_line(ex.line.as_bytes(), &mut scratch);
            let Some(fields) = hits.into_iter().find(|h| h.0 == di).map(|h| h.1) else {
                failures.push(ExampleFailure {
                    detector: d.id.clone(),
                    location: ex.location.clone(),
                    message: format!("expected a match, got none\n    line: {}", ex.line),
                });
                continue;
            };
            let got: HashMap<&str, &str> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut diff = String::new();
            for (k, want) in &ex.fields {
                match got.get(k.as_str()) {
                    Some(v) if v == want => {}
                    Some(v) => diff.push_str(&format!("\n    {k}: expected {want:?}, got {v:?}")),
                    None => diff.push_str(&format!("\n    {k}: expected {want:?}, not captured")),
                }
            }
            if !diff.is_empty() {
                failures.push(ExampleFailure {
                    detector: d.id.clone(),
                    location: ex.location.clone(),
                    message: format!("fields differ{diff}\n    line: {}", ex.line),
                });
            }
        }
        for cx in &d.counterexamples {
            checks += 1;
            let hits = matcher.match_line(cx.line.as_bytes(), &mut scratch);
            if let Some((_, fields)) = hits.into_iter().find(|h| h.0 == di) {
                failures.push(ExampleFailure {
                    detector: d.id.clone(),
                    location: cx.location.clone(),
                    message: format!(
                        "counterexample matched (fields {fields:?})\n    line: {}",
                        cx.line
                    ),
                });
            }
        }
    }
    (failures, checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_derivation_picks_required_distinctive_strings() {
        // (pattern, expected literal set, case-insensitive)
        let cases: &[(&str, &[&str], bool)] = &[
            (
                r"Failed password for (?P<u>.*) from (?P<a>\S+) port \d+$",
                &["Failed password for "],
                false,
            ),
            // Both " from " and "]: Invalid user " are required; the longer wins.
            (
                r"\bsshd\[\d+\]: Invalid user (?P<u>.*) from (?P<a>\S+)",
                &["]: Invalid user "],
                false,
            ),
            (r"(?:foo|barbaz) end", &["barbaz end", "foo end"], false),
            (r"(?i)union\s+select", &["select"], true),
            (
                r"(?i)(?:union|information_schema|benchmark\()",
                &["benchmark(", "information_schema", "union"],
                true,
            ),
            (r"(?:\.\./|%2e%2e%2f)", &["%2e%2e%2f", "../"], false),
            (r"^\S+ \S+$", &[" "], false),
            (
                r"\d+",
                &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
                false,
            ),
        ];
        for (pat, want, ci) in cases {
            let got = derive_literals(pat);
            let mut g: Vec<String> = got
                .set
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            g.sort();
            let mut w: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            w.sort();
            assert_eq!((g, got.case_insensitive), (w, *ci), "{pat}");
        }
    }

    fn parse_err(text: &str) -> String {
        match parse_file(Path::new("d.toml"), text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    const GOOD: &str = r#"
[[detector]]
id = "t.one"
title = "x from {source.address}"
category = "intrusion-attempts"
severity = "medium"
patterns = ['''Failed login from (?P<source.address>\S+)$''']
key = ["source.address"]
threshold = { count = 3, window = "10m" }
"#;

    #[test]
    fn a_valid_file_parses() {
        let (dets, warns) = parse_file(Path::new("d.toml"), GOOD).unwrap();
        assert_eq!(dets.len(), 1);
        assert!(warns.is_empty());
        assert_eq!(dets[0].threshold.unwrap().window, Duration::from_secs(600));
    }

    #[test]
    fn errors_name_file_line_column_and_expectation() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "severity = \"medium\"",
                "severity = \"urgent\"",
                "d.toml:6:12: unknown variant `urgent`",
            ),
            (
                "Failed login from",
                "Failed (login from",
                "d.toml:7:13: detector \"t.one\": invalid regex",
            ),
            (
                "window = \"10m\"",
                "window = \"ten\"",
                "d.toml:9:35: invalid duration \"ten\"",
            ),
            (
                "key = [\"source.address\"]",
                "key = [\"user.name\"]",
                "d.toml:8:7: detector \"t.one\": key field \"user.name\" is not captured",
            ),
            (
                "title = \"x from {source.address}\"",
                "title = \"x {nope}\"",
                "d.toml:4:9: detector \"t.one\": title placeholder {nope}",
            ),
            (
                "id = \"t.one\"",
                "id = \"Bad Id\"",
                "d.toml:3:6: detector \"Bad Id\": invalid id",
            ),
            (
                "severity = \"medium\"",
                "severity = \"medium\"\ncolour = 1",
                "d.toml:7:1: unknown field `colour`",
            ),
            (
                "(?P<source.address>",
                "(?P<src>",
                "capture group \"src\" is not a known field",
            ),
        ];
        for (from, to, want) in cases {
            let text = GOOD.replacen(from, to, 1);
            let got = parse_err(&text);
            assert!(
                got.contains(want),
                "replacing {from:?}:\n got: {got}\nwant: {want}"
            );
        }
    }

    #[test]
    fn malformed_toml_is_located() {
        let got = parse_err("[[detector]]\nid = \"a.b\"\ntitle = \"unterminated\n");
        assert!(got.starts_with("d.toml:3:"), "{got}");
    }

    #[test]
    fn overrides_replace_shipped_detectors_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("a.toml");
        std::fs::write(&base, GOOD).unwrap();
        let over = dir.path().join("b.toml");
        std::fs::write(
            &over,
            GOOD.replace("severity = \"medium\"", "severity = \"high\""),
        )
        .unwrap();
        let set = DetectorSet::from_paths(std::slice::from_ref(&base)).unwrap();
        assert_eq!(set.detectors[0].severity, Severity::Medium);
        let set = set.extend_from_paths(&[over]).unwrap();
        assert_eq!(set.detectors.len(), 1);
        assert_eq!(set.detectors[0].severity, Severity::High);
        // The same id twice in one load of the shipped kind is an error.
        let twice = format!("{GOOD}\n{GOOD}");
        std::fs::write(&base, twice).unwrap();
        let err = DetectorSet::from_paths(&[base]).unwrap_err().to_string();
        assert!(err.contains("duplicate detector id \"t.one\""), "{err}");
    }
}
