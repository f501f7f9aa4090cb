//! CEL for the API server's `matchConditions`: string literals, lists, the policies'
//! name patterns (so that what is rendered matches exactly what [`Pattern`] matches), and
//! their rules, for admission requests and authorization reviews alike.

use crate::operation::OpSet;
use crate::pattern::Pattern;
use crate::policy::{Rule, Sub};

/// Where a request's coordinates are in the CEL `request` of a kind of review.
pub struct Fields {
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub verb: &'static str,
}

/// `rule` in CEL: one of its API groups, one of its resource patterns, and (when given)
/// one of `verbs`, the operations or verbs it gates as the review names them.
pub fn rule(f: &Fields, rule: &Rule, verbs: Option<Vec<&str>>) -> String {
    let mut terms = Vec::new();
    if !rule.api_groups.iter().any(|g| g == "*") {
        terms.push(format!(
            "{} in {}",
            f.group,
            list(rule.api_groups.iter().map(|g| lit(g)))
        ));
    }
    let resources: Vec<String> = rule
        .resources
        .iter()
        .map(|p| {
            let sub = match p.sub() {
                Sub::None => format!("{} == ''", f.subresource),
                Sub::Any => format!("{} != ''", f.subresource),
                Sub::Named(s) => format!("{} == {}", f.subresource, lit(s)),
            };
            if p.resource() == "*" {
                sub
            } else {
                format!("({} == {} && {sub})", f.resource, lit(p.resource()))
            }
        })
        .collect();
    terms.push(any(resources));
    if let Some(verbs) = verbs {
        terms.push(format!("{} in {}", f.verb, list(verbs.into_iter().map(lit))));
    }
    format!("({})", terms.join(" && "))
}

/// A rule's `objectTypes` in CEL, for an admission request of one of `ops`: the object
/// written (for a DELETE, the one deleted) has one of `types`, or has no readable type, as
/// [`crate::policy::Rule`] matches it (failing closed). `None` when the rule names none.
pub fn object_types(types: &[String], ops: OpSet) -> Option<String> {
    use crate::admission::Operation;
    if types.is_empty() {
        return None;
    }
    let listed = list(types.iter().map(|t| lit(t)));
    let of = |object: &str| format!("({object} == null || !has({object}.type) || {object}.type in {listed})");
    let deletes = ops.contains(Operation::Delete);
    let writes = ops.contains(Operation::Create) || ops.contains(Operation::Update);
    Some(match (writes, deletes) {
        (true, true) => format!(
            "(request.operation == 'DELETE' ? {} : {})",
            of("oldObject"),
            of("object")
        ),
        (false, true) => of("oldObject"),
        _ => of("object"),
    })
}

/// Any of `terms`: the one itself, or them in parentheses.
pub fn any(mut terms: Vec<String>) -> String {
    match terms.len() {
        0 => "false".into(),
        1 => terms.remove(0),
        _ => format!("({})", terms.join(" || ")),
    }
}

/// A CEL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A CEL list.
pub fn list(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
}

/// `value` matches one of `patterns`: `false` for none.
pub fn matches_any(value: &str, patterns: &[Pattern]) -> String {
    let exact: Vec<String> = patterns
        .iter()
        .filter_map(|p| match p {
            Pattern::Exact(name) => Some(lit(name)),
            Pattern::Glob { .. } => None,
        })
        .collect();
    let mut terms = Vec::new();
    match exact.len() {
        0 => {}
        1 => terms.push(format!("{value} == {}", exact[0])),
        _ => terms.push(format!("{value} in {}", list(exact))),
    }
    for p in patterns {
        if let Pattern::Glob { source, .. } = p {
            terms.push(glob(value, source));
        }
    }
    any(terms)
}

const META: [char; 5] = ['*', '?', '[', '{', '\\'];

/// One glob: `startsWith` or `endsWith` for a plain prefix or suffix, else an anchored
/// RE2 expression with globset's meaning (`*` any run, `?` one character, `[…]` and
/// `[!…]` classes, `{a,b}` alternatives, `\` escapes).
fn glob(value: &str, source: &str) -> String {
    if let Some(prefix) = source.strip_suffix('*')
        && !prefix.contains(META)
    {
        return format!("{value}.startsWith({})", lit(prefix));
    }
    if let Some(suffix) = source.strip_prefix('*')
        && !suffix.contains(META)
    {
        return format!("{value}.endsWith({})", lit(suffix));
    }
    format!("{value}.matches({})", lit(&regex(source)))
}

fn regex(glob: &str) -> String {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    let mut in_alternatives = false;
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                re.push_str(".*");
            }
            '?' => re.push('.'),
            '\\' => {
                if let Some(next) = chars.next() {
                    escape_into(&mut re, next);
                }
            }
            '[' => {
                re.push('[');
                if matches!(chars.peek(), Some('!' | '^')) {
                    chars.next();
                    re.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' || c == '[' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                re.push(']');
            }
            '{' => {
                in_alternatives = true;
                re.push_str("(?:");
            }
            ',' if in_alternatives => re.push('|'),
            '}' if in_alternatives => {
                in_alternatives = false;
                re.push(')');
            }
            c => escape_into(&mut re, c),
        }
    }
    re.push('$');
    re
}

fn escape_into(re: &mut String, c: char) {
    if "\\.+*?()|[]{}^$".contains(c) {
        re.push('\\');
    }
    re.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_prefixes_and_suffixes_need_no_regex() {
        let p = |s: &str| Pattern::new(s).unwrap();
        assert_eq!(matches_any("ns", &[p("prod")]), "ns == 'prod'");
        assert_eq!(
            matches_any("ns", &[p("prod"), p("prod-*")]),
            "(ns == 'prod' || ns.startsWith('prod-'))"
        );
        assert_eq!(matches_any("u", &[p("*-bot")]), "u.endsWith('-bot')");
        assert_eq!(matches_any("u", &[]), "false");
        assert_eq!(matches_any("u", &[p("a"), p("b")]), "u in ['a', 'b']");
    }

    #[test]
    fn other_globs_become_anchored_expressions() {
        assert_eq!(regex("team-?-{eu,us}.*"), r"^team-.-(?:eu|us)\..*$");
        assert_eq!(regex("[!a-c]x"), "^[^a-c]x$");
        assert_eq!(lit(&regex("a.b*")), r"'^a\\.b.*$'");
    }

    /// What CEL (as the API server evaluates it) says of `expr` with `value` bound.
    fn eval(expr: &str, value: &str) -> bool {
        let program = cel_interpreter::Program::compile(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let mut ctx = cel_interpreter::Context::default();
        ctx.add_variable("v", value).unwrap();
        match program.execute(&ctx) {
            Ok(cel_interpreter::Value::Bool(b)) => b,
            other => panic!("{expr}: {other:?}"),
        }
    }

    proptest::proptest! {
        /// The rendered CEL matches exactly what the pattern matches, for globs with every
        /// metacharacter and names with the characters Kubernetes names hold.
        #[test]
        fn cel_matches_exactly_what_the_pattern_matches(
            glob in "[a-c:.-]{0,3}(\\*|\\?|\\[a-b\\]|\\[!a\\]|\\{a,bc\\}|)[a-c:.-]{0,3}(\\*|)",
            names in proptest::collection::vec("[a-c:.-]{0,7}", 1..8),
        ) {
            let Ok(pattern) = Pattern::new(&glob) else { return Ok(()) };
            let expr = matches_any("v", std::slice::from_ref(&pattern));
            for name in names {
                proptest::prop_assert_eq!(eval(&expr, &name), pattern.matches(&name), "{} / {} / {}", glob, expr, name);
            }
        }
    }

    #[test]
    fn a_quote_in_a_name_cannot_end_a_cel_string() {
        assert_eq!(lit("it's"), r"'it\'s'");
        assert_eq!(lit(r"a\b"), r"'a\\b'");
    }
}
