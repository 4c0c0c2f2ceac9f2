//! The fast path: a hand-written recursive-descent parser for the grammar's forms, tried before
//! pest. It produces exactly the AST the pest parser and its builder produce (spans included), or
//! declines with `None` — on anything it does not fully accept: a syntax error, an unknown escape, a
//! bad interpolation or JSON, a form it does not know. The caller then runs pest, so every
//! diagnostic is still pest's, and `grammar/ktplay.pest` stays the grammar of record.
//!
//! Why: pest's machinery (a rule call with a stack probe and call tracking per attempt, a token
//! queue, pairs rebuilt into the AST) was three quarters of `ktplay check`'s instructions.
//!
//! How it stays equal to pest:
//! - Tokens are read where pest reads them, with pest's ordered choices: keywords are whole words
//!   (`"stage" ~ !ident_char`), `value` is raw string, string, scalar, boolean, then name.
//! - Spans: pest's builder narrows a pair to the end of its last token (`Builder::span`), so a
//!   construct here spans from its first token's start to its last token's end (`self.end`).
//! - Where a choice could succeed differently after a failed attempt (`undo api to revision`,
//!   `expect body …`, `"""` where only a plain string is allowed), it declines instead of guessing.
//!
//! `tests/fast_parse.rs` and the fuzz target hold it to pest: for every case file, shipped
//! playbook and generated input, it declines or yields pest's tree with pest's spans.
//! A new grammar form must be added here too, or files using it take the (slower) pest path.

mod fleet;
mod json;
mod metric;
mod migrations;
mod monitor;
mod stmt;
mod test_item;

use super::ast::*;
use super::parser::{classify_scalar, is_ident, MAX_NESTING};
use crate::span::{FileId, Span, Spanned};

/// Parse `text` if it is well-formed in every way the pest path checks; `None` otherwise.
pub(super) fn parse(file: FileId, text: &str) -> Option<File> {
    let mut p = Fast {
        file,
        src: text,
        b: text.as_bytes(),
        pos: 0,
        end: 0,
        word: (usize::MAX, 0),
        depth: 0,
    };
    let mut items = Vec::new();
    loop {
        p.skip();
        if p.pos == p.b.len() {
            return Some(File { items });
        }
        let item = match p.word()? {
            "use" => {
                p.bump_word();
                Item::Use(p.string()?)
            }
            "matrix" => Item::Matrix(p.matrix()?),
            "playbook" => Item::Playbook(p.playbook()?),
            "test" => Item::Test(p.test()?),
            "fleet" => Item::Fleet(p.fleet()?),
            _ => return None,
        };
        items.push(item);
    }
}

const OPT_NAMES: &[&str] = &[
    "to",
    "max_unavailable",
    "max_surge",
    "timeout",
    "weight",
    "for",
    "within",
    "every",
];

struct Fast<'a> {
    file: FileId,
    src: &'a str,
    b: &'a [u8],
    /// The next byte to read.
    pos: usize,
    /// The end of the last token read.
    end: usize,
    /// The start and end of the last word looked at.
    word: (usize, usize),
    /// `{`/`[` open now: past `MAX_NESTING` it declines, and pest's path refuses the file as too
    /// deep (in text it accepts, these are exactly the brackets `check_nesting` counts).
    depth: usize,
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

impl<'a> Fast<'a> {
    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, start, end)
    }

    /// Blanks and `#` comments (the grammar's implicit WHITESPACE and COMMENT).
    fn skip(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'#' => {
                    self.pos = match self.b[self.pos..].iter().position(|&c| c == b'\n') {
                        Some(n) => self.pos + n,
                        None => self.b.len(),
                    }
                }
                _ => break,
            }
        }
    }

    /// The next non-blank byte, after skipping.
    fn peek(&mut self) -> Option<u8> {
        self.skip();
        self.b.get(self.pos).copied()
    }

    /// The word (`[A-Za-z0-9_-]+`) at the next token, without consuming it.
    fn word(&mut self) -> Option<&'a str> {
        self.skip();
        let end = self.word_end();
        (end > self.pos).then(|| &self.src[self.pos..end])
    }

    fn word_end(&mut self) -> usize {
        if self.word.0 != self.pos {
            let len = self.b[self.pos..]
                .iter()
                .take_while(|&&c| is_word_byte(c))
                .count();
            self.word = (self.pos, self.pos + len);
        }
        self.word.1
    }

    /// Consume the word at `pos` (the one `word()` returned).
    fn bump_word(&mut self) {
        self.pos = self.word_end();
        self.end = self.pos;
    }

    /// The keyword `kw` as a whole word, or `None`.
    fn keyword(&mut self, kw: &str) -> Option<()> {
        (self.word()? == kw).then(|| self.bump_word())
    }

    fn punct(&mut self, c: u8) -> Option<()> {
        if self.peek()? != c {
            return None;
        }
        match c {
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return None;
                }
            }
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        self.pos += 1;
        self.end = self.pos;
        Some(())
    }

    /// Whether the next token is `c` (consumed if so).
    fn eat(&mut self, c: u8) -> bool {
        self.punct(c).is_some()
    }

    fn ident(&mut self) -> Option<Ident> {
        let w = self.word()?;
        if !is_ident(w) {
            return None;
        }
        let start = self.pos;
        self.bump_word();
        Some(Spanned::new(w.to_string(), self.span(start, self.end)))
    }

    fn starts_raw(&mut self) -> bool {
        self.skip();
        self.b[self.pos..].starts_with(b"\"\"\"")
    }

    /// `"""…"""`: the body's start and end.
    fn raw_body(&mut self) -> Option<(usize, usize)> {
        let open = self.pos + 3;
        let len = self.src[open..].find("\"\"\"")?;
        self.pos = open + len + 3;
        self.end = self.pos;
        Some((open, open + len))
    }

    /// A plain string `"…"` with escapes and interpolations, as the builder makes it.
    fn string(&mut self) -> Option<Spanned<StrLit>> {
        if self.starts_raw() || self.b.get(self.pos) != Some(&b'"') {
            // Where pest allows only a plain string, `"""` reads as `""` then `"`: not ours.
            return None;
        }
        let start = self.pos;
        let mut i = start + 1;
        let mut parts: Vec<StrPart> = Vec::new();
        let push_text = |parts: &mut Vec<StrPart>, t: &str| {
            if let Some(StrPart::Text(prev)) = parts.last_mut() {
                prev.push_str(t);
            } else {
                parts.push(StrPart::Text(t.to_string()));
            }
        };
        loop {
            match *self.b.get(i)? {
                b'"' => break,
                b'\n' => return None,
                b'\\' => {
                    let rep = match *self.b.get(i + 1)? {
                        b'"' => "\"",
                        b'\\' => "\\",
                        b'n' => "\n",
                        b't' => "\t",
                        b'$' => "$",
                        _ => return None,
                    };
                    push_text(&mut parts, rep);
                    i += 2;
                }
                b'$' if self.b.get(i + 1) == Some(&b'{') => {
                    let body = i + 2;
                    let len = self.b[body..]
                        .iter()
                        .position(|&c| matches!(c, b'}' | b'"' | b'\n'))?;
                    if self.b[body + len] != b'}' {
                        return None;
                    }
                    let text = &self.src[body..body + len];
                    let mut path = Vec::new();
                    let mut off = body;
                    for seg in text.split('.') {
                        if !is_ident(seg) {
                            return None;
                        }
                        path.push(Spanned::new(
                            seg.to_string(),
                            self.span(off, off + seg.len()),
                        ));
                        off += seg.len() + 1;
                    }
                    if path.len() > 2 {
                        return None;
                    }
                    let close = body + len + 1;
                    parts.push(StrPart::Interp(Interp {
                        path,
                        span: self.span(i, close),
                    }));
                    i = close;
                }
                _ => {
                    let from = i;
                    i += 1;
                    while let Some(&c) = self.b.get(i) {
                        if matches!(c, b'"' | b'\\' | b'\n')
                            || (c == b'$' && self.b.get(i + 1) == Some(&b'{'))
                        {
                            break;
                        }
                        i += 1;
                    }
                    push_text(&mut parts, &self.src[from..i]);
                }
            }
        }
        self.pos = i + 1;
        self.end = self.pos;
        Some(Spanned::new(StrLit { parts }, self.span(start, self.end)))
    }

    /// `string+`: one or more plain strings.
    fn strings(&mut self) -> Option<Vec<Spanned<StrLit>>> {
        let mut out = vec![self.string()?];
        while self.peek() == Some(b'"') {
            out.push(self.string()?);
        }
        Some(out)
    }

    /// `value`: raw string, string, scalar, boolean or name, in pest's order.
    fn value(&mut self) -> Option<Spanned<Value>> {
        let start = self.pos_after_skip();
        let v = match *self.b.get(start)? {
            b'"' if self.starts_raw() => {
                let (from, to) = self.raw_body()?;
                Value::Raw(self.src[from..to].to_string())
            }
            b'"' => Value::Str(self.string()?.node),
            c if c.is_ascii_digit() => {
                let len = self.b[start..]
                    .iter()
                    .take_while(|&&c| c.is_ascii_alphanumeric() || b".%-+".contains(&c))
                    .count();
                self.pos = start + len;
                self.end = self.pos;
                classify_scalar(&self.src[start..self.pos])
            }
            _ => match self.word()? {
                "true" => {
                    self.bump_word();
                    Value::Bool(true)
                }
                "false" => {
                    self.bump_word();
                    Value::Bool(false)
                }
                _ => Value::Ident(self.ident()?.node),
            },
        };
        Some(Spanned::new(v, self.span(start, self.end)))
    }

    fn pos_after_skip(&mut self) -> usize {
        self.skip();
        self.pos
    }

    /// `opt*`: `timeout 10m`, `weight 10%`, …
    fn opts(&mut self) -> Option<Vec<Opt>> {
        let mut out = Vec::new();
        while let Some(w) = self.word() {
            if !OPT_NAMES.contains(&w) {
                break;
            }
            out.push(self.opt()?);
        }
        Some(out)
    }

    fn opt(&mut self) -> Option<Opt> {
        let start = self.pos;
        let w = self.word()?;
        self.bump_word();
        let name = Spanned::new(w.to_string(), self.span(start, self.end));
        Some(Opt {
            name,
            value: self.value()?,
        })
    }

    // ------------------------------------------------------------ matrix

    fn matrix(&mut self) -> Option<MatrixDecl> {
        let start = self.pos;
        self.keyword("matrix")?;
        let name = self.ident()?;
        self.punct(b'{')?;
        let mut entries = Vec::new();
        while !self.eat(b'}') {
            let estart = self.pos_after_skip();
            let entry = match self.word()? {
                "hub" => {
                    self.bump_word();
                    MatrixEntry::Hub(self.ident()?)
                }
                "rule" => {
                    self.bump_word();
                    MatrixEntry::Rule(self.ident()?)
                }
                "order" => {
                    self.bump_word();
                    let names = self.order_names();
                    if names.is_empty() {
                        return None;
                    }
                    MatrixEntry::Order(names)
                }
                _ => MatrixEntry::Row(self.row()?),
            };
            entries.push(Spanned::new(entry, self.span(estart, self.end)));
        }
        Some(MatrixDecl {
            name,
            entries,
            span: self.span(start, self.end),
        })
    }

    /// `order_name+`: names up to a keyword or to a name followed by a scalar (a row's start).
    fn order_names(&mut self) -> Vec<Ident> {
        let mut out = Vec::new();
        while let Some(w) = self.word() {
            if matches!(w, "hub" | "order" | "rule") || !is_ident(w) {
                break;
            }
            let (pos, end) = (self.pos, self.end);
            self.bump_word();
            if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                (self.pos, self.end) = (pos, end);
                break;
            }
            out.push(Spanned::new(w.to_string(), self.span(pos, self.end)));
        }
        out
    }

    fn row(&mut self) -> Option<RowDecl> {
        let hub = self.ident()?;
        let version = self.value()?;
        let status = self.ident()?;
        self.punct(b'{')?;
        let mut peers = Vec::new();
        while !self.eat(b'}') {
            let col = self.ident()?;
            let low = self.value()?;
            let high = if self.eat(b'-') {
                Some(self.value()?)
            } else {
                None
            };
            let span = self.span(low.span.start as usize, self.end);
            peers.push((col, RangeLit { low, high, span }));
        }
        Some(RowDecl {
            hub,
            version,
            status,
            peers,
        })
    }

    // ------------------------------------------------------------ playbook

    fn playbook(&mut self) -> Option<Playbook> {
        let start = self.pos;
        self.keyword("playbook")?;
        let name = self.string()?;
        self.punct(b'{')?;
        let mut entries = Vec::new();
        while !self.eat(b'}') {
            let estart = self.pos_after_skip();
            let entry = match self.word()? {
                "stage" => PlaybookEntry::Stage(self.stage()?),
                "component" => PlaybookEntry::Component(self.component()?),
                "let" => PlaybookEntry::Let(self.let_decl()?),
                "env" => PlaybookEntry::Env(self.env()?),
                "monitor" => PlaybookEntry::Monitor(self.monitor()?),
                "namespace" => {
                    self.bump_word();
                    PlaybookEntry::Namespace(self.string()?)
                }
                "matrix" => {
                    self.bump_word();
                    PlaybookEntry::Matrix(self.ident()?)
                }
                "on_failure" => {
                    self.bump_word();
                    PlaybookEntry::OnFailure(self.ident()?)
                }
                "allow_hosts" => {
                    self.bump_word();
                    PlaybookEntry::AllowHosts(self.strings()?)
                }
                _ => return None,
            };
            entries.push(Spanned::new(entry, self.span(estart, self.end)));
        }
        Some(Playbook {
            name,
            entries,
            span: self.span(start, self.end),
        })
    }

    fn let_decl(&mut self) -> Option<LetDecl> {
        self.keyword("let")?;
        let name = self.ident()?;
        self.punct(b'=')?;
        let value = if self.word() == Some("env") && self.env_call_follows() {
            self.keyword("env")?;
            self.punct(b'(')?;
            let var = self.string()?;
            self.punct(b')')?;
            LetValue::Env(var)
        } else {
            LetValue::Value(self.value()?)
        };
        Some(LetDecl { name, value })
    }

    /// After the word `env` at `pos`: whether `(` comes next.
    fn env_call_follows(&mut self) -> bool {
        let (pos, end) = (self.pos, self.end);
        self.bump_word();
        let open = self.peek() == Some(b'(');
        (self.pos, self.end) = (pos, end);
        open
    }

    fn component(&mut self) -> Option<ComponentDecl> {
        self.keyword("component")?;
        let name = self.ident()?;
        self.punct(b'{')?;
        let mut entries = Vec::new();
        while !self.eat(b'}') {
            let estart = self.pos_after_skip();
            let w = self.word()?;
            self.bump_word();
            let entry = match w {
                "deployment" => ComponentEntry::Deployment(self.strings()?),
                "container" => ComponentEntry::Container(self.string()?),
                "image" => ComponentEntry::Image(self.string()?),
                "from" => ComponentEntry::From(self.value()?),
                "to" => ComponentEntry::To(self.value()?),
                "migrations" => self.migrations()?,
                "role" => ComponentEntry::Role(self.ident()?),
                "serves" => ComponentEntry::Serves(self.ident()?),
                "blue_green" => ComponentEntry::BlueGreen(self.blue_green()?),
                "traffic" => {
                    let kind = self.ident()?;
                    ComponentEntry::Traffic(kind, self.string()?)
                }
                _ => return None,
            };
            entries.push(Spanned::new(entry, self.span(estart, self.end)));
        }
        Some(ComponentDecl { name, entries })
    }

    fn blue_green(&mut self) -> Option<Vec<Spanned<BlueGreenEntry>>> {
        self.punct(b'{')?;
        let mut out = Vec::new();
        while !self.eat(b'}') {
            let start = self.pos_after_skip();
            let w = self.word()?;
            self.bump_word();
            let entry = match w {
                "service" => BlueGreenEntry::Service(self.string()?),
                "selector" => BlueGreenEntry::Selector(self.string()?),
                "blue" => BlueGreenEntry::Blue(self.string()?),
                "green" => BlueGreenEntry::Green(self.string()?),
                _ => return None,
            };
            out.push(Spanned::new(entry, self.span(start, self.end)));
        }
        Some(out)
    }

    fn env(&mut self) -> Option<EnvDecl> {
        self.keyword("env")?;
        let name = self.ident()?;
        self.punct(b'{')?;
        let mut entries = Vec::new();
        while !self.eat(b'}') {
            let estart = self.pos_after_skip();
            let entry = match self.word()? {
                "let" => EnvEntry::Let(self.let_decl()?),
                "monitor" => EnvEntry::Monitor(self.monitor()?),
                w => {
                    self.bump_word();
                    match w {
                        "context" => EnvEntry::Context(self.string()?),
                        "namespace" => EnvEntry::Namespace(self.string()?),
                        "allow_hosts" => EnvEntry::AllowHosts(self.strings()?),
                        "after" => {
                            let mut names = vec![self.ident()?];
                            while self.eat(b',') {
                                names.push(self.ident()?);
                            }
                            EnvEntry::After(names)
                        }
                        _ => return None,
                    }
                }
            };
            entries.push(Spanned::new(entry, self.span(estart, self.end)));
        }
        Some(EnvDecl { name, entries })
    }

    // ------------------------------------------------------------ JSON after `json`
}
