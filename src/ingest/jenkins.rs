//! The Jenkins Notification plugin (Tikal): `{name, url, build: {phase, status, scm, …}}`.
//!
//! Gson sends JSON with snake_case keys; XStream sends `<job>` XML with camelCase keys. Both become
//! one JSON value first (XML through `xml`), then the same extraction runs with the right key
//! spelling. This file owns the phase/status mapping and the field sources of ci-payloads.md §1.

use serde_json::Value;

use super::lenient::At;
use super::{body, text, xml, Format, Inbound, IngestError};
use crate::event::{Artifact, Event, Status, TestSummary};

/// Key spelling: Gson writes `full_url`, XStream writes `fullUrl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    Json,
    Xml,
}

impl Keys {
    fn pick(self, json: &'static str, xml: &'static str) -> &'static str {
        match self {
            Keys::Json => json,
            Keys::Xml => xml,
        }
    }
}

/// Parses a Tikal notification; a body starting with `<` is read as XML.
pub(crate) fn parse(req: &Inbound<'_>) -> Result<Event, IngestError> {
    let (raw, keys) = if body::looks_like_xml(req.body) {
        let doc = xml::parse(req.body)?;
        if doc.root != "job" {
            return Err(IngestError::Invalid(format!(
                "XML root element is <{}>, expected <job>",
                super::lenient::short_name(&doc.root)
            )));
        }
        (doc.value, Keys::Xml)
    } else {
        (body::json(req.body)?, Keys::Json)
    };
    let mut event = extract(&raw, keys)?;
    event.raw = raw;
    Ok(event)
}

/// Tikal's phase and `Result` word → status and `final` (ci-payloads.md §1).
///
/// A result counts only on COMPLETED or FINALIZED: one on STARTED or on a `notifyEndpoints` step
/// call was set early through `currentBuild.result` and is not final. Without a result, a
/// terminal or NONE phase is a manual step in a running build.
pub(crate) fn map_status(phase: &str, status: Option<&str>) -> (Status, bool) {
    let phase = phase.trim().to_ascii_uppercase();
    let terminal = matches!(phase.as_str(), "COMPLETED" | "FINALIZED");
    match status.map(|s| s.trim().to_ascii_uppercase()) {
        Some(word) => {
            let status = match word.as_str() {
                "SUCCESS" => Status::Success,
                "UNSTABLE" => Status::Unstable,
                "FAILURE" | "FAILED" => Status::Failure,
                "ABORTED" => Status::Aborted,
                "NOT_BUILT" => Status::Skipped,
                _ => Status::Unknown,
            };
            (status, terminal)
        }
        None => match phase.as_str() {
            "QUEUED" => (Status::Waiting, false),
            "STARTED" => (Status::Started, false),
            "COMPLETED" | "FINALIZED" | "NONE" => (Status::Running, false),
            _ => (Status::Unknown, false),
        },
    }
}

fn extract(raw: &Value, keys: Keys) -> Result<Event, IngestError> {
    let job = At::root(raw);
    let build = job.get("build");
    let phase = build.get("phase").word_req()?;
    let status_word = build.get("status").word_opt()?;
    let (status, is_final) = map_status(&phase, status_word.as_deref());
    let status_raw = status_word.unwrap_or_else(|| phase.clone());
    let mut e = Event::new(Format::Jenkins.name(), status, status_raw, is_final);

    let job_url = job.get("url").str_opt()?;
    e.pipeline = match job_url.as_deref().and_then(text::jenkins_job_path) {
        Some(path) => Some(path),
        None => job.get("name").str_opt()?,
    };
    e.build_number = build.get("number").u64_opt()?;
    e.build_url = build.get(keys.pick("full_url", "fullUrl")).str_opt()?;
    let relative_build_url = build.get("url").str_opt()?;
    e.pipeline_url = pipeline_url(e.build_url.as_deref(), relative_build_url.as_deref(), job_url.as_deref());

    let scm = build.get("scm");
    e.repo = scm.get("url").str_opt()?;
    e.branch = scm.get("branch").str_opt()?.as_deref().and_then(text::normalize_branch);
    e.set_commit(scm.get("commit").str_opt()?);
    // A Jenkins user id, not a git author; the only person the payload names (freestyle jobs).
    e.author = scm.get("culprits").index(0).str_opt()?;

    // `duration` is 0 until the build completes, so it only means something on a final event.
    let duration = build.get("duration").u64_opt()?;
    e.duration_ms = duration.filter(|d| is_final && *d > 0);
    e.message = build.get("notes").str_opt()?;
    e.params = build.get("parameters").string_map()?;
    e.artifacts = artifacts(&build.get("artifacts"))?;
    e.test_summary = test_summary(&build.get(keys.pick("test_summary", "testSummary")))?;
    e.phase = Some(phase);
    Ok(e)
}

/// The job's page: Jenkins' root URL (the absolute build URL minus the relative one) + job URL.
fn pipeline_url(
    full_build_url: Option<&str>,
    build_url: Option<&str>,
    job_url: Option<&str>,
) -> Option<String> {
    let job_url = job_url?;
    if job_url.contains("://") {
        return Some(job_url.to_string());
    }
    let root = full_build_url?.strip_suffix(build_url?)?;
    text::non_blank(root).map(|root| format!("{root}{job_url}"))
}

/// Links for a Jenkins that sends no `full_url` (its root URL is not configured): `build.url` and
/// the job's `url`, both relative, resolved against the configured `base`. Links Jenkins did
/// send are kept.
pub(crate) fn resolve_links(e: &mut Event, base: &url::Url) {
    let resolve = |relative: Option<&Value>| {
        let relative = relative?.as_str().filter(|r| !r.trim().is_empty() && !r.contains("://"))?;
        base.join(relative.trim_start_matches('/')).ok().map(String::from)
    };
    if e.build_url.is_none() {
        e.build_url = resolve(e.raw.get("build").and_then(|b| b.get("url")));
    }
    if e.pipeline_url.is_none() {
        e.pipeline_url = resolve(e.raw.get("url"));
    }
}

/// `{path: {archive, s3}}` → artifacts named by path, linked to the archive copy, else S3.
fn artifacts(at: &At<'_>) -> Result<Vec<Artifact>, IngestError> {
    let mut out = Vec::new();
    for name in at.object_opt()?.into_iter().flat_map(|m| m.keys()) {
        let links = at.get(name);
        let url = match links.get("archive").str_opt()? {
            Some(url) => Some(url),
            None => links.get("s3").str_opt()?,
        };
        if let Some(url) = url {
            out.push(Artifact { name: name.clone(), url });
        }
    }
    Ok(out)
}

/// `{total, failed, passed, skipped}`; a count the sender left out is 0.
fn test_summary(at: &At<'_>) -> Result<Option<TestSummary>, IngestError> {
    if at.object_opt()?.is_none() {
        return Ok(None);
    }
    let count = |key: &str| at.get(key).u64_opt().map(Option::unwrap_or_default);
    Ok(Some(TestSummary {
        total: count("total")?,
        failed: count("failed")?,
        passed: count("passed")?,
        skipped: count("skipped")?,
    }))
}

#[cfg(test)]
#[path = "jenkins_tests.rs"]
mod tests;
