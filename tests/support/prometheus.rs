//! A real Prometheus (`/usr/bin/prometheus`, Debian's package) for one test's namespace on the
//! real data path: it scrapes each pod process's `/metrics` on its pod IP every second, the pods
//! found through the real API server, so a metric guard's query is answered from the pods' real
//! traffic.
//!
//! Discovery: Debian builds Prometheus without `kubernetes_sd_configs` (its config parser says
//! "field kubernetes_sd_configs not found"), so Prometheus asks an HTTP service discovery
//! (`http_sd_configs`, every second) served here, which lists the namespace's pods through the
//! API server as the harness's view-only user `realkube:pods` (`WORKDIR/pods.kubeconfig`) and
//! answers one target per container port with the meta labels Prometheus' own Kubernetes
//! discovery (role `pod`) gives: `__meta_kubernetes_namespace`, `_pod_name`, `_pod_ip`,
//! `_pod_phase`, `_pod_ready`, `_pod_container_name`, `_pod_container_port_number`,
//! `_pod_label_<name>`. The relabeling is the one a `kubernetes_sd_configs` job would use: keep
//! the test's namespace, Running pods with a container port; `namespace`, `pod` and `pod_ip`
//! labels; `instance` is the pod's `IP:port`. The pods expose `app` (the component) and `version`
//! (the image tag) themselves (`honor_labels`: a pod label `version` is a blue-green colour, and
//! a template's labels do not change with its image).
//!
//! Its own temporary folder (config, TSDB, log), free ports on loopback, killed when dropped.
//! [`Prometheus::binary`] is `None` without the package: callers say SKIPPED loudly.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::response::IntoResponse;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};

pub struct Prometheus {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
    discovery: tokio::task::JoinHandle<()>,
    /// How many times Prometheus asked the discovery.
    pub discoveries: Arc<AtomicU64>,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.discovery.abort();
    }
}

impl Prometheus {
    /// The installed `prometheus`, if any.
    pub fn binary() -> Option<PathBuf> {
        ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    }

    /// Start one for namespace `ns` of the harness's cluster and wait until it is ready.
    pub async fn start(bin: &std::path::Path, ns: &str) -> Prometheus {
        let kc = super::real_kubeconfig().expect("KTPLAY_TEST_KUBECONFIG");
        let pods_kc = kc
            .parent()
            .expect("the kubeconfig is in the harness's WORKDIR")
            .join("pods.kubeconfig");
        assert!(
            pods_kc.exists(),
            "the harness's view-only kubeconfig {} (tests/realkube/up.sh writes it)",
            pods_kc.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let discoveries = Arc::new(AtomicU64::new(0));
        let (sd_url, discovery) = discovery(&pods_kc, ns, discoveries.clone()).await;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_text(ns, &sd_url)).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            discovery,
            discoveries,
        };
        let http = client();
        let t0 = Instant::now();
        loop {
            if http
                .get(format!("{}/-/ready", p.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("prometheus exited ({st}): {}", p.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "prometheus not ready in 30 s: {}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        p
    }

    /// Its log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn api(&self, path: &str, form: &[(&str, String)]) -> Value {
        let v: Value = client()
            .post(format!("{}{path}", self.url))
            .form(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["status"], "success", "{path} {form:?}: {v}");
        v["data"].clone()
    }

    /// An instant query's result (a vector's samples).
    pub async fn query(&self, q: &str) -> Vec<Value> {
        let d = self.api("/api/v1/query", &[("query", q.to_string())]).await;
        d["result"].as_array().cloned().unwrap_or_default()
    }

    /// The label sets of every series matching `selector` in the last ten minutes.
    pub async fn series(&self, selector: &str) -> Vec<Value> {
        let now = chrono::Utc::now().timestamp();
        let d = self
            .api(
                "/api/v1/series",
                &[
                    ("match[]", selector.to_string()),
                    ("start", (now - 600).to_string()),
                    ("end", now.to_string()),
                ],
            )
            .await;
        d.as_array().cloned().unwrap_or_default()
    }

    /// Wait until at least `n` pods of the namespace are scraped (`up == 1`).
    pub async fn wait_for_targets(&self, ns: &str, n: usize) {
        let t0 = Instant::now();
        loop {
            let up = self
                .query(&format!("up{{namespace=\"{ns}\"}} == 1"))
                .await
                .len();
            if up >= n {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "prometheus scrapes {up} of {n} pods of {ns} after 30 s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// How many instant queries it answered (its own `prometheus_http_requests_total`).
    pub async fn queries_answered(&self) -> u64 {
        let text = client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| {
                l.starts_with("prometheus_http_requests_total{")
                    && l.contains("handler=\"/api/v1/query\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The HTTP service discovery: the namespace's pods, listed through the API server with the
/// view-only kubeconfig on every request, as Prometheus' Kubernetes discovery (role `pod`) would
/// give them. Returns its URL and its task.
async fn discovery(
    kubeconfig: &std::path::Path,
    ns: &str,
    asked: Arc<AtomicU64>,
) -> (String, tokio::task::JoinHandle<()>) {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(kube::Client::try_from(config).unwrap(), ns);
    let ns = ns.to_string();
    let app = axum::Router::new().route(
        "/targets",
        axum::routing::get(move || {
            let (pods, ns, asked) = (pods.clone(), ns.clone(), asked.clone());
            async move {
                asked.fetch_add(1, Ordering::SeqCst);
                match pods.list(&ListParams::default()).await {
                    Ok(list) => axum::Json(target_groups(&ns, &list.items)).into_response(),
                    // Prometheus keeps the last good list when a refresh fails.
                    Err(e) => {
                        (http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/targets", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

/// One target group per container port of each pod with an IP, labelled as Prometheus'
/// Kubernetes discovery labels it.
fn target_groups(ns: &str, pods: &[Pod]) -> Vec<Value> {
    let mut out = Vec::new();
    for p in pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let status = p.status.clone().unwrap_or_default();
        let Some(ip) = status.pod_ip.clone().filter(|ip| !ip.is_empty()) else {
            continue;
        };
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let mut base = serde_json::Map::new();
        base.insert("__meta_kubernetes_namespace".into(), json!(ns));
        base.insert("__meta_kubernetes_pod_name".into(), json!(name));
        base.insert("__meta_kubernetes_pod_ip".into(), json!(ip));
        base.insert(
            "__meta_kubernetes_pod_phase".into(),
            json!(status.phase.clone().unwrap_or_default()),
        );
        base.insert(
            "__meta_kubernetes_pod_ready".into(),
            json!(ready.to_string()),
        );
        for (k, v) in p.metadata.labels.iter().flatten() {
            let k: String = k
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            base.insert(format!("__meta_kubernetes_pod_label_{k}"), json!(v));
        }
        for c in p.spec.iter().flat_map(|s| &s.containers) {
            for port in c.ports.iter().flatten() {
                let mut labels = base.clone();
                labels.insert("__meta_kubernetes_pod_container_name".into(), json!(c.name));
                labels.insert(
                    "__meta_kubernetes_pod_container_port_number".into(),
                    json!(port.container_port.to_string()),
                );
                out.push(json!({
                    "targets": [format!("{ip}:{}", port.container_port)],
                    "labels": labels,
                }));
            }
        }
    }
    out
}

/// The scrape configuration: the namespace's pods, as the discovery lists them.
fn config_text(ns: &str, discovery_url: &str) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: pods
    honor_labels: true
    metrics_path: /metrics
    http_sd_configs:
      - url: "{discovery_url}"
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_kubernetes_namespace]
        regex: "{ns}"
        action: keep
      - source_labels: [__meta_kubernetes_pod_phase]
        regex: Running
        action: keep
      - source_labels: [__meta_kubernetes_pod_container_port_number]
        regex: ".+"
        action: keep
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_ip]
        target_label: pod_ip
"#
    )
}
