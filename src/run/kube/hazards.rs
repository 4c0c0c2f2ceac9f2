//! The preflight that predicts drops (issue 22, part 3): read the live objects each action of a
//! playbook touches — its Deployments, the namespace's Services and PodDisruptionBudgets, the
//! Service of a blue-green component — and judge them with [`super::hazard_rules`].
//!
//! Used by `run` (and `rehearse`) before the lock or the journal is touched, and by `plan
//! --cluster`, which only reads. Every request is a read (get or list).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde_json::Value;

use crate::program::{Colour, Op, Playbook, Workload};
use crate::span::Span;

use super::hazard_rules::{self, Action, Assumptions, Code, Hazard, Severity, Subject};
use super::{retry, status_code, words, Cluster, ClusterError};

/// The statement timeout a statement without `timeout` gets (the runner's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What a hazard does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Printed; the run goes on.
    #[default]
    Warn,
    /// Any hazard not allowed refuses the run (exit 3) before any action.
    Refuse,
}

/// `--hazards`, `--allow-hazard`, `--endpoint-lag`, `--app-drain` (and their environment
/// variables `KTPLAY_HAZARDS`, `KTPLAY_ALLOW_HAZARDS`, `KTPLAY_ENDPOINT_LAG`,
/// `KTPLAY_APP_DRAIN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    /// Codes that never refuse (still printed, marked allowed).
    pub allow: BTreeSet<Code>,
    pub assume: Assumptions,
}

/// A hazard setting (a flag's value or its environment variable) that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("`{0}` is neither `warn` nor `refuse`")]
    Mode(String),
    #[error("`{0}` is not a hazard code; they are: {codes}", codes = Code::ALL.map(|c| c.name()).join(", "))]
    Code(String),
    #[error("`{0}` is not a duration (like 5s, 1500ms, 1m)")]
    Duration(String),
    /// The setting came from this environment variable.
    #[error("{var}: {error}")]
    Env {
        var: &'static str,
        error: Box<SettingError>,
    },
}

impl Settings {
    /// Settings from the environment, for what the command line does not say.
    pub fn from_env() -> Result<Settings, SettingError> {
        let from = |var: &'static str| {
            move |e: SettingError| SettingError::Env {
                var,
                error: Box::new(e),
            }
        };
        let mut s = Settings::default();
        if let Ok(m) = std::env::var("KTPLAY_HAZARDS") {
            s.mode = parse_mode(&m).map_err(from("KTPLAY_HAZARDS"))?;
        }
        if let Ok(list) = std::env::var("KTPLAY_ALLOW_HAZARDS") {
            for c in list.split([',', ' ']).filter(|c| !c.is_empty()) {
                s.allow
                    .insert(parse_code(c).map_err(from("KTPLAY_ALLOW_HAZARDS"))?);
            }
        }
        if let Ok(d) = std::env::var("KTPLAY_ENDPOINT_LAG") {
            s.assume.endpoint_lag = parse_duration(&d).map_err(from("KTPLAY_ENDPOINT_LAG"))?;
        }
        if let Ok(d) = std::env::var("KTPLAY_APP_DRAIN") {
            s.assume.app_drain = parse_duration(&d).map_err(from("KTPLAY_APP_DRAIN"))?;
        }
        Ok(s)
    }
}

/// `warn` or `refuse`.
pub(crate) fn parse_mode(s: &str) -> Result<Mode, SettingError> {
    match s.trim() {
        "warn" => Ok(Mode::Warn),
        "refuse" => Ok(Mode::Refuse),
        other => Err(SettingError::Mode(other.to_string())),
    }
}

/// A hazard code, in any of its forms.
pub(crate) fn parse_code(s: &str) -> Result<Code, SettingError> {
    Code::parse(s).ok_or_else(|| SettingError::Code(s.trim().to_string()))
}

/// A duration like the playbook's (`5s`, `1500ms`, `1m30s`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, SettingError> {
    crate::syntax::parse_duration(s.trim())
        .map_err(|_| SettingError::Duration(s.trim().to_string()))
}

/// Can the cluster be read at all (`plan --cluster`)? One GET of the playbook's first
/// Deployment: `Err` when the cluster cannot be reached or answers with an error other than a
/// denial; a denied read is a hazard of its own (`unreadable`), which [`assess`] reports.
pub(crate) async fn readable(cluster: &Cluster, pb: &Playbook) -> Result<(), ClusterError> {
    let Some(d) = pb.components.iter().flat_map(|c| c.deployments()).next() else {
        return Ok(());
    };
    let api: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(cluster.client.clone(), &cluster.ns);
    match retry(|| async { api.get_opt(d).await }).await {
        Err(e) if status_code(&e) != Some(403) => Err(ClusterError::kube(e)),
        _ => Ok(()),
    }
}

/// A hazard at a statement of the playbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Found {
    pub stage: usize,
    /// The statement's index in its stage.
    pub statement: usize,
    #[serde(skip)]
    pub span: Span,
    #[serde(flatten)]
    pub hazard: Hazard,
    /// `--allow-hazard`: printed, never refuses.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allowed: bool,
}

/// Read what every action of the playbook touches (except the statements in `done`, which a
/// resumed run does not repeat) and judge it. Each hazard is reported once, at the first
/// statement that meets it; an object that cannot be read is a hazard of its own
/// ([`Code::Unreadable`]), never a silent skip.
pub(crate) async fn assess(
    cluster: &Cluster,
    pb: &Playbook,
    settings: &Settings,
    done: &BTreeSet<(usize, usize)>,
) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    let first_action = pb.stages.iter().enumerate().find_map(|(k, s)| {
        s.stmts
            .iter()
            .enumerate()
            .find(|(_, st)| st.op.is_action())
            .map(|(j, st)| (k, j, st.span))
    });
    let Some((k0, j0, span0)) = first_action else {
        return found;
    };
    let unreadable = |what: &str, kind: &str, e: String| {
        Found {
        stage: k0,
        statement: j0,
        span: span0,
        allowed: settings.allow.contains(&Code::Unreadable),
        hazard: Hazard {
            code: Code::Unreadable,
            severity: Severity::Warning,
            kind: kind.into(),
            name: String::new(),
            field: String::new(),
            message: format!("cannot read {what} in namespace `{}`: {e}; the hazard rules that need them were not checked", cluster.ns),
            help: format!("give the run's user `list` on {what} (`kubectl auth can-i list {what} -n {}`)", cluster.ns),
        },
    }
    };
    let services: Vec<Value> = match list::<Service>(cluster).await {
        Ok(s) => s,
        Err(e) => {
            found.push(unreadable("services", "Service", e));
            Vec::new()
        }
    };
    let pdbs: Option<Vec<Value>> = match list::<PodDisruptionBudget>(cluster).await {
        Ok(p) => Some(p),
        Err(e) => {
            found.push(unreadable(
                "poddisruptionbudgets.policy",
                "PodDisruptionBudget",
                e,
            ));
            None
        }
    };
    let mut deployments: BTreeMap<String, Option<Value>> = BTreeMap::new();
    let mut colours: BTreeMap<usize, Colour> = BTreeMap::new();
    let mut seen: BTreeSet<(Code, String, String, String)> = BTreeSet::new();
    for (k, stage) in pb.stages.iter().enumerate() {
        for (j, st) in stage.stmts.iter().enumerate() {
            let Some(comp) = st.op.component() else {
                continue;
            };
            let c = &pb.components[comp];
            let (action, deploys): (Option<Action>, Vec<String>) = match &st.op {
                Op::Rolling {
                    max_unavailable,
                    max_surge,
                    timeout,
                    ..
                } => (
                    Some(Action::Rolling {
                        max_unavailable: *max_unavailable,
                        max_surge: *max_surge,
                        timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
                    }),
                    own(c),
                ),
                Op::Restart { timeout, .. } => (
                    Some(Action::Rolling {
                        max_unavailable: None,
                        max_surge: None,
                        timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
                    }),
                    own(c),
                ),
                Op::Undo { .. } if !c.is_blue_green() => (
                    Some(Action::Rolling {
                        max_unavailable: None,
                        max_surge: None,
                        timeout: DEFAULT_TIMEOUT,
                    }),
                    own(c),
                ),
                Op::Canary { timeout, .. } => (
                    Some(Action::Canary {
                        timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
                        routed: c.traffic.is_some(),
                    }),
                    own(c),
                ),
                Op::Scale {
                    replicas, timeout, ..
                } => (
                    Some(Action::Scale {
                        replicas: *replicas as i64,
                        timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
                    }),
                    own(c),
                ),
                Op::BlueGreen { timeout, .. } => {
                    let Workload::BlueGreen(bg) = &c.workload else {
                        continue;
                    };
                    let live = match colours.get(&comp) {
                        Some(c) => *c,
                        None => match super::live_colour(cluster, c).await {
                            Ok(col) => col,
                            // The run refuses it with its own words (live colours are read
                            // before any action); `plan` shows this.
                            Err(e) => {
                                found.push(Found {
                                    stage: k,
                                    statement: j,
                                    span: st.span,
                                    allowed: settings.allow.contains(&Code::Unreadable),
                                    hazard: Hazard {
                                        code: Code::Unreadable,
                                        severity: Severity::Warning,
                                        kind: "Service".into(),
                                        name: bg.service.clone(),
                                        field: "spec.selector".into(),
                                        message: format!("cannot tell the idle colour of `{}`: {e}", c.name),
                                        help: "the Service must select blue or green by the component's `selector` label".into(),
                                    },
                                });
                                continue;
                            }
                        },
                    };
                    colours.insert(comp, live.other());
                    (
                        Some(Action::BlueGreenIdle {
                            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
                        }),
                        vec![bg.deployment(live.other()).to_string()],
                    )
                }
                Op::Switch { colour, .. } => {
                    colours.insert(comp, *colour);
                    (None, Vec::new())
                }
                _ => (None, Vec::new()),
            };
            let Some(action) = action else { continue };
            if done.contains(&(k, j)) {
                continue;
            }
            for d in deploys {
                if !deployments.contains_key(&d) {
                    let read = match cluster.deployment_opt(&d).await {
                        Ok(v) => v,
                        Err(e) => {
                            let mut f = unreadable("deployments.apps", "Deployment", e.to_string());
                            f.hazard.name = d.clone();
                            (f.stage, f.statement, f.span) = (k, j, st.span);
                            found.push(f);
                            None
                        }
                    };
                    deployments.insert(d.clone(), read);
                }
                // A missing Deployment is the drift check's to report.
                let Some(Some(obj)) = deployments.get(&d) else {
                    continue;
                };
                let subject = Subject {
                    deployment: obj,
                    container: &c.container,
                    services: &services,
                    pdbs: pdbs.as_deref(),
                };
                for h in hazard_rules::rules(&action, &subject, &settings.assume) {
                    let key = (h.code, h.kind.clone(), h.name.clone(), h.field.clone());
                    if !seen.insert(key) {
                        continue;
                    }
                    found.push(Found {
                        stage: k,
                        statement: j,
                        span: st.span,
                        allowed: settings.allow.contains(&h.code),
                        hazard: h,
                    });
                }
            }
        }
    }
    found
}

fn own(c: &crate::program::Component) -> Vec<String> {
    c.deployments().into_iter().map(String::from).collect()
}

async fn list<K>(cluster: &Cluster) -> Result<Vec<Value>, String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(cluster.client.clone(), &cluster.ns);
    match retry(|| async { api.list(&ListParams::default()).await }).await {
        Ok(l) => Ok(l
            .items
            .iter()
            .map(|o| serde_json::to_value(o).unwrap_or_default())
            .collect()),
        Err(e) if status_code(&e) == Some(404) => Err(format!(
            "the API server does not serve them ({})",
            words(&e)
        )),
        Err(e) => Err(ClusterError::kube(e).to_string()),
    }
}

/// The hazards that refuse the run under `settings`: every one not allowed, in refuse mode.
pub(crate) fn refusing<'a>(settings: &Settings, found: &'a [Found]) -> Vec<&'a Found> {
    match settings.mode {
        Mode::Warn => Vec::new(),
        Mode::Refuse => found.iter().filter(|f| !f.allowed).collect(),
    }
}

/// One hazard in a line: `ktplay::hazard::no_prestop on Deployment `gw`
/// (spec.template…preStop)`.
pub(crate) fn short(f: &Found) -> String {
    let h = &f.hazard;
    let object = if h.name.is_empty() {
        h.kind.clone()
    } else {
        format!("{} `{}`", h.kind, h.name)
    };
    if h.field.is_empty() {
        format!("{} on {object}", h.code.code())
    } else {
        format!("{} on {object} ({})", h.code.code(), h.field)
    }
}

/// The event of a hazard.
pub(crate) fn event(
    pb: &Playbook,
    sources: &crate::source::SourceMap,
    f: &Found,
) -> crate::run::log::events::RunEvent {
    let h = &f.hazard;
    crate::run::log::events::RunEvent::Hazard {
        code: h.code.code(),
        severity: h.severity.as_str().into(),
        kind: h.kind.clone(),
        name: h.name.clone(),
        field: h.field.clone(),
        message: h.message.clone(),
        help: h.help.clone(),
        stage: f.stage,
        line: sources.line_col(f.span.file, f.span.start as usize).0,
        statement: statement_words(pb, f),
        allowed: f.allowed,
    }
}

/// `rolling gateway` — the statement's keyword and component, for the one-line form.
pub(crate) fn statement_words(pb: &Playbook, f: &Found) -> String {
    let st = &pb.stages[f.stage].stmts[f.statement];
    let word = match &st.op {
        Op::Rolling { .. } => "rolling",
        Op::Canary { .. } => "canary",
        Op::BlueGreen { .. } => "blue_green",
        Op::Restart { .. } => "restart",
        Op::Undo { .. } => "undo",
        Op::Switch { .. } => "switch",
        Op::Scale { .. } => "scale",
        _ => "statement",
    };
    match st.op.component() {
        Some(c) => format!("{word} {}", pb.components[c].name),
        None => word.to_string(),
    }
}
