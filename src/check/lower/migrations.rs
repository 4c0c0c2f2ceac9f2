//! Lowering a component's `migrations KIND { … }` block (issue 25); the files themselves are
//! found and linted by `crate::migrate`.

use std::collections::HashMap;

use super::Lowerer;
use crate::check::errors::CheckError;
use crate::migrate::{PathRef, Spec};
use crate::span::{Span, Spanned};
use crate::syntax::ast::{self, MigrationEntry};

impl Lowerer<'_> {
    pub(super) fn migration_block(
        &mut self,
        block: &Spanned<Vec<Spanned<MigrationEntry>>>,
    ) -> Option<Spec> {
        let mut spec = Spec {
            span: block.span,
            ..Spec::default()
        };
        let mut seen: HashMap<&'static str, Span> = HashMap::new();
        for e in &block.node {
            let once = match &e.node {
                MigrationEntry::Dialect(_) => Some("dialect"),
                MigrationEntry::Queries(_) => Some("queries"),
                _ => None,
            };
            if let Some(key) = once {
                if let Some(first) = seen.get(key) {
                    let first = *first;
                    self.duplicate("entry", key, e.span, first);
                    continue;
                }
                seen.insert(key, e.span);
            }
            match &e.node {
                MigrationEntry::Files(s) => {
                    if let Some(p) = self.sql_path(s, "a migrations folder or glob") {
                        spec.files.push(p);
                    }
                }
                MigrationEntry::Dialect(d) => {
                    if d.node != "postgres" {
                        self.error(CheckError::InvalidValue {
                            what: "migrations dialect",
                            value: d.node.clone(),
                            span: d.span.into(),
                            help: "write `dialect postgres` (the only dialect so far)".into(),
                        });
                    }
                }
                MigrationEntry::Queries(s) => spec.queries = self.sql_path(s, "a queries file"),
                MigrationEntry::Release(v, files) => {
                    let version = self.version(v);
                    let paths: Vec<PathRef> = files
                        .iter()
                        .filter_map(|s| self.sql_path(s, "a migration file"))
                        .collect();
                    if let Some(version) = version {
                        spec.releases.push((version, paths));
                    }
                }
            }
        }
        if spec.files.is_empty() && spec.releases.is_empty() {
            self.error(CheckError::MissingEntry {
                what: "the `migrations` block".into(),
                missing: "a `files` or `release` entry",
                span: block.span.into(),
                help: "add `files \"db/migrations\"` (a folder of `V1_5_0__what.sql` files) inside the block".into(),
            });
        }
        Some(spec)
    }

    fn sql_path(&mut self, s: &Spanned<ast::StrLit>, what: &'static str) -> Option<PathRef> {
        let shown = self.plain(s, what)?;
        Some(PathRef {
            path: self.base_dir.join(&shown),
            shown,
            span: s.span,
        })
    }
}
