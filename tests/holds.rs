//! Quiet hours, grouping of one run's task events, and repeat suppression, driven step by step
//! with a manual clock: held messages are never dropped, they go out as one summary.

mod support;

use std::sync::Arc;
use std::time::Duration;

use herald::app;
use herald::channels::MessageBody;
use herald::clock::{Clock, ManualClock, SystemClock};
use herald::config;
use herald::delivery::Worker;
use herald::event::{Event, Status};
use herald::gateway::Gateway;
use herald::outbox::memory::MemoryOutbox;
use herald::outbox::{Delivery, DeliveryState, Outbox};
use support::drive;
use support::robots::{each_listed_once, MockOptions, MockRobot, Platform};

struct Rig {
    clock: Arc<ManualClock>,
    outbox: Arc<MemoryOutbox>,
    gateway: Gateway,
    worker: Worker,
}

/// A gateway and worker on a console channel `chat`, with `rules`.
fn rig(rules: &str) -> Rig {
    rig_from(&format!("[delivery]\ndedup_window = \"0s\"\n[channels.chat]\ntype = \"console\"\n{rules}"))
}

/// A gateway and worker for the config `text`, on a manual clock and an in-memory outbox.
fn rig_from(text: &str) -> Rig {
    let cfg = config::parse(text, &|_| None).expect("valid config");
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let outbox = Arc::new(MemoryOutbox::new());
    let gateway =
        Gateway::build(&cfg, outbox.clone(), clock.clone()).map_err(|e| format!("{e:?}")).unwrap().gateway;
    let worker = app::worker(&cfg, &gateway, outbox.clone(), clock.clone(), None);
    Rig { clock, outbox, gateway, worker }
}

impl Rig {
    /// Steps the worker until nothing more is due now.
    async fn drain(&self) {
        while self.worker.step().await > 0 {}
    }

    fn by_state(&self, state: DeliveryState) -> Vec<Delivery> {
        self.outbox.all().into_iter().filter(|d| d.state == state).collect()
    }

    fn text(d: &Delivery) -> String {
        match &d.message.body {
            MessageBody::Text { text } => text.clone(),
            other => panic!("console messages are text: {other:?}"),
        }
    }
}

fn task_event(status: Status, build: u64, task: &str) -> Event {
    let mut e = Event::new("flow", status, status.as_str(), true);
    e.pipeline = Some("payments-api".into());
    e.branch = Some("main".into());
    e.build_number = Some(build);
    e.stage = Some("test".into());
    e.task = Some(task.into());
    e
}

#[tokio::test]
async fn quiet_hours_hold_messages_and_send_one_summary_when_the_window_opens() {
    let now = chrono::Utc::now();
    let fmt = |d: chrono::DateTime<chrono::Utc>| d.format("%H:%M").to_string();
    let r = rig(&format!(
        "[[rules]]\nname = \"night\"\nchannels = [\"chat\"]\n[rules.quiet]\nfrom = \"{}\"\nto = \"{}\"\ntz = \"UTC\"\nbypass = [\"failure\"]\n",
        fmt(now - chrono::Duration::hours(1)),
        fmt(now + chrono::Duration::hours(1)),
    ));
    for (i, task) in ["build", "unit", "lint"].into_iter().enumerate() {
        r.gateway.accept(task_event(Status::Success, 10 + i as u64, task)).await.unwrap();
    }
    r.drain().await;
    assert!(r.by_state(DeliveryState::Delivered).is_empty(), "nothing goes out during quiet hours");
    // A bypass status goes out at once.
    r.gateway.accept(task_event(Status::Failure, 20, "deploy")).await.unwrap();
    r.drain().await;
    let sent = r.by_state(DeliveryState::Delivered);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].headline.text.contains("#20 failure"));

    // The window ends: the three held messages go out as one summary.
    let until = r.outbox.next_due().await.unwrap().expect("held deliveries are due when the window ends");
    assert!(until > r.clock.now_ms() + 55 * 60 * 1000, "held until the window's end");
    r.clock.advance(Duration::from_millis((until - r.clock.now_ms()) as u64));
    r.drain().await;
    let merged = r.by_state(DeliveryState::Merged);
    assert_eq!(merged.len(), 3);
    let summary: Vec<Delivery> = r
        .by_state(DeliveryState::Delivered)
        .into_iter()
        .filter(|d| d.headline.text.starts_with("🔔"))
        .collect();
    assert_eq!(summary.len(), 1);
    let text = Rig::text(&summary[0]);
    assert!(text.contains("3 notifications held during quiet hours"), "{text}");
    for build in ["#10", "#11", "#12"] {
        assert!(text.contains(build), "{build} missing from {text}");
    }
}

/// A config with a DingTalk channel `ding` (at `url`) whose rule `night` is quiet from an hour
/// ago to a few minutes from now, then `extra`. (The mock checks each request's signed
/// timestamp against the real clock, as DingTalk does, so the manual clock must not run far
/// ahead of it.)
fn quiet_ding(url: &str, extra: &str) -> String {
    let now = chrono::Utc::now();
    let fmt = |d: chrono::DateTime<chrono::Utc>| d.format("%H:%M").to_string();
    format!(
        "[delivery]\ndedup_window = \"0s\"\n[channels.ding]\ntype = \"dingtalk\"\nurl = \"{url}\"\nsecret = \"SEChold-test\"\n\
         [[rules]]\nname = \"night\"\nchannels = [\"ding\"]\n[rules.quiet]\nfrom = \"{}\"\nto = \"{}\"\ntz = \"UTC\"\n{extra}",
        fmt(now - chrono::Duration::hours(1)),
        fmt(now + chrono::Duration::minutes(5)),
    )
}

/// Accepts a successful `unit` task event for each build of `builds`.
async fn accept_builds(r: &Rig, builds: std::ops::Range<u64>) {
    for build in builds {
        r.gateway.accept(task_event(Status::Success, build, "unit")).await.unwrap();
    }
}

#[tokio::test]
async fn a_held_batch_too_long_for_one_message_goes_out_as_several_summaries_each_listed_in_full() {
    // 400 messages held by quiet hours for a DingTalk robot: their lines pass the platform's
    // 20,000 bytes, so the release makes as many summaries as it takes, none of them cut.
    let robot = MockRobot::start(Platform::Dingtalk, MockOptions::signed("SEChold-test"));
    let r = rig_from(&quiet_ding(&robot.url(), ""));
    accept_builds(&r, 1000..1400).await;
    drive::until_all_final(&r.worker, r.outbox.as_ref(), &r.clock).await;
    let texts = robot.markdown_texts();
    assert!(texts.len() >= 2, "400 lines do not fit one message: {} sent", texts.len());
    assert!(texts.iter().all(|t| t.contains("held during quiet hours")), "only summaries go out");
    each_listed_once(&texts, 1000..1400);
}

#[tokio::test]
async fn a_release_followed_by_a_storm_keeps_every_event_listed_once() {
    // 400 held until the window ends, then 200 more at once: the robot's backlog is merged
    // into rate-limit summaries, which must not swallow a quiet-hours summary (its events
    // would then be only a count).
    let robot = MockRobot::start(Platform::Dingtalk, MockOptions::signed("SEChold-test"));
    let r = rig_from(&quiet_ding(&robot.url(), ""));
    accept_builds(&r, 1000..1400).await;
    let window_end = r.outbox.next_due().await.unwrap().expect("held until the window ends");
    r.clock.advance(Duration::from_millis((window_end - r.clock.now_ms()) as u64));
    accept_builds(&r, 1400..1600).await;
    drive::until_all_final(&r.worker, r.outbox.as_ref(), &r.clock).await;
    each_listed_once(&robot.markdown_texts(), 1000..1600);
}

#[tokio::test]
async fn quiet_hours_hold_even_when_the_robot_is_busy_with_another_rule() {
    // One robot, two channels: `ding` for a quiet rule, `busy` for a rule that is never quiet.
    // The busy channel's backlog is summarised at the robot's pace; the held messages must not
    // be swept into those summaries and sent during quiet hours.
    let robot = MockRobot::start(Platform::Dingtalk, MockOptions::signed("SEChold-test"));
    let extra = format!(
        "[channels.busy]\ntype = \"dingtalk\"\nurl = \"{}\"\nsecret = \"SEChold-test\"\n\
         [[rules]]\nname = \"day\"\nchannels = [\"busy\"]\n",
        robot.url()
    );
    let r = rig_from(&quiet_ding(&robot.url(), &extra));
    accept_builds(&r, 1000..1100).await;
    let held = |r: &Rig| r.outbox.all().into_iter().filter(|d| d.channel == "ding").collect::<Vec<_>>();
    let window_end = held(&r).iter().map(|d| d.next_at).max().expect("held deliveries");
    drive::until(&r.worker, r.outbox.as_ref(), &r.clock, window_end).await;
    assert!(
        r.by_state(DeliveryState::Delivered).iter().any(|d| d.channel == "busy"),
        "the busy rule was sent"
    );
    let states: Vec<DeliveryState> = held(&r).iter().map(|d| d.state).collect();
    assert!(states.iter().all(|s| *s == DeliveryState::Pending), "held messages left their hold: {states:?}");
    assert!(
        robot.markdown_texts().iter().all(|t| !t.contains("held during quiet hours")),
        "nothing held is sent before the window ends"
    );
}

#[tokio::test]
async fn one_runs_task_events_are_grouped_into_one_message() {
    let r = rig(
        "[[rules]]\nname = \"runs\"\nchannels = [\"chat\"]\ngroup_by = [\"pipeline\", \"build_number\"]\ngroup_wait = \"30s\"\n",
    );
    for task in ["compile", "unit tests", "package"] {
        r.gateway.accept(task_event(Status::Success, 22, task)).await.unwrap();
        r.clock.advance(Duration::from_secs(5));
    }
    r.gateway.accept(task_event(Status::Failure, 23, "compile")).await.unwrap();
    r.drain().await;
    assert!(r.by_state(DeliveryState::Delivered).is_empty(), "held for the group wait");
    // 30 s after the first event of run 22 (15 s have passed).
    r.clock.advance(Duration::from_secs(15));
    r.drain().await;
    let sent = r.by_state(DeliveryState::Delivered);
    assert_eq!(sent.len(), 1, "run 22 went out as one message; run 23's wait is not over");
    let text = Rig::text(&sent[0]);
    assert!(text.contains("payments-api #22: 3 updates"), "{text}");
    for task in ["compile", "unit tests", "package"] {
        assert!(text.contains(task), "{task} missing from {text}");
    }
    // Run 23 had one event: it goes out as it is, not as a summary.
    r.clock.advance(Duration::from_secs(15));
    r.drain().await;
    let sent = r.by_state(DeliveryState::Delivered);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().any(|d| d.headline.text.contains("#23 failure")));
    assert_eq!(r.by_state(DeliveryState::Merged).len(), 3);
}

#[tokio::test]
async fn an_event_after_its_group_went_out_starts_a_wait_of_its_own() {
    let r = rig(
        "[[rules]]\nname = \"runs\"\nchannels = [\"chat\"]\ngroup_by = [\"pipeline\", \"build_number\"]\ngroup_wait = \"30s\"\n",
    );
    r.gateway.accept(task_event(Status::Success, 22, "compile")).await.unwrap();
    r.clock.advance(Duration::from_secs(30));
    // The worker has the group's message in flight (leased for a minute) when the run reports
    // again: the late event waits its own 30 s, not for the lease to expire.
    let in_flight = r.outbox.lease(r.clock.now_ms(), 10, 60_000).await.unwrap();
    assert_eq!(in_flight.len(), 1);
    r.gateway.accept(task_event(Status::Failure, 22, "deploy")).await.unwrap();
    let late = r.by_state(DeliveryState::Pending).into_iter().find(|d| d.id != in_flight[0].id).unwrap();
    assert_eq!(late.next_at, r.clock.now_ms() + 30_000);
    // Its wait is over while the first is still in flight (its lease runs 30 s more): it goes
    // alone, and the first is left to its attempt, not merged and sent again.
    r.clock.advance(Duration::from_secs(30));
    r.drain().await;
    let sent = r.by_state(DeliveryState::Delivered);
    assert_eq!(sent.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), [late.id.as_str()]);
    assert!(r.by_state(DeliveryState::Merged).is_empty());
    let first = r.outbox.all().into_iter().find(|d| d.id == in_flight[0].id).unwrap();
    assert_eq!(first.state, DeliveryState::Pending, "still the earlier attempt's");
}

#[tokio::test]
async fn repeats_within_the_interval_are_suppressed() {
    let r = rig("[[rules]]\nname = \"nag\"\nchannels = [\"chat\"]\nrepeat_interval = \"1h\"\n");
    let routes = |a: herald::gateway::Accepted| a.routes.len();
    assert_eq!(routes(r.gateway.accept(task_event(Status::Failure, 1, "t")).await.unwrap()), 1);
    assert_eq!(
        routes(r.gateway.accept(task_event(Status::Failure, 2, "t")).await.unwrap()),
        0,
        "same failure again"
    );
    assert_eq!(
        routes(r.gateway.accept(task_event(Status::Success, 3, "t")).await.unwrap()),
        1,
        "a new status is news"
    );
    let mut other = task_event(Status::Failure, 4, "t");
    other.branch = Some("release".into());
    assert_eq!(routes(r.gateway.accept(other).await.unwrap()), 1, "another branch is news");
    r.clock.advance(Duration::from_secs(3601));
    assert_eq!(
        routes(r.gateway.accept(task_event(Status::Failure, 5, "t")).await.unwrap()),
        1,
        "after the interval"
    );
}

#[tokio::test]
async fn hold_settings_are_validated() {
    let bad = "[channels.chat]\ntype = \"console\"\n[[rules]]\nname = \"x\"\nchannels = [\"chat\"]\ngroup_by = [\"colour\"]\n\
               [rules.quiet]\nfrom = \"7pm\"\nto = \"08:00\"\ntz = \"Nowhere/City\"\n";
    let cfg = config::parse(bad, &|_| None).unwrap();
    let errors: Vec<String> = Gateway::build(&cfg, Arc::new(MemoryOutbox::new()), Arc::new(SystemClock))
        .err()
        .expect("invalid")
        .iter()
        .map(|e| e.to_string())
        .collect();
    for want in [
        "rules[0].quiet.from: \"7pm\" is not a time",
        "rules[0].quiet.tz: unknown time zone \"Nowhere/City\"",
        "rules[0].group_by[0]: \"colour\" is not a field to group by",
        "rules[0].group_wait: group_by needs a group_wait",
    ] {
        assert!(errors.iter().any(|e| e.starts_with(want)), "missing {want:?} in {errors:#?}");
    }
}
