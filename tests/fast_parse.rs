//! The fast parser against pest, the grammar of record: on every playbook in the repository it
//! either declines or yields pest's tree with pest's spans, and it accepts every file pest accepts
//! among the shipped playbooks and the ok/warn cases (else `check` silently loses its speed).
//! The fuzz target (`tests/fuzz_check.rs`) holds it to the same on generated and mutated input.

use std::path::{Path, PathBuf};

use ktplay::span::FileId;
use ktplay::syntax::{self, paths};

fn ktplay_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            ktplay_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "ktplay") {
            out.push(path);
        }
    }
}

use paths::agree as agrees;

#[test]
fn fast_path_yields_pests_tree_or_declines_on_every_repository_playbook() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    ktplay_files(&root.join("playbooks"), &mut files);
    ktplay_files(&root.join("tests/cases"), &mut files);
    files.sort();
    assert!(files.len() > 60, "only {} playbooks found", files.len());
    let mut failures = Vec::new();
    let mut not_taken = Vec::new();
    for path in &files {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue; // not UTF-8: refused before parsing
        };
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        match agrees(&text) {
            Err(e) => failures.push(format!("{rel}: {e}")),
            Ok(false) => {
                let must_take = !rel.contains("/err/");
                if must_take && paths::pest(FileId(0), &text).is_ok() {
                    not_taken.push(rel);
                }
            }
            Ok(true) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        not_taken.is_empty(),
        "pest parses these but the fast path declines (add the form to src/syntax/fast.rs): {not_taken:?}"
    );
}

#[test]
fn the_fast_path_declines_every_syntax_error_so_diagnostics_stay_pests() {
    // Each of these is an error of pest or its builder; the fast path must hand every one over.
    let cases = [
        "playbook \"p\" {",
        "playbook \"p\" { stage s { rolling api timeout } }",
        "playbook \"p\" { let s = \"a\\qb\" }",
        "playbook \"p\" { let s = \"${a.b.c}\" }",
        "playbook \"p\" { let s = \"${}\" }",
        "playbook \"p\" { let s = \"${a\" }",
        "playbook \"p\" { let s = \"line\nbreak\" }",
        "playbook \"p\" { stage s { guard http POST \"u\" { json {\"a\": } } } }",
        "playbook \"p\" { stage s { guard http POST \"u\" { json {\"a\": 1 # c\n} } } }",
        "playbook \"p\" { stage s { guard rhai \"${x}\" } }",
        "playbook \"p\" { stage s { rolling Api } }",
        "playbook \"p\" { stage s { guard http GET \"u\" { expect body \"x\" } } }",
        "matrix m { order api 1.5.x current { } }",
        "playbook \"p\" { stage s { rolling api } } }",
        "\u{feff}playbook \"p\" { }",
    ];
    for text in cases {
        let Err(pest) = paths::pest(FileId(0), text) else {
            panic!("pest accepts {text:?}");
        };
        assert!(paths::fast(FileId(0), text).is_none(), "{text:?}");
        // What `check` sees is pest's error, message for message.
        let via_parse = syntax::parse(FileId(0), text).unwrap_err();
        let messages =
            |e: &[syntax::SyntaxError]| e.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        assert_eq!(messages(&via_parse), messages(&pest), "{text:?}");
    }
}

#[test]
fn forms_where_pest_backtracks_into_another_reading_are_left_to_pest() {
    // pest reads `"""x"""` as the strings "", "x" and "" where only plain strings go, and a
    // failed `to revision V` as the option `to` with the name `revision`; the fast path declines.
    let cases = [
        "playbook \"p\" { component api { deployment \"\"\"x\"\"\" } }",
        "playbook \"p\" { stage s { undo api to revision } }",
    ];
    for text in cases {
        assert!(
            paths::pest(FileId(0), text).is_ok(),
            "pest refuses {text:?}"
        );
        assert_eq!(paths::fast(FileId(0), text), None, "{text:?}");
        assert!(syntax::parse(FileId(0), text).is_ok(), "{text:?}");
    }
}

#[test]
fn the_fast_path_follows_pests_choices_where_words_overlap() {
    // Forms where a word is a keyword in one reading and a name or option in another.
    let cases = [
        // `to` as an option of `undo`, not `to revision`.
        "playbook \"p\" { stage s { undo api to 1.5.0 } }",
        "playbook \"p\" { stage s { undo api to revision 3 timeout 1m } }",
        // `env` as a name when no `(` follows.
        "playbook \"p\" { let e = env let f = env(\"X\") }",
        // `expect body` without `contains` after `http … "u"` is `expect` the name `body`.
        "playbook \"p\" { stage s { guard http GET \"u\" expect body } }",
        // Order names stop at a name followed by a scalar: the first row.
        "matrix m { hub api order api gateway\n api 1.5.x current { gateway 1.4.x - 1.5.x } rule adjacent_minor }",
        // Values of every kind, a range without spaces, strings back to back.
        "playbook \"p\" { let a = true let b = trueish let c = \"\"\"raw\"\"\" let d = 1.4.x-1.5.x let e = 10% component x { deployment \"a\"\"b\" } }",
        // Escapes and interpolations merge as the builder merges them.
        "playbook \"p\" { let s = \"a\\n\\t\\\"${x}$y${c.f}\\$\" }",
        // JSON with every kind of value; an option glued to a number.
        "playbook \"p\" { stage s { guard http POST \"u\" { json {\"a\": [1, -2.5e+3, true, null, \"\\u00e9\"], \"b\": {}} json 5timeout 3s } } }",
        // Comments anywhere between tokens, and at the very end.
        "playbook \"p\" { } # trailing comment",
        "# top\nplaybook \"p\" { # a\n stage s { # b\n rolling api # c\n timeout 1m # d\n } # e\n}\n",
    ];
    for text in cases {
        assert!(
            paths::pest(FileId(0), text).is_ok(),
            "pest refuses {text:?}"
        );
        assert_eq!(agrees(text), Ok(true), "{text:?}");
    }
}

#[test]
fn the_fast_path_declines_past_the_nesting_limit_so_pest_refuses_it_as_too_deep() {
    // playbook and stage are two levels; each canary block one more.
    let nested = |canaries: usize| {
        let mut s = String::from("playbook \"p\" { component api { deployment \"a\" } stage s {");
        for _ in 0..canaries {
            s.push_str(" canary api {");
        }
        s.push_str(" guard ready api");
        s.push_str(&" }".repeat(canaries + 2));
        s
    };
    let limit = syntax::MAX_NESTING - 2;
    assert_eq!(agrees(&nested(limit)), Ok(true));
    let deeper = nested(limit + 1);
    assert!(paths::fast(FileId(0), &deeper).is_none());
    let errors = syntax::parse(FileId(0), &deeper).unwrap_err();
    assert!(
        matches!(errors[..], [syntax::SyntaxError::TooDeep { max: 64, .. }]),
        "{errors:?}"
    );
}
