//! `ktplay test`: each checked `test` item on its own fresh simulator, on a virtual clock.
//!
//! Every test gets a new single-threaded runtime whose clock starts paused: whenever the run,
//! the simulator and the guards all wait, tokio moves the clock to the next timer at once. So
//! every duration — `pause`, a canary's `for`, `within`, timeouts, progress deadlines, lease
//! renewals, back-off — takes its full length in simulated time and nearly none in wall time;
//! nothing is shortened. (Rhai hooks run on blocking threads, during which the clock does not
//! move; their own deadline is wall time.)

use std::collections::BTreeSet;
use std::time::Duration;

use crate::check::program::Workload;
use crate::check::test_items::{Expected, Test, TestOutcome};
use crate::check::Checked;
use crate::resolve::{Live, Scope};
use crate::sim::{Faults, Sim, SimConfig};
use crate::version::Version;

use super::cluster::{live_colour, Cluster};
use super::events::{Entry, RunEvent};
use super::guards::script_runner;
use super::output::Format;
use super::{Cancel, Outcome, RunOptions, RunTarget};

/// What a tested run did.
#[derive(Debug, Clone)]
pub struct Ran {
    pub outcome: Outcome,
    /// The stage (index) that failed and the statement (0-based) whose end failed, if any.
    pub failed: Option<(usize, Option<usize>)>,
    /// Components (names) in the order their rollback steps ran, consecutive repeats folded.
    pub rollback_order: Vec<String>,
    /// The versions each component serves at the end (a blue-green one: its serving colour).
    pub finals: Vec<BTreeSet<Version>>,
    pub simulated: Duration,
    pub wall: Duration,
}

/// An expectation that did not hold: which, and what happened instead.
#[derive(Debug, Clone)]
pub struct Miss {
    /// Index into the test's `expects`.
    pub expect: usize,
    pub instead: String,
}

/// One test's result.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub ran: Result<Ran, String>,
    pub misses: Vec<Miss>,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.ran.is_ok() && self.misses.is_empty()
    }
}

/// Run one test (a fresh simulator, a virtual clock) and judge its expectations.
pub fn run_test(checked: &Checked, test: &Test) -> TestResult {
    let ran = simulate(checked, test);
    let misses = match &ran {
        Ok(r) => judge(checked, test, r),
        Err(_) => Vec::new(),
    };
    TestResult { ran, misses }
}

fn simulate(checked: &Checked, test: &Test) -> Result<Ran, String> {
    let wall = std::time::Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let pb = &checked.playbooks[test.playbook].1;
    let env = test.env.as_deref().and_then(|n| pb.env(n));
    let matrix = pb
        .matrix
        .as_deref()
        .and_then(|n| checked.scopes.iter().find_map(|s| s.get(n)));
    let mut ran = rt.block_on(async {
        let t0 = tokio::time::Instant::now();
        let ns = Scope::new(pb, env, &Live::default())
            .namespace()
            .to_string();
        let mut faults = Faults::none();
        for f in &test.faults {
            faults.add(f.node.clone());
        }
        let (secrets, _) = super::rehearse::secrets(pb, env);
        let sim = Sim::new(SimConfig {
            // A pod takes a second of simulated time per step: realistic, and free.
            pace: Duration::from_secs(1),
            faults,
            compat: super::rehearse::compat_for(pb, matrix),
            generic: super::generic::generic_for(pb, env, &secrets, matrix).0,
            ..SimConfig::default()
        });
        sim.seed(&super::rehearse::seed_for(pb, &ns));
        let running = sim
            .start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| format!("cannot start the simulator: {e}"))?;
        let (rewrite, _) = super::rehearse::url_rewrite(pb, env, &running, &secrets);
        let cluster = Cluster::new(kube::Client::new(sim.router(), ns.clone()), ns.clone());
        let opts = RunOptions {
            approve: true,
            accept_drift: false,
            resume: false,
            format: Format::Quiet,
            journal_file: None,
            shorten_waits: None,
            secrets,
            rewrite,
            scripts: script_runner(),
            cancel: Cancel::new(),
            after: None,
            rehearsal: true,
        };
        let target = RunTarget {
            checked,
            index: test.playbook,
            env,
            matrix,
        };
        let outcome = super::execute(target, cluster.clone(), opts).await;
        let events = super::journal::load(&cluster, &pb.digest)
            .await?
            .map(|s| s.events())
            .unwrap_or_default();
        let mut finals = Vec::new();
        for c in &pb.components {
            let vs = match &c.workload {
                Workload::BlueGreen(bg) => {
                    let colour = live_colour(&cluster, c).await.map_err(|e| e.to_string())?;
                    cluster
                        .versions_of(c, &[bg.deployment(colour)])
                        .await
                        .map_err(|e| e.to_string())?
                }
                Workload::Deployments(_) => {
                    cluster.live_versions(c).await.map_err(|e| e.to_string())?
                }
            };
            finals.push(vs);
        }
        running.shutdown().await;
        let (failed, rollback_order) = read_events(&events);
        Ok::<Ran, String>(Ran {
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
        Outcome::Refused(m) => format!("refused ({m})"),
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
pub fn judge(checked: &Checked, test: &Test, ran: &Ran) -> Vec<Miss> {
    let pb = &checked.playbooks[test.playbook].1;
    let stage_name = |k: usize| pb.stages.get(k).map_or("?", |s| s.name.as_str());
    let mut out = Vec::new();
    for (i, x) in test.expects.iter().enumerate() {
        let instead = match &x.what {
            Expected::Outcome(want) => (!is(&ran.outcome, *want)).then(|| {
                format!(
                    "expected {}, the run ended {}",
                    want.word(),
                    outcome_word(&ran.outcome)
                )
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
