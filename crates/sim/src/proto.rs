//! Just enough of Kubernetes' protobuf encoding to read the one body kubectl always sends that
//! way: a `SelfSubjectAccessReview` (`kubectl auth can-i`). The simulator answers in JSON,
//! which kubectl accepts (`Accept: application/vnd.kubernetes.protobuf,application/json`).

use serde_json::{json, Map, Value};

/// The fields of a message: (field number, wire type, bytes of a length-delimited value).
fn fields(mut b: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let (&x, rest) = b.split_first()?;
            *b = rest;
            n |= u64::from(x & 0x7f) << shift;
            if x & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        match key & 7 {
            0 => {
                varint(&mut b)?;
            }
            2 => {
                let len = usize::try_from(varint(&mut b)?).ok()?;
                if len > b.len() {
                    return None;
                }
                out.push((key >> 3, &b[..len]));
                b = &b[len..];
            }
            1 => b = b.get(8..)?,
            5 => b = b.get(4..)?,
            _ => return None,
        }
    }
    Some(out)
}

fn strings(msg: &[u8], names: &[(u64, &str)]) -> Option<Map<String, Value>> {
    let mut m = Map::new();
    for (n, v) in fields(msg)? {
        if let Some((_, name)) = names.iter().find(|(k, _)| *k == n) {
            m.insert((*name).into(), json!(String::from_utf8_lossy(v)));
        }
    }
    Some(m)
}

/// A protobuf-encoded `SelfSubjectAccessReview` (`k8s\0` + `runtime.Unknown`) as JSON.
pub fn self_subject_access_review(body: &[u8]) -> Option<Value> {
    let unknown = body.strip_prefix(b"k8s\x00")?;
    let raw = fields(unknown)?.into_iter().find(|(n, _)| *n == 2)?.1;
    let spec = fields(raw)?.into_iter().find(|(n, _)| *n == 2)?.1;
    let mut out = Map::new();
    for (n, v) in fields(spec)? {
        match n {
            1 => {
                let ra = strings(
                    v,
                    &[
                        (1, "namespace"),
                        (2, "verb"),
                        (3, "group"),
                        (4, "version"),
                        (5, "resource"),
                        (6, "subresource"),
                        (7, "name"),
                    ],
                )?;
                out.insert("resourceAttributes".into(), Value::Object(ra));
            }
            2 => {
                let nra = strings(v, &[(1, "path"), (2, "verb")])?;
                out.insert("nonResourceAttributes".into(), Value::Object(nra));
            }
            _ => {}
        }
    }
    Some(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "metadata": {},
        "spec": out,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(n: u64, v: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, v.len() as u8];
        out.extend_from_slice(v);
        out
    }

    #[test]
    fn reads_what_kubectl_sends() {
        let ra = [
            ld(1, b"ns"),
            ld(2, b"patch"),
            ld(3, b"apps"),
            ld(5, b"deployments"),
        ]
        .concat();
        let spec = ld(1, &ra);
        let review = [ld(1, b""), ld(2, &spec)].concat();
        let unknown = [
            ld(
                1,
                &[
                    ld(1, b"authorization.k8s.io/v1"),
                    ld(2, b"SelfSubjectAccessReview"),
                ]
                .concat(),
            ),
            ld(2, &review),
        ]
        .concat();
        let body = [b"k8s\x00".as_slice(), &unknown].concat();
        let v = self_subject_access_review(&body).unwrap();
        assert_eq!(
            v["spec"]["resourceAttributes"],
            json!({"namespace": "ns", "verb": "patch", "group": "apps", "resource": "deployments"})
        );
        assert!(self_subject_access_review(b"k8s\x00\xff").is_none());
    }
}
