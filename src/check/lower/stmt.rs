//! Stages, actions and guards.

use foldhash::{HashMap, HashMapExt};
use std::time::Duration;

use crate::check::errors::CheckError;
use crate::program::*;
use crate::span::{Span, Spanned};
use crate::syntax::ast::{self, Value};

use super::value::Budget;
use super::{Lowerer, Purpose};

/// Where a statement stands; some statements are only allowed in some places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Stage,
    Rollback,
    /// Inside `canary … { }` or `blue_green … { }`: guards only.
    GuardBlock,
}

const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl Lowerer<'_> {
    pub(super) fn stage(&mut self, s: &ast::StageDecl, on_failure: OnFailure) -> Stage {
        let stmts = self.stmts(&s.stmts, Place::Stage);
        let mut rollback = Rollback::Implicit;
        for (i, r) in s.rollbacks.iter().enumerate() {
            if i > 0 {
                self.duplicate("rollback clause", "rollback", r.span, s.rollbacks[0].span);
                continue;
            }
            rollback = match &r.node {
                ast::RollbackDecl::None => Rollback::None(r.span),
                ast::RollbackDecl::Block(body) => {
                    Rollback::Block(self.stmts(body, Place::Rollback), r.span)
                }
            };
        }
        // A stage that rolls nothing back under `on_failure rollback` warns, unless every
        // component its actions change has forward-only migrations: for those, leaving them in
        // place (and fixing forward) is the only way back, and `rollback none` says exactly that.
        let rolls_nothing = match &rollback {
            Rollback::None(span) => Some((*span, "rollback disabled here")),
            Rollback::Block(b, span) if b.is_empty() => {
                Some((*span, "an empty block rolls nothing back"))
            }
            _ => None,
        };
        if let Some((span, label)) = rolls_nothing {
            let actions: Vec<&Op> = stmts
                .iter()
                .map(|st| &st.op)
                .filter(|op| op.is_action())
                .collect();
            let forward_only = |op: &&Op| {
                op.component().is_some_and(|c| {
                    self.components
                        .get(c)
                        .is_some_and(|c| c.migrations == Migrations::ForwardOnly)
                })
            };
            let empty_block = matches!(rollback, Rollback::Block(..));
            if on_failure == OnFailure::Rollback
                && !actions.is_empty()
                && (empty_block || !actions.iter().all(forward_only))
            {
                self.error(CheckError::NoWayBack {
                    stage: s.name.node.clone(),
                    span: span.into(),
                    label,
                });
            }
        }
        Stage {
            name: s.name.node.clone(),
            span: s.name.span,
            stmts,
            rollback,
        }
    }

    /// A block of guards outside a stage (a fleet's `soak`): guards only, like a canary's block.
    pub(crate) fn guard_block(&mut self, stmts: &[ast::Stmt]) -> Vec<Statement> {
        self.stmts(stmts, Place::GuardBlock)
    }

    fn stmts(&mut self, stmts: &[ast::Stmt], place: Place) -> Vec<Statement> {
        stmts.iter().filter_map(|s| self.stmt(s, place)).collect()
    }

    /// Check a statement's options against those it takes; returns them by name.
    pub(super) fn options<'o>(
        &mut self,
        opts: &'o [ast::Opt],
        allowed: &[&str],
        stmt: &str,
    ) -> HashMap<&'o str, &'o Spanned<Value>> {
        let mut out: HashMap<&str, &Spanned<Value>> = HashMap::new();
        let mut first: HashMap<&str, Span> = HashMap::new();
        for o in opts {
            let name = o.name.node.as_str();
            if !allowed.contains(&name) {
                self.error(CheckError::Misplaced {
                    what: format!("`{name}` on `{stmt}`"),
                    span: o.name.span.into(),
                    help: if allowed.is_empty() {
                        format!("`{stmt}` takes no options")
                    } else {
                        format!(
                            "`{stmt}` takes {}",
                            allowed
                                .iter()
                                .map(|a| format!("`{a}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                });
                continue;
            }
            if let Some(f) = first.get(name) {
                let f = *f;
                self.duplicate("option", name, o.name.span, f);
                continue;
            }
            first.insert(name, o.name.span);
            out.insert(name, &o.value);
        }
        out
    }

    fn opt_duration(
        &mut self,
        opts: &HashMap<&str, &Spanned<Value>>,
        name: &str,
    ) -> Option<Duration> {
        opts.get(name).and_then(|v| self.duration(v))
    }

    fn target_version(
        &mut self,
        opts: &HashMap<&str, &Spanned<Value>>,
        comp: usize,
    ) -> crate::version::Version {
        match opts.get("to") {
            Some(v) => match self.version(v) {
                Some(to) => {
                    // A statement that takes the component below where the run starts is a
                    // downgrade in one step, as a component's own `to` older than `from` is.
                    let from = &self.components[comp].from;
                    if to < *from {
                        self.error(CheckError::Downgrade {
                            comp: self.components[comp].name.clone(),
                            from: from.to_string(),
                            to: to.to_string(),
                            span: v.span.into(),
                        });
                    }
                    to
                }
                None => self.components[comp].to.clone(),
            },
            None => self.components[comp].to.clone(),
        }
    }

    fn require_plain_deployments(
        &mut self,
        comp: usize,
        name: &Spanned<String>,
        stmt: &'static str,
    ) -> bool {
        if self.components[comp].is_blue_green() {
            self.error(CheckError::BlueGreenMisuse {
                stmt,
                what: format!("the blue-green component `{}`", name.node),
                span: name.span.into(),
                help: format!(
                    "`{}` is upgraded with `blue_green {} {{ … }}` and switched with `switch {} to blue|green`",
                    name.node, name.node, name.node
                ),
            });
            return false;
        }
        true
    }

    fn stmt(&mut self, s: &ast::Stmt, place: Place) -> Option<Statement> {
        if place == Place::GuardBlock && !matches!(s.kind, ast::StmtKind::Guard(_)) {
            self.error(CheckError::Misplaced {
                what: format!("`{}`", s.kind.keyword()),
                span: s.span.into(),
                help: "only guards run inside a `canary` or `blue_green` block; put other statements after it".into(),
            });
            return None;
        }
        let op = match &s.kind {
            ast::StmtKind::Rolling { comp, opts } => {
                let o = self.options(
                    opts,
                    &["to", "max_unavailable", "max_surge", "timeout"],
                    "rolling",
                );
                let max_unavailable = o
                    .get("max_unavailable")
                    .and_then(|v| self.int_or_percent(v, Budget::Unavailable));
                let max_surge = o
                    .get("max_surge")
                    .and_then(|v| self.int_or_percent(v, Budget::Surge));
                let zero = |b: &Option<IntOrPercent>| {
                    matches!(b, Some(IntOrPercent::Int(0) | IntOrPercent::Percent(0)))
                };
                {
                    if zero(&max_unavailable) && zero(&max_surge) {
                        let (a, b) = (o["max_unavailable"].span, o["max_surge"].span);
                        self.error(CheckError::NoProgress {
                            span: a.to(b).into(),
                        });
                    }
                }
                let timeout = self.opt_duration(&o, "timeout");
                let c = self.component_index(comp)?;
                self.require_plain_deployments(c, comp, "rolling");
                Op::Rolling {
                    comp: c,
                    to: self.target_version(&o, c),
                    max_unavailable,
                    max_surge,
                    timeout,
                }
            }
            ast::StmtKind::Canary {
                comp,
                steps,
                opts,
                block,
            } => {
                let o = self.options(opts, &["to", "weight", "for", "every", "timeout"], "canary");
                let c = self.component_index(comp);
                let mut weights: Vec<u32> = Vec::new();
                for (i, st) in steps.iter().enumerate() {
                    if i > 0 {
                        self.duplicate("entry", "steps", st.span, steps[0].span);
                        continue;
                    }
                    let mut ok = true;
                    for v in &st.node {
                        match self.weight(v) {
                            Some(w) => {
                                if weights.last().is_some_and(|last| *last >= w) {
                                    self.error(CheckError::InvalidValue {
                                        what: "canary step",
                                        value: format!("{w}%"),
                                        span: v.span.into(),
                                        help: "each step sends more traffic than the one before it, like `steps 10% 25% 50%`".into(),
                                    });
                                    ok = false;
                                }
                                weights.push(w);
                            }
                            None => ok = false,
                        }
                    }
                    if !ok {
                        weights.clear();
                    }
                }
                let weight = match (o.get("weight"), steps.first()) {
                    (Some(v), Some(st)) => {
                        self.error(CheckError::Misplaced {
                            what: "`weight` beside `steps`".into(),
                            span: v.span.to(st.span).into(),
                            help: "the steps give the weights: drop `weight`, or write one step"
                                .into(),
                        });
                        None
                    }
                    (Some(v), None) => self.weight(v),
                    (None, Some(_)) => weights.first().copied(),
                    (None, None) => {
                        self.error(CheckError::MissingEntry {
                            what: "`canary`".into(),
                            missing: "a `weight`",
                            span: s.span.into(),
                            help: format!("write `canary {} weight 10%`", comp.node),
                        });
                        None
                    }
                };
                if steps.is_empty() {
                    weights = weight.into_iter().collect();
                }
                // `for D` is the one-step form's time; `every D` each step's.
                let duration = match (o.get("for"), o.get("every"), steps.is_empty()) {
                    (Some(f), Some(ev), _) => {
                        self.error(CheckError::Misplaced {
                            what: "`for` beside `every`".into(),
                            span: f.span.to(ev.span).into(),
                            help: "`canary C weight P% for D` runs one step for D; `canary C steps … every D` runs each step for D".into(),
                        });
                        None
                    }
                    (None, Some(ev), true) => {
                        self.error(CheckError::Misplaced {
                            what: "`every` without `steps`".into(),
                            span: ev.span.into(),
                            help: format!(
                                "write `canary {} weight 10% for 5m`, or `canary {} steps 10% 25% 50% every 5m`",
                                comp.node, comp.node
                            ),
                        });
                        None
                    }
                    (Some(f), None, false) => {
                        self.error(CheckError::Misplaced {
                            what: "`for` with `steps`".into(),
                            span: f.span.into(),
                            help: format!(
                                "each step runs for `every D`: write `canary {} steps … every 5m` (`for D` is the one-step form's, `canary {} weight 10% for 5m`)",
                                comp.node, comp.node
                            ),
                        });
                        None
                    }
                    (None, None, false) => {
                        self.error(CheckError::MissingEntry {
                            what: "`canary … steps`".into(),
                            missing: "`every D` (how long each step runs)",
                            span: s.span.into(),
                            help: format!(
                                "write `canary {} steps … every 5m`: each step holds its weight for that long",
                                comp.node
                            ),
                        });
                        None
                    }
                    (Some(v), None, true) | (None, Some(v), false) => self.duration(v),
                    (None, None, true) => None,
                };
                let guards = self.stmts(block.as_deref().unwrap_or(&[]), Place::GuardBlock);
                let c = c?;
                self.require_plain_deployments(c, comp, "canary");
                Op::Canary {
                    comp: c,
                    to: self.target_version(&o, c),
                    weight: weight.unwrap_or(10),
                    steps: if weights.is_empty() {
                        vec![10]
                    } else {
                        weights
                    },
                    duration,
                    guards,
                    timeout: self.opt_duration(&o, "timeout"),
                }
            }
            ast::StmtKind::BlueGreen { comp, opts, block } => {
                let o = self.options(opts, &["to", "timeout"], "blue_green");
                let c = self.component_index(comp);
                let guards = self.stmts(block.as_deref().unwrap_or(&[]), Place::GuardBlock);
                let c = c?;
                if !self.components[c].is_blue_green() {
                    self.error(CheckError::BlueGreenMisuse {
                        stmt: "blue_green",
                        what: format!("`{}`, which has no `blue_green {{ … }}` block", comp.node),
                        span: comp.span.into(),
                        help: format!(
                            "declare `blue_green {{ service … selector … blue … green … }}` in component `{}`, or use `rolling {}`",
                            comp.node, comp.node
                        ),
                    });
                }
                Op::BlueGreen {
                    comp: c,
                    to: self.target_version(&o, c),
                    guards,
                    timeout: self.opt_duration(&o, "timeout"),
                }
            }
            ast::StmtKind::Restart { comp, opts } => {
                let o = self.options(opts, &["timeout"], "restart");
                let c = self.component_index(comp)?;
                Op::Restart {
                    comp: c,
                    timeout: self.opt_duration(&o, "timeout"),
                }
            }
            ast::StmtKind::Undo {
                comp,
                revision,
                opts,
            } => {
                self.options(opts, &[], "undo");
                let c = self.component_index(comp)?;
                self.require_plain_deployments(c, comp, "undo");
                let revision = match revision {
                    Some(v) => Some(self.count(v, "a revision", 1..=u32::MAX as u64)? as u64),
                    None => None,
                };
                Op::Undo { comp: c, revision }
            }
            ast::StmtKind::Switch { comp, colour } => {
                let c = self.component_index(comp)?;
                let col = match colour.node.as_str() {
                    "blue" => Colour::Blue,
                    "green" => Colour::Green,
                    other => {
                        self.error(CheckError::InvalidValue {
                            what: "colour",
                            value: other.to_string(),
                            span: colour.span.into(),
                            help: "write `switch C to blue` or `switch C to green`".into(),
                        });
                        return None;
                    }
                };
                if !self.components[c].is_blue_green() {
                    self.error(CheckError::BlueGreenMisuse {
                        stmt: "switch",
                        what: format!("`{}`, which has no `blue_green {{ … }}` block", comp.node),
                        span: comp.span.into(),
                        help: "`switch` moves a blue-green Service between its colours; declare `blue_green { … }` in the component".into(),
                    });
                    return None;
                }
                Op::Switch {
                    comp: c,
                    colour: col,
                }
            }
            ast::StmtKind::Scale {
                comp,
                replicas,
                opts,
            } => {
                let o = self.options(opts, &["timeout"], "scale");
                let c = self.component_index(comp);
                let n = self.count(replicas, "a replica count", 0..=10_000);
                Op::Scale {
                    comp: c?,
                    replicas: n?,
                    timeout: self.opt_duration(&o, "timeout"),
                }
            }
            ast::StmtKind::Pause { duration } => Op::Pause(self.duration(duration)?),
            ast::StmtKind::Approve { question } => {
                Op::Approve(self.template(question, Purpose::Other, None))
            }
            ast::StmtKind::Guard(g) => Op::Guard(self.guard(g, place)?),
        };
        Some(Statement { op, span: s.span })
    }

    fn within(&mut self, opts: &[ast::Opt], stmt: &str) -> Option<Duration> {
        let o = self.options(opts, &["within"], stmt);
        self.opt_duration(&o, "within")
    }

    fn guard(&mut self, g: &ast::Guard, place: Place) -> Option<Guard> {
        match g {
            ast::Guard::Http(h) => self.http_guard(h),
            ast::Guard::Metric(m) => self.metric_guard(m, place == Place::GuardBlock),
            ast::Guard::Logs {
                comp,
                pattern,
                opts,
            } => {
                let within = self.within(opts, "guard logs");
                let c = self.component_index(comp);
                let pat = self.plain(pattern, "a log pattern")?;
                // Parsing is the whole check (the runner compiles the regex); compiling it here
                // cost 11% of a check's instructions, parsing it 8% (so the usual patterns are
                // first tried by the quick check).
                let parsed = match super::regex_quick::surely_valid(&pat) {
                    true => Ok(()),
                    false => regex_syntax::Parser::new().parse(&pat).map(drop),
                };
                if let Err(e) = parsed {
                    self.error(CheckError::BadRegex {
                        reason: e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or("invalid")
                            .trim()
                            .to_string(),
                        span: pattern.span.into(),
                    });
                    return None;
                }
                Some(Guard {
                    kind: GuardKind::Logs {
                        comp: c?,
                        pattern: pat,
                    },
                    within,
                })
            }
            ast::Guard::Ready { comp, opts } => {
                let within = self.within(opts, "guard ready");
                Some(Guard {
                    kind: GuardKind::Ready {
                        comp: self.component_index(comp)?,
                    },
                    within,
                })
            }
            ast::Guard::Hook { path, opts } => {
                let within = self.within(opts, "guard hook");
                let shown = self.plain(path, "a hook path")?;
                let resolved = self.base_dir.join(&shown);
                // Inside the playbook's tree, a regular file, at most 16 MiB: never a secret
                // of the machine shown in an excerpt.
                if let Err(reason) = crate::check::admit_reference(&self.base_dir, &resolved) {
                    self.error(CheckError::MissingHook {
                        path: shown,
                        reason,
                        span: path.span.into(),
                    });
                    return None;
                }
                match crate::check::read_limited(&resolved) {
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Ok(source) => {
                            self.hooks
                                .push((shown.clone(), resolved.clone(), source.clone()));
                            Some(Guard {
                                kind: GuardKind::Hook {
                                    path: resolved,
                                    shown,
                                    source,
                                },
                                within,
                            })
                        }
                        Err(_) => {
                            self.error(CheckError::MissingHook {
                                path: shown,
                                reason: "not UTF-8 text".into(),
                                span: path.span.into(),
                            });
                            None
                        }
                    },
                    Err(e) => {
                        self.error(CheckError::MissingHook {
                            path: shown,
                            reason: crate::check::io_reason(&e),
                            span: path.span.into(),
                        });
                        None
                    }
                }
            }
            ast::Guard::Rhai { script, opts } => {
                let within = self.within(opts, "guard rhai");
                Some(Guard {
                    kind: GuardKind::Rhai {
                        script: Script {
                            text: script.text.clone(),
                            span: script.span,
                        },
                    },
                    within,
                })
            }
        }
    }

    pub(super) fn http_guard(&mut self, h: &ast::HttpGuard) -> Option<Guard> {
        let method = h.method.node.clone();
        let mut ok = true;
        if !HTTP_METHODS.contains(&method.as_str()) {
            let upper = method.to_ascii_uppercase();
            self.error(CheckError::InvalidValue {
                what: "HTTP method",
                value: method.clone(),
                span: h.method.span.into(),
                help: if HTTP_METHODS.contains(&upper.as_str()) {
                    format!("methods are upper case: `{upper}`")
                } else {
                    format!("methods: {}", HTTP_METHODS.join(", "))
                },
            });
            ok = false;
        }
        let url = self.template(&h.url, Purpose::Url, None);
        if let (Some(TemplatePart::Let(name)), Some(ast::StrPart::Interp(i))) =
            (url.parts.first(), h.url.node.parts.first())
        {
            self.url_lets.push((name.clone(), i.span));
        }
        if let Some(TemplatePart::Text(t)) = url.parts.first() {
            if !(t.starts_with("http://") || t.starts_with("https://")) {
                self.error(CheckError::InvalidValue {
                    what: "URL",
                    value: h.url.node.display(),
                    span: h.url.span.into(),
                    help: "URLs start with `http://` or `https://`, or with a let that holds one (`${api_url}/readyz`)".into(),
                });
                ok = false;
            }
        }
        let mut check = HttpCheck {
            method,
            url,
            headers: Vec::new(),
            bearer: None,
            body: None,
            expect_status: None,
            expect_contains: Vec::new(),
            check: None,
        };
        let mut within = None;
        let mut firsts: HashMap<&'static str, Span> = HashMap::new();
        let mut once = |this: &mut Self, key: &'static str, span: Span| -> bool {
            if let Some(f) = firsts.get(key) {
                this.duplicate("entry", key, span, *f);
                false
            } else {
                firsts.insert(key, span);
                true
            }
        };
        for e in &h.entries {
            match &e.node {
                ast::HttpEntry::Header(k, v) => {
                    if let Some(name) = self.plain(k, "a header name") {
                        if name.is_empty()
                            || !name.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b)
                            })
                        {
                            self.error(CheckError::InvalidValue {
                                what: "header name",
                                value: name.clone(),
                                span: k.span.into(),
                                help: "header names are tokens like `X-Request-Id`".into(),
                            });
                            ok = false;
                        }
                        let value = self.template(v, Purpose::Other, None);
                        check.headers.push((name, value));
                    }
                }
                ast::HttpEntry::Bearer(name) => {
                    if once(self, "bearer", e.span) {
                        self.let_uses.push(super::LetUse {
                            name: name.node.clone(),
                            span: name.span,
                            purpose: Purpose::Other,
                            env: None,
                        });
                        check.bearer = Some(name.node.clone());
                    }
                }
                ast::HttpEntry::Json(v) => {
                    if once(self, "body", e.span) {
                        check.body = Some(HttpBody::Json(v.clone()));
                    }
                }
                ast::HttpEntry::Body(b) => {
                    if once(self, "body", e.span) {
                        check.body = Some(HttpBody::Text(self.template(b, Purpose::Other, None)));
                    }
                }
                ast::HttpEntry::Expect(v) => {
                    if once(self, "expect", e.span) {
                        check.expect_status = self.status(v);
                        ok &= check.expect_status.is_some();
                    }
                }
                ast::HttpEntry::ExpectBodyContains(s) => {
                    let t = self.template(s, Purpose::Other, None);
                    check.expect_contains.push(t);
                }
                ast::HttpEntry::Check(script) => {
                    if once(self, "check", e.span) {
                        check.check = Some(Script {
                            text: script.text.clone(),
                            span: script.span,
                        });
                    }
                }
                ast::HttpEntry::Opt(o) => {
                    let m = self.options(std::slice::from_ref(o), &["within"], "guard http");
                    if let Some(v) = m.get("within") {
                        if once(self, "within", o.name.span) {
                            within = self.duration(v);
                        }
                    }
                }
            }
        }
        let o = self.options(&h.opts, &["within"], "guard http");
        if let Some(v) = o.get("within") {
            if once(self, "within", v.span) {
                within = self.duration(v);
            }
        }
        if !ok {
            return None;
        }
        Some(Guard {
            kind: GuardKind::Http(check),
            within,
        })
    }
}
