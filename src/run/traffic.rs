//! Traffic routers for canaries: `traffic httproute "NAME"` (Gateway API) and `traffic ingress
//! "NAME"` (ingress-nginx).
//!
//! [`route`] gives the canary its weight: a canary Service `<stable>-canary` selecting only the
//! canary pods (the stable Service's selector plus `track: canary`, the label the canary
//! Deployment's pods carry), then
//!
//! - HTTPRoute: in every rule that sends to the stable Service, the stable `backendRef` gets
//!   `100 - P` and a canary `backendRef` (same port) gets `P`;
//! - Ingress: a canary Ingress `<name>-canary` beside the stable one, with the stable one's rules
//!   sent to the canary Service and `nginx.ingress.kubernetes.io/canary: "true"`,
//!   `canary-weight: "P"`.
//!
//! [`unroute`] undoes it, weight first: the HTTPRoute's stable `backendRef` back to 100 and the
//! canary `backendRef` gone (or the canary Ingress deleted), then the canary Service deleted. It is
//! idempotent, so a rollback (or a resumed one) may call it whatever state it finds.
//!
//! The stable Service's selector would match the canary pods too (they carry its labels), so
//! through the stable backend the canary would also get its share of pods of the stable weight
//! (`weight 10%` beside 3 stable pods: 32.5% of requests). As Argo Rollouts does, [`pin`] adds the
//! stable ReplicaSet's `pod-template-hash` to each stable Service's selector before the canary
//! Deployment exists, and [`unpin`] puts the selector journaled in the canary's record
//! ([`Pinned`], read by [`pins`] before anything changes) back, after the weight (promotion,
//! rollback, `undo`).

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::check::program::{Traffic, TrafficKind};

use super::cluster::{retry, status_code, Cluster};
use super::rollback::Pinned;
use super::Failure;

/// The label every pod of a ReplicaSet carries, set by the deployment controller.
const HASH: &str = "pod-template-hash";

fn http_route() -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    }
}

fn ingress() -> ApiResource {
    ApiResource {
        group: "networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "networking.k8s.io/v1".into(),
        kind: "Ingress".into(),
        plural: "ingresses".into(),
    }
}

fn services() -> ApiResource {
    ApiResource {
        group: "".into(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Service".into(),
        plural: "services".into(),
    }
}

fn api(c: &Cluster, ar: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(c.client.clone(), &c.ns, ar)
}

fn fail(what: &str, e: kube::Error) -> Failure {
    Failure::new(format!("{what}: {}", super::cluster::words(&e)))
}

async fn get(c: &Cluster, ar: &ApiResource, name: &str) -> Result<Option<Value>, Failure> {
    match retry(|| async { api(c, ar).get(name).await }).await {
        Ok(o) => Ok(Some(serde_json::to_value(o).unwrap_or_default())),
        Err(e) if status_code(&e) == Some(404) => Ok(None),
        Err(e) => Err(fail(&format!("read {} `{name}`", ar.kind), e)),
    }
}

async fn delete(c: &Cluster, ar: &ApiResource, name: &str) -> Result<bool, Failure> {
    c.may_write()
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    match retry(|| async { api(c, ar).delete(name, &DeleteParams::default()).await }).await {
        Ok(_) => Ok(true),
        Err(e) if status_code(&e) == Some(404) => Ok(false),
        Err(e) => Err(fail(&format!("delete {} `{name}`", ar.kind), e)),
    }
}

async fn create(c: &Cluster, ar: &ApiResource, obj: Value) -> Result<(), Failure> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let obj: DynamicObject =
        serde_json::from_value(obj).map_err(|e| Failure::new(format!("{}: {e}", ar.kind)))?;
    c.may_write()
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    match retry(|| async { api(c, ar).create(&PostParams::default(), &obj).await }).await {
        Ok(_) => Ok(()),
        // Left by an interrupted run (or the first try, whose answer was lost): keep it.
        Err(e) if status_code(&e) == Some(409) => Ok(()),
        Err(e) => Err(fail(&format!("create {} `{name}`", ar.kind), e)),
    }
}

async fn merge(c: &Cluster, ar: &ApiResource, name: &str, patch: Value) -> Result<(), Failure> {
    c.may_write()
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    retry(|| async {
        api(c, ar)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
    })
    .await
    .map(|_| ())
    .map_err(|e| fail(&format!("update {} `{name}`", ar.kind), e))
}

fn canary(name: &str) -> String {
    format!("{name}-canary")
}

/// The Services the route sends to that are not canaries.
fn stable_services(route: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rule in route["spec"]["rules"].as_array().into_iter().flatten() {
        for b in rule["backendRefs"].as_array().into_iter().flatten() {
            if let Some(n) = b["name"].as_str() {
                if !n.ends_with("-canary") && !out.iter().any(|x| x == n) {
                    out.push(n.to_string());
                }
            }
        }
    }
    out
}

fn ingress_services(ing: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rule in ing["spec"]["rules"].as_array().into_iter().flatten() {
        for p in rule["http"]["paths"].as_array().into_iter().flatten() {
            if let Some(n) = p["backend"]["service"]["name"].as_str() {
                if !out.iter().any(|x| x == n) {
                    out.push(n.to_string());
                }
            }
        }
    }
    if let Some(n) = ing["spec"]["defaultBackend"]["service"]["name"].as_str() {
        if !out.iter().any(|x| x == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// The canary Service beside `stable`: its ports, its selector plus `track: canary`.
async fn canary_service(c: &Cluster, stable: &str) -> Result<(), Failure> {
    let Some(svc) = get(c, &services(), stable).await? else {
        return Err(Failure::new(format!(
            "the route sends to Service `{stable}`, which does not exist"
        )));
    };
    let mut selector = svc["spec"]["selector"].clone();
    // Pinned to the stable ReplicaSet by now: the canary's pods have their own hash.
    if let Some(m) = selector.as_object_mut() {
        m.remove(HASH);
    }
    if !selector.is_object() || selector.as_object().is_some_and(|m| m.is_empty()) {
        return Err(Failure::new(format!(
            "Service `{stable}` has no selector: a canary Service cannot pick the canary pods"
        )));
    }
    selector["track"] = json!("canary");
    let ports: Vec<Value> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let mut q = json!({});
            for k in ["name", "port", "targetPort", "protocol", "appProtocol"] {
                if !p[k].is_null() {
                    q[k] = p[k].clone();
                }
            }
            q
        })
        .collect();
    create(
        c,
        &services(),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": canary(stable), "namespace": c.ns,
                         "labels": {"app.kubernetes.io/managed-by": "ktplay", "ktplay/canary-of": stable}},
            "spec": {"selector": selector, "ports": ports},
        }),
    )
    .await
}

/// The Services a router sends to (not the canaries), or why it cannot be read.
async fn stable_of(c: &Cluster, t: &Traffic) -> Result<Vec<String>, Failure> {
    Ok(match t.kind {
        TrafficKind::HttpRoute => {
            let Some(r) = get(c, &http_route(), &t.name).await? else {
                return Err(Failure::new(format!(
                    "HTTPRoute `{}` does not exist",
                    t.name
                )));
            };
            stable_services(&r)
        }
        TrafficKind::Ingress => {
            let Some(ing) = get(c, &ingress(), &t.name).await? else {
                return Err(Failure::new(format!("Ingress `{}` does not exist", t.name)));
            };
            ingress_services(&ing)
        }
    })
}

fn selector_map(svc: &Value) -> std::collections::BTreeMap<String, String> {
    svc["spec"]["selector"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Before a canary changes anything: each stable Service the router sends to that selects
/// exactly one of `deployments`' pod templates, with its selector as it is now (journaled in
/// the canary's record, so promotion, rollback and `--resume` put back exactly that).
pub async fn pins(c: &Cluster, t: &Traffic, deployments: &[&str]) -> Result<Vec<Pinned>, Failure> {
    let mut out = Vec::new();
    for s in stable_of(c, t).await? {
        let Some(svc) = get(c, &services(), &s).await? else {
            continue;
        };
        let selector = selector_map(&svc);
        if selector.is_empty() {
            continue;
        }
        let mut selects = Vec::new();
        for d in deployments {
            let dep = c
                .deployment(d)
                .await
                .map_err(|e| Failure::new(e.to_string()))?;
            let labels = &dep["spec"]["template"]["metadata"]["labels"];
            if selector
                .iter()
                .filter(|(k, _)| k.as_str() != HASH)
                .all(|(k, v)| labels[k].as_str() == Some(v))
            {
                selects.push(d.to_string());
            }
        }
        // A Service over several of the component's deployments cannot name one ReplicaSet:
        // left as it is (the canary's share then includes its share of pods there).
        if let [d] = selects.as_slice() {
            let mut selector = selector;
            // Left pinned by a run whose journal is gone: the selector without the hash.
            selector.remove(HASH);
            out.push(Pinned {
                service: s,
                selector,
                deployment: d.clone(),
            });
        }
    }
    Ok(out)
}

/// Pin each stable Service to its deployment's current ReplicaSet. Idempotent.
pub async fn pin(c: &Cluster, pins: &[Pinned]) -> Result<String, Failure> {
    let mut said = Vec::new();
    for p in pins {
        let hash = c
            .template_hash(&p.deployment)
            .await
            .map_err(|e| Failure::new(e.to_string()))?;
        let cur = get(c, &services(), &p.service).await?;
        if cur
            .as_ref()
            .map(selector_map)
            .and_then(|m| m.get(HASH).cloned())
            != Some(hash.clone())
        {
            merge(
                c,
                &services(),
                &p.service,
                json!({"spec": {"selector": {HASH: hash}}}),
            )
            .await?;
        }
        said.push(format!(
            "Service {} selects only {} ({HASH} {hash})",
            p.service, p.deployment
        ));
    }
    Ok(said.join("; "))
}

/// Each pinned Service's selector back to what it was before the canary. Idempotent; the
/// Services it changed.
pub async fn unpin(c: &Cluster, pins: &[Pinned]) -> Result<Vec<String>, Failure> {
    let mut changed = Vec::new();
    for p in pins {
        let Some(svc) = get(c, &services(), &p.service).await? else {
            continue;
        };
        let cur = selector_map(&svc);
        if cur == p.selector {
            continue;
        }
        let mut patch = serde_json::Map::new();
        for k in cur.keys().filter(|k| !p.selector.contains_key(*k)) {
            patch.insert(k.clone(), Value::Null);
        }
        for (k, v) in &p.selector {
            patch.insert(k.clone(), json!(v));
        }
        merge(
            c,
            &services(),
            &p.service,
            json!({"spec": {"selector": patch}}),
        )
        .await?;
        changed.push(p.service.clone());
    }
    Ok(changed)
}

/// Rules with the canary's weight (`Some(P)`) or without a canary (`None`: stable back to 100).
fn weighted_rules(route: &Value, stable: &[String], weight: Option<u32>) -> Value {
    let mut rules = route["spec"]["rules"].clone();
    for rule in rules.as_array_mut().into_iter().flatten() {
        let Some(refs) = rule["backendRefs"].as_array_mut() else {
            continue;
        };
        refs.retain(|b| {
            b["name"]
                .as_str()
                .is_none_or(|n| !stable.iter().any(|s| canary(s) == n))
        });
        let mut added = Vec::new();
        for b in refs.iter_mut() {
            let Some(n) = b["name"].as_str().map(str::to_string) else {
                continue;
            };
            if !stable.contains(&n) {
                continue;
            }
            match weight {
                Some(p) => {
                    b["weight"] = json!(100 - p);
                    let mut cb = b.clone();
                    cb["name"] = json!(canary(&n));
                    cb["weight"] = json!(p);
                    added.push(cb);
                }
                None => b["weight"] = json!(100),
            }
        }
        refs.extend(added);
    }
    rules
}

/// Send `weight`% of the component's traffic to its canary pods. Returns a detail line.
pub async fn route(c: &Cluster, t: &Traffic, weight: u32) -> Result<String, Failure> {
    match t.kind {
        TrafficKind::HttpRoute => {
            let Some(r) = get(c, &http_route(), &t.name).await? else {
                return Err(Failure::new(format!(
                    "HTTPRoute `{}` does not exist",
                    t.name
                )));
            };
            let stable = stable_services(&r);
            if stable.is_empty() {
                return Err(Failure::new(format!(
                    "HTTPRoute `{}` has no backendRefs to a Service",
                    t.name
                )));
            }
            for s in &stable {
                canary_service(c, s).await?;
            }
            let rules = weighted_rules(&r, &stable, Some(weight));
            merge(c, &http_route(), &t.name, json!({"spec": {"rules": rules}})).await?;
            Ok(format!(
                "HTTPRoute {}: {} {}, {} {weight}",
                t.name,
                stable.join(", "),
                100 - weight,
                stable
                    .iter()
                    .map(|s| canary(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        TrafficKind::Ingress => {
            let Some(ing) = get(c, &ingress(), &t.name).await? else {
                return Err(Failure::new(format!("Ingress `{}` does not exist", t.name)));
            };
            let stable = ingress_services(&ing);
            if stable.is_empty() {
                return Err(Failure::new(format!(
                    "Ingress `{}` sends to no Service",
                    t.name
                )));
            }
            for s in &stable {
                canary_service(c, s).await?;
            }
            let mut spec = ing["spec"].clone();
            let text = serde_json::to_string(&spec).unwrap_or_default();
            // Every backend Service name replaced by its canary.
            let mut replaced = text;
            for s in &stable {
                replaced = replaced.replace(
                    &format!("\"name\":\"{s}\""),
                    &format!("\"name\":\"{}\"", canary(s)),
                );
            }
            spec = serde_json::from_str(&replaced).unwrap_or(spec);
            let name = canary(&t.name);
            create(
                c,
                &ingress(),
                json!({
                    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": name, "namespace": c.ns,
                                 "labels": {"app.kubernetes.io/managed-by": "ktplay", "ktplay/canary-of": t.name},
                                 "annotations": {"nginx.ingress.kubernetes.io/canary": "true",
                                                 "nginx.ingress.kubernetes.io/canary-weight": weight.to_string()}},
                    "spec": spec,
                }),
            )
            .await?;
            // An existing canary Ingress (an interrupted run) gets this weight.
            merge(
                c,
                &ingress(),
                &name,
                json!({"metadata": {"annotations": {"nginx.ingress.kubernetes.io/canary-weight": weight.to_string()}}}),
            )
            .await?;
            Ok(format!("Ingress {name}: canary-weight {weight}"))
        }
    }
}

/// All traffic back to the stable backend, then the canary objects removed. Idempotent.
pub async fn unroute(c: &Cluster, t: &Traffic) -> Result<String, Failure> {
    let stable = match t.kind {
        TrafficKind::HttpRoute => {
            let Some(r) = get(c, &http_route(), &t.name).await? else {
                return Ok(format!("HTTPRoute {} is gone", t.name));
            };
            let stable = stable_services(&r);
            let rules = weighted_rules(&r, &stable, None);
            if rules != r["spec"]["rules"] {
                merge(c, &http_route(), &t.name, json!({"spec": {"rules": rules}})).await?;
            }
            stable
        }
        TrafficKind::Ingress => {
            let stable = match get(c, &ingress(), &t.name).await? {
                Some(ing) => ingress_services(&ing),
                None => Vec::new(),
            };
            delete(c, &ingress(), &canary(&t.name)).await?;
            stable
        }
    };
    for s in &stable {
        delete(c, &services(), &canary(s)).await?;
    }
    Ok(match t.kind {
        TrafficKind::HttpRoute => format!("HTTPRoute {}: {} 100", t.name, stable.join(", ")),
        TrafficKind::Ingress => format!("Ingress {} removed", canary(&t.name)),
    })
}

/// The next step of a progressive canary: the router's weight, or (without `traffic`) the
/// canary Deployments scaled to `ceil(replicas × P%)`. The caller waits for the rollout.
pub async fn step(
    c: &Cluster,
    comp: &crate::check::program::Component,
    canaries: &[String],
    weight: u32,
) -> Result<String, Failure> {
    if let Some(t) = &comp.traffic {
        return route(c, t, weight).await;
    }
    let mut said = Vec::new();
    for (d, cn) in comp.deployments().iter().zip(canaries) {
        let replicas = c
            .replicas(d)
            .await
            .map_err(|e| Failure::new(e.to_string()))?;
        let n = ((replicas * weight as i64) as f64 / 100.0).ceil().max(1.0) as i64;
        c.scale(cn, n)
            .await
            .map_err(|e| Failure::new(e.to_string()))?;
        said.push(super::output::pod_share(n, replicas));
    }
    Ok(said.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_go_on_the_stable_refs_and_come_back() {
        let route = json!({"spec": {"rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
             "backendRefs": [{"name": "gw", "port": 8080}]},
            {"backendRefs": [{"name": "other", "port": 80}]}
        ]}});
        let stable = stable_services(&route);
        assert_eq!(stable, ["gw", "other"]);
        let only_gw = vec!["gw".to_string()];
        let w = weighted_rules(&route, &only_gw, Some(10));
        assert_eq!(
            w[0]["backendRefs"],
            json!([{"name": "gw", "port": 8080, "weight": 90}, {"name": "gw-canary", "port": 8080, "weight": 10}])
        );
        assert_eq!(
            w[1], route["spec"]["rules"][1],
            "rules to other Services are left alone"
        );
        let back = weighted_rules(&json!({"spec": {"rules": w}}), &only_gw, None);
        assert_eq!(
            back[0]["backendRefs"],
            json!([{"name": "gw", "port": 8080, "weight": 100}])
        );
        // Routing twice (a resumed run) does not add a second canary ref.
        let again = weighted_rules(&json!({"spec": {"rules": w.clone()}}), &only_gw, Some(10));
        assert_eq!(again, w);
    }
}
