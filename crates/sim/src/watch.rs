//! Watch streams: newline-delimited JSON events from a resourceVersion, bookmarks when asked
//! (never ahead of an event not yet sent), the end at `timeoutSeconds`, and the `watch-cut` and
//! `watch-expired` faults.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::channel::mpsc;
use futures::SinkExt;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::api::{error_response, Query};
use super::discovery::Kind;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{at, ApiError, EventType};
use super::{lock, table, Sim};

/// Default stream length when the client gives no `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Quiet time after which a bookmark is sent (when bookmarks are allowed).
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);
/// How long a stream lives under the `watch-cut` fault.
const CUT_AFTER: Duration = Duration::from_millis(250);

struct Filter {
    kind: Kind,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, kind: Kind, ns: &str, obj: &Value) -> bool {
        kind == self.kind
            && self.ns.as_deref().is_none_or(|n| n == ns)
            && self
                .labels
                .matches(at(obj, &["metadata", "labels"]).and_then(Value::as_object))
            && self.fields.matches(obj)
    }
}

fn line(etype: &str, object: &Value, as_table: bool, kind: Kind) -> Bytes {
    let object = if as_table && etype != "ERROR" && etype != "BOOKMARK" {
        let rv = at(object, &["metadata", "resourceVersion"])
            .and_then(Value::as_str)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        table::table(kind, std::slice::from_ref(object), rv, None)
    } else {
        object.clone()
    };
    let mut s = serde_json::to_vec(&json!({"type": etype, "object": object})).unwrap_or_default();
    s.push(b'\n');
    Bytes::from(s)
}

fn bookmark(kind: Kind, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": kind.info().kind, "apiVersion": kind.api_version(), "metadata": meta})
}

/// As the real watch cache words it: the requested and the oldest resourceVersion it has.
fn expired(rv: &str, oldest: u64) -> Value {
    ApiError::new(
        410,
        "Expired",
        format!("too old resource version: {rv} ({oldest})"),
    )
    .to_status()
}

/// Answer a `watch=true` request.
pub fn watch(
    sim: Sim,
    kind: Kind,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    query: &Query,
    as_table: bool,
) -> Response {
    let rv_param = query.get("resourceVersion").unwrap_or("").to_string();
    let from: Option<u64> = match rv_param.as_str() {
        "" | "0" => None,
        s => match s.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                return error_response(&ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: \"{s}\": must be a number"
                )))
            }
        },
    };
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => match t.parse::<u64>() {
            Ok(n) => Duration::from_secs(n),
            Err(_) => {
                return error_response(&ApiError::bad_request(format!(
                    "timeoutSeconds: `{t}` is not a number of seconds"
                )))
            }
        },
        None => DEFAULT_TIMEOUT,
    };
    let bookmarks = query.flag("allowWatchBookmarks");
    let initial_events = query.flag("sendInitialEvents");
    let faults = sim.faults();
    let timeout = if faults.watch_cut() {
        timeout.min(CUT_AFTER)
    } else {
        timeout
    };
    let filter = Filter {
        kind,
        ns,
        labels,
        fields,
    };
    let (mut tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);

    let mut oldest = 0;
    // Take the starting point now, under the lock, so nothing between it and the stream is lost.
    let (mut cursor, initial, mut changes, too_old) = {
        let store = lock(&sim.inner.store);
        let changes = store.subscribe();
        match from {
            Some(rv) => {
                let too_old = rv < store.oldest_resumable() || faults.watch_expired();
                oldest = if faults.watch_expired() {
                    store.rv()
                } else {
                    store.oldest_resumable()
                };
                (rv.min(store.rv()), Vec::new(), changes, too_old)
            }
            None => {
                let items: Vec<Value> = store
                    .iter(kind, filter.ns.as_deref())
                    .filter(|o| {
                        let ns = at(o, &["metadata", "namespace"])
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        filter.matches(kind, ns, o)
                    })
                    .cloned()
                    .collect();
                (store.rv(), items, changes, false)
            }
        }
    };

    tokio::spawn(async move {
        if too_old {
            let _ = tx
                .send(Ok(line("ERROR", &expired(&rv_param, oldest), false, kind)))
                .await;
            return;
        }
        let deadline = Instant::now() + timeout;
        for obj in &initial {
            if tx
                .send(Ok(line("ADDED", obj, as_table, kind)))
                .await
                .is_err()
            {
                return;
            }
        }
        if initial_events && bookmarks {
            let b = bookmark(kind, cursor, true);
            if tx
                .send(Ok(line("BOOKMARK", &b, false, kind)))
                .await
                .is_err()
            {
                return;
            }
        }
        let mut last_sent = Instant::now();
        loop {
            if tx.is_closed() {
                return;
            }
            let batch: Vec<(&'static str, std::sync::Arc<Value>)> = {
                let store = lock(&sim.inner.store);
                let batch = store
                    .events_since(cursor)
                    .filter_map(|e| {
                        let now = filter.matches(e.kind, &e.namespace, &e.object);
                        let before = e
                            .old
                            .as_ref()
                            .map_or(now, |o| filter.matches(e.kind, &e.namespace, o));
                        // As the real watch cache: leaving the selection is a deletion,
                        // entering it an addition.
                        let etype = match (e.etype, before, now) {
                            (_, false, false) => return None,
                            (EventType::Modified, true, false) => "DELETED",
                            (EventType::Modified, false, true) => "ADDED",
                            (t, _, _) => t.as_str(),
                        };
                        Some((etype, e.object.clone()))
                    })
                    .collect();
                cursor = store.rv();
                batch
            };
            for (etype, obj) in &batch {
                if tx.send(Ok(line(etype, obj, as_table, kind))).await.is_err() {
                    return;
                }
                last_sent = Instant::now();
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            if bookmarks && now.duration_since(last_sent) >= BOOKMARK_EVERY {
                let b = bookmark(kind, cursor, false);
                if tx
                    .send(Ok(line("BOOKMARK", &b, false, kind)))
                    .await
                    .is_err()
                {
                    return;
                }
                last_sent = now;
            }
            let wake = if bookmarks {
                deadline.min(last_sent + BOOKMARK_EVERY)
            } else {
                deadline
            };
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    });

    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(rx),
    )
        .into_response()
}
