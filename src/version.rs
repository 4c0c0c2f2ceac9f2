//! Versions, version patterns and ranges as the language writes them.
//!
//! A *version* is full semver (`1.5.0`, `1.5.0-rc.1`). A *pattern* names a whole major or minor
//! (`1.x`, `1.5.x`) or one exact version. A *range* `A - B` is inclusive of whole minors at both
//! ends: `1.4.x - 1.5.x` holds every 1.4 and 1.5 version, pre-releases included.
//!
//! Pre-releases are handled on purpose, not by `semver::VersionReq`'s rules (which hide them
//! unless the requirement names the same triple): a pre-release belongs to the minor it is
//! written under, so `1.5.0-rc.1` is a 1.5.x version. An exact bound compares by semver precedence
//! (`1.5.0-rc.1 < 1.5.0`).

use std::cmp::Ordering;
use std::fmt;

pub use semver::Version;

/// `1.x`, `1.5.x` or an exact version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionPattern {
    /// `1.x`: every version of one major.
    Major(u64),
    /// `1.5.x`: every version of one minor.
    Minor(u64, u64),
    /// `1.5.0`: exactly that version.
    Exact(Version),
}

impl VersionPattern {
    /// Does `v` belong to this pattern?
    pub fn matches(&self, v: &Version) -> bool {
        match self {
            VersionPattern::Major(m) => v.major == *m,
            VersionPattern::Minor(m, n) => v.major == *m && v.minor == *n,
            VersionPattern::Exact(e) => e == v,
        }
    }

    /// Where `v` stands relative to the whole pattern: `Less` below every version of it,
    /// `Equal` inside, `Greater` above.
    pub fn compare(&self, v: &Version) -> Ordering {
        match self {
            VersionPattern::Major(m) => v.major.cmp(m),
            VersionPattern::Minor(m, n) => (v.major, v.minor).cmp(&(*m, *n)),
            VersionPattern::Exact(e) => v.cmp_precedence(e),
        }
    }

    /// The lowest version the pattern holds (`1.5.x` → `1.5.0`; pre-releases aside).
    pub fn lowest(&self) -> Version {
        lowest(self)
    }

    /// Parse `1.x`, `1.5.x` or a semver version. `1.5` alone is refused on purpose.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.splitn(3, '.').collect();
        let num = |s: &str| -> Result<u64, String> {
            s.parse::<u64>()
                .map_err(|_| format!("`{s}` is not a version number"))
        };
        match parts.as_slice() {
            [major, "x"] => Ok(VersionPattern::Major(num(major)?)),
            [major, minor, "x"] => Ok(VersionPattern::Minor(num(major)?, num(minor)?)),
            [_, _] => Err(format!(
                "`{text}` is not a version: write `{text}.x` for the whole minor or `{text}.0` for one version"
            )),
            _ => Version::parse(text)
                .map(VersionPattern::Exact)
                .map_err(|e| format!("`{text}` is not a semantic version: {e}")),
        }
    }
}

impl fmt::Display for VersionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionPattern::Major(m) => write!(f, "{m}.x"),
            VersionPattern::Minor(m, n) => write!(f, "{m}.{n}.x"),
            VersionPattern::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// `A - B`, inclusive at both ends; a single pattern `A` is the range `A - A`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionRange {
    pub low: VersionPattern,
    pub high: VersionPattern,
}

impl VersionRange {
    /// A range holding exactly the versions of one pattern.
    pub fn single(p: VersionPattern) -> Self {
        VersionRange {
            low: p.clone(),
            high: p,
        }
    }

    /// Is `v` inside the range?
    pub fn contains(&self, v: &Version) -> bool {
        self.low.compare(v) != Ordering::Less && self.high.compare(v) != Ordering::Greater
    }

    /// Is the range empty because its low end lies above its high end?
    pub fn is_inverted(&self) -> bool {
        // Inverted when the high pattern lies wholly below the first version of the low one.
        self.high.compare(&lowest(&self.low)) == Ordering::Greater
    }
}

fn lowest(p: &VersionPattern) -> Version {
    match p {
        VersionPattern::Major(m) => Version::new(*m, 0, 0),
        VersionPattern::Minor(m, n) => Version::new(*m, *n, 0),
        VersionPattern::Exact(v) => v.clone(),
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{} - {}", self.low, self.high)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn patterns_match_their_minor_including_prereleases() {
        let p = VersionPattern::parse("1.5.x").unwrap();
        assert!(p.matches(&v("1.5.0")));
        assert!(p.matches(&v("1.5.0-rc.1")));
        assert!(!p.matches(&v("1.4.9")));
        assert!(!p.matches(&v("2.5.0")));
        let m = VersionPattern::parse("1.x").unwrap();
        assert!(m.matches(&v("1.0.3")) && !m.matches(&v("2.0.0")));
    }

    #[test]
    fn bare_minor_is_not_a_version() {
        let err = VersionPattern::parse("1.5").unwrap_err();
        assert!(err.contains("1.5.x"), "{err}");
        assert!(VersionPattern::parse("1.5.0.1").is_err());
    }

    #[test]
    fn ranges_are_inclusive_of_whole_minors() {
        let r = VersionRange {
            low: VersionPattern::parse("1.4.x").unwrap(),
            high: VersionPattern::parse("1.5.x").unwrap(),
        };
        assert!(r.contains(&v("1.4.0")));
        assert!(r.contains(&v("1.5.99")));
        assert!(r.contains(&v("1.5.0-rc.1")));
        assert!(!r.contains(&v("1.3.9")));
        assert!(!r.contains(&v("1.6.0")));
        assert!(!r.is_inverted());
        let bad = VersionRange {
            low: VersionPattern::parse("1.5.x").unwrap(),
            high: VersionPattern::parse("1.4.x").unwrap(),
        };
        assert!(bad.is_inverted());
    }

    #[test]
    fn exact_bounds_use_semver_precedence() {
        let r = VersionRange {
            low: VersionPattern::parse("1.4.2").unwrap(),
            high: VersionPattern::parse("1.5.0").unwrap(),
        };
        assert!(r.contains(&v("1.5.0-rc.1")));
        assert!(!r.contains(&v("1.4.1")));
        assert!(!r.contains(&v("1.5.1")));
        assert!(!r.is_inverted());
        let one = |lo: &str, hi: &str| VersionRange {
            low: VersionPattern::parse(lo).unwrap(),
            high: VersionPattern::parse(hi).unwrap(),
        };
        assert!(one("1.5.1", "1.5.0").is_inverted());
        assert!(!one("1.5.x", "1.5.0").is_inverted());
        assert!(!one("1.5.0", "1.5.x").is_inverted());
        assert!(one("2.x", "1.9.x").is_inverted());
    }
}
