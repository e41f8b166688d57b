//! Outbound channels: one trait, one file per platform.
//!
//! A channel owns its platform's wire format: it builds the message around rendered template
//! text (title, mentions, keyword, size limit) when an event is accepted, and signs and sends it
//! when the delivery worker asks. It judges success by the platform's own answer and classifies
//! every failure as transient or permanent. A channel never retries: the delivery worker decides
//! when to try again.

pub mod console;
pub mod dingtalk;
pub mod email;
pub mod http;
pub mod lark;
pub mod limit;
mod robot;
pub mod webhook;
pub mod wecom;

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::{ChannelConfig, ChannelSpec, Mention};
use crate::event::Event;
use crate::render::{ContextExtras, Renderer};

/// The channel types, as written in config `type = "..."` and used in template names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Dingtalk,
    Wecom,
    Lark,
    Email,
    Webhook,
    Console,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::Wecom => "wecom",
            ChannelKind::Lark => "lark",
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Console => "console",
        }
    }
}

/// What a channel needs to build one message, when an event is accepted.
pub struct Prepare<'a> {
    pub event: &'a Event,
    /// What the rule adds to the event.
    pub extras: ContextExtras<'a>,
    /// The template name chosen by the rule or the channel (`default` otherwise).
    pub template: &'a str,
    pub mention: &'a Mention,
    /// The event as JSON, when the caller already has it (the gateway stores it too).
    event_json: Option<&'a str>,
    /// The template context, built on first use: a message that needs no template (the
    /// default webhook body) never pays for it.
    ctx: OnceCell<serde_json::Value>,
}

impl<'a> Prepare<'a> {
    pub fn new(event: &'a Event, extras: ContextExtras<'a>, template: &'a str, mention: &'a Mention) -> Self {
        Prepare { event, extras, template, mention, event_json: None, ctx: OnceCell::new() }
    }

    /// The same, with the event already serialized (`serde_json::to_string(event)`).
    pub fn with_event_json(mut self, json: &'a str) -> Self {
        self.event_json = Some(json);
        self
    }

    /// The event as JSON.
    pub fn event_json(&self) -> std::borrow::Cow<'a, str> {
        match self.event_json {
            Some(json) => json.into(),
            None => serde_json::to_string(self.event).unwrap_or_default().into(),
        }
    }

    /// With a template context the caller built (a summary adds fields of its own).
    pub fn with_context(
        event: &'a Event,
        ctx: serde_json::Value,
        template: &'a str,
        mention: &'a Mention,
    ) -> Self {
        Prepare {
            event,
            extras: ContextExtras::default(),
            template,
            mention,
            event_json: None,
            ctx: OnceCell::from(ctx),
        }
    }

    /// The template context (see `render::context`).
    pub fn ctx(&self) -> &serde_json::Value {
        self.ctx.get_or_init(|| crate::render::context(self.event, &self.extras))
    }
}

/// A message ready to send, stored in the outbox. Retries send exactly this; only timestamps
/// and signatures are added per attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub body: MessageBody,
    /// Template failures met while rendering; the message was rendered with the built-in
    /// default instead. Recorded, never fatal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_errors: Vec<String>,
}

/// The stored form of a message, per transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MessageBody {
    /// A chat robot's JSON body, without timestamp or signature.
    Json { json: serde_json::Value },
    /// An email. `to` holds the rule's people, by their `email`, sent to besides the channel's
    /// own recipients (absent in messages stored before there were people).
    Email {
        subject: String,
        text: String,
        html: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        to: Vec<String>,
    },
    /// A generic webhook body.
    Raw { body: String, content_type: String },
    /// Console text.
    Text { text: String },
}

/// One send attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Stable across retries of one delivery: DingTalk `msgUuid`, webhook `webhook-id`.
    pub delivery_id: String,
    /// 1 for the first attempt.
    pub number: u32,
    /// The attempt's clock, for timestamps and signatures.
    pub now: SystemTime,
}

impl Attempt {
    pub fn first(delivery_id: impl Into<String>) -> Attempt {
        Attempt { delivery_id: delivery_id.into(), number: 1, now: SystemTime::now() }
    }
}

/// What the worker should do after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Delivered,
    /// Worth retrying; `retry_after` is the platform's hint (Retry-After, or a rate-limit code).
    Transient {
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (bad token, signature, keyword, size, 4xx).
    Permanent,
}

/// The result of one attempt, with the platform's own reason. Never holds a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub http_status: Option<u16>,
    /// The platform's code: DingTalk/WeCom `errcode`, Lark `code`, SMTP reply code.
    pub code: Option<i64>,
    /// The platform's message, or the transport error, with secrets scrubbed.
    pub detail: String,
}

impl Outcome {
    pub fn delivered(http_status: Option<u16>, code: Option<i64>, detail: impl Into<String>) -> Outcome {
        Outcome { verdict: Verdict::Delivered, http_status, code, detail: detail.into() }
    }
    pub fn transient(detail: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Transient { retry_after: None },
            http_status: None,
            code: None,
            detail: detail.into(),
        }
    }
    pub fn permanent(detail: impl Into<String>) -> Outcome {
        Outcome { verdict: Verdict::Permanent, http_status: None, code: None, detail: detail.into() }
    }
    pub fn is_delivered(&self) -> bool {
        self.verdict == Verdict::Delivered
    }
}

/// The exact request a message would produce, for `herald render`. Secrets are redacted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestPreview {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A configured destination.
#[async_trait]
pub trait Channel: Send + Sync {
    /// The channel's name in config.
    fn name(&self) -> &str;
    fn kind(&self) -> ChannelKind;
    /// Renders and builds the message for one event. Never fails: a template error falls back
    /// to the built-in default and is recorded in `Message::template_errors`.
    fn prepare(&self, input: &Prepare<'_>) -> Message;
    /// The request `send` would make for this message, with secrets redacted.
    fn preview(&self, msg: &Message, attempt: &Attempt) -> RequestPreview;
    /// Makes one attempt.
    async fn send(&self, msg: &Message, attempt: &Attempt) -> Outcome;
    /// Strict rendering for `herald check`: every template this channel would use for the
    /// given template name, rendered against `ctx`; the errors, each as one line.
    fn check_templates(&self, template: &str, ctx: &serde_json::Value) -> Vec<String>;
    /// Warnings about mentions this channel's message type cannot carry.
    fn check_mention(&self, mention: &Mention) -> Vec<String>;
    /// What identifies the robot for rate limiting (its URL, credentials included: never print it).
    fn rate_key(&self) -> &str;
}

/// Shared resources handed to every channel at construction.
#[derive(Clone)]
pub struct ChannelDeps {
    pub renderer: Arc<Renderer>,
    pub http: reqwest::Client,
}

/// Why a channel cannot be built from its config: the key at fault, relative to the channel's
/// table (`headers`, `ca_file`), and what is wrong with it. It never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BuildError {
    pub field: String,
    pub message: String,
}

impl BuildError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> BuildError {
        BuildError { field: field.into(), message: message.into() }
    }
}

/// Builds a channel from its validated config; every error, when it cannot be.
pub fn build(cfg: &ChannelConfig, deps: &ChannelDeps) -> Result<Arc<dyn Channel>, Vec<BuildError>> {
    let timeout = Duration::from_millis(cfg.common.timeout_ms);
    let ch: Arc<dyn Channel> = match &cfg.spec {
        ChannelSpec::Dingtalk(c) => Arc::new(dingtalk::Dingtalk::new(&cfg.name, c.clone(), timeout, deps)),
        ChannelSpec::Wecom(c) => Arc::new(wecom::Wecom::new(&cfg.name, c.clone(), timeout, deps)),
        ChannelSpec::Lark(c) => Arc::new(lark::Lark::new(&cfg.name, c.clone(), timeout, deps)),
        ChannelSpec::Email(c) => Arc::new(email::Email::new(&cfg.name, c.clone(), timeout, deps)?),
        ChannelSpec::Webhook(c) => Arc::new(webhook::Webhook::new(&cfg.name, c.clone(), timeout, deps)?),
        ChannelSpec::Console(c) => Arc::new(console::Console::new(&cfg.name, c.clone(), deps)),
    };
    Ok(ch)
}
