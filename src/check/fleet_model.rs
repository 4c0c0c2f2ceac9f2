//! The compatibility matrix across the clusters of a fleet.
//!
//! A shared component (`shared C in H`) runs once, in cluster `H`; every other cluster skips C's
//! statements and its components run beside C's versions in `H`. Each cluster's run is the
//! playbook's abstract run without the statements of components it does not run
//! (`model::trace`): its *trajectory* is the state before it and every state after.
//!
//! The fleet runs in *batches*: each wave's clusters in the order written, `parallel` at a time.
//! While batch `b` runs, a cluster of an earlier batch is at its last state, one of a later batch
//! at its first, and one of batch `b` at any state of its trajectory (clusters of a batch run at
//! once). Every cluster that does not host a shared component is checked in every configuration:
//! each of its states with the shared components replaced by their host's set, against the
//! matrix. Rollbacks: a cluster's rollback is taken to pass back through its forward states; under
//! `on failure stop` the failed cluster's rollback meets the others where they stand (a
//! configuration above), and under `on failure rollback fleet` the finished clusters roll back
//! one at a time in reverse order, each beside the ones before it (still upgraded) and after it
//! (already rolled back): those configurations are checked too.

use std::collections::BTreeSet;

use miette::SourceSpan;

use super::fleet::Fleet;
use crate::diag::Problem;
use crate::matrix::{format_set, Matrix, State, StateFinding};
use crate::model;
use crate::program::Playbook;
use crate::span::{FileId, Span};
use crate::syntax::ast::FleetPolicy;

/// A state across clusters that the matrix forbids.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("{when}: {state} — {why}")]
#[diagnostic(code(ktplay::compat::fleet_incompatible))]
pub(crate) struct FleetIncompatible {
    pub when: String,
    pub state: String,
    pub why: String,
    #[label("this wave reaches that state")]
    pub span: SourceSpan,
    #[help]
    pub help: String,
}

/// Every state of cluster `c`'s run, first to last, with the statements of components it does not
/// run left out.
pub(crate) fn trajectory(fleet: &Fleet, pb: &Playbook, c: usize) -> Vec<State> {
    let mut program = super::model::to_model(pb);
    for stage in &mut program.stages {
        stage
            .stmts
            .retain(|s| s.op.comp().is_none_or(|comp| fleet.runs(c, comp)));
    }
    let mut out = vec![program.initial_state()];
    for step in model::trace(&program) {
        out.extend(step.states);
    }
    out.dedup();
    out
}

/// What a cluster can be at while a configuration holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    First,
    Any,
    Last,
}

/// One moment of the fleet: where each cluster stands, and the wave that brings it about.
struct Config {
    at: Vec<At>,
    wave: usize,
    what: String,
}

fn configs(fleet: &Fleet) -> Vec<Config> {
    let n = fleet.clusters.len();
    let mut batches: Vec<(usize, Vec<usize>)> = Vec::new();
    for (w, wave) in fleet.waves.iter().enumerate() {
        for chunk in wave.clusters.chunks(wave.parallel.max(1)) {
            batches.push((w, chunk.to_vec()));
        }
    }
    let mut out = Vec::new();
    let mut done: BTreeSet<usize> = BTreeSet::new();
    for (w, batch) in &batches {
        let at = (0..n)
            .map(|c| {
                if batch.contains(&c) {
                    At::Any
                } else if done.contains(&c) {
                    At::Last
                } else {
                    At::First
                }
            })
            .collect();
        let names: Vec<&str> = batch
            .iter()
            .map(|&c| fleet.clusters[c].name.as_str())
            .collect();
        out.push(Config {
            at,
            wave: *w,
            what: format!(
                "while wave `{}` upgrades {}",
                fleet.waves[*w].name,
                names.join(", ")
            ),
        });
        done.extend(batch.iter().copied());
    }
    if fleet.policy == FleetPolicy::RollbackFleet {
        // The finished clusters roll back one at a time, last first.
        let order = fleet.order();
        for (k, &(w, c)) in order.iter().enumerate().rev() {
            let at = (0..n)
                .map(|x| {
                    if x == c {
                        At::Any
                    } else if order[..k].iter().any(|&(_, y)| y == x) {
                        At::Last
                    } else {
                        At::First
                    }
                })
                .collect();
            out.push(Config {
                at,
                wave: w,
                what: format!(
                    "while the fleet rolls back cluster `{}` (wave `{}`)",
                    fleet.clusters[c].name, fleet.waves[w].name
                ),
            });
        }
    }
    out
}

/// Every cross-cluster state of the fleet that the matrix forbids, one error per (cluster, pair).
pub(crate) fn check(file: FileId, fleet: &Fleet, pb: &Playbook, matrix: &Matrix) -> Vec<Problem> {
    if fleet.shared.is_empty() || fleet.waves.is_empty() {
        return Vec::new();
    }
    let trajectories: Vec<Vec<State>> = (0..fleet.clusters.len())
        .map(|c| trajectory(fleet, pb, c))
        .collect();
    let roles = super::model::to_model(pb).roles();
    let hosts: BTreeSet<usize> = fleet.shared.iter().map(|s| s.cluster).collect();
    let states = |c: usize, at: At| -> &[State] {
        let t = &trajectories[c];
        match at {
            At::First => &t[..1],
            At::Last => &t[t.len() - 1..],
            At::Any => t,
        }
    };
    let mut reported: BTreeSet<(usize, String, String)> = BTreeSet::new();
    let mut out = Vec::new();
    for config in configs(fleet) {
        for c in 0..fleet.clusters.len() {
            if hosts.contains(&c) && fleet.shared.iter().all(|s| s.cluster == c) {
                continue;
            }
            for local in states(c, config.at[c]) {
                // Every combination of the hosts' states beside this one.
                let mut combined: Vec<(State, Vec<String>)> = vec![(local.clone(), Vec::new())];
                for s in &fleet.shared {
                    if s.cluster == c {
                        continue;
                    }
                    let name = &pb.components[s.comp].name;
                    let mut next = Vec::new();
                    for (st, notes) in &combined {
                        for host_state in states(s.cluster, config.at[s.cluster]) {
                            let set = host_state.get(name).cloned().unwrap_or_default();
                            let mut st = st.clone();
                            let mut notes = notes.clone();
                            notes.push(format!(
                                "`{}` runs {name} {}",
                                fleet.clusters[s.cluster].name,
                                format_set(set.iter())
                            ));
                            st.insert(name.clone(), set);
                            next.push((st, notes));
                        }
                    }
                    combined = next;
                }
                for (st, notes) in combined {
                    for f in matrix.check_state(&st, &roles) {
                        let StateFinding::Incompatible {
                            hub,
                            hub_version,
                            peer,
                            peer_version,
                            row,
                            allowed,
                        } = &f
                        else {
                            continue;
                        };
                        let crosses = |a: &str| {
                            pb.component(a)
                                .is_some_and(|i| fleet.host_of(i).is_some_and(|h| h != c))
                        };
                        // Only pairs across clusters: the playbook's own model holds the rest.
                        if crosses(hub) == crosses(peer) {
                            continue;
                        }
                        let pair = format!("{hub} {hub_version} × {peer} {peer_version}");
                        if !reported.insert((c, pair.clone(), String::new())) {
                            continue;
                        }
                        let (shared_name, local_name) = if crosses(hub) {
                            (hub, peer)
                        } else {
                            (peer, hub)
                        };
                        let host = pb
                            .component(shared_name)
                            .and_then(|i| fleet.host_of(i))
                            .map_or("?", |h| fleet.clusters[h].name.as_str());
                        let local_set = st.get(local_name.as_str()).cloned().unwrap_or_default();
                        out.push(Problem::new(
                            file,
                            FleetIncompatible {
                                when: config.what.clone(),
                                state: format!(
                                    "cluster `{}` runs {local_name} {} while {}",
                                    fleet.clusters[c].name,
                                    format_set(local_set.iter()),
                                    notes.join(" and ")
                                ),
                                why: format!(
                                    "{peer} {peer_version} may not run beside {hub} {hub_version} ({} allows {})",
                                    matrix.describe_row(*row),
                                    Matrix::describe_allowed(
                                        roles.get(peer.as_str()).unwrap_or(peer),
                                        allowed
                                    )
                                ),
                                span: span_of(fleet, config.wave).into(),
                                help: format!(
                                    "the clusters share {shared_name} from `{host}`: upgrade `{host}` in an earlier wave than `{}` (or in the same batch only if every mix is allowed)",
                                    fleet.clusters[c].name
                                ),
                            },
                        ));
                    }
                }
            }
        }
    }
    out
}

fn span_of(fleet: &Fleet, wave: usize) -> Span {
    fleet.waves[wave].span
}

#[cfg(test)]
mod tests {
    const PLAYBOOK: &str = r#"
playbook "p" {
  namespace "k"
  matrix keeptrusts
  component api { deployment "api" image "k/api" from 1.4.2 to 1.5.0 }
  component gateway { deployment "gw" image "k/gateway" from 1.4.1 to 1.5.0 }
  env production { context "prod" }
  stage api { rolling api }
  stage gateway { rolling gateway }
}
"#;

    /// The codes and messages of checking the playbook with this fleet (waves given).
    fn fleet(policy: &str, waves: &str) -> Vec<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{PLAYBOOK}\nfleet \"f\" {{\n  playbook \"p.ktplay\"\n  env production\n  on failure {policy}\n  shared api in core\n  cluster core {{ context \"core\" }}\n  cluster eu {{ context \"eu\" }}\n  cluster us {{ context \"us\" }}\n{waves}\n}}\n"
        );
        let path = dir.path().join("p.ktplay");
        std::fs::write(&path, &text).unwrap();
        let checked = crate::check::check_paths(&[path]).unwrap();
        checked
            .problems
            .iter()
            .map(|p| (p.code(), format!("{p:?}")))
            .collect()
    }

    #[test]
    fn the_shared_api_first_is_clean_under_both_policies() {
        for policy in ["stop", "rollback fleet"] {
            let found = fleet(
                policy,
                "wave core { clusters core }\nwave rest { clusters eu us parallel 2 }",
            );
            assert!(found.is_empty(), "{policy}: {found:?}");
        }
    }

    #[test]
    fn gateways_before_the_shared_api_name_the_state() {
        for policy in ["stop", "rollback fleet"] {
            let found = fleet(
                policy,
                "wave eu { clusters eu }\nwave core { clusters core us }",
            );
            let codes: Vec<&str> = found.iter().map(|(c, _)| c.as_str()).collect();
            assert_eq!(codes, ["ktplay::compat::fleet_incompatible"], "{found:?}");
            let msg = &found[0].1;
            assert!(msg.contains("wave `eu` upgrades eu"), "{msg}");
            assert!(
                msg.contains("cluster `eu` runs gateway {1.4.1, 1.5.0}"),
                "{msg}"
            );
            assert!(msg.contains("`core` runs api {1.4.2}"), "{msg}");
            assert!(
                msg.contains("gateway 1.5.0 may not run beside api 1.4.2"),
                "{msg}"
            );
        }
    }

    #[test]
    fn a_region_in_the_hosts_batch_meets_every_mix() {
        // Sequential within the wave (parallel 1): core finishes first, clean.
        assert!(fleet(
            "stop",
            "wave all { clusters core eu }\nwave rest { clusters us }"
        )
        .is_empty());
        // At once: eu's gateway may reach 1.5.0 while core still runs api 1.4.2.
        let found = fleet(
            "stop",
            "wave all { clusters core eu parallel 2 }\nwave rest { clusters us }",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].1.contains("wave `all` upgrades core, eu"),
            "{found:?}"
        );
        // Listed region first within the wave: the same violation.
        let found = fleet(
            "stop",
            "wave all { clusters eu core }\nwave rest { clusters us }",
        );
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn the_cluster_that_hosts_the_api_skips_nothing_and_the_others_skip_the_api() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{PLAYBOOK}\nfleet \"f\" {{\n  playbook \"p.ktplay\"\n  env production\n  shared api in core\n  cluster core {{ context \"core\" }}\n  cluster eu {{ context \"eu\" }}\n  wave a {{ clusters core }}\n  wave b {{ clusters eu }}\n}}\n"
        );
        let path = dir.path().join("p.ktplay");
        std::fs::write(&path, &text).unwrap();
        let checked = crate::check::check_paths(&[path]).unwrap();
        let (_, fl) = &checked.fleets[0];
        let pb = &checked.playbooks[fl.playbook].1;
        let core = super::trajectory(fl, pb, 0);
        let eu = super::trajectory(fl, pb, 1);
        let api = |s: &crate::matrix::State| crate::matrix::format_set(s["api"].iter());
        assert_eq!(api(core.last().unwrap()), "{1.5.0}");
        assert_eq!(api(eu.last().unwrap()), "{1.4.2}", "eu does not run api");
        let gw = |s: &crate::matrix::State| crate::matrix::format_set(s["gateway"].iter());
        assert_eq!(gw(eu.last().unwrap()), "{1.5.0}");
    }
}
