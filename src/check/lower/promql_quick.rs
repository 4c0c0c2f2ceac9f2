//! A quick PromQL check for the common, well-formed query: `Some(type)` when the query is
//! certainly valid PromQL of that type, `None` when it may not be (or uses a form this check does
//! not know) — then `promql-parser` decides, and gives the error message.
//!
//! It exists for speed alone: `promql-parser` (an LR parser built at run time, plus a compiled
//! regex per `=~` matcher) costs about 1 M instructions a query, half of a one-file `check`. This
//! reads the same subset the shipped playbooks use — selectors, ranges, calls, aggregations,
//! binary operators with `bool`/`on`/`ignoring` — and declines everything else: unary operators,
//! `offset`, `@`, subqueries, `group_left`/`group_right`, keywords used as names, unusual numbers,
//! escapes and durations. It never reports an error, so a mistake here can only cost time, except
//! by accepting what Prometheus refuses: the property tests below compare it with `promql-parser`
//! on generated and mutated queries to rule that out.

/// The type of a PromQL expression, as `promql-parser` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Type {
    Scalar,
    Vector,
    Matrix,
    Str,
}

/// The query's type if it is certainly valid, else `None`.
pub(super) fn value_type(text: &str) -> Option<Type> {
    let mut p = Quick {
        s: text.as_bytes(),
        i: 0,
    };
    let t = p.expr(0)?;
    p.ws();
    (p.i == p.s.len()).then_some(t)
}

struct Quick<'a> {
    s: &'a [u8],
    i: usize,
}

/// Words the PromQL lexer reads as keywords (or numbers): never taken as a name here.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "atan2",
    "bool",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "start",
    "end",
    "step",
    "range",
    "smoothed",
    "anchored",
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
    "inf",
    "nan",
];

fn keyword(w: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(w))
}

/// Functions this check knows: (name, argument types, optional trailing arguments, result).
const FUNCTIONS: &[(&str, &[Type], usize, Type)] = {
    use Type::*;
    &[
        ("rate", &[Matrix], 0, Vector),
        ("irate", &[Matrix], 0, Vector),
        ("increase", &[Matrix], 0, Vector),
        ("delta", &[Matrix], 0, Vector),
        ("idelta", &[Matrix], 0, Vector),
        ("deriv", &[Matrix], 0, Vector),
        ("changes", &[Matrix], 0, Vector),
        ("resets", &[Matrix], 0, Vector),
        ("avg_over_time", &[Matrix], 0, Vector),
        ("min_over_time", &[Matrix], 0, Vector),
        ("max_over_time", &[Matrix], 0, Vector),
        ("sum_over_time", &[Matrix], 0, Vector),
        ("count_over_time", &[Matrix], 0, Vector),
        ("last_over_time", &[Matrix], 0, Vector),
        ("stddev_over_time", &[Matrix], 0, Vector),
        ("stdvar_over_time", &[Matrix], 0, Vector),
        ("present_over_time", &[Matrix], 0, Vector),
        ("absent_over_time", &[Matrix], 0, Vector),
        ("quantile_over_time", &[Scalar, Matrix], 0, Vector),
        ("histogram_quantile", &[Scalar, Vector], 0, Vector),
        ("abs", &[Vector], 0, Vector),
        ("absent", &[Vector], 0, Vector),
        ("ceil", &[Vector], 0, Vector),
        ("floor", &[Vector], 0, Vector),
        ("sqrt", &[Vector], 0, Vector),
        ("sgn", &[Vector], 0, Vector),
        ("clamp_min", &[Vector, Scalar], 0, Vector),
        ("clamp_max", &[Vector, Scalar], 0, Vector),
        ("clamp", &[Vector, Scalar, Scalar], 0, Vector),
        ("round", &[Vector, Scalar], 1, Vector),
        ("scalar", &[Vector], 0, Scalar),
        ("vector", &[Scalar], 0, Vector),
        ("time", &[], 0, Scalar),
    ]
};

/// Aggregations of one vector; `topk`, `bottomk` and `quantile` take a scalar first.
const AGGREGATIONS: &[&str] = &[
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
];
const AGGREGATIONS_WITH_PARAM: &[&str] = &["topk", "bottomk", "quantile"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Pow,
    Mul,
    Add,
    Cmp,
    AndUnless,
    Or,
}

impl Op {
    fn precedence(self) -> u8 {
        match self {
            Op::Or => 1,
            Op::AndUnless => 2,
            Op::Cmp => 3,
            Op::Add => 4,
            Op::Mul => 5,
            Op::Pow => 6,
        }
    }
}

impl Quick<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// An identifier (`[a-zA-Z_][a-zA-Z0-9_]*`, with `:` for metric names).
    fn ident(&mut self, colons: bool) -> Option<&str> {
        self.ws();
        let start = self.i;
        let ok_first = |c: u8| c.is_ascii_alphabetic() || c == b'_' || (colons && c == b':');
        if !self.s.get(self.i).is_some_and(|&c| ok_first(c)) {
            return None;
        }
        while self
            .s
            .get(self.i)
            .is_some_and(|&c| ok_first(c) || c.is_ascii_digit())
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok()
    }

    /// A word that follows (an operator keyword), without consuming it unless it is `w`.
    fn word(&mut self, w: &str) -> bool {
        self.ws();
        let rest = &self.s[self.i..];
        let end = rest
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b':'))
            .unwrap_or(rest.len());
        if rest[..end].eq_ignore_ascii_case(w.as_bytes()) {
            self.i += end;
            true
        } else {
            false
        }
    }

    fn next_word(&mut self) -> &[u8] {
        self.ws();
        let rest = &self.s[self.i..];
        let end = rest
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b':'))
            .unwrap_or(rest.len());
        &rest[..end]
    }

    /// The binary operator that follows, consumed.
    fn op(&mut self) -> Option<(Op, bool)> {
        let c = self.peek()?;
        let two = self.s.get(self.i + 1).copied();
        let (op, len, cmp) = match (c, two) {
            (b'=', Some(b'=')) | (b'!', Some(b'=')) | (b'<', Some(b'=')) | (b'>', Some(b'=')) => {
                (Op::Cmp, 2, true)
            }
            (b'<', _) | (b'>', _) => (Op::Cmp, 1, true),
            (b'^', _) => (Op::Pow, 1, false),
            (b'*', _) | (b'/', _) | (b'%', _) => (Op::Mul, 1, false),
            (b'+', _) | (b'-', _) => (Op::Add, 1, false),
            _ => {
                let w = self.next_word();
                let op = if w.eq_ignore_ascii_case(b"and") || w.eq_ignore_ascii_case(b"unless") {
                    Op::AndUnless
                } else if w.eq_ignore_ascii_case(b"or") {
                    Op::Or
                } else {
                    return None;
                };
                self.i += w.len();
                return Some((op, false));
            }
        };
        self.i += len;
        Some((op, cmp))
    }

    /// Precedence climbing: operands joined by operators of at least `min` precedence.
    fn expr(&mut self, min: u8) -> Option<Type> {
        let mut lhs = self.operand()?;
        loop {
            let save = self.i;
            let Some((op, cmp)) = self.op() else {
                self.i = save;
                break;
            };
            if op.precedence() < min {
                self.i = save;
                break;
            }
            let bool_mod = self.word("bool");
            if bool_mod && !cmp {
                return None;
            }
            let mut matching = false;
            if self.word("on") || self.word("ignoring") {
                self.labels()?;
                matching = true;
            }
            let w = self.next_word();
            if w.eq_ignore_ascii_case(b"group_left") || w.eq_ignore_ascii_case(b"group_right") {
                return None;
            }
            // `^` is right-associative; the others are left-associative.
            let next = if op == Op::Pow {
                op.precedence()
            } else {
                op.precedence() + 1
            };
            let rhs = self.expr(next)?;
            lhs = binary(op, cmp, bool_mod, matching, lhs, rhs)?;
        }
        Some(lhs)
    }

    fn operand(&mut self) -> Option<Type> {
        match self.peek()? {
            b'(' => {
                self.i += 1;
                let t = self.expr(0)?;
                self.eat(b')')?;
                // A range, offset or `@` after parentheses (a subquery, or an error): declined.
                self.after_operand()?;
                Some(t)
            }
            b'"' | b'\'' => {
                self.string()?;
                self.after_operand()?;
                Some(Type::Str)
            }
            c if c.is_ascii_digit() => {
                self.number()?;
                self.after_operand()?;
                Some(Type::Scalar)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => self.named(),
            _ => None,
        }
    }

    /// What may follow an operand here: not `offset`, `@`, `[` (declined forms).
    fn after_operand(&mut self) -> Option<()> {
        match self.peek() {
            Some(b'@' | b'[' | b'{') => None,
            _ if self.next_word().eq_ignore_ascii_case(b"offset") => None,
            _ => Some(()),
        }
    }

    /// `1`, `0.5`, `1e-3`: decimal only.
    fn number(&mut self) -> Option<()> {
        let digits = |q: &mut Self| {
            let start = q.i;
            while q.s.get(q.i).is_some_and(u8::is_ascii_digit) {
                q.i += 1;
            }
            q.i > start
        };
        digits(self).then_some(())?;
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            digits(self).then_some(())?;
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            digits(self).then_some(())?;
        }
        // `5m` is a duration, `0x1f` hexadecimal, `1.2.3` nonsense: all declined.
        match self.s.get(self.i) {
            Some(c) if c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.' => None,
            _ => Some(()),
        }
    }

    /// A quoted string with plain escapes; its value.
    fn string(&mut self) -> Option<String> {
        let q = self.peek()?;
        if q != b'"' && q != b'\'' {
            return None;
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i)?;
            self.i += 1;
            match c {
                c if c == q => break,
                b'\n' => return None,
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    out.push(match e {
                        b'\\' => b'\\',
                        b'n' => b'\n',
                        b't' => b'\t',
                        e if e == q => q,
                        _ => return None,
                    });
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).ok()
    }

    /// After an item of a list: `,` (another follows: `false`) or `close` (the list ends:
    /// `true`), consumed; anything else declines.
    fn list_item_ends(&mut self, close: u8) -> Option<bool> {
        let c = self.peek()?;
        (c == b',' || c == close).then(|| {
            self.i += 1;
            c == close
        })
    }

    /// `(a, b)` after `by`, `without`, `on`, `ignoring`.
    fn labels(&mut self) -> Option<()> {
        self.eat(b'(')?;
        if self.eat(b')').is_some() {
            return Some(());
        }
        loop {
            let l = self.ident(false)?;
            if keyword(l) {
                return None;
            }
            if self.list_item_ends(b')')? {
                return Some(());
            }
        }
    }

    /// A call, an aggregation or a selector.
    fn named(&mut self) -> Option<Type> {
        let name = self.ident(true)?.to_string();
        let lower = name.to_ascii_lowercase();
        if AGGREGATIONS.contains(&lower.as_str())
            || AGGREGATIONS_WITH_PARAM.contains(&lower.as_str())
        {
            if lower != name {
                return None;
            }
            return self.aggregation(&name);
        }
        if keyword(&name) {
            return None;
        }
        let function = FUNCTIONS.iter().find(|f| f.0 == name);
        if function.is_some() != (self.peek() == Some(b'(')) {
            // A function's name as a metric, or an unknown function: declined.
            return None;
        }
        if let Some(&(_, args, optional, result)) = function {
            self.i += 1;
            let mut got = Vec::new();
            if self.eat(b')').is_none() {
                loop {
                    got.push(self.expr(0)?);
                    if self.list_item_ends(b')')? {
                        break;
                    }
                }
            }
            if got.len() > args.len() || got.len() + optional < args.len() {
                return None;
            }
            if got.iter().zip(args).any(|(g, a)| g != a) {
                return None;
            }
            self.after_operand()?;
            return Some(result);
        }
        // A selector: the name, matchers, a range.
        if self.peek() == Some(b'{') {
            self.i += 1;
            self.matchers()?;
        }
        if self.peek() == Some(b'[') {
            self.i += 1;
            self.duration()?;
            self.eat(b']')?;
            self.after_operand()?;
            return Some(Type::Matrix);
        }
        self.after_operand()?;
        Some(Type::Vector)
    }

    /// `sum by (l) (x)`, `sum(x) by (l)`, `topk(3, x)`.
    fn aggregation(&mut self, name: &str) -> Option<Type> {
        let mut grouped = false;
        if self.word("by") || self.word("without") {
            self.labels()?;
            grouped = true;
        }
        self.eat(b'(')?;
        let mut args = Vec::new();
        loop {
            args.push(self.expr(0)?);
            if self.list_item_ends(b')')? {
                break;
            }
        }
        if !grouped && (self.word("by") || self.word("without")) {
            self.labels()?;
        }
        let want: &[Type] = if AGGREGATIONS_WITH_PARAM.contains(&name) {
            &[Type::Scalar, Type::Vector]
        } else {
            &[Type::Vector]
        };
        (args == want).then_some(())?;
        self.after_operand()?;
        Some(Type::Vector)
    }

    /// `{a="b", c=~"5.."}`: at least one matcher, no `__name__`, regexes that compile.
    fn matchers(&mut self) -> Option<()> {
        loop {
            let label = self.ident(false)?;
            if keyword(label) || label == "__name__" {
                return None;
            }
            let c = self.peek()?;
            let two = self.s.get(self.i + 1).copied();
            let regex = match (c, two) {
                (b'=', Some(b'~')) | (b'!', Some(b'~')) => {
                    self.i += 2;
                    true
                }
                (b'!', Some(b'=')) => {
                    self.i += 2;
                    false
                }
                (b'=', _) => {
                    self.i += 1;
                    false
                }
                _ => return None,
            };
            let value = self.string()?;
            if regex && !regex_ok(&value) {
                return None;
            }
            if self.list_item_ends(b'}')? {
                return Some(());
            }
        }
    }

    /// `30s`, `1m`, `5m`: one unit, not zero.
    fn duration(&mut self) -> Option<()> {
        self.ws();
        let start = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let n = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse::<u32>()
            .ok()?;
        if n == 0 {
            return None;
        }
        let unit_start = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_alphabetic) {
            self.i += 1;
        }
        match &self.s[unit_start..self.i] {
            b"ms" | b"s" | b"m" | b"h" | b"d" | b"w" | b"y" => Some(()),
            _ => None,
        }
    }
}

/// Whether Prometheus compiles this matcher regex (it anchors it as `^(?:…)$`).
fn regex_ok(re: &str) -> bool {
    re.len() < 256
        && (super::regex_quick::surely_valid(re)
            || regex_syntax::parse(&format!("^(?:{re})$")).is_ok())
}

/// The type of `lhs op rhs`, or `None` where Prometheus may refuse it.
fn binary(op: Op, cmp: bool, bool_mod: bool, matching: bool, lhs: Type, rhs: Type) -> Option<Type> {
    use Type::*;
    if !matches!(lhs, Scalar | Vector) || !matches!(rhs, Scalar | Vector) {
        return None;
    }
    let set = matches!(op, Op::AndUnless | Op::Or);
    if set && (lhs != Vector || rhs != Vector) {
        return None;
    }
    if cmp && lhs == Scalar && rhs == Scalar && !bool_mod {
        return None;
    }
    if matching && (lhs != Vector || rhs != Vector) {
        return None;
    }
    Some(if lhs == Vector || rhs == Vector {
        Vector
    } else {
        Scalar
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::parser::value::ValueType;
    use proptest::prelude::*;

    fn theirs(q: &str) -> Option<Type> {
        let e = promql_parser::parser::parse(q).ok()?;
        Some(match e.value_type() {
            ValueType::Scalar => Type::Scalar,
            ValueType::Vector => Type::Vector,
            ValueType::Matrix => Type::Matrix,
            ValueType::String => Type::Str,
        })
    }

    /// Quick may decline; when it answers, promql-parser must agree.
    fn agree(q: &str) -> Result<(), TestCaseError> {
        if let Some(t) = value_type(q) {
            prop_assert_eq!(Some(t), theirs(q), "quick accepted {:?}", q);
        }
        Ok(())
    }

    const SHIPPED: &[&str] = &[
        r#"sum(rate(http_requests_total{app="gateway",code=~"5..",version="1.5.0"}[1m])) / sum(rate(http_requests_total{app="gateway",version="1.5.0"}[1m]))"#,
        r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{app="gateway",version="1.5.0"}[1m])))"#,
        r#"avg(up{job="api",version="1.5.0"})"#,
        r#"max(rate(http_requests_total{app="api"}[5m]))"#,
        "up",
        r#"sum(rate(http_requests_total{app="gateway"}[1m])) by (code) > bool 0"#,
    ];

    #[test]
    fn the_shipped_queries_take_the_quick_path_with_promql_parsers_type() {
        for q in SHIPPED {
            assert_eq!(value_type(q), Some(Type::Vector), "{q}");
            assert_eq!(theirs(q), Some(Type::Vector), "{q}");
        }
        assert_eq!(value_type("http_requests_total[5m]"), Some(Type::Matrix));
        assert_eq!(value_type("1 + 2 * 3"), Some(Type::Scalar));
        assert_eq!(value_type("\"text\""), Some(Type::Str));
    }

    #[test]
    fn what_prometheus_refuses_is_declined() {
        for q in [
            "1 > 2",                       // scalars compared without bool
            "x and 1",                     // a set operator on a scalar
            "rate(x)",                     // a vector where a range is due
            "x[5m] + 1",                   // a range in arithmetic
            "{a=\"\"}",                    // no non-empty matcher
            "x{__name__=\"y\"}",           // the name twice
            "x{a=~\"(\"}",                 // a regex that does not compile
            "sum(x, y)",                   // too many arguments
            "topk(x)",                     // too few
            "x + on(a) 1",                 // matching with a scalar
            "1 + bool 2",                  // bool off a comparison
            "rate(x[0s])",                 // zero range
            "(x)[5m]",                     // a range on parentheses
            "x offset 5m",                 // declined form
            "-x",                          // declined form
            "sum without (le) (x) by (a)", // grouped twice
            "nosuchfunction(x)",           // unknown
        ] {
            assert_eq!(value_type(q), None, "{q}");
        }
    }

    /// Queries built from pieces Prometheus may or may not accept, with random joins.
    fn query() -> impl Strategy<Value = String> {
        let atom = prop_oneof![
            Just("x".to_string()),
            Just("http_requests_total{app=\"a\"}".to_string()),
            Just("y{code=~\"5..\"}".to_string()),
            Just("z{a!~\"b|c\",d!=\"\"}".to_string()),
            Just("m[1m]".to_string()),
            Just("m{a=\"b\"}[30s]".to_string()),
            Just("1".to_string()),
            Just("0.5".to_string()),
            Just("1e3".to_string()),
            Just("\"s\"".to_string()),
            Just("inf".to_string()),
            Just("time()".to_string()),
            Just("by".to_string()),
            Just("{a=\"\"}".to_string()),
            Just("x offset 5m".to_string()),
        ];
        atom.prop_recursive(4, 32, 3, |inner| {
            prop_oneof![
                (
                    inner.clone(),
                    prop::sample::select(vec![
                        " + ",
                        " - ",
                        " * ",
                        " / ",
                        " % ",
                        " ^ ",
                        " == ",
                        " != ",
                        " > ",
                        " < ",
                        " >= ",
                        " <= ",
                        " > bool ",
                        " == bool ",
                        " and ",
                        " or ",
                        " unless ",
                        " + on(a) ",
                        " / ignoring(b) ",
                        " * on() ",
                        " + bool ",
                        " * group_left ",
                    ]),
                    inner.clone()
                )
                    .prop_map(|(a, o, b)| format!("{a}{o}{b}")),
                inner.clone().prop_map(|a| format!("({a})")),
                (
                    prop::sample::select(vec![
                        "rate",
                        "irate",
                        "increase",
                        "abs",
                        "scalar",
                        "vector",
                        "histogram_quantile",
                        "clamp_min",
                        "round",
                        "sum",
                        "max",
                        "topk",
                        "quantile",
                        "time",
                        "absent",
                        "quantile_over_time",
                        "clamp",
                    ]),
                    prop::collection::vec(inner.clone(), 0..3)
                )
                    .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
                (
                    prop::sample::select(vec!["sum", "avg", "count", "max"]),
                    prop::sample::select(vec![
                        " by (le) ",
                        " without (a, b) ",
                        " by () ",
                        " by (sum) "
                    ]),
                    inner.clone(),
                    any::<bool>()
                )
                    .prop_map(|(a, m, x, before)| if before {
                        format!("{a}{m}({x})")
                    } else {
                        format!("{a}({x}){m}")
                    }),
                inner.prop_map(|a| format!("{a}[5m]")),
            ]
        })
    }

    /// The property above is not vacuous: the generator makes queries both accept, and the quick
    /// check takes a good share of what promql-parser accepts.
    #[test]
    fn the_generated_queries_exercise_both_paths() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut theirs_ok, mut both_ok, mut total) = (0, 0, 0);
        for _ in 0..2000 {
            let q = query().new_tree(&mut runner).unwrap().current();
            total += 1;
            if theirs(&q).is_some() {
                theirs_ok += 1;
                if value_type(&q).is_some() {
                    both_ok += 1;
                }
            }
        }
        eprintln!("{total} queries: promql-parser accepts {theirs_ok}, quick {both_ok}");
        assert!(
            theirs_ok > total / 10 && theirs_ok < total * 9 / 10,
            "{theirs_ok} of {total}"
        );
        assert!(
            both_ok * 2 > theirs_ok,
            "quick took only {both_ok} of {theirs_ok}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn quick_never_accepts_what_promql_parser_refuses(q in query()) {
            agree(&q)?;
        }

        /// Byte-level mutations of the shipped queries (cut, doubled, replaced).
        #[test]
        fn mutated_shipped_queries_agree(
            which in 0..SHIPPED.len(),
            at in any::<prop::sample::Index>(),
            len in 0usize..4,
            with in prop::sample::select(vec![
                "", "(", ")", "{", "}", "[", "]", ",", "\"", "'", "=", "~", "!", " ", "5", "m",
                "0", ".", "by", "or", "bool", "\\", "e", "-", "+", "@", ":", "sum",
            ]),
        ) {
            let q = SHIPPED[which];
            let i = at.index(q.len() + 1);
            let end = (i + len).min(q.len());
            let m = format!("{}{}{}", &q[..i], with, &q[end..]);
            agree(&m)?;
        }
    }
}
