//! Driving the delivery worker by hand under a manual clock, so tests of pacing and holds cover
//! minutes or hours without sleeping.

use std::time::Duration;

use herald::clock::{Clock, ManualClock};
use herald::delivery::Worker;
use herald::outbox::Outbox;

/// Steps `worker` until no delivery is open, moving `clock` to the next due time whenever
/// nothing is due now. Panics if deliveries are still open after 1,000 rounds.
pub async fn until_all_final(worker: &Worker, outbox: &dyn Outbox, clock: &ManualClock) {
    for _ in 0..1000 {
        if worker.step().await > 0 {
            continue;
        }
        match outbox.next_due().await.unwrap() {
            Some(at) => clock.advance(Duration::from_millis((at - clock.now_ms()).max(1) as u64)),
            None => return,
        }
    }
    panic!("deliveries still open after 1,000 rounds: next due {:?}", outbox.next_due().await.unwrap());
}
