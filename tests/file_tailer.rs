//! The file source against real files in a temporary directory.
//!
//! - A model-based test drives random sequences of writes, rotations, truncations, polls,
//!   commits and crashes, and checks that every line is committed exactly once, in order,
//!   intact.
//! - Focused tests, one per behaviour, named after what they prove.
//! - `run` with a 30 s poll interval: only a change event can explain a prompt delivery.
//! - Measurements (throughput, idle CPU) print their numbers; run them with
//!   `cargo test --release --test file_tailer -- --ignored --nocapture`.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sentinela::config::FileSourceConfig;
use sentinela::source::file::{self, FileTailer};
use sentinela::source::{Batch, Position};

fn config(include: &[&Path], exclude: &[&str], start_at: &str) -> FileSourceConfig {
    let list = |v: Vec<String>| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let include = list(include.iter().map(|p| p.display().to_string()).collect());
    let exclude = list(exclude.iter().map(|s| s.to_string()).collect());
    toml::from_str(&format!(
        "name = \"test\"\ninclude = [{include}]\nexclude = [{exclude}]\nstart_at = \"{start_at}\"\n"
    ))
    .expect("test config parses")
}

fn tailer(include: &[&Path], start_at: &str, cap: usize, committed: Vec<Position>) -> FileTailer {
    let first = committed.is_empty();
    FileTailer::new(
        "test",
        &config(include, &[], start_at),
        cap,
        committed,
        first,
    )
    .unwrap()
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// Polls until three polls in a row neither deliver nor read anything.
fn drain(t: &mut FileTailer, budget: usize) -> Vec<Batch> {
    let mut all = Vec::new();
    let mut quiet = 0;
    while quiet < 3 {
        let read = t.stats().bytes_read;
        let b = t.poll(budget);
        if b.is_empty() && t.stats().bytes_read == read {
            quiet += 1;
        } else {
            quiet = 0;
            all.extend(b);
        }
    }
    all
}

fn lines(batches: &[Batch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            b.data
                .strip_suffix(b"\n")
                .unwrap_or(&b.data)
                .split(|&c| c == b'\n')
                .filter(|_| !b.data.is_empty())
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The last position per stream, as the pipeline would commit it.
fn positions(batches: &[Batch]) -> Vec<Position> {
    let mut last: HashMap<&str, &Position> = HashMap::new();
    for b in batches {
        last.insert(&b.stream, b.position.as_ref().unwrap());
    }
    last.into_values().cloned().collect()
}

fn file_position(b: &Batch) -> (&str, &str, u64) {
    match b.position.as_ref() {
        Some(Position::File {
            fingerprint,
            path,
            offset,
            ..
        }) => (fingerprint, path, *offset),
        other => panic!("expected a file position, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Model-based test
// ---------------------------------------------------------------------------------------

/// Line cap of the model: small, so that long lines are cheap.
const CAP: usize = 40;

/// splitmix64: tiny, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Append this many complete lines (finishing a pending partial line first).
    Append(usize),
    /// Append one line longer than the cap.
    Long,
    /// Write the first piece of a line, or the rest of the pending one.
    Partial,
    /// auth.log.N -> auth.log.N+1 ... auth.log -> auth.log.1; `create`: a new empty auth.log
    /// at once (else the next write creates it).
    Rename { create: bool },
    /// Shift the rotated files, copy auth.log to auth.log.1, truncate auth.log.
    CopyTruncate,
    /// Delete the oldest rotated file (`delete`), or move it out of the glob.
    RemoveOldest { delete: bool },
    /// Copy a file to a new name inside the glob (`cp auth.log.2 auth.log.snap0`): the copy's
    /// lines must not be delivered again.
    Snapshot,
    /// Poll with this budget.
    Poll(usize),
    /// The pipeline commits what was delivered.
    Commit,
    /// kill -9 and start again from the committed positions.
    Restart,
}

/// The files as the test wrote them, what the tailer delivered and what was committed.
///
/// Races excluded by construction (each operation is atomic with respect to the polls, which
/// run in between, on the same thread):
/// - copytruncate: the copy and the truncation happen together, and the writer never writes
///   between them. A real copytruncate loses the lines written between the copy and the
///   truncation; no reader can recover them.
/// - rotation never splits a line: a pending partial line is finished before the rename or
///   the copy (a real writer finishes its line on its old descriptor before it reopens).
///
/// Lines that no reader can be expected to deliver are "lost" and may be missing (but never
/// duplicated): those of a file deleted or moved out of the glob before the tailer ever saw it,
/// and those of a removed file the tailer was still draining when it was killed (the file is
/// out of reach of the next start). Lines of a removed file the tailer saw must be delivered
/// while it lives: that is the "drain before letting go" rule.
struct Model {
    dir: PathBuf,
    end: bool,
    /// Each file: 0 is auth.log, N is auth.log.N; `None`: absent.
    files: Vec<Option<Instance>>,
    /// The line being written in pieces, and how many of its bytes are written.
    partial: Option<(usize, usize)>,
    /// Every line's text (without newline), by number.
    texts: Vec<Vec<u8>>,
    /// Lines skipped by `start_at = "end"` at a first start.
    skipped: HashSet<usize>,
    /// Lines of removed files the running tailer saw and has not committed yet.
    at_risk: HashSet<usize>,
    /// Lines that may be missing (see above).
    lost: HashSet<usize>,
    removed: usize,
    delivered: Vec<(String, usize)>,
    delivered_positions: HashMap<String, Position>,
    committed: Vec<(String, usize)>,
    committed_set: HashSet<usize>,
    positions: HashMap<String, Position>,
    snapshots: usize,
    tailer: Option<FileTailer>,
    /// The tailer was created with `first_start` and has not polled yet.
    fresh: bool,
    log: Vec<Op>,
}

/// One file (inode) and its complete lines.
#[derive(Debug, Default)]
struct Instance {
    seqs: Vec<usize>,
    /// Had a complete line at a poll of the running tailer, so the tailer holds it open.
    seen: bool,
}

impl Model {
    fn new(dir: &Path, end: bool) -> Model {
        let mut m = Model {
            dir: dir.to_path_buf(),
            end,
            files: vec![None],
            partial: None,
            texts: Vec::new(),
            skipped: HashSet::new(),
            at_risk: HashSet::new(),
            lost: HashSet::new(),
            removed: 0,
            delivered: Vec::new(),
            delivered_positions: HashMap::new(),
            committed: Vec::new(),
            committed_set: HashSet::new(),
            positions: HashMap::new(),
            snapshots: 0,
            tailer: None,
            fresh: false,
            log: Vec::new(),
        };
        m.restart();
        m
    }

    fn path(&self, i: usize) -> PathBuf {
        if i == 0 {
            self.dir.join("auth.log")
        } else {
            self.dir.join(format!("auth.log.{i}"))
        }
    }

    fn new_line(&mut self, rng: &mut Rng, long: bool) -> usize {
        let seq = self.texts.len();
        let mut text = format!("line {seq} ").into_bytes();
        let len = if long {
            rng.range(CAP + 1, 4 * CAP)
        } else {
            rng.range(text.len(), CAP - 1)
        };
        while text.len() < len {
            text.push(b'a' + rng.below(26) as u8);
        }
        self.texts.push(text);
        seq
    }

    fn write(&mut self, bytes: &[u8]) {
        append(&self.path(0), bytes);
        if self.files[0].is_none() {
            self.files[0] = Some(Instance::default());
        }
    }

    fn finish_partial(&mut self) {
        if let Some((seq, written)) = self.partial.take() {
            let mut rest = self.texts[seq][written..].to_vec();
            rest.push(b'\n');
            self.write(&rest);
            self.files[0].as_mut().unwrap().seqs.push(seq);
        }
    }

    fn append_lines(&mut self, rng: &mut Rng, n: usize, long: bool) {
        self.finish_partial();
        let mut bytes = Vec::new();
        let mut seqs = Vec::new();
        for _ in 0..n {
            let seq = self.new_line(rng, long);
            bytes.extend_from_slice(&self.texts[seq]);
            bytes.push(b'\n');
            seqs.push(seq);
        }
        self.write(&bytes);
        self.files[0].as_mut().unwrap().seqs.extend(seqs);
    }

    /// Renames auth.log.N to auth.log.N+1, from the oldest down to `from`.
    fn shift(&mut self, from: usize) {
        for i in (from..self.files.len()).rev() {
            if self.files[i].is_some() {
                fs::rename(self.path(i), self.path(i + 1)).unwrap();
                if i + 1 == self.files.len() {
                    self.files.push(None);
                }
                self.files[i + 1] = self.files[i].take();
            }
        }
    }

    fn apply(&mut self, op: Op, rng: &mut Rng) {
        self.log.push(op);
        if std::env::var("MODEL_TRACE").is_ok() {
            eprintln!("{op:?}");
        }
        match op {
            Op::Append(n) => self.append_lines(rng, n, false),
            Op::Long => self.append_lines(rng, 1, true),
            Op::Partial => {
                if self.partial.is_some() {
                    self.finish_partial();
                } else {
                    let long = rng.below(4) == 0;
                    let seq = self.new_line(rng, long);
                    let written = rng.range(1, self.texts[seq].len() - 1);
                    let piece = self.texts[seq][..written].to_vec();
                    self.write(&piece);
                    self.partial = Some((seq, written));
                }
            }
            Op::Rename { create } => {
                self.finish_partial();
                self.shift(0);
                if create {
                    self.write(b"");
                }
            }
            Op::CopyTruncate => {
                self.finish_partial();
                if self.files[0].is_some() {
                    self.shift(1);
                    fs::copy(self.path(0), self.path(1)).unwrap();
                    OpenOptions::new()
                        .write(true)
                        .open(self.path(0))
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                    if self.files.len() < 2 {
                        self.files.push(None);
                    }
                    // The copy is a new inode; the truncated file a new identity.
                    let lines = self.files[0].replace(Instance::default()).unwrap();
                    self.files[1] = Some(Instance {
                        seqs: lines.seqs,
                        seen: false,
                    });
                }
            }
            Op::RemoveOldest { delete } => {
                while self.files.len() > 1 && self.files.last().unwrap().is_none() {
                    self.files.pop();
                }
                if self.files.len() > 1 {
                    let oldest = self.files.len() - 1;
                    if delete {
                        fs::remove_file(self.path(oldest)).unwrap();
                    } else {
                        let to = self.dir.join(format!("archive{}", self.removed));
                        fs::rename(self.path(oldest), to).unwrap();
                    }
                    self.removed += 1;
                    let f = self.files.pop().unwrap().unwrap();
                    let open = f.seqs.iter().filter(|s| !self.committed_set.contains(s));
                    if f.seen {
                        self.at_risk.extend(open);
                    } else {
                        self.lost.extend(open);
                    }
                }
            }
            Op::Snapshot => {
                self.finish_partial();
                let present: Vec<usize> = (0..self.files.len())
                    .filter(|&i| self.files[i].as_ref().is_some_and(|f| !f.seqs.is_empty()))
                    .collect();
                if !present.is_empty() {
                    let from = present[rng.below(present.len())];
                    // Names sorting before and after the rotated files.
                    let sep = if rng.below(2) == 0 { '-' } else { '.' };
                    let to = self
                        .dir
                        .join(format!("auth.log{sep}snap{}", self.snapshots));
                    fs::copy(self.path(from), to).unwrap();
                    self.snapshots += 1;
                }
            }
            Op::Poll(budget) => {
                self.poll(budget);
            }
            Op::Commit => self.commit(),
            Op::Restart => self.restart(),
        }
    }

    fn poll(&mut self, budget: usize) -> usize {
        if self.fresh && self.end {
            // start_at = end: what is complete now in the files is never delivered.
            for f in self.files.iter().flatten() {
                self.skipped.extend(f.seqs.iter().copied());
            }
        }
        for f in self.files.iter_mut().flatten() {
            f.seen |= !f.seqs.is_empty();
        }
        self.fresh = false;
        let batches = self.tailer.as_mut().unwrap().poll(budget);
        if std::env::var("MODEL_TRACE").is_ok() {
            eprintln!("files: {:?}", self.files);
            for b in &batches {
                eprintln!(
                    "  {} {} {:?} {:?}",
                    &b.stream[..12],
                    b.name,
                    file_position(b).2,
                    lines(std::slice::from_ref(b))
                        .iter()
                        .map(|l| l.split(' ').nth(1).unwrap().to_string())
                        .collect::<Vec<_>>()
                );
            }
        }
        let n = batches.len();
        for b in batches {
            self.check_batch(&b);
            self.delivered_positions
                .insert(b.stream.clone(), b.position.clone().unwrap());
        }
        n
    }

    fn check_batch(&mut self, b: &Batch) {
        let (fp, path, _) = file_position(b);
        assert_eq!(b.stream, format!("file:{fp}"), "{}", self.context());
        assert_eq!(b.name, path);
        assert!(b.labels.is_empty());
        if b.data.is_empty() {
            // Only a position: content skipped by start_at = "end".
            assert!(self.end && b.lines == 0, "{}", self.context());
            return;
        }
        assert!(b.data.ends_with(b"\n"), "{}", self.context());
        let mut n = 0;
        let mut cut = 0;
        for line in b.data[..b.data.len() - 1].split(|&c| c == b'\n') {
            let text = String::from_utf8_lossy(line);
            let seq: usize = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line {text:?}\n{}", self.context()));
            let full = &self.texts[seq];
            assert_eq!(
                line,
                &full[..full.len().min(CAP)],
                "line {seq} damaged\n{}",
                self.context()
            );
            cut += u64::from(full.len() > CAP);
            n += 1;
            self.delivered.push((b.stream.clone(), seq));
        }
        assert_eq!(b.lines, n, "{}", self.context());
        assert_eq!(b.truncated_lines, cut, "{}", self.context());
    }

    fn commit(&mut self) {
        for (stream, seq) in self.delivered.drain(..) {
            assert!(
                self.committed_set.insert(seq),
                "line {seq} committed twice\n{}",
                Self::context_of(&self.log)
            );
            self.committed.push((stream, seq));
        }
        self.positions.extend(self.delivered_positions.drain());
    }

    fn restart(&mut self) {
        self.tailer = None;
        for f in self.files.iter_mut().flatten() {
            f.seen = false;
        }
        for s in self.at_risk.drain() {
            if !self.committed_set.contains(&s) {
                self.lost.insert(s);
            }
        }
        self.delivered.clear();
        self.delivered_positions.clear();
        let first_start = self.positions.is_empty();
        let cfg = config(
            &[&self.dir.join("auth.log*")],
            &[],
            if self.end { "end" } else { "beginning" },
        );
        self.tailer = Some(
            FileTailer::new(
                "model",
                &cfg,
                CAP,
                self.positions.values().cloned().collect(),
                first_start,
            )
            .unwrap(),
        );
        self.fresh = first_start;
    }

    fn context(&self) -> String {
        Self::context_of(&self.log)
    }

    fn context_of(log: &[Op]) -> String {
        format!("operations: {log:?}")
    }

    /// Finishes writing, reads everything, commits, and checks the whole history.
    fn finish(&mut self) {
        self.finish_partial();
        let mut quiet = 0;
        while quiet < 3 {
            if self.poll(1 << 20) == 0 {
                quiet += 1;
            } else {
                quiet = 0;
            }
        }
        self.commit();
        let ctx = self.context();

        let missing: Vec<_> = (0..self.texts.len())
            .filter(|s| {
                !self.skipped.contains(s)
                    && !self.lost.contains(s)
                    && !self.committed_set.contains(s)
            })
            .collect();
        let skipped_but_read: Vec<_> = self.skipped.intersection(&self.committed_set).collect();
        assert!(
            missing.is_empty() && skipped_but_read.is_empty(),
            "missing {missing:?}, skipped but read {skipped_but_read:?}\n{ctx}"
        );
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (stream, seq) in &self.committed {
            if let Some(prev) = last.insert(stream, *seq) {
                assert!(prev < *seq, "{stream}: line {seq} after {prev}\n{ctx}");
            }
        }
        // The committed positions are exact: a restart reads nothing again.
        self.restart();
        self.fresh = false;
        let again = drain(self.tailer.as_mut().unwrap(), 1 << 20);
        assert!(
            again.is_empty(),
            "read again after a restart: {:?}\n{ctx}",
            lines(&again)
        );
    }
}

fn random_op(rng: &mut Rng) -> Op {
    const BUDGETS: [usize; 5] = [7, 30, 100, 500, 1 << 20];
    match rng.below(100) {
        0..=19 => Op::Append(rng.range(1, 4)),
        20..=21 => Op::Snapshot,
        22..=26 => Op::Long,
        27..=36 => Op::Partial,
        37..=42 => Op::Rename {
            create: rng.below(2) == 0,
        },
        43..=48 => Op::CopyTruncate,
        49..=54 => Op::RemoveOldest {
            delete: rng.below(3) > 0,
        },
        55..=79 => Op::Poll(BUDGETS[rng.below(BUDGETS.len())]),
        80..=94 => Op::Commit,
        _ => Op::Restart,
    }
}

/// Random histories of writes, rotations, truncations, polls, commits and crashes: every line
/// is committed exactly once, in order within its file, intact (cut lines: their first `CAP`
/// bytes). `MODEL_SEED=<n>` replays one sequence (`MODEL_TRACE=1` prints it),
/// `MODEL_SEQUENCES=<n>` changes how many run (from `MODEL_SEED`, default 1).
#[test]
fn model_every_line_is_committed_exactly_once_in_order() {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|s| s.parse::<u64>().expect("a number"))
    };
    let first = var("MODEL_SEED").unwrap_or(1);
    let count = var("MODEL_SEQUENCES").unwrap_or(if var("MODEL_SEED").is_some() { 1 } else { 600 });
    let started = Instant::now();
    let mut ops = 0;
    let mut lines = 0;
    let (mut lost, mut skipped) = (0, 0);
    for seed in first..first + count {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed);
        let end = rng.below(4) == 0;
        let mut m = Model::new(dir.path(), end);
        let len = rng.range(10, 60);
        for _ in 0..len {
            let op = random_op(&mut rng);
            m.apply(op, &mut rng);
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.finish()));
        if let Err(e) = result {
            eprintln!("model sequence failed: MODEL_SEED={seed} (start_at end: {end})");
            std::panic::resume_unwind(e);
        }
        ops += len;
        lines += m.texts.len();
        lost += m.lost.len();
        skipped += m.skipped.len();
    }
    println!(
        "model: {count} sequences, {ops} operations, {lines} lines ({skipped} skipped by \
         start_at end, {lost} allowed to be lost) in {:.2?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// Focused tests
// ---------------------------------------------------------------------------------------

#[test]
fn rename_rotation_drains_the_old_file_even_when_the_glob_no_longer_matches_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    append(&log, b"one\ntwo\n");
    // Only the live name: the rotated file is followed through its open handle.
    let mut t = tailer(&[&log], "beginning", 1024, Vec::new());
    let first = drain(&mut t, 1 << 20);
    assert_eq!(lines(&first), ["one", "two"]);
    let stream = first[0].stream.clone();

    // The writer appends, then rotation renames, then the writer (still holding the old
    // descriptor) finishes a line on the old file before it reopens the new one.
    let mut old = OpenOptions::new().append(true).open(&log).unwrap();
    old.write_all(b"three\nfo").unwrap();
    fs::rename(&log, dir.path().join("auth.log.1")).unwrap();
    old.write_all(b"ur\n").unwrap();
    drop(old);
    append(&log, b"new one\n");

    let rest = drain(&mut t, 1 << 20);
    let old_lines: Vec<_> = rest.iter().filter(|b| b.stream == stream).collect();
    let new_lines: Vec<_> = rest.iter().filter(|b| b.stream != stream).collect();
    assert_eq!(
        lines(&old_lines.into_iter().cloned().collect::<Vec<_>>()),
        ["three", "four"]
    );
    assert_eq!(
        lines(&new_lines.into_iter().cloned().collect::<Vec<_>>()),
        ["new one"]
    );
    // The renamed file stays open for a grace period (its writer may not have reopened yet).
    assert_eq!(t.stats().files_followed, 2);
}

#[test]
fn rename_rotation_within_the_glob_keeps_the_stream_and_updates_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    append(&log, b"one\n");
    let mut t = tailer(
        &[&dir.path().join("auth.log*")],
        "beginning",
        1024,
        Vec::new(),
    );
    let first = drain(&mut t, 1 << 20);
    append(&log, b"two\n");
    fs::rename(&log, dir.path().join("auth.log.1")).unwrap();
    append(&log, b"three\n");
    let rest = drain(&mut t, 1 << 20);
    let old: Vec<_> = rest
        .iter()
        .filter(|b| b.stream == first[0].stream)
        .cloned()
        .collect();
    assert_eq!(lines(&old), ["two"]);
    assert!(old[0].name.ends_with("auth.log.1"));
    assert_eq!(t.stats().rotations, 1);
    assert_eq!(t.stats().files_followed, 2);
}

#[test]
fn copytruncate_is_detected_and_the_copy_continues_from_the_committed_offset() {
    for restart in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        let glob = dir.path().join("auth.log*");
        append(&log, b"1\n2\n3\n");
        let mut t = tailer(&[&glob], "beginning", 1024, Vec::new());
        let first = drain(&mut t, 1 << 20);
        assert_eq!(lines(&first), ["1", "2", "3"]);
        let committed = positions(&first);

        // Written after the last read, then copied away and truncated before any poll.
        append(&log, b"4\n5\n");
        fs::copy(&log, dir.path().join("auth.log.1")).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, b"after truncation\n");

        if restart {
            t = tailer(&[&glob], "beginning", 1024, committed);
        }
        let rest = drain(&mut t, 1 << 20);
        let copy: Vec<_> = rest
            .iter()
            .filter(|b| b.stream == first[0].stream)
            .cloned()
            .collect();
        assert_eq!(lines(&copy), ["4", "5"], "restart: {restart}");
        assert!(copy[0].name.ends_with("auth.log.1"));
        assert_eq!(file_position(copy.last().unwrap()).2, 10);
        let fresh: Vec<_> = rest
            .iter()
            .filter(|b| b.stream != first[0].stream)
            .cloned()
            .collect();
        assert_eq!(lines(&fresh), ["after truncation"], "restart: {restart}");
        assert!(fresh[0].name.ends_with("auth.log"));
        if !restart {
            assert_eq!(t.stats().truncations, 1);
        }
    }
}

#[test]
fn truncation_that_grows_back_past_the_old_size_is_still_detected() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, b"first\n");
    let mut t = tailer(&[&log], "beginning", 1024, Vec::new());
    assert_eq!(lines(&drain(&mut t, 1 << 20)), ["first"]);
    fs::write(&log, b"rewritten, and longer than before\n").unwrap();
    assert_eq!(
        lines(&drain(&mut t, 1 << 20)),
        ["rewritten, and longer than before"]
    );
    assert_eq!(t.stats().truncations, 1);
}

#[test]
fn inode_reuse_with_different_content_is_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, b"new content\nsecond\n");
    let meta = fs::metadata(&log).unwrap();
    // A stored position for another file that had this very device, inode and path (the
    // state a deleted file leaves behind when its inode is reused): it must not apply.
    let stale = Position::File {
        fingerprint: "0".repeat(64),
        path: log.display().to_string(),
        offset: 12,
        dev: meta.dev(),
        ino: meta.ino(),
    };
    let mut t = tailer(&[&log], "end", 1024, vec![stale]);
    assert_eq!(lines(&drain(&mut t, 1 << 20)), ["new content", "second"]);

    // Live: the followed file is deleted and a new one is created in its place (with the
    // same inode when the file system reuses it at once, as ext4 and tmpfs usually do).
    let ino = meta.ino();
    fs::remove_file(&log).unwrap();
    append(&log, b"other file\n");
    let reused = fs::metadata(&log).unwrap().ino() == ino;
    assert_eq!(
        lines(&drain(&mut t, 1 << 20)),
        ["other file"],
        "inode reused: {reused}"
    );
}

#[test]
fn a_renamed_copy_with_the_same_content_is_not_read_twice() {
    let dir = tempfile::tempdir().unwrap();
    let glob = dir.path().join("*.log");
    let a = dir.path().join("a.log");
    append(&a, b"x1\nx2\n");
    let mut t = tailer(&[&glob], "beginning", 1024, Vec::new());
    let first = drain(&mut t, 1 << 20);
    assert_eq!(lines(&first), ["x1", "x2"]);

    // A copy while running.
    fs::copy(&a, dir.path().join("copy.log")).unwrap();
    assert!(drain(&mut t, 1 << 20).is_empty());

    // While stopped: the file is renamed and copied again; both keep the same content.
    let committed = positions(&first);
    drop(t);
    fs::rename(&a, dir.path().join("b.log")).unwrap();
    fs::copy(dir.path().join("b.log"), dir.path().join("c.log")).unwrap();
    let mut t = tailer(&[&glob], "beginning", 1024, committed);
    assert!(drain(&mut t, 1 << 20).is_empty());
    // The original (by device and inode) is the one followed.
    append(&dir.path().join("b.log"), b"x3\n");
    let more = drain(&mut t, 1 << 20);
    assert_eq!(lines(&more), ["x3"]);
    assert!(more[0].name.ends_with("b.log"));
}

#[test]
fn compressed_and_excluded_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "auth.log",
        "auth.log.2.gz",
        "auth.log.3.xz",
        "auth.log.4.bz2",
        "auth.log.5.ZST",
        "auth.log.old",
    ] {
        append(&dir.path().join(name), format!("in {name}\n").as_bytes());
    }
    let cfg = config(&[&dir.path().join("auth.log*")], &["*.old"], "beginning");
    let mut t = FileTailer::new("test", &cfg, 1024, Vec::new(), true).unwrap();
    assert_eq!(lines(&drain(&mut t, 1 << 20)), ["in auth.log"]);
    assert_eq!(t.stats().read_errors, 0);
}

#[test]
fn start_at_end_skips_existing_content_only_at_the_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let glob = dir.path().join("*.log");
    let a = dir.path().join("a.log");
    append(&a, b"old 1\nold 2\nbeing writ");
    let mut t = tailer(&[&glob], "end", 1024, Vec::new());
    // No lines, but the position after the skipped content, to be committed like a read:
    // otherwise a restart would find a file without a stored position and read it all.
    let skip = drain(&mut t, 1 << 20);
    assert_eq!(skip.len(), 1);
    assert_eq!((skip[0].lines, skip[0].data.len()), (0, 0));
    assert_eq!(file_position(&skip[0]).2, 12);
    let mut again = tailer(&[&glob], "beginning", 1024, positions(&skip));
    assert!(drain(&mut again, 1 << 20).is_empty());
    // The line being written at start-up is delivered once complete.
    append(&a, b"ten\nnew\n");
    // A file appearing later is read from its beginning.
    append(&dir.path().join("b.log"), b"b 1\n");
    let got = drain(&mut t, 1 << 20);
    let mut got = lines(&got);
    got.sort();
    assert_eq!(got, ["b 1", "being written", "new"]);

    // Not a first start (positions exist): a file unknown to the state is read in full.
    let committed = positions(&drain(
        &mut tailer(&[&glob], "beginning", 1024, Vec::new()),
        1 << 20,
    ));
    append(&dir.path().join("c.log"), b"c 1\nc 2\n");
    let cfg = config(&[&glob], &[], "end");
    let mut t = FileTailer::new("test", &cfg, 1024, committed, false).unwrap();
    assert_eq!(lines(&drain(&mut t, 1 << 20)), ["c 1", "c 2"]);
}

#[test]
fn a_partial_line_waits_until_it_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    // Not even a first line: the file has no identity yet and is not read.
    append(&log, b"fir");
    let mut t = tailer(&[&log], "beginning", 1024, Vec::new());
    assert!(drain(&mut t, 1 << 20).is_empty());
    assert_eq!(t.stats().files_followed, 0);
    append(&log, b"st\nsec");
    let b = drain(&mut t, 1 << 20);
    assert_eq!(lines(&b), ["first"]);
    assert_eq!(file_position(&b[0]).2, 6);
    append(&log, b"ond\n");
    assert_eq!(lines(&drain(&mut t, 1 << 20)), ["second"]);
}

#[test]
fn a_50_mb_line_is_truncated_and_the_next_line_survives() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let cap = 64 * 1024;
    let mut f = fs::File::create(&log).unwrap();
    f.write_all(b"before\n").unwrap();
    let block = vec![b'x'; 1 << 20];
    for _ in 0..50 {
        f.write_all(&block).unwrap();
    }
    f.write_all(b"\nafter\n").unwrap();
    drop(f);
    let mut t = tailer(&[&log], "beginning", cap, Vec::new());
    let b = drain(&mut t, 1 << 20);
    let got = lines(&b);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], "before");
    assert_eq!(got[1].len(), cap);
    assert!(got[1].bytes().all(|c| c == b'x'));
    assert_eq!(got[2], "after");
    assert_eq!(t.stats().truncated_lines, 1);
    assert_eq!(b.iter().map(|b| b.truncated_lines).sum::<u64>(), 1);
    assert_eq!(
        file_position(b.last().unwrap()).2,
        fs::metadata(&log).unwrap().len()
    );
}

#[test]
fn unreadable_paths_do_not_stop_other_files_and_are_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    append(&d.join("good.log"), b"good\n");
    // A directory where a file was expected.
    fs::create_dir(d.join("dir.log")).unwrap();
    // A link to nothing: the stat fails like for a file that vanished.
    std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling.log")).unwrap();
    // Permissions: effective only when not running as root (CI runs as root, where reading
    // works regardless; then this file is simply read).
    append(&d.join("locked.log"), b"locked\n");
    let locked = d.join("locked.log");
    let mut perm = fs::metadata(&locked).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o000);
    fs::set_permissions(&locked, perm).unwrap();
    let readable = fs::File::open(&locked).is_ok();
    // A pattern whose parent is a file.
    let cfg = config(
        &[&d.join("*.log"), &d.join("good.log/*.log")],
        &[],
        "beginning",
    );
    let mut t = FileTailer::new("test", &cfg, 1024, Vec::new(), true).unwrap();
    let mut got = lines(&drain(&mut t, 1 << 20));
    got.sort();
    let errors = t.stats().read_errors;
    if readable {
        assert_eq!(got, ["good", "locked"]);
        assert_eq!(errors, 3, "dir.log, dangling.log, good.log/");
    } else {
        assert_eq!(got, ["good"]);
        assert_eq!(errors, 4, "dir.log, dangling.log, good.log/, locked.log");
    }
    append(&d.join("good.log"), b"still good\n");
    assert_eq!(lines(&drain(&mut t, 1 << 20)), ["still good"]);
    assert_eq!(
        t.stats().read_errors,
        errors,
        "reported once, not at every poll"
    );
}

#[test]
fn files_disappearing_between_glob_and_open_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    append(&d.join("steady.log"), b"s0\n");
    let mut t = tailer(&[&d.join("*.log")], "beginning", 1024, Vec::new());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flapper = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let p = d.join(format!("flap{}.log", i % 4));
                append(&p, b"");
                let _ = fs::remove_file(&p);
                i += 1;
            }
        })
    };
    let mut got = Vec::new();
    for i in 1..=200 {
        append(&d.join("steady.log"), format!("s{i}\n").as_bytes());
        got.extend(lines(&t.poll(1 << 20)));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flapper.join().unwrap();
    got.extend(lines(&drain(&mut t, 1 << 20)));
    let want: Vec<String> = (0..=200).map(|i| format!("s{i}")).collect();
    assert_eq!(got, want);
}

#[test]
fn an_empty_file_delivers_nothing_until_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("empty.log");
    fs::File::create(&log).unwrap();
    let mut t = tailer(&[&log], "end", 1024, Vec::new());
    assert!(drain(&mut t, 1 << 20).is_empty());
    assert_eq!(t.stats().read_errors, 0);
    // Empty at the first start, so no content existed to skip: read from the beginning.
    append(&log, b"hello\n");
    assert_eq!(lines(&drain(&mut t, 1 << 20)), ["hello"]);
}

#[test]
fn a_file_without_a_trailing_newline_ever_delivers_only_its_complete_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, b"a\nb");
    let mut t = tailer(&[&log], "beginning", 1024, Vec::new());
    let b = drain(&mut t, 1 << 20);
    assert_eq!(lines(&b), ["a"]);
    assert_eq!(file_position(&b[0]).2, 2);
    for _ in 0..10 {
        assert!(t.poll(1 << 20).is_empty());
    }
}

#[test]
fn a_tiny_budget_still_makes_progress_through_a_line_longer_than_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let long = "y".repeat(500);
    append(&log, format!("short\n{long}\nend\n").as_bytes());
    let mut t = tailer(&[&log], "beginning", 1024, Vec::new());
    assert_eq!(lines(&drain(&mut t, 7)), ["short", long.as_str(), "end"]);
}

#[test]
fn cri_parts_are_decoded_with_labels_and_an_open_group_is_read_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pod_dir = dir.path().join("pods/web_frontend-7d9f_0e5c/nginx");
    fs::create_dir_all(&pod_dir).unwrap();
    let log = pod_dir.join("0.log");
    let cfg: FileSourceConfig = toml::from_str(&format!(
        "name = \"pods\"\ninclude = [\"{}/pods/*/*/*.log\"]\nformat = \"cri\"\nstart_at = \"beginning\"\n",
        dir.path().display()
    ))
    .unwrap();
    append(
        &log,
        b"2026-03-01T10:00:00.000000001Z stdout F first line\n",
    );
    let mut t = FileTailer::new("pods", &cfg, 1024, Vec::new(), true).unwrap();
    let first = drain(&mut t, 1 << 20);
    assert_eq!(lines(&first).len(), 1);
    assert!(
        lines(&first)[0].ends_with("first line"),
        "{:?}",
        lines(&first)
    );
    assert!(first[0]
        .labels
        .contains(&("orchestrator.resource.name".into(), "frontend-7d9f".into())));
    let committed = positions(&first);

    // The first part of a split line: nothing to deliver, the position stays before it.
    append(&log, b"2026-03-01T10:00:01.000000001Z stdout P hello \n");
    assert!(drain(&mut t, 1 << 20).is_empty());
    // Killed here; the next start re-reads the part from the file.
    drop(t);
    append(&log, b"2026-03-01T10:00:01.000000002Z stdout F world\n");
    let mut t = FileTailer::new("pods", &cfg, 1024, committed, false).unwrap();
    let got = lines(&drain(&mut t, 1 << 20));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].ends_with("hello world"), "{got:?}");
}

#[test]
fn watch_dirs_are_the_fixed_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = config(
        &[
            &d.join("auth.log*"),
            &d.join("app/*/x.log"),
            &d.join("syslog"),
        ],
        &[],
        "end",
    );
    let t = FileTailer::new("test", &cfg, 1024, Vec::new(), true).unwrap();
    let mut want = vec![d.to_path_buf(), d.join("app")];
    want.sort();
    assert_eq!(t.watch_dirs(), want);
}

#[test]
fn files_in_subdirectories_are_found_by_deeper_patterns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("pods/a")).unwrap();
    append(&d.join("pods/a/0.log"), b"pod a\n");
    let cfg = config(&[&d.join("pods/*/*.log")], &[], "beginning");
    let mut t = FileTailer::new("test", &cfg, 1024, Vec::new(), true).unwrap();
    assert_eq!(lines(&drain(&mut t, 1 << 20)), ["pod a"]);
    fs::create_dir_all(d.join("pods/b")).unwrap();
    append(&d.join("pods/b/0.log"), b"pod b\n");
    assert_eq!(lines(&drain(&mut t, 1 << 20)), ["pod b"]);
}

// ---------------------------------------------------------------------------------------
// run: events and idle cost
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn run_delivers_an_appended_line_on_the_change_event_well_before_the_poll_interval() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, b"before\n");
    let t = tailer(&[&log], "beginning", 1024, Vec::new());
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(file::run(t, Duration::from_secs(30), tx, shutdown));

    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the first poll happens at once")
        .unwrap();
    assert_eq!(lines(&[first]), ["before"]);
    // Let the loop settle into its 30 s wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = Instant::now();
    append(&log, b"after\n");
    let b = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("delivered on the change event, not after the 30 s poll interval")
        .unwrap();
    let latency = written.elapsed();
    assert_eq!(lines(&[b]), ["after"]);
    println!("event-driven delivery latency: {latency:?}");
    assert!(latency < Duration::from_secs(2), "{latency:?}");

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run stops on shutdown")
        .unwrap();
}
