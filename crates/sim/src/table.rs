//! `meta.k8s.io/v1` Table output, which `kubectl get` asks for to print its columns.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::discovery::Kind;
use super::selector::LabelSelector;
use super::store::{at, i64_at, str_at};

/// Does the Accept header ask for a Table?
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
}

/// kubectl's human duration (`k8s.io/apimachinery/pkg/util/duration.HumanDuration`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{d}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age(obj: &Value) -> String {
    let Some(ts) = str_at(obj, &["metadata", "creationTimestamp"]) else {
        return "<unknown>".into();
    };
    match DateTime::parse_from_rfc3339(ts) {
        Ok(t) => human_duration((Utc::now() - t.with_timezone(&Utc)).num_seconds()),
        Err(_) => "<unknown>".into(),
    }
}

fn col(name: &str, ty: &str, priority: i32, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn containers_of(spec: Option<&Value>) -> (String, String) {
    let cs = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs.iter().filter_map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = cs.iter().filter_map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

fn selector_string(obj: &Value) -> String {
    at(obj, &["spec", "selector"])
        .map(|s| LabelSelector::from_object(s).to_string())
        .unwrap_or_else(|| "<none>".into())
}

fn columns(kind: Kind) -> Vec<Value> {
    let name = col(
        "Name",
        "string",
        0,
        "Name must be unique within a namespace.",
    );
    let age = col("Age", "string", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.");
    match kind {
        Kind::Deployment => vec![
            name,
            col("Ready", "string", 0, "Number of the pod with ready state"),
            col("Up-to-date", "string", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            col("Available", "string", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            age,
            col("Containers", "string", 1, "Names of each container in the template."),
            col("Images", "string", 1, "Images referenced by each container in the template."),
            col("Selector", "string", 1, "Label selector for pods."),
        ],
        Kind::ReplicaSet => vec![
            name,
            col("Desired", "integer", 0, "Number of desired pods."),
            col("Current", "integer", 0, "Number of actual replicas."),
            col("Ready", "integer", 0, "The number of ready replicas for this replica set."),
            age,
            col("Containers", "string", 1, "Names of each container in the template."),
            col("Images", "string", 1, "Images referenced by each container in the template."),
            col("Selector", "string", 1, "Label selector for pods."),
        ],
        Kind::Pod => vec![
            name,
            col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted."),
            age,
            col("IP", "string", 1, "IP address allocated to the pod."),
            col("Node", "string", 1, "Name of the Node this pod is scheduled on."),
        ],
        Kind::Service => vec![
            name,
            col("Type", "string", 0, "The type of service."),
            col("Cluster-IP", "string", 0, "Cluster IP of the service."),
            col("External-IP", "string", 0, "External IP of the service."),
            col("Port(s)", "string", 0, "The ports exposed by the service."),
            age,
            col("Selector", "string", 1, "The label selector of the service."),
        ],
        Kind::Namespace => vec![
            name,
            col("Status", "string", 0, "The status of the namespace"),
            age,
        ],
        Kind::ConfigMap => vec![
            name,
            col("Data", "string", 0, "Number of keys in the config map."),
            age,
        ],
        Kind::Lease => vec![
            name,
            col("Holder", "string", 0, "The holder of the lease."),
            age,
        ],
        Kind::HttpRoute | Kind::Ingress | Kind::PodDisruptionBudget => vec![name, age],
    }
}

fn cells(kind: Kind, o: &Value) -> Vec<Value> {
    let name = json!(str_at(o, &["metadata", "name"]).unwrap_or_default());
    let status_i = |k: &str| i64_at(o, &["status", k]).unwrap_or(0);
    match kind {
        Kind::Deployment => {
            let desired = i64_at(o, &["spec", "replicas"]).unwrap_or(0);
            let (cs, imgs) = containers_of(at(o, &["spec", "template", "spec"]));
            vec![
                name,
                json!(format!("{}/{}", status_i("readyReplicas"), desired)),
                json!(status_i("updatedReplicas")),
                json!(status_i("availableReplicas")),
                json!(age(o)),
                json!(cs),
                json!(imgs),
                json!(selector_string(o)),
            ]
        }
        Kind::ReplicaSet => {
            let (cs, imgs) = containers_of(at(o, &["spec", "template", "spec"]));
            vec![
                name,
                json!(i64_at(o, &["spec", "replicas"]).unwrap_or(0)),
                json!(status_i("replicas")),
                json!(status_i("readyReplicas")),
                json!(age(o)),
                json!(cs),
                json!(imgs),
                json!(selector_string(o)),
            ]
        }
        Kind::Pod => {
            let statuses = at(o, &["status", "containerStatuses"])
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = at(o, &["spec", "containers"])
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
                .sum();
            let waiting = statuses
                .iter()
                .find_map(|s| str_at(s, &["state", "waiting", "reason"]));
            let phase = str_at(o, &["status", "phase"]).unwrap_or("Pending");
            let shown = waiting.unwrap_or(phase);
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(shown),
                json!(restarts.to_string()),
                json!(age(o)),
                json!(str_at(o, &["status", "podIP"]).unwrap_or("<none>")),
                json!(str_at(o, &["spec", "nodeName"]).unwrap_or("<none>")),
            ]
        }
        Kind::Service => {
            let ports: Vec<String> = at(o, &["spec", "ports"])
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}/{}",
                        p.get("port").map(|v| v.to_string()).unwrap_or_default(),
                        str_at(p, &["protocol"]).unwrap_or("TCP")
                    )
                })
                .collect();
            let selector = at(o, &["spec", "selector"])
                .and_then(Value::as_object)
                .map(|m| LabelSelector::from_map(m).to_string())
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(str_at(o, &["spec", "type"]).unwrap_or("ClusterIP")),
                json!(str_at(o, &["spec", "clusterIP"]).unwrap_or("<none>")),
                json!("<none>"),
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                }),
                json!(age(o)),
                json!(selector),
            ]
        }
        Kind::Namespace => vec![
            name,
            json!(str_at(o, &["status", "phase"]).unwrap_or("Active")),
            json!(age(o)),
        ],
        Kind::ConfigMap => vec![
            name,
            json!(o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())),
            json!(age(o)),
        ],
        Kind::Lease => vec![
            name,
            json!(str_at(o, &["spec", "holderIdentity"]).unwrap_or("")),
            json!(age(o)),
        ],
        Kind::HttpRoute | Kind::Ingress | Kind::PodDisruptionBudget => {
            vec![name, json!(age(o))]
        }
    }
}

/// Render objects as a Table. `include_object` follows the `includeObject` parameter:
/// `None` leaves the object out, `Object` embeds it whole, otherwise only its metadata.
pub fn table(kind: Kind, objects: &[Value], rv: u64, include_object: Option<&str>) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let object = match include_object {
                Some("None") => Value::Null,
                Some("Object") => o.clone(),
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                }),
            };
            json!({"cells": cells(kind, o), "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": columns(kind),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400), "3d");
        assert_eq!(human_duration(400 * 86400), "400d");
    }

    #[test]
    fn table_accept_header() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
