//! Docker `json-file` and Kubernetes CRI decoding, on fixtures written here, and the shipped
//! detectors on the decoded output.

use std::path::{Path, PathBuf};

use sentinela::config::{Config, FileFormat};
use sentinela::engine::{Change, Engine, Input};
use sentinela::source::container::{decoder_for, labels_for, DecodeCounters, LineDecoder};
use sentinela::timestamp::{now_millis, TimeParser, Zone};
use serde_json::json;

const ID: &str = "3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";
const T: &str = "2026-03-01T10:00:00.123456789Z";

/// `dir/containers/<ID>/<ID>-json.log`, with a `config.v2.json` naming the container `web`.
fn docker_path(dir: &Path) -> PathBuf {
    let d = dir.join("containers").join(ID);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("config.v2.json"),
        r#"{"ID":"x","Name":"/web","Config":{"Hostname":"3f4e5a6b7c8d"}}"#,
    )
    .unwrap();
    d.join(format!("{ID}-json.log"))
}

/// `dir/pods/<namespace>_<pod>_<uid>/<container>/0.log`.
fn cri_path(dir: &Path, container: &str) -> PathBuf {
    let d = dir
        .join("pods")
        .join("shop_web-7d9f6c5b4-x2x9z_0b6e2f7a-1c3d-4e5f-8a9b-0c1d2e3f4a5b")
        .join(container);
    std::fs::create_dir_all(&d).unwrap();
    d.join("0.log")
}

fn docker(log: &str, stream: &str) -> String {
    format!("{}\n", json!({"log": log, "stream": stream, "time": T}))
}

fn decoder(format: FileFormat, path: &Path, max: usize) -> Box<dyn LineDecoder> {
    decoder_for(format, path, max).expect("a decoder for container formats")
}

/// Decodes `raw` handing the decoder the data as a tailer would: first everything up to each
/// cut, then the unconsumed rest with more data. Returns the output and the bytes consumed.
fn feed(dec: &mut dyn LineDecoder, raw: &[u8], cuts: &[usize]) -> (Vec<u8>, usize, u64) {
    let mut out = Vec::new();
    let mut start = 0;
    let mut lines = 0;
    for &cut in cuts.iter().chain(std::iter::once(&raw.len())) {
        if cut < start {
            continue;
        }
        let before = out.len();
        let (used, n) = dec.decode(&raw[start..cut], &mut out);
        assert_eq!(
            out[before..].iter().filter(|&&b| b == b'\n').count() as u64,
            n,
            "returned line count matches the output"
        );
        assert!(
            used == 0 || raw[start + used - 1] == b'\n',
            "consumed at a line end"
        );
        start += used;
        lines += n;
    }
    (out, start, lines)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn docker_16k_split_line_is_reassembled_and_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let path = docker_path(dir.path());
    let long: String = (0..40_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let mut raw = String::new();
    raw += &docker(&long[..16_384], "stdout");
    // stderr interleaves between the parts of the stdout line.
    raw += &docker("error: something\n", "stderr");
    raw += &docker(&long[16_384..32_768], "stdout");
    raw += &docker(&format!("{}\n", &long[32_768..]), "stdout");
    raw += &docker("short\n", "stdout");

    let mut dec = decoder(FileFormat::Docker, &path, 64 * 1024);
    let (out, used, lines) = feed(dec.as_mut(), raw.as_bytes(), &[]);
    assert_eq!(used, raw.len());
    assert_eq!(lines, 3);
    let out = text(&out);
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got[0], format!("{T} 3f4e5a6b7c8d web: error: something"));
    assert_eq!(got[1], format!("{T} 3f4e5a6b7c8d web: {long}"));
    assert_eq!(got[2], format!("{T} 3f4e5a6b7c8d web: short"));
    assert_eq!(
        dec.counters(),
        DecodeCounters {
            lines: 3,
            reassembled: 1,
            truncated: 0,
            malformed: 0
        }
    );
    assert_eq!(
        labels_for(FileFormat::Docker, &path),
        [
            ("container.id".to_string(), ID.to_string()),
            ("container.name".to_string(), "web".to_string()),
        ]
    );
    assert!(decoder_for(FileFormat::Plain, &path, 100).is_none());
    assert!(labels_for(FileFormat::Plain, &path).is_empty());
}

#[test]
fn output_does_not_depend_on_how_the_file_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = cri_path(dir.path(), "app");
    let lines = [
        format!("{T} stdout F one\n"),
        format!("{T} stdout P two-a \n"),
        format!("{T} stderr P err-a \n"),
        format!("{T} stdout P two-b \n"),
        format!("{T} stderr F err-b\n"),
        format!("{T} stdout F two-c\n"),
        format!("{T} stdout F three\n"),
    ];
    let raw = lines.concat();
    let ends: Vec<usize> = lines
        .iter()
        .scan(0, |n, l| {
            *n += l.len();
            Some(*n)
        })
        .collect();
    let (whole, used, _) = feed(
        decoder(FileFormat::Cri, &path, 1000).as_mut(),
        raw.as_bytes(),
        &[],
    );
    assert_eq!(used, raw.len());
    assert_eq!(
        text(&whole),
        format!(
            "{T} web-7d9f6c5b4-x2x9z app: one\n{T} web-7d9f6c5b4-x2x9z app: err-a err-b\n\
             {T} web-7d9f6c5b4-x2x9z app: two-a two-b two-c\n{T} web-7d9f6c5b4-x2x9z app: three\n"
        )
    );
    for a in 0..ends.len() {
        for b in a..ends.len() {
            let mut dec = decoder(FileFormat::Cri, &path, 1000);
            let (out, used, _) = feed(dec.as_mut(), raw.as_bytes(), &[ends[a], ends[b]]);
            assert_eq!(used, raw.len());
            assert_eq!(text(&out), text(&whole), "cuts after lines {a} and {b}");
            assert_eq!(dec.counters().lines, 4);
            assert_eq!(dec.counters().reassembled, 2);
        }
    }
}

#[test]
fn an_unfinished_group_stops_consumption_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = cri_path(dir.path(), "app");
    let first = format!("{T} stdout F done\n");
    let open = format!("{T} stdout P half \n{T} stdout P more \n");
    let other = format!("{T} stderr F other stream\n");
    let raw = format!("{first}{open}{other}");
    let mut dec = decoder(FileFormat::Cri, &path, 1000);
    let mut out = Vec::new();
    let (used, n) = dec.decode(raw.as_bytes(), &mut out);
    assert_eq!(used, first.len(), "stops before the open group");
    assert_eq!(n, 1);
    assert_eq!(text(&out), format!("{T} web-7d9f6c5b4-x2x9z app: done\n"));
    assert_eq!(dec.counters().lines, 1);

    // The same bytes again, now with the end of the group.
    let rest = format!("{open}{other}{T} stdout F end\n");
    let mut out = Vec::new();
    let (used, n) = dec.decode(rest.as_bytes(), &mut out);
    assert_eq!((used, n), (rest.len(), 2));
    assert_eq!(
        text(&out),
        format!(
            "{T} web-7d9f6c5b4-x2x9z app: other stream\n{T} web-7d9f6c5b4-x2x9z app: half more end\n"
        )
    );
    assert_eq!(dec.counters().lines, 3);

    // Nothing complete: nothing consumed, nothing written.
    let mut out = Vec::new();
    assert_eq!(dec.decode(open.as_bytes(), &mut out), (0, 0));
    assert!(out.is_empty());
    // A raw line without its newline is not read.
    assert_eq!(
        dec.decode(format!("{T} stdout F x").as_bytes(), &mut out),
        (0, 0)
    );
}

#[test]
fn oversized_groups_are_cut_counted_and_do_not_stall() {
    let dir = tempfile::tempdir().unwrap();
    let path = docker_path(dir.path());
    let part = "p".repeat(600);
    let mut raw = String::new();
    for _ in 0..5 {
        raw += &docker(&part, "stdout");
    }
    raw += &docker("tail of the long line\n", "stdout");
    raw += &docker("next\n", "stdout");
    let mut dec = decoder(FileFormat::Docker, &path, 1000);
    let (out, used, lines) = feed(dec.as_mut(), raw.as_bytes(), &[]);
    assert_eq!(used, raw.len());
    assert_eq!(lines, 2);
    assert_eq!(
        text(&out),
        format!(
            "{T} 3f4e5a6b7c8d web: {}\n{T} 3f4e5a6b7c8d web: next\n",
            "p".repeat(1000)
        )
    );
    assert_eq!(dec.counters().truncated, 1);

    // The cut line is emitted as soon as it reaches the cap: the rest of its parts are consumed
    // even before its last part arrives.
    let mut dec = decoder(FileFormat::Docker, &path, 1000);
    let parts: String = (0..5).map(|_| docker(&part, "stdout")).collect();
    let mut out = Vec::new();
    assert_eq!(dec.decode(parts.as_bytes(), &mut out), (parts.len(), 1));

    // A group starved by a busy other stream is cut once far behind.
    let dir2 = tempfile::tempdir().unwrap();
    let path2 = cri_path(dir2.path(), "app");
    let mut raw = format!("{T} stdout P starved \n");
    let filler = format!("{T} stderr F {}\n", "e".repeat(60));
    while raw.len() < 70_000 {
        raw += &filler;
    }
    let mut dec = decoder(FileFormat::Cri, &path2, 100);
    let mut out = Vec::new();
    let (used, n) = dec.decode(raw.as_bytes(), &mut out);
    assert!(
        used > 66_000,
        "consumption moved past the starved group: {used}"
    );
    assert!(text(&out).contains(" app: starved \n"));
    assert!(n > 600);
    assert_eq!(dec.counters().truncated, 1);
}

#[test]
fn malformed_lines_pass_through_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = docker_path(dir.path());
    let raw = format!(
        "not json at all\n{{\"log\":\"cut off\n{}{{\"stream\":\"stdout\"}}\n",
        docker("fine\n", "stdout")
    );
    let mut dec = decoder(FileFormat::Docker, &path, 1000);
    let (out, used, lines) = feed(dec.as_mut(), raw.as_bytes(), &[]);
    assert_eq!(used, raw.len());
    assert_eq!(lines, 4);
    assert_eq!(
        text(&out),
        format!(
            "not json at all\n{{\"log\":\"cut off\n{T} 3f4e5a6b7c8d web: fine\n{{\"stream\":\"stdout\"}}\n"
        )
    );
    assert_eq!(dec.counters().malformed, 3);

    let cri = cri_path(dir.path(), "app");
    let raw = format!("garbage line\n{T} stdout X bad tag\n\n{T} stdout F ok\n");
    let mut dec = decoder(FileFormat::Cri, &cri, 1000);
    let (out, used, _) = feed(dec.as_mut(), raw.as_bytes(), &[]);
    assert_eq!(used, raw.len());
    assert_eq!(
        text(&out),
        format!("garbage line\n{T} stdout X bad tag\n\n{T} web-7d9f6c5b4-x2x9z app: ok\n")
    );
    assert_eq!(dec.counters().malformed, 3);
}

#[test]
fn invalid_utf8_in_json_strings_is_kept_as_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = docker_path(dir.path());
    let mut raw = Vec::new();
    raw.extend_from_slice(br#"{"log":"caf\u00e9 \udce9 \ud800x "#);
    raw.push(0xff);
    raw.extend_from_slice(br#" end\n","stream":"stdout","time":"2026-03-01T10:00:00Z"}"#);
    raw.push(b'\n');
    let mut dec = decoder(FileFormat::Docker, &path, 1000);
    let (out, used, lines) = feed(dec.as_mut(), &raw, &[]);
    assert_eq!((used, lines), (raw.len(), 1));
    let mut want = b"2026-03-01T10:00:00Z 3f4e5a6b7c8d web: caf\xc3\xa9 ".to_vec();
    want.extend_from_slice(b"\xed\xb3\xa9 \xed\xa0\x80x \xff end\n"); // WTF-8 surrogates
    assert_eq!(out, want);
    assert_eq!(dec.counters().malformed, 0);
}

#[test]
fn metadata_from_kubelet_and_docker_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = cri_path(dir.path(), "nginx");
    assert_eq!(
        labels_for(FileFormat::Cri, &path),
        [
            ("orchestrator.namespace".to_string(), "shop".to_string()),
            (
                "orchestrator.resource.name".to_string(),
                "web-7d9f6c5b4-x2x9z".to_string()
            ),
            ("container.name".to_string(), "nginx".to_string()),
        ]
    );
    let link =
        Path::new("/var/log/containers").join(format!("web-7d9f6c5b4-x2x9z_shop_nginx-{ID}.log"));
    assert_eq!(
        labels_for(FileFormat::Cri, &link),
        [
            ("orchestrator.namespace".to_string(), "shop".to_string()),
            (
                "orchestrator.resource.name".to_string(),
                "web-7d9f6c5b4-x2x9z".to_string()
            ),
            ("container.name".to_string(), "nginx".to_string()),
            ("container.id".to_string(), ID.to_string()),
        ]
    );
    // Docker without config.v2.json: the id only; the tag is `docker`.
    let bare = dir.path().join("containers").join(ID.replace('3', "4"));
    std::fs::create_dir_all(&bare).unwrap();
    let bare = bare.join("x-json.log.1");
    assert_eq!(labels_for(FileFormat::Docker, &bare).len(), 1);
    let mut out = Vec::new();
    decoder(FileFormat::Docker, &bare, 100).decode(docker("hi\n", "stdout").as_bytes(), &mut out);
    assert_eq!(text(&out), format!("{T} 4f4e5a6b7c8d docker: hi\n"));
    // Unknown layout: no labels, neutral header.
    let other = dir.path().join("app.log");
    assert!(labels_for(FileFormat::Cri, &other).is_empty());
    let mut out = Vec::new();
    decoder(FileFormat::Cri, &other, 100).decode(format!("{T} stdout F hi\n").as_bytes(), &mut out);
    assert_eq!(text(&out), format!("{T} - container: hi\n"));
}

/// Detector id and fields of a hit.
type Hit = (String, Vec<(String, String)>);

/// Runs the shipped pack over `data`, with correlation: hits and the detectors of opened
/// incidents.
fn detect(name: &str, data: &[u8]) -> (Vec<Hit>, Vec<String>) {
    let cfg = Config::default();
    let mut engine = Engine::new(cfg.build().unwrap(), cfg.file.engine.clone());
    let mut input = Input::new(name, TimeParser::new(Zone::Local, now_millis()));
    let mut hits = Vec::new();
    let changes = engine.process_block(data, &mut input, true, |e, _, h| {
        hits.push((
            e.detectors.detectors[h.detector].id.clone(),
            h.fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    });
    let opened = changes
        .iter()
        .filter_map(|c| match c {
            Change::Opened(i) => Some(engine.incidents[*i].detector.clone()),
            _ => None,
        })
        .collect();
    (hits, opened)
}

fn field<'a>(fields: &'a [(String, String)], k: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[test]
fn shipped_detectors_match_decoded_container_logs() {
    let dir = tempfile::tempdir().unwrap();

    // Docker nginx: access log (bare, prefixed on decoding) with a path traversal, and an
    // error-log basic auth failure.
    let path = docker_path(dir.path());
    let raw = [
        docker("203.0.113.10 - - [01/Mar/2026:10:00:00 +0000] \"GET /static/../../../../etc/passwd HTTP/1.1\" 400 153 \"-\" \"Mozilla/5.0\"\n", "stdout"),
        docker("2026/03/01 10:00:00 [error] 29#29: *5 user \"bob\": password mismatch, client: 203.0.113.11, server: example.com, request: \"GET / HTTP/1.1\", host: \"example.com\"\n", "stderr"),
    ]
    .concat();
    let mut out = Vec::new();
    decoder(FileFormat::Docker, &path, 64 * 1024).decode(raw.as_bytes(), &mut out);
    let (hits, _) = detect(&path.display().to_string(), &out);
    let traversal = hits
        .iter()
        .find(|(id, _)| id == "http.path-traversal")
        .unwrap_or_else(|| panic!("no path traversal hit in {}: {hits:?}", text(&out)));
    assert_eq!(field(&traversal.1, "source.address"), Some("203.0.113.10"));
    assert_eq!(
        field(&traversal.1, "url.original"),
        Some("/static/../../../../etc/passwd")
    );
    assert_eq!(field(&traversal.1, "host.name"), Some("3f4e5a6b7c8d"));
    let auth = hits
        .iter()
        .find(|(id, _)| id == "nginx.basic-auth-failure")
        .unwrap_or_else(|| panic!("no basic auth hit: {hits:?}"));
    assert_eq!(field(&auth.1, "source.address"), Some("203.0.113.11"));

    // CRI sshd container whose syslog daemon writes to stdout: lines keep their own header
    // (split by the runtime into P/F parts), five failures open an incident.
    let cri = cri_path(dir.path(), "sshd");
    let mut raw = String::new();
    for i in 0..5 {
        raw +=
            &format!("{T} stdout P Mar  1 10:00:0{i} sshd-0 sshd[42]: Failed password for root \n");
        raw += &format!("{T} stdout F from 203.0.113.9 port 5221{i} ssh2\n");
    }
    // An application printing attacker-chosen text cannot pose as sshd.
    raw +=
        &format!("{T} stdout F sshd[1]: Failed password for root from 198.51.100.66 port 1 ssh2\n");
    let mut out = Vec::new();
    let (used, n) = decoder(FileFormat::Cri, &cri, 64 * 1024).decode(raw.as_bytes(), &mut out);
    assert_eq!((used, n), (raw.len(), 6));
    let (hits, opened) = detect(&cri.display().to_string(), &out);
    let failures: Vec<_> = hits
        .iter()
        .filter(|(id, _)| id == "ssh.password-failure")
        .collect();
    assert_eq!(failures.len(), 5, "{}\n{hits:?}", text(&out));
    for (_, f) in &failures {
        assert_eq!(field(f, "source.address"), Some("203.0.113.9"));
        assert_eq!(field(f, "host.name"), Some("sshd-0"));
    }
    assert!(
        !hits
            .iter()
            .any(|(_, f)| field(f, "source.address") == Some("198.51.100.66")),
        "forged line matched: {hits:?}"
    );
    assert!(
        opened.contains(&"ssh.password-failure".to_string()),
        "{opened:?}"
    );
}
