//! `ktplay rehearse`: the simulator in-process, seeded from the playbook, with the env's URLs
//! routed to the simulated services and stand-ins for unset secrets.
//!
//! Seeding: every component at its `from` version, 3 replicas per deployment (blue-green: both
//! colours, the Service on blue), in the env's namespace. The sim judges compatibility by the
//! playbook's matrix.
//!
//! URL routing: each `let` whose value is an `http(s)://` URL is mapped to a component — the one
//! that says `serves LET`, else the one whose `${C.idle}`/`${C.live}` it names (each colour's
//! host to that colour's service), else by the let's name (`api_url` → `api`), else by the
//! words of its host (`console-….internal` → `console`); see [`let_routes`]. Requests keep their
//! path and query; only scheme and host change.
//!
//! Components the simulator has no model for answer as [`crate::rehearse::generic`] computes from the
//! playbook's guards.
//!
//! | module | what it holds |
//! |---|---|
//! | this file | seeding, URL routing, stand-in secrets, the compatibility function of the simulator |
//! | `error` | [`RehearseError`]: why a rehearsal could not run |
//! | [`fleet`] | a fleet's rehearsal: one simulator and one run per cluster, waves, soaks |
//! | [`generic`] | what the simulator's generic services answer, computed from the playbook's guards |
//! | `start` | [`Rehearsal::start`]: the simulator for a selection, seeded, listening, with its URL routes |
//! | [`suite`] | `ktplay test`: each test item on its own simulator with a paused clock |
//!
//! The runner ([`crate::run`]) never imports this module.

use std::collections::HashMap;
use std::sync::Arc;

use crate::matrix::{Matrix, Verdict};
use crate::program::{Colour, Env, Field, LetValue, Playbook, Template, TemplatePart, Workload};
use crate::resolve::{Live, Mode, Scope};
use crate::sim::{CompatFn, Running, Seed, SeedComponent, SeedWorkload};

use crate::run::guards::UrlRewrite;

mod error;
pub(crate) mod fleet;
pub(crate) mod generic;
mod start;
pub(crate) mod suite;

pub use error::RehearseError;
pub use start::{Listen, Pace, Rehearsal};

/// The seed for a playbook: its components at `from`.
pub fn seed_for(pb: &Playbook, namespace: &str) -> Seed {
    Seed {
        pod_env: Vec::new(),
        routes: pb.components.iter().filter_map(seed_route).collect(),
        namespace: namespace.to_string(),
        components: pb
            .components
            .iter()
            .map(|c| SeedComponent {
                name: c.name.clone(),
                workload: match &c.workload {
                    Workload::Deployments(d) => SeedWorkload::Deployments(d.clone()),
                    Workload::BlueGreen(bg) => SeedWorkload::BlueGreen {
                        service: bg.service.clone(),
                        selector: bg.selector.clone(),
                        blue: bg.blue.clone(),
                        green: bg.green.clone(),
                    },
                },
                container: c.container.clone(),
                image: c.image.clone(),
                version: c.from.clone(),
                replicas: 3,
            })
            .collect(),
    }
}

/// The router a component's `traffic` names, in front of its (first) Deployment's Service with
/// all the weight, as a canary expects to find it before it starts.
fn seed_route(c: &crate::program::Component) -> Option<crate::sim::SeedRoute> {
    use crate::program::TrafficKind;
    let t = c.traffic.as_ref()?;
    let Workload::Deployments(d) = &c.workload else {
        return None;
    };
    Some(crate::sim::SeedRoute {
        kind: match t.kind {
            TrafficKind::HttpRoute => crate::sim::SeedRouteKind::HttpRoute,
            TrafficKind::Ingress => crate::sim::SeedRouteKind::Ingress,
        },
        name: t.name.clone(),
        service: d.first()?.clone(),
    })
}

/// The sim's compatibility judged by the playbook's matrix (components take part under their
/// roles); `None` (the sim's built-in rule) when the playbook names no matrix.
pub fn compat_for(pb: &Playbook, matrix: Option<&Matrix>) -> Option<CompatFn> {
    let m = matrix?.clone();
    let roles: HashMap<String, String> = pb
        .components
        .iter()
        .map(|c| (c.name.clone(), c.role.clone()))
        .collect();
    Some(Arc::new(move |who: &str, peer, api| {
        let role = roles.get(who).map(String::as_str).unwrap_or(who);
        matches!(m.verdict(role, peer, api), Verdict::Allowed)
    }))
}

/// Secrets for the rehearsal: the environment's values where set, generated stand-ins
/// otherwise. Returns the values and the variables that got stand-ins.
pub fn secrets(pb: &Playbook, env: Option<&Env>) -> (HashMap<String, String>, Vec<String>) {
    let mut values = HashMap::new();
    let mut generated = Vec::new();
    let lets = pb
        .lets
        .iter()
        .chain(env.into_iter().flat_map(|e| e.lets.iter()));
    for l in lets {
        if let LetValue::Secret { var } = &l.value {
            if values.contains_key(var) {
                continue;
            }
            // A value that cannot be used safely (too short to mask, a control character) is
            // replaced by a stand-in too: a rehearsal never needs the real secret.
            match std::env::var(var)
                .ok()
                .and_then(|v| crate::redact::normalize_secret(var, &v).ok())
            {
                Some(v) => {
                    values.insert(var.clone(), v);
                }
                _ => {
                    use rand::Rng;
                    let n: u64 = rand::thread_rng().gen();
                    values.insert(var.clone(), format!("rehearsal-{n:016x}"));
                    generated.push(var.clone());
                }
            }
        }
    }
    (values, generated)
}

/// Hosts of every `guard metric` URL, rendered for `env`.
fn metric_hosts(
    pb: &Playbook,
    env: Option<&Env>,
    secrets: &HashMap<String, String>,
) -> Vec<String> {
    use crate::program::{GuardKind, Op};
    let urls = pb.statements().into_iter().filter_map(|st| match &st.op {
        Op::Guard(g) => match &g.kind {
            GuardKind::Metric(m) => Some(&m.url),
            _ => None,
        },
        _ => None,
    });
    let mut live = Live {
        colours: HashMap::new(),
        secrets: secrets.clone(),
    };
    for (i, c) in pb.components.iter().enumerate() {
        if c.is_blue_green() {
            live.colours.insert(i, Colour::Blue);
        }
    }
    let scope = Scope::new(pb, env, &live);
    let mut hosts: Vec<String> = Vec::new();
    for u in urls {
        if let Ok(url) = scope.render(u, Mode::Real) {
            if let Some(h) = host_of(&url) {
                if !hosts.iter().any(|x| x == h) {
                    hosts.push(h.to_string());
                }
            }
        }
    }
    hosts
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn host_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// The colour field a template names for a component, if any.
fn colour_field(t: &Template) -> Option<(usize, Field)> {
    t.parts.iter().find_map(|p| match p {
        TemplatePart::Field { comp, field } if matches!(field, Field::Idle | Field::Live) => {
            Some((*comp, *field))
        }
        _ => None,
    })
}

/// One host of an env's URL let and the component (and colour) that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetRoute {
    /// The let's name.
    pub name: String,
    pub host: String,
    /// Index into the playbook's components.
    pub comp: usize,
    /// `blue`/`green` for a URL naming `${C.idle}` or `${C.live}`.
    pub colour: Option<&'static str>,
}

/// Which component serves each host of the env's URL lets. The rule, in order: a component
/// that says `serves LET`; the component whose `${C.idle}`/`${C.live}` the URL names (each
/// colour's host to that colour); a component whose name is a word of the let's name
/// (`api_url` → `api`); a component whose name is a word of the host
/// (`console-blue.staging.internal` → `console`). The servers of metric guards are left out
/// (they are the simulator's Prometheus API). Returns the routes and a note per let no rule
/// matched.
pub fn let_routes(
    pb: &Playbook,
    env: Option<&Env>,
    secrets: &HashMap<String, String>,
) -> (Vec<LetRoute>, Vec<String>) {
    let mut out: Vec<LetRoute> = Vec::new();
    let mut notes = Vec::new();
    let metric_hosts: Vec<String> = metric_hosts(pb, env, secrets)
        .into_iter()
        .filter(|h| !is_loopback_host(h))
        .collect();
    let lets = pb
        .lets
        .iter()
        .chain(env.into_iter().flat_map(|e| e.lets.iter()));
    for l in lets {
        let LetValue::Text(t) = &l.value else {
            continue;
        };
        let colour_part = colour_field(t);
        let lives: Vec<Option<Colour>> = if colour_part.is_some() {
            vec![Some(Colour::Blue), Some(Colour::Green)]
        } else {
            vec![None]
        };
        let explicit = pb
            .components
            .iter()
            .position(|c| c.serves.iter().any(|s| s.node == l.name));
        for live in lives {
            let mut l_live = Live {
                colours: HashMap::new(),
                secrets: secrets.clone(),
            };
            if let (Some((ci, _)), Some(col)) = (colour_part, live) {
                l_live.colours.insert(ci, col);
            }
            // Blue-green components the template does not name still need a colour to render.
            for (i, c) in pb.components.iter().enumerate() {
                if c.is_blue_green() {
                    l_live.colours.entry(i).or_insert(Colour::Blue);
                }
            }
            let scope = Scope::new(pb, env, &l_live);
            let Ok(url) = scope.render(t, Mode::Real) else {
                continue;
            };
            let Some(host) = host_of(&url) else { continue };
            if metric_hosts.iter().any(|h| h == host) && explicit.is_none() {
                continue;
            }
            let by_name = || {
                pb.components
                    .iter()
                    .position(|c| words(&l.name).any(|w| w == c.name))
            };
            let by_host = || {
                pb.components
                    .iter()
                    .position(|c| words(host).any(|w| w == c.name))
            };
            let comp = explicit
                .or(colour_part.map(|(ci, _)| ci))
                .or_else(by_name)
                .or_else(by_host);
            let Some(ci) = comp else {
                // A URL on this machine is asked as written (a rehearsal may reach loopback).
                if is_loopback_host(host) {
                    let note = format!(
                        "`{}` ({host}) is on this machine and matches no component: its requests are sent as written",
                        l.name
                    );
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                    continue;
                }
                notes.push(format!(
                    "`{}` ({host}) matches no component: its requests are refused (a rehearsal never leaves this machine); say which component serves it with `serves {}` in that component",
                    l.name, l.name
                ));
                continue;
            };
            // The colour applies to the component the URL names it for.
            let colour = match (colour_part, live) {
                (Some((cc, Field::Idle)), Some(l)) if cc == ci => Some(l.other().as_str()),
                (Some((cc, Field::Live)), Some(l)) if cc == ci => Some(l.as_str()),
                _ => None,
            };
            if !out.iter().any(|r| r.host == host) {
                out.push(LetRoute {
                    name: l.name.clone(),
                    host: host.to_string(),
                    comp: ci,
                    colour,
                });
            }
        }
    }
    (out, notes)
}

/// Route the env's URL lets to the simulator's services (by [`let_routes`]).
pub fn url_rewrite(
    pb: &Playbook,
    env: Option<&Env>,
    running: &Running,
    secrets: &HashMap<String, String>,
) -> (UrlRewrite, Vec<String>) {
    let mut map = Vec::new();
    // The servers of metric guards are the simulator's Prometheus-compatible API, unless they
    // are on this machine (a local Prometheus scraping the simulator is asked as it is).
    let metric_hosts: Vec<String> = metric_hosts(pb, env, secrets)
        .into_iter()
        .filter(|h| !is_loopback_host(h))
        .collect();
    for h in &metric_hosts {
        map.push((h.clone(), running.api_url()));
    }
    let (routes, notes) = let_routes(pb, env, secrets);
    for r in routes {
        let cname = &pb.components[r.comp].name;
        if let Some(base) = running.service_url(cname, r.colour) {
            if !map.iter().any(|(h, _): &(String, String)| *h == r.host) {
                map.push((r.host, base));
            }
        }
    }
    (UrlRewrite { map, confine: true }, notes)
}
