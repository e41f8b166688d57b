//! Tests for the GitLab parser: the status table, the pipeline fixtures, job hooks in both
//! timestamp formats, delivery ids and the events it refuses.

use serde_json::{json, Value};

use super::*;

const FAILED: &[u8] = include_bytes!("../../tests/fixtures/inbound/gitlab-pipeline-failed.json");
const RUNNING: &[u8] = include_bytes!("../../tests/fixtures/inbound/gitlab-pipeline-running.json");
const WARNINGS: &[u8] =
    include_bytes!("../../tests/fixtures/inbound/gitlab-pipeline-success-with-warnings.json");

fn request<'a>(headers: &[(&str, &str)], body: &'a [u8]) -> Inbound<'a> {
    let headers = headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
    Inbound { method: "POST", headers, body, ..Default::default() }
}

fn pipeline_hook(body: &[u8]) -> Result<Event, IngestError> {
    parse(&request(&[("X-Gitlab-Event", "Pipeline Hook")], body))
}

fn job_hook(v: &Value) -> Result<Event, IngestError> {
    let body = serde_json::to_vec(v).expect("serializable");
    parse(&request(&[("X-Gitlab-Event", "Job Hook")], &body))
}

/// A job hook as GitLab 17 sends it (trimmed), with ISO 8601 timestamps.
fn job(status: &str) -> Value {
    json!({
        "object_kind": "build", "ref": "main", "tag": false,
        "before_sha": "0000000000000000000000000000000000000000",
        "sha": "2293ada6b400935a1378653304eaf6221e0fdb8f",
        "build_id": 1978, "build_name": "lint", "build_stage": "test", "build_status": status,
        "build_created_at": "2024-06-12T09:42:01.120Z", "build_started_at": "2024-06-12T09:43:12.000Z",
        "build_finished_at": "2024-06-12T09:43:40.500Z", "build_duration": 28.5,
        "build_allow_failure": false,
        "build_failure_reason": if status == "failed" { "script_failure" } else { "unknown_failure" },
        "pipeline_id": 2366, "project_id": 380, "project_name": "Acme / payments-api",
        "user": {"id": 42, "name": "Lin Wei", "username": "lin.wei"},
        "commit": {"id": 2366, "sha": "2293ada6b400935a1378653304eaf6221e0fdb8f",
                   "message": "Fix rounding in refunds\n\nUse half-up.", "author_name": "Lin Wei"},
        "repository": {"name": "payments-api", "homepage": "https://gitlab.example.com/acme/payments-api/"}
    })
}

#[test]
fn status_table() {
    use Status::*;
    let cases = [
        ("created", None, false, Waiting, false),
        ("waiting_for_resource", None, false, Waiting, false),
        ("preparing", None, false, Waiting, false),
        ("pending", None, false, Waiting, false),
        ("scheduled", None, false, Waiting, false),
        ("manual", None, false, Waiting, false),
        ("waiting_for_callback", None, false, Waiting, false),
        ("running", None, false, Running, false),
        ("success", Some("passed"), false, Success, true),
        ("success", Some("passed with warnings"), false, Unstable, true),
        ("failed", Some("failed"), false, Failure, true),
        ("failed", None, true, Unstable, true),
        ("canceling", None, false, Aborted, false),
        ("canceled", None, false, Aborted, true),
        ("skipped", None, false, Skipped, true),
        ("SUCCESS", None, false, Success, true),
        ("something_new", None, false, Unknown, false),
    ];
    for (status, detailed, allow_failure, want, want_final) in cases {
        assert_eq!(map_status(status, detailed, allow_failure), (want, want_final), "{status} {detailed:?}");
    }
}

#[test]
fn failed_pipeline_fixture() {
    let headers = [
        ("X-Gitlab-Event", "Pipeline Hook"),
        ("X-Gitlab-Event-UUID", "event-uuid"),
        ("Idempotency-Key", "idem-key"),
    ];
    let e = parse(&request(&headers, FAILED)).unwrap();
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Failure, true, "failed"));
    assert_eq!(e.pipeline.as_deref(), Some("acme/payments-api"));
    assert_eq!((e.pipeline_id.as_deref(), e.build_number), (Some("2366"), Some(118)));
    assert_eq!(e.build_url.as_deref(), Some("https://gitlab.example.com/acme/payments-api/-/pipelines/2366"));
    assert_eq!(e.previous_commit.as_deref(), Some("bcbb5ec396a2c0f828686f14fac9b80b780504f2"));
    assert_eq!(e.triggered_by.as_deref(), Some("Lin Wei"));
    assert_eq!(e.duration_ms, Some(318_000));
    assert_eq!(e.params.get("DEPLOY_ENV").map(String::as_str), Some("staging"));
    assert_eq!(e.delivery_id.as_deref(), Some("idem-key"), "Idempotency-Key comes first");
    assert_eq!((e.stage, e.task), (None, None));
}

#[test]
fn delivery_id_falls_back_to_the_event_uuid() {
    let headers = [("X-Gitlab-Event", "Pipeline Hook"), ("X-Gitlab-Event-UUID", "event-uuid")];
    assert_eq!(parse(&request(&headers, RUNNING)).unwrap().delivery_id.as_deref(), Some("event-uuid"));
    assert_eq!(pipeline_hook(RUNNING).unwrap().delivery_id, None);
}

#[test]
fn running_pipeline_and_warnings() {
    let e = pipeline_hook(RUNNING).unwrap();
    assert_eq!((e.status, e.is_final, e.duration_ms), (Status::Running, false, None));
    let e = pipeline_hook(WARNINGS).unwrap();
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Unstable, true, "success"));
}

#[test]
fn named_pipelines_and_tags() {
    let mut v: Value = serde_json::from_slice(FAILED).unwrap();
    v["object_attributes"]["name"] = json!("nightly");
    v["object_attributes"]["ref"] = json!("v2.3.1");
    v["object_attributes"]["tag"] = json!(true);
    v["object_attributes"]["url"] = Value::Null;
    let e = pipeline_hook(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(e.pipeline.as_deref(), Some("acme/payments-api nightly"));
    assert_eq!(e.branch.as_deref(), Some("refs/tags/v2.3.1"));
    assert_eq!(e.build_url.as_deref(), Some("https://gitlab.example.com/acme/payments-api/-/pipelines/2366"));
}

#[test]
fn job_hook_with_iso_timestamps() {
    let e = job_hook(&job("failed")).unwrap();
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Failure, true, "failed"));
    assert_eq!(e.pipeline.as_deref(), Some("Acme / payments-api"));
    assert_eq!((e.stage.as_deref(), e.task.as_deref()), (Some("test"), Some("lint")));
    assert_eq!((e.pipeline_id.as_deref(), e.build_number), (Some("2366"), None));
    assert_eq!(e.build_url.as_deref(), Some("https://gitlab.example.com/acme/payments-api/-/jobs/1978"));
    assert_eq!(
        e.pipeline_url.as_deref(),
        Some("https://gitlab.example.com/acme/payments-api/-/pipelines/2366")
    );
    assert_eq!(e.repo.as_deref(), Some("https://gitlab.example.com/acme/payments-api/"));
    assert_eq!(e.previous_commit, None, "all zeros means no previous commit");
    assert_eq!(e.commit_title.as_deref(), Some("Fix rounding in refunds"));
    assert_eq!(e.author.as_deref(), Some("Lin Wei"));
    assert_eq!(e.message.as_deref(), Some("script_failure"));
    assert_eq!(e.duration_ms, Some(28_500));

    let mut v = job("failed");
    v["build_duration"] = Value::Null;
    assert_eq!(job_hook(&v).unwrap().duration_ms, Some(28_500), "from the ISO timestamps");
}

#[test]
fn job_hook_with_utc_timestamps() {
    let mut v = job("success");
    v["build_duration"] = Value::Null;
    v["build_started_at"] = json!("2024-06-12 09:43:12 UTC");
    v["build_finished_at"] = json!("2024-06-12 09:44:02 UTC");
    v["project"] = json!({"path_with_namespace": "acme/payments-api"});
    let e = job_hook(&v).unwrap();
    assert_eq!((e.status, e.is_final), (Status::Success, true));
    assert_eq!(e.duration_ms, Some(50_000));
    assert_eq!(e.pipeline.as_deref(), Some("acme/payments-api"), "path_with_namespace when sent");
    assert_eq!(e.message, None, "GitLab's unknown_failure on a job that did not fail is noise");
}

#[test]
fn job_statuses() {
    let mut v = job("failed");
    v["build_allow_failure"] = json!(true);
    let e = job_hook(&v).unwrap();
    assert_eq!((e.status, e.is_final), (Status::Unstable, true));
    let e = job_hook(&job("running")).unwrap();
    assert_eq!((e.status, e.is_final, e.duration_ms), (Status::Running, false, None));
    let e = job_hook(&job("canceling")).unwrap();
    assert_eq!((e.status, e.is_final), (Status::Aborted, false));
}

#[test]
fn unhandled_events_are_named() {
    let err = parse(&request(&[("X-Gitlab-Event", "Push Hook")], FAILED)).unwrap_err();
    let want = "GitLab event \"Push Hook\" is not handled; send Pipeline Hook or Job Hook";
    assert_eq!(err, IngestError::Invalid(want.into()));
    let err =
        parse(&request(&[("X-Gitlab-Event", "System Hook")], br#"{"object_kind": "push"}"#)).unwrap_err();
    assert!(matches!(err, IngestError::Invalid(m) if m.contains("object_kind \"push\"")));
}

#[test]
fn kind_from_either_side() {
    let e = parse(&request(&[], FAILED)).unwrap();
    assert_eq!(e.build_number, Some(118), "object_kind alone is enough");
    let mut v = job("running");
    v.as_object_mut().unwrap().remove("object_kind");
    assert_eq!(job_hook(&v).unwrap().task.as_deref(), Some("lint"), "the header alone is enough");
    let err = parse(&request(&[], br#"{"a": 1}"#)).unwrap_err();
    assert_eq!(err, IngestError::Invalid("missing field \"object_kind\"".into()));
}

#[test]
fn errors_name_the_field() {
    let err = pipeline_hook(br#"{"object_kind": "pipeline", "object_attributes": {}}"#).unwrap_err();
    assert_eq!(err, IngestError::Invalid("missing field \"object_attributes.status\"".into()));
    let mut v = job("success");
    v["build_duration"] = json!("long");
    let err = job_hook(&v).unwrap_err();
    assert_eq!(
        err,
        IngestError::Invalid("field \"build_duration\": expected a number of seconds, got \"long\"".into())
    );
    let body =
        br#"{"object_kind": "pipeline", "object_attributes": {"status": "running", "variables": ["x"]}}"#;
    let err = pipeline_hook(body).unwrap_err();
    assert_eq!(
        err,
        IngestError::Invalid(
            "field \"object_attributes.variables[0]\": expected a {key, value} object, got \"x\"".into()
        )
    );
    assert!(matches!(pipeline_hook(b"{").unwrap_err(), IngestError::Malformed(_)));
}
