//! The preflight that predicts drops (issue 22, part 3), through the binary on both backends
//! (`NAME::sim`, `NAME::real`; see `tests/support`):
//!
//! - `plan --kubeconfig` (only reads) reports every hazard rule on a namespace holding one
//!   Deployment per hazard, each named by code, object and field, and nothing for the clean one;
//!   JSON and SARIF carry the same; `--hazards refuse` makes the plan exit 1;
//! - `run` prints the hazard and goes on (warn); under `--hazards refuse` it exits 3 before any
//!   action, naming the object and field, and leaves everything as it was: the Deployment, no
//!   lease, no journal, no write; `--allow-hazard` accepts one code; a clean Deployment runs with
//!   no hazard printed.
//!
//! Each namespace is seeded as the simulator seeds (every Deployment with a readinessProbe,
//! preStop `sleep 5`, grace 30 s, a PodDisruptionBudget `maxUnavailable: 1` from 2 replicas, a
//! Service), then each hazard is made by editing its Deployment, Service or budget.

#[macro_use]
mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use ktplay::sim::{Seed, SeedComponent, SeedWorkload, SimConfig};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};
use support::{kubeconfig, Backend, TestCluster};

const BIN: &str = env!("CARGO_BIN_EXE_ktplay");

on_both!(
    hazards_plan_reports_every_rule,
    hazards_run_warns_and_goes_on,
    hazards_run_refuses_before_any_action,
    hazards_clean_deployment_runs_without_a_word,
);

struct Setup {
    _dir: tempfile::TempDir,
    pb: PathBuf,
    kc: PathBuf,
    c: TestCluster,
}

fn comp(name: &str, replicas: u32) -> SeedComponent {
    SeedComponent {
        name: name.into(),
        workload: SeedWorkload::Deployments(vec![name.into()]),
        container: name.into(),
        image: format!("acme/{name}"),
        version: "1.0.0".parse().unwrap(),
        replicas,
    }
}

async fn setup(backend: Backend, tag: &str, comps: Vec<SeedComponent>, stage: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace(tag);
    let mut text = format!("playbook \"hz\" {{\n  namespace \"{ns}\"\n");
    for c in &comps {
        match &c.workload {
            SeedWorkload::Deployments(_) => {
                text += &format!(
                    "  component {n} {{ deployment \"{n}\" image \"acme/{n}\" from 1.0.0 to 1.1.0 }}\n",
                    n = c.name
                )
            }
            SeedWorkload::BlueGreen { service, .. } => {
                text += &format!(
                    "  component {n} {{\n    blue_green {{ service \"{service}\" selector \"version\" blue \"{service}-blue\" green \"{service}-green\" }}\n    image \"acme/{n}\"\n    from 1.0.0\n    to 1.1.0\n  }}\n",
                    n = c.name
                )
            }
        }
    }
    text += &format!("  stage all {{\n{stage}\n  }}\n}}\n");
    let pb = dir.path().join("hz.ktplay");
    std::fs::write(&pb, text).unwrap();
    let seed = Seed {
        namespace: ns,
        components: comps,
        pod_env: Vec::new(),
        routes: Vec::new(),
    };
    let c = TestCluster::new(backend, SimConfig::default(), &seed).await;
    let kc = kubeconfig(dir.path(), &[("test", &c)]);
    Setup {
        _dir: dir,
        pb,
        kc,
        c,
    }
}

/// Change a Deployment with `f` (a replace of the object read), then wait for every rollout.
async fn edit(c: &TestCluster, name: &str, f: impl FnOnce(&mut Value)) {
    let api: Api<Deployment> = Api::namespaced(c.client(), &c.ns);
    let mut d = serde_json::to_value(api.get(name).await.unwrap()).unwrap();
    f(&mut d);
    api.replace(
        name,
        &PostParams::default(),
        &serde_json::from_value(d).unwrap(),
    )
    .await
    .unwrap();
    c.settled().await;
}

fn container(d: &mut Value) -> &mut serde_json::Map<String, Value> {
    d["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
}

async fn ktplay(s: &Setup, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .arg(&s.pb)
        .arg(format!("--kubeconfig={}", s.kc.display()))
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .env_remove("KTPLAY_HAZARDS")
        .env_remove("KTPLAY_ALLOW_HAZARDS")
        .env_remove("KTPLAY_ENDPOINT_LAG")
        .env_remove("KTPLAY_APP_DRAIN")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("ktplay finished in time")
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn hazards_plan_reports_every_rule(backend: Backend) {
    let comps = vec![
        comp("clean", 2),
        comp("probe", 2),
        comp("stop", 2),
        comp("short", 2),
        comp("grace", 2),
        comp("one", 1),
        comp("zero", 2),
        comp("budget", 2),
        comp("nopdb", 2),
        comp("slow", 2),
        comp("cnry", 2),
        SeedComponent {
            workload: SeedWorkload::BlueGreen {
                service: "site".into(),
                selector: "version".into(),
                blue: "site-blue".into(),
                green: "site-green".into(),
            },
            ..comp("site", 2)
        },
    ];
    let stage = "    rolling clean\n    rolling probe\n    rolling stop\n    rolling short\n    rolling grace\n    rolling one max_unavailable 1 max_surge 1\n    rolling zero max_unavailable 0\n    rolling budget max_unavailable 1 max_surge 1\n    rolling nopdb\n    rolling slow timeout 2s\n    canary cnry weight 50% for 1s { guard ready cnry }\n    blue_green site { guard ready site }";
    let s = setup(backend, "hz-plan", comps, stage).await;
    let c = &s.c;
    edit(c, "probe", |d| {
        container(d).remove("readinessProbe");
    })
    .await;
    edit(c, "stop", |d| {
        container(d).remove("lifecycle");
    })
    .await;
    edit(c, "short", |d| {
        container(d).insert(
            "lifecycle".into(),
            json!({"preStop": {"exec": {"command": ["sleep", "2"]}}}),
        );
    })
    .await;
    edit(c, "grace", |d| {
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(7);
    })
    .await;
    edit(c, "site-green", |d| d["spec"]["replicas"] = json!(0)).await;
    // `zero` surges nothing; the statement then says max_unavailable 0 (`check` sees only the
    // statement, and refuses 0 and 0 there).
    edit(c, "zero", |d| {
        d["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}});
    })
    .await;
    // The Service of `cnry` selects a template label its matchLabels lack.
    edit(c, "cnry", |d| {
        d["spec"]["template"]["metadata"]["labels"]["tier"] = json!("edge");
    })
    .await;
    let svcs: Api<Service> = Api::namespaced(c.client(), &c.ns);
    let mut svc = serde_json::to_value(svcs.get("cnry").await.unwrap()).unwrap();
    svc["spec"]["selector"]["tier"] = json!("edge");
    svcs.replace(
        "cnry",
        &PostParams::default(),
        &serde_json::from_value(svc).unwrap(),
    )
    .await
    .unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client(), &c.ns);
    pdbs.delete("nopdb", &DeleteParams::default())
        .await
        .unwrap();
    let mut strict = serde_json::to_value(pdbs.get("budget").await.unwrap()).unwrap();
    strict["spec"] = json!({"minAvailable": 2, "selector": strict["spec"]["selector"].clone()});
    strict["metadata"] = json!({"name": "budget-strict"});
    pdbs.delete("budget", &DeleteParams::default())
        .await
        .unwrap();
    pdbs.create(
        &PostParams::default(),
        &serde_json::from_value(strict).unwrap(),
    )
    .await
    .unwrap();
    let before = c.request_log().len();

    let out = ktplay(&s, &["plan", "--format=json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: BTreeSet<(String, String, String, String)> = doc["hazards"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", text(&out)))
        .iter()
        .map(|h| {
            (
                h["code"].as_str().unwrap().to_string(),
                h["kind"].as_str().unwrap().to_string(),
                h["name"].as_str().unwrap().to_string(),
                h["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String, String)> = [
        (
            "no_readiness_probe",
            "Deployment",
            "probe",
            "spec.template.spec.containers[name=probe].readinessProbe",
        ),
        (
            "no_prestop",
            "Deployment",
            "stop",
            "spec.template.spec.containers[name=stop].lifecycle.preStop",
        ),
        (
            "short_prestop",
            "Deployment",
            "short",
            "spec.template.spec.containers[name=short].lifecycle.preStop",
        ),
        (
            "grace_too_short",
            "Deployment",
            "grace",
            "spec.template.spec.terminationGracePeriodSeconds",
        ),
        (
            "takes_every_replica",
            "Deployment",
            "one",
            "spec.strategy.rollingUpdate.maxUnavailable",
        ),
        (
            "no_progress",
            "Deployment",
            "zero",
            "spec.strategy.rollingUpdate.maxUnavailable",
        ),
        (
            "pdb_violated",
            "PodDisruptionBudget",
            "budget-strict",
            "spec.minAvailable",
        ),
        ("no_pdb", "Deployment", "nopdb", "metadata.labels"),
        (
            "progress_deadline",
            "Deployment",
            "slow",
            "spec.progressDeadlineSeconds",
        ),
        ("canary_not_selected", "Service", "cnry", "spec.selector"),
        ("idle_at_zero", "Deployment", "site-green", "spec.replicas"),
    ]
    .into_iter()
    .map(|(a, b, c, d)| (format!("ktplay::hazard::{a}"), b.into(), c.into(), d.into()))
    .collect();
    assert_eq!(found, want, "{}", text(&out));
    // Each at its statement's line, with the fix.
    for h in doc["hazards"].as_array().unwrap() {
        assert!(h["line"].as_u64().unwrap() > 0 && !h["help"].as_str().unwrap().is_empty());
    }

    // SARIF: one result per hazard, rules from `ktplay explain`.
    let out = ktplay(&s, &["plan", "--format=sarif"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), want.len(), "{sarif:#}");
    assert!(results
        .iter()
        .any(|r| r["ruleId"] == "ktplay::hazard::idle_at_zero" && r["level"] == "error"));

    // Human, and a refusal makes the plan fail.
    let out = ktplay(&s, &["plan", "--hazards=refuse", "--allow-hazard=no_pdb"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("ktplay::hazard::no_prestop") && t.contains("Hazards: 11 found"),
        "{t}"
    );

    // Only reads.
    let writes: Vec<String> = c.request_log()[before..]
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "plan wrote {writes:?}");
}

async fn assert_left_alone(s: &Setup, out: &str) {
    assert_eq!(s.c.image("stop").await, "acme/stop:1.0.0", "{out}");
    assert_eq!(s.c.image("clean").await, "acme/clean:1.0.0", "{out}");
    let ours: Vec<String> =
        s.c.list("leases")
            .await
            .into_iter()
            .chain(s.c.list("configmaps").await)
            .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
            .filter(|n| n.starts_with("ktplay-"))
            .collect();
    assert!(ours.is_empty(), "a refused run left {ours:?}\n{out}");
}

async fn stop_setup(backend: Backend, tag: &str, stage: &str) -> Setup {
    let s = setup(backend, tag, vec![comp("clean", 2), comp("stop", 2)], stage).await;
    edit(&s.c, "stop", |d| {
        container(d).remove("lifecycle");
    })
    .await;
    s
}

async fn hazards_run_refuses_before_any_action(backend: Backend) {
    let s = stop_setup(backend, "hz-refuse", "    rolling clean\n    rolling stop").await;
    let before = s.c.request_log().len();
    let out = ktplay(&s, &["run", "--hazards=refuse"]).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("refused: 1 hazard under --hazards refuse: ktplay::hazard::no_prestop on Deployment `stop` (spec.template.spec.containers[name=stop].lifecycle.preStop)"),
        "{t}"
    );
    assert!(t.contains("nothing was changed"), "{t}");
    assert_left_alone(&s, &t).await;
    let writes: Vec<String> = s.c.request_log()[before..]
        .iter()
        .filter(|r| r.method != "GET" && !r.path.contains("/selfsubject"))
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    assert!(writes.is_empty(), "ktplay wrote {writes:#?}\n{t}");

    // The environment says the same; --format json prints the hazard and the refusal.
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["run", "--format=json"])
        .arg(&s.pb)
        .arg(format!("--kubeconfig={}", s.kc.display()))
        .env("KTPLAY_HAZARDS", "refuse")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null());
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "hazard", "{events:?}");
    assert_eq!(events[0]["code"], "ktplay::hazard::no_prestop");
    assert_eq!(events[0]["name"], "stop");
    assert_eq!(events[0]["line"], 7);
    assert_eq!(events.last().unwrap()["event"], "refused");
    assert_left_alone(&s, &text(&out)).await;

    // Accepting the code lets it run.
    let out = ktplay(
        &s,
        &["run", "--hazards=refuse", "--allow-hazard=no_prestop"],
    )
    .await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("warning[ktplay::hazard::no_prestop] (allowed)"),
        "{t}"
    );
    assert_eq!(s.c.image("stop").await, "acme/stop:1.1.0", "{t}");
}

async fn hazards_run_warns_and_goes_on(backend: Backend) {
    let s = stop_setup(backend, "hz-warn", "    rolling stop").await;
    let out = ktplay(&s, &["run"]).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning[ktplay::hazard::no_prestop]: line 6 `rolling stop`: container `stop` of `stop` has no preStop hook"),
        "{t}"
    );
    assert!(stderr.contains("up to 5 s (assumed"), "{t}");
    assert_eq!(s.c.image("stop").await, "acme/stop:1.1.0", "{t}");
    assert_eq!(s.c.image("clean").await, "acme/clean:1.0.0", "{t}");
    // The assumed lag is the one given, and said.
    let out = ktplay(&s, &["plan", "--endpoint-lag=8s", "--format=json"]).await;
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let h = &doc["hazards"][0];
    assert_eq!(h["code"], "ktplay::hazard::no_prestop", "{}", text(&out));
    assert!(
        h["message"].as_str().unwrap().contains("up to 8 s"),
        "{}",
        text(&out)
    );
}

async fn hazards_clean_deployment_runs_without_a_word(backend: Backend) {
    let s = setup(
        backend,
        "hz-clean",
        vec![comp("clean", 2)],
        "    rolling clean",
    )
    .await;
    let out = ktplay(&s, &["run", "--hazards=refuse"]).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(!t.contains("hazard"), "{t}");
    assert_eq!(s.c.image("clean").await, "acme/clean:1.1.0", "{t}");
    let out = ktplay(&s, &["plan"]).await;
    assert!(
        text(&out).contains("Hazards: 0 found in the live objects"),
        "{}",
        text(&out)
    );
}

/// The playbook of the drop scenarios: `web` rolled, then a hook that sends 60 requests through
/// its Service while the last old pod's endpoint still lingers.
const DROP: &str = r#"playbook "drop" {
  namespace "drop"
  let web_url = "http://web.drop.internal"
  component web { deployment "web" image "acme/web" from 1.0.0 to 1.1.0 }
  stage web {
    rolling web
    guard rhai """
      let failed = 0;
      let said = "";
      for i in 0..60 {
        let r = http_get(vars.web_url + "/readyz");
        if r.status != 200 { failed += 1; said = r.body; }
      }
      if failed > 0 { #{ ok: false, message: `${failed} of 60 requests failed: ${said}` } } else { true }
    """
  }
}
"#;

/// `ktplay test` (virtual clock) agrees: the seed passes, `fault no-prestop:web` rolls back at
/// the hook, and the JUnit says so.
#[test]
fn hazards_ktplay_test_shows_the_drop() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("drop.ktplay"), DROP).unwrap();
    std::fs::write(
        dir.path().join("drop.test.ktplay"),
        r#"test "the seed's web loses nothing" {
  playbook "drop.ktplay"
  expect succeeded
}

test "without preStop the requests drop and the run rolls back" {
  playbook "drop.ktplay"
  fault no-prestop:web
  expect rolled_back
  expect failed stage web statement 2
  expect final web 1.0.0
}
"#,
    )
    .unwrap();
    let junit = dir.path().join("junit.xml");
    let out = std::process::Command::new(BIN)
        .arg("test")
        .arg(dir.path().join("drop.test.ktplay"))
        .arg(format!("--junit={}", junit.display()))
        .arg("--verbose")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("2 tests: 2 passed"), "{t}");
    assert!(t.contains("of 60 requests failed"), "{t}");
    assert!(t.contains("warning[ktplay::hazard::no_prestop]"), "{t}");
    let xml = std::fs::read_to_string(junit).unwrap();
    assert!(xml.contains("failures=\"0\""), "{xml}");
}

/// `rehearse` shows the drop the preflight predicts: the seed's `web` rolled under a hook that
/// sends 60 requests through its Service right after the rollout, while the last old pod's
/// endpoint still lingers (the simulator's 2 s). With preStop (the seed): every request answered,
/// the run succeeds, no hazard. With `--fault no-prestop:web`: the preflight warns, the hook
/// sees requests fail (502, the pod named), and the run rolls back.
#[test]
fn hazards_rehearse_shows_the_drop() {
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("drop.ktplay");
    std::fs::write(&pb, DROP).unwrap();
    let rehearse = |faults: &[&str]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("rehearse").arg(&pb).env("NO_COLOR", "1");
        for f in faults {
            cmd.arg(format!("--fault={f}"));
        }
        cmd.output().unwrap()
    };
    let out = rehearse(&[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(!t.contains("hazard"), "{t}");

    let out = rehearse(&["no-prestop:web"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("warning[ktplay::hazard::no_prestop]: line 6 `rolling web`"),
        "{t}"
    );
    assert!(t.contains("of 60 requests failed"), "{t}");
    assert!(t.contains("its process is gone"), "{t}");
}
