//! Fault-injection soak of `ktplay run` (issue 10): iteration after iteration, a fresh namespace
//! seeded from `tests/cases/run/upgrade.ktplay` (canary `for 2s`, 2 replicas), the real binary
//! run with `--approve`, ONE random disruption at a random moment — SIGKILL, SIGTERM, two
//! SIGTERMs 0–300 ms apart, SIGSTOP past the 15 s lease then SIGCONT (sometimes with another
//! runner resuming the run meanwhile), a burst of API errors, or nothing — and sometimes the
//! gateway's `policy-off:1.5.0` fault so the run rolls back. Then `--resume` while the journal
//! says the run is unfinished (at most 5 times). Every iteration must end all at `from` or all at
//! `to`, never mixed, with the lock released, the journal finished and only documented exit codes.
//!
//! - `soak` (ignored): `SOAK_RUNS` iterations (default 50), `SOAK_SEED` (printed; iteration `i`
//!   uses seed `SOAK_SEED + i`, so `SOAK_SEED=<its seed> SOAK_RUNS=1` replays one iteration's
//!   choices; `SOAK_RUN_MS`, printed too, fixes the length of an undisturbed run the moments are
//!   drawn from, measured otherwise), `SOAK_BACKEND=sim|real` (real: `KTPLAY_TEST_KUBECONFIG`),
//!   `SOAK_BIN` another binary. `bench/soak.sh` runs it. At the end a table: runs, consistent
//!   (all-from / all-to), inconsistent (each with its seed and disruption), an exit-code
//!   histogram, resumes, the worst request count, wall time.
//! - `soak_smoke`: 3 quick iterations on the simulator (SIGKILL, two SIGTERMs with the policy
//!   fault, an API-error burst), so CI exercises the harness.

mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use ktplay::exit::{INCOMPLETE, LOCK_LOST, OK, REFUSED, ROLLED_BACK};
use ktplay::sim::{Fault, Seed, SimConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::{Backend, TestCluster};

const TEST_KEY: &str = "tk-7f3a9c1e5b2d";
const ADMIN_TOKEN: &str = "adm-91c4e8f20a6b";
/// The exit codes a disrupted `ktplay run` may end with (README, "ktplay run"): success, rolled
/// back, rollback incomplete (a second signal: `--resume` must then finish it), refused, lock lost.
/// By name, not number: the table is the binary's own.
const DOCUMENTED: [i32; 5] = [OK, ROLLED_BACK, INCOMPLETE, REFUSED, LOCK_LOST];
const MAX_RESUMES: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long soak: bench/soak.sh, or cargo test --release --test soak -- --ignored --nocapture soak"]
async fn soak() {
    let runs: u64 = env_num("SOAK_RUNS").unwrap_or(50);
    let seed: u64 = env_num("SOAK_SEED").unwrap_or_else(rand::random);
    let backend = backend_from_env();
    let report = soak_loop(backend, seed, runs, None).await;
    assert!(
        report.inconsistent.is_empty(),
        "{} of {runs} runs inconsistent or with an undocumented exit (seed {seed}): see the table above",
        report.inconsistent.len()
    );
}

/// Three iterations on the simulator, one of each cheap disruption, timings random.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_smoke() {
    let seed: u64 = env_num("SOAK_SEED").unwrap_or_else(rand::random);
    let forced = [
        (Disruption::Kill, false),
        (Disruption::TermTwice { gap_ms: 0 }, true),
        (Disruption::ApiBurst { share: 0.0, ms: 0 }, false),
    ];
    let report = soak_loop(Backend::Sim, seed, 3, Some(&forced)).await;
    assert!(
        report.inconsistent.is_empty(),
        "{} of 3 runs inconsistent or with an undocumented exit (seed {seed}): see the table above",
        report.inconsistent.len()
    );
}

fn env_num(var: &str) -> Option<u64> {
    std::env::var(var).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v}: a number"))
    })
}

fn backend_from_env() -> Backend {
    match std::env::var("SOAK_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("sim") => Backend::Sim,
        Ok("real") => {
            assert!(
                support::real_kubeconfig().is_some(),
                "SOAK_BACKEND=real needs KTPLAY_TEST_KUBECONFIG=PATH"
            );
            Backend::Real
        }
        Ok(other) => panic!("SOAK_BACKEND={other}: sim or real"),
    }
}

// ---------------------------------------------------------------------------------------------
// One iteration's plan.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Disruption {
    None,
    Kill,
    Term,
    TermTwice {
        gap_ms: u64,
    },
    /// SIGSTOP for `secs` (past the 15 s lease), then SIGCONT; with `takeover`, another runner
    /// `--resume`s the run while the first one is stopped.
    Stop {
        secs: u64,
        takeover: bool,
    },
    ApiBurst {
        share: f64,
        ms: u64,
    },
}

impl fmt::Display for Disruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disruption::None => write!(f, "none"),
            Disruption::Kill => write!(f, "SIGKILL"),
            Disruption::Term => write!(f, "SIGTERM"),
            Disruption::TermTwice { gap_ms } => write!(f, "2×SIGTERM {gap_ms}ms apart"),
            Disruption::Stop { secs, takeover } => write!(
                f,
                "SIGSTOP {secs}s{}",
                if *takeover {
                    " + resume by another runner"
                } else {
                    ""
                }
            ),
            Disruption::ApiBurst { share, ms } => {
                write!(f, "API errors {:.0}% for {ms}ms", share * 100.0)
            }
        }
    }
}

impl Disruption {
    fn kind(&self) -> &'static str {
        match self {
            Disruption::None => "none",
            Disruption::Kill => "SIGKILL",
            Disruption::Term => "SIGTERM",
            Disruption::TermTwice { .. } => "2×SIGTERM",
            Disruption::Stop { .. } => "SIGSTOP",
            Disruption::ApiBurst { .. } => "API burst",
        }
    }
}

#[derive(Debug, Clone)]
struct Plan {
    seed: u64,
    disruption: Disruption,
    /// Milliseconds after the start of the first process.
    at_ms: u64,
    policy_off: bool,
}

/// `run_ms`: how long an undisturbed run takes (measured once per soak); the disruption comes at
/// 0–110 % of it, so most land mid-run, some before the lock or after the end.
fn plan(seed: u64, run_ms: u64, forced: Option<(Disruption, bool)>) -> Plan {
    let mut rng = StdRng::seed_from_u64(seed);
    let roll = rng.gen_range(0..100u32);
    let mut disruption = match roll {
        0..=9 => Disruption::None,
        10..=34 => Disruption::Kill,
        35..=54 => Disruption::Term,
        55..=74 => Disruption::TermTwice {
            gap_ms: rng.gen_range(0..=300),
        },
        75..=91 => Disruption::ApiBurst {
            share: rng.gen_range(0.3..0.7),
            ms: rng.gen_range(1_000..=4_000),
        },
        _ => Disruption::Stop {
            secs: 17,
            takeover: rng.gen_bool(0.5),
        },
    };
    let mut policy_off = rng.gen_bool(0.35);
    let mut at_ms = (rng.gen_range(0.0..1.1) * run_ms as f64) as u64;
    // Drawn whatever is forced, so the random numbers stay the same.
    let gap_ms = rng.gen_range(0..=300);
    let share = rng.gen_range(0.3..0.7);
    let ms = rng.gen_range(1_000..=4_000);
    if let Some((d, p)) = forced {
        policy_off = p;
        // The smoke test stays clear of the first moments (the ignored `soak` covers them).
        at_ms = at_ms.max(500);
        disruption = match d {
            Disruption::TermTwice { .. } => Disruption::TermTwice { gap_ms },
            Disruption::ApiBurst { .. } => Disruption::ApiBurst { share, ms },
            d => d,
        };
    }
    Plan {
        seed,
        disruption,
        at_ms,
        policy_off,
    }
}

// ---------------------------------------------------------------------------------------------
// What one iteration found.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    AllFrom,
    AllTo,
    Mixed,
}

struct Outcome {
    plan: Plan,
    state: State,
    /// Exit codes of every process, in order (`None`: killed by a signal).
    codes: Vec<Option<i32>>,
    resumes: usize,
    requests: u64,
    journal: String,
    /// The disruption landed after the first process had exited.
    late: bool,
    /// Things that make the iteration inconsistent.
    problems: Vec<String>,
    /// Exit codes outside the documented ones (the state may still be consistent).
    exit_problems: Vec<String>,
    /// The signal the first process died of, if it did.
    first_signal: Option<i32>,
    /// Things worth knowing that do not (a lease a SIGKILL left, removed with unlock --force).
    notes: Vec<String>,
    /// Every process's output, in order, for the report of an inconsistent run.
    outputs: Vec<String>,
    secs: f64,
    /// How long the first process ran.
    first_ms: f64,
}

#[derive(Default)]
struct Report {
    inconsistent: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// The loop and the table.

async fn soak_loop(
    backend: Backend,
    seed: u64,
    runs: u64,
    forced: Option<&[(Disruption, bool)]>,
) -> Report {
    println!(
        "soak: {runs} runs on {backend:?}, SOAK_SEED={seed} (iteration i replays with SOAK_SEED=seed+i SOAK_RUNS=1)"
    );
    let start = Instant::now();
    // The binary under test: a copy of the build's, taken once, so that a rebuild during a long
    // soak (a shared target directory) cannot change it half-way. `SOAK_BIN` picks another.
    let copy = tempfile::tempdir().unwrap();
    let bin = match std::env::var_os("SOAK_BIN").filter(|b| !b.is_empty()) {
        Some(b) => PathBuf::from(b),
        None => {
            let bin = copy.path().join("ktplay");
            std::fs::copy(env!("CARGO_BIN_EXE_ktplay"), &bin).unwrap();
            bin
        }
    };
    let bin = bin.as_path();
    let run_ms = match env_num("SOAK_RUN_MS") {
        Some(ms) => ms,
        None => {
            let undisturbed = Plan {
                seed,
                disruption: Disruption::None,
                at_ms: 0,
                policy_off: false,
            };
            let o = iteration(backend, bin, undisturbed).await;
            assert!(
                o.problems.is_empty() && o.state == State::AllTo,
                "the undisturbed calibration run failed: {:?}\n{}",
                o.problems,
                o.outputs.join("\n")
            );
            (o.first_ms as u64).max(500)
        }
    };
    println!(
        "soak: an undisturbed run takes {run_ms} ms (SOAK_RUN_MS={run_ms} to replay with the same timings)"
    );
    let mut outcomes = Vec::new();
    for i in 0..runs {
        let f = forced.and_then(|f| f.get(i as usize).copied());
        let p = plan(seed.wrapping_add(i), run_ms, f);
        let o = iteration(backend, bin, p).await;
        println!(
            "soak {:>3}/{runs} seed {:<20} {:<40} at {:>5}ms{}{} -> {:?} exits {} resumes {} journal {} requests {} ({:.1}s){}{}",
            i + 1,
            o.plan.seed,
            o.plan.disruption.to_string(),
            o.plan.at_ms,
            if o.plan.policy_off { " +policy-off" } else { "" },
            if o.late { " (late)" } else { "" },
            o.state,
            codes(&o.codes),
            o.resumes,
            o.journal,
            o.requests,
            o.secs,
            if o.notes.is_empty() { String::new() } else { format!(" note: {}", o.notes.join("; ")) },
            if o.problems.is_empty() && o.exit_problems.is_empty() { String::new() } else { format!(" PROBLEMS: {}", o.problems.iter().chain(&o.exit_problems).cloned().collect::<Vec<_>>().join("; ")) },
        );
        if !o.problems.is_empty() || !o.exit_problems.is_empty() {
            println!(
                "---- the processes of the inconsistent run:\n{}\n----",
                o.outputs.join("\n")
            );
        }
        outcomes.push(o);
    }
    let wall = start.elapsed();
    table(backend, seed, &outcomes, wall)
}

/// An exit code with its meaning.
fn label(c: Option<i32>) -> String {
    match c {
        None => "killed".into(),
        Some(OK) => format!("{OK} ok"),
        Some(ROLLED_BACK) => format!("{ROLLED_BACK} rolled back"),
        Some(INCOMPLETE) => format!("{INCOMPLETE} incomplete"),
        Some(REFUSED) => format!("{REFUSED} refused"),
        Some(LOCK_LOST) => format!("{LOCK_LOST} lock lost"),
        Some(c) => format!("{c} UNDOCUMENTED"),
    }
}

fn codes(c: &[Option<i32>]) -> String {
    c.iter()
        .map(|c| c.map_or("killed".to_string(), |c| c.to_string()))
        .collect::<Vec<_>>()
        .join(",")
}

fn table(backend: Backend, seed: u64, outcomes: &[Outcome], wall: Duration) -> Report {
    let n = outcomes.len();
    let consistent = outcomes.iter().filter(|o| o.problems.is_empty()).count();
    let from = outcomes
        .iter()
        .filter(|o| o.problems.is_empty() && o.state == State::AllFrom)
        .count();
    let to = outcomes
        .iter()
        .filter(|o| o.problems.is_empty() && o.state == State::AllTo)
        .count();
    let mut exits: BTreeMap<String, usize> = BTreeMap::new();
    let mut resumes: BTreeMap<usize, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for o in outcomes {
        for c in &o.codes {
            *exits.entry(label(*c)).or_default() += 1;
        }
        *resumes.entry(o.resumes).or_default() += 1;
        let k = kinds.entry(o.plan.disruption.kind()).or_default();
        k.0 += 1;
        if o.state == State::AllFrom {
            k.1 += 1;
        }
        if o.state == State::AllTo {
            k.2 += 1;
        }
    }
    let worst = outcomes.iter().max_by_key(|o| o.requests);
    let notes: usize = outcomes.iter().filter(|o| !o.notes.is_empty()).count();
    let join = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("\n=== soak on {backend:?}, SOAK_SEED={seed} ===");
    println!("| runs | {n} |");
    println!("| consistent | {consistent} (all-from {from}, all-to {to}) |");
    println!(
        "| inconsistent (state, lock or journal) | {} |",
        n - consistent
    );
    println!(
        "| runs with an undocumented exit | {} |",
        outcomes
            .iter()
            .filter(|o| !o.exit_problems.is_empty())
            .count()
    );
    println!("| exit codes (every process) | {} |", join(&exits));
    println!(
        "| resumes per run | {} |",
        resumes
            .iter()
            .map(|(k, v)| format!("{k}×: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| disruptions (runs, all-from, all-to) | {} |",
        kinds
            .iter()
            .map(|(k, (r, f, t))| format!("{k}: {r} ({f}/{t})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| policy-off runs | {} |",
        outcomes.iter().filter(|o| o.plan.policy_off).count()
    );
    println!(
        "| late disruptions (after exit) | {} |",
        outcomes.iter().filter(|o| o.late).count()
    );
    println!("| runs with notes | {notes} |");
    if let Some(w) = worst {
        println!(
            "| worst request count | {} (seed {}, {}) |",
            w.requests, w.plan.seed, w.plan.disruption
        );
    }
    println!(
        "| slowest run | {:.1} s |",
        outcomes.iter().map(|o| o.secs).fold(0.0, f64::max)
    );
    println!("| wall time | {:.1} s |", wall.as_secs_f64());
    let mut report = Report::default();
    for o in outcomes
        .iter()
        .filter(|o| !o.problems.is_empty() || !o.exit_problems.is_empty())
    {
        let line = format!(
            "seed {} {}{} at {}ms: {:?}, exits {}, journal {}: {}",
            o.plan.seed,
            o.plan.disruption,
            if o.plan.policy_off {
                " +policy-off"
            } else {
                ""
            },
            o.plan.at_ms,
            o.state,
            codes(&o.codes),
            o.journal,
            o.problems
                .iter()
                .chain(&o.exit_problems)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
        println!(
            "{}: {line}",
            if o.problems.is_empty() {
                "UNDOCUMENTED EXIT"
            } else {
                "INCONSISTENT"
            }
        );
        report.inconsistent.push(line);
    }
    for o in outcomes.iter().filter(|o| !o.notes.is_empty()) {
        println!(
            "note: seed {} {}: {}",
            o.plan.seed,
            o.plan.disruption,
            o.notes.join("; ")
        );
    }
    report
}

// ---------------------------------------------------------------------------------------------
// One iteration.

async fn iteration(backend: Backend, bin: &Path, plan: Plan) -> Outcome {
    let started = Instant::now();
    let mut config = SimConfig::default();
    if plan.policy_off {
        config.faults.add(policy_off());
    }
    let dir = tempfile::tempdir().unwrap();
    let ns = support::namespace("soak");
    let pb = support::copy_case(dir.path(), "upgrade.ktplay", &ns, &[("for 1s", "for 2s")]);
    let c = TestCluster::new(backend, config, &seed(&pb, &ns)).await;
    let kc = support::kubeconfig(dir.path(), &[("staging", &c)]);
    let mut o = Outcome {
        plan: plan.clone(),
        state: State::Mixed,
        codes: Vec::new(),
        resumes: 0,
        requests: 0,
        journal: "-".into(),
        late: false,
        problems: Vec::new(),
        exit_problems: Vec::new(),
        first_signal: None,
        notes: Vec::new(),
        outputs: Vec::new(),
        secs: 0.0,
        first_ms: 0.0,
    };

    let mut child = command(bin, &run_args(&pb, &kc, &c, &["--approve"]))
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let spawned = Instant::now();
    // The disruption's moment, unless the run ends before it.
    if tokio::time::timeout(Duration::from_millis(plan.at_ms), child.wait())
        .await
        .is_ok()
    {
        o.late = true;
    }
    let mut killed = false;
    if !o.late {
        match plan.disruption {
            Disruption::None => {}
            Disruption::Kill => {
                child.start_kill().unwrap();
                killed = true;
            }
            Disruption::Term => signal(pid, "-TERM"),
            Disruption::TermTwice { gap_ms } => {
                signal(pid, "-TERM");
                tokio::time::sleep(Duration::from_millis(gap_ms)).await;
                signal(pid, "-TERM");
            }
            Disruption::Stop { secs, takeover } => {
                signal(pid, "-STOP");
                tokio::time::sleep(Duration::from_secs(secs)).await;
                if takeover {
                    let status = journal_status(&c).await;
                    if matches!(status.as_deref(), Some("running") | Some("aborted")) {
                        let b = ktplay(
                            &mut o,
                            bin,
                            &run_args(&pb, &kc, &c, &["--approve", "--resume"]),
                        )
                        .await;
                        o.resumes += 1;
                        o.codes.push(b.status.code());
                        o.outputs
                            .push(format!("[resume while the first was stopped] {}", text(&b)));
                    }
                }
                signal(pid, "-CONT");
            }
            Disruption::ApiBurst { share, ms } => {
                // On the simulator, next to the other faults (set_api_errors replaces them, which
                // would lift the policy fault for a moment); on real, the recording proxy's.
                let fault = Fault::ApiErrors { share };
                match backend {
                    Backend::Sim => c.sim.set_fault(fault.clone()),
                    Backend::Real => c.set_api_errors(share),
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
                match backend {
                    Backend::Sim => {
                        c.sim.clear_fault(&fault);
                    }
                    Backend::Real => c.set_api_errors(0.0),
                }
            }
        }
    }
    let first = match tokio::time::timeout(Duration::from_secs(240), child.wait_with_output()).await
    {
        Ok(out) => out.unwrap(),
        Err(_) => {
            o.problems
                .push("the first process did not end within 240 s".into());
            o.secs = started.elapsed().as_secs_f64();
            return o;
        }
    };
    o.first_ms = spawned.elapsed().as_secs_f64() * 1000.0;
    o.first_signal = std::os::unix::process::ExitStatusExt::signal(&first.status);
    check_secrets(&mut o, &first);
    // Order: the first process, then (SIGSTOP + takeover) the runner that resumed meanwhile.
    o.codes.insert(0, first.status.code());
    o.outputs.insert(0, format!("[first] {}", text(&first)));
    if killed && first.status.code().is_some() {
        // The kill came as the process was exiting.
        killed = false;
    }

    // Resume while the journal says the run is unfinished.
    loop {
        let status = journal_status(&c).await;
        if !matches!(status.as_deref(), Some("running") | Some("aborted")) {
            break;
        }
        if o.resumes >= MAX_RESUMES {
            o.problems.push(format!(
                "still {} after {MAX_RESUMES} resumes",
                status.unwrap_or_default()
            ));
            break;
        }
        let r = ktplay(
            &mut o,
            bin,
            &run_args(&pb, &kc, &c, &["--approve", "--resume"]),
        )
        .await;
        o.resumes += 1;
        o.codes.push(r.status.code());
        o.outputs
            .push(format!("[resume {}] {}", o.resumes, text(&r)));
    }

    // A SIGKILL before the journal's first entry, or between the last entry and the lock's
    // release, leaves a lease whose process is gone and nothing to resume: the documented way out
    // is `ktplay unlock --force`.
    if killed {
        let mut ids = Vec::new();
        for l in leases(&c).await {
            let holder = l["spec"]["holderIdentity"].as_str().unwrap_or_default();
            let name = l["metadata"]["name"].as_str().unwrap_or_default();
            if let Some((_, run)) = holder.rsplit_once(" run ") {
                if holder.contains(&format!(" pid {pid} ")) {
                    ids.push(format!("{}/{name}/{}", c.ns, run.trim()));
                }
            }
        }
        for id in ids {
            if !leases(&c)
                .await
                .iter()
                .any(|l| id.split('/').nth(1) == l["metadata"]["name"].as_str())
            {
                continue; // went with an earlier unlock
            }
            let u = ktplay(
                &mut o,
                bin,
                &[
                    "unlock".into(),
                    "--force".into(),
                    id.clone(),
                    format!("--kubeconfig={}", kc.display()),
                ],
            )
            .await;
            o.notes.push(format!(
                "the SIGKILLed process left its lease with journal {}; unlock --force {id}: exit {:?}",
                journal_status(&c).await.unwrap_or_else(|| "absent".into()),
                u.status.code()
            ));
        }
    }

    // The verdict.
    let ended = settle(&c).await;
    if !ended {
        o.problems
            .push("deployments did not settle within 90 s".into());
    }
    let (state, detail) = state(&c).await;
    o.state = state;
    if state == State::Mixed {
        o.problems.push(format!("mixed state: {detail}"));
    }
    let left = leases(&c).await;
    if !left.is_empty() {
        o.problems.push(format!(
            "the lock is still held: {}",
            left.iter()
                .map(|l| format!(
                    "{} by {}",
                    l["metadata"]["name"], l["spec"]["holderIdentity"]
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let journal = journal_status(&c).await;
    o.journal = journal.clone().unwrap_or_else(|| "absent".into());
    match journal.as_deref() {
        Some("running") | Some("aborted") => {
            o.problems.push(format!("the journal says `{}`", o.journal))
        }
        Some("succeeded") if state != State::AllTo => o
            .problems
            .push("the journal says `succeeded` but not all at `to`".into()),
        Some("rolled_back") if state != State::AllFrom => o
            .problems
            .push("the journal says `rolled_back` but not all at `from`".into()),
        None if state != State::AllFrom => {
            o.problems.push("no journal, yet something changed".into())
        }
        _ => {}
    }
    for (i, code) in o.codes.iter().enumerate() {
        match code {
            None if i == 0 && killed => {}
            None if i == 0 => o.exit_problems.push(format!(
                "process 1 died of signal {} (its default action: ktplay had no handler for it yet), {} ms after its start",
                o.first_signal.map_or("?".into(), |s| s.to_string()),
                o.plan.at_ms
            )),
            None => o
                .exit_problems
                .push(format!("process {} died of a signal", i + 1)),
            Some(c) if !DOCUMENTED.contains(c) => o.exit_problems.push(format!(
                "process {} exited {c}, not a documented code",
                i + 1
            )),
            Some(c) if *c == INCOMPLETE && i + 1 == o.codes.len() => o.exit_problems.push(
                format!("the run ended on exit {INCOMPLETE} (rollback incomplete), never resumed to its end"),
            ),
            _ => {}
        }
    }
    if plan.policy_off && state == State::AllTo {
        // Consistent, but the gateway's 409 guard should have failed. On the real backend the
        // follower serving the guards re-reads the pods every 150 ms, so a guard right after the
        // rollout can still reach a 1.4.1 pod: worth a note, not a failure.
        let missed =
            "the policy fault was on, yet the 409 guard passed and the upgrade went through";
        match backend {
            Backend::Sim => o.problems.push(missed.into()),
            Backend::Real => o.notes.push(format!(
                "{missed} (the follower's view of the pods lags up to {} ms)",
                ktplay::sim::follow::EVERY.as_millis()
            )),
        }
    }
    o.requests = c
        .request_log()
        .iter()
        .map(|r| r.seq)
        .max()
        .unwrap_or(0)
        .max(c.request_log().len() as u64);
    o.secs = started.elapsed().as_secs_f64();
    o
}

fn policy_off() -> Fault {
    Fault::PolicyOff {
        version: "1.5.0".parse().unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// The final state.

const DEPLOYS: [&str; 7] = [
    "keeptrusts-api",
    "keeptrusts-gateway",
    "keeptrusts-console-blue",
    "keeptrusts-console-green",
    "worker-export",
    "worker-lifecycle",
    "worker-config",
];

const AT_FROM: [&str; 7] = [
    "keeptrusts/api:1.4.2",
    "keeptrusts/gateway:1.4.1",
    "keeptrusts/console:1.4.0",
    "keeptrusts/console:1.4.0",
    "keeptrusts/worker:1.4.0",
    "keeptrusts/worker:1.4.0",
    "keeptrusts/worker:1.4.0",
];

/// After a success the console serves green on 1.5.0 and blue idles on the version it ran.
const AT_TO: [&str; 7] = [
    "keeptrusts/api:1.5.0",
    "keeptrusts/gateway:1.5.0",
    "keeptrusts/console:1.4.0",
    "keeptrusts/console:1.5.0",
    "keeptrusts/worker:1.5.0",
    "keeptrusts/worker:1.5.0",
    "keeptrusts/worker:1.5.0",
];

async fn state(c: &TestCluster) -> (State, String) {
    let mut images = Vec::new();
    for d in DEPLOYS {
        let img = c
            .get("deployments", d)
            .await
            .and_then(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .map(String::from)
            })
            .unwrap_or_else(|| "<missing>".into());
        images.push(img);
    }
    let colour = c
        .get("services", "keeptrusts-console")
        .await
        .and_then(|s| s["spec"]["selector"]["version"].as_str().map(String::from))
        .unwrap_or_else(|| "<missing>".into());
    let canary = c
        .get("deployments", "keeptrusts-gateway-canary")
        .await
        .is_some();
    let detail = format!(
        "{}; console Service on {colour}; canary {}",
        DEPLOYS
            .iter()
            .zip(&images)
            .map(|(d, i)| format!("{d}={i}"))
            .collect::<Vec<_>>()
            .join(" "),
        if canary { "present" } else { "absent" }
    );
    let is = |want: &[&str; 7]| images.iter().zip(want).all(|(i, w)| i == w);
    let state = if !canary && colour == "blue" && is(&AT_FROM) {
        State::AllFrom
    } else if !canary && colour == "green" && is(&AT_TO) {
        State::AllTo
    } else {
        State::Mixed
    };
    (state, detail)
}

/// Every deployment's rollout finished (kubectl's test), within 90 s.
async fn settle(c: &TestCluster) -> bool {
    let start = Instant::now();
    loop {
        if c.list("deployments").await.iter().all(rollout_complete) {
            return true;
        }
        if start.elapsed() > Duration::from_secs(90) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rollout_complete(d: &Value) -> bool {
    let g = d["metadata"]["generation"].as_i64().unwrap_or(0);
    let s = &d["status"];
    let n = |k: &str| s[k].as_i64().unwrap_or(0);
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    g <= n("observedGeneration")
        && n("updatedReplicas") >= want
        && n("replicas") <= n("updatedReplicas")
        && n("availableReplicas") >= n("updatedReplicas")
}

async fn leases(c: &TestCluster) -> Vec<Value> {
    c.list("leases")
        .await
        .into_iter()
        .filter(|l| {
            l["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("ktplay-"))
        })
        .collect()
}

async fn journal_status(c: &TestCluster) -> Option<String> {
    c.list("configmaps")
        .await
        .into_iter()
        .find(|cm| {
            cm["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("ktplay-journal-"))
        })
        .map(|cm| {
            cm["data"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
}

// ---------------------------------------------------------------------------------------------
// Set-up and processes (as tests/run_e2e.rs).

/// The playbook's components at `from`, 2 replicas each.
fn seed(pb: &Path, ns: &str) -> Seed {
    let checked = ktplay::check::check_paths(&[pb.to_path_buf()]).unwrap();
    assert_eq!(checked.errors(), 0, "{:?}", checked.problems);
    let playbook = checked.playbooks.into_iter().next().unwrap().1;
    let mut seed = ktplay::rehearse::seed_for(&playbook, ns);
    for c in &mut seed.components {
        c.replicas = 2;
    }
    seed
}

fn run_args(pb: &Path, kc: &Path, c: &TestCluster, extra: &[&str]) -> Vec<String> {
    let url = |comp: &str, colour: Option<&str>| c.service_url(comp, colour).unwrap();
    let mut a = vec![
        "run".to_string(),
        pb.display().to_string(),
        "--env=staging".to_string(),
        format!("--kubeconfig={}", kc.display()),
        format!("--route=api.staging.example.com={}", url("api", None)),
        format!(
            "--route=gateway.staging.example.com={}",
            url("gateway", None)
        ),
        format!(
            "--route=console-blue.staging.internal={}",
            url("console", Some("blue"))
        ),
        format!(
            "--route=console-green.staging.internal={}",
            url("console", Some("green"))
        ),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn command(bin: &Path, args: &[String]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args)
        .env("TEST_KEY", TEST_KEY)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Run ktplay to its end (at most 240 s; a hang is a problem, exit `None`).
async fn ktplay(o: &mut Outcome, bin: &Path, args: &[String]) -> Output {
    match tokio::time::timeout(Duration::from_secs(240), command(bin, args).output()).await {
        Ok(out) => {
            let out = out.unwrap();
            check_secrets(o, &out);
            out
        }
        Err(_) => {
            o.problems
                .push(format!("`ktplay {}` did not end within 240 s", args[0]));
            Output {
                status: std::os::unix::process::ExitStatusExt::from_raw(9),
                stdout: Vec::new(),
                stderr: Vec::new(),
            }
        }
    }
}

fn check_secrets(o: &mut Outcome, out: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if all.contains(TEST_KEY) || all.contains(ADMIN_TOKEN) {
        o.problems.push("a secret leaked into the output".into());
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn signal(pid: u32, sig: &str) {
    // The process may have just exited: a failed kill is not an error.
    let _ = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}
