//! The Kubernetes API over HTTP: path and query parsing, verbs, subresources (status, scale,
//! log), Table output, the request log and the `/__sim` endpoints.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::discovery::{self, Kind};
use super::faults::{Fault, Faults};
use super::patch::{self, PatchKind};
use super::selector::{FieldSelector, LabelSelector};
use super::store::{at, check_shape, i64_at, obj_mut, str_at, ApiError, FieldError, WriteMode};
use super::{lock, logs, proto, schema, ssa, store, table, watch, LoggedRequest, Sim};

/// Build the API router.
pub fn router(sim: Sim) -> Router {
    Router::new()
        .route(
            "/__sim/faults",
            get(get_faults).post(post_faults).delete(delete_faults),
        )
        .route("/__sim/requests", get(get_requests))
        .route("/metrics", get(super::metrics::get_metrics))
        .route(
            "/api/v1/query",
            get(super::metrics::get_query).post(super::metrics::post_query),
        )
        .fallback(handle)
        .layer(middleware::from_fn_with_state(sim.clone(), around))
        .with_state(sim)
}

/// Logs every request and applies the latency and API-error faults.
async fn around(State(sim): State<Sim>, req: Request, next: Next) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    // The simulator's own endpoints and its monitoring (`/metrics`, Prometheus' query API) are
    // not the Kubernetes API: no API faults, no request log.
    if path.starts_with("/__sim/") || path == "/metrics" || path.starts_with("/api/v1/query") {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let time = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let faults = sim.faults();
    let latency = faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let share = faults.api_error_share();
    let resp = if share > 0.0
        && is_resource_path(req.uri().path())
        && rand::thread_rng().gen_bool(share.min(1.0))
    {
        error_response(&ApiError::new(
            500,
            "InternalError",
            "Internal error occurred: injected fault api-errors",
        ))
    } else {
        next.run(req).await
    };
    sim.record_request(LoggedRequest {
        seq: 0,
        time,
        method,
        path,
        content_type,
        status: resp.status().as_u16(),
    });
    resp
}

fn is_resource_path(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segs.as_slice(),
        ["api", "v1", _, ..] | ["apis", _, _, _, ..]
    )
}

async fn get_faults(State(sim): State<Sim>) -> Json<Value> {
    Json(faults_json(&sim))
}

fn faults_json(sim: &Sim) -> Value {
    json!({"faults": sim.faults().faults, "pace_ms": sim.pace().as_millis() as u64})
}

/// `POST /__sim/faults`: `{"faults": [...]}` replaces the set, `{"add": [...]}` and
/// `{"remove": [...]}` edit it, `{"clear": true}` empties it, `{"pace_ms": N}` sets the pace.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsRequest {
    faults: Option<Vec<String>>,
    add: Option<Vec<String>>,
    remove: Option<Vec<String>>,
    clear: Option<bool>,
    pace_ms: Option<u64>,
}

async fn post_faults(State(sim): State<Sim>, body: Bytes) -> Response {
    let req: FaultsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("expected {{\"faults\"|\"add\"|\"remove\": [\"never-ready:gateway@1.5.0\", ...], \"clear\": bool, \"pace_ms\": N}}: {e}")})),
            )
                .into_response()
        }
    };
    let parse = |list: &Option<Vec<String>>| -> Result<Vec<Fault>, String> {
        list.iter()
            .flatten()
            .map(|s| s.parse::<Fault>().map_err(|e| e.0))
            .collect()
    };
    let (set, add, remove) = match (parse(&req.faults), parse(&req.add), parse(&req.remove)) {
        (Ok(s), Ok(a), Ok(r)) => (s, a, r),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response()
        }
    };
    if req.clear == Some(true) {
        sim.clear_faults();
    }
    if req.faults.is_some() {
        sim.set_faults(Faults { faults: set });
    }
    for f in add {
        sim.set_fault(f);
    }
    for f in &remove {
        sim.clear_fault(f);
    }
    if let Some(ms) = req.pace_ms {
        sim.set_pace(std::time::Duration::from_millis(ms));
    }
    Json(faults_json(&sim)).into_response()
}

async fn delete_faults(State(sim): State<Sim>) -> Json<Value> {
    sim.clear_faults();
    Json(faults_json(&sim))
}

async fn get_requests(State(sim): State<Sim>) -> Json<Value> {
    Json(json!({"requests": sim.request_log()}))
}

/// Query parameters, decoded; tolerant of an empty query and a leading `&`.
pub struct Query(Vec<(String, String)>);

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    /// Parse a raw query string.
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            q.unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (percent_decode(k), percent_decode(v)),
                    None => (percent_decode(p), String::new()),
                })
                .collect(),
        )
    }

    /// The last value of a parameter.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter (`true` or `1`).
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
}

/// A JSON answer.
pub fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A `Status` answer for an API error.
pub fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    )
}

/// Where a request points.
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn resolve(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    if let ["namespaces", ns, plural, tail @ ..] = rest {
        if let Some(kind) = Kind::from_path(group, version, plural) {
            if !kind.info().namespaced {
                return Err(ApiError::no_resource());
            }
            return target(kind, Some(ns), tail);
        }
    }
    let [plural, tail @ ..] = rest else {
        return Err(ApiError::no_resource());
    };
    let kind = Kind::from_path(group, version, plural).ok_or_else(ApiError::no_resource)?;
    target(kind, None, tail)
}

fn target(kind: Kind, ns: Option<&str>, tail: &[&str]) -> Result<Target, ApiError> {
    let (name, sub) = match tail {
        [] => (None, None),
        [n] => (Some(n.to_string()), None),
        [n, s] => (Some(n.to_string()), Some(s.to_string())),
        _ => return Err(ApiError::no_resource()),
    };
    if let Some(s) = &sub {
        if !kind.info().subresources.iter().any(|(n, _, _)| n == s) {
            return Err(ApiError::no_resource());
        }
    }
    if name.as_deref() == Some("") {
        return Err(ApiError::no_resource());
    }
    Ok(Target {
        kind,
        namespace: ns.map(String::from),
        name,
        sub,
    })
}

async fn handle(
    State(sim): State<Sim>,
    method: Method,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let uri = req.uri().clone();
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::bad_request(format!("unreadable body: {e}"))),
    };
    let query = Query::parse(uri.query());
    let path = uri.path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let is_get = method == Method::GET;
    let doc = |v: Option<Value>| match v {
        Some(v) => json_response(StatusCode::OK, &v),
        None => error_response(&ApiError::no_resource()),
    };
    match segs.as_slice() {
        ["version"] if is_get => return json_response(StatusCode::OK, &discovery::version()),
        ["healthz"] | ["livez"] | ["readyz"] if is_get => {
            return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response()
        }
        ["api"] if is_get => return json_response(StatusCode::OK, &discovery::core_versions()),
        ["apis"] if is_get => return json_response(StatusCode::OK, &discovery::group_list()),
        ["apis", g] if is_get => return doc(discovery::group(g)),
        ["api", v] if is_get => return doc(discovery::resource_list("", v)),
        ["apis", g, v] if is_get => return doc(discovery::resource_list(g, v)),
        ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"] => {
            return match method {
                Method::POST => access_review(&sim, &headers, &body),
                _ => error_response(&ApiError::new(
                    405,
                    "MethodNotAllowed",
                    format!(
                        "the server does not allow this method on the requested resource: {method} {path}"
                    ),
                )),
            };
        }
        _ => {}
    }
    let t = match segs.as_slice() {
        ["api", v, rest @ ..] => resolve("", v, rest),
        ["apis", g, v, rest @ ..] => resolve(g, v, rest),
        _ => Err(ApiError::no_resource()),
    };
    let t = match t {
        Ok(t) => t,
        Err(e) => return error_response(&e),
    };
    let verb = match (&method, &t.name) {
        (&Method::GET, None) if query.flag("watch") => "watch",
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, None) => "deletecollection",
        (&Method::DELETE, Some(_)) => "delete",
        _ => "",
    };
    let ns = t.namespace.clone().unwrap_or_default();
    let info = t.kind.info();
    if sim
        .faults()
        .denied(verb, info.group, info.plural, t.sub.as_deref(), &ns)
        .is_some()
    {
        return error_response(&ApiError::forbidden(
            user(&headers),
            verb,
            t.kind,
            t.sub.as_deref(),
            &ns,
            t.name.as_deref(),
        ));
    }
    let ctx = Ctx {
        sim: &sim,
        query: &query,
        headers: &headers,
        body: &body,
        warnings: std::cell::RefCell::new(Vec::new()),
    };
    let result = match (&method, &t.name, t.sub.as_deref()) {
        (&Method::GET, None, _) => return ctx.list_or_watch(&t),
        (&Method::POST, None, _) => ctx.create(&t),
        (&Method::GET, Some(name), Some("log")) => return ctx.logs(&t, name),
        (&Method::GET, Some(name), Some("scale")) => ctx.get_scale(&t, name),
        (&Method::PUT | &Method::PATCH, Some(name), Some("scale")) => {
            ctx.write_scale(&t, name, method == Method::PATCH)
        }
        (&Method::GET, Some(name), _) => ctx.get(&t, name),
        (&Method::PUT, Some(name), sub) if sub != Some("log") => ctx.replace(&t, name, sub),
        (&Method::PATCH, Some(name), sub) if sub != Some("log") => ctx.patch(&t, name, sub),
        (&Method::DELETE, Some(name), None) => ctx.delete(&t, name),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource: {method} {path}"
            ),
        )),
    };
    let warnings = ctx.warnings.take();
    let mut resp = match result {
        Ok((code, v)) => {
            if method != Method::GET {
                sim.kick();
            }
            if method == Method::GET && table::wants_table(accept(&headers)) {
                let rv = lock(&sim.inner.store).rv();
                json_response(
                    code,
                    &table::table(
                        t.kind,
                        std::slice::from_ref(&v),
                        rv,
                        query.get("includeObject"),
                    ),
                )
            } else {
                json_response(code, &v)
            }
        }
        Err(e) => error_response(&e),
    };
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = header::HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// Who is asking: the simulator has no authentication, so the `Impersonate-User` header if
/// any, else `admin` (the user of the real test control plane's kubeconfig).
fn user(headers: &HeaderMap) -> &str {
    headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("admin")
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: allowed, unless a `deny`
/// fault matches the resource attributes.
fn access_review(sim: &Sim, headers: &HeaderMap, body: &Bytes) -> Response {
    let is_proto = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("protobuf"));
    let parsed = if is_proto {
        proto::self_subject_access_review(body)
    } else {
        serde_json::from_slice(body).ok().filter(Value::is_object)
    };
    let review: Value = match parsed {
        Some(v) => v,
        None => {
            return error_response(&ApiError::bad_request(
                "the object provided is unrecognized: expected a SelfSubjectAccessReview",
            ))
        }
    };
    let spec = review.get("spec").cloned().unwrap_or(json!({}));
    let ra = spec.get("resourceAttributes");
    let nra = spec.get("nonResourceAttributes");
    if ra.is_none() == nra.is_none() {
        let body = if ra.is_none() {
            "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified"
        } else {
            "Invalid value: \"resourceAttributes\": cannot be specified in combination with resourceAttributes"
        };
        return error_response(&ApiError::invalid_named(
            "SelfSubjectAccessReview",
            "authorization.k8s.io",
            "",
            vec![FieldError {
                field: if ra.is_none() {
                    "spec.resourceAttributes".into()
                } else {
                    "spec.nonResourceAttributes".into()
                },
                reason: if ra.is_none() {
                    "FieldValueRequired"
                } else {
                    "FieldValueInvalid"
                },
                body: body.into(),
            }],
        ));
    }
    let s = |k: &str| ra.and_then(|r| str_at(r, &[k])).unwrap_or("");
    let denied = ra.and_then(|_| {
        let sub = Some(s("subresource")).filter(|x| !x.is_empty());
        sim.faults()
            .denied(s("verb"), s("group"), s("resource"), sub, s("namespace"))
            .cloned()
    });
    let status = match denied {
        Some(d) => json!({
            "allowed": false,
            "reason": format!("denied by the simulator's fault deny:{d} (user {:?})", user(headers)),
        }),
        None => json!({"allowed": true}),
    };
    json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {},
            "spec": spec,
            "status": status,
        }),
    )
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

struct Ctx<'a> {
    sim: &'a Sim,
    query: &'a Query,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    /// `Warning` headers for the answer (unknown fields).
    warnings: std::cell::RefCell<Vec<String>>,
}

type Answer = Result<(StatusCode, Value), ApiError>;

impl Ctx<'_> {
    fn ns<'t>(&self, t: &'t Target) -> Result<&'t str, ApiError> {
        match (&t.namespace, t.kind.info().namespaced) {
            (Some(ns), true) => Ok(ns),
            (None, false) => Ok(""),
            _ => Err(ApiError::no_resource()),
        }
    }

    fn refuse_dry_run(&self) -> Result<(), ApiError> {
        if self.query.get("dryRun").is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::bad_request(
                "dryRun is not supported by the ktplay simulator",
            ));
        }
        Ok(())
    }

    /// Field validation as the real API server's: unknown fields are dropped, and reported
    /// per `fieldValidation` (`Warn`, the default: a warning each; `Strict`: refused; `Ignore`).
    fn known_fields(&self, kind: Kind, obj: &mut Value, verb: &str) -> Result<(), ApiError> {
        let mode = self.query.get("fieldValidation").unwrap_or("");
        if !matches!(mode, "" | "Ignore" | "Warn" | "Strict") {
            return Err(ApiError::invalid_named(
                &format!("{verb}Options"),
                "meta.k8s.io",
                "",
                vec![FieldError {
                    field: "fieldValidation".into(),
                    reason: "FieldValueNotSupported",
                    body: format!(
                        "Unsupported value: \"{mode}\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
                    ),
                }],
            ));
        }
        let before = (mode == "Strict" && verb == "Patch").then(|| obj.clone());
        let unknown = schema::prune(kind, obj);
        if unknown.is_empty() {
            return Ok(());
        }
        let listed = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect::<Vec<_>>()
            .join(", ");
        match mode {
            "Ignore" => Ok(()),
            "Strict" if verb == "Patch" => Err(ApiError::invalid_named(
                "",
                "",
                "",
                vec![FieldError::invalid(
                    "patch",
                    &store::go_value(&json!(before.unwrap_or_default().to_string())),
                    &format!("strict decoding error: {listed}"),
                )],
            )),
            "Strict" => {
                let i = kind.info();
                Err(ApiError::bad_request(format!(
                    "{k} in version \"{v}\" cannot be handled as a {k}: strict decoding error: {listed}",
                    k = i.kind,
                    v = i.version
                )))
            }
            _ => {
                self.warnings
                    .borrow_mut()
                    .extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")));
                Ok(())
            }
        }
    }

    /// Server-side apply refuses an unknown field whatever `fieldValidation` says, with a 500
    /// that has no reason, as the real server does.
    fn known_fields_apply(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        applied: &mut Value,
    ) -> Result<(), ApiError> {
        let unknown = schema::prune(kind, applied);
        let Some(first) = unknown.first() else {
            return Ok(());
        };
        let i = kind.info();
        Err(ApiError::new(
            500,
            "",
            format!(
                "failed to create typed patch object ({ns}/{name}; {}, Kind={}): .{first}: field not declared in schema",
                kind.api_version(),
                i.kind
            ),
        ))
    }

    fn body_json(&self) -> Result<Value, ApiError> {
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        if ct.contains("protobuf") {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the ktplay simulator speaks JSON only; protobuf bodies are not supported",
            ));
        }
        let v: Value = if ct.contains("yaml") {
            serde_yaml::from_slice(self.body)
                .map_err(|e| ApiError::bad_request(format!("invalid YAML body: {e}")))?
        } else {
            serde_json::from_slice(self.body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the object provided is unrecognized: json parse error: {e}"
                ))
            })?
        };
        if !v.is_object() {
            return Err(ApiError::bad_request(
                "the object provided is unrecognized: expected a JSON object",
            ));
        }
        Ok(v)
    }

    fn selectors(&self, kind: Kind) -> Result<(LabelSelector, FieldSelector), ApiError> {
        let labels = LabelSelector::parse(self.query.get("labelSelector").unwrap_or_default())
            .map_err(|e| ApiError::bad_request(format!("unable to parse labelSelector: {e}")))?;
        let fields = FieldSelector::parse(
            self.query.get("fieldSelector").unwrap_or_default(),
            kind.field_selectors(),
        )
        .map_err(ApiError::bad_request)?;
        Ok((labels, fields))
    }

    fn list_or_watch(&self, t: &Target) -> Response {
        let (labels, fields) = match self.selectors(t.kind) {
            Ok(s) => s,
            Err(e) => return error_response(&e),
        };
        let ns = t.namespace.clone();
        if !t.kind.info().namespaced && ns.is_some() {
            return error_response(&ApiError::no_resource());
        }
        if self.query.flag("watch") {
            return watch::watch(
                self.sim.clone(),
                t.kind,
                ns,
                labels,
                fields,
                self.query,
                table::wants_table(accept(self.headers)),
            );
        }
        let (items, rv) = {
            let store = lock(&self.sim.inner.store);
            (
                store.list(t.kind, ns.as_deref(), &labels, &fields),
                store.rv(),
            )
        };
        let (items, more) = match self.page(items) {
            Ok(p) => p,
            Err(e) => return error_response(&e),
        };
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if let Some((token, remaining)) = more {
            meta["continue"] = json!(token);
            // as the real server: no count when a selector filtered the list
            let filtered = ["labelSelector", "fieldSelector"]
                .iter()
                .any(|k| self.query.get(k).is_some_and(|v| !v.is_empty()));
            if !filtered {
                meta["remainingItemCount"] = json!(remaining);
            }
        }
        if table::wants_table(accept(self.headers)) {
            let mut tb = table::table(t.kind, &items, rv, self.query.get("includeObject"));
            tb["metadata"] = meta;
            return json_response(StatusCode::OK, &tb);
        }
        let info = t.kind.info();
        json_response(
            StatusCode::OK,
            &json!({
                "kind": format!("{}List", info.kind),
                "apiVersion": t.kind.api_version(),
                "metadata": meta,
                "items": items,
            }),
        )
    }

    /// `limit` and `continue`: one page of a list, and the token and count of the rest. The
    /// token names the last key sent; unlike a real server's, the next page is read from the
    /// current state, not from the snapshot of the first.
    #[allow(clippy::type_complexity)]
    fn page(&self, items: Vec<Value>) -> Result<(Vec<Value>, Option<(String, usize)>), ApiError> {
        let key = |o: &Value| {
            format!(
                "{}/{}",
                str_at(o, &["metadata", "namespace"]).unwrap_or_default(),
                str_at(o, &["metadata", "name"]).unwrap_or_default()
            )
        };
        let mut items = items;
        if let Some(token) = self.query.get("continue").filter(|c| !c.is_empty()) {
            let bad = || {
                ApiError::bad_request(format!(
                    "continue key is not valid: {token:?} was not issued by this server"
                ))
            };
            let raw = hex::decode(token).map_err(|_| bad())?;
            let after: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
            let after = after["start"].as_str().ok_or_else(bad)?.to_string();
            items.retain(|o| key(o) > after);
        }
        let limit: usize = match self.query.get("limit").filter(|l| !l.is_empty()) {
            None => 0,
            Some(l) => l.parse().map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing {l:?}: invalid syntax"))
            })?,
        };
        if limit == 0 || items.len() <= limit {
            return Ok((items, None));
        }
        let rest = items.split_off(limit);
        let last = items.last().map(key).unwrap_or_default();
        let token = hex::encode(json!({"v": "ktplay-sim/v1", "start": last}).to_string());
        Ok((items, Some((token, rest.len()))))
    }

    fn get(&self, t: &Target, name: &str) -> Answer {
        let ns = self.ns(t)?;
        let v = lock(&self.sim.inner.store).get(t.kind, ns, name)?;
        Ok((StatusCode::OK, v))
    }

    fn create(&self, t: &Target) -> Answer {
        self.refuse_dry_run()?;
        let ns = self.ns(t)?;
        let mut obj = self.body_json()?;
        self.known_fields(t.kind, &mut obj, "Create")?;
        let v = lock(&self.sim.inner.store).create(t.kind, ns, obj)?;
        Ok((StatusCode::CREATED, v))
    }

    fn mode(sub: Option<&str>) -> WriteMode {
        if sub == Some("status") {
            WriteMode::Status
        } else {
            WriteMode::Main
        }
    }

    fn replace(&self, t: &Target, name: &str, sub: Option<&str>) -> Answer {
        self.refuse_dry_run()?;
        let ns = self.ns(t)?;
        let mut obj = self.body_json()?;
        self.known_fields(t.kind, &mut obj, "Update")?;
        let v = lock(&self.sim.inner.store).update(t.kind, ns, name, obj, Ctx::mode(sub))?;
        Ok((StatusCode::OK, v))
    }

    fn patch_kind(&self) -> Result<PatchKind, ApiError> {
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        PatchKind::from_content_type(ct).ok_or_else(|| {
            ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: \
                     application/json-patch+json, application/merge-patch+json, \
                     application/apply-patch+yaml, application/strategic-merge-patch+json (got `{ct}`)"
                ),
            )
        })
    }

    fn patch(&self, t: &Target, name: &str, sub: Option<&str>) -> Answer {
        self.refuse_dry_run()?;
        let ns = self.ns(t)?;
        let kind = self.patch_kind()?;
        if kind == PatchKind::Apply && self.query.get("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::invalid_named(
                "PatchOptions",
                "meta.k8s.io",
                "",
                vec![FieldError::required(
                    "fieldManager",
                    "is required for apply patch",
                )],
            ));
        }
        let mut store = lock(&self.sim.inner.store);
        let current = match store.get(t.kind, ns, name) {
            Ok(c) => c,
            Err(e) if e.code == 404 && kind == PatchKind::Apply && sub.is_none() => {
                let mut obj = patch::parse_apply_body(self.body).map_err(ApiError::bad_request)?;
                patch::strip_directives(&mut obj);
                check_shape(t.kind, &obj)?;
                self.known_fields_apply(t.kind, ns, name, &mut obj)?;
                obj_mut(&mut obj, &["metadata"]).insert("name".into(), json!(name));
                let applied = obj.clone();
                let v = store.create(t.kind, ns, obj)?;
                let manager = self.query.get("fieldManager").unwrap_or_default();
                let owners = store
                    .managers
                    .entry((t.kind, ns.to_string(), name.to_string()))
                    .or_default();
                ssa::record(owners, manager, &applied, false);
                return Ok((StatusCode::CREATED, v));
            }
            Err(e) => return Err(e),
        };
        let mut owners = None;
        let mut released = Vec::new();
        if kind == PatchKind::Apply {
            let mut applied = patch::parse_apply_body(self.body).map_err(ApiError::bad_request)?;
            patch::strip_directives(&mut applied);
            self.known_fields_apply(t.kind, ns, name, &mut applied)?;
            let manager = self.query.get("fieldManager").unwrap_or_default();
            let force = self.query.flag("force");
            let key = (t.kind, ns.to_string(), name.to_string());
            let mut o = store.managers.get(&key).cloned().unwrap_or_default();
            let conflicts = ssa::conflicts(&o, manager, &current, &applied);
            if !conflicts.is_empty() && !force {
                return Err(ssa::conflict_error(&conflicts));
            }
            released = ssa::record(&mut o, manager, &applied, force);
            owners = Some((key, o));
        }
        let mut patched = current.clone();
        patch::apply_patch(&mut patched, kind, self.body).map_err(|m| {
            if kind == PatchKind::Json {
                ApiError::new(422, "Invalid", m)
            } else {
                ApiError::bad_request(m)
            }
        })?;
        if !patched.is_object() {
            return Err(ApiError::bad_request("the patch did not produce an object"));
        }
        check_shape(t.kind, &patched)?;
        self.known_fields(t.kind, &mut patched, "Patch")?;
        // A resourceVersion in the patch is a precondition; the current one is not.
        let current_rv = str_at(&current, &["metadata", "resourceVersion"]).map(String::from);
        if str_at(&patched, &["metadata", "resourceVersion"]).map(String::from) != current_rv {
            if str_at(&patched, &["metadata", "resourceVersion"]).is_some_and(|rv| !rv.is_empty()) {
                return Err(ApiError::conflict(t.kind, name));
            }
            obj_mut(&mut patched, &["metadata"])
                .insert("resourceVersion".into(), json!(current_rv));
        }
        ssa::remove_released(&mut patched, &released);
        let v = store.update(t.kind, ns, name, patched, Ctx::mode(sub))?;
        if let Some((key, o)) = owners {
            store.managers.insert(key, o);
        }
        Ok((StatusCode::OK, v))
    }

    fn delete(&self, t: &Target, name: &str) -> Answer {
        self.refuse_dry_run()?;
        let ns = self.ns(t)?;
        let mut v = lock(&self.sim.inner.store).delete(t.kind, ns, name)?;
        // The object goes at once (no graceful termination), but the answer is the real
        // server's: pods and namespaces come back marked for deletion, the rest as a Status.
        let meta = obj_mut(&mut v, &["metadata"]);
        match t.kind {
            Kind::Pod => {
                // an unscheduled pod goes at once; a bound one gets its grace period
                let grace = if str_at(&v, &["spec", "nodeName"]).is_some() {
                    i64_at(&v, &["spec", "terminationGracePeriodSeconds"]).unwrap_or(30)
                } else {
                    0
                };
                let meta = obj_mut(&mut v, &["metadata"]);
                meta.insert("deletionTimestamp".into(), json!(store::now()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
                meta.insert("generation".into(), json!(g + 1));
                Ok((StatusCode::OK, v))
            }
            Kind::Namespace => {
                meta.insert("deletionTimestamp".into(), json!(store::now()));
                obj_mut(&mut v, &["status"]).insert("phase".into(), json!("Terminating"));
                Ok((StatusCode::OK, v))
            }
            kind => {
                let i = kind.info();
                let mut details = json!({"name": name, "kind": i.plural, "uid": meta.get("uid")});
                if !i.group.is_empty() {
                    details["group"] = json!(i.group);
                }
                Ok((
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Success", "details": details}),
                ))
            }
        }
    }

    fn scale_of(&self, kind: Kind, obj: &Value) -> Value {
        let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
        let selector = at(obj, &["spec", "selector"])
            .map(|s| LabelSelector::from_object(s).to_string())
            .unwrap_or_default();
        let _ = kind;
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
                "creationTimestamp": meta.get("creationTimestamp"),
            },
            "spec": {"replicas": i64_at(obj, &["spec", "replicas"]).unwrap_or(0)},
            "status": {
                "replicas": i64_at(obj, &["status", "replicas"]).unwrap_or(0),
                "selector": selector,
            }
        })
    }

    fn get_scale(&self, t: &Target, name: &str) -> Answer {
        let ns = self.ns(t)?;
        let obj = lock(&self.sim.inner.store).get(t.kind, ns, name)?;
        Ok((StatusCode::OK, self.scale_of(t.kind, &obj)))
    }

    fn write_scale(&self, t: &Target, name: &str, is_patch: bool) -> Answer {
        self.refuse_dry_run()?;
        let ns = self.ns(t)?;
        let mut store = lock(&self.sim.inner.store);
        let obj = store.get(t.kind, ns, name)?;
        let mut scale = self.scale_of(t.kind, &obj);
        if is_patch {
            let kind = self.patch_kind()?;
            patch::apply_patch(&mut scale, kind, self.body).map_err(ApiError::bad_request)?;
        } else {
            scale = self.body_json()?;
        }
        let replicas = i64_at(&scale, &["spec", "replicas"]).ok_or_else(|| {
            ApiError::invalid_named(
                "Scale",
                "autoscaling",
                name,
                vec![FieldError::required("spec.replicas", "")],
            )
        })?;
        if replicas < 0 {
            return Err(ApiError::invalid_named(
                "Scale",
                "autoscaling",
                name,
                vec![FieldError::invalid(
                    "spec.replicas",
                    &replicas.to_string(),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut updated = obj.clone();
        match str_at(&scale, &["metadata", "resourceVersion"]) {
            Some(rv) if !rv.is_empty() => {
                obj_mut(&mut updated, &["metadata"]).insert("resourceVersion".into(), json!(rv));
            }
            _ => {}
        }
        obj_mut(&mut updated, &["spec"]).insert("replicas".into(), json!(replicas));
        let v = store.update(t.kind, ns, name, updated, WriteMode::Main)?;
        Ok((StatusCode::OK, self.scale_of(t.kind, &v)))
    }

    fn logs(&self, t: &Target, name: &str) -> Response {
        let result = (|| {
            let ns = self.ns(t)?;
            let store = lock(&self.sim.inner.store);
            let pod = store.get(Kind::Pod, ns, name)?;
            let containers: Vec<&str> = at(&pod, &["spec", "containers"])
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| str_at(c, &["name"]))
                .collect();
            let container = match self.query.get("container") {
                Some(c) if !c.is_empty() && !containers.contains(&c) => {
                    return Err(ApiError::bad_request(format!(
                        "container {c} is not valid for pod {name}"
                    )));
                }
                Some(c) if !c.is_empty() => c.to_string(),
                _ if containers.len() > 1 => {
                    return Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        containers.join(" ")
                    )));
                }
                _ => containers
                    .first()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            };
            let opts = logs::LogOptions::parse(name, |k| self.query.get(k))?;
            if let Some(why) = logs::refusal(&pod, &container, opts.previous) {
                return Err(ApiError::bad_request(why));
            }
            let lines = store
                .logs
                .get(&(ns.to_string(), name.to_string()))
                .cloned()
                .unwrap_or_default();
            let roles = self
                .sim
                .inner
                .roles
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let text = logs::render(
                logs::container_log(&pod, &container, &lines, &roles, &self.sim.faults()),
                &opts,
            );
            Ok(text)
        })();
        match result {
            Ok(text) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain")],
                Body::from(text),
            )
                .into_response(),
            Err(e) => error_response(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn queries_tolerate_leading_ampersands_and_encoding() {
        let q = Query::parse(Some(
            "&watch=true&labelSelector=app%3Dx%2Cy+in+(a)&flag&bad=%zz%",
        ));
        assert!(q.flag("watch"));
        assert_eq!(q.get("labelSelector"), Some("app=x,y in (a)"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("bad"), Some("%zz%"));
        assert!(Query::parse(None).get("x").is_none());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,64}") {
            let _ = Query::parse(Some(&s));
            let _ = LabelSelector::parse(&s);
            let _ = FieldSelector::parse(&s, &["metadata.name"]);
            let _ = s.parse::<Fault>();
            let _ = super::super::faults::parse_duration(&s);
        }

        #[test]
        fn patches_never_panic(body in proptest::collection::vec(any::<u8>(), 0..96), kind in 0..4usize) {
            let kinds = [PatchKind::Merge, PatchKind::Json, PatchKind::Strategic, PatchKind::Apply];
            let mut doc = json!({"metadata": {"name": "d", "labels": {"a": "b"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}}});
            let _ = patch::apply_patch(&mut doc, kinds[kind], &body);
        }

        #[test]
        fn json_shaped_patches_never_panic(
            key in "[a-z$/]{1,12}",
            val in prop_oneof![Just(json!(null)), Just(json!([])), Just(json!({})), Just(json!("s")),
                               Just(json!([{"name": "c", "$patch": "delete"}])), Just(json!([1, {"x": 2}]))],
        ) {
            let mut doc = json!({"spec": {"containers": [{"name": "c", "image": "i:1"}]}});
            let p = json!({"spec": {key.clone(): val.clone(), "containers": val.clone()}, key: val});
            let body = serde_json::to_vec(&p).unwrap();
            for k in [PatchKind::Merge, PatchKind::Strategic, PatchKind::Apply] {
                let mut d = doc.clone();
                let _ = patch::apply_patch(&mut d, k, &body);
            }
            let _ = patch::apply_patch(&mut doc, PatchKind::Json, &body);
        }
    }
}
