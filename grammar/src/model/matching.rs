//! Matching one MAC field, and the priority of a rule (SPEC 2.4).

use crate::mac::Mac;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One field of a rule: what MAC addresses it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "mac", rename_all = "lowercase")]
pub enum Match {
    /// `NONE`: the default rule's destination; matches any destination at the lowest score.
    None,
    /// `ANY`: every address.
    Any,
    /// `NOT mac`: every address but this one.
    Not(Mac),
    /// `mac`: this address.
    Exact(Mac),
}

impl Match {
    /// Exact 2, `NOT` 1, `ANY` 0, `NONE` −1.
    pub fn score(self) -> i8 {
        match self {
            Match::Exact(_) => 2,
            Match::Not(_) => 1,
            Match::Any => 0,
            Match::None => -1,
        }
    }

    pub fn matches(self, mac: Mac) -> bool {
        match self {
            Match::Exact(m) => m == mac,
            Match::Not(m) => m != mac,
            Match::Any | Match::None => true,
        }
    }

    /// Whether some address matches both fields.
    pub fn overlaps(self, other: Match) -> bool {
        match (self, other) {
            (Match::Exact(a), Match::Exact(b)) => a == b,
            (Match::Exact(a), Match::Not(b)) | (Match::Not(b), Match::Exact(a)) => a != b,
            _ => true,
        }
    }

    /// The address the field names, if any.
    pub fn mac(self) -> Option<Mac> {
        match self {
            Match::Exact(m) | Match::Not(m) => Some(m),
            Match::Any | Match::None => None,
        }
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Exact(m) => write!(f, "{m}"),
            Match::Not(m) => write!(f, "NOT {m}"),
            Match::Any => f.write_str("ANY"),
            Match::None => f.write_str("NONE"),
        }
    }
}

/// A rule's priority for a frame it matches: destination score first, then source score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority {
    pub dst: i8,
    pub src: i8,
}

impl Priority {
    pub fn of(src: Match, dst: Match) -> Priority {
        Priority {
            dst: dst.score(),
            src: src.score(),
        }
    }
}
