//! What CI reads: `ktplay explain` (one entry per code), `check --format sarif|github` over the
//! error corpus (snapshotted, SARIF validated against the schema's required fields), the GitHub
//! annotations of the human format under `GITHUB_ACTIONS=true`, and shell completions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ktplay::check::check_paths;
use ktplay::diag::ci;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn relative(path: &Path) -> PathBuf {
    path.strip_prefix(root()).unwrap_or(path).to_path_buf()
}

fn ktplay() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("ktplay").unwrap();
    cmd.current_dir(root()).env_remove("GITHUB_ACTIONS");
    cmd
}

/// Every `code(ktplay::…)` the source declares (attributes may break the line after `code(`).
fn declared_codes() -> BTreeSet<String> {
    let re = regex::Regex::new(r"code\(\s*(ktplay::[a-z]+::[a-z0-9_]+)\s*\)").unwrap();
    let mut codes = BTreeSet::new();
    let mut dirs = vec![root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for c in re.captures_iter(&text) {
                    codes.insert(c[1].to_string());
                }
            }
        }
    }
    codes
}

#[test]
fn every_code_has_an_explanation() {
    let declared = declared_codes();
    assert!(declared.len() > 40, "found only {declared:?}");
    let explained: BTreeSet<String> = ktplay::explain::ENTRIES
        .iter()
        .map(|e| e.code.to_string())
        .collect();
    let missing: Vec<_> = declared.difference(&explained).collect();
    assert!(
        missing.is_empty(),
        "codes without an explanation: {missing:?}"
    );
    let stale: Vec<_> = explained.difference(&declared).collect();
    assert!(
        stale.is_empty(),
        "explanations of codes nothing reports: {stale:?}"
    );
}

#[test]
fn explanations_say_whether_the_code_is_a_warning() {
    // The registry's severity must be the one the code is reported with: run the warning corpus.
    let mut seen = BTreeSet::new();
    for sub in ["err", "warn"] {
        for entry in std::fs::read_dir(root().join("tests/cases/check").join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "ktplay") {
                continue;
            }
            let checked = check_paths(&[relative(&path)]).unwrap();
            for p in &checked.problems {
                let e = ktplay::explain::find(&p.code()).expect("explained");
                assert_eq!(e.warning, !p.is_error(), "{} in {}", e.code, path.display());
                seen.insert(e.code);
            }
        }
    }
    assert!(seen.len() > 40, "the corpus reached only {seen:?}");
}

#[test]
fn explain_lists_and_explains_codes() {
    let out = ktplay().arg("explain").assert().success();
    let list = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for e in ktplay::explain::ENTRIES {
        assert!(list.contains(e.code), "{} not listed", e.code);
    }
    let out = ktplay()
        .args(["explain", "unknown_component"])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.starts_with("ktplay::check::unknown_component (error)"),
        "{text}"
    );
    assert!(
        text.contains("rolling apy") && text.contains("Silencing:"),
        "{text}"
    );

    let out = ktplay()
        .args(["explain", "ktplay::compat::eol"])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("(warning)") && text.contains("--deny-warnings"),
        "{text}"
    );
}

#[test]
fn explain_of_an_unknown_code_is_a_usage_error_with_a_hint() {
    let out = ktplay()
        .args(["explain", "unknown_componnt"])
        .assert()
        .code(2);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert_eq!(
        err.trim(),
        "error: no diagnostic code `unknown_componnt` (did you mean `unknown_component`?); `ktplay explain` lists them all"
    );
}

/// The required properties of SARIF 2.1.0 (sarif-schema-2.1.0.json, `required` of each object
/// ktplay writes), and the few constraints on values it uses.
fn validate_sarif(doc: &Value) {
    let req = |v: &Value, keys: &[&str], what: &str| {
        for k in keys {
            assert!(v.get(k).is_some(), "{what} lacks required `{k}`: {v}");
        }
    };
    req(doc, &["version", "runs"], "sarifLog");
    assert_eq!(doc["version"], "2.1.0");
    let runs = doc["runs"].as_array().expect("runs is an array");
    assert_eq!(runs.len(), 1, "one run");
    let run = &runs[0];
    req(run, &["tool"], "run");
    req(&run["tool"], &["driver"], "tool");
    let driver = &run["tool"]["driver"];
    req(driver, &["name"], "toolComponent");
    assert!(
        ["unicodeCodePoints", "utf16CodeUnits"].contains(&run["columnKind"].as_str().unwrap()),
        "columnKind"
    );
    let rules = driver["rules"].as_array().expect("rules");
    let mut ids = BTreeSet::new();
    for rule in rules {
        req(rule, &["id"], "reportingDescriptor");
        assert!(
            ids.insert(rule["id"].as_str().unwrap()),
            "rule ids are unique"
        );
        for text in ["shortDescription", "fullDescription", "help"] {
            req(&rule[text], &["text"], "multiformatMessageString");
            assert!(!rule[text]["text"].as_str().unwrap().is_empty());
        }
        let level = rule["defaultConfiguration"]["level"].as_str().unwrap();
        assert!(["none", "note", "warning", "error"].contains(&level));
    }
    for result in run["results"].as_array().expect("results") {
        req(result, &["message"], "result");
        req(&result["message"], &["text"], "message");
        let id = result["ruleId"].as_str().expect("ruleId");
        let index = result["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(rules[index]["id"], id, "ruleIndex points at the rule");
        let level = result["level"].as_str().unwrap();
        assert!(["none", "note", "warning", "error"].contains(&level));
        let loc = &result["locations"][0]["physicalLocation"];
        req(&loc["artifactLocation"], &["uri"], "artifactLocation");
        let region = &loc["region"];
        let n = |k: &str| region[k].as_u64().unwrap_or_else(|| panic!("region.{k}"));
        assert!(
            n("startLine") >= 1 && n("startColumn") >= 1,
            "1-based: {region}"
        );
        assert!(n("endLine") >= n("startLine"), "{region}");
        if n("endLine") == n("startLine") {
            assert!(n("endColumn") >= n("startColumn"), "{region}");
        }
    }
}

#[test]
fn sarif_of_the_error_corpus() {
    insta::glob!("cases/check/err/*.ktplay", |path| {
        let checked = check_paths(&[relative(path)]).unwrap();
        let doc = ci::sarif(&checked.sources, &checked.problems);
        validate_sarif(&doc);
        assert_eq!(
            doc["runs"][0]["results"].as_array().unwrap().len(),
            checked.problems.len()
        );
        insta::assert_json_snapshot!(doc);
    });
}

#[test]
fn github_annotations_of_the_error_corpus() {
    let command = regex::Regex::new(
        r"^::(error|warning|notice) file=[^,:]+,line=\d+,(col=\d+,endLine=\d+,endColumn=\d+|endLine=\d+),title=ktplay%3A%3A[a-z]+%3A%3A[a-z0-9_]+::[^\r\n]+$",
    )
    .unwrap();
    insta::glob!("cases/check/err/*.ktplay", |path| {
        let checked = check_paths(&[relative(path)]).unwrap();
        let out = ci::github(&checked.sources, &checked.problems);
        assert_eq!(out.lines().count(), checked.problems.len());
        for line in out.lines() {
            assert!(command.is_match(line), "not a workflow command: {line}");
        }
        insta::assert_snapshot!(out);
    });
}

#[test]
fn sarif_and_github_through_the_binary() {
    let case = "tests/cases/check/err/wrong_kind_status.ktplay";
    let out = ktplay()
        .args(["check", "--format", "sarif", case])
        .assert()
        .code(1);
    let doc: Value = serde_json::from_slice(&out.get_output().stdout).expect("SARIF is JSON");
    validate_sarif(&doc);
    let region = &doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"];
    assert_eq!(
        (
            region["startLine"].as_u64(),
            region["startColumn"].as_u64(),
            region["endColumn"].as_u64()
        ),
        (Some(11), Some(41), Some(44))
    );
    let out = ktplay()
        .args(["check", "--format", "github", case])
        .assert()
        .code(1);
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        "::error file=tests/cases/check/err/wrong_kind_status.ktplay,line=11,col=41,endLine=11,endColumn=43,title=ktplay%3A%3Acheck%3A%3Awrong_kind::expected an HTTP status, found the duration `30s`%0Ahelp: write the status as a number, like `200` or `409`\n"
    );
    // A clean file: an empty SARIF run, no annotation, exit 0.
    let out = ktplay()
        .args([
            "check",
            "--format",
            "sarif",
            "playbooks/keeptrusts-1.5.ktplay",
        ])
        .assert()
        .success();
    let doc: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    validate_sarif(&doc);
    assert_eq!(doc["runs"][0]["results"].as_array().unwrap().len(), 0);
}

#[test]
fn human_format_adds_annotations_under_github_actions() {
    let case = "tests/cases/check/warn/downgrade.ktplay";
    let plain = ktplay().args(["check", case]).assert().success();
    assert!(
        plain.get_output().stdout.is_empty(),
        "no annotations outside GitHub Actions"
    );
    let gha = ktplay()
        .env("GITHUB_ACTIONS", "true")
        .args(["check", case])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&gha.get_output().stdout).to_string();
    assert!(
        stdout.starts_with("::warning file=tests/cases/check/warn/downgrade.ktplay,line="),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&gha.get_output().stderr).to_string();
    assert!(
        stderr.contains("ok: 1 file checked, 0 errors, 1 warning"),
        "{stderr}"
    );
}

#[test]
fn completions_for_every_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef ktplay"),
        ("fish", "complete -c ktplay"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = ktplay().args(["completions", shell]).assert().success();
        let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
        assert!(text.contains(marker), "{shell}: no `{marker}`");
        for sub in ["check", "explain", "rehearse", "completions"] {
            assert!(text.contains(sub), "{shell}: `{sub}` is not completed");
        }
    }
    ktplay().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn help_texts_carry_examples() {
    for cmd in ["check", "run", "rehearse", "plan", "explain", "completions"] {
        let out = ktplay().args([cmd, "--help"]).assert().success();
        let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
        assert!(
            text.contains("Examples:"),
            "`ktplay {cmd} --help` has no examples"
        );
    }
}

/// The standard playbook the examples of `ktplay explain` are checked in.
fn example_file(place: ktplay::explain::Place, snippet: &str) -> String {
    use ktplay::explain::Place;
    let indent = |text: &str, by: usize| {
        text.lines()
            .map(|l| format!("{}{l}", " ".repeat(by)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (matrix, stage, entries, items) = match place {
        Place::Stage => (
            "  matrix keeptrusts",
            indent(snippet, 4),
            String::new(),
            String::new(),
        ),
        Place::Playbook => (
            "",
            "    rolling api".into(),
            indent(snippet, 2),
            String::new(),
        ),
        Place::File => (
            "",
            "    rolling api".into(),
            String::new(),
            snippet.to_string(),
        ),
        Place::Unverified => unreachable!(),
    };
    format!(
        r#"{items}
playbook "example" {{
  namespace "keeptrusts"
{matrix}
  let token = env("API_TOKEN")
  component api {{
    deployment "keeptrusts-api"
    image "keeptrusts/api"
    from 1.4.2
    to 1.5.0
  }}
  component gateway {{
    deployment "keeptrusts-gateway"
    image "keeptrusts/gateway"
    from 1.4.1
    to 1.5.0
  }}
  component console {{
    blue_green {{
      service "keeptrusts-console"
      selector "version"
      blue "keeptrusts-console-blue"
      green "keeptrusts-console-green"
    }}
    image "keeptrusts/console"
    from 1.4.0
    to 1.5.0
  }}
  env staging {{
    let api_url = "https://api.staging.example.com"
    let gateway_url = "https://gateway.staging.example.com"
  }}
  env production {{
    after staging
    let api_url = "https://api.example.com"
  }}
  stage s {{
{stage}
  }}
{entries}
}}
"#
    )
}

#[test]
fn explain_examples_fail_and_pass_as_they_say() {
    use ktplay::explain::{Place, ENTRIES};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("hooks")).unwrap();
    std::fs::create_dir_all(dir.path().join("matrices")).unwrap();
    std::fs::write(dir.path().join("hooks/smoke-test.rhai"), "true\n").unwrap();
    std::fs::write(
        dir.path().join("matrices/shared.ktplay"),
        "matrix shared {\n  hub api\n  rule adjacent_minor\n}\n",
    )
    .unwrap();
    let path = dir.path().join("playbook.ktplay");
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        check_paths(std::slice::from_ref(&path)).unwrap()
    };
    let mut verified = 0;
    for e in ENTRIES.iter().filter(|e| e.place != Place::Unverified) {
        let failing = example_file(e.place, e.failing);
        let checked = check(&failing);
        let codes: Vec<String> = checked.problems.iter().map(|p| p.code()).collect();
        assert!(
            codes.iter().any(|c| c == e.code),
            "{}: the failing example reports {codes:?}\n{failing}",
            e.code
        );
        let fixed = example_file(e.place, e.fixed);
        let checked = check(&fixed);
        let problems: Vec<String> = checked
            .problems
            .iter()
            .filter(|p| p.is_error() || p.code() == e.code)
            .map(|p| format!("{} {}", p.code(), p.inner))
            .collect();
        assert!(
            problems.is_empty(),
            "{}: the fixed example still reports {problems:?}\n{fixed}",
            e.code
        );
        verified += 1;
    }
    assert!(verified >= 38, "only {verified} examples are checked");
}

#[test]
fn every_flag_and_argument_says_what_it_does() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if ["help", "version"].contains(&id) {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(format!("{path} {} (the command)", sub.get_name()));
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(
        &<ktplay::Cli as clap::CommandFactory>::command(),
        "ktplay",
        &mut missing,
    );
    assert!(missing.is_empty(), "without a help text: {missing:?}");
}
