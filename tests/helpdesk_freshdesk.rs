//! Contract tests of the Freshdesk adapter against a fake Freshdesk (`support::Fake`): every
//! request is checked against the Freshdesk API v2 documentation (developers.freshdesk.com/api:
//! tickets, filter tickets, notes, agents/me, groups, rate limit, errors) and every answer is
//! one Freshdesk documents.

use std::time::Duration;

use serde_json::{json, Value};

use sentinela::policy::Priority;
use sentinela::ticket::adapter::{http_client, Adapter};
use sentinela::ticket::{TicketRef, TicketStatus, UpdateKind};

mod support;
use support::*;

const SUBJECT: &str = "SSH brute force from 203.0.113.9 \"root\" Injected: header";
const REQUESTER: &str = "secops@example.com";

fn freshdesk(s: &Secrets, base: &str, extra: &str) -> Adapter {
    let text = format!(
        "[[helpdesk]]\nname = \"fd\"\nkind = \"freshdesk\"\nurl = {base:?}\n\
         token_file = {:?}\nrequester = {REQUESTER:?}\ntimeout = \"1s\"\n\
         requests_per_second = 100\n{extra}",
        s.path("token")
    );
    Adapter::from_config(&config(&text)).unwrap()
}

fn key() -> String {
    format!("sentinela-{FP}")
}

fn assert_auth(r: &Recorded) {
    let want = format!("Basic {}", b64(format!("{TOKEN}:X").as_bytes()));
    assert_eq!(r.header("Authorization"), Some(want.as_str()));
    assert_json_headers(r);
}

/// A ticket as Freshdesk shows it (trimmed from the documentation's examples).
fn ticket(id: u64, status: i64, tags: &[&str]) -> Value {
    json!({
        "cc_emails": [], "fwd_emails": [], "reply_cc_emails": [], "fr_escalated": false,
        "spam": false, "email_config_id": null, "group_id": 42, "priority": 3,
        "requester_id": 5, "responder_id": null, "source": 2, "status": status,
        "subject": SUBJECT, "to_emails": null, "product_id": null, "id": id,
        "type": "Incident", "due_by": "2026-12-02T04:05:00Z",
        "fr_due_by": "2026-11-30T04:05:00Z", "is_escalated": false,
        "custom_fields": {}, "created_at": "2026-11-29T04:05:01Z",
        "updated_at": "2026-11-29T04:05:01Z", "tags": tags
    })
}

fn note(ticket_id: u64, private: bool) -> Value {
    json!({"id": 1101, "incoming": false, "private": private, "user_id": 1,
           "support_email": null, "body": "<p>again</p>", "body_text": "again",
           "ticket_id": ticket_id, "to_emails": [], "attachments": [],
           "created_at": "2026-11-29T04:10:00Z", "updated_at": "2026-11-29T04:10:00Z"})
}

#[tokio::test]
async fn create_posts_the_documented_shape() {
    let s = Secrets::new();
    let k = key();
    let fake = Fake::start(vec![reply(201, ticket(79, 2, &["sentinela", &k, "ids"]))]).await;
    let a = freshdesk(
        &s,
        &fake.base,
        "group = \"42\"\npriority_map = { P2 = 4 }\n\
         create_fields = { type = \"Incident\", tags = [\"ids\"], custom_fields = { cf_sensor = \"edge-1\" } }\n",
    );
    let c = content();
    let t = a
        .create(&http_client().unwrap(), &c, "<p>rendered</p>")
        .await
        .unwrap();
    assert_eq!(t, TicketRef("79".into()));

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1, "no read-back, no follow-up: {reqs:#?}");
    let create = &reqs[0];
    assert_eq!(create.method, "POST");
    assert_eq!(create.target, "/api/v2/tickets");
    assert_auth(create);
    assert_eq!(
        create.json(),
        json!({
            "subject": SUBJECT,
            "description": "<p>rendered</p>",
            "email": REQUESTER,
            "priority": 4,
            "status": 2,
            "tags": ["sentinela", key(), "ids"],
            "group_id": 42,
            "type": "Incident",
            "custom_fields": {"cf_sensor": "edge-1"},
        })
    );
    let shown = a.create_request(&c, "<p>b</p>").display_redacted();
    assert!(shown.starts_with(&format!("POST {}/api/v2/tickets\n", fake.base)));
    assert!(
        shown.contains("Authorization: <redacted>") && !shown.contains(&b64(TOKEN.as_bytes())),
        "{shown}"
    );
    // The default priority of P2 is 3 (high).
    let plain = freshdesk(&s, &fake.base, "");
    let body: Value =
        serde_json::from_str(plain.create_request(&c, "b").body.as_deref().unwrap()).unwrap();
    assert_eq!(body["priority"], json!(3));
    assert!(body.get("group_id").is_none());
}

#[tokio::test]
async fn a_created_ticket_without_the_key_tag_is_blocked() {
    let s = Secrets::new();
    let upper = key().to_uppercase();
    let fake = Fake::start(vec![reply(201, ticket(80, 2, &["sentinela", &upper]))]).await;
    let a = freshdesk(&s, &fake.base, "");
    let m = blocked_message(a.create(&http_client().unwrap(), &content(), "b").await);
    assert!(
        m.starts_with("helpdesk \"fd\": create ticket: ticket 80 was created without the tag"),
        "{m}"
    );
}

#[tokio::test]
async fn find_open_searches_the_tag_and_compares_exactly() {
    let s = Secrets::new();
    let k = key();
    let upper = k.to_uppercase();
    let fake = Fake::start(vec![
        reply(
            200,
            json!({"total": 4, "results": [
                ticket(85, 2, &[&k]),
                ticket(80, 2, &[&upper]),
                ticket(81, 6, &["sentinela", &k]),
                ticket(70, 5, &[&k]),
            ]}),
        ),
        reply(
            200,
            json!({"total": 1, "results": [ticket(80, 3, &[&upper])]}),
        ),
        reply(200, json!({"total": 0, "results": []})),
        // Results that do not show their tags cannot be verified.
        reply(
            200,
            json!({"total": 1, "results": [{"id": 90, "status": 2}]}),
        ),
    ])
    .await;
    let a = freshdesk(&s, &fake.base, "");
    let client = http_client().unwrap();
    assert_eq!(
        a.find_open(&client, FP).await.unwrap(),
        Some(TicketRef("81".into()))
    );
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    // A result that does not show its tags (as in Freshdesk's documented search answers) is
    // taken on the search's word: the query matched the tag.
    assert_eq!(
        a.find_open(&client, FP).await.unwrap(),
        Some(TicketRef("90".into()))
    );

    let r = &fake.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path(), "/api/v2/search/tickets");
    assert_auth(r);
    // The value is URL-encoded and enclosed in double quotes, strings in single quotes.
    assert_eq!(
        r.query().get("query").map(String::as_str),
        Some(format!("\"tag:'{k}' AND (status:2 OR status:3 OR status:>6)\"").as_str())
    );
    assert!(
        r.target
            .starts_with("/api/v2/search/tickets?query=%22tag%3A%27sentinela-"),
        "{}",
        r.target
    );
    assert!(!r.target.contains(' ') && !r.target.contains('\''));
    assert!(r.query()["query"].len() <= 512);
}

#[tokio::test]
async fn notes_are_private_and_statuses_are_read() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        reply(201, note(79, true)),
        reply(200, ticket(79, 4, &[])),
        reply(200, ticket(79, 5, &[])),
        reply(200, ticket(79, 3, &[])),
        reply(200, ticket(79, 7, &[])),
        reply(200, ticket(79, 2, &[])),
        reply(200, ticket(79, 2, &[])),
        reply(201, note(79, false)),
        reply(200, ticket(79, 1, &[])),
    ])
    .await;
    let a = freshdesk(&s, &fake.base, "");
    let client = http_client().unwrap();
    let t = TicketRef("79".into());
    let c = content();
    a.comment(&client, &t, &c, UpdateKind::Recurrence, "<p>again</p>")
        .await
        .unwrap();
    for want in [
        TicketStatus::Closed,
        TicketStatus::Closed,
        TicketStatus::Open,
        TicketStatus::Open,
    ] {
        assert_eq!(a.status(&client, &t).await.unwrap(), want);
    }
    a.reopen(&client, &t).await.unwrap();
    a.set_priority(&client, &t, Priority::P1).await.unwrap();
    let m = blocked_message(
        a.comment(&client, &t, &c, UpdateKind::Reopen, "<p>x</p>")
            .await,
    );
    assert!(m.contains("stored the note of ticket 79 as public"), "{m}");
    let m = blocked_message(a.status(&client, &t).await);
    assert!(m.contains("unknown ticket status 1"), "{m}");

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
    let get = ("GET", "/api/v2/tickets/79", None);
    assert_eq!(
        shape,
        vec![
            (
                "POST",
                "/api/v2/tickets/79/notes",
                Some(json!({"body": "<p>again</p>", "private": true}))
            ),
            get.clone(),
            get.clone(),
            get.clone(),
            get.clone(),
            ("PUT", "/api/v2/tickets/79", Some(json!({"status": 2}))),
            ("PUT", "/api/v2/tickets/79", Some(json!({"priority": 4}))),
            (
                "POST",
                "/api/v2/tickets/79/notes",
                Some(json!({"body": "<p>x</p>", "private": true}))
            ),
            get,
        ]
    );
    for r in &reqs {
        assert_auth(r);
    }
}

#[tokio::test]
async fn check_proves_the_key_and_the_group() {
    let s = Secrets::new();
    let me = |active: bool| {
        json!({"available": true, "occasional": false, "id": 1, "ticket_scope": 1,
               "signature": null, "group_ids": [42], "role_ids": [3],
               "contact": {"active": active, "email": "bot@example.com", "name": "Bot"}})
    };
    let group = json!({"id": 42, "name": "Security", "description": null,
                       "escalate_to": null, "unassigned_for": null, "agent_ids": [1]});
    let cases: Vec<(Vec<Reply>, Option<&str>)> = vec![
        (vec![reply(200, me(true)), reply(200, group.clone())], None),
        (
            vec![
                reply(200, me(true)),
                reply(403, json!({"code": "access_denied", "message": "You are not authorized to perform this action."})),
            ],
            None,
        ),
        (
            vec![reply(200, me(true)), reply(404, json!({}))],
            Some("group 42 does not exist"),
        ),
        (
            vec![reply(200, me(false))],
            Some("check: the agent bot@example.com of the API key is deactivated"),
        ),
        (
            vec![reply(
                401,
                json!({"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}),
            )],
            Some("check: HTTP 401 Unauthorized: You have to be logged in to perform this action. (the API key was refused"),
        ),
        (
            vec![reply(
                403,
                json!({"code": "access_denied", "message": "You are not authorized to perform this action."}),
            )],
            Some("check: HTTP 403 Forbidden: You are not authorized to perform this action. (the API key's agent lacks a permission"),
        ),
    ];
    for (script, want) in cases {
        let n = script.len();
        let fake = Fake::start(script).await;
        let a = freshdesk(&s, &fake.base, "group = \"42\"\n");
        let got = a.check(&http_client().unwrap()).await;
        match want {
            None => got.unwrap(),
            Some(w) => {
                let m = blocked_message(got);
                assert!(m.starts_with("helpdesk \"fd\": ") && m.contains(w), "{m}");
            }
        }
        let reqs = fake.requests();
        assert_eq!(reqs.len(), n);
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].target.as_str()),
            ("GET", "/api/v2/agents/me")
        );
        if n > 1 {
            assert_eq!(
                (reqs[1].method.as_str(), reqs[1].target.as_str()),
                ("GET", "/api/v2/groups/42")
            );
        }
        for r in &reqs {
            assert_auth(r);
        }
    }
}

#[tokio::test]
async fn failures_are_classified() {
    let s = Secrets::new();
    replay_failures(|base| freshdesk(&s, base, "")).await;
}

#[tokio::test]
async fn freshdesk_errors_and_rate_limit_headers() {
    let s = Secrets::new();
    let limited = |extra: &[(&str, &str)]| {
        let mut h = vec![
            ("X-RateLimit-Total", "100"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Used-CurrentRequest", "1"),
        ];
        h.extend_from_slice(extra);
        reply_with(
            429,
            &h,
            json!({"message": "You have exceeded the limit of requests per minute"}),
        )
    };
    for (r, want) in [
        (limited(&[("Retry-After", "17")]), Duration::from_secs(17)),
        // Without Retry-After, the per-minute limit resets within a minute.
        (limited(&[]), Duration::from_secs(60)),
    ] {
        let fake = Fake::start(vec![r]).await;
        let a = freshdesk(&s, &fake.base, "");
        let got = a.create(&http_client().unwrap(), &content(), "b").await;
        assert_eq!(retry_after(got), Some(want));
        assert_eq!(fake.requests().len(), 1);
    }

    let fake = Fake::start(vec![reply(
        400,
        json!({"description": "Validation failed", "errors": [
            {"field": "email", "message": "There is no contact matching the given email",
             "code": "invalid_value"},
            {"field": "group_id", "message": "There is no group matching the given group_id",
             "code": "invalid_value"}]}),
    )])
    .await;
    let a = freshdesk(&s, &fake.base, "group = \"43\"\n");
    let m = blocked_message(a.create(&http_client().unwrap(), &content(), "b").await);
    assert!(
        m.starts_with(
            "helpdesk \"fd\": create ticket: HTTP 400 Bad Request: Validation failed: email: \
             There is no contact matching the given email; group_id: There is no group"
        ),
        "{m}"
    );
}

#[tokio::test]
async fn round_trip_through_the_adapter() {
    let s = Secrets::new();
    let k = key();
    let fake = Fake::start(vec![
        reply(200, json!({"total": 0, "results": []})),
        reply(201, ticket(301, 2, &["sentinela", &k])),
        reply(200, ticket(301, 2, &["sentinela", &k])),
        reply(201, note(301, true)),
        reply(
            200,
            json!({"total": 1, "results": [ticket(301, 2, &["sentinela", &k])]}),
        ),
    ])
    .await;
    let a = freshdesk(&s, &fake.base, "");
    round_trip(
        &a,
        &fake,
        "301",
        &[
            ("GET", "/api/v2/search/tickets"),
            ("POST", "/api/v2/tickets"),
            ("GET", "/api/v2/tickets/301"),
            ("POST", "/api/v2/tickets/301/notes"),
            ("GET", "/api/v2/search/tickets"),
        ],
    )
    .await;
    assert_eq!(a.body_format(), sentinela::ticket::render::BodyFormat::Html);
}

#[tokio::test]
async fn echoed_credentials_are_not_shown() {
    let s = Secrets::new();
    let encoded = b64(format!("{TOKEN}:X").as_bytes());
    let fake = Fake::start(vec![reply(
        400,
        json!({"description": "Validation failed",
               "errors": [{"field": "Authorization", "message": format!("Basic {encoded}"),
                           "code": "invalid_value"}]}),
    )])
    .await;
    let a = freshdesk(&s, &fake.base, "");
    let m = blocked_message(a.create(&http_client().unwrap(), &content(), "b").await);
    assert!(
        !m.contains(&encoded) && !m.contains(TOKEN) && m.contains("Basic <redacted>"),
        "{m}"
    );
}

#[test]
fn the_dry_run_needs_no_secret() {
    let text = "[[helpdesk]]\nname = \"fd\"\nkind = \"freshdesk\"\n\
                url = \"https://acme.freshdesk.com\"\ntoken_env = \"SENTINELA_TEST_UNSET_FD\"\n\
                requester = \"secops@example.com\"\n";
    let a = Adapter::for_dry_run(&config(text)).unwrap();
    let shown = a.create_request(&content(), "<p>b</p>").display_redacted();
    assert!(
        shown.starts_with("POST https://acme.freshdesk.com/api/v2/tickets\n")
            && shown.contains("Authorization: <redacted>"),
        "{shown}"
    );
}

#[tokio::test]
async fn spam_and_deleted_tickets_are_closed_for_good() {
    let s = Secrets::new();
    let mut spam = ticket(79, 2, &[]);
    spam["spam"] = json!(true);
    let mut deleted = ticket(79, 2, &[]);
    deleted["deleted"] = json!(true);
    let fake = Fake::start(vec![
        reply(200, spam),
        reply(200, deleted),
        reply(200, ticket(79, 2, &[])),
    ])
    .await;
    let a = freshdesk(&s, &fake.base, "");
    let client = http_client().unwrap();
    let t = TicketRef("79".into());
    for want in [TicketStatus::Final, TicketStatus::Final, TicketStatus::Open] {
        assert_eq!(a.status(&client, &t).await.unwrap(), want);
    }
}
