//! Failed authentications per client address (`gateway.auth_failures`). After `max_failures`
//! failures (no key, or a wrong one) within the window, every further request from the address
//! without a valid key is answered 429 with `Retry-After` (and counted again) until the window
//! slides, so a scanner or guesser is refused cheaply and learns when to come back.
//!
//! A valid key is always accepted: a stranger sharing an address (NAT, a reverse proxy,
//! loopback) cannot lock out the keyed clients behind it. Guessing a key is kept out of reach by
//! the key rules (16 characters or more), not by the lockout. An IPv6 client is counted by its
//! /64, which one client usually controls whole. Memory is bounded: past `MAX_CLIENTS`
//! addresses with recent failures, new addresses share one bucket.
//!
//! Channel webhooks keep a tally per channel (requests the channel could not verify). There
//! the check that passes is the channel's, which runs only if the request is let in, so:
//! an address that delivered a verified request within the window (`passed`) is never locked
//! out (a platform sharing a NAT with a flood keeps getting through, and the flood is held by
//! the channel's own call slots instead); and the shared overflow bucket never locks
//! (`without_overflow_lockout`): a flood from a whole IPv6 /48 must not lock out platforms
//! that send from addresses not yet seen.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Addresses tracked one by one; more share the overflow bucket.
const MAX_CLIENTS: usize = 65_536;
/// Full maps are swept of expired entries at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Where failures are counted: an IPv4 address, an IPv6 /64, or the shared overflow bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    V4(Ipv4Addr),
    V6Net(u64),
    Overflow,
}

impl Client {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

pub struct AuthFailures {
    limit: usize,
    window: Duration,
    /// Whether the shared overflow bucket can be locked out.
    overflow_locks: bool,
    state: Mutex<State>,
}

struct State {
    failures: HashMap<Client, VecDeque<Instant>>,
    /// When each address last passed (`passed`); bounded like `failures`.
    passes: HashMap<Client, Instant>,
    swept: Option<Instant>,
}

impl AuthFailures {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            limit: max_failures.max(1) as usize,
            window,
            overflow_locks: true,
            state: Mutex::new(State {
                failures: HashMap::new(),
                passes: HashMap::new(),
                swept: None,
            }),
        }
    }

    /// Never lock out the addresses that share the overflow bucket.
    pub fn without_overflow_lockout(self) -> Self {
        Self {
            overflow_locks: false,
            ..self
        }
    }

    /// `Some(retry after)` when `ip` is locked out: requests from it without a valid key get
    /// 429.
    pub fn locked_out(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut state = self.state.lock();
        if state
            .passes
            .get(&Client::of(ip))
            .is_some_and(|at| now.duration_since(*at) < self.window)
        {
            return None;
        }
        let bucket = state.bucket(Client::of(ip), now, self.window);
        if bucket == Client::Overflow && !self.overflow_locks {
            return None;
        }
        let failures = state.failures.get_mut(&bucket)?;
        expire(failures, now, self.window);
        if failures.len() < self.limit {
            return None;
        }
        Some(failures.front().map_or(self.window, |oldest| {
            self.window.saturating_sub(now.duration_since(*oldest))
        }))
    }

    /// Count a failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut state = self.state.lock();
        let bucket = state.bucket(Client::of(ip), now, self.window);
        let failures = state.failures.entry(bucket).or_default();
        expire(failures, now, self.window);
        failures.push_back(now);
        // Only the newest `limit` failures decide anything.
        while failures.len() > self.limit {
            failures.pop_front();
        }
    }
}

impl AuthFailures {
    /// Record that `ip` passed a check: it is not locked out for the window.
    pub fn passed(&self, ip: IpAddr) {
        let now = Instant::now();
        let client = Client::of(ip);
        let window = self.window;
        let mut state = self.state.lock();
        if !state.passes.contains_key(&client) && state.passes.len() >= MAX_CLIENTS {
            state
                .passes
                .retain(|_, at| now.duration_since(*at) < window);
            if state.passes.len() >= MAX_CLIENTS {
                return;
            }
        }
        state.passes.insert(client, now);
    }
}

impl State {
    /// The bucket `client` is counted in: its own, or the shared one when too many addresses
    /// have recent failures.
    fn bucket(&mut self, client: Client, now: Instant, window: Duration) -> Client {
        if self.failures.contains_key(&client) || self.failures.len() < MAX_CLIENTS {
            return client;
        }
        if self
            .swept
            .is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY)
        {
            self.swept = Some(now);
            self.failures.retain(|bucket, failures| {
                *bucket == Client::Overflow
                    || failures
                        .back()
                        .is_some_and(|last| now.duration_since(*last) < window)
            });
        }
        if self.failures.len() < MAX_CLIENTS {
            client
        } else {
            Client::Overflow
        }
    }
}

fn expire(failures: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while failures
        .front()
        .is_some_and(|at| now.duration_since(*at) >= window)
    {
        failures.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_is_refused_after_the_limit_until_the_window_slides() {
        let failures = AuthFailures::new(3, Duration::from_millis(200));
        for _ in 0..2 {
            failures.failed(ip("10.0.0.1"));
        }
        assert!(failures.locked_out(ip("10.0.0.1")).is_none());
        failures.failed(ip("10.0.0.1"));
        let retry = failures.locked_out(ip("10.0.0.1")).unwrap();
        assert!(retry <= Duration::from_millis(200) && retry > Duration::ZERO);
        // Another address is not affected.
        assert!(failures.locked_out(ip("10.0.0.2")).is_none());
        std::thread::sleep(Duration::from_millis(250));
        assert!(failures.locked_out(ip("10.0.0.1")).is_none());
    }

    #[test]
    fn an_address_that_passed_within_the_window_is_never_locked_out() {
        let failures = AuthFailures::new(2, Duration::from_millis(200));
        failures.passed(ip("10.0.0.1"));
        for _ in 0..5 {
            failures.failed(ip("10.0.0.1"));
            failures.failed(ip("10.0.0.2"));
        }
        assert!(failures.locked_out(ip("10.0.0.1")).is_none());
        assert!(failures.locked_out(ip("10.0.0.2")).is_some());
        std::thread::sleep(Duration::from_millis(250));
        failures.failed(ip("10.0.0.1"));
        failures.failed(ip("10.0.0.1"));
        assert!(
            failures.locked_out(ip("10.0.0.1")).is_some(),
            "the pass has expired"
        );
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            Client::of(ip("2001:db8:1:2::1")),
            Client::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Client::of(ip("2001:db8:1:2::1")),
            Client::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Client::of(ip("::ffff:10.0.0.1")),
            Client::of(ip("10.0.0.1"))
        );
        let failures = AuthFailures::new(1, Duration::from_secs(60));
        failures.failed(ip("2001:db8:1:2::1"));
        assert!(failures.locked_out(ip("2001:db8:1:2::7")).is_some());
    }

    #[test]
    fn past_the_tracked_addresses_new_ones_share_one_bucket() {
        let failures = AuthFailures::new(2, Duration::from_secs(60));
        for n in 0..MAX_CLIENTS as u32 {
            failures.failed(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)));
        }
        assert_eq!(failures.state.lock().failures.len(), MAX_CLIENTS);
        // Two new addresses, one failure each: together they exhaust the shared bucket.
        failures.failed(ip("192.0.2.1"));
        assert!(failures.locked_out(ip("192.0.2.2")).is_none());
        failures.failed(ip("192.0.2.2"));
        assert!(failures.locked_out(ip("192.0.2.3")).is_some());
        assert!(failures.state.lock().failures.len() <= MAX_CLIENTS + 1);
        // Addresses tracked one by one are unaffected.
        assert!(failures.locked_out(ip("10.0.0.5")).is_none());
        // A tally that fails open never locks the overflow bucket.
        let open = AuthFailures::new(1, Duration::from_secs(60)).without_overflow_lockout();
        for n in 0..MAX_CLIENTS as u32 + 10 {
            open.failed(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)));
        }
        assert!(open.locked_out(ip("192.0.2.9")).is_none());
        assert!(open.locked_out(ip("10.0.0.5")).is_some());
    }
}
