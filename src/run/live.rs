//! What the cluster runs now, and the checks before every action: the states the action will
//! create against the matrix (the same [`model::forward_states`] the checker uses), and the
//! deployments this run changed against how it left them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::matrix::{format_set, format_state, Matrix, State, StateFinding};
use crate::model;
use crate::program::{Colour, Op, Statement, Workload};

use super::context::Ctx;
use super::kube::{self as cluster, live_colour, Snap};
use super::rollback::Record;
use super::Failure;

/// The versions each component serves. A blue-green component serves from the colour its
/// Service selects: the idle colour takes no traffic (it may run anything, the previous version
/// after a success, the new one during a switch), so it is neither drift nor part of the state
/// the matrix judges — as the model has it after a switch back.
///
/// One read of the namespace (a LIST of deployments, a LIST of pods: [`cluster::View`]), made
/// now, for the check that calls it: never a cached or older one (issue 23).
pub(crate) async fn live_state(cx: &Ctx<'_>) -> Result<State, Failure> {
    let view = match cx.view() {
        Some(v) => v,
        None => read_view(cx).await?,
    };
    let mut s = State::new();
    for (i, c) in cx.pb.components.iter().enumerate() {
        if c.hosted_by.is_some() {
            // Another cluster of the fleet runs it: at `from` (the fleet driver checked there).
            s.insert(c.name.clone(), BTreeSet::from([c.from.clone()]));
            continue;
        }
        let versions = match (&c.workload, cx.colour(i)) {
            (Workload::BlueGreen(bg), Some(col)) => {
                let serving = match col {
                    Colour::Blue => bg.blue.as_str(),
                    Colour::Green => bg.green.as_str(),
                };
                view.versions_of(c, &[serving])?
            }
            _ => view.versions_of(c, &c.deployments())?,
        };
        s.insert(c.name.clone(), versions);
    }
    Ok(s)
}

/// The namespace's deployments and the pods of the playbook's: one read, now.
pub(crate) async fn read_view(cx: &Ctx<'_>) -> Result<Arc<cluster::View>, Failure> {
    let all: Vec<&str> = cx
        .pb
        .components
        .iter()
        .filter(|c| c.hosted_by.is_none())
        .flat_map(|c| c.deployments())
        .collect();
    Ok(Arc::new(cx.cluster.view(&all).await?))
}

/// Read which colour each blue-green component serves.
pub(crate) async fn read_colours(cx: &Ctx<'_>) -> Result<(), Failure> {
    for (i, c) in cx.pb.components.iter().enumerate() {
        if c.is_blue_green() {
            let col = live_colour(&cx.cluster, c).await?;
            cx.set_colour(i, col);
        }
    }
    Ok(())
}

/// Each deployment as this process last left it (after its last action on it): before every
/// action the run checks nobody else changed them meanwhile.
#[derive(Default)]
pub(crate) struct Left(BTreeMap<String, Snap>);

impl Left {
    /// What this process leaves a component's deployments as, after an action on it.
    pub(crate) async fn remember(&mut self, cx: &Ctx<'_>, comp: usize) {
        for d in cx.comp(comp).deployments() {
            if let Ok(snap) = cx.cluster.snap(d).await {
                self.0.insert(d.to_string(), snap);
            }
        }
    }

    /// Fail if a deployment this run changed was changed by someone else since (an image, the
    /// restart annotation, the strategy): two writers on one system must not go unnoticed.
    /// Judged on the view the action's checks read now (never a cached one: issue 23).
    pub(crate) async fn check(&self, cx: &Ctx<'_>) -> Result<(), Failure> {
        if self.0.is_empty() {
            return Ok(());
        }
        let view = match cx.view() {
            Some(v) => v,
            None => read_view(cx).await?,
        };
        for (name, was) in &self.0 {
            let now = view.snap(name)?;
            if now.images == was.images
                && now.restarted_at == was.restarted_at
                && now.strategy == was.strategy
            {
                continue;
            }
            let differs: Vec<String> = now
                .images
                .iter()
                .filter(|(c, img)| was.image(c) != Some(img.as_str()))
                .map(|(c, img)| {
                    format!(
                        "container `{c}` runs {img}, this run left {}",
                        was.image(c).unwrap_or("nothing")
                    )
                })
                .collect();
            return Err(Failure::new(format!(
                "deployment `{name}` was changed by someone else since this run changed it{}",
                if differs.is_empty() {
                    " (its restart annotation or strategy)".to_string()
                } else {
                    format!(": {}", differs.join("; "))
                }
            ))
            .help("another tool or person is changing the system during the run; the run stops and rolls back what it did"));
        }
        Ok(())
    }
}

/// Refuse a state the matrix forbids.
pub(crate) fn check_states(cx: &Ctx<'_>, states: &[State], what: &str) -> Result<(), Failure> {
    let Some(m) = cx.matrix else {
        return Ok(());
    };
    for s in states {
        let bad: Vec<String> = m
            .check_state(s, &cx.roles)
            .iter()
            .filter(|f| f.is_error())
            .map(|f| finding_text(f, m))
            .collect();
        if !bad.is_empty() {
            return Err(Failure::refused(format!(
                "refused before {what}: it would create the state {} which matrix `{}` forbids: {}",
                format_state(s),
                m.name,
                bad.join("; ")
            ))
            .help("the live versions differ from what the playbook expects; check `ktplay status` and the cluster"));
        }
    }
    Ok(())
}

/// The states an action will pass through from the live state (`record`: what a resumed
/// action recorded it restores).
pub(crate) async fn forward_states(
    cx: &Ctx<'_>,
    op: &Op,
    record: Option<&Record>,
) -> Result<Vec<State>, Failure> {
    if cx.matrix.is_none() {
        return Ok(Vec::new());
    }
    let live = live_state(cx).await?;
    if let (Op::Undo { comp, .. }, Some(Record::Undo { targets, .. })) = (op, record) {
        let c = cx.comp(*comp);
        let set = versions_of_snaps(targets.iter().map(|(_, _, t)| t), &c.container);
        return Ok(model::restore_states(&live, &c.name, &set));
    }
    if let Op::Undo { comp, revision } = op {
        let c = cx.comp(*comp);
        if !c.is_blue_green() {
            let mut set = BTreeSet::new();
            for d in c.deployments() {
                let (_, t) = cx.cluster.undo_target(d, *revision).await?;
                set.extend(versions_of_snaps([&t], &c.container));
            }
            return Ok(model::restore_states(&live, &c.name, &set));
        }
    }
    Ok(model::forward_states(
        &cx.program,
        &live,
        &crate::check::model::op(op),
    ))
}

fn finding_text(f: &StateFinding, m: &Matrix) -> String {
    match f {
        StateFinding::Incompatible {
            hub,
            hub_version,
            peer,
            peer_version,
            row,
            allowed,
        } => format!(
            "{peer} {peer_version} may not run beside {hub} {hub_version} ({} allows {})",
            m.describe_row(*row),
            Matrix::describe_allowed(peer, allowed)
        ),
        StateFinding::NoRow { hub, version } => {
            format!("matrix `{}` has no row for {hub} {version}", m.name)
        }
        StateFinding::Eol { hub, version, .. } => format!("{hub} {version} is end of life"),
    }
}

/// `api 1.5.0, console 2.1.0 (serving green), …`
pub(crate) fn state_words(cx: &Ctx<'_>, state: &State) -> String {
    let colours = cx.colours();
    cx.pb
        .components
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let vs = state
                .get(&c.name)
                .map(|s| format_set(s.iter()))
                .unwrap_or_default();
            match colours.get(&i) {
                Some(col) => format!("{} {vs} (serving {})", c.name, col.as_str()),
                None => format!("{} {vs}", c.name),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A state as the summary event carries it.
pub(crate) fn state_map(s: &State) -> BTreeMap<String, Vec<String>> {
    s.iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|x| x.to_string()).collect()))
        .collect()
}

/// The versions a set of recorded templates run.
pub(crate) fn versions_of_snaps<'t>(
    snaps: impl IntoIterator<Item = &'t Snap>,
    container: &str,
) -> BTreeSet<crate::version::Version> {
    snaps
        .into_iter()
        .filter_map(|s| {
            s.image(container)
                .and_then(cluster::image_tag)
                .and_then(|tag| crate::version::Version::parse(tag).ok())
        })
        .collect()
}

/// The component a statement acts on.
pub(crate) fn op_comp(st: &Statement) -> Option<usize> {
    crate::check::model::op(&st.op).comp()
}
