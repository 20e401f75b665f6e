//! A forwarding destination: a local interface or an overlay link.

use crate::iface::Iface;
use crate::link::Link;
use crate::stats::PortStats;
use std::sync::Arc;

#[derive(Clone)]
pub enum Port {
    Iface(Arc<Iface>),
    Link(Arc<Link>),
}

impl Port {
    /// The port's counters.
    pub fn stats(&self) -> &PortStats {
        match self {
            Port::Iface(i) => &i.stats,
            Port::Link(l) => &l.stats,
        }
    }
}
