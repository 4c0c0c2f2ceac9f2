//! The typed syntax tree. Every node carries a [`Span`]; values in value positions keep their
//! literal kind so the checker can say what was expected and what was found.

use std::time::Duration;

use crate::span::{Span, Spanned};
use crate::version::VersionPattern;

/// A name: component, stage, env, let, matrix, …
pub type Ident = Spanned<String>;

/// One parsed file.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Use(Spanned<StrLit>),
    Matrix(MatrixDecl),
    Playbook(Playbook),
    Test(TestDecl),
    Fleet(FleetDecl),
}

/// `test "name" { … }`: a rehearsal with faults and what it must end in.
#[derive(Debug, Clone, PartialEq)]
pub struct TestDecl {
    pub name: Spanned<StrLit>,
    pub entries: Vec<Spanned<TestEntry>>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TestEntry {
    /// `playbook "FILE" [name "P"]`
    Playbook {
        file: Spanned<StrLit>,
        name: Option<Spanned<StrLit>>,
    },
    Env(Ident),
    /// `fault SPEC`, as `--fault` writes it.
    Fault(Spanned<String>),
    Expect(Expectation),
}

/// `expect …`
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// `expect rolled_back`
    Outcome(Ident),
    /// `expect failed stage S [statement N]`
    Failed {
        stage: Ident,
        statement: Option<Spanned<Value>>,
    },
    /// `expect rollback order C…`
    RollbackOrder(Vec<Ident>),
    /// `expect final C V…`
    Final(Vec<(Ident, Spanned<Value>)>),
}

/// `matrix NAME { … }`
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixDecl {
    pub name: Ident,
    pub entries: Vec<Spanned<MatrixEntry>>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MatrixEntry {
    Hub(Ident),
    Order(Vec<Ident>),
    Rule(Ident),
    Row(RowDecl),
}

/// `api 1.5.x current { gateway 1.4.x - 1.5.x … }`
#[derive(Debug, Clone, PartialEq)]
pub struct RowDecl {
    pub hub: Ident,
    pub version: Spanned<Value>,
    pub status: Ident,
    pub peers: Vec<(Ident, RangeLit)>,
}

/// `A` or `A - B`.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeLit {
    pub low: Spanned<Value>,
    pub high: Option<Spanned<Value>>,
    pub span: Span,
}

/// `playbook "name" { … }`
#[derive(Debug, Clone, PartialEq)]
pub struct Playbook {
    pub name: Spanned<StrLit>,
    pub entries: Vec<Spanned<PlaybookEntry>>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlaybookEntry {
    Namespace(Spanned<StrLit>),
    Matrix(Ident),
    OnFailure(Ident),
    /// `allow_hosts "a" "b"…`: hosts hooks may reach besides the env's.
    AllowHosts(Vec<Spanned<StrLit>>),
    Let(LetDecl),
    Component(ComponentDecl),
    Env(EnvDecl),
    Stage(StageDecl),
    /// `monitor NAME METHOD "url" …`: an endpoint watched all through the run.
    Monitor(MonitorDecl),
}

/// `monitor NAME METHOD "url" entries… [{ entries… }]`
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorDecl {
    pub name: Ident,
    pub method: Spanned<String>,
    pub url: Spanned<StrLit>,
    pub entries: Vec<Spanned<MonitorEntry>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MonitorEntry {
    Header(Spanned<StrLit>, Spanned<StrLit>),
    Bearer(Ident),
    Expect(Spanned<Value>),
    /// `budget failures 0` / `budget failures 1%` / `budget outage 2s`: the kind and the limit.
    Budget(Ident, Spanned<Value>),
    Opt(Opt),
}

/// `let NAME = value` / `let NAME = env("VAR")`.
#[derive(Debug, Clone, PartialEq)]
pub struct LetDecl {
    pub name: Ident,
    pub value: LetValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LetValue {
    /// `env("VAR")`: a secret read from the environment at run time.
    Env(Spanned<StrLit>),
    Value(Spanned<Value>),
}

/// `component NAME { … }`
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentDecl {
    pub name: Ident,
    pub entries: Vec<Spanned<ComponentEntry>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ComponentEntry {
    Deployment(Vec<Spanned<StrLit>>),
    Container(Spanned<StrLit>),
    Image(Spanned<StrLit>),
    From(Spanned<Value>),
    To(Spanned<Value>),
    /// `migrations KIND [{ … }]`: the kind, and the migration files' block if written.
    Migrations(Ident, Option<Spanned<Vec<Spanned<MigrationEntry>>>>),
    Role(Ident),
    /// `serves NAME`: the let whose URLs this component serves in a rehearsal.
    Serves(Ident),
    BlueGreen(Vec<Spanned<BlueGreenEntry>>),
    /// `traffic httproute "NAME"` / `traffic ingress "NAME"`: the router kind and the object.
    Traffic(Ident, Spanned<StrLit>),
}

/// An entry of a `migrations KIND { … }` block.
#[derive(Debug, Clone, PartialEq)]
pub enum MigrationEntry {
    /// `files "db/migrations"` or `files "db/*.sql"`.
    Files(Spanned<StrLit>),
    /// `dialect postgres`.
    Dialect(Ident),
    /// `queries "file.sql"`: what the previous version issues.
    Queries(Spanned<StrLit>),
    /// `release 1.5.0 "a.sql" "b.sql"`.
    Release(Spanned<Value>, Vec<Spanned<StrLit>>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum BlueGreenEntry {
    Service(Spanned<StrLit>),
    Selector(Spanned<StrLit>),
    Blue(Spanned<StrLit>),
    Green(Spanned<StrLit>),
}

/// `env NAME { … }`
#[derive(Debug, Clone, PartialEq)]
pub struct EnvDecl {
    pub name: Ident,
    pub entries: Vec<Spanned<EnvEntry>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EnvEntry {
    Context(Spanned<StrLit>),
    After(Vec<Ident>),
    Namespace(Spanned<StrLit>),
    AllowHosts(Vec<Spanned<StrLit>>),
    Let(LetDecl),
    Monitor(MonitorDecl),
}

/// `stage NAME { … }`
#[derive(Debug, Clone, PartialEq)]
pub struct StageDecl {
    pub name: Ident,
    pub stmts: Vec<Stmt>,
    /// Every `rollback` clause written (the checker allows one).
    pub rollbacks: Vec<Spanned<RollbackDecl>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RollbackDecl {
    None,
    Block(Vec<Stmt>),
}

/// A statement; `span` covers the whole statement, `keyword` just its leading keyword.
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

/// `name value` after an action or guard (`timeout 10m`, `weight 10%`, `within 2m`).
#[derive(Debug, Clone, PartialEq)]
pub struct Opt {
    pub name: Spanned<String>,
    pub value: Spanned<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StmtKind {
    Rolling {
        comp: Ident,
        opts: Vec<Opt>,
    },
    Canary {
        comp: Ident,
        /// `steps 10% 25% 50%`, each written (the checker allows one).
        steps: Vec<Spanned<Vec<Spanned<Value>>>>,
        opts: Vec<Opt>,
        block: Option<Vec<Stmt>>,
    },
    BlueGreen {
        comp: Ident,
        opts: Vec<Opt>,
        block: Option<Vec<Stmt>>,
    },
    Restart {
        comp: Ident,
        opts: Vec<Opt>,
    },
    Undo {
        comp: Ident,
        revision: Option<Spanned<Value>>,
        opts: Vec<Opt>,
    },
    Switch {
        comp: Ident,
        colour: Ident,
    },
    Scale {
        comp: Ident,
        replicas: Spanned<Value>,
        opts: Vec<Opt>,
    },
    Pause {
        duration: Spanned<Value>,
    },
    Approve {
        question: Spanned<StrLit>,
    },
    Guard(Guard),
}

impl StmtKind {
    /// The keyword that starts the statement, for messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            StmtKind::Rolling { .. } => "rolling",
            StmtKind::Canary { .. } => "canary",
            StmtKind::BlueGreen { .. } => "blue_green",
            StmtKind::Restart { .. } => "restart",
            StmtKind::Undo { .. } => "undo",
            StmtKind::Switch { .. } => "switch",
            StmtKind::Scale { .. } => "scale",
            StmtKind::Pause { .. } => "pause",
            StmtKind::Approve { .. } => "approve",
            StmtKind::Guard(_) => "guard",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Guard {
    Http(HttpGuard),
    Metric(MetricGuard),
    Logs {
        comp: Ident,
        pattern: Spanned<StrLit>,
        opts: Vec<Opt>,
    },
    Ready {
        comp: Ident,
        opts: Vec<Opt>,
    },
    Hook {
        path: Spanned<StrLit>,
        opts: Vec<Opt>,
    },
    Rhai {
        script: Script,
        opts: Vec<Opt>,
    },
}

/// `guard http METHOD "url" [expect S] [{ … }] [within D]`
#[derive(Debug, Clone, PartialEq)]
pub struct HttpGuard {
    pub method: Spanned<String>,
    pub url: Spanned<StrLit>,
    pub entries: Vec<Spanned<HttpEntry>>,
    pub opts: Vec<Opt>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HttpEntry {
    Header(Spanned<StrLit>, Spanned<StrLit>),
    Bearer(Ident),
    Json(serde_json::Value),
    Body(Spanned<StrLit>),
    Expect(Spanned<Value>),
    ExpectBodyContains(Spanned<StrLit>),
    Check(Script),
    Opt(Opt),
}

/// `guard metric "URL" query "Q" below N` / `guard metric "URL" { … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricGuard {
    pub url: Spanned<StrLit>,
    pub entries: Vec<Spanned<MetricEntry>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricEntry {
    Query(Query),
    Below(Bound),
    Above(Bound),
    Between(Spanned<String>, Spanned<String>),
    FailureLimit(Spanned<Value>),
    NoData(Ident),
    Bearer(Ident),
    Opt(Opt),
}

/// A PromQL query as written: the literal, and the source text between its quotes (escapes and
/// `${…}` as written) so a PromQL error can be labelled where it is in the playbook.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub lit: Spanned<StrLit>,
    /// The text between the quotes, exactly as in the file.
    pub source: String,
    /// Where `source` starts in the file.
    pub start: usize,
    /// `"""…"""`: no escapes, no interpolation.
    pub raw: bool,
}

/// A threshold: a number as written, or `baseline` with an optional `* F` (factor as written).
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Number(Spanned<String>),
    Baseline {
        factor: Option<Spanned<String>>,
        span: Span,
    },
}

/// Inline Rhai source. `span` covers exactly the script text (inside the quotes), so Rhai
/// positions map onto the playbook.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub text: String,
    pub span: Span,
    /// Whether it was written `"""…"""` (raw; positions map 1:1) or `"…"` (escapes applied).
    pub raw: bool,
}

/// A string literal split into text and `${…}` interpolations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StrLit {
    pub parts: Vec<StrPart>,
}

impl StrLit {
    /// The literal text if the string has no interpolation.
    pub fn as_plain(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                StrPart::Text(t) => out.push_str(t),
                StrPart::Interp(_) => return None,
            }
        }
        Some(out)
    }

    /// The text with interpolations written back as `${…}` (for messages).
    pub fn display(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                StrPart::Text(t) => out.push_str(t),
                StrPart::Interp(i) => {
                    out.push_str("${");
                    out.push_str(
                        &i.path
                            .iter()
                            .map(|s| s.node.as_str())
                            .collect::<Vec<_>>()
                            .join("."),
                    );
                    out.push('}');
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StrPart {
    Text(String),
    Interp(Interp),
}

/// `${name}` or `${component.field}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Interp {
    pub path: Vec<Spanned<String>>,
    pub span: Span,
}

/// A literal in a value position, classified but not yet checked against what is expected there.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(u64),
    Percent(u64),
    Duration(Duration),
    Version(VersionPattern),
    Str(StrLit),
    Raw(String),
    Bool(bool),
    Ident(String),
    /// A number-like token that is none of the above; the text and why.
    Invalid {
        text: String,
        reason: String,
    },
}

impl Value {
    /// What kind of value this is, in words ("a duration `30s`").
    pub fn describe(&self) -> String {
        match self {
            Value::Int(n) => format!("the number `{n}`"),
            Value::Percent(n) => format!("the percentage `{n}%`"),
            Value::Duration(d) => format!("the duration `{}`", crate::syntax::format_duration(*d)),
            Value::Version(v) => format!("the version `{v}`"),
            Value::Str(s) => format!("the string \"{}\"", s.display()),
            Value::Raw(_) => "a raw string".to_string(),
            Value::Bool(b) => format!("`{b}`"),
            Value::Ident(i) => format!("the name `{i}`"),
            Value::Invalid { text, .. } => format!("`{text}`"),
        }
    }
}

/// `fleet "name" { … }`: one playbook across clusters, in waves.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetDecl {
    pub name: Spanned<StrLit>,
    pub entries: Vec<Spanned<FleetEntry>>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FleetEntry {
    /// `playbook "FILE" [name "P"]`, as in a test.
    Playbook {
        file: Spanned<StrLit>,
        name: Option<Spanned<StrLit>>,
    },
    /// `env E`: the playbook's env every cluster starts from.
    Env(Ident),
    /// `on failure stop` / `on failure rollback fleet`
    OnFailure(FleetPolicy),
    /// `shared C in CLUSTER`
    Shared {
        comp: Ident,
        cluster: Ident,
    },
    Cluster(ClusterDecl),
    Wave(WaveDecl),
}

/// What a fleet does when a cluster fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetPolicy {
    /// The failed cluster rolls back; finished clusters stay.
    Stop,
    /// Every cluster that changed rolls back, in reverse wave order.
    RollbackFleet,
}

/// `cluster NAME { context "…"  env E  let … }`
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterDecl {
    pub name: Ident,
    pub entries: Vec<Spanned<ClusterEntry>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClusterEntry {
    Context(Spanned<StrLit>),
    Env(Ident),
    Let(LetDecl),
}

/// `wave NAME { clusters …  parallel N  soak D { guards }  approve "…" }`
#[derive(Debug, Clone, PartialEq)]
pub struct WaveDecl {
    pub name: Ident,
    pub entries: Vec<Spanned<WaveEntry>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WaveEntry {
    Clusters(Vec<Ident>),
    Parallel(Spanned<Value>),
    Soak {
        time: Spanned<Value>,
        guards: Option<Vec<Stmt>>,
    },
    Approve(Spanned<StrLit>),
}
