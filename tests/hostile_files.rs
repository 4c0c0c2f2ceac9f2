//! Files a playbook names, as hostile input (issue 20, item 4): `use`, `guard hook` and a test's
//! `playbook` may not read `/proc/self/environ`, `/etc/shadow`, a FIFO or anything outside the
//! playbook's tree (unless `--allow-outside`; pseudo-files and FIFOs never), and nothing `check`,
//! `plan`, `rehearse` or `test` prints about a file shows a secret of this machine.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// The binary under test; `KTPLAY_TEST_BIN` runs the same scenarios against another build (to
/// see them fail on one without the fixes).
fn bin() -> String {
    std::env::var("KTPLAY_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ktplay").to_string())
}
const TEST_KEY: &str = "test-key-5e1f0c2a9b";
const ADMIN_TOKEN: &str = "admin-token-77d3e9f1c4";

fn ktplay(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(args)
        .current_dir(dir)
        .env("TEST_KEY", TEST_KEY)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    // Bounded: a FIFO opened for reading would block for ever.
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("ktplay ends in time")
        .unwrap()
}

/// Exit code, stdout and stderr, with miette's wrapped message lines joined again.
fn text(o: &Output) -> String {
    let all = format!(
        "exit {:?}\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let mut out = String::new();
    for line in all.lines() {
        match line.trim_start().strip_prefix("│ ") {
            Some(rest) if !out.is_empty() => {
                out.pop();
                out.push(' ');
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn no_secret(all: &str) {
    for s in [TEST_KEY, ADMIN_TOKEN, "root:", "PATH="] {
        assert!(!all.contains(s), "`{s}` printed:\n{all}");
    }
}

const PLAYBOOK: &str = r#"playbook "p" {
  namespace "files"
  component gateway { deployment "keeptrusts-gateway" image "keeptrusts/gateway" from 1.4.0 to 1.5.0 }
  stage gateway {
    rolling gateway
    HOOK
  }
}
"#;

/// `use "/proc/self/environ"`: refused as a pseudo-file by `check`, `plan`, `rehearse` and
/// `test`, even with `--allow-outside`; nothing of the environment is printed.
#[test]
fn use_of_proc_environ_is_refused_and_prints_nothing_of_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let pb = format!(
        "use \"/proc/self/environ\"\n{}",
        PLAYBOOK.replace("HOOK", "")
    );
    std::fs::write(dir.path().join("p.ktplay"), pb).unwrap();
    std::fs::write(
        dir.path().join("t.ktplay"),
        "test \"t\" {\n  playbook \"p.ktplay\"\n  expect succeeded\n}\n",
    )
    .unwrap();
    for args in [
        &["check", "p.ktplay"][..],
        &["check", "--allow-outside", "p.ktplay"],
        &["plan", "p.ktplay"],
        &["rehearse", "p.ktplay"],
        &["test", "t.ktplay"],
    ] {
        let o = ktplay(dir.path(), args);
        let all = text(&o);
        assert!(!o.status.success(), "{args:?}: {all}");
        assert!(all.contains("kernel pseudo-file"), "{args:?}: {all}");
        assert!(all.contains("/proc/self/environ"), "{args:?}: {all}");
        no_secret(&all);
    }
}

/// `guard hook "/proc/self/environ"` and a test's `playbook "/proc/self/environ"`: the same.
#[test]
fn hooks_and_test_playbooks_on_proc_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.ktplay"),
        PLAYBOOK.replace("HOOK", "guard hook \"/proc/self/environ\""),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t.ktplay"),
        "test \"t\" {\n  playbook \"/proc/self/environ\"\n  expect succeeded\n}\n",
    )
    .unwrap();
    for args in [&["check", "p.ktplay"][..], &["test", "t.ktplay"]] {
        let o = ktplay(dir.path(), args);
        let all = text(&o);
        assert!(!o.status.success(), "{args:?}: {all}");
        assert!(all.contains("kernel pseudo-file"), "{args:?}: {all}");
        no_secret(&all);
    }
}

/// `playbook "../../../../etc/shadow"` in a test: outside the playbook's tree, refused without
/// reading, naming the file and the flag; `--allow-outside` reads files outside the tree (here a
/// file holding the admin token, which is masked in the excerpt).
#[test]
fn files_outside_the_tree_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("repo");
    std::fs::create_dir_all(inner.join("tests")).unwrap();
    std::fs::write(
        inner.join("tests/t.ktplay"),
        "test \"t\" {\n  playbook \"../../../../../../../../etc/shadow\"\n  expect succeeded\n}\n",
    )
    .unwrap();
    let o = ktplay(&inner, &["test", "tests/t.ktplay"]);
    let all = text(&o);
    assert!(!o.status.success(), "{all}");
    assert!(all.contains("outside the playbook's tree"), "{all}");
    assert!(all.contains("--allow-outside"), "{all}");
    no_secret(&all);

    // A file beside the folder, with a secret on a line that does not parse.
    std::fs::write(
        dir.path().join("common.ktplay"),
        format!("matrix m {{ token {ADMIN_TOKEN} }}\n"),
    )
    .unwrap();
    std::fs::write(
        inner.join("p.ktplay"),
        format!("use \"../common.ktplay\"\n{}", PLAYBOOK.replace("HOOK", "")),
    )
    .unwrap();
    let o = ktplay(&inner, &["check", "p.ktplay"]);
    let all = text(&o);
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(all.contains("outside the playbook's tree"), "{all}");
    assert!(!all.contains("matrix m"), "not read: {all}");
    let o = ktplay(&inner, &["check", "--allow-outside", "p.ktplay"]);
    let all = text(&o);
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(all.contains("matrix m"), "read and shown: {all}");
    assert!(all.contains("common.ktplay"), "{all}");
    no_secret(&all);
}

/// A FIFO (or a link to `/proc`) inside the tree is refused without being opened: no hang.
#[test]
fn fifos_and_links_to_proc_are_refused_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(dir.path().join("pipe.ktplay"))
        .status()
        .unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/proc/self/environ", dir.path().join("env.ktplay")).unwrap();
    for (target, says) in [
        ("pipe.ktplay", "a FIFO"),
        ("env.ktplay", "kernel pseudo-file"),
    ] {
        std::fs::write(
            dir.path().join("p.ktplay"),
            format!("use \"{target}\"\n{}", PLAYBOOK.replace("HOOK", "")),
        )
        .unwrap();
        let o = ktplay(dir.path(), &["check", "p.ktplay"]);
        let all = text(&o);
        assert_eq!(o.status.code(), Some(1), "{all}");
        assert!(all.contains(says), "{all}");
        no_secret(&all);
        // Named on the command line: refused too.
        let o = ktplay(dir.path(), &["check", target]);
        let all = text(&o);
        assert!(!o.status.success(), "{all}");
        assert!(all.contains(says), "{all}");
        no_secret(&all);
    }
}

/// A secret committed into a playbook is masked in the excerpt (and the JSON message) when the
/// environment holds it: whole, and on a long line cut to a window, never a prefix.
#[test]
fn excerpts_mask_the_values_of_secret_variables() {
    let dir = tempfile::tempdir().unwrap();
    // The error is at `bogus` at the end of a line over 512 bytes, shown as a window starting 80
    // bytes before it: inside TEST_KEY, which a cut first would show the rest of.
    let long = "x".repeat(600);
    let pad = "y".repeat(64);
    std::fs::write(
        dir.path().join("p.ktplay"),
        format!(
            "playbook \"p\" {{\n  namespace \"files\"\n  let a = \"{ADMIN_TOKEN}\"\n  let b = \"{long}{TEST_KEY}{pad}\" bogus\n}}\n"
        ),
    )
    .unwrap();
    for args in [
        &["check", "p.ktplay"][..],
        &["check", "--format", "json", "p.ktplay"],
    ] {
        let o = ktplay(dir.path(), args);
        let all = text(&o);
        assert_eq!(o.status.code(), Some(1), "{all}");
        assert!(all.contains("bogus"), "{all}");
        no_secret(&all);
        for prefix in [
            &ADMIN_TOKEN[..8],
            &ADMIN_TOKEN[8..],
            &TEST_KEY[..8],
            &TEST_KEY[6..],
        ] {
            assert!(!all.contains(prefix), "`{prefix}` printed:\n{all}");
        }
    }
}

/// A message quoting a long value is shortened around a `…` only after it is redacted: a secret
/// where the cut falls leaves no part behind (the shortened head keeps 266 characters).
#[test]
fn long_messages_are_redacted_before_they_are_shortened() {
    let dir = tempfile::tempdir().unwrap();
    let key = "k3y-".repeat(15); // 60 characters
    let url = format!("{}{key}{}", "x".repeat(240), "y".repeat(300));
    std::fs::write(
        dir.path().join("p.ktplay"),
        format!(
            "playbook \"p\" {{\n  namespace \"files\"\n  component gateway {{ deployment \"keeptrusts-gateway\" image \"keeptrusts/gateway\" from 1.4.0 to 1.5.0 }}\n  stage gateway {{\n    guard metric \"{url}\" query \"up\" below 1\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let o = std::process::Command::new(bin())
        .args(["check", "p.ktplay"])
        .current_dir(dir.path())
        .env("MY_API_KEY", &key)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let all = text(&o);
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(all.contains("is not a valid URL"), "{all}");
    for i in 0..key.len() - 8 {
        let part = &key[i..i + 8];
        assert!(!all.contains(part), "`{part}` printed:\n{all}");
    }
}
