//! Taking the lease of every daemon an apply touches, all or none: two applies that overlap
//! cannot both hold some of the daemons and wait for the rest (no deadlock); the one that gets
//! only part lets go, waits a random moment, and tries again until `--lock-timeout`.

use super::fetch::{describe, Session};
use super::{parallel, DaemonError};
use std::time::{Duration, Instant};
use vnet_proto::control::ErrorCode;

/// Who we are, as other clients will see it in their refusal: `user@host pid N (vnetc apply)`.
pub fn holder(command: &str) -> String {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "someone".into());
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host} pid {} ({command})", std::process::id())
}

/// Leases every session's daemon for `ttl`, retrying for up to `lock_timeout` while some are
/// held by others. On failure nothing stays leased and the errors name the holders.
pub fn acquire_all(
    sessions: &mut [Session],
    holder: &str,
    ttl: Duration,
    lock_timeout: Duration,
    timeout: Duration,
) -> Result<(), Vec<DaemonError>> {
    // Even without a lock timeout, retry briefly: two applies starting together may each get
    // part of the daemons, both let go, and one of them should still win.
    let deadline = Instant::now() + lock_timeout.max(Duration::from_millis(300));
    let mut attempt: u32 = 0;
    loop {
        let results = parallel(sessions, |s| s.client.lease(holder, ttl));
        let mut locked = Vec::new();
        let mut broken = Vec::new();
        for (s, r) in sessions.iter().zip(&results) {
            match r {
                Ok(_) => {}
                Err(e) if e.code() == Some(ErrorCode::Locked) => {
                    let message = match e {
                        vnet_proto::ClientError::Daemon(body) => body.message.clone(),
                        e => e.to_string(),
                    };
                    locked.push(DaemonError::new(&s.host.machine, message));
                }
                Err(e) => broken.push(DaemonError::new(
                    &s.host.machine,
                    describe(e, &super::hosts::peer_addr(&s.host), timeout),
                )),
            }
        }
        if locked.is_empty() && broken.is_empty() {
            return Ok(());
        }
        release_all(sessions);
        if !broken.is_empty() {
            broken.extend(locked);
            return Err(broken);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(locked);
        }
        attempt += 1;
        std::thread::sleep(jitter(attempt).min(deadline - now));
    }
}

/// Gives every lease back (a closed connection would too; this is just sooner).
pub fn release_all(sessions: &mut [Session]) {
    parallel(sessions, |s| {
        let _ = s.client.release();
    });
}

/// Renews one session's lease (long waits in an apply must not let it lapse).
pub fn renew(session: &mut Session, holder: &str, ttl: Duration) -> Result<(), String> {
    session
        .client
        .lease(holder, ttl)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// 20–150 ms, growing a little with each attempt, different in every process.
fn jitter(attempt: u32) -> Duration {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let spread = 20 + u64::from(attempt.min(6)) * 20;
    Duration::from_millis(20 + u64::from(seed) % spread)
}
