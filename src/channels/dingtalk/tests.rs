use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::*;

const VECTOR_SECRET: &str = "SEC045ae0433d866d0019a47f441d3da2c3c5862b8a8c46f8ab1de83a6fb0b9a54c";

fn attempt_at(ms: u64) -> Attempt {
    Attempt { delivery_id: "d-1".into(), number: 1, now: UNIX_EPOCH + Duration::from_millis(ms) }
}

fn mention(mobiles: &[&str], user_ids: &[&str], all: bool) -> Mention {
    Mention::direct(mobiles, user_ids, all)
}

#[test]
fn sign_matches_the_reference_vectors() {
    let cases = [
        (VECTOR_SECRET, 1_735_693_200_000, "BSe0QzwtBdzTlEnmaVptmDApFF/EyDdmvpE/DajHtoE="),
        ("secret", 1_700_000_000_000, "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY="),
        ("this is secret", 1_700_000_000_000, "sSFWELbV2YwjdDQhWZwTcWlX5BWUx5J6TPpsZmuPii0="),
    ];
    for (secret, ts, want) in cases {
        assert_eq!(sign(secret, ts), want, "{secret}");
    }
}

#[test]
fn signed_url_encodes_the_signature_exactly_once() {
    let url = url::Url::parse("https://oapi.dingtalk.com/robot/send?access_token=XXX").unwrap();
    let secret = Secret::new(VECTOR_SECRET);
    let req = request(&url, Some(&secret), &json!({"msgtype": "text"}), &attempt_at(1_735_693_200_000));
    assert_eq!(
        req.url.as_str(),
        "https://oapi.dingtalk.com/robot/send?access_token=XXX&timestamp=1735693200000\
         &sign=BSe0QzwtBdzTlEnmaVptmDApFF%2FEyDdmvpE%2FDajHtoE%3D"
    );
    let req = request(&url, Some(&Secret::new("secret")), &json!({}), &attempt_at(1_700_000_000_000));
    assert!(req.url.as_str().ends_with("&sign=OuzzJR5%2BxZ4%2FEYwqtNt6sMYZQMTa%2FHEGvc9miJe7XzY%3D"));
}

#[test]
fn request_carries_msg_uuid_and_no_signature_without_secret() {
    let url = url::Url::parse("https://oapi.dingtalk.com/robot/send?access_token=XXX").unwrap();
    let req = request(&url, None, &json!({"msgtype": "text"}), &attempt_at(1));
    assert_eq!(req.url.as_str(), "https://oapi.dingtalk.com/robot/send?access_token=XXX");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body, json!({"msgtype": "text", "msgUuid": "d-1"}));
    let preview = req.preview(&[]);
    assert_eq!(preview.url, "https://oapi.dingtalk.com/robot/send?access_token=***");
}

#[test]
fn classify_table() {
    let transient = Verdict::Transient { retry_after: None };
    let rate = Verdict::Transient { retry_after: Some(RATE_LIMIT_WAIT) };
    let cases = [
        (0, "ok", Verdict::Delivered),
        (-1, "系统繁忙", transient.clone()),
        (130101, "send too fast, exceed 20 times per minute", rate.clone()),
        (410100, "发送速度太快而限流", rate),
        (310000, "invalid timestamp", transient),
        (310000, "keywords not in content", Verdict::Permanent),
        (310000, "sign not match, more: [...]", Verdict::Permanent),
        (310000, "ip 203.0.113.9 not in whitelist", Verdict::Permanent),
        (
            310000,
            "description:机器人发送签名不匹配;solution:请确认签名和生成签名的时间戳…",
            Verdict::Permanent,
        ),
        (300001, "token is not exist", Verdict::Permanent),
        (300005, "token is not exist", Verdict::Permanent),
        (400013, "群已被解散", Verdict::Permanent),
        (400101, "access_token不存在", Verdict::Permanent),
        (400102, "机器人已停用", Verdict::Permanent),
        (400105, "不支持的消息类型", Verdict::Permanent),
        (400106, "机器人不存在", Verdict::Permanent),
        (430101, "含有不安全的外链", Verdict::Permanent),
        (430102, "合适的文本", Verdict::Permanent),
        (430103, "合适的图片", Verdict::Permanent),
        (430104, "消息内容中含有不合适的内容", Verdict::Permanent),
        (460101, "message too long, exceed 20000 bytes", Verdict::Permanent),
        (101002, "message is too long", Verdict::Permanent),
        (999999, "something new", Verdict::Permanent),
    ];
    for (code, msg, want) in cases {
        assert_eq!(classify(code, msg), want, "{code} {msg}");
    }
}

#[test]
fn text_message_mentions_in_field_and_text() {
    let m = mention(&["13800000000"], &["zhangsan"], true);
    let content = Content { title: "ignored", text: "Build #42 failed", link: None };
    let body = build_body(DingtalkMsgType::Text, None, &content, &m);
    assert_eq!(
        body,
        json!({
            "msgtype": "text",
            "text": {"content": "Build #42 failed\n\n@13800000000 @zhangsan"},
            "at": {"atMobiles": ["13800000000"], "atUserIds": ["zhangsan"], "isAtAll": true},
        })
    );
}

#[test]
fn markdown_message_with_keyword_in_title_and_text() {
    let m = mention(&["13800000000"], &[], false);
    let content = Content { title: "Build #42 failed", text: "### Build #42\nfailed", link: None };
    let body = build_body(DingtalkMsgType::Markdown, Some("CI"), &content, &m);
    assert_eq!(
        body,
        json!({
            "msgtype": "markdown",
            "markdown": {"title": "CI Build #42 failed", "text": "### Build #42\nfailed\n\n@13800000000\n\nCI"},
            "at": {"atMobiles": ["13800000000"], "atUserIds": [], "isAtAll": false},
        })
    );
    // Already there: nothing is added.
    let content = Content { title: "[CI] Build", text: "CI build failed", link: None };
    let body = build_body(DingtalkMsgType::Markdown, Some("CI"), &content, &Mention::default());
    assert_eq!(body["markdown"], json!({"title": "[CI] Build", "text": "CI build failed"}));
    assert!(body.get("at").is_none());
}

#[test]
fn action_card_jumps_to_the_build_and_carries_no_mention() {
    let m = mention(&["13800000000"], &[], true);
    let content = Content {
        title: "Build failed",
        text: "### Build",
        link: Some(Link::build("https://ci.example.com/42")),
    };
    let body = build_body(DingtalkMsgType::ActionCard, None, &content, &m);
    assert_eq!(
        body,
        json!({
            "msgtype": "actionCard",
            "actionCard": {
                "title": "Build failed", "text": "### Build", "btnOrientation": "0",
                "singleTitle": "View build", "singleURL": "https://ci.example.com/42",
            },
        })
    );
    // Without a build page, the button opens the pipeline, and says so.
    let to_pipeline =
        Content { link: Some(Link::pipeline("https://ci.example.com/job/x/")), ..content.clone() };
    let body = build_body(DingtalkMsgType::ActionCard, None, &to_pipeline, &m);
    assert_eq!(body["actionCard"]["singleTitle"], "View pipeline");
    assert_eq!(body["actionCard"]["singleURL"], "https://ci.example.com/job/x/");
    // No link for the button it requires: the same title and text as markdown, no mentions.
    let content = Content { link: None, ..content };
    let body = build_body(DingtalkMsgType::ActionCard, None, &content, &m);
    assert_eq!(
        body,
        json!({"msgtype": "markdown", "markdown": {"title": "Build failed", "text": "### Build"}})
    );
}

#[test]
fn huge_messages_fit_and_keep_mentions_and_keyword() {
    let m = mention(&["13800000000"], &["lisi"], false);
    let texts = [
        "构建失败，请检查日志。\n".repeat(3000),
        "\"quoted\" \\ back\tslash\n".repeat(3000),
        format!("```\n{}```", "😀 log line\n".repeat(3000)),
    ];
    for msgtype in [DingtalkMsgType::Text, DingtalkMsgType::Markdown, DingtalkMsgType::ActionCard] {
        for text in &texts {
            let title = "标题".repeat(500);
            let content =
                Content { title: &title, text, link: Some(Link::build("https://ci.example.com/42")) };
            let body = build_body(msgtype, Some("CI-KEY"), &content, &m);
            let len = serde_json::to_vec(&body).unwrap().len();
            assert!(len <= MAX_BODY_BYTES && len > MAX_BODY_BYTES - 500, "{msgtype:?}: {len}");
            let obj = &body[msgtype.as_str()];
            let text = obj.get("text").or(obj.get("content")).and_then(Value::as_str).unwrap();
            assert!(text.contains(limit::MARKER), "{msgtype:?}");
            assert!(text.ends_with("CI-KEY"), "{msgtype:?}");
            if msgtype != DingtalkMsgType::ActionCard {
                assert!(text.contains("@13800000000 @lisi"), "{msgtype:?}");
            }
            if let Some(title) = obj.get("title").and_then(Value::as_str) {
                assert!(title.starts_with("CI-KEY ") && title.len() <= MAX_TITLE_BYTES + 10, "{title}");
            }
        }
    }
}
