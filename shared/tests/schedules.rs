//! Recurring schedules (issue 13, part 2) on a real Redis, with a manual clock: every tick
//! enqueues exactly one task however many schedulers race; daylight-saving days; downtime with
//! `skip` and `one`; pause, resume, delete.

mod common;

use chrono::TimeZone;
use common::{queue, Target, T0};
use serde_json::json;
use taskfleet::schedules::{CatchUp, NewSchedule};
use taskfleet::{Broker, Millis};

const MIN: Millis = 60_000;

fn schedule(cron: &str, tz: &str, catch_up: CatchUp) -> NewSchedule {
    NewSchedule {
        cron: cron.into(),
        timezone: tz.into(),
        task_type: "q".into(),
        request: json!({"report": "daily"}),
        catch_up,
        account_id: "acme".into(),
        user_id: "ann".into(),
        ..Default::default()
    }
}

/// Tasks of queue "q" that exist (queued: nothing claims them here).
async fn tasks(b: &Broker) -> u64 {
    let status = b.status().await.unwrap();
    status
        .iter()
        .filter(|s| s.task_type == "q")
        .map(|s| s.counts.values().sum::<u64>())
        .sum()
}

/// `n` brokers on one keyspace (same prefix), each with its own connection: a fleet's
/// schedulers.
fn fleet(target: Target, n: usize) -> Vec<Broker> {
    let first = target.broker(&[("q", queue(3))]);
    let prefix = first.keys().prefix().to_string();
    let mut out = vec![first];
    for _ in 1..n {
        out.push(
            target
                .builder()
                .prefix(prefix.clone())
                .queue("q", queue(3))
                .build()
                .unwrap(),
        );
    }
    out
}

/// Every broker of the fleet runs a pass at `now`, all at once.
async fn race(fleet: &[Broker], now: Millis) -> (usize, usize) {
    let reports = futures::future::join_all(fleet.iter().map(|b| b.tick_schedules(now))).await;
    reports.into_iter().fold((0, 0), |(c, e), r| {
        let r = r.unwrap();
        (c + r.claimed, e + r.enqueued)
    })
}

async fn a_day_of_five_minute_ticks_with_three_schedulers_racing(target: Target) {
    let fleet = fleet(target, 3);
    let s = fleet[0]
        .create_schedule(schedule("*/5 * * * *", "UTC", CatchUp::Skip), T0)
        .await
        .unwrap();
    assert_eq!(s.next_run_at, Some(T0 + 5 * MIN));
    // A simulated day in uneven steps (every 37 s: each tick is seen on time by all three).
    let (mut claimed, mut enqueued) = (0, 0);
    let mut now = T0;
    while now <= T0 + 24 * 60 * MIN {
        now += 37_000;
        let (c, e) = race(&fleet, now).await;
        claimed += c;
        enqueued += e;
    }
    assert_eq!(claimed, 288, "each tick claimed once");
    assert_eq!(enqueued, 288, "each tick enqueued once");
    assert_eq!(tasks(&fleet[0]).await, 288);
    let s = fleet[1].get_schedule(&s.id).await.unwrap().unwrap();
    assert_eq!((s.fired, s.skipped), (288, 0));
    assert_eq!(s.last_tick_at, Some(T0 + 24 * 60 * MIN));
    assert_eq!(
        s.last_task_id.as_deref(),
        Some(
            fleet[2]
                .schedule_task_id(&s, T0 + 24 * 60 * MIN)
                .unwrap()
                .as_str()
        )
    );
    let last = fleet[0]
        .get(s.last_task_id.as_ref().unwrap())
        .await
        .unwrap();
    let last = last.unwrap();
    assert_eq!(last.account_id.as_deref(), Some("acme"));
    assert_eq!(last.request, json!({"report": "daily"}));
}

#[tokio::test]
async fn a_day_of_five_minute_ticks_gives_288_tasks_with_three_schedulers_racing() {
    a_day_of_five_minute_ticks_with_three_schedulers_racing(Target::Single).await;
}

#[tokio::test]
async fn on_a_cluster_too() {
    a_day_of_five_minute_ticks_with_three_schedulers_racing(Target::Cluster).await;
}

/// Tasks a schedule enqueues over one local day of `tz`, ticked every 20 s by two schedulers.
async fn over_a_local_day(cron: &str, tz: &str, day: (i32, u32, u32)) -> (u64, Vec<Millis>) {
    let fleet = fleet(Target::Single, 2);
    let zone: chrono_tz::Tz = tz.parse().unwrap();
    let midnight = |d: chrono::NaiveDate| {
        zone.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .single()
            .unwrap()
            .timestamp_millis()
    };
    let date = chrono::NaiveDate::from_ymd_opt(day.0, day.1, day.2).unwrap();
    let (start, end) = (midnight(date), midnight(date.succ_opt().unwrap()));
    let s = fleet[0]
        .create_schedule(schedule(cron, tz, CatchUp::Skip), start - 1)
        .await
        .unwrap();
    let mut ticks = Vec::new();
    let mut now = start - 1;
    while now < end - 20_000 {
        now += 20_000;
        race(&fleet, now).await;
        let s = fleet[0].get_schedule(&s.id).await.unwrap().unwrap();
        if let Some(t) = s.last_tick_at {
            if ticks.last() != Some(&t) {
                ticks.push(t);
            }
        }
    }
    (tasks(&fleet[0]).await, ticks)
}

#[tokio::test]
async fn daylight_saving_days_in_berlin_give_the_right_counts() {
    // Spring forward on 2026-03-29: the day has 23 hours.
    let (n, _) = over_a_local_day("0 * * * *", "Europe/Berlin", (2026, 3, 29)).await;
    assert_eq!(n, 23);
    // Fall back on 2026-10-25: 25 hours, the repeated one ticks in both passes.
    let (n, ticks) = over_a_local_day("0 * * * *", "Europe/Berlin", (2026, 10, 25)).await;
    assert_eq!(n, 25);
    assert!(
        ticks.windows(2).all(|w| w[1] - w[0] == 60 * MIN),
        "an hour apart in real time"
    );
    // A fixed-time job runs once on either day: in the gap at 03:00, in the overlap once.
    let (n, ticks) = over_a_local_day("30 2 * * *", "Europe/Berlin", (2026, 3, 29)).await;
    assert_eq!(n, 1);
    let three = chrono::DateTime::parse_from_rfc3339("2026-03-29T03:00:00+02:00").unwrap();
    assert_eq!(ticks, vec![three.timestamp_millis()]);
    let (n, ticks) = over_a_local_day("30 2 * * *", "Europe/Berlin", (2026, 10, 25)).await;
    assert_eq!(n, 1);
    let first = chrono::DateTime::parse_from_rfc3339("2026-10-25T02:30:00+02:00").unwrap();
    assert_eq!(ticks, vec![first.timestamp_millis()], "the first pass only");
}

/// An hour without schedulers: `skip` enqueues none of the missed ticks, `one` a single one.
async fn an_hour_down(catch_up: CatchUp) -> (u64, u64) {
    let fleet = fleet(Target::Single, 2);
    let s = fleet[0]
        .create_schedule(schedule("*/5 * * * *", "UTC", catch_up), T0)
        .await
        .unwrap();
    race(&fleet, T0 + 5 * MIN + 1_000).await;
    assert_eq!(tasks(&fleet[0]).await, 1);
    // Down from 00:05 to 01:07: 00:10 … 01:05 missed (the last 2 minutes late).
    race(&fleet, T0 + 67 * MIN).await;
    let after_downtime = tasks(&fleet[0]).await - 1;
    let got = fleet[0].get_schedule(&s.id).await.unwrap().unwrap();
    assert_eq!(
        got.next_run_at,
        Some(T0 + 70 * MIN),
        "carries on at the next tick"
    );
    // And on time again afterwards.
    race(&fleet, T0 + 70 * MIN + 2_000).await;
    race(&fleet, T0 + 70 * MIN + 3_000).await;
    let total = tasks(&fleet[0]).await;
    assert_eq!(total, 2 + after_downtime);
    (after_downtime, got.skipped)
}

#[tokio::test]
async fn after_an_hour_of_downtime_skip_enqueues_nothing_and_one_a_single_catch_up() {
    assert_eq!(an_hour_down(CatchUp::Skip).await, (0, 12));
    assert_eq!(an_hour_down(CatchUp::One).await, (1, 11));
}

#[tokio::test]
async fn the_catch_up_task_is_the_latest_missed_tick() {
    let fleet = fleet(Target::Single, 1);
    let s = fleet[0]
        .create_schedule(schedule("*/5 * * * *", "UTC", CatchUp::One), T0)
        .await
        .unwrap();
    race(&fleet, T0 + 67 * MIN).await;
    let got = fleet[0].get_schedule(&s.id).await.unwrap().unwrap();
    assert_eq!(got.last_tick_at, Some(T0 + 65 * MIN));
    assert_eq!(
        got.last_task_id,
        Some(fleet[0].schedule_task_id(&got, T0 + 65 * MIN).unwrap())
    );
    assert_eq!(got.last_enqueued_at, Some(T0 + 67 * MIN));
}

async fn pause_for_half_an_hour(catch_up: CatchUp) -> u64 {
    let fleet = fleet(Target::Single, 2);
    let b = &fleet[0];
    let s = b
        .create_schedule(schedule("*/5 * * * *", "UTC", catch_up), T0)
        .await
        .unwrap();
    race(&fleet, T0 + 5 * MIN + 1_000).await;
    b.pause_schedule(&s.id).await.unwrap();
    let paused = b.get_schedule(&s.id).await.unwrap().unwrap();
    assert!(paused.paused);
    assert_eq!(paused.next_run_at, None);
    for m in (6..=32).step_by(1) {
        race(&fleet, T0 + m * MIN).await;
    }
    assert_eq!(tasks(b).await, 1, "no tick while paused");
    b.resume_schedule(&s.id).await.unwrap();
    race(&fleet, T0 + 32 * MIN).await;
    let replayed = tasks(b).await - 1;
    let got = b.get_schedule(&s.id).await.unwrap().unwrap();
    assert_eq!(got.next_run_at, Some(T0 + 35 * MIN));
    race(&fleet, T0 + 35 * MIN + 1_000).await;
    assert_eq!(tasks(b).await, 2 + replayed, "on time again");
    // Delete stops it.
    b.delete_schedule(&s.id).await.unwrap();
    for m in 36..=60 {
        race(&fleet, T0 + m * MIN).await;
    }
    assert_eq!(tasks(b).await, 2 + replayed);
    assert!(b.get_schedule(&s.id).await.unwrap().is_none());
    assert!(b
        .list_schedules(Some("acme"), 0, 50)
        .await
        .unwrap()
        .0
        .is_empty());
    assert!(matches!(
        b.pause_schedule(&s.id).await,
        Err(taskfleet::Error::NotFound(_))
    ));
    replayed
}

#[tokio::test]
async fn pause_and_resume_replay_no_paused_tick_unless_catch_up_says_one_and_delete_stops() {
    assert_eq!(pause_for_half_an_hour(CatchUp::Skip).await, 0);
    assert_eq!(pause_for_half_an_hour(CatchUp::One).await, 1);
}

#[tokio::test]
async fn a_task_enqueued_by_a_scheduler_that_died_before_its_confirm_is_found_not_doubled() {
    let fleet = fleet(Target::Single, 2);
    let b = &fleet[0];
    let s = b
        .create_schedule(schedule("*/5 * * * *", "UTC", CatchUp::Skip), T0)
        .await
        .unwrap();
    // The first scheduler enqueued the tick's task, then died before confirming: the same
    // task (its derived id) is there and the tick still pending.
    let tick = T0 + 5 * MIN;
    let id = b.schedule_task_id(&s, tick).unwrap();
    let e = b
        .enqueue(
            taskfleet::NewTask {
                id: Some(id.clone()),
                ..taskfleet::NewTask::new("q", json!({"report": "daily"})).owner("acme", "ann")
            },
            tick,
        )
        .await
        .unwrap();
    assert!(e.created);
    // A second pass (another scheduler) claims the tick and finds the task: still one.
    let (claimed, enqueued) = race(&fleet, tick + 1_000).await;
    assert_eq!((claimed, enqueued), (1, 0));
    assert_eq!(tasks(b).await, 1);
    let got = b.get_schedule(&s.id).await.unwrap().unwrap();
    assert_eq!(got.last_task_id, Some(id));
    assert_eq!(got.fired, 1);
}

#[tokio::test]
async fn bad_schedules_name_their_field_and_write_nothing() {
    let b = Target::Single.broker(&[("q", queue(3)), ("quiz", queue(3))]);
    let cases = [
        (schedule("61 * * * *", "UTC", CatchUp::Skip), "cron"),
        (schedule("* * * *", "UTC", CatchUp::Skip), "cron"),
        (
            schedule("* * * * *", "Europe/Atlantis", CatchUp::Skip),
            "timezone",
        ),
        (
            NewSchedule {
                request: json!([1]),
                ..schedule("* * * * *", "UTC", CatchUp::Skip)
            },
            "request",
        ),
        (
            NewSchedule {
                task_type: "quiz".into(),
                request: json!({"source_text": "x", "num_questions": 500}),
                ..schedule("* * * * *", "UTC", CatchUp::Skip)
            },
            "request.num_questions",
        ),
    ];
    for (s, field) in cases {
        match b.create_schedule(s, T0).await {
            Err(taskfleet::Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    match b
        .create_schedule(
            NewSchedule {
                task_type: "nope".into(),
                ..schedule("* * * * *", "UTC", CatchUp::Skip)
            },
            T0,
        )
        .await
    {
        Err(taskfleet::Error::UnknownTaskType(t)) => assert_eq!(t, "nope"),
        other => panic!("{other:?}"),
    }
    assert_eq!(common::key_count(&b).await, 0, "nothing written");
}

#[tokio::test]
async fn a_scheduler_that_does_not_serve_the_type_leaves_the_tick_to_one_that_does() {
    let knows = Target::Single.broker(&[("q", queue(3)), ("other", queue(3))]);
    let prefix = knows.keys().prefix().to_string();
    let blind = Target::Single
        .builder()
        .prefix(prefix)
        .queue("q", queue(3))
        .build()
        .unwrap();
    let s = knows
        .create_schedule(
            NewSchedule {
                task_type: "other".into(),
                ..schedule("*/5 * * * *", "UTC", CatchUp::Skip)
            },
            T0,
        )
        .await
        .unwrap();
    let r = blind.tick_schedules(T0 + 5 * MIN + 1_000).await.unwrap();
    assert_eq!((r.due, r.claimed), (1, 0));
    let r = knows.tick_schedules(T0 + 5 * MIN + 2_000).await.unwrap();
    assert_eq!((r.claimed, r.enqueued), (1, 1));
    let got = knows.get_schedule(&s.id).await.unwrap().unwrap();
    assert_eq!((got.fired, got.last_error), (1, None));
}

#[tokio::test]
async fn a_tick_whose_claimer_died_before_enqueuing_is_enqueued_once_by_the_next_scheduler() {
    let fleet = fleet(Target::Single, 2);
    let s = fleet[0]
        .create_schedule(schedule("*/5 * * * *", "UTC", CatchUp::Skip), T0)
        .await
        .unwrap();
    let tick = T0 + 5 * MIN;
    // The first scheduler claims the tick and dies: no task yet, the tick pending and due.
    assert!(fleet[0]
        .claim_tick_and_die(&s.id, tick + 500)
        .await
        .unwrap());
    assert_eq!(tasks(&fleet[0]).await, 0);
    let got = fleet[1].get_schedule(&s.id).await.unwrap().unwrap();
    assert_eq!(got.next_run_at, Some(tick), "due again at its pending tick");
    // Racers see the tick claimed: none claims it again; the next pass enqueues it once.
    let r = fleet[1].tick_schedules(tick + 1_000).await.unwrap();
    assert_eq!((r.claimed, r.enqueued), (0, 1));
    let (claimed, enqueued) = race(&fleet, tick + 2_000).await;
    assert_eq!((claimed, enqueued), (0, 0));
    assert_eq!(tasks(&fleet[0]).await, 1);
    let got = fleet[0].get_schedule(&s.id).await.unwrap().unwrap();
    assert_eq!(
        got.last_task_id,
        Some(fleet[0].schedule_task_id(&got, tick).unwrap())
    );
    assert_eq!((got.fired, got.next_run_at), (1, Some(tick + 5 * MIN)));
    // And the schedule carries on.
    race(&fleet, tick + 5 * MIN + 1_000).await;
    assert_eq!(tasks(&fleet[0]).await, 2);
}

#[tokio::test]
async fn by_the_servers_clock_a_due_tick_is_enqueued_at_once() {
    let b = Target::Single.broker(&[("q", queue(3))]);
    let now = b.server_time_ms().await.unwrap();
    // Created a minute and a half ago (by the clock it was given): a tick is due now.
    let s = b
        .create_schedule(schedule("* * * * *", "UTC", CatchUp::Skip), now - 90_000)
        .await
        .unwrap();
    let r = b.tick_schedules(taskfleet::At::Server).await.unwrap();
    assert_eq!((r.claimed, r.enqueued), (1, 1));
    let got = b.get_schedule(&s.id).await.unwrap().unwrap();
    let tick = got.last_tick_at.unwrap();
    assert!(now - tick < MIN && tick <= now, "the latest minute");
    assert!(
        got.last_enqueued_at.unwrap() >= now,
        "stamped by the server's TIME"
    );
    assert!(got.next_run_at.unwrap() > now);
}
