//! What the language server knows about one document: the names it declares and uses (from the
//! AST, with their spans), and the checked playbooks (components' versions, envs, lets, the
//! matrices in scope). Byte offsets in, byte offsets out; `lsp::mod` converts positions.

use std::path::{Path, PathBuf};

use crate::check;
use crate::program;
use crate::span::{FileId, Span};
use crate::syntax::ast;

/// What a name in the document refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Component(String),
    Env(String),
    Let(String),
    Matrix(String),
    /// A `guard hook` file, as written (relative to the document).
    Hook(String),
    /// A `use`d file, as written.
    Use(String),
    /// A statement's keyword (`rolling`, `guard http`, …).
    Keyword(&'static str),
}

/// One occurrence of a name: where, what, in which playbook (index in the file), and whether it
/// is the declaration.
#[derive(Debug, Clone)]
pub(crate) struct Occurrence {
    pub start: usize,
    pub end: usize,
    pub target: Target,
    pub playbook: Option<usize>,
    pub declaration: bool,
}

/// A symbol of the outline: playbooks, matrices, and inside playbooks their components, envs,
/// lets and stages.
#[derive(Debug, Clone)]
pub(crate) struct Symbol {
    pub name: String,
    pub kind: SymbolKind,
    pub detail: Option<String>,
    /// The whole entry, and its name.
    pub range: (usize, usize),
    pub name_range: (usize, usize),
    pub children: Vec<Symbol>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SymbolKind {
    Playbook,
    Matrix,
    Component,
    Env,
    Let,
    Stage,
    Test,
}

/// A document, checked as `ktplay check` would check it at its path.
pub(crate) struct Analysis {
    pub checked: check::Checked,
    pub file: FileId,
    pub occurrences: Vec<Occurrence>,
    pub symbols: Vec<Symbol>,
    dir: PathBuf,
}

impl Analysis {
    /// Check `text` as the file at `path` (its `use` and hook paths resolve beside it).
    pub(crate) fn new(path: &Path, text: &str) -> Analysis {
        let checked = check::check_text(&path.display().to_string(), text);
        let file = checked.inputs.first().copied().unwrap_or_default();
        let mut index = Index::default();
        if let Ok(ast) = crate::syntax::parse(file, text) {
            index.file(&ast);
        }
        Analysis {
            checked,
            file,
            occurrences: index.occurrences,
            symbols: index.symbols,
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        }
    }

    /// The innermost occurrence at a byte offset.
    pub(crate) fn at(&self, offset: usize) -> Option<&Occurrence> {
        self.occurrences
            .iter()
            .filter(|o| o.start <= offset && offset <= o.end)
            .min_by_key(|o| o.end - o.start)
    }

    fn playbook(&self, o: &Occurrence) -> Option<&program::Playbook> {
        let index = o.playbook?;
        self.checked
            .playbooks
            .iter()
            .filter(|(f, _)| *f == self.file)
            .nth(index)
            .map(|(_, p)| p)
    }

    /// Markdown for a hover at `offset`, and the range it is about.
    pub(crate) fn hover(&self, offset: usize) -> Option<(String, (usize, usize))> {
        let o = self.at(offset)?;
        let range = (o.start, o.end);
        let text = match &o.target {
            Target::Keyword(k) => keyword_meaning(k).to_string(),
            Target::Component(name) => {
                let pb = self.playbook(o)?;
                let c = pb.components.iter().find(|c| &c.name == name)?;
                self.component_hover(pb, c)
            }
            Target::Let(name) => {
                let pb = self.playbook(o)?;
                let_hover(pb, name)
            }
            Target::Env(name) => {
                let pb = self.playbook(o)?;
                let e = pb.envs.iter().find(|e| &e.name == name)?;
                let mut out = format!("**env `{}`**", e.name);
                if let Some(c) = &e.context {
                    out.push_str(&format!("\n\n- context `{c}`"));
                }
                out.push_str(&format!(
                    "\n- namespace `{}`",
                    e.namespace.as_deref().unwrap_or(&pb.namespace)
                ));
                if !e.after.is_empty() {
                    out.push_str(&format!(
                        "\n- runs only after a green run on {}",
                        e.after.join(", ")
                    ));
                }
                out
            }
            Target::Matrix(name) => {
                let m = self.matrix(name)?;
                format!(
                    "**matrix `{}`**\n\n```\n{}```",
                    m.name,
                    crate::matrix::render_table(m)
                )
            }
            Target::Hook(path) => format!("**hook** `{}`", self.dir.join(path).display()),
            Target::Use(path) => format!(
                "**use** `{}`: brings its matrices into scope",
                self.dir.join(path).display()
            ),
        };
        Some((text, range))
    }

    fn matrix(&self, name: &str) -> Option<&crate::matrix::Matrix> {
        let i = self.checked.inputs.iter().position(|f| *f == self.file)?;
        self.checked.scopes.get(i)?.get(name)
    }

    fn component_hover(&self, pb: &program::Playbook, c: &program::Component) -> String {
        let mut out = format!(
            "**component `{}`**: {} → {}\n\n- image `{}`",
            c.name, c.from, c.to, c.image
        );
        if c.role != c.name {
            out.push_str(&format!("\n- role `{}`", c.role));
        }
        if let Some(spec) = &c.migration_files {
            out.push_str(&crate::migrate::hover(c, spec));
        }
        let Some(m) = pb.matrix.as_deref().and_then(|n| self.matrix(n)) else {
            out.push_str("\n\nno matrix: not checked for compatibility");
            return out;
        };
        out.push_str(&format!("\n\nmatrix `{}`:", m.name));
        if c.role == m.hub {
            for (what, v) in [("from", &c.from), ("to", &c.to)] {
                let row = m.row_index_for(v);
                let status = m
                    .status_of(v)
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                out.push_str(&format!("\n- {what} {v}: {}{status}", m.describe_row(row)));
            }
        } else if let Some(hub) = pb.components.iter().find(|h| h.role == m.hub) {
            for (what, v) in [("from", &hub.from), ("to", &hub.to)] {
                let row = m.row_index_for(v);
                let allowed = match row {
                    Some(i) => m.rows[i].allowed(&c.role).cloned(),
                    None => m.rule.map(|r| r.allowed(v)),
                };
                out.push_str(&format!(
                    "\n- beside {} {what} {v} ({}): {}",
                    hub.name,
                    m.describe_row(row),
                    crate::matrix::Matrix::describe_allowed(&c.role, &allowed)
                ));
            }
        }
        out
    }

    /// Where the name at `offset` is declared: (path, start, end) in that file; a file target
    /// (hook, use) gives its start.
    pub(crate) fn definition(&self, offset: usize) -> Vec<(PathBuf, usize, usize)> {
        let Some(o) = self.at(offset) else {
            return Vec::new();
        };
        let here = self.checked.sources.get(self.file).path.clone();
        match &o.target {
            Target::Component(_) | Target::Env(_) | Target::Let(_) => self
                .occurrences
                .iter()
                .filter(|d| d.declaration && d.target == o.target && d.playbook == o.playbook)
                .map(|d| (here.clone(), d.start, d.end))
                .collect(),
            Target::Matrix(name) => match self.matrix(name).and_then(|m| m.span) {
                Some(span) => vec![self.location(span)],
                None => Vec::new(),
            },
            Target::Hook(path) | Target::Use(path) => {
                let file = self.dir.join(path);
                if file.is_file() {
                    vec![(file, 0, 0)]
                } else {
                    Vec::new()
                }
            }
            Target::Keyword(_) => Vec::new(),
        }
    }

    fn location(&self, span: Span) -> (PathBuf, usize, usize) {
        let file = self.checked.sources.get(span.file);
        (file.path.clone(), span.start as usize, span.end as usize)
    }

    /// The text of another file the checker read (a `use`d one), for converting its offsets.
    pub(crate) fn text_of(&self, path: &Path) -> Option<&str> {
        let id = self.checked.sources.find(path)?;
        Some(&self.checked.sources.get(id).text)
    }
}

/// A let's value in every env (secrets shown as the variable they are read from, never a value).
fn let_hover(pb: &program::Playbook, name: &str) -> String {
    let shown = |l: &program::Let| match &l.value {
        program::LetValue::Secret { var } => {
            format!("(secret, read from `${var}` at run time; never shown)")
        }
        program::LetValue::Text(t) => format!("`{}`", template_text(pb, t)),
    };
    let mut out = format!("**let `{name}`**");
    let top = pb.lets.iter().find(|l| l.name == name);
    if pb.envs.is_empty() {
        if let Some(l) = top {
            out.push_str(&format!(": {}", shown(l)));
        }
        return out;
    }
    out.push('\n');
    for e in &pb.envs {
        let value = e
            .lets
            .iter()
            .find(|l| l.name == name)
            .or(top)
            .map(shown)
            .unwrap_or_else(|| "(not defined)".into());
        out.push_str(&format!("\n- {}: {value}", e.name));
    }
    out
}

fn template_text(pb: &program::Playbook, t: &program::Template) -> String {
    let mut out = String::new();
    for p in &t.parts {
        match p {
            program::TemplatePart::Text(s) => out.push_str(s),
            program::TemplatePart::Let(l) => out.push_str(&format!("${{{l}}}")),
            program::TemplatePart::Field { comp, field } => {
                let comp = pb.components.get(*comp).map_or("?", |c| c.name.as_str());
                let field = format!("{field:?}").to_lowercase();
                out.push_str(&format!("${{{comp}.{field}}}"));
            }
        }
    }
    out
}

/// What a statement does (the README's statement table).
pub(crate) fn keyword_meaning(keyword: &str) -> &'static str {
    match keyword {
        "rolling" => "**rolling C** `[to V] [max_unavailable N|P%] [max_surge N|P%] [timeout D]`\n\nSet the image tag of C's deployments and wait for the rollout. Rolled back by restoring the images it replaced.",
        "canary" => "**canary C weight P%** `[for D] [to V] [timeout D] { guards }`\n\nRun a canary at P% of the replicas, hold the guards for D, then promote and remove the canary.",
        "blue_green" => "**blue_green C** `[to V] [timeout D] { guards }`\n\nDeploy the idle colour at the new version, run the guards against it, then switch the Service.",
        "restart" => "**restart C** `[timeout D]`\n\nA rollout restart (as `kubectl rollout restart`), waiting for it.",
        "undo" => "**undo C** `[to revision N]`\n\nRoll C back; inside `rollback { }`, to what this run replaced.",
        "switch" => "**switch C to blue|green**\n\nPatch the blue-green Service's selector to that colour.",
        "scale" => "**scale C N** `[timeout D]`\n\nSet the replicas of C's deployments and wait.",
        "pause" => "**pause D**\n\nWait (cut to `--max-wait` in rehearsals).",
        "approve" => "**approve \"question\"**\n\nA person says yes on the terminal (or `--approve` answers for them).",
        "guard http" => "**guard http METHOD \"url\"** `[expect S] [{ header, bearer, json, body, expect, check rhai, within }] [within D]`\n\nAn HTTP check; without `expect`, any 2xx passes. Retried until `within`.",
        "guard logs" => "**guard logs C matches \"regex\"** `[within D]`\n\nA log line of C's pods matches the pattern.",
        "guard ready" => "**guard ready C** `[within D]`\n\nC's rollout is complete and every pod is ready.",
        "guard hook" => "**guard hook \"file.rhai\"** `[within D]`\n\nA sandboxed Rhai script (relative to the playbook) returns `true` or `#{ ok: true }`.",
        "guard rhai" => "**guard rhai \"\"\"…\"\"\"** `[within D]`\n\nAn inline sandboxed Rhai script returns `true` or `#{ ok: true }`.",
        "monitor" => "**monitor NAME METHOD \"url\"** `[expect S] [every D] [timeout D] [budget failures N|P%] [budget outage D] [{ header, bearer, … }]`\n\nA user-facing endpoint probed at a steady rate (default every 100ms) from before the first action until the run, or its rollback, ends. Requests, failures by kind, the longest outage and latency percentiles are reported; a budget exceeded fails the run like a guard and rolls back.",
        "fleet" => "**fleet \"name\"** `{ playbook \"F\"  env E  on failure stop|rollback fleet  shared C in CLUSTER  cluster …  wave … }`\n\nOne playbook across clusters: each cluster runs it as one run (its own lock, journal and rollback), wave after wave.",
        "on failure" => "**on failure stop** | **on failure rollback fleet**\n\n`stop`: the failed cluster rolls back, finished clusters stay (the command that rolls each back is printed). `rollback fleet`: every cluster that changed rolls back, in reverse wave order.",
        "shared" => "**shared C in CLUSTER**\n\nC runs once, in CLUSTER, and every cluster's other components talk to it: the other clusters skip C's statements, and `check` holds every cross-cluster state to the matrix.",
        "cluster" => "**cluster NAME** `{ context \"…\"  env E  let … }`\n\nA kube context the playbook runs in, with its own lets (over the env's).",
        "wave" => "**wave NAME** `{ clusters A B…  parallel N  soak D { guards }  approve \"…\" }`\n\nClusters upgraded together (at most N at once, default 1); the next wave starts after the soak and the approval.",
        "soak" => "**soak D** `{ guards }`\n\nAfter the wave, the guards keep running against every finished cluster for D (a round at the start, every 30s, and at the end); a failed guard fails the wave.",
        _ => "",
    }
}

fn version_text(v: &ast::Value) -> String {
    match v {
        ast::Value::Version(p) => p.to_string(),
        ast::Value::Invalid { text, .. } => text.clone(),
        _ => "?".into(),
    }
}

#[derive(Default)]
struct Index {
    occurrences: Vec<Occurrence>,
    symbols: Vec<Symbol>,
    playbook: Option<usize>,
}

fn range(span: Span) -> (usize, usize) {
    (span.start as usize, span.end as usize)
}

impl Index {
    fn add(&mut self, span: Span, target: Target, declaration: bool) {
        self.occurrences.push(Occurrence {
            start: span.start as usize,
            end: span.end as usize,
            target,
            playbook: self.playbook,
            declaration,
        });
    }

    fn file(&mut self, file: &ast::File) {
        let mut playbooks = 0;
        for item in &file.items {
            match item {
                ast::Item::Use(s) => {
                    let path = s.node.as_plain().unwrap_or_default();
                    self.add(s.span, Target::Use(path), false);
                }
                ast::Item::Matrix(m) => {
                    self.add(m.name.span, Target::Matrix(m.name.node.clone()), true);
                    self.symbols.push(Symbol {
                        name: m.name.node.clone(),
                        kind: SymbolKind::Matrix,
                        detail: Some("matrix".into()),
                        range: range(m.span),
                        name_range: range(m.name.span),
                        children: Vec::new(),
                    });
                }
                ast::Item::Playbook(p) => {
                    self.playbook = Some(playbooks);
                    playbooks += 1;
                    let children = self.playbook_entries(p);
                    self.symbols.push(Symbol {
                        name: p.name.node.display(),
                        kind: SymbolKind::Playbook,
                        detail: Some("playbook".into()),
                        range: range(p.span),
                        name_range: range(p.name.span),
                        children,
                    });
                    self.playbook = None;
                }
                ast::Item::Test(t) => {
                    for e in &t.entries {
                        if let ast::TestEntry::Playbook { file, .. } = &e.node {
                            let path = file.node.as_plain().unwrap_or_default();
                            self.add(file.span, Target::Use(path), false);
                        }
                    }
                    self.symbols.push(Symbol {
                        name: t.name.node.display(),
                        kind: SymbolKind::Test,
                        detail: Some("test".into()),
                        range: range(t.span),
                        name_range: range(t.name.span),
                        children: Vec::new(),
                    });
                }
                ast::Item::Fleet(f) => {
                    let symbol = self.fleet(f);
                    self.symbols.push(symbol);
                }
            }
        }
    }

    /// A fleet: its playbook file, the keywords of its entries (hover), the guards of its soaks,
    /// and an outline of its clusters and waves.
    fn fleet(&mut self, f: &ast::FleetDecl) -> Symbol {
        let kw = |span: Span, len: usize| {
            Span::new(span.file, span.start as usize, span.start as usize + len)
        };
        self.add(kw(f.span, "fleet".len()), Target::Keyword("fleet"), false);
        let mut children = Vec::new();
        for e in &f.entries {
            match &e.node {
                ast::FleetEntry::Playbook { file, .. } => {
                    let path = file.node.as_plain().unwrap_or_default();
                    self.add(file.span, Target::Use(path), false);
                }
                ast::FleetEntry::OnFailure(_) => {
                    self.add(kw(e.span, "on".len()), Target::Keyword("on failure"), false)
                }
                ast::FleetEntry::Shared { .. } => {
                    self.add(kw(e.span, "shared".len()), Target::Keyword("shared"), false)
                }
                ast::FleetEntry::Cluster(c) => {
                    self.add(
                        kw(e.span, "cluster".len()),
                        Target::Keyword("cluster"),
                        false,
                    );
                    children.push(Symbol {
                        name: c.name.node.clone(),
                        kind: SymbolKind::Env,
                        detail: Some("cluster".into()),
                        range: range(e.span),
                        name_range: range(c.name.span),
                        children: Vec::new(),
                    });
                }
                ast::FleetEntry::Wave(w) => {
                    self.add(kw(e.span, "wave".len()), Target::Keyword("wave"), false);
                    for we in &w.entries {
                        if let ast::WaveEntry::Soak { guards, .. } = &we.node {
                            self.add(kw(we.span, "soak".len()), Target::Keyword("soak"), false);
                            for g in guards.iter().flatten() {
                                self.stmt(g);
                            }
                        }
                    }
                    children.push(Symbol {
                        name: w.name.node.clone(),
                        kind: SymbolKind::Stage,
                        detail: Some("wave".into()),
                        range: range(e.span),
                        name_range: range(w.name.span),
                        children: Vec::new(),
                    });
                }
                ast::FleetEntry::Env(_) => {}
            }
        }
        Symbol {
            name: f.name.node.display(),
            kind: SymbolKind::Test,
            detail: Some("fleet".into()),
            range: range(f.span),
            name_range: range(f.name.span),
            children,
        }
    }

    fn playbook_entries(&mut self, p: &ast::Playbook) -> Vec<Symbol> {
        let mut symbols = Vec::new();
        for e in &p.entries {
            match &e.node {
                ast::PlaybookEntry::Matrix(m) => {
                    self.add(m.span, Target::Matrix(m.node.clone()), false)
                }
                ast::PlaybookEntry::Let(l) => symbols.push(self.let_decl(l, e.span)),
                ast::PlaybookEntry::Component(c) => {
                    self.add(c.name.span, Target::Component(c.name.node.clone()), true);
                    let mut detail = None;
                    for ce in &c.entries {
                        // `serves NAME` refers to a let: hover and go to definition.
                        if let ast::ComponentEntry::Serves(l) = &ce.node {
                            self.add(l.span, Target::Let(l.node.clone()), false);
                        }
                        if let (ast::ComponentEntry::From(f), Some(t)) = (
                            &ce.node,
                            c.entries.iter().find_map(|x| match &x.node {
                                ast::ComponentEntry::To(t) => Some(t),
                                _ => None,
                            }),
                        ) {
                            detail = Some(format!(
                                "{} → {}",
                                version_text(&f.node),
                                version_text(&t.node)
                            ));
                        }
                    }
                    symbols.push(Symbol {
                        name: c.name.node.clone(),
                        kind: SymbolKind::Component,
                        detail,
                        range: range(e.span),
                        name_range: range(c.name.span),
                        children: Vec::new(),
                    });
                }
                ast::PlaybookEntry::Env(env) => {
                    self.add(env.name.span, Target::Env(env.name.node.clone()), true);
                    let mut lets = Vec::new();
                    for ee in &env.entries {
                        match &ee.node {
                            ast::EnvEntry::After(names) => {
                                for n in names {
                                    self.add(n.span, Target::Env(n.node.clone()), false);
                                }
                            }
                            ast::EnvEntry::Let(l) => lets.push(self.let_decl(l, ee.span)),
                            ast::EnvEntry::Context(s) | ast::EnvEntry::Namespace(s) => {
                                self.string(s)
                            }
                            ast::EnvEntry::AllowHosts(_) => {}
                            ast::EnvEntry::Monitor(m) => self.monitor(m, ee.span),
                        }
                    }
                    symbols.push(Symbol {
                        name: env.name.node.clone(),
                        kind: SymbolKind::Env,
                        detail: Some("env".into()),
                        range: range(e.span),
                        name_range: range(env.name.span),
                        children: lets,
                    });
                }
                ast::PlaybookEntry::Stage(s) => {
                    for st in &s.stmts {
                        self.stmt(st);
                    }
                    for r in &s.rollbacks {
                        if let ast::RollbackDecl::Block(stmts) = &r.node {
                            for st in stmts {
                                self.stmt(st);
                            }
                        }
                    }
                    symbols.push(Symbol {
                        name: s.name.node.clone(),
                        kind: SymbolKind::Stage,
                        detail: Some(format!(
                            "stage, {} statement{}",
                            s.stmts.len(),
                            if s.stmts.len() == 1 { "" } else { "s" }
                        )),
                        range: range(e.span),
                        name_range: range(s.name.span),
                        children: Vec::new(),
                    });
                }
                ast::PlaybookEntry::Monitor(m) => self.monitor(m, e.span),
                ast::PlaybookEntry::Namespace(_)
                | ast::PlaybookEntry::OnFailure(_)
                | ast::PlaybookEntry::AllowHosts(_) => {}
            }
        }
        symbols
    }

    fn let_decl(&mut self, l: &ast::LetDecl, span: Span) -> Symbol {
        self.add(l.name.span, Target::Let(l.name.node.clone()), true);
        let detail = match &l.value {
            ast::LetValue::Env(_) => "secret".to_string(),
            ast::LetValue::Value(v) => {
                if let ast::Value::Str(s) = &v.node {
                    self.strlit(s);
                }
                "let".to_string()
            }
        };
        Symbol {
            name: l.name.node.clone(),
            kind: SymbolKind::Let,
            detail: Some(detail),
            range: range(span),
            name_range: range(l.name.span),
            children: Vec::new(),
        }
    }

    fn string(&mut self, s: &crate::span::Spanned<ast::StrLit>) {
        self.strlit(&s.node);
    }

    fn strlit(&mut self, s: &ast::StrLit) {
        for part in &s.parts {
            if let ast::StrPart::Interp(i) = part {
                match i.path.as_slice() {
                    [one] => self.add(one.span, Target::Let(one.node.clone()), false),
                    [comp, _field] => {
                        self.add(comp.span, Target::Component(comp.node.clone()), false)
                    }
                    _ => {}
                }
            }
        }
    }

    fn keyword(&mut self, stmt: &ast::Stmt, keyword: &'static str, len: usize) {
        let span = Span::new(
            stmt.span.file,
            stmt.span.start as usize,
            stmt.span.start as usize + len,
        );
        self.add(span, Target::Keyword(keyword), false);
    }

    /// `monitor NAME METHOD "url" …`: the keyword's meaning, the lets its URL, headers and bearer use.
    fn monitor(&mut self, m: &ast::MonitorDecl, span: Span) {
        let kw = Span::new(
            span.file,
            span.start as usize,
            span.start as usize + "monitor".len(),
        );
        self.add(kw, Target::Keyword("monitor"), false);
        self.string(&m.url);
        for e in &m.entries {
            match &e.node {
                ast::MonitorEntry::Header(k, v) => {
                    self.string(k);
                    self.string(v);
                }
                ast::MonitorEntry::Bearer(b) => {
                    self.add(b.span, Target::Let(b.node.clone()), false)
                }
                _ => {}
            }
        }
    }

    fn comp(&mut self, c: &ast::Ident) {
        self.add(c.span, Target::Component(c.node.clone()), false);
    }

    fn stmt(&mut self, s: &ast::Stmt) {
        use ast::StmtKind as K;
        let kw = s.kind.keyword();
        match &s.kind {
            K::Rolling { comp, .. }
            | K::Restart { comp, .. }
            | K::Undo { comp, .. }
            | K::Switch { comp, .. }
            | K::Scale { comp, .. } => {
                self.keyword(s, kw, kw.len());
                self.comp(comp);
            }
            K::Canary { comp, block, .. } | K::BlueGreen { comp, block, .. } => {
                self.keyword(s, kw, kw.len());
                self.comp(comp);
                for st in block.iter().flatten() {
                    self.stmt(st);
                }
            }
            K::Pause { .. } => self.keyword(s, kw, kw.len()),
            K::Approve { question } => {
                self.keyword(s, kw, kw.len());
                self.string(question);
            }
            K::Guard(g) => {
                let word = match g {
                    ast::Guard::Http(_) => "guard http",
                    ast::Guard::Logs { .. } => "guard logs",
                    ast::Guard::Ready { .. } => "guard ready",
                    ast::Guard::Hook { .. } => "guard hook",
                    ast::Guard::Rhai { .. } => "guard rhai",
                    ast::Guard::Metric(_) => "guard metric",
                };
                self.keyword(s, word, "guard".len());
                match g {
                    ast::Guard::Http(h) => {
                        self.string(&h.url);
                        for e in &h.entries {
                            match &e.node {
                                ast::HttpEntry::Header(k, v) => {
                                    self.string(k);
                                    self.string(v);
                                }
                                ast::HttpEntry::Bearer(b) => {
                                    self.add(b.span, Target::Let(b.node.clone()), false)
                                }
                                ast::HttpEntry::Body(b) | ast::HttpEntry::ExpectBodyContains(b) => {
                                    self.string(b)
                                }
                                _ => {}
                            }
                        }
                    }
                    ast::Guard::Logs { comp, .. } | ast::Guard::Ready { comp, .. } => {
                        self.comp(comp)
                    }
                    ast::Guard::Hook { path, .. } => {
                        let p = path.node.as_plain().unwrap_or_default();
                        self.add(path.span, Target::Hook(p), false);
                    }
                    ast::Guard::Rhai { .. } => {}
                    ast::Guard::Metric(m) => {
                        self.string(&m.url);
                        for e in &m.entries {
                            if let ast::MetricEntry::Bearer(b) = &e.node {
                                self.add(b.span, Target::Let(b.node.clone()), false)
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "analysis_tests.rs"]
mod tests;
