//! The metric analysis of one canary ([`Tally`]): per `guard metric`, the counts its
//! `failure_limit` is checked against over every round and step, whether any evaluation had
//! data, and when the next one is due. [`super::metric`] evaluates; this file only counts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::program::{MetricCheck, NoData};

/// `every` when only `for` is written.
pub(super) const DEFAULT_EVERY: Duration = Duration::from_secs(30);

/// The metric analysis of one canary, over all its rounds and steps: when it began, and per
/// guard the counts `failure_limit` is checked against (not one round's), whether any
/// evaluation had data, and when the next evaluation is due.
#[derive(Debug)]
pub struct Tally {
    /// When the canary's analysis began: its first step, traffic on the canary.
    pub(super) started: Instant,
    /// When the current step began (a guard's `for` counts from there).
    step: Mutex<Instant>,
    /// Under `rehearse`: `--max-wait` (a query's window is cut to it like every wait).
    pub(super) max_wait: Option<Duration>,
    guards: Mutex<HashMap<crate::span::Span, GuardTally>>,
}

#[derive(Debug, Default, Clone)]
pub(super) struct GuardTally {
    pub(super) failed: u32,
    /// Evaluations that passed or failed (pending ones are not counted).
    pub(super) total: u32,
    pub(super) pending: u32,
    /// Evaluations that had data (the value, and the baseline's when there is one).
    pub(super) with_data: u32,
    /// When the next evaluation is due (guards with `every`); `None`: the first, or every round.
    pub(super) next_due: Option<Instant>,
    /// No evaluation is due any more in this step (its `for` has passed since the step began).
    pub(super) done: bool,
    /// The query as shown (secrets redacted), for the canary's verdict.
    pub(super) shown: String,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::new(Instant::now(), None)
    }
}

impl Tally {
    /// The analysis of a canary whose guards start now (`started`).
    pub fn new(started: Instant, max_wait: Option<Duration>) -> Tally {
        Tally {
            started,
            step: Mutex::new(started),
            max_wait,
            guards: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn get(&self, m: &MetricCheck) -> GuardTally {
        self.guards
            .lock()
            .map(|t| t.get(&m.query.span).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    pub(super) fn set(&self, m: &MetricCheck, g: GuardTally) {
        if let Ok(mut t) = self.guards.lock() {
            t.insert(m.query.span, g);
        }
    }

    /// A step begins (its weight set): every guard is due at once, and `for` counts from now.
    pub fn begin_step(&self, now: Instant) {
        if let Ok(mut s) = self.step.lock() {
            *s = now;
        }
        if let Ok(mut t) = self.guards.lock() {
            for g in t.values_mut() {
                g.next_due = None;
                g.done = false;
            }
        }
    }

    pub(super) fn step_started(&self) -> Instant {
        self.step.lock().map(|s| *s).unwrap_or(self.started)
    }

    /// Is an evaluation of `m` due at `now`? `round`: a round of every guard (a guard without
    /// `every` is evaluated in those only).
    pub fn due(&self, m: &MetricCheck, now: Instant, round: bool) -> bool {
        let g = self.get(m);
        if g.done {
            return false;
        }
        match (cadence(m), g.next_due) {
            (None, _) => round,
            (Some(_), None) => true,
            (Some(_), Some(t)) => now >= t,
        }
    }

    /// The earliest time an evaluation of a guard with `every` is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.guards
            .lock()
            .ok()?
            .values()
            .filter(|g| !g.done)
            .filter_map(|g| g.next_due)
            .min()
    }

    /// The canary's verdict on its data, once its time is over: the first guard (of `guards`)
    /// that never had an evaluation with data, unless it says `no_data ignore`.
    pub fn missing_data<'g>(
        &self,
        guards: impl IntoIterator<Item = &'g MetricCheck>,
    ) -> Option<(&'g MetricCheck, String)> {
        let ran = crate::run::log::output::fmt_elapsed(self.started.elapsed());
        guards.into_iter().find_map(|m| {
            let g = self.get(m);
            if m.no_data == NoData::Ignore || g.with_data > 0 || g.total + g.pending == 0 {
                return None;
            }
            let n = g.total + g.pending;
            Some((
                m,
                format!(
                    "query \"{}\": none of its {n} evaluation{} in the canary's {ran} had data, so the canary was never seen serving (no traffic reached it: a broken route, a wrong label?); a canary must have data — write `no_data ignore` if it may have none",
                    g.shown,
                    if n == 1 { "" } else { "s" }
                ),
            ))
        })
    }
}
/// How often a guard in a canary is evaluated: `every`, 30 s with `for` alone, `None`: every
/// round of the canary's guards.
pub(super) fn cadence(m: &MetricCheck) -> Option<Duration> {
    m.every.or(m.duration.map(|_| DEFAULT_EVERY))
}
