//! The live problem's assembly and the proposal's states, without daemons: the proposal is
//! checked by the grammar's checker and its frames by `vnet_grammar::route`, the simulation
//! that forwards with the daemon's own table code.

use super::problem::{assemble, Settings};
use super::proposal::propose;
use crate::vm::registry::{Driver, VmRecord};
use vnet_adapt::{Objective, Options, Solver};
use vnet_grammar::model::{Match, State, Target};
use vnet_grammar::route::{route, Step, Visit};
use vnet_grammar::Mac;
use vnet_underlay::estimate::{Link, Measurement};
use vnet_vttif::view::{Answer, PairRate};

const A: &str = "127.0.0.1";
const B: &str = "127.0.0.2";
const C: &str = "127.0.0.3";
const M1: &str = "52:54:00:d5:00:01";
const M2: &str = "52:54:00:d5:00:02";
const M9: &str = "52:54:00:d5:00:09";

fn mac(s: &str) -> Mac {
    Mac::parse(s).expect("mac")
}

/// The shape of tests/migrate.rs: VM 1 at A, VM 2 at B, each with its interface rule, a
/// rule to the other, and broadcasts.
fn base() -> State {
    let mut s = String::from("BEGIN\n");
    for h in [A, B, C] {
        s += &format!("HOST vnet AT {h} 7000 vm\n");
    }
    s += &format!("ADD\n LINK UDP {A} {A} {B}\n LINK UDP {B} {B} {C}\n LINK UDP {A} {A} {C}\n");
    for (d, me, other, peer) in [(A, M1, M2, B), (B, M2, M1, A)] {
        s += &format!(
            " FORWARD INTERFACE {d} ANY {me} vm\n FORWARD EDGE {d} ANY {other} {d} {peer}\n"
        );
        s += &format!(" FORWARD INTERFACE {d} NOT {me} ff:ff:ff:ff:ff:ff vm\n FORWARD EDGE {d} {me} ff:ff:ff:ff:ff:ff {d} {peer}\n");
    }
    s += "END\n";
    let a = vnet_grammar::analyze(&s);
    assert!(!a.has_errors(), "{:?}", a.diagnostics);
    a.state
}

fn vm(name: &str, m: &str, host: &str) -> VmRecord {
    VmRecord {
        name: name.into(),
        mac: mac(m),
        host: host.into(),
        driver: Driver::Patterns {
            control: format!("/tmp/{name}.sock").into(),
        },
        compute: 1.0,
        pinned: false,
    }
}

fn pair(src: &str, dst: &str, sd: &str, dd: Option<&str>, bytes_per_s: f64) -> PairRate {
    PairRate {
        src: mac(src),
        dst: mac(dst),
        src_daemon: sd.into(),
        dst_daemon: dd.map(Into::into),
        bytes_per_s,
        frames_per_s: bytes_per_s / 1000.0,
        intensity: 1.0,
    }
}

fn inferred(topology: Vec<PairRate>) -> Answer {
    Answer {
        window_ms: 2000,
        threshold: 0.1,
        settled: true,
        settled_for_ms: 2000,
        changes: 1,
        pairs: topology.clone(),
        topology,
        capped: false,
        dropped: 0,
    }
}

/// A–B is slow, B–C fast: VM 1 gains by moving from A to C.
fn measured() -> Measurement {
    let link = |from: &str, to: &str, bw: f64| Link {
        from: from.into(),
        to: to.into(),
        bw,
        lat: 1.0,
        loss: 0.0,
    };
    Measurement {
        links: vec![
            link(A, B, 10.0),
            link(B, A, 10.0),
            link(B, C, 100.0),
            link(C, B, 100.0),
            link(A, C, 100.0),
            link(C, A, 100.0),
        ],
    }
}

/// The interfaces (daemon, name) a frame reaches.
fn deliveries(v: &Visit, out: &mut Vec<(String, String)>) {
    for s in &v.steps {
        match s {
            Step::Deliver { interface } => out.push((v.daemon.clone(), interface.clone())),
            Step::Hop { visit, .. } => deliveries(visit, out),
            _ => {}
        }
    }
}

fn delivered(s: &State, from: &str, src: &str, dst: &str) -> Vec<(String, String)> {
    let r = route(s, from, mac(src), mac(dst));
    let mut out = Vec::new();
    deliveries(&r.entry, &mut out);
    out.sort();
    out
}

#[test]
fn the_live_problem_names_what_it_leaves_out() {
    let topology = vec![
        pair(M1, M2, A, Some(B), 1_250_000.0),
        pair(M2, M1, B, Some(A), 125_000.0),
        pair(M1, M9, A, Some(C), 250_000.0), // not registered: pinned where seen
        pair(M1, "ff:ff:ff:ff:ff:ff", A, None, 1e6), // broadcast: no demand
        pair(M2, "52:54:00:d5:00:0a", B, None, 1e6), // never seen anywhere: left out
    ];
    let mut m = measured();
    m.links.push(Link {
        from: A.into(),
        to: "10.9.9.9".into(),
        bw: 5.0,
        lat: 1.0,
        loss: 0.0,
    });
    m.links[1].loss = 1.0;
    let regs = [
        vm("vm1", M1, A),
        vm("vm2", M2, B),
        vm("far", M9, "10.1.1.1"),
    ];
    let a = assemble(
        &base(),
        &regs,
        &inferred(topology),
        &m,
        &Settings::default(),
    )
    .unwrap();
    let d = &a.document;
    assert_eq!(d["hosts"].as_array().unwrap().len(), 3);
    assert_eq!(d["hosts"][0]["compute"], 1.0);
    let vms = d["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 3, "{vms:?}");
    assert_eq!(vms[2]["name"], M9);
    assert_eq!(
        (vms[2]["host"].as_str(), vms[2]["pinned"].as_bool()),
        (Some(C), Some(true))
    );
    let demands = d["demands"].as_array().unwrap();
    assert_eq!(demands.len(), 3, "{demands:?}");
    assert_eq!(
        (demands[0]["src"].as_str(), demands[0]["bw"].as_f64()),
        (Some("vm1"), Some(10.0))
    );
    assert_eq!(d["links"].as_array().unwrap().len(), 5);
    let notes = a.notes.join("\n");
    for want in [
        "VM far is left out",
        "52:54:00:d5:00:0a is left out",
        "10.9.9.9 is left out",
        "carried nothing",
    ] {
        assert!(notes.contains(want), "{want}: {notes}");
    }
    assert_eq!(a.macs, vec![mac(M1), mac(M2), mac(M9)]);
}

fn solve_and_propose(pin_vm2: bool) -> (super::problem::Assembled, super::proposal::Proposal) {
    let topology = vec![pair(M1, M2, A, Some(B), 1e6), pair(M2, M1, B, Some(A), 1e6)];
    let mut regs = [vm("vm1", M1, A), vm("vm2", M2, B)];
    regs[1].pinned = pin_vm2;
    // One hop, the thesis's routing: otherwise A–C–B would serve as well without a move.
    let settings = Settings {
        max_hops: Some(1),
        ..Settings::default()
    };
    let a = assemble(&base(), &regs, &inferred(topology), &measured(), &settings).unwrap();
    let o = Options {
        objective: Objective::Residual,
        solver: Solver::Exact,
        ..Options::default()
    };
    let answer = vnet_adapt::solve(&a.problem, &o).unwrap();
    assert!(answer.optimal);
    let p = propose(&base(), &a, &answer);
    for (name, s) in [
        ("prepare", &p.prepare),
        ("switched", &p.switched),
        ("final", &p.state),
    ] {
        let text = s.to_program();
        let analysis = vnet_grammar::analyze(&text);
        assert!(
            !analysis.has_errors(),
            "{name}:\n{text}\n{:?}",
            analysis.diagnostics
        );
        assert_eq!(&analysis.state, s, "{name} reads back");
    }
    (a, p)
}

#[test]
fn a_moved_vm_is_followed_and_every_stage_delivers() {
    let (_, p) = solve_and_propose(true);
    assert_eq!(p.moves.len(), 1, "{:?}", p.moves);
    let mv = &p.moves[0];
    assert_eq!(
        (mv.vm.as_str(), mv.from.as_str(), mv.to.as_str()),
        ("vm1", A, C)
    );
    let at = |h: &str| vec![(h.to_string(), "vm".to_string())];
    // Before the move (prepare), VM 2's frames reach VM 1 at its old place, and also at its
    // new one (where nothing listens yet).
    assert_eq!(delivered(&p.prepare, B, M2, M1), [at(A), at(C)].concat());
    // Once moved, and before the new paths are in (prepare), VM 1's frames leave its new
    // place by the routes they took from the old one and reach VM 2.
    assert_eq!(delivered(&p.prepare, C, M1, M2), at(B));
    // After it, the switched state delivers at the new place only (relayed or direct).
    assert_eq!(delivered(&p.switched, B, M2, M1), at(C));
    assert_eq!(delivered(&p.switched, A, M2, M1), at(C), "the relay");
    assert_eq!(delivered(&p.state, B, M2, M1), at(C));
    // VM 1's frames leave its new place on the demand's path and reach VM 2.
    assert_eq!(delivered(&p.state, C, M1, M2), at(B));
    let exact = |s, d| (Match::Exact(mac(s)), Match::Exact(mac(d)));
    let hops: Vec<(String, Target)> = p
        .state
        .rules
        .iter()
        .filter(|r| (r.src, r.dst) == exact(M1, M2) || (r.src, r.dst) == exact(M2, M1))
        .map(|r| (r.daemon.to_string(), r.target.clone()))
        .collect();
    let link = |h: &str| Target::Link { peer: h.into() };
    assert_eq!(hops, vec![(B.into(), link(C)), (C.into(), link(B))]);
    // Nothing at the old place delivers or forwards VM 1's frames any more.
    let left: Vec<String> = p
        .state
        .rules_of(A)
        .filter(|r| r.dst == Match::Exact(mac(M1)))
        .map(|r| r.to_string())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // A VM that does not move keeps its place.
    assert!(p
        .state
        .rules_of(B)
        .any(|r| r.dst == Match::Exact(mac(M2))
            && r.target == Target::Interface { name: "vm".into() }));
}

/// With both VMs free the optimum may move both (one onto the other's old host): the final
/// state still delivers both ways at the new places.
#[test]
fn any_set_of_moves_ends_in_a_state_that_delivers() {
    let (a, p) = solve_and_propose(false);
    assert!(!p.moves.is_empty());
    let place = |vm: &str, home: &str| {
        p.moves
            .iter()
            .find(|m| m.vm == vm)
            .map_or(home.to_string(), |m| m.to.clone())
    };
    let (h1, h2) = (place("vm1", A), place("vm2", B));
    assert_ne!(h1, h2);
    let at = |h: &str| vec![(h.to_string(), "vm".to_string())];
    assert_eq!(
        delivered(&p.state, &h1, M1, M2),
        at(&h2),
        "{}",
        p.state.to_program()
    );
    assert_eq!(
        delivered(&p.state, &h2, M2, M1),
        at(&h1),
        "{}",
        p.state.to_program()
    );
    assert_eq!(a.problem.demands.len(), 2);
}

#[test]
fn moves_vacate_a_daemon_before_another_vm_arrives() {
    use super::proposal::{vacate_first, Move};
    let mv = |vm: &str, from: &str, to: &str| Move {
        vm: vm.into(),
        mac: mac(M1),
        from: from.into(),
        to: to.into(),
    };
    let names = |ms: &[Move]| ms.iter().map(|m| m.vm.clone()).collect::<Vec<_>>();
    // A chain in the worst order: vm1 goes where vm2 is, vm2 where vm3 is.
    let chain = vec![
        mv("vm1", "f1", "f5"),
        mv("vm2", "f5", "f6"),
        mv("vm3", "f6", "f7"),
    ];
    assert_eq!(names(&vacate_first(chain)), ["vm3", "vm2", "vm1"]);
    // Independent moves keep the solver's order.
    let apart = vec![mv("a", "h1", "h2"), mv("b", "h3", "h4")];
    assert_eq!(names(&vacate_first(apart)), ["a", "b"]);
    // A swap plus one that waits on it: the cycle breaks at its first move, and the move
    // into the swap's daemon still comes after that daemon is left.
    let swap = vec![
        mv("x", "h9", "h1"),
        mv("s1", "h1", "h2"),
        mv("s2", "h2", "h1"),
    ];
    let order = names(&vacate_first(swap));
    assert_eq!(order.len(), 3);
    let at = |n: &str| order.iter().position(|o| o == n).expect("every move");
    assert!(at("s1") < at("x"), "{order:?}");
}
