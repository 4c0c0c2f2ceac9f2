//! `ktplay sim app`: one pod's process on the real data path — the simulator's HTTP app of its
//! role and version ([`crate::sim::app`]), started by the test harness's node agent
//! (`tests/realkube/images.json`), which sets the pod's address, names, image and the state.

use std::time::Duration;

use super::args::SimAppArgs;
use crate::exit::Exit;
use crate::sim::app::{self, AppOptions, Shutdown};

fn seconds(what: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{what} {s}: not a number of seconds ≥ 0"))
}

fn options(a: SimAppArgs) -> Result<AppOptions, String> {
    let mut faults = Vec::new();
    for f in &a.fault {
        faults.push(
            f.parse::<crate::sim::Fault>()
                .map_err(|e| format!("--fault {f}: {e}"))?,
        );
    }
    let shutdown = match a.shutdown.as_str() {
        "exit" => Shutdown::Exit,
        "drain" => Shutdown::Drain(seconds("--drain-seconds", a.drain_seconds)?),
        other => {
            return Err(format!(
                "--shutdown (APP_SHUTDOWN) {other:?}: write `exit` or `drain`"
            ))
        }
    };
    let log_lines = a
        .log
        .as_deref()
        .map(|t| app::fake_log_lines(t, &a.image, &a.pod, &a.container, &a.namespace))
        .unwrap_or_default();
    Ok(AppOptions {
        listen: std::net::SocketAddr::new(a.addr, a.port),
        pod: a.pod,
        namespace: a.namespace,
        container: a.container,
        image: a.image,
        role: a.role.filter(|r| !r.is_empty()),
        state: a.state.filter(|p| !p.as_os_str().is_empty()),
        faults,
        startup: seconds("--startup-seconds", a.startup_seconds)?,
        latency: seconds("--latency-ms", a.latency_ms / 1000.0)?,
        shutdown,
        log_lines,
    })
}

pub(super) fn cmd_sim_app(args: SimAppArgs) -> Exit {
    let kubeconfig = args
        .kubeconfig
        .clone()
        .filter(|p| !p.as_os_str().is_empty());
    let opts = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: ktplay sim app: {e}");
            return Exit::Usage;
        }
    };
    // One thread: a pod process answers a handful of requests at a time, and there are many.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: ktplay sim app: no runtime: {e}");
            return Exit::Usage;
        }
    };
    let result = rt.block_on(async move {
        let kube = match &kubeconfig {
            Some(p) => Some(app::kube_client(p).await?),
            None => None,
        };
        app::serve_app(opts, kube).await
    });
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("error: ktplay sim app: {e}");
            Exit::Usage
        }
    }
}
