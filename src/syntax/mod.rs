//! Text → AST. The only module that knows pest.
//!
//! [`parse`] reads one file's text; the grammar lives in `grammar/ktplay.pest`.

pub mod ast;
pub mod error;
mod fast;
mod parser;
mod rule_names;

use std::time::Duration;

pub use error::SyntaxError;
pub use parser::{classify_scalar, parse_duration, MAX_NESTING};

use crate::span::FileId;

/// Parse the text of one file into its AST, or every syntax problem found.
///
/// A hand-written parser (`fast`) reads the file first; anything it does not fully accept goes to
/// the pest grammar, so every syntax error is pest's (see ARCHITECTURE.md, "Parsing").
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

/// The two parsers one at a time, for the differential test (`tests/fast_parse.rs`).
#[doc(hidden)]
pub mod paths {
    use super::{ast, parser, SyntaxError};
    use crate::span::FileId;

    /// The fast path alone: `None` where it declines (too deep included).
    pub fn fast(file: FileId, text: &str) -> Option<ast::File> {
        super::fast::parse(file, text)
    }

    /// The pest grammar alone.
    pub fn pest(file: FileId, text: &str) -> Result<ast::File, Vec<SyntaxError>> {
        parser::check_nesting(file, text)?;
        parser::parse_pest(file, text)
    }

    /// Both parsers on `text`: `Ok(true)` if the fast path took it and its tree is pest's, spans
    /// included; `Ok(false)` if it declined; `Err` says where they differ.
    pub fn agree(text: &str) -> Result<bool, String> {
        let id = FileId(3);
        let Some(fast) = fast(id, text) else {
            return Ok(false);
        };
        let pest =
            pest(id, text).map_err(|e| format!("the fast path took what pest refuses: {e:?}"))?;
        let (fast, pest) =
            crate::span::debug_with_spans(|| (format!("{fast:#?}"), format!("{pest:#?}")));
        match fast.lines().zip(pest.lines()).position(|(a, b)| a != b) {
            None if fast == pest => Ok(true),
            at => {
                let at = at.unwrap_or(0).saturating_sub(3);
                let show = |s: &str| s.lines().skip(at).take(8).collect::<Vec<_>>().join("\n");
                Err(format!(
                    "the trees differ at line {at}:\nfast:\n{}\npest:\n{}",
                    show(&fast),
                    show(&pest)
                ))
            }
        }
    }
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
