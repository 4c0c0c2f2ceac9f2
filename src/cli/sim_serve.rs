//! `ktplay sim serve`: the simulator on loopback until Ctrl-C, seeded with a playbook's
//! components at their `from` versions — by default the shipped `playbooks/keeptrusts-1.5.ktplay`
//! — and the exact `ktplay run` command (kubeconfig, context, every `--route`) that runs that
//! playbook against it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::run::{load, runtime, Loaded};
use crate::exit::Exit;

/// The playbook `sim serve` seeds when no `--seed` is given.
pub(super) const DEFAULT_SEED: &str = "playbooks/keeptrusts-1.5.ktplay";
/// Its text, built in, for a simulator started outside the repository.
const DEFAULT_SEED_TEXT: &str = include_str!("../../playbooks/keeptrusts-1.5.ktplay");

pub(super) fn cmd_sim_serve(
    port: u16,
    kubeconfig: Option<PathBuf>,
    seed: Option<PathBuf>,
    env: Option<String>,
    fault: Vec<String>,
    pace: Duration,
) -> Exit {
    let mut faults = crate::sim::Faults::none();
    for f in &fault {
        match f.parse::<crate::sim::Fault>() {
            Ok(f) => faults.add(f),
            Err(e) => {
                eprintln!("error: --fault {f}: {e}");
                return Exit::Usage;
            }
        }
    }
    let seed_file = seed.or_else(|| Some(PathBuf::from(DEFAULT_SEED)).filter(|p| p.is_file()));
    let loaded = match &seed_file {
        Some(path) => {
            let env = match env.clone() {
                Some(e) => Some(e),
                None => match first_env(path) {
                    Ok(e) => e,
                    Err(code) => return code,
                },
            };
            match load(path, None, env.as_deref()) {
                Ok(x) => x,
                Err(code) => return code,
            }
        }
        None => {
            // Outside the repository: the same playbook, built in (its hooks are not needed to
            // seed); no run command, as there is no file to run.
            let checked = crate::check::check_text("keeptrusts-1.5.ktplay", DEFAULT_SEED_TEXT);
            let env = checked.playbooks[0]
                .1
                .envs
                .iter()
                .find(|e| e.after.is_empty())
                .map(|e| e.name.clone());
            Loaded {
                checked,
                index: 0,
                env,
            }
        }
    };
    let sel = loaded.selection();
    let (pb, e) = (sel.playbook, sel.env);
    let env_name = &loaded.env;
    let temporary = kubeconfig.is_none();
    let kubeconfig = kubeconfig.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ktplay-sim-{}.kubeconfig", std::process::id()))
    });
    let pace = crate::rehearse::Pace {
        step: pace,
        progress_deadline: None,
    };
    let listen = crate::rehearse::Listen::Serve {
        port,
        kubeconfig: kubeconfig.clone(),
    };
    runtime().block_on(async {
        let rehearsal =
            match crate::rehearse::Rehearsal::start_at(&sel, faults, pace, listen).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{e}");
                    return Exit::Usage;
                }
            };
        let ns = &rehearsal.namespace;
        let routes = &rehearsal.rewrite;
        println!(
            "seeded: playbook \"{}\" at its `from` versions, namespace \"{ns}\"",
            pb.name
        );
        match &seed_file {
            Some(file) => {
                let command = run_command(file, env_name.as_deref(), &kubeconfig, &routes.map);
                println!("run it against this simulator:\n  {command}");
                let vars = secret_vars(pb, e);
                if !vars.is_empty() {
                    println!(
                        "  with the secrets {} set (the simulator takes any value of 8 or more characters)",
                        vars.join(", ")
                    );
                }
                if pb.stages.iter().any(|s| {
                    s.stmts
                        .iter()
                        .any(|st| matches!(st.op, crate::program::Op::Approve { .. }))
                }) {
                    println!("  its `approve` statements ask on the terminal; --approve answers yes");
                }
            }
            None => println!(
                "no `{DEFAULT_SEED}` here to run: pass --seed PLAYBOOK to get the `ktplay run` command"
            ),
        }
        let stopped = tokio::signal::ctrl_c().await;
        println!("stopping the simulator");
        rehearsal.shutdown().await;
        if temporary {
            let _ = std::fs::remove_file(&kubeconfig);
        }
        match stopped {
            Ok(()) => Exit::Ok,
            Err(e) => {
                eprintln!("error: could not wait for Ctrl-C: {e}");
                Exit::Usage
            }
        }
    })
}

/// The env to seed when none is named: the first without `after` (staging before production).
fn first_env(path: &Path) -> Result<Option<String>, Exit> {
    let checked = crate::check::check_paths(&[path.to_path_buf()]).map_err(|e| {
        eprintln!("{:?}", miette::Report::new(e));
        Exit::Usage
    })?;
    Ok(checked.playbooks.first().and_then(|(_, pb)| {
        pb.envs
            .iter()
            .find(|e| e.after.is_empty())
            .or(pb.envs.first())
            .map(|e| e.name.clone())
    }))
}

fn secret_vars(pb: &crate::program::Playbook, env: Option<&crate::program::Env>) -> Vec<String> {
    let mut vars: Vec<String> = pb
        .lets
        .iter()
        .chain(env.into_iter().flat_map(|e| e.lets.iter()))
        .filter_map(|l| match &l.value {
            crate::program::LetValue::Secret { var } => Some(var.clone()),
            _ => None,
        })
        .collect();
    vars.sort();
    vars.dedup();
    vars
}

/// `ktplay run FILE --env ENV --kubeconfig K --context sim --route HOST=BASE…`, quoted for a
/// POSIX shell.
pub(super) fn run_command(
    file: &Path,
    env: Option<&str>,
    kubeconfig: &Path,
    routes: &[(String, String)],
) -> String {
    let mut words = vec![
        "ktplay".to_string(),
        "run".into(),
        shell_quote(&file.display().to_string()),
    ];
    if let Some(e) = env {
        words.push("--env".into());
        words.push(shell_quote(e));
    }
    words.push("--kubeconfig".into());
    words.push(shell_quote(&kubeconfig.display().to_string()));
    // The env's own `context` names a real cluster; the simulator's kubeconfig has `sim`.
    words.push("--context".into());
    words.push("sim".into());
    for (host, base) in routes {
        words.push("--route".into());
        words.push(shell_quote(&format!("{host}={base}")));
    }
    words.join(" ")
}

fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_quoted_for_a_shell() {
        let c = run_command(
            Path::new("my playbooks/a.ktplay"),
            Some("staging"),
            Path::new("/tmp/k"),
            &[("api.example.com".into(), "http://127.0.0.1:1".into())],
        );
        assert_eq!(
            c,
            "ktplay run 'my playbooks/a.ktplay' --env staging --kubeconfig /tmp/k --context sim --route api.example.com=http://127.0.0.1:1"
        );
    }

    #[test]
    fn the_built_in_seed_is_the_shipped_playbook() {
        let shipped =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_SEED))
                .unwrap();
        assert_eq!(DEFAULT_SEED_TEXT, shipped);
        let checked = crate::check::check_text("keeptrusts-1.5.ktplay", DEFAULT_SEED_TEXT);
        assert_eq!(checked.playbooks.len(), 1, "the built-in seed lowers");
    }
}
