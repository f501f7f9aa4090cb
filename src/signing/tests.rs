use super::*;
use crate::approvals::parse_entry;
use proptest::prelude::*;
use std::collections::BTreeMap;

const ENTRY: &str = r#"user: bob
resource: secrets
apiGroup: ""
namespace: prod
name: db
operations: [UPDATE]
verbs: [get]
expiresAt: "2026-11-21T22:00:00Z"
reason: "INC-7: rotate"
maxUses: 2
approvedBy: []
"#;

fn key() -> PrivateKey {
    PrivateKey::generate().unwrap().0
}

fn signers_for(name: &str, key: &PrivateKey, extra: &str) -> Signers {
    let data = BTreeMap::from([(
        name.to_string(),
        format!(
            "publicKey: {}\nuser: {name}\ngroups: [security]\n{extra}",
            key.public()
        ),
    )]);
    let (signers, errors) = Signers::from_data(Binding::default(), &data);
    assert!(errors.is_empty(), "{errors:?}");
    signers
}

fn signed(text: &str, id: &str, by: &str, key: &PrivateKey) -> String {
    let mut a = parse_entry(id, text).unwrap();
    let s = sign(&a.terms(), &Binding::default(), by, key, None);
    a.rare.make_mut().signatures.push(s);
    a.to_yaml()
}

fn trusted(signers: &Signers, id: &str, text: &str) -> bool {
    let a = parse_entry(id, text).unwrap();
    let checked = a.checked_by(signers);
    !checked.is_empty() && checked.iter().all(|c| matches!(c, Checked::Trusted(_)))
}

#[test]
fn a_signature_verifies_against_its_signer_and_reads_back_from_the_entry() {
    let alice = key();
    let signers = signers_for("alice", &alice, "");
    let text = signed(ENTRY, "cm/k", "alice", &alice);
    assert!(text.contains("signatures:\n- signer: \"alice\"\n"), "{text}");
    assert!(trusted(&signers, "cm/k", &text));
    // The written entry reads back as the same approval, signature and all.
    let a = parse_entry("cm/k", &text).unwrap();
    assert_eq!(parse_entry("cm/k", &a.to_yaml()), Ok(a));
}

#[test]
fn an_unknown_signer_or_another_key_is_refused_with_the_reason() {
    let alice = key();
    let text = signed(ENTRY, "cm/k", "alice", &alice);
    let a = parse_entry("cm/k", &text).unwrap();
    let why = |signers: &Signers| match &a.checked_by(signers)[0] {
        Checked::Refused { why, .. } => why.clone(),
        Checked::Trusted(_) => panic!("trusted"),
    };
    assert!(why(&Signers::default()).contains("not a trusted signer"));
    assert!(why(&signers_for("alice", &key(), "")).contains("is not \"alice\"'s trusted key"));
}

#[test]
fn a_signature_for_one_id_never_validates_another() {
    let alice = key();
    let signers = signers_for("alice", &alice, "");
    let text = signed(ENTRY, "cm/k", "alice", &alice);
    assert!(!trusted(&signers, "cm/other", &text));
    assert!(!trusted(&signers, "other/k", &text));
}

#[test]
fn signer_entries_are_checked_and_named_when_left_out() {
    let data = BTreeMap::from([
        (
            "good".to_string(),
            format!("publicKey: {}\nuser: g\n", key().public()),
        ),
        ("nobody".to_string(), format!("publicKey: {}\n", key().public())),
        ("bad".to_string(), "publicKey: rsa:xyz\n".to_string()),
        (
            "late".to_string(),
            format!("publicKey: {}\nuser: l\nnotAfter: soon\n", key().public()),
        ),
        (
            "typo".to_string(),
            format!("publicKey: {}\nuser: t\ngrups: [x]\n", key().public()),
        ),
    ]);
    let (signers, errors) = Signers::from_data(Binding::default(), &data);
    assert_eq!(signers.len(), 1);
    let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["bad", "late", "nobody", "typo"]);
    assert!(errors[2].reason.contains("user is missing"), "{}", errors[2]);
    assert_eq!(signers.get("good").unwrap().user, "g");
}

#[test]
fn a_key_written_to_disk_signs_and_its_private_half_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let new = keys::write_new(dir.path(), "alice").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&new.private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let loaded = PrivateKey::load(&new.private).unwrap();
    assert_eq!(loaded.public(), new.key);
    let line = std::fs::read_to_string(&new.public).unwrap();
    assert_eq!(
        PublicKey::parse(line.split_whitespace().next().unwrap()).unwrap(),
        new.key
    );
    // Never overwritten.
    assert!(matches!(
        keys::write_new(dir.path(), "alice"),
        Err(KeyError::Exists { .. })
    ));
}

/// Every field that gives an entry power, with a different value for each.
const POWERED: &[(&str, &str)] = &[
    ("user: bob", "user: mallory"),
    ("user: bob", "group: admins"),
    ("resource: secrets", "resource: configmaps"),
    ("resource: secrets", "resource: secrets/status"),
    ("apiGroup: \"\"", "apiGroup: apps"),
    ("apiGroup: \"\"\n", ""),
    ("namespace: prod", "namespace: prod-eu"),
    ("name: db", "name: web"),
    ("name: db\n", ""),
    ("operations: [UPDATE]", "operations: [UPDATE, DELETE]"),
    ("verbs: [get]", "verbs: [get, list]"),
    ("verbs: [get]\n", ""),
    ("2026-11-21T22:00:00Z", "2026-11-21T23:00:00Z"),
    ("expiresAt: \"2026-11-21T22:00:00Z\"", "for: 1h"),
    ("\"INC-7: rotate\"", "\"INC-7: rotate everything\""),
    ("maxUses: 2", "maxUses: 3"),
    ("maxUses: 2\n", ""),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A change to any powered field invalidates the signature; rewriting the same entry
    /// with its keys in another order, in another YAML style, does not.
    #[test]
    fn any_powered_change_invalidates_and_formatting_does_not(
        which in 0..POWERED.len(),
        order in Just(()).prop_perturb(|_, mut rng| {
            let mut lines: Vec<usize> = (0..11).collect();
            for i in (1..lines.len()).rev() {
                lines.swap(i, (rng.next_u32() as usize) % (i + 1));
            }
            lines
        }),
    ) {
        let alice = key();
        let signers = signers_for("alice", &alice, "");
        let text = signed(ENTRY, "cm/k", "alice", &alice);
        let (from, to) = POWERED[which];
        // The signed entry with one field changed, its signature kept.
        let a = parse_entry("cm/k", &text).unwrap();
        let changed_source = ENTRY.replace(from, to);
        let mut changed = parse_entry("cm/k", &changed_source).unwrap();
        changed.rare.make_mut().signatures = a.rare.signatures.clone();
        prop_assert!(!trusted(&signers, "cm/k", &changed.to_yaml()), "{} -> {}", from, to);
        // The same entry in flow style, keys shuffled.
        let sig = &a.rare.signatures[0];
        let mut fields: Vec<String> = ENTRY.lines().map(str::to_string).collect();
        fields.push(format!(
            "signatures: [{{signature: '{}', namespace: jitgate-system, key: '{}', cluster: local, signer: alice}}]",
            sig.value_base64(), sig.key
        ));
        let shuffled: Vec<&String> = order.iter().filter_map(|i| fields.get(*i)).chain(fields.iter().skip(11)).collect();
        let reformatted = shuffled.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
            .replace("expiresAt: \"2026-11-21T22:00:00Z\"", "expiresAt: 2026-11-21T23:00:00+01:00");
        prop_assert!(trusted(&signers, "cm/k", &reformatted), "{}", reformatted);
    }
}

fn refusal(signers: &Signers, text: &str) -> String {
    let a = parse_entry("cm/k", text).unwrap();
    match &a.checked_by(signers)[0] {
        Checked::Refused { why, .. } => why.clone(),
        Checked::Trusted(_) => panic!("trusted: {text}"),
    }
}

#[test]
fn a_signature_made_for_another_cluster_or_namespace_is_refused_naming_it() {
    let alice = key();
    let a = parse_entry("cm/k", ENTRY).unwrap();
    let cluster_a = Binding {
        cluster: "cluster-a".into(),
        namespace: "jitgate-system".into(),
    };
    let mut signed = a.clone();
    signed
        .rare
        .make_mut()
        .signatures
        .push(sign(&a.terms(), &cluster_a, "alice", &alice, None));
    let text = signed.to_yaml();
    assert!(text.contains("  cluster: \"cluster-a\"\n"), "{text}");
    let in_a = signers_for("alice", &alice, "").bound(cluster_a.clone());
    assert!(trusted(&in_a, "cm/k", &text));
    let in_b = signers_for("alice", &alice, "").bound(Binding {
        cluster: "cluster-b".into(),
        ..cluster_a.clone()
    });
    let why = refusal(&in_b, &text);
    assert!(
        why.contains("was made for cluster \"cluster-a\", and this is cluster \"cluster-b\""),
        "{why}"
    );
    let other_ns = signers_for("alice", &alice, "").bound(Binding {
        namespace: "approvals-elsewhere".into(),
        ..cluster_a.clone()
    });
    assert!(refusal(&other_ns, &text).contains("namespace \"jitgate-system\""));
    // Writing the other cluster's name beside it does not help: the signed form holds it.
    let relabelled = text.replace("cluster: \"cluster-a\"", "cluster: \"cluster-b\"");
    assert!(refusal(&in_b, &relabelled).contains("does not verify"));
}

#[test]
fn a_signature_in_the_old_form_is_refused_with_a_reason() {
    let alice = key();
    let text = signed(ENTRY, "cm/k", "alice", &alice)
        .lines()
        .filter(|l| !l.starts_with("  cluster:") && !l.starts_with("  namespace:"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    let why = refusal(&signers_for("alice", &alice, ""), &text);
    assert!(why.contains("older form (v1) that names no cluster"), "{why}");
}

#[test]
fn a_signed_for_entry_carries_a_not_after_and_counts_until_then_only() {
    let alice = key();
    let signers = signers_for("alice", &alice, "");
    let for_entry = ENTRY.replace("expiresAt: \"2026-11-21T22:00:00Z\"", "for: 1h");
    let a = parse_entry("cm/k", &for_entry).unwrap();
    // Without a notAfter it could be replayed without end: refused.
    let mut bare = a.clone();
    bare.rare
        .make_mut()
        .signatures
        .push(sign(&a.terms(), &Binding::default(), "alice", &alice, None));
    assert!(refusal(&signers, &bare.to_yaml()).contains("names no notAfter"));
    let until: jiff::Timestamp = "2026-11-22T00:00:00Z".parse().unwrap();
    let mut signed = a.clone();
    signed.rare.make_mut().signatures.push(sign(
        &a.terms(),
        &Binding::default(),
        "alice",
        &alice,
        Some(until),
    ));
    let back = parse_entry("cm/k", &signed.to_yaml()).unwrap();
    let Checked::Trusted(t) = &back.checked_by(&signers)[0] else {
        panic!("refused");
    };
    assert!(t.valid_at(until - jiff::SignedDuration::from_secs(1)));
    assert!(!t.valid_at(until));
    assert!(
        t.expired(until)
            .unwrap()
            .contains("was good until 2026-11-22T00:00:00Z")
    );
    // Another notAfter written beside the signature: it does not verify.
    let moved = signed
        .to_yaml()
        .replace("2026-11-22T00:00:00Z", "2027-11-22T00:00:00Z");
    assert!(refusal(&signers, &moved).contains("does not verify"));
}

#[test]
fn a_signers_file_trusts_only_the_configmap_named_jitgate_signers() {
    let carol = key();
    let manifest = |name: &str, namespace: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    jitgate.dev/signers: \"true\"\ndata:\n  carol: |\n    publicKey: {}\n    user: carol\n",
            carol.public()
        )
    };
    let read = |text: &str| parse_signers_file("signers.yaml", text, Binding::default()).unwrap();
    let (signers, errors) = read(&manifest("jitgate-signers", "jitgate-system"));
    assert!(signers.get("carol").is_some() && errors.is_empty(), "{errors:?}");
    for (name, namespace) in [
        ("more-signers", "jitgate-system"),
        ("jitgate-signers", "elsewhere"),
    ] {
        let (signers, errors) = read(&manifest(name, namespace));
        assert!(signers.is_empty(), "{name} in {namespace}");
        assert!(errors[0].reason.contains("trusts nobody"), "{errors:?}");
    }
}

/// Signatures verified ahead many at a time count as verified one by one: one that
/// does not verify (another entry's signature, a bit flipped in its `s` or in its `R`) is
/// refused wherever it stands in a batch, and spoils none of the others.
#[test]
fn signatures_verified_ahead_in_batches_are_trusted_only_if_each_one_verifies() {
    let alice = key();
    let signers = signers_for("alice", &alice, "");
    let n = 2 * BATCH + 7;
    // The second batch has no bad signature; the first and the third have.
    let bad = [0, 1, BATCH - 1, 2 * BATCH + 3, n - 1];
    let mut entries: Vec<_> = (0..n)
        .map(|i| {
            let text = ENTRY.replace("INC-7", &format!("INC-7-{i}-batch"));
            parse_entry(
                &format!("cm/e{i}"),
                &signed(&text, &format!("cm/e{i}"), "alice", &alice),
            )
            .unwrap()
        })
        .collect();
    let next_value = entries[2].rare.signatures[0].value;
    for (k, &i) in bad.iter().enumerate() {
        let value = &mut entries[i].rare.make_mut().signatures[0].value;
        match k % 3 {
            0 => value.clone_from(&next_value),
            1 => value[40] ^= 1,
            _ => value[3] ^= 0x10,
        }
    }
    signers.verify_ahead(entries.iter().map(|a| (a.terms(), &a.rare.signatures[..])));
    let remembered = |a: &crate::approvals::Approval| {
        let sig = &a.rare.signatures[0];
        let message = canonical(&a.terms(), signers.binding(), None);
        VERIFIED.contains_key(&memo_key(
            &signers.get("alice").unwrap().key,
            &message,
            &sig.value,
        ))
    };
    for (i, a) in entries.iter().enumerate() {
        // Only the batch whose signatures all verify was remembered valid, at once.
        assert_eq!(remembered(a), (BATCH..2 * BATCH).contains(&i), "entry {i}");
    }
    for (i, a) in entries.iter().enumerate() {
        let checked = a.checked_by(&signers);
        match &checked[0] {
            Checked::Trusted(_) => assert!(!bad.contains(&i), "altered entry {i} trusted"),
            Checked::Refused { why, .. } => {
                assert!(bad.contains(&i), "entry {i} refused: {why}");
                assert!(why.contains("does not verify"), "{why}");
            }
        }
    }
}

/// A key with a small-order part, or written in a non-canonical form, or not a point at
/// all, is not trusted: with one, signatures can be made that one-by-one and batch
/// verification disagree on (or, with a small-order key, that anyone can make).
#[test]
fn keys_with_a_small_order_part_or_a_non_canonical_form_are_refused() {
    use curve25519_dalek::edwards::CompressedEdwardsY;
    let written = |bytes: [u8; 32]| format!("ed25519:{}", STANDARD.encode(bytes));
    let honest: [u8; 32] = key().public().as_bytes().try_into().unwrap();
    assert!(PublicKey::parse(&written(honest)).is_ok());
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut identity_signed = identity;
    identity_signed[31] |= 0x80;
    let mut order_two = [0xff; 32];
    order_two[0] = 0xec;
    order_two[31] = 0x7f;
    let mixed = {
        let t = CompressedEdwardsY(order_two).decompress().unwrap();
        (CompressedEdwardsY(honest).decompress().unwrap() + t)
            .compress()
            .to_bytes()
    };
    let off_curve = (2u8..)
        .map(|y| {
            let mut b = [0u8; 32];
            b[0] = y;
            b
        })
        .find(|b| CompressedEdwardsY(*b).decompress().is_none())
        .unwrap();
    for (what, bytes) in [
        ("the identity", identity),
        ("the identity with a sign bit", identity_signed),
        ("the point of order two", order_two),
        ("an honest key plus the point of order two", mixed),
        ("no point", off_curve),
    ] {
        let err = PublicKey::parse(&written(bytes)).expect_err(what).to_string();
        assert!(err.contains("small-order part"), "{what}: {err}");
    }
}

/// The memo of verifications answers what it was told, up to its bound; past it, it
/// forgets everything at once (a verification is then made again) and never answers
/// for a signature it was not told of.
#[test]
fn the_memo_of_verifications_is_bounded_and_answers_only_what_it_was_told() {
    let memo = Memo::new(3);
    let key = |i: u8| [i; 32];
    memo.insert(key(1), true);
    memo.insert(key(2), false);
    memo.insert(key(3), true);
    assert_eq!(
        (memo.get(&key(1)), memo.get(&key(2)), memo.get(&key(4))),
        (Some(true), Some(false), None)
    );
    assert_eq!(memo.len(), 3);
    // Told again of one it holds: nothing forgotten.
    memo.insert(key(3), true);
    assert_eq!(memo.len(), 3);
    // A fourth: all forgotten, the fourth kept.
    memo.insert(key(4), false);
    assert_eq!(memo.len(), 1);
    assert_eq!((memo.get(&key(1)), memo.get(&key(4))), (None, Some(false)));
}
