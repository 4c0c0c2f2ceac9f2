//! AST → checked program + diagnostics.
//!
//! Passes, in order; each adds to one list of problems and none stops the others:
//! 1. load: read every input (files, or folders searched for `*.ktplay`), parse, follow `use`;
//! 2. matrices: validate declarations, note shadowing of built-ins;
//! 3. lower: resolve names and check values in each playbook ([`lower`]);
//! 4. model: the compatibility model over every state and rollback path (`crate::model`).

pub(crate) mod errors;
mod files;
pub(crate) mod fleet;
pub(crate) mod fleet_model;
pub(crate) mod lower;
pub(crate) mod matrices;
pub(crate) mod model;
pub(crate) mod names;
mod par;
pub(crate) mod roles;
pub(crate) mod scripts;
pub(crate) mod select;
pub(crate) mod test_items;

use foldhash::{HashMap, HashMapExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::diag::{InternalError, Problem};
use crate::program::Playbook;
use crate::source::SourceMap;
use crate::span::{FileId, Span};
use crate::syntax::{self, ast, SyntaxError};
pub use errors::CheckError;
pub(crate) use files::read_limited;
pub use files::{
    admit_reference, allow_outside, expand_inputs, io_reason, set_allow_outside, tree_of,
    InputError, MAX_FILE_BYTES,
};

/// The result of checking: every file read, every problem found, and the playbooks of the
/// input files (meaningful only when there are no errors).
pub struct Checked {
    pub sources: SourceMap,
    pub problems: Vec<Problem>,
    pub playbooks: Vec<(FileId, Playbook)>,
    /// Input files named on the command line (or found in named folders).
    pub inputs: Vec<FileId>,
    /// The matrices each input file can name, in the order of `inputs`.
    pub scopes: Vec<matrices::InScope>,
    /// The `test` items of the input files.
    pub tests: Vec<(FileId, test_items::Test)>,
    /// Per component with migration files: its new files and which linter ran.
    pub migrations: Vec<crate::migrate::Summary>,
    /// Each input playbook's migration files, examined (for `check --database`).
    pub examined: Vec<(FileId, crate::migrate::Examined)>,
    /// The `fleet` items of the input files.
    pub fleets: Vec<(FileId, fleet::Fleet)>,
    /// The syntax trees, kept only so that they are freed with the rest (or not at all: a
    /// command about to exit may `forget` the whole result).
    _asts: HashMap<FileId, Loaded>,
}

impl Checked {
    /// The same sources with other (already checked) playbooks: what a fleet's cluster runs
    /// (`Fleet::playbook_for`) as a `Checked` a run can be given. No problems, tests or fleets.
    pub fn derived(&self, playbooks: Vec<(FileId, Playbook)>) -> Checked {
        Checked {
            sources: self.sources.clone(),
            problems: Vec::new(),
            inputs: playbooks.iter().map(|(f, _)| *f).collect(),
            scopes: Vec::new(),
            playbooks,
            tests: Vec::new(),
            fleets: Vec::new(),
            // A fleet's runs record no migration digests (issue 25's gate is per env).
            migrations: Vec::new(),
            examined: Vec::new(),
            _asts: HashMap::new(),
        }
    }

    pub fn errors(&self) -> usize {
        self.problems.iter().filter(|p| p.is_error()).count()
    }
    pub fn warnings(&self) -> usize {
        self.problems.len() - self.errors()
    }
}

struct Loaded {
    ast: Option<ast::File>,
    /// Files this one `use`s, resolved.
    uses: Vec<FileId>,
}

struct Loader {
    sources: SourceMap,
    problems: Vec<Problem>,
    files: HashMap<FileId, Loaded>,
}

impl Loader {
    /// Read and parse one file; returns its id (already loaded files are not read twice).
    fn load(&mut self, path: &Path, shown: String) -> Result<FileId, std::io::Error> {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(id) = self.sources.find(&canonical) {
            return Ok(id);
        }
        let bytes = read_limited(path)?;
        Ok(self.add(shown, canonical, bytes))
    }

    fn add(&mut self, shown: String, path: PathBuf, bytes: Vec<u8>) -> FileId {
        let (id, text) = self.register(shown, path, bytes);
        if let Some(text) = text {
            let parsed = parse_guarded(syntax::parse, id, &text);
            self.store(id, parsed);
        }
        id
    }

    /// Add a file to the source map; its text if it is UTF-8 and still needs parsing.
    fn register(
        &mut self,
        shown: String,
        path: PathBuf,
        bytes: Vec<u8>,
    ) -> (FileId, Option<std::sync::Arc<str>>) {
        match String::from_utf8(bytes) {
            Ok(text) => {
                let text: std::sync::Arc<str> = text.into();
                (self.register_text(shown, path, text.clone()), Some(text))
            }
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                let id = self.sources.add(shown, path, text.as_str());
                self.problems
                    .push(Problem::new(id, SyntaxError::NotUtf8 { offset }));
                self.files.insert(
                    id,
                    Loaded {
                        ast: None,
                        uses: vec![],
                    },
                );
                (id, None)
            }
        }
    }

    /// Add a UTF-8 file to the source map, to be parsed.
    fn register_text(&mut self, shown: String, path: PathBuf, text: std::sync::Arc<str>) -> FileId {
        self.sources.add(shown, path, text)
    }

    fn store(&mut self, id: FileId, parsed: Parsed) {
        let ast = match parsed {
            Ok(Ok(f)) => Some(f),
            Ok(Err(errs)) => {
                self.problems
                    .extend(errs.into_iter().map(|e| Problem::new(id, e)));
                None
            }
            Err(internal) => {
                self.problems.push(Problem::new(id, internal));
                None
            }
        };
        self.files.insert(id, Loaded { ast, uses: vec![] });
    }

    /// Follow `use` items depth-first, reporting missing files and cycles.
    fn resolve_uses(&mut self, id: FileId, stack: &mut Vec<FileId>) {
        stack.push(id);
        let uses: Vec<(String, Span)> = match self.files.get(&id).and_then(|l| l.ast.as_ref()) {
            Some(f) => f
                .items
                .iter()
                .filter_map(|i| match i {
                    ast::Item::Use(s) => Some((
                        s.node.as_plain().unwrap_or_else(|| s.node.display()),
                        s.span,
                    )),
                    _ => None,
                })
                .collect(),
            None => vec![],
        };
        let dir = self.sources.get(id).dir();
        let shown_dir = self.sources.get(id).shown_dir();
        for (rel, span) in uses {
            let target = dir.join(&rel);
            let shown = shown_dir.join(&rel).to_string_lossy().into_owned();
            let canonical = std::fs::canonicalize(&target).unwrap_or_else(|_| target.clone());
            if let Some(existing) = self.sources.find(&canonical) {
                if let Some(pos) = stack.iter().position(|f| *f == existing) {
                    let chain = stack[pos..]
                        .iter()
                        .chain(std::iter::once(&existing))
                        .map(|f| self.sources.get(*f).name.clone())
                        .collect::<Vec<_>>()
                        .join(" → ");
                    self.problems.push(Problem::new(
                        id,
                        CheckError::UseCycle {
                            chain,
                            span: span.into(),
                        },
                    ));
                    continue;
                }
                self.files.get_mut(&id).expect("loaded").uses.push(existing);
                continue;
            }
            if let Err(reason) = admit_reference(&dir, &target) {
                self.problems.push(Problem::new(
                    id,
                    CheckError::MissingUse {
                        path: rel,
                        reason,
                        span: span.into(),
                    },
                ));
                continue;
            }
            match self.load(&target, shown.clone()) {
                Ok(used) => {
                    self.files.get_mut(&id).expect("loaded").uses.push(used);
                    self.resolve_uses(used, stack);
                }
                Err(e) => self.problems.push(Problem::new(
                    id,
                    CheckError::MissingUse {
                        path: rel,
                        reason: io_reason(&e),
                        span: span.into(),
                    },
                )),
            }
        }
        stack.pop();
    }

    /// Every file reachable from `id` through `use`, itself first.
    fn reachable(&self, id: FileId) -> Vec<FileId> {
        let mut out = vec![id];
        let mut i = 0;
        while i < out.len() {
            if let Some(l) = self.files.get(&out[i]) {
                for u in &l.uses {
                    if !out.contains(u) {
                        out.push(*u);
                    }
                }
            }
            i += 1;
        }
        out
    }
}

/// Check files and folders named on the command line.
pub fn check_paths(paths: &[PathBuf]) -> Result<Checked, InputError> {
    check_paths_with(paths, Digests::Compute)
}

/// [`check_paths`] for `ktplay check`: the same problems, without the playbooks' SHA-256 digests
/// (a run's journal key, 6% of a check's instructions); `Playbook::digest` is left empty.
pub fn lint_paths(paths: &[PathBuf]) -> Result<Checked, InputError> {
    check_paths_with(paths, Digests::Skip)
}

/// Whether checked playbooks get their digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digests {
    Compute,
    Skip,
}

fn check_paths_with(paths: &[PathBuf], digests: Digests) -> Result<Checked, InputError> {
    let files = expand_inputs(paths)?;
    let mut loader = Loader {
        sources: SourceMap::new(),
        problems: Vec::new(),
        files: HashMap::new(),
    };
    // Every input is read and parsed on a worker, under the id it gets unless an earlier input
    // turns out to be the same file (then it is parsed again under its real id).
    let base = loader.sources.len();
    let numbered: Vec<(FileId, &PathBuf)> = (files.iter().enumerate())
        .map(|(i, f)| (FileId((base + i) as u32), f))
        .collect();
    let read = par::map("reading", &numbered, |&(provisional, f)| {
        read_input(f, provisional)
    });
    let mut inputs = Vec::new();
    let mut seen = foldhash::HashSet::default();
    let mut reparse: Vec<(FileId, std::sync::Arc<str>)> = Vec::new();
    for (f, r) in files.iter().zip(read) {
        let unreadable = |e: std::io::Error| InputError::Unreadable {
            path: f.display().to_string(),
            reason: io_reason(&e),
        };
        // A worker that panicked outside the parser (it cannot) leaves the file to be read here.
        let r = r.unwrap_or_else(|_| read_input(f, FileId(u32::MAX)));
        let id = match loader.sources.find(&r.canonical) {
            Some(id) => id,
            None => match r.read.map_err(unreadable)? {
                Decoded::Text(text, provisional, parsed) => {
                    let id =
                        loader.register_text(f.display().to_string(), r.canonical, text.clone());
                    if id == provisional {
                        loader.store(id, parsed);
                    } else {
                        reparse.push((id, text));
                    }
                    id
                }
                Decoded::NotUtf8(bytes) => {
                    loader
                        .register(f.display().to_string(), r.canonical, bytes)
                        .0
                }
            },
        };
        if seen.insert(id) {
            inputs.push(id);
        }
    }
    for (id, result) in parse_all(&reparse, syntax::parse) {
        loader.store(id, result);
    }
    Ok(finish(loader, inputs, digests))
}

/// One input as a worker read it: its canonical path (two names of one file are one input) and
/// its text, parsed under a provisional id.
struct ReadInput {
    canonical: PathBuf,
    read: std::io::Result<Decoded>,
}

enum Decoded {
    Text(std::sync::Arc<str>, FileId, Parsed),
    NotUtf8(Vec<u8>),
}

fn read_input(f: &Path, provisional: FileId) -> ReadInput {
    let canonical = std::fs::canonicalize(f).unwrap_or_else(|_| f.to_path_buf());
    let read = read_limited(f).map(|bytes| match String::from_utf8(bytes) {
        Ok(text) => {
            let text: std::sync::Arc<str> = text.into();
            let parsed = parse_guarded(syntax::parse, provisional, &text);
            Decoded::Text(text, provisional, parsed)
        }
        Err(e) => Decoded::NotUtf8(e.into_bytes()),
    });
    ReadInput { canonical, read }
}

/// A parse, or the internal error (a panic) that stopped it.
type Parsed = Result<Result<ast::File, Vec<SyntaxError>>, InternalError>;
type ParseFn = fn(FileId, &str) -> Result<ast::File, Vec<SyntaxError>>;

fn parse_guarded(parse: ParseFn, id: FileId, text: &str) -> Parsed {
    crate::diag::guarded("parsing", || parse(id, text))
}

/// Parse independent texts on every core. A panic in the parser is that file's internal error,
/// never a file that silently checks clean.
fn parse_all(to_parse: &[(FileId, std::sync::Arc<str>)], parse: ParseFn) -> Vec<(FileId, Parsed)> {
    let parsed = par::map("parsing", to_parse, |(id, text)| parse(*id, text));
    to_parse.iter().map(|(id, _)| *id).zip(parsed).collect()
}

/// Check one text as if it were a file with this name (tests, benchmarks, stdin).
pub fn check_text(name: &str, text: &str) -> Checked {
    let mut loader = Loader {
        sources: SourceMap::new(),
        problems: Vec::new(),
        files: HashMap::new(),
    };
    let path = std::env::current_dir().unwrap_or_default().join(name);
    let id = loader.add(name.to_string(), path, text.as_bytes().to_vec());
    finish(loader, vec![id], Digests::Compute)
}

fn finish(mut loader: Loader, mut inputs: Vec<FileId>, digests: Digests) -> Checked {
    // The playbook files `test` items name are checked with the inputs (missing ones are the
    // test's problem, reported when it is lowered).
    let mut i = 0;
    while i < inputs.len() {
        let id = inputs[i];
        let named = match loader.files.get(&id).and_then(|l| l.ast.as_ref()) {
            Some(f) => test_items::referenced(f, &loader.sources.get(id).dir()),
            None => Vec::new(),
        };
        let shown_dir = loader.sources.get(id).shown_dir();
        let dir = loader.sources.get(id).dir();
        for (path, _) in named {
            // Refused files are reported by the test (`test_items::lower`), never read.
            if admit_reference(&dir, &path).is_err() {
                continue;
            }
            let shown = shown_dir
                .join(path.file_name().unwrap_or_default())
                .to_string_lossy()
                .into_owned();
            if let Ok(f) = loader.load(&path, shown) {
                if !inputs.contains(&f) {
                    inputs.push(f);
                }
            }
        }
        i += 1;
    }
    for &id in &inputs {
        loader.resolve_uses(id, &mut Vec::new());
    }
    let mut playbooks = Vec::new();
    let mut problems = std::mem::take(&mut loader.problems);
    let matrices = matrices::Matrices::collect(&loader.files_asts(), &mut problems);
    let scopes: Vec<matrices::InScope> = inputs
        .iter()
        .map(|&id| matrices.in_scope(&loader.reachable(id)))
        .collect();
    // Lowering and the model are independent per input file: use every core, as parsing does.
    let work: Vec<(FileId, &matrices::InScope)> = inputs.iter().copied().zip(&scopes).collect();
    let lowered: Vec<Lowered> = {
        let loader = &loader;
        let done = par::map("checking", &work, |(id, scope)| {
            lower_input(loader, *id, scope, digests)
        });
        (work.iter().zip(done))
            .map(|((id, _), l)| {
                l.unwrap_or_else(|e| Lowered {
                    id: *id,
                    problems: vec![Problem::new(*id, e)],
                    playbooks: vec![],
                    migrations: vec![],
                })
            })
            .collect()
    };
    // Hook files last, in input order: each is compiled once per invocation, however many
    // playbooks use it, and joins the source map (inline scripts were compiled in `lower_input`).
    let mut hooks_done = foldhash::HashSet::default();
    let mut migrations = Vec::new();
    let mut examined = Vec::new();
    for l in lowered {
        problems.extend(l.problems);
        for ex in l.migrations {
            ex.report(&mut loader.sources, l.id, &mut problems);
            migrations.extend(ex.summaries());
            examined.push((l.id, ex));
        }
        for checked in l.playbooks {
            let outcome = crate::diag::guarded("compiling scripts", || {
                scripts::compile_hooks(
                    &checked,
                    &mut loader.sources,
                    l.id,
                    &mut problems,
                    &mut hooks_done,
                )
            });
            if let Err(e) = outcome {
                problems.push(Problem::new(l.id, e));
            }
            playbooks.push((l.id, checked));
        }
    }
    let mut tests_found = Vec::new();
    let mut fleets_found = Vec::new();
    {
        let sources = &loader.sources;
        let file_of = |p: &Path| {
            let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            sources.find(&canonical)
        };
        let books = test_items::Playbooks {
            all: &playbooks,
            file_of: &file_of,
        };
        for &id in &inputs {
            if let Some(f) = loader.files.get(&id).and_then(|l| l.ast.as_ref()) {
                let dir = sources.get(id).dir();
                for t in test_items::lower(id, f, &dir, &books, &mut problems) {
                    tests_found.push((id, t));
                }
                for fl in fleet::lower(id, f, &dir, &books, &mut problems) {
                    fleets_found.push((id, fl));
                }
            }
        }
    }
    // Fleets across clusters: the playbook's matrix, in its file's scope.
    for (id, fl) in &fleets_found {
        let (pfile, pb) = &playbooks[fl.playbook];
        let matrix = (pb.matrix.as_deref())
            .zip(inputs.iter().position(|f| f == pfile))
            .and_then(|(m, i)| scopes[i].get(m));
        if let Some(m) = matrix {
            let outcome =
                crate::diag::guarded("checking the fleet", || fleet_model::check(*id, fl, pb, m));
            match outcome {
                Ok(found) => problems.extend(found),
                Err(e) => problems.push(Problem::new(*id, e)),
            }
        }
    }
    // Stable order: by file, then position.
    problems.sort_by_key(|p| (p.file, p.primary_range().map_or(0, |r| r.0)));
    Checked {
        sources: loader.sources,
        problems,
        playbooks,
        inputs,
        scopes,
        tests: tests_found,
        migrations,
        examined,
        fleets: fleets_found,
        _asts: loader.files,
    }
}

/// One input file lowered and modelled: its problems and its playbooks.
struct Lowered {
    id: FileId,
    problems: Vec<Problem>,
    playbooks: Vec<Playbook>,
    /// Each playbook's migration files, examined (reported once they join the `SourceMap`).
    migrations: Vec<crate::migrate::Examined>,
}

fn lower_input(
    loader: &Loader,
    id: FileId,
    in_scope: &matrices::InScope,
    digests: Digests,
) -> Lowered {
    let mut problems = Vec::new();
    let mut playbooks = Vec::new();
    let mut migrations = Vec::new();
    let Some(file) = loader.files.get(&id).and_then(|l| l.ast.as_ref()) else {
        return Lowered {
            id,
            problems,
            playbooks,
            migrations,
        };
    };
    if file.items.is_empty() {
        let len = loader.sources.get(id).text.len().min(1);
        problems.push(Problem::new(
            id,
            CheckError::EmptyFile {
                span: Span::new(id, 0, len).into(),
            },
        ));
    }
    roles::check_playbook_names(id, &file.items, &mut problems);
    let text = loader.sources.get(id).text.clone();
    let base_dir = loader.sources.get(id).dir();
    // A panic in lowering or the model is this file's internal error.
    let outcome = crate::diag::guarded("checking", || {
        for item in &file.items {
            if let ast::Item::Playbook(pb) = item {
                let digest = match digests {
                    Digests::Skip => String::new(),
                    Digests::Compute => {
                        let mut hasher = Sha256::new();
                        hasher.update(pb.name.node.display().as_bytes());
                        hasher.update([0]);
                        hasher.update(text.as_bytes());
                        hex::encode(hasher.finalize())
                    }
                };
                let before = problems.len();
                let mut lowerer =
                    lower::Lowerer::new(&mut problems, id, base_dir.clone(), in_scope.names());
                let checked = lowerer.playbook(pb, digest);
                let clean = !problems[before..].iter().any(Problem::is_error);
                let examined = crate::migrate::examine(&checked, &base_dir);
                if clean {
                    problems.extend(crate::migrate::schema_rollbacks(&checked, &examined));
                }
                migrations.push(examined);
                // The model runs on playbooks whose names and versions all resolved; on others
                // it would only repeat their errors in other words.
                if clean {
                    if let Some(m) = checked.matrix.as_deref().and_then(|n| in_scope.get(n)) {
                        problems.extend(crate::model::check(&model::to_model(&checked), m));
                    }
                    // Metric queries with each env's static values (they must still parse).
                    problems.extend(
                        lower::metric::check_static_values(&checked)
                            .into_iter()
                            .map(|e| Problem::new(id, e)),
                    );
                }
                if let Some(m) = checked.matrix.as_deref().and_then(|n| in_scope.get(n)) {
                    roles::check_roles(id, pb, m, &mut problems);
                }
                playbooks.push(checked);
            }
        }
    });
    if let Err(e) = outcome {
        problems.push(Problem::new(id, e));
    }
    for checked in &playbooks {
        let outcome = crate::diag::guarded("compiling scripts", || {
            scripts::compile_inline(checked, &mut problems)
        });
        if let Err(e) = outcome {
            problems.push(Problem::new(id, e));
        }
    }
    Lowered {
        id,
        problems,
        playbooks,
        migrations,
    }
}

impl Loader {
    fn files_asts(&self) -> Vec<(FileId, &ast::File)> {
        let mut v: Vec<(FileId, &ast::File)> = self
            .files
            .iter()
            .filter_map(|(id, l)| l.ast.as_ref().map(|a| (*id, a)))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }
}

#[cfg(test)]
mod tests;
