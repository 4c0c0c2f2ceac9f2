//! Follow mode: the simulated Keeptrusts services in front of a REAL cluster.
//!
//! A real control plane in a test has no containers (the harness's fake kubelet runs none), so
//! nothing answers a playbook's HTTP guards. A follower is a simulator whose controllers never
//! run: its store is a copy of the real namespace's pods, Services and Deployments, refreshed
//! every few milliseconds through the Kubernetes API — and once more before every request its
//! services answer, so an answer never lags the real pods — and its services answer as the real
//! pods' versions and readiness say, exactly as they do over the simulator's own objects.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> std::io::Result<()> {
//! use ktplay_sim::{Seed, Sim, SimConfig};
//! let sim = Sim::follower(SimConfig::default());
//! let seed = Seed::keeptrusts("keeptrusts", "1.4.0".parse().unwrap());
//! sim.register(&seed); // roles and service targets; no objects are created
//! let _task = ktplay_sim::follow::follow(sim.clone(), client, "keeptrusts".into());
//! let running = sim.start("127.0.0.1:0".parse().unwrap()).await?;
//! # let _ = running; Ok(()) }
//! ```

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use serde_json::Value;

use super::discovery::Kind;
use super::{lock, Sim};

/// How often the follower re-reads the namespace.
pub const EVERY: Duration = Duration::from_millis(150);

fn values<T: serde::Serialize>(items: Vec<T>) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .map(|mut v| {
            if let Some(m) = v["metadata"].as_object_mut() {
                m.remove("managedFields");
            }
            v
        })
        .collect()
}

/// Copy the namespace's pods, Services and Deployments into `sim` once.
pub async fn sync(sim: &Sim, client: &kube::Client, ns: &str) -> Result<(), kube::Error> {
    // Reads and writes in order: whoever starts a read after another's write sees at least it.
    let _one_at_a_time = sim.inner.follow_sync.lock().await;
    let lp = ListParams::default();
    let pods = Api::<Pod>::namespaced(client.clone(), ns).list(&lp).await?;
    let svcs = Api::<Service>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?;
    let deps = Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?;
    let mut store = lock(&sim.inner.store);
    store.mirror(Kind::Pod, ns, values(pods.items));
    store.mirror(Kind::Service, ns, values(svcs.items));
    store.mirror(Kind::Deployment, ns, values(deps.items));
    Ok(())
}

/// Keep `sim` a copy of the namespace until the task is aborted (or the simulator dropped).
/// A failed read is retried at the next tick.
pub fn follow(sim: Sim, client: kube::Client, ns: String) -> tokio::task::JoinHandle<()> {
    *sim.inner.follow.write().unwrap_or_else(|e| e.into_inner()) =
        Some((client.clone(), ns.clone()));
    let weak = std::sync::Arc::downgrade(&sim.inner);
    drop(sim);
    tokio::spawn(async move {
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let sim = Sim { inner };
            let _ = sync(&sim, &client, &ns).await;
            drop(sim);
            tokio::time::sleep(EVERY).await;
        }
    })
}
