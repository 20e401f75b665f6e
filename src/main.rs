//! `vnetc`: the VNET compiler and control tool. A thin shell over the `vnet_grammar` library
//! (and, for live commands, the `vnet_proto` client): it reads files, renders, and sets the
//! exit status (SPEC 3: 0 success, 1 the subject is wrong, 2 usage or I/O error).

mod commands;
mod demo;
mod live;
mod render;
mod source;
// The VM manager of `vnetc adapt --apply` and `vnetc demo --vms`; tests/migrate.rs and
// tests/adapt_live.rs include it by path and use parts of it (a VM's consoles, the
// registry's updates) that vnetc itself does not.
#[allow(dead_code, unused_imports)]
mod vm;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "vnetc",
    version,
    about = "Check, format, draw and route VNET overlay descriptions (.vnet files)"
)]
struct Cli {
    /// When to colour human output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DataFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Report the diagnostics of .vnet files.
    Check(commands::check::Args),
    /// Rewrite .vnet files in the canonical layout (in place; `-` filters stdin to stdout).
    Fmt(commands::fmt::Args),
    /// Print the desired state a file denotes, as one canonical program.
    State(commands::state::Args),
    /// Draw the topology (links between daemons) as Graphviz dot or SVG.
    Graph(commands::graph::Args),
    /// Show the hop-by-hop path(s) of a frame entering at a daemon's interface.
    Route(commands::route::Args),
    /// Start the daemons of the HOST lines (locally, or over ssh) and wait until they answer.
    Up(commands::up::Args),
    /// Stop the daemons of the HOST lines.
    Down(commands::down::Args),
    /// Print the live state of the daemons a file declares, as a .vnet program.
    Show(commands::show::Args),
    /// List the static link keys of the HOST lines' daemons (which `apply` pins).
    Keys(commands::keys::Args),
    /// Print the difference from the live daemons to a file, as a patch.
    Diff(commands::diff::Args),
    /// Show (and save) the ordered operations that take the live daemons to a file.
    Plan(commands::plan::Args),
    /// Make the live daemons match a file, a patch or a saved plan.
    Apply(commands::apply::Args),
    /// Print the application topology VTTIF inferred at the Proxy (as .vnet or JSON).
    Infer(commands::infer::Args),
    /// Measure latency, loss and bandwidth between the daemons of a file (SPEC 5.2).
    Measure(commands::measure::Args),
    /// Propose a placement of VMs, overlay links and routes for an adaptation problem (VADAPT).
    Adapt(commands::adapt::Args),
    /// Run the whole adaptive loop on this computer, without root: daemons in the resilient
    /// star over an emulated wide area, Patterns in user-space VMs, measure, infer, adapt.
    Demo(commands::demo::Args),
}

/// How a command ended, mapped onto SPEC 3's exit codes.
#[derive(Debug)]
pub enum Failure {
    /// The command's subject is wrong: errors found, a daemon unreachable, apply failed (1).
    Subject,
    /// Usage or I/O error, with its message (2).
    Usage(String),
    /// Exit with this status, everything already said (`diff --detailed-exitcode`'s 2).
    Code(u8),
}

pub type Outcome = Result<(), Failure>;

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::Usage(error.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => render::stdout_color(),
    };
    let outcome = match cli.command {
        Command::Check(args) => commands::check::run(args, color),
        Command::Fmt(args) => commands::fmt::run(args, color),
        Command::State(args) => commands::state::run(args, color),
        Command::Graph(args) => commands::graph::run(args, color),
        Command::Route(args) => commands::route::run(args, color),
        Command::Up(args) => commands::up::run(args, color),
        Command::Down(args) => commands::down::run(args, color),
        Command::Show(args) => commands::show::run(args, color),
        Command::Keys(args) => commands::keys::run(args, color),
        Command::Diff(args) => commands::diff::run(args, color),
        Command::Plan(args) => commands::plan::run(args, color),
        Command::Apply(args) => commands::apply::run(args, color),
        Command::Infer(args) => commands::infer::run(args, color),
        Command::Adapt(args) => commands::adapt::run(args, color),
        Command::Demo(args) => commands::demo::run(args, color),
        Command::Measure(args) => commands::measure::run(args, color),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Subject) => ExitCode::from(1),
        Err(Failure::Code(code)) => ExitCode::from(code),
        Err(Failure::Usage(message)) => {
            // A closed pipe (`vnetc state f | head`) is not worth a message.
            if !message.contains("Broken pipe") {
                eprintln!("error: {message}");
            }
            ExitCode::from(2)
        }
    }
}
