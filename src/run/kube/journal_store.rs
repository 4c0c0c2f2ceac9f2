//! Where the journal lives on a cluster: a ConfigMap's `data`, read and merge-patched (created
//! when missing). What the data means is [`crate::run::log::journal`]'s.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Patch;
use serde_json::json;

use super::{patch_params, post_params, retry, status_code, words, Cluster};

impl Cluster {
    /// The `data` of the journal ConfigMap `name`; `None` when there is none.
    pub async fn read_journal(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        let api = self.config_maps();
        match retry(|| async { api.get_opt(name).await }).await {
            Ok(Some(cm)) => Ok(Some(cm.data.unwrap_or_default().into_iter().collect())),
            Ok(None) => Ok(None),
            Err(e) => Err(format!(
                "cannot read the journal {}/{name}: {}",
                self.ns,
                words(&e)
            )),
        }
    }

    /// Write `data` to the journal ConfigMap `name` (merge patch; create when missing).
    pub async fn write_journal(
        &self,
        name: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let api = self.config_maps();
        let patch = Patch::Merge(json!({"data": data}));
        let pp = patch_params();
        let failed = |e: kube::Error, verb: &str| {
            format!(
                "could not write the journal: cannot {verb} ConfigMap `{name}` in namespace `{}`: {}",
                self.ns,
                words(&e)
            )
        };
        match retry(|| async { api.patch(name, &pp, &patch).await }).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "labels": {
                        "app.kubernetes.io/managed-by": "ktplay",
                    }},
                    "data": data,
                }))
                .map_err(|e| format!("could not build the journal ConfigMap: {e}"))?;
                match retry(|| async { api.create(&post_params(), &cm).await }).await {
                    Ok(_) => Ok(()),
                    // Created meanwhile (or by an attempt whose answer was lost): patch it.
                    Err(e) if status_code(&e) == Some(409) => {
                        retry(|| async { api.patch(name, &pp, &patch).await })
                            .await
                            .map(|_| ())
                            .map_err(|e| failed(e, "patch"))
                    }
                    Err(e) => Err(failed(e, "create")),
                }
            }
            Err(e) => Err(failed(e, "patch")),
        }
    }
}
