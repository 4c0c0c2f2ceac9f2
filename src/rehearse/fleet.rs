//! A fleet rehearsed: one simulator per cluster, each seeded with what that cluster runs
//! (`Fleet::playbook_for`), on a virtual clock (as `ktplay test`: a soak of 10 minutes takes its
//! full simulated length in almost no wall time), driven by [`crate::run::fleet::drive`] as a
//! real fleet run is; every `approve` is answered yes (a rehearsal).

use std::collections::HashMap;
use std::time::Duration;

use crate::check::fleet::Fleet;
use crate::check::select::Selection;
use crate::check::Checked;
use crate::rehearse::RehearseError;
use crate::run::fleet::{Approvals, FleetRan, Members};
use crate::run::guards::UrlRewrite;
use crate::run::kube::Cluster;
use crate::run::log::output::Format;
use crate::run::{Cancel, RunOptions};
use crate::sim::{Fault, Faults};

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

/// The simulated clusters of a rehearsal.
struct Simulated<'a> {
    derived: &'a [Checked],
    matrix: Option<&'a crate::matrix::Matrix>,
    sims: Vec<super::Rehearsal>,
}

impl Members for Simulated<'_> {
    fn checked(&self, c: usize) -> &Checked {
        &self.derived[c]
    }
    fn matrix(&self) -> Option<&crate::matrix::Matrix> {
        self.matrix
    }
    fn cluster(&self, c: usize) -> Cluster {
        self.sims[c].cluster()
    }
    fn options(&self, c: usize) -> RunOptions {
        RunOptions {
            format: Format::Quiet,
            ..self.sims[c].options()
        }
    }
    fn secrets(&self, c: usize) -> &HashMap<String, String> {
        &self.sims[c].secrets
    }
    fn rewrite(&self, c: usize) -> &UrlRewrite {
        &self.sims[c].rewrite
    }
}

/// Rehearse `fleet` with these faults.
pub(crate) fn rehearse(
    checked: &Checked,
    fleet: &Fleet,
    faults: &[String],
) -> Result<FleetRan, RehearseError> {
    crate::run::fleet::admit(fleet, Approvals::Rehearsal).map_err(RehearseError::Fleet)?;
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
    rt.block_on(async {
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
        let members = Simulated {
            derived: &derived,
            matrix,
            sims,
        };
        let ran = crate::run::fleet::drive(
            fleet,
            &members,
            Approvals::Rehearsal,
            &Cancel::signals_handled_by_caller(),
            &|_| {},
        )
        .await;
        for sim in members.sims {
            sim.shutdown().await;
        }
        ran.map_err(RehearseError::Fleet)
    })
}
