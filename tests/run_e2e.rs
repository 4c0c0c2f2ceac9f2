//! `ktplay run` and `ktplay rehearse` through the real binary, against the simulator over loopback
//! HTTP: the simulator runs in the test process (`Sim::start`), the binary gets its kubeconfig
//! and `--route`s for the env's URLs, and the assertions read the simulator's objects and its
//! request log.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use ktplay::sim::{Fault, Running, Sim, SimConfig};
use serde_json::Value;

const NS: &str = "keeptrusts";
const TEST_KEY: &str = "tk-7f3a9c1e5b2d";
const ADMIN_TOKEN: &str = "adm-91c4e8f20a6b";
const BIN: &str = env!("CARGO_BIN_EXE_ktplay");

fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cases/run")
        .join(name)
}

fn playbook(path: &Path) -> ktplay::check::Playbook {
    let checked = ktplay::check::check_paths(&[path.to_path_buf()]).unwrap();
    assert_eq!(checked.errors(), 0, "{:?}", checked.problems);
    checked.playbooks.into_iter().next().unwrap().1
}

struct Cluster {
    sim: Sim,
    running: Running,
}

async fn cluster(
    config: SimConfig,
    pb: &Path,
    tweak: impl FnOnce(&mut ktplay::sim::Seed),
) -> Cluster {
    let sim = Sim::new(config);
    let mut seed = ktplay::run::rehearse::seed_for(&playbook(pb), NS);
    tweak(&mut seed);
    sim.seed(&seed);
    let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    Cluster { sim, running }
}

fn fast() -> SimConfig {
    SimConfig {
        progress_deadline: Some(Duration::from_secs(2)),
        ..Default::default()
    }
}

/// A kubeconfig with one context per (name, cluster).
fn kubeconfig(dir: &Path, contexts: &[(&str, &Cluster)]) -> PathBuf {
    let mut y = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for (n, c) in contexts {
        y += &format!(
            "- name: {n}\n  cluster:\n    server: {}\n",
            c.running.api_url()
        );
    }
    y += "users:\n- name: u\n  user: {}\ncontexts:\n";
    for (n, _) in contexts {
        y += &format!(
            "- name: {n}\n  context:\n    cluster: {n}\n    user: u\n    namespace: {NS}\n"
        );
    }
    y += &format!("current-context: {}\n", contexts[0].0);
    let path = dir.join("kubeconfig");
    std::fs::write(&path, y).unwrap();
    path
}

/// `--route` arguments sending the env's hosts to the cluster's services.
fn routes(c: &Cluster, env: &str) -> Vec<String> {
    let (api, gw, console) = match env {
        "staging" => (
            "api.staging.example.com",
            "gateway.staging.example.com",
            "staging.internal",
        ),
        _ => (
            "api.example.com",
            "gateway.example.com",
            "internal.example.com",
        ),
    };
    let url = |comp: &str, colour: Option<&str>| c.running.service_url(comp, colour).unwrap();
    vec![
        format!("--route={api}={}", url("api", None)),
        format!("--route={gw}={}", url("gateway", None)),
        format!(
            "--route=console-blue.{console}={}",
            url("console", Some("blue"))
        ),
        format!(
            "--route=console-green.{console}={}",
            url("console", Some("green"))
        ),
    ]
}

fn command(args: &[String]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env("TEST_KEY", TEST_KEY)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn ktplay(args: &[String]) -> Output {
    let out = tokio::time::timeout(Duration::from_secs(120), command(args).output())
        .await
        .expect("ktplay finished in time")
        .unwrap();
    assert_no_secrets(&String::from_utf8_lossy(&out.stdout));
    assert_no_secrets(&String::from_utf8_lossy(&out.stderr));
    out
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_no_secrets(s: &str) {
    assert!(
        !s.contains(TEST_KEY) && !s.contains(ADMIN_TOKEN),
        "a secret leaked:\n{s}"
    );
}

fn run_args(pb: &Path, kc: &Path, env: &str, c: &Cluster, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "run".to_string(),
        pb.display().to_string(),
        format!("--env={env}"),
        format!("--kubeconfig={}", kc.display()),
    ];
    a.extend(routes(c, env));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn image(sim: &Sim, deploy: &str) -> String {
    let d = sim.get_object("deployments", NS, deploy).unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

fn journal_cm(sim: &Sim) -> Value {
    sim.list_objects("configmaps", NS)
        .into_iter()
        .find(|c| {
            c["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("ktplay-journal-"))
        })
        .expect("a journal ConfigMap")
}

/// Sequence numbers of JSON-patch PATCHes (how ktplay restores a template) of a deployment.
fn restores(sim: &Sim, deploy: &str) -> Vec<u64> {
    sim.request_log()
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.path
                    .split('?')
                    .next()
                    .unwrap()
                    .ends_with(&format!("/deployments/{deploy}"))
                && r.content_type.as_deref() == Some("application/json-patch+json")
        })
        .map(|r| r.seq)
        .collect()
}

fn count(sim: &Sim, method: &str, path_end: &str, status: u16) -> usize {
    sim.request_log()
        .iter()
        .filter(|r| {
            r.method == method
                && r.path.split('?').next().unwrap().ends_with(path_end)
                && r.status == status
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_succeeds_and_keeps_secrets_out() {
    let pb = case("upgrade.ktplay");
    let c = cluster(fast(), &pb, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &[("staging", &c)]);
    let journal = dir.path().join("journal.jsonl");
    let j = format!("--journal={}", journal.display());
    let out = ktplay(&run_args(&pb, &kc, "staging", &c, &["--approve", &j])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for d in [
        "keeptrusts-api",
        "keeptrusts-gateway",
        "keeptrusts-console-green",
        "worker-export",
        "worker-lifecycle",
        "worker-config",
    ] {
        assert!(
            image(&c.sim, d).ends_with(":1.5.0"),
            "{d}: {}",
            image(&c.sim, d)
        );
    }
    assert_eq!(
        image(&c.sim, "keeptrusts-console-blue"),
        "keeptrusts/console:1.4.0"
    );
    let svc = c
        .sim
        .get_object("services", NS, "keeptrusts-console")
        .unwrap();
    assert_eq!(svc["spec"]["selector"]["version"], "green");
    assert!(c
        .sim
        .get_object("deployments", NS, "keeptrusts-gateway-canary")
        .is_none());
    // The lock is released; the journal says succeeded, locally and in the cluster.
    assert!(c.sim.list_objects("leases", NS).is_empty());
    let cm = journal_cm(&c.sim);
    assert_eq!(cm["data"]["status"], "succeeded");
    assert!(cm["data"]["last_success"]
        .as_str()
        .unwrap()
        .contains("staging"));
    let local = std::fs::read_to_string(&journal).unwrap();
    assert!(local.lines().count() > 20 && local.contains("\"run_end\""));
    assert_no_secrets(&local);
    assert_no_secrets(&cm.to_string());
    // JSON output: one event per line, also secret-free.
    let st = ktplay(&[
        "status".into(),
        pb.display().to_string(),
        "--env=staging".into(),
        format!("--kubeconfig={}", kc.display()),
    ])
    .await;
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
    assert!(
        String::from_utf8_lossy(&st.stdout).contains("succeeded"),
        "{}",
        text(&st)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_fault_rolls_back_gateway_then_api() {
    let pb = case("upgrade.ktplay");
    let mut config = fast();
    config.faults.add(Fault::PolicyOff {
        version: "1.5.0".parse().unwrap(),
    });
    let c = cluster(config, &pb, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &[("staging", &c)]);
    let out = ktplay(&run_args(
        &pb,
        &kc,
        "staging",
        &c,
        &["--approve", "--format=json"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let _: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert!(stdout.contains("expected 409"), "{}", text(&out));
    let (gw, api) = (
        restores(&c.sim, "keeptrusts-gateway"),
        restores(&c.sim, "keeptrusts-api"),
    );
    assert_eq!((gw.len(), api.len()), (1, 1), "{gw:?} {api:?}");
    assert!(
        gw[0] < api[0],
        "gateway must be rolled back before api: {gw:?} {api:?}"
    );
    assert_eq!(
        image(&c.sim, "keeptrusts-gateway"),
        "keeptrusts/gateway:1.4.1"
    );
    assert_eq!(image(&c.sim, "keeptrusts-api"), "keeptrusts/api:1.4.2");
    assert_eq!(journal_cm(&c.sim)["data"]["status"], "rolled_back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_deadline_in_api_stage_rolls_back() {
    let pb = case("upgrade.ktplay");
    let mut config = fast();
    config.faults.add(Fault::NeverReady {
        component: "api".into(),
        version: "1.5.0".parse().unwrap(),
    });
    let c = cluster(config, &pb, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &[("staging", &c)]);
    let out = ktplay(&run_args(&pb, &kc, "staging", &c, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("progress deadline") && err.contains("rolling api"),
        "{}",
        text(&out)
    );
    assert_eq!(restores(&c.sim, "keeptrusts-api").len(), 1);
    assert_eq!(image(&c.sim, "keeptrusts-api"), "keeptrusts/api:1.4.2");
    assert!(restores(&c.sim, "keeptrusts-gateway").is_empty());
}

/// The upgrade with a longer canary, so a run can be caught in the middle of the gateway stage.
fn slow_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(case("upgrade.ktplay"))
        .unwrap()
        .replace("for 1s", "for 4s");
    let p = dir.join("upgrade-slow.ktplay");
    std::fs::write(&p, text).unwrap();
    p
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_gateway_stage_resumes_without_repeating() {
    let dir = tempfile::tempdir().unwrap();
    let pb = slow_copy(dir.path());
    let c = cluster(fast(), &pb, |_| {}).await;
    let kc = kubeconfig(dir.path(), &[("staging", &c)]);
    let mut child = command(&run_args(&pb, &kc, "staging", &c, &["--approve"]))
        .spawn()
        .unwrap();
    wait_for("the canary", || {
        c.sim
            .get_object("deployments", NS, "keeptrusts-gateway-canary")
            .is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.start_kill().unwrap(); // SIGKILL
    let _ = child.wait().await;
    assert_eq!(journal_cm(&c.sim)["data"]["status"], "running");
    // A fresh run is refused: the journal shows an interrupted run.
    let fresh = ktplay(&run_args(&pb, &kc, "staging", &c, &["--approve"])).await;
    assert_eq!(fresh.status.code(), Some(3), "{}", text(&fresh));
    assert!(
        String::from_utf8_lossy(&fresh.stderr).contains("--resume"),
        "{}",
        text(&fresh)
    );
    let out = ktplay(&run_args(
        &pb,
        &kc,
        "staging",
        &c,
        &["--approve", "--resume"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not repeated"),
        "{}",
        text(&out)
    );
    // Nothing applied twice: one canary created, one api rollout, gateway at revision 2.
    assert_eq!(count(&c.sim, "POST", "/deployments", 201), 1);
    let api_patches = c
        .sim
        .request_log()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/deployments/keeptrusts-api"))
        .count();
    assert_eq!(api_patches, 1);
    let gw = c
        .sim
        .get_object("deployments", NS, "keeptrusts-gateway")
        .unwrap();
    assert_eq!(
        gw["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert!(image(&c.sim, "worker-config").ends_with(":1.5.0"));
    assert_eq!(journal_cm(&c.sim)["data"]["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_concurrent_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pb = slow_copy(dir.path());
    let c = cluster(fast(), &pb, |_| {}).await;
    let kc = kubeconfig(dir.path(), &[("staging", &c)]);
    let first = command(&run_args(&pb, &kc, "staging", &c, &["--approve"]))
        .spawn()
        .unwrap();
    wait_for("the lock", || !c.sim.list_objects("leases", NS).is_empty()).await;
    let second = ktplay(&run_args(&pb, &kc, "staging", &c, &["--approve"])).await;
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("lock id keeptrusts/ktplay-upgrade/"),
        "{}",
        text(&second)
    );
    let first = first.wait_with_output().await.unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_waits_for_staging() {
    let pb = case("upgrade.ktplay");
    let staging = cluster(fast(), &pb, |_| {}).await;
    let prod = cluster(fast(), &pb, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &[("staging", &staging), ("prod", &prod)]);
    let out = ktplay(&run_args(&pb, &kc, "production", &prod, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no successful run"),
        "{}",
        text(&out)
    );
    assert_eq!(count(&prod.sim, "PATCH", "keeptrusts-api", 200), 0);
    let out = ktplay(&run_args(&pb, &kc, "staging", &staging, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = ktplay(&run_args(&pb, &kc, "production", &prod, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(image(&prod.sim, "keeptrusts-api").ends_with(":1.5.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_and_missing_approval_are_refused_before_any_action() {
    let pb = case("upgrade.ktplay");
    let c = cluster(fast(), &pb, |seed| {
        seed.components[0].version = "1.4.1".parse().unwrap();
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), &[("staging", &c)]);
    let out = ktplay(&run_args(&pb, &kc, "staging", &c, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("drift: api runs {1.4.1}"), "{}", text(&out));
    // No terminal and no --approve: refused, never a silent yes.
    let out = ktplay(&run_args(&pb, &kc, "staging", &c, &["--accept-drift"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--approve"),
        "{}",
        text(&out)
    );
    let writes = c
        .sim
        .request_log()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/deployments/"))
        .count();
    assert_eq!(writes, 0);
    // With --accept-drift the run starts from the live versions.
    let out = ktplay(&run_args(
        &pb,
        &kc,
        "staging",
        &c,
        &["--approve", "--accept-drift"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_playbooks_rehearse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ktplay"))
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    for f in files.iter().chain([&case("upgrade.ktplay")]) {
        let out = ktplay(&[
            "rehearse".into(),
            f.display().to_string(),
            "--env=staging".into(),
            "--approve".into(),
            "--pace=0s".into(),
            "--max-wait=200ms".into(),
        ])
        .await;
        let all = text(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {all}", f.display());
        if std::fs::read_to_string(f).unwrap().contains("guard hook") {
            assert!(
                all.lines()
                    .any(|l| l.contains('✓') && l.contains("guard hook")),
                "{}: the hooks ran and passed: {all}",
                f.display()
            );
        }
    }
}

/// A hostile script (endless loop, trying to log a secret) is stopped by the sandbox: the guard
/// fails with the script's position, the playbook line is shown, the stage rolls back, exit 1,
/// and the secret appears nowhere (`ktplay()` asserts that on every output).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_hook_is_contained_and_rolled_back() {
    let out = ktplay(&[
        "rehearse".into(),
        case("hostile-hook.ktplay").display().to_string(),
        "--env=staging".into(),
        "--pace=0s".into(),
    ])
    .await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("too many operations (an endless loop?) (script line 4"),
        "{all}"
    );
    assert!(
        all.contains("hostile-hook.ktplay:11:5"),
        "the guard's playbook line: {all}"
    );
    assert!(all.contains("restore api"), "rolled back: {all}");
    assert!(all.contains("rolled back: api {1.4.2}"), "{all}");
}

/// Benchmark (run with `cargo test --test run_e2e -- --ignored --nocapture`): from the moment
/// the simulator sets `ProgressDeadlineExceeded` on the api deployment to ktplay's first rollback
/// request (the JSON patch restoring the api's template). Target: under 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_fault_to_first_rollback_request() {
    let pb = case("upgrade.ktplay");
    let mut samples = Vec::new();
    for _ in 0..5 {
        let mut config = fast();
        config.faults.add(Fault::NeverReady {
            component: "api".into(),
            version: "1.5.0".parse().unwrap(),
        });
        let c = cluster(config, &pb, |_| {}).await;
        let dir = tempfile::tempdir().unwrap();
        let kc = kubeconfig(dir.path(), &[("staging", &c)]);
        let child = command(&run_args(&pb, &kc, "staging", &c, &["--approve"]))
            .spawn()
            .unwrap();
        let mut visible = None;
        let start = Instant::now();
        while visible.is_none() && start.elapsed() < Duration::from_secs(30) {
            let d = c
                .sim
                .get_object("deployments", NS, "keeptrusts-api")
                .unwrap();
            if d["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x["reason"] == "ProgressDeadlineExceeded")
            {
                visible = Some(chrono::Utc::now());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let first = c
            .sim
            .request_log()
            .into_iter()
            .find(|r| {
                r.method == "PATCH"
                    && r.content_type.as_deref() == Some("application/json-patch+json")
            })
            .unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(&first.time).unwrap();
        let ms = (at.with_timezone(&chrono::Utc) - visible.unwrap()).num_milliseconds();
        samples.push(ms);
    }
    samples.sort();
    println!(
        "fault visible → first rollback request: {samples:?} ms (median {} ms)",
        samples[samples.len() / 2]
    );
    assert!(samples[samples.len() / 2] < 1000);
}
