//! The compatibility model: execute a playbook abstractly and check every state it can pass
//! through — forward and on every rollback path — against a [`Matrix`].
//!
//! The checker's lowering turns the AST into the small IR below ([`Program`]); [`check`] returns
//! every finding as a diagnostic, [`analyse`] the same findings as data. The runner re-checks live
//! before each action with [`forward_states`] / [`restore_states`] and
//! [`Matrix::check_state`](crate::matrix::Matrix::check_state), so both agree on what a statement
//! does to the versions.
//!
//! # The abstract run
//!
//! A *state* maps each component to the **set** of versions its pods run. The run starts with every
//! component at `{from}`. One statement changes at most one component:
//!
//! | statement | states it passes through (`P` = the component's set before it) | implicit rollback |
//! |---|---|---|
//! | `rolling C to V` | `P ∪ {V}`, then `{V}` | restore `P` |
//! | `canary C … { guards }` | `P ∪ {V}` while the canary and its guards run and during the promotion, then `{V}` once the canary is removed | restore `P` (remove the canary; undo the promotion if it happened) |
//! | `blue_green C { guards }` | `P ∪ {V}` from the idle colour's deploy on, and it **stays** `P ∪ {V}`: the old colour still runs after the switch | restore `P` (see below) |
//! | `undo C` (outside a rollback block) | `kubectl rollout undo`: the previous revision, see below | none |
//! | `undo C to revision N` | not modelled: no change, with a warning | none |
//! | `switch`, `scale`, `restart`, `guard`, `pause`, `approve` | no change of versions | switch back / scale back / none |
//!
//! "Restore `P`" from the component's current set `S` passes through `S ∪ P`, then ends at `P`:
//! old pods come back beside the new ones before the new ones go.
//!
//! **Revisions.** Each (non-blue-green) component keeps its revision history in the abstract run,
//! starting with one revision `{from}`. `rolling` and a canary's promotion add a revision (an
//! existing revision with the same version moves to the top, as Kubernetes reuses the ReplicaSet).
//! `undo C` outside a rollback block goes to the previous revision and makes it the newest, so two
//! `undo`s toggle, exactly as kubectl does. If this run has not yet changed C, the previous
//! revision predates the run and the model cannot know it: the state stays as it is and the
//! checker warns (`ktplay::compat::unmodelled_undo`). The same holds for `undo C to revision N`:
//! revision numbers live in the cluster, not in the playbook. The live check before each action
//! still guards the real run in both cases.
//!
//! **Blue-green.** A blue-green component's set is the versions of both colours' pods. `undo C`
//! outside a rollback block switches the selector to the other colour and changes no version. The
//! implicit rollback of `blue_green` switches the selector back; from then on the model drops the
//! new version (`S ∪ P`, which is `S`, then `P`): nothing in the rest of the run sends traffic to a
//! colour taken out of service, and keeping it would make every rollback of an earlier stage
//! beside a blue-green deploy look incompatible (the reference playbook itself). Forward, the old
//! colour does stay, because any later failure can switch back to it.
//!
//! # Failure and rollback
//!
//! Every statement but `pause` can fail, and so can each guard inside a `canary` or `blue_green`
//! block. An action that fails does so in its mixed state `P ∪ {V}` (a failure before it changed
//! anything, or after it finished, passes through a subset of the same states). From each failure
//! point, unless `on_failure halt`:
//!
//! 1. the failed stage: its `rollback { … }` block if it has one (the whole block), nothing for
//!    `rollback none`, otherwise the implicit rollbacks of its actions that had started, in reverse;
//! 2. every completed stage in reverse order, by the same rule (all of its actions).
//!
//! Inside a rollback block, statements act as they do forward, except `undo C`: it restores C to
//! `{from}` (what C ran before this run first changed it; `S ∪ {from}`, then `{from}`) and does
//! nothing if, at the failure point, no statement of this run had changed C's versions. A failing
//! rollback statement ends the run, so rollback statements are not failure points. Every state of
//! every path is checked.
//!
//! # Findings
//!
//! A finding is attached to the statement whose transition *introduces* it (a forbidden pair that
//! persists through later statements is reported once, where it appeared), and deduplicated by
//! (kind, statement, pair): many failure points whose rollbacks meet the same violation become one
//! diagnostic that says how many. A violation met on the forward path also absorbs the rollback
//! paths that meet the same pair at other statements (fixing the forward path fixes them; a
//! separate "roll back in the opposite order" would mislead). Codes: `ktplay::compat::incompatible` (error),
//! `ktplay::compat::no_row` (error), `ktplay::compat::eol` (warning), `ktplay::compat::order`
//! (warning), `ktplay::compat::forward_only_rollback` (error: any transition, on a rollback path
//! or forward (`undo`, `rolling` to an older version), that takes a `forward_only` component down —
//! a version it stops running is newer than every version it keeps. That includes removing a
//! canary or undoing a half-done rollout, whose new pods have already migrated; rolling forward to
//! a corrective release inside a rollback block is fine), `ktplay::compat::unmodelled_undo`
//! (warning).

mod bits;
mod findings;
#[cfg(test)]
mod oracle;
mod report;
mod run;

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::Problem;
use crate::matrix::{Matrix, State};
use crate::span::Span;
use crate::version::Version;

pub use findings::{Analysis, FailurePoint, Finding, FindingKind};
pub use report::CompatError;
pub use run::{analyse, analyse_wide};

/// A playbook lowered for the model: components, stages, and what to do on failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub components: Vec<Component>,
    pub stages: Vec<Stage>,
    pub on_failure: OnFailure,
}

/// `on_failure rollback` (the default) or `on_failure halt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    #[default]
    Rollback,
    Halt,
}

/// One `component` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    /// The matrix role it takes part under (`role NAME`); `None` means its own name.
    pub role: Option<String>,
    pub from: Version,
    pub to: Version,
    /// `migrations forward_only`: rolling it back is an error.
    pub forward_only: bool,
    /// Deployed as two colours behind one Service.
    pub blue_green: bool,
    /// The component block (labels for findings about the initial state).
    pub span: Span,
}

impl Component {
    /// The matrix role: `role NAME`, or the component's name.
    pub fn role(&self) -> &str {
        self.role.as_deref().unwrap_or(&self.name)
    }
}

/// One `stage NAME { … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    pub span: Span,
    pub stmts: Vec<Stmt>,
    pub rollback: RollbackSpec,
}

/// How a stage rolls back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackSpec {
    /// No `rollback` clause: the implicit rollbacks of its actions, in reverse.
    Implicit,
    /// `rollback none`.
    None(Span),
    /// `rollback { … }`: replaces the implicit rollbacks.
    Block(Vec<Stmt>, Span),
}

/// A statement with the span the findings point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    pub span: Span,
    pub op: Op,
}

/// Which colour of a blue-green component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Blue,
    Green,
}

/// What a statement does, as far as versions go. `comp` indexes [`Program::components`]; the
/// lowering guarantees it is valid (an invalid index panics). `to` is resolved: the component's
/// `to` when the playbook did not write one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Rolling {
        comp: usize,
        to: Version,
    },
    /// `guards` are the block's statements (normally guards); each is a failure point.
    Canary {
        comp: usize,
        to: Version,
        guards: Vec<Stmt>,
    },
    BlueGreen {
        comp: usize,
        to: Version,
        guards: Vec<Stmt>,
    },
    Undo {
        comp: usize,
        revision: Option<u32>,
    },
    Switch {
        comp: usize,
        colour: Colour,
    },
    Scale {
        comp: usize,
    },
    Restart {
        comp: usize,
    },
    /// Any guard (http, logs, ready, hook, rhai).
    Guard,
    Pause,
    Approve,
}

impl Op {
    /// The component the statement acts on, if any.
    pub fn comp(&self) -> Option<usize> {
        match self {
            Op::Rolling { comp, .. }
            | Op::Canary { comp, .. }
            | Op::BlueGreen { comp, .. }
            | Op::Undo { comp, .. }
            | Op::Switch { comp, .. }
            | Op::Scale { comp }
            | Op::Restart { comp } => Some(*comp),
            Op::Guard | Op::Pause | Op::Approve => None,
        }
    }

    /// A short text for messages: `rolling api to 1.5.0`, `guard`, `undo gateway`.
    pub fn describe(&self, program: &Program) -> String {
        let name = |c: &usize| program.components[*c].name.as_str();
        match self {
            Op::Rolling { comp, to } => format!("rolling {} to {to}", name(comp)),
            Op::Canary { comp, to, .. } => format!("canary {} to {to}", name(comp)),
            Op::BlueGreen { comp, to, .. } => format!("blue_green {} to {to}", name(comp)),
            Op::Undo {
                comp,
                revision: None,
            } => format!("undo {}", name(comp)),
            Op::Undo {
                comp,
                revision: Some(n),
            } => format!("undo {} to revision {n}", name(comp)),
            Op::Switch { comp, colour } => format!(
                "switch {} to {}",
                name(comp),
                match colour {
                    Colour::Blue => "blue",
                    Colour::Green => "green",
                }
            ),
            Op::Scale { comp } => format!("scale {}", name(comp)),
            Op::Restart { comp } => format!("restart {}", name(comp)),
            Op::Guard => "guard".into(),
            Op::Pause => "pause".into(),
            Op::Approve => "approve".into(),
        }
    }
}

impl Program {
    /// Component name → matrix role, for [`Matrix::check_state`].
    pub fn roles(&self) -> BTreeMap<String, String> {
        self.components
            .iter()
            .map(|c| (c.name.clone(), c.role().to_string()))
            .collect()
    }

    /// The state before the run: every component at `{from}`.
    pub fn initial_state(&self) -> State {
        self.components
            .iter()
            .map(|c| (c.name.clone(), BTreeSet::from([c.from.clone()])))
            .collect()
    }

    /// Index of a component by name.
    pub fn component(&self, name: &str) -> Option<usize> {
        self.components.iter().position(|c| c.name == name)
    }
}

/// Every compatibility finding of the abstract run, as diagnostics (errors and warnings), in
/// source order.
pub fn check(program: &Program, matrix: &Matrix) -> Vec<Problem> {
    analyse(program, matrix).problems()
}

/// The states a forward action passes through from a live state, last one the state it leaves;
/// empty for statements that change no version. For the runner's live check before each action.
///
/// `undo C` returns nothing here: the runner knows the revision it will restore and asks
/// [`restore_states`] for it. A component missing from `live` counts as running nothing.
pub fn forward_states(program: &Program, live: &State, op: &Op) -> Vec<State> {
    let with = |comp: usize, set: BTreeSet<Version>| {
        let mut s = live.clone();
        s.insert(program.components[comp].name.clone(), set);
        s
    };
    let current = |comp: usize| {
        live.get(&program.components[comp].name)
            .cloned()
            .unwrap_or_default()
    };
    let states = match op {
        Op::Rolling { comp, to } | Op::Canary { comp, to, .. } => {
            let mut mixed = current(*comp);
            mixed.insert(to.clone());
            vec![
                with(*comp, mixed),
                with(*comp, BTreeSet::from([to.clone()])),
            ]
        }
        Op::BlueGreen { comp, to, .. } => {
            let mut mixed = current(*comp);
            mixed.insert(to.clone());
            vec![with(*comp, mixed)]
        }
        _ => Vec::new(),
    };
    // A state equal to the one before it is not a step (`rolling C to V` when C already runs V).
    let mut out: Vec<State> = Vec::new();
    for s in states {
        if out.last().unwrap_or(live) != &s {
            out.push(s);
        }
    }
    out
}

/// The states restoring component `name` to `target` passes through (implicit rollbacks, `undo`
/// with the revision read from the cluster): `S ∪ target`, then `target`; no state when nothing
/// changes.
pub fn restore_states(live: &State, name: &str, target: &BTreeSet<Version>) -> Vec<State> {
    let current = live.get(name).cloned().unwrap_or_default();
    let mut out = Vec::new();
    let mixed: BTreeSet<Version> = current.union(target).cloned().collect();
    if mixed != current {
        let mut s = live.clone();
        s.insert(name.to_string(), mixed.clone());
        out.push(s);
    }
    if *target != mixed {
        let mut s = live.clone();
        s.insert(name.to_string(), target.clone());
        out.push(s);
    }
    out
}

/// The version state after each forward statement (for `ktplay plan`): one entry per top-level
/// statement, with the states it passes through (empty when it changes nothing).
pub fn trace(program: &Program) -> Vec<TraceStep> {
    let mut state = program.initial_state();
    let mut hist: Vec<Vec<BTreeSet<Version>>> = program
        .components
        .iter()
        .map(|c| vec![BTreeSet::from([c.from.clone()])])
        .collect();
    let mut out = Vec::new();
    for (k, stage) in program.stages.iter().enumerate() {
        for stmt in &stage.stmts {
            let states = match &stmt.op {
                Op::Undo {
                    comp,
                    revision: None,
                } if !program.components[*comp].blue_green && hist[*comp].len() >= 2 => {
                    let h = &mut hist[*comp];
                    let target = h.remove(h.len() - 2);
                    h.push(target.clone());
                    restore_states(&state, &program.components[*comp].name, &target)
                }
                op => {
                    if let Op::Rolling { comp, to } | Op::Canary { comp, to, .. } = op {
                        let rev = BTreeSet::from([to.clone()]);
                        hist[*comp].retain(|r| *r != rev);
                        hist[*comp].push(rev);
                    }
                    forward_states(program, &state, op)
                }
            };
            if let Some(last) = states.last() {
                state = last.clone();
            }
            out.push(TraceStep {
                stage: k,
                span: stmt.span,
                states,
            });
        }
    }
    out
}

/// One forward statement and the states it passes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStep {
    /// Index into [`Program::stages`].
    pub stage: usize,
    pub span: Span,
    /// The states in order; the last is the state after the statement.
    pub states: Vec<State>,
}
