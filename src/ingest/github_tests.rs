//! Tests for the GitHub parser: the status table, both fixtures, jobs, Gitea's copies, pings,
//! form bodies and the events it refuses.

use serde_json::json;

use super::*;
use crate::ingest::{parse_events as parse_source, Source};

const COMPLETED: &[u8] = include_bytes!("../../tests/fixtures/inbound/github-workflow-run-completed.json");
const IN_PROGRESS: &[u8] =
    include_bytes!("../../tests/fixtures/inbound/github-workflow-run-in-progress.json");

fn request<'a>(headers: &[(&str, &str)], body: &'a [u8]) -> Inbound<'a> {
    let headers = headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
    Inbound { method: "POST", headers, body, ..Default::default() }
}

/// The single event of a delivery with this event header.
fn one(event: &str, body: &[u8]) -> Result<Event, IngestError> {
    let mut events = parse_events(&request(&[("X-GitHub-Event", event)], body))?;
    assert_eq!(events.len(), 1, "one event per delivery");
    Ok(events.remove(0))
}

fn job_payload(status: &str, conclusion: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": status,
        "workflow_job": {
            "id": 26_719_937_551u64, "run_id": 9_481_726_354u64, "run_attempt": 1,
            "workflow_name": "CI", "name": "test (ubuntu)",
            "head_branch": "refs/heads/main", "head_sha": "7d1c0e9b8a7f6e5d4c3b2a190817263544536271",
            "status": status, "conclusion": conclusion,
            "started_at": "2024-06-12T09:42:10Z", "completed_at": "2024-06-12T09:45:40Z",
            "html_url": "https://github.com/acme/payments-api/actions/runs/9481726354/job/26719937551"
        },
        "repository": {"full_name": "acme/payments-api"},
        "sender": {"login": "lin-wei"}
    }))
    .expect("serializable")
}

#[test]
fn status_table() {
    use Status::*;
    let cases = [
        ("requested", None, Waiting, false),
        ("queued", None, Waiting, false),
        ("pending", None, Waiting, false),
        ("waiting", None, Waiting, false),
        ("in_progress", None, Running, false),
        ("completed", Some("success"), Success, true),
        ("completed", Some("neutral"), Success, true),
        ("completed", Some("failure"), Failure, true),
        ("completed", Some("timed_out"), Failure, true),
        ("completed", Some("startup_failure"), Failure, true),
        ("completed", Some("cancelled"), Aborted, true),
        ("completed", Some("skipped"), Skipped, true),
        ("completed", Some("action_required"), Waiting, false),
        ("completed", Some("stale"), Unknown, true),
        ("completed", None, Unknown, true),
        ("COMPLETED", Some("SUCCESS"), Success, true),
        ("something_new", None, Unknown, false),
    ];
    for (status, conclusion, want, want_final) in cases {
        assert_eq!(map_status(status, conclusion), (want, want_final), "{status} {conclusion:?}");
    }
}

#[test]
fn completed_run_fixture() {
    let headers = [("X-GitHub-Event", "workflow_run"), ("X-GitHub-Delivery", "7dd89777")];
    let e = parse_events(&request(&headers, COMPLETED)).unwrap().remove(0);
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Failure, true, "failure"));
    assert_eq!(e.pipeline.as_deref(), Some("acme/payments-api CI"));
    assert_eq!(e.pipeline_id.as_deref(), Some("9481726354"));
    assert_eq!(e.build_number, Some(731));
    assert_eq!(e.repo.as_deref(), Some("acme/payments-api"));
    assert_eq!(e.commit_short.as_deref(), Some("7d1c0e9b"));
    assert_eq!(e.commit_title.as_deref(), Some("fix: round refunds half-up"));
    assert_eq!(e.author.as_deref(), Some("Lin Wei"));
    assert_eq!(e.triggered_by.as_deref(), Some("lin-wei"));
    assert_eq!(e.duration_ms, Some(332_000));
    assert_eq!(e.phase.as_deref(), Some("completed"));
    assert_eq!(e.delivery_id.as_deref(), Some("7dd89777"));
    assert_eq!(e.pipeline_url, None);
    assert_eq!(e.raw["workflow_run"]["run_attempt"], 1);
}

#[test]
fn a_run_in_progress_has_no_duration_yet() {
    let e = one("workflow_run", IN_PROGRESS).unwrap();
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Running, false, "in_progress"));
    assert_eq!(e.duration_ms, None, "updated_at is not an end while the run goes on");
    assert_eq!(e.delivery_id, None, "no delivery header, no delivery id");
}

#[test]
fn completed_job() {
    let e = one("workflow_job", &job_payload("completed", Some("success"))).unwrap();
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Success, true, "success"));
    assert_eq!(e.pipeline.as_deref(), Some("acme/payments-api CI / test (ubuntu)"));
    assert_eq!(e.task.as_deref(), Some("test (ubuntu)"));
    assert_eq!(e.pipeline_id.as_deref(), Some("9481726354"), "the run's id, as for run events");
    assert_eq!(e.build_number, None, "jobs have no run_number");
    assert_eq!(
        e.pipeline_url.as_deref(),
        Some("https://github.com/acme/payments-api/actions/runs/9481726354")
    );
    assert_eq!(e.branch.as_deref(), Some("main"));
    assert_eq!(e.duration_ms, Some(210_000));
    assert_eq!((e.commit_title, e.author), (None, None), "jobs carry no commit message");
    assert_eq!(e.triggered_by.as_deref(), Some("lin-wei"));
}

#[test]
fn queued_job_is_waiting_without_duration() {
    let e = one("workflow_job", &job_payload("queued", None)).unwrap();
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Waiting, false, "queued"));
    assert_eq!(e.duration_ms, None);
}

#[test]
fn gitea_job_without_workflow_name_or_run_number() {
    let body = serde_json::to_vec(&json!({
        "action": "completed",
        "workflow_job": {"id": 7, "run_id": 3, "name": "build", "head_branch": "main", "head_sha": "abc",
                         "status": "completed", "conclusion": "failure",
                         "html_url": "https://gitea.example.com/acme/app/actions/runs/3/jobs/0"},
        "repository": {"full_name": "acme/app"}
    }))
    .unwrap();
    let headers = [
        ("X-Gitea-Event", "workflow_job"),
        ("X-GitHub-Event", "workflow_job"),
        ("X-Gitea-Delivery", "gitea-1"),
    ];
    let e = parse_events(&request(&headers, &body)).unwrap().remove(0);
    assert_eq!((e.status, e.is_final), (Status::Failure, true));
    assert_eq!(e.pipeline.as_deref(), Some("acme/app build"));
    assert_eq!((e.pipeline_id.as_deref(), e.build_number), (Some("3"), None));
    assert_eq!(e.pipeline_url, None, "Gitea's job URL has another shape: nothing is guessed");
    assert_eq!(e.delivery_id.as_deref(), Some("gitea-1"));
}

#[test]
fn ping_gives_no_event() {
    let body = br#"{"zen": "Keep it logically awesome.", "hook_id": 292430182, "hook": {}}"#;
    assert_eq!(parse_events(&request(&[("X-GitHub-Event", "ping")], body)), Ok(vec![]));
    assert_eq!(parse_events(&request(&[], body)), Ok(vec![]), "a ping is recognised by its body too");
    let source = Source { name: "github", format: Format::Github, generic: None, base_url: None };
    assert_eq!(parse_source(&source, &request(&[("X-GitHub-Event", "ping")], body)), Ok(vec![]));
    let err =
        crate::ingest::parse(Format::Github, &request(&[("X-GitHub-Event", "ping")], body)).unwrap_err();
    assert!(matches!(err, IngestError::Invalid(m) if m.contains("ping")));
}

#[test]
fn unhandled_events_are_named() {
    let err = one("push", COMPLETED).unwrap_err();
    let want = "GitHub event \"push\" is not handled; send workflow_run or workflow_job";
    assert_eq!(err, IngestError::Invalid(want.into()));
    let headers = [("X-Gitea-Event", "push"), ("X-GitHub-Event", "push")];
    let err = parse_events(&request(&headers, COMPLETED)).unwrap_err();
    assert_eq!(
        err,
        IngestError::Invalid("Gitea event \"push\" is not handled; send workflow_run or workflow_job".into())
    );
    let err = parse_events(&request(&[], br#"{"ref": "refs/heads/main"}"#)).unwrap_err();
    assert!(matches!(err, IngestError::Invalid(m) if m.contains("X-GitHub-Event")));
}

#[test]
fn event_type_from_the_body_when_no_header() {
    let e = parse_events(&request(&[], COMPLETED)).unwrap().remove(0);
    assert_eq!(e.build_number, Some(731));
}

#[test]
fn form_encoded_body() {
    let json = std::str::from_utf8(COMPLETED).unwrap();
    let encoded: String =
        percent_encoding::utf8_percent_encode(json, percent_encoding::NON_ALPHANUMERIC).collect();
    let body = format!("payload={encoded}");
    let headers = [("X-GitHub-Event", "workflow_run"), ("Content-Type", "application/x-www-form-urlencoded")];
    let e = parse_events(&request(&headers, body.as_bytes())).unwrap().remove(0);
    assert_eq!((e.status, e.build_number), (Status::Failure, Some(731)));
    assert_eq!(e.raw["workflow_run"]["name"], "CI", "raw is the JSON inside the form");
    let e = parse_events(&request(&[("X-GitHub-Event", "workflow_run")], body.as_bytes())).unwrap();
    assert_eq!(e.len(), 1, "a body starting with payload= needs no content type");

    let err = parse_events(&request(&headers, b"other=1")).unwrap_err();
    assert_eq!(err, IngestError::Invalid("form-encoded body: missing field \"payload\"".into()));
    let err = parse_events(&request(&headers, b"payload=%7B%22a")).unwrap_err();
    assert!(matches!(err, IngestError::Malformed(m) if m.starts_with("malformed JSON")));
}

#[test]
fn errors_name_the_field() {
    let err = one("workflow_run", br#"{"action": "completed"}"#).unwrap_err();
    assert_eq!(err, IngestError::Invalid("missing field \"workflow_run\"".into()));
    let err = one("workflow_job", br#"{"workflow_job": {"name": "x"}}"#).unwrap_err();
    assert_eq!(err, IngestError::Invalid("missing field \"workflow_job.status\"".into()));
    let err =
        one("workflow_run", br#"{"workflow_run": {"status": "queued", "run_number": true}}"#).unwrap_err();
    assert_eq!(
        err,
        IngestError::Invalid(
            "field \"workflow_run.run_number\": expected an integer or numeric string, got true".into()
        )
    );
    let err = one("workflow_run", br#"{"workflow_run": {"status": 3}}"#).unwrap_err();
    assert_eq!(err, IngestError::Invalid("field \"workflow_run.status\": expected a string, got 3".into()));
    assert!(matches!(one("workflow_run", b"{").unwrap_err(), IngestError::Malformed(_)));
}

#[test]
fn status_falls_back_to_the_action() {
    let e = one("workflow_run", br#"{"action": "requested", "workflow_run": {"name": "CI"}}"#).unwrap();
    assert_eq!((e.status, e.status_raw.as_str()), (Status::Waiting, "requested"));
    assert_eq!(e.pipeline.as_deref(), Some("CI"), "no repository: the workflow's name alone");
}
