//! A canary: new-version pods beside the stable ones, its guards for its time (rounds every
//! [`ROUND`], metric guards when due), then promotion and the canary removed.

use std::time::Duration;
use tokio::time::Instant;

use crate::program::{Guard, GuardKind, Op, Statement};

use super::actions::{cut_notes, names, nested_guards, note, At};
use super::context::Ctx;
use super::kube::canary_name;
use super::log::events::RunEvent;
use super::rollback::Record;
use super::{Cancel, Failure, RunError};

/// A canary runs a round of all its guards at most this often.
const ROUND: Duration = Duration::from_secs(5);

/// A canary: new-version pods beside the stable ones, guards for its time, then promotion (a
/// rolling update of the main deployments) and the canary removed.
pub(super) struct Canary<'s> {
    pub(super) comp: usize,
    /// The stable Services pinned to the stable ReplicaSet while it runs (journaled).
    pub(super) pinned: Vec<super::rollback::Pinned>,
    /// The router before the canary (journaled): what the weights go back to.
    pub(super) routed: Option<super::rollback::Routed>,
    /// Resumed after its promotion began (journaled): what the promotion replaced. The canary
    /// passed its guards then; the promotion goes on from where it was.
    pub(super) promoted: Option<Vec<super::kube::Snap>>,
    pub(super) to: &'s crate::version::Version,
    pub(super) weight: u32,
    /// Every step's weight (`[weight]` for the one-step form).
    pub(super) steps: &'s [u32],
    /// How long each step runs.
    pub(super) duration: Duration,
    pub(super) guards: &'s [Statement],
    pub(super) timeout: Duration,
}

impl Canary<'_> {
    pub(super) async fn run(
        &self,
        cx: &Ctx<'_>,
        at: At,
        st: &Statement,
        cancel: &Cancel,
    ) -> Result<String, RunError> {
        let here = |f: Failure| f.at(st.span);
        let c = cx.comp(self.comp);
        if self.promoted.is_some() {
            // An earlier process of this run began the promotion: the canary passed. Pinning,
            // routing and checking again would pin the stable Service to the half-promoted
            // ReplicaSet and split traffic anew; the promotion resumes forward instead.
            let canaries: Vec<String> = c.deployments().iter().map(|d| canary_name(d)).collect();
            note(
                cx,
                "the canary was being promoted when the run was interrupted: promotion resumed"
                    .into(),
            )
            .await;
            return self.promote(cx, st, cancel, canaries, None).await;
        }
        // The stable backend pinned to the stable pods before any canary pod exists.
        if !self.pinned.is_empty() {
            let said = super::kube::traffic::pin(&cx.cluster, &self.pinned)
                .await
                .map_err(here)?;
            note(cx, said).await;
        }
        let mut canaries = Vec::new();
        for d in c.deployments() {
            let replicas = cx.cluster.replicas(d).await.map_err(|x| here(x.into()))?;
            let n = ((replicas * self.weight as i64) as f64 / 100.0)
                .ceil()
                .max(1.0) as i64;
            let name = cx
                .cluster
                .create_canary(d, &c.container, &c.image, self.to, n)
                .await
                .map_err(|x| here(x.into()))?;
            canaries.push(name);
            if c.traffic.is_none() {
                note(cx, super::kube::traffic::pod_share(n, replicas)).await;
            }
        }
        cx.wait_all(&canaries, self.timeout, cancel)
            .await
            .map_err(here)?;
        if let (Some(t), Some(routed)) = (&c.traffic, &self.routed) {
            let said = super::kube::traffic::route(&cx.cluster, t, routed, self.weight)
                .await
                .map_err(here)?;
            note(cx, said).await;
        }
        let what = if self.steps.len() > 1 { "every" } else { "for" };
        let (d, shortened) = cx.shorten(what, self.duration);
        if let Some(n) = shortened {
            note(cx, n).await;
        }
        // The guards' own waits, cut the same way in a rehearsal (said once).
        for g in self.guards {
            if let Op::Guard(gd) = &g.op {
                for n in cut_notes(cx, gd) {
                    note(cx, n).await;
                }
            }
        }
        let mut rounds = 0;
        // The canary's metric analysis: `failure_limit` counts over every round of every
        // step, a metric guard's evaluations are scheduled inside the canary's time, and the
        // canary must have had data by its end.
        let tally = super::guards::tally::Tally::new(Instant::now(), cx.opts.shorten_waits);
        // Each step (one for `weight P%`) for its time, guards throughout.
        let n_steps = self.steps.len();
        // A failure in a multi-step canary says which step it was in.
        let in_step = |si: usize, w: u32, mut e: RunError| {
            if n_steps > 1 {
                e.failure.message =
                    format!("step {} of {n_steps} ({w}%): {}", si + 1, e.failure.message);
            }
            e
        };
        for (si, w) in self.steps.iter().enumerate() {
            if si > 0 {
                let said =
                    super::kube::traffic::step(&cx.cluster, c, &canaries, self.routed.as_ref(), *w)
                        .await
                        .map_err(|f| in_step(si, *w, here(f)))?;
                cx.wait_all(&canaries, self.timeout, cancel)
                    .await
                    .map_err(|f| in_step(si, *w, here(f)))?;
                note(cx, format!("step {}: {said}", si + 1)).await;
            }
            let end = Instant::now() + d;
            tally.begin_step(Instant::now());
            let first = rounds;
            // A round of every guard at most every 5 s (and at the step's end); between
            // rounds, the metric guards whose `every` is due.
            let mut round = true;
            let mut next_round = Instant::now();
            loop {
                if round {
                    rounds += 1;
                    next_round = Instant::now() + ROUND;
                }
                nested_guards(
                    cx,
                    at,
                    self.guards,
                    round && rounds == first + 1,
                    round,
                    cancel,
                    Some(&tally),
                )
                .await
                .map_err(|e| in_step(si, *w, e))?;
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let wake = [Some(end), Some(next_round), tally.next_due()]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(end)
                    .max(now);
                if !cancel.sleep(wake - now).await {
                    return Err(here(Failure::interrupted()));
                }
                let now = Instant::now();
                round = now >= next_round || now >= end;
            }
        }
        // The canary's time is over: it must have been seen serving.
        let metrics = self.guards.iter().filter_map(|g| match &g.op {
            Op::Guard(Guard {
                kind: GuardKind::Metric(m),
                ..
            }) => Some(m),
            _ => None,
        });
        if let Some((m, why)) = tally.missing_data(metrics) {
            let g = self.guards.iter().find(|g| {
                matches!(&g.op, Op::Guard(Guard { kind: GuardKind::Metric(x), .. }) if std::ptr::eq(x, m))
            });
            let span = g.map_or(st.span, |g| g.span);
            let why = cx.redact.redact(&why);
            cx.log
                .note(RunEvent::Guard {
                    stage: at.stage(),
                    line: cx.line(span),
                    statement: g.map(|g| cx.describe(&g.op)).unwrap_or_default(),
                    ok: false,
                    detail: None,
                    message: Some(why.clone()),
                    duration_ms: 0,
                })
                .await;
            return Err(Failure::new(why).at(span));
        }
        // Promote: what the promotion replaces is journaled first, as its own step: a
        // process resuming from here promotes (see above), it never runs the canary again.
        let snaps = cx.snaps(self.comp).await.map_err(here)?;
        if let At::Forward { stage, stmt } = at {
            cx.log
                .record(RunEvent::Record {
                    stage,
                    stmt,
                    record: Record::Canary {
                        comp: self.comp,
                        canaries: canaries.clone(),
                        promoted: Some(snaps),
                        pinned: self.pinned.clone(),
                        routed: self.routed.clone(),
                    },
                })
                .await
                .map_err(|e| here(Failure::new(format!("{e}; the canary was not promoted"))))?;
        }
        self.promote(cx, st, cancel, canaries, Some(rounds)).await
    }

    /// The promotion: the weight back to the stable backend and its selector unpinned (a
    /// pinned Service would not follow the rolling update to the new ReplicaSet); a rolling
    /// update of the main deployments; then the canary goes. Every step is idempotent, so a
    /// resumed promotion repeats what was done.
    async fn promote(
        &self,
        cx: &Ctx<'_>,
        st: &Statement,
        cancel: &Cancel,
        canaries: Vec<String>,
        rounds: Option<usize>,
    ) -> Result<String, RunError> {
        let here = |f: Failure| f.at(st.span);
        let c = cx.comp(self.comp);
        if let (Some(t), Some(routed)) = (&c.traffic, &self.routed) {
            super::kube::traffic::unroute(&cx.cluster, t, routed)
                .await
                .map_err(here)?;
        }
        super::kube::traffic::unpin(&cx.cluster, &self.pinned)
            .await
            .map_err(here)?;
        for dname in c.deployments() {
            cx.cluster
                .set_image(dname, &c.container, &c.image, self.to, None, None)
                .await
                .map_err(|x| here(x.into()))?;
        }
        cx.wait_all(&names(c.deployments()), self.timeout, cancel)
            .await
            .map_err(here)?;
        let mut left = Vec::new();
        for cn in &canaries {
            if let Err(e) = cx.cluster.delete_canary(cn).await {
                match e {
                    super::kube::ClusterError::NotOurs(m) => left.push(m),
                    other => return Err(here(other.into())),
                }
            }
        }
        let mut said = match rounds {
            Some(n) => format!(
                "canary {} checked {n} time{}, promoted, removed",
                canaries.join(", "),
                if n == 1 { "" } else { "s" }
            ),
            None => format!("canary {} promoted, removed", canaries.join(", ")),
        };
        for m in left {
            said.push_str(&format!("; {m}"));
        }
        Ok(said)
    }
}
