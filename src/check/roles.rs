//! Rules over a whole playbook or file that lowering one construct cannot see: a `role` must name
//! a part of the playbook's matrix, and playbook names are unique within a file.

use foldhash::{HashMap, HashMapExt};

use crate::check::errors::CheckError;
use crate::diag::Problem;
use crate::matrix::Matrix;
use crate::span::FileId;
use crate::syntax::ast;

/// A `role` the matrix does not know would take the component out of every compatibility check
/// (the model, the live check before each action, the simulated services), so it is an error.
pub(crate) fn check_roles(
    file: FileId,
    pb: &ast::Playbook,
    matrix: &Matrix,
    problems: &mut Vec<Problem>,
) {
    let mut known: Vec<&str> = vec![matrix.hub.as_str()];
    known.extend(matrix.columns());
    for entry in &pb.entries {
        let ast::PlaybookEntry::Component(c) = &entry.node else {
            continue;
        };
        for e in &c.entries {
            let ast::ComponentEntry::Role(role) = &e.node else {
                continue;
            };
            if matrix.takes_part(&role.node) {
                continue;
            }
            let hint = crate::check::names::did_you_mean(&role.node, known.iter().copied())
                .map(|h| format!("{h} "))
                .unwrap_or_default();
            problems.push(Problem::new(
                file,
                CheckError::UnknownRole {
                    role: role.node.clone(),
                    matrix: matrix.name.clone(),
                    span: role.span.into(),
                    help: format!(
                        "{hint}the roles of `{}` are {}; a component without `role` that the matrix does not name is not checked",
                        matrix.name,
                        known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    ),
                },
            ));
        }
    }
}

/// Two playbooks of one name in one file: `--playbook NAME` could only ever pick the first.
pub(crate) fn check_playbook_names(file: FileId, items: &[ast::Item], problems: &mut Vec<Problem>) {
    let mut seen: HashMap<String, crate::span::Span> = HashMap::new();
    for item in items {
        if let ast::Item::Playbook(pb) = item {
            let name = pb.name.node.display();
            match seen.get(&name) {
                Some(first) => problems.push(Problem::new(
                    file,
                    CheckError::Duplicate {
                        what: "playbook",
                        name,
                        span: pb.name.span.into(),
                        first: (*first).into(),
                    },
                )),
                None => {
                    seen.insert(name, pb.name.span);
                }
            }
        }
    }
}
