//! `vnetc fmt FILE… [--check]`: the canonical layout, through the same formatter the LSP uses.

use crate::render::{self, FileDiagnostics};
use crate::source::Source;
use crate::{Failure, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// Files to format in place; `-` reads standard input and writes standard output.
    #[arg(required = true)]
    files: Vec<String>,
    /// Change nothing; exit 1 if any file would change.
    #[arg(long)]
    check: bool,
}

pub fn run(args: Args, color: bool) -> Outcome {
    let mut failed = false;
    for path in &args.files {
        let source = Source::read(path).map_err(Failure::Usage)?;
        // Formatting would silently turn the bad bytes into U+FFFD: refuse instead.
        let formatted = match source.invalid_utf8 {
            Some(offset) => Err(vec![vnet_grammar::invalid_utf8(offset)]),
            None => vnet_grammar::format(&source.text),
        };
        let formatted = match formatted {
            Ok(formatted) => formatted,
            Err(diagnostics) => {
                // Like rustfmt: a file that does not parse is reported, never rewritten.
                let files = [FileDiagnostics {
                    source: &source,
                    diagnostics: &diagnostics,
                }];
                render::write_human(&mut std::io::stderr().lock(), &files, color)?;
                failed = true;
                continue;
            }
        };
        let changed = formatted != source.text;
        if args.check {
            if changed {
                println!("{}: would reformat", source.name);
                failed = true;
            }
        } else if path == "-" {
            super::write_output(None, formatted.as_bytes())?;
        } else if changed {
            write_atomically(path, &formatted)?;
        }
    }
    if failed {
        Err(Failure::Subject)
    } else {
        Ok(())
    }
}

/// Writes beside the file and renames over it, so an interrupted run never leaves half a file.
fn write_atomically(path: &str, text: &str) -> Outcome {
    let target = std::path::Path::new(path);
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.vnetc-fmt.{}", std::process::id()));
    std::fs::write(&temp, text).map_err(|e| Failure::Usage(format!("{}: {e}", temp.display())))?;
    if let Ok(meta) = std::fs::metadata(target) {
        let _ = std::fs::set_permissions(&temp, meta.permissions());
    }
    std::fs::rename(&temp, target).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        Failure::Usage(format!("{path}: {e}"))
    })
}
