//! `guard metric`: instant queries against a Prometheus-compatible `/api/v1/query`.
//!
//! One evaluation sends the resolved query, reads one number and compares it with the threshold:
//!
//! - the result must be one scalar or one sample; more series are an error that says how many
//!   (aggregate them with `sum`, `max`, …); none, or NaN, is *no data*: inside a canary, while
//!   the canary has run for less than the query's window (its longest `[…]` range), *pending*
//!   (neither pass nor fail); after that as `no_data fail|pass|ignore` says (ignore: pending);
//! - HTTP 400 and 422 are errors with Prometheus' own message (a bad query never heals);
//! - 503, 429, connection errors and time-outs are retried with back-off until the
//!   evaluation's time is up (the next evaluation, or 30 s for a single one);
//! - `below baseline * F`: the baseline is the same query with every `${C.to}` read as
//!   `${C.from}`, evaluated at the same moment.
//!
//! With `for D` the guard evaluates every `every` (30 s by default) until D has passed and fails
//! once more than `failure_limit` evaluations failed. Inside a canary the canary's time is the
//! guard's ([`Tally`]): each call is one evaluation, made when it is due (every round without
//! `every`; at each step's start and then every `every` up to `for` from the step's start, its
//! end included), so the canary schedules the evaluations inside its own time and never runs
//! past it.
//! The count is the canary's: every evaluation of the guard in every round and every step
//! counts, as an Argo Rollouts analysis run spans the whole rollout; it does not reset between
//! steps. A canary that ends without one evaluation with data fails ([`Tally::missing_data`],
//! Kayenta's "must have data") unless the guard says `no_data ignore`. Every evaluation — time,
//! resolved query, value, threshold, verdict — is in the guard's detail (printed and journaled);
//! the bearer token is sent as a header and never shown.

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

/// The metric analysis of one canary, over all its rounds and steps: when it began, and per
/// guard the counts `failure_limit` is checked against (not one round's), whether any
/// evaluation had data, and when the next evaluation is due.
#[derive(Debug)]
pub struct Tally {
    /// When the canary's analysis began: its first step, traffic on the canary.
    started: Instant,
    /// When the current step began (a guard's `for` counts from there).
    step: Mutex<Instant>,
    /// Under `rehearse`: `--max-wait` (a query's window is cut to it like every wait).
    max_wait: Option<Duration>,
    guards: Mutex<HashMap<crate::span::Span, GuardTally>>,
}

#[derive(Debug, Default, Clone)]
struct GuardTally {
    failed: u32,
    /// Evaluations that passed or failed (pending ones are not counted).
    total: u32,
    pending: u32,
    /// Evaluations that had data (the value, and the baseline's when there is one).
    with_data: u32,
    /// When the next evaluation is due (guards with `every`); `None`: the first, or every round.
    next_due: Option<Instant>,
    /// No evaluation is due any more in this step (its `for` has passed since the step began).
    done: bool,
    /// The query as shown (secrets redacted), for the canary's verdict.
    shown: String,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::new(Instant::now(), None)
    }
}

impl Tally {
    /// The analysis of a canary whose guards start now (`started`).
    pub fn new(started: Instant, max_wait: Option<Duration>) -> Tally {
        Tally {
            started,
            step: Mutex::new(started),
            max_wait,
            guards: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, m: &MetricCheck) -> GuardTally {
        self.guards
            .lock()
            .map(|t| t.get(&m.query.span).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn set(&self, m: &MetricCheck, g: GuardTally) {
        if let Ok(mut t) = self.guards.lock() {
            t.insert(m.query.span, g);
        }
    }

    /// A step begins (its weight set): every guard is due at once, and `for` counts from now.
    pub fn begin_step(&self, now: Instant) {
        if let Ok(mut s) = self.step.lock() {
            *s = now;
        }
        if let Ok(mut t) = self.guards.lock() {
            for g in t.values_mut() {
                g.next_due = None;
                g.done = false;
            }
        }
    }

    fn step_started(&self) -> Instant {
        self.step.lock().map(|s| *s).unwrap_or(self.started)
    }

    /// Is an evaluation of `m` due at `now`? `round`: a round of every guard (a guard without
    /// `every` is evaluated in those only).
    pub fn due(&self, m: &MetricCheck, now: Instant, round: bool) -> bool {
        let g = self.get(m);
        if g.done {
            return false;
        }
        match (cadence(m), g.next_due) {
            (None, _) => round,
            (Some(_), None) => true,
            (Some(_), Some(t)) => now >= t,
        }
    }

    /// The earliest time an evaluation of a guard with `every` is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.guards
            .lock()
            .ok()?
            .values()
            .filter(|g| !g.done)
            .filter_map(|g| g.next_due)
            .min()
    }

    /// The canary's verdict on its data, once its time is over: the first guard (of `guards`)
    /// that never had an evaluation with data, unless it says `no_data ignore`.
    pub fn missing_data<'g>(
        &self,
        guards: impl IntoIterator<Item = &'g MetricCheck>,
    ) -> Option<(&'g MetricCheck, String)> {
        let ran = super::output::fmt_elapsed(self.started.elapsed());
        guards.into_iter().find_map(|m| {
            let g = self.get(m);
            if m.no_data == NoData::Ignore || g.with_data > 0 || g.total + g.pending == 0 {
                return None;
            }
            let n = g.total + g.pending;
            Some((
                m,
                format!(
                    "query \"{}\": none of its {n} evaluation{} in the canary's {ran} had data, so the canary was never seen serving (no traffic reached it: a broken route, a wrong label?); a canary must have data — write `no_data ignore` if it may have none",
                    g.shown,
                    if n == 1 { "" } else { "s" }
                ),
            ))
        })
    }
}
/// How often a guard in a canary is evaluated: `every`, 30 s with `for` alone, `None`: every
/// round of the canary's guards.
fn cadence(m: &MetricCheck) -> Option<Duration> {
    m.every.or(m.duration.map(|_| DEFAULT_EVERY))
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

/// What one evaluation counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Failed,
    /// No data yet (the query's window has not passed), or `no_data ignore`: neither.
    Pending,
}

/// One evaluation, as printed and journaled.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// RFC 3339, UTC, seconds.
    pub time: String,
    pub value: Sample,
    /// The threshold as evaluated (`below 0.01`, `below 0.36 (baseline 0.3 * 1.2)`), and why
    /// an evaluation without data counts as it does.
    pub threshold: String,
    pub verdict: Verdict,
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
            match self.verdict {
                Verdict::Ok => "ok",
                Verdict::Failed => "failed",
                Verdict::Pending => "pending",
            }
        )
    }
}

/// Judge one value (and the baseline's, for `baseline` thresholds): `Some(holds)`, or `None`
/// when there is no data to judge (the value's or the baseline's), with the threshold as shown.
pub fn judge(c: &Condition, value: Sample, baseline: Option<Sample>) -> (Option<bool>, String) {
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
    match c {
        Condition::Below(t) | Condition::Above(t) => {
            let word = if matches!(c, Condition::Below(_)) {
                "below"
            } else {
                "above"
            };
            let (b, shown) = match bound(t) {
                Ok(x) => x,
                Err(e) => return (None, format!("{word} {e}")),
            };
            match value {
                Sample::NoData => (None, format!("{word} {shown}")),
                Sample::Value(v) => {
                    let ok = if word == "below" { v < b } else { v > b };
                    (Some(ok), format!("{word} {shown}"))
                }
            }
        }
        Condition::Between(lo, hi) => match value {
            Sample::NoData => (None, format!("between {lo} {hi}")),
            Sample::Value(v) => (Some(*lo <= v && v <= *hi), format!("between {lo} {hi}")),
        },
    }
}

/// What an evaluation without data counts as: pending while the canary is younger than the
/// query's window (`warming`: how long it has run, the window), else as `no_data` says.
pub fn without_data(no_data: NoData, warming: Option<(Duration, Duration)>) -> (Verdict, String) {
    use super::output::fmt_elapsed;
    if let Some((ran, window)) = warming {
        return (
            Verdict::Pending,
            format!(
                "no data yet: the canary has run {} of the query's {} window",
                fmt_elapsed(ran),
                crate::syntax::format_duration(window)
            ),
        );
    }
    match no_data {
        NoData::Fail => (Verdict::Failed, "no_data fail".into()),
        NoData::Pass => (Verdict::Ok, "no_data pass".into()),
        NoData::Ignore => (Verdict::Pending, "no_data ignore".into()),
    }
}

/// The longest range (`[5m]`, a subquery's `[30m:1m]`) of a PromQL query, outside its strings:
/// how long a series must exist before the query can give a number for it.
pub fn window(promql: &str) -> Option<Duration> {
    let mut longest: Option<Duration> = None;
    let mut quote: Option<char> = None;
    let mut chars = promql.char_indices();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '[') => {
                let rest = &promql[i + 1..];
                let Some(close) = rest.find(']') else { break };
                let range = rest[..close].split(':').next().unwrap_or_default().trim();
                if let Some(d) = prom_duration(range) {
                    longest = Some(longest.map_or(d, |l| l.max(d)));
                }
            }
            _ => {}
        }
    }
    longest
}

/// A Prometheus duration: `1m`, `1h30m`, `500ms`, `2d`, `1w`, `1y`.
fn prom_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, ms) = [
            ("ms", 1),
            ("s", 1_000),
            ("m", 60_000),
            ("h", 3_600_000),
            ("d", 86_400_000),
            ("w", 604_800_000),
            ("y", 31_536_000_000),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))?;
        rest = &rest[unit.len()..];
        total += Duration::from_millis(n.checked_mul(ms)?);
    }
    Some(total)
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
    let q = Resolved {
        base,
        promql,
        shown,
        base_promql,
        bearer,
    };
    match env.tally {
        Some(t) => in_canary(m, env, &q, t).await,
        None => alone(m, env, &q).await,
    }
}

/// A metric guard's query, resolved for this env.
struct Resolved {
    base: String,
    promql: String,
    /// As printed (secrets redacted).
    shown: String,
    base_promql: Option<String>,
    bearer: Option<String>,
}

/// One query (and its baseline's), retried until `deadline`; a failure names the query, the
/// time and the evaluations before.
async fn evaluate(
    env: &GuardEnv<'_>,
    q: &Resolved,
    deadline: Instant,
    time: &str,
    before: &[Evaluation],
) -> Result<(Sample, Option<Sample>), Failure> {
    let eval = async {
        let value = query_until(
            env.http,
            &q.base,
            &q.promql,
            q.bearer.as_deref(),
            deadline,
            env.cancel,
            env.redact,
        )
        .await?;
        let baseline = match &q.base_promql {
            Some(b) => Some(
                query_until(
                    env.http,
                    &q.base,
                    b,
                    q.bearer.as_deref(),
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
    eval.await.map_err(|mut f| {
        f.message = env.redact.redact(&format!(
            "query \"{}\" at {time}: {}{}",
            q.shown,
            f.message,
            history(before)
        ));
        f
    })
}

/// Did an evaluation have data: the value, and the baseline's when there is one?
fn had_data(value: Sample, baseline: Option<Sample>) -> bool {
    value != Sample::NoData && baseline != Some(Sample::NoData)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `failed of total evaluations failed (failure_limit N)` once past the limit.
fn past_limit(
    m: &MetricCheck,
    q: &Resolved,
    env: &GuardEnv<'_>,
    (failed, total): (u32, u32),
    evaluations: &[Evaluation],
) -> Failure {
    let limit = if m.failure_limit > 0 {
        format!(" (failure_limit {})", m.failure_limit)
    } else {
        String::new()
    };
    let earlier = (total as usize).saturating_sub(
        evaluations
            .iter()
            .filter(|e| e.verdict != Verdict::Pending)
            .count(),
    );
    Failure::new(env.redact.redact(&format!(
        "query \"{}\": {failed} of {total} evaluation{} failed{limit}{}: {}",
        q.shown,
        if total == 1 { "" } else { "s" },
        if earlier > 0 {
            format!(" ({earlier} in the canary's earlier rounds)")
        } else {
            String::new()
        },
        evaluations
            .iter()
            .map(Evaluation::text)
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// The guard's verdict when it holds: every evaluation, and the failures it tolerated.
fn passed(
    m: &MetricCheck,
    q: &Resolved,
    env: &GuardEnv<'_>,
    (failed, total): (u32, u32),
    evaluations: &[Evaluation],
) -> String {
    let tolerated = if failed > 0 {
        format!(
            " ({failed} of {total} evaluation{} failed, failure_limit {})",
            if total == 1 { "" } else { "s" },
            m.failure_limit
        )
    } else {
        String::new()
    };
    env.redact.redact(&format!(
        "query \"{}\": {}{tolerated}",
        q.shown,
        evaluations
            .iter()
            .map(Evaluation::text)
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

/// Outside a canary: one evaluation, or one every `every` for `for`. No data counts as
/// `no_data` says (`ignore`: pending).
async fn alone(m: &MetricCheck, env: &GuardEnv<'_>, q: &Resolved) -> Result<String, Failure> {
    let start = Instant::now();
    let end = m.duration.map(|d| start + d);
    let every = m.every.unwrap_or(DEFAULT_EVERY);
    let mut evaluations: Vec<Evaluation> = Vec::new();
    let (mut failed, mut total) = (0, 0);
    loop {
        let t0 = Instant::now();
        let deadline = match end {
            Some(e) => (t0 + every).min(e).max(t0 + Duration::from_secs(2)),
            None => t0 + SINGLE_EVALUATION,
        };
        let time = now_rfc3339();
        let (value, baseline) = evaluate(env, q, deadline, &time, &evaluations).await?;
        let (verdict, threshold) = match judge(&m.condition, value, baseline) {
            (Some(ok), t) => (if ok { Verdict::Ok } else { Verdict::Failed }, t),
            (None, t) => {
                let (v, why) = without_data(m.no_data, None);
                (v, format!("{t} ({why})"))
            }
        };
        if verdict != Verdict::Pending {
            total += 1;
        }
        if verdict == Verdict::Failed {
            failed += 1;
        }
        evaluations.push(Evaluation {
            time,
            value,
            threshold,
            verdict,
        });
        if failed > m.failure_limit {
            return Err(past_limit(m, q, env, (failed, total), &evaluations));
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
    Ok(passed(m, q, env, (failed, total), &evaluations))
}

/// Inside a canary: one evaluation (the canary calls it when [`Tally::due`]); the counts go on
/// from the canary's earlier rounds and steps. No data is pending while the canary is younger
/// than the query's window, then counts as `no_data` says.
async fn in_canary(
    m: &MetricCheck,
    env: &GuardEnv<'_>,
    q: &Resolved,
    tally: &Tally,
) -> Result<String, Failure> {
    let t0 = Instant::now();
    let mut g = tally.get(m);
    g.shown.clone_from(&q.shown);
    let deadline = match cadence(m) {
        Some(every) => t0 + every.max(Duration::from_secs(2)),
        None => t0 + SINGLE_EVALUATION,
    };
    let time = now_rfc3339();
    let (value, baseline) = evaluate(env, q, deadline, &time, &[]).await?;
    let (verdict, threshold) = match judge(&m.condition, value, baseline) {
        (Some(ok), t) => (if ok { Verdict::Ok } else { Verdict::Failed }, t),
        (None, t) => {
            let ran = t0.saturating_duration_since(tally.started);
            let window = window(&q.promql).map(|w| match tally.max_wait {
                Some(max) => w.min(max),
                None => w,
            });
            let warming = window.filter(|w| ran < *w).map(|w| (ran, w));
            let (v, why) = without_data(m.no_data, warming);
            (v, format!("{t} ({why})"))
        }
    };
    if had_data(value, baseline) {
        g.with_data += 1;
    }
    match verdict {
        Verdict::Pending => g.pending += 1,
        Verdict::Failed => {
            g.total += 1;
            g.failed += 1;
        }
        Verdict::Ok => g.total += 1,
    }
    // The next evaluation: `every` after this one was due, never after `for` from the start.
    if let Some(every) = cadence(m) {
        // `--max-wait 0s` cuts `every` to nothing: at most one evaluation per millisecond.
        let every = every.max(Duration::from_millis(1));
        // A slot missed (a slow query, a step's change of weights) is skipped, not made up.
        // Due times count from the step's start, so the last one is its end (`for` included).
        let step = tally.step_started();
        let mut next = g.next_due.unwrap_or(step) + every;
        while next <= Instant::now() {
            next += every;
        }
        g.next_due = Some(next);
        if m.duration.is_some_and(|f| next > step + f) {
            g.done = true;
        }
    }
    let counts = (g.failed, g.total);
    tally.set(m, g);
    let evaluations = [Evaluation {
        time,
        value,
        threshold,
        verdict,
    }];
    if counts.0 > m.failure_limit {
        return Err(past_limit(m, q, env, counts, &evaluations));
    }
    Ok(passed(m, q, env, counts, &evaluations))
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
        assert_eq!(judge(&below, Sample::Value(0.005), None).0, Some(true));
        assert_eq!(judge(&below, Sample::Value(0.01), None).0, Some(false));
        assert_eq!(judge(&below, Sample::NoData, None).0, None);
        let above = Condition::Above(Threshold::Value(1.0));
        assert_eq!(judge(&above, Sample::Value(2.0), None).0, Some(true));
        let between = Condition::Between(1.0, 2.0);
        assert_eq!(judge(&between, Sample::Value(1.0), None).0, Some(true));
        assert_eq!(judge(&between, Sample::Value(2.5), None).0, Some(false));
        let base = Condition::Below(Threshold::Baseline(1.2));
        let (ok, shown) = judge(&base, Sample::Value(0.35), Some(Sample::Value(0.3)));
        assert_eq!(ok, Some(true), "{shown}");
        assert!(shown.contains("baseline 0.3 * 1.2"), "{shown}");
        assert_eq!(
            judge(&base, Sample::Value(0.37), Some(Sample::Value(0.3))).0,
            Some(false)
        );
        // A baseline without data is no data, whatever the new version says.
        assert_eq!(
            judge(&base, Sample::Value(0.1), Some(Sample::NoData)).0,
            None
        );
    }

    #[test]
    fn no_data_is_pending_in_the_window_then_as_written() {
        let warm = Some((Duration::from_millis(4), Duration::from_secs(60)));
        for nd in [NoData::Fail, NoData::Pass, NoData::Ignore] {
            let (v, why) = without_data(nd, warm);
            assert_eq!(v, Verdict::Pending, "{why}");
            assert!(why.contains("4ms of the query's 1m window"), "{why}");
        }
        assert_eq!(without_data(NoData::Fail, None).0, Verdict::Failed);
        assert_eq!(without_data(NoData::Pass, None).0, Verdict::Ok);
        assert_eq!(without_data(NoData::Ignore, None).0, Verdict::Pending);
    }

    #[test]
    fn a_querys_window_is_its_longest_range_outside_strings() {
        let q = r#"sum(rate(x{a="[9h]"}[1m])) / sum(rate(y[5m])) + max_over_time(z[30m:1m])"#;
        assert_eq!(window(q), Some(Duration::from_secs(1800)));
        assert_eq!(window("sum(up)"), None);
        assert_eq!(window("rate(x[1h30m])"), Some(Duration::from_secs(5400)));
        assert_eq!(window("rate(x[500ms])"), Some(Duration::from_millis(500)));
        assert_eq!(
            window(r#"x{a="\"["} or rate(y[2m])"#),
            Some(Duration::from_secs(120))
        );
    }
}
