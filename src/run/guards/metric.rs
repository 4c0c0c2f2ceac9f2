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

use std::time::Duration;

use tokio::time::Instant;

use crate::program::{Condition, MetricCheck, NoData, Template, TemplatePart, Threshold};
use crate::resolve::Mode;

use crate::run::guards::env::GuardEnv;
pub(crate) use crate::run::guards::prometheus::{query_until, Sample};
use crate::run::guards::tally::{cadence, Tally, DEFAULT_EVERY};
use crate::run::Failure;

/// A single evaluation without `for` retries a 503 or a time-out for this long.
const SINGLE_EVALUATION: Duration = Duration::from_secs(30);

/// What one evaluation counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok,
    Failed,
    /// No data yet (the query's window has not passed), or `no_data ignore`: neither.
    Pending,
}

/// One evaluation, as printed and journaled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Evaluation {
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
pub(crate) fn judge(
    c: &Condition,
    value: Sample,
    baseline: Option<Sample>,
) -> (Option<bool>, String) {
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
pub(crate) fn without_data(
    no_data: NoData,
    warming: Option<(Duration, Duration)>,
) -> (Verdict, String) {
    use crate::run::log::output::fmt_elapsed;
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
pub(crate) fn window(promql: &str) -> Option<Duration> {
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
pub(crate) fn baseline_of(t: &Template) -> Template {
    use crate::program::Field;
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
pub(crate) async fn run(m: &MetricCheck, env: &GuardEnv<'_>) -> Result<String, Failure> {
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
#[path = "metric_tests.rs"]
mod tests;
