//! Each command, run against the API server.

use super::client::{ApprovalsApi, GrantSeen, grant_seen};
use super::drafts::{draft_from_flags, drafts_from_file};
use super::render::*;
use super::*;
use super::{InboxArgs, ListArgs, RequestArgs, WaitArgs};
use crate::approvals::{LABEL, State, Subject, parse_entry, state_of};
use crate::policy::PolicySet;
use jiff::Timestamp;
use serde_json::Value;
use std::sync::Arc;

impl ApprovalsApi {
    pub(super) async fn request(&self, args: RequestArgs) -> Result<String, CliError> {
        let me = self.whoami().await?;
        let now = Timestamp::now();
        let drafts = match &args.file {
            Some(path) => drafts_from_file(path, &args, now)?,
            None => vec![draft_from_flags(&args, &me, now)?],
        };
        let mut keys = Vec::new();
        self.update(&self.args.configmap, |data| {
            keys.clear();
            let mut patch = serde_json::Map::new();
            for (key, entry) in &drafts {
                let mut free = key.clone();
                let mut n = 1;
                while data.contains_key(&free) || patch.contains_key(&free) {
                    n += 1;
                    free = format!("{key}-{n}");
                }
                patch.insert(free.clone(), Value::String(entry.to_yaml()));
                keys.push(free);
            }
            Ok(patch)
        })
        .await?;
        let mut out = String::new();
        for (key, (_, entry)) in keys.iter().zip(&drafts) {
            out.push_str(&format!(
                "requested {}/{key}: {} {}\nask an approver to run: {} approve {key}\n",
                self.args.configmap,
                describe_scope(entry),
                until(entry),
                crate::program::name()
            ));
        }
        Ok(out)
    }

    pub(super) async fn approve(&self, id: &str, pin: Option<&str>) -> Result<String, CliError> {
        let (me, my_groups) = self.whoami_with_groups().await?;
        let entry = self.find(id).await?;
        let policies = self.policies().await;
        let key = entry.key.clone();
        let mut approved = None;
        self.update(&entry.configmap, |data| {
            let text = data
                .get(&key)
                .ok_or_else(|| CliError::Usage(format!("entry {key:?} was removed meanwhile")))?;
            let mut a = parse_entry(&format!("{}/{key}", entry.configmap), text).map_err(|e| {
                CliError::Usage(format!(
                    "entry {key:?} does not parse ({}), so it cannot be approved",
                    e.reason
                ))
            })?;
            // Checked against the text this attempt read, which the patch's resourceVersion
            // pins in turn: what is approved is what was shown.
            if let Some(pin) = pin
                && pin != pin_of(&a)
            {
                return Err(CliError::Changed(format!(
                    "{}/{key} changed since you read it (pin {pin}, now {}): nothing was approved; read it again with {} show {}/{key}",
                    entry.configmap,
                    pin_of(&a),
                    crate::program::name(),
                    entry.configmap
                )));
            }
            if a.approved_by.iter().any(|a| **a == *me) {
                return Err(CliError::Usage(format!("{me:?} has already approved {key:?}")));
            }
            a.approved_by = a.approved_by.iter().cloned().chain([me.as_str().into()]).collect();
            // Under levels, say which of our groups we approve as: those some level takes.
            let levels = policies
                .as_ref()
                .map(|p| crate::policy::required_levels(&p.gating_scope(&a.scope())))
                .unwrap_or_default();
            let as_groups: Vec<String> = my_groups
                .iter()
                .filter(|g| levels.iter().any(|l| l.admits(std::iter::once(g.as_str()))))
                .cloned()
                .collect();
            if !as_groups.is_empty() {
                a.rare.make_mut().approved_as.insert(me.clone(), as_groups);
            }
            // The last approver a `for:` entry needs starts its clock.
            if !a.started() {
                let (_, counted, required) = state_of(&a, policies.as_ref(), Timestamp::now());
                if counted >= required.unwrap_or(1) {
                    let now = Timestamp::now();
                    a.start_at(now.round(jiff::Unit::Second).unwrap_or(now));
                }
            }
            let mut patch = serde_json::Map::new();
            patch.insert(key.clone(), Value::String(a.to_yaml()));
            approved = Some(a);
            Ok(patch)
        })
        .await?;
        let a = approved.expect("set by a successful update");
        let mut out = if a.break_glass {
            format!(
                "reviewed break-glass entry {} of {}: {}\n",
                entry.id(),
                a.subject,
                describe_scope(&a)
            )
        } else {
            let (state, counted, required) = state_of(&a, policies.as_ref(), Timestamp::now());
            format!(
                "approved {}: {} for {}, {counted}/{} approvers, now {}\n",
                entry.id(),
                describe_scope(&a),
                a.subject,
                required.map_or("?".to_string(), |r| r.to_string()),
                state.as_str()
            )
        };
        // Exactly what was signed, as written.
        out.push_str(&format!("the entry as approved (pin {}):\n", pin_of(&a)));
        push_indented(&mut out, &a.to_yaml());
        Ok(out)
    }

    pub(super) async fn revoke(&self, id: &str) -> Result<String, CliError> {
        let entry = self.find(id).await?;
        let key = entry.key.clone();
        self.update(&entry.configmap, |data| {
            if !data.contains_key(&key) {
                return Err(CliError::Usage(format!("entry {key:?} was removed meanwhile")));
            }
            let mut patch = serde_json::Map::new();
            patch.insert(key.clone(), Value::Null);
            Ok(patch)
        })
        .await?;
        Ok(format!("revoked {}\n", entry.id()))
    }

    pub(super) async fn list(&self, args: ListArgs) -> Result<String, CliError> {
        let entries = self.entries().await?;
        let policies = self.policies().await;
        let now = Timestamp::now();
        let wanted = |s: State, break_glass: bool| {
            let any = !(args.pending || args.active || args.expired || args.break_glass);
            any || (args.pending && s == State::Pending)
                || (args.active && s == State::Active)
                || (args.expired && s == State::Expired)
                || (args.break_glass && break_glass)
        };
        // The RBAC-objects way's grants, when granting policies concern some entries: one
        // list of jitgate's RoleBindings per namespace they name.
        let granting = |a: &crate::approvals::Approval| {
            !a.namespace.is_empty() && policies.as_ref().is_some_and(|p| crate::rbac::concerns(a, p))
        };
        let mut bindings = std::collections::BTreeMap::new();
        for e in &entries {
            if let Ok(a) = &e.parsed
                && granting(a)
                && !bindings.contains_key(&*a.namespace)
            {
                bindings.insert(a.namespace.to_string(), self.grant_bindings(&a.namespace).await);
            }
        }
        let grant_of = |id: &str, a: &crate::approvals::Approval| -> String {
            let Some(found) = bindings.get(&*a.namespace).filter(|_| granting(a)) else {
                return "-".into();
            };
            match found {
                Err(_) => "?".into(),
                Ok(found) => match grant_seen(found.get(&crate::rbac::object_name(id)), id) {
                    GrantSeen::Live(until) => format!("live until {until}"),
                    GrantSeen::Blocked(_) => "blocked".into(),
                    GrantSeen::Absent => "none".into(),
                },
            }
        };
        let mut rows = Vec::new();
        for e in &entries {
            let row = match &e.parsed {
                Ok(a) => {
                    let (state, counted, required) = state_of(a, policies.as_ref(), now);
                    if !wanted(state, a.break_glass) {
                        continue;
                    }
                    let approvers = match (a.break_glass, counted) {
                        (true, 0) => "unreviewed".to_string(),
                        (true, n) => format!("reviewed:{n}"),
                        (false, n) => format!("{n}/{}", required.map_or("?".to_string(), |r| r.to_string())),
                    };
                    [
                        e.id(),
                        a.subject.to_string(),
                        describe_scope(a),
                        approvers,
                        time_left(a, now),
                        state.as_str().to_string(),
                        grant_of(&e.id(), a),
                        a.reason.to_string(),
                    ]
                }
                Err(err) => {
                    if !wanted(State::Invalid, false) {
                        continue;
                    }
                    let dash = || "-".to_string();
                    [
                        e.id(),
                        dash(),
                        dash(),
                        dash(),
                        dash(),
                        State::Invalid.as_str().to_string(),
                        dash(),
                        err.reason.clone(),
                    ]
                }
            };
            rows.push(row);
        }
        let mut out = String::new();
        if bindings.is_empty() {
            let rows: Vec<[String; 7]> = rows
                .into_iter()
                .map(|[id, who, scope, approvers, left, state, _, reason]| {
                    [id, who, scope, approvers, left, state, reason]
                })
                .collect();
            crate::audit::read::table(
                &mut out,
                ["ID", "FOR", "SCOPE", "APPROVERS", "LEFT", "STATE", "REASON"],
                &rows,
            );
        } else {
            crate::audit::read::table(
                &mut out,
                [
                    "ID",
                    "FOR",
                    "SCOPE",
                    "APPROVERS",
                    "LEFT",
                    "STATE",
                    "GRANT",
                    "REASON",
                ],
                &rows,
            );
        }
        Ok(out)
    }

    /// The requests `me` may approve now, oldest first, as a table.
    pub(super) async fn inbox_table(
        &self,
        me: &(String, Vec<String>),
        policies: Option<&PolicySet>,
    ) -> Result<String, CliError> {
        let now = Timestamp::now();
        let (user, groups) = me;
        let mut waiting: Vec<(Option<Timestamp>, [String; 6], String)> = Vec::new();
        for e in self.entries().await? {
            let Ok(a) = &e.parsed else { continue };
            let (state, counted, required) = state_of(a, policies, now);
            let own = match &a.subject {
                Subject::User(u) => **u == **user,
                Subject::Group(g) => groups.iter().any(|m| **m == **g),
            };
            let may =
                policies.is_none_or(|p| p.gating_scope(&a.scope()).iter().all(|p| p.may_approve(groups)));
            if state != State::Pending
                || a.break_glass
                || own
                || a.approved_by.iter().any(|a| **a == **user)
                || !may
            {
                continue;
            }
            let asked = a.requested_at();
            let age = asked.map_or("?".to_string(), |t| time_since(t, now));
            waiting.push((
                asked,
                [
                    e.id(),
                    a.subject.to_string(),
                    describe_scope(a),
                    format!(
                        "{counted}/{}",
                        required.map_or("?".to_string(), |r| r.to_string())
                    ),
                    age,
                    a.reason.to_string(),
                ],
                approve_command(&e.id(), a),
            ));
        }
        waiting.sort_by_key(|(asked, _, _)| asked.unwrap_or(Timestamp::MAX));
        let commands: Vec<String> = waiting.iter().map(|(_, _, c)| c.clone()).collect();
        let rows: Vec<[String; 6]> = waiting.into_iter().map(|(_, row, _)| row).collect();
        let mut out = String::new();
        if rows.is_empty() {
            out.push_str("nothing waits for your approval\n");
        } else {
            crate::audit::read::table(
                &mut out,
                ["ID", "FOR", "SCOPE", "APPROVERS", "AGE", "REASON"],
                &rows,
            );
            out.push_str("approve with (each approves the entry only as it is shown here):\n");
            for command in commands {
                out.push_str(&format!("  {command}\n"));
            }
        }
        Ok(out)
    }

    pub(super) async fn inbox(&self, args: InboxArgs) -> Result<String, CliError> {
        let me = self.whoami_with_groups().await?;
        let policies = self.policies().await;
        if !args.watch {
            return self.inbox_table(&me, policies.as_ref()).await;
        }
        use futures::StreamExt;
        let config = kube::runtime::watcher::Config::default().labels(&format!("{LABEL}=true"));
        let mut changes = std::pin::pin!(kube::runtime::watcher(self.configmaps.clone(), config));
        let mut shown = String::new();
        loop {
            let table = self.inbox_table(&me, policies.as_ref()).await?;
            if table != shown {
                print!(
                    "\x1b[2J\x1b[H{}: inbox of {}, {}\n{table}",
                    crate::program::name(),
                    me.0,
                    Timestamp::now()
                );
                use std::io::Write;
                let _ = std::io::stdout().flush();
                shown = table;
            }
            // Redraw on every change, and at least every 30 s for the ages.
            let next = tokio::time::timeout(std::time::Duration::from_secs(30), changes.next()).await;
            if let Ok(Some(Err(e))) = next {
                tracing::warn!(error = %e, "watching the approvals ConfigMaps");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }

    /// Waits for the entry to be approved, removed or expired. Reads the entry (which a
    /// requester may) four times a second.
    pub(super) async fn wait(&self, args: WaitArgs) -> Result<String, CliError> {
        let first = self.find(&args.id).await?;
        let (configmap, key, id) = (first.configmap.clone(), first.key.clone(), first.id());
        let give_up = args.timeout.map(|t| Timestamp::now() + t);
        let policies = self.policies().await;
        loop {
            let now = Timestamp::now();
            let cm = self.configmaps.get(&configmap).await.map_err(api_error)?;
            let text = cm.data.unwrap_or_default().remove(&key);
            let Some(text) = text else {
                return Err(CliError::Ended {
                    code: 1,
                    message: format!("{id} was revoked (removed) before it was approved"),
                });
            };
            match parse_entry(&id, &text) {
                Err(e) => {
                    return Err(CliError::Ended {
                        code: 1,
                        message: format!("{id} no longer parses ({}), so it grants nothing", e.reason),
                    });
                }
                Ok(a) => match state_of(&a, policies.as_ref(), now).0 {
                    State::Active | State::BreakGlass => {
                        return Ok(format!(
                            "{id} approved by {}: {} until {}\n",
                            a.approved_by.join(", "),
                            describe_scope(&a),
                            a.expires_at
                        ));
                    }
                    State::Expired => {
                        return Err(CliError::Ended {
                            code: 2,
                            message: format!("{id} expired at {} before it was approved", a.expires_at),
                        });
                    }
                    State::Pending | State::Invalid => {}
                },
            }
            if give_up.is_some_and(|t| now >= t) {
                return Err(CliError::Ended {
                    code: 3,
                    message: format!("{id} is still waiting for approval; gave up"),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    pub(super) async fn export(&self, id: &str) -> Result<String, CliError> {
        let entry = self.find(id).await?;
        let cm = self.configmaps.get(&entry.configmap).await.map_err(api_error)?;
        let text = cm
            .data
            .unwrap_or_default()
            .remove(&entry.key)
            .ok_or_else(|| CliError::Usage(format!("entry {:?} was removed meanwhile", entry.key)))?;
        if let Err(e) = &entry.parsed {
            return Err(CliError::Usage(format!(
                "{} does not parse ({}): fix it before asking anyone to sign it",
                entry.id(),
                e.reason
            )));
        }
        let binding = self.binding().await;
        let doc = crate::cli::offline::EntryDoc::of_cluster(
            &entry.configmap,
            &self.args.approvals_namespace,
            binding.as_ref().map(|b| b.cluster.as_str()),
            &entry.key,
            &text,
        );
        match &binding {
            Some(b) => eprintln!(
                "for {b}: the signer checks these and runs jitgate sign -f FILE (they are in the file)"
            ),
            None => eprintln!(
                "note: the cluster's id is not known here (give --cluster-id, as jitgate's denial names it); the signer must give it to jitgate sign --cluster-id"
            ),
        }
        Ok(doc.render(&text))
    }

    /// Adds the signatures of a signed copy of an entry to the entry in the cluster. The
    /// copy must be of the same entry, term for term; the edit that completes a `for:`
    /// entry stamps its approvedAt, as `approve` does.
    pub(super) async fn import(&self, file: &crate::cli::EntryFile) -> Result<String, CliError> {
        let doc = crate::cli::offline::read_entry(file).map_err(CliError::Usage)?;
        let signed = doc.parse().map_err(CliError::Usage)?;
        if signed.rare.signatures.is_empty() {
            return Err(CliError::Usage(format!(
                "{} carries no signatures: sign it first (jitgate sign)",
                doc.id()
            )));
        }
        let entry = self.find(&doc.id()).await?;
        let policies = self.policies().await;
        let signers = self.signers().await;
        let key = entry.key.clone();
        let mut added = Vec::new();
        self.update(&entry.configmap, |data| {
            let text = data
                .get(&key)
                .ok_or_else(|| CliError::Usage(format!("entry {key:?} was removed meanwhile")))?;
            let mut a = parse_entry(&doc.id(), text)
                .map_err(|e| CliError::Usage(format!("{} in the cluster does not parse ({})", doc.id(), e.reason)))?;
            if !a.same_terms(&signed) {
                return Err(CliError::Usage(format!(
                    "the signed copy is not of {} as it stands in the cluster: its terms differ, so its signatures would not verify; ask for a signature of the current entry ({} export {})",
                    doc.id(),
                    crate::program::name(),
                    doc.id()
                )));
            }
            added = signed
                .rare.signatures
                .iter()
                .filter(|s| !a.rare.signatures.contains(s))
                .cloned()
                .collect();
            if added.is_empty() {
                return Err(CliError::Usage(format!("{} already carries these signatures", doc.id())));
            }
            a.rare.make_mut().signatures.extend(added.iter().cloned());
            if !a.started() {
                // Whether the signatures complete it is the ledger's to judge against the
                // trusted signers; counting them as it will (one person once, however
                // they approved) lets the edit that completes it stamp approvedAt.
                a.rare.make_mut().checked = a.checked_by(&signers);
                let now = Timestamp::now();
                let gating = policies
                    .as_ref()
                    .map(|p| p.gating_scope(&a.scope()))
                    .unwrap_or_default();
                let requester = a.subject.user().unwrap_or_default();
                let complete = crate::approvals::approvers(&a, requester, now).suffice(
                    crate::policy::required_approvers(&gating).unwrap_or(1),
                    &crate::policy::required_levels(&gating),
                );
                if complete {
                    a.start_at(now.round(jiff::Unit::Second).unwrap_or(now));
                }
                a.rare.make_mut().checked.clear();
            }
            let mut patch = serde_json::Map::new();
            patch.insert(key.clone(), Value::String(a.to_yaml()));
            Ok(patch)
        })
        .await?;
        let names: Vec<&str> = added.iter().map(|s| &*s.signer).collect();
        Ok(format!(
            "imported the signature(s) of {} into {}; the ledger accepted them\n",
            names.join(", "),
            doc.id()
        ))
    }

    pub(super) async fn show(&self, id: &str) -> Result<String, CliError> {
        let entry = self.find(id).await?;
        let a = match &entry.parsed {
            Ok(a) => a,
            Err(e) => return Ok(format!("{}: invalid, grants nothing: {}\n", entry.id(), e.reason)),
        };
        let policies = self.policies().await;
        let now = Timestamp::now();
        let (state, counted, required) = state_of(a, policies.as_ref(), now);
        let gating: Vec<String> = policies
            .as_ref()
            .map(|p| {
                p.gating_scope(&a.scope())
                    .iter()
                    .map(|p| p.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut out = format!(
            "id:        {}\nfor:       {}\nscope:     {}\nstate:     {}\napprovers: {counted} of {} required ({})\nexpires:   {} ({})\npolicies:  {}\nreason:    {}\n",
            entry.id(),
            a.subject,
            describe_scope(a),
            state.as_str(),
            required.map_or("?".to_string(), |r| r.to_string()),
            if a.approved_by.is_empty() {
                "none yet".to_string()
            } else {
                a.approved_by.join(", ")
            },
            until(a),
            time_left(a, now),
            if gating.is_empty() {
                "unknown".to_string()
            } else {
                gating.join(", ")
            },
            a.reason
        );
        out.push_str(&signatures_and_levels(a, policies.as_ref(), now));
        // The RBAC-objects way's grant, when a granting policy concerns it: one read of
        // its RoleBinding.
        if let Some(p) = policies.as_ref().filter(|p| crate::rbac::concerns(a, p))
            && !a.namespace.is_empty()
        {
            let (id, namespace) = (entry.id(), &a.namespace);
            let name = crate::rbac::object_name(&id);
            let line = match self.grant_binding(namespace, &id).await {
                Ok(GrantSeen::Live(until)) => format!("live: RoleBinding {namespace}/{name}, until {until}"),
                Ok(GrantSeen::Blocked(kind)) => format!(
                    "not live: {kind} {namespace}/{name} is not jitgate's (no jitgate label, or another approval), and jitgate neither binds nor changes it: remove it, or ask under another key"
                ),
                Ok(GrantSeen::Absent) => {
                    let signers = Arc::new(self.signers().await);
                    match crate::rbac::grant_of(
                        &Arc::new(a.clone()),
                        p,
                        &signers,
                        &self.args.approvals_namespace,
                        now,
                    ) {
                        Err(why) if why != crate::rbac::NoGrant::NothingGranted => {
                            format!("none: serve --grants rbac gives it no Role: {why}")
                        }
                        _ => "no RoleBinding (serve --grants rbac grants nothing for it now)".to_string(),
                    }
                }
                Err(why) => format!("unknown (cannot read RoleBindings in {namespace}: {why})"),
            };
            out.push_str(&format!("grant:     {line}\n"));
        }
        out.push_str(&format!(
            "pin:       {}\napprove:   {}\n",
            pin_of(a),
            approve_command(&entry.id(), a)
        ));
        out.push_str("entry:\n");
        push_indented(&mut out, &a.to_yaml());
        Ok(out)
    }
}
