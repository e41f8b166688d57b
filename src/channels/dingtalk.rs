//! DingTalk custom robot (自定义机器人): `text`, `markdown` and `actionCard` messages, the
//! custom keyword, @mentions, 加签 signing, the 20000-byte body limit and the errcode table.
//!
//! The stored body holds everything but the per-attempt parts: `msgUuid` (the delivery id, so a
//! retry is not shown twice), and the `timestamp`/`sign` query parameters.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::http::HttpRequest;
use super::limit::{self, Flavor};
use super::robot::{self, Link};
use super::{Attempt, Channel, ChannelDeps, ChannelKind, Message, MessageBody, Outcome, Prepare};
use super::{RequestPreview, Verdict};
use crate::config::{DingtalkConfig, DingtalkMsgType, Mention};
use crate::secret::Secret;

/// Most bytes a stored body may take: DingTalk's 20000, less room for `msgUuid`.
pub const MAX_BODY_BYTES: usize = 20_000 - 200;
/// Most bytes of a title (it is shown in the chat list, where long titles are cut anyway).
pub const MAX_TITLE_BYTES: usize = 256;
/// How long DingTalk blocks a robot that sent more than 20 messages in a minute.
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(10 * 60);

/// A DingTalk robot.
pub struct Dingtalk {
    name: String,
    cfg: DingtalkConfig,
    timeout: Duration,
    deps: ChannelDeps,
}

impl Dingtalk {
    /// A channel from its config.
    pub fn new(name: &str, cfg: DingtalkConfig, timeout: Duration, deps: &ChannelDeps) -> Self {
        Self { name: name.into(), cfg, timeout, deps: deps.clone() }
    }

    /// The template parts this channel renders: a `text` message has no title.
    fn parts(&self) -> Vec<&'static str> {
        match self.cfg.msgtype {
            DingtalkMsgType::Text => vec!["text"],
            t => vec!["title", t.as_str()],
        }
    }
}

/// The rendered text of one message.
#[derive(Debug, Clone, Default)]
pub struct Content<'a> {
    /// Used by `markdown` (chat list preview) and `actionCard`.
    pub title: &'a str,
    pub text: &'a str,
    /// The actionCard button: to the build, else the pipeline.
    pub link: Option<Link<'a>>,
}

/// The stored body: the platform's JSON with the keyword and mentions in place, cut to the size
/// limit. The mention and keyword text is added after cutting, so it always survives.
pub fn build_body(
    msgtype: DingtalkMsgType,
    keyword: Option<&str>,
    content: &Content<'_>,
    mention: &Mention,
) -> Value {
    let title = content.title.trim();
    let title = if title.is_empty() { "Notification" } else { title };
    let title = robot::title_with_keyword(&limit::fit(title, MAX_TITLE_BYTES, Flavor::Line), keyword);
    let flavor = if msgtype == DingtalkMsgType::Text { Flavor::Plain } else { Flavor::Markdown };
    let compose = |text: &str| {
        let text = match mention_text(msgtype, mention) {
            Some(at) => robot::join_paragraph(text, &at),
            None => text.to_string(),
        };
        shape(msgtype, &title, &robot::text_with_keyword(&text, keyword), mention, content.link)
    };
    let text = limit::fit_measured(content.text, flavor, MAX_BODY_BYTES, |t| json_len(&compose(t)));
    compose(&text)
}

/// The `@mobile @userid` line DingTalk needs in the text for its `at` field to notify anyone.
fn mention_text(msgtype: DingtalkMsgType, mention: &Mention) -> Option<String> {
    if msgtype == DingtalkMsgType::ActionCard {
        return None;
    }
    let ats: Vec<String> = mention.mobiles.iter().chain(&mention.user_ids).map(|m| format!("@{m}")).collect();
    (!ats.is_empty()).then(|| ats.join(" "))
}

/// The platform's JSON for one message type.
fn shape(
    msgtype: DingtalkMsgType,
    title: &str,
    text: &str,
    mention: &Mention,
    link: Option<Link<'_>>,
) -> Value {
    let mut body = match msgtype {
        DingtalkMsgType::Text => json!({ "msgtype": "text", "text": { "content": text } }),
        DingtalkMsgType::Markdown => {
            json!({ "msgtype": "markdown", "markdown": { "title": title, "text": text } })
        }
        // A whole-card actionCard requires its button (`singleTitle`, `singleURL`); with no
        // link to put there, the same title and text go as markdown, without mentions as the
        // card would have been.
        DingtalkMsgType::ActionCard => {
            let Some(link) = link else {
                return json!({ "msgtype": "markdown", "markdown": { "title": title, "text": text } });
            };
            let card = json!({
                "title": title, "text": text, "btnOrientation": "0",
                "singleTitle": link.title, "singleURL": link.url,
            });
            return json!({ "msgtype": "actionCard", "actionCard": card });
        }
    };
    if !mention.is_empty() {
        body["at"] = json!({
            "atMobiles": mention.mobiles,
            "atUserIds": mention.user_ids,
            "isAtAll": mention.all,
        });
    }
    body
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// The 加签 signature, before URL-encoding: base64 of HMAC-SHA256 with the secret as key over
/// `"{timestamp_ms}\n{secret}"`.
pub fn sign(secret: &str, timestamp_ms: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The request for one attempt: `msgUuid` in the body and, with a secret, `&timestamp=…&sign=…`
/// appended to the query. The form serializer percent-encodes the signature exactly once.
pub fn request(url: &url::Url, secret: Option<&Secret>, body: &Value, attempt: &Attempt) -> HttpRequest {
    let mut url = url.clone();
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        let ts = robot::unix_millis(attempt.now);
        url.query_pairs_mut()
            .append_pair("timestamp", &ts.to_string())
            .append_pair("sign", &sign(secret.expose(), ts));
    }
    let mut body = body.clone();
    if let Some(obj) = body.as_object_mut() {
        obj.insert("msgUuid".into(), json!(attempt.delivery_id));
    }
    HttpRequest::post_json(url, &body)
}

/// DingTalk's `errcode` table (reference §1.6).
///
/// | errcode | verdict |
/// |---|---|
/// | 0 | delivered |
/// | -1 (busy) | transient |
/// | 130101, 410100 (sending too fast) | transient, retry after 10 min |
/// | 310000 with "invalid timestamp" (clock skew) | transient |
/// | 310000 (keyword, sign, IP), 300001, 300005, 400013, 400101, 400102, 400105, 400106, 430101–430104, 460101, 101002 | permanent |
/// | any other | permanent: the robot refused the message and nothing says a retry helps |
pub fn classify(code: i64, errmsg: &str) -> Verdict {
    match code {
        0 => Verdict::Delivered,
        -1 => Verdict::Transient { retry_after: None },
        130101 | 410100 => Verdict::Transient { retry_after: Some(RATE_LIMIT_WAIT) },
        310000 if errmsg.to_ascii_lowercase().contains("invalid timestamp") => {
            Verdict::Transient { retry_after: None }
        }
        _ => Verdict::Permanent,
    }
}

#[async_trait]
impl Channel for Dingtalk {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Dingtalk
    }

    fn prepare(&self, input: &Prepare<'_>) -> Message {
        let mut errors = Vec::new();
        let renderer = &self.deps.renderer;
        let title = match self.cfg.msgtype {
            DingtalkMsgType::Text => String::new(),
            _ => robot::render_part(renderer, input, self.kind(), "title", &mut errors),
        };
        let text = robot::render_part(renderer, input, self.kind(), self.cfg.msgtype.as_str(), &mut errors);
        let content = Content { title: &title, text: &text, link: robot::event_link(input.event) };
        let json = build_body(self.cfg.msgtype, robot::keyword(&self.cfg.keyword), &content, input.mention);
        Message { body: MessageBody::Json { json }, template_errors: errors }
    }

    fn preview(&self, msg: &Message, attempt: &Attempt) -> RequestPreview {
        let body = robot::json_body(msg).cloned().unwrap_or(Value::Null);
        request(self.cfg.url.expose(), self.cfg.secret.as_ref(), &body, attempt).preview(&[])
    }

    async fn send(&self, msg: &Message, attempt: &Attempt) -> Outcome {
        let Some(body) = robot::json_body(msg) else {
            return Outcome::permanent("the stored message is not a DingTalk JSON body");
        };
        let req = request(self.cfg.url.expose(), self.cfg.secret.as_ref(), body, attempt);
        let secrets = robot::url_secrets(self.cfg.url.expose(), self.cfg.secret.as_ref());
        robot::deliver(&self.deps.http, req, self.timeout, &secrets, robot::read_errcode, classify).await
    }

    fn check_templates(&self, template: &str, ctx: &Value) -> Vec<String> {
        robot::check_parts(&self.deps.renderer, template, self.kind(), &self.parts(), ctx)
    }

    fn check_mention(&self, mention: &Mention) -> Vec<String> {
        if self.cfg.msgtype == DingtalkMsgType::ActionCard && !mention.is_empty() {
            return vec!["dingtalk actionCard messages cannot mention anyone; the mention is dropped \
                         (use msgtype \"markdown\" or \"text\")"
                .to_string()];
        }
        Vec::new()
    }

    fn rate_key(&self) -> &str {
        self.cfg.url.expose().as_str()
    }
}

#[cfg(test)]
mod tests;
