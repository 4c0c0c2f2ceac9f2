//! A fleet driven: its waves in order, each wave's clusters in batches of `parallel` (a batch's
//! runs at once, each the ordinary run of that cluster's playbook with its own lock, journal,
//! preflight and rollback), a soak after a wave that watches the guards against every cluster
//! finished so far, an approval between waves where the fleet asks for one, and the failure
//! policy. The clusters come from the caller ([`Members`]): simulators (`rehearse`, on a virtual
//! clock) or the kube contexts the fleet names (`run`).
//!
//! A soak is watched, not slept: a round at its start, one every [`SOAK_EVERY`], one at its end;
//! a guard that fails in any round fails the wave. On a failure under `on failure stop` the failed
//! cluster has rolled back by its own run, finished clusters stay (the journal says how to roll
//! them back), later waves never start. `on failure rollback fleet` is refused before any cluster
//! runs: rolling back a cluster whose run finished needs a runner command that does not exist yet.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::check::fleet::{Fleet, SOAK_EVERY};
use crate::check::Checked;
use crate::program::Op;
use crate::resolve::{Live, Scope};
use crate::run::guards::{self, GuardEnv, UrlRewrite};
use crate::run::kube::Cluster;
use crate::run::{Cancel, Outcome, Redactor, RunOptions, RunTarget};
use crate::syntax::ast::FleetPolicy;

/// The clusters of a fleet, by index into [`Fleet::clusters`].
pub(crate) trait Members {
    /// The playbook (and its one env) cluster `c` runs: `Fleet::playbook_for` of it.
    fn checked(&self, c: usize) -> &Checked;
    /// The compatibility matrix every cluster's run holds (the fleet playbook's).
    fn matrix(&self) -> Option<&crate::matrix::Matrix>;
    fn cluster(&self, c: usize) -> Cluster;
    /// The options of cluster `c`'s run (approve, format and cancel are the driver's).
    fn options(&self, c: usize) -> RunOptions;
    /// The secrets and URL routing its soak guards use.
    fn secrets(&self, c: usize) -> &HashMap<String, String>;
    fn rewrite(&self, c: usize) -> &UrlRewrite;
}

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
    /// Time from the first wave to the end (simulated, under a rehearsal).
    pub took: Duration,
}

/// How the driver answers a wave's `approve`, and what it tells each cluster's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Approvals {
    /// A rehearsal: every approval is answered yes, and says so.
    Rehearsal,
    /// `--approve` (or a person at a terminal, asked).
    Run { flag: bool },
}

/// Refusals before any cluster runs: a policy the driver cannot carry out, an approval nobody
/// can answer.
pub(crate) fn admit(fleet: &Fleet, approvals: Approvals) -> Result<(), String> {
    if fleet.policy == FleetPolicy::RollbackFleet {
        return Err("`on failure rollback fleet` is not rehearsed or run yet: rolling back a cluster whose run finished needs a runner command ktplay does not have; use `on failure stop` (the failed cluster rolls back, the journal names the finished ones)".into());
    }
    if let Approvals::Run { flag } = approvals {
        if let Some(w) = fleet.waves.iter().find(|w| w.approve.is_some()) {
            if !guards::can_approve(flag) {
                return Err(format!("wave `{}` asks for approval but there is no terminal to ask on and --approve was not given", w.name));
            }
        }
    }
    Ok(())
}

/// Drive `fleet` over `members`; `on_entry` sees each journal line as it is written.
pub(crate) async fn drive(
    fleet: &Fleet,
    members: &dyn Members,
    approvals: Approvals,
    cancel: &Cancel,
    on_entry: &(dyn Fn(&str) + Sync),
) -> Result<FleetRan, String> {
    admit(fleet, approvals)?;
    let t0 = tokio::time::Instant::now();
    let mut journal = Vec::new();
    let mut note = |line: String| {
        on_entry(&line);
        journal.push(line);
    };
    let mut outcomes: Vec<Option<Outcome>> = vec![None; fleet.clusters.len()];
    let mut finished: Vec<usize> = Vec::new();
    let mut failure: Option<String> = None;
    'waves: for wave in &fleet.waves {
        note(format!(
            "wave `{}` starts: {}",
            wave.name,
            names(fleet, &wave.clusters)
        ));
        for batch in wave.clusters.chunks(wave.parallel.max(1)) {
            note(format!("  batch: {}", names(fleet, batch)));
            if let Err(why) = shared_as_expected(fleet, members, batch).await {
                note(format!("  {why}"));
                failure = Some(why);
                break 'waves;
            }
            let runs = batch.iter().map(|&c| {
                let d = members.checked(c);
                let pbc = &d.playbooks[0].1;
                let target = RunTarget {
                    checked: d,
                    index: 0,
                    env: pbc.envs.first(),
                    matrix: members.matrix(),
                };
                let opts = RunOptions {
                    approve: match approvals {
                        Approvals::Rehearsal => true,
                        Approvals::Run { flag } => flag,
                    },
                    cancel: cancel.clone(),
                    ..members.options(c)
                };
                let cluster = members.cluster(c);
                async move { (c, crate::run::execute(target, cluster, opts).await) }
            });
            for (c, outcome) in futures::future::join_all(runs).await {
                note(format!(
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
            note(format!(
                "  soak {}s: watching {}",
                soak.time.as_secs(),
                names(fleet, &finished)
            ));
            let start = tokio::time::Instant::now();
            let end = start + soak.time;
            let mut rounds = 0;
            loop {
                rounds += 1;
                for &c in &finished {
                    if let Err(why) = soak_round(members, c, soak, cancel).await {
                        let at = start.elapsed().as_secs();
                        note(format!(
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
                tokio::select! {
                    _ = tokio::time::sleep(SOAK_EVERY.min(end - now)) => {}
                    _ = cancel.wait() => {
                        failure = Some(format!("interrupted during the soak after wave `{}`", wave.name));
                        note(format!("  soak interrupted after {rounds} rounds"));
                        break 'waves;
                    }
                }
            }
            note(format!("  soak held: {rounds} rounds"));
        }
        if let Some(q) = &wave.approve {
            match approvals {
                Approvals::Rehearsal => note(format!("  approve \"{q}\": yes (a rehearsal)")),
                Approvals::Run { flag } => match guards::approve(q, flag, cancel).await {
                    Ok(how) => note(format!("  approve \"{q}\": {how}")),
                    Err(f) => {
                        note(format!("  approve \"{q}\": {}", f.message));
                        failure = Some(format!(
                            "the approval after wave `{}`: {}",
                            wave.name, f.message
                        ));
                        break 'waves;
                    }
                },
            }
        }
        note(format!("wave `{}` done", wave.name));
    }
    if let Some(why) = &failure {
        note(format!("fleet stopped (on failure stop): {why}"));
        for &c in &finished {
            note(format!(
                "  cluster `{}` stays upgraded; roll it back by running the previous release's playbook in context `{}` (no ktplay command rolls back a finished run yet)",
                fleet.clusters[c].name, fleet.clusters[c].context
            ));
        }
    } else {
        note("fleet succeeded".into());
    }
    let took = t0.elapsed();
    let mut clusters = Vec::new();
    for (c, outcome) in outcomes.into_iter().enumerate() {
        clusters.push(cluster_ran(fleet, members, c, outcome).await?);
    }
    Ok(FleetRan {
        succeeded: failure.is_none(),
        journal,
        clusters,
        took,
    })
}

/// Before a batch: every shared component its clusters take from another cluster runs there
/// the version their runs assume (what the host's run left, when the host ran in an earlier
/// batch): the cross-cluster state `check` judged is the one the clusters are in.
async fn shared_as_expected(
    fleet: &Fleet,
    members: &dyn Members,
    batch: &[usize],
) -> Result<(), String> {
    for &c in batch {
        let pbc = &members.checked(c).playbooks[0].1;
        for s in &fleet.shared {
            if s.cluster == c || fleet.batch_of(s.cluster) >= fleet.batch_of(c) {
                continue;
            }
            let comp = &pbc.components[s.comp];
            let host = &members.checked(s.cluster).playbooks[0].1.components[s.comp];
            let live = members
                .cluster(s.cluster)
                .live_versions(host)
                .await
                .map_err(|e| {
                    format!(
                        "cluster `{}`: cannot read the shared `{}` in `{}`: {e}",
                        fleet.clusters[c].name, comp.name, fleet.clusters[s.cluster].name
                    )
                })?;
            if live != std::collections::BTreeSet::from([comp.from.clone()]) {
                return Err(format!(
                    "cluster `{}`: the shared `{}` runs {} in `{}`, but its run assumes {} (what `{}`'s run left); someone changed it since: nothing started in this batch",
                    fleet.clusters[c].name,
                    comp.name,
                    crate::matrix::format_set(live.iter()),
                    fleet.clusters[s.cluster].name,
                    comp.from,
                    fleet.clusters[s.cluster].name
                ));
            }
        }
    }
    Ok(())
}

/// Cluster `c` at the end: its versions, its lock, its journal.
async fn cluster_ran(
    fleet: &Fleet,
    members: &dyn Members,
    c: usize,
    outcome: Option<Outcome>,
) -> Result<ClusterRan, String> {
    let pbc = &members.checked(c).playbooks[0].1;
    let cluster = members.cluster(c);
    let mut finals = BTreeMap::new();
    for (i, comp) in pbc.components.iter().enumerate() {
        // A shared component hosted elsewhere is a stand-in here, not this cluster's.
        if !fleet.runs(c, i) {
            continue;
        }
        let vs = cluster
            .live_versions(comp)
            .await
            .map_err(|e| format!("cluster `{}`: {e}", fleet.clusters[c].name))?;
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
        .map_err(|e| e.to_string())?
        .is_some_and(|l| crate::run::kube::lock::live(&l));
    let events = crate::run::log::journal::load(&cluster, &pbc.digest)
        .await
        .map_err(|e| e.to_string())?
        .map(|j| j.events());
    let journal_end = events.as_ref().map(|ev| {
        ev.iter()
            .rev()
            .find_map(|e| match &e.event {
                crate::run::log::events::RunEvent::RunEnd { status, .. } => Some(status.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "(no run_end)".into())
    });
    Ok(ClusterRan {
        name: fleet.clusters[c].name.clone(),
        outcome,
        finals,
        lock_held,
        journal_events: events.as_ref().map_or(0, Vec::len),
        journal_end,
    })
}

/// One round of a soak's guards against cluster `c`.
async fn soak_round(
    members: &dyn Members,
    c: usize,
    soak: &crate::check::fleet::Soak,
    cancel: &Cancel,
) -> Result<(), String> {
    let pbc = &members.checked(c).playbooks[0].1;
    let env = pbc.envs.first();
    let secrets = members.secrets(c);
    let rewrite = members.rewrite(c);
    let live = Live {
        colours: Default::default(),
        secrets: secrets.clone(),
    };
    let scope = Scope::new(pbc, env, &live);
    let http = guards::client::client(guards::client::guard_rule(pbc, env, rewrite));
    let redact = Redactor::new(secrets.values().cloned());
    let cluster = members.cluster(c);
    let genv = GuardEnv {
        scope: &scope,
        playbook: std::sync::Arc::new(pbc.clone()),
        cluster: &cluster,
        http: &http,
        rewrite,
        cancel,
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

/// Signals for a fleet run: the first interrupts every cluster's run (each rolls back as its
/// own run would), a second stops at once; each cluster's journal says where it stopped.
pub(crate) fn spawn_signals(cancel: Cancel) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        loop {
            let name = tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    if r.is_err() {
                        return;
                    }
                    "Ctrl-C"
                }
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            };
            if cancel.interrupt() == 1 {
                eprintln!("\ninterrupted ({name}): every running cluster abandons its current statement safely and rolls back; no later wave starts (a second signal stops at once)");
                continue;
            }
            eprintln!("\nstopped at once by a second signal ({name}): clusters may be mid-change; `ktplay status --context CONTEXT` shows each cluster's journal, `ktplay run --resume` in that context finishes it");
            std::process::exit(crate::exit::Exit::Incomplete.code());
        }
    })
}
