use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::program::IntOrPercent::{Int, Percent};

/// The seed's gateway as the seed writes it: 3 replicas, maxUnavailable 1, maxSurge 1, a
/// readinessProbe, preStop `sleep 10`, grace 30 s, deadline 600 s.
fn clean() -> Value {
    json!({
        "metadata": {"name": "gw"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "gw"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app": "gw", "tier": "edge"}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "gateway", "image": "keeptrusts/gateway:1.4.1",
                        "ports": [{"name": "http", "containerPort": 41002}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "10"]}}}
                    }]
                }
            }
        },
        "status": {"readyReplicas": 3}
    })
}

fn svc(name: &str, selector: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": {"selector": selector}})
}

fn pdb(name: &str, spec: Value) -> Value {
    let mut s = spec;
    s["selector"] = json!({"matchLabels": {"app": "gw"}});
    json!({"metadata": {"name": name}, "spec": s})
}

fn rolling() -> Action {
    Action::Rolling {
        max_unavailable: None,
        max_surge: None,
        timeout: Duration::from_secs(600),
    }
}

fn run(action: &Action, d: &Value, services: &[Value], pdbs: &[Value]) -> Vec<Hazard> {
    rules(
        action,
        &Subject {
            deployment: d,
            container: "gateway",
            services,
            pdbs: Some(pdbs),
        },
        &Assumptions::default(),
    )
}

fn codes(h: &[Hazard]) -> Vec<Code> {
    h.iter().map(|h| h.code).collect()
}

fn served() -> Vec<Value> {
    vec![svc("gw", json!({"app": "gw"}))]
}

fn budget() -> Vec<Value> {
    vec![pdb("gw", json!({"maxUnavailable": 1}))]
}

#[test]
fn the_seed_deployment_is_clean() {
    let h = run(&rolling(), &clean(), &served(), &budget());
    assert!(h.is_empty(), "{h:#?}");
    let canary = Action::Canary {
        timeout: Duration::from_secs(600),
        routed: true,
    };
    assert!(run(&canary, &clean(), &served(), &budget()).is_empty());
}

#[test]
fn no_readiness_probe_names_the_container_field_and_service() {
    let mut d = clean();
    d["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("readinessProbe");
    let h = run(&rolling(), &d, &served(), &budget());
    assert_eq!(codes(&h), [Code::NoReadinessProbe]);
    assert_eq!(h[0].kind, "Deployment");
    assert_eq!(h[0].name, "gw");
    assert_eq!(
        h[0].field,
        "spec.template.spec.containers[name=gateway].readinessProbe"
    );
    assert!(h[0].message.contains("Service `gw`"), "{}", h[0].message);
    // A startupProbe keeps a loading pod out as well.
    d["spec"]["template"]["spec"]["containers"][0]["startupProbe"] =
        json!({"httpGet": {"path": "/readyz", "port": 41002}});
    assert!(run(&rolling(), &d, &served(), &budget()).is_empty());
}

#[test]
fn traffic_rules_need_a_service_selecting_the_pods() {
    let mut d = clean();
    let c = &mut d["spec"]["template"]["spec"]["containers"][0];
    c.as_object_mut().unwrap().remove("readinessProbe");
    c.as_object_mut().unwrap().remove("lifecycle");
    // No Service, or one selecting other pods: no traffic to drop (and no PDB is asked for).
    let other = vec![svc("other", json!({"app": "other"}))];
    assert!(run(&rolling(), &d, &[], &[]).is_empty());
    assert!(run(&rolling(), &d, &other, &[]).is_empty());
    // A Service selecting a subset of the template labels does select them.
    let by_tier = vec![svc("edge", json!({"tier": "edge"}))];
    assert_eq!(
        codes(&run(&rolling(), &d, &by_tier, &budget())),
        [Code::NoReadinessProbe, Code::NoPrestop]
    );
    // A canary Service ktplay made is not the app's.
    let ours = vec![
        json!({"metadata": {"name": "gw-canary", "labels": {"app.kubernetes.io/managed-by": "ktplay"}}, "spec": {"selector": {"app": "gw"}}}),
    ];
    assert!(run(&rolling(), &d, &ours, &[]).is_empty());
}

#[test]
fn prestop_forms() {
    let c = |hook: Value| json!({"lifecycle": {"preStop": hook}});
    let s = |n| Duration::from_secs(n);
    assert_eq!(prestop(&json!({})), PreStop::None);
    assert_eq!(
        prestop(&c(json!({"sleep": {"seconds": 7}}))),
        PreStop::Sleeps(s(7), "sleep")
    );
    assert_eq!(
        prestop(&c(json!({"exec": {"command": ["/bin/sleep", "10"]}}))),
        PreStop::Sleeps(s(10), "exec sleep")
    );
    assert_eq!(
        prestop(&c(json!({"exec": {"command": ["sleep", "1.5"]}}))),
        PreStop::Sleeps(Duration::from_millis(1500), "exec sleep")
    );
    assert_eq!(
        prestop(&c(json!({"exec": {"command": ["sleep", "1m"]}}))),
        PreStop::Sleeps(s(60), "exec sleep")
    );
    assert_eq!(
        prestop(&c(
            json!({"exec": {"command": ["/bin/sh", "-c", "sleep 5 && nginx -s quit; sleep 2"]}})
        )),
        PreStop::Sleeps(s(7), "sh -c sleep")
    );
    // Not a sleep: the app's time, unknown.
    assert_eq!(
        prestop(&c(json!({"exec": {"command": ["nginx", "-s", "quit"]}}))),
        PreStop::Unknown("exec")
    );
    assert_eq!(
        prestop(&c(json!({"exec": {"command": ["sleep", "infinity"]}}))),
        PreStop::Unknown("exec")
    );
    assert_eq!(
        prestop(&c(
            json!({"exec": {"command": ["sh", "-c", "kill -QUIT 1"]}})
        )),
        PreStop::Unknown("exec")
    );
    assert_eq!(
        prestop(&c(json!({"httpGet": {"path": "/drain", "port": 8080}}))),
        PreStop::Unknown("httpGet")
    );
}

#[test]
fn no_prestop_short_prestop_and_unknown_hooks() {
    let mut d = clean();
    d["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("lifecycle");
    let h = run(&rolling(), &d, &served(), &budget());
    assert_eq!(codes(&h), [Code::NoPrestop]);
    assert_eq!(
        h[0].field,
        "spec.template.spec.containers[name=gateway].lifecycle.preStop"
    );
    assert!(h[0].message.contains("5 s"), "the assumption is visible");

    d["spec"]["template"]["spec"]["containers"][0]["lifecycle"] =
        json!({"preStop": {"exec": {"command": ["sleep", "2"]}}});
    let h = run(&rolling(), &d, &served(), &budget());
    assert_eq!(codes(&h), [Code::ShortPrestop]);
    assert!(h[0].message.contains("exec sleep 2 s"), "{}", h[0].message);
    // A longer assumed lag makes a 10 s sleep short too.
    let long = Assumptions {
        endpoint_lag: Duration::from_secs(15),
        ..Assumptions::default()
    };
    let h = rules(
        &rolling(),
        &Subject {
            deployment: &clean(),
            container: "gateway",
            services: &served(),
            pdbs: Some(&budget()),
        },
        &long,
    );
    assert_eq!(codes(&h), [Code::ShortPrestop]);
    assert!(h[0].message.contains("15 s"));

    // An httpGet hook is trusted (its time is the app's).
    d["spec"]["template"]["spec"]["containers"][0]["lifecycle"] =
        json!({"preStop": {"httpGet": {"path": "/drain", "port": "http"}}});
    assert!(run(&rolling(), &d, &served(), &budget()).is_empty());
    // A blue-green deploy stops no pod: no preStop rule.
    d["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("lifecycle");
    let bg = Action::BlueGreenIdle {
        timeout: Duration::from_secs(600),
    };
    assert!(run(&bg, &d, &served(), &budget()).is_empty());
    // A scale-down stops pods, a scale-up starts them.
    let down = Action::Scale {
        replicas: 2,
        timeout: Duration::from_secs(600),
    };
    assert_eq!(
        codes(&run(&down, &d, &served(), &budget())),
        [Code::NoPrestop]
    );
    let up = Action::Scale {
        replicas: 4,
        timeout: Duration::from_secs(600),
    };
    assert!(run(&up, &d, &served(), &budget()).is_empty());
}

#[test]
fn grace_shorter_than_prestop_plus_drain() {
    let mut d = clean();
    d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(12);
    let h = run(&rolling(), &d, &served(), &budget());
    assert_eq!(codes(&h), [Code::GraceTooShort]);
    assert_eq!(
        h[0].field,
        "spec.template.spec.terminationGracePeriodSeconds"
    );
    assert!(
        h[0].message.contains("(12 s)") && h[0].message.contains("(10 s)"),
        "{}",
        h[0].message
    );
    assert!(h[0].message.contains("in-flight requests are cut"));
    // Shorter than the endpoint lag: killed while still receiving requests.
    d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(1);
    let h = run(&rolling(), &d, &served(), &budget());
    assert!(
        h[0].message.contains("killed after 1 s"),
        "{}",
        h[0].message
    );
    // The default grace (30 s) covers sleep 10 + drain 5.
    d["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("terminationGracePeriodSeconds");
    assert!(run(&rolling(), &d, &served(), &budget()).is_empty());
}

#[test]
fn percentages_resolve_as_kubernetes_rounds_them() {
    assert_eq!(fenceposts(Percent(25), Percent(25), 1), (1, 0));
    assert_eq!(fenceposts(Percent(25), Percent(25), 4), (1, 1));
    assert_eq!(fenceposts(Percent(25), Percent(25), 3), (1, 0));
    assert_eq!(fenceposts(Percent(0), Percent(0), 3), (0, 1));
    assert_eq!(fenceposts(Percent(10), Percent(99), 2), (1, 1));
    assert_eq!(fenceposts(Int(0), Percent(50), 1), (0, 1));
    assert_eq!(scaled(Percent(50), 3, true), 2);
    assert_eq!(scaled(Percent(50), 3, false), 1);
}

#[test]
fn max_unavailable_that_takes_every_replica() {
    let mut d = clean();
    d["spec"]["replicas"] = json!(1);
    d["status"]["readyReplicas"] = json!(1);
    // The seed's maxUnavailable 1 on one replica (pihole-kubernetes#397).
    let h = run(&rolling(), &d, &served(), &[]);
    assert_eq!(codes(&h), [Code::TakesEveryReplica]);
    assert_eq!(h[0].severity, Severity::Error);
    assert!(h[0].message.contains("resolves to 1 of `gw`'s 1 replica"));
    // 25% of one replica rounds down to 0: safe.
    d["spec"]["strategy"]["rollingUpdate"] = json!({"maxUnavailable": "25%", "maxSurge": "25%"});
    assert!(run(&rolling(), &d, &served(), &[]).is_empty());
    // 0% and 0%: Kubernetes takes 1 down, which is every one of one replica.
    d["spec"]["strategy"]["rollingUpdate"] = json!({"maxUnavailable": "0%", "maxSurge": "0%"});
    assert_eq!(
        codes(&run(&rolling(), &d, &served(), &[])),
        [Code::NoProgress]
    );
    // 50% of three rounds down to 1: fine; 100% takes all three.
    d["spec"]["replicas"] = json!(3);
    let stmt = |mu| Action::Rolling {
        max_unavailable: Some(mu),
        max_surge: None,
        timeout: Duration::from_secs(600),
    };
    d["spec"]["strategy"]["rollingUpdate"] = json!({"maxUnavailable": 1, "maxSurge": 1});
    assert!(run(&stmt(Percent(50)), &d, &served(), &budget()).is_empty());
    let h = run(&stmt(Percent(100)), &d, &served(), &budget());
    assert!(codes(&h).contains(&Code::TakesEveryReplica), "{h:#?}");
    assert!(h[0].message.contains("the statement's maxUnavailable 100%"));
    // Recreate stops every pod.
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    let h = run(&rolling(), &d, &served(), &budget());
    assert_eq!(codes(&h), [Code::TakesEveryReplica]);
    assert_eq!(h[0].field, "spec.strategy.type");
}

#[test]
fn zero_unavailable_and_zero_surge() {
    let stmt = Action::Rolling {
        max_unavailable: Some(Int(0)),
        max_surge: Some(Int(0)),
        timeout: Duration::from_secs(600),
    };
    let h = run(&stmt, &clean(), &served(), &budget());
    assert_eq!(codes(&h), [Code::NoProgress]);
    assert_eq!(h[0].field, "spec.strategy.rollingUpdate.maxUnavailable");
    // The statement's 0 beside the Deployment's maxSurge 0 (`check` sees only the statement).
    let mut d = clean();
    d["spec"]["strategy"]["rollingUpdate"] = json!({"maxUnavailable": 1, "maxSurge": 0});
    let stmt = Action::Rolling {
        max_unavailable: Some(Int(0)),
        max_surge: None,
        timeout: Duration::from_secs(600),
    };
    let h = run(&stmt, &d, &served(), &budget());
    assert_eq!(codes(&h), [Code::NoProgress]);
    assert!(h[0].message.contains("maxSurge 0"), "{}", h[0].message);
}

#[test]
fn pod_disruption_budgets() {
    // maxUnavailable 1 of 3 keeps 2: minAvailable 2 holds, minAvailable 3 does not.
    let ok = vec![pdb("gw", json!({"minAvailable": 2}))];
    assert!(run(&rolling(), &clean(), &served(), &ok).is_empty());
    let strict = vec![pdb("gw-strict", json!({"minAvailable": 3}))];
    let h = run(&rolling(), &clean(), &served(), &strict);
    assert_eq!(codes(&h), [Code::PdbViolated]);
    assert_eq!(h[0].kind, "PodDisruptionBudget");
    assert_eq!(h[0].name, "gw-strict");
    assert_eq!(h[0].field, "spec.minAvailable");
    // Percent minAvailable rounds up: 67% of 3 is 3.
    let pct = vec![pdb("gw-pct", json!({"minAvailable": "67%"}))];
    assert_eq!(
        codes(&run(&rolling(), &clean(), &served(), &pct)),
        [Code::PdbViolated]
    );
    // maxUnavailable 0 promises every pod.
    let none = vec![pdb("gw-zero", json!({"maxUnavailable": 0}))];
    let h = run(&rolling(), &clean(), &served(), &none);
    assert_eq!(h[0].field, "spec.maxUnavailable");
    // A budget over other pods does not count, and then one is missing.
    let other = vec![
        json!({"metadata": {"name": "x"}, "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "other"}}}}),
    ];
    let h = run(&rolling(), &clean(), &served(), &other);
    assert_eq!(codes(&h), [Code::NoPdb]);
    // matchExpressions select as well.
    let expr = vec![
        json!({"metadata": {"name": "e"}, "spec": {"maxUnavailable": 1, "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["gw"]}]}}}),
    ];
    assert!(run(&rolling(), &clean(), &served(), &expr).is_empty());
    // One replica is not asked for a budget; unread budgets are not judged here.
    let mut one = clean();
    one["spec"]["replicas"] = json!(1);
    one["spec"]["strategy"]["rollingUpdate"] = json!({"maxUnavailable": 0, "maxSurge": 1});
    assert!(run(&rolling(), &one, &served(), &[]).is_empty());
    let h = rules(
        &rolling(),
        &Subject {
            deployment: &clean(),
            container: "gateway",
            services: &served(),
            pdbs: None,
        },
        &Assumptions::default(),
    );
    assert!(h.is_empty());
}

#[test]
fn progress_deadline_longer_than_the_timeout() {
    let stmt = Action::Rolling {
        max_unavailable: None,
        max_surge: None,
        timeout: Duration::from_secs(120),
    };
    let h = run(&stmt, &clean(), &served(), &budget());
    assert_eq!(codes(&h), [Code::ProgressDeadline]);
    assert_eq!(h[0].field, "spec.progressDeadlineSeconds");
    assert!(h[0].message.contains("(600 s)") && h[0].message.contains("(120 s)"));
    let mut d = clean();
    d["spec"]["progressDeadlineSeconds"] = json!(120);
    assert!(run(&stmt, &d, &served(), &budget()).is_empty());
}

#[test]
fn blue_green_idle_at_zero() {
    let mut d = clean();
    d["spec"]["replicas"] = json!(0);
    let bg = Action::BlueGreenIdle {
        timeout: Duration::from_secs(600),
    };
    let h = run(&bg, &d, &served(), &budget());
    assert_eq!(codes(&h), [Code::IdleAtZero]);
    assert_eq!(h[0].severity, Severity::Error);
    assert_eq!(h[0].field, "spec.replicas");
}

#[test]
fn canary_service_that_would_not_select_the_canary() {
    // The Service selects `tier`, a template label the matchLabels lack: the canary's pods
    // (matchLabels + track) do not carry it.
    let by_tier = vec![svc("gw", json!({"app": "gw", "tier": "edge"}))];
    let routed = Action::Canary {
        timeout: Duration::from_secs(600),
        routed: true,
    };
    let h = run(&routed, &clean(), &by_tier, &budget());
    assert_eq!(codes(&h), [Code::CanaryNotSelected]);
    assert_eq!((h[0].kind.as_str(), h[0].name.as_str()), ("Service", "gw"));
    assert_eq!(h[0].field, "spec.selector");
    assert_eq!(h[0].severity, Severity::Error);
    assert!(h[0].message.contains("tier=edge"), "{}", h[0].message);
    let unrouted = Action::Canary {
        timeout: Duration::from_secs(600),
        routed: false,
    };
    assert_eq!(
        run(&unrouted, &clean(), &by_tier, &budget())[0].severity,
        Severity::Warning
    );
    // A Service pinned to the stable ReplicaSet (a canary in progress) is judged without the hash.
    let pinned = vec![svc("gw", json!({"app": "gw", "pod-template-hash": "abc"}))];
    assert!(run(&routed, &clean(), &pinned, &budget()).is_empty());
    // `track: stable` in the selector excludes the canary.
    let mut d = clean();
    d["spec"]["template"]["metadata"]["labels"]["track"] = json!("stable");
    let stable = vec![svc("gw", json!({"app": "gw", "track": "stable"}))];
    let h = run(&routed, &d, &stable, &budget());
    assert!(h[0].message.contains("track=stable"), "{}", h[0].message);
}

#[test]
fn codes_parse_in_every_form() {
    for c in Code::ALL {
        assert_eq!(Code::parse(&c.code()), Some(c));
        assert_eq!(Code::parse(c.name()), Some(c));
        assert_eq!(Code::parse(&format!("hazard::{}", c.name())), Some(c));
    }
    assert_eq!(Code::parse("no_such"), None);
}
