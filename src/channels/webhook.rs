//! Webhook channel (work in progress).

#![allow(dead_code)]

use std::time::Duration;

use async_trait::async_trait;

use super::{Attempt, Channel, ChannelDeps, ChannelKind, Message, Outcome, Prepare, RequestPreview};
use crate::config::{Mention, WebhookConfig};

pub struct Webhook {
    name: String,
    cfg: WebhookConfig,
    timeout: Duration,
    deps: ChannelDeps,
}

impl Webhook {
    pub fn new(name: &str, cfg: WebhookConfig, timeout: Duration, deps: &ChannelDeps) -> Self {
        Self { name: name.into(), cfg, timeout, deps: deps.clone() }
    }
}

#[async_trait]
impl Channel for Webhook {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }
    fn prepare(&self, _input: &Prepare<'_>) -> Message {
        todo!()
    }
    fn preview(&self, _msg: &Message, _attempt: &Attempt) -> RequestPreview {
        todo!()
    }
    async fn send(&self, _msg: &Message, _attempt: &Attempt) -> Outcome {
        todo!()
    }
    fn check_templates(&self, _template: &str, _ctx: &serde_json::Value) -> Vec<String> {
        todo!()
    }
    fn check_mention(&self, _mention: &Mention) -> Vec<String> {
        todo!()
    }
    fn rate_key(&self) -> String {
        todo!()
    }
}
