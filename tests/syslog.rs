//! The syslog source over real sockets, fed by util-linux `logger` and by hand-made frames.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use sentinela::config::{Config, SyslogSourceConfig};
use sentinela::engine::{Engine, Input};
use sentinela::source::syslog::{bind, SyslogError, SyslogStats};
use sentinela::source::Batch;
use sentinela::timestamp::{now_millis, TimeParser, Zone};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

fn source(toml: &str) -> SyslogSourceConfig {
    let cfg = Config::parse(Path::new("t.toml"), toml).expect("test config parses");
    cfg.file.sources.syslog[0].clone()
}

struct Running {
    rx: mpsc::Receiver<Batch>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<SyslogStats>,
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    /// Lines received but not yet taken.
    pending: Vec<String>,
}

async fn start(toml: &str, idle: Option<Duration>) -> Running {
    let stats = Arc::new(SyslogStats::default());
    let mut listener = bind(&source(toml), stats.clone()).await.unwrap();
    if let Some(idle) = idle {
        listener.set_idle_timeout(idle);
    }
    let (udp, tcp) = (listener.udp_addr(), listener.tcp_addr());
    let (tx, rx) = mpsc::channel(64);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(listener.run(tx, stop_rx));
    Running {
        rx,
        stop,
        task,
        stats,
        udp,
        tcp,
        pending: Vec::new(),
    }
}

impl Running {
    /// The next `n` lines (without their `\n`), waiting at most 10 s.
    async fn lines(&mut self, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.pending.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(b)) => {
                    assert_eq!(b.stream, "syslog:t");
                    assert_eq!(b.name, "syslog:t");
                    assert!(b.position.is_none());
                    assert!(b.labels.is_empty());
                    let text = String::from_utf8_lossy(&b.data).into_owned();
                    assert!(text.ends_with('\n'));
                    let lines: Vec<String> = text.lines().map(String::from).collect();
                    assert_eq!(lines.len() as u64, b.lines);
                    self.pending.extend(lines);
                }
                _ => panic!("timed out waiting for {n} lines, got {:?}", self.pending),
            }
        }
        self.pending.drain(..n).collect()
    }

    async fn stop(self) -> Arc<SyslogStats> {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("listener stops promptly")
            .unwrap();
        self.stats
    }
}

async fn logger(args: &[&str]) {
    let out = tokio::process::Command::new("logger")
        .args(args)
        .output()
        .await
        .expect("util-linux logger is installed");
    assert!(
        out.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Asserts `ts` is an RFC 3339 time within a minute of now.
fn recent(ts: &str) {
    let t = chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap_or_else(|e| panic!("{ts:?} is not RFC 3339: {e}"));
    let age = (chrono::Utc::now().timestamp_millis() - t.timestamp_millis()).abs();
    assert!(age < 60_000, "{ts} is not recent");
}

const BOTH: &str =
    "[[source.syslog]]\nname = \"t\"\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n";

#[tokio::test]
async fn logger_messages_in_both_formats_over_udp_and_tcp() {
    let mut src = start(BOTH, None).await;
    let udp = src.udp.unwrap().port().to_string();
    let tcp = src.tcp.unwrap().port().to_string();
    let host = hostname();
    let short = host.split('.').next().unwrap().to_string();
    let server = ["--server", "127.0.0.1", "--port"];

    // RFC 5424 over UDP: TIMESTAMP HOST APP[PROCID]: MSG, the sender's RFC 3339 time kept.
    logger(
        &[
            &server[..],
            &[
                &udp,
                "--udp",
                "--rfc5424",
                "-t",
                "sshd",
                "--id=4242",
                "-p",
                "auth.info",
                "Failed password for root from 203.0.113.9 port 52214 ssh2",
            ],
        ]
        .concat(),
    )
    .await;
    let l = src.lines(1).await.remove(0);
    let re = Regex::new(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d) (\S+) sshd\[4242\]: Failed password for root from 203\.0\.113\.9 port 52214 ssh2$").unwrap();
    let c = re.captures(&l).unwrap_or_else(|| panic!("{l:?}"));
    recent(&c[1]);
    assert_eq!(&c[2], host);
    let sshd_line = l.clone();

    // RFC 3164 over UDP: kept as sent, PRI removed.
    logger(
        &[
            &server[..],
            &[
                &udp,
                "--udp",
                "--rfc3164",
                "-t",
                "sshd",
                "--id=4243",
                "Failed password 3164",
            ],
        ]
        .concat(),
    )
    .await;
    let l = src.lines(1).await.remove(0);
    let re = Regex::new(
        r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (\S+) sshd\[4243\]: Failed password 3164$",
    )
    .unwrap();
    let c = re.captures(&l).unwrap_or_else(|| panic!("{l:?}"));
    assert_eq!(&c[1], short);

    // RFC 5424 over TCP with octet counting, structured data with an escaped ']', and a
    // newline inside the message: one line, structured data and MSGID dropped.
    logger(
        &[
            &server[..],
            &[
                &tcp,
                "--tcp",
                "--rfc5424",
                "--octet-count",
                "-t",
                "app",
                "--msgid",
                "ID1",
                "--sd-id",
                "x@1",
                "--sd-param",
                "a=\"b\\]c\"",
                "line one\nline two",
            ],
        ]
        .concat(),
    )
    .await;
    let l = src.lines(1).await.remove(0);
    let re = Regex::new(r"^(\S+) (\S+) app: line one line two$").unwrap();
    let c = re.captures(&l).unwrap_or_else(|| panic!("{l:?}"));
    recent(&c[1]);
    assert_eq!(&c[2], host);

    // RFC 3164 over TCP, newline-terminated frames, several in one connection.
    let mut child = tokio::process::Command::new("logger")
        .args([&server[..], &[&tcp, "--tcp", "--rfc3164", "-t", "app"]].concat())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first\nsecond\n").await.unwrap();
    drop(stdin);
    assert!(child.wait().await.unwrap().success());
    let ls = src.lines(2).await;
    for (l, msg) in ls.iter().zip(["first", "second"]) {
        let re = Regex::new(&format!(
            r"^[A-Z][a-z]{{2}} [ \d]\d \d\d:\d\d:\d\d {} app: {msg}$",
            regex::escape(&short)
        ))
        .unwrap();
        assert!(re.is_match(l), "{l:?}");
    }

    // RFC 5424 with nil timestamp and host: receive time (UTC) and the peer address.
    logger(
        &[
            &server[..],
            &[
                &tcp,
                "--tcp",
                "--rfc5424=notime,nohost",
                "-t",
                "app",
                "nil fields",
            ],
        ]
        .concat(),
    )
    .await;
    let l = src.lines(1).await.remove(0);
    let re = Regex::new(r"^(\S+Z) 127\.0\.0\.1 app: nil fields$").unwrap();
    let c = re.captures(&l).unwrap_or_else(|| panic!("{l:?}"));
    recent(&c[1]);

    let stats = src.stop().await;
    assert_eq!(stats.rfc5424.load(Ordering::Relaxed), 3);
    assert_eq!(stats.rfc3164.load(Ordering::Relaxed), 3);
    assert_eq!(stats.no_pri.load(Ordering::Relaxed), 0);
    assert_eq!(stats.messages.load(Ordering::Relaxed), 6);

    // The shipped sshd detector reads the reshaped RFC 5424 line.
    let built = Config::default().build().unwrap();
    let mut engine = Engine::new(built, Config::default().file.engine.clone());
    let mut input = Input::new("syslog:t", TimeParser::new(Zone::Local, now_millis()));
    let mut hits = Vec::new();
    engine.process_block(
        format!("{sshd_line}\n").as_bytes(),
        &mut input,
        false,
        |e, _, h| {
            hits.push((
                e.detectors.detectors[h.detector].id.clone(),
                h.fields.clone(),
            ))
        },
    );
    let (_, fields) = hits
        .iter()
        .find(|(id, _)| id == "ssh.password-failure")
        .unwrap_or_else(|| panic!("{hits:?}"));
    let get = |k: &str| fields.get(k).map(String::from);
    assert_eq!(get("source.address").as_deref(), Some("203.0.113.9"));
    assert_eq!(get("process.pid").as_deref(), Some("4242"));
    assert_eq!(get("host.name"), Some(host));
}

#[tokio::test]
async fn tcp_framing_is_detected_per_frame_and_long_frames_are_cut() {
    let toml = "[[source.syslog]]\nname = \"t\"\ntcp = \"127.0.0.1:0\"\nmax_message_bytes = 100\n";
    let mut src = start(toml, None).await;
    let mut c = TcpStream::connect(src.tcp.unwrap()).await.unwrap();
    let framed = |m: &[u8]| [format!("{} ", m.len()).as_bytes(), m].concat();
    let mut input = Vec::new();
    input.extend(framed(
        b"<13>1 2026-03-01T10:00:00Z web1 app 1 - - first\nsecond",
    ));
    input.extend(b"<13>Mar  1 10:00:00 web1 app[2]: newline framed\n");
    let long = format!(
        "<13>1 2026-03-01T10:00:00Z web1 app 3 - - {}",
        "x".repeat(300)
    );
    input.extend(framed(long.as_bytes()));
    input.extend(framed(b"<13>Mar  1 10:00:00 sshd[4]: no host"));
    input.extend(format!("<13>Mar  1 10:00:00 web1 app[5]: {}\n", "y".repeat(300)).as_bytes());
    input.extend(b"\n<13>Mar  1 10:00:00 web1 app[6]: after the long ones\n");
    input.extend(b"<13>Mar  1 10:00:00 web1 app[7]: unterminated at close");
    // Byte by byte first, to exercise frames split over reads.
    let (head, tail) = input.split_at(60);
    for b in head {
        c.write_all(std::slice::from_ref(b)).await.unwrap();
        c.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    c.write_all(tail).await.unwrap();
    c.shutdown().await.unwrap();
    let got = src.lines(7).await;
    let want = [
        "2026-03-01T10:00:00Z web1 app[1]: first second".to_string(),
        "Mar  1 10:00:00 web1 app[2]: newline framed".to_string(),
        // Cut to 100 bytes of message.
        format!("2026-03-01T10:00:00Z web1 app[3]: {}", "x".repeat(100 - 42)),
        "Mar  1 10:00:00 127.0.0.1 sshd[4]: no host".to_string(),
        format!("Mar  1 10:00:00 web1 app[5]: {}", "y".repeat(100 - 33)),
        "Mar  1 10:00:00 web1 app[6]: after the long ones".to_string(),
        "Mar  1 10:00:00 web1 app[7]: unterminated at close".to_string(),
    ];
    assert_eq!(got, want);
    let stats = src.stop().await;
    assert_eq!(stats.truncated.load(Ordering::Relaxed), 2);
    assert_eq!(stats.tcp_frames.load(Ordering::Relaxed), 7);
}

/// Deterministic binary garbage that does not start with '<'.
fn garbage(i: u32) -> Vec<u8> {
    let mut x = i.wrapping_mul(2_654_435_761).wrapping_add(1);
    let len = 1 + (x % 300) as usize;
    let mut v = Vec::with_capacity(len);
    v.push(0xff);
    for _ in 1..len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v
}

#[tokio::test]
async fn garbage_flood_is_counted_and_good_messages_still_arrive() {
    let mut src = start(BOTH, None).await;
    let udp_addr = src.udp.unwrap();
    let tcp_addr = src.tcp.unwrap();
    let sender = tokio::spawn(async move {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut tcp = TcpStream::connect(tcp_addr).await.unwrap();
        for i in 0..10_000u32 {
            sock.send_to(&garbage(i), udp_addr).await.unwrap();
            if i % 1000 == 999 {
                let m = format!("<38>Mar  1 10:00:00 web1 sshd[{i}]: good {i}\n");
                tcp.write_all(m.as_bytes()).await.unwrap();
            }
            if i % 20 == 0 {
                // Let the receiver run (the test runtime has one thread).
                tokio::task::yield_now().await;
            }
        }
        tcp.shutdown().await.unwrap();
        // A good datagram after the flood: the UDP side still works.
        sock.send_to(b"<13>Mar  1 10:00:00 web1 app: after flood", udp_addr)
            .await
            .unwrap();
    });
    let mut good = Vec::new();
    let mut garbage_lines = 0u64;
    let mut after = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while good.len() < 10 || !after {
        let b = tokio::time::timeout_at(deadline, src.rx.recv())
            .await
            .expect("good messages arrive")
            .unwrap();
        assert_eq!(
            memchr::memchr_iter(b'\n', &b.data).count() as u64,
            b.lines,
            "one line per message"
        );
        for l in b.data.split(|&c| c == b'\n').take(b.lines as usize) {
            if l.starts_with(b"Mar  1 10:00:00 web1 sshd[") {
                good.push(String::from_utf8_lossy(l).into_owned());
            } else if l == b"Mar  1 10:00:00 web1 app: after flood" {
                after = true;
            } else {
                // Receive time, peer, then the raw bytes.
                assert!(l.windows(11).any(|w| w == b" 127.0.0.1 "), "{l:?}");
                garbage_lines += 1;
            }
        }
    }
    sender.await.unwrap();
    let want: Vec<String> = (1..=10)
        .map(|k| {
            let i = k * 1000 - 1;
            format!("Mar  1 10:00:00 web1 sshd[{i}]: good {i}")
        })
        .collect();
    assert_eq!(good, want);
    let stats = src.stop().await;
    let no_pri = stats.no_pri.load(Ordering::Relaxed);
    let datagrams = stats.udp_datagrams.load(Ordering::Relaxed);
    // Every garbage datagram that reached the socket was counted and delivered; loopback UDP
    // rarely drops, but the kernel may when its buffer fills.
    assert_eq!(garbage_lines, no_pri);
    assert_eq!(datagrams, no_pri + 1);
    assert!(
        no_pri >= 9_000,
        "only {no_pri} of 10000 garbage datagrams arrived"
    );
    assert_eq!(stats.rfc3164.load(Ordering::Relaxed), 11);
}

#[tokio::test]
async fn connections_are_bounded_and_idle_ones_closed() {
    let toml = "[[source.syslog]]\nname = \"t\"\ntcp = \"127.0.0.1:0\"\nmax_connections = 2\n";
    let mut src = start(toml, Some(Duration::from_millis(1500))).await;
    let addr = src.tcp.unwrap();
    let mut held = Vec::new();
    for i in 0..2 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(format!("<13>Mar  1 10:00:00 web1 app: conn {i}\n").as_bytes())
            .await
            .unwrap();
        held.push(c);
    }
    assert_eq!(src.lines(2).await.len(), 2);
    assert_eq!(src.stats.connections_open.load(Ordering::Relaxed), 2);

    // A third connection is closed at once.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(1), extra.read(&mut buf))
        .await
        .expect("the extra connection is closed, not left hanging");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert_eq!(src.stats.connections_rejected.load(Ordering::Relaxed), 1);

    // The held connections are closed once idle, which frees their slots.
    for c in &mut held {
        let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("idle connection closed");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }
    assert_eq!(src.stats.connections_timed_out.load(Ordering::Relaxed), 2);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(src.stats.connections_open.load(Ordering::Relaxed), 0);
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"<13>Mar  1 10:00:00 web1 app: again\n")
        .await
        .unwrap();
    assert_eq!(src.lines(1).await, ["Mar  1 10:00:00 web1 app: again"]);
    let stats = src.stop().await;
    assert_eq!(stats.connections_accepted.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn bad_addresses_are_reported() {
    let stats = Arc::new(SyslogStats::default());
    let err = bind(&source("[[source.syslog]]\nname = \"t\"\n"), stats.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, SyslogError::NoListener { .. }), "{err}");
    let err = bind(
        &source("[[source.syslog]]\nname = \"t\"\nudp = \"example.com:514\"\n"),
        stats.clone(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("invalid udp address"), "{err}");
    // A bare port listens on loopback.
    let l = bind(
        &source("[[source.syslog]]\nname = \"t\"\ntcp = \"0\"\n"),
        stats,
    )
    .await
    .unwrap();
    assert!(l.tcp_addr().unwrap().ip().is_loopback());
}
