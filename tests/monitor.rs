//! The disruption monitor (issue 22, part 2) through the real binary, on both backends
//! (`NAME::sim`, `NAME::real`): `tests/cases/run/monitored.ktplay` upgrades the gateway while a
//! `monitor` probes it (a secret in the probe's URL and in a header). A clean run reports its
//! numbers (human output, `--format json`, the journal) and exits 0; a fault that makes the new
//! version answer 503 exceeds the budget: the run fails in the stage running then, rolls back
//! (exit 1) and names the monitor and its numbers. `ktplay test` carries the numbers in JUnit.

#[macro_use]
mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use ktplay::sim::{Fault, SimConfig};
use serde_json::Value;
use support::{copy_case, kubeconfig, Backend, TestCluster};

const PROBE_KEY: &str = "pk-5e3b1d9a77c2";
const BIN: &str = env!("CARGO_BIN_EXE_ktplay");

on_both!(
    monitored_upgrade_reports_its_numbers,
    monitor_budget_exceeded_rolls_back,
    killed_run_resumes_the_monitor_counts,
);

async fn ktplay(args: &[String]) -> Output {
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(BIN)
            .args(args)
            .env("PROBE_KEY", PROBE_KEY)
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ktplay finished in time")
    .unwrap();
    assert_no_secret(&String::from_utf8_lossy(&out.stdout));
    assert_no_secret(&String::from_utf8_lossy(&out.stderr));
    out
}

fn assert_no_secret(s: &str) {
    assert!(!s.contains(PROBE_KEY), "the probe's secret leaked:\n{s}");
    assert!(
        !s.contains("pk-5e3b"),
        "a part of the probe's secret leaked:\n{s}"
    );
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Setup {
    dir: tempfile::TempDir,
    pb: std::path::PathBuf,
    c: TestCluster,
}

async fn setup(backend: Backend, tag: &str, config: SimConfig) -> Setup {
    setup_with(backend, tag, config, &[]).await
}

async fn setup_with(
    backend: Backend,
    tag: &str,
    config: SimConfig,
    edits: &[(&str, &str)],
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace(tag);
    let pb = copy_case(dir.path(), "monitored.ktplay", &ns, edits);
    let checked = ktplay::check::check_paths(std::slice::from_ref(&pb)).unwrap();
    assert_eq!(checked.errors(), 0, "{:?}", checked.problems);
    let mut seed = ktplay::rehearse::seed_for(&checked.playbooks[0].1, &ns);
    for c in &mut seed.components {
        c.replicas = 3;
    }
    let c = TestCluster::new(backend, config, &seed).await;
    Setup { dir, pb, c }
}

fn run_args(s: &Setup, kc: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "run".to_string(),
        s.pb.display().to_string(),
        "--env=staging".into(),
        format!("--kubeconfig={}", kc.display()),
        format!(
            "--route=gateway.staging.example.com={}",
            s.c.service_url("gateway", None).unwrap()
        ),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// The journal ConfigMap's status and events.
async fn journal(c: &TestCluster) -> (String, Vec<Value>) {
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
    let raw = serde_json::to_string(&cm).unwrap();
    assert_no_secret(&raw);
    let events = cm["data"]["events"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (cm["data"]["status"].as_str().unwrap().to_string(), events)
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

/// The final `monitor` event of a list of events (JSON output or journal lines).
fn final_monitor(events: &[Value]) -> Value {
    events
        .iter()
        .rev()
        .find(|e| e["event"] == "monitor" && e["final"] == true)
        .cloned()
        .unwrap_or_else(|| panic!("no final monitor event in {events:?}"))
}

async fn monitored_upgrade_reports_its_numbers(backend: Backend) {
    let s = setup(backend, "monitor-ok", SimConfig::default()).await;
    let c = &s.c;
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    // Human output: the line of numbers.
    let out = ktplay(&run_args(&s, &kc, &[])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("monitoring gateway (GET https://gateway.staging.example.com/healthz?key=(secret)) every 50ms, budget failures 0, outage 2s"),
        "{}",
        text(&out)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("monitor gateway"))
        .unwrap_or_else(|| panic!("no monitor line: {}", text(&out)));
    assert!(line.contains("0 failed of "), "{line}");
    assert!(line.contains("longest outage 0s; latency p50"), "{line}");
    assert!(
        line.contains("within budget (budget failures 0, outage 2s)"),
        "{line}"
    );
    assert_eq!(
        c.image("keeptrusts-gateway").await,
        "keeptrusts/gateway:1.5.0"
    );
    assert_unlocked(c).await;
    let (status, events) = journal(c).await;
    assert_eq!(status, "succeeded");
    let m = final_monitor(&events);
    assert_eq!(m["failures"], 0, "{m}");
    assert!(m["requests"].as_u64().unwrap() >= 10, "{m}");
    assert_eq!(m["verdict"], "ok", "{m}");
    // Counts after each statement too (a `--resume` continues them).
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "monitor" && e["final"] == false),
        "{events:?}"
    );
    // The monitor's event comes before the run's end.
    assert_eq!(events.last().unwrap()["event"], "run_end");

    // The same through --format json, downgraded and upgraded again by a second playbook run:
    // each line is JSON and the final event carries the numbers.
    let s2 = setup(backend, "monitor-json", SimConfig::default()).await;
    let kc2 = kubeconfig(s2.dir.path(), &[("staging", &s2.c)]);
    let out = ktplay(&run_args(&s2, &kc2, &["--format=json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let m = final_monitor(&lines);
    assert_eq!(m["name"], "gateway");
    assert_eq!(
        m["probe"],
        "GET https://gateway.staging.example.com/healthz?key=(secret)"
    );
    for k in [
        "requests",
        "failures",
        "refused",
        "reset",
        "timeout",
        "status",
        "longest_outage_ms",
    ] {
        assert!(m[k].is_u64(), "{k} in {m}");
    }
    for k in ["p50_ms", "p90_ms", "p99_ms"] {
        assert!(m[k].is_f64(), "{k} in {m}");
    }
}

async fn monitor_budget_exceeded_rolls_back(backend: Backend) {
    let mut config = SimConfig::default();
    config.faults.add(Fault::Http {
        component: "gateway".into(),
        version: "1.5.0".parse().unwrap(),
        status: 503,
    });
    let s = setup(backend, "monitor-bad", config).await;
    let c = &s.c;
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let out = ktplay(&run_args(&s, &kc, &[])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("monitor `gateway` (GET https://gateway.staging.example.com/healthz?key=(secret)) exceeded its budget: "),
        "{all}"
    );
    assert!(all.contains("budget failures 0"), "{all}");
    assert!(
        all.contains("(status "),
        "the kind of the failures is named: {all}"
    );
    assert!(all.contains("rolled back"), "{all}");
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("monitor gateway"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no monitor line: {all}"));
    assert!(line.contains("budget exceeded"), "{line}");
    // Restored, and nothing else left behind.
    c.settled().await;
    assert_eq!(
        c.image("keeptrusts-gateway").await,
        "keeptrusts/gateway:1.4.1"
    );
    assert!(c
        .get("deployments", "keeptrusts-gateway-canary")
        .await
        .is_none());
    assert_unlocked(c).await;
    let (status, events) = journal(c).await;
    assert_eq!(status, "rolled_back");
    let failed = events
        .iter()
        .find(|e| e["event"] == "failed")
        .expect("a failed event");
    assert_eq!(failed["stage"], 0, "the stage running then: {failed}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .starts_with("monitor `gateway`"),
        "{failed}"
    );
    let m = final_monitor(&events);
    assert_eq!(m["verdict"], "exceeded", "{m}");
    assert!(m["failures"].as_u64().unwrap() >= 1, "{m}");
    assert!(m["status"].as_u64().unwrap() >= 1, "{m}");
}

/// A run killed (SIGKILL) after its first statement: `--resume` continues the counts the journal
/// holds and says so; the final numbers include the earlier process's requests.
async fn killed_run_resumes_the_monitor_counts(backend: Backend) {
    let s = setup_with(
        backend,
        "monitor-resume",
        SimConfig::default(),
        &[("pause 1s", "pause 6s")],
    )
    .await;
    let c = &s.c;
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let mut child = tokio::process::Command::new(BIN)
        .args(run_args(&s, &kc, &[]))
        .env("PROBE_KEY", PROBE_KEY)
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait for the counts after the first statement in the journal.
    let t0 = std::time::Instant::now();
    let earlier = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no monitor counts journaled"
        );
        if let Some(cm) = c.list("configmaps").await.into_iter().find(|cm| {
            cm["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("ktplay-journal-"))
        }) {
            let counted = cm["data"]["events"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .rfind(|e| e["event"] == "monitor");
            if let Some(e) = counted {
                break e["requests"].as_u64().unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.start_kill().unwrap();
    let _ = child.wait().await;
    assert!(earlier > 0);
    let out = ktplay(&run_args(&s, &kc, &["--resume"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("monitors: resumed, continuing the counts of the interrupted process"),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains(&format!(
            "resumed: {earlier} of these requests were counted before the interruption"
        )),
        "{}",
        text(&out)
    );
    let (status, events) = journal(c).await;
    assert_eq!(status, "succeeded");
    let m = final_monitor(&events);
    assert_eq!(m["resumed_requests"].as_u64(), Some(earlier), "{m}");
    assert!(m["requests"].as_u64().unwrap() > earlier, "{m}");
    assert_eq!(m["failures"], 0, "{m}");
    assert_unlocked(c).await;
}

/// `ktplay test`: the monitor's numbers in JUnit (properties and system-out), for a test that
/// passes and one whose fault exceeds the budget (and rolls back, as it expects).
#[test]
fn ktplay_test_junit_carries_the_monitor_numbers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        support::case("monitored.ktplay"),
        dir.path().join("monitored.ktplay"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("monitored-tests.ktplay"),
        r#"test "clean upgrade" {
  playbook "monitored.ktplay"
  env staging
  expect succeeded
}

test "the gateway without preStop drops requests" {
  playbook "monitored.ktplay"
  env staging
  fault no-prestop:gateway
  expect rolled_back
  expect failed stage gateways
  expect final gateway 1.4.1
}

test "503 from the new gateway" {
  playbook "monitored.ktplay"
  env staging
  fault http:gateway@1.5.0=503
  expect rolled_back
  expect failed stage gateways
}
"#,
    )
    .unwrap();
    let junit = dir.path().join("junit.xml");
    let out = std::process::Command::new(BIN)
        .arg("test")
        .arg(dir.path().join("monitored-tests.ktplay"))
        .arg(format!("--junit={}", junit.display()))
        .env("PROBE_KEY", PROBE_KEY)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_no_secret(&String::from_utf8_lossy(&out.stdout));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_no_secret(&xml);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let prop = |case: &str, name: &str| -> String {
        let tc = doc
            .descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(case))
            .unwrap_or_else(|| panic!("no testcase {case}: {xml}"));
        tc.descendants()
            .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value"))
            .unwrap_or_else(|| panic!("no property {name} in {case}: {xml}"))
            .to_string()
    };
    assert_eq!(prop("clean upgrade", "monitor.gateway.failures"), "0");
    assert!(
        prop("clean upgrade", "monitor.gateway.requests")
            .parse::<u64>()
            .unwrap()
            >= 10
    );
    assert_eq!(prop("clean upgrade", "monitor.gateway.verdict"), "ok");
    assert_eq!(
        prop("503 from the new gateway", "monitor.gateway.verdict"),
        "exceeded"
    );
    // The simulator's drop model (a pod gone before its endpoint has left): the rehearsal agrees
    // with the real data path's verdict without preStop.
    assert_eq!(
        prop(
            "the gateway without preStop drops requests",
            "monitor.gateway.verdict"
        ),
        "exceeded"
    );
    assert!(
        prop("503 from the new gateway", "monitor.gateway.status")
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert!(xml.contains("<system-out>monitor gateway (GET https://gateway.staging.example.com/healthz?key=(secret)): 0 failed of"), "{xml}");
}

/// The data path's two scenarios (`tests/realkube/monitor-datapath-test.sh`) on the simulator,
/// the rehearsal's engine: the seed's gateway Deployment as the data-path test writes it
/// (readinessProbe /readyz, maxUnavailable 1, maxSurge 1, 3 replicas), with preStop `sleep 10`
/// or without it, upgraded 1.4.1 → 1.5.0 by `ktplay run` while the monitor probes its Service.
/// Returns the exit code and the final monitor event.
async fn datapath_scenario_on_the_simulator(prestop: bool) -> (Option<i32>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace(if prestop {
        "agree-seed"
    } else {
        "agree-noprestop"
    });
    let pb = dir.path().join("monitored-gateway.ktplay");
    std::fs::write(
        &pb,
        format!(
            r#"playbook "monitored-gateway" {{
  namespace "{ns}"
  component gateway {{
    deployment "keeptrusts-gateway"
    image "keeptrusts/gateway"
    from 1.4.1
    to 1.5.0
  }}
  let gateway_url = "https://gateway.example.com"
  monitor gateway GET "${{gateway_url}}/healthz" {{
    expect 200
    every 20ms
    timeout 2s
    budget failures 0
  }}
  stage gateways {{
    rolling gateway max_unavailable 1 max_surge 1 timeout 3m
    pause 3s
  }}
}}
"#
        ),
    )
    .unwrap();
    let checked = ktplay::check::check_paths(std::slice::from_ref(&pb)).unwrap();
    assert_eq!(checked.errors(), 0, "{:?}", checked.problems);
    let mut seed = ktplay::rehearse::seed_for(&checked.playbooks[0].1, &ns);
    for c in &mut seed.components {
        c.replicas = 3;
    }
    let c = TestCluster::new(Backend::Sim, SimConfig::default(), &seed).await;
    // The data-path test's pod spec: probe, grace, and preStop or none.
    let mut container = serde_json::json!({
        "name": "gateway",
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 41002}, "periodSeconds": 1, "failureThreshold": 3},
    });
    container["lifecycle"] = if prestop {
        serde_json::json!({"preStop": {"exec": {"command": ["sleep", "10"]}}})
    } else {
        Value::Null // the seed's own preStop goes too
    };
    let patch = serde_json::json!({"spec": {
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
        "template": {"spec": {"terminationGracePeriodSeconds": 30, "containers": [container]}},
    }});
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(c.client(), &ns);
    api.patch(
        "keeptrusts-gateway",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(patch),
    )
    .await
    .unwrap();
    c.settled().await;
    let kc = kubeconfig(dir.path(), &[("sim", &c)]);
    let out = ktplay(&[
        "run".into(),
        pb.display().to_string(),
        format!("--kubeconfig={}", kc.display()),
        format!(
            "--route=gateway.example.com={}",
            c.service_url("gateway", None).unwrap()
        ),
        "--format=json".into(),
    ])
    .await;
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (out.status.code(), final_monitor(&lines))
}

/// The seed's Deployment (preStop `sleep 10`): 0 failed requests, exit 0 — as on the real data
/// path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_agrees_with_the_data_path_with_prestop() {
    let (code, m) = datapath_scenario_on_the_simulator(true).await;
    assert_eq!(code, Some(0), "{m}");
    assert_eq!(m["failures"], 0, "{m}");
    assert_eq!(m["verdict"], "ok", "{m}");
}

/// Without preStop the real data path drops requests (the process is gone before its endpoint
/// has left every proxy): the monitor's budget fails the run and it rolls back (exit 1). The
/// simulator models that drop (issue 22 part 3: a deleted pod's endpoint lingers 2 s and fails
/// requests once its process is gone), so it agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_agrees_with_the_data_path_without_prestop() {
    let (code, m) = datapath_scenario_on_the_simulator(false).await;
    assert_eq!(code, Some(1), "{m}");
    assert!(m["failures"].as_u64().unwrap() > 0, "{m}");
    assert_eq!(m["verdict"], "exceeded", "{m}");
}
