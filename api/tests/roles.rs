//! Roles: a user sees and acts on only the tasks it created, an account admin on every task of
//! its account, an admin on all. Another user's or account's task is a 404 on every route that
//! takes a task id, byte for byte a missing task's answer, and nothing changes.

mod common;

use axum::http::{Method, StatusCode};
use common::{setup, Api, TEST_QUEUE};
use serde_json::json;

/// Every route that takes a task id, with a method and a body that would act on it.
fn id_routes(id: &str) -> Vec<(Method, String)> {
    vec![
        (Method::GET, format!("/api/tasks/{id}")),
        (Method::GET, format!("/api/tasks/{id}/events")),
        (Method::GET, format!("/api/tasks/{id}/artifacts/out.txt")),
        (Method::POST, format!("/api/tasks/{id}/cancel")),
        (Method::POST, format!("/api/tasks/{id}/retry")),
    ]
}

/// A finished task of alice (acme) with an artifact: every route answers for its owner.
async fn alices_task(api: &Api) -> String {
    let id = api.enqueue_test(&api.user, json!({"op": "echo"})).await;
    api.state
        .artifacts
        .put(&id, "out.txt", b"alice's".to_vec())
        .await
        .unwrap();
    id
}

async fn assert_hidden_from(api: &Api, id: &str, key: &str, who: &str) {
    let before = api.broker.get(id).await.unwrap().unwrap();
    let missing = "0190f3c2-0000-7000-8000-000000000000";
    for ((method, theirs), (_, nothing)) in id_routes(id).into_iter().zip(id_routes(missing)) {
        let a = api.call(method.clone(), &theirs, Some(key), None).await;
        let b = api.call(method.clone(), &nothing, Some(key), None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{who}: {method} {theirs}");
        assert_eq!(a.bytes, b.bytes, "{who}: {method} {theirs} tells it exists");
    }
    let after = api.broker.get(id).await.unwrap().unwrap();
    assert_eq!(before, after, "{who} changed the task");
}

#[tokio::test]
async fn another_user_of_the_same_account_gets_404_on_every_route() {
    let api = setup().await;
    let id = alices_task(&api).await;
    assert_hidden_from(&api, &id, &api.colleague, "carol (acme user)").await;
    assert_hidden_from(&api, &id, &api.other, "bob (globex user)").await;
    // The owner sees it.
    let r = api.get(&format!("/api/tasks/{id}"), &api.user).await;
    assert_eq!(r.status, StatusCode::OK);
}

/// A finished (cancelled) task of `key`'s with an artifact: every route answers at once for
/// whoever may see it (its event stream sends the final state and ends).
async fn finished_task_of(api: &Api, key: &str) -> String {
    let id = api.enqueue_test(key, json!({})).await;
    api.state
        .artifacts
        .put(&id, "out.txt", b"made".to_vec())
        .await
        .unwrap();
    assert_eq!(api.cancel(&id, key).await.status, StatusCode::OK);
    id
}

#[tokio::test]
async fn on_every_route_the_account_admin_sees_both_users_tasks_and_another_account_neither() {
    let api = setup().await;
    let alices = finished_task_of(&api, &api.user).await;
    let carols = finished_task_of(&api, &api.colleague).await;
    for id in [&alices, &carols] {
        // get 200, events 200, artifact 200, cancel 409 (finished), retry 200 (last: it
        // requeues the task).
        let expected = [200, 200, 200, 409, 200];
        for ((method, path), want) in id_routes(id).into_iter().zip(expected) {
            let r = api
                .call(method.clone(), &path, Some(&api.account_admin), None)
                .await;
            assert_eq!(r.status.as_u16(), want, "account admin: {method} {path}");
        }
    }
    let alices = finished_task_of(&api, &api.user).await;
    let carols = finished_task_of(&api, &api.colleague).await;
    for id in [&alices, &carols] {
        assert_hidden_from(&api, id, &api.other, "globex's user").await;
    }
    assert_hidden_from(&api, &carols, &api.user, "alice, for carol's").await;
}

#[tokio::test]
async fn the_account_admin_sees_and_acts_on_every_task_of_its_account_only() {
    let api = setup().await;
    let alices = alices_task(&api).await;
    let carols = api.enqueue_test(&api.colleague, json!({})).await;
    let bobs = api.enqueue_test(&api.other, json!({})).await;
    for id in [&alices, &carols] {
        let r = api
            .get(&format!("/api/tasks/{id}"), &api.account_admin)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    }
    let r = api
        .get(
            &format!("/api/tasks/{alices}/artifacts/out.txt"),
            &api.account_admin,
        )
        .await;
    assert_eq!(r.bytes, b"alice's");
    assert_hidden_from(&api, &bobs, &api.account_admin, "acme's account admin").await;
    let r = api.cancel(&carols, &api.account_admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    // Its lists: both users of acme, not globex.
    let listed = ids_of(&api.get("/api/tasks", &api.account_admin).await.json()["tasks"]);
    assert!(listed.contains(&alices) && listed.contains(&carols));
    assert!(!listed.contains(&bobs));
    let r = api
        .get("/api/tasks?user_id=carol", &api.account_admin)
        .await;
    assert_eq!(ids_of(&r.json()["tasks"]), vec![carols.clone()]);
    // Not an admin: no admin endpoint, no other account's list.
    let r = api
        .call(
            Method::POST,
            "/api/tasks/queue/stop",
            Some(&api.account_admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .get("/api/tasks?account_id=globex", &api.account_admin)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "forbidden");
}

fn ids_of(tasks: &serde_json::Value) -> Vec<String> {
    tasks
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {tasks}"))
        .iter()
        .map(|t| {
            let t = if t.get("task").is_some() {
                &t["task"]
            } else {
                t
            };
            t["id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_users_lists_show_only_the_tasks_it_created() {
    let api = setup().await;
    let alices = api.enqueue_test(&api.user, json!({})).await;
    let carols = api.enqueue_test(&api.colleague, json!({})).await;
    let bobs = api.enqueue_test(&api.other, json!({})).await;
    let r = api.get("/api/tasks", &api.colleague).await;
    assert_eq!(ids_of(&r.json()["tasks"]), vec![carols.clone()]);
    let r = api.get("/api/tasks?status=queued", &api.colleague).await;
    assert_eq!(ids_of(&r.json()["tasks"]), vec![carols.clone()]);
    assert_eq!(
        api.queue_list_ids(&api.colleague).await,
        vec![carols.clone()]
    );
    assert_eq!(api.queue_list_ids(&api.user).await, vec![alices.clone()]);
    // Asking for another user's list is refused, not silently narrowed.
    let r = api.get("/api/tasks?user_id=alice", &api.colleague).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The account admin's queue list: both of acme, in claim order; the admin's: all three.
    assert_eq!(
        api.queue_list_ids(&api.account_admin).await,
        vec![alices.clone(), carols.clone()]
    );
    assert_eq!(
        api.queue_list_ids(&api.admin).await,
        vec![alices.clone(), carols.clone(), bobs.clone()]
    );
    // An admin lists another account's tasks by naming it.
    let r = api.get("/api/tasks?account_id=globex", &api.admin).await;
    assert_eq!(ids_of(&r.json()["tasks"]), vec![bobs]);
}

#[tokio::test]
async fn the_queue_list_lists_any_state_in_its_order() {
    let api = setup().await;
    let first = api.enqueue_test(&api.user, json!({})).await;
    let second = api.enqueue_test(&api.user, json!({})).await;
    let theirs = api.enqueue_test(&api.other, json!({})).await;
    for id in [&first, &second, &theirs] {
        assert_eq!(api.cancel(id, &api.admin).await.status, StatusCode::OK);
    }
    // Newest first: the last cancelled first.
    assert_eq!(
        cancelled_ids(&api, &api.admin).await,
        vec![theirs, second.clone(), first.clone()]
    );
    assert_eq!(cancelled_ids(&api, &api.user).await, vec![second, first]);
    assert!(cancelled_ids(&api, &api.colleague).await.is_empty());
    let r = api
        .get("/api/tasks/queue/list?status=lost", &api.admin)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().starts_with("status"), "{}", r.message());
}

async fn cancelled_ids(api: &Api, key: &str) -> Vec<String> {
    let r = api
        .get(
            &format!("/api/tasks/queue/list?status=cancelled&task_type={TEST_QUEUE}"),
            key,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    ids_of(&r.json()["tasks"])
}

#[tokio::test]
async fn me_names_the_callers_account_user_and_role() {
    let api = setup().await;
    for (key, account, user, role) in [
        (&api.user, "acme", "alice", "user"),
        (&api.account_admin, "acme", "ada", "account_admin"),
        (&api.admin, "ops", "root", "admin"),
    ] {
        let r = api.get("/api/me", key).await;
        assert_eq!(
            r.json(),
            json!({"account_id": account, "user_id": user, "role": role})
        );
    }
}
