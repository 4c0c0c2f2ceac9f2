//! Reading the input files: command-line paths expanded, files read with limits, and which
//! files a playbook may name (its tree, `--allow-outside`, never pseudo-files or FIFOs).

use std::path::{Path, PathBuf};

/// A path on the command line that cannot be read at all (exit code 2, not a diagnostic).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum InputError {
    #[error("cannot read `{path}`: {reason}")]
    #[diagnostic(code(ktplay::io::unreadable))]
    Unreadable { path: String, reason: String },
    #[error("`{path}` holds no .ktplay files")]
    #[diagnostic(
        code(ktplay::io::empty_dir),
        help("name .ktplay files, or folders that contain them")
    )]
    EmptyDir { path: String },
}

/// A short reason for an I/O error, without the OS error number noise.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "is a directory".into(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_string()
        }
    }
}

/// Largest file `check` reads; anything larger is refused with a clear error, not read.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// `--allow-outside`: files a playbook names (`use`, `guard hook`, a test's `playbook`) may lie
/// outside its tree.
static ALLOW_OUTSIDE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Let playbooks name files outside their tree (`--allow-outside`), for this process.
pub fn set_allow_outside(allow: bool) {
    ALLOW_OUTSIDE.store(allow, std::sync::atomic::Ordering::Relaxed);
}

/// The tree of a playbook file in `dir`: the repository it is in (the nearest folder above it,
/// itself included, holding `.git`), or its own folder when it is in none.
pub fn tree_of(dir: &Path) -> PathBuf {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(&dir)
        .to_path_buf()
}

/// May a file in `from_dir` name `target` (`use`, `guard hook`, a test's `playbook`)? Only a
/// file inside its tree ([`tree_of`], after following links), unless `--allow-outside`; never a
/// file under `/proc`, `/sys` or `/dev`, and never anything but a regular file. `Err` says why,
/// before anything is opened.
pub fn admit_reference(from_dir: &Path, target: &Path) -> Result<(), String> {
    let Ok(canonical) = std::fs::canonicalize(target) else {
        // Missing: the read says so.
        return Ok(());
    };
    regular_file(&canonical).map_err(|e| e.to_string())?;
    if ALLOW_OUTSIDE.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let tree = tree_of(from_dir);
    if canonical.starts_with(&tree) {
        Ok(())
    } else {
        Err(format!(
            "it is outside the playbook's tree `{}` (the repository it is in, or its folder), so it is not read; pass --allow-outside to read files outside it",
            tree.display()
        ))
    }
}

/// `--allow-outside` was given.
pub fn allow_outside() -> bool {
    ALLOW_OUTSIDE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Kernel pseudo-file systems: their files say they are regular and hold the process's
/// environment, memory maps, devices.
const PSEUDO: [&str; 3] = ["/proc", "/sys", "/dev"];

/// `Ok` for a regular file outside the pseudo-file systems; else why it is refused, found
/// without opening it (opening a FIFO blocks, reading a device or `/proc` may never end or
/// print secrets).
fn regular_file(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    }
    let refused = |what: &str| {
        Err(std::io::Error::other(format!(
            "{what}, not a regular file; refused without reading"
        )))
    };
    if !meta.is_file() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            let t = meta.file_type();
            if t.is_fifo() {
                return refused("a FIFO");
            }
            if t.is_socket() {
                return refused("a socket");
            }
            if t.is_char_device() || t.is_block_device() {
                return refused("a device");
            }
        }
        return refused("a special file");
    }
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if PSEUDO.iter().any(|p| canonical.starts_with(p)) {
        return refused("a kernel pseudo-file");
    }
    Ok(())
}

/// Read a file, refusing folders and files over [`MAX_FILE_BYTES`]. One open and one `fstat`:
/// a check of many files is mostly system calls and parsing.
pub(crate) fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // FIFOs, devices and /proc files are refused before they are opened.
    regular_file(path)?;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    }
    let too_big = |len: u64| {
        std::io::Error::other(format!(
            "{len} bytes; playbooks larger than {} MiB are refused",
            MAX_FILE_BYTES / (1024 * 1024)
        ))
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
    // Capped as it is read too: the file may grow after the `fstat`.
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "grew past {} MiB while being read; playbooks that large are refused",
            MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    // A file of size 0 that has content is a pseudo-file (procfs mounted elsewhere).
    if meta.len() == 0 && !bytes.is_empty() {
        return Err(std::io::Error::other(
            "a pseudo-file (its size is 0 but it has content), not a regular file; refused",
        ));
    }
    Ok(bytes)
}

/// Expand command-line paths: files as they are, folders searched for `*.ktplay`, sorted.
pub fn expand_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| InputError::Unreadable {
            path: p.display().to_string(),
            reason: io_reason(&e),
        })?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found).map_err(|e| InputError::Unreadable {
                path: p.display().to_string(),
                reason: io_reason(&e),
            })?;
            if found.is_empty() {
                return Err(InputError::EmptyDir {
                    path: p.display().to_string(),
                });
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "ktplay") {
            out.push(path);
        }
    }
    Ok(())
}
