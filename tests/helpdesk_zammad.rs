//! Contract tests of the Zammad adapter against a fake Zammad (`support::Fake`): every request
//! is checked against Zammad's REST API documentation (docs.zammad.org, api/ticket,
//! api/ticket/articles, api/ticket/tags, api/user) and every answer is one Zammad documents.

use serde_json::{json, Value};

use sentinela::policy::Priority;
use sentinela::ticket::adapter::{http_client, Adapter};
use sentinela::ticket::{DeliveryError, TicketRef, TicketStatus, UpdateKind};

mod support;
use support::*;

const SUBJECT: &str = "SSH brute force from 203.0.113.9 \"root\" Injected: header";

fn zammad_with(s: &Secrets, base: &str, requester: &str, extra: &str) -> Adapter {
    let text = format!(
        "[[helpdesk]]\nname = \"zammad\"\nkind = \"zammad\"\nurl = {base:?}\n\
         token_file = {:?}\ngroup = \"Security\"\nrequester = {requester:?}\n\
         timeout = \"1s\"\nrequests_per_second = 100\n{extra}",
        s.path("token")
    );
    Adapter::from_config(&config(&text)).unwrap()
}

fn zammad(s: &Secrets, base: &str, extra: &str) -> Adapter {
    zammad_with(s, base, "secops@example.com", extra)
}

fn key() -> String {
    format!("sentinela-{FP}")
}

/// A ticket as Zammad answers it (trimmed from the documentation's examples).
fn ticket(id: u64, state: &str) -> Value {
    json!({
        "id": id, "group_id": 2, "priority_id": 3, "state_id": 1, "organization_id": null,
        "number": format!("220{id:02}"), "title": SUBJECT, "owner_id": 1, "customer_id": 10,
        "note": null, "article_count": 1, "created_at": "2026-11-29T04:05:01.913Z",
        "updated_at": "2026-11-29T04:05:01.994Z", "article_ids": [30],
        "group": "Security", "state": state, "priority": "3 high",
        "customer": "secops@example.com"
    })
}

fn article(ticket_id: u64, internal: bool) -> Value {
    json!({
        "id": 31, "ticket_id": ticket_id, "from": "Sentinela", "to": "", "cc": "",
        "subject": "The incident recurred", "body": "<p>seen again</p>",
        "content_type": "text/html", "type": "note", "internal": internal,
        "created_at": "2026-11-29T04:10:00.000Z"
    })
}

fn assert_auth(r: &Recorded) {
    assert_eq!(
        r.header("Authorization"),
        Some(format!("Token token={TOKEN}").as_str())
    );
    assert_json_headers(r);
}

#[tokio::test]
async fn create_posts_the_documented_shape_and_verifies_the_tag() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        reply(201, ticket(19, "new")),
        reply(200, json!({"tags": ["ids", "sentinela", key()]})),
    ])
    .await;
    let a = zammad(
        &s,
        &fake.base,
        "priority_map = { P2 = 2 }\ncreate_fields = { tags = \"ids\", organization = \"ACME\" }\n",
    );
    let c = content();
    let client = http_client().unwrap();
    let t = a
        .create(&client, &c, "<p>rendered &amp; escaped</p>")
        .await
        .unwrap();
    assert_eq!(t, TicketRef("19".into()));

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let create = &reqs[0];
    assert_eq!(create.method, "POST");
    assert_eq!(create.target, "/api/v1/tickets");
    assert_auth(create);
    assert_eq!(
        create.json(),
        json!({
            // One line: the CR LF of attacker text is gone.
            "title": SUBJECT,
            "group": "Security",
            "customer": "secops@example.com",
            "priority_id": 2,
            // The key is set by the create itself; create_fields tags are added, not swapped.
            "tags": format!("sentinela,{},ids", key()),
            "article": {
                "subject": SUBJECT,
                "body": "<p>rendered &amp; escaped</p>",
                "content_type": "text/html",
                "type": "note",
                "internal": true,
            },
            "organization": "ACME",
        })
    );
    let read = &reqs[1];
    assert_eq!(read.method, "GET");
    assert_eq!(read.target, "/api/v1/tags?object=Ticket&o_id=19");
    assert_auth(read);
    assert!(a.after_create_requests(&t, &c).is_empty());

    // The dry run shows the same request, token redacted.
    let shown = a.create_request(&c, "<p>b</p>").display_redacted();
    assert!(shown.starts_with(&format!("POST {}/api/v1/tickets\n", fake.base)));
    assert!(
        shown.contains("Authorization: <redacted>") && !shown.contains(TOKEN),
        "{shown}"
    );
}

#[tokio::test]
async fn a_guessed_customer_is_sent_as_customer_id() {
    let s = Secrets::new();
    let fake = Fake::start(vec![]).await;
    let a = zammad_with(&s, &fake.base, "guess:secops@example.com", "");
    let req = a.create_request(&content(), "<p>b</p>");
    let body: Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["customer_id"], json!("guess:secops@example.com"));
    assert!(body.get("customer").is_none());
    // P2 is "3 high" by default.
    assert_eq!(body["priority_id"], json!(3));
}

#[tokio::test]
async fn a_ticket_created_without_the_key_tag_is_blocked() {
    let s = Secrets::new();
    for tags in [
        json!(["sentinela"]),
        json!([key().to_uppercase()]),
        json!([]),
    ] {
        let fake = Fake::start(vec![
            reply(201, ticket(21, "new")),
            reply(200, json!({ "tags": tags })),
        ])
        .await;
        let a = zammad(&s, &fake.base, "");
        let m = blocked_message(a.create(&http_client().unwrap(), &content(), "b").await);
        assert!(
            m.starts_with("helpdesk \"zammad\": verify created ticket: ")
                && m.contains("ticket 21 was created but does not carry the tag")
                && m.contains(&key()),
            "{m}"
        );
    }
}

#[tokio::test]
async fn find_open_searches_the_tag_among_open_states_oldest_first() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        // Elasticsearch matches states by words: a custom "reopened" state and a ticket closed
        // since it was indexed come back too, and are not open.
        reply(
            200,
            json!([
                ticket(31, "open"),
                ticket(12, "pending reminder"),
                ticket(5, "closed"),
                ticket(7, "reopened"),
                ticket(40, "new")
            ]),
        ),
        reply(200, json!([ticket(5, "merged")])),
        reply(200, json!([])),
        // Without expand=true Zammad answers ids and assets: not what was asked.
        reply(
            200,
            json!({"tickets": [5], "tickets_count": 1, "assets": {}}),
        ),
    ])
    .await;
    let a = zammad(&s, &fake.base, "");
    let client = http_client().unwrap();
    assert_eq!(
        a.find_open(&client, FP).await.unwrap(),
        Some(TicketRef("12".into()))
    );
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    let m = blocked_message(a.find_open(&client, FP).await);
    assert!(
        m.contains("find open ticket: unexpected answer (not a list of tickets)"),
        "{m}"
    );

    let r = &fake.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path(), "/api/v1/tickets/search");
    assert_auth(r);
    let q = r.query();
    assert_eq!(
        q.get("query").map(String::as_str),
        Some(
            format!(
                "tags:\"{}\" AND state.name:(new OR open OR \"pending reminder\" OR \"pending close\")",
                key()
            )
            .as_str()
        )
    );
    assert_eq!(q.get("expand").map(String::as_str), Some("true"));
    assert_eq!(q.get("sort_by").map(String::as_str), Some("created_at"));
    assert_eq!(q.get("order_by").map(String::as_str), Some("asc"));
    assert_eq!(q.get("limit").map(String::as_str), Some("50"));
    // Every character of the query is percent-encoded on the wire.
    assert!(
        !r.target.contains(' ') && !r.target.contains('"'),
        "{}",
        r.target
    );
}

#[tokio::test]
async fn comments_are_internal_notes_and_states_are_read_exactly() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        reply(201, article(19, true)),
        reply(200, ticket(19, "closed")),
        reply(200, ticket(19, "pending close")),
        reply(200, ticket(19, "open")),
        reply(200, ticket(19, "open")),
        // Zammad made a note public (a customer's token): refused.
        reply(201, article(19, false)),
        reply(200, ticket(19, "waiting for vendor")),
        reply(
            422,
            json!({"error": "No lookup value found for 'state': \"open\"",
                   "error_human": "No lookup value found for 'state': \"open\""}),
        ),
    ])
    .await;
    let a = zammad(&s, &fake.base, "");
    let client = http_client().unwrap();
    let t = TicketRef("19".into());
    let c = content();
    a.comment(&client, &t, &c, UpdateKind::Recurrence, "<p>seen again</p>")
        .await
        .unwrap();
    assert_eq!(a.status(&client, &t).await.unwrap(), TicketStatus::Closed);
    assert_eq!(a.status(&client, &t).await.unwrap(), TicketStatus::Open);
    a.reopen(&client, &t).await.unwrap();
    a.set_priority(&client, &t, Priority::P4).await.unwrap();
    let m = blocked_message(
        a.comment(&client, &t, &c, UpdateKind::Digest, "<p>digest</p>")
            .await,
    );
    assert!(m.contains("stored the note of ticket 19 as public"), "{m}");
    let m = blocked_message(a.status(&client, &t).await);
    assert!(
        m.contains("unknown ticket state \"waiting for vendor\""),
        "{m}"
    );
    let m = blocked_message(a.reopen(&client, &t).await);
    assert!(
        m.contains("HTTP 422 Unprocessable Entity: No lookup value found for 'state'"),
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
    let note = |subject: &str, body: &str| {
        json!({"ticket_id": 19, "subject": subject, "body": body,
               "content_type": "text/html", "type": "note", "internal": true})
    };
    assert_eq!(
        shape,
        vec![
            (
                "POST",
                "/api/v1/ticket_articles",
                Some(note("The incident recurred", "<p>seen again</p>"))
            ),
            ("GET", "/api/v1/tickets/19?expand=true", None),
            ("GET", "/api/v1/tickets/19?expand=true", None),
            ("PUT", "/api/v1/tickets/19", Some(json!({"state": "open"}))),
            ("PUT", "/api/v1/tickets/19", Some(json!({"priority_id": 1}))),
            (
                "POST",
                "/api/v1/ticket_articles",
                Some(note("Storm digest", "<p>digest</p>"))
            ),
            ("GET", "/api/v1/tickets/19?expand=true", None),
            ("PUT", "/api/v1/tickets/19", Some(json!({"state": "open"}))),
        ]
    );
    for r in &reqs {
        assert_auth(r);
    }
}

fn me(roles: &[&str], active: bool, groups: Value) -> Value {
    json!({"id": 3, "login": "sentinela@example.com", "email": "sentinela@example.com",
           "active": active, "roles": roles, "groups": groups, "role_ids": [2]})
}

#[tokio::test]
async fn check_proves_the_token_and_that_it_is_an_agents() {
    let s = Secrets::new();
    let cases: Vec<(Reply, Option<&str>)> = vec![
        (
            reply(200, me(&["Agent"], true, json!({"Security": ["full"]}))),
            None,
        ),
        // The group may come from a role: only a warning.
        (reply(200, me(&["Agent"], true, json!({}))), None),
        (
            reply(200, me(&["Customer"], true, json!({}))),
            Some("is only a Customer"),
        ),
        (
            reply(200, me(&["Agent"], false, json!({}))),
            Some("the token's user \"sentinela@example.com\" is inactive"),
        ),
        (
            reply(401, json!({"error": "Invalid token!"})),
            Some("HTTP 401 Unauthorized: Invalid token! (the access token was refused"),
        ),
        (
            Reply::Http {
                status: 200,
                headers: vec![],
                body: "<html><title>Sign in</title></html>".into(),
            },
            Some("unexpected answer (not JSON): (HTML page) Sign in"),
        ),
    ];
    for (r, want) in cases {
        let fake = Fake::start(vec![r]).await;
        let a = zammad(&s, &fake.base, "");
        let got = a.check(&http_client().unwrap()).await;
        match want {
            None => got.unwrap(),
            Some(w) => {
                let m = blocked_message(got);
                assert!(
                    m.starts_with("helpdesk \"zammad\": check: ") && m.contains(w),
                    "{m}"
                );
            }
        }
        let reqs = fake.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method, "GET");
        assert_eq!(reqs[0].target, "/api/v1/users/me?expand=true");
        assert_auth(&reqs[0]);
    }
}

#[tokio::test]
async fn failures_are_classified() {
    let s = Secrets::new();
    replay_failures(|base| zammad(&s, base, "")).await;
}

#[tokio::test]
async fn zammad_errors_are_quoted_and_not_retried() {
    let s = Secrets::new();
    for (r, want) in [
        (
            reply(
                422,
                json!({"error": "No lookup value found for 'group': \"Securty\"",
                       "error_human": "No lookup value found for 'group': \"Securty\""}),
            ),
            "HTTP 422 Unprocessable Entity: No lookup value found for 'group'",
        ),
        (
            reply(
                422,
                json!({"error": "No lookup value found for 'customer': \"secops@example.com\""}),
            ),
            "No lookup value found for 'customer'",
        ),
        (
            reply(403, json!({"error": "Not authorized"})),
            "HTTP 403 Forbidden: Not authorized",
        ),
    ] {
        let fake = Fake::start(vec![r]).await;
        let a = zammad(&s, &fake.base, "");
        let m = blocked_message(a.create(&http_client().unwrap(), &content(), "b").await);
        assert!(m.contains(want) && !m.contains(TOKEN), "{m}");
        assert_eq!(fake.requests().len(), 1);
    }
}

#[tokio::test]
async fn round_trip_through_the_adapter() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        reply(200, json!([])),
        reply(201, ticket(44, "new")),
        reply(200, json!({"tags": ["sentinela", key()]})),
        reply(200, ticket(44, "new")),
        reply(201, article(44, true)),
        reply(200, json!([ticket(44, "new")])),
    ])
    .await;
    let a = zammad(&s, &fake.base, "");
    round_trip(
        &a,
        &fake,
        "44",
        &[
            ("GET", "/api/v1/tickets/search"),
            ("POST", "/api/v1/tickets"),
            ("GET", "/api/v1/tags"),
            ("GET", "/api/v1/tickets/44"),
            ("POST", "/api/v1/ticket_articles"),
            ("GET", "/api/v1/tickets/search"),
        ],
    )
    .await;
    let caps = a.capabilities();
    assert!(caps.find_open && caps.read_status && caps.separate_state_changes);
    assert_eq!(a.body_format(), sentinela::ticket::render::BodyFormat::Html);
    // A 5xx (here the fake's answer to an unscripted request) is retried, never "no ticket".
    assert!(matches!(
        a.find_open(&http_client().unwrap(), FP).await,
        Err(DeliveryError::Retry { .. })
    ));
}

#[tokio::test]
async fn an_echoed_token_is_not_shown() {
    let s = Secrets::new();
    let fake = Fake::start(vec![reply(
        401,
        json!({"error": format!("bad header Authorization: Token token={TOKEN}")}),
    )])
    .await;
    let a = zammad(&s, &fake.base, "");
    let m = blocked_message(a.check(&http_client().unwrap()).await);
    assert!(!m.contains(TOKEN) && m.contains("token=<redacted>"), "{m}");
}

#[test]
fn the_dry_run_needs_no_secret() {
    let text = "[[helpdesk]]\nname = \"zammad\"\nkind = \"zammad\"\n\
                url = \"https://zammad.example.com/\"\ntoken_env = \"SENTINELA_TEST_UNSET_ZAMMAD\"\n\
                group = \"Security\"\nrequester = \"secops@example.com\"\n";
    let a = Adapter::for_dry_run(&config(text)).unwrap();
    let shown = a.create_request(&content(), "<p>b</p>").display_redacted();
    assert!(
        shown.starts_with("POST https://zammad.example.com/api/v1/tickets\n")
            && shown.contains("Authorization: <redacted>"),
        "{shown}"
    );
}

#[tokio::test]
async fn merged_and_removed_tickets_are_closed_for_good() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        reply(200, ticket(19, "merged")),
        reply(200, ticket(19, "removed")),
        reply(200, ticket(19, "closed")),
    ])
    .await;
    let a = zammad(&s, &fake.base, "");
    let client = http_client().unwrap();
    let t = TicketRef("19".into());
    for want in [
        TicketStatus::Final,
        TicketStatus::Final,
        TicketStatus::Closed,
    ] {
        assert_eq!(a.status(&client, &t).await.unwrap(), want);
    }
}
