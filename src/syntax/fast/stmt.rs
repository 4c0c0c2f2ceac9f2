//! The fast path for stages and statements: actions, guards, `http` entries, scripts.

use super::{Fast, OPT_NAMES};
use crate::span::Spanned;
use crate::syntax::ast::*;

impl Fast<'_> {
    // ------------------------------------------------------------ stages and statements

    pub(super) fn stage(&mut self) -> Option<StageDecl> {
        self.keyword("stage")?;
        let name = self.ident()?;
        self.punct(b'{')?;
        let mut stmts = Vec::new();
        let mut rollbacks = Vec::new();
        while !self.eat(b'}') {
            if self.word() == Some("rollback") {
                let start = self.pos;
                self.bump_word();
                let decl = if self.eat(b'{') {
                    RollbackDecl::Block(self.stmts_until_close()?)
                } else {
                    self.keyword("none")?;
                    RollbackDecl::None
                };
                rollbacks.push(Spanned::new(decl, self.span(start, self.end)));
            } else {
                stmts.push(self.stmt()?);
            }
        }
        Some(StageDecl {
            name,
            stmts,
            rollbacks,
        })
    }

    /// Statements up to and including a `}` (the `{` already read).
    pub(super) fn stmts_until_close(&mut self) -> Option<Vec<Stmt>> {
        let mut out = Vec::new();
        while !self.eat(b'}') {
            out.push(self.stmt()?);
        }
        Some(out)
    }

    fn stmt(&mut self) -> Option<Stmt> {
        let start = self.pos_after_skip();
        let w = self.word()?;
        self.bump_word();
        let kind = match w {
            "guard" => StmtKind::Guard(self.guard()?),
            "rolling" => StmtKind::Rolling {
                comp: self.ident()?,
                opts: self.opts()?,
            },
            "canary" | "blue_green" => {
                let comp = self.ident()?;
                // `(canary_steps | opt)*` for a canary, `opt*` for a blue-green switch.
                let mut steps = Vec::new();
                let mut opts = Vec::new();
                loop {
                    if w == "canary" && self.word() == Some("steps") {
                        let sstart = self.pos;
                        self.bump_word();
                        let mut values = Vec::new();
                        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                            values.push(self.value()?);
                        }
                        if values.is_empty() {
                            return None;
                        }
                        steps.push(Spanned::new(values, self.span(sstart, self.end)));
                    } else if self.word().is_some_and(|x| OPT_NAMES.contains(&x)) {
                        opts.push(self.opt()?);
                    } else {
                        break;
                    }
                }
                let block = if self.eat(b'{') {
                    Some(self.stmts_until_close()?)
                } else {
                    None
                };
                if w == "canary" {
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
            "restart" => StmtKind::Restart {
                comp: self.ident()?,
                opts: self.opts()?,
            },
            "undo" => {
                let comp = self.ident()?;
                let revision = if self.word() == Some("to") && self.revision_follows() {
                    self.keyword("to")?;
                    self.keyword("revision")?;
                    // pest would retry a failed `to revision V` as the option `to revision`.
                    Some(self.value()?)
                } else {
                    None
                };
                StmtKind::Undo {
                    comp,
                    revision,
                    opts: self.opts()?,
                }
            }
            "switch" => {
                let comp = self.ident()?;
                self.keyword("to")?;
                StmtKind::Switch {
                    comp,
                    colour: self.ident()?,
                }
            }
            "scale" => StmtKind::Scale {
                comp: self.ident()?,
                replicas: self.value()?,
                opts: self.opts()?,
            },
            "pause" => StmtKind::Pause {
                duration: self.value()?,
            },
            "approve" => StmtKind::Approve {
                question: self.string()?,
            },
            _ => return None,
        };
        Some(Stmt {
            kind,
            span: self.span(start, self.end),
        })
    }

    /// After the word `to` at `pos`: whether the word `revision` comes next.
    fn revision_follows(&mut self) -> bool {
        let (pos, end) = (self.pos, self.end);
        self.bump_word();
        let revision = self.word() == Some("revision");
        (self.pos, self.end) = (pos, end);
        revision
    }

    fn guard(&mut self) -> Option<Guard> {
        let w = self.word()?;
        self.bump_word();
        Some(match w {
            "http" => Guard::Http(self.http()?),
            "logs" => {
                let comp = self.ident()?;
                self.keyword("matches")?;
                Guard::Logs {
                    comp,
                    pattern: self.string()?,
                    opts: self.opts()?,
                }
            }
            "ready" => Guard::Ready {
                comp: self.ident()?,
                opts: self.opts()?,
            },
            "hook" => Guard::Hook {
                path: self.string()?,
                opts: self.opts()?,
            },
            "rhai" => Guard::Rhai {
                script: self.script()?,
                opts: self.opts()?,
            },
            "metric" => Guard::Metric(self.metric()?),
            _ => return None,
        })
    }

    fn http(&mut self) -> Option<HttpGuard> {
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
        if self.word() == Some("expect") {
            let start = self.pos;
            self.bump_word();
            let v = self.value()?;
            entries.push(Spanned::new(
                HttpEntry::Expect(v),
                self.span(start, self.end),
            ));
        }
        if self.eat(b'{') {
            while !self.eat(b'}') {
                entries.push(self.http_entry()?);
            }
        }
        Some(HttpGuard {
            method,
            url,
            entries,
            opts: self.opts()?,
        })
    }

    fn http_entry(&mut self) -> Option<Spanned<HttpEntry>> {
        let start = self.pos_after_skip();
        let w = self.word()?;
        if OPT_NAMES.contains(&w) {
            let opt = self.opt()?;
            return Some(Spanned::new(
                HttpEntry::Opt(opt),
                self.span(start, self.end),
            ));
        }
        self.bump_word();
        let entry = match w {
            "header" => {
                let k = self.string()?;
                HttpEntry::Header(k, self.string()?)
            }
            "bearer" => HttpEntry::Bearer(self.ident()?),
            "json" => {
                let from = self.pos_after_skip();
                self.json_value()?;
                // The builder hands the text to serde_json; a failure is pest's BadJson.
                HttpEntry::Json(serde_json::from_str(&self.src[from..self.end]).ok()?)
            }
            "body" => {
                if self.starts_raw() {
                    let (from, to) = self.raw_body()?;
                    HttpEntry::Body(Spanned::new(
                        StrLit {
                            parts: vec![StrPart::Text(self.src[from..to].to_string())],
                        },
                        self.span(from, to),
                    ))
                } else {
                    HttpEntry::Body(self.string()?)
                }
            }
            "expect" if self.word() == Some("body") => {
                self.bump_word();
                self.keyword("contains")?;
                HttpEntry::ExpectBodyContains(self.string()?)
            }
            "expect" => HttpEntry::Expect(self.value()?),
            "check" => {
                self.keyword("rhai")?;
                HttpEntry::Check(self.script()?)
            }
            _ => return None,
        };
        Some(Spanned::new(entry, self.span(start, self.end)))
    }

    /// Inline Rhai: a raw string (span: the body) or a plain string without interpolation (span:
    /// inside the quotes).
    fn script(&mut self) -> Option<Script> {
        if self.starts_raw() {
            let (from, to) = self.raw_body()?;
            return Some(Script {
                text: self.src[from..to].to_string(),
                span: self.span(from, to),
                raw: true,
            });
        }
        let s = self.string()?;
        Some(Script {
            text: s.node.as_plain()?,
            span: self.span(s.span.start as usize + 1, s.span.end as usize - 1),
            raw: false,
        })
    }
}
