//! Contract tests of the Jira adapter against a fake Jira Cloud (see `support`): request
//! shapes from the Jira Cloud platform REST API v3 and the Jira Service Management REST API
//! (issues, JQL search, comments, transitions, priorities, projects, myself, customer
//! requests, request type fields), its answers, its error bodies and its rate-limit headers.

use std::time::Duration;

use serde_json::{json, Value};

use sentinela::policy::Priority;
use sentinela::ticket::adapter::{http_client, Adapter};
use sentinela::ticket::render::{self, BodyFormat};
use sentinela::ticket::{TicketRef, TicketStatus, UpdateKind};

mod support;
use support::*;

/// `printf 'secops@example.com:<TOKEN>' | base64`
const BASIC: &str =
    "Basic c2Vjb3BzQGV4YW1wbGUuY29tOjEtMTQtMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn jira(s: &Secrets, base: &str, extra: &str) -> Adapter {
    let text = format!(
        "[[helpdesk]]\nname = \"jira\"\nkind = \"jira\"\nurl = \"{base}/\"\ntoken_file = {:?}\n\
         username = \"secops@example.com\"\nproject = \"SEC\"\ntimeout = \"1s\"\n\
         requests_per_second = 100\n{extra}",
        s.path("token")
    );
    Adapter::from_config(&config(&text)).unwrap()
}

fn jsm(s: &Secrets, base: &str, extra: &str) -> Adapter {
    jira(
        s,
        base,
        &format!("service_desk_id = \"3\"\nrequest_type_id = \"17\"\n{extra}"),
    )
}

fn label() -> String {
    format!("sentinela-{FP}")
}

fn assert_jira_auth(r: &Recorded) {
    assert_eq!(r.header("Authorization"), Some(BASIC));
    assert_json_headers(r);
}

fn no_content() -> Reply {
    Reply::Http {
        status: 204,
        headers: vec![],
        body: String::new(),
    }
}

#[tokio::test]
async fn jira_create_posts_an_issue_with_an_adf_description_and_the_label() {
    let s = Secrets::new();
    let fake = Fake::start(vec![reply(
        201,
        json!({"id": "10042", "key": "SEC-12", "self": "https://example.atlassian.net/rest/api/3/issue/10042"}),
    )])
    .await;
    let a = jira(
        &s,
        &fake.base,
        "issue_type = \"Incident\"\n\
         create_fields = { labels = [\"security\"], components = [{ name = \"SOC\" }] }\n",
    );
    let c = content();
    assert_eq!(a.body_format(), BodyFormat::Adf);
    let body = render::body(&c, a.body_format(), None);
    let t = a.create(&http_client().unwrap(), &c, &body).await.unwrap();
    assert_eq!(t, TicketRef("SEC-12".into()));
    let reqs = fake.requests();
    assert_eq!(
        reqs.len(),
        1,
        "Jira refuses rather than drops: no read-back"
    );
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/rest/api/3/issue")
    );
    assert_jira_auth(r);
    let sent = r.json();
    let adf: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        sent,
        json!({"fields": {
            "project": {"key": "SEC"},
            "issuetype": {"name": "Incident"},
            "summary": "SSH brute force from 203.0.113.9 \"root\" Injected: header",
            // The ADF document itself, not a string holding it.
            "description": adf,
            "labels": [label(), "security"],
            "priority": {"name": "High"},
            "components": [{"name": "SOC"}],
        }})
    );
    assert_eq!(sent["fields"]["description"]["type"], json!("doc"));
    let shown = a.create_request(&c, &body).display_redacted();
    assert!(
        shown.contains("Authorization: <redacted>") && !shown.contains(BASIC),
        "{shown}"
    );
}

#[tokio::test]
async fn jira_service_management_creates_a_request_then_sets_the_priority() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        reply(
            201,
            json!({"issueId": "10077", "issueKey": "HELP-7", "requestTypeId": "17",
                   "serviceDeskId": "3", "currentStatus": {"status": "Waiting for support"}}),
        ),
        no_content(),
    ])
    .await;
    let a = jsm(&s, &fake.base, "priority_map = { P2 = \"Major\" }\n");
    let c = content();
    let body = render::body(&c, BodyFormat::Adf, None);
    let t = a.create(&http_client().unwrap(), &c, &body).await.unwrap();
    assert_eq!(t, TicketRef("HELP-7".into()));
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/rest/servicedeskapi/request")
    );
    assert_jira_auth(r);
    assert_eq!(r.header("X-ExperimentalApi"), Some("opt-in"));
    assert_eq!(
        r.json(),
        json!({
            "serviceDeskId": "3",
            "requestTypeId": "17",
            "isAdfRequest": true,
            "requestFieldValues": {
                "summary": "SSH brute force from 203.0.113.9 \"root\" Injected: header",
                "description": serde_json::from_str::<Value>(&body).unwrap(),
                "labels": [label()],
            },
        })
    );
    let p = &reqs[1];
    assert_eq!(
        (p.method.as_str(), p.target.as_str()),
        ("PUT", "/rest/api/3/issue/HELP-7")
    );
    assert_jira_auth(p);
    assert_eq!(p.json(), json!({"fields": {"priority": {"name": "Major"}}}));
}

#[tokio::test]
async fn jira_find_open_uses_the_jql_endpoint_and_compares_labels_exactly() {
    let s = Secrets::new();
    let l = label();
    let upper = format!("sentinela-{}", FP.to_uppercase());
    let item = |id: &str, key: &str, labels: &[&str], cat: &str| {
        json!({"id": id, "key": key, "self": "x",
               "fields": {"labels": labels, "created": "2026-11-29T04:00:00.000+0000",
                          "status": {"name": "S", "statusCategory": {"id": 2, "key": cat}}}})
    };
    let fake = Fake::start(vec![
        reply(
            200,
            json!({"isLast": true, "issues": [
                item("10003", "SEC-3", &[&upper], "new"),
                item("10009", "SEC-9", &[&l, "security"], "indeterminate"),
                item("10005", "SEC-5", &[&l], "new"),
                item("10002", "SEC-2", &[&l], "done"),
            ]}),
        ),
        reply(
            200,
            json!({"isLast": true, "issues": [item("10003", "SEC-3", &[&upper], "new")]}),
        ),
        reply(200, json!({"isLast": true, "issues": []})),
    ])
    .await;
    let a = jira(&s, &fake.base, "");
    let client = http_client().unwrap();
    assert_eq!(
        a.find_open(&client, FP).await.unwrap(),
        Some(TicketRef("SEC-5".into()))
    );
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    let r = &fake.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path(), "/rest/api/3/search/jql");
    assert_jira_auth(r);
    let q = r.query();
    assert_eq!(
        q.get("jql"),
        Some(&format!(
            "project = \"SEC\" AND labels = \"{l}\" AND statusCategory != Done ORDER BY created ASC"
        ))
    );
    assert_eq!(
        q.get("fields").map(String::as_str),
        Some("labels,status,created")
    );
    assert_eq!(q.get("maxResults").map(String::as_str), Some("50"));
}

fn issue_status(cat: &str, transitions: Value) -> Value {
    json!({"id": "10012", "key": "SEC-12",
           "fields": {"status": {"name": "Done", "statusCategory": {"id": 3, "key": cat}}},
           "transitions": transitions})
}

#[tokio::test]
async fn jira_comment_status_reopen_and_priority() {
    let s = Secrets::new();
    let to = |id: &str, name: &str, cat: &str| {
        json!({"id": id, "name": name, "hasScreen": false, "isAvailable": true,
               "to": {"name": name, "statusCategory": {"key": cat}}})
    };
    let fake = Fake::start(vec![
        reply(
            201,
            json!({"id": "30001", "jsdPublic": false, "body": {"type": "doc", "version": 1, "content": []}}),
        ),
        reply(
            200,
            issue_status(
                "done",
                json!([to("11", "To Do", "new"), to("31", "Reopened", "indeterminate")]),
            ),
        ),
        no_content(),
        reply(200, issue_status("indeterminate", json!([]))),
        no_content(),
        // Closed with no way out of Done.
        reply(200, json!({"id": "10013", "key": "SEC-13",
                          "fields": {"status": {"statusCategory": {"key": "done"}}},
                          "transitions": [to("41", "Close", "done")]})),
        // SEC-12 closed again, now without a way out: what was learned before is stale.
        reply(200, issue_status("done", json!([to("41", "Close", "done")]))),
        reply(200, json!({"id": "10012", "key": "SEC-12", "fields": {}})),
    ])
    .await;
    let a = jira(&s, &fake.base, "priority_map = { P1 = \"Blocker\" }\n");
    let client = http_client().unwrap();
    let t = TicketRef("SEC-12".into());
    let c = content();
    let text = render::comment(&c, UpdateKind::Recurrence, BodyFormat::Adf, "seen again");
    a.comment(&client, &t, &c, UpdateKind::Recurrence, &text)
        .await
        .unwrap();
    assert_eq!(a.status(&client, &t).await.unwrap(), TicketStatus::Closed);
    a.reopen(&client, &t).await.unwrap();
    assert_eq!(a.status(&client, &t).await.unwrap(), TicketStatus::Open);
    a.set_priority(&client, &t, Priority::P1).await.unwrap();
    let t13 = TicketRef("SEC-13".into());
    assert_eq!(a.status(&client, &t13).await.unwrap(), TicketStatus::Closed);
    // Nothing to post: the comment that follows is all.
    assert!(a.reopen_request(&t13).is_none());
    a.reopen(&client, &t13).await.unwrap();
    assert!(a.reopen_request(&t).is_some());
    assert_eq!(a.status(&client, &t).await.unwrap(), TicketStatus::Closed);
    assert!(a.reopen_request(&t).is_none());
    let m = blocked_message(a.status(&client, &t).await);
    assert!(m.contains("unexpected answer (no status category)"), "{m}");

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
    let comment = json!({
        "body": serde_json::from_str::<Value>(&text).unwrap(),
        "properties": [{"key": "sd.public.comment", "value": {"internal": true}}],
    });
    let status = "/rest/api/3/issue/SEC-12?fields=status&expand=transitions";
    assert_eq!(
        shape,
        vec![
            ("POST", "/rest/api/3/issue/SEC-12/comment", Some(comment)),
            ("GET", status, None),
            // "Reopened" is named like a reopen: preferred over "To Do".
            (
                "POST",
                "/rest/api/3/issue/SEC-12/transitions",
                Some(json!({"transition": {"id": "31"}}))
            ),
            ("GET", status, None),
            (
                "PUT",
                "/rest/api/3/issue/SEC-12",
                Some(json!({"fields": {"priority": {"name": "Blocker"}}}))
            ),
            (
                "GET",
                "/rest/api/3/issue/SEC-13?fields=status&expand=transitions",
                None
            ),
            ("GET", status, None),
            ("GET", status, None),
        ]
    );
    for r in &reqs {
        assert_jira_auth(r);
    }
}

fn myself() -> Value {
    json!({"accountId": "5b10a2844c20165700ede21g", "emailAddress": "secops@example.com",
           "displayName": "Sentinela", "active": true, "accountType": "atlassian"})
}

fn project(types: &[&str]) -> Value {
    json!({"id": "10000", "key": "SEC", "name": "Security", "projectTypeKey": "software",
           "archived": false,
           "issueTypes": types.iter().map(|t| json!({"id": "1", "name": t, "subtask": false}))
               .chain(std::iter::once(json!({"id": "9", "name": "Sub-task", "subtask": true})))
               .collect::<Vec<_>>()})
}

fn priorities(names: &[&str]) -> Value {
    json!({"isLast": true, "maxResults": 100, "startAt": 0, "total": names.len(),
           "values": names.iter().enumerate()
               .map(|(i, n)| json!({"id": (i + 1).to_string(), "name": n, "statusColor": "#d04437"}))
               .collect::<Vec<_>>()})
}

fn request_type_fields(fields: &[(&str, bool)]) -> Value {
    json!({"canRaiseOnBehalfOf": true, "canAddRequestParticipants": true,
           "requestTypeFields": fields.iter()
               .map(|(id, req)| json!({"fieldId": id, "name": id, "required": req, "validValues": []}))
               .collect::<Vec<_>>()})
}

#[tokio::test]
async fn jira_check_proves_account_project_issue_type_and_priorities() {
    let s = Secrets::new();
    let all = ["Highest", "High", "Medium", "Low", "Lowest"];
    let cases: Vec<(Vec<Reply>, Option<&str>)> = vec![
        (
            vec![
                reply(200, myself()),
                reply(200, project(&["Task", "Bug"])),
                reply(200, priorities(&all)),
            ],
            None,
        ),
        (
            vec![reply(200, myself()), reply(200, project(&["Bug", "Story"]))],
            Some("project \"SEC\" has no issue type \"Task\" (`issue_type`); it has: Bug, Story"),
        ),
        (
            vec![
                reply(200, myself()),
                reply(200, project(&["task"])),
                reply(200, priorities(&["P1", "P2"])),
            ],
            Some("priority P1 maps to \"Highest\", which Jira does not have; its priorities: P1, P2"),
        ),
        (
            vec![reply(
                401,
                json!({"errorMessages": ["You are not authenticated. Authentication required to perform this operation."], "errors": {}}),
            )],
            Some("HTTP 401 Unauthorized: You are not authenticated. Authentication required to perform this operation. (the credentials were refused: `username` must be the Atlassian account e-mail"),
        ),
        (
            vec![
                reply(200, myself()),
                reply(404, json!({"errorMessages": ["No project could be found with key 'SEC'."], "errors": {}})),
            ],
            Some("HTTP 404 Not Found: No project could be found with key 'SEC'. (project \"SEC\", the issue or the service desk does not exist"),
        ),
        (
            vec![reply(200, json!({"accountId": "x", "active": false}))],
            Some("the Jira account is deactivated"),
        ),
    ];
    for (script, want) in cases {
        let fake = Fake::start(script).await;
        let a = jira(&s, &fake.base, "");
        assert_ok_or_blocked(a.check(&http_client().unwrap()).await, want);
        let reqs = fake.requests();
        let targets: Vec<&str> = reqs.iter().map(|r| r.target.as_str()).collect();
        let all_targets = [
            "/rest/api/3/myself",
            "/rest/api/3/project/SEC",
            "/rest/api/3/priority/search?maxResults=100",
        ];
        assert_eq!(targets, all_targets[..targets.len()].to_vec());
        for r in &reqs {
            assert_eq!(r.method, "GET");
            assert_jira_auth(r);
        }
    }
}

#[tokio::test]
async fn jira_service_management_check_reads_the_desk_and_the_request_form() {
    let s = Secrets::new();
    let desk = |key: &str| json!({"id": "3", "projectId": "10001", "projectName": "Help", "projectKey": key});
    let form = [("summary", true), ("description", false), ("labels", false)];
    let base = || {
        vec![
            reply(200, myself()),
            reply(200, project(&["Service request"])),
            reply(200, priorities(&["Highest", "High", "Medium", "Low"])),
        ]
    };
    let with = |mut v: Vec<Reply>, more: Vec<Reply>| {
        v.extend(more);
        v
    };
    let cases: Vec<(Vec<Reply>, &str, Option<&str>)> = vec![
        (
            with(
                base(),
                vec![
                    reply(200, request_type_fields(&form)),
                    reply(200, desk("SEC")),
                ],
            ),
            "",
            None,
        ),
        (
            with(base(), vec![reply(200, request_type_fields(&form[..2]))]),
            "",
            Some("request type 17 does not show labels on its form"),
        ),
        (
            with(
                base(),
                vec![reply(
                    200,
                    request_type_fields(&[
                        ("summary", true),
                        ("description", true),
                        ("labels", false),
                        ("customfield_10010", true),
                        ("components", true),
                    ]),
                )],
            ),
            "create_fields = { components = [{ name = \"SOC\" }] }\n",
            Some("request type 17 requires customfield_10010: give them in `create_fields`"),
        ),
        (
            with(
                base(),
                vec![
                    reply(200, request_type_fields(&form)),
                    reply(200, desk("HELP")),
                ],
            ),
            "",
            Some("service desk 3 belongs to project \"HELP\", not \"SEC\" (`project`)"),
        ),
    ];
    for (script, extra, want) in cases {
        let fake = Fake::start(script).await;
        let a = jsm(&s, &fake.base, extra);
        assert_ok_or_blocked(a.check(&http_client().unwrap()).await, want);
        let reqs = fake.requests();
        assert_eq!(
            reqs[3].target,
            "/rest/servicedeskapi/servicedesk/3/requesttype/17/field"
        );
        if let Some(r) = reqs.get(4) {
            assert_eq!(r.target, "/rest/servicedeskapi/servicedesk/3");
        }
        for r in &reqs {
            assert_jira_auth(r);
        }
    }
}

#[tokio::test]
async fn jira_failures_are_classified() {
    let s = Secrets::new();
    replay_failures(|base| jira(&s, base, "")).await;
}

#[tokio::test]
async fn jira_own_error_bodies_and_rate_limit_headers() {
    let s = Secrets::new();
    let reset = (chrono::Utc::now() + chrono::Duration::minutes(3))
        .format("%Y-%m-%dT%H:%MZ")
        .to_string();
    let fake = Fake::start(vec![
        reply(
            400,
            json!({"errorMessages": [], "errors": {
                "labels": "Field 'labels' cannot be set. It is not on the appropriate screen, or unknown.",
                "priority": "Specify the Priority (id or name) in the string format"}}),
        ),
        // No Retry-After: X-RateLimit-Reset (minutes precision) says when.
        reply_with(
            429,
            &[("X-RateLimit-Reset", &reset), ("RateLimit-Reason", "jira-quota-based")],
            json!({"errorMessages": ["Rate limit exceeded."]}),
        ),
        reply_with(
            429,
            &[("Retry-After", "5"), ("X-RateLimit-Reset", &reset)],
            json!({"errorMessages": ["Rate limit exceeded."]}),
        ),
        reply_with(503, &[("Retry-After", "30")], json!({})),
    ])
    .await;
    let a = jira(&s, &fake.base, "");
    let client = http_client().unwrap();
    let c = content();
    let m = blocked_message(a.create(&client, &c, "{}").await);
    assert!(
        m.contains("HTTP 400 Bad Request: labels: Field 'labels' cannot be set. It is not on the appropriate screen, or unknown.; priority: Specify"),
        "{m}"
    );
    let wait = retry_after(a.create(&client, &c, "{}").await).expect("a wait");
    assert!(
        wait > Duration::from_secs(60) && wait <= Duration::from_secs(180),
        "{wait:?}"
    );
    assert_eq!(
        retry_after(a.create(&client, &c, "{}").await),
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        retry_after(a.create(&client, &c, "{}").await),
        Some(Duration::from_secs(30))
    );
}

#[tokio::test]
async fn jira_long_bodies_are_cut_under_the_field_limit() {
    let s = Secrets::new();
    let fake = Fake::start(vec![reply(201, json!({"id": "1", "key": "SEC-1"}))]).await;
    let a = jira(&s, &fake.base, "");
    let mut c = content();
    c.evidence = (0..200)
        .map(|i| format!("line {i} {}", "x".repeat(900)))
        .collect();
    let body = render::body(&c, BodyFormat::Adf, None);
    assert!(
        body.len() > 32_767,
        "the rendered body is {} bytes",
        body.len()
    );
    a.create(&http_client().unwrap(), &c, &body).await.unwrap();
    let description = &fake.requests()[0].json()["fields"]["description"];
    let text = description.to_string();
    assert!(text.chars().count() <= 32_000, "{}", text.len());
    assert!(text.contains("[cut: too long for Jira]"));
    assert!(text.contains(&format!("sentinela-fingerprint: {FP}")));
}

#[tokio::test]
async fn echoed_credentials_are_not_shown() {
    let s = Secrets::new();
    let encoded = BASIC.trim_start_matches("Basic ");
    let fake = Fake::start(vec![reply(
        400,
        json!({"errorMessages": [format!("bad header Authorization: {BASIC}")], "errors": {}}),
    )])
    .await;
    let a = jira(&s, &fake.base, "");
    let m = blocked_message(a.create(&http_client().unwrap(), &content(), "{}").await);
    assert!(!m.contains(encoded) && !m.contains(TOKEN), "{m}");
    assert!(m.contains("Basic <redacted>"), "{m}");
}

#[tokio::test]
async fn an_issue_moved_to_another_project_is_still_reopened() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        // Asked as SEC-5, the issue answers under its new key.
        reply(
            200,
            json!({"id": "10005", "key": "OPS-9",
                   "fields": {"status": {"statusCategory": {"key": "done"}}},
                   "transitions": [{"id": "31", "name": "Reopen", "isAvailable": true,
                                    "to": {"name": "Reopened", "statusCategory": {"key": "indeterminate"}}}]}),
        ),
        no_content(),
    ])
    .await;
    let a = jira(&s, &fake.base, "");
    let client = http_client().unwrap();
    let t = TicketRef("SEC-5".into());
    assert_eq!(a.status(&client, &t).await.unwrap(), TicketStatus::Closed);
    a.reopen(&client, &t).await.unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].method, "POST");
    assert_eq!(reqs[1].path(), "/rest/api/3/issue/SEC-5/transitions");
    assert_eq!(reqs[1].json(), json!({"transition": {"id": "31"}}));
}
