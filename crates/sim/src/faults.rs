//! Fault knobs: what can go wrong in the simulated cluster, settable at start and while running.
//!
//! Each fault has a one-line CLI form (`never-ready:gateway@1.5.0`) that [`Fault`]'s `FromStr`
//! parses and `Display` writes back, so the same strings serve `--fault`, the JSON of
//! `GET/POST /__sim/faults` and error messages.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use semver::Version;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One thing the simulator makes go wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Pods of `component` running `version` start but never become ready, so a rollout to that
    /// version stalls and ends in `ProgressDeadlineExceeded`.
    NeverReady {
        /// The component's role (`gateway`, `api`, ...), as seeded.
        component: String,
        /// The version whose pods never become ready.
        version: Version,
    },
    /// Gateway pods of this version do not enforce policy: they answer 200 where 409 is due.
    PolicyOff {
        /// The gateway version with enforcement switched off.
        version: Version,
    },
    /// API pods of this version fail their database migration: they log the failure and never
    /// become ready.
    MigrationFails {
        /// The api version whose migration fails.
        version: Version,
    },
    /// The Kubernetes API answers `500 InternalError` on this share (0..=1) of resource requests.
    ApiErrors {
        /// Share of failing requests, between 0 and 1.
        share: f64,
    },
    /// Every API and service request is delayed by this long.
    Latency(Duration),
    /// This share (0..=1) of the simulated traffic to `component`'s pods of `version` answers
    /// 500 (in `/metrics` and `/api/v1/query`): `error-rate:COMPONENT@VERSION=SHARE`.
    ErrorRate {
        component: String,
        version: Version,
        share: f64,
    },
    /// `component`'s pods of `version` answer the simulated traffic this much slower:
    /// `latency:COMPONENT@VERSION=DURATION`.
    ServiceLatency {
        component: String,
        version: Version,
        latency: Duration,
    },
    /// Requests to `component`'s pods of `version` are answered with this status (any path):
    /// `http:COMPONENT@VERSION=STATUS`.
    Http {
        component: String,
        version: Version,
        status: u16,
    },
    /// `component`'s pods of `version` write none of their own log lines (the generated lines
    /// a generic component's log guards look for, a Keeptrusts component's start-up lines):
    /// `logs-missing:COMPONENT@VERSION`.
    LogsMissing { component: String, version: Version },
    /// `component`'s pods of `version` start, then crash and restart forever
    /// (`CrashLoopBackOff`, never ready): `crash:COMPONENT@VERSION`.
    Crash { component: String, version: Version },
    /// Watch streams end early (after about a quarter of a second), as when a load balancer cuts
    /// long connections.
    WatchCut,
    /// Watches that resume from a resourceVersion get one `410 Expired` ERROR event and end.
    WatchExpired,
    /// Authorization says no: matching requests get `403 Forbidden` worded as RBAC's, and
    /// matching SelfSubjectAccessReviews answer `allowed: false` with a reason.
    Deny(Deny),
    /// The seeded Deployments of `component` have no preStop hook (issue 22: its pods stop at
    /// once on deletion, and requests sent while their endpoints linger fail):
    /// `no-prestop:COMPONENT`. Applies when the component is seeded.
    NoPrestop { component: String },
    /// The seeded Deployments of `component` have no readinessProbe (a new pod gets requests
    /// while its app is still loading): `no-readiness:COMPONENT`. Applies when it is seeded.
    NoReadiness { component: String },
    /// The seeded Deployments of `component` have this `terminationGracePeriodSeconds` (a grace
    /// shorter than the preStop sleep cuts it): `grace:COMPONENT=DURATION` (whole seconds).
    Grace { component: String, grace: Duration },
}

/// What a [`Fault::Deny`] refuses: `deny:VERB:RESOURCE[:NAMESPACE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    /// The verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`) or `*`.
    pub verb: String,
    /// The API group, or `None` for any group.
    pub group: Option<String>,
    /// The resource plural (`deployments`) or `*`.
    pub resource: String,
    /// The subresource (`status`, `scale`, `log`), if only that is denied.
    pub subresource: Option<String>,
    /// The namespace, if only there.
    pub namespace: Option<String>,
}

/// Resources the simulator serves, to tell `resource/subresource` from `group/resource`.
const PLURALS: [&str; 8] = [
    "namespaces",
    "pods",
    "services",
    "configmaps",
    "deployments",
    "replicasets",
    "leases",
    "selfsubjectaccessreviews",
];

impl Deny {
    fn parse(arg: &str, whole: &str) -> Result<Deny, ParseFaultError> {
        let form = "deny:VERB:RESOURCE[:NAMESPACE] (RESOURCE: deployments, apps/deployments, \
                    deployments/scale or apps/deployments/scale)";
        let parts: Vec<&str> = arg.split(':').map(str::trim).collect();
        let (verb, resource, namespace) = match parts.as_slice() {
            [v, r] => (*v, *r, None),
            [v, r, n] => (*v, *r, Some(*n)),
            _ => return Err(ParseFaultError(format!("`{whole}`: write `{form}`"))),
        };
        if verb.is_empty() || resource.is_empty() || namespace == Some("") {
            return Err(ParseFaultError(format!("`{whole}`: write `{form}`")));
        }
        let segs: Vec<&str> = resource.split('/').collect();
        let (group, resource, subresource) = match segs.as_slice() {
            [r] => (None, *r, None),
            [a, b] if PLURALS.contains(a) || *a == "*" => (None, *a, Some(*b)),
            [g, r] => (Some(*g), *r, None),
            [g, r, s] => (Some(*g), *r, Some(*s)),
            _ => return Err(ParseFaultError(format!("`{whole}`: write `{form}`"))),
        };
        if segs.iter().any(|s| s.is_empty()) {
            return Err(ParseFaultError(format!("`{whole}`: write `{form}`")));
        }
        Ok(Deny {
            verb: verb.to_string(),
            group: group.map(|g| {
                if g == "core" {
                    String::new()
                } else {
                    g.to_string()
                }
            }),
            resource: resource.to_string(),
            subresource: subresource.map(String::from),
            namespace: namespace.map(String::from),
        })
    }

    /// Does this deny a request?
    pub fn matches(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: Option<&str>,
        namespace: &str,
    ) -> bool {
        (self.verb == "*" || self.verb == verb)
            && self.group.as_deref().is_none_or(|g| g == group)
            && (self.resource == "*" || self.resource == resource)
            && self.subresource.as_deref() == subresource
            && self.namespace.as_deref().is_none_or(|n| n == namespace)
    }
}

impl fmt::Display for Deny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.verb)?;
        if let Some(g) = &self.group {
            write!(f, "{}/", if g.is_empty() { "core" } else { g })?;
        }
        write!(f, "{}", self.resource)?;
        if let Some(s) = &self.subresource {
            write!(f, "/{s}")?;
        }
        if let Some(n) = &self.namespace {
            write!(f, ":{n}")?;
        }
        Ok(())
    }
}

/// A fault string that could not be parsed; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseFaultError(pub String);

const FAULT_FORMS: &str = "never-ready:COMPONENT@VERSION, policy-off:VERSION, \
migration-fails:VERSION, api-errors:SHARE (0..1 or N%), latency:DURATION (e.g. 200ms), \
error-rate:COMPONENT@VERSION=SHARE, latency:COMPONENT@VERSION=DURATION, \
http:COMPONENT@VERSION=STATUS, logs-missing:COMPONENT@VERSION, crash:COMPONENT@VERSION, \
watch-cut, watch-expired, deny:VERB:RESOURCE[:NAMESPACE], no-prestop:COMPONENT, \
no-readiness:COMPONENT, grace:COMPONENT=DURATION";

const FAULT_NAMES: &str = "never-ready, policy-off, migration-fails, api-errors, latency, \
error-rate, http, logs-missing, crash, watch-cut, watch-expired, deny, no-prestop, no-readiness, \
grace";

fn version(text: &str, fault: &str) -> Result<Version, ParseFaultError> {
    Version::parse(text.trim()).map_err(|e| {
        ParseFaultError(format!(
            "`{fault}`: `{text}` is not a semantic version like 1.5.0 ({e})"
        ))
    })
}

/// Parse durations such as `200ms`, `2s`, `1m30s`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration: write a number and a unit (ms, s, m, h), e.g. 200ms"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "" => return Err(format!("`{text}`: missing unit after {n} (ms, s, m or h)")),
            other => return Err(format!("`{text}`: unknown unit `{other}` (ms, s, m or h)")),
        };
        total = total.saturating_add(d);
    }
    Ok(total)
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) || ms == 0 {
        format!("{ms}ms")
    } else {
        format!("{}s", ms / 1000)
    }
}

impl Fault {
    /// The component and version the fault names, for the faults that name one (to check them
    /// against what a playbook runs).
    pub fn target(&self) -> Option<(&str, &Version)> {
        match self {
            Fault::NeverReady { component, version }
            | Fault::ErrorRate {
                component, version, ..
            }
            | Fault::ServiceLatency {
                component, version, ..
            }
            | Fault::Http {
                component, version, ..
            }
            | Fault::LogsMissing { component, version }
            | Fault::Crash { component, version } => Some((component.as_str(), version)),
            _ => None,
        }
    }
}

impl FromStr for Fault {
    type Err = ParseFaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (s, None),
        };
        let need = |arg: Option<&str>, form: &str| -> Result<String, ParseFaultError> {
            match arg {
                Some(a) if !a.is_empty() => Ok(a.to_string()),
                _ => Err(ParseFaultError(format!(
                    "fault `{name}` needs an argument: write `{form}`"
                ))),
            }
        };
        let no_arg = |arg: Option<&str>| -> Result<(), ParseFaultError> {
            match arg {
                None => Ok(()),
                Some(a) => Err(ParseFaultError(format!(
                    "fault `{name}` takes no argument, found `{a}`"
                ))),
            }
        };
        // `NAME:COMPONENT@VERSION`
        let component_at = |arg: Option<&str>| -> Result<(String, Version), ParseFaultError> {
            let form = format!("{name}:COMPONENT@VERSION");
            let a = need(arg, &form)?;
            let (component, v) = a.split_once('@').ok_or_else(|| {
                ParseFaultError(format!("`{s}`: write `{form}`, e.g. {name}:gateway@1.5.0"))
            })?;
            if component.trim().is_empty() {
                return Err(ParseFaultError(format!("`{s}`: the component is missing")));
            }
            Ok((component.trim().to_string(), version(v, s)?))
        };
        match name {
            "never-ready" => {
                let (component, version) = component_at(arg)?;
                Ok(Fault::NeverReady { component, version })
            }
            "logs-missing" => {
                let (component, version) = component_at(arg)?;
                Ok(Fault::LogsMissing { component, version })
            }
            "crash" => {
                let (component, version) = component_at(arg)?;
                Ok(Fault::Crash { component, version })
            }
            "http" => {
                let form = "http:COMPONENT@VERSION=STATUS, e.g. http:backend@2.4.0=500";
                let bad = || ParseFaultError(format!("`{s}`: write `{form}`"));
                let a = need(arg, form)?;
                let (target, status) = a.split_once('=').ok_or_else(bad)?;
                let (component, version) = component_at(Some(target))?;
                let status = status
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .ok_or_else(|| {
                        ParseFaultError(format!(
                            "`{s}`: the status must be an HTTP status from 100 to 599, e.g. http:backend@2.4.0=500"
                        ))
                    })?;
                Ok(Fault::Http {
                    component,
                    version,
                    status,
                })
            }
            "policy-off" => Ok(Fault::PolicyOff {
                version: version(&need(arg, "policy-off:VERSION")?, s)?,
            }),
            "migration-fails" => Ok(Fault::MigrationFails {
                version: version(&need(arg, "migration-fails:VERSION")?, s)?,
            }),
            "api-errors" => {
                let a = need(arg, "api-errors:SHARE")?;
                let share = if let Some(p) = a.strip_suffix('%') {
                    p.trim().parse::<f64>().map(|p| p / 100.0)
                } else {
                    a.parse::<f64>()
                }
                .map_err(|_| {
                    ParseFaultError(format!(
                        "`{s}`: the share must be a number between 0 and 1 or a percentage, e.g. api-errors:0.2"
                    ))
                })?;
                if !(0.0..=1.0).contains(&share) || share.is_nan() {
                    return Err(ParseFaultError(format!(
                        "`{s}`: the share must lie between 0 and 1 (or 0% and 100%)"
                    )));
                }
                Ok(Fault::ApiErrors { share })
            }
            "error-rate" | "latency" if arg.is_some_and(|a| a.contains('@')) => {
                let form = if name == "latency" {
                    "latency:COMPONENT@VERSION=DURATION, e.g. latency:gateway@1.5.0=300ms"
                } else {
                    "error-rate:COMPONENT@VERSION=SHARE, e.g. error-rate:gateway@1.5.0=0.2"
                };
                let a = need(arg, form)?;
                let bad = || ParseFaultError(format!("`{s}`: write `{form}`"));
                let (target, value) = a.split_once('=').ok_or_else(bad)?;
                let (component, v) = target.split_once('@').ok_or_else(bad)?;
                let component = component.trim().to_string();
                if component.is_empty() {
                    return Err(ParseFaultError(format!("`{s}`: the component is missing")));
                }
                let version = version(v, s)?;
                if name == "latency" {
                    let latency =
                        parse_duration(value).map_err(|e| ParseFaultError(format!("`{s}`: {e}")))?;
                    return Ok(Fault::ServiceLatency {
                        component,
                        version,
                        latency,
                    });
                }
                let value = value.trim();
                let share = match value.strip_suffix('%') {
                    Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
                    None => value.parse::<f64>(),
                }
                .ok()
                .filter(|x| (0.0..=1.0).contains(x))
                .ok_or_else(|| {
                    ParseFaultError(format!(
                        "`{s}`: the share must be a number between 0 and 1 or a percentage, e.g. error-rate:gateway@1.5.0=0.2"
                    ))
                })?;
                Ok(Fault::ErrorRate {
                    component,
                    version,
                    share,
                })
            }
            "error-rate" => Err(ParseFaultError(format!(
                "`{s}`: write `error-rate:COMPONENT@VERSION=SHARE`, e.g. error-rate:gateway@1.5.0=0.2"
            ))),
            "latency" => {
                let a = need(arg, "latency:DURATION")?;
                parse_duration(&a)
                    .map(Fault::Latency)
                    .map_err(|e| ParseFaultError(format!("`{s}`: {e}")))
            }
            "deny" => {
                Deny::parse(&need(arg, "deny:VERB:RESOURCE[:NAMESPACE]")?, s).map(Fault::Deny)
            }
            "no-prestop" | "no-readiness" => {
                let component = need(arg, &format!("{name}:COMPONENT"))?;
                if component.contains(['@', '=', ':']) {
                    return Err(ParseFaultError(format!(
                        "`{s}`: write `{name}:COMPONENT` (it applies to every version), e.g. {name}:gateway"
                    )));
                }
                Ok(if name == "no-prestop" {
                    Fault::NoPrestop { component }
                } else {
                    Fault::NoReadiness { component }
                })
            }
            "grace" => {
                let form = "grace:COMPONENT=DURATION, e.g. grace:gateway=1s";
                let a = need(arg, form)?;
                let (component, d) = a
                    .split_once('=')
                    .filter(|(c, _)| !c.trim().is_empty())
                    .ok_or_else(|| ParseFaultError(format!("`{s}`: write `{form}`")))?;
                let grace =
                    parse_duration(d).map_err(|e| ParseFaultError(format!("`{s}`: {e}")))?;
                if grace.subsec_nanos() != 0 {
                    return Err(ParseFaultError(format!(
                        "`{s}`: terminationGracePeriodSeconds is whole seconds, e.g. grace:gateway=1s"
                    )));
                }
                Ok(Fault::Grace {
                    component: component.trim().to_string(),
                    grace,
                })
            }
            "watch-cut" => no_arg(arg).map(|_| Fault::WatchCut),
            "watch-expired" => no_arg(arg).map(|_| Fault::WatchExpired),
            "" => Err(ParseFaultError(format!(
                "empty fault: expected one of {FAULT_FORMS}"
            ))),
            // The names only: the forms of all of them no longer fit a diagnostic's message
            // (`ktplay rehearse --help` and the empty fault's message list them).
            other => Err(ParseFaultError(format!(
                "unknown fault `{other}`: expected one of {FAULT_NAMES} (their forms: `ktplay rehearse --help`)"
            ))),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::NeverReady { component, version } => {
                write!(f, "never-ready:{component}@{version}")
            }
            Fault::PolicyOff { version } => write!(f, "policy-off:{version}"),
            Fault::MigrationFails { version } => write!(f, "migration-fails:{version}"),
            Fault::ApiErrors { share } => write!(f, "api-errors:{share}"),
            Fault::Latency(d) => write!(f, "latency:{}", format_duration(*d)),
            Fault::ErrorRate {
                component,
                version,
                share,
            } => write!(f, "error-rate:{component}@{version}={share}"),
            Fault::ServiceLatency {
                component,
                version,
                latency,
            } => write!(
                f,
                "latency:{component}@{version}={}",
                format_duration(*latency)
            ),
            Fault::Http {
                component,
                version,
                status,
            } => write!(f, "http:{component}@{version}={status}"),
            Fault::LogsMissing { component, version } => {
                write!(f, "logs-missing:{component}@{version}")
            }
            Fault::Crash { component, version } => write!(f, "crash:{component}@{version}"),
            Fault::WatchCut => write!(f, "watch-cut"),
            Fault::WatchExpired => write!(f, "watch-expired"),
            Fault::Deny(d) => write!(f, "deny:{d}"),
            Fault::NoPrestop { component } => write!(f, "no-prestop:{component}"),
            Fault::NoReadiness { component } => write!(f, "no-readiness:{component}"),
            Fault::Grace { component, grace } => {
                write!(f, "grace:{component}={}", format_duration(*grace))
            }
        }
    }
}

impl Serialize for Fault {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fault {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The set of active faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Active faults, in the order they were set.
    pub faults: Vec<Fault>,
}

impl Faults {
    /// The seeded Deployment (JSON) of `component` as the faults `no-prestop`, `no-readiness`
    /// and `grace` change it.
    pub fn edit_seeded(&self, component: &str, deployment: &mut serde_json::Value) {
        let spec = &mut deployment["spec"]["template"]["spec"];
        for f in &self.faults {
            match f {
                Fault::NoPrestop { component: c } if c == component => {
                    for k in spec["containers"].as_array_mut().into_iter().flatten() {
                        if let Some(m) = k.as_object_mut() {
                            m.remove("lifecycle");
                        }
                    }
                }
                Fault::NoReadiness { component: c } if c == component => {
                    for k in spec["containers"].as_array_mut().into_iter().flatten() {
                        if let Some(m) = k.as_object_mut() {
                            m.remove("readinessProbe");
                        }
                    }
                }
                Fault::Grace {
                    component: c,
                    grace,
                } if c == component => {
                    spec["terminationGracePeriodSeconds"] = serde_json::json!(grace.as_secs());
                }
                _ => {}
            }
        }
    }

    /// No faults.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Parse a list of CLI fault strings.
    pub fn parse_all<I, S>(items: I) -> Result<Faults, ParseFaultError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let faults = items
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Faults { faults })
    }

    /// Add a fault unless an equal one is already set.
    pub fn add(&mut self, fault: Fault) {
        if !self.faults.contains(&fault) {
            self.faults.push(fault);
        }
    }

    /// Remove a fault; true if it was set.
    pub fn remove(&mut self, fault: &Fault) -> bool {
        let before = self.faults.len();
        self.faults.retain(|f| f != fault);
        before != self.faults.len()
    }

    /// Do pods of this role and version never become ready?
    /// The share of `component`'s simulated traffic on `v` that fails (`error-rate`).
    pub fn error_share(&self, component: &str, v: &Version) -> f64 {
        self.faults
            .iter()
            .filter_map(|f| match f {
                Fault::ErrorRate {
                    component: c,
                    version,
                    share,
                } if c == component && version == v => Some(*share),
                _ => None,
            })
            .fold(0.0, f64::max)
    }

    /// How much slower `component`'s pods on `v` answer (`latency:C@V=D`).
    pub fn service_latency(&self, component: &str, v: &Version) -> Duration {
        self.faults
            .iter()
            .filter_map(|f| match f {
                Fault::ServiceLatency {
                    component: c,
                    version,
                    latency,
                } if c == component && version == v => Some(*latency),
                _ => None,
            })
            .max()
            .unwrap_or_default()
    }

    pub fn never_ready(&self, role: &str, v: &Version) -> bool {
        self.faults.iter().any(|f| {
            matches!(f, Fault::NeverReady { component, version } if component == role && version == v)
        })
    }

    /// The status `component`'s pods on `v` answer every request with (`http:C@V=S`).
    pub fn http_status(&self, component: &str, v: &Version) -> Option<u16> {
        self.faults.iter().find_map(|f| match f {
            Fault::Http {
                component: c,
                version,
                status,
            } if c == component && version == v => Some(*status),
            _ => None,
        })
    }

    /// Do `component`'s pods on `v` write none of their own lines (`logs-missing:C@V`)?
    pub fn logs_missing(&self, component: &str, v: &Version) -> bool {
        self.faults.iter().any(|f| {
            matches!(f, Fault::LogsMissing { component: c, version } if c == component && version == v)
        })
    }

    /// Do `component`'s pods on `v` crash-loop (`crash:C@V`)?
    pub fn crashes(&self, component: &str, v: &Version) -> bool {
        self.faults.iter().any(|f| {
            matches!(f, Fault::Crash { component: c, version } if c == component && version == v)
        })
    }

    /// Is policy enforcement off for this gateway version?
    pub fn policy_off(&self, v: &Version) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(f, Fault::PolicyOff { version } if version == v))
    }

    /// Does the migration of this api version fail?
    pub fn migration_fails(&self, v: &Version) -> bool {
        self.faults
            .iter()
            .any(|f| matches!(f, Fault::MigrationFails { version } if version == v))
    }

    /// The share of API requests to fail (the largest one set).
    pub fn api_error_share(&self) -> f64 {
        self.faults
            .iter()
            .filter_map(|f| match f {
                Fault::ApiErrors { share } => Some(*share),
                _ => None,
            })
            .fold(0.0, f64::max)
    }

    /// Added latency (the sum of the latencies set).
    pub fn latency(&self) -> Duration {
        self.faults
            .iter()
            .filter_map(|f| match f {
                Fault::Latency(d) => Some(*d),
                _ => None,
            })
            .sum()
    }

    /// Are watch streams cut early?
    pub fn watch_cut(&self) -> bool {
        self.faults.contains(&Fault::WatchCut)
    }

    /// The deny fault that refuses this request, if any.
    pub fn denied(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: Option<&str>,
        namespace: &str,
    ) -> Option<&Deny> {
        self.faults.iter().find_map(|f| match f {
            Fault::Deny(d) if d.matches(verb, group, resource, subresource, namespace) => Some(d),
            _ => None,
        })
    }

    /// Are resumed watches answered with 410 Expired?
    pub fn watch_expired(&self) -> bool {
        self.faults.contains(&Fault::WatchExpired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "never-ready:gateway@1.5.0",
            "policy-off:1.5.0",
            "migration-fails:1.5.0-rc.1",
            "api-errors:0.2",
            "latency:200ms",
            "latency:2s",
            "watch-cut",
            "watch-expired",
            "deny:patch:deployments",
            "deny:patch:apps/deployments:prod",
            "deny:get:pods/log",
            "deny:*:core/configmaps",
            "deny:update:apps/deployments/scale:ns",
            "http:backend@2.4.0=503",
            "logs-missing:backend@2.4.0",
            "crash:mailer@1.2.0-rc.1",
        ] {
            let f: Fault = s.parse().unwrap();
            assert_eq!(f.to_string(), s);
        }
        assert_eq!(
            "api-errors:20%".parse::<Fault>().unwrap(),
            Fault::ApiErrors { share: 0.2 }
        );
        assert_eq!(
            "latency:1m30s".parse::<Fault>().unwrap(),
            Fault::Latency(Duration::from_secs(90))
        );
    }

    #[test]
    fn bad_input_is_explained() {
        let err = |s: &str| s.parse::<Fault>().unwrap_err().0;
        assert!(err("explode").contains("unknown fault `explode`"));
        assert!(err("never-ready:gateway").contains("COMPONENT@VERSION"));
        assert!(err("never-ready:@1.5.0").contains("component is missing"));
        assert!(err("policy-off:1.5").contains("not a semantic version"));
        assert!(err("policy-off").contains("needs an argument"));
        assert!(err("api-errors:1.5").contains("between 0 and 1"));
        assert!(err("api-errors:lots").contains("must be a number"));
        assert!(err("latency:200").contains("missing unit"));
        assert!(err("latency:2d").contains("unknown unit"));
        assert!(err("watch-cut:now").contains("takes no argument"));
        assert!(err("deny:patch").contains("deny:VERB:RESOURCE"));
        assert!(err("deny:patch:a/b/c/d").contains("deny:VERB:RESOURCE"));
        assert!(err("http:backend@2.4.0").contains("http:COMPONENT@VERSION=STATUS"));
        assert!(err("http:backend@2.4.0=700").contains("from 100 to 599"));
        assert!(err("http:backend@2.4.0=ok").contains("from 100 to 599"));
        assert!(err("http:@2.4.0=500").contains("component is missing"));
        assert!(err("crash:mailer").contains("crash:COMPONENT@VERSION"));
        assert!(err("logs-missing:backend@2.4").contains("not a semantic version"));
        assert!(err("logs-missing").contains("needs an argument"));
    }

    #[test]
    fn deny_matches_verb_resource_group_and_namespace() {
        let d = |s: &str| match s.parse::<Fault>().unwrap() {
            Fault::Deny(d) => d,
            other => panic!("{other:?}"),
        };
        assert!(d("deny:patch:deployments").matches("patch", "apps", "deployments", None, "x"));
        assert!(!d("deny:patch:deployments").matches("get", "apps", "deployments", None, "x"));
        assert!(!d("deny:patch:deployments").matches(
            "patch",
            "apps",
            "deployments",
            Some("scale"),
            "x"
        ));
        assert!(d("deny:get:pods/log").matches("get", "", "pods", Some("log"), "x"));
        assert!(!d("deny:*:apps/deployments:prod").matches(
            "get",
            "apps",
            "deployments",
            None,
            "x"
        ));
        assert!(d("deny:*:apps/deployments:prod").matches(
            "get",
            "apps",
            "deployments",
            None,
            "prod"
        ));
    }

    #[test]
    fn json_uses_cli_strings() {
        let faults = Faults::parse_all(["watch-cut", "policy-off:1.5.0"]).unwrap();
        let json = serde_json::to_string(&faults).unwrap();
        assert_eq!(json, r#"{"faults":["watch-cut","policy-off:1.5.0"]}"#);
        let back: Faults = serde_json::from_str(&json).unwrap();
        assert_eq!(back, faults);
        assert!(serde_json::from_str::<Faults>(r#"{"faults":["nope"]}"#).is_err());
    }
}
