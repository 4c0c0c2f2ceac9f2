//! `ktplay run` and `ktplay status` of a fleet through the binary, on three clusters at once:
//! three simulators, or (with `KTPLAY_TEST_KUBECONFIG`) three real control planes — the
//! harness's own and two more started here (`support::ExtraPlane`). The fleet is the seed
//! upgrade sharing one api (core) with two regional gateways, in three waves with watched
//! soaks; the wave-2 cluster's new gateway lets blocked content through (`policy-off`), its
//! own guard fails, it rolls back, and the fleet stops: core stays upgraded, us-east is never
//! touched. Every cluster's deployments, lock and journal are asserted, and the fleet journal.

#[macro_use]
mod support;

use std::path::Path;
use std::time::Duration;

use ktplay::sim::{Fault, Seed, SimConfig};
use serde_json::Value;
use support::{kubeconfig, Backend, ExtraPlane, TestCluster};

const BIN: &str = env!("CARGO_BIN_EXE_ktplay");

on_both!(a_fault_in_wave_two_stops_the_fleet_on_three_clusters);

/// The fleet, in namespace `ns`: short soaks (watched: a round at the start and at the end).
fn fleet_file(ns: &str) -> String {
    format!(
        r#"playbook "keeptrusts-1.5" {{
  namespace "{ns}"
  matrix keeptrusts
  component api {{
    deployment "keeptrusts-api"
    image "keeptrusts/api"
    from 1.4.2
    to 1.5.0
  }}
  component gateway {{
    deployment "keeptrusts-gateway"
    image "keeptrusts/gateway"
    from 1.4.1
    to 1.5.0
  }}
  env production {{
    context "prod"
    let api_url = "https://api.example.com"
    let gateway_url = "https://gateway.example.com"
  }}
  stage api {{
    rolling api
    guard http GET "${{api_url}}/readyz" expect 200
  }}
  stage gateway {{
    rolling gateway
    guard http POST "${{gateway_url}}/v1/chat/completions" {{
      json {{ "model": "gpt-4o", "messages": [{{ "role": "user", "content": "test blocked content" }}] }}
      expect 409
    }}
  }}
}}

fleet "global" {{
  playbook "fleet.ktplay"
  env production
  on failure stop
  shared api in core

  cluster core {{
    context "prod-core"
  }}
  cluster eu-west {{
    context "prod-eu-west"
    let gateway_url = "https://gateway.eu-west.example.com"
  }}
  cluster us-east {{
    context "prod-us-east"
    let gateway_url = "https://gateway.us-east.example.com"
  }}

  wave core {{
    clusters core
    soak 2s {{
      guard http GET "${{api_url}}/readyz" expect 200
    }}
    approve "core soaked: go on to eu-west?"
  }}
  wave canary {{
    clusters eu-west
    soak 2s {{
      guard http GET "${{gateway_url}}/readyz" expect 200
    }}
  }}
  wave rest {{
    clusters us-east
  }}
}}
"#
    )
}

/// The playbook's components at `from` (2 replicas), only those `keep` names.
fn seed(dir: &Path, ns: &str, keep: &[&str]) -> Seed {
    let checked = ktplay::check::check_paths(&[dir.join("fleet.ktplay")]).unwrap();
    assert_eq!(checked.errors(), 0, "{:?}", checked.problems);
    let pb = &checked.playbooks[0].1;
    let mut seed = ktplay::rehearse::seed_for(pb, ns);
    seed.components.retain(|c| keep.contains(&c.name.as_str()));
    for c in &mut seed.components {
        c.replicas = 2;
    }
    seed
}

async fn ktplay(args: &[String]) -> std::process::Output {
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(BIN)
            .args(args)
            .env("NO_COLOR", "1")
            .env("KTPLAY_ENDPOINT_LAG", "1s")
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ktplay finished in time")
    .unwrap();
    out
}

fn text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Positions of `needles` in `hay`, each after the one before (panics naming the first missing).
fn in_order(hay: &str, needles: &[&str]) {
    let mut from = 0;
    for n in needles {
        match hay[from..].find(n) {
            Some(i) => from += i + n.len(),
            None => panic!("`{n}` missing (or out of order) in:\n{hay}"),
        }
    }
}

async fn a_fault_in_wave_two_stops_the_fleet_on_three_clusters(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace("fleet");
    std::fs::write(dir.path().join("fleet.ktplay"), fleet_file(&ns)).unwrap();
    let config = SimConfig::default;
    let mut faulty = SimConfig::default();
    faulty.faults.add(Fault::PolicyOff {
        version: "1.5.0".parse().unwrap(),
    });
    // The two more control planes start while the first cluster is seeded.
    let starting = (backend == Backend::Real).then(|| {
        (
            tokio::task::spawn_blocking(ExtraPlane::start),
            tokio::task::spawn_blocking(ExtraPlane::start),
        )
    });
    let both = seed(dir.path(), &ns, &["api", "gateway"]);
    let gw = seed(dir.path(), &ns, &["gateway"]);
    let core = TestCluster::with_follower(backend, config(), &both).await;
    let planes = match starting {
        None => None,
        Some((a, b)) => Some((a.await.unwrap(), b.await.unwrap())),
    };
    let (eu, us) = match &planes {
        None => (
            TestCluster::new(backend, faulty, &gw).await,
            TestCluster::new(backend, config(), &gw).await,
        ),
        Some((Some(p2), Some(p3))) => (
            TestCluster::real_on(&p2.kubeconfig, faulty, &gw).await,
            TestCluster::real_on(&p3.kubeconfig, config(), &gw).await,
        ),
        Some(_) => panic!("the extra control planes did not start"),
    };
    let kc = kubeconfig(
        dir.path(),
        &[
            ("prod-core", &core),
            ("prod-eu-west", &eu),
            ("prod-us-east", &us),
        ],
    );
    let url = |c: &TestCluster, comp: &str| c.service_url(comp, None).expect("a service URL");
    let routes = [
        ("api.example.com", url(&core, "api")),
        ("gateway.example.com", url(&core, "gateway")),
        ("gateway.eu-west.example.com", url(&eu, "gateway")),
        ("gateway.us-east.example.com", url(&us, "gateway")),
    ];
    let fleet = dir.path().join("fleet.ktplay").display().to_string();
    let journal = dir.path().join("fleet.jsonl");
    let mut args = vec![
        "run".to_string(),
        fleet.clone(),
        "--kubeconfig".into(),
        kc.display().to_string(),
        "--approve".into(),
        "--journal".into(),
        journal.display().to_string(),
    ];
    for (host, base) in &routes {
        args.push("--route".into());
        args.push(format!("{host}={base}"));
    }
    let out = ktplay(&args).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    in_order(
        &t,
        &[
            "Run of fleet \"global\"",
            "wave `core` starts: core",
            "cluster `core`: succeeded",
            "soak 2s: watching core",
            "soak held: 2 rounds",
            "approve \"core soaked: go on to eu-west?\": approved by --approve",
            "wave `canary` starts: eu-west",
            "cluster `eu-west`: failed and rolled back",
            "fleet stopped (on failure stop): cluster `eu-west` in wave `canary`: failed and rolled back",
            "cluster `core` stays upgraded",
            "cluster `core`: api 1.5.0, gateway 1.5.0; lock free; journal",
            "run_end succeeded",
            "cluster `eu-west`: gateway 1.4.1; lock free; journal",
            "run_end rolled_back",
            "cluster `us-east`: gateway 1.4.1; lock free; journal none (never ran)",
            "failed in",
        ],
    );
    assert!(!t.contains("wave `rest` starts"), "{t}");

    // Each cluster as the fleet left it, read from the cluster itself.
    assert_eq!(core.image("keeptrusts-api").await, "keeptrusts/api:1.5.0");
    assert_eq!(
        core.image("keeptrusts-gateway").await,
        "keeptrusts/gateway:1.5.0"
    );
    assert_eq!(
        eu.image("keeptrusts-gateway").await,
        "keeptrusts/gateway:1.4.1"
    );
    assert_eq!(
        us.image("keeptrusts-gateway").await,
        "keeptrusts/gateway:1.4.1"
    );
    // The regions never get the shared api, and us-east's gateway was never changed.
    assert!(eu.get("deployments", "keeptrusts-api").await.is_none());
    let untouched = us.get("deployments", "keeptrusts-gateway").await.unwrap();
    assert_eq!(untouched["metadata"]["generation"], 1, "{untouched}");
    // The fleet journal: every entry in order, then one line per cluster.
    let lines: Vec<Value> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let entries: Vec<&str> = lines.iter().filter_map(|l| l["entry"].as_str()).collect();
    assert_eq!(
        entries.first(),
        Some(&"wave `core` starts: core"),
        "{entries:?}"
    );
    assert!(
        entries.iter().any(|e| e.starts_with("fleet stopped")),
        "{entries:?}"
    );
    let ends: Vec<(String, Value)> = lines
        .iter()
        .filter(|l| l["cluster"].is_string())
        .map(|l| {
            (
                l["cluster"].as_str().unwrap().to_string(),
                l["run_end"].clone(),
            )
        })
        .collect();
    assert_eq!(
        ends,
        vec![
            ("core".to_string(), Value::from("succeeded")),
            ("eu-west".to_string(), Value::from("rolled_back")),
            ("us-east".to_string(), Value::Null),
        ]
    );

    // `status` of the fleet reads every cluster in its own context.
    let out = ktplay(&[
        "status".into(),
        fleet,
        "--kubeconfig".into(),
        kc.display().to_string(),
    ])
    .await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    in_order(
        &t,
        &[
            "fleet \"global\" (playbook \"keeptrusts-1.5\")",
            "cluster `core` (context `prod-core`",
            ": succeeded",
            "lock free",
            "cluster `eu-west` (context `prod-eu-west`",
            ": rolled_back",
            "cluster `us-east` (context `prod-us-east`",
            "no journal (never ran here)",
        ],
    );
    drop(planes);
}
