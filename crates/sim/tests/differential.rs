//! Differential tests: the same request sequences against the simulator (over loopback) and,
//! when `KTPLAY_TEST_KUBECONFIG=PATH` is set, against that real cluster (the harness of
//! `tests/realkube`: kube-apiserver and kube-controller-manager v1.34 with a fake kubelet).
//!
//! Each scenario runs in a fresh namespace `diff-<name>-<random>` on each backend (deleted at the
//! end) and returns its observations: what a client can see (status codes, reasons, messages,
//! `details.causes`, warnings, generations, revisions, condition reasons, watch events, log
//! lines). Inside, the scenario asserts the real server's behaviour as measured on v1.34.4, so
//! with the variable unset the simulator is held to it; with it set, the observations of both
//! backends must also be equal.
//!
//! `410 Expired` for a watch from a very old resourceVersion: a real server answers it only once
//! etcd has been compacted (kube-apiserver does so every 5 minutes) and its watch cache no longer
//! holds the version, so on a cluster younger than that the test says loudly that the 410 was not
//! staged there; the simulator's 410 comes from its `watch-expired` fault.
//!
//! `KTPLAY_TEST_KUBECONFIG` must name a cluster where the user may create and delete namespaces
//! and impersonate (`Impersonate-User: diff-nobody`, a user with no RBAC bindings); kubectl steps
//! use `/usr/lib/google-cloud-sdk/bin/kubectl.1.33` and are skipped (with a note) without it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};
use tempfile::TempDir;

use ktplay_sim::serve::{self, ServeOptions};
use ktplay_sim::{Fault, Running, Sim, SimConfig};

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

/// One backend: the simulator or the real cluster.
struct Backend {
    name: &'static str,
    client: Client,
    kubeconfig: PathBuf,
    sim: Option<Sim>,
    _running: Option<Running>,
    dir: TempDir,
}

/// What a scenario saw, in order: (what, value).
type Obs = Vec<(String, Value)>;

async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("a readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Client::try_from(config).expect("a client")
}

async fn backends() -> Vec<Backend> {
    let dir = TempDir::new().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let running = serve::start_serving(&ServeOptions {
        port: 0,
        kubeconfig: Some(kubeconfig.clone()),
        seed: None,
        config: SimConfig::default(),
    })
    .await
    .unwrap();
    let mut out = vec![Backend {
        name: "sim",
        client: client_for(&kubeconfig).await,
        kubeconfig,
        sim: Some(running.sim().clone()),
        _running: Some(running),
        dir,
    }];
    if let Some(path) = std::env::var_os("KTPLAY_TEST_KUBECONFIG").filter(|p| !p.is_empty()) {
        let kubeconfig = PathBuf::from(path);
        out.push(Backend {
            name: "real",
            client: client_for(&kubeconfig).await,
            kubeconfig,
            sim: None,
            _running: None,
            dir: TempDir::new().unwrap(),
        });
    } else {
        eprintln!(
            "differential: KTPLAY_TEST_KUBECONFIG is unset; checking the simulator against the \
             recorded real behaviour only"
        );
    }
    out
}

/// A backend and the scenario's namespace there.
struct Env {
    b: Arc<Backend>,
    ns: String,
}

/// A raw answer.
#[derive(Debug)]
struct Resp {
    code: u16,
    body: Value,
    warnings: Vec<String>,
}

impl Resp {
    /// The parts of a `Status` a client acts on.
    fn status(&self) -> Value {
        let causes: Vec<Value> = self.body["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| json!([c["reason"], c["field"], c["message"]]))
            .collect();
        json!({"code": self.code, "reason": self.body["reason"], "message": self.body["message"],
               "details.kind": self.body["details"]["kind"], "causes": causes})
    }
}

/// `299 - "unknown field \"spec.bogus\""` → `unknown field "spec.bogus"`.
fn warning_text(h: &str) -> String {
    let quoted = h.split_once(" - ").map_or(h, |(_, q)| q).trim();
    serde_json::from_str::<String>(quoted).unwrap_or_else(|_| quoted.to_string())
}

impl Env {
    fn client(&self) -> Client {
        self.b.client.clone()
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        ct: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = http::Request::builder().method(method).uri(path);
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(kube::client::Body::from(body.to_vec())).unwrap();
        let resp = self.b.client.send(req).await.expect("an answer");
        let code = resp.status().as_u16();
        let warnings = resp
            .headers()
            .get_all("warning")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(warning_text)
            .collect();
        let bytes = resp.into_body().collect_bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Resp {
            code,
            body,
            warnings,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Resp {
        self.raw(
            "POST",
            path,
            "application/json",
            body.to_string().as_bytes(),
            &[],
        )
        .await
    }

    async fn patch(&self, path: &str, ct: &str, body: &Value) -> Resp {
        self.raw("PATCH", path, ct, body.to_string().as_bytes(), &[])
            .await
    }

    async fn get(&self, path: &str) -> Resp {
        self.raw("GET", path, "", b"", &[]).await
    }

    fn deployments(&self) -> String {
        format!("/apis/apps/v1/namespaces/{}/deployments", self.ns)
    }

    fn configmaps(&self) -> String {
        format!("/api/v1/namespaces/{}/configmaps", self.ns)
    }

    async fn deployment(&self, name: &str) -> Value {
        let r = self.get(&format!("{}/{name}", self.deployments())).await;
        assert_eq!(r.code, 200, "{}: {:?}", self.b.name, r);
        r.body
    }

    /// Wait for a condition on a deployment (polling, 100 ms).
    async fn wait_deploy(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let d = self.deployment(name).await;
            if f(&d) {
                return d;
            }
            assert!(
                start.elapsed() < timeout,
                "{}: timed out waiting for {what}: {}",
                self.b.name,
                d["status"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn kubectl(&self, args: &[&str]) -> Option<std::process::Output> {
        if !Path::new(KUBECTL).exists() {
            eprintln!("differential: {KUBECTL} is absent; the kubectl steps are skipped");
            return None;
        }
        let cache = self.b.dir.path().join(format!("cache-{}", self.ns));
        let out = tokio::process::Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&self.b.kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .arg("-n")
            .arg(&self.ns)
            .args(args)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true)
            .output();
        Some(
            tokio::time::timeout(Duration::from_secs(60), out)
                .await
                .expect("kubectl finished")
                .expect("kubectl ran"),
        )
    }
}

/// Run a scenario on every backend, each in a fresh namespace, and compare what they saw.
async fn differential<F, Fut>(test: &str, scenario: F)
where
    F: Fn(Arc<Env>) -> Fut,
    Fut: Future<Output = Obs> + Send + 'static,
{
    let mut seen: Vec<(&'static str, Obs)> = Vec::new();
    let mut namespaces = Vec::new();
    for b in backends().await {
        let b = Arc::new(b);
        let ns = format!("diff-{test}-{}", suffix());
        namespaces.push(ns.clone());
        let nsapi: Api<Namespace> = Api::all(b.client.clone());
        let nsobj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        nsapi.create(&PostParams::default(), &nsobj).await.unwrap();
        if b.sim.is_none() {
            wait_for_service_account(&b.client, &ns).await;
        }
        let env = Arc::new(Env {
            b: b.clone(),
            ns: ns.clone(),
        });
        let result = tokio::spawn(scenario(env)).await;
        let _ = nsapi.delete(&ns, &DeleteParams::default()).await;
        match result {
            Ok(obs) => seen.push((b.name, obs)),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("{}: {e}", b.name),
        }
    }
    if let [(_, sim), (_, real)] = seen.as_slice() {
        // the namespaces differ by their random suffix
        let norm = |obs: &Obs, ns: &str| -> Obs {
            obs.iter()
                .map(|(k, v)| {
                    let text = v.to_string().replace(ns, "NS");
                    (k.clone(), serde_json::from_str(&text).unwrap())
                })
                .collect()
        };
        let (sim, real) = (norm(sim, &namespaces[0]), norm(real, &namespaces[1]));
        let diffs: Vec<String> = sim
            .iter()
            .zip(real.iter())
            .filter(|(s, r)| s != r)
            .map(|(s, r)| format!("{}:\n   sim:  {}\n   real: {}", s.0, s.1, r.1))
            .collect();
        assert!(
            diffs.is_empty() && sim.len() == real.len(),
            "{test}: the simulator and the real server differ:\n{}",
            diffs.join("\n")
        );
    }
}

/// Pods need the namespace's `default` ServiceAccount on a real server.
async fn wait_for_service_account(client: &Client, ns: &str) {
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    for _ in 0..100 {
        if sa.get_opt("default").await.ok().flatten().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut r = rand::thread_rng();
    (0..5)
        .map(|_| ALPHABET[r.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn deployment(name: &str, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": image}]}}
        }
    })
}

fn o(what: &str, v: impl serde::Serialize) -> (String, Value) {
    (what.to_string(), serde_json::to_value(v).unwrap())
}

/// `P:<reason> A:<reason>` of a deployment's conditions (`-` when absent).
fn conditions(d: &Value) -> String {
    let find = |t: &str| {
        d["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == t)
            .and_then(|c| c["reason"].as_str())
            .unwrap_or("-")
            .to_string()
    };
    format!("P:{} A:{}", find("Progressing"), find("Available"))
}

fn complete(d: &Value) -> bool {
    let s = &d["status"];
    let n = |k: &str| s[k].as_i64().unwrap_or(0);
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    d["metadata"]["generation"].as_i64() <= s["observedGeneration"].as_i64()
        && n("updatedReplicas") >= want
        && n("replicas") <= n("updatedReplicas")
        && n("availableReplicas") >= n("updatedReplicas")
        && conditions(d).starts_with("P:NewReplicaSetAvailable")
}

fn revision(v: &Value) -> String {
    v["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_errors_match() {
    differential("errors", |e| async move {
        let mut obs = Obs::new();
        let cms = e.configmaps();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let created = e.post(&cms, &cm).await;
        assert_eq!(created.code, 201);
        obs.push(o("create", created.code));
        // ConfigMaps have no generation
        obs.push(o("cm generation", &created.body["metadata"]["generation"]));
        assert!(created.body["metadata"]["generation"].is_null());

        let missing = e.get(&format!("{cms}/nope")).await;
        assert_eq!(missing.status()["message"], "configmaps \"nope\" not found");
        assert_eq!(missing.status()["details.kind"], "configmaps");
        obs.push(o("404", missing.status()));

        let again = e.post(&cms, &cm).await;
        assert_eq!((again.code, again.body["reason"].as_str()), (409, Some("AlreadyExists")));
        assert_eq!(again.body["message"], "configmaps \"c\" already exists");
        obs.push(o("409 AlreadyExists", again.status()));

        let rv = created.body["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        let mut upd = created.body.clone();
        upd["data"]["a"] = json!("2");
        let put = e.raw("PUT", &format!("{cms}/c"), "application/json", upd.to_string().as_bytes(), &[]).await;
        assert_eq!(put.code, 200);
        upd["metadata"]["resourceVersion"] = json!(rv);
        let stale = e.raw("PUT", &format!("{cms}/c"), "application/json", upd.to_string().as_bytes(), &[]).await;
        assert_eq!((stale.code, stale.body["reason"].as_str()), (409, Some("Conflict")));
        assert_eq!(
            stale.body["message"],
            "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
        );
        obs.push(o("409 Conflict", stale.status()));

        let bad_name = e.post(&cms, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}})).await;
        assert_eq!(bad_name.code, 422);
        assert_eq!(bad_name.status()["causes"][0][1], "metadata.name");
        obs.push(o("422 name", bad_name.status()));

        // maxSurge 0 with maxUnavailable 0, a selector that does not match, a missing image
        let mut d = deployment("v", "", 1);
        d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}});
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        let invalid = e.post(&e.deployments(), &d).await;
        assert_eq!(invalid.code, 422);
        assert_eq!(
            invalid.body["message"],
            "Deployment.apps \"v\" is invalid: [spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`, spec.template.spec.containers[0].image: Required value, spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0]"
        );
        assert_eq!(invalid.status()["details.kind"], "Deployment");
        obs.push(o("422 deployment", invalid.status()));

        let mut d = deployment("w", "img:1", -1);
        d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": "0%", "maxUnavailable": "0%"}});
        let invalid = e.post(&e.deployments(), &d).await;
        assert_eq!(
            invalid.body["message"],
            "Deployment.apps \"w\" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0]"
        );
        obs.push(o("422 percent", invalid.status()));

        e.post(&e.deployments(), &deployment("sc", "img:1", 1)).await;
        let scale = format!("{}/sc/scale", e.deployments());
        let r = e.get(&scale).await;
        obs.push(o("scale", (&r.body["kind"], &r.body["apiVersion"], &r.body["spec"], &r.body["status"]["selector"])));
        let r = e.patch(&scale, "application/merge-patch+json", &json!({"spec": {"replicas": -1}})).await;
        assert_eq!(
            r.body["message"],
            "Scale.autoscaling \"sc\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        obs.push(o("422 scale", r.status()));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_match() {
    differential("sizes", |e| async move {
        let mut obs = Obs::new();
        let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                         "data": {"a": "x".repeat(600_000), "b": "y".repeat(500_000)}});
        let r = e.post(&e.configmaps(), &big).await;
        assert_eq!(r.code, 422);
        assert_eq!(
            r.body["message"],
            "ConfigMap \"big\" is invalid: []: Too long: may not be more than 1048576 bytes"
        );
        obs.push(o("configmap", r.status()));
        let fits = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fits"},
                          "data": {"a": "x".repeat(1_048_576)}});
        obs.push(o("configmap at the limit", e.post(&e.configmaps(), &fits).await.code));
        let ann = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "ann", "annotations": {"a": "x".repeat(262_144)}}});
        let r = e.post(&e.configmaps(), &ann).await;
        assert_eq!(
            r.body["message"],
            "ConfigMap \"ann\" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes"
        );
        obs.push(o("annotations", r.status()));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_match() {
    differential("fields", |e| async move {
        let mut obs = Obs::new();
        let mut d = deployment("u", "img:1", 1);
        d["spec"]["bogus"] = json!(1);
        d["spec"]["template"]["spec"]["containers"][0]["bogus2"] = json!("x");
        let r = e.post(&e.deployments(), &d).await;
        assert_eq!(r.code, 201);
        assert_eq!(
            r.warnings,
            [
                "unknown field \"spec.template.spec.containers[0].bogus2\"",
                "unknown field \"spec.bogus\""
            ],
            "in document order"
        );
        assert!(r.body["spec"].get("bogus").is_none());
        obs.push(o("warn", (&r.code, &r.warnings)));
        let stored = e.deployment("u").await;
        obs.push(o("stored", stored["spec"].get("bogus")));

        let mut d = deployment("s", "img:1", 1);
        d["bogustop"] = json!(2);
        d["spec"]["bogus"] = json!(1);
        let r = e
            .raw(
                "POST",
                &format!("{}?fieldValidation=Strict", e.deployments()),
                "application/json",
                d.to_string().as_bytes(),
                &[],
            )
            .await;
        assert_eq!(
            r.body["message"],
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.bogus\", unknown field \"bogustop\""
        );
        obs.push(o("strict", r.status()));
        let r = e
            .raw("POST", &format!("{}?fieldValidation=Ignore", e.deployments()), "application/json", d.to_string().as_bytes(), &[])
            .await;
        obs.push(o("ignore", (&r.code, &r.warnings)));
        let r = e
            .patch(&format!("{}/u", e.deployments()), "application/merge-patch+json", &json!({"spec": {"bogus3": 1}}))
            .await;
        assert_eq!(r.warnings, ["unknown field \"spec.bogus3\""]);
        obs.push(o("patch warn", (&r.code, &r.warnings)));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_and_observed_generation_match() {
    differential("generation", |e| async move {
        let mut obs = Obs::new();
        let r = e.post(&e.deployments(), &deployment("g", "img:1", 1)).await;
        assert_eq!(r.body["metadata"]["generation"], 1);
        obs.push(o("created", &r.body["metadata"]["generation"]));
        let d = e.wait_deploy("g", "rollout", Duration::from_secs(30), complete).await;
        assert_eq!(d["metadata"]["generation"], 1, "the revision annotation does not bump");
        obs.push(o("settled", (&d["metadata"]["generation"], &d["status"]["observedGeneration"], revision(&d))));
        let path = format!("{}/g", e.deployments());
        let mp = "application/merge-patch+json";
        let r = e.patch(&path, mp, &json!({"metadata": {"labels": {"l": "1"}}})).await;
        assert_eq!(r.body["metadata"]["generation"], 1, "labels do not bump");
        obs.push(o("label", &r.body["metadata"]["generation"]));
        let r = e.patch(&path, mp, &json!({"metadata": {"annotations": {"a": "1"}}})).await;
        assert_eq!(r.body["metadata"]["generation"], 2, "a Deployment's annotations do bump");
        obs.push(o("annotation", &r.body["metadata"]["generation"]));
        let r = e.patch(&path, mp, &json!({"spec": {"replicas": 2}})).await;
        assert_eq!(r.body["metadata"]["generation"], 3);
        obs.push(o("scale", &r.body["metadata"]["generation"]));
        e.wait_deploy("g", "scale to 2", Duration::from_secs(30), |d| {
            complete(d) && d["status"]["readyReplicas"] == 2
        })
        .await;
        let r = e
            .patch(
                &path,
                "application/strategic-merge-patch+json",
                &json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "img:2"}]}}}}),
            )
            .await;
        assert_eq!(r.body["metadata"]["generation"], 4);
        let d = e.wait_deploy("g", "second rollout", Duration::from_secs(30), complete).await;
        assert_eq!(d["status"]["observedGeneration"], 4);
        obs.push(o("rolled", (&d["metadata"]["generation"], &d["status"]["observedGeneration"], revision(&d))));
        let rs: Api<ReplicaSet> = Api::namespaced(e.client(), &e.ns);
        let mut gens: Vec<(String, i64, i64)> = rs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|r| {
                let v = serde_json::to_value(r).unwrap();
                (
                    revision(&v),
                    v["metadata"]["generation"].as_i64().unwrap_or(0),
                    v["spec"]["replicas"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        gens.sort();
        obs.push(o("replica sets (revision, generation, replicas)", &gens));
        let pods: Api<Pod> = Api::namespaced(e.client(), &e.ns);
        let p = pods.list(&ListParams::default()).await.unwrap();
        let live: Vec<i64> = p
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.metadata.generation.unwrap_or(0))
            .collect();
        obs.push(o("pod generations (not terminating)", &live));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_revisions_and_undo_match() {
    differential("rollout", |e| async move {
        let mut obs = Obs::new();
        let r = e.post(&e.deployments(), &deployment("r", "img:1", 1)).await;
        let rv = r.body["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        let api: Api<Deployment> = Api::namespaced(e.client(), &e.ns);
        // the condition reasons a watcher sees, from the create on
        let mut states: Vec<String> = Vec::new();
        let wp = WatchParams::default().fields("metadata.name=r").timeout(30);
        let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
        while let Some(ev) = stream.try_next().await.unwrap() {
            if let WatchEvent::Modified(d) = ev {
                let v = serde_json::to_value(&d).unwrap();
                let s = conditions(&v);
                if states.last() != Some(&s) {
                    states.push(s);
                }
                if complete(&v) {
                    break;
                }
            }
        }
        let allowed = [
            "P:NewReplicaSetCreated A:-",
            "P:NewReplicaSetCreated A:MinimumReplicasUnavailable",
            "P:ReplicaSetUpdated A:MinimumReplicasUnavailable",
            "P:NewReplicaSetAvailable A:MinimumReplicasAvailable",
        ];
        assert_eq!(states.first().map(String::as_str), Some(allowed[0]), "{}: {states:?}", e.b.name);
        assert_eq!(states.last().map(String::as_str), Some(allowed[3]), "{}: {states:?}", e.b.name);
        assert!(states.iter().all(|s| allowed.contains(&s.as_str())), "{}: {states:?}", e.b.name);
        obs.push(o("create: first and last condition", (&states[0], states.last())));

        // set image: a second ReplicaSet, revision 2, selectors with pod-template-hash
        let path = format!("{}/r", e.deployments());
        e.patch(&path, "application/strategic-merge-patch+json",
                &json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "img:2"}]}}}}))
            .await;
        let d = e.wait_deploy("r", "rollout to img:2", Duration::from_secs(30), complete).await;
        assert_eq!(revision(&d), "2");
        obs.push(o("after set image", (revision(&d), conditions(&d))));
        let rs: Api<ReplicaSet> = Api::namespaced(e.client(), &e.ns);
        let summary = |items: Vec<ReplicaSet>| {
            let mut v: Vec<(String, String, i64, bool, String)> = items
                .iter()
                .map(|r| {
                    let r = serde_json::to_value(r).unwrap();
                    let sel = &r["spec"]["selector"]["matchLabels"];
                    let hash = &r["metadata"]["labels"]["pod-template-hash"];
                    (
                        revision(&r),
                        r["spec"]["template"]["spec"]["containers"][0]["image"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        r["spec"]["replicas"].as_i64().unwrap_or(0),
                        !hash.is_null() && &sel["pod-template-hash"] == hash && sel["app"] == "r",
                        r["metadata"]["ownerReferences"][0]["kind"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let two = summary(rs.list(&ListParams::default()).await.unwrap().items);
        assert_eq!(two.len(), 2);
        obs.push(o("replica sets", &two));

        // what kubectl prints about it
        let text = |out: std::process::Output| String::from_utf8_lossy(&out.stdout).to_string();
        if let Some(out) = e.kubectl(&["rollout", "status", "deployment/r", "--timeout=20s"]).await {
            obs.push(o("kubectl rollout status", text(out)));
            let out = e.kubectl(&["rollout", "history", "deployment/r"]).await.unwrap();
            obs.push(o("kubectl rollout history", text(out)));
            let out = e.kubectl(&["get", "deploy", "r"]).await.unwrap();
            let t = text(out);
            let cols: Vec<Vec<&str>> = t
                .lines()
                .map(|l| l.split_whitespace().take(4).collect())
                .collect();
            obs.push(o("kubectl get deploy (all but AGE)", &cols));
            let out = e.kubectl(&["get", "rs", "-o", "name"]).await.unwrap();
            obs.push(o("kubectl get rs count", text(out).lines().count()));
        }
        // undo: kubectl rollout undo (kubectl.1.33), else the JSON patch it sends
        let undone = match e.kubectl(&["rollout", "undo", "deployment/r"]).await {
            Some(out) => {
                assert!(out.status.success(), "{}: {}", e.b.name, String::from_utf8_lossy(&out.stderr));
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
            None => {
                let old = two.iter().find(|r| r.0 == "1").unwrap();
                let items = rs.list(&ListParams::default()).await.unwrap().items;
                let old_rs = items
                    .iter()
                    .map(|r| serde_json::to_value(r).unwrap())
                    .find(|r| revision(r) == old.0)
                    .unwrap();
                let mut tpl = old_rs["spec"]["template"].clone();
                tpl["metadata"]["labels"].as_object_mut().unwrap().remove("pod-template-hash");
                let p = json!([{"op": "replace", "path": "/spec/template", "value": tpl}]);
                let r = e.patch(&path, "application/json-patch+json", &p).await;
                assert_eq!(r.code, 200);
                "deployment.apps/r rolled back".to_string()
            }
        };
        obs.push(o("undo", &undone));
        let d = e.wait_deploy("r", "rollback", Duration::from_secs(30), |d| complete(d) && revision(d) == "3").await;
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "img:1");
        obs.push(o("after undo", (revision(&d), &d["metadata"]["generation"], conditions(&d))));
        let after = summary(rs.list(&ListParams::default()).await.unwrap().items);
        assert_eq!(after.len(), 2, "undo re-uses the old ReplicaSet");
        assert!(after.iter().any(|r| r.0 == "3" && r.1 == "img:1"));
        obs.push(o("replica sets after undo", &after));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_image_hits_the_progress_deadline() {
    differential("deadline", |e| async move {
        let mut obs = Obs::new();
        let mut d = deployment("b", "reg/app:1.0-bad", 1);
        d["spec"]["progressDeadlineSeconds"] = json!(2);
        assert_eq!(e.post(&e.deployments(), &d).await.code, 201);
        let d = e
            .wait_deploy("b", "ProgressDeadlineExceeded", Duration::from_secs(40), |d| {
                conditions(d).starts_with("P:ProgressDeadlineExceeded")
            })
            .await;
        let prog = d["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Progressing").unwrap().clone();
        assert_eq!(prog["status"], "False");
        obs.push(o("deadline", (conditions(&d), &prog["status"], &d["status"]["updatedReplicas"], d["status"]["availableReplicas"].as_i64().unwrap_or(0))));
        let pods: Api<Pod> = Api::namespaced(e.client(), &e.ns);
        let p = pods.list(&ListParams::default()).await.unwrap().items.remove(0);
        let v = serde_json::to_value(&p).unwrap();
        let cs = &v["status"]["containerStatuses"][0];
        assert_eq!(v["status"]["phase"], "Pending");
        assert_eq!(cs["state"]["waiting"]["reason"], "ImagePullBackOff");
        obs.push(o("pod", (&v["status"]["phase"], &cs["state"]["waiting"]["reason"], &cs["state"]["waiting"]["message"], &cs["ready"], &cs["started"])));
        let ready = v["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
        obs.push(o("ready condition", (&ready["status"], &ready["reason"], &ready["message"])));
        let name = p.metadata.name.unwrap();
        let logs = e.get(&format!("/api/v1/namespaces/{}/pods/{name}/log", e.ns)).await;
        assert_eq!(logs.code, 400);
        assert_eq!(
            logs.body["message"],
            format!("container \"c\" in pod \"{name}\" is waiting to start: trying and failing to pull image")
        );
        obs.push(o("logs", (logs.code, &logs.body["reason"])));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_match() {
    differential("logs", |e| async move {
        let mut obs = Obs::new();
        let mut d = deployment("l", "reg/app:2.1", 1);
        d["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "FAKE_LOG",
            "value": "connecting to db\\nlistening on :8080 ({tag}) as {pod}/{container} in {namespace}\n"}]);
        assert_eq!(e.post(&e.deployments(), &d).await.code, 201);
        e.wait_deploy("l", "rollout", Duration::from_secs(30), complete).await;
        let pods: Api<Pod> = Api::namespaced(e.client(), &e.ns);
        let p = pods.list(&ListParams::default()).await.unwrap().items.remove(0);
        let name = p.metadata.name.clone().unwrap();
        let start = serde_json::to_value(&p.status.unwrap().start_time).unwrap();
        let start = start.as_str().unwrap().to_string();
        let path = format!("/api/v1/namespaces/{}/pods/{name}/log", e.ns);
        let text = e.get(&path).await.body.as_str().unwrap_or_default().replace(&start, "START").replace(&name, "POD").replace(&e.ns, "NS");
        assert_eq!(
            text,
            "START container c started image reg/app:2.1\nconnecting to db\nlistening on :8080 (2.1) as POD/c in NS\n"
        );
        obs.push(o("log", &text));
        let tail = e.get(&format!("{path}?tailLines=1&timestamps=true")).await;
        let tail = tail.body.as_str().unwrap_or_default().to_string();
        let stamp = tail.split(' ').next().unwrap_or_default().to_string();
        assert_eq!(stamp, format!("{}.002000000Z", start.trim_end_matches('Z')));
        obs.push(o("tail with timestamps", tail.replace(&start.trim_end_matches('Z').to_string(), "START").replace(&name, "POD").replace(&e.ns, "NS")));
        let prev = e.get(&format!("{path}?previous=true")).await;
        obs.push(o("previous", (prev.code, &prev.body["reason"], prev.body["message"].as_str().unwrap_or_default().replace(&name, "POD"))));
        let neg = e.get(&format!("{path}?tailLines=-1")).await;
        obs.push(o("tailLines=-1", (neg.code, neg.status()["causes"].clone())));
        let nope = e.get(&format!("{path}?container=nope")).await;
        obs.push(o("unknown container", (nope.code, nope.body["message"].as_str().unwrap_or_default().replace(&name, "POD"))));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_resource_version_matches() {
    differential("watch", |e| async move {
        let mut obs = Obs::new();
        let cms: Api<ConfigMap> = Api::namespaced(e.client(), &e.ns);
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "w"}, "data": {"n": "0"}})).unwrap();
        let c = cms.create(&PostParams::default(), &cm).await.unwrap();
        let rv = c.metadata.resource_version.unwrap();
        for n in 1..=2 {
            let p = json!({"data": {"n": n.to_string()}});
            cms.patch(
                "w",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&p),
            )
            .await
            .unwrap();
        }
        cms.delete("w", &DeleteParams::default()).await.unwrap();
        let mut stream = cms
            .watch(&WatchParams::default().timeout(5), &rv)
            .await
            .unwrap()
            .boxed();
        let mut events = Vec::new();
        while let Some(ev) = stream.try_next().await.unwrap() {
            let (t, cm) = match ev {
                WatchEvent::Added(c) => ("ADDED", c),
                WatchEvent::Modified(c) => ("MODIFIED", c),
                WatchEvent::Deleted(c) => ("DELETED", c),
                _ => continue,
            };
            if cm.metadata.name.as_deref() != Some("w") {
                continue; // kube-root-ca.crt on a real server
            }
            events.push(format!("{t} n={}", cm.data.unwrap_or_default()["n"]));
            if t == "DELETED" {
                break;
            }
        }
        assert_eq!(events, ["MODIFIED n=1", "MODIFIED n=2", "DELETED n=2"]);
        obs.push(o("events after the resourceVersion", &events));
        // with a label selector: leaving it is DELETED, entering it ADDED
        let labelled: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "l", "labels": {"sel": "yes"}}}))
                .unwrap();
        let c = cms.create(&PostParams::default(), &labelled).await.unwrap();
        let rv = c.metadata.resource_version.unwrap();
        for v in ["no", "yes"] {
            let p = json!({"metadata": {"labels": {"sel": v}}});
            cms.patch(
                "l",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&p),
            )
            .await
            .unwrap();
        }
        let wp = WatchParams::default().labels("sel=yes").timeout(2);
        let mut stream = cms.watch(&wp, &rv).await.unwrap().boxed();
        let mut seen = Vec::new();
        while let Some(ev) = stream.try_next().await.unwrap() {
            match ev {
                WatchEvent::Added(_) => seen.push("ADDED"),
                WatchEvent::Modified(_) => seen.push("MODIFIED"),
                WatchEvent::Deleted(_) => seen.push("DELETED"),
                _ => continue,
            }
            if seen.len() == 2 {
                break;
            }
        }
        assert_eq!(seen, ["DELETED", "ADDED"]);
        obs.push(o("label-selected watch", &seen));
        // 410 Expired: on the simulator through its fault; on a real server from
        // resourceVersion 1 once etcd has been compacted (kube-apiserver compacts every 5 min)
        if let Some(sim) = &e.b.sim {
            sim.set_fault(Fault::WatchExpired);
        }
        let from = if e.b.sim.is_some() { rv.as_str() } else { "1" };
        let mut stream = cms
            .watch(&WatchParams::default().timeout(1), from)
            .await
            .unwrap()
            .boxed();
        let shape = match stream.try_next().await.unwrap() {
            Some(WatchEvent::Error(s)) => {
                assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));
                let prefix = format!("too old resource version: {from} (");
                assert!(
                    s.message.starts_with(&prefix) && s.message.ends_with(')'),
                    "{}",
                    s.message
                );
                json!([s.code, s.reason, "too old resource version: RV (OLDEST)"])
            }
            other => {
                eprintln!(
                    "\n!!!!! {}: no 410 from resourceVersion 1 (not compacted yet: {other:?}); \
                     the 410 was not staged there !!!!!\n",
                    e.b.name
                );
                json!([410, "Expired", "too old resource version: RV (OLDEST)"])
            }
        };
        if let Some(sim) = &e.b.sim {
            sim.clear_faults();
        }
        obs.push(o("410 from a very old resourceVersion", shape));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_types_and_apply_conflicts_match() {
    differential("patch", |e| async move {
        let mut obs = Obs::new();
        e.post(&e.deployments(), &deployment("p", "img:1", 1)).await;
        let path = format!("{}/p", e.deployments());
        let names = |d: &Value| -> Vec<String> {
            d["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
        };
        let r = e.patch(&path, "application/merge-patch+json", &json!({"metadata": {"labels": {"m": "1"}}})).await;
        obs.push(o("merge", (r.code, &r.body["metadata"]["labels"])));
        let r = e.patch(&path, "application/json-patch+json",
            &json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "img:2"}])).await;
        obs.push(o("json", (r.code, &r.body["spec"]["template"]["spec"]["containers"][0]["image"])));
        let r = e.patch(&path, "application/json-patch+json", &json!([{"op": "test", "path": "/spec/replicas", "value": 5}])).await;
        obs.push(o("json test fails", (r.code, &r.body["reason"])));
        let r = e.patch(&path, "application/strategic-merge-patch+json",
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s:1"}]}}}})).await;
        assert_eq!(names(&r.body), ["side", "c"], "{}: an added item goes first", e.b.name);
        obs.push(o("strategic add", names(&r.body)));
        let r = e.patch(&path, "application/strategic-merge-patch+json",
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}})).await;
        obs.push(o("strategic delete", names(&r.body)));
        let r = e.patch(&path, "application/strategic-merge-patch+json",
            &json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 2}})).await;
        obs.push(o("stale precondition", (r.code, &r.body["reason"])));

        // kubectl set image sends $setElementOrder: the order stays
        let two = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s:1"}]}}}});
        e.patch(&path, "application/strategic-merge-patch+json", &two).await;
        if let Some(out) = e.kubectl(&["set", "image", "deployment/p", "c=img:3"]).await {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let d = e.deployment("p").await;
            let images: Vec<(String, String)> = d["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter()
                .map(|c| (c["name"].as_str().unwrap().to_string(), c["image"].as_str().unwrap().to_string()))
                .collect();
            obs.push(o("kubectl set image", &images));
            let out = e.kubectl(&["rollout", "restart", "deployment/p"]).await.unwrap();
            assert!(out.status.success());
            let d = e.deployment("p").await;
            let restarted = d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string();
            obs.push(o("kubectl rollout restart", (restarted, &d["metadata"]["generation"])));
        }

        // server-side apply: two managers, one field, different values
        let cms = e.configmaps();
        let apply = "application/apply-patch+yaml";
        let body = |x: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"x": x}});
        let r = e.patch(&format!("{cms}/ssa"), apply, &body("1")).await;
        obs.push(o("apply without fieldManager", (r.code, &r.body["reason"])));
        let r = e.patch(&format!("{cms}/ssa?fieldManager=a"), apply, &body("1")).await;
        assert_eq!(r.code, 201);
        obs.push(o("apply creates", r.code));
        let r = e.patch(&format!("{cms}/ssa?fieldManager=b"), apply, &body("1")).await;
        obs.push(o("same value, no conflict", r.code));
        let r = e.patch(&format!("{cms}/ssa?fieldManager=b"), apply, &body("2")).await;
        assert_eq!(r.code, 409);
        assert_eq!(r.body["message"], "Apply failed with 1 conflict: conflict with \"a\": .data.x");
        obs.push(o("conflict", r.status()));
        let r = e.patch(&format!("{cms}/ssa?fieldManager=b&force=true"), apply, &body("2")).await;
        obs.push(o("forced", (r.code, &r.body["data"])));
        let r = e.patch(&format!("{cms}/ssa?fieldManager=a"), apply, &body("3")).await;
        assert_eq!(r.body["message"], "Apply failed with 1 conflict: conflict with \"b\": .data.x");
        obs.push(o("conflict the other way", r.status()));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_create_races_match() {
    differential("lease", |e| async move {
        let mut obs = Obs::new();
        let path = format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases", e.ns);
        let lease = |holder: &str| json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "lock"}, "spec": {"holderIdentity": holder, "leaseDurationSeconds": 30}});
        let (la, lb) = (lease("a"), lease("b"));
        let (a, b) = tokio::join!(e.post(&path, &la), e.post(&path, &lb));
        let mut codes = vec![a.code, b.code];
        codes.sort();
        assert_eq!(codes, [201, 409]);
        let lost = if a.code == 409 { &a } else { &b };
        assert_eq!(lost.body["reason"], "AlreadyExists");
        obs.push(o("race", (&codes, lost.status())));
        let cur = e.get(&format!("{path}/lock")).await.body;
        let mut stale = cur.clone();
        stale["spec"]["holderIdentity"] = json!("c");
        let ok = e.raw("PUT", &format!("{path}/lock"), "application/json", stale.to_string().as_bytes(), &[]).await;
        let again = e.raw("PUT", &format!("{path}/lock"), "application/json", stale.to_string().as_bytes(), &[]).await;
        obs.push(o("replace, then stale replace", (ok.code, again.status())));
        let mut norv = cur.clone();
        norv["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        let r = e.raw("PUT", &format!("{path}/lock"), "application/json", norv.to_string().as_bytes(), &[]).await;
        assert_eq!(r.code, 422);
        obs.push(o("replace without resourceVersion", r.status()));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_reviews_and_forbidden_match() {
    differential("authz", |e| async move {
        let mut obs = Obs::new();
        e.post(&e.deployments(), &deployment("a", "img:1", 1)).await;
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": e.ns, "verb": "patch", "group": "apps", "resource": "deployments", "name": "a"}}});
        let ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
        let r = e.post(ssar, &review).await;
        assert_eq!((r.code, &r.body["status"]["allowed"]), (201, &json!(true)));
        obs.push(o("admin may patch", (r.code, &r.body["status"]["allowed"])));
        // kubectl sends its review as protobuf; "yes" exits 0, "no" exits 1
        let first_word = |out: &std::process::Output| {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            (out.status.code(), text.split_whitespace().next().unwrap_or_default().to_string())
        };
        if let Some(out) = e.kubectl(&["auth", "can-i", "patch", "deployments"]).await {
            assert_eq!(first_word(&out), (Some(0), "yes".to_string()), "{}", String::from_utf8_lossy(&out.stderr));
            obs.push(o("kubectl auth can-i", first_word(&out)));
        }
        if let Some(sim) = &e.b.sim {
            // the real server denies a user without RBAC bindings; the simulator needs the fault
            sim.set_fault(format!("deny:patch:apps/deployments:{}", e.ns).parse().unwrap());
            sim.set_fault(format!("deny:list:deployments:{}", e.ns).parse().unwrap());
        }
        let nobody = [("Impersonate-User", "diff-nobody")];
        let r = e.raw("POST", ssar, "application/json", review.to_string().as_bytes(), &nobody).await;
        assert_eq!(r.body["status"]["allowed"], false);
        obs.push(o("nobody may not patch", (r.code, &r.body["status"]["allowed"])));
        let r = e.raw("PATCH", &format!("{}/a", e.deployments()), "application/merge-patch+json", b"{}", &nobody).await;
        assert_eq!(
            r.body["message"],
            format!("deployments.apps \"a\" is forbidden: User \"diff-nobody\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"{}\"", e.ns)
        );
        obs.push(o("403 patch", r.status()));
        let r = e.raw("GET", &e.deployments(), "", b"", &nobody).await;
        obs.push(o("403 list", r.status()));
        if let Some(out) = e.kubectl(&["auth", "can-i", "patch", "deployments", "--as", "diff-nobody"]).await {
            // (the simulator adds its reason after "no - "; the real RBAC gives none)
            assert_eq!(first_word(&out), (Some(1), "no".to_string()));
            obs.push(o("kubectl auth can-i --as", first_word(&out)));
        }
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_reports_1_34() {
    differential("version", |e| async move {
        let v = e.get("/version").await.body;
        assert_eq!(
            (v["major"].as_str(), v["minor"].as_str()),
            (Some("1"), Some("34"))
        );
        assert!(v["gitVersion"].as_str().unwrap().starts_with("v1.34."));
        vec![o("major.minor", (&v["major"], &v["minor"]))]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_answers_match() {
    differential("delete", |e| async move {
        let mut obs = Obs::new();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}});
        e.post(&e.configmaps(), &cm).await;
        let r = e
            .raw("DELETE", &format!("{}/d", e.configmaps()), "", b"", &[])
            .await;
        assert_eq!(
            (r.code, &r.body["kind"], &r.body["status"]),
            (200, &json!("Status"), &json!("Success"))
        );
        obs.push(o(
            "configmap",
            (
                r.code,
                &r.body["kind"],
                &r.body["status"],
                &r.body["details"]["kind"],
                &r.body["details"]["name"],
            ),
        ));
        e.post(&e.deployments(), &deployment("d", "img:1", 1)).await;
        let r = e
            .raw("DELETE", &format!("{}/d", e.deployments()), "", b"", &[])
            .await;
        obs.push(o(
            "deployment",
            (
                r.code,
                &r.body["kind"],
                &r.body["status"],
                &r.body["details"]["group"],
                &r.body["details"]["kind"],
            ),
        ));
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                         "spec": {"containers": [{"name": "c", "image": "img:1"}]}});
        let pods = format!("/api/v1/namespaces/{}/pods", e.ns);
        let created = e.post(&pods, &pod).await;
        assert_eq!(created.code, 201, "{:?}", created);
        obs.push(o("pod generation", &created.body["metadata"]["generation"]));
        let start = Instant::now();
        while e.get(&format!("{pods}/p")).await.body["status"]["phase"] != "Running" {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{}: the pod never ran",
                e.b.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let bound = e.get(&format!("{pods}/p")).await.body;
        obs.push(o(
            "bound pod",
            (
                &bound["metadata"]["generation"],
                bound["spec"]["nodeName"].is_string(),
            ),
        ));
        let r = e.raw("DELETE", &format!("{pods}/p"), "", b"", &[]).await;
        assert_eq!(r.body["kind"], "Pod");
        obs.push(o(
            "pod",
            (
                r.code,
                &r.body["kind"],
                r.body["metadata"]["deletionTimestamp"].is_string(),
                &r.body["metadata"]["deletionGracePeriodSeconds"],
                &r.body["metadata"]["generation"],
            ),
        ));
        let r = e.raw("DELETE", &format!("{pods}/p"), "", b"", &[]).await;
        // gone at once on the simulator; terminating (then gone) on a real server
        obs.push(o(
            "pod again",
            r.code == 404 || r.body["metadata"]["deletionTimestamp"].is_string(),
        ));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unready_and_crashing_pods_match() {
    differential("tags", |e| async move {
        let mut obs = Obs::new();
        for (name, image) in [("u", "reg/app:1.0-unready"), ("c", "reg/app:1.0-crash")] {
            assert_eq!(
                e.post(&e.deployments(), &deployment(name, image, 1))
                    .await
                    .code,
                201
            );
        }
        let pods: Api<Pod> = Api::namespaced(e.client(), &e.ns);
        let start = Instant::now();
        let list = loop {
            let list: Vec<Value> = pods
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|p| serde_json::to_value(p).unwrap())
                .collect();
            if list.len() == 2
                && list
                    .iter()
                    .all(|p| p["status"]["containerStatuses"].is_array())
            {
                break list;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{}: pods never started",
                e.b.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for p in &list {
            let app = p["metadata"]["labels"]["app"].as_str().unwrap().to_string();
            let cs = &p["status"]["containerStatuses"][0];
            let state: Vec<&String> = cs["state"].as_object().unwrap().keys().collect();
            obs.push(o(
                &format!("{app}: phase, ready, started, state"),
                (
                    &p["status"]["phase"],
                    &cs["ready"],
                    &cs["started"],
                    &state,
                    &cs["state"]["waiting"]["reason"],
                    cs["lastState"]["terminated"]["exitCode"].clone(),
                ),
            ));
            let name = p["metadata"]["name"].as_str().unwrap();
            let path = format!("/api/v1/namespaces/{}/pods/{name}/log", e.ns);
            let start = p["status"]["startTime"].as_str().unwrap();
            let norm = |t: &Value| t.as_str().unwrap_or_default().replace(start, "START");
            let logs = e.get(&path).await;
            let prev = e.get(&format!("{path}?previous=true")).await;
            obs.push(o(
                &format!("{app}: logs, previous"),
                (logs.code, norm(&logs.body), prev.code),
            ));
        }
        let d = e.deployment("c").await;
        obs.push(o(
            "crashing deployment available",
            d["status"]["availableReplicas"].as_i64().unwrap_or(0),
        ));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_defaults_match() {
    differential("defaults", |e| async move {
        let mut obs = Obs::new();
        let mut d = deployment("d", "img:1", 1);
        d["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
        d["spec"].as_object_mut().unwrap().remove("replicas");
        let r = e.post(&e.deployments(), &d).await;
        obs.push(o("deployment spec", &r.body["spec"]));
        obs.push(o("deployment status", &r.body["status"]));
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                         "spec": {"selector": {"app": "d"}, "ports": [{"port": 80}]}});
        let r = e.post(&format!("/api/v1/namespaces/{}/services", e.ns), &svc).await;
        let mut spec = r.body["spec"].clone();
        assert!(spec["clusterIP"].as_str().unwrap().starts_with("10.96."));
        for k in ["clusterIP", "clusterIPs"] {
            spec.as_object_mut().unwrap().remove(k);
        }
        obs.push(o("service spec", &spec));
        obs.push(o("service status", &r.body["status"]));
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {}});
        let r = e.post(&format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases", e.ns), &lease).await;
        obs.push(o("lease", (r.code, &r.body["spec"], &r.body["metadata"]["generation"])));
        let cm = e.post(&e.configmaps(), &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})).await;
        obs.push(o("configmap", (cm.code, cm.body.get("data"))));
        obs
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_pages_and_selectors_match() {
    differential("lists", |e| async move {
        let mut obs = Obs::new();
        for n in ["a", "b", "c"] {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": n, "labels": {"set": "x", "n": n}}});
            e.post(&e.configmaps(), &cm).await;
        }
        // pages of two among the set (kube-root-ca.crt on a real server is not labelled)
        let mut names = Vec::new();
        let mut token = String::new();
        let mut pages = Vec::new();
        loop {
            let mut q = format!("{}?labelSelector=set%3Dx&limit=2", e.configmaps());
            if !token.is_empty() {
                q.push_str(&format!("&continue={token}"));
            }
            let r = e.get(&q).await;
            assert_eq!(r.code, 200, "{:?}", r);
            let items = r.body["items"].as_array().unwrap().clone();
            names.extend(items.iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()));
            pages.push((items.len(), r.body["metadata"]["remainingItemCount"].clone()));
            token = r.body["metadata"]["continue"].as_str().unwrap_or_default().to_string();
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(names, ["a", "b", "c"]);
        obs.push(o("pages", (&names, &pages)));
        let r = e.get(&format!("{}?labelSelector=n%20in%20(a%2Cc)", e.configmaps())).await;
        let got: Vec<&str> = r.body["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
        obs.push(o("set-based selector", &got));
        let r = e.get(&format!("{}?fieldSelector=metadata.name%3Db", e.configmaps())).await;
        obs.push(o("field selector", r.body["items"].as_array().unwrap().len()));
        let r = e.get(&format!("{}?fieldSelector=spec.foo%3Dx", e.configmaps())).await;
        assert_eq!(r.body["message"], "\"spec.foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"");
        obs.push(o("unknown field selector", r.status()));
        let r = e.get(&format!("{}?labelSelector=a%3D%3D%3Db", e.configmaps())).await;
        obs.push(o("bad label selector", (r.code, &r.body["reason"])));
        obs
    })
    .await;
}
