//! Running a script: the sandbox of [`crate::script`] called directly, with its own types
//! ([`Context`], [`script::Outcome`], [`HookFailure`]), on a blocking thread; Ctrl-C and the
//! guard's deadline reach it through the engine's progress callback. [`ClusterHost`] is what
//! it reaches: HTTP under the env's reach, the cluster read-only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

use serde_json::Value;

use std::time::Duration;

use super::env::GuardEnv;
use crate::program::Workload;
use crate::run::kube::Cluster;
use crate::run::Failure;
use crate::script::{
    self, Context, HookFailure, Host, HostError, HttpResponse, Limits, PodInfo, ScriptSource,
};
use crate::span::FileId;

/// The largest response body a script's HTTP call reads.
pub const MAX_BODY: usize = 4 << 20;

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Run a hook or an inline script (`what` names it in messages: `hook FILE`, `rhai check`)
/// within `deadline`; `response` is the guard's answer inside `check rhai`. `Ok(detail)` when
/// it holds. A failure is redacted; it is permanent unless the script threw (it may pass later).
pub async fn run(
    env: &GuardEnv<'_>,
    what: String,
    text: &str,
    response: Option<HttpResponse>,
    deadline: Instant,
) -> Result<String, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    let failed = |message: String, retry: bool| {
        let mut f = Failure::new(env.redact.redact(&format!("{what} failed: {message}")));
        f.permanent = !retry;
        f
    };
    let res = tokio::select! {
        r = run_in_sandbox(env, text, response, deadline) => r,
        _ = tokio::time::sleep(left.max(Duration::from_millis(1))) => Err((format!("timed out after {}", crate::run::log::output::fmt_elapsed(left)), true)),
        _ = env.cancel.wait() => return Err(Failure::interrupted()),
    };
    match res {
        Ok(o) if o.ok => Ok(o.message.map(|m| env.redact.redact(&m)).unwrap_or_default()),
        Ok(o) => Err(Failure::new(env.redact.redact(&format!(
            "{what} returned false{}",
            o.message.map(|m| format!(": {m}")).unwrap_or_default()
        )))),
        Err((message, retry)) => Err(failed(message, retry)),
    }
}

/// The script's verdict with its `log` lines folded into the message, or why it did not run
/// (the words, and whether it is worth retrying under `within`).
async fn run_in_sandbox(
    env: &GuardEnv<'_>,
    text: &str,
    response: Option<HttpResponse>,
    deadline: Instant,
) -> Result<script::Outcome, (String, bool)> {
    // `check` compiled it already; compiling again is cheap and keeps the AST off the
    // checked program.
    let ast = script::compile(ScriptSource {
        text,
        file: FileId(0),
        offset: 0,
    })
    .map_err(|errs| {
        let first = errs.first().map(|(_, e)| e.to_string()).unwrap_or_default();
        (format!("does not compile: {first}"), false)
    })?;
    let vars_all = env.vars();
    let secret_names = env.secret_names();
    let env_name = env.scope.env.map(|e| e.name.clone()).unwrap_or_default();
    let components = env
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
        let urls: Vec<&str> = vars_all
            .iter()
            .filter(|(k, _)| !secret_names.contains(k))
            .filter_map(|(_, v)| v.as_str())
            .chain(env.rewrite.map.iter().map(|(_, base)| base.as_str()))
            .collect();
        let env_decl = env.playbook.env(&env_name);
        let patterns = env
            .playbook
            .allow_hosts
            .iter()
            .chain(env_decl.into_iter().flat_map(|e| e.allow_hosts.iter()))
            .chain(env.rewrite.map.iter().map(|(host, _)| host))
            .map(String::as_str);
        script::reach::Reach::new(urls, patterns)
    };
    let rewrite = env.rewrite.clone();
    // A redirect is held to the rule of the first request: the reachable hosts, and in
    // a rehearsal this machine only.
    let hop: super::client::HopRule = {
        let reach = reach.clone();
        let loopback = env.rewrite.confine.then(super::client::loopback_only);
        Arc::new(move |u: &str| {
            reach.check(u)?;
            loopback.as_ref().map_or(Ok(()), |l| l(u))
        })
    };
    let host = Arc::new(ClusterHost {
        handle: tokio::runtime::Handle::current(),
        http: super::client::client(hop),
        client: env.cluster.client.clone(),
        namespace: env.cluster.ns.clone(),
        components,
        rewrite: Arc::new(move |u: &str| {
            reach.check(u)?;
            rewrite.route(u)
        }),
    });
    let (mut vars, mut secrets) = (Vec::new(), Vec::new());
    for (k, v) in &vars_all {
        if secret_names.contains(k) {
            secrets.push((k.clone(), text_of(v)));
        } else {
            vars.push((k.clone(), text_of(v)));
        }
    }
    let flag = Arc::new(AtomicBool::new(false));
    let watcher = {
        let flag = flag.clone();
        let cancel = env.cancel.clone();
        tokio::spawn(async move {
            cancel.wait().await;
            flag.store(true, Ordering::Relaxed);
        })
    };
    let context = Context {
        vars,
        stage: env.stage.clone(),
        env_name,
        secrets,
        response,
        cancel: Some(flag),
    };
    let limits = Limits {
        deadline: deadline.saturating_duration_since(Instant::now()),
        ..Limits::default()
    };
    let result =
        tokio::task::spawn_blocking(move || script::run(&ast, &context, host, limits)).await;
    watcher.abort();
    match result {
        Ok(Ok(mut o)) => {
            if !o.logs.is_empty() {
                let logs = o.logs.join("; ");
                o.message = Some(match o.message {
                    Some(m) => format!("{m} (log: {logs})"),
                    None => format!("log: {logs}"),
                });
            }
            Ok(o)
        }
        Ok(Err(e)) => Err((e.to_string(), matches!(e, HookFailure::Thrown { .. }))),
        Err(join) => Err((format!("the script's thread failed: {join}"), false)),
    }
}

/// A component as the host needs it: its deployments and the container whose tag is the version.
#[derive(Debug, Clone)]
pub struct HostComponent {
    pub name: String,
    pub deployments: Vec<String>,
    pub container: String,
}

/// A URL as it is sent, or why it may not be sent.
pub type RouteFn = dyn Fn(&str) -> Result<String, String> + Send + Sync;

/// The real host: HTTP through reqwest, the cluster through kube, read-only.
pub struct ClusterHost {
    pub handle: tokio::runtime::Handle,
    pub http: reqwest::Client,
    pub client: kube::Client,
    pub namespace: String,
    pub components: Vec<HostComponent>,
    /// Rewrites URLs before they are requested (rehearsals route env URLs to the simulator),
    /// or refuses them (a rehearsal never leaves loopback).
    pub rewrite: Arc<RouteFn>,
}

impl ClusterHost {
    fn component(&self, name: &str) -> Result<&HostComponent, HostError> {
        self.components
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.components.iter().map(|c| c.name.as_str()).collect();
                HostError(format!(
                    "no component `{name}`; the playbook has {}",
                    names.join(", ")
                ))
            })
    }

    /// The cluster as the kube layer sees it.
    fn cluster(&self) -> Cluster {
        Cluster::new(self.client.clone(), self.namespace.clone())
    }
}

impl Host for ClusterHost {
    fn http(
        &self,
        method: &str,
        url: &str,
        body: Option<String>,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<HttpResponse, HostError> {
        let url = (self.rewrite)(url).map_err(HostError)?;
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| HostError(e.to_string()))?;
        let mut req = self.http.request(method, &url).timeout(timeout);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        self.handle.block_on(async move {
            let resp = req
                .send()
                .await
                .map_err(|e| HostError(format!("request failed: {}", host_error_words(&e))))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect();
            // A body is at most MAX_BODY: a script's memory budget must not be spent in one call.
            let mut resp = resp;
            let mut bytes = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| {
                HostError(format!("reading the body failed: {}", host_error_words(&e)))
            })? {
                if bytes.len() + chunk.len() > MAX_BODY {
                    return Err(HostError(format!(
                        "the response body is larger than {} MiB",
                        MAX_BODY >> 20
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            let body = String::from_utf8_lossy(&bytes).into_owned();
            Ok(HttpResponse {
                status,
                body,
                headers,
            })
        })
    }

    fn kube_get(&self, kind: &str, name: &str) -> Result<Value, HostError> {
        let cluster = self.cluster();
        self.handle
            .block_on(cluster.object_json(kind, name))
            .map_err(HostError)
    }

    fn pods(&self, component: &str) -> Result<Vec<PodInfo>, HostError> {
        let comp = self.component(component)?;
        let cluster = self.cluster();
        self.handle
            .block_on(cluster.pod_infos(&comp.deployments, &comp.container))
            .map_err(HostError)
    }
    fn versions(&self, component: &str) -> Result<Vec<String>, HostError> {
        let mut v: Vec<String> = self
            .pods(component)?
            .into_iter()
            .map(|p| p.version)
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }
}

/// reqwest errors print the URL, which may carry a query the playbook considers private; keep
/// the reason only.
fn host_error_words(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        let text = e.to_string();
        let mut s: String = text.split(" for url").next().unwrap_or(&text).to_string();
        // The reason a redirect was not followed is in the source.
        let mut src = std::error::Error::source(e);
        while let Some(inner) = src {
            s.push_str(&format!(": {inner}"));
            src = inner.source();
        }
        s.chars().take(300).collect()
    }
}
