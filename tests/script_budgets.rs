//! Hooks that would take the runner down (issue 11): a total memory budget and an output budget
//! stop them cleanly, as a failed guard; Rhai's `to_json` stops at the string limit; the Rust name
//! of the secret type and secret values never reach a message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ktplay::script::{self, Context, HookFailure, Host, Limits, Outcome, ScriptSource};
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

fn run(text: &str, ctx: &Context) -> Result<Outcome, HookFailure> {
    let ast = script::compile(ScriptSource {
        text,
        file: FileId(0),
        offset: 0,
    })
    .unwrap_or_else(|e| panic!("does not compile: {e:?}"));
    let limits = Limits {
        deadline: Duration::from_secs(60),
        ..Limits::default()
    };
    script::run(&ast, ctx, Arc::new(NoHost), limits)
}

/// `s` is a string of 512 KiB.
const HALF_MEG: &str = "let s = \"x\"; for i in 0..19 { s += s; } ";

/// 9,000 strings of 512 KiB in a map pass every per-object limit; it took the process to
/// 2.8 GB and aborted it.
#[test]
fn a_map_of_big_strings_stops_at_the_memory_budget() {
    let started = Instant::now();
    let e = run(
        &format!("{HALF_MEG} let m = #{{}}; for i in 0..9000 {{ m[`k${{i}}`] = s + i; }} true"),
        &Context::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, HookFailure::Limit { what, .. } if what.contains("memory budget of 64 MiB")),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // The memory is given back: the next script runs normally.
    assert!(run("true", &Context::default()).unwrap().ok);
}

/// 1,000 × `log(512 KiB)` printed 512 MB.
#[test]
fn logging_stops_at_the_output_budget() {
    let e = run(
        &format!("{HALF_MEG} for i in 0..1000 {{ log(s); }} true"),
        &Context::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, HookFailure::Limit { what, .. } if what.contains("output budget of 64 KiB")),
        "{e}"
    );
    // `print` and `debug` count too, and a script cannot catch the stop.
    let e = run(
        "let s = \"y\"; for i in 0..12 { s += s; } try { for i in 0..100 { print(s); debug(s); } } catch { } true",
        &Context::default(),
    )
    .unwrap_err();
    assert!(matches!(&e, HookFailure::Limit { .. }), "{e}");
    // Within the budget, lines are kept.
    let o = run("log(\"a\"); print(\"b\"); true", &Context::default()).unwrap();
    assert_eq!(o.logs, vec!["a", "b"]);
}

/// `to_json` of a big map reached 533 MB before it was refused.
#[test]
fn to_json_stops_at_the_string_limit() {
    let e = run(
        "let s = \"z\"; for i in 0..12 { s += s; } let m = #{}; for i in 0..2000 { m[`k${i}`] = s; } m.to_json().len() > 0",
        &Context::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("to_json"), "{e}");
    let o = run(
        "#{ a: 1, b: [true, \"x\"] }.to_json() == `{\"a\":1,\"b\":[true,\"x\"]}`",
        &Context::default(),
    )
    .unwrap();
    assert!(o.ok);
}

#[test]
fn messages_name_no_rust_type_and_no_secret() {
    let ctx = Context {
        secrets: vec![("admin_key".into(), "sekret-ADMIN-token".into())],
        ..Context::default()
    };
    for text in [
        "let s = secret(\"admin_key\"); s.len() > 0",
        "let s = secret(\"admin_key\"); s",
        "let s = secret(\"admin_key\"); #{ a: s }.to_json() != \"\"",
        "let s = secret(\"admin_key\"); http_get(\"http://127.0.0.1:1/\", #{ h: [s] })",
        "let s = secret(\"admin_key\"); log(type_of(s)); false",
    ] {
        let shown = match run(text, &ctx) {
            Ok(o) => format!("{o:?}"),
            Err(e) => e.to_string(),
        };
        assert!(!shown.contains("ktplay::"), "{text}: {shown}");
        assert!(!shown.contains("sekret"), "{text}: {shown}");
    }
}
