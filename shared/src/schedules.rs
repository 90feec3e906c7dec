//! Recurring schedules (issue 13): a cron expression in a time zone that enqueues one task of a
//! type at each of its ticks, fleet-wide exactly once however many schedulers race.
//!
//! # How a tick is enqueued once
//! Every worker's scheduler calls [`Broker::tick_schedules`] about once a second. The
//! schedules live under one hash tag (`{schedules}`, DESIGN §3); the due ones are found in
//! `tf:{schedules}:due` by score. For each, the scheduler reads the schedule, computes in Rust
//! (croner and chrono-tz) which tick is due and the tick after it, and claims it with a
//! compare-and-set (`schedule_advance.lua`): only if the schedule's `next` is still what it
//! read does `next` move on and the tick become `pending`. One racer wins; the others see a
//! conflict and do nothing. The winner enqueues the task with an id derived from the schedule
//! and the tick ([`Broker::derived_id`]), then confirms (`schedule_confirm.lua`), which
//! clears `pending`. A winner that dies between the claim and the confirm leaves the tick
//! pending and due: the next scheduler enqueues it again with the same id (enqueue finds the
//! task if the first try wrote it) and confirms it. So each tick gives exactly one task, and
//! no tick is lost to a crash.
//!
//! # Missed ticks
//! A tick is on time while it is less than [`ON_TIME_MS`] old. Ticks older than that were
//! missed (no scheduler ran: downtime, or the schedule was paused): `catch_up: skip` enqueues
//! none of them, `catch_up: one` enqueues a single task for the latest of them. Either way
//! `next` moves to the first tick after now.
//!
//! # Daylight saving time
//! Ticks are computed by croner in the schedule's zone (the Open Cron Pattern Specification's
//! rules, Vixie cron's): in a gap (spring forward), a fixed-time job (single values in
//! minute and hour: `30 2 * * *`) runs once at the first valid time after the gap (03:00), and
//! an interval or wildcard job (`*/5 * * * *`, `0 * * * *`) skips the times that do not exist;
//! in an overlap (fall back), a fixed-time job runs once (at the first pass), and an interval
//! or wildcard job runs in both passes of the repeated hour. So `0 * * * *` ticks 23 times on
//! the spring day and 25 on the autumn one, and `30 2 * * *` once on each.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::TimeZone;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::broker::conn::Dual;
use crate::broker::{validate_ident, Broker};
use crate::clock::At;
use crate::error::{Error, Result};
use crate::task::{Millis, NewTask, Priority};

/// A script of `scripts/` with `includes/now.lua` in front (what `script!` does for the
/// broker's modules, from this module's place).
macro_rules! with_now {
    ($file:literal) => {
        std::sync::LazyLock::new(|| {
            Dual::new(concat!(
                include_str!("scripts/includes/now.lua"),
                "\n",
                include_str!(concat!("scripts/", $file))
            ))
        })
    };
}

static CREATE: std::sync::LazyLock<Dual> = with_now!("schedule_create.lua");
static ADVANCE: std::sync::LazyLock<Dual> = with_now!("schedule_advance.lua");
static CONFIRM: std::sync::LazyLock<Dual> = with_now!("schedule_confirm.lua");
static CONTROL: std::sync::LazyLock<Dual> = with_now!("schedule_control.lua");

/// How late a tick may be enqueued and still count as on time (not missed).
pub const ON_TIME_MS: Millis = 60_000;
/// How many due schedules one [`Broker::tick_schedules`] call handles at most.
pub const TICK_BATCH: usize = 100;
/// How many schedules one account may hold.
pub const MAX_SCHEDULES_PER_ACCOUNT: usize = 1_000;
/// The longest name a schedule may have.
pub const MAX_NAME: usize = 200;
/// How many due ticks a scheduler walks one by one before it jumps to the latest.
const WALK_LIMIT: usize = 1_000;
/// How many schedules one pass works on at once.
const TICK_CONCURRENCY: usize = 16;

/// What happens to ticks missed while no scheduler ran (or the schedule was paused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Enqueue nothing for missed ticks; carry on at the next one.
    #[default]
    Skip,
    /// Enqueue one task for the missed ticks (keyed by the latest), then carry on.
    One,
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Skip => "skip",
            CatchUp::One => "one",
        }
    }
}

impl FromStr for CatchUp {
    type Err = Error;
    fn from_str(s: &str) -> Result<CatchUp> {
        match s {
            "skip" => Ok(CatchUp::Skip),
            "one" => Ok(CatchUp::One),
            _ => Err(Error::invalid("catch_up", "\"skip\" or \"one\"")),
        }
    }
}

/// A schedule to create.
#[derive(Debug, Clone, Default)]
pub struct NewSchedule {
    /// Five fields (minute hour day-of-month month day-of-week), or `@hourly`, `@daily`, ….
    pub cron: String,
    /// An IANA time zone (`Europe/Berlin`, `UTC`).
    pub timezone: String,
    pub task_type: String,
    pub request: Value,
    /// `None`: the type's default band.
    pub priority: Option<Priority>,
    pub catch_up: CatchUp,
    pub name: Option<String>,
    /// Whose tasks its ticks enqueue.
    pub account_id: String,
    pub user_id: String,
}

/// A schedule as stored, with what it did last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Schedule {
    pub id: String,
    pub name: Option<String>,
    pub account_id: String,
    pub user_id: String,
    pub cron: String,
    pub timezone: String,
    pub task_type: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub request: Value,
    /// `None`: the type's default band.
    pub priority: Option<Priority>,
    pub catch_up: CatchUp,
    pub paused: bool,
    /// When the next tick is due (ms since the epoch); null while paused.
    pub next_run_at: Option<Millis>,
    /// The last tick a task was enqueued for (or refused), and that task.
    pub last_tick_at: Option<Millis>,
    pub last_task_id: Option<String>,
    pub last_enqueued_at: Option<Millis>,
    /// Why the last tick's enqueue was refused (a quota, a request the catalog no longer
    /// accepts); null after a tick that enqueued.
    pub last_error: Option<String>,
    /// Ticks that enqueued a task.
    pub fired: u64,
    /// Due ticks that enqueued none (missed and skipped, or folded into one catch-up).
    pub skipped: u64,
    pub created_at: Millis,
}

impl Schedule {
    fn from_hash(h: HashMap<String, String>) -> Option<Schedule> {
        let get = |k: &str| h.get(k).filter(|v| !v.is_empty()).cloned();
        let num = |k: &str| get(k).and_then(|v| v.parse::<Millis>().ok());
        let paused = get("paused").as_deref() == Some("1");
        Some(Schedule {
            id: get("id")?,
            name: get("name"),
            account_id: get("account_id").unwrap_or_default(),
            user_id: get("user_id").unwrap_or_default(),
            cron: get("cron").unwrap_or_default(),
            timezone: get("timezone").unwrap_or_default(),
            task_type: get("task_type").unwrap_or_default(),
            request: get("request")
                .and_then(|r| serde_json::from_str(&r).ok())
                .unwrap_or(Value::Null),
            priority: get("priority").and_then(|p| p.parse().ok()),
            catch_up: get("catch_up")
                .and_then(|c| c.parse().ok())
                .unwrap_or_default(),
            paused,
            next_run_at: if paused {
                None
            } else {
                num("pending").or(num("next"))
            },
            last_tick_at: num("last_tick_at"),
            last_task_id: get("last_task_id"),
            last_enqueued_at: num("last_enqueued_at"),
            last_error: get("last_error"),
            fired: num("fired").unwrap_or(0).max(0) as u64,
            skipped: num("skipped").unwrap_or(0).max(0) as u64,
            created_at: num("created_at").unwrap_or(0),
        })
    }
}

/// A cron expression in a time zone: its ticks.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

impl CronSchedule {
    /// Parses a five-field expression (or an `@` nickname) and an IANA zone; the error names
    /// the field (`cron` or `timezone`).
    pub fn parse(cron: &str, timezone: &str) -> Result<CronSchedule> {
        let fields = cron.split_whitespace().count();
        if cron.len() > 200 || (!cron.trim_start().starts_with('@') && fields != 5) {
            return Err(Error::invalid(
                "cron",
                format!("{cron:?}: five fields (minute hour day-of-month month day-of-week), or @hourly, @daily, @weekly, @monthly, @yearly"),
            ));
        }
        let parsed = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(cron)
            .map_err(|e| Error::invalid("cron", format!("{cron:?}: {e}")))?;
        let tz = chrono_tz::Tz::from_str(timezone).map_err(|_| {
            Error::invalid(
                "timezone",
                format!("{timezone:?} is not an IANA time zone (such as Europe/Berlin or UTC)"),
            )
        })?;
        Ok(CronSchedule { cron: parsed, tz })
    }

    /// The first tick strictly after `t` (ms), if any before the year 5000.
    pub fn next_after(&self, t: Millis) -> Option<Millis> {
        let dt = self.tz.timestamp_millis_opt(t).single()?;
        self.cron
            .find_next_occurrence(&dt, false)
            .ok()
            .map(|d| d.timestamp_millis())
    }

    /// The last tick at or before `t` (ms).
    pub fn last_at_or_before(&self, t: Millis) -> Option<Millis> {
        let dt = self.tz.timestamp_millis_opt(t).single()?;
        self.cron
            .find_previous_occurrence(&dt, true)
            .ok()
            .map(|d| d.timestamp_millis())
    }

    /// The ticks in `(from, to]`, at most `max`.
    pub fn ticks(&self, from: Millis, to: Millis, max: usize) -> Vec<Millis> {
        let mut out = Vec::new();
        let mut t = from;
        while out.len() < max {
            match self.next_after(t) {
                Some(n) if n <= to => {
                    out.push(n);
                    t = n;
                }
                _ => break,
            }
        }
        out
    }
}

/// What a scheduler does with a due schedule whose `next` is `next`, at `now`: the tick to
/// enqueue (if any), the new `next`, and how many due ticks enqueue nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickPlan {
    pub fire: Option<Millis>,
    pub new_next: Millis,
    pub not_enqueued: u64,
}

/// Plans a due schedule's tick (see the module's "Missed ticks"). `None`: the cron has no
/// tick after now (a schedule that ends: it leaves the due set).
pub fn plan(cron: &CronSchedule, catch_up: CatchUp, next: Millis, now: Millis) -> Option<TickPlan> {
    // The latest due tick: walk from `next`, and jump if the walk is long (a week of downtime
    // of a schedule every minute).
    let mut latest = next;
    let mut due: u64 = 1;
    let mut walked = 0;
    loop {
        match cron.next_after(latest) {
            Some(n) if n <= now && walked < WALK_LIMIT => {
                latest = n;
                due += 1;
                walked += 1;
            }
            Some(n) if n <= now => {
                latest = cron.last_at_or_before(now).unwrap_or(n).max(n);
                due += 1;
                break;
            }
            _ => break,
        }
    }
    let on_time = now - latest < ON_TIME_MS;
    let fire = (on_time || catch_up == CatchUp::One).then_some(latest);
    let new_next = cron.next_after(latest.max(now))?;
    Some(TickPlan {
        fire,
        new_next,
        not_enqueued: due - u64::from(fire.is_some()),
    })
}

/// What one [`Broker::tick_schedules`] call did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Due schedules looked at.
    pub due: usize,
    /// Ticks this call claimed (won the compare-and-set).
    pub claimed: usize,
    /// Tasks enqueued by this call (new ones; a second enqueue of a pending tick finds the
    /// first task and does not count).
    pub enqueued: usize,
    /// Due schedules another scheduler moved first.
    pub conflicts: usize,
    /// Ticks whose enqueue was refused for good (recorded as the schedule's `last_error`).
    pub refused: usize,
}

impl Broker {
    /// Creates a schedule after checking everything (the cron, the zone, the type, the request
    /// as the catalog reads it, the band the account may use); the error names the field and
    /// nothing is written. `at` is now (its first tick is the first after it).
    pub async fn create_schedule(&self, s: NewSchedule, at: impl Into<At>) -> Result<Schedule> {
        let at = at.into();
        let cron = CronSchedule::parse(&s.cron, &s.timezone)?;
        let q = self.queue_config(&s.task_type)?;
        let request = crate::broker::enqueue::checked_request(&s.task_type, &s.request, true)?;
        validate_ident("account_id", &s.account_id, 128)?;
        validate_ident("user_id", &s.user_id, 128)?;
        if let Some(name) = &s.name {
            if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "name",
                    format!("at most {MAX_NAME} characters, no control characters"),
                ));
            }
        }
        let priority = s.priority.unwrap_or(q.default_priority);
        let limit = self.inner.limits.for_account(&s.account_id);
        if priority < limit.max_priority {
            return Err(Error::invalid(
                "priority",
                format!(
                    "{priority} is above what this account may use (at most {})",
                    limit.max_priority
                ),
            ));
        }
        let now = self.now_of(at).await?;
        let next = cron.next_after(now).ok_or_else(|| {
            Error::invalid("cron", format!("{:?} has no tick in the future", s.cron))
        })?;
        let id = uuid::Uuid::now_v7().to_string();
        let k = &self.inner.keys;
        let keys = [
            k.schedule(&id),
            k.schedules_due(),
            k.schedules_all(),
            k.schedules_account(&s.account_id),
        ];
        let mut args = vec![
            now.to_string(),
            id.clone(),
            next.to_string(),
            MAX_SCHEDULES_PER_ACCOUNT.to_string(),
        ];
        for (f, v) in [
            ("name", s.name.clone().unwrap_or_default()),
            ("account_id", s.account_id.clone()),
            ("user_id", s.user_id.clone()),
            ("cron", s.cron.trim().to_string()),
            ("timezone", s.timezone.clone()),
            ("task_type", s.task_type.clone()),
            ("request", request),
            (
                "priority",
                s.priority
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default(),
            ),
            ("catch_up", s.catch_up.as_str().to_string()),
        ] {
            args.push(f.to_string());
            args.push(v);
        }
        let outcome: String = self.script(&CREATE, &keys, &args).await?;
        match outcome.as_str() {
            "created" => self.get_schedule(&id).await?.ok_or(Error::NotFound(id)),
            "quota" => Err(Error::invalid(
                "schedules",
                format!("an account holds at most {MAX_SCHEDULES_PER_ACCOUNT} schedules"),
            )),
            other => Err(Error::Redis(format!("schedule_create answered {other:?}"))),
        }
    }

    /// One schedule, if it exists.
    pub async fn get_schedule(&self, id: &str) -> Result<Option<Schedule>> {
        if !is_schedule_id(id) {
            return Ok(None);
        }
        let key = self.inner.keys.schedule(id);
        let h: HashMap<String, String> = self
            .with_conn(async |c| redis::cmd("HGETALL").arg(&key).query_async(c).await)
            .await?;
        Ok(Schedule::from_hash(h))
    }

    /// Schedules, newest first: an account's, or every account's (`None`); `offset` and
    /// `limit` page through them (at most 200 a page). Also answers whether more follow.
    pub async fn list_schedules(
        &self,
        account_id: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Schedule>, bool)> {
        let limit = limit.clamp(1, 200);
        let k = &self.inner.keys;
        let index = match account_id {
            Some(a) => k.schedules_account(a),
            None => k.schedules_all(),
        };
        let ids: Vec<String> = self
            .with_conn(async |c| {
                redis::cmd("ZREVRANGE")
                    .arg(&index)
                    .arg(offset)
                    .arg(offset + limit)
                    .query_async(c)
                    .await
            })
            .await?;
        let more = ids.len() > limit;
        let cmds = ids
            .iter()
            .take(limit)
            .map(|id| {
                let key = k.schedule(id);
                let mut c = redis::cmd("HGETALL");
                c.arg(&key);
                (key, c)
            })
            .collect();
        let hashes: Vec<HashMap<String, String>> = self.fanout(cmds).await?;
        Ok((
            hashes.into_iter().filter_map(Schedule::from_hash).collect(),
            more,
        ))
    }

    async fn control_schedule(&self, id: &str, op: &str) -> Result<()> {
        let s = self
            .get_schedule(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let k = &self.inner.keys;
        let keys = [
            k.schedule(id),
            k.schedules_due(),
            k.schedules_all(),
            k.schedules_account(&s.account_id),
        ];
        let args = [String::new(), id.to_string(), op.to_string()];
        let outcome: String = self.script(&CONTROL, &keys, &args).await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            _ => Err(Error::NotFound(id.to_string())),
        }
    }

    /// Stops a schedule's ticks until it is resumed (a tick claimed already is still enqueued).
    pub async fn pause_schedule(&self, id: &str) -> Result<()> {
        self.control_schedule(id, "pause").await
    }

    /// Resumes a paused schedule at its kept next tick: the ticks it missed while paused are
    /// missed ticks, which its `catch_up` decides (`skip`: none; `one`: one task).
    pub async fn resume_schedule(&self, id: &str) -> Result<()> {
        self.control_schedule(id, "resume").await
    }

    /// Deletes a schedule: no tick after this. The tasks it enqueued stay.
    pub async fn delete_schedule(&self, id: &str) -> Result<()> {
        self.control_schedule(id, "delete").await
    }

    /// The instant `at` names: the given one, or the server's `TIME`.
    async fn now_of(&self, at: At) -> Result<Millis> {
        match at {
            At::Ms(ms) => Ok(ms),
            At::Server => self.server_time_ms().await,
        }
    }

    /// A scheduler's pass: every due schedule (at most [`TICK_BATCH`]) gets its due tick
    /// claimed (compare-and-set), its task enqueued (an id derived from schedule and tick) and
    /// confirmed; a tick claimed by a scheduler that never confirmed it is enqueued again (the
    /// same id) and confirmed. Safe to run in every worker at once. `at`: the server's clock in
    /// production, an instant in tests.
    pub async fn tick_schedules(&self, at: impl Into<At>) -> Result<TickReport> {
        let at = at.into();
        let now = self.now_of(at).await?;
        let due_key = self.inner.keys.schedules_due();
        let ids: Vec<String> = self
            .with_conn(async |c| {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&due_key)
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(TICK_BATCH)
                    .query_async(c)
                    .await
            })
            .await?;
        let mut report = TickReport {
            due: ids.len(),
            ..TickReport::default()
        };
        let results: Vec<Result<One>> = futures::stream::iter(ids)
            .map(|id| async move { self.tick_one(&id, now, at, false).await })
            .buffer_unordered(TICK_CONCURRENCY)
            .collect()
            .await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(one) => {
                    report.claimed += usize::from(one.claimed);
                    report.enqueued += usize::from(one.enqueued);
                    report.conflicts += usize::from(one.conflict);
                    report.refused += usize::from(one.refused);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if report.claimed + report.conflicts + report.enqueued > 0 {
            tracing::debug!(
                due = report.due,
                claimed = report.claimed,
                enqueued = report.enqueued,
                conflicts = report.conflicts,
                "schedule ticks"
            );
        }
        match first_err {
            // Redis trouble: the caller logs it; what this pass did is done.
            Some(e) if report.claimed == 0 && report.enqueued == 0 => Err(e),
            _ => Ok(report),
        }
    }

    /// Claims a due schedule's tick and stops there, as a scheduler that died right after its
    /// claim would (feature `testing`): whether it claimed one.
    #[cfg(feature = "testing")]
    pub async fn claim_tick_and_die(&self, id: &str, now: Millis) -> Result<bool> {
        Ok(self.tick_one(id, now, At::Ms(now), true).await?.claimed)
    }

    /// One due schedule: claim its tick and enqueue it, or enqueue a tick claimed and never
    /// confirmed. `die_after_claim`: stop right after a claim (tests).
    async fn tick_one(&self, id: &str, now: Millis, at: At, die_after_claim: bool) -> Result<One> {
        let mut one = One::default();
        let key = self.inner.keys.schedule(id);
        let h: HashMap<String, String> = self
            .with_conn(async |c| redis::cmd("HGETALL").arg(&key).query_async(c).await)
            .await?;
        // A type this broker does not serve (the test queue, on a worker without it) is left
        // to a scheduler that does: its enqueue here would be refused and the tick lost.
        if let Some(t) = h.get("task_type") {
            if self.queue_config(t).is_err() {
                return Ok(one);
            }
        }
        let Some(pending) = h.get("pending").filter(|p| !p.is_empty()).cloned() else {
            // Nothing claimed: claim the due tick.
            let Some(s) = Schedule::from_hash(h.clone()) else {
                return Ok(one); // deleted meanwhile (its due entry went with it)
            };
            if s.paused {
                return Ok(one);
            }
            let Some(next) = h.get("next").and_then(|n| n.parse::<Millis>().ok()) else {
                return Ok(one);
            };
            if next > now {
                return Ok(one);
            }
            let cron = match CronSchedule::parse(&s.cron, &s.timezone) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(schedule = %id, error = %e, "a stored schedule does not parse; pausing it");
                    self.pause_schedule(id).await?;
                    return Ok(one);
                }
            };
            let Some(p) = plan(&cron, s.catch_up, next, now) else {
                // No tick left: it stops (paused, so that it shows why it does not run).
                self.pause_schedule(id).await?;
                return Ok(one);
            };
            let k = &self.inner.keys;
            let keys = [k.schedule(id), k.schedules_due()];
            let args = [
                now.to_string(),
                id.to_string(),
                next.to_string(),
                p.new_next.to_string(),
                p.fire.map(|f| f.to_string()).unwrap_or_default(),
                p.not_enqueued.to_string(),
            ];
            let outcome: String = self.script(&ADVANCE, &keys, &args).await?;
            if outcome != "ok" {
                one.conflict = outcome == "conflict";
                return Ok(one);
            }
            one.claimed = true;
            if die_after_claim {
                return Ok(one);
            }
            if let Some(tick) = p.fire {
                self.enqueue_tick(&s, tick, at, &mut one).await?;
            }
            return Ok(one);
        };
        // A claimed tick not confirmed (its claimer is enqueuing now, or died doing it).
        let Some(s) = Schedule::from_hash(h) else {
            return Ok(one);
        };
        let Ok(tick) = pending.parse::<Millis>() else {
            return Ok(one);
        };
        self.enqueue_tick(&s, tick, at, &mut one).await?;
        Ok(one)
    }

    /// The task id of a schedule's tick: the same for every scheduler, so a second enqueue
    /// finds the first task.
    pub fn schedule_task_id(&self, s: &Schedule, tick: Millis) -> Result<String> {
        self.derived_id(&s.task_type, &format!("sched-{}-{tick}", s.id))
    }

    async fn enqueue_tick(&self, s: &Schedule, tick: Millis, at: At, one: &mut One) -> Result<()> {
        let task = NewTask {
            task_type: s.task_type.clone(),
            request: s.request.clone(),
            priority: s.priority,
            account_id: s.account_id.clone(),
            user_id: s.user_id.clone(),
            id: Some(self.schedule_task_id(s, tick)?),
            ..Default::default()
        };
        let (task_id, error) = match self.enqueue(task, at).await {
            Ok(e) => {
                one.enqueued = e.created;
                (e.id, String::new())
            }
            // Try again at the next pass: the tick stays pending.
            Err(e @ (Error::Unavailable(_) | Error::NoScript(_))) => return Err(e),
            Err(e) => {
                tracing::warn!(schedule = %s.id, tick, error = %e, "a schedule's task was refused");
                one.refused = true;
                (String::new(), e.to_string())
            }
        };
        let k = &self.inner.keys;
        let keys = [k.schedule(&s.id), k.schedules_due()];
        let args = [at.arg(), s.id.clone(), tick.to_string(), task_id, error];
        let _: String = self.script(&CONFIRM, &keys, &args).await?;
        Ok(())
    }
}

/// What one schedule's step did.
#[derive(Debug, Default)]
struct One {
    claimed: bool,
    enqueued: bool,
    conflict: bool,
    refused: bool,
}

/// A schedule id as the library makes them (a UUID): anything else is not looked up.
pub fn is_schedule_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Millis {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    fn day_ticks(cron: &str, tz: &str, day: &str) -> Vec<Millis> {
        let c = CronSchedule::parse(cron, tz).unwrap();
        let tz: chrono_tz::Tz = tz.parse().unwrap();
        let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
        let start = tz
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .single()
            .unwrap()
            .timestamp_millis();
        let end = tz
            .from_local_datetime(&d.succ_opt().unwrap().and_hms_opt(0, 0, 0).unwrap())
            .single()
            .unwrap()
            .timestamp_millis();
        c.ticks(start - 1, end - 1, 10_000)
    }

    #[test]
    fn daylight_saving_days_in_berlin() {
        // Spring forward 2026-03-29 (02:00 → 03:00), fall back 2026-10-25 (03:00 → 02:00).
        assert_eq!(
            day_ticks("0 * * * *", "Europe/Berlin", "2026-03-29").len(),
            23
        );
        assert_eq!(
            day_ticks("0 * * * *", "Europe/Berlin", "2026-10-25").len(),
            25
        );
        assert_eq!(
            day_ticks("0 * * * *", "Europe/Berlin", "2026-06-01").len(),
            24
        );
        assert_eq!(
            day_ticks("*/5 * * * *", "Europe/Berlin", "2026-03-29").len(),
            276
        );
        assert_eq!(
            day_ticks("*/5 * * * *", "Europe/Berlin", "2026-10-25").len(),
            300
        );
        // A fixed-time job: once on each day; in the gap, at the first time after it (03:00).
        let spring = day_ticks("30 2 * * *", "Europe/Berlin", "2026-03-29");
        assert_eq!(spring, vec![ms("2026-03-29T03:00:00+02:00")]);
        let autumn = day_ticks("30 2 * * *", "Europe/Berlin", "2026-10-25");
        assert_eq!(
            autumn,
            vec![ms("2026-10-25T02:30:00+02:00")],
            "the first pass only"
        );
        // The repeated hour's ticks of a wildcard job, in real-time order.
        let hourly = day_ticks("0 * * * *", "Europe/Berlin", "2026-10-25");
        assert!(hourly.windows(2).all(|w| w[1] - w[0] == 3_600_000));
    }

    #[test]
    fn bad_cron_and_zones_name_their_field() {
        for bad in [
            "",
            "* * * *",
            "61 * * * *",
            "* * * * * *",
            "nonsense",
            "*/0 * * * *",
        ] {
            match CronSchedule::parse(bad, "UTC") {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "cron", "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        match CronSchedule::parse("* * * * *", "Mars/Olympus") {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "timezone"),
            other => panic!("{other:?}"),
        }
        assert!(CronSchedule::parse("@daily", "UTC").is_ok());
        assert!(CronSchedule::parse("0 9 * * MON-FRI", "America/New_York").is_ok());
    }

    #[test]
    fn a_plan_fires_on_time_ticks_and_catches_up_once() {
        let c = CronSchedule::parse("*/5 * * * *", "UTC").unwrap();
        let t0 = ms("2026-01-01T10:00:00Z");
        let on_time = plan(&c, CatchUp::Skip, t0, t0 + 1_000).unwrap();
        assert_eq!(on_time.fire, Some(t0));
        assert_eq!(on_time.new_next, t0 + 300_000);
        // An hour down: 12 ticks due (10:00 … 10:55), the last 2 minutes late.
        let late = t0 + 3_600_000 + 120_000 - 300_000;
        let skip = plan(&c, CatchUp::Skip, t0, late).unwrap();
        assert_eq!(skip.fire, None);
        assert_eq!(skip.not_enqueued, 12);
        assert_eq!(skip.new_next, t0 + 3_600_000);
        let one = plan(&c, CatchUp::One, t0, late).unwrap();
        assert_eq!(one.fire, Some(t0 + 3_300_000), "the latest missed tick");
        assert_eq!(one.not_enqueued, 11);
        assert_eq!(one.new_next, t0 + 3_600_000);
        // A week down, every minute: the walk jumps to the latest tick.
        let m = CronSchedule::parse("* * * * *", "UTC").unwrap();
        let week = plan(&m, CatchUp::One, t0, t0 + 7 * 86_400_000 + 30_000).unwrap();
        assert_eq!(week.fire, Some(t0 + 7 * 86_400_000));
        assert_eq!(week.new_next, t0 + 7 * 86_400_000 + 60_000);
    }
}
