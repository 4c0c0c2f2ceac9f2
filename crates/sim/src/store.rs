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
    /// `details`: name, group and kind (the resource plural, or the Kind for `Invalid`) of the
    /// object concerned.
    pub details: Option<Box<(String, String, String)>>,
    /// `details.causes`: one per field error of an `Invalid` answer.
    pub causes: Vec<FieldError>,
}

/// One field error of a validation failure, as `k8s.io/apimachinery`'s `field.Error`: it
/// renders as `FIELD: BODY` in the message and as a `details.causes` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path (`spec.strategy.rollingUpdate.maxUnavailable`).
    pub field: String,
    /// The cause type: `FieldValueRequired`, `FieldValueInvalid`, `FieldValueTooLong`, ...
    pub reason: &'static str,
    /// What is wrong: `Required value`, `Invalid value: 0: may not be 0 when ...`.
    pub body: String,
}

impl FieldError {
    /// `Required value`, with an optional detail.
    pub fn required(field: impl Into<String>, detail: &str) -> FieldError {
        let mut body = "Required value".to_string();
        if !detail.is_empty() {
            body = format!("{body}: {detail}");
        }
        FieldError {
            field: field.into(),
            reason: "FieldValueRequired",
            body,
        }
    }

    /// `Invalid value: VALUE: DETAIL`; `value` is already rendered as Go prints it (numbers
    /// bare, strings quoted, maps as `map[string]string{...}`).
    pub fn invalid(field: impl Into<String>, value: &str, detail: &str) -> FieldError {
        let mut body = format!("Invalid value: {value}");
        if !detail.is_empty() {
            body = format!("{body}: {detail}");
        }
        FieldError {
            field: field.into(),
            reason: "FieldValueInvalid",
            body,
        }
    }

    /// `Too long: may not be more than N bytes`.
    pub fn too_long(field: impl Into<String>, max: usize) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueTooLong",
            body: format!("Too long: may not be more than {max} bytes"),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body)
    }
}

/// A bad value as the API server prints it in a field error: as JSON (strings quoted,
/// numbers bare, maps with sorted keys).
pub fn go_value(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

impl ApiError {
    /// A bare error.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            causes: Vec::new(),
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

    fn about(code: u16, reason: &'static str, message: String, kind: Kind, name: &str) -> ApiError {
        ApiError {
            details: Some(Box::new(details(kind, name))),
            ..ApiError::new(code, reason, message)
        }
    }

    /// 404 NotFound for an object.
    pub fn not_found(kind: Kind, name: &str) -> ApiError {
        let m = format!("{} \"{}\" not found", kind.qualified(), name);
        ApiError::about(404, "NotFound", m, kind, name)
    }

    /// 409 AlreadyExists.
    pub fn already_exists(kind: Kind, name: &str) -> ApiError {
        let m = format!("{} \"{}\" already exists", kind.qualified(), name);
        ApiError::about(409, "AlreadyExists", m, kind, name)
    }

    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(kind: Kind, name: &str) -> ApiError {
        let m = format!(
            "Operation cannot be fulfilled on {} \"{}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            kind.qualified(),
            name
        );
        ApiError::about(409, "Conflict", m, kind, name)
    }

    /// 403 Forbidden, as RBAC words it: `deployments.apps "x" is forbidden: User "u" cannot
    /// patch resource "deployments" in API group "apps" in the namespace "ns"`.
    pub fn forbidden(
        user: &str,
        verb: &str,
        kind: Kind,
        sub: Option<&str>,
        ns: &str,
        name: Option<&str>,
    ) -> ApiError {
        let i = kind.info();
        let resource = match sub {
            Some(s) => format!("{}/{s}", i.plural),
            None => i.plural.to_string(),
        };
        let what = match name {
            Some(n) => format!("{} \"{n}\"", kind.qualified()),
            None => kind.qualified(),
        };
        let scope = if i.namespaced && !ns.is_empty() {
            format!(" in the namespace \"{ns}\"")
        } else {
            " at the cluster scope".to_string()
        };
        let m = format!(
            "{what} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\"{scope}",
            i.group
        );
        ApiError::about(403, "Forbidden", m, kind, name.unwrap_or_default())
    }

    /// 422 Invalid with one or more field errors.
    pub fn invalid(kind: Kind, name: &str, errors: Vec<FieldError>) -> ApiError {
        let i = kind.info();
        ApiError::invalid_named(i.kind, i.group, name, errors)
    }

    /// 422 Invalid for an object of any kind (`Scale`, `PodLogOptions`).
    pub fn invalid_named(kind: &str, group: &str, name: &str, errors: Vec<FieldError>) -> ApiError {
        let k = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let problem = match errors.as_slice() {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{k} \"{name}\" is invalid: {problem}"),
            details: Some(Box::new((
                name.to_string(),
                group.to_string(),
                kind.to_string(),
            ))),
            causes: errors,
        }
    }

    /// 422 Invalid with one field error.
    pub fn invalid1(kind: Kind, name: &str, error: FieldError) -> ApiError {
        ApiError::invalid(kind, name, vec![error])
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
        if self.reason.is_empty() {
            if let Some(m) = s.as_object_mut() {
                m.remove("reason");
            }
        }
        if let Some((name, group, kind)) = self.details.as_deref() {
            let mut d = json!({});
            if !name.is_empty() {
                d["name"] = json!(name);
            }
            if !group.is_empty() {
                d["group"] = json!(group);
            }
            d["kind"] = json!(kind);
            if !self.causes.is_empty() {
                d["causes"] = self
                    .causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.body, "field": c.field}))
                    .collect();
            }
            s["details"] = d;
        } else if !self.causes.is_empty() {
            s["details"] = json!({"causes": self
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.body, "field": c.field}))
                .collect::<Vec<_>>()});
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
    /// For a modification, the object before it (so a watch with a selector can tell an object
    /// that left the selection, `DELETED`, from one that entered it, `ADDED`).
    pub old: Option<Arc<Value>>,
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
    /// Server-side apply field owners per object.
    pub managers: HashMap<(Kind, String, String), super::ssa::Owners>,
    /// Counts changes the controllers care about (pods, replica sets, deployment specs and
    /// annotations, faults), so an unrelated write does not cost a controller pass.
    pub dirty: u64,
    /// When each pod started, and the pods deleted whose endpoints still linger (issue 22).
    pub lifetimes: super::drain::Lifetimes,
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
            managers: HashMap::new(),
            dirty: 0,
            lifetimes: Default::default(),
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
        self.record_change(kind, ns, etype, object, None);
    }

    fn record_change(
        &mut self,
        kind: Kind,
        ns: &str,
        etype: EventType,
        object: Value,
        old: Option<Value>,
    ) {
        self.events.push_back(Event {
            rv: self.rv,
            kind,
            namespace: ns.to_string(),
            etype,
            object: Arc::new(object),
            old: old.map(Arc::new),
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
            return Err(ApiError::invalid1(
                kind,
                "",
                FieldError::required("metadata.name", "name or generateName is required"),
            ));
        }
        if !valid_name(&name) {
            return Err(ApiError::invalid1(
                kind,
                &name,
                FieldError::invalid(
                    "metadata.name",
                    &go_value(&json!(name)),
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
                     characters, '-' or '.', and must start and end with an alphanumeric character \
                     (e.g. 'example.com', regex used for validation is \
                     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
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
        if kind.has_generation() {
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
        self.managers.remove(&Store::key(kind, ns, &name));
        if matches!(kind, Kind::Deployment | Kind::ReplicaSet | Kind::Pod) {
            self.dirty += 1;
        }
        if kind == Kind::Pod {
            self.lifetimes.started(ns, &obj);
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
                None if kind == Kind::Lease => {
                    // Refused by the storage layer, which names the resource, not the kind.
                    let i = kind.info();
                    return Err(ApiError::invalid_named(
                        i.plural,
                        i.group,
                        name,
                        vec![FieldError::invalid(
                            "metadata.resourceVersion",
                            "0",
                            "must be specified for an update",
                        )],
                    ));
                }
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
        // As the real registry strategies: generation counts spec changes, and for a
        // Deployment also annotation changes (they are copied to its ReplicaSets), except from
        // the controllers (the real deployment controller writes its revision annotation
        // through /status, which never bumps). Label edits never bump.
        let spec_changed = old.get("spec") != new.get("spec");
        let annotations_changed =
            at(&old, &["metadata", "annotations"]) != at(&new, &["metadata", "annotations"]);
        let bump = kind.has_generation()
            && !(kind == Kind::Pod && mode == WriteMode::Internal) // binding does not bump
            && (spec_changed
                || (kind == Kind::Deployment && mode == WriteMode::Main && annotations_changed));
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
        if matches!(kind, Kind::ReplicaSet | Kind::Pod)
            || bump
            || (kind == Kind::Deployment && annotations_changed)
        {
            self.dirty += 1;
        }
        self.record_change(kind, ns, EventType::Modified, new.clone(), Some(old));
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
        self.managers.remove(&Store::key(kind, ns, name));
        self.dirty += 1;
        if kind == Kind::Pod {
            self.logs.remove(&(ns.to_string(), name.to_string()));
            self.lifetimes.deleted(ns, &old);
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
                spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
                spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
                spec.entry("internalTrafficPolicy")
                    .or_insert(json!("Cluster"));
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
            Kind::ConfigMap
            | Kind::Lease
            | Kind::HttpRoute
            | Kind::Ingress
            | Kind::PodDisruptionBudget => {}
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

/// The most bytes of annotations (keys and values) an object may carry.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
/// The most bytes of `data` and `binaryData` values a ConfigMap may hold.
pub const MAX_CONFIGMAP_BYTES: usize = 1024 * 1024;

/// Validation as the real API server's (a subset): every field error is collected, and the
/// answer names the fields the same way.
fn validate(kind: Kind, name: &str, obj: &Value) -> Result<(), ApiError> {
    let mut errs: Vec<FieldError> = Vec::new();
    if let Some(ann) = at(obj, &["metadata", "annotations"]).and_then(Value::as_object) {
        let size: usize = ann
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > MAX_ANNOTATIONS_BYTES {
            errs.push(FieldError::too_long(
                "metadata.annotations",
                MAX_ANNOTATIONS_BYTES,
            ));
        }
    }
    let containers = |errs: &mut Vec<FieldError>, path: &[&str]| {
        let p = path.join(".");
        let cs = at(obj, path).and_then(Value::as_array);
        let Some(cs) = cs.filter(|c| !c.is_empty()) else {
            errs.push(FieldError::required(p, ""));
            return;
        };
        for (i, c) in cs.iter().enumerate() {
            if str_at(c, &["name"]).is_none_or(str::is_empty) {
                errs.push(FieldError::required(format!("{p}[{i}].name"), ""));
            }
            if str_at(c, &["image"]).is_none_or(str::is_empty) {
                errs.push(FieldError::required(format!("{p}[{i}].image"), ""));
            }
        }
    };
    match kind {
        Kind::Deployment | Kind::ReplicaSet => {
            if let Some(r) = i64_at(obj, &["spec", "replicas"]).filter(|r| *r < 0) {
                errs.push(FieldError::invalid(
                    "spec.replicas",
                    &r.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
            let sel = at(obj, &["spec", "selector"]).filter(|s| {
                s.get("matchLabels")
                    .and_then(Value::as_object)
                    .is_some_and(|m| !m.is_empty())
                    || s.get("matchExpressions")
                        .and_then(Value::as_array)
                        .is_some_and(|m| !m.is_empty())
            });
            let labels = at(obj, &["spec", "template", "metadata", "labels"]);
            match sel {
                None => errs.push(FieldError::required("spec.selector", "")),
                Some(sel) => {
                    if !LabelSelector::from_object(sel).matches(labels.and_then(Value::as_object)) {
                        errs.push(FieldError::invalid(
                            "spec.template.metadata.labels",
                            &go_value(labels.unwrap_or(&json!({}))),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
            }
            containers(&mut errs, &["spec", "template", "spec", "containers"]);
            if kind == Kind::Deployment {
                validate_strategy(obj, &mut errs);
            }
        }
        Kind::Pod => containers(&mut errs, &["spec", "containers"]),
        Kind::ConfigMap => {
            let size: usize = ["data", "binaryData"]
                .iter()
                .filter_map(|f| obj.get(*f).and_then(Value::as_object))
                .flat_map(|m| m.values())
                .map(|v| v.as_str().map_or(0, str::len))
                .sum();
            if size > MAX_CONFIGMAP_BYTES {
                errs.push(FieldError::too_long("[]", MAX_CONFIGMAP_BYTES));
            }
        }
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(kind, name, errs))
    }
}

/// An int-or-string of a rolling update: `(value as written, is percent, number)`.
fn int_or_percent(v: &Value) -> Option<(String, bool, i64)> {
    match v {
        Value::Number(n) => n.as_i64().map(|i| (i.to_string(), false, i)),
        Value::String(s) => match s.strip_suffix('%') {
            Some(p) => p.parse().ok().map(|i| (s.clone(), true, i)),
            None => s.parse().ok().map(|i| (s.clone(), false, i)),
        },
        _ => None,
    }
}

fn validate_strategy(obj: &Value, errs: &mut Vec<FieldError>) {
    let path = "spec.strategy.rollingUpdate";
    let Some(ru) = at(obj, &["spec", "strategy", "rollingUpdate"]) else {
        return;
    };
    if str_at(obj, &["spec", "strategy", "type"]) == Some("Recreate") {
        errs.push(FieldError {
            field: path.into(),
            reason: "FieldValueForbidden",
            body: "Forbidden: may not be specified when strategy `type` is 'Recreate'".into(),
        });
        return;
    }
    let mut values = [None, None];
    for (i, f) in ["maxUnavailable", "maxSurge"].into_iter().enumerate() {
        let Some(v) = ru.get(f) else { continue };
        let field = format!("{path}.{f}");
        let shown = go_value(v);
        let Some((_, pct, n)) = int_or_percent(v) else {
            errs.push(FieldError::invalid(
                &field,
                &go_value(v),
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            ));
            continue;
        };
        if n < 0 {
            errs.push(FieldError::invalid(
                &field,
                &shown,
                "must be greater than or equal to 0",
            ));
        }
        if pct && n > 100 && f == "maxUnavailable" {
            errs.push(FieldError::invalid(
                &field,
                &shown,
                "must not be greater than 100%",
            ));
        }
        values[i] = Some((shown, n));
    }
    let zero = |v: &Option<(String, i64)>| v.as_ref().is_some_and(|(_, n)| *n == 0);
    if zero(&values[0]) && zero(&values[1]) {
        let shown = values[0]
            .as_ref()
            .map(|(s, _)| s.clone())
            .unwrap_or_default();
        errs.push(FieldError::invalid(
            format!("{path}.maxUnavailable"),
            &shown,
            "may not be 0 when `maxSurge` is 0",
        ));
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

pub use super::image::{image_repo, image_tag};

/// Follow mode (see `follow`): the store as a copy of another cluster's objects.
impl Store {
    /// Make the objects of `kind` in `ns` exactly `objects` (taken as they are: another API
    /// server already defaulted and validated them). Only changed objects cost an event.
    pub fn mirror(&mut self, kind: Kind, ns: &str, objects: Vec<Value>) {
        let mut keep = std::collections::BTreeSet::new();
        for obj in objects {
            let Some(name) = str_at(&obj, &["metadata", "name"]).map(String::from) else {
                continue;
            };
            let key = Store::key(kind, ns, &name);
            keep.insert(key.clone());
            if self.objects.get(&key) == Some(&obj) {
                continue;
            }
            let etype = if self.objects.contains_key(&key) {
                EventType::Modified
            } else {
                EventType::Added
            };
            self.rv += 1;
            self.objects.insert(key, obj.clone());
            self.dirty += 1;
            self.record(kind, ns, etype, obj);
        }
        let gone: Vec<(Kind, String, String)> = self
            .objects
            .keys()
            .filter(|k| k.0 == kind && k.1 == ns && !keep.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(old) = self.objects.remove(&k) {
                self.rv += 1;
                self.dirty += 1;
                self.record(kind, ns, EventType::Deleted, old);
            }
        }
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
