//! Traffic routers through `ktplay run` on the simulator: a canary with `traffic httproute` or
//! `traffic ingress` sets the canary's weight, and after a success and after a rollback (the
//! metric guard failing on `error-rate:gateway@1.5.0=0.2`) the route is back at 100/0, every
//! canary object (Deployment, Service, Ingress) is gone and the stable Service's selector is as
//! before. While the canary runs the stable Service is pinned to the stable ReplicaSet's
//! `pod-template-hash`, so the canary gets its weight and no more (measured on the simulated
//! traffic); the rollback's writes come in order, weight first, also after a SIGKILL and
//! `--resume`; a failure in the middle of a multi-step canary says which step.

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
    /// The stable Service's selector as seeded.
    selector: Value,
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
    let seed: Seed = ktplay::rehearse::seed_for(&checked.playbooks[0].1, NS);
    sim.seed(&seed);
    std::fs::write(dir.path().join("kubeconfig"), running.kubeconfig_yaml(NS)).unwrap();
    // The rehearsal seed put the router the playbook names in front of the stable Service.
    let route = if kind == "httproute" {
        let r = sim
            .get_object("httproutes", NS, "gw")
            .expect("the seeded HTTPRoute");
        assert_eq!(
            r["spec"]["rules"][0]["backendRefs"],
            json!([{"name": "keeptrusts-gateway", "port": 80}]),
            "{r}"
        );
        r
    } else {
        let r = sim
            .get_object("ingresses", NS, "gw")
            .expect("the seeded Ingress");
        assert_eq!(
            r["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            "keeptrusts-gateway",
            "{r}"
        );
        r
    };
    assert_eq!(route["metadata"]["name"], "gw");
    let selector = sim
        .get_object("services", NS, "keeptrusts-gateway")
        .unwrap()["spec"]["selector"]
        .clone();
    assert!(selector.is_object(), "{selector}");
    Setup {
        sim,
        api,
        selector,
        _running: running,
        dir,
    }
}

fn command(s: &Setup, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("run")
        .arg(s.dir.path().join("traffic.ktplay"))
        .arg("--kubeconfig")
        .arg(s.dir.path().join("kubeconfig"))
        .args(extra)
        .env("NO_COLOR", "1");
    cmd
}

async fn run(s: &Setup) -> (bool, Option<i32>, String) {
    run_with(s, &[]).await
}

async fn run_with(s: &Setup, extra: &[&str]) -> (bool, Option<i32>, String) {
    let out = command(s, extra).output().await.unwrap();
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

/// After a run: all traffic on the stable Service (its selector as seeded), no canary objects
/// left.
async fn assert_clean(s: &Setup, kind: &str, text: &str) {
    let svc = get(
        s,
        &format!("/api/v1/namespaces/{NS}/services/keeptrusts-gateway"),
    )
    .await
    .unwrap();
    assert_eq!(
        svc["spec"]["selector"], s.selector,
        "the stable Service's selector is back as before: {text}"
    );
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
            json!([{"name": "keeptrusts-gateway", "port": 80}]),
            "the route exactly as seeded (no weight where it had none): {text}"
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

/// The run's successful writes to Services, Deployments and routers, in order, as
/// `METHOD kind/name` (`PATCH services/keeptrusts-gateway`).
fn writes(s: &Setup) -> Vec<String> {
    s.sim
        .request_log()
        .into_iter()
        .filter(|r| r.method != "GET" && r.status < 300)
        .filter_map(|r| {
            let kinds = ["services", "deployments", "httproutes", "ingresses"];
            let path = r.path.split('?').next().unwrap_or_default().to_string();
            let parts: Vec<&str> = path.rsplit('/').collect();
            match parts.as_slice() {
                // A create: `POST …/deployments`.
                [plural, ..] if kinds.contains(plural) => Some(format!("{} {plural}", r.method)),
                [name, plural, ..] if kinds.contains(plural) => {
                    Some(format!("{} {plural}/{name}", r.method))
                }
                _ => None,
            }
        })
        .collect()
}

fn position(ws: &[String], what: &str, text: &str) -> usize {
    ws.iter()
        .position(|w| w == what)
        .unwrap_or_else(|| panic!("no `{what}` in {ws:#?}\n{text}"))
}

fn last_position(ws: &[String], what: &str, text: &str) -> usize {
    ws.iter()
        .rposition(|w| w == what)
        .unwrap_or_else(|| panic!("no `{what}` in {ws:#?}\n{text}"))
}

/// The stable Service is pinned before the canary Deployment is created.
fn assert_pinned_first(ws: &[String], text: &str) {
    let pin = position(ws, "PATCH services/keeptrusts-gateway", text);
    let create = ws
        .iter()
        .position(|w| w == "POST deployments")
        .unwrap_or_else(|| panic!("no canary created: {ws:#?}"));
    assert!(
        pin < create,
        "the stable Service is pinned before the canary pods exist: {ws:#?}"
    );
}

/// A rollback's writes (after the canary was routed): the weight back to the stable backend,
/// then the canary Service and Deployment deleted, then the stable selector unpinned.
fn assert_weight_first(s: &Setup, kind: &str, text: &str) {
    let ws = writes(s);
    assert_pinned_first(&ws, text);
    let weight_back = match kind {
        "httproute" => last_position(&ws, "PATCH httproutes/gw", text),
        _ => position(&ws, "DELETE ingresses/gw-canary", text),
    };
    let svc_gone = position(&ws, "DELETE services/keeptrusts-gateway-canary", text);
    let deploy_gone = position(&ws, "DELETE deployments/keeptrusts-gateway-canary", text);
    let unpinned = last_position(&ws, "PATCH services/keeptrusts-gateway", text);
    assert!(
        weight_back < svc_gone && svc_gone < deploy_gone && deploy_gone < unpinned,
        "weight first, then the canary Service, the canary Deployment, the stable selector: {ws:#?}\n{text}"
    );
    assert_eq!(
        ws.iter()
            .filter(|w| *w == "DELETE deployments/keeptrusts-gateway-canary")
            .count(),
        1,
        "the canary is deleted once: {ws:#?}"
    );
}

async fn scenario(kind: &str) {
    // Green: weighted during the canary, promoted, weights back, canary objects gone.
    let s = setup(kind, Faults::none()).await;
    let (ok, _, text) = run(&s).await;
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "Service keeptrusts-gateway selects only keeptrusts-gateway (pod-template-hash "
        ),
        "{text}"
    );
    let ws = writes(&s);
    assert_pinned_first(&ws, &text);
    // Promotion: the weight back and the selector unpinned before the rolling update (a
    // pinned Service would not follow the new ReplicaSet's pods).
    let unpinned = last_position(&ws, "PATCH services/keeptrusts-gateway", &text);
    let rolled = last_position(&ws, "PATCH deployments/keeptrusts-gateway", &text);
    assert!(unpinned < rolled, "{ws:#?}");
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
    assert_weight_first(&s, kind, &text);
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

/// The canary's share of the simulated requests at `weight 10%`, measured from the
/// simulator's `http_requests_total` by version while the route sends 90/10: with the stable
/// Service pinned to the stable ReplicaSet's `pod-template-hash` (what the canary statement
/// does) the canary pod gets 10%; unpinned it would also get its quarter of the stable 90%:
/// 32.5%. The split is deterministic (no random routing), and the 2 s window starts a second
/// after the weight was set, so every tick in it is routed 90/10: the tolerance of 0.005 is
/// for float rounding and would fail a window holding even one tick of the old routing (0.0875).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_gets_its_weight_of_the_simulated_traffic() {
    let s = setup("httproute", Faults::none()).await;
    let client = kube::Client::new(s.sim.router(), NS);
    let cluster = ktplay::run::kube::Cluster::new(client, NS);
    let t = ktplay::program::Traffic {
        kind: ktplay::program::TrafficKind::HttpRoute,
        name: "gw".into(),
    };
    let (routed, pins) = ktplay::run::kube::traffic::plan(&cluster, &t, &["keeptrusts-gateway"])
        .await
        .unwrap();
    assert_eq!(pins.len(), 1, "{pins:?}");
    ktplay::run::kube::traffic::pin(&cluster, &pins)
        .await
        .unwrap();
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
    ktplay::run::kube::traffic::route(&cluster, &t, &routed, 10)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let share = query(
        &s,
        r#"sum(rate(http_requests_total{app="gateway",version="1.5.0"}[2s])) / sum(rate(http_requests_total{app="gateway"}[2s]))"#,
    )
    .await;
    eprintln!("the canary's share of the simulated requests at weight 10%: {share}");
    assert!((share - 0.10).abs() < 0.005, "canary share {share}");
    // The stable pods keep the rest: 18 of the 20 requests a second.
    let stable = query(
        &s,
        r#"sum(rate(http_requests_total{app="gateway",version="1.4.0"}[2s]))"#,
    )
    .await;
    assert!((stable - 18.0).abs() < 0.1, "stable rate {stable}");
    // Undone: the selector as seeded.
    ktplay::run::kube::traffic::unroute(&cluster, &t, &routed)
        .await
        .unwrap();
    let back = ktplay::run::kube::traffic::unpin(&cluster, &pins)
        .await
        .unwrap();
    assert_eq!(back, ["keeptrusts-gateway"]);
    let svc = s
        .sim
        .get_object("services", NS, "keeptrusts-gateway")
        .unwrap();
    assert_eq!(svc["spec"]["selector"], s.selector);
    // Idempotent: a second unpin (a resumed rollback) changes nothing.
    assert!(ktplay::run::kube::traffic::unpin(&cluster, &pins)
        .await
        .unwrap()
        .is_empty());
}

async fn query(s: &Setup, q: &str) -> f64 {
    let v: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/query", s.api))
        .form(&[("query", q)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("{q}: {v}"))
        .parse()
        .unwrap()
}

/// A failure at the second of three steps: the step is named in the output and the journal's
/// `failed` event, the weights are back at 100/0, the canary objects are gone, the stable
/// Service's selector is as before and the gateway at `from`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_the_middle_step_rolls_back_from_there() {
    let s = setup_with("httproute", Faults::none(), "steps 10% 25% 50% every 4s").await;
    let journal = s.dir.path().join("journal.jsonl");
    let journal_arg = journal.to_string_lossy().to_string();
    let child = command(&s, &["--journal", &journal_arg])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // At the 25% step the new version starts failing a fifth of its requests.
    let t0 = std::time::Instant::now();
    loop {
        let r = get(
            &s,
            &format!("/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes/gw"),
        )
        .await
        .unwrap();
        if r["spec"]["rules"][0]["backendRefs"][1]["weight"] == 25 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no 25% step: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.sim.set_fault(Fault::ErrorRate {
        component: "gateway".into(),
        version: "1.5.0".parse().unwrap(),
        share: 0.2,
    });
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("step 2 of 3 (25%): "), "{text}");
    assert!(
        !text.contains("step 3: HTTPRoute"),
        "the 50% step never came: {text}"
    );
    let journal = std::fs::read_to_string(&journal).unwrap();
    let failed = journal
        .lines()
        .find(|l| l.contains("\"event\":\"failed\""))
        .unwrap_or_else(|| panic!("{journal}"));
    assert!(failed.contains("step 2 of 3 (25%): "), "{failed}");
    assert_clean(&s, "httproute", &text).await;
    assert_weight_first(&s, "httproute", &text);
    assert_eq!(image(&s), "keeptrusts/gateway:1.4.0");
}

/// SIGKILL in the middle of a routed canary; `--resume` goes on, its guard fails on a new
/// error rate, and the rollback — by the new process, from what the journal recorded — puts the
/// weight back first, removes the canary and unpins the stable Service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_rolls_back_the_pinned_selector() {
    let s = setup_with("httproute", Faults::none(), "weight 10% for 6s").await;
    let mut child = command(&s, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let r = get(
            &s,
            &format!("/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes/gw"),
        )
        .await
        .unwrap();
        if r["spec"]["rules"][0]["backendRefs"][1]["weight"] == 10 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "never routed: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    let _ = child.wait().await;
    let svc = s
        .sim
        .get_object("services", NS, "keeptrusts-gateway")
        .unwrap();
    assert!(
        svc["spec"]["selector"]["pod-template-hash"].is_string(),
        "pinned when killed: {svc}"
    );
    s.sim.set_fault(Fault::ErrorRate {
        component: "gateway".into(),
        version: "1.5.0".parse().unwrap(),
        share: 0.2,
    });
    let (_, code, text) = run_with(&s, &["--resume"]).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("below 0.01 → failed"), "{text}");
    assert_clean(&s, "httproute", &text).await;
    assert_weight_first(&s, "httproute", &text);
    assert_eq!(image(&s), "keeptrusts/gateway:1.4.0");
}
