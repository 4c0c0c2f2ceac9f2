//! The kube layer: everything the runner does to a cluster, as kubectl would do it.
//!
//! Objects are read through kube's typed `Api`s and handled as JSON (`serde_json::Value`), so the
//! code does not depend on which k8s-openapi fields are `Option` in the selected API version.
//!
//! | module | what it holds |
//! |---|---|
//! | this file, `canary`, `errors`, `rollout`, `snap` | the [`Cluster`] handle: versions, image patches, rollout waits, undo, canaries, selectors, logs; retries |
//! | `objects` | any kind as JSON (`ApiResource`): get, create (adopting only this run's), delete by uid, merge |
//! | `reads` | what scripts read: an object as JSON, a component's pods |
//! | `journal_store` | the journal's ConfigMap: read, merge-patch or create |
//! | [`lock`], `fence` | the run lock (a Lease per playbook and namespace), the per-object leases, and the fence every write checks |
//! | [`preflight`] | before any action: permissions (SelfSubjectAccessReview) and containers |
//! | [`traffic`] | the traffic routers of canaries (HTTPRoute, Ingress): plan, pin, route, unroute |
//! | [`hazards`], [`hazard_rules`], [`hazard_report`] | the live objects each action touches, the hazard rules over them, hazards as diagnostics |

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};

use crate::program::{Component, IntOrPercent, Workload};
use crate::version::Version;

mod access_rules;
mod canary;
mod errors;
mod fence;
pub(crate) mod hazard_report;
pub(crate) mod hazard_rules;
pub(crate) mod hazards;
mod journal_store;
pub(crate) mod lock;
pub(crate) mod objects;
pub(crate) mod preflight;
mod reads;
mod rollout;
mod snap;
pub mod traffic;
mod view;

pub use errors::{retry, status_code, transient, words, ClusterError, Result, RETRY_BUDGET};
pub(crate) use journal_store::JournalError;
use rollout::owned_by;
pub use rollout::{rollout_status, Rollout};
pub use snap::{clean_template, container_names, Snap};
use snap::{container_image, pointer_escape, selector_string, to_value};
pub use view::View;

/// kubectl's annotation for `rollout restart`.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const REVISION: &str = "deployment.kubernetes.io/revision";
pub(super) const HASH_LABEL: &str = "pod-template-hash";
/// Field manager of every write.
pub const MANAGER: &str = "ktplay";
/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("ktplay/", env!("CARGO_PKG_VERSION"));

/// How to reach a cluster, as kubectl: `--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`,
/// else the in-cluster service account.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    pub kubeconfig: Option<PathBuf>,
    /// `--context`, else the env's `context`, else the kubeconfig's current context.
    pub context: Option<String>,
}

/// Why no client could be built for a [`Connect`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read kubeconfig `{}`: {cause}", path.display())]
    Unreadable { path: PathBuf, cause: String },
    #[error(
        "no kubeconfig found ({0}); pass --kubeconfig, set KUBECONFIG, or run inside a cluster"
    )]
    NoKubeconfig(String),
    /// `file` is the kubeconfig in words; `have` its contexts.
    #[error("{file} has no context `{wanted}` (the context is --context, else the env's `context`); it has: {}", contexts_words(have))]
    NoContext {
        file: String,
        wanted: String,
        have: Vec<String>,
    },
    #[error("{}: {cause}", context.as_ref().map_or("kubeconfig".to_string(), |c| format!("kubeconfig context `{c}`")))]
    Config {
        context: Option<String>,
        cause: String,
    },
    #[error("in-cluster config: {0}")]
    InCluster(String),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
}

/// A kubeconfig's contexts, and how to use the only one.
fn contexts_words(names: &[String]) -> String {
    format!(
        "{}{}",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        },
        match names {
            [one] => format!(" — pass `--context {one}` to use it"),
            _ => String::new(),
        }
    )
}

/// Build a client for `connect`; the namespace is the caller's (the playbook's or `--namespace`).
pub async fn client(
    connect: &Connect,
    namespace: &str,
) -> std::result::Result<Client, ConnectError> {
    let opts = KubeConfigOptions {
        context: connect.context.clone(),
        ..Default::default()
    };
    let from_file = match &connect.kubeconfig {
        Some(path) => Some(
            Kubeconfig::read_from(path).map_err(|e| ConnectError::Unreadable {
                path: path.clone(),
                cause: e.to_string(),
            })?,
        ),
        None => match Kubeconfig::read() {
            Ok(k) => Some(k),
            Err(_) if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => None,
            Err(e) => return Err(ConnectError::NoKubeconfig(e.to_string())),
        },
    };
    if let (Some(k), Some(wanted)) = (&from_file, &connect.context) {
        if !k.contexts.iter().any(|c| &c.name == wanted) {
            let file = connect.kubeconfig.as_ref().map_or_else(
                || "the kubeconfig ($KUBECONFIG or ~/.kube/config)".to_string(),
                |p| format!("the kubeconfig `{}`", p.display()),
            );
            return Err(ConnectError::NoContext {
                file,
                wanted: wanted.clone(),
                have: k.contexts.iter().map(|c| c.name.clone()).collect(),
            });
        }
    }
    let mut config = match from_file {
        Some(k) => kube::Config::from_custom_kubeconfig(k, &opts)
            .await
            .map_err(|e| ConnectError::Config {
                context: connect.context.clone(),
                cause: e.to_string(),
            })?,
        None => kube::Config::incluster().map_err(|e| ConnectError::InCluster(e.to_string()))?,
    };
    config.default_namespace = namespace.to_string();
    // Attributable in audit logs: every request says who sent it (writes also carry the field
    // manager `ktplay`, see `patch_params`).
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    Client::try_from(config).map_err(|e| ConnectError::Client(e.to_string()))
}

/// One namespace of one cluster.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub ns: String,
    /// Before every write: proof that this process still holds the run lock.
    pub fence: Option<lock::Fence>,
    /// The run whose objects these are: every object ktplay creates carries it as its
    /// ownership mark ([`RUN_LABEL`]), and only objects with this mark are adopted or deleted.
    pub run: String,
}

/// The ownership mark: the label every object ktplay creates carries, with the id of the run
/// that created it (as Argo Rollouts marks what it manages). An object with this name and
/// without this run's mark is someone else's: ktplay never adopts, changes or deletes it.
pub const RUN_LABEL: &str = "ktplay.dev/run-id";

/// What to do about an object ktplay will not touch.
pub const NOT_OURS_HELP: &str = "ktplay adopts only objects it created in this run (label `ktplay.dev/run-id`), and never changes or deletes anyone else's: rename or remove that object, or deploy under another name";

/// A value read from the cluster, safe to print: label values are short and plain on a real API
/// server, but nothing an object supplies is trusted.
fn printable(v: &str) -> String {
    let s: String = v.chars().take(63).flat_map(char::escape_default).collect();
    if v.chars().count() > 63 {
        format!("{s}…")
    } else {
        s
    }
}

pub use ktplay_imageref::image_tag;

impl Cluster {
    pub fn new(client: Client, ns: impl Into<String>) -> Cluster {
        Cluster {
            client,
            ns: ns.into(),
            fence: None,
            run: String::new(),
        }
    }

    /// A cluster served in this process (the simulator's router), without a socket.
    pub fn in_process(router: axum::Router, ns: &str) -> Cluster {
        Cluster::new(Client::new(router, ns.to_string()), ns)
    }

    /// The same namespace, for run `run`: what it creates carries the run's ownership mark.
    pub fn for_run(&self, run: &str) -> Cluster {
        Cluster {
            run: run.to_string(),
            ..self.clone()
        }
    }

    /// The labels of an object this run creates as the canary of `of`.
    pub fn marks(&self, of: &str) -> Value {
        json!({"app.kubernetes.io/managed-by": "ktplay", "ktplay/canary-of": of, RUN_LABEL: self.run})
    }

    /// Did this run create the object (its ownership mark)?
    pub fn ours(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        labels["app.kubernetes.io/managed-by"] == "ktplay"
            && labels[RUN_LABEL].as_str() == Some(self.run.as_str())
    }

    /// Why an existing object of kind `kind` is not this run's, in words naming it.
    pub fn not_ours(&self, kind: &str, name: &str, obj: &Value) -> ClusterError {
        let labels = &obj["metadata"]["labels"];
        let whose = match labels[RUN_LABEL].as_str() {
            Some(r) if labels["app.kubernetes.io/managed-by"] == "ktplay" => format!(
                "it was created by another ktplay run (`{}`), not by this one (`{}`)",
                printable(r),
                printable(&self.run)
            ),
            _ => format!("ktplay did not create it (it has no `{RUN_LABEL}` label of this run)"),
        };
        ClusterError::NotOurs(format!(
            "{kind} `{}` in namespace `{}` already exists and is not this run's: {whose}; ktplay neither adopts nor deletes it",
            printable(name),
            self.ns
        ))
    }

    /// The same namespace, every write fenced by the run lock.
    pub fn fenced(&self, fence: lock::Fence) -> Cluster {
        Cluster {
            fence: Some(fence),
            ..self.clone()
        }
    }

    /// May this process still write? Without a fence (rehearsal internals, `status`), yes.
    pub async fn may_write(&self) -> Result<()> {
        match &self.fence {
            Some(f) => f.ensure().await.map_err(ClusterError::LockLost),
            None => Ok(()),
        }
    }

    fn deploys(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    pub(crate) fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn not_found(&self, what: String) -> ClusterError {
        ClusterError::NotFound {
            what,
            ns: self.ns.clone(),
        }
    }

    /// A deployment as JSON.
    pub async fn deployment(&self, name: &str) -> Result<Value> {
        match retry(|| async { self.deploys().get_opt(name).await }).await {
            Ok(Some(d)) => Ok(to_value(&d)),
            Ok(None) => Err(self.not_found(format!("deployment `{name}`"))),
            Err(e) => Err(ClusterError::kube(e)),
        }
    }

    /// A deployment as JSON, if it exists.
    pub async fn deployment_opt(&self, name: &str) -> Result<Option<Value>> {
        retry(|| async { self.deploys().get_opt(name).await })
            .await
            .map(|d| d.as_ref().map(to_value))
            .map_err(ClusterError::kube)
    }

    /// Does the deployment exist?
    pub async fn deployment_exists(&self, name: &str) -> Result<bool> {
        retry(|| async { self.deploys().get_opt(name).await })
            .await
            .map(|d| d.is_some())
            .map_err(ClusterError::kube)
    }

    /// Pods selected by a deployment's `matchLabels` (a canary with the same labels included).
    pub async fn pods_of(&self, deploy: &str) -> Result<Vec<Value>> {
        let d = self.deployment(deploy).await?;
        let sel = selector_string(&d);
        let lp = ListParams::default().labels(&sel);
        let list = retry(|| async { self.pods().list(&lp).await })
            .await
            .map_err(ClusterError::kube)?;
        Ok(list.items.iter().map(to_value).collect())
    }

    /// The versions a component runs: the image tags of its container in its pods; a deployment
    /// without pods counts by its template.
    pub async fn live_versions(&self, c: &Component) -> Result<BTreeSet<Version>> {
        self.versions_of(c, &c.deployments()).await
    }

    /// The versions the component's container runs in some of its deployments.
    pub async fn versions_of(&self, c: &Component, deploys: &[&str]) -> Result<BTreeSet<Version>> {
        let mut out = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for &deploy in deploys {
            let pods = self.pods_of(deploy).await?;
            let mut any = false;
            for p in &pods {
                let name = p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if p["metadata"]["deletionTimestamp"].is_string() || !seen.insert(name) {
                    continue;
                }
                if let Some(img) = container_image(p, &c.container) {
                    any = true;
                    out.insert(parse_tag(img, &c.name)?);
                }
            }
            if !any {
                let d = self.deployment(deploy).await?;
                if d["spec"]["replicas"].as_i64().unwrap_or(1) > 0 {
                    if let Some(img) = container_image(&d["spec"]["template"], &c.container) {
                        out.insert(parse_tag(img, &c.name)?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Set the container's image (tag = version), and the rolling-update strategy when given,
    /// with a JSON patch that first tests the container's name at its index: a patch can never
    /// add a container (a strategic merge patch by a wrong name would), and a Deployment edited
    /// between the read and the write fails the test instead of being changed blindly.
    pub async fn set_image(
        &self,
        deploy: &str,
        container: &str,
        image: &str,
        version: &Version,
        max_unavailable: Option<IntOrPercent>,
        max_surge: Option<IntOrPercent>,
    ) -> Result<()> {
        let d = self.deployment(deploy).await?;
        let i = self.container_index(&d, deploy, container)?;
        let base = format!("/spec/template/spec/containers/{i}");
        let want = format!("{image}:{version}");
        let mut ops = Vec::new();
        if d["spec"]["template"]["spec"]["containers"][i]["image"] != want.as_str() {
            ops.push(json!({"op": "test", "path": format!("{base}/name"), "value": container}));
            ops.push(json!({"op": "replace", "path": format!("{base}/image"), "value": want}));
        }
        if max_unavailable.is_some() || max_surge.is_some() {
            let iop = |v: IntOrPercent| match v {
                IntOrPercent::Int(n) => json!(n),
                IntOrPercent::Percent(p) => json!(format!("{p}%")),
            };
            let mut ru = d["spec"]["strategy"]["rollingUpdate"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if let Some(v) = max_unavailable {
                ru.insert("maxUnavailable".into(), iop(v));
            }
            if let Some(v) = max_surge {
                ru.insert("maxSurge".into(), iop(v));
            }
            let strategy = json!({"type": "RollingUpdate", "rollingUpdate": ru});
            if d["spec"]["strategy"] != strategy {
                ops.push(json!({"op": "add", "path": "/spec/strategy", "value": strategy}));
            }
        }
        // Already as wanted (a resumed statement, a promotion the rollout repeats): no write.
        if ops.is_empty() {
            return Ok(());
        }
        self.json_patch(deploy, ops).await
    }

    /// The index of a container in a deployment's template, or an error naming the containers
    /// it has.
    fn container_index(&self, d: &Value, deploy: &str, container: &str) -> Result<usize> {
        let names = container_names(d);
        names
            .iter()
            .position(|n| n == container)
            .ok_or_else(|| ClusterError::NoContainer {
                deploy: deploy.to_string(),
                container: container.to_string(),
                have: names,
            })
    }

    async fn json_patch(&self, deploy: &str, ops: Vec<Value>) -> Result<()> {
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
            .map_err(|e| ClusterError::Api(e.to_string()))?;
        self.may_write().await?;
        // A retried JSON patch is safe: its `test` ops fail (422) if an earlier attempt
        // already changed what they test, and replacing an image by itself changes nothing.
        let patch = Patch::Json::<()>(patch);
        retry(|| async { self.deploys().patch(deploy, &patch_params(), &patch).await })
            .await
            .map(|_| ())
            .map_err(|e| ClusterError::request(e, "patch", &format!("deployment `{deploy}`")))
    }

    /// What ktplay would restore of a deployment (see [`Snap`]).
    pub async fn snap(&self, deploy: &str) -> Result<Snap> {
        Ok(Snap::of(deploy, &self.deployment(deploy).await?))
    }

    /// Put back what a snap recorded, when the deployment differs from it; true if it did. Every
    /// container is tested by name at its index before its image is replaced; the strategy is
    /// restored when the snap has one.
    pub async fn restore_snap(&self, snap: &Snap) -> Result<bool> {
        let d = self.deployment(&snap.name).await?;
        let live = Snap::of(&snap.name, &d);
        let strategy_differs = !snap.strategy.is_null() && snap.strategy != live.strategy;
        if snap.matches(&live) && !strategy_differs {
            return Ok(false);
        }
        let mut ops = Vec::new();
        for (c, img) in &snap.images {
            let i = self.container_index(&d, &snap.name, c)?;
            let base = format!("/spec/template/spec/containers/{i}");
            ops.push(json!({"op": "test", "path": format!("{base}/name"), "value": c}));
            ops.push(json!({"op": "replace", "path": format!("{base}/image"), "value": img}));
        }
        let ann = format!(
            "/spec/template/metadata/annotations/{}",
            pointer_escape(RESTARTED_AT)
        );
        match (&snap.restarted_at, &live.restarted_at) {
            (Some(v), _) => {
                if !d["spec"]["template"]["metadata"]["annotations"].is_object() {
                    ops.push(json!({"op": "add", "path": "/spec/template/metadata/annotations", "value": {}}));
                }
                ops.push(json!({"op": "add", "path": ann, "value": v}));
            }
            (None, Some(_)) => ops.push(json!({"op": "remove", "path": ann})),
            (None, None) => {}
        }
        if strategy_differs {
            ops.push(json!({"op": "replace", "path": "/spec/strategy", "value": snap.strategy}));
        }
        self.json_patch(&snap.name, ops).await?;
        Ok(true)
    }

    /// What `kubectl rollout undo [--to-revision N]` would restore: the revision number and the
    /// template of the previous (or given) revision's ReplicaSet, cleaned for writing back.
    pub async fn undo_target(&self, deploy: &str, to_revision: Option<u64>) -> Result<(u64, Snap)> {
        let d = self.deployment(deploy).await?;
        let uid = d["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let current: u64 = d["metadata"]["annotations"][REVISION]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let rss: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.ns);
        let lp = ListParams::default().labels(&selector_string(&d));
        let list = retry(|| async { rss.list(&lp).await })
            .await
            .map_err(ClusterError::kube)?;
        let owned: Vec<(u64, Value)> = list
            .items
            .iter()
            .map(to_value)
            .filter(|rs| owned_by(rs, &uid))
            .map(|rs| {
                let rev = rs["metadata"]["annotations"][REVISION]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                (rev, rs)
            })
            .collect();
        let target = match to_revision {
            Some(n) => owned.iter().find(|(r, _)| *r == n).ok_or_else(|| {
                ClusterError::Rollout(format!("deployment `{deploy}` has no revision {n}"))
            })?,
            None => owned
                .iter()
                .filter(|(r, _)| *r < current)
                .max_by_key(|(r, _)| *r)
                .ok_or_else(|| {
                    ClusterError::Rollout(format!(
                        "deployment `{deploy}` has no previous revision to roll back to"
                    ))
                })?,
        };
        let mut snap = Snap::of(deploy, &target.1);
        snap.strategy = Value::Null;
        Ok((target.0, snap))
    }

    /// The `pod-template-hash` of the deployment's current ReplicaSet (the one of its revision),
    /// which every pod of that ReplicaSet carries.
    pub async fn template_hash(&self, deploy: &str) -> Result<String> {
        let d = self.deployment(deploy).await?;
        let uid = d["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let current = d["metadata"]["annotations"][REVISION]
            .as_str()
            .map(str::to_string);
        let rss: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.ns);
        let lp = ListParams::default().labels(&selector_string(&d));
        let list = retry(|| async { rss.list(&lp).await })
            .await
            .map_err(ClusterError::kube)?;
        list.items
            .iter()
            .map(to_value)
            .filter(|rs| owned_by(rs, &uid))
            .find(|rs| {
                current.is_some()
                    && rs["metadata"]["annotations"][REVISION].as_str() == current.as_deref()
            })
            .and_then(|rs| {
                rs["metadata"]["labels"]["pod-template-hash"]
                    .as_str()
                    .map(str::to_string)
            })
            .ok_or_else(|| {
                ClusterError::Rollout(format!(
                    "deployment `{deploy}` has no ReplicaSet of its current revision with a `pod-template-hash`"
                ))
            })
    }

    /// `kubectl rollout restart`: the `restartedAt` annotation on the pod template (the value is
    /// the caller's, so repeating the same restart changes nothing).
    pub async fn restart(&self, deploy: &str, now: &str) -> Result<()> {
        self.may_write().await?;
        let patch = Patch::Strategic(
            json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}),
        );
        retry(|| async { self.deploys().patch(deploy, &patch_params(), &patch).await })
            .await
            .map(|_| ())
            .map_err(ClusterError::kube)
    }

    /// `spec.replicas`.
    pub async fn replicas(&self, deploy: &str) -> Result<i64> {
        let d = self.deployment(deploy).await?;
        Ok(d["spec"]["replicas"].as_i64().unwrap_or(1))
    }

    /// Set `spec.replicas`.
    pub async fn scale(&self, deploy: &str, replicas: i64) -> Result<()> {
        self.may_write().await?;
        let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
        retry(|| async { self.deploys().patch(deploy, &patch_params(), &patch).await })
            .await
            .map(|_| ())
            .map_err(ClusterError::kube)
    }

    /// A Service's selector.
    pub async fn selector(&self, service: &str) -> Result<BTreeMap<String, String>> {
        let s = match retry(|| async { self.services().get_opt(service).await }).await {
            Ok(Some(s)) => to_value(&s),
            Ok(None) => return Err(self.not_found(format!("service `{service}`"))),
            Err(e) => return Err(ClusterError::kube(e)),
        };
        Ok(s["spec"]["selector"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Set one key of a Service's selector.
    pub async fn set_selector(&self, service: &str, key: &str, value: &str) -> Result<()> {
        self.may_write().await?;
        let patch = Patch::Merge(json!({"spec": {"selector": {key: value}}}));
        retry(|| async {
            self.services()
                .patch(service, &patch_params(), &patch)
                .await
        })
        .await
        .map(|_| ())
        .map_err(ClusterError::kube)
    }

    /// Every log line of the pods of a component's deployments (the given container).
    pub async fn logs(&self, c: &Component) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        let mut seen = BTreeSet::new();
        for deploy in c.deployments() {
            for p in self.pods_of(deploy).await? {
                let name = p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if !seen.insert(name.clone()) {
                    continue;
                }
                let has_container = p["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["name"] == c.container.as_str());
                let lp = LogParams {
                    container: has_container.then(|| c.container.clone()),
                    ..Default::default()
                };
                match retry(|| async { self.pods().logs(&name, &lp).await }).await {
                    Ok(text) => lines.extend(text.lines().map(String::from)),
                    Err(e) if status_code(&e) == Some(404) || status_code(&e) == Some(400) => {}
                    Err(e) => return Err(ClusterError::kube(e)),
                }
            }
        }
        Ok(lines)
    }

    /// Is every pod of the deployment Ready (and its rollout complete)?
    pub async fn ready(&self, deploy: &str) -> Result<std::result::Result<(), String>> {
        let d = self.deployment(deploy).await?;
        match rollout_status(&d) {
            Rollout::Complete => {}
            Rollout::Progressing(m) | Rollout::DeadlineExceeded(m) => return Ok(Err(m)),
        }
        let pods = self.pods_of(deploy).await?;
        // A pod being deleted (a scale-down, an old ReplicaSet's) is on its way out: it no
        // longer counts, as the rollout status no longer counts it.
        let not_ready: Vec<String> = pods
            .iter()
            .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
            .filter(|p| {
                !p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .map(|p| p["metadata"]["name"].as_str().unwrap_or("?").to_string())
            .collect();
        if not_ready.is_empty() {
            Ok(Ok(()))
        } else {
            Ok(Err(format!("pods not ready: {}", not_ready.join(", "))))
        }
    }
}

/// Create parameters: ktplay's field manager, so its objects are attributable in managedFields.
pub(crate) fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

pub(crate) fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// The name of a deployment's canary.
pub fn canary_name(deploy: &str) -> String {
    format!("{deploy}-canary")
}

fn parse_tag(image: &str, comp: &str) -> Result<Version> {
    let tag = image_tag(image).ok_or_else(|| {
        ClusterError::Rollout(format!(
            "{comp} runs image `{image}` without a tag: its version cannot be read"
        ))
    })?;
    Version::parse(tag).map_err(|_| {
        ClusterError::Rollout(format!(
            "{comp} runs image `{image}` whose tag `{tag}` is not a version"
        ))
    })
}

/// The colour the component's Service selects, from its selector.
pub async fn live_colour(cluster: &Cluster, c: &Component) -> Result<crate::program::Colour> {
    use crate::program::Colour;
    let Workload::BlueGreen(bg) = &c.workload else {
        return Err(ClusterError::Rollout(format!(
            "{} is not blue-green",
            c.name
        )));
    };
    let sel = cluster.selector(&bg.service).await?;
    match sel.get(&bg.selector).map(String::as_str) {
        Some("blue") => Ok(Colour::Blue),
        Some("green") => Ok(Colour::Green),
        other => Err(ClusterError::Rollout(format!(
            "service `{}` selects `{}={}`, which names neither blue nor green",
            bg.service,
            bg.selector,
            other.unwrap_or("(nothing)")
        ))),
    }
}
