//! Mock chat robots: DingTalk, WeCom and Lark servers on 127.0.0.1, port 0, each a real
//! actix-web server on a thread of its own, that check a message the way the platform does.
//!
//! Each robot checks its token, the signature (DingTalk in the query, Lark in the body, with a
//! 1-hour window), the custom keyword, the size limit, the message type and the mention rules,
//! and answers like the platform: HTTP 200 with a non-zero `errcode`/`code` when it refuses (the
//! checks are in `robots/checks.rs`). Accepted messages are recorded for the test to read. A
//! script makes the next requests answer with a given code, an HTTP status, or a delay.
//!
//! ```ignore
//! let robot = MockRobot::start(Platform::Dingtalk, MockOptions::signed("SECabc").with_keyword("CI"));
//! // point a channel at robot.url(), with secret "SECabc" and keyword "CI"
//! robot.script(1, Reply::Code(130101)); // the next request is throttled
//! let got = robot.wait_received(1, Duration::from_secs(10)).await;
//! assert_eq!(got[0]["msgtype"], "markdown");
//! ```
//!
//! The server stops when the `MockRobot` is dropped.

mod checks;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

/// The code a mock answers (HTTP 200) for a mention rule broken: `@mobile` missing from a
/// DingTalk text, a mention in a message type that cannot carry it. No platform uses it.
pub const MOCK_RULE_CODE: i64 = 990_001;

/// Which platform a mock robot plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Dingtalk,
    Wecom,
    Lark,
}

/// The robot's security settings. (No `Debug`: it holds the secret.)
#[derive(Clone, Default)]
pub struct MockOptions {
    /// The signing secret (DingTalk `SEC…`, Lark): every request must be signed with it.
    /// Ignored by WeCom, which has no signing.
    pub secret: Option<String>,
    /// A custom keyword every message must contain (DingTalk, Lark).
    pub keyword: Option<String>,
    /// Enforce a sending limit the way the platform does (see [`RateLimit`]).
    pub rate_limit: Option<RateLimit>,
}

/// A platform's sending limit: more than `limit` accepted messages within `window` is answered
/// with `code`, and the robot then refuses everything for `lockout` (DingTalk: 20 a minute,
/// then 130101 and a 10-minute lockout). Time is the platform's view of the send time: the
/// signed `timestamp` of each request (ms for DingTalk, s for Lark), or the wall clock when a
/// request carries none, so tests can drive it with an injected clock.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    pub limit: usize,
    pub window: Duration,
    pub lockout: Duration,
    pub code: i64,
}

impl RateLimit {
    /// DingTalk's published limit.
    pub fn dingtalk() -> RateLimit {
        RateLimit {
            limit: 20,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(600),
            code: 130101,
        }
    }
}

/// Accepted send times and the end of any lockout, in ms.
#[derive(Default)]
struct Limiter {
    accepted: VecDeque<i64>,
    locked_until: i64,
}

impl Limiter {
    /// Records an accepted message at `now`, or refuses it.
    fn admit(&mut self, rl: &RateLimit, now: i64) -> bool {
        if now < self.locked_until {
            return false;
        }
        let window = rl.window.as_millis() as i64;
        while self.accepted.front().is_some_and(|t| *t <= now - window) {
            self.accepted.pop_front();
        }
        if self.accepted.len() >= rl.limit {
            self.locked_until = now + rl.lockout.as_millis() as i64;
            return false;
        }
        self.accepted.push_back(now);
        true
    }
}

/// The platform's view of when a request was sent.
fn sent_at(platform: Platform, target: &str, body: &[u8]) -> i64 {
    let from_query = url::Url::parse(&format!("http://mock{target}")).ok().and_then(|u| {
        u.query_pairs().find(|(k, _)| k == "timestamp").and_then(|(_, v)| v.parse::<i64>().ok())
    });
    let from_body = || {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["timestamp"].as_str().and_then(|t| t.parse::<i64>().ok()))
            .map(|s| s * 1000)
    };
    match platform {
        Platform::Dingtalk => from_query,
        Platform::Lark => from_body(),
        Platform::Wecom => None,
    }
    .unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
    })
}

impl MockOptions {
    /// Signed, no keyword.
    pub fn signed(secret: &str) -> MockOptions {
        MockOptions { secret: Some(secret.to_string()), ..MockOptions::default() }
    }

    /// The same options with a keyword.
    pub fn with_keyword(self, keyword: &str) -> MockOptions {
        MockOptions { keyword: Some(keyword.to_string()), ..self }
    }
}

/// A scripted answer for one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// HTTP 200 with the platform's error body for this code, with the platform's usual message
    /// (e.g. DingTalk 130101, 310000; WeCom 45009, 93000; Lark 11232, 19021).
    Code(i64),
    /// HTTP 200 with this code and message.
    CodeMsg(i64, String),
    /// This HTTP status with a short text body, and `Retry-After: <seconds>` when given.
    Http { status: u16, retry_after: Option<u64> },
    /// Waits this long, then checks and answers the request as usual (for client timeouts).
    Delay(Duration),
}

impl Reply {
    /// An HTTP status without `Retry-After`.
    pub fn http(status: u16) -> Reply {
        Reply::Http { status, retry_after: None }
    }
}

/// One request as it arrived, with the answer it got.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The path and query, as sent (percent-encoded).
    pub target: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// The HTTP status answered.
    pub status: u16,
    /// The platform code answered (`errcode` or `code`), when the answer had one.
    pub code: Option<i64>,
    /// True when the robot accepted the message.
    pub accepted: bool,
}

impl Seen {
    /// The body as JSON, when it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A query parameter, percent-decoded once (as the platform reads it).
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }
}

struct State {
    platform: Platform,
    token: String,
    options: MockOptions,
    script: VecDeque<Reply>,
    seen: Vec<Seen>,
    limiter: Limiter,
}

/// (requests answered, messages accepted), for waiting without sleeping.
type Counts = tokio::sync::watch::Sender<(usize, usize)>;

/// A running mock robot.
pub struct MockRobot {
    platform: Platform,
    port: u16,
    token: String,
    state: Arc<Mutex<State>>,
    counts: Arc<Counts>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockRobot {
    /// Starts a robot with a fresh random token.
    pub fn start(platform: Platform, options: MockOptions) -> MockRobot {
        let token = format!("tok{}", uuid::Uuid::new_v4().simple());
        let state = Arc::new(Mutex::new(State {
            platform,
            token: token.clone(),
            options,
            script: VecDeque::new(),
            seen: Vec::new(),
            limiter: Limiter::default(),
        }));
        let counts = Arc::new(tokio::sync::watch::channel((0, 0)).0);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let (data, count_data) = (web::Data::from(state.clone()), web::Data::from(counts.clone()));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(count_data.clone())
                        .app_data(web::PayloadConfig::new(1 << 20))
                        .default_service(web::to(receive))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run();
                tx.send(server.handle()).unwrap();
                let _ = server.await;
            })
        });
        // The socket already listens; this only waits for the handle used to stop the server.
        let handle = rx.recv_timeout(Duration::from_secs(10)).expect("the mock robot did not start");
        MockRobot { platform, port, token, state, counts, handle, thread: Some(thread) }
    }

    /// The robot's webhook URL, token included, in the platform's form:
    /// `/robot/send?access_token=…`, `/cgi-bin/webhook/send?key=…`, `/open-apis/bot/v2/hook/…`.
    pub fn url(&self) -> String {
        let base = format!("http://127.0.0.1:{}", self.port);
        match self.platform {
            Platform::Dingtalk => format!("{base}/robot/send?access_token={}", self.token),
            Platform::Wecom => format!("{base}/cgi-bin/webhook/send?key={}", self.token),
            Platform::Lark => format!("{base}/open-apis/bot/v2/hook/{}", self.token),
        }
    }

    /// The token in the URL, to check that it never leaks.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Locks the robot out until `until_ms` (the platform's clock, see [`RateLimit`]), as if
    /// another sender sharing it had tripped its limit: each request before then is answered
    /// with the limit's code.
    pub fn lock_out(&self, until_ms: i64) {
        self.state.lock().unwrap().limiter.locked_until = until_ms;
    }

    /// Answers the next `n` requests (after any already scripted) with `reply`.
    pub fn script(&self, n: usize, reply: Reply) {
        self.state.lock().unwrap().script.extend(std::iter::repeat_n(reply, n));
    }

    /// Every accepted message body, as sent (DingTalk with `msgUuid`, Lark with `timestamp`/`sign`).
    pub fn received(&self) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state.seen.iter().filter(|s| s.accepted).filter_map(Seen::json).collect()
    }

    /// The `markdown.text` of every accepted message (DingTalk's and WeCom's markdown type).
    pub fn markdown_texts(&self) -> Vec<String> {
        self.received().iter().map(|b| b["markdown"]["text"].as_str().unwrap().to_string()).collect()
    }

    /// Every request answered so far, accepted or not.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Waits until `n` messages were accepted, then returns them; panics at the deadline.
    pub async fn wait_received(&self, n: usize, within: Duration) -> Vec<Value> {
        self.wait(within, |(_, accepted)| accepted >= n, "messages accepted").await;
        self.received()
    }

    /// Waits until `n` requests were answered, then returns them; panics at the deadline.
    pub async fn wait_requests(&self, n: usize, within: Duration) -> Vec<Seen> {
        self.wait(within, |(answered, _)| answered >= n, "requests answered").await;
        self.requests()
    }

    async fn wait(&self, within: Duration, done: impl Fn((usize, usize)) -> bool, what: &str) {
        let mut rx = self.counts.subscribe();
        let waited = tokio::time::timeout(within, rx.wait_for(|c| done(*c))).await.is_ok();
        assert!(waited, "{what}: only {:?} within {within:?}", *rx.borrow());
    }
}

impl Drop for MockRobot {
    fn drop(&mut self) {
        // `stop` sends the command at once; its future only reports completion.
        drop(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The platform's answer for a code: DingTalk/WeCom `errcode`, Lark `code`.
fn answer(platform: Platform, status: u16, code: i64, msg: &str) -> HttpResponse {
    let body = match (platform, code) {
        (Platform::Lark, 0) => {
            json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"})
        }
        (Platform::Lark, _) => json!({"code": code, "msg": msg, "data": {}}),
        _ => json!({"errcode": code, "errmsg": msg}),
    };
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(body)
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
    counts: web::Data<Counts>,
) -> HttpResponse {
    let mut reply = state.lock().unwrap().script.pop_front();
    if let Some(Reply::Delay(d)) = reply {
        actix_web::rt::time::sleep(d).await;
        reply = None;
    }
    let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut state = state.lock().unwrap();
    let platform = state.platform;
    let (resp, status, code) = match reply {
        Some(Reply::Http { status, retry_after }) => {
            let mut b = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
            if let Some(s) = retry_after {
                b.insert_header(("Retry-After", s.to_string()));
            }
            (b.body(format!("mock HTTP {status}")), status, None)
        }
        Some(Reply::Code(code)) => {
            (answer(platform, 200, code, checks::usual_message(platform, code)), 200, Some(code))
        }
        Some(Reply::CodeMsg(code, msg)) => (answer(platform, 200, code, &msg), 200, Some(code)),
        Some(Reply::Delay(_)) | None => {
            let checked = checks::check(
                &state.token,
                &state.options,
                platform,
                &target,
                content_type.as_deref(),
                &body,
            );
            let rate = state.options.rate_limit;
            let (status, code, msg) = match (checked, rate) {
                (Ok(()), Some(rl)) if !state.limiter.admit(&rl, sent_at(platform, &target, &body)) => {
                    (200, rl.code, checks::usual_message(platform, rl.code).to_string())
                }
                (Ok(()), _) => (200, 0, "ok".to_string()),
                (Err(r), _) => (r.status, r.code, r.msg),
            };
            (answer(platform, status, code, &msg), status, Some(code))
        }
    };
    let accepted = status == 200 && code == Some(0);
    state.seen.push(Seen { target, content_type, body: body.to_vec(), status, code, accepted });
    counts.send_modify(|(answered, ok)| {
        *answered += 1;
        *ok += usize::from(accepted);
    });
    resp
}

/// Asserts that no text was cut and that each build of `builds` (written `#N `) is listed in
/// exactly one of `texts`: every event reached the robot once, on its own or in a summary.
pub fn each_listed_once(texts: &[String], builds: std::ops::Range<u64>) {
    for t in texts {
        assert!(!t.contains("(truncated)"), "a message was cut: {} bytes", t.len());
    }
    for build in builds {
        let tag = format!("#{build} ");
        let n = texts.iter().filter(|t| t.contains(&tag)).count();
        assert_eq!(n, 1, "event {tag} is in {n} messages");
    }
}
