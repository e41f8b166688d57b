//! Template helpers, and the strict-mode guards on the block helpers.
//!
//! Value helpers: `status_emoji`, `status_color`, `duration`, `truncate`, `default`, `json`,
//! `eq`, `upper`, `md_cell`, `md_quote`. Block helpers `if`, `unless` and `with` replace Handlebars' own.
//!
//! Strict mode rejects a name the context does not have, in `{{name}}`. The context always
//! has every known field (absent ones as null), so a missing name is a typo. Handlebars' own
//! `#if` does not check its argument (`{{#if pipline}}` would be silently false), and its
//! `#with` fails in strict mode on a null value that has no `{{else}}`. The replacements turn
//! that around: an unknown top-level name is an error in every helper here, and an absent
//! value takes the `{{else}}` branch or renders nothing. `#each` stays Handlebars' own: it
//! already fails on an unknown name, and `params` and `artifacts` are never null.

use handlebars::{
    BlockContext, BlockParams, Context, Handlebars, Helper, HelperDef, HelperResult, JsonTruthy, Output,
    PathAndJson, RenderContext, RenderError, RenderErrorReason, Renderable, ScopedJson,
};
use serde_json::Value;

use crate::event::Status;

use super::format::{duration_text, md_cell, md_quote, status_color, status_emoji, truncate_chars};

/// Registers every helper on `hb`.
pub(super) fn register(hb: &mut Handlebars<'static>) {
    hb.register_helper("if", Box::new(Guarded::If));
    hb.register_helper("unless", Box::new(Guarded::Unless));
    hb.register_helper("with", Box::new(Guarded::With));
    for (name, f) in VALUE_HELPERS {
        hb.register_helper(name, Box::new(ValueHelper(*f)));
    }
}

type ValueFn = fn(&Helper<'_>, &Context) -> Result<Value, RenderError>;

const VALUE_HELPERS: &[(&str, ValueFn)] = &[
    ("status_emoji", |h, ctx| Ok(Value::from(status_emoji(status_arg(h, ctx))))),
    ("status_color", |h, ctx| Ok(Value::from(status_color(status_arg(h, ctx))))),
    ("duration", duration_helper),
    ("truncate", truncate_helper),
    ("default", default_helper),
    ("json", json_helper),
    ("md_cell", |h, _| Ok(Value::from(md_cell(&text_of(arg(h, 0).map_or(&Value::Null, |p| p.value())))))),
    ("md_quote", |h, _| Ok(Value::from(md_quote(&text_of(arg(h, 0).map_or(&Value::Null, |p| p.value())))))),
    ("eq", |h, _| Ok(Value::Bool(arg(h, 0).map(PathAndJson::value) == arg(h, 1).map(PathAndJson::value)))),
    ("upper", |h, _| Ok(Value::from(text_of(arg(h, 0).map_or(&Value::Null, |p| p.value())).to_uppercase()))),
];

struct ValueHelper(ValueFn);

impl HelperDef for ValueHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        for p in h.params() {
            check_known(p, ctx, rc)?;
        }
        (self.0)(h, ctx).map(ScopedJson::Derived)
    }
}

/// The block helpers Herald replaces, so that an absent field renders the `{{else}}` branch or
/// nothing, and an unknown name is an error.
enum Guarded {
    If,
    Unless,
    With,
}

impl HelperDef for Guarded {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let name = h.name();
        let param = h.param(0).ok_or_else(|| RenderErrorReason::Other(format!("#{name} needs a value")))?;
        check_known(param, ctx, rc)?;
        let include_zero = h.hash_get("includeZero").and_then(|v| v.value().as_bool()).unwrap_or(false);
        let truthy = param.value().is_truthy(include_zero);
        let chosen = match self {
            Guarded::If => truthy,
            Guarded::Unless => !truthy,
            Guarded::With => truthy,
        };
        let Some(template) = (if chosen { h.template() } else { h.inverse() }) else {
            return Ok(());
        };
        if !matches!(self, Guarded::With) || !chosen {
            return template.render(r, ctx, rc, out);
        }
        // `#with` on a value: a new scope rooted at it, as Handlebars' own helper makes one,
        // keeping the enclosing block's @index and friends.
        let mut block = BlockContext::new();
        match param.context_path() {
            Some(path) => block.base_path_mut().clone_from(path),
            None => block.set_base_value(param.value().clone()),
        }
        if let Some(parent) = rc.block() {
            block.local_variables_mut().clone_from(parent.local_variables());
        }
        if let Some(alias) = h.block_param() {
            let mut params = BlockParams::new();
            match param.context_path() {
                Some(_) => params.add_path(alias, Vec::new())?,
                None => params.add_value(alias, param.value().clone())?,
            }
            block.set_block_params(params);
        }
        rc.push_block(block);
        let result = template.render(r, ctx, rc, out);
        rc.pop_block();
        result
    }
}

/// Fails when `p` names a top-level field the context does not have: a typo. A missing value
/// below a known name (`params.NOPE`, `test_summary.failed` when absent) is just absent, and
/// inside a block (`#each`, `#with`) names are not checked, since they resolve elsewhere.
fn check_known(p: &PathAndJson<'_>, ctx: &Context, rc: &RenderContext<'_, '_>) -> Result<(), RenderError> {
    let Some(path) = p.relative_path().filter(|_| p.is_value_missing()) else {
        return Ok(());
    };
    let block = rc.block();
    if block.is_some_and(|b| !b.base_path().is_empty()) {
        return Ok(());
    }
    let trimmed = path.trim_start_matches("@root.").trim_start_matches("this.").trim_start_matches("./");
    if trimmed.starts_with('@') || trimmed.starts_with("..") {
        return Ok(());
    }
    let first = trimmed.split(['.', '/', '[']).next().unwrap_or(trimmed);
    if first.is_empty() || block.is_some_and(|b| b.get_block_param(first).is_some()) {
        return Ok(());
    }
    match ctx.data() {
        Value::Object(map) if !map.contains_key(first) => Err(unknown_field(path)),
        _ => Ok(()),
    }
}

/// The error for a name the context does not have.
fn unknown_field(path: &str) -> RenderError {
    RenderErrorReason::Other(format!("unknown field \"{path}\"")).into()
}

fn arg<'a, 'rc>(h: &'a Helper<'rc>, i: usize) -> Option<&'a PathAndJson<'rc>> {
    h.param(i).filter(|p| !p.is_value_missing())
}

/// A string as itself; any other value as its JSON text; null as nothing.
fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The status word from the first argument, or the context's `status` when there is none.
fn status_arg(h: &Helper<'_>, ctx: &Context) -> Status {
    let word = match h.param(0) {
        Some(p) => p.value().as_str().map(str::to_string),
        None => ctx.data().get("status").and_then(Value::as_str).map(str::to_string),
    };
    word.and_then(|w| Status::parse(&w.to_lowercase())).unwrap_or(Status::Unknown)
}

fn duration_helper(h: &Helper<'_>, _: &Context) -> Result<Value, RenderError> {
    let ms = match arg(h, 0).map(PathAndJson::value) {
        None | Some(Value::Null) => return Ok(Value::from("")),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Value::from("")),
        Some(Value::String(s)) => {
            s.trim().parse::<f64>().map_err(|_| bad_arg("duration", "a number of ms"))?
        }
        Some(_) => return Err(bad_arg("duration", "a number of ms")),
    };
    Ok(Value::from(duration_text(ms.max(0.0) as u64)))
}

fn truncate_helper(h: &Helper<'_>, _: &Context) -> Result<Value, RenderError> {
    let text = text_of(arg(h, 0).map_or(&Value::Null, |p| p.value()));
    let max = arg(h, 1)
        .and_then(|p| p.value().as_u64().or_else(|| p.value().as_str().and_then(|s| s.parse().ok())))
        .ok_or_else(|| bad_arg("truncate", "a maximum number of characters as its second argument"))?;
    let marker = arg(h, 2).map_or_else(|| "…".to_string(), |p| text_of(p.value()));
    Ok(Value::from(truncate_chars(&text, max as usize, &marker)))
}

fn default_helper(h: &Helper<'_>, _: &Context) -> Result<Value, RenderError> {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    let value = arg(h, 0).map(PathAndJson::value).filter(|v| !empty(v));
    let fallback = arg(h, 1).map(PathAndJson::value);
    Ok(value.or(fallback).cloned().unwrap_or(Value::Null))
}

fn json_helper(h: &Helper<'_>, _: &Context) -> Result<Value, RenderError> {
    let mut value = arg(h, 0).map_or(Value::Null, |p| p.value().clone());
    let flag = |name: &str| h.hash_get(name).is_some_and(|v| v.value().is_truthy(false));
    if let Value::Object(map) = &mut value {
        if flag("omit_null") {
            map.retain(|_, v| !v.is_null());
        }
        if flag("event_only") {
            map.retain(|k, _| !super::context::EXTRA_NAMES.contains(&k.as_str()));
        }
    }
    let text =
        if flag("pretty") { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) };
    text.map(Value::String).map_err(|e| RenderErrorReason::SerdeError(e).into())
}

fn bad_arg(helper: &str, wanted: &str) -> RenderError {
    RenderErrorReason::Other(format!("{helper} needs {wanted}")).into()
}
