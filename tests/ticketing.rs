//! End to end with a real help desk: the real daemon follows a log file and opens tickets in a
//! real Request Tracker 5 started by `scripts/rt-server.sh` (installed by `.ci/run`).
//!
//! Under `CI=true` a missing RT fails the test; on a developer machine without RT it prints how
//! to install it and returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

mod e2e;
use e2e::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn rt_available() -> bool {
    let ok = Path::new("/usr/share/request-tracker5/libexec/rt-server").exists();
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "Request Tracker is not installed: `scripts/rt-server.sh install` (run by .ci/run)"
        );
        eprintln!("skipping: Request Tracker not installed (scripts/rt-server.sh install)");
    }
    ok
}

/// A running RT, stopped when dropped.
struct Rt {
    dir: tempfile::TempDir,
}

impl Rt {
    fn start() -> Rt {
        let dir = tempfile::tempdir().unwrap();
        let rt = Rt { dir };
        rt.script("start");
        rt
    }

    fn script(&self, cmd: &str) {
        let o = Command::new("bash")
            .arg(format!("{ROOT}/scripts/rt-server.sh"))
            .arg(cmd)
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "rt-server.sh {cmd}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn url(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("url"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    fn get(&self, path: &str) -> Value {
        let token = std::fs::read_to_string(self.token_file()).unwrap();
        let o = Command::new("curl")
            .args([
                "-sS",
                "-H",
                &format!("Authorization: token {}", token.trim()),
            ])
            .arg(format!("{}/REST/2.0/{path}", self.url()))
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
    }

    /// Active tickets carrying this fingerprint.
    fn tickets_for(&self, fp: &str) -> Vec<String> {
        let q = format!("'CF.{{SentinelaFingerprint}}'='{fp}' AND Status='__Active__'");
        let enc: String = q
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.get(&format!("tickets?query={enc}"))["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn comments(&self, id: &str) -> usize {
        self.get(&format!("ticket/{id}/history?fields=Type&per_page=100"))["items"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|i| i["Type"] == "Comment").count())
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(format!("{ROOT}/scripts/rt-server.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

#[test]
fn one_ticket_per_incident_comments_on_recurrence_and_survives_restarts_and_outages() {
    if !rt_available() {
        return;
    }
    let rt = Rt::start();
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("app.log");
    let state = work.path().join("state");
    std::fs::write(work.path().join("det.toml"), DETECTOR).unwrap();
    std::fs::write(&log, "Mar  1 09:59:59 web1 app[1]: hello\n").unwrap();
    let cfg = work.path().join("sentinela.toml");
    std::fs::write(
        &cfg,
        format!(
            "[detectors]\nbuiltin = false\ndirs = [\"det.toml\"]\n[state]\ndir = \"{}\"\n[http]\nlisten = \"\"\n\
             [tickets]\nupdate_interval = \"1s\"\n\
             [[source.file]]\nname = \"app\"\ninclude = [\"{}\"]\nstart_at = \"beginning\"\npoll_interval = \"200ms\"\n\
             [[helpdesk]]\nname = \"rt\"\nkind = \"rt\"\nurl = \"{}\"\nqueue = \"Security\"\ntoken_file = \"{}\"\n",
            state.display(),
            log.display(),
            rt.url(),
            rt.token_file().display()
        ),
    )
    .unwrap();
    let daemon_log = work.path().join("daemon.log");
    let d = Daemon::start(&cfg, &daemon_log);
    let dlog = || std::fs::read_to_string(&daemon_log).unwrap_or_default();

    // An attack: exactly one ticket, with the right priority and custom fields.
    attack(&log, "203.0.113.9", 3);
    let mut fp = None;
    wait_until("the incident", Duration::from_secs(30), || {
        fp = fingerprint_of(&state, "203.0.113.9");
        fp.is_some()
    });
    let fp = fp.unwrap();
    wait_until("the RT ticket", Duration::from_secs(60), || {
        rt.tickets_for(&fp).len() == 1
    });
    let id = rt.tickets_for(&fp)[0].clone();
    let t = rt.get(&format!("ticket/{id}"));
    // High severity on a normal asset is P3, RT priority 50 by the default map.
    assert_eq!(t["Priority"], "50", "{t}");
    assert!(
        t["Subject"]
            .as_str()
            .unwrap()
            .contains("Attack from 203.0.113.9"),
        "{t}"
    );
    let cf = |name: &str| {
        t["CustomFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["values"][0].clone())
    };
    assert_eq!(cf("SentinelaFingerprint"), Some(Value::String(fp.clone())));
    assert_eq!(cf("Severity"), Some(Value::String("high".into())));

    // More attack lines: a comment, not a ticket.
    std::thread::sleep(Duration::from_millis(1200));
    attack(&log, "203.0.113.9", 2);
    wait_until("a comment", Duration::from_secs(60), || {
        rt.comments(&id) >= 1
    });
    assert_eq!(rt.tickets_for(&fp).len(), 1);

    // kill -9 the daemon and restart RT in the middle, with more lines meanwhile.
    d.kill9();
    attack(&log, "203.0.113.9", 2);
    attack(&log, "198.51.100.7", 3);
    rt.script("restart");
    let d = Daemon::start(&cfg, &daemon_log);
    wait_until("the second incident", Duration::from_secs(30), || {
        fingerprint_of(&state, "198.51.100.7").is_some()
    });
    let fp2 = fingerprint_of(&state, "198.51.100.7").unwrap();
    wait_until("the second ticket", Duration::from_secs(60), || {
        rt.tickets_for(&fp2).len() == 1
    });
    wait_until("a second comment", Duration::from_secs(60), || {
        rt.comments(&id) >= 2
    });

    // The help desk goes down: incidents are recorded, operations wait; it comes back: the
    // ticket appears.
    rt.script("stop");
    std::thread::sleep(Duration::from_millis(1200));
    attack(&log, "192.0.2.44", 3);
    wait_until("the third incident", Duration::from_secs(30), || {
        fingerprint_of(&state, "192.0.2.44").is_some()
    });
    let fp3 = fingerprint_of(&state, "192.0.2.44").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        outbox(&state)
            .iter()
            .any(|o| o["fingerprint"] == fp3.as_str() && o["state"] == "pending"),
        "the create waits in the outbox while RT is down"
    );
    rt.script("restart");
    wait_until(
        "the third ticket after the outage",
        Duration::from_secs(90),
        || rt.tickets_for(&fp3).len() == 1,
    );
    // kill -9, possibly between a create and the recording of its answer: the restarted
    // daemon finds the ticket by its key instead of creating another.
    d.kill9();
    let d = Daemon::start(&cfg, &daemon_log);
    wait_until("the outbox to drain", Duration::from_secs(90), || {
        let ops = outbox(&state);
        !ops.is_empty() && ops.iter().all(|o| o["state"] == "done")
    });
    let _ = Command::new("kill")
        .args(["-TERM", &d.0.id().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(500));
    drop(d);

    // Nothing lost, nothing duplicated.
    for f in [&fp, &fp2, &fp3] {
        assert_eq!(
            rt.tickets_for(f).len(),
            1,
            "exactly one ticket for {f}\n{}",
            dlog()
        );
    }
    let left: Vec<Value> = outbox(&state)
        .into_iter()
        .filter(|o| o["state"] != "done")
        .collect();
    assert!(left.is_empty(), "undelivered operations: {left:?}");
    let counts: Vec<u64> = incidents(&state)
        .iter()
        .map(|i| i["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 7 + 3 + 3, "{counts:?}");
}

impl Rt {
    fn put(&self, path: &str, json: &str) {
        let token = std::fs::read_to_string(self.token_file()).unwrap();
        let ok = Command::new("curl")
            .args([
                "-sS",
                "-f",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/json",
            ])
            .args([
                "-H",
                &format!("Authorization: token {}", token.trim()),
                "-d",
                json,
            ])
            .arg(format!("{}/REST/2.0/{path}", self.url()))
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

fn config(work: &Path, rt: &Rt, token_file: &Path) -> PathBuf {
    std::fs::write(work.join("det.toml"), DETECTOR).unwrap();
    let cfg = work.join("sentinela.toml");
    std::fs::write(
        &cfg,
        format!(
            "[detectors]\nbuiltin = false\ndirs = [\"det.toml\"]\n[state]\ndir = \"{}\"\n[http]\nlisten = \"\"\n\
             [tickets]\nupdate_interval = \"1s\"\n\
             [[source.file]]\nname = \"app\"\ninclude = [\"{}\"]\nstart_at = \"beginning\"\npoll_interval = \"200ms\"\n\
             [[helpdesk]]\nname = \"rt\"\nkind = \"rt\"\nurl = \"{}\"\nqueue = \"Security\"\ntoken_file = \"{}\"\n",
            work.join("state").display(),
            work.join("app.log").display(),
            rt.url(),
            // A token file next to the config is named relative to it.
            match token_file.strip_prefix(work) {
                Ok(rel) => rel.display().to_string(),
                Err(_) => token_file.display().to_string(),
            }
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn a_wrong_token_blocks_operations_until_the_operator_retries_and_closed_tickets_reopen() {
    if !rt_available() {
        return;
    }
    let rt = Rt::start();
    let work = tempfile::tempdir().unwrap();
    let (log, state) = (work.path().join("app.log"), work.path().join("state"));
    let bad = work.path().join("bad.token");
    std::fs::write(&bad, "1-27-00000000000000000000000000000000\n").unwrap();
    let cfg = config(work.path(), &rt, &bad);
    let dlog = work.path().join("daemon.log");
    let d = Daemon::start(&cfg, &dlog);
    attack(&log, "203.0.113.50", 3);
    wait_until("a blocked create", Duration::from_secs(60), || {
        outbox(&state).iter().any(|o| o["state"] == "blocked")
    });
    let fp = fingerprint_of(&state, "203.0.113.50").unwrap();
    assert!(rt.tickets_for(&fp).is_empty());
    let blocked = outbox(&state);
    assert!(
        blocked[0]["last_error"].as_str().unwrap().contains("401"),
        "{blocked:?}"
    );
    assert!(
        !blocked[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("0000000000"),
        "the token is never shown"
    );

    // The operator fixes the token and reloads (SIGHUP: the help desk's worker restarts with
    // the new secret), then retries the blocked operation.
    config(work.path(), &rt, &rt.token_file());
    let _ = Command::new("kill")
        .args(["-HUP", &d.0.id().to_string()])
        .status();
    let reloaded = || {
        std::fs::read_to_string(&dlog)
            .unwrap_or_default()
            .contains("Help desk worker started")
    };
    wait_until("the reload", Duration::from_secs(30), reloaded);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        outbox(&state).iter().any(|o| o["state"] == "blocked"),
        "blocked stays blocked until retried"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_sentinela"))
        .args(["outbox", "retry", "all", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_until(
        "the ticket after the retry",
        Duration::from_secs(60),
        || rt.tickets_for(&fp).len() == 1,
    );
    let id = rt.tickets_for(&fp)[0].clone();

    // The team resolves the ticket; the attack comes back: the ticket is reopened with a
    // comment, not duplicated.
    rt.put(&format!("ticket/{id}"), "{\"Status\":\"resolved\"}");
    assert!(rt.tickets_for(&fp).is_empty());
    std::thread::sleep(Duration::from_millis(1200));
    attack(&log, "203.0.113.50", 2);
    wait_until("the reopened ticket", Duration::from_secs(60), || {
        rt.tickets_for(&fp) == vec![id.clone()]
    });
    wait_until("the reopen comment", Duration::from_secs(30), || {
        rt.comments(&id) >= 1
    });

    // The attack grows past 10x the 3 hits that opened the ticket: RT's priority is raised
    // one step (P3 = 50 to P2 = 70), with a comment that says why.
    let before = rt.comments(&id);
    std::thread::sleep(Duration::from_millis(1200));
    attack(&log, "203.0.113.50", 30);
    wait_until("the escalation", Duration::from_secs(60), || {
        rt.get(&format!("ticket/{id}"))["Priority"] == "70"
    });
    wait_until("the escalation comment", Duration::from_secs(30), || {
        rt.comments(&id) > before
    });
    assert_eq!(rt.tickets_for(&fp), vec![id.clone()]);
    drop(d);
}
