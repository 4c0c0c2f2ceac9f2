//! A canary's own Deployment (`<deploy>-canary`): created from the deployment's spec, adopted
//! only when this run made it, deleted only by uid.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::DeleteParams;
use serde_json::json;

use super::{
    canary_name, clean_template, post_params, retry, status_code, Cluster, ClusterError, Result,
};
use crate::version::Version;

impl Cluster {
    /// Create `<deploy>-canary`: the deployment's spec with the same selector labels plus
    /// `track: canary`, the container at `version`, `replicas` pods.
    pub async fn create_canary(
        &self,
        deploy: &str,
        container: &str,
        image: &str,
        version: &Version,
        replicas: i64,
    ) -> Result<String> {
        let d = self.deployment(deploy).await?;
        let name = canary_name(deploy);
        if let Some(existing) = self.deployment_opt(&name).await? {
            // Left by an interrupted process of this run (`--resume`): adopted. Anyone else's
            // is never taken for the canary.
            if self.ours(&existing) {
                return Ok(name);
            }
            return Err(self.not_ours("Deployment", &name, &existing));
        }
        let mut labels = d["spec"]["selector"]["matchLabels"].clone();
        if !labels.is_object() {
            labels = json!({});
        }
        labels["track"] = json!("canary");
        let mut template = clean_template(d["spec"]["template"].clone());
        template["metadata"]["labels"] = labels.clone();
        if let Some(cs) = template["spec"]["containers"].as_array_mut() {
            for c in cs.iter_mut().filter(|c| c["name"] == container) {
                c["image"] = json!(format!("{image}:{version}"));
            }
        }
        let mut spec = d["spec"].clone();
        spec["replicas"] = json!(replicas);
        spec["selector"] = json!({"matchLabels": labels});
        spec["template"] = template;
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.ns, "labels": self.marks(deploy)},
            "spec": spec,
        });
        let obj: Deployment =
            serde_json::from_value(obj).map_err(|e| ClusterError::Api(e.to_string()))?;
        self.may_write().await?;
        // A create that may have happened (the answer was lost) is retried; the retry's
        // AlreadyExists then means the first one did.
        match retry(|| async { self.deploys().create(&post_params(), &obj).await }).await {
            Ok(_) => {}
            Err(e) if status_code(&e) == Some(409) => match self.deployment_opt(&name).await? {
                Some(existing) if self.ours(&existing) => {}
                Some(existing) => return Err(self.not_ours("Deployment", &name, &existing)),
                None => {
                    return Err(ClusterError::request(
                        e,
                        "create",
                        &format!("deployment `{name}`"),
                    ))
                }
            },
            Err(e) => {
                return Err(ClusterError::request(
                    e,
                    "create",
                    &format!("deployment `{name}`"),
                ))
            }
        }
        Ok(name)
    }

    /// Delete a canary deployment this run created (and, with background propagation, its
    /// ReplicaSets and pods); a missing one is fine. One without this run's ownership mark is
    /// never deleted: [`ClusterError::NotOurs`]. The delete is conditional on the uid read, so
    /// an object put in its place meanwhile is not deleted either. Whether it existed.
    pub async fn delete_canary(&self, name: &str) -> Result<bool> {
        let Some(existing) = self.deployment_opt(name).await? else {
            return Ok(false);
        };
        if !self.ours(&existing) {
            return Err(self.not_ours("Deployment", name, &existing));
        }
        self.may_write().await?;
        let mut dp = DeleteParams::background();
        dp.preconditions =
            existing["metadata"]["uid"]
                .as_str()
                .map(|uid| kube::api::Preconditions {
                    uid: Some(uid.to_string()),
                    resource_version: None,
                });
        match retry(|| async { self.deploys().delete(name, &dp).await }).await {
            Ok(_) => Ok(true),
            Err(e) if status_code(&e) == Some(404) => Ok(false),
            Err(e) => Err(ClusterError::request(
                e,
                "delete",
                &format!("deployment `{name}`"),
            )),
        }
    }
}
