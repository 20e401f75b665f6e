//! The kernel's IPv4 routing table (`/proc/net/route`), read once and asked many times: which
//! interfaces carry a default route, and which interface a destination leaves by. Read on the
//! control side only (at start, when the tables or UDP sessions change), never per frame.

use std::net::Ipv4Addr;

/// One line of `/proc/net/route`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Route {
    iface: String,
    /// Destination and mask, in memory order (as the file writes them, like `u32::from_ne_bytes`
    /// of an address's octets).
    dest: u32,
    mask: u32,
    up: bool,
    metric: u32,
}

/// The main IPv4 routing table.
#[derive(Clone, Debug, Default)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// The current table (empty when it cannot be read).
    pub fn read() -> RouteTable {
        std::fs::read_to_string("/proc/net/route")
            .map(|t| RouteTable::parse(&t))
            .unwrap_or_default()
    }

    /// Parses the text of `/proc/net/route` (a header line, then `Iface Destination Gateway
    /// Flags RefCnt Use Metric Mask ...` per route, numbers in hex but the metric); lines it
    /// cannot read are left out.
    pub fn parse(text: &str) -> RouteTable {
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let routes = text
            .lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let (name, dest, flags, metric, mask) =
                    (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
                Some(Route {
                    iface: name.to_string(),
                    dest: hex(dest)?,
                    mask: hex(mask)?,
                    // RTF_UP
                    up: hex(flags)? & 1 != 0,
                    metric: metric.parse().unwrap_or(u32::MAX),
                })
            })
            .collect();
        RouteTable { routes }
    }

    /// The interfaces that carry a default route.
    pub fn default_interfaces(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .filter(|r| r.dest == 0)
            .map(|r| r.iface.as_str())
    }

    /// The interface the table sends `ip` out of: the longest prefix that is up, then the
    /// lowest metric.
    pub fn interface_for(&self, ip: Ipv4Addr) -> Option<&str> {
        let addr = u32::from_ne_bytes(ip.octets());
        self.routes
            .iter()
            .filter(|r| r.up && addr & r.mask == r.dest)
            .min_by_key(|r| (std::cmp::Reverse(r.mask.count_ones()), r.metric))
            .map(|r| r.iface.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table as the kernel writes it (little-endian words): a default route by eth0, a /24 on
    /// eth1 twice (metrics 100 and 50), a /16 on eth2, a route that is down, a torn line.
    const TABLE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0102000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth1\t0002000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
eth3\t0002000A\t00000000\t0001\t0\t0\t50\t00FFFFFF\t0\t0\t0
eth2\t0000000A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
down0\t0003000A\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0
torn\t0004000A
";

    #[test]
    fn longest_prefix_then_lowest_metric_and_only_routes_that_are_up() {
        let t = RouteTable::parse(TABLE);
        assert_eq!(t.routes.len(), 5);
        let at = |s: &str| t.interface_for(s.parse().unwrap());
        assert_eq!(at("10.0.2.7"), Some("eth3"));
        assert_eq!(at("10.0.9.1"), Some("eth2"));
        assert_eq!(at("10.0.3.1"), Some("eth2"));
        assert_eq!(at("192.0.2.1"), Some("eth0"));
        assert_eq!(t.default_interfaces().collect::<Vec<_>>(), ["eth0"]);
    }

    #[test]
    fn an_empty_or_garbled_table_routes_nothing() {
        for text in ["", "header only\n", "h\nnot a route at all\n"] {
            let t = RouteTable::parse(text);
            assert_eq!(t.interface_for(Ipv4Addr::new(10, 0, 0, 1)), None);
            assert_eq!(t.default_interfaces().count(), 0);
        }
    }
}
