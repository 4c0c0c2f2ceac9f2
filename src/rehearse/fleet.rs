//! A fleet rehearsed: one simulator per cluster, each seeded with what that cluster runs
//! (`Fleet::playbook_for`), on a virtual clock (as `ktplay test`: a soak of 10 minutes takes its
//! full simulated length in almost no wall time).
//!
//! Waves run in order, each wave's clusters in batches of `parallel` (a batch's runs at once);
//! after a wave its soak runs the guards against every cluster finished so far (a round at the
//! start, every `SOAK_EVERY`, one at the end), and a guard that fails fails the wave; `approve`
//! is answered yes (a rehearsal). On a failure under `on failure stop`, the failed cluster has
//! rolled back by its own run, finished clusters stay, later waves never start. `on failure
//! rollback fleet` is refused here: rolling back a cluster whose run finished needs a runner
//! command that does not exist yet.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::check::fleet::{Fleet, SOAK_EVERY};
use crate::check::select::Selection;
use crate::check::Checked;
use crate::program::Op;
use crate::rehearse::RehearseError;
use crate::resolve::{Live, Scope};
use crate::run::guards::{self, GuardEnv};
use crate::run::log::output::Format;
use crate::run::{Cancel, Outcome, Redactor, RunOptions, RunTarget};
use crate::sim::{Fault, Faults};
use crate::syntax::ast::FleetPolicy;

/// What one cluster did.
#[derive(Debug, Clone)]
pub(crate) struct ClusterRan {
    pub name: String,
    /// `None`: its wave never started.
    pub outcome: Option<Outcome>,
    /// The versions each component's deployments run at the end, by component.
    pub finals: BTreeMap<String, String>,
    /// Whether its run lock is still held at the end (never, after a run that ended).
    pub lock_held: bool,
    /// Its run's journal: the `status` of its `run_end` (`None`: no journal, the run never
    /// started), and how many events it holds.
    pub journal_end: Option<String>,
    pub journal_events: usize,
}

/// What the fleet did.
#[derive(Debug, Clone)]
pub(crate) struct FleetRan {
    pub succeeded: bool,
    /// The fleet journal: each wave, batch, cluster outcome, soak round and decision, in order.
    pub journal: Vec<String>,
    pub clusters: Vec<ClusterRan>,
    pub simulated: Duration,
}

/// The faults of each cluster: `SPEC@CLUSTER` for one cluster (`never-ready:gateway@1.5.0@eu-west`),
/// a plain `SPEC` for every cluster.
pub(crate) fn faults_per_cluster(
    fleet: &Fleet,
    specs: &[String],
) -> Result<Vec<Faults>, RehearseError> {
    let mut out: Vec<Faults> = fleet.clusters.iter().map(|_| Faults::none()).collect();
    for spec in specs {
        let (fault, cluster) = match spec.rsplit_once('@') {
            Some((f, c)) if fleet.cluster(c).is_some() => (f, fleet.cluster(c)),
            _ => (spec.as_str(), None),
        };
        let parsed: Fault = fault.parse().map_err(|e| RehearseError::Fault {
            spec: spec.clone(),
            cause: format!("{e}"),
        })?;
        for (i, f) in out.iter_mut().enumerate() {
            if cluster.is_none_or(|c| c == i) {
                f.add(parsed.clone());
            }
        }
    }
    Ok(out)
}

/// Rehearse `fleet` with these faults.
pub(crate) fn rehearse(
    checked: &Checked,
    fleet: &Fleet,
    faults: &[String],
) -> Result<FleetRan, RehearseError> {
    if fleet.policy == FleetPolicy::RollbackFleet {
        return Err(RehearseError::RollbackFleet);
    }
    let faults = faults_per_cluster(fleet, faults)?;
    let (pfile, pb) = &checked.playbooks[fleet.playbook];
    let matrix = checked.matrix_of(pb);
    let derived: Vec<Checked> = (0..fleet.clusters.len())
        .map(|c| checked.derived(vec![(*pfile, fleet.playbook_for(pb, c))]))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| RehearseError::Runtime(e.to_string()))?;
    rt.block_on(run(fleet, &derived, matrix, faults))
}

async fn run(
    fleet: &Fleet,
    derived: &[Checked],
    matrix: Option<&crate::matrix::Matrix>,
    faults: Vec<Faults>,
) -> Result<FleetRan, RehearseError> {
    let t0 = tokio::time::Instant::now();
    let pace = super::Pace {
        step: Duration::from_secs(1),
        progress_deadline: None,
    };
    let mut sims = Vec::new();
    for (c, f) in faults.into_iter().enumerate() {
        let d = &derived[c];
        let pbc = &d.playbooks[0].1;
        let sel = Selection {
            index: 0,
            playbook: pbc,
            env: pbc.envs.first(),
            checked: d,
            matrix,
        };
        sims.push(super::Rehearsal::start(&sel, f, pace).await?);
    }
    let mut journal = Vec::new();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; fleet.clusters.len()];
    let mut finished: Vec<usize> = Vec::new();
    let mut failure: Option<String> = None;
    'waves: for wave in &fleet.waves {
        journal.push(format!(
            "wave `{}` starts: {}",
            wave.name,
            names(fleet, &wave.clusters)
        ));
        for batch in wave.clusters.chunks(wave.parallel.max(1)) {
            journal.push(format!("  batch: {}", names(fleet, batch)));
            let runs = batch.iter().map(|&c| {
                let d = &derived[c];
                let pbc = &d.playbooks[0].1;
                let target = RunTarget {
                    checked: d,
                    index: 0,
                    env: pbc.envs.first(),
                    matrix,
                };
                let opts = RunOptions {
                    approve: true,
                    format: Format::Quiet,
                    cancel: Cancel::signals_handled_by_caller(),
                    ..sims[c].options()
                };
                let cluster = sims[c].cluster();
                async move { (c, crate::run::execute(target, cluster, opts).await) }
            });
            for (c, outcome) in futures::future::join_all(runs).await {
                journal.push(format!(
                    "  cluster `{}`: {}",
                    fleet.clusters[c].name,
                    outcome_words(&outcome)
                ));
                if outcome == Outcome::Succeeded {
                    finished.push(c);
                } else if failure.is_none() {
                    failure = Some(format!(
                        "cluster `{}` in wave `{}`: {}",
                        fleet.clusters[c].name,
                        wave.name,
                        outcome_words(&outcome)
                    ));
                }
                outcomes[c] = Some(outcome);
            }
            if failure.is_some() {
                break 'waves;
            }
        }
        if let Some(soak) = &wave.soak {
            journal.push(format!(
                "  soak {}s: watching {}",
                soak.time.as_secs(),
                names(fleet, &finished)
            ));
            let end = tokio::time::Instant::now() + soak.time;
            let mut rounds = 0;
            loop {
                rounds += 1;
                for &c in &finished {
                    if let Err(why) = soak_round(&derived[c], &sims[c], soak).await {
                        let at = (tokio::time::Instant::now() + soak.time)
                            .saturating_duration_since(end)
                            .as_secs();
                        journal.push(format!(
                            "  soak round {rounds} ({at}s): cluster `{}` failed: {why}",
                            fleet.clusters[c].name
                        ));
                        failure = Some(format!(
                            "the soak after wave `{}` (round {rounds}, {at}s in): cluster `{}`: {why}",
                            wave.name, fleet.clusters[c].name
                        ));
                        break;
                    }
                }
                if failure.is_some() {
                    break 'waves;
                }
                let now = tokio::time::Instant::now();
                if now >= end {
                    break;
                }
                tokio::time::sleep(SOAK_EVERY.min(end - now)).await;
            }
            journal.push(format!("  soak held: {rounds} rounds"));
        }
        if let Some(q) = &wave.approve {
            journal.push(format!("  approve \"{q}\": yes (a rehearsal)"));
        }
        journal.push(format!("wave `{}` done", wave.name));
    }
    if let Some(why) = &failure {
        journal.push(format!("fleet stopped (on failure stop): {why}"));
        for &c in &finished {
            journal.push(format!(
                "  cluster `{}` stays upgraded; roll it back by running the previous release's playbook in context `{}` (no ktplay command rolls back a finished run yet)",
                fleet.clusters[c].name, fleet.clusters[c].context
            ));
        }
    } else {
        journal.push("fleet succeeded".into());
    }
    let mut clusters = Vec::new();
    for (c, sim) in sims.into_iter().enumerate() {
        let pbc = &derived[c].playbooks[0].1;
        let cluster = sim.cluster();
        let mut finals = BTreeMap::new();
        for (i, comp) in pbc.components.iter().enumerate() {
            // A shared component hosted elsewhere is a stand-in here, not this cluster's.
            if !fleet.runs(c, i) {
                continue;
            }
            let vs = cluster
                .live_versions(comp)
                .await
                .map_err(RehearseError::read)?;
            finals.insert(
                comp.name.clone(),
                vs.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        let lock_held = crate::run::kube::lock::read(&cluster, &pbc.name)
            .await
            .map_err(RehearseError::read)?
            .is_some_and(|l| crate::run::kube::lock::live(&l));
        let events = crate::run::log::journal::load(&cluster, &pbc.digest)
            .await
            .map_err(RehearseError::read)?
            .map(|j| j.events());
        let journal_end = events.as_ref().map(|ev| {
            ev.iter()
                .rev()
                .find_map(|e| match &e.event {
                    crate::run::log::events::RunEvent::RunEnd { status, .. } => {
                        Some(status.clone())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| "(no run_end)".into())
        });
        sim.shutdown().await;
        clusters.push(ClusterRan {
            name: fleet.clusters[c].name.clone(),
            outcome: outcomes[c].clone(),
            finals,
            lock_held,
            journal_events: events.as_ref().map_or(0, Vec::len),
            journal_end,
        });
    }
    Ok(FleetRan {
        succeeded: failure.is_none(),
        journal,
        clusters,
        simulated: t0.elapsed(),
    })
}

/// One round of a soak's guards against cluster `c`.
async fn soak_round(
    d: &Checked,
    sim: &super::Rehearsal,
    soak: &crate::check::fleet::Soak,
) -> Result<(), String> {
    let pbc = &d.playbooks[0].1;
    let env = pbc.envs.first();
    let live = Live {
        colours: Default::default(),
        secrets: sim.secrets.clone(),
    };
    let scope = Scope::new(pbc, env, &live);
    let http = guards::client::client(guards::client::guard_rule(pbc, env, &sim.rewrite));
    let redact = Redactor::new(sim.secrets.values().cloned());
    let cancel = Cancel::signals_handled_by_caller();
    let cluster = sim.cluster();
    let genv = GuardEnv {
        scope: &scope,
        playbook: std::sync::Arc::new(pbc.clone()),
        cluster: &cluster,
        http: &http,
        rewrite: &sim.rewrite,
        cancel: &cancel,
        redact: &redact,
        stage: "soak".into(),
        tally: None,
    };
    for g in &soak.guards {
        if let Op::Guard(guard) = &g.op {
            guards::run_guard(guard, &genv)
                .await
                .map_err(|f| redact.redact(&f.message))?;
        }
    }
    Ok(())
}

fn names(fleet: &Fleet, cs: &[usize]) -> String {
    if cs.is_empty() {
        return "(none)".into();
    }
    cs.iter()
        .map(|&c| fleet.clusters[c].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn outcome_words(o: &Outcome) -> String {
    match o {
        Outcome::Succeeded => "succeeded".into(),
        Outcome::RolledBack => "failed and rolled back".into(),
        Outcome::RollbackIncomplete => "failed; its rollback did not complete".into(),
        Outcome::Halted => "failed and halted (nothing rolled back)".into(),
        Outcome::Refused(why) => format!("refused: {}", why.message),
        Outcome::Usage(why) => format!("did not run: {why}"),
        Outcome::LockLost => "lost its lock".into(),
    }
}
