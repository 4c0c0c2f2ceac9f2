//! Simulator throughput over loopback: GET and PATCH of a deployment (requests per second) and
//! the wall time of a 3-replica rollout at zero pace. `cargo bench --bench sim`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ktplay_sim::{Seed, Sim, SimConfig};
use serde_json::{json, Value};

const NS: &str = "keeptrusts";
const CONCURRENCY: usize = 8;
const WINDOW: Duration = Duration::from_secs(3);

async fn hammer(http: reqwest::Client, url: String, patch: bool) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let (http, url, count) = (http.clone(), url.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while start.elapsed() < WINDOW {
                let resp = if patch {
                    i += 1;
                    http.patch(&url)
                        .header("content-type", "application/merge-patch+json")
                        .body(
                            json!({"metadata": {"labels": {"bench": format!("w{worker}-{i}")}}})
                                .to_string(),
                        )
                        .send()
                        .await
                } else {
                    http.get(&url).send().await
                };
                let resp = resp.expect("request");
                assert!(resp.status().is_success(), "{}", resp.status());
                let _ = resp.bytes().await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn complete(d: &Value, image: &str) -> bool {
    let s = &d["status"];
    let n = |k: &str| s[k].as_i64().unwrap_or(0);
    d["spec"]["template"]["spec"]["containers"][0]["image"] == image
        && d["metadata"]["generation"].as_i64() <= s["observedGeneration"].as_i64()
        && n("updatedReplicas") == 3
        && n("replicas") == 3
        && n("availableReplicas") == 3
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sim = Sim::new(SimConfig::default());
        sim.seed(&Seed::keeptrusts(NS, "1.4.0".parse().unwrap()));
        let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let url = format!(
            "{}/apis/apps/v1/namespaces/{NS}/deployments/keeptrusts-gateway",
            running.api_url()
        );
        let http = reqwest::Client::new();
        let get = hammer(http.clone(), url.clone(), false).await;
        println!("GET deployment over loopback:   {get:>8.0} requests/s ({CONCURRENCY} concurrent clients)");
        let patch = hammer(http.clone(), url.clone(), true).await;
        println!("PATCH deployment over loopback: {patch:>8.0} requests/s ({CONCURRENCY} concurrent clients)");

        let mut times = Vec::new();
        for round in 1..=10u32 {
            let image = format!("keeptrusts/gateway:1.4.{round}");
            let body = json!({"spec": {"template": {"spec": {"containers": [{"name": "gateway", "image": image}]}}}});
            let start = Instant::now();
            let resp = http
                .patch(&url)
                .header("content-type", "application/strategic-merge-patch+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success());
            loop {
                let d = sim.get_object("deployments", NS, "keeptrusts-gateway").unwrap();
                if complete(&d, &image) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            times.push(start.elapsed());
        }
        times.sort();
        println!(
            "3-replica rollout at zero pace: median {:.2} ms, min {:.2} ms, max {:.2} ms (10 rollouts)",
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3
        );
        running.shutdown().await;
    });
}
