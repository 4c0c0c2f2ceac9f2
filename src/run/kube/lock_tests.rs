//! Unit tests of `run::lock`.

use super::*;

#[test]
fn names_and_holders() {
    assert_eq!(lease_name("keeptrusts-1.5"), "ktplay-keeptrusts-1-5");
    let h = holder_identity("abc123");
    assert_eq!(run_of(&h), Some("abc123"));
}

fn lease(holder: &str, secs: Value, acquired: &str, renewed: &str) -> Value {
    json!({"spec": {"holderIdentity": holder, "leaseDurationSeconds": secs,
                    "acquireTime": acquired, "renewTime": renewed}})
}

/// What a lease says is read, never trusted: absurd durations and times never panic, and
/// the words say what the lease holds.
#[test]
fn lease_words_say_what_was_observed() {
    let t = micro(now());
    let l = lease("h", json!(3600), &t, &t);
    let w = lease_words(&l);
    assert!(w.contains("never renewed since"), "{w}");
    assert!(
        w.contains("lasts 3600 s") && w.contains("unless renewed"),
        "{w}"
    );
    assert!(live(&l) && !watchable(&l));
    let old = "2020-01-01T00:00:00.000000Z";
    let l = lease("h", json!(15), old, old);
    assert!(!live(&l) && lease_words(&l).contains("expired"));
    for secs in [json!(i64::MAX), json!(i64::MIN), json!(-5), json!("x")] {
        let l = lease("h", secs, &t, "not a time");
        let _ = (expiry(&l), lease_words(&l), live(&l), watchable(&l));
    }
    let l = lease("h", json!(i64::MAX), &t, &t);
    assert_eq!(expiry(&l), None);
    assert!(
        live(&l),
        "a lease without a readable expiry is not proven gone"
    );
}

/// An object's lease names its run lock and lasts long for older ktplays; a hostile annotation
/// (not a ktplay run lock's name, another object's lease, too long, not a DNS label) is never
/// followed.
#[test]
fn object_leases_are_held_through_the_run_lock() {
    let l = object_lease_json("ktplay-obj-deploy-api", "h", "ktplay-upgrade", None);
    assert_eq!(l["metadata"]["annotations"][RUN_LOCK], "ktplay-upgrade");
    assert_eq!(l["spec"]["leaseDurationSeconds"], OBJECT_LEASE_SECONDS);
    assert_eq!(
        l["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "ktplay"
    );
    assert_eq!(run_lock_name(&l), Some("ktplay-upgrade"));
    let named = |n: &str| json!({"metadata": {"annotations": {RUN_LOCK: n}}});
    for bad in [
        "kube-controller-manager",
        "ktplay-obj-deploy-x",
        "ktplay-UP",
        "ktplay-a/b",
        "ktplay-\u{1b}[2J",
        &format!("ktplay-{}", "a".repeat(60)),
    ] {
        assert_eq!(run_lock_name(&named(bad)), None, "{bad:?}");
    }
    assert_eq!(run_lock_name(&json!({"metadata": {}})), None);
}
