//! What a demo run found, and how it is told: the workload's throughput before and after the
//! adaptation (from the ranks' own samples), and SPEC 5.4's summary. The inputs are the JSON
//! the other commands print (Patterns' report, SPEC 5.1's inference, SPEC 5.3's answer), read
//! into the few fields the story needs. Pure.

use serde::{Deserialize, Serialize};

/// One throughput sample of a Patterns rank (`samples` of its JSON report).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The end of the interval, in seconds since the rank's first superstep.
    pub t: f64,
    pub supersteps: u64,
    pub supersteps_per_second: f64,
}

/// The part of a Patterns rank's JSON report the demo reads.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RankReport {
    pub rank: usize,
    pub program: String,
    /// The program without its length (what each superstep does).
    pub work: String,
    /// When the first superstep started, in seconds since the Unix epoch.
    pub started_unix: f64,
    pub supersteps: u64,
    pub seconds: f64,
    pub samples: Vec<Sample>,
}

/// A point of the throughput curve, on the demo's clock (seconds since the workload began).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    pub t: f64,
    pub supersteps_per_second: f64,
}

impl RankReport {
    /// The width of the report's sample intervals.
    fn width(&self) -> f64 {
        match self.samples.as_slice() {
            [first, second, ..] => second.t - first.t,
            [only] => only.t,
            [] => 0.0,
        }
    }

    /// Supersteps per second over the samples that lie wholly within `[from, to]` (Unix
    /// seconds); `None` when no sample does.
    pub fn rate_between(&self, from: f64, to: f64) -> Option<f64> {
        let width = self.width();
        let (mut steps, mut span) = (0u64, 0.0);
        for s in &self.samples {
            let (start, end) = (self.started_unix + s.t - width, self.started_unix + s.t);
            if start >= from - 1e-6 && end <= to + 1e-6 {
                steps += s.supersteps;
                span += width;
            }
        }
        (span > 0.0).then(|| steps as f64 / span)
    }

    /// The throughput curve, each point at the end of its sample, `zero` (Unix seconds) the
    /// curve's origin.
    pub fn curve(&self, zero: f64) -> Vec<Point> {
        self.samples
            .iter()
            .map(|s| Point {
                t: self.started_unix + s.t - zero,
                supersteps_per_second: s.supersteps_per_second,
            })
            .collect()
    }
}

/// A pair of SPEC 5.1's `vnetc infer --format json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferredPair {
    pub src: String,
    pub dst: String,
    pub src_daemon: String,
    pub dst_daemon: Option<String>,
    pub bytes_per_s: f64,
    pub intensity: f64,
}

/// SPEC 5.1's answer, the fields the demo reads.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Inferred {
    pub topology: Vec<InferredPair>,
}

/// A migration of SPEC 5.3's answer; `downtime_ms` with `--vms` (SPEC 5.4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    pub vm: String,
    pub from: Option<String>,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<f64>,
}

/// A migration `vnetc adapt --apply` carried out (its `moved` list).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Moved {
    pub vm: String,
    pub from: String,
    pub to: String,
    /// The guest's pause as its driver reports it (QEMU does; a user-space VM cannot tell).
    pub downtime_ms: Option<f64>,
    /// The migration's wall-clock time.
    pub wall_ms: f64,
}

/// An overlay link of SPEC 5.3's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub from: String,
    pub to: String,
}

/// SPEC 5.3's answer (`vnetc adapt --format json`), the fields the demo reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adapted {
    pub objective: String,
    pub value: Option<f64>,
    pub before: Option<f64>,
    pub migrations: Vec<Migration>,
    pub links: Vec<Link>,
    /// What `--apply` moved.
    #[serde(default)]
    pub moved: Vec<Moved>,
    /// Why the problem looks as it does (links left out, VMs kept in place).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The fields SPEC 5.4 names in the summary's JSON.
pub const SPEC_FIELDS: [&str; 7] = [
    "workload",
    "before",
    "after",
    "speedup",
    "topology",
    "migrations",
    "picture",
];

/// SPEC 5.4's summary (`vnetc demo --format json`), plus what the pictures and the story use.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// The Patterns program, as Patterns describes it.
    pub workload: String,
    /// Supersteps per second before the adaptation.
    pub before: f64,
    /// Supersteps per second after it (`None` when the run stopped before).
    pub after: Option<f64>,
    /// `after / before`.
    pub speedup: Option<f64>,
    /// The topology VTTIF inferred, with the scenario's VM and host names.
    pub topology: Vec<InferredPair>,
    pub migrations: Vec<Migration>,
    /// The inferred topology's SVG.
    pub picture: Option<String>,
    /// The throughput-over-time SVG.
    pub throughput_picture: Option<String>,
    /// VADAPT's answer: objective, its value before and after, the links it added.
    pub adaptation: Option<Adapted>,
    /// Seconds each stage took, in order.
    pub stages: Vec<(String, f64)>,
    /// Rank 0's throughput over time, seconds since the workload began.
    pub samples: Vec<Point>,
    /// When the adaptation began and ended on the samples' clock.
    pub adapted_at: Option<(f64, f64)>,
    /// Why the run stopped short, when it did.
    pub error: Option<String>,
}

impl Summary {
    pub fn new(workload: String, before: f64) -> Summary {
        Summary {
            workload,
            before,
            after: None,
            speedup: None,
            topology: Vec::new(),
            migrations: Vec::new(),
            picture: None,
            throughput_picture: None,
            adaptation: None,
            stages: Vec::new(),
            samples: Vec::new(),
            adapted_at: None,
            error: None,
        }
    }

    pub fn set_after(&mut self, after: f64) {
        self.after = Some(after);
        self.speedup = (self.before > 0.0).then(|| after / self.before);
    }

    /// The story for people.
    pub fn story(&self) -> String {
        let mut out = format!("workload: {}\n", self.workload);
        out += &format!("before:   {:.1} supersteps/s\n", self.before);
        if !self.topology.is_empty() {
            out += &format!(
                "VTTIF inferred {} communicating pairs:\n",
                self.topology.len()
            );
            for p in self.topology.iter().take(12) {
                out += &format!(
                    "  {} -> {}  {:.0} KB/s (intensity {:.2})\n",
                    p.src,
                    p.dst,
                    p.bytes_per_s / 1e3,
                    p.intensity
                );
            }
            if self.topology.len() > 12 {
                out += &format!("  … and {} more\n", self.topology.len() - 12);
            }
        }
        if let Some(a) = &self.adaptation {
            out += &self.adaptation_story(a);
        }
        if let Some(after) = self.after {
            out += &format!("after:    {after:.1} supersteps/s\n");
        }
        match self.speedup {
            Some(speedup) => out += &format!("speedup:  {speedup:.2}x\n"),
            // Too slow a start (QEMU guests on a busy machine) to compare with.
            None if self.after.is_some() => {
                out += "speedup:  none: no superstep completed before the adaptation\n"
            }
            None => {}
        }
        if !self.stages.is_empty() {
            let t: Vec<String> = self
                .stages
                .iter()
                .map(|(s, secs)| format!("{s} {secs:.2} s"))
                .collect();
            out += &format!("stages:   {}\n", t.join(", "));
        }
        for (what, p) in [
            ("topology", &self.picture),
            ("throughput", &self.throughput_picture),
        ] {
            if let Some(p) = p {
                out += &format!("picture:  {what} {p}\n");
            }
        }
        out
    }

    fn adaptation_story(&self, a: &Adapted) -> String {
        let num = |x: Option<f64>| x.map_or("unbounded".to_string(), |v| format!("{v:.1}"));
        let mut out = format!(
            "VADAPT ({} objective): {} before, {} after; ",
            a.objective,
            num(a.before),
            num(a.value)
        );
        if self.migrations.is_empty() {
            out += "no migration";
        } else {
            let m: Vec<String> = self
                .migrations
                .iter()
                .map(|m| {
                    let down = m
                        .downtime_ms
                        .map_or(String::new(), |d| format!(" ({d:.0} ms down)"));
                    format!(
                        "{} {}->{}{down}",
                        m.vm,
                        m.from.as_deref().unwrap_or("?"),
                        m.to
                    )
                })
                .collect();
            out += &format!("migrated {}", m.join(", "));
        }
        out += &format!("; {} overlay links on the demands' paths\n", a.links.len());
        if !a.moved.is_empty() {
            let ms: Vec<String> = a
                .moved
                .iter()
                .map(|m| format!("{} {:.0} ms", m.vm, m.wall_ms))
                .collect();
            out += &format!("          migrations took {}\n", ms.join(", "));
        }
        for n in a.notes.iter().take(5) {
            out += &format!("          note: {n}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(samples: &[u64]) -> RankReport {
        RankReport {
            rank: 0,
            program: "p, 2 s".into(),
            work: "p".into(),
            started_unix: 1000.0,
            supersteps: samples.iter().sum(),
            seconds: samples.len() as f64 * 0.5,
            samples: samples
                .iter()
                .enumerate()
                .map(|(i, &n)| Sample {
                    t: 0.5 * (i + 1) as f64,
                    supersteps: n,
                    supersteps_per_second: n as f64 * 2.0,
                })
                .collect(),
        }
    }

    #[test]
    fn rates_count_only_whole_samples_within_the_window() {
        let r = report(&[5, 5, 5, 5, 1, 1, 10, 10, 10, 10]);
        // Before: the first two seconds (samples ending at 0.5 .. 2.0).
        assert_eq!(r.rate_between(1000.0, 1002.0), Some(10.0));
        // After: from 3.0 s on; the samples during the adaptation (2.0 .. 3.0) are left out.
        assert_eq!(r.rate_between(1003.0, 1005.0), Some(20.0));
        // A window shorter than a sample holds none.
        assert_eq!(r.rate_between(1000.1, 1000.4), None);
        let c = r.curve(999.0);
        assert_eq!(c[0].t, 1.5);
        assert_eq!(c[6].supersteps_per_second, 20.0);
    }

    #[test]
    fn the_summary_has_spec_fields_and_the_speedup_is_their_ratio() {
        let mut s = Summary::new("all-to-all".into(), 10.0);
        s.set_after(25.0);
        let v = serde_json::to_value(&s).expect("json");
        for field in SPEC_FIELDS {
            assert!(v.get(field).is_some(), "{field}");
        }
        assert_eq!(v["speedup"], 2.5);
        assert!(s.story().contains("speedup:  2.50x"));
        let mut stalled = Summary::new("all-to-all".into(), 0.0);
        stalled.set_after(3.0);
        assert_eq!(stalled.speedup, None);
        let story = stalled.story();
        assert!(story.contains("after:    3.0 supersteps/s"), "{story}");
        assert!(story.contains("speedup:  none"), "{story}");
    }

    #[test]
    fn spec_answers_parse() {
        let infer = r#"{"proxy":"p","window_ms":2000,"threshold":0.1,"settled":true,"settled_for_ms":3000,
            "pairs":[],"topology":[{"src":"52:54:00:00:00:01","dst":"52:54:00:00:00:02","src_daemon":"a",
            "dst_daemon":null,"bytes_per_s":1000.0,"frames_per_s":1.0,"intensity":1.0}]}"#;
        let i: Inferred = serde_json::from_str(infer).expect("infer");
        assert_eq!(i.topology[0].dst_daemon, None);
        let adapt = r#"{"objective":"residual","solver":"search","value":12.5,"before":3.0,"optimal":false,
            "bound":null,"mapping":{"vm1":"h2"},"migrations":[{"vm":"vm1","from":"h1","to":"h2"}],
            "paths":[],"links":[{"from":"h1","to":"h2"}],"notes":["n"],
            "moved":[{"vm":"vm1","from":"h1","to":"h2","downtime_ms":null,"wall_ms":12}]}"#;
        let a: Adapted = serde_json::from_str(adapt).expect("adapt");
        assert_eq!(a.migrations[0].to, "h2");
        assert_eq!(a.links.len(), 1);
        assert_eq!(a.moved[0].wall_ms, 12.0);
        assert_eq!(a.moved[0].downtime_ms, None);
    }
}
