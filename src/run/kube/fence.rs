//! The fence: proof that this process still holds the run lock, checked before every write
//! (renewing first when the last renewal is older than [`FRESH_FOR`]). Lost once, lost for good.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::Value;

use super::lock::{lease_json, leases};
use super::{retry, status_code, Cluster};
use crate::run::shown::shown;

/// How long a lease lasts without renewal.
pub(crate) const LEASE_SECONDS: i64 = 15;
/// How often the lease is renewed: a third of its duration.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(LEASE_SECONDS as u64 / 3);
/// A write needs a renewal younger than this (two thirds of the lease), else the lease is
/// renewed first — or the run stops. A process the OS paused (SIGSTOP, a frozen VM, a long GC)
/// wakes up with an old renewal and must prove it still holds the lock before it acts; the
/// monotonic clock keeps counting while it is paused.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(LEASE_SECONDS as u64 * 2 / 3);

/// Why this process may not write now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    /// The lock is lost, for good (why): another runner may own the system now.
    #[error("{0}")]
    Lost(String),
    /// The lease could not be renewed for longer than [`FRESH_FOR`] (but less than it lasts).
    #[error("the run lock could not be renewed (for {secs}s): {why}")]
    Stale { secs: u64, why: String },
}

/// Proof that this process holds the run lock, checked before every write ([`Fence::ensure`]).
/// Lost once, lost for good: another runner may own the system now.
#[derive(Clone)]
pub struct Fence {
    inner: Arc<FenceInner>,
}

struct FenceInner {
    cluster: Cluster,
    /// The playbook's lease (the run lock, the one renewed) first, then the objects' (held
    /// through it, checked at each renewal).
    names: Vec<String>,
    holder: String,
    lost: Mutex<Option<String>>,
    renewed: Mutex<Instant>,
    /// One renewal at a time (the renewer and a write may both want one).
    renewing: tokio::sync::Mutex<()>,
}

impl Fence {
    pub(super) fn new(
        cluster: &Cluster,
        names: &[String],
        holder: &str,
        renewed: Instant,
    ) -> Fence {
        Fence {
            inner: Arc::new(FenceInner {
                cluster: Cluster::new(cluster.client.clone(), cluster.ns.clone()),
                names: names.to_vec(),
                holder: holder.to_string(),
                lost: Mutex::new(None),
                renewed: Mutex::new(renewed),
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

    fn lose(&self, why: String) -> FenceError {
        let mut g = self.inner.lost.lock().unwrap_or_else(|e| e.into_inner());
        FenceError::Lost(g.get_or_insert(why).clone())
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
    pub async fn ensure(&self) -> Result<(), FenceError> {
        if let Some(why) = self.lost() {
            return Err(FenceError::Lost(why));
        }
        if self.since_renewal() < FRESH_FOR {
            return Ok(());
        }
        self.renew().await
    }

    /// Renew the lease, carrying the resourceVersion read: a lease that is gone, held by
    /// someone else, or changed between the read and the write is lost; one that cannot be
    /// renewed for longer than its duration is lost too.
    pub async fn renew(&self) -> Result<(), FenceError> {
        let _one = self.inner.renewing.lock().await;
        if let Some(why) = self.lost() {
            return Err(FenceError::Lost(why));
        }
        // Counted from before the first read: the leases' renewTime is no older than this, so a
        // runner watching them stand still for their duration knows this process stopped acting.
        let began = Instant::now();
        // One renewal for the run (issue 23): the objects' leases are held through the run
        // lock (`lock::object_lease_json`), so only it is renewed; one LIST then proves every
        // object's lease still names this process (a runner that took one over, its run lock
        // having expired while this process was paused, is seen here, before any write).
        let Some((run, objects)) = self.inner.names.split_first() else {
            return Ok(());
        };
        let mut all = self.renew_one(run).await?;
        if all && !objects.is_empty() {
            all = self.objects_still_ours(objects).await?;
        }
        // A renewal that failed for a passing reason renews nothing: the time since the last
        // full renewal keeps growing, and past the lease's duration the lock is lost.
        if all {
            *self.inner.renewed.lock().unwrap_or_else(|e| e.into_inner()) = began;
        }
        Ok(())
    }

    /// Renew one lease: true if renewed, false if it could not be for a passing reason (and
    /// has time left).
    async fn renew_one(&self, name: &str) -> Result<bool, FenceError> {
        let api = leases(&self.inner.cluster);
        let cur = match retry(|| async { api.get_opt(name).await }).await {
            Ok(Some(l)) => serde_json::to_value(l).unwrap_or(Value::Null),
            Ok(None) => return Err(self.lose(format!("the lease {name} was deleted"))),
            Err(e) => return self.unrenewed(name, &crate::run::kube::words(&e)),
        };
        let holder = cur["spec"]["holderIdentity"].as_str().unwrap_or_default();
        if holder != self.inner.holder {
            return Err(self.lose(format!("the lease {name} is now held by {}", shown(holder))));
        }
        let rv = cur["metadata"]["resourceVersion"].as_str();
        let acquired = cur["spec"]["acquireTime"].as_str();
        let Ok(lease) =
            serde_json::from_value::<Lease>(lease_json(name, &self.inner.holder, rv, acquired))
        else {
            return self.unrenewed(name, "cannot build the lease");
        };
        match retry(|| async {
            api.replace(name, &crate::run::kube::post_params(), &lease)
                .await
        })
        .await
        {
            Ok(_) => Ok(true),
            // A retried replace whose first attempt went through (its answer was lost) finds
            // its own write: still ours.
            Err(e) if status_code(&e) == Some(409) && self.still_ours(name).await => Ok(true),
            Err(e) if status_code(&e) == Some(409) => Err(self.lose(format!(
                "the lease {name} changed between its read and its renewal (taken over?)"
            ))),
            Err(e) if status_code(&e) == Some(404) => {
                Err(self.lose(format!("the lease {name} was deleted")))
            }
            Err(e) => self.unrenewed(name, &crate::run::kube::words(&e)),
        }
    }

    /// Every object's lease still there and naming this process (one LIST of ktplay's leases):
    /// true; false if it could not be read for a passing reason.
    async fn objects_still_ours(&self, objects: &[String]) -> Result<bool, FenceError> {
        let api = leases(&self.inner.cluster);
        let lp = kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=ktplay");
        let list = match retry(|| async { api.list(&lp).await }).await {
            Ok(l) => l,
            Err(e) => return self.unrenewed("of the objects", &crate::run::kube::words(&e)),
        };
        for name in objects {
            let found = list
                .items
                .iter()
                .find(|l| l.metadata.name.as_deref() == Some(name.as_str()));
            let holder = match found {
                None => return Err(self.lose(format!("the lease {name} was deleted"))),
                Some(l) => l
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_deref())
                    .unwrap_or_default(),
            };
            if holder != self.inner.holder {
                return Err(self.lose(format!("the lease {name} is now held by {}", shown(holder))));
            }
        }
        Ok(true)
    }

    /// Does the lease still name this process (read again)?
    async fn still_ours(&self, name: &str) -> bool {
        let api = leases(&self.inner.cluster);
        matches!(
            retry(|| async { api.get_opt(name).await }).await,
            Ok(Some(l)) if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                == Some(self.inner.holder.as_str())
        )
    }

    /// A renewal that failed for a passing reason: fine while the lease has time left.
    fn unrenewed(&self, name: &str, why: &str) -> Result<bool, FenceError> {
        let since = self.since_renewal();
        if since >= Duration::from_secs(LEASE_SECONDS as u64) {
            Err(self.lose(format!(
                "the lease {name} could not be renewed for {}s, longer than it lasts: {why}",
                since.as_secs()
            )))
        } else if since >= FRESH_FOR {
            Err(FenceError::Stale {
                secs: since.as_secs(),
                why: why.to_string(),
            })
        } else {
            Ok(false)
        }
    }
}
