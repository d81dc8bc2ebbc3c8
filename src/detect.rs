//! The matcher: which detectors does a line trigger, and what fields does it yield.
//!
//! Two stages, so that the common case (a line no detector cares about) costs almost nothing:
//!
//! 1. One ASCII-case-insensitive aho-corasick automaton over the prefilter literals of every
//!    pattern runs over a whole block of lines at once. Lines without a literal hit are never looked at
//!    individually: no per-line work, no allocation.
//! 2. For a line with literal hits, the candidate patterns are confirmed with `regex::bytes`
//!    (`captures_read`, which runs the lazy DFA first and resolves groups only for confirmed
//!    hits, into reused capture slots).
//!
//! Patterns without a usable literal run on every line (the matcher then walks lines one by
//! one); `sentinela check` warns about them. Input is bytes: invalid UTF-8 is matched like any
//! other byte and captured text is converted lossily. This module does no I/O.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::bytes::{CaptureLocations, Regex};
use regex_automata::nfa::thompson::backtrack::{self, BoundedBacktracker};
use regex_automata::util::captures::Captures;
use std::sync::OnceLock;

use chrono::FixedOffset;
use std::sync::Arc;

use crate::detector::DetectorSet;
use crate::timestamp::{TimeParser, Zone};

/// One pattern ready to run.
#[derive(Debug, Clone)]
struct Compiled {
    /// Index of its detector in the [`DetectorSet`].
    detector: usize,
    regex: Regex,
    /// Capture group index and field name of every named group (shared with every hit's
    /// [`Fields`]).
    names: Vec<(usize, Arc<str>)>,
    /// The backtracker for [direct captures](HOT_AFTER), built when the pattern first turns
    /// out to be hot; `None` when the pattern is not anchored at the line start.
    direct: OnceLock<Option<BoundedBacktracker>>,
}

/// Confirming a candidate with `captures_read` runs the lazy DFA over the line and then, on a
/// match, the backtracker for the groups. For a pattern whose candidates nearly always match
/// (every `Accepted` line is a hit of `ssh.success-after-failures`, every firewall drop line a
/// hit of `firewall.port-scan`) the DFA pass is wasted, so once a pattern anchored at the line
/// start has had at least three in four of its last this many candidates match, its candidates
/// go straight to the backtracker (and back once that is no longer so). Same leftmost-first semantics, same groups; measured on the
/// 200 MiB benchmark auth log: 1.64 -> 1.42 us per `Accepted` line, 1.73 -> 1.31 us per
/// firewall line. A candidate that does not match costs the backtracker more than the DFA
/// pass, but such candidates are at most a quarter of a hot pattern's: more, and it goes
/// back to the DFA-first path within 64 candidates.
const HOT_AFTER: u32 = 64;

impl Compiled {
    /// The regex path: `captures_read`, which runs the lazy DFA first and the backtracker only
    /// on a match.
    fn captures<'s>(&self, locs: &'s mut CaptureLocations, line: &[u8]) -> Option<Groups<'s>> {
        self.regex
            .captures_read(locs, line)
            .map(|_| Groups::Locs(locs))
    }

    /// The direct backtracker, when this pattern may use one.
    fn direct(&self) -> Option<&BoundedBacktracker> {
        self.direct
            .get_or_init(|| {
                // As `regex::bytes` builds it: no UTF-8 rules on the haystack, and none on
                // where an empty-capable match may end (the thompson `utf8` option), or a
                // match ending before a stray continuation byte would be refused here and
                // accepted by the regex.
                let bt = BoundedBacktracker::builder()
                    .syntax(
                        regex_automata::util::syntax::Config::new()
                            .unicode(false)
                            .utf8(false),
                    )
                    .thompson(regex_automata::nfa::thompson::Config::new().utf8(false))
                    .build(self.regex.as_str())
                    .ok()?;
                // The groups must line up with the regex's, or fields would be misread.
                let same_groups = bt
                    .get_nfa()
                    .group_info()
                    .group_len(regex_automata::PatternID::ZERO)
                    == self.regex.captures_len();
                (bt.get_nfa().is_always_start_anchored() && same_groups).then_some(bt)
            })
            .as_ref()
    }
}

/// Where a confirmed line's groups are: the regex's slots, or the direct backtracker's.
#[derive(Debug, Clone, Copy)]
enum Groups<'a> {
    Locs(&'a CaptureLocations),
    Direct(&'a Captures),
}

impl Groups<'_> {
    fn get(&self, i: usize) -> Option<(usize, usize)> {
        match self {
            Groups::Locs(l) => l.get(i),
            Groups::Direct(c) => c.get_group(i).map(|s| (s.start, s.end)),
        }
    }
}

/// Per-pattern state of the direct captures (see [`HOT_AFTER`]).
#[derive(Debug, Default)]
struct Hot {
    /// Candidates and matches in the current window of [`HOT_AFTER`] candidates.
    candidates: u32,
    matched: u32,
    /// Backtracker cache and group slots, once direct.
    direct: Option<(backtrack::Cache, Captures)>,
}

/// One prefilter automaton and, for each of its literals, the patterns that require it.
#[derive(Debug, Clone)]
struct Prefilter {
    walker: Walker,
    literal_patterns: Vec<Vec<u32>>,
}

/// How a [`Prefilter`] walks a block.
#[derive(Debug, Clone)]
enum Walker {
    /// A DFA walked by hand, several stretches of the block at once (see [`Prefilter::collect`]).
    Dfa(Box<aho_corasick::dfa::DFA>),
    /// The crate's own overlapping search: only when the DFA would be too large to build.
    Search(AhoCorasick),
}

/// How many stretches of a block the DFA walks at once. A DFA walk costs one dependent table
/// load per byte, so a single walk runs at the latency of that load (about 2 ns a byte here);
/// independent walks interleaved in one loop overlap those loads. Measured on the 200 MiB
/// benchmark auth log over the shipped pack's 1,255 literals: 1 walk 528 MB/s, 2: 959 MB/s,
/// 3: 1,147 MB/s, 4: 1,239 MB/s, 6: 1,291 MB/s.
const STREAMS: usize = 4;

/// Blocks shorter than this are walked in one stretch: splitting them buys nothing.
const MIN_INTERLEAVED: usize = 4096;

impl Prefilter {
    fn build(entries: &[(Vec<u8>, u32)], case_insensitive: bool) -> Option<Prefilter> {
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut literal_patterns: Vec<Vec<u32>> = Vec::new();
        let mut index: std::collections::HashMap<&[u8], usize> = Default::default();
        for (lit, pi) in entries {
            let li = *index.entry(lit.as_slice()).or_insert_with(|| {
                literals.push(lit.clone());
                literal_patterns.push(Vec::new());
                literals.len() - 1
            });
            if !literal_patterns[li].contains(pi) {
                literal_patterns[li].push(*pi);
            }
        }
        if literals.is_empty() {
            return None;
        }
        // Standard (overlapping) semantics: every state knows every literal that ends at it,
        // so one walk reports all literals of a line. No prefilter: with hundreds of literals
        // none applies, and the hand-written walk below would have to honour it.
        let walker = aho_corasick::dfa::DFA::builder()
            .ascii_case_insensitive(case_insensitive)
            .match_kind(MatchKind::Standard)
            .start_kind(aho_corasick::StartKind::Unanchored)
            .prefilter(false)
            .build(&literals)
            .map(|dfa| Walker::Dfa(Box::new(dfa)))
            .unwrap_or_else(|_| {
                Walker::Search(
                    AhoCorasick::builder()
                        .ascii_case_insensitive(case_insensitive)
                        .kind(Some(AhoCorasickKind::NoncontiguousNFA))
                        .build(&literals)
                        .expect("literals are non-empty byte strings"),
                )
            });
        Some(Prefilter {
            walker,
            literal_patterns,
        })
    }

    /// Appends (line start, line end, pattern) for every literal hit in `block`, in block
    /// order. `ends` is scratch space.
    fn collect(
        &self,
        block: &[u8],
        walk_scratch: &mut WalkScratch,
        out: &mut Vec<(usize, usize, u32)>,
    ) {
        let WalkScratch { ends, streams } = walk_scratch;
        ends.clear();
        match &self.walker {
            Walker::Dfa(dfa) => walk(dfa, block, streams, ends),
            Walker::Search(ac) => ends.extend(
                ac.find_overlapping_iter(block)
                    .map(|m| (m.end() - 1, m.pattern().as_u32())),
            ),
        }
        let mut line: Option<(usize, usize)> = None;
        for &(at, literal) in ends.iter() {
            let (ls, le) = match line {
                Some((ls, le)) if at >= ls && at < le => (ls, le),
                _ => {
                    let ls = memchr::memrchr(b'\n', &block[..at]).map_or(0, |i| i + 1);
                    let le = memchr::memchr(b'\n', &block[at..]).map_or(block.len(), |i| at + i);
                    line = Some((ls, le));
                    (ls, le)
                }
            };
            for &pi in &self.literal_patterns[literal as usize] {
                out.push((ls, le, pi));
            }
        }
    }
}

/// Reused buffers of [`Prefilter::collect`].
#[derive(Debug, Default)]
struct WalkScratch {
    /// (offset of a literal's last byte, literal) in block order.
    ends: Vec<(usize, u32)>,
    /// The same, per interleaved stretch.
    streams: [Vec<(usize, u32)>; STREAMS],
}

/// Walks `dfa` over `block` and appends (offset of the last byte, literal) for every literal
/// occurrence, in block order.
///
/// The block is cut at line boundaries into [`STREAMS`] stretches that are walked in one
/// interleaved loop, each from the start state. No literal contains a line break, so no
/// occurrence spans two stretches, and the result equals a single walk's.
fn walk(
    dfa: &aho_corasick::dfa::DFA,
    block: &[u8],
    found: &mut [Vec<(usize, u32)>; STREAMS],
    out: &mut Vec<(usize, u32)>,
) {
    use aho_corasick::automaton::Automaton;
    let start = dfa
        .start_state(aho_corasick::Anchored::No)
        .expect("built with an unanchored start state");
    // Reports the literals of a match state reached at `at`.
    let report = |sid, at: usize, out: &mut Vec<(usize, u32)>| {
        for k in 0..dfa.match_len(sid) {
            out.push((at, dfa.match_pattern(sid, k).as_u32()));
        }
    };
    let single = |from: usize, to: usize, mut sid, out: &mut Vec<(usize, u32)>| {
        for (at, &b) in block.iter().enumerate().take(to).skip(from) {
            sid = dfa.next_state(aho_corasick::Anchored::No, sid, b);
            if dfa.is_special(sid) && dfa.is_match(sid) {
                report(sid, at, out);
            }
        }
    };
    if block.len() < MIN_INTERLEAVED {
        single(0, block.len(), start, out);
        return;
    }
    // Stretch k is bounds[k]..bounds[k + 1], each ending just after a line break (or at the
    // end of the block).
    let mut bounds = [block.len(); STREAMS + 1];
    bounds[0] = 0;
    for k in 1..STREAMS {
        let target = (block.len() * k / STREAMS).max(bounds[k - 1]);
        bounds[k] = memchr::memchr(b'\n', &block[target..]).map_or(block.len(), |i| target + i + 1);
    }
    let len = |k: usize| bounds[k + 1] - bounds[k];
    let common = (0..STREAMS).map(len).min().unwrap_or(0);
    let mut sid = [start; STREAMS];
    for f in found.iter_mut() {
        f.clear();
    }
    for i in 0..common {
        let mut special = false;
        for k in 0..STREAMS {
            sid[k] = dfa.next_state(aho_corasick::Anchored::No, sid[k], block[bounds[k] + i]);
            special |= dfa.is_special(sid[k]);
        }
        if special {
            for k in 0..STREAMS {
                if dfa.is_special(sid[k]) && dfa.is_match(sid[k]) {
                    report(sid[k], bounds[k] + i, &mut found[k]);
                }
            }
        }
    }
    for k in 0..STREAMS {
        single(bounds[k] + common, bounds[k + 1], sid[k], &mut found[k]);
        out.extend_from_slice(&found[k]);
    }
}

/// The compiled two-stage matcher for a [`DetectorSet`].
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The prefilter automaton (none when no pattern has literals).
    prefilters: Vec<Prefilter>,
    /// All patterns of all detectors, grouped by detector in set order.
    patterns: Vec<Compiled>,
    /// Patterns without literals: they run on every line.
    always: Vec<u32>,
    /// The name `host.name`, shared by the hits that take it from the syslog header.
    host_name: Arc<str>,
}

/// Reusable per-thread buffers, so matching allocates nothing on lines that do not match.
#[derive(Debug)]
pub struct Scratch {
    locs: Vec<CaptureLocations>,
    /// (line start, line end, pattern) candidates of the current block.
    candidates: Vec<(usize, usize, u32)>,
    /// Candidate patterns of the current line.
    line: Vec<u32>,
    walk: WalkScratch,
    /// Per pattern: candidates, matches and direct-capture buffers.
    hot: Vec<Hot>,
}

/// A line confirmed by one detector's pattern.
#[derive(Debug)]
pub struct LineMatch<'a> {
    /// Byte offset of the line in the block.
    pub start: usize,
    /// The line, without its terminator (and without a trailing `\r`).
    pub line: &'a [u8],
    /// Index of the detector in the [`DetectorSet`].
    pub detector: usize,
    groups: Groups<'a>,
    names: &'a [(usize, Arc<str>)],
    host_name: &'a Arc<str>,
}

/// The fields of a hit: (ECS name, value) pairs in capture order. Names are shared with the
/// matcher and values are packed into one string, so a hit's fields cost two allocations
/// however many there are (one string per name and value was a third of the allocations of
/// an auth-log scan).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    text: String,
    entries: Vec<(Arc<str>, usize, usize)>,
}

impl Fields {
    /// The value of field `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _, _)| &**k == name)
            .map(|&(_, s, e)| &self.text[s..e])
    }

    /// Whether field `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(k, _, _)| &**k == name)
    }

    /// (name, value) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(k, s, e)| (&**k, &self.text[*s..*e]))
    }

    /// Appends a field; bytes that are not UTF-8 become U+FFFD.
    pub fn push(&mut self, name: Arc<str>, value: &[u8]) {
        let s = self.text.len();
        self.text.push_str(&String::from_utf8_lossy(value));
        self.entries.push((name, s, self.text.len()));
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No fields at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl LineMatch<'_> {
    /// The captured fields, as (ECS name, value) pairs, in pattern order. Text that is not
    /// UTF-8 is replaced with U+FFFD.
    pub fn fields(&self) -> Vec<(String, String)> {
        self.names
            .iter()
            .filter_map(|(i, name)| {
                let (s, e) = self.groups.get(*i)?;
                Some((
                    name.to_string(),
                    String::from_utf8_lossy(&self.line[s..e]).into_owned(),
                ))
            })
            .collect()
    }

    /// [`fields`](Self::fields) plus `host.name` from the line's syslog header when no
    /// pattern group captured it: what the engine records for a hit.
    pub fn fields_with_host(&self, host: Option<&[u8]>) -> Fields {
        let mut fields = Fields::default();
        for (i, name) in self.names {
            if let Some((s, e)) = self.groups.get(*i) {
                fields.push(name.clone(), &self.line[s..e]);
            }
        }
        if let Some(host) = host {
            if !fields.contains("host.name") {
                fields.push(self.host_name.clone(), host);
            }
        }
        fields
    }
}

impl Matcher {
    /// Compiles the matcher for `set`.
    pub fn new(set: &DetectorSet) -> Matcher {
        let mut patterns = Vec::new();
        let mut literals: Vec<(Vec<u8>, u32)> = Vec::new();
        let mut always = Vec::new();
        for (di, d) in set.detectors.iter().enumerate() {
            for p in &d.patterns {
                let pi = patterns.len() as u32;
                let names = p
                    .regex
                    .capture_names()
                    .enumerate()
                    .filter_map(|(i, n)| n.map(|n| (i, n.into())))
                    .collect();
                patterns.push(Compiled {
                    detector: di,
                    regex: p.regex.clone(),
                    names,
                    direct: OnceLock::new(),
                });
                if p.literals.is_empty() {
                    always.push(pi);
                    continue;
                }
                literals.extend(p.literals.iter().map(|l| (l.to_ascii_lowercase(), pi)));
            }
        }
        // One ASCII-case-insensitive automaton for all literals, even those of case-sensitive
        // patterns (the regex decides): one pass over the block. Measured on the 200 MB
        // benchmark auth log: one automaton 276-291 MB/s, separate case-sensitive and
        // case-insensitive automata 203 MB/s (two passes; Teddy does not apply to hundreds of
        // literals anyway).
        let prefilters = Prefilter::build(&literals, true).into_iter().collect();
        Matcher {
            prefilters,
            patterns,
            always,
            host_name: Arc::from("host.name"),
        }
    }

    /// Fresh scratch buffers for this matcher.
    pub fn scratch(&self) -> Scratch {
        Scratch {
            locs: self
                .patterns
                .iter()
                .map(|p| p.regex.capture_locations())
                .collect(),
            candidates: Vec::with_capacity(256),
            line: Vec::with_capacity(64),
            walk: WalkScratch::default(),
            hot: self.patterns.iter().map(|_| Hot::default()).collect(),
        }
    }

    /// Number of patterns that run on every line because they have no prefilter literal.
    pub fn unfiltered_patterns(&self) -> usize {
        self.always.len()
    }

    /// Calls `on_match` for every (line, detector) match in `block`, in line order. Lines are
    /// separated by `\n`; the last line need not end with one. A line matches a detector at
    /// most once (its first matching pattern).
    pub fn scan_block<F: FnMut(LineMatch<'_>)>(
        &self,
        block: &[u8],
        scratch: &mut Scratch,
        mut on_match: F,
    ) {
        if !self.always.is_empty() {
            self.scan_lines(block, scratch, &mut on_match);
            return;
        }
        // Block mode: the automata run over the whole block; only lines with a literal hit
        // are visited.
        let mut cands = std::mem::take(&mut scratch.candidates);
        cands.clear();
        for pf in &self.prefilters {
            pf.collect(block, &mut scratch.walk, &mut cands);
        }
        if self.prefilters.len() > 1 {
            cands.sort_unstable();
        }
        let mut i = 0;
        while i < cands.len() {
            let (ls, le, _) = cands[i];
            while i < cands.len() && cands[i].0 == ls {
                scratch.line.push(cands[i].2);
                i += 1;
            }
            self.confirm(block, ls, le, scratch, &mut on_match);
        }
        scratch.candidates = cands;
    }

    /// Line mode, used when some pattern must run on every line.
    fn scan_lines<F: FnMut(LineMatch<'_>)>(
        &self,
        block: &[u8],
        scratch: &mut Scratch,
        on_match: &mut F,
    ) {
        let mut start = 0;
        let mut cands = std::mem::take(&mut scratch.candidates);
        while start < block.len() {
            let end = memchr::memchr(b'\n', &block[start..]).map_or(block.len(), |i| start + i);
            cands.clear();
            for pf in &self.prefilters {
                pf.collect(&block[start..end], &mut scratch.walk, &mut cands);
            }
            scratch.line.extend(cands.iter().map(|c| c.2));
            scratch.line.extend_from_slice(&self.always);
            self.confirm(block, start, end, scratch, on_match);
            start = end + 1;
        }
        scratch.candidates = cands;
    }

    /// Confirms the candidate patterns collected for one line and reports the matches.
    fn confirm<F: FnMut(LineMatch<'_>)>(
        &self,
        block: &[u8],
        start: usize,
        end: usize,
        scratch: &mut Scratch,
        on_match: &mut F,
    ) {
        let mut line = &block[start..end];
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        let cands = &mut scratch.line;
        cands.sort_unstable();
        cands.dedup();
        let mut last_detector = usize::MAX;
        for &pi in cands.iter() {
            let p = &self.patterns[pi as usize];
            if p.detector == last_detector {
                continue;
            }
            // `captures_read` confirms with the lazy DFA first and resolves capture groups
            // only when that finds a match, so a candidate that does not match costs one DFA
            // pass, as `is_match` would; a separate `is_match` made hits pay twice (measured:
            // 105 -> 150 MB/s on an auth log with 25% `Accepted` lines).
            let hot = &mut scratch.hot[pi as usize];
            hot.candidates += 1;
            if hot.candidates == HOT_AFTER {
                // Decided anew every HOT_AFTER candidates, so a pattern that cools down
                // goes back to the DFA-first path.
                let is_hot = hot.matched >= HOT_AFTER / 4 * 3;
                if !is_hot {
                    hot.direct = None;
                } else if hot.direct.is_none() {
                    if let Some(bt) = p.direct() {
                        hot.direct = Some((bt.create_cache(), bt.create_captures()));
                    }
                }
                hot.candidates = 0;
                hot.matched = 0;
            }
            let groups = match (&mut hot.direct, p.direct.get().and_then(Option::as_ref)) {
                // A line too long for the backtracker's bound (`Err`) takes the regex path.
                (Some((cache, caps)), Some(bt)) => {
                    let input =
                        regex_automata::Input::new(line).anchored(regex_automata::Anchored::Yes);
                    match bt.try_search(cache, &input, caps) {
                        Ok(()) if caps.is_match() => Some(Groups::Direct(caps)),
                        Ok(()) => None,
                        Err(_) => p.captures(&mut scratch.locs[pi as usize], line),
                    }
                }
                _ => p.captures(&mut scratch.locs[pi as usize], line),
            };
            let Some(groups) = groups else {
                continue;
            };
            hot.matched += 1;
            last_detector = p.detector;
            on_match(LineMatch {
                start,
                line,
                detector: p.detector,
                groups,
                names: &p.names,
                host_name: &self.host_name,
            });
        }
        cands.clear();
    }

    /// Matches a single line; returns (detector index, fields) per matching detector, the
    /// fields as the engine records them (with `host.name` from a syslog header).
    /// Convenience for tests and detector examples; allocates.
    pub fn match_line(
        &self,
        line: &[u8],
        scratch: &mut Scratch,
    ) -> Vec<(usize, Vec<(String, String)>)> {
        let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
        let header = TimeParser::new(Zone::Fixed(FixedOffset::east_opt(0).expect("UTC")), 0);
        let mut out = Vec::new();
        self.scan_block(line, scratch, |m| {
            let host = header.parse(m.line).and_then(|t| t.host);
            let fields = m.fields_with_host(host);
            out.push((
                m.detector,
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::parse_file;
    use std::path::Path;

    fn set(toml: &str) -> DetectorSet {
        let (detectors, warnings) = parse_file(Path::new("t.toml"), toml).unwrap();
        DetectorSet {
            detectors,
            warnings,
        }
    }

    const TWO: &str = r#"
[[detector]]
id = "t.fail"
title = "t"
category = "intrusion-attempts"
severity = "medium"
patterns = ['''Failed password for (?P<user.name>.*) from (?P<source.address>\S+) port \d+$''']

[[detector]]
id = "t.root"
title = "t"
category = "intrusion-attempts"
severity = "high"
patterns = ['''Failed password for (?P<user.name>root) from (?P<source.address>\S+) port \d+$''',
            '''FAILED SU \(to root\) (?P<user.name>\S+)''']
"#;

    fn hits(m: &Matcher, block: &str) -> Vec<(usize, usize, String)> {
        let mut s = m.scratch();
        let mut out = Vec::new();
        m.scan_block(block.as_bytes(), &mut s, |lm| {
            let f = lm.fields();
            let get = |name: &str| f.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            let addr = get("source.address")
                .or_else(|| get("user.name"))
                .unwrap_or_default();
            out.push((lm.start, lm.detector, addr));
        });
        out
    }

    #[test]
    fn block_scan_reports_each_matching_line_and_detector_once() {
        let m = Matcher::new(&set(TWO));
        let block = "noise line\nFailed password for bob from 1.2.3.4 port 22\nmore noise\n\
                     Failed password for root from 5.6.7.8 port 22\r\nFAILED SU (to root) eve on pts/0";
        let got = hits(&m, block);
        assert_eq!(
            got,
            vec![
                (11, 0, "1.2.3.4".into()),
                (67, 0, "5.6.7.8".into()),
                (67, 1, "5.6.7.8".into()),
                (114, 1, "eve".into()),
            ]
        );
    }

    #[test]
    fn prefilter_is_case_insensitive_but_regex_decides() {
        let m = Matcher::new(&set(TWO));
        assert!(hits(&m, "failed PASSWORD for bob from 1.2.3.4 port 22").is_empty());
    }

    #[test]
    fn attacker_chosen_user_cannot_forge_the_source() {
        let m = Matcher::new(&set(TWO));
        let got = hits(
            &m,
            "Failed password for x from 1.2.3.4 port 22 from 198.51.100.7 port 4000",
        );
        assert_eq!(got, vec![(0, 0, "198.51.100.7".into())]);
    }

    #[test]
    fn invalid_utf8_and_binary_do_not_stop_matching() {
        let m = Matcher::new(&set(TWO));
        let mut block = b"\xff\xfe\x00garbage\x00\n".to_vec();
        block.extend_from_slice(b"Failed password for \xc3\x28 from 9.9.9.9 port 22\n");
        let mut s = m.scratch();
        let mut got = Vec::new();
        m.scan_block(&block, &mut s, |lm| got.push(lm.fields()));
        assert_eq!(got.len(), 1);
        assert!(got[0].contains(&("source.address".into(), "9.9.9.9".into())));
        assert!(got[0].contains(&("user.name".into(), "\u{fffd}(".into())));
    }

    /// Hot anchored patterns take the direct backtracker; whatever the path (regex, direct,
    /// or regex again for a line too long for the backtracker), a line yields the fields the
    /// regex itself captures.
    #[test]
    fn direct_captures_equal_the_regex_captures() {
        let toml = r#"
[[detector]]
id = "t.login"
title = "t"
category = "intrusion-attempts"
severity = "low"
patterns = ['''^(?:\S+ ){0,3}app\[(?P<process.pid>\d+)\]: login (?P<user.name>.*) from (?P<source.address>\S+)$''']
"#;
        let set = set(toml);
        let m = Matcher::new(&set);
        let re = regex::bytes::RegexBuilder::new(&set.detectors[0].patterns[0].source)
            .unicode(false)
            .build()
            .unwrap();
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for i in 0..300 {
            lines
                .push(format!("Mar 1 h app[{i}]: login u{i} from 10.0.0.{}", i % 250).into_bytes());
            if i % 50 == 0 {
                // forged source inside the user name, a candidate that does not match, a
                // line too long for the backtracker's bound, invalid UTF-8
                lines.push(b"Mar 1 h app[1]: login x from 1.2.3.4 from 198.51.100.7".to_vec());
                lines.push(b"Mar 1 h app[1]: login failed".to_vec());
                let mut long = b"Mar 1 h app[2]: login ".to_vec();
                long.extend(std::iter::repeat_n(b'y', 300_000));
                long.extend_from_slice(b" from 203.0.113.5");
                lines.push(long);
                lines.push(b"Mar 1 h app[3]: login \xff\xfe from 203.0.113.6".to_vec());
            }
        }
        let block = lines.join(&b'\n');
        let mut scratch = m.scratch();
        let mut got = Vec::new();
        m.scan_block(&block, &mut scratch, |lm| {
            let f = lm.fields_with_host(None);
            got.push(
                f.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
            );
        });
        let want: Vec<Vec<String>> = lines
            .iter()
            .filter_map(|l| {
                let c = re.captures(l)?;
                Some(
                    ["process.pid", "user.name", "source.address"]
                        .iter()
                        .map(|k| format!("{k}={}", String::from_utf8_lossy(&c[*k])))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(got.len(), 300 + 6 * 3);
        assert_eq!(got, want);
        assert!(
            scratch.hot[0].direct.is_some(),
            "the pattern should have turned direct"
        );
        assert!(got.contains(&vec![
            "process.pid=1".into(),
            "user.name=x from 1.2.3.4".into(),
            "source.address=198.51.100.7".into()
        ]));
    }

    /// A hot pattern that can match the empty string must match where the regex does, also
    /// when its match ends just before a stray UTF-8 continuation byte.
    #[test]
    fn direct_captures_ignore_utf8_boundaries_like_the_regex() {
        let toml = r#"
[[detector]]
id = "t.word"
title = "t"
category = "other"
severity = "low"
patterns = ['''^(?P<user.name>[a-z]*)''']
"#;
        let m = Matcher::new(&set(toml));
        let mut block = Vec::new();
        for _ in 0..200 {
            block.extend_from_slice(b"abc\n");
        }
        block.extend_from_slice(b"abc\x80def\n\xbf\n");
        let mut scratch = m.scratch();
        let mut got = Vec::new();
        m.scan_block(&block, &mut scratch, |lm| {
            got.push(lm.fields_with_host(None).get("user.name").map(String::from))
        });
        assert!(
            scratch.hot[0].direct.is_some(),
            "the pattern should have turned direct"
        );
        assert_eq!(got.len(), 202);
        assert_eq!(got[200].as_deref(), Some("abc"));
        assert_eq!(got[201].as_deref(), Some(""));
    }

    /// The interleaved walk must report exactly what one plain overlapping search reports,
    /// whatever the block size and wherever the stretches are cut.
    #[test]
    fn interleaved_walk_equals_an_overlapping_search() {
        let literals: Vec<&[u8]> = vec![b"failed", b"password", b"pass", b"ss", b"root", b"x"];
        let dfa = aho_corasick::dfa::DFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(&literals)
            .unwrap();
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&literals)
            .unwrap();
        let words: [&[u8]; 7] = [
            b"Failed",
            b"PASSWORD",
            b"for",
            b"root",
            b"noise",
            b"ssh",
            b"\xff",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for size in [0usize, 1, 100, 4095, 4096, 5000, 20_000, 100_000] {
            let mut block = Vec::new();
            while block.len() < size {
                block.extend_from_slice(words[rng.usize(..words.len())]);
                block.push(if rng.u8(..) < 40 { b'\n' } else { b' ' });
            }
            block.truncate(size);
            let want: Vec<(usize, u32)> = ac
                .find_overlapping_iter(&block)
                .map(|m| (m.end() - 1, m.pattern().as_u32()))
                .collect();
            let mut got = Vec::new();
            walk(&dfa, &block, &mut Default::default(), &mut got);
            // Same occurrences; within one offset the order of literals may differ.
            let mut want_sorted = want.clone();
            want_sorted.sort_unstable();
            let mut got_sorted = got.clone();
            got_sorted.sort_unstable();
            assert_eq!(got_sorted, want_sorted, "block of {size} bytes");
            assert!(
                got.windows(2).all(|w| w[0].0 <= w[1].0),
                "block order, {size} bytes"
            );
        }
    }

    #[test]
    fn patterns_without_literals_run_on_every_line() {
        let toml = r#"
[[detector]]
id = "t.any"
title = "t"
category = "other"
severity = "low"
patterns = ['''^(?P<source.address>\d+)$''']
"#;
        let m = Matcher::new(&set(toml));
        assert_eq!(m.unfiltered_patterns(), 1);
        let got = hits(&m, "x\n10\ny\n11");
        assert_eq!(got, vec![(2, 0, "10".into()), (7, 0, "11".into())]);
    }
}
