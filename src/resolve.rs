//! Resolving templates for one env: lets, `${component.field}` and secrets.
//!
//! Two modes: [`Mode::Display`] for plans, logs and journals (secrets are `(secret)`, values not
//! known before the run such as the idle colour are shown as `(idle colour)`), and
//! [`Mode::Real`] for the request actually sent (secrets read from the environment).

use std::collections::HashMap;

use crate::program::{
    Colour, Env, Field, Let, LetValue, Playbook, Template, TemplatePart, Workload,
};

/// How to show what is secret or not yet known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Display,
    Real,
}

/// What a template needs that the playbook alone does not say.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Live colour of each blue-green component, by component index.
    pub colours: HashMap<usize, Colour>,
    /// Secret values by environment variable name (Real mode).
    pub secrets: HashMap<String, String>,
}

/// A template could not be resolved for real.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("environment variable `{0}` is not set (it holds a secret the playbook reads with env(\"{0}\"))")]
    MissingSecret(String),
    #[error("the live colour of `{0}` is not known yet")]
    UnknownColour(String),
    #[error("`{0}` is not defined in this env")]
    UnknownLet(String),
    #[error("lets refer to each other in a cycle through `{0}`")]
    Cycle(String),
    #[error("{0}")]
    Unquotable(String),
}

/// Is the let `name`, as `env` sees it (env lets shadow playbook lets), a secret or built from
/// one? Shared by the checker (secrets in URLs) and everything that prints values.
pub(crate) fn is_secret(name: &str, lets: &[Let], env: Option<&Env>) -> bool {
    fn go(name: &str, lets: &[Let], env: Option<&Env>, depth: usize) -> bool {
        if depth > 32 {
            return false;
        }
        let found = env
            .and_then(|e| e.lets.iter().find(|l| l.name == name))
            .or_else(|| lets.iter().find(|l| l.name == name));
        match found.map(|l| &l.value) {
            Some(LetValue::Secret { .. }) => true,
            Some(LetValue::Text(t)) => t
                .parts
                .iter()
                .any(|p| matches!(p, TemplatePart::Let(n) if go(n, lets, env, depth + 1))),
            None => false,
        }
    }
    go(name, lets, env, 0)
}

/// A playbook seen from one env.
pub struct Scope<'a> {
    pub playbook: &'a Playbook,
    pub env: Option<&'a Env>,
    pub live: &'a Live,
}

impl<'a> Scope<'a> {
    pub fn new(playbook: &'a Playbook, env: Option<&'a Env>, live: &'a Live) -> Self {
        Scope {
            playbook,
            env,
            live,
        }
    }

    /// The let named `name` as this env sees it (env lets shadow playbook lets).
    pub fn find_let(&self, name: &str) -> Option<&'a LetValue> {
        self.env
            .and_then(|e| e.lets.iter().find(|l| l.name == name))
            .or_else(|| self.playbook.lets.iter().find(|l| l.name == name))
            .map(|l| &l.value)
    }

    /// Is the let a secret (or built from one)?
    pub fn is_secret(&self, name: &str) -> bool {
        is_secret(name, &self.playbook.lets, self.env)
    }

    /// The namespace this env runs in.
    pub fn namespace(&self) -> &'a str {
        self.env
            .and_then(|e| e.namespace.as_deref())
            .unwrap_or(&self.playbook.namespace)
    }

    /// Render a template.
    pub fn render(&self, t: &Template, mode: Mode) -> Result<String, ResolveError> {
        self.render_depth(t, mode, 0)
    }

    /// The value of a let by name.
    pub fn let_value(&self, name: &str, mode: Mode) -> Result<String, ResolveError> {
        self.let_depth(name, mode, 0)
    }

    fn let_depth(&self, name: &str, mode: Mode, depth: usize) -> Result<String, ResolveError> {
        if depth > 32 {
            return Err(ResolveError::Cycle(name.to_string()));
        }
        match self.find_let(name) {
            None => Err(ResolveError::UnknownLet(name.to_string())),
            Some(LetValue::Secret { var }) => match mode {
                Mode::Display => Ok("(secret)".into()),
                Mode::Real => self
                    .live
                    .secrets
                    .get(var)
                    .cloned()
                    .ok_or_else(|| ResolveError::MissingSecret(var.clone())),
            },
            Some(LetValue::Text(t)) => self.render_depth(t, mode, depth + 1),
        }
    }

    /// Render a PromQL query: a value that lands inside a PromQL string literal (`"…"`, `'…'`) is
    /// escaped for it (`\`, the quote, line breaks), so no value can end the string and change
    /// the query's structure; a value inside a raw `` `…` `` string may not hold a backtick (it
    /// cannot be escaped there). Values outside strings are placed as they are (a window, a
    /// number); `check` parses the query with each env's static values.
    pub fn render_promql(&self, t: &Template, mode: Mode) -> Result<String, ResolveError> {
        let mut out = String::new();
        // The PromQL string the text so far is inside, and whether its last char was a `\`.
        let mut quote: Option<char> = None;
        let mut escaped = false;
        for p in &t.parts {
            let value = match p {
                TemplatePart::Text(s) => {
                    for c in s.chars() {
                        match quote {
                            Some(_) if escaped => escaped = false,
                            Some(q) if c == q => quote = None,
                            Some('`') => {}
                            Some(_) if c == '\\' => escaped = true,
                            Some(_) => {}
                            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
                            None => {}
                        }
                    }
                    out.push_str(s);
                    continue;
                }
                TemplatePart::Let(name) => self.let_value(name, mode)?,
                TemplatePart::Field { comp, field } => self.field(*comp, *field, mode)?,
            };
            let name = || match p {
                TemplatePart::Let(n) => format!("`${{{n}}}`"),
                _ => "a field".into(),
            };
            match quote {
                // Outside a string a value is PromQL itself: one number, duration or name only.
                None if mode == Mode::Real
                    && !value.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '+' | '-')
                    }) =>
                {
                    return Err(ResolveError::Unquotable(format!(
                        "the value of {} stands outside a string of the query, where it would be PromQL itself, and it is not one number, duration or name; put it inside a string (`\"${{…}}\"`), where it is escaped",
                        name()
                    )));
                }
                None => out.push_str(&value),
                Some('`') => {
                    if value.contains('`') {
                        return Err(ResolveError::Unquotable(format!(
                            "the value of {} holds a backtick and stands inside a `…` string of the query, which cannot escape it; use a \"…\" string",
                            name()
                        )));
                    }
                    out.push_str(&value);
                }
                Some(q) => {
                    for c in value.chars() {
                        match c {
                            '\\' => out.push_str("\\\\"),
                            '\n' => out.push_str("\\n"),
                            '\r' => out.push_str("\\r"),
                            '\t' => out.push_str("\\t"),
                            c if c == q => {
                                out.push('\\');
                                out.push(c);
                            }
                            c => out.push(c),
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn render_depth(&self, t: &Template, mode: Mode, depth: usize) -> Result<String, ResolveError> {
        let mut out = String::new();
        for p in &t.parts {
            match p {
                TemplatePart::Text(s) => out.push_str(s),
                TemplatePart::Let(name) => out.push_str(&self.let_depth(name, mode, depth)?),
                TemplatePart::Field { comp, field } => {
                    out.push_str(&self.field(*comp, *field, mode)?)
                }
            }
        }
        Ok(out)
    }

    fn field(&self, comp: usize, field: Field, mode: Mode) -> Result<String, ResolveError> {
        let c = &self.playbook.components[comp];
        Ok(match field {
            Field::From => c.from.to_string(),
            Field::To => c.to.to_string(),
            Field::Image => c.image.clone(),
            Field::Name => c.name.clone(),
            Field::Idle | Field::Live => {
                let Workload::BlueGreen(_) = &c.workload else {
                    return Err(ResolveError::UnknownColour(c.name.clone()));
                };
                match self.live.colours.get(&comp) {
                    Some(live) => {
                        let colour = if field == Field::Live {
                            *live
                        } else {
                            live.other()
                        };
                        colour.as_str().to_string()
                    }
                    None if mode == Mode::Display => {
                        if field == Field::Live {
                            "(live colour)".into()
                        } else {
                            "(idle colour)".into()
                        }
                    }
                    None => return Err(ResolveError::UnknownColour(c.name.clone())),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::{GuardKind, Op};

    /// The metric guards' queries of a playbook with these lets, rendered for real.
    fn rendered(lets: &str, query: &str) -> Vec<Result<String, ResolveError>> {
        let text = format!(
            "playbook \"p\" {{\n  namespace \"n\"\n  component web {{ deployment \"web\" image \"web\" from 1.0.0 to 1.1.0 }}\n{lets}\n  let prom = \"http://127.0.0.1:9090\"\n  stage web {{\n    rolling web\n    guard metric \"${{prom}}\" query \"{query}\" below 1\n  }}\n}}\n"
        );
        let checked = crate::check::check_text("p.ktplay", &text);
        let pb = &checked.playbooks[0].1;
        let live = Live::default();
        let scope = Scope::new(pb, None, &live);
        pb.statements()
            .into_iter()
            .filter_map(|st| match &st.op {
                Op::Guard(g) => match &g.kind {
                    GuardKind::Metric(m) => Some(scope.render_promql(&m.query, Mode::Real)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn values_inside_promql_strings_are_escaped() {
        let r = rendered(
            r#"  let sel = "\"} or vector(0) or up{x=\"""#,
            r#"sum(rate(x{version=\"${sel}\",app='${sel}'}[1m]))"#,
        );
        assert_eq!(
            r[0].as_ref().unwrap(),
            r#"sum(rate(x{version="\"} or vector(0) or up{x=\"",app='"} or vector(0) or up{x="'}[1m]))"#
        );
        // It parses as one selector with two label values, as written.
        assert!(promql_parser::parser::parse(r[0].as_ref().unwrap()).is_ok());
        let r = rendered(r#"  let sel = "a\\b""#, r#"x{v=\"${sel}\"}"#);
        assert_eq!(r[0].as_ref().unwrap(), r#"x{v="a\\b"}"#);
    }

    #[test]
    fn values_outside_strings_are_one_token() {
        let r = rendered(r#"  let w = "5m""#, r#"sum(rate(x[${w}]))"#);
        assert_eq!(r[0].as_ref().unwrap(), "sum(rate(x[5m]))");
        let r = rendered(
            r#"  let w = "1m]) or vector(1) or rate(x[1m""#,
            r#"sum(rate(x[${w}]))"#,
        );
        let e = r[0].as_ref().unwrap_err().to_string();
        assert!(e.contains("`${w}` stands outside a string"), "{e}");
        let r = rendered(r#"  let w = "a`b""#, r#"x{v=`${w}`}"#);
        let e = r[0].as_ref().unwrap_err().to_string();
        assert!(e.contains("backtick"), "{e}");
    }
}
