//! Contract tests of the GLPI adapter (legacy REST API, `apirest.php`) against the fake help
//! desk server: sessions (`initSession` with `user_token` and `App-Token`, `Session-Token` on
//! every call, a new session after a 401, `killSession` after the check), request shapes from
//! GLPI's `apirest.md` (`{"input": ...}` bodies, the search API's `criteria`), GLPI's answers
//! (update results, error arrays), and the shared failure cases.

use std::time::Duration;

use serde_json::{json, Value};

use sentinela::policy::Priority;
use sentinela::ticket::adapter::{http_client, Adapter};
use sentinela::ticket::{DeliveryError, TicketRef, TicketStatus, UpdateKind};

mod support;
use support::*;

const APP: &str = "app-token-0123456789";

fn glpi_adapter(s: &Secrets, base: &str, extra: &str) -> Adapter {
    let app = s.dir.path().join("app");
    std::fs::write(&app, format!("{APP}\n")).unwrap();
    let text = format!(
        "[[helpdesk]]\nname = \"glpi\"\nkind = \"glpi\"\nurl = \"{base}/\"\n\
         token_file = {:?}\napp_token_file = {:?}\ntimeout = \"1s\"\nrequests_per_second = 100\n\
         {extra}",
        s.path("token"),
        app.display().to_string()
    );
    Adapter::from_config(&config(&text)).unwrap()
}

fn session(token: &str) -> Reply {
    reply(200, json!({ "session_token": token }))
}

fn session_expired() -> Reply {
    reply(
        401,
        json!(["ERROR_SESSION_TOKEN_INVALID", "session_token seems invalid"]),
    )
}

/// The headers of every call; `session` is the `Session-Token` (None: the initSession).
fn assert_glpi_headers(r: &Recorded, session: Option<&str>) {
    assert_eq!(r.header("App-Token"), Some(APP));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_identified(r);
    match session {
        None => {
            assert_eq!(r.method, "GET");
            assert_eq!(r.target, "/apirest.php/initSession");
            assert_eq!(
                r.header("Authorization"),
                Some(format!("user_token {TOKEN}").as_str())
            );
            assert!(r.header("Session-Token").is_none() && r.body.is_empty());
        }
        Some(s) => {
            assert_eq!(r.header("Session-Token"), Some(s));
            assert!(r.header("Authorization").is_none());
        }
    }
}

#[tokio::test]
async fn glpi_create_opens_a_session_and_posts_an_incident_ticket() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        session("s1"),
        reply_with(
            201,
            &[("Location", "http://glpi/apirest.php/Ticket/15")],
            json!({"id": 15, "message": ""}),
        ),
        reply(201, json!({"id": 16, "message": ""})),
    ])
    .await;
    let a = glpi_adapter(
        &s,
        &fake.base,
        "group = \"3\"\nrequester = \"7\"\ncreate_fields = { itilcategories_id = 4, entities_id = 0 }\n",
    );
    let c = content();
    let client = http_client().unwrap();
    let t = a.create(&client, &c, "<p>rendered</p>").await.unwrap();
    assert_eq!(t, TicketRef("15".into()));
    // The session is kept: the next create does not open another.
    a.create(&client, &c, "<p>again</p>").await.unwrap();

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert_glpi_headers(&reqs[0], None);
    let r = &reqs[1];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/apirest.php/Ticket");
    assert_glpi_headers(r, Some("s1"));
    assert_glpi_headers(&reqs[2], Some("s1"));
    assert_eq!(
        r.json(),
        json!({"input": {
            // One line, the key at the end.
            "name": format!(
                "[sentinela P2] SSH brute force from 203.0.113.9 \"root\" Injected: header [sentinela:{FP}]"
            ),
            "content": "<p>rendered</p>",
            "type": 1,
            "urgency": 4,
            "impact": 4,
            "_users_id_requester": 7,
            "_groups_id_assign": 3,
            "itilcategories_id": 4,
            "entities_id": 0,
        }})
    );
}

#[tokio::test]
async fn glpi_dry_run_shows_the_session_steps_with_secrets_redacted() {
    let s = Secrets::new();
    let cfg = config(&format!(
        "[[helpdesk]]\nname = \"glpi\"\nkind = \"glpi\"\nurl = \"https://glpi.example.com\"\n\
         token_file = {:?}\napp_token_env = \"GLPI_APP_TOKEN_NOT_SET_IN_TESTS\"\n",
        s.path("token")
    ));
    let a = Adapter::for_dry_run(&cfg).unwrap();
    let open = a.open_session_request().unwrap().display_redacted();
    assert!(
        open.starts_with("GET https://glpi.example.com/apirest.php/initSession\n")
            && open.contains("Authorization: <redacted>")
            && open.contains("App-Token: <redacted>"),
        "{open}"
    );
    let create = a.create_request(&content(), "<p>b</p>").display_redacted();
    assert!(
        create.starts_with("POST https://glpi.example.com/apirest.php/Ticket\n")
            && create.contains("Session-Token: <redacted>")
            && !create.contains(TOKEN),
        "{create}"
    );
}

#[tokio::test]
async fn glpi_an_expired_session_is_opened_again_once() {
    let s = Secrets::new();
    let fake = Fake::start(vec![
        session("s1"),
        session_expired(),
        session("s2"),
        reply(201, json!({"id": 15, "message": ""})),
        // Both sessions refused: blocked, no loop.
        session_expired(),
        session("s3"),
        session_expired(),
    ])
    .await;
    let a = glpi_adapter(&s, &fake.base, "");
    let client = http_client().unwrap();
    let t = a.create(&client, &content(), "<p>b</p>").await.unwrap();
    assert_eq!(t, TicketRef("15".into()));
    let m = blocked_message(a.create(&client, &content(), "<p>b</p>").await);
    assert!(
        m.starts_with(
            "helpdesk \"glpi\": create ticket: HTTP 401 Unauthorized: ERROR_SESSION_TOKEN_INVALID"
        ),
        "{m}"
    );
    let reqs = fake.requests();
    let seen: Vec<(&str, Option<&str>)> = reqs
        .iter()
        .map(|r| (r.path(), r.header("Session-Token")))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("/apirest.php/initSession", None),
            ("/apirest.php/Ticket", Some("s1")),
            ("/apirest.php/initSession", None),
            ("/apirest.php/Ticket", Some("s2")),
            ("/apirest.php/Ticket", Some("s2")),
            ("/apirest.php/initSession", None),
            ("/apirest.php/Ticket", Some("s3")),
        ]
    );
}

#[tokio::test]
async fn glpi_find_open_searches_titles_and_compares_the_key_exactly() {
    let s = Secrets::new();
    let row = |id: u64, title: &str, status: u64| json!({"1": title, "2": id, "12": status, "80": "Root entity"});
    let fake = Fake::start(vec![
        session("s1"),
        reply(
            200,
            json!({"totalcount": 5, "count": 5, "sort": [2], "order": ["ASC"], "data": [
                // LIKE ignores case: another incident's key.
                row(3, &format!("x [sentinela:{}]", FP.to_uppercase()), 1),
                // Attacker text quoting the key, then another key.
                row(4, &format!("[sentinela:{FP}] quoted [sentinela:ffff]"), 2),
                // Solved meanwhile.
                row(5, &format!("y [sentinela:{FP}]"), 5),
                row(9, &format!("z [sentinela:{FP}]"), 4),
                row(8, &format!("w [sentinela:{FP}]"), 1),
            ]}),
        ),
        // GLPI leaves `data` out when nothing matches.
        reply(
            200,
            json!({"totalcount": 0, "count": 0, "sort": [2], "order": ["ASC"]}),
        ),
        reply(200, json!({"weird": true})),
    ])
    .await;
    let a = glpi_adapter(&s, &fake.base, "");
    let client = http_client().unwrap();
    assert_eq!(
        a.find_open(&client, FP).await.unwrap(),
        Some(TicketRef("8".into()))
    );
    assert_eq!(a.find_open(&client, FP).await.unwrap(), None);
    let m = blocked_message(a.find_open(&client, FP).await);
    assert!(m.contains("unexpected answer (no totalcount)"), "{m}");

    let r = &fake.requests()[1];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path(), "/apirest.php/search/Ticket");
    assert_glpi_headers(r, Some("s1"));
    let q = r.query();
    let want = [
        ("criteria[0][field]", "1"),
        ("criteria[0][searchtype]", "contains"),
        ("criteria[0][value]", FP),
        ("criteria[1][link]", "AND"),
        ("criteria[1][field]", "12"),
        ("criteria[1][searchtype]", "equals"),
        ("criteria[1][value]", "notold"),
        ("forcedisplay[0]", "1"),
        ("forcedisplay[1]", "2"),
        ("forcedisplay[2]", "12"),
        ("sort", "2"),
        ("order", "ASC"),
        ("range", "0-99"),
    ];
    for (k, v) in want {
        assert_eq!(q.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(q.len(), want.len());
}

#[tokio::test]
async fn glpi_comment_status_reopen_and_priority() {
    let s = Secrets::new();
    let ticket = |status: Value, deleted: u64| {
        json!({"id": 15, "name": "x", "status": status, "urgency": 4, "impact": 4,
               "priority": 4, "is_deleted": deleted})
    };
    let fake = Fake::start(vec![
        session("s1"),
        reply(201, json!({"id": 31, "message": ""})),
        reply(200, ticket(json!(1), 0)),
        reply(200, ticket(json!(4), 0)),
        reply(200, ticket(json!(5), 0)),
        reply(200, ticket(json!("6"), 0)),
        reply(200, ticket(json!(2), 1)),
        reply(200, json!([{"15": true, "message": ""}])),
        reply(200, json!([{"15": true, "message": ""}])),
        // GLPI refuses with 200.
        reply(
            200,
            json!([{"15": false, "message": "You don't have permission to perform this action."}]),
        ),
        reply(
            400,
            json!(["ERROR_GLPI_UPDATE", "We cannot update the object to GLPi."]),
        ),
        reply(200, ticket(json!(9), 0)),
    ])
    .await;
    let a = glpi_adapter(&s, &fake.base, "priority_map = { P1 = \"5/4\" }\n");
    let client = http_client().unwrap();
    let t = TicketRef("15".into());
    let c = content();
    a.comment(
        &client,
        &t,
        &c,
        UpdateKind::Recurrence,
        "<p>seen 5 more times</p>",
    )
    .await
    .unwrap();
    for want in [
        TicketStatus::Open,
        TicketStatus::Open,
        TicketStatus::Closed,
        TicketStatus::Final,
        TicketStatus::Final,
    ] {
        assert_eq!(a.status(&client, &t).await.unwrap(), want);
    }
    a.reopen(&client, &t).await.unwrap();
    a.set_priority(&client, &t, Priority::P1).await.unwrap();
    let m = blocked_message(a.reopen(&client, &t).await);
    assert!(
        m.contains("GLPI answered 200 but refused: You don't have permission"),
        "{m}"
    );
    let m = blocked_message(a.set_priority(&client, &t, Priority::P1).await);
    assert!(
        m.contains("HTTP 400 Bad Request: ERROR_GLPI_UPDATE; We cannot update the object"),
        "{m}"
    );
    let m = blocked_message(a.status(&client, &t).await);
    assert!(m.contains("unknown ticket status 9"), "{m}");

    let reqs = fake.requests();
    let shape: Vec<(&str, &str, Option<Value>)> = reqs[1..]
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.target.as_str(),
                (!r.body.is_empty()).then(|| r.json()),
            )
        })
        .collect();
    let status = (
        "GET",
        "/apirest.php/Ticket/15?expand_dropdowns=false&get_hateoas=false",
        None,
    );
    let reopen = (
        "PUT",
        "/apirest.php/Ticket/15",
        Some(json!({"input": {"status": 2}})),
    );
    let priority = (
        "PUT",
        "/apirest.php/Ticket/15",
        Some(json!({"input": {"urgency": 5, "impact": 4}})),
    );
    assert_eq!(
        shape,
        vec![
            (
                "POST",
                "/apirest.php/ITILFollowup",
                Some(json!({"input": {"itemtype": "Ticket", "items_id": 15,
                                      "content": "<p>seen 5 more times</p>", "is_private": 1}}))
            ),
            status.clone(),
            status.clone(),
            status.clone(),
            status.clone(),
            status.clone(),
            reopen.clone(),
            priority.clone(),
            reopen,
            priority,
            status,
        ]
    );
    for r in &reqs[1..] {
        assert_glpi_headers(r, Some("s1"));
    }
}

fn profile(create: bool) -> Value {
    json!({"active_profile": {"id": 4, "name": "Technician", "interface": "central",
                              "ticket": if create { 261151 } else { 1025 }}})
}

#[tokio::test]
async fn glpi_check_opens_a_session_reads_the_profile_and_ends_the_session() {
    let s = Secrets::new();
    let extra = "group = \"3\"\nrequester = \"7\"\n";
    let kill = || Reply::Http {
        status: 200,
        headers: vec![],
        body: String::new(),
    };
    let group = || reply(200, json!({"id": 3, "name": "Security", "is_active": 1}));
    let user = |active: u64| reply(200, json!({"id": 7, "name": "soc", "is_active": active}));
    let not_found = || reply(404, json!(["ERROR_ITEM_NOT_FOUND", "Item not found"]));
    let cases: Vec<(Vec<Reply>, Vec<&str>, Option<&str>)> = vec![
        (
            vec![session("s1"), reply(200, profile(true)), group(), user(1), kill()],
            vec!["initSession", "getActiveProfile", "Group/3", "User/7", "killSession"],
            None,
        ),
        (
            vec![session("s1"), reply(200, profile(false)), kill()],
            vec!["initSession", "getActiveProfile", "killSession"],
            Some("the user's active profile \"Technician\" cannot create tickets"),
        ),
        (
            vec![session("s1"), reply(200, profile(true)), not_found(), kill()],
            vec!["initSession", "getActiveProfile", "Group/3", "killSession"],
            Some("HTTP 404 Not Found: ERROR_ITEM_NOT_FOUND; Item not found (`group` = 3: no such Group"),
        ),
        (
            vec![session("s1"), reply(200, profile(true)), group(), user(0), kill()],
            vec!["initSession", "getActiveProfile", "Group/3", "User/7", "killSession"],
            Some("`requester` = 7: User 7 is inactive"),
        ),
        (
            vec![reply(
                401,
                json!(["ERROR_GLPI_LOGIN_USER_TOKEN", "parameter user_token seems invalid"]),
            )],
            vec!["initSession"],
            Some(
                "helpdesk \"glpi\": open session: HTTP 401 Unauthorized: \
                 ERROR_GLPI_LOGIN_USER_TOKEN; parameter user_token seems invalid (check the \
                 user's API token",
            ),
        ),
        (
            vec![reply(
                400,
                json!(["ERROR_APP_TOKEN_PARAMETERS_MISSING",
                       "missing parameter app_token"]),
            )],
            vec!["initSession"],
            Some("ERROR_APP_TOKEN_PARAMETERS_MISSING"),
        ),
    ];
    for (script, paths, want) in cases {
        let fake = Fake::start(script).await;
        let a = glpi_adapter(&s, &fake.base, extra);
        assert_ok_or_blocked(a.check(&http_client().unwrap()).await, want);
        let reqs = fake.requests();
        let got: Vec<&str> = reqs
            .iter()
            .map(|r| r.path().trim_start_matches("/apirest.php/"))
            .collect();
        assert_eq!(got, paths);
        assert_glpi_headers(&reqs[0], None);
        for r in &reqs[1..] {
            assert_eq!(r.method, "GET");
            assert_glpi_headers(r, Some("s1"));
        }
        // The session is over: the next call opens another.
        assert!(a.open_session_request().is_some());
    }
}

/// The shared failure cases, answered after the session is opened. A 401 re-opens the
/// session once, so its script answers twice.
#[tokio::test]
async fn glpi_failures_are_classified() {
    let s = Secrets::new();
    for (what, r, want) in failure_cases() {
        let script = if what == "bad token" {
            vec![session("s1"), r.clone(), session("s2"), r]
        } else {
            vec![session("s1"), r]
        };
        let n = script.len();
        let fake = Fake::start(script).await;
        let a = glpi_adapter(&s, &fake.base, "");
        let started = std::time::Instant::now();
        let got = a.create(&http_client().unwrap(), &content(), "b").await;
        let msg = match &got {
            Err(DeliveryError::Blocked { message }) | Err(DeliveryError::Retry { message, .. }) => {
                message.clone()
            }
            Ok(t) => panic!("{what}: expected a failure, got {t:?}"),
        };
        assert!(
            msg.starts_with("helpdesk \"glpi\": create ticket: "),
            "{what}: {msg}"
        );
        assert!(!msg.contains(TOKEN) && !msg.contains(APP), "{what}: {msg}");
        match want {
            Want::Blocked(text) => {
                let m = blocked_message(got);
                assert!(m.contains(text), "{what}: {m}");
            }
            Want::Retry(after) => assert_eq!(retry_after(got), after, "{what}: {msg}"),
        }
        if what == "slower than the timeout" {
            assert!(started.elapsed() < Duration::from_millis(2500), "{what}");
        }
        assert_eq!(fake.requests().len(), n, "{what}: no other retry");
    }
}
