//! `check` end to end: case files (snapshotted), the shipped playbooks, hostile input, and the
//! CLI's exit codes and JSON output through the real binary.

use std::path::{Path, PathBuf};

use ktplay::check::{check_paths, check_text, Checked};
use ktplay::diag::{render, RenderOptions};

/// Paths relative to the crate root, so snapshots name files the same way on every machine.
fn relative(path: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

fn check_case(path: &Path) -> (Checked, String) {
    let checked = check_paths(&[relative(path)]).expect("case files are readable");
    let out = render(&checked.sources, &checked.problems, RenderOptions::plain());
    (checked, out)
}

#[test]
fn err_cases_fail_with_a_diagnostic() {
    insta::glob!("cases/check/err/*.ktplay", |path| {
        let (checked, out) = check_case(path);
        assert!(
            checked.errors() > 0,
            "{} should fail but passed:\n{out}",
            path.display()
        );
        insta::assert_snapshot!(out);
    });
}

#[test]
fn warn_cases_pass_with_a_warning() {
    insta::glob!("cases/check/warn/*.ktplay", |path| {
        let (checked, out) = check_case(path);
        assert_eq!(
            checked.errors(),
            0,
            "{} should have no errors:\n{out}",
            path.display()
        );
        assert!(checked.warnings() > 0, "{} should warn", path.display());
        insta::assert_snapshot!(out);
    });
}

#[test]
fn ok_cases_pass() {
    insta::glob!("cases/check/ok/*.ktplay", |path| {
        let (checked, out) = check_case(path);
        assert_eq!(
            checked.errors(),
            0,
            "{} should pass:\n{out}",
            path.display()
        );
        assert!(
            !checked.playbooks.is_empty(),
            "{} has a playbook",
            path.display()
        );
    });
}

#[test]
fn shipped_playbooks_pass_cleanly() {
    let mut n = 0;
    insta::glob!("../playbooks", "*.ktplay", |path| {
        let (checked, out) = check_case(path);
        assert!(
            checked.problems.is_empty(),
            "{} is not clean:\n{out}",
            path.display()
        );
        n += 1;
    });
    assert!(n >= 4, "expected the four seed playbooks, found {n}");
}

/// Every diagnostic code declared in the source has a case file that produces it.
#[test]
fn every_code_has_a_case() {
    let mut declared = std::collections::BTreeSet::new();
    let re =
        // `code(` may end its line (rustfmt), and names may hold digits (`invalid_k8s_name`).
        regex::Regex::new(r"code\(\s*(ktplay::(?:syntax|check|compat|script|migrations)::[a-z0-9_]+)\s*\)")
            .unwrap();
    for dir in [
        "src/syntax",
        "src/check",
        "src/model",
        "src/script",
        "src/migrate",
        "src",
    ] {
        for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for c in re.captures_iter(&text) {
                    declared.insert(c[1].to_string());
                }
            }
        }
    }
    assert!(declared.len() > 20, "found only {declared:?}");
    let mut produced = std::collections::BTreeSet::new();
    for sub in ["err", "warn"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/cases/check")
            .join(sub);
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "ktplay") {
                continue;
            }
            let (checked, _) = check_case(&path);
            for p in &checked.problems {
                produced.insert(p.code());
            }
        }
    }
    let missing: Vec<_> = declared.difference(&produced).collect();
    assert!(missing.is_empty(), "codes without a case file: {missing:?}");
}

// ------------------------------------------------------------------ hostile input

fn assert_clean_failure(name: &str, bytes: &[u8]) -> Checked {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let checked = check_paths(&[path]).expect("readable");
    let out = render(&checked.sources, &checked.problems, RenderOptions::plain());
    assert!(
        checked.errors() > 0 || bytes.iter().all(|b| b.is_ascii_whitespace()),
        "{name}: expected a diagnostic"
    );
    assert!(!out.is_empty() || checked.problems.is_empty());
    checked
}

#[test]
fn empty_file_is_a_warning_not_a_crash() {
    let c = check_text("empty.ktplay", "");
    assert_eq!(c.errors(), 0);
    assert_eq!(c.problems[0].code(), "ktplay::check::empty_file");
}

#[test]
fn not_utf8_is_reported_with_the_offset() {
    let c = assert_clean_failure("latin1.ktplay", b"playbook \"caf\xe9\" {}");
    assert_eq!(c.problems[0].code(), "ktplay::syntax::not_utf8");
    assert!(
        c.problems[0].inner.to_string().contains("offset 13"),
        "{}",
        c.problems[0].inner
    );
}

#[test]
fn ten_thousand_nested_braces_do_not_overflow_the_stack() {
    let text = format!(
        "playbook \"x\" {}{}",
        "{".repeat(10_000),
        "}".repeat(10_000)
    );
    let c = check_text("deep.ktplay", &text);
    assert_eq!(c.problems[0].code(), "ktplay::syntax::too_deep");
    let text = format!(
        "playbook \"x\" {{ stage s {{ guard http POST \"https://a\" {{ json {} expect 200 }} }} }}",
        "[".repeat(10_000)
    );
    let c = check_text("deep-json.ktplay", &text);
    assert_eq!(c.problems[0].code(), "ktplay::syntax::too_deep");
}

#[test]
fn a_five_megabyte_file_gets_a_diagnostic() {
    // Valid content repeated: a 5 MB playbook with thousands of duplicate stages.
    let mut text = String::from("playbook \"big\" {\n  component api { deployment \"a\" image \"i\" from 1.0.0 to 1.1.0 }\n");
    let mut i = 0;
    while text.len() < 5 * 1024 * 1024 {
        text.push_str(&format!(
            "  stage s{} {{ rolling api timeout 1m guard ready api }}\n",
            i % 50_000
        ));
        i += 1;
    }
    text.push_str("}\n");
    let c = check_text("big.ktplay", &text);
    assert!(c.errors() > 0, "duplicates expected");
    assert!(c
        .problems
        .iter()
        .all(|p| p.code() == "ktplay::check::duplicate"));
    // Garbage of the same size: one syntax error, not five million.
    let garbage: String = (0..5 * 1024 * 1024)
        .map(|i| (b'!' + (i % 90) as u8) as char)
        .collect();
    let c = check_text("garbage.ktplay", &garbage);
    assert_eq!(c.problems.len(), 1);
    assert_eq!(c.problems[0].code(), "ktplay::syntax::unexpected");
}

#[test]
fn arbitrary_bytes_never_panic() {
    use proptest::prelude::*;
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 512,
        ..Default::default()
    });
    // Bytes biased towards the language's own tokens so the parser gets deep.
    let token = prop_oneof![
        Just("playbook \"p\" {".to_string()),
        Just("stage s {".to_string()),
        Just("component api {".to_string()),
        Just("}".to_string()),
        Just("rolling api".to_string()),
        Just("guard http GET \"${u}\" expect 200".to_string()),
        Just("json {\"a\": [1, {\"b\": null}]}".to_string()),
        Just("\"\"\"".to_string()),
        Just("1.5.x - 1.4.x".to_string()),
        Just("10%".to_string()),
        Just("1m30s".to_string()),
        any::<String>(),
        proptest::collection::vec(any::<u8>(), 0..16)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    runner
        .run(&proptest::collection::vec(token, 0..40), |parts| {
            let text = parts.join(" ");
            let c = check_text("fuzz.ktplay", &text);
            let _ = render(&c.sources, &c.problems, RenderOptions::plain());
            Ok(())
        })
        .unwrap();
}

// ------------------------------------------------------------------ the binary

fn ktplay() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("ktplay").unwrap();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1");
    cmd
}

#[test]
fn cli_exit_codes() {
    ktplay().args(["check", "playbooks"]).assert().code(0);
    ktplay()
        .args(["check", "tests/cases/check/err/unknown_component.ktplay"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "ktplay::check::unknown_component",
        ))
        .stderr(predicates::str::contains("did you mean `api`?"));
    ktplay()
        .args(["check", "tests/cases/check/warn/downgrade.ktplay"])
        .assert()
        .code(0);
    ktplay()
        .args([
            "check",
            "--deny-warnings",
            "tests/cases/check/warn/downgrade.ktplay",
        ])
        .assert()
        .code(1);
    ktplay()
        .args(["check", "no/such/file.ktplay"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no such file"));
    ktplay().args(["check"]).assert().code(2);
}

#[test]
fn cli_json_is_the_documented_shape() {
    let out = ktplay()
        .args([
            "check",
            "--format",
            "json",
            "tests/cases/check/err/wrong_kind_status.ktplay",
            "tests/cases/check/warn/downgrade.ktplay",
        ])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).expect("one JSON document");
    assert_eq!(doc["files"], 2);
    assert_eq!(doc["errors"], 1);
    assert_eq!(doc["warnings"], 1);
    let d = &doc["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "ktplay::check::wrong_kind");
    assert_eq!(
        d["message"],
        "expected an HTTP status, found the duration `30s`"
    );
    assert_eq!(d["file"], "tests/cases/check/err/wrong_kind_status.ktplay");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(11), Some(41))
    );
    assert_eq!(
        (d["end_line"].as_u64(), d["end_column"].as_u64()),
        (Some(11), Some(44))
    );
    assert!(d["help"].as_str().unwrap().contains("200"));
    let w = &doc["diagnostics"][1];
    assert_eq!(w["severity"], "warning");
    assert_eq!(w["code"], "ktplay::check::downgrade");
}

// ------------------------------------------------------------------ plan and matrix

#[test]
fn plan_shows_values_changes_and_states_for_an_env() {
    let out = ktplay()
        .args([
            "plan",
            "playbooks/keeptrusts-1.5.ktplay",
            "--env",
            "production",
        ])
        .env("TEST_KEY", "tk-plan-secret")
        .assert()
        .code(0)
        .get_output()
        .clone();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("tk-plan-secret"));
    insta::assert_snapshot!(text);
}

#[test]
fn plan_json_is_machine_readable() {
    let out = ktplay()
        .args([
            "plan",
            "playbooks/keeptrusts-1.5.ktplay",
            "--env",
            "staging",
            "--format",
            "json",
        ])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let plan: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(plan["env"], "staging");
    assert_eq!(plan["summary"]["stages"], 5);
    assert_eq!(plan["summary"]["image_changes"], 4);
    let stages = plan["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["preflight", "api", "gateways", "console", "workers"]
    );
    let rolling_api = &stages[1]["statements"][0];
    assert_eq!(rolling_api["image_change"]["from"], "1.4.2");
    assert_eq!(rolling_api["image_change"]["to"], "1.5.0");
    let last = stages[4]["statements"].as_array().unwrap().last().unwrap();
    assert_eq!(last["state_after"]["api"], serde_json::json!(["1.5.0"]));
    assert_eq!(
        last["state_after"]["console"],
        serde_json::json!(["1.4.0", "1.5.0"])
    );
    let policy_guard = stages[2]["statements"][2]["statement"].as_str().unwrap();
    assert!(policy_guard.contains("bearer (secret)"), "{policy_guard}");
    assert!(policy_guard.contains("https://gateway.staging.example.com/v1/chat/completions"));
}

#[test]
fn plan_refuses_broken_playbooks_and_unknown_envs() {
    ktplay()
        .args([
            "plan",
            "tests/cases/check/err/compat_gateway_before_api.ktplay",
        ])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("ktplay::compat::incompatible"));
    ktplay()
        .args(["plan", "playbooks/keeptrusts-1.5.ktplay", "--env", "stagin"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("did you mean `staging`?"));
    ktplay()
        .args(["plan", "playbooks/keeptrusts-1.5.ktplay"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "choose an env with --env: staging, production",
        ));
}

#[test]
fn compat_findings_in_check_json_carry_their_codes() {
    let out = ktplay()
        .args([
            "check",
            "--format",
            "json",
            "tests/cases/check/err/compat_rollback_block_wrong_order.ktplay",
            "tests/cases/check/warn/compat_eol.ktplay",
        ])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let codes: Vec<&str> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"ktplay::compat::incompatible"), "{codes:?}");
    assert!(codes.contains(&"ktplay::compat::eol"), "{codes:?}");
    let inc = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "ktplay::compat::incompatible")
        .unwrap();
    assert_eq!(
        inc["line"], 23,
        "labelled at the rollback statement that creates the state"
    );
}

#[test]
fn matrix_show_and_check() {
    let out = ktplay()
        .args(["matrix", "show"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
    ktplay()
        .args([
            "matrix",
            "check",
            "api=1.5.0",
            "gateway=1.4.1,1.5.0",
            "console=1.4.0",
        ])
        .assert()
        .code(0)
        .stdout(predicates::str::contains("allowed"));
    ktplay()
        .args(["matrix", "check", "api=1.5.0", "gateway=1.3.9,1.5.0"])
        .assert()
        .code(1)
        .stdout(predicates::str::contains("gateway 1.3.9: FORBIDDEN"));
    ktplay()
        .args([
            "matrix",
            "check",
            "--file",
            "tests/cases/check/ok/matrices/keeptrusts.ktplay",
            "--matrix",
            "rule-based",
            "api=2.3.0",
            "gateway=2.1.0",
        ])
        .assert()
        .code(1);
    ktplay()
        .args(["matrix", "check", "api=1.5"])
        .assert()
        .code(2);
    ktplay()
        .args(["matrix", "show", "nope"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no matrix `nope`"));
}

/// Whitespace only separates tokens: the whole of `ok/one-line.ktplay` on one line checks the
/// same (the case file itself is kept in `ktplay fmt`'s layout).
#[test]
fn a_playbook_on_one_line_checks_as_the_formatted_one() {
    let one_line = r#"playbook "one-line" { namespace "keeptrusts" component api { deployment "keeptrusts-api" image "keeptrusts/api" from 1.4.2 to 1.5.0 } stage api { rolling api to 1.5.0 max_unavailable 25% max_surge 1 timeout 1m30s guard ready api within 500ms } }"#;
    let checked = check_text("one-line.ktplay", one_line);
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert_eq!(checked.playbooks.len(), 1);
    let case = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/check/ok/one-line.ktplay"),
    )
    .unwrap();
    assert_eq!(ktplay::fmt::format(one_line).unwrap(), case);
}
