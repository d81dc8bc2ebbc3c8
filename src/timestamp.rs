//! Event time from log lines.
//!
//! Correlation windows use the time written in the line, not the time we read it, so replaying
//! an old log gives the same incidents as living through it. This module recognises the
//! timestamp shapes of the logs we read: RFC 3164 syslog (`Mar  1 10:00:00`, the year inferred
//! from a reference time), RFC 3339 / RFC 5424 and ISO-like (`2026-03-01T10:00:00.123+01:00`,
//! `2026-03-01 10:00:00 UTC`, nginx's `2026/03/01 10:00:00`), the bracketed access-log form
//! (`[10/Oct/2000:13:55:36 -0700]`), Apache's error-log form (`[Sun Mar 01 10:00:00.123 2026]`)
//! and a leading epoch with fraction (Squid). It is pure: no I/O, no allocation.

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// How to read timestamps that carry no zone (RFC 3164 syslog, MySQL, nginx error log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The machine's local zone.
    Local,
    /// A fixed offset (UTC is `Fixed(0)`).
    Fixed(FixedOffset),
}

impl Zone {
    /// Parses `local`, `UTC` or an offset such as `+02:00` / `-0500`.
    pub fn parse(s: &str) -> Option<Zone> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("local") {
            return Some(Zone::Local);
        }
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return FixedOffset::east_opt(0).map(Zone::Fixed);
        }
        parse_offset(t.as_bytes()).map(|(off, _)| Zone::Fixed(off))
    }

    fn to_millis(self, naive: NaiveDateTime) -> Option<Millis> {
        match self {
            Zone::Local => Local
                .from_local_datetime(&naive)
                .earliest()
                .map(|d| d.timestamp_millis()),
            Zone::Fixed(off) => off
                .from_local_datetime(&naive)
                .earliest()
                .map(|d| d.timestamp_millis()),
        }
    }
}

/// What a line's header told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTime<'a> {
    /// Event time.
    pub millis: Millis,
    /// The host name of a syslog header, when the line has one.
    pub host: Option<&'a [u8]>,
}

/// Parses timestamps; holds the settings that are constant for one input.
#[derive(Debug, Clone, Copy)]
pub struct TimeParser {
    /// Zone for timestamps without one.
    pub zone: Zone,
    /// Reference for year inference of RFC 3164 timestamps: the file's modification time when
    /// reading a file, the current time when following live input.
    pub reference: Millis,
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

impl TimeParser {
    /// A parser with `zone` and the given reference time.
    pub fn new(zone: Zone, reference: Millis) -> TimeParser {
        TimeParser { zone, reference }
    }

    /// Finds the event time of `line`, or `None` when the line carries none we recognise.
    pub fn parse<'a>(&self, line: &'a [u8]) -> Option<LineTime<'a>> {
        // Skip a syslog priority `<13>` and an RFC 5424 version `1 `.
        let mut s = line;
        if s.first() == Some(&b'<') {
            if let Some(end) = s.iter().take(6).position(|&b| b == b'>') {
                s = &s[end + 1..];
                if s.starts_with(b"1 ") {
                    s = &s[2..];
                }
            }
        }
        if let Some((millis, rest)) = self.rfc3164(s) {
            return Some(LineTime {
                millis,
                host: syslog_host(rest),
            });
        }
        if let Some((millis, rest)) = self.iso(s) {
            return Some(LineTime {
                millis,
                host: syslog_host(rest),
            });
        }
        if let Some(millis) = self.apache_error(s) {
            return Some(LineTime { millis, host: None });
        }
        if let Some(millis) = epoch_prefix(s) {
            return Some(LineTime { millis, host: None });
        }
        // Bracketed access-log time anywhere, then an ISO time near the start (JSON logs).
        let mut from = 0;
        for _ in 0..4 {
            let Some(i) = memchr::memchr(b'[', &s[from..]) else {
                break;
            };
            if let Some(m) = clf(&s[from + i + 1..]) {
                return Some(LineTime {
                    millis: m,
                    host: None,
                });
            }
            from += i + 1;
        }
        let head = &s[..s.len().min(160)];
        let mut from = 0;
        while let Some(i) = memchr::memchr(b'-', &head[from..]) {
            let at = from + i;
            if at >= 4 {
                if let Some((m, _)) = self.iso(&s[at - 4..]) {
                    return Some(LineTime {
                        millis: m,
                        host: None,
                    });
                }
            }
            from = at + 1;
        }
        None
    }

    /// `Mar  1 10:00:00` (optionally `Mar  1 2026 10:00:00` or with fraction).
    fn rfc3164<'a>(&self, s: &'a [u8]) -> Option<(Millis, &'a [u8])> {
        if s.len() < 15 || s[3] != b' ' {
            return None;
        }
        let month = MONTHS.iter().position(|m| &s[..3] == *m)? as u32 + 1;
        let day = if s[4] == b' ' {
            digit(s[5])?
        } else {
            digit(s[4])? * 10 + digit(s[5])?
        };
        if s[6] != b' ' {
            return None;
        }
        let mut rest = &s[7..];
        let mut year = None;
        if rest.len() > 5 && rest[4] == b' ' && rest[2] != b':' {
            year = Some(num(&rest[..4])? as i32);
            rest = &rest[5..];
        }
        let (h, mi, se, ms, rest) = hms(rest)?;
        let inferred = |y: i32| {
            NaiveDate::from_ymd_opt(y, month, day)?
                .and_hms_milli_opt(h, mi, se, ms)
                .and_then(|n| self.zone.to_millis(n))
        };
        let millis = match year {
            Some(y) => inferred(y)?,
            None => {
                // The year is the reference's, unless that puts the event more than a day
                // after the reference: then it was last year (a December line read in January).
                let ref_year = DateTime::<Utc>::from_timestamp_millis(self.reference)
                    .map_or(1970, |d| d.year());
                let this = inferred(ref_year)?;
                if this > self.reference + 86_400_000 {
                    inferred(ref_year - 1)?
                } else {
                    this
                }
            }
        };
        Some((millis, rest))
    }

    /// RFC 3339 and the ISO-like forms: `2026-03-01T10:00:00(.f)?(Z|+hh:mm|+hhmm| UTC)?`,
    /// also with a space instead of `T` and nginx's `2026/03/01 10:00:00`.
    fn iso<'a>(&self, s: &'a [u8]) -> Option<(Millis, &'a [u8])> {
        if s.len() < 19 {
            return None;
        }
        let sep = s[4];
        if !(sep == b'-' || sep == b'/') || s[7] != sep || !(s[10] == b'T' || s[10] == b' ') {
            return None;
        }
        let y = num(&s[0..4])? as i32;
        let mo = num(&s[5..7])?;
        let d = num(&s[8..10])?;
        let (h, mi, se, ms, mut rest) = hms(&s[11..])?;
        let naive = NaiveDate::from_ymd_opt(y, mo, d)?.and_hms_milli_opt(h, mi, se, ms)?;
        let millis = if rest.first() == Some(&b'Z') {
            rest = &rest[1..];
            naive.and_utc().timestamp_millis()
        } else if let Some((off, n)) = parse_offset(rest) {
            rest = &rest[n..];
            off.from_local_datetime(&naive)
                .earliest()?
                .timestamp_millis()
        } else if rest.starts_with(b" UTC") || rest.starts_with(b" GMT") {
            rest = &rest[4..];
            naive.and_utc().timestamp_millis()
        } else {
            self.zone.to_millis(naive)?
        };
        Some((millis, rest))
    }

    /// Apache error log: `[Sun Mar 01 10:00:00.123456 2026]`.
    fn apache_error(&self, s: &[u8]) -> Option<Millis> {
        if s.len() < 26 || s[0] != b'[' || s[4] != b' ' || s[8] != b' ' || s[11] != b' ' {
            return None;
        }
        let month = MONTHS.iter().position(|m| &s[5..8] == *m)? as u32 + 1;
        let day = if s[9] == b' ' {
            digit(s[10])?
        } else {
            num(&s[9..11])?
        };
        let (h, mi, se, ms, rest) = hms(&s[12..])?;
        if rest.len() < 6 || rest[0] != b' ' || rest[5] != b']' {
            return None;
        }
        let y = num(&rest[1..5])? as i32;
        let naive = NaiveDate::from_ymd_opt(y, month, day)?.and_hms_milli_opt(h, mi, se, ms)?;
        self.zone.to_millis(naive)
    }
}

/// Access-log time after a `[`: `10/Oct/2000:13:55:36 -0700]` (milliseconds allowed).
fn clf(s: &[u8]) -> Option<Millis> {
    if s.len() < 20 || s[2] != b'/' || s[6] != b'/' || s[11] != b':' {
        return None;
    }
    let d = num(&s[0..2])?;
    let month = MONTHS.iter().position(|m| &s[3..6] == *m)? as u32 + 1;
    let y = num(&s[7..11])? as i32;
    let (h, mi, se, ms, rest) = hms(&s[12..])?;
    let naive = NaiveDate::from_ymd_opt(y, month, d)?.and_hms_milli_opt(h, mi, se, ms)?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    match parse_offset(rest) {
        Some((off, _)) => Some(
            off.from_local_datetime(&naive)
                .earliest()?
                .timestamp_millis(),
        ),
        None if rest.first() == Some(&b']') => Some(naive.and_utc().timestamp_millis()),
        None => None,
    }
}

/// A leading Unix epoch with a fraction, as Squid writes: `1700000000.123 `.
fn epoch_prefix(s: &[u8]) -> Option<Millis> {
    if s.len() < 14 || s[10] != b'.' {
        return None;
    }
    let secs = num(&s[..10])? as i64;
    let frac = &s[11..14];
    // A longer fraction is fine; only milliseconds are kept.
    let ms = num(frac)? as i64;
    Some(secs * 1000 + ms)
}

/// `hh:mm:ss` with an optional `.fraction` / `,fraction`; returns the rest of the input.
fn hms(s: &[u8]) -> Option<(u32, u32, u32, u32, &[u8])> {
    if s.len() < 8 || s[2] != b':' || s[5] != b':' {
        return None;
    }
    let h = num(&s[0..2])?;
    let mi = num(&s[3..5])?;
    let se = num(&s[6..8])?.min(59);
    let mut rest = &s[8..];
    let mut ms = 0;
    if matches!(rest.first(), Some(b'.') | Some(b',')) {
        let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let mut scale = 100;
        for &b in rest[1..].iter().take(digits.min(3)) {
            ms += (b - b'0') as u32 * scale;
            scale /= 10;
        }
        rest = &rest[1 + digits..];
    }
    Some((h, mi, se, ms, rest))
}

/// `+hh:mm`, `+hhmm` or `+hh` at the start of `s`; returns the offset and bytes used.
fn parse_offset(s: &[u8]) -> Option<(FixedOffset, usize)> {
    let sign = match s.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h = num(s.get(1..3)?)? as i32;
    let (m, used) = match s.get(3) {
        Some(b':') => (num(s.get(4..6)?)? as i32, 6),
        Some(b) if b.is_ascii_digit() => (num(s.get(3..5)?)? as i32, 5),
        _ => (0, 3),
    };
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).map(|o| (o, used))
}

/// The host of a syslog header: the token after the timestamp when it is followed by a
/// program tag (`prog[pid]:` or `prog:`). Other formats (PostgreSQL's `[pid]`, MySQL's thread
/// id) do not have a host there.
fn syslog_host(rest: &[u8]) -> Option<&[u8]> {
    let rest = rest.strip_prefix(b" ")?;
    let end = memchr::memchr(b' ', rest)?;
    let (host, after) = (&rest[..end], &rest[end + 1..]);
    if host.is_empty() || host.contains(&b'[') || host.ends_with(b":") {
        return None;
    }
    let tag_end = after.iter().take(64).position(|&b| b == b' ')?;
    let tag = &after[..tag_end];
    if tag.ends_with(b":") && tag.len() > 1 {
        Some(host)
    } else {
        None
    }
}

fn digit(b: u8) -> Option<u32> {
    b.is_ascii_digit().then(|| (b - b'0') as u32)
}

fn num(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let mut n: u32 = 0;
    for &b in s {
        n = n.checked_mul(10)?.checked_add(digit(b)?)?;
    }
    Some(n)
}

/// Formats milliseconds as RFC 3339 UTC (`2026-03-01T10:00:00Z`, with `.123` when not whole).
pub fn format_rfc3339(millis: Millis) -> String {
    match DateTime::<Utc>::from_timestamp_millis(millis) {
        Some(d) if millis % 1000 == 0 => d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => millis.to_string(),
    }
}

/// The current time in milliseconds.
pub fn now_millis() -> Millis {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> Zone {
        Zone::parse("UTC").unwrap()
    }

    /// Reference: 2026-03-15T00:00:00Z.
    const REF: Millis = 1_773_532_800_000;

    fn check(line: &str, expected: Option<&str>, host: Option<&str>) {
        let p = TimeParser::new(utc(), REF);
        let got = p.parse(line.as_bytes());
        assert_eq!(
            got.map(|t| format_rfc3339(t.millis)).as_deref(),
            expected,
            "time of {line:?}"
        );
        if expected.is_some() {
            assert_eq!(
                got.and_then(|t| t.host)
                    .map(|h| std::str::from_utf8(h).unwrap()),
                host,
                "host of {line:?}"
            );
        }
    }

    #[test]
    fn recognises_the_timestamp_shapes_we_read() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            (
                "Mar  1 10:00:00 web1 sshd[42]: Failed password",
                Some("2026-03-01T10:00:00Z"),
                Some("web1"),
            ),
            (
                "Mar 11 10:00:00 web1 sshd: x",
                Some("2026-03-11T10:00:00Z"),
                Some("web1"),
            ),
            (
                "<34>Mar  1 10:00:00 web1 su: x",
                Some("2026-03-01T10:00:00Z"),
                Some("web1"),
            ),
            // December seen with a March reference is last year's December.
            (
                "Dec 31 23:59:59 web1 sshd[1]: x",
                Some("2025-12-31T23:59:59Z"),
                Some("web1"),
            ),
            (
                "2026-03-01T10:00:00.123456+01:00 db1 postgres[7]: x",
                Some("2026-03-01T09:00:00.123Z"),
                Some("db1"),
            ),
            (
                "<13>1 2026-03-01T10:00:00Z host app 1 - - msg",
                Some("2026-03-01T10:00:00Z"),
                None,
            ),
            (
                "2026-03-01 10:00:00.123 UTC [1234] bob@db FATAL:  x",
                Some("2026-03-01T10:00:00.123Z"),
                None,
            ),
            (
                "2026-03-01T10:00:00.123456Z 8 [Note] [MY-010926] Access denied",
                Some("2026-03-01T10:00:00.123Z"),
                None,
            ),
            (
                "2026/03/01 10:00:00 [error] 12#12: *5 user \"bob\"",
                Some("2026-03-01T10:00:00Z"),
                None,
            ),
            (
                "203.0.113.9 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1",
                Some("2000-10-10T20:55:36Z"),
                None,
            ),
            (
                "[Sun Mar 01 10:00:00.123456 2026] [auth_basic:error] [pid 1]",
                Some("2026-03-01T10:00:00.123Z"),
                None,
            ),
            (
                "1700000000.123    0 203.0.113.9 TCP_DENIED/403",
                Some("2023-11-14T22:13:20.123Z"),
                None,
            ),
            (
                "{\"t\":{\"$date\":\"2026-03-01T10:00:00.123+00:00\"},\"s\":\"I\"}",
                Some("2026-03-01T10:00:00.123Z"),
                None,
            ),
            ("no timestamp here at all", None, None),
            ("Foo  1 10:00:00 not a month", None, None),
            ("Mar 99 10:00:00 bad day", None, None),
            ("", None, None),
            ("\u{fffd}\u{fffd} [99/Zzz/2000:1", None, None),
        ];
        for (line, want, host) in cases {
            check(line, *want, *host);
        }
    }

    #[test]
    fn zones_parse() {
        assert_eq!(Zone::parse("local"), Some(Zone::Local));
        assert_eq!(
            Zone::parse("+02:00"),
            FixedOffset::east_opt(7200).map(Zone::Fixed)
        );
        assert_eq!(
            Zone::parse("-0500"),
            FixedOffset::east_opt(-18000).map(Zone::Fixed)
        );
        assert_eq!(Zone::parse("Mars/Olympus"), None);
    }

    #[test]
    fn garbage_never_panics() {
        let p = TimeParser::new(utc(), REF);
        let mut buf = Vec::new();
        let mut x: u32 = 7;
        for len in 0..300 {
            buf.clear();
            for _ in 0..len {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                buf.push(b"0123456789:-/[] TZ+.JanMarDec<>1"[(x >> 16) as usize % 32]);
            }
            let _ = p.parse(&buf);
        }
    }
}
