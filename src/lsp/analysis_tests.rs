//! Unit tests of `lsp::analysis`.

use super::*;

fn analysis(text: &str) -> Analysis {
    Analysis::new(Path::new("/nowhere/x.ktplay"), text)
}

const TEXT: &str = r#"playbook "p" {
  matrix keeptrusts
  let token = env("SECRET_TOKEN")
  component api {
    deployment "a"
    image "x/api"
    from 1.4.2
    to 1.5.0
  }
  component gateway {
    deployment "g"
    image "x/gw"
    from 1.4.1
    to 1.5.0
  }
  env staging {
    let url = "https://s.example.com"
  }
  env prod {
    after staging
    let url = "https://p.example.com"
  }
  stage s {
    rolling api
    rolling gateway
    guard http GET "${url}/health" { bearer token }
  }
}
"#;

fn at(text: &str, needle: &str, nth: usize) -> usize {
    text.match_indices(needle).nth(nth).unwrap().0 + 1
}

#[test]
fn hover_on_a_component_shows_versions_and_the_matrix_rows() {
    let a = analysis(TEXT);
    let (text, range) = a.hover(at(TEXT, "gateway", 1)).unwrap();
    assert_eq!(&TEXT[range.0..range.1], "gateway");
    assert!(
        text.starts_with("**component `gateway`**: 1.4.1 → 1.5.0"),
        "{text}"
    );
    assert!(
        text.contains("beside api from 1.4.2 (row `api 1.4.x`): gateway 1.3.x - 1.4.x"),
        "{text}"
    );
    assert!(text.contains("beside api to 1.5.0 (row `api 1.5.x`): gateway 1.4.x - 1.5.x"));
    let (text, _) = a.hover(at(TEXT, "rolling api", 0) + 9).unwrap();
    assert!(
        text.contains("from 1.4.2: row `api 1.4.x` (supported)"),
        "{text}"
    );
}

#[test]
fn hover_on_a_let_shows_each_env_and_hides_secrets() {
    std::env::set_var("SECRET_TOKEN", "hunter2-very-secret");
    let a = analysis(TEXT);
    let (text, _) = a.hover(at(TEXT, "${url}", 0) + 2).unwrap();
    assert!(
        text.contains("- staging: `https://s.example.com`"),
        "{text}"
    );
    assert!(text.contains("- prod: `https://p.example.com`"), "{text}");
    let (text, _) = a.hover(at(TEXT, "bearer token", 0) + 8).unwrap();
    assert!(text.contains("read from `$SECRET_TOKEN`"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn definitions_of_components_envs_and_lets() {
    let a = analysis(TEXT);
    let d = a.definition(at(TEXT, "rolling api", 0) + 9);
    assert_eq!(d.len(), 1);
    assert_eq!(&TEXT[d[0].1..d[0].2], "api");
    assert_eq!(d[0].1, TEXT.find("component api").unwrap() + 10);
    let d = a.definition(at(TEXT, "after staging", 0) + 7);
    assert_eq!(d[0].1, TEXT.find("env staging").unwrap() + 4);
    // A let defined per env: one definition in each.
    let d = a.definition(at(TEXT, "${url}", 0) + 2);
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|(_, s, e)| &TEXT[*s..*e] == "url"));
}

#[test]
fn symbols_outline_the_playbook() {
    let a = analysis(TEXT);
    assert_eq!(a.symbols.len(), 1);
    let names: Vec<(&str, SymbolKind)> = a.symbols[0]
        .children
        .iter()
        .map(|s| (s.name.as_str(), s.kind))
        .collect();
    assert_eq!(
        names,
        [
            ("token", SymbolKind::Let),
            ("api", SymbolKind::Component),
            ("gateway", SymbolKind::Component),
            ("staging", SymbolKind::Env),
            ("prod", SymbolKind::Env),
            ("s", SymbolKind::Stage)
        ]
    );
    assert_eq!(
        a.symbols[0].children[1].detail.as_deref(),
        Some("1.4.2 → 1.5.0")
    );
}

#[test]
fn definition_of_a_matrix_in_a_used_file_and_of_the_use() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/check/ok/language-example.ktplay");
    let text = std::fs::read_to_string(&path).unwrap();
    let a = Analysis::new(&path, &text);
    let used = path.parent().unwrap().join("matrices/keeptrusts.ktplay");
    let d = a.definition(at(&text, "  matrix keeptrusts", 0) + 10);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, used);
    let used_text = a.text_of(&used).unwrap();
    assert!(used_text[d[0].1..d[0].2].starts_with("matrix keeptrusts {"));
    let d = a.definition(at(&text, "use \"matrices", 0) + 6);
    assert_eq!(d, [(used, 0, 0)]);
}

#[test]
fn hover_on_a_statement_says_what_it_does() {
    let a = analysis(TEXT);
    let (text, range) = a.hover(at(TEXT, "guard http", 0)).unwrap();
    assert!(text.starts_with("**guard http METHOD"), "{text}");
    assert_eq!(&TEXT[range.0..range.1], "guard");
}

#[test]
fn hover_on_a_monitor_says_what_it_does_and_its_lets_resolve() {
    let text = TEXT.replace(
        "  stage s {",
        "  monitor gw GET \"${url}/healthz\" { bearer token budget failures 0 }\n  stage s {",
    );
    let a = analysis(&text);
    let (hover, range) = a.hover(at(&text, "monitor gw", 0)).unwrap();
    assert!(hover.starts_with("**monitor NAME METHOD"), "{hover}");
    assert_eq!(&text[range.0..range.1], "monitor");
    // The let in its URL and its bearer are the lets' occurrences (hover shows each env).
    let (hover, _) = a.hover(at(&text, "${url}/healthz", 0) + 2).unwrap();
    assert!(hover.contains("staging"), "{hover}");
    let (hover, _) = a.hover(at(&text, "bearer token budget", 0) + 8).unwrap();
    assert!(hover.contains("secret"), "{hover}");
}

#[test]
fn hover_and_outline_of_a_fleet() {
    let text = format!(
        "{TEXT}\nfleet \"f\" {{\n  playbook \"x.ktplay\"\n  on failure stop\n  shared api in core\n  cluster core {{ context \"c\" }}\n  wave first {{\n    clusters core\n    soak 10m {{ guard ready api }}\n  }}\n}}\n"
    );
    let a = analysis(&text);
    for (needle, starts) in [
        ("fleet \"f\"", "**fleet \"name\"**"),
        ("on failure", "**on failure stop**"),
        ("shared api", "**shared C in CLUSTER**"),
        ("cluster core", "**cluster NAME**"),
        ("wave first", "**wave NAME**"),
        ("soak 10m", "**soak D**"),
        ("guard ready", "**guard ready C**"),
    ] {
        let (hover, _) = a
            .hover(at(&text, needle, 0))
            .unwrap_or_else(|| panic!("no hover on `{needle}`"));
        assert!(hover.starts_with(starts), "{needle}: {hover}");
    }
    let fleet = a
        .symbols
        .iter()
        .find(|s| s.detail.as_deref() == Some("fleet"))
        .expect("the fleet in the outline");
    let children: Vec<(&str, Option<&str>)> = fleet
        .children
        .iter()
        .map(|c| (c.name.as_str(), c.detail.as_deref()))
        .collect();
    assert_eq!(
        children,
        [("core", Some("cluster")), ("first", Some("wave"))]
    );
}
