//! The checks a mock robot makes before accepting a message, one function per platform, and the
//! platform's usual message for each code.
//!
//! The codes are the platforms' own (reference `chat-protocols.md` §1.6, §2.5, §3.6), except
//! [`MOCK_RULE_CODE`], which flags a message the platform would accept but show wrongly (a
//! mention it cannot carry, or one missing from the text).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{MockOptions, Platform, MOCK_RULE_CODE};

/// Why a message was refused, as the platform answers it.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub code: i64,
    pub msg: String,
}

fn refuse(code: i64, msg: impl Into<String>) -> Refusal {
    Refusal { status: 200, code, msg: msg.into() }
}

/// Checks one request against the robot's settings.
pub fn check(
    token: &str,
    options: &MockOptions,
    platform: Platform,
    target: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(), Refusal> {
    if !content_type.is_some_and(|c| c.starts_with("application/json")) {
        return Err(Refusal {
            status: 415,
            code: 40035,
            msg: "mock: Content-Type must be application/json".into(),
        });
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match platform {
        Platform::Dingtalk => {
            if path != "/robot/send" || param("access_token") != Some(token) {
                return Err(refuse(300001, usual_message(platform, 300001)));
            }
            dingtalk(options, param("timestamp"), param("sign"), body)
        }
        Platform::Wecom => {
            if path != "/cgi-bin/webhook/send" || param("key") != Some(token) {
                return Err(refuse(93000, usual_message(platform, 93000)));
            }
            wecom(body)
        }
        Platform::Lark => {
            if path != format!("/open-apis/bot/v2/hook/{token}") {
                return Err(refuse(19001, usual_message(platform, 19001)));
            }
            lark(options, body)
        }
    }
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// DingTalk: 加签 in the query (key = secret, message = `ts\nsecret`, ms, 1 hour), 20000 bytes,
/// the keyword in the text, and every `at` entry also written as `@…` in the text.
fn dingtalk(options: &MockOptions, ts: Option<&str>, sign: Option<&str>, body: &[u8]) -> Result<(), Refusal> {
    if let Some(secret) = &options.secret {
        let sign_fail = || refuse(310000, usual_message(Platform::Dingtalk, 310000));
        let (Some(ts), Some(sign)) = (ts, sign) else { return Err(sign_fail()) };
        let ts_ms: i64 = ts.parse().map_err(|_| refuse(310000, "invalid timestamp"))?;
        if (now_millis() - ts_ms).abs() > 3_600_000 {
            return Err(refuse(310000, "invalid timestamp"));
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}\n{secret}").as_bytes());
        let sig = BASE64.decode(sign).map_err(|_| sign_fail())?;
        mac.verify_slice(&sig).map_err(|_| sign_fail())?;
    }
    if body.len() > 20_000 {
        return Err(refuse(460101, usual_message(Platform::Dingtalk, 460101)));
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| refuse(40035, "缺少参数 json"))?;
    let msgtype = v["msgtype"].as_str().unwrap_or_default();
    let text = match msgtype {
        "text" => v["text"]["content"].as_str(),
        "markdown" | "actionCard" => v[msgtype]["title"].as_str().and(v[msgtype]["text"].as_str()),
        "link" => v["link"]["text"].as_str(),
        "feedCard" => Some(""),
        _ => return Err(refuse(400105, usual_message(Platform::Dingtalk, 400105))),
    };
    let text = text.ok_or_else(|| refuse(40035, format!("缺少参数 {msgtype}")))?;
    // singleTitle and singleURL are required for a whole-card jump, unless `btns` is given.
    let card = &v["actionCard"];
    let no_button = card["singleTitle"].as_str().is_none() || card["singleURL"].as_str().is_none();
    if msgtype == "actionCard" && card["btns"].as_array().is_none_or(Vec::is_empty) && no_button {
        return Err(refuse(40035, "缺少参数 singleTitle/singleURL"));
    }
    if let Some(k) = &options.keyword {
        if !text.contains(k.as_str()) {
            return Err(refuse(310000, "keywords not in content"));
        }
    }
    if let Some(at) = v.get("at") {
        if !matches!(msgtype, "text" | "markdown") {
            return Err(refuse(MOCK_RULE_CODE, format!("mock: {msgtype} cannot carry `at`")));
        }
        for key in ["atMobiles", "atUserIds"] {
            for who in at[key].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !text.contains(&format!("@{who}")) {
                    return Err(refuse(
                        MOCK_RULE_CODE,
                        format!("mock: {key} has {who} but the text lacks @{who}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// WeCom: content limits (text 2048, markdown 4096 bytes), message types, mention rules.
fn wecom(body: &[u8]) -> Result<(), Refusal> {
    let v: Value = serde_json::from_slice(body).map_err(|_| refuse(40058, "mock: the body is not JSON"))?;
    let msgtype = v["msgtype"].as_str().unwrap_or_default();
    let max = match msgtype {
        "text" => 2048,
        "markdown" | "markdown_v2" => 4096,
        "image" | "news" | "file" | "voice" | "template_card" => return Ok(()),
        _ => return Err(refuse(40008, usual_message(Platform::Wecom, 40008))),
    };
    let msg = &v[msgtype];
    let content =
        msg["content"].as_str().ok_or_else(|| refuse(40058, format!("missing {msgtype}.content")))?;
    if content.len() > max {
        return Err(refuse(40058, format!("{msgtype}.content exceed max length {max}")));
    }
    let has_lists = msg.get("mentioned_list").is_some() || msg.get("mentioned_mobile_list").is_some();
    match msgtype {
        "markdown" if has_lists => {
            Err(refuse(MOCK_RULE_CODE, "mock: markdown has no mention lists; use <@userid>"))
        }
        "markdown_v2" if has_lists || content.contains("<@") => {
            Err(refuse(MOCK_RULE_CODE, "mock: markdown_v2 cannot mention anyone"))
        }
        _ => Ok(()),
    }
}

/// Lark: signature in the body (key = `ts\nsecret`, empty message, seconds as a string, 1 hour),
/// 20000 bytes, message shapes, the keyword in a text-like value, the mention syntax per type.
fn lark(options: &MockOptions, body: &[u8]) -> Result<(), Refusal> {
    let bad_request = || Refusal { status: 400, code: 9499, msg: usual_message(Platform::Lark, 9499).into() };
    if body.len() > 20_000 {
        return Err(bad_request());
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| bad_request())?;
    if let Some(secret) = &options.secret {
        let sign_fail = || refuse(19021, usual_message(Platform::Lark, 19021));
        let ts = v["timestamp"].as_str().ok_or_else(sign_fail)?;
        let ts_s: i64 = ts.parse().map_err(|_| sign_fail())?;
        if (now_millis() / 1000 - ts_s).abs() > 3600 {
            return Err(sign_fail());
        }
        let mac = Hmac::<Sha256>::new_from_slice(format!("{ts}\n{secret}").as_bytes()).unwrap();
        let sig = v["sign"].as_str().and_then(|s| BASE64.decode(s).ok()).unwrap_or_default();
        mac.verify_slice(&sig).map_err(|_| sign_fail())?;
    }
    let msg_type = v["msg_type"].as_str().unwrap_or_default();
    let shaped = match msg_type {
        "text" => v["content"]["text"].is_string(),
        "post" => v["content"]["post"].is_object(),
        "interactive" => v["card"].is_object(),
        "image" | "share_chat" => v["content"].is_object(),
        _ => false,
    };
    if !shaped {
        return Err(bad_request());
    }
    let mut texts = Vec::new();
    text_like(&v, &mut texts);
    if let Some(k) = &options.keyword {
        if !texts.iter().any(|t| t.contains(k.as_str())) {
            return Err(refuse(19024, usual_message(Platform::Lark, 19024)));
        }
    }
    let wrong_at = match msg_type {
        "interactive" => texts.iter().any(|t| t.contains("<at user_id=")),
        "text" => texts.iter().any(|t| t.contains("<at id=")),
        _ => false,
    };
    if wrong_at {
        return Err(refuse(MOCK_RULE_CODE, format!("mock: wrong mention syntax for {msg_type}")));
    }
    // "The link must be valid or the send fails": a post's `a` href, a card button's url.
    let mut links = Vec::new();
    link_values(&v, &mut links);
    if let Some(bad) = links.iter().find(|l| !(l.starts_with("https://") || l.starts_with("http://"))) {
        return Err(refuse(MOCK_RULE_CODE, format!("mock: invalid link {bad:?}")));
    }
    Ok(())
}

/// Every `href` and `url` string in a Lark message.
fn link_values<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v.as_str() {
                    Some(s) if k == "href" || k == "url" => out.push(s),
                    _ => link_values(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| link_values(i, out)),
        _ => {}
    }
}

/// The string values Lark scans for keywords: those under `text`, `content` and `title`.
fn text_like<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v.as_str() {
                    Some(s) if ["text", "content", "title"].contains(&k.as_str()) => out.push(s),
                    _ => text_like(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| text_like(i, out)),
        _ => {}
    }
}

/// The message a platform usually sends with a code (from the reference and field reports).
pub fn usual_message(platform: Platform, code: i64) -> &'static str {
    match (platform, code) {
        (Platform::Dingtalk, -1) => "系统繁忙",
        (Platform::Dingtalk, 130101) => "send too fast, exceed 20 times per minute",
        (Platform::Dingtalk, 300001) => "token is not exist",
        (Platform::Dingtalk, 310000) => {
            "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"
        }
        (Platform::Dingtalk, 400105) => "不支持的消息类型",
        (Platform::Dingtalk, 410100) => "发送速度太快而限流",
        (Platform::Dingtalk, 460101) => "message too long, exceed 20000 bytes",
        (Platform::Wecom, -1) => "system busy",
        (Platform::Wecom, 40008) => "invalid message type",
        (Platform::Wecom, 45009) => "api freq out of limit",
        (Platform::Wecom, 93000) => {
            "invalid webhook url, hint: [1700000000_1_mock], more info at \
             https://open.work.weixin.qq.com/devtool/query?e=93000"
        }
        (Platform::Lark, 9499) => "Bad Request",
        (Platform::Lark, 11232) => "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]",
        (Platform::Lark, 19001) => "param invalid: incoming webhook access token invalid",
        (Platform::Lark, 19021) => "sign match fail or timestamp is not within one hour from current time",
        (Platform::Lark, 19022) => "Ip Not Allowed",
        (Platform::Lark, 19024) => "Key Words Not Found",
        _ => "mock: scripted error",
    }
}
