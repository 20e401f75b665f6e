//! What the live commands (up, down, show, diff, plan, apply, route --live) share: loading a
//! sound file, the key, and reporting daemons that failed.

use super::{load, require_clean};
use crate::live::DaemonError;
use crate::source::Source;
use crate::Failure;
use vnet_grammar::Analysis;

/// Reads a file that must be free of errors (its warnings go to stderr).
pub fn load_clean(path: &str, color: bool) -> Result<(Source, Analysis), Failure> {
    let (source, analysis) = load(path)?;
    require_clean(&source, &analysis, color)?;
    Ok((source, analysis))
}

/// Prints one line per daemon problem and fails with exit status 1.
pub fn daemons_failed(errors: &[DaemonError], consequence: &str) -> Failure {
    for e in errors {
        eprintln!("error: {e}");
    }
    if !consequence.is_empty() {
        eprintln!("{consequence}");
    }
    Failure::Subject
}

/// Prints drift notes as warnings.
pub fn warn_drift(drift: &[String]) {
    for d in drift {
        eprintln!("warning: drift: {d}");
    }
}

pub fn usage(message: impl Into<String>) -> Failure {
    Failure::Usage(message.into())
}

/// Reads the live state of `hosts` (for `route --live`), failing with the daemons' errors.
pub fn fetch_live(
    hosts: &[vnet_grammar::model::HostDef],
    control: &crate::live::config::ControlArgs,
) -> Result<crate::live::fetch::Live, Failure> {
    let key = control.load_key().map_err(usage)?;
    let (_, live) = crate::live::fetch::fetch(hosts, &key, control.connect_timeout)
        .map_err(|e| daemons_failed(&e, "error: cannot read the live tables"))?;
    warn_drift(&live.drift);
    Ok(live)
}
