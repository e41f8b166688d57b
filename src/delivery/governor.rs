//! The rate governor: per-robot sending limits, so Herald never trips a platform's limit.
//!
//! Limits are keyed by the robot (its webhook URL), not by the rule or channel name: two
//! channels pointing at one robot share its budget. Each limit is a sliding window over the
//! times of recent sends, which is stricter than any fixed-window counter a platform keeps,
//! with a small margin for the time a request spends on the wire. (A token bucket would let a
//! full burst through at each window edge: twice the limit within one window.)

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::Millis;
use crate::config::Rate;

/// One sliding window: at most `count` sends per `period_ms`.
#[derive(Debug)]
struct Window {
    count: usize,
    period_ms: Millis,
    sent: VecDeque<Millis>,
}

impl Window {
    fn new(rate: Rate) -> Window {
        // 5 % margin: a request sent at the window's edge may arrive a little later.
        let period = rate.per + rate.per / 20;
        Window { count: rate.count as usize, period_ms: period.as_millis() as Millis, sent: VecDeque::new() }
    }

    fn expire(&mut self, now: Millis) {
        while self.sent.front().is_some_and(|t| *t + self.period_ms <= now) {
            self.sent.pop_front();
        }
    }

    /// When this window next has room (`now` if it has room now).
    fn free_at(&self, now: Millis) -> Millis {
        if self.sent.len() < self.count {
            now
        } else {
            self.sent[self.sent.len() - self.count] + self.period_ms
        }
    }
}

/// Sending limits for every robot.
#[derive(Debug, Default)]
pub struct Governor {
    robots: Mutex<HashMap<String, Vec<Window>>>,
    rates: HashMap<String, Vec<Rate>>,
    /// Per robot, the free slot its latest backlog summary was made for.
    summarized: Mutex<HashMap<String, Millis>>,
    /// Per robot, until when its platform asked for no more sends (a rate-limit code or
    /// Retry-After): another sender sharing the robot, or a restart, can trip a limit Herald's
    /// own pace does not, and every send before then would only extend a lockout.
    paused: Mutex<HashMap<String, Millis>>,
}

impl Governor {
    /// A governor with limits per robot key; keys without limits are never held back.
    pub fn new(rates: HashMap<String, Vec<Rate>>) -> Governor {
        let robots = rates
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(k, r)| (k.clone(), r.iter().map(|r| Window::new(*r)).collect()))
            .collect();
        Governor { robots: Mutex::new(robots), rates, summarized: Mutex::default(), paused: Mutex::default() }
    }

    /// Takes a sending slot for `key` at `now`, or says when the next slot frees.
    pub fn acquire(&self, key: &str, now: Millis) -> Result<(), Millis> {
        let paused = self.paused_until(key, now);
        if paused > now {
            return Err(paused);
        }
        let mut robots = self.robots.lock().expect("governor lock");
        let Some(windows) = robots.get_mut(key) else { return Ok(()) };
        windows.iter_mut().for_each(|w| w.expire(now));
        let ready = windows.iter().map(|w| w.free_at(now)).max().unwrap_or(now);
        if ready > now {
            return Err(ready);
        }
        windows.iter_mut().for_each(|w| w.sent.push_back(now));
        Ok(())
    }

    /// Sends nothing more to `key` before `until`: its platform answered with a rate-limit
    /// code or a Retry-After. A later pause only ever extends an earlier one.
    pub fn pause(&self, key: &str, until: Millis) {
        let mut paused = self.paused.lock().expect("governor lock");
        let at = paused.entry(key.to_string()).or_insert(until);
        *at = (*at).max(until);
    }

    /// Until when `key` is paused, or `now` when it is not.
    fn paused_until(&self, key: &str, now: Millis) -> Millis {
        let mut paused = self.paused.lock().expect("governor lock");
        match paused.get(key) {
            Some(until) if *until > now => *until,
            Some(_) => {
                paused.remove(key);
                now
            }
            None => now,
        }
    }

    /// Whether a backlog summary may still be made for `key`'s free slot `slot` (what
    /// `acquire` answered): once per slot, recorded by [`summarized`](Self::summarized). A
    /// steady stream to a busy robot then makes one summary each time the robot can send, each
    /// covering what arrived since the last, rather than one per event, which would pile up
    /// faster than the robot sends them.
    pub fn may_summarize(&self, key: &str, slot: Millis) -> bool {
        self.summarized.lock().expect("governor lock").get(key).is_none_or(|last| *last < slot)
    }

    /// Records that a backlog summary was made for `key`'s free slot `slot`.
    pub fn summarized(&self, key: &str, slot: Millis) {
        let mut summarized = self.summarized.lock().expect("governor lock");
        let last = summarized.entry(key.to_string()).or_insert(slot);
        *last = (*last).max(slot);
    }

    /// Counts a send made at `at` (before a restart) against `key`'s windows, so a restart
    /// does not hand a robot a fresh budget. Call in time order.
    pub fn seed(&self, key: &str, at: Millis) {
        let mut robots = self.robots.lock().expect("governor lock");
        if let Some(windows) = robots.get_mut(key) {
            windows.iter_mut().for_each(|w| w.sent.push_back(at));
        }
    }

    /// The longest window of any limit: sends older than this no longer count.
    pub fn longest_window(&self) -> Duration {
        let robots = self.robots.lock().expect("governor lock");
        let ms = robots.values().flatten().map(|w| w.period_ms).max().unwrap_or(0);
        Duration::from_millis(ms.max(0) as u64)
    }

    /// How long `backlog` more messages take to send at the robot's limits, the first one
    /// waiting for the next free slot.
    pub fn drain_time(&self, key: &str, backlog: usize, now: Millis) -> Duration {
        let paused = (self.paused_until(key, now) - now) as u64;
        let robots = self.robots.lock().expect("governor lock");
        let Some(windows) = robots.get(key) else { return Duration::from_millis(paused) };
        let wait_first =
            (windows.iter().map(|w| w.free_at(now) - now).max().unwrap_or(0).max(0) as u64).max(paused);
        let steady = windows
            .iter()
            .map(|w| (backlog.saturating_sub(1) as u64 / w.count as u64) * w.period_ms as u64)
            .max()
            .unwrap_or(0);
        Duration::from_millis(wait_first + steady)
    }

    /// The limits configured for a robot.
    pub fn rates(&self, key: &str) -> &[Rate] {
        self.rates.get(key).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn governor(rates: Vec<Rate>) -> Governor {
        Governor::new([("robot".to_string(), rates)].into())
    }

    #[test]
    fn never_more_than_the_limit_in_any_window() {
        let g = governor(vec![Rate::per_minute(20)]);
        let mut sent = Vec::new();
        let mut now = 0;
        while sent.len() < 100 {
            match g.acquire("robot", now) {
                Ok(()) => sent.push(now),
                Err(at) => {
                    assert!(at > now);
                    now = at;
                }
            }
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|s| **s < t + 60_000).count();
            assert!(in_window <= 20, "{in_window} sends within a minute starting at {t}");
        }
        // A burst of 20 goes at once; the next waits for the window plus the margin.
        assert_eq!(sent[19], 0);
        assert_eq!(sent[20], 63_000);
    }

    #[test]
    fn every_limit_applies() {
        let g = governor(vec![Rate::per_second(5), Rate::per_minute(100)]);
        for _ in 0..5 {
            assert_eq!(g.acquire("robot", 0), Ok(()));
        }
        assert_eq!(g.acquire("robot", 0), Err(1050));
        assert_eq!(g.acquire("robot", 1050), Ok(()));
    }

    #[test]
    fn seeded_sends_count_against_the_window() {
        let g = governor(vec![Rate::per_minute(20)]);
        for at in 0..20 {
            g.seed("robot", at);
        }
        g.seed("other", 0);
        assert_eq!(g.longest_window(), Duration::from_millis(63_000));
        assert_eq!(g.acquire("robot", 100), Err(63_000));
        assert_eq!(g.acquire("robot", 63_000), Ok(()));
    }

    #[test]
    fn a_paused_robot_sends_nothing_until_the_pause_ends() {
        let g = governor(vec![Rate::per_minute(20)]);
        assert_eq!(g.acquire("robot", 0), Ok(()));
        g.pause("robot", 600_000);
        g.pause("robot", 60_000);
        assert_eq!(g.acquire("robot", 1_000), Err(600_000), "a shorter pause does not shorten it");
        assert_eq!(g.drain_time("robot", 1, 1_000), Duration::from_millis(599_000));
        assert_eq!(g.acquire("robot", 600_000), Ok(()));
        // A robot with no limit of its own (a webhook answering 429) pauses too.
        g.pause("other", 5_000);
        assert_eq!(g.acquire("other", 0), Err(5_000));
        assert_eq!(g.drain_time("other", 3, 0), Duration::from_millis(5_000));
        assert_eq!(g.acquire("other", 5_000), Ok(()));
    }

    #[test]
    fn unknown_robots_are_not_held_back() {
        let g = governor(vec![Rate::per_minute(1)]);
        for _ in 0..100 {
            assert_eq!(g.acquire("other", 0), Ok(()));
        }
    }

    #[test]
    fn one_summary_per_free_slot() {
        let g = governor(vec![Rate::per_minute(20)]);
        assert!(g.may_summarize("robot", 3_000));
        assert!(g.may_summarize("robot", 3_000), "asking does not use the slot");
        g.summarized("robot", 3_000);
        assert!(!g.may_summarize("robot", 3_000), "the same slot again");
        assert!(!g.may_summarize("robot", 2_000), "an earlier slot");
        assert!(g.may_summarize("other", 3_000), "robots are apart");
        assert!(g.may_summarize("robot", 6_000), "the next slot");
    }

    #[test]
    fn drain_time_counts_whole_windows() {
        let g = governor(vec![Rate::per_minute(20)]);
        assert_eq!(g.drain_time("robot", 20, 0), Duration::ZERO);
        for _ in 0..20 {
            g.acquire("robot", 0).unwrap();
        }
        assert_eq!(g.drain_time("robot", 1, 0), Duration::from_millis(63_000));
        assert_eq!(g.drain_time("robot", 80, 0), Duration::from_millis(63_000 * 4));
    }
}
