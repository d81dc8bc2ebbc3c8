//! Shared by the end-to-end tests against real help desks (`ticketing.rs` with Request
//! Tracker, `redmine.rs` with Redmine): the real daemon, a test detector, attack lines, and
//! reading incidents and the outbox through the CLI.

#![allow(dead_code)] // each test file uses a different part

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One detector for the end-to-end tests: three `ATTACK` lines from one address within
/// 10 minutes make an incident (high severity: P3 on a normal asset).
pub const DETECTOR: &str = r#"
[[detector]]
id = "t.attack"
title = "Attack from {source.address}"
description = "Test attacks."
category = "intrusion-attempts"
severity = "high"
response = "1. Block {source.address}."
patterns = ['''\bapp\[\d+\]: ATTACK from (?P<source.address>\S+)$''']
key = ["source.address"]
threshold = { count = 3, window = "10m" }
"#;

/// The real daemon, killed (SIGKILL) when dropped.
pub struct Daemon(pub Child);

impl Daemon {
    pub fn start(cfg: &Path, log: &Path) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Daemon(
            Command::new(env!("CARGO_BIN_EXE_sentinela"))
                .args(["run", "--config"])
                .arg(cfg)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    pub fn kill9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn attack(log: &Path, addr: &str, n: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    for _ in 0..n {
        writeln!(f, "Mar  1 10:00:00 web1 app[1]: ATTACK from {addr}").unwrap();
    }
}

pub fn incidents(state: &Path) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_sentinela"))
        .args(["incidents", "--format", "json", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    if !o.status.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["incidents"].as_array().cloned().unwrap_or_default()
}

/// The outbox, or `None` when it could not be read this time (the daemon may be starting).
pub fn try_outbox(state: &Path) -> Option<Vec<Value>> {
    let o = Command::new(env!("CARGO_BIN_EXE_sentinela"))
        .args(["outbox", "list", "--format", "json", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    if !o.status.success() {
        return None;
    }
    serde_json::from_slice::<Value>(&o.stdout)
        .ok()?
        .as_array()
        .cloned()
}

pub fn outbox(state: &Path) -> Vec<Value> {
    let start = Instant::now();
    loop {
        if let Some(v) = try_outbox(state) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "cannot read the outbox"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn fingerprint_of(state: &Path, addr: &str) -> Option<String> {
    incidents(state)
        .iter()
        .find(|i| i["fields"]["source.address"] == addr)
        .and_then(|i| i["fingerprint"].as_str().map(String::from))
}
