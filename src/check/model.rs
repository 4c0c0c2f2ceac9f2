//! Checked playbook → the model's IR (`crate::model::Program`), and the model pass itself.

use crate::model;
use crate::program::{self as p, Playbook};

/// The model's view of a playbook: components with their versions, stages with what each
/// statement does to versions.
pub(crate) fn to_model(pb: &Playbook) -> model::Program {
    model::Program {
        components: pb
            .components
            .iter()
            .map(|c| model::Component {
                name: c.name.clone(),
                role: (c.role != c.name).then(|| c.role.clone()),
                from: c.from.clone(),
                to: c.to.clone(),
                forward_only: c.migrations == p::Migrations::ForwardOnly,
                blue_green: c.is_blue_green(),
                span: c.span,
            })
            .collect(),
        stages: pb
            .stages
            .iter()
            .map(|s| model::Stage {
                name: s.name.clone(),
                span: s.span,
                stmts: stmts(&s.stmts),
                rollback: match &s.rollback {
                    p::Rollback::Implicit => model::RollbackSpec::Implicit,
                    p::Rollback::None(span) => model::RollbackSpec::None(*span),
                    p::Rollback::Block(b, span) => model::RollbackSpec::Block(stmts(b), *span),
                },
            })
            .collect(),
        on_failure: match pb.on_failure {
            p::OnFailure::Rollback => model::OnFailure::Rollback,
            p::OnFailure::Halt => model::OnFailure::Halt,
        },
    }
}

fn stmts(list: &[p::Statement]) -> Vec<model::Stmt> {
    list.iter()
        .map(|s| model::Stmt {
            span: s.span,
            op: op(&s.op),
        })
        .collect()
}

/// What one statement does to versions, in the model's terms.
pub(crate) fn op(o: &p::Op) -> model::Op {
    match o {
        p::Op::Rolling { comp, to, .. } => model::Op::Rolling {
            comp: *comp,
            to: to.clone(),
        },
        p::Op::Canary {
            comp, to, guards, ..
        } => model::Op::Canary {
            comp: *comp,
            to: to.clone(),
            guards: stmts(guards),
        },
        p::Op::BlueGreen {
            comp, to, guards, ..
        } => model::Op::BlueGreen {
            comp: *comp,
            to: to.clone(),
            guards: stmts(guards),
        },
        p::Op::Restart { comp, .. } => model::Op::Restart { comp: *comp },
        p::Op::Undo { comp, revision } => model::Op::Undo {
            comp: *comp,
            revision: revision.map(|r| r as u32),
        },
        p::Op::Switch { comp, colour } => model::Op::Switch {
            comp: *comp,
            colour: match colour {
                p::Colour::Blue => model::Colour::Blue,
                p::Colour::Green => model::Colour::Green,
            },
        },
        p::Op::Scale { comp, .. } => model::Op::Scale { comp: *comp },
        p::Op::Pause(_) => model::Op::Pause,
        p::Op::Approve(_) => model::Op::Approve,
        p::Op::Guard(_) => model::Op::Guard,
    }
}
