//! `ktplay test`: each checked `test` item on its own fresh simulator, on a virtual clock.
//!
//! Every test gets a new single-threaded runtime whose clock starts paused: whenever the run,
//! the simulator and the guards all wait, tokio moves the clock to the next timer at once. So
//! every duration — `pause`, a canary's `for`, `within`, timeouts, progress deadlines, lease
//! renewals, back-off — takes its full length in simulated time and nearly none in wall time;
//! nothing is shortened. (Rhai hooks run on blocking threads, during which the clock does not
//! move; their own deadline is wall time.)
//!
//! Simulated time is bounded per test ([`Limits::time`], `ktplay test --time-limit`): a run
//! still going past it fails the test, saying where it was. A signal (Ctrl-C, SIGTERM, SIGHUP)
//! during `ktplay test` ([`Interrupt::watch_signals`]) ends the test that runs, which fails,
//! and the suite: the remaining tests are not run and the exit code is 128 + the signal's
//! number. The runner's own signal handling (roll back, then stop) is not used here: the
//! simulator is thrown away either way.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::check::test_items::{Expected, Test, TestOutcome};
use crate::check::Checked;
use crate::program::Workload;
use crate::rehearse::RehearseError;
use crate::sim::Faults;
use crate::version::Version;

use crate::run::kube::live_colour;
use crate::run::log::events::{Entry, RunEvent};
use crate::run::log::output::Format;
use crate::run::{Cancel, Outcome, RunOptions, RunTarget};

/// The default bound of a test's simulated time.
pub(crate) const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// What bounds each test.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Simulated time: a run still going past it fails its test.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: DEFAULT_TIME_LIMIT,
        }
    }
}

/// A signal received during `ktplay test`: the first one ends the suite.
#[derive(Clone)]
pub(crate) struct Interrupt {
    cancel: Cancel,
    /// The signal's number, 0 before any.
    signal: Arc<AtomicI32>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt::new()
    }
}

impl Interrupt {
    /// One that only [`Interrupt::raise`] sets (no signal handler).
    pub(crate) fn new() -> Interrupt {
        Interrupt {
            cancel: Cancel::new(),
            signal: Arc::new(AtomicI32::new(0)),
        }
    }

    /// Catch SIGINT, SIGTERM and SIGHUP from now on (the handlers are in place when this
    /// returns) and raise this on the first.
    pub(crate) fn watch_signals() -> std::io::Result<Interrupt> {
        use tokio::signal::unix::{signal, SignalKind};
        let this = Interrupt::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (mut int, mut term, mut hup) = {
            let _in = rt.enter();
            (
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            )
        };
        let raised = this.clone();
        std::thread::Builder::new()
            .name("ktplay-test-signals".into())
            .spawn(move || {
                rt.block_on(async move {
                    loop {
                        let n = tokio::select! {
                            _ = int.recv() => libc_number::SIGINT,
                            _ = term.recv() => libc_number::SIGTERM,
                            _ = hup.recv() => libc_number::SIGHUP,
                        };
                        raised.raise(n);
                    }
                })
            })?;
        Ok(this)
    }

    /// Record signal `n` (the first one counts) and end what runs.
    pub(crate) fn raise(&self, n: i32) {
        let _ = self
            .signal
            .compare_exchange(0, n, Ordering::SeqCst, Ordering::SeqCst);
        self.cancel.interrupt();
    }

    /// The signal received, if any: its number.
    pub(crate) fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }
}

/// The numbers of the signals `ktplay test` catches (as on Linux and the BSDs).
pub(crate) mod libc_number {
    pub(crate) const SIGHUP: i32 = 1;
    pub(crate) const SIGINT: i32 = 2;
    pub(crate) const SIGTERM: i32 = 15;
}

/// A signal's name.
pub(crate) fn signal_name(n: i32) -> String {
    match n {
        libc_number::SIGHUP => "SIGHUP".into(),
        libc_number::SIGINT => "SIGINT (Ctrl-C)".into(),
        libc_number::SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// Why a run was cut short.
#[derive(Debug, Clone)]
pub(crate) enum Cut {
    /// Still going when the simulated time reached the limit.
    TimeLimit(Duration),
    /// A signal (its number).
    Signal(i32),
}

/// What a tested run did.
#[derive(Debug, Clone)]
pub(crate) struct Ran {
    pub outcome: Outcome,
    /// The run did not end by itself: why, and where it was (a sentence).
    pub cut: Option<(Cut, String)>,
    /// What failed, in words: the stage, the statement and line, the message (the guard's).
    pub failure: Option<String>,
    /// The stage (index) that failed and the statement (0-based) whose end failed, if any.
    pub failed: Option<(usize, Option<usize>)>,
    /// Components (names) in the order their rollback steps ran, consecutive repeats folded.
    pub rollback_order: Vec<String>,
    /// The versions each component serves at the end (a blue-green one: its serving colour).
    pub finals: Vec<BTreeSet<Version>>,
    pub simulated: Duration,
    pub wall: Duration,
    /// The disruption monitors' last numbers (`monitor` items), from the run's journal.
    pub monitors: Vec<crate::run::monitor::MonitorReport>,
}

/// An expectation that did not hold: which, and what happened instead.
#[derive(Debug, Clone)]
pub(crate) struct Miss {
    /// Index into the test's `expects`.
    pub expect: usize,
    pub instead: String,
}

/// One test's result.
#[derive(Debug, Clone)]
pub(crate) struct TestResult {
    pub ran: Result<Ran, RehearseError>,
    pub misses: Vec<Miss>,
}

impl TestResult {
    pub(crate) fn passed(&self) -> bool {
        self.ran.as_ref().is_ok_and(|r| r.cut.is_none()) && self.misses.is_empty()
    }
}

/// How `ktplay test` runs each test.
#[derive(Clone, Default)]
pub(crate) struct Settings {
    pub limits: Limits,
    pub interrupt: Interrupt,
    /// Show the run's events as `ktplay run` does (`--verbose`).
    pub verbose: bool,
}

/// Run one test (a fresh simulator, a virtual clock) and judge its expectations (none when the
/// run was cut short: it failed for that).
pub(crate) fn run_test(checked: &Checked, test: &Test, settings: &Settings) -> TestResult {
    let ran = simulate(checked, test, settings);
    let misses = match &ran {
        Ok(r) if r.cut.is_none() => judge(checked, test, r),
        _ => Vec::new(),
    };
    TestResult { ran, misses }
}

fn simulate(checked: &Checked, test: &Test, settings: &Settings) -> Result<Ran, RehearseError> {
    let wall = std::time::Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| RehearseError::Runtime(e.to_string()))?;
    let pb = &checked.playbooks[test.playbook].1;
    let env = test.env.as_deref().and_then(|n| pb.env(n));
    let sel = checked.selection(test.playbook, env);
    let mut ran = rt.block_on(async {
        let t0 = tokio::time::Instant::now();
        let mut faults = Faults::none();
        for f in &test.faults {
            faults.add(f.node.clone());
        }
        // A pod takes a second of simulated time per step: realistic, and free.
        let pace = super::Pace {
            step: Duration::from_secs(1),
            progress_deadline: None,
        };
        let rehearsal = super::Rehearsal::start(&sel, faults, pace).await?;
        let cluster = rehearsal.cluster();
        let opts = RunOptions {
            approve: true,
            format: if settings.verbose {
                Format::Human
            } else {
                Format::Quiet
            },
            // The suite handles signals (`Interrupt`): the run's own handler stays out.
            cancel: Cancel::signals_handled_by_caller(),
            ..rehearsal.options()
        };
        let target = RunTarget::from(&sel);
        let limit = settings.limits.time;
        let interrupt = settings.interrupt.clone();
        let (outcome, cut) = tokio::select! {
            biased;
            _ = interrupt.cancel.wait() => {
                (None, Some(Cut::Signal(interrupt.signal().unwrap_or(0))))
            }
            r = tokio::time::timeout(limit, crate::run::execute(target, cluster.clone(), opts)) => {
                match r {
                    Ok(outcome) => (Some(outcome), None),
                    Err(_) => (None, Some(Cut::TimeLimit(limit))),
                }
            }
        };
        let events = crate::run::log::journal::load(&cluster, &pb.digest)
            .await
            .map_err(RehearseError::read)?
            .map(|s| s.events())
            .unwrap_or_default();
        let stage_name = |k: usize| pb.stages.get(k).map_or("?", |s| s.name.as_str());
        if let Some(cut) = cut {
            rehearsal.shutdown().await;
            let at = where_it_was(&events, &stage_name);
            let why = match &cut {
                Cut::TimeLimit(d) => format!(
                    "the run was still going after {} of simulated time, the limit of a test ({at}); `ktplay test --time-limit` sets it",
                    limit_words(*d)
                ),
                Cut::Signal(n) => format!(
                    "interrupted by {} ({at}); the test did not finish",
                    signal_name(*n)
                ),
            };
            return Ok::<Ran, RehearseError>(Ran {
                outcome: Outcome::Usage(why.clone()),
                cut: Some((cut, why)),
                failure: None,
                failed: None,
                rollback_order: Vec::new(),
                finals: Vec::new(),
                simulated: t0.elapsed(),
                wall: Duration::ZERO,
                monitors: Vec::new(),
            });
        }
        let outcome = outcome.unwrap_or(Outcome::Usage("no outcome".into()));
        let mut finals = Vec::new();
        for c in &pb.components {
            let vs = match &c.workload {
                Workload::BlueGreen(bg) => {
                    let colour = live_colour(&cluster, c).await.map_err(RehearseError::read)?;
                    cluster
                        .versions_of(c, &[bg.deployment(colour)])
                        .await
                        .map_err(RehearseError::read)?
                }
                Workload::Deployments(_) => {
                    cluster.live_versions(c).await.map_err(RehearseError::read)?
                }
            };
            finals.push(vs);
        }
        rehearsal.shutdown().await;
        let (failed, rollback_order) = read_events(&events);
        let monitors = crate::run::monitor::last_reports(&events);
        Ok::<Ran, RehearseError>(Ran {
            monitors,
            failure: failure_words(&events, &outcome, &stage_name),
            cut: None,
            outcome,
            failed,
            rollback_order,
            finals,
            simulated: t0.elapsed(),
            wall: Duration::ZERO,
        })
    })?;
    ran.wall = wall.elapsed();
    Ok(ran)
}

/// A limit as written on the command line (`24h`, `90m`, `45s`).
fn limit_words(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        crate::run::log::output::fmt_elapsed(d)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Where a run was when it was cut short: the statement that had started last.
fn where_it_was<'a>(events: &[Entry], stage_name: &dyn Fn(usize) -> &'a str) -> String {
    let mut at = None;
    for e in events {
        match &e.event {
            RunEvent::Start {
                stage,
                stmt,
                line,
                statement,
                ..
            } => {
                at = Some(format!(
                    "in stage `{}`, statement {} at line {line}: `{statement}`",
                    stage_name(*stage),
                    stmt + 1
                ))
            }
            RunEvent::Stage { stage, .. } => {
                at = Some(format!("in stage `{}`", stage_name(*stage)))
            }
            RunEvent::RollbackBegin { .. } => at = Some("rolling back".into()),
            _ => {}
        }
    }
    at.unwrap_or_else(|| "before its first stage".into())
}

/// What failed, in words: the stage, the statement (its number, line and text) and the
/// message the run gave (a guard's), read from the run's events.
fn failure_words<'a>(
    events: &[Entry],
    outcome: &Outcome,
    stage_name: &dyn Fn(usize) -> &'a str,
) -> Option<String> {
    if matches!(outcome, Outcome::Refused(_) | Outcome::Succeeded) {
        return None; // the outcome's own words say it all
    }
    let mut last_failed_end: Option<(usize, usize, usize, String, Option<String>)> = None;
    for e in events {
        match &e.event {
            RunEvent::End {
                stage,
                stmt,
                ok: false,
                line,
                statement,
                message,
                ..
            } => last_failed_end = Some((*stage, *stmt, *line, statement.clone(), message.clone())),
            RunEvent::Failed {
                stage,
                line,
                message,
                ..
            } => {
                let what = match &last_failed_end {
                    Some((s, j, l, text, _)) if s == stage => {
                        format!("statement {} (line {l}: `{text}`)", j + 1)
                    }
                    _ => format!("line {line}"),
                };
                return Some(format!(
                    "stage `{}` failed at {what}: {message}",
                    stage_name(*stage)
                ));
            }
            _ => {}
        }
    }
    None
}

/// Which stage and statement failed, and the components the rollback steps were about.
fn read_events(events: &[Entry]) -> (Option<(usize, Option<usize>)>, Vec<String>) {
    let mut failed = None;
    let mut last_failed_end = None;
    let mut order: Vec<String> = Vec::new();
    for e in events {
        match &e.event {
            RunEvent::End {
                stage,
                stmt,
                ok: false,
                ..
            } => last_failed_end = Some((*stage, *stmt)),
            RunEvent::Failed { stage, .. } if failed.is_none() => {
                let stmt = last_failed_end.filter(|(s, _)| s == stage).map(|(_, j)| j);
                failed = Some((*stage, stmt));
            }
            RunEvent::RollbackStep {
                component: Some(c), ..
            } if order.last() != Some(c) => order.push(c.clone()),
            _ => {}
        }
    }
    (failed, order)
}

fn outcome_word(o: &Outcome) -> String {
    match o {
        Outcome::Succeeded => "succeeded".into(),
        Outcome::RolledBack => "rolled_back".into(),
        Outcome::RollbackIncomplete => "rollback_incomplete".into(),
        Outcome::Halted => "halted".into(),
        Outcome::Refused(r) => format!("refused ({})", r.message),
        Outcome::Usage(m) => format!("an error ({m})"),
        Outcome::LockLost => "lock_lost".into(),
    }
}

fn is(o: &Outcome, want: TestOutcome) -> bool {
    matches!(
        (o, want),
        (Outcome::Succeeded, TestOutcome::Succeeded)
            | (Outcome::RolledBack, TestOutcome::RolledBack)
            | (Outcome::RollbackIncomplete, TestOutcome::RollbackIncomplete)
            | (Outcome::Refused(_), TestOutcome::Refused)
            | (Outcome::Halted, TestOutcome::Halted)
    )
}

/// The expectations that did not hold.
pub(crate) fn judge(checked: &Checked, test: &Test, ran: &Ran) -> Vec<Miss> {
    let pb = &checked.playbooks[test.playbook].1;
    let stage_name = |k: usize| pb.stages.get(k).map_or("?", |s| s.name.as_str());
    let mut out = Vec::new();
    for (i, x) in test.expects.iter().enumerate() {
        let instead = match &x.what {
            Expected::Outcome(want) => (!is(&ran.outcome, *want)).then(|| {
                let mut m = format!(
                    "expected {}, the run ended {}",
                    want.word(),
                    outcome_word(&ran.outcome)
                );
                if let Some(f) = &ran.failure {
                    m.push_str(&format!(": {f}"));
                }
                m
            }),
            Expected::Failed { stage, statement } => match ran.failed {
                None => Some(format!(
                    "expected stage `{}` to fail, and no statement failed",
                    stage_name(*stage)
                )),
                Some((k, _)) if k != *stage => Some(format!(
                    "expected stage `{}` to fail, stage `{}` did",
                    stage_name(*stage),
                    stage_name(k)
                )),
                Some((_, j)) => match (statement, j) {
                    (Some(n), Some(j)) if j + 1 != *n => Some(format!(
                        "expected statement {n} of stage `{}` to fail, statement {} did",
                        stage_name(*stage),
                        j + 1
                    )),
                    _ => None,
                },
            },
            Expected::RollbackOrder(want) => {
                let want: Vec<String> = want
                    .iter()
                    .map(|c| pb.components[*c].name.clone())
                    .collect();
                (want != ran.rollback_order).then(|| {
                    format!(
                        "expected the rollback to go {}, it went {}",
                        words(&want),
                        words(&ran.rollback_order)
                    )
                })
            }
            Expected::Final(pairs) => {
                let wrong: Vec<String> = pairs
                    .iter()
                    .filter(|(c, v)| ran.finals[*c] != BTreeSet::from([v.clone()]))
                    .map(|(c, v)| {
                        format!(
                            "{} runs {} (expected {v})",
                            pb.components[*c].name,
                            crate::matrix::format_set(ran.finals[*c].iter())
                        )
                    })
                    .collect();
                (!wrong.is_empty()).then(|| wrong.join("; "))
            }
        };
        if let Some(instead) = instead {
            out.push(Miss { expect: i, instead });
        }
    }
    out
}

fn words(cs: &[String]) -> String {
    if cs.is_empty() {
        "nowhere (no rollback step ran)".into()
    } else {
        cs.join(" → ")
    }
}
