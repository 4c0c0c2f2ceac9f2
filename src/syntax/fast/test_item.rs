//! The fast path for `test` items.

use super::Fast;
use crate::span::Spanned;
use crate::syntax::ast::*;
use crate::syntax::parser::is_ident;

impl Fast<'_> {
    // ------------------------------------------------------------ test

    pub(super) fn test(&mut self) -> Option<TestDecl> {
        let start = self.pos;
        self.keyword("test")?;
        let name = self.string()?;
        self.punct(b'{')?;
        let mut entries = Vec::new();
        while !self.eat(b'}') {
            let estart = self.pos_after_skip();
            let entry = match self.word()? {
                "playbook" => {
                    self.bump_word();
                    let file = self.string()?;
                    let name = if self.word() == Some("name") {
                        self.bump_word();
                        Some(self.string()?)
                    } else {
                        None
                    };
                    TestEntry::Playbook { file, name }
                }
                "env" => {
                    self.bump_word();
                    TestEntry::Env(self.ident()?)
                }
                "fault" => {
                    self.bump_word();
                    let from = self.pos_after_skip();
                    let len = self.b[from..]
                        .iter()
                        .take_while(|c| !b" \t\r\n#{}".contains(c))
                        .count();
                    if len == 0 {
                        return None;
                    }
                    self.pos = from + len;
                    self.end = self.pos;
                    TestEntry::Fault(Spanned::new(
                        self.src[from..self.pos].to_string(),
                        self.span(from, self.pos),
                    ))
                }
                "expect" => {
                    self.bump_word();
                    TestEntry::Expect(self.expectation()?)
                }
                _ => return None,
            };
            entries.push(Spanned::new(entry, self.span(estart, self.end)));
        }
        Some(TestDecl {
            name,
            entries,
            span: self.span(start, self.end),
        })
    }

    /// `expect …`, in pest's order of alternatives; anything where pest would backtrack into
    /// another reading is declined.
    fn expectation(&mut self) -> Option<Expectation> {
        match self.word()? {
            "failed" => {
                self.bump_word();
                self.keyword("stage")?;
                let stage = self.ident()?;
                let statement = if self.word() == Some("statement") {
                    self.bump_word();
                    Some(self.value()?)
                } else {
                    None
                };
                Some(Expectation::Failed { stage, statement })
            }
            "rollback" => {
                self.bump_word();
                self.keyword("order")?;
                let mut names = Vec::new();
                while let Some(n) = self.test_name() {
                    names.push(n);
                }
                (!names.is_empty()).then_some(Expectation::RollbackOrder(names))
            }
            "final" => {
                self.bump_word();
                let mut pairs = Vec::new();
                while let Some(n) = self.test_name() {
                    pairs.push((n, self.value()?));
                }
                (!pairs.is_empty()).then_some(Expectation::Final(pairs))
            }
            _ => Some(Expectation::Outcome(self.ident()?)),
        }
    }

    /// A component name in a test: any name but the words that start a test entry.
    fn test_name(&mut self) -> Option<Ident> {
        match self.word()? {
            "expect" | "fault" | "env" | "playbook" => None,
            w if is_ident(w) => self.ident(),
            _ => None,
        }
    }
}
