//! Running a plan: one thread per daemon, each sending its ready steps as one atomic,
//! conditional `change` (compare-and-set on the generation it last saw), waiting for the
//! steps of other daemons it depends on. A daemon that fails stops its own remaining work;
//! steps elsewhere that wait for it are skipped; everything else goes on. The report says
//! step by step what was applied, what was not, and why.

use super::fetch::Session;
use super::lease;
use super::plan::{Step, Version};
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use vnet_proto::{ClientError, Expect};

/// What became of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Done,
    /// The daemon refused the batch holding it; being atomic, nothing of it was applied.
    Failed(String),
    /// The connection broke with the batch in flight: it may or may not have been applied.
    Unknown(String),
    /// Not sent: its daemon failed earlier, or a step it waits for was not applied.
    Skipped(String),
}

impl Outcome {
    fn settled_badly(&self) -> bool {
        matches!(
            self,
            Outcome::Failed(_) | Outcome::Unknown(_) | Outcome::Skipped(_)
        )
    }
}

pub struct Options {
    /// Renews each daemon's lease as `holder` while waiting longer than a third of `ttl`.
    pub holder: String,
    pub ttl: Duration,
    /// Draw a progress bar on stderr (only on a terminal).
    pub progress: bool,
}

pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// `change` calls sent, per daemon.
    pub batches: BTreeMap<String, usize>,
    pub elapsed: Duration,
}

impl Report {
    pub fn succeeded(&self) -> bool {
        self.outcomes.iter().all(|o| *o == Outcome::Done)
    }
}

struct Shared {
    outcomes: Vec<Outcome>,
}

enum Action {
    Send(Vec<usize>),
    Renew,
    Finished,
}

/// Executes `steps` over the sessions (which hold their daemons' leases), starting from the
/// versions the plan was made against.
pub fn execute(
    sessions: &mut [Session],
    steps: &[Step],
    versions: &BTreeMap<String, Version>,
    options: &Options,
) -> Report {
    let started = Instant::now();
    let shared = Mutex::new(Shared {
        outcomes: vec![Outcome::Pending; steps.len()],
    });
    let wake = Condvar::new();
    let bar = progress_bar(steps.len() as u64, options.progress);
    let batches: Vec<(String, usize)> = super::parallel(sessions, |session| {
        let me = session.host.machine.to_string();
        let mine: Vec<usize> = steps
            .iter()
            .filter(|s| s.daemon == me)
            .map(|s| s.id)
            .collect();
        let mut sent = 0;
        // A daemon with nothing to do still keeps its lease renewed until the whole plan is
        // settled: the apply holds every daemon it read until it is done with all of them.
        let mut expect = versions.get(&me).map(|v| Expect {
            instance: v.instance.clone(),
            generation: v.generation,
        });
        loop {
            let action = next_action(&shared, &wake, steps, &mine, options.ttl / 3);
            match action {
                Action::Finished => return (me, sent),
                Action::Renew => {
                    // A failed renewal shows up as a failed send next; nothing else to do.
                    let _ = lease::renew(session, &options.holder, options.ttl);
                }
                Action::Send(batch) => {
                    let changes = batch.iter().map(|&i| steps[i].op.change()).collect();
                    let result = session.client.change(changes, expect.clone());
                    sent += 1;
                    let mut st = shared.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(changed) => {
                            for &i in &batch {
                                st.outcomes[i] = Outcome::Done;
                            }
                            bar.inc(batch.len() as u64);
                            expect = Some(Expect {
                                instance: changed.instance,
                                generation: changed.generation,
                            });
                        }
                        Err(e) => {
                            let (outcome, why) = match &e {
                                ClientError::Daemon(body) => (
                                    Outcome::Failed(format!("refused ({:?}): {}", body.code, body.message)),
                                    format!("daemon {me} refused an earlier batch"),
                                ),
                                ClientError::Io(io) => (
                                    Outcome::Unknown(format!(
                                        "the connection broke with this batch in flight ({}); it may or may not have been applied",
                                        broken(io)
                                    )),
                                    format!("daemon {me} stopped answering"),
                                ),
                                ClientError::Protocol(m) => (
                                    Outcome::Unknown(format!("garbled answer ({m}); it may or may not have been applied")),
                                    format!("daemon {me} answered garbage"),
                                ),
                            };
                            for &i in &batch {
                                st.outcomes[i] = outcome.clone();
                            }
                            for &i in &mine {
                                if st.outcomes[i] == Outcome::Pending {
                                    st.outcomes[i] = Outcome::Skipped(why.clone());
                                }
                            }
                        }
                    }
                    wake.notify_all();
                }
            }
        }
    });
    bar.finish_and_clear();
    let outcomes = shared
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .outcomes;
    Report {
        outcomes,
        batches: batches.into_iter().filter(|(_, n)| *n > 0).collect(),
        elapsed: started.elapsed(),
    }
}

/// Under the lock: skip what can no longer run, and take every step of this daemon whose
/// dependencies are all done; wait for other daemons when there is none yet.
fn next_action(
    shared: &Mutex<Shared>,
    wake: &Condvar,
    steps: &[Step],
    mine: &[usize],
    renew_every: Duration,
) -> Action {
    let mut st = shared.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let mut skipped_any = false;
        for &i in mine {
            if st.outcomes[i] != Outcome::Pending {
                continue;
            }
            if let Some(&dep) = steps[i]
                .after
                .iter()
                .find(|&&a| st.outcomes[a].settled_badly())
            {
                st.outcomes[i] = Outcome::Skipped(format!(
                    "it waits for `{} {}` on daemon {}, which was not applied",
                    steps[dep].op.sign(),
                    steps[dep].op.text(),
                    steps[dep].daemon
                ));
                skipped_any = true;
            }
        }
        if skipped_any {
            wake.notify_all();
        }
        // A step is ready when what it waits for is done, or is an earlier step of this same
        // batch: the daemon applies a batch atomically and in order, so a link and the rules
        // over it go together (the steps of one daemon are numbered in dependency order).
        let mut ready: Vec<usize> = Vec::new();
        for &i in mine {
            if st.outcomes[i] == Outcome::Pending
                && steps[i]
                    .after
                    .iter()
                    .all(|&a| st.outcomes[a] == Outcome::Done || ready.contains(&a))
            {
                ready.push(i);
            }
        }
        if !ready.is_empty() {
            return Action::Send(ready);
        }
        if st.outcomes.iter().all(|o| *o != Outcome::Pending) {
            return Action::Finished;
        }
        let (guard, waited) = wake
            .wait_timeout(st, renew_every.max(Duration::from_millis(50)))
            .unwrap_or_else(|e| e.into_inner());
        st = guard;
        if waited.timed_out() {
            return Action::Renew;
        }
    }
}

/// A broken connection, in words.
fn broken(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => "the daemon closed the connection".into(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            "the daemon did not answer in time".into()
        }
        _ => e.to_string(),
    }
}

fn progress_bar(total: u64, wanted: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !wanted || total == 0 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{bar:30}] {pos}/{len} operations {elapsed}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Waits until every link of `links` is up at both ends (`apply --wait`). Returns the links
/// still down at the deadline, as `a–b (down at x)`.
pub fn wait_links_up(
    sessions: &mut [Session],
    links: &[vnet_grammar::model::LinkDef],
    timeout: Duration,
) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let states = super::parallel(sessions, |s| {
            let me = s.host.machine.clone();
            (me, s.client.list_links().map_err(|e| e.to_string()))
        });
        let mut down = Vec::new();
        for def in links {
            for end in [&def.a, &def.b] {
                let up = states
                    .iter()
                    .find(|(me, _)| me == end)
                    .is_some_and(|(_, r)| {
                        r.as_ref().is_ok_and(|ls| {
                            ls.iter().any(|l| l.spec.link.key() == def.key() && l.up)
                        })
                    });
                if !up {
                    down.push(format!("{} (down at {end})", def));
                }
            }
        }
        if down.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(down);
        }
        // Links come up in milliseconds on a LAN; poll often so `--wait` adds little.
        std::thread::sleep(Duration::from_millis(5));
    }
}
