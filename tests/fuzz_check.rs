//! A grammar-aware fuzz target for `check`: playbooks generated from the language's constructs
//! and the shipped playbooks mutated (tokens inserted, ranges deleted or doubled, characters
//! replaced by multi-byte ones, very long lines). For each input: no panic anywhere (checking,
//! human rendering, JSON), no internal error, and no false "ok" — a file with no errors must
//! parse and yield one checked playbook per `playbook` item.
//!
//! `check_never_crashes_nor_passes_falsely` runs a bounded number of cases in the normal suite
//! (`PROPTEST_CASES`, default 64); `bench/fuzz.sh` runs `fuzz_for_a_while` for `FUZZ_SECONDS`.

use std::time::{Duration, Instant};

use ktplay::check::check_text;
use ktplay::diag::{render, JsonDiagnostic, RenderOptions};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

const SEEDS: &[&str] = &[
    include_str!("../playbooks/keeptrusts-1.5.ktplay"),
    include_str!("../playbooks/gateway-canary.ktplay"),
    include_str!("../playbooks/console-blue-green.ktplay"),
    include_str!("../playbooks/workers-restart.ktplay"),
    include_str!("cases/check/ok/allow_hosts.ktplay"),
];

/// Pieces that matter to the lexer and the grammar, and characters that are more than a byte.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "\"",
    "\"\"\"",
    "${",
    "${api.idle}",
    "\\",
    "\\q",
    "#",
    "\n",
    " ",
    "=",
    "(",
    ")",
    ",",
    "-",
    "%",
    "İ",
    "é",
    "🦀",
    "\u{0}",
    "\r",
    "\t",
    "playbook",
    "matrix",
    "use",
    "stage",
    "component",
    "env",
    "let",
    "guard",
    "http",
    "GET",
    "rolling",
    "canary",
    "blue_green",
    "restart",
    "undo",
    "switch",
    "scale",
    "pause",
    "approve",
    "rollback",
    "none",
    "role",
    "serves",
    "allow_hosts",
    "to",
    "from",
    "weight",
    "for",
    "within",
    "timeout",
    "max_surge",
    "max_unavailable",
    "expect",
    "json",
    "hook",
    "rhai",
    "logs",
    "matches",
    "ready",
    "1.5.0",
    "1.5.x",
    "1.x",
    "1.5",
    "0",
    "200",
    "2000",
    "10%",
    "150%",
    "30s",
    "1m30s",
    "0s",
    "true",
    "env(\"X\")",
    "api",
    "gateway",
    "console",
    "workers",
    "keeptrusts",
];

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(TOKENS).prop_map(str::to_string),
        1 => (1usize..4).prop_map(|n| "İ".repeat(n * 20)),
        1 => Just(" ".repeat(70_000)),
        1 => "[a-z_][a-z0-9_-]{0,12}",
        1 => any::<char>().prop_map(|c| c.to_string()),
    ]
}

/// One edit of a text, at positions given as fractions of its length (kept on char boundaries).
#[derive(Debug, Clone)]
enum Edit {
    Insert(f64, String),
    Delete(f64, f64),
    Double(f64, f64),
    Replace(f64, String),
    Truncate(f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = 0.0f64..1.0;
    prop_oneof![
        4 => (at.clone(), token()).prop_map(|(a, t)| Edit::Insert(a, t)),
        2 => (at.clone(), 0.0f64..0.05).prop_map(|(a, l)| Edit::Delete(a, l)),
        1 => (at.clone(), 0.0f64..0.2).prop_map(|(a, l)| Edit::Double(a, l)),
        2 => (at.clone(), token()).prop_map(|(a, t)| Edit::Replace(a, t)),
        1 => at.prop_map(Edit::Truncate),
    ]
}

fn boundary(s: &str, f: f64) -> usize {
    let mut i = ((s.len() as f64) * f) as usize;
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(mut s: String, e: &Edit) -> String {
    match e {
        Edit::Insert(a, t) => {
            let i = boundary(&s, *a);
            s.insert_str(i, t);
        }
        Edit::Delete(a, l) => {
            let i = boundary(&s, *a);
            let j = boundary(&s, (a + l).min(1.0)).max(i);
            s.replace_range(i..j, "");
        }
        Edit::Double(a, l) => {
            let i = boundary(&s, *a);
            let j = boundary(&s, (a + l).min(1.0)).max(i);
            let piece = s[i..j].to_string();
            s.insert_str(j, &piece);
        }
        Edit::Replace(a, t) => {
            let i = boundary(&s, *a);
            let j = s[i..].chars().next().map_or(i, |c| i + c.len_utf8());
            s.replace_range(i..j, t);
        }
        Edit::Truncate(a) => {
            let i = boundary(&s, *a);
            s.truncate(i);
        }
    }
    s
}

fn mutated() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(SEEDS),
        proptest::collection::vec(edit(), 1..8),
    )
        .prop_map(|(seed, edits)| edits.iter().fold(seed.to_string(), apply))
}

/// A playbook built from the language's constructs, right or wrong in small ways.
fn generated() -> impl Strategy<Value = String> {
    let name = proptest::sample::select(&["api", "gateway", "console", "workers", "apx"][..]);
    let version =
        proptest::sample::select(&["1.4.2", "1.5.0", "1.3.0", "1.6.0", "1.5.x", "1.5"][..]);
    let component = (name.clone(), version.clone(), version.clone(), any::<bool>(), any::<bool>())
        .prop_map(|(n, f, t, bg, role)| {
            let body = if bg {
                format!("blue_green {{ service \"{n}\" selector \"v\" blue \"{n}-blue\" green \"{n}-green\" }}")
            } else {
                format!("deployment \"keeptrusts-{n}\"")
            };
            let role = if role { format!(" role {n}") } else { String::new() };
            format!("  component {n} {{ {body} image \"keeptrusts/{n}\" from {f} to {t}{role} }}\n")
        });
    let stmt = (
        name,
        version,
        0usize..12,
        proptest::sample::select(&["0", "1", "25%", "100%", "150%"][..]),
    )
        .prop_map(|(n, v, k, b)| match k {
            0 => format!("rolling {n}"),
            1 => format!("rolling {n} to {v} max_unavailable {b} max_surge {b}"),
            2 => format!("canary {n} weight {b} for 1m {{ guard ready {n} }}"),
            3 => format!("blue_green {n} {{ guard http GET \"${{url}}/h\" expect 200 }}"),
            4 => format!("restart {n} timeout 5m"),
            5 => format!("undo {n}"),
            6 => format!("switch {n} to green"),
            7 => format!("scale {n} 3"),
            8 => "pause 30s".to_string(),
            9 => "approve \"ok?\"".to_string(),
            10 => format!("guard logs {n} matches \"done\" within 2m"),
            _ => "guard rhai \"\"\" vars.url != \"\" \"\"\"".to_string(),
        });
    let stage = proptest::collection::vec(stmt, 0..5).prop_map(|s| s.join("\n    "));
    (
        proptest::collection::vec(component, 0..5),
        proptest::collection::vec(stage, 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(components, stages, matrix, env)| {
            let mut out = String::from("playbook \"gen\" {\n");
            if matrix {
                out += "  matrix keeptrusts\n";
            }
            out += "  let key = env(\"TEST_KEY\")\n";
            for c in components {
                out += &c;
            }
            if env {
                out +=
                    "  env staging { context \"staging\" let url = \"https://x.example.com\" }\n";
            } else {
                out += "  let url = \"https://x.example.com\"\n";
            }
            for (i, s) in stages.iter().enumerate() {
                out += &format!("  stage s{i} {{\n    {s}\n  }}\n");
            }
            out += "}\n";
            out
        })
}

fn input() -> impl Strategy<Value = String> {
    prop_oneof![3 => mutated(), 2 => generated(), 1 => (generated(), proptest::collection::vec(edit(), 1..4)).prop_map(|(g, e)| e.iter().fold(g, apply))]
}

/// What one input must satisfy; `Err` says how it failed.
fn property(text: &str) -> Result<(), String> {
    // The fast parser declines or yields pest's tree, spans included (tests/fast_parse.rs).
    ktplay::syntax::paths::agree(text).map_err(|e| format!("fast parser: {e}"))?;
    let outcome = std::panic::catch_unwind(|| {
        let checked = check_text("fuzz.ktplay", text);
        let shown = render(&checked.sources, &checked.problems, RenderOptions::plain());
        let json: Vec<JsonDiagnostic> = checked
            .problems
            .iter()
            .map(|p| JsonDiagnostic::new(&checked.sources, p))
            .collect();
        let _ = serde_json::to_string(&json).unwrap();
        (checked, shown)
    });
    let (checked, shown) =
        outcome.map_err(|p| format!("panic: {}", ktplay::diag::panic_message(p.as_ref())))?;
    if let Some(p) = checked
        .problems
        .iter()
        .find(|p| p.code().starts_with("ktplay::internal"))
    {
        return Err(format!("internal error: {}", p.inner));
    }
    if checked.errors() == 0 {
        let ast = ktplay::syntax::parse(ktplay::span::FileId(0), text)
            .map_err(|e| format!("false ok: check passed but the text does not parse: {e:?}"))?;
        let items = ast
            .items
            .iter()
            .filter(|i| matches!(i, ktplay::syntax::ast::Item::Playbook(_)))
            .count();
        if items != checked.playbooks.len() {
            return Err(format!(
                "false ok: {items} playbook items, {} checked",
                checked.playbooks.len()
            ));
        }
    } else if shown.is_empty() {
        return Err("errors but nothing rendered".into());
    }
    Ok(())
}

#[test]
fn check_never_crashes_nor_passes_falsely() {
    let config = Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(64),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = runner.run(&input(), |text| {
        property(&text).map_err(proptest::test_runner::TestCaseError::fail)
    });
    std::panic::set_hook(hook);
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The long run of `bench/fuzz.sh`: as many cases as fit in `FUZZ_SECONDS` (default 60).
#[test]
#[ignore]
fn fuzz_for_a_while() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runner = TestRunner::new(Config::default());
    let strategy = input();
    let (mut cases, mut crashes, mut false_ok) = (0u64, 0u64, 0u64);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    while Instant::now() < deadline {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        cases += 1;
        if let Err(e) = property(&text) {
            if e.starts_with("false ok") {
                false_ok += 1;
            } else {
                crashes += 1;
            }
            let path = std::env::temp_dir().join(format!("ktplay-fuzz-{cases}.ktplay"));
            let _ = std::fs::write(&path, &text);
            eprintln!("FAIL {e} (input in {})", path.display());
        }
    }
    std::panic::set_hook(hook);
    println!(
        "fuzz: {cases} cases in {:.0} s, {crashes} crashes, {false_ok} false ok",
        started.elapsed().as_secs_f64()
    );
    assert_eq!((crashes, false_ok), (0, 0));
}
