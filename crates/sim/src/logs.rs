//! Container logs as the real control plane's fake kubelet writes them
//! (`tests/realkube/README.md`, "Pod logs"), around the simulated Keeptrusts components' own
//! lines:
//!
//! ```text
//! <startTime> container <name> started image <image>
//! <the simulator's own lines for a seeded component's container: migrations, "listening on">
//! <each line of the container's FAKE_LOG env value, placeholders replaced>
//! <startTime+i ms> container <name> exited with code 1 (fake crash: ...)   # -crash pods only
//! ```
//!
//! Line *i* is stamped `startTime` + *i* ms (`timestamps=true`); `tailLines`, then
//! `sinceSeconds`/`sinceTime`, then `limitBytes` apply in the kubelet's order.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::Value;

use super::controller::{kubelet_tag, tag_behaviour, TagBehaviour};
use super::faults::Faults;
use super::store::{at, image_repo, str_at, ApiError, FieldError};
use super::RoleInfo;

/// One log line and its stamp.
pub(crate) type Entry = (DateTime<Utc>, String);

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn pod_start(pod: &Value) -> DateTime<Utc> {
    [
        str_at(pod, &["status", "startTime"]),
        str_at(pod, &["metadata", "creationTimestamp"]),
    ]
    .into_iter()
    .flatten()
    .find_map(|s| DateTime::parse_from_rfc3339(s).ok())
    .map(|t| t.with_timezone(&Utc))
    .unwrap_or_else(Utc::now)
}

fn find_container<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| at(pod, &["spec", k]).and_then(Value::as_array))
        .flatten()
        .find(|c| str_at(c, &["name"]) == Some(name))
}

fn container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    at(pod, &["status", "containerStatuses"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| str_at(c, &["name"]) == Some(name))
}

/// The kubelet's 400 for a container whose logs cannot be read, if so.
pub(crate) fn refusal(pod: &Value, container: &str, previous: bool) -> Option<String> {
    let pname = str_at(pod, &["metadata", "name"]).unwrap_or_default();
    let Some(cs) = container_status(pod, container) else {
        return Some(format!(
            "container \"{container}\" in pod \"{pname}\" is waiting to start: ContainerCreating"
        ));
    };
    let state = cs.get("state");
    let last = cs.get("lastState");
    let has = |v: Option<&Value>, k: &str| v.and_then(|s| s.get(k)).is_some();
    if previous {
        if has(last, "terminated") {
            return None;
        }
        return Some(format!(
            "previous terminated container \"{container}\" in pod \"{pname}\" not found"
        ));
    }
    if has(state, "running") || has(state, "terminated") || has(last, "terminated") {
        return None;
    }
    let reason = state
        .and_then(|s| str_at(s, &["waiting", "reason"]))
        .unwrap_or("");
    Some(match reason {
        "ErrImagePull" => format!(
            "container \"{container}\" in pod \"{pname}\" is waiting to start: image can't be pulled"
        ),
        "ImagePullBackOff" => format!(
            "container \"{container}\" in pod \"{pname}\" is waiting to start: trying and failing to pull image"
        ),
        "" => format!("container \"{container}\" in pod \"{pname}\" is waiting to start - no logs yet"),
        r => format!("container \"{container}\" in pod \"{pname}\" is waiting to start: {r}"),
    })
}

/// Every line of one container's log, stamped. A pod under `logs-missing:C@V` writes none of
/// its own lines: neither the simulated component's nor its `FAKE_LOG` lines (which a seeded
/// api carries, so without this the modelled api still logged its migrations).
pub(crate) fn container_log(
    pod: &Value,
    container: &str,
    sim_lines: &[String],
    roles: &[RoleInfo],
    faults: &Faults,
) -> Vec<Entry> {
    let Some(c) = find_container(pod, container) else {
        return Vec::new();
    };
    let image = str_at(c, &["image"]).unwrap_or_default();
    let t0 = pod_start(pod);
    let stamp = |i: usize| t0 + Duration::milliseconds(i as i64);
    let mut out: Vec<Entry> = vec![(
        t0,
        format!(
            "{} container {container} started image {image}",
            rfc3339(&t0)
        ),
    )];
    // The simulated component's lines belong to the container that runs its image.
    if roles.iter().any(|r| r.image == image_repo(image)) {
        for l in sim_lines {
            out.push((stamp(out.len()), l.clone()));
        }
    }
    let silenced = super::services::pod_role(roles, pod)
        .and_then(|(r, v)| Some(faults.logs_missing(&r.role, v.as_ref()?)))
        .unwrap_or(false);
    let raw = c
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| str_at(e, &["name"]) == Some("FAKE_LOG"))
        .and_then(|e| str_at(e, &["value"]));
    if let Some(raw) = raw.filter(|r| !r.is_empty() && !silenced) {
        let text = raw.replace("\r\n", "\n").replace("\\n", "\n");
        let mut lines: Vec<&str> = text.split('\n').collect();
        if lines.last() == Some(&"") {
            lines.pop();
        }
        let subst = [
            ("{image}", image),
            ("{tag}", kubelet_tag(image)),
            (
                "{pod}",
                str_at(pod, &["metadata", "name"]).unwrap_or_default(),
            ),
            ("{container}", container),
            (
                "{namespace}",
                str_at(pod, &["metadata", "namespace"]).unwrap_or_default(),
            ),
        ];
        for line in lines {
            let mut l = line.to_string();
            for (k, v) in subst {
                l = l.replace(k, v);
            }
            out.push((stamp(out.len()), l));
        }
    }
    if tag_behaviour(pod) == Some(TagBehaviour::Crash) {
        let t = stamp(out.len());
        out.push((
            t,
            format!(
                "{} container {container} exited with code 1 (fake crash: an image tag of this pod ends in -crash)",
                rfc3339(&t)
            ),
        ));
    }
    out
}

/// The query options of a log request, as the kubelet decodes them.
#[derive(Debug, Default)]
pub(crate) struct LogOptions {
    pub tail_lines: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub limit_bytes: Option<usize>,
    pub timestamps: bool,
    pub stderr_only: bool,
    pub previous: bool,
}

impl LogOptions {
    /// From the query (`get` gives the last value of a parameter) of a request for `pod`'s
    /// log; errors worded as the API server's (it validates `PodLogOptions` first).
    pub fn parse<'a>(
        pod: &str,
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<LogOptions, ApiError> {
        let flag = |k: &str| -> Result<bool, ApiError> {
            match get(k).map(str::to_ascii_lowercase).as_deref() {
                None | Some("") | Some("0") | Some("f") | Some("false") => Ok(false),
                Some("1") | Some("t") | Some("true") => Ok(true),
                Some(v) => Err(ApiError::bad_request(format!(
                    "strconv.ParseBool: parsing {v:?}: invalid syntax"
                ))),
            }
        };
        let invalid = |k: &str, n: i64, detail: &str| {
            ApiError::invalid_named(
                "PodLogOptions",
                "",
                pod,
                vec![FieldError::invalid(k, &n.to_string(), detail)],
            )
        };
        let int = |v: Option<&str>| -> Result<Option<i64>, ApiError> {
            match v {
                None | Some("") => Ok(None),
                Some(v) => v.parse().map(Some).map_err(|_| {
                    ApiError::bad_request(format!(
                        "strconv.ParseInt: parsing {v:?}: invalid syntax"
                    ))
                }),
            }
        };
        let tail = match get("tail") {
            Some("all") => None,
            Some(t) if get("tailLines").is_none() => Some(t),
            _ => get("tailLines"),
        };
        let tail_lines = int(tail)?;
        if let Some(n) = tail_lines.filter(|n| *n < 0) {
            return Err(invalid(
                "tailLines",
                n,
                "must be greater than or equal to 0",
            ));
        }
        let since_seconds = int(get("sinceSeconds"))?;
        if let Some(n) = since_seconds.filter(|n| *n < 1) {
            return Err(invalid("sinceSeconds", n, "must be greater than 0"));
        }
        let limit_bytes = int(get("limitBytes"))?;
        if let Some(n) = limit_bytes.filter(|n| *n < 1) {
            return Err(invalid("limitBytes", n, "must be greater than 0"));
        }
        let mut since = since_seconds.map(|s| Utc::now() - Duration::seconds(s));
        if let Some(st) = get("sinceTime").filter(|s| !s.is_empty()) {
            since = Some(
                DateTime::parse_from_rfc3339(st)
                    .map_err(|e| ApiError::bad_request(format!("parsing time {st:?}: {e}")))?
                    .with_timezone(&Utc),
            );
        }
        Ok(LogOptions {
            tail_lines: tail_lines.map(|n| n as usize),
            since,
            limit_bytes: limit_bytes.map(|n| n as usize),
            timestamps: flag("timestamps")?,
            stderr_only: get("stream") == Some("Stderr"),
            previous: flag("previous")?,
        })
    }
}

/// The bytes of a log as the kubelet sends them.
pub(crate) fn render(mut entries: Vec<Entry>, o: &LogOptions) -> String {
    if o.stderr_only {
        entries.clear();
    }
    if let Some(n) = o.tail_lines {
        let start = entries.len().saturating_sub(n);
        entries.drain(..start);
    }
    if let Some(since) = o.since {
        entries.retain(|(t, _)| *t >= since);
    }
    let mut text = String::new();
    for (t, l) in &entries {
        if o.timestamps {
            text.push_str(&t.format("%Y-%m-%dT%H:%M:%S.%fZ").to_string());
            text.push(' ');
        }
        text.push_str(l);
        text.push('\n');
    }
    if let Some(n) = o.limit_bytes {
        if text.len() > n {
            let mut cut = n;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fake_log_lines_follow_the_start_line() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "n"},
            "spec": {"containers": [{"name": "c", "image": "r/app:1.2-x", "env": [
                {"name": "FAKE_LOG", "value": "one {tag}\\ntwo {pod}/{container} in {namespace}\n"}
            ]}]},
            "status": {"startTime": "2026-12-01T20:56:02Z"}
        });
        let e = container_log(&pod, "c", &[], &[], &Faults::none());
        let lines: Vec<&str> = e.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            lines,
            [
                "2026-12-01T20:56:02Z container c started image r/app:1.2-x",
                "one 1.2-x",
                "two p/c in n"
            ]
        );
        let o = LogOptions {
            timestamps: true,
            tail_lines: Some(1),
            ..LogOptions::default()
        };
        assert_eq!(
            render(e, &o),
            "2026-12-01T20:56:02.002000000Z two p/c in n\n"
        );
    }
}
