//! The functions scripts can call. Everything reads; nothing changes the cluster.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::host::Host;
use crate::version::{Version, VersionPattern, VersionRange};

/// Every function the API adds, for the unknown-function check and the docs.
pub const API_FUNCTIONS: &[&str] = &[
    "http_get",
    "http_post",
    "secret",
    "kube_get",
    "pods",
    "versions",
    "semver_matches",
    "log",
];

/// An HTTP response as scripts see it: `#{ status, body, json, headers }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl HttpResponse {
    pub fn to_map(&self) -> Map {
        let mut m = Map::new();
        m.insert("status".into(), Dynamic::from(self.status as i64));
        m.insert("body".into(), Dynamic::from(self.body.clone()));
        let json = serde_json::from_str::<serde_json::Value>(&self.body)
            .map(|v| json_to_dynamic(&v))
            .unwrap_or(Dynamic::UNIT);
        m.insert("json".into(), json);
        let mut h = Map::new();
        for (k, v) in &self.headers {
            h.insert(k.to_ascii_lowercase().into(), Dynamic::from(v.clone()));
        }
        m.insert("headers".into(), Dynamic::from_map(h));
        m
    }
}

/// A pod of a component, as `pods(component)` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub name: String,
    pub version: String,
    pub ready: bool,
    pub restarts: i64,
}

/// A secret value: opaque to the script, printed as `(secret)`, usable as a header value.
#[derive(Clone)]
pub(super) struct Secret(Arc<str>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

pub(crate) fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    match v {
        serde_json::Value::Null => Dynamic::UNIT,
        serde_json::Value::Bool(b) => Dynamic::from(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from(i),
            None => Dynamic::from(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Dynamic::from(s.clone()),
        serde_json::Value::Array(a) => Dynamic::from_array(a.iter().map(json_to_dynamic).collect()),
        serde_json::Value::Object(o) => {
            let mut m = Map::new();
            for (k, v) in o {
                m.insert(k.as_str().into(), json_to_dynamic(v));
            }
            Dynamic::from_map(m)
        }
    }
}

fn dynamic_to_json(v: &Dynamic) -> Result<serde_json::Value, String> {
    if v.is_unit() {
        return Ok(serde_json::Value::Null);
    }
    if let Some(b) = v.clone().try_cast::<bool>() {
        return Ok(b.into());
    }
    if let Some(i) = v.clone().try_cast::<i64>() {
        return Ok(i.into());
    }
    if let Some(f) = v.clone().try_cast::<f64>() {
        return Ok(f.into());
    }
    if v.is_string() {
        return Ok(v.to_string().into());
    }
    if v.is::<Secret>() {
        return Err("a secret cannot be put in a request body; send it as a header".into());
    }
    if let Some(a) = v.clone().try_cast::<Array>() {
        return a
            .iter()
            .map(dynamic_to_json)
            .collect::<Result<Vec<_>, _>>()
            .map(Into::into);
    }
    if let Some(m) = v.clone().try_cast::<Map>() {
        let mut o = serde_json::Map::new();
        for (k, x) in m {
            o.insert(k.to_string(), dynamic_to_json(&x)?);
        }
        return Ok(o.into());
    }
    Err(format!(
        "{} cannot be sent as JSON",
        with_article(type_name(v))
    ))
}

fn headers(map: &Map) -> Result<Vec<(String, String)>, Box<EvalAltResult>> {
    let mut out = Vec::new();
    for (k, v) in map {
        let value = if let Some(s) = v.clone().try_cast::<Secret>() {
            s.0.to_string()
        } else if v.is_string() {
            v.to_string()
        } else {
            return Err(format!(
                "header `{k}` must be a string or a secret, not {}",
                with_article(type_name(v))
            )
            .into());
        };
        out.push((k.to_string(), value));
    }
    Ok(out)
}

fn runtime<T>(r: Result<T, super::host::HostError>) -> Result<T, Box<EvalAltResult>> {
    r.map_err(|e| e.to_string().into())
}

/// `semver_matches("1.5.0", "1.5.x")`, `"1.4.x - 1.5.x"`, or a Cargo-style requirement `">=1.4, <1.6"`.
pub(super) fn semver_matches(version: &str, requirement: &str) -> Result<bool, String> {
    let v =
        Version::parse(version.trim()).map_err(|e| format!("`{version}` is not a version: {e}"))?;
    let req = requirement.trim();
    if let Some((lo, hi)) = req.split_once(" - ") {
        if let (Ok(low), Ok(high)) = (
            VersionPattern::parse(lo.trim()),
            VersionPattern::parse(hi.trim()),
        ) {
            return Ok(VersionRange { low, high }.contains(&v));
        }
    }
    if let Ok(p) = VersionPattern::parse(req) {
        return Ok(p.matches(&v));
    }
    semver::VersionReq::parse(req)
        .map(|r| r.matches(&v))
        .map_err(|e| format!("`{requirement}` is not a version requirement: {e}"))
}

/// A value's type as people read it: `secret` for secrets, never the Rust path.
pub(crate) fn type_name(v: &Dynamic) -> &'static str {
    if v.is::<Secret>() {
        "secret"
    } else {
        v.type_name()
    }
}

/// `an array`, `a map`.
fn with_article(name: &str) -> String {
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// A `Write` that refuses to grow past `max` bytes.
struct Capped {
    buf: Vec<u8>,
    max: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > self.max {
            return Err(std::io::Error::other("too large"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Register the API on an engine, bound to one run's host, secrets and output.
pub(crate) fn register(
    engine: &mut Engine,
    host: Arc<dyn Host>,
    secrets: Arc<Vec<(String, String)>>,
    output: super::sandbox::Output,
    limits: &super::sandbox::Limits,
) {
    let timeout: Duration = limits.deadline;
    // Rhai's own `to_json` builds the whole text before the string limit is checked (533 MB for
    // a big map); this one stops writing at the limit.
    let max = limits.max_string_size;
    engine.register_fn(
        "to_json",
        move |m: &mut Map| -> Result<String, Box<EvalAltResult>> {
            let mut w = Capped {
                buf: Vec::new(),
                max,
            };
            let value = dynamic_to_json(&Dynamic::from_map(m.clone()))
                .map_err(|e| -> Box<EvalAltResult> { e.into() })?;
            serde_json::to_writer(&mut w, &value).map_err(|_| -> Box<EvalAltResult> {
                format!("to_json: the text would be larger than {} KiB", max >> 10).into()
            })?;
            Ok(String::from_utf8(w.buf).unwrap_or_default())
        },
    );
    engine.register_type_with_name::<Secret>("Secret");
    engine.register_fn("to_string", |_: &mut Secret| "(secret)".to_string());
    engine.register_fn("to_debug", |_: &mut Secret| "(secret)".to_string());
    engine.register_fn("+", |a: &str, b: Secret| {
        Secret(format!("{a}{}", b.0).into())
    });
    engine.register_fn("+", |a: Secret, b: &str| {
        Secret(format!("{}{b}", a.0).into())
    });

    let s = secrets.clone();
    engine.register_fn("secret", move |name: &str| -> Result<Secret, Box<EvalAltResult>> {
        s.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Secret(v.as_str().into()))
            .ok_or_else(|| format!("no secret named `{name}`: secrets are lets written `let {name} = env(\"…\")`").into())
    });

    let h = host.clone();
    let get = move |url: &str, hdrs: Map| -> Result<Map, Box<EvalAltResult>> {
        let hs = headers(&hdrs)?;
        runtime(h.http("GET", url, None, &hs, timeout)).map(|r| r.to_map())
    };
    let get2 = get.clone();
    engine.register_fn("http_get", move |url: &str| get2(url, Map::new()));
    engine.register_fn("http_get", get);

    let h = host.clone();
    let post = move |url: &str, body: Dynamic, hdrs: Map| -> Result<Map, Box<EvalAltResult>> {
        let mut hs = headers(&hdrs)?;
        let text = if body.is_string() {
            body.to_string()
        } else {
            if !hs
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                hs.push(("content-type".into(), "application/json".into()));
            }
            dynamic_to_json(&body)
                .map_err(|e| -> Box<EvalAltResult> { e.into() })?
                .to_string()
        };
        runtime(h.http("POST", url, Some(text), &hs, timeout)).map(|r| r.to_map())
    };
    let post2 = post.clone();
    engine.register_fn("http_post", move |url: &str, body: Dynamic| {
        post2(url, body, Map::new())
    });
    engine.register_fn("http_post", post);

    let h = host.clone();
    engine.register_fn(
        "kube_get",
        move |kind: &str, name: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            runtime(h.kube_get(kind, name)).map(|v| json_to_dynamic(&v))
        },
    );
    let h = host.clone();
    engine.register_fn(
        "pods",
        move |component: &str| -> Result<Array, Box<EvalAltResult>> {
            let pods = runtime(h.pods(component))?;
            Ok(pods
                .into_iter()
                .map(|p| {
                    let mut m = Map::new();
                    m.insert("name".into(), Dynamic::from(p.name));
                    m.insert("version".into(), Dynamic::from(p.version));
                    m.insert("ready".into(), Dynamic::from(p.ready));
                    m.insert("restarts".into(), Dynamic::from(p.restarts));
                    Dynamic::from_map(m)
                })
                .collect())
        },
    );
    let h = host;
    engine.register_fn(
        "versions",
        move |component: &str| -> Result<Array, Box<EvalAltResult>> {
            Ok(runtime(h.versions(component))?
                .into_iter()
                .map(Dynamic::from)
                .collect())
        },
    );
    engine.register_fn(
        "semver_matches",
        |v: &str, r: &str| -> Result<bool, Box<EvalAltResult>> {
            semver_matches(v, r).map_err(Into::into)
        },
    );
    engine.register_fn("log", move |message: Dynamic| {
        let text = if message.is::<Secret>() {
            "(secret)".to_string()
        } else {
            message.to_string()
        };
        output.write(&text);
    });
}
