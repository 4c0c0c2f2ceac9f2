//! The run lock: one Lease per playbook and namespace.
//!
//! Taken with create (409 AlreadyExists: held); a held lease whose `renewTime +
//! leaseDurationSeconds` has passed is taken over by replace carrying the read resourceVersion
//! (409 Conflict: another runner won the race). While the run goes on, a task renews it every
//! third of its duration. The lock id printed to people is `NAMESPACE/LEASE/RUN_ID`, which
//! `ktplay unlock --force` takes.
//!
//! A holder is gone only when the lease proves it: past its expiry, or not renewed (its
//! resourceVersion unchanged) for its whole duration while ktplay watched ([`observe`], what
//! `--resume` and `unlock --force` do). Never by a local pid check: a runner in another PID
//! namespace with the same hostname (a second container, a CI job on the same node) has a pid
//! this process cannot see.

use std::time::Duration;
use tokio::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams};
use serde_json::{json, Value};

use crate::run::kube::{retry, status_code, Cluster};
use crate::run::shown::shown;

pub(crate) use super::fence::{Fence, LEASE_SECONDS, RENEW_EVERY};

mod lease;
mod unlock;

pub(crate) use lease::lease_words;
use lease::{duration_of, expiry};
pub(crate) use unlock::{describe, force_unlock, holder_of, live, lock_id, read};

/// A held lock.
pub(crate) struct RunLock {
    cluster: Cluster,
    pub name: String,
    /// The leases of the objects the run changes.
    pub objects: Vec<String>,
    /// The resourceVersion of this run's write of each object's lease, when known: nobody
    /// renews those, so a delete conditional on it removes exactly what this run wrote.
    written: Vec<Option<String>>,
    pub run_id: String,
    pub holder: String,
    fence: Fence,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

/// Why the lock could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LockError {
    Held {
        /// As the lease names it (print it through [`shown`]).
        holder: String,
        lock_id: String,
        /// What ktplay observed of the lease (when it was renewed, when it expires).
        seen: String,
        /// The object whose lease is held (`None`: the playbook's own lease).
        object: Option<String>,
    },
    Api(String),
    /// `unlock --force` removed nothing: why, naming the lock.
    Kept(String),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held {
                holder,
                lock_id,
                seen,
                object: None,
            } => write!(
                f,
                "another run holds the lock: {} (lock id {}, {seen})",
                shown(holder),
                shown(lock_id)
            ),
            LockError::Held {
                holder,
                lock_id,
                seen,
                object: Some(o),
            } => write!(
                f,
                "another run would change {o}, and holds its lock: {} (lock id {}, {seen}); two runs must never change one object at once, whatever their playbooks are called",
                shown(holder),
                shown(lock_id)
            ),
            LockError::Api(m) | LockError::Kept(m) => write!(f, "{m}"),
        }
    }
}

/// The Lease name for a playbook: `ktplay-<name>`, as a DNS label.
pub(crate) fn lease_name(playbook: &str) -> String {
    let mut s: String = playbook
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s = s.trim_matches('-').to_string();
    let mut name = format!("ktplay-{s}");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// The Lease that guards one object the run changes (`deployment`/`service` and its name):
/// `ktplay-obj-<kind>-<name>`, as a DNS label (a hash keeps long names apart).
pub(crate) fn object_lease_name(kind: &str, name: &str) -> String {
    let short = match kind {
        "deployment" => "deploy",
        "service" => "svc",
        other => other,
    };
    let full = format!("ktplay-obj-{short}-{name}");
    if full.len() <= 63 {
        return full;
    }
    use sha2::Digest;
    let h = hex::encode(&sha2::Sha256::digest(full.as_bytes())[..4]);
    let mut cut = full[..54].trim_end_matches('-').to_string();
    cut.push('-');
    cut.push_str(&h);
    cut
}

/// The objects a playbook changes, as `(lease name, words)`: every deployment of every component
/// (both colours of a blue-green one; a canary is a deployment's own) and every blue-green
/// Service. Sorted, so two runs take them in the same order.
pub(crate) fn objects_of(pb: &crate::program::Playbook) -> Vec<(String, String)> {
    use crate::program::Workload;
    let mut out = std::collections::BTreeMap::new();
    for c in pb.components.iter().filter(|c| c.hosted_by.is_none()) {
        for d in c.deployments() {
            out.insert(
                object_lease_name("deployment", d),
                format!("deployment `{d}`"),
            );
        }
        if let Workload::BlueGreen(bg) = &c.workload {
            out.insert(
                object_lease_name("service", &bg.service),
                format!("Service `{}`", bg.service),
            );
        }
    }
    out.into_iter().collect()
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn micro(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `who@host pid N run RUN`.
pub(crate) fn holder_identity(run_id: &str) -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "ktplay".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host} pid {} run {run_id}", std::process::id())
}

/// The run id in a holder identity.
pub(crate) fn run_of(holder: &str) -> Option<&str> {
    holder.rsplit_once(" run ").map(|(_, r)| r.trim())
}

pub(super) fn lease_json(
    name: &str,
    holder: &str,
    rv: Option<&str>,
    acquired: Option<&str>,
) -> Value {
    let t = micro(now());
    let mut v = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "ktplay"}},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": LEASE_SECONDS,
            "acquireTime": acquired.unwrap_or(&t),
            "renewTime": t,
        }
    });
    if let Some(rv) = rv {
        v["metadata"]["resourceVersion"] = json!(rv);
    }
    v
}

/// An object's lease: held for as long as the run lock named in its [`RUN_LOCK`] annotation is
/// held by the same holder, so only the run lock is renewed (one renewal for the run, whatever
/// the number of objects: issue 23). Its own `leaseDurationSeconds` is long
/// ([`OBJECT_LEASE_SECONDS`]): a ktplay from before this design, which judges the lease by its
/// own renewal, sees it held instead of expired.
pub(super) fn object_lease_json(
    name: &str,
    holder: &str,
    run_lock: &str,
    rv: Option<&str>,
) -> Value {
    let mut v = lease_json(name, holder, rv, None);
    v["metadata"]["annotations"] = json!({ RUN_LOCK: run_lock });
    v["spec"]["leaseDurationSeconds"] = json!(OBJECT_LEASE_SECONDS);
    v
}

/// The annotation of an object's lease naming the run lock (a Lease of the same namespace) that
/// proves its holder alive.
pub(crate) const RUN_LOCK: &str = "ktplay.dev/run-lock";
/// `leaseDurationSeconds` of an object's lease (see [`object_lease_json`]).
pub(crate) const OBJECT_LEASE_SECONDS: i64 = 3600;

/// What an object's lease (held by someone else) says of its holder through its run lock.
enum Through {
    /// The run lock is held by the same holder and not past its expiry (the run lock as read).
    Live(String, Value),
    /// The holder is proven gone: its run lock is missing, held by someone else, or expired
    /// (why, and the run lock as read when it was only expired).
    Gone(String, Option<Value>),
}

/// The run lock an object's lease names, if it names a plausible one (hostile values are not
/// followed: the lease is then judged by its own times).
fn run_lock_name(l: &Value) -> Option<&str> {
    let n = l["metadata"]["annotations"][RUN_LOCK].as_str()?;
    let plain = n.len() <= 63
        && n.starts_with("ktplay-")
        && !n.starts_with("ktplay-obj-")
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    plain.then_some(n)
}

/// Judge an object's lease through the run lock it names (`None`: it names none).
async fn through(api: &Api<Lease>, l: &Value) -> Result<Option<Through>, LockError> {
    let Some(run) = run_lock_name(l) else {
        return Ok(None);
    };
    let holder = holder_of(l);
    let lock = retry(|| async { api.get_opt(run).await })
        .await
        .map_err(api_err)?
        .map(|x| serde_json::to_value(x).unwrap_or(Value::Null));
    Ok(Some(match lock {
        None => Through::Gone(format!("its run lock {run} is gone"), None),
        Some(lock) if holder_of(&lock) != holder => Through::Gone(
            format!(
                "its run lock {run} is held by {} now",
                shown(holder_of(&lock))
            ),
            None,
        ),
        Some(lock) if expiry(&lock).is_some_and(|e| e < now()) => {
            Through::Gone(format!("its run lock {run} expired"), Some(lock))
        }
        Some(lock) => Through::Live(run.to_string(), lock),
    }))
}

pub(super) fn leases(c: &Cluster) -> Api<Lease> {
    Api::namespaced(c.client.clone(), &c.ns)
}

fn api_err(e: kube::Error) -> LockError {
    LockError::Api(format!("run lock: {}", crate::run::kube::words(&e)))
}

/// The longest lease ktplay watches to prove its holder gone: a lease that lasts longer was not
/// written by ktplay, and waiting for it is a person's decision.
pub(crate) const WATCH_AT_MOST: i64 = 60;

/// How a lease held by someone else behaved while ktplay watched it.
enum Watched {
    /// Its resourceVersion (or holder) changed: the holder renews it, or someone took it.
    Renewed { lease: Value, after: Duration },
    /// It was deleted meanwhile.
    Deleted,
    /// Unchanged for its whole duration: its holder renews it no more (the lease as read).
    Stale(Value),
}

/// Watch a lease held by someone else for its whole duration plus a second, by this process's
/// monotonic clock: a holder that still acts renews it (every third of its duration for
/// ktplay), which changes its resourceVersion; one that did not renew it for that long is gone
/// whatever its pid and host say.
async fn watch(api: &Api<Lease>, name: &str, cur: &Value) -> Result<Watched, LockError> {
    let rv = cur["metadata"]["resourceVersion"].clone();
    let secs = duration_of(cur).clamp(1, WATCH_AT_MOST) as u64;
    let t0 = Instant::now();
    let until = Duration::from_secs(secs + 1);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let seen = match retry(|| async { api.get_opt(name).await })
            .await
            .map_err(api_err)?
        {
            None => return Ok(Watched::Deleted),
            Some(l) => serde_json::to_value(l).unwrap_or(Value::Null),
        };
        if seen["metadata"]["resourceVersion"] != rv {
            return Ok(Watched::Renewed {
                lease: seen,
                after: t0.elapsed(),
            });
        }
        // Past its expiry meanwhile: proven by the lease's own times as well.
        if t0.elapsed() >= until || expiry(&seen).is_some_and(|e| e < now()) {
            return Ok(Watched::Stale(seen));
        }
    }
}

/// May ktplay watch this lease to prove its holder gone?
fn watchable(l: &Value) -> bool {
    (1..=WATCH_AT_MOST).contains(&duration_of(l))
}

fn held(cluster: &Cluster, name: &str, l: &Value, object: Option<&str>, seen: String) -> LockError {
    let holder = l["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    LockError::Held {
        lock_id: format!("{}/{}/{}", cluster.ns, name, run_of(&holder).unwrap_or("?")),
        holder,
        seen,
        object: object.map(String::from),
    }
}

/// Take one lease for `holder`: create it, or take over one the lease itself shows abandoned —
/// past its expiry, held by a holder already proven gone (`gone`), or, with `wait`, not renewed
/// while ktplay watched it for its whole duration ([`watch`]) — by replace carrying the read
/// resourceVersion. A lease someone still renews is never taken. Returns the instant before the
/// write that took it (the lease's renewTime is no older).
async fn take(
    cluster: &Cluster,
    name: &str,
    holder: &str,
    object: Option<(&str, &str)>,
    wait: bool,
    gone: &mut std::collections::BTreeSet<String>,
    written: &mut Option<String>,
) -> Result<Instant, LockError> {
    let api = leases(cluster);
    let body = |rv: Option<&str>| match object {
        Some((_, run)) => object_lease_json(name, holder, run, rv),
        None => lease_json(name, holder, rv, None),
    };
    let lease: Lease =
        serde_json::from_value(body(None)).map_err(|e| LockError::Api(e.to_string()))?;
    let words = object.map(|(w, _)| w);
    // The run lock an object's lease was taken through because it had expired (see below).
    let mut expired_lock: Option<Value> = None;
    // Twice at most: a lease deleted while it was watched is created again once.
    let mut attempts = 0;
    let current = loop {
        attempts += 1;
        let before = Instant::now();
        match retry(|| async { api.create(&crate::run::kube::post_params(), &lease).await }).await {
            Ok(l) => {
                *written = l.metadata.resource_version;
                return Ok(before);
            }
            Err(e) if status_code(&e) == Some(409) => {}
            Err(e) => return Err(api_err(e)),
        }
        let Some(cur) = retry(|| async { api.get_opt(name).await })
            .await
            .map_err(api_err)?
        else {
            if attempts < 3 {
                continue;
            }
            return Err(LockError::Api(format!(
                "run lock: the lease {}/{name} keeps appearing and disappearing",
                cluster.ns
            )));
        };
        let cur = serde_json::to_value(cur).unwrap_or(Value::Null);
        let theirs = cur["spec"]["holderIdentity"].as_str().unwrap_or_default();
        if theirs == holder {
            // Ours already (a create whose answer was lost, retried).
            *written = cur["metadata"]["resourceVersion"]
                .as_str()
                .map(String::from);
            return Ok(before);
        }
        // An object's lease is judged through its run lock (an older one by its own times).
        let through = match object {
            Some(_) if !theirs.is_empty() => through(&api, &cur).await?,
            _ => None,
        };
        // A lease whose expiry cannot be read proves nothing: it is held.
        let expired = theirs.is_empty()
            || match &through {
                Some(Through::Gone(_, lock)) => {
                    expired_lock = lock.clone();
                    true
                }
                Some(Through::Live(..)) => false,
                None => expiry(&cur).is_some_and(|e| e < now()),
            };
        if expired || gone.contains(theirs) {
            break cur;
        }
        if !wait || !watchable(&cur) || through.is_some() {
            let seen = match &through {
                Some(Through::Live(run, lock)) => {
                    format!("through its run lock {run}: {}", lease_words(lock))
                }
                _ => lease_words(&cur),
            };
            return Err(held(cluster, name, &cur, words, seen));
        }
        eprintln!(
            "the lock {}/{name} is held by {} ({}): watching it for {} s to see whether its holder still renews it",
            cluster.ns,
            shown(theirs),
            lease_words(&cur),
            duration_of(&cur) + 1
        );
        match watch(&api, name, &cur).await? {
            Watched::Renewed { lease: l, after } => {
                let seen = if l["spec"]["holderIdentity"] == cur["spec"]["holderIdentity"] {
                    format!(
                        "it renewed the lease {} s into ktplay's watch: its run is alive",
                        after.as_secs()
                    )
                } else {
                    "another runner took the lease while ktplay watched".to_string()
                };
                return Err(held(cluster, name, &l, words, seen));
            }
            Watched::Deleted if attempts < 3 => continue,
            Watched::Deleted => {
                return Err(LockError::Api(format!(
                    "run lock: the lease {}/{name} keeps appearing and disappearing",
                    cluster.ns
                )))
            }
            Watched::Stale(l) => {
                gone.insert(theirs.to_string());
                break l;
            }
        }
    };
    let rv = current["metadata"]["resourceVersion"].as_str();
    let lease: Lease =
        serde_json::from_value(body(rv)).map_err(|e| LockError::Api(e.to_string()))?;
    let before = Instant::now();
    match retry(|| async {
        api.replace(name, &crate::run::kube::post_params(), &lease)
            .await
    })
    .await
    {
        Ok(mine) => {
            *written = mine.metadata.resource_version.clone();
            match expired_lock {
                Some(lock) => {
                    give_back_if_renewed(cluster, name, &current, &lock, mine, words).await
                }
                None => Ok(()),
            }
            .map(|()| before)
        }
        Err(e) if status_code(&e) == Some(409) => {
            // A retried replace finds its own earlier write (ours), or another runner won.
            match retry(|| async { api.get_opt(name).await }).await {
                Ok(Some(l))
                    if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                        == Some(holder) =>
                {
                    Ok(before)
                }
                Ok(Some(l)) => {
                    let l = serde_json::to_value(l).unwrap_or(Value::Null);
                    Err(held(
                        cluster,
                        name,
                        &l,
                        words,
                        "another runner took it a moment ago".into(),
                    ))
                }
                Ok(None) => Err(LockError::Api(format!(
                    "run lock: the lease {}/{name} was deleted while ktplay took it over",
                    cluster.ns
                ))),
                Err(e) => Err(api_err(e)),
            }
        }
        Err(e) => Err(api_err(e)),
    }
}

/// An object's lease was just taken over because its run lock had expired; but its holder may
/// have woken and renewed that run lock between ktplay's read of it and the takeover — the
/// holder does not renew the object's lease itself, so the takeover's resourceVersion could
/// not catch that. Read the run lock again: renewed since (same holder, another
/// resourceVersion), the object's lease is put back as it was and the object is refused as
/// held. A holder that renews after this read finds the object's lease taken at its next
/// renewal (`Fence::renew` checks every object's lease) and stops before it writes.
async fn give_back_if_renewed(
    cluster: &Cluster,
    name: &str,
    was: &Value,
    lock: &Value,
    mine: Lease,
    words: Option<&str>,
) -> Result<(), LockError> {
    let api = leases(cluster);
    let Some(run) = run_lock_name(was) else {
        return Ok(());
    };
    let now_lock = retry(|| async { api.get_opt(run).await })
        .await
        .map_err(api_err)?
        .map(|x| serde_json::to_value(x).unwrap_or(Value::Null));
    let renewed = now_lock.as_ref().is_some_and(|l| {
        holder_of(l) == holder_of(was)
            && l["metadata"]["resourceVersion"] != lock["metadata"]["resourceVersion"]
    });
    if !renewed {
        return Ok(());
    }
    let mut back = was.clone();
    back["metadata"]["resourceVersion"] = json!(mine.metadata.resource_version);
    if let Some(m) = back["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    if let Ok(back) = serde_json::from_value::<Lease>(back) {
        let _ = retry(|| async {
            api.replace(name, &crate::run::kube::post_params(), &back)
                .await
        })
        .await;
    }
    let lock = now_lock.unwrap_or(Value::Null);
    Err(held(
        cluster,
        name,
        was,
        words,
        format!(
            "its run renewed its run lock {run} while ktplay took this one over: {}",
            lease_words(&lock)
        ),
    ))
}

/// Delete an object's lease as this run wrote it (one request, issue 23): conditional on the
/// resourceVersion of that write, so a lease someone took over since (or changed) is not
/// deleted; if it changed, it is read and deleted only if still ours ([`release_one`]).
async fn release_written(cluster: &Cluster, name: &str, rv: &str, holder: &str) {
    let api = leases(cluster);
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: None,
            resource_version: Some(rv.to_string()),
        }),
        ..Default::default()
    };
    match retry(|| async { api.delete(name, &dp).await }).await {
        Ok(_) => {}
        Err(e) if status_code(&e) == Some(404) => {}
        Err(e) if status_code(&e) == Some(409) => release_one(cluster, name, holder).await,
        Err(e) => eprintln!(
            "warning: could not release the run lock {}/{name}: {}",
            cluster.ns,
            crate::run::kube::words(&e)
        ),
    }
}

/// Delete one lease if `holder` still holds it (never someone else's).
async fn release_one(cluster: &Cluster, name: &str, holder: &str) {
    let api = leases(cluster);
    match retry(|| async { api.get_opt(name).await }).await {
        Ok(Some(cur))
            if cur.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(holder) =>
        {
            let dp = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: cur.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = retry(|| async { api.delete(name, &dp).await }).await {
                if status_code(&e) != Some(404) {
                    eprintln!(
                        "warning: could not release the run lock {}/{name}: {}",
                        cluster.ns,
                        crate::run::kube::words(&e)
                    );
                }
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!(
            "warning: could not release the run lock {}/{name}: {}",
            cluster.ns,
            crate::run::kube::words(&e)
        ),
    }
}

impl RunLock {
    /// Take the lock: the playbook's lease, then one lease per object the run changes
    /// ([`objects_of`]), all or nothing. The objects' leases are held through the playbook's
    /// ([`object_lease_json`]): only that one is renewed. Leases past their expiry are taken over; with `wait`
    /// (`--resume`), the playbook's lease is watched for its whole duration and taken over if
    /// nobody renewed it, and so are the object leases of the same holder. A lease someone
    /// renews is never taken, whatever its pid and host say.
    pub(crate) async fn acquire(
        cluster: &Cluster,
        playbook: &str,
        run_id: &str,
        objects: &[(String, String)],
        wait: bool,
    ) -> Result<RunLock, LockError> {
        let name = lease_name(playbook);
        let holder = holder_identity(run_id);
        let mut gone = std::collections::BTreeSet::new();
        // The fence counts from the playbook lease's write (not from a watch before it).
        let began = take(cluster, &name, &holder, None, wait, &mut gone, &mut None).await?;
        let mut names = vec![name.clone()];
        let mut written = Vec::new();
        for (lease, words) in objects {
            let object = Some((words.as_str(), name.as_str()));
            let mut rv = None;
            if let Err(e) = take(cluster, lease, &holder, object, false, &mut gone, &mut rv).await {
                for n in names.iter().rev() {
                    release_one(cluster, n, &holder).await;
                }
                return Err(e);
            }
            names.push(lease.clone());
            written.push(rv);
        }
        let mut lock = Self::held(cluster, names, run_id, holder, began);
        lock.written = written;
        Ok(lock)
    }

    /// `began`: before the playbook lease was written (the fence counts its freshness from
    /// there).
    fn held(
        cluster: &Cluster,
        names: Vec<String>,
        run_id: &str,
        holder: String,
        began: Instant,
    ) -> RunLock {
        let fence = Fence::new(cluster, &names, &holder, began);
        let name = names[0].clone();
        let f = fence.clone();
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                if let Err(why) = f.renew().await {
                    if f.lost().is_some() {
                        eprintln!("\nthe run lock was lost: {why}; this run changes nothing more");
                        return;
                    }
                }
            }
        });
        RunLock {
            cluster: cluster.clone(),
            name,
            objects: names[1..].to_vec(),
            written: Vec::new(),
            run_id: run_id.to_string(),
            holder,
            fence,
            renewer: Some(renewer),
        }
    }

    /// The proof of holding, for every write of the run.
    pub(crate) fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// `NAMESPACE/LEASE/RUN_ID`.
    pub(crate) fn id(&self) -> String {
        format!("{}/{}/{}", self.cluster.ns, self.name, self.run_id)
    }

    /// Stop renewing and delete the lease (if it is still ours).
    pub(crate) async fn release(mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        // Objects first, the playbook's lease last: a run waiting on the playbook lease finds
        // the objects free once it gets it. Only leases still ours are removed.
        // A lock lost is released only where it is still ours, read first: no blind write.
        let lost = self.fence.lost().is_some();
        for (i, n) in self.objects.iter().enumerate().rev() {
            match self.written.get(i).filter(|_| !lost) {
                Some(Some(rv)) => release_written(&self.cluster, n, rv, &self.holder).await,
                _ => release_one(&self.cluster, n, &self.holder).await,
            }
        }
        release_one(&self.cluster, &self.name, &self.holder).await;
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}

#[cfg(test)]
#[path = "lock_tests.rs"]
mod tests;
