//! Name patterns used by policies: an exact name, or a glob such as `prod-*` or
//! `system:serviceaccount:argocd:*`.

use globset::{Glob, GlobMatcher};

/// A compiled name pattern. Exact names skip the glob engine: most patterns are exact,
/// and a string comparison is the cheapest match there is.
#[derive(Debug, Clone)]
pub enum Pattern {
    Exact(String),
    Glob { source: String, matcher: GlobMatcher },
}

impl Pattern {
    /// Compiles `source`; a string without glob metacharacters is an exact name.
    pub fn new(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Err("empty pattern".to_string());
        }
        if !source.contains(['*', '?', '[', '{']) {
            return Ok(Pattern::Exact(source.to_string()));
        }
        let glob = Glob::new(source).map_err(|e| format!("invalid glob {source:?}: {}", e.kind()))?;
        Ok(Pattern::Glob {
            source: source.to_string(),
            matcher: glob.compile_matcher(),
        })
    }

    pub fn matches(&self, candidate: &str) -> bool {
        match self {
            Pattern::Exact(name) => name == candidate,
            Pattern::Glob { matcher, .. } => matcher.is_match(candidate),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Pattern::Exact(name) => name,
            Pattern::Glob { source, .. } => source,
        }
    }
}

/// True when any pattern in `patterns` matches `candidate`.
pub fn any_matches(patterns: &[Pattern], candidate: &str) -> bool {
    patterns.iter().any(|p| p.matches(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_name_matches_only_itself() {
        let p = Pattern::new("prod").unwrap();
        assert!(p.matches("prod"));
        assert!(!p.matches("prod-eu"));
        assert!(!p.matches("production"));
    }

    #[test]
    fn a_prefix_glob_matches_names_that_start_with_it() {
        let p = Pattern::new("prod-*").unwrap();
        assert!(p.matches("prod-eu"));
        assert!(p.matches("prod-"));
        assert!(!p.matches("prod"));
        assert!(!p.matches("staging-prod-eu"));
    }

    #[test]
    fn a_service_account_glob_matches_every_account_of_the_namespace() {
        let p = Pattern::new("system:serviceaccount:argocd:*").unwrap();
        assert!(p.matches("system:serviceaccount:argocd:argocd-application-controller"));
        assert!(!p.matches("system:serviceaccount:default:argocd"));
    }

    #[test]
    fn an_empty_or_broken_pattern_is_refused() {
        assert!(Pattern::new("").is_err());
        assert!(Pattern::new("prod-[").is_err());
    }
}
