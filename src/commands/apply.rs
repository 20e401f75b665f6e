//! `vnetc apply FILE|PLAN`: make the live daemons equal to FILE (or run a saved plan, or with
//! `--patch` fold FILE onto the live state). Leases every daemon first, plans against what it
//! then reads, runs the plan concurrently across daemons, and reports exactly what was done.

use super::live::{daemons_failed, usage};
use super::plan::Desired;
use super::up::{start_all, StartArgs};
use crate::live::apply::{self, Outcome as StepOutcome, Report};
use crate::live::config::{parse_duration, ControlArgs};
use crate::live::fetch::{self, Session};
use crate::live::lease;
use crate::live::plan::{Fingerprint, Plan, Step};
use crate::source::Source;
use crate::{Failure, Outcome};
use std::time::Duration;
use vnet_grammar::model::LinkDef;

#[derive(clap::Args)]
pub struct Args {
    /// The desired state (`.vnet`), or a plan saved by `vnetc plan -o`.
    pub file: String,
    /// Fold FILE's blocks onto the live state (the thesis's incremental meaning) instead of
    /// taking FILE as the whole desired state.
    #[arg(long)]
    pub patch: bool,
    /// Start the daemons that are not running first (as `vnetc up`).
    #[arg(long)]
    pub up: bool,
    /// After the changes, wait until every link of the desired state is up at both ends.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub wait_timeout: Duration,
    /// How long to keep trying when another client holds a daemon's lease (0: give up after a
    /// brief retry, naming the holder).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// The leases' time to live: a vnetc that hangs holds the daemons at most this long
    /// (renewed while the apply runs).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    #[command(flatten)]
    pub control: ControlArgs,
    #[command(flatten)]
    pub start: StartArgs,
}

pub fn run(args: Args, color: bool) -> Outcome {
    let source = Source::read(&args.file).map_err(Failure::Usage)?;
    let saved = match Plan::parse(&source.text) {
        Some(Ok(plan)) => Some(plan),
        Some(Err(e)) => return Err(usage(format!("{}: {e}", args.file))),
        None => None,
    };
    if saved.is_some() && args.patch {
        return Err(usage(format!(
            "{} is a saved plan; --patch takes a .vnet patch",
            args.file
        )));
    }
    let (desired, hosts) = match &saved {
        Some(plan) => (None, plan.hosts.clone()),
        None => {
            let (d, h) = Desired::load(&args.file, args.patch, color)?;
            (Some(d), h)
        }
    };
    if args.up {
        start_all(&hosts, &args.control, &args.start, true)?;
    }
    let key = args.control.load_key().map_err(usage)?;
    let timeout = args.control.connect_timeout;
    let mut sessions = fetch::connect_all(&hosts, &key, timeout).map_err(|e| {
        daemons_failed(
            &e,
            if args.up {
                "error: nothing was changed"
            } else {
                "error: nothing was changed (`vnetc apply --up` starts daemons that are not running)"
            },
        )
    })?;
    let holder = lease::holder("vnetc apply");
    lease::acquire_all(&mut sessions, &holder, args.lease_ttl, args.lock_timeout, timeout).map_err(|e| {
        daemons_failed(
            &e,
            "error: another apply holds these daemons; nothing was changed (wait, or pass --lock-timeout)",
        )
    })?;
    let result = leased(&args, &mut sessions, saved, desired, &holder, color);
    // Waiting for links needs no lease: let other applies in as soon as the changes are made.
    lease::release_all(&mut sessions);
    let links = result?;
    if args.wait {
        if let Err(down) = apply::wait_links_up(&mut sessions, &links, args.wait_timeout) {
            for d in &down {
                eprintln!("error: link {d}");
            }
            eprintln!(
                "error: {} link end(s) still down after {:?}",
                down.len(),
                args.wait_timeout
            );
            return Err(Failure::Subject);
        }
        println!(
            "All {} link{} up.",
            links.len(),
            if links.len() == 1 { " is" } else { "s are" }
        );
    }
    Ok(())
}

/// Everything that happens while the leases are held. Returns the desired links (for
/// `--wait`).
fn leased(
    args: &Args,
    sessions: &mut [Session],
    saved: Option<Plan>,
    desired: Option<Desired>,
    holder: &str,
    color: bool,
) -> Result<Vec<LinkDef>, Failure> {
    let snapshots = fetch::snapshot_all(sessions, args.control.connect_timeout, true)
        .map_err(|e| daemons_failed(&e, "error: nothing was changed"))?;
    let hosts: Vec<_> = sessions.iter().map(|s| s.host.clone()).collect();
    let live = fetch::assemble(&hosts, snapshots);
    super::live::warn_drift(&live.drift);
    let plan = match (saved, desired) {
        (Some(plan), _) => {
            let stale = plan.fingerprint.changes_since(&Fingerprint::of(&live));
            if !stale.is_empty() {
                for why in &stale {
                    eprintln!("error: {why}");
                }
                eprintln!(
                    "error: the plan {} is stale: the live state changed since it was made; nothing was changed (make a new plan)",
                    args.file
                );
                return Err(Failure::Subject);
            }
            plan
        }
        (None, Some(desired)) => {
            let state = desired.resolve(&live, color)?;
            Plan::make(&args.file, args.patch, &state, &live)
        }
        (None, None) => return Err(usage("nothing to apply")),
    };
    run_plan(sessions, &plan, holder, args.lease_ttl, |s| println!("{s}"))?;
    tell_proxy(sessions, args.control.connect_timeout, |s| println!("{s}"))?;
    Ok(plan.desired.links.values().cloned().collect())
}

/// Runs a plan over the leased sessions and reports it (what was done on `say`, or precisely
/// what was not on stderr).
fn run_plan(
    sessions: &mut [Session],
    plan: &Plan,
    holder: &str,
    ttl: Duration,
    say: fn(&str),
) -> Result<(), Failure> {
    if plan.steps.is_empty() {
        say(&format!(
            "No changes: the live daemons already match {}.",
            plan.source
        ));
    } else {
        let report = apply::execute(
            sessions,
            &plan.steps,
            &plan.fingerprint.daemons,
            &apply::Options {
                holder: holder.to_string(),
                ttl,
                progress: true,
            },
        );
        if !report.succeeded() {
            let again = if plan.patch {
                format!("--patch {}", plan.source)
            } else {
                plan.source.clone()
            };
            print_failure(&plan.steps, &report, &again);
            return Err(Failure::Subject);
        }
        say(&format!(
            "Apply complete: {} in {} ms ({} change request{}).",
            plan.summary.counts(["added", "changed", "removed"]),
            report.elapsed.as_millis(),
            report.batches.values().sum::<usize>(),
            if report.batches.values().sum::<usize>() == 1 {
                ""
            } else {
                "s"
            }
        ));
    }
    Ok(())
}

/// Makes the daemons of `sessions` equal to `state` (named `name` in messages), as `vnetc
/// apply FILE --wait` does: leases, plans against what it then reads, runs the plan, releases,
/// then waits for the state's links. For commands that apply states they computed (`vnetc
/// adapt --apply`).
pub fn apply_state(
    sessions: &mut [Session],
    name: &str,
    state: &vnet_grammar::model::State,
    control: &ControlArgs,
    wait: Duration,
) -> Result<(), Failure> {
    let timeout = control.connect_timeout;
    let ttl = Duration::from_secs(30);
    let holder = lease::holder("vnetc adapt");
    lease::acquire_all(sessions, &holder, ttl, Duration::from_secs(5), timeout).map_err(|e| {
        daemons_failed(
            &e,
            "error: another apply holds these daemons; nothing was changed",
        )
    })?;
    let result = fetch::snapshot_all(sessions, timeout, true)
        .map_err(|e| daemons_failed(&e, "error: nothing was changed"))
        .and_then(|snapshots| {
            let hosts: Vec<_> = sessions.iter().map(|s| s.host.clone()).collect();
            let live = fetch::assemble(&hosts, snapshots);
            let plan = Plan::make(name, false, state, &live);
            run_plan(sessions, &plan, &holder, ttl, |s| eprintln!("{s}"))
        });
    lease::release_all(sessions);
    result?;
    tell_proxy(sessions, timeout, |s| eprintln!("{s}"))?;
    let links: Vec<LinkDef> = state.links.values().cloned().collect();
    apply::wait_links_up(sessions, &links, wait).map_err(|down| {
        for d in &down {
            eprintln!("error: link {d}");
        }
        Failure::Subject
    })
}

/// Tells every daemon who the Proxy is (SPEC 5.1); says so only when that changed something.
fn tell_proxy(sessions: &mut [Session], timeout: Duration, say: fn(&str)) -> Result<(), Failure> {
    let changed = crate::live::infer::tell_proxy(sessions, timeout).map_err(|e| {
        daemons_failed(
            &e,
            "error: the tables were applied, but these daemons do not know the Proxy (run the apply again)",
        )
    })?;
    if changed > 0 {
        let proxy = &sessions[0].host.machine;
        say(&format!(
            "VTTIF: {changed} daemon{} now report{} to the Proxy {proxy}.",
            if changed == 1 { "" } else { "s" },
            if changed == 1 { "s" } else { "" }
        ));
    }
    Ok(())
}

/// The precise account of a failed apply: per daemon, what was applied and what was not.
fn print_failure(steps: &[Step], report: &Report, file: &str) {
    let done = report
        .outcomes
        .iter()
        .filter(|o| **o == StepOutcome::Done)
        .count();
    eprintln!(
        "error: apply failed: {done} of {} operations applied",
        steps.len()
    );
    let mut daemons: Vec<&str> = Vec::new();
    for s in steps {
        if !daemons.contains(&s.daemon.as_str()) {
            daemons.push(&s.daemon);
        }
    }
    for daemon in daemons {
        let mine: Vec<&Step> = steps.iter().filter(|s| s.daemon == daemon).collect();
        let applied = mine
            .iter()
            .filter(|s| report.outcomes[s.id] == StepOutcome::Done)
            .count();
        let clean = applied == mine.len();
        eprintln!(
            "  daemon {daemon}: {applied} of {} applied{}",
            mine.len(),
            if clean { "" } else { ", the rest NOT applied:" }
        );
        if clean {
            continue;
        }
        for s in mine {
            let line = format!("{} {}", s.op.sign(), s.op.text());
            match &report.outcomes[s.id] {
                StepOutcome::Done => eprintln!("      applied      {line}"),
                StepOutcome::Failed(why) => {
                    eprintln!("      FAILED       {line}\n                   {why}")
                }
                StepOutcome::Unknown(why) => {
                    eprintln!("      UNKNOWN      {line}\n                   {why}")
                }
                StepOutcome::Skipped(why) => {
                    eprintln!("      not applied  {line}\n                   ({why})")
                }
                StepOutcome::Pending => eprintln!("      not applied  {line}"),
            }
        }
    }
    eprintln!(
        "No rule was left pointing at a removed link. Once the failed daemons are back, run `vnetc apply {file}` again: it converges."
    );
}
