//! sentinela: watches logs for security incidents and turns them into prioritized tickets.
//!
//! The pipeline, one module per stage:
//!
//! - [`detector`]: detector files (format, validation, the embedded pack).
//! - [`detect`]: the two-stage matcher (aho-corasick prefilter, `regex::bytes` confirmation).
//! - [`timestamp`]: event time from log lines.
//! - [`correlate`]: thresholds, distinct counts and sequences per actor over event-time windows.
//! - [`policy`]: allowlists, asset criticality and the priority matrix.
//! - [`engine`]: matcher + correlator + policy, from blocks of lines to incidents.
//! - [`incident`]: incidents, fingerprints and evidence.
//! - [`config`]: the TOML config and its single validation path.
//! - [`scan`]: runs the pipeline over byte streams (files, stdin) for `match` and `scan`.
//! - [`source`]: the daemon's sources (files, journald, syslog, container logs).
//! - [`state`]: the SQLite state store (positions, correlation state, incidents).
//!
//! Matching, correlation and policy do no I/O: they are pure functions of their input.
#![deny(missing_docs)]

pub mod config;
pub mod correlate;
pub mod daemon;
pub mod detect;
pub mod detector;
pub mod engine;
pub mod error;
pub mod http;
pub mod incident;
pub mod policy;
pub mod scan;
pub mod source;
pub mod state;
pub mod ticket;
pub mod timestamp;

pub use error::{Error, Result};
