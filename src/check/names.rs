//! Name helpers: "did you mean", Kubernetes name rules, image references.

/// The closest candidate to `name`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(name, c);
        if score > 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}

/// Why `name` is not an RFC 1123 label (namespace, container, service names), if it is not.
pub fn dns_label_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty".into());
    }
    if name.len() > 63 {
        return Some(format!("{} characters; at most 63", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!(
            "`{c}` is not allowed: lower-case letters, digits and `-` only"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

/// Why `name` is not an RFC 1123 subdomain (Deployment names), if it is not.
pub fn dns_subdomain_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty".into());
    }
    if name.len() > 253 {
        return Some(format!("{} characters; at most 253", name.len()));
    }
    for part in name.split('.') {
        if let Some(p) = dns_label_problem(part) {
            return Some(p);
        }
    }
    None
}

/// The nearest valid RFC 1123 name, for help lines (`worker_export` → `worker-export`).
pub fn suggest_k8s_name(name: &str) -> String {
    let mut s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.starts_with('-') {
        s.remove(0);
    }
    while s.ends_with('-') {
        s.pop();
    }
    s.truncate(63);
    s
}

/// If an image reference carries a tag or digest, the reference without it.
pub fn strip_image_tag(image: &str) -> Option<String> {
    let r = ktplay_imageref::ImageRef::parse(image);
    r.is_pinned().then(|| r.repo.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("gatway", ["api", "gateway"]),
            Some("did you mean `gateway`?".into())
        );
        assert_eq!(did_you_mean("zzz", ["api", "gateway"]), None);
    }

    #[test]
    fn k8s_names() {
        assert!(dns_label_problem("worker-export").is_none());
        assert!(dns_label_problem("worker_export").unwrap().contains('_'));
        assert!(dns_label_problem("-a").is_some());
        assert!(dns_label_problem(&"a".repeat(64)).is_some());
        assert_eq!(suggest_k8s_name("Worker_Export"), "worker-export");
        assert!(dns_subdomain_problem("a.b-c").is_none());
    }

    #[test]
    fn image_tags() {
        assert_eq!(strip_image_tag("keeptrusts/api"), None);
        assert_eq!(
            strip_image_tag("keeptrusts/api:1.5.0").as_deref(),
            Some("keeptrusts/api")
        );
        assert_eq!(strip_image_tag("registry:5000/keeptrusts/api"), None);
        assert_eq!(
            strip_image_tag("registry:5000/api:1.0").as_deref(),
            Some("registry:5000/api")
        );
        assert_eq!(strip_image_tag("api@sha256:abc").as_deref(), Some("api"));
    }
}
