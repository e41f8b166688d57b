//! The hand-off from the accept path to the delivery worker.
//!
//! When the gateway stores an event, the deliveries due at once are stored already leased to
//! the worker, and travel to it here, in memory: the worker does not read back what was just
//! written. The queue is bounded; a gateway that finds it full stores its deliveries unleased
//! and says so ([`Handoff::stored`]), and the worker leases them from the store instead.
//!
//! The same signal carries every "the store has something due at T" the worker must hear
//! about: a retry or a deferral it scheduled itself, a replay through the admin API.
//! Nothing depends on the queue for durability: whatever it holds at a crash is in the store,
//! leased, and the next start releases those leases.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::clock::Millis;
use crate::outbox::Delivery;

/// A delivery handed over, and when its lease in the store expires.
#[derive(Debug)]
pub struct Handed {
    pub delivery: Delivery,
    pub leased_until: Millis,
}

/// The queue between the gateway and the worker.
#[derive(Debug)]
pub struct Handoff {
    queue: Mutex<VecDeque<Handed>>,
    /// Slots reserved or filled; never above `capacity`.
    used: AtomicUsize,
    capacity: usize,
    /// How long a handed-over delivery's lease lasts.
    lease_ms: i64,
    /// The earliest time the store may hold due deliveries that were not handed over.
    store_due: AtomicI64,
    notify: Notify,
}

impl Handoff {
    /// A queue of at most `capacity` deliveries, each leased for `lease_ms`.
    pub fn new(capacity: usize, lease_ms: i64) -> Handoff {
        Handoff {
            queue: Mutex::new(VecDeque::new()),
            used: AtomicUsize::new(0),
            capacity,
            lease_ms,
            // The store may hold anything at start: what a previous run left.
            store_due: AtomicI64::new(Millis::MIN),
            notify: Notify::new(),
        }
    }

    /// How long a handed-over delivery is leased for.
    pub fn lease_ms(&self) -> i64 {
        self.lease_ms
    }

    /// Reserves room for `n` deliveries, or `None` when the queue is too full. Dropping the
    /// reservation unfilled gives the room back.
    pub fn reserve(&self, n: usize) -> Option<Reservation<'_>> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= self.capacity).then_some(used + n)
            })
            .ok()
            .map(|_| Reservation { handoff: self, n })
    }

    /// Tells the worker that the store holds deliveries due at `at` that were not handed over
    /// (the queue was full, a retry was scheduled, a dead letter replayed).
    pub fn stored(&self, at: Millis) {
        self.store_due.fetch_min(at, Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// When the store next may hold due deliveries that were not handed over.
    pub fn store_due(&self) -> Millis {
        self.store_due.load(Ordering::Acquire)
    }

    /// Claims the store's due work before leasing it: clears the mark, so a
    /// [`stored`](Handoff::stored) that races with the lease is kept. Give back what is left
    /// with `stored`.
    pub fn claim_store(&self) {
        self.store_due.store(Millis::MAX, Ordering::Release);
    }

    /// Up to `max` handed-over deliveries that `pick` accepts, oldest first; the ones it passes
    /// over keep their place. One whose lease has less than `min_left_ms` to run is dropped: an
    /// attempt could outlive its lease, so it is left to expire and be leased again from the
    /// store.
    pub fn take(
        &self,
        max: usize,
        now: Millis,
        min_left_ms: i64,
        mut pick: impl FnMut(&Delivery) -> bool,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut taken = 0;
        {
            let mut queue = self.queue.lock().expect("handoff lock");
            let mut passed = VecDeque::new();
            while out.len() < max {
                let Some(h) = queue.pop_front() else { break };
                if h.leased_until - now < min_left_ms {
                    taken += 1;
                    tracing::debug!(delivery_id = %h.delivery.id, "handed-over lease too short: left to the store");
                } else if pick(&h.delivery) {
                    taken += 1;
                    out.push(h.delivery);
                } else {
                    passed.push_back(h);
                }
            }
            while let Some(h) = passed.pop_back() {
                queue.push_front(h);
            }
        }
        self.used.fetch_sub(taken, Ordering::AcqRel);
        out
    }

    /// Takes every queued delivery that `pick` chooses, whatever its lease: the worker defers
    /// a held-back robot's whole queue at once, so its backlog can be summarised.
    pub fn take_matching(&self, pick: impl Fn(&Delivery) -> bool) -> Vec<Delivery> {
        let picked = {
            let mut queue = self.queue.lock().expect("handoff lock");
            let (picked, kept): (VecDeque<Handed>, VecDeque<Handed>) =
                std::mem::take(&mut *queue).into_iter().partition(|h| pick(&h.delivery));
            *queue = kept;
            picked
        };
        self.used.fetch_sub(picked.len(), Ordering::AcqRel);
        picked.into_iter().map(|h| h.delivery).collect()
    }

    /// Waits until deliveries are handed over or [`stored`](Handoff::stored) is called.
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

/// Room for some deliveries in the hand-off queue.
#[derive(Debug)]
pub struct Reservation<'a> {
    handoff: &'a Handoff,
    n: usize,
}

impl Reservation<'_> {
    /// Hands the deliveries over (at most the number reserved) and wakes the worker.
    pub fn fill(mut self, deliveries: impl IntoIterator<Item = Delivery>, leased_until: Millis) {
        let mut pushed = 0;
        {
            let mut queue = self.handoff.queue.lock().expect("handoff lock");
            for delivery in deliveries.into_iter().take(self.n) {
                queue.push_back(Handed { delivery, leased_until });
                pushed += 1;
            }
        }
        // Room reserved but not filled goes back; filled room is given back by `take`.
        self.n -= pushed;
        if pushed > 0 {
            self.handoff.notify.notify_one();
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.n > 0 {
            self.handoff.used.fetch_sub(self.n, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::NewDelivery;

    fn delivery(id: &str) -> Delivery {
        Delivery::stored(NewDelivery::sample(id, "c"), "e", 0)
    }

    #[test]
    fn reservations_bound_the_queue_and_give_back_unused_room() {
        let h = Handoff::new(3, 60_000);
        let a = h.reserve(2).expect("room for 2");
        assert!(h.reserve(2).is_none(), "only 1 left");
        drop(a);
        let b = h.reserve(3).expect("room given back");
        b.fill([delivery("1")], 60_000);
        // Two unfilled slots came back when the reservation was consumed.
        assert!(h.reserve(2).is_some());
        assert!(h.reserve(3).is_none());
        assert_eq!(h.take(10, 0, 0, |_| true).iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["1"]);
        assert!(h.reserve(3).is_some(), "taking frees the room");
    }

    #[test]
    fn take_is_oldest_first_and_drops_leases_about_to_expire() {
        let h = Handoff::new(10, 60_000);
        h.reserve(2).unwrap().fill([delivery("old"), delivery("older-lease")], 1_000);
        h.reserve(1).unwrap().fill([delivery("fresh")], 60_000);
        let got = h.take(10, 500, 10_000, |_| true);
        assert_eq!(got.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["fresh"]);
        assert!(h.take(10, 500, 0, |_| true).is_empty());
        assert!(h.reserve(10).is_some(), "dropped ones free their room too");
    }

    #[test]
    fn take_matching_takes_only_the_chosen() {
        let h = Handoff::new(10, 60_000);
        let mut other = delivery("b");
        other.channel = "other".into();
        h.reserve(3).unwrap().fill([delivery("a"), other, delivery("c")], 60_000);
        let got = h.take_matching(|d| d.channel == "c");
        assert_eq!(got.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(h.take(10, 0, 0, |_| true).iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["b"]);
        assert!(h.reserve(10).is_some());
    }

    #[test]
    fn take_passes_over_what_pick_refuses_and_keeps_its_place() {
        let h = Handoff::new(10, 60_000);
        let on = |id: &str, channel: &str| Delivery { channel: channel.into(), ..delivery(id) };
        h.reserve(4)
            .unwrap()
            .fill([on("s1", "slow"), on("f1", "fast"), on("s2", "slow"), on("f2", "fast")], 60_000);
        let got = h.take(10, 0, 0, |d| d.channel == "fast");
        assert_eq!(got.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["f1", "f2"]);
        assert!(h.reserve(9).is_none(), "the passed-over two still hold their room");
        assert!(h.reserve(8).is_some());
        let got = h.take(1, 0, 0, |_| true);
        assert_eq!(got.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["s1"], "oldest first, as before");
        assert_eq!(h.take(10, 0, 0, |_| true).iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["s2"]);
        assert!(h.reserve(10).is_some());
    }

    #[test]
    fn the_store_mark_keeps_the_earliest_time() {
        let h = Handoff::new(1, 1);
        assert_eq!(h.store_due(), Millis::MIN, "at start the store may hold anything");
        h.claim_store();
        assert_eq!(h.store_due(), Millis::MAX);
        h.stored(50);
        h.stored(70);
        assert_eq!(h.store_due(), 50);
    }
}
