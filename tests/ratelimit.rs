//! The rate governor against a DingTalk mock that enforces 20 messages a minute the way the
//! platform does (130101, then a 10-minute lockout), judged by the signed timestamp of each
//! request. The worker is driven step by step with a manual clock, so no test sleeps.

mod support;

use std::sync::Arc;
use std::time::Duration;

use herald::app;
use herald::clock::{Clock, ManualClock, SystemClock};
use herald::config;
use herald::gateway::Gateway;
use herald::ingest::{self, Format, Inbound};
use herald::outbox::memory::MemoryOutbox;
use herald::outbox::sqlite::SqliteOutbox;
use herald::outbox::{DeliveryState, Outbox};
use support::drive;
use support::robots::{each_listed_once, MockOptions, MockRobot, Platform, RateLimit};

const SECRET: &str = "SECrate-limit-test";

fn config(url: &str, extra: &str) -> config::Config {
    let text = format!(
        "[channels.ding]\ntype = \"dingtalk\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n{extra}\n\
         [[rules]]\nname = \"all\"\nchannels = [\"ding\"]\n"
    );
    config::parse(&text, &|_| None).expect("valid config")
}

/// A mock DingTalk robot that signs with [`SECRET`] and enforces the platform's limit.
fn limited_dingtalk() -> MockRobot {
    MockRobot::start(
        Platform::Dingtalk,
        MockOptions { rate_limit: Some(RateLimit::dingtalk()), ..MockOptions::signed(SECRET) },
    )
}

/// One webhook channel at `url`, and a rule sending everything to it.
fn webhook_config(url: &str) -> config::Config {
    let text = format!(
        "[channels.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n[[rules]]\nname = \"all\"\nchannels = [\"hook\"]\n"
    );
    config::parse(&text, &|_| None).expect("valid config")
}

/// A webhook sink whose first answer is 429 with `Retry-After: retry_after`, and a config
/// sending everything to it.
fn webhook_asking_for_a_pause(retry_after: &str) -> (support::webhook_sink::WebhookSink, config::Config) {
    use support::webhook_sink::{Reply, WebhookSink};
    let sink = WebhookSink::start(None);
    sink.script([Reply { retry_after: Some(retry_after.into()), ..Reply::status(429) }]);
    let cfg = webhook_config(&sink.url("/ci"));
    (sink, cfg)
}

/// The gateway for `cfg`, storing into `outbox`, on `clock`.
fn gateway(cfg: &config::Config, outbox: Arc<dyn Outbox>, clock: Arc<ManualClock>) -> Gateway {
    Gateway::build(cfg, outbox, clock).map_err(|e| format!("{e:?}")).unwrap().gateway
}

/// `flow-task-fail.json` with its build number replaced.
fn flow_event(build: u64) -> herald::event::Event {
    let raw =
        std::fs::read(format!("{}/tests/fixtures/inbound/flow-task-fail.json", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v["task"]["buildNumber"] = serde_json::json!(build.to_string());
    let body = serde_json::to_vec(&v).unwrap();
    let req = Inbound { method: "POST", headers: vec![], query: "", body: &body };
    ingest::parse(Format::Flow, &req).unwrap()
}

struct Run {
    robot: MockRobot,
    outbox: Arc<MemoryOutbox>,
}

/// Accepts `n` events for one robot, then steps the worker (moving the clock to the next due
/// time whenever nothing is due) until every delivery is final.
async fn burst(n: u64, extra: &str) -> Run {
    let outbox = Arc::new(MemoryOutbox::new());
    let (robot, _) = burst_into(n, extra, outbox.clone()).await;
    Run { robot, outbox }
}

/// `burst` through any outbox.
async fn burst_into(n: u64, extra: &str, outbox: Arc<dyn Outbox>) -> (MockRobot, Arc<ManualClock>) {
    let robot = limited_dingtalk();
    let cfg = config(&robot.url(), extra);
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let gateway = gateway(&cfg, outbox.clone(), clock.clone());
    for i in 0..n {
        gateway.accept(flow_event(1000 + i)).await.unwrap();
    }
    let worker = app::worker(&cfg, &gateway, outbox.clone(), clock.clone(), None);
    drive::until_all_final(&worker, outbox.as_ref(), &clock).await;
    (robot, clock)
}

#[tokio::test]
async fn a_burst_of_100_never_trips_the_limit_and_every_event_is_represented() {
    let run = burst(100, "").await;
    let seen = run.robot.requests();
    let throttled: Vec<_> = seen.iter().filter(|s| s.code == Some(130101)).collect();
    assert!(throttled.is_empty(), "{} requests were throttled", throttled.len());
    assert!(seen.iter().all(|s| s.accepted), "every request was accepted");

    let all = run.outbox.all();
    let merged: Vec<_> = all.iter().filter(|d| d.state == DeliveryState::Merged).collect();
    let delivered: Vec<_> = all.iter().filter(|d| d.state == DeliveryState::Delivered).collect();
    assert_eq!(all.len(), 100 + delivered.iter().filter(|d| d.rule.starts_with('(')).count());
    assert_eq!(merged.len() + delivered.iter().filter(|d| !d.rule.starts_with('(')).count(), 100);
    assert!(!merged.is_empty(), "a backlog of 80 at 20/min exceeds the 60 s wait: it must be summarised");

    // Each event's build number appears in a message of its own or in a summary.
    let texts = run.robot.markdown_texts();
    assert_eq!(texts.len(), seen.len());
    for i in 0..100u64 {
        let tag = format!("#{}", 1000 + i);
        assert!(texts.iter().any(|t| t.contains(&tag)), "event {tag} is in no message");
    }
    let summaries: Vec<&String> =
        texts.iter().filter(|t| t.contains("notifications in one message")).collect();
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    assert!(summaries[0].contains(&format!("{} notifications", merged.len())), "the summary says how many");
    assert!(texts.len() <= 21, "100 events went out as {} messages", texts.len());
}

/// A second rule to the same robot that adds mentions; each event is sent once, with them.
const ON_CALL: &str = "[[rules]]\nname = \"on call\"\nchannels = [\"ding\"]\n\
                       [rules.mention]\nmobiles = [\"13800000000\"]\nuser_ids = [\"zhangsan\"]\n";

#[tokio::test]
async fn a_summary_mentions_whoever_the_messages_it_covers_would_have() {
    every_message_mentions_the_on_call(&burst(100, ON_CALL).await.robot);
    // Through the SQLite store, which keeps the mentions with each delivery's headline.
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(SqliteOutbox::open(dir.path()).unwrap());
    every_message_mentions_the_on_call(&burst_into(100, ON_CALL, outbox).await.0);
}

fn every_message_mentions_the_on_call(robot: &MockRobot) {
    assert!(robot.requests().iter().all(|s| s.accepted), "the mock checks each @ is in the text too");
    let bodies = robot.received();
    let summaries: Vec<&serde_json::Value> = bodies
        .iter()
        .filter(|b| b["markdown"]["text"].as_str().unwrap().contains("notifications in one message"))
        .collect();
    assert_eq!(summaries.len(), 1);
    for body in bodies.iter() {
        assert_eq!(body["at"]["atMobiles"], serde_json::json!(["13800000000"]), "{body}");
        assert_eq!(body["at"]["atUserIds"], serde_json::json!(["zhangsan"]), "{body}");
        let text = body["markdown"]["text"].as_str().unwrap();
        assert!(text.contains("@13800000000") && text.contains("@zhangsan"), "{text}");
    }
}

#[tokio::test]
async fn a_steady_stream_makes_one_summary_per_free_slot_not_one_per_event() {
    // 1200 events, one every 50 ms (a minute of 20 a second) to a robot that takes 20 a minute,
    // the worker stepping as they arrive. Summaries must keep pace with the robot: a summary
    // each time a few held-back events make a backlog longer than max_wait would pile up
    // faster than the robot sends them.
    let robot = limited_dingtalk();
    let cfg = config(&robot.url(), "");
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let start = clock.now_ms();
    let outbox = Arc::new(MemoryOutbox::new());
    let gateway = gateway(&cfg, outbox.clone(), clock.clone());
    let worker = app::worker(&cfg, &gateway, outbox.clone(), clock.clone(), None);
    for i in 0..1200 {
        gateway.accept(flow_event(5000 + i)).await.unwrap();
        while worker.step().await > 0 {}
        clock.advance(Duration::from_millis(50));
    }
    let stream_end = clock.now_ms();
    drive::until_all_final(&worker, outbox.as_ref(), &clock).await;
    let seen = robot.requests();
    assert!(seen.iter().all(|s| s.accepted && s.code == Some(0)), "every request was accepted");
    let texts = robot.markdown_texts();
    for i in 0..1200u64 {
        let tag = format!("#{}", 5000 + i);
        assert!(texts.iter().any(|t| t.contains(&tag)), "event {tag} is in no message");
    }
    // The robot can send one message every ~3 s: the backlog must be gone within about one
    // max_wait (60 s) of the stream's end, not drain summary by summary long after.
    let drained_s = (clock.now_ms() - stream_end) / 1000;
    assert!(drained_s <= 70, "the last message went out {drained_s} s after the stream ended");
    let summaries = texts.iter().filter(|t| t.contains("notifications in one message")).count();
    let minutes = (clock.now_ms() - start) as f64 / 60_000.0;
    assert!(
        texts.len() as f64 <= 21.0 * minutes.ceil(),
        "{} messages ({summaries} summaries) in {minutes:.1} min",
        texts.len()
    );
    assert!(summaries >= 2, "a minute of 20 a second needs summaries: {summaries}");
}

#[tokio::test]
async fn a_summary_lists_every_message_it_covers_within_the_size_limit() {
    // 600 at once: the backlog's lines would pass DingTalk's 20,000 bytes in one summary, so
    // it is split across the robot's next slots, and no event is only a number in a count.
    storm_of_600_is_paced_and_listed(&burst(600, "").await.robot);
}

#[tokio::test]
async fn the_same_storm_through_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(SqliteOutbox::open(dir.path()).unwrap());
    let (robot, _) = burst_into(600, "", outbox).await;
    storm_of_600_is_paced_and_listed(&robot);
}

fn storm_of_600_is_paced_and_listed(robot: &MockRobot) {
    let seen = robot.requests();
    assert!(seen.iter().all(|s| s.accepted && s.code == Some(0)), "every request was accepted");
    let texts = robot.markdown_texts();
    let summaries: Vec<&String> =
        texts.iter().filter(|t| t.contains("notifications in one message")).collect();
    assert!(summaries.len() >= 2, "600 lines do not fit one message: {} summaries", summaries.len());
    // The first 20 fill the robot's minute. When it frees up, the summary of what waited goes
    // first, the oldest news, before the single messages that became due with it.
    assert!(texts[..20].iter().all(|t| !summaries.contains(&t)), "the first 20 go out on their own");
    assert!(
        summaries.contains(&&texts[20]),
        "the 21st message is the first summary: {}",
        texts[20].chars().take(60).collect::<String>()
    );
    // Nothing cut, summaries included, and each event listed exactly once.
    each_listed_once(&texts, 1000..1600);
}

#[tokio::test]
async fn a_short_backlog_is_paced_not_summarised() {
    // 30 messages at 20/min drain within ~63 s at most: with a 2-minute wait they all go out
    // on their own, paced.
    let run = burst(30, "[delivery]\nmax_wait = \"2m\"\n").await;
    let seen = run.robot.requests();
    assert_eq!(seen.len(), 30);
    assert!(seen.iter().all(|s| s.accepted && s.code == Some(0)));
    assert!(run.outbox.all().iter().all(|d| d.state == DeliveryState::Delivered));
}

#[tokio::test]
async fn without_the_governor_the_mock_would_throttle() {
    // The same burst with the limit raised past the platform's: the mock must answer 130101,
    // proving it enforces the limit the governor respects.
    let run = burst(25, "rate = \"100/min\"\n[delivery]\nmax_wait = \"1h\"\n").await;
    let seen = run.robot.requests();
    assert!(seen.iter().any(|s| s.code == Some(130101)), "the mock never throttled");
    assert!(
        run.outbox.all().iter().all(|d| d.state == DeliveryState::Delivered),
        "throttled messages are retried after the lockout, not lost"
    );
}

#[tokio::test]
async fn a_robot_locked_out_by_another_sender_is_left_alone_until_the_lockout_ends() {
    let robot = limited_dingtalk();
    let cfg = config(&robot.url(), "");
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let start = clock.now_ms();
    let lockout_end = start + 600_000;
    // Another sender sharing the robot has just tripped its limit: Herald's own window is
    // empty, so only the platform's answer can tell it.
    robot.lock_out(lockout_end);
    let outbox = Arc::new(MemoryOutbox::new());
    let gateway = gateway(&cfg, outbox.clone(), clock.clone());
    for i in 0..60 {
        gateway.accept(flow_event(1000 + i)).await.unwrap();
    }
    let worker = app::worker(&cfg, &gateway, outbox.clone(), clock.clone(), None);
    drive::until_all_final(&worker, outbox.as_ref(), &clock).await;

    let seen = robot.requests();
    let sent_at = |s: &support::robots::Seen| s.query("timestamp").unwrap().parse::<i64>().unwrap();
    // The first free slots went out together, before any answer came back; after the first
    // 130101 nothing more is sent until the lockout ends, and then everything is accepted.
    assert!(seen.iter().any(|s| s.code == Some(130101)), "the mock was locked out");
    for s in &seen {
        let at = sent_at(s);
        assert!(at == start || at >= lockout_end, "a request {} ms into the lockout", at - start);
        assert_eq!(s.accepted, at >= lockout_end, "sent {} ms after the start", at - start);
    }
    assert!(outbox.all().iter().all(|d| matches!(d.state, DeliveryState::Delivered | DeliveryState::Merged)));
    let texts = robot.markdown_texts();
    for i in 0..60u64 {
        let tag = format!("#{}", 1000 + i);
        assert!(texts.iter().any(|t| t.contains(&tag)), "event {tag} is in no message");
    }
}

/// A manual clock that moves on by `jump` at its `at_read`-th read: the time a slow commit
/// takes between the worker's reading the clock and its sending.
struct JumpClock {
    clock: Arc<ManualClock>,
    reads: std::sync::atomic::AtomicUsize,
    at_read: usize,
    jump: Duration,
}

impl Clock for JumpClock {
    fn now_ms(&self) -> herald::clock::Millis {
        if self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == self.at_read {
            self.clock.advance(self.jump);
        }
        self.clock.now_ms()
    }
}

#[tokio::test]
async fn a_send_counts_from_when_it_goes_out_not_from_before_a_slow_commit() {
    // 5 a second, and the platform counts each request's signed timestamp.
    let limit = RateLimit { limit: 5, window: Duration::from_secs(1), ..RateLimit::dingtalk() };
    let robot = MockRobot::start(
        Platform::Dingtalk,
        MockOptions { rate_limit: Some(limit), ..MockOptions::signed(SECRET) },
    );
    let cfg = config(&robot.url(), "rate = \"5/s\"");
    let manual = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let outbox = Arc::new(MemoryOutbox::new());
    let gateway = gateway(&cfg, outbox.clone(), manual.clone());
    for i in 0..10 {
        gateway.accept(flow_event(1000 + i)).await.unwrap();
    }
    // The worker's first step reads the clock, then 600 ms pass (a commit waiting on a slow
    // disk, say) before it sends the first five: their window runs from when they went out.
    let clock = Arc::new(JumpClock {
        clock: manual.clone(),
        reads: Default::default(),
        at_read: 2,
        jump: Duration::from_millis(600),
    });
    let worker = app::worker(&cfg, &gateway, outbox.clone(), clock, None);
    drive::until_all_final(&worker, outbox.as_ref(), &manual).await;
    let seen = robot.requests();
    assert_eq!(seen.len(), 10, "each sent once");
    assert!(
        seen.iter().all(|s| s.accepted),
        "no request was throttled: {:?}",
        seen.iter().map(|s| s.code).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_webhook_asking_for_a_pause_gets_its_messages_after_it_each_as_it_is() {
    let (sink, cfg) = webhook_asking_for_a_pause("120");
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let start = clock.now_ms();
    let outbox = Arc::new(MemoryOutbox::new());
    let gateway = gateway(&cfg, outbox.clone(), clock.clone());
    let worker = app::worker(&cfg, &gateway, outbox.clone(), clock.clone(), None);
    gateway.accept(flow_event(1)).await.unwrap();
    assert_eq!(worker.step().await, 1, "the first is sent, and answered 429 Retry-After: 120");
    for i in 0..9 {
        gateway.accept(flow_event(100 + i)).await.unwrap();
    }
    drive::until_all_final(&worker, outbox.as_ref(), &clock).await;
    // Nothing is merged: a webhook's receiver reads one event at a time, so its messages wait
    // out the pause and go as they are; and none goes before the pause ends.
    let all = outbox.all();
    assert_eq!(all.len(), 10, "no summary was made");
    for d in &all {
        assert_eq!(d.state, DeliveryState::Delivered, "{}", d.id);
        let (_, attempts) = outbox.get(&d.id).unwrap();
        let last = attempts.last().unwrap();
        assert!(last.at >= start + 120_000, "delivered {} ms into the pause", last.at - start);
    }
    assert_eq!(sink.requests().len(), 11);
}

#[tokio::test]
async fn a_lockout_answered_before_a_restart_still_holds_after_it() {
    let robot = limited_dingtalk();
    let cfg = config(&robot.url(), "");
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let start = clock.now_ms();
    let lockout_end = start + 600_000;
    robot.lock_out(lockout_end);
    let dir = tempfile::tempdir().unwrap();
    {
        let outbox = Arc::new(SqliteOutbox::open(dir.path()).unwrap());
        let gateway = gateway(&cfg, outbox.clone(), clock.clone());
        gateway.accept(flow_event(7)).await.unwrap();
        let worker = app::worker(&cfg, &gateway, outbox.clone(), clock.clone(), None);
        assert_eq!(worker.step().await, 1);
        outbox.flush().await.unwrap();
        assert_eq!(robot.requests()[0].code, Some(130101));
    }
    // Herald restarts a minute into the lockout, with more to send.
    clock.advance(Duration::from_secs(60));
    let outbox = Arc::new(SqliteOutbox::open(dir.path()).unwrap());
    let gateway = gateway(&cfg, outbox.clone(), clock.clone());
    for i in 0..5 {
        gateway.accept(flow_event(100 + i)).await.unwrap();
    }
    let worker = app::worker(&cfg, &gateway, outbox.clone(), clock.clone(), None);
    worker.seed_governor(clock.now_ms()).await;
    drive::until_all_final(&worker, outbox.as_ref(), &clock).await;
    let seen = robot.requests();
    for s in &seen[1..] {
        let at = s.query("timestamp").unwrap().parse::<i64>().unwrap();
        assert!(at >= lockout_end, "sent {} s into the lockout", (at - start) / 1000);
        assert!(s.accepted);
    }
    let texts = robot.markdown_texts();
    for build in [7, 100, 101, 102, 103, 104] {
        assert!(texts.iter().any(|t| t.contains(&format!("#{build}"))), "#{build} is in no message");
    }
}

#[tokio::test]
async fn a_retry_after_answered_before_a_restart_still_holds_after_it() {
    // A webhook has no rate limit of its own: only the recorded answer can tell the restarted
    // worker to wait.
    let (sink, cfg) = webhook_asking_for_a_pause("120");
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let start = clock.now_ms();
    let dir = tempfile::tempdir().unwrap();
    {
        let outbox = Arc::new(SqliteOutbox::open(dir.path()).unwrap());
        let gateway = gateway(&cfg, outbox.clone(), clock.clone());
        gateway.accept(flow_event(7)).await.unwrap();
        let worker = app::worker(&cfg, &gateway, outbox.clone(), clock.clone(), None);
        assert_eq!(worker.step().await, 1, "sent, and answered 429 Retry-After: 120");
        outbox.flush().await.unwrap();
    }
    // Herald restarts a minute into the pause, with more to send.
    clock.advance(Duration::from_secs(60));
    let outbox = Arc::new(SqliteOutbox::open(dir.path()).unwrap());
    let gateway = gateway(&cfg, outbox.clone(), clock.clone());
    for i in 0..3 {
        gateway.accept(flow_event(100 + i)).await.unwrap();
    }
    let worker = app::worker(&cfg, &gateway, outbox.clone(), clock.clone(), None);
    worker.seed_governor(clock.now_ms()).await;
    drive::until_all_final(&worker, outbox.as_ref(), &clock).await;
    let all = outbox.list(&herald::outbox::ListFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 4);
    for d in &all {
        assert_eq!(d.state, DeliveryState::Delivered, "{}", d.id);
        let (_, attempts) = outbox.get(&d.id).await.unwrap().unwrap();
        let at = attempts.last().unwrap().at - start;
        assert!(at >= 120_000, "delivered {at} ms after the pause began");
    }
    assert_eq!(sink.requests().len(), 5);
}

#[tokio::test]
async fn a_pause_longer_than_any_platform_asks_for_holds_the_robot_ten_minutes_at_most() {
    // A proxy's day-long Retry-After: the delivery it answered waits, the robot does not.
    let (_sink, cfg) = webhook_asking_for_a_pause("86400");
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let start = clock.now_ms();
    let outbox = Arc::new(MemoryOutbox::new());
    let gateway = gateway(&cfg, outbox.clone(), clock.clone());
    let worker = app::worker(&cfg, &gateway, outbox.clone(), clock.clone(), None);
    gateway.accept(flow_event(1)).await.unwrap();
    assert_eq!(worker.step().await, 1);
    for i in 0..3 {
        gateway.accept(flow_event(100 + i)).await.unwrap();
    }
    drive::until(&worker, outbox.as_ref(), &clock, start + 3_600_000).await;
    let delivered: Vec<_> =
        outbox.all().into_iter().filter(|d| d.state == DeliveryState::Delivered).collect();
    assert_eq!(delivered.len(), 3, "the three after it, within the hour");
    for d in &delivered {
        let at = outbox.get(&d.id).unwrap().1.last().unwrap().at - start;
        assert!((600_000..660_000).contains(&at), "sent {at} ms after the pause began");
    }
}
