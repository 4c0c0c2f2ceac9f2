//! `check` never reads as a pass when it is not one, never crashes on what it renders, and stays
//! linear in the size of the input and the number of diagnostics (issue 11).

use std::process::Command;
use std::time::Instant;

use ktplay::check::check_text;
use ktplay::diag::{render, RenderOptions};

const BIN: &str = env!("CARGO_BIN_EXE_ktplay");
const SEED: &str = include_str!("../playbooks/keeptrusts-1.5.ktplay");

fn check_file(name: &str, text: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .args(args)
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// 41 bytes: `s` then 20 × `İ` (two bytes each) made the syntax error's "found" token cut inside a
/// character; the panic in the parser thread was swallowed and check said "ok".
#[test]
fn a_token_cut_inside_a_utf8_character_is_a_diagnostic_not_ok() {
    let text = format!("s{}", "İ".repeat(20));
    assert_eq!(text.len(), 41);
    let (code, _, err) = check_file("utf8.ktplay", &text, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("ktplay::syntax::unexpected"), "{err}");
    assert!(!err.contains("ok:") && !err.contains("panicked"), "{err}");

    // Appended to a valid playbook, the file fails too.
    let (code, _, err) = check_file("both.ktplay", &format!("{SEED}\n{text}"), &[]);
    assert_eq!(code, Some(1), "{err}");
    let (code, out, _) = check_file(
        "both.ktplay",
        &format!("{SEED}\n{text}"),
        &["--format", "json"],
    );
    assert_eq!(code, Some(1));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(doc["errors"].as_u64().unwrap() >= 1, "{doc}");
}

/// miette's renderer panicked on any label at column 65,536 or more (exit 101).
#[test]
fn a_label_at_column_seventy_thousand_renders_without_a_panic() {
    let long = format!(
        "playbook \"x\" {{ {} stage s {{ rolling nope }} }}\n",
        " ".repeat(70_000)
    );
    let (code, _, err) = check_file("wide.ktplay", &long, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("ktplay::check::unknown_component"), "{err}");
    assert!(
        err.contains("rolling nope"),
        "the label's text is shown: {err}"
    );
    assert!(err.contains("wide.ktplay:1:"), "{err}");
    assert!(
        err.len() < 4_000,
        "the line is cut around the label: {} bytes",
        err.len()
    );

    // A syntax error there, and a label that is itself 70,000 columns long.
    let long = format!("{}\"", "x".repeat(70_000));
    let (code, _, err) = check_file("wide2.ktplay", &long, &[]);
    assert_eq!(code, Some(1), "{err}");
    let long = format!(
        "playbook \"x\" {{ namespace \"{}\" }}\n",
        "N".repeat(70_000)
    );
    let (code, _, err) = check_file("wide3.ktplay", &long, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.len() < 4_000, "{} bytes", err.len());
}

/// N copies of the seed playbook with three errors each: the rendering must not rescan the file
/// per diagnostic.
#[test]
fn rendering_many_diagnostics_is_linear() {
    let one = SEED
        .replacen("rolling api timeout 10m", "rolling apx timeout 10m", 1)
        .replacen("expect 200 within 2m", "expect 2000 within 2m", 1)
        .replacen(
            "rolling workers timeout 5m",
            "rolling workerz timeout 5m",
            1,
        );
    let time = |n: usize| {
        let text: String = (0..n)
            .map(|i| one.replace("\"keeptrusts-1.5\"", &format!("\"keeptrusts-1.5-{i}\"")))
            .collect();
        let checked = check_text("many.ktplay", &text);
        assert!(checked.errors() >= 3 * n);
        let started = Instant::now();
        let out = render(&checked.sources, &checked.problems, RenderOptions::plain());
        assert!(out.contains("rolling workerz"));
        started.elapsed().as_secs_f64()
    };
    let small = time(50).max(0.001);
    let big = time(800);
    // 16 × the input and the diagnostics; quadratic would be 256 ×. Allow noise up to 48 ×.
    assert!(
        big < small * 48.0 + 0.5,
        "50 copies: {small:.3} s, 800 copies: {big:.3} s"
    );
}

/// `ktplay status | head -1`: a reader that goes away must not make any command panic.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/keeptrusts-1.5.ktplay"
    );
    for args in [
        vec!["matrix", "show"],
        vec!["plan", seed, "--env", "staging"],
        vec!["check", "--format", "json", seed],
    ] {
        for _ in 0..3 {
            let mut child = Command::new(BIN)
                .args(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
        }
    }
}

fn ktplay(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A misspelt component was simply not checked, and the answer was "allowed".
#[test]
fn matrix_check_refuses_a_component_the_matrix_does_not_know() {
    let (code, _, err) = ktplay(&["matrix", "check", "api=1.5.0", "gatway=1.2.0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`gatway` is not a component of the matrix `keeptrusts`"),
        "{err}"
    );
    assert!(err.contains("did you mean `gateway`?"), "{err}");
    let (code, out, _) = ktplay(&["matrix", "check", "api=1.5.0", "gateway=1.2.0"]);
    assert_eq!(code, Some(1), "{out}");
}

/// `--file` without `--matrix` asks the file's matrix, not the built-in one.
#[test]
fn matrix_check_with_a_file_uses_the_files_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.ktplay");
    std::fs::write(
        &path,
        "matrix strict {\n  hub api\n  api 1.5.x current { gateway 1.5.x - 1.5.x }\n}\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    // The built-in keeptrusts allows gateway 1.4.1 beside api 1.5.0; `strict` does not.
    let (code, out, err) = ktplay(&[
        "matrix",
        "check",
        "api=1.5.0",
        "gateway=1.4.1",
        "--file",
        file,
    ]);
    assert_eq!(code, Some(1), "{out}{err}");
    let (code, out, _) = ktplay(&["matrix", "show", "--file", file]);
    assert_eq!(code, Some(0));
    assert!(out.contains("strict"), "{out}");
    let (code, _, _) = ktplay(&[
        "matrix",
        "check",
        "api=1.5.0",
        "gateway=1.4.1",
        "--file",
        file,
        "--matrix",
        "keeptrusts",
    ]);
    assert_eq!(code, Some(0));
}
