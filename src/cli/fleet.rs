//! `ktplay plan` of a file that holds a `fleet`: the plan of every wave and cluster.

use super::args::{CheckFormat, PlanArgs};
use super::{plural, print_json, report_problems, JsonLayout};
use crate::{check, exit};

/// The fleet plan when the file holds a fleet (or `--fleet` names one); `None` for a playbook.
pub(super) fn plan(args: &PlanArgs) -> Option<i32> {
    if args.fleet.is_none() {
        let text = std::fs::read_to_string(&args.file).ok()?;
        let file = crate::syntax::parse(crate::span::FileId(0), &text).ok()?;
        if !file
            .items
            .iter()
            .any(|i| matches!(i, crate::syntax::ast::Item::Fleet(_)))
        {
            return None;
        }
    }
    Some(plan_fleet(args))
}

fn plan_fleet(args: &PlanArgs) -> i32 {
    if args.cluster || args.kube.context.is_some() || args.kube.kubeconfig.is_some() {
        eprintln!(
            "error: `plan --cluster` reads one cluster; plan the playbook for one cluster's env instead"
        );
        return exit::USAGE;
    }
    if matches!(args.format, CheckFormat::Sarif | CheckFormat::Github) {
        eprintln!("error: --format sarif and github report a cluster's hazards; a fleet plan has none: use human or json");
        return exit::USAGE;
    }
    let checked = match check::check_paths(std::slice::from_ref(&args.file)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return exit::USAGE;
        }
    };
    if checked.errors() > 0 {
        report_problems(&checked);
        eprintln!(
            "failed: {} error{}; nothing planned",
            checked.errors(),
            plural(checked.errors())
        );
        return exit::FOUND_ERRORS;
    }
    let input = checked.inputs.first().copied();
    let fleets: Vec<&check::fleet::Fleet> = checked
        .fleets
        .iter()
        .filter(|(f, _)| Some(*f) == input)
        .map(|(_, fl)| fl)
        .collect();
    let names: Vec<&str> = fleets.iter().map(|f| f.name.as_str()).collect();
    let fleet = match (&args.fleet, fleets.as_slice()) {
        (Some(n), _) => fleets.iter().find(|f| &f.name == n).copied(),
        (None, [one]) => Some(*one),
        _ => None,
    };
    let Some(fleet) = fleet else {
        match &args.fleet {
            Some(n) => eprintln!(
                "error: `{}` has no fleet \"{n}\"; it holds: {}",
                args.file.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
            None => eprintln!(
                "error: `{}` holds several fleets ({}): name one with --fleet",
                args.file.display(),
                names.join(", ")
            ),
        }
        return exit::USAGE;
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
    exit::OK
}
