//! Every file read in one invocation, so spans can name their file by a small id.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::span::FileId;

/// One source file: the path as the user gave it (or as resolved from a `use`), and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as given on the command line or resolved from `use`; printed in diagnostics.
    pub name: String,
    /// The path used to read it (for resolving relative `use` and hook paths).
    pub path: PathBuf,
    pub text: Arc<str>,
}

impl SourceFile {
    /// The folder the file was read from: `use` and hook paths are relative to it.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// The same folder as the user named it, for the names of files found relative to it.
    pub fn shown_dir(&self) -> PathBuf {
        Path::new(&self.name)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// Append-only table of source files.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a file and return its id.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        text: impl Into<Arc<str>>,
    ) -> FileId {
        self.files.push(SourceFile {
            name: name.into(),
            path: path.into(),
            text: text.into(),
        });
        FileId(self.files.len() as u32 - 1)
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// The id of an already-added file with this path, if any.
    pub fn find(&self, path: &Path) -> Option<FileId> {
        self.files
            .iter()
            .position(|f| f.path == path)
            .map(|i| FileId(i as u32))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        line_col(&self.get(id).text, offset)
    }
}

/// 1-based line and column (in characters) of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let col = text
        .get(line_start..offset)
        .map_or(offset - line_start, |s| s.chars().count())
        + 1;
    (line, col)
}
