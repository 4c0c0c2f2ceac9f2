//! Checks across declarations, after every env and let is lowered: `after` (unknown envs,
//! cycles), `serves`, URL lets, and lets used where they are not declared.

use foldhash::{HashMap, HashMapExt};

use crate::check::errors::CheckError;
use crate::check::names::did_you_mean;
use crate::program::*;
use crate::span::Span;
use crate::syntax::ast;

use super::{Lowerer, Purpose};

impl Lowerer<'_> {
    /// Unknown envs in `after`, and cycles.
    pub(super) fn check_after(&mut self, envs: &[Env], decls: &[&ast::EnvDecl]) {
        let names: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
        let mut edges: Vec<Vec<(usize, Span)>> = vec![Vec::new(); envs.len()];
        for (i, d) in decls.iter().enumerate() {
            for entry in &d.entries {
                if let ast::EnvEntry::After(list) = &entry.node {
                    for a in list {
                        match names.iter().position(|n| *n == a.node) {
                            Some(j) => edges[i].push((j, a.span)),
                            None => self.error(CheckError::UnknownEnv {
                                name: a.node.clone(),
                                span: a.span.into(),
                                help: did_you_mean(&a.node, names.iter().copied()).or_else(|| {
                                    Some(if names.is_empty() {
                                        "declare envs with `env NAME { … }`".into()
                                    } else {
                                        format!("envs of this playbook: {}", names.join(", "))
                                    })
                                }),
                            }),
                        }
                    }
                }
            }
        }
        // Depth-first search for a cycle; report each cycle once, at the edge that closes it.
        let mut state = vec![0u8; envs.len()]; // 0 new, 1 on stack, 2 done
        let mut stack: Vec<usize> = Vec::new();
        fn dfs(
            i: usize,
            edges: &[Vec<(usize, Span)>],
            state: &mut [u8],
            stack: &mut Vec<usize>,
            found: &mut Vec<(Vec<usize>, Span)>,
        ) {
            state[i] = 1;
            stack.push(i);
            for &(j, span) in &edges[i] {
                if state[j] == 1 {
                    let from = stack.iter().position(|&k| k == j).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(j);
                    found.push((cycle, span));
                } else if state[j] == 0 {
                    dfs(j, edges, state, stack, found);
                }
            }
            stack.pop();
            state[i] = 2;
        }
        let mut found = Vec::new();
        for i in 0..envs.len() {
            if state[i] == 0 {
                dfs(i, &edges, &mut state, &mut stack, &mut found);
            }
        }
        for (cycle, span) in found {
            let chain = cycle
                .iter()
                .map(|&k| names[k])
                .collect::<Vec<_>>()
                .join(" after ");
            self.error(CheckError::AfterCycle {
                chain,
                span: span.into(),
            });
        }
    }

    /// `serves NAME` must name a let of the playbook or of one of its envs, and no let is served
    /// by two components (a rehearsal could route it to only one).
    pub(super) fn check_serves(&mut self, lets: &[Let], envs: &[Env]) {
        let mut candidates: Vec<&str> = lets.iter().map(|l| l.name.as_str()).collect();
        for e in envs {
            candidates.extend(e.lets.iter().map(|l| l.name.as_str()));
        }
        let mut first_by: HashMap<String, Span> = HashMap::new();
        let mut problems = Vec::new();
        for c in &self.components {
            for s in &c.serves {
                if !candidates.contains(&s.node.as_str()) {
                    problems.push(CheckError::UnknownLet {
                        name: s.node.clone(),
                        context: format!(" (named by `serves` in component `{}`)", c.name),
                        span: s.span.into(),
                        help: did_you_mean(&s.node, candidates.iter().copied()).or_else(|| {
                            Some("`serves` names a let whose URLs the component serves, like `serves shop_url` for `let shop_url = \"https://…\"`".into())
                        }),
                    });
                    continue;
                }
                match first_by.get(&s.node) {
                    Some(first) => problems.push(CheckError::Duplicate {
                        what: "`serves` of the let",
                        name: s.node.clone(),
                        span: s.span.into(),
                        first: (*first).into(),
                    }),
                    None => {
                        first_by.insert(s.node.clone(), s.span);
                    }
                }
            }
        }
        for p in problems {
            self.error(p);
        }
    }

    /// A let a URL starts with must hold a URL with a scheme in every env (else the request
    /// goes nowhere sensible and the run fails with a message about something else).
    pub(super) fn check_url_lets(&mut self, lets: &[Let], envs: &[Env]) {
        let starts = std::mem::take(&mut self.url_lets);
        let scopes: Vec<Option<&Env>> = if envs.is_empty() {
            vec![None]
        } else {
            envs.iter().map(Some).collect()
        };
        let mut problems = Vec::new();
        for (name, span) in &starts {
            for env in &scopes {
                let found = env
                    .and_then(|e| e.lets.iter().find(|l| &l.name == name))
                    .or_else(|| lets.iter().find(|l| &l.name == name));
                let Some(Let {
                    value: LetValue::Text(t),
                    ..
                }) = found
                else {
                    continue; // undefined (reported) or read from env() at run time
                };
                let start = match t.parts.first() {
                    Some(TemplatePart::Text(t)) => t.as_str(),
                    None => "",
                    Some(_) => continue, // starts with another interpolation
                };
                let lower = start.to_ascii_lowercase();
                if lower.starts_with("http://") || lower.starts_with("https://") {
                    continue;
                }
                let shown: String = start.chars().take(60).collect();
                let place = env.map_or(String::new(), |e| format!(" in env {}", e.name));
                problems.push(CheckError::InvalidValue {
                    what: "URL",
                    value: format!("${{{name}}}"),
                    span: (*span).into(),
                    help: format!(
                        "`{name}` is \"{shown}\"{place}: a URL starts with `http://` or `https://` (write `let {name} = \"https://{shown}\"`)"
                    ),
                });
                break;
            }
        }
        for p in problems {
            self.error(p);
        }
    }

    /// Every `${let}` must be defined in each env that can run the playbook (or in the playbook
    /// when there are no envs); secrets may not reach URLs.
    pub(crate) fn check_let_uses(&mut self, lets: &[Let], envs: &[Env]) {
        let uses = std::mem::take(&mut self.let_uses);
        let scopes: Vec<Option<usize>> = if envs.is_empty() {
            vec![None]
        } else {
            (0..envs.len()).map(Some).collect()
        };
        let mut reported: Vec<(Span, String)> = Vec::new();
        for u in &uses {
            let relevant: Vec<Option<usize>> = match u.env {
                Some(e) => vec![Some(e)],
                None => scopes.clone(),
            };
            let mut missing_in = Vec::new();
            let mut secret = false;
            for scope in &relevant {
                let found = scope
                    .and_then(|e| envs[e].lets.iter().find(|l| l.name == u.name))
                    .or_else(|| lets.iter().find(|l| l.name == u.name));
                match found {
                    None => missing_in.push(*scope),
                    Some(l) => {
                        if crate::resolve::is_secret(&l.name, lets, scope.map(|e| &envs[e])) {
                            secret = true;
                        }
                    }
                }
            }
            if !missing_in.is_empty() && !reported.contains(&(u.span, u.name.clone())) {
                reported.push((u.span, u.name.clone()));
                let context = if missing_in.iter().all(Option::is_none) || envs.is_empty() {
                    String::new()
                } else {
                    let names: Vec<&str> = missing_in
                        .iter()
                        .flatten()
                        .map(|&e| envs[e].name.as_str())
                        .collect();
                    format!(" in env {}", names.join(", "))
                };
                let mut candidates: Vec<&str> = lets.iter().map(|l| l.name.as_str()).collect();
                for e in envs {
                    candidates.extend(e.lets.iter().map(|l| l.name.as_str()));
                }
                let help = did_you_mean(&u.name, candidates.iter().copied()).or_else(|| {
                    Some(if envs.is_empty() {
                        format!("add `let {} = \"…\"` to the playbook", u.name)
                    } else {
                        format!(
                            "add `let {} = \"…\"` to the playbook or to every env",
                            u.name
                        )
                    })
                });
                self.error(CheckError::UnknownLet {
                    name: u.name.clone(),
                    context,
                    span: u.span.into(),
                    help,
                });
            }
            if secret && u.purpose == Purpose::Url {
                self.error(CheckError::SecretInUrl {
                    name: u.name.clone(),
                    span: u.span.into(),
                });
            }
        }
    }
}
