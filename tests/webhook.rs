//! The webhook channel against a mock receiver on a real socket (`tests/support/webhook_sink.rs`):
//! methods, headers, Standard Webhooks signatures across retries, the default body, every
//! failure class, and that no secret is ever printed.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::channels::webhook::Webhook;
use herald::channels::{Attempt, Channel, ChannelDeps, Message, MessageBody, Prepare, Verdict};
use herald::config::{HttpMethod, Mention, WebhookConfig};
use herald::event::Event;
use herald::render::{self, ContextExtras, Renderer};
use herald::secret::{Secret, SecretUrl};
use support::webhook_sink::{Reply, WebhookSink};

const TOKEN: &str = "url-tok-7f3a9c";
const HEADER_SECRET: &str = "Bearer hdr-secret-51d2";
/// base64 of "herald-test-signing-key-0123456"
const WHSEC: &str = "whsec_aGVyYWxkLXRlc3Qtc2lnbmluZy1rZXktMDEyMzQ1Ng==";

fn deps() -> ChannelDeps {
    ChannelDeps {
        renderer: Arc::new(Renderer::new(None).expect("built-in templates")),
        http: reqwest::Client::new(),
    }
}

fn config(url: &str, method: HttpMethod, secret: Option<&str>) -> WebhookConfig {
    let headers = BTreeMap::from([
        ("Authorization".to_string(), Secret::new(HEADER_SECRET)),
        ("X-Team".to_string(), Secret::new("payments")),
    ]);
    WebhookConfig {
        url: SecretUrl::parse(url).unwrap(),
        method,
        headers,
        secret: secret.map(Secret::new),
        content_type: None,
    }
}

fn channel(cfg: WebhookConfig, timeout: Duration) -> Webhook {
    Webhook::new("audit", cfg, timeout, &deps()).expect("valid webhook config")
}

fn sink_channel(sink: &WebhookSink, method: HttpMethod, secret: Option<&str>) -> Webhook {
    channel(config(&sink.url(&format!("/ci?token={TOKEN}")), method, secret), Duration::from_secs(10))
}

fn raw(body: &str) -> Message {
    let body = MessageBody::Raw { body: body.into(), content_type: "application/json".into() };
    Message { body, template_errors: vec![] }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[tokio::test]
async fn every_method_with_its_body_and_headers() {
    let sink = WebhookSink::start(None);
    for method in [HttpMethod::Post, HttpMethod::Put, HttpMethod::Delete, HttpMethod::Get] {
        let out = sink_channel(&sink, method, None).send(&raw(r#"{"n":1}"#), &Attempt::first("d-m")).await;
        assert!(out.is_delivered(), "{method:?}: {out:?}");
        assert_eq!(out.http_status, Some(200));
    }
    let got = sink.requests();
    let methods: Vec<&str> = got.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["POST", "PUT", "DELETE", "GET"]);
    for r in &got {
        assert_eq!(r.target, format!("/ci?token={TOKEN}"), "{}: the query is left as configured", r.method);
        assert_eq!(r.header("authorization"), Some(HEADER_SECRET));
        assert_eq!(r.header("x-team"), Some("payments"));
        assert_eq!(r.header("webhook-signature"), None, "unsigned without a secret");
    }
    for r in &got[..3] {
        assert_eq!(r.body_text(), r#"{"n":1}"#);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert!(got[3].body.is_empty(), "GET sends no body");
    assert_eq!(got[3].header("content-type"), None);
}

/// A receiver that answers 2xx with megabytes: still a delivery. Only the first 64 KiB of an
/// answer are read (`channels::http`, tested there); that does not change the verdict.
#[tokio::test]
async fn a_huge_answer_is_still_a_delivery() {
    let sink = WebhookSink::start(None);
    sink.script([Reply { body: "x".repeat(8 << 20), ..Reply::status(200) }]);
    let out =
        sink_channel(&sink, HttpMethod::Post, None).send(&raw(r#"{"n":1}"#), &Attempt::first("d-big")).await;
    assert!(out.is_delivered(), "{out:?}");
    assert!(out.detail.len() < 1_000, "the detail is a snippet: {} bytes", out.detail.len());
}

#[tokio::test]
async fn signatures_verify_and_the_id_survives_retries() {
    let sink = WebhookSink::start(Some(WHSEC));
    let ch = sink_channel(&sink, HttpMethod::Post, Some(WHSEC));
    let first = Attempt { delivery_id: "dlv-42".into(), number: 1, now: at(1_700_000_000) };
    let retry = Attempt { delivery_id: "dlv-42".into(), number: 2, now: at(1_700_000_030) };
    assert!(ch.send(&raw(r#"{"status":"failure"}"#), &first).await.is_delivered());
    assert!(ch.send(&raw(r#"{"status":"failure"}"#), &retry).await.is_delivered());

    let got = sink.requests();
    assert_eq!(got.iter().map(|r| r.signature_ok).collect::<Vec<_>>(), [Some(true), Some(true)]);
    assert_eq!(got[0].header("webhook-id"), Some("dlv-42"));
    assert_eq!(got[1].header("webhook-id"), Some("dlv-42"));
    assert_eq!(got[0].header("webhook-timestamp"), Some("1700000000"));
    assert_eq!(got[1].header("webhook-timestamp"), Some("1700000030"));
    let sig = |i: usize| got[i].header("webhook-signature").unwrap().to_string();
    assert!(sig(0).starts_with("v1,"));
    assert_ne!(sig(0), sig(1));
}

#[tokio::test]
async fn a_raw_key_signs_with_its_bytes_and_get_signs_the_empty_body() {
    let sink = WebhookSink::start(Some("plain-signing-key"));
    let post = sink_channel(&sink, HttpMethod::Post, Some("plain-signing-key"));
    let get = sink_channel(&sink, HttpMethod::Get, Some("plain-signing-key"));
    assert!(post.send(&raw("{}"), &Attempt::first("d-raw")).await.is_delivered());
    assert!(get.send(&raw("{}"), &Attempt::first("d-get")).await.is_delivered());
    let oks: Vec<Option<bool>> = sink.requests().iter().map(|r| r.signature_ok).collect();
    assert_eq!(oks, [Some(true), Some(true)]);

    // The receiver holding another key rejects the signature.
    let other = WebhookSink::start(Some("another-key"));
    assert!(sink_channel(&other, HttpMethod::Post, Some("plain-signing-key"))
        .send(&raw("{}"), &Attempt::first("d-x"))
        .await
        .is_delivered());
    assert_eq!(other.requests()[0].signature_ok, Some(false));
}

#[tokio::test]
async fn the_default_body_is_the_event_as_json() {
    let sink = WebhookSink::start(None);
    let ch = sink_channel(&sink, HttpMethod::Post, None);
    let event = Event::sample();
    let ctx = render::context(&event, &ContextExtras::default());
    let none = Mention::default();
    let msg = ch.prepare(&Prepare::new(&event, ContextExtras::default(), "default", &none));
    assert!(msg.template_errors.is_empty(), "{:?}", msg.template_errors);
    let MessageBody::Raw { body, content_type } = &msg.body else { panic!("{msg:?}") };
    assert_eq!(content_type, "application/json");

    let sent: serde_json::Value = serde_json::from_str(body).expect("the default body is JSON");
    let want = serde_json::to_value(&event).unwrap();
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&sent[k], v, "field {k}");
    }

    assert!(ch.send(&msg, &Attempt::first("d-default")).await.is_delivered());
    assert_eq!(sink.requests()[0].body_text(), *body);

    assert!(ch.check_templates("default", &ctx).is_empty());
    let errors = ch.check_templates("no-such-template", &ctx);
    assert!(errors.len() == 1 && errors[0].starts_with("body: "), "{errors:?}");
}

#[tokio::test]
async fn failures_are_classified() {
    let sink = WebhookSink::start(None);
    let ch = sink_channel(&sink, HttpMethod::Post, None);
    let retry_later = Reply { retry_after: Some("7".into()), ..Reply::status(429) };
    sink.script([Reply::status(500), retry_later, Reply::status(400), Reply::status(204)]);
    let send = || async { ch.send(&raw("{}"), &Attempt::first("d-fail")).await };

    let out = send().await;
    assert_eq!((out.verdict, out.http_status), (Verdict::Transient { retry_after: None }, Some(500)));
    let out = send().await;
    assert_eq!(out.verdict, Verdict::Transient { retry_after: Some(Duration::from_secs(7)) });
    assert_eq!(out.http_status, Some(429));
    let out = send().await;
    assert_eq!((out.verdict, out.http_status), (Verdict::Permanent, Some(400)));
    let out = send().await;
    assert!(out.is_delivered(), "any 2xx is success: {out:?}");
}

#[tokio::test]
async fn a_slow_receiver_is_a_transient_timeout() {
    let sink = WebhookSink::start(None);
    sink.script([Reply { delay: Duration::from_secs(5), ..Reply::status(200) }]);
    let cfg = config(&sink.url("/slow"), HttpMethod::Post, None);
    let out = channel(cfg, Duration::from_millis(300)).send(&raw("{}"), &Attempt::first("d-slow")).await;
    assert_eq!(out.verdict, Verdict::Transient { retry_after: None }, "{out:?}");
    assert!(out.detail.contains("timed out"), "{}", out.detail);
}

#[tokio::test]
async fn preview_hides_header_values_url_tokens_and_the_signature() {
    let cfg =
        config(&format!("https://audit.example.com/ci?token={TOKEN}&team=pay"), HttpMethod::Put, Some(WHSEC));
    let ch = channel(cfg, Duration::from_secs(1));
    let p = ch.preview(&raw(r#"{"a":1}"#), &Attempt::first("d-preview"));
    assert_eq!(p.method, "PUT");
    assert_eq!(p.url, "https://audit.example.com/ci?token=***&team=pay");
    let header = |name: &str| p.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(header("Authorization"), Some("***"));
    assert_eq!(header("X-Team"), Some("***"));
    assert_eq!(header("webhook-signature"), Some("***"));
    assert_eq!(header("webhook-id"), Some("d-preview"));
    assert_eq!(header("Content-Type"), Some("application/json"));
    assert_eq!(p.body, r#"{"a":1}"#);
    assert_eq!(ch.check_mention(&Mention { all: true, ..Mention::default() }).len(), 1);
}

#[tokio::test]
async fn no_secret_reaches_debug_display_or_errors() {
    let sink = WebhookSink::start(None);
    // A receiver that echoes what it was sent must not make the detail leak it.
    let echo = format!("bad token {TOKEN}, header {HEADER_SECRET}, key {WHSEC}");
    sink.script([
        Reply { body: echo.clone(), ..Reply::status(401) },
        Reply { body: echo, ..Reply::status(503) },
    ]);
    let cfg = config(&sink.url(&format!("/ci?token={TOKEN}")), HttpMethod::Post, Some(WHSEC));
    let ch = channel(cfg.clone(), Duration::from_secs(10));
    let mut printed = vec![format!("{cfg:?}"), format!("{ch:?}"), format!("{}", cfg.url)];
    for _ in 0..2 {
        let out = ch.send(&raw("{}"), &Attempt::first("d-leak")).await;
        assert!(!out.is_delivered());
        printed.push(format!("{out:?}"));
    }
    let refused = Webhook::new(
        "x",
        config("http://127.0.0.1:9/", HttpMethod::Post, None),
        Duration::from_secs(2),
        &deps(),
    )
    .unwrap();
    printed.push(format!("{:?}", refused.send(&raw("{}"), &Attempt::first("d-down")).await));

    let bad_key = config("http://h/", HttpMethod::Post, Some("whsec_!!not-base64-7f3a9c"));
    let bad_scheme = config(&format!("ftp://h/?token={TOKEN}"), HttpMethod::Post, None);
    let mut bad_value = config("http://h/", HttpMethod::Post, None);
    bad_value.headers.insert("X-Key".into(), Secret::new(format!("{TOKEN}\n")));
    for bad in [bad_key, bad_scheme, bad_value] {
        printed.push(
            Webhook::new("x", bad, Duration::from_secs(1), &deps())
                .expect_err("invalid config")
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    for text in &printed {
        for secret in [TOKEN, HEADER_SECRET, "hdr-secret-51d2", WHSEC, "!!not-base64-7f3a9c"] {
            assert!(!text.contains(secret), "{secret:?} leaked: {text}");
        }
    }
}
