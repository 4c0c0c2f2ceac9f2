//! Keeping secrets (`env("VAR")` lets) out of everything ktplay prints, journals or reports.
//!
//! [`Redactor::redact`] replaces every occurrence of a secret by `(secret)` in one pass over the
//! text (so a mask is never masked again, and a short secret cannot reveal itself through nested
//! masks), and it knows the forms a server may echo a secret in: JSON-escaped (`"` → `\"`,
//! `\` → `\\`) and URL-encoded (`%2F`, `+` for space, either case of hex digits), fully
//! percent-encoded (every byte `%XX`), hex (either case) and base64 (standard and URL-safe, with
//! or without padding, and at each of the three alignments a secret can have inside a longer
//! base64 text, such as `Basic` credentials: the characters that depend on the secret alone).
//! Callers redact whole texts *before* cutting them to a length, so a cut can never leave a
//! prefix behind; [`Redactor::redact_cut`] does both in that order.
//!
//! [`normalize_secret`] refuses values that cannot be masked safely (shorter than
//! [`MIN_SECRET_LEN`]: masking `1` would mask every `1` of the output) or cannot be sent in a
//! header at all (control characters), and drops one trailing line break (`$(cat token)` keeps
//! none; a file written by an editor often ends in one).

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};

/// The shortest secret ktplay accepts.
pub(crate) const MIN_SECRET_LEN: usize = 8;

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

impl Redactor {
    /// `text` with every secret (in any known form) replaced by as many `*` as it has bytes:
    /// offsets into the text stay true (diagnostic excerpts map labels by offset).
    pub fn mask(&self, text: &str) -> String {
        let Some(m) = &self.matcher else {
            return text.to_string();
        };
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for found in m.find_iter(text) {
            out.push_str(&text[last..found.start()]);
            out.extend(std::iter::repeat_n('*', found.end() - found.start()));
            last = found.end();
        }
        out.push_str(&text[last..]);
        out
    }

    /// Whether there is anything to mask.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }
}

/// Environment variables named by `env("VAR")` lets of the playbooks read in this process.
static SECRET_VARS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Note that a playbook reads a secret from `var` ([`for_output`] masks its value).
pub(crate) fn note_secret_var(var: &str) {
    if let Ok(mut v) = SECRET_VARS.lock() {
        if !v.iter().any(|x| x == var) {
            v.push(var.to_string());
        }
    }
}

/// Does an environment variable's name say it holds a secret?
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "AUTH",
        "PRIVATE",
        "SESSION",
        "COOKIE",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// The redactor of what `check`, `plan` and `test` print about files (excerpts, messages): the
/// values of the environment variables the playbooks read secrets from, and of every variable
/// whose name says it is a secret (`*TOKEN*`, `*KEY*`, `*PASSWORD*`, …), when at least
/// [`MIN_SECRET_LEN`] characters long. Rebuilt only when another secret variable was noted.
pub(crate) fn for_output() -> Redactor {
    static CACHE: std::sync::Mutex<Option<(usize, Redactor)>> = std::sync::Mutex::new(None);
    let vars: Vec<String> = SECRET_VARS.lock().map(|v| v.clone()).unwrap_or_default();
    if let Ok(c) = CACHE.lock() {
        if let Some((n, r)) = c.as_ref() {
            if *n == vars.len() {
                return r.clone();
            }
        }
    }
    let values = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| secret_name(k) || vars.contains(k))
        .map(|(_, v)| v)
        .filter(|v| v.trim().chars().count() >= MIN_SECRET_LEN)
        .flat_map(|v| {
            let trimmed = v.trim_end_matches(['\r', '\n']).to_string();
            [v, trimmed]
        });
    let r = Redactor::new(values);
    if let Ok(mut c) = CACHE.lock() {
        *c = Some((vars.len(), r.clone()));
    }
    r
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
    let all_upper = percent_all(secret, true);
    let all_lower = percent_all(secret, false);
    let hex_lower = hex::encode(secret.as_bytes());
    let hex_upper = hex_lower.to_ascii_uppercase();
    for f in [
        json,
        json_slash,
        json_ascii,
        json_both,
        strict,
        strict_lower,
        form,
        form_lower,
        all_upper,
        all_lower,
        hex_lower,
        hex_upper,
    ] {
        if f != secret && !f.is_empty() {
            out.push(f);
        }
    }
    for alphabet in [B64_STD, B64_URL] {
        out.extend(base64_forms(secret.as_bytes(), alphabet));
    }
    out
}

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 of `bytes` (no padding).
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// How `secret` reads in base64: whole (with and without `=` padding), and at each alignment
/// inside a longer text, the characters that depend on the secret's bits alone.
fn base64_forms(secret: &[u8], alphabet: &[u8; 64]) -> Vec<String> {
    let whole = base64(secret, alphabet);
    let mut out = vec![format!("{whole}{}", "=".repeat((4 - whole.len() % 4) % 4))];
    out.push(whole);
    for lead in 0..3usize {
        let mut padded = vec![0u8; lead];
        padded.extend_from_slice(secret);
        let text = base64(&padded, alphabet);
        // Character i covers bits [6i, 6i + 6); the secret's bits are [8 lead, 8 (lead + n)).
        let first = (8 * lead).div_ceil(6);
        let last = (8 * (lead + secret.len())) / 6; // exclusive
        if last > first + 4 {
            out.push(text[first..last].to_string());
        }
    }
    out
}

/// Every byte as `%XX` (a fully percent-encoded echo).
fn percent_all(s: &str, upper: bool) -> String {
    s.bytes()
        .map(|b| {
            if upper {
                format!("%{b:02X}")
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
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
pub(crate) fn normalize_secret(var: &str, value: &str) -> Result<String, String> {
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
    fn base64_hex_and_fully_percent_encoded_echoes_are_masked() {
        use base64::Engine;
        let secret = "sekret-PR-token-42";
        let r = Redactor::new([secret.to_string()]);
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for e in engines {
            // Alone, and inside longer encoded texts at every alignment (`Basic user:secret`).
            for prefix in ["", "u:", "us:", "use:", "admin:"] {
                for suffix in ["", "!", "!!", "!!!"] {
                    let enc = e.encode(format!("{prefix}{secret}{suffix}"));
                    let shown = r.redact(&format!("Authorization: Basic {enc}"));
                    assert!(shown.contains("(secret)"), "{prefix}|{suffix}: {shown}");
                    // What is left is the encoding of what surrounds the secret, and at most a
                    // character at either end that mixes its bits with theirs (and padding).
                    let left: usize = shown
                        .trim_start_matches("Authorization: Basic ")
                        .split("(secret)")
                        .map(str::len)
                        .sum();
                    let around = (prefix.len() + suffix.len()) * 4 / 3 + 6;
                    assert!(left <= around, "{prefix}|{suffix}: {shown}");
                }
            }
        }
        let hex = "73656b7265742d50522d746f6b656e2d3432";
        assert_eq!(r.redact(&format!("x{hex}y")), "x(secret)y");
        assert_eq!(r.redact(&hex.to_ascii_uppercase()), "(secret)");
        let all: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(r.redact(&format!("token={all}")), "token=(secret)");
        assert_eq!(r.redact(&all.to_ascii_lowercase()), "(secret)");
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
