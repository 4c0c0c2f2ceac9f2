//! Ctrl-C, SIGTERM (what a Kubernetes Job's deletion or a CI cancel sends) and SIGHUP (a closed
//! terminal) all mean the same, from the first moment of a run: the first abandons the current
//! statement safely and the run rolls back (before any action: refuses); a second stops at once,
//! with the journal saying where (`--resume` finishes).

use std::sync::{Arc, Mutex};

use super::log::journal::Journal;
use super::Cancel;

/// The journal, once the run has one (a second signal before it exists changed nothing).
pub(crate) type JournalSlot = Arc<Mutex<Option<Journal>>>;

/// Handle signals for the rest of the run (abort the handle when it ends).
pub(crate) fn spawn(cancel: Cancel, journal: JournalSlot) -> tokio::task::JoinHandle<()> {
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
                continue;
            }
            let journal = journal.lock().ok().and_then(|j| j.clone());
            let Some(journal) = journal else {
                eprintln!("\nstopped at once by a second signal ({name}), before any action: nothing was changed");
                std::process::exit(crate::exit::Exit::Refused.code());
            };
            journal
                .abort_now(&format!(
                    "stopped at once by a second signal ({name}); the events before this one say where"
                ))
                .await;
            eprintln!("\nstopped at once by a second signal ({name}): the cluster may be mid-change; `ktplay status` shows the journal, `ktplay run --resume` finishes the job");
            std::process::exit(crate::exit::Exit::Incomplete.code());
        }
    })
}
