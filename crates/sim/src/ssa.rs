//! Field ownership for server-side apply, simplified: each apply manager owns the leaf fields
//! of its last applied configuration; applying a different value to a field another apply
//! manager owns is a `409 Conflict` worded as the real server's, unless `force=true`, which
//! takes the field over; a field that its last applier stops applying, and nobody else owns,
//! is removed (for map entries; list items stay).
//!
//! Not modelled: ownership by non-apply writers (the real server also reports conflicts with the
//! managers of PUT and PATCH requests, `conflict with "kubectl-edit" using v1`), `managedFields`
//! in the object, and the exact key notation of associative lists with several keys.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::store::ApiError;

/// Per manager, the field paths it owns (`.data.x`, `.spec.replicas`,
/// `.spec.template.spec.containers[name="c"].image`).
pub type Owners = BTreeMap<String, BTreeSet<String>>;

/// The leaf fields of an object with their values; `apiVersion`, `kind` and the name and
/// namespace are identity, not owned.
pub fn leaves(v: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    if let Value::Object(m) = v {
        for (k, x) in m {
            if matches!(k.as_str(), "apiVersion" | "kind" | "status") {
                continue;
            }
            if k == "metadata" {
                if let Value::Object(meta) = x {
                    for (mk, mx) in meta {
                        if matches!(mk.as_str(), "labels" | "annotations") {
                            walk(mx, &format!(".metadata.{mk}"), "", &mut out);
                        }
                    }
                }
                continue;
            }
            walk(x, &format!(".{k}"), k, &mut out);
        }
    }
    out
}

fn walk(v: &Value, path: &str, field: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                walk(x, &format!("{path}.{k}"), k, out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            match super::patch::list_merge_key(field, items) {
                Some(key) => {
                    for item in items {
                        let id = match item.get(key) {
                            Some(Value::String(s)) => format!("{s:?}"),
                            Some(other) => other.to_string(),
                            None => continue,
                        };
                        walk(item, &format!("{path}[{key}={id}]"), "", out);
                    }
                }
                None => {
                    out.insert(path.to_string(), v.clone());
                }
            }
        }
        other => {
            out.insert(path.to_string(), other.clone());
        }
    }
}

/// The conflicts of `manager` applying `applied` to `current`: (other manager, path).
pub fn conflicts(
    owners: &Owners,
    manager: &str,
    current: &Value,
    applied: &Value,
) -> Vec<(String, String)> {
    let now = leaves(current);
    let mut out = Vec::new();
    for (path, value) in leaves(applied) {
        if now.get(&path) == Some(&value) {
            continue; // the same value: shared ownership, as on a real server
        }
        for (other, fields) in owners {
            if other != manager && fields.contains(&path) {
                out.push((other.clone(), path.clone()));
            }
        }
    }
    out
}

/// The real server's 409 for apply conflicts.
pub fn conflict_error(conflicts: &[(String, String)]) -> ApiError {
    let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (m, p) in conflicts {
        by_manager.entry(m).or_default().push(p);
    }
    let parts: Vec<String> = by_manager
        .iter()
        .map(|(m, paths)| match paths.as_slice() {
            [one] => format!("conflict with \"{m}\": {one}"),
            many => format!(
                "conflicts with \"{m}\":\n{}",
                many.iter()
                    .map(|p| format!("- {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        })
        .collect();
    let n = conflicts.len();
    let mut e = ApiError::new(
        409,
        "Conflict",
        format!(
            "Apply failed with {n} conflict{}: {}",
            if n == 1 { "" } else { "s" },
            parts.join("\n")
        ),
    );
    e.causes = conflicts
        .iter()
        .map(|(m, p)| super::store::FieldError {
            field: p.clone(),
            reason: "FieldManagerConflict",
            body: format!("conflict with \"{m}\""),
        })
        .collect();
    e
}

/// Record a successful apply: `manager` owns exactly the leaves of `applied` now (others lose
/// them when forced). Returns the paths nobody owns any more, which the object should lose.
pub fn record(owners: &mut Owners, manager: &str, applied: &Value, force: bool) -> Vec<String> {
    let new: BTreeSet<String> = leaves(applied).into_keys().collect();
    let old = owners.remove(manager).unwrap_or_default();
    if force {
        for fields in owners.values_mut() {
            fields.retain(|p| !new.contains(p));
        }
        owners.retain(|_, f| !f.is_empty());
    }
    let released: Vec<String> = old
        .difference(&new)
        .filter(|p| !owners.values().any(|f| f.contains(*p)))
        .cloned()
        .collect();
    owners.insert(manager.to_string(), new);
    released
}

/// Remove released map entries (`.data.x`, `.metadata.labels.a`) from an object; paths into
/// lists are left alone.
pub fn remove_released(obj: &mut Value, released: &[String]) {
    for path in released {
        if path.contains('[') {
            continue;
        }
        let keys: Vec<&str> = path.trim_start_matches('.').split('.').collect();
        let Some((last, parents)) = keys.split_last() else {
            continue;
        };
        // Only where the parent is a string map the apply can shrink.
        if !matches!(
            parents,
            ["data"] | ["binaryData"] | ["metadata", "labels"] | ["metadata", "annotations"]
        ) {
            continue;
        }
        let parent = parents.iter().try_fold(&mut *obj, |cur, k| cur.get_mut(*k));
        if let Some(m) = parent.and_then(Value::as_object_mut) {
            m.shift_remove(*last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn two_managers_conflict_and_force_takes_over() {
        let mut owners = Owners::new();
        let a = json!({"data": {"x": "1", "y": "1"}});
        let mut obj = a.clone();
        assert!(conflicts(&owners, "a", &obj, &a).is_empty());
        record(&mut owners, "a", &a, false);
        let b = json!({"data": {"x": "1", "y": "2"}});
        let c = conflicts(&owners, "b", &obj, &b);
        assert_eq!(c, [("a".to_string(), ".data.y".to_string())]);
        assert_eq!(
            conflict_error(&c).message,
            "Apply failed with 1 conflict: conflict with \"a\": .data.y"
        );
        record(&mut owners, "b", &b, true);
        obj["data"]["y"] = json!("2");
        // a stops applying x, b still owns it: kept; a applies nothing of y any more
        let released = record(&mut owners, "a", &json!({"data": {"z": "1"}}), false);
        assert!(released.is_empty(), "{released:?}");
        let released = record(&mut owners, "b", &json!({"data": {"y": "2"}}), false);
        assert_eq!(released, [".data.x"]);
        remove_released(&mut obj, &released);
        assert_eq!(obj, json!({"data": {"y": "2"}}));
        let two = conflicts(
            &owners,
            "a",
            &obj,
            &json!({"data": {"y": "3"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        );
        assert_eq!(two.len(), 1);
    }
}
