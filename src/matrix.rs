//! Compatibility matrices: which versions of the other components the hub supports.
//!
//! A matrix names one *hub* role (the API in the reference system) and, for each hub version, the
//! range of versions every other role (a *column*) may run beside it. Rows are tried in order and
//! the first whose hub pattern matches wins; `rule adjacent_minor` instead allows, for any hub
//! version `X.Y.*`, every other role at `X.(Y-1).x - X.Y.x`. A matrix with rows and a rule uses the
//! rule for hub versions no row matches.
//!
//! A [`State`] maps each component to the *set* of versions it runs (a rolling update is
//! `{1.4.1, 1.5.0}`). A state is allowed when every version of every hub component is allowed
//! beside every version of every component whose role is a column (with a rule, every role but the
//! hub's is a column). Components whose role is neither the hub nor a column are not checked.
//!
//! Rules about specific cases, on purpose:
//! - A row that does not name a column allows *no* version of it: the matrix must say a pair is
//!   compatible, silence is not consent.
//! - Two components with the hub's role are not checked against each other.
//! - Pre-release versions belong to the minor they are written under (see [`crate::version`]):
//!   `1.5.0-rc.1` is a 1.5.x version for rows and for the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::span::{Span, Spanned};
use crate::version::{Version, VersionPattern, VersionRange};

/// Each component (by name, or by role in [`Matrix::explain`]) and the set of versions it runs.
pub type State = BTreeMap<String, BTreeSet<Version>>;

/// Support status of a hub row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Current,
    Supported,
    /// End of life: a state with such a hub version is a warning, not an error.
    Eol,
}

impl Status {
    /// The keyword as written in a matrix row.
    pub fn keyword(self) -> &'static str {
        match self {
            Status::Current => "current",
            Status::Supported => "supported",
            Status::Eol => "eol",
        }
    }

    /// `current`, `supported` or `eol`.
    pub fn from_keyword(word: &str) -> Option<Status> {
        match word {
            "current" => Some(Status::Current),
            "supported" => Some(Status::Supported),
            "eol" => Some(Status::Eol),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// `api 1.5.x current { gateway 1.4.x - 1.5.x … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The hub versions this row is about.
    pub hub: VersionPattern,
    pub status: Status,
    /// Column (a role) and the versions it may run beside a hub version of this row.
    pub peers: Vec<(Spanned<String>, VersionRange)>,
    pub span: Span,
}

impl Row {
    /// The range this row allows for `role`; `None` when the row does not name it.
    pub fn allowed(&self, role: &str) -> Option<&VersionRange> {
        self.peers
            .iter()
            .find(|(c, _)| c.node == role)
            .map(|(_, r)| r)
    }
}

/// A matrix given by a rule instead of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Any hub version `X.Y.*` allows every other role at `X.(Y-1).x - X.Y.x` (`X.0.x` for `Y = 0`).
    AdjacentMinor,
}

impl Rule {
    pub fn keyword(self) -> &'static str {
        match self {
            Rule::AdjacentMinor => "adjacent_minor",
        }
    }

    pub fn from_keyword(word: &str) -> Option<Rule> {
        match word {
            "adjacent_minor" => Some(Rule::AdjacentMinor),
            _ => None,
        }
    }

    /// The range of peer versions the rule allows beside `hub`.
    pub fn allowed(self, hub: &Version) -> VersionRange {
        match self {
            Rule::AdjacentMinor => VersionRange {
                low: VersionPattern::Minor(hub.major, hub.minor.saturating_sub(1)),
                high: VersionPattern::Minor(hub.major, hub.minor),
            },
        }
    }
}

/// A compatibility matrix, declared in a file or built in ([`keeptrusts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub name: String,
    /// The role every other one is checked against.
    pub hub: String,
    /// The recommended upgrade order (roles); used for a warning only. May be empty.
    pub order: Vec<String>,
    pub rows: Vec<Row>,
    pub rule: Option<Rule>,
    /// Where it was declared; `None` for the built-in matrix.
    pub span: Option<Span>,
}

/// What a matrix says about one hub version beside one peer version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// `row` is the index of the deciding row (`None`: the rule decided); `allowed` is what it
    /// allows for that role (`None`: the row does not name the role at all).
    Forbidden {
        row: Option<usize>,
        allowed: Option<VersionRange>,
    },
    /// No row matches the hub version and there is no rule.
    NoRow,
}

/// One thing wrong with a [`State`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateFinding {
    /// `peer` at `peer_version` may not run beside `hub` at `hub_version`.
    Incompatible {
        hub: String,
        hub_version: Version,
        peer: String,
        peer_version: Version,
        row: Option<usize>,
        allowed: Option<VersionRange>,
    },
    /// The hub runs a version no row covers.
    NoRow { hub: String, version: Version },
    /// The hub runs a version whose row is end of life (a warning).
    Eol {
        hub: String,
        version: Version,
        row: usize,
    },
}

impl StateFinding {
    /// Errors are `Incompatible` and `NoRow`; `Eol` is a warning.
    pub fn is_error(&self) -> bool {
        !matches!(self, StateFinding::Eol { .. })
    }
}

fn range(low: &str, high: &str) -> VersionRange {
    VersionRange {
        low: VersionPattern::parse(low).expect("built-in pattern"),
        high: VersionPattern::parse(high).expect("built-in pattern"),
    }
}

/// The built-in `keeptrusts` matrix: the table in the language reference, workers alongside.
pub fn keeptrusts() -> Matrix {
    let row = |hub: &str, status: Status, low: &str, high: &str| Row {
        hub: VersionPattern::parse(hub).expect("built-in pattern"),
        status,
        peers: ["gateway", "console", "workers"]
            .iter()
            .map(|c| {
                (
                    Spanned::new(c.to_string(), Span::default()),
                    range(low, high),
                )
            })
            .collect(),
        span: Span::default(),
    };
    Matrix {
        name: "keeptrusts".into(),
        hub: "api".into(),
        order: ["api", "gateway", "console", "workers"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rows: vec![
            row("1.5.x", Status::Current, "1.4.x", "1.5.x"),
            row("1.4.x", Status::Supported, "1.3.x", "1.4.x"),
            row("1.3.x", Status::Eol, "1.2.x", "1.3.x"),
        ],
        rule: None,
        span: None,
    }
}

impl Matrix {
    /// The column roles, in order of first appearance in the rows. A rule matrix has no fixed
    /// columns: every role but the hub's is one (see [`Matrix::is_column`]).
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for row in &self.rows {
            for (c, _) in &row.peers {
                if !out.contains(&c.node.as_str()) {
                    out.push(&c.node);
                }
            }
        }
        out
    }

    /// Is `role` checked against the hub?
    pub fn is_column(&self, role: &str) -> bool {
        role != self.hub
            && (self.rule.is_some() || self.rows.iter().any(|r| r.allowed(role).is_some()))
    }

    /// Does a component with this role take part in the matrix at all?
    pub fn takes_part(&self, role: &str) -> bool {
        role == self.hub || self.is_column(role)
    }

    /// Index of the first row whose hub pattern matches `hub`.
    pub fn row_index_for(&self, hub: &Version) -> Option<usize> {
        self.rows.iter().position(|r| r.hub.matches(hub))
    }

    /// The first row whose hub pattern matches `hub`.
    pub fn row_for(&self, hub: &Version) -> Option<&Row> {
        self.row_index_for(hub).map(|i| &self.rows[i])
    }

    /// Is `hub` covered by a row or the rule?
    pub fn covers(&self, hub: &Version) -> bool {
        self.rule.is_some() || self.row_index_for(hub).is_some()
    }

    /// The status of a hub version: its row's, `None` under the rule or without a row.
    pub fn status_of(&self, hub: &Version) -> Option<Status> {
        self.row_for(hub).map(|r| r.status)
    }

    /// May a component with `role` run `peer` beside the hub running `hub`? Roles that are not
    /// columns (and the hub's own) are always allowed.
    pub fn verdict(&self, role: &str, peer: &Version, hub: &Version) -> Verdict {
        if !self.is_column(role) {
            return Verdict::Allowed;
        }
        match self.row_index_for(hub) {
            Some(i) => match self.rows[i].allowed(role) {
                Some(r) if r.contains(peer) => Verdict::Allowed,
                allowed => Verdict::Forbidden {
                    row: Some(i),
                    allowed: allowed.cloned(),
                },
            },
            None => match self.rule {
                Some(rule) => {
                    let r = rule.allowed(hub);
                    if r.contains(peer) {
                        Verdict::Allowed
                    } else {
                        Verdict::Forbidden {
                            row: None,
                            allowed: Some(r),
                        }
                    }
                }
                None => Verdict::NoRow,
            },
        }
    }

    /// Every finding about one state. `roles` maps a component to its role; a component missing
    /// from it takes part under its own name.
    pub fn check_state(
        &self,
        state: &State,
        roles: &BTreeMap<String, String>,
    ) -> Vec<StateFinding> {
        let role = |c: &String| roles.get(c).unwrap_or(c).clone();
        let mut out = Vec::new();
        for (hub, hub_versions) in state.iter().filter(|(c, _)| role(c) == self.hub) {
            for hv in hub_versions {
                if !self.covers(hv) {
                    out.push(StateFinding::NoRow {
                        hub: hub.clone(),
                        version: hv.clone(),
                    });
                    continue;
                }
                if let Some(i) = self.row_index_for(hv) {
                    if self.rows[i].status == Status::Eol {
                        out.push(StateFinding::Eol {
                            hub: hub.clone(),
                            version: hv.clone(),
                            row: i,
                        });
                    }
                }
                for (peer, peer_versions) in state.iter() {
                    let r = role(peer);
                    for pv in peer_versions {
                        if let Verdict::Forbidden { row, allowed } = self.verdict(&r, pv, hv) {
                            out.push(StateFinding::Incompatible {
                                hub: hub.clone(),
                                hub_version: hv.clone(),
                                peer: peer.clone(),
                                peer_version: pv.clone(),
                                row,
                                allowed,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// How a deciding row reads in a message: ``row `api 1.5.x` `` or ``rule `adjacent_minor` ``.
    pub fn describe_row(&self, row: Option<usize>) -> String {
        match row {
            Some(i) => format!("row `{} {}`", self.hub, self.rows[i].hub),
            None => match self.rule {
                Some(rule) => format!("rule `{}`", rule.keyword()),
                None => "no row".into(),
            },
        }
    }

    /// What the deciding row allows for `role`, as words: `gateway 1.4.x - 1.5.x` or
    /// `no gateway at all`.
    pub fn describe_allowed(role: &str, allowed: &Option<VersionRange>) -> String {
        match allowed {
            Some(r) => format!("{role} {r}"),
            None => format!("no {role} at all"),
        }
    }

    /// The hub versions the matrix covers, for help lines: `1.3.x - 1.5.x`, or the row patterns.
    pub fn covered_hub_versions(&self) -> String {
        if self.rule.is_some() {
            return "any".into();
        }
        let pats: Vec<String> = self.rows.iter().map(|r| r.hub.to_string()).collect();
        pats.join(", ")
    }
}

/// `api {1.5.0} × gateway {1.4.1, 1.5.0}`.
pub fn format_state(state: &State) -> String {
    state
        .iter()
        .map(|(c, vs)| format!("{c} {}", format_set(vs.iter())))
        .collect::<Vec<_>>()
        .join(" × ")
}

/// `{1.4.1, 1.5.0}`.
pub fn format_set<'a>(vs: impl Iterator<Item = &'a Version>) -> String {
    let parts: Vec<String> = vs.map(|v| v.to_string()).collect();
    format!("{{{}}}", parts.join(", "))
}

/// The matrix as an aligned text table, for `ktplay matrix show`.
pub fn render_table(m: &Matrix) -> String {
    let mut out = format!("matrix {} (hub {}", m.name, m.hub);
    if !m.order.is_empty() {
        out.push_str(&format!("; order {}", m.order.join(" ")));
    }
    out.push_str(if m.span.is_none() {
        "; built in)\n"
    } else {
        ")\n"
    });
    if !m.rows.is_empty() {
        let cols = m.columns();
        let mut table: Vec<Vec<String>> = Vec::new();
        let mut head = vec![m.hub.clone()];
        head.extend(cols.iter().map(|c| c.to_string()));
        head.push("status".into());
        table.push(head);
        for row in &m.rows {
            let mut line = vec![row.hub.to_string()];
            for c in &cols {
                line.push(row.allowed(c).map_or("-".into(), |r| r.to_string()));
            }
            line.push(row.status.to_string());
            table.push(line);
        }
        let widths: Vec<usize> = (0..table[0].len())
            .map(|i| {
                table
                    .iter()
                    .map(|l| l[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        out.push('\n');
        for line in &table {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
    }
    if let Some(rule) = m.rule {
        out.push_str(&format!(
            "\nrule {}: any {} version X.Y allows every other component at X.(Y-1).x - X.Y.x{}\n",
            rule.keyword(),
            m.hub,
            if m.rows.is_empty() {
                ""
            } else {
                " (for versions no row covers)"
            }
        ));
    }
    out
}

/// Is this state (keyed by role) allowed, and why: for `ktplay matrix check api=1.5.0
/// gateway=1.4.1,1.5.0`. Says which row permits or forbids each hub × peer pair. End-of-life hub
/// versions are allowed with a warning line.
pub fn explain(m: &Matrix, state: &State) -> (bool, String) {
    let mut ok = true;
    let mut out = String::new();
    let hubs = state.get(&m.hub);
    let peers: Vec<(&String, &BTreeSet<Version>)> =
        state.iter().filter(|(r, _)| m.is_column(r)).collect();
    let mut lines = Vec::new();
    match hubs {
        None => lines.push(format!(
            "no {} version given: nothing to check against",
            m.hub
        )),
        Some(hvs) => {
            for hv in hvs {
                let (row, status) = match m.row_index_for(hv) {
                    Some(i) => (m.describe_row(Some(i)), format!(", {}", m.rows[i].status)),
                    None if m.rule.is_some() => (m.describe_row(None), String::new()),
                    None => {
                        ok = false;
                        lines.push(format!(
                            "{} {hv}: no row covers it (rows: {})",
                            m.hub,
                            m.covered_hub_versions()
                        ));
                        continue;
                    }
                };
                lines.push(format!("{} {hv} ({row}{status}):", m.hub));
                if m.status_of(hv) == Some(Status::Eol) {
                    lines.push(format!("  warning: {} {hv} is end of life", m.hub));
                }
                for (role, pvs) in &peers {
                    for pv in pvs.iter() {
                        match m.verdict(role, pv, hv) {
                            Verdict::Allowed => {
                                let allowed = match m.row_index_for(hv) {
                                    Some(i) => m.rows[i].allowed(role).cloned(),
                                    None => m.rule.map(|r| r.allowed(hv)),
                                };
                                lines.push(format!(
                                    "  {role} {pv}: allowed ({})",
                                    allowed.map_or(String::new(), |r| r.to_string())
                                ));
                            }
                            Verdict::Forbidden { allowed, .. } => {
                                ok = false;
                                lines.push(format!(
                                    "  {role} {pv}: FORBIDDEN ({row} allows {})",
                                    Matrix::describe_allowed(role, &allowed)
                                ));
                            }
                            Verdict::NoRow => unreachable!("covered above"),
                        }
                    }
                }
            }
        }
    }
    for (role, _) in state.iter() {
        if !m.takes_part(role) {
            lines.push(format!("{role}: not in matrix `{}`, not checked", m.name));
        }
    }
    out.push_str(&format!(
        "{}: {}\n",
        format_state(state),
        if ok { "allowed" } else { "NOT allowed" }
    ));
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    (ok, out)
}
