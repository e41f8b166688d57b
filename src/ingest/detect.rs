//! Format detection for `POST /hooks`, in the order of ci-payloads.md §0 (an order that never
//! clashes on the known samples): vendor headers first, then the body's shape.
//!
//! Detection only picks a format; `parse` then reads the fields and reports what is missing.
//! Gitea and Forgejo send GitHub's payloads and are read as `github`. Drone, which Herald
//! recognises but does not parse yet, gets an [`IngestError::Undetected`] that says so, rather
//! than a wrong guess. `generic` is never detected: its sources are named in the URL.

use serde_json::Value;

use super::lenient::{describe, short_name};
use super::{body, xml, Format, Inbound, IngestError};

/// Headers that identify a sender, checked in this order (Gitea and Forgejo also send
/// `X-GitHub-Event`, so they come first), with the format each means: `None` for a sender
/// Herald does not parse yet.
const SENDER_HEADERS: [(&str, &str, Option<Format>); 5] = [
    ("X-Gitea-Event", "Gitea", Some(Format::Github)),
    ("X-Forgejo-Event", "Forgejo", Some(Format::Github)),
    ("X-GitHub-Event", "GitHub", Some(Format::Github)),
    ("X-Gitlab-Event", "GitLab", Some(Format::Gitlab)),
    ("X-Drone-Event", "Drone", None),
];

/// How many top-level keys an "unknown shape" message lists.
const KEYS_SHOWN: usize = 8;

fn undetected(message: impl Into<String>) -> IngestError {
    IngestError::Undetected(message.into())
}

/// See [`super::detect()`].
pub(crate) fn detect(req: &Inbound<'_>) -> Result<Format, IngestError> {
    for (header, sender, format) in SENDER_HEADERS {
        if let Some(value) = req.header(header) {
            if let Some(format) = format {
                return Ok(format);
            }
            let value = describe(&Value::String(value.to_string()));
            return Err(undetected(format!("{sender} webhooks ({header}: {value}) are not supported yet")));
        }
    }
    let has_query = !req.query.trim().is_empty();
    if has_query && (req.method.eq_ignore_ascii_case("GET") || body::is_blank(req.body)) {
        let vars = body::query(req.query)?;
        return if is_jenkins_status(&vars) {
            Ok(Format::JenkinsStatus)
        } else {
            Err(undetected("the query string has no jobExecuteStatus, and the body is empty"))
        };
    }
    if body::is_blank(req.body) {
        return Err(IngestError::Malformed("empty body and no query string: nothing to detect".into()));
    }
    if body::looks_like_xml(req.body) {
        let doc = xml::parse(req.body)?;
        return if doc.root == "job" {
            Ok(Format::Jenkins)
        } else {
            Err(undetected(format!(
                "XML with root element <{}> is not a known format",
                short_name(&doc.root)
            )))
        };
    }
    from_shape(&body::json(req.body)?)
}

fn present(v: &Value, pointer: &str) -> bool {
    v.pointer(pointer).is_some_and(|x| !x.is_null())
}

fn is_jenkins_status(v: &Value) -> bool {
    present(v, "/jobExecuteStatus") || present(v, "/JOB_EXECUTE_STATUS")
}

/// Picks a format from the shape of a JSON body.
fn from_shape(v: &Value) -> Result<Format, IngestError> {
    let Some(object) = v.as_object() else {
        return Err(undetected(format!("the body is {}, not a JSON object", describe(v))));
    };
    if present(v, "/build/phase") {
        return Ok(Format::Jenkins);
    }
    if is_jenkins_status(v) {
        return Ok(Format::JenkinsStatus);
    }
    if v.get("event").and_then(Value::as_str) == Some("task") && present(v, "/task/statusCode") {
        return Ok(Format::Flow);
    }
    if ["/buildid", "/builderid", "/state_string"].iter().all(|p| present(v, p)) {
        return Ok(Format::Buildbot);
    }
    if v.get("version").and_then(Value::as_str) == Some("4") && present(v, "/groupKey") {
        return Ok(Format::Alertmanager);
    }
    let mut keys: Vec<String> = object.keys().map(|k| short_name(k)).take(KEYS_SHOWN).collect();
    if object.len() > KEYS_SHOWN {
        keys.push("…".into());
    }
    Err(undetected(format!("no known body shape (top-level keys: {})", keys.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/fixtures/inbound/", $name)).as_slice()
        };
    }

    fn post(body: &[u8]) -> Inbound<'_> {
        Inbound { method: "POST", body, ..Default::default() }
    }

    fn undetected_message(r: Result<Format, IngestError>) -> String {
        match r {
            Err(IngestError::Undetected(m)) => m,
            other => panic!("expected Undetected, got {other:?}"),
        }
    }

    #[test]
    fn body_shapes_of_every_format() {
        let cases = [
            (fixture!("jenkins-tikal-queued.json"), Format::Jenkins),
            (fixture!("jenkins-tikal-started.xml"), Format::Jenkins),
            (fixture!("jenkins-jobstatus-start.json"), Format::JenkinsStatus),
            (fixture!("flow-task-fail.json"), Format::Flow),
            (fixture!("buildbot-build-started.json"), Format::Buildbot),
            (br#"{"JOB_EXECUTE_STATUS":"RUNNING"}"#.as_slice(), Format::JenkinsStatus),
            (fixture!("alertmanager-firing.json"), Format::Alertmanager),
            (br#"{"version":"4","groupKey":"{}:{}","alerts":[]}"#.as_slice(), Format::Alertmanager),
        ];
        for (body, want) in cases {
            assert_eq!(
                detect(&post(body)),
                Ok(want),
                "{}",
                String::from_utf8_lossy(&body[..40.min(body.len())])
            );
        }
    }

    #[test]
    fn query_string_with_an_empty_body() {
        let q = std::str::from_utf8(fixture!("jenkins-jobstatus-start-get.query.txt")).expect("utf-8");
        for method in ["GET", "POST"] {
            let req = Inbound { method, query: q, ..Default::default() };
            assert_eq!(detect(&req), Ok(Format::JenkinsStatus), "{method}");
        }
        let req = Inbound { method: "GET", query: "token=abc", ..Default::default() };
        assert!(undetected_message(detect(&req)).contains("jobExecuteStatus"));
    }

    fn with_headers<'a>(headers: &[(&str, &str)], body: &'a [u8]) -> Inbound<'a> {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Inbound { method: "POST", headers, body, ..Default::default() }
    }

    #[test]
    fn vendor_headers_win_over_the_body() {
        let body = fixture!("jenkins-tikal-queued.json");
        let cases = [
            (vec![("x-github-event", "workflow_run")], Format::Github),
            (vec![("X-GitHub-Event", "push")], Format::Github),
            (vec![("x-gitea-event", "workflow_job"), ("x-github-event", "workflow_job")], Format::Github),
            (vec![("x-forgejo-event", "workflow_job")], Format::Github),
            (vec![("x-gitlab-event", "Pipeline Hook")], Format::Gitlab),
            (vec![("x-gitlab-event", "Push Hook")], Format::Gitlab),
        ];
        for (headers, want) in cases {
            assert_eq!(detect(&with_headers(&headers, body)), Ok(want), "{headers:?}");
        }
        // Alertmanager's shape sent with a GitLab header is GitLab's to refuse, by event name.
        let req = with_headers(&[("x-gitlab-event", "Job Hook")], fixture!("alertmanager-firing.json"));
        assert_eq!(detect(&req), Ok(Format::Gitlab));
    }

    #[test]
    fn drone_is_recognised_but_not_supported() {
        let req = with_headers(&[("x-drone-event", "build")], fixture!("jenkins-tikal-queued.json"));
        let m = undetected_message(detect(&req));
        assert_eq!(m, "Drone webhooks (X-Drone-Event: \"build\") are not supported yet");
    }

    #[test]
    fn unknown_shapes_are_named() {
        let m = undetected_message(detect(&post(br#"{"a":1,"b":{"phase":"x"}}"#)));
        assert_eq!(m, "no known body shape (top-level keys: a, b)");
        let long = "k".repeat(100_000);
        let m = undetected_message(detect(&post(format!("{{\"{long}\": 1}}").as_bytes())));
        assert_eq!(m, format!("no known body shape (top-level keys: {}…)", "k".repeat(40)), "a key is cut");
        let m = undetected_message(detect(&post(br#"{"event":"pipeline","task":{"statusCode":"RUNNING"}}"#)));
        assert!(m.starts_with("no known body shape"));
        let m = undetected_message(detect(&post(br#"{"version":"3","groupKey":"x"}"#)));
        assert!(m.starts_with("no known body shape"), "only version 4 is Alertmanager's: {m}");
        let m = undetected_message(detect(&post(b"[1,2]")));
        assert_eq!(m, "the body is an array, not a JSON object");
        let m = undetected_message(detect(&post(b"<project><a/></project>")));
        assert_eq!(m, "XML with root element <project> is not a known format");
    }

    #[test]
    fn buildbot_needs_all_three_keys() {
        let m = undetected_message(detect(&post(br#"{"buildid":1,"builderid":2}"#)));
        assert!(m.contains("buildid, builderid"), "{m}");
    }

    #[test]
    fn malformed_bodies_are_malformed() {
        for body in [b"{\"build\":".as_slice(), b"<job><build></job>", b"", b"  \n"] {
            assert!(matches!(detect(&post(body)), Err(IngestError::Malformed(_))), "{body:?}");
        }
        let req = Inbound { method: "GET", query: "a=%FF", ..Default::default() };
        assert!(matches!(detect(&req), Err(IngestError::Malformed(_))));
    }
}
