//! Command-line interface: argument parsing and the commands, each mapping its outcome to an
//! exit code. The library's stages do the work; this module only wires them to the terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::check;
use crate::diag::{self, JsonDiagnostic, RenderOptions};

/// Zero-downtime upgrades of multi-component Kubernetes systems, written as playbooks.
#[derive(Debug, Parser)]
#[command(name = "ktplay", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check playbooks for errors without touching any cluster (for CI).
    Check(CheckArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Playbook files, or folders searched for *.ktplay files.
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    pub paths: Vec<PathBuf>,
    /// Count warnings as errors.
    #[arg(long)]
    pub deny_warnings: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Exit codes of `check` and `plan`.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FOUND_ERRORS: i32 = 1;
    pub const USAGE: i32 = 2;
}

fn colour_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

/// Run the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Check(args) => cmd_check(args),
    }
}

fn cmd_check(args: CheckArgs) -> i32 {
    let checked = match check::check_paths(&args.paths) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return exit::USAGE;
        }
    };
    let errors = checked.errors();
    let warnings = checked.warnings();
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    match args.format {
        Format::Json => {
            let diagnostics: Vec<JsonDiagnostic> = checked
                .problems
                .iter()
                .map(|p| JsonDiagnostic::new(&checked.sources, p))
                .collect();
            let doc = serde_json::json!({
                "files": checked.inputs.len(),
                "errors": errors,
                "warnings": warnings,
                "diagnostics": diagnostics,
            });
            println!("{doc}");
        }
        Format::Human => {
            let opts = RenderOptions {
                colour: colour_wanted(),
                width: terminal_width(),
            };
            let text = diag::render(&checked.sources, &checked.problems, opts);
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(text.as_bytes());
            let files = checked.inputs.len();
            let _ = writeln!(
                err,
                "{}: {} file{} checked, {} error{}, {} warning{}",
                if failed { "failed" } else { "ok" },
                files,
                plural(files),
                errors,
                plural(errors),
                warnings,
                plural(warnings)
            );
        }
    }
    if failed {
        exit::FOUND_ERRORS
    } else {
        exit::OK
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
