//! Issue 22: the simulated services drop requests for the causes the real data path shows
//! (`tests/realkube/README.md`, "Data path"), so a rehearsal sees what the preflight predicts.
//! The seed's gateway — 3 replicas, a readinessProbe, preStop `sleep 5`, grace 30 s — is upgraded
//! 1.4.1 → 1.5.0 under a steady load through its simulated Service (4 clients, from before the
//! change until 2.5 s after the rollout completes, past the simulator's 2 s endpoint lag):
//! `seed` loses nothing; `no-prestop`, `no-readiness` and `grace:gateway=1s` (grace shorter
//! than the endpoint lag) each lose requests, each answered 502 naming the pod and the cause.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

use ktplay_sim::{Faults, Seed, SeedComponent, SeedWorkload, Sim, SimConfig};

const NS: &str = "drops";

struct Counts {
    sent: u64,
    dropped: u64,
    other_failures: u64,
    messages: Vec<String>,
}

async fn upgrade_under_load(faults: &[&str]) -> Counts {
    let sim = Sim::new(SimConfig {
        pace: Duration::from_millis(100),
        faults: Faults::parse_all(faults).unwrap(),
        ..SimConfig::default()
    });
    sim.seed(&Seed {
        namespace: NS.into(),
        components: vec![SeedComponent {
            name: "gateway".into(),
            workload: SeedWorkload::Deployments(vec!["keeptrusts-gateway".into()]),
            container: "gateway".into(),
            image: "keeptrusts/gateway".into(),
            version: "1.4.1".parse().unwrap(),
            replicas: 3,
        }],
        pod_env: Vec::new(),
        routes: Vec::new(),
    });
    let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("{}/readyz", running.service_url("gateway", None).unwrap());
    // The seeded pods are older than the app's start-up by the time the load starts.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, dropped, other) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let messages = Arc::new(std::sync::Mutex::new(Vec::new()));
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, sent, dropped, other, messages, http, url) = (
            stop.clone(),
            sent.clone(),
            dropped.clone(),
            other.clone(),
            messages.clone(),
            http.clone(),
            url.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let r = http.get(&url).send().await.unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
                match r.status().as_u16() {
                    200 => {}
                    502 => {
                        dropped.fetch_add(1, Ordering::SeqCst);
                        let body: Value = r.json().await.unwrap();
                        let mut m = messages.lock().unwrap();
                        if m.len() < 3 {
                            m.push(body["message"].as_str().unwrap_or_default().to_string());
                        }
                    }
                    _ => {
                        other.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deps: Api<Deployment> = Api::namespaced(kube::Client::new(sim.router(), NS), NS);
    deps.patch(
        "keeptrusts-gateway",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "gateway", "image": "keeptrusts/gateway:1.5.0"}]}}}})),
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    loop {
        let d = serde_json::to_value(deps.get("keeptrusts-gateway").await.unwrap()).unwrap();
        let s = &d["status"];
        let n = |k: &str| s[k].as_i64().unwrap_or(0);
        if n("observedGeneration") >= d["metadata"]["generation"].as_i64().unwrap()
            && n("updatedReplicas") == 3
            && n("replicas") == 3
            && n("availableReplicas") == 3
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the rollout ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    running.shutdown().await;
    let messages = messages.lock().unwrap().clone();
    Counts {
        sent: sent.load(Ordering::SeqCst),
        dropped: dropped.load(Ordering::SeqCst),
        other_failures: other.load(Ordering::SeqCst),
        messages,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_gateway_loses_nothing() {
    let c = upgrade_under_load(&[]).await;
    eprintln!("seed: {} dropped of {}", c.dropped, c.sent);
    assert!(c.sent >= 500, "only {} requests were sent", c.sent);
    assert_eq!((c.dropped, c.other_failures), (0, 0), "{:?}", c.messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prestop_requests_drop_until_the_endpoint_is_gone() {
    let c = upgrade_under_load(&["no-prestop:gateway"]).await;
    eprintln!("no-prestop: {} dropped of {}", c.dropped, c.sent);
    assert!(c.sent >= 500);
    assert!(c.dropped > 0, "nothing dropped of {}", c.sent);
    assert_eq!(c.other_failures, 0);
    assert!(
        c.messages[0].contains("its process is gone") && c.messages[0].contains("preStop"),
        "{:?}",
        c.messages
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_readiness_probe_requests_reach_loading_pods() {
    let c = upgrade_under_load(&["no-readiness:gateway"]).await;
    eprintln!("no-readiness: {} dropped of {}", c.dropped, c.sent);
    assert!(c.dropped > 0, "nothing dropped of {}", c.sent);
    assert!(c.messages[0].contains("still loading"), "{:?}", c.messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_shorter_than_the_endpoint_lag_cuts_the_prestop() {
    // preStop sleep 5 cut at 1 s, while the endpoint lingers 2 s.
    let c = upgrade_under_load(&["grace:gateway=1s"]).await;
    eprintln!("grace-1: {} dropped of {}", c.dropped, c.sent);
    assert!(c.dropped > 0, "nothing dropped of {}", c.sent);
    assert!(c.messages[0].contains("served 1000 ms"), "{:?}", c.messages);
}

#[test]
fn the_seeding_faults_parse_and_print_back() {
    for s in ["no-prestop:gateway", "no-readiness:web", "grace:gateway=1s"] {
        let f: ktplay_sim::Fault = s.parse().unwrap();
        assert_eq!(f.to_string(), s);
    }
    for bad in [
        "no-prestop",
        "no-prestop:gateway@1.5.0",
        "grace:gateway",
        "grace:gateway=500ms",
    ] {
        assert!(bad.parse::<ktplay_sim::Fault>().is_err(), "{bad}");
    }
}
