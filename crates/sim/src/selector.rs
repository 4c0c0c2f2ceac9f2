//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`) and field selectors
//! (`metadata.name`, `metadata.namespace`, plus a few pod fields), as the API server parses them.

use serde_json::{Map, Value};

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` or `key==value`.
    Eq(String, String),
    /// `key!=value` (also holds when the key is absent).
    NotEq(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)` (also holds when the key is absent).
    NotIn(String, Vec<String>),
    /// `key`: the label exists.
    Exists(String),
    /// `!key`: the label does not exist.
    NotExists(String),
}

/// A parsed label selector: every requirement must hold. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Split at commas that are not inside parentheses.
fn split_top(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unexpected `)` in selector `{s}`"));
                }
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unclosed `(` in selector `{s}`"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_set(key: &str, rest: &str, whole: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            format!("unable to parse requirement `{whole}`: expected `(` values `)` after `{key}`")
        })?;
    let values: Vec<String> = inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if let Some(bad) = values.iter().find(|v| !valid_value(v)) {
        return Err(format!("invalid label value: `{bad}`"));
    }
    Ok(values)
}

impl LabelSelector {
    /// Parse the `labelSelector` query parameter.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for part in split_top(s)? {
            let p = part.trim();
            if p.is_empty() {
                return Err(format!("unable to parse requirement: empty term in `{s}`"));
            }
            let req = if let Some(k) = p.strip_prefix('!') {
                let k = k.trim();
                if !valid_key(k) {
                    return Err(format!("invalid label key `{k}` in `{p}`"));
                }
                Requirement::NotExists(k.to_string())
            } else if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotEq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = p.split_once("==") {
                Requirement::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = p.split_once('=') {
                Requirement::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some(idx) = find_word(p, "notin") {
                let k = p[..idx].trim();
                Requirement::NotIn(k.to_string(), parse_set(k, &p[idx + 5..], p)?)
            } else if let Some(idx) = find_word(p, "in") {
                let k = p[..idx].trim();
                Requirement::In(k.to_string(), parse_set(k, &p[idx + 2..], p)?)
            } else {
                Requirement::Exists(p.to_string())
            };
            let (key, value) = match &req {
                Requirement::Eq(k, v) | Requirement::NotEq(k, v) => (k, Some(v)),
                Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::NotExists(k) => (k, None),
            };
            if !valid_key(key) {
                return Err(format!(
                    "unable to parse requirement `{p}`: invalid label key `{key}`"
                ));
            }
            if let Some(v) = value {
                if !valid_value(v) {
                    return Err(format!(
                        "unable to parse requirement `{p}`: invalid label value `{v}`"
                    ));
                }
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// A selector requiring exactly these labels (a Service's `spec.selector`).
    pub fn from_map(map: &Map<String, Value>) -> LabelSelector {
        LabelSelector(
            map.iter()
                .map(|(k, v)| Requirement::Eq(k.clone(), v.as_str().unwrap_or_default().into()))
                .collect(),
        )
    }

    /// A `metav1.LabelSelector` object (`matchLabels` and `matchExpressions`).
    pub fn from_object(sel: &Value) -> LabelSelector {
        let mut reqs = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            reqs.extend(LabelSelector::from_map(m).0);
        }
        for e in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => reqs.push(Requirement::In(key, values)),
                Some("NotIn") => reqs.push(Requirement::NotIn(key, values)),
                Some("Exists") => reqs.push(Requirement::Exists(key)),
                Some("DoesNotExist") => reqs.push(Requirement::NotExists(key)),
                _ => {}
            }
        }
        LabelSelector(reqs)
    }

    /// Does an object with these labels match?
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }

    /// Is this the empty selector?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| match r {
                Requirement::Eq(k, v) => format!("{k}={v}"),
                Requirement::NotEq(k, v) => format!("{k}!={v}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Requirement::Exists(k) => k.clone(),
                Requirement::NotExists(k) => format!("!{k}"),
            })
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

/// Find ` word ` (or `word(`) as a separate token after a key.
fn find_word(p: &str, word: &str) -> Option<usize> {
    let bytes = p.as_bytes();
    let mut from = 0;
    while let Some(i) = p[from..].find(word) {
        let at = from + i;
        let before_ok = at > 0 && bytes[at - 1].is_ascii_whitespace();
        let after = bytes.get(at + word.len());
        let after_ok = matches!(after, Some(b' ') | Some(b'(') | Some(b'\t'));
        if before_ok && after_ok {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// One field-selector term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    /// The field path, e.g. `metadata.name`.
    pub field: String,
    /// `true` for `=`/`==`, `false` for `!=`.
    pub equal: bool,
    /// The value compared against.
    pub value: String,
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldTerm>);

impl FieldSelector {
    /// Parse the `fieldSelector` parameter; `allowed` lists the supported fields of the resource.
    pub fn parse(s: &str, allowed: &[&str]) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector(terms));
        }
        for part in s.split(',') {
            let p = part.trim();
            let (field, equal, value) = if let Some((f, v)) = p.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = p.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = p.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: `{p}`; can't understand `{p}`: expected FIELD=VALUE or FIELD!=VALUE"
                ));
            };
            let field = field.trim();
            if !allowed.contains(&field) {
                // The real server's two wordings: resources with their own field labels
                // (pods, services, namespaces) convert them, the rest list the generic two.
                if allowed.len() > 2 {
                    return Err(format!("field label not supported: {field}"));
                }
                return Err(format!(
                    "\"{field}\" is not a known field selector: only {}",
                    allowed
                        .iter()
                        .map(|a| format!("\"{a}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            terms.push(FieldTerm {
                field: field.to_string(),
                equal,
                value: value.trim().to_string(),
            });
        }
        Ok(FieldSelector(terms))
    }

    /// Does the object match every term?
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|t| {
            let mut cur = obj;
            let mut found = true;
            for seg in t.field.split('.') {
                match cur.get(seg) {
                    Some(v) => cur = v,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            let actual = if found {
                match cur {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                }
            } else {
                String::new()
            };
            (actual == t.value) == t.equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn label_selectors() {
        let l = labels(json!({"app": "gw", "track": "canary"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&l));
        assert!(m("app=gw"));
        assert!(m("app==gw,track"));
        assert!(!m("app!=gw"));
        assert!(m("app in (gw, api)"));
        assert!(!m("app notin (gw,api)"));
        assert!(m("!colour"));
        assert!(!m("!track"));
        assert!(m("track in (canary),app"));
        assert!(m(""));
        assert!(LabelSelector::parse("app in gw").is_err());
        assert!(LabelSelector::parse("app in (gw").is_err());
        assert!(LabelSelector::parse("a=b,,c").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
        assert!(LabelSelector::parse("=x").is_err());
        assert_eq!(
            LabelSelector::parse("a=b,c notin (d,e),!f")
                .unwrap()
                .to_string(),
            "a=b,c notin (d,e),!f"
        );
    }

    #[test]
    fn field_selectors() {
        let obj = json!({"metadata": {"name": "x", "namespace": "ns"}});
        let allowed = ["metadata.name", "metadata.namespace"];
        let m = |s: &str| FieldSelector::parse(s, &allowed).unwrap().matches(&obj);
        assert!(m("metadata.name=x"));
        assert!(m("metadata.name==x,metadata.namespace=ns"));
        assert!(!m("metadata.name!=x"));
        assert_eq!(
            FieldSelector::parse("spec.foo=1", &allowed).unwrap_err(),
            "\"spec.foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        let pods = ["metadata.name", "metadata.namespace", "status.phase"];
        assert_eq!(
            FieldSelector::parse("spec.foo=1", &pods).unwrap_err(),
            "field label not supported: spec.foo"
        );
        assert!(FieldSelector::parse("metadata.name", &allowed).is_err());
    }
}
