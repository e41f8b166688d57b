use serde_json::json;

use super::*;

fn mention(mobiles: &[&str], user_ids: &[&str], all: bool) -> Mention {
    Mention::direct(mobiles, user_ids, all)
}

fn content(body: &Value) -> &str {
    let t = body["msgtype"].as_str().unwrap();
    body[t]["content"].as_str().unwrap()
}

#[test]
fn classify_table() {
    let cases = [
        (0, Verdict::Delivered),
        (-1, Verdict::Transient { retry_after: None }),
        (45009, Verdict::Transient { retry_after: Some(RATE_LIMIT_WAIT) }),
        (93000, Verdict::Permanent),
        (40058, Verdict::Permanent),
        (40008, Verdict::Permanent),
        (44001, Verdict::Permanent),
        (12345, Verdict::Permanent),
    ];
    for (code, want) in cases {
        assert_eq!(classify(code, ""), want, "{code}");
    }
}

#[test]
fn text_mentions_go_in_the_lists() {
    let body = build_body(WecomMsgType::Text, "构建失败", &mention(&["13800001111"], &["wangqing"], true));
    assert_eq!(
        body,
        json!({"msgtype": "text", "text": {
            "content": "构建失败",
            "mentioned_list": ["wangqing", "@all"],
            "mentioned_mobile_list": ["13800001111"],
        }})
    );
    let body = build_body(WecomMsgType::Text, "ok", &Mention::default());
    assert_eq!(body, json!({"msgtype": "text", "text": {"content": "ok"}}));
}

#[test]
fn markdown_mentions_user_ids_in_the_content() {
    let body =
        build_body(WecomMsgType::Markdown, "### Build\nfailed\n", &mention(&["138"], &["a", "b"], true));
    assert_eq!(
        body,
        json!({"msgtype": "markdown", "markdown": {"content": "### Build\nfailed\n\n<@a><@b>"}})
    );
}

#[test]
fn markdown_v2_carries_no_mention() {
    let body = build_body(WecomMsgType::MarkdownV2, "# Build", &mention(&["138"], &["a"], true));
    assert_eq!(body, json!({"msgtype": "markdown_v2", "markdown_v2": {"content": "# Build"}}));
}

#[test]
fn mention_warnings_table() {
    let none = Mention::default();
    let mobile = mention(&["138"], &[], false);
    let user = mention(&[], &["a"], false);
    let all = mention(&[], &[], true);
    // (msgtype, mention, warnings)
    let cases = [
        (WecomMsgType::Text, &mobile, 0),
        (WecomMsgType::Text, &all, 0),
        (WecomMsgType::Markdown, &user, 0),
        (WecomMsgType::Markdown, &mobile, 1),
        (WecomMsgType::Markdown, &all, 1),
        (WecomMsgType::MarkdownV2, &none, 0),
        (WecomMsgType::MarkdownV2, &user, 1),
        (WecomMsgType::MarkdownV2, &all, 1),
    ];
    for (msgtype, m, n) in cases {
        assert_eq!(mention_warnings(msgtype, m).len(), n, "{msgtype:?} {m:?}");
    }
}

#[test]
fn content_stays_within_its_limit() {
    let m = mention(&["13800001111"], &["zhangsan", "lisi"], false);
    let texts = ["构建失败，请检查日志。\n".repeat(2000), "😀 **bold** `code`\n".repeat(2000)];
    let cases = [
        (WecomMsgType::Text, MAX_TEXT_BYTES),
        (WecomMsgType::Markdown, MAX_MARKDOWN_BYTES),
        (WecomMsgType::MarkdownV2, MAX_MARKDOWN_BYTES),
    ];
    for (msgtype, max) in cases {
        for text in &texts {
            let body = build_body(msgtype, text, &m);
            let c = content(&body);
            assert!(c.len() <= max && c.len() > max - 100, "{msgtype:?}: {}", c.len());
            assert!(c.contains(limit::MARKER), "{msgtype:?}");
            if msgtype == WecomMsgType::Markdown {
                assert!(c.ends_with("<@zhangsan><@lisi>"), "{c}");
            }
        }
    }
}
