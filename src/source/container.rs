//! Decoders for container log files: Docker `json-file` and Kubernetes CRI.
//!
//! The file tailer reads these files like any other and hands complete raw lines to a
//! [`LineDecoder`], which turns them into ordinary log lines for the engine.
//!
//! # Formats
//!
//! - Docker `json-file`: one JSON object per line,
//!   `{"log":"Failed password ...\n","stream":"stderr","time":"2026-03-01T10:00:00.123456789Z"}`.
//!   Docker cuts a container line longer than 16 KiB into several objects; only the last one's
//!   `log` ends with `\n`.
//! - Kubernetes CRI (containerd, CRI-O): `TIME STREAM TAGS MESSAGE`, e.g.
//!   `2026-03-01T10:00:00.123456789Z stdout F message`, where the first tag is `F` (full, the
//!   end of a line) or `P` (partial: the line goes on in the next `P`/`F` line of that stream).
//!
//! Partial parts are reassembled per stream (stdout and stderr parts may interleave in one
//! file). A decoder never consumes the start of a group whose last part has not arrived yet:
//! [`LineDecoder::decode`] stops before it, so the tailer keeps those bytes and hands them again
//! with more data; the persisted file offset therefore never points inside a group, and a
//! restart re-reads the whole group. The output does not depend on how the file was cut into
//! reads.
//!
//! # Decoded line shape
//!
//! The shipped detectors come in two kinds. Syslog-style detectors (sshd, sudo, postfix, ...)
//! anchor on a header guard, `^(?:[^\s\[]*[^\s\[:]\s+){0,6}` followed by a program tag such as
//! `sshd[123]: `; the access-log and nginx/Apache error-log detectors anchor at `^` on the
//! client address or the error-log time, optionally behind a syslog header
//! `TIME HOST TAG[PID]: ` whose tag matches `[\w./-]+`. So a decoded line is:
//!
//! - the message unchanged when it already starts with a syslog header (an RFC 3164 or
//!   RFC 3339 time, then at most one host token, then a tag ending in `:`; or an RFC 5424
//!   `<PRI>1 ` header): a container running a syslog daemon that writes to stdout keeps its own
//!   header, so the syslog-style detectors see exactly what they would see in a host log file;
//! - otherwise `TIME HOST TAG: MESSAGE`, where TIME is the runtime's RFC 3339 time of the
//!   (first part of the) line, HOST the pod name (Kubernetes) or the 12-character container id
//!   (Docker, which is also the container's default host name) and TAG the container name. The
//!   access-log and error-log detectors accept this header, the line gets the runtime's event
//!   time (bare application lines usually carry none) and `host.name`, and because the tag
//!   ends with `:` the header guard of the syslog-style detectors cannot skip it: text an
//!   attacker gets a containerised application to print (`sshd[1]: Failed password ...`)
//!   cannot pose as another program's line.
//!
//! The pass-through case gives a container exactly the exposure of the same output in a plain
//! file. A bare line from a syslog-style program (`sshd -D -e` prints
//! `Failed password for root from ...` without a tag) is prefixed and does not match the
//! syslog-style detectors, which require a tag with a process id.
//!
//! A newline inside a message (Docker `log` values never contain one except at the end, but
//! the file is not trusted) is replaced by a space so one container line stays one line.
//!
//! # Metadata
//!
//! From the path: `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log` (kubelet),
//! `/var/log/containers/<pod>_<namespace>_<container>-<id>.log` (its symlinks) and
//! `/var/lib/docker/containers/<id>/<id>-json.log` (Docker; the container name is read, best
//! effort, from `config.v2.json` next to it). [`labels_for`] turns them into the ECS fields
//! `container.id`, `container.name`, `orchestrator.namespace` and `orchestrator.resource.name`.
//!
//! # Limits and bad input
//!
//! - A reassembled line longer than `max_line_bytes` is cut to that length and counted; it is
//!   emitted as soon as it reaches the cap and the rest of its parts are skipped, so a container
//!   printing gigabytes without a newline holds at most `max_line_bytes` in memory and never
//!   stalls the reader. The skipped rest of such a line is decoded again after a restart (the
//!   position had moved past the emitted part), which costs one extra cut line at worst.
//! - A group left open while much more data of the other stream follows (more than
//!   `8 * max_line_bytes + 64 KiB` raw bytes after its start; JSON escapes can make a line
//!   six times longer raw) is emitted as cut, so the
//!   unconsumed tail the tailer keeps stays bounded.
//! - A line that is not valid Docker JSON or CRI (a truncated write, a file configured with the
//!   wrong format) is counted as malformed and passed through raw: it may still carry an
//!   attack, dropping it would hide it, and the position always moves past it.
//! - Invalid UTF-8, raw or as `\u` escapes of lone surrogates (decoded to WTF-8 bytes), is kept
//!   as bytes: patterns run on bytes.
//! - The last line of a container that exited without a final newline stays an open group and
//!   is not delivered (the runtimes give no end-of-stream marker).

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::config::FileFormat;

/// Turns raw container log lines into log lines for the engine.
pub trait LineDecoder: Send {
    /// Decodes complete raw lines from `raw` (each ends with '\n'), appending decoded lines
    /// (each ending with '\n') to `out`. Returns (raw bytes consumed — always at a raw line
    /// boundary, stopping before an unfinished partial group so it is re-read next time —,
    /// decoded lines).
    fn decode(&mut self, raw: &[u8], out: &mut Vec<u8>) -> (usize, u64);

    /// Totals since the decoder was created, for metrics. Only consumed input counts: lines
    /// that will be handed again are not counted twice.
    fn counters(&self) -> DecodeCounters {
        DecodeCounters::default()
    }
}

/// What a decoder has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeCounters {
    /// Decoded lines produced.
    pub lines: u64,
    /// Lines made of more than one part (Docker 16 KiB split, CRI `P` lines).
    pub reassembled: u64,
    /// Lines cut at `max_line_bytes`.
    pub truncated: u64,
    /// Raw lines that were not valid for the format, passed through as they were.
    pub malformed: u64,
}

/// The decoder for `format` of the file at `path`; `None` for [`FileFormat::Plain`].
/// `max_line_bytes` caps a reassembled line (at least 1).
pub fn decoder_for(
    format: FileFormat,
    path: &Path,
    max_line_bytes: usize,
) -> Option<Box<dyn LineDecoder>> {
    let kind = match format {
        FileFormat::Plain => return None,
        FileFormat::Docker => Kind::Docker,
        FileFormat::Cri => Kind::Cri,
    };
    let meta = Meta::from_path(path, kind);
    let max = max_line_bytes.max(1);
    Some(Box::new(Decoder {
        kind,
        host: meta.host.into_bytes(),
        tag: meta.tag.into_bytes(),
        max,
        pending_bound: max.saturating_mul(8).saturating_add(64 * 1024),
        groups: Default::default(),
        state: State::default(),
    }))
}

/// Fields added to every hit from the file at `path`: `container.id`, `container.name`,
/// `orchestrator.namespace`, `orchestrator.resource.name` (pod), as far as the path tells.
/// Empty for [`FileFormat::Plain`] and for paths of no known layout.
pub fn labels_for(format: FileFormat, path: &Path) -> Vec<(String, String)> {
    let kind = match format {
        FileFormat::Plain => return Vec::new(),
        FileFormat::Docker => Kind::Docker,
        FileFormat::Cri => Kind::Cri,
    };
    Meta::from_path(path, kind).labels
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Docker,
    Cri,
}

/// What the path says about the container.
#[derive(Debug, Default)]
struct Meta {
    host: String,
    tag: String,
    labels: Vec<(String, String)>,
}

impl Meta {
    fn from_path(path: &Path, kind: Kind) -> Meta {
        let name = |p: Option<&Path>| {
            p.and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string()
        };
        let file = name(Some(path));
        let dir = path.parent();
        let dir_name = name(dir);
        let grand = dir.and_then(Path::parent);
        let grand_name = name(grand);
        let great_name = name(grand.and_then(Path::parent));

        // kubelet: .../pods/<namespace>_<pod>_<uid>/<container>/<restart>.log
        if great_name == "pods" && !dir_name.is_empty() {
            if let [ns, pod, uid] = grand_name.split('_').collect::<Vec<_>>()[..] {
                if !ns.is_empty() && !pod.is_empty() && !uid.is_empty() {
                    return Meta::kubernetes(ns, pod, &dir_name, None);
                }
            }
        }
        // kubelet symlinks: .../containers/<pod>_<namespace>_<container>-<id>.log
        if dir_name == "containers" {
            if let Some(stem) = file.strip_suffix(".log") {
                if let [pod, ns, rest] = stem.split('_').collect::<Vec<_>>()[..] {
                    if let Some((container, id)) = rest.rsplit_once('-') {
                        if !pod.is_empty() && !ns.is_empty() && !container.is_empty() && is_id(id) {
                            return Meta::kubernetes(ns, pod, container, Some(id));
                        }
                    }
                }
            }
        }
        // Docker: .../containers/<id>/<id>-json.log(.N)
        if grand_name == "containers" && is_id(&dir_name) {
            let container = dir.and_then(docker_name);
            let mut labels = vec![("container.id".to_string(), dir_name.clone())];
            if let Some(n) = &container {
                labels.push(("container.name".to_string(), n.clone()));
            }
            return Meta {
                host: dir_name[..12].to_string(),
                tag: container.as_deref().map_or("docker".into(), token),
                labels,
            };
        }
        Meta {
            host: "-".into(),
            tag: match kind {
                Kind::Docker => "docker".into(),
                Kind::Cri => "container".into(),
            },
            labels: Vec::new(),
        }
    }

    fn kubernetes(ns: &str, pod: &str, container: &str, id: Option<&str>) -> Meta {
        let mut labels = vec![
            ("orchestrator.namespace".to_string(), ns.to_string()),
            ("orchestrator.resource.name".to_string(), pod.to_string()),
            ("container.name".to_string(), container.to_string()),
        ];
        if let Some(id) = id {
            labels.push(("container.id".to_string(), id.to_string()));
        }
        Meta {
            host: token(pod),
            tag: token(container),
            labels,
        }
    }
}

/// A 64-digit hex container id.
fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container name from Docker's `config.v2.json` (`"Name": "/web"`), best effort: the file
/// may be unreadable or absent (logs copied elsewhere), and then the id is all we have.
fn docker_name(dir: &Path) -> Option<String> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "Name")]
        name: String,
    }
    let mut text = Vec::new();
    std::fs::File::open(dir.join("config.v2.json"))
        .ok()?
        .take(4 << 20)
        .read_to_end(&mut text)
        .ok()?;
    let cfg: Config = serde_json::from_slice(&text).ok()?;
    let name = cfg.name.trim_start_matches('/');
    (!name.is_empty()).then(|| name.to_string())
}

/// A header token (host or tag) the detectors accept: `[A-Za-z0-9_.-]`, at most 48 bytes
/// (the RFC 5424 APP-NAME limit; the syslog host extraction looks at most 64 bytes ahead for
/// the tag's colon).
fn token(s: &str) -> String {
    let t: String = s
        .bytes()
        .take(48)
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() {
        "-".into()
    } else {
        t
    }
}

/// Streams are reassembled separately; runtimes only write stdout and stderr.
const STREAMS: usize = 3;

fn stream_index(stream: &[u8]) -> usize {
    match stream {
        b"stdout" => 0,
        b"stderr" => 1,
        _ => 2,
    }
}

/// A line being reassembled from parts.
#[derive(Debug, Default)]
struct Group {
    open: bool,
    /// Offset in this call's `raw` of the group's first raw line.
    start: usize,
    time: Vec<u8>,
    buf: Vec<u8>,
    parts: u32,
    truncated: bool,
}

/// Decoder state that survives between calls; it is committed together with the consumed
/// offset so that input handed again is decoded from the same state.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    /// Per stream: the rest of a line already emitted cut is being skipped.
    skipping: [bool; STREAMS],
    counters: DecodeCounters,
}

struct Decoder {
    kind: Kind,
    host: Vec<u8>,
    tag: Vec<u8>,
    max: usize,
    pending_bound: usize,
    groups: [Group; STREAMS],
    state: State,
}

/// One parsed raw line.
enum Parsed<'a> {
    Part {
        stream: usize,
        time: std::borrow::Cow<'a, [u8]>,
        content: std::borrow::Cow<'a, [u8]>,
        last: bool,
    },
    Malformed,
}

/// A Docker `json-file` entry. `log` is decoded as bytes so that invalid UTF-8 and lone
/// surrogate escapes do not make the line malformed.
#[derive(Deserialize)]
struct DockerEntry<'a> {
    #[serde(borrow)]
    log: Bytes<'a>,
    #[serde(default, borrow)]
    stream: Option<Bytes<'a>>,
    #[serde(default, borrow)]
    time: Option<Bytes<'a>>,
}

/// A JSON string as bytes, borrowed when it has no escapes.
struct Bytes<'a>(std::borrow::Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Bytes(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Bytes(std::borrow::Cow::Owned(v.to_vec())))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Bytes(std::borrow::Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Bytes(std::borrow::Cow::Owned(v.as_bytes().to_vec())))
            }
        }
        // serde_json hands strings to `deserialize_bytes` without UTF-8 validation and with
        // lone surrogates as WTF-8; arrays (`[1,2]`) are refused by the visitor.
        d.deserialize_bytes(V)
    }
}

impl Decoder {
    fn parse<'a>(&self, line: &'a [u8]) -> Parsed<'a> {
        match self.kind {
            Kind::Docker => parse_docker(line),
            Kind::Cri => parse_cri(line),
        }
    }

    /// Writes the decoded line of `g` to `out`.
    fn emit(&self, g: &Group, out: &mut Vec<u8>, state: &mut State) {
        if !has_syslog_header(&g.buf) {
            if looks_like_time(&g.time) {
                out.extend_from_slice(&g.time);
            } else {
                out.push(b'-');
            }
            out.push(b' ');
            out.extend_from_slice(&self.host);
            out.push(b' ');
            out.extend_from_slice(&self.tag);
            out.extend_from_slice(b": ");
        }
        let body = out.len();
        out.extend_from_slice(&g.buf);
        for b in &mut out[body..] {
            if *b == b'\n' {
                *b = b' ';
            }
        }
        out.push(b'\n');
        let c = &mut state.counters;
        c.lines += 1;
        if g.parts > 1 {
            c.reassembled += 1;
        }
        if g.truncated {
            c.truncated += 1;
        }
    }
}

impl LineDecoder for Decoder {
    fn decode(&mut self, raw: &[u8], out: &mut Vec<u8>) -> (usize, u64) {
        let mut state = self.state;
        let mut groups = std::mem::take(&mut self.groups);
        for g in &mut groups {
            g.open = false;
        }
        let mut lines = 0u64;
        let mut committed = (0usize, out.len(), 0u64, state);
        let mut pos = 0;
        while let Some(i) = memchr::memchr(b'\n', &raw[pos..]) {
            let line = &raw[pos..pos + i];
            let end = pos + i + 1;
            match self.parse(line) {
                Parsed::Malformed => {
                    out.extend_from_slice(line);
                    out.push(b'\n');
                    state.counters.malformed += 1;
                    state.counters.lines += 1;
                    lines += 1;
                }
                Parsed::Part {
                    stream,
                    time,
                    content,
                    last,
                } => {
                    if state.skipping[stream] {
                        if last {
                            state.skipping[stream] = false;
                        }
                    } else {
                        let g = &mut groups[stream];
                        if !g.open {
                            g.open = true;
                            g.start = pos;
                            g.time.clear();
                            g.time.extend_from_slice(&time);
                            g.buf.clear();
                            g.parts = 0;
                            g.truncated = false;
                        }
                        g.parts += 1;
                        let room = self.max - g.buf.len();
                        if content.len() > room {
                            g.buf.extend_from_slice(&content[..room]);
                            g.truncated = true;
                        } else {
                            g.buf.extend_from_slice(&content);
                        }
                        if last || g.truncated {
                            self.emit(g, out, &mut state);
                            lines += 1;
                            g.open = false;
                            // The rest of a cut line is skipped up to its last part.
                            state.skipping[stream] = !last;
                        }
                    }
                }
            }
            // A group starved by a busy other stream is cut rather than held forever.
            for (s, g) in groups.iter_mut().enumerate() {
                if g.open && end - g.start > self.pending_bound {
                    g.truncated = true;
                    self.emit(g, out, &mut state);
                    lines += 1;
                    g.open = false;
                    state.skipping[s] = true;
                }
            }
            pos = end;
            if groups.iter().all(|g| !g.open) {
                committed = (pos, out.len(), lines, state);
            }
        }
        let (consumed, out_len, lines, state) = committed;
        out.truncate(out_len);
        self.state = state;
        self.groups = groups;
        (consumed, lines)
    }

    fn counters(&self) -> DecodeCounters {
        self.state.counters
    }
}

fn parse_docker(line: &[u8]) -> Parsed<'_> {
    let Ok(e) = serde_json::from_slice::<DockerEntry>(line) else {
        return Parsed::Malformed;
    };
    let mut content = e.log.0;
    let last = content.last() == Some(&b'\n');
    if last {
        match &mut content {
            std::borrow::Cow::Borrowed(b) => *b = &b[..b.len() - 1],
            std::borrow::Cow::Owned(v) => {
                v.pop();
            }
        }
    }
    Parsed::Part {
        stream: e.stream.map_or(0, |s| stream_index(&s.0)),
        time: e.time.map_or(std::borrow::Cow::Borrowed(&b""[..]), |t| t.0),
        content,
        last,
    }
}

/// `TIME SP STREAM SP TAGS [SP MESSAGE]`, the first tag `P` or `F`.
fn parse_cri(line: &[u8]) -> Parsed<'_> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let (Some(time), Some(stream), Some(tags)) = (fields.next(), fields.next(), fields.next())
    else {
        return Parsed::Malformed;
    };
    let content = fields.next().unwrap_or(b"");
    let first_tag = tags.split(|&b| b == b':').next().unwrap_or(b"");
    let last = match first_tag {
        b"F" => true,
        b"P" => false,
        _ => return Parsed::Malformed,
    };
    if !looks_like_time(time) || stream.is_empty() {
        return Parsed::Malformed;
    }
    Parsed::Part {
        stream: stream_index(stream),
        time: std::borrow::Cow::Borrowed(time),
        content: std::borrow::Cow::Borrowed(content),
        last,
    }
}

/// `YYYY-MM-DDThh:mm:ss` followed by non-space bytes (fraction, zone): the runtimes' RFC 3339.
fn looks_like_time(t: &[u8]) -> bool {
    let d = |i: usize| t.get(i).is_some_and(u8::is_ascii_digit);
    t.len() >= 19
        && t.len() <= 40
        && (0..4).all(d)
        && t[4] == b'-'
        && d(5)
        && d(6)
        && t[7] == b'-'
        && d(8)
        && d(9)
        && (t[10] == b'T' || t[10] == b't')
        && d(11)
        && d(12)
        && t[13] == b':'
        && d(14)
        && d(15)
        && t[16] == b':'
        && d(17)
        && d(18)
        && !t.iter().any(|b| b.is_ascii_whitespace())
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Whether `m` starts with a syslog header: `<PRI>1 TIME HOST ` (RFC 5424), or an optional
/// `<PRI>`, an RFC 3164 (`Mar  1 10:00:00`, optional fraction) or RFC 3339 time, then at most
/// one host token (no `[`, not ending in `:`) and a tag token ending in `:`.
pub fn has_syslog_header(m: &[u8]) -> bool {
    let mut s = m;
    let mut rfc5424 = false;
    if s.first() == Some(&b'<') {
        match s.iter().take(5).position(|&b| b == b'>') {
            Some(end) if end > 1 && s[1..end].iter().all(u8::is_ascii_digit) => {
                s = &s[end + 1..];
                if let Some(rest) = s.strip_prefix(b"1 ") {
                    s = rest;
                    rfc5424 = true;
                }
            }
            _ => return false,
        }
    }
    let rest = if s.len() >= 15
        && MONTHS.iter().any(|m| s.starts_with(&m[..]))
        && s[3] == b' '
        && (s[4] == b' ' || s[4].is_ascii_digit())
        && s[5].is_ascii_digit()
        && s[6] == b' '
        && looks_like_clock(&s[7..15])
    {
        // Optional fraction after the seconds.
        let mut i = 15;
        if s.get(i) == Some(&b'.') {
            i += 1;
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        &s[i..]
    } else {
        let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
        if !looks_like_time(&s[..end]) {
            return false;
        }
        &s[end..]
    };
    let Some(rest) = rest.strip_prefix(b" ") else {
        return false;
    };
    let mut tokens = rest.split(|&b| b == b' ');
    if rfc5424 {
        // TIME HOST APP ...: the detectors know the RFC 5424 layout.
        return tokens.next().is_some_and(|t| !t.is_empty()) && tokens.next().is_some();
    }
    for _ in 0..2 {
        let Some(t) = tokens.next() else {
            return false;
        };
        if t.len() > 1 && t.ends_with(b":") {
            return true;
        }
        if t.is_empty() || t.contains(&b'[') {
            return false;
        }
    }
    false
}

fn looks_like_clock(c: &[u8]) -> bool {
    c.len() == 8
        && c[2] == b':'
        && c[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| c[i].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_header_shapes() {
        for yes in [
            "Mar  1 10:00:00 web1 sshd[42]: Failed password",
            "Mar 11 10:00:00.123 web1 sshd[42]: x",
            "Mar  1 10:00:00 sshd[42]: no host",
            "<13>Mar  1 10:00:00 web1 app: x",
            "2026-03-01T10:00:00.123+00:00 web1 sshd-session[5]: x",
            "<13>1 2026-03-01T10:00:00Z web1 sshd 42 - - x",
            "Mar  1 10:00:00 web1 kernel:",
        ] {
            assert!(has_syslog_header(yes.as_bytes()), "{yes}");
        }
        for no in [
            "203.0.113.9 - - [01/Mar/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 1",
            "2026/03/01 10:00:00 [error] 1#1: *5 x",
            "2026-03-01T10:00:00Z INFO started server",
            "Failed password for root from 203.0.113.9 port 1 ssh2",
            "2026-03-01 10:00:00 exim: x",
            "Mar  1 10:00:00 web1 x[1] sshd[1]: forged",
            "<13>",
            "",
        ] {
            assert!(!has_syslog_header(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn tokens_are_header_safe() {
        assert_eq!(token("web-7d9f.x"), "web-7d9f.x");
        assert_eq!(token("a b[c]:"), "a_b_c__");
        assert_eq!(token(""), "-");
        assert_eq!(token(&"x".repeat(100)).len(), 48);
    }
}
