//! What every part of a run shares: the playbook, the cluster handle, the HTTP client, the
//! options and the event log ([`Log`]). Plain handles, no progress: what a run has done is in
//! its events, and the driver ([`super::driver`]) owns the loop. Actions, checks and restores
//! are functions of a `&Ctx`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::check::Checked;
use crate::matrix::Matrix;
use crate::model;
use crate::program::{Colour, Component, Env, Op, Playbook};
use crate::resolve::{Live, Scope};
use crate::span::Span;

use super::guards::UrlRewrite;
use super::kube::Cluster;
use super::log::events::{Progress, RunEvent};
use super::log::journal::Journal;
use super::log::output::Reporter;
use super::{Cancel, Failure, Redactor};

/// How long a rollout may take when the statement names no `timeout` (rollback steps too).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The run's event log: every event goes to the journal and to the output, in that order.
pub(crate) struct Log {
    journal: Option<Journal>,
    out: Mutex<Reporter>,
}

impl Log {
    pub(crate) fn new(out: Reporter) -> Log {
        Log {
            journal: None,
            out: Mutex::new(out),
        }
    }

    /// From here on events are journaled.
    pub(crate) fn open(&mut self, journal: Journal) {
        self.journal = Some(journal);
    }

    pub(crate) fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// Show an event (and nothing else: before the journal exists, or for words only).
    pub(crate) fn show(&self, ev: &RunEvent) {
        if let Ok(mut out) = self.out.lock() {
            out.show(ev);
        }
    }

    /// An event the journal must hold before its effect happens: an error means it does not,
    /// and the effect must not happen (it is not shown either).
    pub(crate) async fn record(&self, ev: RunEvent) -> Result<(), crate::run::kube::JournalError> {
        if let Some(j) = &self.journal {
            j.record(ev.clone()).await?;
        }
        self.show(&ev);
        Ok(())
    }

    /// An event after its effect (it happened whatever the journal says): a failed write is a
    /// warning.
    pub(crate) async fn note(&self, ev: RunEvent) {
        if let Some(j) = &self.journal {
            j.note(ev.clone()).await;
        }
        self.show(&ev);
    }

    /// What the events so far say: what started, what it replaced, how far a rollback got.
    pub(crate) fn progress(&self) -> Progress {
        self.journal
            .as_ref()
            .map(|j| super::log::events::progress(&j.entries()))
            .unwrap_or_default()
    }
}

/// How a run is asked to behave (from the command line).
pub struct RunOptions {
    /// `--approve`: every `approve` is answered yes.
    pub approve: bool,
    /// `--accept-drift`: start from the live versions when they differ from `from`.
    pub accept_drift: bool,
    /// `--resume`: continue the interrupted run in the journal.
    pub resume: bool,
    pub format: super::log::output::Format,
    /// `--journal FILE`.
    pub journal_file: Option<std::path::PathBuf>,
    /// Under `rehearse`: every wait (`pause`, a canary's `for`/`every`, a guard's `within`, a
    /// metric guard's `every`/`for` and its query's window) is cut to at most this.
    pub shorten_waits: Option<Duration>,
    /// Secret values by environment variable.
    pub secrets: HashMap<String, String>,
    /// URL routing (rehearse).
    pub rewrite: UrlRewrite,
    pub cancel: Cancel,
    /// Clusters of the envs this env must come `after`, by env name (promotion gate); `None`
    /// skips the gate (rehearse).
    pub after: Option<Vec<(String, Cluster)>>,
    /// A rehearsal on the embedded simulator (the header says so).
    pub rehearsal: bool,
    /// What the preflight's hazards do (issue 22): `--hazards`, `--allow-hazard`, the assumptions.
    pub hazards: super::kube::hazards::Settings,
}

impl RunOptions {
    /// A run with these secrets and this URL routing; no flags, human output, its own Ctrl-C,
    /// no promotion gate.
    pub fn new(secrets: HashMap<String, String>, rewrite: UrlRewrite) -> RunOptions {
        RunOptions {
            approve: false,
            accept_drift: false,
            resume: false,
            format: super::log::output::Format::Human,
            journal_file: None,
            shorten_waits: None,
            secrets,
            rewrite,
            cancel: Cancel::new(),
            after: None,
            rehearsal: false,
            hazards: Default::default(),
        }
    }
}

impl<'c> From<&crate::check::select::Selection<'c>> for RunTarget<'c> {
    fn from(s: &crate::check::select::Selection<'c>) -> RunTarget<'c> {
        RunTarget {
            checked: s.checked,
            index: s.index,
            env: s.env,
            matrix: s.matrix,
        }
    }
}

/// What to run: a checked file, which playbook, which env, the matrix in force.
pub struct RunTarget<'a> {
    pub checked: &'a Checked,
    pub index: usize,
    pub env: Option<&'a Env>,
    pub matrix: Option<&'a Matrix>,
}

/// The shared handles of one run.
pub(crate) struct Ctx<'a> {
    pub pb: Arc<Playbook>,
    pub checked: &'a Checked,
    pub env: Option<&'a Env>,
    pub matrix: Option<&'a Matrix>,
    pub program: model::Program,
    pub roles: BTreeMap<String, String>,
    pub cluster: Cluster,
    pub http: reqwest::Client,
    pub opts: RunOptions,
    pub redact: Redactor,
    pub log: Log,
    /// The colour each blue-green component serves, as last read or set.
    colours: Mutex<HashMap<usize, Colour>>,
    /// The stage being run or rolled back (scripts see it as `stage`).
    stage: Mutex<String>,
    /// The namespace as read for the checks before the action about to start (issue 23): set
    /// and cleared by the driver around those checks, never kept past them.
    view: Mutex<Option<Arc<super::kube::View>>>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        target: &RunTarget<'a>,
        cluster: Cluster,
        opts: RunOptions,
        log: Log,
    ) -> Ctx<'a> {
        let pb = target.checked.playbooks[target.index].1.clone();
        let program = crate::check::model::to_model(&pb);
        let roles = program.roles();
        Ctx {
            redact: Redactor::new(opts.secrets.values().cloned()),
            pb: Arc::new(pb),
            checked: target.checked,
            env: target.env,
            matrix: target.matrix,
            program,
            roles,
            cluster,
            // Redirects are held to the first request's rule (rehearsal: this machine; run: the
            // env's hosts).
            http: super::guards::client::client(super::guards::client::guard_rule(
                &target.checked.playbooks[target.index].1,
                target.env,
                &opts.rewrite,
            )),
            opts,
            log,
            colours: Mutex::new(HashMap::new()),
            stage: Mutex::new(String::new()),
            view: Mutex::new(None),
        }
    }

    /// The namespace as read for the checks before this action, if they are running.
    pub(crate) fn view(&self) -> Option<Arc<super::kube::View>> {
        self.view.lock().ok().and_then(|v| v.clone())
    }

    /// Set (before the checks of an action) or clear (after them) the view they share.
    pub(crate) fn set_view(&self, view: Option<Arc<super::kube::View>>) {
        if let Ok(mut v) = self.view.lock() {
            *v = view;
        }
    }

    /// What templates resolve against now (live colours, secrets).
    pub(crate) fn live(&self) -> Live {
        Live {
            colours: self.colours(),
            secrets: self.opts.secrets.clone(),
        }
    }

    pub(crate) fn colours(&self) -> HashMap<usize, Colour> {
        self.colours.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub(crate) fn colour(&self, comp: usize) -> Option<Colour> {
        self.colours.lock().ok().and_then(|c| c.get(&comp).copied())
    }

    pub(crate) fn set_colour(&self, comp: usize, colour: Colour) {
        if let Ok(mut c) = self.colours.lock() {
            c.insert(comp, colour);
        }
    }

    pub(crate) fn stage(&self) -> String {
        self.stage.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn set_stage(&self, k: usize) {
        if let (Ok(mut s), Some(st)) = (self.stage.lock(), self.pb.stages.get(k)) {
            s.clone_from(&st.name);
        }
    }

    /// A statement as the output and the journal show it.
    pub(crate) fn describe(&self, op: &Op) -> String {
        let live = self.live();
        crate::describe::describe(op, &Scope::new(&self.pb, self.env, &live))
    }

    /// The playbook line of a span.
    pub(crate) fn line(&self, span: Span) -> usize {
        self.checked
            .sources
            .line_col(span.file, span.start as usize)
            .0
    }

    pub(crate) fn comp(&self, i: usize) -> &Component {
        &self.pb.components[i]
    }

    pub(crate) fn env_name(&self) -> &str {
        self.env.map(|e| e.name.as_str()).unwrap_or("-")
    }

    /// Under `rehearse`, a wait longer than `--max-wait` is cut to it, and says so naming what
    /// was cut (`what`: how the playbook writes it, like `pause` or `within`).
    pub(crate) fn shorten(&self, what: &str, d: Duration) -> (Duration, Option<String>) {
        match self.opts.shorten_waits {
            Some(max) if d > max => (
                max,
                Some(format!(
                    "rehearsal: `{what} {}` shortened to {}",
                    crate::syntax::format_duration(d),
                    crate::syntax::format_duration(max)
                )),
            ),
            _ => (d, None),
        }
    }

    /// Wait for every rollout, together.
    pub(crate) async fn wait_all(
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

    /// Every deployment of a component as it is now.
    /// Before an action, from the view its checks read (one LIST, made for them).
    pub(crate) async fn snaps(&self, comp: usize) -> Result<Vec<super::kube::Snap>, Failure> {
        let mut out = Vec::new();
        let view = self.view();
        for d in self.comp(comp).deployments() {
            out.push(match &view {
                Some(v) => v.snap(d)?,
                None => self.cluster.snap(d).await?,
            });
        }
        Ok(out)
    }
}
