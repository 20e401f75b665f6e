//! `vnetc adapt --problem P.json`: VADAPT offline (SPEC 5.3). The problem, the check and the
//! solvers are `vnet_adapt`'s; this reads the file, maps the options and prints the answer.
//! The live form `vnetc adapt FILE` (the problem built from VTTIF and `vnetc measure`) waits
//! for VTTIF and is not here yet.

use crate::live::config::parse_duration;
use crate::{Failure, Outcome};
use clap::ValueEnum;
use vnet_adapt::{Error, Objective, Options, Problem, Solver};

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
    /// The problem as JSON (SPEC 5.3; `-` for standard input).
    #[arg(long, value_name = "P.json")]
    pub problem: String,
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Residual)]
    pub objective: ObjectiveArg,
    /// greedy: the thesis's heuristic; search: tabu search from it; exact: branch and bound.
    #[arg(long, value_enum, default_value_t = SolverArg::Search)]
    pub solver: SolverArg,
    /// When search stops, and when exact gives up with its best bound (`500ms`, `2s`).
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
    pub time_limit: std::time::Duration,
    /// Move at most N VMs.
    #[arg(long, value_name = "N")]
    pub max_migrations: Option<usize>,
    /// Move nothing unless the objective improves by at least this fraction of `before`.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub min_gain: f64,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: Args, _color: bool) -> Outcome {
    let text = if args.problem == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&args.problem)
            .map_err(|e| Failure::Usage(format!("{}: {e}", args.problem)))?
    };
    if !args.min_gain.is_finite() || args.min_gain < 0.0 {
        return Err(Failure::Usage(format!(
            "--min-gain {}: must be a number >= 0",
            args.min_gain
        )));
    }
    let problem =
        Problem::from_json(&text).map_err(|e| Failure::Usage(format!("{}: {e}", args.problem)))?;
    let options = Options {
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
    };
    let answer = match vnet_adapt::solve(&problem, &options) {
        Ok(answer) => answer,
        Err(e @ Error::Infeasible(_)) => {
            eprintln!("error: {}: {e}", args.problem);
            return Err(Failure::Subject);
        }
        Err(e) => return Err(Failure::Usage(format!("{}: {e}", args.problem))),
    };
    let out = match args.format {
        Format::Text => vnet_adapt::answer::to_text(&problem, &answer),
        Format::Json => {
            let json = vnet_adapt::answer::to_json(&problem, &answer);
            let mut text =
                serde_json::to_string_pretty(&json).map_err(|e| Failure::Usage(e.to_string()))?;
            text.push('\n');
            text
        }
    };
    super::write_output(None, out.as_bytes())
}
