//! The HTTP API over real sockets: every answer SPEC §3 names, tokens, body limits, and that
//! Herald keeps serving after bad input; the admin API's token, parameters and refusals; and
//! that what a request stores reaches the worker without being read back.

use std::sync::Arc;
use std::time::Duration;

use herald::app::{self, Options};
use herald::clock::{Clock, SystemClock};
use herald::config;
use herald::outbox::memory::MemoryOutbox;
use herald::outbox::{AttemptRecord, DeliveryState, Next, Outbox};
use serde_json::Value;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 4096
admin_token = "admin-token-1"

[sources.jenkins]
token = "hook-token-1"

[sources.jenkins-status]
token = "hook-token-2"

[channels.stdout]
type = "console"

[channels.failures]
type = "console"
template = "default"

[[rules]]
name = "all"
channels = ["stdout"]

[[rules]]
name = "failures"
channels = ["failures", "stdout"]
[rules.when]
status = ["failure"]
"#;

struct Server {
    base: String,
    outbox: Arc<MemoryOutbox>,
    running: Option<app::Running>,
    client: reqwest::Client,
}

impl Server {
    async fn start() -> Server {
        Server::start_with(app::BODY_TIMEOUT).await
    }

    async fn start_with(body_timeout: Duration) -> Server {
        let cfg = config::parse(CONFIG, &|_| None).expect("test config is valid");
        let outbox = Arc::new(MemoryOutbox::new());
        let opts = Options {
            outbox: outbox.clone(),
            clock: Arc::new(SystemClock),
            retry: None,
            signals: false,
            body_timeout,
        };
        let running = app::start(&cfg, opts).await.expect("server starts");
        Server {
            base: format!("http://{}", running.addr),
            outbox,
            running: Some(running),
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// An admin API call with this `Authorization` header (if any): the status and JSON body.
    async fn admin(&self, method: reqwest::Method, path: &str, auth: Option<&str>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text:?}"));
        (status, body)
    }

    async fn healthy(&self) {
        let resp = self.client.get(format!("{}/healthz", self.base)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok");
    }

    async fn stop(mut self) {
        self.running.take().unwrap().stop().await;
    }
}

/// `/healthz` asks the store for a write: while another process holds the SQLite store's write
/// lock, it answers 503 within its 2 s limit (the store itself waits 5 s on a lock before it
/// gives up), and 200 once the lock is gone.
#[tokio::test]
async fn healthz_answers_503_while_the_store_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(herald::outbox::sqlite::SqliteOutbox::open(dir.path()).unwrap());
    let cfg = config::parse(CONFIG, &|_| None).expect("test config is valid");
    let opts = Options { outbox: store.clone(), signals: false, ..Options::default() };
    let running = app::start(&cfg, opts).await.expect("server starts");
    let url = format!("http://{}/healthz", running.addr);
    let get = || async {
        let resp = reqwest::get(&url).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    assert_eq!(get().await, (200, "ok".to_string()));

    let other = rusqlite::Connection::open(store.path()).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, body) = get().await;
    assert_eq!(status, 503, "{body}");
    let error = serde_json::from_str::<Value>(&body).unwrap()["error"].as_str().unwrap().to_string();
    assert_eq!(error, "the store cannot write: no answer within 2 s");

    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(get().await, (200, "ok".to_string()));
    running.stop().await;
}

/// A sender that sends its headers and part of its body, then stalls: 408 once the body
/// timeout has passed, nothing is stored, and Herald keeps serving.
#[tokio::test]
async fn a_body_that_stalls_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start_with(Duration::from_millis(300)).await;
    let mut conn = tokio::net::TcpStream::connect(s.base.trim_start_matches("http://")).await.unwrap();
    let head = "POST /hooks/flow HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{\"task\":";
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("}") {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed without an answer: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("the body did not arrive within 0.3 s of the headers"), "{text}");
    assert!(s.outbox.all().is_empty(), "nothing is stored from a body that never arrived");
    s.healthy().await;
    s.stop().await;
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/inbound/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// An attempt the platform refused for good.
fn refused() -> AttemptRecord {
    AttemptRecord {
        at: 1,
        outcome: "permanent".into(),
        http_status: Some(400),
        code: None,
        detail: "refused".into(),
        latency_ms: 1,
        pause_ms: None,
    }
}

/// Waits, with a deadline, until every stored delivery has left the pending states.
async fn settled(outbox: &MemoryOutbox) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let all = outbox.all();
        if !all.is_empty() && all.iter().all(|d| d.state == DeliveryState::Delivered) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "deliveries did not settle: {all:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn accepted_deliveries_reach_the_worker_in_memory_and_are_not_read_back_from_the_store() {
    let s = Server::start().await;
    let template: Value = serde_json::from_slice(&fixture("flow-task-fail.json")).unwrap();
    let posts = (0..100).map(|build| {
        let mut event = template.clone();
        event["task"]["buildNumber"] = build.to_string().into();
        s.post("/hooks/flow", "application/json", serde_json::to_vec(&event).unwrap())
    });
    for (status, body) in futures_util::future::join_all(posts).await {
        assert_eq!(status, 202, "{body}");
    }
    settled(&s.outbox).await;
    // Each event stored a delivery to "stdout" and one to "failures", leased in the same
    // commit and handed over in memory.
    assert_eq!(s.outbox.all().len(), 200);
    assert_eq!(s.outbox.leased_count(), 0, "handed-over deliveries were leased from the store again");

    // A delivery put back in the store (a retry, a replay) is leased from it.
    let first = s.outbox.all()[0].id.clone();
    s.outbox.finish(&first, refused(), Next::Dead("refused".into())).await.unwrap();
    let (status, body) =
        s.admin(reqwest::Method::POST, &format!("/api/deliveries/{first}/retry"), Some(ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    settled(&s.outbox).await;
    assert_eq!(s.outbox.leased_count(), 1);
    s.stop().await;
}

#[tokio::test]
async fn accepted_events_answer_202_with_routes_and_are_delivered() {
    let s = Server::start().await;
    let (status, body) = s.post("/hooks/flow", "application/json", fixture("flow-task-fail.json")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "failure");
    assert!(body["event_id"].as_str().is_some_and(|id| !id.is_empty()));
    // "all" routes to stdout; "failures" adds its own channel; stdout is sent to once.
    assert_eq!(
        body["routes"],
        serde_json::json!([{"rule": "all", "channel": "stdout"}, {"rule": "failures", "channel": "failures"}])
    );
    settled(&s.outbox).await;
    let all = s.outbox.all();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|d| d.event_id == body["event_id"].as_str().unwrap()));
    s.stop().await;
}

#[tokio::test]
async fn format_detection_on_post_hooks() {
    let s = Server::start().await;
    let (status, body) = s.post("/hooks", "application/json", fixture("buildbot-build-finished.json")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "success");
    let (status, body) = s.post("/hooks", "application/json", br#"{"hello": "world"}"#.to_vec()).await;
    assert_eq!(status, 422, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn bad_inputs_get_the_specified_codes_and_change_nothing() {
    let s = Server::start().await;
    let bearer = "Bearer hook-token-1";
    // (path, content type, body, authorization, expected status, expected text in the error)
    type Case<'a> = (&'a str, &'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("/hooks/flow", "application/json", b"{\"event\": \"task\",".to_vec(), None, 400, "line 1"),
        ("/hooks/jenkins", "application/xml", b"<job><name>x</job>".to_vec(), Some(bearer), 400, ""),
        ("/hooks/flow", "application/json", b"{\"event\": \"task\"}".to_vec(), None, 422, "task"),
        ("/hooks/flow", "application/json", b"[1, 2]".to_vec(), None, 422, ""),
        // Well-formed, but XML where the format takes JSON: the wrong kind, not malformed.
        ("/hooks/flow", "application/xml", fixture("jenkins-tikal-started.xml"), None, 422, "XML"),
        ("/hooks/buildbot", "application/xml", fixture("jenkins-tikal-started.xml"), None, 422, "<job>"),
        ("/hooks/gitlabz", "application/json", b"{}".to_vec(), None, 404, "unknown format \"gitlabz\""),
        // "generic" is a type of source, not one: the answer lists what this gateway accepts.
        (
            "/hooks/generic",
            "application/json",
            b"{}".to_vec(),
            None,
            404,
            "accepts: alertmanager, buildbot, flow, github,",
        ),
        ("/hooks/jenkins", "application/json", fixture("jenkins-tikal-started.json"), None, 401, "token"),
        (
            "/hooks/jenkins",
            "application/json",
            fixture("jenkins-tikal-started.json"),
            Some("Bearer nope"),
            401,
            "wrong token",
        ),
        (
            "/hooks/jenkins?token=also-wrong",
            "application/json",
            fixture("jenkins-tikal-started.json"),
            Some("Bearer nope"),
            401,
            "wrong token",
        ),
        ("/hooks/flow", "application/json", vec![b' '; 5000], None, 413, "4096"),
    ];
    for (path, ct, body, auth, want, needle) in cases {
        let mut req = s.client.post(format!("{}{path}", s.base)).header("Content-Type", ct).body(body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let json: Value = resp.json().await.expect("error bodies are JSON");
        assert_eq!(status, want, "{path}: {json}");
        let msg = json["error"].as_str().expect("an error field");
        assert!(msg.contains(needle), "{path}: {msg:?} lacks {needle:?}");
        assert!(!msg.contains("hook-token-1"), "token echoed: {msg}");
        s.healthy().await;
    }
    assert!(s.outbox.all().is_empty(), "a rejected request stored something");
    s.stop().await;
}

#[tokio::test]
async fn a_chunked_oversize_body_is_refused_with_413() {
    let s = Server::start().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp = s.client.post(format!("{}/hooks/flow", s.base)).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    s.healthy().await;
    s.stop().await;
}

#[tokio::test]
async fn a_compressed_body_is_refused_with_415() {
    let s = Server::start().await;
    let resp = s
        .client
        .post(format!("{}/hooks/flow", s.base))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "Content-Encoding \"gzip\" is not accepted: send the body uncompressed");
    assert!(s.outbox.all().is_empty());
    s.healthy().await;
    s.stop().await;
}

#[tokio::test]
async fn tokens_work_in_the_query_or_as_bearer_and_never_reach_the_event() {
    let s = Server::start().await;
    let (status, body) = s
        .post("/hooks/jenkins?token=hook-token-1", "application/json", fixture("jenkins-tikal-started.json"))
        .await;
    assert_eq!(status, 202, "{body}");
    // jenkins-status GET: the data is the query string, and the token rides along in it.
    let query = String::from_utf8(fixture("jenkins-jobstatus-start-get.query.txt")).unwrap();
    let url = format!("{}/hooks/jenkins-status?{}&token=hook-token-2", s.base, query.trim());
    let resp = s.client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "started");
    // The plugin's GET form appends `?<its parameters>` to the URL it was given, token and all.
    let url = format!("{}/hooks/jenkins-status?token=hook-token-2?{}", s.base, query.trim());
    let resp = s.client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "started");
    // The right ?token= is enough beside a Bearer header the sender adds of its own (the Job
    // Status plugin sends one, configured in Jenkins).
    let resp = s
        .client
        .post(format!("{}/hooks/jenkins-status?token=hook-token-2", s.base))
        .header("Authorization", "Bearer test-token-configured-in-jenkins")
        .header("Content-Type", "application/json")
        .body(fixture("jenkins-jobstatus-complete-success.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    settled(&s.outbox).await;
    for d in s.outbox.all() {
        let stored = serde_json::to_string(&d.message).unwrap();
        assert!(!stored.contains("hook-token"), "token reached a message: {stored}");
    }
    s.stop().await;
}

#[tokio::test]
async fn only_jenkins_status_accepts_other_methods() {
    let s = Server::start().await;
    let resp = s
        .client
        .put(format!("{}/hooks/jenkins-status", s.base))
        .header("Authorization", "Bearer hook-token-2")
        .header("Content-Type", "application/json")
        .body(fixture("jenkins-jobstatus-complete-success.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = s.client.delete(format!("{}/hooks/flow", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let resp = s.client.get(format!("{}/nope", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    s.stop().await;
}

#[tokio::test]
async fn a_repeated_event_is_stored_but_not_sent_again() {
    let s = Server::start().await;
    let post = |body: Vec<u8>, ct: &'static str| {
        s.client
            .post(format!("{}/hooks/jenkins", s.base))
            .header("Authorization", "Bearer hook-token-1")
            .header("Content-Type", ct)
            .body(body)
            .send()
    };
    // The same build's result, once as JSON and once as XML (as a sender retry or Jenkins'
    // COMPLETED-then-FINALIZED would repeat it).
    let first: Value = post(fixture("jenkins-tikal-completed-success.json"), "application/json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(first.get("duplicate_of").is_none(), "{first}");
    assert_eq!(first["routes"].as_array().unwrap().len(), 1);
    let resp = post(fixture("jenkins-tikal-completed-success.xml"), "application/xml").await.unwrap();
    assert_eq!(resp.status(), 202);
    let second: Value = resp.json().await.unwrap();
    assert_eq!(second["duplicate_of"], first["event_id"]);
    assert_eq!(second["routes"], serde_json::json!([]));
    settled(&s.outbox).await;
    assert_eq!(s.outbox.all().len(), 1, "only the first event's delivery exists");
    // A different status of the same build is news.
    let (status, third) = s
        .post("/hooks/jenkins?token=hook-token-1", "application/json", fixture("jenkins-tikal-started.json"))
        .await;
    assert_eq!(status, 202);
    assert!(third.get("duplicate_of").is_none());

    // A running build's step messages are each news; the same one again is not.
    let step = |text: &str| {
        let mut v: Value = serde_json::from_slice(&fixture("jenkins-jobstatus-running.json")).unwrap();
        v["body"] = Value::from(text);
        serde_json::to_vec(&v).unwrap()
    };
    let mut answers = Vec::new();
    for text in ["deploying to staging", "deploying to prod", "deploying to prod"] {
        let (status, answer) =
            s.post("/hooks/jenkins-status?token=hook-token-2", "application/json", step(text)).await;
        assert_eq!(status, 202, "{answer}");
        answers.push(answer);
    }
    assert!(
        answers[0].get("duplicate_of").is_none() && answers[1].get("duplicate_of").is_none(),
        "{answers:?}"
    );
    assert_eq!(answers[2]["duplicate_of"], answers[1]["event_id"]);
    s.stop().await;
}

const ADMIN: &str = "Bearer admin-token-1";

/// Bad admin queries, each with the start of the error it must get once the token is right.
const BAD_ADMIN_QUERIES: &[(&str, &str)] = &[
    ("/api/deliveries?limit=abc", "limit must be a whole number from 1 to 1000, not \"abc\""),
    ("/api/deliveries?limit=-1", "limit must be a whole number from 1 to 1000, not \"-1\""),
    ("/api/deliveries?limit=1.5", "limit must be a whole number from 1 to 1000, not \"1.5\""),
    ("/api/deliveries?limit=0", "limit must be a whole number from 1 to 1000, not \"0\""),
    ("/api/deliveries?limit=1001", "limit must be a whole number from 1 to 1000"),
    ("/api/deliveries?limit=99999999999999999999999", "limit must be a whole number from 1 to 1000"),
    ("/api/deliveries?state=dead&state=retrying", "state is given more than once"),
    (
        "/api/deliveries?state=gone",
        "state must be one of pending, retrying, delivered, dead, merged, not \"gone\"",
    ),
    ("/api/deliveries?stat=dead", "unknown parameter \"stat\" (the parameters are state, channel, limit)"),
    ("/api/deliveries/retry?limit=abc", "limit does not apply to a retry"),
    ("/api/deliveries/retry?state=delivered", "state must be dead or retrying, not \"delivered\""),
    ("/api/deliveries/retry?channel=&channel=x", "channel is given more than once"),
];

fn method_of(path: &str) -> reqwest::Method {
    if path.starts_with("/api/deliveries/retry") {
        reqwest::Method::POST
    } else {
        reqwest::Method::GET
    }
}

#[tokio::test]
async fn the_admin_token_is_checked_before_the_query() {
    let s = Server::start().await;
    for (path, _) in BAD_ADMIN_QUERIES {
        for (auth, want) in [
            (None, "missing Authorization: Bearer <admin token>"),
            (Some("Bearer not-the-token"), "wrong admin token"),
            (Some("Basic admin-token-1"), "missing Authorization: Bearer <admin token>"),
        ] {
            let (status, body) = s.admin(method_of(path), path, auth).await;
            assert_eq!((status, body["error"].as_str()), (401, Some(want)), "{path} with {auth:?}: {body}");
            assert!(!body.to_string().contains("token-1"), "a token echoed: {body}");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_admin_queries_get_a_json_400_naming_the_parameter_and_its_values() {
    let s = Server::start().await;
    for (path, want) in BAD_ADMIN_QUERIES {
        let (status, body) = s.admin(method_of(path), path, Some(ADMIN)).await;
        assert_eq!(status, 400, "{path}: {body}");
        let msg = body["error"].as_str().unwrap_or_else(|| panic!("{path}: no error field: {body}"));
        assert!(msg.starts_with(want), "{path}: {msg:?} does not start with {want:?}");
    }
    s.healthy().await;
    s.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_accepted_in_any_case() {
    let s = Server::start().await;
    for auth in
        ["Bearer admin-token-1", "bearer admin-token-1", "BEARER admin-token-1", "bEaReR admin-token-1"]
    {
        let (status, body) = s.admin(reqwest::Method::GET, "/api/deliveries", Some(auth)).await;
        assert_eq!(status, 200, "{auth}: {body}");
        assert!(body["deliveries"].is_array(), "{auth}: {body}");
    }
    for auth in ["bearer admin-token-2", "BEARER ", "bearer", "admin-token-1"] {
        let (status, body) = s.admin(reqwest::Method::GET, "/api/deliveries", Some(auth)).await;
        assert_eq!(status, 401, "{auth}: {body}");
        assert!(!body.to_string().contains("admin-token"), "a token echoed: {body}");
    }
    s.stop().await;
}

#[tokio::test]
async fn admin_limits_states_and_channels_at_their_edges() {
    let s = Server::start().await;
    let (status, _) = s.post("/hooks/flow", "application/json", fixture("flow-task-fail.json")).await;
    assert_eq!(status, 202);
    settled(&s.outbox).await;
    let count = |body: &Value| body["deliveries"].as_array().map(Vec::len);
    // (query, rows): two delivered deliveries, one to each channel.
    for (query, rows) in [
        ("", 2),
        ("?limit=1", 1),
        ("?limit=1000", 2),
        ("?state=delivered", 2),
        ("?state=dead", 0),
        ("?channel=failures", 1),
        ("?channel=nowhere", 0),
        ("?state=delivered&channel=stdout&limit=5", 1),
        // An empty value is the same as none.
        ("?state=&channel=&limit=", 2),
        ("?state=delivered&channel=&limit=", 2),
    ] {
        let (status, body) =
            s.admin(reqwest::Method::GET, &format!("/api/deliveries{query}"), Some(ADMIN)).await;
        assert_eq!((status, count(&body)), (200, Some(rows)), "{query}: {body}");
    }
    s.stop().await;
}

#[tokio::test]
async fn retrying_an_unknown_or_unfinished_delivery_is_refused() {
    let s = Server::start().await;
    let (status, _) = s.post("/hooks/flow", "application/json", fixture("flow-task-fail.json")).await;
    assert_eq!(status, 202);
    settled(&s.outbox).await;
    let [delivered, dead] = [0, 1].map(|i| s.outbox.all()[i].id.clone());
    let refusal = refused();
    s.outbox.finish(&dead, refusal.clone(), Next::Dead("refused".into())).await.unwrap();
    let retry = |id: &str| format!("/api/deliveries/{id}/retry");

    let (status, body) = s.admin(reqwest::Method::POST, &retry("nope"), Some(ADMIN)).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("no delivery \"nope\"")), "{body}");
    let (status, body) = s.admin(reqwest::Method::POST, &retry(&delivered), Some(ADMIN)).await;
    let want =
        format!("delivery \"{delivered}\" is delivered: only dead or retrying deliveries can be retried");
    assert_eq!((status, body["error"].as_str()), (409, Some(want.as_str())), "{body}");
    let (status, body) = s.admin(reqwest::Method::POST, &retry(&dead), None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(s.outbox.get(&dead).unwrap().0.state, DeliveryState::Dead);

    let (status, body) = s.admin(reqwest::Method::POST, &retry(&dead), Some(ADMIN)).await;
    assert_eq!((status, body["retried"].as_u64()), (200, Some(1)), "{body}");
    settled(&s.outbox).await;

    // A retrying delivery the worker holds for its next attempt is left to that attempt. The
    // retry is due an hour on, and a lease taken as of then stands in for the worker.
    let hour = 3_600_000;
    let later = SystemClock.now_ms() + hour;
    s.outbox.finish(&dead, refusal.clone(), Next::RetryAt(later)).await.unwrap();
    let leased = s.outbox.lease(later, 10, hour).await.unwrap();
    assert_eq!(leased.iter().map(|d| &d.id).collect::<Vec<_>>(), [&dead]);
    let (status, body) = s.admin(reqwest::Method::POST, &retry(&dead), Some(ADMIN)).await;
    let want = format!("delivery \"{dead}\" is leased for an attempt now: retry once the attempt ends");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(status == 409 && error.starts_with(&want), "{status} {body}");
    assert_eq!(s.outbox.get(&dead).unwrap().0.state, DeliveryState::Retrying);
    s.stop().await;
}
