//! Test support for help desk contract tests: a fake HTTP server that records every request
//! and answers from a script, fixtures, and the replay of the failure answers every adapter
//! must classify. Each contract test file includes it with `mod support;`.

#![allow(dead_code)] // each test file uses a different part

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use sentinela::policy::Priority;
use sentinela::ticket::adapter::{http_client, Adapter, HelpdeskConfig};
use sentinela::ticket::{DeliveryError, TicketContent, TicketRef, TicketStatus, UpdateKind};

// ---------------------------------------------------------------------------------------------
// The fake server
// ---------------------------------------------------------------------------------------------

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// Query parameters, percent-decoded.
    pub fn query(&self) -> BTreeMap<String, String> {
        let Some((_, q)) = self.target.split_once('?') else {
            return BTreeMap::new();
        };
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the request body is JSON")
    }
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Reads the request, then closes the connection without answering.
    Close,
    /// Reads the request, then resets the connection (RST).
    Reset,
    /// Answers after a delay.
    Slow(Duration, Box<Reply>),
}

pub fn reply(status: u16, body: Value) -> Reply {
    Reply::Http {
        status,
        headers: vec![(
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: body.to_string(),
    }
}

pub fn reply_with(status: u16, headers: &[(&str, &str)], body: Value) -> Reply {
    let Reply::Http {
        headers: mut h,
        body,
        ..
    } = reply(status, body)
    else {
        unreachable!()
    };
    h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Reply::Http {
        status,
        headers: h,
        body,
    }
}

pub struct Fake {
    pub base: String,
    pub log: Arc<Mutex<Vec<Recorded>>>,
}

impl Fake {
    /// A server answering the scripted replies in order (then 599 for anything more).
    pub async fn start(script: Vec<Reply>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let l = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (l, s) = (l.clone(), script.clone());
                tokio::spawn(async move { serve(stream, l, s).await });
            }
        });
        Fake { base, log }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }
}

pub async fn serve(
    mut stream: TcpStream,
    log: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    log.lock().unwrap().push(Recorded {
        method,
        target,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    });
    let next = script.lock().unwrap().pop_front();
    let mut r = next.unwrap_or_else(|| reply(599, json!({"message": "unscripted request"})));
    loop {
        match r {
            Reply::Slow(d, inner) => {
                tokio::time::sleep(d).await;
                r = *inner;
            }
            Reply::Close => return,
            Reply::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
            Reply::Http {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} Scripted\r\n");
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ));
                let _ = stream.write_all(out.as_bytes()).await;
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

pub const TOKEN: &str = "1-14-0123456789abcdef0123456789abcdef";
pub const HMAC_KEY: &str = "whsec-test-key";
pub const BEARER: &str = "bearer-test-token";
/// The base URL in the `_url` links of scripted RT answers (never followed).
pub const RT_BASE: &str = "http://127.0.0.1:8080";
pub const FP: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

pub fn config(text: &str) -> HelpdeskConfig {
    #[derive(serde::Deserialize)]
    struct File {
        helpdesk: Vec<HelpdeskConfig>,
    }
    let mut f: File = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    f.helpdesk.remove(0)
}

/// Secrets in files in a temporary directory (kept alive by the returned guard).
pub struct Secrets {
    pub dir: tempfile::TempDir,
}

impl Secrets {
    pub fn new() -> Secrets {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        std::fs::write(dir.path().join("hmac"), format!("{HMAC_KEY}\n")).unwrap();
        std::fs::write(dir.path().join("bearer"), format!("{BEARER}\n")).unwrap();
        Secrets { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

pub fn rt_adapter(s: &Secrets, base: &str, extra: &str) -> Adapter {
    let text = format!(
        "[[helpdesk]]\nname = \"rt\"\nkind = \"rt\"\nurl = {base:?}\ntoken_file = {:?}\n\
         queue = \"Security\"\ntimeout = \"1s\"\nrequests_per_second = 100\n{extra}",
        s.path("token")
    );
    Adapter::from_config(&config(&text)).unwrap()
}

pub fn webhook_adapter(s: &Secrets, base: &str, extra: &str) -> Adapter {
    let text = format!(
        "[[helpdesk]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{base}/hooks/sentinela\"\n\
         token_file = {:?}\nhmac_secret_file = {:?}\ntimeout = \"1s\"\n\
         requests_per_second = 100\nheaders = {{ X-Team = \"secops\" }}\n\
         priority_map = {{ P1 = \"urgent\", P2 = \"high\" }}\n{extra}",
        s.path("bearer"),
        s.path("hmac")
    );
    Adapter::from_config(&config(&text)).unwrap()
}

pub fn content() -> TicketContent {
    TicketContent {
        fingerprint: FP.into(),
        detector: "ssh.bruteforce".into(),
        title: "SSH brute force from 203.0.113.9 \"root\"\r\nInjected: header".into(),
        priority: Priority::P2,
        severity: "high".into(),
        category: "authentication".into(),
        criticality: "high".into(),
        count: 12,
        first_seen: "2026-11-29T04:00:00Z".into(),
        last_seen: "2026-11-29T04:05:00Z".into(),
        source: "/var/log/auth.log".into(),
        fields: BTreeMap::from([
            ("source.ip".to_string(), "203.0.113.9".to_string()),
            ("user.name".to_string(), "root".to_string()),
        ]),
        evidence: vec!["Failed password for root from 203.0.113.9 port 22 ssh2".into()],
        description: "Many failed SSH logins from one address.".into(),
        response: "Block the address.".into(),
        references: vec!["T1110".into()],
        previous_ticket: None,
    }
}

/// An RT ticket as `GET /REST/2.0/ticket/ID` shows it (trimmed from RT 5.0.3's answer).
pub fn rt_ticket(base: &str, id: u64, status: &str, fp: &[&str], severity: &[&str]) -> Value {
    json!({
        "id": id,
        "Type": "ticket",
        "Status": status,
        "Subject": "SSH brute force",
        "Priority": "70",
        "Queue": {"id": "3", "type": "queue", "_url": format!("{base}/REST/2.0/queue/3")},
        "CustomFields": [
            {"id": "3", "name": "Severity", "type": "customfield",
             "_url": format!("{base}/REST/2.0/customfield/3"), "values": severity},
            {"id": "2", "name": "SentinelaFingerprint", "type": "customfield",
             "_url": format!("{base}/REST/2.0/customfield/2"), "values": fp},
        ],
    })
}

pub fn rt_created(base: &str, id: u64) -> Reply {
    reply_with(
        201,
        &[("Location", &format!("/REST/2.0/ticket/{id}"))],
        json!({"id": id.to_string(), "type": "ticket", "_url": format!("{base}/REST/2.0/ticket/{id}")}),
    )
}

pub fn blocked_message(r: Result<impl std::fmt::Debug, DeliveryError>) -> String {
    match r {
        Err(DeliveryError::Blocked { message }) => message,
        other => panic!("expected Blocked, got {other:?}"),
    }
}

pub fn retry_after(r: Result<impl std::fmt::Debug, DeliveryError>) -> Option<Duration> {
    match r {
        Err(DeliveryError::Retry { retry_after, .. }) => retry_after,
        other => panic!("expected Retry, got {other:?}"),
    }
}

pub fn assert_rt_auth(r: &Recorded) {
    assert_eq!(
        r.header("Authorization"),
        Some(format!("token {TOKEN}").as_str())
    );
    assert_identified(r);
}

/// Checks the headers every request carries: who we are and what we accept.
pub fn assert_identified(r: &Recorded) {
    assert_eq!(r.header("Accept"), Some("application/json"));
    assert!(r
        .header("User-Agent")
        .unwrap_or("")
        .starts_with("sentinela/"));
}

/// [`assert_identified`], and a JSON `Content-Type` exactly when there is a body.
pub fn assert_json_headers(r: &Recorded) {
    assert_identified(r);
    if r.body.is_empty() {
        assert_eq!(r.header("Content-Type"), None);
    } else {
        assert_eq!(r.header("Content-Type"), Some("application/json"));
    }
}

/// Base64 (RFC 4648), written here independently of the adapter's.
pub fn b64(bytes: &[u8]) -> String {
    let abc = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let idx = [
            b[0] >> 2,
            ((b[0] & 3) << 4) | (b[1] >> 4),
            ((b[1] & 15) << 2) | (b[2] >> 6),
            b[2] & 63,
        ];
        for (i, x) in idx.iter().enumerate() {
            out.push(if i <= chunk.len() {
                abc[*x as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// Checks the outcome of a help desk check: `Ok` when `want` is `None`, else `Blocked` with a
/// message containing `want`.
pub fn assert_ok_or_blocked(r: Result<(), DeliveryError>, want: Option<&str>) {
    match want {
        None => r.unwrap(),
        Some(w) => {
            let m = blocked_message(r);
            assert!(m.contains(w), "got: {m}\nwant: {w}");
        }
    }
}

/// Takes `a` through one ticket's life against `fake` (scripted for it): no open ticket yet,
/// the create (with an HTML body) answering ticket `ticket`, its status (open), an escalation
/// comment, and the ticket found again; the requests, method and path, must be `requests`.
pub async fn round_trip(a: &Adapter, fake: &Fake, ticket: &str, requests: &[(&str, &str)]) {
    let client = http_client().unwrap();
    let c = content();
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    let t = a.create(&client, &c, "<p>body</p>").await.unwrap();
    assert_eq!(t, TicketRef(ticket.into()));
    assert_eq!(a.status(&client, &t).await.unwrap(), TicketStatus::Open);
    a.comment(&client, &t, &c, UpdateKind::Escalation, "<p>raised</p>")
        .await
        .unwrap();
    assert_eq!(a.find_open(&client, FP).await.unwrap(), Some(t));
    let seen: Vec<(String, String)> = fake
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path().to_string()))
        .collect();
    let want: Vec<(String, String)> = requests
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(seen, want);
}

#[derive(Debug, PartialEq)]
pub enum Want {
    Blocked(&'static str),
    Retry(Option<Duration>),
}

pub fn failure_cases() -> Vec<(&'static str, Reply, Want)> {
    vec![
        (
            "validation error",
            reply(
                400,
                json!({"message": "Could not create ticket. Queue not set"}),
            ),
            Want::Blocked("HTTP 400 Bad Request: Could not create ticket. Queue not set"),
        ),
        (
            "bad token",
            reply(401, json!({"message": "Unauthorized"})),
            Want::Blocked("HTTP 401 Unauthorized: Unauthorized"),
        ),
        (
            "no rights",
            reply(
                403,
                json!({"message": "No permission to create tickets in the queue 'Security'"}),
            ),
            Want::Blocked("No permission to create tickets in the queue 'Security'"),
        ),
        (
            "not found",
            reply(404, json!({"message": "Not Found"})),
            Want::Blocked("HTTP 404 Not Found"),
        ),
        (
            "unsupported media type",
            reply(415, json!({"message": "Unsupported Media Type"})),
            Want::Blocked("HTTP 415 Unsupported Media Type"),
        ),
        (
            "redirect",
            reply_with(302, &[("Location", "https://sso.example/login")], json!({})),
            Want::Blocked("redirect to https://sso.example/login"),
        ),
        (
            "rate limited",
            reply_with(
                429,
                &[("Retry-After", "7")],
                json!({"message": "slow down"}),
            ),
            Want::Retry(Some(Duration::from_secs(7))),
        ),
        (
            "unavailable",
            reply_with(503, &[("Retry-After", "120")], json!({})),
            Want::Retry(Some(Duration::from_secs(120))),
        ),
        (
            "server error",
            Reply::Http {
                status: 500,
                headers: vec![],
                body: "<html><title>Internal Server Error</title></html>".into(),
            },
            Want::Retry(None),
        ),
        ("connection closed", Reply::Close, Want::Retry(None)),
        ("connection reset", Reply::Reset, Want::Retry(None)),
        (
            "slower than the timeout",
            Reply::Slow(
                Duration::from_secs(3),
                Box::new(reply(201, json!({"id": "1"}))),
            ),
            Want::Retry(None),
        ),
    ]
}

/// Replays [`failure_cases`] to `create`, each from a fresh server: the error must name the
/// help desk and the operation, never show a secret, and be classified as documented, with no
/// automatic retry.
pub async fn replay_failures(make: impl Fn(&str) -> Adapter) {
    replay_failures_after(Vec::new(), make).await
}

/// Like [`replay_failures`] for help desks that make requests before the create (GLPI opens a
/// session): `before` answers them.
pub async fn replay_failures_after(before: Vec<Reply>, make: impl Fn(&str) -> Adapter) {
    for (what, r, want) in failure_cases() {
        let mut script = before.clone();
        script.push(r);
        let server = Fake::start(script).await;
        let a = make(&server.base);
        let started = std::time::Instant::now();
        let got = a.create(&http_client().unwrap(), &content(), "body").await;
        let msg = match &got {
            Err(DeliveryError::Blocked { message }) | Err(DeliveryError::Retry { message, .. }) => {
                message.clone()
            }
            Ok(t) => panic!("{what}: expected a failure, got {t:?}"),
        };
        assert!(
            msg.starts_with(&format!("helpdesk {:?}: create ticket: ", a.name())),
            "{what}: {msg}"
        );
        assert!(
            !msg.contains(TOKEN) && !msg.contains(BEARER),
            "{what}: {msg}"
        );
        match want {
            Want::Blocked(text) => {
                let m = blocked_message(got);
                assert!(m.contains(text), "{what}: {m}");
            }
            Want::Retry(after) => {
                assert_eq!(retry_after(got), after, "{what}: {msg}");
            }
        }
        if what == "slower than the timeout" {
            assert!(started.elapsed() < Duration::from_millis(2500), "{what}");
        }
        assert_eq!(
            server.requests().len(),
            before.len() + 1,
            "{what}: no automatic retry"
        );
    }
}
