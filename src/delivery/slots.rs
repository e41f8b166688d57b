//! Per-robot shares of the worker's attempts in flight, and the deliveries waiting for one.
//!
//! The worker keeps a fixed number of attempts in flight. Without a cap per robot, a robot that
//! hangs until its timeout would end up holding every one of them, and every other channel
//! would wait for it. A robot holds at most `per_robot` attempts at once; what it has beyond
//! that waits for one of its own slots ([`Parked`]), and the others' deliveries go past it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::clock::Millis;
use crate::outbox::Delivery;

/// The attempts in flight, counted per robot (rate key).
#[derive(Debug, Clone)]
pub struct Slots {
    per_robot: usize,
    busy: Arc<Mutex<HashMap<String, usize>>>,
}

/// One robot's slot, held for one attempt; dropping it gives the slot back, even when the
/// attempt panics.
#[derive(Debug)]
pub struct Slot {
    busy: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Slots {
    /// At most `per_robot` attempts in flight per robot (at least one).
    pub fn new(per_robot: usize) -> Slots {
        Slots { per_robot: per_robot.max(1), busy: Default::default() }
    }

    /// How many more attempts the robot `key` may start now.
    pub fn room(&self, key: &str) -> usize {
        let busy = self.busy.lock().expect("slots lock");
        self.per_robot.saturating_sub(busy.get(key).copied().unwrap_or(0))
    }

    /// Whether some robot has every one of its slots in use.
    pub fn any_full(&self) -> bool {
        self.busy.lock().expect("slots lock").values().any(|&n| n >= self.per_robot)
    }

    /// A slot of the robot `key`, or `None` when all of its slots are in use.
    pub fn take(&self, key: &str) -> Option<Slot> {
        let mut busy = self.busy.lock().expect("slots lock");
        match busy.get_mut(key) {
            Some(n) if *n >= self.per_robot => return None,
            Some(n) => *n += 1,
            None => {
                busy.insert(key.to_string(), 1);
            }
        }
        Some(Slot { busy: self.busy.clone(), key: key.to_string() })
    }
}

/// Leased deliveries whose robot had no slot free, in the order taken, per robot. They start,
/// ahead of anything newer of their robot, as its slots free. Each must start by its deadline
/// (while its lease has half its time left, as for any attempt); one that cannot is dropped
/// here, and its lease expires and brings it back from the store.
#[derive(Debug, Default)]
pub struct Parked {
    waiting: HashMap<String, VecDeque<(Delivery, Millis)>>,
}

impl Parked {
    /// Parks `d` for the robot `key`, to start by `start_by`.
    pub fn park(&mut self, key: &str, d: Delivery, start_by: Millis) {
        self.waiting.entry(key.to_string()).or_default().push_back((d, start_by));
    }

    /// Whether the robot `key` has deliveries waiting.
    pub fn holds(&self, key: &str) -> bool {
        self.waiting.contains_key(key)
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The parked deliveries that can start now, each with its slot, oldest first per robot.
    pub fn ready(&mut self, slots: &Slots, now: Millis) -> Vec<(Delivery, Slot)> {
        let mut out = Vec::new();
        self.waiting.retain(|key, queue| {
            while let Some((d, start_by)) = queue.pop_front() {
                if start_by < now {
                    tracing::debug!(delivery_id = %d.id, "parked too long: left to the store");
                    continue;
                }
                match slots.take(key) {
                    Some(slot) => out.push((d, slot)),
                    None => {
                        queue.push_front((d, start_by));
                        break;
                    }
                }
            }
            !queue.is_empty()
        });
        out
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = self.busy.lock().expect("slots lock");
        if let Some(n) = busy.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                busy.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_robot_holds_at_most_its_share_and_dropping_a_slot_gives_it_back() {
        let slots = Slots::new(2);
        let a1 = slots.take("a").expect("first slot");
        let _a2 = slots.take("a").expect("second slot");
        assert!(slots.take("a").is_none(), "a has used its share");
        assert_eq!(slots.room("a"), 0);
        assert!(slots.any_full());
        let _b = slots.take("b").expect("b has its own share");
        assert_eq!(slots.room("b"), 1);
        drop(a1);
        assert_eq!(slots.room("a"), 1);
        assert!(!slots.any_full());
        assert!(slots.take("a").is_some());
    }

    #[test]
    fn a_slot_comes_back_when_its_attempt_panics() {
        let slots = Slots::new(1);
        let slot = slots.take("a").unwrap();
        let panicked = std::thread::spawn(move || {
            let _held = slot;
            panic!("the attempt failed");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(slots.room("a"), 1);
    }

    fn delivery(id: &str) -> Delivery {
        Delivery::stored(crate::outbox::NewDelivery::sample(id, "c"), "e", 0)
    }

    #[test]
    fn parked_deliveries_start_in_order_as_slots_free_and_expire_unstarted() {
        let slots = Slots::new(1);
        let busy = slots.take("a").unwrap();
        let mut parked = Parked::default();
        parked.park("a", delivery("a1"), 100);
        parked.park("a", delivery("a2"), 100);
        parked.park("b", delivery("b1"), 100);
        parked.park("c", delivery("c-late"), 10);
        let ids = |got: &[(Delivery, Slot)]| got.iter().map(|(d, _)| d.id.clone()).collect::<Vec<_>>();
        let got = parked.ready(&slots, 50);
        assert_eq!(ids(&got), ["b1"], "a is full; c's deadline has passed");
        assert!(parked.holds("a") && !parked.holds("b") && !parked.holds("c"));
        drop(busy);
        let first = parked.ready(&slots, 60);
        assert_eq!(ids(&first), ["a1"], "one slot: the oldest first");
        drop(first);
        assert_eq!(ids(&parked.ready(&slots, 70)), ["a2"]);
        assert!(parked.is_empty());
    }

    #[test]
    fn a_share_of_zero_still_lets_one_attempt_through() {
        let slots = Slots::new(0);
        assert!(slots.take("a").is_some());
    }
}
