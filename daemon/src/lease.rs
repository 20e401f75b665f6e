//! The daemon's table lease: at most one control connection at a time may change the tables
//! while it holds the lease, so two `vnetc apply` runs cannot interleave their changes.
//!
//! A lease belongs to the control connection that took it. It ends when that connection
//! releases it, when the connection closes (a crashed client lets go at once), or when its
//! time to live runs out without a renewal (a hung client, or a network partition that keeps
//! the connection half-open, cannot hold it forever). While a lease is held, a change from
//! any other connection is refused with [`crate::proto::ErrorCode::Locked`], naming who holds
//! it and since when. Reads are never refused.

use crate::proto::LeaseInfo;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The shortest and longest time to live a client may ask for.
pub const MIN_TTL: Duration = Duration::from_millis(100);
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Longest holder description kept (it is shown to other clients).
const MAX_HOLDER: usize = 200;

#[derive(Default)]
pub struct Leases {
    held: Mutex<Option<Held>>,
}

struct Held {
    session: u64,
    holder: String,
    acquired_unix_ms: u64,
    acquired: Instant,
    expires: Instant,
}

impl Held {
    fn info(&self, now: Instant) -> LeaseInfo {
        LeaseInfo {
            holder: self.holder.clone(),
            acquired_unix_ms: self.acquired_unix_ms,
            expires_in_ms: self.expires.saturating_duration_since(now).as_millis() as u64,
        }
    }
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the lease for `session`, or renews it if `session` already holds it. Refused
    /// (with the message to send) while another session holds a lease that has not expired.
    pub fn acquire(
        &self,
        daemon: &str,
        session: u64,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseInfo, String> {
        let now = Instant::now();
        let ttl = ttl.clamp(MIN_TTL, MAX_TTL);
        let mut held = self.lock();
        match held.as_mut() {
            Some(h) if h.session == session => {
                h.expires = now + ttl;
                return Ok(h.info(now));
            }
            Some(h) if h.expires > now => return Err(refusal(daemon, h, now)),
            _ => {}
        }
        let holder: String = holder
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_HOLDER)
            .collect();
        let h = Held {
            session,
            holder: if holder.is_empty() {
                "an unnamed client".into()
            } else {
                holder
            },
            acquired_unix_ms: unix_ms(),
            acquired: now,
            expires: now + ttl,
        };
        let info = h.info(now);
        *held = Some(h);
        Ok(info)
    }

    /// Gives the lease back if `session` holds it; returns whether it did.
    pub fn release(&self, session: u64) -> bool {
        let mut held = self.lock();
        if held.as_ref().is_some_and(|h| h.session == session) {
            *held = None;
            true
        } else {
            false
        }
    }

    /// May `session` change the tables? Not while another session holds a live lease.
    pub fn check_change(&self, daemon: &str, session: u64) -> Result<(), String> {
        let now = Instant::now();
        match self.lock().as_ref() {
            Some(h) if h.session != session && h.expires > now => Err(refusal(daemon, h, now)),
            _ => Ok(()),
        }
    }

    /// The live lease, if any (for `status`).
    pub fn current(&self) -> Option<LeaseInfo> {
        let now = Instant::now();
        self.lock()
            .as_ref()
            .filter(|h| h.expires > now)
            .map(|h| h.info(now))
    }
}

/// Releases a session's lease when its connection ends, however it ends.
pub struct SessionLease<'a> {
    pub leases: &'a Leases,
    pub session: u64,
}

impl Drop for SessionLease<'_> {
    fn drop(&mut self) {
        self.leases.release(self.session);
    }
}

fn refusal(daemon: &str, h: &Held, now: Instant) -> String {
    let age = now.saturating_duration_since(h.acquired).as_secs_f64();
    let left = h.expires.saturating_duration_since(now).as_secs_f64();
    format!(
        "daemon {daemon} is leased by {} since {} ({age:.1} s ago); the lease ends when its holder \
         releases it or disconnects, or in {left:.1} s without renewal",
        h.holder,
        utc(h.acquired_unix_ms)
    )
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a Unix time in milliseconds (no time-zone database needed).
pub fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_renewal_release_and_expiry() {
        let l = Leases::default();
        let ttl = Duration::from_secs(30);
        l.acquire("d", 1, "alice", ttl).unwrap();
        // The holder renews; another session is refused with who and when.
        l.acquire("d", 1, "alice", ttl).unwrap();
        let e = l.acquire("d", 2, "bob", ttl).unwrap_err();
        assert!(e.contains("leased by alice since"), "{e}");
        assert!(l.check_change("d", 2).is_err());
        assert!(l.check_change("d", 1).is_ok());
        // Release lets the other in; releasing what one does not hold does nothing.
        assert!(!l.release(2));
        assert!(l.release(1));
        l.acquire("d", 2, "bob", MIN_TTL).unwrap();
        // After the time to live, the lease no longer counts.
        std::thread::sleep(MIN_TTL + Duration::from_millis(20));
        assert!(l.check_change("d", 1).is_ok());
        assert!(l.current().is_none());
        l.acquire("d", 1, "alice", ttl).unwrap();
        // Dropping the session's guard releases it.
        drop(SessionLease {
            leases: &l,
            session: 1,
        });
        assert!(l.current().is_none());
    }

    #[test]
    fn utc_formats_known_times() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20 UTC");
    }
}
