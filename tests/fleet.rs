//! Fleets through the binary: `plan` of a fleet (every wave and cluster in order, the soaks and
//! approvals, the failure policy), and `check`'s verdicts across clusters. The case files under
//! `tests/cases/check` hold the diagnostics themselves.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ktplay(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ktplay"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("ktplay runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Positions of `needles` in `hay`, each after the one before (panics naming the first missing).
fn in_order(hay: &str, needles: &[&str]) {
    let mut from = 0;
    for n in needles {
        match hay[from..].find(n) {
            Some(i) => from += i + n.len(),
            None => panic!("`{n}` missing (or out of order) in:\n{hay}"),
        }
    }
}

#[test]
fn plan_of_a_fleet_shows_every_wave_and_cluster_in_order() {
    let (code, out, err) = ktplay(&["plan", "tests/cases/check/ok/fleet-shared.ktplay"]);
    assert_eq!(code, 0, "{err}");
    in_order(
        &out,
        &[
            "Plan for fleet \"global\": playbook \"keeptrusts-1.5\"",
            "on failure rollback fleet",
            "shared: api in core",
            "== wave 1 `core`: core (1 at a time)",
            "-- cluster 1. `core`: context prod-core, env production",
            "rolling api to 1.5.0",
            "rolling gateway to 1.5.0",
            "soak 600s after wave `core`: every 30s",
            "· core: guard http GET https://api.example.com/readyz expect 200",
            "approve \"core soaked for 10 minutes: go on to the regions?\" before the next wave",
            "== wave 2 `regions`: eu-west, us-east (2 at a time)",
            "-- cluster 2. `eu-west`: context prod-eu-west, env production, leaves api (from core)",
            // The region sees the shared api at what core left it at, and never rolls api.
            "= api 1.5.0, gateway 1.4.1",
            "guard http GET https://gateway.eu-west.example.com/readyz expect 200",
            "-- cluster 3. `us-east`: context prod-us-east",
            "guard http GET https://gateway.us-east.example.com/readyz expect 200",
            "On failure: rollback fleet: the failed cluster rolls back, then every finished cluster in reverse order (us-east, eu-west, core)",
            "Plan: 2 waves, 3 clusters.",
        ],
    );
    let regions = &out[out.find("== wave 2").unwrap()..];
    assert!(
        !regions.contains("rolling api"),
        "a region runs no statement of the shared api:\n{regions}"
    );
}

#[test]
fn plan_of_a_fleet_as_json() {
    let (code, out, err) = ktplay(&[
        "plan",
        "--format",
        "json",
        "tests/cases/check/ok/fleet-shared.ktplay",
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["fleet"], "global");
    assert_eq!(doc["on_failure"], "rollback fleet");
    let waves = doc["waves"].as_array().unwrap();
    let names: Vec<Vec<&str>> = waves
        .iter()
        .map(|w| {
            w["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(names, [vec!["core"], vec!["eu-west", "us-east"]]);
    assert_eq!(waves[0]["soak"]["seconds"], 600);
    assert_eq!(waves[1]["parallel"], 2);
    assert!(waves[1]["soak"].is_null());
}

#[test]
fn a_fleet_that_puts_the_gateways_before_the_shared_api_plans_nothing() {
    let (code, out, err) = ktplay(&["plan", "tests/cases/check/err/fleet_incompatible.ktplay"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "nothing planned: {out}");
    assert!(err.contains("ktplay::compat::fleet_incompatible"), "{err}");
    let flat = err.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(
            "cluster `eu-west` runs gateway {1.4.1, 1.5.0} while │ `core` runs api {1.4.2}"
        ) || flat.contains(
            "cluster `eu-west` runs gateway {1.4.1, 1.5.0} while `core` runs api {1.4.2}"
        ),
        "{err}"
    );
    assert!(err.contains("nothing planned"), "{err}");
}

#[test]
fn plan_of_a_fleet_refuses_what_it_cannot_do() {
    let (code, _, err) = ktplay(&[
        "plan",
        "--cluster",
        "tests/cases/check/ok/fleet-shared.ktplay",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("plan --cluster"), "{err}");
    let (code, _, err) = ktplay(&[
        "plan",
        "--fleet",
        "nope",
        "tests/cases/check/ok/fleet-shared.ktplay",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("has no fleet \"nope\"; it holds: global"),
        "{err}"
    );
}
