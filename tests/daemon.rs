//! The real daemon (`sentinela run`) on real files: exactly-once across restarts and
//! `kill -9`, signals, the systemd notify protocol, the HTTP endpoints, stdin, environment-only
//! configuration, and the shipped systemd unit.
//!
//! Every test uses a detector that turns each line `SEQ <n> end` into its own incident keyed by
//! `n`, so a line processed twice shows up as a count of 2 and a lost line as a missing
//! incident.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SEQ_DETECTOR: &str = r#"
[[detector]]
id = "t.seq"
title = "line {user.name}"
category = "other"
severity = "info"
patterns = ['''SEQ (?P<user.name>\d+) end$''']
key = ["user.name"]
"#;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        std::fs::write(dir.path().join("det.toml"), SEQ_DETECTOR).unwrap();
        let e = Env { dir };
        e.write_config(extra);
        e
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn config(&self) -> PathBuf {
        self.path("sentinela.toml")
    }

    fn write_config(&self, extra: &str) {
        let text = format!(
            "[detectors]\nbuiltin = false\ndirs = [\"det.toml\"]\n[engine]\ntimezone = \"UTC\"\n\
             [state]\ndir = \"{state}\"\ncommit_interval = \"50ms\"\n[http]\nlisten = \"\"\n\
             [[source.file]]\nname = \"app\"\ninclude = [\"{logs}/app.log*\"]\nstart_at = \"beginning\"\npoll_interval = \"200ms\"\n{extra}",
            state = self.path("state").display(),
            logs = self.path("logs").display(),
        );
        std::fs::write(self.config(), text).unwrap();
    }

    /// Starts the daemon with a notify socket; returns once it said READY=1.
    fn start(&self) -> Daemon {
        let sock_path = self.path(&format!("notify-{}.sock", rand_suffix()));
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        sock.set_nonblocking(true).unwrap();
        let log = std::fs::File::create(self.path("daemon.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sentinela"))
            .args(["run", "--config"])
            .arg(self.config())
            .env("NOTIFY_SOCKET", &sock_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            sock,
            messages: Vec::new(),
        };
        d.wait_for("READY=1", Duration::from_secs(20));
        d
    }

    fn append(&self, file: &str, lines: impl IntoIterator<Item = u64>) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("logs").join(file))
            .unwrap();
        let mut buf = String::new();
        for n in lines {
            buf.push_str(&format!("Mar  1 10:00:00 host app[1]: SEQ {n} end\n"));
        }
        f.write_all(buf.as_bytes()).unwrap();
    }

    /// Runs `sentinela incidents|state` on the state directory (not the config: some tests
    /// break the config on purpose).
    fn cli_json(&self, cmd: &str) -> Value {
        let o = Command::new(env!("CARGO_BIN_EXE_sentinela"))
            .args([cmd, "--state-dir"])
            .arg(self.path("state"))
            .args(["--format", "json"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// Incident counts by sequence number, straight from the state file.
    fn counts(&self) -> BTreeMap<u64, u64> {
        if !self.path("state/state.db").exists() {
            return BTreeMap::new();
        }
        let doc = self.cli_json("incidents");
        doc["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["detector"] == "t.seq")
            .map(|i| {
                let n = i["fields"]["user.name"].as_str().unwrap().parse().unwrap();
                (n, i["count"].as_u64().unwrap())
            })
            .collect()
    }

    /// Committed offsets by file path.
    fn offsets(&self) -> BTreeMap<String, u64> {
        if !self.path("state/state.db").exists() {
            return BTreeMap::new();
        }
        let doc = self.cli_json("state");
        doc.as_array()
            .unwrap()
            .iter()
            .filter(|p| p["position"]["kind"] == "file")
            .map(|p| {
                (
                    p["position"]["path"].as_str().unwrap().to_string(),
                    p["position"]["offset"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn wait_until(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() % 1_000_000
}

struct Daemon {
    child: Child,
    sock: UnixDatagram,
    messages: Vec<String>,
}

impl Daemon {
    /// Collects the notifications queued so far (the watchdog pings keep coming, so this
    /// must not wait for a quiet moment).
    fn pump(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            self.messages
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    /// Waits for a notify message containing `what` (beyond those already consumed).
    fn wait_for(&mut self, what: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(i) = self.messages.iter().position(|m| m.contains(what)) {
                return self.messages.remove(i);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Its last messages may still be queued.
                self.pump();
                if let Some(i) = self.messages.iter().position(|m| m.contains(what)) {
                    return self.messages.remove(i);
                }
                panic!("daemon exited ({status}) before {what}");
            }
            assert!(
                start.elapsed() < limit,
                "no {what} within {limit:?}; got {:?}",
                self.messages
            );
            self.pump();
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }

    fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            // The drain is bounded by DRAIN_TIMEOUT (10 s) plus the final commit; leave room
            // for a loaded 2-core CI machine running tests in parallel.
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// After any stop, the state is consistent: exactly the lines before the committed offset
/// have been counted, once each.
fn assert_consistent(env: &Env, file: &str, written: &[u64]) {
    let offsets = env.offsets();
    let path = env.path("logs").join(file).display().to_string();
    let offset = offsets.get(&path).copied().unwrap_or(0);
    let data = std::fs::read(env.path("logs").join(file)).unwrap();
    let lines_before = data[..offset as usize]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let counts = env.counts();
    let expected: BTreeMap<u64, u64> = written[..lines_before].iter().map(|&n| (n, 1)).collect();
    assert_eq!(counts, expected, "offset {offset} of {} bytes", data.len());
}

#[test]
fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let env = Env::new("");
    let mut written = Vec::new();
    let mut next = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    for round in 0..8 {
        let d = env.start();
        // Write while the daemon runs, then kill it at a random moment.
        for _ in 0..(1 + rand(4)) {
            let n = 200 + rand(800);
            env.append("app.log", next..next + n);
            written.extend(next..next + n);
            next += n;
            std::thread::sleep(Duration::from_millis(rand(60)));
        }
        std::thread::sleep(Duration::from_millis(rand(150)));
        d.kill9();
        assert_consistent(&env, "app.log", &written);
        // Sometimes more lines arrive while it is down.
        if round % 3 == 1 {
            let n = 100;
            env.append("app.log", next..next + n);
            written.extend(next..next + n);
            next += n;
        }
    }
    // A final clean run catches up with everything.
    let d = env.start();
    let size = std::fs::metadata(env.path("logs/app.log")).unwrap().len();
    let path = env.path("logs/app.log").display().to_string();
    env.wait_until("the final offset", || {
        env.offsets().get(&path) == Some(&size)
    });
    assert!(d.stop().success(), "{}", env.daemon_log());
    let counts = env.counts();
    assert_eq!(
        counts.len(),
        written.len(),
        "every line became exactly one incident"
    );
    assert!(
        counts.values().all(|&c| c == 1),
        "no line was counted twice"
    );
}

#[test]
fn rotation_while_stopped_and_running_is_read_exactly_once() {
    let env = Env::new("");
    env.append("app.log", 0..100);
    let d = env.start();
    env.wait_until("100 incidents", || env.counts().len() == 100);
    // Rename-rotate while running: the rest of the old file is drained, the new one read.
    env.append("app.log", 100..150);
    std::fs::rename(env.path("logs/app.log"), env.path("logs/app.log.1")).unwrap();
    env.append("app.log", 150..200);
    env.wait_until("200 incidents", || env.counts().len() == 200);
    d.kill9();
    // Rotate again while stopped.
    env.append("app.log", 200..250);
    std::fs::rename(env.path("logs/app.log.1"), env.path("logs/app.log.2")).unwrap();
    std::fs::rename(env.path("logs/app.log"), env.path("logs/app.log.1")).unwrap();
    env.append("app.log", 250..300);
    let d = env.start();
    env.wait_until("300 incidents", || env.counts().len() == 300);
    assert!(d.stop().success());
    let counts = env.counts();
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        (0..300).collect::<Vec<_>>()
    );
}

#[test]
fn sigterm_drains_and_commits_everything_read() {
    let env = Env::new("");
    let d = env.start();
    env.append("app.log", 0..5000);
    std::thread::sleep(Duration::from_millis(300));
    let status = d.stop();
    assert!(status.success(), "{}", env.daemon_log());
    assert!(
        env.daemon_log().contains("SIGTERM: draining"),
        "{}",
        env.daemon_log()
    );
    // What was read was committed with its incidents; a restart reads the rest.
    assert_consistent(&env, "app.log", &(0..5000).collect::<Vec<_>>());
    let d = env.start();
    env.wait_until("all lines", || env.counts().len() == 5000);
    assert!(d.stop().success());
}

#[test]
fn sighup_with_a_broken_config_keeps_the_running_one_and_a_good_one_applies() {
    let env = Env::new("");
    let mut d = env.start();
    env.append("app.log", [1]);
    env.wait_until("incident 1", || env.counts().contains_key(&1));
    // Break the config: the reload fails, the daemon keeps running with the old one.
    std::fs::write(env.config(), "[engine\nbroken = ").unwrap();
    d.signal("HUP");
    let reloading = d.wait_for("RELOADING=1", Duration::from_secs(10));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    d.wait_for("READY=1", Duration::from_secs(10));
    env.append("app.log", [2]);
    env.wait_until("incident 2 with the old config", || {
        env.counts().contains_key(&2)
    });
    assert!(
        env.daemon_log()
            .contains("Reload failed; keeping the running config"),
        "{}",
        env.daemon_log()
    );
    // A good config with a new detector applies, and existing incidents are kept.
    std::fs::write(
        env.path("det.toml"),
        format!("{SEQ_DETECTOR}\n[[detector]]\nid = \"t.new\"\ntitle = \"new\"\ncategory = \"other\"\nseverity = \"low\"\npatterns = ['''NEWTHING (?P<user.name>\\w+)''']\nkey = [\"user.name\"]\n"),
    )
    .unwrap();
    env.write_config("");
    d.signal("HUP");
    d.wait_for("RELOADING=1", Duration::from_secs(10));
    d.wait_for("READY=1", Duration::from_secs(10));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(env.path("logs/app.log"))
        .unwrap();
    f.write_all(b"Mar  1 10:00:01 host app[1]: NEWTHING alpha\n")
        .unwrap();
    env.append("app.log", [1]);
    env.wait_until("the new detector's incident", || {
        env.cli_json("incidents")["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["detector"] == "t.new")
    });
    // Line 1 again is a recurrence of the incident opened before the reload.
    env.wait_until("recurrence", || env.counts().get(&1) == Some(&2));
    let status = d.stop();
    assert!(status.success());
}

#[test]
fn systemd_notify_protocol_ready_watchdog_status_stopping() {
    let env = Env::new("");
    let mut d = env.start();
    let w = d.wait_for("WATCHDOG=1", Duration::from_secs(10));
    assert!(w.contains("STATUS="), "{w}");
    d.signal("TERM");
    d.wait_for("STOPPING=1", Duration::from_secs(10));
    let _ = d.child.wait();
}

#[test]
fn stdin_source_runs_until_end_of_input() {
    let env = Env::new("");
    // No file source: only stdin.
    let text = std::fs::read_to_string(env.config()).unwrap();
    let cut = text.find("[[source.file]]").unwrap();
    std::fs::write(env.config(), &text[..cut]).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sentinela"))
        .args(["run", "--stdin", "--config"])
        .arg(env.config())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for n in 0..1000 {
        input.push_str(&format!("SEQ {n} end\n"));
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    let counts = env.counts();
    assert_eq!(counts.len(), 1000);
    assert!(counts.values().all(|&c| c == 1));
}

#[test]
fn no_sources_is_a_clear_error() {
    let env = Env::new("");
    let text = std::fs::read_to_string(env.config()).unwrap();
    let cut = text.find("[[source.file]]").unwrap();
    std::fs::write(env.config(), &text[..cut]).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_sentinela"))
        .args(["run", "--config"])
        .arg(env.config())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no sources configured"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (code, body)
}

#[test]
fn http_endpoints_serve_health_readiness_and_metrics() {
    let port = free_port();
    let env = Env::new("");
    let text = std::fs::read_to_string(env.config())
        .unwrap()
        .replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\""));
    std::fs::write(env.config(), text).unwrap();
    env.append("app.log", 0..10);
    let d = env.start();
    env.wait_until("10 incidents", || env.counts().len() == 10);
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert_eq!(http_get(port, "/readyz"), (200, "ready\n".into()));
    let (code, metrics) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    for want in [
        "sentinela_lines_total{source=\"app\"} 10",
        "sentinela_hits_total{detector=\"t.seq\"} 10",
        "sentinela_incidents_total{detector=\"t.seq\",priority=\"P4\"} 10",
        "# TYPE sentinela_state_commit_seconds_last gauge",
        "sentinela_truncated_lines_total",
    ] {
        assert!(metrics.contains(want), "missing {want}:\n{metrics}");
    }
    assert_eq!(http_get(port, "/nope").0, 404);
    assert!(d.stop().success());
}

#[test]
fn environment_variables_alone_configure_a_sidecar() {
    let env = Env::new("");
    env.append("app.log", 0..3);
    let o = Command::new(env!("CARGO_BIN_EXE_sentinela"))
        .arg("run")
        .env("SENTINELA_DETECTORS__BUILTIN", "false")
        .env(
            "SENTINELA_DETECTORS__DIRS",
            format!("[\"{}\"]", env.path("det.toml").display()),
        )
        .env("SENTINELA_STATE__DIR", env.path("state"))
        .env("SENTINELA_HTTP__LISTEN", "")
        .env("SENTINELA_SOURCE__FILE__0__NAME", "app")
        .env(
            "SENTINELA_SOURCE__FILE__0__INCLUDE",
            format!("[\"{}/app.log\"]", env.path("logs").display()),
        )
        .env("SENTINELA_SOURCE__FILE__0__START_AT", "beginning")
        .env("SENTINELA_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child = o;
    env.wait_until("3 incidents", || env.counts().len() == 3);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // JSON logs on stdout, one object per line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap();
    let v: Value = serde_json::from_str(first).unwrap();
    assert_eq!(v["level"], "INFO");
}

#[test]
fn shipped_systemd_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/sentinela.service"
    ))
    .unwrap()
    .replace("/usr/bin/sentinela", env!("CARGO_BIN_EXE_sentinela"));
    for key in [
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=sentinela",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "SupplementaryGroups=adm systemd-journal",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
        "ExecStartPre=",
        "WatchdogSec=",
    ] {
        assert!(unit.contains(key), "unit lacks {key}");
    }
    let path = dir.path().join("sentinela.service");
    std::fs::write(&path, unit).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed: .ci/run installs it");
    let err = String::from_utf8_lossy(&o.stderr);
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("sentinela.service"))
        .collect();
    assert!(
        o.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{err}"
    );
}

#[test]
fn syslog_messages_sent_with_logger_over_udp_and_tcp_become_incidents() {
    let port = free_port();
    let env = Env::new(&format!(
        "[[source.syslog]]\nname = \"net\"\nudp = \"127.0.0.1:{port}\"\ntcp = \"127.0.0.1:{port}\"\n"
    ));
    let d = env.start();
    for (n, proto, format) in [
        (1, "--tcp", "--rfc3164"),
        (2, "--tcp", "--rfc5424"),
        (3, "--udp", "--rfc3164"),
        (4, "--udp", "--rfc5424"),
    ] {
        let ok = Command::new("logger")
            .args([
                "--server",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                proto,
                format,
            ])
            .args(["-t", "app", "--id=77", &format!("SEQ {n} end")])
            .status()
            .expect("logger (util-linux) must be installed: .ci/run installs it")
            .success();
        assert!(ok);
    }
    env.wait_until("4 incidents from syslog", || env.counts().len() == 4);
    let doc = env.cli_json("incidents");
    let sources: Vec<&str> = doc["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    assert!(sources.iter().all(|s| *s == "syslog:net"), "{sources:?}");
    assert!(d.stop().success());
}

/// Builds a journal file from journal export format with the real systemd-journal-remote.
fn write_journal(dir: &std::path::Path, file: &str, seqs: std::ops::Range<u64>) {
    let mut export = String::new();
    for n in seqs {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n\
             MESSAGE=SEQ {n} end\nSYSLOG_IDENTIFIER=app\n_PID=7\n_HOSTNAME=host1\n\n",
            1_772_359_200_000_000 + n * 1000,
            1_000_000 + n
        ));
    }
    let remote = [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("systemd-journal-remote must be installed: .ci/run installs it");
    let mut child = Command::new(remote)
        .arg(format!("--output={}", dir.join(file).display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn journald_cursor_is_committed_with_the_incidents_and_resumed_after_kill_9() {
    let env = Env::new("");
    let jdir = env.path("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    write_journal(&jdir, "a.journal", 0..50);
    // Only the journal: drop the file source.
    let text = std::fs::read_to_string(env.config()).unwrap();
    let cut = text.find("[[source.file]]").unwrap();
    std::fs::write(
        env.config(),
        format!(
            "{}[[source.journald]]\nname = \"j\"\ndirectory = \"{}\"\nstart_at = \"beginning\"\n",
            &text[..cut],
            jdir.display()
        ),
    )
    .unwrap();
    let d = env.start();
    env.wait_until("50 journal incidents", || env.counts().len() == 50);
    d.kill9();
    let state = env.cli_json("state");
    assert_eq!(state[0]["stream"], "journald:j", "{state}");
    assert_eq!(state[0]["position"]["kind"], "journal");
    // New entries while stopped; the restart resumes after the committed cursor.
    write_journal(&jdir, "b.journal", 50..80);
    let d = env.start();
    env.wait_until("80 journal incidents", || env.counts().len() == 80);
    assert!(d.stop().success());
    let counts = env.counts();
    assert!(
        counts.values().all(|&c| c == 1),
        "an entry was counted twice: {counts:?}"
    );
    let doc = env.cli_json("incidents");
    let inc = &doc["incidents"][0];
    assert_eq!(inc["fields"]["host.name"], "host1", "{inc}");
    assert_eq!(inc["source"], "journald:j");
}
