//! The probe requests (SPEC 5.2): `ProbeServe` opens a short-lived probe socket for one
//! peer, `Probe` probes a peer's socket; the work is `crate::probe`'s.

use super::*;
use crate::probe::{self, msg::token_key, Endpoint};
use std::time::Instant;

fn invalid(message: String) -> ErrorBody {
    ErrorBody {
        code: ErrorCode::Invalid,
        message,
    }
}

fn internal(message: String) -> ErrorBody {
    ErrorBody {
        code: ErrorCode::Internal,
        message,
    }
}

/// Holds one of the probe socket slots; gives it back on drop.
struct Slot(Arc<crate::underlay::Underlay>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Daemon {
    fn endpoint(&self, peer: &str, token: &str) -> Result<Endpoint, ErrorBody> {
        let key = token_key(token).map_err(invalid)?;
        let ip = self.cfg.listen.ip();
        Endpoint::bind(ip, peer, key, self.plane.underlay.clone())
            .map_err(|e| internal(format!("probe socket on {ip}: {e}")))
    }

    /// Opens a probe socket for `peer` for `ttl_ms` (at most [`probe::MAX_SERVE`]).
    pub(super) fn probe_serve(
        &self,
        peer: &str,
        token: &str,
        ttl_ms: u64,
    ) -> Result<Response, ErrorBody> {
        let underlay = self.plane.underlay.clone();
        if underlay.serving.fetch_add(1, Ordering::AcqRel) >= probe::MAX_SERVING {
            underlay.serving.fetch_sub(1, Ordering::AcqRel);
            return Err(ErrorBody {
                code: ErrorCode::Busy,
                message: format!(
                    "already serving {} probes; try again later",
                    probe::MAX_SERVING
                ),
            });
        }
        let slot = Slot(underlay);
        let ep = self.endpoint(peer, token)?;
        let addr = ep
            .sock
            .local_addr()
            .map_err(|e| internal(format!("probe socket: {e}")))?;
        let until = Instant::now() + Duration::from_millis(ttl_ms).min(probe::MAX_SERVE);
        std::thread::Builder::new()
            .name("vnetd-probe".into())
            .spawn(move || {
                let _slot = slot;
                crate::sys::forwarding_thread();
                probe::serve(&ep, until);
            })
            .map_err(|e| internal(format!("probe thread: {e}")))?;
        Ok(Response::ProbeServing {
            addr: addr.to_string(),
        })
    }

    /// Probes `peer` at `addr` for about `duration_ms` (at most [`probe::MAX_PROBE`]).
    pub(super) async fn probe(
        &self,
        peer: &str,
        addr: &str,
        token: &str,
        duration_ms: u64,
    ) -> Result<Response, ErrorBody> {
        let to: SocketAddr = addr
            .parse()
            .map_err(|e| invalid(format!("probe address `{addr}`: {e}")))?;
        let ep = self.endpoint(peer, token)?;
        let duration = Duration::from_millis(duration_ms);
        let result = tokio::task::spawn_blocking(move || {
            crate::sys::forwarding_thread();
            probe::run(&ep, to, duration)
        })
        .await
        .map_err(|e| internal(format!("probe: {e}")))?;
        Ok(Response::Probed(result))
    }
}
