//! Keeping secrets (`env("VAR")` lets) out of everything ktplay prints, journals or reports.
//!
//! [`Redactor::redact`] replaces every occurrence of a secret by `(secret)` in one pass over the
//! text (so a mask is never masked again, and a short secret cannot reveal itself through nested
//! masks), and it knows the forms a server may echo a secret in: JSON-escaped (`"` → `\"`,
//! `\` → `\\`) and URL-encoded (`%2F`, `+` for space, either case of hex digits). Callers redact
//! whole texts *before* cutting them to a length, so a cut can never leave a prefix behind.
//!
//! [`normalize_secret`] refuses values that cannot be masked safely (shorter than
//! [`MIN_SECRET_LEN`]: masking `1` would mask every `1` of the output) or cannot be sent in a
//! header at all (control characters), and drops one trailing line break (`$(cat token)` keeps
//! none; a file written by an editor often ends in one).

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};

/// The shortest secret ktplay accepts.
pub const MIN_SECRET_LEN: usize = 8;

/// Replaces every secret value, and its encoded forms, by `(secret)`.
#[derive(Clone, Default)]
pub struct Redactor {
    matcher: Option<Arc<AhoCorasick>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor(..)")
    }
}

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut patterns: Vec<String> = Vec::new();
        for v in values.into_iter().filter(|s| !s.is_empty()) {
            patterns.extend(encoded_forms(&v));
            patterns.push(v);
        }
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return Redactor::default();
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok()
            .map(Arc::new);
        Redactor { matcher }
    }

    /// `text` with every secret (in any known form) replaced by `(secret)`.
    pub fn redact(&self, text: &str) -> String {
        match &self.matcher {
            Some(m) => {
                let n = m.patterns_len();
                m.replace_all(text, &vec!["(secret)"; n])
            }
            None => text.to_string(),
        }
    }

    /// Redact, then keep at most `max` characters (with `…` when cut).
    pub fn redact_cut(&self, text: &str, max: usize) -> String {
        let clean = self.redact(text);
        if clean.chars().count() <= max {
            clean
        } else {
            let mut s: String = clean.chars().take(max).collect();
            s.push('…');
            s
        }
    }
}

/// How a server may echo `secret` back: JSON-escaped and URL-encoded.
fn encoded_forms(secret: &str) -> Vec<String> {
    let mut out = Vec::new();
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(&json)
        .to_string();
    // Some encoders also escape `/`, and non-ASCII as \uXXXX.
    let ascii = |j: &str| -> String {
        j.chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else {
                    let mut buf = [0u16; 2];
                    c.encode_utf16(&mut buf)
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect()
                }
            })
            .collect()
    };
    let json_slash = json.replace('/', "\\/");
    let json_ascii = ascii(&json);
    let json_both = ascii(&json_slash);
    let strict = percent(secret, false, true);
    let strict_lower = percent(secret, false, false);
    let form = percent(secret, true, true);
    let form_lower = percent(secret, true, false);
    for f in [
        json,
        json_slash,
        json_ascii,
        json_both,
        strict,
        strict_lower,
        form,
        form_lower,
    ] {
        if f != secret && !f.is_empty() {
            out.push(f);
        }
    }
    out
}

/// Percent-encode everything but RFC 3986's unreserved characters; `form`: space as `+`.
fn percent(s: &str, form: bool, upper: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' if form => out.push('+'),
            _ if upper => out.push_str(&format!("%{b:02X}")),
            _ => out.push_str(&format!("%{b:02x}")),
        }
    }
    out
}

/// The value of the secret `var` as it will be sent, or why it cannot be used.
pub fn normalize_secret(var: &str, value: &str) -> Result<String, String> {
    let v = value
        .strip_suffix("\r\n")
        .or_else(|| value.strip_suffix('\n'))
        .unwrap_or(value);
    if v.chars().any(|c| c.is_control()) {
        return Err(format!(
            "the secret in `{var}` contains a line break or another control character, which no HTTP header can carry; remove it (one trailing line break is dropped already)"
        ));
    }
    let n = v.chars().count();
    if n < MIN_SECRET_LEN {
        return Err(format!(
            "the secret in `{var}` is {n} character{} long; secrets shorter than {MIN_SECRET_LEN} characters cannot be masked safely in output (every occurrence of that text would be hidden, which reveals it), so they are refused",
            if n == 1 { "" } else { "s" }
        ));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_longest_first_and_never_masks_a_mask() {
        let r = Redactor::new(["abcdefgh".to_string(), "abcdefghij".to_string()]);
        assert_eq!(r.redact("x abcdefghij y abcdefgh"), "x (secret) y (secret)");
        // One pass: a mask is never part of another match.
        let r = Redactor::new(["abcdefgh".to_string(), "(secret) abc".to_string()]);
        assert_eq!(r.redact("abcdefgh abc"), "(secret) abc");
    }

    #[test]
    fn encoded_echoes_are_masked() {
        let secret = r#"sek"ret\ADMIN/ä x"#;
        let r = Redactor::new([secret.to_string()]);
        let json = serde_json::json!({ "auth": format!("Bearer {secret}") }).to_string();
        assert_eq!(r.redact(&json), r#"{"auth":"Bearer (secret)"}"#);
        assert_eq!(
            r.redact("q=sek%22ret%5CADMIN%2F%C3%A4+x&p=sek%22ret%5CADMIN%2F%C3%A4%20x"),
            "q=(secret)&p=(secret)"
        );
        assert_eq!(r.redact("sek%22ret%5cadmin%2f"), "sek%22ret%5cadmin%2f");
        assert_eq!(r.redact(r#"sek\"ret\\ADMIN\/\u00e4 x"#), "(secret)");
    }

    #[test]
    fn cut_after_redaction_leaves_no_prefix() {
        let r = Redactor::new(["sekret-ADMIN-token".to_string()]);
        let text = format!("{}Bearer sekret-ADMIN-token and more", "x".repeat(190));
        let cut = r.redact_cut(&text, 200);
        assert!(!cut.contains("sekret"), "{cut}");
    }

    #[test]
    fn unsafe_secrets_are_refused_and_a_trailing_newline_dropped() {
        assert!(normalize_secret("TEST_KEY", "1")
            .unwrap_err()
            .contains("1 character long"));
        assert!(normalize_secret("T", "a\nbcdefghij").is_err());
        assert_eq!(normalize_secret("T", "abcdefghij\n").unwrap(), "abcdefghij");
        assert_eq!(
            normalize_secret("T", "abcdefghij\r\n").unwrap(),
            "abcdefghij"
        );
    }
}
