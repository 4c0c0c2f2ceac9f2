//! The simulator through kube-rs (in-process) and over loopback HTTP: objects, patches,
//! selectors, errors, watches, the deployment controller, leases, the simulated Keeptrusts
//! services and robustness against bad input.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};
use tower::ServiceExt;

use ktplay_sim::{Fault, Seed, SeedComponent, SeedWorkload, Sim, SimConfig};

const NS: &str = "keeptrusts";

fn v(s: &str) -> semver::Version {
    semver::Version::parse(s).unwrap()
}

fn sim_with(config: SimConfig, version: &str) -> (Sim, Client) {
    let sim = Sim::new(config);
    sim.seed(&Seed::keeptrusts(NS, v(version)));
    let client = Client::new(sim.router(), NS);
    (sim, client)
}

fn fast(version: &str) -> (Sim, Client) {
    sim_with(SimConfig::default(), version)
}

/// kubectl's rollout-complete test on a deployment as JSON.
fn complete(d: &Value) -> bool {
    let g = d["metadata"]["generation"].as_i64().unwrap_or(0);
    let s = &d["status"];
    let og = s["observedGeneration"].as_i64().unwrap_or(0);
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let n = |k: &str| s[k].as_i64().unwrap_or(0);
    let timed_out = s["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["reason"] == "ProgressDeadlineExceeded");
    g <= og
        && !timed_out
        && n("updatedReplicas") >= want
        && n("replicas") <= n("updatedReplicas")
        && n("availableReplicas") >= n("updatedReplicas")
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn deployment(sim: &Sim, name: &str) -> Value {
    sim.get_object("deployments", NS, name)
        .expect("deployment exists")
}

fn image_of(d: &Value) -> String {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn set_image(api: &Api<Deployment>, name: &str, container: &str, image: &str) {
    let p = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": container}],
        "containers": [{"name": container, "image": image}]
    }}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&p))
        .await
        .unwrap();
}

fn api_err(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn seeded_objects_carry_server_metadata() {
    let (_sim, client) = fast("1.4.0");
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    let d = deploys.get("keeptrusts-gateway").await.unwrap();
    assert!(d.metadata.uid.is_some());
    assert!(d.metadata.creation_timestamp.is_some());
    assert!(d.metadata.generation.unwrap() >= 1);
    let ann = d.metadata.annotations.unwrap();
    assert_eq!(ann["deployment.kubernetes.io/revision"], "1");
    let st = d.status.unwrap();
    assert_eq!(st.ready_replicas, Some(3));
    assert_eq!(st.observed_generation, d.metadata.generation);
    let rs: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let list = rs
        .list(&ListParams::default().labels("app=keeptrusts-gateway"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let owner = &list.items[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.uid, d.metadata.uid.unwrap());
    // resourceVersions are one global, increasing sequence
    let pods: Api<Pod> = Api::default_namespaced(client);
    let rv_list = pods.list(&ListParams::default()).await.unwrap();
    let list_rv: u64 = rv_list.metadata.resource_version.unwrap().parse().unwrap();
    for p in &rv_list.items {
        let rv: u64 = p
            .metadata
            .resource_version
            .clone()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rv <= list_rv);
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    }
    assert_eq!(rv_list.items.len(), 21, "3 pods for each of 7 deployments");
}

#[tokio::test]
async fn four_patch_types() {
    let (sim, client) = fast("1.4.0");
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    // strategic merge (kubectl set image): containers merge by name
    set_image(
        &deploys,
        "keeptrusts-gateway",
        "gateway",
        "keeptrusts/gateway:1.5.0",
    )
    .await;
    let d = deployment(&sim, "keeptrusts-gateway");
    assert_eq!(image_of(&d), "keeptrusts/gateway:1.5.0");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 41002,
        "strategic merge keeps the container's other fields"
    );
    assert!(!d.to_string().contains("$setElementOrder"));
    // merge patch: an annotation, and null deletes
    let p = json!({"metadata": {"annotations": {"team": "platform", "tmp": "x"}}});
    deploys
        .patch(
            "keeptrusts-gateway",
            &PatchParams::default(),
            &Patch::Merge(&p),
        )
        .await
        .unwrap();
    let p = json!({"metadata": {"annotations": {"tmp": null}}});
    let d = deploys
        .patch(
            "keeptrusts-gateway",
            &PatchParams::default(),
            &Patch::Merge(&p),
        )
        .await
        .unwrap();
    let ann = d.metadata.annotations.unwrap();
    assert_eq!(ann.get("team").map(String::as_str), Some("platform"));
    assert!(!ann.contains_key("tmp"));
    // JSON patch (as kubectl rollout undo sends it), through the raw client
    let body = json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]);
    let req = http::Request::patch(format!(
        "/apis/apps/v1/namespaces/{NS}/deployments/keeptrusts-api"
    ))
    .header("content-type", "application/json-patch+json")
    .body(serde_json::to_vec(&body).unwrap())
    .unwrap();
    let d: Deployment = client.request(req).await.unwrap();
    assert_eq!(d.spec.replicas, Some(4));
    // server-side apply: needs a field manager; a Service selector is atomic
    let svc: Api<Service> = Api::default_namespaced(client.clone());
    let applied = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "keeptrusts-console"},
        "spec": {"selector": {"app": "keeptrusts-console", "version": "green"}}
    });
    let s = svc
        .patch(
            "keeptrusts-console",
            &PatchParams::apply("ktplay"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    let sel = s.spec.unwrap().selector.unwrap();
    assert_eq!(sel.len(), 2);
    assert_eq!(sel["version"], "green");
    let only_app = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "keeptrusts-console"},
        "spec": {"selector": {"app": "keeptrusts-console"}}
    });
    let s = svc
        .patch(
            "keeptrusts-console",
            &PatchParams::apply("ktplay"),
            &Patch::Apply(&only_app),
        )
        .await
        .unwrap();
    assert_eq!(
        s.spec.unwrap().selector.unwrap().len(),
        1,
        "selector replaced whole"
    );
    // apply creates what does not exist
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "run-state"}, "data": {"stage": "api"}});
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::default_namespaced(client);
    let c = cms
        .patch(
            "run-state",
            &PatchParams::apply("ktplay"),
            &Patch::Apply(&cm),
        )
        .await
        .unwrap();
    assert_eq!(c.data.unwrap()["stage"], "api");
}

#[tokio::test]
async fn generation_and_observed_generation() {
    let (sim, client) = fast("1.4.0");
    let deploys: Api<Deployment> = Api::default_namespaced(client);
    let before = deployment(&sim, "keeptrusts-api")["metadata"]["generation"]
        .as_i64()
        .unwrap();
    // a status-only or no-op write does not bump generation
    let p = json!({"metadata": {"labels": {"x": "y"}}});
    deploys
        .patch("keeptrusts-api", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(
        deployment(&sim, "keeptrusts-api")["metadata"]["generation"],
        before
    );
    let p = json!({"spec": {"replicas": 2}});
    let d = deploys
        .patch("keeptrusts-api", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(before + 1));
    wait_until("scale down", Duration::from_secs(5), || {
        let d = deployment(&sim, "keeptrusts-api");
        complete(&d) && d["status"]["replicas"] == 2
    })
    .await;
    assert_eq!(
        sim.list_objects("pods", NS)
            .iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "keeptrusts-api")
            .count(),
        2
    );
}

#[tokio::test]
async fn watcher_sees_every_intermediate_status_of_a_rollout() {
    let (sim, client) = fast("1.4.0");
    let deploys: Api<Deployment> = Api::default_namespaced(client);
    let cfg = watcher::Config::default().fields("metadata.name=keeptrusts-gateway");
    let mut stream = watcher(deploys.clone(), cfg).boxed();
    // wait for the initial list
    loop {
        if let watcher::Event::InitDone = stream.try_next().await.unwrap().unwrap() {
            break;
        }
    }
    set_image(
        &deploys,
        "keeptrusts-gateway",
        "gateway",
        "keeptrusts/gateway:1.5.0",
    )
    .await;
    let mut seen: Vec<(i32, i32, i32, i32)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline.into(), stream.try_next())
            .await
            .expect("rollout finished in time")
            .unwrap()
            .unwrap();
        if let watcher::Event::Apply(d) = ev {
            let s = d.status.clone().unwrap_or_default();
            let t = (
                s.replicas.unwrap_or(0),
                s.updated_replicas.unwrap_or(0),
                s.ready_replicas.unwrap_or(0),
                s.available_replicas.unwrap_or(0),
            );
            if seen.last() != Some(&t) {
                seen.push(t);
            }
            if complete(&serde_json::to_value(&d).unwrap()) && t.1 == 3 {
                break;
            }
        }
    }
    // maxSurge 25% of 3 = 1, maxUnavailable 25% of 3 = 0: one pod at a time, never below 3.
    for (replicas, _, _, available) in &seen {
        assert!(*replicas <= 4, "surge above 1: {seen:?}");
        assert!(*available >= 3, "availability dropped: {seen:?}");
    }
    for updated in 1..=3 {
        assert!(
            seen.iter().any(|s| s.1 == updated),
            "never saw {updated} updated replicas: {seen:?}"
        );
    }
    assert!(
        seen.iter().any(|s| s.0 == 4),
        "never saw the surge pod: {seen:?}"
    );
    assert!(seen.len() >= 6, "too few intermediate states: {seen:?}");
    let d = deployment(&sim, "keeptrusts-gateway");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let cond = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap()
        .clone();
    assert_eq!(cond["reason"], "NewReplicaSetAvailable");
    // old pods are gone, the old ReplicaSet is kept at 0 for undo
    let pods = sim.list_objects("pods", NS);
    let gw: Vec<&Value> = pods
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "keeptrusts-gateway")
        .collect();
    assert_eq!(gw.len(), 3);
    assert!(gw
        .iter()
        .all(|p| p["spec"]["containers"][0]["image"] == "keeptrusts/gateway:1.5.0"));
    let rss: Vec<Value> = sim
        .list_objects("replicasets", NS)
        .into_iter()
        .filter(|r| r["metadata"]["labels"]["app"] == "keeptrusts-gateway")
        .collect();
    assert_eq!(rss.len(), 2);
    assert!(rss.iter().any(|r| r["spec"]["replicas"] == 0
        && r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"));
}

#[tokio::test]
async fn label_and_field_selectors() {
    let (_sim, client) = fast("1.4.0");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let count = |sel: &'static str| {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels(sel))
                .await
                .map(|l| l.items.len())
        }
    };
    assert_eq!(count("app=keeptrusts-gateway").await.unwrap(), 3);
    assert_eq!(count("app==keeptrusts-gateway").await.unwrap(), 3);
    assert_eq!(
        count("app in (keeptrusts-api, keeptrusts-gateway)")
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        count("app=keeptrusts-console,version=green").await.unwrap(),
        3
    );
    assert_eq!(
        count("app=keeptrusts-console,version!=green")
            .await
            .unwrap(),
        3
    );
    assert_eq!(count("version notin (blue,green)").await.unwrap(), 15);
    assert_eq!(count("version").await.unwrap(), 6);
    assert_eq!(count("!version").await.unwrap(), 15);
    assert_eq!(count("!app").await.unwrap(), 0);
    let (code, reason) = api_err(count("app in (x").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    let l = deploys
        .list(&ListParams::default().fields("metadata.name=worker-export"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
    let l = deploys
        .list(
            &ListParams::default()
                .fields("metadata.name!=worker-export,metadata.namespace=keeptrusts"),
        )
        .await
        .unwrap();
    assert_eq!(l.items.len(), 6);
    let (code, _) = api_err(
        deploys
            .list(&ListParams::default().fields("spec.replicas=3"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 400);
    let all: Api<Deployment> = Api::all(client);
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        7
    );
}

#[tokio::test]
async fn not_found_already_exists_conflict_invalid() {
    let (_sim, client) = fast("1.4.0");
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    let (code, reason) = api_err(deploys.get("nope").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    let mut d = deploys.get("keeptrusts-api").await.unwrap();
    let stale = d.clone();
    d.metadata.uid = None;
    d.metadata.resource_version = None;
    let (code, reason) = api_err(
        deploys
            .create(&PostParams::default(), &d)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
    // a write moves the resourceVersion; replacing with the stale one conflicts
    let p = json!({"metadata": {"labels": {"touched": "yes"}}});
    deploys
        .patch("keeptrusts-api", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    let (code, reason) = api_err(
        deploys
            .replace("keeptrusts-api", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    // a merge patch carrying a stale resourceVersion is a precondition too
    let p = json!({"metadata": {"resourceVersion": stale.metadata.resource_version, "labels": {"a": "b"}}});
    let (code, _) = api_err(
        deploys
            .patch("keeptrusts-api", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 409);
    // into another namespace than the body's, and into one that does not exist
    let other: Api<Deployment> = Api::namespaced(client.clone(), "nowhere");
    let (code, _) = api_err(other.create(&PostParams::default(), &d).await.unwrap_err());
    assert_eq!(code, 400);
    d.metadata.namespace = None;
    let (code, reason) = api_err(other.create(&PostParams::default(), &d).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    // Lease PUT without resourceVersion: 422 Invalid
    let leases: Api<Lease> = Api::default_namespaced(client);
    let l: Lease = serde_json::from_value(
        json!({"metadata": {"name": "lock"}, "spec": {"holderIdentity": "a"}}),
    )
    .unwrap();
    leases.create(&PostParams::default(), &l).await.unwrap();
    let (code, reason) = api_err(
        leases
            .replace("lock", &PostParams::default(), &l)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    // invalid objects
    let bad: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bad"},
        "spec": {"selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}
    }))
    .unwrap();
    let (code, reason) = api_err(
        deploys
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
}

#[tokio::test]
async fn lease_create_and_replace_races() {
    let (_sim, client) = fast("1.4.0");
    let leases: Api<Lease> = Api::default_namespaced(client);
    let lease = |holder: &str| -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": "ktplay-run"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 30}
        }))
        .unwrap()
    };
    for round in 0..5 {
        let _ = leases.delete("ktplay-run", &Default::default()).await;
        let pp = PostParams::default();
        let (la, lb) = (lease("a"), lease("b"));
        let (a, b) = tokio::join!(leases.create(&pp, &la), leases.create(&pp, &lb));
        assert!(
            a.is_ok() != b.is_ok(),
            "round {round}: exactly one create wins"
        );
        let loser = a.err().or(b.err()).unwrap();
        assert_eq!(api_err(loser), (409, "AlreadyExists".to_string()));
        // both read, both try to take over with the read resourceVersion: one wins
        let (ra, rb) = tokio::join!(leases.get("ktplay-run"), leases.get("ktplay-run"));
        let (mut ra, mut rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.metadata.resource_version, rb.metadata.resource_version);
        ra.spec.as_mut().unwrap().holder_identity = Some("c".into());
        rb.spec.as_mut().unwrap().holder_identity = Some("d".into());
        let (wa, wb) = tokio::join!(
            leases.replace("ktplay-run", &pp, &ra),
            leases.replace("ktplay-run", &pp, &rb)
        );
        assert!(
            wa.is_ok() != wb.is_ok(),
            "round {round}: exactly one replace wins"
        );
        let loser = wa.as_ref().err().or(wb.as_ref().err()).unwrap();
        assert!(loser.to_string().contains("Conflict"), "{loser}");
        let winner = wa.ok().or(wb.ok()).unwrap();
        let now = leases.get("ktplay-run").await.unwrap();
        assert_eq!(
            now.spec.unwrap().holder_identity,
            winner.spec.unwrap().holder_identity
        );
    }
}

#[tokio::test]
async fn stalled_rollout_hits_progress_deadline_then_undo_reuses_old_replicaset() {
    let (sim, client) = sim_with(
        SimConfig {
            progress_deadline: Some(Duration::from_secs(1)),
            faults: ktplay_sim::Faults::parse_all(["never-ready:gateway@1.5.0"]).unwrap(),
            ..SimConfig::default()
        },
        "1.4.0",
    );
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    set_image(
        &deploys,
        "keeptrusts-gateway",
        "gateway",
        "keeptrusts/gateway:1.5.0",
    )
    .await;
    wait_until("ProgressDeadlineExceeded", Duration::from_secs(6), || {
        deployment(&sim, "keeptrusts-gateway")["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "Progressing"
                        && c["status"] == "False"
                        && c["reason"] == "ProgressDeadlineExceeded"
                })
            })
    })
    .await;
    let d = deployment(&sim, "keeptrusts-gateway");
    assert_eq!(d["status"]["availableReplicas"], 3, "old pods keep serving");
    assert_eq!(d["status"]["updatedReplicas"], 1);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let new_pods = pods
        .list(&ListParams::default().labels("app=keeptrusts-gateway"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.spec.as_ref().unwrap().containers[0].image.as_deref()
                == Some("keeptrusts/gateway:1.5.0")
        })
        .collect::<Vec<_>>();
    assert_eq!(new_pods.len(), 1);
    let ready = new_pods[0]
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    assert!(!ready);
    // undo as kubectl does: the old ReplicaSet's template back into the deployment
    let rss: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let old = rss
        .list(&ListParams::default().labels("app=keeptrusts-gateway"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|r| {
            r.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"] == "1"
        })
        .unwrap();
    let mut template = serde_json::to_value(old.spec.template).unwrap();
    template["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("pod-template-hash");
    let body = json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": {}}
    ]);
    let req = http::Request::patch(format!(
        "/apis/apps/v1/namespaces/{NS}/deployments/keeptrusts-gateway"
    ))
    .header("content-type", "application/json-patch+json")
    .body(serde_json::to_vec(&body).unwrap())
    .unwrap();
    let _: Deployment = client.request(req).await.unwrap();
    wait_until("rollback completes", Duration::from_secs(5), || {
        complete(&deployment(&sim, "keeptrusts-gateway"))
    })
    .await;
    let d = deployment(&sim, "keeptrusts-gateway");
    assert_eq!(image_of(&d), "keeptrusts/gateway:1.4.0");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let names: Vec<String> = sim
        .list_objects("replicasets", NS)
        .into_iter()
        .filter(|r| r["metadata"]["labels"]["app"] == "keeptrusts-gateway")
        .map(|r| {
            format!(
                "{}={}",
                r["metadata"]["name"].as_str().unwrap(),
                r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap()
            )
        })
        .collect();
    assert_eq!(names.len(), 2, "{names:?}: the old ReplicaSet was re-used");
    assert!(
        names.contains(&format!("{}=3", old.metadata.name.unwrap())),
        "{names:?}"
    );
}

#[tokio::test]
async fn paused_deployment_creates_nothing_until_resumed() {
    let (sim, client) = fast("1.4.0");
    let deploys: Api<Deployment> = Api::default_namespaced(client);
    let p = json!({"spec": {"paused": true}});
    deploys
        .patch("keeptrusts-api", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    set_image(&deploys, "keeptrusts-api", "api", "keeptrusts/api:1.5.0").await;
    wait_until("paused condition", Duration::from_secs(3), || {
        deployment(&sim, "keeptrusts-api")["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["reason"] == "DeploymentPaused" && c["status"] == "Unknown")
            })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rs_count = || {
        sim.list_objects("replicasets", NS)
            .into_iter()
            .filter(|r| r["metadata"]["labels"]["app"] == "keeptrusts-api")
            .count()
    };
    assert_eq!(rs_count(), 1);
    let p = json!({"spec": {"paused": false}});
    deploys
        .patch("keeptrusts-api", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    wait_until("resumed rollout", Duration::from_secs(5), || {
        let d = deployment(&sim, "keeptrusts-api");
        complete(&d) && d["status"]["updatedReplicas"] == 3
    })
    .await;
    assert_eq!(rs_count(), 2);
}

// ---------------------------------------------------------------- raw HTTP: watches, robustness

async fn raw(sim: &Sim, method: &str, uri: &str, ct: Option<&str>, body: &str) -> (u16, Value) {
    let mut b = http::Request::builder().method(method).uri(uri);
    if let Some(ct) = ct {
        b = b.header("content-type", ct);
    }
    let resp = sim
        .router()
        .oneshot(b.body(axum::body::Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (code, v)
}

/// Read a watch stream to its end (or the timeout), one JSON event per line.
async fn watch_events(sim: &Sim, uri: &str, timeout: Duration) -> Vec<Value> {
    let req = http::Request::get(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = sim.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(timeout, async {
        while let Some(Ok(chunk)) = stream.next().await {
            buf.extend_from_slice(&chunk);
        }
    })
    .await;
    String::from_utf8(buf)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn watch_from_resource_version_with_bookmarks_and_timeout() {
    let (sim, _client) = fast("1.4.0");
    let rv = sim.resource_version();
    let path = format!("/api/v1/namespaces/{NS}/configmaps");
    let (code, _) = raw(
        &sim,
        "POST",
        &path,
        Some("application/json"),
        r#"{"metadata":{"name":"a"}}"#,
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = raw(&sim, "DELETE", &format!("{path}/a"), None, "").await;
    assert_eq!(code, 200);
    // resume from before the create: both events, then the stream ends at timeoutSeconds
    let start = Instant::now();
    let evs = watch_events(
        &sim,
        &format!("{path}?&watch=true&resourceVersion={rv}&timeoutSeconds=1"),
        Duration::from_secs(5),
    )
    .await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "DELETED"], "no bookmarks unless asked");
    // with bookmarks: a bookmark arrives, never ahead of the events sent
    let evs = watch_events(
        &sim,
        &format!("{path}?watch=1&resourceVersion={rv}&timeoutSeconds=2&allowWatchBookmarks=true"),
        Duration::from_secs(5),
    )
    .await;
    let bm = evs
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("a bookmark");
    let bm_rv: u64 = bm["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let last_event_rv: u64 = evs[1]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bm_rv >= last_event_rv);
    assert_eq!(bm["object"]["kind"], "ConfigMap");
    // no resourceVersion: the current objects as ADDED first
    let evs = watch_events(
        &sim,
        "/apis/apps/v1/namespaces/keeptrusts/deployments?watch=true&timeoutSeconds=0",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(evs.len(), 7);
    assert!(evs.iter().all(|e| e["type"] == "ADDED"));
}

#[tokio::test]
async fn watch_fault_knobs() {
    let (sim, _client) = fast("1.4.0");
    let rv = sim.resource_version();
    sim.set_fault(Fault::WatchExpired);
    let evs = watch_events(
        &sim,
        &format!("/api/v1/namespaces/{NS}/pods?watch=true&resourceVersion={rv}"),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["type"], "ERROR");
    assert_eq!(evs[0]["object"]["code"], 410);
    assert_eq!(evs[0]["object"]["reason"], "Expired");
    sim.clear_faults();
    sim.set_fault(Fault::WatchCut);
    let start = Instant::now();
    let _ = watch_events(
        &sim,
        &format!("/api/v1/namespaces/{NS}/pods?watch=true&resourceVersion={rv}&timeoutSeconds=60"),
        Duration::from_secs(10),
    )
    .await;
    assert!(start.elapsed() < Duration::from_secs(3), "cut early");
    // a kube watcher survives both faults and still sees changes
    sim.set_fault(Fault::WatchExpired);
    let client = Client::new(sim.router(), NS);
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::default_namespaced(client);
    let mut stream = watcher(cms.clone(), watcher::Config::default()).boxed();
    let cm = serde_json::from_value(json!({"metadata": {"name": "seen"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) = ev {
                if c.metadata.name.as_deref() == Some("seen") {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true));
}

/// method, URI, content type, body, expected status, expected reason.
type BadCase<'a> = (&'a str, String, Option<&'a str>, &'a str, u16, &'a str);

#[tokio::test]
async fn bad_input_gets_status_errors_never_panics() {
    let (sim, _client) = fast("1.4.0");
    let d = "/apis/apps/v1/namespaces/keeptrusts/deployments";
    let cases: Vec<BadCase> = vec![
        (
            "POST",
            d.into(),
            Some("application/json"),
            "{not json",
            400,
            "BadRequest",
        ),
        (
            "POST",
            d.into(),
            Some("application/json"),
            "[1,2]",
            400,
            "BadRequest",
        ),
        (
            "POST",
            d.into(),
            Some("application/json"),
            r#"{"metadata":{"name":"Bad_Name"}}"#,
            422,
            "Invalid",
        ),
        (
            "POST",
            d.into(),
            Some("application/json"),
            r#"{"metadata":{}}"#,
            422,
            "Invalid",
        ),
        (
            "POST",
            d.into(),
            Some("application/vnd.kubernetes.protobuf"),
            "\u{0}k8s",
            415,
            "UnsupportedMediaType",
        ),
        (
            "PUT",
            format!("{d}/keeptrusts-api"),
            Some("application/json"),
            r#"{"metadata":{"name":"other"}}"#,
            400,
            "BadRequest",
        ),
        (
            "PATCH",
            format!("{d}/keeptrusts-api"),
            Some("text/plain"),
            "x",
            415,
            "UnsupportedMediaType",
        ),
        (
            "PATCH",
            format!("{d}/keeptrusts-api"),
            Some("application/merge-patch+json"),
            "{",
            400,
            "BadRequest",
        ),
        (
            "PATCH",
            format!("{d}/keeptrusts-api"),
            Some("application/json-patch+json"),
            r#"[{"op":"remove","path":"/nope"}]"#,
            422,
            "Invalid",
        ),
        (
            "PATCH",
            format!("{d}/keeptrusts-api"),
            Some("application/json-patch+json"),
            r#"{"op":"bogus"}"#,
            422,
            "Invalid",
        ),
        (
            "PATCH",
            format!("{d}/keeptrusts-api"),
            Some("application/strategic-merge-patch+json"),
            r#"{"spec":{"replicas":-1}}"#,
            422,
            "Invalid",
        ),
        (
            "PATCH",
            format!("{d}/keeptrusts-api"),
            Some("application/strategic-merge-patch+json"),
            r#"{"spec":{"template":{"spec":{"containers":null}}}}"#,
            422,
            "Invalid",
        ),
        (
            "PATCH",
            format!("{d}/keeptrusts-api"),
            Some("application/apply-patch+yaml"),
            "spec: {}",
            // as the real server: PatchOptions validation
            422,
            "Invalid",
        ),
        (
            "PATCH",
            format!("{d}/keeptrusts-api?fieldManager=t"),
            Some("application/apply-patch+yaml"),
            "a: [",
            400,
            "BadRequest",
        ),
        (
            "GET",
            format!("{d}?labelSelector=a%20in%20(b"),
            None,
            "",
            400,
            "BadRequest",
        ),
        (
            "GET",
            format!("{d}?fieldSelector=status.x%3D1"),
            None,
            "",
            400,
            "BadRequest",
        ),
        (
            "GET",
            format!("{d}?watch=true&resourceVersion=abc"),
            None,
            "",
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/keeptrusts/statefulsets".into(),
            None,
            "",
            404,
            "NotFound",
        ),
        (
            "GET",
            "/apis/nope/v1/things".into(),
            None,
            "",
            404,
            "NotFound",
        ),
        (
            "GET",
            "/api/v1/namespaces/keeptrusts/pods/x/y/z".into(),
            None,
            "",
            404,
            "NotFound",
        ),
        (
            "GET",
            "/api/v1/namespaces/keeptrusts/configmaps/x/status".into(),
            None,
            "",
            404,
            "NotFound",
        ),
        (
            "GET",
            "/api/v1/namespaces/%ZZ/pods".into(),
            None,
            "",
            200,
            "",
        ),
        ("DELETE", d.into(), None, "", 405, "MethodNotAllowed"),
        (
            "PATCH",
            format!("{d}/keeptrusts-api"),
            Some("application/merge-patch+json"),
            r#"{"metadata":"x"}"#,
            400,
            "BadRequest",
        ),
        (
            "PATCH",
            format!("{d}/keeptrusts-api"),
            Some("application/merge-patch+json"),
            r#"{"spec":"x"}"#,
            400,
            "BadRequest",
        ),
        (
            "PATCH",
            format!("{d}/nope?fieldManager=t"),
            Some("application/apply-patch+yaml"),
            "metadata: x",
            400,
            "BadRequest",
        ),
        (
            "PATCH",
            format!("{d}/keeptrusts-api/scale"),
            Some("application/merge-patch+json"),
            r#"{"spec":{"replicas":"many"}}"#,
            422,
            "Invalid",
        ),
        (
            "GET",
            format!("{d}/keeptrusts-api?dryRun=All"),
            None,
            "",
            200,
            "",
        ),
        (
            "POST",
            format!("{d}?dryRun=All"),
            Some("application/json"),
            "{}",
            400,
            "BadRequest",
        ),
        (
            "PUT",
            format!("{d}/keeptrusts-api/scale"),
            Some("application/json"),
            r#"{"spec":{}}"#,
            422,
            "Invalid",
        ),
    ];
    for (method, uri, ct, body, code, reason) in cases {
        let (got, v) = raw(&sim, method, &uri, ct, body).await;
        assert_eq!(got, code, "{method} {uri} {body}: {v}");
        if !reason.is_empty() {
            assert_eq!(v["kind"], "Status", "{method} {uri}: {v}");
            assert_eq!(v["reason"], reason, "{method} {uri}: {v}");
            assert_eq!(v["code"], code);
        }
    }
    // logs: unknown container, bad tailLines
    let pod = sim.list_objects("pods", NS)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, v) = raw(
        &sim,
        "GET",
        &format!("/api/v1/namespaces/{NS}/pods/{pod}/log?container=nope"),
        None,
        "",
    )
    .await;
    assert_eq!((code, v["reason"].as_str()), (400, Some("BadRequest")));
    let (code, v) = raw(
        &sim,
        "GET",
        &format!("/api/v1/namespaces/{NS}/pods/{pod}/log?tailLines=-3"),
        None,
        "",
    )
    .await;
    // as the real API server: PodLogOptions validation, 422 with the field named
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["details"]["causes"][0]["field"], "tailLines", "{v}");
    // the cluster still works after all that
    assert_eq!(sim.list_objects("deployments", NS).len(), 7);
    let (code, _) = raw(&sim, "GET", "/version", None, "").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn api_faults_and_request_log_over_http() {
    let (sim, _client) = fast("1.4.0");
    let (code, v) = raw(
        &sim,
        "POST",
        "/__sim/faults",
        Some("application/json"),
        r#"{"add":["api-errors:1","latency:10ms"]}"#,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["faults"], json!(["api-errors:1", "latency:10ms"]));
    let (code, v) = raw(
        &sim,
        "GET",
        "/apis/apps/v1/namespaces/keeptrusts/deployments",
        None,
        "",
    )
    .await;
    assert_eq!((code, v["reason"].as_str()), (500, Some("InternalError")));
    let (code, _) = raw(&sim, "GET", "/version", None, "").await;
    assert_eq!(code, 200, "discovery is spared");
    let (code, v) = raw(
        &sim,
        "POST",
        "/__sim/faults",
        Some("application/json"),
        r#"{"add":["bogus"]}"#,
    )
    .await;
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().contains("unknown fault"));
    let (code, v) = raw(&sim, "DELETE", "/__sim/faults", None, "").await;
    assert_eq!((code, v["faults"].clone()), (200, json!([])));
    let (code, _) = raw(
        &sim,
        "GET",
        "/apis/apps/v1/namespaces/keeptrusts/deployments",
        None,
        "",
    )
    .await;
    assert_eq!(code, 200);
    let log = sim.request_log();
    let last = log.last().unwrap();
    assert_eq!(last.method, "GET");
    assert_eq!(last.path, "/apis/apps/v1/namespaces/keeptrusts/deployments");
    assert_eq!(last.status, 200);
    assert!(log.iter().any(|r| r.status == 500));
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    let (_, v) = raw(&sim, "GET", "/__sim/requests", None, "").await;
    assert_eq!(v["requests"].as_array().unwrap().len(), log.len());
}

// ---------------------------------------------------------------- the Keeptrusts services

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, String) {
    let mut r = http.request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let code = resp.status().as_u16();
    let version = resp
        .headers()
        .get("x-sim-version")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    (code, v, version)
}

fn blocked() -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "test blocked content"}]})
}

#[tokio::test]
async fn keeptrusts_services_rolling_and_canary() {
    let sim = Sim::new(SimConfig::default());
    sim.seed(&Seed::keeptrusts(NS, v("1.4.0")));
    let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http = reqwest::Client::new();
    let api = running.service_url("api", None).unwrap();
    let gw = running.service_url("gateway", None).unwrap();
    use reqwest::Method as M;
    let (code, body, ver) = call(&http, M::GET, &format!("{api}/readyz"), None, None).await;
    assert_eq!((code, ver.as_str()), (200, "1.4.0"), "{body}");
    let (code, _, _) = call(
        &http,
        M::GET,
        &format!("{api}/v1/admin/workers/status"),
        None,
        None,
    )
    .await;
    assert_eq!(code, 401);
    let (code, status, _) = call(
        &http,
        M::GET,
        &format!("{api}/v1/admin/workers/status"),
        Some("admin"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let workers = status["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 3);
    assert!(
        workers
            .iter()
            .all(|w| w["state"] == "processing" && w["version"] == "1.4.0"),
        "{status}"
    );
    assert_eq!(workers[0]["name"], "worker-export");
    let (code, body, _) = call(
        &http,
        M::POST,
        &format!("{gw}/v1/chat/completions"),
        Some("k"),
        Some(blocked()),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"]["type"], "policy_violation");
    let (code, _, _) = call(
        &http,
        M::POST,
        &format!("{gw}/v1/chat/completions"),
        None,
        Some(json!({"model": "m", "messages": []})),
    )
    .await;
    assert_eq!(code, 200);

    // over HTTP, through the kubeconfig the simulator writes
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&running.kubeconfig_yaml(NS)).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, NS);
    let client = Client::try_from(config).unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client, NS);
    // the api first (over HTTP this time): traffic follows the ready pods; logs show migrations
    set_image(&deploys, "keeptrusts-api", "api", "keeptrusts/api:1.5.0").await;
    wait_until("api rollout", Duration::from_secs(5), || {
        let d = deployment(&sim, "keeptrusts-api");
        complete(&d) && image_of(&d).ends_with("1.5.0")
    })
    .await;
    let (code, _, ver) = call(&http, M::GET, &format!("{api}/readyz"), None, None).await;
    assert_eq!((code, ver.as_str()), (200, "1.5.0"));
    let logs: Vec<String> = sim
        .list_objects("pods", NS)
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "keeptrusts-api")
        .flat_map(|p| sim.pod_logs(NS, p["metadata"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        logs.iter()
            .filter(|l| l.ends_with("migration 0042_add_policy_index applied"))
            .count(),
        1,
        "the first pod migrates: {logs:#?}"
    );
    assert_eq!(
        logs.iter()
            .filter(|l| l.contains("waiting for migration lock"))
            .count(),
        2,
        "{logs:#?}"
    );
    // a canary: a second deployment with the same labels gets its share of the traffic
    let mut canary: Value = deployment(&sim, "keeptrusts-gateway");
    canary["metadata"] = json!({"name": "keeptrusts-gateway-canary", "labels": {"app": "keeptrusts-gateway", "track": "canary"}});
    canary["spec"]["replicas"] = json!(1);
    canary["spec"]["selector"] =
        json!({"matchLabels": {"app": "keeptrusts-gateway", "track": "canary"}});
    canary["spec"]["template"]["metadata"]["labels"] =
        json!({"app": "keeptrusts-gateway", "track": "canary"});
    canary["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("keeptrusts/gateway:1.5.0");
    canary.as_object_mut().unwrap().remove("status");
    let canary: Deployment = serde_json::from_value(canary).unwrap();
    deploys
        .create(&PostParams::default(), &canary)
        .await
        .unwrap();
    sim.set_fault(Fault::PolicyOff {
        version: v("1.5.0"),
    });
    wait_until("canary ready", Duration::from_secs(5), || {
        complete(&deployment(&sim, "keeptrusts-gateway-canary"))
    })
    .await;
    let mut new = 0;
    let mut leaked = 0;
    let n = 200;
    for _ in 0..n {
        let (code, _, ver) = call(
            &http,
            M::POST,
            &format!("{gw}/v1/chat/completions"),
            None,
            Some(blocked()),
        )
        .await;
        if ver == "1.5.0" {
            new += 1;
            assert_eq!(code, 200, "policy-off canary lets blocked content through");
            leaked += 1;
        } else {
            assert_eq!((code, ver.as_str()), (409, "1.4.0"));
        }
    }
    let share = new as f64 / n as f64;
    assert!(
        (0.1..0.45).contains(&share),
        "canary share {share}, expected about 1/4"
    );
    let stats = sim.service_stats("gateway", None).unwrap();
    assert_eq!(stats.requests, n + 2);
    assert_eq!(stats.blocked, (n - leaked) + 1);
    assert_eq!(stats.by_version.get("1.5.0").copied(), Some(new));
    let (_, sv, _) = call(&http, M::GET, &format!("{gw}/__sim/stats"), None, None).await;
    assert_eq!(sv["requests"], stats.requests);

    running.shutdown().await;
}

#[tokio::test]
async fn keeptrusts_blue_green_switch() {
    let sim = Sim::new(SimConfig::default());
    sim.seed(&Seed::keeptrusts(NS, v("1.4.0")));
    let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http = reqwest::Client::new();
    use reqwest::Method as M;
    let live = running.service_url("console", None).unwrap();
    let green = running.service_url("console", Some("green")).unwrap();
    assert_eq!(
        running.service_url("console", Some("keeptrusts-console-green")),
        Some(green.clone())
    );
    let client = Client::new(sim.router(), NS);
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    set_image(&deploys, "keeptrusts-api", "api", "keeptrusts/api:1.5.0").await;
    set_image(
        &deploys,
        "keeptrusts-console-green",
        "console",
        "keeptrusts/console:1.5.0",
    )
    .await;
    wait_until("api and green rollout", Duration::from_secs(5), || {
        let d = deployment(&sim, "keeptrusts-console-green");
        let a = deployment(&sim, "keeptrusts-api");
        complete(&d)
            && image_of(&d).ends_with("1.5.0")
            && complete(&a)
            && image_of(&a).ends_with("1.5.0")
    })
    .await;
    let (code, v, ver) = call(&http, M::GET, &format!("{green}/api/health"), None, None).await;
    assert_eq!(
        (code, ver.as_str(), v["version"].as_str()),
        (200, "1.5.0", Some("1.5.0"))
    );
    let resp = http.get(format!("{green}/dashboard")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("Dashboard"));
    for _ in 0..20 {
        let (_, _, ver) = call(&http, M::GET, &format!("{live}/api/health"), None, None).await;
        assert_eq!(ver, "1.4.0", "the Service still points at blue");
    }
    let svc: Api<Service> = Api::default_namespaced(client);
    let p = json!({"spec": {"selector": {"version": "green"}}});
    svc.patch(
        "keeptrusts-console",
        &PatchParams::default(),
        &Patch::Strategic(&p),
    )
    .await
    .unwrap();
    for _ in 0..20 {
        let (_, _, ver) = call(&http, M::GET, &format!("{live}/api/health"), None, None).await;
        assert_eq!(ver, "1.5.0", "switched to green");
    }
}

#[tokio::test]
async fn incompatible_upgrade_order_fails_for_real() {
    let sim = Sim::new(SimConfig::default());
    sim.seed(&Seed::keeptrusts(NS, v("1.3.0")));
    let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http = reqwest::Client::new();
    use reqwest::Method as M;
    let gw = running.service_url("gateway", None).unwrap();
    let api = running.service_url("api", None).unwrap();
    let client = Client::new(sim.router(), NS);
    let deploys: Api<Deployment> = Api::default_namespaced(client);
    // gateway first (wrong order): 1.5 against api 1.3
    set_image(
        &deploys,
        "keeptrusts-gateway",
        "gateway",
        "keeptrusts/gateway:1.5.0",
    )
    .await;
    set_image(
        &deploys,
        "worker-export",
        "workers",
        "keeptrusts/worker:1.5.0",
    )
    .await;
    wait_until("rollouts", Duration::from_secs(5), || {
        complete(&deployment(&sim, "keeptrusts-gateway"))
            && complete(&deployment(&sim, "worker-export"))
            && image_of(&deployment(&sim, "keeptrusts-gateway")).ends_with("1.5.0")
    })
    .await;
    let (code, v, _) = call(
        &http,
        M::POST,
        &format!("{gw}/v1/chat/completions"),
        None,
        Some(json!({"model": "m"})),
    )
    .await;
    assert_eq!(code, 502, "{v}");
    assert_eq!(v["message"], "gateway 1.5.0 is not supported by api 1.3.0");
    let (code, _, _) = call(&http, M::GET, &format!("{gw}/readyz"), None, None).await;
    assert_eq!(code, 502);
    let (_, v, _) = call(
        &http,
        M::GET,
        &format!("{api}/v1/admin/workers/status"),
        Some("t"),
        None,
    )
    .await;
    let export = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "worker-export")
        .unwrap()
        .clone();
    assert_eq!(export["state"], "failed", "{v}");
    assert_eq!(sim.service_stats("gateway", None).unwrap().errors, 2);
    // the right order: api through 1.4 to 1.5 puts everything right
    for step in ["1.4.0", "1.5.0"] {
        set_image(
            &deploys,
            "keeptrusts-api",
            "api",
            &format!("keeptrusts/api:{step}"),
        )
        .await;
        wait_until("api rollout", Duration::from_secs(5), || {
            let d = deployment(&sim, "keeptrusts-api");
            complete(&d) && image_of(&d).ends_with(step)
        })
        .await;
    }
    let (code, _, ver) = call(
        &http,
        M::POST,
        &format!("{gw}/v1/chat/completions"),
        None,
        Some(blocked()),
    )
    .await;
    assert_eq!((code, ver.as_str()), (409, "1.5.0"));
    // workers 1.3 are now too old for api 1.5
    let (_, v, _) = call(
        &http,
        M::GET,
        &format!("{api}/v1/admin/workers/status"),
        Some("t"),
        None,
    )
    .await;
    let states: Vec<&str> = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["processing", "failed", "failed"], "{v}");
}

#[tokio::test]
async fn failing_migration_keeps_old_api_serving() {
    let (sim, client) = sim_with(
        SimConfig {
            faults: ktplay_sim::Faults::parse_all(["migration-fails:1.5.0"]).unwrap(),
            progress_deadline: Some(Duration::from_secs(1)),
            ..SimConfig::default()
        },
        "1.4.0",
    );
    let deploys: Api<Deployment> = Api::default_namespaced(client);
    set_image(&deploys, "keeptrusts-api", "api", "keeptrusts/api:1.5.0").await;
    wait_until("deadline", Duration::from_secs(6), || {
        deployment(&sim, "keeptrusts-api")["status"]["conditions"]
            .to_string()
            .contains("ProgressDeadlineExceeded")
    })
    .await;
    let pods = sim.list_objects("pods", NS);
    let new_pod = pods
        .iter()
        .find(|p| p["spec"]["containers"][0]["image"] == "keeptrusts/api:1.5.0")
        .unwrap();
    let logs = sim.pod_logs(NS, new_pod["metadata"]["name"].as_str().unwrap());
    assert!(
        logs.iter()
            .any(|l| l.contains("migration 0042_add_policy_index failed")),
        "{logs:?}"
    );
    assert_eq!(
        new_pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "CrashLoopBackOff"
    );
    let router = sim.service_router("api", None).unwrap();
    for _ in 0..10 {
        let resp = router
            .clone()
            .oneshot(
                http::Request::get("/readyz")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-sim-version"], "1.4.0");
    }
    // clearing the fault lets the stuck pod recover: the rollout completes
    sim.clear_faults();
    let p = json!({"spec": {"progressDeadlineSeconds": 600}});
    deploys
        .patch("keeptrusts-api", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    wait_until("recovered rollout", Duration::from_secs(5), || {
        let d = deployment(&sim, "keeptrusts-api");
        complete(&d) && d["status"]["updatedReplicas"] == 3
    })
    .await;
}

#[tokio::test]
async fn custom_seed_and_compat_fn() {
    let sim = Sim::new(SimConfig {
        compat: Some(std::sync::Arc::new(
            |role: &str, peer: &semver::Version, api: &semver::Version| {
                role != "gateway" || peer == api
            },
        )),
        ..SimConfig::default()
    });
    sim.seed(&Seed {
        pod_env: Vec::new(),
        routes: Vec::new(),
        namespace: "edge".into(),
        components: vec![
            SeedComponent {
                name: "api".into(),
                workload: SeedWorkload::Deployments(vec!["core".into()]),
                container: "server".into(),
                image: "acme/core".into(),
                version: v("2.0.0"),
                replicas: 1,
            },
            SeedComponent {
                name: "gateway".into(),
                workload: SeedWorkload::Deployments(vec!["edge-gw".into()]),
                container: "gw".into(),
                image: "acme/gw".into(),
                version: v("2.0.1"),
                replicas: 2,
            },
        ],
    });
    let r = sim.service_router("gateway", None).unwrap();
    let resp = r
        .oneshot(
            http::Request::post("/v1/chat/completions")
                .body(axum::body::Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 502, "the custom rule wants equal versions");
    assert_eq!(sim.list_objects("pods", "edge").len(), 3);
    assert!(sim.get_object("services", "edge", "edge-gw").is_some());
}
