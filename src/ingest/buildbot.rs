//! Buildbot's `HttpStatusPush` reporter: the build from Buildbot's data API, POSTed as JSON when
//! a build starts and when it finishes.
//!
//! This file owns the `results` mapping and the field sources of ci-payloads.md §4.
//!
//! `status_raw` is the `results` code as sent, in decimal (`"0"`, `"2"`, `"4"`): it is the stable,
//! machine-readable word, and it keeps apart what the normalized status merges (EXCEPTION and
//! FAILURE are both `failure`). While `results` is null (a build that is starting) there is no
//! code, so `status_raw` is `state_string` (`"starting"`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::lenient::{scalar_string, At};
use super::{body, text, Format, Inbound, IngestError};
use crate::event::{Event, Status};

/// Parses a Buildbot build report.
pub(crate) fn parse(req: &Inbound<'_>) -> Result<Event, IngestError> {
    let raw = body::json(req.body)?;
    let mut event = extract(&raw)?;
    event.raw = raw;
    Ok(event)
}

/// `results`, `complete` and `state_string` → status and `final` (ci-payloads.md §4).
///
/// Codes: SUCCESS=0, WARNINGS=1, FAILURE=2, SKIPPED=3, EXCEPTION=4, RETRY=5, CANCELLED=6. RETRY is
/// not final: the build runs again. Without a code, an incomplete build is `started` while
/// Buildbot says it is starting, else `running`; a complete build without a code is `unknown`.
pub(crate) fn map_status(results: Option<u64>, complete: bool, state_string: &str) -> (Status, bool) {
    match results {
        Some(0) => (Status::Success, true),
        Some(1) => (Status::Unstable, true),
        Some(2 | 4) => (Status::Failure, true),
        Some(3) => (Status::Skipped, true),
        Some(5) => (Status::Waiting, false),
        Some(6) => (Status::Aborted, true),
        Some(_) => (Status::Unknown, complete),
        None if complete => (Status::Unknown, true),
        None if matches!(state_string.trim(), "" | "starting" | "created") => (Status::Started, false),
        None => (Status::Running, false),
    }
}

fn extract(raw: &Value) -> Result<Event, IngestError> {
    let build = At::root(raw);
    build.get("buildid").u64_req()?;
    let builder_id = build.get("builderid").u64_req()?;
    let state_string = build.get("state_string").word_req()?;
    let results = build.get("results").u64_opt()?;
    let complete = build.get("complete").bool_opt()?.unwrap_or(results.is_some());
    let (status, is_final) = map_status(results, complete, &state_string);
    let status_raw = results.map_or_else(|| state_string.clone(), |r| r.to_string());
    let mut e = Event::new(Format::Buildbot.name(), status, status_raw, is_final);

    let props = build.get("properties");
    let props_map = props.object_opt()?;
    let prop = |name: &str| property(props_map, name);
    e.pipeline = match build.get("builder").get("name").str_opt()? {
        Some(name) => Some(name),
        None => prop("buildername"),
    };
    e.pipeline_id = Some(builder_id.to_string());
    e.build_number = build.get("number").u64_opt()?;
    e.build_url = build.get("url").str_opt()?;
    e.pipeline_url = match (&e.build_url, e.build_number) {
        (Some(url), Some(n)) => text::strip_url_suffix(url, &format!("builds/{n}")),
        _ => None,
    };

    let stamp = build.get("buildset").get("sourcestamps").index(0);
    e.repo = first_of([stamp.get("repository").str_opt()?, prop("repository")]);
    let branch = first_of([stamp.get("branch").str_opt()?, prop("branch")]);
    e.branch = branch.as_deref().and_then(text::normalize_branch);
    // got_revision is what was checked out (a multi-codebase build sends a map there: skipped).
    e.set_commit(first_of([prop("got_revision"), stamp.get("revision").str_opt()?, prop("revision")]));
    e.triggered_by = prop("owner");

    let started = build.get("started_at").u64_opt()?;
    let completed = build.get("complete_at").u64_opt()?;
    e.duration_ms = match (started, completed) {
        (Some(s), Some(c)) if c >= s => Some((c - s) * 1000),
        _ => None,
    };
    e.params = properties(props_map);
    Ok(e)
}

fn first_of<const N: usize>(candidates: [Option<String>; N]) -> Option<String> {
    candidates.into_iter().flatten().next()
}

/// A property's value: properties are `name: [value, source]`, and one that is not such a pair
/// is taken whole (the bag is free-form, so an odd entry is not worth a 422).
fn property_value(value: &Value) -> Option<&Value> {
    match value {
        Value::Array(pair) => pair.first(),
        other => Some(other),
    }
}

/// A property as text, when its value is a non-blank string.
fn property(props: Option<&Map<String, Value>>, name: &str) -> Option<String> {
    property_value(props?.get(name)?)?.as_str().and_then(text::non_blank)
}

/// Every property as `name: value`, non-string values as JSON; null values are left out.
fn properties(props: Option<&Map<String, Value>>) -> BTreeMap<String, String> {
    props
        .into_iter()
        .flatten()
        .filter_map(|(name, v)| Some((name.clone(), scalar_string(property_value(v)?)?)))
        .collect()
}

#[cfg(test)]
#[path = "buildbot_tests.rs"]
mod tests;
