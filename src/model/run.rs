//! The abstract run (semantics in the module docs of [`crate::model`]).
//!
//! States are one bitmask per component over that component's versions (interned and sorted), so a
//! transition is checked in a few word operations: only pairs a transition *adds* are looked at.
//! Rolling back a completed stage depends only on (stage, state, which components the run had
//! changed), so those walks are memoized and every failure point after the first reuses them:
//! the whole check is linear in the number of failure points times the number of stages, with a
//! hash look-up per stage.

use std::collections::HashMap;
use std::rc::Rc;

use crate::matrix::{Matrix, Status, Verdict};
use crate::span::Span;
use crate::version::{Version, VersionPattern, VersionRange};

use super::{OnFailure, Op, Program, RollbackSpec, Stmt};

type Mask = u64;

/// The most components, and versions per component, the model handles (one bit each).
pub(super) const LIMIT: usize = 64;

fn bits(m: Mask) -> impl Iterator<Item = usize> {
    let mut m = m;
    std::iter::from_fn(move || {
        if m == 0 {
            None
        } else {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            Some(i)
        }
    })
}

/// A statement that can fail, from which a rollback path starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailurePoint {
    /// Index into [`Program::stages`].
    pub stage: usize,
    pub span: Span,
    /// `guard`, `rolling api to 1.5.0`, …
    pub what: String,
}

/// What a finding is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingKind {
    /// `ktplay::compat::incompatible`: `peer` at `peer_version` beside `hub` at `hub_version`.
    Incompatible {
        hub: String,
        hub_version: Version,
        peer: String,
        peer_version: Version,
        /// The deciding row (`None`: the rule).
        row: Option<usize>,
        allowed: Option<VersionRange>,
    },
    /// `ktplay::compat::no_row`.
    NoRow { hub: String, version: Version },
    /// `ktplay::compat::eol` (warning).
    Eol {
        hub: String,
        version: Version,
        row: usize,
    },
    /// `ktplay::compat::order` (warning): components in the order the run first changes them.
    Order { actual: Vec<String> },
    /// `ktplay::compat::forward_only_rollback`.
    ForwardOnlyRollback { component: String },
    /// `ktplay::compat::unmodelled_undo` (warning).
    UnmodelledUndo { component: String },
    /// `ktplay::compat::model_limit` (warning): too many components or versions; not checked.
    ModelLimit,
}

impl FindingKind {
    /// The stable diagnostic code.
    pub fn code(&self) -> &'static str {
        match self {
            FindingKind::Incompatible { .. } => "ktplay::compat::incompatible",
            FindingKind::NoRow { .. } => "ktplay::compat::no_row",
            FindingKind::Eol { .. } => "ktplay::compat::eol",
            FindingKind::Order { .. } => "ktplay::compat::order",
            FindingKind::ForwardOnlyRollback { .. } => "ktplay::compat::forward_only_rollback",
            FindingKind::UnmodelledUndo { .. } => "ktplay::compat::unmodelled_undo",
            FindingKind::ModelLimit => "ktplay::compat::model_limit",
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(
            self,
            FindingKind::Incompatible { .. }
                | FindingKind::NoRow { .. }
                | FindingKind::ForwardOnlyRollback { .. }
        )
    }
}

/// One deduplicated finding, with everything its diagnostic says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    /// The statement that creates the state (or the component block, for the initial state).
    pub span: Span,
    /// What that statement does here, for its label.
    pub label: String,
    /// The whole message.
    pub message: String,
    /// How to fix it.
    pub help: String,
    /// Met on the forward path.
    pub forward: bool,
    /// How many failure points' rollback paths meet it.
    pub failure_points: usize,
    /// The first of those failure points.
    pub first_failure: Option<FailurePoint>,
}

/// The result of the abstract run.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// In source order.
    pub findings: Vec<Finding>,
    /// How many failure points were walked.
    pub failure_points: usize,
}

impl Analysis {
    /// Any error (as opposed to warnings)?
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.kind.is_error())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Key {
    Incompatible {
        h: usize,
        hv: usize,
        p: usize,
        pv: usize,
    },
    NoRow {
        h: usize,
        hv: usize,
    },
    Eol {
        h: usize,
        hv: usize,
    },
    ForwardOnly {
        c: usize,
    },
    Unmodelled {
        c: usize,
    },
}

/// What created a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Initial,
    Forward { stage: usize },
    Implicit { stage: usize },
    Block { stage: usize },
}

/// A finding as met on one path, before deduplication.
#[derive(Clone, Debug)]
struct Raw {
    key: Key,
    span: Span,
    cause: Cause,
    /// The component the transition changed.
    comp: usize,
    /// Incompatible: hub set, peer set. ForwardOnly: set before, after. NoRow/Eol: hub set.
    a: Mask,
    b: Mask,
    /// For `Unmodelled`: the statement text.
    what: Option<String>,
}

#[derive(Clone, Copy, Debug)]
struct Restore {
    span: Span,
    comp: usize,
    prev: Mask,
}

/// Everything fixed once the program and matrix are known.
struct Tables<'a> {
    p: &'a Program,
    m: &'a Matrix,
    versions: Vec<Vec<Version>>,
    init: Vec<Mask>,
    hubs: Vec<usize>,
    peers: Vec<usize>,
    is_hub: Vec<bool>,
    is_peer: Vec<bool>,
    /// `bad[h][hv][p]`: versions of peer `p` forbidden beside hub `h` at version `hv`.
    bad: Vec<Vec<Vec<Mask>>>,
    norow: Vec<Mask>,
    eol: Vec<Mask>,
    forward_only: Vec<bool>,
    /// Per completed stage, its actions' implicit rollbacks in forward order.
    implicit: Vec<Vec<Restore>>,
}

fn collect_versions(stmts: &[Stmt], out: &mut [Vec<Version>]) {
    for s in stmts {
        match &s.op {
            Op::Rolling { comp, to } => out[*comp].push(to.clone()),
            Op::Canary { comp, to, guards } | Op::BlueGreen { comp, to, guards } => {
                out[*comp].push(to.clone());
                collect_versions(guards, out);
            }
            _ => {}
        }
    }
}

impl<'a> Tables<'a> {
    fn new(p: &'a Program, m: &'a Matrix) -> Result<Self, usize> {
        let n = p.components.len();
        if n > LIMIT {
            return Err(LIMIT);
        }
        let mut versions: Vec<Vec<Version>> = p
            .components
            .iter()
            .map(|c| vec![c.from.clone(), c.to.clone()])
            .collect();
        for st in &p.stages {
            collect_versions(&st.stmts, &mut versions);
            if let RollbackSpec::Block(stmts, _) = &st.rollback {
                collect_versions(stmts, &mut versions);
            }
        }
        for (i, vs) in versions.iter_mut().enumerate() {
            vs.sort();
            vs.dedup();
            if vs.len() > LIMIT {
                return Err(i);
            }
        }
        let roles: Vec<&str> = p.components.iter().map(|c| c.role()).collect();
        let is_hub: Vec<bool> = roles.iter().map(|r| *r == m.hub).collect();
        let is_peer: Vec<bool> = roles.iter().map(|r| m.is_column(r)).collect();
        let hubs: Vec<usize> = (0..n).filter(|&i| is_hub[i]).collect();
        let peers: Vec<usize> = (0..n).filter(|&i| is_peer[i]).collect();
        let mut bad = vec![Vec::new(); n];
        let mut norow = vec![0; n];
        let mut eol = vec![0; n];
        for &h in &hubs {
            for (hi, hv) in versions[h].iter().enumerate() {
                if !m.covers(hv) {
                    norow[h] |= 1 << hi;
                }
                if m.status_of(hv) == Some(Status::Eol) {
                    eol[h] |= 1 << hi;
                }
                let mut row = vec![0; n];
                for &pc in &peers {
                    for (pi, pv) in versions[pc].iter().enumerate() {
                        if let Verdict::Forbidden { .. } = m.verdict(roles[pc], pv, hv) {
                            row[pc] |= 1 << pi;
                        }
                    }
                }
                bad[h].push(row);
            }
        }
        let init = (0..n)
            .map(|i| 1 << versions[i].binary_search(&p.components[i].from).unwrap())
            .collect();
        Ok(Tables {
            p,
            m,
            init,
            hubs,
            peers,
            is_hub,
            is_peer,
            bad,
            norow,
            eol,
            forward_only: p.components.iter().map(|c| c.forward_only).collect(),
            versions,
            implicit: Vec::new(),
        })
    }

    fn bit(&self, c: usize, v: &Version) -> Mask {
        1 << self.versions[c].binary_search(v).expect("interned")
    }

    /// Set component `c` to `new`, recording what the transition introduces.
    fn change(
        &self,
        vs: &mut [Mask],
        c: usize,
        new: Mask,
        span: Span,
        cause: Cause,
        out: &mut Vec<Raw>,
    ) {
        let old = vs[c];
        if old == new {
            return;
        }
        vs[c] = new;
        let raw = |key, a, b| Raw {
            key,
            span,
            cause,
            comp: c,
            a,
            b,
            what: None,
        };
        // Bits are in version order: the component goes down when a version it stops running is
        // newer than every version it keeps. A roll *forward* inside a rollback block (the
        // corrective release) is not a rollback.
        let removed = old & !new;
        if self.forward_only[c] && removed != 0 && (new == 0 || removed.ilog2() > new.ilog2()) {
            out.push(raw(Key::ForwardOnly { c }, old, new));
        }
        let added = new & !old;
        if added == 0 {
            return;
        }
        if self.is_hub[c] {
            for hv in bits(added) {
                if self.norow[c] >> hv & 1 == 1 {
                    out.push(raw(Key::NoRow { h: c, hv }, new, 0));
                    continue;
                }
                if self.eol[c] >> hv & 1 == 1 {
                    out.push(raw(Key::Eol { h: c, hv }, new, 0));
                }
                let bad = &self.bad[c][hv];
                for &p in &self.peers {
                    for pv in bits(vs[p] & bad[p]) {
                        out.push(raw(Key::Incompatible { h: c, hv, p, pv }, new, vs[p]));
                    }
                }
            }
        }
        if self.is_peer[c] {
            for &h in &self.hubs {
                for hv in bits(vs[h] & !self.norow[h]) {
                    for pv in bits(added & self.bad[h][hv][c]) {
                        out.push(raw(Key::Incompatible { h, hv, p: c, pv }, vs[h], new));
                    }
                }
            }
        }
    }

    /// Restore `c` to `target`: `S ∪ target`, then `target`.
    fn restore(
        &self,
        vs: &mut [Mask],
        c: usize,
        target: Mask,
        span: Span,
        cause: Cause,
        out: &mut Vec<Raw>,
    ) {
        self.change(vs, c, vs[c] | target, span, cause, out);
        self.change(vs, c, target, span, cause, out);
    }

    /// Roll back stage `k` from `vs`: its block, nothing, or the implicit rollbacks of `started`
    /// (all of its actions when `None`) in reverse.
    fn rollback_stage(
        &self,
        k: usize,
        started: Option<&[Restore]>,
        vs: &mut [Mask],
        changed: Mask,
        out: &mut Vec<Raw>,
    ) {
        match &self.p.stages[k].rollback {
            RollbackSpec::None(_) => {}
            RollbackSpec::Implicit => {
                let list = match started {
                    Some(l) => l,
                    None => &self.implicit[k],
                };
                for r in list.iter().rev() {
                    self.restore(
                        vs,
                        r.comp,
                        r.prev,
                        r.span,
                        Cause::Implicit { stage: k },
                        out,
                    );
                }
            }
            RollbackSpec::Block(stmts, _) => {
                let cause = Cause::Block { stage: k };
                for s in stmts {
                    match &s.op {
                        Op::Rolling { comp, to } | Op::Canary { comp, to, .. } => {
                            let v = self.bit(*comp, to);
                            self.change(vs, *comp, vs[*comp] | v, s.span, cause, out);
                            self.change(vs, *comp, v, s.span, cause, out);
                        }
                        Op::BlueGreen { comp, to, .. } => {
                            let v = self.bit(*comp, to);
                            self.change(vs, *comp, vs[*comp] | v, s.span, cause, out);
                        }
                        Op::Undo {
                            comp,
                            revision: None,
                        } if changed >> comp & 1 == 1 => {
                            self.restore(vs, *comp, self.init[*comp], s.span, cause, out);
                        }
                        Op::Undo {
                            comp,
                            revision: Some(_),
                        } => out.push(Raw {
                            key: Key::Unmodelled { c: *comp },
                            span: s.span,
                            cause,
                            comp: *comp,
                            a: vs[*comp],
                            b: vs[*comp],
                            what: Some(s.op.describe(self.p)),
                        }),
                        _ => {}
                    }
                }
            }
        }
    }
}

struct Entry {
    raw: Raw,
    forward: bool,
    /// Failure points whose rollback meets it, ascending.
    fps: Vec<usize>,
}

/// The forward state.
struct Fwd {
    vs: Vec<Mask>,
    hist: Vec<Vec<Mask>>,
    changed: Mask,
}

struct Step {
    raws: Vec<Raw>,
    end: Vec<Mask>,
}

struct Engine<'a> {
    t: Tables<'a>,
    entries: Vec<Entry>,
    index: HashMap<(Key, Span), usize>,
    memo: HashMap<(usize, Vec<Mask>, Mask), Rc<Step>>,
    fps: Vec<FailurePoint>,
    /// Per component: (stage, statement index, span) of the first forward change.
    first_change: Vec<Option<(usize, usize, Span)>>,
    /// Every forward transition: (stage, component, new set).
    changes: Vec<(usize, usize, Mask)>,
}

impl<'a> Engine<'a> {
    /// A violation already met on the forward path is one finding: rollback paths that meet the
    /// same pair elsewhere are counted on it instead of reported again, since fixing the forward
    /// path is the fix (and "roll back in the opposite order" would mislead).
    fn fold_into_forward(&mut self) {
        let mut forward: HashMap<Key, usize> = HashMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            if e.forward {
                forward.entry(e.raw.key).or_insert(i);
            }
        }
        let folded: Vec<(usize, usize)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.forward)
            .filter_map(|(i, e)| forward.get(&e.raw.key).map(|&f| (i, f)))
            .collect();
        for &(i, f) in &folded {
            let fps = std::mem::take(&mut self.entries[i].fps);
            let into = &mut self.entries[f].fps;
            into.extend(fps);
            into.sort_unstable();
            into.dedup();
        }
        let gone: std::collections::HashSet<usize> = folded.iter().map(|&(i, _)| i).collect();
        let mut i = 0;
        self.entries.retain(|_| {
            i += 1;
            !gone.contains(&(i - 1))
        });
    }

    fn record(&mut self, raw: &Raw, fp: Option<usize>) {
        let i = match self.index.get(&(raw.key, raw.span)) {
            Some(&i) => i,
            None => {
                self.entries.push(Entry {
                    raw: raw.clone(),
                    forward: false,
                    fps: Vec::new(),
                });
                self.index
                    .insert((raw.key, raw.span), self.entries.len() - 1);
                self.entries.len() - 1
            }
        };
        let e = &mut self.entries[i];
        match fp {
            None => e.forward = true,
            // Failure points are walked in order, each one's records together.
            Some(fp) => {
                if e.fps.last() != Some(&fp) {
                    e.fps.push(fp);
                }
            }
        }
    }

    fn fwd_change(&mut self, f: &mut Fwd, c: usize, new: Mask, k: usize, i: usize, span: Span) {
        if f.vs[c] == new {
            return;
        }
        let mut out = Vec::new();
        self.t.change(
            &mut f.vs,
            c,
            new,
            span,
            Cause::Forward { stage: k },
            &mut out,
        );
        f.changed |= 1 << c;
        self.first_change[c].get_or_insert((k, i, span));
        self.changes.push((k, c, new));
        for r in &out {
            self.record(r, None);
        }
    }

    fn fail(&mut self, k: usize, stmt: &Stmt, f: &Fwd, started: &[Restore]) {
        let id = self.fps.len();
        self.fps.push(FailurePoint {
            stage: k,
            span: stmt.span,
            what: stmt.op.describe(self.t.p),
        });
        if self.t.p.on_failure == OnFailure::Halt {
            return;
        }
        let mut vs = f.vs.clone();
        let mut out = Vec::new();
        self.t
            .rollback_stage(k, Some(started), &mut vs, f.changed, &mut out);
        for r in &out {
            self.record(r, Some(id));
        }
        for j in (0..k).rev() {
            let key = (j, vs, f.changed);
            let step = match self.memo.get(&key) {
                Some(s) => s.clone(),
                None => {
                    let mut end = key.1.clone();
                    let mut raws = Vec::new();
                    self.t
                        .rollback_stage(j, None, &mut end, f.changed, &mut raws);
                    let s = Rc::new(Step { raws, end });
                    self.memo.insert(key, s.clone());
                    s
                }
            };
            for r in &step.raws {
                self.record(r, Some(id));
            }
            vs = step.end.clone();
        }
    }

    fn unmodelled(&mut self, stmt: &Stmt, c: usize, f: &Fwd, k: usize) {
        let raw = Raw {
            key: Key::Unmodelled { c },
            span: stmt.span,
            cause: Cause::Forward { stage: k },
            comp: c,
            a: f.vs[c],
            b: f.vs[c],
            what: Some(stmt.op.describe(self.t.p)),
        };
        self.record(&raw, None);
    }

    fn forward(&mut self) {
        let p = self.t.p;
        let n = p.components.len();
        let mut f = Fwd {
            vs: vec![0; n],
            hist: self.t.init.iter().map(|&m| vec![m]).collect(),
            changed: 0,
        };
        // The initial state, built one component at a time so a pair is reported at the later one.
        let mut out = Vec::new();
        for c in 0..n {
            let span = p.components[c].span;
            self.t
                .change(&mut f.vs, c, self.t.init[c], span, Cause::Initial, &mut out);
        }
        for r in &out {
            self.record(r, None);
        }
        for (k, stage) in p.stages.iter().enumerate() {
            let mut started: Vec<Restore> = Vec::new();
            for (i, stmt) in stage.stmts.iter().enumerate() {
                match &stmt.op {
                    Op::Pause => {}
                    Op::Guard
                    | Op::Approve
                    | Op::Switch { .. }
                    | Op::Scale { .. }
                    | Op::Restart { .. } => self.fail(k, stmt, &f, &started),
                    Op::Rolling { comp, to }
                    | Op::Canary { comp, to, .. }
                    | Op::BlueGreen { comp, to, .. } => {
                        let c = *comp;
                        let v = self.t.bit(c, to);
                        let prev = f.vs[c];
                        self.fwd_change(&mut f, c, prev | v, k, i, stmt.span);
                        started.push(Restore {
                            span: stmt.span,
                            comp: c,
                            prev,
                        });
                        self.fail(k, stmt, &f, &started);
                        if let Op::Canary { guards, .. } | Op::BlueGreen { guards, .. } = &stmt.op {
                            for g in guards.iter().filter(|g| g.op != Op::Pause) {
                                self.fail(k, g, &f, &started);
                            }
                        }
                        if !matches!(stmt.op, Op::BlueGreen { .. }) {
                            self.fwd_change(&mut f, c, v, k, i, stmt.span);
                            f.hist[c].retain(|&r| r != v);
                            f.hist[c].push(v);
                        }
                    }
                    Op::Undo {
                        comp,
                        revision: None,
                    } if p.components[*comp].blue_green => self.fail(k, stmt, &f, &started),
                    Op::Undo {
                        comp,
                        revision: None,
                    } if f.hist[*comp].len() >= 2 => {
                        let c = *comp;
                        let h = &mut f.hist[c];
                        let target = h.remove(h.len() - 2);
                        h.push(target);
                        let mixed = f.vs[c] | target;
                        self.fwd_change(&mut f, c, mixed, k, i, stmt.span);
                        self.fail(k, stmt, &f, &started);
                        self.fwd_change(&mut f, c, target, k, i, stmt.span);
                    }
                    Op::Undo { comp, .. } => {
                        self.unmodelled(stmt, *comp, &f, k);
                        self.fail(k, stmt, &f, &started);
                    }
                }
            }
            self.t.implicit.push(started);
        }
    }
}

/// Run the program abstractly against the matrix and collect every finding.
pub fn analyse(program: &Program, matrix: &Matrix) -> Analysis {
    let t = match Tables::new(program, matrix) {
        Ok(t) => t,
        Err(c) => {
            let (span, what) = if c == LIMIT && program.components.len() > LIMIT {
                (program.components[LIMIT].span, "components")
            } else {
                (program.components[c].span, "versions of one component")
            };
            return Analysis {
                findings: vec![Finding {
                    kind: FindingKind::ModelLimit,
                    span,
                    label: format!("more than {LIMIT} {what}"),
                    message: format!(
                        "the compatibility model handles at most {LIMIT} {what}; not checked"
                    ),
                    help: "split the playbook".into(),
                    forward: true,
                    failure_points: 0,
                    first_failure: None,
                }],
                failure_points: 0,
            };
        }
    };
    let n = program.components.len();
    let mut e = Engine {
        t,
        entries: Vec::new(),
        index: HashMap::new(),
        memo: HashMap::new(),
        fps: Vec::new(),
        first_change: vec![None; n],
        changes: Vec::new(),
    };
    e.forward();
    e.fold_into_forward();
    let mut findings: Vec<Finding> = e.entries.iter().map(|x| e.finding(x)).collect();
    if let Some(o) = e.order_finding() {
        findings.push(o);
    }
    findings.sort_by(|a, b| {
        (a.span.file, a.span.start, a.kind.code(), &a.message).cmp(&(
            b.span.file,
            b.span.start,
            b.kind.code(),
            &b.message,
        ))
    });
    Analysis {
        findings,
        failure_points: e.fps.len(),
    }
}

// ---- turning raw findings into words ----

impl Engine<'_> {
    fn name(&self, c: usize) -> &str {
        &self.t.p.components[c].name
    }

    fn set(&self, c: usize, m: Mask) -> String {
        crate::matrix::format_set(bits(m).map(|i| &self.t.versions[c][i]))
    }

    fn stage_name(&self, k: usize) -> &str {
        &self.t.p.stages[k].name
    }

    fn path(&self, x: &Entry) -> String {
        let n = x.fps.len();
        let fps = match n {
            1 => "1 failure point".to_string(),
            n => format!("{n} failure points"),
        };
        match (x.forward, x.fps.first().copied()) {
            (true, None) if x.raw.cause == Cause::Initial => "in the initial state".into(),
            (true, None) => "on the forward path".into(),
            (true, Some(_)) if x.raw.cause == Cause::Initial => {
                format!("in the initial state, and on the rollback from {fps}")
            }
            (true, Some(_)) => format!("on the forward path, and on the rollback from {fps}"),
            (false, Some(fp)) => {
                let f = &self.fps[fp];
                let mut s = format!(
                    "on the rollback after `{}` in stage `{}` fails",
                    f.what,
                    self.stage_name(f.stage)
                );
                if n > 1 {
                    s.push_str(&format!(
                        ", and from {} other failure point{}",
                        n - 1,
                        if n == 2 { "" } else { "s" }
                    ));
                }
                s
            }
            (false, None) => unreachable!("a finding is met on some path"),
        }
    }

    fn creating_label(&self, cause: Cause) -> String {
        match cause {
            Cause::Initial => "the run starts in this state (`from`)".into(),
            Cause::Forward { .. } => "this creates the state".into(),
            Cause::Implicit { .. } => "rolling this back creates the state".into(),
            Cause::Block { .. } => "this rollback statement creates the state".into(),
        }
    }

    fn finding(&self, x: &Entry) -> Finding {
        let r = &x.raw;
        let m = self.t.m;
        let path = self.path(x);
        let (kind, message, label, help) = match r.key {
            Key::Incompatible { h, hv, p, pv } => {
                let hub_version = self.t.versions[h][hv].clone();
                let peer_version = self.t.versions[p][pv].clone();
                let role = self.t.p.components[p].role();
                let (row, allowed) = match m.verdict(role, &peer_version, &hub_version) {
                    Verdict::Forbidden { row, allowed } => (row, allowed),
                    v => unreachable!("forbidden pair judged {v:?}"),
                };
                let state = format!(
                    "{} {} × {} {}",
                    self.name(h),
                    self.set(h, r.a),
                    self.name(p),
                    self.set(p, r.b)
                );
                let message = format!(
                    "{state} is not allowed: {} of matrix `{}` allows {}, not {} {} ({path})",
                    m.describe_row(row),
                    m.name,
                    Matrix::describe_allowed(role, &allowed),
                    self.name(p),
                    peer_version,
                );
                let help = self.help_incompatible(r, h, &hub_version, p, &peer_version, &allowed);
                (
                    FindingKind::Incompatible {
                        hub: self.name(h).into(),
                        hub_version,
                        peer: self.name(p).into(),
                        peer_version,
                        row,
                        allowed,
                    },
                    message,
                    self.creating_label(r.cause),
                    help,
                )
            }
            Key::NoRow { h, hv } => {
                let v = self.t.versions[h][hv].clone();
                (
                    FindingKind::NoRow {
                        hub: self.name(h).into(),
                        version: v.clone(),
                    },
                    format!(
                        "no row for {} {v} in matrix `{}` ({path})",
                        self.name(h),
                        m.name
                    ),
                    self.creating_label(r.cause),
                    format!(
                        "add a row `{} {}.{}.x …` to matrix `{}`, or choose a version it covers ({})",
                        m.hub,
                        v.major,
                        v.minor,
                        m.name,
                        m.covered_hub_versions()
                    ),
                )
            }
            Key::Eol { h, hv } => {
                let v = self.t.versions[h][hv].clone();
                let row = m.row_index_for(&v).expect("eol has a row");
                (
                    FindingKind::Eol {
                        hub: self.name(h).into(),
                        version: v.clone(),
                        row,
                    },
                    format!(
                        "{} {v} is end of life: {} of matrix `{}` is eol ({path})",
                        self.name(h),
                        m.describe_row(Some(row)),
                        m.name
                    ),
                    self.creating_label(r.cause),
                    format!(
                        "move {} to a supported or current version; end-of-life versions get no fixes",
                        self.name(h)
                    ),
                )
            }
            Key::ForwardOnly { c } => {
                let stage = match r.cause {
                    Cause::Implicit { stage }
                    | Cause::Block { stage }
                    | Cause::Forward { stage } => stage,
                    Cause::Initial => unreachable!("the initial state moves nothing back"),
                };
                let moved = format!(
                    "{} from {} back to {}",
                    self.name(c),
                    self.set(c, r.a),
                    self.set(c, r.b)
                );
                (
                    FindingKind::ForwardOnlyRollback {
                        component: self.name(c).into(),
                    },
                    format!(
                        "rolling back {}, whose migrations are forward_only ({path})",
                        self.name(c)
                    ),
                    match r.cause {
                        Cause::Implicit { .. } => {
                            format!("the implicit rollback of this takes {moved}")
                        }
                        _ => format!("this takes {moved}"),
                    },
                    if let Cause::Forward { .. } = r.cause {
                        format!(
                            "{c}'s database migrations cannot be undone: instead of going back, roll forward to a corrective release (`rolling {c} to VERSION`)",
                            c = self.name(c),
                        )
                    } else {
                        format!(
                            "{c}'s database migrations cannot be undone: fix forward with a corrective release instead — give stage `{s}` a `rollback {{ … }}` block that rolls {c} forward or leaves it alone, or `rollback none`",
                            c = self.name(c),
                            s = self.stage_name(stage)
                        )
                    },
                )
            }
            Key::Unmodelled { c } => {
                let what = r.what.clone().unwrap_or_default();
                (
                    FindingKind::UnmodelledUndo {
                        component: self.name(c).into(),
                    },
                    format!(
                        "the model cannot know what `{what}` restores; it assumes {} stays at {} ({path})",
                        self.name(c),
                        self.set(c, r.a)
                    ),
                    "the revision it restores is not known before the run".into(),
                    format!(
                        "write `rolling {} to VERSION` (or `undo {}` after this run changed it) so the plan can be checked; the live check before each action still guards the run",
                        self.name(c),
                        self.name(c)
                    ),
                )
            }
        };
        Finding {
            kind,
            span: r.span,
            label,
            message,
            help,
            forward: x.forward,
            failure_points: x.fps.len(),
            first_failure: x.fps.first().map(|&i| self.fps[i].clone()),
        }
    }

    /// The highest hub pattern below `hv` whose row (or the rule) allows `pv` for `role`.
    fn intermediate(&self, role: &str, hv: &Version, pv: &Version) -> Option<String> {
        let m = self.t.m;
        let rows = m
            .rows
            .iter()
            .filter(|r| r.hub.compare(hv) == std::cmp::Ordering::Greater)
            .filter(|r| r.allowed(role).is_some_and(|a| a.contains(pv)))
            .max_by(|a, b| a.hub.lowest().cmp(&b.hub.lowest()));
        if let Some(r) = rows {
            return Some(r.hub.to_string());
        }
        if m.rule.is_some() && pv.major == hv.major && pv.minor + 1 < hv.minor {
            return Some(VersionPattern::Minor(pv.major, pv.minor + 1).to_string());
        }
        None
    }

    fn help_incompatible(
        &self,
        r: &Raw,
        h: usize,
        hv: &Version,
        p: usize,
        pv: &Version,
        allowed: &Option<VersionRange>,
    ) -> String {
        let (hub, peer) = (self.name(h), self.name(p));
        let role = self.t.p.components[p].role();
        let Some(range) = allowed else {
            return format!(
                "the matrix row for {hub} {hv} names no {role}: add `{role} …` to it if they are compatible"
            );
        };
        let too_new = range.high.compare(pv) == std::cmp::Ordering::Greater;
        let allows = |hm: Mask, pv: &Version| {
            bits(hm).all(|i| self.t.m.verdict(role, pv, &self.t.versions[h][i]) == Verdict::Allowed)
        };
        match r.cause {
            Cause::Initial => format!(
                "the `from` versions are already incompatible: check {hub} and {peer} against what the cluster runs"
            ),
            Cause::Implicit { stage } | Cause::Block { stage } => {
                let (moved, other) = if r.comp == h { (hub, peer) } else { (peer, hub) };
                format!(
                    "roll back in the opposite order: roll {other} back before {moved} (a `rollback {{ … }}` block in stage `{}` can set the order)",
                    self.stage_name(stage)
                )
            }
            Cause::Forward { stage } if r.comp == p => {
                if !too_new {
                    return format!("{hub} {hv} needs {role} {range}: choose a {peer} version in that range");
                }
                // The first forward change that brings the hub to versions allowing pv.
                let later = self
                    .changes
                    .iter()
                    .find(|(_, c, set)| *c == h && allows(*set, pv));
                match later {
                    Some((s2, _, _)) if *s2 != stage => format!(
                        "upgrade {hub} before {peer}: move stage `{}` after stage `{}`",
                        self.stage_name(stage),
                        self.stage_name(*s2)
                    ),
                    Some(_) => format!(
                        "upgrade {hub} before {peer}: in stage `{}`, change {hub} first",
                        self.stage_name(stage)
                    ),
                    None => format!(
                        "{peer} {pv} needs a newer {hub}: upgrade {hub} to a version whose row allows it first"
                    ),
                }
            }
            Cause::Forward { stage } => {
                if too_new {
                    return format!(
                        "{hub} {hv} allows {role} {range}: bring {peer} into that range before {hub} moves to {hv}"
                    );
                }
                // The hub moved ahead of the peer. If a later upgrade of the peer would suit the
                // hub both before and after, the stages are merely in the wrong order.
                let hv_bit = self.t.bit(h, hv);
                let before = r.a & !hv_bit;
                let peer_later = self.changes.iter().find(|(s2, c, set)| {
                    *c == p
                        && *s2 > stage
                        && bits(*set).all(|i| {
                            let t = &self.t.versions[p][i];
                            allows(before | hv_bit, t)
                        })
                });
                if let Some((s2, _, _)) = peer_later {
                    return format!(
                        "upgrade {peer} before {hub} moves to {hv}: move stage `{}` before stage `{}`",
                        self.stage_name(*s2),
                        self.stage_name(stage)
                    );
                }
                match self.intermediate(role, hv, pv) {
                    Some(mid) => format!(
                        "upgrade through {mid} first: take {hub} to {mid}, then {peer} into the range {hub} {hv} allows ({range}), then {hub} to {hv}"
                    ),
                    None => format!(
                        "{hub} {hv} allows {role} {range}: upgrade {peer} into that range before {hub} moves to {hv}"
                    ),
                }
            }
        }
    }

    /// `ktplay::compat::order`: the run first changes components in an order the matrix's
    /// `order` does not recommend.
    fn order_finding(&self) -> Option<Finding> {
        let m = self.t.m;
        let p = self.t.p;
        let rank = |c: usize| m.order.iter().position(|r| r == p.components[c].role());
        let mut seq: Vec<(usize, usize, Span, usize, usize)> = (0..p.components.len())
            .filter_map(|c| {
                let (k, i, span) = self.first_change[c]?;
                Some((k, i, span, c, rank(c)?))
            })
            .collect();
        seq.sort_by_key(|x| (x.0, x.1));
        for (n, x) in seq.iter().enumerate() {
            let Some(y) = seq[n + 1..]
                .iter()
                .filter(|y| y.4 < x.4)
                .min_by_key(|y| y.4)
            else {
                continue;
            };
            let actual: Vec<String> = seq.iter().map(|s| self.name(s.3).to_string()).collect();
            let help = if x.0 == y.0 {
                format!(
                    "in stage `{}`, change {} before {}",
                    self.stage_name(x.0),
                    self.name(y.3),
                    self.name(x.3)
                )
            } else {
                format!(
                    "move stage `{}` before stage `{}`",
                    self.stage_name(y.0),
                    self.stage_name(x.0)
                )
            };
            return Some(Finding {
                message: format!(
                    "the run upgrades {} in the order {}; matrix `{}` recommends {}",
                    if actual.len() == 2 {
                        "both"
                    } else {
                        "components"
                    },
                    actual.join(", "),
                    m.name,
                    m.order.join(", ")
                ),
                kind: FindingKind::Order { actual },
                span: x.2,
                label: format!("{} changes here, before {}", self.name(x.3), self.name(y.3)),
                help,
                forward: true,
                failure_points: 0,
                first_failure: None,
            });
        }
        None
    }
}
