//! The command line: argument parsing, output formats and exit codes. The only place that uses
//! `anyhow`; everything below it returns typed errors.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use sentinela::config::{Built, Config};
use sentinela::detect::Matcher;
use sentinela::detector::{run_examples, DetectorSet};
use sentinela::engine::{Engine, Hit, Input};
use sentinela::incident::Incident;
use sentinela::scan::{file_reference, run_reader, ReadOptions};
use sentinela::timestamp::{format_rfc3339, now_millis, TimeParser, Zone};

/// Exit codes, documented in `--help` and the README.
mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The command ran and found a problem: failing detector examples, an invalid config for
    /// `check`.
    pub const FINDINGS: u8 = 1;
    /// Bad usage, or a config or detector file that does not validate.
    pub const USAGE: u8 = 2;
    /// An input file could not be read.
    pub const INPUT: u8 = 3;
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the command found a problem (failing detector \
examples, invalid config for `check`); 2 usage error or invalid config/detectors; 3 an input \
file could not be read.";

/// Sample logs shipped in the binary for `scan --sample`.
const SAMPLES: &[(&str, &str)] = &[
    ("<sample>/auth.log", include_str!("../samples/auth.log")),
    ("<sample>/access.log", include_str!("../samples/access.log")),
];

#[derive(Parser)]
#[command(
    name = "sentinela",
    version,
    about = "Watches logs for security incidents and turns them into prioritized tickets.",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show every detector hit, line by line (like fail2ban-regex).
    Match {
        /// Output format.
        #[arg(long, value_enum, default_value_t = MatchFormat::Text)]
        format: MatchFormat,
        /// Config file (default: /etc/sentinela/sentinela.toml if present, else built-in).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log files; `-` or nothing reads standard input.
        files: Vec<PathBuf>,
    },
    /// Dry run: find incidents in log files and print them with priority and evidence.
    /// Nothing is sent anywhere.
    Scan {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ScanFormat::Text)]
        format: ScanFormat,
        /// Config file (default: /etc/sentinela/sentinela.toml if present, else built-in).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Scan the sample logs built into the binary.
        #[arg(long, conflicts_with = "files")]
        sample: bool,
        /// Log files; `-` or nothing reads standard input.
        files: Vec<PathBuf>,
    },
    /// Run every detector's examples and counterexamples.
    Test {
        /// Config file whose detectors to test (default as for `scan`).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Detector files or directories to test instead of the configured set.
        paths: Vec<PathBuf>,
    },
    /// Validate the config and the detectors it loads.
    Check {
        /// Config file (default: /etc/sentinela/sentinela.toml if present, else built-in).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the daemon: follow the configured sources, record incidents in the state store.
    Run {
        /// Config file (default: /etc/sentinela/sentinela.toml if present, else built-in).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also read log lines from standard input (e.g. `kubectl logs -f ... | sentinela run --stdin`).
        #[arg(long)]
        stdin: bool,
        /// State directory (overrides [state] dir and $STATE_DIRECTORY).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Log format: `text` (for journald) or `json` (one object per line, for containers).
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SENTINELA_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Show the read positions stored in the state file.
    State {
        /// Config file (to find the state directory).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// State directory.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ScanFormat::Text)]
        format: ScanFormat,
    },
    /// List the incidents recorded in the state file (works while the daemon runs).
    Incidents {
        /// Config file (to find the state directory).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// State directory.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ScanFormat::Text)]
        format: ScanFormat,
        /// Only incidents seen within this duration (e.g. `24h`, `30m`).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
    },
    /// Inspect and repair the ticket outbox (operations waiting for a help desk).
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// List the configured help desks, or verify one's credentials before going live.
    Helpdesk {
        #[command(subcommand)]
        action: HelpdeskAction,
    },
    /// List the loaded detectors.
    Detectors {
        /// Config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print every pattern (one regex per line) instead of the table.
        #[arg(long)]
        patterns: bool,
        /// Print each pattern's prefilter literals (detector id, tab, literals).
        #[arg(long, conflicts_with = "patterns")]
        literals: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum MatchFormat {
    Text,
    Jsonl,
}

#[derive(Subcommand)]
enum HelpdeskAction {
    /// List the configured help desks: name, kind, address and what each can do.
    List {
        /// Config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Make a harmless authenticated call to a help desk (who am I, the queue or project, its
    /// custom fields) with the real secrets, and say what to fix. Creates nothing. Exit 0 when
    /// the help desk accepts the setup, 1 when it refuses or cannot be reached.
    Test {
        /// The help desk's `name`.
        name: String,
        /// Config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum OutboxAction {
    /// List operations (default: those not delivered yet).
    List {
        /// Config file (to find the state directory).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// State directory.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Only this state: pending, blocked, done, dropped (default: all).
        #[arg(long)]
        state: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ScanFormat::Text)]
        format: ScanFormat,
    },
    /// Make a blocked operation (or, with `all`, every blocked one) due now, after fixing the
    /// help desk config. The running daemon picks it up.
    Retry {
        /// Operation id, or `all`.
        id: String,
        /// Config file (to find the state directory).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// State directory.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Give up on an operation (it stays listed as dropped).
    Drop {
        /// Operation id.
        id: i64,
        /// Config file (to find the state directory).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// State directory.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ScanFormat {
    Text,
    Json,
}

/// An error with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure {
            code: exit::USAGE,
            error: e.into(),
        }
    }
}

fn fail(code: u8, error: anyhow::Error) -> Failure {
    Failure { code, error }
}

/// Entry point.
pub fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("sentinela: internal error: {info}\nThis is a bug; please report it with the command you ran.");
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if is_broken_pipe(&f.error) {
                return ExitCode::from(exit::OK);
            }
            eprintln!("sentinela: error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Match {
            format,
            config,
            files,
        } => cmd_match(format, config.as_deref(), &files),
        Command::Scan {
            format,
            config,
            sample,
            files,
        } => cmd_scan(format, config.as_deref(), sample, &files),
        Command::Test { config, paths } => cmd_test(config.as_deref(), &paths),
        Command::Check { config } => cmd_check(config.as_deref()),
        Command::Detectors {
            config,
            patterns,
            literals,
        } => cmd_detectors(config.as_deref(), patterns, literals),
        Command::Outbox { action } => cmd_outbox(action),
        Command::Helpdesk { action } => cmd_helpdesk(action),
        Command::Run {
            config,
            stdin,
            state_dir,
            log_format,
        } => cmd_run(config, stdin, state_dir, log_format),
        Command::State {
            config,
            state_dir,
            format,
        } => cmd_state(config.as_deref(), state_dir, format),
        Command::Incidents {
            config,
            state_dir,
            format,
            since,
        } => cmd_incidents(config.as_deref(), state_dir, format, since),
    }
}

fn load(config: Option<&Path>) -> Result<(Config, Built), Failure> {
    let cfg = Config::discover(config)?;
    let built = cfg.build()?;
    Ok((cfg, built))
}

/// One input: a file, stdin, or a built-in sample.
enum Source<'a> {
    File(&'a Path),
    Stdin,
    Sample(&'static str, &'static str),
}

fn sources<'a>(files: &'a [PathBuf], sample: bool) -> Vec<Source<'a>> {
    if sample {
        return SAMPLES.iter().map(|(n, t)| Source::Sample(n, t)).collect();
    }
    if files.is_empty() {
        return vec![Source::Stdin];
    }
    files
        .iter()
        .map(|f| {
            if f.as_os_str() == "-" {
                Source::Stdin
            } else {
                Source::File(f)
            }
        })
        .collect()
}

/// Feeds every source through the engine.
fn feed(
    engine: &mut Engine,
    cfg: &Config,
    zone: Zone,
    srcs: &[Source<'_>],
    correlate: bool,
    mut on_hit: impl FnMut(&Engine, &Input, &Hit),
) -> Result<(), Failure> {
    let max_line = cfg.file.engine.max_line_bytes;
    let total: u64 = srcs
        .iter()
        .map(|s| match s {
            Source::File(p) => std::fs::metadata(p).map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum();
    let bar = (io::stderr().is_terminal() && total > 64 << 20).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let progress = |n: u64| {
        if let Some(b) = &bar {
            b.inc(n)
        }
    };
    let opts = ReadOptions {
        max_line,
        correlate,
    };
    let input = |name: &str, reference| Input::new(name, TimeParser::new(zone, reference));
    for src in srcs {
        let res = match src {
            Source::File(p) => {
                let f = File::open(p)
                    .with_context(|| format!("cannot open {}", p.display()))
                    .map_err(|e| fail(exit::INPUT, e))?;
                if f.metadata().is_ok_and(|m| m.is_dir()) {
                    return Err(fail(
                        exit::INPUT,
                        anyhow::anyhow!("{} is a directory, not a log file", p.display()),
                    ));
                }
                let name = p.display().to_string();
                let inp = input(&name, file_reference(p));
                run_reader(engine, f, inp, opts, &mut on_hit, progress)
                    .with_context(|| format!("cannot read {}", p.display()))
            }
            Source::Stdin => {
                let inp = input("-", now_millis());
                run_reader(engine, io::stdin().lock(), inp, opts, &mut on_hit, progress)
                    .context("cannot read standard input")
            }
            Source::Sample(name, text) => {
                let inp = input(name, now_millis());
                run_reader(engine, text.as_bytes(), inp, opts, &mut on_hit, progress)
                    .context("sample")
            }
        };
        res.map_err(|e| fail(exit::INPUT, e))?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}

fn cmd_match(format: MatchFormat, config: Option<&Path>, files: &[PathBuf]) -> Result<u8, Failure> {
    let (cfg, built) = load(config)?;
    let zone = built.zone;
    let mut engine = Engine::new(built, cfg.file.engine.clone());
    let mut out = BufWriter::new(io::stdout().lock());
    let mut write_err: Option<io::Error> = None;
    feed(
        &mut engine,
        &cfg,
        zone,
        &sources(files, false),
        false,
        |eng, input, hit| {
            if write_err.is_some() {
                return;
            }
            let det = &eng.detectors.detectors[hit.detector];
            let r = match format {
                MatchFormat::Jsonl => {
                    let fields: BTreeMap<&str, &str> = hit.fields.iter().collect();
                    let obj = json!({
                        "file": input.name,
                        "line": hit.line_no,
                        "detector": det.id,
                        "severity": det.severity,
                        "time": hit.time.map(format_rfc3339),
                        "fields": fields,
                    });
                    writeln!(out, "{obj}")
                }
                MatchFormat::Text => {
                    let fields: Vec<String> = hit
                        .fields
                        .iter()
                        .map(|(k, v)| format!("{k}={v:?}"))
                        .collect();
                    writeln!(
                        out,
                        "{}:{}: {} [{}] {}",
                        input.name,
                        hit.line_no,
                        det.id,
                        det.severity,
                        fields.join(" ")
                    )
                }
            };
            if let Err(e) = r {
                write_err = Some(e);
            }
        },
    )?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    out.flush()?;
    Ok(exit::OK)
}

fn cmd_scan(
    format: ScanFormat,
    config: Option<&Path>,
    sample: bool,
    files: &[PathBuf],
) -> Result<u8, Failure> {
    let (cfg, built) = load(config)?;
    let zone = built.zone;
    let mut engine = Engine::new(built, cfg.file.engine.clone());
    let started = Instant::now();
    let srcs = sources(files, sample);
    feed(&mut engine, &cfg, zone, &srcs, true, |_, _, _| {})?;
    let seconds = started.elapsed().as_secs_f64();
    let mut incidents: Vec<&Incident> = engine.incidents.iter().collect();
    incidents.sort_by(|a, b| {
        (a.priority, a.first_seen, &a.fingerprint).cmp(&(b.priority, b.first_seen, &b.fingerprint))
    });
    let st = &engine.stats;
    let per_detector = |v: &[u64]| -> BTreeMap<&str, u64> {
        engine
            .detectors
            .detectors
            .iter()
            .zip(v)
            .filter(|(_, &n)| n > 0)
            .map(|(d, &n)| (d.id.as_str(), n))
            .collect()
    };
    let mut by_priority: BTreeMap<String, u64> = BTreeMap::new();
    for i in &incidents {
        *by_priority.entry(i.priority.to_string()).or_default() += 1;
    }
    let rate = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    let summary = json!({
        "inputs": srcs.iter().map(|s| match s {
            Source::File(p) => p.display().to_string(),
            Source::Stdin => "-".to_string(),
            Source::Sample(n, _) => n.to_string(),
        }).collect::<Vec<_>>(),
        "lines": st.lines,
        "bytes": st.bytes,
        "seconds": seconds,
        "lines_per_second": rate(st.lines).round(),
        "mb_per_second": (rate(st.bytes) / 1e6 * 10.0).round() / 10.0,
        "hits": per_detector(&st.hits),
        "suppressed": per_detector(&st.suppressed),
        "incidents": incidents.len(),
        "incidents_by_priority": by_priority,
        "truncated_lines": st.truncated_lines,
        "evicted_keys": engine.evicted_keys(),
    });
    let requests = dry_run_requests(&cfg, &engine, &incidents)?;
    let mut out = BufWriter::new(io::stdout().lock());
    match format {
        ScanFormat::Json => {
            let doc = json!({ "incidents": incidents, "summary": summary, "requests": requests });
            serde_json::to_writer_pretty(&mut out, &doc).map_err(io::Error::from)?;
            writeln!(out)?;
        }
        ScanFormat::Text => {
            for i in &incidents {
                write_incident(&mut out, i)?;
            }
            for r in &requests {
                let what = match r["fingerprint"].as_str() {
                    Some(fp) => format!("incident {fp}"),
                    None => "login session".to_string(),
                };
                writeln!(
                    out,
                    "Would send to help desk {:?} ({what}):\n{}",
                    r["helpdesk"].as_str().unwrap_or_default(),
                    r["text"].as_str().unwrap_or_default()
                )?;
            }
            let total_hits: u64 = st.hits.iter().sum();
            writeln!(
                out,
                "{} incident{} ({}) from {} hits in {} lines ({:.1} MB) in {:.2}s: {:.0} lines/s, {:.1} MB/s. Nothing was sent (dry run).",
                incidents.len(),
                if incidents.len() == 1 { "" } else { "s" },
                if by_priority.is_empty() { "none".to_string() } else {
                    by_priority.iter().map(|(p, n)| format!("{p}: {n}")).collect::<Vec<_>>().join(", ")
                },
                total_hits,
                st.lines,
                st.bytes as f64 / 1e6,
                seconds,
                rate(st.lines),
                rate(st.bytes) / 1e6,
            )?;
            if st.truncated_lines > 0 || engine.evicted_keys() > 0 {
                writeln!(
                    out,
                    "{} over-long lines were cut to {} bytes; {} correlation keys were evicted (cap {}).",
                    st.truncated_lines,
                    cfg.file.engine.max_line_bytes,
                    engine.evicted_keys(),
                    cfg.file.engine.max_tracked_keys
                )?;
            }
            if total_hits > 0 {
                writeln!(out, "\nHits per detector:")?;
                for (di, d) in engine.detectors.detectors.iter().enumerate() {
                    if st.hits[di] > 0 {
                        writeln!(
                            out,
                            "  {:<36} {:>8} hits {:>6} incidents {:>6} allowlisted",
                            d.id, st.hits[di], st.opened[di], st.suppressed[di]
                        )?;
                    }
                }
            }
        }
    }
    out.flush()?;
    Ok(exit::OK)
}

fn write_incident(out: &mut impl Write, i: &Incident) -> io::Result<()> {
    writeln!(out, "{} {}  [{}]", i.priority, i.title, i.detector)?;
    writeln!(
        out,
        "   severity {} on a {} asset, {}; {} hit{} from {} to {}",
        i.severity,
        i.criticality.as_str(),
        i.category,
        i.count,
        if i.count == 1 { "" } else { "s" },
        format_rfc3339(i.first_seen),
        format_rfc3339(i.last_seen)
    )?;
    let fields: Vec<String> = i.fields.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    writeln!(
        out,
        "   {}  fingerprint {}  in {}",
        fields.join(" "),
        i.fingerprint,
        i.source
    )?;
    for l in i.evidence.lines() {
        // Evidence is attacker-controlled: show control characters escaped.
        writeln!(out, "   | {}", l.escape_debug())?;
    }
    writeln!(out)
}

fn cmd_test(config: Option<&Path>, paths: &[PathBuf]) -> Result<u8, Failure> {
    let set = if paths.is_empty() {
        load(config)?.1.detectors
    } else {
        // Test the given files on top of the shipped pack, so `after` references resolve,
        // but only report the given detectors.
        DetectorSet::from_paths(paths)
            .or_else(|_| DetectorSet::builtin().and_then(|b| b.extend_from_paths(paths)))?
    };
    let only: Option<Vec<String>> = (!paths.is_empty()).then(|| {
        DetectorSet::from_paths(paths)
            .map(|s| s.detectors.into_iter().map(|d| d.id).collect())
            .unwrap_or_default()
    });
    let matcher = Matcher::new(&set);
    let (failures, checks) = run_examples(&set, &matcher);
    let failures: Vec<_> = failures
        .into_iter()
        .filter(|f| {
            only.as_ref()
                .is_none_or(|o| o.is_empty() || o.contains(&f.detector))
        })
        .collect();
    let mut out = io::stdout().lock();
    for f in &failures {
        writeln!(
            out,
            "FAIL {} ({})\n  {}\n",
            f.detector, f.location, f.message
        )?;
    }
    let no_examples: Vec<&str> = set
        .detectors
        .iter()
        .filter(|d| d.examples.is_empty() || d.counterexamples.is_empty())
        .filter(|d| {
            only.as_ref()
                .is_none_or(|o| o.is_empty() || o.contains(&d.id))
        })
        .map(|d| d.id.as_str())
        .collect();
    for id in &no_examples {
        writeln!(
            out,
            "warning: detector {id} lacks examples or counterexamples"
        )?;
    }
    writeln!(
        out,
        "{} detectors, {} example checks: {} passed, {} failed",
        set.detectors.len(),
        checks,
        checks - failures.len(),
        failures.len()
    )?;
    Ok(if failures.is_empty() {
        exit::OK
    } else {
        exit::FINDINGS
    })
}

fn cmd_check(config: Option<&Path>) -> Result<u8, Failure> {
    let cfg = match Config::discover(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(exit::FINDINGS);
        }
    };
    let built = match cfg.build() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return Ok(exit::FINDINGS);
        }
    };
    let mut out = io::stdout().lock();
    for w in &built.detectors.warnings {
        writeln!(out, "warning: {w}")?;
    }
    let patterns: usize = built
        .detectors
        .detectors
        .iter()
        .map(|d| d.patterns.len())
        .sum();
    writeln!(
        out,
        "{}: OK, {} detectors, {} patterns, {} warnings",
        cfg.path.display(),
        built.detectors.detectors.len(),
        patterns,
        built.detectors.warnings.len()
    )?;
    Ok(exit::OK)
}

fn cmd_detectors(config: Option<&Path>, patterns: bool, literals: bool) -> Result<u8, Failure> {
    let (_, built) = load(config)?;
    let mut out = BufWriter::new(io::stdout().lock());
    for d in &built.detectors.detectors {
        if patterns {
            for p in &d.patterns {
                writeln!(out, "{}", p.source)?;
            }
            continue;
        }
        if literals {
            for p in &d.patterns {
                let lits: Vec<String> = p
                    .literals
                    .iter()
                    .map(|l| format!("{:?}", String::from_utf8_lossy(l)))
                    .collect();
                let shown = if lits.is_empty() {
                    "(none: runs on every line)".to_string()
                } else {
                    lits.join(" ")
                };
                writeln!(out, "{}\t{}", d.id, shown)?;
            }
            continue;
        }
        let cond = match (&d.threshold, &d.distinct, &d.after) {
            (Some(t), Some(f), _) => format!(
                "{} distinct {f} in {}",
                t.count,
                humantime::format_duration(t.window)
            ),
            (Some(t), None, _) => {
                format!("{} in {}", t.count, humantime::format_duration(t.window))
            }
            (None, _, Some(a)) => format!(
                "after {} of {} in {}",
                a.count,
                a.detectors.join("|"),
                humantime::format_duration(a.window)
            ),
            _ => "every hit".to_string(),
        };
        writeln!(
            out,
            "{:<36} {:<8} {:<22} {}",
            d.id,
            d.severity.as_str(),
            d.category.as_str(),
            cond
        )?;
    }
    out.flush()?;
    Ok(exit::OK)
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // RUST_LOG-style filtering; `info` by default.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        // Containers: JSON objects on stdout, collected by the runtime.
        LogFormat::Json => builder.json().with_writer(io::stdout).try_init(),
        // systemd: plain text on stderr; journald adds the time.
        LogFormat::Text => builder
            .without_time()
            .with_ansi(io::stderr().is_terminal())
            .with_writer(io::stderr)
            .try_init(),
    };
}

fn cmd_run(
    config: Option<PathBuf>,
    stdin: bool,
    state_dir: Option<PathBuf>,
    log_format: LogFormat,
) -> Result<u8, Failure> {
    init_logging(log_format);
    sentinela::daemon::run(sentinela::daemon::Options {
        config,
        stdin,
        state_dir,
    })?;
    Ok(exit::OK)
}

fn cmd_helpdesk(action: HelpdeskAction) -> Result<u8, Failure> {
    use sentinela::ticket::adapter::{http_client, Adapter};
    let mut out = io::stdout().lock();
    match action {
        HelpdeskAction::List { config } => {
            let (cfg, _) = load(config.as_deref())?;
            if cfg.file.helpdesks.is_empty() {
                writeln!(out, "No [[helpdesk]] in {}.", cfg.path.display())?;
            }
            for h in &cfg.file.helpdesks {
                let a = Adapter::for_dry_run(h).map_err(|e| anyhow::anyhow!(e))?;
                let c = a.capabilities();
                let mut can = vec!["create", "comment"];
                if c.find_open {
                    can.push("find by key");
                }
                if c.read_status {
                    can.push("read status, reopen");
                }
                if c.resolve_on_close {
                    can.push("resolve on close");
                }
                if a.check_request().is_some() {
                    can.push("test");
                }
                writeln!(
                    out,
                    "{:<16} {:<10} {}  [{}]",
                    a.name(),
                    a.kind().as_str(),
                    h.url.get_ref(),
                    can.join(", ")
                )?;
            }
            Ok(exit::OK)
        }
        HelpdeskAction::Test { name, config } => {
            let (cfg, _) = load(config.as_deref())?;
            let Some(h) = cfg
                .file
                .helpdesks
                .iter()
                .find(|h| h.name.get_ref() == &name)
            else {
                let names: Vec<&str> = cfg
                    .file
                    .helpdesks
                    .iter()
                    .map(|h| h.name.get_ref().as_str())
                    .collect();
                return Err(anyhow::anyhow!(
                    "no help desk named {name:?} in {} (configured: {})",
                    cfg.path.display(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )
                .into());
            };
            let dir = cfg.path.parent().map(Path::to_path_buf).unwrap_or_default();
            let h = h.with_paths_relative_to(&dir);
            let adapter = Adapter::from_config(&h).map_err(|e| anyhow::anyhow!(e))?;
            let Some(req) = adapter.check_request() else {
                writeln!(
                    out,
                    "helpdesk {name:?} ({}): NOT VERIFIED. Its API has no call that proves the \
                     credentials without delivering an event; `sentinela scan` shows exactly \
                     what it would receive.",
                    adapter.kind().as_str()
                )?;
                return Ok(exit::OK);
            };
            writeln!(
                out,
                "helpdesk {name:?} ({}): {} {}",
                adapter.kind().as_str(),
                req.method,
                req.url
            )?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)?;
            let result = runtime.block_on(async {
                let client = http_client().map_err(|e| anyhow::anyhow!(e))?;
                Ok::<_, anyhow::Error>(adapter.check(&client).await)
            })?;
            match result {
                Ok(()) => {
                    writeln!(
                        out,
                        "OK: the help desk accepts the credentials and the setup."
                    )?;
                    Ok(exit::OK)
                }
                Err(e) => {
                    writeln!(out, "FAILED: {e}")?;
                    Ok(exit::FINDINGS)
                }
            }
        }
    }
}

/// The state file to read: `--state-dir`, else the config's `[state] dir`, else
/// `$STATE_DIRECTORY`, else the packaged default.
fn state_file(config: Option<&Path>, state_dir: Option<PathBuf>) -> Result<PathBuf, Failure> {
    let dir = match state_dir {
        Some(d) => d,
        None => {
            let cfg = Config::discover(config)?;
            cfg.file
                .state
                .dir
                .clone()
                .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("/var/lib/sentinela"))
        }
    };
    let file = dir.join(sentinela::state::STATE_FILE);
    if !file.exists() {
        return Err(fail(
            exit::INPUT,
            anyhow::anyhow!(
                "no state file at {} (has `sentinela run` been started with this state directory?)",
                file.display()
            ),
        ));
    }
    Ok(file)
}

fn cmd_state(
    config: Option<&Path>,
    state_dir: Option<PathBuf>,
    format: ScanFormat,
) -> Result<u8, Failure> {
    let file = state_file(config, state_dir)?;
    let store = sentinela::state::Store::open_read_only(&file)?;
    let positions = store.positions()?;
    let mut out = BufWriter::new(io::stdout().lock());
    match format {
        ScanFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &positions).map_err(io::Error::from)?;
            writeln!(out)?;
        }
        ScanFormat::Text => {
            writeln!(
                out,
                "{:<16} {:<44} {:>12}  {:<20}  stream",
                "source", "where", "offset", "updated"
            )?;
            for p in &positions {
                let (place, offset) = match &p.position {
                    sentinela::source::Position::File { path, offset, .. } => {
                        (path.clone(), offset.to_string())
                    }
                    sentinela::source::Position::Journal { cursor } => (
                        format!("cursor {}", cursor.chars().take(36).collect::<String>()),
                        "-".into(),
                    ),
                };
                writeln!(
                    out,
                    "{:<16} {:<44} {:>12}  {:<20}  {}",
                    p.source,
                    place,
                    offset,
                    format_rfc3339(p.updated_at),
                    p.stream
                )?;
            }
        }
    }
    out.flush()?;
    Ok(exit::OK)
}

fn cmd_incidents(
    config: Option<&Path>,
    state_dir: Option<PathBuf>,
    format: ScanFormat,
    since: Option<std::time::Duration>,
) -> Result<u8, Failure> {
    let file = state_file(config, state_dir)?;
    let store = sentinela::state::Store::open_read_only(&file)?;
    let since = since.map(|d| now_millis() - d.as_millis() as i64);
    let incidents = store.incidents(since)?;
    let mut out = BufWriter::new(io::stdout().lock());
    match format {
        ScanFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &json!({ "incidents": incidents }))
                .map_err(io::Error::from)?;
            writeln!(out)?;
        }
        ScanFormat::Text => {
            for i in &incidents {
                write_incident(&mut out, i)?;
            }
            writeln!(
                out,
                "{} incident{}",
                incidents.len(),
                if incidents.len() == 1 { "" } else { "s" }
            )?;
        }
    }
    out.flush()?;
    Ok(exit::OK)
}

fn cmd_outbox(action: OutboxAction) -> Result<u8, Failure> {
    match action {
        OutboxAction::List {
            config,
            state_dir,
            state,
            format,
        } => {
            let file = state_file(config.as_deref(), state_dir)?;
            let store = sentinela::state::Store::open_read_only(&file)?;
            let rows = store.outbox(state.as_deref())?;
            let mut out = BufWriter::new(io::stdout().lock());
            match format {
                ScanFormat::Json => {
                    serde_json::to_writer_pretty(&mut out, &rows).map_err(io::Error::from)?;
                    writeln!(out)?;
                }
                ScanFormat::Text => {
                    for r in &rows {
                        let op = match &r.operation {
                            sentinela::ticket::lifecycle::Operation::Create { .. } => {
                                "create".to_string()
                            }
                            sentinela::ticket::lifecycle::Operation::Update { kind, .. } => {
                                format!("update ({kind:?})").to_lowercase()
                            }
                            sentinela::ticket::lifecycle::Operation::SetPriority { priority } => {
                                format!("set priority {priority}")
                            }
                            sentinela::ticket::lifecycle::Operation::Resolve { .. } => {
                                "resolve".to_string()
                            }
                        };
                        writeln!(
                            out,
                            "{:>6} {:<8} {:<12} {:<20} {} attempts={} next={}{}",
                            r.id,
                            r.state,
                            r.helpdesk,
                            op,
                            r.fingerprint,
                            r.attempts,
                            format_rfc3339(r.next_attempt_at),
                            r.last_error
                                .as_deref()
                                .map(|e| format!(" error: {e}"))
                                .unwrap_or_default()
                        )?;
                    }
                    writeln!(
                        out,
                        "{} operation{}",
                        rows.len(),
                        if rows.len() == 1 { "" } else { "s" }
                    )?;
                }
            }
            out.flush()?;
            Ok(exit::OK)
        }
        OutboxAction::Retry {
            id,
            config,
            state_dir,
        } => {
            let file = state_file(config.as_deref(), state_dir)?;
            let mut store = sentinela::state::Store::open(&file)?;
            let which = if id == "all" {
                None
            } else {
                Some(id.parse::<i64>().map_err(|_| {
                    anyhow::anyhow!("expected an operation id or `all`, got {id:?}")
                })?)
            };
            let n = store.retry_operations(which)?;
            println!("{n} operation{} due now", if n == 1 { "" } else { "s" });
            Ok(if n == 0 { exit::FINDINGS } else { exit::OK })
        }
        OutboxAction::Drop {
            id,
            config,
            state_dir,
        } => {
            let file = state_file(config.as_deref(), state_dir)?;
            let mut store = sentinela::state::Store::open(&file)?;
            let n = store.drop_operation(id)?;
            println!("{n} operation{} dropped", if n == 1 { "" } else { "s" });
            Ok(if n == 0 { exit::FINDINGS } else { exit::OK })
        }
    }
}

/// The exact HTTP requests each configured help desk would receive for these incidents (the
/// ticket creations; secrets redacted). Nothing is sent.
fn dry_run_requests(
    cfg: &Config,
    engine: &Engine,
    incidents: &[&Incident],
) -> Result<Vec<serde_json::Value>, Failure> {
    use sentinela::ticket::adapter::Adapter;
    use sentinela::ticket::lifecycle::IncidentSnapshot;
    use sentinela::ticket::render;
    use sentinela::ticket::{HttpRequest, TicketRef};
    let mut out = Vec::new();
    let show = |adapter: &Adapter, fingerprint: Option<&str>, req: &HttpRequest| {
        json!({
            "helpdesk": adapter.name(),
            "fingerprint": fingerprint,
            "method": req.method,
            "url": req.url,
            "headers": req.headers.iter().map(|h| (h.name.clone(), if h.secret { "<redacted>".to_string() } else { h.value.clone() })).collect::<Vec<_>>(),
            "body": req.body,
            "text": req.display_redacted(),
        })
    };
    for h in &cfg.file.helpdesks {
        let adapter = Adapter::for_dry_run(h).map_err(|e| anyhow::anyhow!(e))?;
        // A help desk with login sessions (GLPI) opens one first.
        if let (Some(req), false) = (adapter.open_session_request(), incidents.is_empty()) {
            out.push(show(&adapter, None, &req));
        }
        for i in incidents {
            let mut snap = IncidentSnapshot::of(i);
            if let Some(d) = engine
                .detectors
                .detectors
                .iter()
                .find(|d| d.id == i.detector)
            {
                snap = snap.with_detector(d);
            }
            let content = snap.content(None);
            let body = render::body(
                &content,
                adapter.body_format(),
                cfg.file.tickets.status_template.as_deref(),
            );
            let req = adapter.create_request(&content, &body);
            out.push(show(&adapter, Some(&i.fingerprint), &req));
            // Follow-ups of the create (Zammad's dedup tag), with the id the help desk would
            // return shown as a placeholder.
            let new_ticket = TicketRef("NEW_TICKET_ID".into());
            for req in adapter.after_create_requests(&new_ticket, &content) {
                out.push(show(&adapter, Some(&i.fingerprint), &req));
            }
        }
    }
    Ok(out)
}
