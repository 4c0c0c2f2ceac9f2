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
