//! The interpreter: stages in order, each statement for real, and on failure the rollback the
//! design prescribes (`shared/design/language.md`, "Failure and rollback"):
//!
//! 1. the failed stage: its `rollback { … }` block if any, nothing for `rollback none`, otherwise
//!    the implicit rollbacks of its actions that had started, newest first;
//! 2. every completed stage in reverse, by the same rule;
//! 3. `on_failure halt` rolls nothing back; a failing rollback step stops the rollback (exit 2)
//!    and the summary says what state is left and which steps did not run.
//!
//! Every action records what it replaces before it changes anything ([`Record`]): its implicit
//! rollback restores exactly that, so two `rolling api` of one run roll back in turn. The first
//! change of each component is also kept, for `undo C` inside rollback blocks. Records go into the
//! journal with the statement's start, so `--resume` can roll back what an earlier process did.
//!
//! Before each action the live versions are read and the states the action will create are
//! checked against the matrix (the same [`model::forward_states`] the checker uses).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::check::program::{
    Colour, Env, GuardKind, OnFailure, Op, Playbook, Rollback, Statement, Workload,
};
use crate::check::Checked;
use crate::matrix::{format_set, format_state, Matrix, State, StateFinding};
use crate::model;
use crate::resolve::{Live, Mode, Scope};
use crate::span::Span;

use super::cluster::{self, canary_name, live_colour, Cluster};
use super::guards::{self, GuardEnv, ScriptRunner, UrlRewrite};
use super::journal::{self, Journal};
use super::lock::{LockError, RunLock};
use super::output::{Format, Mark, Reporter};
use super::{Cancel, Failure, FailureKind, Outcome, Redactor};

/// What to run: a checked file, which playbook, which env, the matrix in force.
pub struct RunTarget<'a> {
    pub checked: &'a Checked,
    pub index: usize,
    pub env: Option<&'a Env>,
    pub matrix: Option<&'a Matrix>,
}

/// How to run it.
pub struct RunOptions {
    /// `--approve`: every `approve` is answered yes.
    pub approve: bool,
    /// `--accept-drift`: start from the live versions when they differ from `from`.
    pub accept_drift: bool,
    /// `--resume`: continue the interrupted run in the journal.
    pub resume: bool,
    pub format: Format,
    /// `--journal FILE`.
    pub journal_file: Option<PathBuf>,
    /// Under `rehearse`: `pause` and canary `for` are cut to at most this.
    pub shorten_waits: Option<Duration>,
    /// Secret values by environment variable.
    pub secrets: HashMap<String, String>,
    /// URL routing (rehearse).
    pub rewrite: UrlRewrite,
    pub scripts: Arc<dyn ScriptRunner>,
    pub cancel: Cancel,
    /// Clusters of the envs this env must come `after`, by env name (promotion gate); `None`
    /// skips the gate (rehearse).
    pub after: Option<Vec<(String, Cluster)>>,
    /// Words for the header: "run" or "rehearsal".
    pub label: String,
}

use super::events::{RollbackProgress, RunEvent};
use super::rollback::{rollback_plan, First, Record, Snap, Started, Step};

struct Exec<'a> {
    pb: Arc<Playbook>,
    target: &'a RunTarget<'a>,
    program: model::Program,
    roles: BTreeMap<String, String>,
    cluster: Cluster,
    live: Live,
    opts: RunOptions,
    out: Reporter,
    journal: Journal,
    redact: Redactor,
    http: reqwest::Client,
    /// Started actions per stage.
    started: Vec<Vec<Started>>,
    first: BTreeMap<usize, First>,
    /// Each deployment as this process last left it (after its last action on it): before every
    /// action the run checks nobody else changed them meanwhile.
    left: BTreeMap<String, Snap>,
    /// Has this run (or the run it resumes) changed anything?
    changed: bool,
    done: BTreeSet<(usize, usize)>,
    half_done: Option<((usize, usize), Option<Record>)>,
    /// A cancel that never fires: rollbacks run to the end unless a second Ctrl-C exits.
    never: Cancel,
    statements: usize,
    /// The stage being run or rolled back, for scripts' `stage`.
    stage: std::sync::Mutex<String>,
}

type StmtResult = Result<String, (Span, Failure)>;

/// How long a rollout may take when the statement names no `timeout` (rollback steps too).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

fn line_of(checked: &Checked, span: Span) -> usize {
    checked.sources.line_col(span.file, span.start as usize).0
}

/// Run a playbook against a cluster; returns how it ended (see [`Outcome::exit_code`]).
pub async fn execute(target: RunTarget<'_>, cluster: Cluster, opts: RunOptions) -> Outcome {
    // Signals are ours from the first moment: before the journal exists, a signal stops the
    // run before any action (and a second one at once, with nothing changed).
    let journal_slot: JournalSlot = Arc::new(std::sync::Mutex::new(None));
    let signals = spawn_signal_handler(opts.cancel.clone(), journal_slot.clone());
    let outcome = execute_inner(target, cluster, opts, &journal_slot).await;
    signals.abort();
    outcome
}

type JournalSlot = Arc<std::sync::Mutex<Option<Journal>>>;

async fn execute_inner(
    target: RunTarget<'_>,
    cluster: Cluster,
    opts: RunOptions,
    journal_slot: &JournalSlot,
) -> Outcome {
    let pb = &target.checked.playbooks[target.index].1;
    let redact = Redactor::new(opts.secrets.values().cloned());
    let mut out = Reporter::new(opts.format, redact.clone());
    let env_name = target.env.map(|e| e.name.clone()).unwrap_or_default();
    let refuse = |out: &mut Reporter, msg: String, help: Option<&str>| {
        let text = match help {
            Some(h) => format!("refused: {msg}\n  help: {h}\n"),
            None => format!("refused: {msg}\n"),
        };
        out.error(&text, &msg);
        Outcome::Refused(msg)
    };

    // 1. Everything that needs no cluster.
    let approvals = pb.stages.iter().any(|s| {
        s.stmts
            .iter()
            .chain(match &s.rollback {
                Rollback::Block(b, _) => b.iter(),
                _ => [].iter(),
            })
            .any(|st| matches!(st.op, Op::Approve(_)))
    });
    if approvals && !guards::can_approve(opts.approve) {
        return refuse(
            &mut out,
            "the playbook asks for approval but there is no terminal to ask on and --approve was not given".into(),
            Some("run it in a terminal, or pass --approve (for CI) once a person has agreed"),
        );
    }
    let live0 = Live {
        colours: HashMap::new(),
        secrets: opts.secrets.clone(),
    };
    {
        let scope = Scope::new(pb, target.env, &live0);
        let mut names: Vec<&str> = pb.lets.iter().map(|l| l.name.as_str()).collect();
        if let Some(e) = target.env {
            names.extend(e.lets.iter().map(|l| l.name.as_str()));
        }
        for n in names {
            if let Err(crate::resolve::ResolveError::MissingSecret(var)) =
                scope.let_value(n, Mode::Real)
            {
                return refuse(
                    &mut out,
                    format!(
                        "the secret `{n}` reads the environment variable `{var}`, which is not set"
                    ),
                    Some(&format!("export {var}=… before the run")),
                );
            }
        }
    }

    // 2. The promotion gate.
    if let (Some(env), Some(after)) = (target.env, &opts.after) {
        for need in &env.after {
            let Some((_, c)) = after.iter().find(|(n, _)| n == need) else {
                return refuse(
                    &mut out,
                    format!("cannot reach the `{need}` env to check the promotion gate"),
                    None,
                );
            };
            let stored = match journal::load(c, &pb.digest).await {
                Ok(s) => s,
                Err(e) => {
                    return refuse(
                        &mut out,
                        format!("promotion gate: cannot read the `{need}` journal: {e}"),
                        None,
                    )
                }
            };
            let ok = stored
                .as_ref()
                .and_then(|s| s.last_success())
                .is_some_and(|l| l["env"] == need.as_str());
            if !ok {
                return refuse(
                    &mut out,
                    format!(
                        "env `{}` comes after `{need}`, and the `{need}` journal (namespace `{}`) shows no successful run of this playbook (digest {})",
                        env.name,
                        c.ns,
                        &pb.digest[..16.min(pb.digest.len())]
                    ),
                    Some(&format!("run it green on `{need}` first: ktplay run FILE --env {need}")),
                );
            }
        }
    }

    // 3. Permissions and containers, before the journal or the lock is touched.
    if let Err(r) = super::preflight::check_access(&cluster, pb).await {
        let (msg, help) = r.words();
        return refuse(&mut out, msg, Some(&help));
    }
    if let Err(r) = super::preflight::check_containers(&cluster, pb).await {
        let (msg, help) = r.words();
        return refuse(&mut out, msg, Some(&help));
    }

    // 4. The journal (for resume), then the lock.
    let stored = match journal::load(&cluster, &pb.digest).await {
        Ok(s) => s,
        Err(e) => return Outcome::Usage(e),
    };
    let unfinished = stored
        .as_ref()
        .is_some_and(|s| matches!(s.status(), Some("running") | Some("aborted")));
    let (run_id, previous) = if opts.resume {
        match &stored {
            Some(s) if unfinished => (s.run().unwrap_or("resumed").to_string(), s.events()),
            Some(s) => {
                return refuse(
                    &mut out,
                    format!(
                    "nothing to resume: the last run of this playbook ({}) ended with status `{}`",
                    s.run().unwrap_or("?"),
                    s.status().unwrap_or("?")
                ),
                    None,
                )
            }
            None => {
                return refuse(
                    &mut out,
                    "nothing to resume: no journal of this playbook in the cluster".into(),
                    None,
                )
            }
        }
    } else {
        (new_run_id(), Vec::new())
    };
    let lock = match RunLock::acquire(
        &cluster,
        &pb.name,
        &run_id,
        &super::lock::objects_of(pb),
    )
    .await
    {
        Ok(l) => l,
        Err(LockError::Held { holder, .. })
            if unfinished && !opts.resume && super::lock::holder_gone(&holder) =>
        {
            return refuse(
                &mut out,
                format!(
                    "an earlier run of this playbook ({}) was interrupted: its process ({holder}) is gone",
                    stored.as_ref().and_then(|s| s.run()).unwrap_or("?")
                ),
                Some("continue it with --resume (see `ktplay status`)"),
            )
        }
        Err(e @ LockError::Held { .. }) => return refuse(
            &mut out,
            e.to_string(),
            Some("wait for it to finish; if its process is gone, `ktplay unlock --force LOCK_ID`"),
        ),
        Err(LockError::Api(m)) => return Outcome::Usage(m),
    };
    if unfinished && !opts.resume {
        lock.release().await;
        return refuse(
            &mut out,
            format!(
                "an earlier run of this playbook ({}) was interrupted",
                stored.as_ref().and_then(|s| s.run()).unwrap_or("?")
            ),
            Some("continue it with --resume (see `ktplay status`)"),
        );
    }
    let progress = super::events::progress(&previous);
    // An interrupted rollback (a second signal, a kill, a lost connection, a failed step) is
    // continued to its end: the plan is rebuilt from the journal's records.
    let resume_rollback = if opts.resume { progress.rollback } else { None };
    // From here on every write (actions, rollback steps, the journal) first proves that this
    // process still holds the lock.
    let cluster = cluster.fenced(lock.fence());
    let journal = match Journal::open(
        Some(cluster.clone()),
        &pb.name,
        &pb.digest,
        &env_name,
        &run_id,
        opts.journal_file.as_ref(),
        redact.clone(),
        previous.clone(),
        stored
            .as_ref()
            .and_then(|s| s.data.get("last_success").cloned()),
    ) {
        Ok(j) => j,
        Err(e) => {
            lock.release().await;
            return Outcome::Usage(format!("cannot open the journal file: {e}"));
        }
    };
    if opts.cancel.interrupted() {
        lock.release().await;
        return refuse(
            &mut out,
            "interrupted before any action: nothing was changed".into(),
            None,
        );
    }
    if let Ok(mut slot) = journal_slot.lock() {
        *slot = Some(journal.clone());
    }

    let program = crate::check::model::to_model(pb);
    let roles = program.roles();
    let mut ex = Exec {
        pb: Arc::new(pb.clone()),
        target: &target,
        program,
        roles,
        cluster,
        live: live0,
        out,
        journal,
        redact,
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default(),
        started: pb.stages.iter().map(|_| Vec::new()).collect(),
        first: progress.first.clone(),
        left: BTreeMap::new(),
        changed: !progress.done.is_empty() || progress.half_done.is_some(),
        done: progress.done.iter().copied().collect(),
        half_done: progress
            .half_done
            .map(|at| (at, progress.records.get(&at).cloned())),
        never: Cancel::new(),
        statements: 0,
        stage: std::sync::Mutex::new(String::new()),
        opts,
    };
    // What earlier processes of this run started: the statements that ended (so a failure now
    // still rolls them back) and, when resuming a rollback, every statement that started (the
    // failed one too: its record is what the plan restores).
    for ((k, j), record) in &progress.records {
        if ex.done.contains(&(*k, *j)) || resume_rollback.is_some() {
            let Some(st) = pb.stages.get(*k).and_then(|s| s.stmts.get(*j)) else {
                continue;
            };
            let text = ex.describe(&st.op);
            ex.started[*k].push(Started {
                stmt: *j,
                span: st.span,
                text,
                record: Some(record.clone()),
            });
        }
    }
    let outcome = match resume_rollback {
        Some(rb) => ex.resume_rollback(&lock, rb).await,
        None => ex.run(&lock).await,
    };
    if outcome != Outcome::LockLost {
        if let Err(e) = ex.journal.finish(journal_status(&outcome)).await {
            eprintln!("warning: {e}");
        }
    }
    lock.release().await;
    outcome
}

fn journal_status(o: &Outcome) -> &'static str {
    o.word()
}

fn new_run_id() -> String {
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08x}")
}

/// Ctrl-C, SIGTERM (what a Kubernetes Job's deletion or a CI cancel sends) and SIGHUP (a closed
/// terminal) all mean the same: the first abandons the current statement safely and the run
/// rolls back; a second stops at once, with the journal saying where (`--resume` finishes).
fn spawn_signal_handler(cancel: Cancel, journal: JournalSlot) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let mut term = signal(SignalKind::terminate()).ok();
        let mut hup = signal(SignalKind::hangup()).ok();
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        loop {
            let name = tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    if r.is_err() {
                        return;
                    }
                    "Ctrl-C"
                }
                _ = next(&mut term) => "SIGTERM",
                _ = next(&mut hup) => "SIGHUP",
            };
            if cancel.interrupt() == 1 {
                eprintln!("\ninterrupted ({name}): abandoning the current statement safely, then rolling back (a second signal stops at once)");
            } else {
                let journal = journal.lock().ok().and_then(|j| j.clone());
                let Some(journal) = journal else {
                    eprintln!("\nstopped at once by a second signal ({name}), before any action: nothing was changed");
                    std::process::exit(super::exit::REFUSED);
                };
                journal
                    .abort_now(&format!(
                        "stopped at once by a second signal ({name}); the events before this one say where"
                    ))
                    .await;
                eprintln!("\nstopped at once by a second signal ({name}): the cluster may be mid-change; `ktplay status` shows the journal, `ktplay run --resume` finishes the job");
                std::process::exit(super::exit::INCOMPLETE);
            }
        }
    })
}

fn finding_text(f: &StateFinding, m: &Matrix) -> String {
    match f {
        StateFinding::Incompatible {
            hub,
            hub_version,
            peer,
            peer_version,
            row,
            allowed,
        } => format!(
            "{peer} {peer_version} may not run beside {hub} {hub_version} ({} allows {})",
            m.describe_row(*row),
            Matrix::describe_allowed(peer, allowed)
        ),
        StateFinding::NoRow { hub, version } => {
            format!("matrix `{}` has no row for {hub} {version}", m.name)
        }
        StateFinding::Eol { hub, version, .. } => format!("{hub} {version} is end of life"),
    }
}

impl<'a> Exec<'a> {
    fn scope(&self) -> Scope<'_> {
        Scope::new(&self.pb, self.target.env, &self.live)
    }

    fn describe(&self, op: &Op) -> String {
        crate::describe::describe(op, &self.scope())
    }

    fn line(&self, span: Span) -> usize {
        line_of(self.target.checked, span)
    }

    fn comp(&self, i: usize) -> &crate::check::program::Component {
        &self.pb.components[i]
    }

    /// The versions each component serves. A blue-green component serves from the colour its
    /// Service selects: the idle colour takes no traffic (it may run anything, the previous
    /// version after a success, the new one during a switch), so it is neither drift nor part
    /// of the state the matrix judges — as the model has it after a switch back.
    async fn live_state(&self) -> Result<State, Failure> {
        let mut s = State::new();
        for (i, c) in self.pb.components.iter().enumerate() {
            let versions = match (&c.workload, self.live.colours.get(&i)) {
                (Workload::BlueGreen(bg), Some(col)) => {
                    let serving = match col {
                        Colour::Blue => bg.blue.as_str(),
                        Colour::Green => bg.green.as_str(),
                    };
                    self.cluster.versions_of(c, &[serving]).await?
                }
                _ => self.cluster.live_versions(c).await?,
            };
            s.insert(c.name.clone(), versions);
        }
        Ok(s)
    }

    async fn read_colours(&mut self) -> Result<(), Failure> {
        for (i, c) in self.pb.components.iter().enumerate() {
            if c.is_blue_green() {
                let col = live_colour(&self.cluster, c).await?;
                self.live.colours.insert(i, col);
            }
        }
        Ok(())
    }

    /// What this process leaves a component's deployments as, after an action on it.
    async fn remember_left(&mut self, comp: usize) {
        let deploys: Vec<String> = self
            .comp(comp)
            .deployments()
            .iter()
            .map(|d| d.to_string())
            .collect();
        for d in deploys {
            if let Ok(snap) = self.cluster.snap(&d).await {
                self.left.insert(d, snap);
            }
        }
    }

    /// Fail if a deployment this run changed was changed by someone else since (an image, the
    /// restart annotation, the strategy): two writers on one system must not go unnoticed.
    async fn check_left(&self) -> Result<(), Failure> {
        for (name, was) in &self.left {
            let now = self.cluster.snap(name).await?;
            if now.images != was.images
                || now.restarted_at != was.restarted_at
                || now.strategy != was.strategy
            {
                let differs: Vec<String> = now
                    .images
                    .iter()
                    .filter(|(c, img)| was.image(c) != Some(img.as_str()))
                    .map(|(c, img)| {
                        format!(
                            "container `{c}` runs {img}, this run left {}",
                            was.image(c).unwrap_or("nothing")
                        )
                    })
                    .collect();
                return Err(Failure::new(format!(
                    "deployment `{name}` was changed by someone else since this run changed it{}",
                    if differs.is_empty() {
                        " (its restart annotation or strategy)".to_string()
                    } else {
                        format!(": {}", differs.join("; "))
                    }
                ))
                .help("another tool or person is changing the system during the run; the run stops and rolls back what it did"));
            }
        }
        Ok(())
    }

    /// Refuse a state the matrix forbids.
    fn check_states(&self, states: &[State], what: &str) -> Result<(), Failure> {
        let Some(m) = self.target.matrix else {
            return Ok(());
        };
        for s in states {
            let bad: Vec<String> = m
                .check_state(s, &self.roles)
                .iter()
                .filter(|f| f.is_error())
                .map(|f| finding_text(f, m))
                .collect();
            if !bad.is_empty() {
                return Err(Failure::refused(format!(
                    "refused before {what}: it would create the state {} which matrix `{}` forbids: {}",
                    format_state(s),
                    m.name,
                    bad.join("; ")
                ))
                .help("the live versions differ from what the playbook expects; check `ktplay status` and the cluster"));
            }
        }
        Ok(())
    }

    async fn run(&mut self, lock: &RunLock) -> Outcome {
        let pb = self.pb.clone();
        let env = self.target.env.map(|e| e.name.as_str()).unwrap_or("-");
        let resumed = !self.done.is_empty() || self.half_done.is_some();
        let header = format!(
            "{} playbook \"{}\" on env {env} (namespace {}, digest {}, lock {}){}",
            self.opts.label,
            pb.name,
            self.cluster.ns,
            &pb.digest[..12.min(pb.digest.len())],
            lock.id(),
            if resumed { ", resuming" } else { "" }
        );
        self.out.header(
            &header,
            json!({"playbook": pb.name, "env": env, "namespace": self.cluster.ns, "digest": pb.digest, "lock": lock.id(), "run": self.journal.run_id, "resume": resumed}),
        );
        if let Err(e) = self
            .journal
            .record(if resumed {
                RunEvent::Resume {
                    playbook: pb.name.clone(),
                    env: env.to_string(),
                }
            } else {
                RunEvent::RunStart {
                    playbook: pb.name.clone(),
                    env: env.to_string(),
                }
            })
            .await
        {
            return self
                .refused(Failure::new(format!("{e}; no action was taken")).help(
                    "ktplay keeps its journal in a ConfigMap of the namespace: give the run's user get, create and patch on configmaps there",
                ))
                .await;
        }
        if let Err(f) = self.read_colours().await {
            return self.refused(f).await;
        }
        // Drift: live versions against `from` (not when resuming: this run changed them).
        let live = match self.live_state().await {
            Ok(l) => l,
            Err(f) => return self.refused(f).await,
        };
        if !resumed {
            let drift: Vec<String> = pb
                .components
                .iter()
                .filter(|c| live.get(&c.name) != Some(&BTreeSet::from([c.from.clone()])))
                .map(|c| {
                    format!(
                        "{} runs {} but the playbook says from {}",
                        c.name,
                        live.get(&c.name)
                            .map(|s| format_set(s.iter()))
                            .unwrap_or_else(|| "nothing".into()),
                        c.from
                    )
                })
                .collect();
            if !drift.is_empty() {
                if !self.opts.accept_drift {
                    return self
                        .refused(
                            Failure::new(format!("drift: {}", drift.join("; ")))
                                .help("update `from` in the playbook, or pass --accept-drift to start from the live versions (re-checked against the matrix)"),
                        )
                        .await;
                }
                self.out.note(&format!(
                    "accepting drift (--accept-drift): {}",
                    drift.join("; ")
                ));
                self.journal
                    .note(RunEvent::DriftAccepted {
                        message: drift.join("; "),
                    })
                    .await;
            }
        }
        if let Err(f) = self.check_states(std::slice::from_ref(&live), "the run") {
            return self.refused(f).await;
        }

        for (k, stage) in pb.stages.iter().enumerate() {
            self.out.stage(&stage.name, self.line(stage.span));
            if let Ok(mut s) = self.stage.lock() {
                s.clone_from(&stage.name);
            }
            self.journal
                .note(RunEvent::Stage {
                    stage: k,
                    name: stage.name.clone(),
                })
                .await;
            for (j, st) in stage.stmts.iter().enumerate() {
                if let Err((span, f)) = self.statement(k, j, st).await {
                    return self.fail(k, span, f).await;
                }
            }
        }
        let state = self.live_state().await.unwrap_or_default();
        let text = format!(
            "succeeded: {} stages, {} statements; now {}",
            pb.stages.len(),
            self.statements,
            self.state_words(&state)
        );
        self.journal
            .note(RunEvent::RunEnd {
                status: "succeeded".into(),
            })
            .await;
        self.out.summary(
            "succeeded",
            &text,
            json!({"exit_code": 0, "state": state_json(&state)}),
        );
        Outcome::Succeeded
    }

    fn state_words(&self, state: &State) -> String {
        self.pb
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let vs = state
                    .get(&c.name)
                    .map(|s| format_set(s.iter()))
                    .unwrap_or_default();
                match self.live.colours.get(&i) {
                    Some(col) => format!("{} {vs} (serving {})", c.name, col.as_str()),
                    None => format!("{} {vs}", c.name),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn refused(&mut self, f: Failure) -> Outcome {
        let msg = self.redact.redact(&f.message);
        let text = match &f.help {
            Some(h) => format!("refused: {msg}\n  help: {h}\n"),
            None => format!("refused: {msg}\n"),
        };
        self.out.error(&text, &msg);
        self.journal
            .note(RunEvent::Refused {
                message: msg.clone(),
            })
            .await;
        self.out.summary(
            "refused",
            &format!("refused before any action: {msg}"),
            json!({"exit_code": 3}),
        );
        Outcome::Refused(msg)
    }

    /// One top-level statement of stage `k`.
    async fn statement(
        &mut self,
        k: usize,
        j: usize,
        st: &Statement,
    ) -> Result<(), (Span, Failure)> {
        let stage = self.pb.stages[k].name.clone();
        if let Ok(mut s) = self.stage.lock() {
            s.clone_from(&stage);
        }
        let line = self.line(st.span);
        let text = self.describe(&st.op);
        self.statements += 1;
        if self.done.contains(&(k, j)) {
            self.out.end(
                &stage,
                line,
                &text,
                Mark::Skipped,
                Duration::ZERO,
                Some("done before the interruption; not repeated"),
                false,
            );
            return Ok(());
        }
        let resumed_record = match &self.half_done {
            Some((at, r)) if *at == (k, j) => Some(r.clone()),
            _ => None,
        };
        let t0 = Instant::now();
        self.out.begin(&text);
        let record = if st.op.is_action() {
            // The objects this run changed are still as it left them.
            if let Err(f) = self.check_left().await {
                return Err(self.end_failed(k, j, st, &text, t0, f).await);
            }
            // Live compatibility before acting.
            let states = match self
                .forward_states(&st.op, resumed_record.as_ref().and_then(|r| r.as_ref()))
                .await
            {
                Ok(s) => s,
                Err(f) => return Err(self.end_failed(k, j, st, &text, t0, f).await),
            };
            if let Err(f) = self.check_states(&states, "this action") {
                return Err(self.end_failed(k, j, st, &text, t0, f).await);
            }
            match resumed_record {
                Some(Some(r)) => Some(r),
                _ => match self.prepare(&st.op).await {
                    Ok(r) => r,
                    Err(f) => return Err(self.end_failed(k, j, st, &text, t0, f).await),
                },
            }
        } else {
            None
        };
        if let Some(c) = st.op_comp() {
            if st.op.is_action() && !matches!(st.op, Op::Restart { .. } | Op::Scale { .. }) {
                if let Err(f) = self.remember_first(c).await {
                    return Err(self.end_failed(k, j, st, &text, t0, f).await);
                }
            }
        }
        if let Err(e) = self
            .journal
            .record(RunEvent::Start {
                stage: k,
                stmt: j,
                line,
                statement: text.clone(),
                record: record.clone(),
            })
            .await
        {
            // The journal must know of an action before it happens, or neither --resume nor a
            // rollback by another process could find it: this one does not happen.
            let f = Failure::new(format!("{e}; the action was not started"));
            return Err(self.end_failed(k, j, st, &text, t0, f).await);
        }
        if record.is_some() {
            self.changed = true;
            self.started[k].push(Started {
                stmt: j,
                span: st.span,
                text: text.clone(),
                record: record.clone(),
            });
        }
        let cancel = self.opts.cancel.clone();
        match self.perform(k, j, st, record, false, &cancel).await {
            Ok(detail) => {
                if let Some(c) = st.op_comp() {
                    self.remember_left(c).await;
                }
                self.out.end(
                    &stage,
                    line,
                    &text,
                    Mark::Ok,
                    t0.elapsed(),
                    (!detail.is_empty()).then_some(detail.as_str()),
                    false,
                );
                self.journal
                    .note(RunEvent::End {
                        stage: k,
                        stmt: j,
                        ok: true,
                        detail: Some(detail.clone()),
                        message: None,
                    })
                    .await;
                Ok(())
            }
            Err((span, f)) => {
                self.out.end(
                    &stage,
                    line,
                    &text,
                    Mark::Failed,
                    t0.elapsed(),
                    Some(&f.message),
                    false,
                );
                self.journal
                    .note(RunEvent::End {
                        stage: k,
                        stmt: j,
                        ok: false,
                        detail: None,
                        message: Some(f.message.clone()),
                    })
                    .await;
                Err((span, f))
            }
        }
    }

    async fn end_failed(
        &mut self,
        k: usize,
        j: usize,
        st: &Statement,
        text: &str,
        t0: Instant,
        f: Failure,
    ) -> (Span, Failure) {
        let stage = self.pb.stages[k].name.clone();
        if let Ok(mut s) = self.stage.lock() {
            s.clone_from(&stage);
        }
        self.out.end(
            &stage,
            self.line(st.span),
            text,
            Mark::Failed,
            t0.elapsed(),
            Some(&f.message),
            false,
        );
        self.journal
            .note(RunEvent::End {
                stage: k,
                stmt: j,
                ok: false,
                detail: None,
                message: Some(f.message.clone()),
            })
            .await;
        (st.span, f)
    }

    async fn forward_states(
        &self,
        op: &Op,
        record: Option<&Record>,
    ) -> Result<Vec<State>, Failure> {
        if self.target.matrix.is_none() {
            return Ok(Vec::new());
        }
        let live = self.live_state().await?;
        if let (Op::Undo { comp, .. }, Some(Record::Undo { targets, .. })) = (op, record) {
            let c = self.comp(*comp);
            let set = versions_of_snaps(targets.iter().map(|(_, _, t)| t), &c.container);
            return Ok(model::restore_states(&live, &c.name, &set));
        }
        if let Op::Undo { comp, revision } = op {
            let c = self.comp(*comp);
            if !c.is_blue_green() {
                let mut set = BTreeSet::new();
                for d in c.deployments() {
                    let (_, t) = self.cluster.undo_target(d, *revision).await?;
                    set.extend(versions_of_snaps([&t], &c.container));
                }
                return Ok(model::restore_states(&live, &c.name, &set));
            }
        }
        Ok(model::forward_states(&self.program, &live, &model_op(op)))
    }

    async fn snaps(&self, comp: usize) -> Result<Vec<Snap>, Failure> {
        let mut out = Vec::new();
        for d in self.comp(comp).deployments() {
            out.push(self.cluster.snap(d).await?);
        }
        Ok(out)
    }

    async fn remember_first(&mut self, comp: usize) -> Result<(), Failure> {
        if self.first.contains_key(&comp) {
            return Ok(());
        }
        let c = self.comp(comp).clone();
        let selector = match &c.workload {
            Workload::BlueGreen(bg) => {
                let sel = self.cluster.selector(&bg.service).await?;
                sel.get(&bg.selector)
                    .map(|v| (bg.service.clone(), bg.selector.clone(), v.clone()))
            }
            Workload::Deployments(_) => None,
        };
        let first = First {
            deployments: self.snaps(comp).await?,
            selector,
        };
        self.journal
            .record(RunEvent::First {
                comp,
                first: first.clone(),
            })
            .await
            .map_err(|e| Failure::new(format!("{e}; the action was not started")))?;
        self.first.insert(comp, first);
        Ok(())
    }

    /// What an action will replace, read before it acts.
    async fn prepare(&self, op: &Op) -> Result<Option<Record>, Failure> {
        Ok(match op {
            Op::Rolling { comp, .. } => Some(Record::Templates {
                comp: *comp,
                deployments: self.snaps(*comp).await?,
            }),
            Op::Canary { comp, .. } => Some(Record::Canary {
                comp: *comp,
                canaries: self
                    .comp(*comp)
                    .deployments()
                    .iter()
                    .map(|d| canary_name(d))
                    .collect(),
                promoted: None,
            }),
            Op::BlueGreen { comp, .. } | Op::Switch { comp, .. } => {
                let Workload::BlueGreen(bg) = &self.comp(*comp).workload else {
                    return Err(Failure::new(format!(
                        "{} is not blue-green",
                        self.comp(*comp).name
                    )));
                };
                let col = live_colour(&self.cluster, self.comp(*comp)).await?;
                let idle = match op {
                    Op::BlueGreen { .. } => Some(
                        self.cluster
                            .snap(match col.other() {
                                Colour::Blue => &bg.blue,
                                Colour::Green => &bg.green,
                            })
                            .await?,
                    ),
                    _ => None,
                };
                Some(Record::Selector {
                    comp: *comp,
                    service: bg.service.clone(),
                    key: bg.selector.clone(),
                    value: col.as_str().to_string(),
                    idle,
                })
            }
            Op::Scale { comp, .. } => {
                let mut replicas = Vec::new();
                for d in self.comp(*comp).deployments() {
                    replicas.push((d.to_string(), self.cluster.replicas(d).await?));
                }
                Some(Record::Replicas {
                    comp: *comp,
                    replicas,
                })
            }
            Op::Restart { comp, .. } => Some(Record::Restart {
                comp: *comp,
                at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
            Op::Undo { comp, revision } => {
                let c = self.comp(*comp);
                if c.is_blue_green() {
                    // Outside rollback blocks, undo of a blue-green component switches back.
                    let Workload::BlueGreen(bg) = &c.workload else {
                        unreachable!()
                    };
                    let col = live_colour(&self.cluster, c).await?;
                    Some(Record::Selector {
                        comp: *comp,
                        service: bg.service.clone(),
                        key: bg.selector.clone(),
                        value: col.as_str().to_string(),
                        idle: None,
                    })
                } else {
                    let mut targets = Vec::new();
                    for d in c.deployments() {
                        let (rev, t) = self.cluster.undo_target(d, *revision).await?;
                        targets.push((d.to_string(), rev, t));
                    }
                    Some(Record::Undo {
                        comp: *comp,
                        targets,
                    })
                }
            }
            _ => None,
        })
    }

    fn shorten(&self, d: Duration) -> (Duration, Option<String>) {
        match self.opts.shorten_waits {
            Some(max) if d > max => (
                max,
                Some(format!(
                    "rehearsal: {} shortened to {}",
                    crate::syntax::format_duration(d),
                    crate::syntax::format_duration(max)
                )),
            ),
            _ => (d, None),
        }
    }

    async fn wait_all(
        &self,
        deploys: &[String],
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<(), Failure> {
        let waits = deploys
            .iter()
            .map(|d| self.cluster.wait_rollout(d, timeout, cancel));
        for r in futures::future::join_all(waits).await {
            r?;
        }
        Ok(())
    }

    /// Carry out one statement. `in_rollback`: inside a rollback block (`undo` restores the
    /// first change). Returns a detail line.
    async fn perform(
        &mut self,
        k: usize,
        j: usize,
        st: &Statement,
        record: Option<Record>,
        in_rollback: bool,
        cancel: &Cancel,
    ) -> StmtResult {
        let span = st.span;
        let e = |f: Failure| (span, f);
        let pb = self.pb.clone();
        match &st.op {
            Op::Rolling {
                comp,
                to,
                max_unavailable,
                max_surge,
                timeout,
            } => {
                let c = &pb.components[*comp];
                for d in c.deployments() {
                    self.cluster
                        .set_image(d, &c.container, &c.image, to, *max_unavailable, *max_surge)
                        .await
                        .map_err(|x| e(x.into()))?;
                }
                let ds: Vec<String> = c.deployments().iter().map(|s| s.to_string()).collect();
                self.wait_all(&ds, timeout.unwrap_or(DEFAULT_TIMEOUT), cancel)
                    .await
                    .map_err(e)?;
                Ok(format!("{} at {to}", ds.join(", ")))
            }
            Op::Canary {
                comp,
                to,
                weight,
                steps,
                duration,
                guards,
                timeout,
            } => {
                let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
                let c = &pb.components[*comp];
                let mut canaries = Vec::new();
                for d in c.deployments() {
                    let replicas = self.cluster.replicas(d).await.map_err(|x| e(x.into()))?;
                    let n = ((replicas * *weight as i64) as f64 / 100.0).ceil().max(1.0) as i64;
                    let name = self
                        .cluster
                        .create_canary(d, &c.container, &c.image, to, n)
                        .await
                        .map_err(|x| e(x.into()))?;
                    canaries.push(name);
                    if c.traffic.is_none() {
                        self.out
                            .note(&format!("    {}", super::output::pod_share(n, replicas)));
                    }
                }
                self.wait_all(&canaries, timeout, cancel).await.map_err(e)?;
                if let Some(t) = &c.traffic {
                    let d = super::traffic::route(&self.cluster, t, *weight)
                        .await
                        .map_err(e)?;
                    self.out.note(&format!("    {d}"));
                }
                let (d, note) = self.shorten(duration.unwrap_or(Duration::ZERO));
                if let Some(n) = note {
                    self.out.note(&format!("    {n}"));
                }
                let mut rounds = 0;
                // Each step (one for `weight P%`) for its time, guards throughout.
                for (si, w) in steps.iter().enumerate() {
                    if si > 0 {
                        let said = super::traffic::step(&self.cluster, c, &canaries, *w)
                            .await
                            .map_err(e)?;
                        self.wait_all(&canaries, timeout, cancel).await.map_err(e)?;
                        self.out.note(&format!("    step {}: {said}", si + 1));
                    }
                    let end = Instant::now() + d;
                    let first = rounds;
                    loop {
                        rounds += 1;
                        self.nested_guards(k, guards, rounds == first + 1, cancel)
                            .await?;
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        if !cancel.sleep((end - now).min(Duration::from_secs(5))).await {
                            return Err(e(Failure::interrupted()));
                        }
                    }
                }
                // Promote: a rolling update of the main deployments, then remove the canary.
                let snaps = self.snaps(*comp).await.map_err(e)?;
                let promoted = Record::Canary {
                    comp: *comp,
                    canaries: canaries.clone(),
                    promoted: Some(snaps),
                };
                if !in_rollback {
                    if let Some(s) = self.started[k].iter_mut().rev().find(|s| s.stmt == j) {
                        s.record = Some(promoted.clone());
                    }
                    self.journal
                        .note(RunEvent::Record {
                            stage: k,
                            stmt: j,
                            record: promoted.clone(),
                        })
                        .await;
                }
                for dname in c.deployments() {
                    self.cluster
                        .set_image(dname, &c.container, &c.image, to, None, None)
                        .await
                        .map_err(|x| e(x.into()))?;
                }
                let ds: Vec<String> = c.deployments().iter().map(|s| s.to_string()).collect();
                self.wait_all(&ds, timeout, cancel).await.map_err(e)?;
                if let Some(t) = &c.traffic {
                    super::traffic::unroute(&self.cluster, t).await.map_err(e)?;
                }
                for cn in &canaries {
                    self.cluster
                        .delete_deployment(cn)
                        .await
                        .map_err(|x| e(x.into()))?;
                }
                Ok(format!(
                    "canary {} checked {rounds} time{}, promoted, removed",
                    canaries.join(", "),
                    if rounds == 1 { "" } else { "s" }
                ))
            }
            Op::BlueGreen {
                comp,
                to,
                guards,
                timeout,
            } => {
                let c = &pb.components[*comp];
                let Workload::BlueGreen(bg) = &c.workload else {
                    return Err(e(Failure::new(format!("{} is not blue-green", c.name))));
                };
                let live = live_colour(&self.cluster, c)
                    .await
                    .map_err(|x| e(x.into()))?;
                self.live.colours.insert(*comp, live);
                let idle = live.other();
                let idle_deploy = match idle {
                    Colour::Blue => &bg.blue,
                    Colour::Green => &bg.green,
                };
                self.cluster
                    .set_image(idle_deploy, &c.container, &c.image, to, None, None)
                    .await
                    .map_err(|x| e(x.into()))?;
                self.wait_all(
                    std::slice::from_ref(idle_deploy),
                    timeout.unwrap_or(DEFAULT_TIMEOUT),
                    cancel,
                )
                .await
                .map_err(e)?;
                self.nested_guards(k, guards, true, cancel).await?;
                self.cluster
                    .set_selector(&bg.service, &bg.selector, idle.as_str())
                    .await
                    .map_err(|x| e(x.into()))?;
                self.live.colours.insert(*comp, idle);
                Ok(format!(
                    "{idle_deploy} at {to}; Service {} now selects {}",
                    bg.service,
                    idle.as_str()
                ))
            }
            Op::Restart { comp, timeout } => {
                let c = &pb.components[*comp];
                let at = match &record {
                    Some(Record::Restart { at, .. }) => at.clone(),
                    _ => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                };
                for d in c.deployments() {
                    self.cluster
                        .restart(d, &at)
                        .await
                        .map_err(|x| e(x.into()))?;
                }
                let ds: Vec<String> = c.deployments().iter().map(|s| s.to_string()).collect();
                self.wait_all(&ds, timeout.unwrap_or(DEFAULT_TIMEOUT), cancel)
                    .await
                    .map_err(e)?;
                Ok(String::new())
            }
            Op::Undo { comp, .. } => {
                if in_rollback {
                    return self.undo_to_first(*comp, cancel).await.map_err(e);
                }
                let c = &pb.components[*comp];
                let record = match record {
                    Some(r) => Some(r),
                    None => self.prepare(&st.op).await.map_err(e)?,
                };
                match record {
                    Some(Record::Undo { targets, .. }) => {
                        for (_, _, t) in &targets {
                            self.cluster
                                .restore_snap(t)
                                .await
                                .map_err(|x| e(x.into()))?;
                        }
                        let ds: Vec<String> = targets.iter().map(|t| t.0.clone()).collect();
                        self.wait_all(&ds, DEFAULT_TIMEOUT, cancel)
                            .await
                            .map_err(e)?;
                        Ok(targets
                            .iter()
                            .map(|(d, r, _)| format!("{d} back to revision {r}"))
                            .collect::<Vec<_>>()
                            .join(", "))
                    }
                    Some(Record::Selector {
                        service,
                        key,
                        value,
                        ..
                    }) => {
                        let back = if value == "blue" {
                            Colour::Green
                        } else {
                            Colour::Blue
                        };
                        self.cluster
                            .set_selector(&service, &key, back.as_str())
                            .await
                            .map_err(|x| e(x.into()))?;
                        self.live.colours.insert(*comp, back);
                        Ok(format!("Service {service} now selects {}", back.as_str()))
                    }
                    _ => Err(e(Failure::new(format!("cannot undo {}", c.name)))),
                }
            }
            Op::Switch { comp, colour } => {
                let c = &pb.components[*comp];
                let Workload::BlueGreen(bg) = &c.workload else {
                    return Err(e(Failure::new(format!("{} is not blue-green", c.name))));
                };
                self.cluster
                    .set_selector(&bg.service, &bg.selector, colour.as_str())
                    .await
                    .map_err(|x| e(x.into()))?;
                self.live.colours.insert(*comp, *colour);
                Ok(format!(
                    "Service {} now selects {}",
                    bg.service,
                    colour.as_str()
                ))
            }
            Op::Scale {
                comp,
                replicas,
                timeout,
            } => {
                let c = &pb.components[*comp];
                for d in c.deployments() {
                    self.cluster
                        .scale(d, *replicas as i64)
                        .await
                        .map_err(|x| e(x.into()))?;
                }
                let ds: Vec<String> = c.deployments().iter().map(|s| s.to_string()).collect();
                self.wait_all(&ds, timeout.unwrap_or(DEFAULT_TIMEOUT), cancel)
                    .await
                    .map_err(e)?;
                Ok(String::new())
            }
            Op::Pause(d) => {
                let (d, note) = self.shorten(*d);
                if !cancel.sleep(d).await {
                    return Err(e(Failure::interrupted()));
                }
                Ok(note.unwrap_or_default())
            }
            Op::Approve(q) => {
                let question = self.scope().render(q, Mode::Display).unwrap_or_default();
                guards::approve(&question, self.opts.approve, cancel)
                    .await
                    .map_err(e)
            }
            Op::Guard(g) => self.guard(g, cancel).await.map_err(e),
        }
    }

    async fn guard(
        &self,
        g: &crate::check::program::Guard,
        cancel: &Cancel,
    ) -> Result<String, Failure> {
        let scope = self.scope();
        let env = GuardEnv {
            scope: &scope,
            playbook: self.pb.clone(),
            cluster: &self.cluster,
            http: &self.http,
            rewrite: &self.opts.rewrite,
            scripts: self.opts.scripts.as_ref(),
            cancel,
            redact: &self.redact,
            stage: self.stage.lock().map(|s| s.clone()).unwrap_or_default(),
        };
        guards::run_guard(g, &env).await
    }

    /// The guards inside `canary` / `blue_green`; `show`: print a line each.
    async fn nested_guards(
        &mut self,
        k: usize,
        guards: &[Statement],
        show: bool,
        cancel: &Cancel,
    ) -> Result<(), (Span, Failure)> {
        let stage = self.pb.stages[k].name.clone();
        if let Ok(mut s) = self.stage.lock() {
            s.clone_from(&stage);
        }
        for g in guards {
            let text = format!("  {}", self.describe(&g.op));
            let t0 = Instant::now();
            let res = match &g.op {
                Op::Guard(guard) => self.guard(guard, cancel).await,
                other => Err(Failure::new(format!(
                    "only guards may stand inside canary and blue_green blocks, found `{}`",
                    self.describe(other)
                ))),
            };
            match res {
                Ok(d) => {
                    // A metric guard's evaluations are shown and journaled every round.
                    let metric =
                        matches!(&g.op, Op::Guard(x) if matches!(x.kind, GuardKind::Metric(_)));
                    if metric {
                        self.journal
                            .note(RunEvent::Evaluated {
                                stage: k,
                                line: self.line(g.span),
                                detail: d.clone(),
                            })
                            .await;
                    }
                    if show || metric {
                        self.out.end(
                            &stage,
                            self.line(g.span),
                            &text,
                            Mark::Ok,
                            t0.elapsed(),
                            (!d.is_empty()).then_some(d.as_str()),
                            false,
                        );
                    }
                }
                Err(f) => {
                    self.out.end(
                        &stage,
                        self.line(g.span),
                        &text,
                        Mark::Failed,
                        t0.elapsed(),
                        Some(&f.message),
                        false,
                    );
                    return Err((g.span, f));
                }
            }
        }
        Ok(())
    }

    /// `undo C` inside a rollback block: back to what C ran before this run first changed it.
    async fn undo_to_first(&mut self, comp: usize, cancel: &Cancel) -> Result<String, Failure> {
        let Some(first) = self.first.get(&comp).cloned() else {
            return Ok(format!(
                "nothing to undo: this run did not change {}",
                self.comp(comp).name
            ));
        };
        let mut changed = Vec::new();
        for d in self.comp(comp).deployments() {
            let cn = canary_name(d);
            if self.cluster.deployment_exists(&cn).await? {
                self.cluster.delete_deployment(&cn).await?;
                changed.push(format!("removed {cn}"));
            }
        }
        let mut waits = Vec::new();
        for s in &first.deployments {
            if self.cluster.restore_snap(s).await? {
                waits.push(s.name.clone());
            }
        }
        self.wait_all(&waits, DEFAULT_TIMEOUT, cancel).await?;
        changed.extend(waits.iter().map(|w| format!("{w} restored")));
        if let Some((svc, key, value)) = &first.selector {
            let cur = self.cluster.selector(svc).await?;
            if cur.get(key) != Some(value) {
                self.cluster.set_selector(svc, key, value).await?;
                self.live.colours.insert(
                    comp,
                    if value == "green" {
                        Colour::Green
                    } else {
                        Colour::Blue
                    },
                );
                changed.push(format!("Service {svc} selects {value} again"));
            }
        }
        Ok(if changed.is_empty() {
            "already as before the run".into()
        } else {
            changed.join(", ")
        })
    }

    async fn restore_snaps(&self, snaps: &[Snap], cancel: &Cancel) -> Result<Vec<String>, Failure> {
        let mut waits = Vec::new();
        for s in snaps {
            if self.cluster.restore_snap(s).await? {
                waits.push(s.name.clone());
            }
        }
        self.wait_all(&waits, DEFAULT_TIMEOUT, cancel).await?;
        Ok(waits)
    }

    /// An implicit rollback: restore exactly what the action replaced.
    async fn restore(&mut self, record: &Record, cancel: &Cancel) -> Result<String, Failure> {
        match record.clone() {
            Record::Templates { deployments, .. } => {
                let w = self.restore_snaps(&deployments, cancel).await?;
                Ok(if w.is_empty() {
                    "already as before".into()
                } else {
                    format!("{} restored", w.join(", "))
                })
            }
            Record::Canary {
                comp,
                canaries,
                promoted,
            } => {
                // The weight back to the stable backend before the canary's pods go.
                if let Some(t) = &self.pb.components[comp].traffic {
                    super::traffic::unroute(&self.cluster, t).await?;
                }
                for c in &canaries {
                    self.cluster.delete_deployment(c).await?;
                }
                let mut s = format!("removed {}", canaries.join(", "));
                if let Some(p) = promoted {
                    let w = self.restore_snaps(&p, cancel).await?;
                    if !w.is_empty() {
                        s.push_str(&format!("; {} restored", w.join(", ")));
                    }
                }
                Ok(s)
            }
            Record::Selector {
                comp,
                service,
                key,
                value,
                idle,
            } => {
                // Traffic first, then the idle colour back to what it ran.
                self.cluster.set_selector(&service, &key, &value).await?;
                self.live.colours.insert(
                    comp,
                    if value == "green" {
                        Colour::Green
                    } else {
                        Colour::Blue
                    },
                );
                let mut s = format!("Service {service} selects {value} again");
                if let Some(snap) = idle {
                    let w = self
                        .restore_snaps(std::slice::from_ref(&snap), cancel)
                        .await?;
                    if !w.is_empty() {
                        s.push_str(&format!("; {} restored", w.join(", ")));
                    }
                }
                Ok(s)
            }
            Record::Replicas { replicas, .. } => {
                for (d, n) in &replicas {
                    self.cluster.scale(d, *n).await?;
                }
                let ds: Vec<String> = replicas.iter().map(|r| r.0.clone()).collect();
                self.wait_all(&ds, DEFAULT_TIMEOUT, cancel).await?;
                Ok("replicas restored".into())
            }
            Record::Restart { .. } | Record::Undo { .. } => Ok(String::new()),
        }
    }

    async fn fail(&mut self, k: usize, span: Span, f: Failure) -> Outcome {
        let pb = self.pb.clone();
        let msg = self.redact.redact(&f.message);
        let rendered = super::render_failure(
            &self.target.checked.sources,
            span,
            &msg,
            f.help.as_deref(),
            "this failed",
            self.out.colour(),
        );
        self.out.error(&rendered, &msg);
        if f.is(FailureKind::LockLost) {
            return self.lock_lost(span).await;
        }
        self.journal
            .note(RunEvent::Failed {
                stage: k,
                line: self.line(span),
                message: msg.clone(),
            })
            .await;
        if !self.changed {
            // Nothing was changed: a refusal when the live check said no, else a failure with
            // nothing to roll back.
            if f.is(FailureKind::Refused) {
                self.out.summary(
                    "refused",
                    &format!("refused before any action: {msg}"),
                    json!({"exit_code": 3}),
                );
                return Outcome::Refused(msg);
            }
        }
        if pb.on_failure == OnFailure::Halt {
            let state = self.live_state().await.unwrap_or_default();
            let text = format!(
                "failed at line {} and halted (on_failure halt): nothing rolled back; state left: {}",
                self.line(span),
                self.state_words(&state)
            );
            self.journal
                .note(RunEvent::Halted {
                    message: text.clone(),
                })
                .await;
            self.out.summary(
                "halted",
                &text,
                json!({"exit_code": 2, "state": state_json(&state)}),
            );
            return Outcome::Halted;
        }
        self.journal
            .note(RunEvent::RollbackBegin {
                failed_stage: k,
                steps: rollback_plan(&pb, &self.started, k).len(),
            })
            .await;
        self.roll_back(k, span, f.is(FailureKind::Interrupted), 0)
            .await
    }

    /// This process lost the run lock: it stops at once, changes nothing more and rolls nothing
    /// back (the lock's new holder owns the system), and says so.
    async fn lock_lost(&mut self, span: Span) -> Outcome {
        let why = self
            .cluster
            .fence
            .as_ref()
            .and_then(|f| f.lost())
            .unwrap_or_else(|| "lost".into());
        let text = format!(
            "stopped at line {}: this process lost the run lock ({why}); it changed nothing after that and rolls nothing back: the new holder owns the system (`ktplay status` shows its journal)",
            self.line(span)
        );
        self.out.summary(
            "lock_lost",
            &text,
            json!({"exit_code": super::exit::LOCK_LOST}),
        );
        Outcome::LockLost
    }

    /// Continue the rollback an earlier process of this run began (and did not finish).
    async fn resume_rollback(&mut self, lock: &RunLock, rb: RollbackProgress) -> Outcome {
        let pb = self.pb.clone();
        let env = self.target.env.map(|e| e.name.as_str()).unwrap_or("-");
        let stage = pb.stages.get(rb.failed_stage).map(|s| s.span);
        self.out.header(
            &format!(
                "{} playbook \"{}\" on env {env} (namespace {}, lock {}), resuming the rollback after stage {} failed: {} of {} steps done",
                self.opts.label,
                pb.name,
                self.cluster.ns,
                lock.id(),
                pb.stages.get(rb.failed_stage).map(|s| s.name.as_str()).unwrap_or("?"),
                rb.done,
                rb.steps
            ),
            json!({"playbook": pb.name, "env": env, "namespace": self.cluster.ns, "lock": lock.id(), "run": self.journal.run_id, "resume": true, "rolling_back": true}),
        );
        if let Err(e) = self
            .journal
            .record(RunEvent::Resume {
                playbook: pb.name.clone(),
                env: env.to_string(),
            })
            .await
        {
            return self
                .refused(Failure::new(format!("{e}; no action was taken")))
                .await;
        }
        let Some(span) = stage else {
            return self
                .refused(Failure::new(format!(
                    "the journal names stage {} as failed, which the playbook does not have",
                    rb.failed_stage
                )))
                .await;
        };
        self.changed = true;
        self.roll_back(rb.failed_stage, span, false, rb.done).await
    }

    /// Run the rollback plan after stage `k` failed, from step `skip` on (the steps before it
    /// are done), and say how it ended.
    async fn roll_back(&mut self, k: usize, span: Span, interrupted: bool, skip: usize) -> Outcome {
        let pb = self.pb.clone();
        let steps = rollback_plan(&pb, &self.started, k);
        if skip > 0 {
            self.out.note(&format!(
                "rollback steps 1 to {skip} were done before the interruption; not repeated"
            ));
        }
        if steps.len() > skip {
            self.out.rollback_header(&format!(
            "rolling back: {} step{} (the failed stage first, then completed stages newest first)",
            steps.len(),
            if steps.len() == 1 { "" } else { "s" }
        ));
        }
        let never = self.never.clone();
        let total = steps.len();
        for (n, step) in steps.iter().enumerate().skip(skip) {
            let t0 = Instant::now();
            let (stage, text, sspan) = match step {
                Step::Implicit {
                    stage, text, span, ..
                } => (*stage, text.clone(), *span),
                Step::Block { stage, stmt } => (*stage, self.describe(&stmt.op), stmt.span),
            };
            let stage_name = pb.stages[stage].name.clone();
            self.out.begin(&text);
            self.journal
                .note(RunEvent::RollbackStep {
                    step: n,
                    stage,
                    line: self.line(sspan),
                    statement: text.to_string(),
                })
                .await;
            let res = match step {
                Step::Implicit { record, .. } => self.restore(record, &never).await,
                Step::Block { stmt, .. } => {
                    let record = if stmt.op.is_action() && !matches!(stmt.op, Op::Undo { .. }) {
                        self.prepare(&stmt.op).await.ok().flatten()
                    } else {
                        None
                    };
                    self.perform(stage, usize::MAX, stmt, record, true, &never)
                        .await
                        .map_err(|(_, f)| f)
                }
            };
            match res {
                Ok(detail) => {
                    self.out.end(
                        &stage_name,
                        self.line(sspan),
                        &text,
                        Mark::Ok,
                        t0.elapsed(),
                        (!detail.is_empty()).then_some(detail.as_str()),
                        true,
                    );
                    self.journal
                        .note(RunEvent::RollbackEnd {
                            step: n,
                            stage,
                            ok: true,
                            statement: text.to_string(),
                            detail: Some(detail.clone()),
                            message: None,
                        })
                        .await;
                }
                Err(rf) if rf.is(FailureKind::LockLost) => {
                    let rmsg = self.redact.redact(&rf.message);
                    self.out.error(&format!("{rmsg}\n"), &rmsg);
                    return self.lock_lost(sspan).await;
                }
                Err(rf) => {
                    let rmsg = self.redact.redact(&rf.message);
                    self.out.end(
                        &stage_name,
                        self.line(sspan),
                        &text,
                        Mark::Failed,
                        t0.elapsed(),
                        Some(&rmsg),
                        true,
                    );
                    let rendered = super::render_failure(
                        &self.target.checked.sources,
                        sspan,
                        &format!("rollback step failed: {rmsg}"),
                        Some("the rollback stopped here; the steps below did not run"),
                        "this rollback step failed",
                        self.out.colour(),
                    );
                    self.out.error(&rendered, &rmsg);
                    let remaining: Vec<String> = steps[n + 1..]
                        .iter()
                        .map(|s| match s {
                            Step::Implicit { text, .. } => text.clone(),
                            Step::Block { stmt, .. } => self.describe(&stmt.op),
                        })
                        .collect();
                    let state = self.live_state().await.unwrap_or_default();
                    let text = format!(
                        "failed, and the rollback is incomplete: step {} of {total} (line {}) failed; state left: {}; not run: {}",
                        n + 1,
                        self.line(sspan),
                        self.state_words(&state),
                        if remaining.is_empty() { "nothing".into() } else { remaining.join("; ") }
                    );
                    self.journal
                        .note(RunEvent::RollbackEnd {
                            step: n,
                            stage,
                            ok: false,
                            statement: text.clone(),
                            detail: None,
                            message: Some(rmsg.clone()),
                        })
                        .await;
                    self.out.summary(
                        "rollback_incomplete",
                        &text,
                        json!({"exit_code": 2, "state": state_json(&state), "not_run": remaining}),
                    );
                    return Outcome::RollbackIncomplete;
                }
            }
        }
        let state = self.live_state().await.unwrap_or_default();
        if total == 0 {
            let text = format!(
                "failed at line {}{}; nothing to roll back: {}",
                self.line(span),
                if interrupted { " (interrupted)" } else { "" },
                self.state_words(&state)
            );
            self.journal
                .note(RunEvent::RunEnd {
                    status: "rolled_back".into(),
                })
                .await;
            self.out.summary(
                "rolled_back",
                &text,
                json!({"exit_code": 1, "state": state_json(&state)}),
            );
            return Outcome::RolledBack;
        }
        let text = format!(
            "failed at line {} ({}); rolled back: {}",
            self.line(span),
            if interrupted {
                "interrupted"
            } else {
                "see above"
            },
            self.state_words(&state)
        );
        self.journal
            .note(RunEvent::RunEnd {
                status: "rolled_back".into(),
            })
            .await;
        self.out.summary(
            "rolled_back",
            &text,
            json!({"exit_code": 1, "state": state_json(&state)}),
        );
        Outcome::RolledBack
    }
}

fn state_json(s: &State) -> Value {
    json!(s
        .iter()
        .map(|(k, v)| (
            k.clone(),
            v.iter().map(|x| x.to_string()).collect::<Vec<_>>()
        ))
        .collect::<BTreeMap<_, _>>())
}

fn versions_of_snaps<'t>(
    snaps: impl IntoIterator<Item = &'t Snap>,
    container: &str,
) -> BTreeSet<crate::version::Version> {
    snaps
        .into_iter()
        .filter_map(|s| {
            s.image(container)
                .and_then(cluster::image_tag)
                .and_then(|tag| crate::version::Version::parse(tag).ok())
        })
        .collect()
}

fn model_op(op: &Op) -> model::Op {
    crate::check::model::op(op)
}

trait OpComp {
    fn op_comp(&self) -> Option<usize>;
}

impl OpComp for Statement {
    fn op_comp(&self) -> Option<usize> {
        model_op(&self.op).comp()
    }
}
