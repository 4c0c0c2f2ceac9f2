//! `ktplay test PATH...`: every `test` item found, each on its own simulator and virtual clock
//! ([`crate::run::suite`]); one line per test, failures rendered at their `expect` line, a
//! summary, and `--junit FILE`.

use std::time::Duration;

use super::TestArgs;
use crate::check::{self, test_items::Test, Checked};
use crate::diag::{self, Problem};
use crate::run::exit;
use crate::run::output::fmt_elapsed;
use crate::run::suite::{self, TestResult};

/// An expectation that did not hold, as a diagnostic at its line.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{instead}")]
#[diagnostic(code(ktplay::test::failed))]
struct Unmet {
    instead: String,
    #[label("this expectation")]
    span: miette::SourceSpan,
    #[help]
    help: Option<String>,
}

/// A test that could not run at all.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("the test could not run: {0}")]
#[diagnostic(code(ktplay::test::error))]
struct NotRun(String, #[label("this test")] miette::SourceSpan);

pub fn cmd_test(args: TestArgs) -> i32 {
    let checked = match check::check_paths(&args.paths) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return exit::USAGE;
        }
    };
    if checked.errors() > 0 {
        super::report_problems(&checked);
        eprintln!(
            "failed: {} error{}; no test was run",
            checked.errors(),
            super::plural(checked.errors())
        );
        return exit::FOUND_ERRORS;
    }
    if checked.tests.is_empty() {
        eprintln!("error: no `test` items in the files named");
        return exit::USAGE;
    }
    let wall = std::time::Instant::now();
    let mut results = Vec::new();
    let mut simulated = Duration::ZERO;
    for (file, test) in &checked.tests {
        let r = suite::run_test(&checked, test);
        let (sim, w) = match &r.ran {
            Ok(ran) => (ran.simulated, ran.wall),
            Err(_) => (Duration::ZERO, Duration::ZERO),
        };
        simulated += sim;
        let mark = if r.passed() { "ok  " } else { "FAIL" };
        println!(
            "{mark} {}  (simulated {}, wall {})",
            test.name,
            fmt_elapsed(sim),
            fmt_elapsed(w)
        );
        let problems = problems_of(*file, test, &r);
        if !problems.is_empty() {
            eprint!(
                "{}",
                diag::render(
                    &checked.sources,
                    &problems,
                    diag::RenderOptions {
                        colour: super::colour_wanted(),
                        width: super::terminal_width(),
                    }
                )
            );
        }
        results.push((*file, test, r));
    }
    let failed = results.iter().filter(|(_, _, r)| !r.passed()).count();
    println!(
        "\n{} test{}: {} passed, {failed} failed (simulated {}, wall {})",
        results.len(),
        super::plural(results.len()),
        results.len() - failed,
        fmt_elapsed(simulated),
        fmt_elapsed(wall.elapsed())
    );
    if let Some(path) = &args.junit {
        if let Err(e) = std::fs::write(path, junit(&checked, &results)) {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            return exit::USAGE;
        }
    }
    if failed == 0 {
        exit::OK
    } else {
        exit::FAILED
    }
}

fn problems_of(file: crate::span::FileId, test: &Test, r: &TestResult) -> Vec<Problem> {
    match &r.ran {
        Err(e) => vec![Problem::new(file, NotRun(e.clone(), test.span.into()))],
        Ok(_) => r
            .misses
            .iter()
            .map(|m| {
                Problem::new(
                    file,
                    Unmet {
                        instead: m.instead.clone(),
                        span: test.expects[m.expect].span.into(),
                        help: None,
                    },
                )
            })
            .collect(),
    }
}

/// JUnit XML: one testsuite per file, one testcase per test; a failure names the expectation
/// and its playbook line.
fn junit(checked: &Checked, results: &[(crate::span::FileId, &Test, TestResult)]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("ktplay test");
    let mut files: Vec<crate::span::FileId> = results.iter().map(|(f, _, _)| *f).collect();
    files.dedup();
    for f in files {
        let name = checked.sources.get(f).name.clone();
        let mut suite = TestSuite::new(name.clone());
        for (_, test, r) in results.iter().filter(|(g, _, _)| *g == f) {
            let line = |span: crate::span::Span| {
                checked.sources.line_col(span.file, span.start as usize).0
            };
            let status = match &r.ran {
                Err(e) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                    s.set_message(format!("the test could not run: {e}"));
                    s
                }
                Ok(_) if r.misses.is_empty() => TestCaseStatus::success(),
                Ok(_) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let m = &r.misses[0];
                    s.set_message(format!(
                        "{name}:{}: {}",
                        line(test.expects[m.expect].span),
                        m.instead
                    ));
                    s.set_type("expectation");
                    s.set_description(
                        r.misses
                            .iter()
                            .map(|m| {
                                format!(
                                    "{name}:{}: {}",
                                    line(test.expects[m.expect].span),
                                    m.instead
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n"),
                    );
                    s
                }
            };
            let mut case = TestCase::new(test.name.clone(), status);
            case.set_classname(name.clone());
            if let Ok(ran) = &r.ran {
                case.set_time(ran.wall);
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string().unwrap_or_default()
}
