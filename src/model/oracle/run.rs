//! The abstract run as it was with one `u64` per set and no chain of rollback nodes: a test
//! oracle for [`crate::model::analyse`] (semantics in the module docs of [`crate::model`]).
//!
//! States are one bitmask per component over that component's versions (interned and sorted), so a
//! transition is checked in a few word operations: only pairs a transition *adds* are looked at.
//! Rolling back a completed stage depends only on (stage, state, which components the run had
//! changed), so those walks are memoized and every failure point after the first reuses them:
//! the whole check is linear in the number of failure points times the number of stages, with a
//! hash look-up per stage.

use foldhash::{HashMap, HashMapExt};
use std::rc::Rc;

use crate::matrix::{Matrix, Status, Verdict};
use crate::span::Span;
use crate::version::Version;

use crate::model::{Analysis, FailurePoint, Finding};
use crate::model::{OnFailure, Op, Program, RollbackSpec, Stmt};

pub(super) type Mask = u64;

/// The most components, and versions per component, the model handles (one bit each).
pub(super) const LIMIT: usize = 64;

pub(super) fn bits(m: Mask) -> impl Iterator<Item = usize> {
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

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Key {
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
pub(super) enum Cause {
    Initial,
    Forward { stage: usize },
    Implicit { stage: usize },
    Block { stage: usize },
}

/// A finding as met on one path, before deduplication.
#[derive(Clone, Debug)]
pub(super) struct Raw {
    pub(super) key: Key,
    pub(super) span: Span,
    pub(super) cause: Cause,
    /// The component the transition changed.
    pub(super) comp: usize,
    /// Incompatible: hub set, peer set. ForwardOnly: set before, after. NoRow/Eol: hub set.
    pub(super) a: Mask,
    pub(super) b: Mask,
    /// For `Unmodelled`: the statement text.
    pub(super) what: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Restore {
    pub(super) span: Span,
    pub(super) comp: usize,
    pub(super) prev: Mask,
}

/// Everything fixed once the program and matrix are known.
pub(super) struct Tables<'a> {
    pub(super) p: &'a Program,
    pub(super) m: &'a Matrix,
    pub(super) versions: Vec<Vec<Version>>,
    pub(super) init: Vec<Mask>,
    pub(super) hubs: Vec<usize>,
    pub(super) peers: Vec<usize>,
    pub(super) is_hub: Vec<bool>,
    pub(super) is_peer: Vec<bool>,
    /// `bad[h][hv][p]`: versions of peer `p` forbidden beside hub `h` at version `hv`.
    pub(super) bad: Vec<Vec<Vec<Mask>>>,
    pub(super) norow: Vec<Mask>,
    pub(super) eol: Vec<Mask>,
    pub(super) forward_only: Vec<bool>,
    /// Per completed stage, its actions' implicit rollbacks in forward order.
    pub(super) implicit: Vec<Vec<Restore>>,
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

    pub(super) fn bit(&self, c: usize, v: &Version) -> Mask {
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

pub(super) struct Entry {
    pub(super) raw: Raw,
    pub(super) forward: bool,
    /// Failure points whose rollback meets it, ascending.
    pub(super) fps: Vec<usize>,
}

/// The forward state.
pub(super) struct Fwd {
    pub(super) vs: Vec<Mask>,
    pub(super) hist: Vec<Vec<Mask>>,
    pub(super) changed: Mask,
}

pub(super) struct Step {
    pub(super) raws: Vec<Raw>,
    pub(super) end: Vec<Mask>,
}

pub(super) struct Engine<'a> {
    pub(super) t: Tables<'a>,
    pub(super) entries: Vec<Entry>,
    pub(super) index: HashMap<(Key, Span), usize>,
    pub(super) memo: HashMap<(usize, Vec<Mask>, Mask), Rc<Step>>,
    pub(super) fps: Vec<FailurePoint>,
    /// Per component: (stage, statement index, span) of the first forward change.
    pub(super) first_change: Vec<Option<(usize, usize, Span)>>,
    /// Every forward transition: (stage, component, new set).
    pub(super) changes: Vec<(usize, usize, Mask)>,
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
        let gone: foldhash::HashSet<usize> = folded.iter().map(|&(i, _)| i).collect();
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
pub(crate) fn analyse(program: &Program, matrix: &Matrix) -> Analysis {
    let t = match Tables::new(program, matrix) {
        Ok(t) => t,
        Err(_) => panic!("the oracle handles at most {LIMIT} components and versions"),
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
