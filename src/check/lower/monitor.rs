//! `monitor` items: the probe (lowered as an HTTP guard's request), its rate, its budget.

use std::time::Duration;

use foldhash::{HashMap, HashMapExt};

use super::Lowerer;
use crate::check::errors::CheckError;
use crate::program::{GuardKind, Monitor, MonitorBudget};
use crate::span::{Span, Spanned};
use crate::syntax::ast;
use crate::syntax::format_duration;

/// The fastest rate a monitor may probe at: one request every 10 ms (100 a second).
pub(super) const MIN_EVERY: Duration = Duration::from_millis(10);
/// The rate without `every`: ten requests a second.
pub(super) const DEFAULT_EVERY: Duration = Duration::from_millis(100);
/// A request unanswered for this long (without `timeout`) is a `timeout` failure.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

impl Lowerer<'_> {
    /// Lower one `monitor` (of the playbook, or of the env `env`).
    pub(super) fn monitor(&mut self, m: &ast::MonitorDecl, env: Option<usize>) -> Option<Monitor> {
        let uses_before = self.let_uses.len();
        // The probe is an HTTP guard's request: the same checks of method, URL, headers, bearer
        // and status, and the same lets.
        let mut entries = Vec::new();
        let mut opts: Vec<&ast::Opt> = Vec::new();
        let mut budgets: Vec<(&ast::Ident, &Spanned<ast::Value>, Span)> = Vec::new();
        for e in &m.entries {
            let entry = match &e.node {
                ast::MonitorEntry::Header(k, v) => ast::HttpEntry::Header(k.clone(), v.clone()),
                ast::MonitorEntry::Bearer(b) => ast::HttpEntry::Bearer(b.clone()),
                ast::MonitorEntry::Expect(v) => ast::HttpEntry::Expect(v.clone()),
                ast::MonitorEntry::Budget(kind, limit) => {
                    budgets.push((kind, limit, e.span));
                    continue;
                }
                ast::MonitorEntry::Opt(o) => {
                    opts.push(o);
                    continue;
                }
            };
            entries.push(Spanned::new(entry, e.span));
        }
        let guard = ast::HttpGuard {
            method: m.method.clone(),
            url: m.url.clone(),
            entries,
            opts: Vec::new(),
        };
        let probe = self.http_guard(&guard);
        for u in &mut self.let_uses[uses_before..] {
            // An env's monitor sees that env's lets only.
            if env.is_some() {
                u.env = env;
            }
            // A secret may stand in a monitor's URL (a token in a query string): the URL is
            // shown with `(secret)` in its place and redacted wherever it could appear.
            u.purpose = super::Purpose::Other;
        }
        let owned: Vec<ast::Opt> = opts.into_iter().cloned().collect();
        let o = self.options(&owned, &["every", "timeout"], "monitor");
        let every = match o.get("every") {
            Some(v) => self.duration(v),
            None => Some(DEFAULT_EVERY),
        };
        let timeout = match o.get("timeout") {
            Some(v) => self.duration(v),
            None => Some(DEFAULT_TIMEOUT),
        };
        let name = m.name.node.clone();
        if let (Some(e), Some(v)) = (every, o.get("every")) {
            if e < MIN_EVERY {
                let per_second = 1.0 / e.as_secs_f64();
                self.error(CheckError::MonitorRate {
                    name: name.clone(),
                    rate: format!("{per_second:.0} requests a second (`every {}`)", format_duration(e)),
                    span: v.span.into(),
                    help: format!(
                        "a monitor measures what users see, it must not be their load: probe at most every {} (100 a second); `every 100ms` is the default",
                        format_duration(MIN_EVERY)
                    ),
                });
            }
        }
        let mut budget = MonitorBudget::default();
        let mut firsts: HashMap<String, Span> = HashMap::new();
        for (kind, limit, span) in budgets {
            let key = match (kind.node.as_str(), &limit.node) {
                ("failures", ast::Value::Percent(_)) => "failures %".to_string(),
                (k, _) => k.to_string(),
            };
            if let Some(f) = firsts.get(&key) {
                let f = *f;
                self.duplicate("budget", &kind.node, span, f);
                continue;
            }
            firsts.insert(key, span);
            match (kind.node.as_str(), &limit.node) {
                ("failures", ast::Value::Int(n)) => budget.failures = Some(*n),
                ("failures", ast::Value::Percent(p)) if *p <= 100 => {
                    if *p == 100 {
                        self.error(CheckError::MonitorBudget {
                            name: name.clone(),
                            reason: "`budget failures 100%` can never be exceeded".into(),
                            span: span.into(),
                            help: "write the share of failed requests users can bear, like `budget failures 1%`, or a count (`budget failures 0`)".into(),
                        });
                    }
                    budget.failure_percent = Some(*p)
                }
                ("failures", ast::Value::Percent(p)) => self.error(CheckError::InvalidValue {
                    what: "failure share",
                    value: format!("{p}%"),
                    span: limit.span.into(),
                    help: "a share of requests is 0% to 100%".into(),
                }),
                ("failures", _) => self.error(CheckError::WrongKind {
                    expected: "a number of requests or a percentage",
                    found: limit.node.describe(),
                    span: limit.span.into(),
                    help: Some("write `budget failures 0` or `budget failures 1%`".into()),
                }),
                ("outage", ast::Value::Duration(d)) => {
                    if let Some(e) = every {
                        if *d < e {
                            self.error(CheckError::MonitorBudget {
                                name: name.clone(),
                                reason: format!(
                                    "`budget outage {}` is shorter than the time between two probes (`every {}`)",
                                    format_duration(*d),
                                    format_duration(e)
                                ),
                                span: span.into(),
                                help: format!(
                                    "an outage is measured in probes: one failed request already counts as {} of outage, so this budget is `budget failures 0`; write that, or probe more often",
                                    format_duration(e)
                                ),
                            });
                        }
                    }
                    budget.outage = Some(*d)
                }
                ("outage", _) => self.error(CheckError::WrongKind {
                    expected: "a duration",
                    found: limit.node.describe(),
                    span: limit.span.into(),
                    help: Some("write `budget outage 2s`".into()),
                }),
                (other, _) => self.error(CheckError::InvalidValue {
                    what: "budget",
                    value: other.to_string(),
                    span: kind.span.into(),
                    help: "write `budget failures N`, `budget failures P%` or `budget outage D`"
                        .into(),
                }),
            }
        }
        if firsts.is_empty() {
            self.error(CheckError::MonitorBudget {
                name: name.clone(),
                reason: "no budget: its numbers are reported, but it never fails the run".into(),
                span: m.name.span.into(),
                help: "add what users can bear, like `budget failures 0` or `budget outage 2s`"
                    .into(),
            });
        }
        let GuardKind::Http(probe) = probe?.kind else {
            return None;
        };
        Some(Monitor {
            name,
            probe,
            every: every?,
            timeout: timeout?,
            budget,
            span: m.name.span,
        })
    }

    /// An env's monitor may not take the name of one of the playbook's (both are watched).
    pub(super) fn check_env_monitors(&mut self, monitors: &[Monitor], envs: &[&ast::EnvDecl]) {
        for e in envs {
            for entry in &e.entries {
                if let ast::EnvEntry::Monitor(m) = &entry.node {
                    if let Some(first) = monitors.iter().find(|p| p.name == m.name.node) {
                        let first = first.span;
                        self.duplicate("monitor", &m.name.node, m.name.span, first);
                    }
                }
            }
        }
    }
}
