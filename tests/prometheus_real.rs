//! A real Prometheus (Debian's `prometheus` package) scraping `ktplay sim serve`'s `/metrics`
//! every second:
//!
//! - the same queries against the simulator's own `/api/v1/query` and against Prometheus agree;
//! - `ktplay run` with a metric guard against that real server promotes the canary without a
//!   fault and rolls it back with `error-rate:gateway@1.5.0=0.2`.
//!
//! Skipped, loudly, when no `prometheus` binary is installed (`.ci/run` installs it).
//!
//! Tolerance: both sides see the same counters, sampled at different moments (the simulator
//! every 250 ms, Prometheus every 1 s at its own phase), and both take `rate` with Prometheus'
//! extrapolation over a one-minute window. For counters that grow at a steady rate the two
//! differ by boundary effects of at most about one scrape interval in the window plus one tick
//! of traffic (20 requests/s in 250 ms steps): a few percent at most. Ratios of two such rates
//! and quantiles of one histogram (the same shares in every bucket) cancel most of it. We allow
//! 5% relative for rates, 2% for the ratio and the quantile.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ktplay");

fn prometheus() -> Option<PathBuf> {
    ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills its process when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PLAYBOOK: &str = r#"playbook "prom-real" {
  namespace "prom"
  component gateway { deployment "keeptrusts-gateway" image "keeptrusts/gateway" from 1.4.0 to 1.5.0 }
  let prom_url = "PROM_URL"
  stage gateway {
    canary gateway weight 10% for 12s {
      guard metric "${prom_url}" {
        query "sum(rate(http_requests_total{app=\"gateway\",code=~\"5..\",version=\"${gateway.to}\"}[1m])) / sum(rate(http_requests_total{app=\"gateway\",version=\"${gateway.to}\"}[1m]))"
        below 0.01
        no_data pass
      }
    }
  }
}
"#;

/// `ktplay sim serve` seeded from the playbook, and a Prometheus scraping it.
struct Stack {
    _sim: Proc,
    _prom: Proc,
    sim_url: String,
    prom_url: String,
    kubeconfig: PathBuf,
    playbook: PathBuf,
    _dir: tempfile::TempDir,
}

async fn stack(prom_bin: &Path, faults: &[&str]) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let (sim_port, prom_port) = (free_port(), free_port());
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let playbook = dir.path().join("prom.ktplay");
    std::fs::write(&playbook, PLAYBOOK.replace("PROM_URL", &prom_url)).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "sim",
        "serve",
        "--port",
        &sim_port.to_string(),
        "--pace",
        "20ms",
    ])
    .arg("--kubeconfig")
    .arg(&kubeconfig)
    .arg("--seed")
    .arg(&playbook)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for f in faults {
        cmd.args(["--fault", f]);
    }
    let sim = Proc(cmd.spawn().unwrap());
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ktplay-sim\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['127.0.0.1:{sim_port}']\n"
        ),
    )
    .unwrap();
    let prom = Proc(
        Command::new(prom_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    loop {
        let ready = http
            .get(format!("{prom_url}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let sim_up = kubeconfig.exists();
        if ready && sim_up {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "prometheus or the simulator did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Stack {
        _sim: sim,
        _prom: prom,
        sim_url: format!("http://127.0.0.1:{sim_port}"),
        prom_url,
        kubeconfig,
        playbook,
        _dir: dir,
    }
}

/// One number from an instant query at `time` (seconds), or `None` for an empty result.
async fn one(base: &str, q: &str, time: f64) -> Option<f64> {
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/query"))
        .form(&[("query", q), ("time", &format!("{time:.3}"))])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{base}: {q}: {v}");
    let r = v["data"]["result"].as_array().unwrap();
    assert!(r.len() <= 1, "{base}: {q}: {v}");
    r.first()
        .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_and_real_prometheus_agree() {
    let Some(bin) = prometheus() else {
        eprintln!("SKIPPED simulator_and_real_prometheus_agree: no prometheus binary (apt-get install prometheus)");
        return;
    };
    let s = stack(
        &bin,
        &["error-rate:gateway@1.4.0=0.1", "latency:gateway@1.4.0=60ms"],
    )
    .await;
    // A minute and a bit of history for `[1m]` windows on both sides.
    tokio::time::sleep(Duration::from_secs(70)).await;
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0 - 2.0;
    let cases = [
        (r#"sum(rate(http_requests_total{app="gateway"}[1m]))"#, 0.05),
        (
            r#"sum(rate(http_requests_total{app="gateway",code=~"5.."}[1m])) / sum(rate(http_requests_total{app="gateway"}[1m]))"#,
            0.02,
        ),
        (
            r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{app="gateway"}[1m])))"#,
            0.02,
        ),
        (
            r#"sum(increase(http_requests_total{app="gateway",code="200"}[1m]))"#,
            0.05,
        ),
    ];
    let mut table = Vec::new();
    for (q, tol) in cases {
        let sim = one(&s.sim_url, q, now)
            .await
            .expect("the simulator has data");
        let prom = one(&s.prom_url, q, now).await.expect("prometheus has data");
        let rel = (sim - prom).abs() / prom.abs().max(1e-12);
        table.push(format!(
            "{q}: sim {sim} prometheus {prom} (diff {:.2}%)",
            rel * 100.0
        ));
        assert!(rel <= tol, "{}", table.join("\n"));
    }
    eprintln!("{}", table.join("\n"));
    // The injected share is what both report.
    let ratio = one(&s.prom_url, cases[1].0, now).await.unwrap();
    assert!((ratio - 0.1).abs() < 0.005, "{ratio}");
}

fn run(s: &Stack) -> std::process::Output {
    Command::new(BIN)
        .arg("run")
        .arg(&s.playbook)
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_metric_guards_against_real_prometheus() {
    let Some(bin) = prometheus() else {
        eprintln!("SKIPPED run_with_metric_guards_against_real_prometheus: no prometheus binary (apt-get install prometheus)");
        return;
    };
    // Without a fault: promoted.
    let s = stack(&bin, &[]).await;
    let out = tokio::task::block_in_place(|| run(&s));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("= 0, below 0.01 → ok"),
        "Prometheus saw the canary's traffic: {text}"
    );
    drop(s);

    // 20% errors on the new version: the guard fails on Prometheus' number and the run rolls back.
    let s = stack(&bin, &["error-rate:gateway@1.5.0=0.2"]).await;
    let out = tokio::task::block_in_place(|| run(&s));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("below 0.01 → failed"), "{text}");
    assert!(text.contains("rolled back: gateway {1.4.0}"), "{text}");
}
