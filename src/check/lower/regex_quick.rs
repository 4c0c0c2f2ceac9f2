//! A quick proof that a regex compiles, for the patterns guards and PromQL matchers usually hold.
//!
//! `regex_syntax::Parser::parse` costs about 50,000 instructions for `migrations? (applied|complete)`
//! (it builds the syntax tree, then translates it), 8% of checking a playbook with one `logs`
//! guard. Most patterns are literals, `.`, alternations, groups and the three simple quantifiers;
//! for those, [`surely_valid`] answers in one pass. It never says a pattern is invalid: anything
//! else (classes, counted repetition, flags, named groups, other escapes, non-ASCII) goes to
//! `regex_syntax` as before. A property test holds it to `regex_syntax` on generated patterns.

/// `true` only if `regex_syntax` (so the `regex` crate the runner uses) accepts `pattern`;
/// `false` means "not known here", not "invalid".
pub(crate) fn surely_valid(pattern: &str) -> bool {
    // What the previous token was, for where a quantifier may go.
    #[derive(PartialEq)]
    enum Prev {
        /// Start, `(` or `|`: nothing to repeat.
        Nothing,
        /// A literal, `.`, an escape or a closed group: repeatable.
        Atom,
        /// A quantifier (`a*`), which a lazy `?` may follow once.
        Quantifier,
        /// A lazy quantifier (`a*?`): nothing more may follow as a quantifier.
        Lazy,
        /// `^` or `$`.
        Anchor,
    }
    if pattern.len() > 1000 {
        return false;
    }
    let s = pattern.as_bytes();
    let mut depth = 0usize;
    let mut prev = Prev::Nothing;
    let mut i = 0;
    while i < s.len() {
        prev = match s[i] {
            // `(?` opens flags or a named group.
            b'(' if s.get(i + 1) == Some(&b'?') => return false,
            b'(' => {
                depth += 1;
                if depth > 50 {
                    return false;
                }
                Prev::Nothing
            }
            b')' => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
                Prev::Atom
            }
            b'|' => Prev::Nothing,
            q @ (b'*' | b'+' | b'?') => match prev {
                Prev::Atom => Prev::Quantifier,
                Prev::Quantifier if q == b'?' => Prev::Lazy,
                _ => return false,
            },
            b'^' | b'$' => Prev::Anchor,
            b'\\' => {
                i += 1;
                match s.get(i) {
                    Some(
                        b'.' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'|' | b'?' | b'*' | b'+'
                        | b'^' | b'$' | b'\\' | b'-' | b'/' | b'd' | b'D' | b's' | b'S' | b'w'
                        | b'W',
                    ) => Prev::Atom,
                    _ => return false,
                }
            }
            // Classes and counted repetition are left to `regex_syntax`, as is all but printable
            // ASCII.
            b'[' | b']' | b'{' | b'}' => return false,
            b' '..=b'~' => Prev::Atom,
            _ => return false,
        };
        i += 1;
    }
    depth == 0
}

#[cfg(test)]
mod tests {
    use super::surely_valid;
    use proptest::prelude::*;

    fn full(p: &str) -> bool {
        regex_syntax::Parser::new().parse(p).is_ok()
    }

    #[test]
    fn the_usual_patterns_are_known() {
        for p in [
            "migrations? (applied|complete)",
            "5..",
            "ready",
            "^started in \\d+ms$",
            "(GET|POST) /v1/.*",
            "a+?b*?c??",
            "()",
            "a|",
            "",
        ] {
            assert!(surely_valid(p), "{p}");
            assert!(full(p), "{p}");
        }
    }

    #[test]
    fn invalid_patterns_are_not_called_valid() {
        for p in ["(", ")", "a)", "(a", "*a", "a|*", "(*)", "\\q", "\\", "a\\"] {
            assert!(!full(p), "{p} is valid after all");
            assert!(!surely_valid(p), "{p}");
        }
    }

    #[test]
    fn valid_patterns_outside_the_subset_go_to_regex_syntax() {
        for p in [
            "(?i)a",
            "(?P<x>a)",
            "[a-z]",
            "a{2}",
            "\\p{Greek}",
            "é",
            "\\b",
            "a\tb",
            "^*",
        ] {
            assert!(full(p), "{p} is invalid after all");
            assert!(!surely_valid(p), "{p}");
        }
    }

    fn pattern() -> impl Strategy<Value = String> {
        // The characters the quick check reasons about, plus a few it declines.
        let atoms = prop::sample::select(vec![
            "a", "b", "5", " ", ".", "(", ")", "|", "*", "+", "?", "^", "$", "\\d", "\\.", "\\s",
            "\\", "[", "]", "{", "}", "(?", "é", "-", "/", ":",
        ]);
        prop::collection::vec(atoms, 0..14).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Soundness: whatever the quick check accepts, `regex_syntax` accepts.
        #[test]
        fn quick_valid_implies_regex_syntax_valid(p in pattern()) {
            if surely_valid(&p) {
                prop_assert!(full(&p), "quick check accepted {:?}, regex_syntax refuses it", p);
            }
        }
    }
}
