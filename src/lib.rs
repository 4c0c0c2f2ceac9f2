//! ktplay: zero-downtime upgrades of multi-component Kubernetes systems, written as playbooks.
//!
//! The pipeline (see ARCHITECTURE.md): [`syntax`] turns text into an AST, [`check`] turns the AST
//! into a checked program plus diagnostics (including the compatibility [`model`] over the
//! [`matrix`]), and the runner turns the program into effects on a cluster. [`sim`] is the
//! simulated cluster used by `rehearse`, `sim serve` and the tests.

pub mod check;
pub(crate) mod cli;
pub(crate) mod describe;
pub mod diag;
pub mod exit;
pub mod explain;
pub mod fleet_plan;
pub mod fmt;
pub(crate) mod heap;
pub(crate) mod lsp;
pub mod matrix;
pub mod migrate;
pub mod model;
pub mod plan;
pub mod program;
pub(crate) mod redact;
pub mod rehearse;
pub(crate) mod resolve;
pub mod run;
pub mod script;
pub use ktplay_sim as sim;
pub(crate) mod source;
pub mod span;
pub mod syntax;
pub mod version;

/// The command line: `main` parses it ([`Cli::from_env`]), runs it ([`run_cli`], the process's
/// exit code) and reports panics from a closed stdout quietly ([`quiet_on_broken_pipe`]).
pub use cli::{quiet_on_broken_pipe, run as run_cli, Cli};
/// `ktplay lsp`: the language server on stdin and stdout.
pub use lsp::serve_stdio;
