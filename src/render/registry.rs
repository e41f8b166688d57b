//! Template sources and lookup: the embedded built-ins, the user's directory, the two
//! Handlebars registries, and the candidate names for a (name, channel type, part).
//!
//! Every template is registered in both registries: one that does not escape (chat markdown,
//! text, titles, subjects, webhook bodies) and one that HTML-escapes (the email `html` part).
//! The output decides the escape, so a user partial works in either. Built-ins are also kept
//! under a private prefix, so the run-time fallback reaches them even when a user file
//! overrides one.
//!
//! A built-in that begins with the built-in `default` for its place (`failure.dingtalk` is
//! `{{> default.dingtalk}}` and then its own lines) follows `default`'s lookup: where a user's
//! template is what `default` resolves to, the built-in is used as re-made around that one.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use handlebars::{Handlebars, Template};

use super::{helpers, PARTS};

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registries").field("user", &self.user).field("builtin", &self.builtin).finish()
    }
}

/// The name prefix under which every built-in stays reachable.
const BUILTIN_PREFIX: &str = "herald:builtin/";

/// The name prefix of a built-in that wraps `default`, re-made around a user's `default`:
/// `herald:around/<built-in>/<user template>`.
const AROUND_PREFIX: &str = "herald:around/";

macro_rules! builtins {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name, ".hbs")))),*]
    };
}

/// The built-in templates: (name, source), embedded from `templates/<name>.hbs`.
pub(super) const BUILTINS: &[(&str, &str)] = builtins![
    "default",
    "default.title",
    "default.dingtalk",
    "default.dingtalk.text",
    "default.dingtalk.actionCard",
    "default.wecom",
    "default.wecom.text",
    "default.wecom.markdown_v2",
    "default.lark",
    "default.lark.post",
    "default.lark.text",
    "default.email.subject",
    "default.email.text",
    "default.email.html",
    "default.webhook",
    "default.console",
    "failure",
    "failure.streak.md",
    "failure.streak.text",
    "failure.dingtalk",
    "failure.dingtalk.text",
    "failure.dingtalk.actionCard",
    "failure.wecom",
    "failure.wecom.text",
    "failure.wecom.markdown_v2",
    "failure.lark",
    "failure.lark.post",
    "failure.lark.text",
    "failure.email.text",
    "failure.webhook",
    "failure.console",
    "summary",
    "summary.title",
    "summary.subject",
    "summary.html",
    "summary.dingtalk.text",
    "summary.wecom.text",
    "summary.lark",
    "summary.lark.text",
    "summary.lark.post",
    "summary.console",
    "summary.email.text",
    "summary.webhook",
];

/// Where a template comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Origin {
    /// The user's directory first, then the built-ins.
    Any,
    /// Only the built-ins.
    Builtin,
}

/// Both registries and the names each origin provides.
pub(super) struct Registries {
    plain: Handlebars<'static>,
    html: Handlebars<'static>,
    /// Copies of the two without strict mode, made the first time a template at run time
    /// meets a value absent below a known name (see `Renderer::render_key`).
    plain_lenient: OnceLock<Handlebars<'static>>,
    html_lenient: OnceLock<Handlebars<'static>>,
    user: BTreeSet<String>,
    builtin: BTreeSet<String>,
    /// The built-ins that begin with the built-in `default` for their place.
    wrappers: BTreeSet<String>,
}

impl Registries {
    /// Loads the built-ins, then every `*.hbs` in `user_dir`; collects every error.
    pub(super) fn load(user_dir: Option<&Path>) -> Result<Registries, Vec<String>> {
        Registries::load_from(BUILTINS, user_dir)
    }

    /// `load`, with the built-ins given: tests use none, as parsing them all is slow in a
    /// debug build.
    pub(super) fn load_from(
        builtins: &[(&str, &str)],
        user_dir: Option<&Path>,
    ) -> Result<Registries, Vec<String>> {
        let mut regs = Registries {
            plain: new_registry(handlebars::no_escape),
            html: new_registry(handlebars::html_escape),
            plain_lenient: OnceLock::new(),
            html_lenient: OnceLock::new(),
            user: BTreeSet::new(),
            builtin: BTreeSet::new(),
            wrappers: BTreeSet::new(),
        };
        let mut errors = Vec::new();
        for (name, source) in builtins {
            let file = format!("templates/{name}.hbs (built-in)");
            if regs.add(&[&format!("{BUILTIN_PREFIX}{name}"), name], source, &file, &mut errors) {
                regs.builtin.insert((*name).to_string());
            }
        }
        let mut user_defaults = Vec::new();
        if let Some(dir) = user_dir {
            for (name, path) in user_files(dir, &mut errors) {
                let file = path.display().to_string();
                match std::fs::read_to_string(&path) {
                    Ok(source) => {
                        if regs.add(&[&name], &source, &file, &mut errors) {
                            if in_family("default", &name) && !is_part(&name) {
                                user_defaults.push((name.clone(), source, file));
                            }
                            regs.user.insert(name);
                        }
                    }
                    Err(e) => errors.push(format!("{file}: cannot read template: {e}")),
                }
            }
        }
        // Each wrapper around each user `default`: the user's source, then the wrapper's own
        // lines, on a line of their own as after a built-in `default`.
        for (name, source) in builtins {
            let Some(own_lines) = after_default(source) else { continue };
            regs.wrappers.insert((*name).to_string());
            for (user, user_source, file) in &user_defaults {
                let key = format!("{AROUND_PREFIX}{name}/{user}");
                let end = if user_source.ends_with('\n') { "" } else { "\n" };
                // A last tag that trims the white space after it (`{{x~}}`) would trim the line
                // break before the wrapper's lines too (a comment does not stop it): an empty
                // block takes the trim, and the line break after it stays.
                let trims = user_source.trim_end().trim_end_matches('}').ends_with('~');
                let stop = if trims { "{{#if false}}{{/if}}\n" } else { "" };
                regs.add(&[&key], &format!("{user_source}{end}{stop}{own_lines}"), file, &mut errors);
            }
        }
        if errors.is_empty() {
            Ok(regs)
        } else {
            Err(errors)
        }
    }

    /// Parses one source and registers it under every key in both registries; on a syntax
    /// error, records it as `file:line:col: reason` and returns false.
    fn add(&mut self, keys: &[&str], source: &str, file: &str, errors: &mut Vec<String>) -> bool {
        match Template::compile_with_name(source, keys[0].to_string()) {
            Ok(template) => {
                for key in keys {
                    self.plain.register_template(key, template.clone());
                    self.html.register_template(key, template.clone());
                }
                true
            }
            Err(e) => {
                let at = e.pos().map(|(line, col)| format!(":{line}:{col}")).unwrap_or_default();
                errors.push(format!("{file}{at}: {}", e.reason()));
                false
            }
        }
    }

    /// True when any template is named `name` or `name.*`.
    pub(super) fn has_family(&self, name: &str) -> bool {
        self.user.iter().chain(&self.builtin).any(|n| in_family(name, n))
    }

    /// The first candidate in the user's dir, else the first among the built-ins, as
    /// (registry key, template name).
    pub(super) fn resolve(&self, candidates: &[String], origin: Origin) -> Option<(String, String)> {
        let user = candidates.iter().filter(|_| origin == Origin::Any).find(|c| self.user.contains(*c));
        match user {
            Some(c) => Some((c.clone(), c.clone())),
            None => candidates
                .iter()
                .find(|c| self.builtin.contains(*c))
                .map(|c| (format!("{BUILTIN_PREFIX}{c}"), c.clone())),
        }
    }

    /// `found` (from [`resolve`](Registries::resolve)) for a channel type and part, or, when it
    /// is a built-in that begins with `default` and `default` there resolves to a user's
    /// template, that built-in re-made around the user's template. The name given with it is
    /// the user's, whose lines come first, so an error names the user's file and line.
    pub(super) fn around_user_default(
        &self,
        found: (String, String),
        channel_type: &str,
        part: &str,
    ) -> (String, String) {
        let (key, template) = &found;
        if !key.starts_with(BUILTIN_PREFIX) || !self.wrappers.contains(template) {
            return found;
        }
        match self.resolve(&candidates("default", channel_type, part), Origin::Any) {
            Some((_, user)) if self.user.contains(&user) => {
                (format!("{AROUND_PREFIX}{template}/{user}"), user)
            }
            _ => found,
        }
    }

    /// The registry whose escape fits the output: HTML for the `html` part and `*.html`
    /// templates, none otherwise; strict, or not.
    pub(super) fn for_output(&self, part: &str, template: &str, strict: bool) -> &Handlebars<'static> {
        let (registry, lenient) = if part == "html" || template.ends_with(".html") {
            (&self.html, &self.html_lenient)
        } else {
            (&self.plain, &self.plain_lenient)
        };
        if strict {
            return registry;
        }
        lenient.get_or_init(|| {
            let mut copy = registry.clone();
            copy.set_strict_mode(false);
            copy
        })
    }
}

/// The names to try, best first: `N.T.M`, `N.T`, `N` for a body (M = `part`), or `N.T.P`,
/// `N.P` for a named part.
pub(super) fn candidates(name: &str, channel_type: &str, part: &str) -> Vec<String> {
    if PARTS.contains(&part) {
        return vec![format!("{name}.{channel_type}.{part}"), format!("{name}.{part}")];
    }
    let mut list = Vec::with_capacity(3);
    if !part.is_empty() {
        list.push(format!("{name}.{channel_type}.{part}"));
    }
    if !channel_type.is_empty() {
        list.push(format!("{name}.{channel_type}"));
    }
    list.push(name.to_string());
    list
}

/// Whether `name` is a registry key of Herald's own (a built-in's copy, a re-made wrapper)
/// rather than a template's file name.
pub(super) fn is_private(name: &str) -> bool {
    name.starts_with(BUILTIN_PREFIX) || name.starts_with(AROUND_PREFIX)
}

/// Whether the registry key `key` is a built-in as it ships (not re-made around a user's
/// `default`).
pub(super) fn is_builtin(key: &str) -> bool {
    key.starts_with(BUILTIN_PREFIX)
}

/// Whether template `name` is a part (`default.title`, `default.email.html`), not a body.
fn is_part(name: &str) -> bool {
    name.rsplit('.').next().is_some_and(|last| PARTS.contains(&last))
}

/// Whether template `name` is `family` or `family.*`.
fn in_family(family: &str, name: &str) -> bool {
    name.strip_prefix(family).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// For a template whose first line is only `{{> default}}` or `{{> default.*}}`, the lines
/// after it.
fn after_default(source: &str) -> Option<&str> {
    let (first, rest) = source.split_once('\n')?;
    let included = first.trim().strip_prefix("{{>")?.strip_suffix("}}")?.trim();
    in_family("default", included).then_some(rest)
}

fn new_registry(escape: fn(&str) -> String) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(escape);
    helpers::register(&mut hb);
    hb
}

/// Every `<name>.hbs` file directly in `dir`, sorted by name.
fn user_files(dir: &Path, errors: &mut Vec<String>) -> Vec<(String, std::path::PathBuf)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(format!("{}: cannot read templates dir: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .filter_map(|path| {
            let file_name = path.file_name()?.to_str()?;
            let name = file_name.strip_suffix(".hbs").filter(|n| !n.is_empty())?;
            Some((name.to_string(), path.clone()))
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_file_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut errors = Vec::new();
        let on_disk: BTreeSet<String> = user_files(&dir, &mut errors).into_iter().map(|(n, _)| n).collect();
        assert!(errors.is_empty(), "{errors:?}");
        let embedded: BTreeSet<String> = BUILTINS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(on_disk, embedded, "templates/ and BUILTINS differ");
    }

    #[test]
    fn candidate_order() {
        assert_eq!(
            candidates("ops", "dingtalk", "markdown"),
            ["ops.dingtalk.markdown", "ops.dingtalk", "ops"]
        );
        assert_eq!(candidates("ops", "email", "subject"), ["ops.email.subject", "ops.subject"]);
        assert_eq!(candidates("ops", "webhook", "body"), ["ops.webhook.body", "ops.webhook", "ops"]);
        assert_eq!(candidates("ops", "console", ""), ["ops.console", "ops"]);
    }
}
