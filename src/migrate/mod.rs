//! A component's database migrations held to the seed's rules (issue 25).
//!
//! `migrations KIND { files … queries … release … }` names the files ([`Spec`], lowered by
//! `check::lower::migrations`). [`examine`] finds them (paths are hostile: inside the
//! playbook's tree, regular files, 16 MiB at most, refused by size unread), places each in its
//! release, lints the files new between `from` and `to` (`squawk` when installed, else the
//! built-in [`rules`]) and says which components' new migrations break `from`; [`Examined::report`]
//! turns that into diagnostics once the files have joined the `SourceMap`. A component whose new
//! migrations break `from` is forward-only to the compatibility model: [`schema_rollbacks`].
//! [`db`] checks the previous version's queries against the new schema on a real PostgreSQL.

pub mod db;
pub mod errors;
pub mod files;
pub mod rules;
pub mod split;
pub mod squawk;

use std::path::PathBuf;
use std::sync::Arc;

use crate::diag::Problem;
use crate::program::{Migrations, Playbook};
use crate::source::SourceMap;
use crate::span::{FileId, Span};
use crate::version::Version;
pub use errors::MigrateError;
use rules::{Finding, Rule};

/// The `{ … }` block of `migrations KIND`, lowered.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// `files "…"`: folders or globs.
    pub files: Vec<PathRef>,
    /// `release V "file"…`: explicit lists, in the order written.
    pub releases: Vec<(Version, Vec<PathRef>)>,
    /// `queries "…"`: the statements the `from` version issues.
    pub queries: Option<PathRef>,
    /// The block.
    pub span: Span,
}

/// A path as written (relative to the playbook's folder), resolved, with its span.
#[derive(Debug, Clone)]
pub struct PathRef {
    pub shown: String,
    pub path: PathBuf,
    pub span: Span,
}

/// A migration file found and placed in its release.
#[derive(Debug, Clone)]
pub struct SqlFile {
    /// As written in the playbook's terms (`db/migrations/V1_5_0__x.sql`).
    pub shown: String,
    /// Canonical.
    pub path: PathBuf,
    pub version: Version,
    /// Read for the files up to `to`; `None` past it.
    pub text: Option<Arc<str>>,
    /// The `files` or `release` entry that found it.
    pub origin: Span,
}

/// Which linter ran on a component's new files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub component: String,
    pub from: String,
    pub to: String,
    /// The files this upgrade applies.
    pub new_files: Vec<String>,
    /// `squawk 2.70.0` or `built-in rules (squawk not found)`.
    pub linter: String,
    pub breaking: usize,
    /// `check --database`: what the queries of `from` did against the new schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// One component's migrations, examined.
#[derive(Debug)]
pub struct Component {
    pub comp: usize,
    pub name: String,
    pub claims_backward_compatible: bool,
    pub from: Version,
    pub to: Version,
    /// Every file found, in the order they apply.
    pub files: Vec<SqlFile>,
    pub queries: Option<(PathRef, Arc<str>)>,
    /// Findings on the new files: (index into `files`, finding).
    pub findings: Vec<(usize, Finding)>,
    pub linter: String,
    /// Problems about the playbook's own spans (paths).
    pub problems: Vec<MigrateError>,
    pub span: Span,
}

impl Component {
    /// The files this upgrade applies: releases after `from`, up to `to`.
    pub fn new_files(&self) -> impl Iterator<Item = (usize, &SqlFile)> {
        self.files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.version > self.from && f.version <= self.to)
    }

    /// The first finding that breaks `from`, in words (for the model's message).
    pub fn breaks(&self) -> Option<String> {
        self.findings
            .iter()
            .find(|(_, f)| f.rule.breaks_previous())
            .map(|(i, f)| format!("`{}` {}", self.files[*i].shown, errors::what(f.rule)))
    }
}

/// A playbook's components with migration files, examined.
#[derive(Debug, Default)]
pub struct Examined {
    pub components: Vec<Component>,
}

/// Find, read and lint every component's migration files (no `SourceMap` needed: this runs
/// with the lowering, on every core).
pub fn examine(pb: &Playbook, base_dir: &std::path::Path) -> Examined {
    let mut out = Examined::default();
    let squawk = squawk::find().and_then(|b| squawk::version(&b).map(|v| (b, v)));
    for (i, c) in pb.components.iter().enumerate() {
        let Some(spec) = &c.migration_files else {
            continue;
        };
        let mut problems = Vec::new();
        let files = files::discover(spec, base_dir, &c.to, &mut problems);
        let queries = spec
            .queries
            .as_ref()
            .and_then(|q| files::read_one(q, base_dir, &mut problems).map(|t| (q.clone(), t)));
        let mut comp = Component {
            comp: i,
            name: c.name.clone(),
            claims_backward_compatible: c.migrations == Migrations::BackwardCompatible,
            from: c.from.clone(),
            to: c.to.clone(),
            files,
            queries,
            findings: Vec::new(),
            linter: String::new(),
            problems,
            span: spec.span,
        };
        comp.linter = lint(&mut comp, squawk.as_ref());
        out.components.push(comp);
    }
    out
}

/// Lint the new files of `c`; returns which linter ran.
fn lint(c: &mut Component, squawk: Option<&(PathBuf, String)>) -> String {
    let mut fell_back = None;
    let new: Vec<usize> = c.new_files().map(|(i, _)| i).collect();
    for i in new {
        let f = &c.files[i];
        let Some(text) = f.text.clone() else { continue };
        let stmts = split::statements(&text);
        let builtin = rules::lint(&text, &stmts);
        let found = match squawk {
            Some((bin, _)) => match squawk::lint(bin, &f.path, &text, &stmts) {
                Ok(mut found) => {
                    // One wording of a syntax error whichever linter ran (the built-in
                    // parser's, where it failed there too).
                    if let Some(b) = builtin.iter().find(|x| x.rule == Rule::Syntax) {
                        for x in found.iter_mut().filter(|x| x.rule == Rule::Syntax) {
                            x.detail = b.detail.clone();
                        }
                    }
                    // squawk has no rule for enum values: the built-in one runs beside it.
                    found.extend(builtin.into_iter().filter(|x| x.rule == Rule::EnumValue));
                    found
                }
                Err(why) => {
                    fell_back = Some(why);
                    builtin
                }
            },
            None => builtin,
        };
        let mut found = found;
        found.sort_by_key(|x| (x.start, x.rule));
        found.dedup_by_key(|x| (x.start, x.rule));
        c.findings.extend(found.into_iter().map(|x| (i, x)));
    }
    match (squawk, fell_back) {
        (Some((_, v)), None) => format!("{v} (+ built-in enum_value)"),
        (Some(_), Some(why)) => format!("built-in rules ({why})"),
        (None, _) if std::env::var_os("KTPLAY_SQUAWK").is_some_and(|v| v == "off") => {
            "built-in rules (KTPLAY_SQUAWK=off)".to_string()
        }
        (None, _) => "built-in rules (squawk not found)".to_string(),
    }
}

impl Examined {
    /// The files join `sources` (once each); every finding becomes a diagnostic.
    pub fn report(&self, sources: &mut SourceMap, file: FileId, problems: &mut Vec<Problem>) {
        let shown_dir = sources.get(file).shown_dir();
        for c in &self.components {
            for p in &c.problems {
                problems.push(Problem::new(file, clone_error(p)));
            }
            for (i, f) in &c.findings {
                let sql = &c.files[*i];
                let Some(text) = &sql.text else { continue };
                let id = match sources.find(&sql.path) {
                    Some(id) => id,
                    None => sources.add(
                        shown_dir.join(&sql.shown).to_string_lossy().into_owned(),
                        sql.path.clone(),
                        text.clone(),
                    ),
                };
                let span: miette::SourceSpan = Span::new(id, f.start, f.end).into();
                let e = match f.rule {
                    Rule::Syntax => MigrateError::Sql {
                        file: sql.shown.clone(),
                        reason: f.detail.clone(),
                        span,
                    },
                    Rule::IndexLock => MigrateError::Lock {
                        file: sql.shown.clone(),
                        comp: c.name.clone(),
                        version: sql.version.to_string(),
                        help: f.rule.two_phase(),
                        span,
                    },
                    r if c.claims_backward_compatible => MigrateError::Breaking {
                        file: sql.shown.clone(),
                        comp: c.name.clone(),
                        version: sql.version.to_string(),
                        from: c.from.to_string(),
                        what: errors::what(r),
                        help: r.two_phase().to_string(),
                        rule: r.name(),
                        span,
                    },
                    // `forward_only` says so already: the model's rollback findings apply.
                    _ => continue,
                };
                problems.push(Problem::new(id, e));
            }
        }
    }

    /// Which linter ran, per component.
    pub fn summaries(&self) -> Vec<Summary> {
        self.components
            .iter()
            .map(|c| Summary {
                component: c.name.clone(),
                from: c.from.to_string(),
                to: c.to.to_string(),
                new_files: c.new_files().map(|(_, f)| f.shown.clone()).collect(),
                linter: c.linter.clone(),
                breaking: c
                    .findings
                    .iter()
                    .filter(|(_, f)| f.rule.breaks_previous())
                    .count(),
                database: None,
            })
            .collect()
    }
}

/// `MigrateError` holds no `Clone`-able source (`LabeledSpan` is), so the playbook-span ones
/// are rebuilt.
fn clone_error(e: &MigrateError) -> MigrateError {
    match e {
        MigrateError::File { path, reason, span } => MigrateError::File {
            path: path.clone(),
            reason: reason.clone(),
            span: *span,
        },
        other => MigrateError::File {
            path: String::new(),
            reason: other.to_string(),
            span: (0, 0).into(),
        },
    }
}

/// The compatibility model's findings for components whose new migrations break `from` and
/// that do not say `forward_only` (those have `forward_only_rollback` already): every rollback
/// path that takes such a component back runs `from` against the new schema.
pub fn schema_rollbacks(pb: &Playbook, ex: &Examined) -> Vec<Problem> {
    let breaking: Vec<(usize, String)> = ex
        .components
        .iter()
        .filter(|c| c.claims_backward_compatible)
        .filter_map(|c| c.breaks().map(|why| (c.comp, why)))
        .collect();
    if breaking.is_empty() {
        return Vec::new();
    }
    let mut program = crate::check::model::to_model(pb);
    for (i, c) in program.components.iter_mut().enumerate() {
        c.forward_only = breaking.iter().any(|(b, _)| *b == i);
    }
    // No matrix: this is about the schema, whatever the matrix says.
    let matrix = crate::matrix::Matrix {
        name: String::new(),
        hub: String::new(),
        order: Vec::new(),
        rows: Vec::new(),
        rule: None,
        span: None,
    };
    let analysis = crate::model::analyse(&program, &matrix);
    let mut out = Vec::new();
    for f in &analysis.findings {
        let crate::model::FindingKind::ForwardOnlyRollback { component } = &f.kind else {
            continue;
        };
        let Some((_, why)) = breaking
            .iter()
            .find(|(b, _)| pb.components[*b].name == *component)
        else {
            continue;
        };
        let c = &pb.components.iter().find(|c| &c.name == component);
        let from = c.map_or(String::new(), |c| c.from.to_string());
        let to = c.map_or(String::new(), |c| c.to.to_string());
        let message = format!(
            "rolling back {component} runs {component} {from} against the schema of {to}, whose migration {why}"
        );
        let label = miette::LabeledSpan::new_with_span(Some(f.label.clone()), f.span);
        out.push(Problem::new(
            f.span.file,
            MigrateError::SchemaRollback {
                message,
                labels: vec![label],
                help: format!(
                    "make {to}'s migrations backward-compatible, the two-phase way: expand in this release (add, write both), contract in the next (drop what {from} still used) — then {component} can go back; or say `migrations forward_only` and fix forward"
                ),
            },
        ));
    }
    out
}

/// The LSP's hover lines for a component's migration files.
pub fn hover(c: &crate::program::Component, spec: &Spec) -> String {
    let kind = match c.migrations {
        Migrations::BackwardCompatible => "backward_compatible",
        Migrations::ForwardOnly => "forward_only",
    };
    let mut out = format!("\n- migrations `{kind}` (postgres): the files of releases after {} up to {} are this upgrade's, linted for what breaks {}", c.from, c.to, c.from);
    for f in &spec.files {
        out.push_str(&format!("\n  - files `{}`", f.shown));
    }
    for (v, files) in &spec.releases {
        let names: Vec<&str> = files.iter().map(|f| f.shown.as_str()).collect();
        out.push_str(&format!("\n  - release {v}: `{}`", names.join("`, `")));
    }
    if let Some(q) = &spec.queries {
        out.push_str(&format!(
            "\n  - queries of {} `{}` (`check --database`)",
            c.from, q.shown
        ));
    }
    out
}

/// The sha256 of every migration file up to `to` of the playbook at `index`, by
/// `component:path` (what a green run records in its journal's `last_success`).
pub fn digests_of(
    checked: &crate::check::Checked,
    index: usize,
) -> std::collections::BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    let mut out = std::collections::BTreeMap::new();
    // One `Examined` per playbook, in the order of `checked.playbooks`.
    let Some((file, ex)) = checked.examined.get(index) else {
        return out;
    };
    if checked.playbooks.get(index).map(|(f, _)| f) != Some(file) {
        return out;
    }
    for c in &ex.components {
        for f in &c.files {
            if let Some(text) = &f.text {
                let digest = hex::encode(Sha256::digest(text.as_bytes()));
                out.insert(format!("{}:{}", c.name, f.shown), digest);
            }
        }
    }
    out
}

/// The first shipped migration file whose digest differs now (or that is gone), in words
/// naming the file and both digests; `None` when every recorded file is unchanged.
pub fn changed_since(
    recorded: &std::collections::BTreeMap<String, String>,
    now: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    for (key, was) in recorded {
        let (comp, file) = key.split_once(':').unwrap_or(("", key));
        match now.get(key) {
            Some(is) if is == was => {}
            Some(is) => {
                return Some(format!(
                    "the migration `{file}` of {comp} changed: sha256 {was} then, {is} now"
                ))
            }
            None => {
                return Some(format!(
                    "the migration `{file}` of {comp} (sha256 {was}) is gone"
                ))
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_or_removed_shipped_file_is_named_with_both_digests() {
        let rec = std::collections::BTreeMap::from([
            ("api:db/V1_4_0__a.sql".to_string(), "aaa".to_string()),
            ("api:db/V1_5_0__b.sql".to_string(), "bbb".to_string()),
        ]);
        let mut now = rec.clone();
        assert_eq!(changed_since(&rec, &now), None);
        now.insert("api:db/V1_6_0__new.sql".into(), "ccc".into());
        assert_eq!(
            changed_since(&rec, &now),
            None,
            "a new file is not a changed one"
        );
        now.insert("api:db/V1_5_0__b.sql".into(), "xxx".into());
        assert_eq!(
            changed_since(&rec, &now).unwrap(),
            "the migration `db/V1_5_0__b.sql` of api changed: sha256 bbb then, xxx now"
        );
        now.remove("api:db/V1_4_0__a.sql");
        assert!(changed_since(&rec, &now)
            .unwrap()
            .contains("`db/V1_4_0__a.sql` of api (sha256 aaa) is gone"));
    }
}
