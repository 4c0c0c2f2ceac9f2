//! Findings of the abstract run as miette diagnostics.

use miette::{Diagnostic, LabeledSpan};
use thiserror::Error;

use crate::diag::Problem;

use super::findings::{Analysis, Finding, FindingKind};

/// The compatibility model's diagnostics. Messages and help are composed by the model (they name
/// the state, the row and the path); the codes are stable.
#[derive(Debug, Error, Diagnostic)]
pub enum CompatError {
    #[error("{message}")]
    #[diagnostic(code(ktplay::compat::incompatible))]
    Incompatible {
        message: String,
        #[label(collection)]
        labels: Vec<LabeledSpan>,
        #[help]
        help: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::compat::no_row))]
    NoRow {
        message: String,
        #[label(collection)]
        labels: Vec<LabeledSpan>,
        #[help]
        help: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::compat::eol), severity(Warning))]
    Eol {
        message: String,
        #[label(collection)]
        labels: Vec<LabeledSpan>,
        #[help]
        help: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::compat::order), severity(Warning))]
    Order {
        message: String,
        #[label(collection)]
        labels: Vec<LabeledSpan>,
        #[help]
        help: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::compat::forward_only_rollback))]
    ForwardOnlyRollback {
        message: String,
        #[label(collection)]
        labels: Vec<LabeledSpan>,
        #[help]
        help: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::compat::unmodelled_undo), severity(Warning))]
    UnmodelledUndo {
        message: String,
        #[label(collection)]
        labels: Vec<LabeledSpan>,
        #[help]
        help: String,
    },
}

impl CompatError {
    /// The diagnostic for one finding: the primary label on the statement that creates the
    /// state, and (for a finding met only on rollback paths, when it is in the same file) a second
    /// label on the first failure point.
    pub fn from_finding(f: &Finding) -> CompatError {
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            Some(f.label.clone()),
            f.span,
        )];
        if let Some(fp) = &f.first_failure {
            if !f.forward && fp.span.file == f.span.file && fp.span != f.span {
                labels.push(LabeledSpan::new_with_span(
                    Some("if this fails, the rollback passes through that state".into()),
                    fp.span,
                ));
            }
        }
        let (message, help) = (f.message.clone(), f.help.clone());
        match f.kind {
            FindingKind::Incompatible { .. } => CompatError::Incompatible {
                message,
                labels,
                help,
            },
            FindingKind::NoRow { .. } => CompatError::NoRow {
                message,
                labels,
                help,
            },
            FindingKind::Eol { .. } => CompatError::Eol {
                message,
                labels,
                help,
            },
            FindingKind::Order { .. } => CompatError::Order {
                message,
                labels,
                help,
            },
            FindingKind::ForwardOnlyRollback { .. } => CompatError::ForwardOnlyRollback {
                message,
                labels,
                help,
            },
            FindingKind::UnmodelledUndo { .. } => CompatError::UnmodelledUndo {
                message,
                labels,
                help,
            },
        }
    }
}

impl Analysis {
    /// Every finding as a [`Problem`] in the file of its primary span.
    pub fn problems(&self) -> Vec<Problem> {
        self.findings
            .iter()
            .map(|f| Problem::new(f.span.file, CompatError::from_finding(f)))
            .collect()
    }
}
