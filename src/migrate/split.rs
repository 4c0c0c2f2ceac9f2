//! PostgreSQL text → statements with their byte ranges: split at the `;` outside quotes,
//! dollar-quoted bodies and comments. Both linters and the database check work per statement,
//! so every finding and every failing query points at its own lines.

/// One statement: its text (without the `;`) and its byte range in the file, blanks and
/// comments around it excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    pub start: usize,
    pub end: usize,
}

impl Stmt {
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        &src[self.start..self.end]
    }
}

/// The statements of `src`; empty ones (`;;`, a file of comments) are left out.
pub fn statements(src: &str) -> Vec<Stmt> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut start = 0;
    // The first byte of the statement that is not a blank or a comment.
    let mut first: Option<usize> = None;
    let mut last_end = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = memchr_or_end(b, i, b'\n');
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // Nested, as PostgreSQL reads them.
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b';' => {
                if let Some(f) = first.take() {
                    out.push(Stmt {
                        start: f,
                        end: last_end,
                    });
                }
                i += 1;
                start = i;
                continue;
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => {}
        }
        first.get_or_insert(i);
        i = match c {
            b'\'' | b'"' => quoted(b, i, c),
            b'$' => dollar(b, i).unwrap_or(i + 1),
            _ => i + 1,
        };
        last_end = i;
    }
    let _ = start;
    if let Some(f) = first {
        out.push(Stmt {
            start: f,
            end: last_end,
        });
    }
    out
}

fn memchr_or_end(b: &[u8], from: usize, c: u8) -> usize {
    b[from..]
        .iter()
        .position(|&x| x == c)
        .map_or(b.len(), |p| from + p)
}

/// Past a `'…'` or `"…"` starting at `i` (a doubled quote stays inside); the end of the text
/// when it is not closed.
fn quoted(b: &[u8], i: usize, q: u8) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// Past a `$tag$…$tag$` starting at `i`; `None` when `$` starts no dollar quote (`$1`).
fn dollar(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        if j == i + 1 && b[j].is_ascii_digit() {
            return None;
        }
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let tag = &b[i..=j];
    let body = j + 1;
    let close = b[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(b.len(), |p| body + p + tag.len());
    Some(close)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<&str> {
        statements(src).iter().map(|s| s.text(src)).collect()
    }

    #[test]
    fn splits_at_semicolons_outside_quotes_comments_and_dollar_bodies() {
        let src = "-- a; comment\nALTER TABLE t ADD c text DEFAULT 'a;b';\n/* x; /* y; */ z; */ SELECT \"a;\" ;\nCREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;;\n  SELECT $1 ";
        assert_eq!(
            texts(src),
            vec![
                "ALTER TABLE t ADD c text DEFAULT 'a;b'",
                "SELECT \"a;\"",
                "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
                "SELECT $1",
            ]
        );
    }

    #[test]
    fn unclosed_quotes_and_comments_end_at_the_end() {
        assert_eq!(texts("SELECT 'abc"), vec!["SELECT 'abc"]);
        assert_eq!(texts("/* never closed ; "), Vec::<&str>::new());
        assert!(texts("  \n -- only\n").is_empty());
    }
}
