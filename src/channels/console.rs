//! Console channel (work in progress).

#![allow(dead_code)]

use async_trait::async_trait;

use super::{Attempt, Channel, ChannelDeps, ChannelKind, Message, Outcome, Prepare, RequestPreview};
use crate::config::{ConsoleConfig, Mention};

pub struct Console {
    name: String,
    cfg: ConsoleConfig,

    deps: ChannelDeps,
}

impl Console {
    pub fn new(name: &str, cfg: ConsoleConfig, deps: &ChannelDeps) -> Self {
        Self { name: name.into(), cfg, deps: deps.clone() }
    }
}

#[async_trait]
impl Channel for Console {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> ChannelKind {
        ChannelKind::Console
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
