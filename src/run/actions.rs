//! One function per action: each takes the run's context and its statement, and returns what
//! it did (a detail line) or a [`RunError`] at the line that failed. What an action will replace
//! is read first, by [`prepare`], and journaled before it acts; a promoted canary journals its
//! new record itself. Nothing here drives the loop or decides about rollback.

use std::time::Duration;
use tokio::time::Instant;

use crate::program::{Colour, Guard, GuardKind, Op, Statement, Workload};
use crate::resolve::{Mode, Scope};

use super::context::{Ctx, DEFAULT_TIMEOUT};
use super::guards::{self, GuardEnv};
use super::kube::{canary_name, live_colour};
use super::log::events::RunEvent;
use super::rollback::{First, Record};
use super::{Cancel, Failure, RunError};

/// Where a statement runs: a stage's own statement, or a step of a rollback block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    Forward { stage: usize, stmt: usize },
    Rollback { stage: usize },
}

impl At {
    pub(crate) fn stage(self) -> usize {
        match self {
            At::Forward { stage, .. } | At::Rollback { stage } => stage,
        }
    }
}

/// What an action will replace, read before it acts.
pub(crate) async fn prepare(cx: &Ctx<'_>, op: &Op) -> Result<Option<Record>, Failure> {
    Ok(match op {
        Op::Rolling { comp, .. } => Some(Record::Templates {
            comp: *comp,
            deployments: cx.snaps(*comp).await?,
        }),
        Op::Canary { comp, steps, .. } => {
            let c = cx.comp(*comp);
            // Nothing of anyone else's in the way, the router sends to the component: or a
            // refusal naming the object, before the canary changes anything.
            super::kube::traffic::admit(&cx.cluster, c, steps).await?;
            let (routed, pinned) = match &c.traffic {
                Some(t) => {
                    let (r, p) =
                        super::kube::traffic::plan(&cx.cluster, t, &c.deployments()).await?;
                    (Some(r), p)
                }
                None => (None, Vec::new()),
            };
            Some(Record::Canary {
                comp: *comp,
                canaries: c.deployments().iter().map(|d| canary_name(d)).collect(),
                promoted: None,
                pinned,
                routed,
            })
        }
        Op::BlueGreen { comp, .. } | Op::Switch { comp, .. } => {
            let c = cx.comp(*comp);
            let Workload::BlueGreen(bg) = &c.workload else {
                return Err(Failure::new(format!("{} is not blue-green", c.name)));
            };
            let col = live_colour(&cx.cluster, c).await?;
            let idle = match op {
                Op::BlueGreen { .. } => Some(cx.cluster.snap(bg.deployment(col.other())).await?),
                _ => None,
            };
            Some(Record::Selector {
                comp: *comp,
                service: bg.service.clone(),
                key: bg.selector.clone(),
                value: col.as_str().to_string(),
                idle,
            })
        }
        Op::Scale { comp, .. } => {
            let mut replicas = Vec::new();
            for d in cx.comp(*comp).deployments() {
                replicas.push((d.to_string(), cx.cluster.replicas(d).await?));
            }
            Some(Record::Replicas {
                comp: *comp,
                replicas,
            })
        }
        Op::Restart { comp, .. } => Some(Record::Restart {
            comp: *comp,
            at: now(),
        }),
        Op::Undo { comp, revision } => {
            let c = cx.comp(*comp);
            match &c.workload {
                // Outside rollback blocks, undo of a blue-green component switches back.
                Workload::BlueGreen(bg) => {
                    let col = live_colour(&cx.cluster, c).await?;
                    Some(Record::Selector {
                        comp: *comp,
                        service: bg.service.clone(),
                        key: bg.selector.clone(),
                        value: col.as_str().to_string(),
                        idle: None,
                    })
                }
                Workload::Deployments(_) => {
                    let mut targets = Vec::new();
                    for d in c.deployments() {
                        let (rev, t) = cx.cluster.undo_target(d, *revision).await?;
                        targets.push((d.to_string(), rev, t));
                    }
                    Some(Record::Undo {
                        comp: *comp,
                        targets,
                    })
                }
            }
        }
        _ => None,
    })
}

/// Journal what a component was before this run first changes it (for `undo C` in rollback
/// blocks); once per component and run.
pub(crate) async fn remember_first(cx: &Ctx<'_>, comp: usize) -> Result<(), Failure> {
    if cx.log.progress().first.contains_key(&comp) {
        return Ok(());
    }
    let c = cx.comp(comp);
    let selector = match &c.workload {
        Workload::BlueGreen(bg) => {
            let sel = cx.cluster.selector(&bg.service).await?;
            sel.get(&bg.selector)
                .map(|v| (bg.service.clone(), bg.selector.clone(), v.clone()))
        }
        Workload::Deployments(_) => None,
    };
    let first = First {
        deployments: cx.snaps(comp).await?,
        selector,
    };
    cx.log
        .record(RunEvent::First { comp, first })
        .await
        .map_err(|e| Failure::new(format!("{e}; the action was not started")))
}

/// Carry out one statement; `record` is what [`prepare`] read (journaled). Returns a detail
/// line for the output.
pub(crate) async fn perform(
    cx: &Ctx<'_>,
    at: At,
    st: &Statement,
    record: Option<Record>,
    cancel: &Cancel,
) -> Result<String, RunError> {
    let here = |f: Failure| f.at(st.span);
    match &st.op {
        Op::Rolling {
            comp,
            to,
            max_unavailable,
            max_surge,
            timeout,
        } => {
            let c = cx.comp(*comp);
            for d in c.deployments() {
                cx.cluster
                    .set_image(d, &c.container, &c.image, to, *max_unavailable, *max_surge)
                    .await
                    .map_err(|x| here(x.into()))?;
            }
            let ds = names(c.deployments());
            cx.wait_all(&ds, timeout.unwrap_or(DEFAULT_TIMEOUT), cancel)
                .await
                .map_err(here)?;
            Ok(format!("{} at {to}", ds.join(", ")))
        }
        Op::Canary {
            comp,
            to,
            weight,
            steps,
            duration,
            guards,
            timeout,
        } => {
            let c = cx.comp(*comp);
            let (pinned, routed, promoted) = match record {
                Some(Record::Canary {
                    pinned,
                    routed,
                    promoted,
                    ..
                }) => (pinned, routed, promoted),
                _ => match &c.traffic {
                    Some(t) => {
                        let (r, p) = super::kube::traffic::plan(&cx.cluster, t, &c.deployments())
                            .await
                            .map_err(here)?;
                        (p, Some(r), None)
                    }
                    None => (Vec::new(), None, None),
                },
            };
            let canary = super::canary::Canary {
                comp: *comp,
                pinned,
                routed,
                promoted,
                to,
                weight: *weight,
                steps,
                duration: duration.unwrap_or(Duration::ZERO),
                guards,
                timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            };
            canary.run(cx, at, st, cancel).await
        }
        Op::BlueGreen {
            comp,
            to,
            guards,
            timeout,
        } => {
            let c = cx.comp(*comp);
            let Workload::BlueGreen(bg) = &c.workload else {
                return Err(here(Failure::new(format!("{} is not blue-green", c.name))));
            };
            let live = live_colour(&cx.cluster, c)
                .await
                .map_err(|x| here(x.into()))?;
            cx.set_colour(*comp, live);
            let idle = live.other();
            let idle_deploy = bg.deployment(idle);
            cx.cluster
                .set_image(idle_deploy, &c.container, &c.image, to, None, None)
                .await
                .map_err(|x| here(x.into()))?;
            cx.wait_all(
                &[idle_deploy.to_string()],
                timeout.unwrap_or(DEFAULT_TIMEOUT),
                cancel,
            )
            .await
            .map_err(here)?;
            for g in guards {
                if let Op::Guard(gd) = &g.op {
                    for n in cut_notes(cx, gd) {
                        note(cx, n).await;
                    }
                }
            }
            nested_guards(cx, at, guards, true, true, cancel, None).await?;
            cx.cluster
                .set_selector(&bg.service, &bg.selector, idle.as_str())
                .await
                .map_err(|x| here(x.into()))?;
            cx.set_colour(*comp, idle);
            Ok(format!(
                "{idle_deploy} at {to}; Service {} now selects {}",
                bg.service,
                idle.as_str()
            ))
        }
        Op::Restart { comp, timeout } => {
            let c = cx.comp(*comp);
            let at = match &record {
                Some(Record::Restart { at, .. }) => at.clone(),
                _ => now(),
            };
            for d in c.deployments() {
                cx.cluster
                    .restart(d, &at)
                    .await
                    .map_err(|x| here(x.into()))?;
            }
            cx.wait_all(
                &names(c.deployments()),
                timeout.unwrap_or(DEFAULT_TIMEOUT),
                cancel,
            )
            .await
            .map_err(here)?;
            Ok(String::new())
        }
        Op::Undo { comp, .. } => {
            if let At::Rollback { .. } = at {
                return super::restore::undo_to_first(cx, *comp, cancel)
                    .await
                    .map_err(here);
            }
            let record = match record {
                Some(r) => Some(r),
                None => prepare(cx, &st.op).await.map_err(here)?,
            };
            undo(cx, *comp, record, cancel).await.map_err(here)
        }
        Op::Switch { comp, colour } => {
            let c = cx.comp(*comp);
            let Workload::BlueGreen(bg) = &c.workload else {
                return Err(here(Failure::new(format!("{} is not blue-green", c.name))));
            };
            cx.cluster
                .set_selector(&bg.service, &bg.selector, colour.as_str())
                .await
                .map_err(|x| here(x.into()))?;
            cx.set_colour(*comp, *colour);
            Ok(format!(
                "Service {} now selects {}",
                bg.service,
                colour.as_str()
            ))
        }
        Op::Scale {
            comp,
            replicas,
            timeout,
        } => {
            let c = cx.comp(*comp);
            for d in c.deployments() {
                cx.cluster
                    .scale(d, *replicas as i64)
                    .await
                    .map_err(|x| here(x.into()))?;
            }
            cx.wait_all(
                &names(c.deployments()),
                timeout.unwrap_or(DEFAULT_TIMEOUT),
                cancel,
            )
            .await
            .map_err(here)?;
            Ok(String::new())
        }
        Op::Pause(d) => {
            let (d, note) = cx.shorten("pause", *d);
            if !cancel.sleep(d).await {
                return Err(here(Failure::interrupted()));
            }
            Ok(note.unwrap_or_default())
        }
        Op::Approve(q) => {
            let live = cx.live();
            let question = Scope::new(&cx.pb, cx.env, &live)
                .render(q, Mode::Display)
                .unwrap_or_default();
            guards::approve(&question, cx.opts.approve, cancel)
                .await
                .map_err(here)
        }
        Op::Guard(g) => {
            // In a rehearsal the guard's waits are cut, and its line says which.
            let cut = cut_notes(cx, g).join("; ");
            let said = |d: String| match (d.is_empty(), cut.is_empty()) {
                (_, true) => d,
                (true, false) => cut.clone(),
                (false, false) => format!("{d} ({cut})"),
            };
            guard(cx, g, cancel).await.map(said).map_err(|mut f| {
                if !cut.is_empty() {
                    f.message = format!("{} ({cut})", f.message);
                }
                here(f)
            })
        }
    }
}

/// `undo C` outside rollback blocks: back to the recorded revision, or switch back.
async fn undo(
    cx: &Ctx<'_>,
    comp: usize,
    record: Option<Record>,
    cancel: &Cancel,
) -> Result<String, Failure> {
    match record {
        Some(Record::Undo { targets, .. }) => {
            for (_, _, t) in &targets {
                cx.cluster.restore_snap(t).await?;
            }
            let ds: Vec<String> = targets.iter().map(|t| t.0.clone()).collect();
            cx.wait_all(&ds, DEFAULT_TIMEOUT, cancel).await?;
            Ok(targets
                .iter()
                .map(|(d, r, _)| format!("{d} back to revision {r}"))
                .collect::<Vec<_>>()
                .join(", "))
        }
        Some(Record::Selector {
            service,
            key,
            value,
            ..
        }) => {
            let back = Colour::parse(&value)
                .map(Colour::other)
                .unwrap_or(Colour::Blue);
            cx.cluster
                .set_selector(&service, &key, back.as_str())
                .await?;
            cx.set_colour(comp, back);
            Ok(format!("Service {service} now selects {}", back.as_str()))
        }
        _ => Err(Failure::new(format!("cannot undo {}", cx.comp(comp).name))),
    }
}

/// One guard, for real.
pub(crate) async fn guard(cx: &Ctx<'_>, g: &Guard, cancel: &Cancel) -> Result<String, Failure> {
    guard_in(cx, g, cancel, None).await
}

/// One guard; `tally`: the canary's metric evaluations so far. In a rehearsal its waits are
/// cut to `--max-wait` ([`cut_guard`]).
async fn guard_in(
    cx: &Ctx<'_>,
    g: &Guard,
    cancel: &Cancel,
    tally: Option<&super::guards::tally::Tally>,
) -> Result<String, Failure> {
    let live = cx.live();
    let scope = Scope::new(&cx.pb, cx.env, &live);
    let env = GuardEnv {
        scope: &scope,
        playbook: cx.pb.clone(),
        cluster: &cx.cluster,
        http: &cx.http,
        rewrite: &cx.opts.rewrite,
        cancel,
        redact: &cx.redact,
        stage: cx.stage(),
        tally,
    };
    guards::run_guard(&cut_guard(cx, g).0, &env).await
}

/// A guard with its waits cut to `--max-wait` in a rehearsal (`within`, a metric guard's
/// `every` and `for`), and a note for each cut.
fn cut_guard<'g>(cx: &Ctx<'_>, g: &'g Guard) -> (std::borrow::Cow<'g, Guard>, Vec<String>) {
    use std::borrow::Cow;
    let mut notes = Vec::new();
    let mut cut = |what: &str, d: Option<Duration>| {
        d.map(|d| {
            let (d, n) = cx.shorten(what, d);
            notes.extend(n);
            d
        })
    };
    let within = cut("within", g.within);
    let metric = match &g.kind {
        GuardKind::Metric(m) => Some((cut("every", m.every), cut("for", m.duration))),
        _ => None,
    };
    if notes.is_empty() {
        return (Cow::Borrowed(g), notes);
    }
    let mut g = g.clone();
    g.within = within;
    if let (GuardKind::Metric(m), Some((every, duration))) = (&mut g.kind, metric) {
        m.every = every;
        m.duration = duration;
    }
    (Cow::Owned(g), notes)
}

/// What a rehearsal cuts of a guard's waits, for people.
pub(super) fn cut_notes(cx: &Ctx<'_>, g: &Guard) -> Vec<String> {
    cut_guard(cx, g).1
}

/// The guards inside `canary` / `blue_green`; `show`: an event for each (a failure always).
/// `round`: a round of every guard; otherwise only the canary's metric guards that are due.
/// Inside a canary (`tally`) a metric guard is evaluated only when [`Tally::due`].
///
/// [`Tally::due`]: super::guards::tally::Tally::due
pub(super) async fn nested_guards(
    cx: &Ctx<'_>,
    at: At,
    stmts: &[Statement],
    show: bool,
    round: bool,
    cancel: &Cancel,
    tally: Option<&super::guards::tally::Tally>,
) -> Result<(), RunError> {
    cx.set_stage(at.stage());
    for g in stmts {
        let due = match (&g.op, tally) {
            (
                Op::Guard(Guard {
                    kind: GuardKind::Metric(m),
                    ..
                }),
                Some(t),
            ) => t.due(&cut_metric(cx, m), Instant::now(), round),
            _ => round,
        };
        if !due {
            continue;
        }
        let t0 = Instant::now();
        let res = match &g.op {
            Op::Guard(gd) => guard_in(cx, gd, cancel, tally).await,
            other => Err(Failure::new(format!(
                "only guards may stand inside canary and blue_green blocks, found `{}`",
                cx.describe(other)
            ))),
        };
        // A metric guard's evaluations are shown and journaled every round.
        let metric = matches!(&g.op, Op::Guard(x) if matches!(x.kind, GuardKind::Metric(_)));
        if show || metric || res.is_err() {
            let (ok, detail, message) = match &res {
                Ok(d) => (true, (!d.is_empty()).then(|| d.clone()), None),
                Err(f) => (false, None, Some(cx.redact.redact(&f.message))),
            };
            cx.log
                .note(RunEvent::Guard {
                    stage: at.stage(),
                    line: cx.line(g.span),
                    statement: cx.describe(&g.op),
                    ok,
                    detail,
                    message,
                    duration_ms: t0.elapsed().as_millis() as u64,
                })
                .await;
        }
        res.map_err(|f| f.at(g.span))?;
    }
    Ok(())
}

/// A metric guard as a rehearsal runs it (its `every` and `for` cut).
fn cut_metric(cx: &Ctx<'_>, m: &crate::program::MetricCheck) -> crate::program::MetricCheck {
    let mut m = m.clone();
    m.every = m.every.map(|d| cx.shorten("every", d).0);
    m.duration = m.duration.map(|d| cx.shorten("for", d).0);
    m
}

/// A note under the statement being run.
pub(super) async fn note(cx: &Ctx<'_>, message: String) {
    cx.log
        .note(RunEvent::Note {
            message: format!("    {message}"),
        })
        .await;
}

pub(super) fn names(ds: Vec<&str>) -> Vec<String> {
    ds.into_iter().map(String::from).collect()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
