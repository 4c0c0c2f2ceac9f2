//! Known fields of the served kinds, so unknown ones are dropped and reported as the real API
//! server's field validation does (`fieldValidation=Warn`, its default: a `Warning: 299 -
//! "unknown field \"spec.bogus\""` header per field; `Strict`: 400; `Ignore`: silence).
//!
//! How far it goes: the top level and `metadata` of every kind; the `spec` of Deployment,
//! ReplicaSet, Service, Lease and Namespace; a ConfigMap's top level; pod templates, pod specs,
//! containers, their ports and env, a rolling-update strategy, Service ports. Below that
//! (volumes, probes, affinity, resources, selectors, status...) any field is accepted and
//! stored as sent.

use serde_json::Value;

use super::discovery::Kind;

/// What the schema knows about a value.
pub enum Node {
    /// Anything: not checked.
    Any,
    /// An object with these fields only.
    Fields(&'static [(&'static str, &'static Node)]),
    /// A list whose items are this.
    List(&'static Node),
}

use Node::{Any, Fields, List};

static ANY: Node = Any;

static META: Node = Fields(&[
    ("name", &ANY),
    ("generateName", &ANY),
    ("namespace", &ANY),
    ("selfLink", &ANY),
    ("uid", &ANY),
    ("resourceVersion", &ANY),
    ("generation", &ANY),
    ("creationTimestamp", &ANY),
    ("deletionTimestamp", &ANY),
    ("deletionGracePeriodSeconds", &ANY),
    ("labels", &ANY),
    ("annotations", &ANY),
    ("ownerReferences", &ANY),
    ("finalizers", &ANY),
    ("managedFields", &ANY),
]);

static CONTAINER_PORT: Node = Fields(&[
    ("name", &ANY),
    ("hostPort", &ANY),
    ("containerPort", &ANY),
    ("protocol", &ANY),
    ("hostIP", &ANY),
]);

static ENV: Node = Fields(&[("name", &ANY), ("value", &ANY), ("valueFrom", &ANY)]);

static CONTAINER_PORTS: Node = List(&CONTAINER_PORT);
static ENVS: Node = List(&ENV);

static CONTAINER: Node = Fields(&[
    ("name", &ANY),
    ("image", &ANY),
    ("command", &ANY),
    ("args", &ANY),
    ("workingDir", &ANY),
    ("ports", &CONTAINER_PORTS),
    ("envFrom", &ANY),
    ("env", &ENVS),
    ("resources", &ANY),
    ("resizePolicy", &ANY),
    ("restartPolicy", &ANY),
    ("restartPolicyRules", &ANY),
    ("volumeMounts", &ANY),
    ("volumeDevices", &ANY),
    ("livenessProbe", &ANY),
    ("readinessProbe", &ANY),
    ("startupProbe", &ANY),
    ("lifecycle", &ANY),
    ("terminationMessagePath", &ANY),
    ("terminationMessagePolicy", &ANY),
    ("imagePullPolicy", &ANY),
    ("securityContext", &ANY),
    ("stdin", &ANY),
    ("stdinOnce", &ANY),
    ("tty", &ANY),
]);

static CONTAINERS: Node = List(&CONTAINER);

static POD_SPEC: Node = Fields(&[
    ("volumes", &ANY),
    ("initContainers", &CONTAINERS),
    ("containers", &CONTAINERS),
    ("ephemeralContainers", &ANY),
    ("restartPolicy", &ANY),
    ("terminationGracePeriodSeconds", &ANY),
    ("activeDeadlineSeconds", &ANY),
    ("dnsPolicy", &ANY),
    ("nodeSelector", &ANY),
    ("serviceAccountName", &ANY),
    ("serviceAccount", &ANY),
    ("automountServiceAccountToken", &ANY),
    ("nodeName", &ANY),
    ("hostNetwork", &ANY),
    ("hostPID", &ANY),
    ("hostIPC", &ANY),
    ("shareProcessNamespace", &ANY),
    ("securityContext", &ANY),
    ("imagePullSecrets", &ANY),
    ("hostname", &ANY),
    ("subdomain", &ANY),
    ("affinity", &ANY),
    ("schedulerName", &ANY),
    ("tolerations", &ANY),
    ("hostAliases", &ANY),
    ("priorityClassName", &ANY),
    ("priority", &ANY),
    ("dnsConfig", &ANY),
    ("readinessGates", &ANY),
    ("runtimeClassName", &ANY),
    ("enableServiceLinks", &ANY),
    ("preemptionPolicy", &ANY),
    ("overhead", &ANY),
    ("topologySpreadConstraints", &ANY),
    ("setHostnameAsFQDN", &ANY),
    ("os", &ANY),
    ("hostUsers", &ANY),
    ("schedulingGates", &ANY),
    ("resourceClaims", &ANY),
    ("resources", &ANY),
]);

static TEMPLATE: Node = Fields(&[("metadata", &META), ("spec", &POD_SPEC)]);

static ROLLING_UPDATE: Node = Fields(&[("maxUnavailable", &ANY), ("maxSurge", &ANY)]);

static STRATEGY: Node = Fields(&[("type", &ANY), ("rollingUpdate", &ROLLING_UPDATE)]);

static DEPLOYMENT_SPEC: Node = Fields(&[
    ("replicas", &ANY),
    ("selector", &ANY),
    ("template", &TEMPLATE),
    ("strategy", &STRATEGY),
    ("minReadySeconds", &ANY),
    ("revisionHistoryLimit", &ANY),
    ("paused", &ANY),
    ("progressDeadlineSeconds", &ANY),
]);

static REPLICA_SET_SPEC: Node = Fields(&[
    ("replicas", &ANY),
    ("minReadySeconds", &ANY),
    ("selector", &ANY),
    ("template", &TEMPLATE),
]);

static SERVICE_PORT: Node = Fields(&[
    ("name", &ANY),
    ("protocol", &ANY),
    ("appProtocol", &ANY),
    ("port", &ANY),
    ("targetPort", &ANY),
    ("nodePort", &ANY),
]);

static SERVICE_PORTS: Node = List(&SERVICE_PORT);

static SERVICE_SPEC: Node = Fields(&[
    ("ports", &SERVICE_PORTS),
    ("selector", &ANY),
    ("clusterIP", &ANY),
    ("clusterIPs", &ANY),
    ("type", &ANY),
    ("externalIPs", &ANY),
    ("sessionAffinity", &ANY),
    ("loadBalancerIP", &ANY),
    ("loadBalancerSourceRanges", &ANY),
    ("externalName", &ANY),
    ("externalTrafficPolicy", &ANY),
    ("healthCheckNodePort", &ANY),
    ("publishNotReadyAddresses", &ANY),
    ("sessionAffinityConfig", &ANY),
    ("ipFamilies", &ANY),
    ("ipFamilyPolicy", &ANY),
    ("allocateLoadBalancerNodePorts", &ANY),
    ("loadBalancerClass", &ANY),
    ("internalTrafficPolicy", &ANY),
    ("trafficDistribution", &ANY),
]);

static LEASE_SPEC: Node = Fields(&[
    ("holderIdentity", &ANY),
    ("leaseDurationSeconds", &ANY),
    ("acquireTime", &ANY),
    ("renewTime", &ANY),
    ("leaseTransitions", &ANY),
    ("strategy", &ANY),
    ("preferredHolder", &ANY),
]);

static NAMESPACE_SPEC: Node = Fields(&[("finalizers", &ANY)]);

static DEPLOYMENT: Node = Fields(&[
    ("apiVersion", &ANY),
    ("kind", &ANY),
    ("metadata", &META),
    ("spec", &DEPLOYMENT_SPEC),
    ("status", &ANY),
]);
static REPLICA_SET: Node = Fields(&[
    ("apiVersion", &ANY),
    ("kind", &ANY),
    ("metadata", &META),
    ("spec", &REPLICA_SET_SPEC),
    ("status", &ANY),
]);
static POD: Node = Fields(&[
    ("apiVersion", &ANY),
    ("kind", &ANY),
    ("metadata", &META),
    ("spec", &POD_SPEC),
    ("status", &ANY),
]);
static SERVICE: Node = Fields(&[
    ("apiVersion", &ANY),
    ("kind", &ANY),
    ("metadata", &META),
    ("spec", &SERVICE_SPEC),
    ("status", &ANY),
]);
static LEASE: Node = Fields(&[
    ("apiVersion", &ANY),
    ("kind", &ANY),
    ("metadata", &META),
    ("spec", &LEASE_SPEC),
]);
static NAMESPACE: Node = Fields(&[
    ("apiVersion", &ANY),
    ("kind", &ANY),
    ("metadata", &META),
    ("spec", &NAMESPACE_SPEC),
    ("status", &ANY),
]);
static CONFIG_MAP: Node = Fields(&[
    ("apiVersion", &ANY),
    ("kind", &ANY),
    ("metadata", &META),
    ("data", &ANY),
    ("binaryData", &ANY),
    ("immutable", &ANY),
]);

/// HTTPRoute and Ingress: stored as sent below `spec` (the real schema is the CRD's / the
/// API server's; `tests/traffic_real.rs` proves ktplay's objects against the real one).
static ROUTE: Node = Fields(&[
    ("apiVersion", &ANY),
    ("kind", &ANY),
    ("metadata", &META),
    ("spec", &ANY),
    ("status", &ANY),
]);

/// The schema of a kind.
pub fn of(kind: Kind) -> &'static Node {
    match kind {
        Kind::Deployment => &DEPLOYMENT,
        Kind::ReplicaSet => &REPLICA_SET,
        Kind::Pod => &POD,
        Kind::Service => &SERVICE,
        Kind::Lease => &LEASE,
        Kind::Namespace => &NAMESPACE,
        Kind::ConfigMap => &CONFIG_MAP,
        Kind::HttpRoute | Kind::Ingress | Kind::PodDisruptionBudget => &ROUTE,
    }
}

/// Remove the fields the schema does not know; return their paths in document order
/// (`spec.bogus`, `spec.template.spec.containers[0].bogus`), as the API server names them.
pub fn prune(kind: Kind, obj: &mut Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(of(kind), obj, "", &mut found);
    found
}

fn walk(node: &Node, v: &mut Value, path: &str, found: &mut Vec<String>) {
    match (node, v) {
        (Any, _) => {}
        (Fields(fields), Value::Object(m)) => {
            let mut unknown = Vec::new();
            for (k, child) in m.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match fields.iter().find(|(name, _)| name == k) {
                    Some((_, n)) => walk(n, child, &p, found),
                    None => {
                        found.push(p);
                        unknown.push(k.clone());
                    }
                }
            }
            for k in unknown {
                m.shift_remove(&k);
            }
        }
        (List(item), Value::Array(a)) => {
            for (i, x) in a.iter_mut().enumerate() {
                walk(item, x, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_and_dropped() {
        let mut d = json!({"metadata": {"name": "d", "bogusmeta": 1}, "bogustop": 2,
            "spec": {"replicas": 1, "bogus": 1, "template": {"spec": {"containers": [
                {"name": "c", "image": "i", "bogus2": "x", "resources": {"anything": 1}}]}}}});
        let found = prune(Kind::Deployment, &mut d);
        assert_eq!(
            found,
            [
                "metadata.bogusmeta",
                "bogustop",
                "spec.bogus",
                "spec.template.spec.containers[0].bogus2"
            ]
        );
        assert_eq!(
            d,
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 1, "template": {"spec": {
                "containers": [{"name": "c", "image": "i", "resources": {"anything": 1}}]}}}})
        );
    }
}
