//! What every HTTP request of a run shares: a cap on response bodies, and a redirect policy that
//! holds each hop to the rule of the first request.
//!
//! - **Bodies** are read as a stream, chunk by chunk, up to [`max_body`] bytes (16 MiB; the
//!   environment variable `KTPLAY_MAX_BODY` sets another number of bytes). A longer body stops
//!   the read at the cap: the guard fails, saying so, and the rollback runs; nothing larger than
//!   the cap is ever held in memory. A body cut short (a time-out, a reset) is an error that says
//!   how much arrived, never an empty answer.
//! - **Redirects** are followed (at most 10) only to a URL the same rule allows as the first
//!   request: in a rehearsal, this machine only (`localhost`, 127.0.0.0/8, `[::1]`); in a run,
//!   the hosts the env names ([`env_reach`]: its URL lets, its guard URLs, `--route` targets,
//!   `allow_hosts`). A refused hop fails the request before any connection or DNS lookup.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::program::{Colour, Env, GuardKind, LetValue, Op, Playbook};
use crate::resolve::{Live, Mode, Scope};
use crate::script::reach::Reach;

/// The default cap on a response body, in bytes.
pub(crate) const DEFAULT_MAX_BODY: usize = 16 << 20;

/// The cap on a response body: `KTPLAY_MAX_BODY` (bytes) when set to a number, else
/// [`DEFAULT_MAX_BODY`].
pub(crate) fn max_body() -> usize {
    std::env::var("KTPLAY_MAX_BODY")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_BODY)
}

/// `n` bytes for people.
pub(crate) fn fmt_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// Why a body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Longer than `cap` bytes: reading stopped there.
    TooLarge { cap: usize },
    /// The stream ended in an error after `read` bytes (`timeout`: the request's time ran out).
    Cut {
        read: usize,
        timeout: bool,
        reason: String,
    },
}

impl BodyError {
    /// Worth asking again: a cut body may arrive whole next time; a body over the cap will not.
    pub(crate) fn retry(&self) -> bool {
        matches!(self, BodyError::Cut { .. })
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { cap } => write!(
                f,
                "the response body is larger than {}, the most ktplay reads (KTPLAY_MAX_BODY sets another cap in bytes); reading stopped there",
                fmt_bytes(*cap)
            ),
            BodyError::Cut {
                read,
                timeout: true,
                ..
            } => write!(
                f,
                "the response body did not arrive in time: cut after {}",
                fmt_bytes(*read)
            ),
            BodyError::Cut { read, reason, .. } => write!(
                f,
                "the response body was cut after {}: {reason}",
                fmt_bytes(*read)
            ),
        }
    }
}

/// Read `resp`'s body, at most `cap` bytes, as text (invalid UTF-8 replaced).
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<String, BodyError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge { cap });
    }
    let mut bytes: Vec<u8> = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > cap {
                    return Err(BodyError::TooLarge { cap });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(BodyError::Cut {
                    read: bytes.len(),
                    timeout: e.is_timeout(),
                    reason: without_url(&e),
                })
            }
        }
    }
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// A reqwest error's reason without the URL (which may carry a query the playbook keeps private).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(i) = s.find(" for url (") {
        s.truncate(i);
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

/// Which URLs a request may be redirected to: `Err(why)` refuses the hop.
pub(crate) type HopRule = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The most redirects one request follows.
const MAX_REDIRECTS: usize = 10;

/// A redirect policy that asks `rule` about every hop.
pub(crate) fn redirect_policy(rule: HopRule) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        match rule(attempt.url().as_str()) {
            Ok(()) => attempt.follow(),
            Err(why) => attempt.error(format!("redirect not followed: {why}")),
        }
    })
}

/// The client of a run's guards: connection time-out, redirects held to `rule`, and a new
/// connection for every request (as the monitors): a reused one stays with the pod that answered
/// it before, which a rollout may since have deleted (the request then fails with "connection
/// closed before message completed") or which still runs the old version.
pub(crate) fn client(rule: HopRule) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .redirect(redirect_policy(rule))
        .build()
        .unwrap_or_default()
}

/// The rule of a rehearsal: this machine only.
pub(crate) fn loopback_only() -> HopRule {
    Arc::new(|url: &str| {
        if is_loopback_url(url) {
            Ok(())
        } else {
            Err(format!(
                "a rehearsal never leaves this machine, and `{}` is not on it",
                crate::script::reach::host_of(url).unwrap_or_else(|| url.to_string())
            ))
        }
    })
}

/// The rule of guards: a rehearsal's ([`loopback_only`]), or in a run the env's hosts.
pub(crate) fn guard_rule(pb: &Playbook, env: Option<&Env>, rewrite: &UrlRewrite) -> HopRule {
    if rewrite.confine {
        return loopback_only();
    }
    let reach = env_reach(pb, env, rewrite);
    Arc::new(move |url: &str| {
        reach.check(url).map_err(|_| {
            format!(
                "`{}` is not a host this env names; list it with `allow_hosts` in the playbook or the env to allow it",
                crate::script::reach::host_of(url).unwrap_or_else(|| url.to_string())
            )
        })
    })
}

/// The hosts an env names: those of its and the playbook's URL lets (secrets left out), of its
/// http and metric guards' URLs, of `--route` targets, and its and the playbook's `allow_hosts`.
pub(crate) fn env_reach(pb: &Playbook, env: Option<&Env>, rewrite: &UrlRewrite) -> Reach {
    let mut urls: Vec<String> = Vec::new();
    // Blue-green URLs name a colour: take both.
    for colour in [Colour::Blue, Colour::Green] {
        let live = Live {
            colours: (pb.components.iter().enumerate())
                .filter(|(_, c)| c.is_blue_green())
                .map(|(i, _)| (i, colour))
                .collect(),
            secrets: HashMap::new(),
        };
        let scope = Scope::new(pb, env, &live);
        let lets = pb
            .lets
            .iter()
            .chain(env.into_iter().flat_map(|e| e.lets.iter()));
        for l in lets {
            if scope.is_secret(&l.name) {
                continue;
            }
            if let (LetValue::Text(_), Ok(v)) = (&l.value, scope.let_value(&l.name, Mode::Real)) {
                urls.push(v);
            }
        }
        for st in pb.statements() {
            let Op::Guard(g) = &st.op else { continue };
            let t = match &g.kind {
                GuardKind::Http(h) => &h.url,
                GuardKind::Metric(m) => &m.url,
                _ => continue,
            };
            if let Ok(u) = scope.render(t, Mode::Real) {
                urls.push(u);
            }
        }
        // The monitors' URLs (issue 22): their hosts are the env's too.
        for m in pb.monitors_for(env.map(|e| e.name.as_str())) {
            if let Ok(u) = scope.render(&m.probe.url, Mode::Real) {
                urls.push(u);
            }
        }
    }
    urls.extend(rewrite.map.iter().map(|(_, base)| base.clone()));
    let patterns: Vec<&str> = pb
        .allow_hosts
        .iter()
        .chain(env.into_iter().flat_map(|e| e.allow_hosts.iter()))
        .chain(rewrite.map.iter().map(|(host, _)| host))
        .map(String::as_str)
        .collect();
    Reach::new(urls.iter().map(String::as_str), patterns)
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A server on `ip` answering `/` with a redirect to `to` (or 200 when `to` is empty),
    /// counting its requests.
    async fn server(ip: &str, to: Arc<std::sync::Mutex<String>>) -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/",
            get(move || {
                let h = h.clone();
                let to = to.lock().unwrap().clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    if to.is_empty() {
                        axum::response::Response::new(axum::body::Body::from("ok"))
                    } else {
                        axum::response::Response::builder()
                            .status(307)
                            .header("location", to)
                            .body(axum::body::Body::empty())
                            .unwrap()
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind(format!("{ip}:0"))
            .await
            .unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        (format!("http://{ip}:{port}/"), hits)
    }

    #[tokio::test]
    async fn redirects_are_held_to_the_rule_of_the_first_request() {
        // The second server is this machine too, but reached as 0.0.0.0 (not loopback by the
        // rule) and as another host than the env names: a followed hop would count there.
        let (other, other_hits) = server("0.0.0.0", Arc::new(Default::default())).await;
        let to = Arc::new(std::sync::Mutex::new(other.clone()));
        let (first, _) = server("127.0.0.1", to.clone()).await;
        let reach = Reach::new([first.as_str()], []);
        let env_rule: HopRule = Arc::new(move |u: &str| reach.check(u));
        for rule in [loopback_only(), env_rule] {
            let e = client(rule).get(&first).send().await.unwrap_err();
            assert!(e.is_redirect(), "{e:?}");
            let why = without_url(&e);
            assert!(why.contains("redirect not followed"), "{why}");
            assert!(why.contains("0.0.0.0"), "{why}");
        }
        assert_eq!(other_hits.load(Ordering::SeqCst), 0);
        // A hop the rule allows is followed.
        let open: HopRule = Arc::new(|_: &str| Ok(()));
        *to.lock().unwrap() = other;
        let r = client(open).get(&first).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(other_hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn bodies_stop_at_the_cap() {
        let app = axum::Router::new()
            .route(
                "/endless",
                get(|| async {
                    let chunk = bytes_of(64 << 10);
                    let s = futures::stream::repeat_with(move || {
                        Ok::<_, std::io::Error>(chunk.clone())
                    });
                    axum::body::Body::from_stream(s)
                }),
            )
            .route(
                "/trickle",
                get(|| async {
                    use futures::StreamExt;
                    let s = futures::stream::once(async { Ok::<_, std::io::Error>(bytes_of(10)) })
                        .chain(futures::stream::pending());
                    axum::body::Body::from_stream(s)
                }),
            )
            .route("/small", get(|| async { "{\"a\":1}" }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let c = reqwest::Client::new();
        let r = c
            .get(format!("http://{addr}/endless"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            read_body(r, 1 << 20).await,
            Err(BodyError::TooLarge { cap: 1 << 20 })
        );
        let r = c.get(format!("http://{addr}/small")).send().await.unwrap();
        assert_eq!(read_body(r, 1 << 20).await.unwrap(), "{\"a\":1}");
        // A body cut by the time-out says so, with how much arrived.
        let r = c
            .get(format!("http://{addr}/trickle"))
            .timeout(Duration::from_millis(300))
            .send()
            .await
            .unwrap();
        match read_body(r, usize::MAX).await {
            Err(e @ BodyError::Cut { timeout: true, .. }) => {
                assert!(e.to_string().contains("did not arrive in time"), "{e}");
                assert!(e.to_string().contains("cut after 10 bytes"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    fn bytes_of(n: usize) -> axum::body::Bytes {
        axum::body::Bytes::from(vec![b'x'; n])
    }
}
