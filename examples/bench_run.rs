//! End-to-end benchmark of the daemon (`sentinela run`), printing numbers:
//!
//! 1. throughput following a file that grows at full speed (the benchmark corpus's auth log
//!    appended in 1 MiB writes), full shipped pack, daemon pinned to one core;
//! 2. append-to-incident latency at moderate load (20,000 benign lines/s plus a marker line
//!    every 50 ms; the time from the marker's `write` to its incident being visible in the
//!    state file), median and p99;
//! 3. idle CPU (no writes for 10 s) and peak RSS.
//!
//! `cargo build --release --bins --examples && target/release/examples/bench_run [MB]`
//! (`scripts/bench.sh` runs it). Linux only: reads `/proc`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MARKER_DETECTOR: &str = r#"
[[detector]]
id = "bench.marker"
title = "marker {user.name}"
category = "other"
severity = "info"
patterns = ['''\bbench\[\d+\]: BENCHMARK (?P<user.name>\d+) end$''']
key = ["user.name"]
"#;

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/release/examples/bench_run -> target/release
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(port: u16, name: &str) -> f64 {
    http_get(port, "/metrics")
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Daemon {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, pin: bool) -> Daemon {
        let port = free_port();
        std::fs::write(dir.join("bench.toml"), MARKER_DETECTOR).expect("write detector");
        let cfg = format!(
            "[detectors]\ndirs = [\"bench.toml\"]\n[engine]\ntimezone = \"UTC\"\n\
             [state]\ndir = \"{dir}/state\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[source.file]]\nname = \"bench\"\ninclude = [\"{dir}/app.log\"]\nstart_at = \"beginning\"\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("sentinela.toml"), cfg).expect("write config");
        let exe = bin_dir().join("sentinela");
        let mut cmd = if pin {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(dir.join("sentinela.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sentinela (build it first: cargo build --release --bins)");
        let d = Daemon {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let start = Instant::now();
        while !http_get(port, "/readyz").contains("ready") {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "daemon not ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// utime + stime of the daemon, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or_default();
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        ticks / 100.0
    }

    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let mb: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let work = std::env::temp_dir().join(format!("sentinela-bench-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");

    // The benchmark corpus.
    let corpus = work.join("corpus");
    let ok = Command::new(bin_dir().join("sentinela-corpus"))
        .args(["--out"])
        .arg(&corpus)
        .args(["--size-mb", &mb.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("run sentinela-corpus")
        .success();
    assert!(ok, "corpus generation failed");
    let data = std::fs::read(corpus.join("auth.log")).expect("corpus auth.log");
    let lines = data.iter().filter(|&&b| b == b'\n').count();

    // 1. Throughput, daemon pinned to core 0.
    let t_dir = work.join("throughput");
    std::fs::create_dir_all(&t_dir).expect("dir");
    std::fs::write(t_dir.join("app.log"), b"").expect("log");
    let d = Daemon::start(&t_dir, true);
    let started = Instant::now();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(t_dir.join("app.log"))
        .expect("log");
    for chunk in data.chunks(1 << 20) {
        f.write_all(chunk).expect("append");
    }
    let written = started.elapsed();
    let total = data.len() as f64;
    while metric(d.port, "sentinela_bytes_total") < total {
        std::thread::sleep(Duration::from_millis(10));
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "daemon did not catch up"
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let incidents = metric(d.port, "sentinela_incidents_total");
    let rss = d.peak_rss_mb();
    d.stop();
    println!(
        "run throughput: {:.1} MB ({lines} lines) appended in {:.2}s, processed in {secs:.2}s: {:.1} MB/s, {:.0} lines/s, {incidents} incidents, peak RSS {rss:.1} MB (one core)",
        total / 1e6,
        written.as_secs_f64(),
        total / 1e6 / secs,
        lines as f64 / secs
    );

    // 2. Latency at moderate load: 20,000 benign lines/s, a marker every 50 ms.
    let l_dir = work.join("latency");
    std::fs::create_dir_all(&l_dir).expect("dir");
    std::fs::write(l_dir.join("app.log"), b"").expect("log");
    let d = Daemon::start(&l_dir, false);
    let db = rusqlite::Connection::open_with_flags(
        l_dir.join("state/state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("state db");
    let benign: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(20_000)
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(l_dir.join("app.log"))
        .expect("log");
    let markers = 200usize;
    let mut sent: Vec<Instant> = Vec::with_capacity(markers);
    let mut seen: Vec<Option<f64>> = vec![None; markers];
    let mut next_benign = 0;
    let t0 = Instant::now();
    let check = |seen: &mut Vec<Option<f64>>, sent: &[Instant]| {
        let mut st = db
            .prepare_cached("SELECT fields FROM incidents WHERE detector = 'bench.marker'")
            .expect("query");
        let rows = st.query_map([], |r| r.get::<_, String>(0)).expect("rows");
        let now = Instant::now();
        for fields in rows.flatten() {
            let v: serde_json::Value = serde_json::from_str(&fields).unwrap_or_default();
            if let Some(n) = v["user.name"]
                .as_str()
                .and_then(|s| s.parse::<usize>().ok())
            {
                if n < sent.len() && seen[n].is_none() {
                    seen[n] = Some((now - sent[n]).as_secs_f64() * 1000.0);
                }
            }
        }
    };
    for n in 0..markers {
        // 50 ms of benign traffic at 20,000 lines/s, in 5 ms slices.
        for _ in 0..10 {
            let mut buf = Vec::new();
            for _ in 0..100 {
                buf.extend_from_slice(benign[next_benign % benign.len()]);
                buf.push(b'\n');
                next_benign += 1;
            }
            f.write_all(&buf).expect("append");
            check(&mut seen, &sent);
            std::thread::sleep(Duration::from_millis(5));
        }
        sent.push(Instant::now());
        f.write_all(format!("Mar  1 10:00:00 host bench[1]: BENCHMARK {n} end\n").as_bytes())
            .expect("append");
    }
    while seen.iter().any(Option::is_none) && t0.elapsed() < Duration::from_secs(120) {
        check(&mut seen, &sent);
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut lat: Vec<f64> = seen.iter().flatten().copied().collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    println!(
        "append-to-incident latency at 20k lines/s: {} markers, median {:.1} ms, p99 {:.1} ms, max {:.1} ms (commit interval 200 ms)",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );

    let commits = metric(d.port, "sentinela_state_commits_total");
    println!(
        "  state commits: {commits}, mean {:.1} ms",
        metric(d.port, "sentinela_state_commit_seconds_sum") / commits.max(1.0) * 1000.0
    );

    // 3. Idle CPU.
    std::thread::sleep(Duration::from_secs(2));
    let c0 = d.cpu_seconds();
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let idle = (d.cpu_seconds() - c0) / w0.elapsed().as_secs_f64() * 100.0;
    println!(
        "idle CPU: {idle:.2}% of one core over 10 s (1 file followed, 200 ms commit ticks); peak RSS {:.1} MB",
        d.peak_rss_mb()
    );
    d.stop();
    let _ = std::fs::remove_dir_all(&work);
}
