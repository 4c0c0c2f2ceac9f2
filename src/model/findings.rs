//! The engine's raw findings in words: the path that meets a forbidden state, what creates it,
//! and help that names the fix (an order, an intermediate version, a rollback block).

use crate::matrix::{Matrix, Verdict};
use crate::span::Span;
use crate::version::{Version, VersionPattern, VersionRange};

use super::bits::Bits;
use super::run::{Cause, Engine, Entry, Key, Raw};

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

impl<M: Bits> Engine<'_, M> {
    fn name(&self, c: usize) -> &str {
        &self.t.p.components[c].name
    }

    fn set(&self, c: usize, m: &M) -> String {
        crate::matrix::format_set(m.iter().map(|i| &self.t.versions[c][i]))
    }

    fn stage_name(&self, k: usize) -> &str {
        &self.t.p.stages[k].name
    }

    fn path(&self, x: &Entry<M>) -> String {
        let n = x.n_fps;
        let fps = match n {
            1 => "1 failure point".to_string(),
            n => format!("{n} failure points"),
        };
        match (x.forward, x.first_fp) {
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

    pub(super) fn finding(&self, x: &Entry<M>) -> Finding {
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
                    self.set(h, &r.a),
                    self.name(p),
                    self.set(p, &r.b)
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
                    self.set(c, &r.a),
                    self.set(c, &r.b)
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
                            "{c}'s database migrations cannot be undone: fix forward with a corrective release instead — give stage `{s}` `rollback none` ({c} stays where it is; for forward-only components this does not warn), or a `rollback {{ … }}` block that rolls {c} forward",
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
                        self.set(c, &r.a)
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
            failure_points: x.n_fps,
            first_failure: x.first_fp.map(|i| self.fps[i].clone()),
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
        r: &Raw<M>,
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
        let allows = |hm: &M, pv: &Version| {
            hm.iter()
                .all(|i| self.t.m.verdict(role, pv, &self.t.versions[h][i]) == Verdict::Allowed)
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
                    .find(|(_, c, set)| *c == h && allows(set, pv));
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
                let before = r.a.minus(&hv_bit);
                let both = before.or(&hv_bit);
                let peer_later = self.changes.iter().find(|(s2, c, set)| {
                    *c == p
                        && *s2 > stage
                        && set.iter().all(|i| {
                            let t = &self.t.versions[p][i];
                            allows(&both, t)
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
    pub(super) fn order_finding(&self) -> Option<Finding> {
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
