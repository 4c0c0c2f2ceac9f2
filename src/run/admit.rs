//! Before the journal or the lock is touched: what needs no cluster (approvals, secrets), the
//! promotion gate, permissions and containers, and the hazards the live objects predict (issue
//! 22). Each answers with a [`Refusal`]: nothing was changed, and the person is told what to do.

use crate::program::{Env, Op, Playbook, Rollback};
use crate::resolve::{Live, Mode, ResolveError, Scope};

use super::guards;
use super::kube::{hazards, Cluster};
use super::log::journal;

/// Why a run may not start, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub help: Option<String>,
}

impl Refusal {
    pub fn new(message: impl Into<String>) -> Refusal {
        Refusal {
            message: message.into(),
            help: None,
        }
    }
    pub fn help(mut self, help: impl Into<String>) -> Refusal {
        self.help = Some(help.into());
        self
    }
}

/// A playbook that asks for approval needs a terminal or `--approve`.
pub(crate) fn approvals(pb: &Playbook, approve: bool) -> Result<(), Refusal> {
    let asks = pb.stages.iter().any(|s| {
        s.stmts
            .iter()
            .chain(match &s.rollback {
                Rollback::Block(b, _) => b.iter(),
                _ => [].iter(),
            })
            .any(|st| matches!(st.op, Op::Approve(_)))
    });
    if asks && !guards::can_approve(approve) {
        return Err(Refusal::new(
            "the playbook asks for approval but there is no terminal to ask on and --approve was not given",
        )
        .help("run it in a terminal, or pass --approve (for CI) once a person has agreed"));
    }
    Ok(())
}

/// Every secret the playbook and env read is set.
pub(crate) fn secrets(pb: &Playbook, env: Option<&Env>, live: &Live) -> Result<(), Refusal> {
    let scope = Scope::new(pb, env, live);
    let names = pb
        .lets
        .iter()
        .chain(env.into_iter().flat_map(|e| e.lets.iter()))
        .map(|l| l.name.as_str());
    for n in names {
        if let Err(ResolveError::MissingSecret(var)) = scope.let_value(n, Mode::Real) {
            return Err(Refusal::new(format!(
                "the secret `{n}` reads the environment variable `{var}`, which is not set"
            ))
            .help(format!("export {var}=… before the run")));
        }
    }
    Ok(())
}

/// An env that comes `after` others runs only once this playbook succeeded on each of them.
pub(crate) async fn promotion_gate(
    pb: &Playbook,
    env: &Env,
    after: &[(String, Cluster)],
    migrations: &std::collections::BTreeMap<String, String>,
) -> Result<(), Refusal> {
    for need in &env.after {
        let Some((_, c)) = after.iter().find(|(n, _)| n == need) else {
            return Err(Refusal::new(format!(
                "cannot reach the `{need}` env to check the promotion gate"
            )));
        };
        let stored = journal::load(c, &pb.digest).await.map_err(|e| {
            Refusal::new(format!(
                "promotion gate: cannot read the `{need}` journal: {e}"
            ))
        })?;
        // Only this playbook's own journal counts (its name and digest, not just the key).
        let last = stored
            .as_ref()
            .filter(|s| s.belongs_to(pb).is_ok())
            .and_then(|s| s.last_success())
            .filter(|l| l.env == need.as_str());
        // Shipped migration files never change (issue 25): what ran green there must be what
        // runs here, byte for byte.
        if let Some(l) = &last {
            if let Some(why) = crate::migrate::changed_since(&l.migrations, migrations) {
                return Err(Refusal::new(format!(
                    "{why} since the green run on `{need}` (run {}): the files that ran there are not the files that would run here",
                    l.run
                ))
                .help("never modify a shipped migration: put the file back as it was and add a new migration for the change"));
            }
        }
        let ok = last.is_some();
        if !ok {
            return Err(Refusal::new(format!(
                "env `{}` comes after `{need}`, and the `{need}` journal (namespace `{}`) shows no successful run of this playbook (digest {})",
                env.name,
                c.ns,
                &pb.digest[..16.min(pb.digest.len())]
            ))
            .help(format!("run it green on `{need}` first: ktplay run FILE --env {need}")));
        }
    }
    Ok(())
}

/// Permissions (SelfSubjectAccessReview) and containers.
pub(crate) async fn preflight(cluster: &Cluster, pb: &Playbook) -> Result<(), Refusal> {
    let words = |(message, help): (String, String)| Refusal {
        message,
        help: Some(help),
    };
    super::kube::preflight::check_access(cluster, pb)
        .await
        .map_err(|r| words(r.words()))?;
    super::kube::preflight::check_containers(cluster, pb)
        .await
        .map_err(|r| words(r.words()))?;
    Ok(())
}

/// The run's preflight: every hazard shown (an event each, `--format json` prints them), and
/// under [`hazards::Mode::Refuse`] the run refused (exit 3) naming each refusing hazard's object and field,
/// before the lock or the journal is touched.
pub(crate) async fn hazards(
    cluster: &Cluster,
    target: &super::RunTarget<'_>,
    settings: &hazards::Settings,
    log: &super::context::Log,
    done: &std::collections::BTreeSet<(usize, usize)>,
) -> Result<(), Refusal> {
    let pb = &target.checked.playbooks[target.index].1;
    let found = hazards::assess(cluster, pb, settings, done).await;
    let sources = &target.checked.sources;
    for f in &found {
        log.show(&hazards::event(pb, sources, f));
    }
    let refusing = hazards::refusing(settings, &found);
    if refusing.is_empty() {
        return Ok(());
    }
    Err(Refusal::new(format!(
        "{} hazard{} under --hazards refuse: {}",
        refusing.len(),
        if refusing.len() == 1 { "" } else { "s" },
        refusing.iter().map(|f| hazards::short(f)).collect::<Vec<_>>().join("; ")
    ))
    .help(
        "fix them as each hazard's help says, or accept one with --allow-hazard CODE (`ktplay explain CODE` says why it matters); nothing was changed",
    ))
}
