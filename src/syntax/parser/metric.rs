//! The builder for `guard metric` entries.

use pest::iterators::Pair;

use super::{Builder, Rule};
use crate::span::Spanned;
use crate::syntax::ast::*;

impl Builder {
    pub(super) fn metric_entry(&mut self, e: Pair<Rule>) -> Spanned<MetricEntry> {
        let span = self.span(&e);
        let rule = e.as_rule();
        if rule == Rule::opt {
            return Spanned::new(MetricEntry::Opt(self.opt(e)), span);
        }
        let mut a = self.args(e);
        let entry = match rule {
            Rule::m_query => {
                let q = a.next().expect("query");
                let raw = q.as_rule() == Rule::raw_string;
                let outer = q.as_span();
                let (start, source) = if raw {
                    (outer.start() + 3, &q.as_str()[3..q.as_str().len() - 3])
                } else {
                    (outer.start() + 1, &q.as_str()[1..q.as_str().len() - 1])
                };
                let source = source.to_string();
                MetricEntry::Query(Query {
                    lit: self.string(q),
                    source,
                    start,
                    raw,
                })
            }
            Rule::m_below => MetricEntry::Below(self.bound(a.next().expect("bound"))),
            Rule::m_above => MetricEntry::Above(self.bound(a.next().expect("bound"))),
            Rule::m_between => {
                let low = self.text(a.next().expect("low"));
                let high = self.text(a.next().expect("high"));
                MetricEntry::Between(low, high)
            }
            Rule::m_failure_limit => {
                MetricEntry::FailureLimit(self.value(a.next().expect("failure limit")))
            }
            Rule::m_no_data => MetricEntry::NoData(self.ident(a.next().expect("no_data"))),
            Rule::h_bearer => MetricEntry::Bearer(self.ident(a.next().expect("bearer"))),
            r => unreachable!("metric entry {r:?}"),
        };
        Spanned::new(entry, span)
    }

    fn bound(&mut self, p: Pair<Rule>) -> Bound {
        match p.as_rule() {
            Rule::number => Bound::Number(self.text(p)),
            Rule::m_baseline => {
                let span = self.span(&p);
                let factor = self
                    .args(p)
                    .find(|q| q.as_rule() == Rule::number)
                    .map(|q| self.text(q));
                Bound::Baseline { factor, span }
            }
            r => unreachable!("bound {r:?}"),
        }
    }
}
