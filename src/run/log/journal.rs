//! The journal: every statement's start and end and every rollback step, as JSON events, kept in
//! a ConfigMap keyed by the playbook's digest (`ktplay-journal-<digest[..16]>`) and, with
//! `--journal FILE`, appended to a local file as JSON lines.
//!
//! The ConfigMap's `data`: `playbook`, `digest`, `env`, `run` (the latest run's id), `status`
//! (`running`, `succeeded`, `rolled_back`, `rollback_incomplete`, `halted`, `aborted`), `events`
//! (the latest run's events, one JSON object a line) and `last_success` (JSON: run, env, time of
//! the last run that succeeded; it survives later runs and is what the promotion gate reads).
//!
//! Events carry `stage`/`stmt` indices and, for actions, a `record` of what the action replaced,
//! so `--resume` can skip completed actions and still roll them back.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::program::{Colour, Component, Op, Playbook, Statement, Workload};
use crate::run::kube::{Cluster, JournalError};
use crate::run::log::events::{Entry, RunEvent};
use crate::run::rollback::Record;
use crate::run::shown::shown;
use crate::run::Redactor;

/// The ConfigMap name for a digest.
pub(crate) fn config_map_name(digest: &str) -> String {
    let d: String = digest.chars().take(16).collect();
    format!("ktplay-journal-{d}")
}

struct Inner {
    events: Vec<String>,
    status: String,
    file: Option<std::fs::File>,
    last_success: Option<String>,
    /// Digests of the migration files this run ships (see [`LastSuccess::migrations`]).
    migrations: BTreeMap<String, String>,
}

/// The journal of one run (cheap to clone).
#[derive(Clone)]
pub(crate) struct Journal {
    cluster: Option<Cluster>,
    name: String,
    pub run_id: String,
    playbook: String,
    digest: String,
    env: String,
    redact: Redactor,
    inner: Arc<Mutex<Inner>>,
}

/// What the cluster's journal says about a playbook digest.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stored {
    pub data: BTreeMap<String, String>,
}

impl Stored {
    pub(crate) fn status(&self) -> Option<&str> {
        self.data.get("status").map(String::as_str)
    }
    pub(crate) fn run(&self) -> Option<&str> {
        self.data.get("run").map(String::as_str)
    }
    pub(crate) fn digest(&self) -> Option<&str> {
        self.data.get("digest").map(String::as_str)
    }
    pub(crate) fn playbook(&self) -> Option<&str> {
        self.data.get("playbook").map(String::as_str)
    }
    /// The latest run's events that read as events (see [`Stored::unreadable`] for the others).
    pub(crate) fn events(&self) -> Vec<Entry> {
        self.lines().filter_map(|(_, l)| Entry::parse(l)).collect()
    }

    /// The lines of the events (numbered from 1) that are not events ktplay knows: damage, or
    /// a newer ktplay's. Reported, never skipped in silence.
    pub(crate) fn unreadable(&self) -> Vec<(usize, String)> {
        self.lines()
            .filter(|(_, l)| Entry::parse(l).is_none())
            .map(|(n, l)| (n, excerpt(l)))
            .collect()
    }

    fn lines(&self) -> impl Iterator<Item = (usize, &str)> {
        self.data
            .get("events")
            .map(String::as_str)
            .unwrap_or_default()
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l))
    }

    /// Does this journal belong to the playbook (its name and digest)? `Err` says whose it is.
    pub(crate) fn belongs_to(&self, pb: &Playbook) -> Result<(), JournalError> {
        if self.digest() == Some(pb.digest.as_str()) && self.playbook() == Some(pb.name.as_str()) {
            return Ok(());
        }
        let short = |d: &str| d.chars().take(16).collect::<String>();
        Err(JournalError::Foreign {
            name: config_map_name(&pb.digest),
            owner: self
                .playbook()
                .map_or("(none)".into(), |p| format!("`{}`", shown(p))),
            owner_digest: self.digest().map_or("(none)".into(), |d| shown(&short(d))),
            playbook: pb.name.clone(),
            digest: short(&pb.digest),
        })
    }

    /// The events of the run a `--resume` would continue, each checked against the playbook:
    /// every line an event, of this run, naming stages, statements, components and objects the
    /// playbook has, each record of the kind its statement makes. `Err` names the first line
    /// that is not, so nothing is resumed (and nothing touched) on a journal ktplay cannot trust.
    pub(crate) fn checked_events(&self, pb: &Playbook) -> Result<Vec<Entry>, JournalError> {
        self.belongs_to(pb)?;
        let cm = config_map_name(&pb.digest);
        let run = self.run().unwrap_or_default();
        let mut out = Vec::new();
        let at = |line: usize, why: String| JournalError::Line {
            line,
            name: cm.clone(),
            why,
        };
        for (n, line) in self.lines() {
            let Some(e) = Entry::parse(line) else {
                return Err(at(
                    n,
                    format!("is not an event ktplay knows: {}", excerpt(line)),
                ));
            };
            if e.run != run {
                return Err(at(
                    n,
                    format!(
                        "is of run {}, not of run {} that the journal names",
                        shown(&e.run),
                        shown(run)
                    ),
                ));
            }
            check_event(pb, &e.event).map_err(|why| at(n, why))?;
            out.push(e);
        }
        Ok(out)
    }
    /// The last successful run of this journal's playbook, as the journal's `last_success` key
    /// holds it (none when absent or unreadable).
    pub(crate) fn last_success(&self) -> Option<LastSuccess> {
        self.data
            .get("last_success")
            .and_then(|s| serde_json::from_str(s).ok())
    }
}

/// The journal's `last_success`: which run last succeeded, on which env, when (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct LastSuccess {
    pub run: String,
    pub env: String,
    pub time: String,
    /// The sha256 of every migration file up to `to` the green run shipped, by
    /// `component:path` (issue 25): a later run that finds one changed is refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub migrations: BTreeMap<String, String>,
}

/// A journal line as it may be printed: escaped and cut.
fn excerpt(line: &str) -> String {
    format!("`{}`", shown(line))
}

/// One event against the playbook (see [`Stored::checked_events`]).
fn check_event(pb: &Playbook, ev: &RunEvent) -> Result<(), String> {
    let stage = |k: usize| -> Result<&crate::program::Stage, String> {
        pb.stages.get(k).ok_or_else(|| {
            format!(
                "names stage {k}, and the playbook has {} stages",
                pb.stages.len()
            )
        })
    };
    let stmt = |k: usize, j: usize| -> Result<&Statement, String> {
        stage(k)?.stmts.get(j).ok_or_else(|| {
            format!(
                "names statement {j} of stage `{}`, which has {}",
                pb.stages[k].name,
                pb.stages[k].stmts.len()
            )
        })
    };
    match ev {
        RunEvent::RunStart { at, .. } | RunEvent::Resume { at, .. }
            if !at.digest.is_empty() && at.digest != pb.digest =>
        {
            return Err(format!(
                "is a run of another playbook version (digest {})",
                shown(&at.digest)
            ));
        }
        RunEvent::Stage { stage: k, .. }
        | RunEvent::Guard { stage: k, .. }
        | RunEvent::Failed { stage: k, .. }
        | RunEvent::RollbackBegin {
            failed_stage: k, ..
        }
        | RunEvent::RollbackStep { stage: k, .. }
        | RunEvent::RollbackEnd { stage: k, .. } => {
            stage(*k)?;
        }
        RunEvent::Skipped {
            stage: k, stmt: j, ..
        }
        | RunEvent::End {
            stage: k, stmt: j, ..
        } => {
            stmt(*k, *j)?;
        }
        RunEvent::Start {
            stage: k,
            stmt: j,
            record,
            ..
        } => {
            let st = stmt(*k, *j)?;
            if let Some(r) = record {
                check_record(pb, st, r)?;
            }
        }
        RunEvent::Record {
            stage: k,
            stmt: j,
            record,
        } => check_record(pb, stmt(*k, *j)?, record)?,
        RunEvent::First { comp, first } => {
            let c = component(pb, *comp)?;
            for s in &first.deployments {
                owned_deployment(c, &s.name)?;
            }
            if let Some((service, key, value)) = &first.selector {
                check_selector(c, service, key, value)?;
            }
        }
        // A monitor's counts continue only under a monitor the playbook declares.
        RunEvent::Monitor(r) => {
            let known = pb.monitors.iter().any(|m| m.name == r.name)
                || pb
                    .envs
                    .iter()
                    .flat_map(|e| e.monitors.iter())
                    .any(|m| m.name == r.name);
            if !known {
                return Err(format!(
                    "names a monitor the playbook does not declare: {}",
                    shown(&r.name)
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

fn component(pb: &Playbook, comp: usize) -> Result<&Component, String> {
    pb.components.get(comp).ok_or_else(|| {
        format!(
            "names component {comp}, and the playbook has {} components",
            pb.components.len()
        )
    })
}

fn owned_deployment(c: &Component, name: &str) -> Result<(), String> {
    if c.deployments().contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "names deployment `{}` for component `{}`, whose deployments are {}",
            shown(name),
            c.name,
            c.deployments().join(", ")
        ))
    }
}

fn check_selector(c: &Component, service: &str, key: &str, value: &str) -> Result<(), String> {
    let Workload::BlueGreen(bg) = &c.workload else {
        return Err(format!(
            "names a Service selector for component `{}`, which is not blue-green",
            c.name
        ));
    };
    if service != bg.service || key != bg.selector || Colour::parse(value).is_none() {
        return Err(format!(
            "names the selector `{}={}` of Service `{}`; component `{}` has `{}=blue|green` of Service `{}`",
            shown(key),
            shown(value),
            shown(service),
            c.name,
            bg.selector,
            bg.service
        ));
    }
    Ok(())
}

/// A record: of the component its statement acts on, of the kind that statement makes, naming
/// only that component's objects.
fn check_record(pb: &Playbook, st: &Statement, r: &Record) -> Result<(), String> {
    let c = component(pb, r.comp())?;
    if crate::run::live::op_comp(st) != Some(r.comp()) {
        return Err(format!(
            "holds a record of component `{}` for a statement that does not act on it",
            c.name
        ));
    }
    let fits = matches!(
        (&st.op, r),
        (Op::Rolling { .. }, Record::Templates { .. })
            | (Op::Canary { .. }, Record::Canary { .. })
            | (
                Op::BlueGreen { .. } | Op::Switch { .. } | Op::Undo { .. },
                Record::Selector { .. }
            )
            | (Op::Scale { .. }, Record::Replicas { .. })
            | (Op::Restart { .. }, Record::Restart { .. })
            | (Op::Undo { .. }, Record::Undo { .. })
    );
    if !fits {
        return Err(format!(
            "holds a `{}` record for a statement that makes none of that kind",
            record_kind(r)
        ));
    }
    match r {
        Record::Templates { deployments, .. } => {
            for s in deployments {
                owned_deployment(c, &s.name)?;
            }
        }
        Record::Canary {
            canaries,
            promoted,
            pinned,
            ..
        } => {
            for n in canaries {
                if !c
                    .deployments()
                    .iter()
                    .any(|d| crate::run::kube::canary_name(d) == *n)
                {
                    return Err(format!(
                        "names canary `{}` for component `{}`, which is not one of its deployments' canaries",
                        shown(n),
                        c.name
                    ));
                }
            }
            for s in promoted.iter().flatten() {
                owned_deployment(c, &s.name)?;
            }
            for p in pinned {
                owned_deployment(c, &p.deployment)?;
            }
        }
        Record::Selector {
            service,
            key,
            value,
            idle,
            ..
        } => {
            check_selector(c, service, key, value)?;
            if let Some(s) = idle {
                owned_deployment(c, &s.name)?;
            }
        }
        Record::Replicas { replicas, .. } => {
            for (d, n) in replicas {
                owned_deployment(c, d)?;
                if *n < 0 {
                    return Err(format!("names {n} replicas for deployment `{}`", shown(d)));
                }
            }
        }
        Record::Restart { .. } => {}
        Record::Undo { targets, .. } => {
            for (d, _, s) in targets {
                owned_deployment(c, d)?;
                owned_deployment(c, &s.name)?;
            }
        }
    }
    Ok(())
}

fn record_kind(r: &Record) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v["kind"].as_str().map(String::from))
        .unwrap_or_default()
}

/// Read the journal of a digest from a cluster; `None` when there is none.
pub(crate) async fn load(cluster: &Cluster, digest: &str) -> Result<Option<Stored>, JournalError> {
    let name = config_map_name(digest);
    Ok(cluster
        .read_journal(&name)
        .await?
        .map(|data| Stored { data }))
}

impl Journal {
    /// Open the journal of a run. `previous` are the events of a run being resumed (kept).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        cluster: Option<Cluster>,
        playbook: &str,
        digest: &str,
        env: &str,
        run_id: &str,
        file: Option<&PathBuf>,
        redact: Redactor,
        previous: Vec<Entry>,
        last_success: Option<String>,
    ) -> std::io::Result<Journal> {
        let file = match file {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => None,
        };
        Ok(Journal {
            cluster,
            name: config_map_name(digest),
            run_id: run_id.to_string(),
            playbook: playbook.to_string(),
            digest: digest.to_string(),
            env: env.to_string(),
            redact,
            inner: Arc::new(Mutex::new(Inner {
                events: previous
                    .iter()
                    .filter_map(|e| serde_json::to_string(e).ok())
                    .collect(),
                status: "running".into(),
                file,
                last_success,
                migrations: BTreeMap::new(),
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append one event (time and run id added, secrets scrubbed) locally and to the cluster.
    /// An error means the cluster's journal does not hold the event: an action it announces
    /// must not happen.
    pub(crate) async fn record(&self, ev: RunEvent) -> Result<(), JournalError> {
        self.append(ev);
        self.sync().await
    }

    /// [`Journal::record`] for events that follow an effect (it happened whatever the journal
    /// says): a failed write is a warning on stderr.
    pub(crate) async fn note(&self, ev: RunEvent) {
        if let Err(e) = self.record(ev).await {
            // After the lock was lost the cluster's journal is the new holder's: events stay in
            // the local file only, and that is expected, not a warning.
            if !self.fenced_out() {
                eprintln!("warning: {e}");
            }
        }
    }

    /// Has this process lost the run lock?
    fn fenced_out(&self) -> bool {
        self.cluster
            .as_ref()
            .and_then(|c| c.fence.as_ref())
            .is_some_and(|f| f.lost().is_some())
    }

    /// Every event of the run so far (a resumed run's earlier processes' too): the single
    /// source of truth for what started, what it replaced and how far a rollback got.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.lock()
            .events
            .iter()
            .filter_map(|l| Entry::parse(l))
            .collect()
    }

    fn append(&self, event: RunEvent) {
        let entry = Entry {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            run: self.run_id.clone(),
            event,
        };
        let line = self
            .redact
            .redact(&serde_json::to_string(&entry).unwrap_or_default());
        {
            let mut g = self.lock();
            if let Some(f) = g.file.as_mut() {
                let _ = writeln!(f, "{line}");
                let _ = f.flush();
            }
            g.events.push(line);
        }
    }

    /// The digests of the migration files this run ships, kept in `last_success` if it succeeds.
    pub(crate) fn record_migrations(&self, digests: BTreeMap<String, String>) {
        self.lock().migrations = digests;
    }

    /// Set the run's status (and `last_success` when it succeeded), then write.
    pub(crate) async fn finish(&self, status: &str) -> Result<(), JournalError> {
        // Every journal ends with a `run_end`, whatever the exit: `status` and `--resume` read
        // how the run ended from the events alone.
        let ended = self
            .lock()
            .events
            .last()
            .and_then(|l| Entry::parse(l))
            .is_some_and(|e| matches!(e.event, RunEvent::RunEnd { .. }));
        if !ended {
            self.append(RunEvent::run_end(status, String::new()));
        }
        {
            let mut g = self.lock();
            g.status = status.to_string();
            if status == "succeeded" {
                let last = LastSuccess {
                    run: self.run_id.clone(),
                    env: self.env.clone(),
                    time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    migrations: g.migrations.clone(),
                };
                g.last_success =
                    Some(serde_json::to_string(&last).expect("last_success serializes"));
            }
        }
        self.sync().await
    }

    /// The second Ctrl-C: say where the run stopped, quickly.
    pub(crate) async fn abort_now(&self, where_: &str) {
        let ev = RunEvent::Aborted {
            message: where_.to_string(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            self.append(ev);
            let _ = self.finish("aborted").await;
        })
        .await;
    }

    fn data(&self) -> BTreeMap<String, String> {
        let g = self.lock();
        let mut data = BTreeMap::new();
        data.insert("playbook".to_string(), self.playbook.clone());
        data.insert("digest".to_string(), self.digest.clone());
        data.insert("env".to_string(), self.env.clone());
        data.insert("run".to_string(), self.run_id.clone());
        data.insert("status".to_string(), g.status.clone());
        data.insert("events".to_string(), g.events.join("\n"));
        if let Some(s) = &g.last_success {
            data.insert("last_success".to_string(), s.clone());
        }
        data
    }

    /// Write the journal to its ConfigMap (merge patch; create when missing).
    async fn sync(&self) -> Result<(), JournalError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        // The journal is the lock holder's: a process that lost the lock must not overwrite
        // the new holder's.
        cluster.may_write().await.map_err(JournalError::Fenced)?;
        let data = self.data();
        let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > JOURNAL_LIMIT {
            return Err(JournalError::TooLarge {
                ns: cluster.ns.clone(),
                name: self.name.clone(),
                size,
                limit: JOURNAL_LIMIT,
            });
        }
        cluster.write_journal(&self.name, &data).await
    }
}

/// Most bytes the journal ConfigMap may hold: a ConfigMap holds at most 1 MiB, and ktplay keeps
/// room below that. A run's events are small (a record is an image per container, a revision
/// or a selector), so only a playbook of many thousands of statements comes near.
pub(crate) const JOURNAL_LIMIT: usize = 768 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_success_is_read_as_written_and_as_older_versions_wrote_it() {
        let last = LastSuccess {
            run: "93eb9429".into(),
            env: "staging".into(),
            time: "2026-12-07T19:21:27Z".into(),
            migrations: BTreeMap::new(),
        };
        let written = serde_json::to_string(&last).unwrap();
        // The bytes earlier versions wrote (a json! object of the same keys in the same order).
        assert_eq!(
            written,
            r#"{"run":"93eb9429","env":"staging","time":"2026-12-07T19:21:27Z"}"#
        );
        let stored = |v: &str| Stored {
            data: BTreeMap::from([("last_success".to_string(), v.to_string())]),
        };
        assert_eq!(stored(&written).last_success(), Some(last));
        // Not a last success: none, never a panic or a half-read value.
        assert_eq!(stored(r#"{"run":"x"}"#).last_success(), None);
        assert_eq!(stored("not json").last_success(), None);
        assert_eq!(
            Stored {
                data: BTreeMap::new()
            }
            .last_success(),
            None
        );
    }

    fn playbook() -> Playbook {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.ktplay");
        std::fs::write(
            &p,
            r#"
playbook "p" {
  component api { deployment "api" image "acme/api" from 1.4.0 to 1.5.0 }
  stage api { rolling api  scale api 4 }
}
"#,
        )
        .unwrap();
        let checked = crate::check::check_paths(&[p]).unwrap();
        assert_eq!(checked.errors(), 0, "{:?}", checked.problems);
        checked.playbooks[0].1.clone()
    }

    fn stored(pb: &Playbook, events: &[&str]) -> Stored {
        let mut data = BTreeMap::new();
        data.insert("playbook".into(), pb.name.clone());
        data.insert("digest".into(), pb.digest.clone());
        data.insert("run".into(), "r".into());
        data.insert("status".into(), "running".into());
        data.insert("events".into(), events.join("\n"));
        Stored { data }
    }

    const START: &str = r#"{"time":"t","run":"r","event":"start","stage":0,"stmt":0,"line":4,"statement":"rolling api","record":{"kind":"templates","comp":0,"deployments":[{"name":"api","images":[["api","acme/api:1.4.0"]]}]}}"#;

    /// A journal is checked line by line against the playbook before `--resume` trusts it.
    #[test]
    fn journals_are_checked_before_they_are_resumed() {
        let pb = playbook();
        assert_eq!(stored(&pb, &[START]).checked_events(&pb).unwrap().len(), 1);
        let why = |events: &[&str]| {
            stored(&pb, events)
                .checked_events(&pb)
                .unwrap_err()
                .to_string()
        };
        let comp99 = START.replace(r#""comp":0"#, r#""comp":99"#);
        assert!(
            why(&[&comp99]).contains("line 1 of the journal `ktplay-journal-")
                && why(&[&comp99])
                    .contains("names component 99, and the playbook has 1 components"),
            "{}",
            why(&[&comp99])
        );
        let stage9 = START.replace(r#""stage":0"#, r#""stage":9"#);
        assert!(why(&[&stage9]).contains("names stage 9"));
        let elsewhere = START.replace(r#""name":"api""#, r#""name":"kube-dns""#);
        assert!(why(&[&elsewhere]).contains("names deployment `kube-dns`"));
        let wrong_kind = START.replace(
            r#""record":{"kind":"templates","comp":0,"deployments":[{"name":"api","images":[["api","acme/api:1.4.0"]]}]}"#,
            r#""record":{"kind":"replicas","comp":0,"replicas":[["api",3]]}"#,
        );
        assert!(why(&[&wrong_kind]).contains("`replicas` record"));
        let other_run = START.replace(r#""run":"r""#, r#""run":"q""#);
        assert!(why(&[START, &other_run]).contains("line 2"));
        // An unreadable line is reported with its number, escaped; never skipped.
        let cut = "{\"time\":\"t\",\"run\u{1b}[2J";
        let w = why(&[START, cut]);
        assert!(
            w.contains("line 2 of the journal") && w.contains("\\e[2J"),
            "{w}"
        );
        assert!(!w.contains('\u{1b}'));
        assert_eq!(stored(&pb, &[START, cut]).unreadable().len(), 1);
        // Another playbook's journal under this key.
        let mut other = stored(&pb, &[START]);
        other.data.insert("digest".into(), "0".repeat(64));
        assert!(other
            .checked_events(&pb)
            .unwrap_err()
            .to_string()
            .contains("belongs to playbook `p` (digest 0000000000000000)"));
        // A monitor's counts continue only under a monitor the playbook declares (this one has
        // none); the name is escaped in the message.
        let monitor = r#"{"time":"t","run":"r","event":"monitor","name":"x\u001b[2J","final":false,"requests":18446744073709551615,"failures":0}"#;
        let w = why(&[START, monitor]);
        assert!(
            w.contains("line 2") && w.contains("names a monitor the playbook does not declare"),
            "{w}"
        );
        assert!(!w.contains('\u{1b}'), "{w}");
    }
}
