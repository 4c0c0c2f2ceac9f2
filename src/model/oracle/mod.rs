//! The model as it was before issue 23 (one `u64` per set, so at most 64 components and 64
//! versions of one; every failure point walked every stage below it), kept in tests only as the
//! oracle the current engine is compared with: on random programs within the old limits, both
//! representations of [`crate::model::analyse`] give exactly the old findings.

mod findings;
mod run;

use proptest::prelude::*;

use crate::matrix::{self, Matrix, Rule};
use crate::model::{
    analyse, analyse_wide, Colour, Component, OnFailure, Op, Program, RollbackSpec, Stage, Stmt,
};
use crate::span::{FileId, Span};
use crate::version::Version;

/// Components named after the built-in matrix's roles, and one it does not name.
const NAMES: [&str; 5] = ["api", "gateway", "console", "workers", "search"];

fn version() -> impl Strategy<Value = Version> {
    (2u64..=6, 0u64..=1).prop_map(|(m, p)| Version::new(1, m, p))
}

/// A statement as drawn: (kind, component, version, guards).
type Drawn = (u8, usize, Version, u8);

fn drawn() -> impl Strategy<Value = Drawn> {
    (0u8..11, 0usize..5, version(), 0u8..3)
}

struct Spans(usize);

impl Spans {
    fn next(&mut self) -> Span {
        self.0 += 10;
        Span::new(FileId(0), self.0, self.0 + 5)
    }
}

fn stmt(d: &Drawn, n: usize, at: &mut Spans) -> Stmt {
    let (kind, c, to, g) = d;
    let comp = c % n;
    let to = to.clone();
    let span = at.next();
    let guards = |at: &mut Spans| -> Vec<Stmt> {
        (0..*g)
            .map(|i| Stmt {
                span: at.next(),
                op: if i == 1 { Op::Pause } else { Op::Guard },
            })
            .collect()
    };
    let op = match kind {
        0 | 1 => Op::Rolling { comp, to },
        2 => Op::Canary {
            comp,
            to,
            guards: guards(at),
        },
        3 => Op::BlueGreen {
            comp,
            to,
            guards: guards(at),
        },
        4 => Op::Undo {
            comp,
            revision: None,
        },
        5 => Op::Undo {
            comp,
            revision: Some(3),
        },
        6 => Op::Switch {
            comp,
            colour: Colour::Blue,
        },
        7 => Op::Scale { comp },
        8 => Op::Guard,
        9 => Op::Pause,
        _ => Op::Approve,
    };
    Stmt { span, op }
}

/// (components: from, to, forward_only, blue_green; stages: statements, rollback 0 implicit /
/// 1 none / 2 block, block statements; halt; rule-based matrix)
type Drawing = (
    Vec<(Version, Version, bool, bool)>,
    Vec<(Vec<Drawn>, u8, Vec<Drawn>)>,
    bool,
    bool,
);

fn program(d: &Drawing) -> (Program, Matrix) {
    let (comps, stages, halt, rule) = d;
    let mut at = Spans(0);
    let n = comps.len();
    let components = comps
        .iter()
        .enumerate()
        .map(|(i, (from, to, fo, bg))| Component {
            name: NAMES[i].into(),
            role: None,
            from: from.clone(),
            to: to.clone(),
            forward_only: *fo,
            blue_green: *bg,
            span: at.next(),
        })
        .collect();
    let stages = stages
        .iter()
        .enumerate()
        .map(|(k, (stmts, rb, block))| Stage {
            name: format!("s{k}"),
            span: at.next(),
            stmts: stmts.iter().map(|d| stmt(d, n, &mut at)).collect(),
            rollback: match rb {
                0 => RollbackSpec::Implicit,
                1 => RollbackSpec::None(at.next()),
                _ => {
                    let stmts = block.iter().map(|d| stmt(d, n, &mut at)).collect();
                    RollbackSpec::Block(stmts, at.next())
                }
            },
        })
        .collect();
    let m = if *rule {
        Matrix {
            name: "rule-based".into(),
            hub: "api".into(),
            order: vec!["api".into(), "gateway".into()],
            rows: vec![],
            rule: Some(Rule::AdjacentMinor),
            span: None,
        }
    } else {
        matrix::keeptrusts()
    };
    let p = Program {
        components,
        stages,
        on_failure: if *halt {
            OnFailure::Halt
        } else {
            OnFailure::Rollback
        },
    };
    (p, m)
}

fn drawing() -> impl Strategy<Value = Drawing> {
    (
        proptest::collection::vec(
            (
                version(),
                version(),
                proptest::bool::weighted(0.2),
                proptest::bool::weighted(0.2),
            ),
            1..=5,
        ),
        proptest::collection::vec(
            (
                proptest::collection::vec(drawn(), 0..5),
                prop_oneof![6 => Just(0u8), 1 => Just(1u8), 2 => Just(2u8)],
                proptest::collection::vec(drawn(), 0..4),
            ),
            1..7,
        ),
        proptest::bool::weighted(0.1),
        proptest::bool::ANY,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// Same findings (kind, statement, message with its path and counts, help, first failure
    /// point) and the same number of failure points, from the word and from the wide sets.
    #[test]
    fn both_representations_agree_with_the_old_engine(d in drawing()) {
        let (p, m) = program(&d);
        let old = run::analyse(&p, &m);
        let word = analyse(&p, &m);
        let wide = analyse_wide(&p, &m);
        prop_assert_eq!(&word.findings, &old.findings);
        prop_assert_eq!(word.failure_points, old.failure_points);
        prop_assert_eq!(&wide.findings, &old.findings);
        prop_assert_eq!(wide.failure_points, old.failure_points);
    }
}
