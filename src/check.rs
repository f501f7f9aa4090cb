//! `jitgate check`: one AdmissionReview or SubjectAccessReview decided offline through
//! the server's own entry point ([`crate::decision::decide`], the ledger included) and
//! answered by the server's own response function.

use crate::admission;
use crate::approvals::{self, Snapshot};
use crate::authorization;
use crate::decision::{self, Approvals, Inputs};
use crate::policy;
use jiff::Timestamp;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Request { path: String, reason: String },
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    #[error(transparent)]
    Approvals(#[from] approvals::FileError),
}

/// What `check` found.
pub struct Checked {
    /// The response review the server would send, as JSON.
    pub json: String,
    /// True when jitgate lets the request through (for a read: no opinion, so RBAC
    /// decides).
    pub allowed: bool,
    /// The request's change, for pinning an approval to it (`change:`); always `None`
    /// for a read.
    pub change: Option<crate::change::Change>,
    /// True for a SubjectAccessReview: a read, which changes nothing.
    pub read: bool,
}

/// The answer the server would give to `request`, an AdmissionReview or a
/// SubjectAccessReview (uses of `maxUses` approvals are not counted: like a dry run, a
/// check spends nothing). An edit of an approvals ConfigMap is judged by the ledger, as
/// the server judges it.
pub fn check(
    request: &Path,
    policies_dir: &Path,
    approvals_file: &Path,
    signers_file: &Path,
    cluster_id: &str,
    now: Timestamp,
) -> Result<Checked, CheckError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| CheckError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let body = read(request)?;
    let bad = |reason: String| CheckError::Request {
        path: request.display().to_string(),
        reason,
    };
    let policies = crate::sync::policies::load_dir(policies_dir)?;
    let shown = approvals_file.display().to_string();
    let text = String::from_utf8(read(approvals_file)?).map_err(|_| CheckError::Request {
        path: shown.clone(),
        reason: "not UTF-8".into(),
    })?;
    let file = approvals::parse_file(&shown, &text)?;
    for e in &file.errors {
        tracing::warn!(approval = %e.id, reason = %e.reason, "approval entry ignored");
    }
    for name in &file.unlabelled {
        tracing::warn!(
            "{shown}: ConfigMap {name} ignored, every entry in it: it lacks the label {}: \"true\"",
            crate::approvals::LABEL
        );
    }
    let binding = crate::signing::Binding {
        cluster: cluster_id.to_string(),
        ..Default::default()
    };
    let (signers, refused) = crate::sync::signers::read_file(signers_file, &binding)
        .map_err(|reason| CheckError::Request {
            path: signers_file.display().to_string(),
            reason,
        })?
        .unwrap_or_else(|| (crate::signing::Signers::none(binding), Vec::new()));
    for e in &refused {
        tracing::warn!("{e}");
    }
    let snapshot = Snapshot::signed(
        file.approvals,
        file.errors.len(),
        file.home,
        std::sync::Arc::new(signers),
        now,
    );
    let inputs = Inputs {
        policies: &policies,
        approvals: Approvals::Loaded(&snapshot),
        now,
    };
    let pretty = |value: serde_json::Result<String>| value.unwrap_or_default();
    if is_access_review(&body) {
        let req = authorization::decode(&body).map_err(|e| bad(e.to_string()))?;
        let d = decision::decide(&req, &inputs);
        let status = crate::respond::access(&req, &d);
        return Ok(Checked {
            json: pretty(serde_json::to_string_pretty(&status.into_review())),
            allowed: d.allowed(),
            change: None,
            read: true,
        });
    }
    let req = admission::decode(&body).map_err(|e| bad(e.to_string()))?;
    let d = decision::decide(&req, &inputs);
    let response = crate::respond::admission(&req, &d);
    Ok(Checked {
        json: pretty(serde_json::to_string_pretty(&response.into_review())),
        allowed: d.allowed(),
        change: crate::change::of(&req),
        read: false,
    })
}

/// True when the body says it is a SubjectAccessReview; anything else is read as an
/// AdmissionReview (and refused as one if it is not).
fn is_access_review(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind {
        kind: Option<String>,
    }
    serde_json::from_slice::<Kind>(body).is_ok_and(|k| k.kind.as_deref() == Some(authorization::KIND))
}
