//! The object store: every object as JSON, one global increasing resourceVersion, the event
//! history that watches replay, server-set metadata, defaulting, validation and the error
//! `Status` objects the API returns.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use rand::Rng;
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::discovery::Kind;
use super::selector::{FieldSelector, LabelSelector};

/// How many events the store keeps for watches to resume from; older resourceVersions get
/// `410 Expired`.
const MAX_EVENTS: usize = 200_000;

/// An API error, rendered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, ...
    pub reason: &'static str,
    /// Human-readable message, worded like the real API server's.
    pub message: String,
    /// `details`: name and kind (resource) of the object concerned.
    pub details: Option<(String, String, String)>,
}

impl ApiError {
    /// A bare error.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 404 for a path that names no resource.
    pub fn no_resource() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 404 NotFound for an object.
    pub fn not_found(kind: Kind, name: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{}\" not found", kind.qualified(), name),
            details: Some(details(kind, name)),
        }
    }

    /// 409 AlreadyExists.
    pub fn already_exists(kind: Kind, name: &str) -> ApiError {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{}\" already exists", kind.qualified(), name),
            details: Some(details(kind, name)),
        }
    }

    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(kind: Kind, name: &str) -> ApiError {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                kind.qualified(),
                name
            ),
            details: Some(details(kind, name)),
        }
    }

    /// 422 Invalid.
    pub fn invalid(kind: Kind, name: &str, problem: impl std::fmt::Display) -> ApiError {
        let i = kind.info();
        let k = if i.group.is_empty() {
            i.kind.to_string()
        } else {
            format!("{}.{}", i.kind, i.group)
        };
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{k} \"{name}\" is invalid: {problem}"),
            details: Some(details(kind, name)),
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((name, group, kind)) = &self.details {
            let mut d = json!({"name": name, "kind": kind});
            if !group.is_empty() {
                d["group"] = json!(group);
            }
            s["details"] = d;
        }
        s
    }
}

fn details(kind: Kind, name: &str) -> (String, String, String) {
    let i = kind.info();
    (name.to_string(), i.group.to_string(), i.plural.to_string())
}

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted (the object as it was last).
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change in the store.
#[derive(Debug, Clone)]
pub struct Event {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// Kind of the object.
    pub kind: Kind,
    /// Namespace ("" when cluster-scoped).
    pub namespace: String,
    /// What happened.
    pub etype: EventType,
    /// The object after the change (before it, for deletions).
    pub object: Arc<Value>,
}

/// How a write treats the incoming object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// PUT/PATCH of the main resource: status is kept from the stored object.
    Main,
    /// PUT/PATCH of `/status`: only status is taken from the incoming object.
    Status,
    /// The simulator's own controllers: taken whole.
    Internal,
}

/// The object store.
pub struct Store {
    objects: BTreeMap<(Kind, String, String), Value>,
    rv: u64,
    events: VecDeque<Event>,
    notify: watch::Sender<u64>,
    next_ip: u32,
    /// Log lines per (namespace, pod).
    pub logs: HashMap<(String, String), Vec<String>>,
    /// Counts changes the controllers care about (pods, replica sets, deployment specs and
    /// annotations, faults), so an unrelated write does not cost a controller pass.
    pub dirty: u64,
}

/// Now, as the API writes timestamps.
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A random uid in the usual 8-4-4-4-12 form.
pub fn new_uid() -> String {
    let mut r = rand::thread_rng();
    let b: [u8; 16] = r.gen();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Is this a valid DNS-1123 subdomain (object names)?
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A 5-character random suffix as `generateName` uses.
pub fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut r = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[r.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Read a string at a path of keys.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// Read a value at a path of keys.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(*k))
}

/// Read an integer at a path of keys.
pub fn i64_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(Value::as_i64)
}

/// The object at a path, created as an empty map where missing (or not a map).
pub fn obj_mut<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = v;
    for k in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("just made an object")
            .entry(k.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut().expect("just made an object")
}

impl Store {
    /// An empty store at resourceVersion 1.
    pub fn new() -> Store {
        let (notify, _) = watch::channel(1);
        Store {
            objects: BTreeMap::new(),
            rv: 1,
            events: VecDeque::new(),
            notify,
            next_ip: 10,
            logs: HashMap::new(),
            dirty: 0,
        }
    }

    /// The current (latest) resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// A receiver that changes on every write.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// The oldest resourceVersion a watch may resume from.
    pub fn oldest_resumable(&self) -> u64 {
        self.events.front().map(|e| e.rv - 1).unwrap_or(self.rv)
    }

    /// Events after `rv` (exclusive), in order.
    pub fn events_since(&self, rv: u64) -> impl Iterator<Item = &Event> {
        let start = self.events.partition_point(|e| e.rv <= rv);
        self.events.range(start..)
    }

    fn key(kind: Kind, ns: &str, name: &str) -> (Kind, String, String) {
        let ns = if kind.info().namespaced { ns } else { "" };
        (kind, ns.to_string(), name.to_string())
    }

    /// Get one object.
    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&Store::key(kind, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))
    }

    /// Borrow one object.
    pub fn peek(&self, kind: Kind, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&Store::key(kind, ns, name))
    }

    /// Objects of a kind, in one namespace or (None) all, filtered by selectors.
    pub fn list(
        &self,
        kind: Kind,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        self.iter(kind, ns)
            .filter(|o| {
                labels.matches(at(o, &["metadata", "labels"]).and_then(Value::as_object))
                    && fields.matches(o)
            })
            .cloned()
            .collect()
    }

    /// Iterate objects of a kind, in one namespace or all.
    pub fn iter<'a>(&'a self, kind: Kind, ns: Option<&'a str>) -> impl Iterator<Item = &'a Value> {
        let ns_key = if kind.info().namespaced { ns } else { None };
        let start = (kind, ns_key.unwrap_or("").to_string(), String::new());
        self.objects
            .range(start..)
            .take_while(move |((k, n, _), _)| *k == kind && ns_key.is_none_or(|want| n == want))
            .map(|(_, v)| v)
    }

    fn record(&mut self, kind: Kind, ns: &str, etype: EventType, object: Value) {
        self.events.push_back(Event {
            rv: self.rv,
            kind,
            namespace: ns.to_string(),
            etype,
            object: Arc::new(object),
        });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
        self.notify.send_replace(self.rv);
    }

    /// Create an object (POST). The namespace must exist; the name must be new.
    pub fn create(&mut self, kind: Kind, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        let info = kind.info();
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(k) = obj.get("kind").and_then(Value::as_str) {
            if k != info.kind {
                return Err(ApiError::bad_request(format!(
                    "the body is a {k}, but the URL names {}",
                    info.plural
                )));
            }
        }
        let meta = obj_mut(&mut obj, &["metadata"]);
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            if let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
                name = format!("{prefix}{}", random_suffix(5));
            }
        }
        if name.is_empty() {
            return Err(ApiError::invalid(
                kind,
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                kind,
                &name,
                format!(
                    "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of \
                     lower case alphanumeric characters, '-' or '.', and must start and end with an \
                     alphanumeric character"
                ),
            ));
        }
        if info.namespaced {
            if let Some(body_ns) = meta.get("namespace").and_then(Value::as_str) {
                if !body_ns.is_empty() && body_ns != ns {
                    return Err(ApiError::bad_request(format!(
                        "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
                    )));
                }
            }
            if self.peek(Kind::Namespace, "", ns).is_none() {
                return Err(ApiError::not_found(Kind::Namespace, ns));
            }
        }
        if self.peek(kind, ns, &name).is_some() {
            return Err(ApiError::already_exists(kind, &name));
        }
        let meta = obj_mut(&mut obj, &["metadata"]);
        meta.insert("name".into(), json!(name));
        if info.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.remove("deletionTimestamp");
        meta.remove("managedFields");
        if matches!(kind, Kind::Deployment | Kind::ReplicaSet) {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        obj["kind"] = json!(info.kind);
        obj["apiVersion"] = json!(kind.api_version());
        self.default_object(kind, &mut obj, None);
        validate(kind, &name, &obj)?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects
            .insert(Store::key(kind, ns, &name), obj.clone());
        if matches!(kind, Kind::Deployment | Kind::ReplicaSet | Kind::Pod) {
            self.dirty += 1;
        }
        self.record(kind, ns, EventType::Added, obj.clone());
        Ok(obj)
    }

    /// Update an object (PUT, or the result of a PATCH) with the given mode.
    pub fn update(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        mut obj: Value,
        mode: WriteMode,
    ) -> Result<Value, ApiError> {
        let old = self.get(kind, ns, name)?;
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let body_name = str_at(&obj, &["metadata", "name"]).unwrap_or_default();
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let old_rv = str_at(&old, &["metadata", "resourceVersion"]).unwrap_or_default();
        let given = str_at(&obj, &["metadata", "resourceVersion"]).filter(|rv| !rv.is_empty());
        if mode != WriteMode::Internal {
            match given {
                Some(rv) if rv != old_rv => return Err(ApiError::conflict(kind, name)),
                None if kind == Kind::Lease => return Err(ApiError::invalid(
                    kind,
                    name,
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                )),
                _ => {}
            }
        }
        let mut new = match mode {
            WriteMode::Status => {
                let mut n = old.clone();
                n["status"] = obj.get("status").cloned().unwrap_or(json!({}));
                n
            }
            WriteMode::Main => {
                if kind.has_status() {
                    match old.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            if let Some(m) = obj.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                obj
            }
            WriteMode::Internal => obj,
        };
        // Server-owned metadata is the stored one, whatever the client sent.
        {
            let om = old.get("metadata").cloned().unwrap_or(json!({}));
            let meta = obj_mut(&mut new, &["metadata"]);
            meta.insert("name".into(), json!(name));
            for k in ["uid", "creationTimestamp", "namespace", "generation"] {
                match om.get(k) {
                    Some(v) => {
                        meta.insert(k.into(), v.clone());
                    }
                    None => {
                        meta.remove(k);
                    }
                }
            }
            meta.remove("managedFields");
        }
        new["kind"] = json!(kind.info().kind);
        new["apiVersion"] = json!(kind.api_version());
        self.default_object(kind, &mut new, Some(&old));
        validate(kind, name, &new)?;
        let spec_changed = old.get("spec") != new.get("spec");
        let annotations_changed =
            at(&old, &["metadata", "annotations"]) != at(&new, &["metadata", "annotations"]);
        let bump = match kind {
            Kind::Deployment => spec_changed || annotations_changed,
            Kind::ReplicaSet => spec_changed,
            _ => false,
        };
        if bump {
            let g = i64_at(&old, &["metadata", "generation"]).unwrap_or(1) + 1;
            new["metadata"]["generation"] = json!(g);
        }
        // A write that changes nothing keeps the resourceVersion and sends no event, as the
        // real API server does.
        let mut probe = new.clone();
        probe["metadata"]["resourceVersion"] = json!(old_rv);
        if probe == old {
            return Ok(old);
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(Store::key(kind, ns, name), new.clone());
        if matches!(kind, Kind::ReplicaSet | Kind::Pod) || bump {
            self.dirty += 1;
        }
        self.record(kind, ns, EventType::Modified, new.clone());
        Ok(new)
    }

    /// Delete an object; deleting a namespace deletes its contents, deleting a deployment or
    /// replica set deletes what it owns (background cascading, done at once).
    pub fn delete(&mut self, kind: Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
        let old = self.get(kind, ns, name)?;
        let uid = str_at(&old, &["metadata", "uid"])
            .unwrap_or_default()
            .to_string();
        if kind == Kind::Namespace {
            for k in Kind::ALL.into_iter().filter(|k| k.info().namespaced) {
                let names: Vec<String> = self
                    .iter(k, Some(name))
                    .filter_map(|o| str_at(o, &["metadata", "name"]).map(String::from))
                    .collect();
                for n in names {
                    let _ = self.delete(k, name, &n);
                }
            }
        }
        if matches!(kind, Kind::Deployment | Kind::ReplicaSet) {
            let child = if kind == Kind::Deployment {
                Kind::ReplicaSet
            } else {
                Kind::Pod
            };
            let owned: Vec<String> = self
                .iter(child, Some(ns))
                .filter(|o| controller_uid(o) == Some(uid.as_str()))
                .filter_map(|o| str_at(o, &["metadata", "name"]).map(String::from))
                .collect();
            for n in owned {
                let _ = self.delete(child, ns, &n);
            }
        }
        self.objects.remove(&Store::key(kind, ns, name));
        self.dirty += 1;
        if kind == Kind::Pod {
            self.logs.remove(&(ns.to_string(), name.to_string()));
        }
        self.rv += 1;
        let mut gone = old;
        gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(kind, ns, EventType::Deleted, gone.clone());
        Ok(gone)
    }

    /// Server-side defaults, as the real API server fills them in.
    fn default_object(&mut self, kind: Kind, obj: &mut Value, old: Option<&Value>) {
        // A typed server drops nulls (`"creationTimestamp": null` in templates kubectl sends).
        prune_nulls(obj);
        match kind {
            Kind::Namespace => {
                let name = str_at(obj, &["metadata", "name"])
                    .unwrap_or_default()
                    .to_string();
                obj_mut(obj, &["metadata", "labels"])
                    .insert("kubernetes.io/metadata.name".into(), json!(name));
                obj_mut(obj, &["spec"])
                    .entry("finalizers")
                    .or_insert(json!(["kubernetes"]));
                obj_mut(obj, &["status"])
                    .entry("phase")
                    .or_insert(json!("Active"));
            }
            Kind::Deployment => {
                let spec = obj_mut(obj, &["spec"]);
                if !spec.get("replicas").is_some_and(Value::is_i64) {
                    spec.insert("replicas".into(), json!(1));
                }
                spec.entry("revisionHistoryLimit").or_insert(json!(10));
                spec.entry("progressDeadlineSeconds").or_insert(json!(600));
                let strategy = spec
                    .entry("strategy")
                    .or_insert(json!({"type": "RollingUpdate"}));
                if !strategy.is_object() {
                    *strategy = json!({"type": "RollingUpdate"});
                }
                let st = strategy.as_object_mut().expect("an object");
                st.entry("type").or_insert(json!("RollingUpdate"));
                if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    let ru = st.entry("rollingUpdate").or_insert(json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        ru.entry("maxSurge").or_insert(json!("25%"));
                        ru.entry("maxUnavailable").or_insert(json!("25%"));
                    }
                }
                default_pod_spec(obj_mut(obj, &["spec", "template", "spec"]));
                obj_mut(obj, &["spec", "template", "metadata"]);
                if obj.get("status").is_none() {
                    obj["status"] = json!({});
                }
            }
            Kind::ReplicaSet => {
                let spec = obj_mut(obj, &["spec"]);
                if !spec.get("replicas").is_some_and(Value::is_i64) {
                    spec.insert("replicas".into(), json!(1));
                }
                default_pod_spec(obj_mut(obj, &["spec", "template", "spec"]));
                obj_mut(obj, &["spec", "template", "metadata"]);
                if obj.get("status").is_none() {
                    obj["status"] = json!({"replicas": 0});
                }
            }
            Kind::Pod => {
                default_pod_spec(obj_mut(obj, &["spec"]));
                if old.is_none() {
                    let status = obj_mut(obj, &["status"]);
                    status.entry("phase").or_insert(json!("Pending"));
                    status.entry("qosClass").or_insert(json!("BestEffort"));
                }
            }
            Kind::Service => {
                let old_ip = old
                    .and_then(|o| str_at(o, &["spec", "clusterIP"]))
                    .map(String::from);
                let spec = obj_mut(obj, &["spec"]);
                spec.entry("type").or_insert(json!("ClusterIP"));
                spec.entry("sessionAffinity").or_insert(json!("None"));
                let ip = match old_ip {
                    Some(ip) => ip,
                    None => {
                        self.next_ip += 1;
                        format!("10.96.{}.{}", self.next_ip / 250, self.next_ip % 250 + 1)
                    }
                };
                spec.insert("clusterIP".into(), json!(ip));
                spec.insert("clusterIPs".into(), json!([ip]));
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        p.entry("protocol").or_insert(json!("TCP"));
                        if let Some(port) = p.get("port").cloned() {
                            p.entry("targetPort").or_insert(port);
                        }
                    }
                }
                if obj.get("status").is_none() {
                    obj["status"] = json!({"loadBalancer": {}});
                }
            }
            Kind::ConfigMap | Kind::Lease => {}
        }
    }

    /// Allocate a pod IP.
    pub fn next_pod_ip(&mut self) -> String {
        self.next_ip += 1;
        format!("10.244.{}.{}", self.next_ip / 250, self.next_ip % 250 + 1)
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

/// What a typed decoder would refuse: `metadata`, `spec`, `status` (and the metadata maps)
/// must be objects.
pub fn check_shape(kind: Kind, obj: &Value) -> Result<(), ApiError> {
    let bad = |field: &str| {
        Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: json: cannot unmarshal {field} into an object",
            kind.info().kind,
            kind.info().version,
            kind.info().kind
        )))
    };
    for f in ["metadata", "spec", "status"] {
        if obj.get(f).is_some_and(|v| !v.is_object() && !v.is_null()) {
            return bad(f);
        }
    }
    for f in ["labels", "annotations"] {
        if let Some(m) = obj.get("metadata").and_then(|m| m.get(f)) {
            let ok = m.is_null()
                || m.as_object()
                    .is_some_and(|m| m.values().all(|v| v.is_string() || v.is_null()));
            if !ok {
                return bad(&format!("metadata.{f}"));
            }
        }
    }
    Ok(())
}

/// Remove null-valued fields, recursively.
pub fn prune_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(prune_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

fn default_pod_spec(spec: &mut Map<String, Value>) {
    spec.entry("restartPolicy").or_insert(json!("Always"));
    spec.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    spec.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    spec.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    spec.entry("securityContext").or_insert(json!({}));
    if let Some(cs) = spec.get_mut("containers").and_then(Value::as_array_mut) {
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let latest = c
                .get("image")
                .and_then(Value::as_str)
                .is_some_and(|i| image_tag(i).is_none_or(|t| t == "latest"));
            c.entry("imagePullPolicy").or_insert(json!(if latest {
                "Always"
            } else {
                "IfNotPresent"
            }));
            c.entry("terminationMessagePath")
                .or_insert(json!("/dev/termination-log"));
            c.entry("terminationMessagePolicy").or_insert(json!("File"));
            c.entry("resources").or_insert(json!({}));
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    p.entry("protocol").or_insert(json!("TCP"));
                }
            }
        }
    }
}

fn validate(kind: Kind, name: &str, obj: &Value) -> Result<(), ApiError> {
    let containers_ok = |path: &[&str]| -> Result<(), ApiError> {
        let cs = at(obj, path).and_then(Value::as_array);
        let Some(cs) = cs.filter(|c| !c.is_empty()) else {
            return Err(ApiError::invalid(
                kind,
                name,
                format!("{}: Required value", path.join(".")),
            ));
        };
        for (i, c) in cs.iter().enumerate() {
            if str_at(c, &["name"]).is_none_or(str::is_empty) {
                return Err(ApiError::invalid(
                    kind,
                    name,
                    format!("{}[{i}].name: Required value", path.join(".")),
                ));
            }
            if str_at(c, &["image"]).is_none_or(str::is_empty) {
                return Err(ApiError::invalid(
                    kind,
                    name,
                    format!("{}[{i}].image: Required value", path.join(".")),
                ));
            }
        }
        Ok(())
    };
    match kind {
        Kind::Deployment | Kind::ReplicaSet => {
            let sel = at(obj, &["spec", "selector"]);
            let Some(sel) = sel.filter(|s| {
                s.get("matchLabels")
                    .and_then(Value::as_object)
                    .is_some_and(|m| !m.is_empty())
                    || s.get("matchExpressions")
                        .and_then(Value::as_array)
                        .is_some_and(|m| !m.is_empty())
            }) else {
                return Err(ApiError::invalid(
                    kind,
                    name,
                    "spec.selector: Required value",
                ));
            };
            let labels =
                at(obj, &["spec", "template", "metadata", "labels"]).and_then(Value::as_object);
            if !LabelSelector::from_object(sel).matches(labels) {
                return Err(ApiError::invalid(
                    kind,
                    name,
                    "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`",
                ));
            }
            if i64_at(obj, &["spec", "replicas"]).is_some_and(|r| r < 0) {
                return Err(ApiError::invalid(
                    kind,
                    name,
                    "spec.replicas: Invalid value: must be greater than or equal to 0",
                ));
            }
            containers_ok(&["spec", "template", "spec", "containers"])
        }
        Kind::Pod => containers_ok(&["spec", "containers"]),
        _ => Ok(()),
    }
}

/// The uid of an object's controlling owner.
pub fn controller_uid(obj: &Value) -> Option<&str> {
    at(obj, &["metadata", "ownerReferences"])
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
}

/// The tag of an image reference (`keeptrusts/api:1.5.0` → `1.5.0`), if any.
pub fn image_tag(image: &str) -> Option<&str> {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, t)| t)
}

/// The repository of an image reference, without tag or digest.
pub fn image_repo(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image_tag(image) {
        Some(t) => &image[..image.len() - t.len() - 1],
        None => image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(store: &mut Store, name: &str) {
        store
            .create(Kind::Namespace, "", json!({"metadata": {"name": name}}))
            .unwrap();
    }

    #[test]
    fn images() {
        assert_eq!(image_tag("keeptrusts/api:1.5.0"), Some("1.5.0"));
        assert_eq!(image_tag("localhost:5000/api"), None);
        assert_eq!(image_repo("localhost:5000/api:2"), "localhost:5000/api");
        assert_eq!(image_repo("api"), "api");
    }

    #[test]
    fn create_get_conflict_delete() {
        let mut s = Store::new();
        ns(&mut s, "k");
        let cm = s
            .create(
                Kind::ConfigMap,
                "k",
                json!({"metadata": {"name": "c"}, "data": {"a": "1"}}),
            )
            .unwrap();
        assert!(str_at(&cm, &["metadata", "uid"]).is_some());
        let rv = str_at(&cm, &["metadata", "resourceVersion"])
            .unwrap()
            .to_string();
        assert_eq!(
            s.create(Kind::ConfigMap, "k", json!({"metadata": {"name": "c"}}))
                .unwrap_err()
                .reason,
            "AlreadyExists"
        );
        assert_eq!(
            s.create(Kind::ConfigMap, "nope", json!({"metadata": {"name": "c"}}))
                .unwrap_err()
                .code,
            404
        );
        let mut upd = cm.clone();
        upd["data"]["a"] = json!("2");
        let new = s
            .update(Kind::ConfigMap, "k", "c", upd.clone(), WriteMode::Main)
            .unwrap();
        assert_ne!(
            str_at(&new, &["metadata", "resourceVersion"]),
            Some(rv.as_str())
        );
        assert_eq!(
            s.update(Kind::ConfigMap, "k", "c", upd, WriteMode::Main)
                .unwrap_err()
                .reason,
            "Conflict"
        );
        s.delete(Kind::Namespace, "", "k").unwrap();
        assert!(s.get(Kind::ConfigMap, "k", "c").is_err());
        let types: Vec<&str> = s.events_since(0).map(|e| e.etype.as_str()).collect();
        assert_eq!(types, ["ADDED", "ADDED", "MODIFIED", "DELETED", "DELETED"]);
    }
}
