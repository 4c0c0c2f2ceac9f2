//! The run lock: one Lease per playbook and namespace.
//!
//! Taken with create (409 AlreadyExists: held); a held lease whose `renewTime +
//! leaseDurationSeconds` has passed is taken over by replace carrying the read resourceVersion
//! (409 Conflict: another runner won the race). While the run goes on, a task renews it every
//! third of its duration. The lock id printed to people is `NAMESPACE/LEASE/RUN_ID`, which
//! `ktplay unlock --force` takes.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams};
use serde_json::{json, Value};

use super::cluster::{retry, status_code, Cluster};

/// How long a lease lasts without renewal.
pub const LEASE_SECONDS: i64 = 15;
/// How often the lease is renewed: a third of its duration.
pub const RENEW_EVERY: Duration = Duration::from_secs(LEASE_SECONDS as u64 / 3);
/// A write needs a renewal younger than this (two thirds of the lease), else the lease is
/// renewed first — or the run stops. A process the OS paused (SIGSTOP, a frozen VM, a long GC)
/// wakes up with an old renewal and must prove it still holds the lock before it acts; the
/// monotonic clock keeps counting while it is paused.
pub const FRESH_FOR: Duration = Duration::from_secs(LEASE_SECONDS as u64 * 2 / 3);

/// Proof that this process holds the run lock, checked before every write ([`Fence::ensure`]).
/// Lost once, lost for good: another runner may own the system now.
#[derive(Clone)]
pub struct Fence {
    inner: Arc<FenceInner>,
}

struct FenceInner {
    cluster: Cluster,
    /// The playbook's lease first, then the objects'.
    names: Vec<String>,
    holder: String,
    lost: Mutex<Option<String>>,
    renewed: Mutex<Instant>,
    /// One renewal at a time (the renewer and a write may both want one).
    renewing: tokio::sync::Mutex<()>,
}

impl Fence {
    fn new(cluster: &Cluster, names: &[String], holder: &str) -> Fence {
        Fence {
            inner: Arc::new(FenceInner {
                cluster: Cluster::new(cluster.client.clone(), cluster.ns.clone()),
                names: names.to_vec(),
                holder: holder.to_string(),
                lost: Mutex::new(None),
                renewed: Mutex::new(Instant::now()),
                renewing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Why the lock was lost, if it was.
    pub fn lost(&self) -> Option<String> {
        self.inner
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lose(&self, why: String) -> String {
        let mut g = self.inner.lost.lock().unwrap_or_else(|e| e.into_inner());
        g.get_or_insert(why).clone()
    }

    fn since_renewal(&self) -> Duration {
        self.inner
            .renewed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    /// Ok if this process may write now: the lock is not lost and was renewed recently (or is
    /// renewed now).
    pub async fn ensure(&self) -> Result<(), String> {
        if let Some(why) = self.lost() {
            return Err(why);
        }
        if self.since_renewal() < FRESH_FOR {
            return Ok(());
        }
        self.renew().await
    }

    /// Renew the lease, carrying the resourceVersion read: a lease that is gone, held by
    /// someone else, or changed between the read and the write is lost; one that cannot be
    /// renewed for longer than its duration is lost too.
    pub async fn renew(&self) -> Result<(), String> {
        let _one = self.inner.renewing.lock().await;
        if let Some(why) = self.lost() {
            return Err(why);
        }
        for name in &self.inner.names {
            self.renew_one(name).await?;
        }
        *self.inner.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Ok(())
    }

    async fn renew_one(&self, name: &str) -> Result<(), String> {
        let api = leases(&self.inner.cluster);
        let cur = match retry(|| async { api.get_opt(name).await }).await {
            Ok(Some(l)) => serde_json::to_value(l).unwrap_or(Value::Null),
            Ok(None) => return Err(self.lose(format!("the lease {name} was deleted"))),
            Err(e) => return self.unrenewed(name, &super::cluster::words(&e)),
        };
        let holder = cur["spec"]["holderIdentity"].as_str().unwrap_or_default();
        if holder != self.inner.holder {
            return Err(self.lose(format!("the lease {name} is now held by {holder}")));
        }
        let rv = cur["metadata"]["resourceVersion"].as_str();
        let acquired = cur["spec"]["acquireTime"].as_str();
        let Ok(lease) =
            serde_json::from_value::<Lease>(lease_json(name, &self.inner.holder, rv, acquired))
        else {
            return self.unrenewed(name, "cannot build the lease");
        };
        match api
            .replace(name, &super::cluster::post_params(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => Err(self.lose(format!(
                "the lease {name} changed between its read and its renewal (taken over?)"
            ))),
            Err(e) if status_code(&e) == Some(404) => {
                Err(self.lose(format!("the lease {name} was deleted")))
            }
            Err(e) => self.unrenewed(name, &super::cluster::words(&e)),
        }
    }

    /// A renewal that failed for a passing reason: fine while the lease has time left.
    fn unrenewed(&self, name: &str, why: &str) -> Result<(), String> {
        let since = self.since_renewal();
        if since >= Duration::from_secs(LEASE_SECONDS as u64) {
            Err(self.lose(format!(
                "the lease {name} could not be renewed for {}s, longer than it lasts: {why}",
                since.as_secs()
            )))
        } else if since >= FRESH_FOR {
            Err(format!(
                "the run lock could not be renewed (for {}s): {why}",
                since.as_secs()
            ))
        } else {
            Ok(())
        }
    }
}

/// A held lock.
pub struct RunLock {
    cluster: Cluster,
    pub name: String,
    /// The leases of the objects the run changes.
    pub objects: Vec<String>,
    pub run_id: String,
    pub holder: String,
    fence: Fence,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

/// Why the lock could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    Held {
        holder: String,
        lock_id: String,
        expires: String,
        /// The object whose lease is held (`None`: the playbook's own lease).
        object: Option<String>,
    },
    Api(String),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held {
                holder,
                lock_id,
                expires,
                object: None,
            } => write!(
                f,
                "another run holds the lock: {holder} (lock id {lock_id}, expires {expires} unless renewed)"
            ),
            LockError::Held {
                holder,
                lock_id,
                expires,
                object: Some(o),
            } => write!(
                f,
                "another run would change {o}, and holds its lock: {holder} (lock id {lock_id}, expires {expires} unless renewed); two runs must never change one object at once, whatever their playbooks are called"
            ),
            LockError::Api(m) => write!(f, "{m}"),
        }
    }
}

/// The Lease name for a playbook: `ktplay-<name>`, as a DNS label.
pub fn lease_name(playbook: &str) -> String {
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
pub fn object_lease_name(kind: &str, name: &str) -> String {
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
pub fn objects_of(pb: &crate::check::program::Playbook) -> Vec<(String, String)> {
    use crate::check::program::Workload;
    let mut out = std::collections::BTreeMap::new();
    for c in &pb.components {
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
pub fn holder_identity(run_id: &str) -> String {
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
pub fn run_of(holder: &str) -> Option<&str> {
    holder.rsplit_once(" run ").map(|(_, r)| r.trim())
}

/// Is the holder a process on this host that no longer exists?
pub fn holder_gone(holder: &str) -> bool {
    // `user@host pid N run R`: the same host and no such process.
    let mine = holder_identity("x");
    let host_of = |h: &str| h.split(" pid ").next().map(str::to_string);
    if host_of(holder) != host_of(&mine) {
        return false;
    }
    let pid = holder
        .split(" pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse::<u32>().ok());
    match pid {
        Some(p) if p != std::process::id() => !std::path::Path::new(&format!("/proc/{p}")).exists(),
        _ => false,
    }
}

fn lease_json(name: &str, holder: &str, rv: Option<&str>, acquired: Option<&str>) -> Value {
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

fn expiry(l: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let renew = l["spec"]["renewTime"]
        .as_str()
        .or(l["spec"]["acquireTime"].as_str())?;
    let t = chrono::DateTime::parse_from_rfc3339(renew).ok()?;
    let secs = l["spec"]["leaseDurationSeconds"]
        .as_i64()
        .unwrap_or(LEASE_SECONDS);
    Some(t.with_timezone(&chrono::Utc) + chrono::Duration::seconds(secs))
}

fn leases(c: &Cluster) -> Api<Lease> {
    Api::namespaced(c.client.clone(), &c.ns)
}

fn api_err(e: kube::Error) -> LockError {
    LockError::Api(format!("run lock: {}", super::cluster::words(&e)))
}

/// Take one lease for `holder`: create it, or take over one that expired or whose holder is
/// gone, by replace carrying the read resourceVersion.
async fn take(
    cluster: &Cluster,
    name: &str,
    holder: &str,
    object: Option<&str>,
) -> Result<(), LockError> {
    let api = leases(cluster);
    let lease: Lease = serde_json::from_value(lease_json(name, holder, None, None))
        .map_err(|e| LockError::Api(e.to_string()))?;
    match retry(|| async { api.create(&super::cluster::post_params(), &lease).await }).await {
        Ok(_) => return Ok(()),
        Err(e) if status_code(&e) == Some(409) => {}
        Err(e) => return Err(api_err(e)),
    }
    let current = serde_json::to_value(
        retry(|| async { api.get(name).await })
            .await
            .map_err(api_err)?,
    )
    .unwrap_or(Value::Null);
    let their_holder = current["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if their_holder == holder {
        // Ours already (a create whose answer was lost, retried).
        return Ok(());
    }
    let exp = expiry(&current);
    let expired = exp.is_none_or(|e| e < now()) || their_holder.is_empty();
    // A holder that is provably gone (this host, no such process) can act no more: its lease
    // is taken over at once, whether or not this run resumes it (a run it left unfinished is
    // refused afterwards by the journal, with the `--resume` that gets out of it).
    if !expired && !holder_gone(&their_holder) {
        return Err(LockError::Held {
            lock_id: format!(
                "{}/{}/{}",
                cluster.ns,
                name,
                run_of(&their_holder).unwrap_or("?")
            ),
            holder: their_holder,
            expires: exp.map(micro).unwrap_or_else(|| "?".into()),
            object: object.map(String::from),
        });
    }
    let rv = current["metadata"]["resourceVersion"].as_str();
    let lease: Lease = serde_json::from_value(lease_json(name, holder, rv, None))
        .map_err(|e| LockError::Api(e.to_string()))?;
    match api
        .replace(name, &super::cluster::post_params(), &lease)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if status_code(&e) == Some(409) => Err(LockError::Held {
            holder: "another runner that took it a moment ago".into(),
            lock_id: format!("{}/{name}/?", cluster.ns),
            expires: "?".into(),
            object: object.map(String::from),
        }),
        Err(e) => Err(api_err(e)),
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
                        super::cluster::words(&e)
                    );
                }
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!(
            "warning: could not release the run lock {}/{name}: {}",
            cluster.ns,
            super::cluster::words(&e)
        ),
    }
}

impl RunLock {
    /// Take the lock: the playbook's lease, then one lease per object the run changes
    /// ([`objects_of`]), all or nothing. Leases that expired, or whose holder is provably gone
    /// (this host, no such process), are taken over; a run that process left unfinished is
    /// refused afterwards by its journal.
    pub async fn acquire(
        cluster: &Cluster,
        playbook: &str,
        run_id: &str,
        objects: &[(String, String)],
    ) -> Result<RunLock, LockError> {
        let name = lease_name(playbook);
        let holder = holder_identity(run_id);
        take(cluster, &name, &holder, None).await?;
        let mut names = vec![name.clone()];
        for (lease, words) in objects {
            if let Err(e) = take(cluster, lease, &holder, Some(words)).await {
                for n in names.iter().rev() {
                    release_one(cluster, n, &holder).await;
                }
                return Err(e);
            }
            names.push(lease.clone());
        }
        Ok(Self::held(cluster, names, run_id, holder))
    }

    fn held(cluster: &Cluster, names: Vec<String>, run_id: &str, holder: String) -> RunLock {
        let fence = Fence::new(cluster, &names, &holder);
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
            run_id: run_id.to_string(),
            holder,
            fence,
            renewer: Some(renewer),
        }
    }

    /// The proof of holding, for every write of the run.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// `NAMESPACE/LEASE/RUN_ID`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.cluster.ns, self.name, self.run_id)
    }

    /// Stop renewing and delete the lease (if it is still ours).
    pub async fn release(mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        // Objects first, the playbook's lease last: a run waiting on the playbook lease finds
        // the objects free once it gets it. Only leases still ours are removed.
        for n in self.objects.iter().rev() {
            release_one(&self.cluster, n, &self.holder).await;
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

/// What `status` shows of the lock.
pub async fn describe(cluster: &Cluster, playbook: &str) -> Result<Option<String>, String> {
    let name = lease_name(playbook);
    match leases(cluster).get_opt(&name).await {
        Ok(None) => Ok(None),
        Ok(Some(l)) => {
            let v = serde_json::to_value(l).unwrap_or(Value::Null);
            let holder = v["spec"]["holderIdentity"].as_str().unwrap_or("?");
            let exp = expiry(&v);
            let state = match exp {
                Some(e) if e < now() => format!("expired at {}", micro(e)),
                Some(e) => format!("expires {} unless renewed", micro(e)),
                None => "no expiry".into(),
            };
            Ok(Some(format!(
                "held by {holder} (lock id {}/{name}/{}), {state}",
                cluster.ns,
                run_of(holder).unwrap_or("?")
            )))
        }
        Err(e) => Err(format!("run lock: {}", super::cluster::words(&e))),
    }
}

/// `ktplay unlock --force NAMESPACE/LEASE/RUN_ID`: delete the lease if it still belongs to that
/// run. `cluster` must be in the lock id's namespace.
pub async fn force_unlock(cluster: &Cluster, lease: &str, run_id: &str) -> Result<String, String> {
    let api = leases(cluster);
    let cur = match api.get_opt(lease).await {
        Ok(Some(l)) => serde_json::to_value(l).unwrap_or(Value::Null),
        Ok(None) => return Err(format!("no lock `{lease}` in namespace `{}`", cluster.ns)),
        Err(e) => return Err(format!("run lock: {}", super::cluster::words(&e))),
    };
    let holder = cur["spec"]["holderIdentity"].as_str().unwrap_or_default();
    if run_of(holder) != Some(run_id) && run_id != "?" {
        return Err(format!(
            "lock `{lease}` is now held by {holder}, not run {run_id}; nothing removed"
        ));
    }
    // A holder that still renews is a live run: removing its lock would let a second run act
    // beside it. Only a lease past its expiry, or one whose process is provably gone (this
    // host, no such pid), is removed.
    if let Some(exp) = expiry(&cur) {
        if exp > now() && !holder_gone(holder) {
            return Err(format!(
                "lock `{lease}` is held by a live run ({holder}): it renews its lease, which expires {} unless renewed; nothing removed. Stop that run (Ctrl-C, or SIGTERM to its process), or wait {LEASE_SECONDS} s after it stopped renewing",
                micro(exp)
            ));
        }
    }
    let mut dp = DeleteParams::default();
    if let Some(uid) = cur["metadata"]["uid"].as_str() {
        dp.preconditions = Some(kube::api::Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        });
    }
    api.delete(lease, &dp)
        .await
        .map_err(|e| format!("run lock: {}", super::cluster::words(&e)))?;
    Ok(format!(
        "removed lock {}/{lease} held by {holder}",
        cluster.ns
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_holders() {
        assert_eq!(lease_name("keeptrusts-1.5"), "ktplay-keeptrusts-1-5");
        let h = holder_identity("abc123");
        assert_eq!(run_of(&h), Some("abc123"));
        assert!(!holder_gone(&h));
    }
}
