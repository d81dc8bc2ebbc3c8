//! The TOML config: one struct tree, `deny_unknown_fields` everywhere, defaults in one place
//! ([`Config::default`] is the shipped `config/sentinela.toml`), and one validation path
//! ([`Config::parse`] then [`Config::build`]) shared by `check`, start-up and reload.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSetBuilder};
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::detector::{DetectorSet, Severity};
use crate::error::{Diagnostic, Error, Location, Result};
use crate::policy::{Allow, Asset, Criticality, Matrix, Policy, Priority};
use crate::timestamp::Zone;

/// The shipped example config, embedded so the binary works when installed alone.
pub const DEFAULT_CONFIG: &str = include_str!("../config/sentinela.toml");

/// Where the default config is looked for when `--config` is not given.
pub const SYSTEM_CONFIG: &str = "/etc/sentinela/sentinela.toml";

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Which detectors to load.
    #[serde(default)]
    pub detectors: DetectorsSection,
    /// Matching and correlation limits.
    #[serde(default)]
    pub engine: EngineSection,
    /// The priority matrix.
    #[serde(default)]
    pub priority: PrioritySection,
    /// Asset criticality.
    #[serde(default, rename = "asset")]
    pub assets: Vec<AssetSection>,
    /// Suppressions.
    #[serde(default)]
    pub allowlist: AllowlistSection,
    /// Where the daemon reads logs (`sentinela run`).
    #[serde(default, rename = "source")]
    pub sources: SourcesSection,
    /// Durable state of the daemon.
    #[serde(default)]
    pub state: StateSection,
    /// The daemon's HTTP endpoints (health, readiness, metrics).
    #[serde(default)]
    pub http: HttpSection,
    /// Help desks that receive tickets (`[[helpdesk]]`).
    #[serde(default, rename = "helpdesk")]
    pub helpdesks: Vec<crate::ticket::adapter::HelpdeskConfig>,
    /// Ticket lifecycle and flood control.
    #[serde(default)]
    pub tickets: crate::ticket::lifecycle::TicketsConfig,
}

/// `[source]`: lists of sources by kind.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourcesSection {
    /// `[[source.file]]`
    #[serde(default)]
    pub file: Vec<FileSourceConfig>,
    /// `[[source.journald]]`
    #[serde(default)]
    pub journald: Vec<JournaldSourceConfig>,
    /// `[[source.syslog]]`
    #[serde(default)]
    pub syslog: Vec<SyslogSourceConfig>,
}

/// Where to start reading a stream seen for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Read what is already there.
    Beginning,
    /// Only what is written from now on.
    #[default]
    End,
}

/// How the lines of a file are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// One log line per line.
    #[default]
    Plain,
    /// Docker `json-file`: `{"log":"...\n","stream":"stdout","time":"..."}` per line.
    Docker,
    /// Kubernetes CRI: `TIME STREAM P|F MESSAGE`, partial lines reassembled.
    Cri,
}

/// `[[source.file]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Name shown in metrics and `sentinela state`.
    pub name: String,
    /// Glob patterns of files to follow (`/var/log/auth.log*`). Include the rotated names so
    /// that a renamed file is drained to its end even after a restart.
    pub include: Vec<Spanned<String>>,
    /// Glob patterns to leave out. Compressed files (`.gz`, `.xz`, `.bz2`, `.zst`) are always
    /// left out.
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// For files seen the first time when the daemon starts with no state: read them from the
    /// `beginning` or from the `end`. Files that appear later are always read from the start.
    #[serde(default)]
    pub start_at: StartAt,
    /// Line encoding.
    #[serde(default)]
    pub format: FileFormat,
    /// How often to look for new data and new files when no change event arrives.
    #[serde(
        default = "default_poll",
        deserialize_with = "crate::detector::de_duration"
    )]
    pub poll_interval: std::time::Duration,
}

fn default_poll() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}

/// `[[source.journald]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournaldSourceConfig {
    /// Name shown in metrics and `sentinela state`; also the key of the stored cursor.
    pub name: String,
    /// journalctl matches such as `_SYSTEMD_UNIT=sshd.service`.
    #[serde(default)]
    pub matches: Vec<String>,
    /// Read journal files from this directory instead of the system journal.
    #[serde(default)]
    pub directory: Option<PathBuf>,
    /// Without a stored cursor: start at the `beginning` of the journal or its `end`.
    #[serde(default)]
    pub start_at: StartAt,
    /// The journalctl binary.
    #[serde(default = "default_journalctl")]
    pub journalctl: PathBuf,
}

fn default_journalctl() -> PathBuf {
    PathBuf::from("journalctl")
}

/// `[[source.syslog]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSourceConfig {
    /// Name shown in metrics and incidents.
    pub name: String,
    /// UDP listen address, e.g. `127.0.0.1:5514`.
    #[serde(default)]
    pub udp: Option<Spanned<String>>,
    /// TCP listen address (RFC 6587: octet counting or newline framing).
    #[serde(default)]
    pub tcp: Option<Spanned<String>>,
    /// Longer messages are cut (and counted).
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Concurrent TCP connections; more are refused (and counted).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_max_message() -> usize {
    64 * 1024
}

fn default_max_connections() -> usize {
    256
}

/// `[state]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// Directory of the state file (`state.db`). systemd's StateDirectory sets
    /// `STATE_DIRECTORY`, which is used when this is not set.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// How often the pipeline commits (positions and incidents in one transaction).
    #[serde(
        default = "default_commit",
        deserialize_with = "crate::detector::de_duration"
    )]
    pub commit_interval: std::time::Duration,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            dir: None,
            commit_interval: default_commit(),
        }
    }
}

fn default_commit() -> std::time::Duration {
    std::time::Duration::from_millis(200)
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Listen address for `/healthz`, `/readyz` and `/metrics`; empty turns them off.
    #[serde(default = "default_http")]
    pub listen: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: default_http(),
        }
    }
}

fn default_http() -> String {
    "127.0.0.1:9717".into()
}

/// `[detectors]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorsSection {
    /// Load the shipped pack (embedded in the binary).
    #[serde(default = "yes")]
    pub builtin: bool,
    /// Files or directories of local detectors, loaded after the shipped pack; a detector with
    /// a shipped id replaces it.
    #[serde(default)]
    pub dirs: Vec<Spanned<PathBuf>>,
    /// Ids of detectors to turn off.
    #[serde(default)]
    pub disabled: Vec<Spanned<String>>,
}

impl Default for DetectorsSection {
    fn default() -> Self {
        DetectorsSection {
            builtin: true,
            dirs: Vec::new(),
            disabled: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// `[engine]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Longer lines are cut to this many bytes for matching (and counted).
    pub max_line_bytes: usize,
    /// Cap on actor keys tracked for thresholds, over all detectors. Keys are attacker-chosen,
    /// so this bounds memory; the least recently used key is evicted (and counted).
    pub max_tracked_keys: usize,
    /// Evidence lines kept at the start and at the end of each incident.
    pub evidence_lines: usize,
    /// Evidence lines are cut to this many bytes.
    pub evidence_line_bytes: usize,
    /// Zone for timestamps without one (RFC 3164 syslog): `local`, `UTC` or `+02:00`.
    pub timezone: Spanned<String>,
    /// An incident quiet this long (by event time) is closed locally: it leaves memory (the
    /// state store keeps it), help desks that resolve on close (PagerDuty) are told, and a
    /// later attack must pass the detector's threshold again before the ticket hears of it.
    #[serde(deserialize_with = "crate::detector::de_duration")]
    pub close_after: Duration,
    /// Cap on incidents held in memory. Keys are attacker-chosen, so a flood of distinct
    /// sources opens unbounded incidents: past the cap the least recently seen leave memory
    /// (kept in the state store, and continued there if they recur).
    pub max_open_incidents: usize,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            max_line_bytes: 64 * 1024,
            max_tracked_keys: 100_000,
            evidence_lines: 3,
            evidence_line_bytes: 512,
            timezone: Spanned::new(0..0, "local".into()),
            close_after: Duration::from_secs(24 * 3600),
            max_open_incidents: 20_000,
        }
    }
}

/// `[priority]`: rows by severity, each a table from criticality to priority. Missing cells keep
/// the default matrix.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PrioritySection {
    /// `matrix.high = { critical = "P1", high = "P2" }`
    #[serde(default)]
    pub matrix: BTreeMap<Severity, BTreeMap<Criticality, Priority>>,
}

/// `[[asset]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSection {
    /// Shown in tickets.
    pub name: String,
    /// Criticality of events on it.
    pub criticality: Criticality,
    /// Globs over host names (`db*`, `*.pay.example.com`).
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    /// Globs over log file paths.
    #[serde(default)]
    pub files: Vec<Spanned<String>>,
}

/// `[allowlist]` and `[allowlist.detectors."id"]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AllowlistSection {
    /// CIDR ranges or addresses.
    #[serde(default)]
    pub networks: Vec<Spanned<String>>,
    /// Exact user names.
    #[serde(default)]
    pub users: Vec<String>,
    /// Per detector id.
    #[serde(default)]
    pub detectors: BTreeMap<String, Spanned<AllowEntry>>,
}

/// One allowlist.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AllowEntry {
    /// CIDR ranges or addresses.
    #[serde(default)]
    pub networks: Vec<Spanned<String>>,
    /// Exact user names.
    #[serde(default)]
    pub users: Vec<String>,
}

/// A parsed config plus the file it came from (for error locations).
#[derive(Debug, Clone)]
pub struct Config {
    /// The parsed file.
    pub file: ConfigFile,
    /// Where it came from (`<builtin>/config/sentinela.toml` for the embedded one).
    pub path: PathBuf,
    text: String,
}

/// Everything the engine needs, validated and compiled from a [`Config`].
#[derive(Debug, Clone)]
pub struct Built {
    /// The detectors to run.
    pub detectors: DetectorSet,
    /// Allowlists, assets, matrix (detector indices refer to `detectors`).
    pub policy: Policy,
    /// Zone for timestamps without one.
    pub zone: Zone,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse(Path::new("<builtin>/config/sentinela.toml"), DEFAULT_CONFIG)
            .expect("the shipped config is valid (tested)")
    }
}

impl Config {
    /// Parses config text; syntax and type errors are located.
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let file: ConfigFile =
            toml::from_str(text).map_err(|e| Error::from_toml(path, text, &e))?;
        Ok(Config {
            file,
            path: path.to_path_buf(),
            text: text.to_string(),
        })
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::parse(path, &text)
    }

    /// The config to use: `explicit` if given, else `$SENTINELA_CONFIG`, else
    /// `/etc/sentinela/sentinela.toml` if it exists, else the embedded default; then the
    /// `SENTINELA_*` environment overrides (see [`Config::with_overrides`]).
    pub fn discover(explicit: Option<&Path>) -> Result<Config> {
        let from_env = std::env::var_os("SENTINELA_CONFIG").map(PathBuf::from);
        let base = match explicit.map(Path::to_path_buf).or(from_env) {
            Some(p) => Config::load(&p)?,
            None if Path::new(SYSTEM_CONFIG).is_file() => Config::load(Path::new(SYSTEM_CONFIG))?,
            None => Config::default(),
        };
        base.with_overrides(std::env::vars())
    }

    /// Applies environment overrides: every config key can be set with a variable named
    /// `SENTINELA_` + the key path in upper case with `__` between levels, e.g.
    /// `SENTINELA_ENGINE__TIMEZONE=UTC`, `SENTINELA_STATE__DIR=/var/lib/sentinela`,
    /// `SENTINELA_HTTP__LISTEN=0.0.0.0:9717`; array items by index:
    /// `SENTINELA_SOURCE__FILE__0__INCLUDE='["/var/log/app/*.log"]'`. Values are read as TOML
    /// (numbers, booleans, arrays) and fall back to a plain string. `SENTINELA_CONFIG` and
    /// `SENTINELA_LOG_FORMAT` are options, not keys.
    pub fn with_overrides(
        self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let mut overrides: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with("SENTINELA_")
                    && k != "SENTINELA_CONFIG"
                    && k != "SENTINELA_LOG_FORMAT"
            })
            .collect();
        if overrides.is_empty() {
            return Ok(self);
        }
        overrides.sort();
        let mut table: toml::Table =
            toml::from_str(&self.text).map_err(|e| Error::from_toml(&self.path, &self.text, &e))?;
        let names: Vec<&str> = overrides.iter().map(|(k, _)| k.as_str()).collect();
        for (name, raw) in &overrides {
            let path: Vec<String> = name["SENTINELA_".len()..]
                .split("__")
                .map(|p| p.to_ascii_lowercase())
                .collect();
            let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone()));
            set_path(&mut table, &path, value).map_err(|why| {
                Error::invalid(
                    Location {
                        path: PathBuf::from(format!("${name}")),
                        line: 1,
                        column: 1,
                    },
                    why,
                )
            })?;
        }
        let text = toml::to_string(&table).expect("a TOML table serializes");
        let path = PathBuf::from(format!(
            "{} + environment ({})",
            self.path.display(),
            names.join(", ")
        ));
        Config::parse(&path, &text)
    }

    fn at(&self, offset: usize) -> Location {
        Location::from_offset(&self.path, &self.text, offset)
    }

    /// Validates everything and loads the detectors: the single path used by `check`,
    /// start-up and reload.
    pub fn build(&self) -> Result<Built> {
        let f = &self.file;
        let errors: std::cell::RefCell<Vec<Diagnostic>> = Default::default();
        let err = |offset: usize, message: String| {
            errors.borrow_mut().push(Diagnostic {
                location: self.at(offset),
                message,
            })
        };

        let zone = match Zone::parse(f.engine.timezone.get_ref()) {
            Some(z) => z,
            None => {
                err(
                    f.engine.timezone.span().start,
                    format!(
                        "invalid timezone {:?}; expected \"local\", \"UTC\" or an offset such as \"+02:00\"",
                        f.engine.timezone.get_ref()
                    ),
                );
                Zone::Local
            }
        };
        for (name, value) in [
            ("engine.max_line_bytes", f.engine.max_line_bytes),
            ("engine.max_tracked_keys", f.engine.max_tracked_keys),
            ("engine.max_open_incidents", f.engine.max_open_incidents),
            (
                "engine.close_after",
                f.engine.close_after.as_millis().min(usize::MAX as u128) as usize,
            ),
        ] {
            if value == 0 {
                err(0, format!("{name} must be greater than zero"));
            }
        }

        let mut matrix = Matrix::default();
        for (sev, row) in &f.priority.matrix {
            for (crit, prio) in row {
                matrix.0[*sev as usize][*crit as usize] = *prio;
            }
        }

        let mut assets = Vec::new();
        for a in &f.assets {
            let globs = |list: &[Spanned<String>]| {
                let mut b = GlobSetBuilder::new();
                for g in list {
                    match Glob::new(g.get_ref()) {
                        Ok(g) => {
                            b.add(g);
                        }
                        Err(e) => err(g.span().start, format!("invalid glob: {e}")),
                    }
                }
                b.build()
                    .unwrap_or_else(|_| GlobSetBuilder::new().build().expect("empty set"))
            };
            let hosts = globs(&a.hosts);
            let files = globs(&a.files);
            assets.push(Asset {
                name: a.name.clone(),
                criticality: a.criticality,
                hosts,
                files,
            });
        }

        let nets = |list: &[Spanned<String>]| {
            list.iter()
                .filter_map(|n| match parse_net(n.get_ref()) {
                    Some(net) => Some(net),
                    None => {
                        err(
                            n.span().start,
                            format!(
                                "invalid network {:?}; expected an address or CIDR range such as \"10.0.0.0/8\"",
                                n.get_ref()
                            ),
                        );
                        None
                    }
                })
                .collect::<Vec<_>>()
        };
        let global = Allow {
            networks: nets(&f.allowlist.networks),
            users: f.allowlist.users.iter().cloned().collect(),
        };
        let mut per_id: Vec<(String, usize, Allow)> = Vec::new();
        for (id, entry) in &f.allowlist.detectors {
            per_id.push((
                id.clone(),
                entry.span().start,
                Allow {
                    networks: nets(&entry.get_ref().networks),
                    users: entry.get_ref().users.iter().cloned().collect(),
                },
            ));
        }

        // Sources: names unique per kind (they key the stored positions), addresses valid.
        let mut names = std::collections::HashSet::new();
        for (kind, name) in f
            .sources
            .file
            .iter()
            .map(|s| ("file", &s.name))
            .chain(f.sources.journald.iter().map(|s| ("journald", &s.name)))
            .chain(f.sources.syslog.iter().map(|s| ("syslog", &s.name)))
        {
            if !names.insert((kind, name)) {
                err(
                    0,
                    format!("two [[source.{kind}]] have the name {name:?}; names must be unique"),
                );
            }
        }
        for s in &f.sources.file {
            if s.include.is_empty() {
                err(
                    0,
                    format!("[[source.file]] {:?}: `include` is empty", s.name),
                );
            }
            for g in s.include.iter().chain(&s.exclude) {
                if let Err(e) = Glob::new(g.get_ref()) {
                    err(g.span().start, format!("invalid glob: {e}"));
                }
            }
        }
        for j in &f.sources.journald {
            if let Err(e) = crate::source::journald::validate(j) {
                err(0, format!("[[source.journald]] {:?}: {e}", j.name));
            }
        }
        for sl in &f.sources.syslog {
            if sl.udp.is_none() && sl.tcp.is_none() {
                err(
                    0,
                    format!("[[source.syslog]] {:?}: set `udp` and/or `tcp`", sl.name),
                );
            }
            for a in sl.udp.iter().chain(&sl.tcp) {
                if crate::source::syslog::parse_listen_address(a.get_ref()).is_none() {
                    err(
                        a.span().start,
                        format!("invalid listen address {:?}; expected e.g. \"127.0.0.1:5514\" or \"[::1]:5514\"", a.get_ref()),
                    );
                }
            }
            if sl.max_connections == 0 || sl.max_message_bytes == 0 {
                err(0, format!("[[source.syslog]] {:?}: max_connections and max_message_bytes must be at least 1", sl.name));
            }
        }

        // Help desks: each entry's own checks (located), names unique.
        let mut hd_names = std::collections::HashSet::new();
        for h in &f.helpdesks {
            for (span, msg) in h.problems() {
                err(span.map_or(0, |s| s.start), msg);
            }
            if !hd_names.insert(h.name.get_ref().clone()) {
                err(
                    h.name.span().start,
                    format!(
                        "two [[helpdesk]] have the name {:?}; names must be unique",
                        h.name.get_ref()
                    ),
                );
            }
        }

        // Detectors: shipped pack, then local paths relative to the config file.
        let base = self.path.parent().unwrap_or(Path::new("."));
        let dirs: Vec<PathBuf> = f
            .detectors
            .dirs
            .iter()
            .map(|d| base.join(d.get_ref()))
            .collect();
        for (d, path) in f.detectors.dirs.iter().zip(&dirs) {
            if !path.exists() {
                err(
                    d.span().start,
                    format!("detector path {} does not exist", path.display()),
                );
            }
        }
        let detectors = if errors.borrow().is_empty() {
            let set = if f.detectors.builtin {
                DetectorSet::builtin()?
            } else {
                DetectorSet::default()
            };
            let mut set = set.extend_from_paths(&dirs)?;
            for id in &f.detectors.disabled {
                if let Err(msg) = set.disable(std::slice::from_ref(id.get_ref())) {
                    err(id.span().start, msg);
                }
            }
            set
        } else {
            DetectorSet::default()
        };

        let mut per_detector = HashMap::new();
        for (id, offset, allow) in per_id {
            match detectors.index_of(&id) {
                Some(i) => {
                    per_detector.insert(i, allow);
                }
                None if errors.borrow().is_empty() => {
                    err(offset, format!("allowlist for unknown detector {id:?}"))
                }
                None => {}
            }
        }
        let errors = errors.into_inner();
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        Ok(Built {
            detectors,
            policy: Policy {
                matrix,
                assets,
                global,
                per_detector,
            },
            zone,
        })
    }
}

/// Sets `path` in a TOML table, creating tables (and appending array items by index) on the
/// way.
fn set_path(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
) -> std::result::Result<(), String> {
    let (first, rest) = path.split_first().ok_or("empty key")?;
    if first.is_empty() {
        return Err("empty key segment (three underscores?)".into());
    }
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(());
    }
    let entry = table.entry(first.clone()).or_insert_with(|| {
        if rest[0].parse::<usize>().is_ok() {
            toml::Value::Array(Vec::new())
        } else {
            toml::Value::Table(toml::Table::new())
        }
    });
    set_in_value(entry, rest, value)
}

fn set_in_value(
    v: &mut toml::Value,
    path: &[String],
    value: toml::Value,
) -> std::result::Result<(), String> {
    match v {
        toml::Value::Table(t) => set_path(t, path, value),
        toml::Value::Array(items) => {
            let i: usize = path[0]
                .parse()
                .map_err(|_| format!("{:?} is an array: expected an index", path[0]))?;
            if i > items.len() {
                return Err(format!(
                    "index {i} skips items: the array has {} (use the next index)",
                    items.len()
                ));
            }
            if i == items.len() {
                items.push(toml::Value::Table(toml::Table::new()));
            }
            if path.len() == 1 {
                items[i] = value;
                return Ok(());
            }
            set_in_value(&mut items[i], &path[1..], value)
        }
        _ => Err(format!("{:?} is a value, not a table", path[0])),
    }
}

/// An address or CIDR range.
fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> std::result::Result<Built, String> {
        Config::parse(Path::new("c.toml"), text)
            .and_then(|c| c.build())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn shipped_config_is_valid_and_loads_the_pack() {
        let built = Config::default().build().unwrap();
        assert!(built.detectors.detectors.len() > 10);
    }

    #[test]
    fn bad_values_are_reported_with_location_and_expectation() {
        let cases: &[(&str, &str)] = &[
            (
                "[engine]\ntimezone = \"Mars\"\n",
                "c.toml:2:12: invalid timezone \"Mars\"",
            ),
            (
                "[allowlist]\nnetworks = [\"10.0.0.0/33\"]\n",
                "c.toml:2:13: invalid network \"10.0.0.0/33\"",
            ),
            (
                "[engine]\nmax_line_byts = 1\n",
                "c.toml:2:1: unknown field `max_line_byts`",
            ),
            (
                "[[asset]]\nname = \"db\"\ncriticality = \"vital\"\n",
                "c.toml:3:15: unknown variant `vital`",
            ),
            (
                "[priority.matrix]\nhigh = { normal = \"P0\" }\n",
                "c.toml:2:19: unknown variant `P0`",
            ),
            (
                "[detectors]\ndirs = [\"nope.d\"]\n",
                "c.toml:2:9: detector path nope.d does not exist",
            ),
            (
                "[detectors]\ndisabled = [\"ssh.nope\"]\n",
                "cannot disable unknown detector \"ssh.nope\"",
            ),
            (
                "[allowlist.detectors.\"x.y\"]\nusers = [\"a\"]\n",
                "allowlist for unknown detector \"x.y\"",
            ),
        ];
        for (text, want) in cases {
            let got = build(text).err().unwrap_or_default();
            assert!(
                got.contains(want),
                "config:\n{text}\n got: {got}\nwant: {want}"
            );
        }
    }

    #[test]
    fn environment_variables_override_every_key() {
        let vars = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let c = Config::default()
            .with_overrides(vars(&[
                ("SENTINELA_ENGINE__TIMEZONE", "UTC"),
                ("SENTINELA_ENGINE__MAX_LINE_BYTES", "1024"),
                ("SENTINELA_STATE__DIR", "/tmp/s"),
                ("SENTINELA_SOURCE__FILE__0__NAME", "app"),
                (
                    "SENTINELA_SOURCE__FILE__0__INCLUDE",
                    "[\"/var/log/app/*.log\"]",
                ),
                ("SENTINELA_ALLOWLIST__USERS", "[\"backup\"]"),
                ("SENTINELA_CONFIG", "ignored"),
                ("HOME", "/root"),
            ]))
            .unwrap();
        assert_eq!(c.file.engine.timezone.get_ref(), "UTC");
        assert_eq!(c.file.engine.max_line_bytes, 1024);
        assert_eq!(c.file.state.dir.as_deref(), Some(Path::new("/tmp/s")));
        assert_eq!(c.file.sources.file[0].name, "app");
        assert_eq!(
            c.file.sources.file[0].include[0].get_ref(),
            "/var/log/app/*.log"
        );
        assert_eq!(c.file.allowlist.users, vec!["backup".to_string()]);
        c.build().unwrap();
        // Mistakes name the variable.
        let e = Config::default()
            .with_overrides(vars(&[("SENTINELA_ENGINE__MAX_LINE_BYTES", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SENTINELA_ENGINE__MAX_LINE_BYTES") && e.contains("expected usize"),
            "{e}"
        );
        let e = Config::default()
            .with_overrides(vars(&[("SENTINELA_SOURCE__FILE__3__NAME", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("$SENTINELA_SOURCE__FILE__3__NAME") && e.contains("index 3 skips items"),
            "{e}"
        );
    }

    #[test]
    fn matrix_cells_override_defaults() {
        let b = build("[priority.matrix]\nmedium = { normal = \"P2\" }\n").unwrap();
        assert_eq!(
            b.policy
                .matrix
                .priority(Severity::Medium, Criticality::Normal),
            Priority::P2
        );
        assert_eq!(
            b.policy.matrix.priority(Severity::Medium, Criticality::Low),
            Priority::P4
        );
    }
}
