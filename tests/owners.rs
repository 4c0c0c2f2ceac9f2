//! ktplay touches only what it owns (issue 20, items 1, 2 and 8), through `ktplay run` on both
//! backends (`NAME::sim`, `NAME::real`; see `tests/support`):
//!
//! - a routed canary changes only the backendRefs of its component's own Service, in an
//!   HTTPRoute of two rules (`/` → `web` 100 + `web-legacy` 0, `/admin` → `admin`) and in an
//!   ingress-nginx canary Ingress, and puts every rule back exactly as it was, after a success
//!   and after a rollback; a router in front of no Service of the component is refused before
//!   any action;
//! - an object holding a canary's name that this run did not create (another team's
//!   `web-canary` Deployment, a `web-canary` Service, a canary of another ktplay run) is refused
//!   before any action, named, and left as it was;
//! - a run killed while its canary is being promoted resumes the promotion (never the canary:
//!   no pin to the half-promoted ReplicaSet, no new split).
//!
//! Every scenario asserts the final state of every object it touched and of those it must not
//! touch, the lock and the journal. The HTTPRoute scenarios need the Gateway API CRDs on the
//! real backend (`KTPLAY_GATEWAY_API_CRDS`, or `~/.cache/ktplay-gateway-api`); without them the
//! real variant says loudly that it skipped.

#[macro_use]
mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ktplay::sim::{Seed, SeedComponent, SeedWorkload, SimConfig};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{json, Value};
use support::{kubeconfig, Backend, TestCluster};

const BIN: &str = env!("CARGO_BIN_EXE_ktplay");

on_both!(
    owners_httproute_canary_changes_only_its_backends,
    owners_ingress_canary_splits_only_its_paths,
    owners_router_without_the_component_is_refused,
    owners_foreign_canary_deployment_is_refused,
    owners_foreign_canary_service_is_refused,
    owners_killed_during_promotion_resumes_the_promotion,
);

fn http_routes() -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    }
}

fn ingresses() -> ApiResource {
    ApiResource {
        group: "networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "networking.k8s.io/v1".into(),
        kind: "Ingress".into(),
        plural: "ingresses".into(),
    }
}

fn deployments() -> ApiResource {
    ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        plural: "deployments".into(),
    }
}

fn services() -> ApiResource {
    ApiResource {
        group: "".into(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Service".into(),
        plural: "services".into(),
    }
}

/// A probe the playbook's guard asks: `/ok` answers 200 until `failing` is set, then 503.
async fn probe(failing: Arc<AtomicBool>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let failing = failing.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let (status, body) = if failing.load(Ordering::SeqCst) {
                    ("503 Service Unavailable", "down")
                } else {
                    ("200 OK", "ok")
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    url
}

fn playbook_text(ns: &str, traffic: &str, how: &str, probe: &str) -> String {
    format!(
        r#"playbook "owners" {{
  namespace "{ns}"
  component web {{
    deployment "web"
    image "acme/web"
    from 1.0.0
    to 1.1.0
    traffic {traffic} "site"
  }}
  let probe = "{probe}"
  stage web {{
    canary web {how} {{
      guard http GET "${{probe}}/ok" expect 200
    }}
  }}
}}
"#
    )
}

struct Setup {
    dir: tempfile::TempDir,
    pb: PathBuf,
    kc: PathBuf,
    c: TestCluster,
    failing: Arc<AtomicBool>,
}

/// `web` (the component, 2 replicas at 1.0.0) beside `web-legacy` and `admin` (not the
/// component's, 1 replica each), each with a Service of its name.
async fn setup(backend: Backend, tag: &str, traffic: &str, how: &str) -> Setup {
    setup_with(backend, tag, traffic, how, SimConfig::default()).await
}

async fn setup_with(
    backend: Backend,
    tag: &str,
    traffic: &str,
    how: &str,
    config: SimConfig,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace(tag);
    let failing = Arc::new(AtomicBool::new(false));
    let url = probe(failing.clone()).await;
    let pb = dir.path().join("owners.ktplay");
    std::fs::write(&pb, playbook_text(&ns, traffic, how, &url)).unwrap();
    let comp = |name: &str, replicas: u32| SeedComponent {
        name: name.into(),
        workload: SeedWorkload::Deployments(vec![name.into()]),
        container: name.into(),
        image: format!("acme/{name}"),
        version: "1.0.0".parse().unwrap(),
        replicas,
    };
    let seed = Seed {
        namespace: ns.clone(),
        components: vec![comp("web", 2), comp("web-legacy", 1), comp("admin", 1)],
        pod_env: Vec::new(),
        routes: Vec::new(),
    };
    let c = TestCluster::new(backend, config, &seed).await;
    let kc = kubeconfig(dir.path(), &[("test", &c)]);
    Setup {
        dir,
        pb,
        kc,
        c,
        failing,
    }
}

fn api(c: &TestCluster, ar: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(c.client(), &c.ns, ar)
}

async fn get(c: &TestCluster, ar: &ApiResource, name: &str) -> Option<Value> {
    api(c, ar)
        .get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

async fn create(c: &TestCluster, ar: &ApiResource, obj: Value) -> Value {
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    serde_json::to_value(
        api(c, ar)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap(),
    )
    .unwrap()
}

/// The Gateway API CRDs on the real backend (the simulator serves HTTPRoutes itself); `false`
/// (after saying so loudly) when they are not available.
async fn http_route_crd(c: &TestCluster, test: &str) -> bool {
    if c.backend == Backend::Sim {
        return true;
    }
    let dir = std::env::var_os("KTPLAY_GATEWAY_API_CRDS")
        .map(PathBuf::from)
        .or_else(|| {
            let base = PathBuf::from(std::env::var_os("HOME")?)
                .join(".cache/ktplay-gateway-api/mod/sigs.k8s.io");
            let mut found: Vec<PathBuf> = std::fs::read_dir(base)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path().join("config/crd/standard")))
                .filter(|p| p.exists())
                .collect();
            found.sort();
            found.pop()
        });
    let Some(dir) = dir else {
        eprintln!("\n!!!!! SKIPPED on the real backend: {test}: no Gateway API CRDs (KTPLAY_GATEWAY_API_CRDS) !!!!!\n");
        return false;
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let text =
        std::fs::read_to_string(dir.join("gateway.networking.k8s.io_httproutes.yaml")).unwrap();
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("the HTTPRoute CRD was refused: {e}"),
    }
    let t0 = Instant::now();
    loop {
        if api(c, &http_routes())
            .list(&Default::default())
            .await
            .is_ok()
        {
            return true;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the HTTPRoute CRD was never served"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Issue 20's route: `/` → web 100 + web-legacy 0, `/admin` → admin. Its rules as stored.
async fn two_rule_route(c: &TestCluster) -> Value {
    let r = create(
        c,
        &http_routes(),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "site"},
               "spec": {"parentRefs": [{"name": "edge"}], "rules": [
                   {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": "web", "port": 80, "weight": 100},
                                    {"name": "web-legacy", "port": 80, "weight": 0}]},
                   {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                    "backendRefs": [{"name": "admin", "port": 80}]}]}}),
    )
    .await;
    r["spec"]["rules"].clone()
}

fn command(s: &Setup, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("run")
        .arg(&s.pb)
        .arg(format!("--kubeconfig={}", s.kc.display()))
        .args(extra)
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

fn text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn run(s: &Setup, extra: &[&str]) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(180), command(s, extra).output())
        .await
        .expect("ktplay finished in time")
        .unwrap()
}

/// Run to the end while watching one object: every distinct state of `pick(object)` seen.
/// `on_seen` may react to a state (set the probe failing).
async fn run_watching(
    s: &Setup,
    ar: &ApiResource,
    name: &str,
    pick: impl Fn(&Value) -> Value,
    on_seen: impl Fn(&Value),
) -> (std::process::Output, Vec<Value>) {
    let child = command(s, &[]).spawn().unwrap();
    let out = tokio::spawn(child.wait_with_output());
    let mut seen: Vec<Value> = Vec::new();
    let t0 = Instant::now();
    // One more look after the process ended: its last change (a removal just before it
    // exits) can fall between two polls.
    let mut ended = false;
    loop {
        let v = get(&s.c, ar, name)
            .await
            .map(|o| pick(&o))
            .unwrap_or(Value::Null);
        if seen.last() != Some(&v) {
            on_seen(&v);
            seen.push(v);
        }
        if ended {
            break;
        }
        ended = out.is_finished();
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "the run never ended"
        );
        if !ended {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    (out.await.unwrap().unwrap(), seen)
}

async fn journal_status(c: &TestCluster) -> String {
    let cm = c
        .list("configmaps")
        .await
        .into_iter()
        .find(|cm| {
            cm["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("ktplay-journal-"))
        })
        .expect("a journal ConfigMap");
    cm["data"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn assert_unlocked(c: &TestCluster) {
    let leases: Vec<Value> = c
        .list("leases")
        .await
        .into_iter()
        .filter(|l| {
            l["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("ktplay-"))
        })
        .collect();
    assert!(leases.is_empty(), "the lock is still held: {leases:?}");
}

/// Everything but the route as it must be after a run: web at `web_version`, web-legacy and
/// admin untouched, every Service's selector as seeded, no canary object left.
async fn assert_objects(c: &TestCluster, web_version: &str, out: &str) {
    assert_eq!(
        c.image("web").await,
        format!("acme/web:{web_version}"),
        "{out}"
    );
    assert_eq!(
        c.image("web-legacy").await,
        "acme/web-legacy:1.0.0",
        "{out}"
    );
    assert_eq!(c.image("admin").await, "acme/admin:1.0.0", "{out}");
    let mut names: Vec<String> = c
        .list("deployments")
        .await
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["admin", "web", "web-legacy"],
        "no canary left: {out}"
    );
    let mut svcs: Vec<(String, Value)> = c
        .list("services")
        .await
        .iter()
        .map(|s| {
            (
                s["metadata"]["name"].as_str().unwrap().to_string(),
                s["spec"]["selector"].clone(),
            )
        })
        .collect();
    svcs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        svcs,
        [
            ("admin".to_string(), json!({"app": "admin"})),
            ("web".to_string(), json!({"app": "web"})),
            ("web-legacy".to_string(), json!({"app": "web-legacy"})),
        ],
        "every Service as seeded, no canary Service: {out}"
    );
}

/// The rules with the canary at `p`%: only `web` split, web-legacy and admin as they were.
fn split(rules: &Value, p: u64) -> Value {
    let mut r = rules.clone();
    let refs = r[0]["backendRefs"].as_array_mut().unwrap();
    let mut canary = refs[0].clone();
    canary["name"] = json!("web-canary");
    canary["weight"] = json!(p);
    refs[0]["weight"] = json!(100 - p);
    refs.insert(1, canary);
    r
}

/// Issue 20, item 1: during the canary only `web` is split (90/10, then 50/50), never
/// web-legacy or admin; after a success and after a rollback in the 50% step, both rules
/// exactly as they were.
async fn owners_httproute_canary_changes_only_its_backends(backend: Backend) {
    for fail in [false, true] {
        let s = setup(backend, "own-route", "httproute", "steps 10% 50% every 2s").await;
        if !http_route_crd(&s.c, "owners_httproute_canary_changes_only_its_backends").await {
            return;
        }
        let rules = two_rule_route(&s.c).await;
        let fifty = split(&rules, 50);
        let failing = s.failing.clone();
        let (out, seen) = run_watching(
            &s,
            &http_routes(),
            "site",
            |r| r["spec"]["rules"].clone(),
            |v| {
                if fail && *v == fifty {
                    failing.store(true, Ordering::SeqCst);
                }
            },
        )
        .await;
        let t = text(&out);
        assert_eq!(out.status.code(), Some(if fail { 1 } else { 0 }), "{t}");
        assert!(
            t.contains("HTTPRoute site: web 90, web-canary 10"),
            "only web is split: {t}"
        );
        // Every state the route went through: as it was, 90/10, 50/50 — nothing else.
        let allowed = [rules.clone(), split(&rules, 10), fifty.clone()];
        for v in &seen {
            assert!(
                allowed.contains(v),
                "the route passed through {v:#}\nallowed: {allowed:#?}\n{t}"
            );
        }
        assert!(seen.contains(&split(&rules, 10)), "{seen:#?}");
        assert!(seen.contains(&fifty), "{seen:#?}");
        let after = get(&s.c, &http_routes(), "site").await.unwrap();
        assert_eq!(
            after["spec"]["rules"], rules,
            "every rule exactly as before: {t}"
        );
        assert_objects(&s.c, if fail { "1.0.0" } else { "1.1.0" }, &t).await;
        assert!(get(&s.c, &services(), "admin-canary").await.is_none());
        assert_unlocked(&s.c).await;
        assert_eq!(
            journal_status(&s.c).await,
            if fail { "rolled_back" } else { "succeeded" }
        );
        // The journal holds the rules as they were, before the first write.
        let journal = journal_events(&s.c).await;
        let start = journal
            .iter()
            .find(|e| e["event"] == "start")
            .expect("a start event");
        assert_eq!(
            start["record"]["routed"]["services"],
            json!(["web"]),
            "{start}"
        );
        assert_eq!(
            start["record"]["routed"]["rules"],
            json!(rules
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["backendRefs"].clone())
                .collect::<Vec<_>>())
        );
    }
}

async fn journal_events(c: &TestCluster) -> Vec<Value> {
    let cm = c
        .list("configmaps")
        .await
        .into_iter()
        .find(|cm| {
            cm["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("ktplay-journal-"))
        })
        .expect("a journal ConfigMap");
    cm["data"]["events"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Item 1 for ingress-nginx: the canary Ingress carries only the paths that send to `web`
/// (never `/admin` or the admin host), the stable Ingress is never written, and everything
/// goes after a success and after a rollback.
async fn owners_ingress_canary_splits_only_its_paths(backend: Backend) {
    for fail in [false, true] {
        let s = setup(backend, "own-ing", "ingress", "weight 10% for 3s").await;
        let stable = create(
            &s.c,
            &ingresses(),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "site"},
                   "spec": {"ingressClassName": "nginx", "rules": [
                       {"host": "site.example.com", "http": {"paths": [
                           {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                           {"path": "/admin", "pathType": "Prefix", "backend": {"service": {"name": "admin", "port": {"number": 80}}}}]}},
                       {"host": "admin.example.com", "http": {"paths": [
                           {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "admin", "port": {"number": 80}}}}]}}]}}),
        )
        .await;
        let failing = s.failing.clone();
        let (out, seen) = run_watching(
            &s,
            &ingresses(),
            "site-canary",
            |i| json!({"spec": i["spec"], "weight": i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"]}),
            |v| {
                if fail && !v.is_null() {
                    failing.store(true, Ordering::SeqCst);
                }
            },
        )
        .await;
        let t = text(&out);
        assert_eq!(out.status.code(), Some(if fail { 1 } else { 0 }), "{t}");
        let canary = seen
            .iter()
            .find(|v| !v.is_null())
            .unwrap_or_else(|| panic!("no canary Ingress seen: {t}"));
        assert_eq!(canary["weight"], "10", "{t}");
        assert_eq!(
            canary["spec"]["rules"],
            json!([{"host": "site.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web-canary", "port": {"number": 80}}}}]}}]),
            "only web's path goes to the canary: {t}"
        );
        assert!(
            seen.last().unwrap().is_null(),
            "the canary Ingress is gone: {t}"
        );
        let after = get(&s.c, &ingresses(), "site").await.unwrap();
        assert_eq!(after["spec"], stable["spec"], "{t}");
        assert_eq!(
            after["metadata"]["resourceVersion"], stable["metadata"]["resourceVersion"],
            "the stable Ingress was never written: {t}"
        );
        assert_objects(&s.c, if fail { "1.0.0" } else { "1.1.0" }, &t).await;
        assert_unlocked(&s.c).await;
        assert_eq!(
            journal_status(&s.c).await,
            if fail { "rolled_back" } else { "succeeded" }
        );
    }
}

/// Nothing was changed: the route, every deployment and Service as set up, no canary object,
/// no lock; the journal says `refused`.
async fn assert_untouched(s: &Setup, before: usize, out: &str) {
    assert_objects_but(&s.c, out).await;
    assert_unlocked(&s.c).await;
    assert_eq!(journal_status(&s.c).await, "refused", "{out}");
    let writes: Vec<String> = s.c.request_log()[before..]
        .iter()
        .filter(|r| {
            r.method != "GET"
                && !r.path.contains("/configmaps")
                && !r.path.contains("/leases")
                && !r.path.contains("/selfsubject")
        })
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    assert!(writes.is_empty(), "ktplay wrote {writes:#?}\n{out}");
}

async fn assert_objects_but(c: &TestCluster, out: &str) {
    assert_eq!(c.image("web").await, "acme/web:1.0.0", "{out}");
    assert_eq!(
        c.image("web-legacy").await,
        "acme/web-legacy:1.0.0",
        "{out}"
    );
    assert_eq!(c.image("admin").await, "acme/admin:1.0.0", "{out}");
    let svc = c.get("services", "web").await.unwrap();
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}), "{out}");
}

/// Item 1: a route that does not send to the component's Service (only to web-legacy and
/// admin) is refused before any action, named.
async fn owners_router_without_the_component_is_refused(backend: Backend) {
    let s = setup(backend, "own-noroute", "httproute", "weight 10% for 1s").await;
    if !http_route_crd(&s.c, "owners_router_without_the_component_is_refused").await {
        return;
    }
    let r = create(
        &s.c,
        &http_routes(),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "site"},
               "spec": {"parentRefs": [{"name": "edge"}], "rules": [
                   {"backendRefs": [{"name": "web-legacy", "port": 80}]},
                   {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                    "backendRefs": [{"name": "admin", "port": 80}]}]}}),
    )
    .await;
    let before = s.c.request_log().len();
    let out = run(&s, &[]).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("HTTPRoute `site` sends to no Service of the component's deployment `web` (it sends to `web-legacy`, `admin`)"),
        "{t}"
    );
    let after = get(&s.c, &http_routes(), "site").await.unwrap();
    assert_eq!(after["spec"], r["spec"], "{t}");
    assert_eq!(
        after["metadata"]["resourceVersion"],
        r["metadata"]["resourceVersion"]
    );
    assert_untouched(&s, before, &t).await;
}

/// Item 2: another team's `web-canary` (other labels, other selector, another image) is never
/// taken for the canary: the run is refused before any action, naming it, and the object is
/// as it was. The same for a canary left by another ktplay run.
async fn owners_foreign_canary_deployment_is_refused(backend: Backend) {
    for other_run in [false, true] {
        let s = setup(backend, "own-foreign", "ingress", "weight 10% for 1s").await;
        let mut labels = json!({"team": "experiments", "app": "experiment"});
        if other_run {
            labels = json!({"app.kubernetes.io/managed-by": "ktplay", "ktplay/canary-of": "web",
                            "ktplay.dev/run-id": "0badc0de", "app": "experiment"});
        }
        let foreign = create(
            &s.c,
            &deployments(),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web-canary", "labels": labels},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "experiment"}},
                            "template": {"metadata": {"labels": {"app": "experiment"}},
                                         "spec": {"containers": [{"name": "web", "image": "acme/web:1.0.0-experiment"}]}}}}),
        )
        .await;
        create(
            &s.c,
            &ingresses(),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "site"},
                   "spec": {"ingressClassName": "nginx", "rules": [{"host": "site.example.com", "http": {"paths": [
                       {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
        )
        .await;
        let before = s.c.request_log().len();
        let out = run(&s, &[]).await;
        let t = text(&out);
        assert_eq!(out.status.code(), Some(3), "{t}");
        assert!(
            t.contains("Deployment `web-canary` in namespace") && t.contains("is not this run's"),
            "{t}"
        );
        if other_run {
            assert!(
                t.contains("created by another ktplay run (`0badc0de`)"),
                "{t}"
            );
        } else {
            assert!(t.contains("ktplay did not create it"), "{t}");
        }
        let after = get(&s.c, &deployments(), "web-canary")
            .await
            .expect("still there");
        assert_eq!(after["metadata"]["uid"], foreign["metadata"]["uid"]);
        assert_eq!(after["spec"], foreign["spec"], "{t}");
        assert_eq!(after["metadata"]["labels"], foreign["metadata"]["labels"]);
        assert!(get(&s.c, &ingresses(), "site-canary").await.is_none());
        assert_untouched(&s, before, &t).await;
    }
}

/// Item 2 for the canary Service: a `web-canary` Service this run did not create is refused
/// before any action (not adopted into the route, not deleted).
async fn owners_foreign_canary_service_is_refused(backend: Backend) {
    let s = setup(backend, "own-fsvc", "ingress", "weight 10% for 1s").await;
    let foreign = create(
        &s.c,
        &services(),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-canary"},
               "spec": {"selector": {"app": "experiment"}, "ports": [{"name": "http", "port": 80}]}}),
    )
    .await;
    create(
        &s.c,
        &ingresses(),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "site"},
               "spec": {"ingressClassName": "nginx", "rules": [{"host": "site.example.com", "http": {"paths": [
                   {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    )
    .await;
    let before = s.c.request_log().len();
    let out = run(&s, &[]).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("Service `web-canary` in namespace") && t.contains("ktplay did not create it"),
        "{t}"
    );
    let after = get(&s.c, &services(), "web-canary")
        .await
        .expect("still there");
    assert_eq!(after["metadata"]["uid"], foreign["metadata"]["uid"]);
    assert_eq!(after["spec"]["selector"], json!({"app": "experiment"}));
    assert!(get(&s.c, &deployments(), "web-canary").await.is_none());
    assert_untouched(&s, before, &t).await;
}

/// Item 8: SIGKILL while the canary is being promoted (its image already set on `web`); the
/// `--resume` goes on with the promotion: the stable Service is never pinned again (it would
/// be pinned to the half-promoted ReplicaSet) and the route never split again; success, every
/// object as it must be.
async fn owners_killed_during_promotion_resumes_the_promotion(backend: Backend) {
    // The simulator's controllers at a pace, so the promotion's rollout takes a moment.
    let config = SimConfig {
        pace: Duration::from_millis(50),
        ..SimConfig::default()
    };
    let s = setup_with(
        backend,
        "own-promote",
        "httproute",
        "weight 10% for 1s",
        config,
    )
    .await;
    if !http_route_crd(&s.c, "owners_killed_during_promotion_resumes_the_promotion").await {
        return;
    }
    let rules = two_rule_route(&s.c).await;
    let journal = s.dir.path().join("journal.jsonl");
    let jarg = format!("--journal={}", journal.display());
    let mut child = command(&s, &[&jarg]).spawn().unwrap();
    // Killed once the promotion has begun: web's template is at the new version.
    let t0 = Instant::now();
    loop {
        if s.c.image("web").await == "acme/web:1.1.0" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "never promoted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    let _ = child.wait().await;
    let killed = std::fs::read_to_string(&journal).unwrap();
    assert!(
        killed.contains("\"promoted\":["),
        "killed after the promotion was journaled: {killed}"
    );
    assert_eq!(journal_status(&s.c).await, "running");
    let before = s.c.request_log().len();

    let (out, seen) = {
        let child = command(&s, &["--resume", &jarg]).spawn().unwrap();
        let out = tokio::spawn(child.wait_with_output());
        let mut seen: Vec<(Value, Value)> = Vec::new();
        while !out.is_finished() {
            let svc = s.c.get("services", "web").await.unwrap()["spec"]["selector"].clone();
            let route = get(&s.c, &http_routes(), "site").await.unwrap()["spec"]["rules"].clone();
            let v = (svc, route);
            if seen.last() != Some(&v) {
                seen.push(v);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (out.await.unwrap().unwrap(), seen)
    };
    let t = text(&out);
    // What the resumed run wrote first: the bug pinned the stable Service to the half-promoted
    // ReplicaSet and split the route again, then finished or rolled back.
    let writes: Vec<String> = s.c.request_log()[before..]
        .iter()
        .filter(|r| r.method != "GET" && r.status < 300)
        .map(|r| format!("{} {}", r.method, r.path.split('?').next().unwrap()))
        .collect();
    assert!(
        !writes
            .iter()
            .any(|w| w.ends_with("/services/web") || w.ends_with("/httproutes/site")),
        "the resumed run pinned the stable Service or split the route again: {writes:#?}\n{t}"
    );
    for (svc, route) in &seen {
        assert!(
            svc["pod-template-hash"].is_null(),
            "the resumed run pinned the stable Service again: {svc}\n{t}"
        );
        assert!(
            !route.to_string().contains("web-canary"),
            "the resumed run split the route again: {route:#}\n{t}"
        );
    }
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("promotion resumed"), "{t}");
    assert!(
        !t.contains("/ok"),
        "the canary's guards did not run again: {t}"
    );
    assert!(
        !writes
            .iter()
            .any(|w| w.starts_with("POST") && w.ends_with("/deployments")),
        "no canary created again: {writes:#?}"
    );
    let after = get(&s.c, &http_routes(), "site").await.unwrap();
    assert_eq!(after["spec"]["rules"], rules, "{t}");
    assert_objects(&s.c, "1.1.0", &t).await;
    assert_unlocked(&s.c).await;
    assert_eq!(journal_status(&s.c).await, "succeeded");
}
