//! Where the daemon of a HOST line is: the address vnetc connects to, the address its peers
//! dial (`MACHINE:PORT`, resolved where the dialing daemon runs), and whether it runs on this
//! computer (SPEC 4: an address in 127.0.0.0/8 or assigned to a local interface).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use vnet_grammar::model::HostDef;

/// The address other daemons are told to dial for `host` (a link's `peer_addr`).
pub fn peer_addr(host: &HostDef) -> String {
    format!("{}:{}", host.machine, host.port)
}

/// Resolves a HOST line's machine and port, preferring IPv4 (what `--listen` is given).
pub fn resolve(host: &HostDef) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = (host.machine.as_str(), host.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{}`: {e}", host.machine))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("`{}` resolves to no address", host.machine))
}

/// Is `ip` this computer: loopback, or assigned to one of its interfaces?
pub fn is_local(ip: IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return false;
    };
    addrs.into_iter().any(|ifa| {
        ifa.address.is_some_and(|a| {
            a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())) == Some(ip)
                || a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())) == Some(ip)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local_and_documentation_addresses_are_not() {
        assert!(is_local("127.0.0.1".parse().unwrap()));
        assert!(is_local("127.44.3.2".parse().unwrap()));
        assert!(!is_local("192.0.2.77".parse().unwrap()));
    }

    #[test]
    fn resolution_of_literal_addresses() {
        let host = HostDef {
            user: "u".into(),
            machine: "127.0.0.9".into(),
            port: 7001,
            iface: "vm".into(),
        };
        assert_eq!(resolve(&host).unwrap(), "127.0.0.9:7001".parse().unwrap());
        assert_eq!(peer_addr(&host), "127.0.0.9:7001");
    }
}
