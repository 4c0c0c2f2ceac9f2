//! Problems found by any stage, and their rendering (miette, no colour for tests) and JSON form.
//!
//! Each stage has its own error enum deriving `thiserror::Error` and `miette::Diagnostic`, with a
//! stable `code(ktplay::<stage>::<name>)`, `#[label]` spans (byte offsets into one file) and a help
//! line. A [`Problem`] pairs such a diagnostic with the file its labels point into.

use miette::{Diagnostic, Severity};

use crate::span::FileId;

/// A diagnostic plus the file its labels point into.
pub struct Problem {
    pub file: FileId,
    pub inner: Box<dyn Diagnostic + Send + Sync + 'static>,
}

impl Problem {
    pub fn new(file: FileId, d: impl Diagnostic + Send + Sync + 'static) -> Self {
        Problem {
            file,
            inner: Box::new(d),
        }
    }

    /// Errors unless the diagnostic says otherwise.
    pub fn severity(&self) -> Severity {
        self.inner.severity().unwrap_or(Severity::Error)
    }

    pub fn is_error(&self) -> bool {
        self.severity() == Severity::Error
    }

    /// The stable code, e.g. `ktplay::check::unknown_component`.
    pub fn code(&self) -> String {
        self.inner.code().map(|c| c.to_string()).unwrap_or_default()
    }

    /// The first label's byte range, if any.
    pub fn primary_range(&self) -> Option<(usize, usize)> {
        let mut labels = self.inner.labels()?;
        let first = labels.next()?;
        Some((first.offset(), first.offset() + first.len()))
    }
}

impl std::fmt::Debug for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.inner)
    }
}
