//! `fleet` items: one playbook across clusters, in waves. Lowered after the playbooks, against the
//! playbook each names (as a test's), then held to the matrix across clusters
//! (`check::fleet_model`).

use std::time::Duration;

use miette::SourceSpan;

use super::lower::Lowerer;
use super::names::did_you_mean;
use super::test_items::{resolve_playbook, Playbooks};
use super::CheckError;
use crate::diag::Problem;
use crate::program::{Env, Let, Playbook, Statement};
use crate::span::{FileId, Span};
use crate::syntax::ast::{self, ClusterEntry, FleetEntry, FleetPolicy, WaveEntry};

/// How often a soak's guards run between its first and its last round.
pub(crate) const SOAK_EVERY: Duration = Duration::from_secs(30);

/// A checked fleet.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub name: String,
    pub span: Span,
    /// Index into [`super::Checked::playbooks`].
    pub playbook: usize,
    pub policy: FleetPolicy,
    pub shared: Vec<Shared>,
    pub clusters: Vec<Cluster>,
    pub waves: Vec<Wave>,
}

/// `shared C in CLUSTER`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    /// Index into the playbook's components.
    pub comp: usize,
    /// Index into [`Fleet::clusters`].
    pub cluster: usize,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub span: Span,
    /// The kube context (its own, else its env's).
    pub context: String,
    /// The playbook's env it starts from (its own, else the fleet's).
    pub env: Option<String>,
    /// Its own lets, over the env's.
    pub lets: Vec<Let>,
}

#[derive(Debug, Clone)]
pub struct Wave {
    pub name: String,
    pub span: Span,
    /// Indices into [`Fleet::clusters`], in the order written.
    pub clusters: Vec<usize>,
    /// Clusters of this wave run at once.
    pub parallel: usize,
    pub soak: Option<Soak>,
    pub approve: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Soak {
    pub time: Duration,
    pub guards: Vec<Statement>,
    pub span: Span,
}

impl Fleet {
    pub fn cluster(&self, name: &str) -> Option<usize> {
        self.clusters.iter().position(|c| c.name == name)
    }

    /// The cluster that runs component `comp` for every cluster, if it is shared.
    pub fn host_of(&self, comp: usize) -> Option<usize> {
        self.shared
            .iter()
            .find(|s| s.comp == comp)
            .map(|s| s.cluster)
    }

    /// Whether cluster `c` runs component `comp`'s statements (not when another cluster hosts it).
    pub fn runs(&self, c: usize, comp: usize) -> bool {
        self.host_of(comp).is_none_or(|h| h == c)
    }

    /// The env a run in cluster `c` uses: its env (or an empty one), named after the cluster,
    /// with the cluster's context and its lets over the env's.
    pub fn env_for(&self, pb: &Playbook, c: usize) -> Env {
        let cl = &self.clusters[c];
        let base = cl.env.as_deref().and_then(|e| pb.env(e));
        let mut env = match base {
            Some(e) => e.clone(),
            None => Env {
                name: String::new(),
                context: None,
                namespace: None,
                after: Vec::new(),
                lets: Vec::new(),
                allow_hosts: Vec::new(),
                monitors: Vec::new(),
                span: cl.span,
            },
        };
        env.name = cl.name.clone();
        env.context = Some(cl.context.clone());
        // Waves order the clusters; an env's `after` names envs, not clusters.
        env.after.clear();
        for l in &cl.lets {
            env.lets.retain(|x| x.name != l.name);
            env.lets.push(l.clone());
        }
        env
    }

    /// What cluster `c` runs: the playbook without the statements of components another cluster
    /// hosts (in stages and rollback blocks), with [`Fleet::env_for`] as its only env.
    pub fn playbook_for(&self, pb: &Playbook, c: usize) -> Playbook {
        let mut out = pb.clone();
        // Actions on a component another cluster hosts, and guards on its pods (`logs`, `ready`).
        let keep = |st: &Statement| {
            let comp = match &st.op {
                crate::program::Op::Guard(g) => match &g.kind {
                    crate::program::GuardKind::Logs { comp, .. }
                    | crate::program::GuardKind::Ready { comp, .. } => Some(*comp),
                    _ => None,
                },
                op => op.component(),
            };
            comp.is_none_or(|comp| self.runs(c, comp))
        };
        for stage in &mut out.stages {
            stage.stmts.retain(keep);
            if let crate::program::Rollback::Block(b, _) = &mut stage.rollback {
                b.retain(keep);
            }
        }
        out.envs = vec![self.env_for(pb, c)];
        for s in &self.shared {
            if s.cluster != c {
                out.components[s.comp].hosted_by = Some(self.clusters[s.cluster].name.clone());
            }
        }
        // A component another cluster hosts runs, as far as this cluster can see, what its host
        // runs when this cluster starts: its last version if the host ran in an earlier batch.
        for s in &self.shared {
            if s.cluster == c || self.batch_of(s.cluster) >= self.batch_of(c) {
                continue;
            }
            let last = super::fleet_model::trajectory(self, pb, s.cluster)
                .pop()
                .and_then(|st| st.get(&pb.components[s.comp].name).cloned())
                .filter(|set| set.len() == 1)
                .and_then(|set| set.into_iter().next());
            if let Some(v) = last {
                out.components[s.comp].from = v;
            }
        }
        out
    }

    /// The batch (a wave's clusters, `parallel` at a time; numbered across waves) of cluster `c`;
    /// `usize::MAX` for a cluster in no wave.
    pub fn batch_of(&self, c: usize) -> usize {
        let mut b = 0;
        for w in &self.waves {
            for chunk in w.clusters.chunks(w.parallel.max(1)) {
                if chunk.contains(&c) {
                    return b;
                }
                b += 1;
            }
        }
        usize::MAX
    }

    /// The clusters in the order they run: wave by wave, each wave's in the order written.
    pub fn order(&self) -> Vec<(usize, usize)> {
        self.waves
            .iter()
            .enumerate()
            .flat_map(|(w, wave)| wave.clusters.iter().map(move |&c| (w, c)))
            .collect()
    }
}

/// Problems with a fleet item.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub(crate) enum FleetError {
    #[error("{message}")]
    #[diagnostic(code(ktplay::check::fleet_playbook))]
    Playbook {
        message: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: Option<String>,
    },
    #[error("unknown cluster `{name}`")]
    #[diagnostic(code(ktplay::check::unknown_cluster))]
    UnknownCluster {
        name: String,
        #[label("no cluster of that name in this fleet")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },
    #[error("cluster `{name}` has no kube context")]
    #[diagnostic(
        code(ktplay::check::unknown_context),
        help("add `context \"…\"` to the cluster, or give its env a context")
    )]
    NoContext {
        name: String,
        #[label("neither this cluster nor its env names a context")]
        span: SourceSpan,
    },
    #[error("wave `{name}` has no clusters")]
    #[diagnostic(
        code(ktplay::check::empty_wave),
        help("add `clusters NAME…`, or remove the wave")
    )]
    EmptyWave {
        name: String,
        #[label("this wave upgrades nothing")]
        span: SourceSpan,
    },
    #[error("cluster `{name}` is in two waves")]
    #[diagnostic(
        code(ktplay::check::fleet_twice),
        help("a cluster is upgraded once: keep it in one wave")
    )]
    Twice {
        name: String,
        #[label("again here")]
        span: SourceSpan,
        #[label("first here")]
        first: SourceSpan,
    },
    #[error("cluster `{name}` is in no wave: the fleet never upgrades it")]
    #[diagnostic(
        code(ktplay::check::idle_cluster),
        severity(Warning),
        help("add it to a wave's `clusters`, or remove it")
    )]
    Idle {
        name: String,
        #[label("declared here")]
        span: SourceSpan,
    },
    #[error("a soak without guards only waits")]
    #[diagnostic(
        code(ktplay::check::soak_unwatched),
        severity(Warning),
        help("give it guards that watch the finished clusters: `soak 10m {{ guard http GET \"${{url}}/readyz\" expect 200 }}`")
    )]
    Unwatched {
        #[label("nothing is watched during this soak")]
        span: SourceSpan,
    },
}

/// Lower the fleet items of one file.
pub(crate) fn lower(
    id: FileId,
    file: &ast::File,
    dir: &std::path::Path,
    books: &Playbooks<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<Fleet> {
    let mut out = Vec::new();
    for item in &file.items {
        let ast::Item::Fleet(f) = item else { continue };
        if let Some(fleet) = lower_one(id, f, dir, books, problems) {
            out.push(fleet);
        }
    }
    out
}

fn lower_one(
    id: FileId,
    f: &ast::FleetDecl,
    dir: &std::path::Path,
    books: &Playbooks<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Fleet> {
    let push = |problems: &mut Vec<Problem>, e: FleetError| problems.push(Problem::new(id, e));
    let check = |problems: &mut Vec<Problem>, e: CheckError| problems.push(Problem::new(id, e));
    // The playbook first: every other name is checked against it.
    let mut playbook = None;
    let mut seen_playbook: Option<Span> = None;
    for e in &f.entries {
        if let FleetEntry::Playbook { file, name } = &e.node {
            if let Some(first) = seen_playbook {
                check(
                    problems,
                    CheckError::Duplicate {
                        what: "fleet entry",
                        name: "playbook".into(),
                        span: e.span.into(),
                        first: first.into(),
                    },
                );
                continue;
            }
            seen_playbook = Some(e.span);
            match resolve_playbook(dir, file, name.as_ref(), books) {
                Ok(i) => playbook = Some(i),
                Err(r) => push(
                    problems,
                    FleetError::Playbook {
                        message: r.message,
                        span: r.span.into(),
                        label: r.label,
                        help: r.help,
                    },
                ),
            }
        }
    }
    if seen_playbook.is_none() {
        push(
            problems,
            FleetError::Playbook {
                message: "the fleet names no playbook".into(),
                span: f.name.span.into(),
                label: "this fleet".into(),
                help: Some("add `playbook \"FILE.ktplay\"` (relative to this file)".into()),
            },
        );
    }
    let pi = playbook?;
    let pb = &books.all[pi].1;
    let env_known = |problems: &mut Vec<Problem>, e: &ast::Ident| -> bool {
        if pb.env(&e.node).is_some() {
            return true;
        }
        check(
            problems,
            CheckError::UnknownEnv {
                name: e.node.clone(),
                span: e.span.into(),
                help: did_you_mean(&e.node, pb.envs.iter().map(|e| e.name.as_str())).or_else(
                    || {
                        Some(format!(
                            "playbook \"{}\" has envs: {}",
                            pb.name,
                            pb.envs
                                .iter()
                                .map(|e| e.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    },
                ),
            },
        );
        false
    };

    let mut fleet_env: Option<String> = None;
    let mut policy: Option<(FleetPolicy, Span)> = None;
    let mut lowerer = Lowerer::new(problems, id, pb.base_dir.clone(), Vec::new());
    lowerer.components = pb.components.clone();
    // Names first (clusters are named before waves may use them).
    let mut clusters: Vec<Cluster> = Vec::new();
    let mut cluster_decls: Vec<&ast::ClusterDecl> = Vec::new();
    for e in &f.entries {
        match &e.node {
            FleetEntry::Env(name) if env_known(lowerer.problems, name) => {
                fleet_env = Some(name.node.clone());
            }
            FleetEntry::OnFailure(p) => match policy {
                Some((_, first)) => lowerer.duplicate("fleet entry", "on failure", e.span, first),
                None => policy = Some((*p, e.span)),
            },
            FleetEntry::Cluster(c) => {
                if let Some(first) = clusters.iter().find(|x| x.name == c.name.node) {
                    let first = first.span;
                    lowerer.duplicate("cluster", &c.name.node, c.name.span, first);
                    continue;
                }
                clusters.push(Cluster {
                    name: c.name.node.clone(),
                    span: c.name.span,
                    context: String::new(),
                    env: None,
                    lets: Vec::new(),
                });
                cluster_decls.push(c);
            }
            _ => {}
        }
    }
    for (ci, c) in cluster_decls.iter().enumerate() {
        let mut context: Option<String> = None;
        let mut env: Option<String> = fleet_env.clone();
        for ce in &c.entries {
            match &ce.node {
                ClusterEntry::Context(s) => context = lowerer.plain(s, "a kube context"),
                ClusterEntry::Env(name) => {
                    if env_known(lowerer.problems, name) {
                        env = Some(name.node.clone());
                    }
                }
                ClusterEntry::Let(l) => {
                    if let Some(first) = clusters[ci]
                        .lets
                        .iter()
                        .find(|x| x.name == l.name.node)
                        .map(|x| x.span)
                    {
                        lowerer.duplicate("let", &l.name.node, l.name.span, first);
                        continue;
                    }
                    if let Some(lowered) = lowerer.let_decl(l, None) {
                        clusters[ci].lets.push(Let {
                            span: l.name.span,
                            ..lowered
                        });
                    }
                }
            }
        }
        if env.is_none() && !pb.envs.is_empty() {
            lowerer.error(CheckError::MissingEntry {
                what: format!("cluster `{}`", c.name.node),
                missing: "env",
                span: c.name.span.into(),
                help: format!(
                    "playbook \"{}\" has envs: add `env {}` to the cluster or to the fleet",
                    pb.name, pb.envs[0].name
                ),
            });
        }
        let context = context.or_else(|| {
            env.as_deref()
                .and_then(|e| pb.env(e))
                .and_then(|e| e.context.clone())
        });
        match context {
            Some(ctx) => clusters[ci].context = ctx,
            None => lowerer.problems.push(Problem::new(
                id,
                FleetError::NoContext {
                    name: c.name.node.clone(),
                    span: c.name.span.into(),
                },
            )),
        }
        clusters[ci].env = env;
    }
    let cluster_index = |lowerer: &mut Lowerer, name: &ast::Ident| -> Option<usize> {
        if let Some(i) = clusters.iter().position(|c| c.name == name.node) {
            return Some(i);
        }
        let help =
            did_you_mean(&name.node, clusters.iter().map(|c| c.name.as_str())).or_else(|| {
                Some(if clusters.is_empty() {
                    "declare it with `cluster NAME { context \"…\" }`".into()
                } else {
                    format!(
                        "clusters of this fleet: {}",
                        clusters
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            });
        lowerer.problems.push(Problem::new(
            id,
            FleetError::UnknownCluster {
                name: name.node.clone(),
                span: name.span.into(),
                help,
            },
        ));
        None
    };
    // Shared components and waves.
    let mut shared: Vec<Shared> = Vec::new();
    let mut waves: Vec<Wave> = Vec::new();
    let mut member_of: Vec<Option<Span>> = vec![None; clusters.len()];
    let mut soak_guards: Vec<Statement> = Vec::new();
    for e in &f.entries {
        match &e.node {
            FleetEntry::Shared { comp, cluster } => {
                let c = lowerer.component_index(comp);
                let h = cluster_index(&mut lowerer, cluster);
                if let (Some(comp_i), Some(h)) = (c, h) {
                    if shared.iter().any(|s| s.comp == comp_i) {
                        lowerer.duplicate("shared component", &comp.node, comp.span, e.span);
                        continue;
                    }
                    shared.push(Shared {
                        comp: comp_i,
                        cluster: h,
                    });
                }
            }
            FleetEntry::Wave(w) => {
                if let Some(first) = waves.iter().find(|x| x.name == w.name.node) {
                    let first = first.span;
                    lowerer.duplicate("wave", &w.name.node, w.name.span, first);
                    continue;
                }
                let mut wave = Wave {
                    name: w.name.node.clone(),
                    span: w.name.span,
                    clusters: Vec::new(),
                    parallel: 1,
                    soak: None,
                    approve: None,
                };
                let mut seen: [Option<Span>; 3] = [None; 3];
                let mut once = |lowerer: &mut Lowerer, k: usize, what: &str, span: Span| {
                    if let Some(first) = seen[k] {
                        lowerer.duplicate("wave entry", what, span, first);
                        false
                    } else {
                        seen[k] = Some(span);
                        true
                    }
                };
                for we in &w.entries {
                    match &we.node {
                        WaveEntry::Clusters(names) => {
                            for n in names {
                                let Some(c) = cluster_index(&mut lowerer, n) else {
                                    continue;
                                };
                                if let Some(first) = member_of[c] {
                                    lowerer.problems.push(Problem::new(
                                        id,
                                        FleetError::Twice {
                                            name: n.node.clone(),
                                            span: n.span.into(),
                                            first: first.into(),
                                        },
                                    ));
                                    continue;
                                }
                                member_of[c] = Some(n.span);
                                wave.clusters.push(c);
                            }
                        }
                        WaveEntry::Parallel(v) => {
                            if once(&mut lowerer, 0, "parallel", we.span) {
                                if let Some(n) = lowerer.count(v, "parallel", 1..=1000) {
                                    wave.parallel = n as usize;
                                }
                            }
                        }
                        WaveEntry::Soak { time, guards } => {
                            if !once(&mut lowerer, 1, "soak", we.span) {
                                continue;
                            }
                            let time = lowerer.duration(time);
                            let lowered = guards
                                .as_deref()
                                .map(|g| lowerer.guard_block(g))
                                .unwrap_or_default();
                            if lowered.is_empty() && guards.as_ref().is_none_or(|g| g.is_empty()) {
                                lowerer.problems.push(Problem::new(
                                    id,
                                    FleetError::Unwatched {
                                        span: we.span.into(),
                                    },
                                ));
                            }
                            soak_guards.extend(lowered.iter().cloned());
                            if let Some(time) = time {
                                wave.soak = Some(Soak {
                                    time,
                                    guards: lowered,
                                    span: we.span,
                                });
                            }
                        }
                        WaveEntry::Approve(q) => {
                            if once(&mut lowerer, 2, "approve", we.span) {
                                wave.approve = lowerer.plain(q, "a question");
                            }
                        }
                    }
                }
                if wave.clusters.is_empty()
                    && !w
                        .entries
                        .iter()
                        .any(|x| matches!(x.node, WaveEntry::Clusters(_)))
                {
                    lowerer.problems.push(Problem::new(
                        id,
                        FleetError::EmptyWave {
                            name: w.name.node.clone(),
                            span: w.name.span.into(),
                        },
                    ));
                }
                waves.push(wave);
            }
            _ => {}
        }
    }
    if waves.is_empty() {
        lowerer.error(CheckError::MissingEntry {
            what: format!("fleet \"{}\"", f.name.node.display()),
            missing: "wave",
            span: f.name.span.into(),
            help: "add `wave NAME { clusters … }`: waves say which clusters run, in order".into(),
        });
    }
    for (c, m) in member_of.iter().enumerate() {
        if m.is_none() && !waves.is_empty() && !clusters[c].context.is_empty() {
            lowerer.problems.push(Problem::new(
                id,
                FleetError::Idle {
                    name: clusters[c].name.clone(),
                    span: clusters[c].span.into(),
                },
            ));
        }
    }
    let fleet = Fleet {
        name: f.name.node.display(),
        span: f.span,
        playbook: pi,
        policy: policy.map_or(FleetPolicy::Stop, |(p, _)| p),
        shared,
        clusters,
        waves,
    };
    // Every `${let}` of the soaks' guards and of the clusters' lets, in every cluster's scope.
    let envs: Vec<Env> = (0..fleet.clusters.len())
        .map(|c| fleet.env_for(pb, c))
        .collect();
    lowerer.check_let_uses(&pb.lets, &envs);
    Some(fleet)
}
