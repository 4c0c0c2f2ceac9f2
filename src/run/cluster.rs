//! The kube layer: everything the runner does to a cluster, as kubectl would do it.
//!
//! Objects are read through kube's typed `Api`s and handled as JSON (`serde_json::Value`), so the
//! code does not depend on which k8s-openapi fields are `Option` in the selected API version.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};

use crate::check::program::{Component, IntOrPercent, Workload};
use crate::version::Version;

use super::Cancel;

/// kubectl's annotation for `rollout restart`.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";
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

/// A failure of the kube layer, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Api(String),
    #[error("{what} not found in namespace `{ns}`")]
    NotFound { what: String, ns: String },
    #[error("{0}")]
    Rollout(String),
    #[error("timed out after {0}")]
    Timeout(String),
    #[error("interrupted")]
    Interrupted,
    #[error("the run lock was lost: {0}")]
    LockLost(String),
    #[error("deployment `{deploy}` has no container `{container}`; its containers: {}", have.join(", "))]
    NoContainer {
        deploy: String,
        container: String,
        have: Vec<String>,
    },
}

impl ClusterError {
    fn kube(e: kube::Error) -> ClusterError {
        ClusterError::Api(words(&e))
    }

    /// A failed request in words: what was asked of which object, and what the API said.
    pub(crate) fn request(e: kube::Error, verb: &str, object: &str) -> ClusterError {
        ClusterError::Api(format!("cannot {verb} {object}: {}", words(&e)))
    }
}

/// A kube error as a person reads it: the API's status, reason and message, with a hint for the
/// statuses that have one; never a `Status { … }` dump.
pub fn words(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let hint = match s.code {
                401 => " (the credentials were not accepted: check the kubeconfig's user)",
                403 => " (the kubeconfig's user lacks this permission: see `kubectl auth can-i`)",
                409 if s.reason == "Conflict" => {
                    " (someone else changed the object at the same time)"
                }
                422 => " (the API refused the object as invalid)",
                429 => " (the API is rate-limiting requests)",
                _ => "",
            };
            format!(
                "the Kubernetes API answered {} {}: {}{hint}",
                s.code, s.reason, s.message
            )
        }
        other => format!("the Kubernetes API request failed: {other}"),
    }
}

pub type Result<T> = std::result::Result<T, ClusterError>;

/// How long one request is retried while the API answers with transient failures.
pub const RETRY_BUDGET: Duration = Duration::from_secs(20);

/// A failure worth retrying: 429, 500, 502, 503, 504, or the connection (refused, reset, timed
/// out). kube's own retry layer already retries 429, 503 and 504 a few times; this covers the
/// rest, for longer.
pub fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// Run a request until it succeeds, fails for good, or [`RETRY_BUDGET`] passes: capped
/// exponential back-off (100 ms doubling to 2 s) with jitter, so many runners do not retry in
/// step. Only for requests that are safe to repeat (reads; patches that test or set values;
/// creates whose AlreadyExists the caller checks).
pub async fn retry<T, F, Fut>(mut f: F) -> std::result::Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, kube::Error>>,
{
    use rand::Rng;
    let start = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Err(e) if transient(&e) && start.elapsed() < RETRY_BUDGET => {
                let jitter = rand::thread_rng().gen_range(0..=delay.as_millis() as u64 / 2);
                tokio::time::sleep(delay + Duration::from_millis(jitter)).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// HTTP status of a kube API error, if it is one.
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Build a client for `connect`; the namespace is the caller's (the playbook's or `--namespace`).
pub async fn client(connect: &Connect, namespace: &str) -> std::result::Result<Client, String> {
    let opts = KubeConfigOptions {
        context: connect.context.clone(),
        ..Default::default()
    };
    let from_file = match &connect.kubeconfig {
        Some(path) => Some(
            Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig `{}`: {e}", path.display()))?,
        ),
        None => match Kubeconfig::read() {
            Ok(k) => Some(k),
            Err(_) if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => None,
            Err(e) => {
                return Err(format!(
                    "no kubeconfig found ({e}); pass --kubeconfig, set KUBECONFIG, or run inside a cluster"
                ))
            }
        },
    };
    if let (Some(k), Some(wanted)) = (&from_file, &connect.context) {
        if !k.contexts.iter().any(|c| &c.name == wanted) {
            let names: Vec<&str> = k.contexts.iter().map(|c| c.name.as_str()).collect();
            let file = connect.kubeconfig.as_ref().map_or_else(
                || "the kubeconfig ($KUBECONFIG or ~/.kube/config)".to_string(),
                |p| format!("the kubeconfig `{}`", p.display()),
            );
            return Err(format!(
                "{file} has no context `{wanted}` (the context is --context, else the env's `context`); it has: {}{}",
                if names.is_empty() { "none".to_string() } else { names.join(", ") },
                match names.as_slice() {
                    [one] => format!(" — pass `--context {one}` to use it"),
                    _ => String::new(),
                }
            ));
        }
    }
    let mut config = match from_file {
        Some(k) => kube::Config::from_custom_kubeconfig(k, &opts)
            .await
            .map_err(|e| match &connect.context {
                Some(c) => format!("kubeconfig context `{c}`: {e}"),
                None => format!("kubeconfig: {e}"),
            })?,
        None => kube::Config::incluster().map_err(|e| format!("in-cluster config: {e}"))?,
    };
    config.default_namespace = namespace.to_string();
    // Attributable in audit logs: every request says who sent it (writes also carry the field
    // manager `ktplay`, see `patch_params`).
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))
}

/// One namespace of one cluster.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub ns: String,
    /// Before every write: proof that this process still holds the run lock.
    pub fence: Option<super::lock::Fence>,
}

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

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// The tag of an image reference (`repo:tag`, ignoring a registry port and a digest).
pub fn image_tag(image: &str) -> Option<&str> {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, t)| t)
}

fn container_image<'a>(template: &'a Value, container: &str) -> Option<&'a str> {
    let cs = template["spec"]["containers"].as_array()?;
    cs.iter()
        .find(|c| c["name"] == container)
        .and_then(|c| c["image"].as_str())
}

/// A label selector string from `matchLabels`.
fn selector_string(d: &Value) -> String {
    d["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// What ktplay changes in a deployment, and so what it records to restore: the image of every
/// container, kubectl's `restartedAt` annotation on the pod template, and the rolling-update
/// strategy. Deliberately not the whole template: a journal event stays a few hundred bytes
/// whatever the pod spec holds (a ConfigMap holds at most 1 MiB), and a restore changes only
/// what ktplay changed, so edits others made to the rest of the template survive it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snap {
    /// The deployment.
    pub name: String,
    /// `(container, image)` of `spec.template.spec.containers`, in order.
    pub images: Vec<(String, String)>,
    /// The template's `kubectl.kubernetes.io/restartedAt`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// `spec.strategy` (`null` when not recorded, as for an `undo` target).
    #[serde(default)]
    pub strategy: Value,
}

impl Snap {
    /// The snap of a deployment (as JSON) or of a ReplicaSet (its template; no strategy).
    pub fn of(name: &str, obj: &Value) -> Snap {
        Snap {
            name: name.to_string(),
            images: template_images(&obj["spec"]["template"]),
            restarted_at: obj["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
                .as_str()
                .map(String::from),
            strategy: obj["spec"]["strategy"].clone(),
        }
    }

    /// The image of one container.
    pub fn image(&self, container: &str) -> Option<&str> {
        self.images
            .iter()
            .find(|(c, _)| c == container)
            .map(|(_, i)| i.as_str())
    }

    /// Does the live deployment run what this snap says (images and restart annotation)?
    fn matches(&self, live: &Snap) -> bool {
        self.images == live.images && self.restarted_at == live.restarted_at
    }
}

fn template_images(template: &Value) -> Vec<(String, String)> {
    template["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["image"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The names of a deployment's containers.
pub fn container_names(d: &Value) -> Vec<String> {
    template_images(&d["spec"]["template"])
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// JSON-pointer escaping of one path segment (RFC 6901).
fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Remove what the controller adds to a template, so it can be written back.
pub fn clean_template(mut t: Value) -> Value {
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove(HASH_LABEL);
    }
    t
}

impl Cluster {
    pub fn new(client: Client, ns: impl Into<String>) -> Cluster {
        Cluster {
            client,
            ns: ns.into(),
            fence: None,
        }
    }

    /// The same namespace, every write fenced by the run lock.
    pub fn fenced(&self, fence: super::lock::Fence) -> Cluster {
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
        if self.deployment_exists(&name).await? {
            // Left over from an interrupted run of the same statement: keep it.
            return Ok(name);
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
            "metadata": {"name": name, "namespace": self.ns,
                         "labels": {"app.kubernetes.io/managed-by": "ktplay", "ktplay/canary-of": deploy}},
            "spec": spec,
        });
        let obj: Deployment =
            serde_json::from_value(obj).map_err(|e| ClusterError::Api(e.to_string()))?;
        self.may_write().await?;
        // A create that may have happened (the answer was lost) is retried; the retry's
        // AlreadyExists then means the first one did.
        match retry(|| async { self.deploys().create(&post_params(), &obj).await }).await {
            Ok(_) => {}
            Err(e) if status_code(&e) == Some(409) && self.deployment_exists(&name).await? => {}
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

    /// Delete a deployment (and, with background propagation, its ReplicaSets and pods); a
    /// missing one is fine.
    pub async fn delete_deployment(&self, name: &str) -> Result<()> {
        self.may_write().await?;
        match retry(|| async {
            self.deploys()
                .delete(name, &DeleteParams::background())
                .await
        })
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(ClusterError::kube(e)),
        }
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

fn owned_by(obj: &Value, uid: &str) -> bool {
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
pub async fn live_colour(
    cluster: &Cluster,
    c: &Component,
) -> Result<crate::check::program::Colour> {
    use crate::check::program::Colour;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_put_in_words() {
        let e = |code: u16, reason: &str, message: &str| {
            kube::Error::Api(
                kube::core::Status {
                    code,
                    reason: reason.into(),
                    message: message.into(),
                    ..Default::default()
                }
                .boxed(),
            )
        };
        let conflict = words(&e(
            409,
            "Conflict",
            "Operation cannot be fulfilled on deployments.apps \"api\": the object has been modified",
        ));
        assert_eq!(
            conflict,
            "the Kubernetes API answered 409 Conflict: Operation cannot be fulfilled on deployments.apps \"api\": the object has been modified (someone else changed the object at the same time)"
        );
        let invalid = ClusterError::request(
            e(422, "Invalid", "Deployment.apps \"api\" is invalid: spec.template.spec.containers[0].image: Required value"),
            "patch",
            "deployment `api`",
        )
        .to_string();
        assert!(invalid.starts_with("cannot patch deployment `api`: the Kubernetes API answered 422 Invalid: Deployment.apps"), "{invalid}");
        assert!(
            invalid.ends_with("(the API refused the object as invalid)"),
            "{invalid}"
        );
        for w in [conflict, invalid] {
            assert!(
                !w.contains("Status {") && !w.contains("ErrorResponse"),
                "{w}"
            );
        }
    }

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
    fn snaps_record_images_not_templates() {
        let d = json!({"spec": {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"annotations": {RESTARTED_AT: "2026-12-01T00:00:00Z"}},
                         "spec": {"containers": [
                             {"name": "api", "image": "keeptrusts/api:1.4.2", "env": [{"name": "BIG", "value": "x".repeat(100_000)}]},
                             {"name": "sidecar", "image": "envoy:1.30"}]}}}});
        let s = Snap::of("api", &d);
        assert_eq!(
            s.images,
            vec![
                ("api".to_string(), "keeptrusts/api:1.4.2".to_string()),
                ("sidecar".to_string(), "envoy:1.30".to_string())
            ]
        );
        assert_eq!(s.restarted_at.as_deref(), Some("2026-12-01T00:00:00Z"));
        assert!(serde_json::to_string(&s).unwrap().len() < 300);
        assert_eq!(s.image("sidecar"), Some("envoy:1.30"));
        assert_eq!(container_names(&d), ["api", "sidecar"]);
        assert_eq!(
            pointer_escape(RESTARTED_AT),
            "kubectl.kubernetes.io~1restartedAt"
        );
    }

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("keeptrusts/api:1.5.0"), Some("1.5.0"));
        assert_eq!(image_tag("reg:5000/keeptrusts/api:1.5.0"), Some("1.5.0"));
        assert_eq!(image_tag("reg:5000/keeptrusts/api"), None);
        assert_eq!(image_tag("api:1.5.0@sha256:abc"), Some("1.5.0"));
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
