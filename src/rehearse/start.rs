//! One way to rehearse: a selection's simulator started, seeded and wired, the same for
//! `ktplay rehearse`, `ktplay sim serve` and `ktplay test`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::check::select::Selection;
use crate::run::guards::UrlRewrite;
use crate::run::kube::Cluster;
use crate::run::RunOptions;
use crate::sim::{Faults, Running, ServeOptions, Sim, SimConfig};

/// How fast the simulated pods move.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// One step of a pod's life.
    pub step: Duration,
    /// A rollout making no progress for this long fails (the simulator's default when `None`).
    pub progress_deadline: Option<Duration>,
}

/// Where the simulator listens.
#[derive(Debug, Clone)]
pub enum Listen {
    /// Any free port on 127.0.0.1, for a run in this process.
    Loopback,
    /// `sim serve`: this port on 127.0.0.1 (0: any), a kubeconfig written for it.
    Serve { port: u16, kubeconfig: PathBuf },
}

/// A started rehearsal: the simulator seeded from the playbook at its `from` versions.
pub struct Rehearsal {
    pub running: Running,
    /// The env's namespace, where the components are seeded.
    pub namespace: String,
    /// The secrets a run sends: the environment's, else generated stand-ins.
    pub secrets: HashMap<String, String>,
    /// The secrets that were not set and got stand-ins.
    pub generated: Vec<String>,
    /// The env's URLs routed to the simulated services.
    pub rewrite: UrlRewrite,
    /// What people should know about the routing and the generic services.
    pub notes: Vec<String>,
}

impl Rehearsal {
    /// Start the simulator for a selection, on loopback, for a run in this process.
    pub async fn start(
        sel: &Selection<'_>,
        faults: Faults,
        pace: Pace,
    ) -> Result<Rehearsal, super::RehearseError> {
        Rehearsal::start_at(sel, faults, pace, Listen::Loopback).await
    }

    /// Start the simulator for a selection where `listen` says.
    pub async fn start_at(
        sel: &Selection<'_>,
        faults: Faults,
        pace: Pace,
        listen: Listen,
    ) -> Result<Rehearsal, super::RehearseError> {
        let (pb, env) = (sel.playbook, sel.env);
        let namespace = sel.namespace();
        let (secrets, generated) = super::secrets(pb, env);
        let (generic, generic_notes) = super::generic::generic_for(pb, env, &secrets, sel.matrix);
        let config = SimConfig {
            pace: pace.step,
            faults,
            progress_deadline: pace
                .progress_deadline
                .or(SimConfig::default().progress_deadline),
            compat: super::compat_for(pb, sel.matrix),
            generic,
        };
        let seed = super::seed_for(pb, &namespace);
        let running = match listen {
            Listen::Loopback => {
                let sim = Sim::new(config);
                sim.seed(&seed);
                sim.start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                    .await
                    .map_err(|e| super::RehearseError::Start(e.to_string()))?
            }
            Listen::Serve { port, kubeconfig } => {
                let opts = ServeOptions {
                    port,
                    kubeconfig: Some(kubeconfig),
                    seed: Some(seed),
                    config,
                };
                crate::sim::serve::start_serving(&opts).await.map_err(|e| {
                    super::RehearseError::Serve(format!("{:?}", miette::Report::new(e)))
                })?
            }
        };
        let (rewrite, mut notes) = super::url_rewrite(pb, env, &running, &secrets);
        notes.extend(generic_notes);
        Ok(Rehearsal {
            running,
            namespace,
            secrets,
            generated,
            rewrite,
            notes,
        })
    }

    /// The simulated cluster, in process.
    pub fn cluster(&self) -> Cluster {
        Cluster::in_process(self.running.sim().router(), &self.namespace)
    }

    /// The options of a run against it: its secrets and routes, marked a rehearsal.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            rehearsal: true,
            ..RunOptions::new(self.secrets.clone(), self.rewrite.clone())
        }
    }

    /// Stop the simulator.
    pub async fn shutdown(self) {
        self.running.shutdown().await
    }
}
