//! Unit tests of `run::traffic`.

use super::*;

fn routed(route: &Value, own: &[&str]) -> Routed {
    Routed {
        services: own.iter().map(|s| s.to_string()).collect(),
        rules: route["spec"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["backendRefs"].clone())
            .collect(),
    }
}

#[test]
fn weights_go_on_the_stable_refs_and_come_back() {
    let route = json!({"spec": {"rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
         "backendRefs": [{"name": "gw", "port": 8080}]},
        {"backendRefs": [{"name": "other", "port": 80}]}
    ]}});
    assert_eq!(route_services(&route, "ns"), ["gw", "other"]);
    let only_gw = routed(&route, &["gw"]);
    let w = weighted_rules(&route, &only_gw, Some(10), "ns");
    assert_eq!(
        w[0]["backendRefs"],
        json!([{"name": "gw", "port": 8080, "weight": 90}, {"name": "gw-canary", "port": 8080, "weight": 10}])
    );
    assert_eq!(
        w[1], route["spec"]["rules"][1],
        "rules to other Services are left alone"
    );
    let back = weighted_rules(&json!({"spec": {"rules": w}}), &only_gw, None, "ns");
    assert_eq!(
        back, route["spec"]["rules"],
        "exactly as before: no weight where there was none"
    );
    // Routing twice (a resumed run) does not add a second canary ref.
    let again = weighted_rules(
        &json!({"spec": {"rules": w.clone()}}),
        &only_gw,
        Some(10),
        "ns",
    );
    assert_eq!(again, w);
}

/// Issue 20, item 1: `/` → web 100 + web-legacy 0, `/admin` → admin. Only `web` is split;
/// web-legacy and admin never change, and everything comes back exactly.
#[test]
fn only_the_components_backends_change() {
    let route = json!({"spec": {"rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
         "backendRefs": [{"name": "web", "port": 80, "weight": 100}, {"name": "web-legacy", "port": 80, "weight": 0}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
         "backendRefs": [{"group": "", "kind": "Service", "name": "admin", "port": 80, "weight": 1}]}
    ]}});
    let r = routed(&route, &["web"]);
    for (p, stable) in [(10, 90), (50, 50)] {
        let w = weighted_rules(&route, &r, Some(p), "ns");
        assert_eq!(
            w[0]["backendRefs"],
            json!([{"name": "web", "port": 80, "weight": stable},
                   {"name": "web-canary", "port": 80, "weight": p},
                   {"name": "web-legacy", "port": 80, "weight": 0}])
        );
        assert_eq!(w[1], route["spec"]["rules"][1], "admin untouched");
        let back = weighted_rules(&json!({"spec": {"rules": w}}), &r, None, "ns");
        assert_eq!(back, route["spec"]["rules"]);
    }
    // Beside another weighted backend, the component's weight is split and the other
    // keeps its share: web 100 + legacy 100 → web 90, canary 10, legacy 100.
    let shared = json!({"spec": {"rules": [{"backendRefs": [
        {"name": "web", "weight": 100}, {"name": "web-legacy", "weight": 100}]}]}});
    let r = routed(&shared, &["web"]);
    let w = weighted_rules(&shared, &r, Some(10), "ns");
    assert_eq!(
        w[0]["backendRefs"],
        json!([{"name": "web", "weight": 90}, {"name": "web-canary", "weight": 10}, {"name": "web-legacy", "weight": 100}])
    );
    assert!(exact_weights("site", &r, &[10, 25], "ns").is_ok());
    // web at the default weight 1 beside legacy: 10% of 1 is not whole: refused.
    let one =
        json!({"spec": {"rules": [{"backendRefs": [{"name": "web"}, {"name": "web-legacy"}]}]}});
    let f = exact_weights("site", &routed(&one, &["web"]), &[10], "ns").unwrap_err();
    assert!(f.is(crate::run::FailureKind::Refused), "{f:?}");
    assert!(
        f.message
            .contains("rule 1 of HTTPRoute `site` sends to `web` with weight 1"),
        "{}",
        f.message
    );
    // A backendRef to another namespace or kind is never the component's.
    assert_eq!(
        service_ref(&json!({"name": "web", "namespace": "other"}), "ns"),
        None
    );
    assert_eq!(
        service_ref(
            &json!({"name": "web", "kind": "ServiceImport", "group": "multicluster.x-k8s.io"}),
            "ns"
        ),
        None
    );
}

#[test]
fn the_canary_ingress_splits_only_the_components_paths() {
    let ing = json!({"spec": {"ingressClassName": "nginx", "rules": [
        {"host": "site.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            {"path": "/admin", "pathType": "Prefix", "backend": {"service": {"name": "admin", "port": {"number": 80}}}}]}},
        {"host": "admin.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "admin", "port": {"number": 80}}}}]}}],
        "defaultBackend": {"service": {"name": "admin", "port": {"number": 80}}}}});
    assert_eq!(
        canary_ingress_spec(&ing, &["web".to_string()]),
        json!({"ingressClassName": "nginx", "rules": [
            {"host": "site.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web-canary", "port": {"number": 80}}}}]}}]})
    );
}

#[test]
fn a_canary_share_is_of_pods() {
    assert_eq!(super::pod_share(1, 3), "1 canary pod beside 3: 25% of pods");
    assert_eq!(
        super::pod_share(2, 10),
        "2 canary pods beside 10: 16.7% of pods"
    );
}
