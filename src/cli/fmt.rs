//! `ktplay fmt`: rewrite files in the canonical layout (`crate::fmt`), or say which would change.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::diag::{self, Problem, RenderOptions};
use crate::exit::Exit;
use crate::source::SourceMap;
use crate::span::FileId;

#[derive(Debug, clap::Args)]
pub struct FmtArgs {
    /// Playbook files, folders searched for *.ktplay files, or `-` for stdin to stdout.
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    pub paths: Vec<PathBuf>,
    /// Change nothing; list the files that are not formatted and exit 1 if there are any.
    #[arg(long)]
    pub check: bool,
    /// Change nothing; show the change each file needs as a unified diff (exit 1 if any).
    #[arg(long)]
    pub diff: bool,
}

pub(super) fn cmd_fmt(args: FmtArgs) -> Exit {
    if args.paths.iter().any(|p| p.as_os_str() == "-") {
        if args.paths.len() > 1 {
            eprintln!("error: `-` (stdin) cannot be combined with other paths");
            return Exit::Usage;
        }
        return fmt_stdin(&args);
    }
    let files = match crate::check::expand_inputs(&args.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return Exit::Usage;
        }
    };
    let mut changed = 0;
    let mut broken = 0;
    for path in &files {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                eprintln!("error: cannot read `{}`: {e}", path.display());
                return Exit::Usage;
            }
        };
        let Ok(text) = String::from_utf8(text) else {
            eprintln!(
                "error: `{}` is not UTF-8 text; `ktplay check` shows where",
                path.display()
            );
            broken += 1;
            continue;
        };
        let formatted = match crate::fmt::format(&text) {
            Ok(f) => f,
            Err(_) => {
                report_syntax_errors(path, &text);
                broken += 1;
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        changed += 1;
        let name = path.display().to_string();
        if args.diff {
            print!("{}", unified_diff(&name, &text, &formatted));
        } else if args.check {
            println!("{name}");
        } else if let Err(e) = std::fs::write(path, &formatted) {
            eprintln!("error: cannot write `{name}`: {e}");
            return Exit::Usage;
        } else {
            println!("formatted {name}");
        }
    }
    let _ = std::io::stdout().flush();
    if broken > 0 {
        eprintln!(
            "failed: {broken} file{} not formatted (syntax errors)",
            if broken == 1 { "" } else { "s" }
        );
        return Exit::Failed;
    }
    if changed > 0 && (args.check || args.diff) {
        eprintln!(
            "{changed} of {} file{} not formatted; `ktplay fmt` rewrites {}",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            if changed == 1 { "it" } else { "them" }
        );
        return Exit::Failed;
    }
    Exit::Ok
}

fn fmt_stdin(args: &FmtArgs) -> Exit {
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("error: cannot read stdin as UTF-8 text: {e}");
        return Exit::Usage;
    }
    let Ok(formatted) = crate::fmt::format(&text) else {
        report_syntax_errors(Path::new("<stdin>"), &text);
        return Exit::Failed;
    };
    if args.check || args.diff {
        if formatted == text {
            return Exit::Ok;
        }
        if args.diff {
            print!("{}", unified_diff("<stdin>", &text, &formatted));
        } else {
            println!("<stdin>");
        }
        return Exit::Failed;
    }
    print!("{formatted}");
    Exit::Ok
}

fn unified_diff(name: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(name, &format!("{name} (formatted)"))
        .to_string()
}

/// The syntax errors that keep a file from being formatted, drawn as `check` draws them.
fn report_syntax_errors(path: &Path, text: &str) {
    let mut sources = SourceMap::new();
    let id: FileId = sources.add(path.display().to_string(), path, text);
    let problems: Vec<Problem> = match crate::syntax::parse(id, text) {
        Err(errors) => errors.into_iter().map(|e| Problem::new(id, e)).collect(),
        Ok(_) => Vec::new(),
    };
    if problems.is_empty() {
        eprintln!(
            "error: `{}` does not parse; `ktplay check` shows why",
            path.display()
        );
        return;
    }
    let opts = RenderOptions {
        colour: super::colour_wanted(),
        width: super::terminal_width(),
    };
    eprint!("{}", diag::render(&sources, &problems, opts));
}
