//! Rhai hooks: one sandboxed engine for custom checks.
//!
//! Scripts are compiled during `check` ([`compile`]: syntax errors and calls to functions that do
//! not exist, each a diagnostic on the script's own text) and run by the interpreter ([`run`],
//! on a blocking thread) against a [`Host`] that reaches HTTP and the cluster read-only.
//!
//! The sandbox: `Engine::new_raw()` plus the standard package only (no file system, no module
//! resolver), `eval` and `import` disabled, strict variables, limits on operations, call depth,
//! expression depth, string, array and map sizes, and a wall-clock deadline and cancellation
//! checked through `on_progress`. Secrets reach scripts only as an opaque type that prints as
//! `(secret)` and can be used only as a header value or bearer token.

mod api;
pub mod budget;
mod compile;
mod host;
pub mod reach;
mod sandbox;

pub use api::{HttpResponse, PodInfo, API_FUNCTIONS};
pub use compile::{compile, problems, ScriptError, ScriptSource};
pub use host::{Host, HostError};
pub use sandbox::{run, Context, HookFailure, Limits, Outcome};
