//! `jitgate check`: one AdmissionReview decided offline through the server's own entry
//! point ([`crate::decision::decide`], the ledger included) and answered by the server's
//! own response function.

use crate::admission;
use crate::approvals::{self, Snapshot};
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
    /// The response AdmissionReview the server would send, as JSON.
    pub json: String,
    pub allowed: bool,
    /// The request's change, for pinning an approval to it (`change:`).
    pub change: Option<crate::change::Change>,
}

/// The answer the server would give (uses of `maxUses` approvals are not counted: like
/// a dry run, a check spends nothing). An edit of an approvals ConfigMap is judged by the
/// ledger, as the server judges it.
pub fn check(
    request: &Path,
    policies_dir: &Path,
    approvals_file: &Path,
    now: Timestamp,
) -> Result<Checked, CheckError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| CheckError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let body = read(request)?;
    let req = admission::decode(&body).map_err(|e| CheckError::Request {
        path: request.display().to_string(),
        reason: e.to_string(),
    })?;
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
    let snapshot = Snapshot::new(file.approvals, file.errors.len(), file.home, now);
    let inputs = Inputs {
        policies: &policies,
        approvals: Approvals::Loaded(&snapshot),
        now,
    };
    let d = decision::decide(&req, &inputs);
    let response = admission::respond(&req, &d);
    let json = serde_json::to_string_pretty(&response.into_review()).unwrap_or_default();
    Ok(Checked {
        json,
        allowed: d.allowed(),
        change: crate::change::of(&req),
    })
}
