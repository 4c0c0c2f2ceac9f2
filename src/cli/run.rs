//! The commands `run`, `rehearse`, `status`, `unlock` and `sim serve`: arguments → a tokio
//! runtime → the runner → an exit code (see [`crate::exit`]).

use super::{KubeArgs, OutputFormat, RehearseArgs, RunArgs, StatusArgs, UnlockArgs};
use crate::check::select::Selection;
use crate::check::Checked;
use crate::program::{Env, Playbook};
use crate::resolve::{Live, Scope};

use crate::exit::Exit;
use crate::run::guards::UrlRewrite;
use crate::run::kube::{self as cluster, Cluster, Connect};
use crate::run::log::events::RunEvent;
use crate::run::log::output::Format;
use crate::run::Outcome;
use crate::run::{execute, RunOptions};

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub(super) fn format(f: OutputFormat) -> Format {
    match f {
        OutputFormat::Human => Format::Human,
        OutputFormat::Json => Format::Json,
    }
}

/// A checked file with the playbook and the env the command line picked.
pub(super) struct Loaded {
    pub(super) checked: Checked,
    /// Index into `checked.playbooks`.
    pub(super) index: usize,
    /// The env's name; `None` only for a playbook without envs.
    pub(super) env: Option<String>,
}

impl Loaded {
    /// The pick as a [`Selection`]: the playbook, its env, its matrix.
    pub(super) fn selection(&self) -> Selection<'_> {
        let pb = &self.checked.playbooks[self.index].1;
        let env = self.env.as_deref().and_then(|n| pb.env(n));
        self.checked.selection(self.index, env)
    }
}

/// Check the file and pick the playbook and env; check errors refuse (3), usage is 2.
pub(super) fn load(
    file: &std::path::Path,
    playbook: Option<&str>,
    env: Option<&str>,
) -> Result<Loaded, Exit> {
    let (checked, i) = super::load_playbook(file, playbook).map_err(|code| {
        if code == Exit::Failed {
            eprintln!("refused: the playbook has errors; nothing was run");
            Exit::Refused
        } else {
            Exit::Usage
        }
    })?;
    let env_name = {
        let pb = &checked.playbooks[i].1;
        super::pick_env(pb, env)
            .map_err(|_| Exit::Usage)?
            .map(|e| e.name.clone())
    };
    Ok(Loaded {
        checked,
        index: i,
        env: env_name,
    })
}

pub(super) fn namespace(pb: &Playbook, env: Option<&Env>, over: Option<&str>) -> String {
    match over {
        Some(n) => n.to_string(),
        None => {
            let live = Live::default();
            Scope::new(pb, env, &live).namespace().to_string()
        }
    }
}

fn finish(o: &Outcome) -> Exit {
    match o {
        Outcome::Usage(m) => eprintln!("error: {m}"),
        Outcome::Refused(_) => {}
        _ => {}
    }
    o.exit()
}

/// The secrets as they will be sent (one trailing line break dropped), or why one cannot be used
/// (too short to mask safely, a control character): see [`crate::redact::normalize_secret`].
pub(super) fn secrets_from_env(
    pb: &Playbook,
    env: Option<&Env>,
) -> Result<std::collections::HashMap<String, String>, String> {
    let mut out = std::collections::HashMap::new();
    let lets = pb
        .lets
        .iter()
        .chain(env.into_iter().flat_map(|e| e.lets.iter()));
    for l in lets {
        if let crate::program::LetValue::Secret { var } = &l.value {
            if let Ok(v) = std::env::var(var) {
                out.insert(var.clone(), crate::redact::normalize_secret(var, &v)?);
            }
        }
    }
    Ok(out)
}

pub(super) async fn connect(
    kube: &KubeArgs,
    env: Option<&Env>,
    ns: &str,
) -> Result<Cluster, cluster::ConnectError> {
    let c = Connect {
        kubeconfig: kube.kubeconfig.clone(),
        context: kube
            .context
            .clone()
            .or_else(|| env.and_then(|e| e.context.clone())),
    };
    Ok(Cluster::new(cluster::client(&c, ns).await?, ns))
}

/// `--route HOST=BASE` arguments as URL routing.
pub(super) fn routes(args: &[String]) -> Result<UrlRewrite, Exit> {
    let mut rewrite = UrlRewrite::default();
    for r in args {
        match r.split_once('=') {
            Some((host, base)) if !host.is_empty() && base.contains("://") => rewrite
                .map
                .push((host.to_string(), base.trim_end_matches('/').to_string())),
            _ => {
                eprintln!("error: --route `{r}` is not HOST=BASE, like api.example.com=http://127.0.0.1:8080");
                return Err(Exit::Usage);
            }
        }
    }
    Ok(rewrite)
}

/// `ktplay run`.
pub(super) fn cmd_run(args: RunArgs) -> Exit {
    if let Some(code) = super::fleet::run(&args) {
        return code;
    }
    let loaded = match load(&args.file, args.playbook.as_deref(), args.env.as_deref()) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let sel = loaded.selection();
    let (pb, env) = (sel.playbook, sel.env);
    let ns = namespace(pb, env, args.kube.namespace.as_deref());
    let rewrite = match routes(&args.route) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut after_context: Vec<(String, String)> = Vec::new();
    for a in &args.after_context {
        match a.split_once('=') {
            Some((e, c)) if !e.is_empty() && !c.is_empty() => {
                if env.is_none_or(|x| !x.after.iter().any(|n| n == e)) {
                    eprintln!(
                        "error: --after-context `{a}`: env `{}` does not come after `{e}` (no `after {e}` in it)",
                        env.map_or("(none)", |x| x.name.as_str())
                    );
                    return Exit::Usage;
                }
                after_context.push((e.to_string(), c.to_string()));
            }
            _ => {
                eprintln!("error: --after-context `{a}` is not ENV=CONTEXT, like staging=sim");
                return Exit::Usage;
            }
        }
    }
    let hazards = match args.hazard.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let secrets = match secrets_from_env(pb, env) {
        Ok(s) => s,
        Err(m) => {
            eprintln!("refused: {m}");
            return Exit::Refused;
        }
    };
    runtime().block_on(async {
        let cluster = match connect(&args.kube, env, &ns).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Usage;
            }
        };
        // The clusters of the envs this one comes after (the promotion gate).
        let mut after = Vec::new();
        if let Some(e) = env {
            for name in &e.after {
                let Some(other) = pb.env(name) else { continue };
                // `--context` is this env's; the earlier env's cluster is its own `context`,
                // unless `--after-context` says otherwise.
                let chosen = after_context
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, c)| c.clone());
                let kube = KubeArgs {
                    kubeconfig: args.kube.kubeconfig.clone(),
                    context: chosen.clone(),
                    namespace: None,
                };
                let ons = namespace(pb, Some(other), None);
                match connect(&kube, Some(other), &ons).await {
                    Ok(c) => after.push((name.clone(), c)),
                    Err(err) => {
                        // The client's own hint names `--context`, which is this env's.
                        let err = err.to_string();
                        let err = err.split(" — pass `--context").next().unwrap_or(&err);
                        let used = match (&chosen, &other.context) {
                            (Some(c), _) => format!("context `{c}` (--after-context)"),
                            (None, Some(c)) => format!("its env's context `{c}`"),
                            (None, None) => "the kubeconfig's current context".to_string(),
                        };
                        eprintln!("refused: env `{}` comes after `{name}`, whose journal is read through {used} to check the promotion gate, and that failed: {err}", e.name);
                        eprintln!("  help: `--context` chooses the cluster of env `{}` only; to read `{name}`'s journal from another context, pass `--after-context {name}=CONTEXT` (e.g. `--after-context {name}=sim` when both envs run on one simulator)", e.name);
                        return Exit::Refused;
                    }
                }
            }
        }
        let opts = RunOptions {
            approve: args.approve,
            accept_drift: args.accept_drift,
            resume: args.resume,
            format: format(args.format),
            journal_file: args.journal.clone(),
            after: Some(after),
            hazards,
            ..RunOptions::new(secrets, rewrite)
        };
        let target = loaded.selection();
        finish(&execute((&target).into(), cluster, opts).await)
    })
}

/// `ktplay rehearse`.
pub(super) fn cmd_rehearse(args: RehearseArgs) -> Exit {
    if let Some(code) = super::fleet::rehearse(&args) {
        return code;
    }
    let loaded = match load(&args.file, args.playbook.as_deref(), args.env.as_deref()) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let sel = loaded.selection();
    let (pb, env) = (sel.playbook, sel.env);
    let mut faults = crate::sim::Faults::none();
    for f in &args.fault {
        match f.parse::<crate::sim::Fault>() {
            // A fault that cannot fire in this playbook would make a failure rehearsal pass
            // for the wrong reason.
            Ok(fault) => match crate::check::test_items::fault_mismatch(pb, &fault) {
                None => faults.add(fault),
                Some((message, help)) => {
                    eprintln!("error: --fault {f}: {message}");
                    if let Some(h) = help {
                        eprintln!("  help: {h}");
                    }
                    return Exit::Usage;
                }
            },
            Err(e) => {
                eprintln!("error: --fault {f}: {e}");
                return Exit::Usage;
            }
        }
    }
    let hazards = match args.hazard.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let sel = loaded.selection();
    let pace = crate::rehearse::Pace {
        step: args.pace,
        progress_deadline: Some(args.progress_deadline),
    };
    runtime().block_on(async {
        let rehearsal = match crate::rehearse::Rehearsal::start(&sel, faults, pace).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Usage;
            }
        };
        let human = args.format == OutputFormat::Human;
        let say = |m: String| {
            if human {
                println!("{m}");
            } else {
                let note = RunEvent::Note { message: m };
                println!("{}", serde_json::to_string(&note).expect("an event serializes"));
            }
        };
        say(format!(
            "rehearsal on the embedded simulator (pace {}, progress deadline {}); components seeded at their `from` versions",
            crate::syntax::format_duration(args.pace),
            crate::syntax::format_duration(args.progress_deadline)
        ));
        if !rehearsal.generated.is_empty() {
            say(format!(
                "secrets not set in the environment, using generated stand-ins: {}",
                rehearsal.generated.join(", ")
            ));
        }
        for (host, base) in &rehearsal.rewrite.map {
            say(format!("routing {host} → {base}"));
        }
        for n in &rehearsal.notes {
            say(n.clone());
        }
        if env.is_some_and(|e| !e.after.is_empty()) {
            say("promotion gate (`after`) not checked in a rehearsal".into());
        }
        let opts = RunOptions {
            approve: args.approve,
            format: format(args.format),
            journal_file: args.journal.clone(),
            shorten_waits: Some(args.max_wait),
            hazards,
            ..rehearsal.options()
        };
        let code = finish(&execute((&sel).into(), rehearsal.cluster(), opts).await);
        rehearsal.shutdown().await;
        code
    })
}

/// `ktplay status`.
pub(super) fn cmd_status(args: StatusArgs) -> Exit {
    if let Some(code) = super::fleet::status(&args) {
        return code;
    }
    let loaded = match load(&args.file, args.playbook.as_deref(), args.env.as_deref()) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let sel = loaded.selection();
    let (pb, env) = (sel.playbook, sel.env);
    let ns = namespace(pb, env, args.kube.namespace.as_deref());
    runtime().block_on(async {
        let cluster = match connect(&args.kube, env, &ns).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Usage;
            }
        };
        let lock = crate::run::kube::lock::describe(&cluster, &pb.name)
            .await
            .map_err(|e| e.to_string());
        let journal = crate::run::log::journal::load(&cluster, &pb.digest)
            .await
            .map_err(|e| e.to_string());
        let (lock, journal) = match (lock, journal) {
            (Ok(l), Ok(j)) => (l, j),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("error: {e}");
                return Exit::Usage;
            }
        };
        if args.format == OutputFormat::Json {
            let doc = serde_json::json!({
                "playbook": pb.name, "digest": pb.digest, "namespace": ns,
                "lock": lock,
                "journal": journal.as_ref().map(|j| serde_json::json!({
                    "run": j.run(), "status": j.status(), "last_success": j.last_success(),
                    "belongs": j.belongs_to(pb).is_ok(),
                    "events": j.events(),
                    "unreadable": j.unreadable().iter().map(|(n, l)| serde_json::json!({"line": n, "text": l})).collect::<Vec<_>>(),
                })),
            });
            super::print_json(&doc, super::JsonLayout::Compact);
            return Exit::Ok;
        }
        println!(
            "playbook \"{}\" (digest {}) in namespace {ns}",
            pb.name,
            &pb.digest[..12.min(pb.digest.len())]
        );
        match lock {
            Some(l) => println!("lock: {l}"),
            None => println!("lock: free"),
        }
        match journal {
            None => println!("journal: no run of this playbook version here"),
            Some(j) => {
                // Everything the journal says is the cluster's to say: escaped before printing.
                use crate::run::shown::shown;
                println!(
                    "journal: run {} {}",
                    shown(j.run().unwrap_or("?")),
                    shown(j.status().unwrap_or("?"))
                );
                if let Err(why) = j.belongs_to(pb) {
                    println!("warning: {why}");
                }
                match j.last_success() {
                    Some(l) => println!(
                        "last success: run {} on env {} at {}",
                        shown(&l.run),
                        shown(&l.env),
                        shown(&l.time)
                    ),
                    None => println!("last success: none"),
                }
                for (n, line) in j.unreadable() {
                    println!("  line {n} of the events is not an event ktplay knows: {line}");
                }
                for e in j.events() {
                    if matches!(e.event, RunEvent::First { .. } | RunEvent::Record { .. }) {
                        continue;
                    }
                    let (what, ok, text) = e.words();
                    let ok = match ok {
                        Some(true) => " ok",
                        Some(false) => " FAILED",
                        None => "",
                    };
                    println!(
                        "  {} {}{ok} {}",
                        shown(&e.time),
                        shown(&what),
                        shown(&text)
                    );
                }
            }
        }
        Exit::Ok
    })
}

/// `ktplay unlock --force NAMESPACE/LEASE/RUN_ID`.
pub(super) fn cmd_unlock(args: UnlockArgs) -> Exit {
    let parts: Vec<&str> = args.lock_id.split('/').collect();
    let [ns, lease, run] = parts.as_slice() else {
        eprintln!(
            "error: `{}` is not a lock id; a refused run prints it as NAMESPACE/LEASE/RUN_ID",
            args.lock_id
        );
        return Exit::Usage;
    };
    runtime().block_on(async {
        let c = Connect {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
        };
        let cluster = match cluster::client(&c, ns).await {
            Ok(client) => Cluster::new(client, *ns),
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Usage;
            }
        };
        match crate::run::kube::lock::force_unlock(&cluster, lease, run).await {
            Ok(m) => {
                println!("{m}");
                Exit::Ok
            }
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Refused
            }
        }
    })
}

/// `ktplay plan --cluster`: the hazards of the live objects (only reads); on failure the exit
/// code, the error printed.
pub(super) fn plan_hazards(
    args: &super::PlanArgs,
    pb: &Playbook,
    env: Option<&Env>,
) -> Result<Vec<crate::run::kube::hazards::Found>, Exit> {
    let settings = args.hazard.settings().map_err(|e| {
        eprintln!("error: {e}");
        Exit::Usage
    })?;
    let ns = namespace(pb, env, args.kube.namespace.as_deref());
    runtime().block_on(async {
        let cluster = connect(&args.kube, env, &ns).await.map_err(|e| {
            eprintln!("error: {e}");
            Exit::Usage
        })?;
        // An unreachable cluster is a usage error (exit 2), as for `run`; a denied read is a
        // hazard of its own (`unreadable`), reported with the rest.
        if let Err(e) = crate::run::kube::hazards::readable(&cluster, pb).await {
            eprintln!("error: cannot read the cluster: {e}");
            return Err(Exit::Usage);
        }
        Ok(crate::run::kube::hazards::assess(&cluster, pb, &settings, &Default::default()).await)
    })
}
