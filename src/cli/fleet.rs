//! `ktplay plan` of a file that holds a `fleet`: the plan of every wave and cluster.

use std::collections::HashMap;

use super::args::{CheckFormat, OutputFormat, PlanArgs, RehearseArgs, RunArgs, StatusArgs};
use super::{print_json, report_problems, JsonLayout};
use crate::check;
use crate::check::Checked;
use crate::exit::Exit;
use crate::run::fleet::{Approvals, ClusterRan, FleetRan, Members};
use crate::run::guards::UrlRewrite;
use crate::run::kube::Cluster;
use crate::run::log::output::Format;
use crate::run::{Cancel, RunOptions};

/// Whether the file holds a `fleet` item (a quick parse; a file that does not parse is not one).
fn holds_fleet(path: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    crate::syntax::parse(crate::span::FileId(0), &text).is_ok_and(|f| {
        f.items
            .iter()
            .any(|i| matches!(i, crate::syntax::ast::Item::Fleet(_)))
    })
}

/// The fleet plan when the file holds a fleet (or `--fleet` names one); `None` for a playbook.
pub(super) fn plan(args: &PlanArgs) -> Option<Exit> {
    (args.fleet.is_some() || holds_fleet(&args.file)).then(|| plan_fleet(args))
}

/// The fleet rehearsed when the file holds a fleet (or `--fleet` names one); `None` otherwise.
pub(super) fn rehearse(args: &RehearseArgs) -> Option<Exit> {
    (args.fleet.is_some() || holds_fleet(&args.file)).then(|| rehearse_fleet(args))
}

fn rehearse_fleet(args: &RehearseArgs) -> Exit {
    let checked = match super::checked_clean(&args.file, "nothing done") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let fleet = match pick(&checked, &args.file, args.fleet.as_deref()) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let ran = match crate::rehearse::fleet::rehearse(&checked, fleet, &args.fault) {
        Ok(r) => r,
        Err(why) => {
            eprintln!("error: {why}");
            return Exit::Usage;
        }
    };
    println!("Rehearsal of fleet \"{}\"", fleet.name);
    for line in &ran.journal {
        println!("{line}");
    }
    print_clusters(&ran.clusters);
    if let Some(path) = &args.journal {
        let mut text = String::new();
        for line in &ran.journal {
            text.push_str(&format!("{}\n", entry_doc(&fleet.name, line)));
        }
        for c in &ran.clusters {
            text.push_str(&format!("{}\n", cluster_doc(&fleet.name, c)));
        }
        if let Err(e) = std::fs::write(path, text) {
            eprintln!(
                "error: cannot write the fleet journal `{}`: {e}",
                path.display()
            );
            return Exit::Usage;
        }
    }
    println!(
        "{} in {:.0?} of simulated time",
        if ran.succeeded { "succeeded" } else { "failed" },
        ran.took
    );
    fleet_exit(&ran)
}

/// The fleet's exit code: 0, else the first failed cluster's (1 rolled back, 3 refused, 4
/// incomplete, 5 lock lost), else 1 (a soak or an approval failed).
fn fleet_exit(ran: &FleetRan) -> Exit {
    let failed_run = ran
        .clusters
        .iter()
        .filter_map(|c| c.outcome.as_ref())
        .find(|o| **o != crate::run::Outcome::Succeeded);
    match (ran.succeeded, failed_run) {
        (true, _) => Exit::Ok,
        (false, Some(o)) => o.exit(),
        (false, None) => Exit::Failed,
    }
}

fn print_clusters(clusters: &[ClusterRan]) {
    for c in clusters {
        let finals: Vec<String> = c.finals.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "cluster `{}`: {}; lock {}; journal {}",
            c.name,
            finals.join(", "),
            if c.lock_held { "HELD" } else { "free" },
            match &c.journal_end {
                Some(end) => format!("{} events, run_end {end}", c.journal_events),
                None => "none (never ran)".into(),
            }
        );
    }
}

fn entry_doc(fleet: &str, line: &str) -> serde_json::Value {
    serde_json::json!({ "fleet": fleet, "entry": line.trim_start() })
}

fn cluster_doc(fleet: &str, c: &ClusterRan) -> serde_json::Value {
    serde_json::json!({
        "fleet": fleet,
        "cluster": c.name,
        "finals": c.finals,
        "lock_held": c.lock_held,
        "run_end": c.journal_end,
        "events": c.journal_events,
    })
}

/// The clusters of a fleet run: the kube contexts the fleet names.
struct Contexts<'a> {
    derived: &'a [Checked],
    matrix: Option<&'a crate::matrix::Matrix>,
    clusters: Vec<Cluster>,
    secrets: Vec<HashMap<String, String>>,
    rewrite: UrlRewrite,
    hazards: crate::run::kube::hazards::Settings,
    accept_drift: bool,
}

impl Members for Contexts<'_> {
    fn checked(&self, c: usize) -> &Checked {
        &self.derived[c]
    }
    fn matrix(&self) -> Option<&crate::matrix::Matrix> {
        self.matrix
    }
    fn cluster(&self, c: usize) -> Cluster {
        self.clusters[c].clone()
    }
    fn options(&self, c: usize) -> RunOptions {
        RunOptions {
            accept_drift: self.accept_drift,
            format: Format::Quiet,
            hazards: self.hazards.clone(),
            ..RunOptions::new(self.secrets[c].clone(), self.rewrite.clone())
        }
    }
    fn secrets(&self, c: usize) -> &HashMap<String, String> {
        &self.secrets[c]
    }
    fn rewrite(&self, _c: usize) -> &UrlRewrite {
        &self.rewrite
    }
}

/// The fleet run when the file holds a fleet (or `--fleet` names one); `None` otherwise.
pub(super) fn run(args: &RunArgs) -> Option<Exit> {
    (args.fleet.is_some() || holds_fleet(&args.file)).then(|| run_fleet(args))
}

/// The fleet's status when the file holds a fleet (or `--fleet` names one); `None` otherwise.
pub(super) fn status(args: &StatusArgs) -> Option<Exit> {
    (args.fleet.is_some() || holds_fleet(&args.file)).then(|| status_fleet(args))
}

/// Flags of a one-cluster run that a fleet run does not take, and why.
fn fleet_usage(args: &RunArgs) -> Option<&'static str> {
    if args.env.is_some() {
        Some(
            "--env: each cluster of a fleet runs its own env (the fleet's `env`, or the cluster's)",
        )
    } else if args.playbook.is_some() {
        Some("--playbook: the fleet names its playbook")
    } else if args.kube.context.is_some() {
        Some("--context: each cluster of a fleet runs in its own context")
    } else if args.resume {
        Some("--resume: a fleet is not resumed as a whole yet; resume the interrupted cluster with `ktplay run --resume --context CONTEXT` on its playbook")
    } else if !args.after_context.is_empty() {
        Some("--after-context: a fleet's waves are its promotion order")
    } else if args.format == OutputFormat::Json {
        Some(
            "--format json: a fleet run prints its journal; --journal FILE writes it as JSON lines",
        )
    } else {
        None
    }
}

fn run_fleet(args: &RunArgs) -> Exit {
    if let Some(why) = fleet_usage(args) {
        eprintln!("error: {why}");
        return Exit::Usage;
    }
    let checked = match super::checked_clean(&args.file, "nothing was run") {
        Ok(c) => c,
        Err(Exit::Failed) => {
            eprintln!("refused: the fleet has errors; nothing was run");
            return Exit::Refused;
        }
        Err(code) => return code,
    };
    let fleet = match pick(&checked, &args.file, args.fleet.as_deref()) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let rewrite = match super::run::routes(&args.route) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let hazards = match args.hazard.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    if let Err(why) = crate::run::fleet::admit(fleet, Approvals::Run { flag: args.approve }) {
        eprintln!("refused: {why}; nothing was run");
        return Exit::Refused;
    }
    let (pfile, pb) = &checked.playbooks[fleet.playbook];
    let matrix = checked.matrix_of(pb);
    let derived: Vec<Checked> = (0..fleet.clusters.len())
        .map(|c| checked.derived(vec![(*pfile, fleet.playbook_for(pb, c))]))
        .collect();
    let mut secrets = Vec::new();
    for (c, d) in derived.iter().enumerate() {
        let pbc = &d.playbooks[0].1;
        match super::run::secrets_from_env(pbc, pbc.envs.first()) {
            Ok(s) => secrets.push(s),
            Err(m) => {
                eprintln!(
                    "refused: cluster `{}`: {m}; nothing was run",
                    fleet.clusters[c].name
                );
                return Exit::Refused;
            }
        }
    }
    super::run::runtime().block_on(async {
        // Every cluster reachable before the first wave starts.
        let mut clusters = Vec::new();
        for (c, d) in derived.iter().enumerate() {
            let pbc = &d.playbooks[0].1;
            let env = pbc.envs.first();
            let ns = super::run::namespace(pbc, env, args.kube.namespace.as_deref());
            match super::run::connect(&args.kube, env, &ns).await {
                Ok(cl) => clusters.push(cl),
                Err(e) => {
                    eprintln!(
                        "refused: cluster `{}` (context `{}`): {e}; nothing was run",
                        fleet.clusters[c].name, fleet.clusters[c].context
                    );
                    return Exit::Refused;
                }
            }
        }
        let members = Contexts {
            derived: &derived,
            matrix,
            clusters,
            secrets,
            rewrite,
            hazards,
            accept_drift: args.accept_drift,
        };
        let file = match &args.journal {
            Some(path) => match std::fs::File::create(path) {
                Ok(f) => Some(std::sync::Mutex::new(f)),
                Err(e) => {
                    eprintln!(
                        "error: cannot write the fleet journal `{}`: {e}",
                        path.display()
                    );
                    return Exit::Usage;
                }
            },
            None => None,
        };
        let write = |doc: serde_json::Value| {
            if let Some(f) = &file {
                use std::io::Write;
                if let Ok(mut f) = f.lock() {
                    let _ = writeln!(f, "{doc}");
                }
            }
        };
        println!("Run of fleet \"{}\"", fleet.name);
        let cancel = Cancel::signals_handled_by_caller();
        let signals = crate::run::fleet::spawn_signals(cancel.clone());
        let on_entry = |line: &str| {
            println!("{line}");
            write(entry_doc(&fleet.name, line));
        };
        let ran = crate::run::fleet::drive(
            fleet,
            &members,
            Approvals::Run { flag: args.approve },
            &cancel,
            &on_entry,
        )
        .await;
        signals.abort();
        let ran = match ran {
            Ok(r) => r,
            Err(why) => {
                eprintln!("error: {why}");
                return Exit::Incomplete;
            }
        };
        print_clusters(&ran.clusters);
        for c in &ran.clusters {
            write(cluster_doc(&fleet.name, c));
        }
        println!(
            "{} in {:.0?}",
            if ran.succeeded { "succeeded" } else { "failed" },
            ran.took
        );
        fleet_exit(&ran)
    })
}

fn status_fleet(args: &StatusArgs) -> Exit {
    if args.env.is_some() || args.playbook.is_some() || args.kube.context.is_some() {
        eprintln!("error: --env, --playbook and --context name one cluster's run; `status` of a fleet shows every cluster in its own context");
        return Exit::Usage;
    }
    let checked = match super::checked_clean(&args.file, "nothing shown") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let fleet = match pick(&checked, &args.file, args.fleet.as_deref()) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let (pfile, pb) = &checked.playbooks[fleet.playbook];
    super::run::runtime().block_on(async {
        let mut out = Vec::new();
        for (c, cl) in fleet.clusters.iter().enumerate() {
            let d = checked.derived(vec![(*pfile, fleet.playbook_for(pb, c))]);
            let pbc = &d.playbooks[0].1;
            let env = pbc.envs.first();
            let ns = super::run::namespace(pbc, env, args.kube.namespace.as_deref());
            let cluster = match super::run::connect(&args.kube, env, &ns).await {
                Ok(x) => x,
                Err(e) => {
                    eprintln!(
                        "error: cluster `{}` (context `{}`): {e}",
                        cl.name, cl.context
                    );
                    return Exit::Usage;
                }
            };
            let lock = crate::run::kube::lock::describe(&cluster, &pbc.name).await;
            let journal = crate::run::log::journal::load(&cluster, &pbc.digest).await;
            let (lock, journal) = match (lock, journal) {
                (Ok(l), Ok(j)) => (l, j),
                (l, j) => {
                    let e = l.err().map(|e| e.to_string());
                    let e = e.or_else(|| j.err().map(|e| e.to_string()));
                    eprintln!(
                        "error: cluster `{}` (context `{}`): {}",
                        cl.name,
                        cl.context,
                        e.unwrap_or_default()
                    );
                    return Exit::Usage;
                }
            };
            out.push(serde_json::json!({
                "cluster": cl.name, "context": cl.context, "namespace": ns,
                "lock": lock,
                "journal": journal.as_ref().map(|j| serde_json::json!({
                    "run": j.run(), "status": j.status(), "events": j.events().len(),
                })),
            }));
        }
        if args.format == OutputFormat::Json {
            print_json(
                &serde_json::json!({ "fleet": fleet.name, "clusters": out }),
                JsonLayout::Compact,
            );
            return Exit::Ok;
        }
        println!("fleet \"{}\" (playbook \"{}\")", fleet.name, pb.name);
        for doc in &out {
            let journal = match &doc["journal"] {
                serde_json::Value::Null => "no journal (never ran here)".to_string(),
                j => format!(
                    "run {}: {} ({} events)",
                    crate::run::shown::shown(j["run"].as_str().unwrap_or("?")),
                    crate::run::shown::shown(j["status"].as_str().unwrap_or("?")),
                    j["events"]
                ),
            };
            println!(
                "  cluster `{}` (context `{}`, namespace {}): {journal}; lock {}",
                doc["cluster"].as_str().unwrap_or_default(),
                doc["context"].as_str().unwrap_or_default(),
                doc["namespace"].as_str().unwrap_or_default(),
                doc["lock"].as_str().unwrap_or("free")
            );
        }
        Exit::Ok
    })
}

/// The fleet of the file: the one named, or the only one.
fn pick<'c>(
    checked: &'c check::Checked,
    path: &std::path::Path,
    name: Option<&str>,
) -> Result<&'c check::fleet::Fleet, Exit> {
    let input = checked.inputs.first().copied();
    let fleets: Vec<&check::fleet::Fleet> = checked
        .fleets
        .iter()
        .filter(|(f, _)| Some(*f) == input)
        .map(|(_, fl)| fl)
        .collect();
    let names: Vec<&str> = fleets.iter().map(|f| f.name.as_str()).collect();
    let fleet = match (name, fleets.as_slice()) {
        (Some(n), _) => fleets.iter().find(|f| f.name == n).copied(),
        (None, [one]) => Some(*one),
        _ => None,
    };
    fleet.ok_or_else(|| {
        match name {
            Some(n) => eprintln!(
                "error: `{}` has no fleet \"{n}\"; it holds: {}",
                path.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
            None => eprintln!(
                "error: `{}` holds several fleets ({}): name one with --fleet",
                path.display(),
                names.join(", ")
            ),
        }
        Exit::Usage
    })
}

fn plan_fleet(args: &PlanArgs) -> Exit {
    if args.cluster || args.kube.context.is_some() || args.kube.kubeconfig.is_some() {
        eprintln!(
            "error: `plan --cluster` reads one cluster; plan the playbook for one cluster's env instead"
        );
        return Exit::Usage;
    }
    if matches!(args.format, CheckFormat::Sarif | CheckFormat::Github) {
        eprintln!("error: --format sarif and github report a cluster's hazards; a fleet plan has none: use human or json");
        return Exit::Usage;
    }
    let checked = match super::checked_clean(&args.file, "nothing done") {
        Ok(c) => c,
        Err(code) => return code,
    };
    let fleet = match pick(&checked, &args.file, args.fleet.as_deref()) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let (file, pb) = &checked.playbooks[fleet.playbook];
    let plan = crate::fleet_plan::plan(fleet, pb, &checked.sources, *file);
    match args.format {
        CheckFormat::Json => print_json(
            &serde_json::to_value(&plan).expect("plan serializes"),
            JsonLayout::Compact,
        ),
        _ => {
            if !checked.problems.is_empty() {
                report_problems(&checked);
            }
            print!("{}", crate::fleet_plan::render_human(&plan));
        }
    }
    Exit::Ok
}
