//! What a cluster object (a Lease's holder, a journal's fields and lines) says is hostile input:
//! it is printed through [`shown`], never raw, so a value cannot move the cursor, clear the
//! terminal, hide text behind a bidirectional override or flood the screen.

/// Most characters of one cluster-supplied value that are printed.
pub(crate) const SHOWN_MAX: usize = 160;

/// `s` safe to print: control characters (C0, DEL, C1) and invisible or reordering format
/// characters escaped as `\u{…}` (a tab, a line break, an escape and a carriage return as `\t`,
/// `\n`, `\e`, `\r`), cut to [`SHOWN_MAX`] characters with `…`.
pub(crate) fn shown(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == SHOWN_MAX {
            out.push('…');
            break;
        }
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\\' => out.push_str("\\\\"),
            c if hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Characters that move, hide or reorder what a terminal shows.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{2069}' // word joiner, invisible operators, isolates
            | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_moves_the_terminal() {
        assert_eq!(shown("ops@ci pid 7 run ab12"), "ops@ci pid 7 run ab12");
        assert_eq!(
            shown("x\u{1b}[2J\u{1b}[H\rok\n\u{7}\u{9b}1m\u{202e}y\\"),
            "x\\e[2J\\e[H\\rok\\n\\u{7}\\u{9b}1m\\u{202e}y\\\\"
        );
        let long = "a".repeat(1000);
        assert_eq!(shown(&long).chars().count(), SHOWN_MAX + 1);
        assert!(shown(&long).ends_with('…'));
        assert_eq!(shown("café ✓"), "café ✓");
    }
}
