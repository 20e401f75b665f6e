//! The live link set. The control tables (`Control`) own which links exist; the live `Link`
//! of each is the engine's port for it (`Target::Link`), the one map of live links, which
//! every lookup by peer reads; the UDP session index (`udp_peers`, address → link) follows the
//! sessions and forgets a link when it is closed. Only [`DataPlane::update_links`] adds or
//! removes links, so the three cannot drift apart.

use super::DataPlane;
use crate::engine::Engine;
use crate::link::Link;
use crate::port::Port;
use std::net::SocketAddr;
use std::sync::Arc;
use vnet_grammar::model::Target;

impl DataPlane {
    /// The live link with `peer`.
    pub(crate) fn link(&self, peer: &str) -> Option<Arc<Link>> {
        let target = Target::Link {
            peer: peer.to_string().into(),
        };
        match self.engine.read().port(&target) {
            Some(Port::Link(l)) => Some(l.clone()),
            _ => None,
        }
    }

    /// The UDP link whose session is with `addr`.
    pub(crate) fn udp_session_link(&self, addr: SocketAddr) -> Option<Arc<Link>> {
        let peers = self.udp_peers.read().unwrap_or_else(|e| e.into_inner());
        peers.get(&addr).cloned()
    }

    /// Every live link.
    pub(crate) fn links(&self) -> Vec<Arc<Link>> {
        self.engine
            .read()
            .ports()
            .filter_map(|p| match p {
                Port::Link(l) => Some(l.clone()),
                Port::Iface(_) => None,
            })
            .collect()
    }

    /// In one engine update: removes the links with the peers `close`, adds `open` (a peer in
    /// both is replaced), and changes the rules (`rules`). The removed links' UDP sessions are
    /// forgotten; returns the removed links (to be closed by the caller, outside every lock).
    pub(crate) fn update_links(
        &self,
        close: &[&str],
        open: &[Arc<Link>],
        rules: impl FnOnce(&mut Engine<Port>),
    ) -> Vec<Arc<Link>> {
        let closed: Vec<Arc<Link>> = self.update_engine(|e| {
            let closed = close
                .iter()
                .filter_map(|peer| {
                    let target = Target::Link {
                        peer: peer.to_string().into(),
                    };
                    match e.remove_port(&target) {
                        Some(Port::Link(l)) => Some(l),
                        _ => None,
                    }
                })
                .collect();
            for l in open {
                let target = Target::Link {
                    peer: l.peer.clone().into(),
                };
                e.set_port(target, Port::Link(l.clone()));
            }
            rules(e);
            closed
        });
        if !closed.is_empty() {
            let mut peers = self.udp_peers.write().unwrap_or_else(|e| e.into_inner());
            peers.retain(|_, l| !closed.iter().any(|c| Arc::ptr_eq(c, l)));
        }
        closed
    }
}
