//! Syntax errors: what the parser and the AST builder report.

use miette::{Diagnostic, SourceSpan};
use pest::error::{ErrorVariant, InputLocation};
use thiserror::Error;

use super::parser::Rule;
use crate::span::{FileId, Span};

/// A problem found while reading text into the AST.
#[derive(Debug, Error, Diagnostic)]
pub enum SyntaxError {
    #[error("expected {expected}, found {found}")]
    #[diagnostic(code(ktplay::syntax::unexpected))]
    Unexpected {
        expected: String,
        found: String,
        #[label("here")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },

    #[error("the file is not valid UTF-8 (first bad byte at offset {offset})")]
    #[diagnostic(
        code(ktplay::syntax::not_utf8),
        help("save the playbook as UTF-8 text")
    )]
    NotUtf8 { offset: usize },

    #[error("nesting deeper than {max} levels")]
    #[diagnostic(
        code(ktplay::syntax::too_deep),
        help("a playbook never needs this many nested blocks; check for unbalanced `{{` or `[`")
    )]
    TooDeep {
        #[label("this opens level {max}+1")]
        span: SourceSpan,
        max: usize,
    },

    #[error("unknown escape `{text}` in a string")]
    #[diagnostic(
        code(ktplay::syntax::bad_escape),
        help("strings know `\\\"`, `\\\\`, `\\n`, `\\t` and `\\$`; for other text use a raw string `\"\"\"…\"\"\"`")
    )]
    BadEscape {
        #[label("not an escape")]
        span: SourceSpan,
        text: String,
    },

    #[error("`${{{text}}}` is not a valid interpolation")]
    #[diagnostic(
        code(ktplay::syntax::bad_interpolation),
        help("write `${{name}}` for a let, or `${{component.field}}` (for example `${{console.idle}}`)")
    )]
    BadInterpolation {
        #[label("here")]
        span: SourceSpan,
        text: String,
    },

    #[error("Rhai scripts cannot contain `${{…}}` interpolation")]
    #[diagnostic(
        code(ktplay::syntax::interpolation_in_script),
        help("write the script as a raw string `\"\"\"…\"\"\"` and read values through `vars`")
    )]
    InterpolationInScript {
        #[label("this script")]
        span: SourceSpan,
    },

    #[error("invalid JSON: {reason}")]
    #[diagnostic(
        code(ktplay::syntax::bad_json),
        help("the value after `json` is written as JSON")
    )]
    BadJson {
        #[label("this JSON")]
        span: SourceSpan,
        reason: String,
    },
}

impl SyntaxError {
    /// Convert a pest error once, with our own words for the expected rules and the real file.
    pub(crate) fn from_pest(file: FileId, text: &str, e: pest::error::Error<Rule>) -> SyntaxError {
        let pos = match e.location {
            InputLocation::Pos(p) => p,
            InputLocation::Span((s, _)) => s,
        };
        let mut expected: Vec<&'static str> = match &e.variant {
            ErrorVariant::ParsingError { positives, .. } => {
                positives.iter().map(|r| r.describe()).collect()
            }
            ErrorVariant::CustomError { .. } => vec![],
        };
        expected.sort();
        expected.dedup();
        let keywords: Vec<&'static str> = expected.clone();
        group(&mut expected);
        // Put the closing brace last: "expected `stage` or `}`" reads better.
        let found = describe_found(text, pos);
        let help = help_for(text, pos, &keywords);
        let expected = join_or(&expected);
        let len = found_len(text, pos);
        let _ = file;
        SyntaxError::Unexpected {
            expected: if expected.is_empty() {
                "something else".into()
            } else {
                expected
            },
            found,
            span: Span::new(file, pos, pos + len).into(),
            help,
        }
    }
}

const STATEMENTS: &[&str] = &[
    "`approve`",
    "`blue_green`",
    "`canary`",
    "`guard`",
    "`pause`",
    "`restart`",
    "`rolling`",
    "`scale`",
    "`switch`",
    "`undo`",
];

/// Say "a statement" instead of listing ten keywords, and put `}` last.
fn group(expected: &mut Vec<&'static str>) {
    if STATEMENTS.iter().all(|s| expected.contains(s)) {
        expected.retain(|e| !STATEMENTS.contains(e));
        expected.push("a statement");
    }
    if let Some(i) = expected.iter().position(|e| *e == "`}`") {
        let close = expected.remove(i);
        expected.push(close);
    }
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

fn token_at(text: &str, pos: usize) -> &str {
    let rest = &text[pos.min(text.len())..];
    let word_len = rest
        .char_indices()
        .take_while(|(_, c)| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '%'))
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    if word_len > 0 {
        // At most 40 bytes, cut on a character boundary (`İ` is two bytes).
        let mut cut = word_len.min(40);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        &rest[..cut]
    } else {
        rest.chars().next().map_or("", |c| &rest[..c.len_utf8()])
    }
}

fn found_len(text: &str, pos: usize) -> usize {
    token_at(text, pos).len()
}

fn describe_found(text: &str, pos: usize) -> String {
    let tok = token_at(text, pos);
    match tok {
        "" => "end of file".into(),
        "\n" | "\r" => "end of line".into(),
        "\"" => "a string".into(),
        t => format!("`{t}`"),
    }
}

fn help_for(text: &str, pos: usize, expected: &[&str]) -> Option<String> {
    let tok = token_at(text, pos);
    let line_start = text[..pos.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..pos.min(text.len())];
    if before.matches('"').count() % 2 == 1 && (tok == "\n" || tok.is_empty() || tok == "\r") {
        return Some("this string is not closed: add a `\"` before the end of the line, or use `\"\"\"…\"\"\"` for text over several lines".into());
    }
    if tok.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && expected.contains(&"a name") {
        return Some(format!(
            "names are lower case: `{}`",
            tok.to_ascii_lowercase()
        ));
    }
    if tok == ";" {
        return Some("statements need no `;`: separate them with spaces or new lines".into());
    }
    // A misspelt keyword or option: suggest the closest one that would fit here.
    if tok.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
        let mut words: Vec<&str> = Vec::new();
        for e in expected {
            if e.starts_with("an option") {
                words.extend([
                    "to",
                    "max_unavailable",
                    "max_surge",
                    "timeout",
                    "weight",
                    "for",
                    "within",
                ]);
            } else if let Some(w) = e.strip_prefix('`').and_then(|w| w.strip_suffix('`')) {
                if w.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    words.push(w);
                }
            }
        }
        if let Some(s) = crate::check::names::did_you_mean(tok, words) {
            return Some(s);
        }
    }
    None
}
