//! Values in value positions: checking their kind and range, and turning strings into templates.

use std::time::Duration;

use crate::check::errors::CheckError;
use crate::check::names::did_you_mean;
use crate::program::{Field, IntOrPercent, Template, TemplatePart};
use crate::span::{Span, Spanned};
use crate::syntax::ast::{StrLit, StrPart, Value};
use crate::version::{Version, VersionPattern};

use super::Lowerer;

/// What a `${name}` is used for; URLs may not carry secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Url,
    Other,
}

/// A `${let}` use to be checked against every env's scope once all lets are known.
#[derive(Debug, Clone)]
pub(crate) struct LetUse {
    pub name: String,
    pub span: Span,
    pub purpose: Purpose,
    /// `Some(env index)` when the use is inside that env's own lets; `None` for playbook scope.
    pub env: Option<usize>,
}

impl Lowerer<'_> {
    fn wrong_kind(&mut self, expected: &'static str, v: &Spanned<Value>, help: Option<String>) {
        // An invalid literal's own reason ("write `1.5.x` or `1.5.0`") beats a generic help.
        let help = match &v.node {
            Value::Invalid { reason, .. } => Some(reason.clone()),
            _ => help,
        };
        self.error(CheckError::WrongKind {
            expected,
            found: v.node.describe(),
            span: v.span.into(),
            help,
        });
    }

    /// A positive duration.
    pub(crate) fn duration(&mut self, v: &Spanned<Value>) -> Option<Duration> {
        match &v.node {
            Value::Duration(d) if d.is_zero() => {
                self.error(CheckError::ZeroDuration {
                    span: v.span.into(),
                });
                None
            }
            Value::Duration(d) => Some(*d),
            Value::Int(n) => {
                self.wrong_kind(
                    "a duration",
                    v,
                    Some(format!("add a unit: `{n}s`, `{n}m` or `{n}ms`")),
                );
                None
            }
            _ => {
                self.wrong_kind(
                    "a duration",
                    v,
                    Some("durations look like `500ms`, `30s`, `5m`, `1h` or `1m30s`".into()),
                );
                None
            }
        }
    }

    /// An HTTP status, 100–599.
    pub(crate) fn status(&mut self, v: &Spanned<Value>) -> Option<u16> {
        match &v.node {
            Value::Int(n) if (100..=599).contains(n) => Some(*n as u16),
            Value::Int(n) => {
                self.error(CheckError::StatusRange {
                    status: *n,
                    span: v.span.into(),
                });
                None
            }
            _ => {
                self.wrong_kind(
                    "an HTTP status",
                    v,
                    Some("write the status as a number, like `200` or `409`".into()),
                );
                None
            }
        }
    }

    /// A canary weight, 1–99%.
    pub(crate) fn weight(&mut self, v: &Spanned<Value>) -> Option<u32> {
        match &v.node {
            Value::Percent(n) if (1..=99).contains(n) => Some(*n as u32),
            Value::Percent(n) => {
                self.error(CheckError::WeightRange {
                    weight: *n,
                    span: v.span.into(),
                });
                None
            }
            Value::Int(n) => {
                self.wrong_kind("a percentage", v, Some(format!("write `{n}%`")));
                None
            }
            _ => {
                self.wrong_kind("a percentage", v, None);
                None
            }
        }
    }

    /// An exact version (not a pattern).
    pub(crate) fn version(&mut self, v: &Spanned<Value>) -> Option<Version> {
        match &v.node {
            Value::Version(VersionPattern::Exact(e)) => Some(e.clone()),
            Value::Version(p) => {
                self.wrong_kind(
                    "an exact version",
                    v,
                    Some(format!(
                        "`{p}` is a pattern; name one version, like `{}`",
                        pattern_example(p)
                    )),
                );
                None
            }
            _ => {
                self.wrong_kind(
                    "a version",
                    v,
                    Some("versions are semantic versions, like `1.5.0`".into()),
                );
                None
            }
        }
    }

    /// A version pattern or exact version (matrix rows and ranges).
    pub(crate) fn pattern(&mut self, v: &Spanned<Value>) -> Option<VersionPattern> {
        match &v.node {
            Value::Version(p) => Some(p.clone()),
            _ => {
                self.wrong_kind(
                    "a version or version pattern",
                    v,
                    Some("like `1.5.x`, `1.x` or `1.5.0`".into()),
                );
                None
            }
        }
    }

    /// A whole number within `range`.
    pub(crate) fn count(
        &mut self,
        v: &Spanned<Value>,
        what: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<u32> {
        match &v.node {
            Value::Int(n) if range.contains(n) => Some(*n as u32),
            Value::Int(n) => {
                self.error(CheckError::OutOfRange {
                    what,
                    value: n.to_string(),
                    span: v.span.into(),
                    help: format!("{what} runs from {} to {}", range.start(), range.end()),
                });
                None
            }
            _ => {
                self.wrong_kind("a whole number", v, None);
                None
            }
        }
    }

    /// `max_surge` / `max_unavailable`: a count or a percentage. Kubernetes refuses
    /// `maxUnavailable` over 100% and allows a surge of more than 100% (up to 1000% here).
    pub(crate) fn int_or_percent(
        &mut self,
        v: &Spanned<Value>,
        budget: Budget,
    ) -> Option<IntOrPercent> {
        let max_percent = match budget {
            Budget::Unavailable => 100,
            Budget::Surge => 1000,
        };
        match &v.node {
            Value::Int(n) if *n <= 10_000 => Some(IntOrPercent::Int(*n as u32)),
            Value::Percent(n) if *n <= max_percent => Some(IntOrPercent::Percent(*n as u32)),
            Value::Int(_) | Value::Percent(_) => {
                let (what, value, help) = match (&v.node, budget) {
                    (Value::Percent(n), Budget::Unavailable) => (
                        "`max_unavailable`",
                        format!("{n}%"),
                        "Kubernetes allows at most 100% unavailable".to_string(),
                    ),
                    (Value::Percent(n), Budget::Surge) => (
                        "`max_surge`",
                        format!("{n}%"),
                        format!("give a surge of at most {max_percent}%"),
                    ),
                    (other, _) => (
                        match budget {
                            Budget::Unavailable => "`max_unavailable`",
                            Budget::Surge => "`max_surge`",
                        },
                        match other {
                            Value::Int(n) => n.to_string(),
                            _ => String::new(),
                        },
                        "give a pod count up to 10000, or a percentage".to_string(),
                    ),
                };
                self.error(CheckError::OutOfRange {
                    what,
                    value,
                    span: v.span.into(),
                    help,
                });
                None
            }
            _ => {
                self.wrong_kind("a pod count or percentage", v, None);
                None
            }
        }
    }

    /// A string value written as a string literal.
    pub(crate) fn string_value(&mut self, v: &Spanned<Value>) -> Option<Spanned<StrLit>> {
        match &v.node {
            Value::Str(s) => Some(Spanned::new(s.clone(), v.span)),
            Value::Raw(r) => Some(Spanned::new(
                StrLit {
                    parts: vec![StrPart::Text(r.clone())],
                },
                v.span,
            )),
            Value::Int(_)
            | Value::Percent(_)
            | Value::Duration(_)
            | Value::Version(_)
            | Value::Bool(_) => {
                // Numbers and the like are fine as let values; keep their text.
                let text = match &v.node {
                    Value::Int(n) => n.to_string(),
                    Value::Percent(n) => format!("{n}%"),
                    Value::Duration(d) => crate::syntax::format_duration(*d),
                    Value::Version(p) => p.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => unreachable!(),
                };
                Some(Spanned::new(
                    StrLit {
                        parts: vec![StrPart::Text(text)],
                    },
                    v.span,
                ))
            }
            Value::Ident(name) => {
                self.wrong_kind(
                    "a string or `env(\"…\")`",
                    v,
                    Some(format!("to refer to another let write \"${{{name}}}\"")),
                );
                None
            }
            Value::Invalid { .. } => {
                self.wrong_kind("a value", v, None);
                None
            }
        }
    }

    /// A string with no interpolation.
    pub(crate) fn plain(&mut self, s: &Spanned<StrLit>, what: &'static str) -> Option<String> {
        match s.node.as_plain() {
            Some(t) => Some(t),
            None => {
                self.error(CheckError::Misplaced {
                    what: format!("interpolation in {what}"),
                    span: s.span.into(),
                    help: format!(
                        "{what} is fixed when the playbook is written; write it out in full"
                    ),
                });
                None
            }
        }
    }

    /// Turn a string literal into a template, checking `${component.field}` now and recording
    /// `${let}` uses to be checked against every env's scope later.
    pub(crate) fn template(
        &mut self,
        s: &Spanned<StrLit>,
        purpose: Purpose,
        env: Option<usize>,
    ) -> Template {
        let mut parts = Vec::new();
        for p in &s.node.parts {
            match p {
                StrPart::Text(t) => parts.push(TemplatePart::Text(t.clone())),
                StrPart::Interp(i) => match i.path.as_slice() {
                    [name] => {
                        self.let_uses.push(LetUse {
                            name: name.node.clone(),
                            span: name.span,
                            purpose,
                            env,
                        });
                        parts.push(TemplatePart::Let(name.node.clone()));
                    }
                    [comp, field] => {
                        if let Some(part) = self.field(comp, field) {
                            parts.push(part);
                        }
                    }
                    _ => {} // reported by the syntax builder
                },
            }
        }
        Template {
            parts,
            span: s.span,
        }
    }

    fn field(&mut self, comp: &Spanned<String>, field: &Spanned<String>) -> Option<TemplatePart> {
        let idx = self.component_index(comp)?;
        let Some(&(_, f)) = Field::ALL.iter().find(|(n, _)| *n == field.node) else {
            let names: Vec<&str> = Field::ALL.iter().map(|(n, _)| *n).collect();
            self.error(CheckError::UnknownField {
                comp: comp.node.clone(),
                field: field.node.clone(),
                span: field.span.into(),
                help: match did_you_mean(&field.node, names.iter().copied()) {
                    Some(d) => d,
                    None => format!("components have {}", names.join(", ")),
                },
            });
            return None;
        };
        if matches!(f, Field::Idle | Field::Live) && !self.components[idx].is_blue_green() {
            self.error(CheckError::UnknownField {
                comp: comp.node.clone(),
                field: field.node.clone(),
                span: field.span.into(),
                help: format!(
                    "`{}` is only defined for components with a `blue_green {{ … }}` block",
                    field.node
                ),
            });
            return None;
        }
        Some(TemplatePart::Field {
            comp: idx,
            field: f,
        })
    }
}

fn pattern_example(p: &VersionPattern) -> String {
    match p {
        VersionPattern::Major(m) => format!("{m}.0.0"),
        VersionPattern::Minor(m, n) => format!("{m}.{n}.0"),
        VersionPattern::Exact(v) => v.to_string(),
    }
}

/// Which rollout budget a count or percentage is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    Unavailable,
    Surge,
}

impl Lowerer<'_> {
    /// `allow_hosts "…"…`: each a host, `host:port` or `*.domain` — no scheme, no path.
    pub(crate) fn host_patterns(&mut self, hosts: &[Spanned<StrLit>]) -> Vec<String> {
        let mut out = Vec::new();
        for h in hosts {
            let Some(text) = self.plain(h, "a host") else {
                continue;
            };
            if crate::script::reach::valid_pattern(&text) {
                out.push(text.to_ascii_lowercase());
            } else {
                self.error(CheckError::InvalidValue {
                    what: "host",
                    value: text.clone(),
                    span: h.span.into(),
                    help: "write a host as `metrics.example.com`, `10.0.0.7:9090` or `*.svc.cluster.local` — no scheme, path or user".into(),
                });
            }
        }
        out
    }
}
