//! Drives the real `sentinela` binary in temporary directories: one test per feature or
//! regression, named after what it proves.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sentinela"));
    // Deterministic: RFC 3164 times read as UTC, no system config involved.
    c.env_remove("RUST_LOG");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run sentinela")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// A config with only the given detectors (no shipped pack) and UTC timestamps.
fn own_config(dir: &Path, detectors: &str, extra: &str) -> PathBuf {
    write(dir, "det.toml", detectors);
    write(
        dir,
        "sentinela.toml",
        format!("[detectors]\nbuiltin = false\ndirs = [\"det.toml\"]\n[engine]\ntimezone = \"UTC\"\n{extra}"),
    )
}

const BRUTE: &str = r#"
[[detector]]
id = "t.brute"
title = "Brute force from {source.address}"
category = "intrusion-attempts"
severity = "medium"
patterns = ['''\bsshd\[\d+\]: Failed password for (?:invalid user )?(?P<user.name>.*) from (?P<source.address>\S+) port \d+(?: ssh2)?$''']
key = ["source.address"]
threshold = { count = 3, window = "10m" }

[[detector]]
id = "t.root"
title = "Root attempt from {source.address}"
category = "intrusion-attempts"
severity = "high"
patterns = ['''\bsshd\[\d+\]: Failed password for root from (?P<source.address>\S+) port \d+(?: ssh2)?$''']
key = ["source.address"]

[[detector]]
id = "t.success-after"
title = "Login after failures from {source.address}"
category = "intrusions"
severity = "critical"
patterns = ['''\bsshd\[\d+\]: Accepted \w+ for (?P<user.name>.*) from (?P<source.address>\S+) port \d+(?: ssh2)?$''']
key = ["source.address"]
after = { detectors = ["t.brute"], count = 3, window = "10m" }
"#;

fn fail_line(min: u32, sec: u32, user: &str, addr: &str) -> String {
    format!("Mar  1 10:{min:02}:{sec:02} web1 sshd[42]: Failed password for {user} from {addr} port 4000 ssh2\n")
}

fn scan_json(args: &[&str]) -> Value {
    let o = run(args);
    assert!(o.status.success(), "scan failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("scan --format json prints JSON")
}

fn incidents_of<'a>(doc: &'a Value, detector: &str) -> Vec<&'a Value> {
    doc["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["detector"] == detector)
        .collect()
}

#[test]
fn sample_dry_run_finds_the_shipped_attacks_and_sends_nothing() {
    let o = run(&["scan", "--sample"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("Nothing was sent (dry run)"), "{text}");
    let doc = scan_json(&["scan", "--sample", "--format", "json"]);
    let sources: Vec<&str> = doc["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["fields"]["source.address"].as_str())
        .collect();
    for attacker in [
        "203.0.113.45",
        "198.51.100.23",
        "203.0.113.77",
        "203.0.113.99",
        "198.51.100.200",
    ] {
        assert!(
            sources.contains(&attacker),
            "no incident for {attacker}: {sources:?}"
        );
    }
    // The forged address inside an attacker-chosen user name is never a source.
    assert!(!sources.contains(&"192.0.2.1"), "{sources:?}");
    // A user who failed once and then logged in is not an incident.
    assert!(!sources.contains(&"192.0.2.55"), "{sources:?}");
    let success = incidents_of(&doc, "ssh.success-after-failures");
    assert_eq!(success.len(), 1);
    assert_eq!(success[0]["priority"], "P1");
    assert_eq!(success[0]["fields"]["source.address"], "203.0.113.99");
}

#[test]
fn scan_json_has_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = own_config(dir.path(), BRUTE, "");
    let log: String = (0..4)
        .map(|i| fail_line(0, i * 10, "bob", "203.0.113.9"))
        .collect();
    let log = write(dir.path(), "auth.log", log);
    let doc = scan_json(&[
        "scan",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        log.to_str().unwrap(),
    ]);
    let inc = &doc["incidents"][0];
    for key in [
        "fingerprint",
        "detector",
        "category",
        "severity",
        "priority",
        "count",
        "first_seen",
        "last_seen",
        "fields",
        "evidence",
    ] {
        assert!(!inc[key].is_null(), "incident lacks {key}: {inc}");
    }
    assert_eq!(inc["detector"], "t.brute");
    assert_eq!(inc["count"], 4);
    assert_eq!(inc["priority"], "P3");
    assert_eq!(
        inc["first_seen"],
        "2026-03-01T10:00:00Z".replace("2026", &year_of(&doc))
    );
    assert_eq!(inc["fields"]["source.address"], "203.0.113.9");
    assert_eq!(inc["evidence"].as_array().unwrap().len(), 4);
    let s = &doc["summary"];
    assert_eq!(s["lines"], 4);
    assert_eq!(s["hits"]["t.brute"], 4);
    assert!(s["lines_per_second"].as_f64().is_some());
}

/// RFC 3164 has no year; it is inferred from the file's modification time, so take it from
/// the output rather than hard-coding this year.
fn year_of(doc: &Value) -> String {
    doc["incidents"][0]["first_seen"].as_str().unwrap()[..4].to_string()
}

#[test]
fn thresholds_use_event_time_so_slow_attacks_below_the_window_are_not_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = own_config(dir.path(), BRUTE, "");
    // Three failures, but 6 minutes apart: never 3 within 10 minutes.
    let slow: String = [0, 6, 12]
        .iter()
        .map(|m| fail_line(*m, 0, "bob", "198.51.100.1"))
        .collect();
    // Three failures within a minute from another address.
    let fast: String = (0..3)
        .map(|s| fail_line(20, s, "bob", "198.51.100.2"))
        .collect();
    let log = write(dir.path(), "auth.log", format!("{slow}{fast}"));
    let doc = scan_json(&[
        "scan",
        "-c",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        log.to_str().unwrap(),
    ]);
    let found = incidents_of(&doc, "t.brute");
    assert_eq!(found.len(), 1, "{doc}");
    assert_eq!(found[0]["fields"]["source.address"], "198.51.100.2");
}

#[test]
fn success_after_failures_is_a_critical_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = own_config(dir.path(), BRUTE, "");
    let mut log: String = (0..3)
        .map(|s| fail_line(0, s, "deploy", "203.0.113.5"))
        .collect();
    log.push_str("Mar  1 10:00:30 web1 sshd[43]: Accepted password for deploy from 203.0.113.5 port 4001 ssh2\n");
    // Same success from an address with no failures: not an incident.
    log.push_str("Mar  1 10:00:31 web1 sshd[44]: Accepted password for alice from 192.0.2.8 port 4001 ssh2\n");
    let log = write(dir.path(), "auth.log", log);
    let doc = scan_json(&[
        "scan",
        "-c",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        log.to_str().unwrap(),
    ]);
    let seq = incidents_of(&doc, "t.success-after");
    assert_eq!(seq.len(), 1, "{doc}");
    assert_eq!(seq[0]["fields"]["source.address"], "203.0.113.5");
    assert_eq!(seq[0]["priority"], "P1");
    assert_eq!(seq[0]["severity"], "critical");
}

#[test]
fn allowlists_suppress_and_count_and_assets_raise_priority() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[allowlist]\nnetworks = [\"203.0.113.0/28\"]\n[[asset]]\nname = \"web\"\ncriticality = \"critical\"\nhosts = [\"web*\"]\n";
    let cfg = own_config(dir.path(), BRUTE, extra);
    let mut log: String = (0..3)
        .map(|s| fail_line(0, s, "root", "203.0.113.9"))
        .collect();
    log.push_str(
        &(0..3)
            .map(|s| fail_line(1, s, "root", "198.51.100.9"))
            .collect::<String>(),
    );
    let log = write(dir.path(), "auth.log", log);
    let doc = scan_json(&[
        "scan",
        "-c",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        log.to_str().unwrap(),
    ]);
    let sources: Vec<&str> = doc["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["fields"]["source.address"].as_str().unwrap())
        .collect();
    assert!(
        !sources.contains(&"203.0.113.9"),
        "allowlisted: {sources:?}"
    );
    assert_eq!(doc["summary"]["suppressed"]["t.brute"], 3);
    let root = incidents_of(&doc, "t.root");
    assert_eq!(root.len(), 1);
    // High severity on a critical asset is P1; medium on a critical asset is P2.
    assert_eq!(root[0]["priority"], "P1");
    assert_eq!(incidents_of(&doc, "t.brute")[0]["priority"], "P2");
}

#[test]
fn match_jsonl_prints_one_object_per_hit_with_one_based_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = own_config(dir.path(), BRUTE, "");
    let log = write(
        dir.path(),
        "auth.log",
        format!(
            "noise\n{}noise\n{}",
            fail_line(0, 0, "bob", "192.0.2.3"),
            fail_line(0, 1, "root", "192.0.2.4")
        ),
    );
    let o = run(&[
        "match",
        "-c",
        cfg.to_str().unwrap(),
        "--format",
        "jsonl",
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hits: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert_eq!(hits[0]["line"], 2);
    assert_eq!(hits[0]["detector"], "t.brute");
    assert_eq!(hits[0]["severity"], "medium");
    assert_eq!(hits[0]["file"], log.to_str().unwrap());
    assert_eq!(hits[0]["fields"]["source.address"], "192.0.2.3");
    assert_eq!(hits[0]["fields"]["host.name"], "web1");
    assert!(hits[0]["time"]
        .as_str()
        .unwrap()
        .ends_with("-03-01T10:00:00Z"));
    assert_eq!(hits[1]["line"], 4);
    assert_eq!(hits[2]["line"], 4);
    assert_eq!(hits[2]["detector"], "t.root");
}

#[test]
fn match_reads_stdin_and_lines_without_time_have_null_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = own_config(dir.path(), BRUTE, "");
    let mut child = bin()
        .args([
            "match",
            "-c",
            cfg.to_str().unwrap(),
            "--format",
            "jsonl",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sshd[1]: Failed password for bob from 192.0.2.3 port 1 ssh2")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let hit: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(hit["file"], "-");
    assert!(hit["time"].is_null());
}

#[test]
fn bad_input_never_hides_the_good_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = own_config(dir.path(), BRUTE, "");
    let mut log: Vec<u8> = Vec::new();
    log.extend_from_slice(b"\xff\xfe\x00\x01 binary \x00 garbage\n");
    // Invalid UTF-8 inside the attacker-chosen user name.
    log.extend_from_slice(b"Mar  1 10:00:00 web1 sshd[42]: Failed password for \xc3\x28\xff from 203.0.113.1 port 1 ssh2\n");
    // A 10 MB line.
    log.extend(std::iter::repeat_n(b'A', 10 << 20));
    log.push(b'\n');
    log.extend_from_slice(fail_line(0, 1, "bob", "203.0.113.1").as_bytes());
    log.extend_from_slice(b"\r\n\r\n");
    log.extend_from_slice(fail_line(0, 2, "eve", "203.0.113.1").trim_end().as_bytes()); // no final newline
    let log = write(dir.path(), "auth.log", log);
    let doc = scan_json(&[
        "scan",
        "-c",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        log.to_str().unwrap(),
    ]);
    let brute = incidents_of(&doc, "t.brute");
    assert_eq!(brute.len(), 1, "{doc}");
    assert_eq!(brute[0]["count"], 3);
    assert_eq!(doc["summary"]["truncated_lines"], 1);
    assert_eq!(doc["summary"]["lines"], 7);
    let ev = brute[0]["evidence"][0].as_str().unwrap();
    assert!(
        ev.contains('\u{fffd}'),
        "invalid UTF-8 shown as U+FFFD: {ev}"
    );

    // Binary garbage and an empty file: success, nothing found.
    let garbage: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let g = write(dir.path(), "garbage.bin", garbage);
    let e = write(dir.path(), "empty.log", "");
    let doc = scan_json(&[
        "scan",
        "-c",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        g.to_str().unwrap(),
        e.to_str().unwrap(),
    ]);
    assert_eq!(doc["incidents"].as_array().unwrap().len(), 0);
    assert_eq!(doc["summary"]["bytes"], 200_000);
}

#[test]
fn unreadable_inputs_fail_with_exit_code_3_and_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.log");
    let o = run(&["scan", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("cannot open") && stderr(&o).contains("nope.log"),
        "{}",
        stderr(&o)
    );
    let o = run(&["scan", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn malformed_detector_files_are_reported_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = BRUTE.replacen(
        "threshold = { count = 3, window = \"10m\" }",
        "threshold = { count = 3, window = \"10 parsecs\" }",
        1,
    );
    let cfg = own_config(dir.path(), &bad, "");
    let o = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("det.toml:9:35: invalid duration \"10 parsecs\""),
        "{err}"
    );

    let broken = write(
        dir.path(),
        "broken.toml",
        "[[detector]]\nid = \"x.y\"\npatterns = ['''(unclosed''']\n",
    );
    let o = run(&["test", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("broken.toml:1:1: missing field `title`"),
        "{}",
        stderr(&o)
    );

    let cfg_bad = write(
        dir.path(),
        "bad.toml",
        "[engine]\nmax_line_bytes = \"big\"\n",
    );
    let o = run(&["scan", "--config", cfg_bad.to_str().unwrap(), "--sample"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bad.toml:2:18: invalid type: string \"big\", expected usize"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn detector_test_command_reports_failing_examples_with_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let with_examples = format!(
        "{BRUTE}\ncounterexamples = [\"Mar  1 10:00:00 web1 sshd[1]: Accepted password for bob from 192.0.2.1 port 1 ssh2\"]\n\
         [[detector.examples]]\nline = \"Mar  1 10:00:00 web1 sshd[1]: Accepted password for bob from 192.0.2.1 port 1 ssh2\"\n\
         fields = {{ \"source.address\" = \"192.0.2.99\" }}\n"
    );
    let f = write(dir.path(), "d.toml", with_examples);
    let o = run(&["test", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("FAIL t.success-after"), "{out}");
    assert!(
        out.contains("source.address: expected \"192.0.2.99\", got \"192.0.2.1\""),
        "{out}"
    );
    assert!(out.contains("counterexample matched"), "{out}");
    assert!(
        out.contains("1 passed, 2 failed") || out.contains("0 passed, 2 failed"),
        "{out}"
    );
}

#[test]
fn local_detectors_override_shipped_ones_by_id() {
    let dir = tempfile::tempdir().unwrap();
    // Redefine the shipped ssh.password-failure with an unreachable threshold.
    let over = r#"
[[detector]]
id = "ssh.password-failure"
title = "overridden"
category = "intrusion-attempts"
severity = "low"
patterns = ['''\bsshd\[\d+\]: Failed password for (?:invalid user )?(?P<user.name>.*) from (?P<source.address>\S+) port \d+(?: ssh2)?$''']
key = ["source.address"]
threshold = { count = 1000, window = "1m" }
"#;
    write(dir.path(), "local.toml", over);
    let cfg = write(
        dir.path(),
        "c.toml",
        "[detectors]\ndirs = [\"local.toml\"]\n",
    );
    let before = scan_json(&["scan", "--sample", "--format", "json"]);
    assert!(!incidents_of(&before, "ssh.password-failure").is_empty());
    let after = scan_json(&[
        "scan",
        "--sample",
        "--format",
        "json",
        "-c",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        incidents_of(&after, "ssh.password-failure").is_empty(),
        "{after}"
    );
    let o = run(&["detectors", "-c", cfg.to_str().unwrap()]);
    assert!(stdout(&o).contains("ssh.password-failure"));
    assert!(stdout(&o).contains("1000 in 1m"), "{}", stdout(&o));
}

#[test]
fn check_accepts_the_shipped_config_and_warns_about_unfiltered_patterns() {
    let o = run(&[
        "check",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/sentinela.toml"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(": OK,"));
    let dir = tempfile::tempdir().unwrap();
    let slow = r#"
[[detector]]
id = "t.slow"
title = "x"
category = "other"
severity = "low"
patterns = ['''^(?P<source.address>\d+) \w+$''']
"#;
    let cfg = own_config(dir.path(), slow, "");
    let o = run(&["check", "-c", cfg.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(
        stdout(&o)
            .contains("det.toml:7:13: detector \"t.slow\": pattern has no prefilter literal set whose members all have 3+ bytes"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn usage_errors_exit_2_and_help_lists_commands_and_exit_codes() {
    let o = run(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    for word in ["match", "scan", "test", "check", "Exit codes"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn shipped_detector_examples_all_pass() {
    let o = run(&["test"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(" 0 failed"));
    // Every shipped detector carries positive and negative examples.
    assert!(!stdout(&o).contains("lacks examples"), "{}", stdout(&o));
}

#[test]
fn a_line_hitting_two_prerequisites_counts_once_for_a_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let dets = BRUTE.replace(
        "after = { detectors = [\"t.brute\"], count = 3, window = \"10m\" }",
        "after = { detectors = [\"t.brute\", \"t.root\"], count = 4, window = \"10m\" }",
    );
    let cfg = own_config(dir.path(), &dets, "");
    let success = |addr: &str| {
        format!("Mar  1 10:00:30 web1 sshd[43]: Accepted password for root from {addr} port 4001 ssh2\n")
    };
    // Three failed root passwords are three priors (not six): no incident.
    let mut log: String = (0..3)
        .map(|s| fail_line(0, s, "root", "203.0.113.5"))
        .collect();
    log.push_str(&success("203.0.113.5"));
    // Four are enough.
    log.push_str(
        &(0..4)
            .map(|s| fail_line(0, s, "root", "203.0.113.6"))
            .collect::<String>(),
    );
    log.push_str(&success("203.0.113.6"));
    let log = write(dir.path(), "auth.log", log);
    let doc = scan_json(&[
        "scan",
        "-c",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        log.to_str().unwrap(),
    ]);
    let seq = incidents_of(&doc, "t.success-after");
    assert_eq!(seq.len(), 1, "{doc}");
    assert_eq!(seq[0]["fields"]["source.address"], "203.0.113.6");
}

#[test]
fn dry_run_prints_the_exact_help_desk_requests_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[[helpdesk]]\nname = \"rt\"\nkind = \"rt\"\nurl = \"https://rt.example.com\"\nqueue = \"Security\"\ntoken_env = \"T_RT_TOKEN\"\n\
                 [[helpdesk]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://hooks.example.com/x\"\nhmac_secret_env = \"T_HOOK_KEY\"\n\
                 [tickets]\nstatus_template = \"Our team is on {title}\"\n";
    let cfg = own_config(dir.path(), BRUTE, extra);
    let log: String = (0..3)
        .map(|i| fail_line(0, i, "bob", "203.0.113.9"))
        .collect();
    let log = write(dir.path(), "auth.log", log);
    let o = bin()
        .args([
            "scan",
            "-c",
            cfg.to_str().unwrap(),
            "--format",
            "json",
            log.to_str().unwrap(),
        ])
        .env("T_RT_TOKEN", "1-27-topsecrettoken")
        .env("T_HOOK_KEY", "hmac-key-value")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let all = stdout(&o);
    assert!(
        !all.contains("topsecrettoken") && !all.contains("hmac-key-value"),
        "secret printed"
    );
    let doc: Value = serde_json::from_str(&all).unwrap();
    let fp = doc["incidents"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let reqs = doc["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let rt = reqs.iter().find(|r| r["helpdesk"] == "rt").unwrap();
    assert_eq!(rt["method"], "POST");
    assert_eq!(rt["url"], "https://rt.example.com/REST/2.0/ticket");
    let body: Value = serde_json::from_str(rt["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["CustomFields"]["SentinelaFingerprint"], fp.as_str());
    assert_eq!(body["Queue"], "Security");
    assert!(
        body["Content"]
            .as_str()
            .unwrap()
            .contains("Our team is on Brute force from 203.0.113.9"),
        "the configured status text is in the body: {body}"
    );
    assert!(
        rt["text"]
            .as_str()
            .unwrap()
            .contains("Authorization: <redacted>"),
        "{}",
        rt["text"]
    );
    let hook = reqs.iter().find(|r| r["helpdesk"] == "hook").unwrap();
    let hb: Value = serde_json::from_str(hook["body"].as_str().unwrap()).unwrap();
    assert_eq!(hb["action"], "create");
    assert_eq!(hb["fingerprint"], fp.as_str());
    // Text output says what would be sent, and that nothing was.
    let t = bin()
        .args(["scan", "-c", cfg.to_str().unwrap(), log.to_str().unwrap()])
        .output()
        .unwrap();
    let text = stdout(&t);
    assert!(
        text.contains("Would send to help desk \"rt\"") && text.contains("Nothing was sent"),
        "{text}"
    );
}

/// A local HTTP server answering every request with `status` and `body`; the receiver gets
/// the head (request line and headers) of each request.
fn answer_with(status: u16, body: &'static str) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut head = String::new();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
                head.push_str(&l);
            }
            let _ = tx.send(head);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (base, rx)
}

fn zammad_config(dir: &Path, base: &str) -> PathBuf {
    write(dir, "zammad.token", "zt-secret-123\n");
    write(
        dir,
        "sentinela.toml",
        format!(
            "[[helpdesk]]\nname = \"desk\"\nkind = \"zammad\"\nurl = \"{base}\"\n\
             token_file = \"zammad.token\"\ngroup = \"Security\"\nrequester = \"soc@example.com\"\n\
             [[helpdesk]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{base}/hook\"\n"
        ),
    )
}

#[test]
fn helpdesk_test_makes_one_authenticated_call_and_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    // Accepted: an agent.
    let (base, heads) = answer_with(
        200,
        r#"{"id": 3, "login": "soc-bot", "active": true, "roles": ["Agent"]}"#,
    );
    let cfg = zammad_config(dir.path(), &base);
    let cfg_s = cfg.to_str().unwrap();
    let o = run(&["helpdesk", "test", "desk", "--config", cfg_s]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("GET ") && stdout(&o).contains("/api/v1/users/me"));
    assert!(stdout(&o).contains("OK"), "{}", stdout(&o));
    let head = heads.recv().unwrap();
    assert!(head.starts_with("GET /api/v1/users/me"), "{head}");
    // The secret file is found relative to the config file, and sent, never printed.
    assert!(head.contains("Token token=zt-secret-123"), "{head}");
    assert!(!stdout(&o).contains("zt-secret-123") && !stderr(&o).contains("zt-secret-123"));

    // Refused: the token is wrong; exit 1 with the help desk's own words.
    let (base, _heads) = answer_with(401, r#"{"error": "authentication failed"}"#);
    let cfg = zammad_config(dir.path(), &base);
    let o = run(&[
        "helpdesk",
        "test",
        "desk",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("FAILED") && text.contains("401"), "{text}");
    assert!(text.contains("authentication failed"), "{text}");
    assert!(!text.contains("zt-secret-123"));

    // A webhook cannot be checked without sending an event: said, not pretended.
    let o = run(&[
        "helpdesk",
        "test",
        "hook",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("NOT VERIFIED"), "{}", stdout(&o));

    // An unknown name lists the configured ones.
    let o = run(&[
        "helpdesk",
        "test",
        "dsek",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("desk, hook"), "{}", stderr(&o));

    // `helpdesk list` shows kinds and abilities.
    let o = run(&["helpdesk", "list", "--config", cfg.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(text.contains("desk") && text.contains("zammad") && text.contains("find by key"));
    assert!(text.contains("hook") && text.contains("webhook"), "{text}");
}
