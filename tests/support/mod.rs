//! The two backends every end-to-end scenario runs on, behind one handle:
//!
//! - **sim**: the embedded simulator, in the test process, on loopback;
//! - **real**: the cluster of `KTPLAY_TEST_KUBECONFIG=PATH` (the harness in `.ci/run`, or kind,
//!   minikube, …). Each test gets its own namespace, seeded with the same objects the simulator
//!   seeds ([`ktplay::sim::Seed::objects`]); ktplay reaches the API server through a recording
//!   proxy on loopback (so scenarios can assert on the requests ktplay sent, as they do on the
//!   simulator's request log), and a simulator in follow mode serves the Keeptrusts HTTP
//!   endpoints as the real pods' versions and readiness say (a real test cluster runs no
//!   containers).
//!
//! On the real data path (`tests/realkube.sh` runs the tests in its network namespace and sets
//! `REALKUBE_DATAPATH=1`) there is no follower: the pods are real processes serving the
//! simulator's apps and [`TestCluster::service_url`] is a Service's ClusterIP (see [`datapath`]).
//!
//! Faults: the simulated services' faults (`policy-off`, …) work on both; a rollout that never
//! gets ready is staged on both by an image tag ending in `-bad` (the simulator follows the real
//! harness's fake-kubelet convention).

// Shared by several test crates, each using a part: `pub` here is for them, not a library face.
#![allow(unreachable_pub)]
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::Value;

use ktplay::sim::{LoggedRequest, Running, Seed, Sim, SimConfig};

pub mod datapath;
pub mod prometheus;

/// One scenario, two tests: `NAME::sim` and `NAME::real` (which says loudly that it skipped
/// when no real cluster is configured). A test file declares `#[macro_use] mod support;` and
/// `use support::Backend;`, then lists its scenarios: `on_both!(a, b);`.
#[allow(unused_macros)] // not every test file that uses `support` has scenarios on both backends
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sim() {
                super::$name(super::Backend::Sim).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real() {
                if super::support::real_kubeconfig().is_none() {
                    super::support::skip_real(stringify!($name));
                    return;
                }
                super::$name(super::Backend::Real).await
            }
        }
    )*};
}

/// Which backend a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sim,
    Real,
}

/// The real cluster's kubeconfig, if the tests are to use one.
pub fn real_kubeconfig() -> Option<PathBuf> {
    std::env::var_os("KTPLAY_TEST_KUBECONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Say loudly that a real-backend test did not run.
pub fn skip_real(test: &str) {
    eprintln!(
        "\n!!!!! SKIPPED on the real backend: {test} (set KTPLAY_TEST_KUBECONFIG=PATH to run it) !!!!!\n"
    );
}

/// A fresh namespace name: `e2e-<tag>-<random>`.
pub fn namespace(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    format!(
        "e2e-{}-{:06x}",
        tag.trim_matches('-'),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// What the real kubeconfig says: server, CA and token of its current context.
#[derive(Clone)]
pub struct RealAccess {
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub token: String,
}

impl RealAccess {
    pub fn read(path: &Path) -> RealAccess {
        let text = std::fs::read_to_string(path).expect("KTPLAY_TEST_KUBECONFIG is readable");
        let y: serde_yaml::Value = serde_yaml::from_str(&text).expect("a YAML kubeconfig");
        let current = y["current-context"].as_str().unwrap_or_default();
        let ctx = y["contexts"]
            .as_sequence()
            .and_then(|s| s.iter().find(|c| c["name"].as_str() == Some(current)))
            .unwrap_or(&y["contexts"][0]);
        let cluster_name = ctx["context"]["cluster"].as_str().unwrap_or_default();
        let user_name = ctx["context"]["user"].as_str().unwrap_or_default();
        let cluster = y["clusters"]
            .as_sequence()
            .and_then(|s| s.iter().find(|c| c["name"].as_str() == Some(cluster_name)))
            .expect("the context's cluster");
        let user = y["users"]
            .as_sequence()
            .and_then(|s| s.iter().find(|c| c["name"].as_str() == Some(user_name)))
            .expect("the context's user");
        use base64::Engine;
        let ca_pem = match cluster["cluster"]["certificate-authority-data"].as_str() {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64 CA data"),
            None => std::fs::read(
                cluster["cluster"]["certificate-authority"]
                    .as_str()
                    .expect("a CA in the kubeconfig"),
            )
            .expect("the CA file"),
        };
        let token = match user["user"]["token"].as_str() {
            Some(t) => t.to_string(),
            None => std::fs::read_to_string(
                user["user"]["tokenFile"]
                    .as_str()
                    .expect("a token (or tokenFile) in the kubeconfig: the harness uses tokens"),
            )
            .expect("the token file")
            .trim()
            .to_string(),
        };
        RealAccess {
            server: cluster["cluster"]["server"]
                .as_str()
                .expect("a server")
                .trim_end_matches('/')
                .to_string(),
            ca_pem,
            token,
        }
    }

    /// A kube client for the tests' own reads and writes (not through the proxy).
    pub async fn client(&self, ns: &str) -> kube::Client {
        let mut config = kube::Config::new(self.server.parse().unwrap());
        config.root_cert = Some(vec![pem_to_der(&self.ca_pem)]);
        config.auth_info.token = Some(self.token.clone().into());
        config.default_namespace = ns.to_string();
        kube::Client::try_from(config).unwrap()
    }

    /// A kubeconfig straight to the real server with another token (RBAC tests).
    pub fn kubeconfig_with_token(
        &self,
        dir: &Path,
        context: &str,
        token: &str,
        ns: &str,
    ) -> PathBuf {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let y = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: {context}\n  context:\n    cluster: c\n    user: u\n    namespace: {ns}\ncurrent-context: {context}\n",
            self.server
        );
        let path = dir.join(format!("kubeconfig-{context}-token"));
        std::fs::write(&path, y).unwrap();
        path
    }
}

fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .expect("a PEM certificate")
}

/// A recording reverse proxy in front of the real API server: plain HTTP on loopback for
/// ktplay, TLS with the kubeconfig's token to the server; every request is logged as the
/// simulator logs its own.
struct Proxy {
    log: Arc<Mutex<(u64, VecDeque<LoggedRequest>)>>,
    agents: Arc<Mutex<std::collections::BTreeSet<String>>>,
    /// Per mille of requests answered 500 without reaching the server (fault injection).
    errors: Arc<std::sync::atomic::AtomicU32>,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ProxyState {
    access: RealAccess,
    http: reqwest::Client,
    log: Arc<Mutex<(u64, VecDeque<LoggedRequest>)>>,
    agents: Arc<Mutex<std::collections::BTreeSet<String>>>,
    errors: Arc<std::sync::atomic::AtomicU32>,
}

impl Proxy {
    async fn start(access: RealAccess) -> Proxy {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(&access.ca_pem).unwrap())
            .tls_built_in_root_certs(false)
            .http1_only()
            .build()
            .unwrap();
        let log = Arc::new(Mutex::new((0, VecDeque::new())));
        let agents = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
        let errors = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let state = ProxyState {
            access,
            http,
            log: log.clone(),
            agents: agents.clone(),
            errors: errors.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy {
            log,
            agents,
            errors,
            url,
            task,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(st): State<ProxyState>, req: Request) -> Response {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    if let Some(ua) = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        st.agents.lock().unwrap().insert(ua.to_string());
    }
    let mut out = st
        .http
        .request(method.clone(), format!("{}{path}", st.access.server))
        .bearer_auth(&st.access.token);
    for (k, v) in req.headers() {
        if k != http::header::HOST && k != http::header::AUTHORIZATION {
            out = out.header(k, v);
        }
    }
    let body = axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let share = st.errors.load(std::sync::atomic::Ordering::Relaxed);
    if share > 0 && rand::random::<u32>() % 1000 < share {
        let mut log = st.log.lock().unwrap();
        log.0 += 1;
        let seq = log.0;
        log.1.push_back(LoggedRequest {
            seq,
            time,
            method: method.to_string(),
            path,
            content_type,
            status: 500,
        });
        return Response::builder()
            .status(500)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Internal error occurred: injected by the test proxy","reason":"InternalError","code":500}"#,
            ))
            .unwrap();
    }
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(Body::from(format!("proxy: {e}")))
                .unwrap()
        }
    };
    let status = resp.status();
    {
        let mut log = st.log.lock().unwrap();
        log.0 += 1;
        let seq = log.0;
        log.1.push_back(LoggedRequest {
            seq,
            time,
            method: method.to_string(),
            path,
            content_type,
            status: status.as_u16(),
        });
    }
    let mut b = Response::builder().status(status);
    for (k, v) in resp.headers() {
        if k != http::header::TRANSFER_ENCODING
            && k != http::header::CONNECTION
            && k != http::header::CONTENT_LENGTH
        {
            b = b.header(k, v);
        }
    }
    b.body(Body::from_stream(resp.bytes_stream())).unwrap()
}

/// One test's cluster: a namespace seeded with a playbook's components on one backend.
pub struct TestCluster {
    pub backend: Backend,
    pub ns: String,
    /// The simulator: the backend itself, or (real) the follower serving the HTTP endpoints.
    pub sim: Sim,
    /// The simulator's listeners (none on the real data path).
    running: Option<Running>,
    real: Option<RealParts>,
}

struct RealParts {
    access: RealAccess,
    client: kube::Client,
    proxy: Proxy,
    /// The follower's refresh (without the data path).
    follow: Option<tokio::task::JoinHandle<()>>,
    /// The Services' addresses (on the data path).
    datapath: Option<datapath::DataPath>,
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(r) = &self.real {
            if let Some(f) = &r.follow {
                f.abort();
            }
            // Best effort: the namespace goes when the test ends (the harness is thrown away
            // after CI anyway). Keep it with KTPLAY_TEST_KEEP=1 to look at it.
            if std::env::var_os("KTPLAY_TEST_KEEP").is_none() {
                let (client, ns) = (r.client.clone(), self.ns.clone());
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let api: Api<Namespace> = Api::all(client);
                        let _ = api.delete(&ns, &DeleteParams::background()).await;
                    });
                })
                .join();
            }
        }
    }
}

/// Seconds of `progressDeadlineSeconds` in tests: short, so a stalled rollout fails quickly,
/// but longer than one pod's start on the real harness (~1.5 s), so a healthy rollout never does.
pub const PROGRESS_DEADLINE: i64 = 4;

/// The real cluster's `progressDeadlineSeconds`: on the data path a pod is Ready when its
/// process answers its readiness probe (the gateway and api load for 2 s, probed every 1 s), so
/// one step of a healthy rollout takes 3–4 s there: 10 s.
pub fn real_progress_deadline() -> i64 {
    if datapath::enabled() {
        10
    } else {
        PROGRESS_DEADLINE
    }
}

impl TestCluster {
    /// A fresh namespace `seed.namespace` on `backend`, seeded and ready. `config` configures
    /// the simulator (the backend, or the follower on real).
    pub async fn new(backend: Backend, config: SimConfig, seed: &Seed) -> TestCluster {
        TestCluster::with(backend, config, seed, datapath::enabled()).await
    }

    /// As [`TestCluster::new`], but on the real backend always with the follower simulator
    /// answering the HTTP endpoints on loopback, data path or not: for a test that needs a fault
    /// the pod processes cannot show reliably (name it in `tests/realkube/README.md`). Used by
    /// `run_e2e`'s `policy_fault_rolls_back_gateway_then_api`,
    /// `killed_mid_rollback_resumes_the_rollback`, `large_pod_templates_keep_the_journal_small`.
    pub async fn with_follower(backend: Backend, config: SimConfig, seed: &Seed) -> TestCluster {
        TestCluster::with(backend, config, seed, false).await
    }

    /// As [`TestCluster::with_follower`] on the real backend, on the control plane of
    /// `kubeconfig` (an [`ExtraPlane`]'s) instead of `KTPLAY_TEST_KUBECONFIG`'s.
    pub async fn real_on(kubeconfig: &Path, config: SimConfig, seed: &Seed) -> TestCluster {
        TestCluster::with_access(
            Backend::Real,
            config,
            seed,
            false,
            Some(RealAccess::read(kubeconfig)),
        )
        .await
    }

    async fn with(
        backend: Backend,
        config: SimConfig,
        seed: &Seed,
        on_datapath: bool,
    ) -> TestCluster {
        TestCluster::with_access(backend, config, seed, on_datapath, None).await
    }

    async fn with_access(
        backend: Backend,
        mut config: SimConfig,
        seed: &Seed,
        on_datapath: bool,
        access: Option<RealAccess>,
    ) -> TestCluster {
        match backend {
            Backend::Sim => {
                config.progress_deadline = Some(Duration::from_secs(PROGRESS_DEADLINE as u64));
                let sim = Sim::new(config);
                sim.seed(seed);
                let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
                TestCluster {
                    backend,
                    ns: seed.namespace.clone(),
                    sim,
                    running: Some(running),
                    real: None,
                }
            }
            Backend::Real => {
                let access = access.unwrap_or_else(|| {
                    RealAccess::read(&real_kubeconfig().expect("KTPLAY_TEST_KUBECONFIG"))
                });
                let ns = seed.namespace.clone();
                let client = access.client(&ns).await;
                if on_datapath {
                    datapath::write_state(seed, &config.faults);
                    seed_real(&client, seed).await;
                    let dp = datapath::DataPath::start(&client, seed).await;
                    let proxy = Proxy::start(access.clone()).await;
                    return TestCluster {
                        backend,
                        ns,
                        sim: Sim::follower(config),
                        running: None,
                        real: Some(RealParts {
                            access,
                            client,
                            proxy,
                            follow: None,
                            datapath: Some(dp),
                        }),
                    };
                }
                seed_real(&client, seed).await;
                let sim = Sim::follower(config);
                sim.register(seed);
                ktplay::sim::follow::sync(&sim, &client, &ns).await.unwrap();
                let follow = ktplay::sim::follow::follow(sim.clone(), client.clone(), ns.clone());
                let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
                let proxy = Proxy::start(access.clone()).await;
                TestCluster {
                    backend,
                    ns,
                    sim,
                    running: Some(running),
                    real: Some(RealParts {
                        access,
                        client,
                        proxy,
                        follow: Some(follow),
                        datapath: None,
                    }),
                }
            }
        }
    }

    /// The URL ktplay's kubeconfig points at (the simulator, or the recording proxy).
    pub fn api_url(&self) -> String {
        match &self.real {
            Some(r) => r.proxy.url.clone(),
            None => self
                .running
                .as_ref()
                .expect("the simulator's listeners")
                .api_url(),
        }
    }

    /// The simulated service of a component (and colour).
    pub fn service_url(&self, component: &str, colour: Option<&str>) -> Option<String> {
        match self.real.as_ref().and_then(|r| r.datapath.as_ref()) {
            Some(dp) => dp.url(component, colour),
            None => self.running.as_ref()?.service_url(component, colour),
        }
    }

    /// Do this cluster's service URLs go through the real data path to pod processes?
    pub fn on_datapath(&self) -> bool {
        self.real.as_ref().is_some_and(|r| r.datapath.is_some())
    }

    /// The real cluster's access (server, CA, admin token); `None` on the simulator.
    pub fn real_access(&self) -> Option<&RealAccess> {
        self.real.as_ref().map(|r| &r.access)
    }

    /// A client of the backend (admin, not through the proxy).
    pub fn client(&self) -> kube::Client {
        match &self.real {
            Some(r) => r.client.clone(),
            None => kube::Client::new(self.sim.router(), self.ns.clone()),
        }
    }

    /// Every request ktplay (or anyone using [`TestCluster::api_url`]) sent, in order.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        match &self.real {
            Some(r) => r.proxy.log.lock().unwrap().1.iter().cloned().collect(),
            None => self.sim.request_log(),
        }
    }

    /// Answer this share (0..=1) of the API requests ktplay sends with 500 InternalError: the
    /// simulator's `api-errors` fault, or the recording proxy's on the real backend.
    pub fn set_api_errors(&self, share: f64) {
        match &self.real {
            Some(r) => r.proxy.errors.store(
                (share * 1000.0).round() as u32,
                std::sync::atomic::Ordering::Relaxed,
            ),
            None => {
                self.sim.clear_faults();
                if share > 0.0 {
                    self.sim
                        .set_fault(format!("api-errors:{share}").parse().unwrap());
                }
            }
        }
    }

    /// The `User-Agent`s of the requests through the proxy (real backend only).
    pub fn user_agents(&self) -> Option<Vec<String>> {
        self.real
            .as_ref()
            .map(|r| r.proxy.agents.lock().unwrap().iter().cloned().collect())
    }

    /// One object of the test's namespace, by resource plural.
    pub async fn get(&self, plural: &str, name: &str) -> Option<Value> {
        match &self.real {
            None => self.sim.get_object(plural, &self.ns, name),
            Some(r) => {
                let (ar, _) = resource(plural);
                let api: Api<kube::api::DynamicObject> =
                    Api::namespaced_with(r.client.clone(), &self.ns, &ar);
                api.get_opt(name)
                    .await
                    .unwrap()
                    .map(|o| serde_json::to_value(o).unwrap())
            }
        }
    }

    /// Every object of a resource in the test's namespace.
    pub async fn list(&self, plural: &str) -> Vec<Value> {
        match &self.real {
            None => self.sim.list_objects(plural, &self.ns),
            Some(r) => {
                let (ar, _) = resource(plural);
                let api: Api<kube::api::DynamicObject> =
                    Api::namespaced_with(r.client.clone(), &self.ns, &ar);
                api.list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .map(|o| serde_json::to_value(o).unwrap())
                    .collect()
            }
        }
    }

    /// The image of a deployment's first container.
    pub async fn image(&self, deploy: &str) -> String {
        let d = self
            .get("deployments", deploy)
            .await
            .unwrap_or_else(|| panic!("deployment {deploy}"));
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Wait until every deployment of the namespace has finished its rollout (kubectl's test).
    pub async fn settled(&self) {
        let start = Instant::now();
        loop {
            let ds = self.list("deployments").await;
            if ds.iter().all(rollout_complete) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "deployments did not settle: {}",
                ds.iter()
                    .filter(|d| !rollout_complete(d))
                    .map(|d| d["metadata"]["name"].to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn rollout_complete(d: &Value) -> bool {
    let g = d["metadata"]["generation"].as_i64().unwrap_or(0);
    let s = &d["status"];
    let n = |k: &str| s[k].as_i64().unwrap_or(0);
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    g <= n("observedGeneration")
        && n("updatedReplicas") >= want
        && n("replicas") <= n("updatedReplicas")
        && n("availableReplicas") >= n("updatedReplicas")
}

fn resource(plural: &str) -> (kube::api::ApiResource, ()) {
    use kube::api::ApiResource;
    let ar = match plural {
        "deployments" => ApiResource::erase::<Deployment>(&()),
        "replicasets" => ApiResource::erase::<k8s_openapi::api::apps::v1::ReplicaSet>(&()),
        "services" => ApiResource::erase::<Service>(&()),
        "pods" => ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
        "configmaps" => ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
        "leases" => ApiResource::erase::<k8s_openapi::api::coordination::v1::Lease>(&()),
        "poddisruptionbudgets" => {
            ApiResource::erase::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(&())
        }
        other => panic!("no resource {other} in the tests"),
    };
    (ar, ())
}

/// Create the namespace and the seed's objects on a real cluster, and wait until every
/// deployment is rolled out and ready (as the simulator's seed is).
async fn seed_real(client: &kube::Client, seed: &Seed) {
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(
        serde_json::json!({"metadata": {"name": seed.namespace, "labels": {"ktplay-test": "e2e"}}}),
    )
    .unwrap();
    ns_api.create(&PostParams::default(), &ns).await.unwrap();
    // The namespace's default ServiceAccount appears shortly; pods need it.
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), &seed.namespace);
    let start = Instant::now();
    while sa.get_opt("default").await.unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no default ServiceAccount"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &seed.namespace);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &seed.namespace);
    for obj in seed.objects(Some(real_progress_deadline())) {
        match obj["kind"].as_str() {
            Some("Deployment") => {
                deps.create(
                    &PostParams::default(),
                    &serde_json::from_value(obj).unwrap(),
                )
                .await
                .unwrap();
            }
            Some("Service") => {
                svcs.create(
                    &PostParams::default(),
                    &serde_json::from_value(obj).unwrap(),
                )
                .await
                .unwrap();
            }
            Some("PodDisruptionBudget") => {
                let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
                    Api::namespaced(client.clone(), &seed.namespace);
                pdbs.create(
                    &PostParams::default(),
                    &serde_json::from_value(obj).unwrap(),
                )
                .await
                .unwrap();
            }
            other => panic!("seed object of kind {other:?}"),
        }
    }
    let start = Instant::now();
    loop {
        let all = deps.list(&ListParams::default()).await.unwrap();
        if all
            .items
            .iter()
            .all(|d| rollout_complete(&serde_json::to_value(d).unwrap()))
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the seeded deployments did not become ready on the real cluster"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A ServiceAccount of the test's namespace that may read everything there and write nothing,
/// and a token for it (TokenRequest). Real backend only.
pub async fn read_only_token(c: &TestCluster, name: &str) -> String {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let client = c.client();
    let ns = &c.ns;
    let pp = PostParams::default();
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    sa.create(
        &pp,
        &serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
    let roles: Api<Role> = Api::namespaced(client.clone(), ns);
    roles
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    bindings
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let req: TokenRequest = serde_json::from_value(
        serde_json::json!({"spec": {"audiences": [], "expirationSeconds": 3600}}),
    )
    .unwrap();
    let tr: TokenRequest = sa
        .create_subresource("token", name, &pp, &req)
        .await
        .unwrap();
    tr.status.and_then(|s| s.token).expect("a token")
}

/// A case playbook of `tests/cases/run`.
pub fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cases/run")
        .join(name)
}

/// A copy of a case playbook in `dir` with its namespace set to `ns` and each `(from, to)`
/// replacement applied (each must match).
pub fn copy_case(dir: &Path, name: &str, ns: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(case(name)).unwrap();
    assert!(text.contains("namespace \"keeptrusts\""));
    text = text.replace("namespace \"keeptrusts\"", &format!("namespace \"{ns}\""));
    for (from, to) in edits {
        assert!(text.contains(from), "{name} has no `{from}`");
        text = text.replacen(from, to, 1);
    }
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A kubeconfig with one context per (name, cluster).
pub fn kubeconfig(dir: &Path, contexts: &[(&str, &TestCluster)]) -> PathBuf {
    let mut y = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for (n, c) in contexts {
        y += &format!("- name: {n}\n  cluster:\n    server: {}\n", c.api_url());
    }
    y += "users:\n- name: u\n  user: {}\ncontexts:\n";
    for (n, c) in contexts {
        y += &format!(
            "- name: {n}\n  context:\n    cluster: {n}\n    user: u\n    namespace: {}\n",
            c.ns
        );
    }
    y += &format!("current-context: {}\n", contexts[0].0);
    let path = dir.join("kubeconfig");
    std::fs::write(&path, y).unwrap();
    path
}

/// Another real control plane beside the harness's own (`tests/realkube/up.sh` in a temporary
/// folder, without the data path: the fake kubelet only writes pod status), for a test that
/// needs several clusters at once (a fleet). Stopped and purged on drop.
pub struct ExtraPlane {
    dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl ExtraPlane {
    /// Start one; `None` (the caller skips, loudly) without the harness's binaries.
    pub fn start() -> Option<ExtraPlane> {
        let up = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/realkube/up.sh");
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(&up)
            .arg(dir.path().join("rk"))
            .env("REALKUBE_DATAPATH", "0")
            .env_remove("REALKUBE_AUDIT")
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("up.sh runs");
        assert!(
            out.status.success(),
            "tests/realkube/up.sh failed: {:?}",
            out.status
        );
        let kubeconfig = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            kubeconfig.exists(),
            "up.sh printed no kubeconfig: {kubeconfig:?}"
        );
        Some(ExtraPlane { dir, kubeconfig })
    }
}

impl Drop for ExtraPlane {
    fn drop(&mut self) {
        let down = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/realkube/down.sh");
        let _ = std::process::Command::new(down)
            .arg(self.dir.path().join("rk"))
            .arg("--purge")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
