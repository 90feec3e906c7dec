//! Recurring schedules over HTTP (issue 13, part 2): create, list, get, pause, resume, delete
//! with roles (an account admin manages its account's, a user reads them, another account's
//! is 404); bad input names its field and writes nothing. Ticks are run by the library's
//! scheduler pass at instants the test picks.

mod common;

use axum::http::{Method, StatusCode};
use common::{setup, Api, TEST_QUEUE};
use serde_json::{json, Value};

fn body(cron: &str) -> Value {
    json!({
        "cron": cron,
        "timezone": "Europe/Berlin",
        "task_type": TEST_QUEUE,
        "request": {"op": "noop"},
        "catch_up": "skip",
        "name": "nightly report",
    })
}

async fn create(api: &Api, key: &str, body: Value) -> common::Reply {
    api.post("/api/schedules", key, body).await
}

async fn delete(api: &Api, id: &str, key: &str) -> common::Reply {
    api.call(
        Method::DELETE,
        &format!("/api/schedules/{id}"),
        Some(key),
        None,
    )
    .await
}

async fn control(api: &Api, id: &str, op: &str, key: &str) -> common::Reply {
    api.call(
        Method::POST,
        &format!("/api/schedules/{id}/{op}"),
        Some(key),
        None,
    )
    .await
}

#[tokio::test]
async fn an_account_admin_manages_its_schedules_and_its_users_read_them() {
    let api = setup().await;
    // A user may not create one; an account admin may.
    let r = create(&api, &api.user, body("*/5 * * * *")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json());
    let r = create(&api, &api.account_admin, body("*/5 * * * *")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let s = r.json();
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["account_id"], "acme");
    assert_eq!(s["cron"], "*/5 * * * *");
    assert_eq!(s["timezone"], "Europe/Berlin");
    assert_eq!(s["catch_up"], "skip");
    assert_eq!(s["paused"], false);
    assert_eq!(s["name"], "nightly report");
    let next = s["next_run_at"].as_i64().unwrap();
    assert_eq!(next % 300_000, 0, "a five-minute tick");
    assert!(next > api.now() - 5_000 && next <= api.now() + 300_000);
    assert_eq!(s["last_task_id"], json!(null));

    // Its account's users read it; another account sees nothing of it.
    let got = api.get(&format!("/api/schedules/{id}"), &api.user).await;
    assert_eq!(got.status, StatusCode::OK);
    let listed = api.get("/api/schedules", &api.colleague).await.json();
    assert_eq!(listed["schedules"].as_array().unwrap().len(), 1);
    for r in [
        api.get(&format!("/api/schedules/{id}"), &api.other).await,
        control(&api, &id, "pause", &api.other).await,
        control(&api, &id, "resume", &api.other).await,
        delete(&api, &id, &api.other).await,
        api.get("/api/schedules/not-a-schedule", &api.admin).await,
    ] {
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json());
        assert_eq!(r.message(), "no such schedule");
    }
    let theirs = api.get("/api/schedules", &api.other).await.json();
    assert!(theirs["schedules"].as_array().unwrap().is_empty());
    let r = api.get("/api/schedules?account_id=acme", &api.other).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A user reads but does not manage.
    assert_eq!(
        control(&api, &id, "pause", &api.user).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        delete(&api, &id, &api.user).await.status,
        StatusCode::FORBIDDEN
    );
    // An admin sees every account's.
    let all = api.get("/api/schedules", &api.admin).await.json();
    assert_eq!(all["schedules"][0]["id"], id.as_str());
    let acme = api
        .get("/api/schedules?account_id=acme", &api.admin)
        .await
        .json();
    assert_eq!(acme["schedules"].as_array().unwrap().len(), 1);

    // A tick enqueues a task of the account, shown as the schedule's last task.
    let report = api.broker.tick_schedules(next + 1_000).await.unwrap();
    assert_eq!(report.enqueued, 1);
    let s = api
        .get(&format!("/api/schedules/{id}"), &api.user)
        .await
        .json();
    let task_id = s["last_task_id"].as_str().unwrap().to_string();
    assert_eq!(s["last_tick_at"], next);
    assert_eq!(s["next_run_at"], next + 300_000);
    assert_eq!(s["fired"], 1);
    let t = api
        .get(&format!("/api/tasks/{task_id}"), &api.account_admin)
        .await;
    assert_eq!(t.status, StatusCode::OK);
    assert_eq!(t.json()["account_id"], "acme");
    assert_eq!(t.json()["request"], json!({"op": "noop"}));

    // Pause: no next run, no tick; resume: on again; delete: gone.
    let p = control(&api, &id, "pause", &api.account_admin).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json());
    assert_eq!(p.json()["paused"], true);
    assert_eq!(p.json()["next_run_at"], json!(null));
    let report = api.broker.tick_schedules(next + 301_000).await.unwrap();
    assert_eq!(report.enqueued, 0);
    let r = control(&api, &id, "resume", &api.account_admin).await;
    assert_eq!(r.json()["paused"], false);
    assert_eq!(r.json()["next_run_at"], next + 300_000);
    let report = api.broker.tick_schedules(next + 301_000).await.unwrap();
    assert_eq!(
        report.enqueued, 1,
        "resumed within the tick's minute: on time"
    );
    assert_eq!(
        delete(&api, &id, &api.account_admin).await.status,
        StatusCode::NO_CONTENT
    );
    let report = api.broker.tick_schedules(next + 601_000).await.unwrap();
    assert_eq!(report.due, 0);
    assert_eq!(
        api.get(&format!("/api/schedules/{id}"), &api.admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(&api, &id, &api.admin).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_admin_manages_any_accounts_schedule() {
    let api = setup().await;
    let id = create(&api, &api.account_admin, body("@daily"))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let p = control(&api, &id, "pause", &api.admin).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(
        delete(&api, &id, &api.admin).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_page_of_schedules_gives_a_cursor_to_the_next() {
    let api = setup().await;
    for _ in 0..3 {
        let r = create(&api, &api.account_admin, body("0 9 * * MON-FRI")).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let first = api.get("/api/schedules?limit=2", &api.user).await.json();
    assert_eq!(first["schedules"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = api
        .get(
            &format!("/api/schedules?limit=2&cursor={cursor}"),
            &api.user,
        )
        .await
        .json();
    assert_eq!(second["schedules"].as_array().unwrap().len(), 1);
    assert_eq!(second["next_cursor"], json!(null));
    let r = api.get("/api/schedules?limit=0", &api.user).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().starts_with("limit"), "{}", r.message());
}

#[tokio::test]
async fn bad_input_names_its_field_and_writes_nothing() {
    let api = setup().await;
    let with = |patch: Value| {
        let mut b = body("*/5 * * * *");
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases = [
        (
            with(json!({"cron": "*/5 * * *"})),
            StatusCode::BAD_REQUEST,
            "cron",
        ),
        (
            with(json!({"cron": "99 * * * *"})),
            StatusCode::BAD_REQUEST,
            "cron",
        ),
        (
            with(json!({"cron": "every day"})),
            StatusCode::BAD_REQUEST,
            "cron",
        ),
        (
            with(json!({"timezone": "Europe/Atlantis"})),
            StatusCode::BAD_REQUEST,
            "timezone",
        ),
        (
            with(json!({"catch_up": "all"})),
            StatusCode::BAD_REQUEST,
            "catch_up",
        ),
        (
            with(json!({"priority": "asap"})),
            StatusCode::BAD_REQUEST,
            "priority",
        ),
        (
            with(json!({"request": [1, 2]})),
            StatusCode::BAD_REQUEST,
            "request",
        ),
        (
            with(
                json!({"task_type": "quiz", "request": {"source_text": "x", "num_questions": 500}}),
            ),
            StatusCode::BAD_REQUEST,
            "request.num_questions",
        ),
        (
            with(json!({"task_type": "quiz", "request": {"source_text": "x", "colour": 1}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "request.colour",
        ),
        (
            with(json!({"name": "x".repeat(201)})),
            StatusCode::BAD_REQUEST,
            "name",
        ),
    ];
    for (b, status, field) in cases {
        let r = create(&api, &api.account_admin, b.clone()).await;
        assert_eq!(r.status, status, "{b}: {}", r.json());
        let text = r.json().to_string();
        assert!(text.contains(field), "{field} not named: {text}");
    }
    let r = create(
        &api,
        &api.account_admin,
        with(json!({"task_type": "teleport"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.message().contains("teleport"), "{}", r.message());
    let r = create(&api, &api.account_admin, with(json!({"every": "day"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.message().contains("every"));
    let mut missing = body("*/5 * * * *");
    missing.as_object_mut().unwrap().remove("cron");
    let r = create(&api, &api.account_admin, missing).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("cron"), "{}", r.message());
    // Nothing was written.
    let all = api.get("/api/schedules", &api.admin).await.json();
    assert!(all["schedules"].as_array().unwrap().is_empty());
}
