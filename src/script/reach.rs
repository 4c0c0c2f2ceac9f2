//! Which hosts a hook may reach.
//!
//! A hook's `http_get`/`http_post` may reach the hosts its env names (the hosts of the env's and
//! the playbook's URL lets, of `--route` targets and of guard URLs written out in full) and the
//! hosts the playbook or the env lists in `allow_hosts`; any other request is refused before a
//! connection is made, so a hook cannot carry a secret header to a host nobody reviewed.

/// Is `p` an `allow_hosts` pattern: `host`, `host:port`, `*.domain`, an IPv4 address or `[v6]`,
/// optionally with a port?
pub fn valid_pattern(p: &str) -> bool {
    let (host, port) = split_port(p);
    if port.is_some_and(|pt| pt.is_empty() || pt.parse::<u16>().is_err()) {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `host` and `port` of `host[:port]` (an IPv6 host in brackets).
fn split_port(hp: &str) -> (&str, Option<&str>) {
    if hp.starts_with('[') {
        return match hp.find(']') {
            Some(i) if hp[i + 1..].starts_with(':') => (&hp[..=i], Some(&hp[i + 2..])),
            _ => (hp, None),
        };
    }
    match hp.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hp, None),
    }
}

/// `host[:port]` of an absolute `http(s)://` URL, lower case, without user info.
pub fn host_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let hp = &rest[..end];
    let hp = hp.rsplit_once('@').map_or(hp, |(_, h)| h);
    (!hp.is_empty()).then(|| hp.to_ascii_lowercase())
}

/// The hosts one run's hooks may reach.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    patterns: Vec<String>,
}

impl Reach {
    /// From URLs (their hosts are allowed) and `allow_hosts` patterns.
    pub fn new<'a>(
        urls: impl IntoIterator<Item = &'a str>,
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Reach {
        let mut p: Vec<String> = urls.into_iter().filter_map(host_of).collect();
        p.extend(patterns.into_iter().map(str::to_ascii_lowercase));
        p.sort();
        p.dedup();
        Reach { patterns: p }
    }

    /// `Ok` if the URL's host is allowed, else why not.
    pub fn check(&self, url: &str) -> Result<(), String> {
        let Some(hp) = host_of(url) else {
            return Err(format!("`{url}` is not an http:// or https:// URL"));
        };
        if self.patterns.iter().any(|p| matches(p, &hp)) {
            return Ok(());
        }
        Err(format!(
            "a hook may reach only the hosts its env names, and `{hp}` is not one of them; list it in the playbook or the env with `allow_hosts \"{hp}\"`"
        ))
    }
}

/// Does the pattern allow `hp` (`host[:port]`)? A pattern without a port allows any port.
fn matches(pattern: &str, hp: &str) -> bool {
    let (ph, pport) = split_port(pattern);
    let (h, port) = split_port(hp);
    if pport.is_some() && pport != port {
        return false;
    }
    match ph.strip_prefix("*.") {
        Some(domain) => {
            h.len() > domain.len() + 1
                && h.ends_with(domain)
                && h[..h.len() - domain.len()].ends_with('.')
        }
        None => ph == h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_matching() {
        for ok in [
            "a.example.com",
            "10.0.0.7:9090",
            "*.svc.cluster.local",
            "[::1]:80",
            "localhost",
        ] {
            assert!(valid_pattern(ok), "{ok}");
        }
        for bad in [
            "https://a.example.com",
            "a.example.com/x",
            "a:b",
            "",
            "*.",
            "a..b",
            "u@h",
        ] {
            assert!(!valid_pattern(bad), "{bad}");
        }
        let r = Reach::new(
            [
                "https://api.staging.example.com/v1",
                "http://127.0.0.1:4000",
            ],
            ["*.monitoring.svc", "metrics.example.com:9090"],
        );
        assert!(r.check("https://api.staging.example.com/readyz").is_ok());
        // A pattern without a port allows any port.
        assert!(r.check("https://API.staging.example.com:443/x").is_ok());
        assert!(r.check("http://127.0.0.1:4000/x").is_ok());
        assert!(r.check("http://127.0.0.1:4001/x").is_err());
        assert!(r.check("http://prom.monitoring.svc/q").is_ok());
        assert!(r.check("http://monitoring.svc/q").is_err());
        assert!(r.check("http://metrics.example.com:9090/").is_ok());
        assert!(r.check("http://metrics.example.com/").is_err());
        let e = r.check("https://evil.example.net/steal").unwrap_err();
        assert!(e.contains("allow_hosts \"evil.example.net\""), "{e}");
    }
}
