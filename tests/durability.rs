//! The real `herald` binary on the durable store: a `kill -9` mid-delivery loses nothing, a
//! SIGTERM lets in-flight attempts finish and leaves the rest for the next start, and the
//! admin API and CLI replay dead letters.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::webhook_sink::{Reply, WebhookSink};

const ADMIN: &str = "admin-token-for-tests";

/// A running `herald serve`, killed when dropped so a failing test leaves nothing behind.
struct Herald {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Herald {
    /// The address it listens on (`127.0.0.1:port`).
    fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Waits until its log holds `needle` (after what earlier runs wrote), or fails with the log.
    fn wait_for_log(&self, needle: &str, from: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.get(from..).is_some_and(|t| t.contains(needle)) {
                return;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in the log:\n{text}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A config whose server listens on a port of its own choosing (`start` reads it from the log).
fn write_config(dir: &Path, sink_url: &str) -> PathBuf {
    let path = dir.join("herald.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\nadmin_token = \"{ADMIN}\"\n\
         [delivery]\ndedup_window = \"0s\"\n\
         [channels.sink]\ntype = \"webhook\"\nurl = \"{sink_url}\"\ntimeout_ms = 5000\n\
         [[rules]]\nname = \"all\"\nchannels = [\"sink\"]\n",
        data = dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// How long the log at `path` is: what a new run writes comes after it.
fn log_len(path: &Path) -> usize {
    std::fs::metadata(path).map_or(0, |m| m.len() as usize)
}

/// Starts the binary (its log goes to `herald.log` beside the config), reads the address it
/// bound from its log, and waits for its /healthz. Fails with the log if it exits first. It
/// is killed if the test process dies, too.
async fn start(config: &Path) -> Herald {
    use std::os::unix::process::CommandExt;
    let log_path = config.with_file_name("herald.log");
    let from = log_len(&log_path);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.args(["serve", "--config", config.to_str().unwrap()]).env("HERALD_LOG", "info");
    // SAFETY: prctl is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = command.stdout(Stdio::null()).stderr(log).spawn().expect("herald starts");
    let mut herald = Herald { child, base: String::new(), log: log_path.clone() };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = herald.child.try_wait().unwrap() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("herald exited ({status}) before it answered:\n{text}");
        }
        if herald.base.is_empty() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let addr = text.get(from..).and_then(|t| {
                let line = t.lines().find(|l| l.contains("Herald is listening"))?;
                line.split_whitespace().find_map(|w| w.strip_prefix("addr=")).map(str::to_string)
            });
            if let Some(addr) = addr {
                herald.base = format!("http://{addr}");
            }
        } else if let Ok(resp) = reqwest::get(format!("{}/healthz", herald.base)).await {
            if resp.status() == 200 {
                return herald;
            }
        }
        assert!(Instant::now() < deadline, "herald did not answer /healthz");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn flow_body(build: u64) -> Vec<u8> {
    let raw =
        std::fs::read(format!("{}/tests/fixtures/inbound/flow-task-fail.json", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v["task"]["buildNumber"] = serde_json::json!(build.to_string());
    serde_json::to_vec(&v).unwrap()
}

async fn post_events(base: &str, n: u64) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let resp = client
            .post(format!("{base}/hooks/flow"))
            .header("Content-Type", "application/json")
            .body(flow_body(i))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let v: serde_json::Value = resp.json().await.unwrap();
        ids.push(v["event_id"].as_str().unwrap().to_string());
    }
    ids
}

fn delivered_event_ids(sink: &WebhookSink) -> HashSet<String> {
    sink.requests()
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter_map(|v| v["event_id"].as_str().map(str::to_string))
        .collect()
}

fn wait_all(sink: &WebhookSink, ids: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = delivered_event_ids(sink);
        let missing: Vec<&String> = ids.iter().filter(|id| !got.contains(*id)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{} of {} events never arrived", missing.len(), ids.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM and waits for a clean exit (status 0) within 30 s.
fn terminate(herald: &mut Herald) {
    signal(herald, "TERM");
    exits_cleanly(herald);
}

/// Sends `SIG<name>`.
fn signal(herald: &Herald, name: &str) {
    let pid = herald.child.id().to_string();
    assert!(Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success());
}

/// Waits for a clean exit (status 0) within 30 s.
fn exits_cleanly(herald: &mut Herald) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = herald.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "herald did not stop on its signal");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "a graceful stop exits 0: {status:?}");
}

/// `GET /api/deliveries{path}` with the admin token, as JSON.
async fn admin_get(herald: &Herald, path: &str) -> serde_json::Value {
    let url = format!("{}/api/deliveries{path}", herald.base);
    let resp = reqwest::Client::new().get(url).bearer_auth(ADMIN).send().await.unwrap();
    resp.json().await.unwrap()
}

/// How many times each event reached the sink.
fn arrivals(sink: &WebhookSink) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in sink.requests() {
        if let Some(id) = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["event_id"].as_str().map(str::to_string))
        {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_loses_nothing() {
    let sink = WebhookSink::start(None);
    // Every answer is slow, so attempts are in flight (sent, not answered) when the process
    // dies; and more events are accepted than the worker sends at once (128), so some have not
    // been sent at all.
    sink.script((0..200).map(|_| Reply { delay: Duration::from_secs(5), ..Reply::status(200) }));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sink.url("/ci"));
    let mut herald = start(&config).await;
    let ids = post_events(&herald.base, 200).await;
    sink.wait_for(1, Duration::from_secs(20));
    herald.child.kill().unwrap(); // SIGKILL
    herald.child.wait().unwrap();
    let before = arrivals(&sink);
    assert!(before.len() < ids.len(), "everything was sent before the kill; the test proves nothing");

    let herald = start(&config).await;
    wait_all(&sink, &ids, Duration::from_secs(60));
    // Attempts in flight at the kill were never answered: they are sent again.
    let after = arrivals(&sink);
    let resent = before.keys().filter(|id| after[*id] >= 2).count();
    assert_eq!(resent, before.len(), "every attempt cut off by the kill is made again");
    drop(herald);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_attempts_and_keeps_the_rest() {
    let sink = WebhookSink::start(None);
    // Slow answers: the worker falls behind, so at SIGTERM some attempts are in flight and
    // some deliveries have not been tried.
    sink.script((0..300).map(|_| Reply { delay: Duration::from_secs(2), ..Reply::status(200) }));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sink.url("/ci"));
    let mut herald = start(&config).await;
    let ids = post_events(&herald.base, 300).await;
    sink.wait_for(1, Duration::from_secs(20));
    terminate(&mut herald);

    let sent = arrivals(&sink).len();
    assert!(sent < ids.len(), "everything was sent before SIGTERM; the test proves nothing");

    let herald = start(&config).await;
    wait_all(&sink, &ids, Duration::from_secs(60));
    // In-flight attempts finished and were recorded before the exit, so none is repeated.
    let twice: Vec<(String, usize)> = arrivals(&sink).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "attempts finished before the stop were made again: {twice:?}");
    drop(herald);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_like_sigterm_lets_a_webhook_being_received_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for name in ["INT", "TERM"] {
        let sink = WebhookSink::start(None);
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &sink.url("/ci"));
        let mut herald = start(&config).await;
        // A sender half-way through its body when the signal comes (Ctrl-C is SIGINT).
        let body = flow_body(7);
        let (first, rest) = body.split_at(body.len() / 2);
        let mut conn = tokio::net::TcpStream::connect(herald.addr()).await.unwrap();
        let head = format!(
            "POST /hooks/flow HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(first).await.unwrap();
        // Time for the server to take the connection (one it had not would be refused, and
        // the test fail, not pass).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let from = log_len(&herald.log);
        signal(&herald, name);
        // The signal has been handled, and the worker is finishing this connection.
        herald.wait_for_log("graceful worker shutdown; finishing 1 connections", from);
        conn.write_all(rest).await.unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 202"), "SIG{name}: {answer}");
        let event_id = answer.split("\"event_id\":\"").nth(1).unwrap().split('"').next().unwrap().to_string();
        exits_cleanly(&mut herald);
        // Stored before the 202, so delivered by now or by the next start.
        let herald = start(&config).await;
        wait_all(&sink, &[event_id], Duration::from_secs(20));
        drop(herald);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_cut_off_by_the_shutdown_deadline_is_recorded_and_made_again() {
    let sink = WebhookSink::start(None);
    // Two answers that would come long after the worker's grace at shutdown (8 s), within the
    // channel's timeout; every later answer is at once.
    sink.script((0..2).map(|_| Reply { delay: Duration::from_secs(40), ..Reply::status(200) }));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sink.url("/ci"));
    let text = std::fs::read_to_string(&config).unwrap().replace("timeout_ms = 5000", "timeout_ms = 60000");
    std::fs::write(&config, text).unwrap();
    let mut herald = start(&config).await;
    let ids = post_events(&herald.base, 2).await;
    sink.wait_for(2, Duration::from_secs(20));
    terminate(&mut herald);
    let log = std::fs::read_to_string(dir.path().join("herald.log")).unwrap();
    assert_eq!(log.matches("cut off by shutdown").count(), 2, "{log}");

    let herald = start(&config).await;
    wait_all(&sink, &ids, Duration::from_secs(20));
    let listing = admin_get(&herald, "").await;
    let deliveries = listing["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{listing}");
    for d in deliveries {
        let id = d["id"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let detail = loop {
            let detail = admin_get(&herald, &format!("/{id}")).await;
            if detail["state"] == "delivered" {
                break detail;
            }
            assert!(Instant::now() < deadline, "not delivered after the restart: {detail}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let history = detail["history"].as_array().unwrap();
        assert_eq!(history.len(), 2, "{detail}");
        assert_eq!(history[0]["outcome"], "interrupted", "{detail}");
        let why = history[0]["detail"].as_str().unwrap();
        assert!(why.starts_with("cut off by shutdown after "), "{why}");
        assert_eq!(history[1]["outcome"], "delivered", "{detail}");
        assert_eq!(detail["attempts"], 1, "the interrupted attempt is listed, not counted: {detail}");
    }
    drop(herald);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_through_the_api_and_the_cli() {
    let sink = WebhookSink::start(None);
    sink.script((0..3).map(|_| Reply::status(400))); // permanent: dead at once
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sink.url("/ci?key=sink-secret-key"));
    let herald = start(&config).await;
    let ids = post_events(&herald.base, 3).await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/deliveries{path}", herald.base);

    let unauthorized = client.get(api("?state=dead")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let v: serde_json::Value = admin_get(&herald, "?state=dead").await;
        if v["deliveries"].as_array().unwrap().len() == 3 {
            break v;
        }
        assert!(Instant::now() < deadline, "deliveries did not die: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first = dead["deliveries"][0]["id"].as_str().unwrap().to_string();
    let detail: serde_json::Value = admin_get(&herald, &format!("/{first}")).await;
    assert_eq!(detail["state"], "dead");
    assert_eq!(detail["history"][0]["http_status"], 400);
    let all_output = format!("{dead}{detail}");
    assert!(!all_output.contains("sink-secret-key"), "a secret reached the API: {all_output}");

    // One through the API...
    let resp = client.post(api(&format!("/{first}/retry"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["retried"], 1);
    // ...the rest through the CLI, beside the running gateway.
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["deliveries", "retry", "--config", config.to_str().unwrap(), "--state", "dead"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("retried 2"));
    // 3 refused requests, then the 3 replays.
    sink.wait_for(6, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: serde_json::Value = client
            .get(api("?state=delivered"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["deliveries"].as_array().unwrap().len() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "replayed deliveries were not delivered: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered_event_ids(&sink).len(), ids.len());

    let listed = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["deliveries", "list", "--config", config.to_str().unwrap(), "--state", "delivered", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("--json prints JSON");
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 3);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("sink-secret-key"));
    drop(herald);
}
