//! Driving the delivery worker by hand under a manual clock, so tests of pacing and holds cover
//! minutes or hours without sleeping.

use std::time::Duration;

use herald::clock::{Clock, ManualClock, Millis};
use herald::delivery::Worker;
use herald::outbox::Outbox;

/// Steps `worker` until no delivery is open, moving `clock` to the next due time whenever
/// nothing is due now. Panics if deliveries are still open after 1,000 rounds.
pub async fn until_all_final(worker: &Worker, outbox: &dyn Outbox, clock: &ManualClock) {
    until(worker, outbox, clock, Millis::MAX).await;
    assert_eq!(outbox.next_due().await.unwrap(), None, "deliveries still open after 1,000 rounds");
}

/// Steps `worker`, moving `clock` to the next due time whenever nothing is due now, until
/// nothing is due before `end` (or 1,000 rounds have passed).
pub async fn until(worker: &Worker, outbox: &dyn Outbox, clock: &ManualClock, end: Millis) {
    for _ in 0..1000 {
        if worker.step().await > 0 {
            continue;
        }
        match outbox.next_due().await.unwrap() {
            Some(at) if at < end => clock.advance(Duration::from_millis((at - clock.now_ms()).max(1) as u64)),
            _ => return,
        }
    }
}
