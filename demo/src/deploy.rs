//! Where a scenario runs on this computer: an address for each host's daemon, its `dgram`
//! interface, and each user-space VM's address, MAC and card; plus the `.vnet` program of the
//! resilient star and each daemon's emulated wide area. Pure: choosing a free block of
//! loopback addresses is the caller's (it needs sockets).

use crate::scenario::{Checked, Placement};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use vnet_grammar::Mac;
use vnet_underlay::shaper::Shape;

/// The interface name every daemon serves its VMs on.
pub const IFACE: &str = "vms";

/// The port every VM's Patterns rank listens on (inside the overlay, on its own address).
pub const RANK_PORT: u16 = 7000;

/// One host's daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Daemon {
    /// The scenario's name for the host (`f1`).
    pub host: String,
    /// Its HOST machine, which is also the daemon's name: a loopback address.
    pub machine: String,
    /// Where its `dgram` interface receives the VMs' frames.
    pub dgram: SocketAddr,
}

/// One user-space VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vm {
    pub name: String,
    pub mac: Mac,
    /// Its address inside the overlay, where its rank listens.
    pub rank_addr: SocketAddr,
    /// Where its card receives frames (on this computer); it stays when the VM moves.
    pub card: SocketAddr,
    /// The host it starts on.
    pub host: String,
}

/// A scenario laid out on the loopback block `127.A.B.0/24` with the daemons on `port`.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub checked: Checked,
    pub port: u16,
    /// In `Checked::hosts` order: the Proxy first.
    pub daemons: Vec<Daemon>,
    pub vms: Vec<Vm>,
}

impl Deployment {
    /// Host `i` (in `Checked::hosts` order) gets `127.A.B.(i+1)`: its daemon listens on
    /// `port`, its `dgram` interface on `port + 1`, and the VMs starting there have their
    /// cards on `port + 2 + n`, n the VM's index. `block` is `[A, B]`.
    pub fn new(checked: &Checked, block: [u8; 2], port: u16) -> Result<Deployment, String> {
        let hosts = checked.hosts();
        let vms = &checked.scenario.vms;
        if hosts.len() > 254 || vms.len() > 250 {
            return Err(format!(
                "{} hosts and {} VMs: at most 254 hosts and 250 VMs fit one loopback block",
                hosts.len(),
                vms.len()
            ));
        }
        if port.checked_add(2 + vms.len() as u16).is_none() {
            return Err(format!("port {port} leaves no room for the VMs' cards"));
        }
        let ip = |i: usize| Ipv4Addr::new(127, block[0], block[1], i as u8 + 1);
        let daemons: Vec<Daemon> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| Daemon {
                host: h.to_string(),
                machine: ip(i).to_string(),
                dgram: SocketAddrV4::new(ip(i), port + 1).into(),
            })
            .collect();
        let macs = checked.macs();
        let vms = vms
            .iter()
            .enumerate()
            .map(|(n, vm)| {
                let at = hosts.iter().position(|h| *h == vm.host).unwrap_or(0);
                Vm {
                    name: vm.name.clone(),
                    mac: macs[n],
                    // 10.77.x.y, distinct for up to 250 VMs.
                    rank_addr: SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, n as u8 + 1), RANK_PORT)
                        .into(),
                    card: SocketAddrV4::new(ip(at), port + 2 + n as u16).into(),
                    host: vm.host.clone(),
                }
            })
            .collect();
        Ok(Deployment {
            checked: checked.clone(),
            port,
            daemons,
            vms,
        })
    }

    /// The daemon of a scenario host.
    pub fn daemon(&self, host: &str) -> Option<&Daemon> {
        self.daemons.iter().find(|d| d.host == host)
    }

    /// The scenario host whose daemon is `machine` (names in the overlay are machines).
    pub fn host_of(&self, machine: &str) -> Option<&str> {
        self.daemons
            .iter()
            .find(|d| d.machine == machine)
            .map(|d| d.host.as_str())
    }

    /// The VM with this MAC.
    pub fn vm_of(&self, mac: Mac) -> Option<&Vm> {
        self.vms.iter().find(|v| v.mac == mac)
    }

    fn machine(&self, host: &str) -> String {
        self.daemon(host)
            .map_or_else(|| host.to_string(), |d| d.machine.clone())
    }

    /// The `vnetd --iface` kind of a daemon's interface: its `dgram` address, and the card
    /// of the VM that starts there as its first peer. A VM that only listens (rank 0 waits
    /// for the others to dial) sends nothing the interface could learn it from.
    pub fn dgram_kind(&self, daemon: &Daemon) -> String {
        match self.vms.iter().find(|v| v.host == daemon.host) {
            Some(vm) => format!("dgram:{},{}", daemon.dgram, vm.card),
            None => format!("dgram:{}", daemon.dgram),
        }
    }

    /// The resilient star for a placement, as a `.vnet` program.
    pub fn star(&self, placement: &Placement) -> String {
        self.checked
            .star(placement, &|h| self.machine(h), self.port, IFACE)
            .to_program()
    }

    /// What the daemon of `host` emulates towards every other daemon, by daemon name.
    pub fn underlay(&self, host: &str) -> BTreeMap<String, Shape> {
        self.daemons
            .iter()
            .filter(|d| d.host != host)
            .filter_map(|d| Some((d.machine.clone(), self.checked.shape(host, &d.host)?)))
            .collect()
    }

    /// Every rank's address, in rank order (Patterns' `--peers`).
    pub fn peers(&self) -> Vec<String> {
        self.vms.iter().map(|v| v.rank_addr.to_string()).collect()
    }

    /// The scenario's Patterns program for a run of `seconds`, as `vnet-patterns` flags
    /// (the same for every rank, user-space or QEMU VM).
    pub fn program_args(&self, seconds: f64) -> Vec<String> {
        let w = &self.checked.scenario.workload;
        [
            "--topology",
            &w.topology,
            "--operation",
            &w.operation,
            "--message-size",
            &w.message_size.to_string(),
            "--compute-ratio",
            &w.compute_ratio.to_string(),
            "--duration",
            &seconds.to_string(),
            "--sample-interval",
            "0.5",
            "--format",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The `vnet-patterns vm` arguments of VM `n`, running for `seconds`; `control` is its
    /// control socket (the migration handle).
    pub fn patterns_args(&self, n: usize, seconds: f64, control: &str) -> Vec<String> {
        let vm = &self.vms[n];
        let dgram = self.daemon(&vm.host).map_or(vm.card, |d| d.dgram);
        let mut args: Vec<String> = [
            "vm",
            "--rank",
            &n.to_string(),
            "--peers",
            &self.peers().join(","),
            "--udp-local",
            &vm.card.to_string(),
            "--udp-remote",
            &dgram.to_string(),
            "--mac",
            &vm.mac.to_string(),
            "--control",
            control,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.program_args(seconds));
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scenario;

    const EXAMPLE: &str = include_str!("../../examples/wide-area.toml");

    #[test]
    fn addresses_are_distinct_and_the_star_checks() {
        let s = Scenario::parse(EXAMPLE).expect("example");
        let d = Deployment::new(&s, [66, 1], 7100).expect("layout");
        assert_eq!(d.daemons[0].host, "proxy");
        assert_eq!(d.daemons[0].machine, "127.66.1.1");
        let mut cards: Vec<SocketAddr> = d.vms.iter().map(|v| v.card).collect();
        cards.extend(d.daemons.iter().map(|d| d.dgram));
        let n = cards.len();
        cards.sort();
        cards.dedup();
        assert_eq!(cards.len(), n, "every UDP address is used once");
        let text = d.star(&s.start());
        let analysis = vnet_grammar::analyze(&text);
        assert!(!analysis.has_errors(), "{text}");
        // Each VM's card is on the host it starts on.
        let vm8 = &d.vms[7];
        assert_eq!(vm8.host, "cmu");
        assert_eq!(d.host_of(&vm8.card.ip().to_string()), Some("cmu"));
        let cmu = d.daemon("cmu").expect("cmu");
        assert_eq!(
            d.dgram_kind(cmu),
            format!("dgram:{},{}", cmu.dgram, vm8.card)
        );
        let f8 = d.daemon("f8").expect("f8");
        assert_eq!(d.dgram_kind(f8), format!("dgram:{}", f8.dgram));
    }

    #[test]
    fn the_underlay_follows_the_sites() {
        let s = Scenario::parse(EXAMPLE).expect("example");
        let d = Deployment::new(&s, [66, 1], 7100).expect("layout");
        let f1 = d.underlay("f1");
        assert_eq!(f1.len(), d.daemons.len() - 1, "every other daemon");
        let f2 = &d.daemon("f2").expect("f2").machine;
        let proxy = &d.daemon("proxy").expect("proxy").machine;
        assert_eq!(f1[f2].delay_ms, 0.1);
        assert_eq!(f1[proxy].delay_ms, 8.0);
        assert_eq!(f1[proxy].rate_mbps, Some(50.0));
        assert!(!f1.contains_key(&d.daemon("f1").expect("f1").machine));
    }

    #[test]
    fn patterns_arguments_name_the_vm() {
        let s = Scenario::parse(EXAMPLE).expect("example");
        let d = Deployment::new(&s, [66, 1], 7100).expect("layout");
        let args = d.patterns_args(4, 12.0, "/tmp/x.sock");
        let at = |flag: &str| {
            let i = args.iter().position(|a| a == flag).expect(flag);
            args[i + 1].clone()
        };
        assert_eq!(at("--rank"), "4");
        assert_eq!(at("--mac"), "52:54:00:00:00:05");
        assert_eq!(
            at("--udp-remote"),
            d.daemon("s1").expect("s1").dgram.to_string()
        );
        assert_eq!(at("--peers").split(',').count(), 8);
        assert_eq!(at("--duration"), "12");
    }

    #[test]
    fn too_many_vms_for_the_ports_is_an_error() {
        let s = Scenario::parse(EXAMPLE).expect("example");
        assert!(Deployment::new(&s, [66, 1], 65530).is_err());
    }
}
