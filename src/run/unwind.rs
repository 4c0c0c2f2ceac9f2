//! When a statement fails: the failure shown, then halt, or the rollback (a new one or one
//! resumed from the journal), or stop at once when the run lock is lost. The plan is
//! [`rollback_plan`] of the events so far; each step is journaled before and after it runs.

use tokio::time::Instant;

use crate::program::{OnFailure, Op};
use crate::span::Span;

use super::actions::{self, At};
use super::admit::Refusal;
use super::kube::lock::RunLock;
use super::live;
use super::log::events::{ResumedRollback, RollbackProgress, RunEvent};
use super::restore;
use super::rollback::{rollback_plan, Step};
use super::{Cancel, FailureKind, Outcome, RunError};

use super::driver::Driver;

impl Driver<'_> {
    /// A statement of stage `k` failed: refuse, halt or roll back.
    pub(super) async fn fail(&mut self, k: usize, e: RunError) -> Outcome {
        let cx = &self.cx;
        let pb = cx.pb.clone();
        let RunError { span, failure: f } = e;
        if let Some(m) = &self.monitors {
            m.stop_judging();
        }
        let message = cx.redact.redact(&f.message);
        let failed = RunEvent::Failed {
            stage: k,
            line: cx.line(span),
            message: message.clone(),
            help: f.help.clone(),
            span: Some(span),
        };
        // Whatever failed, a process that lost the lock owns nothing more: it rolls nothing
        // back (a journal write refused by the fence fails as its own statement would).
        let lost = cx
            .cluster
            .fence
            .as_ref()
            .is_some_and(|f| f.lost().is_some());
        if f.is(FailureKind::LockLost) || lost {
            // The journal is the new holder's now: shown, not journaled.
            cx.log.show(&failed);
            return self.lock_lost(span).await;
        }
        cx.log.note(failed).await;
        let progress = cx.log.progress();
        if !progress.changed() && f.is(FailureKind::Refused) {
            // Nothing was changed and the live check said no: a refusal.
            return self
                .end(
                    Outcome::Refused(Refusal::new(message.clone())),
                    format!("refused before any action: {message}"),
                    None,
                    Vec::new(),
                )
                .await;
        }
        if pb.on_failure == OnFailure::Halt {
            let state = live::live_state(cx).await.unwrap_or_default();
            let text = format!(
                "failed at line {} and halted (on_failure halt): nothing rolled back; state left: {}",
                cx.line(span),
                live::state_words(cx, &state)
            );
            cx.log
                .note(RunEvent::Halted {
                    message: text.clone(),
                })
                .await;
            return self
                .end(Outcome::Halted, text, Some(&state), Vec::new())
                .await;
        }
        cx.log
            .note(RunEvent::RollbackBegin {
                failed_stage: k,
                steps: rollback_plan(&pb, &progress.started(&pb), k).len(),
            })
            .await;
        self.roll_back(k, span, f.is(FailureKind::Interrupted), 0)
            .await
    }

    /// This process lost the run lock: it stops at once, changes nothing more and rolls nothing
    /// back (the lock's new holder owns the system), and says so.
    pub(super) async fn lock_lost(&self, span: Span) -> Outcome {
        let cx = &self.cx;
        let why = cx
            .cluster
            .fence
            .as_ref()
            .and_then(|f| f.lost())
            .unwrap_or_else(|| "lost".into());
        let text = format!(
            "stopped at line {}: this process lost the run lock ({why}); it changed nothing after that and rolls nothing back: the new holder owns the system (`ktplay status` shows its journal)",
            cx.line(span)
        );
        self.end(Outcome::LockLost, text, None, Vec::new()).await
    }

    /// Continue the rollback an earlier process of this run began (and did not finish).
    pub(super) async fn resume_rollback(
        &mut self,
        lock: &RunLock,
        rb: RollbackProgress,
    ) -> Outcome {
        let pb = self.cx.pb.clone();
        let Some(stage) = pb.stages.get(rb.failed_stage) else {
            return self
                .refused(Refusal::new(format!(
                    "the journal names stage {} as failed, which the playbook does not have",
                    rb.failed_stage
                )))
                .await;
        };
        let header = RunEvent::Resume {
            playbook: pb.name.clone(),
            env: self.cx.env_name().to_string(),
            at: self.at(lock),
            rollback: Some(ResumedRollback {
                failed_stage: stage.name.clone(),
                done: rb.done,
                steps: rb.steps,
            }),
        };
        if let Err(e) = self.cx.log.record(header).await {
            return self
                .refused(Refusal::new(format!("{e}; no action was taken")))
                .await;
        }
        if rb.done > 0 {
            self.cx
                .log
                .note(RunEvent::Note {
                    message: format!(
                        "rollback steps 1 to {} were done before the interruption; not repeated",
                        rb.done
                    ),
                })
                .await;
        }
        self.roll_back(rb.failed_stage, stage.span, false, rb.done)
            .await
    }

    /// Run the rollback plan after stage `k` failed, from step `skip` on (the steps before it
    /// are done), and say how it ended.
    pub(super) async fn roll_back(
        &mut self,
        k: usize,
        span: Span,
        interrupted: bool,
        skip: usize,
    ) -> Outcome {
        let cx = &self.cx;
        let pb = cx.pb.clone();
        let steps = rollback_plan(&pb, &cx.log.progress().started(&pb), k);
        // Rollbacks run to the end: only a second signal (which exits) stops them.
        let never = Cancel::new();
        let total = steps.len();
        for (n, step) in steps.iter().enumerate().skip(skip) {
            let t0 = Instant::now();
            let (stage, text, sspan) = match step {
                Step::Implicit {
                    stage, text, span, ..
                } => (*stage, text.clone(), *span),
                Step::Block { stage, stmt } => (*stage, cx.describe(&stmt.op), stmt.span),
            };
            cx.set_stage(stage);
            let line = cx.line(sspan);
            let comp = match step {
                Step::Implicit { record, .. } => Some(record.comp()),
                Step::Block { stmt, .. } => live::op_comp(stmt),
            };
            cx.log
                .note(RunEvent::RollbackStep {
                    step: n,
                    stage,
                    line,
                    statement: text.clone(),
                    component: comp.map(|c| cx.comp(c).name.clone()),
                })
                .await;
            let res = match step {
                Step::Implicit { record, .. } => restore::restore(cx, record, &never).await,
                Step::Block { stmt, .. } => {
                    let record = if stmt.op.is_action() && !matches!(stmt.op, Op::Undo { .. }) {
                        actions::prepare(cx, &stmt.op).await.ok().flatten()
                    } else {
                        None
                    };
                    actions::perform(cx, At::Rollback { stage }, stmt, record, &never)
                        .await
                        .map_err(|e| e.failure)
                }
            };
            let failure = match res {
                Ok(detail) => {
                    cx.log
                        .note(RunEvent::RollbackEnd {
                            step: n,
                            stage,
                            ok: true,
                            statement: text,
                            detail: Some(detail),
                            message: None,
                            line,
                            duration_ms: t0.elapsed().as_millis() as u64,
                            span: None,
                        })
                        .await;
                    continue;
                }
                Err(f) => f,
            };
            if failure.is(FailureKind::LockLost) {
                return self.lock_lost(sspan).await;
            }
            let message = cx.redact.redact(&failure.message);
            cx.log
                .note(RunEvent::RollbackEnd {
                    step: n,
                    stage,
                    ok: false,
                    statement: text,
                    detail: None,
                    message: Some(message),
                    line,
                    duration_ms: t0.elapsed().as_millis() as u64,
                    span: Some(sspan),
                })
                .await;
            let remaining: Vec<String> = steps[n + 1..]
                .iter()
                .map(|s| match s {
                    Step::Implicit { text, .. } => text.clone(),
                    Step::Block { stmt, .. } => cx.describe(&stmt.op),
                })
                .collect();
            let state = live::live_state(cx).await.unwrap_or_default();
            let summary = format!(
                "failed, and the rollback is incomplete: step {} of {total} (line {line}) failed; state left: {}; not run: {}",
                n + 1,
                live::state_words(cx, &state),
                if remaining.is_empty() { "nothing".into() } else { remaining.join("; ") }
            );
            return self
                .end(
                    Outcome::RollbackIncomplete,
                    summary,
                    Some(&state),
                    remaining,
                )
                .await;
        }
        let state = live::live_state(cx).await.unwrap_or_default();
        let now = live::state_words(cx, &state);
        let message = if total == 0 {
            format!(
                "failed at line {}{}; nothing to roll back: {now}",
                cx.line(span),
                if interrupted { " (interrupted)" } else { "" },
            )
        } else {
            format!(
                "failed at line {} ({}); rolled back: {now}",
                cx.line(span),
                if interrupted {
                    "interrupted"
                } else {
                    "see above"
                },
            )
        };
        self.end(Outcome::RolledBack, message, Some(&state), Vec::new())
            .await
    }
}
