//! Canary analysis that means something (issue 20): no data is *pending* while the canary is
//! younger than its query's window and a canary must end with data; a canary's time is its time
//! (metric evaluations are scheduled inside it); a rehearsal cuts every wait and says which.
//!
//! Two backends: `ktplay test` (the simulator's monitoring on a virtual clock) and `ktplay
//! rehearse` against an in-test fake of Prometheus' HTTP API.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;

const BIN: &str = env!("CARGO_BIN_EXE_ktplay");

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// "simulated 5m37s" on a test's line → seconds.
fn simulated_secs(all: &str) -> u64 {
    let line = all.lines().find(|l| l.contains("(simulated ")).unwrap();
    let s = line.split("simulated ").nth(1).unwrap();
    let s = s.split(',').next().unwrap();
    let (m, rest) = s.split_once('m').unwrap_or(("0", s));
    let secs: f64 = rest.trim_end_matches('s').parse().unwrap_or(0.0);
    m.parse::<u64>().unwrap_or(0) * 60 + secs as u64
}

const ERROR_RATIO: &str = r#"sum(rate(http_requests_total{app=\"gateway\",code=~\"5..\",version=\"${gateway.to}\"}[1m])) / sum(rate(http_requests_total{app=\"gateway\",version=\"${gateway.to}\"}[1m]))"#;
/// The same ratio with a typo in a label: no series ever matches.
const TYPO: &str = r#"sum(rate(http_requests_total{app=\"gatewy\",code=~\"5..\",version=\"${gateway.to}\"}[1m])) / sum(rate(http_requests_total{app=\"gatewy\",version=\"${gateway.to}\"}[1m]))"#;

/// `ktplay test` of a one-stage playbook whose stage is `canary`, with `expects`.
fn sim_test(dir: &Path, canary: &str, expects: &str) -> Output {
    std::fs::write(
        dir.join("canary.ktplay"),
        format!(
            r#"playbook "canary" {{
  namespace "canary"
  component gateway {{ deployment "keeptrusts-gateway" image "keeptrusts/gateway" from 1.4.0 to 1.5.0 }}
  let prom_url = "http://prometheus.monitoring:9090"
  stage gateway {{
    {canary}
  }}
}}
"#
        ),
    )
    .unwrap();
    let tests = dir.join("canary-tests.ktplay");
    std::fs::write(
        &tests,
        format!("test \"canary\" {{\n  playbook \"canary.ktplay\"\n{expects}\n}}\n"),
    )
    .unwrap();
    std::process::Command::new(BIN)
        .args(["test", tests.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

const SUCCEEDS: &str = "  expect succeeded\n  expect final gateway 1.5.0";
const ROLLS_BACK: &str =
    "  expect rolled_back\n  expect failed stage gateway statement 1\n  expect final gateway 1.4.0";

/// The first evaluation comes before any request reached the canary: no data, which used to
/// fail the canary at once. Now it is pending until the query's 1m window has passed, and the
/// later evaluations see the canary's traffic.
#[test]
fn a_one_line_guard_waits_for_the_canarys_first_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = sim_test(
        dir.path(),
        &format!(
            r#"canary gateway weight 10% for 3m {{
      guard metric "${{prom_url}}" query "{ERROR_RATIO}" below 0.05
    }}"#
        ),
        SUCCEEDS,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("1 test: 1 passed, 0 failed"), "{all}");
}

/// A canary no request ever reaches (here: a typo in a label) has no data in any evaluation:
/// with `no_data fail` (the default) it fails once the query's window has passed (no longer at
/// its first evaluation); with `no_data pass`, which used to pass it, at its end.
#[test]
fn a_canary_without_any_data_fails_even_with_no_data_pass() {
    for (extra, after) in [("", 60), ("no_data pass", 120)] {
        let dir = tempfile::tempdir().unwrap();
        let out = sim_test(
            dir.path(),
            &format!(
                r#"canary gateway weight 10% for 2m {{
      guard metric "${{prom_url}}" {{
        query "{TYPO}"
        below 0.05
        {extra}
      }}
    }}"#
            ),
            ROLLS_BACK,
        );
        let all = text(&out);
        assert!(out.status.success(), "{extra}: {all}");
        // Not at its first evaluation: after the window, or at the canary's end.
        assert!(simulated_secs(&all) >= after, "{extra}: {all}");
    }
}

/// `no_data ignore` says explicitly that the canary may see no data: it passes.
#[test]
fn no_data_ignore_lets_a_canary_without_data_pass() {
    let dir = tempfile::tempdir().unwrap();
    let out = sim_test(
        dir.path(),
        &format!(
            r#"canary gateway weight 10% for 2m {{
      guard metric "${{prom_url}}" {{
        query "{TYPO}"
        below 0.05
        no_data ignore
      }}
    }}"#
        ),
        SUCCEEDS,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
}

/// A canary's time is its time: a five-minute canary whose guard has `every 30s for 5m` takes
/// five minutes and its set-up (it took 9m35s: a second round ran the whole `for` again).
/// (`no_data pass` keeps the first evaluation's missing data out of this test.)
#[test]
fn a_five_minute_canary_takes_five_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let out = sim_test(
        dir.path(),
        &format!(
            r#"canary gateway weight 10% for 5m {{
      guard metric "${{prom_url}}" {{
        query "{ERROR_RATIO}"
        below 0.05
        every 30s for 5m
        no_data pass
      }}
    }}"#
        ),
        SUCCEEDS,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let secs = simulated_secs(&all);
    assert!((300..360).contains(&secs), "{secs} s: {all}");
}

/// Three steps of two minutes take six minutes, not nine: each step's evaluations are inside it.
#[test]
fn three_two_minute_steps_take_six_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let out = sim_test(
        dir.path(),
        &format!(
            r#"canary gateway steps 10% 25% 50% every 2m {{
      guard metric "${{prom_url}}" {{
        query "{ERROR_RATIO}"
        below 0.05
        every 30s for 2m
        no_data pass
      }}
    }}"#
        ),
        SUCCEEDS,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let secs = simulated_secs(&all);
    assert!((360..420).contains(&secs), "{secs} s: {all}");
}

// ------------------------------------------------------------------ rehearse, fake Prometheus

/// A fake Prometheus answering the `n`-th query with `values[n]` (the last one after that);
/// `""` is an empty vector (no data).
async fn fake_prometheus(values: &'static [&'static str]) -> (String, Arc<Mutex<usize>>) {
    let n = Arc::new(Mutex::new(0usize));
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            post(move |State(n): State<Arc<Mutex<usize>>>| async move {
                let mut n = n.lock().unwrap();
                let value = values[(*n).min(values.len() - 1)];
                *n += 1;
                let result = if value.is_empty() {
                    serde_json::json!([])
                } else {
                    serde_json::json!([{"metric": {}, "value": [1700000000.0, value]}])
                };
                axum::Json(serde_json::json!({
                    "status": "success",
                    "data": {"resultType": "vector", "result": result}
                }))
            }),
        )
        .with_state(n.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), n)
}

struct Rehearsal {
    out: Output,
    all: String,
    journal: String,
    wall: Duration,
    asked: usize,
}

/// `ktplay rehearse` of a playbook with one `stage gateway { body }`, a `web` component beside
/// the gateway (served by `web_url`), `prom_url` on the fake; killed after `limit`.
async fn rehearse(
    values: &'static [&'static str],
    body: &str,
    args: &[&str],
    limit: Duration,
) -> Rehearsal {
    let (url, n) = fake_prometheus(values).await;
    let dir = tempfile::tempdir().unwrap();
    let pb: PathBuf = dir.path().join("canary.ktplay");
    std::fs::write(
        &pb,
        format!(
            r#"playbook "canary" {{
  namespace "canary"
  component gateway {{ deployment "keeptrusts-gateway" image "keeptrusts/gateway" from 1.4.0 to 1.5.0 }}
  component web {{ deployment "web" image "shop/web" from 1.0.0 to 1.1.0 }}
  let prom_url = "{url}"
  let web_url = "https://web.shop.internal"
  stage gateway {{
    {body}
  }}
}}
"#
        ),
    )
    .unwrap();
    let journal = dir.path().join("journal.jsonl");
    let t0 = Instant::now();
    let child = tokio::process::Command::new(BIN)
        .arg("rehearse")
        .arg(&pb)
        .arg("--journal")
        .arg(&journal)
        .args(args)
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, child)
        .await
        .unwrap_or_else(|_| panic!("the rehearsal took longer than {limit:?}"))
        .unwrap();
    let wall = t0.elapsed();
    let all = text(&out);
    let journal = std::fs::read_to_string(&journal).unwrap_or_default();
    let asked = *n.lock().unwrap();
    Rehearsal {
        out,
        all,
        journal,
        wall,
        asked,
    }
}

fn guard_block(extra: &str) -> String {
    format!(
        r#"guard metric "${{prom_url}}" {{
        query "{ERROR_RATIO}"
        below 0.05
        {extra}
      }}"#
    )
}

/// No data in the first evaluation is pending (said, with how long the canary has run of the
/// query's window), and the canary passes on the data that follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_before_the_window_is_pending_and_said() {
    let r = rehearse(
        &["", "0.001"],
        &format!(
            "canary gateway weight 10% for 6s {{\n      {}\n    }}",
            guard_block("")
        ),
        &["--max-wait", "10s"],
        Duration::from_secs(60),
    )
    .await;
    assert!(r.out.status.success(), "{}", r.all);
    assert!(
        r.all
            .contains("= no data, below 0.05 (no data yet: the canary has run"),
        "{}",
        r.all
    );
    assert!(
        r.all.contains("of the query's 10s window) → pending"),
        "{}",
        r.all
    );
    assert!(r.all.contains("= 0.001, below 0.05 → ok"), "{}", r.all);
    assert!(r.journal.contains("→ pending"), "{}", r.journal);
}

/// No evaluation with data in the whole canary: it fails at its end, naming the query and the
/// reason, with `no_data fail` (the default) and `no_data pass` alike; with `no_data ignore` it
/// passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_must_have_data_unless_the_playbook_says_otherwise() {
    for extra in ["", "no_data pass"] {
        let r = rehearse(
            &[""],
            &format!(
                "canary gateway weight 10% for 4s {{\n      {}\n    }}",
                guard_block(extra)
            ),
            &["--max-wait", "4s"],
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(r.out.status.code(), Some(1), "{extra}: {}", r.all);
        // The first evaluation, inside the window, was pending, not a failure.
        assert!(r.all.contains("→ pending"), "{extra}: {}", r.all);
        assert!(r.asked >= 2, "{extra}: evaluated throughout: {}", r.asked);
        let failed = r
            .journal
            .lines()
            .find(|l| l.contains("\"event\":\"failed\""))
            .unwrap_or_else(|| panic!("{}", r.journal));
        if extra.is_empty() {
            // After the window, no data is a failed evaluation.
            assert!(failed.contains("(no_data fail) → failed"), "{failed}");
        } else {
            // Passed evaluations, none with data: the canary was never seen serving.
            assert!(
                failed.contains("evaluations in the canary's")
                    && failed.contains("had data, so the canary was never seen serving")
                    && failed.contains("write `no_data ignore`"),
                "{failed}"
            );
        }
        assert!(
            r.journal.contains("\"event\":\"rollback_end\""),
            "{}",
            r.journal
        );
    }
    let r = rehearse(
        &[""],
        &format!(
            "canary gateway weight 10% for 4s {{\n      {}\n    }}",
            guard_block("no_data ignore")
        ),
        &["--max-wait", "4s"],
        Duration::from_secs(60),
    )
    .await;
    assert!(r.out.status.success(), "{}", r.all);
    assert!(r.all.contains("(no_data ignore) → pending"), "{}", r.all);
}

/// `--max-wait` cuts a metric guard's `every` and `for` inside a canary like the canary's own
/// `for`, and says each cut: a five-minute canary with `every 30s for 5m` took 5 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_cuts_a_metric_guards_every_and_for() {
    let r = rehearse(
        &["0.001"],
        &format!(
            "canary gateway weight 10% for 5m {{\n      {}\n    }}",
            guard_block("every 30s for 5m")
        ),
        &[],
        Duration::from_secs(90),
    )
    .await;
    assert!(r.out.status.success(), "{}", r.all);
    assert!(r.wall < Duration::from_secs(30), "{:?}: {}", r.wall, r.all);
    for cut in [
        "rehearsal: `for 5m` shortened to 2s",
        "rehearsal: `every 30s` shortened to 2s",
    ] {
        assert!(r.all.contains(cut), "{cut}: {}", r.all);
    }
    assert!(r.asked >= 2, "evaluated in the cut time: {}", r.asked);
}

/// A guard's `within` is cut too: a failing guard with `within 2m` fails after `--max-wait`,
/// and its message says the wait was cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_cuts_a_guards_within() {
    let r = rehearse(
        &["0"],
        "rolling web\n    guard http GET \"${web_url}/healthz\" expect 200 within 2m",
        &["--fault", "http:web@1.1.0=503"],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(r.out.status.code(), Some(1), "{}", r.all);
    assert!(r.wall < Duration::from_secs(45), "{:?}: {}", r.wall, r.all);
    assert!(
        r.all.contains("rehearsal: `within 2m` shortened to 2s"),
        "{}",
        r.all
    );
    assert!(r.all.contains("answered 503"), "{}", r.all);
}
