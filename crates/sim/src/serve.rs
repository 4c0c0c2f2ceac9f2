//! Loopback listeners (the API and one per simulated service target), the kubeconfig that
//! points at them, and `ktplay sim serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::services::{self, Target};
use super::{Seed, Sim, SimConfig};

/// Errors of `ktplay sim serve`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SimError {
    /// A listener could not be bound.
    #[error("could not listen on {addr}: {source}")]
    #[diagnostic(
        code(ktplay::sim::bind),
        help("pick another port with --port, or 0 for any free port")
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The kubeconfig could not be written.
    #[error("could not write the kubeconfig {path}: {source}")]
    #[diagnostic(code(ktplay::sim::kubeconfig))]
    Kubeconfig {
        /// Where it was to go.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Waiting for Ctrl-C failed.
    #[error("could not wait for Ctrl-C: {0}")]
    #[diagnostic(code(ktplay::sim::signal))]
    Signal(std::io::Error),
}

/// A running simulator: the API and service listeners. Dropping it stops them.
pub struct Running {
    sim: Sim,
    api: SocketAddr,
    services: Vec<(Target, SocketAddr)>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("api", &self.api)
            .field("services", &self.service_urls())
            .finish()
    }
}

impl Running {
    /// `http://127.0.0.1:PORT` of the Kubernetes API.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// The API's socket address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// The simulator behind the listeners.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// The URL of a component's service: `colour` `None` for its Service (for a blue-green
    /// component the live colour), `Some("blue")`/`Some("green")` for one colour, or
    /// `Some(deployment)` for one deployment of a multi-deployment component.
    pub fn service_url(&self, component: &str, colour: Option<&str>) -> Option<String> {
        let wanted = services::find_target(&self.sim, component, colour)?;
        self.services
            .iter()
            .find(|(t, _)| {
                t.component == wanted.component
                    && t.namespace == wanted.namespace
                    && t.selects == wanted.selects
            })
            .map(|(_, a)| format!("http://{a}"))
    }

    /// Every service URL: (component, colour, URL).
    pub fn service_urls(&self) -> Vec<(String, Option<String>, String)> {
        self.services
            .iter()
            .map(|(t, a)| (t.component.clone(), t.colour.clone(), format!("http://{a}")))
            .collect()
    }

    /// A kubeconfig for the API: cluster, user and context `sim`, with this namespace.
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        self.kubeconfig_yaml_for("sim", namespace)
    }

    /// A kubeconfig whose context has the given name (a playbook's env may name one).
    pub fn kubeconfig_yaml_for(&self, context: &str, namespace: &str) -> String {
        kubeconfig(&self.api_url(), context, namespace)
    }

    /// Stop every listener.
    pub async fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// A kubeconfig YAML pointing at `server`.
pub fn kubeconfig(server: &str, context: &str, namespace: &str) -> String {
    let (s, c, n) = (quote(server), quote(context), quote(namespace));
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {c}\n  cluster:\n    server: {s}\n\
         users:\n- name: {c}\n  user: {{}}\ncontexts:\n- name: {c}\n  context:\n    cluster: {c}\n    \
         user: {c}\n    namespace: {n}\ncurrent-context: {c}\npreferences: {{}}\n"
    )
}

async fn serve_router(listener: TcpListener, router: axum::Router) {
    use axum::serve::ListenerExt;
    // Small request/response pairs: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let _ = axum::serve(listener, router).await;
}

/// Bind and run the listeners (see [`Sim::start`]).
pub(crate) async fn start(sim: Sim, addr: SocketAddr) -> std::io::Result<Running> {
    let listener = TcpListener::bind(addr).await?;
    let api = listener.local_addr()?;
    let mut tasks = vec![tokio::spawn(serve_router(listener, sim.router()))];
    let mut bound = Vec::new();
    for target in services::targets(&sim) {
        let l = TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?;
        let a = l.local_addr()?;
        tasks.push(tokio::spawn(serve_router(
            l,
            services::router(sim.clone(), target.clone()),
        )));
        bound.push((target, a));
    }
    Ok(Running {
        sim,
        api,
        services: bound,
        tasks,
    })
}

/// Options of `ktplay sim serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// API port on 127.0.0.1; 0 picks any free port.
    pub port: u16,
    /// Where to write the kubeconfig; `None` writes none.
    pub kubeconfig: Option<PathBuf>,
    /// What to create before serving.
    pub seed: Option<Seed>,
    /// Pace, faults, deadlines, compatibility.
    pub config: SimConfig,
}

/// Start the simulator, write the kubeconfig (server `http://127.0.0.1:PORT`, context `sim`,
/// the seed's namespace), print the API and service URLs, and run until Ctrl-C.
pub async fn run(opts: ServeOptions) -> Result<(), SimError> {
    let running = start_serving(&opts).await?;
    tokio::signal::ctrl_c().await.map_err(SimError::Signal)?;
    println!("stopping the simulator");
    running.shutdown().await;
    Ok(())
}

/// Everything [`run`] does before waiting for Ctrl-C; returns the running simulator.
pub async fn start_serving(opts: &ServeOptions) -> Result<Running, SimError> {
    let sim = Sim::new(opts.config.clone());
    let namespace = opts
        .seed
        .as_ref()
        .map(|s| s.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    if let Some(seed) = &opts.seed {
        sim.seed(seed);
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
    let running = sim
        .start(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })?;
    println!("simulated Kubernetes API: {}", running.api_url());
    if let Some(path) = &opts.kubeconfig {
        std::fs::write(path, running.kubeconfig_yaml(&namespace)).map_err(|source| {
            SimError::Kubeconfig {
                path: path.clone(),
                source,
            }
        })?;
        println!(
            "kubeconfig: {} (context \"sim\", namespace \"{namespace}\")",
            path.display()
        );
    }
    for (component, colour, url) in running.service_urls() {
        match colour {
            Some(c) => println!("service {component} ({c}): {url}"),
            None => println!("service {component}: {url}"),
        }
    }
    let faults = running.sim().faults();
    if !faults.faults.is_empty() {
        let list: Vec<String> = faults.faults.iter().map(|f| f.to_string()).collect();
        println!("faults: {}", list.join(", "));
    }
    println!(
        "fault knobs: GET/POST {}/__sim/faults; request log: {}/__sim/requests",
        running.api_url(),
        running.api_url()
    );
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_parses_as_yaml() {
        let y = kubeconfig("http://127.0.0.1:1234", "sim", "keeptrusts");
        let v: serde_yaml::Value = serde_yaml::from_str(&y).unwrap();
        assert_eq!(v["current-context"].as_str(), Some("sim"));
        assert_eq!(
            v["clusters"][0]["cluster"]["server"].as_str(),
            Some("http://127.0.0.1:1234")
        );
        assert_eq!(
            v["contexts"][0]["context"]["namespace"].as_str(),
            Some("keeptrusts")
        );
    }
}
