//! Incidents: what a ticket will be about.
//!
//! An incident is identified by its fingerprint, a stable hash of the detector id and the key
//! values, so the same attacker hitting the same detector is one incident whether it is seen
//! by one process or another, today or after a restart. Evidence keeps the first and the last
//! few lines, each cut to a maximum length: bounded, however long the attack.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::detector::{Category, Severity};
use crate::policy::{Criticality, Priority};
use crate::timestamp::{format_rfc3339, Millis};

/// Stable fingerprint of (detector id, key field names and values): 32 hex digits.
pub fn fingerprint(detector: &str, key: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    h.update(detector.as_bytes());
    for (k, v) in key {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([b'=']);
        h.update(v.as_bytes());
    }
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// The first and last lines of an incident, bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The first lines, up to the cap.
    pub first: Vec<String>,
    /// The most recent lines after the first ones, up to the cap.
    pub last: VecDeque<String>,
    /// Lines seen but not kept.
    pub omitted: u64,
    cap: usize,
}

impl Evidence {
    /// Empty evidence keeping `cap` first and `cap` last lines.
    pub fn new(cap: usize) -> Evidence {
        Evidence {
            cap: cap.max(1),
            ..Evidence::default()
        }
    }

    /// Rebuilds evidence from stored parts.
    pub fn from_parts(
        first: Vec<String>,
        last: VecDeque<String>,
        omitted: u64,
        cap: usize,
    ) -> Evidence {
        Evidence {
            first,
            last,
            omitted,
            cap: cap.max(1),
        }
    }

    /// How many first and last lines are kept.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Adds a line.
    pub fn push(&mut self, line: String) {
        if self.first.len() < self.cap {
            self.first.push(line);
            return;
        }
        self.last.push_back(line);
        if self.last.len() > self.cap {
            self.last.pop_front();
            self.omitted += 1;
        }
    }

    /// Adds every line `later` holds (its first lines, then its last ones), counting the
    /// lines it left out: the evidence of an incident continued after it was retired.
    pub fn extend_from(&mut self, later: &Evidence) {
        for l in &later.first {
            self.push(l.clone());
        }
        if later.omitted > 0 {
            // Lines `later` left out fall between its first and last lines: here they are
            // older than the last lines pushed below, so they count as omitted.
            self.omitted += later.omitted;
        }
        for l in &later.last {
            self.push(l.clone());
        }
    }

    /// All kept lines in order, with a marker where lines were left out.
    pub fn lines(&self) -> Vec<String> {
        let mut out = self.first.clone();
        if self.omitted > 0 {
            out.push(format!("[... {} more lines ...]", self.omitted));
        }
        out.extend(self.last.iter().cloned());
        out
    }
}

/// Cuts a log line to `max` bytes (on a character boundary) for evidence, converting invalid
/// UTF-8 lossily and marking the cut.
pub fn evidence_line(line: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(line);
    if s.len() <= max {
        return s.into_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}[...]", &s[..end])
}

/// One incident.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    /// Stable id: detector + key values.
    pub fingerprint: String,
    /// Detector id.
    pub detector: String,
    /// Rendered title.
    pub title: String,
    /// Taxonomy class.
    pub category: Category,
    /// Detector severity.
    pub severity: Severity,
    /// Criticality of the asset it happened on.
    pub criticality: Criticality,
    /// Priority from the matrix.
    pub priority: Priority,
    /// Hits counted: those that opened it plus every recurrence.
    pub count: u64,
    /// Event time of the first counted hit.
    #[serde(serialize_with = "ser_time")]
    pub first_seen: Millis,
    /// Event time of the latest hit.
    #[serde(serialize_with = "ser_time")]
    pub last_seen: Millis,
    /// Key fields and the other fields of the hit that opened it (ECS names).
    pub fields: BTreeMap<String, String>,
    /// The key field names, in the detector's order.
    pub key: Vec<String>,
    /// Where it was read (file path, `-` for stdin, or a source name).
    pub source: String,
    /// Kept lines.
    #[serde(serialize_with = "ser_evidence")]
    pub evidence: Evidence,
}

fn ser_time<S: serde::Serializer>(t: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*t))
}

fn ser_evidence<S: serde::Serializer>(e: &Evidence, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(e.lines())
}

impl Incident {
    /// Adds a recurrence.
    pub fn recur(&mut self, time: Millis, line: String) {
        self.count += 1;
        self.first_seen = self.first_seen.min(time);
        self.last_seen = self.last_seen.max(time);
        self.evidence.push(line);
    }
}

/// Renders a `{field}` title template; a missing field shows as `?`.
pub fn render_title(template: &str, fields: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                out.push_str(fields.get(name).map_or("?", String::as_str));
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_separate_fields() {
        let k = |a: &str, b: &str| {
            vec![
                ("a".to_string(), a.to_string()),
                ("b".to_string(), b.to_string()),
            ]
        };
        assert_eq!(
            fingerprint("d.x", &k("1", "2")),
            fingerprint("d.x", &k("1", "2"))
        );
        assert_ne!(
            fingerprint("d.x", &k("1", "2")),
            fingerprint("d.y", &k("1", "2"))
        );
        // Field boundaries matter: ("1=", "2") is not ("1", "=2").
        assert_ne!(
            fingerprint("d.x", &k("12", "")),
            fingerprint("d.x", &k("1", "2"))
        );
        // Pinned: a fingerprint must never change between versions (tickets are keyed on it).
        assert_eq!(
            fingerprint(
                "ssh.password-failure",
                &[("source.address".into(), "203.0.113.9".into())]
            )
            .len(),
            32
        );
    }

    #[test]
    fn continued_evidence_counts_every_line_once() {
        let mut stored = Evidence::new(2);
        stored.push("a0".into());
        stored.push("a1".into());
        let mut later = Evidence::new(2);
        for i in 0..7 {
            later.push(format!("l{i}"));
        }
        stored.extend_from(&later);
        assert_eq!(
            stored.lines(),
            ["a0", "a1", "[... 5 more lines ...]", "l5", "l6"]
        );
    }

    #[test]
    fn evidence_keeps_first_and_last_lines() {
        let mut e = Evidence::new(2);
        for i in 0..7 {
            e.push(format!("l{i}"));
        }
        assert_eq!(
            e.lines(),
            ["l0", "l1", "[... 3 more lines ...]", "l5", "l6"]
        );
        assert_eq!(e.omitted, 3);
    }

    #[test]
    fn titles_render_fields() {
        let mut f = BTreeMap::new();
        f.insert("source.address".to_string(), "1.2.3.4".to_string());
        assert_eq!(
            render_title("from {source.address} as {user.name}", &f),
            "from 1.2.3.4 as ?"
        );
        assert_eq!(render_title("broken {x", &f), "broken {x");
    }

    #[test]
    fn evidence_lines_are_cut_on_char_boundaries() {
        assert_eq!(evidence_line("héllo".as_bytes(), 2), "h[...]");
        assert_eq!(evidence_line(b"\xffok", 10), "\u{fffd}ok");
    }
}
