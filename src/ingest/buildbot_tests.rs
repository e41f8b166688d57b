//! Tests for the Buildbot parser: the results table, the fixtures and field fallbacks.

use serde_json::json;

use super::*;

const STARTED: &[u8] = include_bytes!("../../tests/fixtures/inbound/buildbot-build-started.json");
const FINISHED: &[u8] = include_bytes!("../../tests/fixtures/inbound/buildbot-build-finished.json");

fn parse_bytes(body: &[u8]) -> Result<Event, IngestError> {
    parse(&Inbound { method: "POST", body, ..Default::default() })
}

fn parse_json(v: Value) -> Result<Event, IngestError> {
    parse_bytes(&serde_json::to_vec(&v).expect("serializable"))
}

/// The smallest body the parser accepts, plus `extra` members.
fn build(extra: Value) -> Value {
    let mut v = json!({"buildid": 1, "builderid": 3, "state_string": "starting"});
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

#[test]
fn results_table() {
    use Status::*;
    let cases = [
        (None, false, "starting", Started, false),
        (None, false, "created", Started, false),
        (None, false, "building", Running, false),
        (Some(0), true, "build successful", Success, true),
        (Some(1), true, "warnings", Unstable, true),
        (Some(2), true, "failed test (failure)", Failure, true),
        (Some(3), true, "skipped", Skipped, true),
        (Some(4), true, "exception", Failure, true),
        (Some(5), true, "retry", Waiting, false),
        (Some(6), true, "cancelled", Aborted, true),
        (Some(9), true, "?", Unknown, true),
        (Some(9), false, "?", Unknown, false),
        (None, true, "finished", Unknown, true),
    ];
    for (results, complete, state, want, want_final) in cases {
        assert_eq!(
            map_status(results, complete, state),
            (want, want_final),
            "{results:?} {complete} {state}"
        );
    }
}

#[test]
fn started_build() {
    let e = parse_bytes(STARTED).unwrap();
    assert_eq!((e.source.as_str(), e.status, e.is_final), ("buildbot", Status::Started, false));
    assert_eq!(e.status_raw, "starting");
    assert_eq!(e.pipeline.as_deref(), Some("acme-tests"));
    assert_eq!(e.pipeline_id.as_deref(), Some("3"));
    assert_eq!(e.pipeline_url.as_deref(), Some("https://buildbot.example.com/#/builders/3"));
    assert_eq!(e.build_number, Some(57));
    assert_eq!(e.commit.as_deref(), Some("5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d"));
    assert_eq!(e.duration_ms, None);
    assert_eq!(e.triggered_by, None);
}

#[test]
fn finished_build_params_and_duration() {
    let e = parse_bytes(FINISHED).unwrap();
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Success, true, "0"));
    assert_eq!(e.duration_ms, Some(422_000));
    assert_eq!(e.params.get("scheduler").map(String::as_str), Some("main-commits"));
    assert_eq!(e.params.get("buildnumber").map(String::as_str), Some("57"));
    assert_eq!(e.params.get("codebase").map(String::as_str), Some(""));
    assert_eq!(
        e.params.get("workerinfo").map(String::as_str),
        Some(r#"{"admin":"ci@acme.example","host":"w1.acme.internal"}"#)
    );
}

#[test]
fn exception_keeps_its_code_in_status_raw() {
    let e = parse_json(build(json!({"complete": true, "results": 4, "state_string": "exception"}))).unwrap();
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Failure, true, "4"));
    let e = parse_json(build(json!({"complete": true, "results": 5}))).unwrap();
    assert_eq!((e.status, e.is_final), (Status::Waiting, false));
}

#[test]
fn properties_fill_in_without_a_sourcestamp() {
    let e = parse_json(build(json!({
        "number": 4, "url": "https://bb/#/builders/3/builds/4",
        "properties": {
            "buildername": ["nightly", "Builder"], "repository": ["https://git/x.git", "Build"],
            "branch": ["refs/heads/main", "Build"], "revision": ["aaa", "Build"],
            "got_revision": [{"core": "bbb"}, "Git"], "owner": ["Lin Wei <lin@example.com>", "Force Build Form"],
            "nothing": [null, "Build"], "loose": "value"
        }
    })))
    .unwrap();
    assert_eq!(e.pipeline.as_deref(), Some("nightly"));
    assert_eq!(e.repo.as_deref(), Some("https://git/x.git"));
    assert_eq!(e.branch.as_deref(), Some("main"));
    assert_eq!(e.commit.as_deref(), Some("aaa"), "a per-codebase got_revision map is skipped");
    assert_eq!(e.triggered_by.as_deref(), Some("Lin Wei <lin@example.com>"));
    assert!(!e.params.contains_key("nothing"));
    assert_eq!(e.params.get("loose").map(String::as_str), Some("value"));
}

#[test]
fn got_revision_wins_over_the_sourcestamp() {
    let e = parse_json(build(json!({
        "buildset": {"sourcestamps": [{"repository": "r", "branch": "dev", "revision": null, "codebase": ""}]},
        "properties": {"got_revision": ["ccc", "Git"]}
    })))
    .unwrap();
    assert_eq!(
        (e.repo.as_deref(), e.branch.as_deref(), e.commit.as_deref()),
        (Some("r"), Some("dev"), Some("ccc"))
    );
}

#[test]
fn duration_needs_both_ends() {
    let e = parse_json(build(json!({"started_at": 100, "complete_at": null}))).unwrap();
    assert_eq!(e.duration_ms, None);
    let e = parse_json(build(json!({"started_at": 100, "complete_at": 90, "complete": true, "results": 0})))
        .unwrap();
    assert_eq!(e.duration_ms, None, "a clock going backwards gives no duration");
}

#[test]
fn errors_name_the_field() {
    let err = parse_json(json!({"builderid": 3, "state_string": "starting"})).unwrap_err();
    assert_eq!(err, IngestError::Invalid("missing field \"buildid\"".into()));
    let err = parse_json(json!({"buildid": 1, "builderid": 3})).unwrap_err();
    assert_eq!(err, IngestError::Invalid("missing field \"state_string\"".into()));
    let err = parse_json(build(json!({"results": "bad"}))).unwrap_err();
    assert_eq!(
        err,
        IngestError::Invalid("field \"results\": expected an integer or numeric string, got \"bad\"".into())
    );
    let err = parse_json(build(json!({"complete": 1}))).unwrap_err();
    assert_eq!(err, IngestError::Invalid("field \"complete\": expected a boolean, got 1".into()));
    let err = parse_json(build(json!({"properties": []}))).unwrap_err();
    assert_eq!(err, IngestError::Invalid("field \"properties\": expected an object, got an array".into()));
}
