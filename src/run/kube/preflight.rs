//! Before any action, and before the lock or the journal is touched: may the run's user do
//! everything the playbook will ask of the API, and do the playbook's components exist as it
//! names them? Either failing refuses the run (exit 3) and leaves nothing behind.
//!
//! Permissions are asked of the API itself: first one `SelfSubjectRulesReview` (what the rules
//! grant, taken only when complete: `access_rules`), then one `SelfSubjectAccessReview` per
//! verb and resource the rules did not grant (what `kubectl auth can-i` does), so RBAC, webhooks
//! and any other authorizer answer exactly as they will for the real requests.

use std::collections::BTreeSet;

use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use kube::api::Api;
use serde_json::json;

use crate::program::{GuardKind, Op, Playbook, TrafficKind, Workload};

use crate::run::kube::{
    self as cluster, container_names, status_code, words, Cluster, ClusterError,
};

/// One permission: `verb` on `group/resource[/subresource]` in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Need {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
}

impl Need {
    const fn new(verb: &'static str, group: &'static str, resource: &'static str) -> Need {
        Need {
            verb,
            group,
            resource,
            subresource: "",
        }
    }

    /// As `kubectl auth can-i` spells it: `patch deployments.apps`, `get pods/log`.
    pub(crate) fn words(&self) -> String {
        let mut r = self.resource.to_string();
        if !self.group.is_empty() {
            r = format!("{r}.{}", self.group);
        }
        if !self.subresource.is_empty() {
            r = format!("{}/{}", r, self.subresource);
        }
        format!("{} {r}", self.verb)
    }
}

/// Every permission a run of the playbook may use in its namespace: reading state, the lock,
/// the journal, and what its statements (and their rollbacks) write.
pub(crate) fn needs(pb: &Playbook) -> Vec<Need> {
    let mut n: BTreeSet<Need> = BTreeSet::new();
    for verb in ["get", "list", "watch", "patch"] {
        n.insert(Need::new(verb, "apps", "deployments"));
    }
    n.insert(Need::new("list", "apps", "replicasets"));
    n.insert(Need::new("list", "", "pods"));
    for verb in ["get", "create", "patch"] {
        n.insert(Need::new(verb, "", "configmaps"));
    }
    for verb in ["get", "create", "update", "delete"] {
        n.insert(Need::new(verb, "coordination.k8s.io", "leases"));
    }
    if pb.components.iter().any(|c| c.is_blue_green()) {
        n.insert(Need::new("get", "", "services"));
    }
    for st in pb.statements() {
        match &st.op {
            Op::Canary { comp, .. } => {
                n.insert(Need::new("create", "apps", "deployments"));
                n.insert(Need::new("delete", "apps", "deployments"));
                if let Some(t) = &pb.components[*comp].traffic {
                    // `patch`: the stable Service pinned to the stable ReplicaSet and put back.
                    for verb in ["get", "create", "delete", "patch"] {
                        n.insert(Need::new(verb, "", "services"));
                    }
                    let (group, resource) = match t.kind {
                        TrafficKind::HttpRoute => ("gateway.networking.k8s.io", "httproutes"),
                        TrafficKind::Ingress => ("networking.k8s.io", "ingresses"),
                    };
                    for verb in ["get", "patch", "create", "delete"] {
                        if t.kind == TrafficKind::HttpRoute && matches!(verb, "create" | "delete") {
                            continue;
                        }
                        n.insert(Need::new(verb, group, resource));
                    }
                }
            }
            Op::BlueGreen { .. } | Op::Switch { .. } => {
                n.insert(Need::new("patch", "", "services"));
            }
            Op::Undo { comp, .. } if pb.components[*comp].is_blue_green() => {
                n.insert(Need::new("patch", "", "services"));
            }
            Op::Guard(g) if matches!(g.kind, GuardKind::Logs { .. }) => {
                n.insert(Need {
                    subresource: "log",
                    ..Need::new("get", "", "pods")
                });
            }
            _ => {}
        }
    }
    // An implicit rollback of a canary deletes it: covered by the canary itself.
    n.into_iter().collect()
}

/// Why the run cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PreflightError {
    /// Permissions the API denies: `(need, the authorizer's reason)`.
    Denied {
        namespace: String,
        denied: Vec<(Need, String)>,
    },
    /// A component's deployment has no container of the component's name.
    NoContainer {
        component: String,
        error: ClusterError,
    },
    /// The API could not be asked.
    Api(String),
}

impl PreflightError {
    /// The message and the help line.
    pub(crate) fn words(&self) -> (String, String) {
        match self {
            PreflightError::Denied { namespace, denied } => (
                format!(
                    "the Kubernetes user may not {} in namespace `{namespace}`",
                    denied
                        .iter()
                        .map(|(n, why)| if why.is_empty() {
                            n.words()
                        } else {
                            format!("{} ({why})", n.words())
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!(
                    "grant these in a Role bound to the run's user (check with `kubectl auth can-i {} -n {namespace}`); nothing was changed",
                    denied.first().map(|(n, _)| n.words()).unwrap_or_default()
                ),
            ),
            PreflightError::NoContainer { component, error } => (
                format!("component `{component}`: {error}"),
                format!("name the container in the playbook: `component {component} {{ container \"NAME\" … }}`"),
            ),
            PreflightError::Api(m) => (m.clone(), "check that the cluster is reachable".into()),
        }
    }
}

/// Ask the API for every permission the playbook needs; all denials are reported together.
/// An API server that serves no access reviews (404) is not asked again: the requests
/// themselves will be judged.
pub(crate) async fn check_access(cluster: &Cluster, pb: &Playbook) -> Result<(), PreflightError> {
    let api: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    // What the rules already grant is not asked one by one (issue 23: 1 request, not 18).
    let mut needs = needs(pb);
    if let Some(rules) = super::access_rules::granted_rules(cluster).await {
        needs.retain(|n| !super::access_rules::grants(&rules, n));
    }
    let asks = needs.into_iter().map(|need| {
        let api = api.clone();
        let ns = cluster.ns.clone();
        async move {
            let review: SelfSubjectAccessReview = serde_json::from_value(json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {
                    "namespace": ns, "verb": need.verb, "group": need.group,
                    "resource": need.resource, "subresource": need.subresource,
                }}
            }))
            .expect("a well-formed access review");
            // An access review changes nothing: retried like every other request.
            let answer =
                cluster::retry(|| async { api.create(&cluster::post_params(), &review).await })
                    .await;
            (need, answer)
        }
    });
    let mut denied = Vec::new();
    for (need, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(r) => {
                let status = r.status.unwrap_or_default();
                if !status.allowed {
                    denied.push((need, status.reason.unwrap_or_default()));
                }
            }
            Err(e) if status_code(&e) == Some(404) => return Ok(()),
            Err(e) => {
                return Err(PreflightError::Api(format!(
                    "cannot ask the API for permissions (SelfSubjectAccessReview): {}",
                    words(&e)
                )))
            }
        }
    }
    if denied.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::Denied {
            namespace: cluster.ns.clone(),
            denied,
        })
    }
}

/// Every deployment of every component must have the component's container: an image patch by
/// a wrong name must never happen (a strategic merge patch would add a container).
pub(crate) async fn check_containers(
    cluster: &Cluster,
    pb: &Playbook,
) -> Result<(), PreflightError> {
    // One LIST for every component's deployments (issue 23).
    let all = cluster
        .deployments_view()
        .await
        .map_err(|e| PreflightError::Api(e.to_string()))?;
    for c in &pb.components {
        let deploys: Vec<&str> = match &c.workload {
            Workload::Deployments(d) => d.iter().map(String::as_str).collect(),
            Workload::BlueGreen(bg) => vec![bg.blue.as_str(), bg.green.as_str()],
        };
        for d in deploys {
            // A missing deployment is reported by the drift check with the versions.
            let Some(obj) = all.get(d) else { continue };
            let have = container_names(obj);
            if !have.iter().any(|n| n == &c.container) {
                return Err(PreflightError::NoContainer {
                    component: c.name.clone(),
                    error: ClusterError::NoContainer {
                        deploy: d.to_string(),
                        container: c.container.clone(),
                        have,
                    },
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_words_match_kubectl_auth_can_i() {
        assert_eq!(
            Need::new("patch", "apps", "deployments").words(),
            "patch deployments.apps"
        );
        let log = Need {
            subresource: "log",
            ..Need::new("get", "", "pods")
        };
        assert_eq!(log.words(), "get pods/log");
        assert_eq!(
            Need::new("update", "coordination.k8s.io", "leases").words(),
            "update leases.coordination.k8s.io"
        );
    }
}
