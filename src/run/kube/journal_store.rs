//! Where the journal lives on a cluster: a ConfigMap's `data`, read and merge-patched (created
//! when missing). What the data means is [`crate::run::log::journal`]'s.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Patch;
use serde_json::json;

use super::{patch_params, post_params, retry, status_code, words, Cluster, ClusterError};

/// What can go wrong with a run's journal: reading or writing its ConfigMap (here), and what
/// [`crate::run::log::journal`] finds in it or refuses to write. Each names the ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JournalError {
    #[error("cannot read the journal {ns}/{name}: {cause}")]
    Read {
        ns: String,
        name: String,
        cause: String,
    },
    #[error("could not write the journal: cannot {verb} ConfigMap `{name}` in namespace `{ns}`: {cause}")]
    Write {
        verb: &'static str,
        name: String,
        ns: String,
        cause: String,
    },
    #[error("could not build the journal ConfigMap: {0}")]
    Build(String),
    /// This process may not write (the run lock is lost): the journal is the new holder's.
    #[error("could not write the journal: {0}")]
    Fenced(ClusterError),
    #[error("the journal {ns}/{name} would hold {size} bytes, over ktplay's limit of {limit} (a ConfigMap holds at most 1 MiB)")]
    TooLarge {
        ns: String,
        name: String,
        size: usize,
        limit: usize,
    },
    /// The ConfigMap is another playbook's (`owner`, `owner_digest` as shown, escaped).
    #[error("the journal ConfigMap `{name}` belongs to playbook {owner} (digest {owner_digest}), not to playbook `{playbook}` (digest {digest}); ktplay neither resumes nor overwrites another playbook's journal")]
    Foreign {
        name: String,
        owner: String,
        owner_digest: String,
        playbook: String,
        digest: String,
    },
    /// A line of the events that a resume cannot trust (`why` completes the sentence).
    #[error("line {line} of the journal `{name}` {why}")]
    Line {
        line: usize,
        name: String,
        why: String,
    },
}

impl Cluster {
    /// The `data` of the journal ConfigMap `name`; `None` when there is none.
    pub(crate) async fn read_journal(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, JournalError> {
        let api = self.config_maps();
        match retry(|| async { api.get_opt(name).await }).await {
            Ok(Some(cm)) => Ok(Some(cm.data.unwrap_or_default().into_iter().collect())),
            Ok(None) => Ok(None),
            Err(e) => Err(JournalError::Read {
                ns: self.ns.clone(),
                name: name.to_string(),
                cause: words(&e),
            }),
        }
    }

    /// Write `data` to the journal ConfigMap `name` (merge patch; create when missing).
    pub(crate) async fn write_journal(
        &self,
        name: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<(), JournalError> {
        let api = self.config_maps();
        let patch = Patch::Merge(json!({"data": data}));
        let pp = patch_params();
        let failed = |e: kube::Error, verb: &'static str| JournalError::Write {
            verb,
            name: name.to_string(),
            ns: self.ns.clone(),
            cause: words(&e),
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
                .map_err(|e| JournalError::Build(e.to_string()))?;
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
