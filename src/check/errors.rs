//! Everything `check` reports about a playbook's meaning (syntax problems are in
//! `syntax::SyntaxError`, compatibility findings in `model`). Each variant has a stable code and
//! a help line that says how to fix it.

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

/// A semantic problem in a playbook, a matrix or a `use`.
#[derive(Debug, Error, Diagnostic)]
pub enum CheckError {
    #[error("unknown component `{name}`")]
    #[diagnostic(code(ktplay::check::unknown_component))]
    UnknownComponent {
        name: String,
        #[label("no component of that name in this playbook")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },

    #[error("`{name}` is not defined{context}")]
    #[diagnostic(code(ktplay::check::unknown_let))]
    UnknownLet {
        name: String,
        context: String,
        #[label("no `let {name}` in scope")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },

    #[error("unknown env `{name}`")]
    #[diagnostic(code(ktplay::check::unknown_env))]
    UnknownEnv {
        name: String,
        #[label("no env of that name in this playbook")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },

    #[error("unknown matrix `{name}`")]
    #[diagnostic(code(ktplay::check::unknown_matrix))]
    UnknownMatrix {
        name: String,
        #[label("not declared here, in a `use`d file, or built in")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },

    #[error("`{comp}` has no field `{field}`")]
    #[diagnostic(code(ktplay::check::unknown_field))]
    UnknownField {
        comp: String,
        field: String,
        #[label("unknown field")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("{what} `{name}` is defined twice")]
    #[diagnostic(
        code(ktplay::check::duplicate),
        help("rename one of them or remove the second")
    )]
    Duplicate {
        what: &'static str,
        name: String,
        #[label("defined again here")]
        span: SourceSpan,
        #[label("first defined here")]
        first: SourceSpan,
    },

    #[error("expected {expected}, found {found}")]
    #[diagnostic(code(ktplay::check::wrong_kind))]
    WrongKind {
        expected: &'static str,
        found: String,
        #[label("expected {expected}")]
        span: SourceSpan,
        #[help]
        help: Option<String>,
    },

    #[error("HTTP status {status} is outside 100–599")]
    #[diagnostic(
        code(ktplay::check::status_range),
        help("HTTP statuses run from 100 to 599, like `200` or `409`")
    )]
    StatusRange {
        status: u64,
        #[label("not an HTTP status")]
        span: SourceSpan,
    },

    #[error("canary weight {weight}% is outside 1–99%")]
    #[diagnostic(
        code(ktplay::check::weight_range),
        help("a canary takes a share of traffic between 1% and 99%; for all of it use `rolling`")
    )]
    WeightRange {
        weight: u64,
        #[label("out of range")]
        span: SourceSpan,
    },

    #[error("a duration of zero")]
    #[diagnostic(
        code(ktplay::check::zero_duration),
        help("give a positive duration, like `30s` or `5m`")
    )]
    ZeroDuration {
        #[label("zero")]
        span: SourceSpan,
    },

    #[error("`{value}` is out of range for {what}")]
    #[diagnostic(code(ktplay::check::out_of_range))]
    OutOfRange {
        what: &'static str,
        value: String,
        #[label("out of range")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`{name}` is not a valid Kubernetes {what} name")]
    #[diagnostic(code(ktplay::check::invalid_k8s_name))]
    InvalidK8sName {
        what: &'static str,
        name: String,
        #[label("{reason}")]
        span: SourceSpan,
        reason: String,
        #[help]
        help: String,
    },

    #[error("the image `{image}` carries a tag")]
    #[diagnostic(code(ktplay::check::image_with_tag))]
    ImageWithTag {
        image: String,
        #[label("the tag comes from the version")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`{stmt}` cannot be used on {what}")]
    #[diagnostic(code(ktplay::check::blue_green_misuse))]
    BlueGreenMisuse {
        stmt: &'static str,
        what: String,
        #[label("here")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("hook file `{path}` cannot be read: {reason}")]
    #[diagnostic(
        code(ktplay::check::missing_hook),
        help("hook paths are relative to the playbook file")
    )]
    MissingHook {
        path: String,
        reason: String,
        #[label("this hook")]
        span: SourceSpan,
    },

    #[error("`use` of `{path}` failed: {reason}")]
    #[diagnostic(
        code(ktplay::check::missing_use),
        help("`use` paths are relative to the file that says `use`")
    )]
    MissingUse {
        path: String,
        reason: String,
        #[label("cannot read this")]
        span: SourceSpan,
    },

    #[error("`use` cycle: {chain}")]
    #[diagnostic(code(ktplay::check::use_cycle), help("a file may not `use` itself, directly or through others; move the shared matrices into a file of their own"))]
    UseCycle {
        chain: String,
        #[label("closes the cycle")]
        span: SourceSpan,
    },

    #[error("`after` cycle between envs: {chain}")]
    #[diagnostic(
        code(ktplay::check::after_cycle),
        help("promotion runs one way: remove one `after` so the envs form a chain")
    )]
    AfterCycle {
        chain: String,
        #[label("closes the cycle")]
        span: SourceSpan,
    },

    #[error("the secret `{name}` is interpolated into a URL")]
    #[diagnostic(
        code(ktplay::check::secret_in_url),
        help("URLs are printed in plans, logs and journals; send secrets with `bearer {name}` or `header \"Name\" \"${{{name}}}\"`")
    )]
    SecretInUrl {
        name: String,
        #[label("`{name}` comes from env(), so it is a secret")]
        span: SourceSpan,
    },

    #[error("`{role}` is not a role of the matrix `{matrix}`")]
    #[diagnostic(code(ktplay::check::unknown_role))]
    UnknownRole {
        role: String,
        matrix: String,
        #[label("not in the matrix")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`max_unavailable` and `max_surge` are both zero: the rollout can never progress")]
    #[diagnostic(
        code(ktplay::check::no_progress),
        help("Kubernetes refuses a rolling update that may neither take a pod down nor add one; allow `max_surge 1` (or `max_unavailable 1`)")
    )]
    NoProgress {
        #[label("both zero")]
        span: SourceSpan,
    },

    #[error("`{comp}` goes from {from} down to {to}")]
    #[diagnostic(
        code(ktplay::check::downgrade),
        severity(Warning),
        help("if a downgrade is intended, make sure every migration is backward-compatible; otherwise swap `from` and `to`")
    )]
    Downgrade {
        comp: String,
        from: String,
        to: String,
        #[label("`to` is older than `from`")]
        span: SourceSpan,
    },

    #[error("stage `{stage}` has actions and no way back")]
    #[diagnostic(
        code(ktplay::check::no_way_back),
        severity(Warning),
        help("a failure would leave this stage's changes in place: write a `rollback {{ … }}` block that restores them, or set `on_failure halt` to say so (`rollback none` is silent only for components whose `migrations` are `forward_only`)")
    )]
    NoWayBack {
        stage: String,
        #[label("{label}")]
        span: SourceSpan,
        label: &'static str,
    },

    #[error("{what} needs {missing}")]
    #[diagnostic(code(ktplay::check::missing_entry))]
    MissingEntry {
        what: String,
        missing: &'static str,
        #[label("declared here")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("`{value}` is not a valid {what}")]
    #[diagnostic(code(ktplay::check::invalid_value))]
    InvalidValue {
        what: &'static str,
        value: String,
        #[label("here")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("{what} is not allowed here")]
    #[diagnostic(code(ktplay::check::misplaced))]
    Misplaced {
        what: String,
        #[label("here")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("invalid regular expression: {reason}")]
    #[diagnostic(
        code(ktplay::check::bad_regex),
        help("the pattern is a Rust `regex`; escape special characters with `\\\\`")
    )]
    BadRegex {
        reason: String,
        #[label("this pattern")]
        span: SourceSpan,
    },

    #[error("invalid PromQL: {reason}")]
    #[diagnostic(code(ktplay::check::bad_promql))]
    BadPromql {
        reason: String,
        #[label("{label}")]
        span: SourceSpan,
        label: String,
        #[help]
        help: String,
    },

    #[error("`baseline` compares the query with itself")]
    #[diagnostic(
        code(ktplay::check::no_baseline),
        help("the baseline is the same query with every `${{C.to}}` read as `${{C.from}}`; name the new version in the query, like `version=\"${{gateway.to}}\"`")
    )]
    NoBaseline {
        #[label("a baseline")]
        span: SourceSpan,
        #[label("no `${{C.to}}` in this query")]
        query: SourceSpan,
    },

    #[error("invalid matrix `{name}`: {reason}")]
    #[diagnostic(code(ktplay::check::bad_matrix))]
    BadMatrix {
        name: String,
        reason: String,
        #[label("here")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("matrix `{name}` shadows the built-in matrix of the same name")]
    #[diagnostic(
        code(ktplay::check::shadowed_matrix),
        severity(Warning),
        help("this declaration is used instead of the built-in `{name}`; rename it if both are meant")
    )]
    ShadowedMatrix {
        name: String,
        #[label("shadows the built-in")]
        span: SourceSpan,
    },

    #[error("the file holds no playbook and no matrix")]
    #[diagnostic(
        code(ktplay::check::empty_file),
        severity(Warning),
        help("a .ktplay file holds `use`, `matrix` and `playbook` items")
    )]
    EmptyFile {
        #[label("empty")]
        span: SourceSpan,
    },

    #[error("monitor `{name}` would send {rate}")]
    #[diagnostic(code(ktplay::check::monitor_rate))]
    MonitorRate {
        name: String,
        rate: String,
        #[label("too fast")]
        span: SourceSpan,
        #[help]
        help: String,
    },

    #[error("monitor `{name}`: {reason}")]
    #[diagnostic(code(ktplay::check::monitor_budget), severity(Warning))]
    MonitorBudget {
        name: String,
        reason: String,
        #[label("this budget")]
        span: SourceSpan,
        #[help]
        help: String,
    },
}
