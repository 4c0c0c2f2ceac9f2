//! `test` items: a rehearsal of one playbook with faults, and what it must end in. Lowered after
//! the playbooks, against the playbook each names (a file relative to the test's own, loaded and
//! checked like a `use`): every name, fault and version is checked here, so `ktplay test` never
//! runs a test that could not mean what it says.

use std::path::PathBuf;

use miette::SourceSpan;

use super::names::did_you_mean;
use crate::diag::Problem;
use crate::program::Playbook;
use crate::sim::Fault;
use crate::span::{FileId, Span, Spanned};
use crate::syntax::ast::{self, Expectation, TestEntry, Value};
use crate::version::Version;

/// A checked test.
#[derive(Debug, Clone)]
pub struct Test {
    pub name: String,
    /// The test item.
    pub span: Span,
    /// Index into [`super::Checked::playbooks`].
    pub playbook: usize,
    pub env: Option<String>,
    pub faults: Vec<Spanned<Fault>>,
    pub expects: Vec<Expect>,
}

/// One `expect`, at its line.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    pub what: Expected,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    Outcome(TestOutcome),
    /// The stage (index) that failed, and the statement (1-based) if given.
    Failed {
        stage: usize,
        statement: Option<usize>,
    },
    /// Components (indices) in the order their rollback steps ran.
    RollbackOrder(Vec<usize>),
    /// Every deployment of each component runs this version at the end.
    Final(Vec<(usize, Version)>),
}

/// How a tested run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestOutcome {
    Succeeded,
    RolledBack,
    RollbackIncomplete,
    Refused,
    Halted,
}

impl TestOutcome {
    pub const ALL: [(&'static str, TestOutcome); 5] = [
        ("succeeded", TestOutcome::Succeeded),
        ("rolled_back", TestOutcome::RolledBack),
        ("rollback_incomplete", TestOutcome::RollbackIncomplete),
        ("refused", TestOutcome::Refused),
        ("halted", TestOutcome::Halted),
    ];

    pub fn word(self) -> &'static str {
        TestOutcome::ALL
            .iter()
            .find(|(_, o)| *o == self)
            .map(|(w, _)| *w)
            .unwrap_or("?")
    }
}

/// Problems with a test item.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub(crate) enum TestError {
    #[error("the test names no playbook")]
    #[diagnostic(
        code(ktplay::check::test_playbook),
        help("add `playbook \"FILE.ktplay\"` (relative to this file)")
    )]
    NoPlaybook {
        #[label("this test")]
        span: SourceSpan,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::check::test_playbook))]
    Playbook {
        message: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: Option<String>,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::check::test_fault))]
    Fault {
        message: String,
        #[label("this fault")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::check::test_expect))]
    Expect {
        message: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: Option<String>,
    },
}

/// The playbook files test items of a file name, resolved against its folder, with the span of
/// each name (loaded and checked like inputs).
pub(crate) fn referenced(file: &ast::File, dir: &std::path::Path) -> Vec<(PathBuf, Span)> {
    file.items
        .iter()
        .flat_map(|i| -> Vec<&Spanned<ast::StrLit>> {
            match i {
                ast::Item::Test(t) => t
                    .entries
                    .iter()
                    .filter_map(|e| match &e.node {
                        TestEntry::Playbook { file, .. } => Some(file),
                        _ => None,
                    })
                    .collect(),
                ast::Item::Fleet(f) => f
                    .entries
                    .iter()
                    .filter_map(|e| match &e.node {
                        ast::FleetEntry::Playbook { file, .. } => Some(file),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        })
        .filter_map(|file| file.node.as_plain().map(|p| (dir.join(p), file.span)))
        .collect()
}

/// A `playbook "F" [name "P"]` that names nothing usable: what to say, and where.
pub(crate) struct RefProblem {
    pub message: String,
    pub span: Span,
    pub label: String,
    pub help: Option<String>,
}

/// The playbook (index into `books.all`) that `playbook "F" [name "P"]` names, relative to `dir`
/// (tests and fleets).
pub(crate) fn resolve_playbook(
    dir: &std::path::Path,
    file: &Spanned<ast::StrLit>,
    name: Option<&Spanned<ast::StrLit>>,
    books: &Playbooks<'_>,
) -> Result<usize, RefProblem> {
    let Some(rel) = file.node.as_plain() else {
        return Err(RefProblem {
            message: "the playbook file must be a plain string".into(),
            span: file.span,
            label: "no interpolation here".into(),
            help: None,
        });
    };
    let path = dir.join(&rel);
    if let Err(why) = crate::check::admit_reference(dir, &path) {
        return Err(RefProblem {
            message: format!("the playbook file `{rel}` is refused: {why}"),
            span: file.span,
            label: "not read".into(),
            help: None,
        });
    }
    let Some(fid) = (books.file_of)(&path) else {
        return Err(RefProblem {
            message: format!("cannot read the playbook file `{rel}`"),
            span: file.span,
            label: "no such file".into(),
            help: Some("the path is relative to this file".into()),
        });
    };
    let candidates: Vec<usize> = books
        .all
        .iter()
        .enumerate()
        .filter(|(_, (f, _))| *f == fid)
        .map(|(i, _)| i)
        .collect();
    let names: Vec<&str> = candidates
        .iter()
        .map(|i| books.all[*i].1.name.as_str())
        .collect();
    match (name, candidates.as_slice()) {
        (None, [one]) => Ok(*one),
        (None, []) => Err(RefProblem {
            message: format!("`{rel}` holds no playbook that checks clean"),
            span: file.span,
            label: "this file".into(),
            help: Some("fix the errors reported for that file".into()),
        }),
        (None, _) => Err(RefProblem {
            message: format!("`{rel}` holds several playbooks: {}", names.join(", ")),
            span: file.span,
            label: "which one?".into(),
            help: Some(format!("write `playbook \"{rel}\" name \"{}\"`", names[0])),
        }),
        (Some(n), _) => {
            let want = n.node.display();
            candidates
                .iter()
                .find(|i| books.all[**i].1.name == want)
                .copied()
                .ok_or_else(|| RefProblem {
                    message: format!(
                        "`{rel}` has no playbook \"{want}\"; it holds: {}",
                        names.join(", ")
                    ),
                    span: n.span,
                    label: "no playbook of that name".into(),
                    help: did_you_mean(&want, names.iter().copied()),
                })
        }
    }
}

/// The playbooks a test may name: by the canonical path of their file.
pub(crate) struct Playbooks<'c> {
    pub all: &'c [(FileId, Playbook)],
    pub file_of: &'c dyn Fn(&std::path::Path) -> Option<FileId>,
}

/// Lower the test items of one file.
pub(crate) fn lower(
    id: FileId,
    file: &ast::File,
    dir: &std::path::Path,
    books: &Playbooks<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<Test> {
    let mut out = Vec::new();
    for item in &file.items {
        let ast::Item::Test(t) = item else { continue };
        let mut push = |e: TestError| problems.push(Problem::new(id, e));
        let name = t.name.node.display();
        let mut playbook: Option<usize> = None;
        let mut env: Option<Spanned<String>> = None;
        let mut faults = Vec::new();
        let mut expects = Vec::new();
        for e in &t.entries {
            match &e.node {
                TestEntry::Playbook { file, name } => {
                    playbook = match resolve_playbook(dir, file, name.as_ref(), books) {
                        Ok(i) => Some(i),
                        Err(r) => {
                            push(TestError::Playbook {
                                message: r.message,
                                span: r.span.into(),
                                label: r.label,
                                help: r.help,
                            });
                            None
                        }
                    };
                }
                TestEntry::Env(e) => env = Some(e.clone()),
                TestEntry::Fault(f) => match f.node.parse::<Fault>() {
                    Ok(fault) => faults.push(Spanned::new(fault, f.span)),
                    Err(err) => push(TestError::Fault {
                        message: err.to_string(),
                        span: f.span.into(),
                        help: Some("faults are written as for `ktplay rehearse --fault`".into()),
                    }),
                },
                TestEntry::Expect(_) => {}
            }
        }
        let Some(pi) = playbook else {
            if !t
                .entries
                .iter()
                .any(|e| matches!(e.node, TestEntry::Playbook { .. }))
            {
                push(TestError::NoPlaybook {
                    span: t.name.span.into(),
                });
            }
            continue;
        };
        let pb = &books.all[pi].1;
        // The env: required when the playbook has envs.
        let env_name = match &env {
            Some(e) if pb.env(&e.node).is_none() => {
                push(TestError::Playbook {
                    message: format!("playbook \"{}\" has no env `{}`", pb.name, e.node),
                    span: e.span.into(),
                    label: "no env of that name".into(),
                    help: did_you_mean(&e.node, pb.envs.iter().map(|e| e.name.as_str())),
                });
                continue;
            }
            Some(e) => Some(e.node.clone()),
            None if pb.envs.is_empty() => None,
            None => {
                push(TestError::Playbook {
                    message: format!(
                        "playbook \"{}\" has envs ({}): the test must name one",
                        pb.name,
                        pb.envs
                            .iter()
                            .map(|e| e.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    span: t.name.span.into(),
                    label: "this test".into(),
                    help: Some(format!("add `env {}`", pb.envs[0].name)),
                });
                continue;
            }
        };
        for f in &faults {
            if let Some(e) = fault_problem(pb, f) {
                push(e);
            }
        }
        for e in &t.entries {
            if let TestEntry::Expect(x) = &e.node {
                match expectation(pb, x) {
                    Ok(what) => expects.push(Expect { what, span: e.span }),
                    Err(err) => push(err),
                }
            }
        }
        out.push(Test {
            name,
            span: t.span,
            playbook: pi,
            env: env_name,
            faults,
            expects,
        });
    }
    out
}

/// Why a fault cannot fire in this playbook (a component, role or version it does not have),
/// with a hint: for `rehearse --fault` as for test items.
pub(crate) fn fault_mismatch(pb: &Playbook, f: &Fault) -> Option<(String, Option<String>)> {
    let spanned = Spanned::new(f.clone(), Span::default());
    match fault_problem(pb, &spanned)? {
        TestError::Fault { message, help, .. } => Some((message, help)),
        _ => None,
    }
}

/// Every version component `i` can run in this playbook: its `from`, its `to` and any
/// statement's `to` (rollback blocks included).
fn versions_run(pb: &Playbook, i: usize) -> Vec<&Version> {
    use crate::program::Op;
    let c = &pb.components[i];
    let mut out = vec![&c.from, &c.to];
    out.extend(pb.statements().into_iter().filter_map(|st| match &st.op {
        Op::Rolling { comp, to, .. }
        | Op::Canary { comp, to, .. }
        | Op::BlueGreen { comp, to, .. }
            if *comp == i =>
        {
            Some(to)
        }
        _ => None,
    }));
    out.dedup();
    out
}

/// A fault that names a component, role or version the playbook does not have.
fn fault_problem(pb: &Playbook, f: &Spanned<Fault>) -> Option<TestError> {
    let bad = |message: String, help: Option<String>| {
        Some(TestError::Fault {
            message,
            span: f.span.into(),
            help,
        })
    };
    let versions_of = |role: &str| -> Vec<&Version> {
        let mut out = Vec::new();
        for (i, c) in pb.components.iter().enumerate() {
            if c.role == role || c.name == role {
                out.extend(versions_run(pb, i));
            }
        }
        out.dedup();
        out
    };
    let has_role = |role: &str| {
        pb.components
            .iter()
            .any(|c| c.role == role || c.name == role)
    };
    let has_name = |name: &str| pb.components.iter().any(|c| c.name == name);
    // `never-ready` takes a role too (a Keeptrusts role beside a component's own name); the
    // other faults name a component, as the simulator knows it.
    if let Some((component, version)) = f.node.target() {
        let known = if matches!(f.node, Fault::NeverReady { .. }) {
            has_role(component)
        } else {
            has_name(component)
        };
        if !known {
            let names = pb.components.iter().map(|c| c.name.as_str());
            return bad(
                format!(
                "the fault names the component `{component}`, which playbook \"{}\" does not have",
                pb.name
            ),
                did_you_mean(component, names),
            );
        }
        let vs = versions_of(component);
        if !vs.contains(&version) {
            let mut shown: Vec<String> = vs.iter().map(|v| v.to_string()).collect();
            shown.dedup();
            let runs = match shown.as_slice() {
                [from, to] => format!("it goes from {from} to {to}"),
                all => format!("it runs {}", all.join(", ")),
            };
            return bad(
                format!("`{component}` never runs {version} in this playbook ({runs})"),
                Some("a fault on a version nothing runs could never fire".into()),
            );
        }
        return None;
    }
    match &f.node {
        Fault::PolicyOff { version } | Fault::MigrationFails { version } => {
            let role = if matches!(f.node, Fault::PolicyOff { .. }) {
                "gateway"
            } else {
                "api"
            };
            if !has_role(role) {
                return bad(
                    format!(
                        "this fault is about the Keeptrusts {role}, and playbook \"{}\" has no component with the role `{role}`",
                        pb.name
                    ),
                    Some("use `never-ready:COMPONENT@VERSION` (or another general fault) for other systems".into()),
                );
            }
            if !versions_of(role).contains(&version) {
                return bad(
                    format!("the {role} never runs {version} in this playbook"),
                    Some("a fault on a version nothing runs could never fire".into()),
                );
            }
            None
        }
        Fault::NoPrestop { component }
        | Fault::NoReadiness { component }
        | Fault::Grace { component, .. }
            if !has_name(component) =>
        {
            let names = pb.components.iter().map(|c| c.name.as_str());
            bad(
                format!(
                    "the fault names the component `{component}`, which playbook \"{}\" does not have",
                    pb.name
                ),
                did_you_mean(component, names),
            )
        }
        _ => None,
    }
}

fn expectation(pb: &Playbook, x: &Expectation) -> Result<Expected, TestError> {
    let bad = |message: String, at: Span, label: &str, help: Option<String>| TestError::Expect {
        message,
        span: at.into(),
        label: label.into(),
        help,
    };
    let component = |c: &Spanned<String>| -> Result<usize, TestError> {
        pb.components
            .iter()
            .position(|k| k.name == c.node)
            .ok_or_else(|| {
                bad(
                    format!("playbook \"{}\" has no component `{}`", pb.name, c.node),
                    c.span,
                    "no component of that name",
                    did_you_mean(&c.node, pb.components.iter().map(|k| k.name.as_str())),
                )
            })
    };
    match x {
        Expectation::Outcome(o) => TestOutcome::ALL
            .iter()
            .find(|(w, _)| *w == o.node)
            .map(|(_, t)| Expected::Outcome(*t))
            .ok_or_else(|| {
                bad(
                    format!("`{}` is not an outcome", o.node),
                    o.span,
                    "expected an outcome",
                    did_you_mean(&o.node, TestOutcome::ALL.iter().map(|(w, _)| *w)).or(Some(
                        "outcomes: succeeded, rolled_back, rollback_incomplete, refused, halted"
                            .into(),
                    )),
                )
            }),
        Expectation::Failed { stage, statement } => {
            let k = pb
                .stages
                .iter()
                .position(|s| s.name == stage.node)
                .ok_or_else(|| {
                    bad(
                        format!("playbook \"{}\" has no stage `{}`", pb.name, stage.node),
                        stage.span,
                        "no stage of that name",
                        did_you_mean(&stage.node, pb.stages.iter().map(|s| s.name.as_str())),
                    )
                })?;
            let n = match statement {
                None => None,
                Some(v) => {
                    let count = pb.stages[k].stmts.len();
                    match v.node {
                        Value::Int(n) if n >= 1 && (n as usize) <= count => Some(n as usize),
                        _ => {
                            return Err(bad(
                                format!(
                                    "stage `{}` has {count} statement{}: write a number from 1 to {count}",
                                    stage.node,
                                    if count == 1 { "" } else { "s" }
                                ),
                                v.span,
                                "not a statement of that stage",
                                None,
                            ))
                        }
                    }
                }
            };
            Ok(Expected::Failed {
                stage: k,
                statement: n,
            })
        }
        Expectation::RollbackOrder(cs) => Ok(Expected::RollbackOrder(
            cs.iter().map(component).collect::<Result<_, _>>()?,
        )),
        Expectation::Final(pairs) => {
            let mut out = Vec::new();
            for (c, v) in pairs {
                let i = component(c)?;
                let version = match &v.node {
                    Value::Version(crate::version::VersionPattern::Exact(v)) => Some(v.clone()),
                    _ => None,
                };
                let Some(version) = version else {
                    return Err(bad(
                        format!("expected an exact version for `{}`", c.node),
                        v.span,
                        "not a version like 1.4.2",
                        None,
                    ));
                };
                let runs = versions_run(pb, i);
                if !runs.contains(&&version) {
                    let mut runs = runs;
                    runs.sort();
                    runs.dedup();
                    let shown: Vec<String> = runs.iter().map(|v| v.to_string()).collect();
                    return Err(bad(
                        format!(
                            "`{}` never runs {version} in playbook \"{}\" (it runs {})",
                            c.node,
                            pb.name,
                            shown.join(", ")
                        ),
                        v.span,
                        "a version this component never reaches",
                        Some(
                            "a component ends on its `from`, its `to` or a statement's `to`: \
                             an expectation of any other version could never hold"
                                .into(),
                        ),
                    ));
                }
                out.push((i, version));
            }
            Ok(Expected::Final(out))
        }
    }
}
