//! How entries, their scopes, times and pins are written for people.

use crate::approvals::Approval;
use crate::duration::human;
use crate::policy::PolicySet;
use crate::signing::Checked;
use jiff::Timestamp;

/// The `signatures:` and `levels:` lines of `show`: each signature and whether it counts,
/// and each level of the gating policies, met or missing.
pub(super) fn signatures_and_levels(a: &Approval, policies: Option<&PolicySet>, now: Timestamp) -> String {
    let mut out = String::new();
    if !a.rare.signatures.is_empty() {
        let each: Vec<String> = a
            .rare
            .signatures
            .iter()
            .zip(&a.rare.checked)
            .map(|(sig, checked)| match checked {
                Checked::Trusted(s) if s.valid_at(now) => {
                    format!("{} (valid: {} in {})", sig.signer, s.user, s.groups.join(", "))
                }
                Checked::Trusted(s) => format!(
                    "{} (not counted: {})",
                    sig.signer,
                    s.expired(now).unwrap_or_default()
                ),
                Checked::Refused { why, .. } => format!("{} (not counted: {why})", sig.signer),
            })
            .collect();
        out.push_str(&format!("signed by: {}\n", each.join("; ")));
    }
    let levels = policies
        .map(|p| crate::policy::required_levels(&p.gating_scope(&a.scope())))
        .unwrap_or_default();
    if !levels.is_empty() {
        let requester = a.subject.user().unwrap_or_default();
        let unmet = crate::approvals::approvers(a, requester, now).unmet(&levels);
        let each: Vec<String> = levels
            .iter()
            .enumerate()
            .map(|(i, l)| match unmet.iter().find(|u| u.level == i) {
                Some(u) => format!("{}: {} missing", l.describe(l.count), u.missing),
                None => format!("{}: met", l.describe(l.count)),
            })
            .collect();
        out.push_str(&format!("levels:    {}\n", each.join("; ")));
    }
    out
}

/// The pin of an entry's terms: what an approver reads and signs (whom for, scope,
/// reason, expiry or `for:`, limits, the entry's id), leaving out who approved or signed
/// it so far. 128 bits of its SHA-256, in hex: long enough that nobody can write two
/// entries with one pin.
pub(super) fn pin_of(a: &Approval) -> String {
    let mut terms = a.clone();
    terms.approved_by = Default::default();
    terms.rare.make_mut().approved_as.clear();
    terms.rare.make_mut().signatures.clear();
    terms.rare.make_mut().checked.clear();
    // The clock a `for:` entry's last approver starts is not one of its terms.
    terms.rare.make_mut().approved_at = None;
    let text = format!("{}\n{}", a.id, terms.to_yaml());
    crate::digest::sha256_hex(text.as_bytes())[..32].to_string()
}

/// The command that approves the entry `id` as it stands, pinned.
pub(super) fn approve_command(id: &str, a: &Approval) -> String {
    format!("{} approve {id} --pin {}", crate::program::name(), pin_of(a))
}

/// Appends `text`, each line indented by two spaces.
pub(super) fn push_indented(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
}

/// The entry's scope (`UPDATE,DELETE prod/secrets/db-password`) and its limits
/// (` (max 1 use) (change sha256:…)`).
pub(super) fn describe_scope(a: &Approval) -> String {
    let mut out = a.scope().to_string();
    if let Some(n) = a.max_uses {
        out.push_str(&format!(" (max {n} use{})", if n.get() == 1 { "" } else { "s" }));
    }
    if let Some(change) = &a.rare.change {
        out.push_str(&format!(" (change {}…)", &change[..change.len().min(19)]));
    }
    out
}

pub(super) fn time_since(then: Timestamp, now: Timestamp) -> String {
    let ago = now.duration_since(then);
    if ago.as_secs() < 60 {
        "<1m".to_string()
    } else {
        human(ago)
    }
}

/// `until 2026-…Z`, or `for 1h once approved` for a `for:` entry not yet started.
pub(super) fn until(a: &Approval) -> String {
    match (a.rare.valid_for, a.started()) {
        (Some(d), false) => format!("for {} once approved", human(d)),
        _ => format!("until {}", a.expires_at),
    }
}

pub(super) fn time_left(a: &Approval, now: Timestamp) -> String {
    if let (Some(d), false) = (a.rare.valid_for, a.started()) {
        return format!("{} once approved", human(d));
    }
    if now >= a.expires_at {
        "expired".to_string()
    } else {
        let left = a.expires_at.duration_since(now);
        if left.as_secs() < 60 {
            format!("{}s", left.as_secs())
        } else {
            human(left)
        }
    }
}
