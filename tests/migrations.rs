//! Migrations held to the seed's rules (issue 25): the held-out case set under
//! `tests/cases/migrations/` (each file says its expected verdict on its first line) through the
//! built-in rules and through the real `squawk` (skipped loudly when it is not on PATH), the
//! linters' agreement, which one `check` says ran, and hostile migration paths.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ktplay::migrate::{rules, split, squawk};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `(file, expected verdict, text)` of every case: `safe` or a rule name.
fn cases() -> Vec<(PathBuf, String, String)> {
    let dir = root().join("tests/cases/migrations");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "sql") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("-- expect: "))
            .unwrap_or_else(|| panic!("{} has no `-- expect:` line", path.display()))
            .trim()
            .to_string();
        out.push((path, expect, text));
    }
    out.sort();
    assert!(out.len() >= 7, "the seven seed patterns at least");
    out
}

fn verdict(found: &[rules::Finding]) -> BTreeSet<String> {
    found.iter().map(|f| f.rule.name().to_string()).collect()
}

fn expected(expect: &str) -> BTreeSet<String> {
    if expect == "safe" {
        BTreeSet::new()
    } else {
        [expect.to_string()].into()
    }
}

#[test]
fn held_out_cases_get_their_verdict_from_the_built_in_rules() {
    for (path, expect, text) in cases() {
        let found = rules::lint(&text, &split::statements(&text));
        assert_eq!(verdict(&found), expected(&expect), "{}", path.display());
    }
}

#[test]
fn held_out_cases_get_the_same_verdict_from_squawk() {
    let Some(bin) = squawk::find() else {
        eprintln!(
            "SKIPPED held_out_cases_get_the_same_verdict_from_squawk: squawk is not on PATH \
             (pip install squawk-cli); only the built-in rules were tested"
        );
        return;
    };
    let version = squawk::version(&bin).expect("squawk --version");
    let mut agree = 0;
    for (path, expect, text) in cases() {
        let stmts = split::statements(&text);
        let by_squawk = squawk::lint(&bin, &path, &text, &stmts).expect("squawk's JSON report");
        let builtin = rules::lint(&text, &stmts);
        let mut want = expected(&expect);
        // squawk has no rule for a new enum value: ktplay runs its own beside squawk.
        if expect == "enum_value" {
            want.clear();
        }
        assert_eq!(verdict(&by_squawk), want, "{version} on {}", path.display());
        // And at the same statement as the built-in rules.
        for f in &by_squawk {
            assert!(
                builtin
                    .iter()
                    .any(|b| b.rule == f.rule && b.start == f.start),
                "{}: squawk's {:?} at {} not found by the built-in rules",
                path.display(),
                f.rule,
                f.start
            );
        }
        agree += 1;
    }
    eprintln!("{version} and the built-in rules agree on {agree} cases");
}

/// A repository (`.git`) with a playbook of one component whose migrations are `files`.
fn repo(files: &[(&str, &str)], block: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    for (name, text) in files {
        let p = repo.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    std::fs::write(
        repo.join("p.ktplay"),
        format!(
            "playbook \"p\" {{\n  namespace \"shop\"\n  component api {{\n    deployment \"shop-api\"\n    image \"shop/api\"\n    from 1.4.2\n    to 1.5.0\n    migrations backward_compatible {{\n      {block}\n    }}\n  }}\n  stage api {{\n    rolling api\n  }}\n}}\n"
        ),
    )
    .unwrap();
    dir
}

fn check(dir: &Path, squawk_off: bool) -> (i32, String) {
    let mut cmd = assert_cmd::Command::cargo_bin("ktplay").unwrap();
    cmd.current_dir(dir.join("repo"))
        .args(["check", "p.ktplay"])
        .env("COLUMNS", "1000")
        .env_remove("KTPLAY_DATABASE_URL");
    if squawk_off {
        cmd.env("KTPLAY_SQUAWK", "off");
    } else {
        cmd.env_remove("KTPLAY_SQUAWK");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const USERS: &str = "CREATE TABLE users (id bigint PRIMARY KEY, email text, name text);\n";

#[test]
fn check_says_which_linter_ran_and_lints_only_the_new_files() {
    let dir = repo(
        &[
            // Shipped with 1.4.0: a drop there is not this upgrade's business.
            ("db/V1_4_0__users.sql", "DROP TABLE legacy;\n"),
            (
                "db/1.5.0/add_nick.sql",
                "ALTER TABLE users ADD COLUMN nick text;\n",
            ),
            // After `to`: not this upgrade's either.
            (
                "db/V1_6_0__drop.sql",
                "ALTER TABLE users DROP COLUMN email;\n",
            ),
        ],
        "files \"db\"",
    );
    let (code, err) = check(dir.path(), true);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("migrations: api 1.4.2 → 1.5.0: 1 new file, linted by built-in rules (KTPLAY_SQUAWK=off); changes that break 1.4.2: 0"),
        "{err}"
    );
    if squawk::find().is_some() {
        let (code, err) = check(dir.path(), false);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("linted by squawk "), "{err}");
    } else {
        eprintln!("SKIPPED the squawk half: squawk is not on PATH");
    }
}

#[test]
fn a_breaking_release_is_an_error_with_both_linters() {
    let dir = repo(
        &[
            ("db/V1_4_0__users.sql", USERS),
            (
                "db/V1_5_0__rename.sql",
                "ALTER TABLE users RENAME COLUMN name TO full_name;\n",
            ),
        ],
        "files \"db/*.sql\"",
    );
    for off in [true, false] {
        if !off && squawk::find().is_none() {
            eprintln!("SKIPPED the squawk half: squawk is not on PATH");
            continue;
        }
        let (code, err) = check(dir.path(), off);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("ktplay::migrations::breaking"), "{err}");
        assert!(
            err.contains("migration `db/V1_5_0__rename.sql` of api 1.5.0 renames a column"),
            "{err}"
        );
        assert!(err.contains("expand, then contract"), "{err}");
        assert!(err.contains("changes that break 1.4.2: 1"), "{err}");
    }
}

#[test]
fn hostile_paths_are_errors_naming_them_and_are_not_read() {
    let dir = repo(&[("db/V1_5_0__ok.sql", "SELECT 1;\n")], "files \"db\"");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        outside.join("V1_5_0__secret.sql"),
        "DROP TABLE x; -- TOPSECRET\n",
    )
    .unwrap();
    // A symlink inside the tree that leads out of it.
    std::os::unix::fs::symlink(
        outside.join("V1_5_0__secret.sql"),
        dir.path().join("repo/db/V1_5_0__link.sql"),
    )
    .unwrap();
    // 2 GB, sparse: refused by its size, never read.
    let big = std::fs::File::create(dir.path().join("repo/db/V1_5_0__big.sql")).unwrap();
    big.set_len(2 * 1024 * 1024 * 1024).unwrap();
    drop(big);
    let p = dir.path().join("repo/p.ktplay");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "files \"db\"",
        "files \"db\"\n      files \"../outside\"\n      queries \"/etc/passwd\"",
    );
    std::fs::write(&p, text).unwrap();
    let (code, err) = check(dir.path(), true);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("migration path `db/V1_5_0__link.sql`: it is outside the playbook's tree"),
        "{err}"
    );
    assert!(
        err.contains("migration path `../outside`: it is outside the playbook's tree"),
        "{err}"
    );
    assert!(
        err.contains("migration path `/etc/passwd`: an absolute path"),
        "{err}"
    );
    assert!(
        err.contains("migration path `db/V1_5_0__big.sql`: 2147483648 bytes; migration files larger than 16 MiB are refused without being read"),
        "{err}"
    );
    assert!(
        !err.contains("TOPSECRET") && !err.contains("root:"),
        "{err}"
    );
}
