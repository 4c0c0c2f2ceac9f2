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
    assert!(err.contains("failed: 2 errors; nothing done"), "{err}");
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

/// `ktplay rehearse` of the three-wave fleet with these faults: exit code and stdout.
fn rehearse(faults: &[&str]) -> (i32, String) {
    let mut args = vec!["rehearse", "tests/cases/fleet/global.ktplay"];
    for f in faults {
        args.push("--fault");
        args.push(f);
    }
    let (code, out, err) = ktplay(&args);
    assert!(!err.contains("panicked"), "{err}");
    (code, out)
}

#[test]
fn a_fleet_rehearsed_runs_its_waves_in_order_with_a_watched_soak() {
    let (code, out) = rehearse(&[]);
    assert_eq!(code, 0, "{out}");
    in_order(
        &out,
        &[
            "wave `core` starts: core",
            "cluster `core`: succeeded",
            "soak 600s: watching core",
            // A round at the start, every 30 s, one at the end: watched, not slept.
            "soak held: 21 rounds",
            "approve \"core soaked for 10 minutes: go on to eu-west?\": yes (a rehearsal)",
            "wave `canary` starts: eu-west",
            "cluster `eu-west`: succeeded",
            "soak 300s: watching core, eu-west",
            "soak held: 11 rounds",
            "wave `rest` starts: us-east",
            "cluster `us-east`: succeeded",
            "fleet succeeded",
            "cluster `core`: api 1.5.0, gateway 1.5.0; lock free; journal 14 events, run_end succeeded",
            "cluster `eu-west`: gateway 1.5.0; lock free; journal 11 events, run_end succeeded",
            "cluster `us-east`: gateway 1.5.0; lock free; journal 11 events, run_end succeeded",
            "succeeded in",
        ],
    );
}

#[test]
fn a_fault_in_wave_two_stops_the_fleet_and_rolls_back_only_that_cluster() {
    let (code, out) = rehearse(&["never-ready:gateway@1.5.0@eu-west"]);
    assert_eq!(code, 1, "{out}");
    in_order(
        &out,
        &[
            "cluster `core`: succeeded",
            "soak held: 21 rounds",
            "wave `canary` starts: eu-west",
            "cluster `eu-west`: failed and rolled back",
            "fleet stopped (on failure stop): cluster `eu-west` in wave `canary`: failed and rolled back",
            "cluster `core` stays upgraded",
            // Finished clusters stay, the failed one is back, the next wave never started.
            "cluster `core`: api 1.5.0, gateway 1.5.0; lock free; journal 14 events, run_end succeeded",
            "cluster `eu-west`: gateway 1.4.1; lock free; journal 13 events, run_end rolled_back",
            "cluster `us-east`: gateway 1.4.1; lock free; journal none (never ran)",
            "failed in",
        ],
    );
    assert!(!out.contains("wave `rest` starts"), "{out}");
    assert!(!out.contains("soak 300s"), "{out}");
}

#[test]
fn the_fleet_journal_is_written_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.jsonl");
    let (code, out, err) = ktplay(&[
        "rehearse",
        "tests/cases/fleet/global.ktplay",
        "--fault",
        "never-ready:gateway@1.5.0@eu-west",
        "--journal",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let entries: Vec<&str> = lines.iter().filter_map(|l| l["entry"].as_str()).collect();
    assert_eq!(entries.first(), Some(&"wave `core` starts: core"));
    assert!(entries.contains(&"cluster `eu-west`: failed and rolled back"));
    let clusters: Vec<(&str, &str, bool)> = lines
        .iter()
        .filter(|l| l["cluster"].is_string())
        .map(|l| {
            (
                l["cluster"].as_str().unwrap(),
                l["finals"]["gateway"].as_str().unwrap(),
                l["lock_held"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        clusters,
        [
            ("core", "1.5.0", false),
            ("eu-west", "1.4.1", false),
            ("us-east", "1.4.1", false)
        ]
    );
    let us = lines.iter().find(|l| l["cluster"] == "us-east").unwrap();
    assert!(us["run_end"].is_null(), "us-east never ran: {us}");
}

#[test]
fn a_guard_failing_during_the_soak_fails_the_wave() {
    // The gateway's policy is off in core only: its run's own guards (readyz) pass, the soak's
    // policy guard does not.
    let (code, out) = rehearse(&["policy-off:1.5.0@core"]);
    assert_eq!(code, 1, "{out}");
    in_order(
        &out,
        &[
            "cluster `core`: succeeded",
            "soak 600s: watching core",
            "soak round 1 (0s): cluster `core` failed: POST https://gateway.example.com/v1/chat/completions answered 200, expected 409",
            "fleet stopped (on failure stop): the soak after wave `core`",
            "cluster `core`: api 1.5.0, gateway 1.5.0; lock free; journal 14 events, run_end succeeded",
            "cluster `eu-west`: gateway 1.4.1; lock free; journal none (never ran)",
            "cluster `us-east`: gateway 1.4.1; lock free; journal none (never ran)",
        ],
    );
    assert!(
        !out.contains("approve \""),
        "no approval after a failed soak: {out}"
    );
    assert!(!out.contains("wave `canary` starts"), "{out}");
}

#[test]
fn rehearsing_rollback_fleet_is_refused_not_skipped() {
    let (code, out, err) = ktplay(&["rehearse", "tests/cases/check/ok/fleet-shared.ktplay"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("`on failure rollback fleet` is not rehearsed or run yet"),
        "{err}"
    );
}
