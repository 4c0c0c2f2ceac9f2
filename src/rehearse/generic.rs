//! Generic rehearsal: what the simulator's generic services (`ktplay_sim::generic`) must answer
//! for the components it has no model for, computed from the playbook.
//!
//! For each such component: every `guard http` whose URL the routing rule (see
//! [`crate::rehearse::let_routes`]) gives to it becomes a route — its method and path, its
//! expected status (any 2xx: 200), and a body that holds every `expect body contains` text (one
//! per line; without any, the simulator's JSON `{"status": "ok", "component", "version"}`).
//! Every `guard logs` on it becomes one log line, generated from the pattern and checked to
//! match it. The matrix becomes the state predicate: a state any hub version of which the
//! matrix forbids answers 503.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::matrix::{Matrix, StateFinding};
use crate::program::{Colour, Env, Field, GuardKind, Op, Playbook, TemplatePart};
use crate::resolve::{Live, Mode, Scope};
use crate::sim::{Generic, GenericRoute, GenericSpec, StateFn};
use crate::version::Version;

/// A line `pattern` matches, made deterministically and checked against the pattern: first the
/// shortest choice everywhere (the fewest repetitions, the first alternative, a letter or digit
/// from a class), then with one more repetition where none is needed and a space or punctuation
/// preferred (which word boundaries may need). `Err` says why none could be made.
pub(crate) fn sample_line(pattern: &str) -> Result<String, String> {
    let hir = regex_syntax::Parser::new()
        .parse(pattern)
        .map_err(|e| format!("`{pattern}` is not a valid regex: {e}"))?;
    let re = regex::Regex::new(pattern).map_err(|e| format!("`{pattern}`: {e}"))?;
    let mut tried = Vec::new();
    for (one_more, spaced) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut out = String::new();
        generate(&hir, &mut out, Strategy { one_more, spaced });
        if re.is_match(&out) && !out.contains('\n') {
            return Ok(out);
        }
        let shown = format!("\"{}\"", out.escape_debug());
        if !tried.contains(&shown) {
            tried.push(shown);
        }
    }
    Err(format!(
        "no log line could be generated for `{pattern}` (tried {})",
        tried.join(", ")
    ))
}

#[derive(Clone, Copy)]
struct Strategy {
    /// One repetition where none is needed (`x*`, `x?`).
    one_more: bool,
    /// Prefer a space or punctuation to a letter in classes.
    spaced: bool,
}

fn generate(h: &Hir, out: &mut String, s: Strategy) {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(l) => out.push_str(&String::from_utf8_lossy(&l.0)),
        HirKind::Class(Class::Unicode(c)) => {
            let ranges: Vec<(char, char)> =
                c.ranges().iter().map(|r| (r.start(), r.end())).collect();
            out.push(pick(&ranges, s.spaced));
        }
        HirKind::Class(Class::Bytes(c)) => {
            let ranges: Vec<(char, char)> = c
                .ranges()
                .iter()
                .filter(|r| r.start() < 0x80)
                .map(|r| (char::from(r.start()), char::from(r.end().min(0x7f))))
                .collect();
            out.push(pick(&ranges, s.spaced));
        }
        HirKind::Repetition(r) => {
            let n = if r.min == 0 && s.one_more && r.max != Some(0) {
                1
            } else {
                r.min.min(64)
            };
            for _ in 0..n {
                generate(&r.sub, out, s);
            }
        }
        HirKind::Capture(c) => generate(&c.sub, out, s),
        HirKind::Concat(hs) => hs.iter().for_each(|h| generate(h, out, s)),
        HirKind::Alternation(hs) => {
            if let Some(first) = hs.first() {
                generate(first, out, s);
            }
        }
    }
}

/// A readable character of a class: a lowercase letter, a digit, an uppercase letter, then
/// punctuation or a space (those first when `spaced`), else the class's first character that
/// is not a control character.
fn pick(ranges: &[(char, char)], spaced: bool) -> char {
    let has = |c: char| ranges.iter().any(|(a, b)| *a <= c && c <= *b);
    let order = if spaced {
        " _-.:/=,abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    } else {
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ _-.:/=,"
    };
    order
        .chars()
        .find(|c| has(*c))
        .or_else(|| {
            ranges
                .iter()
                .find_map(|(a, b)| (*a..=*b).find(|c| *c != '\n' && *c != '\r' && !c.is_control()))
        })
        .unwrap_or('x')
}

/// Every guard of the playbook (stages, canary and blue-green guards, rollback blocks).
fn guards(pb: &Playbook) -> Vec<&crate::program::Guard> {
    pb.statements()
        .into_iter()
        .filter_map(|st| match &st.op {
            Op::Guard(g) => Some(g),
            _ => None,
        })
        .collect()
}

/// `(path, query-less)` of a URL: `/` when it has none.
fn path_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let start = rest.find('/').unwrap_or(rest.len());
    let path = &rest[start..];
    let end = path.find(['?', '#']).unwrap_or(path.len());
    Some(if end == 0 {
        "/".into()
    } else {
        path[..end].to_string()
    })
}

/// The generic services of a playbook for one env, and notes on what they cannot do.
pub(crate) fn generic_for(
    pb: &Playbook,
    env: Option<&Env>,
    secrets: &HashMap<String, String>,
    matrix: Option<&Matrix>,
) -> (Generic, Vec<String>) {
    let mut notes = Vec::new();
    let (routes, _) = crate::rehearse::let_routes(pb, env, secrets);
    let mut specs: Vec<GenericSpec> = pb
        .components
        .iter()
        .filter(|c| !crate::sim::generic::is_modelled(&c.name))
        .map(|c| GenericSpec {
            component: c.name.clone(),
            ..GenericSpec::default()
        })
        .collect();
    // A monitor's probe is answered as an http guard asking the same is.
    let probes: Vec<crate::program::Guard> = pb
        .monitors_for(env.map(|e| e.name.as_str()))
        .into_iter()
        .map(|m| crate::program::Guard {
            kind: GuardKind::Http(m.probe.clone()),
            within: None,
        })
        .collect();
    for g in guards(pb).into_iter().chain(probes.iter()) {
        match &g.kind {
            GuardKind::Http(h) => {
                // Render with every colour the URL names, as the routes were made.
                let colour_comp = h.url.parts.iter().find_map(|p| match p {
                    TemplatePart::Field {
                        comp,
                        field: Field::Idle | Field::Live,
                    } => Some(*comp),
                    _ => None,
                });
                let mut urls = BTreeSet::new();
                for col in [Colour::Blue, Colour::Green] {
                    let mut live = Live {
                        colours: HashMap::new(),
                        secrets: secrets.clone(),
                    };
                    for (i, c) in pb.components.iter().enumerate() {
                        if c.is_blue_green() {
                            live.colours.insert(i, Colour::Blue);
                        }
                    }
                    if let Some(ci) = colour_comp {
                        live.colours.insert(ci, col);
                    }
                    if let Ok(u) = Scope::new(pb, env, &live).render(&h.url, Mode::Real) {
                        urls.insert(u);
                    }
                }
                let plain = Live {
                    colours: HashMap::new(),
                    secrets: secrets.clone(),
                };
                let scope = Scope::new(pb, env, &plain);
                let mut body_lines = Vec::new();
                for t in &h.expect_contains {
                    match scope.render(t, Mode::Real) {
                        Ok(s) => body_lines.push(s),
                        Err(e) => notes.push(format!("`expect body contains`: {e}")),
                    }
                }
                for url in urls {
                    let Some(host) = crate::rehearse::host_of(&url) else {
                        continue;
                    };
                    let Some(route) = routes.iter().find(|r| r.host == host) else {
                        continue;
                    };
                    let cname = &pb.components[route.comp].name;
                    let Some(spec) = specs.iter_mut().find(|s| &s.component == cname) else {
                        continue;
                    };
                    let Some(path) = path_of(&url) else { continue };
                    let status = h.expect_status.unwrap_or(200);
                    if let Some(prev) = spec
                        .routes
                        .iter()
                        .find(|r| r.method == h.method && r.path == path)
                    {
                        if prev.status != status {
                            notes.push(format!(
                                "{cname}: two guards ask {} {path} and expect {} and {status}: the rehearsal answers {} (as the first expects)",
                                h.method, prev.status, prev.status
                            ));
                        }
                        continue;
                    }
                    if h.check.is_some() {
                        notes.push(format!(
                            "{cname}: the `check rhai` of {} {path} sees the generic answer ({})",
                            h.method,
                            if body_lines.is_empty() {
                                "JSON {\"status\": \"ok\", \"component\", \"version\"}"
                            } else {
                                "the texts it expects, one per line"
                            }
                        ));
                    }
                    spec.routes.push(GenericRoute {
                        method: h.method.clone(),
                        path,
                        status,
                        body: (!body_lines.is_empty()).then(|| body_lines.join("\n") + "\n"),
                        content_type: "text/plain; charset=utf-8".into(),
                    });
                }
            }
            GuardKind::Logs { comp, pattern } => {
                let cname = &pb.components[*comp].name;
                let Some(spec) = specs.iter_mut().find(|s| &s.component == cname) else {
                    continue;
                };
                match sample_line(pattern) {
                    Ok(line) => {
                        if !spec.log_lines.contains(&line) {
                            spec.log_lines.push(line);
                        }
                    }
                    Err(e) => notes.push(format!("{cname}: {e}; its log guard cannot pass")),
                }
            }
            _ => {}
        }
    }
    let allowed = matrix.map(|m| state_fn(pb, m));
    (
        Generic {
            components: specs,
            allowed,
        },
        notes,
    )
}

/// The matrix as the simulator's state predicate (components take part under their roles).
fn state_fn(pb: &Playbook, m: &Matrix) -> StateFn {
    let m = m.clone();
    let roles: BTreeMap<String, String> = pb
        .components
        .iter()
        .map(|c| (c.name.clone(), c.role.clone()))
        .collect();
    Arc::new(move |pairs: &[(String, Version)]| {
        let mut state: crate::matrix::State = BTreeMap::new();
        for (c, v) in pairs {
            state.entry(c.clone()).or_default().insert(v.clone());
        }
        match m
            .check_state(&state, &roles)
            .into_iter()
            .find(StateFinding::is_error)
        {
            None => Ok(()),
            Some(StateFinding::Incompatible {
                hub,
                hub_version,
                peer,
                peer_version,
                row,
                allowed,
            }) => Err(format!(
                "matrix `{}` does not allow {peer} {peer_version} beside {hub} {hub_version} ({} allows {})",
                m.name,
                m.describe_row(row),
                Matrix::describe_allowed(roles.get(&peer).unwrap_or(&peer), &allowed)
            )),
            Some(StateFinding::NoRow { hub, version }) => Err(format!(
                "no row of matrix `{}` covers {hub} {version}",
                m.name
            )),
            Some(StateFinding::Eol { .. }) => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_lines_match_their_patterns() {
        for p in [
            "migrations? (applied|complete)",
            r"^migration \d{4}_[a-z_]+ applied$",
            r"(?i)listening on :\d+",
            r"worker [A-Z]\w* ready",
            r"\bmailer\b.*started",
            r"ok|fine",
            r"[^\s]+ done",
        ] {
            let line = sample_line(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(regex::Regex::new(p).unwrap().is_match(&line), "{p}: {line}");
        }
        assert_eq!(
            sample_line(r"^migration \d{4}_[a-z_]+ applied$").unwrap(),
            "migration 0000_a applied"
        );
    }

    #[test]
    fn an_impossible_pattern_is_an_error_not_a_wrong_line() {
        let e = sample_line(r"a\bb").unwrap_err();
        assert!(e.contains("no log line could be generated"), "{e}");
        let e = sample_line("(").unwrap_err();
        assert!(e.contains("not a valid regex"), "{e}");
    }

    /// The shop system of `tests/cases/test/shop.ktplay`: what each component must answer and
    /// log, and the matrix as the state predicate.
    #[test]
    fn the_shop_playbook_becomes_routes_log_lines_and_a_state_predicate() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/test/shop.ktplay"),
        )
        .unwrap();
        let checked = crate::check::check_text("shop.ktplay", &text);
        let pb = &checked.playbooks[0].1;
        let matrix = checked.scopes.iter().find_map(|s| s.get("shop"));
        let (g, notes) = generic_for(pb, None, &HashMap::new(), matrix);
        let spec = |c: &str| g.spec(c).unwrap();
        let route = |c: &str, path: &str| {
            spec(c)
                .routes
                .iter()
                .find(|r| r.path == path)
                .unwrap_or_else(|| panic!("{c} {path}: {:?}", spec(c).routes))
                .clone()
        };
        let health = route("backend", "/healthz");
        assert_eq!(
            (
                health.method.as_str(),
                health.status,
                health.body.as_deref()
            ),
            ("GET", 200, Some("\"db\":\"ok\"\n"))
        );
        assert_eq!(
            route("frontend", "/").body.as_deref(),
            Some("<title>Shop</title>\n")
        );
        assert_eq!(route("frontend", "/cart").body, None, "the default JSON");
        // `serves ops_url`: the mailer's, though neither the let's name nor the host says so.
        assert_eq!(route("mailer", "/mailer/status").status, 200);
        assert_eq!(spec("backend").log_lines, ["migration 0000_a applied"]);
        assert_eq!(spec("mailer").log_lines, ["mailer started, queue a"]);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("check rhai") && n.contains("/mailer/status")),
            "{notes:?}"
        );
        let allowed = g.allowed.expect("the playbook names a matrix");
        let v = |s: &str| Version::parse(s).unwrap();
        let state = |pairs: &[(&str, &str)]| -> Vec<(String, Version)> {
            pairs.iter().map(|(c, x)| (c.to_string(), v(x))).collect()
        };
        assert_eq!(
            allowed(&state(&[
                ("backend", "2.4.0"),
                ("frontend", "3.1.0"),
                ("mailer", "1.2.0")
            ])),
            Ok(())
        );
        let why = allowed(&state(&[("backend", "2.3.0"), ("frontend", "3.1.0")])).unwrap_err();
        assert!(
            why.contains("frontend 3.1.0 beside backend 2.3.0") && why.contains("2.3.x"),
            "{why}"
        );
        let why = allowed(&state(&[("backend", "2.5.0")])).unwrap_err();
        assert!(
            why.contains("no row of matrix `shop` covers backend 2.5.0"),
            "{why}"
        );
    }

    #[test]
    fn path_of_drops_the_query() {
        assert_eq!(path_of("http://h/a/b?x=1").as_deref(), Some("/a/b"));
        assert_eq!(path_of("https://h").as_deref(), Some("/"));
        assert_eq!(path_of("https://h?x").as_deref(), Some("/"));
        assert_eq!(path_of("ftp://h"), None);
    }
}
