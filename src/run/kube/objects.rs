//! Objects of any kind as JSON (`DynamicObject` through an `ApiResource`): the one set of get,
//! create (adopting only this run's), delete (by uid), and merge patch that the routers use.
//! Every write waits for the run lock's fence first.

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions,
};
use serde_json::Value;

use crate::run::Failure;

use super::{retry, status_code, Cluster};

pub(crate) fn http_route() -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    }
}

pub(crate) fn ingress() -> ApiResource {
    ApiResource {
        group: "networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "networking.k8s.io/v1".into(),
        kind: "Ingress".into(),
        plural: "ingresses".into(),
    }
}

pub(crate) fn services() -> ApiResource {
    ApiResource {
        group: "".into(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Service".into(),
        plural: "services".into(),
    }
}

pub(crate) fn api(c: &Cluster, ar: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(c.client.clone(), &c.ns, ar)
}

pub(crate) fn fail(what: &str, e: kube::Error) -> Failure {
    Failure::new(format!("{what}: {}", crate::run::kube::words(&e)))
}

pub(crate) async fn get(
    c: &Cluster,
    ar: &ApiResource,
    name: &str,
) -> Result<Option<Value>, Failure> {
    match retry(|| async { api(c, ar).get(name).await }).await {
        Ok(o) => Ok(Some(serde_json::to_value(o).unwrap_or_default())),
        Err(e) if status_code(&e) == Some(404) => Ok(None),
        Err(e) => Err(fail(&format!("read {} `{name}`", ar.kind), e)),
    }
}

pub(crate) async fn delete(
    c: &Cluster,
    ar: &ApiResource,
    name: &str,
    uid: Option<&str>,
) -> Result<bool, Failure> {
    c.may_write().await?;
    // Only the object read: one put in its place meanwhile is not deleted.
    let dp = DeleteParams {
        preconditions: uid.map(|u| Preconditions {
            uid: Some(u.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match retry(|| async { api(c, ar).delete(name, &dp).await }).await {
        Ok(_) => Ok(true),
        Err(e) if status_code(&e) == Some(404) => Ok(false),
        Err(e) => Err(fail(&format!("delete {} `{name}`", ar.kind), e)),
    }
}

pub(crate) async fn create(c: &Cluster, ar: &ApiResource, obj: Value) -> Result<(), Failure> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let obj: DynamicObject =
        serde_json::from_value(obj).map_err(|e| Failure::new(format!("{}: {e}", ar.kind)))?;
    c.may_write()
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    match retry(|| async { api(c, ar).create(&PostParams::default(), &obj).await }).await {
        Ok(_) => Ok(()),
        // The first try's answer was lost, or another process of this run made it: this run's
        // is kept; anyone else's is never adopted.
        Err(e) if status_code(&e) == Some(409) => match get(c, ar, &name).await? {
            Some(existing) if c.ours(&existing) => Ok(()),
            Some(existing) => Err(c.not_ours(&ar.kind, &name, &existing).into()),
            None => Err(fail(&format!("create {} `{name}`", ar.kind), e)),
        },
        Err(e) => Err(fail(&format!("create {} `{name}`", ar.kind), e)),
    }
}

pub(crate) async fn try_merge(
    c: &Cluster,
    ar: &ApiResource,
    name: &str,
    patch: &Value,
) -> Result<Result<(), kube::Error>, Failure> {
    c.may_write().await?;
    Ok(retry(|| async {
        api(c, ar)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
    })
    .await
    .map(|_| ()))
}

pub(crate) async fn merge(
    c: &Cluster,
    ar: &ApiResource,
    name: &str,
    patch: Value,
) -> Result<(), Failure> {
    try_merge(c, ar, name, &patch)
        .await?
        .map_err(|e| fail(&format!("update {} `{name}`", ar.kind), e))
}
