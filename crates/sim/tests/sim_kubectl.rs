//! The machine's real kubectl (the 1.33 build; the simulator reports 1.34, for which the
//! machine's `kubectl` dispatcher has no build) against the simulator over loopback: the
//! fidelity test with a client nobody here wrote. Each test gets its own simulator, kubeconfig
//! and `--cache-dir`.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use ktplay_sim::serve::{self, ServeOptions};
use ktplay_sim::{Faults, Running, Seed, Sim, SimConfig};

/// The kubectl build to run: 1.33 (one minor from the simulated 1.34), else the dispatcher.
const KUBECTLS: [&str; 2] = [
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.33",
    "/usr/bin/kubectl",
];
const NS: &str = "keeptrusts";

fn kubectl_path() -> Option<&'static str> {
    KUBECTLS.into_iter().find(|p| Path::new(p).exists())
}

fn have_kubectl() -> bool {
    if kubectl_path().is_some() {
        return true;
    }
    eprintln!(
        "\n\n!!!!! SKIPPED: none of {KUBECTLS:?} exists; the kubectl fidelity tests did not run !!!!!\n"
    );
    false
}

struct Cluster {
    sim: Sim,
    _running: Running,
    dir: TempDir,
}

impl Cluster {
    /// What `ktplay sim serve` does: seed, listen on a free port, write the kubeconfig.
    async fn new(config: SimConfig, version: &str) -> Cluster {
        let dir = TempDir::new().unwrap();
        std::fs::create_dir(dir.path().join("cache")).unwrap();
        let running = serve::start_serving(&ServeOptions {
            port: 0,
            kubeconfig: Some(dir.path().join("kubeconfig")),
            seed: Some(Seed::keeptrusts(NS, version.parse().unwrap())),
            config,
        })
        .await
        .unwrap();
        Cluster {
            sim: running.sim().clone(),
            _running: running,
            dir,
        }
    }

    async fn kubectl(&self, args: &[&str]) -> Output {
        let kc = self.dir.path().join("kubeconfig");
        let cache = self.dir.path().join("cache");
        let out = tokio::process::Command::new(kubectl_path().expect("checked by have_kubectl"))
            .arg("--kubeconfig")
            .arg(&kc)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env_remove("KUBECONFIG")
            .env("HOME", self.dir.path())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(60), out)
            .await
            .expect("kubectl finished")
            .expect("kubectl ran")
    }

    /// Run kubectl, expect success, return stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        stdout
    }

    fn deployment(&self, name: &str) -> Value {
        self.sim.get_object("deployments", NS, name).unwrap()
    }
}

fn image(d: &Value) -> &str {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_deploy_prints_the_usual_columns() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::new(SimConfig::default(), "1.4.0").await;
    let kubeconfig = std::fs::read_to_string(c.dir.path().join("kubeconfig")).unwrap();
    assert!(
        kubeconfig.contains("current-context: \"sim\"")
            && kubeconfig.contains("namespace: \"keeptrusts\""),
        "{kubeconfig}"
    );
    let out = c.ok(&["get", "deploy"]).await;
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{out}"
    );
    let api: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("keeptrusts-api "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&api[..4], ["keeptrusts-api", "3/3", "3", "3"], "{out}");
    assert!(api[4].ends_with('s'), "age like 1s: {out}");
    assert_eq!(out.lines().count(), 8, "header and 7 deployments: {out}");
    let wide = c
        .ok(&["get", "deploy", "keeptrusts-gateway", "-o", "wide"])
        .await;
    assert!(
        wide.contains("keeptrusts/gateway:1.4.0") && wide.contains("app=keeptrusts-gateway"),
        "{wide}"
    );
    let pods = c.ok(&["get", "pods", "-l", "app=keeptrusts-api"]).await;
    assert_eq!(pods.lines().count(), 4, "{pods}");
    assert!(
        pods.lines()
            .skip(1)
            .all(|l| l.contains("1/1") && l.contains("Running")),
        "{pods}"
    );
    let svc = c
        .ok(&[
            "get",
            "svc",
            "keeptrusts-console",
            "-o",
            "jsonpath={.spec.selector.version}",
        ])
        .await;
    assert_eq!(svc, "blue");
    let missing = c.kubectl(&["get", "deploy", "nope"]).await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("deployments.apps \"nope\" not found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_image_status_history_undo_restart() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::new(SimConfig::default(), "1.4.0").await;
    let d = "deployment/keeptrusts-gateway";
    let out = c
        .ok(&["set", "image", d, "gateway=keeptrusts/gateway:1.5.0"])
        .await;
    assert!(
        out.contains("deployment.apps/keeptrusts-gateway image updated"),
        "{out}"
    );
    let out = c.ok(&["rollout", "status", d, "--timeout=30s"]).await;
    assert!(
        out.contains("deployment \"keeptrusts-gateway\" successfully rolled out"),
        "{out}"
    );
    assert_eq!(
        image(&c.deployment("keeptrusts-gateway")),
        "keeptrusts/gateway:1.5.0"
    );
    let st = &c.deployment("keeptrusts-gateway")["status"];
    assert_eq!(
        (
            st["updatedReplicas"].as_i64(),
            st["availableReplicas"].as_i64()
        ),
        (Some(3), Some(3))
    );

    let out = c.ok(&["rollout", "history", d]).await;
    let revisions: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|ch| ch.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["1", "2"], "{out}");
    let out = c.ok(&["rollout", "history", d, "--revision=1"]).await;
    assert!(out.contains("keeptrusts/gateway:1.4.0"), "{out}");

    let out = c.ok(&["rollout", "undo", d]).await;
    assert!(out.contains("rolled back"), "{out}");
    c.ok(&["rollout", "status", d, "--timeout=30s"]).await;
    let dep = c.deployment("keeptrusts-gateway");
    assert_eq!(image(&dep), "keeptrusts/gateway:1.4.0");
    assert_eq!(
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let out = c.ok(&["rollout", "history", d]).await;
    assert!(
        out.contains("\n2 ") && out.contains("\n3 ") && !out.contains("\n1 "),
        "revision 1 became 3: {out}"
    );

    let out = c.ok(&["rollout", "restart", d]).await;
    assert!(out.contains("restarted"), "{out}");
    c.ok(&["rollout", "status", d, "--timeout=30s"]).await;
    let dep = c.deployment("keeptrusts-gateway");
    assert!(dep["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .is_string());
    assert_eq!(
        dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "4"
    );
    assert_eq!(dep["status"]["updatedReplicas"], 3);
    // scale goes through the scale subresource
    let out = c.ok(&["scale", d, "--replicas=5"]).await;
    assert!(out.contains("scaled"), "{out}");
    c.ok(&["rollout", "status", d, "--timeout=30s"]).await;
    assert_eq!(
        c.deployment("keeptrusts-gateway")["status"]["availableReplicas"],
        5
    );
    // the request log shows what kubectl sent
    let log = c.sim.request_log();
    assert!(
        log.iter().any(|r| r.method == "PATCH"
            && r.content_type.as_deref() == Some("application/json-patch+json")
            && r.status == 200),
        "rollout undo sends a JSON patch"
    );
    assert!(log
        .iter()
        .any(|r| r.method == "GET" && r.path.contains("watch=true")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_reports_the_progress_deadline() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::new(
        SimConfig {
            progress_deadline: Some(Duration::from_secs(2)),
            faults: Faults::parse_all(["never-ready:gateway@1.5.0"]).unwrap(),
            ..SimConfig::default()
        },
        "1.4.0",
    )
    .await;
    let d = "deployment/keeptrusts-gateway";
    c.ok(&["set", "image", d, "gateway=keeptrusts/gateway:1.5.0"])
        .await;
    let out = c.kubectl(&["rollout", "status", d, "--timeout=30s"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("error: deployment \"keeptrusts-gateway\" exceeded its progress deadline"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Waiting for deployment \"keeptrusts-gateway\" rollout to finish: 1 out of 3 new replicas have been updated"), "{stdout}");
    // the fault is still on; undo goes back to the healthy version and kubectl agrees
    assert!(c
        .sim
        .faults()
        .never_ready("gateway", &"1.5.0".parse().unwrap()));
    c.ok(&["rollout", "undo", d]).await;
    let out = c.ok(&["rollout", "status", d, "--timeout=30s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(
        image(&c.deployment("keeptrusts-gateway")),
        "keeptrusts/gateway:1.4.0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_service_selector_and_logs() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::new(SimConfig::default(), "1.5.0").await;
    let out = c
        .ok(&[
            "patch",
            "service",
            "keeptrusts-console",
            "-p",
            r#"{"spec":{"selector":{"version":"green"}}}"#,
        ])
        .await;
    assert!(out.contains("service/keeptrusts-console patched"), "{out}");
    let svc = c
        .sim
        .get_object("services", NS, "keeptrusts-console")
        .unwrap();
    assert_eq!(svc["spec"]["selector"]["version"], "green");
    assert_eq!(
        svc["spec"]["selector"]["app"], "keeptrusts-console",
        "strategic merge keeps the other key"
    );
    let log = c.sim.request_log();
    assert!(log.iter().any(|r| r.method == "PATCH"
        && r.content_type.as_deref() == Some("application/strategic-merge-patch+json")));

    let out = c.ok(&["logs", "deploy/keeptrusts-api"]).await;
    assert!(out.contains("migrations complete"), "{out}");
    let all = c
        .ok(&["logs", "-l", "app=keeptrusts-api", "--tail=-1"])
        .await;
    assert!(
        all.contains("migration 0042_add_policy_index applied"),
        "{all}"
    );
    let out = c
        .ok(&["logs", "deploy/keeptrusts-api", "-c", "api", "--tail=1"])
        .await;
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("listening on"), "{out}");
}
