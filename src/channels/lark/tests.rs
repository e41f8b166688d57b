use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::*;

fn mention(mobiles: &[&str], user_ids: &[&str], all: bool) -> Mention {
    Mention::direct(mobiles, user_ids, all)
}

fn content<'a>(title: &'a str, text: &'a str, build_url: Option<&'a str>) -> Content<'a> {
    Content { title, text, link: build_url.map(Link::build), status: Status::Failure }
}

#[test]
fn sign_matches_the_reference_vectors() {
    let cases = [
        ("demo", 1_599_360_473, "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="),
        ("dGhpcyBpcyBhIGtleQ==", 1_716_283_459, "8EyY+xxfJvzWjZQpdc2mgvQFaG7lF5nbxl7RITyMkJU="),
        ("secret", 1_700_000_000, "fiWS2+gh28DOydAv7hzONH/mDn9+b1Y4Y5ivXWXy8vA="),
    ];
    for (secret, ts, want) in cases {
        assert_eq!(sign(secret, ts), want, "{secret}");
    }
}

#[test]
fn dingtalk_algorithm_gives_a_different_signature() {
    // The DingTalk algorithm on the same inputs: key = secret, message = "ts\nsecret".
    let wrong = "3BWdjQHZMX4/CIYl7owzVxhehnLfrlh+ZlT/+Y1uzvE=";
    assert_eq!(super::super::dingtalk::sign("dGhpcyBpcyBhIGtleQ==", 1_716_283_459), wrong);
    assert_ne!(sign("dGhpcyBpcyBhIGtleQ==", 1_716_283_459), wrong);
}

#[test]
fn request_puts_timestamp_string_and_sign_first_in_the_body() {
    let url = url::Url::parse("https://open.feishu.cn/open-apis/bot/v2/hook/tok-1").unwrap();
    let attempt = Attempt {
        delivery_id: "d".into(),
        number: 2,
        now: UNIX_EPOCH + Duration::from_millis(1_599_360_473_999),
    };
    let stored = json!({"msg_type": "text", "content": {"text": "hi"}});
    let req = request(&url, Some(&Secret::new("demo")), &stored, &attempt);
    assert_eq!(
        String::from_utf8(req.body.clone()).unwrap(),
        r#"{"timestamp":"1599360473","sign":"l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8=","msg_type":"text","content":{"text":"hi"}}"#
    );
    assert_eq!(req.url, url, "nothing is added to the URL");
    assert_eq!(req.preview(&[]).url, "https://open.feishu.cn/open-apis/bot/v2/hook/***");
    let unsigned = request(&url, None, &stored, &attempt);
    assert_eq!(serde_json::from_slice::<Value>(&unsigned.body).unwrap(), stored);
}

#[test]
fn read_answer_table() {
    let cases = [
        (
            json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}),
            Some((0, "success")),
        ),
        (json!({"Extra": null, "StatusCode": 0, "StatusMessage": "success"}), Some((0, "success"))),
        (json!({"code": 19021, "msg": "sign match fail"}), Some((19021, "sign match fail"))),
        (json!({"code": 19024, "StatusCode": 0}), Some((19024, ""))),
        (json!({"code": "x"}), None),
        (json!({"ok": true}), None),
    ];
    for (v, want) in cases {
        let got = read_answer(&v).map(|a| (a.code, a.msg));
        assert_eq!(got, want.map(|(c, m)| (c, m.to_string())), "{v}");
    }
}

#[test]
fn classify_table() {
    let cases = [
        (0, Verdict::Delivered),
        (11232, Verdict::Transient { retry_after: Some(RATE_LIMIT_WAIT) }),
        (9499, Verdict::Permanent),
        (19001, Verdict::Permanent),
        (19021, Verdict::Permanent),
        (19022, Verdict::Permanent),
        (19024, Verdict::Permanent),
        (424242, Verdict::Permanent),
    ];
    for (code, want) in cases {
        assert_eq!(classify(code, ""), want, "{code}");
    }
}

#[test]
fn header_colours() {
    let cases = [
        (Status::Success, "green"),
        (Status::Failure, "red"),
        (Status::Unstable, "orange"),
        (Status::Aborted, "grey"),
        (Status::Running, "blue"),
        (Status::Started, "blue"),
        (Status::Waiting, "grey"),
        (Status::Skipped, "grey"),
        (Status::Unknown, "grey"),
    ];
    for (status, colour) in cases {
        assert_eq!(header_colour(status), colour);
    }
}

#[test]
fn interactive_card_shape() {
    let c = content("Build #42 failed", "stage **test**", Some("https://ci.example.com/42"));
    let body = build_body(LarkMsgType::Interactive, Some("CI"), &c, &mention(&["138"], &["ou_x"], true));
    assert_eq!(
        body,
        json!({"msg_type": "interactive", "card": {
            "config": {"wide_screen_mode": true},
            "header": {"title": {"tag": "plain_text", "content": "CI Build #42 failed"}, "template": "red"},
            "elements": [
                {"tag": "div", "text": {"tag": "lark_md",
                    "content": "stage **test**\n\n<at id=ou_x></at> <at id=all></at>\n\nCI"}},
                {"tag": "action", "actions": [{"tag": "button",
                    "text": {"tag": "plain_text", "content": "View build"},
                    "type": "primary", "url": "https://ci.example.com/42"}]},
            ],
        }})
    );
    let c = content("t", "x", None);
    let body = build_body(LarkMsgType::Interactive, None, &c, &Mention::default());
    assert_eq!(body["card"]["elements"].as_array().unwrap().len(), 1, "no button without a build URL");
}

#[test]
fn post_shape() {
    let c = content("Build failed", "stage test\ncommit abc", Some("https://ci.example.com/42"));
    let body = build_body(LarkMsgType::Post, Some("CI"), &c, &mention(&[], &["ou_x"], true));
    assert_eq!(
        body,
        json!({"msg_type": "post", "content": {"post": {"zh_cn": {
            "title": "CI Build failed",
            "content": [
                [{"tag": "text", "text": "stage test"}],
                [{"tag": "text", "text": "commit abc"}],
                [{"tag": "text", "text": ""}],
                [{"tag": "text", "text": "CI"}],
                [{"tag": "a", "text": "View build", "href": "https://ci.example.com/42"}],
                [{"tag": "at", "user_id": "ou_x"}, {"tag": "at", "user_id": "all", "user_name": "所有人"}],
            ],
        }}}})
    );
}

#[test]
fn text_shape() {
    let body = build_body(
        LarkMsgType::Text,
        None,
        &content("", "build failed", None),
        &mention(&[], &["ou_x"], true),
    );
    assert_eq!(
        body,
        json!({"msg_type": "text", "content": {
            "text": "build failed\n\n<at user_id=\"ou_x\"></at> <at user_id=\"all\">所有人</at>"}})
    );
}

#[test]
fn huge_messages_fit_and_keep_mentions_and_keyword() {
    let m = mention(&[], &["ou_abc"], true);
    let texts = ["构建失败，请检查日志。\n".repeat(3000), "\"q\"\n\n".repeat(5000), "😀".repeat(20000)];
    for msgtype in [LarkMsgType::Interactive, LarkMsgType::Post, LarkMsgType::Text] {
        for t in &texts {
            let body = build_body(msgtype, Some("KW"), &content("标题", t, Some("https://e.x/1")), &m);
            let s = serde_json::to_string(&body).unwrap();
            assert!(s.len() <= MAX_BODY_BYTES && s.len() > MAX_BODY_BYTES - 1000, "{msgtype:?}: {}", s.len());
            assert!(s.contains("truncated") && s.contains("KW") && s.contains("ou_abc"), "{msgtype:?}");
        }
    }
}

#[test]
fn a_refusal_with_an_http_error_status_keeps_the_platform_code() {
    // Lark answers a malformed request with HTTP 400 and code 9499 (5xx never reaches `judge`).
    let resp = |status: u16, body: &str| crate::channels::http::HttpResponse {
        status,
        retry_after: None,
        body: body.as_bytes().to_vec(),
    };
    let out = robot::judge(
        &resp(400, r#"{"code":9499,"msg":"Bad Request","data":{}}"#),
        read_answer,
        classify,
        &[],
    );
    assert_eq!((out.verdict, out.code, out.http_status), (Verdict::Permanent, Some(9499), Some(400)));
    assert!(out.detail.contains("Bad Request"), "{}", out.detail);
    let out =
        robot::judge(&resp(200, r#"{"code":11232,"msg":"frequency limited"}"#), read_answer, classify, &[]);
    assert!(matches!(out.verdict, Verdict::Transient { .. }), "{out:?}");
}
