//! `sentinela run`: the long-running service.
//!
//! Sources run as tasks and send [`Batch`]es into one bounded channel (backpressure: a slow
//! pipeline slows the readers, it never drops lines). The pipeline task owns the [`Engine`] and
//! the [`Store`]: it processes each batch, remembers the batch's position, and commits
//! positions, incidents and correlation state together every `commit_interval` (and at
//! shutdown). That single transaction is what makes delivery exactly-once across crashes.
//!
//! Service behaviour: systemd `Type=notify` (READY once state is loaded and sources are open,
//! STATUS, WATCHDOG pings from the pipeline loop only, so a stuck pipeline is restarted,
//! RELOADING with the monotonic timestamp, STOPPING); SIGHUP reloads detectors, policy and
//! engine limits (validated first; on error the old ones stay and the error is logged);
//! SIGTERM/SIGINT drain: sources stop reading, queued batches are processed, state is
//! committed, and the process exits within `DRAIN_TIMEOUT`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::config::{Config, EngineSection};
use crate::engine::{Engine, Input};
use crate::http::{Health, Metrics};
use crate::scan::LineReader;
use crate::source::{file, journald, syslog, Batch, Position};
use crate::state::{Commit, StateError, Store};
use crate::ticket::adapter::{Adapter, HelpdeskConfig};
use crate::ticket::lifecycle::{Lifecycle, Operation, TicketRecord, TicketsConfig};
use crate::ticket::outbox::Worker;
use crate::timestamp::{now_millis, Millis, TimeParser, Zone};

/// How long a SIGTERM drain may take before the daemon exits anyway (state is committed
/// first; lines read but not committed are read again at the next start).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a reload or a stop waits for a help desk worker to finish its request.
const WORKER_STOP_LIMIT: Duration = Duration::from_secs(15);

/// How often incidents are checked for a local close (unless memory is over the cap).
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Options of `sentinela run`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Config file (else the usual discovery).
    pub config: Option<PathBuf>,
    /// Also read standard input as a source.
    pub stdin: bool,
    /// State directory override.
    pub state_dir: Option<PathBuf>,
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Config or detectors invalid.
    #[error(transparent)]
    Config(#[from] crate::Error),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Something the daemon needs could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A configuration the daemon cannot run with.
    #[error("{0}")]
    Setup(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Runs the daemon until SIGTERM/SIGINT, or until every source has ended (stdin closed).
pub fn run(opts: Options) -> Result<(), DaemonError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io_err("cannot start the async runtime"))?;
    let result = rt.block_on(run_async(opts));
    // State is committed by now; do not wait for blocking reads that cannot be interrupted
    // (standard input, a file read in progress).
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The state directory: option, config, systemd's `STATE_DIRECTORY`, in that order.
fn state_dir(opts: &Options, cfg: &Config) -> Result<PathBuf, DaemonError> {
    if let Some(d) = &opts.state_dir {
        return Ok(d.clone());
    }
    if let Some(d) = &cfg.file.state.dir {
        return Ok(d.clone());
    }
    if let Some(d) = std::env::var_os("STATE_DIRECTORY") {
        // systemd may pass several, separated by ':'; the first is ours.
        let first = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        return Ok(PathBuf::from(first));
    }
    Err(DaemonError::Setup(
        "no state directory: set [state] dir in the config, --state-dir, or run under systemd with StateDirectory=".into(),
    ))
}

fn notify(states: &[NotifyState<'_>]) {
    // Not running under systemd is fine: the call is a no-op without NOTIFY_SOCKET.
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(message = "systemd notification failed.", error = %e);
    }
}

async fn run_async(opts: Options) -> Result<(), DaemonError> {
    let cfg = Config::discover(opts.config.as_deref())?;
    let built = cfg.build()?;
    let zone = built.zone;
    let dir = state_dir(&opts, &cfg)?;
    std::fs::create_dir_all(&dir).map_err(io_err(format!(
        "cannot create state directory {}",
        dir.display()
    )))?;
    let store = Store::open_dir(&dir)?;
    let mut engine = Engine::new(built, cfg.file.engine.clone());
    // Only the incidents still open go back into memory: the most recent, up to the cap, and
    // not quiet for `close_after` by event time (against the latest one stored: see
    // `Pipeline::sweep`). The others stay in the store and are continued there if they recur.
    let close_after = cfg
        .file
        .engine
        .close_after
        .as_millis()
        .min(i64::MAX as u128) as Millis;
    let mut open = store.recent_incidents(None, cfg.file.engine.max_open_incidents)?;
    if let Some(latest) = open.iter().map(|i| i.last_seen).max() {
        open.retain(|i| i.last_seen >= latest.saturating_sub(close_after));
    }
    engine.restore(open, store.correlation()?);
    let restored = engine.incidents.len();
    let positions = store.positions()?;
    info!(
        message = "State loaded.",
        state_dir = %dir.display(),
        incidents = engine.incidents.len(),
        positions = positions.len(),
        detectors = engine.detectors.detectors.len()
    );

    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    if !cfg.file.http.listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&cfg.file.http.listen)
            .await
            .map_err(io_err(format!(
                "cannot listen on {} ([http] listen)",
                cfg.file.http.listen
            )))?;
        info!(message = "HTTP endpoints listening.", address = %cfg.file.http.listen);
        tokio::spawn(crate::http::serve(
            listener,
            metrics.clone(),
            health.clone(),
        ));
    }

    // Bounded: at most ~16 batches (each at most ~1 MiB) wait for the pipeline.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Help desks: one delivery worker each (its own state-store connection), and the
    // lifecycle decisions in the pipeline.
    let mut desks = Vec::new();
    for (h, adapter) in helpdesk_adapters(&cfg).map_err(DaemonError::Setup)? {
        desks.push(start_desk(
            h,
            adapter,
            &cfg.file.tickets,
            &dir,
            &metrics,
            &health,
        )?);
    }

    let (tx, rx) = mpsc::channel::<(Arc<str>, Batch)>(16);
    let mut sources = tokio::task::JoinSet::new();
    let max_line = cfg.file.engine.max_line_bytes;
    for f in &cfg.file.sources.file {
        let committed: Vec<Position> = positions
            .iter()
            .filter(|p| p.source == f.name && matches!(p.position, Position::File { .. }))
            .map(|p| p.position.clone())
            .collect();
        let first_start = committed.is_empty();
        let tailer = file::FileTailer::new(&f.name, f, max_line, committed, first_start)
            .map_err(|e| DaemonError::Setup(format!("source {:?}: {e}", f.name)))?;
        sources.spawn(file::run(
            tailer,
            f.poll_interval,
            tagged(&f.name, &tx),
            shutdown_rx.clone(),
        ));
    }
    let mut journald_stats = Vec::new();
    for j in &cfg.file.sources.journald {
        let stream = format!("journald:{}", j.name);
        let cursor = positions.iter().find_map(|p| match &p.position {
            Position::Journal { cursor } if p.stream == stream => Some(cursor.clone()),
            _ => None,
        });
        let stats = Arc::new(journald::JournaldStats::default());
        journald_stats.push((j.name.clone(), stats.clone()));
        let (cfg, tx, shutdown) = (j.clone(), tagged(&j.name, &tx), shutdown_rx.clone());
        sources.spawn(async move {
            let name = cfg.name.clone();
            if let Err(e) = journald::run(cfg, cursor, tx, shutdown, stats).await {
                error!(message = "journald source stopped.", source = %name, error = %e);
            }
        });
    }
    let mut syslog_stats = Vec::new();
    for sl in &cfg.file.sources.syslog {
        let stats = Arc::new(syslog::SyslogStats::default());
        let listener = syslog::bind(sl, stats.clone())
            .await
            .map_err(|e| DaemonError::Setup(e.to_string()))?;
        info!(
            message = "Syslog receiver listening.",
            source = %sl.name,
            udp = ?listener.udp_addr(),
            tcp = ?listener.tcp_addr()
        );
        syslog_stats.push((sl.name.clone(), stats));
        sources.spawn(listener.run(tagged(&sl.name, &tx), shutdown_rx.clone()));
    }
    if opts.stdin {
        let tx = tagged("stdin", &tx);
        sources.spawn(async move {
            let _ = tokio::task::spawn_blocking(move || stdin_source(tx, max_line)).await;
        });
    }
    drop(tx);
    if sources.is_empty() {
        return Err(DaemonError::Setup(
            "no sources configured: add [[source.file]], [[source.journald]] or [[source.syslog]] to the config, or use --stdin".into(),
        ));
    }

    health.set_ready(true);
    notify(&[NotifyState::Ready, NotifyState::Status("running")]);
    info!(message = "Running.", sources = sources.len());

    let source_stats = SourceStats {
        journald: journald_stats,
        syslog: syslog_stats,
    };
    let pipeline = Pipeline {
        desks,
        pending_tickets: BTreeMap::new(),
        pending_outbox: Vec::new(),
        source_stats,
        engine,
        store,
        zone,
        inputs: HashMap::new(),
        pending_positions: BTreeMap::new(),
        pending_incidents: BTreeSet::new(),
        pending_correlation: BTreeMap::new(),
        metrics: metrics.clone(),
        hits_seen: Vec::new(),
        allowlisted_seen: Vec::new(),
        evicted_seen: 0,
        counted_incidents: restored,
        lines: 0,
        limits: cfg.file.engine.clone(),
        last_sweep: Instant::now(),
        tickets: cfg.file.tickets.clone(),
        state_dir: dir.clone(),
        health: health.clone(),
    };
    let result = pipeline
        .run(
            rx,
            cfg.file.state.commit_interval,
            opts.config.clone(),
            shutdown_tx,
        )
        .await;
    // Sources end when the shutdown flag is set (or their input ends); the pipeline stopped
    // the workers. An operation in flight is delivered again at the next start
    // (at-least-once, made idempotent by the create's key lookup).
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while sources.join_next().await.is_some() {}
    })
    .await;
    health.set_ready(false);
    result
}

/// A sender for one source: batches are tagged with the source's name (the key under which
/// its positions are stored) and forwarded into the pipeline's channel, keeping backpressure.
/// Validates every `[[helpdesk]]`, reads its secrets (secret files named relative to the
/// config file) and builds its adapter: all or nothing, so that a reload with a missing
/// secret changes nothing.
fn helpdesk_adapters(cfg: &Config) -> Result<Vec<(HelpdeskConfig, Adapter)>, String> {
    let config_dir = cfg.path.parent().map(Path::to_path_buf).unwrap_or_default();
    cfg.file
        .helpdesks
        .iter()
        .map(|h| {
            let h = h.with_paths_relative_to(&config_dir);
            Adapter::from_config(&h).map(|a| (h, a))
        })
        .collect()
}

/// Starts the delivery worker of one help desk and returns its desk.
fn start_desk(
    config: HelpdeskConfig,
    adapter: Adapter,
    tickets: &TicketsConfig,
    dir: &Path,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
) -> Result<Desk, DaemonError> {
    let name = config.name.get_ref().clone();
    let resolves = adapter.capabilities().resolve_on_close;
    let worker = Worker::new(
        adapter,
        Store::open_dir(dir)?,
        tickets.reopen_window,
        tickets.status_template.clone(),
        metrics.clone(),
        health.clone(),
    )
    .map_err(DaemonError::Setup)?;
    let (stop, stop_rx) = watch::channel(false);
    let wake = worker.wake.clone();
    let task = tokio::spawn(worker.run(stop_rx));
    Ok(Desk {
        lifecycle: Lifecycle::new(&name, tickets.clone()),
        wake,
        resolves,
        name,
        records: HashMap::new(),
        config,
        stop,
        task,
    })
}

impl Desk {
    /// Stops the worker and waits for it (at most `limit`; then it is aborted: an operation
    /// in flight stays queued and is delivered again, made harmless by the create's key
    /// lookup). Never two workers for one help desk at once.
    async fn stop(self, limit: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Loads the ticket record of `fp` from the store into `desk.records` unless it is there
/// already (records in memory are newer: they may not be committed yet).
fn load_record(store: &Store, desk: &mut Desk, fp: &str) {
    if desk.records.contains_key(fp) {
        return;
    }
    match store.ticket(&desk.name, fp) {
        Ok(Some(r)) => {
            desk.records.insert(fp.to_string(), r);
        }
        Ok(None) => {}
        // Without the record the incident would look new and get a second ticket; the
        // help desk lookup by key before each create still prevents the duplicate.
        Err(e) => {
            error!(message = "Cannot read a ticket record.", helpdesk = %desk.name, fingerprint = %fp, error = %e)
        }
    }
}

fn tagged(name: &str, tx: &mpsc::Sender<(Arc<str>, Batch)>) -> mpsc::Sender<Batch> {
    let (stx, mut srx) = mpsc::channel::<Batch>(4);
    let name: Arc<str> = name.into();
    let tx = tx.clone();
    tokio::spawn(async move {
        while let Some(b) = srx.recv().await {
            if tx.send((name.clone(), b)).await.is_err() {
                return;
            }
        }
    });
    stx
}

/// Reads standard input as a source until it closes (no position: stdin cannot be replayed).
fn stdin_source(tx: mpsc::Sender<Batch>, max_line: usize) {
    let stdin = io::stdin();
    let mut lr = LineReader::new(stdin.lock(), max_line);
    let mut truncated = 0;
    loop {
        match lr.next_block() {
            Ok(Some(block)) => {
                let mut data = block.to_vec();
                if data.last() != Some(&b'\n') {
                    data.push(b'\n');
                }
                let lines = memchr::memchr_iter(b'\n', &data).count() as u64;
                let batch = Batch {
                    stream: "stdin".into(),
                    name: "-".into(),
                    data,
                    lines,
                    position: None,
                    labels: Vec::new(),
                    truncated_lines: lr.truncated - truncated,
                };
                truncated = lr.truncated;
                if tx.blocking_send(batch).is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                error!(message = "Cannot read standard input.", error = %e);
                return;
            }
        }
    }
}

/// Counters kept by the sources themselves (network and subprocess problems), exported at
/// every tick.
struct SourceStats {
    journald: Vec<(String, Arc<journald::JournaldStats>)>,
    syslog: Vec<(String, Arc<syslog::SyslogStats>)>,
}

impl SourceStats {
    fn export(&self, m: &Metrics) {
        use std::sync::atomic::Ordering::Relaxed;
        for (name, s) in &self.syslog {
            for (reason, v) in [
                ("truncated", &s.truncated),
                ("no_pri", &s.no_pri),
                ("malformed_rfc5424", &s.malformed_rfc5424),
                ("connection_rejected", &s.connections_rejected),
                ("connection_timed_out", &s.connections_timed_out),
                ("error", &s.errors),
            ] {
                m.set(
                    "sentinela_dropped_total",
                    &[("source", name), ("reason", reason)],
                    v.load(Relaxed) as f64,
                );
            }
        }
        for (name, s) in &self.journald {
            for (reason, v) in [
                ("truncated", &s.truncated),
                ("invalid_entry", &s.invalid_entries),
                ("journalctl_exit", &s.exits),
                ("journalctl_spawn_failure", &s.spawn_failures),
            ] {
                m.set(
                    "sentinela_dropped_total",
                    &[("source", name), ("reason", reason)],
                    v.load(Relaxed) as f64,
                );
            }
        }
    }
}

/// One help desk as the pipeline sees it.
struct Desk {
    name: String,
    lifecycle: Lifecycle,
    /// Ticket records by fingerprint (the local map is the first source of truth): those of
    /// incidents in memory, loaded from the store on first use and dropped when the incident
    /// leaves memory, plus uncommitted ones.
    records: HashMap<String, TicketRecord>,
    /// The help desk resolves tickets when incidents close locally (PagerDuty).
    resolves: bool,
    /// Its `[[helpdesk]]` entry (secret paths resolved): a reload restarts the worker only
    /// when this changes.
    config: HelpdeskConfig,
    /// Tells the delivery worker to stop.
    stop: watch::Sender<bool>,
    /// The delivery worker.
    task: tokio::task::JoinHandle<()>,
    /// Wakes the delivery worker after a commit that queued operations.
    wake: Arc<tokio::sync::Notify>,
}

/// The pipeline task's state.
struct Pipeline {
    desks: Vec<Desk>,
    /// Ticket records and outbox operations for the next commit.
    pending_tickets: BTreeMap<(String, String), TicketRecord>,
    pending_outbox: Vec<(String, String, Operation)>,
    source_stats: SourceStats,
    engine: Engine,
    store: Store,
    zone: Zone,
    /// Per stream: line numbers, time-parser state, labels.
    inputs: HashMap<String, Input>,
    /// Latest uncommitted position per stream: (source name, position).
    pending_positions: BTreeMap<String, (String, Position)>,
    /// Incidents (indices) to write at the next commit.
    pending_incidents: BTreeSet<usize>,
    /// Correlation states to write at the next commit.
    pending_correlation: BTreeMap<(String, String), Option<String>>,
    metrics: Arc<Metrics>,
    /// Per-detector counters already exported to metrics.
    hits_seen: Vec<u64>,
    allowlisted_seen: Vec<u64>,
    evicted_seen: u64,
    /// Incidents already counted in metrics (restored ones are not counted again).
    counted_incidents: usize,
    lines: u64,
    /// `[engine]`: `close_after` and `max_open_incidents` drive [`Pipeline::sweep`].
    limits: EngineSection,
    last_sweep: Instant,
    /// `[tickets]`, for desks started by a reload.
    tickets: TicketsConfig,
    /// Where workers open their state-store connections.
    state_dir: PathBuf,
    health: Arc<Health>,
}

impl Pipeline {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<(Arc<str>, Batch)>,
        commit_interval: Duration,
        config_path: Option<PathBuf>,
        shutdown: watch::Sender<bool>,
    ) -> Result<(), DaemonError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).map_err(io_err("cannot handle SIGHUP"))?;
        let mut term = signal(SignalKind::terminate()).map_err(io_err("cannot handle SIGTERM"))?;
        let mut int = signal(SignalKind::interrupt()).map_err(io_err("cannot handle SIGINT"))?;
        let mut tick = tokio::time::interval(commit_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_commit = Instant::now();
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some((src, b)) => {
                        // Matching and the SQLite commit (fsync) are blocking work: tell the
                        // runtime, so the sources' tasks move to the other worker meanwhile.
                        tokio::task::block_in_place(|| {
                            self.process(&src, b);
                            // Past the incident cap, commit (and sweep) now rather than at the
                            // next tick: a flood opens tens of thousands a second.
                            if last_commit.elapsed() >= commit_interval || self.over_cap() {
                                self.commit();
                                last_commit = Instant::now();
                            }
                        });
                    }
                    None => {
                        info!(message = "All sources ended.");
                        break;
                    }
                },
                _ = tick.tick() => {
                    tokio::task::block_in_place(|| self.commit());
                    self.source_stats.export(&self.metrics);
                    last_commit = Instant::now();
                    // The watchdog is fed from the pipeline loop only: if processing or
                    // committing hangs, systemd notices and restarts us.
                    let status = format!(
                        "{} lines, {} incidents",
                        self.lines,
                        self.engine.incidents.len()
                    );
                    notify(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
                }
                _ = hup.recv() => self.reload(config_path.as_deref()).await,
                _ = term.recv() => { info!(message = "SIGTERM: draining."); break; }
                _ = int.recv() => { info!(message = "SIGINT: draining."); break; }
            }
        }
        notify(&[NotifyState::Stopping]);
        let _ = shutdown.send(true);
        for d in &self.desks {
            let _ = d.stop.send(true);
        }
        // Drain what the sources already read, bounded in time; then commit.
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((src, b))) => self.process(&src, b),
                Ok(None) => break,
                Err(_) => {
                    warn!(message = "Drain timed out; uncommitted lines will be read again at the next start.");
                    break;
                }
            }
        }
        self.commit();
        // Workers were told to stop with the sources; give a request in flight a moment.
        for d in std::mem::take(&mut self.desks) {
            d.stop(Duration::from_secs(2)).await;
        }
        if !self.pending_positions.is_empty() || !self.pending_incidents.is_empty() {
            return Err(DaemonError::Setup(
                "the final state commit failed; lines since the last commit will be read again at the next start".into(),
            ));
        }
        info!(
            message = "Stopped.",
            lines = self.lines,
            incidents = self.engine.incidents.len()
        );
        Ok(())
    }

    fn process(&mut self, source: &str, b: Batch) {
        let zone = self.zone;
        let input = self
            .inputs
            .entry(b.stream.clone())
            .or_insert_with(|| Input::new(b.name.clone(), TimeParser::new(zone, now_millis())));
        input.name.clone_from(&b.name);
        input.set_labels(&b.labels);
        // Live input: the year of RFC 3164 timestamps is this year's.
        input.time.reference = now_millis();
        let known = self.engine.incidents.len();
        self.engine
            .process_block(&b.data, input, true, |_, _, _| {});
        let labels = [("source", source)];
        self.metrics
            .add("sentinela_lines_total", &labels, b.lines as f64);
        self.metrics
            .add("sentinela_bytes_total", &labels, b.data.len() as f64);
        self.metrics.add(
            "sentinela_truncated_lines_total",
            &labels,
            b.truncated_lines as f64,
        );
        if let Some(t) = input.last_time {
            self.metrics.set(
                "sentinela_source_lag_seconds",
                &labels,
                ((now_millis() - t) as f64 / 1000.0).max(0.0),
            );
        }
        self.lines += b.lines;
        if let Some(p) = b.position {
            self.pending_positions
                .insert(b.stream, (source.to_string(), p));
        }
        let changes = self.engine.take_changes();
        // An incident that opened with the fingerprint of one retired from memory continues
        // the stored record (count, first sighting, first evidence).
        for &i in changes.incidents.iter().filter(|&&i| i >= known) {
            let fp = &self.engine.incidents[i].fingerprint;
            match self.store.incident(fp) {
                Ok(Some(stored)) => self.engine.absorb(i, stored),
                Ok(None) => {}
                Err(e) => {
                    error!(message = "Cannot read a stored incident; its count restarts.", fingerprint = %fp, error = %e)
                }
            }
        }
        if !self.desks.is_empty() {
            let now = now_millis();
            for &i in &changes.incidents {
                let inc = &self.engine.incidents[i];
                let det = self
                    .engine
                    .detectors
                    .detectors
                    .iter()
                    .find(|d| d.id == inc.detector);
                for desk in &mut self.desks {
                    let digest_key = desk.lifecycle.digest_key(&inc.detector, now);
                    load_record(&self.store, desk, &inc.fingerprint);
                    // The storm digest matters only to an incident without a ticket record
                    // (past a quota): recurrences do not read it from the store.
                    if !desk.records.contains_key(&inc.fingerprint) {
                        load_record(&self.store, desk, &digest_key);
                    }
                    let decision = desk.lifecycle.on_incident(
                        inc,
                        det,
                        desk.records.get(&inc.fingerprint),
                        desk.records.get(&digest_key),
                        now,
                    );
                    for r in decision.records {
                        desk.records.insert(r.fingerprint.clone(), r.clone());
                        // The latest version of a record wins (a storm digest changes with
                        // every incident).
                        self.pending_tickets
                            .insert((r.helpdesk.clone(), r.fingerprint.clone()), r);
                    }
                    for (fp, op) in decision.ops {
                        self.pending_outbox.push((desk.name.clone(), fp, op));
                    }
                }
            }
        }
        self.pending_incidents.extend(changes.incidents);
        for (d, k, s) in changes.correlation {
            self.pending_correlation.insert((d, k), s);
        }
        self.export_engine_metrics();
    }

    /// Counts incidents opened since the last call (incidents are only ever appended).
    fn count_new_incidents(&mut self) {
        for inc in &self.engine.incidents[self.counted_incidents.min(self.engine.incidents.len())..]
        {
            self.metrics.add(
                "sentinela_incidents_total",
                &[
                    ("detector", &inc.detector),
                    ("priority", &inc.priority.to_string()),
                ],
                1.0,
            );
        }
        self.counted_incidents = self.engine.incidents.len();
    }

    fn export_engine_metrics(&mut self) {
        let st = &self.engine.stats;
        self.hits_seen.resize(st.hits.len(), 0);
        self.allowlisted_seen.resize(st.suppressed.len(), 0);
        for (i, d) in self.engine.detectors.detectors.iter().enumerate() {
            let dh = st.hits[i] - self.hits_seen[i].min(st.hits[i]);
            let ds = st.suppressed[i] - self.allowlisted_seen[i].min(st.suppressed[i]);
            self.metrics
                .add("sentinela_hits_total", &[("detector", &d.id)], dh as f64);
            self.metrics.add(
                "sentinela_allowlisted_total",
                &[("detector", &d.id)],
                ds as f64,
            );
            self.hits_seen[i] = st.hits[i];
            self.allowlisted_seen[i] = st.suppressed[i];
        }
        self.count_new_incidents();
        let ev = self.engine.evicted_keys();
        self.metrics.add(
            "sentinela_correlation_evicted_total",
            &[],
            ev.saturating_sub(self.evicted_seen) as f64,
        );
        self.evicted_seen = ev;
    }

    /// Writes pending positions, incidents and correlation state in one transaction. On
    /// failure everything stays pending and is retried at the next tick.
    fn commit(&mut self) {
        if self.pending_positions.is_empty()
            && self.pending_incidents.is_empty()
            && self.pending_correlation.is_empty()
            && self.pending_outbox.is_empty()
            && self.pending_tickets.is_empty()
        {
            return;
        }
        let new_incidents: Vec<usize> = self
            .pending_incidents
            .iter()
            .copied()
            .filter(|&i| i < self.engine.incidents.len())
            .collect();
        let commit = Commit {
            positions: self
                .pending_positions
                .iter()
                .map(|(stream, (src, p))| (stream.clone(), src.clone(), p.clone()))
                .collect(),
            incidents: new_incidents
                .iter()
                .map(|&i| &self.engine.incidents[i])
                .collect(),
            correlation: self
                .pending_correlation
                .iter()
                .map(|((d, k), s)| (d.clone(), k.clone(), s.clone()))
                .collect(),
            tickets: self.pending_tickets.values().cloned().collect(),
            outbox: self.pending_outbox.clone(),
        };
        let started = Instant::now();
        match self.store.commit(&commit) {
            Ok(()) => {
                let secs = started.elapsed().as_secs_f64();
                self.metrics.add("sentinela_state_commits_total", &[], 1.0);
                self.metrics
                    .add("sentinela_state_commit_seconds_sum", &[], secs);
                self.metrics
                    .set("sentinela_state_commit_seconds_last", &[], secs);
                self.pending_positions.clear();
                self.pending_incidents.clear();
                self.pending_correlation.clear();
                self.pending_tickets.clear();
                if !self.pending_outbox.is_empty() {
                    self.pending_outbox.clear();
                    for d in &self.desks {
                        d.wake.notify_one();
                    }
                }
                if self.sweep() {
                    // Resolve operations of closed incidents: committed now, not at the next
                    // tick, so a crash in between cannot lose them.
                    self.commit();
                }
            }
            Err(e) => {
                self.metrics
                    .add("sentinela_state_commit_errors_total", &[], 1.0);
                error!(message = "State commit failed; will retry.", error = %e);
            }
        }
    }

    /// Applies a reload to the help desks: an unchanged `[[helpdesk]]` keeps its worker (and
    /// its quotas); a changed one (a new token file, another URL) gets a new worker once the
    /// old one has stopped; a removed one stops (its queued operations stay in the outbox,
    /// listed by `sentinela outbox list`). A change to `[tickets]` restarts every desk.
    async fn reload_desks(
        &mut self,
        tickets: TicketsConfig,
        adapters: Vec<(HelpdeskConfig, Adapter)>,
    ) {
        let tickets_changed = tickets != self.tickets;
        let mut old: HashMap<String, Desk> =
            self.desks.drain(..).map(|d| (d.name.clone(), d)).collect();
        for (h, adapter) in adapters {
            let name = h.name.get_ref().clone();
            let previous = old.remove(&name);
            if let Some(d) = previous {
                if d.config == h && !tickets_changed {
                    self.desks.push(d);
                    continue;
                }
                d.stop(WORKER_STOP_LIMIT).await;
            }
            match start_desk(
                h,
                adapter,
                &tickets,
                &self.state_dir,
                &self.metrics,
                &self.health,
            ) {
                Ok(d) => {
                    info!(message = "Help desk worker started.", helpdesk = %name);
                    self.desks.push(d);
                }
                Err(e) => {
                    error!(message = "Help desk worker could not start; its operations stay queued.", helpdesk = %name, error = %e);
                    self.health
                        .problem(&format!("helpdesk {name}"), Some(e.to_string()));
                }
            }
        }
        for (name, d) in old {
            d.stop(WORKER_STOP_LIMIT).await;
            self.health.problem(&format!("helpdesk {name}"), None);
            info!(message = "Help desk removed; its queued operations stay in the outbox.", helpdesk = %name);
        }
        self.tickets = tickets;
    }

    /// More incidents in memory than `max_open_incidents` allows, with 10% slack so that a
    /// flood commits in batches rather than at every block.
    fn over_cap(&self) -> bool {
        let cap = self.limits.max_open_incidents;
        self.engine.incidents.len() > cap + cap / 10
    }

    /// Closes incidents locally (quiet for `close_after`) and keeps memory bounded (at most
    /// `max_open_incidents`), at most once every [`SWEEP_INTERVAL`] unless over the cap. Runs
    /// right after a successful commit, when no incident index is outstanding. Returns whether
    /// it queued operations (resolves) to commit.
    fn sweep(&mut self) -> bool {
        let over = self.engine.incidents.len() > self.limits.max_open_incidents;
        if !self.pending_incidents.is_empty()
            || !self.pending_tickets.is_empty()
            || (!over && self.last_sweep.elapsed() < SWEEP_INTERVAL)
        {
            return false;
        }
        self.last_sweep = Instant::now();
        self.count_new_incidents();
        let retired = self
            .engine
            .retire(self.limits.close_after, self.limits.max_open_incidents);
        self.counted_incidents = self.engine.incidents.len();
        let mut queued = false;
        for (inc, quiet) in &retired {
            let reason = if *quiet { "quiet" } else { "memory" };
            self.metrics.add(
                "sentinela_incidents_closed_total",
                &[("reason", reason)],
                1.0,
            );
            let det = self
                .engine
                .detectors
                .detectors
                .iter()
                .find(|d| d.id == inc.detector);
            for desk in &mut self.desks {
                if *quiet && desk.resolves {
                    load_record(&self.store, desk, &inc.fingerprint);
                    let rec = desk.records.get(&inc.fingerprint);
                    if let Some((fp, op)) = desk.lifecycle.on_close(inc, det, rec) {
                        self.pending_outbox.push((desk.name.clone(), fp, op));
                        queued = true;
                    }
                }
            }
        }
        if !retired.is_empty() {
            // Records of incidents no longer in memory leave too (reloaded on demand).
            let live: std::collections::HashSet<&str> = self
                .engine
                .incidents
                .iter()
                .map(|i| i.fingerprint.as_str())
                .collect();
            for desk in &mut self.desks {
                desk.records.retain(|fp, _| live.contains(fp.as_str()));
            }
            info!(
                message = "Closed incidents locally.",
                quiet = retired.iter().filter(|(_, q)| *q).count(),
                memory = retired.iter().filter(|(_, q)| !*q).count(),
                open = self.engine.incidents.len()
            );
        }
        self.metrics.set(
            "sentinela_open_incidents",
            &[],
            self.engine.incidents.len() as f64,
        );
        queued
    }

    /// SIGHUP: the new config, detectors and help desks are validated (secrets read) first;
    /// any error keeps everything running as it was.
    async fn reload(&mut self, config_path: Option<&Path>) {
        let mono = NotifyState::monotonic_usec_now().ok();
        let mut states = vec![NotifyState::Reloading];
        states.extend(mono);
        notify(&states);
        info!(message = "SIGHUP: reloading config, detectors and help desks.");
        let loaded = Config::discover(config_path)
            .and_then(|c| c.build().map(|b| (c, b)))
            .map_err(|e| e.to_string())
            .and_then(|(c, b)| helpdesk_adapters(&c).map(|a| (c, b, a)));
        match loaded {
            Ok((cfg, built, adapters)) => {
                tokio::task::block_in_place(|| {
                    // Commit first so that the old engine's changes are not lost.
                    self.commit();
                    self.zone = built.zone;
                    self.engine.reconfigure(built, cfg.file.engine.clone());
                });
                self.limits = cfg.file.engine.clone();
                self.hits_seen.clear();
                self.allowlisted_seen.clear();
                self.evicted_seen = 0;
                self.reload_desks(cfg.file.tickets.clone(), adapters).await;
                self.metrics
                    .add("sentinela_reloads_total", &[("result", "ok")], 1.0);
                info!(
                    message = "Reloaded.",
                    detectors = self.engine.detectors.detectors.len(),
                    helpdesks = self.desks.len()
                );
            }
            Err(e) => {
                self.metrics
                    .add("sentinela_reloads_total", &[("result", "error")], 1.0);
                error!(message = "Reload failed; keeping the running config.", error = %e);
            }
        }
        notify(&[NotifyState::Ready]);
    }
}
