//! `vnetc adapt --problem P.json`: VADAPT offline, and `vnetc adapt FILE`: on the running
//! system (SPEC 5.3). The problem, the check and the solvers are `vnet_adapt`'s, the live
//! problem and proposal `live::adapt`'s; this reads the inputs, maps the options, carries out
//! `--apply` in its order and prints.

use super::apply::apply_state;
use super::live::{daemons_failed, load_clean, usage};
use crate::live::adapt::problem::{self, Assembled, Settings};
use crate::live::adapt::proposal::{self, Proposal};
use crate::live::config::{parse_duration, ControlArgs};
use crate::live::fetch;
use crate::vm::registry::{can_migrate, Moved, Registry, VmRecord};
use crate::{Failure, Outcome};
use clap::ValueEnum;
use serde_json::json;
use std::time::Duration;
use vnet_adapt::{Answer, Error, Objective, Options, Problem, Solver};
use vnet_grammar::model::State;
use vnet_underlay::estimate::Measurement;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ObjectiveArg {
    Residual,
    Tight,
    Cost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SolverArg {
    Greedy,
    Search,
    Exact,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// Adapt the running system of this `.vnet` file (its HOST lines are the hosts).
    #[arg(required_unless_present = "problem", conflicts_with = "problem")]
    pub file: Option<String>,
    /// Solve this problem (SPEC 5.3's JSON; `-` for standard input) offline instead.
    #[arg(long, value_name = "P.json")]
    pub problem: Option<String>,
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Residual)]
    pub objective: ObjectiveArg,
    /// greedy: the thesis's heuristic; search: tabu search from it; exact: branch and bound.
    #[arg(long, value_enum, default_value_t = SolverArg::Search)]
    pub solver: SolverArg,
    /// When search stops, and when exact gives up with its best bound (`500ms`, `2s`).
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
    pub time_limit: Duration,
    /// Move at most N VMs.
    #[arg(long, value_name = "N")]
    pub max_migrations: Option<usize>,
    /// Move nothing unless the objective improves by at least this fraction of `before`.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub min_gain: f64,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// FILE: VTTIF's answer saved from `vnetc infer FILE --format json` [default: ask the
    /// Proxy now, with --window and --threshold].
    #[arg(long, value_name = "ANSWER.json", requires = "file")]
    pub infer: Option<String>,
    /// FILE: VTTIF's smoothing window when asking the Proxy (50ms to 60s).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub window: Duration,
    /// FILE: VTTIF's detection threshold when asking the Proxy (0 to 1).
    #[arg(long, value_name = "F", default_value_t = 0.1)]
    pub threshold: f64,
    /// FILE: the underlay measurement saved from `vnetc measure FILE --format json` [default:
    /// measure now, as `vnetc measure FILE` does, every ordered pair for --probe-duration].
    #[arg(long, value_name = "MEASUREMENT.json", requires = "file")]
    pub measure: Option<String>,
    /// FILE: how long each directed probe runs when measuring now.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration)]
    pub probe_duration: Duration,
    /// FILE: each host's compute capacity in VMs [default: the most registered VMs any host
    /// runs now, at least 1].
    #[arg(long, value_name = "N", requires = "file")]
    pub vms_per_host: Option<f64>,
    /// FILE: route each demand over at most N links.
    #[arg(long, value_name = "N", requires = "file")]
    pub max_hops: Option<usize>,
    /// FILE: also write the assembled problem here (SPEC 5.3's JSON, for `--problem`).
    #[arg(long, value_name = "P.json", requires = "file")]
    pub save_problem: Option<String>,
    /// FILE: carry the proposal out: migrations first (make before break), then the new state.
    #[arg(long, requires = "file")]
    pub apply: bool,
    /// FILE --apply: how long each migration and each wait for links may take.
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    pub step_timeout: Duration,
    #[command(flatten)]
    pub control: ControlArgs,
}

pub fn run(args: Args, color: bool) -> Outcome {
    if !args.min_gain.is_finite() || args.min_gain < 0.0 {
        return Err(Failure::Usage(format!(
            "--min-gain {}: must be a number >= 0",
            args.min_gain
        )));
    }
    let options = options(&args);
    match (&args.problem, &args.file) {
        (Some(path), _) => offline(&args, path, &options),
        (None, Some(file)) => live(&args, file, &options, color),
        (None, None) => Err(usage("give FILE or --problem P.json")),
    }
}

fn options(args: &Args) -> Options {
    Options {
        objective: match args.objective {
            ObjectiveArg::Residual => Objective::Residual,
            ObjectiveArg::Tight => Objective::Tight,
            ObjectiveArg::Cost => Objective::Cost,
        },
        solver: match args.solver {
            SolverArg::Greedy => Solver::Greedy,
            SolverArg::Search => Solver::Search,
            SolverArg::Exact => Solver::Exact,
        },
        time_limit: args.time_limit,
        max_migrations: args.max_migrations,
        min_gain: args.min_gain,
        ..Options::default()
    }
}

fn offline(args: &Args, path: &str, options: &Options) -> Outcome {
    let text = if path == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("{path}: {e}")))?
    };
    let problem = Problem::from_json(&text).map_err(|e| Failure::Usage(format!("{path}: {e}")))?;
    let answer = solve(&problem, options, path)?;
    let out = match args.format {
        Format::Text => vnet_adapt::answer::to_text(&problem, &answer),
        Format::Json => pretty(&vnet_adapt::answer::to_json(&problem, &answer))?,
    };
    super::write_output(None, out.as_bytes())
}

fn solve(problem: &Problem, options: &Options, name: &str) -> Result<Answer, Failure> {
    match vnet_adapt::solve(problem, options) {
        Ok(answer) => Ok(answer),
        Err(e @ Error::Infeasible(_)) => {
            eprintln!("error: {name}: {e}");
            Err(Failure::Subject)
        }
        Err(e) => Err(Failure::Usage(format!("{name}: {e}"))),
    }
}

fn pretty(v: &serde_json::Value) -> Result<String, Failure> {
    let mut text = serde_json::to_string_pretty(v).map_err(|e| Failure::Usage(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// A saved answer of another command, read as its type.
fn read_json<T: serde::de::DeserializeOwned>(path: &str, flag: &str) -> Result<T, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| usage(format!("{path}: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| usage(format!("{flag} {path}: {}: {}", e.path(), e.inner())))
}

/// VTTIF's answer now, from the Proxy of FILE (`live::infer`, as `vnetc infer`).
fn ask_proxy(args: &Args, state: &State) -> Result<vnet_vttif::Answer, Failure> {
    crate::live::infer::check_query(args.window, args.threshold).map_err(usage)?;
    let key = args.control.load_key().map_err(usage)?;
    let timeout = args.control.connect_timeout;
    crate::live::infer::query(&state.hosts, &key, timeout, args.window, args.threshold)
        .map(|inferred| inferred.answer)
        .map_err(|e| daemons_failed(&[e], "error: cannot adapt without VTTIF's answer"))
}

/// The underlay now, probed between FILE's daemons (`live::measure`, as `vnetc measure`).
fn measure_now(args: &Args, state: &State) -> Result<Measurement, Failure> {
    let key = args.control.load_key().map_err(usage)?;
    let opts = crate::live::measure::Options {
        pairs: crate::live::measure::Pairs::All,
        duration: args.probe_duration,
        connect_timeout: args.control.connect_timeout,
    };
    let outcome = crate::live::measure::run(state, &key, &opts)
        .map_err(|e| daemons_failed(&e, "error: cannot adapt without the underlay measurement"))?;
    for pair in &outcome.unmeasured {
        eprintln!("warning: not measured: {pair}");
    }
    Ok(outcome.measurement)
}

fn live(args: &Args, file: &str, options: &Options, color: bool) -> Outcome {
    let (_, analysis) = load_clean(file, color)?;
    let state = analysis.state;
    let registry = Registry::open(&args.control.state_dir());
    let vms = registry.list().map_err(|e| usage(e.to_string()))?;
    let inferred = match &args.infer {
        Some(path) => read_json(path, "--infer")?,
        None => ask_proxy(args, &state)?,
    };
    let measured = match &args.measure {
        Some(path) => read_json(path, "--measure")?,
        None => measure_now(args, &state)?,
    };
    let settings = Settings {
        vms_per_host: args.vms_per_host,
        max_hops: args.max_hops,
        pinned: Vec::new(),
    };
    let inputs = |settings: &Settings| {
        problem::assemble(&state, &vms, &inferred, &measured, settings)
            .map_err(|e| usage(format!("{file}: the live problem: {e}")))
    };
    let mut assembled = inputs(&settings)?;
    let mut answer = solve(&assembled.problem, options, file)?;
    // A VM that should move but that no driver here can move is reported and stays.
    let stuck = stuck(&assembled, &answer, &vms);
    if !stuck.is_empty() {
        let mut settings = settings.clone();
        settings.pinned = stuck.iter().map(|(vm, _)| vm.clone()).collect();
        assembled = inputs(&settings)?;
        assembled
            .notes
            .extend(stuck.into_iter().map(|(_, note)| note));
        answer = solve(&assembled.problem, options, file)?;
    }
    if let Some(path) = &args.save_problem {
        super::write_output(Some(path), pretty(&assembled.document)?.as_bytes())?;
    }
    let prop = proposal::propose(&state, &assembled, &answer);
    let moved = if args.apply {
        carry(args, &state, &prop, &registry)?
    } else {
        Vec::new()
    };
    let out = match args.format {
        Format::Text => text(file, &assembled, &answer, &prop, &moved),
        Format::Json => {
            let mut v = vnet_adapt::answer::to_json(&assembled.problem, &answer);
            v["notes"] = json!(assembled.notes);
            v["vnet"] = json!(prop.state.to_program());
            if args.apply {
                v["moved"] = moved
                    .iter()
                    .map(|m| {
                        json!({"vm": m.vm, "from": m.from,
                    "to": m.to, "downtime_ms": m.downtime_ms, "wall_ms": m.wall_ms})
                    })
                    .collect();
            }
            pretty(&v)?
        }
    };
    super::write_output(None, out.as_bytes())
}

/// The answer's migrations whose VM no driver here can move, with a note for the operator.
fn stuck(a: &Assembled, answer: &Answer, vms: &[VmRecord]) -> Vec<(String, String)> {
    let p = &a.problem;
    vnet_adapt::answer::migrations(p, answer)
        .into_iter()
        .filter_map(|(v, from, to)| {
            let vm = vms.iter().find(|r| r.name == p.vms[v].name)?;
            if can_migrate(&vm.driver) {
                return None;
            }
            let from = from.map_or("(nowhere)", |h| p.hosts[h].name.as_str());
            Some((
                vm.name.clone(),
                format!(
                    "VM {} would gain by moving {from} -> {}, but its driver `{}` cannot be driven from here: move it, then run vnetc adapt again (kept in place meanwhile)",
                    vm.name, p.hosts[to].name, vm.driver.kind()
                ),
            ))
        })
        .collect()
}

fn text(file: &str, a: &Assembled, answer: &Answer, prop: &Proposal, moved: &[Moved]) -> String {
    let mut out = format!("# VADAPT proposal for {file}\n");
    let summary = vnet_adapt::answer::to_text(&a.problem, answer);
    let notes = a.notes.iter().map(|n| format!("note: {n}"));
    let done = moved.iter().map(|m| {
        let downtime = m
            .downtime_ms
            .map_or(String::new(), |d| format!(", downtime {d:.1} ms"));
        format!(
            "moved {} {} -> {} in {} ms{downtime}",
            m.vm, m.from, m.to, m.wall_ms
        )
    });
    for line in summary.lines().map(String::from).chain(notes).chain(done) {
        out.push_str(&format!("# {line}\n"));
    }
    out.push_str(&prop.state.to_program());
    out
}

/// `--apply`: the new places and relays, the migrations, then the new state with the relays,
/// then without (see `live::adapt::proposal`). Progress goes to stderr.
fn carry(
    args: &Args,
    state: &State,
    prop: &Proposal,
    reg: &Registry,
) -> Result<Vec<Moved>, Failure> {
    let key = args.control.load_key().map_err(usage)?;
    let mut sessions = fetch::connect_all(&state.hosts, &key, args.control.connect_timeout)
        .map_err(|e| daemons_failed(&e, "error: nothing was changed"))?;
    let wait = args.step_timeout;
    let mut moved = Vec::new();
    if !prop.moves.is_empty() {
        apply_state(
            &mut sessions,
            "the VMs' new places",
            &prop.prepare,
            &args.control,
            wait,
        )?;
        for m in &prop.moves {
            match crate::live::adapt::migrate(&mut sessions, reg, m, wait) {
                Ok(done) => {
                    eprintln!("Moved VM {} {} -> {}.", m.vm, m.from, m.to);
                    moved.push(done);
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    eprintln!(
                        "error: VM {} runs on behind {}; the daemons hold the new places beside the old (harmless); `vnetc apply` of your file removes them",
                        m.vm, m.from
                    );
                    return Err(Failure::Subject);
                }
            }
        }
        apply_state(
            &mut sessions,
            "the repointed rules",
            &prop.switched,
            &args.control,
            wait,
        )?;
    }
    apply_state(
        &mut sessions,
        "the adapted state",
        &prop.state,
        &args.control,
        wait,
    )?;
    Ok(moved)
}
