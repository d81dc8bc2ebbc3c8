//! Contract tests of the Zendesk adapter against a fake Zendesk (`support::Fake`): every
//! request is checked against the Zendesk Support API documentation (developer.zendesk.com:
//! tickets, ticket comments, idempotency, users/me, groups, rate limits) and every answer is
//! one Zendesk documents.

use std::time::Duration;

use serde_json::{json, Value};

use sentinela::policy::Priority;
use sentinela::ticket::adapter::{http_client, Adapter};
use sentinela::ticket::{TicketRef, TicketStatus, UpdateKind};

mod support;
use support::*;

const SUBJECT: &str = "SSH brute force from 203.0.113.9 \"root\" Injected: header";
const AGENT: &str = "bot@example.com";

fn zendesk(s: &Secrets, base: &str, extra: &str) -> Adapter {
    let text = format!(
        "[[helpdesk]]\nname = \"zd\"\nkind = \"zendesk\"\nurl = {base:?}\n\
         token_file = {:?}\nusername = {AGENT:?}\ntimeout = \"1s\"\n\
         requests_per_second = 100\n{extra}",
        s.path("token")
    );
    Adapter::from_config(&config(&text)).unwrap()
}

fn key() -> String {
    format!("sentinela-{FP}")
}

fn assert_auth(r: &Recorded) {
    let want = format!("Basic {}", b64(format!("{AGENT}/token:{TOKEN}").as_bytes()));
    assert_eq!(r.header("Authorization"), Some(want.as_str()));
    assert_json_headers(r);
}

/// A ticket as Zendesk shows it (trimmed from the documentation's JSON format).
fn ticket(id: u64, external_id: Option<&str>, status: &str) -> Value {
    json!({
        "url": format!("https://acme.zendesk.com/api/v2/tickets/{id}.json"),
        "id": id, "external_id": external_id, "type": null, "subject": SUBJECT,
        "raw_subject": SUBJECT, "priority": "high", "status": status,
        "requester_id": 20978392, "submitter_id": 76872, "group_id": 360001,
        "tags": ["sentinela", key()], "is_public": false,
        "created_at": "2026-11-29T04:05:01Z", "updated_at": "2026-11-29T04:05:01Z"
    })
}

fn created(id: u64, external_id: Option<&str>) -> Value {
    json!({
        "ticket": ticket(id, external_id, "new"),
        "audit": {"id": 1, "ticket_id": id, "events": [
            {"id": 2, "type": "Comment", "public": false, "html_body": "<p>b</p>"}]}
    })
}

#[tokio::test]
async fn create_posts_the_documented_shape_with_an_idempotency_key() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        reply(201, created(35436, Some(FP))),
        // The same create again: Zendesk replays the first answer.
        reply_with(
            201,
            &[("x-idempotency-lookup", "hit")],
            created(35436, Some(FP)),
        ),
    ])
    .await;
    let a = zendesk(
        &s,
        &fake.base,
        "group = \"360001\"\nrequester = \"secops@example.com\"\n\
         priority_map = { P2 = \"Urgent\" }\n\
         create_fields = { type = \"incident\", tags = [\"ids\", \"sentinela\"] }\n",
    );
    let c = content();
    let client = http_client().unwrap();
    let t = a.create(&client, &c, "<p>rendered</p>").await.unwrap();
    assert_eq!(t, TicketRef("35436".into()));
    assert_eq!(a.create(&client, &c, "<p>rendered</p>").await.unwrap(), t);

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "no read-back, no follow-up: {reqs:#?}");
    let create = &reqs[0];
    assert_eq!(create.method, "POST");
    assert_eq!(create.target, "/api/v2/tickets.json");
    assert_auth(create);
    assert_eq!(
        create.json(),
        json!({"ticket": {
            "subject": SUBJECT,
            "comment": {"html_body": "<p>rendered</p>", "public": false},
            "priority": "urgent",
            "external_id": FP,
            "tags": ["sentinela", key(), "ids"],
            "requester": {"email": "secops@example.com"},
            "group_id": 360001,
            "type": "incident",
        }})
    );
    let idem = create.header("Idempotency-Key").unwrap();
    assert!(idem.starts_with("sentinela-") && idem.len() > 20, "{idem}");
    assert_eq!(reqs[1].header("Idempotency-Key"), Some(idem));
    assert_eq!(reqs[1].body, create.body);

    // A follow-up ticket of the same incident (it names the closed one) is another create.
    let mut next = c.clone();
    next.previous_ticket = Some("35436".into());
    let other = a.create_request(&next, "<p>rendered, see #35436</p>");
    let other_key = other
        .headers
        .iter()
        .find(|h| h.name == "Idempotency-Key")
        .map(|h| h.value.clone())
        .unwrap();
    assert_ne!(other_key, idem);

    let shown = a.create_request(&c, "<p>b</p>").display_redacted();
    assert!(shown.starts_with(&format!("POST {}/api/v2/tickets.json\n", fake.base)));
    assert!(
        shown.contains("Authorization: <redacted>") && !shown.contains(&b64(TOKEN.as_bytes())),
        "{shown}"
    );
}

#[tokio::test]
async fn a_created_ticket_without_our_external_id_is_blocked() {
    let s = Secrets::new();
    let upper = FP.to_uppercase();
    for stored in [None, Some(upper.as_str())] {
        let fake = Fake::start(vec![reply(201, created(7, stored))]).await;
        let a = zendesk(&s, &fake.base, "");
        let m = blocked_message(a.create(&http_client().unwrap(), &content(), "b").await);
        assert!(
            m.starts_with("helpdesk \"zd\": create ticket: ticket 7 was created with external_id"),
            "{m}"
        );
    }
}

#[tokio::test]
async fn find_open_lists_by_external_id_and_compares_exactly() {
    let s = Secrets::new();
    let upper = FP.to_uppercase();
    let fake = Fake::start(vec![
        reply(
            200,
            json!({"tickets": [
                ticket(9, Some(&upper), "open"),
                ticket(12, Some(FP), "solved"),
                ticket(15, Some(FP), "hold"),
                ticket(14, Some(FP), "pending"),
                ticket(20, Some(FP), "closed"),
            ], "next_page": null, "previous_page": null, "count": 5}),
        ),
        reply(
            200,
            json!({"tickets": [ticket(9, Some(&upper), "new")], "next_page": null, "count": 1}),
        ),
        reply(
            200,
            json!({"tickets": [], "next_page": null, "previous_page": null, "count": 0}),
        ),
    ])
    .await;
    let a = zendesk(&s, &fake.base, "");
    let client = http_client().unwrap();
    assert_eq!(
        a.find_open(&client, FP).await.unwrap(),
        Some(TicketRef("14".into()))
    );
    // Only another incident's key, differing in case: not ours.
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    let r = &fake.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path(), "/api/v2/tickets.json");
    assert_eq!(r.query().get("external_id").map(String::as_str), Some(FP));
    assert_auth(r);
}

#[tokio::test]
async fn comments_are_private_and_statuses_are_read() {
    let s = Secrets::new();
    let update =
        |status: &str| json!({"ticket": ticket(35, Some(FP), status), "audit": {"events": []}});
    let fake = Fake::start(vec![
        reply(200, update("open")),
        reply(200, json!({"ticket": ticket(35, Some(FP), "solved")})),
        reply(200, json!({"ticket": ticket(35, Some(FP), "closed")})),
        reply(200, json!({"ticket": ticket(35, Some(FP), "hold")})),
        reply(200, json!({"ticket": ticket(35, Some(FP), "new")})),
        reply(200, update("open")),
        reply(200, update("open")),
        reply(200, json!({"ticket": ticket(35, Some(FP), "archived")})),
        // A closed ticket cannot be updated.
        reply(
            422,
            json!({"error": "RecordInvalid", "description": "Record validation errors",
                   "details": {"status": [{"description": "Status: closed prevents ticket update",
                                           "error": "InvalidValue"}]}}),
        ),
    ])
    .await;
    let a = zendesk(&s, &fake.base, "");
    let client = http_client().unwrap();
    let t = TicketRef("35".into());
    let c = content();
    a.comment(&client, &t, &c, UpdateKind::Recurrence, "<p>again</p>")
        .await
        .unwrap();
    for want in [
        TicketStatus::Closed,
        TicketStatus::Final,
        TicketStatus::Open,
        TicketStatus::Open,
    ] {
        assert_eq!(a.status(&client, &t).await.unwrap(), want);
    }
    a.reopen(&client, &t).await.unwrap();
    a.set_priority(&client, &t, Priority::P1).await.unwrap();
    let m = blocked_message(a.status(&client, &t).await);
    assert!(m.contains("unknown ticket status \"archived\""), "{m}");
    let m = blocked_message(a.reopen(&client, &t).await);
    assert!(
        m.starts_with("helpdesk \"zd\": reopen ticket: HTTP 422 Unprocessable Entity: RecordInvalid: Record validation errors: status: Status: closed prevents ticket update")
            && m.contains("Zendesk never reopens or updates a closed ticket")
            && m.contains("sentinela outbox retry"),
        "{m}"
    );

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
    let get = ("GET", "/api/v2/tickets/35.json", None);
    let reopen = (
        "PUT",
        "/api/v2/tickets/35.json",
        Some(json!({"ticket": {"status": "open"}})),
    );
    assert_eq!(
        shape,
        vec![
            (
                "PUT",
                "/api/v2/tickets/35.json",
                Some(
                    json!({"ticket": {"comment": {"html_body": "<p>again</p>", "public": false}}})
                )
            ),
            get.clone(),
            get.clone(),
            get.clone(),
            get.clone(),
            reopen.clone(),
            (
                "PUT",
                "/api/v2/tickets/35.json",
                Some(json!({"ticket": {"priority": "urgent"}}))
            ),
            get,
            reopen,
        ]
    );
    for r in &reqs {
        assert_auth(r);
    }
}

#[tokio::test]
async fn check_proves_the_credentials_and_the_group() {
    let s = Secrets::new();
    let me = |id: Value, role: &str| {
        json!({"user": {"id": id, "name": "Bot", "email": AGENT, "role": role,
                        "active": true, "suspended": false}})
    };
    let group =
        |deleted: bool| json!({"group": {"id": 360001, "name": "Security", "deleted": deleted}});
    let cases: Vec<(Vec<Reply>, Option<&str>)> =
        vec![
        (vec![reply(200, me(json!(42), "agent")), reply(200, group(false))], None),
        (vec![reply(200, me(json!(42), "admin")), reply(403, json!({"error": "Forbidden"}))], None),
        (
            vec![reply(200, me(json!(null), "end-user"))],
            Some("check: Zendesk answered as an anonymous user: the credentials were not accepted"),
        ),
        (
            vec![reply(200, me(json!(42), "end-user"))],
            Some("check: bot@example.com is an end user"),
        ),
        (
            vec![
                reply(200, me(json!(42), "agent")),
                reply(404, json!({"error": "RecordNotFound", "description": "Not found"})),
            ],
            Some("group 360001 does not exist"),
        ),
        (
            vec![reply(200, me(json!(42), "agent")), reply(200, group(true))],
            Some("group 360001 (Security) is deleted"),
        ),
        (
            vec![reply(401, json!({"error": "Couldn't authenticate you"}))],
            Some("check: HTTP 401 Unauthorized: Couldn't authenticate you (check `username`"),
        ),
    ];
    for (script, want) in cases {
        let n = script.len();
        let fake = Fake::start(script).await;
        let a = zendesk(&s, &fake.base, "group = \"360001\"\n");
        let got = a.check(&http_client().unwrap()).await;
        match want {
            None => got.unwrap(),
            Some(w) => {
                let m = blocked_message(got);
                assert!(m.starts_with("helpdesk \"zd\": ") && m.contains(w), "{m}");
            }
        }
        let reqs = fake.requests();
        assert_eq!(reqs.len(), n);
        assert_eq!(
            (reqs[0].method.as_str(), reqs[0].target.as_str()),
            ("GET", "/api/v2/users/me.json")
        );
        if n > 1 {
            assert_eq!(
                (reqs[1].method.as_str(), reqs[1].target.as_str()),
                ("GET", "/api/v2/groups/360001.json")
            );
        }
        for r in &reqs {
            assert_auth(r);
        }
    }
    // Without a group, only the user is checked.
    let fake = Fake::start(vec![reply(200, me(json!(42), "agent"))]).await;
    zendesk(&s, &fake.base, "")
        .check(&http_client().unwrap())
        .await
        .unwrap();
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn failures_are_classified() {
    let s = Secrets::new();
    replay_failures(|base| zendesk(&s, base, "")).await;
}

#[tokio::test]
async fn zendesk_errors_and_rate_limit_headers() {
    let s = Secrets::new();
    // A 429 without Retry-After: the endpoint's rate-limit header says when it resets.
    let fake = Fake::start(vec![reply_with(
        429,
        &[
            (
                "Zendesk-RateLimit-tickets-index",
                "total=100; remaining=0; resets=33",
            ),
            ("X-Rate-Limit", "700"),
            ("X-Rate-Limit-Remaining", "0"),
        ],
        json!({"error": "TooManyRequests", "description": "You have exceeded the rate limit"}),
    )])
    .await;
    let a = zendesk(&s, &fake.base, "");
    let r = a.find_open(&http_client().unwrap(), FP).await;
    assert_eq!(retry_after(r), Some(Duration::from_secs(33)));
    // Retry-After wins when given.
    let fake = Fake::start(vec![reply_with(
        429,
        &[
            ("Retry-After", "5"),
            (
                "Zendesk-RateLimit-tickets-index",
                "total=100; remaining=0; resets=33",
            ),
        ],
        json!({}),
    )])
    .await;
    let a = zendesk(&s, &fake.base, "");
    let r = a.find_open(&http_client().unwrap(), FP).await;
    assert_eq!(retry_after(r), Some(Duration::from_secs(5)));

    for (r, want) in [
        (
            reply(
                422,
                json!({"error": "RecordInvalid", "description": "Record validation errors",
                       "details": {"requester": [{"description": "Requester: Email is invalid"}]}}),
            ),
            "HTTP 422 Unprocessable Entity: RecordInvalid: Record validation errors: requester: Requester: Email is invalid",
        ),
        (
            reply(
                403,
                json!({"error": {"title": "Forbidden",
                                 "message": "You do not have access to this page."}}),
            ),
            "HTTP 403 Forbidden: Forbidden: You do not have access to this page.",
        ),
        (
            reply(
                400,
                json!({"error": "InvalidIdempotencyKey",
                       "description": "Idempotency key was used with a different request"}),
            ),
            "HTTP 400 Bad Request: InvalidIdempotencyKey: Idempotency key was used",
        ),
    ] {
        let fake = Fake::start(vec![r]).await;
        let a = zendesk(&s, &fake.base, "");
        let m = blocked_message(a.create(&http_client().unwrap(), &content(), "b").await);
        assert!(m.starts_with("helpdesk \"zd\": create ticket: ") && m.contains(want), "{m}");
        assert_eq!(fake.requests().len(), 1);
    }
}

#[tokio::test]
async fn round_trip_through_the_adapter() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        reply(200, json!({"tickets": [], "next_page": null, "count": 0})),
        reply(201, created(501, Some(FP))),
        reply(200, json!({"ticket": ticket(501, Some(FP), "new")})),
        reply(
            200,
            json!({"ticket": ticket(501, Some(FP), "open"), "audit": {}}),
        ),
        reply(
            200,
            json!({"tickets": [ticket(501, Some(FP), "open")], "count": 1}),
        ),
    ])
    .await;
    let a = zendesk(&s, &fake.base, "");
    round_trip(
        &a,
        &fake,
        "501",
        &[
            ("GET", "/api/v2/tickets.json"),
            ("POST", "/api/v2/tickets.json"),
            ("GET", "/api/v2/tickets/501.json"),
            ("PUT", "/api/v2/tickets/501.json"),
            ("GET", "/api/v2/tickets.json"),
        ],
    )
    .await;
    assert_eq!(a.body_format(), sentinela::ticket::render::BodyFormat::Html);
}

#[tokio::test]
async fn echoed_credentials_are_not_shown() {
    let s = Secrets::new();
    let encoded = b64(format!("{AGENT}/token:{TOKEN}").as_bytes());
    let fake = Fake::start(vec![reply(
        400,
        json!({"error": "BadRequest",
               "description": format!("bad header Authorization: Basic {encoded}")}),
    )])
    .await;
    let a = zendesk(&s, &fake.base, "");
    let m = blocked_message(a.create(&http_client().unwrap(), &content(), "b").await);
    assert!(
        !m.contains(&encoded) && !m.contains(TOKEN) && m.contains("Basic <redacted>"),
        "{m}"
    );
}

#[test]
fn the_dry_run_needs_no_secret() {
    let text = "[[helpdesk]]\nname = \"zd\"\nkind = \"zendesk\"\n\
                url = \"https://acme.zendesk.com/api/v2\"\ntoken_env = \"SENTINELA_TEST_UNSET_ZD\"\n\
                username = \"bot@example.com\"\n";
    let a = Adapter::for_dry_run(&config(text)).unwrap();
    let shown = a.create_request(&content(), "<p>b</p>").display_redacted();
    assert!(
        shown.starts_with("POST https://acme.zendesk.com/api/v2/tickets.json\n")
            && shown.contains("Authorization: <redacted>")
            && shown.contains("Idempotency-Key: sentinela-"),
        "{shown}"
    );
}
