//! Simulated traffic and what a real service would expose about it.
//!
//! Every [`TICK`] (a quarter second) every seeded component's main Service gets
//! [`REQUESTS_PER_SECOND`] (per second) simulated requests: split by the weights of an HTTPRoute
//! rule that sends to that Service (or of an ingress-nginx canary Ingress beside the Ingress that
//! does), then spread over each backend Service's ready pods (so without a router a canary pod
//! beside three stable ones takes a quarter). Each pod's version answers them: 200, or 500 for the share an
//! `error-rate:C@V=SHARE` fault names; in [`BASE_LATENCY`] (half a little faster, half a little
//! slower), plus a `latency:C@V=D` fault's. The counters are
//! `http_requests_total{app,version,code}` and the histogram
//! `http_request_duration_seconds{app,version}` (`_bucket{le}`, `_sum`, `_count`), where `app` is
//! the component's name. `GET /metrics` serves them in the Prometheus text format; `GET|POST
//! /api/v1/query` evaluates an instant PromQL query over their last 15 minutes
//! ([`crate::promql`]), answering as Prometheus' HTTP API does.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::promql::{self, format_float, Labels, Series, Val};
use super::services::{self, Selects};
use super::{lock, Inner, Sim};

/// Simulated requests per second to each component.
pub const REQUESTS_PER_SECOND: f64 = 20.0;
/// How long a pod takes to answer, before faults.
pub const BASE_LATENCY: Duration = Duration::from_millis(40);
/// Upper bounds of the latency histogram, in seconds (Prometheus client defaults).
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How much history `/api/v1/query` can see.
const KEEP_MS: i64 = 15 * 60 * 1000;
/// Time between traffic ticks (short, so a rehearsal's seconds-long canary has samples to
/// take a rate over).
pub const TICK: Duration = Duration::from_millis(250);

/// The counters and their samples.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    now: BTreeMap<Labels, f64>,
    series: Series,
    samples: VecDeque<i64>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Metrics {
    fn add(&mut self, l: Labels, by: f64) {
        *self.now.entry(l).or_insert(0.0) += by;
    }

    /// Record `n` requests to `app` at `version` taking `secs` each, `errors` of them 500s.
    fn observe(&mut self, app: &str, version: &str, n: f64, errors: f64, secs: f64) {
        let base = |name: &str| labels(&[("__name__", name), ("app", app), ("version", version)]);
        let mut ok = base("http_requests_total");
        ok.insert("code".into(), "200".into());
        self.add(ok, n - errors);
        let mut bad = base("http_requests_total");
        bad.insert("code".into(), "500".into());
        self.add(bad, errors);
        // Half answer in 0.8× the time, half in 1.2×.
        for (share, t) in [(0.5, secs * 0.8), (0.5, secs * 1.2)] {
            for le in BUCKETS {
                let mut b = base("http_request_duration_seconds_bucket");
                b.insert("le".into(), format_float(le));
                self.add(b, if t <= le { n * share } else { 0.0 });
            }
            self.add(base("http_request_duration_seconds_sum"), n * share * t);
        }
        let mut inf = base("http_request_duration_seconds_bucket");
        inf.insert("le".into(), "+Inf".into());
        self.add(inf, n);
        self.add(base("http_request_duration_seconds_count"), n);
    }

    /// Take a sample of every counter at `t_ms`.
    fn sample(&mut self, t_ms: i64) {
        for (l, v) in &self.now {
            self.series.entry(l.clone()).or_default().push((t_ms, *v));
        }
        self.samples.push_back(t_ms);
        while self.samples.front().is_some_and(|t| *t < t_ms - KEEP_MS) {
            let cut = self.samples.pop_front().unwrap_or_default();
            for s in self.series.values_mut() {
                s.retain(|(t, _)| *t > cut);
            }
        }
    }

    /// The text exposition format.
    fn text(&self) -> String {
        let mut out = String::new();
        let mut last_family = String::new();
        for (l, v) in &self.now {
            let name = l.get("__name__").cloned().unwrap_or_default();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .to_string();
            if family != last_family {
                let (kind, help) = if family == "http_requests_total" {
                    ("counter", "Requests answered, by version and status code.")
                } else {
                    ("histogram", "Time taken to answer, in seconds.")
                };
                out.push_str(&format!("# HELP {family} {help}\n# TYPE {family} {kind}\n"));
                last_family = family;
            }
            let inner: Vec<String> = l
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            out.push_str(&format!(
                "{name}{{{}}} {}\n",
                inner.join(","),
                format_float(*v)
            ));
        }
        out
    }
}

/// The backends a component's traffic goes to, by weight: the rule of an HTTPRoute that sends
/// to its Service, or an ingress-nginx canary Ingress beside the one that does; without either,
/// all of it to the Service.
fn backends(sim: &Sim, ns: &str, service: &str) -> Vec<(String, f64)> {
    use super::discovery::Kind;
    use super::store::str_at;
    let store = lock(&sim.inner.store);
    for route in store.iter(Kind::HttpRoute, Some(ns)) {
        for rule in route["spec"]["rules"].as_array().into_iter().flatten() {
            let refs: Vec<(String, f64)> = rule["backendRefs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| {
                    let name = b["name"].as_str()?.to_string();
                    Some((name, b["weight"].as_f64().unwrap_or(1.0)))
                })
                .collect();
            if refs.iter().any(|(n, _)| n == service) {
                return refs;
            }
        }
    }
    let backend_of = |ing: &Value| -> Option<String> {
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
            .as_str()
            .map(str::to_string)
    };
    let ingresses: Vec<Value> = store.iter(Kind::Ingress, Some(ns)).cloned().collect();
    for stable in &ingresses {
        let canary_of = |i: &Value| {
            str_at(
                i,
                &[
                    "metadata",
                    "annotations",
                    "nginx.ingress.kubernetes.io/canary",
                ],
            ) == Some("true")
        };
        if canary_of(stable) || backend_of(stable).as_deref() != Some(service) {
            continue;
        }
        let rules = &stable["spec"]["rules"][0];
        for c in ingresses.iter().filter(|i| canary_of(i)) {
            // ingress-nginx pairs a canary with the Ingress of the same host and path.
            if c["spec"]["rules"][0]["host"] != rules["host"] {
                continue;
            }
            let w = str_at(
                c,
                &[
                    "metadata",
                    "annotations",
                    "nginx.ingress.kubernetes.io/canary-weight",
                ],
            )
            .and_then(|w| w.parse::<f64>().ok())
            .unwrap_or(0.0)
            .clamp(0.0, 100.0);
            if let Some(cb) = backend_of(c) {
                return vec![(service.to_string(), 100.0 - w), (cb, w)];
            }
        }
    }
    vec![(service.to_string(), 1.0)]
}

/// One traffic tick: every component's requests of the last [`TICK`], split by its router's
/// weights (if it has one) and then evenly over each backend's ready pods.
pub(crate) fn tick(sim: &Sim, t_ms: i64) {
    let faults = sim.faults();
    let roles = services::roles(sim);
    let mut per_version: Vec<(String, String, f64)> = Vec::new();
    for target in services::targets(sim)
        .into_iter()
        .filter(|t| t.colour.is_none())
    {
        let Selects::Service(service) = &target.selects else {
            continue;
        };
        let split = backends(sim, &target.namespace, service);
        let total_weight: f64 = split.iter().map(|(_, w)| w).sum();
        if total_weight <= 0.0 {
            continue;
        }
        for (backend, w) in split {
            let t = services::Target {
                selects: Selects::Service(backend),
                ..target.clone()
            };
            let Some(sel) = services::selector_of(sim, &t) else {
                continue;
            };
            let pods = services::ready_pods(sim, &target.namespace, &sel);
            let versions: Vec<String> = pods
                .iter()
                .filter_map(|p| services::pod_role(&roles, p))
                .filter_map(|(_, v)| v.map(|v| v.to_string()))
                .collect();
            if versions.is_empty() {
                continue;
            }
            let share = w / total_weight;
            let each = REQUESTS_PER_SECOND * TICK.as_secs_f64() * share / versions.len() as f64;
            for v in versions {
                per_version.push((target.component.clone(), v, each));
            }
        }
    }
    let mut m = lock(&sim.inner.metrics);
    for (app, version, n) in per_version {
        let parsed = semver::Version::parse(&version).ok();
        let (share, extra) = match &parsed {
            Some(v) => (faults.error_share(&app, v), faults.service_latency(&app, v)),
            None => (0.0, Duration::ZERO),
        };
        let secs = (BASE_LATENCY + extra).as_secs_f64();
        m.observe(&app, &version, n, n * share, secs);
    }
    m.sample(t_ms);
}

/// Run traffic ticks until the simulator is dropped.
pub(crate) async fn run(weak: Weak<Inner>) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let sim = Sim {
            inner: Arc::clone(&inner),
        };
        if sim
            .inner
            .follow
            .read()
            .map(|f| f.is_some())
            .unwrap_or(false)
        {
            continue;
        }
        tick(&sim, chrono::Utc::now().timestamp_millis());
    }
}

/// `GET /metrics`.
pub(crate) async fn get_metrics(State(sim): State<Sim>) -> Response {
    let text = lock(&sim.inner.metrics).text();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct QueryParams {
    query: Option<String>,
    time: Option<String>,
}

fn bad_data(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"status": "error", "errorType": "bad_data", "error": message})),
    )
        .into_response()
}

/// Evaluate an instant query as Prometheus' `/api/v1/query` does.
pub(crate) fn answer(sim: &Sim, p: QueryParams) -> Response {
    let Some(q) = p.query.filter(|q| !q.trim().is_empty()) else {
        return bad_data("invalid parameter \"query\": query must not be empty".into());
    };
    let t_ms = match p.time.as_deref() {
        None | Some("") => chrono::Utc::now().timestamp_millis(),
        Some(t) => match t.parse::<f64>() {
            Ok(secs) => (secs * 1000.0) as i64,
            Err(_) => match chrono::DateTime::parse_from_rfc3339(t) {
                Ok(d) => d.timestamp_millis(),
                Err(_) => {
                    return bad_data(format!(
                        "invalid parameter \"time\": cannot parse \"{t}\" to a valid timestamp"
                    ))
                }
            },
        },
    };
    let result = {
        let m = lock(&sim.inner.metrics);
        promql::query(&q, t_ms, &m.series)
    };
    let t = t_ms as f64 / 1000.0;
    let data = match result {
        Err(e) => return bad_data(format!("invalid parameter \"query\": {e}")),
        Ok(Val::Scalar(v)) => json!({"resultType": "scalar", "result": [t, format_float(v)]}),
        Ok(Val::Vector(v)) => {
            let result: Vec<Value> = v
                .into_iter()
                // Prometheus drops NaN only where the query does; a 0/0 stays NaN.
                .map(|(l, x)| {
                    let metric: serde_json::Map<String, Value> =
                        l.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                    json!({"metric": metric, "value": [t, format_float(x)]})
                })
                .collect();
            json!({"resultType": "vector", "result": result})
        }
    };
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

pub(crate) async fn get_query(State(sim): State<Sim>, Query(p): Query<QueryParams>) -> Response {
    answer(&sim, p)
}

pub(crate) async fn post_query(
    State(sim): State<Sim>,
    axum::Form(p): axum::Form<QueryParams>,
) -> Response {
    answer(&sim, p)
}
