//! `ktplay run` and `ktplay rehearse` through the real binary. Every scenario of `run` runs on
//! both backends from one list (`on_both!`): the embedded simulator, and the real cluster of
//! `KTPLAY_TEST_KUBECONFIG` (see `tests/support`). The binary gets a kubeconfig and `--route`s
//! for the env's URLs; the assertions read the cluster's objects (final state, lock, journal)
//! and the requests ktplay sent.

#[macro_use]
mod support;
#[path = "run_e2e/metric_pods.rs"]
mod metric_pods;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use ktplay::sim::{Fault, Seed, SimConfig};
use serde_json::Value;
use support::{case, copy_case, kubeconfig, Backend, TestCluster};

const TEST_KEY: &str = "tk-7f3a9c1e5b2d";
const ADMIN_TOKEN: &str = "adm-91c4e8f20a6b";
const BIN: &str = env!("CARGO_BIN_EXE_ktplay");

on_both!(
    upgrade_succeeds_and_keeps_secrets_out,
    modified_shipped_migration_is_refused_in_production,
    policy_fault_rolls_back_gateway_then_api,
    rollout_deadline_in_api_stage_rolls_back,
    killed_mid_gateway_stage_resumes_without_repeating,
    second_concurrent_run_is_refused,
    production_waits_for_staging,
    promotion_gate_with_other_context_names,
    drift_and_missing_approval_are_refused_before_any_action,
    wrong_container_is_refused_before_any_action,
    missing_permissions_are_refused_before_any_action,
    large_pod_templates_keep_the_journal_small,
    journal_stays_small_over_many_runs,
    sigterm_mid_run_rolls_back,
    canary_timeout_is_honoured,
    api_errors_mid_run_are_retried,
    killed_mid_rollback_resumes_the_rollback,
    failed_blue_green_restores_the_idle_colour,
    next_upgrade_after_a_blue_green_starts,
    paused_runner_loses_the_lock_and_stops,
    differently_named_playbooks_cannot_change_the_same_objects,
    someone_elses_change_mid_run_stops_the_run,
    canary_never_seen_serving_fails_at_its_end,
    canary_evaluations_stay_inside_its_time,
);

fn playbook(path: &Path) -> ktplay::program::Playbook {
    let checked = ktplay::check::check_paths(&[path.to_path_buf()]).unwrap();
    assert_eq!(checked.errors(), 0, "{:?}", checked.problems);
    checked.playbooks.into_iter().next().unwrap().1
}

/// The playbook's components at `from`, 2 replicas each (quick on the real harness, still a
/// real rolling update), in `ns`.
fn seed(pb: &Path, ns: &str, tweak: impl FnOnce(&mut Seed)) -> Seed {
    let mut seed = ktplay::rehearse::seed_for(&playbook(pb), ns);
    for c in &mut seed.components {
        c.replicas = 2;
    }
    tweak(&mut seed);
    seed
}

/// The usual start: a temp dir, a namespace, the upgrade playbook in it (with `edits`), and a
/// cluster seeded from it.
struct Setup {
    dir: tempfile::TempDir,
    pb: PathBuf,
    c: TestCluster,
}

async fn setup(
    backend: Backend,
    tag: &str,
    config: SimConfig,
    edits: &[(&str, &str)],
    tweak: impl FnOnce(&mut Seed),
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace(tag);
    let pb = copy_case(dir.path(), "upgrade.ktplay", &ns, edits);
    let c = TestCluster::new(backend, config, &seed(&pb, &ns, tweak)).await;
    Setup { dir, pb, c }
}

/// As [`setup`], with the follower answering the HTTP guards even on the real data path
/// (`TestCluster::with_follower`). For the scenarios whose `policy-off:1.5.0` must fail the one
/// guard request sent right after the gateway's rollout: on the data path that request may still
/// reach an old 1.4.1 pod in its preStop sleep (its endpoint is in kube-proxy's rules for up to
/// the 2 s sync), which enforces policy and answers 409, so the guard passes and the rollback
/// the scenario is about does not happen. A real race, listed in `tests/realkube/README.md`.
async fn setup_following(
    backend: Backend,
    tag: &str,
    config: SimConfig,
    tweak: impl FnOnce(&mut Seed),
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace(tag);
    let pb = copy_case(dir.path(), "upgrade.ktplay", &ns, &[]);
    let c = TestCluster::with_follower(backend, config, &seed(&pb, &ns, tweak)).await;
    Setup { dir, pb, c }
}

/// `--route` arguments sending the env's hosts to the cluster's simulated services.
fn routes(c: &TestCluster, env: &str) -> Vec<String> {
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
    let url = |comp: &str, colour: Option<&str>| c.service_url(comp, colour).unwrap();
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
    let out = tokio::time::timeout(Duration::from_secs(180), command(args).output())
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

fn run_args(pb: &Path, kc: &Path, env: &str, c: &TestCluster, extra: &[&str]) -> Vec<String> {
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

async fn journal_cm(c: &TestCluster) -> Option<Value> {
    c.list("configmaps").await.into_iter().find(|cm| {
        cm["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("ktplay-journal-"))
    })
}

/// The journal's status; a run that ended (any status but `running`) also ends its events with
/// a `run_end` of that status.
async fn journal_status(c: &TestCluster) -> String {
    let cm = journal_cm(c).await.expect("a journal ConfigMap");
    let status = cm["data"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if status != "running" {
        let last: Value = cm["data"]["events"]
            .as_str()
            .and_then(|e| e.lines().last())
            .and_then(|l| serde_json::from_str(l).ok())
            .expect("events");
        assert_eq!(last["event"], "run_end", "{last}");
        assert_eq!(last["status"], status.as_str(), "{last}");
    }
    status
}

/// The run lock is gone.
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

/// The image every one of the upgrade's deployments runs, by deployment.
const DEPLOYS: [&str; 7] = [
    "keeptrusts-api",
    "keeptrusts-gateway",
    "keeptrusts-console-blue",
    "keeptrusts-console-green",
    "worker-export",
    "worker-lifecycle",
    "worker-config",
];

async fn images(c: &TestCluster) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for d in DEPLOYS {
        out.push((d.to_string(), c.image(d).await));
    }
    out
}

/// Everything as the seed left it: the `from` versions, the console Service on blue, no canary.
async fn assert_all_at_from(c: &TestCluster) {
    let want = [
        "keeptrusts/api:1.4.2",
        "keeptrusts/gateway:1.4.1",
        "keeptrusts/console:1.4.0",
        "keeptrusts/console:1.4.0",
        "keeptrusts/worker:1.4.0",
        "keeptrusts/worker:1.4.0",
        "keeptrusts/worker:1.4.0",
    ];
    let got = images(c).await;
    for ((d, img), w) in got.iter().zip(want) {
        assert_eq!(img, w, "{d} is not back at `from`: {got:?}");
    }
    let svc = c.get("services", "keeptrusts-console").await.unwrap();
    assert_eq!(svc["spec"]["selector"]["version"], "blue");
    assert!(c
        .get("deployments", "keeptrusts-gateway-canary")
        .await
        .is_none());
}

/// Sequence numbers of the PATCHes of a deployment that the API accepted.
fn patches(c: &TestCluster, deploy: &str) -> Vec<u64> {
    c.request_log()
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.status == 200
                && r.path
                    .split('?')
                    .next()
                    .unwrap()
                    .ends_with(&format!("/deployments/{deploy}"))
        })
        .map(|r| r.seq)
        .collect()
}

fn count(c: &TestCluster, method: &str, path_end: &str, status: u16) -> usize {
    c.request_log()
        .iter()
        .filter(|r| {
            r.method == method
                && r.path.split('?').next().unwrap().ends_with(path_end)
                && r.status == status
        })
        .count()
}

async fn upgrade_succeeds_and_keeps_secrets_out(backend: Backend) {
    let s = setup(backend, "upgrade", SimConfig::default(), &[], |_| {}).await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let journal = s.dir.path().join("journal.jsonl");
    let j = format!("--journal={}", journal.display());
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve", &j])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (d, img) in images(c).await {
        if d == "keeptrusts-console-blue" {
            assert_eq!(img, "keeptrusts/console:1.4.0");
        } else {
            assert!(img.ends_with(":1.5.0"), "{d}: {img}");
        }
    }
    let svc = c.get("services", "keeptrusts-console").await.unwrap();
    assert_eq!(svc["spec"]["selector"]["version"], "green");
    assert!(c
        .get("deployments", "keeptrusts-gateway-canary")
        .await
        .is_none());
    // No write created a container; every write is attributable to ktplay.
    let gw = c.get("deployments", "keeptrusts-gateway").await.unwrap();
    assert_eq!(
        gw["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The lock is released; the journal says succeeded, locally and in the cluster.
    assert_unlocked(c).await;
    let cm = journal_cm(c).await.unwrap();
    assert_eq!(cm["data"]["status"], "succeeded");
    assert!(cm["data"]["last_success"]
        .as_str()
        .unwrap()
        .contains("staging"));
    let local = std::fs::read_to_string(&journal).unwrap();
    assert!(local.lines().count() > 20 && local.contains("\"run_end\""));
    assert_no_secrets(&local);
    assert_no_secrets(&cm.to_string());
    if backend == Backend::Real {
        // Attributable in managedFields: the image change is ktplay's.
        let managers: Vec<&str> = gw["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        assert!(managers.contains(&"ktplay"), "{managers:?}");
        // Every request said who sent it.
        let agents = c.user_agents().unwrap();
        assert_eq!(
            agents,
            [format!("ktplay/{}", env!("CARGO_PKG_VERSION"))],
            "{agents:?}"
        );
    }
    if c.on_datapath() {
        assert_served_by_a_pod_process(c, "gateway", "1.5.0").await;
    }
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

/// On the real data path: the component's Service (its ClusterIP, through the real kube-proxy)
/// is answered by a pod process of the namespace — the `ktplay sim app` of a pod running
/// `version`, listening on that pod's IP — not by a follower on loopback.
async fn assert_served_by_a_pod_process(c: &TestCluster, component: &str, version: &str) {
    let url = c.service_url(component, None).unwrap();
    assert!(url.starts_with("http://10.96."), "a ClusterIP: {url}");
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{url}/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = |k: &str| r.headers()[k].to_str().unwrap().to_string();
    let (pod, ip) = (h("x-sim-pod"), h("x-sim-pod-ip"));
    assert_eq!(h("x-sim-version"), version);
    let p = c
        .get("pods", &pod)
        .await
        .unwrap_or_else(|| panic!("the answering pod {pod} is in {}", c.ns));
    assert_eq!(
        p["status"]["podIP"],
        ip.as_str(),
        "{pod} listens on its own IP"
    );
    assert!(ip.starts_with("10.244."), "{ip}");
    assert!(
        p["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{version}")),
        "{p}"
    );
}

async fn policy_fault_rolls_back_gateway_then_api(backend: Backend) {
    let mut config = SimConfig::default();
    config.faults.add(Fault::PolicyOff {
        version: "1.5.0".parse().unwrap(),
    });
    let s = setup_following(backend, "policy", config, |_| {}).await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let out = ktplay(&run_args(
        pb,
        &kc,
        "staging",
        c,
        &["--approve", "--format=json"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let _: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert!(stdout.contains("expected 409"), "{}", text(&out));
    // Forward: the api's image, the gateway's promotion and strategy; rollback: one restore
    // each (the last patch of each), gateway first.
    let (gw, api) = (
        patches(c, "keeptrusts-gateway"),
        patches(c, "keeptrusts-api"),
    );
    assert_eq!((gw.len(), api.len()), (3, 2), "{gw:?} {api:?}");
    assert!(
        gw[2] < api[1],
        "gateway must be rolled back before api: {gw:?} {api:?}"
    );
    c.settled().await;
    assert_all_at_from(c).await;
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "rolled_back");
}

/// The api's new version never gets ready (an image tag ending in `-bad`: ImagePullBackOff on
/// both backends): the rollout fails on its progress deadline and the api is restored. On a real
/// controller the restore's wait first sees the failed rollout's stale deadline condition, which
/// it must not believe.
async fn rollout_deadline_in_api_stage_rolls_back(backend: Backend) {
    let s = setup(
        backend,
        "deadline",
        SimConfig::default(),
        &[
            ("to 1.5.0\n    migrations", "to 1.5.0-bad\n    migrations"),
            // Old pods go while new ones fail: the restore has pods to bring back, during
            // which the real controller keeps the failed rollout's deadline condition.
            (
                "rolling api timeout 10m",
                "rolling api max_unavailable 1 timeout 10m",
            ),
        ],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("progress deadline") && err.contains("rolling api"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rolled back"),
        "{}",
        text(&out)
    );
    assert_eq!(patches(c, "keeptrusts-api").len(), 2);
    assert!(patches(c, "keeptrusts-gateway").is_empty());
    c.settled().await;
    assert_eq!(c.image("keeptrusts-api").await, "keeptrusts/api:1.4.2");
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "rolled_back");
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Start `ktplay run --approve` in the background and return once its gateway canary exists
/// (the run is then in the middle of the gateway stage).
async fn start_until_canary(pb: &Path, kc: &Path, c: &TestCluster) -> tokio::process::Child {
    let child = command(&run_args(pb, kc, "staging", c, &["--approve"]))
        .spawn()
        .unwrap();
    wait_for("the canary", async || {
        c.get("deployments", "keeptrusts-gateway-canary")
            .await
            .is_some()
    })
    .await;
    child
}

async fn killed_mid_gateway_stage_resumes_without_repeating(backend: Backend) {
    let s = setup(
        backend,
        "resume",
        SimConfig::default(),
        &[("for 1s", "for 4s")],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let mut child = start_until_canary(pb, &kc, c).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.start_kill().unwrap(); // SIGKILL
    let _ = child.wait().await;
    assert_eq!(journal_status(c).await, "running");
    // A fresh run is refused: the journal shows an interrupted run.
    let fresh = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(fresh.status.code(), Some(3), "{}", text(&fresh));
    assert!(
        String::from_utf8_lossy(&fresh.stderr).contains("--resume"),
        "{}",
        text(&fresh)
    );
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve", "--resume"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not repeated"),
        "{}",
        text(&out)
    );
    // Nothing applied twice: one canary created, one api rollout, gateway at revision 2.
    assert_eq!(count(c, "POST", "/deployments", 201), 1);
    assert_eq!(patches(c, "keeptrusts-api").len(), 1);
    let gw = c.get("deployments", "keeptrusts-gateway").await.unwrap();
    assert_eq!(
        gw["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert!(c.image("worker-config").await.ends_with(":1.5.0"));
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "succeeded");
}

/// SIGTERM (a Job's deletion, a CI cancel) behaves as the first Ctrl-C: the current statement is
/// abandoned safely and everything rolls back (exit 1), the lock is released and the journal
/// says `rolled_back`.
async fn sigterm_mid_run_rolls_back(backend: Backend) {
    let s = setup(
        backend,
        "sigterm",
        SimConfig::default(),
        &[("for 1s", "for 4s")],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let child = start_until_canary(pb, &kc, c).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(st.success());
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted (SIGTERM)"),
        "{}",
        text(&out)
    );
    c.settled().await;
    assert_all_at_from(c).await;
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "rolled_back");
}

/// `timeout` on `canary` bounds its rollout waits: a canary that never gets ready fails after
/// the statement's 1 s (not a fixed 600 s, nor the 4 s progress deadline), and rolls back.
async fn canary_timeout_is_honoured(backend: Backend) {
    let s = setup(
        backend,
        "canarytimeout",
        SimConfig::default(),
        &[(
            "canary gateway weight 10% for 1s {",
            "canary gateway weight 10% for 1s to 1.5.0-bad timeout 1s {",
        )],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timed out after 1s waiting for `keeptrusts-gateway-canary`"),
        "{}",
        text(&out)
    );
    c.settled().await;
    assert_all_at_from(c).await;
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "rolled_back");
}

/// From the middle of the gateway stage, 30% of API requests answer 500: every request is
/// retried with back-off (writes are safe to repeat), and the upgrade completes as if nothing
/// happened — all at `to`, no canary left, lock released, journal `succeeded`.
async fn api_errors_mid_run_are_retried(backend: Backend) {
    let s = setup(
        backend,
        "apierrors",
        SimConfig::default(),
        &[("for 1s", "for 2s")],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let child = start_until_canary(pb, &kc, c).await;
    c.set_api_errors(0.3);
    let out = tokio::time::timeout(Duration::from_secs(170), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    c.set_api_errors(0.0);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let errors = count(c, "GET", "", 500)
        + count(c, "PATCH", "", 500)
        + count(c, "POST", "", 500)
        + count(c, "DELETE", "", 500)
        + count(c, "PUT", "", 500);
    assert!(errors > 5, "the fault was felt: {errors} errors");
    for (d, img) in images(c).await {
        if d != "keeptrusts-console-blue" {
            assert!(img.ends_with(":1.5.0"), "{d}: {img}");
        }
    }
    assert!(c
        .get("deployments", "keeptrusts-gateway-canary")
        .await
        .is_none());
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "succeeded");
}

/// SIGKILL while the rollback runs: the journal says `running`, a fresh run is refused and names
/// `--resume`, and `--resume` continues the rollback from the step it reached (the plan rebuilt
/// from the journal) to its end: all at `from`, exit 1, lock released, journal `rolled_back`.
async fn killed_mid_rollback_resumes_the_rollback(backend: Backend) {
    let mut config = SimConfig {
        pace: Duration::from_millis(150),
        ..SimConfig::default()
    };
    config.faults.add(Fault::PolicyOff {
        version: "1.5.0".parse().unwrap(),
    });
    let s = setup_following(backend, "killrollback", config, |_| {}).await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let mut child = command(&run_args(pb, &kc, "staging", c, &["--approve"]))
        .spawn()
        .unwrap();
    wait_for("the rollback to begin", async || {
        journal_cm(c).await.is_some_and(|cm| {
            cm["data"]["events"]
                .as_str()
                .is_some_and(|e| e.contains("\"rollback_step\""))
        })
    })
    .await;
    child.start_kill().unwrap(); // SIGKILL, mid-rollback
    let _ = child.wait().await;
    assert_eq!(journal_status(c).await, "running");
    let fresh = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(fresh.status.code(), Some(3), "{}", text(&fresh));
    assert!(
        String::from_utf8_lossy(&fresh.stderr).contains("--resume"),
        "{}",
        text(&fresh)
    );
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve", "--resume"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("resuming the rollback"), "{}", text(&out));
    assert!(stdout.contains("rolled back"), "{}", text(&out));
    c.settled().await;
    assert_all_at_from(c).await;
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "rolled_back");
}

/// A `blue_green` whose new version never gets ready: the rollback switches nothing back (the
/// Service never moved) and puts the idle colour back on the version it ran, so nothing is left
/// on the failed version and the next identical run starts (and fails the same way) instead of
/// being refused for drift.
async fn failed_blue_green_restores_the_idle_colour(backend: Backend) {
    let s = setup(
        backend,
        "bgfail",
        SimConfig::default(),
        &[(
            "blue_green console {",
            "blue_green console to 1.5.0-bad timeout 3s {",
        )],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    for attempt in 1..=2 {
        let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
        assert_eq!(
            out.status.code(),
            Some(1),
            "attempt {attempt}: {}",
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("keeptrusts-console-green restored"),
            "{}",
            text(&out)
        );
        c.settled().await;
        assert_all_at_from(c).await;
        assert_unlocked(c).await;
        assert_eq!(journal_status(c).await, "rolled_back");
    }
}

/// After the upgrade succeeded the console serves green (1.5.0) and blue idles on 1.4.0: the next
/// upgrade's drift check compares the serving colour, so it starts, and its new version goes to
/// the idle blue colour.
async fn next_upgrade_after_a_blue_green_starts(backend: Backend) {
    let s = setup(backend, "bgnext", SimConfig::default(), &[], |_| {}).await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let next = copy_case(s.dir.path(), "console-next.ktplay", &c.ns, &[]);
    let out = ktplay(&run_args(&next, &kc, "staging", c, &[])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        c.image("keeptrusts-console-blue").await,
        "keeptrusts/console:1.5.1"
    );
    assert_eq!(
        c.image("keeptrusts-console-green").await,
        "keeptrusts/console:1.5.0"
    );
    let svc = c.get("services", "keeptrusts-console").await.unwrap();
    assert_eq!(svc["spec"]["selector"]["version"], "blue");
    assert_unlocked(c).await;
}

fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    let st = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Runner A is paused by the OS (SIGSTOP) past its 15 s lease; B resumes the run and finishes
/// it; then A wakes up. A must not act on a system it no longer owns: its first write finds the
/// lock gone, and it stops at once (exit 5) without a single write — no patch, no rollback, no
/// journal write — leaving B's finished upgrade as it is.
async fn paused_runner_loses_the_lock_and_stops(backend: Backend) {
    let s = setup(
        backend,
        "fence",
        SimConfig::default(),
        &[("for 1s", "for 4s")],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let a = start_until_canary(pb, &kc, c).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&a, "-STOP");
    tokio::time::sleep(Duration::from_secs(17)).await; // past the 15 s lease
    let b = ktplay(&run_args(pb, &kc, "staging", c, &["--approve", "--resume"])).await;
    assert_eq!(b.status.code(), Some(0), "B: {}", text(&b));
    let woke = chrono::Utc::now();
    signal(&a, "-CONT");
    let a = tokio::time::timeout(Duration::from_secs(60), a.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status.code(), Some(5), "A: {}", text(&a));
    assert!(
        String::from_utf8_lossy(&a.stdout).contains("lost the run lock"),
        "A: {}",
        text(&a)
    );
    let writes_after: Vec<String> = c
        .request_log()
        .iter()
        .filter(|r| r.method != "GET")
        .filter(|r| chrono::DateTime::parse_from_rfc3339(&r.time).unwrap() > woke)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        writes_after.is_empty(),
        "A wrote after waking: {writes_after:?}"
    );
    for (d, img) in images(c).await {
        if d != "keeptrusts-console-blue" {
            assert!(img.ends_with(":1.5.0"), "{d}: {img}");
        }
    }
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "succeeded");
}

async fn second_concurrent_run_is_refused(backend: Backend) {
    let s = setup(
        backend,
        "lock",
        SimConfig::default(),
        // Long enough for `unlock --force` to watch the lease being renewed.
        &[("for 1s", "for 12s")],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let first = command(&run_args(pb, &kc, "staging", c, &["--approve"]))
        .spawn()
        .unwrap();
    wait_for("the lock", async || !c.list("leases").await.is_empty()).await;
    let second = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!("lock id {}/ktplay-upgrade/", c.ns)),
        "{}",
        text(&second)
    );
    // `unlock --force` refuses while the holder renews: it would let a second run act.
    let lock_id = err
        .split("lock id ")
        .nth(1)
        .and_then(|r| r.split([',', ')', ' ']).next())
        .unwrap()
        .to_string();
    let unlock = ktplay(&[
        "unlock".into(),
        "--force".into(),
        lock_id.clone(),
        format!("--kubeconfig={}", kc.display()),
    ])
    .await;
    assert_eq!(unlock.status.code(), Some(3), "{}", text(&unlock));
    assert!(
        String::from_utf8_lossy(&unlock.stderr).contains("held by a live run"),
        "{}",
        text(&unlock)
    );
    assert!(
        !c.list("leases").await.is_empty(),
        "the lease is still there"
    );
    let first = first.wait_with_output().await.unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "succeeded");
}

/// The lock protects the objects, not the file name: a playbook of another name that would
/// change the same Deployments is refused while the first run holds them (exit 3, naming the
/// object), takes no lock and changes nothing; the first run completes.
async fn differently_named_playbooks_cannot_change_the_same_objects(backend: Backend) {
    let s = setup(
        backend,
        "objlock",
        SimConfig::default(),
        &[("for 1s", "for 4s")],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let other_dir = tempfile::tempdir().unwrap();
    let other = copy_case(
        other_dir.path(),
        "upgrade.ktplay",
        &c.ns,
        &[(
            "playbook \"upgrade\"",
            "playbook \"same-objects-other-name\"",
        )],
    );
    let first = start_until_canary(pb, &kc, c).await;
    let second = ktplay(&run_args(&other, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another run would change deployment `keeptrusts-"),
        "{}",
        text(&second)
    );
    assert!(c
        .list("leases")
        .await
        .iter()
        .all(|l| l["metadata"]["name"] != "ktplay-same-objects-other-name"));
    let first = first.wait_with_output().await.unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    // The refused run wrote no journal of its own: only the first run's exists.
    let journals = c
        .list("configmaps")
        .await
        .into_iter()
        .filter(|cm| {
            cm["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("ktplay-journal-"))
        })
        .count();
    assert_eq!(journals, 1);
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "succeeded");
}

/// Mid-run, someone else changes a deployment the run already upgraded (a hand-applied
/// hotfix): before its next action the run sees the object is no longer as it left it, fails
/// with words naming the deployment and the image, and rolls back what it did.
async fn someone_elses_change_mid_run_stops_the_run(backend: Backend) {
    let s = setup(
        backend,
        "meddle",
        SimConfig::default(),
        &[("for 1s", "for 4s")],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let child = start_until_canary(pb, &kc, c).await;
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(c.client(), &c.ns);
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "keeptrusts/api:1.5.1"}
    ]))
    .unwrap();
    api.patch(
        "keeptrusts-api",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Json::<()>(patch),
    )
    .await
    .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(170), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("deployment `keeptrusts-api` was changed by someone else")
            && err.contains("keeptrusts/api:1.5.1"),
        "{}",
        text(&out)
    );
    c.settled().await;
    assert_all_at_from(c).await;
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "rolled_back");
}

// Issue 20 (locks, journal trust, resume drift, hostile leases, retries before the run).
on_both!(
    live_lock_is_never_taken_from_another_pid_namespace,
    untrusted_journal_is_never_resumed,
    resume_checks_drift_and_stays_resumable,
    hostile_lease_contents_are_escaped,
    api_errors_before_the_run_are_retried,
);

/// `(lease, holder)` of every ktplay lease of the namespace, sorted.
async fn lease_holders(c: &TestCluster) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = c
        .list("leases")
        .await
        .into_iter()
        .filter_map(|l| {
            let name = l["metadata"]["name"].as_str()?.to_string();
            name.starts_with("ktplay-").then(|| {
                (
                    name,
                    l["spec"]["holderIdentity"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
        })
        .collect();
    out.sort();
    out
}

/// Can this machine start a process in a new PID namespace (`unshare`, user namespaces)?
fn other_pid_namespace_works() -> bool {
    std::process::Command::new("unshare")
        .args(PIDNS)
        .arg("true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A new PID namespace with its own `/proc`, same host name, same user (mapped).
const PIDNS: [&str; 5] = [
    "--user",
    "--map-root-user",
    "--pid",
    "--fork",
    "--mount-proc",
];

/// `ktplay ARGS` in a new PID namespace: the runner next door (another container, a CI job on
/// the same node) that cannot see this machine's pids.
async fn ktplay_in_other_pid_namespace(args: &[String]) -> Output {
    let mut wrapped = tokio::process::Command::new("unshare");
    wrapped
        .args(PIDNS)
        .arg(BIN)
        .args(args)
        .env("TEST_KEY", TEST_KEY)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), wrapped.output())
        .await
        .expect("ktplay finished in time")
        .unwrap();
    assert_no_secrets(&String::from_utf8_lossy(&out.stdout));
    assert_no_secrets(&String::from_utf8_lossy(&out.stderr));
    out
}

/// Runner A is mid-canary and renews its lease. Runner B runs in another PID namespace with the
/// same host name, so A's pid does not exist in B's `/proc`. B — a plain run, then a `--resume`
/// that watches the lease — is refused (exit 3) naming A's holder and lock id, and never takes
/// or deletes a lease: every lease stays A's the whole time (sampled every 50 ms), and A
/// finishes its upgrade (exit 0), lock released, journal `succeeded`.
async fn live_lock_is_never_taken_from_another_pid_namespace(backend: Backend) {
    if !other_pid_namespace_works() {
        eprintln!(
            "\n!!!!! SKIPPED: live_lock_is_never_taken_from_another_pid_namespace needs `unshare --user --pid` (user namespaces) !!!!!\n"
        );
        return;
    }
    let s = setup(
        backend,
        "pidns",
        SimConfig::default(),
        &[("for 1s", "for 15s")],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let a = start_until_canary(pb, &kc, c).await;
    let held = lease_holders(c).await;
    assert!(held.len() > 1, "{held:?}");
    let a_holder = held[0].1.clone();
    assert!(
        held.iter().all(|(_, h)| *h == a_holder) && a_holder.contains(" pid "),
        "{held:?}"
    );
    // Every holder any lease has while B runs.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let sampler = {
        let (api, seen): (kube::Api<k8s_openapi::api::coordination::v1::Lease>, _) =
            (kube::Api::namespaced(c.client(), &c.ns), seen.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(list) = api.list(&Default::default()).await {
                    for l in list.items {
                        let h = l.spec.and_then(|s| s.holder_identity).unwrap_or_default();
                        seen.lock().unwrap().insert(h);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let b = ktplay_in_other_pid_namespace(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(b.status.code(), Some(3), "B: {}", text(&b));
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(
        err.contains("did not finish, and its lock is held by")
            && err.contains(&a_holder)
            && err.contains(&format!("lock id {}/ktplay-upgrade/", c.ns))
            && err.contains("--resume"),
        "B: {}",
        text(&b)
    );
    assert_eq!(lease_holders(c).await, held, "B changed a lease");
    let b =
        ktplay_in_other_pid_namespace(&run_args(pb, &kc, "staging", c, &["--approve", "--resume"]))
            .await;
    assert_eq!(b.status.code(), Some(3), "B --resume: {}", text(&b));
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(
        err.contains("renewed the lease") && err.contains(&a_holder),
        "B --resume: {}",
        text(&b)
    );
    assert_eq!(lease_holders(c).await, held, "B --resume changed a lease");
    sampler.abort();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        std::collections::BTreeSet::from([a_holder.clone()]),
        "a lease changed hands while A ran"
    );
    let a = tokio::time::timeout(Duration::from_secs(120), a.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status.code(), Some(0), "A: {}", text(&a));
    for (d, img) in images(c).await {
        if d != "keeptrusts-console-blue" {
            assert!(img.ends_with(":1.5.0"), "{d}: {img}");
        }
    }
    assert!(c
        .get("deployments", "keeptrusts-gateway-canary")
        .await
        .is_none());
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "succeeded");
}

/// Start a run, SIGKILL it mid-canary; the journal says `running`.
async fn killed_mid_canary(pb: &Path, kc: &Path, c: &TestCluster) {
    let mut child = start_until_canary(pb, kc, c).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    assert_eq!(journal_status(c).await, "running");
}

/// The journal ConfigMap's `data`.
async fn journal_data(c: &TestCluster) -> serde_json::Map<String, Value> {
    journal_cm(c).await.expect("a journal")["data"]
        .as_object()
        .cloned()
        .unwrap()
}

/// Replace the journal ConfigMap's `data` (what a hand edit, damage or another tool does).
async fn set_journal_data(c: &TestCluster, data: &serde_json::Map<String, Value>) {
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(c.client(), &c.ns);
    let name = journal_cm(c).await.unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let mut cm = api.get(&name).await.unwrap();
    cm.data = Some(
        data.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
    );
    api.replace(&name, &Default::default(), &cm).await.unwrap();
}

/// The journal of a killed run is hostile input to `--resume`. A record naming component 99,
/// an unreadable line, and another playbook's journal under this playbook's key are each
/// refused (exit 3) with words naming the line or the owner — no panic, no lease taken, the
/// journal not rewritten (still `running`, byte for byte); `status` reports the unreadable line.
/// Put back as ktplay wrote it, the journal resumes to the end.
async fn untrusted_journal_is_never_resumed(backend: Backend) {
    let s = setup(
        backend,
        "journaltrust",
        SimConfig::default(),
        &[("for 1s", "for 4s")],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    killed_mid_canary(pb, &kc, c).await;
    let original = journal_data(c).await;
    let leases = lease_holders(c).await;
    let events = original["events"].as_str().unwrap().to_string();
    let resume = run_args(pb, &kc, "staging", c, &["--approve", "--resume"]);

    // A record naming component 99 (the canary's start, whose record --resume reuses).
    let comp99: Vec<String> = events
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if v["event"] == "start" && v["record"]["kind"] == "canary" {
                v["record"]["comp"] = 99.into();
            }
            v.to_string()
        })
        .collect();
    assert_ne!(
        comp99.join("\n"),
        events,
        "the journal has the canary's start"
    );
    // A line cut short (damage), in the middle.
    let mut cut: Vec<String> = events.lines().map(String::from).collect();
    cut.insert(
        2,
        r#"{"time":"t","run":"x","event":"start","stage":"#.into(),
    );
    let cut_line = 3;
    let cases: Vec<(&str, serde_json::Map<String, Value>, String)> = vec![
        (
            "component 99",
            {
                let mut d = original.clone();
                d.insert("events".into(), comp99.join("\n").into());
                d
            },
            "names component 99, and the playbook has 4 components".into(),
        ),
        (
            "a cut line",
            {
                let mut d = original.clone();
                d.insert("events".into(), cut.join("\n").into());
                d
            },
            format!("line {cut_line} of the journal `ktplay-journal-"),
        ),
        (
            "another playbook's journal",
            {
                let mut d = original.clone();
                d.insert("playbook".into(), "another".into());
                d.insert("digest".into(), "f".repeat(64).into());
                d
            },
            "belongs to playbook `another`".into(),
        ),
    ];
    for (what, data, want) in &cases {
        set_journal_data(c, data).await;
        let out = ktplay(&resume).await;
        let all = text(&out);
        assert_eq!(out.status.code(), Some(3), "{what}: {all}");
        assert!(
            all.contains(want.as_str()),
            "{what}: `{want}` missing: {all}"
        );
        assert!(!all.contains("panicked"), "{what}: {all}");
        assert_eq!(
            &journal_data(c).await,
            data,
            "{what}: the journal was rewritten"
        );
        assert_eq!(lease_holders(c).await, leases, "{what}: a lease was taken");
    }
    // A fresh run does not overwrite another playbook's journal either.
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("belongs to playbook `another`"),
        "{}",
        text(&out)
    );
    assert_eq!(&journal_data(c).await, &cases[2].1);
    // `status` reports an unreadable line instead of skipping it.
    set_journal_data(c, &cases[1].1).await;
    let status = ktplay(&[
        "status".into(),
        pb.display().to_string(),
        "--env=staging".into(),
        format!("--kubeconfig={}", kc.display()),
    ])
    .await;
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(&format!(
            "line {cut_line} of the events is not an event ktplay knows"
        )),
        "{}",
        text(&status)
    );
    // As ktplay wrote it, the interrupted run is still resumable and finishes.
    set_journal_data(c, &original).await;
    let out = ktplay(&resume).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (d, img) in images(c).await {
        if d != "keeptrusts-console-blue" {
            assert!(img.ends_with(":1.5.0"), "{d}: {img}");
        }
    }
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "succeeded");
}

/// Replace the first container's image of a deployment by hand (as `kubectl set image` does).
async fn hand_set_image(c: &TestCluster, deploy: &str, image: &str) {
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(c.client(), &c.ns);
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}
    ]))
    .unwrap();
    api.patch(
        deploy,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Json::<()>(patch),
    )
    .await
    .unwrap();
    c.settled().await;
}

/// While a killed run waits for `--resume`, the console Service's selector is set to a colour
/// that does not exist, then a worker (a component the run had not touched) is hand-edited to
/// 1.4.1. Each `--resume` is refused (exit 3) — the colour, then drift naming the worker — and
/// neither rewrites the journal's `running`, so the run stays resumable; the hand edit is not
/// overwritten. Put back, `--resume` finishes the upgrade.
async fn resume_checks_drift_and_stays_resumable(backend: Backend) {
    let s = setup(
        backend,
        "resumedrift",
        SimConfig::default(),
        &[("for 1s", "for 4s")],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    killed_mid_canary(pb, &kc, c).await;
    let resume = run_args(pb, &kc, "staging", c, &["--approve", "--resume"]);
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(c.client(), &c.ns);
    let select = |colour: &str| {
        kube::api::Patch::Merge(serde_json::json!({"spec": {"selector": {"version": colour}}}))
    };
    services
        .patch(
            "keeptrusts-console",
            &kube::api::PatchParams::default(),
            &select("purple"),
        )
        .await
        .unwrap();
    let out = ktplay(&resume).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("purple"), "{}", text(&out));
    assert_eq!(journal_status(c).await, "running", "{}", text(&out));
    services
        .patch(
            "keeptrusts-console",
            &kube::api::PatchParams::default(),
            &select("blue"),
        )
        .await
        .unwrap();

    hand_set_image(c, "worker-config", "keeptrusts/worker:1.4.1").await;
    let out = ktplay(&resume).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("drift: workers runs {1.4.0, 1.4.1} but the playbook says from 1.4.0")
            && err.contains("--accept-drift"),
        "{}",
        text(&out)
    );
    assert_eq!(journal_status(c).await, "running");
    assert_eq!(c.image("worker-config").await, "keeptrusts/worker:1.4.1");
    assert_eq!(c.image("worker-export").await, "keeptrusts/worker:1.4.0");
    hand_set_image(c, "worker-config", "keeptrusts/worker:1.4.0").await;

    let out = ktplay(&resume).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (d, img) in images(c).await {
        if d != "keeptrusts-console-blue" {
            assert!(img.ends_with(":1.5.0"), "{d}: {img}");
        }
    }
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "succeeded");
}

/// A Lease `ktplay-upgrade` someone else wrote: a holder with terminal escapes and a bell, a
/// 3600 s duration, never renewed. `run` is refused (exit 3), `status` shows it, `unlock
/// --force` refuses (exit 3): each says what it observed (taken when, never renewed, lasts
/// 3600 s, expires when) with the holder escaped — no escape byte reaches the terminal, and
/// nothing claims the holder "renews" or to "wait 15 s". The lease is left as it was, nothing
/// else is written.
async fn hostile_lease_contents_are_escaped(backend: Backend) {
    let s = setup(backend, "hostilelease", SimConfig::default(), &[], |_| {}).await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let holder = "mallory\u{1b}[2J\u{1b}[H\u{7}@ci pid 4242 run r1";
    let t = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let lease: k8s_openapi::api::coordination::v1::Lease =
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ktplay-upgrade"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 3600,
                     "acquireTime": t, "renewTime": t}
        }))
        .unwrap();
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(c.client(), &c.ns);
    let before = api.create(&Default::default(), &lease).await.unwrap();
    let clean = |o: &Output, what: &str| {
        let all = text(o);
        assert!(
            !all.contains('\u{1b}') && !all.contains('\u{7}'),
            "{what}: raw escapes printed: {all:?}"
        );
        assert!(
            all.contains("mallory\\e[2J\\e[H\\u{7}@ci pid 4242 run r1"),
            "{what}: the holder, escaped: {all}"
        );
        assert!(
            all.contains("never renewed since") && all.contains("lasts 3600 s"),
            "{what}: what was observed: {all}"
        );
        assert!(
            !all.contains("renews its lease") && !all.contains("wait 15"),
            "{what}: {all}"
        );
        all
    };
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    clean(&out, "run");
    let status = ktplay(&[
        "status".into(),
        pb.display().to_string(),
        "--env=staging".into(),
        format!("--kubeconfig={}", kc.display()),
    ])
    .await;
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    clean(&status, "status");
    let unlock = ktplay(&[
        "unlock".into(),
        "--force".into(),
        format!("{}/ktplay-upgrade/r1", c.ns),
        format!("--kubeconfig={}", kc.display()),
    ])
    .await;
    assert_eq!(unlock.status.code(), Some(3), "{}", text(&unlock));
    let all = clean(&unlock, "unlock --force");
    assert!(all.contains("nothing removed"), "{all}");
    let after = api.get("ktplay-upgrade").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the lease was changed"
    );
    assert_eq!(lease_holders(c).await.len(), 1, "no other lease was taken");
    assert!(journal_cm(c).await.is_none());
    assert!(patches(c, "keeptrusts-api").is_empty());
    c.settled().await;
    assert_all_at_from(c).await;
}

/// 20% of every API request from the first one answers 500 — the permission checks, the journal
/// read, the lock, the run: every request goes through the same retry policy, and the upgrade
/// completes as if nothing happened (all at `to`, lock released, journal `succeeded`).
async fn api_errors_before_the_run_are_retried(backend: Backend) {
    let s = setup(backend, "apierrfirst", SimConfig::default(), &[], |_| {}).await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    c.set_api_errors(0.2);
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    c.set_api_errors(0.0);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The permission checks are one SelfSubjectRulesReview where the rules grant everything
    // (the real API server: issue 23), else one access review per permission (the simulator,
    // where a 500 on one of 18 is all but certain). Either is retried like every request; the
    // run could not succeed otherwise.
    let reviews = count(c, "POST", "/selfsubjectaccessreviews", 500)
        + count(c, "POST", "/selfsubjectrulesreviews", 500);
    let errors = count(c, "GET", "", 500)
        + count(c, "PATCH", "", 500)
        + count(c, "POST", "", 500)
        + count(c, "PUT", "", 500);
    assert!(errors > 5, "the fault was felt: {errors} errors");
    if backend == Backend::Sim {
        assert!(reviews > 0, "a permission check met an error");
    }
    for (d, img) in images(c).await {
        if d != "keeptrusts-console-blue" {
            assert!(img.ends_with(":1.5.0"), "{d}: {img}");
        }
    }
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "succeeded");
}

/// `ktplay rehearse --fault api-errors:10%` of a playbook: every rehearsal passes (at 5%, 9 of 11
/// failed when the requests before the run were not retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearsals_survive_api_errors() {
    for n in 0..4 {
        let out = ktplay(&[
            "rehearse".into(),
            case("upgrade.ktplay").display().to_string(),
            "--env=staging".into(),
            "--approve".into(),
            "--pace=0s".into(),
            "--max-wait=200ms".into(),
            "--fault=api-errors:10%".into(),
        ])
        .await;
        assert_eq!(out.status.code(), Some(0), "rehearsal {n}: {}", text(&out));
    }
}

async fn production_waits_for_staging(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (sns, pns) = (support::namespace("stage"), support::namespace("prod"));
    // One playbook, the two envs in their own namespaces.
    let pb = copy_case(
        dir.path(),
        "upgrade.ktplay",
        &sns,
        &[
            ("context \"staging\"", "context \"staging\""),
            (
                "context \"prod\"",
                &format!("context \"prod\"\n    namespace \"{pns}\""),
            ),
        ],
    );
    let staging = TestCluster::new(backend, SimConfig::default(), &seed(&pb, &sns, |_| {})).await;
    let prod = TestCluster::new(backend, SimConfig::default(), &seed(&pb, &pns, |_| {})).await;
    let kc = kubeconfig(dir.path(), &[("staging", &staging), ("prod", &prod)]);
    let out = ktplay(&run_args(&pb, &kc, "production", &prod, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no successful run"),
        "{}",
        text(&out)
    );
    assert!(patches(&prod, "keeptrusts-api").is_empty());
    assert_unlocked(&prod).await;
    let out = ktplay(&run_args(&pb, &kc, "staging", &staging, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = ktplay(&run_args(&pb, &kc, "production", &prod, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(prod.image("keeptrusts-api").await.ends_with(":1.5.0"));
    assert_unlocked(&prod).await;
    assert_eq!(journal_status(&prod).await, "succeeded");
}

/// The promotion gate where the kubeconfig's contexts are not the envs' (`ktplay sim serve`
/// writes one context, `sim`): `--context` chooses production's cluster only, so the staging
/// journal cannot be read through the staging env's `context "staging"`, and the refusal says
/// how to name another (`--after-context staging=…`) instead of "pass `--context sim`", which was
/// passed. With `--after-context`, the gate is checked there: refused before staging ran green,
/// passed after.
async fn promotion_gate_with_other_context_names(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (sns, pns) = (support::namespace("gstage"), support::namespace("gprod"));
    let pb = copy_case(
        dir.path(),
        "upgrade.ktplay",
        &sns,
        &[(
            "context \"prod\"",
            &format!("context \"prod\"\n    namespace \"{pns}\""),
        )],
    );
    let staging = TestCluster::new(backend, SimConfig::default(), &seed(&pb, &sns, |_| {})).await;
    let prod = TestCluster::new(backend, SimConfig::default(), &seed(&pb, &pns, |_| {})).await;
    // Neither `staging` nor `prod` is a context here.
    let kc = kubeconfig(dir.path(), &[("sim", &prod), ("sim-staging", &staging)]);
    let out = ktplay(&run_args(
        &pb,
        &kc,
        "production",
        &prod,
        &["--approve", "--context=sim"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("pass `--context sim`"), "{}", text(&out));
    assert!(err.contains("has no context `staging`"), "{}", text(&out));
    assert!(
        err.contains("--after-context staging=CONTEXT"),
        "{}",
        text(&out)
    );
    // Named: the gate is checked there, and nothing ran green on staging yet.
    let gated = [
        "--approve",
        "--context=sim",
        "--after-context=staging=sim-staging",
    ];
    let out = ktplay(&run_args(&pb, &kc, "production", &prod, &gated)).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no successful run"),
        "{}",
        text(&out)
    );
    assert!(patches(&prod, "keeptrusts-api").is_empty());
    assert_unlocked(&prod).await;
    // A bad --after-context is a usage error before anything.
    let out = ktplay(&run_args(
        &pb,
        &kc,
        "production",
        &prod,
        &["--approve", "--context=sim", "--after-context=qa=sim"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not come after `qa`"),
        "{}",
        text(&out)
    );
    // Green on staging (its cluster by --context), then production passes the gate.
    let out = ktplay(&run_args(
        &pb,
        &kc,
        "staging",
        &staging,
        &["--approve", "--context=sim-staging"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = ktplay(&run_args(&pb, &kc, "production", &prod, &gated)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for d in [
        "keeptrusts-api",
        "keeptrusts-gateway",
        "worker-export",
        "worker-lifecycle",
        "worker-config",
    ] {
        assert!(prod.image(d).await.ends_with(":1.5.0"), "{d}");
        assert!(staging.image(d).await.ends_with(":1.5.0"), "{d}");
    }
    assert_unlocked(&prod).await;
    assert_unlocked(&staging).await;
    assert_eq!(journal_status(&prod).await, "succeeded");
    assert_eq!(journal_status(&staging).await, "succeeded");
}

async fn drift_and_missing_approval_are_refused_before_any_action(backend: Backend) {
    let s = setup(backend, "drift", SimConfig::default(), &[], |seed| {
        seed.components[0].version = "1.4.1".parse().unwrap();
    })
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("drift: api runs {1.4.1}"), "{}", text(&out));
    // No terminal and no --approve: refused, never a silent yes.
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--accept-drift"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--approve"),
        "{}",
        text(&out)
    );
    let writes = c
        .request_log()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/deployments/"))
        .count();
    assert_eq!(writes, 0);
    assert_unlocked(c).await;
    // With --accept-drift the run starts from the live versions.
    let out = ktplay(&run_args(
        pb,
        &kc,
        "staging",
        c,
        &["--approve", "--accept-drift"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_unlocked(c).await;
}

/// The gateway's Deployment names its container `gateway-main`; the playbook's component says
/// nothing, so it means `gateway`. Refused before any action, naming the containers, even with
/// `--accept-drift`: a patch must never add a container.
async fn wrong_container_is_refused_before_any_action(backend: Backend) {
    let s = setup(backend, "container", SimConfig::default(), &[], |seed| {
        let gw = seed
            .components
            .iter_mut()
            .find(|c| c.name == "gateway")
            .unwrap();
        gw.container = "gateway-main".into();
    })
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    for extra in [&["--approve"][..], &["--approve", "--accept-drift"][..]] {
        let out = ktplay(&run_args(pb, &kc, "staging", c, extra)).await;
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no container `gateway`") && err.contains("gateway-main"),
            "{}",
            text(&out)
        );
    }
    assert_eq!(
        c.request_log()
            .iter()
            .filter(|r| r.method != "GET" && !r.path.contains("/selfsubject"))
            .count(),
        0,
        "nothing was written"
    );
    let gw = c.get("deployments", "keeptrusts-gateway").await.unwrap();
    let cs = gw["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0]["image"], "keeptrusts/gateway:1.4.1");
    assert_unlocked(c).await;
    assert!(journal_cm(c).await.is_none());
}

/// A user who may read everything but write neither Deployments nor ConfigMaps: the run is
/// refused before any action (exit 3) naming the verbs, resources and namespace, and leaves no
/// lock and no journal behind.
async fn missing_permissions_are_refused_before_any_action(backend: Backend) {
    let mut config = SimConfig::default();
    let s;
    let kc;
    match backend {
        Backend::Sim => {
            for f in [
                "deny:patch:apps/deployments",
                "deny:create:configmaps",
                "deny:patch:configmaps",
            ] {
                config.faults.add(f.parse().unwrap());
            }
            s = setup(backend, "rbac", config, &[], |_| {}).await;
            kc = kubeconfig(s.dir.path(), &[("staging", &s.c)]);
        }
        Backend::Real => {
            s = setup(backend, "rbac", config, &[], |_| {}).await;
            let token = support::read_only_token(&s.c, "reader").await;
            kc = s.c.real_access().unwrap().kubeconfig_with_token(
                s.dir.path(),
                "staging",
                &token,
                &s.c.ns,
            );
        }
    }
    let (pb, c) = (&s.pb, &s.c);
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "patch deployments.apps",
        "create configmaps",
        "patch configmaps",
        &format!("namespace `{}`", c.ns),
    ] {
        assert!(err.contains(want), "`{want}` missing: {}", text(&out));
    }
    assert!(!err.contains("Status {"), "{}", text(&out));
    c.settled().await;
    assert_all_at_from(c).await;
    assert_unlocked(c).await;
    assert!(journal_cm(c).await.is_none(), "no journal is left behind");
}

/// Pod templates of ~180 KB each (two big env values): the journal records what it restores (an
/// image per container, a revision, a selector), never whole templates, so it stays small and
/// every write succeeds; a failed run still restores everything.
async fn large_pod_templates_keep_the_journal_small(backend: Backend) {
    let mut config = SimConfig::default();
    config.faults.add(Fault::PolicyOff {
        version: "1.5.0".parse().unwrap(),
    });
    // Two values of 90 KiB: one environment string may not exceed 128 KiB (Linux's
    // MAX_ARG_STRLEN), so a container with a 180 KiB value never starts (on the data path
    // its process cannot be started either).
    let s = setup_following(backend, "bigtemplate", config, |seed| {
        seed.pod_env = vec![
            ("BIG".into(), "x".repeat(90 * 1024)),
            ("BIG2".into(), "x".repeat(90 * 1024)),
        ];
    })
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("could not write the journal"),
        "{}",
        text(&out)
    );
    c.settled().await;
    assert_all_at_from(c).await;
    assert_unlocked(c).await;
    let cm = journal_cm(c).await.unwrap();
    assert_eq!(cm["data"]["status"], "rolled_back");
    let size: usize = cm["data"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap_or_default().len())
        .sum();
    assert!(size < 64 * 1024, "journal of {size} bytes");
}

/// 50 runs in a row of one playbook: each writes a whole journal, the ConfigMap keeps only the
/// latest run (plus the last success), so its size stays flat; the lock is free after each.
async fn journal_stays_small_over_many_runs(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace("soak");
    let pb = copy_case(dir.path(), "soak.ktplay", &ns, &[]);
    let c = TestCluster::new(backend, SimConfig::default(), &seed(&pb, &ns, |_| {})).await;
    let kc = kubeconfig(dir.path(), &[("staging", &c)]);
    let args = vec![
        "run".to_string(),
        pb.display().to_string(),
        "--env=staging".into(),
        format!("--kubeconfig={}", kc.display()),
    ];
    let mut sizes = Vec::new();
    for i in 0..50 {
        let out = ktplay(&args).await;
        assert_eq!(out.status.code(), Some(0), "run {}: {}", i + 1, text(&out));
        let cm = journal_cm(&c).await.unwrap();
        assert_eq!(cm["data"]["status"], "succeeded");
        sizes.push(
            cm["data"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_str().unwrap_or_default().len())
                .sum::<usize>(),
        );
        assert_unlocked(&c).await;
    }
    eprintln!(
        "journal bytes after runs 1, 10, 50 ({backend:?}): {}, {}, {}",
        sizes[0], sizes[9], sizes[49]
    );
    assert!(
        sizes[49] <= sizes[0] + 256 && sizes[49] < 16 * 1024,
        "the journal grows: {sizes:?}"
    );
    assert_eq!(c.image("keeptrusts-api").await, "keeptrusts/api:1.4.2");
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
        // 1s, not less: a canary's metric guards must see data before it ends, and the
        // simulator's traffic ticks every 250 ms (a rate needs two samples).
        let out = ktplay(&[
            "rehearse".into(),
            f.display().to_string(),
            "--env=staging".into(),
            "--approve".into(),
            "--pace=0s".into(),
            "--max-wait=1s".into(),
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

/// Watches that answer 410 on every try re-list with back-off: the run costs at most 3× the
/// requests of a clean one (it cost 60× before: a re-list storm).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_watches_relist_with_back_off() {
    let mut counts = Vec::new();
    for fault in [None, Some(Fault::WatchExpired)] {
        let mut config = SimConfig::default();
        if let Some(f) = fault {
            config.faults.add(f);
        }
        let s = setup(Backend::Sim, "watchexpired", config, &[], |_| {}).await;
        let (pb, c) = (&s.pb, &s.c);
        let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
        let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        counts.push(c.request_log().len());
    }
    eprintln!("requests: clean {}, watch-expired {}", counts[0], counts[1]);
    assert!(
        counts[1] <= 3 * counts[0],
        "clean {} vs watch-expired {}",
        counts[0],
        counts[1]
    );
}

/// A rehearsal never leaves this machine: an unrouted, non-loopback URL in a hook or a guard is
/// refused with a message naming the host, the stage fails and rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearsal_never_leaves_loopback() {
    let out = ktplay(&[
        "rehearse".into(),
        case("leaves-loopback.ktplay").display().to_string(),
        "--env=staging".into(),
        "--pace=0s".into(),
    ])
    .await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("a rehearsal never leaves this machine, and `status.example.org` is not routed to the simulator"),
        "{all}"
    );
    assert!(
        all.contains("its requests are refused"),
        "the note says so up front: {all}"
    );
    assert!(all.contains("rolled back: api {1.4.2}"), "{all}");
}

/// Benchmark (run with `cargo test --test run_e2e -- --ignored --nocapture`): from the moment
/// the simulator sets `ProgressDeadlineExceeded` on the api deployment to ktplay's first rollback
/// request (the JSON patch restoring the api's image). Target: under 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_fault_to_first_rollback_request() {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let s = setup(
            Backend::Sim,
            "bench",
            SimConfig::default(),
            &[("to 1.5.0\n    migrations", "to 1.5.0-bad\n    migrations")],
            |_| {},
        )
        .await;
        let (pb, c) = (&s.pb, &s.c);
        let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
        let child = command(&run_args(pb, &kc, "staging", c, &["--approve"]))
            .spawn()
            .unwrap();
        let mut visible = None;
        let start = Instant::now();
        while visible.is_none() && start.elapsed() < Duration::from_secs(30) {
            let d = c.get("deployments", "keeptrusts-api").await.unwrap();
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
        let restore = patches(c, "keeptrusts-api")[1];
        let first = c
            .request_log()
            .into_iter()
            .find(|r| r.seq == restore)
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

/// A fake Prometheus on loopback answering every query with `value` (`""`: an empty vector, no
/// data); returns its URL and how many queries it got.
async fn fake_prometheus(
    value: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::post(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            let result = if value.is_empty() {
                serde_json::json!([])
            } else {
                serde_json::json!([{"metric": {}, "value": [1700000000.0, value]}])
            };
            async move {
                axum::Json(serde_json::json!({
                    "status": "success",
                    "data": {"resultType": "vector", "result": result}
                }))
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), n)
}

/// A canary no request reaches (Prometheus has no series of the new version) used to pass with
/// `no_data pass`; now a canary must have data: it fails at its end, naming the query, and
/// everything rolls back.
async fn canary_never_seen_serving_fails_at_its_end(backend: Backend) {
    let (prom, asked) = fake_prometheus("").await;
    let canary = format!(
        "canary gateway weight 10% for 3s {{\n      guard metric \"{prom}\" {{ query \"sum(rate(http_requests_total{{version=\\\"${{gateway.to}}\\\"}}[1s]))\" above 0 no_data pass }}"
    );
    let s = setup(
        backend,
        "canarynodata",
        SimConfig::default(),
        &[("canary gateway weight 10% for 1s {", &canary)],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("had data, so the canary was never seen serving"),
        "{all}"
    );
    assert!(
        all.contains("version=\"1.5.0\""),
        "the query is named: {all}"
    );
    assert!(
        asked.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "evaluated throughout the canary"
    );
    c.settled().await;
    assert_all_at_from(c).await;
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "rolled_back");
}

/// A canary's time is its time: `for 4s` with a guard `every 1s for 4s` evaluates four times
/// inside the canary's four seconds (it used to run the whole `for` in each of two rounds:
/// eight evaluations, eight seconds), then promotes.
async fn canary_evaluations_stay_inside_its_time(backend: Backend) {
    let (prom, asked) = fake_prometheus("0").await;
    let canary = format!(
        "canary gateway weight 10% for 4s {{\n      guard metric \"{prom}\" {{ query \"sum(up)\" below 1 every 1s for 4s }}"
    );
    let s = setup(
        backend,
        "canarytime",
        SimConfig::default(),
        &[("canary gateway weight 10% for 1s {", &canary)],
        |_| {},
    )
    .await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let out = ktplay(&run_args(pb, &kc, "staging", c, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let n = asked.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (4..=5).contains(&n),
        "{n} evaluations in a 4 s canary: {}",
        text(&out)
    );
    c.settled().await;
    let gw = c.image("keeptrusts-gateway").await;
    assert_eq!(gw, "keeptrusts/gateway:1.5.0");
    assert!(c
        .get("deployments", "keeptrusts-gateway-canary")
        .await
        .is_none());
    assert_unlocked(c).await;
    assert_eq!(journal_status(c).await, "succeeded");
}

/// Requests of the seed upgrade (`bench/requests.sh` runs it on the real control plane; it runs
/// on the simulator when no real cluster is configured): every request ktplay sent through the
/// recording proxy, by method and resource, with ktplay's CPU and wall time; then the bare
/// client's on a second seeded namespace — one PATCH and one watch per deployment the upgrade
/// changes, and the Service's PATCH — through a recording proxy of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_seed_requests() {
    use kube::api::{Api, Patch, PatchParams, WatchEvent, WatchParams};
    let backend = if support::real_kubeconfig().is_some() {
        Backend::Real
    } else {
        Backend::Sim
    };
    let s = setup(backend, "bench-seed", SimConfig::default(), &[], |_| {}).await;
    let (pb, c) = (&s.pb, &s.c);
    let kc = kubeconfig(s.dir.path(), &[("staging", c)]);
    let before = c.request_log().len();
    let out = tokio::process::Command::new("/usr/bin/time")
        .args(["-f", "BENCHTIME %U %S %e", BIN])
        .args(run_args(pb, &kc, "staging", c, &["--approve"]))
        .env("TEST_KEY", TEST_KEY)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let time = err
        .lines()
        .find_map(|l| l.strip_prefix("BENCHTIME "))
        .unwrap_or("? ? ?")
        .to_string();
    let log = c.request_log()[before..].to_vec();
    if std::env::var_os("BENCH_LOG").is_some() {
        for r in &log {
            println!("LOG {} {} {}", r.time, r.method, r.path);
        }
    }
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &log {
        let path = r.path.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.split('/').collect();
        // /api/v1/namespaces/NS/KIND[/NAME[/SUB]] or /apis/G/V/namespaces/NS/KIND[/NAME[/SUB]]
        let kind = match parts.iter().position(|p| *p == "namespaces") {
            Some(i) if parts.len() > i + 2 => parts[i + 2..]
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != 1)
                .map(|(_, p)| *p)
                .collect::<Vec<_>>()
                .join("/"),
            _ => parts.last().copied().unwrap_or_default().to_string(),
        };
        let watch = r.path.contains("watch=true") || r.path.contains("watch=1");
        let verb = if watch { "WATCH" } else { r.method.as_str() };
        *by.entry(format!("{verb} {kind}")).or_default() += 1;
    }
    let (u, sys, wall) = {
        let t: Vec<f64> = time
            .split(' ')
            .map(|x| x.parse().unwrap_or(f64::NAN))
            .collect();
        (t[0], t[1], t[2])
    };
    println!(
        "BENCH seed backend={backend:?} requests={} cpu_s={:.2} wall_s={wall:.2}",
        log.len(),
        u + sys
    );
    for (k, n) in &by {
        println!("BENCH seed   {n:5} {k}");
    }

    // The bare client: PATCH + watch per changed deployment, then the console Service's PATCH.
    let b = setup(backend, "bench-bare", SimConfig::default(), &[], |_| {}).await;
    let bkc = kubeconfig(b.dir.path(), &[("bare", &b.c)]);
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&bkc).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let deps: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &b.c.ns);
    let bare_before = b.c.request_log().len();
    let t0 = Instant::now();
    for (d, container, image) in [
        ("keeptrusts-api", "api", "keeptrusts/api:1.5.0"),
        ("keeptrusts-gateway", "gateway", "keeptrusts/gateway:1.5.0"),
        (
            "keeptrusts-console-green",
            "console",
            "keeptrusts/console:1.5.0",
        ),
        ("worker-export", "worker", "keeptrusts/worker:1.5.0"),
        ("worker-lifecycle", "worker", "keeptrusts/worker:1.5.0"),
        ("worker-config", "worker", "keeptrusts/worker:1.5.0"),
    ] {
        let patch = Patch::Strategic(serde_json::json!(
            {"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}}
        ));
        let done = |d: &k8s_openapi::api::apps::v1::Deployment| {
            // kubectl's rollout-complete test
            let v = serde_json::to_value(d).unwrap();
            let n = |k: &str| v["status"][k].as_i64().unwrap_or(0);
            let want = v["spec"]["replicas"].as_i64().unwrap_or(1);
            v["metadata"]["generation"].as_i64().unwrap_or(0) <= n("observedGeneration")
                && n("updatedReplicas") >= want
                && n("replicas") <= n("updatedReplicas")
                && n("availableReplicas") >= n("updatedReplicas")
        };
        let after = deps
            .patch(d, &PatchParams::default(), &patch)
            .await
            .unwrap();
        if done(&after) {
            continue;
        }
        let rv = after.metadata.resource_version.clone().unwrap();
        let wp = WatchParams::default()
            .fields(&format!("metadata.name={d}"))
            .timeout(120);
        let mut stream = Box::pin(deps.watch(&wp, &rv).await.unwrap());
        use futures::StreamExt;
        while let Some(ev) = stream.next().await {
            if let Ok(WatchEvent::Modified(x)) = ev {
                if done(&x) {
                    break;
                }
            }
        }
    }
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client, &b.c.ns);
    svcs.patch(
        "keeptrusts-console",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"selector": {"version": "green"}}})),
    )
    .await
    .unwrap();
    println!(
        "BENCH bare backend={backend:?} requests={} wall_s={:.2}",
        b.c.request_log().len() - bare_before,
        t0.elapsed().as_secs_f64()
    );
}

// Issue 23: requests that grow with the work.
on_both!(
    requests_grow_with_the_work,
    a_paused_runner_loses_objects_taken_through_its_expired_run_lock,
);

/// A playbook of `n` components `c0…`, one `rolling` each to 1.5.1, under one matrix (so every
/// action has its live check), in namespace `ns`.
fn scale_playbook(dir: &Path, ns: &str, name: &str, n: usize, pause: Option<&str>) -> PathBuf {
    let mut t = format!("playbook \"{name}\" {{\n  namespace \"{ns}\"\n  matrix scale\n");
    for j in 0..n {
        t += &format!(
            "  component c{j} {{ deployment \"c{j}\" image \"org/c{j}\" from 1.5.0 to 1.5.1 }}\n"
        );
    }
    if let Some(d) = pause {
        t += &format!("  stage first {{\n    pause {d}\n  }}\n");
    }
    for j in 0..n {
        t += &format!("  stage s{j} {{\n    rolling c{j}\n  }}\n");
    }
    t += "}\n\nmatrix scale {\n  hub c0\n  rule adjacent_minor\n}\n";
    let p = dir.join(format!("{name}.ktplay"));
    std::fs::write(&p, t).unwrap();
    p
}

/// Without a query string.
fn bare_path(r: &ktplay::sim::LoggedRequest) -> &str {
    r.path.split('?').next().unwrap_or_default()
}

/// Ten components, one rolling update each: the checks before each action read the namespace
/// in one LIST of deployments and one of pods (not a GET and a pod LIST per component: 120 pod
/// LISTs before issue 23), and the only Lease renewed is the run lock (the objects' leases are
/// written once, when taken, and held through it). The run succeeds, every deployment ends at
/// 1.5.1, the lock is released and the journal says succeeded.
async fn requests_grow_with_the_work(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace("linear");
    let n = 10;
    let pb = scale_playbook(dir.path(), &ns, "linear", n, None);
    // Generic images (`org/cN`) run no pod process on the data path: the follower answers.
    let c = TestCluster::with_follower(
        backend,
        SimConfig::default(),
        &seed(&pb, &ns, |s| {
            for x in &mut s.components {
                x.replicas = 1;
            }
        }),
    )
    .await;
    let kc = kubeconfig(dir.path(), &[("linear", &c)]);
    let before = c.request_log().len();
    let out = ktplay(&[
        "run".into(),
        pb.display().to_string(),
        format!("--kubeconfig={}", kc.display()),
        "--approve".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for j in 0..n {
        assert_eq!(c.image(&format!("c{j}")).await, format!("org/c{j}:1.5.1"));
    }
    assert_unlocked(&c).await;
    assert_eq!(journal_status(&c).await, "succeeded");
    let log = c.request_log()[before..].to_vec();
    let watch = |r: &ktplay::sim::LoggedRequest| r.path.contains("watch=");
    let pod_lists = log
        .iter()
        .filter(|r| r.method == "GET" && !watch(r) && bare_path(r).ends_with("/pods"))
        .count();
    // Per action: one LIST for the live check; plus the start and the end of the run.
    assert!(
        pod_lists <= n + 2,
        "{pod_lists} pod LISTs for {n} components"
    );
    let deploy_gets = log
        .iter()
        .filter(|r| r.method == "GET" && bare_path(r).contains("/deployments/"))
        .count();
    // Per action, what it changes: read before (its record, the first state, the patch), the
    // rollout's start, and after (how it was left) — never every component's.
    assert!(
        deploy_gets <= 8 * n,
        "{deploy_gets} deployment GETs for {n} components"
    );
    let lease_writes: std::collections::BTreeSet<String> = log
        .iter()
        .filter(|r| r.method == "PUT" && bare_path(r).contains("/leases/"))
        .map(|r| bare_path(r).rsplit('/').next().unwrap().to_string())
        .collect();
    assert!(
        lease_writes.iter().all(|l| l == "ktplay-linear"),
        "leases renewed besides the run lock: {lease_writes:?}"
    );
}

/// Run A (playbook `first`) holds deployment c0 through its run lock, and is paused (SIGSTOP,
/// in its first stage's `pause`, before any change) past its lease. Run B, a playbook of another name changing the same deployments, finds A's
/// run lock expired, takes the objects' leases over and completes. A wakes up, renews its own
/// run lock (nobody took that one), sees at once that its object leases are B's, and stops
/// without a write: exit 5, "lost the run lock".
async fn a_paused_runner_loses_objects_taken_through_its_expired_run_lock(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace("through");
    let pb_a = scale_playbook(dir.path(), &ns, "first", 2, Some("10s"));
    let pb_b = scale_playbook(dir.path(), &ns, "second", 2, None);
    // Generic images (`org/cN`) run no pod process on the data path: the follower answers.
    let c = TestCluster::with_follower(
        backend,
        SimConfig::default(),
        &seed(&pb_a, &ns, |s| {
            for x in &mut s.components {
                x.replicas = 1;
            }
        }),
    )
    .await;
    let kc = kubeconfig(dir.path(), &[("through", &c)]);
    let args = |pb: &Path| {
        vec![
            "run".to_string(),
            pb.display().to_string(),
            format!("--kubeconfig={}", kc.display()),
            "--approve".into(),
        ]
    };
    let a = command(&args(&pb_a)).spawn().unwrap();
    wait_for("A's leases", async || {
        c.get("leases", "ktplay-obj-deploy-c1").await.is_some()
    })
    .await;
    let held = lease_holders(&c).await;
    let obj = held
        .iter()
        .find(|(l, _)| l == "ktplay-obj-deploy-c0")
        .expect("A holds c0's lease")
        .clone();
    // Held through the run lock: its annotation names it.
    let l = c.get("leases", "ktplay-obj-deploy-c0").await.unwrap();
    assert_eq!(
        l["metadata"]["annotations"]["ktplay.dev/run-lock"],
        "ktplay-first"
    );
    // While A renews, B is refused, naming the object and A's run lock.
    let b = ktplay(&args(&pb_b)).await;
    assert_eq!(b.status.code(), Some(3), "B: {}", text(&b));
    assert!(
        String::from_utf8_lossy(&b.stderr).contains("another run would change deployment `c0`")
            && String::from_utf8_lossy(&b.stderr).contains("through its run lock ktplay-first"),
        "B: {}",
        text(&b)
    );
    assert_eq!(lease_holders(&c).await, held, "B changed a lease");
    signal(&a, "-STOP");
    tokio::time::sleep(Duration::from_secs(17)).await; // past A's 15 s run lock
    let b = ktplay(&args(&pb_b)).await;
    let woke = chrono::Utc::now();
    signal(&a, "-CONT");
    let a = tokio::time::timeout(Duration::from_secs(60), a.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.status.code(), Some(0), "B: {}", text(&b));
    assert_eq!(a.status.code(), Some(5), "A: {}", text(&a));
    assert!(
        String::from_utf8_lossy(&a.stdout).contains("lost the run lock"),
        "A: {}",
        text(&a)
    );
    assert_ne!(obj.1, "", "A held c0");
    let writes_after: Vec<String> = c
        .request_log()
        .iter()
        .filter(|r| r.method != "GET")
        .filter(|r| chrono::DateTime::parse_from_rfc3339(&r.time).unwrap() > woke)
        .filter(|r| !bare_path(r).ends_with("/leases/ktplay-first"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        writes_after.is_empty(),
        "A wrote after waking: {writes_after:?}"
    );
    for j in 0..2 {
        assert_eq!(c.image(&format!("c{j}")).await, format!("org/c{j}:1.5.1"));
    }
    // A released its run lock (still its own) and nothing of B's; B released all of its.
    assert_unlocked(&c).await;
    let journals: Vec<String> = c
        .list("configmaps")
        .await
        .iter()
        .filter_map(|cm| cm["metadata"]["name"].as_str().map(String::from))
        .filter(|n| n.starts_with("ktplay-journal-"))
        .collect();
    assert_eq!(journals.len(), 2, "{journals:?}");
}

/// Shipped migration files never change (issue 25): staging's green run records a sha256 per
/// migration file in its journal's `last_success`; production, with a file changed since, is
/// refused before any action (no write, no lease), naming the file and both digests; with the
/// file put back it runs.
async fn modified_shipped_migration_is_refused_in_production(backend: Backend) {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    let users = "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n";
    let nick = "ALTER TABLE users ADD COLUMN nick text;\n";
    std::fs::write(db.join("V1_4_0__users.sql"), users).unwrap();
    std::fs::write(db.join("V1_5_0__nick.sql"), nick).unwrap();
    let (sns, pns) = (support::namespace("mstage"), support::namespace("mprod"));
    let pb = copy_case(
        dir.path(),
        "upgrade.ktplay",
        &sns,
        &[
            (
                "migrations backward_compatible    #",
                "migrations backward_compatible { files \"db\" }    #",
            ),
            (
                "context \"prod\"",
                &format!("context \"prod\"\n    namespace \"{pns}\""),
            ),
        ],
    );
    let staging = TestCluster::new(backend, SimConfig::default(), &seed(&pb, &sns, |_| {})).await;
    let prod = TestCluster::new(backend, SimConfig::default(), &seed(&pb, &pns, |_| {})).await;
    let kc = kubeconfig(dir.path(), &[("staging", &staging), ("prod", &prod)]);
    let out = ktplay(&run_args(&pb, &kc, "staging", &staging, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let sha = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    let cm = journal_cm(&staging).await.expect("the staging journal");
    let last: Value =
        serde_json::from_str(cm["data"]["last_success"].as_str().expect("last_success")).unwrap();
    assert_eq!(
        last["migrations"]["api:db/V1_4_0__users.sql"],
        sha(users),
        "{last}"
    );
    assert_eq!(
        last["migrations"]["api:db/V1_5_0__nick.sql"],
        sha(nick),
        "{last}"
    );

    // The shipped file changed after staging ran it.
    let changed = "ALTER TABLE users ADD COLUMN nick text NOT NULL DEFAULT '';\n";
    std::fs::write(db.join("V1_5_0__nick.sql"), changed).unwrap();
    let out = ktplay(&run_args(&pb, &kc, "production", &prod, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the migration `db/V1_5_0__nick.sql` of api changed: sha256 {} then, {} now since the green run on `staging`",
            sha(nick),
            sha(changed)
        )),
        "{}",
        text(&out)
    );
    assert!(patches(&prod, "keeptrusts-api").is_empty());
    assert_unlocked(&prod).await;
    assert!(
        journal_cm(&prod).await.is_none(),
        "a refused run writes no journal"
    );

    // Put back as shipped: production runs.
    std::fs::write(db.join("V1_5_0__nick.sql"), nick).unwrap();
    let out = ktplay(&run_args(&pb, &kc, "production", &prod, &["--approve"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(journal_status(&prod).await, "succeeded");
    assert_unlocked(&prod).await;
}
