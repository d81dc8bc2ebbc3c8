//! Contract tests of the ServiceNow adapter (Table API) against the fake help desk server:
//! request shapes from the Table API documentation (`/api/now/table/incident`, encoded
//! queries, `sysparm_*` parameters), ServiceNow's answers (`{"result": ...}`, string values,
//! `{"error": {"message", "detail"}}`), silent drops, and the shared failure replay.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use sentinela::policy::Priority;
use sentinela::ticket::adapter::{http_client, Adapter};
use sentinela::ticket::{TicketRef, TicketStatus, UpdateKind};

mod support;
use support::*;

const SYS_ID: &str = "9d385017c611228701d22104cc95c371";
const GROUP: &str = "287ebd7da9fe198100f92cc8d1d2154e";
const CALLER: &str = "5137153cc611227c000bbd1bd8cd2005";
const USER: &str = "svc.sentinela";

fn sn_adapter(s: &Secrets, base: &str, extra: &str) -> Adapter {
    let text = format!(
        "[[helpdesk]]\nname = \"sn\"\nkind = \"servicenow\"\nurl = \"{base}/\"\n\
         username = \"{USER}\"\ntoken_file = {:?}\ntimeout = \"1s\"\nrequests_per_second = 100\n\
         {extra}",
        s.path("token")
    );
    Adapter::from_config(&config(&text)).unwrap()
}

/// `Basic base64(user:token)`, computed independently of the adapter.
fn basic() -> String {
    let out = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("{USER}:{TOKEN}").as_bytes())?;
            c.wait_with_output()
        })
        .expect("base64(1)");
    format!("Basic {}", String::from_utf8(out.stdout).unwrap().trim())
}

fn assert_sn_headers(r: &Recorded) {
    assert_eq!(r.header("Authorization"), Some(basic().as_str()));
    assert_json_headers(r);
}

fn created(fp: &str, group: &str, caller: &str) -> Reply {
    reply_with(
        201,
        &[(
            "Location",
            &format!("https://acme.service-now.com/api/now/table/incident/{SYS_ID}"),
        )],
        json!({"result": {"sys_id": SYS_ID, "number": "INC0010042", "correlation_id": fp,
                          "assignment_group": group, "caller_id": caller}}),
    )
}

#[tokio::test]
async fn servicenow_create_posts_an_incident_keyed_by_correlation_id() {
    let s = Secrets::new();
    let fake = Fake::start(vec![created(FP, GROUP, CALLER)]).await;
    let a = sn_adapter(
        &s,
        &fake.base,
        &format!(
            "group = \"{GROUP}\"\nrequester = \"{}\"\n\
             create_fields = {{ category = \"security\", contact_type = \"monitoring\" }}\n",
            CALLER.to_uppercase()
        ),
    );
    let c = content();
    let client = http_client().unwrap();
    let t = a
        .create(&client, &c, "rendered body\nline 2")
        .await
        .unwrap();
    assert_eq!(t, TicketRef(SYS_ID.into()));

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path(), "/api/now/table/incident");
    assert_sn_headers(r);
    let q = r.query();
    assert_eq!(
        q.get("sysparm_exclude_reference_link").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        q.get("sysparm_fields").map(String::as_str),
        Some("sys_id,number,correlation_id,assignment_group,caller_id")
    );
    assert_eq!(
        r.json(),
        json!({
            // One line: the CR LF of attacker text is gone.
            "short_description": "[sentinela P2] SSH brute force from 203.0.113.9 \"root\" Injected: header",
            "description": "rendered body\nline 2",
            "impact": "1",
            "urgency": "2",
            "correlation_id": FP,
            "correlation_display": "sentinela",
            "assignment_group": GROUP,
            "caller_id": CALLER,
            "category": "security",
            "contact_type": "monitoring",
        })
    );

    // The dry run shows the same request, credentials redacted.
    let shown = a.create_request(&c, "rendered body").display_redacted();
    assert!(shown.starts_with(&format!("POST {}/api/now/table/incident?", fake.base)));
    assert!(
        shown.contains("Authorization: <redacted>") && !shown.contains(&basic()[6..]),
        "{shown}"
    );
}

#[tokio::test]
async fn servicenow_titles_are_cut_to_short_description() {
    let s = Secrets::new();
    let fake = Fake::start(vec![created(FP, "", "")]).await;
    let a = sn_adapter(&s, &fake.base, "priority_map = { P2 = \"2/1\" }\n");
    let mut c = content();
    c.title = "é".repeat(300);
    a.create(&http_client().unwrap(), &c, "b").await.unwrap();
    let body = fake.requests()[0].json();
    let sd = body["short_description"].as_str().unwrap();
    assert_eq!(sd.chars().count(), 160);
    assert!(
        sd.starts_with("[sentinela P2] ééé") && sd.ends_with('…'),
        "{sd}"
    );
    assert_eq!(
        (&body["impact"], &body["urgency"]),
        (&json!("2"), &json!("1"))
    );
}

#[tokio::test]
async fn servicenow_silent_drops_are_blocked() {
    let s = Secrets::new();
    let extra = format!("group = \"{GROUP}\"\n");
    for (reply, field) in [
        (created("", GROUP, ""), "correlation_id holds \"\""),
        (
            created(&FP.to_uppercase(), GROUP, ""),
            "correlation_id holds",
        ),
        (created(FP, "", ""), "assignment_group holds \"\""),
    ] {
        let fake = Fake::start(vec![reply]).await;
        let a = sn_adapter(&s, &fake.base, &extra);
        let m = blocked_message(a.create(&http_client().unwrap(), &content(), "b").await);
        assert!(
            m.starts_with("helpdesk \"sn\": create ticket: incident INC0010042")
                && m.contains(field)
                && m.contains("field ACL or business rule"),
            "{m}"
        );
    }
}

#[tokio::test]
async fn servicenow_find_open_queries_correlation_id_and_compares_exactly() {
    let s = Secrets::new();
    let item = |id: &str, fp: &str, state: &str, active: &str, created: &str| {
        json!({"sys_id": id, "number": "INC1", "correlation_id": fp, "state": state,
               "active": active, "sys_created_on": created})
    };
    let old = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let new = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let other = "cccccccccccccccccccccccccccccccc";
    let fake = Fake::start(vec![
        reply(
            200,
            json!({"result": [
                // Another incident's key, differing only in case: the query ignores case.
                item(other, &FP.to_uppercase(), "1", "true", "2026-11-01 00:00:00"),
                item(new, FP, "2", "true", "2026-11-29 04:00:00"),
                item(old, FP, "1", "true", "2026-11-28 04:00:00"),
                // Resolved meanwhile.
                item(other, FP, "6", "true", "2026-11-27 04:00:00"),
            ]}),
        ),
        reply(
            200,
            json!({"result": [item(other, &FP.to_uppercase(), "1", "true", "2026-11-01 00:00:00")]}),
        ),
        reply(200, json!({"result": []})),
    ])
    .await;
    let a = sn_adapter(&s, &fake.base, "");
    let client = http_client().unwrap();
    assert_eq!(
        a.find_open(&client, FP).await.unwrap(),
        Some(TicketRef(old.into()))
    );
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    let r = &fake.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path(), "/api/now/table/incident");
    assert_sn_headers(r);
    let q = r.query();
    assert_eq!(
        q.get("sysparm_query").map(String::as_str),
        Some(
            format!("correlation_id={FP}^active=true^stateNOT IN6,7,8^ORDERBYsys_created_on")
                .as_str()
        )
    );
    assert_eq!(
        q.get("sysparm_fields").map(String::as_str),
        Some("sys_id,number,correlation_id,state,active,sys_created_on")
    );
    assert_eq!(q.get("sysparm_limit").map(String::as_str), Some("100"));
    assert_eq!(
        q.get("sysparm_exclude_reference_link").map(String::as_str),
        Some("true")
    );
}

#[tokio::test]
async fn servicenow_comment_status_reopen_and_priority() {
    let s = Secrets::new();
    let inc = |state: &str, active: &str| json!({"result": {"sys_id": SYS_ID, "number": "INC0010042", "state": state, "active": active}});
    let fake = Fake::start(vec![
        reply(200, json!({"result": {"sys_id": SYS_ID}})),
        reply(200, inc("2", "true")),
        reply(200, inc("3", "true")),
        reply(200, inc("6", "true")),
        reply(200, inc("7", "false")),
        reply(200, inc("10", "false")),
        reply(200, inc("2", "true")),
        reply(
            200,
            json!({"result": {"sys_id": SYS_ID, "impact": "1", "urgency": "1", "priority": "1"}}),
        ),
        // A closed incident keeps its state: ServiceNow answers 200 all the same.
        reply(200, inc("7", "false")),
        // Or the ACL refuses the whole write.
        reply(
            403,
            json!({"error": {"message": "Operation Failed",
                             "detail": "ACL Exception Update Failed due to security constraints"},
                   "status": "failure"}),
        ),
        reply(200, json!({"weird": true})),
    ])
    .await;
    let a = sn_adapter(&s, &fake.base, "priority_map = { P1 = 1 }\n");
    let client = http_client().unwrap();
    let t = TicketRef(SYS_ID.into());
    let c = content();
    assert!(a.capabilities().find_open && a.capabilities().read_status);
    assert!(a.capabilities().separate_state_changes);
    a.comment(&client, &t, &c, UpdateKind::Recurrence, "seen 5 more times")
        .await
        .unwrap();
    let statuses = [
        TicketStatus::Open,
        TicketStatus::Open,
        TicketStatus::Closed,
        TicketStatus::Final,
        TicketStatus::Final,
    ];
    for want in statuses {
        assert_eq!(a.status(&client, &t).await.unwrap(), want);
    }
    a.reopen(&client, &t).await.unwrap();
    a.set_priority(&client, &t, Priority::P1).await.unwrap();
    let m = blocked_message(a.reopen(&client, &t).await);
    assert!(
        m.contains("kept incident INC0010042 in state 7 (Closed)"),
        "{m}"
    );
    let m = blocked_message(a.reopen(&client, &t).await);
    assert!(
        m.contains(
            "HTTP 403 Forbidden: Operation Failed (ACL Exception Update Failed due to security constraints)"
        ),
        "{m}"
    );
    let m = blocked_message(a.status(&client, &t).await);
    assert!(m.contains("unexpected answer (no result)"), "{m}");

    let reqs = fake.requests();
    let shape: Vec<(&str, String, Option<Value>)> = reqs
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.query()["sysparm_fields"].clone(),
                (!r.body.is_empty()).then(|| r.json()),
            )
        })
        .collect();
    let status = ("GET", "sys_id,number,state,active".to_string(), None);
    let reopen = (
        "PATCH",
        "sys_id,number,state,active".to_string(),
        Some(json!({"state": "2"})),
    );
    assert_eq!(
        shape,
        vec![
            (
                "PATCH",
                "sys_id".to_string(),
                Some(json!({"work_notes": "seen 5 more times"}))
            ),
            status.clone(),
            status.clone(),
            status.clone(),
            status.clone(),
            status.clone(),
            reopen.clone(),
            (
                "PATCH",
                "sys_id,impact,urgency,priority".to_string(),
                Some(json!({"impact": "1", "urgency": "1"}))
            ),
            reopen.clone(),
            reopen,
            status,
        ]
    );
    for r in &reqs {
        assert_eq!(r.path(), format!("/api/now/table/incident/{SYS_ID}"));
        assert_eq!(r.query()["sysparm_exclude_reference_link"].as_str(), "true");
        assert_sn_headers(r);
    }
}

#[tokio::test]
async fn servicenow_check_reads_incidents_and_the_configured_records() {
    let s = Secrets::new();
    let extra = format!("group = \"{GROUP}\"\nrequester = \"{CALLER}\"\n");
    let list = || reply(200, json!({"result": [{"sys_id": SYS_ID}]}));
    let rec = |name: &str, active: &str| {
        reply(
            200,
            json!({"result": {"sys_id": GROUP, "name": name, "active": active}}),
        )
    };
    let not_found = || {
        reply(
            404,
            json!({"error": {"message": "No Record found",
                             "detail": "Record doesn't exist or ACL restricts the record retrieval"},
                   "status": "failure"}),
        )
    };
    let cases: Vec<(Vec<Reply>, Option<String>)> = vec![
        (vec![list(), rec("Security", "true"), rec("Svc", "true")], None),
        // An empty incident table is fine.
        (
            vec![
                reply(200, json!({"result": []})),
                rec("Security", "true"),
                rec("Svc", "true"),
            ],
            None,
        ),
        (
            vec![list(), not_found()],
            Some(format!(
                "HTTP 404 Not Found: No Record found (Record doesn't exist or ACL restricts the \
                 record retrieval) (`group` = \"{GROUP}\": no such sys_user_group record"
            )),
        ),
        (
            vec![list(), rec("Security", "true"), not_found()],
            Some(format!("(`requester` = \"{CALLER}\": no such sys_user record")),
        ),
        (
            vec![list(), rec("Security", "true"), rec("Old Svc", "false")],
            Some("sys_user record \"Old Svc\" is inactive".into()),
        ),
        (
            vec![reply(
                401,
                json!({"error": {"message": "User Not Authenticated",
                                 "detail": "Required to provide Auth information"},
                       "status": "failure"}),
            )],
            Some("HTTP 401 Unauthorized: User Not Authenticated (Required to provide Auth information) (check `username`".into()),
        ),
        (
            vec![reply(
                403,
                json!({"error": {"message": "Operation Failed", "detail": "ACL restricts"},
                       "status": "failure"}),
            )],
            Some("(the user cannot read incidents: give it the itil role".into()),
        ),
    ];
    for (script, want) in cases {
        let n = script.len();
        let fake = Fake::start(script).await;
        let a = sn_adapter(&s, &fake.base, &extra);
        assert_ok_or_blocked(a.check(&http_client().unwrap()).await, want.as_deref());
        let reqs = fake.requests();
        assert_eq!(reqs.len(), n);
        assert_eq!(reqs[0].method, "GET");
        assert_eq!(
            reqs[0].target,
            "/api/now/table/incident?sysparm_limit=1&sysparm_fields=sys_id"
        );
        let paths: Vec<&str> = reqs[1..].iter().map(|r| r.path()).collect();
        let want_paths = [
            format!("/api/now/table/sys_user_group/{GROUP}"),
            format!("/api/now/table/sys_user/{CALLER}"),
        ];
        assert_eq!(paths, want_paths[..n - 1]);
        for r in &reqs {
            assert_sn_headers(r);
        }
    }
}

#[tokio::test]
async fn servicenow_api_key_instead_of_basic_auth() {
    let s = Secrets::new();
    let fake = Fake::start(vec![reply(200, json!({"result": []}))]).await;
    let text = format!(
        "[[helpdesk]]\nname = \"sn\"\nkind = \"servicenow\"\nurl = \"{}\"\ntoken_file = {:?}\n",
        fake.base,
        s.path("token")
    );
    let a = Adapter::from_config(&config(&text)).unwrap();
    a.check(&http_client().unwrap()).await.unwrap();
    let r = &fake.requests()[0];
    assert_eq!(r.header("x-sn-apikey"), Some(TOKEN));
    assert!(r.header("Authorization").is_none());
}

#[tokio::test]
async fn servicenow_rate_limit_reset_when_no_retry_after() {
    let s = Secrets::new();
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let fake = Fake::start(vec![reply_with(
        429,
        &[
            ("X-RateLimit-Limit", "100"),
            ("X-RateLimit-Reset", &reset.to_string()),
            ("X-RateLimit-Rule", "integrations"),
        ],
        json!({"error": {"message": "Rate limit exceeded", "detail": "100 requests per hour"},
               "status": "failure"}),
    )])
    .await;
    let a = sn_adapter(&s, &fake.base, "");
    let wait = retry_after(a.find_open(&http_client().unwrap(), FP).await).unwrap();
    assert!(
        wait <= Duration::from_secs(600) && wait >= Duration::from_secs(590),
        "{wait:?}"
    );
}

#[tokio::test]
async fn servicenow_failures_are_classified() {
    let s = Secrets::new();
    replay_failures(|base| sn_adapter(&s, base, "")).await;
}

#[tokio::test]
async fn echoed_credentials_are_not_shown() {
    let s = Secrets::new();
    let encoded = b64(format!("{USER}:{TOKEN}").as_bytes());
    let fake = Fake::start(vec![reply(
        400,
        json!({"error": {"message": "Bad header", "detail": format!("Authorization: Basic {encoded}")},
               "status": "failure"}),
    )])
    .await;
    let a = sn_adapter(&s, &fake.base, "");
    let m = blocked_message(a.create(&http_client().unwrap(), &content(), "b").await);
    assert!(!m.contains(&encoded) && !m.contains(TOKEN), "{m}");
    assert!(m.contains("Basic <redacted>"), "{m}");
}
