//! The four patch types the API server accepts, on `serde_json::Value`.
//!
//! Strategic merge is written here rather than borrowed: lists with a merge key (containers by
//! `name`, volume mounts by `mountPath`, ports by `containerPort`/`port`, conditions by `type`)
//! merge element-wise, maps merge, `null` deletes, and directives (`$setElementOrder/…`,
//! `$patch`, `$retainKeys`, `$deleteFromPrimitiveList/…`) are consumed, never stored.

use serde_json::{Map, Value};

/// The patch content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json` (RFC 7396).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchKind {
    /// Recognise the content type of a PATCH request.
    pub fn from_content_type(ct: &str) -> Option<PatchKind> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Apply a patch body of the given kind to `target`. Errors are messages for a 400/422 Status.
pub fn apply_patch(target: &mut Value, kind: PatchKind, body: &[u8]) -> Result<(), String> {
    match kind {
        PatchKind::Merge => {
            let p: Value =
                serde_json::from_slice(body).map_err(|e| format!("invalid merge patch: {e}"))?;
            if !p.is_object() {
                return Err("invalid merge patch: the patch must be a JSON object".into());
            }
            json_patch::merge(target, &p);
            Ok(())
        }
        PatchKind::Json => {
            let p: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| format!("invalid JSON patch: {e}"))?;
            json_patch::patch(target, &p.0).map_err(|e| format!("the JSON patch failed: {e}"))
        }
        PatchKind::Strategic => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| format!("invalid strategic merge patch: {e}"))?;
            if !p.is_object() {
                return Err(
                    "invalid strategic merge patch: the patch must be a JSON object".into(),
                );
            }
            strategic_merge(target, &p);
            Ok(())
        }
        PatchKind::Apply => {
            let p = parse_apply_body(body)?;
            server_side_apply(target, &p);
            Ok(())
        }
    }
}

/// Parse an apply body: YAML (of which JSON is a subset).
pub fn parse_apply_body(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the apply body is not UTF-8".to_string())?;
    let v: Value =
        serde_yaml::from_str(text).map_err(|e| format!("invalid apply configuration: {e}"))?;
    if !v.is_object() {
        return Err("invalid apply configuration: expected an object".into());
    }
    Ok(v)
}

/// The merge key of a list field (by the field's name and, for `ports`, its items), if the
/// list merges by key.
pub fn list_merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    merge_key(field, items)
}

/// The merge key of a list field, chosen by its name and, for `ports`, by its items.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" | "volumeDevices" => Some("mountPath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        _ => None,
    }
}

/// Strategic merge of `patch` into `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(pmap) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if pmap.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = patch.clone();
        strip_directives(&mut clean);
        *target = clean;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    let mut deletions: Vec<(String, Vec<Value>)> = Vec::new();
    let mut retain: Option<Vec<String>> = None;
    for (k, v) in pmap {
        if let Some(list) = k.strip_prefix("$setElementOrder/") {
            orders.push((list.to_string(), v.as_array().cloned().unwrap_or_default()));
            continue;
        }
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            deletions.push((list.to_string(), v.as_array().cloned().unwrap_or_default()));
            continue;
        }
        if k == "$retainKeys" {
            retain = v.as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            });
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        let tmap = target.as_object_mut().expect("made an object above");
        if v.is_null() {
            tmap.remove(k);
            continue;
        }
        match (tmap.get_mut(k), v) {
            (Some(t @ Value::Object(_)), Value::Object(_)) => strategic_merge(t, v),
            (Some(Value::Array(t)), Value::Array(items)) => merge_list(t, items, k),
            (_, _) => {
                let mut clean = v.clone();
                strip_directives(&mut clean);
                if let Value::Object(m) = &clean {
                    if m.is_empty() && v.get("$patch").and_then(Value::as_str) == Some("delete") {
                        tmap.remove(k);
                        continue;
                    }
                }
                tmap.insert(k.clone(), clean);
            }
        }
    }
    let tmap = target.as_object_mut().expect("made an object above");
    for (list, values) in deletions {
        if let Some(Value::Array(t)) = tmap.get_mut(&list) {
            t.retain(|x| !values.contains(x));
        }
    }
    for (list, order) in orders {
        if let Some(Value::Array(t)) = tmap.get_mut(&list) {
            reorder(t, &order, &list);
        }
    }
    if let Some(keep) = retain {
        tmap.retain(|k, _| keep.contains(k) || pmap.contains_key(k));
    }
}

fn merge_list(target: &mut Vec<Value>, items: &[Value], field: &str) {
    let Some(key) = merge_key(field, items).or_else(|| merge_key(field, target)) else {
        let mut clean = Value::Array(items.to_vec());
        strip_directives(&mut clean);
        if let Value::Array(a) = clean {
            *target = a;
        }
        return;
    };
    let server_order: Vec<Value> = target.iter().filter_map(|t| t.get(key).cloned()).collect();
    for item in items {
        let Some(id) = item.get(key) else {
            // An item without its merge key: the API server rejects these; appending keeps data.
            let mut clean = item.clone();
            strip_directives(&mut clean);
            target.push(clean);
            continue;
        };
        let directive = item.get("$patch").and_then(Value::as_str);
        let pos = target.iter().position(|t| t.get(key) == Some(id));
        match (directive, pos) {
            (Some("delete"), Some(i)) => {
                target.remove(i);
            }
            (Some("delete"), None) => {}
            (Some("replace"), Some(i)) => {
                let mut clean = item.clone();
                strip_directives(&mut clean);
                target[i] = clean;
            }
            (_, Some(i)) => strategic_merge(&mut target[i], item),
            (_, None) => {
                let mut clean = item.clone();
                strip_directives(&mut clean);
                target.push(clean);
            }
        }
    }
    normalize_order(target, items, &server_order, key);
}

/// The order the API server gives a merged list (`normalizeElementOrder` and
/// `mergeSortedSlice` of `k8s.io/apimachinery`'s strategic merge): the patch's items in patch
/// order, interleaved with the items only the server had, each of those placed before a patch
/// item only when both were in the server's list and it came first there. So an item the patch
/// adds comes before the server's own items, as on a real server.
fn normalize_order(list: &mut Vec<Value>, patch: &[Value], server_order: &[Value], key: &str) {
    let patch_keys: Vec<&Value> = patch
        .iter()
        .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
        .filter_map(|i| i.get(key))
        .collect();
    let rank = |v: &Value| {
        v.get(key)
            .and_then(|id| patch_keys.iter().position(|k| *k == id))
    };
    let (mut patched, server_only): (Vec<Value>, Vec<Value>) = std::mem::take(list)
        .into_iter()
        .partition(|v| rank(v).is_some());
    patched.sort_by_key(|v| rank(v));
    let index = |v: &Value| {
        v.get(key)
            .and_then(|id| server_order.iter().position(|s| s == id))
    };
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        patched.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!((index(l), index(r)), (Some(li), Some(ri)) if li < ri),
        };
        let next = if take_left { left.next() } else { right.next() };
        list.extend(next);
    }
}

fn reorder(list: &mut [Value], order: &[Value], field: &str) {
    let Some(key) = merge_key(field, list) else {
        return;
    };
    let rank = |v: &Value| {
        v.get(key)
            .and_then(|id| order.iter().position(|o| o.get(key) == Some(id)))
            .unwrap_or(usize::MAX)
    };
    // A stable sort keeps items that the order does not name where they were, after the named.
    list.sort_by_key(rank);
}

/// Remove `$`-directives anywhere inside a value that is stored as-is.
pub fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            for x in m.values_mut() {
                strip_directives(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// Server-side apply, simplified: the applied configuration merges like a strategic patch,
/// except for fields that are atomic in the real schema (a Service's `spec.selector`, a
/// workload's `spec.selector`), which the applied value replaces whole.
pub fn server_side_apply(target: &mut Value, applied: &Value) {
    let atomic = [["spec", "selector"]];
    let mut patch = applied.clone();
    strip_directives(&mut patch);
    let saved: Vec<Option<Value>> = atomic
        .iter()
        .map(|path| patch.get(path[0]).and_then(|s| s.get(path[1])).cloned())
        .collect();
    strategic_merge(target, &patch);
    for (path, value) in atomic.iter().zip(saved) {
        if let Some(v) = value {
            if let Some(spec) = target.get_mut(path[0]).and_then(Value::as_object_mut) {
                spec.insert(path[1].to_string(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_image_as_kubectl_sends_it() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "api", "image": "k/api:1.4.2", "ports": [{"containerPort": 8080}]},
            {"name": "sidecar", "image": "s:1"}
        ]}}}});
        let p = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "api"}, {"name": "sidecar"}],
            "containers": [{"image": "k/api:1.5.0", "name": "api"}]
        }}}});
        strategic_merge(&mut d, &p);
        assert_eq!(
            d,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "api", "image": "k/api:1.5.0", "ports": [{"containerPort": 8080}]},
                {"name": "sidecar", "image": "s:1"}
            ]}}}})
        );
    }

    #[test]
    fn maps_merge_nulls_delete_and_lists_merge_by_key() {
        let mut s = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"selector": {"app": "c", "version": "blue"},
                     "ports": [{"port": 80, "targetPort": 8080}]}});
        let p = json!({"metadata": {"labels": {"b": null}},
            "spec": {"selector": {"version": "green"}, "ports": [{"port": 443}]}});
        strategic_merge(&mut s, &p);
        assert_eq!(s["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(
            s["spec"]["selector"],
            json!({"app": "c", "version": "green"})
        );
        // as on a real server: an item the patch adds comes first
        assert_eq!(
            s["spec"]["ports"],
            json!([{"port": 443}, {"port": 80, "targetPort": 8080}])
        );
        let del = json!({"spec": {"ports": [{"port": 80, "$patch": "delete"}]}});
        strategic_merge(&mut s, &del);
        assert_eq!(s["spec"]["ports"], json!([{"port": 443}]));
    }

    #[test]
    fn merged_lists_keep_the_api_servers_order() {
        let mut d = json!({"c": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let p = json!({"c": {"containers": [{"name": "a", "image": "x"}, {"name": "new"}]}});
        strategic_merge(&mut d, &p);
        let names: Vec<&str> = d["c"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "new", "b"]);
        strategic_merge(&mut d, &json!({"c": {"containers": [{"name": "z"}]}}));
        assert_eq!(d["c"]["containers"][0]["name"], "z");
        assert_eq!(d["c"]["containers"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn lists_without_merge_key_are_replaced() {
        let mut d = json!({"spec": {"args": ["a", "b"]}});
        strategic_merge(&mut d, &json!({"spec": {"args": ["c"]}}));
        assert_eq!(d["spec"]["args"], json!(["c"]));
    }

    #[test]
    fn apply_replaces_atomic_selector() {
        let mut s =
            json!({"spec": {"selector": {"app": "c", "version": "blue"}, "type": "ClusterIP"}});
        server_side_apply(&mut s, &json!({"spec": {"selector": {"app": "c"}}}));
        assert_eq!(s["spec"]["selector"], json!({"app": "c"}));
        assert_eq!(s["spec"]["type"], json!("ClusterIP"));
    }

    #[test]
    fn bad_bodies_are_errors() {
        let mut v = json!({});
        assert!(apply_patch(&mut v, PatchKind::Merge, b"{nope").is_err());
        assert!(apply_patch(&mut v, PatchKind::Merge, b"[1]").is_err());
        assert!(apply_patch(&mut v, PatchKind::Json, b"{}").is_err());
        assert!(apply_patch(
            &mut v,
            PatchKind::Json,
            br#"[{"op":"replace","path":"/missing/x","value":1}]"#
        )
        .is_err());
        assert!(apply_patch(&mut v, PatchKind::Strategic, b"\"x\"").is_err());
        assert!(apply_patch(&mut v, PatchKind::Apply, b"- a\n- b").is_err());
        assert!(apply_patch(&mut v, PatchKind::Apply, b"a: [").is_err());
    }
}
