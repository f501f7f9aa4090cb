use super::*;
use crate::approvals::{Approval, ConfigMapRef, parse_entry};
use crate::policy::parse_policies;
use std::sync::Arc;

const POLICY: &str = r#"
apiVersion: jitgate.dev/v1alpha1
kind: GatePolicy
metadata: { name: contractors-prod }
spec:
  grant: true
  rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["get"], operations: ["UPDATE"] }]
  namespaces: ["prod"]
  approval: { minApprovers: 1, maxDuration: 1h }
"#;

const ID: &str = "jitgate-approvals/erin-1";

fn now() -> Timestamp {
    "2026-11-21T20:00:00Z".parse().unwrap()
}

fn policies() -> PolicySet {
    PolicySet::new(parse_policies(POLICY, "p.yaml").unwrap()).unwrap()
}

fn approval(approvers: &str) -> Arc<Approval> {
    approval_of(&format!("verbs: [get]\napprovedBy: [{approvers}]"), 30)
}

/// erin's approval for the Secret db: `lines` say what and who; it expires in `minutes`.
fn approval_of(lines: &str, minutes: i64) -> Arc<Approval> {
    let text = format!(
        "user: erin\nresource: secrets\nnamespace: prod\nname: db\n{lines}\nexpiresAt: \"{}\"\nreason: r\n",
        now() + SignedDuration::from_mins(minutes)
    );
    Arc::new(parse_entry(ID, &text).unwrap())
}

fn snapshot(approvals: Vec<Arc<Approval>>) -> Snapshot {
    Snapshot::new(approvals, 0, ConfigMapRef::default(), now())
}

/// The grant's objects as the API server would list them, created at `created`.
fn objects(created: Timestamp) -> Vec<Found> {
    objects_of(&approval("alice"), created)
}

/// The objects of approval `a`'s grant, as the API server would list them.
fn objects_of(a: &Arc<Approval>, created: Timestamp) -> Vec<Found> {
    let g = rbac::grant_of(a, &policies(), &Arc::default(), "jitgate-system", now()).unwrap();
    let (rules, binding) = rbac_form(&g);
    [(Kind::RoleBinding, binding), (Kind::Role, rules)]
        .into_iter()
        .map(|(kind, holds)| Found {
            kind,
            namespace: "prod".into(),
            name: g.name.clone(),
            uid: format!("uid-{}", kind.as_str()),
            approval: Some(ID.into()),
            expires_at: Some(g.expires_at),
            created_at: Some(created),
            recorded: true,
            holds,
        })
        .collect()
}

fn run(view: Option<&Snapshot>, memory: &mut Memory, found: &[Found], at: Timestamp) -> Plan {
    run_counted(view, Some(&BTreeSet::new()), memory, found, at)
}

/// [`run`], with the ids of the approvals whose uses are spent (`None`: not known).
fn run_counted(
    view: Option<&Snapshot>,
    spent: Option<&BTreeSet<String>>,
    memory: &mut Memory,
    found: &[Found],
    at: Timestamp,
) -> Plan {
    let policies = policies();
    let view = view.map(|snapshot| View {
        snapshot,
        policies: &policies,
        spent,
    });
    plan(view, memory, found, at, GRACE)
}

fn removed(p: &Plan) -> Vec<(Kind, Why)> {
    p.remove.iter().map(|(f, why)| (f.kind, *why)).collect()
}

#[test]
fn a_live_approval_without_objects_gets_its_role_and_binding_and_a_pass_at_its_expiry() {
    let p = run(
        Some(&snapshot(vec![approval("alice")])),
        &mut Memory::default(),
        &[],
        now(),
    );
    assert_eq!(p.create.len(), 1);
    assert!(!p.create[0].role_exists && !p.create[0].binding_exists);
    assert_eq!(p.next_due, Some(now() + SignedDuration::from_mins(30)));
    // With both there, as jitgate makes them: nothing to do.
    let p = run(
        Some(&snapshot(vec![approval("alice")])),
        &mut Memory::default(),
        &objects(now()),
        now(),
    );
    assert!(p.create.is_empty() && p.remove.is_empty() && p.conflicts.is_empty());
}

#[test]
fn a_replica_that_has_not_seen_a_fresh_grants_approval_leaves_it_until_the_grace_ends() {
    let fresh = objects(now() - SignedDuration::from_secs(5));
    for lagging in [snapshot(Vec::new()), snapshot(vec![approval("")])] {
        let p = run(Some(&lagging), &mut Memory::default(), &fresh, now());
        assert!(p.remove.is_empty(), "{:?}", removed(&p));
        assert!(p.create.is_empty());
        assert_eq!(p.next_due, Some(now() - SignedDuration::from_secs(5) + GRACE));
        let later = now() + GRACE;
        let p = run(Some(&lagging), &mut Memory::default(), &fresh, later);
        assert_eq!(
            removed(&p),
            [
                (Kind::RoleBinding, Why::NotGranted),
                (Kind::Role, Why::NotGranted)
            ]
        );
    }
}

#[test]
fn a_replica_that_saw_the_approval_live_and_then_gone_removes_its_grant_at_once() {
    let mut memory = Memory::default();
    let found = objects(now() - SignedDuration::from_secs(5));
    run(
        Some(&snapshot(vec![approval("alice")])),
        &mut memory,
        &found,
        now(),
    );
    let p = run(Some(&snapshot(Vec::new())), &mut memory, &found, now());
    assert_eq!(
        removed(&p),
        [(Kind::RoleBinding, Why::Revoked), (Kind::Role, Why::Revoked)]
    );
    // A grant created after it saw the approval gone is for a later approval of the same
    // id, which it may not have seen yet: left until the grace ends.
    let newer = objects(now() + SignedDuration::from_secs(2));
    let p = run(
        Some(&snapshot(Vec::new())),
        &mut memory,
        &newer,
        now() + SignedDuration::from_secs(3),
    );
    assert!(p.remove.is_empty(), "{:?}", removed(&p));
}

#[test]
fn an_expired_grant_is_removed_by_the_clock_even_when_the_view_is_stale() {
    let found = objects(now() - SignedDuration::from_mins(40));
    let after = now() + SignedDuration::from_mins(31);
    let p = run(None, &mut Memory::default(), &found, after);
    assert_eq!(
        removed(&p),
        [(Kind::RoleBinding, Why::Expired), (Kind::Role, Why::Expired)]
    );
    // Before its expiry, a stale view removes nothing and creates nothing.
    let p = run(None, &mut Memory::default(), &found, now());
    assert!(p.remove.is_empty() && p.create.is_empty());
}

#[test]
fn a_role_of_the_grants_name_holding_other_rules_is_neither_bound_nor_changed() {
    let mut found = objects(now());
    let wide = RuleForm::new(vec!["".into()], vec!["secrets".into()], vec![], vec!["*".into()]);
    found[1].holds = Holds::Rules([wide].into());
    let p = run(
        Some(&snapshot(vec![approval("alice")])),
        &mut Memory::default(),
        &found,
        now(),
    );
    assert_eq!(p.conflicts.len(), 1);
    assert!(p.create.is_empty());
    // Its binding is taken away: the subject must not hold a Role jitgate did not verify.
    assert_eq!(removed(&p), [(Kind::RoleBinding, Why::Unverified)]);
}

#[test]
fn a_binding_of_the_grants_name_to_someone_else_is_removed_and_made_again() {
    let mut found = objects(now());
    found[0].holds = Holds::Binding {
        role: ("Role".into(), found[0].name.clone()),
        subjects: [("Group".into(), "contractors".into())].into(),
    };
    let p = run(
        Some(&snapshot(vec![approval("alice")])),
        &mut Memory::default(),
        &found,
        now(),
    );
    assert_eq!(removed(&p), [(Kind::RoleBinding, Why::Unverified)]);
    assert_eq!(p.create.len(), 1);
    assert!(p.create[0].role_exists && !p.create[0].binding_exists);
}

#[test]
fn a_self_approved_request_gets_nothing() {
    let p = run(
        Some(&snapshot(vec![approval("erin")])),
        &mut Memory::default(),
        &[],
        now(),
    );
    assert!(p.create.is_empty());
}

#[test]
fn a_max_uses_grant_stands_while_uses_remain_and_goes_once_they_are_spent() {
    let once = approval_of("operations: [UPDATE]\nmaxUses: 1\napprovedBy: [alice]", 30);
    let view = snapshot(vec![once.clone()]);
    let none = BTreeSet::new();
    let p = run_counted(Some(&view), Some(&none), &mut Memory::default(), &[], now());
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.create[0].grant.max_uses, Some(1));
    // Spent: both objects go at once, however fresh, and nothing is made again.
    let found = objects_of(&once, now());
    let spent = BTreeSet::from([ID.to_string()]);
    let p = run_counted(Some(&view), Some(&spent), &mut Memory::default(), &found, now());
    assert_eq!(
        removed(&p),
        [(Kind::RoleBinding, Why::Spent), (Kind::Role, Why::Spent)]
    );
    assert!(p.create.is_empty());
    // Counts not known: nothing is made, and what stands is left (but to its expiry).
    let old = objects_of(&once, now() - GRACE - GRACE);
    let p = run_counted(Some(&view), None, &mut Memory::default(), &old, now());
    assert!(p.create.is_empty() && p.remove.is_empty(), "{:?}", removed(&p));
    let p = run_counted(Some(&view), None, &mut Memory::default(), &[], now());
    assert!(p.create.is_empty());
    // maxUses on a read: no grant, and the plan says why.
    let read_once = approval_of("verbs: [get]\nmaxUses: 1\napprovedBy: [alice]", 30);
    let p = run(
        Some(&snapshot(vec![read_once])),
        &mut Memory::default(),
        &[],
        now(),
    );
    assert!(p.create.is_empty());
    assert!(
        matches!(&p.refused[..], [(id, NoGrant::MaxUsesReads(_))] if id == ID),
        "{:?}",
        p.refused
    );
}

#[test]
fn a_shortened_expiry_makes_the_objects_again_with_it_and_the_earlier_expiry_wins() {
    // The objects were made for an expiry 30 minutes away; the approval now ends in 5.
    let found = objects(now() - SignedDuration::from_secs(5));
    let shortened = approval_of("verbs: [get]\napprovedBy: [alice]", 5);
    let p = run(
        Some(&snapshot(vec![shortened.clone()])),
        &mut Memory::default(),
        &found,
        now(),
    );
    assert_eq!(
        removed(&p),
        [(Kind::RoleBinding, Why::Shortened), (Kind::Role, Why::Shortened)]
    );
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.create[0].grant.expires_at, shortened.expires_at);
    assert!(!p.create[0].role_exists && !p.create[0].binding_exists);
    assert_eq!(p.next_due, Some(shortened.expires_at));
    // Made again: a replica that lags and still sees the longer expiry leaves them.
    let remade = objects_of(&shortened, now());
    let p = run(
        Some(&snapshot(vec![approval("alice")])),
        &mut Memory::default(),
        &remade,
        now(),
    );
    assert!(p.create.is_empty() && p.remove.is_empty(), "{:?}", removed(&p));
    // Nobody there at the earlier expiry: the clock alone removes them then.
    let after = shortened.expires_at + SignedDuration::from_secs(1);
    let p = run(None, &mut Memory::default(), &remade, after);
    assert_eq!(
        removed(&p),
        [(Kind::RoleBinding, Why::Expired), (Kind::Role, Why::Expired)]
    );
}

#[test]
fn the_expiry_an_object_carries_reads_back_as_the_approvals_so_nothing_is_made_again() {
    // An expiry to the nanosecond, as `jitgate request` writes them.
    let text = "user: erin\nresource: secrets\nnamespace: prod\nname: db\nverbs: [get]\nexpiresAt: \"2026-11-21T20:29:59.123456789Z\"\nreason: r\napprovedBy: [alice]\n";
    let a = Arc::new(parse_entry(ID, text).unwrap());
    let g = rbac::grant_of(&a, &policies(), &Arc::default(), "jitgate-system", now()).unwrap();
    let (role, binding) = crate::grants::objects(&g);
    let (rules, bound) = rbac_form(&g);
    let mut found = Vec::new();
    for (kind, mut meta, holds) in [
        (Kind::Role, role.metadata, rules),
        (Kind::RoleBinding, binding.metadata, bound),
    ] {
        meta.uid = Some(format!("uid-{}", kind.as_str()));
        meta.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        found.extend(crate::grants::found_of(kind, meta, holds));
    }
    assert_eq!(found.len(), 2);
    let p = run(Some(&snapshot(vec![a])), &mut Memory::default(), &found, now());
    assert!(p.create.is_empty() && p.remove.is_empty(), "{:?}", removed(&p));
}

#[test]
fn a_binding_kept_as_its_grants_without_a_record_is_recorded_once_older_than_the_grace() {
    let view = snapshot(vec![approval("alice")]);
    let created = now() - SignedDuration::from_secs(5);
    let mut found = objects(created);
    // Only the RoleBinding's mark counts: the Role alone grants nothing.
    found[1].recorded = false;
    let p = run(Some(&view), &mut Memory::default(), &found, now());
    assert!(p.unrecorded.is_empty() && p.create.is_empty() && p.remove.is_empty());
    found[0].recorded = false;
    // Young: perhaps another replica's creation whose record is being written; a pass
    // is due when the grace ends.
    let p = run(Some(&view), &mut Memory::default(), &found, now());
    assert!(p.unrecorded.is_empty(), "{:?}", p.unrecorded);
    assert_eq!(p.next_due, Some(created + GRACE));
    // Older: its standing is to be recorded, and it is neither removed nor made again.
    let p = run(Some(&view), &mut Memory::default(), &found, created + GRACE);
    let unrecorded: Vec<_> = p
        .unrecorded
        .iter()
        .map(|f| (f.approval.as_deref(), f.kind))
        .collect();
    assert_eq!(unrecorded, [(Some(ID), Kind::RoleBinding)]);
    assert!(p.create.is_empty() && p.remove.is_empty());
    // Whatever the view: with none (stale), nothing is removed before the expiry, and
    // its standing is recorded all the same. A view that does not see the approval
    // granting removes it at the grace instead (that removal recorded).
    let p = run(None, &mut Memory::default(), &found, created + GRACE);
    assert_eq!(p.unrecorded.len(), 1);
    assert!(p.remove.is_empty());
    let p = run(
        Some(&snapshot(Vec::new())),
        &mut Memory::default(),
        &found,
        created + GRACE,
    );
    assert!(p.unrecorded.is_empty());
    assert_eq!(
        removed(&p),
        [
            (Kind::RoleBinding, Why::NotGranted),
            (Kind::Role, Why::NotGranted)
        ]
    );
    // Not when it is removed anyway: a later expiry than the approval's (shortened), its
    // own expiry past.
    let shortened = approval_of("verbs: [get]\napprovedBy: [alice]", 10);
    let p = run(
        Some(&snapshot(vec![shortened])),
        &mut Memory::default(),
        &found,
        created + GRACE,
    );
    assert!(
        p.unrecorded.is_empty() && p.remove.len() == 2,
        "{:?}",
        removed(&p)
    );
    let expired = now() + SignedDuration::from_mins(31);
    let p = run(None, &mut Memory::default(), &found, expired);
    assert!(
        p.unrecorded.is_empty() && p.remove.len() == 2,
        "{:?}",
        removed(&p)
    );
}
