//! Hostile HTTP answers through `ktplay rehearse` (issue 20, items 5, 6, 10 and 15): local servers
//! that echo the bearer token in encoded forms behind a long prefix, send bodies without end,
//! trickle, and redirect elsewhere. Each run fails the guard cleanly, rolls back, and prints
//! nothing of the secret; no hop leaves the rule of the first request.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;

/// The binary under test; `KTPLAY_TEST_BIN` runs the same scenarios against another build (to
/// see them fail on one without the fixes).
fn bin() -> String {
    std::env::var("KTPLAY_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ktplay").to_string())
}
const TOKEN: &str = "sekret-PR-token-0042";

/// A local server answering every path with `answer`, counting requests.
async fn server<F>(ip: &str, answer: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(HeaderMap) -> Response + Clone + Send + Sync + 'static,
{
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let h = h.clone();
        let answer = answer.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            answer(headers)
        }
    });
    let l = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{ip}:{port}"), hits)
}

fn status(code: u16, body: String) -> Response {
    Response::builder()
        .status(code)
        .body(Body::from(body))
        .unwrap()
}

/// A body that never ends (64 KiB chunks).
fn endless() -> Response {
    let chunk = Bytes::from(vec![b'{'; 64 << 10]);
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

/// A one-stage playbook: gateway rolled to 1.5.0, then `guard`; `extra` goes into the playbook.
fn playbook(dir: &Path, lets: &str, guard: &str) -> PathBuf {
    let text = format!(
        r#"playbook "hostile-http" {{
  namespace "hostile"
  component gateway {{ deployment "keeptrusts-gateway" image "keeptrusts/gateway" from 1.4.0 to 1.5.0 }}
  let token = env("PROM_TOKEN")
{lets}
  stage gateway {{
    rolling gateway
    {guard}
  }}
}}
"#
    );
    let path = dir.join("hostile.ktplay");
    std::fs::write(&path, text).unwrap();
    path
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    journal: String,
    took: Duration,
}

impl Outcome {
    fn all(&self) -> String {
        format!("{}\n{}\n{}", self.stdout, self.stderr, self.journal)
    }

    /// The guard failed, the stage rolled back to 1.4.0, the journal says so to its end.
    fn rolled_back(&self) {
        let all = self.all();
        assert_eq!(self.code, Some(1), "{all}");
        assert!(all.contains("rolled back: gateway {1.4.0}"), "{all}");
        assert!(self.journal.contains("\"event\":\"rollback_end\""), "{all}");
        assert!(self.journal.contains("\"event\":\"run_end\""), "{all}");
    }
}

async fn rehearse(pb: &Path, env: &[(&str, &str)]) -> Outcome {
    let journal = pb.with_file_name("journal.jsonl");
    let t0 = Instant::now();
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("rehearse")
        .arg(pb)
        .arg("--journal")
        .arg(&journal)
        .env("PROM_TOKEN", TOKEN)
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the rehearsal ends")
        .unwrap();
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        journal: std::fs::read_to_string(&journal).unwrap_or_default(),
        took: t0.elapsed(),
    }
}

fn metric_guard() -> &'static str {
    r#"guard metric "${prom_url}" {
      query "sum(rate(http_requests_total{version=\"${gateway.to}\"}[1m]))"
      below 0.01
      bearer token
    }"#
}

/// Item 5: a 401 whose body echoes the bearer token after 190 characters (raw, so a cut at 200
/// falls inside it), and in base64, hex and fully percent-encoded forms: nothing of the token is
/// printed or journaled, whole, cut or encoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_error_body_is_redacted_before_it_is_cut_and_encoded_echoes_are_masked() {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("user:{TOKEN}"));
    let hex = hex::encode(TOKEN);
    let pct: String = TOKEN.bytes().map(|b| format!("%{b:02X}")).collect();
    for body in [
        format!("{}Bearer {TOKEN} is not valid", "x".repeat(190)),
        format!("{}basic={b64} hex={hex} pct={pct}", "x".repeat(150)),
        format!("{{\"error\":\"{}token {b64} refused\"}}", "y".repeat(170)),
    ] {
        let (url, hits) = server("127.0.0.1", move |_| status(401, body.clone())).await;
        let dir = tempfile::tempdir().unwrap();
        let pb = playbook(
            dir.path(),
            &format!("  let prom_url = \"{url}\""),
            metric_guard(),
        );
        let o = rehearse(&pb, &[]).await;
        o.rolled_back();
        assert!(hits.load(Ordering::SeqCst) >= 1);
        let all = o.all();
        assert!(all.contains("Prometheus answered 401"), "{all}");
        for leak in [
            // Any prefix a cut could leave behind.
            &TOKEN[..3],
            &b64[8..20],
            &hex[..16],
            &hex[..16].to_ascii_uppercase(),
            &pct[..15],
        ] {
            assert!(!all.contains(leak), "`{leak}` leaked:\n{all}");
        }
    }
}

/// Item 6: a metric guard and an http guard whose server sends a body without end: reading
/// stops at the cap (16 MiB), the guard fails saying so, the stage rolls back, and the process
/// neither grows nor aborts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_fails_the_guard_at_the_cap_and_rolls_back() {
    let (url, hits) = server("127.0.0.1", |_| endless()).await;
    for guard in [
        metric_guard().to_string(),
        "guard http GET \"${prom_url}/big\" expect 200".to_string(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let pb = playbook(dir.path(), &format!("  let prom_url = \"{url}\""), &guard);
        let o = rehearse(&pb, &[]).await;
        o.rolled_back();
        let all = o.all();
        assert!(
            all.contains("the response body is larger than 16 MiB"),
            "{all}"
        );
        assert!(o.took < Duration::from_secs(60), "{:?}", o.took);
        // A cap in bytes of one's own.
        let o = rehearse(&pb, &[("KTPLAY_MAX_BODY", "100000")]).await;
        o.rolled_back();
        assert!(
            o.all()
                .contains("the response body is larger than 100000 bytes"),
            "{}",
            o.all()
        );
    }
    assert!(hits.load(Ordering::SeqCst) >= 4);
}

/// Item 10: a loopback server answering 307 to another host (this machine again, as 0.0.0.0,
/// which the loopback rule does not accept: a followed hop would be counted there). The metric
/// guard, the http guard and a hook's `http_get` refuse the hop; nothing reaches the other
/// server; the stage rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_never_follows_a_redirect_off_this_machine() {
    let (other, other_hits) = server("0.0.0.0", |_| status(200, "{}".into())).await;
    let target = format!("{other}/elsewhere");
    let (url, hits) = server("127.0.0.1", move |_| redirect(&target)).await;
    for guard in [
        metric_guard().to_string(),
        "guard http GET \"${prom_url}/up\" expect 200".to_string(),
        "guard rhai \"\"\"\n      let r = http_get(vars.prom_url + \"/hook\");\n      r.status == 200\n    \"\"\"".to_string(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let pb = playbook(dir.path(), &format!("  let prom_url = \"{url}\""), &guard);
        let o = rehearse(&pb, &[]).await;
        o.rolled_back();
        let all = o.all();
        assert!(all.contains("redirect not followed"), "{guard}\n{all}");
        assert!(all.contains("0.0.0.0"), "{all}");
    }
    assert!(hits.load(Ordering::SeqCst) >= 3);
    assert_eq!(other_hits.load(Ordering::SeqCst), 0, "a hop left the rule");
}

/// Item 15: a let on this machine that no component serves is sent as written: the rehearsal
/// says so, and does not claim its requests are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_let_is_said_to_be_sent_as_written() {
    let (url, hits) = server("127.0.0.1", |_| status(200, "ok".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let pb = playbook(
        dir.path(),
        &format!("  let status_url = \"{url}\""),
        "guard http GET \"${status_url}/up\" expect 200",
    );
    let o = rehearse(&pb, &[]).await;
    let all = o.all();
    assert_eq!(o.code, Some(0), "{all}");
    assert!(hits.load(Ordering::SeqCst) >= 1);
    assert!(!all.contains("requests are refused"), "{all}");
    assert!(all.contains("sent as written"), "{all}");
}
