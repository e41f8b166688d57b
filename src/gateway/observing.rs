//! The latest state of each unit of work as this gateway observed it, ahead of the store.
//! Results of one unit accepted at the same time may read the store's state together; each
//! also reads what the others observed, so two failures count as a streak of two, not as the
//! same first failure twice. Versions decide which state is later, whatever order the reads
//! and commits come in.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::Millis;
use crate::event::Event;
use crate::state::{self, Track};

/// Units remembered at most; past it, those whose state is stored are forgotten (the store
/// has them) and those still being stored are kept.
const MAX_UNITS: usize = 4096;

/// The latest observed state of each unit.
#[derive(Default)]
pub struct Observing {
    latest: Mutex<HashMap<String, Observed>>,
}

/// A unit's latest state, the state it was made from, and whether it is still being stored
/// with the event that made it (and that event's dedup key).
struct Observed {
    state: Track,
    prior: Option<Track>,
    in_flight: Option<Option<String>>,
}

impl Observing {
    /// Adds what Herald remembers of `e`'s unit (`key`) to `e`, from the later of the store's
    /// state (`stored`) and the latest observed; returns the state to store, and a guard that
    /// forgets it unless told it was stored. A copy of an event still being stored (the same
    /// `dedup` key: a sender's retry, Jenkins' COMPLETED and FINALIZED) reads what that event
    /// read, so whichever of the two is stored, and the other found a duplicate, tells the
    /// same news.
    pub fn observe(
        &self,
        key: &str,
        stored: Option<Track>,
        dedup: Option<&str>,
        e: &mut Event,
        now: Millis,
    ) -> (Option<Track>, Pending<'_>) {
        let mut latest = self.latest.lock().expect("observing lock");
        let copy_of = latest
            .get(key)
            .filter(|o| dedup.is_some() && o.in_flight.as_ref().is_some_and(|d| d.as_deref() == dedup));
        if let Some(original) = copy_of {
            let prior = state::later(stored.as_ref(), original.prior.as_ref()).cloned();
            let next = state::observe(prior.as_ref(), e, now);
            return (next, Pending { observing: self, key: None });
        }
        let prior = state::later(stored.as_ref(), latest.get(key).map(|o| &o.state)).cloned();
        let next = state::observe(prior.as_ref(), e, now);
        let Some(n) = next.clone() else { return (next, Pending { observing: self, key: None }) };
        if latest.len() >= MAX_UNITS {
            latest.retain(|_, o| o.in_flight.is_some());
        }
        let version = n.version;
        latest.insert(
            key.to_string(),
            Observed { state: n, prior, in_flight: Some(dedup.map(str::to_string)) },
        );
        (next, Pending { observing: self, key: Some((key.to_string(), version)) })
    }
}

/// A state observed and not yet stored. Dropped without [`stored`](Pending::stored) (the event
/// was a duplicate, or could not be stored), it is forgotten, and the store's state is read
/// again next time.
pub struct Pending<'a> {
    observing: &'a Observing,
    key: Option<(String, u64)>,
}

impl Pending<'_> {
    /// The state is in the store.
    pub fn stored(mut self) {
        let Some((key, version)) = self.key.take() else { return };
        let mut latest = self.observing.latest.lock().expect("observing lock");
        if let Some(o) = latest.get_mut(&key).filter(|o| o.state.version == version) {
            o.in_flight = None;
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let Some((key, version)) = self.key.take() else { return };
        let mut latest = self.observing.latest.lock().expect("observing lock");
        // A later result of the unit may have been observed since: that one stays.
        if latest.get(&key).is_some_and(|o| o.state.version == version) {
            latest.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Status;

    fn failure(build: u64) -> Event {
        let mut e = Event::new("jenkins", Status::Failure, "FAILURE", true);
        e.build_number = Some(build);
        e
    }

    #[test]
    fn a_copy_in_flight_reads_what_its_original_read_and_a_new_result_builds_on_it() {
        let o = Observing::default();
        let (first, pending) = o.observe("unit", None, Some("build 1"), &mut failure(1), 0);
        let first = first.unwrap();
        let (copy, _copy_pending) = o.observe("unit", None, Some("build 1"), &mut failure(1), 0);
        assert_eq!(copy.as_ref(), Some(&first), "the same news as the original");
        let mut next = failure(2);
        let (second, _) = o.observe("unit", None, Some("build 2"), &mut next, 0);
        assert_eq!((second.unwrap().failures, next.failure_streak), (2, Some(2)));
        drop(pending);
    }

    #[test]
    fn stored_units_are_forgotten_past_the_limit_and_those_in_flight_kept() {
        let o = Observing::default();
        for i in 0..MAX_UNITS {
            let (_, pending) = o.observe(&format!("unit {i}"), None, None, &mut failure(1), 0);
            pending.stored();
        }
        let (_, in_flight) = o.observe("busy", None, None, &mut failure(1), 0);
        assert_eq!(o.latest.lock().unwrap().len(), 1, "past the limit, only the one in flight");
        let (again, _) = o.observe("busy", None, None, &mut failure(2), 0);
        assert_eq!(again.unwrap().failures, 2);
        drop(in_flight);
    }
}
