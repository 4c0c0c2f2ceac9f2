//! What ktplay records of a deployment to restore it ([`Snap`]), and the template helpers the
//! kube layer shares.

use serde_json::Value;

use super::{HASH_LABEL, RESTARTED_AT};

/// A typed object as JSON.
pub(super) fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

pub(super) fn container_image<'a>(template: &'a Value, container: &str) -> Option<&'a str> {
    let cs = template["spec"]["containers"].as_array()?;
    cs.iter()
        .find(|c| c["name"] == container)
        .and_then(|c| c["image"].as_str())
}

/// A label selector string from `matchLabels`.
pub(super) fn selector_string(d: &Value) -> String {
    d["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// What ktplay changes in a deployment, and so what it records to restore: the image of every
/// container, kubectl's `restartedAt` annotation on the pod template, and the rolling-update
/// strategy. Deliberately not the whole template: a journal event stays a few hundred bytes
/// whatever the pod spec holds (a ConfigMap holds at most 1 MiB), and a restore changes only
/// what ktplay changed, so edits others made to the rest of the template survive it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snap {
    /// The deployment.
    pub name: String,
    /// `(container, image)` of `spec.template.spec.containers`, in order.
    pub images: Vec<(String, String)>,
    /// The template's `kubectl.kubernetes.io/restartedAt`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// `spec.strategy` (`null` when not recorded, as for an `undo` target).
    #[serde(default)]
    pub strategy: Value,
}

impl Snap {
    /// The snap of a deployment (as JSON) or of a ReplicaSet (its template; no strategy).
    pub fn of(name: &str, obj: &Value) -> Snap {
        Snap {
            name: name.to_string(),
            images: template_images(&obj["spec"]["template"]),
            restarted_at: obj["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
                .as_str()
                .map(String::from),
            strategy: obj["spec"]["strategy"].clone(),
        }
    }

    /// The image of one container.
    pub fn image(&self, container: &str) -> Option<&str> {
        self.images
            .iter()
            .find(|(c, _)| c == container)
            .map(|(_, i)| i.as_str())
    }

    /// Does the live deployment run what this snap says (images and restart annotation)?
    pub(super) fn matches(&self, live: &Snap) -> bool {
        self.images == live.images && self.restarted_at == live.restarted_at
    }
}

pub(super) fn template_images(template: &Value) -> Vec<(String, String)> {
    template["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["image"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The names of a deployment's containers.
pub fn container_names(d: &Value) -> Vec<String> {
    template_images(&d["spec"]["template"])
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// JSON-pointer escaping of one path segment (RFC 6901).
pub(super) fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Remove what the controller adds to a template, so it can be written back.
pub fn clean_template(mut t: Value) -> Value {
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove(HASH_LABEL);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snaps_record_images_not_templates() {
        let d = json!({"spec": {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"annotations": {RESTARTED_AT: "2026-12-01T00:00:00Z"}},
                         "spec": {"containers": [
                             {"name": "api", "image": "keeptrusts/api:1.4.2", "env": [{"name": "BIG", "value": "x".repeat(100_000)}]},
                             {"name": "sidecar", "image": "envoy:1.30"}]}}}});
        let s = Snap::of("api", &d);
        assert_eq!(
            s.images,
            vec![
                ("api".to_string(), "keeptrusts/api:1.4.2".to_string()),
                ("sidecar".to_string(), "envoy:1.30".to_string())
            ]
        );
        assert_eq!(s.restarted_at.as_deref(), Some("2026-12-01T00:00:00Z"));
        assert!(serde_json::to_string(&s).unwrap().len() < 300);
        assert_eq!(s.image("sidecar"), Some("envoy:1.30"));
        assert_eq!(container_names(&d), ["api", "sidecar"]);
        assert_eq!(
            pointer_escape(RESTARTED_AT),
            "kubectl.kubernetes.io~1restartedAt"
        );
    }
}
