//! Unit tests of `run::metric`.

use super::*;
use crate::redact::Redactor;
use crate::run::guards::prometheus::query;
use crate::run::Cancel;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

type Seen = Arc<std::sync::Mutex<Vec<String>>>;
type FakeState = (Arc<Vec<(u16, &'static str)>>, Arc<AtomicUsize>, Seen);

/// A fake Prometheus answering `answers` in turn (the last one forever); records the bearer.
async fn fake(answers: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>, Seen) {
    let calls = Arc::new(AtomicUsize::new(0));
    let auth = Arc::new(std::sync::Mutex::new(Vec::new()));
    let st = (Arc::new(answers), calls.clone(), auth.clone());
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            post(
                |State((answers, calls, auth)): State<FakeState>,
                 headers: HeaderMap,
                 body: String| async move {
                    assert!(body.starts_with("query="), "{body}");
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    if let Some(a) = headers.get("authorization") {
                        auth.lock().unwrap().push(a.to_str().unwrap().to_string());
                    }
                    let (s, b) = answers[n.min(answers.len() - 1)];
                    (StatusCode::from_u16(s).unwrap(), b.to_string())
                },
            ),
        )
        .with_state(st);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), calls, auth)
}

const ONE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"0.25"]}]}}"#;
const SCALAR: &str =
    r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"3"]}}"#;
const EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
const NAN: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"NaN"]}]}}"#;
const THREE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"app":"a"},"value":[1,"1"]},{"metric":{"app":"b"},"value":[1,"2"]},{"metric":{"app":"c"},"value":[1,"3"]}]}}"#;
const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
const BAD: &str = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected end of input"}"#;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn one_sample_and_one_scalar_are_numbers() {
    let (url, _, _) = fake(vec![(200, ONE), (200, SCALAR)]).await;
    let t = Duration::from_secs(5);
    assert_eq!(
        query(&client(), &url, "x", None, t, &Redactor::default()).await,
        Ok(Sample::Value(0.25))
    );
    assert_eq!(
        query(&client(), &url, "x", None, t, &Redactor::default()).await,
        Ok(Sample::Value(3.0))
    );
}

#[tokio::test]
async fn empty_and_nan_are_no_data() {
    let (url, _, _) = fake(vec![(200, EMPTY), (200, NAN)]).await;
    let t = Duration::from_secs(5);
    assert_eq!(
        query(&client(), &url, "x", None, t, &Redactor::default()).await,
        Ok(Sample::NoData)
    );
    assert_eq!(
        query(&client(), &url, "x", None, t, &Redactor::default()).await,
        Ok(Sample::NoData)
    );
}

#[tokio::test]
async fn many_series_say_how_many_and_never_retry() {
    let (url, _, _) = fake(vec![(200, THREE)]).await;
    let e = query(
        &client(),
        &url,
        "x",
        None,
        Duration::from_secs(5),
        &Redactor::default(),
    )
    .await
    .unwrap_err();
    assert!(!e.retry);
    assert!(e.message.contains("returned 3 series"), "{}", e.message);
    assert!(e.message.contains("app=\"b\""), "{}", e.message);
    let (url, _, _) = fake(vec![(200, MATRIX)]).await;
    let e = query(
        &client(),
        &url,
        "x",
        None,
        Duration::from_secs(5),
        &Redactor::default(),
    )
    .await
    .unwrap_err();
    assert!(e.message.contains("a matrix"), "{}", e.message);
}

#[tokio::test]
async fn bad_request_carries_prometheus_message() {
    for status in [400, 422] {
        let (url, calls, _) = fake(vec![(status, BAD)]).await;
        let f = query_until(
            &client(),
            &url,
            "x",
            None,
            Instant::now() + Duration::from_secs(5),
            &Cancel::default(),
            &Redactor::default(),
        )
        .await
        .unwrap_err();
        assert!(f.permanent);
        assert!(
            f.message.contains("unexpected end of input")
                && f.message.contains(&status.to_string()),
            "{}",
            f.message
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a bad query is not retried"
        );
    }
}

#[tokio::test]
async fn unavailable_is_retried_within_the_time() {
    let (url, calls, auth) = fake(vec![(503, "starting"), (503, "starting"), (200, ONE)]).await;
    let s = query_until(
        &client(),
        &url,
        "x",
        Some("tok-123456789"),
        Instant::now() + Duration::from_secs(10),
        &Cancel::default(),
        &Redactor::default(),
    )
    .await
    .unwrap();
    assert_eq!(s, Sample::Value(0.25));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(auth.lock().unwrap()[0], "Bearer tok-123456789");

    // Always unavailable: fails once the time is up, saying so.
    let (url, calls, _) = fake(vec![(503, "down")]).await;
    let t0 = Instant::now();
    let f = query_until(
        &client(),
        &url,
        "x",
        None,
        Instant::now() + Duration::from_millis(1500),
        &Cancel::default(),
        &Redactor::default(),
    )
    .await
    .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(4));
    assert!(calls.load(Ordering::SeqCst) >= 2);
    assert!(f.message.contains("unavailable (503)"), "{}", f.message);
}

#[tokio::test]
async fn unreachable_server_is_an_error_not_a_pass() {
    let f = query_until(
        &client(),
        "http://127.0.0.1:9",
        "x",
        None,
        Instant::now() + Duration::from_millis(500),
        &Cancel::default(),
        &Redactor::default(),
    )
    .await
    .unwrap_err();
    assert!(f.message.contains("request failed"), "{}", f.message);
}

#[tokio::test]
async fn an_error_body_is_redacted_before_it_is_cut() {
    let secret = "sekret-PR-token-0042";
    let body: &'static str =
        Box::leak(format!("{}Bearer {secret} is not valid", "x".repeat(190)).into_boxed_str());
    let (url, _, _) = fake(vec![(401, body)]).await;
    let r = Redactor::new([secret.to_string()]);
    let e = query(
        &client(),
        &url,
        "x",
        Some(secret),
        Duration::from_secs(5),
        &r,
    )
    .await
    .unwrap_err();
    assert!(!e.retry);
    assert!(
        e.message.contains("Prometheus answered 401"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("sek"), "{}", e.message);
}

#[tokio::test]
async fn a_trickled_body_cut_by_the_timeout_says_so() {
    use futures::StreamExt;
    let app = axum::Router::new().route(
        "/api/v1/query",
        post(|| async {
            let s = futures::stream::once(async {
                Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{\"status\":\"succ"))
            })
            .chain(futures::stream::pending());
            axum::body::Body::from_stream(s)
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let e = query(
        &client(),
        &format!("http://{addr}"),
        "x",
        None,
        Duration::from_millis(300),
        &Redactor::default(),
    )
    .await
    .unwrap_err();
    assert!(e.retry, "{}", e.message);
    assert!(
        e.message
            .contains("did not arrive in time: cut after 15 bytes"),
        "{}",
        e.message
    );
    assert!(
        !e.message.contains("not a Prometheus query answer"),
        "{}",
        e.message
    );
}

#[test]
fn thresholds_no_data_and_baseline() {
    let below = Condition::Below(Threshold::Value(0.01));
    assert_eq!(judge(&below, Sample::Value(0.005), None).0, Some(true));
    assert_eq!(judge(&below, Sample::Value(0.01), None).0, Some(false));
    assert_eq!(judge(&below, Sample::NoData, None).0, None);
    let above = Condition::Above(Threshold::Value(1.0));
    assert_eq!(judge(&above, Sample::Value(2.0), None).0, Some(true));
    let between = Condition::Between(1.0, 2.0);
    assert_eq!(judge(&between, Sample::Value(1.0), None).0, Some(true));
    assert_eq!(judge(&between, Sample::Value(2.5), None).0, Some(false));
    let base = Condition::Below(Threshold::Baseline(1.2));
    let (ok, shown) = judge(&base, Sample::Value(0.35), Some(Sample::Value(0.3)));
    assert_eq!(ok, Some(true), "{shown}");
    assert!(shown.contains("baseline 0.3 * 1.2"), "{shown}");
    assert_eq!(
        judge(&base, Sample::Value(0.37), Some(Sample::Value(0.3))).0,
        Some(false)
    );
    // A baseline without data is no data, whatever the new version says.
    assert_eq!(
        judge(&base, Sample::Value(0.1), Some(Sample::NoData)).0,
        None
    );
}

#[test]
fn no_data_is_pending_in_the_window_then_as_written() {
    let warm = Some((Duration::from_millis(4), Duration::from_secs(60)));
    for nd in [NoData::Fail, NoData::Pass, NoData::Ignore] {
        let (v, why) = without_data(nd, warm);
        assert_eq!(v, Verdict::Pending, "{why}");
        assert!(why.contains("4ms of the query's 1m window"), "{why}");
    }
    assert_eq!(without_data(NoData::Fail, None).0, Verdict::Failed);
    assert_eq!(without_data(NoData::Pass, None).0, Verdict::Ok);
    assert_eq!(without_data(NoData::Ignore, None).0, Verdict::Pending);
}

#[test]
fn a_querys_window_is_its_longest_range_outside_strings() {
    let q = r#"sum(rate(x{a="[9h]"}[1m])) / sum(rate(y[5m])) + max_over_time(z[30m:1m])"#;
    assert_eq!(window(q), Some(Duration::from_secs(1800)));
    assert_eq!(window("sum(up)"), None);
    assert_eq!(window("rate(x[1h30m])"), Some(Duration::from_secs(5400)));
    assert_eq!(window("rate(x[500ms])"), Some(Duration::from_millis(500)));
    assert_eq!(
        window(r#"x{a="\"["} or rate(y[2m])"#),
        Some(Duration::from_secs(120))
    );
}
