//! Help desk faults through the real daemon, over minutes: the help desk is down (nothing
//! listening) for a minute while incidents and recurrences pile up, then answers with a
//! 429 storm whose `Retry-After` must be honoured, then with 500s and responses slower than
//! the timeout. Afterwards every incident has exactly one ticket and every update arrived.
//!
//! The help desk is a webhook receiver written here (the webhook kind has no search, so a
//! create is only known to have landed when it was answered 200: exactly what is counted).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DETECTOR: &str = r#"
[[detector]]
id = "t.probe"
title = "Probe from {source.address}"
category = "information-gathering"
severity = "medium"
patterns = ['''\bfw\[\d+\]: PROBE from (?P<source.address>\S+)$''']
key = ["source.address"]
"#;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// 429 with `Retry-After: 4`.
    Storm,
    /// Every third request 500, every third one slower than the timeout, the rest 200.
    Flaky,
    /// 200.
    Up,
}

/// One request the receiver saw: when, the event's action and fingerprint, and the status
/// it answered (0: no answer in time).
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    action: String,
    fingerprint: String,
    status: u16,
}

struct Receiver {
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    /// Starts listening on `port` (which nothing listened on until now).
    fn start(port: u16, mode: Mode) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("port free again");
        let mode = Arc::new(Mutex::new(mode));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (m, s) = (mode.clone(), seen.clone());
        std::thread::spawn(move || {
            let n = Arc::new(Mutex::new(0u64));
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (m, s, n) = (m.clone(), s.clone(), n.clone());
                std::thread::spawn(move || serve(conn, &m, &s, &n));
            }
        });
        Receiver { mode, seen }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, mode: &Mutex<Mode>, seen: &Mutex<Vec<Seen>>, n: &Mutex<u64>) {
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let nth = {
            let mut n = n.lock().unwrap();
            *n += 1;
            *n
        };
        let (status, delay) = match *mode.lock().unwrap() {
            Mode::Storm => (429, Duration::ZERO),
            Mode::Flaky if nth % 3 == 0 => (500, Duration::ZERO),
            Mode::Flaky if nth % 3 == 1 => (0, Duration::from_millis(2500)),
            Mode::Flaky | Mode::Up => (200, Duration::ZERO),
        };
        seen.lock().unwrap().push(Seen {
            at: Instant::now(),
            action: v["action"].as_str().unwrap_or("?").to_string(),
            fingerprint: v["fingerprint"].as_str().unwrap_or("?").to_string(),
            status,
        });
        std::thread::sleep(delay);
        let answer = match status {
            429 => "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 4\r\nContent-Length: 0\r\n\r\n",
            500 => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
            _ => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}",
        };
        if r.get_mut().write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn attack(log: &std::path::Path, addrs: &[&str]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    for a in addrs {
        writeln!(f, "Mar  1 10:00:00 gw fw[1]: PROBE from {a}").unwrap();
    }
}

fn query(db: &std::path::Path, sql: &str) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(-1)
}

#[test]
fn a_minute_down_then_a_429_storm_then_500s_and_timeouts_lose_and_duplicate_nothing() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("fw.log");
    let state = work.path().join("state");
    std::fs::write(work.path().join("det.toml"), DETECTOR).unwrap();
    std::fs::write(&log, "").unwrap();
    let cfg = work.path().join("sentinela.toml");
    std::fs::write(
        &cfg,
        format!(
            "[detectors]\nbuiltin = false\ndirs = [\"det.toml\"]\n\
             [state]\ndir = \"{}\"\n[http]\nlisten = \"\"\n[tickets]\nupdate_interval = \"1s\"\n\
             [[source.file]]\nname = \"fw\"\ninclude = [\"{}\"]\nstart_at = \"beginning\"\npoll_interval = \"200ms\"\n\
             [[helpdesk]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/events\"\n\
             timeout = \"1s\"\nrequests_per_second = 50\n",
            state.display(),
            log.display()
        ),
    )
    .unwrap();
    let daemon_log = work.path().join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sentinela"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&daemon_log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let addrs = [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
    ];
    let db = state.join("state.db");

    // Down for a minute: incidents are recorded, creates and then updates wait.
    attack(&log, &addrs);
    while query(&db, "SELECT count(*) FROM incidents") < addrs.len() as i64 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "incidents not recorded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(20));
    attack(&log, &addrs);
    while start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let queued = query(&db, "SELECT count(*) FROM outbox WHERE state = 'pending'");
    assert_eq!(
        queued,
        2 * addrs.len() as i64,
        "a create and an update each"
    );
    assert_eq!(
        query(&db, "SELECT count(*) FROM outbox WHERE state = 'blocked'"),
        0
    );

    // Up, but a 429 storm for 15 s.
    let rx = Receiver::start(port, Mode::Storm);
    let storm_start = Instant::now();
    std::thread::sleep(Duration::from_secs(15));
    rx.set(Mode::Flaky);
    std::thread::sleep(Duration::from_secs(10));
    rx.set(Mode::Up);
    let up = Instant::now();
    while query(&db, "SELECT count(*) FROM outbox WHERE state != 'done'") != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "outbox not drained: {:?}",
            rx.seen()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let drained = start.elapsed();
    let recovered = up.elapsed();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();

    let seen = rx.seen();
    let mut by_fp: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
    for s in &seen {
        by_fp.entry(&s.fingerprint).or_default().push(s);
    }
    assert_eq!(by_fp.len(), addrs.len(), "{seen:?}");
    for (fp, reqs) in &by_fp {
        let ok = |action: &str| {
            reqs.iter()
                .filter(|s| s.action == action && s.status == 200)
                .count()
        };
        // Exactly one accepted create per incident, and its update after it.
        assert_eq!(ok("create"), 1, "{fp}: {reqs:?}");
        assert_eq!(ok("update"), 1, "{fp}: {reqs:?}");
        let create = reqs
            .iter()
            .position(|s| s.action == "create" && s.status == 200);
        let first_update = reqs.iter().position(|s| s.action == "update");
        assert!(
            create < first_update,
            "{fp}: update before create: {reqs:?}"
        );
        // Retry-After honoured: after a 429, the next request for this incident waits 4 s.
        for w in reqs.windows(2) {
            if w[0].status == 429 {
                let gap = w[1].at - w[0].at;
                assert!(
                    gap >= Duration::from_millis(3900),
                    "{fp}: retried after {gap:?}"
                );
            }
        }
    }
    let storm = seen.iter().filter(|s| s.status == 429).count();
    // The storm was met (after a minute down, backoff has grown to tens of seconds, so not
    // every incident tries during it), and never hammered: 4 incidents over 15 s, one
    // request each every 4 s at most.
    assert!(
        (1..=4 * 5).contains(&storm),
        "{storm} requests in the storm"
    );
    assert_eq!(
        query(&db, "SELECT sum(count) FROM incidents"),
        2 * addrs.len() as i64
    );
    eprintln!(
        "outage: down 60 s, storm {storm} x 429 in 15 s, {} requests in all, drained {:.0} s after the help desk came back, {:.0} s after it stopped failing",
        seen.len(),
        (drained - (storm_start - start)).as_secs_f64(),
        recovered.as_secs_f64()
    );
    // Recovery does not wait out minutes of backoff: the first delivery that succeeds after
    // failures makes the waiting operations due.
    assert!(
        recovered < Duration::from_secs(45),
        "drained {recovered:?} after recovery"
    );
}
