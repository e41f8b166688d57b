//! The Jenkins "Job Environment Variables Status Sync" plugin (`jenkins-status`).
//!
//! The payload is the run's environment, a flat map of strings, plus `jobExecuteStatus` (and its
//! twin `JOB_EXECUTE_STATUS`), `buildNo` and, from the pipeline step, `body`. POST, PUT and DELETE
//! carry it as a JSON body; GET carries it in the query string. This file owns where the map is
//! read from, the status mapping and the field sources of ci-payloads.md §2.

use std::collections::BTreeMap;

use serde_json::Value;

use super::lenient::{missing, At};
use super::{body, text, Format, Inbound, IngestError};
use crate::event::{Event, Status};

/// Keys that describe the notification itself rather than the build's environment.
const STATUS_KEYS: [&str; 4] = ["jobExecuteStatus", "JOB_EXECUTE_STATUS", "buildNo", "body"];

/// Parses a jenkins-status request, from its query string or its JSON body.
pub(crate) fn parse(req: &Inbound<'_>) -> Result<Event, IngestError> {
    let raw = payload(req)?;
    let mut event = extract(&raw)?;
    event.raw = raw;
    Ok(event)
}

/// The variables as a JSON object: from the query string for GET, or when a body is empty but a
/// query string is not; from the JSON body otherwise.
fn payload(req: &Inbound<'_>) -> Result<Value, IngestError> {
    let has_query = !req.query.trim().is_empty();
    let is_get = req.method.eq_ignore_ascii_case("GET");
    if has_query && (is_get || body::is_blank(req.body)) {
        body::query(req.query)
    } else if !body::is_blank(req.body) {
        body::json(req.body)
    } else {
        Err(IngestError::Malformed("empty body and no query string: expected the job's variables".into()))
    }
}

/// `jobExecuteStatus` → status and `final` (ci-payloads.md §2). A payload with `body` comes from
/// the pipeline step, mid-build, so it is never final, whatever result was already set.
pub(crate) fn map_status(word: &str, has_body: bool) -> (Status, bool) {
    let (status, terminal) = match word.trim().to_ascii_uppercase().as_str() {
        "START" => (Status::Started, false),
        "RUNNING" => (Status::Running, false),
        "SUCCESS" => (Status::Success, true),
        "UNSTABLE" => (Status::Unstable, true),
        "FAILURE" => (Status::Failure, true),
        "ABORTED" => (Status::Aborted, true),
        "NOT_BUILT" => (Status::Skipped, true),
        "COMPLETE" => (Status::Unknown, true),
        _ => (Status::Unknown, false),
    };
    (status, terminal && !has_body)
}

fn extract(raw: &Value) -> Result<Event, IngestError> {
    let vars = At::root(raw);
    let word = match vars.get("jobExecuteStatus").word_opt()? {
        Some(word) => word,
        None => vars.get("JOB_EXECUTE_STATUS").word_opt()?.ok_or_else(|| missing("jobExecuteStatus"))?,
    };
    // The key's presence marks a step message, even with an empty text.
    let has_body = raw.get("body").is_some_and(|b| !b.is_null());
    let (status, is_final) = map_status(&word, has_body);
    let mut e = Event::new(Format::JenkinsStatus.name(), status, word, is_final);

    let var = |name: &str| vars.get(name).str_opt();
    e.pipeline = var("JOB_NAME")?;
    e.pipeline_url = var("JOB_URL")?;
    e.build_number = match vars.get("buildNo").u64_opt()? {
        Some(n) => Some(n),
        None => vars.get("BUILD_NUMBER").u64_opt()?,
    };
    e.build_url = var("BUILD_URL")?;
    e.repo = var("GIT_URL")?;
    let branch = match var("BRANCH_NAME")? {
        Some(b) => Some(b),
        None => var("GIT_BRANCH")?,
    };
    e.branch = branch.as_deref().and_then(text::normalize_branch);
    e.set_commit(var("GIT_COMMIT")?);
    e.previous_commit = var("GIT_PREVIOUS_COMMIT")?;
    e.author = var("GIT_AUTHOR_NAME")?;
    e.message = var("body")?;
    e.params = params(raw);
    Ok(e)
}

/// Every string variable except the notification's own keys. Values are kept even when empty:
/// they were sent, not made up.
fn params(raw: &Value) -> BTreeMap<String, String> {
    let Some(map) = raw.as_object() else { return BTreeMap::new() };
    map.iter()
        .filter(|(k, _)| !STATUS_KEYS.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn req<'a>(method: &'a str, query: &'a str, body: &'a [u8]) -> Inbound<'a> {
        Inbound { method, query, body, ..Default::default() }
    }

    fn parse_json(method: &str, v: Value) -> Result<Event, IngestError> {
        let bytes = serde_json::to_vec(&v).expect("serializable");
        parse(&req(method, "", &bytes))
    }

    const RUNNING: &[u8] = include_bytes!("../../tests/fixtures/inbound/jenkins-jobstatus-running.json");

    #[test]
    fn status_table() {
        use Status::*;
        let cases = [
            ("START", false, Started, false),
            ("RUNNING", false, Running, false),
            ("SUCCESS", false, Success, true),
            ("UNSTABLE", false, Unstable, true),
            ("FAILURE", false, Failure, true),
            ("ABORTED", false, Aborted, true),
            ("NOT_BUILT", false, Skipped, true),
            ("COMPLETE", false, Unknown, true),
            ("WHATEVER", false, Unknown, false),
            ("success", false, Success, true),
            ("SUCCESS", true, Success, false),
            ("FAILURE", true, Failure, false),
            ("COMPLETE", true, Unknown, false),
            ("RUNNING", true, Running, false),
        ];
        for (word, has_body, want, want_final) in cases {
            assert_eq!(map_status(word, has_body), (want, want_final), "{word} body={has_body}");
        }
    }

    #[test]
    fn step_message_is_never_final() {
        let e = parse(&req("POST", "", RUNNING)).unwrap();
        assert_eq!((e.status, e.is_final), (Status::Running, false));
        assert_eq!(e.message.as_deref(), Some("deploying payments-service 1.8.0 to staging"));
        let e =
            parse_json("POST", json!({"jobExecuteStatus": "FAILURE", "body": "tests failed early"})).unwrap();
        assert_eq!((e.status, e.is_final), (Status::Failure, false));
        let e = parse_json("POST", json!({"jobExecuteStatus": "SUCCESS", "body": ""})).unwrap();
        assert_eq!((e.is_final, e.message), (false, None), "an empty body is still a step call");
    }

    #[test]
    fn fields_and_params() {
        let e = parse(&req("POST", "", RUNNING)).unwrap();
        assert_eq!(e.source, "jenkins-status");
        assert_eq!(e.status_raw, "RUNNING");
        assert_eq!(e.pipeline.as_deref(), Some("payments/payments-service"));
        assert_eq!(
            e.pipeline_url.as_deref(),
            Some("https://ci.example.com/job/payments/job/payments-service/")
        );
        assert_eq!(e.build_number, Some(214));
        assert_eq!(e.branch.as_deref(), Some("main"));
        assert_eq!(e.previous_commit.as_deref(), Some("77e0c2b19d4f3a5b6c7d8e9f0a1b2c3d4e5f6a7b"));
        assert_eq!(e.author, None);
        assert_eq!(e.params.get("DEPLOY_ENV").map(String::as_str), Some("staging"));
        assert_eq!(
            e.params.get("GIT_COMMIT").map(String::as_str),
            Some("a41c9e07d3b25f8e6c1d0b9a8f7e6d5c4b3a2910")
        );
        for key in STATUS_KEYS {
            assert!(!e.params.contains_key(key), "{key}");
        }
    }

    #[test]
    fn put_and_delete_bodies_parse_like_post() {
        let v = json!({"JOB_EXECUTE_STATUS": "ABORTED", "BUILD_NUMBER": "9", "BRANCH_NAME": "feature/x",
                       "GIT_BRANCH": "origin/other", "GIT_AUTHOR_NAME": "Lin Wei", "N": 1});
        for method in ["PUT", "DELETE", "post"] {
            let e = parse_json(method, v.clone()).unwrap();
            assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Aborted, true, "ABORTED"));
            assert_eq!(e.build_number, Some(9));
            assert_eq!(e.branch.as_deref(), Some("feature/x"), "BRANCH_NAME wins over GIT_BRANCH");
            assert_eq!(e.author.as_deref(), Some("Lin Wei"));
            assert!(!e.params.contains_key("N"), "only string values are params");
        }
    }

    #[test]
    fn query_string_for_get_and_for_an_empty_post() {
        let q = "jobExecuteStatus=START&buildNo=214&JOB_NAME=payments%2Fapi&GIT_BRANCH=origin%2Fmain";
        for r in [req("GET", q, b""), req("POST", q, b""), req("GET", q, b"ignored")] {
            let e = parse(&r).unwrap();
            assert_eq!((e.status, e.build_number), (Status::Started, Some(214)));
            assert_eq!(e.pipeline.as_deref(), Some("payments/api"));
            assert_eq!(e.branch.as_deref(), Some("main"));
            assert_eq!(e.raw["JOB_NAME"], "payments/api");
        }
        let body = br#"{"jobExecuteStatus":"SUCCESS"}"#;
        assert_eq!(
            parse(&req("POST", "token=abc", body)).unwrap().status,
            Status::Success,
            "a body wins on POST"
        );
    }

    #[test]
    fn errors() {
        let err = parse_json("POST", json!({"BUILD_URL": "https://ci/x/1/"})).unwrap_err();
        assert_eq!(err, IngestError::Invalid("missing field \"jobExecuteStatus\"".into()));
        let err = parse(&req("GET", "a=1", b"")).unwrap_err();
        assert_eq!(err, IngestError::Invalid("missing field \"jobExecuteStatus\"".into()));
        let err = parse_json("POST", json!({"jobExecuteStatus": "START", "buildNo": "#3"})).unwrap_err();
        assert_eq!(
            err,
            IngestError::Invalid(
                "field \"buildNo\": expected an integer or numeric string, got \"#3\"".into()
            )
        );
        let err = parse_json("POST", json!({"jobExecuteStatus": true})).unwrap_err();
        assert_eq!(
            err,
            IngestError::Invalid("field \"jobExecuteStatus\": expected a string, got true".into())
        );
        assert!(matches!(parse(&req("POST", "", b"")).unwrap_err(), IngestError::Malformed(_)));
        assert!(
            matches!(parse(&req("PUT", "", b"{nope")).unwrap_err(), IngestError::Malformed(m) if m.contains("column"))
        );
        assert!(matches!(parse(&req("GET", "a=%FF", b"")).unwrap_err(), IngestError::Malformed(_)));
    }
}
