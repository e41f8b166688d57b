//! Tests for the Alertmanager parser: the status table, one event per alert with its params,
//! the group fallbacks, delivery ids and errors.

use serde_json::{json, Value};

use super::*;

const FIRING: &[u8] = include_bytes!("../../tests/fixtures/inbound/alertmanager-firing.json");
const GROUP_KEY: &str = "{}/{severity=\"critical\"}:{alertname=\"CIPipelineFailing\"}";

fn events(v: &Value) -> Result<Vec<Event>, IngestError> {
    let body = serde_json::to_vec(v).expect("serializable");
    parse_events(&Inbound { method: "POST", body: &body, ..Default::default() })
}

/// A notification with `alerts`, grouped by alertname only.
fn notification(status: &str, alerts: Value) -> Value {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"Deploy\"}", "truncatedAlerts": 0,
        "status": status, "receiver": "herald",
        "groupLabels": {"alertname": "Deploy"}, "commonLabels": {"alertname": "Deploy"},
        "commonAnnotations": {}, "externalURL": "http://am:9093", "alerts": alerts
    })
}

#[test]
fn status_table() {
    let cases = [
        ("firing", Status::Failure, false),
        ("resolved", Status::Success, true),
        ("RESOLVED", Status::Success, true),
        ("pending", Status::Unknown, false),
    ];
    for (word, want, want_final) in cases {
        assert_eq!(map_status(word), (want, want_final), "{word}");
    }
}

#[test]
fn firing_fixture_gives_one_event_per_alert() {
    let events = parse_events(&Inbound { method: "POST", body: FIRING, ..Default::default() }).unwrap();
    assert_eq!(events.len(), 2);
    for (e, instance) in events.iter().zip(["ci-exporter-0:9100", "ci-exporter-1:9100"]) {
        assert_eq!((e.status, e.is_final, e.status_raw.as_str()), (Status::Failure, false, "firing"));
        assert_eq!(e.pipeline.as_deref(), Some("payments-api"));
        assert_eq!(e.pipeline_id.as_deref(), Some(GROUP_KEY));
        assert_eq!(e.build_url.as_deref(), Some("http://alertmanager.example.com:9093"));
        assert_eq!(e.branch.as_deref(), Some("main"));
        assert_eq!(e.message.as_deref(), Some("Pipeline payments-api on main is failing"));
        assert_eq!(e.duration_ms, None);
        assert_eq!(e.params.get("instance").map(String::as_str), Some(instance));
        assert_eq!(
            e.params.get("annotation.runbook_url").map(String::as_str),
            Some("https://wiki.example.com/runbooks/ci-failing")
        );
        assert_eq!(e.params.get("summary"), None, "annotations are prefixed");
        assert_eq!(e.raw["truncatedAlerts"], 0, "raw is the notification");
        assert_eq!(e.raw["alerts"].as_array().unwrap().len(), 1, "with its own alert only");
        assert_eq!(e.raw["alerts"][0]["labels"]["instance"], instance);
    }
    let ids: Vec<&str> = events.iter().filter_map(|e| e.delivery_id.as_deref()).collect();
    let want = serde_json::to_string(&[GROUP_KEY, "firing", "5c1f9a2e7b3d4c60", "2024-06-12T09:48:00.123Z"])
        .unwrap();
    assert_eq!(ids, [want.as_str(), &want.replace("5c1f9a2e7b3d4c60", "9e0d8c7b6a5f4e31")]);
}

#[test]
fn two_alerts_two_events_with_their_own_params() {
    let v = notification(
        "resolved",
        json!([
            {"status": "resolved", "labels": {"alertname": "Deploy", "env": "prod", "summary": "label"},
             "annotations": {"summary": "prod is back", "description": "long"},
             "startsAt": "2024-06-12T09:00:00Z", "endsAt": "2024-06-12T09:05:30Z",
             "generatorURL": "http://prom/g1", "fingerprint": "aa"},
            {"status": "firing", "labels": {"alertname": "Deploy", "env": "staging", "pipeline": "web"},
             "annotations": {"description": "staging still down"},
             "startsAt": "2024-06-12T09:01:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "bb"}
        ]),
    );
    let events = events(&v).unwrap();
    assert_eq!(events.len(), 2);
    let (a, b) = (&events[0], &events[1]);
    assert_eq!((a.status, a.is_final, b.status, b.is_final), (Status::Success, true, Status::Failure, false));
    let params: Vec<(&str, &str)> = a.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        params,
        [
            ("alertname", "Deploy"),
            ("annotation.description", "long"),
            ("annotation.summary", "prod is back"),
            ("env", "prod"),
            ("summary", "label"),
        ]
    );
    assert_eq!(b.params.get("env").map(String::as_str), Some("staging"));
    assert_eq!(a.pipeline.as_deref(), Some("Deploy"), "no pipeline label: the group's alertname");
    assert_eq!(b.pipeline.as_deref(), Some("web"), "the alert's own pipeline label");
    assert_eq!(
        (a.message.as_deref(), b.message.as_deref()),
        (Some("prod is back"), Some("staging still down"))
    );
    assert_eq!(a.duration_ms, Some(330_000), "a resolved alert fired for endsAt - startsAt");
    assert_eq!(b.duration_ms, None);
    assert_ne!(a.delivery_id, b.delivery_id);
}

#[test]
fn fallbacks_when_the_group_says_little() {
    let mut v =
        notification("firing", json!([{"labels": {"alertname": "Solo"}, "generatorURL": "http://prom/g"}]));
    for key in ["groupLabels", "commonLabels", "externalURL", "groupKey"] {
        v.as_object_mut().unwrap().remove(key);
    }
    let e = events(&v).unwrap().remove(0);
    assert_eq!((e.status, e.status_raw.as_str()), (Status::Failure, "firing"), "the group's status");
    assert_eq!(e.pipeline.as_deref(), Some("Solo"));
    assert_eq!(e.build_url.as_deref(), Some("http://prom/g"));
    assert_eq!((e.pipeline_id, e.delivery_id, e.branch), (None, None, None));
}

#[test]
fn empty_alerts_give_no_event() {
    assert_eq!(events(&notification("firing", json!([]))).unwrap(), vec![]);
    let err = crate::ingest::parse(
        Format::Alertmanager,
        &Inbound { method: "POST", body: br#"{"version":"4","alerts":[]}"#, ..Default::default() },
    )
    .unwrap_err();
    assert!(matches!(err, IngestError::Invalid(m) if m.contains("parse_events")));
}

#[test]
fn errors_name_the_field() {
    let err = events(&json!({"version": "4", "groupKey": "x"})).unwrap_err();
    assert_eq!(err, IngestError::Invalid("missing field \"alerts\"".into()));
    let err = events(&json!({"version": "4", "alerts": [{"labels": {}}]})).unwrap_err();
    assert_eq!(err, IngestError::Invalid("missing field \"alerts[0].status\"".into()));
    let err = events(&notification("firing", json!([{"status": "firing", "labels": "x"}]))).unwrap_err();
    assert_eq!(err, IngestError::Invalid("field \"alerts[0].labels\": expected an object, got \"x\"".into()));
    let err = events(&notification("firing", json!(["x"]))).unwrap_err();
    assert_eq!(err, IngestError::Invalid("field \"alerts[0]\": expected an object, got \"x\"".into()));
    let err = events(&json!({"version": "5", "alerts": []})).unwrap_err();
    assert!(matches!(err, IngestError::Invalid(m) if m.contains("version \"5\"")));
}
