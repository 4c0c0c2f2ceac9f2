//! The compatibility matrix and the abstract-run model checker.
//!
//! Programs are built with a small builder that also writes a playbook-like text, so each
//! statement has a real span and the rendered diagnostics (miette, no colour, width 80) show the
//! line they point at.

use std::collections::{BTreeMap, BTreeSet};

use ktplay::matrix::{self, Matrix, Rule, State, StateFinding, Status, Verdict};
use ktplay::model::{
    self, Component, FindingKind, OnFailure, Op, Program, RollbackSpec, Stage, Stmt,
};
use ktplay::span::{FileId, Span, Spanned};
use ktplay::version::{Version, VersionPattern, VersionRange};
use miette::{GraphicalReportHandler, GraphicalTheme, NamedSource};

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn set(vs: &[&str]) -> BTreeSet<Version> {
    vs.iter().map(|s| v(s)).collect()
}

// ---- builder ----

struct B {
    text: String,
    p: Program,
}

/// One statement for the builder: the op and its text (the text of nested guards is generated).
enum S<'a> {
    Rolling(usize, &'a str),
    Canary(usize, &'a str, usize),
    BlueGreen(usize, &'a str, usize),
    Undo(usize),
    UndoRev(usize, u32),
    Restart(usize),
    Guard,
    Approve,
    Pause,
}

impl B {
    fn new() -> B {
        B {
            text: String::new(),
            p: Program {
                components: Vec::new(),
                stages: Vec::new(),
                on_failure: OnFailure::Rollback,
            },
        }
    }

    fn span(&self, start: usize) -> Span {
        Span::new(FileId(0), start, self.text.len())
    }

    fn line(&mut self, indent: usize, s: &str) -> Span {
        self.text.push_str(&"  ".repeat(indent));
        let start = self.text.len();
        self.text.push_str(s);
        let span = self.span(start);
        self.text.push('\n');
        span
    }

    fn comp_full(&mut self, name: &str, from: &str, to: &str, fo: bool, bg: bool) -> usize {
        let extra = match (fo, bg) {
            (true, _) => " migrations forward_only",
            (_, true) => " blue_green",
            _ => "",
        };
        let span = self.line(
            0,
            &format!("component {name} {{ from {from} to {to}{extra} }}"),
        );
        self.p.components.push(Component {
            name: name.into(),
            role: None,
            from: v(from),
            to: v(to),
            forward_only: fo,
            blue_green: bg,
            span,
        });
        self.p.components.len() - 1
    }

    fn comp(&mut self, name: &str, from: &str, to: &str) -> usize {
        self.comp_full(name, from, to, false, false)
    }

    fn name(&self, c: usize) -> String {
        self.p.components[c].name.clone()
    }

    fn stmt(&mut self, indent: usize, s: &S<'_>) -> Stmt {
        let (text, op) = match *s {
            S::Rolling(c, to) => (
                format!("rolling {} to {to}", self.name(c)),
                Op::Rolling { comp: c, to: v(to) },
            ),
            S::Canary(c, to, _) => (
                format!("canary {} to {to} weight 10% {{", self.name(c)),
                Op::Canary {
                    comp: c,
                    to: v(to),
                    guards: vec![],
                },
            ),
            S::BlueGreen(c, to, _) => (
                format!("blue_green {} to {to} {{", self.name(c)),
                Op::BlueGreen {
                    comp: c,
                    to: v(to),
                    guards: vec![],
                },
            ),
            S::Undo(c) => (
                format!("undo {}", self.name(c)),
                Op::Undo {
                    comp: c,
                    revision: None,
                },
            ),
            S::UndoRev(c, n) => (
                format!("undo {} to revision {n}", self.name(c)),
                Op::Undo {
                    comp: c,
                    revision: Some(n),
                },
            ),
            S::Restart(c) => (format!("restart {}", self.name(c)), Op::Restart { comp: c }),
            S::Guard => (
                "guard http GET \"${url}/readyz\" expect 200".into(),
                Op::Guard,
            ),
            S::Approve => ("approve \"go?\"".into(), Op::Approve),
            S::Pause => ("pause 30s".into(), Op::Pause),
        };
        let span = self.line(indent, &text);
        let mut op = op;
        if let S::Canary(_, _, n) | S::BlueGreen(_, _, n) = *s {
            let gs: Vec<Stmt> = (0..n).map(|_| self.stmt(indent + 1, &S::Guard)).collect();
            self.line(indent, "}");
            match &mut op {
                Op::Canary { guards, .. } | Op::BlueGreen { guards, .. } => *guards = gs,
                _ => unreachable!(),
            }
        }
        Stmt { span, op }
    }

    fn stage_with(&mut self, name: &str, stmts: &[S<'_>], rollback: Option<Option<&[S<'_>]>>) {
        let span = self.line(0, &format!("stage {name} {{"));
        let stmts: Vec<Stmt> = stmts.iter().map(|s| self.stmt(1, s)).collect();
        let rollback = match rollback {
            None => RollbackSpec::Implicit,
            Some(None) => RollbackSpec::None(self.line(1, "rollback none")),
            Some(Some(block)) => {
                let start = self.text.len() + 2;
                self.line(1, "rollback {");
                let b: Vec<Stmt> = block.iter().map(|s| self.stmt(2, s)).collect();
                self.line(1, "}");
                RollbackSpec::Block(b, Span::new(FileId(0), start, self.text.len() - 1))
            }
        };
        self.line(0, "}");
        self.p.stages.push(Stage {
            name: name.into(),
            span,
            stmts,
            rollback,
        });
    }

    fn stage(&mut self, name: &str, stmts: &[S<'_>]) {
        self.stage_with(name, stmts, None)
    }

    fn render(&self, m: &Matrix) -> String {
        let handler =
            GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_width(80);
        let mut out = String::new();
        for p in model::check(&self.p, m) {
            let report = miette::Report::new_boxed(p.inner)
                .with_source_code(NamedSource::new("test.ktplay", self.text.clone()));
            handler.render_report(&mut out, report.as_ref()).unwrap();
            out.push('\n');
        }
        out
    }

    fn codes(&self, m: &Matrix) -> Vec<String> {
        model::check(&self.p, m).iter().map(|p| p.code()).collect()
    }
}

/// The reference system: api, gateway, console (blue-green), workers.
fn reference_components(b: &mut B) -> (usize, usize, usize, usize) {
    let api = b.comp("api", "1.4.2", "1.5.0");
    let gw = b.comp("gateway", "1.4.1", "1.5.0");
    let console = b.comp_full("console", "1.4.0", "1.5.0", false, true);
    let workers = b.comp("workers", "1.4.0", "1.5.0");
    (api, gw, console, workers)
}

fn reference() -> B {
    let mut b = B::new();
    let (api, gw, console, workers) = reference_components(&mut b);
    b.stage("preflight", &[S::Approve, S::Guard, S::Guard]);
    b.stage("api", &[S::Rolling(api, "1.5.0"), S::Guard, S::Guard]);
    b.stage_with(
        "gateways",
        &[S::Canary(gw, "1.5.0", 1), S::Rolling(gw, "1.5.0"), S::Guard],
        Some(Some(&[S::Undo(gw)])),
    );
    b.stage("console", &[S::BlueGreen(console, "1.5.0", 2)]);
    b.stage("workers", &[S::Rolling(workers, "1.5.0"), S::Guard]);
    b
}

// ---- matrix ----

#[test]
fn builtin_matrix_is_the_reference_table() {
    let m = matrix::keeptrusts();
    assert_eq!(m.hub, "api");
    assert_eq!(m.order, ["api", "gateway", "console", "workers"]);
    assert_eq!(m.columns(), ["gateway", "console", "workers"]);
    assert_eq!(m.row_for(&v("1.5.3")).unwrap().status, Status::Current);
    assert_eq!(m.row_for(&v("1.4.0")).unwrap().status, Status::Supported);
    assert_eq!(m.status_of(&v("1.3.9")), Some(Status::Eol));
    assert!(m.row_for(&v("1.6.0")).is_none());
    assert_eq!(
        m.verdict("gateway", &v("1.4.1"), &v("1.5.0")),
        Verdict::Allowed
    );
    assert_eq!(
        m.verdict("console", &v("1.3.0"), &v("1.4.2")),
        Verdict::Allowed
    );
    assert_eq!(
        m.verdict("gateway", &v("1.3.4"), &v("1.5.0")),
        Verdict::Forbidden {
            row: Some(0),
            allowed: Some(VersionRange {
                low: VersionPattern::parse("1.4.x").unwrap(),
                high: VersionPattern::parse("1.5.x").unwrap()
            })
        }
    );
    assert_eq!(
        m.verdict("workers", &v("1.5.0"), &v("1.4.2")),
        Verdict::Forbidden {
            row: Some(1),
            allowed: m.rows[1].allowed("workers").cloned()
        }
    );
    assert_eq!(
        m.verdict("gateway", &v("1.5.0"), &v("1.6.0")),
        Verdict::NoRow
    );
    // Roles outside the matrix, and the hub against itself, are not checked.
    assert_eq!(
        m.verdict("billing", &v("9.0.0"), &v("1.5.0")),
        Verdict::Allowed
    );
    assert_eq!(m.verdict("api", &v("1.0.0"), &v("1.5.0")), Verdict::Allowed);
    // Pre-releases belong to the minor they are written under.
    assert_eq!(
        m.verdict("gateway", &v("1.5.0-rc.1"), &v("1.5.0")),
        Verdict::Allowed
    );
    assert_eq!(m.status_of(&v("1.5.0-rc.2")), Some(Status::Current));
}

fn rule_matrix() -> Matrix {
    Matrix {
        name: "rule-based".into(),
        hub: "api".into(),
        order: vec![],
        rows: vec![],
        rule: Some(Rule::AdjacentMinor),
        span: Some(Span::default()),
    }
}

#[test]
fn adjacent_minor_rule() {
    let m = rule_matrix();
    assert!(m.is_column("anything") && !m.is_column("api"));
    assert!(m.columns().is_empty());
    let ok = |peer: &str, hub: &str| m.verdict("gw", &v(peer), &v(hub)) == Verdict::Allowed;
    assert!(ok("2.7.0", "2.8.1") && ok("2.8.9", "2.8.1") && ok("2.8.0-rc.1", "2.8.0"));
    assert!(!ok("2.6.9", "2.8.1") && !ok("2.9.0", "2.8.1") && !ok("1.8.0", "2.8.1"));
    // Minor 0 allows only minor 0 of the same major.
    assert!(ok("3.0.5", "3.0.0") && !ok("2.9.0", "3.0.0"));
    assert!(m.covers(&v("99.1.0")));
    assert_eq!(m.status_of(&v("2.8.1")), None);
}

#[test]
fn rows_first_then_rule_and_silent_rows_forbid() {
    let mut m = matrix::keeptrusts();
    // A row that does not name a column allows none of it.
    m.rows[0].peers.retain(|(c, _)| c.node != "workers");
    assert_eq!(
        m.verdict("workers", &v("1.5.0"), &v("1.5.0")),
        Verdict::Forbidden {
            row: Some(0),
            allowed: None
        }
    );
    assert!(m.is_column("workers"));
    // Rows win; the rule covers versions no row matches.
    m.rule = Some(Rule::AdjacentMinor);
    assert_eq!(
        m.verdict("gateway", &v("1.6.0"), &v("1.6.2")),
        Verdict::Allowed
    );
    assert!(matches!(
        m.verdict("gateway", &v("1.4.0"), &v("1.6.2")),
        Verdict::Forbidden { row: None, .. }
    ));
    // First matching row wins.
    m.rows.insert(
        0,
        matrix::Row {
            hub: VersionPattern::parse("1.5.7").unwrap(),
            status: Status::Eol,
            peers: vec![(
                Spanned::new("gateway".into(), Span::default()),
                VersionRange::single(VersionPattern::parse("1.5.x").unwrap()),
            )],
            span: Span::default(),
        },
    );
    assert_eq!(m.status_of(&v("1.5.7")), Some(Status::Eol));
    assert!(!m
        .verdict("gateway", &v("1.4.0"), &v("1.5.7"))
        .eq(&Verdict::Allowed));
    assert_eq!(
        m.verdict("gateway", &v("1.4.0"), &v("1.5.6")),
        Verdict::Allowed
    );
}

#[test]
fn check_state_reports_every_pair_no_row_and_eol() {
    let m = matrix::keeptrusts();
    let mut s = State::new();
    s.insert("api".into(), set(&["1.3.4", "1.5.0"]));
    s.insert("gw-east".into(), set(&["1.3.1"]));
    s.insert("billing".into(), set(&["0.1.0"]));
    let roles: BTreeMap<String, String> = [("gw-east".into(), "gateway".into())].into();
    let f = m.check_state(&s, &roles);
    assert_eq!(
        f,
        vec![
            StateFinding::Eol {
                hub: "api".into(),
                version: v("1.3.4"),
                row: 2
            },
            StateFinding::Incompatible {
                hub: "api".into(),
                hub_version: v("1.5.0"),
                peer: "gw-east".into(),
                peer_version: v("1.3.1"),
                row: Some(0),
                allowed: m.rows[0].allowed("gateway").cloned(),
            },
        ]
    );
    assert!(!f[0].is_error() && f[1].is_error());
    s.insert("api".into(), set(&["1.6.2"]));
    assert_eq!(
        m.check_state(&s, &roles),
        vec![StateFinding::NoRow {
            hub: "api".into(),
            version: v("1.6.2")
        }]
    );
    assert_eq!(
        matrix::format_state(&s),
        "api {1.6.2} × billing {0.1.0} × gw-east {1.3.1}"
    );
}

#[test]
fn render_table_snapshots() {
    insta::assert_snapshot!(
        "table_keeptrusts",
        matrix::render_table(&matrix::keeptrusts())
    );
    insta::assert_snapshot!("table_rule", matrix::render_table(&rule_matrix()));
}

#[test]
fn explain_snapshots() {
    let m = matrix::keeptrusts();
    let mut s = State::new();
    s.insert("api".into(), set(&["1.5.0"]));
    s.insert("gateway".into(), set(&["1.4.1", "1.5.0"]));
    s.insert("console".into(), set(&["1.4.0"]));
    let (ok, text) = matrix::explain(&m, &s);
    assert!(ok);
    insta::assert_snapshot!("explain_allowed", text);

    s.insert("api".into(), set(&["1.4.2", "1.5.0"]));
    s.insert("billing".into(), set(&["3.0.0"]));
    let (ok, text) = matrix::explain(&m, &s);
    assert!(!ok);
    insta::assert_snapshot!("explain_forbidden", text);

    s.insert("api".into(), set(&["1.3.0", "1.7.1"]));
    let (ok, text) = matrix::explain(&m, &s);
    assert!(!ok);
    insta::assert_snapshot!("explain_eol_and_no_row", text);
}

// ---- the model ----

#[test]
fn reference_order_passes_cleanly() {
    let b = reference();
    let a = model::analyse(&b.p, &matrix::keeptrusts());
    assert!(a.findings.is_empty(), "{:#?}", a.findings);
    // preflight 3, api 3, gateways canary+guard+rolling+guard, console bg+2, workers 2
    assert_eq!(a.failure_points, 3 + 3 + 4 + 3 + 2);
    // And with the console's colours rolled back by a custom block too.
    let mut b = reference();
    b.p.stages[3].rollback = RollbackSpec::Block(
        vec![Stmt {
            span: b.p.stages[3].span,
            op: Op::Undo {
                comp: 2,
                revision: None,
            },
        }],
        b.p.stages[3].span,
    );
    assert!(model::check(&b.p, &matrix::keeptrusts()).is_empty());
}

#[test]
fn gateway_upgraded_before_the_api() {
    let mut b = B::new();
    let (api, gw, _, _) = reference_components(&mut b);
    b.stage("gateways", &[S::Rolling(gw, "1.5.0"), S::Guard]);
    b.stage("api", &[S::Rolling(api, "1.5.0"), S::Guard]);
    let m = matrix::keeptrusts();
    insta::assert_snapshot!("gateway_before_api", b.render(&m));
    assert_eq!(
        b.codes(&m),
        ["ktplay::compat::incompatible", "ktplay::compat::order"]
    );
    let a = model::analyse(&b.p, &m);
    assert!(a.findings[0].forward);
    assert_eq!(
        a.findings[0].help,
        "upgrade api before gateway: move stage `gateways` after stage `api`"
    );
}

#[test]
fn api_skipping_a_minor() {
    let mut b = B::new();
    let api = b.comp("api", "1.3.4", "1.5.0");
    let gw = b.comp("gateway", "1.3.2", "1.5.0");
    b.stage("api", &[S::Rolling(api, "1.5.0"), S::Guard]);
    b.stage("gateways", &[S::Rolling(gw, "1.5.0"), S::Guard]);
    let m = matrix::keeptrusts();
    let a = model::analyse(&b.p, &m);
    let errs: Vec<_> = a.findings.iter().filter(|f| f.kind.is_error()).collect();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0]
        .message
        .starts_with("api {1.3.4, 1.5.0} × gateway {1.3.2} is not allowed: row `api 1.5.x`"));
    assert!(
        errs[0].help.starts_with("upgrade through 1.4.x first"),
        "{}",
        errs[0].help
    );
    // The rollback of the gateway stage after its guard fails brings gateway 1.3.2 back beside
    // api 1.5.0: counted on the forward finding, not reported again.
    assert!(errs[0].forward && errs[0].failure_points == 1);
    insta::assert_snapshot!("api_skips_a_minor", b.render(&m));
}

#[test]
fn gateway_canary_ahead_of_the_api() {
    let mut b = B::new();
    let (api, gw, _, _) = reference_components(&mut b);
    b.stage("gateways", &[S::Canary(gw, "1.5.0", 2)]);
    b.stage("api", &[S::Rolling(api, "1.5.0")]);
    let m = matrix::keeptrusts();
    let a = model::analyse(&b.p, &m);
    let f = &a.findings[0];
    assert_eq!(f.kind.code(), "ktplay::compat::incompatible");
    assert_eq!(
        &b.text[f.span.range()],
        "canary gateway to 1.5.0 weight 10% {"
    );
    assert!(f.forward);
    insta::assert_snapshot!("gateway_canary_ahead", b.render(&m));
}

#[test]
fn custom_rollback_block_rolls_api_back_before_gateways() {
    let mut b = B::new();
    let (api, gw, _, _) = reference_components(&mut b);
    b.stage("api", &[S::Rolling(api, "1.5.0")]);
    b.stage_with(
        "gateways",
        &[S::Rolling(gw, "1.5.0"), S::Guard, S::Guard],
        Some(Some(&[S::Undo(api), S::Undo(gw)])),
    );
    let m = matrix::keeptrusts();
    let a = model::analyse(&b.p, &m);
    assert_eq!(a.findings.len(), 1, "{:#?}", a.findings);
    let f = &a.findings[0];
    assert_eq!(&b.text[f.span.range()], "undo api");
    assert!(!f.forward);
    assert_eq!(f.failure_points, 3);
    assert!(f
        .help
        .starts_with("roll back in the opposite order: roll gateway back before api"));
    insta::assert_snapshot!("rollback_block_wrong_order", b.render(&m));

    // The opposite order is fine.
    let mut b = B::new();
    let (api, gw, _, _) = reference_components(&mut b);
    b.stage("api", &[S::Rolling(api, "1.5.0")]);
    b.stage_with(
        "gateways",
        &[S::Rolling(gw, "1.5.0"), S::Guard],
        Some(Some(&[S::Undo(gw), S::Undo(api)])),
    );
    assert!(b.codes(&m).is_empty());
}

#[test]
fn forward_only_api_rolled_back() {
    let mut b = reference();
    b.p.components[0].forward_only = true;
    let m = matrix::keeptrusts();
    let a = model::analyse(&b.p, &m);
    assert_eq!(a.findings.len(), 1, "{:#?}", a.findings);
    let f = &a.findings[0];
    assert_eq!(f.kind.code(), "ktplay::compat::forward_only_rollback");
    assert_eq!(&b.text[f.span.range()], "rolling api to 1.5.0");
    // Every failure point from the api's own rollout on.
    assert_eq!(f.failure_points, 3 + 4 + 3 + 2);
    insta::assert_snapshot!("forward_only_rolled_back", b.render(&m));

    // A rollback block that rolls forward to a corrective release is the fix.
    let api = 0;
    let mut fixed = reference();
    fixed.p.components[0].forward_only = true;
    fixed.p.components[0].to = v("1.5.1");
    let span = fixed.p.stages[1].span;
    fixed.p.stages[1].rollback = RollbackSpec::Block(
        vec![Stmt {
            span,
            op: Op::Rolling {
                comp: api,
                to: v("1.5.1"),
            },
        }],
        span,
    );
    assert!(fixed.codes(&m).is_empty(), "{:?}", fixed.codes(&m));

    // A forward `undo` of a forward-only component is a rollback too.
    let mut fwd = B::new();
    let api = fwd.comp_full("api", "1.4.2", "1.5.0", true, false);
    fwd.stage("api", &[S::Rolling(api, "1.5.0"), S::Undo(api)]);
    fwd.p.on_failure = OnFailure::Halt;
    let a = model::analyse(&fwd.p, &m);
    assert_eq!(a.findings.len(), 1);
    assert_eq!(&fwd.text[a.findings[0].span.range()], "undo api");
    assert!(a.findings[0].forward);

    // `rollback none` on the api stage, or halting, leaves the api alone.
    b.p.stages[1].rollback = RollbackSpec::None(b.p.stages[1].span);
    assert!(b.codes(&m).is_empty());
    b.p.stages[1].rollback = RollbackSpec::Implicit;
    b.p.on_failure = OnFailure::Halt;
    assert!(b.codes(&m).is_empty());
}

#[test]
fn an_eol_state() {
    let mut b = B::new();
    let api = b.comp("api", "1.3.4", "1.4.0");
    let gw = b.comp("gateway", "1.3.1", "1.4.0");
    b.stage("api", &[S::Rolling(api, "1.4.0")]);
    b.stage("gateways", &[S::Rolling(gw, "1.4.0")]);
    let m = matrix::keeptrusts();
    let a = model::analyse(&b.p, &m);
    assert!(!a.has_errors());
    // Eol at the start, and again where the api's rollback brings 1.3.4 back (counted on it).
    let codes: Vec<_> = a.findings.iter().map(|f| f.kind.code()).collect();
    assert_eq!(codes, ["ktplay::compat::eol"]);
    assert!(a.findings[0].forward && a.findings[0].failure_points == 1);
    insta::assert_snapshot!("eol_state", b.render(&m));
}

#[test]
fn hub_version_with_no_row() {
    let mut b = B::new();
    let (api, _, _, _) = reference_components(&mut b);
    b.stage("api", &[S::Rolling(api, "1.6.2")]);
    let m = matrix::keeptrusts();
    assert_eq!(b.codes(&m), ["ktplay::compat::no_row"]);
    insta::assert_snapshot!("no_row", b.render(&m));
}

#[test]
fn blue_green_stays_mixed_forward() {
    // The old colour still runs after the switch: api may not leave its minor behind.
    let mut b = B::new();
    let api = b.comp("api", "1.4.2", "1.6.0");
    let console = b.comp_full("console", "1.4.0", "1.5.0", false, true);
    b.stage("api", &[S::Rolling(api, "1.5.0")]);
    b.stage("console", &[S::BlueGreen(console, "1.5.0", 1)]);
    b.stage("api-again", &[S::Rolling(api, "1.6.0")]);
    let mut m = matrix::keeptrusts();
    m.rule = Some(Rule::AdjacentMinor);
    let a = model::analyse(&b.p, &m);
    let f: Vec<_> = a.findings.iter().filter(|f| f.kind.is_error()).collect();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(
        f[0].message.contains("console {1.4.0, 1.5.0}"),
        "{}",
        f[0].message
    );
    assert!(
        f[0].message.contains("not console 1.4.0"),
        "{}",
        f[0].message
    );
}

#[test]
fn halt_checks_the_forward_path_only() {
    let mut b = B::new();
    let api = b.comp("api", "1.3.4", "1.5.0");
    let gw = b.comp("gateway", "1.3.2", "1.5.0");
    b.stage("api", &[S::Rolling(api, "1.5.0")]);
    b.stage("gateways", &[S::Rolling(gw, "1.5.0")]);
    b.p.on_failure = OnFailure::Halt;
    let a = model::analyse(&b.p, &matrix::keeptrusts());
    assert!(a
        .findings
        .iter()
        .all(|f| f.forward && f.failure_points == 0));
}

#[test]
fn many_failure_points_collapse_into_one_diagnostic() {
    let mut b = B::new();
    let (api, gw, _, _) = reference_components(&mut b);
    b.stage("api", &[S::Rolling(api, "1.5.0")]);
    b.stage("gateways", &[S::Rolling(gw, "1.5.0")]);
    b.stage_with(
        "checks",
        &[S::Guard, S::Approve, S::Pause, S::Guard, S::Guard],
        Some(Some(&[S::Undo(api)])),
    );
    let a = model::analyse(&b.p, &matrix::keeptrusts());
    assert_eq!(a.findings.len(), 1, "{:#?}", a.findings);
    assert_eq!(a.findings[0].failure_points, 4);
    assert!(a.findings[0]
        .message
        .ends_with("and from 3 other failure points)"));
}

#[test]
fn undo_outside_rollback_toggles_revisions() {
    let mut b = B::new();
    let api = b.comp("api", "1.4.2", "1.5.1");
    let gw = b.comp("gateway", "1.4.1", "1.4.1");
    b.stage(
        "api",
        &[
            S::Rolling(api, "1.5.0"),
            S::Rolling(api, "1.5.1"),
            S::Undo(api),
            S::Undo(api),
            S::Restart(gw),
        ],
    );
    let trace = model::trace(&b.p);
    let api_after: Vec<BTreeSet<Version>> = trace
        .iter()
        .map(|t| {
            t.states
                .last()
                .map(|s| s["api"].clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        api_after,
        [
            set(&["1.5.0"]),
            set(&["1.5.1"]),
            set(&["1.5.0"]),
            set(&["1.5.1"]),
            set(&[])
        ]
    );
    assert_eq!(trace[2].states[0]["api"], set(&["1.5.0", "1.5.1"]));
    assert!(model::check(&b.p, &matrix::keeptrusts()).is_empty());

    // The model agrees: toggling back to 1.5.0 and failing there is checked too. A matrix
    // that forbids gateway 1.4.1 beside api 1.5.0 exactly, but not 1.5.1, finds the undo.
    let mut m = matrix::keeptrusts();
    m.rows.insert(
        0,
        matrix::Row {
            hub: VersionPattern::parse("1.5.0").unwrap(),
            status: Status::Current,
            peers: vec![(
                Spanned::new("gateway".into(), Span::default()),
                VersionRange::single(VersionPattern::parse("1.5.x").unwrap()),
            )],
            span: Span::default(),
        },
    );
    let a = model::analyse(&b.p, &m);
    let spans: Vec<&str> = a
        .findings
        .iter()
        .filter(|f| f.forward)
        .map(|f| &b.text[f.span.range()])
        .collect();
    assert_eq!(spans, ["rolling api to 1.5.0", "undo api"]);
}

#[test]
fn undo_that_the_model_cannot_know_warns() {
    let mut b = B::new();
    let api = b.comp("api", "1.4.2", "1.5.0");
    b.stage("api", &[S::Undo(api), S::UndoRev(api, 3)]);
    let m = matrix::keeptrusts();
    assert_eq!(
        b.codes(&m),
        [
            "ktplay::compat::unmodelled_undo",
            "ktplay::compat::unmodelled_undo"
        ]
    );
    insta::assert_snapshot!("unmodelled_undo", b.render(&m));
}

#[test]
fn roles_put_components_under_matrix_columns() {
    let mut b = B::new();
    let api = b.comp("api", "1.4.2", "1.5.0");
    let east = b.comp("gw-east", "1.4.1", "1.5.0");
    let other = b.comp("billing", "0.1.0", "9.0.0");
    b.p.components[east].role = Some("gateway".into());
    b.stage("gateways", &[S::Rolling(east, "1.5.0")]);
    b.stage("api", &[S::Rolling(api, "1.5.0")]);
    b.stage("billing", &[S::Rolling(other, "9.0.0")]);
    let a = model::analyse(&b.p, &matrix::keeptrusts());
    let codes: Vec<_> = a.findings.iter().map(|f| f.kind.code()).collect();
    assert_eq!(
        codes,
        ["ktplay::compat::incompatible", "ktplay::compat::order"]
    );
    assert!(a.findings[0].message.contains("gw-east {1.4.1, 1.5.0}"));
}

#[test]
fn live_step_api_agrees_with_the_model() {
    let b = reference();
    let live = b.p.initial_state();
    let op = &b.p.stages[2].stmts[0].op; // canary gateway
    let states = model::forward_states(&b.p, &live, op);
    assert_eq!(states.len(), 2);
    assert_eq!(states[0]["gateway"], set(&["1.4.1", "1.5.0"]));
    assert_eq!(states[1]["gateway"], set(&["1.5.0"]));
    let m = matrix::keeptrusts();
    // Gateway 1.5.0 beside the live api 1.4.2 is refused before the action.
    assert!(m
        .check_state(&states[0], &b.p.roles())
        .iter()
        .any(|f| f.is_error()));
    let bg = model::forward_states(&b.p, &live, &b.p.stages[3].stmts[0].op);
    assert_eq!(bg.len(), 1);
    assert_eq!(bg[0]["console"], set(&["1.4.0", "1.5.0"]));
    let back = model::restore_states(&states[1], "gateway", &set(&["1.4.1"]));
    assert_eq!(back.len(), 2);
    assert_eq!(back[0]["gateway"], set(&["1.4.1", "1.5.0"]));
    assert_eq!(back[1]["gateway"], set(&["1.4.1"]));
    assert!(model::restore_states(&live, "gateway", &set(&["1.4.1"])).is_empty());
    assert!(model::forward_states(&b.p, &live, &Op::Guard).is_empty());
}

#[test]
fn trace_of_the_reference_playbook() {
    let b = reference();
    let lines: Vec<String> = model::trace(&b.p)
        .iter()
        .map(|t| {
            let states: Vec<String> = t.states.iter().map(matrix::format_state).collect();
            format!(
                "{:<10} {:<40} {}",
                b.p.stages[t.stage].name,
                &b.text[t.span.range()],
                states.join(" → ")
            )
            .trim_end()
            .to_string()
        })
        .collect();
    insta::assert_snapshot!("trace_reference", lines.join("\n"));
}

// ---- property: the checker's verdict equals a brute-force enumeration of the states ----

mod brute_force {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 4] = ["api", "gateway", "console", "workers"];

    /// The keeptrusts table written down independently: api 1.m allows peers 1.(m-1) ..= 1.m for
    /// m in 3..=5; other api minors have no row (a different finding, not an incompatibility).
    fn forbidden(api: &Version, peer: &Version) -> bool {
        matches!(api.minor, 3..=5) && !(api.minor - 1..=api.minor).contains(&peer.minor)
    }

    type St = Vec<BTreeSet<Version>>;

    fn pairs(s: &St, out: &mut BTreeSet<(Version, usize, Version)>) {
        for hv in &s[0] {
            for (p, pvs) in s.iter().enumerate().skip(1) {
                for pv in pvs {
                    if forbidden(hv, pv) {
                        out.insert((hv.clone(), p, pv.clone()));
                    }
                }
            }
        }
    }

    /// (component, kind 0 rolling / 1 canary / 2 blue-green, target, stage it belongs to)
    type Action = (usize, u8, Version, usize);

    /// Every state the run and every rollback path passes through, enumerated directly: a failure
    /// during any action (or its guards, in the same state) restores every earlier-or-current
    /// action's previous set, newest first, skipping stages with `rollback none`.
    fn reference(
        from: &[Version],
        actions: &[Action],
        none: &[bool],
        halt: bool,
    ) -> BTreeSet<(Version, usize, Version)> {
        let mut out = BTreeSet::new();
        let mut s: St = from.iter().map(|v| BTreeSet::from([v.clone()])).collect();
        pairs(&s, &mut out);
        let mut prevs: Vec<(usize, BTreeSet<Version>, usize)> = Vec::new();
        for (c, kind, to, stage) in actions {
            let prev = s[*c].clone();
            s[*c].insert(to.clone());
            pairs(&s, &mut out);
            prevs.push((*c, prev, *stage));
            if !halt {
                let mut r = s.clone();
                for (c, p, stage) in prevs.iter().rev() {
                    if none[*stage] {
                        continue;
                    }
                    r[*c].extend(p.iter().cloned());
                    pairs(&r, &mut out);
                    r[*c] = p.clone();
                    pairs(&r, &mut out);
                }
            }
            if *kind != 2 {
                s[*c] = BTreeSet::from([to.clone()]);
                pairs(&s, &mut out);
            }
        }
        out
    }

    fn version() -> impl Strategy<Value = Version> {
        (2u64..=6, 0u64..=2).prop_map(|(m, p)| Version::new(1, m, p))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn verdict_equals_brute_force(
            from in proptest::collection::vec(version(), 4),
            raw in proptest::collection::vec(
                (0usize..4, 0u8..3, version(), proptest::bool::weighted(0.7)),
                1..8,
            ),
            none in proptest::collection::vec(proptest::bool::weighted(0.15), 8),
            halt in proptest::bool::weighted(0.15),
        ) {
            // Group the actions into stages: a new stage starts where the flag says so.
            let mut actions: Vec<Action> = Vec::new();
            for (i, (c, kind, to, new_stage)) in raw.into_iter().enumerate() {
                let stage = match actions.last() {
                    Some(last) if !new_stage || i == 0 => last.3,
                    Some(last) => last.3 + 1,
                    None => 0,
                };
                actions.push((c, kind, to, stage));
            }
            let mut b = B::new();
            for (i, name) in NAMES.iter().enumerate() {
                let f = from[i].to_string();
                b.comp(name, &f, &f);
            }
            let stages = actions.last().unwrap().3 + 1;
            for (k, &none_k) in none.iter().enumerate().take(stages) {
                let tos: Vec<(usize, u8, String)> = actions
                    .iter()
                    .filter(|a| a.3 == k)
                    .map(|(c, kind, to, _)| (*c, *kind, to.to_string()))
                    .collect();
                let stmts: Vec<S<'_>> = tos
                    .iter()
                    .map(|(c, kind, to)| match kind {
                        0 => S::Rolling(*c, to),
                        1 => S::Canary(*c, to, 1),
                        _ => S::BlueGreen(*c, to, 1),
                    })
                    .collect();
                b.stage_with(&format!("s{k}"), &stmts, none_k.then_some(None));
            }
            if halt {
                b.p.on_failure = OnFailure::Halt;
            }
            let want = reference(&from, &actions, &none, halt);
            let m = matrix::keeptrusts();
            let got: BTreeSet<(Version, usize, Version)> = model::analyse(&b.p, &m)
                .findings
                .into_iter()
                .filter_map(|f| match f.kind {
                    FindingKind::Incompatible { hub_version, peer, peer_version, .. } => Some((
                        hub_version,
                        NAMES.iter().position(|n| *n == peer).unwrap(),
                        peer_version,
                    )),
                    _ => None,
                })
                .collect();
            let verdict = model::check(&b.p, &m)
                .iter()
                .any(|p| p.code() == "ktplay::compat::incompatible");
            prop_assert_eq!(verdict, !want.is_empty());
            prop_assert_eq!(got, want);
        }
    }
}
