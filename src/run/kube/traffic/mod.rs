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

use std::collections::BTreeMap;

use kube::api::ApiResource;
use serde_json::{json, Value};

use crate::program::{Traffic, TrafficKind};

use crate::run::kube::objects::{
    create, delete, fail, get, http_route, ingress, merge, services, try_merge,
};
use crate::run::kube::{status_code, Cluster};
use crate::run::rollback::{Pinned, Routed};
use crate::run::Failure;

/// The label every pod of a ReplicaSet carries, set by the deployment controller.
const HASH: &str = "pod-template-hash";

fn canary(name: &str) -> String {
    format!("{name}-canary")
}

/// A `backendRef` to a Service of the route's own namespace: its name. Refs to other kinds or
/// namespaces are never the component's.
fn service_ref<'v>(b: &'v Value, ns: &str) -> Option<&'v str> {
    let kind = b["kind"].is_null() || b["kind"] == "Service";
    let group = b["group"].is_null() || b["group"] == "" || b["group"] == "core";
    let local = b["namespace"].is_null() || b["namespace"] == ns;
    (kind && group && local)
        .then(|| b["name"].as_str())
        .flatten()
}

/// Every Service an HTTPRoute sends to, in order.
fn route_services(route: &Value, ns: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rule in route["spec"]["rules"].as_array().into_iter().flatten() {
        for b in rule["backendRefs"].as_array().into_iter().flatten() {
            if let Some(n) = service_ref(b, ns) {
                if !out.iter().any(|x| x == n) {
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

fn kind_word(t: &Traffic) -> &'static str {
    match t.kind {
        TrafficKind::HttpRoute => "HTTPRoute",
        TrafficKind::Ingress => "Ingress",
    }
}

fn router(t: &Traffic) -> ApiResource {
    match t.kind {
        TrafficKind::HttpRoute => http_route(),
        TrafficKind::Ingress => ingress(),
    }
}

/// The canary Service beside `stable`: its ports, its selector plus `track: canary`, this run's
/// ownership mark. One of the same name that is not this run's is never adopted.
async fn canary_service(c: &Cluster, stable: &str) -> Result<(), Failure> {
    let Some(svc) = get(c, &services(), stable).await? else {
        return Err(Failure::new(format!(
            "the route sends to Service `{stable}`, which does not exist"
        )));
    };
    let name = canary(stable);
    if let Some(existing) = get(c, &services(), &name).await? {
        if c.ours(&existing) {
            return Ok(());
        }
        return Err(c.not_ours("Service", &name, &existing).into());
    }
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
            "metadata": {"name": name, "namespace": c.ns, "labels": c.marks(stable)},
            "spec": {"selector": selector, "ports": ports},
        }),
    )
    .await
}

fn selector_map(svc: &Value) -> BTreeMap<String, String> {
    svc["spec"]["selector"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Before a canary changes anything, from the router as it is now: the component's own stable
/// Services it sends to (a Service whose selector, without `pod-template-hash`, matches the pod
/// template of one of `deployments`) with each HTTPRoute rule's `backendRefs` as they are
/// ([`Routed`]), and the Services to pin ([`Pinned`]: each of those that selects exactly one
/// of the deployments, with its selector). Both are journaled in the canary's record, so
/// promotion, rollback, `undo` and `--resume` put back exactly that, and change nothing else.
/// A router that does not exist or sends to none of the component's Services is refused.
pub async fn plan(
    c: &Cluster,
    t: &Traffic,
    deployments: &[&str],
) -> Result<(Routed, Vec<Pinned>), Failure> {
    let Some(r) = get(c, &router(t), &t.name).await? else {
        return Err(Failure::refused(format!(
            "{} `{}` does not exist in namespace `{}`",
            kind_word(t),
            t.name,
            c.ns
        )));
    };
    let named = match t.kind {
        TrafficKind::HttpRoute => route_services(&r, &c.ns),
        TrafficKind::Ingress => ingress_services(&r),
    };
    let mut templates = Vec::new();
    for d in deployments {
        let dep = c
            .deployment(d)
            .await
            .map_err(|e| Failure::new(e.to_string()))?;
        templates.push((
            d.to_string(),
            dep["spec"]["template"]["metadata"]["labels"].clone(),
        ));
    }
    let mut own = Vec::new();
    let mut pinned = Vec::new();
    for s in &named {
        // A canary Service of one of the component's Services is not a stable one.
        if named.iter().any(|x| canary(x) == *s) {
            continue;
        }
        let Some(svc) = get(c, &services(), s).await? else {
            continue;
        };
        let mut selector = selector_map(&svc);
        // Left pinned by a run whose journal is gone: the selector without the hash.
        selector.remove(HASH);
        if selector.is_empty() {
            continue;
        }
        let selects: Vec<&String> = templates
            .iter()
            .filter(|(_, labels)| selector.iter().all(|(k, v)| labels[k].as_str() == Some(v)))
            .map(|(d, _)| d)
            .collect();
        if selects.is_empty() {
            continue;
        }
        own.push(s.clone());
        // A Service over several of the component's deployments cannot name one ReplicaSet:
        // left as it is (the canary's share then includes its share of pods there).
        if let [d] = selects.as_slice() {
            pinned.push(Pinned {
                service: s.clone(),
                selector,
                deployment: d.to_string(),
            });
        }
    }
    if own.is_empty() {
        return Err(Failure::refused(format!(
            "{} `{}` sends to no Service of the component's deployment{} {} (it sends to {}): a canary there would take traffic that is not the component's",
            kind_word(t),
            t.name,
            if deployments.len() == 1 { "" } else { "s" },
            deployments.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", "),
            if named.is_empty() {
                "no Service".to_string()
            } else {
                named.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            }
        ))
        .help("name the router in front of this component's Service in `traffic`, or add a backend to that Service to the router"));
    }
    let rules = match t.kind {
        TrafficKind::HttpRoute => r["spec"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|rule| rule["backendRefs"].clone())
            .collect(),
        TrafficKind::Ingress => Vec::new(),
    };
    Ok((
        Routed {
            services: own,
            rules,
        },
        pinned,
    ))
}

/// Before any action of a run (and again before the canary's own): every object the canary
/// of `comp` would create is free or this run's, and with `traffic`, the router sends to the
/// component's Service and every step's weight can be set exactly in each of its rules.
/// Failures are refusals naming the object.
pub async fn admit(
    c: &Cluster,
    comp: &crate::program::Component,
    steps: &[u32],
) -> Result<(), Failure> {
    for d in comp.deployments() {
        let name = crate::run::kube::canary_name(d);
        if let Some(existing) = c
            .deployment_opt(&name)
            .await
            .map_err(|e| Failure::new(e.to_string()))?
        {
            if !c.ours(&existing) {
                return Err(c.not_ours("Deployment", &name, &existing).into());
            }
        }
    }
    let Some(t) = &comp.traffic else {
        return Ok(());
    };
    let (routed, _) = plan(c, t, &comp.deployments()).await?;
    let mut names: Vec<(ApiResource, &str, String)> = routed
        .services
        .iter()
        .map(|s| (services(), "Service", canary(s)))
        .collect();
    if t.kind == TrafficKind::Ingress {
        names.push((ingress(), "Ingress", canary(&t.name)));
    }
    for (ar, kind, name) in names {
        if let Some(existing) = get(c, &ar, &name).await? {
            if !c.ours(&existing) {
                return Err(c.not_ours(kind, &name, &existing).into());
            }
        }
    }
    if t.kind == TrafficKind::HttpRoute {
        exact_weights(&t.name, &routed, steps, &c.ns)?;
    }
    Ok(())
}

/// A backendRef's weight (the Gateway API's default is 1).
fn weight_of(b: &Value) -> u64 {
    b["weight"].as_u64().unwrap_or(1)
}

/// In a rule where other backends keep a share, the component's backend of weight `W` is split
/// into `W × (100 − P) / 100` and `W × P / 100`: both must be whole for every step `P`.
fn exact_weights(route: &str, routed: &Routed, steps: &[u32], ns: &str) -> Result<(), Failure> {
    for (i, refs) in routed.rules.iter().enumerate() {
        let refs: Vec<&Value> = refs.as_array().into_iter().flatten().collect();
        // A rule already carrying this component's canary backend (a resumed run): its
        // weights were checked when it started.
        if refs.iter().any(|b| {
            service_ref(b, ns).is_some_and(|n| routed.services.iter().any(|s| canary(s) == n))
        }) {
            continue;
        }
        let own =
            |b: &&Value| service_ref(b, ns).is_some_and(|n| routed.services.iter().any(|s| s == n));
        let others: u64 = refs.iter().filter(|b| !own(b)).map(|b| weight_of(b)).sum();
        if others == 0 {
            continue;
        }
        for b in refs.iter().filter(|b| own(b)) {
            let w = weight_of(b);
            if let Some(p) = steps.iter().find(|p| !(w * **p as u64).is_multiple_of(100)) {
                return Err(Failure::refused(format!(
                    "rule {} of HTTPRoute `{route}` sends to `{}` with weight {w} beside other backends: {p}% of it is not a whole weight, so the canary could not get exactly {p}% of that Service's share without changing the other backends' weights",
                    i + 1,
                    b["name"].as_str().unwrap_or_default()
                ))
                .help("give the component's backendRef a weight that is a multiple of 100 (and scale the rule's other weights to keep their shares), or route it in a rule of its own"));
            }
        }
    }
    Ok(())
}

/// The pins of the stable Services (see [`plan`]); for callers without a plan.
pub async fn pins(c: &Cluster, t: &Traffic, deployments: &[&str]) -> Result<Vec<Pinned>, Failure> {
    Ok(plan(c, t, deployments).await?.1)
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

/// The route's rules with the canary at `weight`% (`Some(P)`), or as they were before the
/// canary (`None`). Only the component's own backendRefs (`routed.services`) change, and the
/// canary refs beside them: in a rule where the component's backend is the only one with a
/// weight, `100 − P` and `P`; beside other weighted backends, its weight `W` split into
/// `W × (100 − P) / 100` and `W × P / 100`, so every other backend keeps its share. Without a
/// canary each own backendRef gets the weight journaled in `routed.rules` back (or none, as
/// it had none); other refs are never touched.
fn weighted_rules(route: &Value, routed: &Routed, weight: Option<u32>, ns: &str) -> Value {
    let own = |n: &str| routed.services.iter().any(|s| s == n);
    let ours = |n: &str| routed.services.iter().any(|s| canary(s) == n);
    let mut rules = route["spec"]["rules"].clone();
    for (i, rule) in rules.as_array_mut().into_iter().flatten().enumerate() {
        let Some(refs) = rule["backendRefs"].as_array_mut() else {
            continue;
        };
        // The canary refs' weights, by their stable Service.
        let split: BTreeMap<String, u64> = refs
            .iter()
            .filter_map(|b| {
                let n = service_ref(b, ns).filter(|n| ours(n))?;
                Some((n.trim_end_matches("-canary").to_string(), weight_of(b)))
            })
            .collect();
        refs.retain(|b| !service_ref(b, ns).is_some_and(ours));
        // The rule as it was before the canary. A journal of an older ktplay has none: the
        // rule as it is now, with each canary ref's weight given back to its stable ref.
        let before: Vec<Value> = match routed.rules.get(i).and_then(Value::as_array) {
            Some(r) => r.clone(),
            None => refs
                .iter()
                .map(|b| {
                    let mut b = b.clone();
                    if let Some(w) = service_ref(&b, ns).and_then(|n| split.get(n)) {
                        b["weight"] = json!(weight_of(&b) + w);
                    }
                    b
                })
                .collect(),
        };
        let before_of = |n: &str| {
            before
                .iter()
                .find(|b| service_ref(b, ns) == Some(n))
                .cloned()
        };
        let others: u64 = before
            .iter()
            .filter(|b| !service_ref(b, ns).is_some_and(|n| own(n) || ours(n)))
            .map(weight_of)
            .sum();
        let mut out = Vec::new();
        for b in refs.drain(..) {
            let Some(n) = service_ref(&b, ns).filter(|n| own(n)).map(str::to_string) else {
                out.push(b);
                continue;
            };
            let was = before_of(&n);
            let w = was.as_ref().map(weight_of).unwrap_or(1);
            let mut b = b;
            match weight {
                Some(p) if w > 0 => {
                    let p = p as u64;
                    let (stable, canary_w) = if others == 0 {
                        (100 - p, p)
                    } else {
                        (w * (100 - p) / 100, w * p / 100)
                    };
                    b["weight"] = json!(stable);
                    let mut cb = b.clone();
                    cb["name"] = json!(canary(&n));
                    cb["weight"] = json!(canary_w);
                    out.push(b);
                    out.push(cb);
                }
                Some(_) => out.push(b),
                None => {
                    match was.as_ref().map(|x| &x["weight"]) {
                        Some(v) if !v.is_null() => b["weight"] = v.clone(),
                        _ => {
                            if let Some(m) = b.as_object_mut() {
                                m.remove("weight");
                            }
                        }
                    }
                    out.push(b);
                }
            }
        }
        *refs = out;
    }
    rules
}

/// Write an HTTPRoute's rules, on the version read (a change by someone else between the read
/// and the write is read again, never overwritten).
async fn set_rules(
    c: &Cluster,
    t: &Traffic,
    routed: &Routed,
    weight: Option<u32>,
) -> Result<bool, Failure> {
    for _ in 0..5 {
        let Some(r) = get(c, &http_route(), &t.name).await? else {
            return Ok(false);
        };
        let rules = weighted_rules(&r, routed, weight, &c.ns);
        if rules == r["spec"]["rules"] {
            return Ok(false);
        }
        let rv = r["metadata"]["resourceVersion"].clone();
        let patch = json!({"metadata": {"resourceVersion": rv}, "spec": {"rules": rules}});
        match try_merge(c, &http_route(), &t.name, &patch).await? {
            Ok(()) => return Ok(true),
            Err(e) if status_code(&e) == Some(409) => continue,
            Err(e) => return Err(fail(&format!("update HTTPRoute `{}`", t.name), e)),
        }
    }
    Err(Failure::new(format!(
        "HTTPRoute `{}` kept changing under ktplay: its weights were not written",
        t.name
    )))
}

/// Send `weight`% of the component's traffic to its canary pods. Returns a detail line.
pub async fn route(
    c: &Cluster,
    t: &Traffic,
    routed: &Routed,
    weight: u32,
) -> Result<String, Failure> {
    for s in &routed.services {
        canary_service(c, s).await?;
    }
    match t.kind {
        TrafficKind::HttpRoute => {
            if get(c, &http_route(), &t.name).await?.is_none() {
                return Err(Failure::new(format!(
                    "HTTPRoute `{}` does not exist",
                    t.name
                )));
            }
            set_rules(c, t, routed, Some(weight)).await?;
            Ok(format!(
                "HTTPRoute {}: {} {}, {} {weight}",
                t.name,
                routed.services.join(", "),
                100 - weight,
                routed
                    .services
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
            let name = canary(&t.name);
            let annotations = json!({"nginx.ingress.kubernetes.io/canary": "true",
                                     "nginx.ingress.kubernetes.io/canary-weight": weight.to_string()});
            if let Some(existing) = get(c, &ingress(), &name).await? {
                if !c.ours(&existing) {
                    return Err(c.not_ours("Ingress", &name, &existing).into());
                }
                // This run's, from an earlier step or an interrupted process: this weight.
                merge(
                    c,
                    &ingress(),
                    &name,
                    json!({"metadata": {"annotations": annotations}}),
                )
                .await?;
            } else {
                create(
                    c,
                    &ingress(),
                    json!({
                        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                        "metadata": {"name": name, "namespace": c.ns,
                                     "labels": c.marks(&t.name), "annotations": annotations},
                        "spec": canary_ingress_spec(&ing, &routed.services),
                    }),
                )
                .await?;
            }
            Ok(format!("Ingress {name}: canary-weight {weight}"))
        }
    }
}

/// The canary Ingress's spec: the stable Ingress's rules and paths that send to the
/// component's Services, each to its canary Service; paths (and a default backend) sending
/// elsewhere are left out, so ingress-nginx splits nothing else.
fn canary_ingress_spec(ing: &Value, own: &[String]) -> Value {
    let mine = |b: &Value| {
        b["service"]["name"]
            .as_str()
            .is_some_and(|n| own.iter().any(|s| s == n))
    };
    let to_canary = |mut b: Value| {
        let n = b["service"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        b["service"]["name"] = json!(canary(&n));
        b
    };
    let mut spec = json!({});
    if !ing["spec"]["ingressClassName"].is_null() {
        spec["ingressClassName"] = ing["spec"]["ingressClassName"].clone();
    }
    if !ing["spec"]["tls"].is_null() {
        spec["tls"] = ing["spec"]["tls"].clone();
    }
    if mine(&ing["spec"]["defaultBackend"]) {
        spec["defaultBackend"] = to_canary(ing["spec"]["defaultBackend"].clone());
    }
    let mut rules = Vec::new();
    for rule in ing["spec"]["rules"].as_array().into_iter().flatten() {
        let paths: Vec<Value> = rule["http"]["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| mine(&p["backend"]))
            .map(|p| {
                let mut p = p.clone();
                p["backend"] = to_canary(p["backend"].clone());
                p
            })
            .collect();
        if paths.is_empty() {
            continue;
        }
        let mut r = rule.clone();
        r["http"]["paths"] = json!(paths);
        rules.push(r);
    }
    if !rules.is_empty() {
        spec["rules"] = json!(rules);
    }
    spec
}

/// Delete an object this run created; anyone else's is left alone (and said so).
async fn remove(c: &Cluster, ar: &ApiResource, name: &str) -> Result<Option<String>, Failure> {
    let Some(existing) = get(c, ar, name).await? else {
        return Ok(None);
    };
    if !c.ours(&existing) {
        return Ok(Some(format!(
            "{} {name} left alone (not this run's)",
            ar.kind
        )));
    }
    delete(c, ar, name, existing["metadata"]["uid"].as_str()).await?;
    Ok(None)
}

/// All traffic back as it was before the canary (`routed`, journaled), then the canary objects
/// this run created removed. Idempotent.
pub async fn unroute(c: &Cluster, t: &Traffic, routed: &Routed) -> Result<String, Failure> {
    let mut said = match t.kind {
        TrafficKind::HttpRoute => {
            if get(c, &http_route(), &t.name).await?.is_none() {
                format!("HTTPRoute {} is gone", t.name)
            } else {
                set_rules(c, t, routed, None).await?;
                format!(
                    "HTTPRoute {}: {} as before",
                    t.name,
                    routed.services.join(", ")
                )
            }
        }
        TrafficKind::Ingress => {
            let name = canary(&t.name);
            match remove(c, &ingress(), &name).await? {
                Some(left) => left,
                None => format!("Ingress {name} removed"),
            }
        }
    };
    for s in &routed.services {
        if let Some(left) = remove(c, &services(), &canary(s)).await? {
            said.push_str(&format!("; {left}"));
        }
    }
    Ok(said)
}

/// The next step of a progressive canary: the router's weight, or (without `traffic`) the
/// canary Deployments scaled to `ceil(replicas × P%)`. The caller waits for the rollout.
pub async fn step(
    c: &Cluster,
    comp: &crate::program::Component,
    canaries: &[String],
    routed: Option<&Routed>,
    weight: u32,
) -> Result<String, Failure> {
    if let (Some(t), Some(routed)) = (&comp.traffic, routed) {
        return route(c, t, routed, weight).await;
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
        said.push(pod_share(n, replicas));
    }
    Ok(said.join("; "))
}

/// The share of traffic a replica-ratio canary really takes: "1 canary pod beside 3: 25% of
/// pods" (`weight 10%` of 3 replicas still starts one pod).
pub fn pod_share(canary: i64, stable: i64) -> String {
    let total = (canary + stable).max(1);
    let share = canary as f64 * 100.0 / total as f64;
    let share = if share.fract() == 0.0 {
        format!("{share:.0}")
    } else {
        format!("{share:.1}")
    };
    format!(
        "{canary} canary pod{} beside {stable}: {share}% of pods",
        if canary == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests;
