//! Tests for generic sources: status mapping, `final`, pointers that find nothing, loose types
//! and the errors that name the source, the field and the pointer.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::ingest::{parse_events, Format, Source};

fn spec(pointers: &[(&str, &str)], status_map: &[(&str, &str)]) -> GenericSpec {
    let owned = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    GenericSpec { pointers: owned(pointers), status_map: owned(status_map) }
}

fn run(spec: &GenericSpec, v: Value) -> Result<Event, IngestError> {
    let body = serde_json::to_vec(&v).expect("serializable");
    parse("myci", spec, &Inbound { method: "POST", body: &body, ..Default::default() })
}

fn invalid(r: Result<Event, IngestError>) -> String {
    match r {
        Err(IngestError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn status_mapping_table() {
    let s = spec(&[], &[("passed", "success"), ("Broken", "failure"), ("wip", "running")]);
    let cases = [
        ("passed", Status::Success),
        ("PASSED", Status::Success),
        ("Broken", Status::Failure),
        ("broken", Status::Failure),
        ("wip", Status::Running),
        ("success", Status::Success),
        ("Aborted", Status::Aborted),
        ("exploded", Status::Unknown),
        ("", Status::Unknown),
    ];
    for (word, want) in cases {
        assert_eq!(map_status(word, &s), want, "{word:?}");
    }
    let exact_first = spec(&[], &[("ok", "success"), ("OK", "failure")]);
    assert_eq!(map_status("OK", &exact_first), Status::Failure, "an exact match comes first");
    assert_eq!(map_status("ok", &exact_first), Status::Success, "an exact match comes first");
}

#[test]
fn default_final_table() {
    for status in Status::ALL {
        let want = matches!(
            status,
            Status::Success | Status::Failure | Status::Unstable | Status::Aborted | Status::Skipped
        );
        assert_eq!(default_final(status), want, "{status}");
    }
}

#[test]
fn full_mapping() {
    let s = spec(
        &[
            ("status", "/state"),
            ("pipeline", "/job/name"),
            ("pipeline_id", "/job/id"),
            ("build_number", "/run/number"),
            ("build_url", "/run/url"),
            ("branch", "/git/ref"),
            ("commit", "/git/sha"),
            ("commit_title", "/git/message"),
            ("author", "/git/author"),
            ("duration_ms", "/run/ms"),
            ("message", "/notes/0"),
            ("delivery_id", "/id"),
            ("stage", "/nowhere"),
        ],
        &[("green", "success")],
    );
    let v = json!({
        "id": "d-1", "state": "green",
        "job": {"name": "nightly", "id": 17},
        "run": {"number": "42", "url": "https://ci/r/42", "ms": 1500},
        "git": {"ref": "refs/heads/main", "sha": "c0ffee1234567890", "message": "feat: x\n\nbody", "author": "Lin"},
        "notes": ["all good"]
    });
    let e = run(&s, v).unwrap();
    assert_eq!(
        (e.source.as_str(), e.status, e.is_final, e.status_raw.as_str()),
        ("myci", Status::Success, true, "green")
    );
    assert_eq!((e.pipeline.as_deref(), e.pipeline_id.as_deref()), (Some("nightly"), Some("17")));
    assert_eq!((e.build_number, e.build_url.as_deref()), (Some(42), Some("https://ci/r/42")));
    assert_eq!((e.branch.as_deref(), e.commit_short.as_deref()), (Some("main"), Some("c0ffee12")));
    assert_eq!((e.commit_title.as_deref(), e.author.as_deref()), (Some("feat: x"), Some("Lin")));
    assert_eq!((e.duration_ms, e.message.as_deref()), (Some(1500), Some("all good")));
    assert_eq!(e.delivery_id.as_deref(), Some("d-1"));
    assert_eq!(e.stage, None, "a pointer that finds nothing leaves the field absent");
    assert_eq!((e.repo, e.task), (None, None), "unmapped fields are absent");
    assert_eq!(e.raw["job"]["id"], 17);
}

#[test]
fn status_words_may_be_numbers_or_booleans() {
    let s = spec(&[("status", "/code")], &[("0", "success"), ("true", "failure")]);
    let e = run(&s, json!({"code": 0})).unwrap();
    assert_eq!((e.status, e.status_raw.as_str()), (Status::Success, "0"));
    assert_eq!(run(&s, json!({"code": true})).unwrap().status, Status::Failure);
    let e = run(&s, json!({"code": "RUNNING"})).unwrap();
    assert_eq!((e.status, e.is_final), (Status::Running, false), "a Herald word needs no map entry");
    let e = run(&s, json!({"code": "weird"})).unwrap();
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Unknown, false, "weird"));
}

#[test]
fn final_pointer_wins_over_the_default() {
    let s = spec(&[("status", "/s"), ("final", "/done")], &[]);
    let cases = [
        (json!({"s": "success", "done": false}), false),
        (json!({"s": "running", "done": true}), true),
        (json!({"s": "running", "done": "true"}), true),
        (json!({"s": "failure"}), true),
        (json!({"s": "waiting", "done": null}), false),
    ];
    for (v, want) in cases {
        assert_eq!(run(&s, v.clone()).unwrap().is_final, want, "{v}");
    }
    let m = invalid(run(&s, json!({"s": "success", "done": "yes"})));
    assert_eq!(m, "generic source \"myci\", final: field \"/done\": expected a boolean, got \"yes\"");
}

#[test]
fn numeric_build_numbers() {
    let s = spec(&[("status", "/s"), ("build_number", "/n")], &[]);
    for (n, want) in
        [(json!(7), Some(7)), (json!("8"), Some(8)), (json!(" 9 "), Some(9)), (json!(null), None)]
    {
        assert_eq!(run(&s, json!({"s": "success", "n": n})).unwrap().build_number, want, "{n}");
    }
    let m = invalid(run(&s, json!({"s": "success", "n": "v1"})));
    assert_eq!(
        m,
        "generic source \"myci\", build_number: field \"/n\": expected an integer or numeric string, got \"v1\""
    );
}

#[test]
fn missing_status_names_the_pointer() {
    let s = spec(&[("status", "/state")], &[]);
    assert_eq!(invalid(run(&s, json!({"other": 1}))), "generic source \"myci\": nothing at /state (status)");
    assert_eq!(
        invalid(run(&s, json!({"state": " "}))),
        "generic source \"myci\": nothing at /state (status)"
    );
    let m = invalid(run(&s, json!({"state": {"name": "ok"}})));
    assert_eq!(m, "generic source \"myci\", status: field \"/state\": expected a status word, got an object");
    let m = invalid(run(&spec(&[], &[]), json!({"state": "ok"})));
    assert_eq!(m, "generic source \"myci\" has no status pointer configured");
}

#[test]
fn text_fields_accept_scalars_only() {
    let s = spec(&[("status", "/s"), ("pipeline", "/p"), ("task", "/t")], &[]);
    let e = run(&s, json!({"s": "success", "p": 12, "t": false})).unwrap();
    assert_eq!((e.pipeline.as_deref(), e.task.as_deref()), (Some("12"), Some("false")));
    let m = invalid(run(&s, json!({"s": "success", "p": ["a"]})));
    assert_eq!(m, "generic source \"myci\", pipeline: field \"/p\": expected a string, got an array");
}

#[test]
fn through_parse_events() {
    let s = spec(&[("status", "/s")], &[]);
    let source = Source { name: "myci", format: Format::Generic, generic: Some(&s), base_url: None };
    let req = Inbound { method: "POST", body: br#"{"s": "failure"}"#, ..Default::default() };
    let events = parse_events(&source, &req).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].source.as_str(), events[0].status), ("myci", Status::Failure));

    let bare = Source { name: "myci", format: Format::Generic, generic: None, base_url: None };
    let err = parse_events(&bare, &req).unwrap_err();
    assert_eq!(err, IngestError::Invalid("generic source \"myci\" has no field mapping".into()));
    let err = crate::ingest::parse(Format::Generic, &req).unwrap_err();
    assert!(matches!(err, IngestError::Invalid(m) if m.contains("field mapping")));
    let bad = Inbound { method: "POST", body: b"{\"s\":", ..Default::default() };
    assert!(matches!(parse_events(&source, &bad).unwrap_err(), IngestError::Malformed(_)));
}
