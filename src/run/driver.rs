//! The loop: stages in order, each statement checked live and then carried out, and on failure
//! the rollback the design prescribes (the language reference, "Failure and rollback"):
//!
//! 1. the failed stage: its `rollback { … }` block if any, nothing for `rollback none`,
//!    otherwise the implicit rollbacks of its actions that had started, newest first;
//! 2. every completed stage in reverse, by the same rule;
//! 3. `on_failure halt` rolls nothing back; a failing rollback step stops the rollback and the
//!    summary says what state is left and which steps did not run.
//!
//! The driver keeps no record of its own of what happened: every fact goes into the event log
//! first ([`Log`]), and the rollback plan is a pure function of the events so far
//! ([`super::log::events::Progress::started`], [`rollback_plan`]) — the same plan a process that
//! resumes the run computes from the journal. Nothing else in the runner imports this module.

use std::collections::BTreeSet;
use tokio::time::Instant;

use crate::matrix::format_set;
use crate::program::{Op, Statement};
use crate::resolve::Live;

use super::actions::{self, At};
use super::admit::{self, Refusal};
use super::context::{Ctx, Log, RunOptions, RunTarget};
use super::kube::lock::{LockError, RunLock};
use super::kube::Cluster;
use super::live::{self, Left};
use super::log::events::{RunEvent, Where};
use super::log::journal::{self, Journal};
use super::log::output::Reporter;
use super::rollback::Record;
use super::shown::shown;
use super::signals::{self, JournalSlot};
use super::{Failure, Outcome, Redactor, RunError};

/// Run a playbook against a cluster; returns how it ended (see [`Outcome::exit_code`]).
pub async fn execute(target: RunTarget<'_>, cluster: Cluster, opts: RunOptions) -> Outcome {
    // Signals are ours from the first moment: before the journal exists, a signal stops the
    // run before any action (and a second one at once, with nothing changed).
    let slot: JournalSlot = Default::default();
    let handler = (!opts.cancel.signals_elsewhere())
        .then(|| signals::spawn(opts.cancel.clone(), slot.clone()));
    let outcome = admit_and_run(target, cluster, opts, &slot).await;
    if let Some(h) = handler {
        h.abort();
    }
    outcome
}

async fn admit_and_run(
    target: RunTarget<'_>,
    cluster: Cluster,
    opts: RunOptions,
    slot: &JournalSlot,
) -> Outcome {
    let pb = &target.checked.playbooks[target.index].1;
    let redact = Redactor::new(opts.secrets.values().cloned());
    let mut log = Log::new(Reporter::new(
        opts.format,
        redact.clone(),
        target.checked.sources.clone(),
    ));
    let refuse = |log: &Log, r: Refusal| {
        let message = redact.redact(&r.message);
        log.show(&RunEvent::Refused {
            message: message.clone(),
            help: r.help.clone(),
        });
        Outcome::Refused(Refusal {
            message,
            help: r.help,
        })
    };

    // 1. What needs no cluster, the promotion gate, permissions and containers.
    let live = Live {
        secrets: opts.secrets.clone(),
        ..Live::default()
    };
    let mut admitted =
        admit::approvals(pb, opts.approve).and_then(|()| admit::secrets(pb, target.env, &live));
    if admitted.is_ok() {
        if let (Some(env), Some(after)) = (target.env, &opts.after) {
            let shipped = crate::migrate::digests_of(target.checked, target.index);
            admitted = admit::promotion_gate(pb, env, after, &shipped).await;
        }
    }
    if admitted.is_ok() {
        admitted = admit::preflight(&cluster, pb).await;
    }
    if let Err(r) = admitted {
        return refuse(&log, r);
    }

    // 2. The journal (for resume), then the lock. Nothing here writes: a refusal leaves the
    // journal as it was (an interrupted run stays resumable) and takes no lease.
    let stored = match journal::load(&cluster, &pb.digest).await {
        Ok(s) => s,
        Err(e) => return Outcome::Usage(e.to_string()),
    };
    if let Some(Err(why)) = stored.as_ref().map(|s| s.belongs_to(pb)) {
        return refuse(
            &log,
            Refusal::new(why.to_string()).help(
                "the journal is keyed by the first 16 hex digits of the playbook's digest: look at it with `kubectl get configmap -o yaml` before removing it",
            ),
        );
    }
    let unfinished = stored
        .as_ref()
        .is_some_and(|s| matches!(s.status(), Some("running") | Some("aborted")));
    let earlier = || {
        stored
            .as_ref()
            .and_then(|s| s.run())
            .map(shown)
            .unwrap_or_else(|| "?".into())
    };
    let (run_id, previous) = match (&stored, opts.resume) {
        (Some(s), true) if unfinished => match s.checked_events(pb) {
            Ok(events) => (s.run().unwrap_or("resumed").to_string(), events),
            Err(why) => {
                return refuse(
                    &log,
                    Refusal::new(format!("cannot resume: {why}")).help(
                        "the journal was changed by something other than ktplay, or is damaged: nothing was changed, and the journal is left as it is (see `ktplay status`)",
                    ),
                )
            }
        },
        (Some(s), true) => {
            return refuse(
                &log,
                Refusal::new(format!(
                    "nothing to resume: the last run of this playbook ({}) ended with status `{}`",
                    earlier(),
                    shown(s.status().unwrap_or("?"))
                )),
            )
        }
        (None, true) => {
            return refuse(
                &log,
                Refusal::new("nothing to resume: no journal of this playbook in the cluster"),
            )
        }
        (_, false) => (new_run_id(), Vec::new()),
    };
    if unfinished && !opts.resume {
        // Refused without touching the lock: the earlier run may still be going (another
        // container, another CI job: its pid means nothing here), and only its lease can say.
        let lease = match super::kube::lock::read(&cluster, &pb.name).await {
            Ok(l) => l,
            Err(m) => return Outcome::Usage(m.to_string()),
        };
        let message = match lease.filter(super::kube::lock::live) {
            Some(l) => {
                let holder = super::kube::lock::holder_of(&l);
                format!(
                    "an earlier run of this playbook ({}) did not finish, and its lock is held by {} (lock id {}, {})",
                    earlier(),
                    shown(holder),
                    super::kube::lock::lock_id(&cluster, &pb.name, holder),
                    super::kube::lock::lease_words(&l)
                )
            }
            None => format!(
                "an earlier run of this playbook ({}) was interrupted: its journal says `{}` and its lock is free",
                earlier(),
                shown(stored.as_ref().and_then(|s| s.status()).unwrap_or("?"))
            ),
        };
        return refuse(
            &log,
            Refusal::new(message).help(
                "if that run is still going, let it finish; if it is gone, continue it with --resume (which takes its lock over once the lease shows nobody renews it; see `ktplay status`)",
            ),
        );
    }
    // The hazards of what the run will do (issue 22): shown, and under `--hazards refuse` a
    // refusal, before the lock or the journal is touched.
    let done = super::log::events::progress(&previous)
        .done
        .iter()
        .copied()
        .collect();
    if let Err(r) = super::admit::hazards(&cluster, &target, &opts.hazards, &log, &done).await {
        return refuse(&log, r);
    }
    let objects = super::kube::lock::objects_of(pb);
    let lock = match RunLock::acquire(&cluster, &pb.name, &run_id, &objects, opts.resume).await {
        Ok(l) => l,
        Err(e @ LockError::Held { .. }) => {
            return refuse(
                &log,
                Refusal::new(e.to_string()).help(if opts.resume {
                    "that run is alive: let it finish, or stop it (Ctrl-C, or SIGTERM to its process), then --resume"
                } else {
                    "wait for it to finish; if its process is gone, `ktplay unlock --force LOCK_ID` removes the lock once its lease shows nobody renews it"
                }),
            )
        }
        Err(LockError::Api(m) | LockError::Kept(m)) => return Outcome::Usage(m),
    };
    let progress = super::log::events::progress(&previous);
    // An interrupted rollback (a second signal, a kill, a lost connection, a failed step) is
    // continued to its end: the plan is rebuilt from the journal's records.
    let resume_rollback = if opts.resume { progress.rollback } else { None };
    // From here on every write (actions, rollback steps, the journal) first proves that this
    // process still holds the lock.
    let cluster = cluster.fenced(lock.fence()).for_run(&run_id);
    let journal = match Journal::open(
        Some(cluster.clone()),
        &pb.name,
        &pb.digest,
        target.env.map(|e| e.name.as_str()).unwrap_or_default(),
        &run_id,
        opts.journal_file.as_ref(),
        redact.clone(),
        previous,
        stored
            .as_ref()
            .and_then(|s| s.data.get("last_success").cloned()),
    ) {
        Ok(j) => j,
        Err(e) => {
            lock.release().await;
            return Outcome::Usage(format!("cannot open the journal file: {e}"));
        }
    };
    journal.record_migrations(crate::migrate::digests_of(target.checked, target.index));
    if opts.cancel.interrupted() {
        lock.release().await;
        return refuse(
            &log,
            Refusal::new("interrupted before any action: nothing was changed"),
        );
    }
    if let Ok(mut s) = slot.lock() {
        *s = Some(journal.clone());
    }
    log.open(journal.clone());

    let opts_resume = opts.resume;
    let mut driver = Driver {
        cx: Ctx::new(&target, cluster, opts, log),
        left: Left::default(),
        done: progress.done.iter().copied().collect(),
        half_done: progress
            .half_done
            .map(|at| (at, progress.records.get(&at).cloned())),
        statements: 0,
        monitors: None,
    };
    let outcome = match resume_rollback {
        Some(rb) => driver.resume_rollback(&lock, rb).await,
        None => driver.run(&lock).await,
    };
    // A resumed run that is refused (drift, a live check) changed nothing: the interrupted run
    // it continues stays resumable, so its status stays `running`.
    let keep_resumable = opts_resume && matches!(outcome, Outcome::Refused(_));
    if outcome != Outcome::LockLost && !keep_resumable {
        if let Err(e) = journal.finish(outcome.word()).await {
            eprintln!("warning: {e}");
        }
    }
    lock.release().await;
    outcome
}

/// What [`super::kube::traffic::admit`] says of every canary of the playbook that has not run yet.
async fn admit_canaries(cx: &Ctx<'_>) -> Result<(), Failure> {
    let done = cx.log.progress().done;
    for (k, stage) in cx.pb.stages.iter().enumerate() {
        for (j, st) in stage.stmts.iter().enumerate() {
            if let Op::Canary { comp, steps, .. } = &st.op {
                if !done.contains(&(k, j)) {
                    super::kube::traffic::admit(&cx.cluster, cx.comp(*comp), steps).await?;
                }
            }
        }
    }
    Ok(())
}

fn new_run_id() -> String {
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08x}")
}

/// The loop's own state: the shared handles, and how this process left the deployments. What
/// ran and what it replaced is in the events.
pub(super) struct Driver<'a> {
    pub(super) cx: Ctx<'a>,
    pub(super) left: Left,
    /// Statements an earlier process of this run finished (skipped on resume).
    done: BTreeSet<(usize, usize)>,
    /// The statement an earlier process started and did not finish, with its record.
    half_done: Option<((usize, usize), Option<Record>)>,
    statements: usize,
    /// The disruption monitors of this run (issue 22), probing from before the first action.
    pub(super) monitors: Option<super::monitor::Monitors>,
}

impl Driver<'_> {
    pub(super) fn at(&self, lock: &RunLock) -> Where {
        Where {
            namespace: self.cx.cluster.ns.clone(),
            digest: self.cx.pb.digest.clone(),
            lock: lock.id().to_string(),
            rehearsal: self.cx.opts.rehearsal,
        }
    }

    async fn run(&mut self, lock: &RunLock) -> Outcome {
        let cx = &self.cx;
        let pb = cx.pb.clone();
        let env = cx.env_name().to_string();
        let resumed = !self.done.is_empty() || self.half_done.is_some();
        let (playbook, at) = (pb.name.clone(), self.at(lock));
        let header = if resumed {
            RunEvent::Resume {
                playbook,
                env,
                at,
                rollback: None,
            }
        } else {
            RunEvent::RunStart { playbook, env, at }
        };
        if let Err(e) = cx.log.record(header).await {
            return self
                .refused(Refusal::new(format!("{e}; no action was taken")).help(
                    "ktplay keeps its journal in a ConfigMap of the namespace: give the run's user get, create and patch on configmaps there",
                ))
                .await;
        }
        if let Err(f) = live::read_colours(cx).await {
            return self.refused(Refusal::new(f.message)).await;
        }
        let state = match live::live_state(cx).await {
            Ok(l) => l,
            Err(f) => return self.refused(Refusal::new(f.message)).await,
        };
        // Drift: live versions against `from`, for every component this run has not changed
        // yet. A resumed run skips only the components its earlier processes changed (a hand
        // edit while the runner was dead is drift like any other).
        let touched: BTreeSet<usize> = if resumed {
            let p = cx.log.progress();
            p.first
                .keys()
                .copied()
                .chain(p.records.values().map(|r| r.comp()))
                .collect()
        } else {
            BTreeSet::new()
        };
        let drift: Vec<String> = pb
            .components
            .iter()
            .enumerate()
            .filter(|(i, _)| !touched.contains(i))
            .map(|(_, c)| c)
            .filter(|c| state.get(&c.name) != Some(&BTreeSet::from([c.from.clone()])))
            .map(|c| {
                format!(
                    "{} runs {} but the playbook says from {}{}",
                    c.name,
                    state
                        .get(&c.name)
                        .map(|s| format_set(s.iter()))
                        .unwrap_or_else(|| "nothing".into()),
                    c.from,
                    if resumed {
                        " (and the interrupted run had not changed it)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        if !drift.is_empty() {
            if !cx.opts.accept_drift {
                let help = if resumed {
                    "put it back as the playbook says, or pass --accept-drift with --resume to continue from the live versions (re-checked against the matrix); the interrupted run stays resumable"
                } else {
                    "update `from` in the playbook, or pass --accept-drift to start from the live versions (re-checked against the matrix)"
                };
                return self
                    .refused(Refusal::new(format!("drift: {}", drift.join("; "))).help(help))
                    .await;
            }
            cx.log
                .note(RunEvent::DriftAccepted {
                    message: drift.join("; "),
                })
                .await;
        }
        if let Err(f) = live::check_states(cx, std::slice::from_ref(&state), "the run") {
            return self
                .refused(Refusal {
                    message: f.message,
                    help: f.help,
                })
                .await;
        }
        // Ownership: every canary's objects free or this run's, every router in front of its
        // component, before any action (each canary checks again before it acts).
        if let Err(f) = admit_canaries(cx).await {
            return self
                .refused(Refusal {
                    message: f.message,
                    help: f.help,
                })
                .await;
        }

        match super::monitor::hooks::start(&self.cx, resumed).await {
            Ok(m) => self.monitors = m,
            Err(e) => return self.refused(Refusal::new(e)).await,
        }
        for (k, stage) in pb.stages.iter().enumerate() {
            self.cx.set_stage(k);
            self.cx
                .log
                .note(RunEvent::Stage {
                    stage: k,
                    name: stage.name.clone(),
                    line: self.cx.line(stage.span),
                })
                .await;
            for (j, st) in stage.stmts.iter().enumerate() {
                if let Err(e) = self.statement(k, j, st).await {
                    return self.fail(k, e).await;
                }
                super::monitor::hooks::progress(&self.cx, &self.monitors).await;
            }
        }
        // A budget judged with every number in (a share of failures below 100 requests).
        if let Some(why) = self.monitors.as_ref().and_then(|m| m.judge_now()) {
            let k = pb.stages.len().saturating_sub(1);
            let span = pb.stages.last().map_or(pb.span, |s| s.span);
            return self
                .fail(
                    k,
                    RunError {
                        span,
                        failure: Failure::new(why),
                    },
                )
                .await;
        }
        let cx = &self.cx;
        let state = live::live_state(cx).await.unwrap_or_default();
        let message = format!(
            "succeeded: {} stages, {} statements; now {}",
            pb.stages.len(),
            self.statements,
            live::state_words(cx, &state)
        );
        self.end(Outcome::Succeeded, message, Some(&state), Vec::new())
            .await
    }

    /// The summary event, and the outcome it announces.
    pub(super) async fn end(
        &self,
        outcome: Outcome,
        message: String,
        state: Option<&crate::matrix::State>,
        not_run: Vec<String>,
    ) -> Outcome {
        super::monitor::hooks::finish(&self.cx, &self.monitors).await;
        self.cx
            .log
            .note(RunEvent::RunEnd {
                status: outcome.word().into(),
                message,
                state: state.map(live::state_map),
                not_run,
                exit_code: Some(outcome.exit().code()),
            })
            .await;
        outcome
    }

    pub(super) async fn refused(&mut self, r: Refusal) -> Outcome {
        let message = self.cx.redact.redact(&r.message);
        self.cx
            .log
            .note(RunEvent::Refused {
                message: message.clone(),
                help: r.help.clone(),
            })
            .await;
        Outcome::Refused(Refusal {
            message,
            help: r.help,
        })
    }

    /// One top-level statement of stage `k`.
    async fn statement(&mut self, k: usize, j: usize, st: &Statement) -> Result<(), RunError> {
        let cx = &self.cx;
        cx.set_stage(k);
        let line = cx.line(st.span);
        let text = cx.describe(&st.op);
        self.statements += 1;
        if self.done.contains(&(k, j)) {
            cx.log
                .note(RunEvent::Skipped {
                    stage: k,
                    stmt: j,
                    line,
                    statement: text,
                })
                .await;
            return Ok(());
        }
        let t0 = Instant::now();
        if let Some(why) = self.monitors.as_ref().and_then(|m| m.exceeded()) {
            let f = Failure::new(why);
            return Err(self.ended(k, j, st, &text, t0, Err(f)).await.unwrap_err());
        }
        let record = match self.before(k, j, st).await {
            Ok(r) => r,
            Err(f) => return Err(self.ended(k, j, st, &text, t0, Err(f)).await.unwrap_err()),
        };
        let cx = &self.cx;
        if let Err(e) = cx
            .log
            .record(RunEvent::Start {
                stage: k,
                stmt: j,
                line,
                statement: text.clone(),
                record: record.clone(),
            })
            .await
        {
            // The journal must know of an action before it happens, or neither --resume nor a
            // rollback by another process could find it: this one does not happen.
            let f = Failure::new(format!("{e}; the action was not started"));
            return Err(self.ended(k, j, st, &text, t0, Err(f)).await.unwrap_err());
        }
        // A budget exceeded while the statement runs fails it like a failed guard.
        let (cancel, link) = match &self.monitors {
            Some(m) => {
                let (c, t) = m.linked(&cx.opts.cancel);
                (c, Some(t))
            }
            None => (cx.opts.cancel.clone(), None),
        };
        let at = At::Forward { stage: k, stmt: j };
        let performed = actions::perform(cx, at, st, record, &cancel).await;
        if let Some(t) = link {
            t.abort();
        }
        let performed = match (performed, self.monitors.as_ref().and_then(|m| m.exceeded())) {
            (Err(e), Some(why)) if !cx.opts.cancel.interrupted() => Err(RunError {
                span: e.span,
                failure: Failure::new(why),
            }),
            (r, _) => r,
        };
        match performed {
            Ok(detail) => {
                if let Some(c) = live::op_comp(st) {
                    self.left.remember(&self.cx, c).await;
                }
                self.ended(k, j, st, &text, t0, Ok(detail)).await.map(drop)
            }
            Err(e) => {
                // The failure's own span: a guard inside a canary points at the guard.
                let _ = self
                    .ended(k, j, st, &text, t0, Err(e.failure.clone()))
                    .await;
                Err(e)
            }
        }
    }

    /// Before an action: nobody changed what this run left; the states it creates are allowed;
    /// what it replaces is read (or, resumed, taken from the journal); the component's first
    /// state is journaled.
    async fn before(&self, k: usize, j: usize, st: &Statement) -> Result<Option<Record>, Failure> {
        if !st.op.is_action() {
            return Ok(None);
        }
        // One read of the namespace for every check below (issue 23), made now and dropped
        // when they are done.
        let cx = &self.cx;
        cx.set_view(Some(live::read_view(cx).await?));
        let r = self.checks(k, j, st).await;
        cx.set_view(None);
        r
    }

    async fn checks(&self, k: usize, j: usize, st: &Statement) -> Result<Option<Record>, Failure> {
        let cx = &self.cx;
        let resumed = match &self.half_done {
            Some((at, r)) if *at == (k, j) => Some(r.clone()),
            _ => None,
        };
        self.left.check(cx).await?;
        let states =
            live::forward_states(cx, &st.op, resumed.as_ref().and_then(|r| r.as_ref())).await?;
        live::check_states(cx, &states, "this action")?;
        let record = match resumed {
            Some(Some(r)) => Some(r),
            _ => actions::prepare(cx, &st.op).await?,
        };
        if let Some(c) = live::op_comp(st) {
            if !matches!(st.op, Op::Restart { .. } | Op::Scale { .. }) {
                actions::remember_first(cx, c).await?;
            }
        }
        Ok(record)
    }

    /// A statement ended: its event; a failure comes back at the statement's line.
    async fn ended(
        &self,
        k: usize,
        j: usize,
        st: &Statement,
        text: &str,
        t0: Instant,
        res: Result<String, Failure>,
    ) -> Result<String, RunError> {
        let (ok, detail, message) = match &res {
            Ok(d) => (true, Some(d.clone()), None),
            Err(f) => (false, None, Some(f.message.clone())),
        };
        self.cx
            .log
            .note(RunEvent::End {
                stage: k,
                stmt: j,
                ok,
                detail,
                message,
                line: self.cx.line(st.span),
                statement: text.to_string(),
                duration_ms: t0.elapsed().as_millis() as u64,
            })
            .await;
        res.map_err(|f| f.at(st.span))
    }
}
