//! The newer senders over real HTTP, with the manifest's own headers: GitHub's signature and
//! ping, GitLab's token, Alertmanager's several alerts, a named generic source, and the IP
//! allowlist. A refused request stores nothing.

use std::sync::Arc;

use herald::app::{self, Options};
use herald::config;
use herald::outbox::memory::MemoryOutbox;
use serde_json::Value;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[delivery]
dedup_window = "10m"

[sources.github]
secret = "gateway-test-secret"

[sources.gitlab]
token = "gateway-test-token"

[sources.buildbot]
allow_ips = ["10.0.0.0/8"]

[sources.myci]
type = "generic"
status = "/state"
status_map = { ok = "success", broken = "failure" }
pipeline = "/project/name"
build_number = "/build/id"

[channels.stdout]
type = "console"

[[rules]]
name = "all"
channels = ["stdout"]
"#;

struct Server {
    base: String,
    outbox: Arc<MemoryOutbox>,
    running: app::Running,
    client: reqwest::Client,
}

async fn start() -> Server {
    let cfg = config::parse(CONFIG, &|_| None).expect("valid config");
    let outbox = Arc::new(MemoryOutbox::new());
    let running = app::start(&cfg, Options { outbox: outbox.clone(), signals: false, ..Options::default() })
        .await
        .expect("starts");
    Server { base: format!("http://{}", running.addr), outbox, running, client: reqwest::Client::new() }
}

fn manifest_case(file: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let dir = format!("{}/tests/fixtures/inbound", env!("CARGO_MANIFEST_DIR"));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}/manifest.json")).unwrap()).unwrap();
    let case =
        manifest["cases"].as_array().unwrap().iter().find(|c| c["file"] == file).expect("a manifest case");
    let headers = case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    (std::fs::read(format!("{dir}/{file}")).unwrap(), headers)
}

impl Server {
    async fn post(&self, path: &str, body: Vec<u8>, headers: &[(String, String)]) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.base)).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn github_signatures_are_verified_over_the_raw_body() {
    let s = start().await;
    let (body, headers) = manifest_case("github-workflow-run-completed.json");
    let (status, v) = s.post("/hooks/github", body.clone(), &headers).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["status"], "failure");
    // Detected from X-GitHub-Event too; the same X-GitHub-Delivery is a duplicate.
    let (status, v) = s.post("/hooks", body.clone(), &headers).await;
    assert_eq!(status, 202, "{v}");
    assert!(v["duplicate_of"].is_string(), "a redelivery is absorbed: {v}");
    // One byte changed: the signature no longer matches.
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|b| *b == b'7').unwrap();
    tampered[pos] = b'8';
    let (status, v) = s.post("/hooks/github", tampered, &headers).await;
    assert_eq!(status, 401);
    assert!(v["error"].as_str().unwrap().contains("X-Hub-Signature-256"), "{v}");
    let unsigned: Vec<(String, String)> =
        headers.iter().filter(|(k, _)| !k.starts_with("X-Hub")).cloned().collect();
    assert_eq!(s.post("/hooks/github", body, &unsigned).await.0, 401);
    assert_eq!(s.outbox.all().len(), 1, "only the first, genuine delivery is stored");
    s.running.stop().await;
}

#[tokio::test]
async fn github_ping_answers_200_and_sends_nothing() {
    use hmac::Mac;
    let s = start().await;
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"gateway-test-secret").unwrap();
    mac.update(&body);
    let sig: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let headers = vec![
        ("X-GitHub-Event".to_string(), "ping".to_string()),
        ("X-Hub-Signature-256".to_string(), format!("sha256={sig}")),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    let (status, v) = s.post("/hooks/github", body, &headers).await;
    assert_eq!(status, 200, "{v}");
    assert!(s.outbox.all().is_empty());
    s.running.stop().await;
}

#[tokio::test]
async fn gitlab_tokens_are_checked() {
    let s = start().await;
    let (body, headers) = manifest_case("gitlab-pipeline-success-with-warnings.json");
    let (status, v) = s.post("/hooks/gitlab", body.clone(), &headers).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["status"], "unstable");
    let wrong: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| if k == "X-Gitlab-Token" { (k.clone(), "nope".into()) } else { (k.clone(), v.clone()) })
        .collect();
    let (status, v) = s.post("/hooks/gitlab", body, &wrong).await;
    assert_eq!(status, 401);
    assert!(!v.to_string().contains("gateway-test-token"), "the expected token is never echoed");
    s.running.stop().await;
}

#[tokio::test]
async fn alertmanager_alerts_each_become_an_event() {
    let s = start().await;
    let (body, headers) = manifest_case("alertmanager-firing.json");
    let mut payload: Value = serde_json::from_slice(&body).unwrap();
    let alerts = payload["alerts"].as_array().unwrap().len() + 1;
    let mut second = payload["alerts"][0].clone();
    second["fingerprint"] = Value::from("0123456789abcdef");
    second["labels"]["pipeline"] = Value::from("orders-api");
    payload["alerts"].as_array_mut().unwrap().push(second);
    let (status, v) = s.post("/hooks", serde_json::to_vec(&payload).unwrap(), &headers).await;
    assert_eq!(status, 202, "{v}");
    let events = v["events"].as_array().expect("every event is listed");
    assert_eq!(events.len(), alerts);
    assert_eq!(s.outbox.all().len(), alerts, "one message per alert");
    s.running.stop().await;
}

#[tokio::test]
async fn a_named_generic_source_maps_any_json() {
    let s = start().await;
    let body = br#"{"state": "broken", "project": {"name": "mobile-app"}, "build": {"id": "77"}}"#.to_vec();
    let json = vec![("Content-Type".to_string(), "application/json".to_string())];
    let (status, v) = s.post("/hooks/myci", body, &json).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["status"], "failure");
    let (status, v) = s.post("/hooks/myci", br#"{"project": {}}"#.to_vec(), &json).await;
    assert_eq!(status, 422);
    assert!(v["error"].as_str().unwrap().contains("/state"), "{v}");
    s.running.stop().await;
}

#[tokio::test]
async fn peers_outside_the_allowlist_are_refused() {
    let s = start().await;
    let (body, headers) = manifest_case("buildbot-build-finished.json");
    let (status, v) = s.post("/hooks/buildbot", body, &headers).await;
    assert_eq!(status, 401, "127.0.0.1 is not in 10.0.0.0/8: {v}");
    assert!(v["error"].as_str().unwrap().contains("allow_ips"));
    assert!(s.outbox.all().is_empty());
    s.running.stop().await;
}
