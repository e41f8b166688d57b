//! Which threads go first when the CPUs are busy.
//!
//! Accepting a webhook is latency-bound work: the sender waits for the 202, and retries when it
//! times out. Delivering is throughput work that can wait a moment. So the delivery thread
//! lowers its own scheduling priority: under a burst the kernel runs the accept path and the
//! store's writer first, and delivery catches up as the burst passes.
//! Nothing is starved: a lower priority is a smaller share of the CPU, not none of it. Lowering
//! needs no privilege.

/// The niceness of the delivery worker's thread.
pub const DELIVERY_NICE: i32 = 5;

/// Lowers the calling thread's priority to `nice` (0 is normal, 19 the lowest); a thread that
/// already runs lower keeps its priority. Best effort: elsewhere than Linux, or if the call
/// fails, nothing changes.
pub fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls with no pointers; on Linux, PRIO_PROCESS with a thread id
        // reads and sets that thread's niceness only.
        let result = unsafe {
            let tid = libc::gettid() as libc::id_t;
            let current = libc::getpriority(libc::PRIO_PROCESS, tid);
            if current >= nice {
                0
            } else {
                libc::setpriority(libc::PRIO_PROCESS, tid, nice)
            }
        };
        if result != 0 {
            tracing::debug!(nice, "could not lower the thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_its_own_priority_only() {
        let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert!(before < 19, "the tests run at the lowest priority already: nothing to lower");
        let target = before + 1;
        let inside = std::thread::spawn(move || {
            lower_priority(target);
            let lowered = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
            // Asking for a higher priority than the thread has changes nothing.
            lower_priority(before);
            (lowered, unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) })
        })
        .join()
        .unwrap();
        assert_eq!(inside, (target, target));
        assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, before, "the process is unchanged");
    }
}
