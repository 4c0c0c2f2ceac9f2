//! Compiling scripts during `check`: syntax errors and unknown functions, labelled on the
//! script's own text inside the playbook or hook file.

use foldhash::{HashSet, HashSetExt};
use std::sync::OnceLock;

use miette::{Diagnostic, SourceSpan};
use rhai::AST;

use super::api::API_FUNCTIONS;
use super::sandbox::{base_engine, sandboxed_raw, Limits, SCOPE_NAMES};
use crate::span::{FileId, Span};

/// Where a script's text lives, so positions map onto the file.
#[derive(Debug, Clone, Copy)]
pub struct ScriptSource<'a> {
    pub text: &'a str,
    pub file: FileId,
    /// Byte offset of the script's first character in its file.
    pub offset: usize,
}

/// A script that does not compile.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ScriptError {
    #[error("Rhai syntax error: {message}")]
    #[diagnostic(code(ktplay::script::syntax))]
    Syntax {
        message: String,
        #[label("here")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },
    #[error("unknown function `{name}` in a Rhai script")]
    #[diagnostic(code(ktplay::script::unknown_function))]
    UnknownFunction {
        name: String,
        #[label("not a function scripts can call")]
        span: SourceSpan,
        #[help]
        help: String,
    },
}

/// Functions of Rhai's standard package that scripts commonly call: checked first, so the full
/// list (slow to build: it formats every signature) is only built for a name not in here.
const COMMON: &[&str] = &[
    "all",
    "any",
    "filter",
    "map",
    "reduce",
    "len",
    "is_empty",
    "push",
    "pop",
    "contains",
    "keys",
    "values",
    "get",
    "to_string",
    "to_int",
    "to_float",
    "parse_int",
    "parse_float",
    "sort",
    "index_of",
    "find",
    "some",
    "none",
    "starts_with",
    "ends_with",
    "split",
    "trim",
    "to_lower",
    "to_upper",
    "sub_string",
    "replace",
    "join",
    "abs",
    "min",
    "max",
    "round",
    "floor",
    "ceiling",
    "sqrt",
    "range",
    "timestamp",
    "elapsed",
    "retain",
    "drain",
    "remove",
    "insert",
    "append",
    "extract",
    "chars",
    "pad",
    "truncate",
    "clear",
    "in",
    "sum",
    "count",
    "dedup",
    "reverse",
];

fn is_known(name: &str) -> bool {
    API_FUNCTIONS.contains(&name) || COMMON.contains(&name) || known_functions().contains(name)
}

/// Every function name a script may call: the standard package's and the API's.
fn known_functions() -> &'static HashSet<String> {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let engine = base_engine(&Limits::default());
        let mut names: HashSet<String> = engine
            .gen_fn_signatures(true)
            .iter()
            .filter_map(|sig| sig.split('(').next())
            .map(|n| {
                n.trim()
                    .trim_start_matches("get$")
                    .trim_start_matches("set$")
                    .to_string()
            })
            .collect();
        for n in API_FUNCTIONS {
            names.insert(n.to_string());
        }
        // Built into the language rather than registered.
        for n in [
            "print",
            "debug",
            "type_of",
            "Fn",
            "call",
            "curry",
            "is_def_fn",
            "is_def_var",
            "is_shared",
            "throw",
            "to_string",
            "to_debug",
        ] {
            names.insert(n.to_string());
        }
        names
    })
}

/// Rhai keywords that are followed by `(` without being calls.
const KEYWORDS: &[&str] = &[
    "if", "else", "while", "loop", "for", "in", "do", "until", "switch", "return", "throw", "try",
    "catch", "fn", "let", "const", "private", "this", "global",
];

/// Compile a script with the sandbox's settings; every problem found, labelled in its file.
pub fn compile(src: ScriptSource) -> Result<AST, Vec<(FileId, ScriptError)>> {
    static ENGINE: OnceLock<rhai::Engine> = OnceLock::new();
    compile_with(
        ENGINE.get_or_init(|| sandboxed_raw(&Limits::default())),
        src,
    )
}

/// The problems [`compile`] finds, for `check`: the script is parsed but not optimized, since
/// its syntax tree is thrown away (and the optimizer finds no errors). Optimizing was a sixth of
/// compiling a one-line `check rhai`.
pub fn problems(src: ScriptSource) -> Vec<(FileId, ScriptError)> {
    static ENGINE: OnceLock<rhai::Engine> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        let mut e = sandboxed_raw(&Limits::default());
        e.set_optimization_level(rhai::OptimizationLevel::None);
        e
    });
    compile_with(engine, src).err().unwrap_or_default()
}

fn compile_with(
    engine: &rhai::Engine,
    src: ScriptSource,
) -> Result<AST, Vec<(FileId, ScriptError)>> {
    let mut scope = rhai::Scope::new();
    for n in SCOPE_NAMES {
        // Declared as variables, not constants: the optimizer would fold a constant `()` into
        // the compiled script in place of the values the run provides.
        scope.push(*n, ());
    }
    let ast = match engine.compile_with_scope(&scope, src.text) {
        Ok(ast) => ast,
        Err(e) => {
            let pos = e.position();
            let offset = offset_of(src.text, pos.line(), pos.position());
            let message = e.err_type().to_string();
            let help = if message.contains("eval")
                || message.contains("import")
                || message.contains("export")
            {
                Some("scripts run in a sandbox: no `eval`, no modules, no file system".to_string())
            } else if message.contains("Variable not found") {
                Some("scripts see `vars`, `stage`, `env_name` and, in `check rhai`, `response`; declare others with `let`".into())
            } else {
                None
            };
            let span = Span::new(
                src.file,
                src.offset + offset,
                src.offset + offset + token_len(src.text, offset),
            );
            return Err(vec![(
                src.file,
                ScriptError::Syntax {
                    message,
                    span: span.into(),
                    help,
                },
            )]);
        }
    };
    let problems = unknown_calls(src);
    if problems.is_empty() {
        Ok(ast)
    } else {
        Err(problems)
    }
}

/// Byte offset of a 1-based line and character column in `text`.
fn offset_of(text: &str, line: Option<usize>, column: Option<usize>) -> usize {
    let Some(line) = line else { return 0 };
    let mut start = 0;
    for _ in 1..line {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    let col = column.unwrap_or(1).saturating_sub(1);
    let line_text = &text[start..];
    start
        + line_text
            .char_indices()
            .nth(col)
            .map_or(line_text.len(), |(i, _)| i)
}

fn token_len(text: &str, offset: usize) -> usize {
    let rest = &text[offset.min(text.len())..];
    let n = rest
        .char_indices()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_')
        .last()
        .map_or(0, |(i, c)| i + c.len_utf8());
    if n == 0 {
        rest.chars().next().map_or(0, char::len_utf8)
    } else {
        n
    }
}

/// Calls `name(` whose name is neither known nor defined in the script. Strings and comments
/// are blanked first so their text is not mistaken for calls.
fn unknown_calls(src: ScriptSource) -> Vec<(FileId, ScriptError)> {
    let code = blank_strings_and_comments(src.text);
    let bytes = code.as_bytes();
    let mut defined: HashSet<&str> = HashSet::new();
    let mut calls: Vec<(usize, &str)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let name = &code[start..i];
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            let prev = code[..start].trim_end();
            if prev.ends_with("fn")
                && prev[..prev.len() - 2]
                    .chars()
                    .last()
                    .is_none_or(|c| !c.is_alphanumeric() && c != '_')
            {
                defined.insert(name);
            } else if j < bytes.len() && bytes[j] == b'(' && !KEYWORDS.contains(&name) {
                calls.push((start, name));
            }
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    let mut reported: HashSet<&str> = HashSet::new();
    for (at, name) in calls {
        if defined.contains(name) || is_known(name) || !reported.insert(name) {
            continue;
        }
        let known = known_functions();
        let help = crate::check::names::did_you_mean(
            name,
            API_FUNCTIONS
                .iter()
                .copied()
                .chain(known.iter().map(String::as_str)),
        )
        .unwrap_or_else(|| {
            format!(
                "the API is {}; plus Rhai's standard functions",
                API_FUNCTIONS.join(", ")
            )
        });
        let span = Span::new(src.file, src.offset + at, src.offset + at + name.len());
        out.push((
            src.file,
            ScriptError::UnknownFunction {
                name: name.to_string(),
                span: span.into(),
                help,
            },
        ));
    }
    out
}

/// Replace the contents of string literals and comments with spaces, keeping byte positions.
fn blank_strings_and_comments(text: &str) -> String {
    let mut out: Vec<u8> = text.as_bytes().to_vec();
    let b = text.as_bytes();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for x in out.iter_mut().take(to.min(b.len())).skip(from) {
            if *x != b'\n' {
                *x = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
                blank(&mut out, i, end);
                i = end;
            }
            q @ (b'"' | b'\'' | b'`') => {
                let mut j = i + 1;
                while j < b.len() && b[j] != q {
                    if b[j] == b'\\' {
                        j += 1;
                    }
                    j += 1;
                }
                blank(&mut out, i + 1, j);
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> ScriptSource<'_> {
        ScriptSource {
            text,
            file: FileId(0),
            offset: 100,
        }
    }

    #[test]
    fn syntax_errors_point_into_the_script() {
        let errs = compile(src("let x = 1;\nlet y = ;")).unwrap_err();
        let (_, ScriptError::Syntax { span, .. }) = &errs[0] else {
            panic!("{errs:?}")
        };
        // Line 2, the `;` after `=`: 11 bytes of line 1, then column 9.
        assert_eq!(span.offset(), 100 + 11 + 8);
    }

    #[test]
    fn unknown_functions_are_found_with_a_suggestion() {
        let errs = compile(src(
            "let r = http_gett(\"x\"); // open_file(\"y\")\nr.status == 200",
        ))
        .unwrap_err();
        assert_eq!(errs.len(), 1, "the commented call is not a call: {errs:?}");
        let (_, ScriptError::UnknownFunction { name, help, span }) = &errs[0] else {
            panic!()
        };
        assert_eq!(name, "http_gett");
        assert!(help.contains("http_get"), "{help}");
        assert_eq!(span.offset(), 108);
    }

    #[test]
    fn known_calls_methods_and_own_functions_pass() {
        compile(src("fn double(x) { x * 2 }\nlet a = [1, 2].map(|v| double(v));\na.all(|v| v > 0) && semver_matches(\"1.5.0\", \"1.5.x\") && vars.len() >= 0"))
            .unwrap();
    }

    #[test]
    fn eval_and_import_do_not_compile() {
        assert!(compile(src("eval(\"1\")")).is_err());
        assert!(compile(src("import \"fs\" as fs;")).is_err());
    }

    #[test]
    fn undeclared_variables_do_not_compile() {
        let errs = compile(src("undeclared + 1")).unwrap_err();
        assert!(matches!(errs[0].1, ScriptError::Syntax { .. }));
    }
}
