//! The controllers, run asynchronously at the configured pace so clients see every intermediate
//! state: a kubelet (pods start, become ready per their simulated version, write logs), the
//! replica-set controller (pods per ReplicaSet) and the deployment controller (ReplicaSets by
//! template, revisions, rolling updates within maxSurge/maxUnavailable, conditions, deadlines,
//! pause).

use std::collections::HashSet;
use std::sync::Weak;
use std::time::Duration;

use chrono::{DateTime, Utc};
use semver::Version;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::discovery::Kind;
use super::selector::LabelSelector;
use super::services::{migrations_for, pod_role};
use super::store::{
    at, controller_uid, i64_at, now, obj_mut, random_suffix, str_at, Store, WriteMode,
};
use super::{lock, Faults, Inner, RoleInfo, Seed, SeedWorkload, Sim};

const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";
const NODE: &str = "sim-node-1";
/// When the next clock-driven change is due (a crash-looping container's next restart, a
/// progress deadline): the soonest of what one pass saw, as time from now on the wall clock the
/// objects' timestamps are written in.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Due(Option<Duration>);

impl Due {
    fn at(&mut self, t: DateTime<Utc>) {
        let left = (t - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_millis(1));
        self.0 = Some(self.0.map_or(left, |d| d.min(left)));
    }
}

/// The controller loop; ends when the simulator is dropped. Event-driven: a kick (any API write)
/// runs a pass only if something the controllers watch changed; a pass that changed something is
/// followed by another after the pace (pods move a step at a time); and an idle controller sleeps
/// until the next clock-driven change the last pass found due, or, with none, until the next kick.
/// Under a paused runtime (`ktplay test`) its time jumps to the next of those, never tick by tick.
pub async fn run(weak: Weak<Inner>) {
    let mut force = true;
    let mut seen = u64::MAX;
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let sim = Sim { inner };
        let dirty = lock(&sim.inner.store).dirty;
        let progressed = if force || dirty != seen {
            let (p, observed, next) = pass(&sim);
            // What this pass saw, not what the store holds now: a write that lands after the
            // pass must cause another one.
            seen = observed;
            due = next.0.map(|d| tokio::time::Instant::now() + d);
            p
        } else {
            false
        };
        let pace = sim.pace();
        if progressed {
            drop(sim);
            force = true;
            if pace.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(pace).await;
            }
        } else {
            let inner = sim.inner.clone();
            drop(sim);
            let kicked = inner.kick.notified();
            match due {
                Some(at) => tokio::select! {
                    _ = kicked => force = false,
                    // Not sooner than a controller step takes.
                    _ = tokio::time::sleep_until(at.max(tokio::time::Instant::now() + pace)) => force = true,
                },
                None => {
                    kicked.await;
                    force = false;
                }
            }
        }
    }
}

/// One pass of every controller; true if anything changed.
pub fn step(sim: &Sim) -> bool {
    pass(sim).0
}

/// One pass; also returns the change counter as the pass found it, and when the next
/// clock-driven change is due.
fn pass(sim: &Sim) -> (bool, u64, Due) {
    sim.inner
        .passes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let faults = sim.faults();
    let roles = sim
        .inner
        .roles
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut store = lock(&sim.inner.store);
    let before = store.rv();
    let observed = store.dirty;
    let mut due = Due::default();
    kubelet(sim, &mut store, &faults, &roles, &mut due);
    let deployments: Vec<(String, String)> = store
        .iter(Kind::Deployment, None)
        .map(|d| {
            (
                str_at(d, &["metadata", "namespace"])
                    .unwrap_or_default()
                    .to_string(),
                str_at(d, &["metadata", "name"])
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let mut created = HashSet::new();
    for (ns, name) in &deployments {
        if sync_deployment(&mut store, ns, name) {
            created.insert((ns.clone(), name.clone()));
        }
    }
    let replica_sets: Vec<(String, String)> = store
        .iter(Kind::ReplicaSet, None)
        .map(|d| {
            (
                str_at(d, &["metadata", "namespace"])
                    .unwrap_or_default()
                    .to_string(),
                str_at(d, &["metadata", "name"])
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    for (ns, name) in &replica_sets {
        sync_replica_set(&mut store, ns, name);
    }
    for (ns, name) in &deployments {
        let just_created = created.contains(&(ns.clone(), name.clone()));
        deployment_status(&mut store, ns, name, just_created, &mut due);
    }
    (store.rv() != before, observed, due)
}

fn name_of(v: &Value) -> String {
    str_at(v, &["metadata", "name"])
        .unwrap_or_default()
        .to_string()
}

fn uid_of(v: &Value) -> String {
    str_at(v, &["metadata", "uid"])
        .unwrap_or_default()
        .to_string()
}

fn is_ready(pod: &Value) -> bool {
    at(pod, &["status", "conditions"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| str_at(c, &["type"]) == Some("Ready") && str_at(c, &["status"]) == Some("True"))
}

fn owned<'a>(store: &'a Store, kind: Kind, ns: &'a str, uid: &'a str) -> Vec<Value> {
    store
        .iter(kind, Some(ns))
        .filter(|o| controller_uid(o) == Some(uid))
        .cloned()
        .collect()
}

fn revision(rs: &Value) -> i64 {
    str_at(rs, &["metadata", "annotations", REVISION])
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn pod_conditions(ready: bool, t: &str, containers: &[Value]) -> Value {
    let s = if ready { "True" } else { "False" };
    let cond = |ctype: &str, status: &str, why: bool| {
        let mut c = json!({"type": ctype, "status": status, "lastProbeTime": null, "lastTransitionTime": t});
        if why {
            let names: Vec<&str> = containers
                .iter()
                .filter_map(|c| str_at(c, &["name"]))
                .collect();
            c["reason"] = json!("ContainersNotReady");
            c["message"] = json!(format!(
                "containers with unready status: [{}]",
                names.join(" ")
            ));
        }
        c
    };
    json!([
        cond("PodReadyToStartContainers", "True", false),
        cond("Initialized", "True", false),
        cond("Ready", s, !ready),
        cond("ContainersReady", s, !ready),
        cond("PodScheduled", "True", false),
    ])
}

/// The image-tag convention of the real control plane's fake kubelet
/// (`tests/realkube/fake_kubelet.py`): a pod any of whose image tags ends in `-bad` stays
/// Pending in `ImagePullBackOff`; `-crash` crash-loops; `-unready` runs but is never Ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagBehaviour {
    /// `-bad`: Pending, container Waiting `ImagePullBackOff`.
    Bad,
    /// `-crash`: Running, container Waiting `CrashLoopBackOff`, restartCount climbing.
    Crash,
    /// `-unready`: Running, container running, never Ready.
    Unready,
}

/// The tag as the fake kubelet reads it: `latest` when there is none, empty for a digest.
pub(crate) fn kubelet_tag(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains('@') {
        return "";
    }
    last.split_once(':').map_or("latest", |(_, t)| t)
}

/// What the pod's image tags make it do, if anything special.
pub(crate) fn tag_behaviour(pod: &Value) -> Option<TagBehaviour> {
    let tags: Vec<&str> = at(pod, &["spec", "containers"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| kubelet_tag(str_at(c, &["image"]).unwrap_or_default()))
        .collect();
    if tags.iter().any(|t| t.ends_with("-bad")) {
        Some(TagBehaviour::Bad)
    } else if tags.iter().any(|t| t.ends_with("-crash")) {
        Some(TagBehaviour::Crash)
    } else if tags.iter().any(|t| t.ends_with("-unready")) {
        Some(TagBehaviour::Unready)
    } else {
        None
    }
}

/// Restarts of a crash-looping container: one per 10 s since the pod started, as the fake
/// kubelet counts them; the next one is due then.
fn crash_restarts(pod: &Value, due: &mut Due) -> i64 {
    let started = str_at(pod, &["status", "startTime"])
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let Some(t) = started else { return 0 };
    let n = (Utc::now() - t).num_seconds().max(0) / 10;
    due.at(t + chrono::Duration::seconds((n + 1) * 10));
    n
}

/// Why a pod is not healthy, if it is not.
fn unhealthy(role: Option<&(RoleInfo, Option<Version>)>, faults: &Faults) -> Option<&'static str> {
    let (info, Some(v)) = role? else { return None };
    if faults.never_ready(&info.role, v) {
        return Some("never-ready");
    }
    if info.role == "api" && faults.migration_fails(v) {
        return Some("migration");
    }
    None
}

/// Pods start, become ready per their version, faults and image tags, and write their
/// start-up logs (the simulated Keeptrusts components' own lines; `logs.rs` adds the fake
/// kubelet's lines around them when they are read).
fn kubelet(sim: &Sim, store: &mut Store, faults: &Faults, roles: &[RoleInfo], due: &mut Due) {
    let pods: Vec<Value> = store
        .iter(Kind::Pod, None)
        .filter(|p| !is_ready(p))
        .cloned()
        .collect();
    for pod in pods {
        let ns = str_at(&pod, &["metadata", "namespace"])
            .unwrap_or_default()
            .to_string();
        let name = name_of(&pod);
        let role = pod_role(roles, &pod);
        // `crash:C@V` makes a pod behave as the fake kubelet's `-crash` tag does.
        let crash_fault = role
            .as_ref()
            .and_then(|(r, v)| Some((r, v.as_ref()?)))
            .is_some_and(|(r, v)| faults.crashes(&r.role, v));
        let tags = tag_behaviour(&pod).or(crash_fault.then_some(TagBehaviour::Crash));
        let problem = unhealthy(role.as_ref(), faults);
        let starting = str_at(&pod, &["status", "startTime"]).is_none();
        if !starting {
            if tags == Some(TagBehaviour::Crash) {
                let restarts = crash_restarts(&pod, due);
                let mut p = pod.clone();
                let mut changed = false;
                if let Some(cs) = p
                    .get_mut("status")
                    .and_then(|s| s.get_mut("containerStatuses"))
                    .and_then(Value::as_array_mut)
                {
                    for c in cs {
                        if c["restartCount"].as_i64() != Some(restarts) {
                            c["restartCount"] = json!(restarts);
                            changed = true;
                        }
                    }
                }
                if changed {
                    let _ = store.update(Kind::Pod, &ns, &name, p, WriteMode::Internal);
                }
                continue;
            }
            if tags.is_some() || problem.is_some() {
                continue; // still broken: nothing changes
            }
        }
        let t = now();
        let mut lines = Vec::new();
        let role_name = role.as_ref().map(|r| r.0.role.as_str()).unwrap_or("");
        let version = role.as_ref().and_then(|r| r.1.clone());
        let vtext = version.as_ref().map(|v| v.to_string()).unwrap_or_default();
        if tags == Some(TagBehaviour::Bad) {
            // never started: no lines
        } else if !starting {
            lines.push("fault cleared, retrying start-up".to_string());
        } else {
            match role_name {
                "api" => lines.push(format!("keeptrusts-api {vtext} starting")),
                "gateway" => lines.push(format!(
                    "keeptrusts-gateway {vtext} starting, listening on :41002"
                )),
                "console" => lines.push(format!("keeptrusts-console {vtext} serving on :3000")),
                "workers" => lines.push(format!("keeptrusts-worker {vtext} starting")),
                _ => {}
            }
        }
        match (role_name, problem, tags) {
            (_, _, Some(_)) => {}
            ("api", Some("migration"), _) => {
                let migs = migrations_for(version.as_ref());
                let last = migs.last().cloned().unwrap_or_default();
                lines.push("acquired migration lock".into());
                for m in &migs[..migs.len().saturating_sub(1)] {
                    lines.push(format!("migration {m} applied"));
                }
                lines.push(format!(
                    "migration {last} failed: ERROR: column \"policy_id\" of relation \"policies\" already exists"
                ));
                lines.push("exiting with status 1".into());
            }
            ("api", None, _) => {
                let key = (ns.clone(), vtext.clone());
                let mut migrated = lock(&sim.inner.migrated);
                match migrated.get(&key) {
                    Some(by) if by != &name => {
                        lines.push(format!("waiting for migration lock held by {by}"));
                        lines.push(format!("migrations complete (applied by {by})"));
                    }
                    _ => {
                        lines.push("acquired migration lock".into());
                        for m in migrations_for(version.as_ref()) {
                            lines.push(format!("migration {m} applied"));
                        }
                        lines.push("migrations complete".into());
                        migrated.insert(key, name.clone());
                    }
                }
                lines.push("listening on 0.0.0.0:8080".into());
            }
            ("gateway", None, _) => {
                let on = version.as_ref().is_none_or(|v| !faults.policy_off(v));
                lines.push(format!(
                    "policy enforcement {}",
                    if on { "enabled" } else { "DISABLED" }
                ));
            }
            ("workers", None, _) => lines.push("processing jobs".into()),
            (r, Some(_), _) if !r.is_empty() => {
                lines.push("readiness probe failed: not ready".into())
            }
            _ => {}
        }
        // A generic component logs the lines its log guards look for, as they are (no stamp in
        // front, so a pattern anchored with `^` matches).
        let mut raw_lines: Vec<String> = Vec::new();
        if tags.is_none() && problem.is_none() && !super::generic::is_modelled(role_name) {
            if let Some(spec) = sim.generic().spec(role_name) {
                raw_lines.extend(spec.log_lines.iter().cloned());
            }
        }
        if version
            .as_ref()
            .is_some_and(|v| faults.logs_missing(role_name, v))
        {
            lines.clear();
            raw_lines.clear();
        }
        if crash_fault && starting {
            lines.push(format!(
                "exited with code 1 (fault crash:{role_name}@{vtext}), restarting"
            ));
        }
        let ready = problem.is_none() && tags.is_none();
        let containers = at(&pod, &["spec", "containers"])
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut p = pod.clone();
        {
            let status = obj_mut(&mut p, &["status"]);
            let phase = if tags == Some(TagBehaviour::Bad) {
                "Pending"
            } else {
                "Running"
            };
            status.insert("phase".into(), json!(phase));
            if starting {
                status.insert("startTime".into(), json!(t));
            }
            status.insert("conditions".into(), pod_conditions(ready, &t, &containers));
        }
        if starting {
            // the scheduler's part: bind to the one node
            obj_mut(&mut p, &["spec"])
                .entry("nodeName")
                .or_insert(json!(NODE));
            let status = obj_mut(&mut p, &["status"]);
            status.insert("hostIP".into(), json!("10.0.0.1"));
            status.insert("hostIPs".into(), json!([{"ip": "10.0.0.1"}]));
            if tags != Some(TagBehaviour::Bad) {
                let ip = store.next_pod_ip();
                let status = obj_mut(&mut p, &["status"]);
                status.insert("podIP".into(), json!(ip));
                status.insert("podIPs".into(), json!([{"ip": ip}]));
            }
        }
        let started_at = str_at(&p, &["status", "startTime"])
            .unwrap_or(&t)
            .to_string();
        let statuses: Vec<Value> = containers
            .iter()
            .map(|c| {
                let cname = str_at(c, &["name"]).unwrap_or_default();
                let image = str_at(c, &["image"]).unwrap_or_default();
                let mut st = json!({
                    "name": cname,
                    "image": image,
                    "imageID": format!("sim://{image}"),
                    "containerID": format!("sim://{}", random_suffix(12)),
                    "ready": ready,
                    "started": true,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": t}},
                });
                match (tags, problem) {
                    (Some(TagBehaviour::Bad), _) => {
                        let m = st.as_object_mut().expect("an object");
                        m.remove("containerID");
                        m.insert("imageID".into(), json!(""));
                        m.insert("started".into(), json!(false));
                        m.insert(
                            "state".into(),
                            json!({"waiting": {
                                "reason": "ImagePullBackOff",
                                "message": format!(
                                    "Back-off pulling image \"{image}\": fake kubelet: tag {} ends in -bad",
                                    kubelet_tag(image)
                                ),
                            }}),
                        );
                    }
                    (Some(TagBehaviour::Crash), _) => {
                        st["started"] = json!(false);
                        st["state"] = json!({"waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": format!("back-off restarting failed container {cname}"),
                        }});
                        st["lastState"] = json!({"terminated": {
                            "exitCode": 1, "reason": "Error", "startedAt": started_at, "finishedAt": t,
                        }});
                    }
                    (_, Some("migration")) => {
                        st["started"] = json!(false);
                        st["restartCount"] = json!(1);
                        st["state"] = json!({"waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": "back-off restarting failed container",
                        }});
                    }
                    _ => {}
                }
                st
            })
            .collect();
        p["status"]["containerStatuses"] = json!(statuses);
        if !lines.is_empty() || !raw_lines.is_empty() {
            let entry = store.logs.entry((ns.clone(), name.clone())).or_default();
            for l in lines {
                entry.push(format!("{t} {l}"));
            }
            entry.extend(raw_lines);
        }
        let _ = store.update(Kind::Pod, &ns, &name, p, WriteMode::Internal);
    }
}

/// Template equality ignoring `pod-template-hash`.
fn template_without_hash(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(labels) = t
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    t
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// A short, stable hash of a pod template, in the alphabet Kubernetes uses.
fn template_hash(template: &Value, salt: u32) -> String {
    let text = serde_json::to_string(&canonical(template)).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    h.update(salt.to_le_bytes());
    let d = h.finalize();
    let mut n = u32::from_le_bytes([d[0], d[1], d[2], d[3]]) as u64;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut s = String::new();
    while s.len() < 10 {
        s.push(ALPHABET[(n % ALPHABET.len() as u64) as usize] as char);
        n /= ALPHABET.len() as u64;
        if n == 0 {
            break;
        }
    }
    s
}

/// `maxSurge`/`maxUnavailable` as numbers: surge rounds up, unavailability down; both zero
/// means one unavailable, as in Kubernetes.
fn surge_unavailable(d: &Value, replicas: i64) -> (i64, i64) {
    let resolve = |v: Option<&Value>, default: &str, up: bool| -> i64 {
        let v = v.cloned().unwrap_or(json!(default));
        match v {
            Value::Number(n) => n.as_i64().unwrap_or(0).max(0),
            Value::String(s) => {
                let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
                let x = pct * replicas as f64 / 100.0;
                (if up { x.ceil() } else { x.floor() }) as i64
            }
            _ => 0,
        }
    };
    if str_at(d, &["spec", "strategy", "type"]) == Some("Recreate") {
        return (0, replicas);
    }
    let ru = at(d, &["spec", "strategy", "rollingUpdate"]);
    let surge = resolve(ru.and_then(|r| r.get("maxSurge")), "25%", true);
    let mut unavailable = resolve(ru.and_then(|r| r.get("maxUnavailable")), "25%", false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

fn rs_replicas(rs: &Value) -> i64 {
    i64_at(rs, &["spec", "replicas"]).unwrap_or(0)
}

fn rs_available(rs: &Value) -> i64 {
    i64_at(rs, &["status", "availableReplicas"]).unwrap_or(0)
}

fn scale_rs(store: &mut Store, rs: &Value, to: i64, d: &Value) {
    let mut r = rs.clone();
    obj_mut(&mut r, &["spec"]).insert("replicas".into(), json!(to.max(0)));
    let ann = obj_mut(&mut r, &["metadata", "annotations"]);
    let replicas = i64_at(d, &["spec", "replicas"]).unwrap_or(0);
    let (surge, _) = surge_unavailable(d, replicas);
    ann.insert(DESIRED.into(), json!(replicas.to_string()));
    ann.insert(MAX_REPLICAS.into(), json!((replicas + surge).to_string()));
    let ns = str_at(rs, &["metadata", "namespace"])
        .unwrap_or_default()
        .to_string();
    let _ = store.update(Kind::ReplicaSet, &ns, &name_of(rs), r, WriteMode::Internal);
}

/// Annotations a ReplicaSet copies from its deployment.
fn copied_annotations(d: &Value) -> Map<String, Value> {
    let skip = [
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        DESIRED,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    ];
    at(d, &["metadata", "annotations"])
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !skip.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Reconcile one deployment's ReplicaSets; true if a new ReplicaSet was created.
fn sync_deployment(store: &mut Store, ns: &str, name: &str) -> bool {
    let Ok(d) = store.get(Kind::Deployment, ns, name) else {
        return false;
    };
    let uid = uid_of(&d);
    let replicas = i64_at(&d, &["spec", "replicas"]).unwrap_or(1);
    let template = at(&d, &["spec", "template"]).cloned().unwrap_or(json!({}));
    let wanted = template_without_hash(&template);
    let all = owned(store, Kind::ReplicaSet, ns, &uid);
    let paused = at(&d, &["spec", "paused"]).and_then(Value::as_bool) == Some(true);
    let mut new_rs = all
        .iter()
        .find(|rs| {
            at(rs, &["spec", "template"])
                .map(template_without_hash)
                .as_ref()
                == Some(&wanted)
        })
        .cloned();
    let old: Vec<Value> = all
        .iter()
        .filter(|rs| new_rs.as_ref().is_none_or(|n| name_of(n) != name_of(rs)))
        .cloned()
        .collect();
    if paused {
        return false;
    }
    let max_old_rev = old.iter().map(revision).max().unwrap_or(0);
    let (surge, unavailable) = surge_unavailable(&d, replicas);
    let mut created = false;
    match &new_rs {
        None => {
            let mut salt = 0;
            let (rs_name, hash) = loop {
                let hash = template_hash(&wanted, salt);
                let n = format!("{name}-{hash}");
                if store.peek(Kind::ReplicaSet, ns, &n).is_none() || salt > 20 {
                    break (n, hash);
                }
                salt += 1;
            };
            let current: i64 = old.iter().map(rs_replicas).sum();
            let initial = if str_at(&d, &["spec", "strategy", "type"]) == Some("Recreate") {
                0
            } else if current == 0 {
                replicas
            } else {
                (replicas + surge - current).clamp(0, replicas)
            };
            let mut t = template.clone();
            obj_mut(&mut t, &["metadata", "labels"]).insert(HASH_LABEL.into(), json!(hash));
            let mut sel = at(&d, &["spec", "selector"]).cloned().unwrap_or(json!({}));
            obj_mut(&mut sel, &["matchLabels"]).insert(HASH_LABEL.into(), json!(hash));
            let mut labels = at(&template, &["metadata", "labels"])
                .cloned()
                .unwrap_or(json!({}));
            obj_mut(&mut labels, &[]).insert(HASH_LABEL.into(), json!(hash));
            let mut ann = copied_annotations(&d);
            ann.insert(REVISION.into(), json!((max_old_rev + 1).to_string()));
            ann.insert(DESIRED.into(), json!(replicas.to_string()));
            ann.insert(MAX_REPLICAS.into(), json!((replicas + surge).to_string()));
            let rs = json!({
                "metadata": {
                    "name": rs_name,
                    "namespace": ns,
                    "labels": labels,
                    "annotations": ann,
                    "ownerReferences": [{
                        "apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid,
                        "controller": true, "blockOwnerDeletion": true
                    }]
                },
                "spec": {
                    "replicas": initial,
                    "minReadySeconds": i64_at(&d, &["spec", "minReadySeconds"]).unwrap_or(0),
                    "selector": sel,
                    "template": t,
                }
            });
            match store.create(Kind::ReplicaSet, ns, rs) {
                Ok(rs) => {
                    new_rs = Some(rs);
                    created = true;
                }
                Err(_) => return false,
            }
        }
        Some(rs) if revision(rs) <= max_old_rev => {
            // Rolled back to an old template: the old ReplicaSet becomes the newest revision.
            let mut r = rs.clone();
            let ann = obj_mut(&mut r, &["metadata", "annotations"]);
            for (k, v) in copied_annotations(&d) {
                ann.insert(k, v);
            }
            ann.insert(REVISION.into(), json!((max_old_rev + 1).to_string()));
            if let Ok(r) = store.update(Kind::ReplicaSet, ns, &name_of(rs), r, WriteMode::Internal)
            {
                new_rs = Some(r);
            }
        }
        Some(_) => {}
    }
    let Some(new_rs) = new_rs else { return created };
    // Mirror the revision on the deployment.
    let rev = revision(&new_rs).to_string();
    // (A new ReplicaSet's revision is written with the deployment's first status, below.)
    if !created && str_at(&d, &["metadata", "annotations", REVISION]) != Some(rev.as_str()) {
        let mut dd = d.clone();
        obj_mut(&mut dd, &["metadata", "annotations"]).insert(REVISION.into(), json!(rev));
        let _ = store.update(Kind::Deployment, ns, name, dd, WriteMode::Internal);
    }
    if created {
        return true;
    }
    let d = store.get(Kind::Deployment, ns, name).unwrap_or(d);
    let new_count = rs_replicas(&new_rs);
    if str_at(&d, &["spec", "strategy", "type"]) == Some("Recreate") {
        let old_running: i64 = old.iter().map(rs_replicas).sum();
        let old_pods: usize = old
            .iter()
            .map(|rs| owned(store, Kind::Pod, ns, &uid_of(rs)).len())
            .sum();
        if old_running > 0 {
            for rs in old.iter().filter(|rs| rs_replicas(rs) > 0) {
                scale_rs(store, rs, 0, &d);
            }
        } else if old_pods == 0 && new_count != replicas {
            scale_rs(store, &new_rs, replicas, &d);
        }
        return false;
    }
    // Rolling update: first the new ReplicaSet up, then the old ones down.
    let all_count: i64 = old.iter().map(rs_replicas).sum::<i64>() + new_count;
    if new_count > replicas {
        scale_rs(store, &new_rs, replicas, &d);
        return false;
    }
    if new_count < replicas {
        let max_total = replicas + surge;
        if all_count < max_total {
            let up = (max_total - all_count).min(replicas - new_count);
            scale_rs(store, &new_rs, new_count + up, &d);
            return false;
        }
    }
    let old_count: i64 = old.iter().map(rs_replicas).sum();
    if old_count > 0 {
        let min_available = replicas - unavailable;
        let new_unavailable = new_count - rs_available(&new_rs);
        let mut budget = all_count - min_available - new_unavailable;
        let mut scaled = false;
        if budget > 0 {
            let mut sorted = old.clone();
            sorted.sort_by_key(revision);
            // Unhealthy old replicas go first: they do not count towards availability.
            let mut current: Vec<i64> = sorted.iter().map(rs_replicas).collect();
            for (i, rs) in sorted.iter().enumerate() {
                if budget <= 0 {
                    break;
                }
                let unhealthy = current[i] - rs_available(rs);
                let n = unhealthy.min(budget).max(0);
                if n > 0 {
                    current[i] -= n;
                    budget -= n;
                    scaled = true;
                }
            }
            let available: i64 = all.iter().map(rs_available).sum();
            let mut down = available - min_available;
            for (i, _) in sorted.iter().enumerate() {
                if down <= 0 {
                    break;
                }
                let n = current[i].min(down);
                if n > 0 {
                    current[i] -= n;
                    down -= n;
                    scaled = true;
                }
            }
            if scaled {
                for (i, rs) in sorted.iter().enumerate() {
                    if current[i] != rs_replicas(rs) {
                        scale_rs(store, rs, current[i], &d);
                    }
                }
                return false;
            }
        }
        return false;
    }
    // Complete: trim history beyond revisionHistoryLimit.
    let limit = i64_at(&d, &["spec", "revisionHistoryLimit"])
        .unwrap_or(10)
        .max(0) as usize;
    let mut dead: Vec<&Value> = old
        .iter()
        .filter(|rs| rs_replicas(rs) == 0 && i64_at(rs, &["status", "replicas"]).unwrap_or(0) == 0)
        .collect();
    if dead.len() > limit {
        dead.sort_by_key(|rs| revision(rs));
        let n = dead.len() - limit;
        for rs in dead.into_iter().take(n) {
            let _ = store.delete(Kind::ReplicaSet, ns, &name_of(rs));
        }
    }
    false
}

/// Make one ReplicaSet's pods match its replicas and write its status.
fn sync_replica_set(store: &mut Store, ns: &str, name: &str) {
    let Ok(rs) = store.get(Kind::ReplicaSet, ns, name) else {
        return;
    };
    let uid = uid_of(&rs);
    let want = rs_replicas(&rs).max(0) as usize;
    let mut pods = owned(store, Kind::Pod, ns, &uid);
    if pods.len() < want {
        let template = at(&rs, &["spec", "template"]).cloned().unwrap_or(json!({}));
        for _ in pods.len()..want {
            let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
            obj_mut(&mut spec, &[]).insert("nodeName".into(), json!(NODE));
            let pod = json!({
                "metadata": {
                    "name": format!("{name}-{}", random_suffix(5)),
                    "generateName": format!("{name}-"),
                    "namespace": ns,
                    "labels": at(&template, &["metadata", "labels"]).cloned().unwrap_or(json!({})),
                    "annotations": at(&template, &["metadata", "annotations"]).cloned().unwrap_or(json!({})),
                    "ownerReferences": [{
                        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid,
                        "controller": true, "blockOwnerDeletion": true
                    }]
                },
                "spec": spec,
                "status": {
                    "phase": "Pending",
                    "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}]
                }
            });
            if let Ok(p) = store.create(Kind::Pod, ns, pod) {
                pods.push(p);
            }
        }
    } else if pods.len() > want {
        // Not-ready pods go first, then the newest.
        pods.sort_by_key(|p| {
            (
                is_ready(p),
                std::cmp::Reverse(
                    str_at(p, &["metadata", "creationTimestamp"])
                        .unwrap_or_default()
                        .to_string(),
                ),
            )
        });
        let extra = pods.len() - want;
        for p in pods.drain(..extra) {
            let _ = store.delete(Kind::Pod, ns, &name_of(&p));
        }
    }
    let ready = pods.iter().filter(|p| is_ready(p)).count();
    let selector = at(&rs, &["spec", "selector"]).map(LabelSelector::from_object);
    let labelled = pods
        .iter()
        .filter(|p| {
            selector.as_ref().is_some_and(|s| {
                s.matches(at(p, &["metadata", "labels"]).and_then(Value::as_object))
            })
        })
        .count();
    let status = json!({
        "replicas": pods.len(),
        "fullyLabeledReplicas": labelled,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": i64_at(&rs, &["metadata", "generation"]).unwrap_or(1),
    });
    if rs.get("status") == Some(&status) {
        return;
    }
    let mut r = rs;
    r["status"] = status;
    let _ = store.update(Kind::ReplicaSet, ns, name, r, WriteMode::Internal);
}

fn condition(ctype: &str, status: &str, reason: &str, message: &str, t: &str) -> Value {
    json!({
        "type": ctype, "status": status, "lastUpdateTime": t, "lastTransitionTime": t,
        "reason": reason, "message": message
    })
}

/// Keep `lastTransitionTime` unless the status flips; keep `lastUpdateTime` unless asked.
fn merge_condition(old: Option<&Value>, mut new: Value, touch: bool) -> Value {
    if let Some(o) = old {
        if o.get("status") == new.get("status") {
            new["lastTransitionTime"] = o["lastTransitionTime"].clone();
        }
        if !touch && o.get("status") == new.get("status") && o.get("reason") == new.get("reason") {
            new["lastUpdateTime"] = o["lastUpdateTime"].clone();
        }
    }
    new
}

/// Compute and write one deployment's status.
fn deployment_status(store: &mut Store, ns: &str, name: &str, just_created: bool, due: &mut Due) {
    let Ok(d) = store.get(Kind::Deployment, ns, name) else {
        return;
    };
    let uid = uid_of(&d);
    let want = i64_at(&d, &["spec", "replicas"]).unwrap_or(1);
    let all = owned(store, Kind::ReplicaSet, ns, &uid);
    let wanted = at(&d, &["spec", "template"]).map(template_without_hash);
    let new_rs = all
        .iter()
        .find(|rs| at(rs, &["spec", "template"]).map(template_without_hash) == wanted);
    let sum = |k: &str| -> i64 {
        all.iter()
            .map(|rs| i64_at(rs, &["status", k]).unwrap_or(0))
            .sum()
    };
    let replicas = sum("replicas");
    let ready = sum("readyReplicas");
    let available = sum("availableReplicas");
    let updated = new_rs.map_or(0, |rs| i64_at(rs, &["status", "replicas"]).unwrap_or(0));
    let generation = i64_at(&d, &["metadata", "generation"]).unwrap_or(1);
    let (_, max_unavailable) = surge_unavailable(&d, want);
    let paused = at(&d, &["spec", "paused"]).and_then(Value::as_bool) == Some(true);
    let old_status = d.get("status").cloned().unwrap_or(json!({}));
    let old_conds: Vec<Value> = old_status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let find = |t: &str| old_conds.iter().find(|c| str_at(c, &["type"]) == Some(t));
    let t = now();

    let available_cond = if available >= want - max_unavailable {
        condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &t,
        )
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &t,
        )
    };
    let available_cond = merge_condition(find("Available"), available_cond, false);

    let old_prog = find("Progressing");
    let old_reason = old_prog.and_then(|c| str_at(c, &["reason"])).unwrap_or("");
    let rs_name = new_rs.map(name_of).unwrap_or_default();
    if just_created && !paused {
        // As the real controller, which records the new ReplicaSet at once (a status write
        // with only this condition changed) and computes the rest on its next sync.
        let created = condition(
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{rs_name}\""),
            &t,
        );
        let mut conds: Vec<Value> = old_conds
            .iter()
            .filter(|c| str_at(c, &["type"]) != Some("Progressing"))
            .cloned()
            .collect();
        conds.push(merge_condition(old_prog, created, true));
        let mut dd = d.clone();
        obj_mut(&mut dd, &["status"]).insert("conditions".into(), json!(conds));
        if let Some(rs) = new_rs {
            obj_mut(&mut dd, &["metadata", "annotations"])
                .insert(REVISION.into(), json!(revision(rs).to_string()));
        }
        let _ = store.update(Kind::Deployment, ns, name, dd, WriteMode::Internal);
        return;
    }
    let old_i = |k: &str| i64_at(&old_status, &[k]).unwrap_or(0);
    let progressed = updated > old_i("updatedReplicas")
        || ready > old_i("readyReplicas")
        || available > old_i("availableReplicas")
        || (replicas - updated) < (old_i("replicas") - old_i("updatedReplicas"));
    let complete = new_rs.is_some() && updated == want && replicas == want && available == want;
    let deadline = i64_at(&d, &["spec", "progressDeadlineSeconds"]).unwrap_or(600);
    let mentions_rs = old_prog
        .and_then(|c| str_at(c, &["message"]))
        .is_some_and(|m| m.contains(&format!("\"{rs_name}\"")));
    let prog: Option<(Value, bool)> = if paused {
        Some((
            condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                &t,
            ),
            false,
        ))
    } else if old_reason == "DeploymentPaused" {
        Some((
            condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
                &t,
            ),
            true,
        ))
    } else if new_rs.is_none() {
        old_prog.cloned().map(|c| (c, false))
    } else if complete {
        let touch = old_reason != "NewReplicaSetAvailable" || !mentions_rs;
        Some((
            condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                &t,
            ),
            touch,
        ))
    } else if just_created {
        Some((
            condition(
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                &format!("Created new replica set \"{rs_name}\""),
                &t,
            ),
            true,
        ))
    } else if old_prog.is_none() {
        // As the real controller (`getNewReplicaSet`): "found" is recorded only when there is
        // no Progressing condition yet. In particular a `ProgressDeadlineExceeded` of an
        // earlier template stays, naming that template's ReplicaSet, until the current one
        // makes progress (a restore right after a failed rollout sees it).
        Some((
            condition(
                "Progressing",
                "True",
                "FoundNewReplicaSet",
                &format!("Found new replica set \"{rs_name}\""),
                &t,
            ),
            true,
        ))
    } else if progressed {
        Some((
            condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{rs_name}\" is progressing."),
                &t,
            ),
            true,
        ))
    } else if old_reason == "ProgressDeadlineExceeded" || old_reason == "NewReplicaSetAvailable" {
        // As the real `DeploymentTimedOut`: a deadline once exceeded stays exceeded, and after a
        // finished rollout there is no base to estimate progress from (a template that returns
        // to an existing ReplicaSet keeps "successfully progressed" until its pods move).
        old_prog.cloned().map(|c| (c, false))
    } else {
        let last = old_prog
            .and_then(|c| str_at(c, &["lastUpdateTime"]))
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|x| x.with_timezone(&Utc));
        match last {
            Some(last) if (Utc::now() - last).num_milliseconds() > deadline * 1000 => Some((
                condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    &t,
                ),
                true,
            )),
            Some(last) => {
                due.at(last + chrono::Duration::milliseconds(deadline * 1000 + 1));
                old_prog.cloned().map(|c| (c, false))
            }
            None => old_prog.cloned().map(|c| (c, false)),
        }
    };
    let mut conds = vec![available_cond];
    if let Some((p, touch)) = prog {
        conds.push(merge_condition(old_prog, p, touch));
    }
    let mut status = json!({
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": conds,
    });
    if want - available > 0 {
        status["unavailableReplicas"] = json!(want - available);
    }
    if d.get("status") == Some(&status) {
        return;
    }
    let mut dd = d;
    dd["status"] = status;
    let _ = store.update(Kind::Deployment, ns, name, dd, WriteMode::Internal);
}

/// Create the seed's objects and run the controllers until they settle.
/// The log lines the api's `FAKE_LOG` carries in seeded objects, for a real cluster's fake
/// kubelet: what the simulated api logs when its pod applies the migrations.
pub const API_FAKE_LOG: &str =
    "acquired migration lock\\nmigration 0041_{tag} applied\\nmigrations complete\\nlistening on :8080 ({tag})";

/// The objects of a seed (without the namespace), as a client would create them: per
/// deployment a Deployment and a Service selecting its pods; for blue-green both colours and
/// the Service on blue. `progress_deadline`: `progressDeadlineSeconds` of every Deployment.
pub fn seed_objects(seed: &Seed, progress_deadline: Option<i64>) -> Vec<(Kind, Value)> {
    let ns = &seed.namespace;
    let mut out = Vec::new();
    for c in &seed.components {
        let port = match c.name.as_str() {
            "gateway" => 41002,
            "console" => 3000,
            _ => 8080,
        };
        let deployment = |name: &str, labels: Value| {
            // As the seed's own manifests are written (issue 22: the hazards ktplay predicts are
            // absent): a readinessProbe, a preStop sleep past the endpoint lag, the default grace.
            let mut container = json!({
                "name": c.container,
                "image": format!("{}:{}", c.image, c.version),
                "ports": [{"containerPort": port}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 1},
                "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
            });
            let mut env: Vec<Value> = seed
                .pod_env
                .iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect();
            if c.name == "api" {
                env.push(json!({"name": "FAKE_LOG", "value": API_FAKE_LOG}));
            }
            if !env.is_empty() {
                container["env"] = json!(env);
            }
            let mut d = json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns, "labels": labels.clone()},
                "spec": {
                    "replicas": c.replicas,
                    "selector": {"matchLabels": labels.clone()},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"terminationGracePeriodSeconds": 30, "containers": [container]}
                    }
                }
            });
            if let Some(s) = progress_deadline {
                d["spec"]["progressDeadlineSeconds"] = json!(s);
            }
            d
        };
        let service = |name: &str, selector: Value| {
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
                "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": port}]}
            })
        };
        // A budget for every Deployment of 2 or more replicas: at most one pod down.
        let budget = |name: &str, labels: &Value| {
            json!({
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}
            })
        };
        let budgeted = c.replicas >= 2;
        match &c.workload {
            SeedWorkload::Deployments(names) => {
                for n in names {
                    let labels = json!({"app": n});
                    out.push((Kind::Deployment, deployment(n, labels.clone())));
                    if budgeted {
                        out.push((Kind::PodDisruptionBudget, budget(n, &labels)));
                    }
                    out.push((Kind::Service, service(n, labels)));
                }
            }
            SeedWorkload::BlueGreen {
                service: svc,
                selector,
                blue,
                green,
            } => {
                for (colour, n) in [("blue", blue), ("green", green)] {
                    let labels = json!({"app": svc, selector.as_str(): colour});
                    out.push((Kind::Deployment, deployment(n, labels.clone())));
                    if budgeted {
                        out.push((Kind::PodDisruptionBudget, budget(n, &labels)));
                    }
                }
                out.push((
                    Kind::Service,
                    service(svc, json!({"app": svc, selector.as_str(): "blue"})),
                ));
            }
        }
    }
    for r in &seed.routes {
        out.push(match r.kind {
            crate::SeedRouteKind::HttpRoute => (
                Kind::HttpRoute,
                json!({
                    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                    "metadata": {"name": r.name, "namespace": ns},
                    "spec": {"parentRefs": [{"name": "edge"}],
                             "rules": [{"backendRefs": [{"name": r.service, "port": 80}]}]}
                }),
            ),
            crate::SeedRouteKind::Ingress => (
                Kind::Ingress,
                json!({
                    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": r.name, "namespace": ns},
                    "spec": {"ingressClassName": "nginx",
                             "rules": [{"host": format!("{}.example.com", r.service), "http": {"paths": [
                                 {"path": "/", "pathType": "Prefix",
                                  "backend": {"service": {"name": r.service, "port": {"number": 80}}}}]}}]}
                }),
            ),
        });
    }
    out
}

/// Roles and service targets of a seed, without objects.
pub fn register(sim: &Sim, seed: &Seed) {
    {
        let mut roles = sim.inner.roles.write().unwrap_or_else(|e| e.into_inner());
        for c in &seed.components {
            if !roles.iter().any(|r| r.image == c.image) {
                roles.push(RoleInfo {
                    role: c.name.clone(),
                    image: c.image.clone(),
                    container: c.container.clone(),
                });
            }
        }
    }
    sim.inner
        .seeds
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push(seed.clone());
}

pub fn seed(sim: &Sim, seed: &Seed) {
    register(sim, seed);
    let ns = &seed.namespace;
    let deadline = sim
        .inner
        .progress_deadline
        .map(|d| d.as_secs_f64().ceil().max(1.0) as i64);
    {
        let mut store = lock(&sim.inner.store);
        let _ = store.create(Kind::Namespace, "", json!({"metadata": {"name": ns}}));
        let faults = sim.faults();
        for (kind, mut obj) in seed_objects(seed, deadline) {
            if kind == Kind::Deployment {
                let name = str_at(&obj, &["metadata", "name"])
                    .unwrap_or_default()
                    .to_string();
                if let Some(c) = seed.components.iter().find(|c| match &c.workload {
                    SeedWorkload::Deployments(d) => d.contains(&name),
                    SeedWorkload::BlueGreen { blue, green, .. } => *blue == name || *green == name,
                }) {
                    faults.edit_seeded(&c.name, &mut obj);
                }
            }
            let _ = store.create(kind, ns, obj);
        }
    }
    for _ in 0..64 {
        if !step(sim) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Event-driven: a settled cluster with nothing due takes no pass while simulated time runs
    /// (the idle tick took one a second: 600 in these ten minutes), and a write still gets its
    /// passes at once.
    #[tokio::test(start_paused = true)]
    async fn an_idle_controller_sleeps_until_something_happens() {
        use std::sync::atomic::Ordering::Relaxed;
        let sim = Sim::new(crate::SimConfig {
            pace: Duration::from_secs(1),
            ..crate::SimConfig::default()
        });
        sim.seed(&Seed::keeptrusts("ns", "1.4.0".parse().unwrap()));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let settled = sim.inner.passes.load(Relaxed);
        tokio::time::sleep(Duration::from_secs(600)).await;
        let idle = sim.inner.passes.load(Relaxed) - settled;
        assert!(idle <= 1, "{idle} passes in ten idle minutes");
        // A change is still seen: a new image rolls out, pace by pace.
        {
            let mut store = lock(&sim.inner.store);
            let mut d = store
                .get(Kind::Deployment, "ns", "keeptrusts-gateway")
                .unwrap();
            d["spec"]["template"]["spec"]["containers"][0]["image"] =
                json!("keeptrusts/gateway:1.5.0");
            store
                .update(
                    Kind::Deployment,
                    "ns",
                    "keeptrusts-gateway",
                    d,
                    WriteMode::Internal,
                )
                .unwrap();
        }
        sim.kick();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let store = lock(&sim.inner.store);
        let d = store
            .get(Kind::Deployment, "ns", "keeptrusts-gateway")
            .unwrap();
        assert_eq!(d["status"]["updatedReplicas"], d["spec"]["replicas"], "{d}");
        assert_eq!(
            d["status"]["availableReplicas"], d["spec"]["replicas"],
            "{d}"
        );
        assert!(sim.inner.passes.load(Relaxed) - settled > 3);
    }

    #[test]
    fn surge_and_unavailable_round_like_kubernetes() {
        let d = |s: Value, u: Value| json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": s, "maxUnavailable": u}}}});
        assert_eq!(surge_unavailable(&d(json!("25%"), json!("25%")), 3), (1, 0));
        assert_eq!(surge_unavailable(&d(json!(1), json!(1)), 3), (1, 1));
        assert_eq!(surge_unavailable(&d(json!(0), json!(0)), 3), (0, 1));
        assert_eq!(surge_unavailable(&d(json!("50%"), json!("50%")), 4), (2, 2));
        assert_eq!(
            surge_unavailable(&json!({"spec": {"strategy": {"type": "Recreate"}}}), 3),
            (0, 3)
        );
    }

    #[test]
    fn template_hash_ignores_key_order_and_hash_label() {
        let a =
            json!({"metadata": {"labels": {"app": "x", "tier": "y"}}, "spec": {"containers": []}});
        let b = json!({"spec": {"containers": []}, "metadata": {"labels": {"tier": "y", "app": "x", "pod-template-hash": "abc"}}});
        assert_eq!(template_without_hash(&a), template_without_hash(&b));
        assert_eq!(
            template_hash(&template_without_hash(&a), 0),
            template_hash(&template_without_hash(&b), 0)
        );
        assert_ne!(template_hash(&a, 0), template_hash(&a, 1));
    }
}
