//! Guards (http, logs, ready, hooks), `approve`, and the seam for Rhai scripts.
//!
//! Guards only check. With `within D` a guard is retried with back-off (100 ms doubling to 2 s)
//! until it passes or D has passed; the last failure is reported.
//!
//! # Scripts
//!
//! `guard hook`, `guard rhai` and `check rhai` run through a [`ScriptRunner`]. The runner used by
//! the CLI comes from [`script_runner`]; until the Rhai engine lands it is [`Unsupported`], which
//! fails every script with a clear error (never a pass).
//!
//! | module | what it holds |
//! |---|---|
//! | this file | http, logs and ready guards, `approve`, `within`, the URL rewrite of rehearsals |
//! | [`client`] | the HTTP client: streamed bodies under a cap, redirects by rule, loopback only where asked |
//! | [`metric`] | `guard metric`: judging evaluations, the canary's [`metric::Tally`] |
//! | [`prometheus`] | the `/api/v1/query` client |
//! | [`script`] | the Rhai runner over the sandbox of [`crate::script`], with its cluster-backed host |

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};

use crate::check::program::{Guard, GuardKind, HttpBody, HttpCheck, Playbook, Script};
use crate::resolve::{Mode, Scope};

use crate::run::kube::Cluster;
use crate::run::{Cancel, Failure, Redactor};

pub mod client;
pub mod metric;
pub mod prometheus;
pub mod script;

/// A script to run: a hook file or inline Rhai (`guard rhai`, `check rhai`).
#[derive(Debug, Clone, Copy)]
pub enum ScriptRef<'a> {
    Hook {
        /// The file, resolved against the playbook's folder.
        path: &'a Path,
        /// The path as written in the playbook.
        shown: &'a str,
        /// The file's text, read by `check`.
        source: &'a str,
    },
    Inline(&'a Script),
}

/// What a script may see and use.
#[derive(Clone)]
pub struct ScriptContext {
    /// Every let of the env, as sent (secrets included: scripts may send them; never print them).
    pub vars: Map<String, Value>,
    /// The namespace the run acts in.
    pub namespace: String,
    /// The cluster (for `pods("workers")` and the like).
    pub cluster: Option<Cluster>,
    /// The playbook (components, their deployments and containers).
    pub playbook: Arc<Playbook>,
    /// Rewrites URLs to the simulator's services under `rehearse`; identity otherwise. Scripts
    /// that send HTTP requests must pass their URLs through it.
    pub rewrite: UrlRewrite,
    /// For `check rhai`: the guard's response as `{status, headers, body, json}`.
    pub response: Option<Value>,
    /// When the script must have finished (from `within`, or a default of 30 s).
    pub deadline: Instant,
    /// Ctrl-C.
    pub cancel: Cancel,
    /// Scrubs secrets from whatever the script says.
    pub redact: Redactor,
    /// The stage the script runs in, and the env.
    pub stage: String,
    pub env_name: String,
    /// Names of the lets in `vars` that are secrets: scripts get them only through `secret()`.
    pub secret_names: Vec<String>,
}

/// The verdict of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutcome {
    /// `true`, or `#{ ok: true }`.
    pub ok: bool,
    /// `#{ message: "…" }`, if any.
    pub message: Option<String>,
}

/// A script that could not run (compile error, thrown error, time-out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    pub message: String,
    /// Worth retrying under `within` (a thrown error may pass later; a missing engine or a
    /// compile error never will).
    pub retry: bool,
}

impl From<String> for ScriptError {
    fn from(message: String) -> Self {
        ScriptError {
            message,
            retry: true,
        }
    }
}

impl From<&str> for ScriptError {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// Runs Rhai scripts. An `Err` is a script that could not run: the guard fails with it.
pub trait ScriptRunner: Send + Sync {
    fn run<'a>(
        &'a self,
        script: ScriptRef<'a>,
        ctx: &'a ScriptContext,
    ) -> BoxFuture<'a, Result<ScriptOutcome, ScriptError>>;
}

/// The runner until Rhai lands: every script fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unsupported;

/// The message of [`Unsupported`].
pub const UNSUPPORTED: &str = "Rhai hooks are not supported yet";

impl ScriptRunner for Unsupported {
    fn run<'a>(
        &'a self,
        _script: ScriptRef<'a>,
        _ctx: &'a ScriptContext,
    ) -> BoxFuture<'a, Result<ScriptOutcome, ScriptError>> {
        Box::pin(async {
            Err(ScriptError {
                message: UNSUPPORTED.to_string(),
                retry: false,
            })
        })
    }
}

/// The script runner the CLI uses: the sandboxed Rhai engine of [`crate::script`].
pub fn script_runner() -> Arc<dyn ScriptRunner> {
    Arc::new(crate::run::guards::script::RhaiRunner)
}

/// Run one script through `runner` within its deadline; `Ok(detail)` when it holds.
pub async fn run_script(
    runner: &dyn ScriptRunner,
    script: ScriptRef<'_>,
    ctx: &ScriptContext,
) -> Result<String, Failure> {
    let left = ctx.deadline.saturating_duration_since(Instant::now());
    let what = match script {
        ScriptRef::Hook { shown, .. } => format!("hook {shown}"),
        ScriptRef::Inline(_) => "rhai check".to_string(),
    };
    let res = tokio::select! {
        r = runner.run(script, ctx) => r,
        _ = tokio::time::sleep(left.max(Duration::from_millis(1))) => Err(format!("timed out after {}", crate::run::log::output::fmt_elapsed(left)).into()),
        _ = ctx.cancel.wait() => return Err(Failure::interrupted()),
    };
    match res {
        Ok(o) if o.ok => Ok(o.message.map(|m| ctx.redact.redact(&m)).unwrap_or_default()),
        Ok(o) => Err(Failure::new(ctx.redact.redact(&format!(
            "{what} returned false{}",
            o.message.map(|m| format!(": {m}")).unwrap_or_default()
        )))),
        Err(e) => {
            let mut f = Failure::new(ctx.redact.redact(&format!("{what} failed: {}", e.message)));
            f.permanent = !e.retry;
            Err(f)
        }
    }
}

/// Scheme and host of URLs mapped to another base (`rehearse` routes the env's URLs to the
/// simulated services).
#[derive(Debug, Clone, Default)]
pub struct UrlRewrite {
    /// (`host[:port]` as written, `http://127.0.0.1:PORT`).
    pub map: Vec<(String, String)>,
    /// A rehearsal: a URL whose host is neither routed nor a loopback address is refused, so a
    /// rehearsal never reaches the network (not even a DNS lookup).
    pub confine: bool,
}

impl UrlRewrite {
    /// The URL as it is sent (unrouted URLs unchanged).
    pub fn apply(&self, url: &str) -> String {
        self.routed(url).unwrap_or_else(|| url.to_string())
    }

    /// The URL as it is sent, or why it may not be: under `confine`, an unrouted host that is
    /// not loopback.
    pub fn route(&self, url: &str) -> Result<String, String> {
        if let Some(u) = self.routed(url) {
            return Ok(u);
        }
        if self.confine && !is_loopback_url(url) {
            let host = host_of(url).unwrap_or(url);
            return Err(format!(
                "a rehearsal never leaves this machine, and `{host}` is not routed to the simulator"
            ));
        }
        Ok(url.to_string())
    }

    fn routed(&self, url: &str) -> Option<String> {
        let (scheme_end, rest) = url.split_once("://").map(|(s, r)| (s.len() + 3, r))?;
        let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let host = &rest[..host_end];
        self.map
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(host))
            .map(|(_, base)| format!("{base}{}", &url[scheme_end + host_end..]))
    }
}

/// `host[:port]` of an absolute URL.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Does the URL name this machine: `localhost`, 127.0.0.0/8 or `[::1]`?
pub(crate) fn is_loopback_url(url: &str) -> bool {
    let Some(hostport) = host_of(url) else {
        return false;
    };
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        hostport.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What guards need from the run.
pub struct GuardEnv<'a> {
    pub scope: &'a Scope<'a>,
    pub playbook: Arc<Playbook>,
    pub cluster: &'a Cluster,
    pub http: &'a reqwest::Client,
    pub rewrite: &'a UrlRewrite,
    pub scripts: &'a dyn ScriptRunner,
    pub cancel: &'a Cancel,
    pub redact: &'a Redactor,
    /// The stage being run (scripts see it as `stage`).
    pub stage: String,
    /// Inside a canary: its metric guards' evaluations so far (`failure_limit` spans them).
    pub tally: Option<&'a crate::run::guards::metric::Tally>,
}

impl GuardEnv<'_> {
    /// Every let this env can resolve, as sent.
    pub fn vars(&self) -> Map<String, Value> {
        let mut names: Vec<&str> = self.playbook.lets.iter().map(|l| l.name.as_str()).collect();
        if let Some(e) = self.scope.env {
            names.extend(e.lets.iter().map(|l| l.name.as_str()));
        }
        let mut out = Map::new();
        for n in names {
            if let Ok(v) = self.scope.let_value(n, Mode::Real) {
                let v = if self.scope.is_secret(n) {
                    v
                } else {
                    self.rewrite.apply(&v)
                };
                out.insert(n.to_string(), json!(v));
            }
        }
        out
    }

    fn script_ctx(&self, response: Option<Value>, deadline: Instant) -> ScriptContext {
        ScriptContext {
            vars: self.vars(),
            namespace: self.cluster.ns.clone(),
            cluster: Some(self.cluster.clone()),
            playbook: self.playbook.clone(),
            rewrite: self.rewrite.clone(),
            response,
            deadline,
            cancel: self.cancel.clone(),
            redact: self.redact.clone(),
            stage: self.stage.clone(),
            env_name: self.scope.env.map(|e| e.name.clone()).unwrap_or_default(),
            secret_names: self
                .playbook
                .lets
                .iter()
                .map(|l| l.name.as_str())
                .chain(
                    self.scope
                        .env
                        .into_iter()
                        .flat_map(|e| e.lets.iter().map(|l| l.name.as_str())),
                )
                .filter(|n| self.scope.is_secret(n))
                .map(str::to_string)
                .collect(),
        }
    }
}

/// Run a guard (with its `within`); `Ok(detail)` when it holds.
pub async fn run_guard(g: &Guard, env: &GuardEnv<'_>) -> Result<String, Failure> {
    let start = Instant::now();
    let deadline = g.within.map(|w| start + w);
    let mut backoff = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let attempt_deadline = deadline
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(30))
            .max(Instant::now() + Duration::from_secs(2));
        let res = attempt(g, env, attempt_deadline).await;
        match res {
            Ok(d) => {
                return Ok(if attempts > 1 {
                    format!("{d} (after {attempts} attempts)")
                        .trim()
                        .to_string()
                } else {
                    d
                })
            }
            Err(f) if f.is(crate::run::FailureKind::Interrupted) || f.permanent => return Err(f),
            Err(f) => {
                let Some(dl) = deadline else { return Err(f) };
                let now = Instant::now();
                if now >= dl {
                    let mut f = f;
                    f.message = format!(
                        "{} (still failing after {} and {attempts} attempts)",
                        f.message,
                        crate::run::log::output::fmt_elapsed(start.elapsed())
                    );
                    return Err(f);
                }
                let wait = backoff.min(dl - now);
                if !env.cancel.sleep(wait).await {
                    return Err(Failure::interrupted());
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn attempt(g: &Guard, env: &GuardEnv<'_>, deadline: Instant) -> Result<String, Failure> {
    match &g.kind {
        GuardKind::Http(h) => http(h, env, deadline).await,
        GuardKind::Metric(m) => crate::run::guards::metric::run(m, env).await,
        GuardKind::Logs { comp, pattern } => {
            let c = &env.playbook.components[*comp];
            let re = regex::Regex::new(pattern)
                .map_err(|e| Failure::new(format!("`{pattern}` is not a valid regex: {e}")))?;
            let lines = env.cluster.logs(c).await?;
            match lines.iter().find(|l| re.is_match(l)) {
                Some(l) => Ok(format!("matched: {}", l.trim())),
                None => Err(Failure::new(format!(
                    "no log line of {}'s pods matches `{pattern}` ({} lines read)",
                    c.name,
                    lines.len()
                ))),
            }
        }
        GuardKind::Ready { comp } => {
            let c = &env.playbook.components[*comp];
            for d in c.deployments() {
                if let Err(why) = env.cluster.ready(d).await? {
                    return Err(Failure::new(format!("{} is not ready: {why}", c.name)));
                }
            }
            Ok(String::new())
        }
        GuardKind::Hook {
            path,
            shown,
            source,
        } => {
            let ctx = env.script_ctx(None, deadline);
            run_script(
                env.scripts,
                ScriptRef::Hook {
                    path,
                    shown,
                    source,
                },
                &ctx,
            )
            .await
        }
        GuardKind::Rhai { script } => {
            let ctx = env.script_ctx(None, deadline);
            run_script(env.scripts, ScriptRef::Inline(script), &ctx).await
        }
    }
}

fn resolve_err(e: crate::resolve::ResolveError) -> Failure {
    Failure::new(e.to_string())
}

async fn http(h: &HttpCheck, env: &GuardEnv<'_>, deadline: Instant) -> Result<String, Failure> {
    let shown = env
        .scope
        .render(&h.url, Mode::Display)
        .map_err(resolve_err)?;
    let real = env.scope.render(&h.url, Mode::Real).map_err(resolve_err)?;
    let sent = env.rewrite.route(&real).map_err(Failure::new)?;
    let method = reqwest::Method::from_bytes(h.method.as_bytes())
        .map_err(|_| Failure::new(format!("`{}` is not an HTTP method", h.method)))?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(500), Duration::from_secs(30));
    let mut req = env.http.request(method, &sent).timeout(left);
    for (k, v) in &h.headers {
        req = req.header(k, env.scope.render(v, Mode::Real).map_err(resolve_err)?);
    }
    if let Some(b) = &h.bearer {
        req = req.bearer_auth(env.scope.let_value(b, Mode::Real).map_err(resolve_err)?);
    }
    match &h.body {
        Some(HttpBody::Json(v)) => req = req.json(v),
        Some(HttpBody::Text(t)) => {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(env.scope.render(t, Mode::Real).map_err(resolve_err)?)
        }
        None => {}
    }
    let what = format!("{} {shown}", h.method);
    let resp = tokio::select! {
        r = req.send() => r,
        _ = env.cancel.wait() => return Err(Failure::interrupted()),
    };
    let resp = resp.map_err(|e| {
        let mut f = Failure::new(format!("{what}: request failed: {}", describe_reqwest(&e)));
        // A redirect the rule refuses will be refused again.
        f.permanent = e.is_redirect();
        f
    })?;
    let status = resp.status().as_u16();
    let headers: Map<String, Value> = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
        .collect();
    // At most the cap is read (a longer body fails the guard, it is never held whole); a body
    // cut short is an error, never an empty answer.
    let body = crate::run::guards::client::read_body(resp, crate::run::guards::client::max_body())
        .await
        .map_err(|e| {
            let mut f = Failure::new(format!("{what} answered {status}, but {e}"));
            f.permanent = !e.retry();
            f
        })?;
    // Redact before cutting: a cut first could leave a secret's prefix behind.
    let snippet = || {
        let b = env.redact.redact_cut(body.trim(), 200);
        if b.is_empty() {
            String::new()
        } else {
            format!(": {b}")
        }
    };
    let status_ok = match h.expect_status {
        Some(s) => status == s,
        None => (200..300).contains(&status),
    };
    if !status_ok {
        let expected = h
            .expect_status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "a 2xx status".into());
        return Err(Failure::new(format!(
            "{what} answered {status}, expected {expected}{}",
            snippet()
        )));
    }
    for t in &h.expect_contains {
        let needle = env.scope.render(t, Mode::Real).map_err(resolve_err)?;
        if !body.contains(&needle) {
            let shown = env.scope.render(t, Mode::Display).map_err(resolve_err)?;
            return Err(Failure::new(format!(
                "{what} answered {status} but the body does not contain \"{shown}\"{}",
                snippet()
            )));
        }
    }
    if let Some(script) = &h.check {
        let json_body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let response =
            json!({"status": status, "headers": headers, "body": body, "json": json_body});
        let ctx = env.script_ctx(Some(response), deadline);
        run_script(env.scripts, ScriptRef::Inline(script), &ctx).await?;
    }
    Ok(format!("{status}"))
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

/// Does `approve` have a way to be answered? `--approve`, or a person at a terminal.
pub fn can_approve(flag: bool) -> bool {
    use std::io::IsTerminal;
    flag || (std::io::stdin().is_terminal() && std::io::stderr().is_terminal())
}

/// Ask a person (or take `--approve`). No terminal and no flag is a failure, never a yes.
pub async fn approve(question: &str, flag: bool, cancel: &Cancel) -> Result<String, Failure> {
    if flag {
        return Ok("approved by --approve".into());
    }
    if !can_approve(false) {
        return Err(Failure::new(format!(
            "approval needed (\"{question}\") but there is no terminal to ask on"
        ))
        .help("answer it interactively in a terminal, or pass --approve (for CI) once a person has agreed"));
    }
    let q = question.to_string();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, Write};
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "  ? {q} [y/N] ");
        let _ = err.flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        line
    });
    let line = tokio::select! {
        l = answer => l.unwrap_or_default(),
        _ = cancel.wait() => return Err(Failure::interrupted()),
    };
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok("approved".into()),
        "" => Err(Failure::new("not approved (no answer)")),
        other => Err(Failure::new(format!("not approved (answered `{other}`)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_keeps_path_and_query() {
        let r = UrlRewrite {
            map: vec![(
                "api.staging.example.com".into(),
                "http://127.0.0.1:9".into(),
            )],
            confine: false,
        };
        assert_eq!(
            r.apply("https://api.staging.example.com/readyz?x=1"),
            "http://127.0.0.1:9/readyz?x=1"
        );
        assert_eq!(
            r.apply("https://api.staging.example.com"),
            "http://127.0.0.1:9"
        );
        assert_eq!(r.apply("https://other/readyz"), "https://other/readyz");
    }

    #[test]
    fn a_rehearsal_never_leaves_loopback() {
        let r = UrlRewrite {
            map: vec![(
                "api.staging.example.com".into(),
                "http://127.0.0.1:9".into(),
            )],
            confine: true,
        };
        assert_eq!(
            r.route("https://api.staging.example.com/x").unwrap(),
            "http://127.0.0.1:9/x"
        );
        for ok in [
            "http://127.0.0.1:8080/a",
            "http://127.3.4.5/",
            "http://localhost:9/",
            "http://[::1]:9/x",
        ] {
            assert_eq!(r.route(ok).unwrap(), ok);
        }
        for refused in [
            "https://console.staging.internal/api/health",
            "http://10.0.0.1/",
            "http://user@evil.example.com/",
            "http://127.0.0.1.evil.example.com/",
        ] {
            let e = r.route(refused).unwrap_err();
            assert!(e.contains("never leaves this machine"), "{refused}: {e}");
        }
        let open = UrlRewrite {
            confine: false,
            ..r
        };
        assert!(open.route("https://console.staging.internal/").is_ok());
    }

    #[tokio::test]
    async fn unsupported_scripts_fail() {
        let ctx = ScriptContext {
            vars: Map::new(),
            namespace: "ns".into(),
            cluster: None,
            playbook: Arc::new(
                crate::check::check_text("x.ktplay", "playbook \"p\" {}")
                    .playbooks
                    .remove(0)
                    .1,
            ),
            rewrite: UrlRewrite::default(),
            response: None,
            deadline: Instant::now() + Duration::from_secs(1),
            stage: String::new(),
            env_name: String::new(),
            secret_names: vec![],
            cancel: Cancel::new(),
            redact: Redactor::default(),
        };
        let s = Script {
            text: "true".into(),
            span: Default::default(),
        };
        let e = run_script(&Unsupported, ScriptRef::Inline(&s), &ctx)
            .await
            .unwrap_err();
        assert!(e.message.contains(UNSUPPORTED), "{}", e.message);
    }
}
