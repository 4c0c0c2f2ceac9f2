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

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Patch;
use serde_json::{json, Value};

use super::cluster::{retry, status_code, Cluster};
use super::events::{Entry, RunEvent};
use super::Redactor;

/// The ConfigMap name for a digest.
pub fn config_map_name(digest: &str) -> String {
    let d: String = digest.chars().take(16).collect();
    format!("ktplay-journal-{d}")
}

struct Inner {
    events: Vec<String>,
    status: String,
    file: Option<std::fs::File>,
    last_success: Option<String>,
}

/// The journal of one run (cheap to clone).
#[derive(Clone)]
pub struct Journal {
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
pub struct Stored {
    pub data: BTreeMap<String, String>,
}

impl Stored {
    pub fn status(&self) -> Option<&str> {
        self.data.get("status").map(String::as_str)
    }
    pub fn run(&self) -> Option<&str> {
        self.data.get("run").map(String::as_str)
    }
    /// The latest run's events (lines that are not events are skipped).
    pub fn events(&self) -> Vec<Entry> {
        self.data
            .get("events")
            .map(|e| e.lines().filter_map(Entry::parse).collect())
            .unwrap_or_default()
    }
    pub fn last_success(&self) -> Option<Value> {
        self.data
            .get("last_success")
            .and_then(|s| serde_json::from_str(s).ok())
    }
}

/// Read the journal of a digest from a cluster; `None` when there is none.
pub async fn load(cluster: &Cluster, digest: &str) -> Result<Option<Stored>, String> {
    let name = config_map_name(digest);
    match cluster.config_maps().get_opt(&name).await {
        Ok(Some(cm)) => Ok(Some(Stored {
            data: cm.data.unwrap_or_default().into_iter().collect(),
        })),
        Ok(None) => Ok(None),
        Err(e) => Err(format!(
            "cannot read the journal {}/{name}: {}",
            cluster.ns,
            super::cluster::words(&e)
        )),
    }
}

impl Journal {
    /// Open the journal of a run. `previous` are the events of a run being resumed (kept).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
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
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append one event (time and run id added, secrets scrubbed) locally and to the cluster.
    /// An error means the cluster's journal does not hold the event: an action it announces
    /// must not happen.
    pub async fn record(&self, ev: RunEvent) -> Result<(), String> {
        self.append(ev);
        self.sync().await
    }

    /// [`Journal::record`] for events that follow an effect (it happened whatever the journal
    /// says): a failed write is a warning on stderr.
    pub async fn note(&self, ev: RunEvent) {
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
    pub fn entries(&self) -> Vec<Entry> {
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

    /// Set the run's status (and `last_success` when it succeeded), then write.
    pub async fn finish(&self, status: &str) -> Result<(), String> {
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
                g.last_success = Some(
                    json!({
                        "run": self.run_id,
                        "env": self.env,
                        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    })
                    .to_string(),
                );
            }
        }
        self.sync().await
    }

    /// The second Ctrl-C: say where the run stopped, quickly.
    pub async fn abort_now(&self, where_: &str) {
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
    async fn sync(&self) -> Result<(), String> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        // The journal is the lock holder's: a process that lost the lock must not overwrite
        // the new holder's.
        cluster
            .may_write()
            .await
            .map_err(|e| format!("could not write the journal: {e}"))?;
        let data = self.data();
        let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > JOURNAL_LIMIT {
            return Err(format!(
                "the journal {}/{} would hold {size} bytes, over ktplay's limit of {JOURNAL_LIMIT} (a ConfigMap holds at most 1 MiB)",
                cluster.ns, self.name
            ));
        }
        let api = cluster.config_maps();
        let patch = Patch::Merge(json!({"data": data}));
        let pp = super::cluster::patch_params();
        let failed = |e: kube::Error, verb: &str| {
            format!(
                "could not write the journal: cannot {verb} ConfigMap `{}` in namespace `{}`: {}",
                self.name,
                cluster.ns,
                super::cluster::words(&e)
            )
        };
        match retry(|| async { api.patch(&self.name, &pp, &patch).await }).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": self.name, "labels": {
                        "app.kubernetes.io/managed-by": "ktplay",
                    }},
                    "data": data,
                }))
                .map_err(|e| format!("could not build the journal ConfigMap: {e}"))?;
                match retry(|| async { api.create(&super::cluster::post_params(), &cm).await })
                    .await
                {
                    Ok(_) => Ok(()),
                    // Created meanwhile (or by an attempt whose answer was lost): patch it.
                    Err(e) if status_code(&e) == Some(409) => {
                        retry(|| async { api.patch(&self.name, &pp, &patch).await })
                            .await
                            .map(|_| ())
                            .map_err(|e| failed(e, "patch"))
                    }
                    Err(e) => Err(failed(e, "create")),
                }
            }
            Err(e) => Err(failed(e, "patch")),
        }
    }
}

/// Most bytes the journal ConfigMap may hold: a ConfigMap holds at most 1 MiB, and ktplay keeps
/// room below that. A run's events are small (a record is an image per container, a revision
/// or a selector), so only a playbook of many thousands of statements comes near.
pub const JOURNAL_LIMIT: usize = 768 * 1024;
