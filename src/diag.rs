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

use crate::source::{line_col, SourceMap};

/// A diagnostic with its file attached, so miette can show the snippet.
struct WithSource<'a> {
    inner: &'a (dyn Diagnostic + Send + Sync),
    source: &'a miette::NamedSource<String>,
}

impl std::fmt::Debug for WithSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.inner, f)
    }
}
impl std::fmt::Display for WithSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.inner, f)
    }
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
        self.inner.labels()
    }
    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn Diagnostic> + 'b>> {
        self.inner.related()
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
    for p in problems {
        let file = sources.get(p.file);
        let named = miette::NamedSource::new(file.name.clone(), file.text.to_string());
        let d = WithSource {
            inner: p.inner.as_ref(),
            source: &named,
        };
        if handler.render_report(&mut out, &d).is_err() {
            out.push_str(&format!("{}: {}\n", file.name, p.inner));
        }
    }
    out
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
        let (line, column) = line_col(&file.text, start);
        let (end_line, end_column) = line_col(&file.text, end);
        JsonDiagnostic {
            severity: match p.severity() {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Advice => "advice",
            },
            code: p.code(),
            message: p.inner.to_string(),
            file: file.name.clone(),
            line,
            column,
            end_line,
            end_column,
            help: p.inner.help().map(|h| h.to_string()),
        }
    }
}
