//! `jitgate request | approve | revoke | list | show`: the approvals ledger through the API
//! server, so every change passes the ledger guard as the user the API server
//! authenticated. Changes are merge patches carrying the resourceVersion they were computed
//! from (the API server refuses them with 409 if the ConfigMap changed meanwhile); on a
//! conflict the ConfigMap is read again and the change recomputed.

use super::{InboxArgs, LedgerArgs, ListArgs, RequestArgs, WaitArgs};
use crate::approvals::{Approval, EntryError, LABEL, State, Subject, parse_entry, state_of, suggested_key};
use crate::duration::human;
use crate::policy::{PolicySet, parse_policies};
use crate::signing::{Checked, Signers};
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::ExitCode;

use crate::signing::{Binding, SIGNERS_CONFIGMAP};

/// Times a change is recomputed after a conflict before giving up.
const ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API server refused: the ledger guard's or RBAC's words, as they were written.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Api(String),
    /// `approve --pin`: the entry's terms changed since they were shown; nothing was
    /// approved.
    #[error("{0}")]
    Changed(String),
    /// What was waited for ended otherwise than approved: exit with `code`.
    #[error("{message}")]
    Ended { code: u8, message: String },
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Refused(_) | CliError::Changed(_) => ExitCode::from(1),
            CliError::Ended { code, .. } => ExitCode::from(*code),
            _ => ExitCode::from(2),
        }
    }
}

fn api_error(e: kube::Error) -> CliError {
    match e {
        kube::Error::Api(status) if status.is_forbidden() || status.is_invalid() => {
            CliError::Refused(status.message)
        }
        kube::Error::Api(status) => CliError::Api(status.message),
        other => CliError::Api(other.to_string()),
    }
}

pub enum Verb {
    Request(Box<RequestArgs>),
    /// The entry, and the pin it must still match.
    Approve(String, Option<String>),
    Revoke(String),
    List(ListArgs),
    Show(String),
    Inbox(InboxArgs),
    Wait(WaitArgs),
    Export(String),
    Import(super::EntryFile),
}

/// Runs one verb and reports as a command-line tool does: output on stdout, errors on
/// stderr, exit status 0 done, 1 refused by the API server, 2 anything else.
pub fn run(ledger: LedgerArgs, verb: Verb) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jitgate: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let ledger = Ledger::connect(ledger).await?;
        match verb {
            Verb::Request(args) => ledger.request(*args).await,
            Verb::Approve(id, pin) => ledger.approve(&id, pin.as_deref()).await,
            Verb::Revoke(id) => ledger.revoke(&id).await,
            Verb::List(args) => ledger.list(args).await,
            Verb::Show(id) => ledger.show(&id).await,
            Verb::Inbox(args) => ledger.inbox(args).await,
            Verb::Wait(args) => ledger.wait(args).await,
            Verb::Export(id) => ledger.export(&id).await,
            Verb::Import(file) => ledger.import(&file).await,
        }
    });
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jitgate: {e}");
            e.exit_code()
        }
    }
}

struct Ledger {
    client: Client,
    configmaps: Api<ConfigMap>,
    args: LedgerArgs,
}

/// One key of an approvals ConfigMap.
struct Entry {
    configmap: String,
    key: String,
    parsed: Result<Approval, EntryError>,
}

impl Entry {
    fn id(&self) -> String {
        format!("{}/{}", self.configmap, self.key)
    }
}

impl Ledger {
    async fn connect(args: LedgerArgs) -> Result<Ledger, CliError> {
        let config = crate::sync::cluster::client_config(args.kubeconfig.as_deref())
            .await
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let client = Client::try_from(config).map_err(|e| CliError::Api(e.to_string()))?;
        let configmaps = Api::namespaced(client.clone(), &args.approvals_namespace);
        Ok(Ledger {
            client,
            configmaps,
            args,
        })
    }

    /// Who the API server says we are.
    async fn whoami(&self) -> Result<String, CliError> {
        self.whoami_with_groups().await.map(|(user, _)| user)
    }

    /// Who the API server says we are, and our groups.
    async fn whoami_with_groups(&self) -> Result<(String, Vec<String>), CliError> {
        let review: SelfSubjectReview = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}
        }))
        .map_err(|e| CliError::Api(e.to_string()))?;
        let api: Api<SelfSubjectReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(api_error)?;
        let user = answer.status.and_then(|s| s.user_info).unwrap_or_default();
        match user.username.filter(|u| !u.is_empty()) {
            Some(name) => Ok((name, user.groups.unwrap_or_default())),
            None => Err(CliError::Api("the API server did not say who you are".into())),
        }
    }

    /// The policies, from their ConfigMap; `None` (with a note) when they cannot be read.
    async fn policies(&self) -> Option<PolicySet> {
        let cm = match self.configmaps.get(&self.args.policies_configmap).await {
            Ok(cm) => cm,
            Err(e) => {
                eprintln!(
                    "note: cannot read ConfigMap {} ({}); approvers are counted against 1",
                    self.args.policies_configmap,
                    api_error(e)
                );
                return None;
            }
        };
        let mut all = Vec::new();
        for (file, text) in cm.data.unwrap_or_default() {
            match parse_policies(&text, &file) {
                Ok(p) => all.extend(p),
                Err(e) => {
                    eprintln!("note: {e}; approvers are counted against 1");
                    return None;
                }
            }
        }
        PolicySet::new(all).ok()
    }

    /// Every entry of the approvals ConfigMaps: those labelled in the namespace, or, for a
    /// user who may not list ConfigMaps, the one named by `--configmap`.
    async fn entries(&self) -> Result<Vec<Entry>, CliError> {
        let listed = self
            .configmaps
            .list(&ListParams::default().labels(&format!("{LABEL}=true")))
            .await;
        let configmaps = match listed {
            Ok(list) => list.items,
            Err(kube::Error::Api(s)) if s.is_forbidden() => {
                vec![
                    self.configmaps
                        .get(&self.args.configmap)
                        .await
                        .map_err(api_error)?,
                ]
            }
            Err(e) => return Err(api_error(e)),
        };
        let signers = self.signers().await;
        let mut entries = Vec::new();
        for cm in configmaps {
            let name = cm.metadata.name.unwrap_or_default();
            for (key, text) in cm.data.unwrap_or_default() {
                let mut parsed = parse_entry(&format!("{name}/{key}"), &text);
                if let Ok(a) = &mut parsed {
                    a.checked = a.checked_by(&signers);
                }
                entries.push(Entry {
                    parsed,
                    configmap: name.clone(),
                    key,
                });
            }
        }
        Ok(entries)
    }

    /// The cluster and approvals namespace signatures are made for here: the cluster id
    /// given, else the uid of the kube-system Namespace when the user may read it.
    async fn binding(&self) -> Option<Binding> {
        let cluster = match &self.args.cluster_id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => crate::sync::cluster::read_cluster_id(self.client.clone())
                .await
                .ok()?,
        };
        Some(Binding {
            cluster,
            namespace: self.args.approvals_namespace.clone(),
        })
    }

    /// The trusted signers, so that signatures count here as the webhook counts them: the
    /// one ConfigMap jitgate-signers, by name; none (signatures count for nothing) when it
    /// is not readable, or the cluster's id is not known.
    async fn signers(&self) -> Signers {
        let Some(binding) = self.binding().await else {
            return Signers::none(Binding {
                cluster: String::new(),
                namespace: self.args.approvals_namespace.clone(),
            });
        };
        match self.configmaps.get_opt(SIGNERS_CONFIGMAP).await {
            Ok(Some(cm)) => Signers::from_data(binding, &cm.data.unwrap_or_default()).0,
            _ => Signers::none(binding),
        }
    }

    /// The entry `id` names: `KEY` or `CONFIGMAP/KEY`.
    async fn find(&self, id: &str) -> Result<Entry, CliError> {
        let mut found: Vec<Entry> = self
            .entries()
            .await?
            .into_iter()
            .filter(|e| e.id() == id || e.key == id)
            .collect();
        match found.len() {
            0 => Err(CliError::Usage(format!(
                "no approval entry {id:?} in namespace {}; `{} list` shows them",
                self.args.approvals_namespace,
                crate::program::name()
            ))),
            1 => Ok(found.remove(0)),
            _ => Err(CliError::Usage(format!(
                "{id:?} is a key in several ConfigMaps; give CONFIGMAP/KEY"
            ))),
        }
    }

    /// Applies a change to the `data` of ConfigMap `name`: reads it, asks `change` for the
    /// keys to set (or remove, with null), and merge-patches them with the resourceVersion
    /// read as a precondition. On a conflict, reads again and recomputes.
    async fn update<F>(&self, name: &str, mut change: F) -> Result<(), CliError>
    where
        F: FnMut(&BTreeMap<String, String>) -> Result<serde_json::Map<String, Value>, CliError>,
    {
        for attempt in 1..=ATTEMPTS {
            let cm = self.configmaps.get(name).await.map_err(api_error)?;
            let data = change(cm.data.as_ref().unwrap_or(&BTreeMap::new()))?;
            let patch = json!({
                "metadata": {"resourceVersion": cm.metadata.resource_version},
                "data": data,
            });
            match self
                .configmaps
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.is_conflict() => {
                    if attempt < ATTEMPTS {
                        eprintln!(
                            "ConfigMap {name} changed meanwhile; reading it again (attempt {attempt} of {ATTEMPTS})"
                        );
                    }
                }
                Err(e) => return Err(api_error(e)),
            }
        }
        Err(CliError::Api(format!(
            "ConfigMap {name} kept changing; gave up after {ATTEMPTS} attempts"
        )))
    }

    async fn request(&self, args: RequestArgs) -> Result<String, CliError> {
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

    async fn approve(&self, id: &str, pin: Option<&str>) -> Result<String, CliError> {
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
            a.approved_by.push(me.as_str().into());
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
                a.approved_as.insert(me.clone(), as_groups);
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

    async fn revoke(&self, id: &str) -> Result<String, CliError> {
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

    async fn list(&self, args: ListArgs) -> Result<String, CliError> {
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
                        err.reason.clone(),
                    ]
                }
            };
            rows.push(row);
        }
        let mut out = String::new();
        crate::audit::read::table(
            &mut out,
            ["ID", "FOR", "SCOPE", "APPROVERS", "LEFT", "STATE", "REASON"],
            &rows,
        );
        Ok(out)
    }

    /// The requests `me` may approve now, oldest first, as a table.
    async fn inbox_table(
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

    async fn inbox(&self, args: InboxArgs) -> Result<String, CliError> {
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
    async fn wait(&self, args: WaitArgs) -> Result<String, CliError> {
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

    async fn export(&self, id: &str) -> Result<String, CliError> {
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
        let doc = super::offline::EntryDoc::of_cluster(
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
    async fn import(&self, file: &super::EntryFile) -> Result<String, CliError> {
        let doc = super::offline::read_entry(file).map_err(CliError::Usage)?;
        let signed = doc.parse().map_err(CliError::Usage)?;
        if signed.signatures.is_empty() {
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
                .signatures
                .iter()
                .filter(|s| !a.signatures.contains(s))
                .cloned()
                .collect();
            if added.is_empty() {
                return Err(CliError::Usage(format!("{} already carries these signatures", doc.id())));
            }
            a.signatures.extend(added.iter().cloned());
            if !a.started() {
                // Whether the signatures complete it is the ledger's to judge against the
                // trusted signers; counting them as it will (one person once, however
                // they approved) lets the edit that completes it stamp approvedAt.
                a.checked = a.checked_by(&signers);
                let now = Timestamp::now();
                let gating = policies
                    .as_ref()
                    .map(|p| p.gating_scope(&a.scope()))
                    .unwrap_or_default();
                let requester = match &a.subject {
                    Subject::User(u) => u.to_string(),
                    Subject::Group(_) => String::new(),
                };
                let complete = crate::approvals::approvers(&a, &requester, now).suffice(
                    crate::policy::required_approvers(&gating).unwrap_or(1),
                    &crate::policy::required_levels(&gating),
                );
                if complete {
                    a.start_at(now.round(jiff::Unit::Second).unwrap_or(now));
                }
                a.checked.clear();
            }
            let mut patch = serde_json::Map::new();
            patch.insert(key.clone(), Value::String(a.to_yaml()));
            Ok(patch)
        })
        .await?;
        let names: Vec<&str> = added.iter().map(|s| s.signer.as_str()).collect();
        Ok(format!(
            "imported the signature(s) of {} into {}; the ledger accepted them\n",
            names.join(", "),
            doc.id()
        ))
    }

    async fn show(&self, id: &str) -> Result<String, CliError> {
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

/// The `signatures:` and `levels:` lines of `show`: each signature and whether it counts,
/// and each level of the gating policies, met or missing.
fn signatures_and_levels(a: &Approval, policies: Option<&PolicySet>, now: Timestamp) -> String {
    let mut out = String::new();
    if !a.signatures.is_empty() {
        let each: Vec<String> = a
            .signatures
            .iter()
            .zip(&a.checked)
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
        let requester = match &a.subject {
            Subject::User(u) => u,
            Subject::Group(_) => "",
        };
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
fn pin_of(a: &Approval) -> String {
    let mut terms = a.clone();
    terms.approved_by.clear();
    terms.approved_as.clear();
    terms.signatures.clear();
    terms.checked.clear();
    // The clock a `for:` entry's last approver starts is not one of its terms.
    terms.approved_at = None;
    let text = format!("{}\n{}", a.id, terms.to_yaml());
    crate::digest::sha256_hex(text.as_bytes())[..32].to_string()
}

/// The command that approves the entry `id` as it stands, pinned.
fn approve_command(id: &str, a: &Approval) -> String {
    format!("{} approve {id} --pin {}", crate::program::name(), pin_of(a))
}

/// Appends `text`, each line indented by two spaces.
fn push_indented(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
}

/// `UPDATE,DELETE prod/secrets/db-password`.
fn describe_scope(a: &Approval) -> String {
    let mut terms = String::new();
    if let Some(n) = a.max_uses {
        terms.push_str(&format!(" (max {n} use{})", if n == 1 { "" } else { "s" }));
    }
    if let Some(change) = &a.change {
        terms.push_str(&format!(" (change {}…)", &change[..change.len().min(19)]));
    }
    let ops = a.operations.map_or("ALL".to_string(), |ops| {
        ops.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(",")
    });
    let mut what = a.resource_string();
    if let Some(g) = a.api_group.as_deref().filter(|g| !g.is_empty()) {
        what = format!("{what}.{g}");
    }
    let ns = if a.namespace.is_empty() {
        String::new()
    } else {
        format!("{}/", a.namespace)
    };
    let name = a.name.as_deref().map_or("*".to_string(), str::to_string);
    format!("{ops} {ns}{what}/{name}{terms}")
}

fn time_since(then: Timestamp, now: Timestamp) -> String {
    let ago = now.duration_since(then);
    if ago.as_secs() < 60 {
        "<1m".to_string()
    } else {
        human(ago)
    }
}

/// `until 2026-…Z`, or `for 1h once approved` for a `for:` entry not yet started.
fn until(a: &Approval) -> String {
    match (a.valid_for, a.started()) {
        (Some(d), false) => format!("for {} once approved", human(d)),
        _ => format!("until {}", a.expires_at),
    }
}

fn time_left(a: &Approval, now: Timestamp) -> String {
    if let (Some(d), false) = (a.valid_for, a.started()) {
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

fn draft_from_flags(args: &RequestArgs, me: &str, now: Timestamp) -> Result<(String, Approval), CliError> {
    let resource = args
        .resource
        .as_deref()
        .ok_or_else(|| CliError::Usage("give --resource (or -f FILE)".into()))?;
    let reason = args
        .reason
        .clone()
        .ok_or_else(|| CliError::Usage("give --reason: say why you need this".into()))?;
    let subject = match &args.group {
        Some(g) => Subject::Group(g.as_str().into()),
        None => Subject::User(me.into()),
    };
    let expires_at = now
        .checked_add(args.duration)
        .map_err(|e| CliError::Usage(e.to_string()))?
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Second)
                .mode(jiff::RoundMode::Trunc),
        )
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let mut fields = serde_json::Map::new();
    let (who_key, who) = match &subject {
        Subject::User(u) => ("user", u),
        Subject::Group(g) => ("group", g),
    };
    fields.insert(who_key.into(), json!(who));
    fields.insert("resource".into(), json!(resource));
    for (field, value) in [
        ("apiGroup", &args.api_group),
        ("namespace", &args.namespace),
        ("name", &args.name),
    ] {
        if let Some(v) = value {
            fields.insert(field.into(), json!(v));
        }
    }
    if !args.operation.is_empty() {
        let ops: Vec<String> = args.operation.iter().map(|o| o.to_uppercase()).collect();
        fields.insert("operations".into(), json!(ops));
    }
    if !args.verb.is_empty() {
        let verbs: Vec<String> = args.verb.iter().map(|v| v.to_lowercase()).collect();
        fields.insert("verbs".into(), json!(verbs));
    }
    if let Some(change) = &args.change {
        fields.insert("change".into(), json!(change));
    }
    if let Some(n) = args.max_uses {
        fields.insert("maxUses".into(), json!(n));
    }
    if args.break_glass {
        fields.insert("breakGlass".into(), json!(true));
    }
    if args.once_approved {
        fields.insert("for".into(), json!(format!("{:#}", args.duration)));
    } else {
        fields.insert("expiresAt".into(), json!(expires_at.to_string()));
    }
    fields.insert("reason".into(), json!(reason));
    // JSON is YAML: the entry is parsed like any other, so the CLI never writes one that
    // the webhook would refuse to read.
    let text = Value::Object(fields).to_string();
    let a = parse_entry("new", &text).map_err(|e| CliError::Usage(e.reason))?;
    let who = match &a.subject {
        Subject::User(u) | Subject::Group(u) => u,
    };
    let ops = a.operations.map_or(String::new(), |o| {
        o.iter().map(|o| o.as_str()).collect::<Vec<_>>().join("-")
    });
    let key = suggested_key(
        &[
            who,
            &a.namespace,
            &a.resource,
            &a.sub_resource,
            a.name.as_deref().unwrap_or(""),
            &ops,
        ],
        now,
    );
    Ok((key, a))
}

/// The entries of a snippet that a denial printed (`KEY: |` and the entry indented under
/// it), or of a ConfigMap manifest's `data`. `--reason` replaces their reasons; a reason
/// still reading as the placeholder is refused.
fn drafts_from_file(
    path: &std::path::Path,
    args: &RequestArgs,
    now: Timestamp,
) -> Result<Vec<(String, Approval)>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let doc: Value = crate::yaml::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{}: not YAML: {e}", path.display())))?;
    let data = match doc.get("data") {
        Some(Value::Object(data)) => data.clone(),
        _ => match doc {
            Value::Object(map) => map,
            _ => {
                return Err(CliError::Usage(format!(
                    "{}: expected KEY: | and an entry under it, as a denial prints",
                    path.display()
                )));
            }
        },
    };
    let mut drafts = Vec::new();
    for (key, value) in data {
        let Value::String(entry) = value else {
            return Err(CliError::Usage(format!(
                "{key:?}: the entry must be a string (KEY: | then the entry)"
            )));
        };
        let mut a = parse_entry(&key, &entry).map_err(|e| CliError::Usage(e.to_string()))?;
        if let Some(reason) = &args.reason {
            a.reason = reason.as_str().into();
        }
        if args.max_uses.is_some() {
            a.max_uses = args.max_uses;
        }
        if args.change.is_some() {
            a.change = args.change.clone();
        }
        if a.reason.starts_with("TICKET-123") {
            return Err(CliError::Usage(format!(
                "{key:?}: replace the placeholder reason (or give --reason)"
            )));
        }
        if !a.approved_by.is_empty() {
            return Err(CliError::Usage(format!(
                "{key:?}: a request carries no approvers; approvers run {} approve",
                crate::program::name()
            )));
        }
        if a.expires_at <= now {
            return Err(CliError::Usage(format!(
                "{key:?}: expiresAt {} has passed; ask again from a fresh denial, or use --resource and --for",
                a.expires_at
            )));
        }
        drafts.push((key, a));
    }
    if drafts.is_empty() {
        return Err(CliError::Usage(format!("{}: no entries", path.display())));
    }
    Ok(drafts)
}
