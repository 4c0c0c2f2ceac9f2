//! `ktplay test`: the shipped playbooks' tests and a newcomer's system pass; a wrong expectation
//! fails, is reported at its `expect` line with what happened instead, and is in the JUnit XML;
//! durations run on a virtual clock (a five-minute canary takes five simulated minutes).

use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ktplay(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ktplay"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The test cases of a JUnit file: (suite, name, failure message if any).
fn junit_cases(path: &Path) -> Vec<(String, String, Option<String>)> {
    let xml = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit output is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let mut out = Vec::new();
    for suite in root.children().filter(|n| n.has_tag_name("testsuite")) {
        let cases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(
            suite.attribute("tests"),
            Some(cases.len().to_string().as_str()),
            "the suite counts its cases"
        );
        for c in cases {
            let failure = c
                .children()
                .find(|n| n.has_tag_name("failure") || n.has_tag_name("error"))
                .map(|f| f.attribute("message").unwrap_or_default().to_string());
            out.push((
                suite.attribute("name").unwrap_or_default().to_string(),
                c.attribute("name").unwrap_or_default().to_string(),
                failure,
            ));
        }
    }
    out
}

/// "simulated 5m37s" on a test's line → seconds.
fn simulated_secs(line: &str) -> u64 {
    let s = line.split("simulated ").nth(1).unwrap();
    let s = s.split(',').next().unwrap();
    let (m, rest) = s.split_once('m').unwrap_or(("0", s));
    let secs: f64 = rest.trim_end_matches('s').parse().unwrap_or(0.0);
    m.parse::<u64>().unwrap_or(0) * 60 + secs as u64
}

#[test]
fn shipped_playbook_tests_pass_with_valid_junit() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let out = ktplay(&["test", "playbooks", "--junit", junit.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let declared: usize = std::fs::read_dir(root().join("playbooks/tests"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|t| t.lines().filter(|l| l.starts_with("test \"")).count())
        .sum();
    assert!(declared >= 6, "every failure path of the seed is tested");
    let cases = junit_cases(&junit);
    assert_eq!(cases.len(), declared, "{cases:?}");
    assert!(cases.iter().all(|(_, _, f)| f.is_none()), "{cases:?}");
    // The seed's canary runs for its full five minutes, on the virtual clock.
    let line = stdout
        .lines()
        .find(|l| l.contains("the upgrade succeeds"))
        .unwrap();
    assert!(line.starts_with("ok"), "{line}");
    assert!(simulated_secs(line) >= 300, "{line}");
    assert!(
        stdout.contains(&format!("{declared} tests: {declared} passed, 0 failed")),
        "{stdout}"
    );
}

#[test]
fn a_newcomers_system_is_tested_through_every_failure_path() {
    let out = ktplay(&["test", "tests/cases/test"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Its guards (a JSON health check, a migration log line, pages, a status endpoint that
    // `serves` routes) pass on generic services, and each component fails under each fault kind.
    for name in [
        "the shop upgrade succeeds",
        "a backend that never gets ready is rolled back",
        "a backend whose migration is not logged is rolled back",
        "a backend answering 500 is rolled back",
        "a frontend that never gets ready keeps blue serving",
        "a crashing frontend keeps blue serving",
        "a frontend whose pages fail is never switched to",
        "a mailer that never gets ready rolls everything back",
        "a crashing mailer rolls everything back",
        "a mailer that does not log its start rolls everything back",
        "a mailer whose status fails rolls everything back",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(name)),
            "{name}: {stdout}"
        );
    }
}

#[test]
fn a_wrong_expectation_fails_at_its_line_and_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("tests/cases/test/shop.ktplay"),
        dir.path().join("shop.ktplay"),
    )
    .unwrap();
    let tests = dir.path().join("wrong.ktplay");
    std::fs::write(
        &tests,
        r#"test "expects the wrong order" {
  playbook "shop.ktplay"
  fault never-ready:mailer@1.2.0
  expect rolled_back
  expect rollback order backend frontend mailer
  expect final mailer 1.2.0
}

test "expects success under a fault" {
  playbook "shop.ktplay"
  fault never-ready:backend@2.4.0
  expect succeeded
}

test "right" {
  playbook "shop.ktplay"
  expect succeeded
}
"#,
    )
    .unwrap();
    let junit = dir.path().join("junit.xml");
    let out = ktplay(&[
        "test",
        tests.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL expects the wrong order"), "{all}");
    assert!(
        stdout.contains("FAIL expects success under a fault"),
        "{all}"
    );
    assert!(stdout.contains("ok   right"), "{all}");
    assert!(stdout.contains("3 tests: 1 passed, 2 failed"), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // What happened instead, labelled at the expectation.
    assert!(
        stderr.contains(
            "expected the rollback to go backend → frontend → mailer, it went mailer → frontend → backend"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("wrong.ktplay:5:"), "{stderr}");
    assert!(
        stderr.contains("mailer runs {1.1.0} (expected 1.2.0)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("expected succeeded, the run ended rolled_back"),
        "{stderr}"
    );
    assert!(stderr.contains("ktplay::test::failed"), "{stderr}");
    // The passing expectation (`expect rolled_back`) is not reported.
    assert!(!stderr.contains("wrong.ktplay:4:"), "{stderr}");
    let cases = junit_cases(&junit);
    assert_eq!(cases.len(), 3);
    let wrong = cases
        .iter()
        .find(|(_, n, _)| n == "expects the wrong order")
        .unwrap();
    let msg = wrong.2.as_deref().expect("a failure element");
    assert!(msg.contains(":5: expected the rollback to go"), "{msg}");
    assert!(cases.iter().any(|(_, n, f)| n == "right" && f.is_none()));
}

/// A generic component's failure as the rehearsal shows it: the guard's request, the fault's
/// answer, the rollback; and the notes on routing.
#[test]
fn rehearse_fails_a_generic_component_on_purpose() {
    let out = ktplay(&[
        "rehearse",
        "tests/cases/test/shop.ktplay",
        "--approve",
        "--fault",
        "http:mailer@1.2.0=500",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("routing ops.shop.internal → http://127.0.0.1:"),
        "`serves ops_url` routes the host no rule would: {stdout}"
    );
    assert!(
        stdout.contains("GET https://ops.shop.internal/mailer/status answered 500, expected 200")
            && stdout.contains("fault http:mailer@1.2.0=500"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "rolled back: backend {2.3.0}, frontend {3.0.0} (serving blue), mailer {1.1.0}"
        ),
        "{stdout}"
    );
}

#[test]
fn a_file_with_check_errors_runs_no_test() {
    let out = ktplay(&["test", "tests/cases/check/err/test_fault.ktplay"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no test was run"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ok "));
}

#[test]
fn rehearse_refuses_a_fault_that_cannot_fire_in_the_playbook() {
    for (fault, says) in [
        (
            "never-ready:mailr@1.2.0",
            "the fault names the component `mailr`, which playbook \"keeptrusts-1.5\" does not have",
        ),
        ("never-ready:gateway@1.6.0", "`gateway` never runs 1.6.0"),
        ("policy-off:1.6.0", "the gateway never runs 1.6.0"),
        (
            "http:gateway@1.5.0=hello",
            "the status must be an HTTP status from 100 to 599",
        ),
        (
            "crash:gatway@1.5.0",
            "the fault names the component `gatway`, which playbook \"keeptrusts-1.5\" does not have",
        ),
        ("logs-missing:api@1.6.0", "`api` never runs 1.6.0"),
        ("explode:api@1.5.0", "unknown fault `explode`"),
    ] {
        let out = ktplay(&[
            "rehearse",
            "playbooks/keeptrusts-1.5.ktplay",
            "--env",
            "staging",
            "--approve",
            "--fault",
            fault,
        ]);
        assert_eq!(out.status.code(), Some(2), "{fault}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{fault}: {stderr}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("stage"),
            "nothing ran"
        );
    }
}

/// The simulator's monitoring runs on the test's virtual clock: after two simulated minutes of
/// traffic a metric guard on an absolute rate (`sum(rate(…[1m]))`, 20 requests a second to the
/// gateway) holds in `ktplay test` as it would against a real Prometheus; stamped by wall time
/// (as before), the same minute of samples spans milliseconds and the rate is far off.
#[test]
fn an_absolute_rate_is_per_simulated_second() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rates.ktplay"),
        r#"playbook "rates" {
  namespace "rates"
  component gateway { deployment "keeptrusts-gateway" image "keeptrusts/gateway" from 1.4.0 to 1.5.0 }
  let prom_url = "http://prometheus.monitoring:9090"
  stage gateway {
    pause 2m
    canary gateway weight 10% for 1m {
      guard metric "${prom_url}" {
        query "sum(rate(http_requests_total{app=\"gateway\"}[1m]))"
        between 19.9 20.1
      }
    }
  }
}
"#,
    )
    .unwrap();
    let tests = dir.path().join("rates-tests.ktplay");
    std::fs::write(
        &tests,
        r#"test "the request rate is 20 a second" {
  playbook "rates.ktplay"
  expect succeeded
  expect final gateway 1.5.0
}
"#,
    )
    .unwrap();
    let out = ktplay(&["test", tests.to_str().unwrap()]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    // `no_data` is `fail` by default: passing, the guard read a number within 20 ± 0.1.
    assert!(all.contains("1 test: 1 passed, 0 failed"), "{all}");
}

/// The seed playbook and its hooks copied into `dir` (test files name playbooks in their own
/// tree).
fn seed_playbook_in(dir: &Path) {
    std::fs::copy(
        root().join("playbooks/keeptrusts-1.5.ktplay"),
        dir.join("keeptrusts-1.5.ktplay"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("hooks")).unwrap();
    for e in std::fs::read_dir(root().join("playbooks/hooks")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("hooks").join(e.file_name())).unwrap();
    }
}

/// A generic system whose one stage pauses for `pause` (then nothing fails), and a test of it
/// that expects a rollback (as the issue's: a signal used to make it pass).
fn long_pause(dir: &Path, pause: &str) -> PathBuf {
    std::fs::write(
        dir.join("long.ktplay"),
        format!(
            r#"playbook "long" {{
  namespace "long"
  component backend {{ deployment "backend" image "shop/backend" from 2.3.0 to 2.4.0 }}
  stage backend {{
    rolling backend
    pause {pause}
  }}
}}
"#
        ),
    )
    .unwrap();
    let tests = dir.join("long-tests.ktplay");
    std::fs::write(
        &tests,
        r#"test "a long pause rolls back" {
  playbook "long.ktplay"
  expect rolled_back
}

test "a second test" {
  playbook "long.ktplay"
  expect succeeded
}
"#,
    )
    .unwrap();
    tests
}

/// SIGTERM while a test runs: that test fails (it does not count the signal's rollback as the
/// expected one), the rest are not run, the exit code is 143 and JUnit says so. Before, the
/// suite reported "1 passed", exit 0, `failures="0"`.
#[test]
fn a_signal_fails_the_test_run() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let tests = long_pause(dir.path(), "99999999h");
    let junit = dir.path().join("junit.xml");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ktplay"))
        .args([
            "test",
            tests.to_str().unwrap(),
            "--verbose",
            "--time-limit",
            "99999999h",
            "--junit",
            junit.to_str().unwrap(),
        ])
        .current_dir(root())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first test's rolling update has ended (verbose output): its pause has begun, and
    // signals are handled from before the first test.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "{seen}");
        seen.push_str(&line);
        if line.contains("rolling backend") {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let all = format!("{seen}{rest}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(143), "{all}");
    assert!(all.contains("FAIL a long pause rolls back"), "{all}");
    assert!(all.contains("interrupted by SIGTERM"), "{all}");
    assert!(
        all.contains("2 tests: 0 passed, 1 failed, 1 not run — interrupted by SIGTERM"),
        "{all}"
    );
    assert!(!all.contains("ok   a second test"), "{all}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    let cases = junit_cases(&junit);
    assert_eq!(cases.len(), 2, "{xml}");
    let failure = cases[0].2.as_deref().unwrap_or_default();
    assert!(failure.contains("interrupted by SIGTERM"), "{xml}");
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(xml.contains("skipped"), "{xml}");
    assert!(
        xml.contains("not run: the suite was interrupted by SIGTERM"),
        "{xml}"
    );
}

/// Simulated time has a limit per test: a pause of 11,000 years fails its test at the limit,
/// saying where the run was and how to raise it, in bounded wall time.
#[test]
fn simulated_time_is_bounded_per_test() {
    let dir = tempfile::tempdir().unwrap();
    let tests = long_pause(dir.path(), "99999999h");
    let junit = dir.path().join("junit.xml");
    let t0 = std::time::Instant::now();
    let out = ktplay(&[
        "test",
        tests.to_str().unwrap(),
        "--time-limit",
        "30m",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("2 tests: 0 passed, 2 failed"), "{all}");
    assert!(
        all.contains("the run was still going after 30m of simulated time, the limit of a test (in stage `backend`"),
        "{all}"
    );
    assert!(all.contains("`ktplay test --time-limit` sets it"), "{all}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(120), "{all}");
    let cases = junit_cases(&junit);
    assert!(
        cases.iter().all(|c| c
            .2
            .as_deref()
            .is_some_and(|m| m.contains("30m of simulated time"))),
        "{cases:?}"
    );
    // Within the limit, the same test runs to its end.
    let tests = long_pause(dir.path(), "10m");
    let out = ktplay(&["test", tests.to_str().unwrap(), "--time-limit", "30m"]);
    let all = text(&out);
    assert!(all.contains("ok   a second test"), "{all}");
}

/// `--fault logs-missing:api@1.5.0` on the modelled Keeptrusts api: its pods write none of
/// their lines (the seeded `FAKE_LOG` migration lines included), so the migration-log guard
/// fails and the api rolls back. Before, the guard still passed.
#[test]
fn logs_missing_fires_on_the_modelled_api() {
    let dir = tempfile::tempdir().unwrap();
    seed_playbook_in(dir.path());
    let tests = dir.path().join("t.ktplay");
    std::fs::write(
        &tests,
        format!(
            r#"test "the api logs nothing" {{
  playbook "{}/keeptrusts-1.5.ktplay"
  env staging
  fault logs-missing:api@1.5.0
  expect rolled_back
  expect failed stage api statement 3
  expect rollback order api
  expect final api 1.4.2 gateway 1.4.1
}}
"#,
            dir.path().display()
        ),
    )
    .unwrap();
    let out = ktplay(&["test", tests.to_str().unwrap()]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("1 test: 1 passed, 0 failed"), "{all}");
}

/// A failed test names what failed in the run: the stage, the statement (number, line, text)
/// and the guard's message, in the output and in JUnit. `--test NAME` runs one test;
/// `--verbose` shows its run.
#[test]
fn a_failed_test_says_what_failed_and_one_test_runs_by_name() {
    let dir = tempfile::tempdir().unwrap();
    seed_playbook_in(dir.path());
    let tests = dir.path().join("t.ktplay");
    std::fs::write(
        &tests,
        format!(
            r#"test "wrongly expects success" {{
  playbook "{root}/keeptrusts-1.5.ktplay"
  env staging
  fault migration-fails:1.5.0
  expect succeeded
}}

test "the upgrade succeeds" {{
  playbook "{root}/keeptrusts-1.5.ktplay"
  env staging
  expect succeeded
}}
"#,
            root = dir.path().display()
        ),
    )
    .unwrap();
    let junit = dir.path().join("junit.xml");
    let out = ktplay(&[
        "test",
        tests.to_str().unwrap(),
        "--test",
        "wrongly expects success",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("1 test: 0 passed, 1 failed"), "{all}");
    assert!(
        !all.contains("the upgrade succeeds"),
        "only the named test ran: {all}"
    );
    let said =
        "expected succeeded, the run ended rolled_back: stage `api` failed at statement 1 (line";
    assert!(all.contains(said), "{all}");
    assert!(all.contains("rolling api"), "{all}");
    let cases = junit_cases(&junit);
    assert_eq!(cases.len(), 1, "{cases:?}");
    let m = cases[0].2.as_deref().unwrap_or_default();
    assert!(m.contains("stage `api` failed at statement 1"), "{m}");
    // An unknown name is a usage error naming the tests there are.
    let out = ktplay(&[
        "test",
        tests.to_str().unwrap(),
        "--test",
        "the upgrade succeed",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("did you mean"), "{}", text(&out));
    // --verbose shows the run's stages and statements.
    let out = ktplay(&[
        "test",
        tests.to_str().unwrap(),
        "--test",
        "the upgrade succeeds",
        "--verbose",
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("── test \"the upgrade succeeds\""), "{all}");
    assert!(all.contains("stage gateways"), "{all}");
    assert!(all.contains("ok   the upgrade succeeds"), "{all}");
}
