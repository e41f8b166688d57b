//! Alibaba Cloud DevOps (Yunxiao) Flow's webhook plugin: one POST per task state change.
//!
//! `{event: "task", action: "status", task: {…, statusCode}, sources: [...], globalParams: …}`.
//! Two shapes are in use: the documented one (numeric ids, `sources[].repo`, `globalParams` as a
//! list of `{key, value}` or, in older docs, an object) and the one seen in the wild (string ids,
//! `sources[].data.*` with `commitMsg`, `task.executorName`). Both are read, along with the docs'
//! spellings `privousCommitId` and `UNKOWN`. This file owns the mapping of ci-payloads.md §3.

use std::collections::BTreeMap;

use serde_json::Value;

use super::lenient::{scalar_string, wrong_type, At};
use super::{body, text, Format, Inbound, IngestError};
use crate::event::{Event, Status};

/// Parses a Flow task notification.
pub(crate) fn parse(req: &Inbound<'_>) -> Result<Event, IngestError> {
    let raw = body::json(req.body)?;
    let mut event = extract(&raw)?;
    event.raw = raw;
    Ok(event)
}

/// `task.statusCode` → status and `final` for the task (ci-payloads.md §3). `UNKOWN` (sic),
/// `UNKNOWN` and any word not in the table are unknown and not final.
pub(crate) fn map_status(code: &str) -> (Status, bool) {
    match code.trim().to_ascii_uppercase().as_str() {
        "RUNNING" => (Status::Running, false),
        "WAITING" => (Status::Waiting, false),
        "SUCCESS" | "FINISH" => (Status::Success, true),
        "FAIL" => (Status::Failure, true),
        "CANCELLING" => (Status::Aborted, false),
        "CANCELED" => (Status::Aborted, true),
        "SKIP" => (Status::Skipped, true),
        _ => (Status::Unknown, false),
    }
}

fn extract(raw: &Value) -> Result<Event, IngestError> {
    let root = At::root(raw);
    let task = root.get("task");
    let code = task.get("statusCode").word_req()?;
    let (status, is_final) = map_status(&code);
    let mut e = Event::new(Format::Flow.name(), status, code, is_final);

    e.pipeline = task.get("pipelineName").str_opt()?;
    e.pipeline_id = task.get("pipelineId").str_opt()?;
    e.stage = task.get("stageName").str_opt()?;
    e.task = task.get("taskName").str_opt()?;
    e.build_number = task.get("buildNumber").u64_opt()?;
    e.build_url = task.get("pipelineUrl").str_opt()?;
    e.pipeline_url = match (&e.build_url, &e.pipeline_id) {
        (Some(url), Some(id)) => pipeline_url(url, id),
        _ => None,
    };
    e.message = task.get("message").str_opt()?;
    e.triggered_by = task.get("executorName").str_opt()?;

    if let Some(source) = code_source(&root.get("sources"))? {
        let field = |name: &str| source_field(&source, name);
        e.repo = field("repo")?;
        e.branch = field("branch")?.as_deref().and_then(text::normalize_branch);
        e.set_commit(field("commitId")?);
        e.previous_commit = match field("previousCommitId")? {
            Some(c) => Some(c),
            None => field("privousCommitId")?,
        };
        e.commit_title = field("commitMsg")?.as_deref().and_then(text::first_line);
    }
    e.params = global_params(&root.get("globalParams"))?;
    Ok(e)
}

/// The first source that names a repo, branch or commit (an artifact source names none).
fn code_source<'a>(sources: &At<'a>) -> Result<Option<At<'a>>, IngestError> {
    let count = sources.array_opt()?.map_or(0, Vec::len);
    for i in 0..count {
        let source = sources.index(i);
        for name in ["repo", "branch", "commitId"] {
            if source_field(&source, name)?.is_some() {
                return Ok(Some(source));
            }
        }
    }
    Ok(None)
}

/// `sources[i].{name}`, else `sources[i].data.{name}`.
fn source_field(source: &At<'_>, name: &str) -> Result<Option<String>, IngestError> {
    match source.get(name).str_opt()? {
        Some(v) => Ok(Some(v)),
        None => source.get("data").get(name).str_opt(),
    }
}

/// The pipeline's page: the build URL cut after `/pipelines/{pipelineId}`, when it has that shape.
fn pipeline_url(build_url: &str, pipeline_id: &str) -> Option<String> {
    let marker = format!("/pipelines/{pipeline_id}");
    let end = build_url.find(&marker)? + marker.len();
    match build_url[end..].chars().next() {
        None | Some('/' | '?' | '#') => Some(build_url[..end].to_string()),
        Some(_) => None,
    }
}

/// `globalParams`, as a list of `{key, value}` (extra members such as `id` ignored, items without
/// a key skipped) or as an object.
fn global_params(at: &At<'_>) -> Result<BTreeMap<String, String>, IngestError> {
    match at.value()? {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(_)) => at.string_map(),
        Some(Value::Array(items)) => {
            let mut out = BTreeMap::new();
            for (i, item) in items.iter().enumerate() {
                let Some(key) = at.index(i).get("key").str_opt()? else { continue };
                if let Some(value) = item.get("value").and_then(scalar_string) {
                    out.insert(key, value);
                }
            }
            Ok(out)
        }
        Some(other) => Err(wrong_type(at.path(), "a list of {key, value} or an object", other)),
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
