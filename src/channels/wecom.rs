//! WeCom (企业微信) group robot: `text`, `markdown` and `markdown_v2` messages, mentions, the
//! content size limits and the errcode table.
//!
//! WeCom has no signature, keyword or title: the `key` in the URL is the only credential, and the
//! stored body is sent as it is on every attempt.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::http::HttpRequest;
use super::limit::{self, Flavor};
use super::robot;
use super::{Attempt, Channel, ChannelDeps, ChannelKind, Message, MessageBody, Outcome, Prepare};
use super::{RequestPreview, Verdict};
use crate::config::{Mention, WecomConfig, WecomMsgType};

/// Most bytes of a `text` message's content.
pub const MAX_TEXT_BYTES: usize = 2048;
/// Most bytes of a `markdown` or `markdown_v2` message's content.
pub const MAX_MARKDOWN_BYTES: usize = 4096;
/// How long to back off after WeCom's `45009 api freq out of limit` (20 messages a minute).
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// The mention list entry meaning everyone.
pub const ALL: &str = "@all";

/// A WeCom robot.
pub struct Wecom {
    name: String,
    cfg: WecomConfig,
    timeout: Duration,
    deps: ChannelDeps,
}

impl Wecom {
    /// A channel from its config.
    pub fn new(name: &str, cfg: WecomConfig, timeout: Duration, deps: &ChannelDeps) -> Self {
        Self { name: name.into(), cfg, timeout, deps: deps.clone() }
    }
}

/// The stored body: the platform's JSON with the mentions in place and the content cut to its
/// limit. Mentions are added after cutting, so they always survive.
///
/// - `text`: `mentioned_list` (user ids, `@all`) and `mentioned_mobile_list`; the content is
///   left as rendered, as in WeCom's own example.
/// - `markdown`: `<@userid>` appended to the content; mobiles and everyone cannot be mentioned.
/// - `markdown_v2`: no mentions at all.
pub fn build_body(msgtype: WecomMsgType, text: &str, mention: &Mention) -> Value {
    match msgtype {
        WecomMsgType::Text => {
            let content = limit::fit(text, MAX_TEXT_BYTES, Flavor::Plain);
            let mut text = json!({ "content": content });
            let mut users = mention.user_ids.clone();
            if mention.all {
                users.push(ALL.to_string());
            }
            if !users.is_empty() {
                text["mentioned_list"] = json!(users);
            }
            if !mention.mobiles.is_empty() {
                text["mentioned_mobile_list"] = json!(mention.mobiles);
            }
            json!({ "msgtype": "text", "text": text })
        }
        WecomMsgType::Markdown => {
            let ats: String = mention.user_ids.iter().map(|u| format!("<@{u}>")).collect();
            let content = if ats.is_empty() {
                limit::fit(text, MAX_MARKDOWN_BYTES, Flavor::Markdown)
            } else {
                let compose = |t: &str| robot::join_paragraph(t, &ats);
                compose(&limit::fit_measured(text, Flavor::Markdown, MAX_MARKDOWN_BYTES, |t| {
                    compose(t).len()
                }))
            };
            json!({ "msgtype": "markdown", "markdown": { "content": content } })
        }
        WecomMsgType::MarkdownV2 => {
            let content = limit::fit(text, MAX_MARKDOWN_BYTES, Flavor::Markdown);
            json!({ "msgtype": "markdown_v2", "markdown_v2": { "content": content } })
        }
    }
}

/// The mentions a message type cannot carry, as warnings.
pub fn mention_warnings(msgtype: WecomMsgType, mention: &Mention) -> Vec<String> {
    let mut out = Vec::new();
    match msgtype {
        WecomMsgType::Text => {}
        WecomMsgType::Markdown => {
            if !mention.mobiles.is_empty() {
                out.push(
                    "wecom markdown messages cannot mention by mobile; mobiles are dropped (use msgtype \
                     \"text\", or user_ids)"
                        .to_string(),
                );
            }
            if mention.all {
                out.push(
                    "wecom markdown messages cannot mention everyone; `all` is dropped (use msgtype \"text\")"
                        .to_string(),
                );
            }
        }
        WecomMsgType::MarkdownV2 => {
            if !mention.is_empty() {
                out.push(
                    "wecom markdown_v2 messages cannot mention anyone; the mention is dropped (use msgtype \
                     \"text\" or \"markdown\")"
                        .to_string(),
                );
            }
        }
    }
    out
}

/// WeCom's `errcode` table (reference §2.5).
///
/// | errcode | verdict |
/// |---|---|
/// | 0 | delivered |
/// | -1 (busy) | transient |
/// | 45009 (api freq out of limit) | transient, retry after 60 s |
/// | 93000 (invalid webhook url), 40058 (invalid parameter, too long), 40008 (invalid message type), 44001 | permanent |
/// | any other | permanent: the robot refused the message and nothing says a retry helps |
pub fn classify(code: i64, _errmsg: &str) -> Verdict {
    match code {
        0 => Verdict::Delivered,
        -1 => Verdict::Transient { retry_after: None },
        45009 => Verdict::Transient { retry_after: Some(RATE_LIMIT_WAIT) },
        _ => Verdict::Permanent,
    }
}

#[async_trait]
impl Channel for Wecom {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Wecom
    }

    fn prepare(&self, input: &Prepare<'_>) -> Message {
        let mut errors = Vec::new();
        let text = robot::render_part(
            &self.deps.renderer,
            input,
            self.kind(),
            self.cfg.msgtype.as_str(),
            &mut errors,
        );
        let json = build_body(self.cfg.msgtype, &text, input.mention);
        Message { body: MessageBody::Json { json }, template_errors: errors }
    }

    fn preview(&self, msg: &Message, _attempt: &Attempt) -> RequestPreview {
        let body = robot::json_body(msg).cloned().unwrap_or(Value::Null);
        HttpRequest::post_json(self.cfg.url.expose().clone(), &body).preview(&[])
    }

    async fn send(&self, msg: &Message, _attempt: &Attempt) -> Outcome {
        let Some(body) = robot::json_body(msg) else {
            return Outcome::permanent("the stored message is not a WeCom JSON body");
        };
        let req = HttpRequest::post_json(self.cfg.url.expose().clone(), body);
        let secrets = robot::url_secrets(self.cfg.url.expose(), None);
        robot::deliver(&self.deps.http, req, self.timeout, &secrets, robot::read_errcode, classify).await
    }

    fn check_templates(&self, template: &str, ctx: &Value) -> Vec<String> {
        robot::check_parts(&self.deps.renderer, template, self.kind(), &[self.cfg.msgtype.as_str()], ctx)
    }

    fn check_mention(&self, mention: &Mention) -> Vec<String> {
        mention_warnings(self.cfg.msgtype, mention)
    }

    fn rate_key(&self) -> &str {
        self.cfg.url.expose().as_str()
    }
}

#[cfg(test)]
mod tests;
