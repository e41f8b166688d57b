//! Every inbound sample in `tests/fixtures/inbound/manifest.json`, through `herald::ingest`.
//!
//! For each case, the request is built from the manifest's method and headers and the file (a
//! `.query.txt` file is a GET query string with an empty body). `detect` must pick the manifest's
//! format, `parse_events` (what the gateway calls) must give at least one event, and every
//! `expected` field must match on every event (Alertmanager gives one per alert); an expected key
//! this test does not know fails the test, so nothing is skipped silently. `parse` must agree
//! with the first event. Delivery ids must come from the headers the manifest sends.

use std::path::{Path, PathBuf};

use herald::event::{Event, TestSummary};
use herald::ingest::{self, Format, Inbound, Source};
use serde_json::{Map, Value};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inbound")
}

fn manifest_cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures_dir().join("manifest.json")).expect("read manifest.json");
    let manifest: Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    manifest["cases"].as_array().expect("manifest has a cases array").clone()
}

/// The Herald format of a manifest `format`.
fn format_of(manifest_format: &str) -> Format {
    match manifest_format {
        "jenkins-tikal" => Format::Jenkins,
        "jenkins-jobstatus" => Format::JenkinsStatus,
        "aliyun-flow" => Format::Flow,
        "buildbot-httpstatuspush" => Format::Buildbot,
        "github-workflow_run" | "github-workflow_job" | "gitea-workflow_job" => Format::Github,
        "gitlab-pipeline" | "gitlab-job" => Format::Gitlab,
        "alertmanager-v4" => Format::Alertmanager,
        other => panic!("manifest format {other:?} is unknown to this test: teach it what to expect"),
    }
}

/// The file's bytes, and whether they are a query string rather than a body.
fn load(file: &str) -> (Vec<u8>, bool) {
    let bytes = std::fs::read(fixtures_dir().join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
    (bytes, file.ends_with(".query.txt"))
}

fn headers(case: &Value) -> Vec<(String, String)> {
    let map = case["headers"].as_object().cloned().unwrap_or_default();
    map.into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().expect("header values are strings").to_string()))
        .collect()
}

fn opt_str(v: &Value, file: &str, key: &str) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => panic!("{file}: expected.{key} should be a string or null, got {other}"),
    }
}

fn check_field(file: &str, e: &Event, key: &str, want: &Value) {
    let s = |v: &Value| opt_str(v, file, key);
    let (got, want): (Value, Value) = match key {
        "status" => (e.status.as_str().into(), want.clone()),
        "final" => (e.is_final.into(), want.clone()),
        "pipeline" => (e.pipeline.clone().into(), s(want).into()),
        "number" => (e.build_number.into(), want.as_u64().into()),
        "url" => (e.build_url.clone().into(), s(want).into()),
        "repo" => (e.repo.clone().into(), s(want).into()),
        "branch" => (e.branch.clone().into(), s(want).into()),
        "commit" => (e.commit.clone().into(), s(want).into()),
        "commit_title" => (e.commit_title.clone().into(), s(want).into()),
        "author" => (e.author.clone().into(), s(want).into()),
        "message" => (e.message.clone().into(), s(want).into()),
        "stage" => (e.stage.clone().into(), s(want).into()),
        "task" => (e.task.clone().into(), s(want).into()),
        "triggered_by" => (e.triggered_by.clone().into(), s(want).into()),
        // Alertmanager's group key is the id of the group the pipeline name comes from.
        "group_key" => (e.pipeline_id.clone().into(), s(want).into()),
        "duration_s" => {
            let ms = want.as_f64().map(|secs| (secs * 1000.0).round() as u64);
            assert!(want.is_null() || ms.is_some(), "{file}: expected.duration_s is not a number: {want}");
            (e.duration_ms.into(), ms.into())
        }
        "tests" => {
            let want = (!want.is_null()).then(|| {
                let n = |k: &str| want[k].as_u64().unwrap_or_else(|| panic!("{file}: expected.tests.{k}"));
                TestSummary {
                    total: n("total"),
                    failed: n("failed"),
                    passed: n("passed"),
                    skipped: n("skipped"),
                }
            });
            (serde_json::to_value(e.test_summary).unwrap(), serde_json::to_value(want).unwrap())
        }
        other => panic!("{file}: expected key {other:?} is not checked by this test; add it"),
    };
    assert_eq!(got, want, "{file}: field {key}");
}

/// The delivery id each format must take from the manifest's headers, if any.
fn expected_delivery_id(format: Format, req: &Inbound<'_>) -> Option<String> {
    let header = |name: &str| req.header(name).map(str::to_string);
    match format {
        Format::Github => header("X-GitHub-Delivery"),
        Format::Gitlab => header("Idempotency-Key").or_else(|| header("X-Gitlab-Event-UUID")),
        _ => None,
    }
}

/// Checks one case; returns how many fields were compared.
fn check_case(case: &Value) -> usize {
    let file = case["file"].as_str().expect("case has a file");
    let format = format_of(case["format"].as_str().expect("case has a format"));
    let method = case["method"].as_str().unwrap_or("POST");
    let (bytes, is_query) = load(file);
    let query = if is_query { std::str::from_utf8(&bytes).expect("query is UTF-8") } else { "" };
    let body: &[u8] = if is_query { b"" } else { &bytes };
    let req = Inbound { method, headers: headers(case), query, body };

    assert_eq!(ingest::detect(&req), Ok(format), "{file}: detect");
    let source = Source { name: format.name(), format, generic: None, base_url: None };
    let events = ingest::parse_events(&source, &req).unwrap_or_else(|e| panic!("{file}: parse failed: {e}"));
    assert!(!events.is_empty(), "{file}: no event");
    let single = ingest::parse(format, &req).unwrap_or_else(|e| panic!("{file}: parse failed: {e}"));
    let strip = |e: &Event| Event { event_id: String::new(), received_at: String::new(), ..e.clone() };
    assert_eq!(strip(&single), strip(&events[0]), "{file}: parse and parse_events agree");

    let expected: &Map<String, Value> = case["expected"].as_object().expect("case has expected fields");
    let mut delivery_ids = Vec::new();
    for event in &events {
        assert_eq!(event.source, format.name(), "{file}: source");
        assert!(!event.status_raw.is_empty(), "{file}: status_raw");
        assert!(event.raw.is_object(), "{file}: raw is the payload as a JSON object");
        assert_eq!(event.commit_short, event.commit.as_ref().map(|c| c.chars().take(8).collect()), "{file}");
        for (key, want) in expected {
            check_field(file, event, key, want);
        }
        if let Some(want) = expected_delivery_id(format, &req) {
            assert_eq!(event.delivery_id.as_deref(), Some(want.as_str()), "{file}: delivery_id");
        }
        if format == Format::Alertmanager {
            let id = event.delivery_id.clone().unwrap_or_else(|| panic!("{file}: alerts have delivery ids"));
            assert!(!delivery_ids.contains(&id), "{file}: each alert has its own delivery id");
            delivery_ids.push(id);
        }
    }
    expected.len()
}

#[test]
fn every_manifest_case() {
    let (mut parsed, mut fields) = (0, 0);
    let mut formats = Vec::new();
    for case in manifest_cases() {
        fields += check_case(&case);
        parsed += 1;
        let format = format_of(case["format"].as_str().expect("format"));
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    // Guards against a manifest that silently lost its cases.
    assert!(parsed >= 25, "only {parsed} cases");
    assert_eq!(formats.len(), 7, "every built-in format has a sample: {formats:?}");
    assert!(fields >= parsed * 11, "only {fields} expected fields checked");
}

#[test]
fn every_fixture_file_is_in_the_manifest() {
    let listed: Vec<String> =
        manifest_cases().iter().map(|c| c["file"].as_str().expect("file").to_string()).collect();
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures dir") {
        let name = entry.expect("dir entry").file_name().to_string_lossy().into_owned();
        if name != "manifest.json" {
            assert!(listed.contains(&name), "{name} is not listed in manifest.json");
        }
    }
}

#[test]
fn tikal_xml_and_json_fixtures_agree() {
    for stem in
        ["jenkins-tikal-started", "jenkins-tikal-completed-success", "jenkins-tikal-finalized-failure"]
    {
        let parse = |ext: &str| {
            let (body, _) = load(&format!("{stem}.{ext}"));
            let mut e = ingest::parse(
                Format::Jenkins,
                &Inbound { method: "POST", body: &body, ..Default::default() },
            )
            .unwrap_or_else(|err| panic!("{stem}.{ext}: {err}"));
            e.event_id.clear();
            e.received_at.clear();
            e.raw = Value::Null;
            e
        };
        assert_eq!(parse("json"), parse("xml"), "{stem}");
    }
}
