//! The console channel: prints each rendered message to standard output.
//!
//! It exists for trying Herald out and for dry-run deployments, so it mirrors what a chat
//! channel would carry: the text rendered from the template (channel type `console`, part
//! `text`) and, on a line of its own, the mentions a rule asked for. Printing cannot fail in a
//! way a retry would fix, so every attempt is delivered.

use std::sync::Arc;

use async_trait::async_trait;

use super::RequestPreview;
use super::{Attempt, Channel, ChannelDeps, ChannelKind, Message, MessageBody, Outcome, Prepare};
use crate::config::{ConsoleConfig, Mention};
use crate::render::Renderer;

/// A configured `type = "console"` channel.
pub struct Console {
    name: String,
    /// Each console channel is a robot of its own.
    rate_key: String,
    renderer: Arc<Renderer>,
}

impl Console {
    /// The console takes no settings beyond the common ones.
    pub fn new(name: &str, cfg: ConsoleConfig, deps: &ChannelDeps) -> Self {
        let ConsoleConfig {} = cfg;
        Console {
            name: name.to_string(),
            rate_key: format!("console {name}"),
            renderer: deps.renderer.clone(),
        }
    }

    /// The block `send` prints: a header line naming the channel and the delivery, then the text.
    pub fn output(&self, msg: &Message, attempt: &Attempt) -> String {
        let mut out = format!(
            "=== herald channel \"{}\" delivery {} attempt {} ===\n",
            self.name, attempt.delivery_id, attempt.number
        );
        out.push_str(&text_of(msg));
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

/// The message's printable text, whatever transport it was built for.
fn text_of(msg: &Message) -> String {
    match &msg.body {
        MessageBody::Text { text } => text.clone(),
        MessageBody::Raw { body, .. } => body.clone(),
        MessageBody::Email { subject, text, .. } => format!("{subject}\n\n{text}"),
        MessageBody::Json { json } => serde_json::to_string_pretty(json).unwrap_or_default(),
    }
}

/// One line listing the mentions, the way a chat text would spell them.
fn mention_line(m: &Mention) -> Option<String> {
    if m.is_empty() {
        return None;
    }
    let mut who: Vec<String> = m.mobiles.iter().chain(&m.user_ids).map(|x| format!("@{x}")).collect();
    if m.all {
        who.push("@all".into());
    }
    Some(format!("mentions: {}", who.join(" ")))
}

#[async_trait]
impl Channel for Console {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Console
    }

    fn prepare(&self, input: &Prepare<'_>) -> Message {
        let r = self.renderer.render(input.template, "console", "text", input.ctx());
        let mut text = r.text;
        if let Some(line) = mention_line(input.mention) {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&line);
        }
        Message {
            body: MessageBody::Text { text },
            template_errors: r.error.map(|e| format!("text: {e}")).into_iter().collect(),
        }
    }

    fn preview(&self, msg: &Message, _attempt: &Attempt) -> RequestPreview {
        RequestPreview { method: "PRINT".into(), url: "stdout".into(), headers: vec![], body: text_of(msg) }
    }

    async fn send(&self, msg: &Message, attempt: &Attempt) -> Outcome {
        // One `print!` per message, so concurrent deliveries do not interleave their lines.
        print!("{}", self.output(msg, attempt));
        Outcome::delivered(None, None, "printed to stdout")
    }

    fn check_templates(&self, template: &str, ctx: &serde_json::Value) -> Vec<String> {
        match self.renderer.try_render(template, "console", "text", ctx) {
            Ok(_) => vec![],
            Err(e) => vec![format!("text: {e}")],
        }
    }

    fn check_mention(&self, _mention: &Mention) -> Vec<String> {
        // Mentions are printed as a line of their own: nothing is lost.
        vec![]
    }

    fn rate_key(&self) -> &str {
        &self.rate_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mention_lines() {
        assert_eq!(mention_line(&Mention::default()), None);
        let m = Mention {
            mobiles: vec!["138".into()],
            user_ids: vec!["zhang".into()],
            all: true,
            ..Mention::default()
        };
        assert_eq!(mention_line(&m).unwrap(), "mentions: @138 @zhang @all");
    }

    #[tokio::test]
    async fn prepares_prints_and_previews() {
        let renderer = Arc::new(Renderer::new(None).expect("built-in templates"));
        let deps = ChannelDeps { renderer, http: reqwest::Client::new() };
        let ch = Console::new("stdout", ConsoleConfig {}, &deps);
        let event = crate::event::Event::sample();
        let ctx = crate::render::context(&event, &Default::default());
        let mention = Mention { mobiles: vec!["13800000000".into()], ..Mention::default() };
        let msg = ch.prepare(&Prepare::new(&event, Default::default(), "default", &mention));
        assert!(msg.template_errors.is_empty(), "{:?}", msg.template_errors);
        let MessageBody::Text { text } = &msg.body else { panic!("{msg:?}") };
        assert!(text.contains("payments-api") && text.ends_with("mentions: @13800000000"), "{text}");

        let attempt = Attempt::first("d-7");
        let out = ch.output(&msg, &attempt);
        assert!(out.starts_with("=== herald channel \"stdout\" delivery d-7 attempt 1 ===\n"), "{out}");
        assert!(ch.send(&msg, &attempt).await.is_delivered());
        let p = ch.preview(&msg, &attempt);
        assert_eq!((p.method.as_str(), p.url.as_str(), p.body.as_str()), ("PRINT", "stdout", text.as_str()));
        assert!(ch.check_templates("default", &ctx).is_empty());
        assert!(ch.check_templates("no-such-template", &ctx)[0].starts_with("text: "));
        assert!(ch.check_mention(&mention).is_empty());
    }

    #[test]
    fn every_body_kind_prints() {
        let msg = |body| Message { body, template_errors: vec![] };
        assert_eq!(text_of(&msg(MessageBody::Text { text: "hi".into() })), "hi");
        let email =
            MessageBody::Email { subject: "S".into(), text: "T".into(), html: "<p>H</p>".into(), to: vec![] };
        assert_eq!(text_of(&msg(email)), "S\n\nT");
        let json = MessageBody::Json { json: serde_json::json!({"a": 1}) };
        assert!(text_of(&msg(json)).contains("\"a\": 1"));
    }
}
