//! Text → AST. The only module that knows pest.
//!
//! [`parse`] reads one file's text; the grammar lives in `grammar/ktplay.pest`.

pub mod ast;
mod describe;
pub mod error;
mod parser;

use std::time::Duration;

pub use error::SyntaxError;
pub use parser::{classify_scalar, parse_duration, MAX_NESTING};

use crate::span::FileId;

/// Parse the text of one file into its AST, or every syntax problem found.
pub fn parse(file: FileId, text: &str) -> Result<ast::File, Vec<SyntaxError>> {
    parser::parse_file(file, text)
}

/// One node of the parse tree as the formatter sees it: the grammar rule's name, its byte
/// range, and its children (none for tokens, strings and JSON values).
#[derive(Debug, Clone)]
pub struct LayoutNode {
    pub rule: String,
    pub start: usize,
    pub end: usize,
    pub children: Vec<LayoutNode>,
}

/// The parse tree of `text` for the formatter, or `None` if it does not parse.
pub fn layout_tree(text: &str) -> Option<LayoutNode> {
    parser::layout_tree(text)
}

/// Write a duration the way the language does (`1m30s`, `500ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let (h, rem) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}
