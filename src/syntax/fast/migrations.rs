//! The fast path for a component's `migrations KIND [{ … }]` entry.

use super::Fast;
use crate::span::Spanned;
use crate::syntax::ast::*;

impl Fast<'_> {
    /// After the word `migrations`: the kind, and the block of migration files if one follows.
    pub(super) fn migrations(&mut self) -> Option<ComponentEntry> {
        let kind = self.ident()?;
        if self.peek() != Some(b'{') {
            return Some(ComponentEntry::Migrations(kind, None));
        }
        let start = self.pos_after_skip();
        self.punct(b'{')?;
        let mut entries = Vec::new();
        while !self.eat(b'}') {
            let estart = self.pos_after_skip();
            let w = self.word()?;
            self.bump_word();
            let entry = match w {
                "files" => MigrationEntry::Files(self.string()?),
                "dialect" => MigrationEntry::Dialect(self.ident()?),
                "queries" => MigrationEntry::Queries(self.string()?),
                "release" => {
                    let v = self.value()?;
                    MigrationEntry::Release(v, self.strings()?)
                }
                _ => return None,
            };
            entries.push(Spanned::new(entry, self.span(estart, self.end)));
        }
        let block = Spanned::new(entries, self.span(start, self.end));
        Some(ComponentEntry::Migrations(kind, Some(block)))
    }
}
