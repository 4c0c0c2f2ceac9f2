//! Why requests drop during a rollout, as the real data path shows it (issue 22; measured in
//! `tests/realkube/README.md`, "Data path"), for the simulated services:
//!
//! - **Endpoint lag.** A deleted pod's endpoint stays in the proxies for [`ENDPOINT_LAG`] (the
//!   EndpointSlice controller's update and kube-proxy's sync: up to about 2 s on the project's
//!   data path). During that time a request may still be routed to it: it is answered if the
//!   pod still serves — its preStop hook sleeps (capped by its grace period) — and fails
//!   (`502`, "connection refused") if its process is already gone (no preStop hook, a shorter
//!   sleep, or a grace period that cuts the hook).
//! - **Loading.** A pod without a readinessProbe (or startupProbe) is Ready as soon as it starts,
//!   but does not answer for [`APP_STARTUP`] after its creation (the data path's gateway and api
//!   load policy for 2 s): requests routed to it then fail (`502`). With a probe, the simulator
//!   trusts it: Ready means loaded.
//!
//! What differs from the real data path: the failure is a `502` answer, not a refused or reset
//! connection; the app stops at once on SIGTERM (no drain); a hook that is not a sleep (httpGet,
//! another command) is trusted to keep the pod serving for its whole grace period; the lag is a
//! fixed 2 s, not a sync period's jitter; the simulated `/metrics` traffic does not count these
//! failures.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

/// How long a deleted pod's endpoint still receives requests.
pub const ENDPOINT_LAG: Duration = Duration::from_secs(2);
/// How long a pod's app takes to answer after the pod is created.
pub const APP_STARTUP: Duration = Duration::from_secs(2);

/// A deleted pod whose endpoint may still be in the proxies.
#[derive(Debug, Clone)]
pub struct Gone {
    pub ns: String,
    pub pod: Value,
    pub at: Instant,
    /// How long after the deletion it still answers (its preStop sleep, capped by its grace).
    pub serving: Duration,
}

/// The pods' lifetimes the services need: when each started, and the recently deleted.
#[derive(Debug, Default)]
pub struct Lifetimes {
    started: HashMap<(String, String), Instant>,
    gone: Vec<Gone>,
}

fn name(pod: &Value) -> String {
    pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn was_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

impl Lifetimes {
    /// A pod was created.
    pub fn started(&mut self, ns: &str, pod: &Value) {
        self.started
            .insert((ns.to_string(), name(pod)), Instant::now());
    }

    /// A pod was deleted: if it had an endpoint, it keeps it for [`ENDPOINT_LAG`].
    pub fn deleted(&mut self, ns: &str, pod: &Value) {
        self.started.remove(&(ns.to_string(), name(pod)));
        let now = Instant::now();
        self.gone
            .retain(|g| now.duration_since(g.at) < ENDPOINT_LAG);
        if was_ready(pod) {
            self.gone.push(Gone {
                ns: ns.to_string(),
                pod: pod.clone(),
                at: now,
                serving: serving_after_deletion(pod),
            });
        }
    }

    /// The deleted pods of `ns` still in the proxies whose labels `matches` accepts.
    pub fn lingering(
        &self,
        ns: &str,
        matches: impl Fn(Option<&Map<String, Value>>) -> bool,
    ) -> Vec<Gone> {
        let now = Instant::now();
        self.gone
            .iter()
            .filter(|g| g.ns == ns && now.duration_since(g.at) < ENDPOINT_LAG)
            .filter(|g| matches(g.pod["metadata"]["labels"].as_object()))
            .cloned()
            .collect()
    }

    /// Is this pod's app still loading (no readiness gate, created less than [`APP_STARTUP`]
    /// ago)?
    pub fn loading(&self, ns: &str, pod: &Value) -> bool {
        if gated(pod) {
            return false;
        }
        self.started
            .get(&(ns.to_string(), name(pod)))
            .is_some_and(|t| t.elapsed() < APP_STARTUP)
    }
}

/// Does every container have a readinessProbe or a startupProbe?
fn gated(pod: &Value) -> bool {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|c| c["readinessProbe"].is_object() || c["startupProbe"].is_object())
}

/// How long a pod keeps answering after its deletion: its shortest container's preStop sleep
/// (a hook that is not a sleep: the whole grace period), capped by its grace period; no hook: 0.
pub fn serving_after_deletion(pod: &Value) -> Duration {
    let grace = Duration::from_secs(
        pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30),
    );
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            prestop(&c["lifecycle"]["preStop"])
                .unwrap_or(grace)
                .min(grace)
        })
        .min()
        .unwrap_or(Duration::ZERO)
}

/// A preStop hook's sleep: `Some(0)` without a hook, `None` when it is not a sleep.
fn prestop(hook: &Value) -> Option<Duration> {
    if !hook.is_object() {
        return Some(Duration::ZERO);
    }
    if let Some(s) = hook["sleep"]["seconds"].as_u64() {
        return Some(Duration::from_secs(s));
    }
    let words: Vec<&str> = hook["exec"]["command"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let base = |w: &str| w.rsplit('/').next().unwrap_or(w).to_string();
    let secs = |w: &str| {
        w.trim_end_matches('s')
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    match words.as_slice() {
        [s, n, ..] if base(s) == "sleep" => secs(n).map(Duration::from_secs_f64),
        [sh, flag, script, ..]
            if flag.starts_with('-') && flag.contains('c') && base(sh).ends_with("sh") =>
        {
            let w: Vec<&str> = script
                .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|'))
                .filter(|w| !w.is_empty())
                .collect();
            let total: f64 = w
                .windows(2)
                .filter(|p| base(p[0]) == "sleep")
                .filter_map(|p| secs(p[1]))
                .sum();
            (total > 0.0).then(|| Duration::from_secs_f64(total))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(prestop: Value, grace: Option<u64>) -> Value {
        let mut p = json!({
            "metadata": {"name": "p", "labels": {"app": "gw"}},
            "spec": {"containers": [{"name": "gw", "lifecycle": {"preStop": prestop}}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        });
        if let Some(g) = grace {
            p["spec"]["terminationGracePeriodSeconds"] = json!(g);
        }
        p
    }

    #[test]
    fn serving_time_after_deletion() {
        let s = Duration::from_secs;
        assert_eq!(serving_after_deletion(&pod(Value::Null, None)), s(0));
        assert_eq!(
            serving_after_deletion(&pod(json!({"exec": {"command": ["sleep", "10"]}}), None)),
            s(10)
        );
        assert_eq!(
            serving_after_deletion(&pod(json!({"sleep": {"seconds": 10}}), Some(1))),
            s(1),
            "the grace period cuts the hook"
        );
        assert_eq!(
            serving_after_deletion(&pod(json!({"httpGet": {"path": "/drain"}}), Some(20))),
            s(20),
            "a hook that is not a sleep is trusted for the grace period"
        );
        assert_eq!(
            serving_after_deletion(&pod(
                json!({"exec": {"command": ["sh", "-c", "sleep 3; sleep 2"]}}),
                None
            )),
            s(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_pod_lingers_for_the_endpoint_lag() {
        let mut l = Lifetimes::default();
        let p = pod(Value::Null, None);
        l.started("ns", &p);
        l.deleted("ns", &p);
        let all = |_: Option<&Map<String, Value>>| true;
        assert_eq!(l.lingering("ns", all).len(), 1);
        assert!(l.lingering("other", all).is_empty());
        assert!(l
            .lingering("ns", |m| m.is_some_and(|m| m["app"] == "x"))
            .is_empty());
        tokio::time::advance(ENDPOINT_LAG).await;
        assert!(l.lingering("ns", all).is_empty());
        // A pod that was not ready had no endpoint.
        let mut not_ready = pod(Value::Null, None);
        not_ready["status"] = json!({});
        l.deleted("ns", &not_ready);
        assert!(l.lingering("ns", all).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_without_a_probe_loads_for_a_while() {
        let mut l = Lifetimes::default();
        let bare = pod(Value::Null, None);
        l.started("ns", &bare);
        assert!(l.loading("ns", &bare));
        let mut probed = bare.clone();
        probed["spec"]["containers"][0]["readinessProbe"] = json!({"httpGet": {"path": "/readyz"}});
        assert!(!l.loading("ns", &probed));
        tokio::time::advance(APP_STARTUP).await;
        assert!(!l.loading("ns", &bare));
    }
}
