//! The real linter: `squawk --reporter=json`, when it is on `PATH` (or `KTPLAY_SQUAWK` names
//! it; `KTPLAY_SQUAWK=off` forces the built-in rules). Its findings are mapped onto
//! [`Rule`]s at the statement they are in.

use std::path::Path;
use std::process::{Command, Stdio};

use super::rules::{Finding, Rule};
use super::split::Stmt;

/// The `squawk` to run: `KTPLAY_SQUAWK` (a path, or `off`), else `squawk` on `PATH`.
pub fn find() -> Option<std::path::PathBuf> {
    match std::env::var_os("KTPLAY_SQUAWK") {
        Some(v) if v == "off" => None,
        Some(v) => Some(v.into()),
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("squawk"))
                .find(|p| p.is_file())
        }),
    }
}

/// `squawk --version`, for the output's "which linter ran".
pub fn version(bin: &Path) -> Option<String> {
    let out = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// One file through squawk: its findings, or why squawk gave none (then the built-in rules
/// run instead).
pub fn lint(bin: &Path, file: &Path, src: &str, stmts: &[Stmt]) -> Result<Vec<Finding>, String> {
    // From `/`: a `.squawk.toml` of the working folder must not switch rules off.
    let out = Command::new(bin)
        .arg("--reporter=json")
        .arg(file)
        .current_dir("/")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", bin.display()))?;
    let items: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).map_err(|_| {
        format!(
            "`{}` printed no JSON report (exit {})",
            bin.display(),
            out.status.code().unwrap_or(-1)
        )
    })?;
    let lines = line_starts(src);
    let mut found = Vec::new();
    for it in items {
        let Some(rule) = it["rule_name"].as_str().and_then(Rule::from_squawk) else {
            continue;
        };
        let line = it["line"].as_u64().unwrap_or(0) as usize;
        let col = it["column"].as_u64().unwrap_or(0) as usize;
        let at = lines
            .get(line)
            .map_or(src.len(), |&l| (l + col).min(src.len()));
        // The statement it is in (or the one it precedes: a syntax error at the end).
        let (start, end) = stmts
            .iter()
            .find(|s| at < s.end.max(s.start + 1))
            .or(stmts.last())
            .map_or((at, at), |s| (s.start, s.end));
        let detail = it["message"].as_str().unwrap_or("").to_string();
        found.push(Finding {
            start,
            end,
            rule,
            detail,
        });
    }
    Ok(found)
}

fn line_starts(src: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(src.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}
