//! `vnet-lsp`: the VNET language server, speaking LSP on standard input and output.

use std::process::ExitCode;

const USAGE: &str = "\
vnet-lsp — the VNET language server (LSP over standard input and output)

Usage: vnet-lsp [--stdio]

Editors start it and talk to it; it is not meant to be run by hand.
Options:
  --stdio      use standard input and output (the default and only transport)
  -V, --version
  -h, --help";

fn main() -> ExitCode {
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--stdio" => {}
            "-V" | "--version" => {
                println!("vnet-lsp {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("vnet-lsp: unknown argument `{other}`\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("vnet-lsp: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(vnet_lsp::transport::serve(
        tokio::io::stdin(),
        tokio::io::stdout(),
    ));
    // The blocking thread reading stdin may still wait for input no one sends; leave now.
    std::process::exit(code)
}
