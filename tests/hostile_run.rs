//! Hostile HTTP answers during a real `ktplay run` (issue 20, items 6 and 10), on both backends:
//! an http guard whose server sends a body without end, and one whose server redirects to a host
//! the env does not name. The guard fails cleanly (never an abort), the stage rolls back, the
//! lock is released and the journal ends `rolled_back`; the redirect's target is never asked.

#[macro_use]
mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use ktplay::sim::SimConfig;
use serde_json::Value;
use support::{Backend, TestCluster};

const BIN: &str = env!("CARGO_BIN_EXE_ktplay");

on_both!(hostile_guard_answers_fail_cleanly_and_roll_back);

/// A local server answering every request with `answer()`, counting them.
async fn server(ip: &str, answer: fn(&str) -> Response, arg: String) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let h = h.clone();
        let arg = arg.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            answer(&arg)
        }
    });
    let l = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{ip}:{port}"), hits)
}

fn endless(_: &str) -> Response {
    let chunk = Bytes::from(vec![b'x'; 64 << 10]);
    let s = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    Response::new(Body::from_stream(s))
}

fn redirect(to: &str) -> Response {
    Response::builder()
        .status(307)
        .header("location", to)
        .body(Body::empty())
        .unwrap()
}

fn ok(_: &str) -> Response {
    Response::new(Body::from("ok"))
}

fn playbook(dir: &Path, ns: &str, url: &str) -> PathBuf {
    let text = format!(
        r#"playbook "hostile-run" {{
  namespace "{ns}"
  component api {{ deployment "keeptrusts-api" container "api" image "keeptrusts/api" from 1.4.2 to 1.5.0 }}
  env staging {{
    context "staging"
    let probe_url = "{url}"
  }}
  stage api {{
    rolling api
    guard http GET "${{probe_url}}/probe" expect 200
  }}
}}
"#
    );
    let p = dir.join("hostile-run.ktplay");
    std::fs::write(&p, text).unwrap();
    p
}

async fn hostile_guard_answers_fail_cleanly_and_roll_back(backend: Backend) {
    let (elsewhere, elsewhere_hits) = server("0.0.0.0", ok, String::new()).await;
    let (big, big_hits) = server("127.0.0.1", endless, String::new()).await;
    let (hop, hop_hits) = server("127.0.0.1", redirect, format!("{elsewhere}/x")).await;
    for (url, hits, says) in [
        (
            &big,
            &big_hits,
            "answered 200, but the response body is larger than 16 MiB",
        ),
        (&hop, &hop_hits, "redirect not followed: `0.0.0.0"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ns = support::namespace("hostile");
        let pb = playbook(dir.path(), &ns, url);
        let checked = ktplay::check::check_paths(std::slice::from_ref(&pb)).unwrap();
        assert_eq!(checked.errors(), 0, "{:?}", checked.problems);
        let seed = ktplay::rehearse::seed_for(&checked.playbooks[0].1, &ns);
        let c = TestCluster::new(backend, SimConfig::default(), &seed).await;
        let kc = support::kubeconfig(dir.path(), &[("staging", &c)]);
        let journal = dir.path().join("journal.jsonl");
        let out = tokio::time::timeout(
            Duration::from_secs(180),
            tokio::process::Command::new(BIN)
                .args(["run", pb.to_str().unwrap(), "--env", "staging", "--approve"])
                .arg("--kubeconfig")
                .arg(&kc)
                .arg("--journal")
                .arg(&journal)
                .env("NO_COLOR", "1")
                .env_remove("KUBECONFIG")
                .stdin(std::process::Stdio::null())
                .output(),
        )
        .await
        .expect("ktplay finished in time")
        .unwrap();
        let all = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Failed and rolled back (exit 1), not aborted (134) or passed.
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains(says), "{all}");
        assert!(hits.load(Ordering::SeqCst) >= 1, "{all}");
        c.settled().await;
        let api = c.get("deployments", "keeptrusts-api").await.unwrap();
        assert_eq!(
            api["spec"]["template"]["spec"]["containers"][0]["image"], "keeptrusts/api:1.4.2",
            "{all}"
        );
        // The lock is released; the journal ends rolled back, in the file and the cluster.
        let leases = c.list("leases").await;
        let ours: Vec<&Value> = leases
            .iter()
            .filter(|l| {
                l["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("ktplay"))
            })
            .collect();
        assert!(ours.is_empty(), "the lock is still held: {ours:?}");
        let local = std::fs::read_to_string(&journal).unwrap();
        assert!(local.contains("\"event\":\"rollback_end\""), "{local}");
        assert!(local.contains("\"event\":\"run_end\""), "{local}");
        let cms = c.list("configmaps").await;
        let cm = cms
            .iter()
            .find(|m| {
                m["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("ktplay-journal-"))
            })
            .unwrap_or_else(|| panic!("no journal ConfigMap: {cms:?}"));
        assert_eq!(cm["data"]["status"], "rolled_back", "{cm}");
    }
    assert_eq!(
        elsewhere_hits.load(Ordering::SeqCst),
        0,
        "a redirect left the env's hosts"
    );
}
