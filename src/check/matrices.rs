//! Matrix declarations: validated and lowered into [`crate::matrix::Matrix`], beside the built-ins.

use foldhash::{HashMap, HashMapExt};

use crate::diag::Problem;
use crate::matrix::{self, Matrix, Row, Rule, Status};
use crate::span::{FileId, Span, Spanned};
use crate::syntax::ast;
use crate::version::VersionRange;

use super::errors::CheckError;
use super::lower::Lowerer;

/// Every matrix declared in every file read, by file.
pub(crate) struct Matrices {
    by_file: HashMap<FileId, Vec<Matrix>>,
}

/// The matrices one file can name: the built-ins, then those declared in it and its `use`s (a
/// declaration shadows a built-in of the same name).
#[derive(Debug, Clone)]
pub struct InScope {
    matrices: Vec<Matrix>,
}

impl InScope {
    /// Only the built-in matrices.
    pub fn builtins() -> Self {
        InScope {
            matrices: builtins(),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.matrices.iter().map(|m| m.name.clone()).collect()
    }
    /// The matrices the file itself declares or `use`s (not the built-ins), in order.
    pub fn declared(&self) -> Vec<&Matrix> {
        self.matrices.iter().filter(|m| m.span.is_some()).collect()
    }
    pub fn get(&self, name: &str) -> Option<&Matrix> {
        self.matrices.iter().find(|m| m.name == name)
    }
}

/// The matrices every file can use without declaring them.
pub(crate) fn builtins() -> Vec<Matrix> {
    vec![matrix::keeptrusts()]
}

impl Matrices {
    pub(crate) fn collect(files: &[(FileId, &ast::File)], problems: &mut Vec<Problem>) -> Matrices {
        let builtin_names: Vec<String> = builtins().into_iter().map(|m| m.name).collect();
        let mut by_file: HashMap<FileId, Vec<Matrix>> = HashMap::new();
        for (id, f) in files {
            let mut seen: HashMap<String, Span> = HashMap::new();
            for item in &f.items {
                let ast::Item::Matrix(m) = item else { continue };
                if let Some(first) = seen.get(&m.name.node) {
                    problems.push(Problem::new(
                        *id,
                        CheckError::Duplicate {
                            what: "matrix",
                            name: m.name.node.clone(),
                            span: m.name.span.into(),
                            first: (*first).into(),
                        },
                    ));
                    continue;
                }
                seen.insert(m.name.node.clone(), m.name.span);
                if builtin_names.contains(&m.name.node) {
                    problems.push(Problem::new(
                        *id,
                        CheckError::ShadowedMatrix {
                            name: m.name.node.clone(),
                            span: m.name.span.into(),
                        },
                    ));
                }
                let mut lowerer = Lowerer::new(problems, *id, Default::default(), vec![]);
                if let Some(lowered) = lowerer.matrix(m) {
                    by_file.entry(*id).or_default().push(lowered);
                }
            }
        }
        Matrices { by_file }
    }

    /// Matrices visible from the files given (a file and everything it `use`s).
    pub(crate) fn in_scope(&self, files: &[FileId]) -> InScope {
        let mut matrices = builtins();
        for f in files {
            for m in self.by_file.get(f).into_iter().flatten() {
                matrices.retain(|x| x.name != m.name);
                matrices.push(m.clone());
            }
        }
        InScope { matrices }
    }
}

impl Lowerer<'_> {
    fn bad_matrix(
        &mut self,
        name: &str,
        reason: impl Into<String>,
        span: Span,
        help: impl Into<String>,
    ) {
        self.error(CheckError::BadMatrix {
            name: name.to_string(),
            reason: reason.into(),
            span: span.into(),
            help: help.into(),
        });
    }

    /// Lower one `matrix NAME { … }`; `None` if it is unusable.
    pub(crate) fn matrix(&mut self, m: &ast::MatrixDecl) -> Option<Matrix> {
        let name = m.name.node.as_str();
        let mut hub: Option<Spanned<String>> = None;
        let mut order: Option<Vec<String>> = None;
        let mut rule: Option<(Rule, Span)> = None;
        let mut row_decls: Vec<(&ast::RowDecl, Span)> = Vec::new();
        let mut rows: Vec<Row> = Vec::new();
        let mut ok = true;
        let mut firsts: HashMap<&'static str, Span> = HashMap::new();
        for e in &m.entries {
            let key = match &e.node {
                ast::MatrixEntry::Hub(_) => Some("hub"),
                ast::MatrixEntry::Order(_) => Some("order"),
                ast::MatrixEntry::Rule(_) => Some("rule"),
                ast::MatrixEntry::Row(_) => None,
            };
            if let Some(key) = key {
                if let Some(first) = firsts.get(key) {
                    let first = *first;
                    self.error(CheckError::Duplicate {
                        what: "matrix entry",
                        name: key.to_string(),
                        span: e.span.into(),
                        first: first.into(),
                    });
                    continue;
                }
                firsts.insert(key, e.span);
            }
            match &e.node {
                ast::MatrixEntry::Hub(h) => hub = Some(h.clone()),
                ast::MatrixEntry::Order(names) => {
                    order = Some(names.iter().map(|n| n.node.clone()).collect())
                }
                ast::MatrixEntry::Rule(r) => match Rule::from_keyword(&r.node) {
                    Some(x) => rule = Some((x, e.span)),
                    None => {
                        self.error(CheckError::InvalidValue {
                            what: "matrix rule",
                            value: r.node.clone(),
                            span: r.span.into(),
                            help: "the rule is `adjacent_minor`: peers of the same major, minor - 1 ..= minor".into(),
                        });
                        ok = false;
                    }
                },
                ast::MatrixEntry::Row(r) => row_decls.push((r, e.span)),
            }
        }
        let Some(hub) = hub else {
            self.bad_matrix(
                name,
                "it names no `hub`",
                m.name.span,
                "add `hub api`: the component every other one is checked against",
            );
            return None;
        };
        for (r, span) in row_decls {
            if r.hub.node != hub.node {
                self.bad_matrix(
                    name,
                    format!(
                        "a row is about `{}`, but the hub is `{}`",
                        r.hub.node, hub.node
                    ),
                    r.hub.span,
                    format!(
                        "rows start with the hub: `{} 1.5.x current {{ … }}`",
                        hub.node
                    ),
                );
                ok = false;
                continue;
            }
            match self.row(name, r, span) {
                Some(row) => rows.push(row),
                None => ok = false,
            }
        }
        match (&rule, rows.is_empty()) {
            (Some((_, span)), false) => {
                self.bad_matrix(
                    name,
                    "it has both a `rule` and rows",
                    *span,
                    "a matrix is given by rows or by a rule: remove one",
                );
                ok = false;
            }
            (None, true) if ok => {
                self.bad_matrix(
                    name,
                    "it has no rows and no rule",
                    m.name.span,
                    "add rows like `api 1.5.x current { gateway 1.4.x - 1.5.x }` or `rule adjacent_minor`",
                );
                ok = false;
            }
            _ => {}
        }
        if !ok {
            return None;
        }
        Some(Matrix {
            name: name.to_string(),
            hub: hub.node,
            order: order.unwrap_or_default(),
            rows,
            rule: rule.map(|(r, _)| r),
            span: Some(m.span),
        })
    }

    fn row(&mut self, name: &str, r: &ast::RowDecl, span: Span) -> Option<Row> {
        let hub = self.pattern(&r.version);
        let status = match Status::from_keyword(&r.status.node) {
            Some(s) => Some(s),
            None => {
                self.error(CheckError::InvalidValue {
                    what: "matrix status",
                    value: r.status.node.clone(),
                    span: r.status.span.into(),
                    help: "a row's status is `current`, `supported` or `eol`".into(),
                });
                None
            }
        };
        let mut peers = Vec::new();
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut ok = true;
        for (col, range) in &r.peers {
            if let Some(first) = seen.get(&col.node) {
                let first = *first;
                self.duplicate("column", &col.node, col.span, first);
                ok = false;
                continue;
            }
            seen.insert(col.node.clone(), col.span);
            if col.node == r.hub.node {
                self.bad_matrix(
                    name,
                    "the hub is listed as its own column",
                    col.span,
                    "list the other components only",
                );
                ok = false;
                continue;
            }
            let low = self.pattern(&range.low);
            let high = match &range.high {
                Some(h) => self.pattern(h),
                None => low.clone(),
            };
            let (Some(low), Some(high)) = (low, high) else {
                ok = false;
                continue;
            };
            let vr = VersionRange { low, high };
            if vr.is_inverted() {
                self.bad_matrix(
                    name,
                    format!("the range `{vr}` is empty"),
                    range.span,
                    format!("write the lower end first: `{} - {}`", vr.high, vr.low),
                );
                ok = false;
                continue;
            }
            peers.push((col.clone(), vr));
        }
        if !ok {
            return None;
        }
        Some(Row {
            hub: hub?,
            status: status?,
            peers,
            span,
        })
    }
}
