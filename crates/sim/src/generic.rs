//! Generic services: how a component the simulator has no model for (anything but the Keeptrusts
//! `api`, `gateway`, `console` and `workers`) answers, so any system can be rehearsed.
//!
//! The simulator knows nothing of playbooks: its user hands it a [`Generic`] — per component
//! the requests its guards make and the answers they expect ([`GenericRoute`]), the log lines its
//! log guards look for, and a predicate over a whole state (the playbook's matrix). A request to
//! a generic component is answered by one ready pod:
//!
//! 1. a fault `http:C@V=STATUS` on the pod's version: that status;
//! 2. a state the predicate forbids (the pod's version beside the versions the ready pods of the
//!    other components run): `503`, the body naming the versions and the reason;
//! 3. a request some route names (method and path): the route's status and body;
//! 4. `GET /healthz`, `/readyz`, `/version`: `200` with the component and version;
//! 5. anything else: `404`.
//!
//! A generic pod's log holds the route's log lines as they are (no stamp in front, so anchored
//! patterns match), unless `logs-missing:C@V`; `crash:C@V` makes its pods crash-loop.

use std::fmt;
use std::sync::Arc;

use semver::Version;
use serde_json::{json, Value};

/// Decides whether a state is allowed: every `(component, version)` the ready pods run (a
/// component may appear with several versions). `Err` says why not.
pub type StateFn = Arc<dyn Fn(&[(String, Version)]) -> Result<(), String> + Send + Sync>;

/// The roles the simulator has a model for (the Keeptrusts system); any other component is
/// generic.
pub const MODELLED_ROLES: [&str; 4] = ["api", "gateway", "console", "workers"];

/// Does the simulator model this role itself (rather than answer generically)?
pub fn is_modelled(role: &str) -> bool {
    MODELLED_ROLES.contains(&role)
}

/// One request a guard makes and the answer it expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericRoute {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The status to answer.
    pub status: u16,
    /// The body to answer (with `content_type`); `None`: a JSON document
    /// `{"status": "ok", "component": C, "version": V}` of the answering pod.
    pub body: Option<String>,
    pub content_type: String,
}

/// What one generic component serves and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenericSpec {
    /// The component (as seeded).
    pub component: String,
    pub routes: Vec<GenericRoute>,
    /// Lines every healthy pod logs once started.
    pub log_lines: Vec<String>,
}

/// Every generic component's spec and the state predicate.
#[derive(Clone, Default)]
pub struct Generic {
    pub components: Vec<GenericSpec>,
    /// `None`: every state is allowed.
    pub allowed: Option<StateFn>,
}

impl fmt::Debug for Generic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generic")
            .field("components", &self.components)
            .field("allowed", &self.allowed.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

impl Generic {
    /// The spec of a component, if it has one.
    pub fn spec(&self, component: &str) -> Option<&GenericSpec> {
        self.components.iter().find(|s| s.component == component)
    }
}

/// An answer: status, content type, body.
pub(crate) type Answer = (u16, String, Vec<u8>);

fn json_answer(status: u16, v: Value) -> Answer {
    (
        status,
        "application/json".into(),
        serde_json::to_vec(&v).unwrap_or_default(),
    )
}

/// `backend 2.4.0, frontend 3.0.0 and 3.1.0`
fn describe_state(state: &[(String, Version)]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for (c, _) in state {
        if !names.contains(&c.as_str()) {
            names.push(c);
        }
    }
    names
        .iter()
        .map(|n| {
            let mut vs: Vec<&Version> = state
                .iter()
                .filter(|(c, _)| c == n)
                .map(|(_, v)| v)
                .collect();
            vs.sort();
            vs.dedup();
            let vs: Vec<String> = vs.iter().map(|v| v.to_string()).collect();
            format!("{n} {}", vs.join(" and "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a generic component's pod on `version` answers `method path`. `state` is what the ready
/// pods of the namespace run, the answering component already narrowed to this pod's version.
pub(crate) fn answer(
    generic: &Generic,
    component: &str,
    version: Option<&Version>,
    state: &[(String, Version)],
    method: &str,
    path: &str,
) -> Answer {
    let vtext = version.map(|v| v.to_string()).unwrap_or_default();
    if let (Some(allowed), Some(v)) = (&generic.allowed, version) {
        if let Err(why) = allowed(state) {
            return json_answer(
                503,
                json!({
                    "error": "incompatible_versions",
                    "message": format!(
                        "{component} {v} is not allowed in the state {}: {why}",
                        describe_state(state)
                    ),
                    "component": component,
                    "version": vtext,
                }),
            );
        }
    }
    let route = generic
        .spec(component)
        .into_iter()
        .flat_map(|s| &s.routes)
        .find(|r| r.method.eq_ignore_ascii_case(method) && r.path == path);
    if let Some(r) = route {
        return match &r.body {
            Some(b) => (r.status, r.content_type.clone(), b.clone().into_bytes()),
            None => json_answer(
                r.status,
                json!({"status": "ok", "component": component, "version": vtext}),
            ),
        };
    }
    match (method, path) {
        ("GET", "/healthz") => json_answer(200, json!({"status": "alive", "version": vtext})),
        ("GET", "/readyz") => json_answer(200, json!({"status": "ready", "version": vtext})),
        ("GET", "/version") => json_answer(200, json!({"component": component, "version": vtext})),
        _ => json_answer(
            404,
            json!({"error": "not_found", "message": format!("{component} has no route {method} {path} (no guard of the playbook asks for it)")}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn generic() -> Generic {
        Generic {
            components: vec![GenericSpec {
                component: "backend".into(),
                routes: vec![GenericRoute {
                    method: "GET".into(),
                    path: "/api/status".into(),
                    status: 200,
                    body: Some("{\"db\":\"ok\"}".into()),
                    content_type: "application/json".into(),
                }],
                log_lines: vec![],
            }],
            allowed: Some(Arc::new(|state: &[(String, Version)]| {
                if state.iter().any(|(c, v)| c == "frontend" && v.minor == 1)
                    && state.iter().any(|(c, v)| c == "backend" && v.minor == 3)
                {
                    Err("frontend 3.1.x needs backend 2.4.x".into())
                } else {
                    Ok(())
                }
            })),
        }
    }

    #[test]
    fn a_route_gets_its_answer_and_other_paths_404() {
        let g = generic();
        let state = [("backend".to_string(), v("2.4.0"))];
        let (s, ct, body) = answer(
            &g,
            "backend",
            Some(&v("2.4.0")),
            &state,
            "GET",
            "/api/status",
        );
        assert_eq!(
            (s, ct.as_str(), body.as_slice()),
            (200, "application/json", &b"{\"db\":\"ok\"}"[..])
        );
        let (s, _, body) = answer(
            &g,
            "backend",
            Some(&v("2.4.0")),
            &state,
            "POST",
            "/api/status",
        );
        assert_eq!(s, 404);
        assert!(String::from_utf8_lossy(&body).contains("no route POST /api/status"));
        let (s, _, _) = answer(&g, "backend", Some(&v("2.4.0")), &state, "GET", "/healthz");
        assert_eq!(s, 200);
    }

    #[test]
    fn a_forbidden_state_answers_503_naming_the_versions() {
        let g = generic();
        let state = [
            ("backend".to_string(), v("2.3.0")),
            ("frontend".to_string(), v("3.0.0")),
            ("frontend".to_string(), v("3.1.0")),
        ];
        let (s, _, body) = answer(
            &g,
            "backend",
            Some(&v("2.3.0")),
            &state,
            "GET",
            "/api/status",
        );
        assert_eq!(s, 503);
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("backend 2.3.0, frontend 3.0.0 and 3.1.0")
                && body.contains("frontend 3.1.x needs backend 2.4.x"),
            "{body}"
        );
    }
}
