//! AST → checked [`Playbook`]: resolves names, checks kinds and ranges, and records every
//! problem instead of stopping at the first.

mod cross;
pub(crate) mod metric;
mod migrations;
mod monitor;
mod promql_quick;
mod regex_quick;
mod stmt;
mod value;

use foldhash::{HashMap, HashMapExt};
use std::path::PathBuf;

use crate::check::errors::CheckError;
use crate::check::names::{
    did_you_mean, dns_label_problem, dns_subdomain_problem, strip_image_tag, suggest_k8s_name,
};
use crate::diag::Problem;
use crate::program::*;
use crate::span::{FileId, Span, Spanned};
use crate::syntax::ast;
use crate::version::Version;

pub(crate) use value::{LetUse, Purpose};

/// Lowers one playbook. Holds the problems found so far and what later parts need to resolve
/// names (components are lowered first so statements can refer to them by index).
pub(crate) struct Lowerer<'a> {
    pub problems: &'a mut Vec<Problem>,
    pub file: FileId,
    pub base_dir: PathBuf,
    pub components: Vec<Component>,
    pub let_uses: Vec<LetUse>,
    /// Lets a URL starts with (`"${api_url}/readyz"`): each must hold a URL with a scheme.
    pub url_lets: Vec<(String, Span)>,
    /// Names of every matrix in scope for this file.
    pub matrices: Vec<String>,
    /// Hook files read while lowering: (path as written, resolved path, text).
    pub hooks: Vec<(String, PathBuf, String)>,
}

impl<'a> Lowerer<'a> {
    pub(crate) fn new(
        problems: &'a mut Vec<Problem>,
        file: FileId,
        base_dir: PathBuf,
        matrices: Vec<String>,
    ) -> Self {
        Lowerer {
            problems,
            file,
            base_dir,
            components: Vec::new(),
            let_uses: Vec::new(),
            url_lets: Vec::new(),
            matrices,
            hooks: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, e: CheckError) {
        self.problems.push(Problem::new(self.file, e));
    }

    /// The index of a component named in a statement, or an `unknown_component` error.
    pub(crate) fn component_index(&mut self, name: &Spanned<String>) -> Option<usize> {
        if let Some(i) = self.components.iter().position(|c| c.name == name.node) {
            return Some(i);
        }
        let help = did_you_mean(&name.node, self.components.iter().map(|c| c.name.as_str()));
        self.error(CheckError::UnknownComponent {
            name: name.node.clone(),
            span: name.span.into(),
            help: help.or_else(|| {
                Some(if self.components.is_empty() {
                    "declare it with `component NAME { … }` in the playbook".into()
                } else {
                    format!(
                        "components of this playbook: {}",
                        self.components
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            }),
        });
        None
    }

    /// Report `name` if it breaks an RFC 1123 rule: labels for namespaces, containers and
    /// services, subdomains for deployments.
    fn k8s_name(&mut self, name: &str, span: Span, what: &'static str, subdomain: bool) {
        let (problem, kind) = if subdomain {
            (dns_subdomain_problem(name), "names")
        } else {
            (dns_label_problem(name), "labels")
        };
        if let Some(reason) = problem {
            self.error(CheckError::InvalidK8sName {
                what,
                name: name.to_string(),
                span: span.into(),
                reason,
                help: format!(
                    "Kubernetes names are lower-case RFC 1123 {kind}: try `{}`",
                    suggest_k8s_name(name)
                ),
            });
        }
    }

    fn k8s_label(&mut self, name: &str, span: Span, what: &'static str) {
        self.k8s_name(name, span, what, false)
    }

    fn k8s_subdomain(&mut self, name: &str, span: Span, what: &'static str) {
        self.k8s_name(name, span, what, true)
    }

    /// Lower a whole playbook.
    pub(crate) fn playbook(&mut self, pb: &ast::Playbook, digest: String) -> Playbook {
        let name = pb
            .name
            .node
            .as_plain()
            .unwrap_or_else(|| pb.name.node.display());
        let mut namespace: Option<Spanned<String>> = None;
        let mut matrix: Option<Spanned<String>> = None;
        let mut on_failure: Option<Spanned<OnFailure>> = None;
        let mut allow_hosts: Vec<String> = Vec::new();
        let mut lets: Vec<Let> = Vec::new();
        let mut env_decls: Vec<&ast::EnvDecl> = Vec::new();
        let mut stage_decls: Vec<&ast::StageDecl> = Vec::new();
        let mut monitors: Vec<Monitor> = Vec::new();
        let mut seen: HashMap<(&'static str, String), Span> = HashMap::new();

        // Components first: statements and templates refer to them.
        for e in &pb.entries {
            if let ast::PlaybookEntry::Component(c) = &e.node {
                if self.first(&mut seen, "component", &c.name) {
                    let comp = self.component(c, e.span);
                    self.components.push(comp);
                }
            }
        }
        for e in &pb.entries {
            match &e.node {
                ast::PlaybookEntry::Namespace(ns) => {
                    if let Some(prev) = &namespace {
                        self.duplicate("namespace", "namespace", e.span, prev.span);
                    } else if let Some(n) = self.plain(ns, "a namespace") {
                        self.k8s_label(&n, ns.span, "namespace");
                        namespace = Some(Spanned::new(n, e.span));
                    }
                }
                ast::PlaybookEntry::Matrix(m) => {
                    if let Some(prev) = &matrix {
                        self.duplicate("matrix", "matrix", e.span, prev.span);
                    } else {
                        if !self.matrices.contains(&m.node) {
                            let help = did_you_mean(&m.node, self.matrices.iter().map(String::as_str)).or_else(|| {
                                Some(format!(
                                    "matrices in scope: {}; declare one with `matrix {} {{ … }}` or `use` a file that does",
                                    self.matrices.join(", "),
                                    m.node
                                ))
                            });
                            self.error(CheckError::UnknownMatrix {
                                name: m.node.clone(),
                                span: m.span.into(),
                                help,
                            });
                        }
                        matrix = Some(Spanned::new(m.node.clone(), e.span));
                    }
                }
                ast::PlaybookEntry::OnFailure(mode) => {
                    if let Some(prev) = &on_failure {
                        self.duplicate("on_failure", "on_failure", e.span, prev.span);
                        continue;
                    }
                    let m = match mode.node.as_str() {
                        "rollback" => OnFailure::Rollback,
                        "halt" => OnFailure::Halt,
                        other => {
                            self.error(CheckError::InvalidValue {
                                what: "on_failure mode",
                                value: other.to_string(),
                                span: mode.span.into(),
                                help:
                                    "write `on_failure rollback` (the default) or `on_failure halt`"
                                        .into(),
                            });
                            continue;
                        }
                    };
                    on_failure = Some(Spanned::new(m, e.span));
                }
                ast::PlaybookEntry::Let(l) => {
                    if self.first(&mut seen, "let", &l.name) {
                        let lowered = self.let_decl(l, None);
                        lets.extend(lowered);
                    }
                }
                ast::PlaybookEntry::Env(env) => {
                    if self.first(&mut seen, "env", &env.name) {
                        env_decls.push(env);
                    }
                }
                ast::PlaybookEntry::Stage(s) => {
                    if self.first(&mut seen, "stage", &s.name) {
                        stage_decls.push(s);
                    }
                }
                ast::PlaybookEntry::AllowHosts(hosts) => {
                    allow_hosts.extend(self.host_patterns(hosts));
                }
                ast::PlaybookEntry::Monitor(m) => {
                    if self.first(&mut seen, "monitor", &m.name) {
                        monitors.extend(self.monitor(m, None));
                    }
                }
                ast::PlaybookEntry::Component(_) => {}
            }
        }

        let envs: Vec<Env> = env_decls
            .iter()
            .enumerate()
            .map(|(i, e)| self.env(e, i))
            .collect();
        self.check_after(&envs, &env_decls);
        self.check_env_monitors(&monitors, &env_decls);

        let on_failure_mode = on_failure.as_ref().map_or(OnFailure::Rollback, |o| o.node);
        let stages: Vec<Stage> = stage_decls
            .iter()
            .map(|s| self.stage(s, on_failure_mode))
            .collect();

        self.check_let_uses(&lets, &envs);
        self.check_url_lets(&lets, &envs);
        self.check_serves(&lets, &envs);

        Playbook {
            name,
            span: pb.span,
            digest,
            namespace: namespace.map_or_else(|| "default".to_string(), |n| n.node),
            on_failure: on_failure_mode,
            matrix: matrix.map(|m| m.node),
            lets,
            components: std::mem::take(&mut self.components),
            envs,
            stages,
            allow_hosts,
            monitors,
            base_dir: self.base_dir.clone(),
        }
    }

    /// Record a name in its scope; report a duplicate and return false if it was there already.
    fn first(
        &mut self,
        seen: &mut HashMap<(&'static str, String), Span>,
        what: &'static str,
        name: &Spanned<String>,
    ) -> bool {
        match seen.get(&(what, name.node.clone())) {
            Some(first) => {
                let first = *first;
                self.duplicate(what, &name.node, name.span, first);
                false
            }
            None => {
                seen.insert((what, name.node.clone()), name.span);
                true
            }
        }
    }

    pub(crate) fn duplicate(&mut self, what: &'static str, name: &str, span: Span, first: Span) {
        self.error(CheckError::Duplicate {
            what,
            name: name.to_string(),
            span: span.into(),
            first: first.into(),
        });
    }

    fn component(&mut self, c: &ast::ComponentDecl, span: Span) -> Component {
        let mut seen: HashMap<&'static str, Span> = HashMap::new();
        let mut deployments: Vec<String> = Vec::new();
        let mut blue_green: Option<BlueGreen> = None;
        let mut container = None;
        let mut image = None;
        let mut from: Option<Spanned<Version>> = None;
        let mut to: Option<Spanned<Version>> = None;
        let mut migrations = Migrations::BackwardCompatible;
        let mut migration_files = None;
        let mut role = None;
        let mut traffic = None;
        let mut serves: Vec<Spanned<String>> = Vec::new();
        for e in &c.entries {
            if let ast::ComponentEntry::Serves(l) = &e.node {
                // Repeatable: one entry per let.
                match serves.iter().find(|s| s.node == l.node) {
                    Some(first) => {
                        let first = first.span;
                        self.duplicate("`serves` of the let", &l.node, l.span, first)
                    }
                    None => serves.push(Spanned::new(l.node.clone(), l.span)),
                }
                continue;
            }
            let key = match &e.node {
                ast::ComponentEntry::Deployment(_) => "deployment",
                ast::ComponentEntry::Container(_) => "container",
                ast::ComponentEntry::Image(_) => "image",
                ast::ComponentEntry::From(_) => "from",
                ast::ComponentEntry::To(_) => "to",
                ast::ComponentEntry::Migrations(..) => "migrations",
                ast::ComponentEntry::Role(_) => "role",
                ast::ComponentEntry::Serves(_) => "serves",
                ast::ComponentEntry::BlueGreen(_) => "blue_green",
                ast::ComponentEntry::Traffic(..) => "traffic",
            };
            if let Some(first) = seen.get(key) {
                let first = *first;
                self.duplicate("entry", key, e.span, first);
                continue;
            }
            seen.insert(key, e.span);
            match &e.node {
                ast::ComponentEntry::Deployment(names) => {
                    let mut seen_names: HashMap<String, Span> = HashMap::new();
                    for n in names {
                        if let Some(s) = self.plain(n, "a deployment name") {
                            self.k8s_subdomain(&s, n.span, "deployment");
                            if let Some(first) = seen_names.get(&s) {
                                let first = *first;
                                self.duplicate("deployment", &s, n.span, first);
                            } else {
                                seen_names.insert(s.clone(), n.span);
                                deployments.push(s);
                            }
                        }
                    }
                }
                ast::ComponentEntry::Container(s) => {
                    if let Some(n) = self.plain(s, "a container name") {
                        self.k8s_label(&n, s.span, "container");
                        container = Some(n);
                    }
                }
                ast::ComponentEntry::Image(s) => {
                    if let Some(n) = self.plain(s, "an image") {
                        if let Some(stripped) = strip_image_tag(&n) {
                            self.error(CheckError::ImageWithTag {
                                image: n.clone(),
                                span: s.span.into(),
                                help: format!(
                                    "write `image \"{stripped}\"`; `from` and `to` give the tag"
                                ),
                            });
                        }
                        image = Some(n);
                    }
                }
                ast::ComponentEntry::From(v) => {
                    from = self.version(v).map(|x| Spanned::new(x, v.span))
                }
                ast::ComponentEntry::To(v) => to = self.version(v).map(|x| Spanned::new(x, v.span)),
                ast::ComponentEntry::Migrations(m, block) => {
                    if let Some(b) = block {
                        migration_files = self.migration_block(b);
                    }
                    migrations = match m.node.as_str() {
                        "backward_compatible" => Migrations::BackwardCompatible,
                        "forward_only" => Migrations::ForwardOnly,
                        other => {
                            self.error(CheckError::InvalidValue {
                                what: "migrations kind",
                                value: other.to_string(),
                                span: m.span.into(),
                                help: "write `migrations backward_compatible` or `migrations forward_only`".into(),
                            });
                            Migrations::BackwardCompatible
                        }
                    }
                }
                ast::ComponentEntry::Role(r) => role = Some(r.node.clone()),
                ast::ComponentEntry::Serves(_) => {}
                ast::ComponentEntry::BlueGreen(entries) => {
                    blue_green = self.blue_green(entries, e.span)
                }
                ast::ComponentEntry::Traffic(kind, name) => traffic = self.traffic(kind, name),
            }
        }
        let what = format!("component `{}`", c.name.node);
        let workload = match (deployments.is_empty(), blue_green) {
            (false, Some(bg)) => {
                self.error(CheckError::Misplaced {
                    what: "`deployment` beside `blue_green`".into(),
                    span: seen["deployment"].into(),
                    help: "a blue-green component names its two deployments as `blue` and `green` inside `blue_green { … }`".into(),
                });
                Workload::BlueGreen(bg)
            }
            (_, Some(bg)) => Workload::BlueGreen(bg),
            (false, None) => Workload::Deployments(deployments),
            (true, None) => {
                if !seen.contains_key("blue_green") {
                    self.error(CheckError::MissingEntry {
                        what: what.clone(),
                        missing: "a `deployment` or a `blue_green { … }` block",
                        span: c.name.span.into(),
                        help: format!(
                            "add `deployment \"{}\"` inside the component",
                            suggest_k8s_name(&c.name.node)
                        ),
                    });
                }
                Workload::Deployments(vec![])
            }
        };
        for (key, example) in [
            ("image", "image \"org/name\""),
            ("from", "from 1.4.0"),
            ("to", "to 1.5.0"),
        ] {
            if !seen.contains_key(key) {
                self.error(CheckError::MissingEntry {
                    what: what.clone(),
                    missing: match key {
                        "image" => "an `image`",
                        "from" => "a `from` version",
                        _ => "a `to` version",
                    },
                    span: c.name.span.into(),
                    help: format!("add `{example}` inside the component"),
                });
            }
        }
        if let (Some(f), Some(t)) = (&from, &to) {
            if t.node < f.node {
                self.error(CheckError::Downgrade {
                    comp: c.name.node.clone(),
                    from: f.node.to_string(),
                    to: t.node.to_string(),
                    span: t.span.into(),
                });
            }
        }
        let container = container.unwrap_or_else(|| {
            self.k8s_label(&c.name.node, c.name.span, "container");
            c.name.node.clone()
        });
        let zero = Version::new(0, 0, 0);
        Component {
            name: c.name.node.clone(),
            role: role.unwrap_or_else(|| c.name.node.clone()),
            workload,
            container,
            image: image.unwrap_or_default(),
            from: from.map_or_else(|| zero.clone(), |f| f.node),
            to: to.map_or(zero, |t| t.node),
            migrations,
            migration_files,
            traffic,
            serves,
            hosted_by: None,
            span,
        }
    }

    fn traffic(&mut self, kind: &ast::Ident, name: &Spanned<ast::StrLit>) -> Option<Traffic> {
        let kind = match kind.node.as_str() {
            "httproute" => TrafficKind::HttpRoute,
            "ingress" => TrafficKind::Ingress,
            other => {
                self.error(CheckError::InvalidValue {
                    what: "traffic router",
                    value: other.to_string(),
                    span: kind.span.into(),
                    help: "write `traffic httproute \"NAME\"` (Gateway API) or `traffic ingress \"NAME\"` (ingress-nginx)".into(),
                });
                return None;
            }
        };
        let n = self.plain(name, "a traffic object's name")?;
        self.k8s_subdomain(&n, name.span, "route");
        Some(Traffic { kind, name: n })
    }

    fn blue_green(
        &mut self,
        entries: &[Spanned<ast::BlueGreenEntry>],
        span: Span,
    ) -> Option<BlueGreen> {
        let mut vals: HashMap<&'static str, String> = HashMap::new();
        let mut seen: HashMap<&'static str, Span> = HashMap::new();
        for e in entries {
            let (key, s, what) = match &e.node {
                ast::BlueGreenEntry::Service(s) => ("service", s, "service"),
                ast::BlueGreenEntry::Selector(s) => ("selector", s, "selector"),
                ast::BlueGreenEntry::Blue(s) => ("blue", s, "deployment"),
                ast::BlueGreenEntry::Green(s) => ("green", s, "deployment"),
            };
            if let Some(first) = seen.get(key) {
                let first = *first;
                self.duplicate("entry", key, e.span, first);
                continue;
            }
            seen.insert(key, e.span);
            if let Some(v) = self.plain(s, "a blue-green name") {
                if key == "selector" {
                    if v.is_empty() || v.len() > 63 {
                        self.error(CheckError::InvalidValue {
                            what: "label key",
                            value: v.clone(),
                            span: s.span.into(),
                            help: "a label key is 1 to 63 characters, like \"version\"".into(),
                        });
                    }
                } else if key == "service" {
                    self.k8s_label(&v, s.span, what);
                } else {
                    self.k8s_subdomain(&v, s.span, what);
                }
                vals.insert(key, v);
            }
        }
        let mut missing = Vec::new();
        for key in ["service", "selector", "blue", "green"] {
            if !seen.contains_key(key) {
                missing.push(key);
            }
        }
        if !missing.is_empty() {
            self.error(CheckError::MissingEntry {
                what: "a `blue_green` block".into(),
                missing: "`service`, `selector`, `blue` and `green`",
                span: span.into(),
                help: format!(
                    "add {}",
                    missing
                        .iter()
                        .map(|m| format!("`{m} \"…\"`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
            return None;
        }
        if vals.get("blue") == vals.get("green") && vals.contains_key("blue") {
            self.error(CheckError::InvalidValue {
                what: "blue-green pair",
                value: vals["blue"].clone(),
                span: span.into(),
                help: "blue and green must be two different deployments".into(),
            });
        }
        Some(BlueGreen {
            service: vals.remove("service")?,
            selector: vals.remove("selector")?,
            blue: vals.remove("blue")?,
            green: vals.remove("green")?,
        })
    }

    pub(crate) fn let_decl(&mut self, l: &ast::LetDecl, env: Option<usize>) -> Option<Let> {
        let value = match &l.value {
            ast::LetValue::Env(var) => {
                let var = self.plain(var, "an environment variable name")?;
                // Its value is masked in whatever is printed about files.
                crate::redact::note_secret_var(&var);
                LetValue::Secret { var }
            }
            ast::LetValue::Value(v) => {
                let s = self.string_value(v)?;
                LetValue::Text(self.template(&s, Purpose::Other, env))
            }
        };
        Some(Let {
            name: l.name.node.clone(),
            value,
            span: l.name.span,
        })
    }

    fn env(&mut self, e: &ast::EnvDecl, index: usize) -> Env {
        let mut context = None;
        let mut namespace = None;
        let mut after = Vec::new();
        let mut allow_hosts: Vec<String> = Vec::new();
        let mut lets = Vec::new();
        let mut monitors = Vec::new();
        let mut seen: HashMap<(&'static str, String), Span> = HashMap::new();
        for entry in &e.entries {
            match &entry.node {
                ast::EnvEntry::Context(c) => {
                    let key = Spanned::new("context".to_string(), entry.span);
                    if self.first(&mut seen, "entry", &key) {
                        context = self.plain(c, "a context name");
                    }
                }
                ast::EnvEntry::Namespace(n) => {
                    let key = Spanned::new("namespace".to_string(), entry.span);
                    if self.first(&mut seen, "entry", &key) {
                        namespace = self.plain(n, "a namespace");
                        if let Some(ns) = &namespace {
                            self.k8s_label(&ns.clone(), n.span, "namespace");
                        }
                    }
                }
                ast::EnvEntry::After(names) => {
                    for n in names {
                        if self.first(&mut seen, "after", n) {
                            after.push(n.clone());
                        }
                    }
                }
                ast::EnvEntry::Let(l) => {
                    if self.first(&mut seen, "let", &l.name) {
                        lets.extend(self.let_decl(l, Some(index)));
                    }
                }
                ast::EnvEntry::AllowHosts(hosts) => allow_hosts.extend(self.host_patterns(hosts)),
                ast::EnvEntry::Monitor(m) => {
                    if self.first(&mut seen, "monitor", &m.name) {
                        monitors.extend(self.monitor(m, Some(index)));
                    }
                }
            }
        }
        Env {
            name: e.name.node.clone(),
            context,
            namespace,
            after: after.into_iter().map(|a| a.node).collect(),
            lets,
            allow_hosts,
            monitors,
            span: e.name.span,
        }
    }
}
