//! Model-checking time for a 40-stage, 8-component playbook with every rollback path.
//!
//! `cargo bench --bench model` (release). Five rounds; in each the api moves up a minor, then each
//! of the seven other components follows, by rolling update, canary or (the console, last round)
//! blue-green, with guards after each action and, on every fifth stage, a rollback block that rolls the
//! component back to the previous minor.

use std::time::Instant;

use ktplay::matrix::{Matrix, Rule};
use ktplay::model::{self, Component, OnFailure, Op, Program, RollbackSpec, Stage, Stmt};
use ktplay::span::{FileId, Span};
use ktplay::version::Version;

fn span(n: &mut usize) -> Span {
    *n += 10;
    Span::new(FileId(0), *n, *n + 5)
}

fn program() -> Program {
    let mut n = 0;
    let names = [
        "api",
        "gateway",
        "gateway-eu",
        "console",
        "workers",
        "exporter",
        "scheduler",
        "search",
    ];
    let components: Vec<Component> = names
        .iter()
        .map(|name| Component {
            name: name.to_string(),
            role: None,
            from: Version::new(1, 0, 3),
            to: Version::new(1, 5, 0),
            forward_only: false,
            blue_green: *name == "console",
            span: span(&mut n),
        })
        .collect();
    let guard = |n: &mut usize| Stmt {
        span: span(n),
        op: Op::Guard,
    };
    let mut stages = Vec::new();
    for round in 1..=5u64 {
        for (comp, name) in names.iter().enumerate() {
            let to = Version::new(1, round, 0);
            let op = match (comp, round) {
                (3, 5) => Op::BlueGreen {
                    comp,
                    to,
                    guards: vec![guard(&mut n), guard(&mut n)],
                },
                (c, _) if c % 3 == 1 => Op::Canary {
                    comp,
                    to,
                    guards: vec![guard(&mut n), guard(&mut n)],
                },
                _ => Op::Rolling { comp, to },
            };
            let stmts = vec![
                Stmt {
                    span: span(&mut n),
                    op,
                },
                guard(&mut n),
                guard(&mut n),
            ];
            let rollback = if stages.len() % 5 == 4 {
                RollbackSpec::Block(
                    vec![Stmt {
                        span: span(&mut n),
                        op: Op::Rolling {
                            comp,
                            to: Version::new(1, round - 1, 0),
                        },
                    }],
                    span(&mut n),
                )
            } else {
                RollbackSpec::Implicit
            };
            stages.push(Stage {
                name: format!("{name}-{round}"),
                span: span(&mut n),
                stmts,
                rollback,
            });
        }
    }
    Program {
        components,
        stages,
        on_failure: OnFailure::Rollback,
    }
}

fn main() {
    let p = program();
    let m = Matrix {
        name: "rule-based".into(),
        hub: "api".into(),
        order: vec![],
        rows: vec![],
        rule: Some(Rule::AdjacentMinor),
        span: None,
    };
    let a = model::analyse(&p, &m);
    println!(
        "{} stages, {} components, {} failure points, {} findings",
        p.stages.len(),
        p.components.len(),
        a.failure_points,
        a.findings.len()
    );
    for f in &a.findings {
        println!("  {}: {}", f.kind.code(), f.message);
    }
    // Warm up, then time.
    for _ in 0..20 {
        std::hint::black_box(model::check(&p, &m));
    }
    let iterations = 500;
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(model::check(std::hint::black_box(&p), &m));
    }
    let mean = start.elapsed() / iterations;
    println!("model::check: mean {mean:?} over {iterations} iterations");
}
