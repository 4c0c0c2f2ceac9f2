//! The script pass: every inline Rhai script and hook file of a playbook is compiled, so syntax
//! errors and unknown functions are found before anything runs.
//!
//! Inline scripts are compiled with the rest of their file's checks (on every core); hook files
//! after all files, once per invocation however many playbooks use them, since they join the
//! `SourceMap` so their diagnostics show the hook file itself.

use foldhash::HashSet;
use std::path::PathBuf;

use crate::diag::Problem;
use crate::program::{GuardKind, Op, Playbook};
use crate::script::ScriptSource;
use crate::source::SourceMap;
use crate::span::FileId;

/// Compile every inline script of `pb` (`guard rhai`, `check rhai`).
pub(crate) fn compile_inline(pb: &Playbook, problems: &mut Vec<Problem>) {
    for g in guards(pb) {
        let script = match g {
            GuardKind::Rhai { script } => script,
            GuardKind::Http(h) => match &h.check {
                Some(script) => script,
                None => continue,
            },
            _ => continue,
        };
        compile_one(
            &script.text,
            script.span.file,
            script.span.start as usize,
            problems,
        );
    }
}

/// Compile every hook file of `pb` not compiled yet (`hooks_done`); each is added to `sources`.
pub(crate) fn compile_hooks(
    pb: &Playbook,
    sources: &mut SourceMap,
    file: FileId,
    problems: &mut Vec<Problem>,
    hooks_done: &mut HashSet<PathBuf>,
) {
    let shown_dir = sources.get(file).shown_dir();
    for g in guards(pb) {
        let GuardKind::Hook {
            path,
            shown,
            source,
        } = g
        else {
            continue;
        };
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
        compile_one(source, id, 0, problems);
    }
}

fn compile_one(text: &str, file: FileId, offset: usize, problems: &mut Vec<Problem>) {
    let found = crate::script::problems(ScriptSource { text, file, offset });
    problems.extend(found.into_iter().map(|(f, e)| Problem::new(f, e)));
}

/// Every guard of `pb` in order: stages' statements, canary and blue-green blocks, rollbacks.
fn guards(pb: &Playbook) -> Vec<&GuardKind> {
    (pb.statements().into_iter())
        .filter_map(|st| match &st.op {
            Op::Guard(g) => Some(&g.kind),
            _ => None,
        })
        .collect()
}
