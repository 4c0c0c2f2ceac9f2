//! `ktplay fmt`: one canonical layout for `.ktplay` files.
//!
//! The layout is decided by the grammar, not by the text: every item, entry and statement starts
//! a line, indented two spaces per block; `{` ends its header's line and `}` stands alone, except
//! in matrix rows, which stay on one line (`api 1.5.x current { gateway 1.4.x - 1.5.x  console
//! 1.4.x - 1.5.x }`, two spaces between peers). Tokens on a line are separated by one space
//! (none inside `env("VAR")` or before `,`). Strings, raw strings and JSON values are kept
//! exactly as written.
//!
//! Comments are kept where they were: a comment on its own line stays on its own line, indented
//! as the line that follows it; a comment after code stays after that code, and the trailing
//! comments of consecutive lines at one indentation are aligned two spaces after the longest of
//! those lines. Blank lines between entries are kept (several become one); none at the start or
//! end of a block. The text between two tokens holds only blanks and comments (the grammar's
//! implicit `WHITESPACE` and `COMMENT`), which is how comments are found without the parser
//! keeping them.
//!
//! Formatting changes no token, so the result checks exactly as the input did, and it is
//! idempotent; `tests/fmt.rs` asserts both over every shipped playbook and case file.

use std::collections::HashSet;

use crate::syntax::LayoutNode;

/// Grammar rules whose text starts a line (items, entries, statements).
const LINE_RULES: &[&str] = &[
    "use_item",
    "matrix_item",
    "playbook_item",
    "matrix_hub",
    "matrix_order",
    "matrix_rule",
    "matrix_row",
    "pb_namespace",
    "pb_matrix",
    "pb_on_failure",
    "allow_hosts",
    "let_item",
    "component_item",
    "c_deployment",
    "c_container",
    "c_image",
    "c_from",
    "c_to",
    "c_migrations",
    "mig_files",
    "mig_dialect",
    "mig_queries",
    "mig_release",
    "c_role",
    "c_serves",
    "c_blue_green",
    "c_traffic",
    "bg_service",
    "bg_selector",
    "bg_blue",
    "bg_green",
    "env_item",
    "monitor_item",
    "e_context",
    "e_after",
    "e_namespace",
    "stage_item",
    "rollback_none",
    "rollback_block",
    "s_rolling",
    "s_canary",
    "s_blue_green",
    "s_restart",
    "s_undo",
    "s_switch",
    "s_scale",
    "s_pause",
    "s_approve",
    "s_guard",
    "h_header",
    "h_bearer",
    "h_json",
    "h_body",
    "h_expect_body",
    "h_check",
    "test_item",
    "t_playbook",
    "t_env",
    "t_fault",
    "t_expect",
    "fleet_item",
    "f_on_failure",
    "f_shared",
    "f_cluster",
    "f_wave",
    "w_clusters",
    "w_parallel",
    "w_soak",
];

/// Rules that start a line only as entries of an HTTP guard's block (after the URL they are
/// options on the guard's line).
const HTTP_BLOCK_RULES: &[&str] = &["http_expect", "opt"];

/// Rules that start a line only as entries of a metric guard's block (in the one-line form they
/// stay on the guard's line).
const METRIC_BLOCK_RULES: &[&str] = &[
    "m_query",
    "m_below",
    "m_above",
    "m_between",
    "m_failure_limit",
    "m_no_data",
    "h_bearer",
    "opt",
];

/// Rules that start a line only as entries of a monitor's block (in the one-line form they stay
/// on the monitor's line).
const MONITOR_BLOCK_RULES: &[&str] = &["http_expect", "mon_budget", "opt"];

/// The text does not parse, so it has no layout; `check` says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the file has syntax errors; `ktplay check` shows them")]
pub struct NotParsed;

/// The canonical layout of `text`.
pub fn format(text: &str) -> Result<String, NotParsed> {
    let tree = crate::syntax::layout_tree(text).ok_or(NotParsed)?;
    let mut marks = Marks::default();
    let mut tokens = Vec::new();
    collect(&tree, "", &mut marks, &mut tokens);
    Ok(Printer::new(text, &marks).print(&tokens))
}

#[derive(Default)]
struct Marks {
    line_starts: HashSet<usize>,
    peer_starts: HashSet<usize>,
    inline_braces: HashSet<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Open,
    Close,
    LParen,
    RParen,
    Comma,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    start: usize,
    end: usize,
    kind: Kind,
}

fn collect(node: &LayoutNode, parent: &str, marks: &mut Marks, out: &mut Vec<Token>) {
    let rule = node.rule.as_str();
    if LINE_RULES.contains(&rule)
        || (parent == "http_block" && HTTP_BLOCK_RULES.contains(&rule))
        || (parent == "metric_block" && METRIC_BLOCK_RULES.contains(&rule))
        || (parent == "monitor_block" && MONITOR_BLOCK_RULES.contains(&rule))
    {
        marks.line_starts.insert(node.start);
    }
    if rule == "row_peer" {
        marks.peer_starts.insert(node.start);
    }
    if node.children.is_empty() && rule != "file" {
        if node.start == node.end {
            return;
        }
        let kind = match rule {
            "open" => Kind::Open,
            "close" => Kind::Close,
            "lparen" => Kind::LParen,
            "rparen" => Kind::RParen,
            "comma" => Kind::Comma,
            _ => Kind::Other,
        };
        if parent == "matrix_row" && matches!(kind, Kind::Open | Kind::Close) {
            marks.inline_braces.insert(node.start);
        }
        out.push(Token {
            start: node.start,
            end: node.end,
            kind,
        });
        return;
    }
    for c in &node.children {
        collect(c, rule, marks, out);
    }
}

/// A comment found between two tokens.
struct Comment<'a> {
    text: &'a str,
    /// Nothing but blanks between it and the start of its line.
    own_line: bool,
    /// A blank line before it.
    blank_before: bool,
}

/// The comments of the text between two tokens, and whether a blank line precedes the next token.
fn gap(text: &str, at_file_start: bool) -> (Vec<Comment<'_>>, bool) {
    let mut comments = Vec::new();
    let mut newlines = if at_file_start { 1 } else { 0 };
    let mut rest = text;
    while let Some(i) = rest.find(['#', '\n']) {
        if rest.as_bytes()[i] == b'\n' {
            newlines += 1;
            rest = &rest[i + 1..];
            continue;
        }
        let end = rest[i..].find('\n').map_or(rest.len(), |e| i + e);
        comments.push(Comment {
            text: rest[i..end].trim_end(),
            own_line: newlines > 0,
            blank_before: newlines > 1,
        });
        newlines = 0;
        rest = &rest[end..];
    }
    (comments, newlines > 1)
}

#[derive(Debug, Default, Clone)]
struct Line {
    indent: usize,
    code: String,
    comment: Option<String>,
    blank: bool,
}

struct Printer<'a> {
    text: &'a str,
    marks: &'a Marks,
    lines: Vec<Line>,
    cur: Line,
    depth: usize,
    /// The next token must start a line (after `{` or a comment).
    force_break: bool,
}

impl<'a> Printer<'a> {
    fn new(text: &'a str, marks: &'a Marks) -> Self {
        Printer {
            text,
            marks,
            lines: Vec::new(),
            cur: Line::default(),
            depth: 0,
            force_break: false,
        }
    }

    fn finish_line(&mut self) {
        if !self.cur.code.is_empty() || self.cur.comment.is_some() {
            let line = std::mem::take(&mut self.cur);
            self.lines.push(line);
        }
    }

    /// A blank line, unless at the start of the file or of a block, or after another blank.
    fn blank(&mut self) {
        match self.lines.last() {
            None => {}
            Some(l) if l.blank || (l.comment.is_none() && l.code.ends_with('{')) => {}
            Some(_) => self.lines.push(Line {
                blank: true,
                ..Line::default()
            }),
        }
    }

    fn start_line(&mut self, indent: usize, blank_before: bool) {
        self.finish_line();
        if blank_before {
            self.blank();
        }
        self.cur.indent = indent;
    }

    fn comments(&mut self, comments: Vec<Comment<'_>>, indent: usize) {
        for c in comments {
            if c.own_line {
                self.start_line(indent, c.blank_before);
                self.cur.comment = Some(c.text.to_string());
                self.finish_line();
            } else if self.cur.code.is_empty() && self.cur.comment.is_none() {
                // A comment after a token that ended the previous line (`}` or `{`).
                match self.lines.last_mut() {
                    Some(l) if l.comment.is_none() && !l.blank => {
                        l.comment = Some(c.text.to_string())
                    }
                    _ => {
                        self.cur.indent = indent;
                        self.cur.comment = Some(c.text.to_string());
                        self.finish_line();
                    }
                }
            } else {
                self.cur.comment = Some(c.text.to_string());
                self.finish_line();
            }
            self.force_break = true;
        }
    }

    fn print(mut self, tokens: &[Token]) -> String {
        let mut prev_end = 0;
        let mut prev_kind = None;
        for t in tokens {
            let (comments, blank_before) = gap(&self.text[prev_end..t.start], prev_end == 0);
            let inline = self.marks.inline_braces.contains(&t.start);
            let line_start = self.marks.line_starts.contains(&t.start);
            let indent = match t.kind {
                Kind::Close if !inline => self.depth,
                _ if line_start => self.depth,
                _ => self.depth + 1,
            };
            self.comments(comments, indent);
            let word = &self.text[t.start..t.end];
            match t.kind {
                Kind::Open if !inline => {
                    if self.cur.code.is_empty() {
                        // A comment stood between the header and its `{`.
                        self.start_line(self.depth + 1, false);
                    }
                    self.append(" ", word);
                    self.depth += 1;
                    self.force_break = true;
                }
                Kind::Close if !inline => {
                    self.depth = self.depth.saturating_sub(1);
                    if prev_kind == Some(Kind::Open) && !self.force_break_from_comment() {
                        self.cur.code.push('}');
                    } else {
                        self.start_line(self.depth, false);
                        self.cur.code.push('}');
                    }
                    self.force_break = false;
                }
                _ => {
                    if line_start || self.force_break || self.cur.code.is_empty() {
                        let indent = if line_start {
                            self.depth
                        } else {
                            self.depth + 1
                        };
                        self.start_line(indent, blank_before);
                        self.cur.code.push_str(word);
                    } else {
                        let sep = match (prev_kind, t.kind) {
                            (_, Kind::LParen | Kind::RParen | Kind::Comma) => "",
                            (Some(Kind::LParen), _) => "",
                            _ if self.marks.peer_starts.contains(&t.start)
                                && prev_kind != Some(Kind::Open) =>
                            {
                                "  "
                            }
                            _ => " ",
                        };
                        self.append(sep, word);
                    }
                    self.force_break = false;
                }
            }
            prev_end = t.end;
            prev_kind = Some(t.kind);
        }
        let (comments, _) = gap(&self.text[prev_end..], prev_end == 0);
        self.comments(comments, 0);
        self.finish_line();
        render(&self.lines)
    }

    /// `{` directly followed by `}`: print `{}` unless a comment stands between them.
    fn force_break_from_comment(&self) -> bool {
        !self.cur.code.ends_with('{')
    }

    fn append(&mut self, sep: &str, word: &str) {
        if !self.cur.code.is_empty() {
            self.cur.code.push_str(sep);
        }
        self.cur.code.push_str(word);
    }
}

/// The width of a line's code as it ends (a raw string may span lines).
fn end_width(line: &Line) -> usize {
    match line.code.rfind('\n') {
        Some(i) => line.code[i + 1..].chars().count(),
        None => line.indent * 2 + line.code.chars().count(),
    }
}

fn render(lines: &[Line]) -> String {
    // Align the trailing comments of each run of consecutive lines at one indentation.
    let mut column = vec![0; lines.len()];
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j < lines.len()
            && !lines[j].blank
            && !lines[j].code.is_empty()
            && lines[j].indent == lines[i].indent
        {
            j += 1;
        }
        if j == i {
            i += 1;
            continue;
        }
        let width = lines[i..j]
            .iter()
            .filter(|l| l.comment.is_some() && !l.code.contains('\n'))
            .map(end_width)
            .max()
            .unwrap_or(0);
        for (k, c) in column.iter_mut().enumerate().take(j).skip(i) {
            *c = if lines[k].code.contains('\n') {
                end_width(&lines[k]) + 2
            } else {
                width + 2
            };
        }
        i = j;
    }
    let mut out = String::new();
    for (k, line) in lines.iter().enumerate() {
        if line.blank {
            out.push('\n');
            continue;
        }
        let mut text = String::new();
        if !line.code.is_empty() {
            text.push_str(&"  ".repeat(line.indent));
            text.push_str(&line.code);
        }
        if let Some(c) = &line.comment {
            if line.code.is_empty() {
                text.push_str(&"  ".repeat(line.indent));
            } else {
                let pad = column[k].saturating_sub(end_width(line)).max(1);
                text.push_str(&" ".repeat(pad));
            }
            text.push_str(c);
        }
        out.push_str(&text);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::format;

    #[track_caller]
    fn fmt(text: &str) -> String {
        let once = format(text).expect("parses");
        assert_eq!(format(&once).unwrap(), once, "not idempotent");
        once
    }

    #[test]
    fn one_line_becomes_the_canonical_layout() {
        let text = r#"playbook "p" { namespace "ns" component api { deployment "a" image "x/api" from 1.4.2 to 1.5.0 } env prod { let t = env( "TOKEN" ) after staging,qa } stage s { rolling api to 1.5.0 timeout 5m restart api } }"#;
        assert_eq!(
            fmt(text),
            r#"playbook "p" {
  namespace "ns"
  component api {
    deployment "a"
    image "x/api"
    from 1.4.2
    to 1.5.0
  }
  env prod {
    let t = env("TOKEN")
    after staging, qa
  }
  stage s {
    rolling api to 1.5.0 timeout 5m
    restart api
  }
}
"#
        );
    }

    #[test]
    fn comments_stay_where_they_were() {
        let text = "# head\n\n\nmatrix m {   # the matrix\n  hub api # hub\n    order api gateway    # order\n\n  # rows\n  api 1.5.x current {gateway 1.4.x - 1.5.x console 1.5.x}\n  # last\n}\n# tail\n";
        assert_eq!(
            fmt(text),
            "# head\n\nmatrix m {  # the matrix\n  hub api            # hub\n  order api gateway  # order\n\n  # rows\n  api 1.5.x current { gateway 1.4.x - 1.5.x  console 1.5.x }\n  # last\n}\n# tail\n"
        );
    }

    #[test]
    fn http_blocks_and_raw_strings() {
        let text = "playbook \"p\" { stage s { guard http POST \"https://a/x\" expect 200 { header \"K\" \"V\" json {\"a\": [1, 2]} expect 409 within 2m } within 1m guard rhai \"\"\"\n  let x = 1;\n    x == 1\n\"\"\" } }";
        assert_eq!(
            fmt(text),
            "playbook \"p\" {\n  stage s {\n    guard http POST \"https://a/x\" expect 200 {\n      header \"K\" \"V\"\n      json {\"a\": [1, 2]}\n      expect 409\n      within 2m\n    } within 1m\n    guard rhai \"\"\"\n  let x = 1;\n    x == 1\n\"\"\"\n  }\n}\n"
        );
    }

    #[test]
    fn empty_blocks_and_mid_statement_comments() {
        let text = "playbook \"p\" { env a {} env b { # nothing yet\n } stage s { rolling api # why\n to 1.5.0 } }";
        assert_eq!(
            fmt(text),
            "playbook \"p\" {\n  env a {}\n  env b {  # nothing yet\n  }\n  stage s {\n    rolling api  # why\n      to 1.5.0\n  }\n}\n"
        );
    }

    #[test]
    fn comments_next_to_braces() {
        let text = "playbook \"p\" { stage s # why\n { rolling api } # after\n}";
        assert_eq!(
            fmt(text),
            "playbook \"p\" {\n  stage s  # why\n    {\n    rolling api\n  }  # after\n}\n"
        );
    }

    #[test]
    fn text_that_does_not_parse_is_refused() {
        assert!(format("playbook \"p\" {").is_err());
        assert!(format(&"{".repeat(100)).is_err());
        assert_eq!(format("").unwrap(), "");
        assert_eq!(format("# only a comment").unwrap(), "# only a comment\n");
    }
}
