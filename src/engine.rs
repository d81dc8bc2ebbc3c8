//! The engine: matcher, correlator and policy wired together, turning blocks of log lines into
//! incidents.
//!
//! It is fed blocks of complete lines by a reader ([`crate::scan`] for files and stdin; the
//! daemon's sources later) together with the [`Input`] they came from, and keeps the incident
//! record in memory. It does no I/O itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Built, EngineSection};
use crate::correlate::{Correlator, Observation, Verdict};
use crate::detect::{Fields, Matcher, Scratch};
use crate::detector::DetectorSet;
use crate::incident::{evidence_line, fingerprint, render_title, Evidence, Incident};
use crate::policy::Policy;
use crate::timestamp::{Millis, TimeParser};

static NEXT_INPUT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Where lines come from, and the per-input state that travels with them.
#[derive(Debug, Clone)]
pub struct Input {
    /// File path, `-` for stdin, or a source name.
    pub name: String,
    /// Timestamp parser (zone and year-inference reference for this input).
    pub time: TimeParser,
    /// Time of the latest line that had one: used for lines without a timestamp.
    pub last_time: Option<Millis>,
    /// Lines completed before the next block (so line numbers are 1-based and global).
    pub lines: u64,
    /// Unique per input in this process: tells lines of different inputs apart.
    pub id: u64,
    /// Fields added to every hit (container id, pod): source metadata.
    pub labels: Vec<(Arc<str>, String)>,
}

impl Input {
    /// Sets the labels (from a source's batch), keeping the shared names when they are
    /// unchanged, as they are for every batch of a stream: hits then take them without
    /// allocating.
    pub fn set_labels(&mut self, labels: &[(String, String)]) {
        let same = self.labels.len() == labels.len()
            && self
                .labels
                .iter()
                .zip(labels)
                .all(|((k, v), (k2, v2))| **k == **k2 && v == v2);
        if !same {
            self.labels = labels
                .iter()
                .map(|(k, v)| (Arc::from(k.as_str()), v.clone()))
                .collect();
        }
    }

    /// A new input.
    pub fn new(name: impl Into<String>, time: TimeParser) -> Input {
        Input {
            name: name.into(),
            time,
            last_time: None,
            lines: 0,
            id: NEXT_INPUT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            labels: Vec::new(),
        }
    }
}

/// A detector hit, as `sentinela match` shows it.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Detector index.
    pub detector: usize,
    /// 1-based line number in its input.
    pub line_no: u64,
    /// The time written in the line, if any.
    pub time: Option<Millis>,
    /// Captured fields (plus `host.name` from a syslog header and the input's labels).
    pub fields: Fields,
    /// The line, cut for evidence.
    pub line: String,
}

impl Hit {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name)
    }
}

/// What a hit did to the incident record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new incident, at this index of [`Engine::incidents`].
    Opened(usize),
    /// An existing incident grew.
    Recurred(usize),
}

/// Counters, per detector where it matters.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Lines read.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines longer than the cap, cut before matching.
    pub truncated_lines: u64,
    /// Hits per detector index.
    pub hits: Vec<u64>,
    /// Allowlisted hits per detector index.
    pub suppressed: Vec<u64>,
    /// Incidents opened per detector index.
    pub opened: Vec<u64>,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    /// The detectors (indices everywhere refer to this set).
    pub detectors: DetectorSet,
    matcher: Matcher,
    scratch: Scratch,
    policy: Policy,
    correlator: Correlator,
    /// For each detector, the sequence detectors that list it in `after`.
    followers: Vec<Vec<usize>>,
    /// Per sequence detector, the line (input id, line number) that last counted as a prior.
    last_prior: Vec<Option<(u64, u64)>>,
    limits: EngineSection,
    /// Incidents in the order they opened.
    pub incidents: Vec<Incident>,
    /// Open incidents by (detector, key values): the fingerprint (a hash) is computed only
    /// when an incident opens, not for every hit.
    by_key: HashMap<(usize, Vec<String>), usize>,
    /// Incidents opened or grown since the last [`Engine::take_changes`].
    dirty: Vec<usize>,
    /// The latest event time seen: the "now" against which incidents are quiet
    /// ([`Engine::retire`]), so replaying an old log closes what living through it would.
    clock: Millis,
    /// Counters.
    pub stats: Stats,
}

/// What changed since the last commit, ready for [`crate::state::Commit`].
#[derive(Debug, Default)]
pub struct Changes {
    /// Indices into [`Engine::incidents`] of incidents to write.
    pub incidents: Vec<usize>,
    /// Correlation states to write or delete: (detector id, key values as JSON, state JSON).
    pub correlation: Vec<(String, String, Option<String>)>,
}

impl Engine {
    /// Builds the engine from a validated config.
    pub fn new(built: Built, limits: EngineSection) -> Engine {
        let matcher = Matcher::new(&built.detectors);
        let n = built.detectors.detectors.len();
        let mut followers = vec![Vec::new(); n];
        for (si, d) in built.detectors.detectors.iter().enumerate() {
            if let Some(after) = &d.after {
                for id in &after.detectors {
                    if let Some(pi) = built.detectors.index_of(id) {
                        followers[pi].push(si);
                    }
                }
            }
        }
        Engine {
            scratch: matcher.scratch(),
            matcher,
            correlator: Correlator::new(limits.max_tracked_keys, limits.evidence_lines),
            detectors: built.detectors,
            policy: built.policy,
            followers,
            last_prior: vec![None; n],
            limits,
            incidents: Vec::new(),
            by_key: HashMap::new(),
            dirty: Vec::new(),
            clock: Millis::MIN,
            stats: Stats {
                hits: vec![0; n],
                suppressed: vec![0; n],
                opened: vec![0; n],
                ..Stats::default()
            },
        }
    }

    /// Incidents and correlation states changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        let mut incidents = std::mem::take(&mut self.dirty);
        incidents.sort_unstable();
        incidents.dedup();
        let correlation = self
            .correlator
            .take_dirty()
            .into_iter()
            .filter_map(|(di, key, state)| {
                let id = self.detectors.detectors.get(di)?.id.clone();
                Some((
                    id,
                    serde_json::to_string(&key).expect("strings serialize"),
                    state,
                ))
            })
            .collect();
        Changes {
            incidents,
            correlation,
        }
    }

    /// Loads incidents and correlation state from the state store (at start-up or after a
    /// reload). Records of detectors that no longer exist are kept aside (not matched).
    pub fn restore(
        &mut self,
        incidents: Vec<Incident>,
        correlation: Vec<crate::state::StoredCorrelation>,
    ) {
        for inc in incidents {
            self.clock = self.clock.max(inc.last_seen);
            if let Some(di) = self.detectors.index_of(&inc.detector) {
                let key: Vec<String> = self.detectors.detectors[di]
                    .key
                    .iter()
                    .map(|k| inc.fields.get(k).cloned().unwrap_or_default())
                    .collect();
                self.by_key.insert((di, key), self.incidents.len());
            }
            self.incidents.push(inc);
        }
        for c in correlation {
            let (Some(di), Ok(key)) = (
                self.detectors.index_of(&c.detector),
                serde_json::from_str::<Vec<String>>(&c.key),
            ) else {
                continue;
            };
            self.correlator.restore(di, key, &c.state);
        }
    }

    /// Switches to a new config, keeping the incidents and correlation state (a reload).
    pub fn reconfigure(&mut self, built: Built, limits: EngineSection) {
        let mut old = std::mem::replace(self, Engine::new(built, limits));
        let correlation = old
            .correlator
            .export()
            .into_iter()
            .filter_map(|(di, key, state)| {
                Some(crate::state::StoredCorrelation {
                    detector: old.detectors.detectors.get(di)?.id.clone(),
                    key: serde_json::to_string(&key).ok()?,
                    state: state?,
                })
            })
            .collect();
        self.restore(std::mem::take(&mut old.incidents), correlation);
    }

    /// The latest event time seen (`Millis::MIN` before any hit).
    pub fn clock(&self) -> Millis {
        self.clock
    }

    /// Closes incidents locally and forgets them (the state store keeps them): those quiet
    /// for `close_after` by event time, then, while more than `max_open` remain, the least
    /// recently seen. Returns `(incident, quiet)` for each, `quiet` telling a quiet close from
    /// an eviction for memory (attacker-chosen keys make the number of incidents unbounded).
    ///
    /// A later hit with the same key goes through correlation again; when it opens an
    /// incident, it has the same fingerprint, so the caller continues the stored record
    /// ([`Engine::absorb`]) and the ticket lifecycle treats it as a recurrence.
    ///
    /// Indices into [`Engine::incidents`] change: call only when none is outstanding (after
    /// a commit, with no changes taken and not yet written).
    pub fn retire(&mut self, close_after: Duration, max_open: usize) -> Vec<(Incident, bool)> {
        let quiet_before = self
            .clock
            .saturating_sub(close_after.as_millis().min(i64::MAX as u128) as Millis);
        let quiet = |i: &Incident| self.clock != Millis::MIN && i.last_seen < quiet_before;
        let n_quiet = self.incidents.iter().filter(|i| quiet(i)).count();
        if n_quiet == 0 && self.incidents.len() <= max_open {
            return Vec::new();
        }
        let mut keep = Vec::with_capacity(self.incidents.len());
        let mut out = Vec::new();
        for inc in std::mem::take(&mut self.incidents) {
            if quiet(&inc) {
                out.push((inc, true));
            } else {
                keep.push(inc);
            }
        }
        if keep.len() > max_open {
            // Least recently seen first; stable on fingerprint for determinism.
            keep.sort_by(|a, b| {
                a.last_seen
                    .cmp(&b.last_seen)
                    .then_with(|| a.fingerprint.cmp(&b.fingerprint))
            });
            let excess = keep.len() - max_open;
            out.extend(keep.drain(..excess).map(|i| (i, false)));
        }
        self.dirty.clear();
        self.by_key.clear();
        self.restore(keep, Vec::new());
        out
    }

    /// Continues a stored incident with the same fingerprint as incident `i`, which just
    /// opened after the stored one was retired: counts add up, the first sighting and first
    /// evidence lines are the stored ones. `stored` must not be in memory any more.
    pub fn absorb(&mut self, i: usize, stored: Incident) {
        let Some(inc) = self.incidents.get_mut(i) else {
            return;
        };
        if inc.fingerprint != stored.fingerprint {
            return;
        }
        inc.count += stored.count;
        inc.first_seen = inc.first_seen.min(stored.first_seen);
        let mut evidence = stored.evidence;
        evidence.extend_from(&inc.evidence);
        inc.evidence = evidence;
    }

    /// Correlation keys evicted because of the key cap.
    pub fn evicted_keys(&self) -> u64 {
        self.correlator.evicted
    }

    /// Matches a block of complete lines from `input` (`\n`-separated; the last line may lack
    /// its terminator when it is the end of the input). Each hit is passed to `on_hit`; with
    /// `correlate`, hits also go through policy and correlation into the incident record.
    pub fn process_block(
        &mut self,
        block: &[u8],
        input: &mut Input,
        correlate: bool,
        mut on_hit: impl FnMut(&Engine, &Input, &Hit),
    ) -> Vec<Change> {
        let mut hits = Vec::new();
        let mut counted = 0usize;
        let mut line_no = input.lines;
        let max_ev = self.limits.evidence_line_bytes;
        let time = input.time;
        let labels = &input.labels;
        self.matcher.scan_block(block, &mut self.scratch, |m| {
            line_no += memchr::memchr_iter(b'\n', &block[counted..m.start]).count() as u64;
            counted = m.start;
            let parsed = time.parse(m.line);
            let mut fields = m.fields_with_host(parsed.and_then(|t| t.host));
            for (k, v) in labels {
                if !fields.contains(k) {
                    fields.push(k.clone(), v.as_bytes());
                }
            }
            hits.push(Hit {
                detector: m.detector,
                line_no: line_no + 1,
                time: parsed.map(|t| t.millis),
                fields,
                line: evidence_line(m.line, max_ev),
            });
        });
        // Line breaks before the last hit were counted above; count only the rest.
        let mut lines =
            line_no - input.lines + memchr::memchr_iter(b'\n', &block[counted..]).count() as u64;
        if block.last().is_some_and(|&b| b != b'\n') {
            lines += 1;
        }
        input.lines += lines;
        self.stats.lines += lines;
        self.stats.bytes += block.len() as u64;

        let mut changes = Vec::new();
        for hit in &hits {
            self.stats.hits[hit.detector] += 1;
            on_hit(self, input, hit);
            if let Some(t) = hit.time {
                input.last_time = Some(input.last_time.map_or(t, |l| l.max(t)));
            }
            if correlate {
                let at = hit.time.or(input.last_time).unwrap_or(input.time.reference);
                if let Some(c) = self.observe(hit, at, input) {
                    changes.push(c);
                }
            }
        }
        changes
    }

    /// Policy, correlation and the incident record for one hit at event time `at`.
    fn observe(&mut self, hit: &Hit, at: Millis, input: &Input) -> Option<Change> {
        let source = input.name.as_str();
        let di = hit.detector;
        self.clock = self.clock.max(at);
        if self.policy.allowlisted(di, |k| hit.get(k)) {
            self.stats.suppressed[di] += 1;
            return None;
        }
        let det = &self.detectors.detectors[di];
        for &si in &self.followers[di] {
            // One line that hits two prerequisites (a failed root password is both a
            // password failure and a root attempt) is one prior, not two.
            let this_line = Some((input.id, hit.line_no));
            if self.last_prior[si] == this_line {
                continue;
            }
            self.last_prior[si] = this_line;
            let seq = &self.detectors.detectors[si];
            let key: Option<Vec<String>> = seq
                .key
                .iter()
                .map(|k| hit.get(k).map(String::from))
                .collect();
            if let Some(key) = key {
                self.correlator.note_prior(si, seq, &key, at);
            }
        }
        let key_values: Vec<String> = det
            .key
            .iter()
            .map(|k| hit.get(k).unwrap_or_default().to_string())
            .collect();
        let lookup = (di, key_values);
        if let Some(&i) = self.by_key.get(&lookup) {
            self.incidents[i].recur(at, hit.line.clone());
            self.dirty.push(i);
            return Some(Change::Recurred(i));
        }
        let key_values = &lookup.1;
        let verdict = self.correlator.observe(
            det,
            &Observation {
                detector: di,
                key: key_values,
                time: at,
                distinct: det.distinct.as_deref().and_then(|f| hit.get(f)),
                line: &hit.line,
            },
        );
        let Verdict::Open {
            count,
            first_seen,
            evidence: lines,
        } = verdict
        else {
            return None;
        };
        let fields: BTreeMap<String, String> = hit
            .fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let criticality = self
            .policy
            .criticality(fields.get("host.name").map(String::as_str), Some(source));
        let mut evidence = Evidence::new(self.limits.evidence_lines);
        for l in lines {
            evidence.push(l);
        }
        let key_pairs: Vec<(String, String)> = det
            .key
            .iter()
            .cloned()
            .zip(key_values.iter().cloned())
            .collect();
        let incident = Incident {
            fingerprint: fingerprint(&det.id, &key_pairs),
            detector: det.id.clone(),
            title: render_title(&det.title, &fields),
            category: det.category,
            severity: det.severity,
            criticality,
            priority: self.policy.matrix.priority(det.severity, criticality),
            count,
            first_seen,
            last_seen: at,
            fields,
            key: det.key.clone(),
            source: source.to_string(),
            evidence,
        };
        self.stats.opened[di] += 1;
        self.incidents.push(incident);
        self.by_key.insert(lookup, self.incidents.len() - 1);
        self.dirty.push(self.incidents.len() - 1);
        Some(Change::Opened(self.incidents.len() - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::timestamp::Zone;

    /// An engine with one detector that opens an incident per source at its first hit.
    fn engine(max_open: usize) -> (Engine, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.toml"),
            r#"
[[detector]]
id = "t.probe"
title = "Probe from {source.address}"
category = "information-gathering"
severity = "medium"
patterns = ['''\bfw\[\d+\]: PROBE from (?P<source.address>\S+)$''']
key = ["source.address"]
"#,
        )
        .unwrap();
        let text = format!(
            "[detectors]\nbuiltin = false\ndirs = [{:?}]\n[engine]\nmax_open_incidents = {max_open}\n",
            dir.path().join("t.toml").display().to_string()
        );
        let cfg = Config::parse(std::path::Path::new("t.toml"), &text).unwrap();
        (
            Engine::new(cfg.build().unwrap(), cfg.file.engine.clone()),
            dir,
        )
    }

    fn feed(e: &mut Engine, input: &mut Input, lines: &[(&str, &str)]) {
        let block: String = lines
            .iter()
            .map(|(t, a)| format!("{t} gw fw[1]: PROBE from {a}\n"))
            .collect();
        e.process_block(block.as_bytes(), input, true, |_, _, _| {});
        e.take_changes();
    }

    /// Labels become hit fields (never over a captured one); unchanged labels keep their
    /// shared names from batch to batch.
    #[test]
    fn labels_reach_hits_and_are_kept_across_batches() {
        let (mut e, _d) = engine(10);
        let mut input = Input::new("c", TimeParser::new(Zone::parse("UTC").unwrap(), 0));
        let labels = vec![
            ("container.id".to_string(), "abc".to_string()),
            ("source.address".to_string(), "not this".to_string()),
        ];
        input.set_labels(&labels);
        let first = input.labels[0].0.clone();
        input.set_labels(&labels);
        assert!(Arc::ptr_eq(&first, &input.labels[0].0));
        let mut got = Vec::new();
        e.process_block(
            b"2026-03-01T10:00:00Z gw fw[1]: PROBE from 198.51.100.9\n",
            &mut input,
            false,
            |_, _, h| {
                got.push((
                    h.get("container.id").map(String::from),
                    h.get("source.address").map(String::from),
                ))
            },
        );
        assert_eq!(
            got,
            [(Some("abc".to_string()), Some("198.51.100.9".to_string()))]
        );
        input.set_labels(&labels[..1]);
        assert_eq!(input.labels.len(), 1);
        input.set_labels(&[]);
        assert!(input.labels.is_empty());
    }

    #[test]
    fn quiet_incidents_close_and_memory_is_capped_least_recent_first() {
        let (mut e, _d) = engine(2);
        let mut input = Input::new("fw", TimeParser::new(Zone::parse("UTC").unwrap(), 0));
        feed(
            &mut e,
            &mut input,
            &[
                ("2026-03-01T10:00:00Z", "198.51.100.1"),
                ("2026-03-01T10:05:00Z", "198.51.100.2"),
                ("2026-03-01T10:06:00Z", "198.51.100.3"),
                ("2026-03-01T10:07:00Z", "198.51.100.4"),
            ],
        );
        assert_eq!(e.incidents.len(), 4);
        // Nothing is quiet for 1 h by event time; over the cap of 2, the two least recently
        // seen leave memory.
        let gone = e.retire(Duration::from_secs(3600), 2);
        let addr = |i: &Incident| i.fields["source.address"].clone();
        assert_eq!(
            gone.iter().map(|(i, q)| (addr(i), *q)).collect::<Vec<_>>(),
            [
                ("198.51.100.1".to_string(), false),
                ("198.51.100.2".into(), false)
            ]
        );
        assert_eq!(e.incidents.len(), 2);
        // Indices were rebuilt: a recurrence of a kept incident still finds it.
        feed(
            &mut e,
            &mut input,
            &[("2026-03-01T12:00:00Z", "198.51.100.4")],
        );
        assert_eq!(e.incidents.len(), 2);
        let four = e
            .incidents
            .iter()
            .find(|i| addr(i) == "198.51.100.4")
            .unwrap();
        assert_eq!(four.count, 2);
        // Now 198.51.100.3 (last seen 10:06) is quiet for more than 1 h at 12:00.
        let gone = e.retire(Duration::from_secs(3600), 2);
        assert_eq!(
            gone.iter().map(|(i, q)| (addr(i), *q)).collect::<Vec<_>>(),
            [("198.51.100.3".to_string(), true)]
        );
        assert!(e.retire(Duration::from_secs(3600), 2).is_empty());
    }

    #[test]
    fn a_retired_incident_that_recurs_continues_its_stored_record() {
        let (mut e, _d) = engine(10);
        let mut input = Input::new("fw", TimeParser::new(Zone::parse("UTC").unwrap(), 0));
        feed(
            &mut e,
            &mut input,
            &[
                ("2026-03-01T10:00:00Z", "198.51.100.1"),
                ("2026-03-01T10:01:00Z", "198.51.100.1"),
            ],
        );
        let (old, quiet) = e.retire(Duration::from_secs(1), 0).pop().unwrap();
        assert!(!quiet, "evicted for memory (cap 0)");
        assert_eq!(old.count, 2);
        feed(
            &mut e,
            &mut input,
            &[("2026-03-02T09:00:00Z", "198.51.100.1")],
        );
        assert_eq!(e.incidents.len(), 1);
        assert_eq!(e.incidents[0].fingerprint, old.fingerprint);
        assert_eq!(e.incidents[0].count, 1);
        e.absorb(0, old.clone());
        let inc = &e.incidents[0];
        assert_eq!(inc.count, 3);
        assert_eq!(inc.first_seen, old.first_seen);
        assert_eq!(inc.evidence.lines().len(), 3);
        assert!(inc.evidence.lines()[0].starts_with("2026-03-01T10:00:00Z"));
        assert!(inc.evidence.lines()[2].starts_with("2026-03-02T09:00:00Z"));
        // An incident of another fingerprint is not merged.
        let mut other = old;
        other.fingerprint = "x".into();
        e.absorb(0, other);
        assert_eq!(e.incidents[0].count, 3);
    }
}
