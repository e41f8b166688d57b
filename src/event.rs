//! The normalized event: what every inbound format is turned into, and what every template sees.
//!
//! This module owns the event's shape and the status vocabulary. It does not know any sender's
//! payload (that is `ingest`) nor any platform's message (that is `channels`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Herald's normalized status words (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Started,
    Running,
    Success,
    Failure,
    Unstable,
    Aborted,
    Skipped,
    Waiting,
    Unknown,
}

impl Status {
    /// Every status, in SPEC order.
    pub const ALL: [Status; 9] = [
        Status::Started,
        Status::Running,
        Status::Success,
        Status::Failure,
        Status::Unstable,
        Status::Aborted,
        Status::Skipped,
        Status::Waiting,
        Status::Unknown,
    ];

    /// The lowercase word used on the wire, in config and in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Started => "started",
            Status::Running => "running",
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Unstable => "unstable",
            Status::Aborted => "aborted",
            Status::Skipped => "skipped",
            Status::Waiting => "waiting",
            Status::Unknown => "unknown",
        }
    }

    /// Parses a normalized status word (as written in config).
    pub fn parse(word: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One artifact a build produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub url: String,
}

/// Test counts, when the sender reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestSummary {
    pub total: u64,
    pub failed: u64,
    pub passed: u64,
    pub skipped: u64,
}

/// Where a failure streak began (template context `failing_since`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingSince {
    pub build_number: Option<u64>,
    /// RFC 3339.
    pub at: String,
}

/// How a final event relates to the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    FirstFailure,
    StillFailing,
    Fixed,
    /// Any other change of status (including the first result ever seen).
    Changed,
    /// The same non-failing status again.
    Unchanged,
}

impl Transition {
    pub const WORDS: [&'static str; 4] = ["first_failure", "still_failing", "fixed", "changed"];

    /// Whether `when.transition = [word]` matches this transition. Every first failure and
    /// every fix is also a change.
    pub fn matches(self, word: &str) -> bool {
        match word {
            "first_failure" => self == Transition::FirstFailure,
            "still_failing" => self == Transition::StillFailing,
            "fixed" => self == Transition::Fixed,
            "changed" => matches!(self, Transition::FirstFailure | Transition::Fixed | Transition::Changed),
            _ => false,
        }
    }
}

/// The normalized event (SPEC §4). It is also the template context.
///
/// Absent values stay `None` and are left out of the serialized form: a parser never invents an
/// empty string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub source: String,
    pub event_id: String,
    /// RFC 3339.
    pub received_at: String,
    pub status: Status,
    pub status_raw: String,
    #[serde(rename = "final")]
    pub is_final: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_number: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_short: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Who triggered the run, where the sender says (Flow's executor, Buildbot's owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_summary: Option<TestSummary>,
    /// For a final event: the status of the previous final event of the same unit of work
    /// (source, pipeline, branch, stage/task), when Herald has seen one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<Status>,
    /// While failing: where the current failure streak began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<FailingSince>,
    /// Consecutive failing results, this one included (0 when it passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_streak: Option<u32>,
    /// How this final event relates to the previous one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<Transition>,
    /// The sender's own id for this delivery (`X-GitHub-Delivery`, GitLab's
    /// `Idempotency-Key`, …), repeated on its retries; Herald de-duplicates on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// The payload as received, as JSON (XML converted); left out when there is none.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub raw: serde_json::Value,
}

impl Event {
    /// A new event with the required fields set and every optional field absent.
    ///
    /// `event_id` and `received_at` are filled with fresh values; the HTTP layer may overwrite them.
    pub fn new(source: &str, status: Status, status_raw: impl Into<String>, is_final: bool) -> Event {
        Event {
            source: source.to_string(),
            event_id: new_event_id(),
            received_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            status,
            status_raw: status_raw.into(),
            is_final,
            phase: None,
            pipeline: None,
            pipeline_id: None,
            pipeline_url: None,
            stage: None,
            task: None,
            build_number: None,
            build_url: None,
            repo: None,
            branch: None,
            commit: None,
            commit_short: None,
            previous_commit: None,
            commit_title: None,
            author: None,
            triggered_by: None,
            duration_ms: None,
            message: None,
            params: BTreeMap::new(),
            artifacts: Vec::new(),
            test_summary: None,
            previous_status: None,
            failing_since: None,
            failure_streak: None,
            transition: None,
            delivery_id: None,
            raw: serde_json::Value::Null,
        }
    }

    /// Sets `commit` and derives `commit_short` (the first 8 characters).
    pub fn set_commit(&mut self, commit: Option<String>) {
        self.commit_short = commit.as_ref().map(|c| c.chars().take(8).collect());
        self.commit = commit;
    }

    /// Looks a name up the way rule `content` does: params first, then the event's own fields.
    pub fn lookup(&self, name: &str) -> Option<String> {
        if let Some(v) = self.params.get(name) {
            return Some(v.clone());
        }
        match name {
            "source" => Some(self.source.clone()),
            "event_id" => Some(self.event_id.clone()),
            "received_at" => Some(self.received_at.clone()),
            "status" => Some(self.status.to_string()),
            "status_raw" => Some(self.status_raw.clone()),
            "final" => Some(self.is_final.to_string()),
            "phase" => self.phase.clone(),
            "pipeline" => self.pipeline.clone(),
            "pipeline_id" => self.pipeline_id.clone(),
            "pipeline_url" => self.pipeline_url.clone(),
            "stage" => self.stage.clone(),
            "task" => self.task.clone(),
            "build_number" => self.build_number.map(|n| n.to_string()),
            "build_url" => self.build_url.clone(),
            "repo" => self.repo.clone(),
            "branch" => self.branch.clone(),
            "commit" => self.commit.clone(),
            "commit_short" => self.commit_short.clone(),
            "previous_commit" => self.previous_commit.clone(),
            "commit_title" => self.commit_title.clone(),
            "author" => self.author.clone(),
            "triggered_by" => self.triggered_by.clone(),
            "duration_ms" => self.duration_ms.map(|n| n.to_string()),
            "message" => self.message.clone(),
            _ => None,
        }
    }

    /// A representative event, used by `herald check` to render every reachable template.
    pub fn sample() -> Event {
        let mut e = Event::new("flow", Status::Failure, "FAIL", true);
        e.event_id = "00000000-0000-7000-8000-000000000000".into();
        e.received_at = "2026-01-01T00:00:00.000Z".into();
        e.pipeline = Some("payments-api".into());
        e.pipeline_id = Some("2713459".into());
        e.pipeline_url = Some("https://ci.example.com/pipelines/2713459".into());
        e.stage = Some("test".into());
        e.task = Some("unit tests".into());
        e.build_number = Some(42);
        e.build_url = Some("https://ci.example.com/pipelines/2713459/builds/42".into());
        e.repo = Some("https://git.example.com/acme/payments-api.git".into());
        e.branch = Some("main".into());
        e.set_commit(Some("c0ffee1234567890abcdef1234567890abcdef12".into()));
        e.previous_commit = Some("9f3c2a1b7d4e5f60718293a4b5c6d7e8f9012345".into());
        e.commit_title = Some("fix: round refunds half-up".into());
        e.author = Some("Lin Wei".into());
        e.duration_ms = Some(192_000);
        e.message = Some("2 tests failed".into());
        e.params.insert("DEPLOY_ENV".into(), "staging".into());
        e.artifacts.push(Artifact {
            name: "payments-api.jar".into(),
            url: "https://ci.example.com/artifacts/payments-api.jar".into(),
        });
        e.test_summary = Some(TestSummary { total: 412, failed: 2, passed: 407, skipped: 3 });
        e
    }
}

/// A fresh, time-ordered event id (UUID v7).
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        assert_eq!(Status::parse("FAILURE"), None);
    }

    #[test]
    fn absent_fields_are_left_out() {
        let e = Event::new("flow", Status::Running, "RUNNING", false);
        let v = serde_json::to_value(&e).unwrap();
        assert!(v.get("branch").is_none());
        assert_eq!(v["final"], false);
    }

    #[test]
    fn lookup_prefers_params() {
        let mut e = Event::sample();
        e.params.insert("branch".into(), "from-params".into());
        assert_eq!(e.lookup("branch").as_deref(), Some("from-params"));
        assert_eq!(e.lookup("commit_short").as_deref(), Some("c0ffee12"));
        assert_eq!(e.lookup("nope"), None);
    }
}
