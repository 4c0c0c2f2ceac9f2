//! Diagnostics for CI systems: SARIF 2.1.0 (code-scanning uploads) and GitHub Actions workflow
//! commands (`::error file=…::message`, annotations on the pull request).
//!
//! Both are built from [`JsonDiagnostic`], so every format reports the same positions: lines and
//! columns 1-based, columns counting characters, the end exclusive.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{JsonDiagnostic, Problem};
use crate::source::SourceMap;

/// One SARIF 2.1.0 log with one run: a rule per code reported (with the text of
/// `ktplay explain`), a result per problem with its physical location.
pub fn sarif(sources: &SourceMap, problems: &[Problem]) -> Value {
    let diagnostics: Vec<JsonDiagnostic> = problems
        .iter()
        .map(|p| JsonDiagnostic::new(sources, p))
        .collect();
    let mut rule_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rules = Vec::new();
    for d in &diagnostics {
        if !rule_index.contains_key(d.code.as_str()) {
            rule_index.insert(&d.code, rules.len());
            rules.push(rule(&d.code, d.severity));
        }
    }
    let results: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let text = match &d.help {
                Some(help) => format!("{}\nhelp: {help}", d.message),
                None => d.message.clone(),
            };
            json!({
                "ruleId": d.code,
                "ruleIndex": rule_index[d.code.as_str()],
                "level": level(d.severity),
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri(&d.file) },
                        "region": {
                            "startLine": d.line,
                            "startColumn": d.column,
                            "endLine": d.end_line,
                            "endColumn": d.end_column,
                        }
                    }
                }]
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "ktplay",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            // ktplay counts columns in characters; SARIF's default is UTF-16 code units.
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

fn rule(code: &str, severity: &str) -> Value {
    let mut rule = json!({
        "id": code,
        "defaultConfiguration": { "level": level(severity) },
    });
    if let Some(e) = crate::explain::find(code) {
        rule["shortDescription"] = json!({ "text": e.summary });
        rule["fullDescription"] =
            json!({ "text": e.meaning.split_whitespace().collect::<Vec<_>>().join(" ") });
        rule["help"] = json!({ "text": e.render() });
    }
    rule
}

fn level(severity: &str) -> &'static str {
    match severity {
        "error" => "error",
        "warning" => "warning",
        _ => "note",
    }
}

/// A file name as a URI reference: relative paths stay relative (to the repository root, where
/// CI runs `check`), absolute ones become `file://` URIs; reserved characters percent-encoded.
fn uri(name: &str) -> String {
    let path = name.replace('\\', "/");
    let mut out = String::new();
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One GitHub Actions workflow command per problem, one a line:
/// `::error file=F,line=L,col=C,endLine=L,endColumn=C,title=CODE::message`. GitHub's columns
/// are inclusive and only allowed when the annotation is on one line, so a span over several
/// lines gives lines only.
pub fn github(sources: &SourceMap, problems: &[Problem]) -> String {
    let mut out = String::new();
    for p in problems {
        let d = JsonDiagnostic::new(sources, p);
        let command = match d.severity {
            "error" => "error",
            "warning" => "warning",
            _ => "notice",
        };
        let mut props = vec![
            format!("file={}", property(&d.file)),
            format!("line={}", d.line),
        ];
        if d.line == d.end_line {
            props.push(format!("col={}", d.column));
            props.push(format!("endLine={}", d.end_line));
            props.push(format!(
                "endColumn={}",
                d.end_column.saturating_sub(1).max(d.column)
            ));
        } else {
            props.push(format!("endLine={}", d.end_line));
        }
        props.push(format!("title={}", property(&d.code)));
        let message = match &d.help {
            Some(help) => format!("{}\nhelp: {help}", d.message),
            None => d.message,
        };
        out.push_str(&format!(
            "::{command} {}::{}\n",
            props.join(","),
            data(&message)
        ));
    }
    out
}

/// Escaping of a workflow command's message (as `@actions/core` does).
fn data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escaping of a workflow command's property value: also `:` and `,`.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_would_end_a_command() {
        assert_eq!(data("50%\nnext"), "50%25%0Anext");
        assert_eq!(
            property("ktplay::check::x,y"),
            "ktplay%3A%3Acheck%3A%3Ax%2Cy"
        );
    }

    #[test]
    fn uris_are_relative_or_file_uris() {
        assert_eq!(uri("playbooks/a b.ktplay"), "playbooks/a%20b.ktplay");
        assert_eq!(uri("/tmp/x.ktplay"), "file:///tmp/x.ktplay");
    }
}
