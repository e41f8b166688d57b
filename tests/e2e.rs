//! End to end through the real HTTP API: a Herald started with `app::start` on port 0, real
//! inbound fixtures posted with reqwest, and every channel pointed at a real mock on a socket:
//! DingTalk, WeCom and Lark robots that check signatures, keywords, mentions and limits, a
//! webhook receiver that checks Standard Webhooks signatures, and an aiosmtpd SMTP server.
//!
//! Each test reads the outcome where a user would see it (what the robots received, the 202
//! answer) and where Herald records it (the outbox's delivery states and attempts). Tests wait
//! on conditions with deadlines, never on sleeps.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::app::{self, Options};
use herald::channels::{Attempt, MessageBody};
use herald::config;
use herald::delivery::RetryPolicy;
use herald::outbox::memory::MemoryOutbox;
use herald::outbox::{AttemptRecord, Delivery, DeliveryState};
use serde_json::{json, Value};
use support::robots::{MockOptions, MockRobot, Platform, Reply};
use support::smtp::{Mode, SmtpSink};
use support::webhook_sink::{self, WebhookSink};

const DT_SECRET: &str = "SECe2e0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f";
const LARK_SECRET: &str = "lark-e2e-signing-secret-5b7d";
const KEYWORD: &str = "HeraldCI";
/// base64 of "herald-e2e-webhook-signing-key!!"
const AUDIT_KEY: &str = "whsec_aGVyYWxkLWUyZS13ZWJob29rLXNpZ25pbmcta2V5ISE=";
const AUDIT_TOKEN: &str = "audit-bearer-3c9f1e";
const AUDIT_URL_TOKEN: &str = "audit-url-token-8d2a";
const FLOW_HOOK_TOKEN: &str = "flow-hook-token-61fe";
const ADMIN_TOKEN: &str = "admin-token-e2e-0d4b";
const SMTP_USER: &str = "ci-bot";
const SMTP_PASSWORD: &str = "Smtp-Pa55-e2e-4b1c";
const MOBILE: &str = "13800000000";
const WECOM_USER: &str = "zhangsan";
const LARK_USER: &str = "ou_7d8a6e6df7621556ce0d21922b676706cc";
/// The marker `channels::limit` ends a cut text with.
const MARKER: &str = "…(truncated)";
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// A running Herald
// ---------------------------------------------------------------------------------------------

/// A Herald on port 0 with an in-memory outbox the test can read.
struct Herald {
    /// The parsed config, to check how it prints.
    config: config::Config,
    base: String,
    outbox: Arc<MemoryOutbox>,
    running: Option<app::Running>,
    client: reqwest::Client,
}

/// An answer from the API.
struct Answer {
    status: u16,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    fn event_id(&self) -> String {
        assert_eq!(self.status, 202, "{}", self.text);
        self.json()["event_id"].as_str().expect("202 carries an event_id").to_string()
    }
}

/// Production options except the outbox, the retry policy and signals. `Options` may gain
/// fields, so the rest come from its `Default`.
fn options(outbox: Arc<MemoryOutbox>, retry: RetryPolicy) -> Options {
    Options { outbox, retry: Some(retry), signals: false, ..Options::default() }
}

/// A retry policy whose first retries come quickly.
fn quick_retry() -> RetryPolicy {
    RetryPolicy { base: Duration::from_millis(50), ..RetryPolicy::default() }
}

impl Herald {
    /// Parses `toml` with `${VAR}` taken from `env` and starts Herald.
    async fn start(toml: &str, env: &HashMap<&str, String>, retry: RetryPolicy) -> Herald {
        let cfg = config::parse(toml, &|k| env.get(k).cloned())
            .unwrap_or_else(|errs| panic!("the test config is invalid: {errs:#?}"));
        Herald::start_with(&cfg, retry).await
    }

    async fn start_with(cfg: &config::Config, retry: RetryPolicy) -> Herald {
        let outbox = Arc::new(MemoryOutbox::new());
        let running = match app::start(cfg, options(outbox.clone(), retry)).await {
            Ok(r) => r,
            Err(app::StartError::Config(errs)) => panic!("Herald refused the config: {errs:#?}"),
            Err(e) => panic!("Herald did not start: {e}"),
        };
        Herald {
            config: cfg.clone(),
            base: format!("http://{}", running.addr),
            outbox,
            running: Some(running),
            client: reqwest::Client::new(),
        }
    }

    fn gateway(&self) -> &herald::gateway::Gateway {
        &self.running.as_ref().unwrap().gateway
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body).send().await.expect("Herald answers");
        let status = resp.status().as_u16();
        Answer { status, text: resp.text().await.unwrap_or_default() }
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
        self.request(reqwest::Method::POST, path, headers, body).await
    }

    /// A JSON post with the flow source token as a bearer token.
    async fn post_flow(&self, body: Vec<u8>) -> Answer {
        let bearer = format!("Bearer {FLOW_HOOK_TOKEN}");
        self.post("/hooks/flow", &[("Content-Type", "application/json"), ("Authorization", &bearer)], body)
            .await
    }

    /// A call to the admin API (`/api/...`) with the admin token.
    async fn admin(&self, method: reqwest::Method, path: &str) -> Answer {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        self.request(method, path, &[("Authorization", &bearer)], Vec::new()).await
    }

    async fn healthz(&self) -> Answer {
        let answer = self.request(reqwest::Method::GET, "/healthz", &[], Vec::new()).await;
        assert_eq!((answer.status, answer.text.as_str()), (200, "ok"), "/healthz");
        answer
    }

    /// The event's deliveries, oldest first.
    fn deliveries(&self, event_id: &str) -> Vec<Delivery> {
        self.outbox.all().into_iter().filter(|d| d.event_id == event_id).collect()
    }

    fn attempts(&self, delivery_id: &str) -> Vec<AttemptRecord> {
        self.outbox.get(delivery_id).expect("a stored delivery").1
    }

    /// Waits until the event has `n` deliveries and `done` holds for them.
    async fn wait_deliveries(
        &self,
        event_id: &str,
        n: usize,
        what: &str,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        eventually(what, WAIT, || {
            let all = self.deliveries(event_id);
            if all.len() == n && done(&all) {
                Ok(all)
            } else {
                Err(format!("{all:#?}"))
            }
        })
        .await
    }

    /// Waits until the event's `n` deliveries are all delivered; fails at once on a dead one.
    async fn delivered(&self, event_id: &str, n: usize) -> Vec<Delivery> {
        self.wait_deliveries(event_id, n, "every delivery delivered", |all| {
            let dead: Vec<&Delivery> = all.iter().filter(|d| d.state == DeliveryState::Dead).collect();
            assert!(dead.is_empty(), "a delivery is dead: {dead:#?}");
            all.iter().all(|d| d.state == DeliveryState::Delivered)
        })
        .await
    }

    async fn stop(mut self) {
        self.running.take().unwrap().stop().await;
    }
}

/// Polls `probe` every 20 ms until it answers `Ok`; panics at the deadline with its last `Err`.
async fn eventually<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(state) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last state:\n{state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/inbound/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn by_channel<'a>(all: &'a [Delivery], channel: &str) -> &'a Delivery {
    let mut found = all.iter().filter(|d| d.channel == channel);
    let d = found.next().unwrap_or_else(|| panic!("no delivery to {channel}: {all:#?}"));
    assert!(found.next().is_none(), "more than one delivery to {channel}: {all:#?}");
    d
}

/// Waits for the webhook receiver without blocking the runtime Herald's worker runs on.
async fn sink_requests(sink: &WebhookSink, n: usize) -> Vec<webhook_sink::Recorded> {
    eventually("webhook requests", WAIT, || {
        let got = sink.requests();
        if got.len() >= n {
            Ok(got)
        } else {
            Err(format!("{} of {n}", got.len()))
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The fleet: one of every channel, with rules like a real team's
// ---------------------------------------------------------------------------------------------

const FLEET_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
admin_token = "${ADMIN_TOKEN}"

[delivery]
dedup_window = "0s"

[sources.flow]
token = "${FLOW_HOOK_TOKEN}"

[channels.ding]
type = "dingtalk"
url = "${DT_URL}"
secret = "${DT_SECRET}"
keyword = "${KEYWORD}"
msgtype = "markdown"

[channels.wecom]
type = "wecom"
url = "${WECOM_URL}"
msgtype = "markdown"

[channels.lark]
type = "feishu"
url = "${LARK_URL}"
secret = "${LARK_SECRET}"
msgtype = "interactive"

[channels.audit]
type = "webhook"
url = "${AUDIT_URL}"
secret = "${AUDIT_KEY}"
headers = { Authorization = "Bearer ${AUDIT_TOKEN}" }

[channels.mail]
type = "email"
smtp = "smtp://${SMTP_USER}:${SMTP_PASSWORD}@127.0.0.1:${SMTP_PORT}"
from = "Herald CI <ci@example.com>"
to = ["dev@example.com"]

[[rules]]
name = "payments failures to dingtalk"
channels = ["ding"]
[rules.when]
source = "flow"
status = ["failure", "aborted"]
final = true
pipeline = "payments-*"
[rules.mention]
mobiles = ["${MOBILE}"]

[[rules]]
name = "successes"
channels = ["ding", "mail"]
[rules.when]
status = "success"

[[rules]]
name = "wecom team"
channels = ["wecom"]
[rules.when]
status = "failure"
branch = ["main", "master"]
[rules.mention]
user_ids = ["${WECOM_USER}"]

[[rules]]
name = "lark team"
channels = ["lark"]
[rules.when]
status = ["failure"]
params = { DEPLOY_ENV = "stag*" }
[rules.mention]
user_ids = ["${LARK_USER}"]
all = true

[[rules]]
name = "audit and mail"
channels = ["audit", "mail"]
"#;

/// The routes `flow-task-fail.json` takes through `FLEET_CONFIG`, in rule order.
fn fleet_routes() -> Value {
    json!([
        {"rule": "payments failures to dingtalk", "channel": "ding"},
        {"rule": "wecom team", "channel": "wecom"},
        {"rule": "lark team", "channel": "lark"},
        {"rule": "audit and mail", "channel": "audit"},
        {"rule": "audit and mail", "channel": "mail"},
    ])
}

/// Every mock, and a Herald routing to all of them.
struct Fleet {
    ding: MockRobot,
    wecom: MockRobot,
    lark: MockRobot,
    audit: WebhookSink,
    smtp: SmtpSink,
    herald: Herald,
    /// The SMTP password in Herald's config (the sink requires `SMTP_PASSWORD`).
    smtp_password: String,
}

impl Fleet {
    async fn start(smtp_password: &str, retry: RetryPolicy) -> Fleet {
        let ding = MockRobot::start(Platform::Dingtalk, MockOptions::signed(DT_SECRET).with_keyword(KEYWORD));
        let wecom = MockRobot::start(Platform::Wecom, MockOptions::default());
        let lark = MockRobot::start(Platform::Lark, MockOptions::signed(LARK_SECRET));
        let audit = WebhookSink::start(Some(AUDIT_KEY));
        let smtp = SmtpSink::start(Mode::Plain, Some((SMTP_USER, SMTP_PASSWORD)), None);
        let env = HashMap::from([
            ("FLOW_HOOK_TOKEN", FLOW_HOOK_TOKEN.to_string()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
            ("DT_URL", ding.url()),
            ("DT_SECRET", DT_SECRET.to_string()),
            ("KEYWORD", KEYWORD.to_string()),
            ("WECOM_URL", wecom.url()),
            ("LARK_URL", lark.url()),
            ("LARK_SECRET", LARK_SECRET.to_string()),
            ("AUDIT_URL", audit.url(&format!("/ci/events?token={AUDIT_URL_TOKEN}"))),
            ("AUDIT_KEY", AUDIT_KEY.to_string()),
            ("AUDIT_TOKEN", AUDIT_TOKEN.to_string()),
            ("SMTP_USER", SMTP_USER.to_string()),
            ("SMTP_PASSWORD", smtp_password.to_string()),
            ("SMTP_PORT", smtp.port.to_string()),
            ("MOBILE", MOBILE.to_string()),
            ("WECOM_USER", WECOM_USER.to_string()),
            ("LARK_USER", LARK_USER.to_string()),
        ]);
        let herald = Herald::start(FLEET_CONFIG, &env, retry).await;
        Fleet { ding, wecom, lark, audit, smtp, herald, smtp_password: smtp_password.to_string() }
    }

    /// Every credential in the fleet's config.
    fn secrets(&self) -> Vec<String> {
        let whsec_b64 = AUDIT_KEY.trim_start_matches("whsec_");
        let mut s: Vec<String> = [
            DT_SECRET,
            LARK_SECRET,
            AUDIT_KEY,
            whsec_b64,
            AUDIT_TOKEN,
            AUDIT_URL_TOKEN,
            FLOW_HOOK_TOKEN,
            ADMIN_TOKEN,
            SMTP_PASSWORD,
            self.ding.token(),
            self.wecom.token(),
            self.lark.token(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        s.push(self.smtp_password.clone());
        s
    }

    async fn stop(self) {
        self.herald.stop().await;
    }
}

/// `flow-task-fail.json` with `task.message` replaced.
fn flow_fail_with_message(message: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("flow-task-fail.json")).unwrap();
    v["task"]["message"] = json!(message);
    serde_json::to_vec(&v).unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. One event, every channel
// ---------------------------------------------------------------------------------------------

/// One Flow failure fans out to a signed DingTalk robot with a keyword and a mobile mention, a
/// WeCom markdown robot with a user mention, a signed Lark card with a user and @all, a signed
/// webhook and an email over SMTP with AUTH. Every mock accepts exactly one message, shaped as
/// its platform needs, and every delivery ends delivered on the first attempt.
#[tokio::test]
async fn one_flow_failure_reaches_every_channel_signed_and_mentioned() {
    let fleet = Fleet::start(SMTP_PASSWORD, RetryPolicy::default()).await;
    let h = &fleet.herald;

    let answer = h.post_flow(fixture("flow-task-fail.json")).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["status"], "failure");
    assert_eq!(body["routes"], fleet_routes(), "every matching (rule, channel), and only those");
    let event_id = answer.event_id();

    let all = h.delivered(&event_id, 5).await;
    for d in &all {
        assert_eq!((d.attempts, d.last_error.as_deref()), (1, None), "{}: one clean attempt", d.channel);
        assert!(d.message.template_errors.is_empty(), "{}: {:?}", d.channel, d.message.template_errors);
    }

    // DingTalk: signed (the mock verified it), keyword, mobile in `at` and as @mobile in the text.
    let ding = fleet.ding.wait_received(1, WAIT).await;
    assert_eq!((ding.len(), fleet.ding.requests().len()), (1, 1), "exactly one DingTalk request");
    let m = &ding[0];
    assert_eq!(m["msgtype"], "markdown");
    assert_eq!(m["msgUuid"], by_channel(&all, "ding").id.as_str(), "msgUuid is the delivery id");
    assert_eq!(m["at"]["atMobiles"], json!([MOBILE]));
    let text = m["markdown"]["text"].as_str().unwrap();
    assert!(text.contains(&format!("@{MOBILE}")), "@mobile in the text: {text}");
    assert!(text.contains(KEYWORD), "keyword in the text: {text}");
    assert!(m["markdown"]["title"].as_str().unwrap().contains("payments-api 发布"), "{m}");
    let seen = &fleet.ding.requests()[0];
    assert!(seen.query("sign").is_some() && seen.query("timestamp").is_some(), "{}", seen.target);

    // WeCom markdown: the user as <@userid>, and no mention lists (markdown has none).
    let wecom = fleet.wecom.wait_received(1, WAIT).await;
    assert_eq!((wecom.len(), fleet.wecom.requests().len()), (1, 1), "exactly one WeCom request");
    assert_eq!(wecom[0]["msgtype"], "markdown");
    let content = wecom[0]["markdown"]["content"].as_str().unwrap();
    assert!(content.contains(&format!("<@{WECOM_USER}>")), "{content}");
    assert!(content.contains("payments-api 发布"), "{content}");

    // Lark: signed in the body, a red card header, the user and everyone as <at id=…>.
    let lark = fleet.lark.wait_received(1, WAIT).await;
    assert_eq!((lark.len(), fleet.lark.requests().len()), (1, 1), "exactly one Lark request");
    let card = &lark[0];
    assert_eq!(card["msg_type"], "interactive");
    assert!(card["timestamp"].is_string() && card["sign"].is_string(), "{card}");
    assert_eq!(card["card"]["header"]["template"], "red");
    let card_text = card["card"]["elements"][0]["text"]["content"].as_str().unwrap();
    assert!(card_text.contains(&format!("<at id={LARK_USER}></at>")), "{card_text}");
    assert!(card_text.contains("<at id=all></at>"), "{card_text}");

    // Webhook: the event as JSON, signed the Standard Webhooks way, with the configured header.
    let hooks = sink_requests(&fleet.audit, 1).await;
    assert_eq!(hooks.len(), 1, "exactly one webhook request");
    let r = &hooks[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.signature_ok, Some(true), "the webhook signature verifies");
    assert_eq!(r.header("webhook-id"), Some(by_channel(&all, "audit").id.as_str()));
    assert_eq!(r.header("authorization"), Some(format!("Bearer {AUDIT_TOKEN}").as_str()));
    let event: Value = serde_json::from_slice(&r.body).expect("the webhook body is JSON");
    assert_eq!(event["status"], "failure");
    assert_eq!(event["source"], "flow");
    assert_eq!(event["event_id"], event_id.as_str());
    assert_eq!(event["pipeline"], "payments-api 发布");

    // Email: AUTH, subject naming the pipeline, a text and an HTML part.
    let mails = eventually("the email", WAIT, || {
        let got = fleet.smtp.messages();
        if got.is_empty() {
            Err("no mail yet".into())
        } else {
            Ok(got)
        }
    })
    .await;
    assert_eq!(mails.len(), 1, "exactly one email");
    let mail = &mails[0];
    assert_eq!(mail.auth_user.as_deref(), Some(SMTP_USER));
    assert_eq!(mail.rcpt_tos, ["dev@example.com"]);
    assert_eq!(mail.parsed["content_type"], "multipart/alternative");
    let subject = mail.parsed["headers"]["subject"].as_str().unwrap();
    assert!(subject.contains("payments-api 发布"), "subject: {subject}");
    let parts = mail.parsed["parts"].as_array().unwrap();
    let types: Vec<&str> = parts.iter().filter_map(|p| p["type"].as_str()).collect();
    assert_eq!(types, ["text/plain", "text/html"]);
    assert!(parts.iter().all(|p| p["text"].as_str().unwrap().contains("payments-api 发布")), "{parts:#?}");

    fleet.stop().await;
}

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
        assert!(a.latency_ms < 1_200, "{}: the attempt was cut at the timeout: {a:?}", d.channel);
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
// 5. A template that fails at run time
// ---------------------------------------------------------------------------------------------

/// A user template that renders against `check`'s sample events but fails on a real event:
/// `duration` of a parameter that is not a number. The sample events have no `SKIP_IT`; Jenkins
/// sends `SKIP_IT=false`.
const BRITTLE: &str =
    "{{status_emoji status}} {{default pipeline source}} (skip IT: {{duration params.SKIP_IT}})\n";

/// Herald starts with the brittle template (check-time rendering passes); an event it cannot
/// render is still delivered, with the built-in default, and the failure is recorded on the
/// delivery. An event it can render uses it.
#[tokio::test]
async fn a_template_failing_at_run_time_falls_back_to_the_default_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("brittle.hbs"), BRITTLE).unwrap();
    let sink = WebhookSink::start(None);
    let config = r#"
[server]
listen = "127.0.0.1:0"

[delivery]
dedup_window = "0s"

[templates]
dir = "${TEMPLATES}"

[channels.audit]
type = "webhook"
url = "${AUDIT_URL}"

[channels.stdout]
type = "console"

[[rules]]
name = "brittle"
channels = ["audit", "stdout"]
template = "brittle"
"#;
    let env =
        HashMap::from([("TEMPLATES", dir.path().display().to_string()), ("AUDIT_URL", sink.url("/ci"))]);
    let h = Herald::start(config, &env, quick_retry()).await;

    let answer = h
        .post(
            "/hooks/jenkins",
            &[("Content-Type", "application/json")],
            fixture("jenkins-tikal-started.json"),
        )
        .await;
    let event_id = answer.event_id();
    let all = h.delivered(&event_id, 2).await;
    for d in &all {
        let errors = &d.message.template_errors;
        assert!(!errors.is_empty(), "{}: the template failure is recorded", d.channel);
        assert!(
            errors.iter().any(|e| e.contains("brittle") && e.contains("duration")),
            "{}: the error names the template and the helper: {errors:?}",
            d.channel
        );
    }
    // The webhook got the built-in default body: the event as JSON.
    let got = sink_requests(&sink, 1).await;
    let body: Value = serde_json::from_slice(&got[0].body)
        .unwrap_or_else(|_| panic!("the default webhook body is JSON: {}", got[0].body_text()));
    assert_eq!((body["status"].as_str(), body["pipeline"].as_str()), (Some("started"), Some("acme-api")));
    assert_eq!(body["params"]["SKIP_IT"], "false");
    match &by_channel(&all, "stdout").message.body {
        MessageBody::Text { text } => {
            assert!(text.contains("acme-api #128 started"), "the console default: {text}");
            assert!(!text.contains("skip IT"), "{text}");
        }
        other => panic!("console message: {other:?}"),
    }

    // Control: an event the template can render is sent with it, without errors.
    let ok = h.post_flow(fixture("flow-task-fail.json")).await.event_id();
    let all = h.delivered(&ok, 2).await;
    let stdout = by_channel(&all, "stdout");
    assert!(stdout.message.template_errors.is_empty(), "{:?}", stdout.message.template_errors);
    match &stdout.message.body {
        MessageBody::Text { text } => assert!(text.contains("(skip IT: )"), "the user template: {text}"),
        other => panic!("console message: {other:?}"),
    }
    let got = sink_requests(&sink, 2).await;
    assert!(got[1].body_text().contains("(skip IT: )"), "{}", got[1].body_text());
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 6. A huge Chinese message
// ---------------------------------------------------------------------------------------------

/// ~60 KB of Chinese text (3 bytes a character), in lines.
fn chinese_text() -> String {
    let line = "构建失败：支付服务的退款单元测试未通过，请检查四舍五入逻辑与汇率换算。";
    let mut s = String::new();
    let mut i = 0;
    while s.len() < 60_000 {
        i += 1;
        s.push_str(&format!("第{i}行 {line}\n"));
    }
    s
}

/// A Flow failure whose message is ~60 KB of Chinese: each robot receives a body within SPEC §6
/// (DingTalk 20000 bytes of body, WeCom markdown 4096 bytes of content, Lark 20 KB of body), the
/// text is cut with a visible marker, and the mentions and keyword come after it, intact.
#[tokio::test]
async fn a_huge_chinese_message_is_cut_within_every_limit_with_mentions_intact() {
    let fleet = Fleet::start(SMTP_PASSWORD, RetryPolicy::default()).await;
    let message = chinese_text();
    assert!(message.len() >= 60_000);
    let answer = fleet.herald.post_flow(flow_fail_with_message(&message)).await;
    let event_id = answer.event_id();
    fleet.herald.delivered(&event_id, 5).await;
    let head: String = message.chars().take(40).collect();

    // DingTalk: the whole request body, msgUuid included, within 20000 bytes.
    let seen = fleet.ding.wait_requests(1, WAIT).await;
    assert_eq!(seen.len(), 1);
    assert!(seen[0].accepted, "DingTalk accepted it (code {:?})", seen[0].code);
    assert!(seen[0].body.len() <= 20_000, "DingTalk body is {} bytes", seen[0].body.len());
    let m = seen[0].json().unwrap();
    let text = m["markdown"]["text"].as_str().unwrap();
    assert!(text.contains(&head), "the text starts as sent");
    let (_, after) = text.rsplit_once(MARKER).unwrap_or_else(|| panic!("no marker in the DingTalk text"));
    let tail: Vec<&str> = after.split_whitespace().collect();
    assert!(
        tail.contains(&format!("@{MOBILE}").as_str()) && tail.contains(&KEYWORD),
        "after the marker: {after:?}"
    );
    assert!(tail.iter().all(|t| *t == format!("@{MOBILE}") || *t == KEYWORD), "after the marker: {after:?}");
    assert_eq!(m["at"]["atMobiles"], json!([MOBILE]));

    // WeCom markdown: the content within 4096 bytes, the mention after the marker.
    let seen = fleet.wecom.wait_requests(1, WAIT).await;
    assert!(seen[0].accepted, "WeCom accepted it (code {:?})", seen[0].code);
    let m = seen[0].json().unwrap();
    let content = m["markdown"]["content"].as_str().unwrap();
    assert!(content.len() <= 4096, "WeCom content is {} bytes", content.len());
    assert!(content.contains(MARKER), "no marker in the WeCom content");
    let after = content.rsplit_once(MARKER).unwrap().1;
    assert_eq!(after.trim(), format!("<@{WECOM_USER}>"), "after the marker");

    // Lark: the signed body within 20 KB, the mentions after the marker.
    let seen = fleet.lark.wait_requests(1, WAIT).await;
    assert!(seen[0].accepted, "Lark accepted it (code {:?})", seen[0].code);
    assert!(seen[0].body.len() <= 20_000, "Lark body is {} bytes", seen[0].body.len());
    let m = seen[0].json().unwrap();
    let card_text = m["card"]["elements"][0]["text"]["content"].as_str().unwrap();
    assert!(card_text.contains(&head), "the text starts as sent");
    let after = card_text.rsplit_once(MARKER).unwrap_or_else(|| panic!("no marker in the Lark card")).1;
    assert_eq!(after.trim(), format!("<at id={LARK_USER}></at> <at id=all></at>"), "after the marker");
    fleet.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Two rules, one robot
// ---------------------------------------------------------------------------------------------

/// Two matching rules name the same DingTalk robot with different mobiles: one route, one
/// delivery, one message, carrying both mentions.
#[tokio::test]
async fn two_rules_to_one_robot_send_one_message_with_both_mentions() {
    let ding = MockRobot::start(Platform::Dingtalk, MockOptions::signed(DT_SECRET));
    let config = r#"
[server]
listen = "127.0.0.1:0"

[delivery]
dedup_window = "0s"

[channels.ding]
type = "dingtalk"
url = "${DT_URL}"
secret = "${DT_SECRET}"

[[rules]]
name = "oncall"
channels = ["ding"]
[rules.mention]
mobiles = ["13800000000"]

[[rules]]
name = "owners"
channels = ["ding"]
[rules.when]
status = "failure"
[rules.mention]
mobiles = ["13900000001"]
user_ids = ["lisi"]
"#;
    let env = HashMap::from([("DT_URL", ding.url()), ("DT_SECRET", DT_SECRET.to_string())]);
    let h = Herald::start(config, &env, RetryPolicy::default()).await;
    let answer = h.post_flow(fixture("flow-task-fail.json")).await;
    assert_eq!(answer.json()["routes"], json!([{"rule": "oncall", "channel": "ding"}]), "{}", answer.text);
    let event_id = answer.event_id();
    let all = h.delivered(&event_id, 1).await;
    assert_eq!(all.len(), 1);

    let requests = ding.wait_requests(1, WAIT).await;
    assert_eq!(requests.len(), 1, "exactly one message");
    assert!(requests[0].accepted, "code {:?}", requests[0].code);
    let m = requests[0].json().unwrap();
    assert_eq!(m["at"]["atMobiles"], json!(["13800000000", "13900000001"]));
    assert_eq!(m["at"]["atUserIds"], json!(["lisi"]));
    let text = m["markdown"]["text"].as_str().unwrap();
    for who in ["@13800000000", "@13900000001", "@lisi"] {
        assert!(text.contains(who), "{who} in the text: {text}");
    }
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 8. Format detection on POST /hooks
// ---------------------------------------------------------------------------------------------

/// Every manifest case of the four supported formats, posted to `/hooks` as its sender sends it
/// (headers, method, query for the GET case): 202, the manifest's status, and the event's
/// `source` names the right format.
#[tokio::test]
async fn hooks_detects_every_supported_format_from_the_manifest() {
    let sink = WebhookSink::start(None);
    let config = r#"
[server]
listen = "127.0.0.1:0"

[delivery]
dedup_window = "0s"

[channels.audit]
type = "webhook"
url = "${AUDIT_URL}"

[[rules]]
name = "everything"
channels = ["audit"]
"#;
    let env = HashMap::from([("AUDIT_URL", sink.url("/ci"))]);
    let h = Herald::start(config, &env, RetryPolicy::default()).await;
    let manifest: Value = serde_json::from_slice(&fixture("manifest.json")).unwrap();
    let formats = HashMap::from([
        ("jenkins-tikal", "jenkins"),
        ("jenkins-jobstatus", "jenkins-status"),
        ("aliyun-flow", "flow"),
        ("buildbot-httpstatuspush", "buildbot"),
    ]);
    let mut seen_formats = std::collections::BTreeSet::new();
    let mut posted = 0;
    for case in manifest["cases"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let Some(format) = formats.get(case["format"].as_str().unwrap()) else { continue };
        let headers: Vec<(&str, &str)> = case["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let method = case["method"].as_str().unwrap_or("POST");
        let answer = if file.ends_with(".query.txt") {
            let query = String::from_utf8(fixture(file)).unwrap();
            let path = format!("/hooks?{}", query.trim());
            h.request(method.parse().unwrap(), &path, &headers, Vec::new()).await
        } else {
            h.request(method.parse().unwrap(), "/hooks", &headers, fixture(file)).await
        };
        assert_eq!(answer.status, 202, "{file}: {}", answer.text);
        let expected = &case["expected"]["status"];
        assert_eq!(&answer.json()["status"], expected, "{file}: status");
        assert_eq!(answer.json()["routes"], json!([{"rule": "everything", "channel": "audit"}]), "{file}");
        let event_id = answer.event_id();
        let all = h.deliveries(&event_id);
        let MessageBody::Raw { body, .. } = &by_channel(&all, "audit").message.body else {
            panic!("{file}: not a webhook body")
        };
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["source"], *format, "{file}: detected as {}", event["source"]);
        assert_eq!(&event["status"], expected, "{file}");
        seen_formats.insert(*format);
        posted += 1;
    }
    assert_eq!(seen_formats.len(), 4, "a case for each format: {seen_formats:?}");
    let got = sink_requests(&sink, posted).await;
    assert_eq!(got.len(), posted, "one webhook request per event");
    eventually("every delivery delivered", WAIT, || {
        let all = h.outbox.all();
        if all.len() == posted && all.iter().all(|d| d.state == DeliveryState::Delivered) {
            Ok(())
        } else {
            Err(format!("{all:#?}"))
        }
    })
    .await;
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 9. Secrets
// ---------------------------------------------------------------------------------------------

/// Everything Herald logs (at the production level, `info`), captured from the first call on.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Panics naming every secret found in `text`.
fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    let leaked: Vec<&String> = secrets.iter().filter(|s| text.contains(s.as_str())).collect();
    assert!(leaked.is_empty(), "{what} leaks {leaked:?}:\n{text}");
}

/// Every robot refuses with a message that echoes its own token or secret, the webhook answers
/// 401 echoing its credentials, and the SMTP password is wrong. No token, signing secret or
/// password reaches an API answer (hooks, health, the admin API's listing and details), a
/// delivery's `last_error` or attempts, the config's or the gateway's printable forms, the
/// request previews, or the logs.
#[tokio::test]
async fn no_secret_reaches_api_answers_errors_debug_output_or_logs() {
    let logs = captured_logs();
    let fleet = Fleet::start("wrong-Smtp-Pa55-e2e-77aa", quick_retry()).await;
    let secrets = fleet.secrets();
    let (ding, wecom, lark) = (fleet.ding.token(), fleet.wecom.token(), fleet.lark.token());
    fleet.ding.script(
        1,
        Reply::CodeMsg(300001, format!("token is not exist: access_token={ding} sign={DT_SECRET}")),
    );
    fleet.wecom.script(1, Reply::CodeMsg(93000, format!("invalid webhook url, key={wecom}")));
    fleet.lark.script(
        1,
        Reply::CodeMsg(19001, format!("incoming webhook access token invalid: {lark} ({LARK_SECRET})")),
    );
    let echo = format!("denied: token={AUDIT_URL_TOKEN} auth=Bearer {AUDIT_TOKEN}");
    fleet.audit.script([webhook_sink::Reply { body: echo, ..webhook_sink::Reply::status(401) }]);
    let h = &fleet.herald;

    let mut answers = Vec::new();
    // Refused: no token, a wrong one, an unknown format, an invalid body.
    let json_ct = ("Content-Type", "application/json");
    for (path, headers, body) in [
        ("/hooks/flow", vec![json_ct], fixture("flow-task-fail.json")),
        ("/hooks/flow?token=not-the-token", vec![json_ct], fixture("flow-task-fail.json")),
        ("/hooks/nope", vec![json_ct], fixture("flow-task-fail.json")),
        ("/hooks", vec![json_ct], br#"{"hello": "world"}"#.to_vec()),
    ] {
        let a = h.post(path, &headers, body).await;
        assert!(a.status >= 400, "{path}: {}", a.text);
        answers.push(a.text);
    }
    // Accepted with the token in the query, as some senders do.
    let a = h
        .post(&format!("/hooks/flow?token={FLOW_HOOK_TOKEN}"), &[json_ct], fixture("flow-task-fail.json"))
        .await;
    let event_id = a.event_id();
    answers.push(a.text);
    answers.push(h.healthz().await.text);

    let all = h
        .wait_deliveries(&event_id, 5, "every channel attempted", |all| all.iter().all(|d| d.attempts >= 1))
        .await;
    // The admin API shows the deliveries, their errors and their attempts.
    let listing = h.admin(reqwest::Method::GET, "/api/deliveries?limit=100").await;
    assert_eq!(listing.status, 200, "{}", listing.text);
    assert_eq!(listing.json()["deliveries"].as_array().map(Vec::len), Some(5), "{}", listing.text);
    answers.push(listing.text);
    for d in &all {
        let detail = h.admin(reqwest::Method::GET, &format!("/api/deliveries/{}", d.id)).await;
        assert_eq!(detail.status, 200, "{}", detail.text);
        let v = detail.json();
        assert!(v["last_error"].is_string() && v["history"][0]["detail"].is_string(), "{}", detail.text);
        answers.push(detail.text);
    }
    let refused = h
        .request(
            reqwest::Method::GET,
            "/api/deliveries",
            &[("Authorization", "Bearer not-the-admin")],
            vec![],
        )
        .await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    answers.push(refused.text);
    for d in &all {
        assert_ne!(d.state, DeliveryState::Delivered, "{}: the scripted refusal was not seen", d.channel);
        let last_error = d.last_error.as_deref().unwrap_or_default();
        assert!(!last_error.is_empty(), "{}: the refusal is recorded", d.channel);
        assert_no_secret(&format!("{}: last_error", d.channel), last_error, &secrets);
        let (stored, attempts) = h.outbox.get(&d.id).unwrap();
        assert_no_secret(&format!("{}: stored delivery", d.channel), &format!("{stored:?}"), &secrets);
        assert_no_secret(&format!("{}: attempts", d.channel), &format!("{attempts:?}"), &secrets);
        let channel = &h.gateway().channels[&d.channel];
        let preview = channel.preview(&d.message, &Attempt::first(d.id.clone()));
        assert_no_secret(&format!("{}: request preview", d.channel), &format!("{preview:?}"), &secrets);
    }
    for (i, a) in answers.iter().enumerate() {
        assert_no_secret(&format!("API answer #{i}"), a, &secrets);
    }
    // The config, sources and rules print redacted (channels are not `Debug`).
    assert_no_secret("the config", &format!("{:?}", h.config), &secrets);
    let gw = h.gateway();
    assert_no_secret("gateway sources", &format!("{:?}", gw.sources), &secrets);
    assert_no_secret("gateway rules", &format!("{:?}", gw.rules), &secrets);
    // The hook token never reaches the event, so not the webhook body either.
    let sent = sink_requests(&fleet.audit, 1).await;
    assert_no_secret("the webhook body", &sent[0].body_text(), &[FLOW_HOOK_TOKEN.to_string()]);

    fleet.herald.stop().await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logs.contains(&event_id), "the logs were captured:\n{logs}");
    assert_no_secret("the logs", &logs, &secrets);
}
