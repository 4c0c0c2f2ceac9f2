//! The builder for `test` items (see `TestDecl`).

use pest::iterators::Pair;

use super::{Builder, Rule};
use crate::span::Spanned;
use crate::syntax::ast::{Expectation, TestDecl, TestEntry};

/// Keywords of test items, skipped like the others.
fn keyword(r: Rule) -> bool {
    matches!(
        r,
        Rule::kw_test
            | Rule::kw_name
            | Rule::kw_fault
            | Rule::kw_failed
            | Rule::kw_statement
            | Rule::kw_final
            | Rule::kw_playbook
            | Rule::kw_env
            | Rule::kw_expect
            | Rule::kw_stage
            | Rule::kw_rollback
            | Rule::kw_order
            | Rule::open
            | Rule::close
    )
}

impl Builder {
    fn test_args<'a>(&self, p: Pair<'a, Rule>) -> impl Iterator<Item = Pair<'a, Rule>> {
        p.into_inner().filter(|q| !keyword(q.as_rule()))
    }

    pub(super) fn test(&mut self, p: Pair<Rule>) -> TestDecl {
        let span = self.span(&p);
        let mut it = self.test_args(p);
        let name = self.string(it.next().expect("test name"));
        let mut entries = Vec::new();
        for e in it {
            let espan = self.span(&e);
            let entry = match e.as_rule() {
                Rule::t_playbook => {
                    let mut a = self.test_args(e);
                    let file = self.string(a.next().expect("playbook file"));
                    let name = a.next().map(|n| self.string(n));
                    TestEntry::Playbook { file, name }
                }
                Rule::t_env => TestEntry::Env(self.ident(self.test_args(e).next().expect("env"))),
                Rule::t_fault => {
                    let f = self.test_args(e).next().expect("fault spec");
                    TestEntry::Fault(Spanned::new(f.as_str().to_string(), self.span(&f)))
                }
                Rule::t_expect => {
                    let x = self.test_args(e).next().expect("expectation");
                    TestEntry::Expect(self.expectation(x))
                }
                r => unreachable!("test entry {r:?}"),
            };
            entries.push(Spanned::new(entry, espan));
        }
        TestDecl {
            name,
            entries,
            span,
        }
    }

    fn expectation(&mut self, x: Pair<Rule>) -> Expectation {
        match x.as_rule() {
            Rule::x_outcome => {
                Expectation::Outcome(self.ident(x.into_inner().next().expect("outcome")))
            }
            Rule::x_failed => {
                let mut a = self.test_args(x);
                let stage = self.ident(a.next().expect("stage"));
                let statement = a.next().map(|v| self.value(v));
                Expectation::Failed { stage, statement }
            }
            Rule::x_order => {
                Expectation::RollbackOrder(self.test_args(x).map(|c| self.ident(c)).collect())
            }
            Rule::x_final => {
                let parts: Vec<Pair<Rule>> = self.test_args(x).collect();
                let mut pairs = Vec::new();
                for chunk in parts.chunks(2) {
                    if let [c, v] = chunk {
                        let c = self.ident(c.clone());
                        let v = self.value(v.clone());
                        pairs.push((c, v));
                    }
                }
                Expectation::Final(pairs)
            }
            r => unreachable!("expectation {r:?}"),
        }
    }
}
