//! The delivery worker driven one step at a time with a manual clock: retries with backoff and
//! the platform's hint, permanent failures dead at once, give-up limits, expired leases, and
//! the outbox contract for the in-memory backend.

mod support;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use herald::channels::{
    Attempt, Channel, ChannelKind, Message, MessageBody, Outcome, Prepare, RequestPreview, Verdict,
};
use herald::clock::{Clock, ManualClock};
use herald::config::Mention;
use herald::delivery::governor::Governor;
use herald::delivery::handoff::Handoff;
use herald::delivery::{RetryPolicy, Worker};
use herald::event::{Event, Status};
use herald::outbox::memory::MemoryOutbox;
use herald::outbox::{Delivery, DeliveryState, EnqueueWith, Headline, NewDelivery, Outbox};

/// A channel that answers from a script (then "delivered"), each answer after `delay`; it
/// records every attempt, and the most it held at once. Its name is its robot's rate key.
struct Scripted {
    key: String,
    delay: Duration,
    script: Mutex<VecDeque<Outcome>>,
    attempts: Mutex<Vec<Attempt>>,
    holding: AtomicUsize,
    most: AtomicUsize,
}

impl Scripted {
    fn new(key: &str, script: Vec<Outcome>, delay: Duration) -> Arc<Scripted> {
        Arc::new(Scripted {
            key: key.into(),
            delay,
            script: Mutex::new(script.into()),
            attempts: Mutex::default(),
            holding: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Channel for Scripted {
    fn name(&self) -> &str {
        &self.key
    }
    fn kind(&self) -> ChannelKind {
        ChannelKind::Console
    }
    fn prepare(&self, _input: &Prepare<'_>) -> Message {
        unreachable!("the worker never prepares")
    }
    fn preview(&self, _msg: &Message, _attempt: &Attempt) -> RequestPreview {
        unreachable!("the worker never previews")
    }
    async fn send(&self, _msg: &Message, attempt: &Attempt) -> Outcome {
        self.attempts.lock().unwrap().push(attempt.clone());
        let holding = self.holding.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(holding, SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.holding.fetch_sub(1, SeqCst);
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Outcome::delivered(Some(200), Some(0), "ok"))
    }
    fn check_templates(&self, _template: &str, _ctx: &serde_json::Value) -> Vec<String> {
        vec![]
    }
    fn check_mention(&self, _mention: &Mention) -> Vec<String> {
        vec![]
    }
    fn rate_key(&self) -> &str {
        &self.key
    }
}

struct Rig {
    clock: Arc<ManualClock>,
    outbox: Arc<MemoryOutbox>,
    channel: Arc<Scripted>,
    worker: Worker,
}

const T0: i64 = 1_700_000_000_000;

fn rig(script: Vec<Outcome>, policy: RetryPolicy) -> Rig {
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = Arc::new(MemoryOutbox::new());
    let channel = Scripted::new("scripted", script, Duration::ZERO);
    let mut channels: HashMap<String, Arc<dyn Channel>> = HashMap::new();
    channels.insert("scripted".into(), channel.clone());
    let worker = Worker {
        outbox: outbox.clone(),
        channels: Arc::new(channels),
        clock: clock.clone(),
        policy,
        handoff: Arc::new(Handoff::new(16, 60_000)),
        batch: 16,
        concurrency: 16,
        robot_slots: 16,
        lease: Duration::from_secs(60),
        governor: Arc::new(Governor::default()),
        robots: Arc::new(HashMap::new()),
        max_wait: Duration::from_secs(60),
        drain: Duration::from_secs(5),
    };
    Rig { clock, outbox, channel, worker }
}

/// A text message to `channel`, due at once.
fn new_delivery(id: impl Into<String>, channel: &str) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        rule: "r".into(),
        channel: channel.into(),
        message: Message { body: MessageBody::Text { text: "hi".into() }, template_errors: vec![] },
        headline: Headline::default(),
        hold: None,
        due_at: None,
        repeat: None,
    }
}

async fn enqueue(rig: &Rig, id: &str, channel: &str) {
    let e = Event::new("flow", Status::Failure, "FAIL", true);
    let d = new_delivery(id, channel);
    rig.outbox.enqueue(&e, &[d], rig.clock.now_ms(), &EnqueueWith::default()).await.unwrap();
}

fn transient(detail: &str, retry_after: Option<Duration>) -> Outcome {
    Outcome {
        verdict: Verdict::Transient { retry_after },
        http_status: Some(200),
        code: Some(-1),
        detail: detail.into(),
    }
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_then_delivered() {
    let r = rig(vec![transient("system busy", None), transient("system busy", None)], RetryPolicy::default());
    enqueue(&r, "d1", "scripted").await;
    assert_eq!(r.worker.step().await, 1);
    let (d, attempts) = r.outbox.get("d1").unwrap();
    assert_eq!(d.state, DeliveryState::Retrying);
    assert_eq!(attempts[0].outcome, "transient");
    assert_eq!(attempts[0].code, Some(-1));
    let wait = d.next_at - T0;
    assert!((800..=1200).contains(&wait), "first retry after ~1 s, got {wait} ms");

    assert_eq!(r.worker.step().await, 0, "not due yet");
    r.clock.advance(Duration::from_millis(wait as u64));
    assert_eq!(r.worker.step().await, 1);
    let (d, _) = r.outbox.get("d1").unwrap();
    let wait2 = d.next_at - r.clock.now_ms();
    assert!((1600..=2400).contains(&wait2), "second retry after ~2 s, got {wait2} ms");

    r.clock.advance(Duration::from_millis(wait2 as u64));
    assert_eq!(r.worker.step().await, 1);
    let (d, attempts) = r.outbox.get("d1").unwrap();
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(attempts.len(), 3);
    // Every attempt of one delivery carries the same id (DingTalk msgUuid, webhook-id).
    let seen = r.channel.attempts.lock().unwrap();
    assert!(seen.iter().all(|a| a.delivery_id == "d1"));
    assert_eq!(seen.iter().map(|a| a.number).collect::<Vec<_>>(), [1, 2, 3]);
}

#[tokio::test]
async fn the_platform_hint_wins_over_a_shorter_backoff() {
    let lockout = Duration::from_secs(600);
    let r = rig(vec![transient("send too fast", Some(lockout))], RetryPolicy::default());
    enqueue(&r, "d1", "scripted").await;
    r.worker.step().await;
    let (d, _) = r.outbox.get("d1").unwrap();
    assert_eq!(d.next_at - T0, 600_000);
    r.clock.advance(Duration::from_secs(599));
    assert_eq!(r.worker.step().await, 0);
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(r.worker.step().await, 1);
    assert_eq!(r.outbox.get("d1").unwrap().0.state, DeliveryState::Delivered);
}

#[tokio::test]
async fn permanent_failures_are_dead_at_once_with_the_platform_reason() {
    let permanent = Outcome {
        verdict: Verdict::Permanent,
        http_status: Some(200),
        code: Some(310000),
        detail: "keywords not in content".into(),
    };
    let r = rig(vec![permanent], RetryPolicy::default());
    enqueue(&r, "d1", "scripted").await;
    r.worker.step().await;
    let (d, attempts) = r.outbox.get("d1").unwrap();
    assert_eq!(d.state, DeliveryState::Dead);
    assert_eq!(d.last_error.as_deref(), Some("keywords not in content"));
    assert_eq!(attempts[0].code, Some(310000));
    r.clock.advance(Duration::from_secs(3600));
    assert_eq!(r.worker.step().await, 0, "dead is final");
}

#[tokio::test]
async fn too_many_attempts_end_dead() {
    let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
    let r = rig((0..5).map(|_| transient("HTTP 500", None)).collect(), policy);
    enqueue(&r, "d1", "scripted").await;
    for _ in 0..3 {
        assert_eq!(r.worker.step().await, 1);
        r.clock.advance(Duration::from_secs(3600));
    }
    let (d, attempts) = r.outbox.get("d1").unwrap();
    assert_eq!(d.state, DeliveryState::Dead);
    assert_eq!(attempts.len(), 3);
    assert!(d.last_error.unwrap().starts_with("gave up after 3 attempts"));
}

#[tokio::test]
async fn a_delivery_for_a_removed_channel_is_dead_not_lost_silently() {
    let r = rig(vec![], RetryPolicy::default());
    enqueue(&r, "d1", "gone").await;
    r.worker.step().await;
    let (d, _) = r.outbox.get("d1").unwrap();
    assert_eq!(d.state, DeliveryState::Dead);
    assert!(d.last_error.unwrap().contains("\"gone\" is no longer configured"));
}

#[tokio::test]
async fn a_lease_left_by_a_crashed_worker_comes_back() {
    let r = rig(vec![], RetryPolicy::default());
    enqueue(&r, "d1", "scripted").await;
    // Another worker leased it and died before finishing.
    assert_eq!(r.outbox.lease(r.clock.now_ms(), 10, 60_000).await.unwrap().len(), 1);
    assert_eq!(r.worker.step().await, 0);
    r.clock.advance(Duration::from_secs(60));
    assert_eq!(r.worker.step().await, 1);
    assert_eq!(r.outbox.get("d1").unwrap().0.state, DeliveryState::Delivered);
}

#[tokio::test]
async fn the_memory_outbox_meets_the_contract() {
    support::outbox_contract::run_contract(|| Arc::new(MemoryOutbox::new()) as Arc<dyn Outbox>).await;
}

#[tokio::test]
async fn deliveries_waiting_in_the_store_go_before_new_ones_handed_over() {
    let r = rig(vec![], RetryPolicy::default());
    enqueue(&r, "old", "scripted").await;
    // A full step's worth of new deliveries, stored leased and handed over in memory, the way
    // the gateway does it.
    let now = r.clock.now_ms();
    let fresh: Vec<NewDelivery> = (0..16).map(|i| new_delivery(format!("new{i}"), "scripted")).collect();
    let e = Event::new("flow", Status::Failure, "FAIL", true);
    let with = EnqueueWith { lease_ms: Some(60_000), ..Default::default() };
    r.outbox.enqueue(&e, &fresh, now, &with).await.unwrap();
    let handed = fresh.into_iter().map(|d| Delivery::stored(d, &e.event_id, now));
    r.worker.handoff.reserve(16).unwrap().fill(handed, now + 60_000);

    assert_eq!(r.worker.step().await, 16);
    let first: Vec<String> =
        r.channel.attempts.lock().unwrap().iter().map(|a| a.delivery_id.clone()).collect();
    assert!(first.contains(&"old".to_string()), "the stored delivery waited behind new ones: {first:?}");
    assert_eq!(r.worker.step().await, 1, "the last new one follows");
    assert!(r.outbox.all().iter().all(|d| d.state == DeliveryState::Delivered));
}

/// A backlog in the store for one robot (as after a restart), beside another robot's: the
/// running worker holds at most the robot's share of attempts for it, and drains the backlog as
/// its slots free, without waiting on a timer. The clock stands still here, so a delivery put
/// back in the store "for later", or a store looked at again only "later", would never be sent.
#[tokio::test]
async fn a_robot_at_its_share_drains_its_backlog_as_slots_free() {
    const BACKLOG: usize = 300;
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = Arc::new(MemoryOutbox::new());
    let wait = Duration::from_millis(5);
    let (a, b) = (Scripted::new("a", vec![], wait), Scripted::new("b", vec![], wait));
    let channels: HashMap<String, Arc<dyn Channel>> =
        HashMap::from([("a".to_string(), a.clone() as Arc<dyn Channel>), ("b".into(), b.clone())]);
    let robots = herald::delivery::robots(&channels, &HashMap::new());
    let e = Event::new("flow", Status::Failure, "FAIL", true);
    let mut backlog: Vec<NewDelivery> = (0..BACKLOG).map(|i| new_delivery(format!("a{i}"), "a")).collect();
    backlog.extend((0..20).map(|i| new_delivery(format!("b{i}"), "b")));
    outbox.enqueue(&e, &backlog, T0, &EnqueueWith::default()).await.unwrap();

    let worker = Worker {
        outbox: outbox.clone(),
        channels: Arc::new(channels),
        clock: clock.clone(),
        policy: RetryPolicy::default(),
        handoff: Arc::new(Handoff::new(64, 60_000)),
        batch: 16,
        concurrency: 16,
        robot_slots: 12,
        lease: Duration::from_secs(60),
        governor: Arc::new(Governor::default()),
        robots: Arc::new(robots),
        max_wait: Duration::from_secs(60),
        drain: Duration::from_secs(5),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let open = outbox.all().iter().filter(|d| d.state != DeliveryState::Delivered).count();
        if open == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{open} of {} deliveries still open", BACKLOG + 20);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
    let most = a.most.load(SeqCst);
    assert_eq!(most, 12, "robot a used its share of the 16 attempts, and no more");
    assert!(outbox.all().iter().all(|d| d.attempts == 1), "each sent once, none put back");
}
