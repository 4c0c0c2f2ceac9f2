//! Metric guards answered by the pods' own traffic (issue 22): on the real data path a real
//! Prometheus discovers the test's pods through the API server and scrapes each pod process's
//! `/metrics` on its pod IP (`support::prometheus`), while a load loop sends requests through the
//! gateway's ClusterIP; on the simulator the same playbook asks the simulator's Prometheus API,
//! whose simulated traffic the same fault shapes. One scenario, two namespaces at once: with
//! `error-rate:gateway@1.5.0=0.2` the canary's error-ratio guard fails and the run rolls back;
//! without it the canary is promoted.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ktplay::sim::{Fault, SimConfig};
use serde_json::Value;

use super::support::prometheus::Prometheus;
use super::support::{self, Backend, TestCluster};
use super::{assert_unlocked, journal_cm, journal_status, ktplay, text};

on_both!(metric_guard_reads_the_pods_traffic);

/// The error ratio of the new version over the last 5 s, below 1%, every second of an 8 s canary.
const PLAYBOOK: &str = r#"playbook "pod-metrics" {
  namespace "NS"
  component gateway { deployment "keeptrusts-gateway" image "keeptrusts/gateway" from 1.4.1 to 1.5.0 }
  env staging {
    context "staging"
    let prom_url = "PROM"
  }
  stage gateway {
    canary gateway weight 50% for 8s {
      guard metric "${prom_url}" {
        query "sum(rate(http_requests_total{app=\"gateway\",code=~\"5..\",version=\"${gateway.to}\"}[5s])) / sum(rate(http_requests_total{app=\"gateway\",version=\"${gateway.to}\"}[5s]))"
        below 0.01
        every 1s
        no_data pass
      }
    }
  }
}
"#;

async fn metric_guard_reads_the_pods_traffic(backend: Backend) {
    let prom_bin = match backend {
        Backend::Sim => None,
        Backend::Real => {
            if !support::datapath::enabled() {
                eprintln!(
                    "\n!!!!! SKIPPED on the real backend: metric_guard_reads_the_pods_traffic needs the real data path (pods as processes; tests/realkube.sh with REALKUBE_DATAPATH=1) !!!!!\n"
                );
                return;
            }
            let Some(bin) = Prometheus::binary() else {
                eprintln!(
                    "\n!!!!! SKIPPED on the real backend: metric_guard_reads_the_pods_traffic: no prometheus binary (apt-get install prometheus) !!!!!\n"
                );
                return;
            };
            Some(bin)
        }
    };
    let bin = prom_bin.as_deref();
    tokio::join!(case(backend, bin, true), case(backend, bin, false));
}

/// What the load loop saw: answers by (version, status).
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    ok_new: AtomicU64,
    failed_new: AtomicU64,
    other: AtomicU64,
}

/// Requests through the gateway's Service (a new connection each, so kube-proxy balances every
/// one), about 50 a second, until stopped.
fn load(url: String) -> (Arc<Load>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Load::default());
    let s = seen.clone();
    let task = tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        while !s.stop.load(Ordering::SeqCst) {
            let (http, s, url) = (http.clone(), s.clone(), url.clone());
            tokio::spawn(async move {
                let Ok(r) = http.get(format!("{url}/version")).send().await else {
                    s.other.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                let new = r
                    .headers()
                    .get("x-sim-version")
                    .is_some_and(|v| v == "1.5.0");
                match (new, r.status().as_u16()) {
                    (true, 200) => &s.ok_new,
                    (true, 500) => &s.failed_new,
                    _ => &s.other,
                }
                .fetch_add(1, Ordering::SeqCst);
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (seen, task)
}

async fn case(backend: Backend, prom_bin: Option<&Path>, faulty: bool) {
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace(if faulty {
        "podmetrics-bad"
    } else {
        "podmetrics-ok"
    });
    let mut config = SimConfig::default();
    if faulty {
        config
            .faults
            .add("error-rate:gateway@1.5.0=0.2".parse::<Fault>().unwrap());
    }
    let pb = dir.path().join("pod-metrics.ktplay");
    // A placeholder URL to seed from; the real one once Prometheus runs.
    let source = PLAYBOOK.replace("NS", &ns);
    std::fs::write(&pb, source.replace("PROM", "http://127.0.0.1:9")).unwrap();
    // One replica: a canary pod beside one stable pod, and a promotion of one step.
    let seed = super::seed(&pb, &ns, |s| s.components[0].replicas = 1);
    // Prometheus starts beside the seeding, so it finds the pods as they come.
    let (c, prom) = tokio::join!(TestCluster::new(backend, config, &seed), async {
        match prom_bin {
            Some(bin) => Some(Prometheus::start(bin, &ns).await),
            None => None,
        }
    });
    if let Some(p) = &prom {
        assert!(c.on_datapath());
        p.wait_for_targets(&ns, 1).await;
    }
    // The sim answers PromQL on its API listener; on the data path, the real Prometheus.
    let prom_url = prom.as_ref().map_or_else(|| c.api_url(), |p| p.url.clone());
    std::fs::write(&pb, source.replace("PROM", &prom_url)).unwrap();
    let services_before = specs(&c, "services").await;
    let pdbs_before = specs(&c, "poddisruptionbudgets").await;
    let template_before =
        c.get("deployments", "keeptrusts-gateway").await.unwrap()["spec"]["template"].clone();
    let kc = support::kubeconfig(dir.path(), &[("staging", &c)]);
    let (seen, loader) = match c.on_datapath() {
        true => {
            let (s, t) = load(c.service_url("gateway", None).unwrap());
            (Some(s), Some(t))
        }
        false => (None, None),
    };
    let out = ktplay(&[
        "run".into(),
        pb.display().to_string(),
        "--env=staging".into(),
        format!("--kubeconfig={}", kc.display()),
    ])
    .await;
    if let (Some(s), Some(t)) = (&seen, loader) {
        s.stop.store(true, Ordering::SeqCst);
        let _ = t.await;
    }
    let all = text(&out);
    let case = if faulty { "error-rate 0.2" } else { "clean" };

    // The outcome, the guard's line and the final state of every object.
    let want = if faulty { "1.4.1" } else { "1.5.0" };
    assert_eq!(
        out.status.code(),
        Some(if faulty { 1 } else { 0 }),
        "{case}: {all}"
    );
    if faulty {
        assert!(all.contains("below 0.01 → failed"), "{case}: {all}");
        assert!(
            all.contains("rolled back: gateway {1.4.1}"),
            "{case}: {all}"
        );
    } else {
        assert!(all.contains("below 0.01 → ok"), "{case}: {all}");
        assert!(!all.contains("→ failed"), "{case}: {all}");
    }
    c.settled().await;
    let deployments: Vec<String> = c
        .list("deployments")
        .await
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        deployments,
        ["keeptrusts-gateway"],
        "{case}: no canary left"
    );
    assert_eq!(
        c.image("keeptrusts-gateway").await,
        format!("keeptrusts/gateway:{want}")
    );
    let mut template =
        c.get("deployments", "keeptrusts-gateway").await.unwrap()["spec"]["template"].clone();
    template["spec"]["containers"][0]["image"] =
        template_before["spec"]["containers"][0]["image"].clone();
    assert_eq!(
        template, template_before,
        "{case}: only the image of the gateway's template changed"
    );
    assert_eq!(specs(&c, "services").await, services_before, "{case}");
    assert_eq!(
        specs(&c, "poddisruptionbudgets").await,
        pdbs_before,
        "{case}"
    );
    assert_unlocked(&c).await;

    // The journal names the metric guard and the value it judged.
    let status = journal_status(&c).await;
    assert_eq!(
        status,
        if faulty { "rolled_back" } else { "succeeded" },
        "{case}"
    );
    let cm = journal_cm(&c).await.unwrap();
    let events: Vec<Value> = cm["data"]["events"]
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let guard_texts: Vec<String> = events
        .iter()
        .filter(|e| {
            e["statement"]
                .as_str()
                .is_some_and(|s| s.contains("guard metric"))
        })
        .map(|e| format!("{} {} {}", e["ok"], e["detail"], e["message"]))
        .collect();
    assert!(!guard_texts.is_empty(), "{case}: {events:#?}");
    if faulty {
        let failed = guard_texts
            .iter()
            .find(|t| t.starts_with("false") && t.contains("→ failed"))
            .unwrap_or_else(|| panic!("{case}: no failed evaluation journaled: {guard_texts:#?}"));
        let v = failed
            .split(", below 0.01 → failed")
            .next()
            .and_then(|s| s.rsplit(" = ").next())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        // The simulator's traffic is the fault's share exactly; Prometheus extrapolates a few
        // seconds of real requests (0.25 seen).
        let expected = match backend {
            Backend::Sim => 0.19..=0.21,
            Backend::Real => 0.05..=1.0,
        };
        assert!(
            expected.contains(&v),
            "{case}: the journaled error ratio is the fault's 0.2: {failed}"
        );
    } else {
        assert!(
            guard_texts
                .iter()
                .any(|t| t.contains("= 0, below 0.01 → ok")),
            "{case}: {guard_texts:#?}"
        );
    }

    // On the data path: the answers came from the pods, through Prometheus.
    let (Some(p), Some(seen)) = (&prom, &seen) else {
        return;
    };
    let (ok_new, failed_new) = (
        seen.ok_new.load(Ordering::SeqCst),
        seen.failed_new.load(Ordering::SeqCst),
    );
    eprintln!(
        "{case}: load through the Service: 1.5.0 answered {ok_new} ok, {failed_new} failed; {} other",
        seen.other.load(Ordering::SeqCst)
    );
    assert!(ok_new > 0, "{case}: the canary got real requests");
    if faulty {
        assert!(failed_new > 0, "{case}: 1.5.0 failed real requests");
    } else {
        assert_eq!(failed_new, 0, "{case}");
    }
    assert!(
        p.discoveries.load(Ordering::SeqCst) > 0,
        "{case}: Prometheus found the pods through the API server"
    );
    assert!(
        p.queries_answered().await >= 2,
        "{case}: ktplay's evaluations reached the real Prometheus"
    );
    // Every scraped target and every request series is a pod of the namespace on its pod IP.
    for selector in [
        format!("up{{namespace=\"{ns}\"}}"),
        format!("http_requests_total{{namespace=\"{ns}\"}}"),
    ] {
        let series = p.series(&selector).await;
        assert!(!series.is_empty(), "{case}: no {selector}: {}", p.log());
        for s in &series {
            let ip = s["pod_ip"].as_str().unwrap_or_default();
            assert!(ip.starts_with("10.244."), "{case}: {s}");
            assert!(
                s["pod"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("keeptrusts-gateway-")),
                "{case}: a gateway pod: {s}"
            );
            assert!(
                s["instance"]
                    .as_str()
                    .is_some_and(|i| i.starts_with(&format!("{ip}:"))),
                "{case}: scraped on its pod IP: {s}"
            );
        }
    }
    // The shipped playbook's own queries (its error ratio, its p99 and the p99's baseline)
    // read the pods' series unchanged: one finite number each.
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/gateway-canary.ktplay"),
    )
    .unwrap();
    let queries: Vec<String> = shipped
        .lines()
        .filter_map(|l| l.trim().strip_prefix("query \""))
        .map(|q| q.trim_end_matches('"').replace("\\\"", "\""))
        .collect();
    assert_eq!(queries.len(), 2, "{shipped}");
    for q in &queries {
        for v in ["1.5.0", "1.4.1"] {
            let q = q.replace("${gateway.to}", v);
            let r = p.query(&q).await;
            let x: Option<f64> = r.first().and_then(|s| s["value"][1].as_str()?.parse().ok());
            assert!(
                r.len() == 1 && x.is_some_and(f64::is_finite),
                "{case}: the shipped query `{q}` has one number: {r:?}"
            );
        }
    }
    let canary: Vec<Value> = p
        .series(&format!(
            "http_requests_total{{namespace=\"{ns}\",version=\"1.5.0\",code=\"500\"}}"
        ))
        .await;
    assert!(
        canary.iter().any(|s| s["pod"]
            .as_str()
            .is_some_and(|n| n.starts_with("keeptrusts-gateway-canary"))),
        "{case}: the canary pod's own series (a pod created by the run, found and scraped): {canary:#?}"
    );
}

/// `metadata.name` → `spec` of every object of a resource in the namespace.
async fn specs(c: &TestCluster, plural: &str) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = c
        .list(plural)
        .await
        .into_iter()
        .map(|o| {
            (
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                o["spec"].clone(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
