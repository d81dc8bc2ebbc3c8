//! The journald source against real journal files.
//!
//! Journal files are built from the journal export format with `systemd-journal-remote` and
//! read by the real `journalctl` through `directory`, the same code path as the system journal.
//! Both must be installed (`apt-get install -y systemd systemd-journal-remote`, done by
//! `.ci/run`); without them these tests fail, they do not skip.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sentinela::config::{Config, JournaldSourceConfig, StartAt};
use sentinela::engine::{Engine, Input};
use sentinela::source::journald::{run, JournaldStats};
use sentinela::source::{Batch, Position};
use sentinela::timestamp::{now_millis, TimeParser, Zone};
use tokio::sync::{mpsc, watch};

const REMOTE: [&str; 2] = [
    "/lib/systemd/systemd-journal-remote",
    "/usr/lib/systemd/systemd-journal-remote",
];
const BOOT: &str = "0123456789abcdef0123456789abcdef";
/// 2026-03-01T10:00:00Z in microseconds.
const T0: u64 = 1_772_359_200_000_000;

fn journal_remote() -> PathBuf {
    let found = REMOTE.iter().map(PathBuf::from).find(|p| p.exists());
    let Some(p) = found else {
        panic!(
            "systemd-journal-remote not found (looked at {REMOTE:?}): the journald tests build \
             journal files with it. Install it: apt-get install -y systemd systemd-journal-remote"
        );
    };
    let jc = Command::new("journalctl").arg("--version").output();
    assert!(
        jc.is_ok_and(|o| o.status.success()),
        "journalctl not found: install it: apt-get install -y systemd"
    );
    p
}

/// One journal entry: realtime and monotonic timestamps plus fields.
struct Entry {
    boot: &'static str,
    realtime: u64,
    monotonic: u64,
    fields: Vec<(&'static str, Vec<u8>)>,
}

fn entry(realtime: u64, monotonic: u64, fields: &[(&'static str, &[u8])]) -> Entry {
    Entry {
        boot: BOOT,
        realtime,
        monotonic,
        fields: fields.iter().map(|(k, v)| (*k, v.to_vec())).collect(),
    }
}

/// Writes `entries` to the journal file `dir/file` in the journal export format
/// (`KEY=value` lines, the binary form for values with a newline, a blank line after each
/// entry).
fn write_journal(dir: &Path, file: &str, entries: &[Entry]) {
    let mut export = Vec::new();
    for e in entries {
        writeln!(export, "__REALTIME_TIMESTAMP={}", e.realtime).unwrap();
        writeln!(export, "__MONOTONIC_TIMESTAMP={}", e.monotonic).unwrap();
        writeln!(export, "_BOOT_ID={}", e.boot).unwrap();
        for (k, v) in &e.fields {
            if v.contains(&b'\n') {
                export.extend_from_slice(k.as_bytes());
                export.push(b'\n');
                export.extend_from_slice(&(v.len() as u64).to_le_bytes());
                export.extend_from_slice(v);
                export.push(b'\n');
            } else {
                export.extend_from_slice(k.as_bytes());
                export.push(b'=');
                export.extend_from_slice(v);
                export.push(b'\n');
            }
        }
        export.push(b'\n');
    }
    let out = dir.join(file);
    let mut child = Command::new(journal_remote())
        .arg(format!("--output={}", out.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run systemd-journal-remote");
    child.stdin.take().unwrap().write_all(&export).unwrap();
    let res = child.wait_with_output().unwrap();
    assert!(
        res.status.success(),
        "systemd-journal-remote failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
}

/// Cursors of all entries in `dir`, in order, as journalctl reports them.
fn cursors(dir: &Path) -> Vec<String> {
    let out = Command::new("journalctl")
        .arg(format!("--directory={}", dir.display()))
        .args(["--output=json", "--no-pager", "--output-fields=MESSAGE"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["__CURSOR"].as_str().unwrap().to_string()
        })
        .collect()
}

fn config(dir: &Path, matches: &[&str], start_at: StartAt) -> JournaldSourceConfig {
    JournaldSourceConfig {
        name: "t".into(),
        matches: matches.iter().map(|m| m.to_string()).collect(),
        directory: Some(dir.to_path_buf()),
        start_at,
        journalctl: "journalctl".into(),
    }
}

/// A running source.
struct Running {
    rx: mpsc::Receiver<Batch>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), sentinela::source::journald::JournaldError>>,
    stats: Arc<JournaldStats>,
}

fn start(cfg: JournaldSourceConfig, cursor: Option<String>) -> Running {
    let (tx, rx) = mpsc::channel(16);
    let (stop, stop_rx) = watch::channel(false);
    let stats = Arc::new(JournaldStats::default());
    let task = tokio::spawn(run(cfg, cursor, tx, stop_rx, stats.clone()));
    Running {
        rx,
        stop,
        task,
        stats,
    }
}

impl Running {
    /// Batches until `want` lines arrived (or 20 s passed), then whatever else arrives within
    /// `grace`, so that extra (repeated) lines are seen.
    async fn batches(&mut self, want: u64, grace: Duration) -> Vec<Batch> {
        let mut got = Vec::new();
        let mut lines = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while lines < want {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(b)) => {
                    lines += b.lines;
                    got.push(b);
                }
                _ => break,
            }
        }
        while let Ok(Some(b)) = tokio::time::timeout(grace, self.rx.recv()).await {
            got.push(b);
        }
        got
    }

    async fn stop(self) -> Arc<JournaldStats> {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("source stops promptly")
            .unwrap()
            .unwrap();
        self.stats
    }
}

/// Labels of a batch.
type Labels = Vec<(String, String)>;

/// Lines of `batches` with the labels of their batch.
fn lines(batches: &[Batch]) -> Vec<(Vec<u8>, Labels)> {
    let mut out = Vec::new();
    for b in batches {
        assert_eq!(b.stream, "journald:t");
        assert_eq!(b.name, "journald:t");
        assert!(b.data.ends_with(b"\n"));
        let n = b.data.split(|&c| c == b'\n').count() as u64 - 1;
        assert_eq!(n, b.lines, "line count of a batch");
        for l in b.data.split_inclusive(|&c| c == b'\n') {
            out.push((l.to_vec(), b.labels.clone()));
        }
    }
    out
}

fn cursor_of(b: &Batch) -> String {
    match &b.position {
        Some(Position::Journal { cursor }) => cursor.clone(),
        other => panic!("expected a journal position, got {other:?}"),
    }
}

fn base_entries() -> Vec<Entry> {
    vec![
        entry(
            T0 + 123_456,
            1_000,
            &[
                (
                    "MESSAGE",
                    b"Failed password for root from 203.0.113.9 port 52214 ssh2",
                ),
                ("_HOSTNAME", b"web1"),
                ("SYSLOG_IDENTIFIER", b"sshd"),
                ("_PID", b"4242"),
                ("_SYSTEMD_UNIT", b"sshd.service"),
            ],
        ),
        // Binary MESSAGE (invalid UTF-8 and a newline), no SYSLOG_IDENTIFIER: _COMM is used.
        entry(
            T0 + 1_000_000,
            2_000,
            &[
                ("MESSAGE", b"bin\xffary\nx y"),
                ("_HOSTNAME", b"web1"),
                ("_COMM", b"cron"),
                ("_PID", b"77"),
                ("_SYSTEMD_UNIT", b"cron.service"),
            ],
        ),
        // No MESSAGE, no PID.
        entry(
            T0 + 2_000_000,
            3_000,
            &[("_HOSTNAME", b"web1"), ("SYSLOG_IDENTIFIER", b"kernel")],
        ),
        entry(
            T0 + 3_000_000,
            4_000,
            &[
                (
                    "MESSAGE",
                    b"Failed password for invalid user admin from 203.0.113.9 port 40000 ssh2\n",
                ),
                ("_HOSTNAME", b"web1"),
                ("SYSLOG_IDENTIFIER", b"sshd"),
                ("_PID", b"4243"),
                ("_SYSTEMD_UNIT", b"sshd.service"),
            ],
        ),
    ]
}

fn unit(u: &str) -> Labels {
    vec![("service.name".to_string(), u.to_string())]
}

#[tokio::test]
async fn entries_become_syslog_lines_with_cursor_and_unit() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), "a.journal", &base_entries());
    let all = cursors(dir.path());
    assert_eq!(all.len(), 4);

    let mut src = start(config(dir.path(), &[], StartAt::Beginning), None);
    let batches = src.batches(4, Duration::from_millis(800)).await;
    let stats = src.stop().await;

    let got = lines(&batches);
    let want: Vec<(Vec<u8>, Labels)> = vec![
        (
            b"2026-03-01T10:00:00.123456Z web1 sshd[4242]: Failed password for root from 203.0.113.9 port 52214 ssh2\n".to_vec(),
            unit("sshd.service"),
        ),
        (
            b"2026-03-01T10:00:01.000000Z web1 cron[77]: bin\xffary x y\n".to_vec(),
            unit("cron.service"),
        ),
        (
            b"2026-03-01T10:00:02.000000Z web1 kernel: \n".to_vec(),
            vec![],
        ),
        (
            b"2026-03-01T10:00:03.000000Z web1 sshd[4243]: Failed password for invalid user admin from 203.0.113.9 port 40000 ssh2\n".to_vec(),
            unit("sshd.service"),
        ),
    ];
    assert_eq!(
        got.iter()
            .map(|(l, _)| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>(),
        want.iter()
            .map(|(l, _)| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>()
    );
    assert_eq!(got, want);
    // Each batch's position is the cursor of its last entry; units never share a batch.
    let mut seen = 0;
    for b in &batches {
        seen += b.lines as usize;
        assert_eq!(cursor_of(b), all[seen - 1]);
    }
    assert_eq!(stats.entries.load(Ordering::Relaxed), 4);
    assert_eq!(stats.invalid_entries.load(Ordering::Relaxed), 0);

    // The shipped sshd detector reads these lines, with the host from the header.
    let built = Config::default().build().unwrap();
    let limits = Config::default().file.engine.clone();
    let mut engine = Engine::new(built, limits);
    let mut input = Input::new("journald:t", TimeParser::new(Zone::Local, now_millis()));
    let mut hits = Vec::new();
    for b in &batches {
        engine.process_block(&b.data, &mut input, false, |e, _, h| {
            hits.push((
                e.detectors.detectors[h.detector].id.clone(),
                h.fields.clone(),
            ))
        });
    }
    let failures: Vec<_> = hits
        .iter()
        .filter(|(id, _)| id == "ssh.password-failure")
        .collect();
    assert_eq!(failures.len(), 2, "{hits:?}");
    for (_, fields) in failures {
        let get = |k: &str| fields.get(k);
        assert_eq!(get("source.address"), Some("203.0.113.9"));
        assert_eq!(get("host.name"), Some("web1"));
    }
}

#[tokio::test]
async fn matches_filter_entries() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), "a.journal", &base_entries());
    let mut src = start(
        config(
            dir.path(),
            &["_SYSTEMD_UNIT=sshd.service"],
            StartAt::Beginning,
        ),
        None,
    );
    let batches = src.batches(2, Duration::from_millis(800)).await;
    src.stop().await;
    let got: Vec<String> = lines(&batches)
        .into_iter()
        .map(|(l, labels)| {
            assert_eq!(labels, unit("sshd.service"));
            String::from_utf8(l).unwrap()
        })
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains(" sshd[4242]: Failed password for root "));
    assert!(got[1].contains(" sshd[4243]: Failed password for invalid user admin "));
}

fn numbered(from: u64, n: u64) -> Vec<Entry> {
    (from..from + n)
        .map(|i| {
            let msg = format!("entry {i}");
            entry(
                T0 + i * 1_000_000,
                10_000 + i * 1_000,
                &[
                    ("MESSAGE", msg.as_bytes()),
                    ("_HOSTNAME", b"web1"),
                    ("SYSLOG_IDENTIFIER", b"app"),
                    ("_PID", b"10"),
                ],
            )
        })
        .collect()
}

fn messages(batches: &[Batch]) -> Vec<String> {
    lines(batches)
        .into_iter()
        .map(|(l, _)| {
            let l = String::from_utf8(l).unwrap();
            l.split_once("app[10]: ")
                .map(|(_, m)| m.trim_end().to_string())
                .unwrap_or(l)
        })
        .collect()
}

#[tokio::test]
async fn resumes_after_the_cursor_without_repeating() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), "a.journal", &numbered(0, 3));

    let mut src = start(config(dir.path(), &[], StartAt::Beginning), None);
    let first = src.batches(3, Duration::from_millis(500)).await;
    src.stop().await;
    assert_eq!(messages(&first), ["entry 0", "entry 1", "entry 2"]);
    let cursor = cursor_of(first.last().unwrap());

    // More entries than journalctl's default tail of 10, in a second file of the directory.
    write_journal(dir.path(), "b.journal", &numbered(3, 12));
    let mut src = start(
        config(dir.path(), &[], StartAt::Beginning),
        Some(cursor.clone()),
    );
    let second = src.batches(12, Duration::from_millis(800)).await;
    src.stop().await;
    let want: Vec<String> = (3..15).map(|i| format!("entry {i}")).collect();
    assert_eq!(messages(&second), want);
    let all = cursors(dir.path());
    assert_eq!(cursor_of(second.last().unwrap()), all[14]);

    // Resuming from the end delivers nothing.
    let mut src = start(
        config(dir.path(), &[], StartAt::Beginning),
        Some(cursor_of(second.last().unwrap())),
    );
    let third = src.batches(0, Duration::from_millis(1500)).await;
    src.stop().await;
    assert!(third.is_empty(), "{:?}", messages(&third));
}

#[tokio::test]
async fn start_at_end_skips_stored_entries_and_follows_new_files() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), "a.journal", &numbered(0, 3));
    let mut src = start(config(dir.path(), &[], StartAt::End), None);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let now = chrono::Utc::now().timestamp_micros() as u64;
    write_journal(
        dir.path(),
        "b.journal",
        &[entry(
            now,
            100_000_000,
            &[
                ("MESSAGE", b"live entry"),
                ("_HOSTNAME", b"web1"),
                ("SYSLOG_IDENTIFIER", b"app"),
                ("_PID", b"10"),
            ],
        )],
    );
    let got = src.batches(1, Duration::from_millis(800)).await;
    src.stop().await;
    assert_eq!(messages(&got), ["live entry"]);
}

#[tokio::test]
async fn restarts_journalctl_and_resumes_after_the_last_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("args");
    // A journalctl that, on its n-th run, prints the entry at its start cursor again (as
    // `--cursor` does), then one new entry (cursor i=n), complains, and exits.
    let script = dir.path().join("journalctl");
    let entry = "printf '{\"__CURSOR\":\"s=1;i=%x\",\"__REALTIME_TIMESTAMP\":\"1772359200000000\",\"MESSAGE\":\"run %s\",\"SYSLOG_IDENTIFIER\":\"fake\"}\\n'";
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\nn=$(wc -l < '{log}')\n\
             if [ $n -gt 1 ]; then {entry} $((n - 1)) $((n - 1)); fi\n\
             {entry} $n $n\n\
             echo 'fake journalctl warning' >&2\n",
            log = log.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cfg = config(dir.path(), &["SYSLOG_IDENTIFIER=fake"], StartAt::Beginning);
    cfg.journalctl = script;
    let mut src = start(cfg, None);
    let got = src.batches(2, Duration::from_millis(0)).await;
    let stats = src.stop().await;
    let got = lines(&got);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].0,
        b"2026-03-01T10:00:00.000000Z - fake: run 1\n".to_vec()
    );
    assert_eq!(
        got[1].0,
        b"2026-03-01T10:00:00.000000Z - fake: run 2\n".to_vec()
    );
    let args = std::fs::read_to_string(&log).unwrap();
    let runs: Vec<&str> = args.lines().collect();
    assert!(runs.len() >= 2, "{args}");
    assert!(!runs[0].contains("cursor"), "{}", runs[0]);
    assert!(runs[0].contains("--merge"), "{}", runs[0]);
    assert!(runs[0].contains("--output=json"), "{}", runs[0]);
    assert!(runs[0].contains("--follow"), "{}", runs[0]);
    assert!(
        runs[0].contains(&format!("--directory={}", dir.path().display())),
        "{}",
        runs[0]
    );
    assert!(
        runs[0].ends_with("-- SYSLOG_IDENTIFIER=fake"),
        "{}",
        runs[0]
    );
    assert!(runs[1].contains("--cursor=s=1;i=1 "), "{}", runs[1]);
    assert!(stats.exits.load(Ordering::Relaxed) >= 1);
    assert!(stats.starts.load(Ordering::Relaxed) >= 2);
}

#[tokio::test]
async fn bad_matches_are_refused_and_a_missing_binary_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let (_stop, stop_rx) = watch::channel(false);
    let cfg = config(dir.path(), &["--file=/etc/shadow"], StartAt::End);
    let err = run(cfg, None, tx, stop_rx, Arc::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid match"), "{err}");

    let mut cfg = config(dir.path(), &[], StartAt::End);
    cfg.journalctl = dir.path().join("no-such-journalctl");
    let src = start(cfg, Some("not a cursor".into()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = src.stop().await;
    assert_eq!(stats.spawn_failures.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn reads_every_boot_and_resumes_across_a_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let boot = |b: &'static str, realtime: u64, msg: &'static [u8]| Entry {
        boot: b,
        ..entry(
            realtime,
            1_000,
            &[
                ("MESSAGE", msg),
                ("SYSLOG_IDENTIFIER", b"app"),
                ("_PID", b"10"),
            ],
        )
    };
    write_journal(
        dir.path(),
        "a.journal",
        &[
            boot("11111111111111111111111111111111", T0, b"boot one a"),
            boot(
                "11111111111111111111111111111111",
                T0 + 1_000_000,
                b"boot one b",
            ),
        ],
    );
    let mut src = start(config(dir.path(), &[], StartAt::Beginning), None);
    let first = src.batches(2, Duration::from_millis(300)).await;
    src.stop().await;
    assert_eq!(messages(&first), ["boot one a", "boot one b"]);
    let cursor = cursor_of(first.last().unwrap());

    write_journal(
        dir.path(),
        "b.journal",
        &[boot(
            "22222222222222222222222222222222",
            T0 + 100_000_000,
            b"boot two",
        )],
    );
    let mut src = start(config(dir.path(), &[], StartAt::Beginning), Some(cursor));
    let second = src.batches(1, Duration::from_millis(800)).await;
    src.stop().await;
    assert_eq!(messages(&second), ["boot two"]);
}

#[tokio::test]
async fn no_entry_is_lost_when_the_cursor_entry_no_longer_matches() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), "a.journal", &base_entries()[..2]);
    let mut src = start(config(dir.path(), &[], StartAt::Beginning), None);
    let first = src.batches(2, Duration::from_millis(300)).await;
    src.stop().await;
    // The last entry delivered is cron's.
    let cursor = cursor_of(first.last().unwrap());
    assert_eq!(first.last().unwrap().labels, unit("cron.service"));

    // Restarted with a match that excludes the cursor's entry: the next sshd entry arrives.
    write_journal(dir.path(), "b.journal", &base_entries()[3..]);
    let mut src = start(
        config(
            dir.path(),
            &["_SYSTEMD_UNIT=sshd.service"],
            StartAt::Beginning,
        ),
        Some(cursor),
    );
    let second = src.batches(1, Duration::from_millis(800)).await;
    src.stop().await;
    let got = lines(&second);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(text_of(&got[0].0).contains(" sshd[4243]: Failed password for invalid user admin "));
}

fn text_of(l: &[u8]) -> String {
    String::from_utf8_lossy(l).into_owned()
}
