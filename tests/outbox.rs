//! The outbox worker against a scripted help desk (ServiceNow's Table API on the fake server):
//! what a recurrence does to a ticket that was resolved (reopened, then commented) and to one
//! closed for good (a follow-up ticket that names it, even within the reopen window).

mod support;
use support::*;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use sentinela::http::{Health, Metrics};
use sentinela::policy::Priority;
use sentinela::state::{Commit, Store};
use sentinela::ticket::adapter::Adapter;
use sentinela::ticket::lifecycle::{IncidentSnapshot, Operation, TicketRecord};
use sentinela::ticket::outbox::Worker;
use sentinela::ticket::UpdateKind;
use sentinela::timestamp::now_millis;

const FP: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const OLD: &str = "9d385017c611228701d22104cc95c371";
const NEW: &str = "aa385017c611228701d22104cc95c3aa";

fn adapter(s: &Secrets, base: &str) -> Adapter {
    let text = format!(
        "[[helpdesk]]\nname = \"sn\"\nkind = \"servicenow\"\nurl = \"{base}\"\n\
         username = \"svc\"\ntoken_file = {:?}\ntimeout = \"2s\"\nrequests_per_second = 100\n",
        s.path("token")
    );
    Adapter::from_config(&config(&text)).unwrap()
}

fn snapshot() -> IncidentSnapshot {
    let c = content();
    IncidentSnapshot {
        fingerprint: FP.into(),
        detector: c.detector,
        title: c.title,
        priority: Priority::P2,
        severity: c.severity,
        category: c.category,
        criticality: c.criticality,
        count: 20,
        first_seen: 0,
        last_seen: 60_000,
        source: c.source,
        fields: c.fields,
        evidence: c.evidence,
        description: String::new(),
        response: String::new(),
        references: Vec::new(),
    }
}

/// A store holding a ticket record (last updated just now: inside the reopen window) and a
/// queued recurrence update.
fn store_with_update(dir: &std::path::Path) -> Store {
    let mut store = Store::open_dir(dir).unwrap();
    let rec = TicketRecord {
        fingerprint: FP.into(),
        helpdesk: "sn".into(),
        ticket_ref: Some(OLD.into()),
        priority: Priority::P2,
        opened_count: 10,
        escalations: 0,
        last_update_at: now_millis(),
        last_update_count: 10,
        previous_ref: None,
        pending_digest: Vec::new(),
        pending_omitted: 0,
    };
    let op = Operation::Update {
        incident: Box::new(snapshot()),
        kind: UpdateKind::Recurrence,
        note: String::new(),
    };
    store
        .commit(&Commit {
            positions: Vec::new(),
            incidents: Vec::new(),
            correlation: Vec::new(),
            tickets: vec![rec],
            outbox: vec![("sn".into(), FP.into(), op)],
        })
        .unwrap();
    store
}

/// Runs the worker until the queued operation is delivered; returns the stored record.
async fn deliver(dir: &std::path::Path, a: Adapter) -> TicketRecord {
    let worker = Worker::new(
        a,
        Store::open_dir(dir).unwrap(),
        Duration::from_secs(24 * 3600),
        None,
        Arc::new(Metrics::default()),
        Arc::new(Health::default()),
    )
    .unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(worker.run(stop_rx));
    let reader = Store::open_dir(dir).unwrap();
    let started = std::time::Instant::now();
    while reader.outbox(Some("done")).unwrap().is_empty() {
        let rows = reader.outbox(None).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not delivered: {:?}",
            rows.iter()
                .map(|r| (&r.state, &r.last_error))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    let _ = task.await;
    reader.ticket("sn", FP).unwrap().expect("record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_closed_for_good_gets_a_follow_up_ticket_even_within_the_reopen_window() {
    let s = Secrets::new();
    let dir = tempfile::tempdir().unwrap();
    store_with_update(dir.path());
    let fake = Fake::start(vec![
        // The start-up check: refused (logged; deliveries go on).
        reply(401, json!({"error": {"message": "User Not Authenticated"}})),
        // The incident is Closed (state 7, inactive): ServiceNow will not reopen it.
        reply(
            200,
            json!({"result": {"sys_id": OLD, "number": "INC0010001", "state": "7", "active": "false"}}),
        ),
        reply(
            201,
            json!({"result": {"sys_id": NEW, "number": "INC0010002", "correlation_id": FP}}),
        ),
    ])
    .await;
    let rec = deliver(dir.path(), adapter(&s, &fake.base)).await;
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[1].method, "GET");
    assert!(
        reqs[1].path().ends_with(&format!("/incident/{OLD}")),
        "{reqs:?}"
    );
    // No reopen attempt: a new incident that names the closed one.
    assert_eq!(reqs[2].method, "POST");
    assert_eq!(reqs[2].path(), "/api/now/table/incident");
    let body = reqs[2].json();
    assert_eq!(body["correlation_id"], FP);
    assert!(
        body["description"].as_str().unwrap().contains(OLD),
        "{body}"
    );
    assert_eq!(rec.ticket_ref.as_deref(), Some(NEW));
    assert_eq!(rec.previous_ref.as_deref(), Some(OLD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_ticket_is_reopened_then_commented() {
    let s = Secrets::new();
    let dir = tempfile::tempdir().unwrap();
    store_with_update(dir.path());
    let fake = Fake::start(vec![
        reply(401, json!({"error": {"message": "User Not Authenticated"}})),
        // Resolved (state 6) stays active: it can be reopened.
        reply(
            200,
            json!({"result": {"sys_id": OLD, "number": "INC0010001", "state": "6", "active": "true"}}),
        ),
        reply(
            200,
            json!({"result": {"sys_id": OLD, "state": "2", "active": "true"}}),
        ),
        reply(200, json!({"result": {"sys_id": OLD}})),
    ])
    .await;
    let rec = deliver(dir.path(), adapter(&s, &fake.base)).await;
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 4, "{reqs:?}");
    assert_eq!(
        (reqs[2].method.as_str(), reqs[2].json()["state"].clone()),
        ("PATCH", json!("2"))
    );
    assert_eq!(reqs[3].method, "PATCH");
    assert!(reqs[3].json()["work_notes"].as_str().is_some());
    assert_eq!(rec.ticket_ref.as_deref(), Some(OLD));
    assert_eq!(rec.previous_ref, None);
}
