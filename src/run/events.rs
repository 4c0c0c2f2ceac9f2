//! The journal's vocabulary: one typed event per transition of a run, written before the effect
//! it announces. The journal file and the ConfigMap hold these (one JSON object a line, with the
//! time and the run id around them), `status` prints them and `--resume` folds them back into
//! [`Progress`] — by type, never by reading string keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rollback::{First, Record};

/// One transition of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// A run began (before any action).
    RunStart { playbook: String, env: String },
    /// A run continues an interrupted one (`--resume`).
    Resume { playbook: String, env: String },
    /// `--accept-drift`: the run starts from these live versions.
    DriftAccepted { message: String },
    /// A stage began.
    Stage { stage: usize, name: String },
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
    /// A statement's record changed while it ran (a canary was promoted).
    Record {
        stage: usize,
        stmt: usize,
        record: Record,
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
    },
    /// The run was refused before any action.
    Refused { message: String },
    /// A metric guard inside a `canary` or `blue_green` block held: its evaluations (time,
    /// value, threshold, resolved query), in each round of the block.
    Evaluated {
        stage: usize,
        line: usize,
        detail: String,
    },
    /// A statement of stage `stage` failed.
    Failed {
        stage: usize,
        line: usize,
        message: String,
    },
    /// `on_failure halt`: nothing is rolled back.
    Halted { message: String },
    /// The rollback plan after stage `failed_stage` failed: `steps` steps.
    RollbackBegin {
        #[serde(default)]
        failed_stage: usize,
        steps: usize,
    },
    /// Rollback step `step` (from 0) is about to act.
    RollbackStep {
        #[serde(default)]
        step: usize,
        stage: usize,
        line: usize,
        statement: String,
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
    },
    /// The run ended with this journal status.
    RunEnd { status: String },
    /// A second signal stopped the run at once.
    Aborted { message: String },
}

/// A journal line: an event with when and by which run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub time: String,
    pub run: String,
    #[serde(flatten)]
    pub event: RunEvent,
}

impl Entry {
    /// One line of a journal; `None` for a line that is not an event (a newer ktplay's, or
    /// damage), which is skipped.
    pub fn parse(line: &str) -> Option<Entry> {
        serde_json::from_str(line).ok()
    }

    /// How `status` shows it: the event's name, `ok`/`failed` where it has one, and its words.
    pub fn words(&self) -> (String, Option<bool>, String) {
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
pub struct Progress {
    /// (stage, stmt) that ended ok.
    pub done: Vec<(usize, usize)>,
    /// (stage, stmt) → the latest record of what the action replaced (every statement that
    /// started, done or not).
    pub records: BTreeMap<(usize, usize), Record>,
    /// Started without an end.
    pub half_done: Option<(usize, usize)>,
    /// Components' states before the run first changed them.
    pub first: BTreeMap<usize, First>,
    /// A rollback had begun: after which stage failed, and how many of its steps ended ok (the
    /// steps run in order and stop at the first failure, so these are the first ones).
    pub rollback: Option<RollbackProgress>,
}

/// How far an interrupted rollback got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollbackProgress {
    pub failed_stage: usize,
    pub steps: usize,
    pub done: usize,
}

/// Fold a run's events into its progress.
pub fn progress(entries: &[Entry]) -> Progress {
    let mut p = Progress::default();
    for e in entries {
        match &e.event {
            RunEvent::Start {
                stage,
                stmt,
                record,
                ..
            } => {
                p.half_done = Some((*stage, *stmt));
                if let Some(r) = record {
                    p.records.insert((*stage, *stmt), r.clone());
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
            }),
            entry(RunEvent::RollbackEnd {
                step: 0,
                stage: 1,
                ok: true,
                statement: "s".into(),
                detail: None,
                message: None,
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
}
