//! Contract tests of the Redmine adapter against a fake Redmine (see `support`): request
//! shapes from Redmine's REST API pages (issues, projects, users, enumerations, issue
//! statuses), its answers, its silent custom field drop and ignored filters, its errors.

use serde_json::{json, Value};

use sentinela::policy::Priority;
use sentinela::ticket::adapter::{http_client, Adapter};
use sentinela::ticket::{TicketRef, TicketStatus, UpdateKind};

mod support;
use support::*;

fn redmine(s: &Secrets, base: &str, extra: &str) -> Adapter {
    let text = format!(
        "[[helpdesk]]\nname = \"rm\"\nkind = \"redmine\"\nurl = \"{base}/\"\ntoken_file = {:?}\n\
         project = \"security\"\ntimeout = \"1s\"\nrequests_per_second = 100\n{extra}",
        s.path("token")
    );
    Adapter::from_config(&config(&text)).unwrap()
}

/// With the fingerprint in custom field 7, and tracker 3.
fn redmine_cf(s: &Secrets, base: &str, extra: &str) -> Adapter {
    redmine(
        s,
        base,
        &format!("fingerprint_field = \"7\"\nissue_type = \"3\"\n{extra}"),
    )
}

fn no_content() -> Reply {
    empty(204)
}

/// An answer without a body, as Redmine sends 204, 401 and most 404.
fn empty(status: u16) -> Reply {
    Reply::Http {
        status,
        headers: vec![],
        body: String::new(),
    }
}

/// An issue as Redmine shows it (trimmed), with custom field 7 when `fp` is given.
fn issue(id: u64, subject: &str, fp: Option<&str>) -> Value {
    let mut cf = vec![json!({"id": 2, "name": "Team", "value": "secops"})];
    if let Some(fp) = fp {
        cf.push(json!({"id": 7, "name": "Fingerprint", "value": fp}));
    }
    json!({"id": id, "project": {"id": 4, "name": "Security"},
           "tracker": {"id": 3, "name": "Incident"}, "status": {"id": 1, "name": "New"},
           "priority": {"id": 3, "name": "High"}, "subject": subject, "description": "...",
           "custom_fields": cf, "created_on": "2026-11-29T04:00:00Z"})
}

fn list(issues: Vec<Value>) -> Value {
    let n = issues.len();
    json!({"issues": issues, "total_count": n, "offset": 0, "limit": 100})
}

fn assert_redmine_auth(r: &Recorded) {
    assert_eq!(r.header("X-Redmine-API-Key"), Some(TOKEN));
    assert_eq!(r.header("Authorization"), None);
    assert_json_headers(r);
}

#[tokio::test]
async fn redmine_create_posts_the_issue_with_the_fingerprint_field() {
    let s = Secrets::new();
    let fake = Fake::start(vec![reply(
        201,
        json!({"issue": issue(31, "SSH", Some(FP))}),
    )])
    .await;
    let a = redmine_cf(
        &s,
        &fake.base,
        "create_fields = { assigned_to_id = 5, custom_fields = [{ id = 2, value = \"secops\" }] }\n",
    );
    let c = content();
    let t = a
        .create(&http_client().unwrap(), &c, "### What\n\nbody\n")
        .await
        .unwrap();
    assert_eq!(t, TicketRef("31".into()));
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1, "the create answer is verified, no read-back");
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/issues.json")
    );
    assert_redmine_auth(r);
    assert_eq!(
        r.json(),
        json!({"issue": {
            "project_id": "security",
            "subject": "SSH brute force from 203.0.113.9 \"root\" Injected: header",
            "description": "### What\n\nbody\n",
            "priority_id": 3,
            "tracker_id": 3,
            "custom_fields": [{"id": 7, "value": FP}, {"id": 2, "value": "secops"}],
            "assigned_to_id": 5,
        }})
    );
    let shown = a.create_request(&c, "b").display_redacted();
    assert!(
        shown.contains("X-Redmine-API-Key: <redacted>") && !shown.contains(TOKEN),
        "{shown}"
    );
}

#[tokio::test]
async fn redmine_without_a_field_tags_the_subject() {
    let s = Secrets::new();
    let fake = Fake::start(vec![reply(
        201,
        json!({"issue": issue(32, &format!("[sentinela:{FP}] SSH"), None)}),
    )])
    .await;
    let a = redmine(&s, &fake.base, "priority_map = { P2 = 5 }\n");
    a.create(&http_client().unwrap(), &content(), "b")
        .await
        .unwrap();
    let body = fake.requests()[0].json();
    assert_eq!(
        body,
        json!({"issue": {
            "project_id": "security",
            "subject": format!("[sentinela:{FP}] SSH brute force from 203.0.113.9 \"root\" Injected: header"),
            "description": "b",
            "priority_id": 5,
        }})
    );
}

#[tokio::test]
async fn redmine_silently_dropped_fingerprint_is_blocked() {
    let s = Secrets::new();
    for (fp, found) in [
        (None, "the field is not on the issue"),
        (Some(""), "it holds \"\""),
        (Some(&FP.to_uppercase()[..]), "it holds \"0F1E"),
    ] {
        let fake = Fake::start(vec![reply(201, json!({"issue": issue(33, "SSH", fp)}))]).await;
        let a = redmine_cf(&s, &fake.base, "");
        let m = blocked_message(a.create(&http_client().unwrap(), &content(), "b").await);
        assert!(
            m.contains("issue #33 was created but custom field 7 does not hold the fingerprint")
                && m.contains(found)
                && m.contains("then close issue #33"),
            "{m}"
        );
    }
}

#[tokio::test]
async fn redmine_find_open_by_custom_field_compares_exactly() {
    let s = Secrets::new();
    let upper = FP.to_uppercase();
    let fake = Fake::start(vec![
        reply(
            200,
            list(vec![
                issue(3, "a", Some(&upper)),
                issue(9, "b", Some(FP)),
                issue(5, "c", Some(FP)),
            ]),
        ),
        reply(200, list(vec![issue(3, "a", Some(&upper))])),
        // The filter was ignored: every open issue came back.
        reply(
            200,
            list(vec![issue(4, "x", Some("other")), issue(5, "c", Some(FP))]),
        ),
        reply(200, json!({"issue": {}})),
    ])
    .await;
    let a = redmine_cf(&s, &fake.base, "");
    let client = http_client().unwrap();
    assert_eq!(
        a.find_open(&client, FP).await.unwrap(),
        Some(TicketRef("5".into()))
    );
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    let m = blocked_message(a.find_open(&client, FP).await);
    assert!(m.contains("field is not \"Used as a filter\""), "{m}");
    let m = blocked_message(a.find_open(&client, FP).await);
    assert!(m.contains("unexpected answer (no issues)"), "{m}");
    let r = &fake.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path(), "/projects/security/issues.json");
    assert_redmine_auth(r);
    let q = r.query();
    assert_eq!(q.get("status_id").map(String::as_str), Some("open"));
    assert_eq!(q.get("cf_7").map(String::as_str), Some(FP));
    assert_eq!(q.get("sort").map(String::as_str), Some("id"));
}

#[tokio::test]
async fn redmine_find_open_by_subject_tag_ignores_forged_tags() {
    let s = Secrets::new();
    let tag = format!("[sentinela:{FP}]");
    let fake = Fake::start(vec![reply(
        200,
        list(vec![
            // Attacker text in a title, after our own tag: a forgery, not the key.
            issue(2, &format!("[sentinela:aaaa] login as {tag}"), None),
            issue(3, &format!("[sentinela:{}] x", FP.to_uppercase()), None),
            issue(8, &format!("{tag} SSH"), None),
        ]),
    )])
    .await;
    let a = redmine(&s, &fake.base, "");
    assert_eq!(
        a.find_open(&http_client().unwrap(), FP).await.unwrap(),
        Some(TicketRef("8".into()))
    );
    let r = &fake.requests()[0];
    assert_eq!(r.path(), "/projects/security/issues.json");
    let q = r.query();
    assert_eq!(q.get("subject"), Some(&format!("~{tag}")));
    assert_eq!(q.get("status_id").map(String::as_str), Some("open"));
    // Brackets and the colon travel percent-encoded (`~` is unreserved).
    assert!(
        r.target.contains("subject=~%5Bsentinela%3A"),
        "{}",
        r.target
    );
}

#[tokio::test]
async fn redmine_comment_status_reopen_and_priority() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        no_content(),
        reply(200, list(vec![])),
        reply(200, list(vec![issue(31, "SSH", None)])),
        no_content(),
        no_content(),
        reply(
            422,
            json!({"errors": ["Priority cannot be blank", "Priority is not included in the list"]}),
        ),
        reply(200, list(vec![issue(31, "a", None), issue(32, "b", None)])),
    ])
    .await;
    let a = redmine(&s, &fake.base, "priority_map = { P1 = 5 }\n");
    let client = http_client().unwrap();
    let t = TicketRef("31".into());
    let c = content();
    a.comment(&client, &t, &c, UpdateKind::Escalation, "raised to P1")
        .await
        .unwrap();
    assert_eq!(a.status(&client, &t).await.unwrap(), TicketStatus::Closed);
    assert_eq!(a.status(&client, &t).await.unwrap(), TicketStatus::Open);
    a.reopen(&client, &t).await.unwrap();
    a.set_priority(&client, &t, Priority::P1).await.unwrap();
    let m = blocked_message(a.set_priority(&client, &t, Priority::P1).await);
    assert!(
        m.contains("HTTP 422 Unprocessable Entity: Priority cannot be blank; Priority is not included in the list"),
        "{m}"
    );
    let m = blocked_message(a.status(&client, &t).await);
    assert!(m.contains("several issues for one issue_id"), "{m}");

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
    let status = "/issues.json?issue_id=31&status_id=open";
    assert_eq!(
        shape,
        vec![
            (
                "PUT",
                "/issues/31.json",
                Some(json!({"issue": {"notes": "raised to P1", "private_notes": true}}))
            ),
            ("GET", status, None),
            ("GET", status, None),
            (
                "PUT",
                "/issues/31.json",
                Some(json!({"issue": {"status_id": 1}}))
            ),
            (
                "PUT",
                "/issues/31.json",
                Some(json!({"issue": {"priority_id": 5}}))
            ),
            (
                "PUT",
                "/issues/31.json",
                Some(json!({"issue": {"priority_id": 5}}))
            ),
            ("GET", status, None),
        ]
    );
    for r in &reqs {
        assert_redmine_auth(r);
    }
}

fn project(trackers: &[u64], fields: &[u64], status: u64) -> Value {
    json!({"project": {
        "id": 4, "name": "Security", "identifier": "security", "status": status,
        "trackers": trackers.iter().map(|i| json!({"id": i, "name": format!("T{i}")})).collect::<Vec<_>>(),
        "issue_custom_fields": fields.iter().map(|i| json!({"id": i, "name": format!("F{i}")})).collect::<Vec<_>>(),
    }})
}

fn priorities(inactive: &[u64]) -> Value {
    let p = |id: u64, name: &str| json!({"id": id, "name": name, "is_default": id == 2, "active": !inactive.contains(&id)});
    json!({"issue_priorities": [p(1, "Low"), p(2, "Normal"), p(3, "High"), p(4, "Urgent"), p(5, "Immediate")]})
}

fn statuses() -> Value {
    json!({"issue_statuses": [
        {"id": 5, "name": "Closed", "is_closed": true},
        {"id": 8, "name": "Triage", "is_closed": false},
        {"id": 1, "name": "New", "is_closed": false},
    ]})
}

#[tokio::test]
async fn redmine_check_verifies_project_tracker_field_priorities_and_learns_the_reopen_status() {
    let s = Secrets::new();
    let user = json!({"user": {"id": 9, "login": "sentinela", "admin": false}});
    let filtered = list(vec![]);
    let fake = Fake::start(vec![
        reply(200, user.clone()),
        reply(200, project(&[1, 3], &[2, 7], 1)),
        reply(200, priorities(&[])),
        reply(200, statuses()),
        reply(200, filtered),
        no_content(),
    ])
    .await;
    let a = redmine_cf(&s, &fake.base, "");
    let client = http_client().unwrap();
    a.check(&client).await.unwrap();
    // The first open status in Redmine's order.
    a.reopen(&client, &TicketRef("31".into())).await.unwrap();
    let reqs = fake.requests();
    let targets: Vec<&str> = reqs.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        vec![
            "/users/current.json",
            "/projects/security.json?include=trackers%2Cissue_custom_fields",
            "/enumerations/issue_priorities.json",
            "/issue_statuses.json",
            "/projects/security/issues.json?status_id=*&cf_7=sentinela-check-no-such-value&limit=1",
            "/issues/31.json",
        ]
    );
    for r in &reqs {
        assert_redmine_auth(r);
    }
    assert_eq!(reqs[5].json(), json!({"issue": {"status_id": 8}}));

    let cases: Vec<(Vec<Reply>, &str)> = vec![
        (
            vec![empty(401)],
            "HTTP 401 Unauthorized (the API key was refused: check token_env/token_file, and that the REST web service is enabled",
        ),
        (
            vec![reply(200, user.clone()), reply(200, project(&[1], &[7], 1))],
            "tracker 3 (`issue_type`) is not enabled for project \"Security\"; it has: 1 T1",
        ),
        // A field the project does not list (Redmine lists only fields enabled on the
        // project, not those "For all projects"): the search probe decides.
        (
            vec![
                reply(200, user.clone()),
                reply(200, project(&[3], &[2], 1)),
                reply(200, priorities(&[])),
                reply(200, statuses()),
                reply(200, list(vec![issue(1, "any", None)])),
            ],
            "the search by custom field 7 returned issues with other values",
        ),
        (
            vec![reply(200, user.clone()), reply(200, project(&[3], &[7], 9))],
            "project \"Security\" is archived",
        ),
        (
            vec![
                reply(200, user.clone()),
                reply(200, project(&[3], &[7], 1)),
                reply(200, priorities(&[4])),
            ],
            "priority P1 maps to priority_id 4, which is inactive",
        ),
        (
            vec![
                reply(200, user.clone()),
                reply(200, project(&[3], &[7], 1)),
                reply(200, priorities(&[])),
                reply(200, statuses()),
                reply(200, list(vec![issue(1, "any", Some("x"))])),
            ],
            "the field is not \"Used as a filter\"",
        ),
        (
            vec![reply(200, user.clone()), empty(404)],
            "HTTP 404 Not Found (project \"security\" or the issue does not exist",
        ),
    ];
    for (script, want) in cases {
        let fake = Fake::start(script).await;
        let a = redmine_cf(&s, &fake.base, "");
        let m = blocked_message(a.check(&client).await);
        assert!(m.contains(want), "got: {m}\nwant: {want}");
    }

    // A "For all projects" field is not listed by the project, and its probe finds nothing:
    // accepted (every create verifies the stored value anyway).
    let fake = Fake::start(vec![
        reply(200, user.clone()),
        reply(200, project(&[3], &[2], 1)),
        reply(200, priorities(&[])),
        reply(200, statuses()),
        reply(200, list(vec![])),
    ])
    .await;
    redmine_cf(&s, &fake.base, "").check(&client).await.unwrap();

    // A priority id Redmine does not define.
    let fake = Fake::start(vec![
        reply(200, user),
        reply(200, project(&[1], &[], 1)),
        reply(200, priorities(&[])),
    ])
    .await;
    let a = redmine(&s, &fake.base, "priority_map = { P1 = 6 }\n");
    let m = blocked_message(a.check(&client).await);
    assert!(
        m.contains("priority P1 maps to priority_id 6, which is not defined; Redmine's issue priorities: 1 Low, 2 Normal"),
        "{m}"
    );
}

#[tokio::test]
async fn redmine_failures_are_classified() {
    let s = Secrets::new();
    replay_failures(|base| redmine_cf(&s, base, "")).await;
}
