//! `ktplay fmt` over every shipped playbook and case file: idempotent, only blanks change (so
//! every comment is kept), the same diagnostics after as before; the shipped playbooks and the ok
//! cases are formatted; the CLI's `--check`, `--diff`, stdin and refusals.

use std::path::{Path, PathBuf};

use ktplay::check::check_text;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ktplay_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            ktplay_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "ktplay") {
            out.push(path.strip_prefix(root()).unwrap().to_path_buf());
        }
    }
    out.sort();
}

fn all_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    ktplay_files(&root().join("playbooks"), &mut files);
    ktplay_files(&root().join("tests/cases"), &mut files);
    files
}

/// The text with every blank removed: equal before and after means only layout changed.
fn squash(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// What `check` says about a text, without positions (formatting moves lines).
fn diagnostics(name: &str, text: &str) -> Vec<(String, String)> {
    let checked = check_text(name, text);
    checked
        .problems
        .iter()
        .map(|p| (p.code(), p.inner.to_string()))
        .collect()
}

#[test]
fn fmt_round_trips_every_shipped_playbook_and_case_file() {
    let mut formatted = 0;
    let mut refused = Vec::new();
    for path in all_files() {
        let Ok(text) = std::fs::read_to_string(root().join(&path)) else {
            refused.push(path);
            continue;
        };
        let name = path.display().to_string();
        let Ok(once) = ktplay::fmt::format(&text) else {
            // Only files with syntax errors are refused, and `check` says so.
            let codes = diagnostics(&name, &text);
            assert!(
                codes.iter().any(|(c, _)| c.starts_with("ktplay::syntax::")),
                "{name} was refused but has no syntax error: {codes:?}"
            );
            refused.push(path);
            continue;
        };
        let twice = ktplay::fmt::format(&once).expect("formatted text parses");
        assert_eq!(twice, once, "{name}: formatting is not idempotent");
        assert_eq!(
            squash(&once),
            squash(&text),
            "{name}: more than blanks changed"
        );
        let comments = |t: &str| t.matches('#').count();
        assert_eq!(
            comments(&once),
            comments(&text),
            "{name}: a comment was lost"
        );
        assert_eq!(
            diagnostics(&name, &once),
            diagnostics(&name, &text),
            "{name}: the formatted file checks differently"
        );
        formatted += 1;
    }
    assert!(formatted > 70, "formatted only {formatted} files");
    // The refused ones are exactly the syntax-error cases that pest rejects.
    let refused: Vec<String> = refused
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        refused,
        [
            "not_utf8.ktplay",
            "too_deep.ktplay",
            "unclosed_block.ktplay",
            "unclosed_string.ktplay",
            "unexpected_token.ktplay",
            "uppercase_name.ktplay"
        ],
    );
}

#[test]
fn shipped_playbooks_and_ok_cases_are_formatted() {
    let mut files = Vec::new();
    ktplay_files(&root().join("playbooks"), &mut files);
    ktplay_files(&root().join("tests/cases/check/ok"), &mut files);
    assert!(files.len() >= 10);
    for path in files {
        let text = std::fs::read_to_string(root().join(&path)).unwrap();
        let formatted = ktplay::fmt::format(&text).unwrap();
        assert!(
            formatted == text,
            "{} is not formatted: run `ktplay fmt {}`",
            path.display(),
            path.display()
        );
    }
}

fn ktplay() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("ktplay").unwrap();
    cmd.env("NO_COLOR", "1");
    cmd
}

const UGLY: &str = "playbook \"p\" { namespace \"ns\"   # where\n component api { deployment \"a\" image \"x/api\" from 1.4.2 to 1.5.0 }\n stage s { rolling api } }\n";
const PRETTY: &str = "playbook \"p\" {\n  namespace \"ns\"  # where\n  component api {\n    deployment \"a\"\n    image \"x/api\"\n    from 1.4.2\n    to 1.5.0\n  }\n  stage s {\n    rolling api\n  }\n}\n";

#[test]
fn fmt_check_lists_the_files_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ugly = dir.path().join("ugly.ktplay");
    let pretty = dir.path().join("pretty.ktplay");
    std::fs::write(&ugly, UGLY).unwrap();
    std::fs::write(&pretty, PRETTY).unwrap();
    let out = ktplay()
        .args(["fmt", "--check"])
        .arg(dir.path())
        .assert()
        .code(1);
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        format!("{}\n", ugly.display())
    );
    assert!(
        String::from_utf8_lossy(&out.get_output().stderr).contains("1 of 2 files not formatted")
    );
    assert_eq!(
        std::fs::read_to_string(&ugly).unwrap(),
        UGLY,
        "--check wrote"
    );

    let out = ktplay().args(["fmt", "--diff"]).arg(&ugly).assert().code(1);
    let diff = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(diff.contains("+  namespace \"ns\"  # where\n"), "{diff}");
    assert!(diff.contains("-playbook \"p\" { namespace"), "{diff}");
    assert_eq!(
        std::fs::read_to_string(&ugly).unwrap(),
        UGLY,
        "--diff wrote"
    );

    let out = ktplay().arg("fmt").arg(dir.path()).assert().success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        format!("formatted {}\n", ugly.display())
    );
    assert_eq!(std::fs::read_to_string(&ugly).unwrap(), PRETTY);
    assert_eq!(std::fs::read_to_string(&pretty).unwrap(), PRETTY);
    ktplay()
        .args(["fmt", "--check"])
        .arg(dir.path())
        .assert()
        .success();
}

#[test]
fn fmt_reads_stdin_for_editors() {
    let out = ktplay()
        .args(["fmt", "-"])
        .write_stdin(UGLY)
        .assert()
        .success();
    assert_eq!(String::from_utf8_lossy(&out.get_output().stdout), PRETTY);
    ktplay()
        .args(["fmt", "--check", "-"])
        .write_stdin(PRETTY)
        .assert()
        .success();
    ktplay()
        .args(["fmt", "--check", "-"])
        .write_stdin(UGLY)
        .assert()
        .code(1);
}

#[test]
fn fmt_refuses_a_file_with_syntax_errors_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ktplay");
    let text = "playbook \"p\" {\n  stage s {\n    rolling api timout 5m\n  }\n}\n";
    std::fs::write(&bad, text).unwrap();
    let out = ktplay().arg("fmt").arg(&bad).assert().code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("ktplay::syntax::unexpected"), "{err}");
    assert!(err.contains("found `timout`"), "{err}");
    assert!(
        err.contains("failed: 1 file not formatted (syntax errors)"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), text);

    ktplay()
        .args(["fmt", "/nonexistent/x.ktplay"])
        .assert()
        .code(2);
}

// ------------------------------------------------------------------ any layout in, one layout out

/// The byte ranges between the tokens of `text` (leaves of the parse tree).
fn gaps(text: &str) -> Vec<(usize, usize)> {
    fn leaves(n: &ktplay::syntax::LayoutNode, out: &mut Vec<(usize, usize)>) {
        if n.children.is_empty() && n.rule != "file" {
            if n.start < n.end {
                out.push((n.start, n.end));
            }
        } else {
            n.children.iter().for_each(|c| leaves(c, out));
        }
    }
    let tree = ktplay::syntax::layout_tree(text).expect("parses");
    let mut tokens = Vec::new();
    leaves(&tree, &mut tokens);
    tokens.windows(2).map(|w| (w[0].1, w[1].0)).collect()
}

/// `text` with the gaps between tokens rewritten by `pick` (gaps holding a comment or a blank
/// line are kept, so the comments and blank lines stay).
fn relayout(text: &str, choices: &[u8], pick: impl Fn(u8) -> &'static str) -> String {
    let mut out = String::new();
    let mut last = 0;
    for (i, (s, e)) in gaps(text).into_iter().enumerate() {
        let gap = &text[s..e];
        if gap.is_empty() || gap.contains('#') || gap.matches('\n').count() > 1 {
            continue;
        }
        out.push_str(&text[last..s]);
        out.push_str(pick(choices[i % choices.len()]));
        last = e;
    }
    out.push_str(&text[last..]);
    out
}

fn formatted_corpus() -> Vec<(String, String)> {
    let mut files = Vec::new();
    ktplay_files(&root().join("playbooks"), &mut files);
    ktplay_files(&root().join("tests/cases/check/ok"), &mut files);
    ktplay_files(&root().join("tests/cases/check/warn"), &mut files);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(root().join(&p)).unwrap();
            (p.display().to_string(), text)
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever the blanks between tokens, the layout is the same one.
    #[test]
    fn any_spacing_gives_the_one_layout(choices in proptest::collection::vec(0u8..4, 1..64)) {
        let mut changed = 0;
        for (name, text) in formatted_corpus() {
            let spaced = relayout(&text, &choices, |c| [" ", "\n", "\t  ", " \n  "][c as usize]);
            changed += usize::from(spaced != text);
            let expected = ktplay::fmt::format(&text).unwrap();
            let got = ktplay::fmt::format(&spaced).expect("still parses");
            proptest::prop_assert_eq!(got, expected, "{}", name);
        }
        proptest::prop_assert!(changed > 10, "the relayout changed only {} files", changed);
    }

    /// Comments anywhere between tokens: kept, idempotent, and the file checks the same.
    #[test]
    fn comments_anywhere_are_kept(choices in proptest::collection::vec(0u8..5, 1..64)) {
        for (name, text) in formatted_corpus() {
            let commented = relayout(&text, &choices, |c| {
                [" ", "  # after\n", "\n# before\n", "\n", " # x, y: {z}\n  "][c as usize]
            });
            let once = ktplay::fmt::format(&commented).expect("still parses");
            proptest::prop_assert_eq!(ktplay::fmt::format(&once).unwrap(), once.clone(), "{}", name);
            proptest::prop_assert_eq!(squash(&once), squash(&commented), "{}", name);
            proptest::prop_assert_eq!(
                once.matches('#').count(),
                commented.matches('#').count(),
                "{}", name
            );
            proptest::prop_assert_eq!(diagnostics(&name, &once), diagnostics(&name, &text), "{}", name);
        }
    }
}
