//! Templates: one Handlebars registry of built-in and user templates, the helpers, the
//! template context, and `${NAME}` interpolation of rule `content`.
//!
//! Lookup (SPEC §5): a body template named N for a channel of type T and message type M is
//! `N.T.M.hbs`, then `N.T.hbs`, then `N.hbs`; a named part P (`title`, `subject`, `html`) is
//! `N.T.P.hbs`, then `N.P.hbs`. Every name is looked up in the configured dir before any is
//! looked up among the built-ins embedded from `templates/`: a user `default.hbs` overrides the
//! built-in `default.lark.hbs`, and a user `default.dingtalk.hbs` the built-in
//! `default.dingtalk.text.hbs`.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the public API: lookup, strict and run-time rendering, the last-resort text |
//! | `registry.rs` | the embedded built-ins, the user dir, both registries, candidate names |
//! | `helpers.rs` | the helpers and the strict-mode guards on `if`/`unless`/`with`/`each` |
//! | `format.rs` | pure formatting: status emoji and colours, durations, truncation |
//! | `context.rs` | the template context and `${NAME}` content interpolation |
//!
//! Strict mode: Handlebars runs in strict mode, so `{{pipline}}` is an error. The context
//! always holds every known field, absent ones as `null`, so an absent field is never a strict
//! error: `{{#if branch}}`, `{{#with test_summary}}`, `{{#each artifacts}}` and
//! `{{default branch "-"}}` all work on a minimal event, while an unknown top-level name is an
//! error in those helpers too. See `helpers.rs`. A value missing below a known name
//! (`{{params.DEPLOY_ENV}}`, `{{test_summary.failed}}`, `{{raw.build.url}}`) is absent too, and
//! renders empty.
//!
//! Escaping: chat markdown, text, titles, subjects and webhook bodies are not escaped (DingTalk
//! would show `&amp;`); the `html` part and `*.html` templates are HTML-escaped.

use std::path::Path;

use crate::event::Event;

mod context;
mod format;
mod helpers;
mod registry;

use registry::{Origin, Registries};

/// The built-in webhook body that renders the event as JSON.
const EVENT_JSON_TEMPLATE: &str = "default.webhook";

/// How a template is rendered: for `check` (and tests), or for a message being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Check,
    Run,
}

/// The most absent values below known names one `check` render fills in (see `render_key`).
const MAX_ABSENT: usize = 64;

/// Parts that are not message bodies.
pub const PARTS: &[&str] = &["title", "subject", "html"];

/// A template that failed to render.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error("template \"{0}\" not found")]
    NotFound(String),
    #[error("template {template}: {message}")]
    Failed { template: String, message: String },
}

/// The result of a run-time render: the text, and the error that forced the fallback to the
/// built-in default, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    pub error: Option<String>,
}

/// Extra context a rule adds to the event.
#[derive(Debug, Clone, Default)]
pub struct ContextExtras<'a> {
    pub rule: Option<&'a str>,
    pub channel: Option<&'a str>,
    /// The rule's `content`, already interpolated.
    pub content: Option<String>,
    pub public_url: Option<&'a str>,
}

/// The registries of built-in and user templates. Share it behind an `Arc`: rendering takes
/// `&self`.
#[derive(Debug)]
pub struct Renderer {
    regs: Registries,
    /// Whether the webhook body of the `default` template is the built-in one, which is the
    /// event as JSON: then it is serialized directly (see [`Renderer::is_event_json`]).
    builtin_webhook_default: bool,
}

impl Renderer {
    /// Loads the built-ins and, when given, every `*.hbs` file in `user_dir`. Returns every
    /// template syntax error at once, each naming its file.
    pub fn new(user_dir: Option<&Path>) -> Result<Renderer, Vec<String>> {
        Registries::load(user_dir).map(Renderer::from_registries)
    }

    fn from_registries(regs: Registries) -> Renderer {
        let candidates = registry::candidates("default", "webhook", "body");
        let builtin_webhook_default = regs.resolve(&candidates, Origin::Any)
            == regs.resolve(&candidates, Origin::Builtin)
            && regs
                .resolve(&candidates, Origin::Builtin)
                .is_some_and(|(_, name)| name == EVENT_JSON_TEMPLATE);
        Renderer { regs, builtin_webhook_default }
    }

    /// Whether the webhook body for template `name` is the built-in `default`, which renders
    /// the event as JSON with absent fields left out: then the event's JSON, as serde wrote it
    /// for the store, is the body, byte for byte what the template writes (a test holds the two
    /// equal), without Handlebars.
    pub fn is_event_json(&self, name: &str) -> bool {
        name == "default" && self.builtin_webhook_default
    }

    /// A renderer with the user templates only, for tests of the machinery.
    #[cfg(test)]
    fn without_builtins(user_dir: &Path) -> Result<Renderer, Vec<String>> {
        Registries::load_from(&[], Some(user_dir)).map(Renderer::from_registries)
    }

    /// True when any template file named N (`N.hbs` or `N.*.hbs`) exists.
    pub fn has_template(&self, name: &str) -> bool {
        self.regs.has_family(name)
    }

    /// Whether a message made with template `name` has the part `part` beside its body
    /// `body` (an email's HTML beside its text). A part comes from where the body does: a
    /// body of the user's own with no such part of the user's own has none, since a built-in
    /// part would say other things than the user's body, and a mail client shows the HTML.
    pub fn has_part(&self, name: &str, channel_type: &str, body: &str, part: &str) -> bool {
        // A built-in re-made around the user's `default` counts as the user's.
        let users = |resolved: Result<(String, String), RenderError>| {
            resolved.is_ok_and(|(key, _)| !registry::is_builtin(&key))
        };
        !users(self.resolve(name, channel_type, body)) || users(self.resolve(name, channel_type, part))
    }

    /// Strict rendering, for `herald check` and tests: resolves `name` for the channel type and
    /// part, and renders it against `ctx`.
    ///
    /// `part` is the channel's message type (`markdown`, `text`, `body`, ...) for a body, or one
    /// of [`PARTS`]. A part the template `name` does not provide (a user wrote `ops.hbs` but no
    /// `ops.title.hbs`) comes from `default`, as the part is optional; a body is not.
    pub fn try_render(
        &self,
        name: &str,
        channel_type: &str,
        part: &str,
        ctx: &serde_json::Value,
    ) -> Result<String, RenderError> {
        let (key, template) = self.resolve(name, channel_type, part)?;
        self.render_key(&key, &template, part, ctx, Mode::Check)
    }

    /// The template `name` resolves to, as (registry key, template name).
    fn resolve(&self, name: &str, channel_type: &str, part: &str) -> Result<(String, String), RenderError> {
        let mut found = self.regs.resolve(&registry::candidates(name, channel_type, part), Origin::Any);
        if found.is_none() && PARTS.contains(&part) && name != "default" && self.has_template(name) {
            found = self.regs.resolve(&registry::candidates("default", channel_type, part), Origin::Any);
        }
        found
            .map(|found| self.regs.around_user_default(found, channel_type, part))
            .ok_or_else(|| RenderError::NotFound(name.to_string()))
    }

    /// Run-time rendering: like `try_render`, but a failure falls back to the built-in
    /// `default` for the same channel type and part, logs a warning, and reports the error.
    /// Never panics and never returns empty text.
    pub fn render(&self, name: &str, channel_type: &str, part: &str, ctx: &serde_json::Value) -> Rendered {
        let resolved = self.resolve(name, channel_type, part);
        let first =
            resolved.and_then(|(key, template)| self.render_key(&key, &template, part, ctx, Mode::Run));
        let error = match first {
            // Nothing but white space would be an empty message, which a robot refuses or
            // shows blank (a webhook's body may be empty: its request is the message).
            Ok(text) if text.trim().is_empty() && (channel_type != "webhook" || PARTS.contains(&part)) => {
                format!("template \"{name}\" rendered nothing for this event")
            }
            Ok(text) => return Rendered { text, error: None },
            Err(e) => e.to_string(),
        };
        let fallback = self
            .regs
            .resolve(&registry::candidates("default", channel_type, part), Origin::Builtin)
            .ok_or_else(|| RenderError::NotFound("default".to_string()))
            .and_then(|(key, template)| self.render_key(&key, &template, part, ctx, Mode::Run));
        let (text, error) = match fallback {
            Ok(text) if !text.trim().is_empty() => (text, error),
            Ok(_) => (last_resort(channel_type, part, ctx), error),
            Err(e) if e.to_string() == error => (last_resort(channel_type, part, ctx), error),
            Err(e) => (last_resort(channel_type, part, ctx), format!("{error}; built-in default: {e}")),
        };
        tracing::warn!(template = name, channel_type, part, error = %error, "template failed; used the built-in default");
        Rendered { text, error: Some(error) }
    }

    /// Renders in strict mode. A value missing below a known name (`params.DEPLOY_ENV`) is
    /// absent, not a typo, and renders empty as a value absent at the top does; strict mode
    /// stops at it all the same. At run time the template is then rendered without strict mode,
    /// so the event is seen as it is. For `check`, the value is put in a copy of the sample
    /// and the render goes on, so a typo after it is still found.
    fn render_key(
        &self,
        key: &str,
        template: &str,
        part: &str,
        ctx: &serde_json::Value,
        mode: Mode,
    ) -> Result<String, RenderError> {
        // The file at fault: a user partial names itself; otherwise the template resolved (for
        // a built-in re-made around a user's `default`, that user file, whose lines come first).
        let failed = |e: &handlebars::RenderError| RenderError::Failed {
            template: match e.template_name.as_deref() {
                Some(name) if name != key && !registry::is_private(name) => format!("{name}.hbs"),
                _ => format!("{template}.hbs"),
            },
            message: describe(e),
        };
        let mut ctx = context::complete(ctx);
        let mut filled = 0;
        loop {
            let e = match self.regs.for_output(part, template, true).render(key, ctx.as_ref()) {
                Ok(text) => return Ok(tidy(part, text)),
                Err(e) => e,
            };
            let path = match e.reason() {
                handlebars::RenderErrorReason::MissingVariable(Some(path)) if context::below_known(path) => {
                    path.clone()
                }
                _ => return Err(failed(&e)),
            };
            if mode == Mode::Run {
                let lenient = self.regs.for_output(part, template, false);
                return lenient
                    .render(key, ctx.as_ref())
                    .map(|text| tidy(part, text))
                    .map_err(|e| failed(&e));
            }
            if filled < MAX_ABSENT && context::fill_absent(ctx.to_mut(), &path) {
                filled += 1;
                continue;
            }
            return Err(failed(&e));
        }
    }
}

/// Drops the trailing newline a template file ends with; a title or subject becomes one line.
fn tidy(part: &str, text: String) -> String {
    if part == "title" || part == "subject" {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        text.trim_end().to_string()
    }
}

/// One line for a Handlebars error: position, then reason.
fn describe(e: &handlebars::RenderError) -> String {
    let reason = match e.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(path)) => format!("unknown field \"{path}\""),
        other => other.to_string(),
    };
    match (e.line_no, e.column_no) {
        (Some(line), Some(col)) => format!("line {line}, col {col}: {reason}"),
        _ => reason,
    }
}

/// The text sent when even the built-in default fails: one line from the context (status,
/// pipeline, build number), as JSON for a webhook body and escaped for HTML.
fn last_resort(channel_type: &str, part: &str, ctx: &serde_json::Value) -> String {
    let field = |k: &str| match ctx.get(k) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if channel_type == "webhook" && !PARTS.contains(&part) {
        return serde_json::to_string(ctx).unwrap_or_else(|_| "{}".to_string());
    }
    let status = field("status")
        .and_then(|s| crate::event::Status::parse(&s))
        .unwrap_or(crate::event::Status::Unknown);
    let mut line = format!(
        "{} {}",
        format::status_emoji(status),
        field("pipeline").or_else(|| field("source")).unwrap_or_else(|| "Herald event".into())
    );
    if let Some(n) = field("build_number") {
        line.push_str(&format!(" #{n}"));
    }
    line.push_str(&format!(" {status}"));
    if part == "html" {
        line = format!("<p>{}</p>", handlebars::html_escape(&line));
    }
    line
}

/// The template context: the event's fields plus the rule's extras.
///
/// Every SPEC §4 field is present; an absent one is `null` (an empty map or list for `params`
/// and `artifacts`). `rule`, `channel`, `content` and `public_url` are `null` when not given.
pub fn context(event: &Event, extras: &ContextExtras<'_>) -> serde_json::Value {
    context::build(event, extras)
}

/// One line that names an event, for backlog summaries: `❌ payments-api #42 failure · test / unit`.
pub fn headline(event: &Event) -> String {
    let mut line = format!(
        "{} {}",
        format::status_emoji(event.status),
        event.pipeline.as_deref().unwrap_or(&event.source)
    );
    if let Some(n) = event.build_number {
        line.push_str(&format!(" #{n}"));
    }
    line.push(' ');
    line.push_str(event.status.as_str());
    let unit: Vec<&str> = [event.stage.as_deref(), event.task.as_deref()].into_iter().flatten().collect();
    if !unit.is_empty() {
        line.push_str(" · ");
        line.push_str(&unit.join(" / "));
    }
    line
}

/// Flow-style `${NAME}` interpolation for rule `content`: looks NAME up in the event's params,
/// then its fields; an unknown name is left as written, and `$${` writes a literal `${`.
pub fn interpolate_content(content: &str, event: &Event) -> String {
    context::interpolate(content, event)
}

#[cfg(test)]
mod tests;
