//! One `SelfSubjectRulesReview` before the per-permission access reviews (issue 23): what the
//! rule-resolving authorizers (RBAC) grant the run's user in the namespace, in one request.
//!
//! Only an allow is taken from it, and only when the review is complete: a need the rules do
//! not grant, and every need when the review is incomplete (a webhook authorizer), unanswered
//! or not served (404), is still asked one `SelfSubjectAccessReview` at a time, as `kubectl
//! auth can-i` would — so a refusal is always the API's own answer to that permission.

use k8s_openapi::api::authorization::v1::SelfSubjectRulesReview;
use kube::api::Api;
use serde_json::{json, Value};

use super::preflight::Need;
use super::{post_params, retry, Cluster};

/// The resource rules of a complete review, or `None` (incomplete, refused, not served).
pub(super) async fn granted_rules(cluster: &Cluster) -> Option<Vec<Value>> {
    let api: Api<SelfSubjectRulesReview> = Api::all(cluster.client.clone());
    let review: SelfSubjectRulesReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": cluster.ns},
    }))
    .ok()?;
    let answer = retry(|| async { api.create(&post_params(), &review).await })
        .await
        .ok()?;
    let status = serde_json::to_value(answer.status?).ok()?;
    if status["incomplete"] != false {
        return None;
    }
    status["resourceRules"].as_array().cloned()
}

/// Does one of the rules grant the need (verb, group, resource and subresource; a rule limited
/// to some resource names grants nothing here, as the runner names no object in advance)?
pub(super) fn grants(rules: &[Value], need: &Need) -> bool {
    let has = |list: &Value, want: &str| {
        list.as_array()
            .into_iter()
            .flatten()
            .any(|x| x == "*" || x == want)
    };
    let resource = if need.subresource.is_empty() {
        need.resource.to_string()
    } else {
        format!("{}/{}", need.resource, need.subresource)
    };
    rules.iter().any(|r| {
        r["resourceNames"].as_array().is_none_or(|n| n.is_empty())
            && has(&r["verbs"], need.verb)
            && has(&r["apiGroups"], need.group)
            && (has(&r["resources"], &resource)
                || (!need.subresource.is_empty()
                    && (has(&r["resources"], &format!("{}/*", need.resource))
                        || has(&r["resources"], &format!("*/{}", need.subresource)))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        sub: &'static str,
    ) -> Need {
        Need {
            verb,
            group,
            resource,
            subresource: sub,
        }
    }

    #[test]
    fn rules_grant_only_what_they_name() {
        let admin = [json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})];
        assert!(grants(&admin, &need("patch", "apps", "deployments", "")));
        assert!(grants(&admin, &need("get", "", "pods", "log")));
        let reader = [
            json!({"verbs": ["get", "list", "watch"], "apiGroups": ["apps"], "resources": ["deployments"]}),
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
            json!({"verbs": ["update"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["ktplay-x"]}),
        ];
        assert!(grants(&reader, &need("list", "apps", "deployments", "")));
        assert!(!grants(&reader, &need("patch", "apps", "deployments", "")));
        assert!(
            !grants(&reader, &need("get", "", "deployments", "")),
            "wrong group"
        );
        assert!(
            !grants(&reader, &need("get", "", "pods", "log")),
            "pods is not pods/log"
        );
        assert!(!grants(
            &reader,
            &need("update", "coordination.k8s.io", "leases", "")
        ));
        let logs = [json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/*"]})];
        assert!(grants(&logs, &need("get", "", "pods", "log")));
        assert!(!grants(&logs, &need("get", "", "pods", "")));
        assert!(!grants(
            &[json!({"verbs": "*"})],
            &need("get", "", "pods", "")
        ));
    }
}
