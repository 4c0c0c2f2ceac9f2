//! The builder for `monitor` items.

use pest::iterators::Pair;

use super::{Builder, Rule};
use crate::span::Spanned;
use crate::syntax::ast::*;

impl Builder {
    /// `monitor NAME METHOD "url" entries… [{ entries… }]`, entries flattened.
    pub(super) fn monitor(&mut self, p: Pair<Rule>) -> MonitorDecl {
        let mut it = self.args(p);
        let name = self.ident(it.next().expect("monitor name"));
        let method = self.ident(it.next().expect("method"));
        let url = self.string(it.next().expect("url"));
        let mut entries = Vec::new();
        for q in it {
            if q.as_rule() == Rule::monitor_block {
                let inner: Vec<_> = self.args(q).collect();
                for e in inner {
                    entries.push(self.monitor_entry(e));
                }
            } else {
                entries.push(self.monitor_entry(q));
            }
        }
        MonitorDecl {
            name,
            method,
            url,
            entries,
        }
    }

    fn monitor_entry(&mut self, e: Pair<Rule>) -> Spanned<MonitorEntry> {
        let span = self.span(&e);
        let rule = e.as_rule();
        if rule == Rule::opt {
            return Spanned::new(MonitorEntry::Opt(self.opt(e)), span);
        }
        let mut a = self.args(e);
        let entry = match rule {
            Rule::h_header => {
                let k = self.string(a.next().expect("header name"));
                let v = self.string(a.next().expect("header value"));
                MonitorEntry::Header(k, v)
            }
            Rule::h_bearer => MonitorEntry::Bearer(self.ident(a.next().expect("bearer"))),
            Rule::http_expect => MonitorEntry::Expect(self.value(a.next().expect("status"))),
            Rule::mon_budget => {
                let kind = self.ident(a.next().expect("budget kind"));
                let limit = self.value(a.next().expect("budget limit"));
                MonitorEntry::Budget(kind, limit)
            }
            r => unreachable!("monitor entry {r:?}"),
        };
        Spanned::new(entry, span)
    }
}
