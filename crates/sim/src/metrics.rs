//! Simulated traffic and what a real service would expose about it.
//!
//! Every [`TICK`] (a quarter second) every seeded component's main Service gets
//! [`REQUESTS_PER_SECOND`] (per second) simulated requests: split by the weights of an HTTPRoute
//! rule that sends to that Service (or of an ingress-nginx canary Ingress beside the Ingress that
//! does), then spread over each backend Service's ready pods (those its selector matches,
//! `pod-template-hash` included; so without a router a canary pod beside three stable ones takes
//! a quarter). Each pod's version answers them: 200, or 500 for the share an
//! `error-rate:C@V=SHARE` fault names; in [`BASE_LATENCY`] (half a little faster, half a little
//! slower), plus a `latency:C@V=D` fault's. The counters are
//! `http_requests_total{app,version,code}` and the histogram
//! `http_request_duration_seconds{app,version}` (`_bucket{le}`, `_sum`, `_count`), where `app` is
//! the component's name. `GET /metrics` serves them in the Prometheus text format; `GET|POST
//! /api/v1/query` evaluates an instant PromQL query over their last 15 minutes
//! ([`crate::promql`]), answering as Prometheus' HTTP API does.
//!
//! **Time.** Samples are stamped by the simulator's clock ([`Clock`]): tokio's, mapped to a Unix
//! time at the simulator's start, so under a paused runtime (`ktplay test`) a minute of
//! simulated traffic is a minute of samples and `rate(…[1m])` is requests per simulated second.
//!
//! **Cost.** The ticks are not run one by one. The split of the traffic (what each counter gains
//! per tick) only changes when the cluster does, so it is computed at the first tick after a
//! change of the objects it reads (pods, Services, Deployments, routers) or of the faults (a
//! task waits for those; leases, ConfigMaps and namespaces do not count), and kept, with the
//! tick it starts at, when it differs from the one before. The ticks are written only when a
//! query or a scrape needs them, each with the split of its moment, and a tick past the 15
//! minutes of history only adds to the counters: the samples are those of a tick every 250 ms,
//! and a run that never asks for them costs nothing per simulated second.

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
/// Upper bounds of the latency histogram, in seconds (Prometheus client defaults; the pod apps'
/// too, [`crate::app`]).
pub(crate) const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How much history `/api/v1/query` can see.
const KEEP_MS: i64 = 15 * 60 * 1000;
/// Time between traffic ticks (short, so a rehearsal's seconds-long canary has samples to
/// take a rate over).
pub const TICK: Duration = Duration::from_millis(250);

const TICK_MS: i64 = TICK.as_millis() as i64;

/// The simulator's clock: tokio's (paused in `ktplay test`, so it runs on simulated time),
/// mapped to milliseconds of Unix time at the simulator's start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: tokio::time::Instant,
    start_ms: i64,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            start: tokio::time::Instant::now(),
            start_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Now, in Unix milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        self.start_ms + self.start.elapsed().as_millis() as i64
    }

    fn instant(&self, t_ms: i64) -> tokio::time::Instant {
        self.start + Duration::from_millis((t_ms - self.start_ms).max(0) as u64)
    }

    /// The first tick at or after `t_ms`.
    fn tick_at_or_after(&self, t_ms: i64) -> i64 {
        let k = (t_ms - self.start_ms).max(0);
        self.start_ms + (k + TICK_MS - 1) / TICK_MS * TICK_MS
    }
}

/// The counters, their samples, and the traffic split the ticks are written with.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    now: BTreeMap<Labels, f64>,
    series: Series,
    samples: VecDeque<i64>,
    /// The last tick written.
    last_tick: Option<i64>,
    /// What each counter gains in one tick, as of the last tick written.
    per_tick: Vec<(Labels, f64)>,
    /// Splits computed since, each with the first tick it applies to (ascending).
    pending: VecDeque<(i64, Vec<(Labels, f64)>)>,
    /// `per_tick` as one gain per counter of `now`, in `now`'s order (`None`: to be rebuilt), so
    /// a tick adds without looking a label up.
    gains: Option<Vec<f64>>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Metrics {
    /// Write every tick from the last one written up to `t_ms` (inclusive), each with the split
    /// of its moment; ticks too old to be in the history after `t_ms` only add to the counters.
    fn advance(&mut self, clock: &Clock, t_ms: i64) {
        let mut next = match self.last_tick {
            Some(t) => t + TICK_MS,
            None => clock.start_ms,
        };
        let keep_from = t_ms - KEEP_MS;
        while next <= t_ms {
            while self.pending.front().is_some_and(|(t, _)| *t <= next) {
                self.per_tick = self.pending.pop_front().expect("checked").1;
                self.gains = None;
            }
            let gains = self.gains.get_or_insert_with(|| {
                // A counter appears at the first tick that names it (0 + gain is the gain).
                for (l, _) in &self.per_tick {
                    self.now.entry(l.clone()).or_insert(0.0);
                }
                let by: BTreeMap<&Labels, f64> =
                    self.per_tick.iter().map(|(l, b)| (l, *b)).collect();
                self.now
                    .keys()
                    .map(|l| by.get(l).copied().unwrap_or(0.0))
                    .collect()
            });
            for (v, by) in self.now.values_mut().zip(gains.iter()) {
                *v += by;
            }
            if next >= keep_from {
                self.sample(next);
            }
            self.last_tick = Some(next);
            next += TICK_MS;
        }
    }

    /// From tick `t_ms` on, the counters gain `split` a tick (unless that is what they gain then
    /// already).
    fn split_from(&mut self, t_ms: i64, split: Vec<(Labels, f64)>) {
        while self.pending.back().is_some_and(|(t, _)| *t >= t_ms) {
            self.pending.pop_back();
        }
        let current = self.pending.back().map_or(&self.per_tick, |(_, s)| s);
        if *current != split {
            self.pending.push_back((t_ms, split));
        }
    }

    /// Take a sample of every counter at `t_ms`.
    fn sample(&mut self, t_ms: i64) {
        if self.series.len() == self.now.len() {
            // The same labels (a series is made from a counter, and neither is ever removed), in
            // the same order: no look-ups.
            for (s, v) in self.series.values_mut().zip(self.now.values()) {
                s.push_back((t_ms, *v));
            }
        } else {
            for (l, v) in &self.now {
                match self.series.get_mut(l) {
                    Some(s) => s.push_back((t_ms, *v)),
                    None => {
                        self.series.insert(l.clone(), VecDeque::from([(t_ms, *v)]));
                    }
                }
            }
        }
        self.samples.push_back(t_ms);
        // Samples are in time order: the ones past the history drop off the front.
        let keep_after = t_ms - KEEP_MS;
        while self.samples.front().is_some_and(|t| *t < keep_after) {
            self.samples.pop_front();
        }
        for s in self.series.values_mut() {
            while s.front().is_some_and(|(t, _)| *t < keep_after) {
                s.pop_front();
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

/// Record `n` requests a tick to `app` at `version` taking `secs` each, `errors` of them 500s.
fn observe(
    into: &mut BTreeMap<Labels, f64>,
    app: &str,
    version: &str,
    n: f64,
    errors: f64,
    secs: f64,
) {
    let mut add = |l: Labels, by: f64| *into.entry(l).or_insert(0.0) += by;
    let base = |name: &str| labels(&[("__name__", name), ("app", app), ("version", version)]);
    let mut ok = base("http_requests_total");
    ok.insert("code".into(), "200".into());
    add(ok, n - errors);
    let mut bad = base("http_requests_total");
    bad.insert("code".into(), "500".into());
    add(bad, errors);
    // Half answer in 0.8× the time, half in 1.2×.
    for (share, t) in [(0.5, secs * 0.8), (0.5, secs * 1.2)] {
        for le in BUCKETS {
            let mut b = base("http_request_duration_seconds_bucket");
            b.insert("le".into(), format_float(le));
            add(b, if t <= le { n * share } else { 0.0 });
        }
        add(base("http_request_duration_seconds_sum"), n * share * t);
    }
    let mut inf = base("http_request_duration_seconds_bucket");
    inf.insert("le".into(), "+Inf".into());
    add(inf, n);
    add(base("http_request_duration_seconds_count"), n);
}

/// The split of one tick as the cluster is now: every component's requests of a [`TICK`], split
/// by its router's weights (if it has one) and then evenly over each backend's ready pods; what
/// each counter gains.
fn split(sim: &Sim) -> Vec<(Labels, f64)> {
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
    let mut gains = BTreeMap::new();
    for (app, version, n) in per_version {
        let parsed = semver::Version::parse(&version).ok();
        let (share, extra) = match &parsed {
            Some(v) => (faults.error_share(&app, v), faults.service_latency(&app, v)),
            None => (0.0, Duration::ZERO),
        };
        let secs = (BASE_LATENCY + extra).as_secs_f64();
        observe(&mut gains, &app, &version, n, n * share, secs);
    }
    gains.into_iter().collect()
}

fn following(sim: &Sim) -> bool {
    sim.inner
        .follow
        .read()
        .map(|f| f.is_some())
        .unwrap_or(false)
}

/// The ticks up to now written (with the split they had): before a query, a scrape, or a
/// change the split does not see (the faults).
pub(crate) fn catch_up(sim: &Sim) {
    let clock = sim.inner.clock;
    lock(&sim.inner.metrics).advance(&clock, clock.now_ms());
}

/// The split of the cluster as it is, from the tick at `t_ms` on (the ticks before it keep the
/// split they had; none is written here).
fn tick(sim: &Sim, t_ms: i64) {
    // Computed before the counters are locked: it reads the store.
    let per_tick = if following(sim) {
        Vec::new()
    } else {
        split(sim)
    };
    lock(&sim.inner.metrics).split_from(t_ms, per_tick);
}

/// Did anything the split reads change after `rv`? Leases, ConfigMaps and namespaces do not
/// move traffic; a gap in the kept events counts as a change.
fn traffic_changed(sim: &Sim, rv: u64) -> bool {
    use super::discovery::Kind;
    let store = lock(&sim.inner.store);
    store.oldest_resumable() > rv
        || store
            .events_since(rv)
            .any(|e| !matches!(e.kind, Kind::Lease | Kind::ConfigMap | Kind::Namespace))
}

/// Until the simulator is dropped: at the first tick after each change of the store or the
/// faults, the split as of then. Nothing runs while nothing changes.
pub(crate) async fn run(weak: Weak<Inner>) {
    let (mut changes, kick) = match weak.upgrade() {
        Some(inner) => (
            lock(&inner.store).subscribe(),
            Arc::clone(&inner.metrics_kick),
        ),
        None => return,
    };
    let mut due = true;
    // The resourceVersion the last split saw.
    let mut seen = 0;
    loop {
        if !due {
            let kicked = kick.notified();
            tokio::select! {
                r = changes.changed() => {
                    if r.is_err() { return }
                    let rv = *changes.borrow_and_update();
                    let Some(inner) = weak.upgrade() else { return };
                    if !traffic_changed(&Sim { inner }, seen) {
                        seen = rv;
                        continue;
                    }
                },
                _ = kicked => {}
            }
        }
        let (clock, next) = {
            let Some(inner) = weak.upgrade() else { return };
            let clock = inner.clock;
            let now = clock.now_ms();
            let mut next = clock.tick_at_or_after(now);
            if lock(&inner.metrics).last_tick.is_some_and(|t| t >= next) {
                next += TICK_MS;
            }
            (clock, next)
        };
        tokio::time::sleep_until(clock.instant(next)).await;
        let Some(inner) = weak.upgrade() else { return };
        // Changes until now are in this split.
        seen = *changes.borrow_and_update();
        tick(&Sim { inner }, next);
        due = false;
    }
}

/// `GET /metrics`.
pub(crate) async fn get_metrics(State(sim): State<Sim>) -> Response {
    catch_up(&sim);
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
    catch_up(sim);
    let t_ms = match p.time.as_deref() {
        None | Some("") => sim.inner.clock.now_ms(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Seed, SimConfig};

    async fn ask(sim: &Sim, q: &str) -> Value {
        let r = answer(
            sim,
            QueryParams {
                query: Some(q.into()),
                time: None,
            },
        );
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn number(v: &Value) -> f64 {
        v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .parse()
            .unwrap()
    }

    /// Under a paused clock (as in `ktplay test`) the samples are stamped with simulated time:
    /// two simulated minutes of 20 requests a second are 20 requests a second to `rate`, and
    /// 1200 to `increase` over one minute, taken at the simulated now.
    #[tokio::test(start_paused = true)]
    async fn rates_are_per_simulated_second_under_a_paused_clock() {
        let wall = std::time::Instant::now();
        let sim = Sim::new(SimConfig::default());
        sim.seed(&Seed::keeptrusts("ns", "1.4.0".parse().unwrap()));
        tokio::time::sleep(Duration::from_secs(120)).await;
        let rate = number(&ask(&sim, r#"sum(rate(http_requests_total{app="gateway"}[1m]))"#).await);
        assert!((rate - REQUESTS_PER_SECOND).abs() < 0.01, "rate {rate}");
        let inc = number(
            &ask(
                &sim,
                r#"sum(increase(http_requests_total{app="gateway",code="200"}[1m]))"#,
            )
            .await,
        );
        assert!(
            (inc - 60.0 * REQUESTS_PER_SECOND).abs() < 0.5,
            "increase {inc}"
        );
        // The answer's time is the simulated now, two minutes after the start.
        let v = ask(&sim, "1").await;
        let t = v["data"]["result"][0].as_f64().unwrap_or(0.0);
        let start = sim.inner.clock.start_ms as f64 / 1000.0;
        assert!((t - start - 120.0).abs() < 1.0, "{t} vs {start}");
        assert!(wall.elapsed() < Duration::from_secs(30));
    }

    /// Nothing asks for the traffic: ten simulated minutes write no tick (they cost nothing per
    /// simulated second); the first query then sees exactly the last 15 minutes, tick by tick.
    #[tokio::test(start_paused = true)]
    async fn ticks_are_written_only_when_asked_for() {
        let sim = Sim::new(SimConfig::default());
        sim.seed(&Seed::keeptrusts("ns", "1.4.0".parse().unwrap()));
        tokio::time::sleep(Duration::from_secs(20 * 60)).await;
        {
            let m = lock(&sim.inner.metrics);
            assert_eq!(m.last_tick, None);
            assert!(m.series.is_empty() && m.samples.is_empty());
        }
        let inc = number(
            &ask(
                &sim,
                r#"sum(increase(http_requests_total{app="gateway",code="200"}[1m]))"#,
            )
            .await,
        );
        assert!(
            (inc - 60.0 * REQUESTS_PER_SECOND).abs() < 0.5,
            "increase {inc}"
        );
        let m = lock(&sim.inner.metrics);
        let ticks = KEEP_MS / TICK_MS + 1;
        assert_eq!(m.samples.len() as i64, ticks);
        // The counters hold all twenty minutes (less the pods' start-up), not the last 15.
        let total: f64 = m
            .now
            .iter()
            .filter(|(l, _)| {
                l.get("__name__").map(String::as_str) == Some("http_requests_total")
                    && l.get("app").map(String::as_str) == Some("gateway")
            })
            .map(|(_, v)| v)
            .sum();
        assert!(
            total > 1140.0 * REQUESTS_PER_SECOND && total <= 1201.0 * REQUESTS_PER_SECOND,
            "total {total}"
        );
    }

    /// Ticks written in bulk are the ticks one by one: every 250 ms a sample, each with the
    /// split of its moment (a change of the traffic takes effect at the next tick).
    #[tokio::test(start_paused = true)]
    async fn bulk_ticks_sample_every_tick_with_the_split_of_its_moment() {
        let sim = Sim::new(SimConfig::default());
        sim.seed(&Seed::keeptrusts("ns", "1.4.0".parse().unwrap()));
        tokio::time::sleep(Duration::from_secs(10)).await;
        catch_up(&sim);
        {
            let m = lock(&sim.inner.metrics);
            let s = m
                .series
                .iter()
                .find(|(l, _)| {
                    l.get("__name__").map(String::as_str) == Some("http_requests_total")
                        && l.get("app").map(String::as_str) == Some("gateway")
                        && l.get("code").map(String::as_str) == Some("200")
                })
                .map(|(_, s)| s.clone())
                .unwrap();
            let times: Vec<i64> = s.iter().map(|(t, _)| *t).collect();
            assert!(
                times.windows(2).all(|w| w[1] - w[0] == TICK_MS),
                "{times:?}"
            );
            assert!(s.len() >= 39, "{}", s.len());
            let steps: Vec<f64> = s
                .iter()
                .zip(s.iter().skip(1))
                .map(|(a, b)| b.1 - a.1)
                .collect();
            assert!(
                steps.iter().all(|d| (d - 5.0).abs() < 1e-9),
                "5 requests a tick: {steps:?}"
            );
        }
        // A fault changes what the next ticks count, not the earlier ones.
        sim.set_fault(crate::Fault::ErrorRate {
            component: "gateway".into(),
            version: "1.4.0".parse().unwrap(),
            share: 0.5,
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        let errors = number(
            &ask(
                &sim,
                r#"sum(rate(http_requests_total{app="gateway",code="500"}[20s])) / sum(rate(http_requests_total{app="gateway"}[20s]))"#,
            )
            .await,
        );
        assert!((errors - 0.5).abs() < 1e-6, "{errors}");
        let before = number(
            &ask(
                &sim,
                r#"sum(increase(http_requests_total{app="gateway",code="500"}[1m]))"#,
            )
            .await,
        );
        // 30 s of half the 20 requests a second: 300 (none before the fault).
        assert!((before - 300.0).abs() < 12.0, "{before}");
    }
}
