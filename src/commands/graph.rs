//! `vnetc graph FILE`: the overlay as a picture. The dot text is ours; SVG is laid out and
//! drawn in-process by layout-rs, so no Graphviz install is needed.

use super::{load, require_clean, write_output};
use crate::{Failure, Outcome};
use std::fmt::Write as _;
use vnet_grammar::model::{Match, State, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Dot,
    Svg,
}

#[derive(clap::Args)]
pub struct Args {
    /// The program (`-` for standard input).
    file: String,
    /// Output format; by default taken from the extension of `-o`, else dot.
    #[arg(long, value_enum)]
    format: Option<GraphFormat>,
    /// Write here instead of standard output.
    #[arg(short, long, value_name = "OUT")]
    output: Option<String>,
}

pub fn run(args: Args, color: bool) -> Outcome {
    let (source, analysis) = load(&args.file)?;
    require_clean(&source, &analysis, color)?;
    let format = args.format.unwrap_or(match &args.output {
        Some(out) if out.ends_with(".svg") => GraphFormat::Svg,
        _ => GraphFormat::Dot,
    });
    let dot = to_dot(&analysis.state);
    let bytes = match format {
        GraphFormat::Dot => dot.into_bytes(),
        GraphFormat::Svg => to_svg(&dot).map_err(Failure::Usage)?.into_bytes(),
    };
    write_output(args.output.as_deref(), &bytes)
}

/// Daemons are nodes (the Proxy, the first HOST, drawn doubled), links are edges from the
/// dialer (UDP dashed); each node lists its interface, rule count and the MACs it delivers.
pub fn to_dot(state: &State) -> String {
    let mut dot = String::from("digraph vnet {\n    rankdir=LR;\n    node [shape=box];\n");
    for (i, host) in state.hosts.iter().enumerate() {
        let rules = state.rules_of(&host.machine).count();
        let mut label = format!(
            "{}\\n{}:{} {}",
            host.machine, host.machine, host.port, host.iface
        );
        if i == 0 {
            label.push_str("\\n(Proxy)");
        }
        let _ = write!(
            label,
            "\\n{rules} rule{}",
            if rules == 1 { "" } else { "s" }
        );
        let delivered: Vec<String> = state
            .rules_of(&host.machine)
            .filter(|r| matches!(r.target, Target::Interface { .. }))
            .filter_map(|r| match r.dst {
                Match::Exact(mac) if !mac.is_group() => Some(mac.to_string()),
                _ => None,
            })
            .collect();
        for mac in delivered.iter().take(4) {
            let _ = write!(label, "\\n{mac}");
        }
        if delivered.len() > 4 {
            let _ = write!(label, "\\n+{} more", delivered.len() - 4);
        }
        let shape = if i == 0 { "doubleoctagon" } else { "box" };
        let _ = writeln!(
            dot,
            "    {} [label=\"{}\", shape={shape}];",
            quote(&host.machine),
            label
        );
    }
    for link in state.links.values() {
        let peer = if link.dialer == link.a {
            &link.b
        } else {
            &link.a
        };
        let style = match link.transport {
            vnet_grammar::ast::Transport::Tcp => "solid",
            vnet_grammar::ast::Transport::Udp => "dashed",
        };
        let _ = writeln!(
            dot,
            "    {} -> {} [label=\"{}\", style={style}];",
            quote(&link.dialer),
            quote(peer),
            link.transport.keyword()
        );
    }
    dot.push_str("}\n");
    dot
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Lays out and draws dot text as SVG. The layout crate may panic on shapes it does not
/// expect; that becomes an error rather than a crash.
pub fn to_svg(dot: &str) -> Result<String, String> {
    let dot = dot.to_string();
    std::panic::catch_unwind(move || {
        let mut parser = layout::gv::DotParser::new(&dot);
        let graph = parser
            .process()
            .map_err(|e| format!("cannot lay out the graph: {e}"))?;
        let mut builder = layout::gv::GraphBuilder::new();
        builder.visit_graph(&graph);
        let mut visual = builder.get();
        let mut svg = layout::backends::svg::SVGWriter::new();
        visual.do_it(false, false, false, &mut svg);
        Ok(svg.finalize())
    })
    .unwrap_or_else(|_| {
        Err("the SVG layout failed on this graph; use --format dot and Graphviz".to_string())
    })
}
