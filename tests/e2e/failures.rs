//! Delivery failures: an error code under HTTP 200, transient refusals retried after the
//! platform's hint or the backoff, robots slower than the channel's timeout, and a robot that
//! hangs while the others keep receiving.

use std::collections::HashMap;
use std::time::Duration;

use herald::delivery::RetryPolicy;
use herald::outbox::DeliveryState;
use serde_json::Value;

use super::{
    by_channel, fixture, now_ms, quick_retry, sink_requests, Herald, ADMIN_TOKEN, DT_SECRET, LARK_SECRET,
    WAIT,
};
use crate::support::robots::{MockOptions, MockRobot, Platform, Reply};
use crate::support::webhook_sink::{self, WebhookSink};

// ---------------------------------------------------------------------------------------------
// 2. HTTP 200 with an error code
// ---------------------------------------------------------------------------------------------

const ONE_ROBOT_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[delivery]
dedup_window = "0s"

[channels.ding]
type = "dingtalk"
url = "${DT_URL}"
secret = "${DT_SECRET}"
timeout_ms = 5000

[channels.stdout]
type = "console"

[[rules]]
name = "all"
channels = ["ding", "stdout"]
"#;

/// DingTalk answers HTTP 200 with `errcode 310000`: the delivery is dead with the platform's
/// reason, never delivered, and Herald keeps accepting and delivering.
#[tokio::test]
async fn http_200_with_an_error_code_is_dead_with_the_platform_reason() {
    let ding = MockRobot::start(Platform::Dingtalk, MockOptions::signed(DT_SECRET));
    ding.script(1, Reply::Code(310000));
    let env = HashMap::from([("DT_URL", ding.url()), ("DT_SECRET", DT_SECRET.to_string())]);
    let h = Herald::start(ONE_ROBOT_CONFIG, &env, quick_retry()).await;

    let event_id = h.post_flow(fixture("flow-task-fail.json")).await.event_id();
    let all = h
        .wait_deliveries(&event_id, 2, "the DingTalk delivery is final", |all| {
            all.iter().all(|d| matches!(d.state, DeliveryState::Delivered | DeliveryState::Dead))
        })
        .await;
    let d = by_channel(&all, "ding");
    assert_eq!(d.state, DeliveryState::Dead, "an errcode under HTTP 200 is not a delivery: {d:#?}");
    assert_eq!(d.attempts, 1, "a permanent refusal is not retried");
    let reason = d.last_error.as_deref().unwrap_or_default();
    assert!(reason.contains("sign not match"), "the platform's reason: {reason:?}");
    let attempts = h.attempts(&d.id);
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].outcome.as_str(), attempts[0].http_status, attempts[0].code),
        ("permanent", Some(200), Some(310000))
    );
    assert_eq!(by_channel(&all, "stdout").state, DeliveryState::Delivered);

    // Herald keeps serving: healthy, and the next event reaches the same robot.
    h.healthz().await;
    let next = h.post_flow(fixture("flow-task-success.json")).await.event_id();
    h.delivered(&next, 2).await;
    let got = ding.wait_received(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert!(got[0]["markdown"]["text"].as_str().unwrap().contains("success"), "{}", got[0]);
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Transient, then success
// ---------------------------------------------------------------------------------------------

/// WeCom's `45009` (rate limit) leaves the delivery retrying no sooner than the platform's 60 s;
/// Lark's HTTP 500 is retried after the short backoff and delivered.
#[tokio::test]
async fn transient_failures_are_retried_after_the_platform_hint_or_the_backoff() {
    let wecom = MockRobot::start(Platform::Wecom, MockOptions::default());
    let lark = MockRobot::start(Platform::Lark, MockOptions::signed(LARK_SECRET));
    wecom.script(1, Reply::Code(45009));
    lark.script(1, Reply::http(500));
    let config = r#"
[server]
listen = "127.0.0.1:0"

[delivery]
dedup_window = "0s"

[channels.wecom]
type = "wecom"
url = "${WECOM_URL}"

[channels.lark]
type = "lark"
url = "${LARK_URL}"
secret = "${LARK_SECRET}"

[[rules]]
name = "all"
channels = ["wecom", "lark"]
"#;
    let env = HashMap::from([
        ("WECOM_URL", wecom.url()),
        ("LARK_URL", lark.url()),
        ("LARK_SECRET", LARK_SECRET.to_string()),
    ]);
    let h = Herald::start(config, &env, quick_retry()).await;
    let posted_at = now_ms();
    let event_id = h.post_flow(fixture("flow-task-fail.json")).await.event_id();

    let all = h
        .wait_deliveries(&event_id, 2, "lark delivered, wecom retrying", |all| {
            all.iter().any(|d| d.channel == "lark" && d.state == DeliveryState::Delivered)
                && all.iter().any(|d| d.channel == "wecom" && d.attempts >= 1)
        })
        .await;

    let w = by_channel(&all, "wecom");
    assert_eq!(w.state, DeliveryState::Retrying, "{w:#?}");
    assert_eq!(w.attempts, 1, "not retried before the platform's hint: {w:#?}");
    let first = &h.attempts(&w.id)[0];
    assert_eq!((first.outcome.as_str(), first.code), ("transient", Some(45009)));
    assert!(
        w.next_at >= first.at + 60_000 && w.next_at >= posted_at + 60_000,
        "45009 means 60 s, however short the backoff: next_at is {} ms after the attempt",
        w.next_at - first.at
    );
    assert!(w.last_error.as_deref().unwrap_or_default().contains("freq"), "{:?}", w.last_error);

    let l = by_channel(&all, "lark");
    let attempts = h.attempts(&l.id);
    let outcomes: Vec<(&str, Option<u16>)> =
        attempts.iter().map(|a| (a.outcome.as_str(), a.http_status)).collect();
    assert_eq!(outcomes, [("transient", Some(500)), ("delivered", Some(200))]);
    let seen = lark.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].accepted, "the retry is signed afresh and accepted");
    assert_eq!(wecom.requests().len(), 1);
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. A robot slower than the channel's timeout
// ---------------------------------------------------------------------------------------------

/// Robots that answer after 1.5 s, behind channels with `timeout_ms = 300`: each attempt is a
/// transient timeout, the deliveries are retrying (kept, not lost), and a retry through the admin
/// API delivers them, with the same DingTalk `msgUuid` so the late duplicate is harmless.
#[tokio::test]
async fn a_robot_slower_than_the_timeout_leaves_the_delivery_retrying() {
    let robots = [
        ("ding", MockRobot::start(Platform::Dingtalk, MockOptions::default())),
        ("wecom", MockRobot::start(Platform::Wecom, MockOptions::default())),
        ("lark", MockRobot::start(Platform::Lark, MockOptions::default())),
    ];
    for (_, r) in &robots {
        r.script(1, Reply::Delay(Duration::from_millis(1500)));
    }
    let config = r#"
[server]
listen = "127.0.0.1:0"
admin_token = "${ADMIN_TOKEN}"

[delivery]
dedup_window = "0s"

[channels.ding]
type = "dingtalk"
url = "${DING}"
timeout_ms = 300

[channels.wecom]
type = "wecom"
url = "${WECOM}"
timeout_ms = 300

[channels.lark]
type = "lark"
url = "${LARK}"
timeout_ms = 300

[[rules]]
name = "all"
channels = ["ding", "wecom", "lark"]
"#;
    let env = HashMap::from([
        ("DING", robots[0].1.url()),
        ("WECOM", robots[1].1.url()),
        ("LARK", robots[2].1.url()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
    ]);
    // A long first backoff, so the state after the timeout can be read before any retry.
    let retry = RetryPolicy { base: Duration::from_secs(600), ..RetryPolicy::default() };
    let h = Herald::start(config, &env, retry).await;
    let event_id = h.post_flow(fixture("flow-task-fail.json")).await.event_id();

    let all = h
        .wait_deliveries(&event_id, 3, "every delivery attempted once", |all| {
            all.iter().all(|d| d.attempts >= 1)
        })
        .await;
    let now = now_ms();
    for d in &all {
        assert_eq!((d.state, d.attempts), (DeliveryState::Retrying, 1), "{d:#?}");
        assert!(d.next_at > now + 60_000, "{}: due again after the backoff", d.channel);
        let a = &h.attempts(&d.id)[0];
        assert_eq!(a.outcome, "transient", "{}: {a:?}", d.channel);
        assert!(a.detail.contains("timed out"), "{}: the detail names the timeout: {a:?}", d.channel);
    }

    // Not lost: retried through the admin API, each is delivered.
    for d in &all {
        let retried = h.admin(reqwest::Method::POST, &format!("/api/deliveries/{}/retry", d.id)).await;
        assert_eq!((retried.status, retried.json()["retried"].as_u64()), (200, Some(1)), "{}", retried.text);
    }
    let all = h.delivered(&event_id, 3).await;
    for (name, robot) in &robots {
        let got = robot.wait_received(1, WAIT).await;
        assert!(!got.is_empty(), "{name}");
    }
    let ding_id = &by_channel(&all, "ding").id;
    let uuids: Vec<Value> = robots[0]
        .1
        .wait_requests(2, WAIT)
        .await
        .iter()
        .map(|s| s.json().unwrap()["msgUuid"].clone())
        .collect();
    assert!(
        uuids.iter().all(|u| u == ding_id.as_str()),
        "both DingTalk requests carry msgUuid {ding_id}: {uuids:?}"
    );
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 5. A robot that hangs
// ---------------------------------------------------------------------------------------------

/// One robot holds every request for two minutes, within its channel's timeout; another
/// answers at once. Both get every event. The hanging robot takes a share of the worker's
/// attempts, not all of them, so the other keeps receiving: all 200 of its deliveries arrive
/// while the first robot still holds its requests.
#[tokio::test]
async fn a_hanging_robot_does_not_hold_up_the_others() {
    const EVENTS: usize = 200;
    let slow = WebhookSink::start(None);
    slow.script((0..EVENTS).map(|_| webhook_sink::Reply {
        delay: Duration::from_secs(120),
        ..webhook_sink::Reply::status(200)
    }));
    let fast = WebhookSink::start(None);
    let config = r#"
[server]
listen = "127.0.0.1:0"

[delivery]
dedup_window = "0s"

[channels.slow]
type = "webhook"
url = "${SLOW_URL}"
timeout_ms = 180000

[channels.fast]
type = "webhook"
url = "${FAST_URL}"

[[rules]]
name = "both"
channels = ["slow", "fast"]
"#;
    let env = HashMap::from([("SLOW_URL", slow.url("/slow")), ("FAST_URL", fast.url("/fast"))]);
    let h = Herald::start(config, &env, quick_retry()).await;
    for _ in 0..EVENTS {
        h.post_flow(fixture("flow-task-fail.json")).await.event_id();
    }

    let got = sink_requests(&fast, EVENTS).await;
    assert_eq!(got.len(), EVENTS, "the answering robot received every event, once");
    let held = slow.requests().len();
    assert!(
        (1..=96).contains(&held),
        "the hanging robot holds at most its share (96) of the worker's 128 attempts: {held}"
    );
    let open =
        h.outbox.all().iter().filter(|d| d.channel == "slow" && d.state != DeliveryState::Delivered).count();
    assert_eq!(open, EVENTS, "nothing to the hanging robot is lost or counted as delivered");

    // The hanging robot's connections close with it; what it held is retried, not lost.
    drop(slow);
    h.stop().await;
}
