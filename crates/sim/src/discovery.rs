//! The resources the simulator serves and the legacy discovery documents that describe them
//! (`/api`, `/apis`, `/api/v1`, `/apis/apps/v1`, `/apis/coordination.k8s.io/v1`, `/version`).

use serde_json::{json, Value};

/// A resource type the simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `v1` namespaces (cluster-scoped).
    Namespace,
    /// `v1` pods.
    Pod,
    /// `v1` services.
    Service,
    /// `v1` configmaps.
    ConfigMap,
    /// `apps/v1` deployments.
    Deployment,
    /// `apps/v1` replicasets.
    ReplicaSet,
    /// `coordination.k8s.io/v1` leases.
    Lease,
    /// `gateway.networking.k8s.io/v1` HTTPRoutes (Gateway API; stored, and their backend weights
    /// read by nothing yet: simulated traffic follows pods).
    HttpRoute,
    /// `networking.k8s.io/v1` ingresses.
    Ingress,
    /// `policy/v1` PodDisruptionBudgets (stored; no disruption controller writes their status,
    /// and nothing evicts: the simulator has no eviction API).
    PodDisruptionBudget,
}

/// Everything that is known about a [`Kind`] statically.
pub struct KindInfo {
    /// API group, empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Plural resource name, as in URLs.
    pub plural: &'static str,
    /// Singular resource name.
    pub singular: &'static str,
    /// The object kind.
    pub kind: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Subresources besides the main one: (name, kind, verbs).
    pub subresources: &'static [(&'static str, &'static str, &'static [&'static str])],
}

const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

impl Kind {
    /// Every kind, in discovery order.
    pub const ALL: [Kind; 10] = [
        Kind::Namespace,
        Kind::Pod,
        Kind::Service,
        Kind::ConfigMap,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::Lease,
        Kind::HttpRoute,
        Kind::Ingress,
        Kind::PodDisruptionBudget,
    ];

    /// Static facts about this kind.
    pub fn info(self) -> KindInfo {
        match self {
            Kind::Namespace => KindInfo {
                group: "",
                version: "v1",
                plural: "namespaces",
                singular: "namespace",
                kind: "Namespace",
                namespaced: false,
                short_names: &["ns"],
                categories: &[],
                subresources: &[],
            },
            Kind::Pod => KindInfo {
                group: "",
                version: "v1",
                plural: "pods",
                singular: "pod",
                kind: "Pod",
                namespaced: true,
                short_names: &["po"],
                categories: &["all"],
                subresources: &[
                    ("log", "Pod", &["get"]),
                    ("status", "Pod", &["get", "patch", "update"]),
                ],
            },
            Kind::Service => KindInfo {
                group: "",
                version: "v1",
                plural: "services",
                singular: "service",
                kind: "Service",
                namespaced: true,
                short_names: &["svc"],
                categories: &["all"],
                subresources: &[("status", "Service", &["get", "patch", "update"])],
            },
            Kind::HttpRoute => KindInfo {
                group: "gateway.networking.k8s.io",
                version: "v1",
                plural: "httproutes",
                singular: "httproute",
                kind: "HTTPRoute",
                namespaced: true,
                short_names: &[],
                categories: &["gateway-api"],
                subresources: &[("status", "HTTPRoute", &["get", "patch", "update"])],
            },
            Kind::PodDisruptionBudget => KindInfo {
                group: "policy",
                version: "v1",
                plural: "poddisruptionbudgets",
                singular: "poddisruptionbudget",
                kind: "PodDisruptionBudget",
                namespaced: true,
                short_names: &["pdb"],
                categories: &[],
                subresources: &[("status", "PodDisruptionBudget", &["get", "patch", "update"])],
            },
            Kind::Ingress => KindInfo {
                group: "networking.k8s.io",
                version: "v1",
                plural: "ingresses",
                singular: "ingress",
                kind: "Ingress",
                namespaced: true,
                short_names: &["ing"],
                categories: &[],
                subresources: &[("status", "Ingress", &["get", "patch", "update"])],
            },
            Kind::ConfigMap => KindInfo {
                group: "",
                version: "v1",
                plural: "configmaps",
                singular: "configmap",
                kind: "ConfigMap",
                namespaced: true,
                short_names: &["cm"],
                categories: &[],
                subresources: &[],
            },
            Kind::Deployment => KindInfo {
                group: "apps",
                version: "v1",
                plural: "deployments",
                singular: "deployment",
                kind: "Deployment",
                namespaced: true,
                short_names: &["deploy"],
                categories: &["all"],
                subresources: &[
                    ("scale", "Scale", &["get", "patch", "update"]),
                    ("status", "Deployment", &["get", "patch", "update"]),
                ],
            },
            Kind::ReplicaSet => KindInfo {
                group: "apps",
                version: "v1",
                plural: "replicasets",
                singular: "replicaset",
                kind: "ReplicaSet",
                namespaced: true,
                short_names: &["rs"],
                categories: &["all"],
                subresources: &[
                    ("scale", "Scale", &["get", "patch", "update"]),
                    ("status", "ReplicaSet", &["get", "patch", "update"]),
                ],
            },
            Kind::Lease => KindInfo {
                group: "coordination.k8s.io",
                version: "v1",
                plural: "leases",
                singular: "lease",
                kind: "Lease",
                namespaced: true,
                short_names: &[],
                categories: &[],
                subresources: &[],
            },
        }
    }

    /// `apps/v1` or `v1`.
    pub fn api_version(self) -> String {
        let i = self.info();
        if i.group.is_empty() {
            i.version.to_string()
        } else {
            format!("{}/{}", i.group, i.version)
        }
    }

    /// `deployments.apps` or `pods`: how error messages name the resource.
    pub fn qualified(self) -> String {
        let i = self.info();
        if i.group.is_empty() {
            i.plural.to_string()
        } else {
            format!("{}.{}", i.plural, i.group)
        }
    }

    /// Find the kind served at `group`/`version` under this plural name.
    pub fn from_path(group: &str, version: &str, plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            let i = k.info();
            i.group == group && i.version == version && i.plural == plural
        })
    }

    /// Does the resource have a status subresource (so writes to the main resource keep status)?
    pub fn has_status(self) -> bool {
        self.info().subresources.iter().any(|s| s.0 == "status")
    }

    /// Does the API server keep `metadata.generation` (1 on create, +1 per spec change)?
    pub fn has_generation(self) -> bool {
        matches!(self, Kind::Deployment | Kind::ReplicaSet | Kind::Pod)
    }

    /// Field selectors the resource supports.
    pub fn field_selectors(self) -> &'static [&'static str] {
        match self {
            Kind::Pod => &[
                "metadata.name",
                "metadata.namespace",
                "status.phase",
                "spec.nodeName",
            ],
            Kind::Service => &[
                "metadata.name",
                "metadata.namespace",
                "spec.clusterIP",
                "spec.type",
            ],
            Kind::Namespace => &["metadata.name", "metadata.namespace", "status.phase"],
            _ => &["metadata.name", "metadata.namespace"],
        }
    }
}

/// `GET /version`: kubectl's dispatcher picks its build by this minor.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.4-ktplay-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.11",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `GET /api`.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]
    })
}

/// The named API groups served, each at `v1`.
const GROUPS: [&str; 6] = [
    "apps",
    "authorization.k8s.io",
    "coordination.k8s.io",
    "gateway.networking.k8s.io",
    "networking.k8s.io",
    "policy",
];

/// `GET /apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|g| {
            json!({
                "name": g,
                "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}],
                "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`.
pub fn group(group: &str) -> Option<Value> {
    if !GROUPS.contains(&group) {
        return None;
    }
    Some(json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [{"groupVersion": format!("{group}/v1"), "version": "v1"}],
        "preferredVersion": {"groupVersion": format!("{group}/v1"), "version": "v1"}
    }))
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`: the APIResourceList.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if (group, version) == ("authorization.k8s.io", "v1") {
        // Served by the API, not stored: only `create`.
        return Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "authorization.k8s.io/v1",
            "resources": [{
                "name": "selfsubjectaccessreviews",
                "singularName": "selfsubjectaccessreview",
                "namespaced": false,
                "kind": "SelfSubjectAccessReview",
                "verbs": ["create"],
            }]
        }));
    }
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| k.info().group == group && k.info().version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for k in kinds {
        let i = k.info();
        let mut main = json!({
            "name": i.plural,
            "singularName": i.singular,
            "namespaced": i.namespaced,
            "kind": i.kind,
            "verbs": VERBS,
        });
        if !i.short_names.is_empty() {
            main["shortNames"] = json!(i.short_names);
        }
        if !i.categories.is_empty() {
            main["categories"] = json!(i.categories);
        }
        resources.push(main);
        for (sub, kind, verbs) in i.subresources {
            let mut r = json!({
                "name": format!("{}/{}", i.plural, sub),
                "singularName": "",
                "namespaced": i.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if *sub == "scale" {
                r["group"] = json!("autoscaling");
                r["version"] = json!("v1");
            }
            resources.push(r);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources
    }))
}
