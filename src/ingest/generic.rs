//! Generic sources: any JSON body, mapped onto an event by a configured [`GenericSpec`].
//!
//! The spec gives, per event field, a JSON pointer (RFC 6901) into the body, and maps the
//! sender's status words onto Herald's. The rules:
//!
//! * `status` must point at something: a string, or a number or boolean written as text. The
//!   word goes through `status_map` (exact match first, then ignoring case), else is taken as it
//!   is when it already is a Herald status word (ignoring case), else is `unknown`. `status_raw`
//!   is the word as sent.
//! * `final` is the boolean (or `"true"`/`"false"`) its pointer finds; without one, an event is
//!   final when its status is success, failure, unstable, aborted or skipped.
//! * Any other pointer that finds nothing (or `null`, or `""`) leaves its field absent. Text
//!   fields take strings, numbers and booleans; `build_number` and `duration_ms` take integers or
//!   numeric strings. A value of the wrong shape is a 422 naming the source, the field and the
//!   pointer.
//!
//! Pointer syntax and `status_map` words are checked when the config loads.

use serde_json::Value;

use super::lenient::{wrong_type, At};
use super::{body, text, Inbound, IngestError};
use crate::config::GenericSpec;
use crate::event::{Event, Status};

/// Parses a body for the generic source `name` with its mapping.
pub(crate) fn parse(name: &str, spec: &GenericSpec, req: &Inbound<'_>) -> Result<Event, IngestError> {
    let raw = body::json(req.body)?;
    let mut event = Mapper { name, spec, raw: &raw }.event()?;
    event.raw = raw;
    Ok(event)
}

/// A sender's status word → Herald's status (see the module docs); `final` is not decided here.
pub(crate) fn map_status(word: &str, spec: &GenericSpec) -> Status {
    let mapped = spec.status_map.get(word).or_else(|| {
        let word = word.trim();
        spec.status_map.iter().find(|(k, _)| k.trim().eq_ignore_ascii_case(word)).map(|(_, v)| v)
    });
    let herald_word = mapped.map_or(word, String::as_str).trim().to_ascii_lowercase();
    Status::parse(&herald_word).unwrap_or(Status::Unknown)
}

/// Whether a status closes its unit when the spec has no `final` pointer.
pub(crate) fn default_final(status: Status) -> bool {
    matches!(status, Status::Success | Status::Failure | Status::Unstable | Status::Aborted | Status::Skipped)
}

/// One body read through one spec; errors name the source.
struct Mapper<'a> {
    name: &'a str,
    spec: &'a GenericSpec,
    raw: &'a Value,
}

impl<'a> Mapper<'a> {
    fn event(&self) -> Result<Event, IngestError> {
        let word = self.status_word()?;
        let status = map_status(&word, self.spec);
        let is_final = match self.at("final") {
            Some(at) => self.named("final", at.bool_opt())?.unwrap_or_else(|| default_final(status)),
            None => default_final(status),
        };
        let mut e = Event::new(self.name, status, word, is_final);
        e.pipeline = self.text("pipeline")?;
        e.pipeline_id = self.text("pipeline_id")?;
        e.pipeline_url = self.text("pipeline_url")?;
        e.stage = self.text("stage")?;
        e.task = self.text("task")?;
        e.build_url = self.text("build_url")?;
        e.repo = self.text("repo")?;
        e.branch = self.text("branch")?.as_deref().and_then(text::normalize_branch);
        e.set_commit(self.text("commit")?);
        e.commit_title = self.text("commit_title")?.as_deref().and_then(text::first_line);
        e.author = self.text("author")?;
        e.message = self.text("message")?;
        e.build_number = self.integer("build_number")?;
        e.duration_ms = self.integer("duration_ms")?;
        e.delivery_id = self.text("delivery_id")?;
        Ok(e)
    }

    /// The place a field's pointer names, if the spec maps the field.
    fn at(&self, field: &str) -> Option<At<'a>> {
        self.spec.pointers.get(field).map(|pointer| At::pointer(self.raw, pointer))
    }

    /// Prefixes a field-reading error with the source and the field.
    fn named<T>(&self, field: &str, result: Result<T, IngestError>) -> Result<T, IngestError> {
        result.map_err(|e| match e {
            IngestError::Invalid(m) => {
                IngestError::Invalid(format!("generic source \"{}\", {field}: {m}", self.name))
            }
            other => other,
        })
    }

    /// The status word: required, and a scalar.
    fn status_word(&self) -> Result<String, IngestError> {
        let Some(pointer) = self.spec.pointers.get("status") else {
            return Err(IngestError::Invalid(format!(
                "generic source \"{}\" has no status pointer configured",
                self.name
            )));
        };
        let nothing = || {
            IngestError::Invalid(format!("generic source \"{}\": nothing at {pointer} (status)", self.name))
        };
        let at = At::pointer(self.raw, pointer);
        match self.named("status", at.value())? {
            None => Err(nothing()),
            Some(Value::String(s)) => text::non_blank(s).ok_or_else(nothing),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
            Some(other) => self.named("status", Err(wrong_type(at.path(), "a status word", other))),
        }
    }

    /// A text field: a string, or a number or boolean written as text.
    fn text(&self, field: &str) -> Result<Option<String>, IngestError> {
        let Some(at) = self.at(field) else { return Ok(None) };
        match self.named(field, at.value())? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(text::non_blank(s)),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
            Some(other) => self.named(field, Err(wrong_type(at.path(), "a string", other))),
        }
    }

    /// An integer field: a number or a numeric string.
    fn integer(&self, field: &str) -> Result<Option<u64>, IngestError> {
        match self.at(field) {
            Some(at) => self.named(field, at.u64_opt()),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
#[path = "generic_tests.rs"]
mod tests;
