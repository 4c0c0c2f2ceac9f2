//! Command-line interface: argument parsing and the commands, each mapping its outcome to an
//! exit code. The library's stages do the work; this module only wires them to the terminal.
//! `cli::run` holds the commands that reach a cluster (`run`, `rehearse`, `status`, `unlock`,
//! `sim serve`): the CLI depends on the runner, never the other way round.

mod args;
mod fleet;
mod fmt;
mod run;
mod sim_app;
mod sim_serve;
mod test;

use std::io::{IsTerminal, Write};

pub use args::*;

use crate::check;
use crate::diag::{self, JsonDiagnostic, RenderOptions};

use crate::exit::Exit;

fn colour_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

/// A reader that went away (`ktplay status | head -1`) ends the process quietly, as a tool
/// killed by SIGPIPE does (exit 141), instead of a panic from `println!`. Rust ignores SIGPIPE, so
/// a write to a closed pipe fails with EPIPE and `println!` panics on it; every other panic is
/// reported as before.
pub fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = crate::diag::panic_message(info.payload());
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(Exit::BrokenPipe.code());
        }
        default(info)
    }));
}

/// Run the parsed command line; returns the process exit code (the one place a command's
/// [`Exit`] becomes a number).
pub fn run(cli: Cli) -> i32 {
    dispatch(cli).code()
}

fn dispatch(cli: Cli) -> Exit {
    check::set_allow_outside(cli.allow_outside);
    match cli.command {
        Command::Check(args) => cmd_check(args),
        Command::Fmt(args) => fmt::cmd_fmt(args),
        Command::Lsp => crate::lsp::serve_stdio(),
        Command::Explain { code } => cmd_explain(code.as_deref()),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "ktplay", &mut std::io::stdout());
            Exit::Ok
        }
        Command::Plan(args) => cmd_plan(args),
        Command::Matrix(cmd) => cmd_matrix(cmd),
        Command::Run(args) => run::cmd_run(args),
        Command::Rehearse(args) => run::cmd_rehearse(args),
        Command::Test(args) => test::cmd_test(args),
        Command::Status(args) => run::cmd_status(args),
        Command::Unlock(args) => run::cmd_unlock(args),
        Command::Sim(SimCommand::Serve {
            port,
            kubeconfig,
            seed,
            env,
            fault,
            pace,
        }) => sim_serve::cmd_sim_serve(port, kubeconfig, seed, env, fault, pace),
        Command::Sim(SimCommand::App(args)) => sim_app::cmd_sim_app(*args),
    }
}

fn cmd_check(args: CheckArgs) -> Exit {
    crate::heap::grow_in_large_steps();
    let mut checked = match check::lint_paths(&args.paths) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return Exit::Usage;
        }
    };
    if let Some(url) = &args.database {
        crate::migrate::db::check_all(&mut checked, url);
    }
    let errors = checked.errors();
    let warnings = checked.warnings();
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    match args.format {
        CheckFormat::Sarif => {
            let doc = diag::ci::sarif(&checked.sources, &checked.problems);
            print_json(&doc, JsonLayout::Pretty);
        }
        CheckFormat::Github => {
            print!("{}", diag::ci::github(&checked.sources, &checked.problems));
        }
        CheckFormat::Json => {
            let diagnostics: Vec<JsonDiagnostic> = checked
                .problems
                .iter()
                .map(|p| JsonDiagnostic::new(&checked.sources, p))
                .collect();
            let mut doc = serde_json::json!({
                "files": checked.inputs.len(),
                "errors": errors,
                "warnings": warnings,
                "diagnostics": diagnostics,
            });
            if !checked.migrations.is_empty() {
                doc["migrations"] = serde_json::json!(checked.migrations);
            }
            print_json(&doc, JsonLayout::Compact);
        }
        CheckFormat::Human => {
            // Under GitHub Actions the annotations go along, as ansible-lint does.
            if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
                print!("{}", diag::ci::github(&checked.sources, &checked.problems));
            }
            let opts = RenderOptions {
                colour: colour_wanted(),
                width: terminal_width(),
            };
            use std::fmt::Write as _;
            let mut text = diag::render(&checked.sources, &checked.problems, opts);
            for m in &checked.migrations {
                let _ = writeln!(
                    text,
                    "migrations: {} {} → {}: {} new file{}, linted by {}; changes that break {}: {}",
                    m.component,
                    m.from,
                    m.to,
                    m.new_files.len(),
                    plural(m.new_files.len()),
                    m.linter,
                    m.from,
                    m.breaking
                );
                if let Some(d) = &m.database {
                    let _ = writeln!(text, "database: {} {}: {d}", m.component, m.to);
                }
            }
            let files = checked.inputs.len();
            let _ = writeln!(
                text,
                "{}: {} file{} checked, {} error{}, {} warning{}",
                if failed { "failed" } else { "ok" },
                files,
                plural(files),
                errors,
                plural(errors),
                warnings,
                plural(warnings)
            );
            // One write: stderr is unbuffered, and the summary alone was 13 `write` calls (each
            // a wake-up of whatever reads the pipe, and a line others' output could split).
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }
    // The process ends now: freeing every tree and program one by one would cost more than
    // the lowering of a playbook (7% of checking 100).
    std::mem::forget(checked);
    if failed {
        Exit::Failed
    } else {
        Exit::Ok
    }
}

fn cmd_explain(code: Option<&str>) -> Exit {
    let Some(code) = code else {
        print!("{}", crate::explain::list());
        return Exit::Ok;
    };
    match crate::explain::find(code) {
        Some(entry) => {
            print!("{}", entry.render());
            Exit::Ok
        }
        None => {
            let last = code.rsplit("::").next().unwrap_or(code);
            let hint = check::names::did_you_mean(
                last,
                crate::explain::ENTRIES
                    .iter()
                    .filter_map(|e| e.code.rsplit("::").next()),
            )
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
            eprintln!("error: no diagnostic code `{code}`{hint}; `ktplay explain` lists them all");
            Exit::Usage
        }
    }
}

/// How [`print_json`] lays a document out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonLayout {
    Compact,
    Pretty,
}

/// A JSON document and a newline on stdout, written whole: `println!("{doc:#}")` went through
/// the line-buffered stdout a line at a time (6,965 `write` calls for a 212 KB SARIF log).
pub(crate) fn print_json(doc: &serde_json::Value, layout: JsonLayout) {
    let mut text = match layout {
        JsonLayout::Compact => doc.to_string(),
        JsonLayout::Pretty => format!("{doc:#}"),
    };
    text.push('\n');
    // `print!` of one string is one write of its complete lines; a closed pipe ends the process
    // as every other print does (`quiet_on_broken_pipe`).
    print!("{text}");
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn report_problems(checked: &check::Checked) {
    let opts = RenderOptions {
        colour: colour_wanted(),
        width: terminal_width(),
    };
    eprint!(
        "{}",
        diag::render(&checked.sources, &checked.problems, opts)
    );
}

/// Check one file; an unreadable file is a usage error, check errors are reported and end in
/// `failed: N errors; {consequence}` (exit 1).
pub(crate) fn checked_clean(
    file: &std::path::Path,
    consequence: &str,
) -> Result<check::Checked, Exit> {
    let checked = match check::check_paths(&[file.to_path_buf()]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return Err(Exit::Usage);
        }
    };
    if checked.errors() > 0 {
        report_problems(&checked);
        eprintln!(
            "failed: {} error{}; {consequence}",
            checked.errors(),
            plural(checked.errors())
        );
        return Err(Exit::Failed);
    }
    Ok(checked)
}

/// Check one file and pick one playbook from it; on failure, the exit code.
pub(crate) fn load_playbook(
    file: &std::path::Path,
    name: Option<&str>,
) -> Result<(check::Checked, usize), Exit> {
    let checked = checked_clean(file, "nothing planned")?;
    match checked.select_playbook(name) {
        Ok(i) => Ok((checked, i)),
        Err(e) => {
            eprintln!("error: `{}`: {e}", file.display());
            Err(Exit::Usage)
        }
    }
}

/// The env named on the command line; `None` is fine only for playbooks without envs.
pub(crate) fn pick_env<'a>(
    pb: &'a crate::program::Playbook,
    env: Option<&str>,
) -> Result<Option<&'a crate::program::Env>, Exit> {
    check::select::select_env(pb, env).map_err(|e| {
        eprintln!("error: {e}");
        Exit::Usage
    })
}

fn cmd_plan(args: PlanArgs) -> Exit {
    if let Some(code) = fleet::plan(&args) {
        return code;
    }
    let (checked, i) = match load_playbook(&args.file, args.playbook.as_deref()) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let (file, pb) = &checked.playbooks[i];
    let env = match pick_env(pb, args.env.as_deref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let plan = crate::plan::plan(pb, env, &checked.sources, *file);
    let read_cluster =
        args.cluster || args.kube.context.is_some() || args.kube.kubeconfig.is_some();
    let hazards = if read_cluster {
        match run::plan_hazards(&args, pb, env) {
            Ok(h) => Some(h),
            Err(code) => return code,
        }
    } else {
        None
    };
    let settings = args.hazard.settings().unwrap_or_default();
    let found = hazards.as_deref().unwrap_or_default();
    let problems: Vec<diag::Problem> = found
        .iter()
        .map(|f| crate::run::kube::hazard_report::problem(pb, f))
        .collect();
    match args.format {
        CheckFormat::Json => {
            let mut doc = serde_json::to_value(&plan).expect("plan serializes");
            if hazards.is_some() {
                let list: Vec<serde_json::Value> = found
                    .iter()
                    .map(|f| {
                        let mut v = serde_json::to_value(f).expect("hazard serializes");
                        v["code"] = serde_json::json!(f.hazard.code.code());
                        v["line"] = serde_json::json!(
                            checked
                                .sources
                                .line_col(f.span.file, f.span.start as usize)
                                .0
                        );
                        v["statement_words"] =
                            serde_json::json!(crate::run::kube::hazards::statement_words(pb, f));
                        v
                    })
                    .collect();
                doc["hazards"] = serde_json::json!(list);
            }
            println!("{}", serde_json::to_string(&doc).expect("plan serializes"));
        }
        CheckFormat::Sarif => {
            print_json(
                &diag::ci::sarif(&checked.sources, &problems),
                JsonLayout::Pretty,
            );
        }
        CheckFormat::Github => {
            print!("{}", diag::ci::github(&checked.sources, &problems));
        }
        CheckFormat::Human => {
            if !checked.problems.is_empty() {
                report_problems(&checked);
            }
            print!("{}", crate::plan::render_human(&plan));
            if hazards.is_some() {
                if !problems.is_empty() {
                    let opts = RenderOptions {
                        colour: colour_wanted(),
                        width: terminal_width(),
                    };
                    eprint!("{}", diag::render(&checked.sources, &problems, opts));
                }
                println!(
                    "Hazards: {} found in the live objects{}",
                    found.len(),
                    if found.is_empty() {
                        " (none predicts dropped requests)"
                    } else {
                        " (see above; `ktplay explain CODE` for each)"
                    }
                );
            }
        }
    }
    if !crate::run::kube::hazards::refusing(&settings, found).is_empty() {
        return Exit::Failed;
    }
    Exit::Ok
}

fn cmd_matrix(cmd: MatrixCommand) -> Exit {
    let (name, file) = match &cmd {
        MatrixCommand::Show { name, file } => (name.clone(), file.clone()),
        MatrixCommand::Check { matrix, file, .. } => (matrix.clone(), file.clone()),
    };
    let matrix = match find_matrix(name.as_deref(), file.as_deref()) {
        Ok(m) => m,
        Err(code) => return code,
    };
    match cmd {
        MatrixCommand::Show { .. } => {
            print!("{}", crate::matrix::render_table(&matrix));
            Exit::Ok
        }
        MatrixCommand::Check { state, .. } => {
            let mut parsed = crate::matrix::State::new();
            for item in &state {
                let Some((comp, versions)) = item.split_once('=') else {
                    eprintln!("error: `{item}` is not COMPONENT=VERSION[,VERSION…], like api=1.5.0 or gateway=1.4.1,1.5.0");
                    return Exit::Usage;
                };
                let mut set = std::collections::BTreeSet::new();
                for v in versions.split(',') {
                    match crate::version::Version::parse(v.trim()) {
                        Ok(v) => {
                            set.insert(v);
                        }
                        Err(e) => {
                            eprintln!("error: `{v}` (for {comp}) is not a version: {e}");
                            return Exit::Usage;
                        }
                    }
                }
                let comp = comp.trim();
                if !matrix.takes_part(comp) {
                    let mut known = vec![matrix.hub.as_str()];
                    known.extend(matrix.columns());
                    let hint = check::names::did_you_mean(comp, known.iter().copied())
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                    eprintln!(
                        "error: `{comp}` is not a component of the matrix `{}`{hint}; it knows: {}",
                        matrix.name,
                        known.join(", ")
                    );
                    return Exit::Usage;
                }
                parsed.insert(comp.to_string(), set);
            }
            let (ok, why) = crate::matrix::explain(&matrix, &parsed);
            print!("{why}");
            if !why.ends_with('\n') {
                println!();
            }
            if ok {
                Exit::Ok
            } else {
                Exit::Failed
            }
        }
    }
}

/// The matrix a command means: `name` if given; else the one the `--file`'s playbooks name, or
/// the only one it declares or uses; else the built-in `keeptrusts`.
fn find_matrix(
    name: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<crate::matrix::Matrix, Exit> {
    let (scope, named_by_file) = match file {
        Some(f) => {
            let checked = match check::check_paths(&[f.to_path_buf()]) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{:?}", miette::Report::new(e));
                    return Err(Exit::Usage);
                }
            };
            if checked.errors() > 0 {
                report_problems(&checked);
                return Err(Exit::Failed);
            }
            let mut named: Vec<String> = checked
                .playbooks
                .iter()
                .filter_map(|(_, p)| p.matrix.clone())
                .collect();
            named.sort();
            named.dedup();
            let scope = checked.scopes.into_iter().next().expect("one input file");
            (scope, Some(named))
        }
        None => (check::matrices::InScope::builtins(), None),
    };
    let chosen: String = match (name, named_by_file) {
        (Some(n), _) => n.to_string(),
        (None, None) => "keeptrusts".into(),
        (None, Some(named)) => {
            let declared: Vec<String> = scope.declared().iter().map(|m| m.name.clone()).collect();
            match (named.as_slice(), declared.as_slice()) {
                ([one], _) => one.clone(),
                ([], [one]) => one.clone(),
                ([], []) => "keeptrusts".into(),
                (several, _) => {
                    let names = if several.is_empty() {
                        &declared
                    } else {
                        &named
                    };
                    eprintln!(
                        "error: `{}` has several matrices; choose one with --matrix: {}",
                        file.map(|f| f.display().to_string()).unwrap_or_default(),
                        names.join(", ")
                    );
                    return Err(Exit::Usage);
                }
            }
        }
    };
    scope.get(&chosen).cloned().ok_or_else(|| {
        let names = scope.names();
        let hint = check::names::did_you_mean(&chosen, names.iter().map(String::as_str))
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        eprintln!(
            "error: no matrix `{chosen}`{hint}; known: {}",
            names.join(", ")
        );
        Exit::Usage
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::Parser;

    fn args(a: &[&str]) -> Vec<std::ffi::OsString> {
        a.iter().map(Into::into).collect()
    }

    #[test]
    fn the_check_only_parser_agrees_with_the_whole_one() {
        let lines: &[&[&str]] = &[
            &["ktplay", "check", "a.ktplay"],
            &[
                "ktplay",
                "check",
                "--deny-warnings",
                "--format",
                "json",
                "a",
                "b/",
            ],
            &["ktplay", "check", "--format=sarif", "d/"],
            &["ktplay", "check", "a", "--format", "github"],
            &["ktplay", "check", "--", "--odd-name.ktplay"],
        ];
        for a in lines {
            let fast = Cli::check_only(&args(a)).expect("the check-only parser takes it");
            let full = Cli::try_parse_from(args(a)).expect("the whole parser takes it");
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{a:?}");
        }
    }

    #[test]
    fn what_it_does_not_take_goes_to_the_whole_parser() {
        let cases: &[(&[&str], ErrorKind)] = &[
            (&["ktplay", "check", "--help"], ErrorKind::DisplayHelp),
            (&["ktplay", "check", "--version"], ErrorKind::DisplayVersion),
            (&["ktplay", "check"], ErrorKind::MissingRequiredArgument),
            (
                &["ktplay", "check", "--format", "nope", "a"],
                ErrorKind::InvalidValue,
            ),
            (
                &["ktplay", "check", "--bogus", "a"],
                ErrorKind::UnknownArgument,
            ),
        ];
        for (a, kind) in cases {
            assert!(Cli::check_only(&args(a)).is_none(), "{a:?}");
            let e = Cli::try_parse_from(args(a)).expect_err("the whole parser refuses it too");
            assert_eq!(e.kind(), *kind, "{a:?}");
        }
        assert!(Cli::check_only(&args(&["ktplay", "plan", "a.ktplay"])).is_none());
        assert!(Cli::check_only(&args(&["ktplay"])).is_none());
    }
}
