//! Follows log files matched by globs, across rotation, truncation and restarts.
//!
//! # Identity
//!
//! A file is identified by a *fingerprint* of its content, the hex SHA-256 of its first line
//! (without the newline; at most [`FINGERPRINT_BYTES`] bytes of it), not by its name: names
//! move during rotation, and inode numbers are reused as soon as a file is deleted. The
//! fingerprint is the stream key under which positions are stored, so a file renamed from
//! `auth.log` to `auth.log.1` while the daemon was down is resumed at its stored offset. A
//! file whose first line is not complete yet has no identity and is not read until it has one.
//! Device and inode complete the picture while the daemon runs: every followed file is kept
//! open, so its inode cannot be reused under us, and a second inode with the same fingerprint
//! is a copy (`cp auth.log auth.log.bak`, the copy of a copytruncate) that is not read twice.
//!
//! Known limitation of content fingerprints: files that begin with the same first line (a
//! fixed header, an empty line) look like copies of each other; only one of them is read.
//!
//! # Rotation
//!
//! - *Rename* (`auth.log` -> `auth.log.1`, new `auth.log`): the open handle keeps reading the
//!   old inode, under its new name if the globs still match it; a file that no glob matches any
//!   more (moved away, deleted) is drained to its end through the handle before it is let go.
//! - *Copytruncate*: a file whose size dropped below what was read, or whose first line
//!   changed, was truncated. Its position is kept aside ("dormant"), and a file with the same
//!   fingerprint (the copy) continues from that offset, so the lines written between the last
//!   read and the copy are not lost. The truncated file is then a new file, read from its start.
//!
//! # Polling and events
//!
//! Polling is the reliable core: [`FileTailer::poll`] looks at every followed file (one `fstat`
//! each) and walks the globs, and it alone decides what to read. `notify` events only make
//! [`run`] poll sooner; when the watcher cannot be created or a directory cannot be watched
//! (no inotify, out of watches), `run` logs it once and relies on the poll interval.
//!
//! # Where reading starts
//!
//! A file with a stored position resumes there. At the very first start (no stored position
//! for the source at all), `start_at = "end"` skips what the files present at the first poll
//! hold; each skip is sent as a batch without lines, so that it is committed like a read and a
//! restart does not read the skipped lines after all. Files that appear later are read from
//! their start. A file found shorter than its stored position is followed from its end: it is
//! most likely an old copy of a file that was read.
//!
//! # Lines
//!
//! Only complete lines are delivered; the offset in a [`Position`] is always at a line
//! boundary. A line longer than the cap is delivered as its first `cap` bytes (plus `\n`),
//! counted, and the rest of it is skipped up to its newline, without ever buffering more than
//! `cap` bytes of it: a huge line costs reading time, not memory, and never stalls the file.
//! For `docker` and `cri` files, complete raw lines go through the format's decoder, and the
//! position only moves past the raw lines it consumed (a CRI message split in parts is
//! committed when its last part is).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use super::container::{decoder_for, labels_for, LineDecoder};
use super::{Batch, Position};
use crate::config::{FileFormat, FileSourceConfig, StartAt};

/// At most this many bytes of the first line make the fingerprint. A first line at least this
/// long identifies the file before its newline arrives, so a file starting with a huge line is
/// not held back; the value is fixed (not derived from the line cap) so that fingerprints stay
/// the same when the config changes.
pub const FINGERPRINT_BYTES: usize = 4096;

/// Size of one read. Large enough that syscalls are a small part of the cost of a big file.
const READ_CHUNK: usize = 256 * 1024;

/// How long a drained file that no glob matches any more (moved away) is kept open in case its
/// writer has not reopened its log yet. A deleted file is let go as soon as it is drained.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// Positions of files let go (rotated away, truncated) kept in memory so that a copy or a
/// renamed file showing up later resumes instead of being read again. Bounded because
/// rotation creates a new identity every time.
const DORMANT_CAP: usize = 4096;

/// `**` is followed at most this deep (and never through symbolic links), so a link loop
/// cannot make a walk endless.
const MAX_WALK_DEPTH: usize = 16;

/// Bytes read per poll by [`run`]: bounds the size of one batch and the memory in flight.
const RUN_BUDGET: usize = 1024 * 1024;

/// Why a file source could not be created.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// A pattern in `include` or `exclude` is not a valid glob.
    #[error("invalid glob {pattern:?}: {error}")]
    Glob {
        /// The pattern as written.
        pattern: String,
        /// What globset said.
        #[source]
        error: globset::Error,
    },
    /// `include` is empty: the source would never read anything.
    #[error(
        "no include patterns: list the files to follow, e.g. include = [\"/var/log/auth.log*\"]"
    )]
    NoInclude,
}

/// Counters of a [`FileTailer`], for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Files currently followed (open).
    pub files_followed: u64,
    /// Bytes read from files (including skipped parts of over-long lines).
    pub bytes_read: u64,
    /// Lines delivered (decoded lines for docker/cri).
    pub lines: u64,
    /// Lines cut to the cap.
    pub truncated_lines: u64,
    /// Problems with individual paths (unreadable, a directory, vanished), counted once per
    /// change of a path's state, not once per poll.
    pub read_errors: u64,
    /// Followed files seen under a new name (rename rotation).
    pub rotations: u64,
    /// Followed files found truncated or rewritten (copytruncate).
    pub truncations: u64,
}

/// Follows the files of one `[[source.file]]`. Does blocking file I/O; see [`run`] for how it
/// is driven from async code.
pub struct FileTailer {
    name: String,
    include: GlobSet,
    exclude_path: GlobSet,
    exclude_name: GlobSet,
    roots: Vec<Root>,
    start_at: StartAt,
    format: FileFormat,
    cap: usize,
    first_start: bool,
    make_decoder: DecoderFactory,
    /// Files being followed, each with an open handle.
    tracked: Vec<Tracked>,
    /// Positions of files not currently followed, by fingerprint: the committed positions
    /// at start, and files let go since.
    dormant: HashMap<String, Dormant>,
    dormant_seq: u64,
    /// Fingerprint results of files not followed (copies, files without a first line yet),
    /// so that an unchanged file is not opened again at every walk.
    probes: HashMap<(u64, u64), Probe>,
    /// Current problem of each path, so that it is logged once per change.
    problems: HashMap<(PathBuf, bool), (Problem, u64)>,
    polls: u64,
    round_robin: usize,
    scratch: Vec<u8>,
    stats: FileStats,
}

type DecoderFactory = fn(FileFormat, &Path, usize) -> Option<Box<dyn LineDecoder>>;

impl fmt::Debug for FileTailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileTailer")
            .field("name", &self.name)
            .field("files", &self.tracked.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Where a walk starts: the fixed prefix of a pattern, and how deep its wildcards reach.
#[derive(Debug, Clone)]
struct Root {
    /// Directory (empty: the current directory, paths stay relative like the pattern).
    dir: PathBuf,
    /// Path components below `dir` in the pattern.
    depth: usize,
    /// The pattern has `**`: any depth (up to [`MAX_WALK_DEPTH`]).
    recursive: bool,
}

/// A file being followed.
struct Tracked {
    fp: String,
    path: PathBuf,
    dev: u64,
    ino: u64,
    file: File,
    /// Just after the last byte consumed (delivered): what a [`Position`] stores.
    offset: u64,
    /// Next byte to read. Between `offset` and here: lines waiting for the decoder and the
    /// incomplete last line.
    read_pos: u64,
    /// The first (at most `cap`) bytes of the incomplete line that ends at `read_pos`.
    carry: Vec<u8>,
    /// Full length of that incomplete line so far (can exceed `cap`).
    carry_len: u64,
    /// Complete raw lines the decoder has not consumed yet (docker/cri only).
    undecoded: Vec<u8>,
    undecoded_lines: VecDeque<RawLine>,
    decoder: Option<Box<dyn LineDecoder>>,
    labels: Vec<(String, String)>,
    /// Size and mtime at the last look; a change triggers the truncation checks.
    size: u64,
    mtime: (i64, i64),
    nlink: u64,
    /// Matched by the last walk.
    seen: bool,
    /// Since when no glob matches it (moved away or deleted): drained, then let go.
    orphan_since: Option<Instant>,
    /// Content was skipped (`start_at = "end"`) and no batch carried the position yet: the
    /// next poll sends one without lines, so that the skip is committed like a read and a
    /// restart does not read the skipped lines after all.
    announce: bool,
}

/// One complete raw line handed to a decoder: how many bytes it takes in the raw buffer and
/// in the file (they differ for cut lines).
#[derive(Debug, Clone, Copy)]
struct RawLine {
    raw_len: usize,
    file_len: u64,
    truncated: bool,
}

#[derive(Debug, Clone)]
struct Dormant {
    path: String,
    offset: u64,
    dev: u64,
    ino: u64,
    seq: u64,
}

#[derive(Debug, Clone)]
struct Probe {
    size: u64,
    mtime: (i64, i64),
    fp: Option<String>,
    /// Poll in which it was last seen (older ones are forgotten).
    poll: u64,
    /// "Same content as a followed file" was logged.
    noted_copy: bool,
}

/// What is wrong with a path, as far as the logs are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Unlistable,
    Vanished,
    Directory,
    NotRegular,
    Unreadable,
    ReadFailed,
}

impl Problem {
    fn describe(self) -> &'static str {
        match self {
            Problem::Unlistable => "cannot list directory",
            Problem::Vanished => "file vanished before it could be opened",
            Problem::Directory => "matched by the glob but is a directory",
            Problem::NotRegular => "matched by the glob but is not a regular file",
            Problem::Unreadable => "cannot open or stat file",
            Problem::ReadFailed => "cannot read file",
        }
    }
}

/// A file found by the walk that is not followed yet and has a fingerprint.
struct Found {
    path: PathBuf,
    key: (u64, u64),
    size: u64,
    mtime: (i64, i64),
    fp: String,
    file: Option<File>,
}

impl FileTailer {
    /// A tailer for `cfg`. `committed`: positions from the state store (only
    /// [`Position::File`] entries for this source are used). `first_start`: the state store
    /// had no position at all for this source, so `cfg.start_at` applies to the files present
    /// at the first poll.
    pub fn new(
        name: &str,
        cfg: &FileSourceConfig,
        max_line_bytes: usize,
        committed: Vec<Position>,
        first_start: bool,
    ) -> Result<FileTailer, FileSourceError> {
        if cfg.include.is_empty() {
            return Err(FileSourceError::NoInclude);
        }
        let glob = |p: &str| {
            GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map_err(|error| FileSourceError::Glob {
                    pattern: p.to_string(),
                    error,
                })
        };
        let set = |b: GlobSetBuilder, pattern: &str| {
            b.build().map_err(|error| FileSourceError::Glob {
                pattern: pattern.to_string(),
                error,
            })
        };
        let mut include = GlobSetBuilder::new();
        let mut roots = Vec::new();
        for p in &cfg.include {
            include.add(glob(p.get_ref())?);
            roots.push(Root::of(p.get_ref()));
        }
        // Exclude patterns with a `/` match the whole path; without one, the file name, so
        // that `*.old` does what it says wherever the file is.
        let mut exclude_path = GlobSetBuilder::new();
        let mut exclude_name = GlobSetBuilder::new();
        for p in &cfg.exclude {
            let p = p.get_ref();
            if p.contains('/') {
                exclude_path.add(glob(p)?);
            } else {
                exclude_name.add(glob(p)?);
            }
        }
        let mut dormant = HashMap::new();
        let mut dormant_seq = 0;
        for p in committed {
            if let Position::File {
                fingerprint,
                path,
                offset,
                dev,
                ino,
            } = p
            {
                dormant_seq += 1;
                dormant.insert(
                    fingerprint,
                    Dormant {
                        path,
                        offset,
                        dev,
                        ino,
                        seq: dormant_seq,
                    },
                );
            }
        }
        Ok(FileTailer {
            name: name.to_string(),
            include: set(include, "include")?,
            exclude_path: set(exclude_path, "exclude")?,
            exclude_name: set(exclude_name, "exclude")?,
            roots,
            start_at: cfg.start_at,
            format: cfg.format,
            cap: max_line_bytes.max(1),
            first_start,
            make_decoder: decoder_for,
            tracked: Vec::new(),
            dormant,
            dormant_seq,
            probes: HashMap::new(),
            problems: HashMap::new(),
            polls: 0,
            round_robin: 0,
            scratch: Vec::new(),
            stats: FileStats::default(),
        })
    }

    /// Discovers files, detects rotation and truncation, and reads new complete lines, at most
    /// `budget` bytes in total (a budget of 0 counts as 1, so there is always progress; files
    /// take turns going first). Returns one batch per file that produced lines, plus, once per
    /// file skipped by `start_at = "end"`, a batch with no lines that carries the position
    /// after the skipped content (commit it like any other). Never waits for data. Problems
    /// with individual files are logged (once per change) and counted in
    /// [`stats`](Self::stats), never returned: one bad file does not stop the others.
    pub fn poll(&mut self, budget: usize) -> Vec<Batch> {
        self.poll_with(budget, true)
    }

    /// Directories to watch for change events: the fixed directory prefix of each include
    /// pattern (`/var/log` for `/var/log/auth.log*`).
    pub fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.roots.iter().map(Root::watch_dir).collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Counters.
    pub fn stats(&self) -> &FileStats {
        &self.stats
    }

    /// One poll. `rescan`: walk the globs too. [`run`] skips the walk when an event only
    /// says that a file grew, because then only followed files can have news; the walk still
    /// happens at every poll interval and after any other kind of event.
    fn poll_with(&mut self, budget: usize, rescan: bool) -> Vec<Batch> {
        self.polls += 1;
        let now = Instant::now();
        // A matching file whose first line is not complete yet has no identity and is not
        // followed, so a "file grew" event for it only helps if the walk runs: keep walking
        // at every poll while such a file exists (otherwise its first lines would wait for
        // the poll interval).
        let waiting_for_first_line = self.probes.values().any(|p| p.fp.is_none());
        let mut rescan = rescan || self.polls == 1 || waiting_for_first_line;
        let mut i = 0;
        while i < self.tracked.len() {
            if self.refresh(i) {
                let t = self.tracked.remove(i);
                warn!(
                    source = %self.name, path = %t.path.display(), offset = t.offset,
                    "file truncated or rewritten (copytruncate?); a copy with the same first \
                     line continues from the last position, the file itself is read anew"
                );
                self.stats.truncations += 1;
                self.retire(t);
                rescan = true;
            } else {
                i += 1;
            }
        }
        if rescan {
            self.discover(now);
        }
        let batches = self.read_all(budget);
        self.let_go_drained(now);
        self.stats.files_followed = self.tracked.len() as u64;
        batches
    }

    /// Looks at a followed file through its handle. Returns true when it was truncated or
    /// rewritten (its bytes are no longer the ones that were read).
    fn refresh(&mut self, i: usize) -> bool {
        let t = &mut self.tracked[i];
        let meta = match t.file.metadata() {
            Ok(m) => m,
            Err(e) => {
                let path = t.path.clone();
                self.report(&path, Problem::ReadFailed, &e);
                return false;
            }
        };
        t.nlink = meta.nlink();
        let stamp = (meta.len(), mtime(&meta));
        if stamp == (t.size, t.mtime) {
            return false;
        }
        t.size = stamp.0;
        t.mtime = stamp.1;
        // Shrunk below what was read, or the first line is no longer the same: a size check
        // alone misses a truncated file that grew back past the old size between two polls.
        stamp.0 < t.read_pos
            || match fingerprint(&t.file) {
                Ok(Some(fp)) => fp != t.fp,
                Ok(None) => true,
                Err(_) => false,
            }
    }

    /// Walks the globs: renames of followed files, files no longer matched, new files.
    fn discover(&mut self, now: Instant) {
        let poll = self.polls;
        let mut paths = Vec::new();
        for root in self.roots.clone() {
            self.walk(&root.dir, root.depth, root.recursive, 0, &mut paths);
        }
        paths.sort();
        paths.dedup();

        let index: HashMap<(u64, u64), usize> = self
            .tracked
            .iter()
            .enumerate()
            .map(|(i, t)| ((t.dev, t.ino), i))
            .collect();
        for t in &mut self.tracked {
            t.seen = false;
        }
        let mut found = Vec::new();
        for path in paths {
            if self.excluded(&path) {
                continue;
            }
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    self.report(&path, problem_of(&e), &e);
                    continue;
                }
            };
            if meta.is_dir() {
                self.report(&path, Problem::Directory, &"skipped");
                continue;
            }
            if !meta.is_file() {
                self.report(&path, Problem::NotRegular, &"skipped");
                continue;
            }
            let key = (meta.dev(), meta.ino());
            if let Some(&i) = index.get(&key) {
                self.resolved(&path);
                let t = &mut self.tracked[i];
                if !t.seen {
                    t.seen = true;
                    if t.path != path {
                        info!(
                            source = %self.name, from = %t.path.display(), to = %path.display(),
                            "followed file renamed (rotation)"
                        );
                        self.stats.rotations += 1;
                        t.path = path;
                    }
                }
                continue;
            }
            let stamp = (meta.len(), mtime(&meta));
            if let Some(p) = self.probes.get_mut(&key) {
                if (p.size, p.mtime) == stamp {
                    p.poll = poll;
                    if let Some(fp) = &p.fp {
                        found.push(Found {
                            path,
                            key,
                            size: stamp.0,
                            mtime: stamp.1,
                            fp: fp.clone(),
                            file: None,
                        });
                    }
                    continue;
                }
            }
            if let Some(f) = self.probe(path, &index) {
                found.push(f);
            }
        }
        for t in &mut self.tracked {
            if t.seen {
                t.orphan_since = None;
            } else if t.orphan_since.is_none() {
                debug!(
                    source = %self.name, path = %t.path.display(),
                    "file no longer matched (moved away or deleted); draining it"
                );
                t.orphan_since = Some(now);
            }
        }

        // Among files with the same first line, the inode a stored position was last seen at
        // wins (the original over its copies), then the largest (a copy made earlier is a
        // prefix of the live file), then path order.
        found.sort_by_key(|f| {
            (
                !matches!(self.dormant.get(&f.fp), Some(d) if (d.dev, d.ino) == f.key),
                std::cmp::Reverse(f.size),
            )
        });
        for f in found {
            self.adopt(f, poll);
        }
        self.problems
            .retain(|_, (kind, seen)| *seen == poll || *kind == Problem::ReadFailed);
        self.probes.retain(|_, p| p.poll == poll);
    }

    /// Opens and fingerprints a file that is not followed. Returns it if it has an identity.
    fn probe(&mut self, path: PathBuf, index: &HashMap<(u64, u64), usize>) -> Option<Found> {
        // Only paths that were regular files a moment ago get here. A FIFO swapped in between
        // the stat and the open would block the open; that needs write access to the log
        // directory and a sub-millisecond window, and is accepted.
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                self.report(&path, problem_of(&e), &e);
                return None;
            }
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => {
                self.report(&path, Problem::Unreadable, &e);
                return None;
            }
        };
        if !meta.is_file() {
            self.report(&path, Problem::NotRegular, &"skipped");
            return None;
        }
        // Identity from the handle: the path may have been replaced since the stat.
        let key = (meta.dev(), meta.ino());
        if index.contains_key(&key) {
            return None;
        }
        let fp = match fingerprint(&file) {
            Ok(fp) => fp,
            Err(e) => {
                self.report(&path, Problem::ReadFailed, &e);
                return None;
            }
        };
        self.resolved(&path);
        let stamp = (meta.len(), mtime(&meta));
        self.probes.insert(
            key,
            Probe {
                size: stamp.0,
                mtime: stamp.1,
                fp: fp.clone(),
                poll: self.polls,
                noted_copy: false,
            },
        );
        Some(Found {
            path,
            key,
            size: stamp.0,
            mtime: stamp.1,
            fp: fp?,
            file: Some(file),
        })
    }

    /// Starts following a file found by the walk, unless it is a copy of a followed one.
    fn adopt(&mut self, f: Found, poll: u64) {
        if let Some(t) = self.tracked.iter().find(|t| t.fp == f.fp) {
            if let Some(p) = self.probes.get_mut(&f.key) {
                if !p.noted_copy {
                    p.noted_copy = true;
                    info!(
                        source = %self.name, path = %f.path.display(), same_as = %t.path.display(),
                        "file has the same first line as a followed file; treated as a copy, not read"
                    );
                }
            }
            return;
        }
        let file = match f.file {
            Some(file) => file,
            None => match File::open(&f.path) {
                Ok(file) => match file.metadata() {
                    Ok(m) if (m.dev(), m.ino()) == f.key => file,
                    // Replaced since the walk: the next walk looks again.
                    _ => return,
                },
                Err(e) => {
                    self.report(&f.path, problem_of(&e), &e);
                    return;
                }
            },
        };
        let mut skipped = false;
        let start = match self.dormant.remove(&f.fp) {
            Some(d) if d.offset <= f.size => {
                if d.path != f.path.to_string_lossy() {
                    debug!(
                        source = %self.name, from = %d.path, to = %f.path.display(),
                        "resuming a known file under another name"
                    );
                }
                d.offset
            }
            // Shorter than what was read of it: a copy of an earlier state of the file (its
            // lines were read in the original), or a file rewritten with the same first line.
            // The first is the common case; following it from its end avoids delivering its
            // lines twice.
            Some(d) => {
                warn!(
                    source = %self.name, path = %f.path.display(), offset = d.offset, size = f.size,
                    "file is shorter than its stored position (an old copy?); following it from its end"
                );
                match last_line_end(&file, f.size) {
                    Ok(end) => end,
                    Err(e) => {
                        self.report(&f.path, Problem::ReadFailed, &e);
                        return;
                    }
                }
            }
            None if self.first_start && poll == 1 && self.start_at == StartAt::End => {
                match last_line_end(&file, f.size) {
                    Ok(end) => {
                        skipped = end > 0;
                        end
                    }
                    Err(e) => {
                        self.report(&f.path, Problem::ReadFailed, &e);
                        return;
                    }
                }
            }
            None => 0,
        };
        debug!(source = %self.name, path = %f.path.display(), offset = start, "following file");
        self.probes.remove(&f.key);
        let decoder = (self.make_decoder)(self.format, &f.path, self.cap);
        let labels = labels_for(self.format, &f.path);
        self.tracked.push(Tracked {
            fp: f.fp,
            path: f.path,
            dev: f.key.0,
            ino: f.key.1,
            file,
            offset: start,
            read_pos: start,
            carry: Vec::new(),
            carry_len: 0,
            undecoded: Vec::new(),
            undecoded_lines: VecDeque::new(),
            decoder,
            labels,
            size: f.size,
            mtime: f.mtime,
            nlink: 1,
            seen: true,
            orphan_since: None,
            announce: skipped,
        });
    }

    /// Lists `dir` and collects the paths the include globs match, descending as deep as the
    /// patterns reach.
    fn walk(
        &mut self,
        dir: &Path,
        depth: usize,
        recursive: bool,
        level: usize,
        out: &mut Vec<PathBuf>,
    ) {
        let listed = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let entries = match fs::read_dir(listed) {
            Ok(e) => e,
            // A directory that does not exist yet is normal (a service not installed yet).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                self.report(dir, Problem::Unlistable, &e);
                return;
            }
        };
        self.resolved_as(dir, true);
        let descend = (recursive || depth > 1) && level < MAX_WALK_DEPTH;
        for entry in entries.flatten() {
            let path = if dir.as_os_str().is_empty() {
                PathBuf::from(entry.file_name())
            } else {
                dir.join(entry.file_name())
            };
            if self.include.is_match(&path) {
                out.push(path.clone());
            }
            if descend {
                let is_dir = match entry.file_type() {
                    Ok(ft) if ft.is_dir() => true,
                    Ok(ft) if ft.is_symlink() && !recursive => path.is_dir(),
                    _ => false,
                };
                if is_dir {
                    self.walk(&path, depth.saturating_sub(1), recursive, level + 1, out);
                }
            }
        }
    }

    fn excluded(&self, path: &Path) -> bool {
        let Some(name) = path.file_name() else {
            return false;
        };
        let lower = name.to_string_lossy().to_ascii_lowercase();
        [".gz", ".xz", ".bz2", ".zst"]
            .iter()
            .any(|ext| lower.ends_with(ext))
            || self.exclude_name.is_match(name)
            || self.exclude_path.is_match(path)
    }

    /// Reads the followed files, rotating which one goes first so that a busy file cannot
    /// take the whole budget at every poll.
    fn read_all(&mut self, budget: usize) -> Vec<Batch> {
        let n = self.tracked.len();
        let mut batches = Vec::new();
        if n == 0 {
            return batches;
        }
        let first = self.round_robin % n;
        self.round_robin = self.round_robin.wrapping_add(1);
        let mut left = budget.max(1);
        for k in 0..n {
            let i = (first + k) % n;
            let read = if left > 0 {
                self.read_one(i, &mut left)
            } else {
                Ok(None)
            };
            match read {
                Ok(b) => {
                    // A skip is announced whatever the budget: it costs nothing, and the
                    // sooner it is committed, the smaller the window in which a crash makes
                    // the next start read the skipped content after all.
                    let t = &mut self.tracked[i];
                    let announce = std::mem::take(&mut t.announce);
                    batches.extend(b.or_else(|| {
                        announce.then(|| Batch {
                            stream: format!("file:{}", t.fp),
                            name: t.path.to_string_lossy().into_owned(),
                            data: Vec::new(),
                            lines: 0,
                            position: Some(position(t)),
                            labels: t.labels.clone(),
                            truncated_lines: 0,
                        })
                    }));
                }
                Err(e) => {
                    let path = self.tracked[i].path.clone();
                    self.report(&path, Problem::ReadFailed, &e);
                }
            }
        }
        batches
    }

    /// Reads new bytes of one file and turns its complete lines into a batch.
    fn read_one(&mut self, i: usize, left: &mut usize) -> io::Result<Option<Batch>> {
        let t = &mut self.tracked[i];
        let cap = if t.decoder.is_some() {
            raw_cap(self.cap)
        } else {
            self.cap
        };
        if t.read_pos >= t.size {
            return Ok(None);
        }
        let decoding = t.decoder.is_some();
        let mut out = Vec::new();
        let mut lines = 0u64;
        let mut truncated = 0u64;
        let mut error = None;
        while t.read_pos < t.size && *left > 0 {
            let want = (READ_CHUNK as u64)
                .min(t.size - t.read_pos)
                .min(*left as u64) as usize;
            if self.scratch.len() < want {
                self.scratch.resize(want, 0);
            }
            let n = match t.file.read_at(&mut self.scratch[..want], t.read_pos) {
                Ok(0) => break, // shrank since the fstat; the next poll sees it
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            *left -= n;
            self.stats.bytes_read += n as u64;
            let chunk = &self.scratch[..n];
            let mut start = 0;
            // Lines that need no care (no carry, not too long) are copied in runs.
            let mut run = 0;
            for nl in memchr::memchr_iter(b'\n', chunk) {
                let len = t.carry_len + (nl - start) as u64;
                if t.carry_len == 0 && len <= cap as u64 && !decoding {
                    lines += 1;
                    start = nl + 1;
                    continue;
                }
                out.extend_from_slice(&chunk[run..start]);
                let raw_start = out.len();
                if len <= cap as u64 {
                    out.extend_from_slice(&t.carry);
                    out.extend_from_slice(&chunk[start..=nl]);
                } else {
                    let room = cap - t.carry.len();
                    out.extend_from_slice(&t.carry);
                    out.extend_from_slice(&chunk[start..nl.min(start + room)]);
                    out.push(b'\n');
                    truncated += 1;
                }
                lines += 1;
                if decoding {
                    t.undecoded_lines.push_back(RawLine {
                        raw_len: out.len() - raw_start,
                        file_len: len + 1,
                        truncated: len > cap as u64,
                    });
                }
                t.carry.clear();
                t.carry_len = 0;
                start = nl + 1;
                run = start;
            }
            out.extend_from_slice(&chunk[run..start]);
            let rest = &chunk[start..];
            let room = cap - t.carry.len();
            t.carry.extend_from_slice(&rest[..rest.len().min(room)]);
            t.carry_len += rest.len() as u64;
            t.read_pos += n as u64;
        }
        let batch = if let Some(decoder) = &mut t.decoder {
            let raw = if t.undecoded.is_empty() {
                out
            } else {
                let mut raw = std::mem::take(&mut t.undecoded);
                raw.extend_from_slice(&out);
                raw
            };
            let mut data = Vec::new();
            let cut_before = decoder.counters().truncated;
            let (consumed, decoded) = if raw.is_empty() {
                (0, 0)
            } else {
                decoder.decode(&raw, &mut data)
            };
            let decoder_cut = decoder.counters().truncated.saturating_sub(cut_before);
            let consumed = consumed.min(raw.len());
            // Map the consumed raw bytes back to file bytes, line by line (cut lines are
            // shorter in `raw` than in the file).
            let (mut taken, mut advance, mut cut) = (0usize, 0u64, 0u64);
            while taken < consumed {
                let Some(l) = t.undecoded_lines.pop_front() else {
                    break;
                };
                taken += l.raw_len;
                advance += l.file_len;
                cut += u64::from(l.truncated);
            }
            t.undecoded = raw;
            t.undecoded.drain(..taken.min(t.undecoded.len()));
            t.offset += advance;
            // Cut raw lines are malformed for the decoder (passed through, not counted by
            // it), so the two counts never cover the same line.
            cut += decoder_cut;
            self.stats.lines += decoded;
            self.stats.truncated_lines += cut;
            (advance > 0).then(|| Batch {
                stream: format!("file:{}", t.fp),
                name: t.path.to_string_lossy().into_owned(),
                data,
                lines: decoded,
                position: Some(position(t)),
                labels: t.labels.clone(),
                truncated_lines: cut,
            })
        } else {
            t.offset = t.read_pos - t.carry_len;
            self.stats.lines += lines;
            self.stats.truncated_lines += truncated;
            (lines > 0).then(|| Batch {
                stream: format!("file:{}", t.fp),
                name: t.path.to_string_lossy().into_owned(),
                data: out,
                lines,
                position: Some(position(t)),
                labels: t.labels.clone(),
                truncated_lines: truncated,
            })
        };
        if (batch.is_some() || error.is_none()) && !self.problems.is_empty() {
            let path = t.path.clone();
            self.resolved(&path);
        }
        match error {
            Some(e) if batch.is_none() => Err(e),
            Some(e) => {
                let path = self.tracked[i].path.clone();
                self.report(&path, Problem::ReadFailed, &e);
                Ok(batch)
            }
            None => Ok(batch),
        }
    }

    /// Lets go of files no glob matches any more once they are drained: at once if deleted,
    /// after [`ORPHAN_GRACE`] if moved away (its writer may still append before reopening).
    fn let_go_drained(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.tracked.len() {
            let t = &self.tracked[i];
            let done = match t.orphan_since {
                Some(since) => {
                    t.read_pos >= t.size
                        && (t.nlink == 0 || now.duration_since(since) >= ORPHAN_GRACE)
                }
                None => false,
            };
            if done {
                let t = self.tracked.remove(i);
                debug!(source = %self.name, path = %t.path.display(), "finished draining file");
                self.retire(t);
            } else {
                i += 1;
            }
        }
    }

    /// Keeps the position of a file let go, so that the same content found later resumes.
    fn retire(&mut self, t: Tracked) {
        self.dormant_seq += 1;
        self.dormant.insert(
            t.fp,
            Dormant {
                path: t.path.to_string_lossy().into_owned(),
                offset: t.offset,
                dev: t.dev,
                ino: t.ino,
                seq: self.dormant_seq,
            },
        );
        if self.dormant.len() > DORMANT_CAP {
            if let Some(oldest) = self
                .dormant
                .iter()
                .min_by_key(|(_, d)| d.seq)
                .map(|(k, _)| k.clone())
            {
                self.dormant.remove(&oldest);
            }
        }
    }

    /// Logs a path's problem when it is new or different, and counts it. Listing a path as a
    /// directory and reading it as a file are tracked apart: one path can be both a good file
    /// and the unlistable prefix of another pattern.
    fn report(&mut self, path: &Path, kind: Problem, err: &dyn fmt::Display) {
        let poll = self.polls;
        let key = (path.to_path_buf(), kind == Problem::Unlistable);
        match self.problems.get_mut(&key) {
            Some((k, seen)) if *k == kind => *seen = poll,
            _ => {
                warn!(source = %self.name, path = %path.display(), "{}: {err}", kind.describe());
                self.stats.read_errors += 1;
                self.problems.insert(key, (kind, poll));
            }
        }
    }

    /// The file at `path` was opened or read fine.
    fn resolved(&mut self, path: &Path) {
        self.resolved_as(path, false);
    }

    fn resolved_as(&mut self, path: &Path, listing: bool) {
        if self.problems.is_empty() {
            return;
        }
        if self
            .problems
            .remove(&(path.to_path_buf(), listing))
            .is_some()
        {
            info!(source = %self.name, path = %path.display(), "path is fine again");
        }
    }
}

impl Root {
    fn of(pattern: &str) -> Root {
        let absolute = pattern.starts_with('/');
        let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
        let literal = comps
            .iter()
            .take_while(|c| !c.contains(['*', '?', '[', '{', '\\']))
            .count();
        // A fully literal pattern names a file: walk its directory.
        let fixed = if literal == comps.len() {
            literal.saturating_sub(1)
        } else {
            literal
        };
        let mut dir = if absolute {
            PathBuf::from("/")
        } else {
            PathBuf::new()
        };
        for c in &comps[..fixed] {
            dir.push(c);
        }
        let rest = &comps[fixed..];
        Root {
            dir,
            depth: rest.len(),
            recursive: rest.contains(&"**"),
        }
    }

    fn watch_dir(&self) -> PathBuf {
        if self.dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            self.dir.clone()
        }
    }
}

fn position(t: &Tracked) -> Position {
    Position::File {
        fingerprint: t.fp.clone(),
        path: t.path.to_string_lossy().into_owned(),
        offset: t.offset,
        dev: t.dev,
        ino: t.ino,
    }
}

fn problem_of(e: &io::Error) -> Problem {
    if e.kind() == io::ErrorKind::NotFound {
        Problem::Vanished
    } else {
        Problem::Unreadable
    }
}

fn mtime(m: &fs::Metadata) -> (i64, i64) {
    (m.mtime(), m.mtime_nsec())
}

/// The hex SHA-256 of the file's first line (without its newline, at most
/// [`FINGERPRINT_BYTES`]), or `None` while the first line is incomplete and shorter than that.
fn fingerprint(file: &File) -> io::Result<Option<String>> {
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let mut n = 0;
    let line_end = loop {
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            break i;
        }
        if n == buf.len() {
            break n;
        }
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => return Ok(None),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let digest = Sha256::digest(&buf[..line_end]);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    Ok(Some(hex))
}

/// Just after the last newline before `size` (0 if none): where `start_at = "end"` starts, so
/// that a line being written at start-up is delivered once complete.
fn last_line_end(file: &File, size: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; READ_CHUNK.min(size as usize)];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let len = (end - start) as usize;
        file.read_exact_at(&mut buf[..len], start)?;
        if let Some(i) = memchr::memrchr(b'\n', &buf[..len]) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The cap on raw lines of decoded formats: wider than the line cap, so that a JSON line whose
/// escapes make it up to six times longer than its message is not cut into invalid JSON. The
/// decoder cuts the decoded line at the line cap; this only bounds memory on garbage.
fn raw_cap(cap: usize) -> usize {
    cap.saturating_mul(6).saturating_add(4096)
}

/// Wake-ups from the watcher: `rescan` is set for anything but "a file grew".
#[derive(Default)]
struct Wake {
    notify: tokio::sync::Notify,
    rescan: AtomicBool,
}

/// The `notify` watcher and the directories it should watch. Directories are (re)added at
/// every timed poll when they were missing, failed, or were replaced (a deleted and recreated
/// directory silently loses its inotify watch).
struct Watches {
    watcher: Option<RecommendedWatcher>,
    dirs: Vec<WatchDir>,
    source: String,
}

struct WatchDir {
    path: PathBuf,
    mode: RecursiveMode,
    /// Device and inode of the directory when the watch was added.
    watched: Option<(u64, u64)>,
    failure_logged: bool,
}

impl Watches {
    fn new(tailer: &FileTailer, wake: Arc<Wake>, interval: Duration) -> Watches {
        let include = tailer.include.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let (wanted, rescan) = match &res {
                Ok(ev) if ev.need_rescan() => (true, true),
                Ok(ev) => match ev.kind {
                    EventKind::Access(_) => (false, false),
                    EventKind::Modify(ModifyKind::Data(_)) => {
                        (ev.paths.iter().any(|p| include.is_match(p)), false)
                    }
                    EventKind::Create(notify::event::CreateKind::Folder)
                    | EventKind::Remove(notify::event::RemoveKind::Folder) => (true, true),
                    _ => (ev.paths.iter().any(|p| include.is_match(p)), true),
                },
                Err(_) => (true, true),
            };
            if wanted {
                if rescan {
                    wake.rescan.store(true, Ordering::SeqCst);
                }
                wake.notify.notify_one();
            }
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(
                    source = %tailer.name,
                    "change notifications unavailable ({e}); polling every {interval:?}"
                );
                None
            }
        };
        let dirs = tailer
            .roots
            .iter()
            .map(|r| (r.watch_dir(), r.recursive || r.depth > 1))
            .fold(Vec::<WatchDir>::new(), |mut v, (path, rec)| {
                let mode = if rec {
                    RecursiveMode::Recursive
                } else {
                    RecursiveMode::NonRecursive
                };
                match v.iter_mut().find(|d| d.path == path) {
                    Some(d) if rec => d.mode = mode,
                    Some(_) => {}
                    None => v.push(WatchDir {
                        path,
                        mode,
                        watched: None,
                        failure_logged: false,
                    }),
                }
                v
            });
        let mut w = Watches {
            watcher,
            dirs,
            source: tailer.name.clone(),
        };
        w.maintain(interval);
        w
    }

    fn maintain(&mut self, interval: Duration) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        for d in &mut self.dirs {
            let id = fs::metadata(&d.path).ok().map(|m| (m.dev(), m.ino()));
            if id == d.watched {
                continue;
            }
            if d.watched.is_some() {
                let _ = watcher.unwatch(&d.path);
                d.watched = None;
            }
            let Some(id) = id else { continue };
            match watcher.watch(&d.path, d.mode) {
                Ok(()) => d.watched = Some(id),
                Err(e) if !d.failure_logged => {
                    d.failure_logged = true;
                    warn!(
                        source = %self.source, dir = %d.path.display(),
                        "cannot watch directory ({e}); polling it every {interval:?}"
                    );
                }
                Err(_) => {}
            }
        }
    }
}

/// Runs `tailer` until `shutdown` turns true (or its sender is dropped): polls, sends batches
/// into `tx` (waiting when the pipeline is behind), and when nothing was read waits for a
/// change event or `poll_interval`, whichever comes first.
///
/// The blocking file I/O of each poll runs in [`tokio::task::spawn_blocking`]: the tailer is
/// moved into the blocking task and back, so it is owned by exactly one place at a time and
/// needs no lock, and the async workers never wait on a disk. When the change watcher cannot
/// be created, this logs it once and polls every `poll_interval`.
pub async fn run(
    mut tailer: FileTailer,
    poll_interval: Duration,
    tx: mpsc::Sender<Batch>,
    mut shutdown: watch::Receiver<bool>,
) {
    let wake = Arc::new(Wake::default());
    let mut watches = Watches::new(&tailer, wake.clone(), poll_interval);
    let mut last_walk: Option<Instant> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let timed = last_walk.is_none_or(|t| t.elapsed() >= poll_interval);
        let rescan = wake.rescan.swap(false, Ordering::SeqCst) || timed;
        if timed {
            watches.maintain(poll_interval);
        }
        if rescan {
            last_walk = Some(Instant::now());
        }
        let before = tailer.stats.bytes_read;
        let job = tokio::task::spawn_blocking(move || {
            let batches = tailer.poll_with(RUN_BUDGET, rescan);
            (tailer, batches)
        });
        let batches;
        (tailer, batches) = match job.await {
            Ok(r) => r,
            Err(e) => {
                error!("file source stopped: its poll failed: {e}");
                return;
            }
        };
        let progressed = tailer.stats.bytes_read != before;
        for b in batches {
            tokio::select! {
                sent = tx.send(b) => if sent.is_err() { return },
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
        if progressed {
            continue;
        }
        tokio::select! {
            _ = wake.notify.notified() => {}
            _ = tokio::time::sleep(poll_interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CRI-like decoder: lines starting with `P` are parts, `F` ends a message. It consumes
    /// only up to the last `F` line, so parts are handed to it again with the next data.
    struct Parts;

    impl LineDecoder for Parts {
        fn decode(&mut self, raw: &[u8], out: &mut Vec<u8>) -> (usize, u64) {
            let mut consumed = 0;
            let mut lines = 0;
            let mut msg = Vec::new();
            let mut pos = 0;
            for nl in memchr::memchr_iter(b'\n', raw) {
                let line = &raw[pos..nl];
                msg.extend_from_slice(line.get(1..).unwrap_or_default());
                pos = nl + 1;
                if line.first() == Some(&b'F') {
                    out.extend_from_slice(&msg);
                    out.push(b'\n');
                    msg.clear();
                    lines += 1;
                    consumed = pos;
                }
            }
            (consumed, lines)
        }
    }

    fn parts(_: FileFormat, _: &Path, _: usize) -> Option<Box<dyn LineDecoder>> {
        Some(Box::new(Parts))
    }

    fn tailer(dir: &Path, cap: usize) -> FileTailer {
        let cfg: FileSourceConfig = toml::from_str(&format!(
            "name = \"t\"\ninclude = [\"{}/*.log\"]\nstart_at = \"beginning\"\n",
            dir.display()
        ))
        .unwrap();
        let mut t = FileTailer::new("t", &cfg, cap, Vec::new(), true).unwrap();
        t.make_decoder = parts;
        t
    }

    fn offset(b: &Batch) -> u64 {
        match &b.position {
            Some(Position::File { offset, .. }) => *offset,
            _ => panic!("no file position"),
        }
    }

    #[test]
    fn decoder_offsets_stop_at_the_last_consumed_line_and_count_cut_lines_in_file_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        // The second part is longer than the raw cap: cut in raw, whole in the file.
        let cap = 8;
        let long = format!("P{}", "c".repeat(raw_cap(cap) + 10));
        fs::write(&path, format!("Fhead\nPab\n{long}\n")).unwrap();
        let mut t = tailer(dir.path(), cap);
        let b = t.poll(1 << 20);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].data, b"head\n");
        assert_eq!(offset(&b[0]), 6);
        assert_eq!(b[0].truncated_lines, 0);

        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        io::Write::write_all(&mut f, b"Fz\nPnext").unwrap();
        let b = t.poll(1 << 20);
        assert_eq!(b.len(), 1);
        let want = format!("ab{}z\n", &long[1..raw_cap(cap)]);
        assert_eq!(String::from_utf8_lossy(&b[0].data), want);
        assert_eq!(b[0].lines, 1);
        assert_eq!(b[0].truncated_lines, 1);
        assert_eq!(offset(&b[0]), (6 + 4 + long.len() + 1 + 3) as u64);
        assert!(t.poll(1 << 20).is_empty());
    }

    #[test]
    fn fixed_prefixes_of_patterns() {
        let cases = [
            ("/var/log/auth.log*", "/var/log", 1, false),
            ("/var/log/syslog", "/var/log", 1, false),
            ("/var/log/*/x.log", "/var/log", 2, false),
            ("/var/log/**/*.log", "/var/log", 2, true),
            ("logs/*.log", "logs", 1, false),
            ("*.log", "", 1, false),
        ];
        for (pattern, dir, depth, recursive) in cases {
            let r = Root::of(pattern);
            assert_eq!(
                (r.dir.to_str().unwrap(), r.depth, r.recursive),
                (dir, depth, recursive),
                "{pattern}"
            );
        }
    }
}
