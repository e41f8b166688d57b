//! Format detection for `POST /hooks`, in the order of ci-payloads.md §0 (an order that never
//! clashes on the known samples): vendor headers first, then the body's shape.
//!
//! Detection only picks a format; `parse` then reads the fields and reports what is missing. Senders
//! Herald recognises but does not parse yet (GitHub, Gitea, Forgejo, GitLab, Drone, Alertmanager)
//! get an [`IngestError::Undetected`] that says so, rather than a wrong guess.

use serde_json::Value;

use super::lenient::describe;
use super::{body, xml, Format, Inbound, IngestError};

/// Headers that identify a sender, checked in this order: Gitea and Forgejo also send
/// `X-GitHub-Event`, so they come first.
const SENDER_HEADERS: [(&str, &str); 5] = [
    ("X-Gitea-Event", "Gitea"),
    ("X-Forgejo-Event", "Forgejo"),
    ("X-GitHub-Event", "GitHub"),
    ("X-Gitlab-Event", "GitLab"),
    ("X-Drone-Event", "Drone"),
];

/// How many top-level keys an "unknown shape" message lists.
const KEYS_SHOWN: usize = 8;

fn undetected(message: impl Into<String>) -> IngestError {
    IngestError::Undetected(message.into())
}

/// See [`super::detect()`].
pub(crate) fn detect(req: &Inbound<'_>) -> Result<Format, IngestError> {
    for (header, sender) in SENDER_HEADERS {
        if let Some(value) = req.header(header) {
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
            Err(undetected(format!("XML with root element <{}> is not a known format", doc.root)))
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
        return Err(undetected("Alertmanager webhooks are not supported yet"));
    }
    let mut keys: Vec<&str> = object.keys().map(String::as_str).take(KEYS_SHOWN).collect();
    if object.len() > KEYS_SHOWN {
        keys.push("…");
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

    #[test]
    fn vendor_headers_win_over_the_body() {
        let body = fixture!("jenkins-tikal-queued.json");
        for (header, value, sender) in [
            ("x-github-event", "workflow_run", "GitHub"),
            ("x-gitlab-event", "Pipeline Hook", "GitLab"),
            ("x-drone-event", "build", "Drone"),
        ] {
            let req = Inbound {
                method: "POST",
                headers: vec![(header.into(), value.into())],
                body,
                ..Default::default()
            };
            let m = undetected_message(detect(&req));
            assert!(m.starts_with(sender) && m.contains(value) && m.contains("not supported yet"), "{m}");
        }
        let headers =
            vec![("x-github-event".into(), "workflow_job".into()), ("x-gitea-event".into(), "x".into())];
        let req = Inbound { method: "POST", headers, body, ..Default::default() };
        assert!(undetected_message(detect(&req)).starts_with("Gitea"));
    }

    #[test]
    fn alertmanager_and_unknown_shapes_are_named() {
        let m = undetected_message(detect(&post(fixture!("alertmanager-firing.json"))));
        assert_eq!(m, "Alertmanager webhooks are not supported yet");
        let m = undetected_message(detect(&post(br#"{"a":1,"b":{"phase":"x"}}"#)));
        assert_eq!(m, "no known body shape (top-level keys: a, b)");
        let m = undetected_message(detect(&post(br#"{"event":"pipeline","task":{"statusCode":"RUNNING"}}"#)));
        assert!(m.starts_with("no known body shape"));
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
