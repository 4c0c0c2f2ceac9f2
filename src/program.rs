//! The checked program: what `check` hands to `plan`, the model checker and the runner. Names are
//! resolved to indices, values have their final types, strings are templates whose holes are
//! known to exist in every env.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::span::Span;
use crate::version::Version;

/// One checked playbook.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    pub span: Span,
    /// SHA-256 of the playbook's source file(s), hex; keys the journal and the promotion gate.
    pub digest: String,
    pub namespace: String,
    pub on_failure: OnFailure,
    /// Name of the matrix in force, if the playbook names one.
    pub matrix: Option<String>,
    pub lets: Vec<Let>,
    pub components: Vec<Component>,
    pub envs: Vec<Env>,
    pub stages: Vec<Stage>,
    /// `allow_hosts`: hosts (`host`, `host:port`, `*.domain`) hooks may reach besides the env's.
    pub allow_hosts: Vec<String>,
    /// `monitor` items of the playbook (every env's run watches them; an env adds its own).
    pub monitors: Vec<Monitor>,
    /// Folder of the playbook file, for hook paths.
    pub base_dir: PathBuf,
}

impl Playbook {
    pub fn component(&self, name: &str) -> Option<usize> {
        self.components.iter().position(|c| c.name == name)
    }
    pub fn env(&self, name: &str) -> Option<&Env> {
        self.envs.iter().find(|e| e.name == name)
    }

    /// The monitors a run in `env` watches: the playbook's, then the env's own.
    pub fn monitors_for(&self, env: Option<&str>) -> Vec<&Monitor> {
        let mut out: Vec<&Monitor> = self.monitors.iter().collect();
        if let Some(e) = env.and_then(|e| self.env(e)) {
            out.extend(e.monitors.iter());
        }
        out
    }

    /// Every statement, in order: each stage's, with the guards inside canary and blue-green
    /// blocks after their statement, then the stage's rollback block.
    pub fn statements(&self) -> Vec<&Statement> {
        fn walk<'a>(st: &'a Statement, out: &mut Vec<&'a Statement>) {
            out.push(st);
            if let Op::Canary { guards, .. } | Op::BlueGreen { guards, .. } = &st.op {
                for g in guards {
                    walk(g, out);
                }
            }
        }
        let mut out = Vec::new();
        for s in &self.stages {
            for st in &s.stmts {
                walk(st, &mut out);
            }
            if let Rollback::Block(b, _) = &s.rollback {
                for st in b {
                    walk(st, &mut out);
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    Rollback,
    Halt,
}

/// `let NAME = …`
#[derive(Debug, Clone)]
pub struct Let {
    pub name: String,
    pub value: LetValue,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum LetValue {
    /// A value known in the playbook (may interpolate components and other lets).
    Text(Template),
    /// `env("VAR")`: read at run time; never printed.
    Secret { var: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Migrations {
    BackwardCompatible,
    ForwardOnly,
}

/// A component of the system being upgraded.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    /// The name it takes part in the matrix under (`role`), default its own name.
    pub role: String,
    pub workload: Workload,
    pub container: String,
    /// Image repository without a tag; the tag is the version.
    pub image: String,
    pub from: Version,
    pub to: Version,
    pub migrations: Migrations,
    /// `migrations KIND { … }`: the migration files, when named.
    pub migration_files: Option<crate::migrate::Spec>,
    /// `traffic httproute|ingress "NAME"`: what splits its traffic during a canary.
    pub traffic: Option<Traffic>,
    /// `serves NAME`: lets whose URLs are this component's in a rehearsal (the routing rule's
    /// explicit form), with their spans.
    pub serves: Vec<crate::span::Spanned<String>>,
    /// In a fleet, the cluster that runs this shared component for every cluster
    /// (`shared C in CLUSTER`), when that is not the cluster this playbook runs in: the run
    /// takes `from` as its version (the fleet driver reads it there before each batch) and
    /// never looks for its objects here.
    pub hosted_by: Option<String>,
    pub span: Span,
}

/// A traffic router: the object whose weights a canary moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub kind: TrafficKind,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrafficKind {
    /// Gateway API `gateway.networking.k8s.io/v1` HTTPRoute: weights on its `backendRefs`.
    HttpRoute,
    /// ingress-nginx: a canary Ingress beside the stable one with `canary-weight`.
    Ingress,
}

impl TrafficKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficKind::HttpRoute => "httproute",
            TrafficKind::Ingress => "ingress",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Workload {
    Deployments(Vec<String>),
    BlueGreen(BlueGreen),
}

#[derive(Debug, Clone)]
pub struct BlueGreen {
    pub service: String,
    /// Label key whose value names the live colour.
    pub selector: String,
    pub blue: String,
    pub green: String,
}

impl BlueGreen {
    /// The deployment of a colour.
    pub fn deployment(&self, colour: Colour) -> &str {
        match colour {
            Colour::Blue => &self.blue,
            Colour::Green => &self.green,
        }
    }
}

impl Component {
    pub fn is_blue_green(&self) -> bool {
        matches!(self.workload, Workload::BlueGreen(_))
    }
    /// Every Deployment this component owns.
    pub fn deployments(&self) -> Vec<&str> {
        match &self.workload {
            Workload::Deployments(d) => d.iter().map(String::as_str).collect(),
            Workload::BlueGreen(bg) => vec![bg.blue.as_str(), bg.green.as_str()],
        }
    }
}

/// `env NAME { … }`
#[derive(Debug, Clone)]
pub struct Env {
    pub name: String,
    pub context: Option<String>,
    pub namespace: Option<String>,
    pub after: Vec<String>,
    pub lets: Vec<Let>,
    /// `allow_hosts` of this env (added to the playbook's).
    pub allow_hosts: Vec<String>,
    /// `monitor` items of this env (added to the playbook's).
    pub monitors: Vec<Monitor>,
    pub span: Span,
}

/// `monitor NAME METHOD "url" …`: a user-facing endpoint probed at a steady rate all through a
/// run, with the disruption it may show before the run fails.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub name: String,
    /// The request and the status it must answer (`None`: any 2xx).
    pub probe: HttpCheck,
    /// One request every `every` (the rate).
    pub every: Duration,
    /// A request unanswered after this is a `timeout` failure.
    pub timeout: Duration,
    pub budget: MonitorBudget,
    pub span: Span,
}

/// What a monitor tolerates; every limit set must hold. All `None`: reported, never failing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorBudget {
    /// `budget failures N`: at most N failed requests.
    pub failures: Option<u64>,
    /// `budget failures P%`: at most P% of the requests failed.
    pub failure_percent: Option<u64>,
    /// `budget outage D`: no continuous outage longer than D.
    pub outage: Option<Duration>,
}

impl MonitorBudget {
    pub fn is_empty(&self) -> bool {
        *self == MonitorBudget::default()
    }
}

/// A string with `${…}` holes.
#[derive(Debug, Clone, Default)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    Text(String),
    Let(String),
    /// `${component.field}`.
    Field {
        comp: usize,
        field: Field,
    },
}

/// Fields of a component usable in `${component.field}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    From,
    To,
    Image,
    Name,
    /// Blue-green: the colour not serving traffic (where the new version goes).
    Idle,
    /// Blue-green: the colour serving traffic.
    Live,
}

impl Field {
    pub const ALL: &'static [(&'static str, Field)] = &[
        ("from", Field::From),
        ("to", Field::To),
        ("image", Field::Image),
        ("name", Field::Name),
        ("idle", Field::Idle),
        ("live", Field::Live),
    ];
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub span: Span,
    pub stmts: Vec<Statement>,
    pub rollback: Rollback,
}

#[derive(Debug, Clone)]
pub enum Rollback {
    /// Each action's implicit rollback, in reverse order.
    Implicit,
    /// `rollback none`.
    None(Span),
    /// `rollback { … }`: replaces the implicit rollbacks.
    Block(Vec<Statement>, Span),
}

#[derive(Debug, Clone)]
pub struct Statement {
    pub op: Op,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Blue,
    Green,
}

impl Colour {
    pub fn other(self) -> Colour {
        match self {
            Colour::Blue => Colour::Green,
            Colour::Green => Colour::Blue,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Blue => "blue",
            Colour::Green => "green",
        }
    }
    /// A selector's value as a colour.
    pub fn parse(s: &str) -> Option<Colour> {
        match s {
            "blue" => Some(Colour::Blue),
            "green" => Some(Colour::Green),
            _ => None,
        }
    }
}

/// A count or a share of replicas (`max_surge 1`, `max_surge 25%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum IntOrPercent {
    Int(u32),
    Percent(u32),
}

impl std::fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrPercent::Int(n) => write!(f, "{n}"),
            IntOrPercent::Percent(n) => write!(f, "{n}%"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Op {
    Rolling {
        comp: usize,
        to: Version,
        max_unavailable: Option<IntOrPercent>,
        max_surge: Option<IntOrPercent>,
        timeout: Option<Duration>,
    },
    Canary {
        comp: usize,
        to: Version,
        /// The first (or only) step's weight.
        weight: u32,
        /// Every step's weight in order (`steps 10% 25% 50%`); `[weight]` for the one-step form.
        steps: Vec<u32>,
        /// How long each step runs (`for D`, or `every D` with steps).
        duration: Option<Duration>,
        guards: Vec<Statement>,
        /// Each rollout wait of the statement (the canary's pods, the promotion).
        timeout: Option<Duration>,
    },
    BlueGreen {
        comp: usize,
        to: Version,
        guards: Vec<Statement>,
        /// The idle colour's rollout wait.
        timeout: Option<Duration>,
    },
    Restart {
        comp: usize,
        timeout: Option<Duration>,
    },
    Undo {
        comp: usize,
        revision: Option<u64>,
    },
    Switch {
        comp: usize,
        colour: Colour,
    },
    Scale {
        comp: usize,
        replicas: u32,
        timeout: Option<Duration>,
    },
    Pause(Duration),
    Approve(Template),
    Guard(Guard),
}

impl Op {
    /// Does this statement change the cluster?
    pub fn is_action(&self) -> bool {
        !matches!(self, Op::Guard(_) | Op::Pause(_) | Op::Approve(_))
    }

    /// The component an action changes.
    pub fn component(&self) -> Option<usize> {
        match self {
            Op::Rolling { comp, .. }
            | Op::Canary { comp, .. }
            | Op::BlueGreen { comp, .. }
            | Op::Restart { comp, .. }
            | Op::Undo { comp, .. }
            | Op::Switch { comp, .. }
            | Op::Scale { comp, .. } => Some(*comp),
            Op::Pause(_) | Op::Approve(_) | Op::Guard(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Guard {
    pub kind: GuardKind,
    /// `within D`: retry with back-off until D passes.
    pub within: Option<Duration>,
}

#[derive(Debug, Clone)]
pub enum GuardKind {
    Http(HttpCheck),
    Metric(MetricCheck),
    Logs {
        comp: usize,
        pattern: String,
    },
    Ready {
        comp: usize,
    },
    Hook {
        path: PathBuf,
        shown: String,
        source: String,
    },
    Rhai {
        script: Script,
    },
}

/// Rhai source with the span of its text in the playbook (or hook file).
#[derive(Debug, Clone)]
pub struct Script {
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct HttpCheck {
    pub method: String,
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    /// Name of a `let` holding the bearer token.
    pub bearer: Option<String>,
    pub body: Option<HttpBody>,
    /// Expected status; `None` means any 2xx.
    pub expect_status: Option<u16>,
    pub expect_contains: Vec<Template>,
    pub check: Option<Script>,
}

/// `guard metric "URL" …`: an instant PromQL query and what its value must be.
#[derive(Debug, Clone)]
pub struct MetricCheck {
    /// The Prometheus server (`/api/v1/query` is appended).
    pub url: Template,
    pub query: Template,
    pub condition: Condition,
    /// `every D`: time between evaluations (default 30 s when `for` is given; inside a canary
    /// without either, every round of its guards).
    pub every: Option<Duration>,
    /// `for D`: evaluate for this long; inside a canary, the first D of each step (never past
    /// it), the whole step when not given.
    pub duration: Option<Duration>,
    /// `failure_limit N`: failed evaluations tolerated (default 0).
    pub failure_limit: u32,
    pub no_data: NoData,
    /// Name of a `let` holding the bearer token.
    pub bearer: Option<String>,
}

/// What an evaluation's value must satisfy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    Below(Threshold),
    Above(Threshold),
    /// Inclusive at both ends.
    Between(f64, f64),
}

impl Condition {
    /// Does the condition use the baseline query?
    pub fn uses_baseline(&self) -> bool {
        matches!(
            self,
            Condition::Below(Threshold::Baseline(_)) | Condition::Above(Threshold::Baseline(_))
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Value(f64),
    /// `baseline * F`: the same query with every `${C.to}` read as `${C.from}`, times F.
    Baseline(f64),
}

/// `no_data fail|pass|ignore`: what an empty result or NaN counts as once the query's window
/// has passed (before, inside a canary, it is pending whatever this says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoData {
    /// A failed evaluation; a canary without any evaluation that had data fails.
    Fail,
    /// A passed evaluation; a canary without any evaluation that had data still fails.
    Pass,
    /// Pending (neither); a canary without any data passes: the playbook says it may have none.
    Ignore,
}

#[derive(Debug, Clone)]
pub enum HttpBody {
    Json(serde_json::Value),
    Text(Template),
}
