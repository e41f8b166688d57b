//! End to end through the real HTTP API: a Herald started with `app::start` on port 0, real
//! inbound fixtures posted with reqwest, and every channel pointed at a real mock on a socket:
//! DingTalk, WeCom and Lark robots that check signatures, keywords, mentions and limits, a
//! webhook receiver that checks Standard Webhooks signatures, and an aiosmtpd SMTP server.
//!
//! Each test reads the outcome where a user would see it (what the robots received, the 202
//! answer) and where Herald records it (the outbox's delivery states and attempts). Tests wait
//! on conditions with deadlines, never on sleeps.
//!
//! This file holds the shared harness (the constants, a running Herald, the waiting helpers);
//! [`fleet`] starts every mock at once, and each topic module holds the tests of one concept.

#[path = "../support/mod.rs"]
mod support;

mod fleet;

mod failures;
mod fanout;
mod rendering;
mod routing;
mod secrets;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::app::{self, Options};
use herald::config;
use herald::delivery::RetryPolicy;
use herald::outbox::memory::MemoryOutbox;
use herald::outbox::{AttemptRecord, Delivery, DeliveryState};
use serde_json::Value;
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
