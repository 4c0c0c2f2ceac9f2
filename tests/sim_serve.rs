//! `ktplay sim serve` as a new user meets it: the default seed is the shipped playbook at its
//! `from` versions, the printed `ktplay run` command (kubeconfig, context, every `--route`) runs
//! the seed playbook against it to the end, and the env's own context gets a clear error.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Serve {
    child: Child,
    lines: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `ktplay sim serve ARGS` and read its stdout up to the run command's block.
fn serve(args: &[&str]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ktplay"))
        .current_dir(root())
        .args(["sim", "serve"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("sim serve printed no run command: {lines:#?}"));
        let done = line.contains("pass --seed PLAYBOOK") || line.starts_with("  with the secrets");
        lines.push(line);
        if done {
            break;
        }
    }
    Serve { child, lines }
}

impl Serve {
    /// The printed `ktplay run …` words.
    fn command(&self) -> Vec<String> {
        let i = self
            .lines
            .iter()
            .position(|l| l == "run it against this simulator:")
            .expect("the run command's header");
        self.lines[i + 1]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    fn api(&self) -> String {
        self.lines[0]
            .strip_prefix("simulated Kubernetes API: ")
            .unwrap()
            .to_string()
    }
}

fn value_after(words: &[String], flag: &str) -> Vec<String> {
    words
        .windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].clone())
        .collect()
}

fn ktplay(words: &[String]) -> Command {
    assert_eq!(words[0], "ktplay");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ktplay"));
    cmd.current_dir(root())
        .args(&words[1..])
        .env("NO_COLOR", "1")
        .env("TEST_KEY", "sim-test-key-1234")
        .env("ADMIN_TOKEN", "sim-admin-token-1234");
    cmd
}

#[test]
fn the_default_seed_is_the_shipped_playbook_and_the_command_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("sim.kubeconfig");
    let s = serve(&["--kubeconfig", kc.to_str().unwrap()]);
    let words = s.command();
    assert_eq!(
        &words[..5],
        [
            "ktplay",
            "run",
            "playbooks/keeptrusts-1.5.ktplay",
            "--env",
            "staging"
        ]
    );
    assert_eq!(
        value_after(&words, "--kubeconfig"),
        [kc.display().to_string()]
    );
    assert_eq!(value_after(&words, "--context"), ["sim"]);
    // A route for every host the staging env's URLs name (both colours of the console).
    let mut hosts: Vec<String> = value_after(&words, "--route")
        .iter()
        .map(|r| r.split('=').next().unwrap().to_string())
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        [
            "api.staging.example.com",
            "console-blue.staging.internal",
            "console-green.staging.internal",
            "gateway.staging.example.com",
            // the metric guards' Prometheus: the simulator answers its queries
            "prometheus.monitoring.svc:9090"
        ]
    );
    assert!(s
        .lines
        .iter()
        .any(|l| l.contains("the secrets ADMIN_TOKEN, TEST_KEY set")));

    // Every deployment runs its component's `from` version, as the playbook expects.
    let url = format!("{}/apis/apps/v1/namespaces/keeptrusts/deployments", s.api());
    let body: serde_json::Value = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { reqwest::get(url).await?.json().await })
        .unwrap();
    let mut images: Vec<String> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["metadata"]["name"].as_str().unwrap(),
                d["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
            )
        })
        .collect();
    images.sort();
    assert_eq!(
        images,
        [
            "keeptrusts-api keeptrusts/api:1.4.2",
            "keeptrusts-console-blue keeptrusts/console:1.4.0",
            "keeptrusts-console-green keeptrusts/console:1.4.0",
            "keeptrusts-gateway keeptrusts/gateway:1.4.1",
            "worker-config keeptrusts/worker:1.4.0",
            "worker-export keeptrusts/worker:1.4.0",
            "worker-lifecycle keeptrusts/worker:1.4.0",
        ]
    );

    // `status` through the printed kubeconfig and context: the simulator answers.
    let status: Vec<String> = [
        "ktplay",
        "status",
        "playbooks/keeptrusts-1.5.ktplay",
        "--env",
        "staging",
    ]
    .iter()
    .map(|w| w.to_string())
    .chain([
        "--kubeconfig".into(),
        kc.display().to_string(),
        "--context".into(),
        "sim".into(),
    ])
    .collect();
    let out = ktplay(&status).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without `--context sim` the env's own context (`staging`) is used: a clear error.
    let without: Vec<String> = words
        .iter()
        .enumerate()
        .filter(|(i, w)| *w != "--context" && (*i == 0 || words[i - 1] != "--context"))
        .map(|(_, w)| w.clone())
        .collect();
    let out = ktplay(&without).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the kubeconfig `{}` has no context `staging` (the context is --context, else the env's `context`); it has: sim — pass `--context sim` to use it",
            kc.display()
        )),
        "{err}"
    );
}

#[test]
fn the_printed_command_runs_the_seed_playbook_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("sim.kubeconfig");
    let seed = "tests/cases/run/upgrade.ktplay";
    let s = serve(&[
        "--seed",
        seed,
        "--pace",
        "10ms",
        "--kubeconfig",
        kc.to_str().unwrap(),
    ]);
    let mut words = s.command();
    assert_eq!(words[2], seed);
    words.push("--approve".into());
    let out = ktplay(&words).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("sim-test-key-1234") && !stdout.contains("sim-admin-token-1234"));
}

/// One GET over a new connection: (status, the whole answer).
fn get(port: u16, path: &str, agent: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: pod\r\nUser-Agent: {agent}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

/// A pod's process on the real data path (`ktplay sim app`) counts its real answers under the
/// simulator's series names (`http_requests_total{app,version,code}`, the latency histogram), so
/// the shipped playbooks' PromQL reads a real Prometheus scraping pods as it reads the
/// simulator; `error-rate` fails exactly its share of real requests (health spared); the
/// kubelet's probes and the scrapes are not counted.
#[test]
fn sim_app_counts_its_real_answers_under_the_simulators_series() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ktplay"))
        .args(["sim", "app", "--addr", "127.0.0.1", "--pod", "gw-1"])
        .args(["--port", &port.to_string(), "--namespace", "ns"])
        .args(["--image", "keeptrusts/gateway:1.5.0", "--role", "gateway"])
        .args(["--fault", "error-rate:gateway@1.5.0=0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("listening on"));
    let _guard = Serve {
        child,
        lines: Vec::new(),
    };
    assert!(listening, "sim app did not listen");
    let answers: Vec<(u16, String)> = (0..10).map(|_| get(port, "/version", "t")).collect();
    let codes: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert!(
        answers[4]
            .1
            .to_ascii_lowercase()
            .contains("x-sim-version: 1.5.0"),
        "a failed answer names its version: {}",
        answers[4].1
    );
    assert_eq!(
        codes,
        [200, 200, 200, 200, 500, 200, 200, 200, 200, 500],
        "every fifth fails"
    );
    for _ in 0..2 {
        assert_eq!(get(port, "/healthz", "t").0, 200, "health is spared");
    }
    assert_eq!(get(port, "/readyz", "kube-probe/1.34").0, 200);
    let _ = get(port, "/metrics", "prometheus");
    let (status, m) = get(port, "/metrics", "prometheus");
    assert_eq!(status, 200);
    for line in [
        r#"http_requests_total{app="gateway",version="1.5.0",code="200"} 10"#,
        r#"http_requests_total{app="gateway",version="1.5.0",code="500"} 2"#,
        r#"http_request_duration_seconds_bucket{app="gateway",version="1.5.0",le="+Inf"} 12"#,
        r#"http_request_duration_seconds_count{app="gateway",version="1.5.0"} 12"#,
        "# TYPE http_request_duration_seconds histogram",
    ] {
        assert!(m.lines().any(|l| l == line), "no `{line}` in:\n{m}");
    }
    assert!(
        m.contains(
            r#"http_request_duration_seconds_bucket{app="gateway",version="1.5.0",le="0.005"} "#
        ),
        "{m}"
    );
}
