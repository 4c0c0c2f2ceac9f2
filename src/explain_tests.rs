//! Unit tests of [`crate::explain`]: every entry's shape and examples.

use super::*;

#[test]
fn codes_are_unique_and_found_by_every_spelling() {
    let mut seen = std::collections::BTreeSet::new();
    for e in ENTRIES {
        assert!(seen.insert(e.code), "{} twice", e.code);
        assert_eq!(find(e.code).unwrap().code, e.code);
        assert_eq!(find(e.short()).unwrap().code, e.code);
    }
    assert_eq!(
        find("unknown_component").unwrap().code,
        "ktplay::check::unknown_component"
    );
    // `syntax` is both a family and the name of `script::syntax`; only full spellings find it.
    assert!(find("nonsense").is_none());
}

#[test]
fn entries_are_complete() {
    for e in ENTRIES {
        assert!(!e.summary.is_empty() && !e.meaning.is_empty(), "{}", e.code);
        assert_ne!(
            e.failing, e.fixed,
            "{}: the fixed example must differ",
            e.code
        );
        let text = e.render();
        assert!(text.contains("Failing example") && text.contains("Fixed:"));
    }
}
