//! What scripts reach outside themselves: HTTP and a read-only view of the cluster.
//!
//! [`Host`] is blocking (scripts run on a blocking thread); [`ClusterHost`] is the real one,
//! over reqwest and kube, bridging into the async runtime with a captured `Handle`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, ListParams};

use super::api::{HttpResponse, PodInfo};

/// The largest response body a script's HTTP call reads.
pub const MAX_BODY: usize = 4 << 20;

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

/// A component as the host needs it: its deployments and the container whose tag is the version.
#[derive(Debug, Clone)]
pub struct HostComponent {
    pub name: String,
    pub deployments: Vec<String>,
    pub container: String,
}

/// A URL as it is sent, or why it may not be sent.
pub type RouteFn = dyn Fn(&str) -> Result<String, String> + Send + Sync;

/// The real host: HTTP through reqwest, the cluster through kube, read-only.
pub struct ClusterHost {
    pub handle: tokio::runtime::Handle,
    pub http: reqwest::Client,
    pub client: kube::Client,
    pub namespace: String,
    pub components: Vec<HostComponent>,
    /// Rewrites URLs before they are requested (rehearsals route env URLs to the simulator),
    /// or refuses them (a rehearsal never leaves loopback).
    pub rewrite: Arc<RouteFn>,
}

impl ClusterHost {
    fn component(&self, name: &str) -> Result<&HostComponent, HostError> {
        self.components
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.components.iter().map(|c| c.name.as_str()).collect();
                HostError(format!(
                    "no component `{name}`; the playbook has {}",
                    names.join(", ")
                ))
            })
    }

    async fn pods_async(&self, comp: &HostComponent) -> Result<Vec<PodInfo>, HostError> {
        let deploys: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut out = Vec::new();
        for d in &comp.deployments {
            let dep = deploys.get(d).await.map_err(|e| {
                HostError(format!(
                    "cannot read deployment {d}: {}",
                    crate::run::kube::words(&e)
                ))
            })?;
            let labels = dep.spec.selector.match_labels.unwrap_or_default();
            let selector = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| {
                    HostError(format!(
                        "cannot list pods of {d}: {}",
                        crate::run::kube::words(&e)
                    ))
                })?;
            for p in list.items {
                let spec = p.spec.clone().unwrap_or_default();
                let image = spec
                    .containers
                    .iter()
                    .find(|c| c.name == comp.container)
                    .or(spec.containers.first())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default();
                let version = image
                    .rsplit_once(':')
                    .map(|(_, t)| t.to_string())
                    .unwrap_or_default();
                let status = p.status.clone().unwrap_or_default();
                let ready = status
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let restarts = status
                    .container_statuses
                    .unwrap_or_default()
                    .iter()
                    .map(|c| c.restart_count as i64)
                    .sum();
                out.push(PodInfo {
                    name: p.metadata.name.unwrap_or_default(),
                    version,
                    ready,
                    restarts,
                });
            }
        }
        Ok(out)
    }
}

fn to_json<T: serde::Serialize>(v: T) -> Result<serde_json::Value, HostError> {
    serde_json::to_value(v).map_err(|e| HostError(e.to_string()))
}

impl Host for ClusterHost {
    fn http(
        &self,
        method: &str,
        url: &str,
        body: Option<String>,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<HttpResponse, HostError> {
        let url = (self.rewrite)(url).map_err(HostError)?;
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| HostError(e.to_string()))?;
        let mut req = self.http.request(method, &url).timeout(timeout);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        self.handle.block_on(async move {
            let resp = req
                .send()
                .await
                .map_err(|e| HostError(format!("request failed: {}", without_url(&e))))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect();
            // A body is at most MAX_BODY: a script's memory budget must not be spent in one call.
            let mut resp = resp;
            let mut bytes = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| HostError(format!("reading the body failed: {}", without_url(&e))))?
            {
                if bytes.len() + chunk.len() > MAX_BODY {
                    return Err(HostError(format!(
                        "the response body is larger than {} MiB",
                        MAX_BODY >> 20
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            let body = String::from_utf8_lossy(&bytes).into_owned();
            Ok(HttpResponse {
                status,
                body,
                headers,
            })
        })
    }

    fn kube_get(&self, kind: &str, name: &str) -> Result<serde_json::Value, HostError> {
        let c = self.client.clone();
        let ns = self.namespace.clone();
        let err = |e: kube::Error| {
            HostError(format!(
                "cannot get {kind} {name}: {}",
                crate::run::kube::words(&e)
            ))
        };
        self.handle.block_on(async move {
            match kind.to_ascii_lowercase().trim_end_matches('s') {
                "deployment" => to_json(Api::<Deployment>::namespaced(c, &ns).get(name).await.map_err(err)?),
                "service" => to_json(Api::<Service>::namespaced(c, &ns).get(name).await.map_err(err)?),
                "pod" => to_json(Api::<Pod>::namespaced(c, &ns).get(name).await.map_err(err)?),
                "configmap" => to_json(Api::<ConfigMap>::namespaced(c, &ns).get(name).await.map_err(err)?),
                "replicaset" => to_json(Api::<ReplicaSet>::namespaced(c, &ns).get(name).await.map_err(err)?),
                other => Err(HostError(format!(
                    "kube_get does not read `{other}`; kinds: deployment, service, pod, configmap, replicaset"
                ))),
            }
        })
    }

    fn pods(&self, component: &str) -> Result<Vec<PodInfo>, HostError> {
        let comp = self.component(component)?;
        self.handle.block_on(self.pods_async(comp))
    }

    fn versions(&self, component: &str) -> Result<Vec<String>, HostError> {
        let mut v: Vec<String> = self
            .pods(component)?
            .into_iter()
            .map(|p| p.version)
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }
}

/// reqwest errors print the URL, which may carry a query the playbook considers private; keep
/// the reason only.
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        let text = e.to_string();
        let mut s: String = text.split(" for url").next().unwrap_or(&text).to_string();
        // The reason a redirect was not followed is in the source.
        let mut src = std::error::Error::source(e);
        while let Some(inner) = src {
            s.push_str(&format!(": {inner}"));
            src = inner.source();
        }
        s.chars().take(300).collect()
    }
}
