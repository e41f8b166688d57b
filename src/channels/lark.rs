//! Lark/Feishu (飞书) custom bot: `interactive` card, `post` rich text and `text` messages, the
//! custom keyword, mentions, signing, the 20 KB body limit and the code table.
//!
//! Lark's signature is not DingTalk's: the HMAC key is `"{timestamp}\n{secret}"` and the message
//! is empty, the timestamp is in seconds, and both go in the JSON body. They are added per
//! attempt; the stored body holds neither.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::http::HttpRequest;
use super::limit::{self, Flavor};
use super::robot::{self, Answer, Link};
use super::{Attempt, Channel, ChannelDeps, ChannelKind, Message, MessageBody, Outcome, Prepare};
use super::{RequestPreview, Verdict};
use crate::config::{LarkConfig, LarkMsgType, Mention};
use crate::event::Status;
use crate::secret::Secret;

/// Most bytes a stored body may take: Lark's 20 KB, less room for `timestamp` and `sign`.
pub const MAX_BODY_BYTES: usize = 20_000 - 200;
/// Most bytes of a title.
pub const MAX_TITLE_BYTES: usize = 256;
/// How long to back off after Lark's `11232` flow control (5 messages a second per bot).
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);

/// A Lark/Feishu bot.
pub struct Lark {
    name: String,
    cfg: LarkConfig,
    timeout: Duration,
    deps: ChannelDeps,
}

impl Lark {
    /// A channel from its config.
    pub fn new(name: &str, cfg: LarkConfig, timeout: Duration, deps: &ChannelDeps) -> Self {
        Self { name: name.into(), cfg, timeout, deps: deps.clone() }
    }

    /// The template parts this channel renders: a `text` message has no title.
    fn parts(&self) -> Vec<&'static str> {
        match self.cfg.msgtype {
            LarkMsgType::Text => vec!["text"],
            t => vec!["title", t.as_str()],
        }
    }
}

/// The rendered text of one message, and what else the message shows.
#[derive(Debug, Clone)]
pub struct Content<'a> {
    /// The card header or post title; unused by `text`.
    pub title: &'a str,
    pub text: &'a str,
    /// The card button and the post link: to the build, else the pipeline.
    pub link: Option<Link<'a>>,
    /// Colours the card header.
    pub status: Status,
}

/// The card header colour for a status.
pub fn header_colour(status: Status) -> &'static str {
    match status {
        Status::Success => "green",
        Status::Failure => "red",
        Status::Unstable => "orange",
        Status::Started | Status::Running => "blue",
        Status::Waiting | Status::Aborted | Status::Skipped | Status::Unknown => "grey",
    }
}

/// The stored body: the platform's JSON with the keyword and mentions in place, cut to the size
/// limit. The mention and keyword are added after cutting, so they always survive.
pub fn build_body(
    msgtype: LarkMsgType,
    keyword: Option<&str>,
    content: &Content<'_>,
    mention: &Mention,
) -> Value {
    let title = content.title.trim();
    let title = if title.is_empty() { "Notification" } else { title };
    let title = robot::title_with_keyword(&limit::fit(title, MAX_TITLE_BYTES, Flavor::Line), keyword);
    let compose = |t: &str| match msgtype {
        LarkMsgType::Interactive => card(&title, t, keyword, content, mention),
        LarkMsgType::Post => post(&title, t, keyword, content, mention),
        LarkMsgType::Text => text(t, keyword, mention),
    };
    let flavor = if msgtype == LarkMsgType::Interactive { Flavor::Markdown } else { Flavor::Plain };
    let fitted = limit::fit_measured(content.text, flavor, MAX_BODY_BYTES, |t| json_len(&compose(t)));
    compose(&fitted)
}

/// An `interactive` card: coloured header, the text as `lark_md`, mentions as `<at id=…>`, and a
/// button to the build.
fn card(title: &str, text: &str, keyword: Option<&str>, content: &Content<'_>, mention: &Mention) -> Value {
    let ats: Vec<String> = mention
        .user_ids
        .iter()
        .map(String::as_str)
        .chain(mention.all.then_some("all"))
        .map(|id| format!("<at id={id}></at>"))
        .collect();
    let text = if ats.is_empty() { text.to_string() } else { robot::join_paragraph(text, &ats.join(" ")) };
    let mut elements = vec![
        json!({ "tag": "div", "text": { "tag": "lark_md", "content": robot::text_with_keyword(&text, keyword) } }),
    ];
    if let Some(link) = content.link {
        elements.push(json!({ "tag": "action", "actions": [{
            "tag": "button",
            "text": { "tag": "plain_text", "content": link.title },
            "type": "primary",
            "url": link.url,
        }]}));
    }
    json!({
        "msg_type": "interactive",
        "card": {
            "config": { "wide_screen_mode": true },
            "header": {
                "title": { "tag": "plain_text", "content": title },
                "template": header_colour(content.status),
            },
            "elements": elements,
        },
    })
}

/// A `post`: one paragraph per line, the keyword when the text lacks it, a link to the build, and
/// a paragraph of `at` nodes.
fn post(title: &str, text: &str, keyword: Option<&str>, content: &Content<'_>, mention: &Mention) -> Value {
    let text = robot::text_with_keyword(text, keyword);
    let mut paragraphs: Vec<Value> = text.lines().map(|l| json!([{ "tag": "text", "text": l }])).collect();
    if let Some(link) = content.link {
        paragraphs.push(json!([{ "tag": "a", "text": link.title, "href": link.url }]));
    }
    let mut ats: Vec<Value> = mention.user_ids.iter().map(|u| json!({ "tag": "at", "user_id": u })).collect();
    if mention.all {
        ats.push(json!({ "tag": "at", "user_id": "all", "user_name": "所有人" }));
    }
    if !ats.is_empty() {
        paragraphs.push(Value::Array(ats));
    }
    json!({ "msg_type": "post", "content": { "post": { "zh_cn": { "title": title, "content": paragraphs } } } })
}

/// A `text` message, mentions as `<at user_id="…"></at>`.
fn text(text: &str, keyword: Option<&str>, mention: &Mention) -> Value {
    let mut ats: Vec<String> =
        mention.user_ids.iter().map(|u| format!("<at user_id=\"{u}\"></at>")).collect();
    if mention.all {
        ats.push("<at user_id=\"all\">所有人</at>".to_string());
    }
    let text = if ats.is_empty() { text.to_string() } else { robot::join_paragraph(text, &ats.join(" ")) };
    json!({ "msg_type": "text", "content": { "text": robot::text_with_keyword(&text, keyword) } })
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// Lark's signature: base64 of HMAC-SHA256 with `"{timestamp_s}\n{secret}"` as the key over an
/// empty message. Not URL-encoded.
pub fn sign(secret: &str, timestamp_s: u64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    let mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The request for one attempt: with a secret, `timestamp` (seconds, as a string) and `sign`
/// first in the body.
pub fn request(url: &url::Url, secret: Option<&Secret>, body: &Value, attempt: &Attempt) -> HttpRequest {
    let body = match (secret.filter(|s| !s.is_empty()), body.as_object()) {
        (Some(secret), Some(fields)) => {
            let ts = robot::unix_millis(attempt.now) / 1000;
            let mut signed = Map::new();
            signed.insert("timestamp".into(), json!(ts.to_string()));
            signed.insert("sign".into(), json!(sign(secret.expose(), ts)));
            signed.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            Value::Object(signed)
        }
        _ => body.clone(),
    };
    HttpRequest::post_json(url.clone(), &body)
}

/// Reads Lark's `{"code": …, "msg": …}`, or the legacy `{"StatusCode": …, "StatusMessage": …}`
/// when `code` is absent.
pub(crate) fn read_answer(v: &Value) -> Option<Answer> {
    let (code, msg) = match v.get("code") {
        Some(code) => (code, v.get("msg")),
        None => (v.get("StatusCode")?, v.get("StatusMessage")),
    };
    Some(Answer { code: code.as_i64()?, msg: msg.and_then(Value::as_str).unwrap_or_default().to_string() })
}

/// Lark's `code` table (reference §3.6).
///
/// | code | verdict |
/// |---|---|
/// | 0 | delivered |
/// | 11232 (flow control) | transient, retry after 5 s |
/// | 9499 (bad request, too big), 19001 (bad token), 19021 (sign or timestamp), 19022 (IP), 19024 (keyword) | permanent |
/// | any other | permanent: the bot refused the message and nothing says a retry helps |
pub fn classify(code: i64, _msg: &str) -> Verdict {
    match code {
        0 => Verdict::Delivered,
        11232 => Verdict::Transient { retry_after: Some(RATE_LIMIT_WAIT) },
        _ => Verdict::Permanent,
    }
}

#[async_trait]
impl Channel for Lark {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Lark
    }

    fn prepare(&self, input: &Prepare<'_>) -> Message {
        let mut errors = Vec::new();
        let renderer = &self.deps.renderer;
        let title = match self.cfg.msgtype {
            LarkMsgType::Text => String::new(),
            _ => robot::render_part(renderer, input, self.kind(), "title", &mut errors),
        };
        let text = robot::render_part(renderer, input, self.kind(), self.cfg.msgtype.as_str(), &mut errors);
        let content = Content {
            title: &title,
            text: &text,
            link: robot::event_link(input.event),
            status: input.event.status,
        };
        let json = build_body(self.cfg.msgtype, robot::keyword(&self.cfg.keyword), &content, input.mention);
        Message { body: MessageBody::Json { json }, template_errors: errors }
    }

    fn preview(&self, msg: &Message, attempt: &Attempt) -> RequestPreview {
        let body = robot::json_body(msg).cloned().unwrap_or(Value::Null);
        request(self.cfg.url.expose(), self.cfg.secret.as_ref(), &body, attempt).preview(&[])
    }

    async fn send(&self, msg: &Message, attempt: &Attempt) -> Outcome {
        let Some(body) = robot::json_body(msg) else {
            return Outcome::permanent("the stored message is not a Lark JSON body");
        };
        let req = request(self.cfg.url.expose(), self.cfg.secret.as_ref(), body, attempt);
        let secrets = robot::url_secrets(self.cfg.url.expose(), self.cfg.secret.as_ref());
        robot::deliver(&self.deps.http, req, self.timeout, &secrets, read_answer, classify).await
    }

    fn check_templates(&self, template: &str, ctx: &Value) -> Vec<String> {
        robot::check_parts(&self.deps.renderer, template, self.kind(), &self.parts(), ctx)
    }

    fn check_mention(&self, mention: &Mention) -> Vec<String> {
        if mention.mobiles.is_empty() {
            return Vec::new();
        }
        vec!["lark bots cannot mention by mobile; mobiles are dropped (use user_ids with open_ids)"
            .to_string()]
    }

    fn rate_key(&self) -> &str {
        self.cfg.url.expose().as_str()
    }
}

#[cfg(test)]
mod tests;
