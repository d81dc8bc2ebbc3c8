//! Contract tests of the PagerDuty adapter (Events API v2) against the fake help desk server:
//! the event shapes of "Send an Alert Event" (developer.pagerduty.com), PagerDuty's answers
//! (202, 400 with an `errors` list, 429 without `Retry-After`) and the shared failure replay.

use std::time::Duration;

use serde_json::{json, Value};

use sentinela::policy::Priority;
use sentinela::ticket::adapter::{http_client, Adapter};
use sentinela::ticket::{TicketRef, TicketStatus, UpdateKind};

mod support;
use support::*;

fn pd_adapter(s: &Secrets, base: &str, extra: &str) -> Adapter {
    let text = format!(
        "[[helpdesk]]\nname = \"pd\"\nkind = \"pagerduty\"\nurl = \"{base}/\"\n\
         token_file = {:?}\ntimeout = \"1s\"\nrequests_per_second = 100\n{extra}",
        s.path("token")
    );
    Adapter::from_config(&config(&text)).unwrap()
}

fn accepted() -> Reply {
    reply(
        202,
        json!({"status": "success", "message": "Event processed", "dedup_key": FP}),
    )
}

fn assert_event_request(r: &Recorded) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/v2/enqueue");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_identified(r);
    // The routing key travels in the body, never in a header.
    assert!(r.header("Authorization").is_none());
    assert_eq!(r.json()["routing_key"], json!(TOKEN));
}

#[tokio::test]
async fn pagerduty_create_triggers_an_alert_keyed_by_the_fingerprint() {
    let s = Secrets::new();
    let fake = Fake::start(vec![accepted()]).await;
    let a = pd_adapter(&s, &fake.base, "group = \"edge\"\n");
    let mut c = content();
    c.fields.insert("host.name".into(), "web-1\nx".into());
    let client = http_client().unwrap();
    let t = a.create(&client, &c, "rendered body").await.unwrap();
    assert_eq!(t, TicketRef(FP.into()));

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_event_request(r);
    let body = r.json();
    assert_eq!(body["event_action"], json!("trigger"));
    assert_eq!(body["dedup_key"], json!(FP));
    assert_eq!(body["client"], json!("sentinela"));
    let p = &body["payload"];
    assert_eq!(
        p["summary"],
        json!("[sentinela P2] SSH brute force from 203.0.113.9 \"root\" Injected: header")
    );
    assert_eq!(p["severity"], json!("error"));
    assert_eq!(p["source"], json!("web-1 x"));
    assert_eq!(p["timestamp"], json!("2026-11-29T04:05:00Z"));
    assert_eq!(p["class"], json!("ssh.bruteforce"));
    assert_eq!(p["component"], json!("authentication"));
    assert_eq!(p["group"], json!("edge"));
    let d = &p["custom_details"];
    assert_eq!(d["count"], json!(12));
    assert_eq!(d["first_seen"], json!("2026-11-29T04:00:00Z"));
    assert_eq!(d["last_seen"], json!("2026-11-29T04:05:00Z"));
    assert_eq!(d["fields"]["source.ip"], json!("203.0.113.9"));
    assert_eq!(
        d["evidence"],
        json!(["Failed password for root from 203.0.113.9 port 22 ssh2"])
    );
    assert_eq!(d["response"], json!("Block the address."));
    assert_eq!(d["references"], json!(["T1110"]));
    assert!(d.get("update").is_none());
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "client",
            "dedup_key",
            "event_action",
            "payload",
            "routing_key"
        ]
    );

    // The dry run shows the placeholder, never the routing key.
    let cfg = config(&format!(
        "[[helpdesk]]\nname = \"pd\"\nkind = \"pagerduty\"\nurl = \"https://events.pagerduty.com\"\n\
         token_file = {:?}\n",
        s.path("token")
    ));
    let shown = Adapter::for_dry_run(&cfg)
        .unwrap()
        .create_request(&c, "b")
        .display_redacted();
    assert!(
        shown.starts_with("POST https://events.pagerduty.com/v2/enqueue\n"),
        "{shown}"
    );
    assert!(
        !shown.contains(TOKEN) && shown.contains("\"routing_key\":\"<token>\""),
        "{shown}"
    );
}

#[tokio::test]
async fn pagerduty_priority_map_names_the_severity() {
    let s = Secrets::new();
    let fake = Fake::start(vec![accepted()]).await;
    let a = pd_adapter(&s, &fake.base, "priority_map = { P2 = \"Critical\" }\n");
    a.create(&http_client().unwrap(), &content(), "b")
        .await
        .unwrap();
    assert_eq!(
        fake.requests()[0].json()["payload"]["severity"],
        json!("critical")
    );
}

#[tokio::test]
async fn pagerduty_updates_are_triggers_and_resolve_closes_the_alert() {
    let s = Secrets::new();
    let fake = Fake::start(vec![accepted(); 4]).await;
    let a = pd_adapter(&s, &fake.base, "");
    let client = http_client().unwrap();
    let t = TicketRef(FP.into());
    let mut c = content();
    c.count = 40;
    c.priority = Priority::P1;

    // No search, no status, no check: nothing is sent for them.
    let caps = a.capabilities();
    assert!(!caps.find_open && !caps.read_status && !caps.separate_state_changes);
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    assert_eq!(a.status(&client, &t).await.unwrap(), TicketStatus::Open);
    assert!(a.check_request().is_none());
    a.check(&client).await.unwrap();
    // Reopen and priority ride on the triggers of the comments that follow them.
    assert!(a.reopen_request(&t).is_none() && a.set_priority_request(&t, Priority::P1).is_none());
    a.reopen(&client, &t).await.unwrap();
    a.set_priority(&client, &t, Priority::P1).await.unwrap();
    assert!(fake.requests().is_empty());

    a.comment(
        &client,
        &t,
        &c,
        UpdateKind::Recurrence,
        "seen 28 more times",
    )
    .await
    .unwrap();
    a.comment(
        &client,
        &t,
        &c,
        UpdateKind::Escalation,
        "Priority raised to P1",
    )
    .await
    .unwrap();
    a.comment(
        &client,
        &t,
        &c,
        UpdateKind::Reopen,
        "recurred after resolve",
    )
    .await
    .unwrap();
    a.resolve(&client, &t, &c).await.unwrap();

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 4);
    for r in &reqs {
        assert_event_request(r);
        assert_eq!(r.json()["dedup_key"], json!(FP));
    }
    let updates: Vec<(Value, Value, Value, Value)> = reqs[..3]
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["event_action"].clone(),
                b["payload"]["severity"].clone(),
                b["payload"]["custom_details"]["update"].clone(),
                b["payload"]["custom_details"]["update_text"].clone(),
            )
        })
        .collect();
    assert_eq!(
        updates,
        vec![
            (
                json!("trigger"),
                json!("critical"),
                json!("recurrence"),
                json!("seen 28 more times")
            ),
            (
                json!("trigger"),
                json!("critical"),
                json!("escalation"),
                json!("Priority raised to P1")
            ),
            (
                json!("trigger"),
                json!("critical"),
                json!("reopen"),
                json!("recurred after resolve")
            ),
        ]
    );
    assert_eq!(
        reqs[0].json()["payload"]["custom_details"]["count"],
        json!(40)
    );
    assert_eq!(
        reqs[3].json(),
        json!({"routing_key": TOKEN, "event_action": "resolve", "dedup_key": FP})
    );
}

#[tokio::test]
async fn pagerduty_answers_are_read_as_documented() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        // 400 with PagerDuty's error list.
        reply(
            400,
            json!({"status": "invalid event", "message": "Event object is invalid",
                   "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"]}),
        ),
        // 429 without Retry-After.
        Reply::Http {
            status: 429,
            headers: vec![],
            body: String::new(),
        },
        // A 2xx that is not PagerDuty's answer (a proxy's page).
        Reply::Http {
            status: 200,
            headers: vec![],
            body: "<html><title>Portal</title></html>".into(),
        },
        // Accepted under another key: later events would miss the alert.
        reply(
            202,
            json!({"status": "success", "message": "Event processed", "dedup_key": "other"}),
        ),
        // An echo of the routing key is scrubbed.
        reply(
            400,
            json!({"status": "invalid event", "message": "Event object is invalid",
                   "errors": [format!("unknown routing_key {TOKEN}")]}),
        ),
    ])
    .await;
    let a = pd_adapter(&s, &fake.base, "");
    let client = http_client().unwrap();
    let c = content();
    let m = blocked_message(a.create(&client, &c, "b").await);
    assert_eq!(
        m,
        "helpdesk \"pd\": create ticket: HTTP 400 Bad Request: Event object is invalid: \
         Length of 'routing_key' is incorrect (should be 32 characters)"
    );
    assert_eq!(
        retry_after(a.create(&client, &c, "b").await),
        Some(Duration::from_secs(30))
    );
    let m = blocked_message(a.create(&client, &c, "b").await);
    assert!(
        m.contains("unexpected answer") && m.contains("Portal"),
        "{m}"
    );
    let m = blocked_message(a.create(&client, &c, "b").await);
    assert!(m.contains("under dedup_key \"other\""), "{m}");
    let m = blocked_message(a.create(&client, &c, "b").await);
    assert!(!m.contains(TOKEN) && m.contains("<redacted>"), "{m}");
}

#[tokio::test]
async fn pagerduty_failures_are_classified() {
    let s = Secrets::new();
    replay_failures(|base| pd_adapter(&s, base, "")).await;
}
