//! What miette is given to draw a diagnostic: only the lines its labels touch (and one line of
//! context either side), read through the file's line index, with very long lines cut to a window
//! around the labels.
//!
//! Handing miette the whole file costs a scan of the file per diagnostic (quadratic over a file
//! with many problems), and its renderer panics on columns past 65,535; an excerpt costs the size
//! of the lines shown, and no column in it is ever that large.

use std::ops::Range;

use miette::{LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

use crate::source::SourceFile;

/// Lines longer than this (in bytes) are shown as a window around their labels.
pub(super) const LONG_LINE: usize = 512;
/// Bytes kept before the first label on a long line, and the most kept in total.
const WINDOW_BEFORE: usize = 80;
const WINDOW_MAX: usize = 240;
/// Lines shown either side of a label (miette's default context).
const CONTEXT: usize = 1;
/// Lines between two labels' contexts up to which the lines between are shown too.
const GAP: usize = 4;
const ELLIPSIS: &str = "…";
/// Labels over more lines than this are shown on their first line.
const MAX_LABEL_LINES: usize = 8;

/// One line of the excerpt.
struct Line {
    /// Where its text starts in [`Excerpt::text`].
    start: usize,
    /// Its length in the excerpt (without the `\n`).
    len: usize,
    /// 0-based line number in the file.
    number: usize,
    /// Byte offset in the file of the first byte shown (after any leading `…`).
    file_start: usize,
    /// Bytes of the file line shown, starting at `file_start`.
    shown: usize,
    /// Length of the leading `…` (0 or 3).
    lead: usize,
    /// Byte column in the file of `file_start`.
    col_base: usize,
}

/// A few lines of one file, with labels mapped into them.
pub(super) struct Excerpt {
    name: String,
    text: String,
    lines: Vec<Line>,
}

impl Excerpt {
    /// The excerpt for these labels (file offsets), and the labels moved into it.
    /// Secrets in the lines shown are masked (`redact`, before any line is cut to a window).
    pub(super) fn new(
        file: &SourceFile,
        labels: &[LabeledSpan],
        redact: &crate::redact::Redactor,
    ) -> (Excerpt, Vec<LabeledSpan>) {
        let src = &*file.text;
        let mut ranges: Vec<Range<usize>> = Vec::new();
        // The empty "line" after a final line break is shown only when a label is on it.
        let last_line = file.line_count() - 1;
        let last_context = if last_line > 0 && src.ends_with('\n') {
            last_line - 1
        } else {
            last_line
        };
        // A label over many lines is shown on its first line only.
        let clamped: Vec<(usize, usize)> = labels
            .iter()
            .map(|l| {
                let start = l.offset().min(src.len());
                let end = (start + l.len()).min(src.len());
                let line = file.line_of(start);
                if file.line_of(end) > line + MAX_LABEL_LINES {
                    (start, file.line_range(line).end.max(start))
                } else {
                    (start, end)
                }
            })
            .collect();
        let mut spans = clamped.clone();
        spans.sort_unstable();
        for &(start, end) in &spans {
            let first = file.line_of(start).saturating_sub(CONTEXT);
            // A label that takes in a line break reaches the next line (as miette counts).
            let own = if end > start && src.as_bytes()[end - 1] != b'\n' {
                file.line_of(end - 1)
            } else {
                file.line_of(end)
            };
            let last = own.max((own + CONTEXT).min(last_context)).min(last_line);
            match ranges.last_mut() {
                Some(r) if first <= r.end + GAP => r.end = r.end.max(last),
                _ => ranges.push(first..last),
            }
        }
        let mut ex = Excerpt {
            name: file.name.clone(),
            text: String::new(),
            lines: Vec::new(),
        };
        for r in ranges {
            for n in r.start..=r.end {
                ex.push_line(file, n, &spans, redact);
            }
        }
        let moved = labels
            .iter()
            .zip(&clamped)
            .map(|(l, &(s, e))| {
                let start = ex.map(s);
                let end = ex.map(e).max(start);
                let label = l.label().map(String::from);
                if l.primary() {
                    LabeledSpan::new_primary_with_span(label, start..end)
                } else {
                    LabeledSpan::new_with_span(label, start..end)
                }
            })
            .collect();
        (ex, moved)
    }

    fn push_line(
        &mut self,
        file: &SourceFile,
        n: usize,
        spans: &[(usize, usize)],
        redact: &crate::redact::Redactor,
    ) {
        let src = &*file.text;
        let range = file.line_range(n);
        // The whole line masked first (same byte lengths), then cut: a window never leaves a
        // secret's prefix behind.
        let masked;
        let line: &str = if redact.is_empty() {
            &src[range.clone()]
        } else {
            masked = redact.mask(&src[range.clone()]);
            &masked
        };
        let (mut from, mut to) = (range.start, range.end);
        let mut lead = 0;
        if to - from > LONG_LINE {
            // The window starts a little before the first label that touches this line.
            let anchor = spans
                .iter()
                .find(|&&(s, e)| e >= range.start && s <= range.end)
                .map_or(range.start, |&(s, _)| s.max(range.start));
            from = floor(src, anchor.saturating_sub(WINDOW_BEFORE).max(range.start));
            to = floor(src, (from + WINDOW_MAX).min(range.end));
        }
        let start = self.text.len();
        if from > range.start {
            self.text.push_str(ELLIPSIS);
            lead = ELLIPSIS.len();
        }
        // ASCII control characters other than tabs (a lone `\r`, escapes) would move miette's
        // columns or the terminal; each is shown as one space, so offsets stay the same.
        self.text
            .extend(line[from - range.start..to - range.start].chars().map(|c| {
                if c.is_ascii_control() && c != '\t' {
                    ' '
                } else {
                    c
                }
            }));
        let shown = to - from;
        if to < range.end {
            self.text.push_str(ELLIPSIS);
        }
        self.lines.push(Line {
            start,
            len: self.text.len() - start,
            number: n,
            file_start: from,
            shown,
            lead,
            col_base: from - range.start,
        });
        self.text.push('\n');
    }

    /// A file offset as an offset into the excerpt (clamped into the window of its line).
    fn map(&self, offset: usize) -> usize {
        let i = self
            .lines
            .partition_point(|l| l.file_start <= offset)
            .saturating_sub(1);
        let Some(l) = self.lines.get(i) else {
            return 0;
        };
        if offset < l.file_start {
            return l.start;
        }
        if offset - l.file_start > l.shown {
            // Past the window (or the line's end): the end of what is shown.
            return l.start + l.len;
        }
        l.start + l.lead + (offset - l.file_start)
    }

    /// The excerpt line holding excerpt offset `offset`.
    fn line_at(&self, offset: usize) -> usize {
        self.lines
            .partition_point(|l| l.start <= offset)
            .saturating_sub(1)
    }
}

/// The largest char boundary of `s` at or before `i`.
fn floor(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        if self.lines.is_empty() {
            return Err(MietteError::OutOfBounds);
        }
        let start = span.offset();
        let end = start + span.len();
        if end > self.text.len() {
            return Err(MietteError::OutOfBounds);
        }
        let first = self.line_at(start);
        let last = if end > start && self.text.as_bytes()[end - 1] != b'\n' {
            self.line_at(end - 1)
        } else {
            self.line_at(end.min(self.text.len().saturating_sub(1)))
        };
        // Stay inside one run of consecutive file lines, so line numbers stay true.
        let mut a = first;
        while a > 0 && first - a < before && self.lines[a - 1].number + 1 == self.lines[a].number {
            a -= 1;
        }
        let mut b = last;
        while b + 1 < self.lines.len()
            && b - last < after
            && self.lines[b].number + 1 == self.lines[b + 1].number
        {
            b += 1;
        }
        let data_start = if before == 0 {
            start
        } else {
            self.lines[a].start
        };
        let data_end = (self.lines[b].start + self.lines[b].len + 1).min(self.text.len());
        let la = &self.lines[if before == 0 { first } else { a }];
        // The column in the file, as miette counts it (bytes); only the header uses it.
        let column = if before == 0 {
            la.col_base + (start - la.start).saturating_sub(la.lead)
        } else {
            0
        };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            &self.text.as_bytes()[data_start..data_end],
            (data_start, data_end - data_start).into(),
            la.number,
            column,
            b - a + 1,
        )))
    }
}
