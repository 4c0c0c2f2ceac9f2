//! `guard metric`: the entries, the thresholds, and the PromQL query parsed with
//! `promql-parser` so a syntax error is labelled where it is inside the string.

use foldhash::{HashMap, HashMapExt};

use crate::check::errors::CheckError;
use crate::program::*;
use crate::span::{Span, Spanned};
use crate::syntax::ast;

use super::{Lowerer, Purpose};

impl Lowerer<'_> {
    /// Lower `guard metric …`; `in_block`: inside a `canary` / `blue_green` block, where
    /// `every` alone means "throughout the canary's time".
    pub(super) fn metric_guard(&mut self, g: &ast::MetricGuard, in_block: bool) -> Option<Guard> {
        let url = self.template(&g.url, Purpose::Url, None);
        if let (Some(TemplatePart::Let(name)), Some(ast::StrPart::Interp(i))) =
            (url.parts.first(), g.url.node.parts.first())
        {
            self.url_lets.push((name.clone(), i.span));
        }
        let mut ok = true;
        if let Some(TemplatePart::Text(t)) = url.parts.first() {
            if !(t.starts_with("http://") || t.starts_with("https://")) {
                self.error(CheckError::InvalidValue {
                    what: "URL",
                    value: g.url.node.display(),
                    span: g.url.span.into(),
                    help: "the Prometheus server's URL starts with `http://` or `https://`, or is a let that holds one (`${prom_url}`)".into(),
                });
                ok = false;
            }
        }
        let mut firsts: HashMap<&'static str, Span> = HashMap::new();
        let mut query: Option<(Template, Span)> = None;
        let mut condition: Option<(Condition, Span)> = None;
        let mut failure_limit = 0;
        let mut no_data = NoData::Fail;
        let mut bearer = None;
        let mut opts: Vec<ast::Opt> = Vec::new();
        for e in &g.entries {
            let key = match &e.node {
                ast::MetricEntry::Query(_) => "query",
                ast::MetricEntry::Below(_)
                | ast::MetricEntry::Above(_)
                | ast::MetricEntry::Between(..) => "threshold",
                ast::MetricEntry::FailureLimit(_) => "failure_limit",
                ast::MetricEntry::NoData(_) => "no_data",
                ast::MetricEntry::Bearer(_) => "bearer",
                ast::MetricEntry::Opt(o) => {
                    opts.push(o.clone());
                    continue;
                }
            };
            if let Some(f) = firsts.get(key) {
                self.duplicate("entry", key, e.span, *f);
                continue;
            }
            firsts.insert(key, e.span);
            match &e.node {
                ast::MetricEntry::Query(q) => {
                    let t = self.template(&q.lit, Purpose::Other, None);
                    if self.promql(q, &t) {
                        query = Some((t, q.lit.span));
                    } else {
                        ok = false;
                    }
                }
                ast::MetricEntry::Below(b) => {
                    condition = self.bound(b).map(|t| (Condition::Below(t), e.span));
                    ok &= condition.is_some();
                }
                ast::MetricEntry::Above(b) => {
                    condition = self.bound(b).map(|t| (Condition::Above(t), e.span));
                    ok &= condition.is_some();
                }
                ast::MetricEntry::Between(lo, hi) => {
                    let (l, h) = (self.number(lo), self.number(hi));
                    match (l, h) {
                        (Some(l), Some(h)) if l <= h => {
                            condition = Some((Condition::Between(l, h), e.span))
                        }
                        (Some(_), Some(_)) => {
                            self.error(CheckError::InvalidValue {
                                what: "range",
                                value: format!("{} {}", lo.node, hi.node),
                                span: lo.span.to(hi.span).into(),
                                help: format!(
                                    "write the lower bound first: `between {} {}`",
                                    hi.node, lo.node
                                ),
                            });
                            ok = false;
                        }
                        _ => ok = false,
                    }
                }
                ast::MetricEntry::FailureLimit(v) => {
                    match self.count(v, "a failure limit", 0..=10_000) {
                        Some(n) => failure_limit = n,
                        None => ok = false,
                    }
                }
                ast::MetricEntry::NoData(m) => {
                    no_data = match m.node.as_str() {
                        "fail" => NoData::Fail,
                        "pass" => NoData::Pass,
                        "ignore" => NoData::Ignore,
                        other => {
                            self.error(CheckError::InvalidValue {
                                what: "`no_data` choice",
                                value: other.to_string(),
                                span: m.span.into(),
                                help: "write `no_data fail` (the default), `no_data pass` or `no_data ignore`".into(),
                            });
                            ok = false;
                            NoData::Fail
                        }
                    }
                }
                ast::MetricEntry::Bearer(name) => {
                    self.let_uses.push(super::LetUse {
                        name: name.node.clone(),
                        span: name.span,
                        purpose: Purpose::Other,
                        env: None,
                    });
                    bearer = Some(name.node.clone());
                }
                ast::MetricEntry::Opt(_) => unreachable!("options are gathered above"),
            }
        }
        let o = self.options(&opts, &["every", "for"], "guard metric");
        let every = o.get("every").and_then(|v| self.duration(v));
        let duration = o.get("for").and_then(|v| self.duration(v));
        if let (Some(ev), None, false) = (o.get("every"), o.get("for"), in_block) {
            self.error(CheckError::Misplaced {
                what: "`every` without `for`".into(),
                span: ev.span.into(),
                help: "outside a canary a metric guard evaluates once; write `every 30s for 5m` to evaluate for a while".into(),
            });
            ok = false;
        }
        if let (Some(ev), Some(f)) = (every, duration) {
            if ev > f {
                self.error(CheckError::InvalidValue {
                    what: "evaluation interval",
                    value: crate::syntax::format_duration(ev),
                    span: o["every"].span.into(),
                    help: format!(
                        "`every` is longer than `for {}`: the guard would evaluate once",
                        crate::syntax::format_duration(f)
                    ),
                });
                ok = false;
            }
        }
        let span = g.url.span;
        let Some((query, qspan)) = query else {
            if ok {
                self.error(CheckError::MissingEntry {
                    what: "`guard metric`".into(),
                    missing: "a `query`",
                    span: span.into(),
                    help: "write `guard metric \"${prom_url}\" query \"sum(rate(http_requests_total[1m]))\" below 100`".into(),
                });
            }
            return None;
        };
        let Some((condition, cspan)) = condition else {
            if ok {
                self.error(CheckError::MissingEntry {
                    what: "`guard metric`".into(),
                    missing:
                        "a threshold (`below N`, `above N`, `between A B` or `below baseline * F`)",
                    span: span.into(),
                    help: "add `below 0.01` after the query".into(),
                });
            }
            return None;
        };
        if condition.uses_baseline()
            && !query.parts.iter().any(|p| {
                matches!(
                    p,
                    TemplatePart::Field {
                        field: Field::To,
                        ..
                    }
                )
            })
        {
            self.error(CheckError::NoBaseline {
                span: cspan.into(),
                query: qspan.into(),
            });
            return None;
        }
        if !ok {
            return None;
        }
        Some(Guard {
            kind: GuardKind::Metric(MetricCheck {
                url,
                query,
                condition,
                every,
                duration,
                failure_limit,
                no_data,
                bearer,
            }),
            within: None,
        })
    }

    fn bound(&mut self, b: &ast::Bound) -> Option<Threshold> {
        match b {
            ast::Bound::Number(n) => self.number(n).map(Threshold::Value),
            ast::Bound::Baseline { factor: None, .. } => Some(Threshold::Baseline(1.0)),
            ast::Bound::Baseline {
                factor: Some(f), ..
            } => {
                let v = self.number(f)?;
                if v <= 0.0 {
                    self.error(CheckError::InvalidValue {
                        what: "baseline factor",
                        value: f.node.clone(),
                        span: f.span.into(),
                        help: "the factor scales the baseline: a positive number like `1.2`".into(),
                    });
                    return None;
                }
                Some(Threshold::Baseline(v))
            }
        }
    }

    /// A threshold as written: a finite number (`0.01`, `1e-3`), or a duration in seconds
    /// (`300ms` is 0.3, as Prometheus measures time).
    fn number(&mut self, n: &Spanned<String>) -> Option<f64> {
        if let Ok(v) = n.node.parse::<f64>() {
            if v.is_finite() {
                return Some(v);
            }
        }
        if let Ok(d) = crate::syntax::parse_duration(&n.node) {
            return Some(d.as_secs_f64());
        }
        self.error(CheckError::InvalidValue {
            what: "threshold",
            value: n.node.clone(),
            span: n.span.into(),
            help: "write a number like `0.01`, `250` or `1e-3`, or a duration like `300ms` (in seconds)"
                .into(),
        });
        None
    }

    /// Parse the query with `promql-parser`, each `${…}` replaced by a placeholder of the kind
    /// its place needs; report a syntax error at its place in the playbook. `true` when it parses
    /// to something a threshold can be compared with.
    fn promql(&mut self, q: &ast::Query, t: &Template) -> bool {
        let text = PromqlText::build(q, t);
        match parse_cached(&text.text) {
            Ok(None) => true,
            Ok(Some(what)) => {
                self.error(CheckError::BadPromql {
                    reason: format!("the query gives {what}"),
                    span: q.lit.span.into(),
                    label: format!("{what}, not a number"),
                    help: "a metric guard compares one number with its threshold: use an instant vector or a scalar, like `sum(rate(x[1m]))`".into(),
                });
                false
            }
            Err(reason) => {
                let span = text.locate(&reason).unwrap_or(q.lit.span);
                let reason = reason.trim().to_string();
                self.error(CheckError::BadPromql {
                    label: if span == q.lit.span {
                        "this query".into()
                    } else {
                        "here".into()
                    },
                    reason,
                    span: span.into(),
                    help: "the query is PromQL as Prometheus reads it; `${…}` is filled in before it is sent".into(),
                });
                false
            }
        }
    }
}

/// What a query text is: `Ok(None)` a number-valued query, `Ok(Some(what))` one of another type,
/// `Err(reason)` a syntax error (`promql-parser`'s words). The quick check answers for the queries
/// it is sure of (a few thousand instructions); `promql-parser` for the rest (0.6–1 M: an LR parse
/// and a compiled regex per `=~`). Memoized per text for the whole process, since a folder of
/// playbooks repeats the same queries.
fn parse_cached(text: &str) -> Result<Option<&'static str>, String> {
    use foldhash::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Parsed = Result<Option<&'static str>, String>;
    static SEEN: OnceLock<Mutex<HashMap<String, Parsed>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(r) = seen.lock().ok().and_then(|m| m.get(text).cloned()) {
        return r;
    }
    // The common, well-formed query needs no parser (see `promql_quick`).
    use super::promql_quick::Type;
    let r = match super::promql_quick::value_type(text) {
        Some(Type::Scalar | Type::Vector) => Ok(None),
        Some(Type::Matrix) => Ok(Some("a range vector")),
        Some(Type::Str) => Ok(Some("a string")),
        None => parse(text),
    };
    if let Ok(mut m) = seen.lock() {
        m.insert(text.to_string(), r.clone());
    }
    r
}

fn parse(text: &str) -> Result<Option<&'static str>, String> {
    match promql_parser::parser::parse(text) {
        Ok(expr) => {
            use promql_parser::parser::value::ValueType;
            match expr.value_type() {
                ValueType::Scalar | ValueType::Vector => Ok(None),
                ValueType::Matrix => Ok(Some("a range vector")),
                _ => Ok(Some("a string")),
            }
        }
        Err(reason) => Err(reason),
    }
}

/// A query's text as it will be sent (placeholders for `${…}`), with the file offset of every
/// byte.
struct PromqlText {
    text: String,
    /// For byte `i` of `text`: where its source starts and ends in the file.
    map: Vec<(usize, usize)>,
    file: crate::span::FileId,
}

impl PromqlText {
    fn build(q: &ast::Query, t: &Template) -> PromqlText {
        let file = q.lit.span.file;
        let mut out = PromqlText {
            text: String::with_capacity(q.source.len()),
            map: Vec::with_capacity(q.source.len()),
            file,
        };
        let src = q.source.as_str();
        if q.raw {
            out.push(src, q.start, q.start + src.len());
            // Byte-exact positions for raw strings.
            out.map = (0..src.len())
                .map(|i| (q.start + i, q.start + i + 1))
                .collect();
            return out;
        }
        // The template's holes, in order: fields are versions or names, lets are unknown.
        let mut holes = t.parts.iter().filter_map(|p| match p {
            TemplatePart::Text(_) => None,
            other => Some(other.clone()),
        });
        let mut quote: Option<char> = None;
        let mut brackets = 0usize;
        let mut i = 0;
        while i < src.len() {
            let at = q.start + i;
            let rest = &src[i..];
            if let Some(esc) = rest.strip_prefix('\\') {
                let c = esc.chars().next().unwrap_or('\\');
                let mut buf = [0u8; 4];
                let s: &str = match c {
                    'n' => "\n",
                    't' => "\t",
                    c => c.encode_utf8(&mut buf),
                };
                out.track(s, &mut quote, &mut brackets);
                out.push(s, at, at + 1 + c.len_utf8());
                i += 1 + c.len_utf8();
                continue;
            }
            if rest.starts_with("${") {
                let len = rest.find('}').map_or(rest.len(), |e| e + 1);
                let hole = holes.next();
                let placeholder = if quote.is_some() {
                    match hole {
                        Some(TemplatePart::Field {
                            field: Field::To | Field::From,
                            ..
                        }) => "0.0.0",
                        _ => "x",
                    }
                } else if brackets > 0 {
                    "1m"
                } else {
                    "1"
                };
                out.push(placeholder, at, at + len);
                i += len;
                continue;
            }
            let c = rest.chars().next().expect("not at the end");
            let mut buf = [0u8; 4];
            let s: &str = c.encode_utf8(&mut buf);
            out.track(s, &mut quote, &mut brackets);
            out.push(s, at, at + c.len_utf8());
            i += c.len_utf8();
        }
        out
    }

    /// Follow PromQL's quoting and brackets over the text as it is built.
    fn track(&self, s: &str, quote: &mut Option<char>, brackets: &mut usize) {
        let escaped = quote.is_some() && self.text.ends_with('\\') && !self.text.ends_with("\\\\");
        for c in s.chars() {
            match (*quote, c) {
                (Some(q), c) if c == q && !escaped => *quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'' | '`') => *quote = Some(c),
                (None, '[') => *brackets += 1,
                (None, ']') => *brackets = brackets.saturating_sub(1),
                _ => {}
            }
        }
    }

    fn push(&mut self, s: &str, start: usize, end: usize) {
        self.text.push_str(s);
        self.map.extend(std::iter::repeat_n((start, end), s.len()));
    }

    /// Where in the file the parser's complaint is: the shortest prefix of the query that
    /// already gives the same error ends at the culprit (the lexer and the parser stop at the
    /// first bad token). `None` for errors that only say the query is incomplete or invalid.
    fn locate(&self, reason: &str) -> Option<Span> {
        if reason.contains("invalid promql query")
            || reason.contains("end of input")
            || reason.contains("no expression found")
        {
            return None;
        }
        let mut cut = None;
        for (end, _) in self
            .text
            .char_indices()
            .skip(1)
            .chain([(self.text.len(), ' ')])
        {
            if promql_parser::parser::parse(&self.text[..end])
                .err()
                .as_deref()
                == Some(reason)
            {
                cut = Some(end);
                break;
            }
        }
        let end = cut?;
        // The culprit is the last word (or character) of that prefix.
        let bytes = self.text.as_bytes();
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        let mut start = end - 1;
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        if word(bytes[start]) {
            while start > 0 && word(bytes[start - 1]) {
                start -= 1;
            }
        }
        let (s, _) = self.map[start];
        let (_, e) = self.map[end - 1];
        Some(Span::new(self.file, s, e.max(s + 1)))
    }
}

/// Every metric guard's query parsed again with each env's static values filled in (lets that
/// are plain text, components' fields; values inside PromQL strings escaped as the runner
/// escapes them, [`crate::resolve::Scope::render_promql`]). A value that breaks the query (or
/// changes it into something that is not a number) is an error at the query, naming the env.
/// Queries whose values are not static (secrets) are left to the run.
pub(crate) fn check_static_values(pb: &Playbook) -> Vec<CheckError> {
    use crate::resolve::{Live, Mode, Scope};
    let mut out = Vec::new();
    let envs: Vec<Option<&Env>> = if pb.envs.is_empty() {
        vec![None]
    } else {
        pb.envs.iter().map(Some).collect()
    };
    let live = Live {
        colours: (pb.components.iter().enumerate())
            .filter(|(_, c)| c.is_blue_green())
            .map(|(i, _)| (i, Colour::Blue))
            .collect(),
        secrets: Default::default(),
    };
    let mut seen: Vec<(Span, String)> = Vec::new();
    for st in pb.statements() {
        let Op::Guard(g) = &st.op else { continue };
        let GuardKind::Metric(m) = &g.kind else {
            continue;
        };
        if !m
            .query
            .parts
            .iter()
            .any(|p| matches!(p, TemplatePart::Let(_)))
        {
            continue;
        }
        for env in &envs {
            let scope = Scope::new(pb, *env, &live);
            let whose = match env {
                Some(e) => format!("env `{}`", e.name),
                None => "the playbook".into(),
            };
            let text = match scope.render_promql(&m.query, Mode::Real) {
                Ok(text) => text,
                Err(crate::resolve::ResolveError::Unquotable(why)) => why,
                // Not static (a secret, a colour): the run resolves it.
                Err(_) => continue,
            };
            if seen.iter().any(|(s, t)| *s == m.query.span && *t == text) {
                continue;
            }
            seen.push((m.query.span, text.clone()));
            let reason = match scope.render_promql(&m.query, Mode::Real) {
                Err(_) => format!("with the values of {whose}: {text}"),
                Ok(_) => {
                    let problem = match parse_cached(&text) {
                        Ok(None) => continue,
                        Ok(Some(what)) => format!("it gives {what}, not a number"),
                        Err(reason) => reason.trim().to_string(),
                    };
                    format!(
                        "with the values of {whose} the query reads `{}`: {problem}",
                        crate::diag::shorten(&text, 200)
                    )
                }
            };
            out.push(CheckError::BadPromql {
                reason,
                span: m.query.span.into(),
                label: format!("with the values of {whose}"),
                help: "a let placed outside a string of the query is PromQL as it stands; keep values that are not a number or a duration inside a string (`\"${x}\"`), where they are escaped".into(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn promql_messages_are_what_locate_expects() {
        // `locate` depends on the parser stopping at the first bad token with a message that a
        // prefix reproduces; pin the forms it relies on.
        let e = promql_parser::parser::parse("sum(rate(x{a=\"b\"}[1m])) by (le) +").unwrap_err();
        assert!(!e.is_empty());
        let e = promql_parser::parser::parse("rate(x{a#\"b\"}[1m])").unwrap_err();
        assert_eq!(
            promql_parser::parser::parse("rate(x{a#").unwrap_err(),
            e,
            "a lexer error is reproduced by the prefix up to the bad character"
        );
    }
}
