//! The builder for statements: actions, guards and their `http` entries.

use pest::iterators::Pair;

use super::{Builder, Rule};
use crate::span::Spanned;
use crate::syntax::ast::*;
use crate::syntax::error::SyntaxError;

impl Builder {
    pub(super) fn stmt(&mut self, p: Pair<Rule>) -> Stmt {
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut it = self.args(p).peekable();
        let kind = match rule {
            Rule::s_rolling => {
                let comp = self.ident(it.next().expect("comp"));
                StmtKind::Rolling {
                    comp,
                    opts: self.opts(it),
                }
            }
            Rule::s_canary | Rule::s_blue_green => {
                let comp = self.ident(it.next().expect("comp"));
                let mut opts = Vec::new();
                let mut steps = Vec::new();
                let mut block = None;
                for q in it {
                    match q.as_rule() {
                        Rule::opt => opts.push(self.opt(q)),
                        Rule::canary_steps => {
                            let sspan = self.span(&q);
                            let values: Vec<_> = self.args(q).collect();
                            let values = values.into_iter().map(|v| self.value(v)).collect();
                            steps.push(Spanned::new(values, sspan));
                        }
                        Rule::block => {
                            let inner: Vec<_> = self.args(q).collect();
                            block = Some(self.stmts(inner.into_iter()))
                        }
                        r => unreachable!("canary part {r:?}"),
                    }
                }
                if rule == Rule::s_canary {
                    StmtKind::Canary {
                        comp,
                        steps,
                        opts,
                        block,
                    }
                } else {
                    StmtKind::BlueGreen { comp, opts, block }
                }
            }
            Rule::s_restart => {
                let comp = self.ident(it.next().expect("comp"));
                StmtKind::Restart {
                    comp,
                    opts: self.opts(it),
                }
            }
            Rule::s_undo => {
                let comp = self.ident(it.next().expect("comp"));
                let revision = match it.peek().map(|q| q.as_rule()) {
                    Some(Rule::undo_revision) => {
                        let r = it.next().expect("peeked");
                        Some(self.value(self.args(r).next().expect("revision")))
                    }
                    _ => None,
                };
                StmtKind::Undo {
                    comp,
                    revision,
                    opts: self.opts(it),
                }
            }
            Rule::s_switch => {
                let comp = self.ident(it.next().expect("comp"));
                let colour = self.ident(it.next().expect("colour"));
                StmtKind::Switch { comp, colour }
            }
            Rule::s_scale => {
                let comp = self.ident(it.next().expect("comp"));
                let replicas = self.value(it.next().expect("replicas"));
                StmtKind::Scale {
                    comp,
                    replicas,
                    opts: self.opts(it),
                }
            }
            Rule::s_pause => StmtKind::Pause {
                duration: self.value(it.next().expect("duration")),
            },
            Rule::s_approve => StmtKind::Approve {
                question: self.string(it.next().expect("question")),
            },
            Rule::s_guard => StmtKind::Guard(self.guard(it.next().expect("guard kind"))),
            r => unreachable!("statement {r:?}"),
        };
        Stmt { kind, span }
    }

    fn guard(&mut self, p: Pair<Rule>) -> Guard {
        let rule = p.as_rule();
        let mut it = self.args(p);
        match rule {
            Rule::g_http => {
                let method = self.ident(it.next().expect("method"));
                let url = self.string(it.next().expect("url"));
                let mut entries = Vec::new();
                let mut opts = Vec::new();
                for q in it {
                    match q.as_rule() {
                        Rule::http_expect => {
                            let s = self.span(&q);
                            let v = self.value(self.args(q).next().expect("status"));
                            entries.push(Spanned::new(HttpEntry::Expect(v), s));
                        }
                        Rule::http_block => {
                            let inner: Vec<_> = self.args(q).collect();
                            for e in inner {
                                let entry = self.http_entry(e);
                                entries.push(entry);
                            }
                        }
                        Rule::opt => opts.push(self.opt(q)),
                        r => unreachable!("http guard part {r:?}"),
                    }
                }
                Guard::Http(HttpGuard {
                    method,
                    url,
                    entries,
                    opts,
                })
            }
            Rule::g_metric => {
                let url = self.string(it.next().expect("url"));
                let mut entries = Vec::new();
                for q in it {
                    if q.as_rule() == Rule::metric_block {
                        let inner: Vec<_> = self.args(q).collect();
                        for e in inner {
                            entries.push(self.metric_entry(e));
                        }
                    } else {
                        entries.push(self.metric_entry(q));
                    }
                }
                Guard::Metric(MetricGuard { url, entries })
            }
            Rule::g_logs => {
                let comp = self.ident(it.next().expect("comp"));
                let pattern = self.string(it.next().expect("pattern"));
                Guard::Logs {
                    comp,
                    pattern,
                    opts: self.opts(it),
                }
            }
            Rule::g_ready => {
                let comp = self.ident(it.next().expect("comp"));
                Guard::Ready {
                    comp,
                    opts: self.opts(it),
                }
            }
            Rule::g_hook => {
                let path = self.string(it.next().expect("path"));
                Guard::Hook {
                    path,
                    opts: self.opts(it),
                }
            }
            Rule::g_rhai => {
                let script = self.script(it.next().expect("script"));
                Guard::Rhai {
                    script,
                    opts: self.opts(it),
                }
            }
            r => unreachable!("guard {r:?}"),
        }
    }

    fn http_entry(&mut self, e: Pair<Rule>) -> Spanned<HttpEntry> {
        let span = self.span(&e);
        let rule = e.as_rule();
        if rule == Rule::opt {
            return Spanned::new(HttpEntry::Opt(self.opt(e)), span);
        }
        let mut a = self.args(e);
        let entry = match rule {
            Rule::h_header => {
                let k = self.string(a.next().expect("header name"));
                let v = self.string(a.next().expect("header value"));
                HttpEntry::Header(k, v)
            }
            Rule::h_bearer => HttpEntry::Bearer(self.ident(a.next().expect("bearer"))),
            Rule::h_json => {
                let j = a.next().expect("json");
                let jspan = self.span(&j);
                match serde_json::from_str(j.as_str()) {
                    Ok(v) => HttpEntry::Json(v),
                    Err(err) => {
                        self.errors.push(SyntaxError::BadJson {
                            span: jspan.into(),
                            reason: err.to_string(),
                        });
                        HttpEntry::Json(serde_json::Value::Null)
                    }
                }
            }
            Rule::h_body => {
                let b = a.next().expect("body");
                if b.as_rule() == Rule::raw_string {
                    let script = self.script(b);
                    HttpEntry::Body(Spanned::new(
                        StrLit {
                            parts: vec![StrPart::Text(script.text)],
                        },
                        script.span,
                    ))
                } else {
                    HttpEntry::Body(self.string(b))
                }
            }
            Rule::http_expect => HttpEntry::Expect(self.value(a.next().expect("status"))),
            Rule::h_expect_body => {
                HttpEntry::ExpectBodyContains(self.string(a.next().expect("needle")))
            }
            Rule::h_check => HttpEntry::Check(self.script(a.next().expect("script"))),
            r => unreachable!("http entry {r:?}"),
        };
        Spanned::new(entry, span)
    }
}
