//! What a message carries: a user template that fails at run time falls back to the default, and a
//! huge message is cut within every platform's limit with its mentions intact.

use std::collections::HashMap;

use herald::channels::MessageBody;
use herald::delivery::RetryPolicy;
use serde_json::{json, Value};

use super::fleet::Fleet;
use super::{
    by_channel, fixture, quick_retry, sink_requests, Herald, KEYWORD, LARK_USER, MARKER, MOBILE,
    SMTP_PASSWORD, WAIT, WECOM_USER,
};
use crate::support::webhook_sink::WebhookSink;

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

/// `flow-task-fail.json` with `task.message` replaced.
fn flow_fail_with_message(message: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("flow-task-fail.json")).unwrap();
    v["task"]["message"] = json!(message);
    serde_json::to_vec(&v).unwrap()
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
