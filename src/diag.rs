//! Problems found by any stage, and their rendering (miette, no colour for tests) and JSON form.
//!
//! Each stage has its own error enum deriving `thiserror::Error` and `miette::Diagnostic`, with a
//! stable `code(ktplay::<stage>::<name>)`, `#[label]` spans (byte offsets into one file) and a help
//! line. A [`Problem`] pairs such a diagnostic with the file its labels point into.

pub mod ci;
mod excerpt;

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

use crate::source::SourceMap;

/// A diagnostic with the excerpt of its file attached, so miette can show the snippet; its
/// labels are moved into the excerpt.
struct WithSource<'a> {
    inner: &'a (dyn Diagnostic + Send + Sync),
    source: &'a excerpt::Excerpt,
    labels: Vec<miette::LabeledSpan>,
}

impl std::fmt::Debug for WithSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.inner, f)
    }
}
impl std::fmt::Display for WithSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Redacted before it is shortened: a cut first could leave a secret's prefix behind.
        let message = crate::redact::for_output().redact(&self.inner.to_string());
        f.write_str(&shorten(&message, MAX_MESSAGE))
    }
}

/// Messages quote what the file says; a 70,000-character name is shown by its ends.
const MAX_MESSAGE: usize = 400;

/// `text` if at most `max` characters, else its start and end around a `…`.
pub fn shorten(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max * 2 / 3).collect();
    let tail: String = text.chars().skip(n - max / 3).collect();
    format!("{head}…{tail}")
}
impl std::error::Error for WithSource<'_> {}

impl Diagnostic for WithSource<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.inner.code()
    }
    fn severity(&self) -> Option<Severity> {
        self.inner.severity()
    }
    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.inner.help()
    }
    fn url<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.inner.url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn Diagnostic> + 'b>> {
        // No diagnostic of ktplay has related ones; their labels would point outside the excerpt.
        None
    }
    fn diagnostic_source(&self) -> Option<&dyn Diagnostic> {
        self.inner.diagnostic_source()
    }
}

/// How diagnostics are drawn for people.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    pub colour: bool,
    pub width: usize,
}

impl RenderOptions {
    /// The form used by snapshot tests: no colour, 80 columns.
    pub fn plain() -> Self {
        RenderOptions {
            colour: false,
            width: 80,
        }
    }
}

/// Render problems for a person, in order, each with its file snippet.
pub fn render(sources: &SourceMap, problems: &[Problem], opts: RenderOptions) -> String {
    let theme = if opts.colour {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme)
        .with_width(opts.width)
        .with_links(false);
    let mut out = String::new();
    // Secrets of this machine never appear in what is printed about files (issue 20).
    let redact = crate::redact::for_output();
    for p in problems {
        let file = sources.get(p.file);
        let labels: Vec<miette::LabeledSpan> =
            p.inner.labels().map(|l| l.collect()).unwrap_or_default();
        let (source, labels) = excerpt::Excerpt::new(file, &labels, &redact);
        let d = WithSource {
            inner: p.inner.as_ref(),
            source: &source,
            labels,
        };
        // A renderer that fails (or panics) must not take the report down: say the problem
        // plainly instead.
        let mut one = String::new();
        let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.render_report(&mut one, &d)
        }));
        match drawn {
            Ok(Ok(())) => out.push_str(&one),
            _ => {
                let (line, col) = file.line_col(p.primary_range().map_or(0, |r| r.0));
                out.push_str(&format!(
                    "{}: {}:{line}:{col}: {}\n",
                    match p.severity() {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                        Severity::Advice => "advice",
                    },
                    file.name,
                    p.inner
                ));
            }
        }
    }
    if redact.is_empty() {
        out
    } else {
        redact.redact(&out)
    }
}

/// One problem in the public JSON form of `check --format json`.
#[derive(Debug, serde::Serialize)]
pub struct JsonDiagnostic {
    pub severity: &'static str,
    pub code: String,
    pub message: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub help: Option<String>,
}

impl JsonDiagnostic {
    pub fn new(sources: &SourceMap, p: &Problem) -> Self {
        let file = sources.get(p.file);
        let (start, end) = p.primary_range().unwrap_or((0, 0));
        let (line, column) = file.line_col(start);
        let (end_line, end_column) = file.line_col(end);
        JsonDiagnostic {
            severity: match p.severity() {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Advice => "advice",
            },
            code: p.code(),
            message: crate::redact::for_output().redact(&p.inner.to_string()),
            file: file.name.clone(),
            line,
            column,
            end_line,
            end_column,
            help: p
                .inner
                .help()
                .map(|h| crate::redact::for_output().redact(&h.to_string())),
        }
    }
}

/// A bug in ktplay met while checking (a panic in a stage): reported as an error, so an internal
/// failure can never read as a clean check.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("internal error while {stage}: {message}")]
#[diagnostic(
    code(ktplay::internal::panic),
    help("this is a bug in ktplay, not in the playbook; please report it with the file")
)]
pub struct InternalError {
    pub stage: &'static str,
    pub message: String,
}

/// Run `f`; a panic inside becomes an [`InternalError`] for `stage` instead of unwinding.
pub fn guarded<T>(stage: &'static str, f: impl FnOnce() -> T) -> Result<T, InternalError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| InternalError {
        stage,
        message: panic_message(payload.as_ref()),
    })
}

/// The text of a panic payload (`panic!("…")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}
