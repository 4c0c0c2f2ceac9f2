//! `ktplay test PATH...`: every `test` item found (or those `--test NAME` names), each on its
//! own simulator and virtual clock ([`crate::rehearse::suite`]); one line per test, failures rendered
//! at their `expect` line with what failed in the run, a summary, and `--junit FILE`. A test
//! whose run passes `--time-limit` of simulated time fails; a signal fails the test that runs,
//! skips the rest and exits 128 + its number (130 for Ctrl-C, 143 for SIGTERM).

use std::time::Duration;

use super::TestArgs;
use crate::check::{self, test_items::Test, Checked};
use crate::diag::{self, Problem};
use crate::exit::Exit;
use crate::rehearse::suite::{self, Cut, Interrupt, Settings, TestResult};
use crate::run::log::output::fmt_elapsed;

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

/// A test whose run was cut short (the time limit, a signal).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{0}")]
#[diagnostic(code(ktplay::test::failed))]
struct CutShort(String, #[label("this test")] miette::SourceSpan);

/// A test that could not run at all.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("the test could not run: {0}")]
#[diagnostic(code(ktplay::test::error))]
struct NotRun(String, #[label("this test")] miette::SourceSpan);

pub(super) fn cmd_test(args: TestArgs) -> Exit {
    // Signals are ours from the start: one fails the test that runs and ends the suite.
    let interrupt = match Interrupt::watch_signals() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: cannot handle signals: {e}");
            return Exit::Usage;
        }
    };
    let checked = match check::check_paths(&args.paths) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return Exit::Usage;
        }
    };
    if checked.errors() > 0 {
        super::report_problems(&checked);
        eprintln!(
            "failed: {} error{}; no test was run",
            checked.errors(),
            super::plural(checked.errors())
        );
        return Exit::Failed;
    }
    if checked.tests.is_empty() {
        eprintln!("error: no `test` items in the files named");
        return Exit::Usage;
    }
    for name in &args.only {
        if !checked.tests.iter().any(|(_, t)| &t.name == name) {
            let names: Vec<&str> = checked.tests.iter().map(|(_, t)| t.name.as_str()).collect();
            let hint = crate::check::names::did_you_mean(name, names.iter().copied())
                .unwrap_or_else(|| {
                    format!(
                        "the tests: {}",
                        names
                            .iter()
                            .map(|n| format!("\"{n}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
            eprintln!("error: no test named \"{name}\" in the files named; {hint}");
            return Exit::Usage;
        }
    }
    let chosen: Vec<&(crate::span::FileId, Test)> = checked
        .tests
        .iter()
        .filter(|(_, t)| args.only.is_empty() || args.only.contains(&t.name))
        .collect();
    let settings = Settings {
        limits: suite::Limits {
            time: args.time_limit,
        },
        interrupt: interrupt.clone(),
        verbose: args.verbose,
    };
    let wall = std::time::Instant::now();
    let mut results = Vec::new();
    let mut simulated = Duration::ZERO;
    for (file, test) in chosen.iter().copied() {
        if interrupt.signal().is_some() {
            break;
        }
        if args.verbose {
            println!("── test \"{}\"", test.name);
        }
        let r = suite::run_test(&checked, test, &settings);
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
    let signal = interrupt.signal();
    let not_run: Vec<(crate::span::FileId, &Test)> = chosen
        .iter()
        .skip(results.len())
        .map(|(f, t)| (*f, t))
        .collect();
    let failed = results.iter().filter(|(_, _, r)| !r.passed()).count();
    let mut summary = format!(
        "\n{} test{}: {} passed, {failed} failed",
        chosen.len(),
        super::plural(chosen.len()),
        results.len() - failed,
    );
    if !not_run.is_empty() {
        summary.push_str(&format!(", {} not run", not_run.len()));
    }
    if let Some(n) = signal {
        summary.push_str(&format!(" — interrupted by {}", suite::signal_name(n)));
    }
    println!(
        "{summary} (simulated {}, wall {})",
        fmt_elapsed(simulated),
        fmt_elapsed(wall.elapsed())
    );
    if let Some(path) = &args.junit {
        if let Err(e) = std::fs::write(path, junit(&checked, &results, &not_run, signal)) {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            return Exit::Usage;
        }
    }
    if let Some(n) = signal {
        eprintln!(
            "interrupted by {}: the test suite failed ({} test{} not run)",
            suite::signal_name(n),
            not_run.len(),
            super::plural(not_run.len())
        );
        return Exit::Signal(n);
    }
    if failed == 0 {
        Exit::Ok
    } else {
        Exit::Failed
    }
}

fn problems_of(file: crate::span::FileId, test: &Test, r: &TestResult) -> Vec<Problem> {
    match &r.ran {
        Err(e) => vec![Problem::new(file, NotRun(e.to_string(), test.span.into()))],
        Ok(ran) if ran.cut.is_some() => {
            let why = ran.cut.as_ref().map(|(_, w)| w.clone()).unwrap_or_default();
            vec![Problem::new(file, CutShort(why, test.span.into()))]
        }
        Ok(ran) => r
            .misses
            .iter()
            .map(|m| {
                // What failed in the run, unless the message already says it.
                let help = ran
                    .failure
                    .as_ref()
                    .filter(|f| !m.instead.contains(f.as_str()))
                    .map(|f| format!("in the run: {f}"));
                Problem::new(
                    file,
                    Unmet {
                        instead: m.instead.clone(),
                        span: test.expects[m.expect].span.into(),
                        help,
                    },
                )
            })
            .collect(),
    }
}

/// JUnit XML: one testsuite per file, one testcase per test; a failure names the expectation
/// and its playbook line.
fn junit(
    checked: &Checked,
    results: &[(crate::span::FileId, &Test, TestResult)],
    not_run: &[(crate::span::FileId, &Test)],
    signal: Option<i32>,
) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("ktplay test");
    let mut files: Vec<crate::span::FileId> = results
        .iter()
        .map(|(f, _, _)| *f)
        .chain(not_run.iter().map(|(f, _)| *f))
        .collect();
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
                Ok(ran) if ran.cut.is_some() => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let (cut, why) = ran
                        .cut
                        .clone()
                        .unwrap_or((Cut::TimeLimit(Duration::ZERO), String::new()));
                    s.set_message(format!("{name}:{}: {why}", line(test.span)));
                    s.set_type(match cut {
                        Cut::TimeLimit(_) => "time_limit",
                        Cut::Signal(_) => "interrupted",
                    });
                    s
                }
                Ok(_) if r.misses.is_empty() => TestCaseStatus::success(),
                Ok(ran) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let m = &r.misses[0];
                    s.set_message(format!(
                        "{name}:{}: {}",
                        line(test.expects[m.expect].span),
                        m.instead
                    ));
                    s.set_type("expectation");
                    let mut lines: Vec<String> = r
                        .misses
                        .iter()
                        .map(|m| {
                            format!(
                                "{name}:{}: {}",
                                line(test.expects[m.expect].span),
                                m.instead
                            )
                        })
                        .collect();
                    if let Some(f) = &ran.failure {
                        lines.push(format!("in the run: {f}"));
                    }
                    s.set_description(lines.join("\n"));
                    s
                }
            };
            let mut case = TestCase::new(test.name.clone(), status);
            case.set_classname(name.clone());
            if let Ok(ran) = &r.ran {
                case.set_time(ran.wall);
                // The disruption monitors' numbers: properties, and a line each in system-out.
                for m in &ran.monitors {
                    let p = |k: &str, v: String| {
                        quick_junit::Property::new(format!("monitor.{}.{k}", m.name), v)
                    };
                    case.add_property(p("requests", m.requests.to_string()));
                    case.add_property(p("failures", m.failures.to_string()));
                    case.add_property(p("refused", m.refused.to_string()));
                    case.add_property(p("reset", m.reset.to_string()));
                    case.add_property(p("timeout", m.timeout.to_string()));
                    case.add_property(p("status", m.status.to_string()));
                    case.add_property(p("longest_outage_ms", m.longest_outage_ms.to_string()));
                    for (k, v) in [
                        ("p50_ms", m.p50_ms),
                        ("p90_ms", m.p90_ms),
                        ("p99_ms", m.p99_ms),
                    ] {
                        if let Some(v) = v {
                            case.add_property(p(k, format!("{v:.1}")));
                        }
                    }
                    case.add_property(p("verdict", m.verdict.clone()));
                }
                if !ran.monitors.is_empty() {
                    let out: Vec<String> = ran
                        .monitors
                        .iter()
                        .map(|m| {
                            format!(
                                "monitor {} ({}): {}; {}",
                                m.name,
                                m.probe,
                                m.words(),
                                m.verdict
                            )
                        })
                        .collect();
                    case.set_system_out(out.join("\n"));
                }
            }
            suite.add_test_case(case);
        }
        for (_, test) in not_run.iter().filter(|(g, _)| *g == f) {
            let mut s = TestCaseStatus::skipped();
            s.set_message(match signal {
                Some(n) => format!(
                    "not run: the suite was interrupted by {}",
                    crate::rehearse::suite::signal_name(n)
                ),
                None => "not run".to_string(),
            });
            let mut case = TestCase::new(test.name.clone(), s);
            case.set_classname(name.clone());
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string().unwrap_or_default()
}
