//! The lock as `status` and `unlock` see it: the lease read, its holder, its id, and
//! `unlock --force`.

use super::*;

/// The playbook's lease as it is, if there is one (read only, with the retry policy).
pub(crate) async fn read(cluster: &Cluster, playbook: &str) -> Result<Option<Value>, LockError> {
    let name = lease_name(playbook);
    let api = leases(cluster);
    retry(|| async { api.get_opt(&name).await })
        .await
        .map(|l| l.map(|l| serde_json::to_value(l).unwrap_or(Value::Null)))
        .map_err(|e| LockError::Api(format!("run lock: {}", crate::run::kube::words(&e))))
}

/// Is a lease (as [`read`] returns it) held and not past its expiry?
pub(crate) fn live(l: &Value) -> bool {
    // A lease whose expiry cannot be read proves nothing: it counts as held.
    !holder_of(l).is_empty() && expiry(l).is_none_or(|e| e >= now())
}

/// The holder a lease names (print it through [`shown`]).
pub(crate) fn holder_of(l: &Value) -> &str {
    l["spec"]["holderIdentity"].as_str().unwrap_or_default()
}

/// The lock id of the playbook's lease held by `holder`, escaped for printing.
pub(crate) fn lock_id(cluster: &Cluster, playbook: &str, holder: &str) -> String {
    shown(&format!(
        "{}/{}/{}",
        cluster.ns,
        lease_name(playbook),
        run_of(holder).unwrap_or("?")
    ))
}

/// What `status` shows of the lock.
pub(crate) async fn describe(
    cluster: &Cluster,
    playbook: &str,
) -> Result<Option<String>, LockError> {
    Ok(read(cluster, playbook).await?.map(|l| {
        let holder = holder_of(&l);
        format!(
            "held by {} (lock id {}), {}",
            shown(holder),
            lock_id(cluster, playbook, holder),
            lease_words(&l)
        )
    }))
}

/// `ktplay unlock --force NAMESPACE/LEASE/RUN_ID`: delete the lease if it still belongs to that
/// run and the lease shows its holder gone: past its expiry, or not renewed while ktplay watched
/// it for its whole duration. `cluster` must be in the lock id's namespace. Every message says
/// what was observed of the lease.
pub(crate) async fn force_unlock(
    cluster: &Cluster,
    lease: &str,
    run_id: &str,
) -> Result<String, LockError> {
    let api = leases(cluster);
    let at = format!("{}/{}", cluster.ns, shown(lease));
    let read = || async {
        retry(|| async { api.get_opt(lease).await })
            .await
            .map(|l| l.map(|l| serde_json::to_value(l).unwrap_or(Value::Null)))
            .map_err(|e| LockError::Api(format!("run lock: {}", crate::run::kube::words(&e))))
    };
    let Some(mut cur) = read().await? else {
        return Err(LockError::Kept(format!("no lock `{at}`: nothing removed")));
    };
    let holder = holder_of(&cur).to_string();
    if run_of(&holder) != Some(run_id) && run_id != "?" {
        return Err(LockError::Kept(format!(
            "lock `{at}` is held by {}, not run {}; nothing removed",
            shown(&holder),
            shown(run_id)
        )));
    }
    // An object's lease goes with its run lock: removed once that proves its holder gone.
    let delegated = match through(&api, &cur).await? {
        Some(Through::Live(run, lock)) => {
            return Err(LockError::Kept(format!(
                "lock `{at}` is held by {} through its run lock {}/{run}, which is held ({}); nothing removed. Unlock that run lock first (`ktplay unlock --force {}`)",
                shown(&holder),
                cluster.ns,
                lease_words(&lock),
                shown(&format!("{}/{run}/{}", cluster.ns, run_of(&holder).unwrap_or("?")))
            )))
        }
        Some(Through::Gone(why, _)) => Some(why),
        None => None,
    };
    let words = lease_words(&cur);
    // A holder that still renews is a live run: removing its lock would let a second run act
    // beside it. Only a lease past its expiry, or one nobody renewed while ktplay watched it
    // for its whole duration, is removed.
    let how = if let Some(why) = delegated {
        format!("its holder is gone: {why}")
    } else if expiry(&cur).is_some_and(|e| e < now()) {
        format!("it had expired ({words})")
    } else if expiry(&cur).is_none() {
        return Err(LockError::Kept(format!(
            "lock `{at}` is held by {} ({words}): ktplay cannot tell whether its holder still renews it; nothing removed. If you are sure its run is gone, delete the Lease with kubectl",
            shown(&holder)
        )));
    } else if !watchable(&cur) {
        return Err(LockError::Kept(format!(
            "lock `{at}` is held by {} ({words}); nothing removed. A lease is removed only once it is past its expiry or was not renewed for its whole duration, and ktplay watches leases of at most {WATCH_AT_MOST} s; run this again once it has expired",
            shown(&holder)
        )));
    } else {
        eprintln!(
            "lock `{at}` is held by {} ({words}): watching it for {} s to see whether its holder still renews it",
            shown(&holder),
            duration_of(&cur) + 1
        );
        match watch(&api, lease, &cur)
            .await
            ?
        {
            Watched::Renewed { lease: l, after } => {
                return Err(LockError::Kept(format!(
                    "lock `{at}` is held by a live run ({}): its lease was renewed {} s into ktplay's watch ({}); nothing removed. Stop that run (Ctrl-C, or SIGTERM to its process), or run this again once it stopped renewing",
                    shown(holder_of(&l)),
                    after.as_secs(),
                    lease_words(&l)
                )))
            }
            Watched::Deleted => return Ok(format!("lock `{at}` was removed meanwhile")),
            Watched::Stale(l) => {
                cur = l;
                format!(
                    "nobody renewed it while ktplay watched for {} s ({words})",
                    duration_of(&cur) + 1
                )
            }
        }
    };
    // Only the lease as read: a renewal or a takeover in between fails the preconditions.
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: cur["metadata"]["uid"].as_str().map(String::from),
            resource_version: cur["metadata"]["resourceVersion"]
                .as_str()
                .map(String::from),
        }),
        ..Default::default()
    };
    match retry(|| async { api.delete(lease, &dp).await }).await {
        Ok(_) => {}
        Err(e) if status_code(&e) == Some(404) => {}
        Err(e) if status_code(&e) == Some(409) => {
            return Err(LockError::Kept(format!(
            "lock `{at}` changed just before its removal (renewed or taken over); nothing removed"
        )))
        }
        Err(e) => {
            return Err(LockError::Api(format!(
                "run lock: {}",
                crate::run::kube::words(&e)
            )))
        }
    }
    Ok(format!(
        "removed lock {at} held by {}: {how}",
        shown(&holder)
    ))
}
