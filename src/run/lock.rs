//! The run lock: one Lease per playbook and namespace.
//!
//! Taken with create (409 AlreadyExists: held); a held lease whose `renewTime +
//! leaseDurationSeconds` has passed is taken over by replace carrying the read resourceVersion
//! (409 Conflict: another runner won the race). While the run goes on, a task renews it every
//! third of its duration. The lock id printed to people is `NAMESPACE/LEASE/RUN_ID`, which
//! `ktplay unlock --force` takes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    name: String,
    holder: String,
    lost: Mutex<Option<String>>,
    renewed: Mutex<Instant>,
    /// One renewal at a time (the renewer and a write may both want one).
    renewing: tokio::sync::Mutex<()>,
}

impl Fence {
    fn new(cluster: &Cluster, name: &str, holder: &str) -> Fence {
        Fence {
            inner: Arc::new(FenceInner {
                cluster: Cluster::new(cluster.client.clone(), cluster.ns.clone()),
                name: name.to_string(),
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
        let api = leases(&self.inner.cluster);
        let name = &self.inner.name;
        let cur = match retry(|| async { api.get_opt(name).await }).await {
            Ok(Some(l)) => serde_json::to_value(l).unwrap_or(Value::Null),
            Ok(None) => return Err(self.lose(format!("the lease {name} was deleted"))),
            Err(e) => return self.unrenewed(&super::cluster::words(&e)),
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
            return self.unrenewed("cannot build the lease");
        };
        match api
            .replace(name, &super::cluster::post_params(), &lease)
            .await
        {
            Ok(_) => {
                *self.inner.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                Ok(())
            }
            Err(e) if status_code(&e) == Some(409) => Err(self.lose(format!(
                "the lease {name} changed between its read and its renewal (taken over?)"
            ))),
            Err(e) if status_code(&e) == Some(404) => {
                Err(self.lose(format!("the lease {name} was deleted")))
            }
            Err(e) => self.unrenewed(&super::cluster::words(&e)),
        }
    }

    /// A renewal that failed for a passing reason: fine while the lease has time left.
    fn unrenewed(&self, why: &str) -> Result<(), String> {
        let since = self.since_renewal();
        if since >= Duration::from_secs(LEASE_SECONDS as u64) {
            Err(self.lose(format!(
                "the lease {} could not be renewed for {}s, longer than it lasts: {why}",
                self.inner.name,
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
            } => write!(
                f,
                "another run holds the lock: {holder} (lock id {lock_id}, expires {expires} unless renewed)"
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

impl RunLock {
    /// Take the lock. `resuming` lets a run take over the lease of the run it resumes when that
    /// process is gone (same host, no such pid) or the lease expired.
    pub async fn acquire(
        cluster: &Cluster,
        playbook: &str,
        run_id: &str,
        resuming: Option<&str>,
    ) -> Result<RunLock, LockError> {
        let name = lease_name(playbook);
        let holder = holder_identity(run_id);
        let api = leases(cluster);
        let lease: Lease = serde_json::from_value(lease_json(&name, &holder, None, None))
            .map_err(|e| LockError::Api(e.to_string()))?;
        match api.create(&super::cluster::post_params(), &lease).await {
            Ok(_) => return Ok(Self::held(cluster, name, run_id, holder)),
            Err(e) if status_code(&e) == Some(409) => {}
            Err(e) => return Err(api_err(e)),
        }
        let current =
            serde_json::to_value(api.get(&name).await.map_err(api_err)?).unwrap_or(Value::Null);
        let their_holder = current["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let exp = expiry(&current);
        let expired = exp.is_none_or(|e| e < now()) || their_holder.is_empty();
        let resumable = resuming.is_some_and(|r| run_of(&their_holder) == Some(r))
            && holder_gone(&their_holder);
        if !expired && !resumable {
            return Err(LockError::Held {
                lock_id: format!(
                    "{}/{name}/{}",
                    cluster.ns,
                    run_of(&their_holder).unwrap_or("?")
                ),
                holder: their_holder,
                expires: exp.map(micro).unwrap_or_else(|| "?".into()),
            });
        }
        let rv = current["metadata"]["resourceVersion"].as_str();
        let lease: Lease = serde_json::from_value(lease_json(&name, &holder, rv, None))
            .map_err(|e| LockError::Api(e.to_string()))?;
        match api
            .replace(&name, &super::cluster::post_params(), &lease)
            .await
        {
            Ok(_) => Ok(Self::held(cluster, name, run_id, holder)),
            Err(e) if status_code(&e) == Some(409) => Err(LockError::Held {
                holder: "another runner that took it a moment ago".into(),
                lock_id: format!("{}/{name}/?", cluster.ns),
                expires: "?".into(),
            }),
            Err(e) => Err(api_err(e)),
        }
    }

    fn held(cluster: &Cluster, name: String, run_id: &str, holder: String) -> RunLock {
        let fence = Fence::new(cluster, &name, &holder);
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
        let api = leases(&self.cluster);
        match retry(|| async { api.get_opt(&self.name).await }).await {
            Ok(Some(cur))
                if cur.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                    == Some(&self.holder) =>
            {
                // Only this lease: a lock taken over meanwhile is someone else's to release.
                let dp = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: cur.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                if let Err(e) = retry(|| async { api.delete(&self.name, &dp).await }).await {
                    if super::cluster::status_code(&e) != Some(404) {
                        eprintln!(
                            "warning: could not release the run lock {}/{}: {}",
                            self.cluster.ns,
                            self.name,
                            super::cluster::words(&e)
                        );
                    }
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!(
                "warning: could not release the run lock {}/{}: {}",
                self.cluster.ns,
                self.name,
                super::cluster::words(&e)
            ),
        }
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
