//! Matrix declarations: validated and lowered into [`crate::matrix::Matrix`], with the built-ins.

use std::collections::HashMap;

use crate::diag::Problem;
use crate::source::SourceMap;
use crate::span::FileId;
use crate::syntax::ast;

use super::errors::CheckError;

/// Every matrix declared in every file read, by file.
pub struct Matrices {
    by_file: HashMap<FileId, Vec<String>>,
}

/// The matrices one file can name.
pub struct InScope {
    names: Vec<String>,
}

impl InScope {
    pub fn names(&self) -> Vec<String> {
        self.names.clone()
    }
}

/// Names of the matrices every file can use without declaring them.
pub const BUILTIN: &[&str] = &["keeptrusts"];

impl Matrices {
    pub fn collect(
        _sources: &SourceMap,
        files: &[(FileId, &ast::File)],
        problems: &mut Vec<Problem>,
    ) -> Matrices {
        let mut by_file: HashMap<FileId, Vec<String>> = HashMap::new();
        for (id, f) in files {
            let mut seen: HashMap<String, crate::span::Span> = HashMap::new();
            for item in &f.items {
                if let ast::Item::Matrix(m) = item {
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
                    if BUILTIN.contains(&m.name.node.as_str()) {
                        problems.push(Problem::new(
                            *id,
                            CheckError::ShadowedMatrix {
                                name: m.name.node.clone(),
                                span: m.name.span.into(),
                            },
                        ));
                    }
                    by_file.entry(*id).or_default().push(m.name.node.clone());
                }
            }
        }
        Matrices { by_file }
    }

    /// Matrices visible from a file: the built-ins, then those of the file and its `use`s.
    pub fn in_scope(&self, files: &[FileId]) -> InScope {
        let mut names: Vec<String> = BUILTIN.iter().map(|s| s.to_string()).collect();
        for f in files {
            for n in self.by_file.get(f).into_iter().flatten() {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        InScope { names }
    }
}
