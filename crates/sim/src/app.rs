//! One pod of the real data path: the simulator's per-role HTTP app, served by one real process
//! per pod (`ktplay sim app`, started by the test harness's node agent for the images it knows,
//! `tests/realkube/images.json`).
//!
//! The answers are the simulator's own ([`crate::services`]): the same code answers a request
//! as this pod's role and version would, with the same faults (`policy-off`, `http:…`, …). What
//! depends on the rest of the namespace — the api version a peer checks its compatibility
//! against, the workers' status — is read from the real API server before each request (as the
//! follower does), with the read-only kubeconfig the harness gives pod processes. What the test
//! set up for the namespace (its seed's components and the faults) comes from a state file
//! `DIR/NAMESPACE.json` that [`write_state`] writes and every request re-reads.
//!
//! Readiness: a kubelet probe (`User-Agent: kube-probe/…`) of `/readyz` is answered as the
//! simulator's controller decides readiness: 503 for a `never-ready`, `migration-fails` or
//! `crash` fault of this pod's role and version, else 200; so a real rollout stalls where a
//! simulated one does. Every answer carries `x-sim-pod` (the pod's name), `x-sim-version` and
//! `x-sim-pod-ip` (the address this process listens on): the proof that a pod process answered.
//!
//! Metrics (`GET /metrics`, for a real Prometheus scraping the pod): the series the simulator's
//! own Prometheus serves (`metrics.rs`), `http_requests_total{app,version,code}` and the
//! histogram `http_request_duration_seconds{app,version}`, so one PromQL query works on both
//! backends; here they count this process's real answers (not the kubelet's probes, not the
//! scrapes), with `code` 200 and 500 present from the start. `app` is the component, `version`
//! the image tag; the pod and its address are the scraper's target labels. The simulated
//! traffic's faults act on real requests here: `error-rate:C@V=SHARE` answers that share of
//! them 500 (exactly: every request that takes the running count of failures past
//! `SHARE × requests`), `latency:C@V=D` delays each by D; both spare `/healthz` and `/readyz`, so
//! guards on health still see the pod's health as in a rehearsal.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::faults::{Fault, Faults};
use super::image::{image_repo, image_tag};
use super::metrics::BUCKETS;
use super::promql::format_float;
use super::services::{self, Selects, Target};
use super::{Seed, SeedComponent, SeedWorkload, Sim, SimConfig};

/// What a SIGTERM does to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Stop at once: in-flight requests are cut, new connections refused.
    Exit,
    /// Stop accepting, finish in-flight requests for up to this long, then exit.
    Drain(Duration),
}

/// How one pod's app runs.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// Where to listen: the pod's IP and its container's port.
    pub listen: SocketAddr,
    /// The pod's name and namespace.
    pub pod: String,
    pub namespace: String,
    /// The container's name and full image (the tag is the version).
    pub container: String,
    pub image: String,
    /// The role when no seeded component runs this image (the image table's).
    pub role: Option<String>,
    /// Where the namespace's state file is ([`write_state`]).
    pub state: Option<PathBuf>,
    /// Faults of this process, besides the state file's.
    pub faults: Vec<Fault>,
    /// Seconds before it listens (loading), time each request takes, what SIGTERM does.
    pub startup: Duration,
    pub latency: Duration,
    pub shutdown: Shutdown,
    /// Lines printed at start (the container's `FAKE_LOG`, placeholders replaced).
    pub log_lines: Vec<String>,
}

/// A seed component as the state file writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateComponent {
    name: String,
    container: String,
    image: String,
    version: String,
    replicas: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deployments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blue_green: Option<[String; 4]>,
}

/// The state file of one namespace: what the test seeded and which faults are on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StateFile {
    components: Vec<StateComponent>,
    faults: Faults,
}

fn state_path(dir: &Path, namespace: &str) -> PathBuf {
    dir.join(format!("{namespace}.json"))
}

/// Write the state file the pod apps of `seed.namespace` read: its components (their roles,
/// images and workloads) and `faults`. Rewrite it to change the faults while pods run.
pub fn write_state(dir: &Path, seed: &Seed, faults: &Faults) -> std::io::Result<()> {
    let components = seed
        .components
        .iter()
        .map(|c| StateComponent {
            name: c.name.clone(),
            container: c.container.clone(),
            image: c.image.clone(),
            version: c.version.to_string(),
            replicas: c.replicas,
            deployments: match &c.workload {
                SeedWorkload::Deployments(d) => d.clone(),
                SeedWorkload::BlueGreen { .. } => Vec::new(),
            },
            blue_green: match &c.workload {
                SeedWorkload::BlueGreen {
                    service,
                    selector,
                    blue,
                    green,
                } => Some([
                    service.clone(),
                    selector.clone(),
                    blue.clone(),
                    green.clone(),
                ]),
                SeedWorkload::Deployments(_) => None,
            },
        })
        .collect();
    let file = StateFile {
        components,
        faults: faults.clone(),
    };
    std::fs::create_dir_all(dir)?;
    let path = state_path(dir, &seed.namespace);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&file).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

fn read_state(dir: &Path, namespace: &str) -> Result<Option<StateFile>, String> {
    let path = state_path(dir, namespace);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn seed_of(namespace: &str, state: &StateFile) -> Result<Seed, String> {
    let mut components = Vec::new();
    for c in &state.components {
        let version = Version::parse(&c.version)
            .map_err(|e| format!("component {}: version {:?}: {e}", c.name, c.version))?;
        let workload = match &c.blue_green {
            Some([service, selector, blue, green]) => SeedWorkload::BlueGreen {
                service: service.clone(),
                selector: selector.clone(),
                blue: blue.clone(),
                green: green.clone(),
            },
            None => SeedWorkload::Deployments(c.deployments.clone()),
        };
        components.push(SeedComponent {
            name: c.name.clone(),
            workload,
            container: c.container.clone(),
            image: c.image.clone(),
            version,
            replicas: c.replicas,
        });
    }
    Ok(Seed {
        namespace: namespace.to_string(),
        components,
        pod_env: Vec::new(),
        routes: Vec::new(),
    })
}

/// What `/metrics` reports: answers by status, the latency histogram, and how many requests an
/// `error-rate` fault has judged (to fail exactly its share).
#[derive(Debug, Default)]
struct Counts {
    by_code: BTreeMap<u16, u64>,
    /// Cumulative counts per upper bound of [`BUCKETS`].
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
    /// Requests an `error-rate` fault applied to, and how many of them it failed.
    judged: u64,
    failed: u64,
}

impl Counts {
    fn new() -> Counts {
        let mut c = Counts::default();
        c.by_code.insert(200, 0);
        c.by_code.insert(500, 0);
        c
    }

    fn observe(&mut self, code: u16, secs: f64) {
        *self.by_code.entry(code).or_default() += 1;
        for (n, le) in self.buckets.iter_mut().zip(BUCKETS) {
            if secs <= le {
                *n += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    /// Does this request fail, under an error share `share`? The failures so far stay at
    /// `floor(share × judged)`: 0.2 fails every fifth.
    fn fails(&mut self, share: f64) -> bool {
        self.judged += 1;
        let due = (share.clamp(0.0, 1.0) * self.judged as f64 + 1e-9).floor() as u64;
        if due > self.failed {
            self.failed += 1;
            true
        } else {
            false
        }
    }
}

struct App {
    sim: Sim,
    opts: AppOptions,
    kube: Option<kube::Client>,
    /// This pod as the simulator's services see it: its name, container and image.
    pod: Value,
    target: Target,
    /// Requests answered, by status, and their durations (`/metrics`).
    counts: Mutex<Counts>,
    /// The faults last read from the state file (to re-apply only on a change).
    seen: Mutex<Option<Faults>>,
    /// When the last read of the namespace started: a request that arrived before it needs no
    /// read of its own (concurrent requests share one, and none is answered from older state).
    synced: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl App {
    /// Re-read the state file's faults; Err names the file when it cannot be read.
    fn refresh_faults(&self) -> Result<(), String> {
        let state = match &self.opts.state {
            Some(dir) => read_state(dir, &self.opts.namespace)?.unwrap_or_default(),
            None => StateFile::default(),
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.as_ref() != Some(&state.faults) {
            let mut all = state.faults.clone();
            for f in &self.opts.faults {
                all.add(f.clone());
            }
            self.sim.set_faults(all);
            *seen = Some(state.faults);
        }
        Ok(())
    }

    /// Does the answer to this request depend on other pods of the namespace? A peer's answers
    /// (but its liveness) on the api's version; the api's workers' status on the workers.
    fn needs_namespace(&self, path: &str) -> bool {
        if path == "/healthz" {
            return false;
        }
        match self.target.component.as_str() {
            "api" => path == "/v1/admin/workers/status",
            role => super::generic::is_modelled(role),
        }
    }

    /// Read the namespace unless a read started after `arrived`.
    async fn sync(&self, client: &kube::Client, arrived: std::time::Instant) -> Result<(), String> {
        let mut last = self.synced.lock().await;
        if last.is_some_and(|t| t >= arrived) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        super::follow::sync(&self.sim, client, &self.opts.namespace)
            .await
            .map_err(|e| e.to_string())?;
        *last = Some(started);
        Ok(())
    }

    fn version(&self) -> Option<Version> {
        image_tag(&self.opts.image).and_then(|t| Version::parse(t).ok())
    }

    fn role(&self) -> String {
        let roles = services::roles(&self.sim);
        services::pod_role(&roles, &self.pod)
            .map(|(r, _)| r.role)
            .or_else(|| self.opts.role.clone())
            .unwrap_or_else(|| image_repo(&self.opts.image).to_string())
    }

    /// Is this pod ready, as the simulator's controller decides?
    fn ready(&self) -> Result<(), String> {
        let Some(v) = self.version() else {
            return Ok(());
        };
        let role = self.role();
        let f = self.sim.faults();
        if f.never_ready(&role, &v) {
            return Err(format!(
                "{role} {v} never becomes ready (fault never-ready)"
            ));
        }
        if role == "api" && f.migration_fails(&v) {
            return Err(format!(
                "api {v}: the database migration failed (fault migration-fails)"
            ));
        }
        if f.crashes(&role, &v) {
            return Err(format!("{role} {v} crashes (fault crash)"));
        }
        Ok(())
    }
}

fn json_answer(code: StatusCode, v: Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&v).unwrap_or_default(),
    )
        .into_response()
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let arrived = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let probe = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("kube-probe/"));
    let body = axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    if !app.opts.latency.is_zero() {
        tokio::time::sleep(app.opts.latency).await;
    }
    let refreshed = app.refresh_faults();
    // Real traffic (not the kubelet's probes, not scrapes) is counted; the simulated traffic's
    // faults act on it, health endpoints spared.
    let scrape = path == "/metrics" && method == Method::GET;
    let counted = !probe && !scrape;
    let traffic_fault = match (&refreshed, app.version()) {
        (Ok(()), Some(v)) if counted && path != "/healthz" && path != "/readyz" => {
            let role = app.role();
            let f = app.sim.faults();
            let delay = f.service_latency(&role, &v);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let share = f.error_share(&role, &v);
            let fails = share > 0.0
                && app
                    .counts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .fails(share);
            fails.then(|| {
                format!("{role} {v} fails this request (fault error-rate:{role}@{v}={share})")
            })
        }
        _ => None,
    };
    let mut resp = if let Err(e) = refreshed {
        json_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "unavailable", "message": format!("the pod app could not read its state file: {e}")}),
        )
    } else if probe {
        // The kubelet's probe: readiness as the simulator's controller decides it.
        match app.ready() {
            Ok(()) => json_answer(StatusCode::OK, json!({"status": "ready"})),
            Err(why) => json_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "not_ready", "message": why}),
            ),
        }
    } else if scrape {
        metrics(&app)
    } else if let Some(message) = traffic_fault {
        json_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "fault", "message": message}),
        )
    } else {
        let synced = match &app.kube {
            Some(client) if app.needs_namespace(&path) => app.sync(client, arrived).await,
            _ => Ok(()),
        };
        match synced {
            Err(e) => json_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": format!("the pod app could not read its namespace: {e}")}),
            ),
            Ok(()) => {
                let (resp, _) = services::answer_as(
                    &app.sim,
                    &app.target,
                    &app.pod,
                    &method,
                    &path,
                    &headers,
                    &body,
                );
                resp
            }
        }
    };
    if counted {
        let code = resp.status().as_u16();
        app.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(code, arrived.elapsed().as_secs_f64());
    }
    let version = app.version().map(|v| v.to_string()).unwrap_or_default();
    let h = resp.headers_mut();
    for (k, v) in [
        ("x-sim-pod", app.opts.pod.clone()),
        ("x-sim-pod-ip", app.opts.listen.ip().to_string()),
        ("x-sim-version", version),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    resp
}

fn metrics(app: &App) -> Response {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let role = esc(&app.role());
    let version = esc(&app
        .version()
        .map(|v| v.to_string())
        .or_else(|| image_tag(&app.opts.image).map(str::to_string))
        .unwrap_or_default());
    let base = format!("app=\"{role}\",version=\"{version}\"");
    let c = app.counts.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::from(
        "# HELP http_requests_total Requests answered, by version and status code.\n\
         # TYPE http_requests_total counter\n",
    );
    for (code, n) in &c.by_code {
        out += &format!("http_requests_total{{{base},code=\"{code}\"}} {n}\n");
    }
    out += "# HELP http_request_duration_seconds Time taken to answer, in seconds.\n\
            # TYPE http_request_duration_seconds histogram\n";
    for (n, le) in c.buckets.iter().zip(BUCKETS) {
        out += &format!(
            "http_request_duration_seconds_bucket{{{base},le=\"{}\"}} {n}\n",
            format_float(le)
        );
    }
    out += &format!(
        "http_request_duration_seconds_bucket{{{base},le=\"+Inf\"}} {}\n\
         http_request_duration_seconds_sum{{{base}}} {}\n\
         http_request_duration_seconds_count{{{base}}} {}\n",
        c.count,
        format_float(c.sum),
        c.count
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}

/// The container's `FAKE_LOG` as lines (`\n` or the two characters `\n` separate them), with
/// `{image}`, `{tag}`, `{pod}`, `{container}`, `{namespace}` replaced: what the harness's fake
/// kubelet logs for a pod without a process.
pub fn fake_log_lines(
    text: &str,
    image: &str,
    pod: &str,
    container: &str,
    ns: &str,
) -> Vec<String> {
    let tag = image_tag(image).unwrap_or("latest");
    let text = text.replace("\\n", "\n");
    text.trim_end_matches('\n')
        .split('\n')
        .filter(|_| !text.is_empty())
        .map(|l| {
            l.replace("{image}", image)
                .replace("{tag}", tag)
                .replace("{pod}", pod)
                .replace("{container}", container)
                .replace("{namespace}", ns)
        })
        .collect()
}

/// The client of a pod process: the read-only kubeconfig the harness gives it (the simulator
/// reads the real API server from here, as the follower does; no product code).
pub async fn kube_client(path: &Path) -> Result<kube::Client, String> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
    kube::Client::try_from(config).map_err(|e| format!("kubeconfig {}: {e}", path.display()))
}

/// Serve one pod's app until SIGTERM (then as `opts.shutdown` says) or SIGINT.
pub async fn serve_app(opts: AppOptions, kube: Option<kube::Client>) -> Result<(), String> {
    let sim = Sim::follower(SimConfig::default());
    let version = image_tag(&opts.image).and_then(|t| Version::parse(t).ok());
    let mut seeded = false;
    if let Some(dir) = &opts.state {
        if let Some(state) = read_state(dir, &opts.namespace)? {
            sim.register(&seed_of(&opts.namespace, &state)?);
            seeded = true;
        }
    }
    // Only a namespace a test seeded has peers whose state the answers depend on (the api's
    // version, the workers): elsewhere (a lone Deployment under load) no read per request.
    let kube = kube.filter(|_| seeded);
    // This pod's own image, if no seeded component runs it: the role the image table gives.
    if let (Some(role), Some(v)) = (&opts.role, &version) {
        sim.register(&Seed {
            namespace: opts.namespace.clone(),
            components: vec![SeedComponent {
                name: role.clone(),
                workload: SeedWorkload::Deployments(Vec::new()),
                container: opts.container.clone(),
                image: image_repo(&opts.image).to_string(),
                version: v.clone(),
                replicas: 1,
            }],
            pod_env: Vec::new(),
            routes: Vec::new(),
        });
    }
    let pod = json!({
        "metadata": {"name": opts.pod, "namespace": opts.namespace},
        "spec": {"containers": [{"name": opts.container, "image": opts.image}]},
    });
    let component = services::pod_role(&services::roles(&sim), &pod)
        .map(|(r, _)| r.role)
        .or_else(|| opts.role.clone())
        .unwrap_or_else(|| image_repo(&opts.image).to_string());
    let app = Arc::new(App {
        target: Target {
            component,
            colour: None,
            namespace: opts.namespace.clone(),
            selects: Selects::Service(String::new()),
        },
        sim,
        kube,
        pod,
        counts: Mutex::new(Counts::new()),
        seen: Mutex::new(None),
        synced: tokio::sync::Mutex::new(None),
        opts,
    });
    app.refresh_faults()?;
    let role = app.role();
    let vtext = version.as_ref().map(|v| v.to_string()).unwrap_or_default();
    let quiet = version
        .as_ref()
        .is_some_and(|v| app.sim.faults().logs_missing(&role, v));
    if !quiet {
        for l in &app.opts.log_lines {
            println!("{l}");
        }
    }
    if !app.opts.startup.is_zero() {
        println!(
            "{role} {vtext} {}: loading for {} ms",
            app.opts.pod,
            app.opts.startup.as_millis()
        );
        tokio::time::sleep(app.opts.startup).await;
    }
    let listener = tokio::net::TcpListener::bind(app.opts.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", app.opts.listen))?;
    println!(
        "{role} {vtext} {}: listening on {}",
        app.opts.pod, app.opts.listen
    );
    let shutdown = app.opts.shutdown;
    let pod_name = app.opts.pod.clone();
    let router = axum::Router::new().fallback(handle).with_state(app);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot wait for SIGTERM: {e}"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    match shutdown {
        Shutdown::Exit => {
            println!("{role} {vtext} {pod_name}: SIGTERM: exit");
            Ok(())
        }
        Shutdown::Drain(d) => {
            println!(
                "{role} {vtext} {pod_name}: SIGTERM: draining for up to {} ms",
                d.as_millis()
            );
            let _ = stop_tx.send(());
            let _ = tokio::time::timeout(d, server).await;
            println!("{role} {vtext} {pod_name}: exit");
            Ok(())
        }
    }
}
