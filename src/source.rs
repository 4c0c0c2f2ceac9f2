//! Every file read in one invocation, so spans can name their file by a small id.

use foldhash::HashMap;
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
    /// Byte offsets of line starts, built on first use (rendering, JSON positions).
    lines: std::sync::OnceLock<Arc<[u32]>>,
}

impl SourceFile {
    /// Byte offsets where each line starts (the first is 0). Built once per file, so positions
    /// of many diagnostics cost a binary search each, not a scan of the file.
    pub fn line_starts(&self) -> &[u32] {
        self.lines.get_or_init(|| {
            std::iter::once(0)
                .chain(memchr_lines(self.text.as_bytes()))
                .collect()
        })
    }

    /// 0-based index of the line holding byte `offset` (clamped to the text).
    pub fn line_of(&self, offset: usize) -> usize {
        let starts = self.line_starts();
        let offset = offset.min(self.text.len()) as u32;
        starts.partition_point(|&s| s <= offset).saturating_sub(1)
    }

    /// Byte range of line `i` (0-based) without its line break.
    pub fn line_range(&self, i: usize) -> std::ops::Range<usize> {
        let starts = self.line_starts();
        let start = starts[i.min(starts.len() - 1)] as usize;
        let mut end = starts
            .get(i + 1)
            .map_or(self.text.len(), |&s| s as usize - 1);
        if end > start && self.text.as_bytes()[end - 1] == b'\r' {
            end -= 1;
        }
        start..end
    }

    /// Number of lines (a text without a line break has one).
    pub fn line_count(&self) -> usize {
        self.line_starts().len()
    }

    /// 1-based line and column (in characters) of a byte offset, by the line index.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_of(offset);
        let start = self.line_starts()[line] as usize;
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

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
    /// The first file added under each path (`find` is called once per file read).
    by_path: HashMap<PathBuf, FileId>,
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
        let id = FileId(self.files.len() as u32);
        let path = path.into();
        self.by_path.entry(path.clone()).or_insert(id);
        self.files.push(SourceFile {
            name: name.into(),
            path,
            text: text.into(),
            lines: Default::default(),
        });
        id
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// The id of an already-added file with this path, if any.
    pub fn find(&self, path: &Path) -> Option<FileId> {
        self.by_path.get(path).copied()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        self.get(id).line_col(offset)
    }
}

/// Offsets just after each `\n`.
fn memchr_lines(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_answers_the_first_file_added_under_a_path() {
        let mut map = SourceMap::new();
        let a = map.add("a.ktplay", "/x/a.ktplay", "one");
        let b = map.add("b.ktplay", "/x/b.ktplay", "two");
        let again = map.add("./a.ktplay", "/x/a.ktplay", "three");
        assert_ne!(a, again);
        assert_eq!(map.find(Path::new("/x/a.ktplay")), Some(a));
        assert_eq!(map.find(Path::new("/x/b.ktplay")), Some(b));
        assert_eq!(map.find(Path::new("/x/c.ktplay")), None);
    }
}
