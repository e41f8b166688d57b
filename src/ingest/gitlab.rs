//! GitLab webhooks: Pipeline Hook (`object_kind: "pipeline"`) and Job Hook (`object_kind:
//! "build"`).
//!
//! `X-Gitlab-Event` must be one of those two (or `System Hook`, which carries the same bodies);
//! any other event is a 422 that names it. `object_kind` then decides how the body is read. The
//! `X-Gitlab-Token` is checked before this runs. This file owns the status mapping and the
//! field sources of ci-payloads.md §5.
//!
//! A pipeline event describes the pipeline: `build_number` is its `iid`, `build_url` its page. A
//! job event describes one job: `stage` and `task` are the job's, `pipeline_id` and
//! `pipeline_url` point at its pipeline, and there is no `build_number` (GitLab sends none).
//! Durations are given only once the unit is final (GitLab's running `build_duration` is the
//! time so far).

use std::collections::BTreeMap;

use super::lenient::{missing, scalar_string, wrong_type, At};
use super::{body, text, Format, Inbound, IngestError};
use crate::event::{Event, Status};

/// `X-Gitlab-Event` values this parser accepts.
const HANDLED_EVENTS: [&str; 3] = ["Pipeline Hook", "Job Hook", "System Hook"];

/// A `before_sha` of all zeros means "no previous commit" (a new branch).
const NO_COMMIT: &str = "0000000000000000000000000000000000000000";

/// Parses a GitLab pipeline or job event.
pub(crate) fn parse(req: &Inbound<'_>) -> Result<Event, IngestError> {
    let header = req.header("X-Gitlab-Event").map(str::trim);
    if let Some(event) = header.filter(|h| !HANDLED_EVENTS.iter().any(|ok| ok.eq_ignore_ascii_case(h))) {
        return Err(IngestError::Invalid(format!(
            "GitLab event \"{event}\" is not handled; send Pipeline Hook or Job Hook"
        )));
    }
    let raw = body::json(req.body)?;
    let root = At::root(&raw);
    let kind = match root.get("object_kind").word_opt()? {
        Some(kind) => kind,
        None => match header.map(str::to_ascii_lowercase).as_deref() {
            Some("pipeline hook") => "pipeline".into(),
            Some("job hook") => "build".into(),
            _ => return Err(missing("object_kind")),
        },
    };
    let mut event = match kind.as_str() {
        "pipeline" => pipeline(&root)?,
        "build" => job(&root)?,
        other => {
            return Err(IngestError::Invalid(format!(
                "GitLab object_kind \"{other}\" is not handled; send Pipeline Hook or Job Hook events"
            )))
        }
    };
    let delivery = req.header("Idempotency-Key").and_then(text::non_blank);
    event.delivery_id = delivery.or_else(|| req.header("X-Gitlab-Event-UUID").and_then(text::non_blank));
    event.raw = raw;
    Ok(event)
}

/// A pipeline's or job's status → status and `final` (ci-payloads.md §5).
///
/// `detailed_status` "passed with warnings" turns a success into `unstable` (a job allowed to
/// fail has failed); a failed job with `allow_failure` is `unstable` too. `canceling` is on its
/// way to `canceled`, so it is not final.
pub(crate) fn map_status(status: &str, detailed: Option<&str>, allow_failure: bool) -> (Status, bool) {
    let with_warnings = detailed.is_some_and(|d| d.trim().eq_ignore_ascii_case("passed with warnings"));
    match status.trim().to_ascii_lowercase().as_str() {
        "created"
        | "waiting_for_resource"
        | "preparing"
        | "pending"
        | "scheduled"
        | "manual"
        | "waiting_for_callback" => (Status::Waiting, false),
        "running" => (Status::Running, false),
        "success" if with_warnings => (Status::Unstable, true),
        "success" => (Status::Success, true),
        "failed" if allow_failure => (Status::Unstable, true),
        "failed" => (Status::Failure, true),
        "canceling" => (Status::Aborted, false),
        "canceled" | "cancelled" => (Status::Aborted, true),
        "skipped" => (Status::Skipped, true),
        _ => (Status::Unknown, false),
    }
}

fn pipeline(root: &At<'_>) -> Result<Event, IngestError> {
    let attrs = root.get("object_attributes");
    let word = attrs.get("status").word_req()?;
    let detailed = attrs.get("detailed_status").word_opt()?;
    let (status, is_final) = map_status(&word, detailed.as_deref(), false);
    let mut e = Event::new(Format::Gitlab.name(), status, word, is_final);

    let project = root.get("project");
    let path = match project.get("path_with_namespace").str_opt()? {
        Some(p) => Some(p),
        None => project.get("name").str_opt()?,
    };
    e.pipeline = match (path, attrs.get("name").str_opt()?) {
        (Some(p), Some(n)) => Some(format!("{p} {n}")),
        (p, n) => p.or(n),
    };
    e.pipeline_id = attrs.get("id").str_opt()?;
    e.build_number = attrs.get("iid").u64_opt()?;
    e.repo = project.get("web_url").str_opt()?;
    e.build_url = match attrs.get("url").str_opt()? {
        Some(url) => Some(url),
        None => under(e.repo.as_deref(), "pipelines", e.pipeline_id.as_deref()),
    };
    code(&mut e, &attrs)?;
    let commit = root.get("commit");
    e.commit_title = match commit.get("title").str_opt()? {
        Some(t) => Some(t),
        None => commit.get("message").str_opt()?.as_deref().and_then(text::first_line),
    };
    e.author = commit.get("author").get("name").str_opt()?;
    e.triggered_by = user(&root.get("user"))?;
    e.duration_ms = attrs.get("duration").seconds_ms_opt()?.filter(|_| is_final);
    e.params = variables(&attrs.get("variables"))?;
    Ok(e)
}

fn job(root: &At<'_>) -> Result<Event, IngestError> {
    let word = root.get("build_status").word_req()?;
    let allow_failure = root.get("build_allow_failure").bool_opt()?.unwrap_or(false);
    let (status, is_final) = map_status(&word, None, allow_failure);
    let failed = word.trim().eq_ignore_ascii_case("failed");
    let mut e = Event::new(Format::Gitlab.name(), status, word, is_final);

    let project = root.get("project");
    e.pipeline = match project.get("path_with_namespace").str_opt()? {
        Some(p) => Some(p),
        None => root.get("project_name").str_opt()?,
    };
    e.pipeline_id = root.get("pipeline_id").str_opt()?;
    e.stage = root.get("build_stage").str_opt()?;
    e.task = root.get("build_name").str_opt()?;
    e.repo = match root.get("repository").get("homepage").str_opt()? {
        Some(home) => Some(home),
        None => project.get("web_url").str_opt()?,
    };
    let build_id = root.get("build_id").str_opt()?;
    e.build_url = under(e.repo.as_deref(), "jobs", build_id.as_deref());
    e.pipeline_url = under(e.repo.as_deref(), "pipelines", e.pipeline_id.as_deref());
    code(&mut e, root)?;
    let commit = root.get("commit");
    e.commit_title = commit.get("message").str_opt()?.as_deref().and_then(text::first_line);
    e.author = commit.get("author_name").str_opt()?;
    e.triggered_by = user(&root.get("user"))?;
    // GitLab sends `unknown_failure` on jobs that did not fail: only a failure has a reason.
    e.message = if failed { root.get("build_failure_reason").str_opt()? } else { None };
    let duration = match root.get("build_duration").seconds_ms_opt()? {
        Some(ms) => Some(ms),
        None => {
            let started = root.get("build_started_at").str_opt()?;
            let finished = root.get("build_finished_at").str_opt()?;
            started.zip(finished).and_then(|(s, f)| text::millis_between(&s, &f))
        }
    };
    e.duration_ms = duration.filter(|_| is_final);
    Ok(e)
}

/// `ref`, `tag`, `sha` and `before_sha`, found side by side in both hooks. A tag is kept as
/// `refs/tags/{name}` so that it still reads as a tag.
fn code(e: &mut Event, at: &At<'_>) -> Result<(), IngestError> {
    let git_ref = at.get("ref").str_opt()?;
    let is_tag = at.get("tag").bool_opt()?.unwrap_or(false);
    e.branch = match git_ref {
        Some(r) if is_tag && !r.starts_with("refs/") => Some(format!("refs/tags/{r}")),
        Some(r) => text::normalize_branch(&r),
        None => None,
    };
    e.set_commit(at.get("sha").str_opt()?);
    e.previous_commit = at.get("before_sha").str_opt()?.filter(|c| c != NO_COMMIT);
    Ok(())
}

/// `{project}/-/{kind}/{id}`, GitLab's page for a pipeline or job.
fn under(project_url: Option<&str>, kind: &str, id: Option<&str>) -> Option<String> {
    let base = project_url?.trim_end_matches('/');
    Some(format!("{base}/-/{kind}/{}", id?))
}

/// A user's display name, else their username.
fn user(at: &At<'_>) -> Result<Option<String>, IngestError> {
    match at.get("name").str_opt()? {
        Some(name) => Ok(Some(name)),
        None => at.get("username").str_opt(),
    }
}

/// Pipeline `variables`: a list of `{key, value}`; items without a key are skipped.
fn variables(at: &At<'_>) -> Result<BTreeMap<String, String>, IngestError> {
    let mut out = BTreeMap::new();
    let Some(items) = at.array_opt()? else { return Ok(out) };
    for (i, item) in items.iter().enumerate() {
        if !item.is_object() {
            return Err(wrong_type(at.index(i).path(), "a {key, value} object", item));
        }
        let Some(key) = at.index(i).get("key").str_opt()? else { continue };
        if let Some(value) = item.get("value").and_then(scalar_string) {
            out.insert(key, value);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "gitlab_tests.rs"]
mod tests;
