//! End to end with a second real help desk: the real daemon opens issues in a real Redmine 5
//! started by `scripts/redmine-server.sh` (installed by `.ci/run`), with the fingerprint in a
//! custom field "For all projects".
//!
//! Under `CI=true` a missing Redmine fails the test; on a developer machine without it the test
//! prints how to install it and returns.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

mod e2e;
use e2e::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn redmine_available() -> bool {
    let ok = Path::new("/usr/share/redmine/instances").is_dir()
        && Command::new("sh")
            .args(["-c", "command -v thin"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "Redmine is not installed: `scripts/redmine-server.sh install` (run by .ci/run)"
        );
        eprintln!("skipping: Redmine not installed (scripts/redmine-server.sh install)");
    }
    ok
}

/// A running Redmine, stopped when dropped.
struct Redmine {
    dir: tempfile::TempDir,
}

impl Redmine {
    fn start() -> Redmine {
        let r = Redmine {
            dir: tempfile::tempdir().unwrap(),
        };
        r.script("start");
        r
    }

    fn script(&self, cmd: &str) {
        let o = Command::new("bash")
            .arg(format!("{ROOT}/scripts/redmine-server.sh"))
            .arg(cmd)
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "redmine-server.sh {cmd}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name))
            .unwrap()
            .trim()
            .to_string()
    }

    fn api(&self, method: &str, path: &str, body: Option<&str>) -> Value {
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "-f",
            "-X",
            method,
            "-H",
            "Content-Type: application/json",
        ])
        .args(["-H", &format!("X-Redmine-API-Key: {}", self.file("key"))]);
        if let Some(b) = body {
            c.args(["-d", b]);
        }
        let o = c
            .arg(format!("{}{path}", self.file("url")))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{method} {path}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
    }

    /// Issues (any status) whose fingerprint field holds `fp`.
    fn issues_for(&self, fp: &str) -> Vec<Value> {
        let field = self.file("field");
        let v = self.api(
            "GET",
            &format!("/projects/security/issues.json?status_id=*&cf_{field}={fp}&include=journals"),
            None,
        );
        v["issues"].as_array().cloned().unwrap_or_default()
    }

    fn issue(&self, id: u64) -> Value {
        self.api("GET", &format!("/issues/{id}.json?include=journals"), None)["issue"].clone()
    }
}

impl Drop for Redmine {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(format!("{ROOT}/scripts/redmine-server.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

fn notes(issue: &Value) -> Vec<Value> {
    issue["journals"]
        .as_array()
        .map(|j| {
            j.iter()
                .filter(|j| j["notes"].as_str().is_some_and(|n| !n.is_empty()))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn one_redmine_issue_per_incident_private_notes_on_recurrence_restarts_and_reopen() {
    if !redmine_available() {
        return;
    }
    let rm = Redmine::start();
    let work = tempfile::tempdir().unwrap();
    let (log, state) = (work.path().join("app.log"), work.path().join("state"));
    std::fs::write(work.path().join("det.toml"), DETECTOR).unwrap();
    std::fs::copy(rm.dir.path().join("key"), work.path().join("redmine.key")).unwrap();
    std::fs::write(&log, "Mar  1 09:59:59 web1 app[1]: hello\n").unwrap();
    let cfg = work.path().join("sentinela.toml");
    std::fs::write(
        &cfg,
        format!(
            "[detectors]\nbuiltin = false\ndirs = [\"det.toml\"]\n[state]\ndir = \"{}\"\n[http]\nlisten = \"\"\n\
             [tickets]\nupdate_interval = \"1s\"\n\
             [[source.file]]\nname = \"app\"\ninclude = [\"{}\"]\nstart_at = \"beginning\"\npoll_interval = \"200ms\"\n\
             [[helpdesk]]\nname = \"redmine\"\nkind = \"redmine\"\nurl = \"{}\"\nproject = \"security\"\n\
             fingerprint_field = \"{}\"\ntoken_file = \"redmine.key\"\n",
            state.display(),
            log.display(),
            rm.file("url"),
            rm.file("field"),
        ),
    )
    .unwrap();

    // The operator's check before going live passes against the real server.
    let o = Command::new(env!("CARGO_BIN_EXE_sentinela"))
        .args(["helpdesk", "test", "redmine", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    let daemon_log = work.path().join("daemon.log");
    let dlog = || std::fs::read_to_string(&daemon_log).unwrap_or_default();
    let d = Daemon::start(&cfg, &daemon_log);

    // An attack: one issue, the fingerprint in the custom field, High severity on a normal
    // asset = P3 = Redmine's "Normal" (id 2) by the default map.
    attack(&log, "203.0.113.9", 3);
    let mut fp = None;
    wait_until("the incident", Duration::from_secs(30), || {
        fp = fingerprint_of(&state, "203.0.113.9");
        fp.is_some()
    });
    let fp = fp.unwrap();
    wait_until("the Redmine issue", Duration::from_secs(60), || {
        rm.issues_for(&fp).len() == 1
    });
    let id = rm.issues_for(&fp)[0]["id"].as_u64().unwrap();
    let issue = rm.issue(id);
    assert_eq!(issue["priority"]["id"], 2, "{issue}");
    assert!(
        issue["subject"]
            .as_str()
            .unwrap()
            .contains("Attack from 203.0.113.9"),
        "{issue}"
    );
    let description = issue["description"].as_str().unwrap();
    assert!(
        description.contains("ATTACK from 203.0.113.9"),
        "{description}"
    );
    assert!(description.contains(&fp), "{description}");

    // More lines: a private note, not a new issue.
    std::thread::sleep(Duration::from_millis(1200));
    attack(&log, "203.0.113.9", 2);
    wait_until("a note", Duration::from_secs(60), || {
        !notes(&rm.issue(id)).is_empty()
    });
    let note = notes(&rm.issue(id))[0].clone();
    assert_eq!(note["private_notes"], true, "{note}");
    assert_eq!(rm.issues_for(&fp).len(), 1);

    // kill -9 the daemon and restart Redmine in the middle: the new incident gets exactly one
    // issue, the old one its next note.
    drop(d);
    attack(&log, "203.0.113.9", 2);
    attack(&log, "198.51.100.7", 3);
    rm.script("restart");
    let d = Daemon::start(&cfg, &daemon_log);
    wait_until("the second incident", Duration::from_secs(30), || {
        fingerprint_of(&state, "198.51.100.7").is_some()
    });
    let fp2 = fingerprint_of(&state, "198.51.100.7").unwrap();
    wait_until("the second issue", Duration::from_secs(60), || {
        rm.issues_for(&fp2).len() == 1
    });
    wait_until("a second note", Duration::from_secs(60), || {
        notes(&rm.issue(id)).len() >= 2
    });

    // The team closes the issue; the attack comes back within the reopen window: the same
    // issue is reopened with a note.
    rm.api(
        "PUT",
        &format!("/issues/{id}.json"),
        Some("{\"issue\": {\"status_id\": 5}}"),
    );
    assert_eq!(rm.issue(id)["status"]["is_closed"], true);
    std::thread::sleep(Duration::from_millis(1200));
    attack(&log, "203.0.113.9", 2);
    wait_until("the reopened issue", Duration::from_secs(60), || {
        rm.issue(id)["status"]["is_closed"] == false
    });
    wait_until("the reopen note", Duration::from_secs(30), || {
        notes(&rm.issue(id)).len() >= 3
    });
    drop(d);
    for f in [&fp, &fp2] {
        assert_eq!(
            rm.issues_for(f).len(),
            1,
            "exactly one issue for {f}\n{}",
            dlog()
        );
    }
}
