//! A statement in words, with its values resolved for one env and secrets never shown: what
//! `plan` lists and what `run` prints and journals for each statement. Its own module, so the
//! runner and the plan share it without the runner depending on the plan.

use crate::program::*;
use crate::resolve::{Mode, Scope};
use crate::syntax::format_duration;

fn render(scope: &Scope, t: &Template) -> String {
    scope
        .render(t, Mode::Display)
        .unwrap_or_else(|e| format!("(unresolved: {e})"))
}

/// One statement in words, with values resolved for display (secrets never shown).
pub fn describe(op: &Op, scope: &Scope) -> String {
    let pb = scope.playbook;
    let name = |c: &usize| pb.components[*c].name.as_str();
    let deploys = |c: &usize| pb.components[*c].deployments().join(", ");
    let opt_d = |label: &str, d: &Option<std::time::Duration>| {
        d.map(|d| format!(" {label} {}", format_duration(d)))
            .unwrap_or_default()
    };
    match op {
        Op::Rolling {
            comp,
            to,
            max_unavailable,
            max_surge,
            timeout,
        } => {
            let mut s = format!("rolling {} to {} ({})", name(comp), to, deploys(comp));
            if let Some(m) = max_unavailable {
                s.push_str(&format!(" max_unavailable {m}"));
            }
            if let Some(m) = max_surge {
                s.push_str(&format!(" max_surge {m}"));
            }
            s.push_str(&opt_d("timeout", timeout));
            s
        }
        Op::Canary {
            comp,
            to,
            weight,
            steps,
            duration,
            timeout,
            ..
        } => {
            let share = match &pb.components[*comp].traffic {
                Some(t) => format!("of traffic by {} {}", t.kind.as_str(), t.name),
                None => "of replicas".to_string(),
            };
            let at = if steps.len() > 1 {
                format!(
                    "in steps {} {share}{}",
                    steps
                        .iter()
                        .map(|w| format!("{w}%"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    opt_d("each for", duration)
                )
            } else {
                format!("at {weight}% {share}{}", opt_d("for", duration))
            };
            format!(
                "canary {} to {} {at}{}, then promote and remove the canary",
                name(comp),
                to,
                opt_d("timeout", timeout)
            )
        }
        Op::BlueGreen {
            comp, to, timeout, ..
        } => {
            let svc = match &pb.components[*comp].workload {
                Workload::BlueGreen(bg) => bg.service.clone(),
                Workload::Deployments(_) => String::new(),
            };
            format!(
                "blue_green {} to {}{}: deploy the idle colour, guards, switch Service {svc}",
                name(comp),
                to,
                opt_d("timeout", timeout)
            )
        }
        Op::Restart { comp, timeout } => format!(
            "restart {} ({}){}",
            name(comp),
            deploys(comp),
            opt_d("timeout", timeout)
        ),
        Op::Undo { comp, revision } => match revision {
            Some(r) => format!("undo {} to revision {r}", name(comp)),
            None => format!("undo {}", name(comp)),
        },
        Op::Switch { comp, colour } => format!("switch {} to {}", name(comp), colour.as_str()),
        Op::Scale {
            comp,
            replicas,
            timeout,
        } => format!(
            "scale {} to {replicas} replicas{}",
            name(comp),
            opt_d("timeout", timeout)
        ),
        Op::Pause(d) => format!("pause {}", format_duration(*d)),
        Op::Approve(q) => format!("approve \"{}\"", render(scope, q)),
        Op::Guard(g) => describe_guard(g, scope),
    }
}

fn describe_guard(g: &Guard, scope: &Scope) -> String {
    let pb = scope.playbook;
    let within = g
        .within
        .map(|d| format!(" within {}", format_duration(d)))
        .unwrap_or_default();
    let body = match &g.kind {
        GuardKind::Http(h) => {
            let mut s = format!("guard http {} {}", h.method, render(scope, &h.url));
            for (k, v) in &h.headers {
                let shown = if v
                    .parts
                    .iter()
                    .any(|p| matches!(p, TemplatePart::Let(n) if scope.is_secret(n)))
                {
                    "(secret)".to_string()
                } else {
                    render(scope, v)
                };
                s.push_str(&format!(" header {k}: {shown}"));
            }
            if let Some(b) = &h.bearer {
                let shown = if scope.is_secret(b) {
                    "(secret)".into()
                } else {
                    render_let(scope, b)
                };
                s.push_str(&format!(" bearer {shown}"));
            }
            match &h.body {
                Some(HttpBody::Json(v)) => s.push_str(&format!(" json {v}")),
                Some(HttpBody::Text(t)) => s.push_str(&format!(" body \"{}\"", render(scope, t))),
                None => {}
            }
            match h.expect_status {
                Some(st) => s.push_str(&format!(" expect {st}")),
                None => s.push_str(" expect 2xx"),
            }
            for c in &h.expect_contains {
                s.push_str(&format!(" expect body contains \"{}\"", render(scope, c)));
            }
            if h.check.is_some() {
                s.push_str(" check rhai");
            }
            s
        }
        GuardKind::Metric(m) => {
            let mut s = format!(
                "guard metric {} query \"{}\" {}",
                render(scope, &m.url),
                render(scope, &m.query),
                describe_condition(&m.condition)
            );
            if let Some(e) = m.every {
                s.push_str(&format!(" every {}", format_duration(e)));
            }
            if let Some(d) = m.duration {
                s.push_str(&format!(" for {}", format_duration(d)));
            }
            if m.failure_limit > 0 {
                s.push_str(&format!(" failure_limit {}", m.failure_limit));
            }
            match m.no_data {
                NoData::Fail => {}
                NoData::Pass => s.push_str(" no_data pass"),
                NoData::Ignore => s.push_str(" no_data ignore"),
            }
            if let Some(b) = &m.bearer {
                let shown = if scope.is_secret(b) {
                    "(secret)".into()
                } else {
                    render_let(scope, b)
                };
                s.push_str(&format!(" bearer {shown}"));
            }
            s
        }
        GuardKind::Logs { comp, pattern } => format!(
            "guard logs {} matches \"{pattern}\"",
            pb.components[*comp].name
        ),
        GuardKind::Ready { comp } => format!("guard ready {}", pb.components[*comp].name),
        GuardKind::Hook { shown, .. } => format!("guard hook \"{shown}\""),
        GuardKind::Rhai { .. } => "guard rhai (inline script)".into(),
    };
    let mut body = body;
    body.push_str(&within);
    body
}

/// `below 0.01`, `below baseline * 1.2`, `between 0 5`.
pub(crate) fn describe_condition(c: &Condition) -> String {
    let bound = |t: &Threshold| match t {
        Threshold::Value(v) => format!("{v}"),
        Threshold::Baseline(f) if *f == 1.0 => "baseline".to_string(),
        Threshold::Baseline(f) => format!("baseline * {f}"),
    };
    match c {
        Condition::Below(t) => format!("below {}", bound(t)),
        Condition::Above(t) => format!("above {}", bound(t)),
        Condition::Between(a, b) => format!("between {a} {b}"),
    }
}

fn render_let(scope: &Scope, name: &str) -> String {
    scope
        .let_value(name, Mode::Display)
        .unwrap_or_else(|e| format!("(unresolved: {e})"))
}
