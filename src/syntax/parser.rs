//! pest parser and the builder from pest pairs to the AST. pest types never leave this module.

use std::time::Duration;

use pest::iterators::Pair;
use pest::Parser as _;

use super::ast::*;
use super::error::SyntaxError;
use crate::span::{FileId, Span, Spanned};
use crate::version::VersionPattern;

mod fleet;
mod keywords;
mod metric;
mod monitor;
mod stmt;
mod test_item;

use keywords::is_keyword;

#[derive(pest_derive::Parser)]
#[grammar = "grammar/ktplay.pest"]
pub(crate) struct KtParser;

/// Deepest `{`/`[` nesting accepted. pest descends recursively, so a hostile file with 10,000
/// nested braces must be refused before it reaches the parser.
pub const MAX_NESTING: usize = 64;

/// Parse one file's text: the fast path first, pest for anything it declines.
pub(super) fn parse_file(file: FileId, text: &str) -> Result<File, Vec<SyntaxError>> {
    if let Some(ast) = super::fast::parse(file, text) {
        return Ok(ast);
    }
    check_nesting(file, text)?;
    parse_pest(file, text)
}

/// Parse with pest and the builder alone (`check_nesting` first: pest recurses).
pub(super) fn parse_pest(file: FileId, text: &str) -> Result<File, Vec<SyntaxError>> {
    let mut pairs = KtParser::parse(Rule::file, text)
        .map_err(|e| vec![SyntaxError::from_pest(file, text, e)])?;
    let file_pair = pairs.next().expect("file rule always yields one pair");
    let mut b = Builder {
        file,
        errors: Vec::new(),
    };
    let mut items = Vec::new();
    for p in file_pair.into_inner() {
        match p.as_rule() {
            Rule::use_item => {
                let s = p.into_inner().nth(1).expect("use has a string");
                items.push(Item::Use(b.string(s)));
            }
            Rule::matrix_item => items.push(Item::Matrix(b.matrix(p))),
            Rule::playbook_item => items.push(Item::Playbook(b.playbook(p))),
            Rule::test_item => items.push(Item::Test(b.test(p))),
            Rule::fleet_item => items.push(Item::Fleet(b.fleet(p))),
            Rule::EOI => {}
            r => unreachable!("file item {r:?}"),
        }
    }
    if b.errors.is_empty() {
        Ok(File { items })
    } else {
        Err(b.errors)
    }
}

pub(super) fn check_nesting(file: FileId, text: &str) -> Result<(), Vec<SyntaxError>> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += 1;
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(vec![SyntaxError::TooDeep {
                        span: Span::new(file, i, i + 1).into(),
                        max: MAX_NESTING,
                    }]);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

struct Builder {
    file: FileId,
    errors: Vec<SyntaxError>,
}

impl Builder {
    /// The pair's span without the trailing whitespace and comments that pest's implicit
    /// skipping leaves inside it (before an optional repetition that matched nothing), so labels
    /// end where the construct's text ends. Pairs that end in trailing space are narrowed to the
    /// end of their last child, recursively; atomic children (strings, names) keep their ends.
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        let mut end = s.end();
        let mut current = p.clone();
        while current.as_str().ends_with(|c: char| c.is_whitespace()) {
            match current.clone().into_inner().last() {
                Some(child) => {
                    end = child.as_span().end();
                    current = child;
                }
                None => break,
            }
        }
        Span::new(self.file, s.start(), end.max(s.start()))
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        debug_assert!(matches!(
            p.as_rule(),
            Rule::ident | Rule::method | Rule::opt_name
        ));
        Spanned::new(p.as_str().to_string(), self.span(&p))
    }

    /// Skip keyword pairs and return the rest.
    fn args<'a>(&self, p: Pair<'a, Rule>) -> impl Iterator<Item = Pair<'a, Rule>> {
        p.into_inner().filter(|q| !is_keyword(q.as_rule()))
    }

    fn matrix(&mut self, p: Pair<Rule>) -> MatrixDecl {
        let span = self.span(&p);
        let mut it = self.args(p);
        let name = self.ident(it.next().expect("matrix name"));
        let mut entries = Vec::new();
        for e in it {
            let espan = self.span(&e);
            let entry = match e.as_rule() {
                Rule::matrix_hub => MatrixEntry::Hub(self.ident(self.args(e).next().expect("hub"))),
                Rule::matrix_rule => {
                    MatrixEntry::Rule(self.ident(self.args(e).next().expect("rule")))
                }
                Rule::matrix_order => {
                    MatrixEntry::Order(self.args(e).map(|q| self.ident(q)).collect())
                }
                Rule::matrix_row => {
                    let mut a = self.args(e);
                    let hub = self.ident(a.next().expect("row hub"));
                    let version = self.value(a.next().expect("row version"));
                    let status = self.ident(a.next().expect("row status"));
                    let peers = a
                        .map(|peer| {
                            let mut pa = peer.into_inner();
                            let col = self.ident(pa.next().expect("peer name"));
                            let range = self.range(pa.next().expect("peer range"));
                            (col, range)
                        })
                        .collect();
                    MatrixEntry::Row(RowDecl {
                        hub,
                        version,
                        status,
                        peers,
                    })
                }
                r => unreachable!("matrix entry {r:?}"),
            };
            entries.push(Spanned::new(entry, espan));
        }
        MatrixDecl {
            name,
            entries,
            span,
        }
    }

    fn range(&mut self, p: Pair<Rule>) -> RangeLit {
        let span = self.span(&p);
        let mut it = self.args(p);
        let low = self.value(it.next().expect("range low"));
        let high = it.next().map(|h| self.value(h));
        RangeLit { low, high, span }
    }

    fn playbook(&mut self, p: Pair<Rule>) -> Playbook {
        let span = self.span(&p);
        let mut it = self.args(p);
        let name = self.string(it.next().expect("playbook name"));
        let mut entries = Vec::new();
        for e in it {
            let espan = self.span(&e);
            let entry = match e.as_rule() {
                Rule::pb_namespace => {
                    PlaybookEntry::Namespace(self.string(self.args(e).next().expect("ns")))
                }
                Rule::pb_matrix => {
                    PlaybookEntry::Matrix(self.ident(self.args(e).next().expect("matrix")))
                }
                Rule::pb_on_failure => {
                    PlaybookEntry::OnFailure(self.ident(self.args(e).next().expect("mode")))
                }
                Rule::allow_hosts => {
                    PlaybookEntry::AllowHosts(self.args(e).map(|q| self.string(q)).collect())
                }
                Rule::let_item => PlaybookEntry::Let(self.let_decl(e)),
                Rule::component_item => PlaybookEntry::Component(self.component(e)),
                Rule::env_item => PlaybookEntry::Env(self.env(e)),
                Rule::stage_item => PlaybookEntry::Stage(self.stage(e)),
                Rule::monitor_item => PlaybookEntry::Monitor(self.monitor(e)),
                r => unreachable!("playbook entry {r:?}"),
            };
            entries.push(Spanned::new(entry, espan));
        }
        Playbook {
            name,
            entries,
            span,
        }
    }

    fn let_decl(&mut self, p: Pair<Rule>) -> LetDecl {
        let mut it = self.args(p);
        let name = self.ident(it.next().expect("let name"));
        let v = it.next().expect("let value");
        let value = match v.as_rule() {
            Rule::env_call => LetValue::Env(self.string(self.args(v).next().expect("env var"))),
            _ => LetValue::Value(self.value(v)),
        };
        LetDecl { name, value }
    }

    fn migration_entry(&mut self, m: Pair<Rule>) -> Spanned<MigrationEntry> {
        let span = self.span(&m);
        let rule = m.as_rule();
        let mut a = self.args(m);
        let entry = match rule {
            Rule::mig_files => MigrationEntry::Files(self.string(a.next().expect("files"))),
            Rule::mig_dialect => MigrationEntry::Dialect(self.ident(a.next().expect("dialect"))),
            Rule::mig_queries => MigrationEntry::Queries(self.string(a.next().expect("queries"))),
            Rule::mig_release => {
                let v = self.value(a.next().expect("release version"));
                MigrationEntry::Release(v, a.map(|s| self.string(s)).collect())
            }
            r => unreachable!("migrations entry {r:?}"),
        };
        Spanned::new(entry, span)
    }

    fn component(&mut self, p: Pair<Rule>) -> ComponentDecl {
        let mut it = self.args(p);
        let name = self.ident(it.next().expect("component name"));
        let mut entries = Vec::new();
        for e in it {
            let espan = self.span(&e);
            let rule = e.as_rule();
            let mut a = self.args(e);
            let entry = match rule {
                Rule::c_deployment => {
                    ComponentEntry::Deployment(a.map(|s| self.string(s)).collect())
                }
                Rule::c_container => {
                    ComponentEntry::Container(self.string(a.next().expect("container")))
                }
                Rule::c_image => ComponentEntry::Image(self.string(a.next().expect("image"))),
                Rule::c_from => ComponentEntry::From(self.value(a.next().expect("from"))),
                Rule::c_to => ComponentEntry::To(self.value(a.next().expect("to"))),
                Rule::c_migrations => {
                    let kind = self.ident(a.next().expect("migrations"));
                    let block = a.next().map(|b| {
                        let bspan = self.span(&b);
                        let entries = self.args(b).map(|m| self.migration_entry(m)).collect();
                        Spanned::new(entries, bspan)
                    });
                    ComponentEntry::Migrations(kind, block)
                }
                Rule::c_role => ComponentEntry::Role(self.ident(a.next().expect("role"))),
                Rule::c_serves => ComponentEntry::Serves(self.ident(a.next().expect("serves"))),
                Rule::c_blue_green => {
                    let mut bg = Vec::new();
                    for b in a {
                        let bspan = self.span(&b);
                        let brule = b.as_rule();
                        let s = self.string(self.args(b).next().expect("blue-green value"));
                        let entry = match brule {
                            Rule::bg_service => BlueGreenEntry::Service(s),
                            Rule::bg_selector => BlueGreenEntry::Selector(s),
                            Rule::bg_blue => BlueGreenEntry::Blue(s),
                            Rule::bg_green => BlueGreenEntry::Green(s),
                            r => unreachable!("blue-green entry {r:?}"),
                        };
                        bg.push(Spanned::new(entry, bspan));
                    }
                    ComponentEntry::BlueGreen(bg)
                }
                Rule::c_traffic => {
                    let kind = self.ident(a.next().expect("traffic kind"));
                    let name = self.string(a.next().expect("traffic object"));
                    ComponentEntry::Traffic(kind, name)
                }
                r => unreachable!("component entry {r:?}"),
            };
            entries.push(Spanned::new(entry, espan));
        }
        ComponentDecl { name, entries }
    }

    fn env(&mut self, p: Pair<Rule>) -> EnvDecl {
        let mut it = self.args(p);
        let name = self.ident(it.next().expect("env name"));
        let mut entries = Vec::new();
        for e in it {
            let espan = self.span(&e);
            let entry = match e.as_rule() {
                Rule::e_context => {
                    EnvEntry::Context(self.string(self.args(e).next().expect("context")))
                }
                Rule::e_namespace => {
                    EnvEntry::Namespace(self.string(self.args(e).next().expect("namespace")))
                }
                Rule::e_after => EnvEntry::After(self.args(e).map(|q| self.ident(q)).collect()),
                Rule::allow_hosts => {
                    EnvEntry::AllowHosts(self.args(e).map(|q| self.string(q)).collect())
                }
                Rule::let_item => EnvEntry::Let(self.let_decl(e)),
                Rule::monitor_item => EnvEntry::Monitor(self.monitor(e)),
                r => unreachable!("env entry {r:?}"),
            };
            entries.push(Spanned::new(entry, espan));
        }
        EnvDecl { name, entries }
    }

    fn stage(&mut self, p: Pair<Rule>) -> StageDecl {
        let mut it = self.args(p);
        let name = self.ident(it.next().expect("stage name"));
        let mut stmts = Vec::new();
        let mut rollbacks = Vec::new();
        for e in it {
            let espan = self.span(&e);
            match e.as_rule() {
                Rule::rollback_none => rollbacks.push(Spanned::new(RollbackDecl::None, espan)),
                Rule::rollback_block => {
                    let body = self.stmts(self.args(e));
                    rollbacks.push(Spanned::new(RollbackDecl::Block(body), espan));
                }
                _ => stmts.push(self.stmt(e)),
            }
        }
        StageDecl {
            name,
            stmts,
            rollbacks,
        }
    }

    fn stmts<'a>(&mut self, pairs: impl Iterator<Item = Pair<'a, Rule>>) -> Vec<Stmt> {
        pairs.map(|p| self.stmt(p)).collect()
    }

    fn opts<'a>(&mut self, pairs: impl Iterator<Item = Pair<'a, Rule>>) -> Vec<Opt> {
        pairs.map(|p| self.opt(p)).collect()
    }

    fn opt(&mut self, p: Pair<Rule>) -> Opt {
        debug_assert_eq!(p.as_rule(), Rule::opt);
        let mut it = p.into_inner();
        let name = self.ident(it.next().expect("opt name"));
        let value = self.value(it.next().expect("opt value"));
        Opt { name, value }
    }

    /// A token's text as written.
    fn text(&self, p: Pair<Rule>) -> Spanned<String> {
        Spanned::new(p.as_str().to_string(), self.span(&p))
    }

    /// A raw or plain string holding Rhai source; the span covers only the script text.
    fn script(&mut self, p: Pair<Rule>) -> Script {
        match p.as_rule() {
            Rule::raw_string => {
                let body = p.into_inner().next().expect("raw body");
                Script {
                    text: body.as_str().to_string(),
                    span: self.span(&body),
                    raw: true,
                }
            }
            _ => {
                let outer = self.span(&p);
                let s = self.string(p);
                let text = match s.node.as_plain() {
                    Some(t) => t,
                    None => {
                        self.errors
                            .push(SyntaxError::InterpolationInScript { span: outer.into() });
                        String::new()
                    }
                };
                Script {
                    text,
                    span: Span::new(self.file, outer.start as usize + 1, outer.end as usize - 1),
                    raw: false,
                }
            }
        }
    }

    fn string(&mut self, p: Pair<Rule>) -> Spanned<StrLit> {
        let span = self.span(&p);
        if p.as_rule() == Rule::raw_string {
            let body = p.into_inner().next().expect("raw body");
            return Spanned::new(
                StrLit {
                    parts: vec![StrPart::Text(body.as_str().to_string())],
                },
                span,
            );
        }
        debug_assert_eq!(p.as_rule(), Rule::string);
        let mut parts: Vec<StrPart> = Vec::new();
        let push_text = |parts: &mut Vec<StrPart>, t: &str| {
            if let Some(StrPart::Text(prev)) = parts.last_mut() {
                prev.push_str(t);
            } else {
                parts.push(StrPart::Text(t.to_string()));
            }
        };
        for q in p.into_inner() {
            match q.as_rule() {
                Rule::str_text => push_text(&mut parts, q.as_str()),
                Rule::escape => {
                    let c = &q.as_str()[1..];
                    let rep = match c {
                        "\"" => "\"",
                        "\\" => "\\",
                        "n" => "\n",
                        "t" => "\t",
                        "$" => "$",
                        _ => {
                            self.errors.push(SyntaxError::BadEscape {
                                span: self.span(&q).into(),
                                text: q.as_str().to_string(),
                            });
                            ""
                        }
                    };
                    push_text(&mut parts, rep);
                }
                Rule::interp => {
                    let ispan = self.span(&q);
                    let body = q.into_inner().next().expect("interp body");
                    let bspan = self.span(&body);
                    let text = body.as_str();
                    let mut path = Vec::new();
                    let mut off = bspan.start as usize;
                    let mut ok = !text.is_empty();
                    for seg in text.split('.') {
                        let valid = is_ident(seg);
                        ok &= valid;
                        path.push(Spanned::new(
                            seg.to_string(),
                            Span::new(self.file, off, off + seg.len()),
                        ));
                        off += seg.len() + 1;
                    }
                    if !ok || path.len() > 2 {
                        self.errors.push(SyntaxError::BadInterpolation {
                            span: ispan.into(),
                            text: text.to_string(),
                        });
                    }
                    parts.push(StrPart::Interp(Interp { path, span: ispan }));
                }
                r => unreachable!("string part {r:?}"),
            }
        }
        Spanned::new(StrLit { parts }, span)
    }

    fn value(&mut self, p: Pair<Rule>) -> Spanned<Value> {
        let p = if p.as_rule() == Rule::value {
            p.into_inner().next().expect("value inner")
        } else {
            p
        };
        let span = self.span(&p);
        let v = match p.as_rule() {
            Rule::scalar => classify_scalar(p.as_str()),
            Rule::string => Value::Str(self.string(p).node),
            Rule::raw_string => Value::Raw(
                p.into_inner()
                    .next()
                    .expect("raw body")
                    .as_str()
                    .to_string(),
            ),
            Rule::boolean => Value::Bool(p.as_str() == "true"),
            Rule::ident => Value::Ident(p.as_str().to_string()),
            r => unreachable!("value {r:?}"),
        };
        Spanned::new(v, span)
    }
}

pub(super) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Classify a number-like token: integer, percent, duration, version or pattern.
pub fn classify_scalar(text: &str) -> Value {
    let invalid = |reason: &str| Value::Invalid {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u64>() {
            Ok(n) => Value::Int(n),
            Err(_) => invalid("the number is too large"),
        };
    }
    if let Some(n) = text.strip_suffix('%') {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            return match n.parse::<u64>() {
                Ok(n) => Value::Percent(n),
                Err(_) => invalid("the percentage is too large"),
            };
        }
        return invalid("a percentage is a whole number followed by `%`, like `10%`");
    }
    if text.contains('.') {
        return match VersionPattern::parse(text) {
            Ok(v) => Value::Version(v),
            Err(reason) => {
                if text.contains('x') && text.contains('-') {
                    invalid("a version range needs spaces around `-`, like `1.4.x - 1.5.x`")
                } else {
                    invalid(&reason)
                }
            }
        };
    }
    match parse_duration(text) {
        Ok(d) => Value::Duration(d),
        Err(reason) => invalid(&reason),
    }
}

/// `500ms`, `30s`, `5m`, `1h`, `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut last_rank = u8::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!("`{text}` is not a duration: write units like `500ms`, `30s`, `5m`, `1h` or `1m30s`"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}`: number too large"))?;
        rest = &rest[digits..];
        let (unit, rank, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 0, 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1, 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 2, 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 3, 1)
        } else {
            return Err(format!(
                "`{text}` is not a duration: units are `ms`, `s`, `m` and `h` (like `30s` or `1m30s`)"
            ));
        };
        if rank >= last_rank {
            return Err(format!(
                "`{text}`: write the larger units first, each once (like `1h30m`)"
            ));
        }
        last_rank = rank;
        rest = &rest[len..];
        let part = unit
            .checked_mul(u32::try_from(n).map_err(|_| format!("`{text}`: number too large"))?)
            .ok_or_else(|| format!("`{text}`: duration too large"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("`{text}`: duration too large"))?;
    }
    Ok(total)
}

/// The parse tree as plain nodes, for the formatter: every pair's rule name and byte range, with
/// strings, raw strings and JSON values as leaves (their text is kept as written). `None` when
/// the text does not parse (the syntax errors come from [`parse_file`]).
pub(super) fn layout_tree(text: &str) -> Option<super::LayoutNode> {
    check_nesting(FileId(0), text).ok()?;
    let file = KtParser::parse(Rule::file, text).ok()?.next()?;
    fn node(p: Pair<'_, Rule>) -> super::LayoutNode {
        let rule = p.as_rule();
        let span = p.as_span();
        let children = match rule {
            Rule::string | Rule::raw_string | Rule::json_value => Vec::new(),
            _ => p
                .into_inner()
                .filter(|c| c.as_rule() != Rule::EOI)
                .map(node)
                .collect(),
        };
        super::LayoutNode {
            rule: format!("{rule:?}"),
            start: span.start(),
            end: span.end(),
            children,
        }
    }
    Some(node(file))
}
