//! Checked playbook + env → the plan a person reviews before a run (Terraform's plan is the
//! model): every statement with its values resolved for the env (secrets as `(secret)`), the image
//! changes, the version state after each statement, each stage's way back, and a summary.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::matrix::{format_set, State};
use crate::program::*;
use crate::resolve::{Live, Scope};
use crate::source::SourceMap;
use crate::span::FileId;

pub use crate::describe::describe;

/// The plan for one env.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub playbook: String,
    pub env: Option<String>,
    pub namespace: String,
    pub context: Option<String>,
    pub digest: String,
    pub matrix: Option<String>,
    pub on_failure: OnFailure,
    pub stages: Vec<PlanStage>,
    pub summary: Summary,
}

#[derive(Debug, Serialize)]
pub struct PlanStage {
    pub name: String,
    pub line: usize,
    pub statements: Vec<PlanStatement>,
    /// What runs if this stage (or a later one) fails.
    pub rollback: String,
}

#[derive(Debug, Serialize)]
pub struct PlanStatement {
    pub line: usize,
    pub statement: String,
    /// Nested guards of `canary` and `blue_green`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<String>,
    pub image_change: Option<ImageChange>,
    /// Versions every component runs once the statement is done.
    pub state_after: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct ImageChange {
    pub component: String,
    pub image: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub stages: usize,
    pub actions: usize,
    pub guards: usize,
    pub image_changes: usize,
    /// "compatible with matrix X on every path" or why there is no check.
    pub compatibility: String,
}

/// Build the plan of `pb` for `env` (None: a playbook without envs).
pub fn plan(pb: &Playbook, env: Option<&Env>, sources: &SourceMap, file: FileId) -> Plan {
    let live = Live::default();
    let scope = Scope::new(pb, env, &live);
    let program = crate::check::model::to_model(pb);
    let trace = crate::model::trace(&program);
    let mut state: State = program.initial_state();
    let mut steps = trace.into_iter();
    let line = |s: crate::span::Span| sources.line_col(file, s.start as usize).0;
    let mut stages = Vec::new();
    let (mut actions, mut guards, mut changes) = (0, 0, 0);
    for stage in &pb.stages {
        let mut statements = Vec::new();
        for st in &stage.stmts {
            let before = state.clone();
            if let Some(step) = steps.next() {
                if let Some(last) = step.states.last() {
                    state = last.clone();
                }
            }
            if st.op.is_action() {
                actions += 1;
            } else if matches!(st.op, Op::Guard(_)) {
                guards += 1;
            }
            let image_change = image_change(pb, &st.op, &before);
            changes += image_change.is_some() as usize;
            let nested: Vec<String> = match &st.op {
                Op::Canary { guards: g, .. } | Op::BlueGreen { guards: g, .. } => {
                    guards += g.len();
                    g.iter().map(|x| describe(&x.op, &scope)).collect()
                }
                _ => vec![],
            };
            statements.push(PlanStatement {
                line: line(st.span),
                statement: describe(&st.op, &scope),
                guards: nested,
                image_change,
                state_after: state
                    .iter()
                    .map(|(c, vs)| (c.clone(), vs.iter().map(|v| v.to_string()).collect()))
                    .collect(),
            });
        }
        stages.push(PlanStage {
            name: stage.name.clone(),
            line: line(stage.span),
            statements,
            rollback: describe_rollback(stage, pb, &scope),
        });
    }
    let compatibility = match &pb.matrix {
        Some(m) => {
            format!("every state, forward and on every rollback path, is allowed by matrix `{m}`")
        }
        None => "not checked: the playbook names no matrix".into(),
    };
    Plan {
        playbook: pb.name.clone(),
        env: env.map(|e| e.name.clone()),
        namespace: scope.namespace().to_string(),
        context: env.and_then(|e| e.context.clone()),
        digest: pb.digest.clone(),
        matrix: pb.matrix.clone(),
        on_failure: pb.on_failure,
        stages,
        summary: Summary {
            stages: pb.stages.len(),
            actions,
            guards,
            image_changes: changes,
            compatibility,
        },
    }
}

fn image_change(pb: &Playbook, op: &Op, before: &State) -> Option<ImageChange> {
    let (comp, to) = match op {
        Op::Rolling { comp, to, .. }
        | Op::Canary { comp, to, .. }
        | Op::BlueGreen { comp, to, .. } => (*comp, to),
        _ => return None,
    };
    let c = &pb.components[comp];
    let from = before
        .get(&c.name)
        .map(|vs| {
            if vs.len() == 1 {
                vs.iter().next().map(|v| v.to_string()).unwrap_or_default()
            } else {
                format_set(vs.iter())
            }
        })
        .unwrap_or_else(|| c.from.to_string());
    if from == to.to_string() {
        return None; // already there (a canary's promotion did it): nothing changes
    }
    Some(ImageChange {
        component: c.name.clone(),
        image: c.image.clone(),
        from,
        to: to.to_string(),
    })
}

fn describe_rollback(stage: &Stage, pb: &Playbook, scope: &Scope) -> String {
    if pb.on_failure == OnFailure::Halt {
        return "none (on_failure halt)".into();
    }
    match &stage.rollback {
        Rollback::None(_) => "none (rollback none)".into(),
        Rollback::Block(stmts, _) => {
            let list: Vec<String> = stmts.iter().map(|s| describe(&s.op, scope)).collect();
            format!("rollback block: {}", list.join("; "))
        }
        Rollback::Implicit => {
            let undo: Vec<String> = stage
                .stmts
                .iter()
                .rev()
                .filter_map(|s| implicit_rollback(&s.op, pb))
                .collect();
            if undo.is_empty() {
                "nothing to undo".into()
            } else {
                format!("implicit, newest first: {}", undo.join("; "))
            }
        }
    }
}

/// The implicit rollback of an action, in words; `None` for statements that need none.
pub fn implicit_rollback(op: &Op, pb: &Playbook) -> Option<String> {
    let name = |c: &usize| pb.components[*c].name.clone();
    match op {
        Op::Rolling { comp, .. } => Some(format!(
            "restore {} to the revision it replaced",
            name(comp)
        )),
        Op::Canary { comp, .. } => Some(format!(
            "remove the {} canary; restore it if promoted",
            name(comp)
        )),
        Op::BlueGreen { comp, .. } => Some(format!(
            "switch {} back to the colour that served before",
            name(comp)
        )),
        Op::Switch { comp, .. } => Some(format!("switch {} back", name(comp))),
        Op::Scale { comp, .. } => Some(format!("scale {} back", name(comp))),
        _ => None,
    }
}

/// The plan as a person reads it.
pub fn render_human(p: &Plan) -> String {
    let mut out = String::new();
    out.push_str(&format!("Plan for playbook \"{}\"", p.playbook));
    if let Some(e) = &p.env {
        out.push_str(&format!(" in env {e}"));
    }
    out.push('\n');
    out.push_str(&format!(
        "  namespace {}{}, matrix {}, on failure {}\n  digest {}\n",
        p.namespace,
        p.context
            .as_ref()
            .map(|c| format!(", context {c}"))
            .unwrap_or_default(),
        p.matrix.as_deref().unwrap_or("(none)"),
        match p.on_failure {
            OnFailure::Rollback => "roll back",
            OnFailure::Halt => "halt",
        },
        &p.digest[..16.min(p.digest.len())]
    ));
    for s in &p.stages {
        out.push_str(&format!("\nstage {} (line {})\n", s.name, s.line));
        for st in &s.statements {
            out.push_str(&format!("  {:>4}  {}\n", st.line, st.statement));
            for g in &st.guards {
                out.push_str(&format!("          · {g}\n"));
            }
            if let Some(c) = &st.image_change {
                out.push_str(&format!("        ~ {}: {} → {}\n", c.image, c.from, c.to));
            }
            let state: Vec<String> = st
                .state_after
                .iter()
                .map(|(c, vs)| {
                    if vs.len() == 1 {
                        format!("{c} {}", vs[0])
                    } else {
                        format!("{c} {{{}}}", vs.join(", "))
                    }
                })
                .collect();
            out.push_str(&format!("        = {}\n", state.join(", ")));
        }
        out.push_str(&format!("  on failure: {}\n", s.rollback));
    }
    out.push_str(&format!(
        "\nPlan: {} stage{}, {} action{}, {} guard{}, {} image change{}; compatibility: {}.\n",
        p.summary.stages,
        plural(p.summary.stages),
        p.summary.actions,
        plural(p.summary.actions),
        p.summary.guards,
        plural(p.summary.guards),
        p.summary.image_changes,
        plural(p.summary.image_changes),
        p.summary.compatibility
    ));
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
