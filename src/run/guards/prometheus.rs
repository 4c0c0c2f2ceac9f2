//! The Prometheus HTTP API as `guard metric` uses it: one instant query against
//! `/api/v1/query`, its one number read from a capped body, and the retries of
//! [`query_until`]. What the number means (thresholds, no data, counts) is [`crate::run::guards::metric`]'s.

use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;

use crate::run::{Cancel, Failure};

/// What one query answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Sample {
    Value(f64),
    /// An empty result or NaN.
    NoData,
}

/// Why a query gave no number.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueryError {
    pub message: String,
    /// Worth trying again (503, time-out, connection refused).
    pub retry: bool,
}

/// Send one instant query to `base` (`/api/v1/query` is appended) and read its one number.
/// The body is read up to the cap of [`crate::run::guards::client::max_body`]; what an error quotes of it is
/// redacted by `redact` before it is cut.
pub(crate) async fn query(
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
            format!(
                "no answer within {}",
                crate::run::log::output::fmt_elapsed(timeout)
            )
        } else {
            format!("request failed: {}", error_chain(&e))
        },
        // A redirect the rule refuses will be refused again.
        retry: !e.is_redirect(),
    })?;
    let status = resp.status().as_u16();
    let body = crate::run::guards::client::read_body(resp, crate::run::guards::client::max_body())
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
pub(crate) async fn query_until(
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
