//! `guard metric` through the real binary: `ktplay rehearse` of a canary whose guard asks a
//! Prometheus-compatible server (an in-test fake that answers like Prometheus' HTTP API) for the
//! new version's error ratio. Green when it is low, rolled back when it is high, the bearer token
//! sent and never printed or journaled, every evaluation in the output and the journal.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;

const BIN: &str = env!("CARGO_BIN_EXE_ktplay");
const TOKEN: &str = "prom-tok-5d1e9a7c3b";

#[derive(Default)]
struct Seen {
    queries: Vec<String>,
    auth: Vec<String>,
}

type Shared = (Arc<Mutex<Seen>>, String);

/// A fake Prometheus: every query answers one sample whose value is `value`.
async fn fake_prometheus(value: &str) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            post(
                |State((seen, value)): State<Shared>,
                 headers: HeaderMap,
                 axum::Form(form): axum::Form<Vec<(String, String)>>| async move {
                    let q = form
                        .iter()
                        .find(|(k, _)| k == "query")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    let mut s = seen.lock().unwrap();
                    s.queries.push(q);
                    if let Some(a) = headers.get("authorization") {
                        s.auth.push(a.to_str().unwrap().to_string());
                    }
                    axum::Json(serde_json::json!({
                        "status": "success",
                        "data": {"resultType": "vector", "result": [
                            {"metric": {}, "value": [1700000000.0, value]}
                        ]}
                    }))
                },
            ),
        )
        .with_state((seen.clone(), value.to_string()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn playbook(dir: &std::path::Path, prom: &str) -> std::path::PathBuf {
    let text = format!(
        r#"playbook "metric-guard" {{
  namespace "metrics"
  component gateway {{ deployment "keeptrusts-gateway" image "keeptrusts/gateway" from 1.4.0 to 1.5.0 }}
  let prom_url = "{prom}"
  let prom_token = env("PROM_TOKEN")
  stage gateway {{
    canary gateway weight 10% for 1s {{
      guard metric "${{prom_url}}" {{
        query "sum(rate(http_requests_total{{app=\"gateway\",code=~\"5..\",version=\"${{gateway.to}}\"}}[1m])) / sum(rate(http_requests_total{{app=\"gateway\",version=\"${{gateway.to}}\"}}[1m]))"
        below 0.01
        bearer prom_token
      }}
    }}
  }}
}}
"#
    );
    let path = dir.join("metric.ktplay");
    std::fs::write(&path, text).unwrap();
    path
}

async fn rehearse(value: &str) -> (std::process::Output, String, Arc<Mutex<Seen>>) {
    let (url, seen) = fake_prometheus(value).await;
    let dir = tempfile::tempdir().unwrap();
    let pb = playbook(dir.path(), &url);
    let journal = dir.path().join("journal.jsonl");
    let out = tokio::process::Command::new(BIN)
        .arg("rehearse")
        .arg(&pb)
        .arg("--journal")
        .arg(&journal)
        .env("PROM_TOKEN", TOKEN)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let journal = std::fs::read_to_string(&journal).unwrap_or_default();
    (out, journal, seen)
}

const RESOLVED: &str = r#"sum(rate(http_requests_total{app="gateway",code=~"5..",version="1.5.0"}[1m])) / sum(rate(http_requests_total{app="gateway",version="1.5.0"}[1m]))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_error_ratio_promotes_the_canary() {
    let (out, journal, seen) = rehearse("0.002").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let seen = seen.lock().unwrap();
    assert!(!seen.queries.is_empty());
    assert!(
        seen.queries.iter().all(|q| q == RESOLVED),
        "the query is sent with ${{gateway.to}} resolved: {:?}",
        seen.queries
    );
    assert!(seen.auth.iter().all(|a| a == &format!("Bearer {TOKEN}")));
    assert!(!seen.auth.is_empty(), "the bearer token is sent");
    for text in [&*stdout, &*stderr, &journal] {
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
    // The evaluation (value, threshold) is printed and journaled, with the resolved query.
    assert!(stdout.contains("= 0.002, below 0.01 → ok"), "{stdout}");
    assert!(journal.contains("0.002, below 0.01"), "{journal}");
    assert!(journal.contains(r#"version=\"1.5.0\""#), "{journal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_error_ratio_fails_the_canary_and_rolls_back() {
    let (out, journal, _seen) = rehearse("0.2").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("= 0.2, below 0.01 → failed"), "{all}");
    assert!(all.contains("1 of 1 evaluation failed"), "{all}");
    assert!(
        all.to_lowercase().contains("roll"),
        "a rollback is reported: {all}"
    );
    assert!(journal.contains("rollback"), "{journal}");
    assert!(journal.contains("0.2, below 0.01"), "{journal}");
    for text in [&*stdout, &*stderr, &journal] {
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
}

/// `ktplay rehearse` of the shipped seed playbook on the simulator, whose `/api/v1/query` the
/// metric guards' server is routed to.
async fn rehearse_seed(faults: &[&str]) -> (std::process::Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("rehearse")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/playbooks/keeptrusts-1.5.ktplay"
        ))
        .args(["--env", "staging", "--approve", "--journal"])
        .arg(&journal)
        .env("NO_COLOR", "1");
    for f in faults {
        cmd.args(["--fault", f]);
    }
    let out = cmd.output().await.unwrap();
    (out, std::fs::read_to_string(&journal).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_rehearsal_is_green_on_the_simulators_metrics() {
    let (out, journal) = rehearse_seed(&[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The canary's second round sees the new version's traffic: an error ratio of 0 and a p99
    // beside the old version's.
    assert!(stdout.contains("= 0, below 0.01 → ok"), "{stdout}");
    assert!(stdout.contains("(baseline "), "{stdout}");
    // Every round's evaluations are `guard` events in the journal, as in the output.
    assert!(
        journal
            .lines()
            .any(|l| l.contains("\"event\":\"guard\"") && l.contains("guard metric")),
        "{journal}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_rehearsal_with_an_error_rate_fails_the_canary_and_rolls_everything_back() {
    let (out, journal) = rehearse_seed(&["error-rate:gateway@1.5.0=0.2"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    // The error-rate guard failed on the injected share, and nothing else did.
    assert!(all.contains("= 0.2, below 0.01 → failed"), "{all}");
    assert!(
        all.contains("rolled back: api {1.4.2}, gateway {1.4.1}, console {1.4.0} (serving blue), workers {1.4.0}"),
        "{all}"
    );
    assert!(
        journal.contains("\"event\":\"rollback_begin\""),
        "{journal}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_naming_no_component_or_version_is_refused() {
    for (f, says) in [
        (
            "error-rate:gatewy@1.5.0=0.2",
            "the fault names the component `gatewy`",
        ),
        ("latency:gateway@1.6.0=300ms", "never runs 1.6.0"),
        ("error-rate:gateway@1.5.0=1.5", "between 0 and 1"),
    ] {
        let (out, _) = rehearse_seed(&[f]).await;
        assert_eq!(out.status.code(), Some(2), "{f}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{f}: {stderr}");
    }
}

/// A fake Prometheus answering the `n`-th query with `values[n]` (the last one after that).
async fn fake_prometheus_seq(values: &'static [&'static str]) -> (String, Arc<Mutex<usize>>) {
    let n = Arc::new(Mutex::new(0usize));
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            post(move |State(n): State<Arc<Mutex<usize>>>| async move {
                let mut n = n.lock().unwrap();
                let value = values[(*n).min(values.len() - 1)];
                *n += 1;
                axum::Json(serde_json::json!({
                    "status": "success",
                    "data": {"resultType": "vector", "result": [
                        {"metric": {}, "value": [1700000000.0, value]}
                    ]}
                }))
            }),
        )
        .with_state(n.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), n)
}

/// A two-step canary (each step 1 s: two rounds, so two evaluations a step) whose error-ratio
/// guard tolerates one failed evaluation.
async fn rehearse_limited(
    values: &'static [&'static str],
) -> (std::process::Output, String, usize) {
    let (url, n) = fake_prometheus_seq(values).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"playbook "failure-limit" {{
  namespace "metrics"
  component gateway {{ deployment "keeptrusts-gateway" image "keeptrusts/gateway" from 1.4.0 to 1.5.0 }}
  let prom_url = "{url}"
  stage gateway {{
    canary gateway steps 10% 50% every 1s {{
      guard metric "${{prom_url}}" {{
        query "sum(rate(http_requests_total{{code=~\"5..\",version=\"${{gateway.to}}\"}}[1m]))"
        below 0.01
        failure_limit 1
      }}
    }}
  }}
}}
"#
    );
    let pb = dir.path().join("limit.ktplay");
    std::fs::write(&pb, text).unwrap();
    let journal = dir.path().join("journal.jsonl");
    let out = tokio::process::Command::new(BIN)
        .arg("rehearse")
        .arg(&pb)
        .arg("--journal")
        .arg(&journal)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let journal = std::fs::read_to_string(&journal).unwrap_or_default();
    let asked = *n.lock().unwrap();
    (out, journal, asked)
}

/// `failure_limit 1` counts over the whole canary: one failed evaluation in the first step is
/// tolerated (and said), the canary is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_limit_tolerates_one_failed_evaluation_across_the_canary() {
    let (out, journal, asked) = rehearse_limited(&["0", "0.2", "0"]).await;
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(asked >= 4, "two evaluations a step: {asked}\n{all}");
    assert!(all.contains("= 0.2, below 0.01 → failed"), "{all}");
    // The later rounds say the failure is still counted.
    assert!(
        all.contains("(1 of 3 evaluations failed, failure_limit 1)"),
        "{all}"
    );
    assert!(journal.contains("failure_limit 1"), "{journal}");
}

/// The second failed evaluation, in the second step, is past the limit: it fails the canary
/// there (the count does not reset between steps) and everything rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_limit_counts_across_rounds_and_steps() {
    let (out, journal, _) = rehearse_limited(&["0", "0.2", "0", "0.2"]).await;
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(
            "step 2 of 2 (50%): query \"sum(rate(http_requests_total{code=~\"5..\",version=\"1.5.0\"}[1m]))\": 2 of 4 evaluations failed (failure_limit 1) (3 in the canary's earlier rounds)"
        ),
        "{all}"
    );
    let failed = journal
        .lines()
        .find(|l| l.contains("\"event\":\"failed\""))
        .unwrap_or_else(|| panic!("{journal}"));
    assert!(failed.contains("2 of 4 evaluations failed"), "{failed}");
    assert!(journal.contains("\"event\":\"rollback_end\""), "{journal}");
}
