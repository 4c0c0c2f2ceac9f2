//! Why a rehearsal (a playbook's, a test's, a fleet's) could not run: the one error of
//! [`crate::rehearse`]. A run that ran and failed is an `Outcome`, not this.

/// A rehearsal that could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RehearseError {
    /// The simulator's listener on loopback.
    #[error("cannot start the simulator: {0}")]
    Start(String),
    /// `sim serve`'s listener or kubeconfig, as miette renders the report.
    #[error("{0}")]
    Serve(String),
    #[error("cannot start a runtime: {0}")]
    Runtime(String),
    /// A fleet rehearsal's `--fault` that does not parse.
    #[error("fault `{spec}`: {cause}")]
    Fault { spec: String, cause: String },
    /// The fleet driver's refusal (`on failure rollback fleet`) or a failed read of a
    /// simulated cluster.
    #[error("{0}")]
    Fleet(String),
    /// Reading the simulated cluster afterwards (its lock, journal or versions).
    #[error("{0}")]
    Read(String),
}

impl RehearseError {
    /// A failed read of the simulated cluster, in the words of its error.
    pub(crate) fn read(e: impl std::fmt::Display) -> RehearseError {
        RehearseError::Read(e.to_string())
    }
}
