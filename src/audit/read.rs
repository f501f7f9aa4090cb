//! Reading audit logs back: `jitgate audit query` filters records and sums them up
//! (`jitgate audit verify` is [`super::verify`]).

use jiff::Timestamp;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn lines(path: &Path) -> Result<impl Iterator<Item = Result<Vec<u8>, ReadError>>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let path = path.to_path_buf();
    Ok(BufReader::new(file).split(b'\n').map(move |l| {
        l.map_err(|source| ReadError::Io {
            path: path.clone(),
            source,
        })
    }))
}

/// Which records `jitgate audit query` keeps. Every field given must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The requester of a decision; the editor or requester of an approval change; a
    /// subject of a grant created, or of a RoleBinding found standing or removed by a pass.
    pub user: Option<String>,
    /// One of the policies a decision names.
    pub policy: Option<String>,
    /// `allow`, `deny`, `warn` or `dryrun`.
    pub decision: Option<String>,
    /// A decision's reason code, e.g. `no_approval`.
    pub reason: Option<String>,
    pub namespace: Option<String>,
    /// The record's place in the chain.
    pub seq: Option<u64>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl Filter {
    pub fn keeps(&self, r: &Value) -> bool {
        let s = |k: &str| r.get(k).and_then(Value::as_str);
        let is_decision = matches!(s("event"), Some("decision" | "authorization"));
        let is_grant = s("event") == Some("grant");
        let user_ok = self.user.as_deref().is_none_or(|u| {
            // `user:<name>` or `group:<name>`, as requesters and grants' subjects are written;
            // a RoleBinding found binding several has them joined with `,`, each counted (and
            // the whole, for a name that holds a `,` itself).
            let named = |v: &str| v.split_once(':').is_some_and(|(_, n)| n == u);
            let names = |k: &str| s(k).is_some_and(|v| named(v) || v.split(',').any(named));
            if is_decision {
                s("user") == Some(u)
            } else if is_grant {
                names("subject")
            } else {
                s("editor") == Some(u) || names("requester")
            }
        });
        let namespace = if is_decision || is_grant {
            s("namespace")
        } else {
            r.pointer("/scope/namespace").and_then(Value::as_str)
        };
        let at = s("timestamp").and_then(|t| t.parse::<Timestamp>().ok());
        user_ok
            && self
                .policy
                .as_deref()
                .is_none_or(|p| s("policy").is_some_and(|list| list.split(',').any(|x| x == p)))
            && self.decision.as_deref().is_none_or(|d| s("decision") == Some(d))
            && self
                .reason
                .as_deref()
                .is_none_or(|why| is_decision && s("reason") == Some(why))
            && self.namespace.as_deref().is_none_or(|n| namespace == Some(n))
            && self
                .seq
                .is_none_or(|seq| r.get("seq").and_then(Value::as_u64) == Some(seq))
            && self.since.is_none_or(|t| at.is_some_and(|a| a >= t))
            && self.until.is_none_or(|t| at.is_some_and(|a| a < t))
    }
}

/// Calls `each` with every record of `paths` that `filter` keeps, in file order, as
/// written. Lines that are not JSON are skipped (`audit verify` is what judges them).
pub fn query(
    paths: &[PathBuf],
    filter: &Filter,
    mut each: impl FnMut(&[u8], &Value),
) -> Result<(), ReadError> {
    for path in paths {
        for line in lines(path)? {
            let line = line?;
            if let Ok(record) = serde_json::from_slice::<Value>(&line)
                && filter.keeps(&record)
            {
                each(&line, &record);
            }
        }
    }
    Ok(())
}

/// What `--summary` prints: decisions counted by policy, decision and reason, then who
/// approved or revoked what.
#[derive(Debug, Default)]
pub struct Summary {
    decisions: BTreeMap<(String, String, String), u64>,
    changes: Vec<[String; 6]>,
}

impl Summary {
    pub fn add(&mut self, r: &Value) {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        match r.get("event").and_then(Value::as_str) {
            Some("decision" | "authorization") => {
                let policy = r
                    .get("policy")
                    .and_then(Value::as_str)
                    .unwrap_or("(none)")
                    .to_string();
                *self
                    .decisions
                    .entry((policy, s("decision"), s("reason")))
                    .or_default() += 1;
            }
            Some("approval") => {
                let scope = match r.get("scope") {
                    Some(scope) if scope.is_object() => {
                        let part = |k: &str| scope.get(k).and_then(Value::as_str).unwrap_or("");
                        let name = part("name");
                        format!(
                            "{}/{}{}{}",
                            part("namespace"),
                            part("resource"),
                            if name.is_empty() { "" } else { "/" },
                            name
                        )
                    }
                    _ => "-".to_string(),
                };
                self.changes.push([
                    s("timestamp"),
                    s("action"),
                    s("editor"),
                    s("requester"),
                    scope,
                    s("key"),
                ]);
            }
            Some("signer") => {
                self.changes.push([
                    s("timestamp"),
                    format!("signer-{}", s("action")),
                    s("editor"),
                    format!("signer:{}", s("signer")),
                    s("fingerprint"),
                    s("configmap"),
                ]);
            }
            _ => {}
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let rows: Vec<[String; 4]> = self
            .decisions
            .iter()
            .map(|((p, d, r), n)| [p.clone(), d.clone(), r.clone(), n.to_string()])
            .collect();
        out.push_str("DECISIONS\n");
        table(&mut out, ["POLICY", "DECISION", "REASON", "COUNT"], &rows);
        out.push_str("\nAPPROVAL CHANGES\n");
        table(
            &mut out,
            ["TIME", "ACTION", "BY", "FOR", "SCOPE", "ENTRY"],
            &self.changes,
        );
        out
    }
}

/// Writes a left-aligned table, columns as wide as their widest cell.
pub fn table<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let mut width = header.map(str::len);
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; N]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ", w = width[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(std::array::from_fn(|i| row[i].as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::Chain;

    fn write_log(dir: &Path, name: &str, chain: &mut Chain, records: &[Value]) -> PathBuf {
        let mut buf = Vec::new();
        for r in records {
            chain.seal(r.to_string().as_bytes(), &mut buf);
        }
        let path = dir.join(name);
        std::fs::write(&path, buf).unwrap();
        path
    }

    fn decision(user: &str, policy: &str, decision: &str, reason: &str, at: &str) -> Value {
        serde_json::json!({"timestamp": at, "event": "decision", "user": user, "policy": policy,
            "decision": decision, "reason": reason, "namespace": "prod"})
    }

    #[test]
    fn filters_combine_and_the_summary_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = Chain::default();
        let approval = serde_json::json!({"timestamp": "2026-11-21T10:30:00Z", "event": "approval",
            "key": "cm/k", "action": "approved", "editor": "bob", "requester": "user:alice",
            "scope": {"namespace": "prod", "resource": "secrets", "name": "db"}, "reason": "INC-1"});
        let path = write_log(
            dir.path(),
            "a",
            &mut chain,
            &[
                decision("alice", "p1", "deny", "no_approval", "2026-11-21T10:00:00Z"),
                decision("alice", "p1,p2", "allow", "approved", "2026-11-21T11:00:00Z"),
                decision("carol", "p2", "deny", "no_approval", "2026-11-21T12:00:00Z"),
                approval,
            ],
        );
        let run = |f: Filter| {
            let mut n = 0;
            query(std::slice::from_ref(&path), &f, |_, _| n += 1).unwrap();
            n
        };
        assert_eq!(run(Filter::default()), 4);
        let alice = Filter {
            user: Some("alice".into()),
            ..Filter::default()
        };
        assert_eq!(
            run(alice.clone()),
            3,
            "two decisions and the approval of her request"
        );
        assert_eq!(
            run(Filter {
                policy: Some("p2".into()),
                ..alice.clone()
            }),
            1
        );
        assert_eq!(
            run(Filter {
                reason: Some("no_approval".into()),
                since: Some("2026-11-21T11:30:00Z".parse().unwrap()),
                ..Filter::default()
            }),
            1
        );
        assert_eq!(
            run(Filter {
                until: Some("2026-11-21T10:00:00Z".parse().unwrap()),
                ..Filter::default()
            }),
            0,
            "until is exclusive"
        );

        let mut summary = Summary::default();
        query(&[path], &Filter::default(), |_, r| summary.add(r)).unwrap();
        let text = summary.render();
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
        for row in [
            vec!["p1", "deny", "no_approval", "1"],
            vec!["p1,p2", "allow", "approved", "1"],
            vec![
                "2026-11-21T10:30:00Z",
                "approved",
                "bob",
                "user:alice",
                "prod/secrets/db",
                "cm/k",
            ],
        ] {
            assert!(rows.contains(&row), "{row:?} missing from\n{text}");
        }
    }
}
