//! Unit tests of `run::monitor`.

use super::*;

fn done(ms: u64, outcome: Probe) -> Done {
    Done {
        sent: Duration::from_millis(ms),
        outcome,
        latency: Duration::from_millis(1),
    }
}

#[test]
fn an_outage_runs_from_the_first_failure_to_the_next_success_in_send_order() {
    let mut t = Tally::default();
    t.fold(0, done(0, Probe::Ok));
    // Probe 2 ends before probe 1: folded only once 1 is in.
    t.fold(2, done(200, Probe::Reset));
    assert_eq!(t.requests, 1);
    t.fold(1, done(100, Probe::Refused));
    t.fold(3, done(300, Probe::Ok));
    t.fold(4, done(400, Probe::Status));
    assert_eq!((t.requests, t.failures), (5, 3));
    assert_eq!((t.refused, t.reset, t.status, t.timeout), (1, 1, 1, 0));
    assert_eq!(
        t.longest(Duration::from_millis(450)),
        Duration::from_millis(200)
    );
    // An outage still going on counts until now.
    assert_eq!(
        t.longest(Duration::from_millis(700)),
        Duration::from_millis(300)
    );
}

#[test]
fn budgets_name_the_limit_broken() {
    let r = MonitorReport {
        requests: 200,
        failures: 3,
        longest_outage_ms: 300,
        ..MonitorReport::default()
    };
    let b = |failures, failure_percent, outage| MonitorBudget {
        failures,
        failure_percent,
        outage,
    };
    assert_eq!(
        exceeded(&b(Some(0), None, None), &r, false).unwrap(),
        "3 failed requests, budget failures 0"
    );
    assert!(exceeded(&b(Some(3), None, None), &r, false).is_none());
    assert!(exceeded(&b(None, Some(1), None), &r, false)
        .unwrap()
        .contains("1.5%"));
    assert!(exceeded(&b(None, Some(2), None), &r, false).is_none());
    assert!(exceeded(&b(None, None, Some(Duration::from_millis(250))), &r, false).is_some());
    let few = MonitorReport {
        requests: 3,
        failures: 1,
        ..MonitorReport::default()
    };
    // A share is judged along the way only from 100 requests on; at the end always.
    assert!(exceeded(&b(None, Some(10), None), &few, false).is_none());
    assert!(exceeded(&b(None, Some(10), None), &few, true).is_some());
}
