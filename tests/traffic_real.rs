//! The objects ktplay's traffic routers write, against a real API server
//! (`KTPLAY_TEST_KUBECONFIG`, as `tests/realkube.sh` sets): the Gateway API HTTPRoute CRD
//! (module `sigs.k8s.io/gateway-api`, fetched by `.ci/run` into `~/.cache/ktplay-gateway-api`, or
//! `KTPLAY_GATEWAY_API_CRDS`) is installed, and `ktplay::run::kube::traffic::route` / `unroute` —
//! the code a canary runs — are applied to an HTTPRoute and to an Ingress. The server must accept
//! every change under its schema, and the objects must read back as ktplay meant them: 90/10
//! with a canary Service selecting only `track: canary` pods, then 100 and no canary objects;
//! the stable Service pinned to the real ReplicaSet's `pod-template-hash` and put back.
//! Skipped, loudly, without a real cluster or without the CRDs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};

use ktplay::program::{Traffic, TrafficKind};
use ktplay::run::kube::Cluster;

fn crd_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("KTPLAY_GATEWAY_API_CRDS") {
        return Some(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME")?;
    let base = PathBuf::from(home).join(".cache/ktplay-gateway-api/mod/sigs.k8s.io");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&base)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("gateway-api@v1"))
        })
        .map(|p| p.join("config/crd/standard"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

async fn client() -> Option<kube::Client> {
    let path = std::env::var_os("KTPLAY_TEST_KUBECONFIG")?;
    let kc = Kubeconfig::read_from(PathBuf::from(path)).ok()?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .ok()?;
    kube::Client::try_from(config).ok()
}

fn ar(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: if group.is_empty() {
            "v1".into()
        } else {
            format!("{group}/v1")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn install_crd(client: &kube::Client, dir: &std::path::Path) {
    let text =
        std::fs::read_to_string(dir.join("gateway.networking.k8s.io_httproutes.yaml")).unwrap();
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap();
    match api.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("the HTTPRoute CRD was refused: {e}"),
    }
    let t0 = Instant::now();
    loop {
        let c = api.get(&name).await.unwrap();
        let established = c
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True");
        // Established, and the resource served (discovery can lag the condition).
        if established
            && Api::<DynamicObject>::all_with(
                client.clone(),
                &ar("gateway.networking.k8s.io", "HTTPRoute", "httproutes"),
            )
            .list(&Default::default())
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the CRD never became established"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn create(client: &kube::Client, ns: &str, r: &ApiResource, obj: Value) {
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, r)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
}

async fn get(client: &kube::Client, ns: &str, r: &ApiResource, name: &str) -> Option<Value> {
    match Api::<DynamicObject>::namespaced_with(client.clone(), ns, r)
        .get(name)
        .await
    {
        Ok(o) => Some(serde_json::to_value(o).unwrap()),
        Err(kube::Error::Api(e)) if e.code == 404 => None,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_changes_are_accepted_by_the_real_api_server() {
    let Some(client) = client().await else {
        eprintln!("SKIPPED router_changes_are_accepted_by_the_real_api_server: KTPLAY_TEST_KUBECONFIG is not set (tests/realkube.sh sets it)");
        return;
    };
    let Some(dir) = crd_dir() else {
        eprintln!("SKIPPED router_changes_are_accepted_by_the_real_api_server: no Gateway API CRDs (go mod download sigs.k8s.io/gateway-api@v1.x into ~/.cache/ktplay-gateway-api, as .ci/run does)");
        return;
    };
    install_crd(&client, &dir).await;
    let ns = format!("traffic-real-{}", std::process::id());
    let namespaces = ar("", "Namespace", "namespaces");
    let obj: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )
    .unwrap();
    Api::<DynamicObject>::all_with(client.clone(), &namespaces)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    let services = ar("", "Service", "services");
    create(
        &client,
        &ns,
        &services,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "keeptrusts-gateway"},
               "spec": {"selector": {"app": "keeptrusts-gateway"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
    )
    .await;
    let routes = ar("gateway.networking.k8s.io", "HTTPRoute", "httproutes");
    create(
        &client,
        &ns,
        &routes,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "gw"},
               "spec": {"parentRefs": [{"name": "edge"}],
                        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                   "backendRefs": [{"name": "keeptrusts-gateway", "port": 80}]}]}}),
    )
    .await;
    let ingresses = ar("networking.k8s.io", "Ingress", "ingresses");
    create(
        &client,
        &ns,
        &ingresses,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "gw"},
               "spec": {"ingressClassName": "nginx",
                        "rules": [{"host": "gateway.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                            "backend": {"service": {"name": "keeptrusts-gateway", "port": {"number": 80}}}}]}}]}}),
    )
    .await;

    // The schema is enforced: a weight over the CRD's maximum (1,000,000) is refused.
    let refused = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &routes)
        .patch(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rules": [{"backendRefs": [{"name": "keeptrusts-gateway", "port": 80, "weight": 2000000}]}]}})),
        )
        .await;
    assert!(
        refused.is_err(),
        "the CRD's validation must be active for this proof to mean anything"
    );

    // The component's Deployment: its Service is the one the canary splits.
    let deployments = ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        plural: "deployments".into(),
    };
    create(
        &client,
        &ns,
        &deployments,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "keeptrusts-gateway"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "keeptrusts-gateway"}},
                        "template": {"metadata": {"labels": {"app": "keeptrusts-gateway"}},
                                     "spec": {"containers": [{"name": "gateway", "image": "keeptrusts/gateway:1.4.0"}]}}}}),
    )
    .await;
    let cluster = Cluster::new(client.clone(), ns.clone());
    let route = Traffic {
        kind: TrafficKind::HttpRoute,
        name: "gw".into(),
    };
    let (routed, pins) =
        ktplay::run::kube::traffic::plan(&cluster, &route, &["keeptrusts-gateway"])
            .await
            .unwrap();
    assert_eq!(routed.services, ["keeptrusts-gateway"]);
    let said = ktplay::run::kube::traffic::route(&cluster, &route, &routed, 10)
        .await
        .unwrap();
    assert!(
        said.contains("keeptrusts-gateway 90, keeptrusts-gateway-canary 10"),
        "{said}"
    );
    let r = get(&client, &ns, &routes, "gw").await.unwrap();
    assert_eq!(
        r["spec"]["rules"][0]["backendRefs"],
        json!([
            {"group": "", "kind": "Service", "name": "keeptrusts-gateway", "port": 80, "weight": 90},
            {"group": "", "kind": "Service", "name": "keeptrusts-gateway-canary", "port": 80, "weight": 10}
        ]),
        "as the API server stored it (with the CRD's defaults)"
    );
    let canary = get(&client, &ns, &services, "keeptrusts-gateway-canary")
        .await
        .unwrap();
    assert_eq!(
        canary["spec"]["selector"],
        json!({"app": "keeptrusts-gateway", "track": "canary"})
    );
    // Routing again (a resumed run) changes nothing.
    ktplay::run::kube::traffic::route(&cluster, &route, &routed, 10)
        .await
        .unwrap();
    let again = get(&client, &ns, &routes, "gw").await.unwrap();
    assert_eq!(again["spec"]["rules"], r["spec"]["rules"]);

    ktplay::run::kube::traffic::unroute(&cluster, &route, &routed)
        .await
        .unwrap();
    let r = get(&client, &ns, &routes, "gw").await.unwrap();
    assert_eq!(
        r["spec"]["rules"][0]["backendRefs"],
        json!([{"group": "", "kind": "Service", "name": "keeptrusts-gateway", "port": 80, "weight": 1}]),
        "exactly as stored before (the CRD's default weight 1)"
    );
    assert!(get(&client, &ns, &services, "keeptrusts-gateway-canary")
        .await
        .is_none());
    // And unrouting twice (a resumed rollback) is fine.
    ktplay::run::kube::traffic::unroute(&cluster, &route, &routed)
        .await
        .unwrap();

    // ingress-nginx: a canary Ingress beside the stable one.
    let ing = Traffic {
        kind: TrafficKind::Ingress,
        name: "gw".into(),
    };
    let (ing_routed, _) = ktplay::run::kube::traffic::plan(&cluster, &ing, &["keeptrusts-gateway"])
        .await
        .unwrap();
    ktplay::run::kube::traffic::route(&cluster, &ing, &ing_routed, 25)
        .await
        .unwrap();
    let c = get(&client, &ns, &ingresses, "gw-canary").await.unwrap();
    assert_eq!(
        c["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary"],
        "true"
    );
    assert_eq!(
        c["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
        "25"
    );
    assert_eq!(
        c["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "keeptrusts-gateway-canary"
    );
    ktplay::run::kube::traffic::unroute(&cluster, &ing, &ing_routed)
        .await
        .unwrap();
    assert!(get(&client, &ns, &ingresses, "gw-canary").await.is_none());
    assert!(get(&client, &ns, &services, "keeptrusts-gateway-canary")
        .await
        .is_none());
    let stable = get(&client, &ns, &ingresses, "gw").await.unwrap();
    assert_eq!(
        stable["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "keeptrusts-gateway"
    );

    // The stable Service pinned to the stable ReplicaSet's `pod-template-hash`, as the real
    // deployment controller computed it, and put back as it was.
    let replicasets = ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        plural: "replicasets".into(),
    };
    let t0 = Instant::now();
    let hash = loop {
        let list = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &replicasets)
            .list(&Default::default())
            .await
            .unwrap();
        let found = list.items.iter().find_map(|rs| {
            let v = serde_json::to_value(rs).unwrap();
            v["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .is_string()
                .then(|| {
                    v["metadata"]["labels"]["pod-template-hash"]
                        .as_str()
                        .map(String::from)
                })
                .flatten()
        });
        if let Some(h) = found {
            break h;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the deployment controller made no ReplicaSet"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(pins.len(), 1, "{pins:?}");
    ktplay::run::kube::traffic::pin(&cluster, &pins)
        .await
        .unwrap();
    let svc = get(&client, &ns, &services, "keeptrusts-gateway")
        .await
        .unwrap();
    assert_eq!(
        svc["spec"]["selector"],
        json!({"app": "keeptrusts-gateway", "pod-template-hash": hash})
    );
    // Routed while pinned: the canary Service does not inherit the stable hash.
    ktplay::run::kube::traffic::route(&cluster, &route, &routed, 10)
        .await
        .unwrap();
    let canary = get(&client, &ns, &services, "keeptrusts-gateway-canary")
        .await
        .unwrap();
    assert_eq!(
        canary["spec"]["selector"],
        json!({"app": "keeptrusts-gateway", "track": "canary"})
    );
    ktplay::run::kube::traffic::unroute(&cluster, &route, &routed)
        .await
        .unwrap();
    let back = ktplay::run::kube::traffic::unpin(&cluster, &pins)
        .await
        .unwrap();
    assert_eq!(back, ["keeptrusts-gateway"]);
    let svc = get(&client, &ns, &services, "keeptrusts-gateway")
        .await
        .unwrap();
    assert_eq!(
        svc["spec"]["selector"],
        json!({"app": "keeptrusts-gateway"})
    );
    assert!(ktplay::run::kube::traffic::unpin(&cluster, &pins)
        .await
        .unwrap()
        .is_empty());

    let _ = Api::<DynamicObject>::all_with(client.clone(), &namespaces)
        .delete(&ns, &Default::default())
        .await;
}
