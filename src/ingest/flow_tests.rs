//! Tests for the Flow parser: the status table, both payload shapes and their variants.

use serde_json::json;

use super::*;

fn parse_json(v: Value) -> Result<Event, IngestError> {
    let bytes = serde_json::to_vec(&v).expect("serializable");
    parse(&Inbound { method: "POST", body: &bytes, ..Default::default() })
}

fn parse_bytes(body: &[u8]) -> Result<Event, IngestError> {
    parse(&Inbound { method: "POST", body, ..Default::default() })
}

/// A minimal documented-shape payload with the given task status.
fn task(code: &str) -> Value {
    json!({"event": "task", "action": "status", "task": {"statusCode": code}})
}

#[test]
fn status_table() {
    use Status::*;
    let cases = [
        ("RUNNING", Running, false),
        ("WAITING", Waiting, false),
        ("SUCCESS", Success, true),
        ("FINISH", Success, true),
        ("FAIL", Failure, true),
        ("CANCELLING", Aborted, false),
        ("CANCELED", Aborted, true),
        ("SKIP", Skipped, true),
        ("UNKNOWN", Unknown, false),
        ("UNKOWN", Unknown, false),
        ("SOMETHING_NEW", Unknown, false),
        ("success", Success, true),
    ];
    for (code, want, want_final) in cases {
        assert_eq!(map_status(code), (want, want_final), "{code}");
    }
}

#[test]
fn documented_shape_with_numeric_ids() {
    let e = parse_bytes(include_bytes!("../../tests/fixtures/inbound/flow-task-running.json")).unwrap();
    assert_eq!((e.source.as_str(), e.status, e.is_final), ("flow", Status::Running, false));
    assert_eq!(e.status_raw, "RUNNING");
    assert_eq!(e.pipeline_id.as_deref(), Some("2713459"));
    assert_eq!(e.build_number, Some(19));
    assert_eq!(e.pipeline_url.as_deref(), Some("https://rdc.aliyun.com/ec/pipelines/2713459"));
    assert_eq!(e.previous_commit.as_deref(), Some("1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"));
    assert_eq!(e.commit_short.as_deref(), Some("9f3c2a1b"));
    assert_eq!(e.commit_title, None);
    assert_eq!(e.triggered_by, None);
    assert!(e.message.as_deref().is_some_and(|m| m.ends_with("运行中")));
    let params: Vec<(&str, &str)> = e.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(params, [("DEPLOY_ENV", "staging"), ("RELEASE_TAG", "v2.3.1")]);
    assert_eq!(e.phase, None);
}

#[test]
fn observed_shape_with_string_ids_and_source_data() {
    let e = parse_bytes(include_bytes!("../../tests/fixtures/inbound/flow-task-fail.json")).unwrap();
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Failure, true, "FAIL"));
    assert_eq!(e.pipeline_id.as_deref(), Some("2713459"));
    assert_eq!(e.build_number, Some(22));
    assert_eq!(e.pipeline_url.as_deref(), Some("https://flow.aliyun.com/pipelines/2713459"));
    assert_eq!(e.repo.as_deref(), Some("https://codeup.aliyun.com/acme/payments-api.git"));
    assert_eq!(e.previous_commit.as_deref(), Some("9f3c2a1b7d4e5f60718293a4b5c6d7e8f9012345"));
    assert_eq!(e.commit_title.as_deref(), Some("fix: round refunds half-up"));
    assert_eq!(e.triggered_by.as_deref(), Some("林伟"));
    assert_eq!(e.author, None, "Flow does not send a commit author");
    assert_eq!(e.params.len(), 1, "the item's id is not a param");
}

#[test]
fn global_params_as_an_object() {
    let mut v = task("SUCCESS");
    v["globalParams"] =
        json!({"DEPLOY_ENV": "prod", "REPLICAS": 3, "DRY_RUN": false, "EMPTY": "", "GONE": null});
    let e = parse_json(v).unwrap();
    let params: Vec<(&str, &str)> = e.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(params, [("DEPLOY_ENV", "prod"), ("DRY_RUN", "false"), ("EMPTY", ""), ("REPLICAS", "3")]);
}

#[test]
fn global_params_list_tolerates_odd_items() {
    let mut v = task("SUCCESS");
    v["globalParams"] =
        json!([{"key": "A", "value": 1}, {"value": "no key"}, {"key": "B"}, {"key": "C", "value": ""}]);
    let e = parse_json(v).unwrap();
    let params: Vec<(&str, &str)> = e.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(params, [("A", "1"), ("C", "")]);
}

#[test]
fn previous_commit_in_either_spelling() {
    for key in ["previousCommitId", "privousCommitId"] {
        let mut v = task("RUNNING");
        v["sources"] = json!([{"repo": "r", "commitId": "c1", key: "c0"}]);
        assert_eq!(parse_json(v).unwrap().previous_commit.as_deref(), Some("c0"), "{key}");
    }
    let mut v = task("RUNNING");
    v["sources"] = json!([{"data": {"commitId": "c1", "previousCommitId": "new", "privousCommitId": "old"}}]);
    assert_eq!(parse_json(v).unwrap().previous_commit.as_deref(), Some("new"));
}

#[test]
fn unknown_spellings_and_cancelling() {
    for code in ["UNKOWN", "UNKNOWN"] {
        let e = parse_json(task(code)).unwrap();
        assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Unknown, false, code));
    }
    let e = parse_json(task("CANCELLING")).unwrap();
    assert_eq!((e.status, e.is_final), (Status::Aborted, false));
    let e = parse_json(task("CANCELED")).unwrap();
    assert_eq!((e.status, e.is_final), (Status::Aborted, true));
}

#[test]
fn sources_pick_the_first_code_source_and_normalize() {
    let mut v = task("SUCCESS");
    v["sources"] = json!([
        {"name": "package", "type": "artifact", "data": {"url": "https://x/pkg.tgz"}},
        {"data": {"repo": "git@x:a/b.git", "branch": "refs/heads/release/2", "commitMsg": "\nfeat: x\n\nbody"}}
    ]);
    let e = parse_json(v).unwrap();
    assert_eq!(e.repo.as_deref(), Some("git@x:a/b.git"));
    assert_eq!(e.branch.as_deref(), Some("release/2"));
    assert_eq!(e.commit_title.as_deref(), Some("feat: x"));
    assert_eq!(e.commit, None);
}

#[test]
fn minimal_payload_leaves_everything_else_absent() {
    let e = parse_json(task("WAITING")).unwrap();
    assert_eq!((e.status, e.is_final), (Status::Waiting, false));
    assert_eq!((e.pipeline, e.pipeline_id, e.pipeline_url, e.build_number), (None, None, None, None));
    assert_eq!((e.repo, e.branch, e.commit, e.previous_commit), (None, None, None, None));
    assert!(e.params.is_empty());
    assert_eq!(e.raw["action"], "status");
}

#[test]
fn pipeline_url_only_when_the_url_has_the_pipeline_id() {
    assert_eq!(
        pipeline_url("https://f/pipelines/12/builds/3", "12").as_deref(),
        Some("https://f/pipelines/12")
    );
    assert_eq!(pipeline_url("https://f/pipelines/123/builds/3", "12"), None);
    assert_eq!(pipeline_url("https://f/p/12?build=3", "12"), None);
}

#[test]
fn errors_name_the_field() {
    let err = parse_json(json!({"event": "task", "task": {"pipelineName": "x"}})).unwrap_err();
    assert_eq!(err, IngestError::Invalid("missing field \"task.statusCode\"".into()));
    let mut v = task("RUNNING");
    v["task"]["buildNumber"] = json!(true);
    let err = parse_json(v).unwrap_err();
    assert_eq!(
        err,
        IngestError::Invalid(
            "field \"task.buildNumber\": expected an integer or numeric string, got true".into()
        )
    );
    let mut v = task("RUNNING");
    v["globalParams"] = json!("DEPLOY_ENV=prod");
    let err = parse_json(v).unwrap_err();
    assert_eq!(
        err,
        IngestError::Invalid(
            "field \"globalParams\": expected a list of {key, value} or an object, got \"DEPLOY_ENV=prod\""
                .into()
        )
    );
    let mut v = task("RUNNING");
    v["sources"] = json!([{"data": {"repo": 5, "commitId": ["x"]}}]);
    let err = parse_json(v).unwrap_err();
    assert_eq!(
        err,
        IngestError::Invalid("field \"sources[0].data.commitId\": expected a string, got an array".into())
    );
    assert!(
        matches!(parse_bytes(b"{\"event\": \"task\"").unwrap_err(), IngestError::Malformed(m) if m.contains("line 1"))
    );
}
