//! The template context and rule `content` interpolation.
//!
//! This file owns what a template can see: the serialized event with every SPEC §4 field
//! present (absent ones as `null`), plus the rule's extras. Keeping every known name present is
//! what lets strict mode tell a typo (`{{pipline}}`, an error) from an absent field
//! (`{{#if branch}}`, simply false). It also owns `${NAME}` interpolation of rule `content`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::ContextExtras;
use crate::event::Event;

/// Every top-level name a template may use: the event's fields (SPEC §4, plus `triggered_by`)
/// and the rule's extras. A name outside this list is a typo.
pub(super) const KNOWN_NAMES: &[&str] = &[
    "source",
    "event_id",
    "received_at",
    "status",
    "status_raw",
    "final",
    "phase",
    "pipeline",
    "pipeline_id",
    "pipeline_url",
    "stage",
    "task",
    "build_number",
    "build_url",
    "repo",
    "branch",
    "commit",
    "commit_short",
    "previous_commit",
    "commit_title",
    "author",
    "triggered_by",
    "duration_ms",
    "message",
    "params",
    "artifacts",
    "test_summary",
    "previous_status",
    "failing_since",
    "failure_streak",
    "transition",
    "delivery_id",
    "raw",
    "rule",
    "channel",
    "content",
    "public_url",
];

/// The names the rule adds to the event's own fields: the built-in webhook body leaves them
/// out, since it is the event as JSON (SPEC §5).
pub(super) const EXTRA_NAMES: &[&str] = &["rule", "channel", "content", "public_url"];

/// Builds the context: the event, then the extras, every known name present.
pub(super) fn build(event: &Event, extras: &ContextExtras<'_>) -> Value {
    // Serializing a plain struct of strings, numbers and maps cannot fail; an empty object is
    // still a usable context if it ever did.
    let mut map = match serde_json::to_value(event) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let put = |map: &mut Map<String, Value>, key: &str, value: Option<&str>| {
        map.insert(key.to_string(), value.map_or(Value::Null, |v| Value::String(v.to_string())));
    };
    put(&mut map, "rule", extras.rule);
    put(&mut map, "channel", extras.channel);
    put(&mut map, "content", extras.content.as_deref().filter(|c| !c.is_empty()));
    put(&mut map, "public_url", extras.public_url);
    fill_missing(&mut map);
    Value::Object(map)
}

/// Returns `ctx` with every known name present, cloning only when one is missing. Callers may
/// hand `try_render` a context they serialized themselves; this keeps `{{#if branch}}` working
/// on it.
pub(super) fn complete(ctx: &Value) -> Cow<'_, Value> {
    match ctx {
        Value::Object(map) if KNOWN_NAMES.iter().any(|k| !map.contains_key(*k)) => {
            let mut map = map.clone();
            fill_missing(&mut map);
            Cow::Owned(Value::Object(map))
        }
        _ => Cow::Borrowed(ctx),
    }
}

fn fill_missing(map: &mut Map<String, Value>) {
    for key in KNOWN_NAMES {
        if !map.contains_key(*key) {
            let empty = match *key {
                "params" => Value::Object(Map::new()),
                "artifacts" => Value::Array(Vec::new()),
                _ => Value::Null,
            };
            map.insert((*key).to_string(), empty);
        }
    }
}

/// For `check`, on a copy of a sample context: puts an empty string at `path` (as Handlebars
/// names a missing variable: `params.DEPLOY_ENV`, `raw.build.[full-url]`), creating the objects
/// on the way, when the path lies below a known name (see [`below_known`]), so the render can go
/// on to what follows. Returns false, and changes nothing, for anything else: an unknown first
/// name (a typo), a known name on its own, a path that exists, or one that runs through a
/// string, number or list. Messages being sent never go through this: their context is not
/// changed.
pub(super) fn fill_absent(ctx: &mut Value, path: &str) -> bool {
    let Some(segments) = below_known_segments(path) else { return false };
    let [first, inner @ .., last] = segments.as_slice() else { return false };
    // Look first, so that a path that cannot be filled leaves the context as it was.
    let mut probe = Some(&*ctx);
    for key in std::iter::once(first).chain(inner).chain([last]) {
        match probe {
            None | Some(Value::Null) => break,
            Some(Value::Object(map)) => probe = map.get(*key),
            Some(_) => return false,
        }
    }
    if probe.is_some_and(|v| !v.is_null()) {
        return false;
    }
    let mut at = ctx;
    for key in std::iter::once(first).chain(inner) {
        let Value::Object(map) = at else { return false };
        let next = map.entry(key.to_string()).or_insert(Value::Null);
        if next.is_null() {
            *next = Value::Object(Map::new());
        }
        at = next;
    }
    let Value::Object(map) = at else { return false };
    map.insert(last.to_string(), Value::String(String::new()));
    true
}

/// Whether a path Handlebars found missing lies below a known name (`params.DEPLOY_ENV`): a
/// value the sender did not send, not a typo.
pub(super) fn below_known(path: &str) -> bool {
    below_known_segments(path).is_some()
}

/// A missing variable's path in segments (`params.[DEPLOY-ENV]` → `params`, `DEPLOY-ENV`),
/// when it has two or more and the first is a known name.
fn below_known_segments(path: &str) -> Option<Vec<&str>> {
    let path = path.trim_start_matches("@root.").trim_start_matches("this.").trim_start_matches("./");
    let segments: Vec<&str> = path
        .split(['.', '/'])
        .map(|s| s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(s))
        .collect();
    let known =
        segments.len() >= 2 && KNOWN_NAMES.contains(&segments[0]) && segments.iter().all(|s| !s.is_empty());
    known.then_some(segments)
}

/// `${NAME}` → `event.lookup(NAME)`; an unknown name, or a `${` without a closing brace, is
/// left as written; `$${` writes a literal `${`.
pub(super) fn interpolate(content: &str, event: &Event) -> String {
    let mut out = String::with_capacity(content.len());
    let mut rest = content;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            match after.find('}') {
                Some(end) => {
                    let name = &after[..end];
                    match event.lookup(name.trim()) {
                        Some(value) => out.push_str(&value),
                        None => out.push_str(&tail[..end + 3]),
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(tail);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Status;

    #[test]
    fn interpolation_table() {
        let mut e = Event::sample();
        e.params.insert("CI_COMMIT_TITLE".into(), "fix: refunds".into());
        e.params.insert("EMPTY".into(), String::new());
        let cases = [
            ("Commit: ${CI_COMMIT_TITLE}", "Commit: fix: refunds"),
            ("${pipeline} #${build_number} on ${branch}", "payments-api #42 on main"),
            ("env=${DEPLOY_ENV}", "env=staging"),
            ("${ status }", "failure"),
            ("[${EMPTY}]", "[]"),
            ("keep ${NOPE} as is", "keep ${NOPE} as is"),
            ("literal $${pipeline}", "literal ${pipeline}"),
            ("$$${pipeline}", "$${pipeline}"),
            ("cost: $5, ${final}", "cost: $5, true"),
            ("unclosed ${pipeline", "unclosed ${pipeline"),
            ("trailing $", "trailing $"),
            ("中文 ${author} 完成", "中文 Lin Wei 完成"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(interpolate(input, &e), want, "input {input:?}");
        }
    }

    #[test]
    fn absent_field_is_left_as_written() {
        let e = Event::new("flow", Status::Running, "RUNNING", false);
        assert_eq!(interpolate("on ${branch}", &e), "on ${branch}");
    }

    #[test]
    fn context_has_every_known_name() {
        let e = Event::new("flow", Status::Running, "RUNNING", false);
        let ctx = build(&e, &ContextExtras::default());
        for key in KNOWN_NAMES {
            assert!(ctx.get(*key).is_some(), "missing {key}");
        }
        assert_eq!(ctx["branch"], Value::Null);
        assert_eq!(ctx["params"], serde_json::json!({}));
        assert_eq!(ctx["final"], false);
    }

    #[test]
    fn context_carries_event_and_extras() {
        let extras = ContextExtras {
            rule: Some("payments failures"),
            channel: Some("team-ding"),
            content: Some("Commit: x".into()),
            public_url: Some("https://herald.example.com"),
        };
        let ctx = build(&Event::sample(), &extras);
        assert_eq!(ctx["pipeline"], "payments-api");
        assert_eq!(ctx["build_number"], 42);
        assert_eq!(ctx["test_summary"]["failed"], 2);
        assert_eq!(ctx["params"]["DEPLOY_ENV"], "staging");
        assert_eq!(ctx["rule"], "payments failures");
        assert_eq!(ctx["channel"], "team-ding");
        assert_eq!(ctx["content"], "Commit: x");
        assert_eq!(ctx["public_url"], "https://herald.example.com");
    }

    #[test]
    fn every_field_an_event_can_have_is_a_known_name() {
        let mut e = Event::sample();
        e.previous_status = Some(Status::Success);
        e.failing_since = Some(crate::event::FailingSince { build_number: Some(40), at: "t".into() });
        e.failure_streak = Some(3);
        e.transition = Some(crate::event::Transition::StillFailing);
        e.delivery_id = Some("d".into());
        let Value::Object(fields) = serde_json::to_value(&e).unwrap() else { panic!("an object") };
        for key in fields.keys() {
            assert!(KNOWN_NAMES.contains(&key.as_str()), "{key} is not a known name");
        }
        assert!(EXTRA_NAMES.iter().all(|k| KNOWN_NAMES.contains(k)));
    }

    #[test]
    fn complete_borrows_when_nothing_is_missing() {
        let full = build(&Event::sample(), &ContextExtras::default());
        assert!(matches!(complete(&full), Cow::Borrowed(_)));
        let bare = serde_json::to_value(Event::new("flow", Status::Running, "R", false)).unwrap();
        let done = complete(&bare);
        assert_eq!(done["branch"], Value::Null);
        assert_eq!(done["status"], "running");
    }
}
