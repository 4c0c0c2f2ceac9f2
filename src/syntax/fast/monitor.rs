//! The fast path for `monitor` items (one-line and block forms).

use super::{Fast, OPT_NAMES};
use crate::span::Spanned;
use crate::syntax::ast::*;

impl Fast<'_> {
    /// `monitor NAME METHOD "url" entries… [{ entries… }]`, entries flattened as the builder does.
    pub(super) fn monitor(&mut self) -> Option<MonitorDecl> {
        self.keyword("monitor")?;
        let name = self.ident()?;
        let start = self.pos_after_skip();
        let len = self.b[start..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        if len == 0 {
            return None;
        }
        self.pos = start + len;
        self.end = self.pos;
        let method = Spanned::new(
            self.src[start..self.pos].to_string(),
            self.span(start, self.pos),
        );
        let url = self.string()?;
        let mut entries = Vec::new();
        while let Some(e) = self.monitor_entry() {
            entries.push(e?);
        }
        if self.peek() == Some(b'{') {
            self.punct(b'{')?;
            while !self.eat(b'}') {
                entries.push(self.monitor_entry()??);
            }
        }
        Some(MonitorDecl {
            name,
            method,
            url,
            entries,
        })
    }

    /// `None`: no entry starts here; `Some(None)`: one starts but is not ours (decline).
    fn monitor_entry(&mut self) -> Option<Option<Spanned<MonitorEntry>>> {
        let start = self.pos_after_skip();
        let w = self.word()?;
        let entry = match w {
            "header" => {
                self.bump_word();
                Some((|| {
                    let k = self.string()?;
                    Some(MonitorEntry::Header(k, self.string()?))
                })())
            }
            "bearer" => {
                self.bump_word();
                Some(self.ident().map(MonitorEntry::Bearer))
            }
            "expect" => {
                self.bump_word();
                Some(self.value().map(MonitorEntry::Expect))
            }
            "budget" => {
                self.bump_word();
                Some((|| {
                    let kind = self.ident()?;
                    Some(MonitorEntry::Budget(kind, self.value()?))
                })())
            }
            x if OPT_NAMES.contains(&x) => Some(self.opt().map(MonitorEntry::Opt)),
            _ => None,
        }?;
        Some(entry.map(|e| Spanned::new(e, self.span(start, self.end))))
    }
}
