//! One read of a namespace for the checks before an action: every deployment in one LIST and
//! every pod in one LIST, instead of a GET of each deployment and a LIST of each component's
//! pods (which made the requests of a run grow as components²: issue 23).
//!
//! A [`View`] is never kept: it is read right before the check that judges it and dropped
//! after, so it is as fresh as the per-object reads it replaces (fresher as a whole: one list is
//! one resourceVersion of the whole kind). The reads where a stale view would let ktplay act
//! wrongly stay direct GETs of the object, right before the write they guard: the live matrix
//! check before an action (a fresh `View`, read in that check), the owner and adoption checks
//! (`Cluster::ours` on the object read by name), the image patches (JSON patches with `test`
//! ops on the object read just before), and the fence (the run lock's lease, see `fence`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::Value;

use super::snap::{container_image, to_value};
use super::{parse_tag, retry, Cluster, ClusterError, Result, Snap};
use crate::program::Component;
use crate::version::Version;

/// The deployments and pods of one namespace, as one read.
pub struct View {
    ns: String,
    deployments: BTreeMap<String, Value>,
    pods: Vec<Value>,
}

impl Cluster {
    /// The namespace's deployments (one LIST).
    pub(super) async fn deployments_view(&self) -> Result<BTreeMap<String, Value>> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        let list = retry(|| async { api.list(&ListParams::default()).await })
            .await
            .map_err(ClusterError::kube)?;
        Ok(list
            .items
            .iter()
            .map(to_value)
            .filter_map(|d| Some((d["metadata"]["name"].as_str()?.to_string(), d.clone())))
            .collect())
    }

    /// The namespace's deployments and the pods they select: two LISTs, whatever the number of
    /// components. Pods are listed by `KEY in (v1, …)` when every deployment of `deploys` selects
    /// by that one key among others (the usual `app=…`), else the namespace's pods.
    pub async fn view(&self, deploys: &[&str]) -> Result<View> {
        let deployments = self.deployments_view().await?;
        let lp = ListParams::default().labels(&common_selector(&deployments, deploys));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let pods = retry(|| async { api.list(&lp).await })
            .await
            .map_err(ClusterError::kube)?;
        Ok(View {
            ns: self.ns.clone(),
            deployments,
            pods: pods.items.iter().map(to_value).collect(),
        })
    }
}

/// A set-based selector covering the pods of every deployment named: `KEY in (…)` for a key
/// every one of them selects by; empty (every pod) when there is none, or a deployment is
/// missing or selects nothing.
fn common_selector(deployments: &BTreeMap<String, Value>, deploys: &[&str]) -> String {
    let mut common: Option<BTreeMap<String, BTreeSet<String>>> = None;
    for d in deploys {
        let Some(m) = deployments
            .get(*d)
            .and_then(|d| d["spec"]["selector"]["matchLabels"].as_object())
            .filter(|m| !m.is_empty())
        else {
            return String::new();
        };
        let here: BTreeMap<String, String> = m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        common = Some(match common {
            None => here
                .into_iter()
                .map(|(k, v)| (k, BTreeSet::from([v])))
                .collect(),
            Some(mut c) => {
                c.retain(|k, _| here.contains_key(k));
                for (k, vs) in c.iter_mut() {
                    vs.insert(here[k].clone());
                }
                c
            }
        });
    }
    // Label keys and values a real API server accepted are plain; anything else lists all.
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    match common
        .unwrap_or_default()
        .into_iter()
        .find(|(k, vs)| plain(k) && vs.iter().all(|v| plain(v)))
    {
        Some((k, vs)) => format!("{k} in ({})", vs.into_iter().collect::<Vec<_>>().join(",")),
        None => String::new(),
    }
}

/// Does the pod carry every label of the deployment's `matchLabels` (the selector ktplay reads
/// pods by; an empty one selects every pod, as the LIST by it did)?
fn selects(d: &Value, pod: &Value) -> bool {
    let labels = &pod["metadata"]["labels"];
    d["spec"]["selector"]["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
}

impl View {
    /// A deployment as JSON.
    pub fn deployment(&self, name: &str) -> Result<&Value> {
        self.deployments
            .get(name)
            .ok_or_else(|| ClusterError::NotFound {
                what: format!("deployment `{name}`"),
                ns: self.ns.clone(),
            })
    }

    /// What ktplay would restore of a deployment.
    pub fn snap(&self, name: &str) -> Result<Snap> {
        Ok(Snap::of(name, self.deployment(name)?))
    }

    /// The pods a deployment selects (a canary with the same labels included).
    pub fn pods_of(&self, deploy: &str) -> Result<impl Iterator<Item = &Value>> {
        let d = self.deployment(deploy)?;
        Ok(self.pods.iter().filter(move |p| selects(d, p)))
    }

    /// The versions the component's container runs in some of its deployments: the image tags
    /// of its pods not being deleted; a deployment without pods counts by its template (unless
    /// scaled to zero). The same answer as [`Cluster::versions_of`].
    pub fn versions_of(&self, c: &Component, deploys: &[&str]) -> Result<BTreeSet<Version>> {
        let mut out = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for &deploy in deploys {
            let mut any = false;
            for p in self.pods_of(deploy)? {
                let name = p["metadata"]["name"].as_str().unwrap_or_default();
                if p["metadata"]["deletionTimestamp"].is_string() || !seen.insert(name) {
                    continue;
                }
                if let Some(img) = container_image(p, &c.container) {
                    any = true;
                    out.insert(parse_tag(img, &c.name)?);
                }
            }
            if !any {
                let d = self.deployment(deploy)?;
                if d["spec"]["replicas"].as_i64().unwrap_or(1) > 0 {
                    if let Some(img) = container_image(&d["spec"]["template"], &c.container) {
                        out.insert(parse_tag(img, &c.name)?);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dep(name: &str, labels: Value) -> (String, Value) {
        (
            name.to_string(),
            json!({"metadata": {"name": name}, "spec": {"selector": {"matchLabels": labels}}}),
        )
    }

    #[test]
    fn one_selector_covers_every_component() {
        let ds: BTreeMap<String, Value> = [
            dep("a", json!({"app": "a", "tier": "x"})),
            dep("b", json!({"app": "b"})),
        ]
        .into_iter()
        .collect();
        assert_eq!(common_selector(&ds, &["a", "b"]), "app in (a,b)");
        // No key in common, a missing deployment, a hostile value: every pod.
        let ds2: BTreeMap<String, Value> =
            [dep("a", json!({"app": "a"})), dep("b", json!({"k": "b"}))]
                .into_iter()
                .collect();
        assert_eq!(common_selector(&ds2, &["a", "b"]), "");
        assert_eq!(common_selector(&ds, &["a", "nope"]), "");
        let ds3: BTreeMap<String, Value> = [dep("a", json!({"app": "a),x in (y"}))]
            .into_iter()
            .collect();
        assert_eq!(common_selector(&ds3, &["a"]), "");
    }

    #[test]
    fn pods_are_matched_by_match_labels() {
        let (_, d) = dep("a", json!({"app": "a"}));
        assert!(selects(
            &d,
            &json!({"metadata": {"labels": {"app": "a", "x": "y"}}})
        ));
        assert!(!selects(&d, &json!({"metadata": {"labels": {"app": "b"}}})));
        assert!(!selects(&d, &json!({"metadata": {}})));
    }
}
