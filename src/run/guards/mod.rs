//! Guards (http, logs, ready, hooks), `approve`, and Rhai scripts.
//!
//! Guards only check. With `within D` a guard is retried with back-off (100 ms doubling to 2 s)
//! until it passes or D has passed; the last failure is reported.
//!
//! # Scripts
//!
//! `guard hook`, `guard rhai` and `check rhai` run in the sandbox of [`crate::script`], called
//! directly with its own types ([`script::run`]) against [`script::ClusterHost`].
//!
//! Imports go one way: this file → `metric`, `script` → `env` → `tally`, `client`.
//!
//! | module | what it holds |
//! |---|---|
//! | this file | http, logs and ready guards, `approve`, `within` |
//! | [`env`] | [`GuardEnv`]: what guards need from the run |
//! | [`client`] | the HTTP client: streamed bodies under a cap, redirects by rule, loopback only where asked; the URL rewrite of rehearsals ([`UrlRewrite`]) |
//! | [`metric`] | `guard metric`: judging evaluations |
//! | [`tally`] | the canary's metric analysis ([`tally::Tally`]): counts, data, when each guard is due |
//! | [`prometheus`] | the `/api/v1/query` client |
//! | [`script`] | running a script in the sandbox of [`crate::script`], with its cluster-backed host |

use std::time::Duration;
use tokio::time::Instant;

use serde_json::{json, Map, Value};

use crate::program::{Guard, GuardKind, HttpBody, HttpCheck};
use crate::resolve::Mode;

use crate::run::{Cancel, Failure};

pub(crate) mod client;
pub(crate) mod env;
pub(crate) mod metric;
pub(crate) mod prometheus;
pub mod script;
pub(crate) mod tally;

pub use client::UrlRewrite;
pub use env::GuardEnv;

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
        GuardKind::Hook { shown, source, .. } => {
            script::run(env, format!("hook {shown}"), source, None, deadline).await
        }
        GuardKind::Rhai { script } => {
            script::run(env, "rhai check".to_string(), &script.text, None, deadline).await
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
        let response = crate::script::HttpResponse {
            status,
            body: body.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
        };
        let what = "rhai check".to_string();
        script::run(env, what, &script.text, Some(response), deadline).await?;
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
}
