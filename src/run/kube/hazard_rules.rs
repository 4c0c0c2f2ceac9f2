//! The hazard rules (issue 22, part 3): pure functions over the live objects one statement
//! touches — its Deployment, the Services that select its pods, the PodDisruptionBudgets that
//! cover them — that say how the statement would drop requests, before it runs.
//!
//! Each hazard has a stable code (`ktplay::hazard::*`, explained by `ktplay explain`), a
//! severity, the object and the field it is about, and the fix. Reading the objects is
//! [`super::hazards`]; nothing here talks to a cluster.
//!
//! What the rules assume (each number is in the message that uses it, and settable):
//!
//! - **Endpoint lag** ([`Assumptions::endpoint_lag`], default 5 s, `--endpoint-lag` /
//!   `KTPLAY_ENDPOINT_LAG`): how long a deleted pod's endpoint stays in some proxy after the
//!   deletion — the EndpointSlice controller's update, kube-proxy's sync (`iptables
//!   --iptables-min-sync-period`, 1 s by default; the project's data path uses 2 s and measured up
//!   to about 2 s), and any ingress controller or cloud load balancer that follows the endpoints.
//! - **App drain** ([`Assumptions::app_drain`], default 5 s, `--app-drain` / `KTPLAY_APP_DRAIN`):
//!   how long the app takes after SIGTERM to finish its in-flight requests.
//! - **Traffic rules apply only to pods a Service selects**: a Deployment no Service selects
//!   (background workers) serves no requests a proxy could send to a dying or loading pod.
//! - **A preStop hook's length** is known only when it is a sleep: `sleep: {seconds: N}`, an
//!   `exec` of `sleep N`, or a shell (`sh -c`) whose script holds `sleep N` (the sum of its sleeps,
//!   a lower bound of the hook's time). An `httpGet` hook, or an `exec` of anything else, takes
//!   the app's time, which ktplay cannot know: it is trusted to wait long enough (no
//!   `short_prestop`), and counts as 0 s in the grace rule.
//! - **A startupProbe** keeps a loading pod out of the endpoints as a readinessProbe does.
//! - **A PodDisruptionBudget is needed** when a Service selects the Deployment and it runs 2 or
//!   more replicas: while a rollout holds it at reduced capacity, a node drain or an autoscaler
//!   evicting the rest is what a PDB stops. One replica is not asked for one (a PDB over a single
//!   pod blocks every drain).

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::program::IntOrPercent;
use crate::sim::selector::LabelSelector;

/// What the rules assume about the cluster and the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assumptions {
    /// How long a deleted pod's endpoint may still receive requests.
    pub endpoint_lag: Duration,
    /// How long the app drains in-flight requests after SIGTERM.
    pub app_drain: Duration,
}

impl Default for Assumptions {
    fn default() -> Self {
        Assumptions {
            endpoint_lag: Duration::from_secs(5),
            app_drain: Duration::from_secs(5),
        }
    }
}

/// How sure the rule is that requests will be lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    /// Requests are likely to fail, or the safety net is missing.
    Warning,
    /// The action will interrupt the service, or cannot work as written.
    Error,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Every hazard ktplay predicts; the codes are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    NoReadinessProbe,
    NoPrestop,
    ShortPrestop,
    GraceTooShort,
    TakesEveryReplica,
    NoProgress,
    PdbViolated,
    NoPdb,
    ProgressDeadline,
    IdleAtZero,
    CanaryNotSelected,
    Unreadable,
}

impl Code {
    pub const ALL: [Code; 12] = [
        Code::NoReadinessProbe,
        Code::NoPrestop,
        Code::ShortPrestop,
        Code::GraceTooShort,
        Code::TakesEveryReplica,
        Code::NoProgress,
        Code::PdbViolated,
        Code::NoPdb,
        Code::ProgressDeadline,
        Code::IdleAtZero,
        Code::CanaryNotSelected,
        Code::Unreadable,
    ];

    /// The last part of the code (`no_prestop`).
    pub fn name(self) -> &'static str {
        match self {
            Code::NoReadinessProbe => "no_readiness_probe",
            Code::NoPrestop => "no_prestop",
            Code::ShortPrestop => "short_prestop",
            Code::GraceTooShort => "grace_too_short",
            Code::TakesEveryReplica => "takes_every_replica",
            Code::NoProgress => "no_progress",
            Code::PdbViolated => "pdb_violated",
            Code::NoPdb => "no_pdb",
            Code::ProgressDeadline => "progress_deadline",
            Code::IdleAtZero => "idle_at_zero",
            Code::CanaryNotSelected => "canary_not_selected",
            Code::Unreadable => "unreadable",
        }
    }

    /// The whole code (`ktplay::hazard::no_prestop`).
    pub fn code(self) -> String {
        format!("ktplay::hazard::{}", self.name())
    }

    /// A code by its whole name, its `hazard::` form or its last part.
    pub fn parse(s: &str) -> Option<Code> {
        let s = s.trim();
        let s = s.strip_prefix("ktplay::").unwrap_or(s);
        let s = s.strip_prefix("hazard::").unwrap_or(s);
        Code::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// One predicted hazard: what, where (object and field), and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Hazard {
    pub code: Code,
    pub severity: Severity,
    /// `Deployment`, `Service`, `PodDisruptionBudget`, …
    pub kind: String,
    pub name: String,
    /// The field, as a path (`spec.template.spec.containers[name=gateway].lifecycle.preStop`).
    pub field: String,
    pub message: String,
    pub help: String,
}

impl Hazard {
    fn new(code: Code, severity: Severity, kind: &str, name: &str, field: String) -> Hazard {
        Hazard {
            code,
            severity,
            kind: kind.into(),
            name: name.into(),
            field,
            message: String::new(),
            help: String::new(),
        }
    }
    fn say(mut self, message: String, help: String) -> Hazard {
        self.message = message;
        self.help = help;
        self
    }
}

/// What the statement does to the Deployment, as far as the rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// A rolling update (`rolling`, `restart`, `undo`): old pods replaced by new ones under
    /// the strategy; `max_unavailable`/`max_surge` the statement's own, else the live ones.
    Rolling {
        max_unavailable: Option<IntOrPercent>,
        max_surge: Option<IntOrPercent>,
        timeout: Duration,
    },
    /// A canary: pods of the new version beside the stable ones (with the Deployment's
    /// `matchLabels` plus `track: canary`), then a rolling update under the live strategy, then
    /// the canary's pods deleted. `routed`: a `traffic` router sends the canary its weight
    /// through a canary Service.
    Canary { timeout: Duration, routed: bool },
    /// The idle colour of a blue-green component: deployed, then the Service switched to it.
    BlueGreenIdle { timeout: Duration },
    /// `scale C N`.
    Scale { replicas: i64, timeout: Duration },
}

impl Action {
    fn timeout(&self) -> Duration {
        match self {
            Action::Rolling { timeout, .. }
            | Action::Canary { timeout, .. }
            | Action::BlueGreenIdle { timeout }
            | Action::Scale { timeout, .. } => *timeout,
        }
    }
}

/// The live objects one statement touches, for one of its Deployments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub deployment: &'a Value,
    /// The component's container.
    pub container: &'a str,
    /// Every Service of the namespace (the rules pick those that select the pods).
    pub services: &'a [Value],
    /// Every PodDisruptionBudget of the namespace; `None` when they could not be read.
    pub pdbs: Option<&'a [Value]>,
}

/// A preStop hook, as far as its length can be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PreStop {
    None,
    /// A sleep of at least this long (`how`: `sleep`, `exec sleep`, `sh -c`).
    Sleeps(Duration, &'static str),
    /// A hook whose length is the app's (`httpGet`, an `exec` of something else).
    Unknown(&'static str),
}

/// The preStop hook of a container.
pub(crate) fn prestop(container: &Value) -> PreStop {
    let hook = &container["lifecycle"]["preStop"];
    if !hook.is_object() {
        return PreStop::None;
    }
    if let Some(s) = hook["sleep"]["seconds"].as_u64() {
        return PreStop::Sleeps(Duration::from_secs(s), "sleep");
    }
    if let Some(cmd) = hook["exec"]["command"].as_array() {
        let words: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
        let base = |w: &str| w.rsplit('/').next().unwrap_or(w).to_string();
        match words.as_slice() {
            [s, n, ..] if base(s) == "sleep" => {
                if let Some(d) = sleep_arg(n) {
                    return PreStop::Sleeps(d, "exec sleep");
                }
            }
            [sh, flag, script, ..]
                if matches!(base(sh).as_str(), "sh" | "bash" | "ash" | "dash" | "zsh")
                    && flag.starts_with('-')
                    && flag.contains('c') =>
            {
                if let Some(d) = script_sleeps(script) {
                    return PreStop::Sleeps(d, "sh -c sleep");
                }
            }
            _ => {}
        }
        return PreStop::Unknown("exec");
    }
    if hook["httpGet"].is_object() {
        return PreStop::Unknown("httpGet");
    }
    PreStop::Unknown("hook")
}

/// `sleep`'s argument as GNU sleep reads it: a number (decimals allowed) with an optional
/// `s`, `m`, `h` or `d` suffix. `infinity` and anything else: not known.
fn sleep_arg(a: &str) -> Option<Duration> {
    let a = a.trim();
    let (num, unit) = match a.char_indices().last()? {
        (i, c @ ('s' | 'm' | 'h' | 'd')) => (&a[..i], c),
        _ => (a, 's'),
    };
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = n * match unit {
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86400.0,
        _ => 1.0,
    };
    (secs < 1e9).then(|| Duration::from_secs_f64(secs))
}

/// The sum of the `sleep N` commands in a shell script (each `sleep` word followed by a
/// number), or `None` when it has none.
fn script_sleeps(script: &str) -> Option<Duration> {
    let words: Vec<&str> = script
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut total = Duration::ZERO;
    let mut any = false;
    for pair in words.windows(2) {
        if pair[0].rsplit('/').next() == Some("sleep") {
            if let Some(d) = sleep_arg(pair[1]) {
                total += d;
                any = true;
            }
        }
    }
    any.then_some(total)
}

/// A value of `maxSurge`/`maxUnavailable`/`minAvailable` as the API holds it.
fn int_or_percent(v: &Value) -> Option<IntOrPercent> {
    match v {
        Value::Number(n) => n.as_u64().map(|n| IntOrPercent::Int(n as u32)),
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse().ok())
            .map(IntOrPercent::Percent),
        _ => None,
    }
}

/// Kubernetes' `GetScaledValueFromIntOrPercent`: an int as it is, a percent of `total`, rounded
/// up or down.
pub(crate) fn scaled(v: IntOrPercent, total: i64, round_up: bool) -> i64 {
    match v {
        IntOrPercent::Int(n) => n as i64,
        IntOrPercent::Percent(p) => {
            let x = p as i64 * total;
            if round_up {
                (x + 99) / 100
            } else {
                x / 100
            }
        }
    }
}

/// The deployment controller's `ResolveFenceposts`: (surge, unavailable) for `replicas`; surge
/// rounds up, unavailability down, and when both come to 0 unavailability is 1.
pub(crate) fn fenceposts(
    surge: IntOrPercent,
    unavailable: IntOrPercent,
    replicas: i64,
) -> (i64, i64) {
    let s = scaled(surge, replicas, true);
    let mut u = scaled(unavailable, replicas, false);
    if s == 0 && u == 0 {
        u = 1;
    }
    (s, u)
}

fn container_field(container: &str, rest: &str) -> String {
    format!("spec.template.spec.containers[name={container}].{rest}")
}

fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn labels(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object()
}

/// Services of `services` whose selector picks pods with the template's labels. A Service
/// ktplay made for a canary (`app.kubernetes.io/managed-by: ktplay`) is not the app's.
pub(crate) fn selecting<'a>(services: &'a [Value], template_labels: &Value) -> Vec<&'a Value> {
    services
        .iter()
        .filter(|s| s["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "ktplay")
        .filter(|s| {
            let Some(sel) = s["spec"]["selector"].as_object() else {
                return false;
            };
            let mut sel = sel.clone();
            // Pinned to a ReplicaSet by a canary in progress: the app's Service all the same.
            sel.remove("pod-template-hash");
            !sel.is_empty() && LabelSelector::from_map(&sel).matches(labels(template_labels))
        })
        .collect()
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("?")
}

/// Every hazard of `action` on one Deployment.
pub(crate) fn rules(action: &Action, s: &Subject<'_>, a: &Assumptions) -> Vec<Hazard> {
    let d = s.deployment;
    let deploy = name_of(d);
    let spec = &d["spec"];
    let template = &spec["template"];
    let tlabels = &template["metadata"]["labels"];
    let replicas = spec["replicas"].as_i64().unwrap_or(1);
    let ready = d["status"]["readyReplicas"].as_i64().unwrap_or(0);
    let container = template["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == s.container)
        .cloned()
        .unwrap_or(Value::Null);
    let services = selecting(s.services, tlabels);
    let served = !services.is_empty();
    let svc_words = services
        .iter()
        .map(|x| format!("`{}`", name_of(x)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = Vec::new();
    let dep = |code, sev, field: String| Hazard::new(code, sev, "Deployment", deploy, field);

    // What the action does to pods.
    let (starts_pods, stops_pods, rolls) = match action {
        Action::Rolling { .. } | Action::Canary { .. } => (true, true, true),
        Action::BlueGreenIdle { .. } => (true, false, false),
        Action::Scale { replicas: n, .. } => (*n > replicas, *n < replicas, false),
    };

    if let Action::BlueGreenIdle { .. } = action {
        if replicas == 0 {
            out.push(dep(Code::IdleAtZero, Severity::Error, "spec.replicas".into()).say(
                format!("the idle colour `{deploy}` has 0 replicas: the new version would start no pod, and the switch would send the Service to none"),
                format!("scale `{deploy}` to the live colour's replicas before the run (`kubectl scale deployment {deploy} --replicas=N`), or add `scale` of the component before `blue_green`"),
            ));
        }
    }

    // A new pod must not get requests while it is still loading.
    if starts_pods
        && served
        && container.is_object()
        && !container["readinessProbe"].is_object()
        && !container["startupProbe"].is_object()
    {
        out.push(
            dep(
                Code::NoReadinessProbe,
                Severity::Warning,
                container_field(s.container, "readinessProbe"),
            )
            .say(
                format!("container `{}` of `{deploy}` has no readinessProbe: each new pod is Ready as soon as its process starts, and Service {svc_words} sends it requests while it is still loading", s.container),
                "add a readinessProbe that answers only once the app can serve, e.g. `readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 1}`".to_string(),
            ),
        );
    }

    // An old pod must stay serving until its endpoint has left every proxy.
    if stops_pods && served && container.is_object() {
        let hook = prestop(&container);
        let lag = secs(a.endpoint_lag);
        match &hook {
            PreStop::None => out.push(
                dep(
                    Code::NoPrestop,
                    Severity::Warning,
                    container_field(s.container, "lifecycle.preStop"),
                )
                .say(
                    format!("container `{}` of `{deploy}` has no preStop hook: a deleted pod gets SIGTERM at once while Service {svc_words} may still send it requests for up to {lag} (assumed endpoint propagation to every proxy; --endpoint-lag), and those fail", s.container),
                    format!("add `lifecycle: {{preStop: {{sleep: {{seconds: {n}}}}}}}` (Kubernetes 1.30+; or `exec: {{command: [\"sleep\", \"{n}\"]}}`) so the pod keeps serving until its endpoint is gone", n = a.endpoint_lag.as_secs().max(1) * 2),
                ),
            ),
            PreStop::Sleeps(t, how) if *t < a.endpoint_lag => out.push(
                dep(
                    Code::ShortPrestop,
                    Severity::Warning,
                    container_field(s.container, "lifecycle.preStop"),
                )
                .say(
                    format!("the preStop hook of container `{}` of `{deploy}` ({how} {}) is shorter than the {lag} an endpoint may take to leave every proxy (assumed; --endpoint-lag): requests sent in the rest of that time fail", s.container, secs(*t)),
                    format!("sleep at least {lag} in the preStop hook (the assumption is --endpoint-lag / KTPLAY_ENDPOINT_LAG: set it to what your cluster's proxies and load balancers take)"),
                ),
            ),
            _ => {}
        }
        let grace = Duration::from_secs(
            template["spec"]["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap_or(30),
        );
        let hook_time = match hook {
            PreStop::Sleeps(t, _) => t,
            _ => Duration::ZERO,
        };
        let need = hook_time + a.app_drain;
        if grace < need {
            let cut = if grace < a.endpoint_lag {
                format!("the process is killed after {} while its endpoint may still get requests for up to {}", secs(grace), secs(a.endpoint_lag))
            } else {
                "in-flight requests are cut when the kubelet kills the process".to_string()
            };
            out.push(
                dep(
                    Code::GraceTooShort,
                    Severity::Warning,
                    "spec.template.spec.terminationGracePeriodSeconds".into(),
                )
                .say(
                    format!("terminationGracePeriodSeconds of `{deploy}` ({}) is shorter than its preStop hook ({}) plus the app's drain ({}, assumed; --app-drain): {cut}", secs(grace), secs(hook_time), secs(a.app_drain)),
                    format!("set `terminationGracePeriodSeconds: {}` or more (the grace period covers the preStop hook and the app's shutdown)", need.as_secs() + 5),
                ),
            );
        }
    }

    // The strategy: how many pods may be down at once.
    if rolls {
        let strategy = &spec["strategy"];
        if strategy["type"] == "Recreate" {
            out.push(
                dep(Code::TakesEveryReplica, Severity::Error, "spec.strategy.type".into()).say(
                    format!("`{deploy}` uses the Recreate strategy: every pod is stopped before any new one starts, so the service is down for the whole rollout"),
                    "use `strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}`".into(),
                ),
            );
        } else {
            let live = |k: &str, dflt| {
                int_or_percent(&strategy["rollingUpdate"][k]).unwrap_or(IntOrPercent::Percent(dflt))
            };
            let (mu, ms, own) = match action {
                Action::Rolling {
                    max_unavailable,
                    max_surge,
                    ..
                } => (
                    max_unavailable.unwrap_or_else(|| live("maxUnavailable", 25)),
                    max_surge.unwrap_or_else(|| live("maxSurge", 25)),
                    max_unavailable.is_some() || max_surge.is_some(),
                ),
                _ => (live("maxUnavailable", 25), live("maxSurge", 25), false),
            };
            let whose = if own {
                "the statement's"
            } else {
                "the Deployment's"
            };
            let field = "spec.strategy.rollingUpdate.maxUnavailable".to_string();
            let zero =
                |v: IntOrPercent| matches!(v, IntOrPercent::Int(0) | IntOrPercent::Percent(0));
            if zero(mu) && zero(ms) {
                out.push(dep(Code::NoProgress, Severity::Error, field.clone()).say(
                    format!("maxUnavailable {mu} with maxSurge {ms} on `{deploy}` ({whose} values over the Deployment's): the rollout may neither remove an old pod nor add a new one, and the API refuses the change, so the statement fails at its first write"),
                    "allow one of them: `max_unavailable 0 max_surge 1` keeps every pod serving while a new one starts".into(),
                ));
            } else if replicas > 0 {
                let (_, u) = fenceposts(ms, mu, replicas);
                if u >= replicas {
                    out.push(dep(Code::TakesEveryReplica, Severity::Error, field.clone()).say(
                        format!("{whose} maxUnavailable {mu} resolves to {u} of `{deploy}`'s {replicas} replica{} ({ready} ready; percents round down, as Kubernetes does): the rollout may take every pod down at once", if replicas == 1 { "" } else { "s" }),
                        if replicas == 1 {
                            "with one replica use `max_unavailable 0 max_surge 1` (a new pod starts and is ready before the old one goes), or run 2 or more replicas".to_string()
                        } else {
                            format!("set maxUnavailable below {replicas} (e.g. `max_unavailable 1 max_surge 1`), or `max_unavailable 0 max_surge 1`")
                        },
                    ));
                }
                // The PodDisruptionBudgets that cover these pods.
                if let Some(pdbs) = s.pdbs {
                    let covering: Vec<&Value> = pdbs
                        .iter()
                        .filter(|p| {
                            p["spec"]["selector"].is_object()
                                && LabelSelector::from_object(&p["spec"]["selector"])
                                    .matches(labels(tlabels))
                        })
                        .collect();
                    let lowest = replicas - u.min(replicas);
                    for p in &covering {
                        let (desired, how) =
                            if let Some(m) = int_or_percent(&p["spec"]["minAvailable"]) {
                                (scaled(m, replicas, true), format!("minAvailable {m}"))
                            } else if let Some(m) = int_or_percent(&p["spec"]["maxUnavailable"]) {
                                (
                                    replicas - scaled(m, replicas, true),
                                    format!("maxUnavailable {m}"),
                                )
                            } else {
                                continue;
                            };
                        if lowest < desired {
                            let pf = if p["spec"]["minAvailable"].is_null() {
                                "spec.maxUnavailable"
                            } else {
                                "spec.minAvailable"
                            };
                            out.push(
                                Hazard::new(Code::PdbViolated, Severity::Warning, "PodDisruptionBudget", name_of(p), pf.into()).say(
                                    format!("PodDisruptionBudget `{}` ({how}) asks for {desired} of `{deploy}`'s {replicas} pods available, but {whose} maxUnavailable {mu} lets the rollout go down to {lowest} (a rollout does not ask the budget)", name_of(p)),
                                    format!("lower maxUnavailable to {} or less (e.g. `max_unavailable {} max_surge 1`), so the rollout keeps what the budget promises", replicas - desired, (replicas - desired).max(0)),
                                ),
                            );
                        }
                    }
                    if covering.is_empty() && served && replicas >= 2 {
                        out.push(
                            dep(Code::NoPdb, Severity::Warning, "metadata.labels".into()).say(
                                format!("no PodDisruptionBudget covers the pods of `{deploy}` ({replicas} replicas behind Service {svc_words}): while the rollout holds it at reduced capacity, a node drain or an autoscaler may evict the rest"),
                                format!("add a PodDisruptionBudget selecting the pods with `maxUnavailable: 1` (or `minAvailable: {}`)", replicas - 1),
                            ),
                        );
                    }
                }
            }
        }
    }

    // Kubernetes' own failure signal must come before ktplay gives up.
    let deadline = Duration::from_secs(spec["progressDeadlineSeconds"].as_u64().unwrap_or(600));
    if deadline > action.timeout() && !matches!(action, Action::Scale { .. } if !starts_pods) {
        out.push(
            dep(Code::ProgressDeadline, Severity::Warning, "spec.progressDeadlineSeconds".into()).say(
                format!("progressDeadlineSeconds of `{deploy}` ({}) is longer than the statement's timeout ({}): a stuck rollout is cut by ktplay's time-out before Kubernetes marks it failed (ProgressDeadlineExceeded, with the ReplicaSet's reason), so the cause is not on the Deployment when ktplay rolls back", secs(deadline), secs(action.timeout())),
                format!("set `progressDeadlineSeconds: {}` or less, or give the statement `timeout {}s` or more", action.timeout().as_secs(), deadline.as_secs()),
            ),
        );
    }

    // The canary's pods carry only the Deployment's matchLabels plus `track: canary`.
    if let Action::Canary { routed, .. } = action {
        let mut canary_labels = spec["selector"]["matchLabels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        canary_labels.insert("track".into(), Value::String("canary".into()));
        for svc in &services {
            let mut sel = svc["spec"]["selector"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            sel.remove("pod-template-hash");
            let missing: Vec<String> = sel
                .iter()
                .filter(|(k, v)| k.as_str() != "track" && canary_labels.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                .collect();
            let track = sel.get("track").filter(|v| v.as_str() != Some("canary"));
            if missing.is_empty() && track.is_none() {
                continue;
            }
            let why = match (missing.is_empty(), track) {
                (false, _) => format!("its selector needs {} which the canary's pods do not carry (they get the Deployment's `spec.selector.matchLabels` plus `track: canary`)", missing.join(", ")),
                (true, Some(t)) => format!("its selector needs track={}, and the canary's pods carry track=canary", t.as_str().unwrap_or("?")),
                (true, None) => unreachable!(),
            };
            let (sev, effect) = if *routed {
                (Severity::Error, "the canary Service made from it would select no pod, and the router's canary share of requests would fail".to_string())
            } else {
                (Severity::Warning, "the canary would get no requests through it, and its guards would judge nothing".to_string())
            };
            out.push(
                Hazard::new(Code::CanaryNotSelected, sev, "Service", name_of(svc), "spec.selector".into()).say(
                    format!("Service `{}` would not select the canary of `{deploy}`: {why}; {effect}", name_of(svc)),
                    format!("select the pods by labels in `{deploy}`'s spec.selector.matchLabels only (Service selector ⊆ matchLabels)"),
                ),
            );
        }
    }
    out
}

#[cfg(test)]
#[path = "hazard_rules_tests.rs"]
mod tests;
