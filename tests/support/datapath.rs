//! The real backend on the real data path (`tests/realkube.sh`, which runs the tests inside the
//! private network namespace it made and says so with `REALKUBE_DATAPATH=1`): every pod of a
//! Keeptrusts image is a real process (`ktplay sim app`, the simulator's app of its role and
//! version), and a scenario's HTTP guards go to the ClusterIPs of the seeded Services through
//! the real kube-proxy — no follower simulator.
//!
//! The one address no Service gives: a blue-green colour (`console-blue.…`), which the simulator
//! serves by the colour's Deployment selector. The seed has no Service per colour (and a test
//! must not add objects to the namespace ktplay works in), so a small forwarder on loopback
//! sends each request to one Ready, not terminating pod of that Deployment, chosen at random:
//! the answer still comes from a pod process; only the balancing is the test's, not kube-proxy's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};

use ktplay::sim::{Faults, Seed, SeedWorkload};

/// Do the tests run inside the harness's data-path namespace?
pub fn enabled() -> bool {
    std::env::var("REALKUBE_DATAPATH").as_deref() == Ok("1")
}

/// Where the pod processes read each namespace's state (`ktplay sim app`, `KTPLAY_SIM_STATE`):
/// `sim-state` beside the harness's kubeconfig, in its WORKDIR.
pub fn state_dir() -> PathBuf {
    let kc = super::real_kubeconfig().expect("KTPLAY_TEST_KUBECONFIG");
    kc.parent()
        .expect("the kubeconfig is in the harness's WORKDIR")
        .join("sim-state")
}

/// Tell the pod processes of `seed.namespace` its components and faults (before its pods start:
/// they learn the roles at start; the faults are re-read on every request).
pub fn write_state(seed: &Seed, faults: &Faults) {
    let dir = state_dir();
    ktplay::sim::app::write_state(&dir, seed, faults)
        .unwrap_or_else(|e| panic!("writing the pod apps' state into {}: {e}", dir.display()));
}

/// The service addresses of one test's namespace on the data path.
pub struct DataPath {
    /// (component, colour, URL).
    urls: Vec<(String, Option<String>, String)>,
    forwarders: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for DataPath {
    fn drop(&mut self) {
        for f in &self.forwarders {
            f.abort();
        }
    }
}

impl DataPath {
    /// The URL of a component's Service (or colour), as `Running::service_url` gives the
    /// simulator's; a colour may also be named by its Deployment.
    pub fn url(&self, component: &str, colour: Option<&str>) -> Option<String> {
        self.urls
            .iter()
            .find(|(c, k, _)| c == component && k.as_deref() == colour)
            .map(|(_, _, u)| u.clone())
    }

    /// Find the seeded Services' ClusterIPs (and start the colours' forwarders), then wait until
    /// each answers `/healthz` from a pod process (`x-sim-pod-ip` a pod IP, `x-sim-pod` a pod of
    /// the namespace): kube-proxy has programmed it.
    pub async fn start(client: &kube::Client, seed: &Seed) -> DataPath {
        let ns = &seed.namespace;
        let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
        let mut dp = DataPath {
            urls: Vec::new(),
            forwarders: Vec::new(),
        };
        let cluster_ip = |name: String| {
            let svcs = svcs.clone();
            async move {
                let s = svcs
                    .get(&name)
                    .await
                    .unwrap_or_else(|e| panic!("the seeded Service {name}: {e}"));
                let spec = s.spec.expect("a Service spec");
                let ip = spec.cluster_ip.expect("a ClusterIP");
                let port = spec.ports.expect("ports")[0].port;
                format!("http://{ip}:{port}")
            }
        };
        for c in &seed.components {
            match &c.workload {
                SeedWorkload::Deployments(names) => {
                    if let Some(first) = names.first() {
                        let u = cluster_ip(first.clone()).await;
                        dp.urls.push((c.name.clone(), None, u));
                    }
                    if names.len() > 1 {
                        for n in names {
                            let u = cluster_ip(n.clone()).await;
                            dp.urls.push((c.name.clone(), Some(n.clone()), u));
                        }
                    }
                }
                SeedWorkload::BlueGreen {
                    service,
                    blue,
                    green,
                    ..
                } => {
                    let u = cluster_ip(service.clone()).await;
                    dp.urls.push((c.name.clone(), None, u));
                    for (colour, d) in [("blue", blue), ("green", green)] {
                        let (url, task) = forwarder(client.clone(), ns.clone(), d.clone()).await;
                        dp.forwarders.push(task);
                        dp.urls
                            .push((c.name.clone(), Some(colour.into()), url.clone()));
                        dp.urls.push((c.name.clone(), Some(d.clone()), url));
                    }
                }
            }
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let start = Instant::now();
        for (component, colour, url) in &dp.urls {
            loop {
                let why = match http.get(format!("{url}/healthz")).send().await {
                    Ok(r) => {
                        let h = |k: &str| {
                            r.headers()
                                .get(k)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string()
                        };
                        let (pod, ip) = (h("x-sim-pod"), h("x-sim-pod-ip"));
                        let known =
                            !pod.is_empty() && pods.get_opt(&pod).await.ok().flatten().is_some();
                        if r.status() == 200 && ip.starts_with("10.244.") && known {
                            break;
                        }
                        format!("{} from pod {pod:?} at {ip:?}", r.status())
                    }
                    Err(e) => e.to_string(),
                };
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{component} {colour:?} at {url} did not answer from a pod process: {why}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        dp
    }
}

#[derive(Clone)]
struct Fwd {
    client: kube::Client,
    ns: String,
    deployment: String,
    http: reqwest::Client,
}

/// A forwarder on loopback to the Ready pods of one Deployment.
async fn forwarder(
    client: kube::Client,
    ns: String,
    deployment: String,
) -> (String, tokio::task::JoinHandle<()>) {
    let state = Fwd {
        client,
        ns,
        deployment,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    };
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

fn unavailable(msg: String) -> Response {
    Response::builder()
        .status(503)
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({"error": "unavailable", "message": msg}).to_string(),
        ))
        .unwrap()
}

async fn forward(State(f): State<Fwd>, req: Request) -> Response {
    let deps: Api<Deployment> = Api::namespaced(f.client.clone(), &f.ns);
    let Ok(Some(d)) = deps.get_opt(&f.deployment).await else {
        return unavailable(format!("no deployment {}", f.deployment));
    };
    let labels = d
        .spec
        .selector
        .match_labels
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(f.client.clone(), &f.ns);
    let list = match pods.list(&ListParams::default().labels(&labels)).await {
        Ok(l) => l.items,
        Err(e) => return unavailable(format!("listing the pods of {}: {e}", f.deployment)),
    };
    let ready: Vec<(String, i32)> = list
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            let port = p
                .spec
                .as_ref()?
                .containers
                .first()?
                .ports
                .as_ref()?
                .first()?
                .container_port;
            Some((ip, port))
        })
        .collect();
    if ready.is_empty() {
        return unavailable(format!("no ready pods of {}", f.deployment));
    }
    let (ip, port) = &ready[rand::random::<u32>() as usize % ready.len()];
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut out = f
        .http
        .request(req.method().clone(), format!("http://{ip}:{port}{path}"));
    for (k, v) in req.headers() {
        if k != http::header::HOST {
            out = out.header(k, v);
        }
    }
    let body = axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    match out.body(body).send().await {
        Ok(resp) => {
            let mut b = Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                if k != http::header::TRANSFER_ENCODING && k != http::header::CONNECTION {
                    b = b.header(k, v);
                }
            }
            b.body(Body::from(resp.bytes().await.unwrap_or_default()))
                .unwrap()
        }
        Err(e) => Response::builder()
            .status(502)
            .body(Body::from(format!("forwarder: {e}")))
            .unwrap(),
    }
}
