//! Prometheus Alertmanager's webhook (`version: "4"`): one notification for a group of alerts,
//! and one Herald event per alert in it.
//!
//! Each alert is read on its own, with the group's fields as a fallback (ci-payloads.md §5):
//!
//! | event field | from |
//! |---|---|
//! | `status`, `status_raw` | the alert's `status`: firing → failure (not final), resolved → success (final) |
//! | `pipeline` | `commonLabels.pipeline`, else the alert's `pipeline` label, else `groupLabels.alertname`, else the alert's `alertname` |
//! | `pipeline_id` | `groupKey`: Alertmanager's id for the group the pipeline name comes from |
//! | `build_url` | `externalURL` (Alertmanager's page), else the alert's `generatorURL` |
//! | `branch` | the alert's `branch` label |
//! | `message` | the `summary` annotation, else `description` (the alert's, else the common ones) |
//! | `duration_ms` | resolved alerts: `endsAt - startsAt`, how long it fired |
//! | `params` | the alert's labels under their own names, its annotations as `annotation.<name>` |
//! | `delivery_id` | `groupKey`, `status`, `fingerprint` and `startsAt`, as a JSON array |
//!
//! Annotations are prefixed so that a label and an annotation of the same name (both are free
//! form) never overwrite each other, and so that rules can match on labels by their plain
//! names. `startsAt` is part of the delivery id because a fingerprint is a hash of the labels:
//! an alert that resolves and fires again is a new incident with the same fingerprint, while
//! Alertmanager's repeats of one incident keep the same `startsAt` and are de-duplicated.
//! Every event's `raw` is the notification with `alerts` cut to that event's own alert.

use std::collections::BTreeMap;

use super::lenient::{missing, At};
use super::{body, text, Format, Inbound, IngestError};
use crate::event::{Event, Status};

/// The prefix of annotation names in `params`.
pub(crate) const ANNOTATION_PREFIX: &str = "annotation.";

/// Parses a notification into one event per alert, in the order sent. An empty `alerts` list
/// gives no event.
pub(crate) fn parse_events(req: &Inbound<'_>) -> Result<Vec<Event>, IngestError> {
    let raw = body::json(req.body)?;
    let root = At::root(&raw);
    if let Some(version) = root.get("version").str_opt()? {
        if version.trim() != "4" {
            return Err(IngestError::Invalid(format!(
                "field \"version\": Alertmanager webhook version \"{version}\" is not handled; expected \"4\""
            )));
        }
    }
    let alerts = root.get("alerts");
    let count = alerts.array_opt()?.ok_or_else(|| missing("alerts"))?.len();
    let mut events = Vec::with_capacity(count);
    for i in 0..count {
        events.push(alert(&root, &alerts.index(i))?);
    }
    // Each event's `raw` is the notification with `alerts` cut to its own alert: a copy of the
    // whole body in each would cost alerts × body, in memory and in the store.
    let mut raw = raw;
    let all = raw.get_mut("alerts").map(serde_json::Value::take);
    if let Some(serde_json::Value::Array(all)) = all {
        for (event, own) in events.iter_mut().zip(all) {
            let mut view = raw.clone();
            view["alerts"] = serde_json::Value::Array(vec![own]);
            event.raw = view;
        }
    }
    Ok(events)
}

/// An alert's status → status and `final`: a firing alert is a failure still going on; a
/// resolved one is a success that closes it.
pub(crate) fn map_status(word: &str) -> (Status, bool) {
    match word.trim().to_ascii_lowercase().as_str() {
        "firing" => (Status::Failure, false),
        "resolved" => (Status::Success, true),
        _ => (Status::Unknown, false),
    }
}

fn alert(root: &At<'_>, alert: &At<'_>) -> Result<Event, IngestError> {
    if alert.object_opt()?.is_none() {
        return Err(missing(alert.path()));
    }
    let word = match alert.get("status").word_opt()? {
        Some(w) => w,
        None => root.get("status").word_opt()?.ok_or_else(|| missing(alert.get("status").path()))?,
    };
    let (status, is_final) = map_status(&word);
    let mut e = Event::new(Format::Alertmanager.name(), status, word.clone(), is_final);

    let labels = alert.get("labels");
    let annotations = alert.get("annotations");
    e.pipeline = first_of(&[
        root.get("commonLabels").get("pipeline"),
        labels.get("pipeline"),
        root.get("groupLabels").get("alertname"),
        labels.get("alertname"),
    ])?;
    let group_key = root.get("groupKey").str_opt()?;
    e.pipeline_id = group_key.clone();
    e.build_url = first_of(&[root.get("externalURL"), alert.get("generatorURL")])?;
    e.branch = labels.get("branch").str_opt()?.as_deref().and_then(text::normalize_branch);
    let common = root.get("commonAnnotations");
    e.message = first_of(&[
        annotations.get("summary"),
        annotations.get("description"),
        common.get("summary"),
        common.get("description"),
    ])?;

    let starts_at = alert.get("startsAt").str_opt()?;
    if is_final {
        let ends_at = alert.get("endsAt").str_opt()?;
        e.duration_ms = starts_at.clone().zip(ends_at).and_then(|(s, t)| text::millis_between(&s, &t));
    }
    e.params = params(&labels, &annotations)?;
    let fingerprint = alert.get("fingerprint").str_opt()?;
    e.delivery_id = match (group_key, fingerprint) {
        (Some(group), Some(fp)) => {
            let parts = [group, word, fp, starts_at.unwrap_or_default()];
            serde_json::to_string(&parts).ok()
        }
        _ => None,
    };
    Ok(e)
}

/// The first of these places that holds a string.
fn first_of(places: &[At<'_>]) -> Result<Option<String>, IngestError> {
    for place in places {
        if let Some(v) = place.str_opt()? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Labels as they are, annotations as `annotation.<name>`.
fn params(labels: &At<'_>, annotations: &At<'_>) -> Result<BTreeMap<String, String>, IngestError> {
    let mut out = labels.string_map()?;
    for (name, value) in annotations.string_map()? {
        out.insert(format!("{ANNOTATION_PREFIX}{name}"), value);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "alertmanager_tests.rs"]
mod tests;
