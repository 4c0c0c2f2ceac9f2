//! The read-only view of the cluster that scripts get (`kube_get`, `pods`, `versions`).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::script::PodInfo;

use super::{words, Cluster};

impl Cluster {
    /// An object of the namespace as JSON: kinds deployment, service, pod, configmap,
    /// replicaset (any case, plural or not).
    pub async fn object_json(&self, kind: &str, name: &str) -> Result<Value, String> {
        let c = self.client.clone();
        let ns = self.ns.as_str();
        let err = |e: kube::Error| format!("cannot get {kind} {name}: {}", words(&e));
        let to_json = |v: Result<Value, serde_json::Error>| v.map_err(|e| e.to_string());
        match kind.to_ascii_lowercase().trim_end_matches('s') {
            "deployment" => to_json(serde_json::to_value(Api::<Deployment>::namespaced(c, ns).get(name).await.map_err(err)?)),
            "service" => to_json(serde_json::to_value(Api::<Service>::namespaced(c, ns).get(name).await.map_err(err)?)),
            "pod" => to_json(serde_json::to_value(Api::<Pod>::namespaced(c, ns).get(name).await.map_err(err)?)),
            "configmap" => to_json(serde_json::to_value(Api::<ConfigMap>::namespaced(c, ns).get(name).await.map_err(err)?)),
            "replicaset" => to_json(serde_json::to_value(Api::<ReplicaSet>::namespaced(c, ns).get(name).await.map_err(err)?)),
            other => Err(format!(
                "kube_get does not read `{other}`; kinds: deployment, service, pod, configmap, replicaset"
            )),
        }
    }

    /// The pods of some deployments as scripts see them; `container`'s image tag is the version.
    pub async fn pod_infos(
        &self,
        deployments: &[String],
        container: &str,
    ) -> Result<Vec<PodInfo>, String> {
        let deploys: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let mut out = Vec::new();
        for d in deployments {
            let dep = deploys
                .get(d)
                .await
                .map_err(|e| format!("cannot read deployment {d}: {}", words(&e)))?;
            let labels = dep.spec.selector.match_labels.unwrap_or_default();
            let selector = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| format!("cannot list pods of {d}: {}", words(&e)))?;
            for p in list.items {
                let spec = p.spec.clone().unwrap_or_default();
                let image = spec
                    .containers
                    .iter()
                    .find(|c| c.name == container)
                    .or(spec.containers.first())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default();
                let version = ktplay_imageref::image_tag(&image)
                    .unwrap_or_default()
                    .to_string();
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
