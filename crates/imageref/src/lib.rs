//! Image references, one set of rules for everything that reads them: the checker (an `image`
//! must not carry a tag), the runner (the version a container runs is its tag) and the fake
//! kubelet (a tag ending in `-bad` never pulls). `[registry[:port]/]path[:tag][@digest]`: the tag
//! is what follows the last `:` of the last path segment, so a registry port is never a tag.

/// An image reference, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRef<'a> {
    /// Registry and path, without tag or digest.
    pub repo: &'a str,
    pub tag: Option<&'a str>,
    /// `sha256:…`, after the `@`.
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    pub fn parse(image: &'a str) -> ImageRef<'a> {
        let (named, digest) = match image.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (image, None),
        };
        let last_slash = named.rfind('/').map_or(0, |i| i + 1);
        match named[last_slash..].rfind(':') {
            Some(colon) => ImageRef {
                repo: &named[..last_slash + colon],
                tag: Some(&named[last_slash + colon + 1..]),
                digest,
            },
            None => ImageRef {
                repo: named,
                tag: None,
                digest,
            },
        }
    }

    /// Does it pin anything (a tag or a digest)?
    pub fn is_pinned(&self) -> bool {
        self.tag.is_some() || self.digest.is_some()
    }
}

/// The tag of an image reference (`keeptrusts/api:1.5.0` → `1.5.0`), if any.
pub fn image_tag(image: &str) -> Option<&str> {
    ImageRef::parse(image).tag
}

/// The repository of an image reference, without tag or digest.
pub fn image_repo(image: &str) -> &str {
    ImageRef::parse(image).repo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_as_the_runtime_reads_them() {
        let r = |s| ImageRef::parse(s);
        assert_eq!(
            r("keeptrusts/api:1.5.0"),
            ImageRef {
                repo: "keeptrusts/api",
                tag: Some("1.5.0"),
                digest: None
            }
        );
        assert_eq!(r("keeptrusts/api").tag, None);
        // a registry port is not a tag
        assert_eq!(r("registry:5000/keeptrusts/api").tag, None);
        assert_eq!(
            r("registry:5000/keeptrusts/api").repo,
            "registry:5000/keeptrusts/api"
        );
        assert_eq!(r("registry:5000/api:1.0").tag, Some("1.0"));
        assert_eq!(r("registry:5000/api:1.0").repo, "registry:5000/api");
        let d = r("api:1.0@sha256:abc");
        assert_eq!(
            (d.repo, d.tag, d.digest),
            ("api", Some("1.0"), Some("sha256:abc"))
        );
        let d = r("api@sha256:abc");
        assert_eq!((d.repo, d.tag, d.digest), ("api", None, Some("sha256:abc")));
        assert!(d.is_pinned() && !r("api").is_pinned());
        assert_eq!(image_tag("ghcr.io/acme/gw:1.5.0-bad"), Some("1.5.0-bad"));
        assert_eq!(image_repo("ghcr.io/acme/gw:1.5.0"), "ghcr.io/acme/gw");
    }
}
