//! `guard metric`: instant queries against a Prometheus-compatible `/api/v1/query`.
//!
//! One evaluation sends the resolved query, reads one number and compares it with the threshold:
//!
//! - the result must be one scalar or one sample; more series are an error that says how many
//!   (aggregate them with `sum`, `max`, …); none, or NaN, is *no data* (`no_data fail|pass`);
//! - HTTP 400 and 422 are errors with Prometheus' own message (a bad query never heals);
//! - 503, 429, connection errors and time-outs are retried with back-off until the
//!   evaluation's time is up (the next evaluation, or 30 s for a single one);
//! - `below baseline * F`: the baseline is the same query with every `${C.to}` read as
//!   `${C.from}`, evaluated at the same moment.
//!
//! With `for D` the guard evaluates every `every` (30 s by default) until D has passed and fails
//! once more than `failure_limit` evaluations failed. Inside a canary the count is the canary's
//! ([`Tally`]): every evaluation of the guard in every round and every step counts, as an Argo
//! Rollouts analysis run spans the whole rollout; it does not reset between steps. Every evaluation — time, resolved query,
//! value, threshold, verdict — is in the guard's detail (printed and journaled); the bearer
//! token is sent as a header and never shown.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;

use crate::check::program::{Condition, MetricCheck, NoData, Template, TemplatePart, Threshold};
use crate::resolve::Mode;

use super::guards::GuardEnv;
use super::{Cancel, Failure};

/// A single evaluation without `for` retries a 503 or a time-out for this long.
const SINGLE_EVALUATION: Duration = Duration::from_secs(30);
/// `every` when only `for` is written.
const DEFAULT_EVERY: Duration = Duration::from_secs(30);

/// Failed and total evaluations of each metric guard of one canary, over all its rounds and
/// steps: `failure_limit` is checked against these, not against one round's.
#[derive(Debug, Default)]
pub struct Tally(Mutex<HashMap<crate::span::Span, (u32, u32)>>);

impl Tally {
    fn get(&self, m: &MetricCheck) -> (u32, u32) {
        self.0
            .lock()
            .map(|t| t.get(&m.query.span).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    fn set(&self, m: &MetricCheck, counts: (u32, u32)) {
        if let Ok(mut t) = self.0.lock() {
            t.insert(m.query.span, counts);
        }
    }
}

/// What one query answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    Value(f64),
    /// An empty result or NaN.
    NoData,
}

/// Why a query gave no number.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryError {
    pub message: String,
    /// Worth trying again (503, time-out, connection refused).
    pub retry: bool,
}

/// Send one instant query to `base` (`/api/v1/query` is appended) and read its one number.
/// The body is read up to the cap of [`super::http::max_body`]; what an error quotes of it is
/// redacted by `redact` before it is cut.
pub async fn query(
    http: &reqwest::Client,
    base: &str,
    promql: &str,
    bearer: Option<&str>,
    timeout: Duration,
    redact: &crate::redact::Redactor,
) -> Result<Sample, QueryError> {
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let mut req = http
        .post(&url)
        .form(&[("query", promql)])
        .timeout(timeout.max(Duration::from_millis(200)));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| QueryError {
        message: if e.is_timeout() {
            format!("no answer within {}", super::output::fmt_elapsed(timeout))
        } else {
            format!("request failed: {}", error_chain(&e))
        },
        // A redirect the rule refuses will be refused again.
        retry: !e.is_redirect(),
    })?;
    let status = resp.status().as_u16();
    let body = super::http::read_body(resp, super::http::max_body())
        .await
        .map_err(|e| QueryError {
            message: format!("Prometheus answered {status}, but {e}"),
            retry: e.retry(),
        })?;
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    // Redacted before it is cut: a cut first could leave a secret's prefix behind.
    let prom_error = || {
        let text = json
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_else(|| body.trim());
        let shown = redact.redact_cut(text, 200);
        if shown.is_empty() {
            "(an empty body)".to_string()
        } else {
            shown
        }
    };
    match status {
        200 => {}
        400 | 422 => {
            return Err(QueryError {
                message: format!("Prometheus refused the query ({status}): {}", prom_error()),
                retry: false,
            })
        }
        429 | 502 | 503 | 504 => {
            return Err(QueryError {
                message: format!("Prometheus is unavailable ({status}): {}", prom_error()),
                retry: true,
            })
        }
        s => {
            return Err(QueryError {
                message: format!("Prometheus answered {s}: {}", prom_error()),
                retry: false,
            })
        }
    }
    if json.get("status").and_then(Value::as_str) != Some("success") {
        return Err(QueryError {
            message: format!("not a Prometheus query answer: {}", prom_error()),
            retry: false,
        });
    }
    let data = &json["data"];
    let bad = |what: &str| QueryError {
        message: format!("not a Prometheus query answer: {what}"),
        retry: false,
    };
    let number = |pair: &Value| -> Result<Sample, QueryError> {
        let text = pair
            .get(1)
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a sample without a value"))?;
        let v = parse_prom_float(text).ok_or_else(|| bad(&format!("the value `{text}`")))?;
        Ok(if v.is_nan() {
            Sample::NoData
        } else {
            Sample::Value(v)
        })
    };
    match data["resultType"].as_str() {
        Some("scalar") => number(&data["result"]),
        Some("vector") => {
            let series = data["result"]
                .as_array()
                .ok_or_else(|| bad("a vector without a result"))?;
            match series.as_slice() {
                [] => Ok(Sample::NoData),
                [one] => number(&one["value"]),
                many => Err(QueryError {
                    message: format!(
                        "the query returned {} series ({}{}); a metric guard needs one number: aggregate them, like `sum(…)` or `max(…)`",
                        many.len(),
                        many.iter()
                            .take(3)
                            .map(|s| labels(&s["metric"]))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if many.len() > 3 { ", …" } else { "" }
                    ),
                    retry: false,
                }),
            }
        }
        Some(other) => Err(QueryError {
            message: format!(
                "the query returned a {other}; a metric guard needs one scalar or one sample"
            ),
            retry: false,
        }),
        None => Err(bad("no resultType")),
    }
}

/// Prometheus writes `NaN`, `+Inf`, `-Inf` and decimals.
fn parse_prom_float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn labels(metric: &Value) -> String {
    let Some(m) = metric.as_object() else {
        return "{}".into();
    };
    let inner: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default()))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

/// [`query`], retried with back-off (200 ms doubling to 5 s) while the error is worth retrying
/// and `deadline` has not passed.
pub async fn query_until(
    http: &reqwest::Client,
    base: &str,
    promql: &str,
    bearer: Option<&str>,
    deadline: Instant,
    cancel: &Cancel,
    redact: &crate::redact::Redactor,
) -> Result<Sample, Failure> {
    let mut backoff = Duration::from_millis(200);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let res = tokio::select! {
            r = query(http, base, promql, bearer, left.min(Duration::from_secs(30)), redact) => r,
            _ = cancel.wait() => return Err(Failure::interrupted()),
        };
        match res {
            Ok(s) => return Ok(s),
            Err(e) if e.retry && Instant::now() + backoff < deadline => {
                if !cancel.sleep(backoff).await {
                    return Err(Failure::interrupted());
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                let mut f = Failure::new(if e.retry && attempts > 1 {
                    format!("{} (after {attempts} attempts)", e.message)
                } else {
                    e.message
                });
                f.permanent = !e.retry;
                return Err(f);
            }
        }
    }
}

/// One evaluation, as printed and journaled.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// RFC 3339, UTC, seconds.
    pub time: String,
    pub value: Sample,
    /// The threshold as evaluated (`below 0.01`, `below 0.36 (baseline 0.3 * 1.2)`).
    pub threshold: String,
    pub ok: bool,
}

impl Evaluation {
    fn text(&self) -> String {
        let value = match self.value {
            Sample::Value(v) => shown(v),
            Sample::NoData => "no data".into(),
        };
        format!(
            "{} = {value}, {} → {}",
            self.time,
            self.threshold,
            if self.ok { "ok" } else { "failed" }
        )
    }
}

/// Judge one value (and the baseline's, for `baseline` thresholds).
pub fn judge(
    c: &Condition,
    value: Sample,
    baseline: Option<Sample>,
    no_data: NoData,
) -> (bool, String) {
    let bound = |t: &Threshold| -> Result<(f64, String), String> {
        match (t, baseline) {
            (Threshold::Value(v), _) => Ok((*v, shown(*v))),
            (Threshold::Baseline(f), Some(Sample::Value(b))) => Ok((
                b * f,
                format!("{} (baseline {} * {f})", shown(b * f), shown(b)),
            )),
            (Threshold::Baseline(_), _) => Err("baseline: no data".into()),
        }
    };
    let pass_on_none = no_data == NoData::Pass;
    let none = |what: String| {
        (
            pass_on_none,
            format!(
                "{what} (no_data {})",
                if pass_on_none { "pass" } else { "fail" }
            ),
        )
    };
    match c {
        Condition::Below(t) | Condition::Above(t) => {
            let word = if matches!(c, Condition::Below(_)) {
                "below"
            } else {
                "above"
            };
            let (b, shown) = match bound(t) {
                Ok(x) => x,
                Err(e) => return none(format!("{word} {e}")),
            };
            match value {
                Sample::NoData => none(format!("{word} {shown}")),
                Sample::Value(v) => {
                    let ok = if word == "below" { v < b } else { v > b };
                    (ok, format!("{word} {shown}"))
                }
            }
        }
        Condition::Between(lo, hi) => match value {
            Sample::NoData => none(format!("between {lo} {hi}")),
            Sample::Value(v) => (*lo <= v && v <= *hi, format!("between {lo} {hi}")),
        },
    }
}

/// A value for people: at most 10 decimals (no `0.19999999999999998` from float sums), tiny
/// and huge values in exponent form. The comparison uses the exact value.
fn shown(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    if v.abs() < 1e-6 || v.abs() >= 1e15 {
        return format!("{v:e}");
    }
    let s = format!("{v:.10}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The baseline query: every `${C.to}` read as `${C.from}`.
pub fn baseline_of(t: &Template) -> Template {
    use crate::check::program::Field;
    Template {
        parts: t
            .parts
            .iter()
            .map(|p| match p {
                TemplatePart::Field {
                    comp,
                    field: Field::To,
                } => TemplatePart::Field {
                    comp: *comp,
                    field: Field::From,
                },
                other => other.clone(),
            })
            .collect(),
        span: t.span,
    }
}

fn resolve_err(e: crate::resolve::ResolveError) -> Failure {
    Failure::new(e.to_string())
}

/// Run a metric guard: one evaluation, or one every `every` for `for`.
pub async fn run(m: &MetricCheck, env: &GuardEnv<'_>) -> Result<String, Failure> {
    let real_url = env.scope.render(&m.url, Mode::Real).map_err(resolve_err)?;
    let base = env.rewrite.route(&real_url).map_err(Failure::new)?;
    let promql = env
        .scope
        .render_promql(&m.query, Mode::Real)
        .map_err(resolve_err)?;
    let shown = env.redact.redact(
        &env.scope
            .render_promql(&m.query, Mode::Display)
            .map_err(resolve_err)?,
    );
    let base_promql = if m.condition.uses_baseline() {
        Some(
            env.scope
                .render_promql(&baseline_of(&m.query), Mode::Real)
                .map_err(resolve_err)?,
        )
    } else {
        None
    };
    let bearer = match &m.bearer {
        Some(b) => Some(env.scope.let_value(b, Mode::Real).map_err(resolve_err)?),
        None => None,
    };
    let start = Instant::now();
    let end = m.duration.map(|d| start + d);
    let every = m.every.unwrap_or(DEFAULT_EVERY);
    let mut evaluations: Vec<Evaluation> = Vec::new();
    // Inside a canary the counts go on from its earlier rounds and steps.
    let (mut failed, mut total) = env.tally.map(|t| t.get(m)).unwrap_or_default();
    loop {
        let t0 = Instant::now();
        let deadline = match end {
            Some(e) => (t0 + every).min(e).max(t0 + Duration::from_secs(2)),
            None => t0 + SINGLE_EVALUATION,
        };
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let eval = async {
            let value = query_until(
                env.http,
                &base,
                &promql,
                bearer.as_deref(),
                deadline,
                env.cancel,
                env.redact,
            )
            .await?;
            let baseline = match &base_promql {
                Some(q) => Some(
                    query_until(
                        env.http,
                        &base,
                        q,
                        bearer.as_deref(),
                        deadline,
                        env.cancel,
                        env.redact,
                    )
                    .await?,
                ),
                None => None,
            };
            Ok::<_, Failure>((value, baseline))
        };
        let (value, baseline) = match eval.await {
            Ok(v) => v,
            Err(f) => {
                let mut f = f;
                f.message = env.redact.redact(&format!(
                    "query \"{shown}\" at {time}: {}{}",
                    f.message,
                    history(&evaluations)
                ));
                return Err(f);
            }
        };
        let (ok, threshold) = judge(&m.condition, value, baseline, m.no_data);
        total += 1;
        if !ok {
            failed += 1;
        }
        if let Some(t) = env.tally {
            t.set(m, (failed, total));
        }
        evaluations.push(Evaluation {
            time,
            value,
            threshold,
            ok,
        });
        if failed > m.failure_limit {
            let limit = if m.failure_limit > 0 {
                format!(" (failure_limit {})", m.failure_limit)
            } else {
                String::new()
            };
            let earlier = total as usize - evaluations.len();
            return Err(Failure::new(env.redact.redact(&format!(
                "query \"{shown}\": {failed} of {total} evaluation{} failed{limit}{}: {}",
                if total == 1 { "" } else { "s" },
                if earlier > 0 {
                    format!(" ({earlier} in the canary's earlier rounds)")
                } else {
                    String::new()
                },
                evaluations.iter().map(Evaluation::text).collect::<Vec<_>>().join("; ")
            ))));
        }
        let Some(end) = end else { break };
        let next = t0 + every;
        if next >= end {
            break;
        }
        if !env
            .cancel
            .sleep(next.saturating_duration_since(Instant::now()))
            .await
        {
            return Err(Failure::interrupted());
        }
    }
    let tolerated = if failed > 0 {
        format!(
            " ({failed} of {total} evaluation{} failed, failure_limit {})",
            if total == 1 { "" } else { "s" },
            m.failure_limit
        )
    } else {
        String::new()
    };
    Ok(env.redact.redact(&format!(
        "query \"{shown}\": {}{tolerated}",
        evaluations
            .iter()
            .map(Evaluation::text)
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

fn history(evals: &[Evaluation]) -> String {
    if evals.is_empty() {
        String::new()
    } else {
        format!(
            " (before: {})",
            evals
                .iter()
                .map(Evaluation::text)
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Redactor;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    type Seen = Arc<std::sync::Mutex<Vec<String>>>;
    type FakeState = (Arc<Vec<(u16, &'static str)>>, Arc<AtomicUsize>, Seen);

    /// A fake Prometheus answering `answers` in turn (the last one forever); records the bearer.
    async fn fake(answers: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>, Seen) {
        let calls = Arc::new(AtomicUsize::new(0));
        let auth = Arc::new(std::sync::Mutex::new(Vec::new()));
        let st = (Arc::new(answers), calls.clone(), auth.clone());
        let app = axum::Router::new()
            .route(
                "/api/v1/query",
                post(
                    |State((answers, calls, auth)): State<FakeState>,
                     headers: HeaderMap,
                     body: String| async move {
                        assert!(body.starts_with("query="), "{body}");
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        if let Some(a) = headers.get("authorization") {
                            auth.lock().unwrap().push(a.to_str().unwrap().to_string());
                        }
                        let (s, b) = answers[n.min(answers.len() - 1)];
                        (StatusCode::from_u16(s).unwrap(), b.to_string())
                    },
                ),
            )
            .with_state(st);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        (format!("http://{addr}"), calls, auth)
    }

    const ONE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"0.25"]}]}}"#;
    const SCALAR: &str =
        r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"3"]}}"#;
    const EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    const NAN: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"NaN"]}]}}"#;
    const THREE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"app":"a"},"value":[1,"1"]},{"metric":{"app":"b"},"value":[1,"2"]},{"metric":{"app":"c"},"value":[1,"3"]}]}}"#;
    const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
    const BAD: &str = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected end of input"}"#;

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    #[tokio::test]
    async fn one_sample_and_one_scalar_are_numbers() {
        let (url, _, _) = fake(vec![(200, ONE), (200, SCALAR)]).await;
        let t = Duration::from_secs(5);
        assert_eq!(
            query(&client(), &url, "x", None, t, &Redactor::default()).await,
            Ok(Sample::Value(0.25))
        );
        assert_eq!(
            query(&client(), &url, "x", None, t, &Redactor::default()).await,
            Ok(Sample::Value(3.0))
        );
    }

    #[tokio::test]
    async fn empty_and_nan_are_no_data() {
        let (url, _, _) = fake(vec![(200, EMPTY), (200, NAN)]).await;
        let t = Duration::from_secs(5);
        assert_eq!(
            query(&client(), &url, "x", None, t, &Redactor::default()).await,
            Ok(Sample::NoData)
        );
        assert_eq!(
            query(&client(), &url, "x", None, t, &Redactor::default()).await,
            Ok(Sample::NoData)
        );
    }

    #[tokio::test]
    async fn many_series_say_how_many_and_never_retry() {
        let (url, _, _) = fake(vec![(200, THREE)]).await;
        let e = query(
            &client(),
            &url,
            "x",
            None,
            Duration::from_secs(5),
            &Redactor::default(),
        )
        .await
        .unwrap_err();
        assert!(!e.retry);
        assert!(e.message.contains("returned 3 series"), "{}", e.message);
        assert!(e.message.contains("app=\"b\""), "{}", e.message);
        let (url, _, _) = fake(vec![(200, MATRIX)]).await;
        let e = query(
            &client(),
            &url,
            "x",
            None,
            Duration::from_secs(5),
            &Redactor::default(),
        )
        .await
        .unwrap_err();
        assert!(e.message.contains("a matrix"), "{}", e.message);
    }

    #[tokio::test]
    async fn bad_request_carries_prometheus_message() {
        for status in [400, 422] {
            let (url, calls, _) = fake(vec![(status, BAD)]).await;
            let f = query_until(
                &client(),
                &url,
                "x",
                None,
                Instant::now() + Duration::from_secs(5),
                &Cancel::default(),
                &Redactor::default(),
            )
            .await
            .unwrap_err();
            assert!(f.permanent);
            assert!(
                f.message.contains("unexpected end of input")
                    && f.message.contains(&status.to_string()),
                "{}",
                f.message
            );
            assert_eq!(
                calls.load(Ordering::SeqCst),
                1,
                "a bad query is not retried"
            );
        }
    }

    #[tokio::test]
    async fn unavailable_is_retried_within_the_time() {
        let (url, calls, auth) = fake(vec![(503, "starting"), (503, "starting"), (200, ONE)]).await;
        let s = query_until(
            &client(),
            &url,
            "x",
            Some("tok-123456789"),
            Instant::now() + Duration::from_secs(10),
            &Cancel::default(),
            &Redactor::default(),
        )
        .await
        .unwrap();
        assert_eq!(s, Sample::Value(0.25));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(auth.lock().unwrap()[0], "Bearer tok-123456789");

        // Always unavailable: fails once the time is up, saying so.
        let (url, calls, _) = fake(vec![(503, "down")]).await;
        let t0 = Instant::now();
        let f = query_until(
            &client(),
            &url,
            "x",
            None,
            Instant::now() + Duration::from_millis(1500),
            &Cancel::default(),
            &Redactor::default(),
        )
        .await
        .unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(4));
        assert!(calls.load(Ordering::SeqCst) >= 2);
        assert!(f.message.contains("unavailable (503)"), "{}", f.message);
    }

    #[tokio::test]
    async fn unreachable_server_is_an_error_not_a_pass() {
        let f = query_until(
            &client(),
            "http://127.0.0.1:9",
            "x",
            None,
            Instant::now() + Duration::from_millis(500),
            &Cancel::default(),
            &Redactor::default(),
        )
        .await
        .unwrap_err();
        assert!(f.message.contains("request failed"), "{}", f.message);
    }

    #[tokio::test]
    async fn an_error_body_is_redacted_before_it_is_cut() {
        let secret = "sekret-PR-token-0042";
        let body: &'static str =
            Box::leak(format!("{}Bearer {secret} is not valid", "x".repeat(190)).into_boxed_str());
        let (url, _, _) = fake(vec![(401, body)]).await;
        let r = Redactor::new([secret.to_string()]);
        let e = query(
            &client(),
            &url,
            "x",
            Some(secret),
            Duration::from_secs(5),
            &r,
        )
        .await
        .unwrap_err();
        assert!(!e.retry);
        assert!(
            e.message.contains("Prometheus answered 401"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("sek"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_trickled_body_cut_by_the_timeout_says_so() {
        use futures::StreamExt;
        let app = axum::Router::new().route(
            "/api/v1/query",
            post(|| async {
                let s = futures::stream::once(async {
                    Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{\"status\":\"succ"))
                })
                .chain(futures::stream::pending());
                axum::body::Body::from_stream(s)
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let e = query(
            &client(),
            &format!("http://{addr}"),
            "x",
            None,
            Duration::from_millis(300),
            &Redactor::default(),
        )
        .await
        .unwrap_err();
        assert!(e.retry, "{}", e.message);
        assert!(
            e.message
                .contains("did not arrive in time: cut after 15 bytes"),
            "{}",
            e.message
        );
        assert!(
            !e.message.contains("not a Prometheus query answer"),
            "{}",
            e.message
        );
    }

    #[test]
    fn thresholds_no_data_and_baseline() {
        let below = Condition::Below(Threshold::Value(0.01));
        assert!(judge(&below, Sample::Value(0.005), None, NoData::Fail).0);
        assert!(!judge(&below, Sample::Value(0.01), None, NoData::Fail).0);
        assert!(!judge(&below, Sample::NoData, None, NoData::Fail).0);
        assert!(judge(&below, Sample::NoData, None, NoData::Pass).0);
        let above = Condition::Above(Threshold::Value(1.0));
        assert!(judge(&above, Sample::Value(2.0), None, NoData::Fail).0);
        let between = Condition::Between(1.0, 2.0);
        assert!(judge(&between, Sample::Value(1.0), None, NoData::Fail).0);
        assert!(!judge(&between, Sample::Value(2.5), None, NoData::Fail).0);
        let base = Condition::Below(Threshold::Baseline(1.2));
        let (ok, shown) = judge(
            &base,
            Sample::Value(0.35),
            Some(Sample::Value(0.3)),
            NoData::Fail,
        );
        assert!(ok, "{shown}");
        assert!(shown.contains("baseline 0.3 * 1.2"), "{shown}");
        assert!(
            !judge(
                &base,
                Sample::Value(0.37),
                Some(Sample::Value(0.3)),
                NoData::Fail
            )
            .0
        );
        // A baseline without data is no data, whatever the new version says.
        assert!(
            !judge(
                &base,
                Sample::Value(0.1),
                Some(Sample::NoData),
                NoData::Fail
            )
            .0
        );
        assert!(
            judge(
                &base,
                Sample::Value(0.1),
                Some(Sample::NoData),
                NoData::Pass
            )
            .0
        );
    }
}
