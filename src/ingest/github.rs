//! GitHub Actions webhooks, `workflow_run` and `workflow_job`, and the same payloads from Gitea
//! and Forgejo, which copy GitHub's shape (without `workflow_name` or `run_number`).
//!
//! The event type comes from `X-Gitea-Event`, `X-Forgejo-Event` or `X-GitHub-Event`, in that
//! order (Gitea and Forgejo send GitHub's header too); without any, from the body's shape. A
//! `ping` gives no event; any other event type is a 422 that names it. The body is JSON, or a
//! form with the JSON in its `payload` field. Signatures are checked before this runs.
//! This file owns the status mapping and the field sources of ci-payloads.md §5.
//!
//! Runs and the jobs of a run share `pipeline_id`: the run's id.

use serde_json::Value;

use super::lenient::{missing, At};
use super::{body, text, Format, Inbound, IngestError};
use crate::event::{Event, Status};

/// Headers that name the event type, read in this order, with the sender each one means.
const EVENT_HEADERS: [(&str, &str); 3] =
    [("X-Gitea-Event", "Gitea"), ("X-Forgejo-Event", "Forgejo"), ("X-GitHub-Event", "GitHub")];

/// Headers that carry the sender's delivery id (repeated on manual redeliveries).
const DELIVERY_HEADERS: [&str; 3] = ["X-GitHub-Delivery", "X-Gitea-Delivery", "X-Forgejo-Delivery"];

/// The event types this parser reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ping,
    Run,
    Job,
}

/// Parses a GitHub-style delivery: one event, or none for a `ping`.
pub(crate) fn parse_events(req: &Inbound<'_>) -> Result<Vec<Event>, IngestError> {
    let raw = payload(req)?;
    let mut event = match kind(req, &raw)? {
        Kind::Ping => return Ok(Vec::new()),
        Kind::Run => run(&At::root(&raw))?,
        Kind::Job => job(&At::root(&raw))?,
    };
    event.delivery_id = DELIVERY_HEADERS.iter().find_map(|h| req.header(h)).and_then(text::non_blank);
    event.raw = raw;
    Ok(vec![event])
}

/// The JSON document: the body itself, or the `payload` field of a form-encoded body.
fn payload(req: &Inbound<'_>) -> Result<Value, IngestError> {
    let content_type = req.header("Content-Type").unwrap_or("").trim().to_ascii_lowercase();
    let is_form = content_type.starts_with("application/x-www-form-urlencoded")
        || (content_type.is_empty() && req.body.starts_with(b"payload="));
    if !is_form {
        return body::json(req.body);
    }
    let form = std::str::from_utf8(req.body)
        .map_err(|e| IngestError::Malformed(format!("malformed form body: not UTF-8 ({e})")))?;
    let fields = body::query(form)?;
    match fields.get("payload").and_then(Value::as_str) {
        Some(json) => body::json(json.as_bytes()),
        None => Err(IngestError::Invalid("form-encoded body: missing field \"payload\"".into())),
    }
}

/// Which event this is, from the vendor headers or else the body's shape.
fn kind(req: &Inbound<'_>, raw: &Value) -> Result<Kind, IngestError> {
    let named = EVENT_HEADERS.iter().find_map(|(h, sender)| req.header(h).map(|v| (v.trim(), *sender)));
    if let Some((event, sender)) = named {
        return match event.to_ascii_lowercase().as_str() {
            "workflow_run" => Ok(Kind::Run),
            "workflow_job" => Ok(Kind::Job),
            "ping" => Ok(Kind::Ping),
            _ => Err(IngestError::Invalid(format!(
                "{sender} event \"{event}\" is not handled; send workflow_run or workflow_job"
            ))),
        };
    }
    let has = |key: &str| raw.get(key).is_some_and(|v| !v.is_null());
    if has("workflow_run") {
        Ok(Kind::Run)
    } else if has("workflow_job") {
        Ok(Kind::Job)
    } else if has("zen") && has("hook_id") {
        Ok(Kind::Ping)
    } else {
        Err(IngestError::Invalid(
            "no X-GitHub-Event header, and the body has neither workflow_run nor workflow_job".into(),
        ))
    }
}

/// A run's or job's `status` and `conclusion` → status and `final` (ci-payloads.md §5).
///
/// Until `completed`, the status word decides and nothing is final. Once completed, the
/// conclusion decides: `action_required` waits for someone and is not final; a missing or
/// unknown conclusion is `unknown`, but the run is over all the same.
pub(crate) fn map_status(status: &str, conclusion: Option<&str>) -> (Status, bool) {
    match status.trim().to_ascii_lowercase().as_str() {
        "queued" | "requested" | "pending" | "waiting" => (Status::Waiting, false),
        "in_progress" => (Status::Running, false),
        "completed" => match conclusion.map(|c| c.trim().to_ascii_lowercase()).as_deref() {
            Some("success" | "neutral") => (Status::Success, true),
            Some("failure" | "timed_out" | "startup_failure") => (Status::Failure, true),
            Some("cancelled") => (Status::Aborted, true),
            Some("skipped") => (Status::Skipped, true),
            Some("action_required") => (Status::Waiting, false),
            _ => (Status::Unknown, true),
        },
        _ => (Status::Unknown, false),
    }
}

/// The status of `unit` (`workflow_run` or `workflow_job`); `status_raw` is the conclusion once
/// there is one, else the status word. A missing status falls back to the delivery's `action`.
fn status_of(root: &At<'_>, unit: &At<'_>) -> Result<(Event, bool), IngestError> {
    let status = match unit.get("status").word_opt()? {
        Some(s) => s,
        None => root.get("action").word_opt()?.ok_or_else(|| missing(unit.get("status").path()))?,
    };
    let conclusion = unit.get("conclusion").word_opt()?;
    let (mapped, is_final) = map_status(&status, conclusion.as_deref());
    let completed = status.trim().eq_ignore_ascii_case("completed");
    let status_raw = match conclusion {
        Some(c) if completed => c,
        _ => status,
    };
    let mut e = Event::new(Format::Github.name(), mapped, status_raw, is_final);
    e.phase = root.get("action").str_opt()?;
    Ok((e, completed))
}

/// The object at `at`, which must be there.
fn required<'a>(at: At<'a>) -> Result<At<'a>, IngestError> {
    match at.object_opt()? {
        Some(_) => Ok(at),
        None => Err(missing(at.path())),
    }
}

/// `a b`, or whichever of the two is there.
fn joined(a: Option<String>, b: Option<String>, sep: &str) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}{sep}{b}")),
        (a, b) => a.or(b),
    }
}

/// The fields runs and jobs share: repository, branch and commit.
fn common(e: &mut Event, root: &At<'_>, unit: &At<'_>) -> Result<(), IngestError> {
    e.repo = match root.get("repository").get("full_name").str_opt()? {
        Some(name) => Some(name),
        None => unit.get("repository").get("full_name").str_opt()?,
    };
    e.build_url = unit.get("html_url").str_opt()?;
    e.branch = unit.get("head_branch").str_opt()?.as_deref().and_then(text::normalize_branch);
    e.set_commit(unit.get("head_sha").str_opt()?);
    Ok(())
}

fn run(root: &At<'_>) -> Result<Event, IngestError> {
    let run = required(root.get("workflow_run"))?;
    let (mut e, completed) = status_of(root, &run)?;
    common(&mut e, root, &run)?;
    let name = match run.get("name").str_opt()? {
        Some(n) => Some(n),
        None => root.get("workflow").get("name").str_opt()?,
    };
    e.pipeline = joined(e.repo.clone(), name, " ");
    e.pipeline_id = run.get("id").str_opt()?;
    e.build_number = run.get("run_number").u64_opt()?;
    let head = run.get("head_commit");
    e.commit_title = head.get("message").str_opt()?.as_deref().and_then(text::first_line);
    e.author = head.get("author").get("name").str_opt()?;
    e.triggered_by = first_login(&[run.get("triggering_actor"), run.get("actor"), root.get("sender")])?;
    // `updated_at` moves on every delivery, so it closes the run only once the run is over.
    if completed {
        let started = match run.get("run_started_at").str_opt()? {
            Some(s) => Some(s),
            None => run.get("created_at").str_opt()?,
        };
        let ended = run.get("updated_at").str_opt()?;
        e.duration_ms = started.zip(ended).and_then(|(s, t)| text::millis_between(&s, &t));
    }
    Ok(e)
}

fn job(root: &At<'_>) -> Result<Event, IngestError> {
    let job = required(root.get("workflow_job"))?;
    let (mut e, completed) = status_of(root, &job)?;
    common(&mut e, root, &job)?;
    e.task = job.get("name").str_opt()?;
    let in_workflow = joined(job.get("workflow_name").str_opt()?, e.task.clone(), " / ");
    e.pipeline = joined(e.repo.clone(), in_workflow, " ");
    e.pipeline_id = job.get("run_id").str_opt()?;
    // The run's page is the job's page without `/job/{id}` (GitHub's current URL shape).
    let job_id = job.get("id").str_opt()?;
    e.pipeline_url = match (&e.build_url, job_id) {
        (Some(url), Some(id)) => text::strip_url_suffix(url, &format!("job/{id}")),
        _ => None,
    };
    e.triggered_by = first_login(&[root.get("sender")])?;
    if completed {
        let started = job.get("started_at").str_opt()?;
        let ended = job.get("completed_at").str_opt()?;
        e.duration_ms = started.zip(ended).and_then(|(s, t)| text::millis_between(&s, &t));
    }
    Ok(e)
}

/// The first of these users' `login`s.
fn first_login(users: &[At<'_>]) -> Result<Option<String>, IngestError> {
    for user in users {
        if let Some(login) = user.get("login").str_opt()? {
            return Ok(Some(login));
        }
    }
    Ok(None)
}

#[cfg(test)]
#[path = "github_tests.rs"]
mod tests;
