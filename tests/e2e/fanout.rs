//! One Flow failure fans out to every kind of channel, each signed, shaped and mentioned as its
//! platform needs.

use herald::delivery::RetryPolicy;
use serde_json::{json, Value};

use super::fleet::{fleet_routes, Fleet};
use super::{
    by_channel, eventually, fixture, sink_requests, AUDIT_TOKEN, KEYWORD, LARK_USER, MOBILE, SMTP_PASSWORD,
    SMTP_USER, WAIT, WECOM_USER,
};

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
