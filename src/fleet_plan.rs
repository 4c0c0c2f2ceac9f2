//! The plan of a fleet: every wave in order, every cluster of each with its own plan (the
//! playbook for that cluster's env, without the statements of components another cluster
//! hosts), the soaks with their guards for each cluster they watch, the approvals, and what the
//! failure policy does.

use serde::Serialize;

use crate::check::fleet::{Fleet, SOAK_EVERY};
use crate::plan::{describe, Plan};
use crate::program::Playbook;
use crate::resolve::{Live, Scope};
use crate::source::SourceMap;
use crate::span::FileId;
use crate::syntax::ast::FleetPolicy;

#[derive(Debug, Serialize)]
pub struct FleetPlan {
    pub fleet: String,
    pub playbook: String,
    pub digest: String,
    pub on_failure: &'static str,
    /// `api in core`
    pub shared: Vec<String>,
    pub waves: Vec<WavePlan>,
    /// What happens on a failure, in words.
    pub failure: String,
}

#[derive(Debug, Serialize)]
pub struct WavePlan {
    pub name: String,
    pub parallel: usize,
    pub clusters: Vec<ClusterPlan>,
    pub soak: Option<SoakPlan>,
    pub approve: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ClusterPlan {
    /// 1-based, in fleet order.
    pub position: usize,
    pub name: String,
    pub context: String,
    pub env: Option<String>,
    /// Components this cluster leaves to the cluster that hosts them.
    pub skips: Vec<String>,
    pub plan: Plan,
}

#[derive(Debug, Serialize)]
pub struct SoakPlan {
    pub seconds: u64,
    pub every_seconds: u64,
    /// Per finished cluster, its guards resolved with its lets.
    pub watches: Vec<(String, Vec<String>)>,
}

/// The plan of `fleet` over its (checked) playbook `pb`, from `file` (the playbook's file).
pub fn plan(fleet: &Fleet, pb: &Playbook, sources: &SourceMap, file: FileId) -> FleetPlan {
    let mut waves = Vec::new();
    let mut finished: Vec<usize> = Vec::new();
    let mut position = 0;
    for wave in &fleet.waves {
        let mut clusters = Vec::new();
        for &c in &wave.clusters {
            position += 1;
            let own = fleet.playbook_for(pb, c);
            let env = &own.envs[0];
            let skips = fleet
                .shared
                .iter()
                .filter(|s| s.cluster != c)
                .map(|s| {
                    format!(
                        "{} (from {})",
                        pb.components[s.comp].name, fleet.clusters[s.cluster].name
                    )
                })
                .collect();
            clusters.push(ClusterPlan {
                position,
                name: fleet.clusters[c].name.clone(),
                context: fleet.clusters[c].context.clone(),
                env: fleet.clusters[c].env.clone(),
                skips,
                plan: crate::plan::plan(&own, Some(env), sources, file),
            });
            finished.push(c);
        }
        let soak = wave.soak.as_ref().map(|s| SoakPlan {
            seconds: s.time.as_secs(),
            every_seconds: SOAK_EVERY.as_secs(),
            watches: finished
                .iter()
                .map(|&c| {
                    let env = fleet.env_for(pb, c);
                    let live = Live::default();
                    let scope = Scope::new(pb, Some(&env), &live);
                    (
                        fleet.clusters[c].name.clone(),
                        s.guards.iter().map(|g| describe(&g.op, &scope)).collect(),
                    )
                })
                .collect(),
        });
        waves.push(WavePlan {
            name: wave.name.clone(),
            parallel: wave.parallel,
            clusters,
            soak,
            approve: wave.approve.clone(),
        });
    }
    let order: Vec<&str> = fleet
        .order()
        .iter()
        .map(|&(_, c)| fleet.clusters[c].name.as_str())
        .collect();
    let failure = match fleet.policy {
        FleetPolicy::Stop => "stop: the failed cluster rolls back as its playbook says; clusters that finished stay upgraded (the command that rolls each back is printed); later waves do not start".to_string(),
        FleetPolicy::RollbackFleet => {
            let mut rev = order.clone();
            rev.reverse();
            format!(
                "rollback fleet: the failed cluster rolls back, then every finished cluster in reverse order ({})",
                rev.join(", ")
            )
        }
    };
    FleetPlan {
        fleet: fleet.name.clone(),
        playbook: pb.name.clone(),
        digest: pb.digest.clone(),
        on_failure: match fleet.policy {
            FleetPolicy::Stop => "stop",
            FleetPolicy::RollbackFleet => "rollback fleet",
        },
        shared: fleet
            .shared
            .iter()
            .map(|s| {
                format!(
                    "{} in {}",
                    pb.components[s.comp].name, fleet.clusters[s.cluster].name
                )
            })
            .collect(),
        waves,
        failure,
    }
}

/// The plan for people.
pub fn render_human(p: &FleetPlan) -> String {
    let mut out = format!(
        "Plan for fleet \"{}\": playbook \"{}\" (digest {}), on failure {}\n",
        p.fleet,
        p.playbook,
        &p.digest[..16.min(p.digest.len())],
        p.on_failure
    );
    if !p.shared.is_empty() {
        out.push_str(&format!("  shared: {}\n", p.shared.join(", ")));
    }
    for (i, w) in p.waves.iter().enumerate() {
        out.push_str(&format!(
            "\n== wave {} `{}`: {} ({} at a time)\n",
            i + 1,
            w.name,
            w.clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            w.parallel
        ));
        for c in &w.clusters {
            out.push_str(&format!(
                "\n-- cluster {}. `{}`: context {}{}{}\n",
                c.position,
                c.name,
                c.context,
                c.env
                    .as_ref()
                    .map(|e| format!(", env {e}"))
                    .unwrap_or_default(),
                if c.skips.is_empty() {
                    String::new()
                } else {
                    format!(", leaves {}", c.skips.join(", "))
                }
            ));
            for line in crate::plan::render_human(&c.plan).lines() {
                if line.is_empty() {
                    out.push('\n');
                } else {
                    out.push_str(&format!("   {line}\n"));
                }
            }
        }
        if let Some(s) = &w.soak {
            out.push_str(&format!(
                "\n   soak {}s after wave `{}`: every {}s, against every finished cluster; a failure fails the wave\n",
                s.seconds, w.name, s.every_seconds
            ));
            for (cluster, guards) in &s.watches {
                for g in guards {
                    out.push_str(&format!("     · {cluster}: {g}\n"));
                }
                if guards.is_empty() {
                    out.push_str(&format!("     · {cluster}: (no guards: only waits)\n"));
                }
            }
        }
        if let Some(q) = &w.approve {
            out.push_str(&format!("\n   approve \"{q}\" before the next wave\n"));
        }
    }
    out.push_str(&format!("\nOn failure: {}\n", p.failure));
    let clusters: usize = p.waves.iter().map(|w| w.clusters.len()).sum();
    out.push_str(&format!(
        "Plan: {} wave{}, {} cluster{}.\n",
        p.waves.len(),
        if p.waves.len() == 1 { "" } else { "s" },
        clusters,
        if clusters == 1 { "" } else { "s" }
    ));
    out
}
