//! What every live command needs besides the file: the control key, vnetc's state directory
//! (SPEC 4) and how long to wait for a daemon.

use std::path::PathBuf;
use std::time::Duration;
use vnet_proto::Key;

#[derive(clap::Args, Clone, Debug)]
pub struct ControlArgs {
    /// The control key file [default: $VNET_KEY_FILE, else $XDG_CONFIG_HOME/vnet/control.key].
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Where vnetc keeps pid files, logs and local daemons' tables [default:
    /// $XDG_STATE_HOME/vnet].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How long to wait for each daemon to accept and authenticate a control connection
    /// (e.g. 500ms, 3s).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

impl ControlArgs {
    /// The key file's path: the flag, else `$VNET_KEY_FILE`, else the XDG default.
    pub fn key_path(&self) -> Result<PathBuf, String> {
        self.key_file
            .clone()
            .or_else(Key::default_path)
            .ok_or_else(|| {
                "no key file: pass --key-file, or set VNET_KEY_FILE, XDG_CONFIG_HOME or HOME"
                    .to_string()
            })
    }

    /// Loads the key; a missing file says how to make one.
    pub fn load_key(&self) -> Result<Key, String> {
        let path = self.key_path()?;
        Key::load(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "no control key at {} (`vnetc up` creates one; or pass --key-file)",
                    path.display()
                )
            } else {
                e.to_string()
            }
        })
    }

    /// `--state-dir`, else `$XDG_STATE_HOME/vnet`, else `~/.local/state/vnet`.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("vnet")
    }
}

/// `250ms`, `3s`, `2m`, or a bare number of seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 500ms, 3s, 2m)"))?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use ms, s, m or h)"
            ))
        }
    };
    if !value.is_finite() || value < 0.0 || value * scale > 1e9 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
