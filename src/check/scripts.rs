//! The script pass: every inline Rhai script and hook file of a playbook is compiled, so syntax
//! errors and unknown functions are found before anything runs.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::check::program::{GuardKind, Op, Playbook, Rollback, Statement};
use crate::diag::Problem;
use crate::script::{compile, ScriptSource};
use crate::source::SourceMap;
use crate::span::FileId;

/// Compile every script of `pb`; hook files are added to `sources` so their diagnostics show
/// the file itself.
pub fn compile_all(
    pb: &Playbook,
    sources: &mut SourceMap,
    file: FileId,
    problems: &mut Vec<Problem>,
    hooks_done: &mut HashSet<PathBuf>,
) {
    let shown_dir = sources.get(file).shown_dir();
    let mut visit = |st: &Statement, problems: &mut Vec<Problem>, sources: &mut SourceMap| {
        let mut guards: Vec<&GuardKind> = Vec::new();
        match &st.op {
            Op::Guard(g) => guards.push(&g.kind),
            Op::Canary { guards: gs, .. } | Op::BlueGreen { guards: gs, .. } => {
                for g in gs {
                    if let Op::Guard(g) = &g.op {
                        guards.push(&g.kind);
                    }
                }
            }
            _ => {}
        }
        for g in guards {
            let (text, file, offset) = match g {
                GuardKind::Rhai { script } => (
                    script.text.clone(),
                    script.span.file,
                    script.span.start as usize,
                ),
                GuardKind::Http(h) => match &h.check {
                    Some(script) => (
                        script.text.clone(),
                        script.span.file,
                        script.span.start as usize,
                    ),
                    None => continue,
                },
                GuardKind::Hook {
                    path,
                    shown,
                    source,
                } => {
                    if !hooks_done.insert(path.clone()) {
                        continue;
                    }
                    let id = match sources.find(path) {
                        Some(id) => id,
                        None => sources.add(
                            shown_dir.join(shown).to_string_lossy().into_owned(),
                            path.clone(),
                            source.as_str(),
                        ),
                    };
                    (source.clone(), id, 0)
                }
                _ => continue,
            };
            if let Err(errs) = compile(ScriptSource {
                text: &text,
                file,
                offset,
            }) {
                problems.extend(errs.into_iter().map(|(f, e)| Problem::new(f, e)));
            }
        }
    };
    for stage in &pb.stages {
        for st in &stage.stmts {
            visit(st, problems, sources);
        }
        if let Rollback::Block(stmts, _) = &stage.rollback {
            for st in stmts {
                visit(st, problems, sources);
            }
        }
    }
}
