//! Hazards as diagnostics (issue 22): at the playbook statement that meets them, with a stable
//! code each, so `plan --cluster` renders them like `check`'s (human, JSON, SARIF, GitHub).

use miette::{Diagnostic, Severity as MSeverity, SourceSpan};

use crate::diag::Problem;
use crate::program::Playbook;

use super::hazard_rules::{Code, Severity};
use super::hazards::{statement_words, Found};

/// One diagnostic per hazard code.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub(crate) enum HazardDiag {
    #[error("{message}")]
    #[diagnostic(code(ktplay::hazard::no_readiness_probe))]
    NoReadinessProbe {
        message: String,
        #[help]
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::hazard::no_prestop))]
    NoPrestop {
        message: String,
        #[help]
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::hazard::short_prestop))]
    ShortPrestop {
        message: String,
        #[help]
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::hazard::grace_too_short))]
    GraceTooShort {
        message: String,
        #[help]
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::hazard::takes_every_replica))]
    TakesEveryReplica {
        message: String,
        #[help]
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::hazard::no_progress))]
    NoProgress {
        message: String,
        #[help]
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::hazard::pdb_violated))]
    PdbViolated {
        message: String,
        #[help]
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::hazard::no_pdb))]
    NoPdb {
        message: String,
        #[help]
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::hazard::progress_deadline))]
    ProgressDeadline {
        message: String,
        #[help]
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::hazard::idle_at_zero))]
    IdleAtZero {
        message: String,
        #[help]
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::hazard::canary_not_selected))]
    CanaryNotSelected {
        message: String,
        #[help]
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },
    #[error("{message}")]
    #[diagnostic(code(ktplay::hazard::unreadable))]
    Unreadable {
        message: String,
        #[help]
        help: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
    },
}

/// A hazard's diagnostic with its severity (a code's severity may depend on the objects).
#[derive(Debug, thiserror::Error)]
#[error("{diag}")]
pub(crate) struct HazardProblem {
    diag: HazardDiag,
    severity: Severity,
}

impl Diagnostic for HazardProblem {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.diag.code()
    }
    fn severity(&self) -> Option<MSeverity> {
        Some(match self.severity {
            Severity::Error => MSeverity::Error,
            Severity::Warning => MSeverity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.diag.help()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.diag.labels()
    }
}

/// The diagnostic of a found hazard, at its statement.
pub(crate) fn problem(pb: &Playbook, f: &Found) -> Problem {
    let h = &f.hazard;
    let object = if h.name.is_empty() {
        h.kind.clone()
    } else {
        format!("{} `{}`", h.kind, h.name)
    };
    let message = if h.field.is_empty() {
        format!("{object}: {}", h.message)
    } else {
        format!("{object}, {}: {}", h.field, h.message)
    };
    let help = h.help.clone();
    let span: SourceSpan = f.span.into();
    let label = format!("`{}` meets this", statement_words(pb, f));
    let diag = match h.code {
        Code::NoReadinessProbe => HazardDiag::NoReadinessProbe {
            message,
            help,
            span,
            label,
        },
        Code::NoPrestop => HazardDiag::NoPrestop {
            message,
            help,
            span,
            label,
        },
        Code::ShortPrestop => HazardDiag::ShortPrestop {
            message,
            help,
            span,
            label,
        },
        Code::GraceTooShort => HazardDiag::GraceTooShort {
            message,
            help,
            span,
            label,
        },
        Code::TakesEveryReplica => HazardDiag::TakesEveryReplica {
            message,
            help,
            span,
            label,
        },
        Code::NoProgress => HazardDiag::NoProgress {
            message,
            help,
            span,
            label,
        },
        Code::PdbViolated => HazardDiag::PdbViolated {
            message,
            help,
            span,
            label,
        },
        Code::NoPdb => HazardDiag::NoPdb {
            message,
            help,
            span,
            label,
        },
        Code::ProgressDeadline => HazardDiag::ProgressDeadline {
            message,
            help,
            span,
            label,
        },
        Code::IdleAtZero => HazardDiag::IdleAtZero {
            message,
            help,
            span,
            label,
        },
        Code::CanaryNotSelected => HazardDiag::CanaryNotSelected {
            message,
            help,
            span,
            label,
        },
        Code::Unreadable => HazardDiag::Unreadable {
            message,
            help,
            span,
            label,
        },
    };
    Problem::new(
        f.span.file,
        HazardProblem {
            diag,
            severity: h.severity,
        },
    )
}
