//! The journal's vocabulary: one typed event per transition of a run, written before the effect
//! it announces. The journal file and the ConfigMap hold these (one JSON object a line, with the
//! time and the run id around them), `status` prints them and `--resume` folds them back into
//! [`Progress`] — by type, never by reading string keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::program::Playbook;
use crate::run::rollback::{First, Record, Started};
use crate::span::Span;

/// One transition of a run.
///
/// The journal holds these and `--format json` prints them (the same names, the same fields);
/// the human output is drawn from them ([`crate::run::log::output::Reporter::show`]). Fields added after
/// the first journals were written default, so older journals still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum RunEvent {
    /// A run began (before any action).
    RunStart {
        playbook: String,
        env: String,
        #[serde(flatten)]
        at: Where,
    },
    /// A run continues an interrupted one (`--resume`); `rollback`: it continues a rollback.
    Resume {
        playbook: String,
        env: String,
        #[serde(flatten)]
        at: Where,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rollback: Option<ResumedRollback>,
    },
    /// `--accept-drift`: the run starts from these live versions.
    DriftAccepted { message: String },
    /// Something a person should know that changes nothing (a shortened wait, steps already
    /// done).
    Note { message: String },
    /// A stage began.
    Stage {
        stage: usize,
        name: String,
        #[serde(default)]
        line: usize,
    },
    /// What a component was before this run first changed it.
    First { comp: usize, first: First },
    /// A statement is about to act; `record` is what its action will replace.
    Start {
        stage: usize,
        stmt: usize,
        line: usize,
        statement: String,
        record: Option<Record>,
    },
    /// A statement done before an interruption, not repeated by `--resume`.
    Skipped {
        stage: usize,
        stmt: usize,
        line: usize,
        statement: String,
    },
    /// A statement's record changed while it ran (a canary was promoted).
    Record {
        stage: usize,
        stmt: usize,
        record: Record,
    },
    /// A guard inside `canary` / `blue_green` was evaluated (its first round, and any failure).
    Guard {
        stage: usize,
        line: usize,
        statement: String,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default)]
        duration_ms: u64,
    },
    /// A statement ended.
    End {
        stage: usize,
        stmt: usize,
        ok: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default)]
        line: usize,
        #[serde(default)]
        statement: String,
        #[serde(default)]
        duration_ms: u64,
    },
    /// The run was refused before any action.
    Refused {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        help: Option<String>,
    },
    /// A hazard the preflight predicts (issue 22): before the lock and the journal, so shown
    /// (and printed by `--format json`) but not journaled.
    Hazard {
        code: String,
        severity: String,
        kind: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        field: String,
        message: String,
        #[serde(default)]
        help: String,
        #[serde(default)]
        stage: usize,
        #[serde(default)]
        line: usize,
        #[serde(default)]
        statement: String,
        /// `--allow-hazard`: shown, never refuses.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allowed: bool,
    },
    /// A statement of stage `stage` failed.
    Failed {
        stage: usize,
        line: usize,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        help: Option<String>,
        /// Where, for the rendered excerpt (not journaled: line says it).
        #[serde(skip)]
        span: Option<Span>,
    },
    /// `on_failure halt`: nothing is rolled back.
    Halted { message: String },
    /// The rollback plan after stage `failed_stage` failed: `steps` steps.
    RollbackBegin {
        #[serde(default)]
        failed_stage: usize,
        steps: usize,
    },
    /// Rollback step `step` (from 0) is about to act, on `component`.
    RollbackStep {
        #[serde(default)]
        step: usize,
        stage: usize,
        line: usize,
        statement: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        component: Option<String>,
    },
    /// Rollback step `step` ended.
    RollbackEnd {
        #[serde(default)]
        step: usize,
        stage: usize,
        ok: bool,
        statement: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default)]
        line: usize,
        #[serde(default)]
        duration_ms: u64,
        /// Where, for the rendered excerpt of a failed step (not journaled).
        #[serde(skip)]
        span: Option<Span>,
    },
    /// The run ended with this journal status; `message` says how, `state` what runs now.
    RunEnd {
        status: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<BTreeMap<String, Vec<String>>>,
        /// Rollback steps that did not run (an incomplete rollback).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_run: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    /// A second signal stopped the run at once.
    Aborted { message: String },
    /// The disruption monitor's numbers for one endpoint (after each statement, and `final`
    /// at the run's end).
    Monitor(crate::run::monitor::MonitorReport),
}

/// Where a run happens (its header).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Where {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub lock: String,
    /// A rehearsal on the embedded simulator, not a run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rehearsal: bool,
}

/// The rollback a `--resume` continues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ResumedRollback {
    pub failed_stage: String,
    pub done: usize,
    pub steps: usize,
}

impl RunEvent {
    /// The end of a run, as the journal and the summary say it.
    pub(crate) fn run_end(status: &str, message: String) -> RunEvent {
        RunEvent::RunEnd {
            status: status.into(),
            message,
            state: None,
            not_run: Vec::new(),
            exit_code: None,
        }
    }
}

/// A journal line: an event with when and by which run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub time: String,
    pub run: String,
    #[serde(flatten)]
    pub event: RunEvent,
}

impl Entry {
    /// One line of a journal; `None` for a line that is not an event (a newer ktplay's, or
    /// damage), which is skipped.
    pub(crate) fn parse(line: &str) -> Option<Entry> {
        serde_json::from_str(line).ok()
    }

    /// How `status` shows it: the event's name, `ok`/`failed` where it has one, and its words.
    pub(crate) fn words(&self) -> (String, Option<bool>, String) {
        let v = serde_json::to_value(&self.event).unwrap_or_default();
        let name = v["event"].as_str().unwrap_or("?").to_string();
        let text = ["statement", "message", "name", "status", "detail"]
            .iter()
            .find_map(|k| v[*k].as_str())
            .unwrap_or("")
            .to_string();
        (name, v["ok"].as_bool(), text)
    }
}

/// What a run's events say about its progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Progress {
    /// (stage, stmt) that ended ok.
    pub done: Vec<(usize, usize)>,
    /// (stage, stmt) → the latest record of what the action replaced (every statement that
    /// started, done or not).
    pub records: BTreeMap<(usize, usize), Record>,
    /// Started without an end.
    pub half_done: Option<(usize, usize)>,
    /// (stage, stmt) of every statement that started with a record, in the order they first
    /// started, with the statement's words.
    pub order: Vec<((usize, usize), String)>,
    /// Components' states before the run first changed them.
    pub first: BTreeMap<usize, First>,
    /// A rollback had begun: after which stage failed, and how many of its steps ended ok (the
    /// steps run in order and stop at the first failure, so these are the first ones).
    pub rollback: Option<RollbackProgress>,
}

impl Progress {
    /// Has this run (or the run it resumes) changed anything?
    pub(crate) fn changed(&self) -> bool {
        !self.records.is_empty() || !self.first.is_empty()
    }

    /// The statements of each stage that started, in order, with what they replaced: the input
    /// of [`crate::run::rollback::rollback_plan`].
    pub(crate) fn started(&self, pb: &Playbook) -> Vec<Vec<Started>> {
        let mut out: Vec<Vec<Started>> = pb.stages.iter().map(|_| Vec::new()).collect();
        for ((k, j), text) in &self.order {
            let Some(st) = pb.stages.get(*k).and_then(|s| s.stmts.get(*j)) else {
                continue;
            };
            out[*k].push(Started {
                stmt: *j,
                span: st.span,
                text: text.clone(),
                record: self.records.get(&(*k, *j)).cloned(),
            });
        }
        out
    }
}

/// How far an interrupted rollback got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RollbackProgress {
    pub failed_stage: usize,
    pub steps: usize,
    pub done: usize,
}

/// Fold a run's events into its progress.
pub(crate) fn progress(entries: &[Entry]) -> Progress {
    let mut p = Progress::default();
    for e in entries {
        match &e.event {
            RunEvent::Start {
                stage,
                stmt,
                record,
                statement,
                ..
            } => {
                p.half_done = Some((*stage, *stmt));
                if let Some(r) = record {
                    if p.records.insert((*stage, *stmt), r.clone()).is_none() {
                        p.order.push(((*stage, *stmt), statement.clone()));
                    }
                }
            }
            RunEvent::Record {
                stage,
                stmt,
                record,
            } => {
                p.records.insert((*stage, *stmt), record.clone());
            }
            RunEvent::End {
                stage, stmt, ok, ..
            } => {
                if *ok {
                    p.done.push((*stage, *stmt));
                }
                if p.half_done == Some((*stage, *stmt)) {
                    p.half_done = None;
                }
            }
            RunEvent::First { comp, first } => {
                p.first.entry(*comp).or_insert_with(|| first.clone());
            }
            // A statement failed: the rollback is due, even if the process died before it
            // began (its plan is a function of these events). `on_failure halt` says otherwise.
            RunEvent::Failed { stage, .. } => {
                p.rollback = Some(RollbackProgress {
                    failed_stage: *stage,
                    steps: 0,
                    done: 0,
                });
            }
            RunEvent::Halted { .. } => p.rollback = None,
            RunEvent::RollbackBegin {
                failed_stage,
                steps,
            } => {
                p.rollback = Some(RollbackProgress {
                    failed_stage: *failed_stage,
                    steps: *steps,
                    done: 0,
                });
            }
            RunEvent::RollbackEnd { step, ok: true, .. } => {
                if let Some(r) = p.rollback.as_mut() {
                    r.done = r.done.max(step + 1);
                }
            }
            _ => {}
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(event: RunEvent) -> Entry {
        Entry {
            time: "t".into(),
            run: "r".into(),
            event,
        }
    }

    fn rec(n: i64) -> Record {
        Record::Replicas {
            comp: 0,
            replicas: vec![("d".into(), n)],
        }
    }

    #[test]
    fn progress_folds_events() {
        let start = |s, t| {
            entry(RunEvent::Start {
                stage: s,
                stmt: t,
                line: 1,
                statement: "x".into(),
                record: Some(rec(t as i64)),
            })
        };
        let end = |s, t| {
            entry(RunEvent::End {
                stage: s,
                stmt: t,
                ok: true,
                detail: None,
                message: None,
                line: 1,
                statement: "x".into(),
                duration_ms: 0,
            })
        };
        let p = progress(&[start(0, 0), end(0, 0), start(1, 0)]);
        assert_eq!(p.done, vec![(0, 0)]);
        assert_eq!(p.half_done, Some((1, 0)));
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.rollback, None);
        let p = progress(&[
            start(0, 0),
            end(0, 0),
            start(1, 0),
            entry(RunEvent::RollbackBegin {
                failed_stage: 1,
                steps: 2,
            }),
            entry(RunEvent::RollbackStep {
                step: 0,
                stage: 1,
                line: 3,
                statement: "s".into(),
                component: None,
            }),
            entry(RunEvent::RollbackEnd {
                step: 0,
                stage: 1,
                ok: true,
                statement: "s".into(),
                detail: None,
                message: None,
                line: 3,
                duration_ms: 0,
                span: None,
            }),
        ]);
        assert_eq!(
            p.rollback,
            Some(RollbackProgress {
                failed_stage: 1,
                steps: 2,
                done: 1
            })
        );
    }

    #[test]
    fn journal_lines_round_trip_and_keep_their_shape() {
        let e = entry(RunEvent::Start {
            stage: 1,
            stmt: 0,
            line: 9,
            statement: "rolling api".into(),
            record: Some(rec(3)),
        });
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"time":"t","run":"r","event":"start","stage":1,"stmt":0,"line":9,"statement":"rolling api","record":{"kind":"replicas","comp":0,"replicas":[["d",3]]}}"#
        );
        assert_eq!(Entry::parse(&line), Some(e));
        assert_eq!(
            Entry::parse(r#"{"time":"t","run":"r","event":"from_the_future"}"#),
            None
        );
    }

    #[test]
    fn journals_written_before_the_events_grew_still_read() {
        // A `start`, `end` and `run_end` as ktplay 0.x wrote them (no line, duration, state).
        for line in [
            r#"{"time":"t","run":"r","event":"run_start","playbook":"p","env":"staging"}"#,
            r#"{"time":"t","run":"r","event":"end","stage":0,"stmt":0,"ok":true}"#,
            r#"{"time":"t","run":"r","event":"run_end","status":"succeeded"}"#,
            r#"{"time":"t","run":"r","event":"failed","stage":1,"line":9,"message":"m"}"#,
        ] {
            assert!(Entry::parse(line).is_some(), "{line}");
        }
        // Spans are for the excerpt on screen, never journaled.
        let failed = RunEvent::Failed {
            stage: 0,
            line: 3,
            message: "m".into(),
            help: None,
            span: Some(crate::span::Span::new(crate::span::FileId(0), 1, 2)),
        };
        let v = serde_json::to_value(&failed).unwrap();
        assert_eq!(v.get("span"), None, "{v}");
    }

    /// The rollback plan is a function of the events: a statement started twice (by a process
    /// and by the one resuming it) counts once, in the order it first started, with its latest
    /// record; statements without a record (guards) are not in it.
    #[test]
    fn the_rollback_plan_comes_from_the_events() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.ktplay");
        std::fs::write(
            &p,
            r#"
playbook "p" {
  component api { deployment "api" image "acme/api" from 1.4.0 to 1.5.0 }
  component gateway { deployment "gw" image "acme/gw" from 1.4.0 to 1.5.0 }
  stage api { rolling api  scale api 4 }
  stage gateways { guard ready api within 1m  canary gateway weight 10% for 1m { guard ready gateway within 1m } }
}
"#,
        )
        .unwrap();
        let checked = crate::check::check_paths(&[p]).unwrap();
        assert_eq!(checked.errors(), 0, "{:?}", checked.problems);
        let pb = &checked.playbooks[0].1;
        let start = |stage, stmt, record: Option<Record>| {
            entry(RunEvent::Start {
                stage,
                stmt,
                line: 1,
                statement: format!("s{stage}.{stmt}"),
                record,
            })
        };
        let canary = |promoted: Option<Vec<crate::run::kube::Snap>>| Record::Canary {
            comp: 1,
            canaries: vec!["gw-canary".into()],
            promoted,
            pinned: vec![],
            routed: None,
        };
        let events = [
            start(
                0,
                0,
                Some(Record::Templates {
                    comp: 0,
                    deployments: vec![],
                }),
            ),
            start(0, 1, Some(rec(3))),
            start(1, 0, None),
            start(1, 1, Some(canary(None))),
            // the process died; the resuming one starts the canary again
            start(1, 1, Some(canary(None))),
            entry(RunEvent::Record {
                stage: 1,
                stmt: 1,
                record: canary(Some(vec![])),
            }),
        ];
        let p = progress(&events);
        assert!(p.changed());
        let started = p.started(pb);
        assert_eq!(
            started[0].iter().map(|s| s.stmt).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(started[1].len(), 1, "{:?}", started[1]);
        assert_eq!(started[1][0].record, Some(canary(Some(vec![]))));
        let plan = crate::run::rollback::rollback_plan(pb, &started, 1);
        let words: Vec<String> = plan
            .iter()
            .map(|s| match s {
                crate::run::rollback::Step::Implicit { text, .. } => text.clone(),
                crate::run::rollback::Step::Block { .. } => "block".into(),
            })
            .collect();
        assert_eq!(
            words,
            [
                "remove the gateway canary and restore what its promotion replaced",
                "scale api back",
                "restore api to what `s0.0` replaced",
            ]
        );
        assert!(!progress(&[start(0, 0, None)]).changed());
    }
}
