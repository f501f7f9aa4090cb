//! Who is told what, without I/O: which sinks a notice goes to, and whom a mail sink mails.

use super::config::{Config, Kind, Mail, Route, Sink};
use crate::news::Notice;

/// The sinks `notice` goes to: every sink when no route is written; else those of the
/// routes it matches. A notice that repeats another (about the object itself) goes nowhere.
pub fn sinks_for<'c>(cfg: &'c Config, notice: &Notice) -> Vec<&'c Sink> {
    if notice.facts.copy {
        return Vec::new();
    }
    if cfg.routes.is_empty() {
        return cfg.sinks.iter().collect();
    }
    cfg.sinks
        .iter()
        .filter(|s| {
            cfg.routes
                .iter()
                .any(|r| r.sinks.contains(&s.name) && matches(r, notice))
        })
        .collect()
}

fn matches(r: &Route, notice: &Notice) -> bool {
    let f = &notice.facts;
    (r.reasons.is_empty() || r.reasons.iter().any(|x| x == notice.reason))
        && (r.policies.is_empty() || r.policies.iter().any(|p| f.policies.contains(p)))
        && (r.groups.is_empty() || r.groups.iter().any(|g| f.approver_groups.contains(g)))
}

/// The addresses a mail about `notice` goes to: the requester for what happened to their
/// request (approved, revoked, about to expire, expired); the approver groups for a new
/// request and for a break-glass use they must review. Sorted, each once (addresses that
/// differ only in case are one mailbox, and get one mail).
pub fn recipients(mail: &Mail, notice: &Notice) -> Vec<String> {
    let f = &notice.facts;
    let mut out = Vec::new();
    let to_requester = matches!(notice.reason, "Approved" | "Revoked" | "ExpiringSoon" | "Expired");
    let to_approvers = matches!(notice.reason, "RequestFiled" | "BreakGlassUsed");
    if mail.requester && to_requester {
        if let Some(user) = &f.requester_user {
            out.extend(addresses_of(mail, user));
        } else {
            // A request for a group: its members, by the mapping.
            out.extend(addresses_of(mail, &f.requester));
        }
    }
    if mail.approvers && to_approvers {
        for group in &f.approver_groups {
            out.extend(addresses_of(mail, &format!("group:{group}")));
        }
    }
    out.sort_by_cached_key(|a: &String| a.to_ascii_lowercase());
    out.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    out
}

/// The addresses of a username or `group:NAME`: from the mapping, else the name itself
/// when it is an address (in one of `mail.domains`, when those are written).
fn addresses_of(mail: &Mail, who: &str) -> Vec<String> {
    match mail.addresses.get(who) {
        Some(list) => list.clone(),
        None if super::config::is_address(who) && in_domains(mail, who) => vec![who.to_string()],
        None => Vec::new(),
    }
}

fn in_domains(mail: &Mail, address: &str) -> bool {
    mail.domains.is_empty()
        || address
            .rsplit_once('@')
            .is_some_and(|(_, d)| mail.domains.iter().any(|ok| ok.eq_ignore_ascii_case(d)))
}

/// True when `sink` has anyone to tell about `notice` (a mail sink needs recipients).
pub fn has_audience(cfg: &Config, sink: &Sink, notice: &Notice) -> bool {
    !matches!(sink.kind, Kind::Smtp(_)) || !recipients(&cfg.mail, notice).is_empty()
}

#[cfg(test)]
mod tests;
