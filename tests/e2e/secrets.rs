//! Secrets: no token, signing secret or password reaches an API answer, an error, a printable form
//! or the logs.

use std::sync::{Arc, Mutex, OnceLock};

use herald::channels::Attempt;
use herald::outbox::DeliveryState;

use super::fleet::Fleet;
use super::{
    fixture, quick_retry, sink_requests, AUDIT_TOKEN, AUDIT_URL_TOKEN, DT_SECRET, FLOW_HOOK_TOKEN,
    LARK_SECRET,
};
use crate::support::robots::Reply;
use crate::support::webhook_sink;

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
