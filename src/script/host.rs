//! What scripts reach outside themselves: HTTP and a read-only view of the cluster.
//!
//! [`Host`] is blocking (scripts run on a blocking thread). The real one, over reqwest and the
//! cluster, is the runner's (`ClusterHost` in `run/guards/script.rs`); tests and benchmarks have
//! their own.

use std::time::Duration;

use super::api::{HttpResponse, PodInfo};

/// A host call that failed; the script sees it as a thrown error with this text.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

/// The outside world as scripts see it. Every method blocks.
pub trait Host: Send + Sync {
    fn http(
        &self,
        method: &str,
        url: &str,
        body: Option<String>,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<HttpResponse, HostError>;
    /// An object of the playbook's namespace as JSON: kinds deployment, service, pod, configmap,
    /// replicaset.
    fn kube_get(&self, kind: &str, name: &str) -> Result<serde_json::Value, HostError>;
    fn pods(&self, component: &str) -> Result<Vec<PodInfo>, HostError>;
    /// The distinct versions a component's pods run, sorted.
    fn versions(&self, component: &str) -> Result<Vec<String>, HostError>;
}
