//! `ktplay plan` of a file that holds a `fleet`: the plan of every wave and cluster.

use super::args::{CheckFormat, PlanArgs, RehearseArgs};
use super::{print_json, report_problems, JsonLayout};
use crate::check;
use crate::exit::Exit;

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
    for c in &ran.clusters {
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
    if let Some(path) = &args.journal {
        let mut text = String::new();
        for line in &ran.journal {
            let doc = serde_json::json!({ "fleet": fleet.name, "entry": line.trim_start() });
            text.push_str(&format!("{doc}\n"));
        }
        for c in &ran.clusters {
            let doc = serde_json::json!({
                "fleet": fleet.name,
                "cluster": c.name,
                "finals": c.finals,
                "lock_held": c.lock_held,
                "run_end": c.journal_end,
                "events": c.journal_events,
            });
            text.push_str(&format!("{doc}\n"));
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
        ran.simulated
    );
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
