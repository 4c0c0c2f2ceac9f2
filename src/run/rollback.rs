//! What actions replaced, and the rollback plan built from it.
//!
//! Every action records what it replaces before it changes anything ([`Record`], plain data,
//! journaled with the statement's start); its implicit rollback restores exactly that. The plan
//! of a failed run is a pure function of the playbook and the records of the statements that
//! started ([`rollback_plan`]), so a process resuming an interrupted rollback computes the same
//! plan from the journal as the one that began it (`docs/language.md`, "Failure and
//! rollback"):
//!
//! 1. the failed stage: its `rollback { … }` block if any, nothing for `rollback none`,
//!    otherwise the implicit rollbacks of its actions that had started, newest first;
//! 2. every completed stage in reverse, by the same rule.

use serde::{Deserialize, Serialize};

use crate::program::{Playbook, Rollback, Statement};
use crate::span::Span;

pub(crate) use super::kube::Snap;

/// What an action replaced (and what it will do when re-run), journaled with its start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Record {
    /// The deployments' images (and strategies) before a rolling update.
    Templates { comp: usize, deployments: Vec<Snap> },
    /// A canary: the canary deployments; what its promotion replaced, once promoted; with a
    /// traffic router, the stable Services whose selectors it pins to the stable ReplicaSet
    /// (their selectors before the canary).
    Canary {
        comp: usize,
        canaries: Vec<String>,
        promoted: Option<Vec<Snap>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pinned: Vec<Pinned>,
        /// With a traffic router: the component's Services it sends to and the route's rules
        /// as they were before the canary (what promotion and rollback put back).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        routed: Option<Routed>,
    },
    /// The Service selector value before a switch (blue-green, `switch`), and for `blue_green`
    /// the idle colour's deployment before it was given the new version: a rollback leaves the
    /// idle colour as it found it.
    Selector {
        comp: usize,
        service: String,
        key: String,
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idle: Option<Snap>,
    },
    /// Replicas before `scale`.
    Replicas {
        comp: usize,
        replicas: Vec<(String, i64)>,
    },
    /// `restart`: the annotation value it writes (re-running it changes nothing).
    Restart { comp: usize, at: String },
    /// `undo` outside rollback blocks: what it restores, read before acting.
    Undo {
        comp: usize,
        targets: Vec<(String, u64, Snap)>,
    },
}

impl Record {
    /// The component it is about.
    pub(crate) fn comp(&self) -> usize {
        match self {
            Record::Templates { comp, .. }
            | Record::Canary { comp, .. }
            | Record::Selector { comp, .. }
            | Record::Replicas { comp, .. }
            | Record::Restart { comp, .. }
            | Record::Undo { comp, .. } => *comp,
        }
    }

    /// Does it have an implicit rollback?
    pub(crate) fn reversible(&self) -> bool {
        !matches!(self, Record::Restart { .. } | Record::Undo { .. })
    }
}

/// A stable Service a traffic-routed canary pins to the stable ReplicaSet's
/// `pod-template-hash` while it runs, so the stable backend never reaches the canary's pods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pinned {
    pub service: String,
    /// The selector before the canary: what promotion and rollback put back.
    pub selector: std::collections::BTreeMap<String, String>,
    /// The deployment whose current ReplicaSet it is pinned to.
    pub deployment: String,
}

/// A routed canary's router before the canary: only these backends change, and they come
/// back exactly as they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routed {
    /// The component's own stable Services the router sends to (each gets `<name>-canary`).
    pub services: Vec<String>,
    /// HTTPRoute: each rule's `backendRefs` as they were (by rule index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<serde_json::Value>,
}

/// What a component was before this run first changed it (for `undo C` in rollback blocks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct First {
    pub deployments: Vec<Snap>,
    /// `(service, key, value)` of a blue-green component's selector.
    pub selector: Option<(String, String, String)>,
}

/// A statement that started, in a stage, with what its action replaced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Started {
    pub stmt: usize,
    pub span: Span,
    /// The statement as the output shows it.
    pub text: String,
    pub record: Option<Record>,
}

/// A step of the rollback plan.
#[derive(Debug, Clone)]
pub(crate) enum Step<'p> {
    /// Restore what one action replaced.
    Implicit {
        stage: usize,
        text: String,
        span: Span,
        record: Box<Record>,
    },
    /// A statement of a `rollback { … }` block.
    Block { stage: usize, stmt: &'p Statement },
}

#[cfg(test)]
impl Step<'_> {
    /// The stage it belongs to.
    fn stage(&self) -> usize {
        match self {
            Step::Implicit { stage, .. } | Step::Block { stage, .. } => *stage,
        }
    }
}

/// The rollback of one stage: its block, nothing, or the implicit rollbacks of its started
/// actions, newest first.
pub(crate) fn stage_steps<'p>(pb: &'p Playbook, started: &[Started], k: usize) -> Vec<Step<'p>> {
    match &pb.stages[k].rollback {
        Rollback::None(_) => Vec::new(),
        Rollback::Block(stmts, _) => stmts
            .iter()
            .map(|stmt| Step::Block { stage: k, stmt })
            .collect(),
        Rollback::Implicit => started
            .iter()
            .rev()
            .filter_map(|s| {
                let r = s.record.clone()?;
                r.reversible().then(|| Step::Implicit {
                    stage: k,
                    text: rollback_words(&s.text, &r, pb),
                    span: s.span,
                    record: Box::new(r),
                })
            })
            .collect(),
    }
}

/// The whole plan after stage `failed` failed: that stage, then every earlier stage newest
/// first. `started[k]` are the statements of stage `k` that started (in order).
pub(crate) fn rollback_plan<'p>(
    pb: &'p Playbook,
    started: &[Vec<Started>],
    failed: usize,
) -> Vec<Step<'p>> {
    let none = Vec::new();
    (0..=failed)
        .rev()
        .flat_map(|k| stage_steps(pb, started.get(k).unwrap_or(&none), k))
        .collect()
}

/// How a rollback step reads.
pub(crate) fn rollback_words(text: &str, r: &Record, pb: &Playbook) -> String {
    let name = |c: &usize| pb.components[*c].name.clone();
    match r {
        Record::Templates { comp, .. } => format!(
            "restore {} to what `{}` replaced",
            name(comp),
            first_words(text)
        ),
        Record::Canary { comp, promoted, .. } => {
            if promoted.is_some() {
                format!(
                    "remove the {} canary and restore what its promotion replaced",
                    name(comp)
                )
            } else {
                format!("remove the {} canary", name(comp))
            }
        }
        Record::Selector { comp, value, .. } => format!("switch {} back to {value}", name(comp)),
        Record::Replicas { comp, .. } => format!("scale {} back", name(comp)),
        Record::Restart { .. } | Record::Undo { .. } => String::new(),
    }
}

fn first_words(text: &str) -> String {
    text.split(" (").next().unwrap_or(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::Op;

    fn playbook(src: &str) -> Playbook {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.ktplay");
        std::fs::write(&p, src).unwrap();
        let checked = crate::check::check_paths(&[p]).unwrap();
        assert_eq!(checked.errors(), 0, "{:?}", checked.problems);
        checked.playbooks.into_iter().next().unwrap().1
    }

    const PB: &str = r#"
playbook "p" {
  component api { deployment "api" image "acme/api" from 1.4.0 to 1.5.0 }
  component gateway { deployment "gw" image "acme/gw" from 1.4.0 to 1.5.0 }
  component workers { deployment "w" image "acme/w" from 1.4.0 to 1.5.0 }
  stage api { rolling api  scale api 4 }
  stage gateways { rolling gateway  rollback { undo gateway } }
  stage workers { restart workers  rolling workers }
  stage none { rolling workers  rollback none }
}
"#;

    fn started(pb: &Playbook, k: usize, upto: usize) -> Vec<Started> {
        pb.stages[k].stmts[..upto]
            .iter()
            .enumerate()
            .map(|(j, st)| Started {
                stmt: j,
                span: st.span,
                text: format!("stmt {k}.{j}"),
                record: Some(match &st.op {
                    Op::Rolling { comp, .. } => Record::Templates {
                        comp: *comp,
                        deployments: vec![],
                    },
                    Op::Scale { comp, .. } => Record::Replicas {
                        comp: *comp,
                        replicas: vec![("api".into(), 3)],
                    },
                    Op::Restart { comp, .. } => Record::Restart {
                        comp: *comp,
                        at: "t".into(),
                    },
                    other => panic!("{other:?}"),
                }),
            })
            .collect()
    }

    fn words(plan: &[Step]) -> Vec<String> {
        plan.iter()
            .map(|s| match s {
                Step::Implicit { stage, text, .. } => format!("{stage}: {text}"),
                Step::Block { stage, stmt } => format!("{stage}: block {:?}", stmt.op)
                    .chars()
                    .take(20)
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn failed_stage_first_then_completed_stages_newest_first() {
        let pb = playbook(PB);
        // Stage `workers` failed in its second statement: both started.
        let st = vec![started(&pb, 0, 2), started(&pb, 1, 1), started(&pb, 2, 2)];
        let plan = rollback_plan(&pb, &st, 2);
        assert_eq!(
            words(&plan),
            [
                // workers: the rolling is undone; the restart has no implicit rollback
                "2: restore workers to what `stmt 2.1` replaced",
                // gateways: its rollback block, not the implicit step
                "1: block Undo { comp",
                // api: newest first
                "0: scale api back",
                "0: restore api to what `stmt 0.0` replaced",
            ]
        );
        assert_eq!(
            plan.iter().map(Step::stage).collect::<Vec<_>>(),
            [2, 1, 0, 0]
        );
    }

    #[test]
    fn failure_in_the_first_stage_rolls_back_only_what_started() {
        let pb = playbook(PB);
        let st = vec![started(&pb, 0, 1)];
        let plan = rollback_plan(&pb, &st, 0);
        assert_eq!(words(&plan), ["0: restore api to what `stmt 0.0` replaced"]);
        // Nothing started: nothing to do.
        assert!(rollback_plan(&pb, &[vec![]], 0).is_empty());
    }

    #[test]
    fn rollback_none_skips_only_its_own_stage() {
        let pb = playbook(PB);
        let st = vec![vec![], vec![], vec![], started(&pb, 3, 1)];
        // Stage `none` contributes nothing; the completed stages still roll back (here only
        // `gateways` has something to do: its block runs whatever was recorded).
        assert_eq!(words(&rollback_plan(&pb, &st, 3)), ["1: block Undo { comp"]);
    }
}
