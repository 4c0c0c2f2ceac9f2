//! Reading a lease: when it expires, when it was renewed, and the lease in words.

use super::*;

pub(super) fn expiry(l: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let renewed = renewed_at(l)?;
    // Hostile or absurd durations never panic: an overflow is "no expiry".
    chrono::TimeDelta::try_seconds(duration_of(l)).and_then(|d| renewed.checked_add_signed(d))
}

/// The lease's last renewal (its acquisition when it was never renewed).
pub(super) fn renewed_at(l: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = l["spec"]["renewTime"]
        .as_str()
        .or(l["spec"]["acquireTime"].as_str())?;
    Some(
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()?
            .with_timezone(&chrono::Utc),
    )
}

pub(super) fn time_of(l: &Value, key: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = l["spec"][key].as_str()?;
    Some(
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()?
            .with_timezone(&chrono::Utc),
    )
}

/// `leaseDurationSeconds` (ktplay's when absent).
pub(super) fn duration_of(l: &Value) -> i64 {
    l["spec"]["leaseDurationSeconds"]
        .as_i64()
        .unwrap_or(LEASE_SECONDS)
}

/// What a lease says of itself, in words, from the values it holds (never printed raw): when it
/// was taken and last renewed, how long it lasts, when it expires.
pub(crate) fn lease_words(l: &Value) -> String {
    let t = now();
    let ago = |x: chrono::DateTime<chrono::Utc>| {
        let s = (t - x).num_seconds();
        if s >= 0 {
            format!("{s} s ago")
        } else {
            format!("{} s in the future by this machine's clock", -s)
        }
    };
    let acquired = time_of(l, "acquireTime");
    let renewed = time_of(l, "renewTime");
    let mut words = Vec::new();
    match (acquired, renewed) {
        (Some(a), Some(r)) if a == r => words.push(format!(
            "taken {} ({}) and never renewed since",
            micro(a),
            ago(a)
        )),
        (a, r) => {
            if let Some(a) = a {
                words.push(format!("taken {}", micro(a)));
            }
            match r {
                Some(r) => words.push(format!("last renewed {} ({})", micro(r), ago(r))),
                None => words.push("no renewal time".into()),
            }
        }
    }
    words.push(format!("lasts {} s", duration_of(l)));
    match expiry(l) {
        Some(e) if e < t => words.push(format!("expired {}", micro(e))),
        Some(e) => words.push(format!("expires {} unless renewed", micro(e))),
        None => words.push("no expiry can be read".into()),
    }
    words.join(", ")
}
