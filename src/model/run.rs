//! The abstract run (semantics in the module docs of [`crate::model`]).
//!
//! States are one bitset per component over that component's versions (interned and sorted; a
//! word when they fit, [`Wide`] otherwise: no limit on components or versions), so a transition
//! is checked in a few word operations: only pairs a transition *adds* are looked at.
//!
//! Rolling back a completed stage depends only on (stage, state, which components the run had
//! changed). Each distinct such triple is one *node* of a rollback chain, walked once: its findings
//! and the node it leads to (the next stage down) are kept. A failure point rolls back its own
//! stage, then joins the chain at one node (a hash look-up) instead of walking every stage below
//! it again, so the check is linear in the failure points plus the distinct nodes (about one per
//! stage), not failure points × stages. How many failure points meet a finding is counted at the
//! end, from the nodes up (every path through a node meets its findings; the paths through two
//! nodes of one stage are disjoint, and a finding's statement belongs to one stage).

use foldhash::{HashMap, HashMapExt};

use crate::matrix::{Matrix, Status, Verdict};
use crate::span::Span;
use crate::version::Version;

use super::bits::{Bits, Wide};
use super::findings::{Analysis, FailurePoint};
use super::{OnFailure, Op, Program, RollbackSpec, Stmt};

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
pub(super) struct Raw<M> {
    pub(super) key: Key,
    pub(super) span: Span,
    pub(super) cause: Cause,
    /// The component the transition changed.
    pub(super) comp: usize,
    /// Incompatible: hub set, peer set. ForwardOnly: set before, after. NoRow/Eol: hub set.
    pub(super) a: M,
    pub(super) b: M,
    /// For `Unmodelled`: the statement text.
    pub(super) what: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) struct Restore<M> {
    pub(super) span: Span,
    pub(super) comp: usize,
    pub(super) prev: M,
}

/// Everything fixed once the program and matrix are known.
pub(super) struct Tables<'a, M> {
    pub(super) p: &'a Program,
    pub(super) m: &'a Matrix,
    pub(super) versions: Vec<Vec<Version>>,
    pub(super) init: Vec<M>,
    pub(super) hubs: Vec<usize>,
    pub(super) peers: Vec<usize>,
    pub(super) is_hub: Vec<bool>,
    pub(super) is_peer: Vec<bool>,
    /// `bad[h][hv][p]`: versions of peer `p` forbidden beside hub `h` at version `hv`.
    pub(super) bad: Vec<Vec<Vec<M>>>,
    pub(super) norow: Vec<M>,
    pub(super) eol: Vec<M>,
    pub(super) forward_only: Vec<bool>,
    /// Per stage, the components an `undo` in its rollback block or a block before it restores:
    /// the only ones whose "changed by this run" a rollback from that stage down looks at.
    undo_below: Vec<M>,
    /// Per completed stage, its actions' implicit rollbacks in forward order.
    pub(super) implicit: Vec<Vec<Restore<M>>>,
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

/// Every version each component can run in the abstract run, sorted.
fn versions_of(p: &Program) -> Vec<Vec<Version>> {
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
    for vs in versions.iter_mut() {
        vs.sort();
        vs.dedup();
    }
    versions
}

impl<'a, M: Bits> Tables<'a, M> {
    fn new(p: &'a Program, m: &'a Matrix, versions: Vec<Vec<Version>>) -> Self {
        let n = p.components.len();
        let roles: Vec<&str> = p.components.iter().map(|c| c.role()).collect();
        let is_hub: Vec<bool> = roles.iter().map(|r| *r == m.hub).collect();
        let is_peer: Vec<bool> = roles.iter().map(|r| m.is_column(r)).collect();
        let hubs: Vec<usize> = (0..n).filter(|&i| is_hub[i]).collect();
        let peers: Vec<usize> = (0..n).filter(|&i| is_peer[i]).collect();
        let mut bad = vec![Vec::new(); n];
        let mut norow = vec![M::empty(); n];
        let mut eol = vec![M::empty(); n];
        for &h in &hubs {
            for (hi, hv) in versions[h].iter().enumerate() {
                if !m.covers(hv) {
                    norow[h].insert(hi);
                }
                if m.status_of(hv) == Some(Status::Eol) {
                    eol[h].insert(hi);
                }
                let mut row = vec![M::empty(); n];
                for &pc in &peers {
                    for (pi, pv) in versions[pc].iter().enumerate() {
                        if let Verdict::Forbidden { .. } = m.verdict(roles[pc], pv, hv) {
                            row[pc].insert(pi);
                        }
                    }
                }
                bad[h].push(row);
            }
        }
        let init = (0..n)
            .map(|i| M::single(versions[i].binary_search(&p.components[i].from).unwrap()))
            .collect();
        let mut undo_below = Vec::with_capacity(p.stages.len());
        let mut undone = M::empty();
        for st in &p.stages {
            if let RollbackSpec::Block(stmts, _) = &st.rollback {
                for s in stmts {
                    if let Op::Undo {
                        comp,
                        revision: None,
                    } = s.op
                    {
                        undone.insert(comp);
                    }
                }
            }
            undo_below.push(undone.clone());
        }
        Tables {
            undo_below,
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
        }
    }

    pub(super) fn bit(&self, c: usize, v: &Version) -> M {
        M::single(self.versions[c].binary_search(v).expect("interned"))
    }

    /// Set component `c` to `new`, recording what the transition introduces.
    fn change(
        &self,
        vs: &mut [M],
        c: usize,
        new: M,
        span: Span,
        cause: Cause,
        out: &mut Vec<Raw<M>>,
    ) {
        if vs[c] == new {
            return;
        }
        let old = std::mem::replace(&mut vs[c], new);
        let vs = &*vs;
        let new = &vs[c];
        let raw = |key, a: &M, b: &M| Raw {
            key,
            span,
            cause,
            comp: c,
            a: a.clone(),
            b: b.clone(),
            what: None,
        };
        // Bits are in version order: the component goes down when a version it stops running is
        // newer than every version it keeps. A roll *forward* inside a rollback block (the
        // corrective release) is not a rollback.
        let removed = old.minus(new);
        if self.forward_only[c] && !removed.is_empty() && removed.highest() > new.highest() {
            out.push(raw(Key::ForwardOnly { c }, &old, new));
        }
        let added = new.minus(&old);
        if added.is_empty() {
            return;
        }
        if self.is_hub[c] {
            for hv in added.iter() {
                if self.norow[c].has(hv) {
                    out.push(raw(Key::NoRow { h: c, hv }, new, &M::empty()));
                    continue;
                }
                if self.eol[c].has(hv) {
                    out.push(raw(Key::Eol { h: c, hv }, new, &M::empty()));
                }
                let bad = &self.bad[c][hv];
                for &p in &self.peers {
                    for pv in vs[p].and(&bad[p]).iter() {
                        out.push(raw(Key::Incompatible { h: c, hv, p, pv }, new, &vs[p]));
                    }
                }
            }
        }
        if self.is_peer[c] {
            for &h in &self.hubs {
                for hv in vs[h].minus(&self.norow[h]).iter() {
                    for pv in added.and(&self.bad[h][hv][c]).iter() {
                        out.push(raw(Key::Incompatible { h, hv, p: c, pv }, &vs[h], new));
                    }
                }
            }
        }
    }

    /// Restore `c` to `target`: `S ∪ target`, then `target`.
    fn restore(
        &self,
        vs: &mut [M],
        c: usize,
        target: &M,
        span: Span,
        cause: Cause,
        out: &mut Vec<Raw<M>>,
    ) {
        let mixed = vs[c].or(target);
        self.change(vs, c, mixed, span, cause, out);
        self.change(vs, c, target.clone(), span, cause, out);
    }

    /// Roll back stage `k` from `vs`: its block, nothing, or the implicit rollbacks of `started`
    /// (all of its actions when `None`) in reverse.
    fn rollback_stage(
        &self,
        k: usize,
        started: Option<&[Restore<M>]>,
        vs: &mut [M],
        changed: &M,
        out: &mut Vec<Raw<M>>,
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
                        &r.prev,
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
                            let mixed = vs[*comp].or(&v);
                            self.change(vs, *comp, mixed, s.span, cause, out);
                            self.change(vs, *comp, v, s.span, cause, out);
                        }
                        Op::BlueGreen { comp, to, .. } => {
                            let v = self.bit(*comp, to);
                            let mixed = vs[*comp].or(&v);
                            self.change(vs, *comp, mixed, s.span, cause, out);
                        }
                        Op::Undo {
                            comp,
                            revision: None,
                        } if changed.has(*comp) => {
                            self.restore(vs, *comp, &self.init[*comp], s.span, cause, out);
                        }
                        Op::Undo {
                            comp,
                            revision: Some(_),
                        } => out.push(Raw {
                            key: Key::Unmodelled { c: *comp },
                            span: s.span,
                            cause,
                            comp: *comp,
                            a: vs[*comp].clone(),
                            b: vs[*comp].clone(),
                            what: Some(s.op.describe(self.p)),
                        }),
                        _ => {}
                    }
                }
            }
        }
    }
}

pub(super) struct Entry<M> {
    pub(super) raw: Raw<M>,
    pub(super) forward: bool,
    /// Failure points whose own stage's rollback meets it, ascending.
    direct: Vec<usize>,
    /// Chain nodes that meet it, ascending.
    nodes: Vec<usize>,
    /// How many failure points' rollbacks meet it (set by [`Engine::count`]).
    pub(super) n_fps: usize,
    /// The first of them.
    pub(super) first_fp: Option<usize>,
}

/// One completed stage rolled back from one state (the entries it meets list it): the stage,
/// and the node of the stage below (`None` after stage 0).
struct Node {
    stage: usize,
    next: Option<usize>,
}

/// The forward state.
pub(super) struct Fwd<M> {
    pub(super) vs: Vec<M>,
    pub(super) hist: Vec<Vec<M>>,
    pub(super) changed: M,
}

pub(super) struct Engine<'a, M> {
    pub(super) t: Tables<'a, M>,
    pub(super) entries: Vec<Entry<M>>,
    index: HashMap<(Key, Span), usize>,
    /// (stage, state, changed components) → node.
    memo: HashMap<(usize, Vec<M>, M), usize>,
    nodes: Vec<Node>,
    pub(super) fps: Vec<FailurePoint>,
    /// Per failure point, the node its rollback joins after its own stage.
    fp_node: Vec<Option<usize>>,
    /// Per component: (stage, statement index, span) of the first forward change.
    pub(super) first_change: Vec<Option<(usize, usize, Span)>>,
    /// Every forward transition: (stage, component, new set).
    pub(super) changes: Vec<(usize, usize, M)>,
}

impl<'a, M: Bits> Engine<'a, M> {
    /// How many failure points meet each entry, and the first. The paths through a node are the
    /// failure points that join the chain at it or at a node that leads to it; nodes are counted
    /// from the highest stage down, so every node's count is whole before it is passed on.
    fn count(&mut self) {
        let n = self.nodes.len();
        let mut reach = vec![0usize; n];
        let mut first = vec![usize::MAX; n];
        for (fp, node) in self.fp_node.iter().enumerate() {
            if let Some(x) = *node {
                reach[x] += 1;
                first[x] = first[x].min(fp);
            }
        }
        // A node leads to one of the stage below: from the highest stage down, every node has
        // its whole count before it passes it on.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by_key(|&x| std::cmp::Reverse(self.nodes[x].stage));
        for x in order {
            if let Some(y) = self.nodes[x].next {
                reach[y] += reach[x];
                first[y] = first[y].min(first[x]);
            }
        }
        for e in &mut self.entries {
            e.n_fps = e.direct.len() + e.nodes.iter().map(|&x| reach[x]).sum::<usize>();
            e.first_fp = e
                .nodes
                .iter()
                .map(|&x| first[x])
                .chain(e.direct.first().copied())
                .min()
                .filter(|&f| f != usize::MAX);
        }
    }

    /// Every failure point that meets entry `i` (for unions, where counts cannot be added).
    fn fps_of(&self, i: usize, preds: &[Vec<usize>], starts: &[Vec<usize>]) -> Vec<usize> {
        let e = &self.entries[i];
        let mut out = e.direct.clone();
        let mut stack = e.nodes.clone();
        while let Some(x) = stack.pop() {
            out.extend(&starts[x]);
            stack.extend(&preds[x]);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

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
        if folded.is_empty() {
            return;
        }
        // Paths through different statements may be the same failure point's: take the union.
        let mut preds = vec![Vec::new(); self.nodes.len()];
        for (x, node) in self.nodes.iter().enumerate() {
            if let Some(y) = node.next {
                preds[y].push(x);
            }
        }
        let mut starts = vec![Vec::new(); self.nodes.len()];
        for (fp, node) in self.fp_node.iter().enumerate() {
            if let Some(x) = *node {
                starts[x].push(fp);
            }
        }
        let mut into: HashMap<usize, Vec<usize>> = HashMap::new();
        for &(i, f) in &folded {
            into.entry(f).or_default().push(i);
        }
        for (f, from) in into {
            let mut all = self.fps_of(f, &preds, &starts);
            for i in from {
                all.extend(self.fps_of(i, &preds, &starts));
            }
            all.sort_unstable();
            all.dedup();
            let e = &mut self.entries[f];
            e.n_fps = all.len();
            e.first_fp = all.first().copied();
        }
        let gone: foldhash::HashSet<usize> = folded.iter().map(|&(i, _)| i).collect();
        let mut i = 0;
        self.entries.retain(|_| {
            i += 1;
            !gone.contains(&(i - 1))
        });
    }

    /// The entry of a raw finding, created the first time it is met.
    fn entry(&mut self, raw: &Raw<M>) -> usize {
        if let Some(&i) = self.index.get(&(raw.key, raw.span)) {
            return i;
        }
        self.entries.push(Entry {
            raw: raw.clone(),
            forward: false,
            direct: Vec::new(),
            nodes: Vec::new(),
            n_fps: 0,
            first_fp: None,
        });
        self.index
            .insert((raw.key, raw.span), self.entries.len() - 1);
        self.entries.len() - 1
    }

    /// Met on the forward path (`None`) or on failure point `fp`'s rollback of its own stage.
    fn record(&mut self, raw: &Raw<M>, fp: Option<usize>) {
        let i = self.entry(raw);
        let e = &mut self.entries[i];
        match fp {
            None => e.forward = true,
            // Failure points are walked in order, each one's records together.
            Some(fp) => {
                if e.direct.last() != Some(&fp) {
                    e.direct.push(fp);
                }
            }
        }
    }

    /// The node of rolling back stage `j` from `vs`, walking (and keeping) the chain below it
    /// down to the first node already known. Of the components the run changed, the key keeps
    /// only those an `undo` in a rollback block at or below `j` looks at (none, usually), so
    /// failure points that differ only in what the forward path has changed so far share nodes.
    fn node(&mut self, j: usize, vs: Vec<M>, changed: &M) -> usize {
        let mut key = (j, vs, changed.and(&self.t.undo_below[j]));
        let mut prev: Option<usize> = None;
        let mut head = None;
        loop {
            let known = self.memo.get(&key).copied();
            let id = match known {
                Some(id) => id,
                None => {
                    let (j, ref vs, ref changed) = key;
                    let mut end = vs.clone();
                    let mut raws = Vec::new();
                    self.t.rollback_stage(j, None, &mut end, changed, &mut raws);
                    let below = match j {
                        0 => M::empty(),
                        _ => changed.and(&self.t.undo_below[j - 1]),
                    };
                    let id = self.nodes.len();
                    for r in &raws {
                        let i = self.entry(r);
                        if self.entries[i].nodes.last() != Some(&id) {
                            self.entries[i].nodes.push(id);
                        }
                    }
                    self.nodes.push(Node {
                        stage: j,
                        next: None,
                    });
                    self.memo.insert(key, id);
                    key = (j.wrapping_sub(1), end, below);
                    id
                }
            };
            if let Some(p) = prev {
                self.nodes[p].next = Some(id);
            }
            head.get_or_insert(id);
            if known.is_some() || key.0 == usize::MAX {
                return head.expect("set above");
            }
            prev = Some(id);
        }
    }

    fn fwd_change(&mut self, f: &mut Fwd<M>, c: usize, new: M, k: usize, i: usize, span: Span) {
        if f.vs[c] == new {
            return;
        }
        let mut out = Vec::new();
        self.t.change(
            &mut f.vs,
            c,
            new.clone(),
            span,
            Cause::Forward { stage: k },
            &mut out,
        );
        f.changed.insert(c);
        self.first_change[c].get_or_insert((k, i, span));
        self.changes.push((k, c, new));
        for r in &out {
            self.record(r, None);
        }
    }

    fn fail(&mut self, k: usize, stmt: &Stmt, f: &Fwd<M>, started: &[Restore<M>]) {
        let id = self.fps.len();
        self.fps.push(FailurePoint {
            stage: k,
            span: stmt.span,
            what: stmt.op.describe(self.t.p),
        });
        if self.t.p.on_failure == OnFailure::Halt {
            self.fp_node.push(None);
            return;
        }
        let mut vs = f.vs.clone();
        let mut out = Vec::new();
        self.t
            .rollback_stage(k, Some(started), &mut vs, &f.changed, &mut out);
        for r in &out {
            self.record(r, Some(id));
        }
        let node = (k > 0).then(|| self.node(k - 1, vs, &f.changed));
        self.fp_node.push(node);
    }

    fn unmodelled(&mut self, stmt: &Stmt, c: usize, f: &Fwd<M>, k: usize) {
        let raw = Raw {
            key: Key::Unmodelled { c },
            span: stmt.span,
            cause: Cause::Forward { stage: k },
            comp: c,
            a: f.vs[c].clone(),
            b: f.vs[c].clone(),
            what: Some(stmt.op.describe(self.t.p)),
        };
        self.record(&raw, None);
    }

    fn forward(&mut self) {
        let p = self.t.p;
        let n = p.components.len();
        let mut f = Fwd {
            vs: vec![M::empty(); n],
            hist: self.t.init.iter().map(|m| vec![m.clone()]).collect(),
            changed: M::empty(),
        };
        // The initial state, built one component at a time so a pair is reported at the later one.
        let mut out = Vec::new();
        for c in 0..n {
            let span = p.components[c].span;
            let init = self.t.init[c].clone();
            self.t
                .change(&mut f.vs, c, init, span, Cause::Initial, &mut out);
        }
        for r in &out {
            self.record(r, None);
        }
        for (k, stage) in p.stages.iter().enumerate() {
            let mut started: Vec<Restore<M>> = Vec::new();
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
                        let prev = f.vs[c].clone();
                        self.fwd_change(&mut f, c, prev.or(&v), k, i, stmt.span);
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
                            self.fwd_change(&mut f, c, v.clone(), k, i, stmt.span);
                            f.hist[c].retain(|r| *r != v);
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
                        h.push(target.clone());
                        let mixed = f.vs[c].or(&target);
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

/// Run the program abstractly against the matrix and collect every finding. Sets are one word
/// each when every component's versions and the components themselves fit in 64 bits, and
/// [`Wide`] bitsets otherwise: there is no limit.
pub fn analyse(program: &Program, matrix: &Matrix) -> Analysis {
    let versions = versions_of(program);
    let widest = versions
        .iter()
        .map(Vec::len)
        .chain([program.components.len()])
        .max()
        .unwrap_or(0);
    if u64::fits(widest) {
        analyse_with::<u64>(program, matrix, versions)
    } else {
        analyse_with::<Wide>(program, matrix, versions)
    }
}

/// [`analyse`] with the wide bitsets whatever the size: for tests comparing the two
/// representations.
#[doc(hidden)]
pub fn analyse_wide(program: &Program, matrix: &Matrix) -> Analysis {
    analyse_with::<Wide>(program, matrix, versions_of(program))
}

fn analyse_with<M: Bits>(
    program: &Program,
    matrix: &Matrix,
    versions: Vec<Vec<Version>>,
) -> Analysis {
    let n = program.components.len();
    let mut e = Engine {
        t: Tables::<M>::new(program, matrix, versions),
        entries: Vec::new(),
        index: HashMap::new(),
        memo: HashMap::new(),
        nodes: Vec::new(),
        fps: Vec::new(),
        fp_node: Vec::new(),
        first_change: vec![None; n],
        changes: Vec::new(),
    };
    e.forward();
    e.count();
    e.fold_into_forward();
    let mut findings: Vec<_> = e.entries.iter().map(|x| e.finding(x)).collect();
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
