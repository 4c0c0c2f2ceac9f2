//! Failures of the kube layer in words a person can act on, and the retry of transient ones.

use std::time::Duration;
use tokio::time::Instant;

/// A failure of the kube layer, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Api(String),
    #[error("{what} not found in namespace `{ns}`")]
    NotFound { what: String, ns: String },
    #[error("{0}")]
    Rollout(String),
    #[error("timed out after {0}")]
    Timeout(String),
    #[error("interrupted")]
    Interrupted,
    #[error("the run lock was lost: {0}")]
    LockLost(super::fence::FenceError),
    /// An object ktplay would create, adopt or delete is not this run's (no ownership mark of
    /// this run): it is never adopted, changed or deleted.
    #[error("{0}")]
    NotOurs(String),
    #[error("deployment `{deploy}` has no container `{container}`; its containers: {}", have.join(", "))]
    NoContainer {
        deploy: String,
        container: String,
        have: Vec<String>,
    },
}

impl ClusterError {
    pub(crate) fn kube(e: kube::Error) -> ClusterError {
        ClusterError::Api(words(&e))
    }

    /// A failed request in words: what was asked of which object, and what the API said.
    pub(crate) fn request(e: kube::Error, verb: &str, object: &str) -> ClusterError {
        ClusterError::Api(format!("cannot {verb} {object}: {}", words(&e)))
    }
}

/// A kube error as a person reads it: the API's status, reason and message, with a hint for the
/// statuses that have one; never a `Status { … }` dump.
pub fn words(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let hint = match s.code {
                401 => " (the credentials were not accepted: check the kubeconfig's user)",
                403 => " (the kubeconfig's user lacks this permission: see `kubectl auth can-i`)",
                409 if s.reason == "Conflict" => {
                    " (someone else changed the object at the same time)"
                }
                422 => " (the API refused the object as invalid)",
                429 => " (the API is rate-limiting requests)",
                _ => "",
            };
            format!(
                "the Kubernetes API answered {} {}: {}{hint}",
                s.code, s.reason, s.message
            )
        }
        other => format!("the Kubernetes API request failed: {other}"),
    }
}

pub type Result<T> = std::result::Result<T, ClusterError>;

/// How long one request is retried while the API answers with transient failures.
pub const RETRY_BUDGET: Duration = Duration::from_secs(20);

/// A failure worth retrying: 429, 500, 502, 503, 504, or the connection (refused, reset, timed
/// out). kube's own retry layer already retries 429, 503 and 504 a few times; this covers the
/// rest, for longer.
pub fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// Run a request until it succeeds, fails for good, or [`RETRY_BUDGET`] passes: capped
/// exponential back-off (100 ms doubling to 2 s) with jitter, so many runners do not retry in
/// step. Only for requests that are safe to repeat (reads; patches that test or set values;
/// creates whose AlreadyExists the caller checks).
pub async fn retry<T, F, Fut>(mut f: F) -> std::result::Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, kube::Error>>,
{
    use rand::Rng;
    let start = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Err(e) if transient(&e) && start.elapsed() < RETRY_BUDGET => {
                let jitter = rand::thread_rng().gen_range(0..=delay.as_millis() as u64 / 2);
                // A server that says when to come back (429 with `retryAfterSeconds`, the
                // Retry-After header's twin in the Status) is believed, within the budget.
                let wait = (delay + Duration::from_millis(jitter))
                    .max(retry_after(&e).unwrap_or_default())
                    .min(RETRY_BUDGET.saturating_sub(start.elapsed()));
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// How long the API asked to wait before the next request (kube-apiserver sets
/// `details.retryAfterSeconds` with the `Retry-After` header of a 429 or a 503).
pub(super) fn retry_after(e: &kube::Error) -> Option<Duration> {
    match e {
        kube::Error::Api(s) => s
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|n| *n > 0)
            .map(|n| Duration::from_secs(n as u64)),
        _ => None,
    }
}

/// HTTP status of a kube API error, if it is one.
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_put_in_words() {
        let e = |code: u16, reason: &str, message: &str| {
            kube::Error::Api(
                kube::core::Status {
                    code,
                    reason: reason.into(),
                    message: message.into(),
                    ..Default::default()
                }
                .boxed(),
            )
        };
        let conflict = words(&e(
            409,
            "Conflict",
            "Operation cannot be fulfilled on deployments.apps \"api\": the object has been modified",
        ));
        assert_eq!(
            conflict,
            "the Kubernetes API answered 409 Conflict: Operation cannot be fulfilled on deployments.apps \"api\": the object has been modified (someone else changed the object at the same time)"
        );
        let invalid = ClusterError::request(
            e(422, "Invalid", "Deployment.apps \"api\" is invalid: spec.template.spec.containers[0].image: Required value"),
            "patch",
            "deployment `api`",
        )
        .to_string();
        assert!(invalid.starts_with("cannot patch deployment `api`: the Kubernetes API answered 422 Invalid: Deployment.apps"), "{invalid}");
        assert!(
            invalid.ends_with("(the API refused the object as invalid)"),
            "{invalid}"
        );
        for w in [conflict, invalid] {
            assert!(
                !w.contains("Status {") && !w.contains("ErrorResponse"),
                "{w}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_from_the_status() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 429, "reason": "TooManyRequests",
            "message": "too many requests", "details": {"retryAfterSeconds": 3}
        }))
        .unwrap();
        let e = kube::Error::Api(Box::new(status));
        assert!(transient(&e));
        assert_eq!(retry_after(&e), Some(Duration::from_secs(3)));
        let plain: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 500, "reason": "InternalError", "message": "boom"
        }))
        .unwrap();
        assert_eq!(retry_after(&kube::Error::Api(Box::new(plain))), None);
    }
}
