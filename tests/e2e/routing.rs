//! Which routes an event takes: two rules naming one robot merge into one message, and `/hooks`
//! detects every supported inbound format.

use std::collections::HashMap;

use herald::channels::MessageBody;
use herald::delivery::RetryPolicy;
use herald::outbox::DeliveryState;
use serde_json::{json, Value};

use super::{by_channel, eventually, fixture, sink_requests, Herald, DT_SECRET, WAIT};
use crate::support::robots::{MockOptions, MockRobot, Platform};
use crate::support::webhook_sink::WebhookSink;

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
