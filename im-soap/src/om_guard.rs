//! The per-address limit on failed OM authentications (spec
//! auth-and-config.md: failed SOAP authentications are logged and
//! rate-limited per source address, but never lock the OM account).
//!
//! Each address may fail the credentials check (-1002) `max_failures`
//! times per `window`. Beyond that, its calls are answered -9999 ("nothing
//! was stored, retry") without being judged until the window ends: an OM
//! retries them with backoff, so once its configuration is fixed its orders
//! go through — nothing is locked. Only the failures within the limit are
//! written to the login log, so a flood of wrong passwords costs neither
//! Argon2 time nor log rows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses tracked at once (the oldest windows are dropped first).
const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Failed OM authentications per source address.
#[derive(Debug)]
pub struct AuthFailures {
    max_failures: u32,
    window: Duration,
    by_ip: Mutex<HashMap<IpAddr, Window>>,
}

impl AuthFailures {
    /// `max_failures` per `window` and address (0 turns the limit off).
    ///
    /// ```
    /// use im_soap::om_guard::AuthFailures;
    /// use std::time::Duration;
    /// let g = AuthFailures::new(2, Duration::from_secs(60));
    /// let ip = "192.0.2.7".parse().expect("an address");
    /// assert!(g.record(ip) && g.record(ip));
    /// assert!(g.is_limited(ip));
    /// assert!(!g.record(ip), "the third failure is not logged");
    /// ```
    pub fn new(max_failures: u32, window: Duration) -> AuthFailures {
        AuthFailures {
            max_failures,
            window,
            by_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Whether calls from `ip` are held back until its window ends.
    pub fn is_limited(&self, ip: IpAddr) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        let Ok(map) = self.by_ip.lock() else {
            return false;
        };
        map.get(&ip)
            .is_some_and(|w| w.start.elapsed() < self.window && w.failures >= self.max_failures)
    }

    /// Counts a failure of `ip`; returns whether it is within the limit
    /// (and so is to be logged).
    pub fn record(&self, ip: IpAddr) -> bool {
        if self.max_failures == 0 {
            return true;
        }
        let Ok(mut map) = self.by_ip.lock() else {
            return false;
        };
        let now = Instant::now();
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            let window = self.window;
            map.retain(|_, w| now.duration_since(w.start) < window);
            if map.len() >= MAX_TRACKED {
                // Still full of live windows: drop the oldest.
                if let Some(oldest) = map.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let w = map.entry(ip).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.duration_since(w.start) >= self.window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        w.failures <= self.max_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_per_address_and_ends_with_the_window() {
        let g = AuthFailures::new(3, Duration::from_millis(200));
        let (a, b): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().expect("ip"), "::1".parse().expect("ip"));
        for _ in 0..3 {
            assert!(!g.is_limited(a));
            assert!(g.record(a));
        }
        assert!(g.is_limited(a));
        assert!(!g.record(a));
        assert!(!g.is_limited(b), "another address is not held back");
        std::thread::sleep(Duration::from_millis(250));
        assert!(!g.is_limited(a), "the window ended");
        assert!(g.record(a));
    }

    #[test]
    fn off_when_zero() {
        let g = AuthFailures::new(0, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..100 {
            assert!(g.record(a));
        }
        assert!(!g.is_limited(a));
    }

    #[test]
    fn the_table_stays_bounded() {
        let g = AuthFailures::new(1, Duration::from_secs(60));
        for i in 0..(MAX_TRACKED as u32 + 10) {
            g.record(IpAddr::from(i.to_be_bytes()));
        }
        assert!(g.by_ip.lock().expect("lock").len() <= MAX_TRACKED);
    }
}
