//! Sources: where the daemon's lines come from.
//!
//! Every source produces [`Batch`]es: complete lines (never a partial last line) plus the
//! [`Position`] just after them. The pipeline processes a batch and commits its position in the
//! same state-store transaction as the incidents those lines produced, so a position never
//! runs ahead of the effects of its lines. Sources that cannot be replayed (syslog over the
//! network, stdin) carry no position.
//!
//! - [`file`]: files by glob, with rotation (rename, copytruncate), identity by content
//!   fingerprint plus device/inode, polling as the reliable core and `notify` as a wake-up hint.
//! - [`journald`]: `journalctl --output=json --follow` with a persisted cursor.
//! - [`syslog`]: an RFC 3164 / RFC 5424 receiver over UDP and TCP.
//! - [`container`]: decoders for Docker `json-file` and Kubernetes CRI log lines.

pub mod container;
pub mod file;
pub mod journald;
pub mod syslog;

use serde::{Deserialize, Serialize};

/// Where a stream stands: what to persist so that a restart resumes exactly after the last
/// committed line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// A file, identified by its content fingerprint.
    File {
        /// Hex hash of the file's first line (its identity across renames).
        fingerprint: String,
        /// Last path the file was seen at.
        path: String,
        /// Byte offset just after the last complete line delivered.
        offset: u64,
        /// Device of the file when last seen.
        dev: u64,
        /// Inode of the file when last seen.
        ino: u64,
    },
    /// A journald cursor.
    Journal {
        /// The `__CURSOR` of the last entry delivered.
        cursor: String,
    },
}

/// Complete lines from one stream and the position after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Stable id of the stream, the key under which its position is stored: `file:<fingerprint>`,
    /// `journald:<source name>`, `syslog:<source name>`, `stdin`.
    pub stream: String,
    /// Shown in incidents and matched by asset `files` globs: the file path, or the source name.
    pub name: String,
    /// Complete lines, each terminated by `\n`.
    pub data: Vec<u8>,
    /// Number of lines in `data`.
    pub lines: u64,
    /// Position after these lines; `None` for sources that cannot be replayed.
    pub position: Option<Position>,
    /// Fields added to every hit from these lines (container id, pod name, journal unit).
    pub labels: Vec<(String, String)>,
    /// Lines cut because they were longer than the cap.
    pub truncated_lines: u64,
}
