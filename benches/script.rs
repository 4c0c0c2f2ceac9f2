//! Evaluation time of a compiled hook without I/O (target: well under 1 ms).
//! `cargo bench --bench script`

use std::sync::Arc;
use std::time::{Duration, Instant};

use ktplay::script::{self, Context, Host, HttpResponse, Limits, ScriptSource};
use ktplay::span::FileId;

struct NoHost;
impl Host for NoHost {
    fn http(
        &self,
        _: &str,
        _: &str,
        _: Option<String>,
        _: &[(String, String)],
        _: Duration,
    ) -> Result<HttpResponse, script::HostError> {
        Err(script::HostError("no I/O in this benchmark".into()))
    }
    fn kube_get(&self, _: &str, _: &str) -> Result<serde_json::Value, script::HostError> {
        Err(script::HostError("no I/O".into()))
    }
    fn pods(&self, _: &str) -> Result<Vec<script::PodInfo>, script::HostError> {
        Err(script::HostError("no I/O".into()))
    }
    fn versions(&self, _: &str) -> Result<Vec<String>, script::HostError> {
        Err(script::HostError("no I/O".into()))
    }
}

fn main() {
    // The workers check of the seed playbook, over a response with 50 workers.
    let text = r#"response.json.workers.all(|w| w.state == "processing" || w.state == "idle") && semver_matches("1.5.0", "1.4.x - 1.5.x")"#;
    let ast = script::compile(ScriptSource {
        text,
        file: FileId(0),
        offset: 0,
    })
    .expect("compiles");
    let workers: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"name":"w{i}","state":"processing"}}"#))
        .collect();
    let ctx = Context {
        vars: vec![("api_url".into(), "https://api.example.com".into())],
        response: Some(HttpResponse {
            status: 200,
            body: format!(r#"{{"workers":[{}]}}"#, workers.join(",")),
            headers: vec![],
        }),
        ..Context::default()
    };
    let host: Arc<dyn Host> = Arc::new(NoHost);
    for _ in 0..100 {
        assert!(
            script::run(&ast, &ctx, host.clone(), Limits::default())
                .unwrap()
                .ok
        );
    }
    let n = 5_000;
    let start = Instant::now();
    for _ in 0..n {
        script::run(&ast, &ctx, host.clone(), Limits::default()).unwrap();
    }
    let per = start.elapsed() / n;
    println!("hook evaluation (compiled, no I/O, 50-worker response incl. JSON decoding): {per:?} per run over {n} runs");
    let start = Instant::now();
    for _ in 0..n {
        script::compile(ScriptSource {
            text,
            file: FileId(0),
            offset: 0,
        })
        .unwrap();
    }
    println!("compilation (check): {:?} per script", start.elapsed() / n);
}
