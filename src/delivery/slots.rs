//! Per-robot shares of the worker's attempts in flight.
//!
//! The worker keeps a fixed number of attempts in flight. Without a cap per robot, a robot that
//! hangs until its timeout would end up holding every one of them, and every other channel
//! would wait for it. A robot holds at most `per_robot` attempts at once; what it has beyond
//! that waits for one of its own slots, and the others' deliveries go past it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
        let n = busy.entry(key.to_string()).or_insert(0);
        if *n >= self.per_robot {
            return None;
        }
        *n += 1;
        Some(Slot { busy: self.busy.clone(), key: key.to_string() })
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

    #[test]
    fn a_share_of_zero_still_lets_one_attempt_through() {
        let slots = Slots::new(0);
        assert!(slots.take("a").is_some());
    }
}
