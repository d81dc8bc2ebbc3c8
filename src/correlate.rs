//! Correlation: is a hit an incident yet?
//!
//! State is kept per (detector, key values) in one LRU map with a configured capacity, because
//! key values (addresses, user names) are chosen by attackers: a flood of distinct keys evicts
//! the least recently seen ones (counted in [`Correlator::evicted`]) instead of growing without
//! bound. Windows run on event time, so a replayed log gives the same result as a live one.
//! No I/O here.

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroUsize;

use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::detector::Detector;
use crate::timestamp::Millis;

/// Identifies correlation state: detector index and the key field values.
type StateKey = (u32, Box<[String]>);

/// What is remembered for one actor of one detector (persisted as JSON by the daemon).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum State {
    /// Hit times within the window (at most `count`).
    Count {
        times: VecDeque<Millis>,
        evidence: Vec<String>,
    },
    /// Distinct values with the last time each was seen (at most `count`).
    Distinct {
        values: Vec<(String, Millis)>,
        hits: u64,
        evidence: Vec<String>,
    },
    /// Times of the prerequisite hits of a sequence detector (at most `count`).
    Prior { times: VecDeque<Millis> },
}

/// A hit presented to the correlator.
#[derive(Debug)]
pub struct Observation<'a> {
    /// Detector index.
    pub detector: usize,
    /// Key field values, in the detector's key order.
    pub key: &'a [String],
    /// Event time.
    pub time: Millis,
    /// Value of the `distinct` field, if the detector has one.
    pub distinct: Option<&'a str>,
    /// The line, already cut to the evidence length.
    pub line: &'a str,
}

/// The verdict for a hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not (yet) an incident.
    Below,
    /// The condition is met: an incident opens.
    Open {
        /// Hits (or distinct values) that met the condition, this one included.
        count: u64,
        /// Time of the earliest of them.
        first_seen: Millis,
        /// Lines kept while below the threshold (the first few), this one last.
        evidence: Vec<String>,
    },
}

/// Thresholds, distinct counts and sequences over sliding event-time windows.
#[derive(Debug)]
pub struct Correlator {
    states: LruCache<StateKey, State>,
    evidence_lines: usize,
    /// States evicted because the key cap was reached.
    pub evicted: u64,
    /// Keys changed since the last [`Correlator::take_dirty`]: what the next commit writes.
    dirty: HashSet<StateKey>,
}

/// A correlation state as stored: detector index, key values, and the state as JSON (`None`
/// when the state is gone and must be deleted).
pub type Persisted = (usize, Vec<String>, Option<String>);

impl Correlator {
    /// A correlator tracking at most `max_keys` keys, keeping `evidence_lines` lines per key.
    pub fn new(max_keys: usize, evidence_lines: usize) -> Correlator {
        Correlator {
            states: LruCache::new(NonZeroUsize::new(max_keys.max(1)).expect("max(1) is non-zero")),
            evidence_lines,
            evicted: 0,
            dirty: HashSet::new(),
        }
    }

    /// The states changed since the last call, for the state store.
    pub fn take_dirty(&mut self) -> Vec<Persisted> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|k| {
                let json = self
                    .states
                    .peek(&k)
                    .map(|s| serde_json::to_string(s).expect("states serialize"));
                (k.0 as usize, k.1.into_vec(), json)
            })
            .collect()
    }

    /// Every state, for a reload that rebuilds the correlator.
    pub fn export(&self) -> Vec<Persisted> {
        self.states
            .iter()
            .rev()
            .map(|(k, s)| {
                (
                    k.0 as usize,
                    k.1.to_vec(),
                    Some(serde_json::to_string(s).expect("states serialize")),
                )
            })
            .collect()
    }

    /// Restores a stored state; returns false when the JSON is not a state (ignored).
    pub fn restore(&mut self, detector: usize, key: Vec<String>, json: &str) -> bool {
        match serde_json::from_str::<State>(json) {
            Ok(state) => {
                self.states.push((detector as u32, key.into()), state);
                true
            }
            Err(_) => false,
        }
    }

    /// Number of keys currently tracked.
    pub fn tracked(&self) -> usize {
        self.states.len()
    }

    fn insert(&mut self, key: StateKey, state: State) {
        self.dirty.insert(key.clone());
        if let Some((old, _)) = self.states.push(key.clone(), state) {
            if old != key {
                self.evicted += 1;
                self.dirty.insert(old);
            }
        }
    }

    /// Records a hit of a prerequisite for the sequence detector `seq` (same key fields).
    pub fn note_prior(&mut self, seq: usize, det: &Detector, key: &[String], time: Millis) {
        let Some(after) = &det.after else { return };
        let window = after.window.as_millis() as Millis;
        let sk: StateKey = (seq as u32, key.into());
        if let Some(State::Prior { times }) = self.states.get_mut(&sk) {
            self.dirty.insert(sk.clone());
            times.push_back(time);
            while times.len() > after.count as usize
                || times.front().is_some_and(|&t| t < time - window)
            {
                times.pop_front();
            }
            return;
        }
        self.insert(
            sk,
            State::Prior {
                times: VecDeque::from([time]),
            },
        );
    }

    /// Decides whether `obs` (a hit of `det`) opens an incident.
    pub fn observe(&mut self, det: &Detector, obs: &Observation<'_>) -> Verdict {
        let evidence_cap = self.evidence_lines.max(1);
        if let Some(after) = &det.after {
            let window = after.window.as_millis() as Millis;
            let sk: StateKey = (obs.detector as u32, obs.key.into());
            let prior = match self.states.get(&sk) {
                Some(State::Prior { times }) => times
                    .iter()
                    .filter(|&&t| t <= obs.time && t >= obs.time - window)
                    .count(),
                _ => 0,
            };
            return if prior >= after.count as usize {
                Verdict::Open {
                    count: 1,
                    first_seen: obs.time,
                    evidence: vec![obs.line.to_string()],
                }
            } else {
                Verdict::Below
            };
        }
        let Some(th) = det.threshold else {
            return Verdict::Open {
                count: 1,
                first_seen: obs.time,
                evidence: vec![obs.line.to_string()],
            };
        };
        let window = th.window.as_millis() as Millis;
        let need = th.count as usize;
        let sk: StateKey = (obs.detector as u32, obs.key.into());
        if self.states.contains(&sk) {
            self.dirty.insert(sk.clone());
        }
        let verdict = match (self.states.get_mut(&sk), obs.distinct) {
            (Some(State::Count { times, evidence }), None) => {
                times.push_back(obs.time);
                while times.len() > need || times.front().is_some_and(|&t| t < obs.time - window) {
                    times.pop_front();
                }
                if times.len() >= need {
                    let mut ev = std::mem::take(evidence);
                    ev.push(obs.line.to_string());
                    Some(Verdict::Open {
                        count: times.len() as u64,
                        first_seen: times.front().copied().unwrap_or(obs.time),
                        evidence: ev,
                    })
                } else {
                    if evidence.len() < evidence_cap {
                        evidence.push(obs.line.to_string());
                    }
                    Some(Verdict::Below)
                }
            }
            (
                Some(State::Distinct {
                    values,
                    hits,
                    evidence,
                }),
                Some(v),
            ) => {
                *hits += 1;
                values.retain(|(_, t)| *t >= obs.time - window);
                match values.iter_mut().find(|(x, _)| x == v) {
                    Some(slot) => slot.1 = slot.1.max(obs.time),
                    None => values.push((v.to_string(), obs.time)),
                }
                if values.len() >= need {
                    let mut ev = std::mem::take(evidence);
                    ev.push(obs.line.to_string());
                    Some(Verdict::Open {
                        count: *hits,
                        first_seen: values.iter().map(|x| x.1).min().unwrap_or(obs.time),
                        evidence: ev,
                    })
                } else {
                    if evidence.len() < evidence_cap {
                        evidence.push(obs.line.to_string());
                    }
                    Some(Verdict::Below)
                }
            }
            _ => None,
        };
        match verdict {
            Some(v @ Verdict::Open { .. }) => {
                self.states.pop(&sk);
                v
            }
            Some(v) => v,
            None if need <= 1 => Verdict::Open {
                count: 1,
                first_seen: obs.time,
                evidence: vec![obs.line.to_string()],
            },
            None => {
                let state = match obs.distinct {
                    Some(v) => State::Distinct {
                        values: vec![(v.to_string(), obs.time)],
                        hits: 1,
                        evidence: vec![obs.line.to_string()],
                    },
                    None => State::Count {
                        times: VecDeque::from([obs.time]),
                        evidence: vec![obs.line.to_string()],
                    },
                };
                self.insert(sk, state);
                Verdict::Below
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::parse_file;
    use std::path::Path;

    fn detector(extra: &str) -> Detector {
        let toml = format!(
            r#"
[[detector]]
id = "t.d"
title = "t"
category = "intrusion-attempts"
severity = "medium"
patterns = ['''x (?P<source.address>\S+) (?P<user.name>\S+)''']
key = ["source.address"]
{extra}
"#
        );
        parse_file(Path::new("t.toml"), &toml).unwrap().0.remove(0)
    }

    const MIN: Millis = 60_000;

    /// Feeds (key, minute, distinct value) hits; returns the indices of hits that opened.
    fn run(det: &Detector, cap: usize, hits: &[(&str, i64, &str)]) -> (Vec<usize>, Correlator) {
        let mut c = Correlator::new(cap, 2);
        let mut opened = Vec::new();
        for (i, (k, minute, v)) in hits.iter().enumerate() {
            let key = [k.to_string()];
            let obs = Observation {
                detector: 0,
                key: &key,
                time: minute * MIN,
                distinct: det.distinct.as_ref().map(|_| *v),
                line: "l",
            };
            if let Verdict::Open { .. } = c.observe(det, &obs) {
                opened.push(i);
            }
        }
        (opened, c)
    }

    #[test]
    fn threshold_counts_hits_per_key_within_a_sliding_window() {
        let d = detector("threshold = { count = 3, window = \"10m\" }");
        type Hits<'a> = &'a [(&'a str, i64, &'a str)];
        let cases: &[(Hits, &[usize])] = &[
            (&[("a", 0, ""), ("a", 1, ""), ("a", 2, "")], &[2]),
            // Another key does not help.
            (&[("a", 0, ""), ("b", 1, ""), ("a", 2, "")], &[]),
            // Too slow: the first hit leaves the window before the third arrives.
            (&[("a", 0, ""), ("a", 6, ""), ("a", 11, "")], &[]),
            (
                &[("a", 0, ""), ("a", 6, ""), ("a", 11, ""), ("a", 12, "")],
                &[3],
            ),
            // After opening, counting starts over (the incident tracks recurrences).
            (
                &[("a", 0, ""), ("a", 1, ""), ("a", 2, ""), ("a", 3, "")],
                &[2],
            ),
        ];
        for (hits, want) in cases {
            assert_eq!(run(&d, 100, hits).0, *want, "{hits:?}");
        }
    }

    #[test]
    fn distinct_counts_different_values() {
        let d = detector("threshold = { count = 3, window = \"10m\" }\ndistinct = \"user.name\"");
        let (opened, _) = run(
            &d,
            100,
            &[
                ("a", 0, "u1"),
                ("a", 1, "u1"),
                ("a", 2, "u2"),
                ("a", 3, "u2"),
            ],
        );
        assert!(opened.is_empty());
        let (opened, _) = run(
            &d,
            100,
            &[
                ("a", 0, "u1"),
                ("a", 1, "u1"),
                ("a", 2, "u2"),
                ("a", 3, "u3"),
            ],
        );
        assert_eq!(opened, vec![3]);
    }

    #[test]
    fn memory_is_bounded_by_evicting_least_recent_keys() {
        let d = detector("threshold = { count = 2, window = \"10m\" }");
        let hits: Vec<(String, i64, &str)> = (0..1000).map(|i| (format!("k{i}"), 0, "")).collect();
        let refs: Vec<(&str, i64, &str)> =
            hits.iter().map(|(k, m, v)| (k.as_str(), *m, *v)).collect();
        let (opened, c) = run(&d, 10, &refs);
        assert!(opened.is_empty());
        assert_eq!(c.tracked(), 10);
        assert_eq!(c.evicted, 990);
    }

    #[test]
    fn dirty_states_persist_and_restore_across_a_restart() {
        let d = detector("threshold = { count = 3, window = \"10m\" }");
        let (_, mut c) = run(
            &d,
            2,
            &[("a", 0, ""), ("a", 1, ""), ("b", 1, ""), ("c", 1, "")],
        );
        let mut dirty = c.take_dirty();
        dirty.sort();
        // "a" was evicted by "c" (cap 2): it must be deleted from the store.
        let keys: Vec<(&str, bool)> = dirty
            .iter()
            .map(|(_, k, s)| (k[0].as_str(), s.is_some()))
            .collect();
        assert_eq!(keys, vec![("a", false), ("b", true), ("c", true)]);
        assert!(c.take_dirty().is_empty());
        // A new correlator restored from the stored states continues the count of "b".
        let mut fresh = Correlator::new(10, 2);
        for (det, key, json) in dirty.into_iter().filter(|x| x.2.is_some()) {
            assert!(fresh.restore(det, key, &json.unwrap()));
        }
        let key = ["b".to_string()];
        let obs = |m: i64| Observation {
            detector: 0,
            key: &key,
            time: m * MIN,
            distinct: None,
            line: "l",
        };
        assert_eq!(fresh.observe(&d, &obs(2)), Verdict::Below);
        assert!(matches!(
            fresh.observe(&d, &obs(3)),
            Verdict::Open { count: 3, .. }
        ));
    }

    #[test]
    fn sequence_needs_enough_recent_priors_with_the_same_key() {
        let d = detector("after = { detectors = [\"t.d\"], count = 2, window = \"10m\" }");
        let mut c = Correlator::new(100, 2);
        let k = ["1.2.3.4".to_string()];
        let other = ["5.6.7.8".to_string()];
        let obs = |key: &'static [String; 1], m: i64| (key, m);
        let _ = obs;
        let hit = |c: &mut Correlator, key: &[String], m: i64| {
            c.observe(
                &d,
                &Observation {
                    detector: 0,
                    key,
                    time: m * MIN,
                    distinct: None,
                    line: "ok",
                },
            ) != Verdict::Below
        };
        c.note_prior(0, &d, &k, 0);
        assert!(!hit(&mut c, &k, 1), "one prior is not enough");
        c.note_prior(0, &d, &k, 2);
        assert!(
            !hit(&mut c, &other, 3),
            "priors of another key do not count"
        );
        assert!(hit(&mut c, &k, 3));
        assert!(!hit(&mut c, &k, 30), "priors too old");
    }
}
