//! The simulated Keeptrusts system. Every request to a service target goes to one READY pod
//! chosen at random among those its selector matches (so a rollout or a canary splits traffic in
//! proportion to ready pods) and is answered as that pod's version would: the api serves
//! `/readyz` and the workers' status, the gateway enforces policy on chat completions, the
//! console colours serve health and pages, and a component the running API does not support
//! answers errors naming both versions.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::seq::SliceRandom;
use semver::Version;
use serde::Serialize;
use serde_json::{json, Value};

use super::discovery::Kind;
use super::selector::LabelSelector;
use super::store::{at, i64_at, image_repo, image_tag, str_at};
use super::{lock, RoleInfo, SeedWorkload, Sim};

/// Request counters of one service target (`GET /__sim/stats` on its listener).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceStats {
    /// Requests answered (the stats endpoint itself excluded).
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
    /// Answers with 409 (blocked by policy).
    pub blocked: u64,
    /// Requests per version of the pod that answered.
    pub by_version: BTreeMap<String, u64>,
    /// Requests per status code.
    pub by_status: BTreeMap<u16, u64>,
}

/// What a target selects pods by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selects {
    /// The live selector of a Service.
    Service(String),
    /// The selector of a Deployment (a blue-green colour).
    Deployment(String),
}

/// One simulated service endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub component: String,
    pub colour: Option<String>,
    pub namespace: String,
    pub selects: Selects,
}

impl Target {
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.namespace,
            self.component,
            self.colour.as_deref().unwrap_or("")
        )
    }
}

/// Every target of every seeded component: the main one (colour `None`), each colour of a
/// blue-green component, and each deployment of a multi-deployment component.
pub(crate) fn targets(sim: &Sim) -> Vec<Target> {
    let seeds = sim
        .inner
        .seeds
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut out: Vec<Target> = Vec::new();
    for seed in &seeds {
        for c in &seed.components {
            let t = |colour: Option<&str>, selects: Selects| Target {
                component: c.name.clone(),
                colour: colour.map(String::from),
                namespace: seed.namespace.clone(),
                selects,
            };
            match &c.workload {
                SeedWorkload::Deployments(names) => {
                    if let Some(first) = names.first() {
                        out.push(t(None, Selects::Service(first.clone())));
                    }
                    if names.len() > 1 {
                        for n in names {
                            out.push(t(Some(n), Selects::Service(n.clone())));
                        }
                    }
                }
                SeedWorkload::BlueGreen {
                    service,
                    blue,
                    green,
                    ..
                } => {
                    out.push(t(None, Selects::Service(service.clone())));
                    out.push(t(Some("blue"), Selects::Deployment(blue.clone())));
                    out.push(t(Some("green"), Selects::Deployment(green.clone())));
                }
            }
        }
    }
    // A component seeded twice keeps its latest targets.
    let mut seen = std::collections::HashSet::new();
    let mut dedup: Vec<Target> = out
        .into_iter()
        .rev()
        .filter(|t| seen.insert((t.component.clone(), t.colour.clone())))
        .collect();
    dedup.reverse();
    dedup
}

/// The target of a component and colour (`blue`/`green`, or a deployment name).
pub(crate) fn find_target(sim: &Sim, component: &str, colour: Option<&str>) -> Option<Target> {
    let seeds = sim
        .inner
        .seeds
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let all = targets(sim);
    if let Some(t) = all
        .iter()
        .find(|t| t.component == component && t.colour.as_deref() == colour)
    {
        return Some(t.clone());
    }
    // A colour may also be named by its deployment.
    let colour = colour?;
    for seed in seeds.iter().rev() {
        for c in seed.components.iter().filter(|c| c.name == component) {
            match &c.workload {
                SeedWorkload::BlueGreen { blue, green, .. }
                    if colour == blue || colour == green =>
                {
                    return Some(Target {
                        component: c.name.clone(),
                        colour: Some(colour.to_string()),
                        namespace: seed.namespace.clone(),
                        selects: Selects::Deployment(colour.to_string()),
                    })
                }
                SeedWorkload::Deployments(names) if names.iter().any(|n| n == colour) => {
                    return Some(Target {
                        component: c.name.clone(),
                        colour: Some(colour.to_string()),
                        namespace: seed.namespace.clone(),
                        selects: Selects::Service(colour.to_string()),
                    })
                }
                _ => {}
            }
        }
    }
    None
}

/// The role and version of a pod: the first container whose image belongs to a seeded role.
pub(crate) fn pod_role(roles: &[RoleInfo], pod: &Value) -> Option<(RoleInfo, Option<Version>)> {
    let containers = at(pod, &["spec", "containers"])?.as_array()?;
    // The container named as the role's own comes first, then any running a role's image.
    let mut ordered: Vec<&Value> = containers
        .iter()
        .filter(|c| {
            roles
                .iter()
                .any(|r| str_at(c, &["name"]) == Some(r.container.as_str()))
        })
        .collect();
    ordered.extend(containers.iter());
    for c in ordered {
        let image = str_at(c, &["image"]).unwrap_or_default();
        if let Some(r) = roles.iter().find(|r| r.image == image_repo(image)) {
            let v = image_tag(image).and_then(|t| Version::parse(t).ok());
            return Some((r.clone(), v));
        }
    }
    None
}

/// The migrations an api version applies at start-up (1.5.x ends with
/// `0042_add_policy_index`).
pub fn migrations_for(version: Option<&Version>) -> Vec<String> {
    const NAMES: [&str; 6] = [
        "add_audit_log",
        "add_workers_table",
        "add_usage_rollups",
        "add_console_sessions",
        "add_tenant_limits",
        "add_policy_index",
    ];
    let m = version.map_or(0, |v| v.minor) as usize;
    vec![
        format!("{:04}_{}", m * 8 + 1, NAMES[(m * 2) % 6]),
        format!("{:04}_{}", m * 8 + 2, NAMES[(m * 2 + 1) % 6]),
    ]
}

/// The router of one target.
pub(crate) fn router(sim: Sim, target: Target) -> Router {
    Router::new()
        .fallback(handle)
        .with_state((sim, Arc::new(target)))
}

fn json_answer(code: StatusCode, v: Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&v).unwrap_or_default(),
    )
        .into_response()
}

pub(crate) fn selector_of(sim: &Sim, target: &Target) -> Option<LabelSelector> {
    let store = lock(&sim.inner.store);
    match &target.selects {
        Selects::Service(n) => {
            let svc = store.peek(Kind::Service, &target.namespace, n)?;
            let m = at(svc, &["spec", "selector"])?.as_object()?;
            Some(LabelSelector::from_map(m))
        }
        Selects::Deployment(n) => {
            let d = store.peek(Kind::Deployment, &target.namespace, n)?;
            Some(LabelSelector::from_object(at(d, &["spec", "selector"])?))
        }
    }
}

/// Does a Service send this pod traffic? It is Ready and not terminating: the EndpointSlice
/// controller marks a pod with a `deletionTimestamp` not ready even while its Ready condition
/// still says True (as the fake kubelet's pods do until their grace period ends), so a
/// rollout that is complete no longer reaches the old pods it is deleting.
fn ready(pod: &Value) -> bool {
    if at(pod, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null()) {
        return false;
    }
    at(pod, &["status", "conditions"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| str_at(c, &["type"]) == Some("Ready") && str_at(c, &["status"]) == Some("True"))
}

/// Ready pods matching a selector in a namespace.
pub(crate) fn ready_pods(sim: &Sim, ns: &str, sel: &LabelSelector) -> Vec<Value> {
    let store = lock(&sim.inner.store);
    store
        .iter(Kind::Pod, Some(ns))
        .filter(|p| sel.matches(at(p, &["metadata", "labels"]).and_then(Value::as_object)))
        .filter(|p| ready(p))
        .cloned()
        .collect()
}

pub(crate) fn roles(sim: &Sim) -> Vec<RoleInfo> {
    sim.inner
        .roles
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// The version of a random ready api pod in the namespace: `Ok(None)` when no api is seeded
/// there, `Err(())` when it is but none of its pods is ready.
fn api_version(sim: &Sim, ns: &str, roles: &[RoleInfo]) -> Result<Option<Version>, ()> {
    if !roles.iter().any(|r| r.role == "api") {
        return Ok(None);
    }
    let store = lock(&sim.inner.store);
    let versions: Vec<Version> = store
        .iter(Kind::Pod, Some(ns))
        .filter(|p| ready(p))
        .filter_map(|p| pod_role(roles, p))
        .filter(|(r, _)| r.role == "api")
        .filter_map(|(_, v)| v)
        .collect();
    if versions.is_empty() {
        let any_api = store
            .iter(Kind::Pod, Some(ns))
            .filter_map(|p| pod_role(roles, p))
            .any(|(r, _)| r.role == "api");
        return if any_api { Err(()) } else { Ok(None) };
    }
    Ok(versions.choose(&mut rand::thread_rng()).cloned())
}

async fn handle(State((sim, target)): State<(Sim, Arc<Target>)>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    // Follow mode: read the real pods now, not up to one refresh ago.
    let follow = sim
        .inner
        .follow
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some((client, ns)) = follow {
        // An answer from a stale copy would be a lie about the real pods: unavailable instead.
        if let Err(e) = super::follow::sync(&sim, &client, &ns).await {
            return json_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": format!("the follower could not read the real namespace: {e}")}),
            );
        }
    }
    let latency = sim.faults().latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let body = axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    if path == "/__sim/stats" {
        let mut stats = lock(&sim.inner.stats);
        if method == Method::DELETE {
            stats.remove(&target.key());
        }
        let s = stats.get(&target.key()).cloned().unwrap_or_default();
        return json_answer(StatusCode::OK, json!(s));
    }
    let (resp, version) = answer(&sim, &target, &method, &path, &headers, &body);
    let code = resp.status().as_u16();
    {
        let mut stats = lock(&sim.inner.stats);
        let s = stats.entry(target.key()).or_default();
        s.requests += 1;
        if code >= 500 {
            s.errors += 1;
        }
        if code == 409 {
            s.blocked += 1;
        }
        *s.by_status.entry(code).or_default() += 1;
        if let Some(v) = &version {
            *s.by_version.entry(v.clone()).or_default() += 1;
        }
    }
    resp
}

fn answer(
    sim: &Sim,
    target: &Target,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> (Response, Option<String>) {
    let Some(sel) = selector_of(sim, target) else {
        return (
            json_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "unavailable", "message": format!("{} has no service or deployment to route to", target.component)}),
            ),
            None,
        );
    };
    let pods = ready_pods(sim, &target.namespace, &sel);
    // Issue 22 (`drain`): a deleted pod whose endpoint still lingers in the proxies while its
    // process is gone gets its share of requests, and fails them; so does a Ready pod whose app
    // is still loading. (A deleted pod that still serves, in its preStop sleep, gets none here:
    // the real proxies may still send it a few, which it answers.)
    let dead: Vec<super::drain::Gone> = lock(&sim.inner.store)
        .lifetimes
        .lingering(&target.namespace, |labels| sel.matches(labels))
        .into_iter()
        .filter(|g| g.at.elapsed() >= g.serving)
        .collect();
    let pick = rand::Rng::gen_range(&mut rand::thread_rng(), 0..(pods.len() + dead.len()).max(1));
    if let Some(g) = pick.checked_sub(pods.len()).and_then(|i| dead.get(i)) {
        return (
            drop_answer(
                &g.pod,
                format!(
                    "connection refused: pod {} was deleted {} ms ago and its process is gone (it served {} ms after its deletion: its preStop hook, capped by its grace period), but its endpoint had not left every proxy yet (the simulator keeps it {} s)",
                    str_at(&g.pod, &["metadata", "name"]).unwrap_or("?"),
                    g.at.elapsed().as_millis(),
                    g.serving.as_millis(),
                    super::drain::ENDPOINT_LAG.as_secs()
                ),
            ),
            None,
        );
    }
    let chosen = pods.get(pick).cloned();
    if let Some(p) = chosen.as_ref().filter(|p| {
        lock(&sim.inner.store)
            .lifetimes
            .loading(&target.namespace, p)
    }) {
        return (
            drop_answer(
                p,
                format!(
                    "connection refused: pod {} is Ready (it has no readinessProbe) but its app is still loading (the simulator's apps answer {} s after their pod is created)",
                    str_at(p, &["metadata", "name"]).unwrap_or("?"),
                    super::drain::APP_STARTUP.as_secs()
                ),
            ),
            None,
        );
    }
    let Some(pod) = chosen.as_ref() else {
        return (
            json_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "unavailable", "message": format!("no ready pods behind {} ({sel})", target.component)}),
            ),
            None,
        );
    };
    answer_as(sim, target, pod, method, path, headers, body)
}

/// The answer of one chosen pod, as its role and version would give it (the simulated faults
/// applied): the simulator's services after picking a ready pod, and `ktplay sim app` (one
/// real pod process on the data path, [`crate::app`]) for its own pod.
pub(crate) fn answer_as(
    sim: &Sim,
    target: &Target,
    pod: &Value,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> (Response, Option<String>) {
    let roles = roles(sim);
    let (role, version) = match pod_role(&roles, pod) {
        Some((r, v)) => (r.role, v),
        None => (target.component.clone(), None),
    };
    let vtext = version.as_ref().map(|v| v.to_string()).unwrap_or_default();
    let pod_name = str_at(pod, &["metadata", "name"])
        .unwrap_or_default()
        .to_string();
    let fault_status = version
        .as_ref()
        .and_then(|v| sim.faults().http_status(&role, v));
    let mut resp = if let (Some(code), Some(v)) = (fault_status, &version) {
        // Any component, modelled or not, fails on purpose.
        json_answer(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"error": "fault", "message": format!("{role} {v} answers {code} (fault http:{role}@{v}={code})")}),
        )
    } else if !super::generic::is_modelled(&role) {
        let generic = sim.generic();
        let state = ready_state(sim, &target.namespace, &roles, &role, version.as_ref());
        let (code, content_type, bytes) = super::generic::answer(
            &generic,
            &role,
            version.as_ref(),
            &state,
            method.as_str(),
            path,
        );
        (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, content_type)],
            bytes,
        )
            .into_response()
    } else {
        respond(
            sim,
            target,
            &role,
            version.as_ref(),
            method,
            path,
            headers,
            body,
            &roles,
        )
    };
    if let Ok(v) = HeaderValue::from_str(&pod_name) {
        resp.headers_mut().insert("x-sim-pod", v);
    }
    if let Ok(v) = HeaderValue::from_str(&vtext) {
        resp.headers_mut().insert("x-sim-version", v);
    }
    (resp, version.map(|v| v.to_string()))
}

/// A request the data path would have dropped: `502`, naming the pod and why.
fn drop_answer(pod: &Value, message: String) -> Response {
    let mut resp = json_answer(
        StatusCode::BAD_GATEWAY,
        json!({"error": "dropped", "message": message}),
    );
    if let Some(Ok(v)) = str_at(pod, &["metadata", "name"]).map(HeaderValue::from_str) {
        resp.headers_mut().insert("x-sim-pod", v);
    }
    resp
}

/// What the namespace's ready pods run, `(component, version)`, with `component` narrowed to
/// `version` (the pod that answers).
fn ready_state(
    sim: &Sim,
    ns: &str,
    roles: &[RoleInfo],
    component: &str,
    version: Option<&Version>,
) -> Vec<(String, Version)> {
    let store = lock(&sim.inner.store);
    let mut state: Vec<(String, Version)> = store
        .iter(Kind::Pod, Some(ns))
        .filter(|p| ready(p))
        .filter_map(|p| pod_role(roles, p))
        .filter(|(r, _)| r.role != component)
        .filter_map(|(r, v)| Some((r.role, v?)))
        .collect();
    if let Some(v) = version {
        state.push((component.to_string(), v.clone()));
    }
    state.sort();
    state.dedup();
    state
}

#[allow(clippy::too_many_arguments)]
fn respond(
    sim: &Sim,
    target: &Target,
    role: &str,
    version: Option<&Version>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
    roles: &[RoleInfo],
) -> Response {
    let ns = &target.namespace;
    let vtext = version.map(|v| v.to_string()).unwrap_or_default();
    let get = method == Method::GET;
    if path == "/healthz" && get {
        return json_answer(StatusCode::OK, json!({"status": "alive", "version": vtext}));
    }
    if role != "api" {
        // The API in front decides whether this peer's version is supported.
        match api_version(sim, ns, roles) {
            Err(()) => {
                return json_answer(
                    StatusCode::BAD_GATEWAY,
                    json!({"error": "api_unavailable", "message": format!("{role} {vtext} cannot reach a ready api")}),
                )
            }
            Ok(Some(api)) => {
                if let Some(v) = version {
                    if !sim.compatible(role, v, &api) {
                        let code = if role == "gateway" {
                            StatusCode::BAD_GATEWAY
                        } else {
                            StatusCode::INTERNAL_SERVER_ERROR
                        };
                        return json_answer(
                            code,
                            json!({
                                "error": "incompatible_version",
                                "message": format!("{role} {v} is not supported by api {api}"),
                                "component": role,
                                "version": v.to_string(),
                                "api_version": api.to_string(),
                            }),
                        );
                    }
                }
            }
            Ok(None) => {}
        }
    }
    if path == "/readyz" && get {
        return json_answer(StatusCode::OK, json!({"status": "ready", "version": vtext}));
    }
    if path == "/version" && get {
        return json_answer(StatusCode::OK, json!({"component": role, "version": vtext}));
    }
    match (role, method.as_str(), path) {
        ("api", "GET", "/v1/admin/workers/status") => workers_status(sim, ns, headers, roles),
        // The last database backup (read by `playbooks/hooks/backup_recent.rhai`): an hour ago.
        ("api", "GET", "/v1/admin/backup") => json_answer(
            StatusCode::OK,
            json!({"age_seconds": 3600, "version": vtext}),
        ),
        ("gateway", "POST", "/v1/chat/completions") => chat(sim, version, body),
        ("console", "GET", "/api/health") => {
            json_answer(StatusCode::OK, json!({"status": "ok", "version": vtext}))
        }
        ("console", "GET", "/dashboard") | ("console", "GET", "/") => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!(
                "<!doctype html><html><head><title>Keeptrusts console</title></head>\
                 <body><h1>Dashboard</h1><p>console {vtext}</p></body></html>"
            ),
        )
            .into_response(),
        _ => json_answer(
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "message": format!("{role} has no route {} {path}", method)}),
        ),
    }
}

fn chat(sim: &Sim, version: Option<&Version>, body: &Bytes) -> Response {
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let Ok(request) = parsed else {
        return json_answer(
            StatusCode::BAD_REQUEST,
            json!({"error": {"type": "invalid_request_error", "message": "the body must be a JSON chat completion request"}}),
        );
    };
    let text = request.to_string();
    let enforcing = version.is_none_or(|v| !sim.faults().policy_off(v));
    if enforcing && text.contains("test blocked content") {
        return json_answer(
            StatusCode::CONFLICT,
            json!({"error": {
                "type": "policy_violation",
                "code": "content_blocked",
                "message": "the request was blocked by policy: test blocked content"
            }}),
        );
    }
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("gpt-4o")
        .to_string();
    json_answer(
        StatusCode::OK,
        json!({
            "id": format!("chatcmpl-sim-{}", super::store::random_suffix(8)),
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Simulated answer."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        }),
    )
}

fn workers_status(sim: &Sim, ns: &str, headers: &HeaderMap, roles: &[RoleInfo]) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if token.is_empty() {
        return json_answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "unauthorized", "message": "an admin bearer token is required"}),
        );
    }
    let api = api_version(sim, ns, roles).ok().flatten();
    let seeds = sim
        .inner
        .seeds
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut workers = Vec::new();
    for seed in seeds.iter().filter(|s| s.namespace == ns) {
        for c in seed.components.iter().filter(|c| c.name == "workers") {
            let SeedWorkload::Deployments(names) = &c.workload else {
                continue;
            };
            for n in names {
                let d = lock(&sim.inner.store).get(Kind::Deployment, ns, n).ok();
                let Some(d) = d else { continue };
                let image = at(&d, &["spec", "template", "spec", "containers"])
                    .and_then(Value::as_array)
                    .and_then(|cs| {
                        cs.iter()
                            .find(|x| str_at(x, &["name"]) == Some(c.container.as_str()))
                            .or(cs.first())
                    })
                    .and_then(|x| str_at(x, &["image"]))
                    .unwrap_or_default()
                    .to_string();
                let version = image_tag(&image).and_then(|t| Version::parse(t).ok());
                let replicas = i64_at(&d, &["spec", "replicas"]).unwrap_or(0);
                let sel = at(&d, &["spec", "selector"])
                    .map(LabelSelector::from_object)
                    .unwrap_or_default();
                let ready_n = ready_pods(sim, ns, &sel).len();
                let compatible = match (&version, &api) {
                    (Some(v), Some(a)) => sim.compatible("workers", v, a),
                    _ => true,
                };
                let state = if replicas == 0 {
                    "idle"
                } else if ready_n == 0 || !compatible {
                    "failed"
                } else {
                    "processing"
                };
                let mut w = json!({
                    "name": n,
                    "version": version.map(|v| v.to_string()).unwrap_or_default(),
                    "state": state,
                    "ready": ready_n,
                    "replicas": replicas,
                });
                if !compatible {
                    w["error"] = json!(format!(
                        "worker {} is not supported by api {}",
                        w["version"].as_str().unwrap_or_default(),
                        api.as_ref().map(|a| a.to_string()).unwrap_or_default()
                    ));
                }
                workers.push(w);
            }
        }
    }
    json_answer(StatusCode::OK, json!({"workers": workers}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_of_1_5_end_with_the_policy_index() {
        let v = Version::parse("1.5.0").unwrap();
        assert_eq!(
            migrations_for(Some(&v)),
            ["0041_add_tenant_limits", "0042_add_policy_index"]
        );
    }

    /// A followed cluster's old pod stays Ready while it terminates (the fake kubelet deletes
    /// it after a grace period): a Service no longer routes to it, so neither does the follower.
    #[test]
    fn terminating_pods_get_no_traffic() {
        let sim = Sim::follower(crate::SimConfig::default());
        let pod = |name: &str, deleting: bool| {
            let mut p = json!({
                "metadata": {"name": name, "namespace": "ns", "labels": {"app": "gw"}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            });
            if deleting {
                p["metadata"]["deletionTimestamp"] = json!("2026-12-02T15:00:00Z");
            }
            p
        };
        lock(&sim.inner.store).mirror(
            Kind::Pod,
            "ns",
            vec![pod("gw-old", true), pod("gw-new", false)],
        );
        let sel = LabelSelector::from_map(json!({"app": "gw"}).as_object().unwrap());
        let names: Vec<_> = ready_pods(&sim, "ns", &sel)
            .iter()
            .map(|p| str_at(p, &["metadata", "name"]).unwrap().to_string())
            .collect();
        assert_eq!(names, ["gw-new"]);
    }
}
