//! Finding a component's migration files. Paths are hostile input: a path that leads out of
//! the playbook's tree (`..`, absolute, a symlink out) is an error naming it; anything but a
//! regular file is refused before it is opened; a file over 16 MiB is refused by its size,
//! unread.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{MigrateError, PathRef, Spec, SqlFile};
use crate::version::Version;

/// The largest migration or queries file read.
pub const MAX_SQL_BYTES: u64 = 16 * 1024 * 1024;

/// Every migration file of `spec`, placed in its release and in apply order (version, then
/// name); the text of those up to `to` read.
pub fn discover(
    spec: &Spec,
    base_dir: &Path,
    to: &Version,
    problems: &mut Vec<MigrateError>,
) -> Vec<SqlFile> {
    let mut found: Vec<SqlFile> = Vec::new();
    let push = |found: &mut Vec<SqlFile>, f: SqlFile| {
        if !found.iter().any(|g| g.path == f.path) {
            found.push(f);
        }
    };
    // Explicit lists first: they win over names.
    for (version, refs) in &spec.releases {
        for r in refs {
            if let Some(path) = admit(r, base_dir, problems) {
                push(
                    &mut found,
                    SqlFile {
                        shown: r.shown.clone(),
                        path,
                        version: version.clone(),
                        text: None,
                        origin: r.span,
                    },
                );
            }
        }
    }
    // The queries file may sit beside the migrations: it is not one.
    let queries = (spec.queries.as_ref()).and_then(|q| std::fs::canonicalize(&q.path).ok());
    for r in &spec.files {
        let Some(listed) = list(r, base_dir, problems) else {
            continue;
        };
        if listed.is_empty() {
            problems.push(MigrateError::File {
                path: r.shown.clone(),
                reason: "holds no .sql file".into(),
                span: r.span.into(),
            });
        }
        for (shown, raw) in listed {
            let one = PathRef {
                shown: shown.clone(),
                path: raw,
                span: r.span,
            };
            let Some(path) = admit(&one, base_dir, problems) else {
                continue;
            };
            if found.iter().any(|g| g.path == path) || queries.as_ref() == Some(&path) {
                continue;
            }
            match version_of(&path) {
                Some(version) => push(
                    &mut found,
                    SqlFile {
                        shown,
                        path,
                        version,
                        text: None,
                        origin: r.span,
                    },
                ),
                None => problems.push(MigrateError::File {
                    path: shown,
                    reason: "its release cannot be told: name it `V1_5_0__what.sql`, put it in a folder `1.5.0/`, or list it with `release VERSION \"file\"`".into(),
                    span: r.span.into(),
                }),
            }
        }
    }
    found.sort_by(|a, b| {
        (a.version.cmp(&b.version)).then_with(|| a.path.file_name().cmp(&b.path.file_name()))
    });
    for f in &mut found {
        if f.version <= *to {
            let r = PathRef {
                shown: f.shown.clone(),
                path: f.path.clone(),
                span: f.origin,
            };
            f.text = read(&r, &f.path, problems);
        }
    }
    found
}

/// The queries file (or any one file) read, after the same checks.
pub fn read_one(
    r: &PathRef,
    base_dir: &Path,
    problems: &mut Vec<MigrateError>,
) -> Option<Arc<str>> {
    let path = admit(r, base_dir, problems)?;
    read(r, &path, problems)
}

fn read(r: &PathRef, path: &Path, problems: &mut Vec<MigrateError>) -> Option<Arc<str>> {
    let fail = |problems: &mut Vec<MigrateError>, reason: String| {
        problems.push(MigrateError::File {
            path: r.shown.clone(),
            reason,
            span: r.span.into(),
        })
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            fail(problems, crate::check::io_reason(&e));
            return None;
        }
    };
    if meta.len() > MAX_SQL_BYTES {
        fail(
            problems,
            format!(
                "{} bytes; migration files larger than {} MiB are refused without being read",
                meta.len(),
                MAX_SQL_BYTES / (1024 * 1024)
            ),
        );
        return None;
    }
    match crate::check::read_limited(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Some(s.into()),
            Err(_) => {
                fail(problems, "not UTF-8 text".into());
                None
            }
        },
        Err(e) => {
            fail(problems, crate::check::io_reason(&e));
            None
        }
    }
}

/// The canonical path of a file a playbook names, if it may be read.
fn admit(r: &PathRef, base_dir: &Path, problems: &mut Vec<MigrateError>) -> Option<PathBuf> {
    let fail = |problems: &mut Vec<MigrateError>, reason: String| {
        problems.push(MigrateError::File {
            path: r.shown.clone(),
            reason,
            span: r.span.into(),
        });
        None
    };
    if Path::new(&r.shown).is_absolute() && !crate::check::allow_outside() {
        return fail(
            problems,
            "an absolute path; migration paths are relative to the playbook, inside its tree"
                .into(),
        );
    }
    let canonical = match std::fs::canonicalize(&r.path) {
        Ok(c) => c,
        Err(e) => return fail(problems, crate::check::io_reason(&e)),
    };
    if let Err(reason) = crate::check::admit_reference(base_dir, &r.path) {
        return fail(problems, reason);
    }
    Some(canonical)
}

/// A `files` entry's `.sql` files: a glob (`*` in its last part), a folder (its `.sql`
/// files and those of its version-named subfolders), or one file. Paths as shown and raw.
fn list(
    r: &PathRef,
    base_dir: &Path,
    problems: &mut Vec<MigrateError>,
) -> Option<Vec<(String, PathBuf)>> {
    let fail = |problems: &mut Vec<MigrateError>, reason: String| {
        problems.push(MigrateError::File {
            path: r.shown.clone(),
            reason,
            span: r.span.into(),
        });
        None
    };
    let shown = Path::new(&r.shown);
    let name = shown
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.contains('*') {
        let dir_shown = shown.parent().unwrap_or(Path::new(""));
        let dir = PathRef {
            shown: dir_shown.to_string_lossy().into_owned(),
            path: r.path.parent().unwrap_or(base_dir).to_path_buf(),
            span: r.span,
        };
        admit_dir(&dir, base_dir, problems)?;
        let mut out = Vec::new();
        for (n, p) in entries(&dir.path).unwrap_or_default() {
            if !p.is_dir() && glob_match(&name, &n) {
                out.push((dir_shown.join(&n).to_string_lossy().into_owned(), p));
            }
        }
        return Some(out);
    }
    match std::fs::metadata(&r.path) {
        Err(e) => fail(problems, crate::check::io_reason(&e)),
        Ok(m) if m.is_dir() => {
            admit_dir(r, base_dir, problems)?;
            let mut out = Vec::new();
            for (n, p) in entries(&r.path).unwrap_or_default() {
                if p.is_dir() {
                    if Version::parse(&n).is_ok() {
                        for (m, q) in entries(&p).unwrap_or_default() {
                            if m.ends_with(".sql") && !q.is_dir() {
                                out.push((
                                    shown.join(&n).join(&m).to_string_lossy().into_owned(),
                                    q,
                                ));
                            }
                        }
                    }
                } else if n.ends_with(".sql") {
                    out.push((shown.join(&n).to_string_lossy().into_owned(), p));
                }
            }
            Some(out)
        }
        Ok(_) => Some(vec![(r.shown.clone(), r.path.clone())]),
    }
}

/// A folder named by the playbook must lie inside its tree too (its files are checked each).
fn admit_dir(r: &PathRef, base_dir: &Path, problems: &mut Vec<MigrateError>) -> Option<()> {
    let canonical = match std::fs::canonicalize(&r.path) {
        Ok(c) => c,
        Err(e) => {
            problems.push(MigrateError::File {
                path: r.shown.clone(),
                reason: crate::check::io_reason(&e),
                span: r.span.into(),
            });
            return None;
        }
    };
    if Path::new(&r.shown).is_absolute() && !crate::check::allow_outside() {
        problems.push(MigrateError::File {
            path: r.shown.clone(),
            reason:
                "an absolute path; migration paths are relative to the playbook, inside its tree"
                    .into(),
            span: r.span.into(),
        });
        return None;
    }
    let tree = crate::check::tree_of(base_dir);
    if !canonical.starts_with(&tree) && !crate::check::allow_outside() {
        problems.push(MigrateError::File {
            path: r.shown.clone(),
            reason: format!(
                "it is outside the playbook's tree `{}` (the repository it is in, or its folder), so it is not read; pass --allow-outside to read files outside it",
                tree.display()
            ),
            span: r.span.into(),
        });
        return None;
    }
    Some(())
}

/// A folder's entries, sorted by name.
fn entries(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    Ok(out)
}

/// `*` matches any run of characters (no `/`: names only).
fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// The release a file belongs to by its name (`V1_5_0__x.sql`, `V1.5.0__x.sql`) or its
/// folder (`1.5.0/x.sql`).
pub fn version_of(path: &Path) -> Option<Version> {
    let name = path.file_name()?.to_string_lossy();
    if let Some(rest) = name.strip_prefix('V') {
        if let Some((v, _)) = rest.split_once("__") {
            if let Ok(v) = Version::parse(&v.replace('_', ".")) {
                return Some(v);
            }
        }
    }
    let folder = path.parent()?.file_name()?.to_string_lossy();
    Version::parse(&folder).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_names_and_folders() {
        let v = |s: &str| version_of(Path::new(s)).map(|v| v.to_string());
        assert_eq!(v("db/V1_5_0__add.sql").as_deref(), Some("1.5.0"));
        assert_eq!(v("db/V1.5.0__add.sql").as_deref(), Some("1.5.0"));
        assert_eq!(v("db/1.5.0/add.sql").as_deref(), Some("1.5.0"));
        assert_eq!(v("db/add.sql"), None);
        assert_eq!(v("db/V1_5__add.sql"), None);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.sql", "V1_5_0__a.sql"));
        assert!(glob_match("V1_*__*.sql", "V1_5_0__a.sql"));
        assert!(!glob_match("*.sql", "a.sql.bak"));
        assert!(!glob_match("a*a", "a"));
    }
}
