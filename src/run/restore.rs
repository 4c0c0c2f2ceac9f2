//! Rollback steps: an implicit rollback restores exactly what one action replaced (its
//! [`Record`]); `undo C` inside a rollback block restores what C was before the run first
//! changed it (its [`super::rollback::First`], from the events).

use crate::program::Colour;

use super::context::{Ctx, DEFAULT_TIMEOUT};
use super::kube::{canary_name, Snap};
use super::rollback::Record;
use super::{Cancel, Failure};

/// An implicit rollback: restore exactly what the action replaced.
pub(crate) async fn restore(
    cx: &Ctx<'_>,
    record: &Record,
    cancel: &Cancel,
) -> Result<String, Failure> {
    match record {
        Record::Templates { deployments, .. } => {
            let w = restore_snaps(cx, deployments, cancel).await?;
            Ok(if w.is_empty() {
                "already as before".into()
            } else {
                format!("{} restored", w.join(", "))
            })
        }
        Record::Canary {
            comp,
            canaries,
            promoted,
            pinned,
            routed,
        } => {
            // The weight back to the stable backend (still pinned to the stable pods) before
            // the canary's pods go; the stable selector back after them.
            let mut s = String::new();
            if let Some(t) = &cx.comp(*comp).traffic {
                let routed = match routed {
                    Some(r) => r.clone(),
                    None => legacy_routed(cx, *comp, t).await?,
                };
                s = format!(
                    "{}; ",
                    super::kube::traffic::unroute(&cx.cluster, t, &routed).await?
                );
            }
            s.push_str(&remove_canaries(cx, canaries).await?);
            let unpinned = super::kube::traffic::unpin(&cx.cluster, pinned).await?;
            if !unpinned.is_empty() {
                s.push_str(&format!(
                    "; Service {} selector restored",
                    unpinned.join(", ")
                ));
            }
            if let Some(p) = promoted {
                let w = restore_snaps(cx, p, cancel).await?;
                if !w.is_empty() {
                    s.push_str(&format!("; {} restored", w.join(", ")));
                }
            }
            Ok(s)
        }
        Record::Selector {
            comp,
            service,
            key,
            value,
            idle,
        } => {
            // Traffic first, then the idle colour back to what it ran.
            cx.cluster.set_selector(service, key, value).await?;
            cx.set_colour(*comp, Colour::parse(value).unwrap_or(Colour::Blue));
            let mut s = format!("Service {service} selects {value} again");
            if let Some(snap) = idle {
                let w = restore_snaps(cx, std::slice::from_ref(snap), cancel).await?;
                if !w.is_empty() {
                    s.push_str(&format!("; {} restored", w.join(", ")));
                }
            }
            Ok(s)
        }
        Record::Replicas { replicas, .. } => {
            for (d, n) in replicas {
                cx.cluster.scale(d, *n).await?;
            }
            let ds: Vec<String> = replicas.iter().map(|r| r.0.clone()).collect();
            cx.wait_all(&ds, DEFAULT_TIMEOUT, cancel).await?;
            Ok("replicas restored".into())
        }
        Record::Restart { .. } | Record::Undo { .. } => Ok(String::new()),
    }
}

/// `undo C` inside a rollback block: back to what C ran before this run first changed it.
pub(crate) async fn undo_to_first(
    cx: &Ctx<'_>,
    comp: usize,
    cancel: &Cancel,
) -> Result<String, Failure> {
    let Some(first) = cx.log.progress().first.remove(&comp) else {
        return Ok(format!(
            "nothing to undo: this run did not change {}",
            cx.comp(comp).name
        ));
    };
    let mut changed = Vec::new();
    // A routed canary of this run: the weight back first, as its own rollback does.
    let records = cx.log.progress().records;
    let pinned: Vec<super::rollback::Pinned> = records
        .values()
        .filter(|r| r.comp() == comp)
        .find_map(|r| match r {
            Record::Canary { pinned, .. } if !pinned.is_empty() => Some(pinned.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let canary = records
        .values()
        .filter(|r| r.comp() == comp)
        .find_map(|r| match r {
            Record::Canary { routed, .. } => Some(routed.clone()),
            _ => None,
        });
    if let (Some(routed), Some(t)) = (canary, &cx.comp(comp).traffic) {
        let routed = match routed {
            Some(r) => r,
            None => legacy_routed(cx, comp, t).await?,
        };
        changed.push(super::kube::traffic::unroute(&cx.cluster, t, &routed).await?);
    }
    for d in cx.comp(comp).deployments() {
        let cn = canary_name(d);
        match cx.cluster.delete_canary(&cn).await {
            Ok(true) => changed.push(format!("removed {cn}")),
            Ok(false) => {}
            // Not this run's: never deleted (and never this run's canary).
            Err(super::kube::ClusterError::NotOurs(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let unpinned = super::kube::traffic::unpin(&cx.cluster, &pinned).await?;
    if !unpinned.is_empty() {
        changed.push(format!("Service {} selector restored", unpinned.join(", ")));
    }
    let waits = restore_snaps(cx, &first.deployments, cancel).await?;
    changed.extend(waits.iter().map(|w| format!("{w} restored")));
    if let Some((svc, key, value)) = &first.selector {
        let cur = cx.cluster.selector(svc).await?;
        if cur.get(key) != Some(value) {
            cx.cluster.set_selector(svc, key, value).await?;
            cx.set_colour(comp, Colour::parse(value).unwrap_or(Colour::Blue));
            changed.push(format!("Service {svc} selects {value} again"));
        }
    }
    Ok(if changed.is_empty() {
        "already as before the run".into()
    } else {
        changed.join(", ")
    })
}

/// Remove the canary deployments this run created; anyone else's is left alone, and said so.
async fn remove_canaries(cx: &Ctx<'_>, canaries: &[String]) -> Result<String, Failure> {
    let mut left = Vec::new();
    for c in canaries {
        match cx.cluster.delete_canary(c).await {
            Ok(_) => {}
            Err(super::kube::ClusterError::NotOurs(m)) => left.push(m),
            Err(e) => return Err(e.into()),
        }
    }
    let mut s = format!("removed {}", canaries.join(", "));
    if !left.is_empty() {
        s = format!("{s} (except what is not this run's: {})", left.join("; "));
    }
    Ok(s)
}

/// A canary record journaled before routers were journaled: the component's Services the
/// router sends to now, their weights set back as they are apart from the canary's.
async fn legacy_routed(
    cx: &Ctx<'_>,
    comp: usize,
    t: &crate::program::Traffic,
) -> Result<super::rollback::Routed, Failure> {
    let c = cx.comp(comp);
    let mut routed = super::kube::traffic::plan(&cx.cluster, t, &c.deployments())
        .await?
        .0;
    routed.rules.clear();
    Ok(routed)
}

/// Put templates back; the deployments that changed, after their rollouts finished.
async fn restore_snaps(
    cx: &Ctx<'_>,
    snaps: &[Snap],
    cancel: &Cancel,
) -> Result<Vec<String>, Failure> {
    let mut waits = Vec::new();
    for s in snaps {
        if cx.cluster.restore_snap(s).await? {
            waits.push(s.name.clone());
        }
    }
    cx.wait_all(&waits, DEFAULT_TIMEOUT, cancel).await?;
    Ok(waits)
}
