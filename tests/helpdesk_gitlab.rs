//! Contract tests of the GitLab adapter against a fake GitLab (see `support`): request shapes
//! from GitLab's REST API v4 documentation (issues, notes, projects, users), its answers, its
//! silent label drop, its error bodies and its rate-limit headers.

use std::time::Duration;

use serde_json::{json, Value};

use sentinela::policy::Priority;
use sentinela::ticket::adapter::{http_client, Adapter};
use sentinela::ticket::{TicketRef, TicketStatus, UpdateKind};

mod support;
use support::*;

const PROJECT_PATH: &str = "/api/v4/projects/secops%2Fincidents";

fn gitlab(s: &Secrets, base: &str, extra: &str) -> Adapter {
    let text = format!(
        "[[helpdesk]]\nname = \"gl\"\nkind = \"gitlab\"\nurl = \"{base}/\"\ntoken_file = {:?}\n\
         project = \"secops/incidents\"\ntimeout = \"1s\"\nrequests_per_second = 100\n{extra}",
        s.path("token")
    );
    Adapter::from_config(&config(&text)).unwrap()
}

fn key() -> String {
    format!("sentinela::key::{FP}")
}

/// An issue as GitLab shows it (trimmed).
fn issue(iid: u64, state: &str, labels: &[&str]) -> Value {
    json!({"id": 1000 + iid, "iid": iid, "project_id": 42, "title": "SSH brute force",
           "state": state, "labels": labels, "issue_type": "incident", "type": "INCIDENT",
           "created_at": "2026-11-29T04:00:00.000Z",
           "web_url": format!("https://gitlab.example.com/secops/incidents/-/issues/{iid}")})
}

fn assert_gitlab_auth(r: &Recorded) {
    assert_eq!(r.header("PRIVATE-TOKEN"), Some(TOKEN));
    assert_eq!(r.header("Authorization"), None);
    assert_json_headers(r);
}

#[tokio::test]
async fn gitlab_create_posts_an_incident_with_the_key_and_priority_labels() {
    let s = Secrets::new();
    let k = key();
    let fake = Fake::start(vec![reply(
        201,
        issue(12, "opened", &[&k, "priority::2", "security"]),
    )])
    .await;
    let a = gitlab(
        &s,
        &fake.base,
        "create_fields = { labels = [\"security\", \"priority::2\"], weight = 3, confidential = true }\n",
    );
    let c = content();
    let t = a
        .create(&http_client().unwrap(), &c, "### What\n\nmarkdown body\n")
        .await
        .unwrap();
    assert_eq!(t, TicketRef("12".into()));
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1, "no read-back: the create answer is verified");
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, format!("{PROJECT_PATH}/issues"));
    assert_gitlab_auth(r);
    assert_eq!(
        r.json(),
        json!({
            "title": "SSH brute force from 203.0.113.9 \"root\" Injected: header",
            "description": "### What\n\nmarkdown body\n",
            "issue_type": "incident",
            // Ours first; the extra labels added once.
            "labels": format!("{k},priority::2,security"),
            "weight": 3,
            "confidential": true,
        })
    );
    let shown = a.create_request(&c, "b").display_redacted();
    assert!(
        shown.contains("PRIVATE-TOKEN: <redacted>") && !shown.contains(TOKEN),
        "{shown}"
    );
}

#[tokio::test]
async fn gitlab_silently_dropped_labels_are_blocked() {
    let s = Secrets::new();
    // A user below the Planner/Reporter role: GitLab creates the issue without labels.
    let fake = Fake::start(vec![reply(201, issue(13, "opened", &[]))]).await;
    let a = gitlab(&s, &fake.base, "");
    let m = blocked_message(a.create(&http_client().unwrap(), &content(), "b").await);
    assert!(
        m.contains("issue #13 was created without its label")
            && m.contains("Planner/Reporter role")
            && m.starts_with("helpdesk \"gl\": create ticket: "),
        "{m}"
    );
}

#[tokio::test]
async fn gitlab_find_open_searches_the_label_and_compares_exactly() {
    let s = Secrets::new();
    let k = key();
    let upper = format!("sentinela::key::{}", FP.to_uppercase());
    let fake = Fake::start(vec![
        reply(
            200,
            json!([
                issue(3, "opened", &[&upper]),
                issue(9, "opened", &[&k, "priority::1"]),
                issue(5, "opened", &["priority::2", &k]),
                issue(2, "closed", &[&k]),
            ]),
        ),
        reply(200, json!([issue(3, "opened", &[&upper])])),
        reply(200, json!({"message": "not a list"})),
    ])
    .await;
    let a = gitlab(&s, &fake.base, "");
    let client = http_client().unwrap();
    assert_eq!(
        a.find_open(&client, FP).await.unwrap(),
        Some(TicketRef("5".into()))
    );
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    let m = blocked_message(a.find_open(&client, FP).await);
    assert!(
        m.contains("unexpected answer (not a list of issues)"),
        "{m}"
    );
    let r = &fake.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path(), format!("{PROJECT_PATH}/issues"));
    assert_gitlab_auth(r);
    let q = r.query();
    assert_eq!(q.get("labels"), Some(&k));
    assert_eq!(q.get("state").map(String::as_str), Some("opened"));
    assert_eq!(q.get("order_by").map(String::as_str), Some("created_at"));
    assert_eq!(q.get("sort").map(String::as_str), Some("asc"));
    // The label's colons are percent-encoded on the wire.
    assert!(
        r.target.contains("labels=sentinela%3A%3Akey%3A%3A"),
        "{}",
        r.target
    );
}

#[tokio::test]
async fn gitlab_comment_status_reopen_and_priority() {
    let s = Secrets::new();
    let k = key();
    let fake = Fake::start(vec![
        reply(
            201,
            json!({"id": 77, "body": "seen again", "internal": true, "confidential": true,
                   "noteable_type": "Issue", "noteable_iid": 12}),
        ),
        reply(200, issue(12, "closed", &[&k])),
        reply(200, issue(12, "opened", &[&k])),
        reply(200, issue(12, "opened", &[&k])),
        reply(200, issue(12, "opened", &[&k, "priority::1"])),
        reply(200, issue(12, "locked", &[&k])),
    ])
    .await;
    let a = gitlab(&s, &fake.base, "priority_map = { P1 = \"sev::1\" }\n");
    let client = http_client().unwrap();
    let t = TicketRef("12".into());
    let c = content();
    a.comment(&client, &t, &c, UpdateKind::Recurrence, "seen again")
        .await
        .unwrap();
    assert_eq!(a.status(&client, &t).await.unwrap(), TicketStatus::Closed);
    assert_eq!(a.status(&client, &t).await.unwrap(), TicketStatus::Open);
    a.reopen(&client, &t).await.unwrap();
    a.set_priority(&client, &t, Priority::P1).await.unwrap();
    let m = blocked_message(a.status(&client, &t).await);
    assert!(m.contains("no issue state opened/closed"), "{m}");

    let reqs = fake.requests();
    let shape: Vec<(&str, &str, Option<Value>)> = reqs
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.target.as_str(),
                (!r.body.is_empty()).then(|| r.json()),
            )
        })
        .collect();
    let issue_path = format!("{PROJECT_PATH}/issues/12");
    let notes_path = format!("{issue_path}/notes");
    assert_eq!(
        shape,
        vec![
            (
                "POST",
                notes_path.as_str(),
                Some(json!({"body": "seen again", "internal": true}))
            ),
            ("GET", issue_path.as_str(), None),
            ("GET", issue_path.as_str(), None),
            (
                "PUT",
                issue_path.as_str(),
                Some(json!({"state_event": "reopen"}))
            ),
            (
                "PUT",
                issue_path.as_str(),
                Some(json!({"add_labels": "sev::1",
                            "remove_labels": "priority::2,priority::3,priority::4"}))
            ),
            ("GET", issue_path.as_str(), None),
        ]
    );
    for r in &reqs {
        assert_gitlab_auth(r);
    }
}

fn project(access: Option<u64>, issues_enabled: bool, archived: bool) -> Value {
    let permissions = match access {
        Some(l) => json!({"project_access": {"access_level": l, "notification_level": 3},
                          "group_access": null}),
        None => json!({"project_access": null, "group_access": null}),
    };
    json!({"id": 42, "path_with_namespace": "secops/incidents", "archived": archived,
           "issues_enabled": issues_enabled,
           "issues_access_level": if issues_enabled { "enabled" } else { "disabled" },
           "permissions": permissions})
}

#[tokio::test]
async fn gitlab_check_proves_the_token_the_project_and_the_role() {
    let s = Secrets::new();
    let user = json!({"id": 7, "username": "sentinela-bot", "state": "active"});
    let cases: Vec<(Vec<Reply>, Option<&str>)> = vec![
        (
            vec![reply(200, user.clone()), reply(200, project(Some(20), true, false))],
            None,
        ),
        // No role shown (an administrator): not checked.
        (
            vec![reply(200, user.clone()), reply(200, project(None, true, false))],
            None,
        ),
        (
            vec![reply(200, user.clone()), reply(200, project(Some(10), true, false))],
            Some("access level 10 in project \"secops/incidents\": it needs at least the Planner or Reporter role"),
        ),
        (
            vec![reply(200, user.clone()), reply(200, project(Some(30), false, false))],
            Some("project \"secops/incidents\" has issues disabled"),
        ),
        (
            vec![reply(200, user.clone()), reply(200, project(Some(30), true, true))],
            Some("project \"secops/incidents\" is archived"),
        ),
        (
            vec![
                reply(200, user.clone()),
                reply(404, json!({"message": "404 Project Not Found"})),
            ],
            Some("HTTP 404 Not Found: 404 Project Not Found (project \"secops/incidents\" does not exist, or the token's user is not a member"),
        ),
        (
            vec![reply(401, json!({"message": "401 Unauthorized"}))],
            Some("HTTP 401 Unauthorized: 401 Unauthorized (the token was refused: check token_env/token_file"),
        ),
        (
            vec![reply(
                401,
                json!({"error": "invalid_token", "error_description": "Token is expired. You can either do re-authorization or token refresh."}),
            )],
            Some("HTTP 401 Unauthorized: Token is expired."),
        ),
        (
            vec![reply(200, json!({"id": 7, "username": "bot", "state": "blocked"}))],
            Some("the token's user \"bot\" is blocked"),
        ),
    ];
    for (script, want) in cases {
        let fake = Fake::start(script).await;
        let a = gitlab(&s, &fake.base, "");
        assert_ok_or_blocked(a.check(&http_client().unwrap()).await, want);
        let reqs = fake.requests();
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].target.as_str()),
            ("GET", "/api/v4/user")
        );
        assert_gitlab_auth(&reqs[0]);
        if let Some(r) = reqs.get(1) {
            assert_eq!(
                (r.method.as_str(), r.target.as_str()),
                ("GET", PROJECT_PATH)
            );
            assert_gitlab_auth(r);
        }
    }
}

#[tokio::test]
async fn gitlab_failures_are_classified() {
    let s = Secrets::new();
    replay_failures(|base| gitlab(&s, base, "")).await;
}

#[tokio::test]
async fn gitlab_own_error_bodies_and_rate_limit_headers() {
    let s = Secrets::new();
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 40;
    let fake = Fake::start(vec![
        reply(
            400,
            json!({"message": {"title": ["can't be blank"], "issue_type": ["is not included in the list"]}}),
        ),
        // GitLab's throttle answers in plain text; without Retry-After, RateLimit-Reset
        // (unix seconds) says when to come back.
        Reply::Http {
            status: 429,
            headers: vec![
                ("RateLimit-Limit".into(), "600".into()),
                ("RateLimit-Remaining".into(), "0".into()),
                ("RateLimit-Reset".into(), reset.to_string()),
            ],
            body: "Retry later".into(),
        },
        reply_with(
            429,
            &[("Retry-After", "3"), ("RateLimit-Reset", &reset.to_string())],
            json!({"message": "Retry later"}),
        ),
    ])
    .await;
    let a = gitlab(&s, &fake.base, "");
    let client = http_client().unwrap();
    let m = blocked_message(a.create(&client, &content(), "b").await);
    assert!(
        m.contains(
            "HTTP 400 Bad Request: issue_type: is not included in the list; title: can't be blank"
        ),
        "{m}"
    );
    let wait = retry_after(a.create(&client, &content(), "b").await).expect("a wait");
    assert!(
        wait > Duration::from_secs(35) && wait <= Duration::from_secs(40),
        "{wait:?}"
    );
    assert_eq!(
        retry_after(a.create(&client, &content(), "b").await),
        Some(Duration::from_secs(3))
    );
}
