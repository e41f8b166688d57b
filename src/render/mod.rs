//! Templates: one Handlebars registry of built-in and user templates, the helpers, the
//! template context, and `${NAME}` interpolation of rule `content`.
//!
//! Lookup (SPEC §5): a body template named N for a channel of type T and message type M is
//! `N.T.M.hbs`, then `N.T.hbs`, then `N.hbs`; a named part P (`title`, `subject`, `html`) is
//! `N.T.P.hbs`, then `N.P.hbs`. Each name is looked up in the configured dir first, then among
//! the built-ins embedded from `templates/`.

use std::path::Path;

use crate::event::Event;

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

/// The registries of built-in and user templates.
pub struct Renderer {
    _private: (),
}

impl Renderer {
    /// Loads the built-ins and, when given, every `*.hbs` file in `user_dir`. Returns every
    /// template syntax error at once, each naming its file.
    pub fn new(user_dir: Option<&Path>) -> Result<Renderer, Vec<String>> {
        let _ = user_dir;
        todo!("render::Renderer::new")
    }

    /// True when any template file named N (`N.hbs` or `N.*.hbs`) exists.
    pub fn has_template(&self, name: &str) -> bool {
        let _ = name;
        todo!()
    }

    /// Strict rendering, for `herald check` and tests: resolves `name` for the channel type and
    /// part, and renders it against `ctx`.
    pub fn try_render(
        &self,
        name: &str,
        channel_type: &str,
        part: &str,
        ctx: &serde_json::Value,
    ) -> Result<String, RenderError> {
        let _ = (name, channel_type, part, ctx);
        todo!()
    }

    /// Run-time rendering: like `try_render`, but a failure falls back to the built-in
    /// `default` for the same channel type and part, logs a warning, and reports the error.
    pub fn render(&self, name: &str, channel_type: &str, part: &str, ctx: &serde_json::Value) -> Rendered {
        let _ = (name, channel_type, part, ctx);
        todo!()
    }
}

/// The template context: the event's fields plus the rule's extras.
pub fn context(event: &Event, extras: &ContextExtras<'_>) -> serde_json::Value {
    let _ = (event, extras);
    todo!()
}

/// Flow-style `${NAME}` interpolation for rule `content`: looks NAME up in the event's params,
/// then its fields; an unknown name is left as written.
pub fn interpolate_content(content: &str, event: &Event) -> String {
    let _ = (content, event);
    todo!()
}
