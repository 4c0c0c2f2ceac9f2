//! The fast path for `guard metric` (one-line and block forms).

use super::{Fast, OPT_NAMES};
use crate::span::Spanned;
use crate::syntax::ast::*;

impl Fast<'_> {
    /// `guard metric "URL" entries… [{ entries… }]`, entries flattened as the builder does.
    pub(super) fn metric(&mut self) -> Option<MetricGuard> {
        let url = self.string()?;
        let mut entries = Vec::new();
        while let Some(e) = self.metric_entry() {
            entries.push(e?);
        }
        if self.peek() == Some(b'{') {
            self.punct(b'{')?;
            while !self.eat(b'}') {
                entries.push(self.metric_entry()??);
            }
        }
        Some(MetricGuard { url, entries })
    }

    /// `None`: no entry starts here; `Some(None)`: one starts but is not ours (decline).
    fn metric_entry(&mut self) -> Option<Option<Spanned<MetricEntry>>> {
        let start = self.pos_after_skip();
        let w = self.word()?;
        let entry = match w {
            "query" => {
                self.bump_word();
                Some(self.query())
            }
            "below" | "above" => {
                self.bump_word();
                let b = self.bound();
                Some(b.map(|b| {
                    if w == "below" {
                        MetricEntry::Below(b)
                    } else {
                        MetricEntry::Above(b)
                    }
                }))
            }
            "between" => {
                self.bump_word();
                Some((|| {
                    Some(MetricEntry::Between(self.number()?, self.number()?))
                })())
            }
            "failure_limit" => {
                self.bump_word();
                Some(self.value().map(MetricEntry::FailureLimit))
            }
            "no_data" => {
                self.bump_word();
                Some(self.ident().map(MetricEntry::NoData))
            }
            "bearer" => {
                self.bump_word();
                Some(self.ident().map(MetricEntry::Bearer))
            }
            x if OPT_NAMES.contains(&x) => Some(self.opt().map(MetricEntry::Opt)),
            _ => None,
        }?;
        Some(entry.map(|e| Spanned::new(e, self.span(start, self.end))))
    }

    /// `query "…"` or `query """…"""`: the literal and the text between its quotes.
    fn query(&mut self) -> Option<MetricEntry> {
        let start = self.pos_after_skip();
        if self.starts_raw() {
            let (from, to) = self.raw_body()?;
            return Some(MetricEntry::Query(Query {
                lit: Spanned::new(
                    StrLit {
                        parts: vec![StrPart::Text(self.src[from..to].to_string())],
                    },
                    self.span(start, self.end),
                ),
                source: self.src[from..to].to_string(),
                start: from,
                raw: true,
            }));
        }
        let lit = self.string()?;
        Some(MetricEntry::Query(Query {
            source: self.src[start + 1..self.end - 1].to_string(),
            start: start + 1,
            lit,
            raw: false,
        }))
    }

    /// `baseline [* N]` or a number.
    fn bound(&mut self) -> Option<Bound> {
        if self.word() == Some("baseline") {
            let start = self.pos;
            self.bump_word();
            let factor = if self.peek() == Some(b'*') {
                self.punct(b'*')?;
                Some(self.number()?)
            } else {
                None
            };
            return Some(Bound::Baseline {
                factor,
                span: self.span(start, self.end),
            });
        }
        self.number().map(Bound::Number)
    }

    /// A number as Prometheus writes one: `[-+]?[0-9.][A-Za-z0-9.+-]*`.
    fn number(&mut self) -> Option<Spanned<String>> {
        let start = self.pos_after_skip();
        let mut i = start;
        if matches!(self.b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if !self
            .b
            .get(i)
            .is_some_and(|c| c.is_ascii_digit() || *c == b'.')
        {
            return None;
        }
        i += 1;
        while self
            .b
            .get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || b".+-".contains(c))
        {
            i += 1;
        }
        self.pos = i;
        self.end = i;
        Some(Spanned::new(
            self.src[start..i].to_string(),
            self.span(start, i),
        ))
    }
}
