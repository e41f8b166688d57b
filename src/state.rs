//! What Herald remembers between events: per (source, pipeline, branch, stage/task), the last
//! final status and the current failure streak. From that it classifies each final event's
//! transition (first failure, still failing, fixed, changed) for `when.transition`, and adds
//! `previous_status` and `failing_since` to the template context. Pure; the outbox stores it.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::event::{Event, Status};
pub use crate::event::{FailingSince as Since, Transition};

/// The remembered state of one unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    pub last_status: Status,
    pub last_build: Option<u64>,
    /// Consecutive failing results, this one included; 0 when the last result passed.
    pub failures: u32,
    /// The first failure of the current streak.
    pub failing_since: Option<Since>,
    /// How many final results of the unit made this state: of two states, the later one has
    /// the higher version, whichever is stored last.
    #[serde(default)]
    pub version: u64,
}

/// The later of two states of one unit (`None` is the earliest); of two with one version,
/// `b`, as the store keeps the last written.
pub fn later<'a>(a: Option<&'a Track>, b: Option<&'a Track>) -> Option<&'a Track> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.version >= x.version { y } else { x }),
        (x, y) => x.or(y),
    }
}

/// Failure and unstable results make and extend a streak.
pub fn is_failing(s: Status) -> bool {
    matches!(s, Status::Failure | Status::Unstable)
}

/// The key an event is remembered under.
pub fn key(e: &Event) -> String {
    let unit = [
        e.source.as_str(),
        e.pipeline.as_deref().unwrap_or(""),
        e.branch.as_deref().unwrap_or(""),
        e.stage.as_deref().unwrap_or(""),
        e.task.as_deref().unwrap_or(""),
    ];
    serde_json::to_string(&unit).unwrap_or_default()
}

/// The state after a final event, and its transition from `prior`.
pub fn advance(prior: Option<&Track>, e: &Event, now: Millis) -> (Track, Transition) {
    let failing = is_failing(e.status);
    let was_failing = prior.is_some_and(|p| p.failures > 0);
    let transition = match (failing, was_failing) {
        (true, false) => Transition::FirstFailure,
        (true, true) => Transition::StillFailing,
        (false, true) if e.status == Status::Success => Transition::Fixed,
        _ if prior.is_none_or(|p| p.last_status != e.status) => Transition::Changed,
        _ => Transition::Unchanged,
    };
    let failing_since = match (failing, prior.and_then(|p| p.failing_since.clone())) {
        (true, Some(since)) if was_failing => Some(since),
        (true, _) => Some(Since { build_number: e.build_number, at: crate::outbox::view::rfc3339(now) }),
        (false, _) => None,
    };
    let failures = if failing { prior.map_or(0, |p| p.failures) + 1 } else { 0 };
    let version = prior.map_or(0, |p| p.version) + 1;
    (
        Track { last_status: e.status, last_build: e.build_number, failures, failing_since, version },
        transition,
    )
}

/// Adds what Herald remembers to `e` (`previous_status`, `failing_since`, and for a final
/// event `transition` and `failure_streak`), and returns the state to store for a final event.
pub fn observe(prior: Option<&Track>, e: &mut Event, now: Millis) -> Option<Track> {
    e.previous_status = prior.map(|p| p.last_status);
    if !e.is_final {
        e.failing_since = prior.and_then(|p| p.failing_since.clone());
        return None;
    }
    let (next, transition) = advance(prior, e, now);
    e.transition = Some(transition);
    e.failure_streak = Some(next.failures);
    e.failing_since = next.failing_since.clone();
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: Status, build: u64) -> Event {
        let mut e = Event::new("jenkins", status, status.as_str(), true);
        e.build_number = Some(build);
        e
    }

    #[test]
    fn a_run_of_results() {
        use Status::*;
        use Transition::*;
        let runs = [
            (Success, Changed, 0, None),
            (Success, Unchanged, 0, None),
            (Failure, FirstFailure, 1, Some(3)),
            (Failure, StillFailing, 2, Some(3)),
            (Unstable, StillFailing, 3, Some(3)),
            (Success, Fixed, 0, None),
            (Aborted, Changed, 0, None),
            (Failure, FirstFailure, 1, Some(8)),
        ];
        let mut prior: Option<Track> = None;
        for (i, (status, want, failures, since)) in runs.into_iter().enumerate() {
            let (next, t) = advance(prior.as_ref(), &event(status, i as u64 + 1), 1_700_000_000_000);
            assert_eq!(t, want, "result {} ({status})", i + 1);
            assert_eq!(next.failures, failures, "result {}", i + 1);
            assert_eq!(next.failing_since.as_ref().and_then(|s| s.build_number), since, "result {}", i + 1);
            prior = Some(next);
        }
    }

    #[test]
    fn words() {
        assert!(Transition::FirstFailure.matches("changed"));
        assert!(Transition::Fixed.matches("changed"));
        assert!(!Transition::StillFailing.matches("changed"));
        assert!(!Transition::Unchanged.matches("changed"));
        assert!(Transition::StillFailing.matches("still_failing"));
        assert!(!Transition::Fixed.matches("first_failure"));
    }

    #[test]
    fn keys_separate_units_of_work() {
        let mut a = event(Status::Success, 1);
        a.pipeline = Some("p".into());
        let mut b = a.clone();
        b.branch = Some("main".into());
        assert_ne!(key(&a), key(&b));
        b.build_number = Some(99);
        b.branch = None;
        assert_eq!(key(&a), key(&b), "the build number is not part of the unit");
    }
}
