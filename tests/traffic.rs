//! Traffic routers through `ktplay run` on the simulator: a canary with `traffic httproute` or
//! `traffic ingress` sets the canary's weight, and after a success and after a rollback (the
//! metric guard failing on `error-rate:gateway@1.5.0=0.2`) the route is back at 100/0 and every
//! canary object (Deployment, Service, Ingress) is gone.

use std::time::Duration;

use ktplay::sim::{Fault, Faults, Seed, Sim, SimConfig};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ktplay");
const NS: &str = "traffic";

fn playbook_with(kind: &str, prom: &str, how: &str) -> String {
    format!(
        r#"playbook "traffic" {{
  namespace "{NS}"
  component gateway {{
    deployment "keeptrusts-gateway" image "keeptrusts/gateway" from 1.4.0 to 1.5.0
    traffic {kind} "gw"
  }}
  let prom_url = "{prom}"
  stage gateway {{
    canary gateway {how} {{
      guard metric "${{prom_url}}" {{
        query "sum(rate(http_requests_total{{app=\"gateway\",code=~\"5..\",version=\"${{gateway.to}}\"}}[1m])) / sum(rate(http_requests_total{{app=\"gateway\",version=\"${{gateway.to}}\"}}[1m]))"
        below 0.01
        no_data pass
      }}
    }}
  }}
}}
"#
    )
}

struct Setup {
    sim: Sim,
    api: String,
    _running: ktplay::sim::Running,
    dir: tempfile::TempDir,
}

async fn setup(kind: &str, faults: Faults) -> Setup {
    setup_with(kind, faults, "weight 10% for 2s").await
}

async fn setup_with(kind: &str, faults: Faults, how: &str) -> Setup {
    let sim = Sim::new(SimConfig {
        pace: Duration::from_millis(10),
        faults,
        progress_deadline: Some(Duration::from_secs(10)),
        compat: None,
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let api = running.api_url();
    let pb = dir.path().join("traffic.ktplay");
    std::fs::write(&pb, playbook_with(kind, &api, how)).unwrap();
    let checked = ktplay::check::check_paths(&[pb]).unwrap();
    assert_eq!(checked.errors(), 0, "{:?}", checked.problems);
    let seed: Seed = ktplay::run::rehearse::seed_for(&checked.playbooks[0].1, NS);
    sim.seed(&seed);
    std::fs::write(dir.path().join("kubeconfig"), running.kubeconfig_yaml(NS)).unwrap();
    let http = reqwest::Client::new();
    let (path, obj) = if kind == "httproute" {
        (
            format!("{api}/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes"),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                   "metadata": {"name": "gw"},
                   "spec": {"parentRefs": [{"name": "edge"}],
                            "rules": [{"backendRefs": [{"name": "keeptrusts-gateway", "port": 80}]}]}}),
        )
    } else {
        (
            format!("{api}/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses"),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                   "metadata": {"name": "gw"},
                   "spec": {"ingressClassName": "nginx",
                            "rules": [{"host": "gateway.example.com", "http": {"paths": [
                                {"path": "/", "pathType": "Prefix",
                                 "backend": {"service": {"name": "keeptrusts-gateway", "port": {"number": 80}}}}]}}]}}),
        )
    };
    let r = http.post(path).json(&obj).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    Setup {
        sim,
        api,
        _running: running,
        dir,
    }
}

async fn run(s: &Setup) -> (bool, Option<i32>, String) {
    let out = tokio::process::Command::new(BIN)
        .arg("run")
        .arg(s.dir.path().join("traffic.ktplay"))
        .arg("--kubeconfig")
        .arg(s.dir.path().join("kubeconfig"))
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), out.status.code(), text)
}

async fn get(s: &Setup, path: &str) -> Option<Value> {
    let r = reqwest::get(format!("{}{path}", s.api)).await.unwrap();
    match r.status().as_u16() {
        200 => Some(r.json().await.unwrap()),
        404 => None,
        other => panic!("{path}: {other}"),
    }
}

/// After a run: all traffic on the stable Service, no canary objects left.
async fn assert_clean(s: &Setup, kind: &str, text: &str) {
    assert!(
        get(
            s,
            &format!("/apis/apps/v1/namespaces/{NS}/deployments/keeptrusts-gateway-canary")
        )
        .await
        .is_none(),
        "the canary Deployment is gone: {text}"
    );
    assert!(
        get(
            s,
            &format!("/api/v1/namespaces/{NS}/services/keeptrusts-gateway-canary")
        )
        .await
        .is_none(),
        "the canary Service is gone: {text}"
    );
    if kind == "httproute" {
        let r = get(
            s,
            &format!("/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes/gw"),
        )
        .await
        .unwrap();
        assert_eq!(
            r["spec"]["rules"][0]["backendRefs"],
            json!([{"name": "keeptrusts-gateway", "port": 80, "weight": 100}]),
            "weights back at 100/0: {text}"
        );
    } else {
        assert!(
            get(
                s,
                &format!("/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/gw-canary")
            )
            .await
            .is_none(),
            "the canary Ingress is gone: {text}"
        );
        let i = get(
            s,
            &format!("/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/gw"),
        )
        .await
        .unwrap();
        assert_eq!(
            i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            "keeptrusts-gateway",
            "the stable Ingress is untouched"
        );
    }
}

fn image(s: &Setup) -> String {
    s.sim
        .get_object("deployments", NS, "keeptrusts-gateway")
        .unwrap()["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn scenario(kind: &str) {
    // Green: weighted during the canary, promoted, weights back, canary objects gone.
    let s = setup(kind, Faults::none()).await;
    let (ok, _, text) = run(&s).await;
    assert!(ok, "{text}");
    if kind == "httproute" {
        assert!(
            text.contains("HTTPRoute gw: keeptrusts-gateway 90, keeptrusts-gateway-canary 10"),
            "{text}"
        );
    } else {
        assert!(
            text.contains("Ingress gw-canary: canary-weight 10"),
            "{text}"
        );
    }
    assert_clean(&s, kind, &text).await;
    assert_eq!(image(&s), "keeptrusts/gateway:1.5.0");

    // The new version fails on errors: rolled back, weights back first, canary objects gone.
    let mut faults = Faults::none();
    faults.add(Fault::ErrorRate {
        component: "gateway".into(),
        version: "1.5.0".parse().unwrap(),
        share: 0.2,
    });
    let s = setup(kind, faults).await;
    let (_, code, text) = run(&s).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("below 0.01 → failed"), "{text}");
    assert_clean(&s, kind, &text).await;
    assert_eq!(image(&s), "keeptrusts/gateway:1.4.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_canary_is_weighted_and_cleaned_up() {
    scenario("httproute").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_canary_is_weighted_and_cleaned_up() {
    scenario("ingress").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progressive_steps_move_the_weight_then_clean_up() {
    let s = setup_with("httproute", Faults::none(), "steps 10% 50% every 1s").await;
    let (ok, _, text) = run(&s).await;
    assert!(ok, "{text}");
    let ten = text
        .find("keeptrusts-gateway 90, keeptrusts-gateway-canary 10")
        .expect(&text);
    let fifty = text
        .find("step 2: HTTPRoute gw: keeptrusts-gateway 50, keeptrusts-gateway-canary 50")
        .expect(&text);
    assert!(ten < fifty, "the steps in order: {text}");
    assert_clean(&s, "httproute", &text).await;
    assert_eq!(image(&s), "keeptrusts/gateway:1.5.0");
}

/// The simulated traffic follows the route's weights: with 90/10 on an HTTPRoute the canary pod
/// takes its 10% plus its quarter of the stable Service's 90% (the stable Service selects it too,
/// as on a real cluster): 0.325, where the replica ratio alone gives 0.25.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_traffic_follows_the_route_weights() {
    let s = setup("httproute", Faults::none()).await;
    let client = kube::Client::new(s.sim.router(), NS);
    let cluster = ktplay::run::cluster::Cluster::new(client, NS);
    cluster
        .create_canary(
            "keeptrusts-gateway",
            "gateway",
            "keeptrusts/gateway",
            &"1.5.0".parse().unwrap(),
            1,
        )
        .await
        .unwrap();
    let t = ktplay::check::program::Traffic {
        kind: ktplay::check::program::TrafficKind::HttpRoute,
        name: "gw".into(),
    };
    ktplay::run::traffic::route(&cluster, &t, 10).await.unwrap();
    let t0 = std::time::Instant::now();
    while cluster
        .ready("keeptrusts-gateway-canary")
        .await
        .unwrap()
        .is_err()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the canary never got ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let q = r#"sum(rate(http_requests_total{app="gateway",version="1.5.0"}[2s])) / sum(rate(http_requests_total{app="gateway"}[2s]))"#;
    let v: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/query", s.api))
        .form(&[("query", q)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let share: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((share - 0.325).abs() < 0.03, "canary share {share}: {v}");
}
