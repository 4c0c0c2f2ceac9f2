//! A small PromQL evaluator over the simulator's own series (`/api/v1/query`, instant queries).
//!
//! Parsed by `promql-parser`; evaluated here: vector selectors (5-minute look-back), `rate` and
//! `increase` with Prometheus' extrapolation, `histogram_quantile` with its linear interpolation,
//! `sum`/`avg`/`max`/`min`/`count` with `by`/`without`, arithmetic and comparisons between
//! scalars and vectors (one-to-one matching, `on`/`ignoring`, `bool`), parentheses and unary minus.
//! Anything else is an error that names what is not supported, never a wrong number.

use std::collections::BTreeMap;

use promql_parser::parser::{self, Expr, LabelModifier};

/// A series' labels, `__name__` included.
pub type Labels = BTreeMap<String, String>;

/// Samples of every series: `(time in ms, value)`, oldest first.
pub type Series = BTreeMap<Labels, std::collections::VecDeque<(i64, f64)>>;

/// How far back an instant selector looks for a sample (Prometheus' default).
const LOOKBACK_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
}

/// Evaluate `query` at `t_ms` over `series`.
pub fn query(query: &str, t_ms: i64, series: &Series) -> Result<Val, String> {
    let expr = parser::parse(query)?;
    eval(&expr, t_ms, series)
}

fn eval(e: &Expr, t: i64, s: &Series) -> Result<Val, String> {
    match e {
        Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
        Expr::Paren(p) => eval(&p.expr, t, s),
        Expr::Unary(u) => match eval(&u.expr, t, s)? {
            Val::Scalar(v) => Ok(Val::Scalar(-v)),
            Val::Vector(v) => Ok(Val::Vector(
                v.into_iter()
                    .map(|(mut l, x)| {
                        l.remove("__name__");
                        (l, -x)
                    })
                    .collect(),
            )),
        },
        Expr::VectorSelector(vs) => {
            if vs.offset.is_some() || vs.at.is_some() {
                return Err("the simulator does not evaluate `offset` or `@`".into());
            }
            let mut out = Vec::new();
            for (labels, samples) in select(s, &vs.matchers, vs.name.as_deref()) {
                if let Some((ts, v)) = samples.iter().rev().find(|(ts, _)| *ts <= t) {
                    if t - ts <= LOOKBACK_MS {
                        out.push((labels.clone(), *v));
                    }
                }
            }
            Ok(Val::Vector(out))
        }
        Expr::Call(c) => call(c, t, s),
        Expr::Aggregate(a) => aggregate(a, t, s),
        Expr::Binary(b) => binary(b, t, s),
        Expr::MatrixSelector(_) => {
            Err("a range vector cannot be the result of an instant query".into())
        }
        Expr::StringLiteral(_) => Err("a string cannot be the result of a query".into()),
        Expr::Subquery(_) => Err("the simulator does not evaluate subqueries".into()),
        Expr::Extension(_) => Err("the simulator does not evaluate extensions".into()),
    }
}

fn select<'a>(
    s: &'a Series,
    m: &promql_parser::label::Matchers,
    name: Option<&str>,
) -> Vec<(&'a Labels, &'a std::collections::VecDeque<(i64, f64)>)> {
    let empty = String::new();
    s.iter()
        .filter(|(labels, _)| {
            name.is_none_or(|n| labels.get("__name__").map(String::as_str) == Some(n))
                && m.matchers
                    .iter()
                    .all(|x| x.is_match(labels.get(&x.name).unwrap_or(&empty)))
                && (m.or_matchers.is_empty()
                    || m.or_matchers.iter().any(|group| {
                        group
                            .iter()
                            .all(|x| x.is_match(labels.get(&x.name).unwrap_or(&empty)))
                    }))
        })
        .collect()
}

fn call(c: &parser::Call, t: i64, s: &Series) -> Result<Val, String> {
    let name = c.func.name;
    let args = &c.args.args;
    match name {
        "rate" | "increase" => {
            let Some(Expr::MatrixSelector(ms)) = args.first().map(|a| a.as_ref()) else {
                return Err(format!("`{name}` takes a range selector like `x[1m]`"));
            };
            if ms.vs.offset.is_some() || ms.vs.at.is_some() {
                return Err("the simulator does not evaluate `offset` or `@`".into());
            }
            let range = ms.range.as_millis() as i64;
            let mut out = Vec::new();
            for (labels, samples) in select(s, &ms.vs.matchers, ms.vs.name.as_deref()) {
                let window: Vec<(i64, f64)> = samples
                    .iter()
                    .copied()
                    .filter(|(ts, _)| *ts > t - range && *ts <= t)
                    .collect();
                if let Some(v) = extrapolated_delta(&window, t - range, t, name == "rate") {
                    let mut l = labels.clone();
                    l.remove("__name__");
                    out.push((l, v));
                }
            }
            Ok(Val::Vector(out))
        }
        "histogram_quantile" => {
            let phi = match eval(&args[0], t, s)? {
                Val::Scalar(v) => v,
                Val::Vector(_) => return Err("histogram_quantile's φ must be a scalar".into()),
            };
            let Val::Vector(v) = eval(&args[1], t, s)? else {
                return Err("histogram_quantile needs a vector of buckets".into());
            };
            let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
            for (mut l, x) in v {
                let Some(le) = l.remove("le") else { continue };
                let Some(le) = parse_float(&le) else { continue };
                l.remove("__name__");
                groups.entry(l).or_default().push((le, x));
            }
            Ok(Val::Vector(
                groups
                    .into_iter()
                    .map(|(l, mut b)| {
                        b.sort_by(|a, b| a.0.total_cmp(&b.0));
                        (l, bucket_quantile(phi, &b))
                    })
                    .collect(),
            ))
        }
        "abs" => map_vector(eval(&args[0], t, s)?, f64::abs),
        other => Err(format!(
            "the simulator's query evaluator does not support `{other}` (it knows rate, increase, histogram_quantile, abs)"
        )),
    }
}

fn map_vector(v: Val, f: impl Fn(f64) -> f64) -> Result<Val, String> {
    match v {
        Val::Vector(v) => Ok(Val::Vector(
            v.into_iter()
                .map(|(mut l, x)| {
                    l.remove("__name__");
                    (l, f(x))
                })
                .collect(),
        )),
        Val::Scalar(x) => Ok(Val::Scalar(f(x))),
    }
}

/// Prometheus' `extrapolatedRate` (promql/functions.go) for counters.
fn extrapolated_delta(w: &[(i64, f64)], start: i64, end: i64, per_second: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (t_first, first) = w[0];
    let (t_last, last) = w[w.len() - 1];
    // Counter resets: add back what was lost at each decrease.
    let mut delta = last - first;
    for pair in w.windows(2) {
        if pair[1].1 < pair[0].1 {
            delta += pair[0].1;
        }
    }
    let sampled = (t_last - t_first) as f64 / 1000.0;
    if sampled <= 0.0 {
        return None;
    }
    let avg = sampled / (w.len() - 1) as f64;
    let mut to_start = (t_first - start) as f64 / 1000.0;
    let mut to_end = (end - t_last) as f64 / 1000.0;
    let threshold = avg * 1.1;
    if delta > 0.0 && first >= 0.0 {
        let to_zero = sampled * (first / delta);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let factor = (sampled + to_start + to_end) / sampled;
    let mut v = delta * factor;
    if per_second {
        v /= (end - start) as f64 / 1000.0;
    }
    Some(v)
}

/// Prometheus' `bucketQuantile`: buckets sorted by upper bound, cumulative counts.
fn bucket_quantile(q: f64, b: &[(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if b.len() < 2 || b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return f64::NAN;
    }
    let total = b[b.len() - 1].1;
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let i = b
        .iter()
        .position(|(_, c)| *c >= rank)
        .unwrap_or(b.len() - 1);
    if i == b.len() - 1 {
        return b[b.len() - 2].0;
    }
    if i == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let (start, below) = if i == 0 { (0.0, 0.0) } else { b[i - 1] };
    let (end, count) = (b[i].0, b[i].1 - below);
    if count == 0.0 {
        return end;
    }
    start + (end - start) * ((rank - below) / count)
}

fn aggregate(a: &parser::AggregateExpr, t: i64, s: &Series) -> Result<Val, String> {
    let op = a.op.to_string();
    if a.param.is_some() {
        return Err(format!(
            "the simulator does not evaluate `{op}` with a parameter"
        ));
    }
    let Val::Vector(v) = eval(&a.expr, t, s)? else {
        return Err(format!("`{op}` aggregates a vector, not a scalar"));
    };
    let key = |l: &Labels| -> Labels {
        match &a.modifier {
            Some(LabelModifier::Include(keep)) => l
                .iter()
                .filter(|(k, _)| keep.labels.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            Some(LabelModifier::Exclude(drop)) => l
                .iter()
                .filter(|(k, _)| !drop.labels.contains(k) && *k != "__name__")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => Labels::new(),
        }
    };
    let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
    for (l, x) in &v {
        groups.entry(key(l)).or_default().push(*x);
    }
    let f = |xs: &[f64]| -> Result<f64, String> {
        Ok(match op.as_str() {
            "sum" => xs.iter().sum(),
            "avg" => xs.iter().sum::<f64>() / xs.len() as f64,
            "max" => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "min" => xs.iter().copied().fold(f64::INFINITY, f64::min),
            "count" => xs.len() as f64,
            other => return Err(format!("the simulator does not evaluate `{other}`")),
        })
    };
    let mut out = Vec::new();
    for (l, xs) in groups {
        out.push((l, f(&xs)?));
    }
    Ok(Val::Vector(out))
}

fn binary(b: &parser::BinaryExpr, t: i64, s: &Series) -> Result<Val, String> {
    let op = b.op.to_string();
    let comparison = matches!(op.as_str(), "==" | "!=" | ">" | "<" | ">=" | "<=");
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let apply = |x: f64, y: f64| -> Result<Option<f64>, String> {
        let r = match op.as_str() {
            "+" => x + y,
            "-" => x - y,
            "*" => x * y,
            "/" => x / y,
            "%" => x % y,
            "^" => x.powf(y),
            "==" | "!=" | ">" | "<" | ">=" | "<=" => {
                let holds = match op.as_str() {
                    "==" => x == y,
                    "!=" => x != y,
                    ">" => x > y,
                    "<" => x < y,
                    ">=" => x >= y,
                    _ => x <= y,
                };
                return Ok(if return_bool {
                    Some(if holds { 1.0 } else { 0.0 })
                } else if holds {
                    Some(x)
                } else {
                    None
                });
            }
            other => return Err(format!("the simulator does not evaluate `{other}`")),
        };
        Ok(Some(r))
    };
    let strip = |mut l: Labels| {
        if !comparison || return_bool {
            l.remove("__name__");
        }
        l
    };
    match (eval(&b.lhs, t, s)?, eval(&b.rhs, t, s)?) {
        (Val::Scalar(x), Val::Scalar(y)) => {
            if comparison && !return_bool {
                return Err("comparisons between scalars need `bool`".into());
            }
            Ok(Val::Scalar(apply(x, y)?.unwrap_or(f64::NAN)))
        }
        (Val::Vector(v), Val::Scalar(y)) => {
            let mut out = Vec::new();
            for (l, x) in v {
                if let Some(r) = apply(x, y)? {
                    out.push((strip(l), r));
                }
            }
            Ok(Val::Vector(out))
        }
        (Val::Scalar(x), Val::Vector(v)) => {
            let mut out = Vec::new();
            for (l, y) in v {
                if let Some(r) = apply(x, y)? {
                    // A filtering comparison keeps the vector's value.
                    let r = if comparison && !return_bool { y } else { r };
                    out.push((strip(l), r));
                }
            }
            Ok(Val::Vector(out))
        }
        (Val::Vector(lv), Val::Vector(rv)) => {
            let modifier = b.modifier.as_ref();
            if modifier.is_some_and(|m| !matches!(m.card, parser::VectorMatchCardinality::OneToOne))
            {
                return Err("the simulator does not evaluate group_left/group_right".into());
            }
            let matching = modifier.and_then(|m| m.matching.as_ref());
            let sig = |l: &Labels| -> Labels {
                l.iter()
                    .filter(|(k, _)| *k != "__name__")
                    .filter(|(k, _)| match matching {
                        Some(LabelModifier::Include(on)) => on.labels.contains(k),
                        Some(LabelModifier::Exclude(ign)) => !ign.labels.contains(k),
                        None => true,
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            let mut right: BTreeMap<Labels, f64> = BTreeMap::new();
            for (l, y) in &rv {
                if right.insert(sig(l), *y).is_some() {
                    return Err("many-to-many matching: the right side has duplicate series".into());
                }
            }
            let mut out = Vec::new();
            for (l, x) in lv {
                let k = sig(&l);
                if let Some(y) = right.get(&k) {
                    if let Some(r) = apply(x, *y)? {
                        let l = if matches!(matching, Some(LabelModifier::Include(_))) {
                            k
                        } else {
                            strip(l)
                        };
                        out.push((l, r));
                    }
                }
            }
            Ok(Val::Vector(out))
        }
    }
}

pub fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// A value as Prometheus writes it in JSON.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Two versions of one app at 10 req/s each, 10% errors on 1.5.0, sampled every second.
    fn series() -> Series {
        let mut s = Series::new();
        for (version, code, per_s) in [
            ("1.4.0", "200", 10.0),
            ("1.5.0", "200", 9.0),
            ("1.5.0", "500", 1.0),
        ] {
            let key = l(&[
                ("__name__", "http_requests_total"),
                ("app", "gateway"),
                ("version", version),
                ("code", code),
            ]);
            s.insert(
                key,
                (0..=120).map(|i| (i * 1000, per_s * i as f64)).collect(),
            );
        }
        for (le, c) in [("0.05", 5.0), ("0.1", 9.0), ("0.25", 10.0), ("+Inf", 10.0)] {
            let key = l(&[
                ("__name__", "http_request_duration_seconds_bucket"),
                ("app", "gateway"),
                ("le", le),
            ]);
            s.insert(key, (0..=120).map(|i| (i * 1000, c * i as f64)).collect());
        }
        s
    }

    fn one(v: Val) -> f64 {
        match v {
            Val::Scalar(x) => x,
            Val::Vector(v) => {
                assert_eq!(v.len(), 1, "{v:?}");
                v[0].1
            }
        }
    }

    #[test]
    fn error_ratio_of_the_new_version() {
        let q = r#"sum(rate(http_requests_total{app="gateway",code=~"5..",version="1.5.0"}[1m])) / sum(rate(http_requests_total{app="gateway",version="1.5.0"}[1m]))"#;
        let v = one(query(q, 120_000, &series()).unwrap());
        assert!((v - 0.1).abs() < 1e-9, "{v}");
        let q = r#"sum(rate(http_requests_total{app="gateway",version="1.5.0"}[1m]))"#;
        assert!((one(query(q, 120_000, &series()).unwrap()) - 10.0).abs() < 1e-9);
        let q = r#"sum(increase(http_requests_total{version="1.4.0"}[1m]))"#;
        assert!((one(query(q, 120_000, &series()).unwrap()) - 600.0).abs() < 1e-6);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let q =
            "histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))";
        // rank 5 of 10 falls at the top of the first bucket.
        assert!((one(query(q, 120_000, &series()).unwrap()) - 0.05).abs() < 1e-9);
        let q =
            "histogram_quantile(0.7, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))";
        // rank 7: 2 of the 4 in (0.05, 0.1].
        assert!((one(query(q, 120_000, &series()).unwrap()) - 0.075).abs() < 1e-9);
    }

    #[test]
    fn grouping_comparisons_and_no_data() {
        let q = "sum by (version) (rate(http_requests_total[1m]))";
        let Val::Vector(v) = query(q, 120_000, &series()).unwrap() else {
            panic!()
        };
        assert_eq!(v.len(), 2);
        let q = "sum by (version) (rate(http_requests_total[1m])) > 10.5";
        let Val::Vector(v) = query(q, 120_000, &series()).unwrap() else {
            panic!()
        };
        assert!(v.is_empty(), "both are 10 req/s: {v:?}");
        let q = r#"sum(rate(http_requests_total{version="9.9.9"}[1m]))"#;
        assert_eq!(query(q, 120_000, &series()).unwrap(), Val::Vector(vec![]));
        // 0/0 is NaN: no data for a guard.
        let q = r#"sum(rate(http_requests_total{code="404"}[1m])) / sum(rate(http_requests_total{code="404"}[1m]))"#;
        assert_eq!(query(q, 120_000, &series()).unwrap(), Val::Vector(vec![]));
        assert!(query("1 / 0 * 0", 0, &series()).map(one).unwrap().is_nan());
    }

    #[test]
    fn unsupported_forms_are_errors() {
        assert!(query("topk(1, up)", 0, &series())
            .unwrap_err()
            .contains("parameter"));
        assert!(query(
            "label_replace(up, \"a\", \"b\", \"c\", \"d\")",
            0,
            &series()
        )
        .unwrap_err()
        .contains("does not support"));
        assert!(query("sum(", 0, &series()).is_err());
    }
}
