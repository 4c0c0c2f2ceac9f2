//! Rhai hooks at run time: hostile scripts contained, return values, secrets, and the API
//! against real local servers (an HTTP server on loopback, the simulated cluster in process).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ktplay::run::guards::script::{ClusterHost, HostComponent};
use ktplay::script::{self, Context, HookFailure, Host, Limits, Outcome, ScriptSource};
use ktplay::span::FileId;

fn compile(text: &str) -> rhai::AST {
    script::compile(ScriptSource {
        text,
        file: FileId(0),
        offset: 0,
    })
    .unwrap_or_else(|e| panic!("does not compile: {e:?}"))
}

/// A host with no cluster and no network: every call is an error the script sees.
struct NoHost;
impl Host for NoHost {
    fn http(
        &self,
        _: &str,
        _: &str,
        _: Option<String>,
        _: &[(String, String)],
        _: Duration,
    ) -> Result<script::HttpResponse, script::HostError> {
        Err(script::HostError("no network in this test".into()))
    }
    fn kube_get(&self, _: &str, _: &str) -> Result<serde_json::Value, script::HostError> {
        Err(script::HostError("no cluster".into()))
    }
    fn pods(&self, _: &str) -> Result<Vec<script::PodInfo>, script::HostError> {
        Err(script::HostError("no cluster".into()))
    }
    fn versions(&self, _: &str) -> Result<Vec<String>, script::HostError> {
        Err(script::HostError("no cluster".into()))
    }
}

fn run(text: &str, ctx: &Context, limits: Limits) -> Result<Outcome, HookFailure> {
    script::run(&compile(text), ctx, Arc::new(NoHost), limits)
}

fn quick() -> Limits {
    Limits {
        deadline: Duration::from_secs(5),
        ..Limits::default()
    }
}

#[test]
fn return_values() {
    let ctx = Context::default();
    assert!(run("1 + 1 == 2", &ctx, quick()).unwrap().ok);
    assert!(!run("false", &ctx, quick()).unwrap().ok);
    let o = run("#{ ok: false, message: \"error rate 3%\" }", &ctx, quick()).unwrap();
    assert_eq!((o.ok, o.message.as_deref()), (false, Some("error rate 3%")));
    let e = run("42", &ctx, quick()).unwrap_err();
    assert!(
        matches!(&e, HookFailure::BadReturn { found } if found.contains("42")),
        "{e}"
    );
    let e = run("#{ message: \"no verdict\" }", &ctx, quick()).unwrap_err();
    assert!(matches!(e, HookFailure::BadReturn { .. }));
    let e = run("throw \"backup too old\"", &ctx, quick()).unwrap_err();
    assert!(
        matches!(&e, HookFailure::Thrown { message, line: Some(1), .. } if message.contains("backup too old")),
        "{e:?}"
    );
}

#[test]
fn hostile_scripts_are_contained() {
    let ctx = Context::default();
    let started = Instant::now();
    let e = run("loop { }", &ctx, quick()).unwrap_err();
    assert!(
        matches!(&e, HookFailure::Limit { what, .. } if what.contains("operations")),
        "{e}"
    );
    let e = run("fn f(n) { f(n + 1) } f(0)", &ctx, quick()).unwrap_err();
    assert!(
        matches!(&e, HookFailure::Limit { what, .. } if what.contains("nested")),
        "{e}"
    );
    let e = run("let s = \"x\"; loop { s += s; }", &ctx, quick()).unwrap_err();
    assert!(
        matches!(&e, HookFailure::Limit { what, .. } if what.contains("too large")),
        "{e}"
    );
    let e = run("let a = []; loop { a.push(1); }", &ctx, quick()).unwrap_err();
    assert!(matches!(&e, HookFailure::Limit { .. }), "{e}");
    // A slow loop under a generous operation limit still stops at the wall-clock deadline.
    let slow = Limits {
        max_operations: 0,
        deadline: Duration::from_millis(200),
        ..Limits::default()
    };
    let e = run("let x = 0; loop { x += 1; }", &ctx, slow).unwrap_err();
    assert!(matches!(e, HookFailure::Timeout(_)), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // Cancellation (Ctrl-C) stops a running script.
    let cancel = Arc::new(AtomicBool::new(true));
    let ctx2 = Context {
        cancel: Some(cancel.clone()),
        ..Context::default()
    };
    let e = run("let x = 0; loop { x += 1; }", &ctx2, slow).unwrap_err();
    assert_eq!(e, HookFailure::Cancelled);
    cancel.store(false, Ordering::Relaxed);
    // The engine is still fine afterwards: the next script runs normally.
    assert!(run("true", &ctx, quick()).unwrap().ok);
    // Compile-time refusals: eval, modules, files.
    for bad in [
        "eval(\"1\")",
        "import \"x\" as y; true",
        "read_file(\"/etc/passwd\")",
        "open(\"/etc/passwd\")",
    ] {
        assert!(
            script::compile(ScriptSource {
                text: bad,
                file: FileId(0),
                offset: 0
            })
            .is_err(),
            "{bad} must not compile"
        );
    }
}

#[test]
fn secrets_stay_opaque() {
    let ctx = Context {
        secrets: vec![("admin_key".into(), "s3cr3t-value".into())],
        ..Context::default()
    };
    let o = run(
        "let s = secret(\"admin_key\"); print(s); log(s); log(\"Bearer \" + s); debug(s); #{ ok: true, message: `${s}` }",
        &ctx,
        quick(),
    )
    .unwrap();
    let all = format!("{o:?}");
    assert!(!all.contains("s3cr3t"), "secret leaked: {all}");
    assert!(
        o.logs.iter().all(|l| l.contains("(secret)")),
        "{:?}",
        o.logs
    );
    let e = run("secret(\"nope\")", &ctx, quick()).unwrap_err();
    assert!(e.to_string().contains("no secret named `nope`"));
}

#[test]
fn vars_stage_and_response_are_visible_and_read_only() {
    let ctx = Context {
        vars: vec![("api_url".into(), "https://api.example.com".into())],
        stage: "gateways".into(),
        env_name: "staging".into(),
        response: Some(script::HttpResponse {
            status: 200,
            body: r#"{"workers":[{"state":"processing"},{"state":"idle"}]}"#.into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
        }),
        ..Context::default()
    };
    for check in [
        r#"vars.api_url == "https://api.example.com""#,
        r#"stage == "gateways" && env_name == "staging""#,
        r#"response.status == 200"#,
        r#"response.headers["content-type"] == "application/json""#,
        r#"response.json.workers.all(|w| w.state == "processing" || w.state == "idle")"#,
    ] {
        let o = run(check, &ctx, quick()).unwrap();
        assert!(o.ok, "{check}");
    }
    assert!(
        run("vars = #{}; true", &ctx, quick()).is_err(),
        "vars is a constant"
    );
    assert!(run("semver_matches(\"1.5.0-rc.1\", \"1.5.x\") && semver_matches(\"1.4.9\", \"1.4.x - 1.5.x\") && !semver_matches(\"1.6.0\", \">=1.4, <1.6\")", &ctx, quick()).unwrap().ok);
}

// ------------------------------------------------------------------ the real host

async fn local_server(seen: Arc<Mutex<Vec<String>>>) -> String {
    use axum::routing::{get, post};
    let seen2 = seen.clone();
    let app = axum::Router::new()
        .route(
            "/stats",
            get(move |h: axum::http::HeaderMap| {
                let seen = seen.clone();
                async move {
                    let auth = h
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    seen.lock().unwrap().push(auth);
                    axum::Json(serde_json::json!({"requests": 200, "errors": 1}))
                }
            }),
        )
        .route(
            "/echo",
            post(move |body: String| {
                let seen = seen2.clone();
                async move {
                    seen.lock().unwrap().push(body.clone());
                    (axum::http::StatusCode::CREATED, body)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_against_real_servers() {
    use ktplay::sim::{Seed, SeedComponent, SeedWorkload, Sim, SimConfig};
    let sim = Sim::new(SimConfig::default());
    sim.seed(&Seed {
        pod_env: Vec::new(),
        routes: Vec::new(),
        namespace: "keeptrusts".into(),
        components: vec![SeedComponent {
            name: "api".into(),
            workload: SeedWorkload::Deployments(vec!["keeptrusts-api".into()]),
            container: "api".into(),
            image: "keeptrusts/api".into(),
            version: semver::Version::new(1, 4, 2),
            replicas: 3,
        }],
    });
    let client = kube::Client::new(sim.router(), "keeptrusts");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = local_server(seen.clone()).await;
    let host = Arc::new(ClusterHost {
        handle: tokio::runtime::Handle::current(),
        http: reqwest::Client::new(),
        client,
        namespace: "keeptrusts".into(),
        components: vec![HostComponent {
            name: "api".into(),
            deployments: vec!["keeptrusts-api".into()],
            container: "api".into(),
        }],
        // Rehearsals route env URLs to local servers: the script asks for the env's URL.
        rewrite: Arc::new(move |url: &str| Ok(url.replace("https://gateway.example.com", &base))),
    });
    let ctx = Context {
        vars: vec![("gateway_url".into(), "https://gateway.example.com".into())],
        secrets: vec![("admin_key".into(), "tok-123".into())],
        ..Context::default()
    };
    let text = r#"
        let s = http_get(vars.gateway_url + "/stats", #{ authorization: "Bearer " + secret("admin_key") });
        let e = http_post(vars.gateway_url + "/echo", #{ a: [1, 2] });
        let p = pods("api");
        let d = kube_get("deployment", "keeptrusts-api");
        log("rate " + s.json.errors * 100 / s.json.requests);
        #{ ok: s.status == 200 && e.status == 201 && e.json.a.len() == 2 && p.len() == 3
               && p.all(|x| x.version == "1.4.2" && x.ready) && versions("api") == ["1.4.2"]
               && d.spec.replicas == 3,
           message: "checked " + p.len() + " pods" }
    "#;
    let ast = compile(text);
    let outcome = tokio::task::spawn_blocking(move || script::run(&ast, &ctx, host, quick()))
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.message.as_deref(), Some("checked 3 pods"));
    assert_eq!(outcome.logs, vec!["rate 0".to_string()]);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec!["Bearer tok-123".to_string(), r#"{"a":[1,2]}"#.to_string()],
        "the secret reaches the server as a header"
    );
}
