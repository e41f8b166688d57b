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

/// The latest observed state of each unit.
#[derive(Default)]
pub struct Observing {
    latest: Mutex<HashMap<String, Track>>,
}

impl Observing {
    /// Adds what Herald remembers of `e`'s unit (`key`) to `e`, from the later of the store's
    /// state (`stored`) and the latest observed; returns the state to store, and a guard that
    /// forgets it unless told it was stored.
    pub fn observe(
        &self,
        key: &str,
        stored: Option<Track>,
        e: &mut Event,
        now: Millis,
    ) -> (Option<Track>, Pending<'_>) {
        let mut latest = self.latest.lock().expect("observing lock");
        let prior = state::later(stored.as_ref(), latest.get(key)).cloned();
        let next = state::observe(prior.as_ref(), e, now);
        if let Some(n) = &next {
            latest.insert(key.to_string(), n.clone());
        }
        let version = next.as_ref().map(|n| (key.to_string(), n.version));
        (next, Pending { observing: self, version })
    }
}

/// A state observed and not yet stored. Dropped without [`stored`](Pending::stored) (the event
/// was a duplicate, or could not be stored), it is forgotten, and the store's state is read
/// again next time.
pub struct Pending<'a> {
    observing: &'a Observing,
    version: Option<(String, u64)>,
}

impl Pending<'_> {
    /// The state is in the store.
    pub fn stored(mut self) {
        self.version = None;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let Some((key, version)) = self.version.take() else { return };
        let mut latest = self.observing.latest.lock().expect("observing lock");
        // A later result of the unit may have been observed since: that one stays.
        if latest.get(&key).is_some_and(|t| t.version == version) {
            latest.remove(&key);
        }
    }
}
