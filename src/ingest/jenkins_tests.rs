//! Tests for the Tikal parser: the status table, both wire forms, and the errors.

use serde_json::json;

use super::*;

fn post(body: &[u8]) -> Inbound<'_> {
    Inbound { method: "POST", body, ..Default::default() }
}

fn parse_json(v: Value) -> Result<Event, IngestError> {
    let bytes = serde_json::to_vec(&v).expect("serializable");
    parse(&post(&bytes))
}

/// The event without the fields that differ between two parses of the same build.
fn comparable(mut e: Event) -> Event {
    e.event_id.clear();
    e.received_at.clear();
    e.raw = Value::Null;
    e
}

const COMPLETED_JSON: &[u8] =
    include_bytes!("../../tests/fixtures/inbound/jenkins-tikal-completed-success.json");
const COMPLETED_XML: &[u8] =
    include_bytes!("../../tests/fixtures/inbound/jenkins-tikal-completed-success.xml");
const FINALIZED_JSON: &[u8] =
    include_bytes!("../../tests/fixtures/inbound/jenkins-tikal-finalized-failure.json");
const FINALIZED_XML: &[u8] =
    include_bytes!("../../tests/fixtures/inbound/jenkins-tikal-finalized-failure.xml");
const STARTED_JSON: &[u8] = include_bytes!("../../tests/fixtures/inbound/jenkins-tikal-started.json");
const STARTED_XML: &[u8] = include_bytes!("../../tests/fixtures/inbound/jenkins-tikal-started.xml");

#[test]
fn status_table() {
    use Status::*;
    let cases = [
        ("QUEUED", None, Waiting, false),
        ("STARTED", None, Started, false),
        ("COMPLETED", None, Running, false),
        ("FINALIZED", None, Running, false),
        ("NONE", None, Running, false),
        ("BOGUS", None, Unknown, false),
        ("COMPLETED", Some("SUCCESS"), Success, true),
        ("FINALIZED", Some("SUCCESS"), Success, true),
        ("COMPLETED", Some("UNSTABLE"), Unstable, true),
        ("FINALIZED", Some("FAILURE"), Failure, true),
        ("COMPLETED", Some("FAILED"), Failure, true),
        ("COMPLETED", Some("ABORTED"), Aborted, true),
        ("COMPLETED", Some("NOT_BUILT"), Skipped, true),
        ("COMPLETED", Some("WEIRD"), Unknown, true),
        ("STARTED", Some("FAILURE"), Failure, false),
        ("NONE", Some("UNSTABLE"), Unstable, false),
        ("QUEUED", Some("SUCCESS"), Success, false),
        ("completed", Some("success"), Success, true),
    ];
    for (phase, status, want, want_final) in cases {
        assert_eq!(map_status(phase, status), (want, want_final), "{phase} {status:?}");
    }
}

#[test]
fn completed_success_json() {
    let e = parse(&post(COMPLETED_JSON)).unwrap();
    assert_eq!((e.source.as_str(), e.status, e.is_final), ("jenkins", Status::Success, true));
    assert_eq!(e.status_raw, "SUCCESS");
    assert_eq!(e.phase.as_deref(), Some("COMPLETED"));
    assert_eq!(e.pipeline.as_deref(), Some("acme-api"));
    assert_eq!(e.pipeline_url.as_deref(), Some("https://ci.example.com/job/acme-api/"));
    assert_eq!(e.build_number, Some(128));
    assert_eq!(e.branch.as_deref(), Some("main"));
    assert_eq!(e.commit_short.as_deref(), Some("3f9a1c2e"));
    assert_eq!(e.author.as_deref(), Some("jdoe"));
    assert_eq!(e.duration_ms, Some(183_452));
    assert_eq!(e.message, None);
    assert_eq!(e.params.get("DEPLOY_ENV").map(String::as_str), Some("staging"));
    assert_eq!(e.test_summary, Some(TestSummary { total: 412, failed: 0, passed: 409, skipped: 3 }));
    assert_eq!(e.artifacts.len(), 2);
    assert_eq!(e.artifacts[0].name, "target/acme-api-1.4.2.jar");
    assert_eq!(
        e.artifacts[0].url,
        "https://ci.example.com/job/acme-api/128/artifact/target/acme-api-1.4.2.jar"
    );
    assert_eq!(e.raw["build"]["queue_id"], 4711);
}

#[test]
fn xml_and_json_give_the_same_event() {
    for (j, x) in
        [(COMPLETED_JSON, COMPLETED_XML), (FINALIZED_JSON, FINALIZED_XML), (STARTED_JSON, STARTED_XML)]
    {
        let from_json = parse(&post(j)).unwrap();
        let from_xml = parse(&post(x)).unwrap();
        let queue_id = from_json.raw["build"]["queue_id"].to_string();
        assert_eq!(
            from_xml.raw["build"]["queueId"].as_str(),
            Some(queue_id.as_str()),
            "XML leaves stay strings"
        );
        assert_eq!(comparable(from_json), comparable(from_xml));
    }
}

#[test]
fn gson_escapes_and_xml_entities_decode_the_same_notes() {
    let want = "Release train R42 & hotfix; runbook: https://wiki.example.com/display/OPS?pageId=4242";
    assert_eq!(parse(&post(FINALIZED_JSON)).unwrap().message.as_deref(), Some(want));
    let x = parse(&post(FINALIZED_XML)).unwrap();
    assert_eq!(x.message.as_deref(), Some(want));
    assert!(x.raw["build"]["log"].as_str().unwrap().contains("expected:<10.05> but was:<10.04>"));
}

#[test]
fn not_built_is_skipped_and_aborted_is_aborted() {
    let e = parse_json(json!({"name": "x", "url": "job/x/", "build": {"phase": "COMPLETED", "status": "NOT_BUILT", "duration": 12}}))
        .unwrap();
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Skipped, true, "NOT_BUILT"));
    assert_eq!(e.duration_ms, Some(12));
    let e = parse_json(json!({"url": "job/acme-web/job/main/", "build": {"phase": "FINALIZED", "status": "ABORTED", "duration": 0}}))
        .unwrap();
    assert_eq!((e.status, e.is_final), (Status::Aborted, true));
    assert_eq!(e.pipeline.as_deref(), Some("acme-web/main"));
    assert_eq!(e.duration_ms, None, "a zero duration is not known");
}

#[test]
fn manual_step_completed_without_status_is_running() {
    let e = parse_json(json!({
        "name": "main", "url": "job/acme-web/job/main/",
        "build": {"number": 7, "phase": "COMPLETED", "duration": 0, "notes": "deploying to staging", "log": "", "scm": {}}
    }))
    .unwrap();
    assert_eq!((e.status, e.is_final), (Status::Running, false));
    assert_eq!(e.status_raw, "COMPLETED");
    assert_eq!(e.duration_ms, None);
    assert_eq!(e.message.as_deref(), Some("deploying to staging"));
    assert_eq!(e.pipeline_url, None, "no absolute URL to derive it from");
    assert_eq!(e.build_url, None);
    assert!(e.params.is_empty() && e.artifacts.is_empty() && e.test_summary.is_none());
}

#[test]
fn absent_and_empty_values_stay_absent() {
    let e = parse(&post(STARTED_JSON)).unwrap();
    assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Started, false, "STARTED"));
    assert_eq!((e.repo, e.branch, e.commit, e.author), (None, None, None, None));
    assert_eq!(e.duration_ms, None);
    let e = parse_json(
        json!({"name": "solo", "build": {"phase": "STARTED", "notes": "", "scm": {"branch": ""}}}),
    )
    .unwrap();
    assert_eq!(e.pipeline.as_deref(), Some("solo"), "falls back to name without a job url");
    assert_eq!((e.message, e.branch), (None, None));
}

#[test]
fn artifacts_prefer_the_archive_then_s3() {
    let e = parse_json(json!({"build": {"phase": "COMPLETED", "status": "SUCCESS", "artifacts": {
        "a.jar": {"s3": "https://s3/a.jar"},
        "b.jar": {"archive": "https://ci/b.jar", "s3": "https://s3/b.jar"},
        "c.jar": {}
    }}}))
    .unwrap();
    let got: Vec<(&str, &str)> = e.artifacts.iter().map(|a| (a.name.as_str(), a.url.as_str())).collect();
    assert_eq!(got, [("a.jar", "https://s3/a.jar"), ("b.jar", "https://ci/b.jar")]);
}

#[test]
fn errors_name_the_field() {
    let err = parse_json(json!({"name": "x", "build": {"number": 3}})).unwrap_err();
    assert_eq!(err, IngestError::Invalid("missing field \"build.phase\"".into()));
    let err = parse_json(json!({"name": "x"})).unwrap_err();
    assert_eq!(err, IngestError::Invalid("missing field \"build.phase\"".into()));
    let err = parse_json(json!({"build": {"phase": "STARTED", "number": "abc"}})).unwrap_err();
    assert_eq!(
        err,
        IngestError::Invalid(
            "field \"build.number\": expected an integer or numeric string, got \"abc\"".into()
        )
    );
    let err = parse_json(json!({"build": {"phase": 3}})).unwrap_err();
    assert_eq!(err, IngestError::Invalid("field \"build.phase\": expected a string, got 3".into()));
    let err = parse_json(json!([1])).unwrap_err();
    assert!(matches!(err, IngestError::Invalid(m) if m.contains("expected an object")));
}

#[test]
fn xml_errors() {
    let err = parse(&post(b"<project><build><phase>STARTED</phase></build></project>")).unwrap_err();
    assert_eq!(err, IngestError::Invalid("XML root element is <project>, expected <job>".into()));
    let err = parse(&post(b"<job><build><phase>STARTED</phase></job>")).unwrap_err();
    assert!(matches!(err, IngestError::Malformed(ref m) if m.contains("at byte")), "{err:?}");
    let err = parse(&post(b"<job><name>x</name></job>")).unwrap_err();
    assert_eq!(err, IngestError::Invalid("missing field \"build.phase\"".into()));
}

#[test]
fn malformed_json_and_empty_bodies() {
    let err = parse(&post(b"{\"build\": {\"phase\": \"STARTED\",}}")).unwrap_err();
    assert!(matches!(err, IngestError::Malformed(ref m) if m.contains("line 1 column")), "{err:?}");
    assert!(matches!(parse(&post(b"")).unwrap_err(), IngestError::Malformed(_)));
}

#[test]
fn without_full_url_links_come_from_the_configured_root() {
    let base = super::super::jenkins_base("https://jenkins.example.com/ci").expect("a root");
    let source =
        |base_url| super::super::Source { name: "jenkins", format: Format::Jenkins, generic: None, base_url };
    let json = String::from_utf8(COMPLETED_JSON.to_vec())
        .unwrap()
        .replace("\"full_url\":\"https://ci.example.com/job/acme-api/128/\",", "");
    let xml = String::from_utf8(COMPLETED_XML.to_vec()).unwrap();
    let start = xml.find("<fullUrl>").expect("the XML has fullUrl");
    let end = xml.find("</fullUrl>").unwrap() + "</fullUrl>".len();
    let xml = format!("{}{}", &xml[..start], &xml[end..]);
    for body in [json.as_bytes(), xml.as_bytes()] {
        let bare = &super::super::parse_events(&source(None), &post(body)).unwrap()[0];
        assert_eq!(
            (bare.build_url.as_deref(), bare.pipeline_url.as_deref()),
            (None, None),
            "absent, not made up"
        );
        let e = &super::super::parse_events(&source(Some(&base)), &post(body)).unwrap()[0];
        assert_eq!(e.build_url.as_deref(), Some("https://jenkins.example.com/ci/job/acme-api/128/"));
        assert_eq!(e.pipeline_url.as_deref(), Some("https://jenkins.example.com/ci/job/acme-api/"));
    }
    // A link Jenkins sent is kept.
    let e = &super::super::parse_events(&source(Some(&base)), &post(COMPLETED_JSON)).unwrap()[0];
    assert_eq!(e.build_url.as_deref(), Some("https://ci.example.com/job/acme-api/128/"));
}

#[test]
fn a_jenkins_root_must_be_an_absolute_web_url() {
    let root = |s: &str| super::super::jenkins_base(s).map(String::from);
    assert_eq!(root("https://ci.example.com").as_deref(), Some("https://ci.example.com/"));
    assert_eq!(root("http://10.0.0.5:8080/jenkins/").as_deref(), Some("http://10.0.0.5:8080/jenkins/"));
    for bad in
        ["ci.example.com", "/jenkins", "ftp://ci.example.com/", "", "https://ci.example.com/jenkins?x=1"]
    {
        assert_eq!(root(bad), None, "{bad}");
    }
}
