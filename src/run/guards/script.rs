//! The Rhai script runner: [`crate::script`]'s sandbox behind the interpreter's
//! [`ScriptRunner`] seam. Scripts run on a blocking thread; Ctrl-C and the guard's deadline
//! reach them through the engine's progress callback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::check::program::Workload;
use crate::run::guards::{ScriptContext, ScriptError, ScriptOutcome, ScriptRef, ScriptRunner};
use crate::script::{
    self, ClusterHost, Context, HookFailure, HostComponent, HttpResponse, Limits, ScriptSource,
};
use crate::span::FileId;

/// Runs hooks and inline scripts in the sandboxed engine.
pub struct RhaiRunner;

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn response_of(v: &Value) -> HttpResponse {
    let headers = match v.get("headers") {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), text_of(v))).collect(),
        _ => vec![],
    };
    HttpResponse {
        status: v.get("status").and_then(Value::as_u64).unwrap_or(0) as u16,
        body: v.get("body").map(text_of).unwrap_or_default(),
        headers,
    }
}

impl ScriptRunner for RhaiRunner {
    fn run<'a>(
        &'a self,
        script: ScriptRef<'a>,
        ctx: &'a ScriptContext,
    ) -> BoxFuture<'a, Result<ScriptOutcome, ScriptError>> {
        Box::pin(async move {
            let text = match script {
                ScriptRef::Hook { source, .. } => source.to_string(),
                ScriptRef::Inline(s) => s.text.clone(),
            };
            // `check` compiled it already; compiling again is cheap and keeps the AST off the
            // checked program.
            let ast = script::compile(ScriptSource {
                text: &text,
                file: FileId(0),
                offset: 0,
            })
            .map_err(|errs| ScriptError {
                message: format!(
                    "does not compile: {}",
                    errs.first().map(|(_, e)| e.to_string()).unwrap_or_default()
                ),
                retry: false,
            })?;
            let Some(cluster) = ctx.cluster.clone() else {
                return Err(ScriptError {
                    message: "no cluster to run scripts against".into(),
                    retry: false,
                });
            };
            let components = ctx
                .playbook
                .components
                .iter()
                .map(|c| HostComponent {
                    name: c.name.clone(),
                    deployments: match &c.workload {
                        Workload::Deployments(d) => d.clone(),
                        Workload::BlueGreen(bg) => vec![bg.blue.clone(), bg.green.clone()],
                    },
                    container: c.container.clone(),
                })
                .collect();
            // Hooks reach the hosts the env names (its URL lets, the routes) and `allow_hosts`.
            let reach = {
                let urls: Vec<&str> = ctx
                    .vars
                    .iter()
                    .filter(|(k, _)| !ctx.secret_names.contains(k))
                    .filter_map(|(_, v)| v.as_str())
                    .chain(ctx.rewrite.map.iter().map(|(_, base)| base.as_str()))
                    .collect();
                let env = ctx.playbook.env(&ctx.env_name);
                let patterns = ctx
                    .playbook
                    .allow_hosts
                    .iter()
                    .chain(env.into_iter().flat_map(|e| e.allow_hosts.iter()))
                    .chain(ctx.rewrite.map.iter().map(|(host, _)| host))
                    .map(String::as_str);
                script::reach::Reach::new(urls, patterns)
            };
            let rewrite = ctx.rewrite.clone();
            // A redirect is held to the rule of the first request: the reachable hosts, and in
            // a rehearsal this machine only.
            let hop: crate::run::guards::client::HopRule = {
                let reach = reach.clone();
                let loopback = ctx
                    .rewrite
                    .confine
                    .then(crate::run::guards::client::loopback_only);
                Arc::new(move |u: &str| {
                    reach.check(u)?;
                    loopback.as_ref().map_or(Ok(()), |l| l(u))
                })
            };
            let host = Arc::new(ClusterHost {
                handle: tokio::runtime::Handle::current(),
                http: crate::run::guards::client::client(hop),
                client: cluster.client.clone(),
                namespace: ctx.namespace.clone(),
                components,
                rewrite: Arc::new(move |u: &str| {
                    reach.check(u)?;
                    rewrite.route(u)
                }),
            });
            let (mut vars, mut secrets) = (Vec::new(), Vec::new());
            for (k, v) in &ctx.vars {
                if ctx.secret_names.contains(k) {
                    secrets.push((k.clone(), text_of(v)));
                } else {
                    vars.push((k.clone(), text_of(v)));
                }
            }
            let flag = Arc::new(AtomicBool::new(false));
            let watcher = {
                let flag = flag.clone();
                let cancel = ctx.cancel.clone();
                tokio::spawn(async move {
                    cancel.wait().await;
                    flag.store(true, Ordering::Relaxed);
                })
            };
            let context = Context {
                vars,
                stage: ctx.stage.clone(),
                env_name: ctx.env_name.clone(),
                secrets,
                response: ctx.response.as_ref().map(response_of),
                cancel: Some(flag),
            };
            let limits = Limits {
                deadline: ctx.deadline.saturating_duration_since(Instant::now()),
                ..Limits::default()
            };
            let result =
                tokio::task::spawn_blocking(move || script::run(&ast, &context, host, limits))
                    .await;
            watcher.abort();
            match result {
                Ok(Ok(o)) => {
                    let mut message = o.message;
                    if !o.logs.is_empty() {
                        let logs = o.logs.join("; ");
                        message = Some(match message {
                            Some(m) => format!("{m} (log: {logs})"),
                            None => format!("log: {logs}"),
                        });
                    }
                    Ok(ScriptOutcome { ok: o.ok, message })
                }
                Ok(Err(e)) => Err(ScriptError {
                    retry: matches!(e, HookFailure::Thrown { .. }),
                    message: e.to_string(),
                }),
                Err(join) => Err(ScriptError {
                    message: format!("the script's thread failed: {join}"),
                    retry: false,
                }),
            }
        })
    }
}
