//! The runner: a checked playbook → effects on a cluster (issue 5).
//!
//! | module | what it holds |
//! |---|---|
//! | [`driver`] | the loop: stages, statements, failure and rollback (nothing imports it but the CLI) |
//! | [`context`] | what a run shares: playbook, cluster handle, options, the event [`context::Log`] |
//! | [`admit`] | before the journal and the lock: approvals, secrets, promotion gate, preflight |
//! | [`live`] | live versions and colours, the matrix check before each action, "as this run left it" |
//! | [`actions`] | one function per action: (context, statement) → detail or [`RunError`] |
//! | [`canary`] | a canary's time: pin, route, steps with guard rounds, promotion |
//! | `unwind` | when a statement fails: halt, roll back (or resume a rollback), or stop on a lost lock |
//! | [`restore`] | rollback steps: restore a [`rollback::Record`], `undo` to the first state |
//! | [`rollback`] | records of what actions replaced, and the pure rollback plan |
//! | [`fleet`] | a fleet driven: waves, batches of runs, the watched soak, approvals, the failure policy (clusters given by the caller) |
//! | [`signals`] | Ctrl-C / SIGTERM / SIGHUP from the first moment |
//! | [`monitor`] | the disruption monitor: probes during the run, budgets, reports |
//! | [`shown`] | cluster-supplied values (lease holders, journal lines) escaped for printing |
//! | [`log`] | the event log: [`log::events`] (the typed vocabulary), [`log::journal`], [`log::output`] |
//! | [`kube`] | the kube layer: the [`kube::Cluster`] handle, [`kube::lock`], [`kube::preflight`], [`kube::traffic`] (routers) |
//! | [`guards`] | http, logs and ready guards, `approve`; [`guards::env`] (what guards need), [`guards::client`] (HTTP, URL rewrite), [`guards::metric`] + [`guards::tally`] + [`guards::prometheus`], [`guards::script`] (Rhai in the sandbox, `ClusterHost`) |
//!
//! The simulator wiring (`rehearse`, generic services, `ktplay test`) is [`crate::rehearse`], a
//! sibling this module never imports.
//!
//! Exit codes ([`Outcome::exit`], the one table of [`crate::exit`]): 0 success; 1 failed and
//! fully rolled back; 2 usage or I/O; 3 refused before any action; 4 failed and the rollback is
//! incomplete, halted or stopped by a second signal; 5 the run lock was lost.

pub(crate) mod actions;
pub(crate) mod admit;
pub(crate) mod canary;
pub(crate) mod context;
pub(crate) mod driver;
pub(crate) mod fleet;
pub mod guards;
pub mod kube;
pub(crate) mod live;
pub(crate) mod log;
pub(crate) mod monitor;
pub(crate) mod restore;
pub(crate) mod rollback;
pub(crate) mod shown;
pub(crate) mod signals;
mod unwind;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use context::{RunOptions, RunTarget};
pub use driver::execute;

/// Exit codes: one table for every command.
use crate::exit::Exit;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every statement passed.
    Succeeded,
    /// A statement failed and every rollback step succeeded.
    RolledBack,
    /// A statement failed and a rollback step failed (or a second Ctrl-C stopped it).
    RollbackIncomplete,
    /// A statement failed under `on_failure halt`: nothing was rolled back.
    Halted,
    /// Refused before any action: why, and what to do (the message redacted).
    Refused(admit::Refusal),
    /// Usage or I/O error: why.
    Usage(String),
    /// This process lost the run lock mid-run and stopped changing anything.
    LockLost,
}

impl Outcome {
    /// How the command ends ([`Exit::code`] the number).
    pub fn exit(&self) -> Exit {
        match self {
            Outcome::Succeeded => Exit::Ok,
            Outcome::RolledBack => Exit::Failed,
            Outcome::RollbackIncomplete | Outcome::Halted => Exit::Incomplete,
            Outcome::Refused(_) => Exit::Refused,
            Outcome::Usage(_) => Exit::Usage,
            Outcome::LockLost => Exit::LockLost,
        }
    }

    /// The journal's word for it.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::RolledBack => "rolled_back",
            Outcome::RollbackIncomplete => "rollback_incomplete",
            Outcome::Halted => "halted",
            Outcome::Refused(_) => "refused",
            Outcome::Usage(_) => "error",
            Outcome::LockLost => "lock_lost",
        }
    }
}

/// Ctrl-C as a value: the number of interrupts so far. The first abandons the current
/// statement (waits and retries stop) and the run rolls back; the second stops at once.
#[derive(Clone)]
pub struct Cancel {
    tx: Arc<watch::Sender<u8>>,
    rx: watch::Receiver<u8>,
    /// The caller handles signals (`ktplay test`): the run installs no handler of its own.
    signals_elsewhere: bool,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::new()
    }
}

impl Cancel {
    pub fn new() -> Cancel {
        let (tx, rx) = watch::channel(0);
        Cancel {
            tx: Arc::new(tx),
            rx,
            signals_elsewhere: false,
        }
    }

    /// One for a run whose caller handles the signals (the run installs no handler).
    pub fn signals_handled_by_caller() -> Cancel {
        Cancel {
            signals_elsewhere: true,
            ..Cancel::new()
        }
    }

    /// Does the run leave signals to its caller?
    pub fn signals_elsewhere(&self) -> bool {
        self.signals_elsewhere
    }

    /// Count one interrupt; returns how many there have been.
    pub fn interrupt(&self) -> u8 {
        let mut n = 0;
        self.tx.send_modify(|c| {
            *c = c.saturating_add(1);
            n = *c;
        });
        n
    }

    /// Has the run been interrupted?
    pub fn interrupted(&self) -> bool {
        *self.rx.borrow() >= 1
    }

    /// Resolves once the run is interrupted.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|n| *n >= 1).await;
    }

    /// Sleep, cut short by an interrupt; false if interrupted.
    pub async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.wait() => false,
        }
    }
}

/// Replaces every secret value (and its JSON- and URL-encoded forms) by `(secret)`: applied to
/// every line printed or journaled and to every error message. See [`crate::redact`].
pub use crate::redact::Redactor;

/// What kind of failure a statement met: control flow matches on this, never on the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The statement failed (a guard, a rollout, the API): roll back.
    Failed,
    /// The live compatibility check refused the action before it acted.
    Refused,
    /// A signal (Ctrl-C, SIGTERM, SIGHUP) abandoned the statement: roll back.
    Interrupted,
    /// This process no longer holds the run lock: it must not change anything more (no
    /// rollback either: the new holder owns the system).
    LockLost,
}

/// A statement that failed, with what a person needs to act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    pub help: Option<String>,
    /// Retrying cannot help (`within` stops at once).
    pub permanent: bool,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Failed,
            message: message.into(),
            help: None,
            permanent: false,
        }
    }
    /// The live check said no: nothing was done.
    pub fn refused(message: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Refused,
            permanent: true,
            ..Failure::new(message)
        }
    }
    pub fn help(mut self, help: impl Into<String>) -> Failure {
        self.help = Some(help.into());
        self
    }
    pub fn interrupted() -> Failure {
        Failure {
            kind: FailureKind::Interrupted,
            permanent: true,
            ..Failure::new("interrupted (Ctrl-C, SIGTERM or SIGHUP): the statement was abandoned")
        }
    }
    pub fn is(&self, kind: FailureKind) -> bool {
        self.kind == kind
    }
    /// The failure at a statement of the playbook.
    pub fn at(self, span: crate::span::Span) -> RunError {
        RunError {
            span,
            failure: self,
        }
    }
}

/// A failure at a statement (or a guard inside one) of the playbook: what actions return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError {
    pub span: crate::span::Span,
    pub failure: Failure,
}

impl From<kube::ClusterError> for Failure {
    fn from(e: kube::ClusterError) -> Failure {
        match e {
            kube::ClusterError::Interrupted => Failure::interrupted(),
            kube::ClusterError::LockLost(why) => Failure {
                kind: FailureKind::LockLost,
                permanent: true,
                ..Failure::new(format!("stopped: the run lock was lost ({why})")).help(
                    "this process changes nothing more, and rolls nothing back: the lock's new holder owns the system (see `ktplay status`)",
                )
            },
            kube::ClusterError::NotOurs(m) => Failure::refused(m).help(kube::NOT_OURS_HELP),
            other => Failure::new(other.to_string()),
        }
    }
}

/// A runtime error pointing at the playbook line, rendered like a compile error.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
#[diagnostic(code(ktplay::run::failed))]
pub struct StatementError {
    pub message: String,
    #[help]
    pub help: Option<String>,
    #[label("{label}")]
    pub span: miette::SourceSpan,
    pub label: String,
}

/// Render a failure at a span of the playbook, like a compile error.
pub fn render_failure(
    sources: &crate::source::SourceMap,
    span: crate::span::Span,
    message: &str,
    help: Option<&str>,
    label: &str,
    colour: bool,
) -> String {
    let problem = crate::diag::Problem::new(
        span.file,
        StatementError {
            message: message.to_string(),
            help: help.map(String::from),
            span: span.into(),
            label: label.to_string(),
        },
    );
    crate::diag::render(
        sources,
        &[problem],
        crate::diag::RenderOptions {
            colour,
            width: std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(100),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_replaces_longest_first() {
        let r = Redactor::new(["abc".to_string(), "abcdef".to_string(), String::new()]);
        assert_eq!(r.redact("x abcdef y abc"), "x (secret) y (secret)");
    }

    #[tokio::test]
    async fn cancel_counts() {
        let c = Cancel::new();
        assert!(!c.interrupted());
        assert!(c.sleep(Duration::from_millis(1)).await);
        assert_eq!(c.interrupt(), 1);
        assert!(c.interrupted());
        assert!(!c.sleep(Duration::from_secs(5)).await);
        assert_eq!(c.interrupt(), 2);
    }
}
