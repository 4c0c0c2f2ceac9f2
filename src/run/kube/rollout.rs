//! Waiting for a rollout: kubectl's rollout-complete test, with its blind spot closed (a
//! progress deadline is believed only when it names the current template's ReplicaSet), over a
//! watch that re-lists with back-off when it ends or expires.

use std::time::Duration;
use tokio::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, ListParams};
use serde_json::Value;

use super::snap::{clean_template, selector_string, to_value};
use super::{retry, Cluster, ClusterError, Result};
use crate::run::Cancel;

/// kubectl's rollout-complete test on a deployment (as JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    Complete,
    Progressing(String),
    DeadlineExceeded(String),
}

/// Mirror of kubectl's `DeploymentStatusViewer`: generation <= observedGeneration; no
/// ProgressDeadlineExceeded; updatedReplicas >= spec.replicas; replicas <= updatedReplicas;
/// availableReplicas >= updatedReplicas.
pub fn rollout_status(d: &Value) -> Rollout {
    let name = d["metadata"]["name"].as_str().unwrap_or("?");
    let g = d["metadata"]["generation"].as_i64().unwrap_or(0);
    let s = &d["status"];
    let og = s["observedGeneration"].as_i64().unwrap_or(0);
    if g > og {
        return Rollout::Progressing(format!("{name}: waiting for the new spec to be observed"));
    }
    if let Some(c) = s["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
    {
        return Rollout::DeadlineExceeded(format!(
            "deployment `{name}` exceeded its progress deadline: {}",
            c["message"].as_str().unwrap_or("no progress")
        ));
    }
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let n = |k: &str| s[k].as_i64().unwrap_or(0);
    let (updated, replicas, available) =
        (n("updatedReplicas"), n("replicas"), n("availableReplicas"));
    if updated < want {
        return Rollout::Progressing(format!("{name}: {updated} of {want} new replicas updated"));
    }
    if replicas > updated {
        return Rollout::Progressing(format!(
            "{name}: {} old replicas pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Rollout::Progressing(format!(
            "{name}: {available} of {updated} updated replicas available"
        ));
    }
    Rollout::Complete
}

impl Cluster {
    /// Wait until the deployment's rollout is complete (kubectl's test), watching it; fails fast
    /// on ProgressDeadlineExceeded. Watches that end or expire are re-established.
    pub async fn wait_rollout(
        &self,
        deploy: &str,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<()> {
        let start = Instant::now();
        let api = self.deploys();
        // Back-off between re-lists after a watch that failed, ended without news or answered
        // 410: a stream of expired watches costs a few requests a second, not thousands.
        let mut relist = Duration::ZERO;
        loop {
            if cancel.interrupted() {
                return Err(ClusterError::Interrupted);
            }
            if !relist.is_zero()
                && !cancel
                    .sleep(relist.min(timeout.saturating_sub(start.elapsed())))
                    .await
            {
                return Err(ClusterError::Interrupted);
            }
            let d = retry(|| async { api.get(deploy).await })
                .await
                .map_err(ClusterError::kube)?;
            let rv = d.metadata.resource_version.clone().unwrap_or_default();
            let last = match self.judge(&to_value(&d)).await? {
                Rollout::Complete => return Ok(()),
                Rollout::DeadlineExceeded(m) => return Err(ClusterError::Rollout(m)),
                Rollout::Progressing(m) => m,
            };
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(ClusterError::Timeout(format!(
                    "{} waiting for `{deploy}` ({last})",
                    crate::syntax::format_duration(timeout)
                )));
            }
            let wp = kube::api::WatchParams::default()
                .fields(&format!("metadata.name={deploy}"))
                .timeout(left.as_secs().clamp(1, 290) as u32);
            let stream = match api.watch(&wp, &rv).await {
                Ok(s) => s,
                Err(_) => {
                    relist = next_relist(relist);
                    continue;
                }
            };
            let mut stream = Box::pin(stream);
            let deadline = tokio::time::Instant::now() + left;
            let mut events = 0;
            loop {
                let next = tokio::select! {
                    n = stream.next() => n,
                    _ = tokio::time::sleep_until(deadline) => None,
                    _ = cancel.wait() => return Err(ClusterError::Interrupted),
                };
                let Some(ev) = next else { break };
                events += 1;
                match ev {
                    Ok(kube::api::WatchEvent::Added(d))
                    | Ok(kube::api::WatchEvent::Modified(d)) => {
                        match self.judge(&to_value(&d)).await? {
                            Rollout::Complete => return Ok(()),
                            Rollout::DeadlineExceeded(m) => return Err(ClusterError::Rollout(m)),
                            Rollout::Progressing(_) => {}
                        }
                    }
                    Ok(kube::api::WatchEvent::Deleted(_)) => {
                        return Err(ClusterError::Rollout(format!(
                            "deployment `{deploy}` was deleted during the rollout"
                        )))
                    }
                    Ok(kube::api::WatchEvent::Bookmark(_)) => {}
                    // 410 Expired and friends: start over from a fresh read, after a pause.
                    Ok(kube::api::WatchEvent::Error(_)) | Err(_) => {
                        events = 0;
                        break;
                    }
                }
            }
            relist = if events > 0 {
                Duration::ZERO
            } else {
                next_relist(relist)
            };
        }
    }
}

/// The next pause before a re-list: 100 ms, doubling to at most 2 s.
fn next_relist(d: Duration) -> Duration {
    (d * 2).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

impl Cluster {
    /// kubectl's rollout-complete test, with its blind spot closed: a `ProgressDeadlineExceeded`
    /// condition is believed only when it is about the deployment's current template. The real
    /// controller writes `observedGeneration` for a new template before it refreshes the
    /// `Progressing` condition, so right after ktplay changes a template (a restore after a
    /// failed rollout, above all) the old rollout's deadline is still there; it names the
    /// ReplicaSet that timed out, and that is not the ReplicaSet of the current template.
    async fn judge(&self, d: &Value) -> Result<Rollout> {
        match rollout_status(d) {
            Rollout::DeadlineExceeded(m) => {
                let Some(named) = deadline_replica_set(d) else {
                    return Ok(Rollout::DeadlineExceeded(m));
                };
                match self.current_replica_set(d).await? {
                    Some(current) if current == named => Ok(Rollout::DeadlineExceeded(m)),
                    _ => Ok(Rollout::Progressing(format!(
                        "{}: the progress deadline of ReplicaSet `{named}` belongs to an earlier template",
                        d["metadata"]["name"].as_str().unwrap_or("?")
                    ))),
                }
            }
            other => Ok(other),
        }
    }

    /// The name of the ReplicaSet owned by the deployment whose template is the deployment's
    /// current one (ignoring `pod-template-hash`), if the controller has made it yet.
    async fn current_replica_set(&self, d: &Value) -> Result<Option<String>> {
        let uid = d["metadata"]["uid"].as_str().unwrap_or_default();
        let want = clean_template(d["spec"]["template"].clone());
        let rss: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.ns);
        let lp = ListParams::default().labels(&selector_string(d));
        let list = retry(|| async { rss.list(&lp).await })
            .await
            .map_err(ClusterError::kube)?;
        Ok(list
            .items
            .iter()
            .map(to_value)
            .filter(|rs| owned_by(rs, uid))
            .find(|rs| clean_template(rs["spec"]["template"].clone()) == want)
            .and_then(|rs| rs["metadata"]["name"].as_str().map(String::from)))
    }
}

pub(super) fn owned_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|o| o["uid"] == uid && o["controller"] == true)
}

/// The ReplicaSet a `ProgressDeadlineExceeded` condition names (the deployment controller's
/// message: `ReplicaSet "NAME" has timed out progressing.`).
fn deadline_replica_set(d: &Value) -> Option<String> {
    let c = d["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")?;
    let m = c["message"].as_str()?;
    let rest = m.strip_prefix("ReplicaSet \"")?;
    rest.split_once('"').map(|(name, _)| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deadline_names_its_replica_set() {
        let d = json!({"status": {"conditions": [
            {"type": "Available", "status": "True"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet \"api-75667948d4\" has timed out progressing."}]}});
        assert_eq!(deadline_replica_set(&d).as_deref(), Some("api-75667948d4"));
        let other = json!({"status": {"conditions": [{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "Deployment \"api\" has timed out progressing."}]}});
        assert_eq!(deadline_replica_set(&other), None);
    }

    #[test]
    fn rollout_test_mirrors_kubectl() {
        let d = |g: i64, og: i64, want: i64, upd: i64, rep: i64, av: i64| {
            json!({"metadata": {"name": "x", "generation": g}, "spec": {"replicas": want},
                   "status": {"observedGeneration": og, "updatedReplicas": upd, "replicas": rep, "availableReplicas": av}})
        };
        assert_eq!(rollout_status(&d(2, 2, 3, 3, 3, 3)), Rollout::Complete);
        assert!(matches!(
            rollout_status(&d(3, 2, 3, 3, 3, 3)),
            Rollout::Progressing(_)
        ));
        assert!(matches!(
            rollout_status(&d(2, 2, 3, 2, 3, 3)),
            Rollout::Progressing(_)
        ));
        assert!(matches!(
            rollout_status(&d(2, 2, 3, 3, 4, 3)),
            Rollout::Progressing(_)
        ));
        assert!(matches!(
            rollout_status(&d(2, 2, 3, 3, 3, 2)),
            Rollout::Progressing(_)
        ));
        let mut x = d(2, 2, 3, 1, 3, 1);
        x["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "m"}]);
        assert!(matches!(rollout_status(&x), Rollout::DeadlineExceeded(_)));
    }
}
