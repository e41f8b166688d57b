//! The attempts in flight in the worker's `run`: their tasks, and for each the delivery it is
//! making and since when, so that an attempt cut off at shutdown is recorded as such.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::task::{Id, JoinError, JoinSet};

use crate::outbox::Delivery;

/// An attempt: its delivery, which attempt it is, and when it started.
#[derive(Debug)]
pub struct Started {
    pub delivery_id: String,
    pub event_id: String,
    pub channel: String,
    pub number: u32,
    pub at: Instant,
}

/// The attempts in flight.
#[derive(Default)]
pub struct InFlight {
    tasks: JoinSet<()>,
    started: HashMap<Id, Started>,
}

impl Started {
    /// The next attempt of `d`, starting now.
    pub fn next_of(d: &Delivery) -> Started {
        Started {
            delivery_id: d.id.clone(),
            event_id: d.event_id.clone(),
            channel: d.channel.clone(),
            number: d.attempts + 1,
            at: Instant::now(),
        }
    }
}

impl InFlight {
    /// Runs `attempt` as a task of its own.
    pub fn spawn(&mut self, started: Started, attempt: impl Future<Output = ()> + Send + 'static) {
        let task = self.tasks.spawn(attempt);
        self.started.insert(task.id(), started);
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Forgets the attempts that have ended.
    pub fn reap(&mut self) {
        while let Some(ended) = self.tasks.try_join_next_with_id() {
            self.forget(ended);
        }
    }

    /// Waits until an attempt ends (at once when none is in flight).
    pub async fn join_one(&mut self) {
        if let Some(ended) = self.tasks.join_next_with_id().await {
            self.forget(ended);
        }
    }

    fn forget(&mut self, ended: Result<(Id, ()), JoinError>) {
        let id = match ended {
            Ok((id, ())) => id,
            Err(e) => e.id(),
        };
        self.started.remove(&id);
    }

    /// Waits up to `grace` for every attempt to end, then cuts off the ones still running and
    /// returns them.
    pub async fn finish(mut self, grace: Duration) -> Vec<Started> {
        // Whether all ended in time or not, what is left after it is what to cut off.
        let _ = tokio::time::timeout(grace, async {
            while let Some(ended) = self.tasks.join_next_with_id().await {
                self.forget(ended);
            }
        })
        .await;
        self.tasks.abort_all();
        while let Some(ended) = self.tasks.join_next_with_id().await {
            match ended {
                // Cut off: it stays among the started.
                Err(e) if e.is_cancelled() => {}
                // It ended on its own before the abort reached it.
                other => self.forget(other),
            }
        }
        self.started.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::NewDelivery;

    fn attempt(id: &str) -> Started {
        Started::next_of(&Delivery::stored(NewDelivery::sample(id, "c"), "e", 0))
    }

    #[tokio::test]
    async fn attempts_still_running_at_the_deadline_are_cut_off_and_named() {
        let mut inflight = InFlight::default();
        let before = std::time::Instant::now();
        inflight.spawn(attempt("quick"), async {});
        inflight.spawn(attempt("slow"), std::future::pending());
        inflight.spawn(attempt("done"), async {});
        let after = std::time::Instant::now();
        inflight.join_one().await;
        inflight.reap();
        tokio::task::yield_now().await;
        inflight.reap();
        assert_eq!(inflight.len(), 1);
        let cut = inflight.finish(Duration::from_millis(50)).await;
        let ids: Vec<&str> = cut.iter().map(|s| s.delivery_id.as_str()).collect();
        assert_eq!(ids, ["slow"]);
        assert_eq!(cut[0].number, 1);
        assert!((before..=after).contains(&cut[0].at), "it keeps when the attempt started");
    }

    #[tokio::test]
    async fn nothing_is_cut_off_when_every_attempt_ends_in_time() {
        let mut inflight = InFlight::default();
        inflight.spawn(attempt("a"), tokio::time::sleep(Duration::from_millis(10)));
        assert!(inflight.finish(Duration::from_secs(5)).await.is_empty());
    }
}
