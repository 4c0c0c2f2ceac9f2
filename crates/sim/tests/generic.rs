//! Generic services: a component without a model answers the routes it is given, logs the lines
//! it is given, answers 503 in a forbidden state, and fails on purpose under `http:`,
//! `logs-missing:` and `crash:` faults.

use std::sync::Arc;

use tower::ServiceExt;

use ktplay_sim::{
    Fault, Faults, Generic, GenericRoute, GenericSpec, Seed, SeedComponent, SeedWorkload, Sim,
    SimConfig,
};

fn v(s: &str) -> semver::Version {
    semver::Version::parse(s).unwrap()
}

fn shop(backend: &str) -> Seed {
    let comp = |name: &str, version: &str| SeedComponent {
        name: name.into(),
        workload: SeedWorkload::Deployments(vec![name.into()]),
        container: name.into(),
        image: format!("shop/{name}"),
        version: v(version),
        replicas: 2,
    };
    Seed {
        pod_env: Vec::new(),
        routes: Vec::new(),
        namespace: "shop".into(),
        components: vec![comp("backend", backend), comp("mailer", "1.1.0")],
    }
}

fn generic() -> Generic {
    Generic {
        components: vec![GenericSpec {
            component: "backend".into(),
            routes: vec![GenericRoute {
                method: "GET".into(),
                path: "/healthz".into(),
                status: 200,
                body: Some("\"db\":\"ok\"\n".into()),
                content_type: "text/plain; charset=utf-8".into(),
            }],
            log_lines: vec!["migration 0000_a applied".into()],
        }],
        // The mailer 1.1.x needs a backend 2.x.
        allowed: Some(Arc::new(|state: &[(String, semver::Version)]| {
            let backend_3 = state.iter().any(|(c, v)| c == "backend" && v.major == 3);
            if backend_3 && state.iter().any(|(c, _)| c == "mailer") {
                Err("mailer 1.1.x needs backend 2.x".into())
            } else {
                Ok(())
            }
        })),
    }
}

fn sim(faults: &[&str], backend: &str) -> Sim {
    let sim = Sim::new(SimConfig {
        faults: Faults::parse_all(faults).unwrap(),
        generic: generic(),
        ..SimConfig::default()
    });
    sim.seed(&shop(backend));
    sim
}

async fn get(sim: &Sim, component: &str, path: &str) -> (u16, String) {
    let r = sim.service_router(component, None).unwrap();
    let resp = r
        .oneshot(
            http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn pods(sim: &Sim, prefix: &str) -> Vec<serde_json::Value> {
    sim.list_objects("pods", "shop")
        .into_iter()
        .filter(|p| {
            p["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect()
}

fn logs(sim: &Sim, prefix: &str) -> Vec<String> {
    pods(sim, prefix)
        .iter()
        .flat_map(|p| sim.pod_logs("shop", p["metadata"]["name"].as_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_healthy_generic_component_answers_its_routes_and_logs_its_lines() {
    let sim = sim(&[], "2.4.0");
    assert_eq!(
        get(&sim, "backend", "/healthz").await,
        (200, "\"db\":\"ok\"\n".into())
    );
    let (status, body) = get(&sim, "backend", "/nothing").await;
    assert_eq!(status, 404);
    assert!(body.contains("no route GET /nothing"), "{body}");
    // A component without routes still answers the usual probes.
    let (status, body) = get(&sim, "mailer", "/version").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"version\":\"1.1.0\""), "{body}");
    let lines = logs(&sim, "backend-");
    assert_eq!(
        lines
            .iter()
            .filter(|l| *l == "migration 0000_a applied")
            .count(),
        2,
        "each backend pod logs the line, unstamped: {lines:?}"
    );
    assert!(!logs(&sim, "mailer-")
        .iter()
        .any(|l| l.contains("migration")));
}

#[tokio::test]
async fn a_forbidden_state_answers_503_naming_the_versions() {
    let sim = sim(&[], "3.0.0");
    let (status, body) = get(&sim, "backend", "/healthz").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("backend 3.0.0, mailer 1.1.0")
            && body.contains("mailer 1.1.x needs backend 2.x"),
        "{body}"
    );
    let (status, _) = get(&sim, "mailer", "/version").await;
    assert_eq!(status, 503, "every part of a forbidden state says so");
}

#[tokio::test]
async fn faults_make_a_generic_component_fail_on_purpose() {
    let sim = sim(
        &["http:backend@2.4.0=500", "logs-missing:backend@2.4.0"],
        "2.4.0",
    );
    let (status, body) = get(&sim, "backend", "/healthz").await;
    assert_eq!(status, 500);
    assert!(body.contains("fault http:backend@2.4.0=500"), "{body}");
    assert_eq!(
        get(&sim, "mailer", "/healthz").await.0,
        200,
        "only the faulty part fails"
    );
    let lines = logs(&sim, "backend-");
    assert!(!lines.iter().any(|l| l.contains("migration")), "{lines:?}");
}

#[tokio::test]
async fn a_crash_fault_crash_loops_the_pods_of_that_version() {
    let sim = sim(&["crash:mailer@1.1.0"], "2.4.0");
    let mailers = pods(&sim, "mailer-");
    assert_eq!(mailers.len(), 2);
    for p in &mailers {
        let cs = &p["status"]["containerStatuses"][0];
        assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff", "{p}");
        assert_eq!(cs["ready"], false);
    }
    let lines = logs(&sim, "mailer-");
    assert!(
        lines.iter().any(|l| l.contains("fault crash:mailer@1.1.0")),
        "{lines:?}"
    );
    let (status, _) = get(&sim, "mailer", "/healthz").await;
    assert_eq!(status, 503, "no ready pod behind it");
    // The fault is data like the others.
    assert_eq!(
        "crash:mailer@1.1.0".parse::<Fault>().unwrap(),
        Fault::Crash {
            component: "mailer".into(),
            version: v("1.1.0")
        }
    );
}
