//! `ktplay explain CODE`: what each diagnostic code means, a failing and a fixed example, and
//! whether it can be silenced. One entry per code every stage declares (`code(ktplay::…)`); the
//! test `every_code_has_an_explanation` scans the source and fails on a code without an entry.

use text::{indent, wrap};

/// The explanation of one diagnostic code.
#[derive(Debug)]
pub struct Entry {
    /// The full code, e.g. `ktplay::check::unknown_component`.
    pub code: &'static str,
    /// `true` for codes reported as warnings (they fail `check` only with `--deny-warnings`).
    pub warning: bool,
    /// Where the examples stand, so a test can check them (`tests/ci_formats.rs`).
    pub place: Place,
    /// One line, for the list and for SARIF's rule descriptions.
    pub summary: &'static str,
    /// What it means and why ktplay reports it.
    pub meaning: &'static str,
    /// A playbook excerpt that produces it.
    pub failing: &'static str,
    /// The same excerpt, fixed.
    pub fixed: &'static str,
}

/// Where an entry's examples go in the standard playbook of `tests/ci_formats.rs`, which checks
/// that the failing one reports the code and the fixed one checks cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Statements inside its stage `s`.
    Stage,
    /// Entries of its playbook.
    Playbook,
    /// Items before its playbook, in a file `playbook.ktplay`.
    File,
    /// Not a playbook text (bytes, command lines, run-time failures) or too large to show whole.
    Unverified,
}

impl Entry {
    /// The code without its `ktplay::` prefix (`check::unknown_component`).
    pub fn short(&self) -> &'static str {
        self.code.strip_prefix("ktplay::").unwrap_or(self.code)
    }

    /// How (and whether) the diagnostic can be silenced.
    pub fn silence(&self) -> &'static str {
        if self.code.starts_with("ktplay::hazard::") {
            "A hazard of the live objects, found by `run`'s preflight and `plan --cluster`: \
             printed as a warning, and a refusal (exit 3, before any action) under `--hazards \
             refuse` or KTPLAY_HAZARDS=refuse. `--allow-hazard CODE` (or KTPLAY_ALLOW_HAZARDS) \
             accepts one code: still printed, never refusing."
        } else if self.warning {
            "A warning: `check` still passes (exit 0) unless it runs with `--deny-warnings`. \
             There is no per-line suppression; fix the cause, or leave `--deny-warnings` off."
        } else {
            "An error cannot be silenced: the playbook would not do what it says, so `check`, \
             `plan`, `run` and `rehearse` all refuse it until it is fixed."
        }
    }

    /// The whole explanation, for a terminal.
    pub fn render(&self) -> String {
        let severity = if self.warning { "warning" } else { "error" };
        format!(
            "{code} ({severity})\n\n{summary}\n\n{meaning}\n\nFailing example{place}:\n\n{failing}\n\nFixed:\n\n{fixed}\n\nSilencing: {silence}\n",
            place = match self.place {
                Place::Stage => " (statements of a stage)",
                Place::Playbook => " (entries of a playbook)",
                Place::File => " (items of a file)",
                Place::Unverified => "",
            },
            code = self.code,
            summary = self.summary,
            meaning = wrap(self.meaning),
            failing = indent(self.failing),
            fixed = indent(self.fixed),
            silence = self.silence(),
        )
    }
}

/// The entry of `code`: the full code (`ktplay::check::unknown_component`), without the
/// `ktplay::` prefix (`check::unknown_component`), or the last part alone when it is unique
/// (`unknown_component`).
pub fn find(code: &str) -> Option<&'static Entry> {
    let code = code.trim();
    if let Some(e) = ENTRIES.iter().find(|e| e.code == code || e.short() == code) {
        return Some(e);
    }
    let mut by_name = ENTRIES
        .iter()
        .filter(|e| e.code.rsplit("::").next() == Some(code));
    match (by_name.next(), by_name.next()) {
        (Some(e), None) => Some(e),
        _ => None,
    }
}

/// Every code with its summary, one a line (`ktplay explain` alone).
pub fn list() -> String {
    let width = ENTRIES.iter().map(|e| e.code.len()).max().unwrap_or(0);
    let mut out = String::new();
    for e in ENTRIES {
        let mark = if e.warning { " (warning)" } else { "" };
        out.push_str(&format!("{:width$}  {}{mark}\n", e.code, e.summary));
    }
    out
}

mod entries;
mod text;

mod entries_back;

/// Every code ktplay reports, grouped by the stage that reports it: the parser's and the
/// checker's, then the model's, the scripts', the runner's and the hazards'.
pub static ENTRIES: Entries = Entries(&[entries::FRONT, entries_back::BACK]);

/// The table of [`Entry`]s, kept in two files (one static slice each) and read as one.
#[derive(Clone, Copy)]
pub struct Entries(&'static [&'static [Entry]]);

type Flat = std::iter::FlatMap<
    std::slice::Iter<'static, &'static [Entry]>,
    std::slice::Iter<'static, Entry>,
    fn(&'static &'static [Entry]) -> std::slice::Iter<'static, Entry>,
>;

impl Entries {
    /// Every entry, in order.
    pub fn iter(self) -> Flat {
        self.into_iter()
    }
}

impl IntoIterator for Entries {
    type Item = &'static Entry;
    type IntoIter = Flat;
    fn into_iter(self) -> Flat {
        let group: fn(&'static &'static [Entry]) -> std::slice::Iter<'static, Entry> = |g| g.iter();
        self.0.iter().flat_map(group)
    }
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
