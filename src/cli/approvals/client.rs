//! The API server as the ledger's commands see it.

use super::LedgerArgs;
use super::*;
use crate::approvals::{Approval, EntryError, LABEL, parse_entry};
use crate::policy::{PolicySet, parse_policies};
use crate::signing::Signers;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::signing::{Binding, SIGNERS_CONFIGMAP};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

/// What the RBAC-objects way's grant of an approval looks like in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum GrantSeen {
    /// Its RoleBinding exists, jitgate's, annotated with this expiry.
    Live(String),
    /// An object of the grant's name (this kind) is not jitgate's: jitgate will not bind it.
    Blocked(&'static str),
    Absent,
}

/// The grant of approval `id`, as its RoleBinding (if any) shows it.
pub(super) fn grant_seen(binding: Option<&RoleBinding>, id: &str) -> GrantSeen {
    match binding {
        // Anyone who may create RoleBindings there can take the (derived) name.
        Some(b) if !crate::rbac::is_grant_of(&b.metadata, id) => GrantSeen::Blocked("RoleBinding"),
        Some(b) => GrantSeen::Live(
            b.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::rbac::EXPIRES_ANNOTATION))
                .cloned()
                .unwrap_or_else(|| "?".into()),
        ),
        None => GrantSeen::Absent,
    }
}

fn read_error(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.reason,
        e => e.to_string(),
    }
}

pub(super) struct ApprovalsApi {
    pub(super) client: Client,
    pub(super) configmaps: Api<ConfigMap>,
    pub(super) args: LedgerArgs,
}

/// One key of an approvals ConfigMap.
pub(super) struct Entry {
    pub(super) configmap: String,
    pub(super) key: String,
    pub(super) parsed: Result<Approval, EntryError>,
}

impl Entry {
    pub(super) fn id(&self) -> String {
        format!("{}/{}", self.configmap, self.key)
    }
}

impl ApprovalsApi {
    pub(super) async fn connect(args: LedgerArgs) -> Result<ApprovalsApi, CliError> {
        let config = crate::sync::cluster::client_config(args.kubeconfig.as_deref())
            .await
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let client = Client::try_from(config).map_err(|e| CliError::Api(e.to_string()))?;
        let configmaps = Api::namespaced(client.clone(), &args.approvals_namespace);
        Ok(ApprovalsApi {
            client,
            configmaps,
            args,
        })
    }

    /// Who the API server says we are.
    pub(super) async fn whoami(&self) -> Result<String, CliError> {
        self.whoami_with_groups().await.map(|(user, _)| user)
    }

    /// Who the API server says we are, and our groups.
    pub(super) async fn whoami_with_groups(&self) -> Result<(String, Vec<String>), CliError> {
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

    /// Whether the grant of approval `id` (`serve --grants rbac`) is live: its RoleBinding
    /// in `namespace`, with the expiry it is annotated with; when there is none, whether a
    /// Role of the grant's name that jitgate did not make blocks it. `Err` when it cannot
    /// be read (most people may not read RoleBindings).
    pub(super) async fn grant_binding(&self, namespace: &str, id: &str) -> Result<GrantSeen, String> {
        let name = crate::rbac::object_name(id);
        let bindings: Api<RoleBinding> = Api::namespaced(self.client.clone(), namespace);
        let seen = grant_seen(bindings.get_opt(&name).await.map_err(read_error)?.as_ref(), id);
        if seen != GrantSeen::Absent {
            return Ok(seen);
        }
        let roles: Api<Role> = Api::namespaced(self.client.clone(), namespace);
        Ok(match roles.get_opt(&name).await {
            Ok(Some(r)) if !crate::rbac::is_grant_of(&r.metadata, id) => GrantSeen::Blocked("Role"),
            _ => GrantSeen::Absent,
        })
    }

    /// The grant objects' RoleBindings in `namespace` (those carrying jitgate's label),
    /// by name. `Err` when they cannot be read.
    pub(super) async fn grant_bindings(
        &self,
        namespace: &str,
    ) -> Result<BTreeMap<String, RoleBinding>, String> {
        let bindings: Api<RoleBinding> = Api::namespaced(self.client.clone(), namespace);
        let selector = ListParams::default().labels(&format!(
            "{}={}",
            crate::rbac::MANAGED_BY.0,
            crate::rbac::MANAGED_BY.1
        ));
        let listed = bindings.list(&selector).await.map_err(read_error)?;
        Ok(listed
            .items
            .into_iter()
            .filter_map(|b| Some((b.metadata.name.clone()?, b)))
            .collect())
    }

    /// The policies, from their ConfigMap; `None` (with a note) when they cannot be read.
    pub(super) async fn policies(&self) -> Option<PolicySet> {
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
    pub(super) async fn entries(&self) -> Result<Vec<Entry>, CliError> {
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
                    a.rare.make_mut().checked = a.checked_by(&signers);
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
    pub(super) async fn binding(&self) -> Option<Binding> {
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
    pub(super) async fn signers(&self) -> Signers {
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
    pub(super) async fn find(&self, id: &str) -> Result<Entry, CliError> {
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
    pub(super) async fn update<F>(&self, name: &str, mut change: F) -> Result<(), CliError>
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
}
