//! The DingTalk, WeCom and Lark channels against the mock robots of `support::robots`, on real
//! sockets: delivery with signature, keyword and mentions checked by the robot; the platform's
//! refusals answered with HTTP 200; rate limits, 5xx and timeouts; a huge message within limits.
//!
//! Each channel is built with `herald::channels::build` from its config, with the built-in
//! templates, as `herald serve` builds it.

mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use herald::channels::{self, Attempt, Channel, ChannelDeps, Message, Outcome, Prepare, Verdict};
use herald::config::{ChannelCommon, ChannelConfig, ChannelSpec, Mention};
use herald::config::{DingtalkConfig, DingtalkMsgType, LarkConfig, LarkMsgType, WecomConfig, WecomMsgType};
use herald::event::{Event, Status};
use herald::render::{self, ContextExtras, Renderer};
use herald::secret::{Secret, SecretUrl};
use serde_json::Value;
use support::robots::{MockOptions, MockRobot, Platform, Reply, MOCK_RULE_CODE};

const DT_SECRET: &str = "SEC045ae0433d866d0019a47f441d3da2c3c5862b8a8c46f8ab1de83a6fb0b9a54c";
const LARK_SECRET: &str = "lark-signing-secret-7c1e";
const KEYWORD: &str = "HeraldCI";
const WAIT: Duration = Duration::from_secs(10);

/// One renderer for every test: loading the built-ins is the slow part of building a channel.
fn renderer() -> Arc<Renderer> {
    static RENDERER: OnceLock<Arc<Renderer>> = OnceLock::new();
    RENDERER.get_or_init(|| Arc::new(Renderer::new(None).expect("built-in templates"))).clone()
}

fn channel(spec: ChannelSpec, timeout_ms: u64) -> Arc<dyn Channel> {
    let deps = ChannelDeps { renderer: renderer(), http: reqwest::Client::new() };
    let cfg = ChannelConfig {
        name: "robot".into(),
        common: ChannelCommon { timeout_ms, ..ChannelCommon::default() },
        spec,
    };
    channels::build(&cfg, &deps).expect("a valid channel")
}

fn url(robot: &MockRobot) -> SecretUrl {
    SecretUrl::parse(&robot.url()).unwrap()
}

fn dingtalk(
    robot: &MockRobot,
    secret: Option<&str>,
    keyword: bool,
    msgtype: DingtalkMsgType,
) -> Arc<dyn Channel> {
    let cfg = DingtalkConfig {
        url: url(robot),
        secret: secret.map(Secret::new),
        keyword: keyword.then(|| KEYWORD.to_string()),
        msgtype,
    };
    channel(ChannelSpec::Dingtalk(cfg), 5_000)
}

fn wecom(robot: &MockRobot, msgtype: WecomMsgType) -> Arc<dyn Channel> {
    channel(ChannelSpec::Wecom(WecomConfig { url: url(robot), msgtype }), 5_000)
}

fn lark(robot: &MockRobot, secret: Option<&str>, keyword: bool, msgtype: LarkMsgType) -> Arc<dyn Channel> {
    let cfg = LarkConfig {
        url: url(robot),
        secret: secret.map(Secret::new),
        keyword: keyword.then(|| KEYWORD.to_string()),
        msgtype,
    };
    channel(ChannelSpec::Lark(cfg), 5_000)
}

fn event(message: Option<String>) -> Event {
    let mut e = Event::new("jenkins", Status::Failure, "FAILURE", true);
    e.pipeline = Some("payments-api".into());
    e.build_number = Some(42);
    e.build_url = Some("https://ci.example.com/job/payments-api/42/".into());
    e.branch = Some("main".into());
    e.message = message;
    e
}

fn mention(mobiles: &[&str], user_ids: &[&str], all: bool) -> Mention {
    Mention::direct(mobiles, user_ids, all)
}

fn prepare(ch: &dyn Channel, event: &Event, mention: &Mention) -> Message {
    let msg = ch.prepare(&Prepare::new(event, ContextExtras::default(), "default", mention));
    assert_eq!(msg.template_errors, Vec::<String>::new());
    msg
}

/// Prepares the default event and sends it once.
async fn send(ch: &dyn Channel, mention: &Mention) -> Outcome {
    ch.send(&prepare(ch, &event(None), mention), &Attempt::first("delivery-1")).await
}

fn assert_no_leak(out: &Outcome, robot: &MockRobot, secrets: &[&str]) {
    let all = format!("{out:?}");
    assert!(!all.contains(robot.token()), "the robot token leaked: {all}");
    assert!(secrets.iter().all(|s| !all.contains(s)), "a secret leaked: {all}");
}

#[tokio::test]
async fn dingtalk_delivers_every_type_signed_with_keyword_and_mentions() {
    let robot = MockRobot::start(Platform::Dingtalk, MockOptions::signed(DT_SECRET).with_keyword(KEYWORD));
    let m = mention(&["13800000000"], &["zhangsan"], false);
    for msgtype in [DingtalkMsgType::Markdown, DingtalkMsgType::Text, DingtalkMsgType::ActionCard] {
        let ch = dingtalk(&robot, Some(DT_SECRET), true, msgtype);
        let out = send(ch.as_ref(), &m).await;
        assert!(out.is_delivered(), "{msgtype:?}: {out:?}");
        assert_eq!((out.code, out.http_status), (Some(0), Some(200)));
    }
    let got = robot.wait_received(3, WAIT).await;
    assert_eq!(got[0]["msgUuid"], "delivery-1");
    assert!(got[0]["markdown"]["title"].as_str().unwrap().contains(KEYWORD));
    assert!(got[0]["markdown"]["text"].as_str().unwrap().contains("@13800000000 @zhangsan"));
    assert_eq!(got[0]["at"]["atMobiles"][0], "13800000000");
    assert!(got[1]["text"]["content"].as_str().unwrap().contains(KEYWORD));
    assert_eq!(got[2]["actionCard"]["singleURL"], "https://ci.example.com/job/payments-api/42/");
    assert!(got[2].get("at").is_none());
    let seen = robot.requests();
    assert!(seen.iter().all(|s| s.query("sign").is_some() && s.query("timestamp").is_some()));
}

#[tokio::test]
async fn dingtalk_refusals_are_permanent_with_the_platform_code() {
    let robot = MockRobot::start(Platform::Dingtalk, MockOptions::signed(DT_SECRET).with_keyword(KEYWORD));
    // (channel secret, channel keyword, expected errmsg)
    let cases = [
        (Some("SECwrong"), true, "sign not match"),
        (None, true, "sign not match"),
        (Some(DT_SECRET), false, "keywords not in content"),
    ];
    for (secret, keyword, errmsg) in cases {
        let out =
            send(dingtalk(&robot, secret, keyword, DingtalkMsgType::Markdown).as_ref(), &Mention::default())
                .await;
        assert_eq!(
            (out.verdict.clone(), out.code, out.http_status),
            (Verdict::Permanent, Some(310000), Some(200))
        );
        assert!(out.detail.contains(errmsg), "{out:?}");
        assert_no_leak(&out, &robot, &[DT_SECRET]);
    }
    // A clock two hours behind: DingTalk says "invalid timestamp", which a later attempt may fix.
    let ch = dingtalk(&robot, Some(DT_SECRET), true, DingtalkMsgType::Text);
    let msg = prepare(ch.as_ref(), &event(None), &Mention::default());
    let skewed =
        Attempt { now: std::time::SystemTime::now() - Duration::from_secs(7200), ..Attempt::first("d-2") };
    let out = ch.send(&msg, &skewed).await;
    assert_eq!(
        (out.verdict, out.code),
        (Verdict::Transient { retry_after: None }, Some(310000)),
        "{}",
        out.detail
    );
    assert!(robot.received().is_empty());
}

#[tokio::test]
async fn dingtalk_transient_failures_and_a_retry_with_a_fresh_signature() {
    let robot = MockRobot::start(Platform::Dingtalk, MockOptions::signed(DT_SECRET));
    let ch = dingtalk(&robot, Some(DT_SECRET), false, DingtalkMsgType::Markdown);
    let msg = prepare(ch.as_ref(), &event(None), &Mention::default());
    robot.script(1, Reply::Code(130101));
    robot.script(1, Reply::http(500));
    let first = ch.send(&msg, &Attempt::first("d-7")).await;
    assert_eq!(first.verdict, Verdict::Transient { retry_after: Some(Duration::from_secs(600)) });
    assert_eq!(first.code, Some(130101));
    let second = ch.send(&msg, &Attempt { number: 2, ..Attempt::first("d-7") }).await;
    assert_eq!((second.verdict, second.http_status), (Verdict::Transient { retry_after: None }, Some(500)));
    let third = ch.send(&msg, &Attempt { number: 3, ..Attempt::first("d-7") }).await;
    assert!(third.is_delivered(), "{third:?}");
    let seen = robot.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.json().unwrap()["msgUuid"] == "d-7"));
}

#[tokio::test]
async fn a_robot_slower_than_the_timeout_is_transient() {
    for platform in [Platform::Dingtalk, Platform::Wecom, Platform::Lark] {
        let robot = MockRobot::start(platform, MockOptions::default());
        robot.script(1, Reply::Delay(Duration::from_secs(5)));
        let spec = match platform {
            Platform::Dingtalk => ChannelSpec::Dingtalk(DingtalkConfig {
                url: url(&robot),
                secret: None,
                keyword: None,
                msgtype: DingtalkMsgType::Text,
            }),
            Platform::Wecom => {
                ChannelSpec::Wecom(WecomConfig { url: url(&robot), msgtype: WecomMsgType::Text })
            }
            Platform::Lark => ChannelSpec::Lark(LarkConfig {
                url: url(&robot),
                secret: None,
                keyword: None,
                msgtype: LarkMsgType::Text,
            }),
        };
        let ch = channel(spec, 300);
        let out = send(ch.as_ref(), &Mention::default()).await;
        assert_eq!(out.verdict, Verdict::Transient { retry_after: None }, "{platform:?}");
        assert!(out.detail.contains("timed out"), "{out:?}");
        assert_no_leak(&out, &robot, &[]);
    }
}

#[tokio::test]
async fn huge_messages_stay_within_every_limit() {
    let text = "构建日志：测试失败 😀 **bold** [link](https://e.x/a) `code`\n".repeat(2000);
    let ev = event(Some(text));
    let m = mention(&["13800000000"], &["ou_x"], false);
    let dt = MockRobot::start(Platform::Dingtalk, MockOptions::signed(DT_SECRET).with_keyword(KEYWORD));
    let wc = MockRobot::start(Platform::Wecom, MockOptions::default());
    let lk = MockRobot::start(Platform::Lark, MockOptions::signed(LARK_SECRET).with_keyword(KEYWORD));
    let mut chans = Vec::new();
    for t in [DingtalkMsgType::Markdown, DingtalkMsgType::Text, DingtalkMsgType::ActionCard] {
        chans.push(dingtalk(&dt, Some(DT_SECRET), true, t));
    }
    for t in [WecomMsgType::Markdown, WecomMsgType::Text, WecomMsgType::MarkdownV2] {
        chans.push(wecom(&wc, t));
    }
    for t in [LarkMsgType::Interactive, LarkMsgType::Post, LarkMsgType::Text] {
        chans.push(lark(&lk, Some(LARK_SECRET), true, t));
    }
    for ch in chans {
        let m = if ch.check_mention(&m).is_empty() { m.clone() } else { Mention::default() };
        let msg = prepare(ch.as_ref(), &ev, &m);
        let out = ch.send(&msg, &Attempt::first("big")).await;
        assert!(out.is_delivered(), "{:?}: {out:?}", ch.kind());
    }
    let all: Vec<_> = [&dt, &wc, &lk].iter().flat_map(|r| r.requests()).collect();
    assert!(all.iter().all(|s| s.body.len() <= 20_000));
    let bodies: Vec<Value> = all.iter().filter_map(|s| s.json()).collect();
    assert!(bodies.iter().all(|b| b.to_string().contains("(truncated)")), "every message was cut");
}

#[tokio::test]
async fn wecom_delivers_with_mentions_and_classifies_refusals() {
    let robot = MockRobot::start(Platform::Wecom, MockOptions::default());
    let text = wecom(&robot, WecomMsgType::Text);
    let out = send(text.as_ref(), &mention(&["13800001111"], &["wangqing"], true)).await;
    assert!(out.is_delivered(), "{out:?}");
    let md = wecom(&robot, WecomMsgType::Markdown);
    assert!(send(md.as_ref(), &mention(&[], &["wangqing"], false)).await.is_delivered());
    let got = robot.received();
    assert_eq!(got[0]["text"]["mentioned_list"], serde_json::json!(["wangqing", "@all"]));
    assert_eq!(got[0]["text"]["mentioned_mobile_list"], serde_json::json!(["13800001111"]));
    assert!(got[1]["markdown"]["content"].as_str().unwrap().ends_with("<@wangqing>"));

    robot.script(1, Reply::Code(45009));
    let out = send(md.as_ref(), &Mention::default()).await;
    assert_eq!(out.verdict, Verdict::Transient { retry_after: Some(Duration::from_secs(60)) });

    let wrong = MockRobot::start(Platform::Wecom, MockOptions::default());
    let stale = channel(
        ChannelSpec::Wecom(WecomConfig {
            url: SecretUrl::parse(&wrong.url().replace(wrong.token(), "stale-key-0001")).unwrap(),
            msgtype: WecomMsgType::Markdown,
        }),
        5_000,
    );
    let out = send(stale.as_ref(), &Mention::default()).await;
    assert_eq!(
        (out.verdict.clone(), out.code, out.http_status),
        (Verdict::Permanent, Some(93000), Some(200))
    );
    assert!(!out.detail.contains("stale-key-0001"), "{out:?}");
}

#[tokio::test]
async fn lark_delivers_every_type_signed_with_keyword_and_mentions() {
    let robot = MockRobot::start(Platform::Lark, MockOptions::signed(LARK_SECRET).with_keyword(KEYWORD));
    let m = mention(&[], &["ou_abc"], true);
    for msgtype in [LarkMsgType::Interactive, LarkMsgType::Post, LarkMsgType::Text] {
        let out = send(lark(&robot, Some(LARK_SECRET), true, msgtype).as_ref(), &m).await;
        assert!(out.is_delivered(), "{msgtype:?}: {out:?}");
    }
    let got = robot.wait_received(3, WAIT).await;
    assert!(got.iter().all(|b| b["timestamp"].is_string() && b["sign"].is_string()));
    assert_eq!(got[0]["card"]["header"]["template"], "red");
    let card = got[0]["card"]["elements"][0]["text"]["content"].as_str().unwrap();
    assert!(card.contains("<at id=ou_abc></at>") && card.contains("<at id=all></at>"), "{card}");
    let post = got[1]["content"]["post"]["zh_cn"]["content"].as_array().unwrap();
    assert_eq!(post.last().unwrap()[0], serde_json::json!({"tag": "at", "user_id": "ou_abc"}));
    assert!(got[2]["content"]["text"].as_str().unwrap().contains("<at user_id=\"ou_abc\"></at>"));
}

#[tokio::test]
async fn a_build_url_a_robot_cannot_open_gets_no_link_and_the_message_still_goes() {
    // Lark refuses a message whose link is not valid; a sender may send a relative URL.
    let robot = MockRobot::start(Platform::Lark, MockOptions::default());
    let mut e = event(None);
    e.build_url = Some("job/payments/42/".into());
    for msgtype in [LarkMsgType::Interactive, LarkMsgType::Post, LarkMsgType::Text] {
        let ch = lark(&robot, None, false, msgtype);
        let out = ch.send(&prepare(ch.as_ref(), &e, &Mention::default()), &Attempt::first("d")).await;
        assert!(out.is_delivered(), "{msgtype:?}: {out:?}");
    }
    let ding = MockRobot::start(Platform::Dingtalk, MockOptions::default());
    let ch = dingtalk(&ding, None, false, DingtalkMsgType::ActionCard);
    let msg = prepare(ch.as_ref(), &e, &Mention::default());
    assert!(ch.send(&msg, &Attempt::first("d")).await.is_delivered());
    let got = ding.wait_received(1, WAIT).await;
    assert_eq!(got[0]["msgtype"], "markdown", "an actionCard needs its button's link: {}", got[0]);
    // An absolute URL still gets its button.
    e.build_url = Some("https://ci.example.com/job/payments/42/".into());
    let ch = lark(&robot, None, false, LarkMsgType::Interactive);
    assert!(ch
        .send(&prepare(ch.as_ref(), &e, &Mention::default()), &Attempt::first("d"))
        .await
        .is_delivered());
    let got = robot.wait_received(4, WAIT).await;
    assert_eq!(got[3]["card"]["elements"][1]["actions"][0]["url"], "https://ci.example.com/job/payments/42/");
}

#[tokio::test]
async fn lark_refusals_and_rate_limits() {
    let robot = MockRobot::start(Platform::Lark, MockOptions::signed(LARK_SECRET).with_keyword(KEYWORD));
    // (channel secret, channel keyword, code)
    for (secret, keyword, code) in
        [(Some("wrong"), true, 19021), (None, true, 19021), (Some(LARK_SECRET), false, 19024)]
    {
        let out =
            send(lark(&robot, secret, keyword, LarkMsgType::Interactive).as_ref(), &Mention::default()).await;
        assert_eq!(
            (out.verdict.clone(), out.code, out.http_status),
            (Verdict::Permanent, Some(code), Some(200))
        );
        assert_no_leak(&out, &robot, &[LARK_SECRET]);
    }
    let ch = lark(&robot, Some(LARK_SECRET), true, LarkMsgType::Post);
    robot.script(1, Reply::Code(11232));
    let out = send(ch.as_ref(), &Mention::default()).await;
    assert_eq!(out.verdict, Verdict::Transient { retry_after: Some(Duration::from_secs(5)) });
    robot.script(1, Reply::Http { status: 503, retry_after: Some(30) });
    let out = send(ch.as_ref(), &Mention::default()).await;
    assert_eq!(out.verdict, Verdict::Transient { retry_after: Some(Duration::from_secs(30)) });
    robot.script(1, Reply::CodeMsg(19001, format!("token {} invalid", robot.token())));
    let out = send(ch.as_ref(), &Mention::default()).await;
    assert_eq!(out.verdict, Verdict::Permanent);
    assert_no_leak(&out, &robot, &[LARK_SECRET]);
    assert!(robot.received().is_empty());
}

/// Posts a hand-built body to a robot and returns its answer.
async fn post_raw(url: &str, body: &Value) -> Value {
    reqwest::Client::new().post(url).json(body).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn mock_robots_refuse_what_the_platforms_refuse() {
    use herald::channels::{dingtalk, lark};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let text = serde_json::json!({"msgtype": "text", "text": {"content": "hi"}});

    let dt = MockRobot::start(Platform::Dingtalk, MockOptions::signed(DT_SECRET));
    let (ms, raw) = (now.as_millis() as u64, dingtalk::sign(DT_SECRET, now.as_millis() as u64));
    let once: String = url::form_urlencoded::byte_serialize(raw.as_bytes()).collect();
    let twice: String = url::form_urlencoded::byte_serialize(once.as_bytes()).collect();
    let signed = |sign: &str| format!("{}&timestamp={ms}&sign={sign}", dt.url());
    assert_eq!(post_raw(&signed(&once), &text).await["errcode"], 0);
    assert_eq!(post_raw(&signed(&twice), &text).await["errcode"], 310000, "double encoding is refused");
    let at = serde_json::json!({"msgtype": "text", "text": {"content": "hi"}, "at": {"atMobiles": ["138"]}});
    assert_eq!(post_raw(&signed(&once), &at).await["errcode"], MOCK_RULE_CODE, "@138 missing from the text");

    let lk = MockRobot::start(Platform::Lark, MockOptions::signed(LARK_SECRET));
    let secs = now.as_secs();
    let body = |ts: Value, sign: String| serde_json::json!({"timestamp": ts, "sign": sign, "msg_type": "text", "content": {"text": "hi"}});
    let good = body(secs.to_string().into(), lark::sign(LARK_SECRET, secs));
    assert_eq!(post_raw(&lk.url(), &good).await["code"], 0);
    let dingtalk_algorithm = body(secs.to_string().into(), dingtalk::sign(LARK_SECRET, secs));
    assert_eq!(post_raw(&lk.url(), &dingtalk_algorithm).await["code"], 19021);
    let numeric_ts = body(secs.into(), lark::sign(LARK_SECRET, secs));
    assert_eq!(post_raw(&lk.url(), &numeric_ts).await["code"], 19021);
    assert_eq!(lk.received().len(), 1);
}

#[test]
fn unsupported_mentions_are_reported_by_check() {
    let dt = MockRobot::start(Platform::Dingtalk, MockOptions::default());
    let wc = MockRobot::start(Platform::Wecom, MockOptions::default());
    let lk = MockRobot::start(Platform::Lark, MockOptions::default());
    let mobile = mention(&["13800000000"], &[], false);
    let user = mention(&[], &["u1"], false);
    // (channel, mention, warnings)
    let cases = [
        (dingtalk(&dt, None, false, DingtalkMsgType::ActionCard), &user, 1),
        (dingtalk(&dt, None, false, DingtalkMsgType::Markdown), &mobile, 0),
        (wecom(&wc, WecomMsgType::MarkdownV2), &user, 1),
        (wecom(&wc, WecomMsgType::Markdown), &mobile, 1),
        (wecom(&wc, WecomMsgType::Text), &mobile, 0),
        (lark(&lk, None, false, LarkMsgType::Post), &mobile, 1),
        (lark(&lk, None, false, LarkMsgType::Interactive), &user, 0),
    ];
    for (ch, m, n) in cases {
        assert_eq!(ch.check_mention(m).len(), n, "{:?} {m:?}", ch.kind());
    }
}

#[test]
fn previews_show_the_signed_request_with_credentials_redacted() {
    let dt = MockRobot::start(Platform::Dingtalk, MockOptions::default());
    let lk = MockRobot::start(Platform::Lark, MockOptions::default());
    let attempt = Attempt::first("p-1");
    for (robot, ch) in [
        (&dt, dingtalk(&dt, Some(DT_SECRET), false, DingtalkMsgType::Markdown)),
        (&lk, lark(&lk, Some(LARK_SECRET), false, LarkMsgType::Interactive)),
    ] {
        let msg = prepare(ch.as_ref(), &event(None), &Mention::default());
        let p = ch.preview(&msg, &attempt);
        assert_eq!(p.method, "POST");
        let all = format!("{p:?}");
        assert!(
            !all.contains(robot.token()) && !all.contains(DT_SECRET) && !all.contains(LARK_SECRET),
            "{all}"
        );
        assert!(ch
            .check_templates("default", &render::context(&event(None), &ContextExtras::default()))
            .is_empty());
    }
    let p = dingtalk(&dt, Some(DT_SECRET), false, DingtalkMsgType::Text).preview(
        &prepare(
            dingtalk(&dt, None, false, DingtalkMsgType::Text).as_ref(),
            &event(None),
            &Mention::default(),
        ),
        &attempt,
    );
    assert!(p.url.contains("timestamp=") && p.body.contains("\"msgUuid\":\"p-1\""), "{p:?}");
}
