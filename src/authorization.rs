//! The SubjectAccessReview `authorization.k8s.io/v1` wire format of the API server's
//! authorization webhook: what it asks (may this user do this verb on this resource?),
//! and the answer jitgate gives.
//!
//! Admission never sees a read, so a gated `get`, `list` or `watch` reaches jitgate here.
//! jitgate only ever takes power away: its answer is a denial (`denied: true`, and the
//! API server answers 403 without asking RBAC) or no opinion (`allowed: false, denied:
//! false`, and the next authorizer, RBAC, decides). It never answers `allowed: true`.
//!
//! A review carries no object, only coordinates, so nothing of a Secret can reach a
//! record through it.

use crate::admission::{GroupVersionResource, UserInfo};
use crate::operation::Operation;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "authorization.k8s.io/v1";
pub const KIND: &str = "SubjectAccessReview";

/// What a SubjectAccessReview asks, as far as jitgate reads it. Unknown fields (label
/// and field selectors, `extra`) are ignored: they narrow a read, they never widen it.
#[derive(Debug, Clone, Default)]
pub struct AccessRequest {
    pub user: UserInfo,
    /// The verb as sent: `get`, `list`, `watch`, or any other verb.
    pub verb: String,
    pub resource: GroupVersionResource,
    pub sub_resource: String,
    pub namespace: String,
    pub name: String,
    /// The path of a non-resource request (`/healthz`, `/api`); never gated.
    pub non_resource_path: Option<String>,
}

impl AccessRequest {
    /// What this review asks to do, as policies and approvals name it: a read verb
    /// (`get`, `list`, `watch`), or the admission operation a write verb performs
    /// (`create` a CREATE, `update` and `patch` an UPDATE, `delete` and `deletecollection` a
    /// DELETE). Any verb on a connect subresource (`exec`, `attach`, `portforward`,
    /// `proxy`) is a CONNECT: `kubectl exec` asks `get` (its WebSocket upgrade) and then
    /// `create` on `pods/exec`. `None` for a non-resource request or another verb.
    pub fn operation(&self) -> Option<Operation> {
        if self.non_resource_path.is_some() {
            return None;
        }
        if CONNECT_SUBRESOURCES.contains(&self.sub_resource.as_str()) {
            return Some(Operation::Connect);
        }
        match self.verb.as_str() {
            "create" => Some(Operation::Create),
            "update" | "patch" => Some(Operation::Update),
            "delete" | "deletecollection" => Some(Operation::Delete),
            verb => Operation::read_verb(verb),
        }
    }

    /// True for a question rather than an access: `kubectl auth can-i` sends version
    /// `*`, which no real request carries. It is answered the same, and spends no use.
    pub fn is_probe(&self) -> bool {
        self.resource.version == "*"
    }
}

/// The subresources through which a person reaches into a pod, a service or a node: the
/// API server checks them as CONNECTs in admission, whatever the HTTP verb.
pub const CONNECT_SUBRESOURCES: [&str; 4] = ["exec", "attach", "portforward", "proxy"];

/// The authorization verbs by which a request performs `op`, as RBAC names them: what a
/// grant of `op` may answer `allowed` for. Not `deletecollection`, which deletes every
/// object at once: no approval grants it (`decision::decide`), so the rendered
/// authorization configuration does not send it to jitgate either.
pub fn verbs_of(op: Operation) -> &'static [&'static str] {
    match op {
        Operation::Create => &["create"],
        Operation::Update => &["update", "patch"],
        Operation::Delete => &["delete"],
        Operation::Connect => &["get", "create"],
        Operation::Get => &["get"],
        Operation::List => &["list"],
        Operation::Watch => &["watch"],
        Operation::Impersonate => &["impersonate"],
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    api_version: Option<String>,
    kind: Option<String>,
    spec: Option<Spec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    resource_attributes: Option<ResourceAttributes>,
    non_resource_attributes: Option<NonResourceAttributes>,
    #[serde(default)]
    user: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceAttributes {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    verb: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct NonResourceAttributes {
    #[serde(default)]
    path: String,
}

/// Why a body is not a SubjectAccessReview v1. The text is safe to return and log: it
/// never carries any part of the body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    #[error("the body is not a SubjectAccessReview: {0}")]
    Shape(String),
    #[error("apiVersion must be {API_VERSION:?}")]
    ApiVersion,
    #[error("kind must be {KIND:?}")]
    Kind,
    #[error("the SubjectAccessReview has no spec")]
    NoSpec,
    #[error("spec has neither resourceAttributes nor nonResourceAttributes")]
    NoAttributes,
    #[error("spec has no user and no groups: nobody to decide for")]
    NoSubject,
    #[error("spec.resourceAttributes has no verb")]
    NoVerb,
}

/// Decodes a SubjectAccessReview v1 body.
pub fn decode(body: &[u8]) -> Result<AccessRequest, DecodeError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
        let text = crate::redact::values(&e.to_string());
        if e.classify() == serde_json::error::Category::Data {
            DecodeError::Shape(text)
        } else {
            DecodeError::Syntax(text)
        }
    })?;
    if envelope.api_version.as_deref() != Some(API_VERSION) {
        return Err(DecodeError::ApiVersion);
    }
    if envelope.kind.as_deref() != Some(KIND) {
        return Err(DecodeError::Kind);
    }
    let spec = envelope.spec.ok_or(DecodeError::NoSpec)?;
    if spec.user.is_empty() && spec.groups.is_empty() {
        return Err(DecodeError::NoSubject);
    }
    let user = UserInfo {
        username: spec.user,
        groups: spec.groups,
    };
    match (spec.resource_attributes, spec.non_resource_attributes) {
        (Some(r), _) => {
            if r.verb.is_empty() {
                return Err(DecodeError::NoVerb);
            }
            Ok(AccessRequest {
                user,
                verb: r.verb,
                resource: GroupVersionResource {
                    group: r.group,
                    version: r.version,
                    resource: r.resource,
                },
                sub_resource: r.subresource,
                namespace: r.namespace,
                name: r.name,
                non_resource_path: None,
            })
        }
        (None, Some(n)) => Ok(AccessRequest {
            user,
            non_resource_path: Some(n.path),
            ..AccessRequest::default()
        }),
        (None, None) => Err(DecodeError::NoAttributes),
    }
}

/// The `status` of a SubjectAccessReview answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccessStatus {
    /// True only for a grant (a policy with `grant: true`); otherwise the next
    /// authorizer decides, unless `denied`.
    pub allowed: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub denied: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl AccessStatus {
    /// No opinion: the next authorizer (RBAC) decides.
    pub fn no_opinion() -> Self {
        AccessStatus {
            allowed: false,
            denied: false,
            reason: String::new(),
        }
    }

    /// No opinion, with a reason that the API server appends to RBAC's own refusal, if
    /// RBAC refuses.
    pub fn no_opinion_because(reason: String) -> Self {
        AccessStatus {
            allowed: false,
            denied: false,
            reason,
        }
    }

    /// A grant: the API server allows the request without asking RBAC.
    pub fn allow(reason: String) -> Self {
        AccessStatus {
            allowed: true,
            denied: false,
            reason,
        }
    }

    /// A denial: the API server answers 403 with `reason` after `is forbidden: User ...
    /// cannot <verb> resource ...:`, and asks no other authorizer.
    pub fn deny(reason: String) -> Self {
        AccessStatus {
            allowed: false,
            denied: true,
            reason,
        }
    }

    /// The whole SubjectAccessReview that carries this status.
    pub fn into_review(self) -> AccessReviewResponse {
        AccessReviewResponse {
            api_version: API_VERSION,
            kind: KIND,
            status: self,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessReviewResponse {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub status: AccessStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/authorization/captured")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn every_captured_review_decodes_to_its_coordinates() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/authorization/captured");
        let mut decoded = 0;
        for entry in std::fs::read_dir(&dir).expect("authorization fixtures") {
            let path = entry.unwrap().path();
            let req =
                decode(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                !req.user.username.is_empty() && !req.verb.is_empty(),
                "{}",
                path.display()
            );
            decoded += 1;
        }
        assert!(decoded >= 15, "only {decoded} captured reviews found");
    }

    #[test]
    fn a_get_a_log_and_a_list_with_selectors_read_as_the_api_server_sent_them() {
        let get = decode(&fixture("secret-get-bob.json")).unwrap();
        assert_eq!(get.operation(), Some(Operation::Get));
        assert_eq!(
            (get.resource.resource.as_str(), get.name.as_str()),
            ("secrets", "db-pass")
        );
        assert_eq!(get.namespace, "prod");
        assert_eq!(get.user.groups, ["dev-team", "system:authenticated"]);
        assert!(!get.is_probe());
        let log = decode(&fixture("pods-log-get-bob.json")).unwrap();
        assert_eq!((log.sub_resource.as_str(), log.name.as_str()), ("log", "shell"));
        let list = decode(&fixture("secret-list-labelselector-bob.json")).unwrap();
        assert_eq!(list.operation(), Some(Operation::List));
        assert!(list.name.is_empty());
        let can_i = decode(&fixture("selfsar-secret-get-bob.json")).unwrap();
        assert!(can_i.is_probe());
        let exec = decode(&fixture("pods-exec-create-bob.json")).unwrap();
        assert_eq!(
            exec.operation(),
            Some(Operation::Connect),
            "create of pods/exec is a CONNECT"
        );
        let upgrade = decode(&fixture("pods-exec-get-bob.json")).unwrap();
        assert_eq!(
            upgrade.operation(),
            Some(Operation::Connect),
            "so is the get of its WebSocket upgrade"
        );
    }

    #[test]
    fn a_non_resource_request_asks_for_no_operation() {
        let body = br#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
            "spec":{"nonResourceAttributes":{"path":"/healthz","verb":"get"},"user":"bob"}}"#;
        let req = decode(body).unwrap();
        assert_eq!(req.non_resource_path.as_deref(), Some("/healthz"));
        assert_eq!(req.operation(), None);
    }

    #[test]
    fn malformed_reviews_are_refused_with_a_reason_that_never_quotes_them() {
        let good = String::from_utf8(fixture("secret-get-bob.json")).unwrap();
        for (from, to, want) in [
            (
                "authorization.k8s.io/v1",
                "authorization.k8s.io/v1beta1",
                DecodeError::ApiVersion,
            ),
            (
                "\"SubjectAccessReview\"",
                "\"AdmissionReview\"",
                DecodeError::Kind,
            ),
            ("\"spec\"", "\"spek\"", DecodeError::NoSpec),
            (
                "\"resourceAttributes\"",
                "\"resourceAttributez\"",
                DecodeError::NoAttributes,
            ),
            ("\"verb\": \"get\"", "\"verb\": \"\"", DecodeError::NoVerb),
        ] {
            assert_eq!(
                decode(good.replace(from, to).as_bytes()).unwrap_err(),
                want,
                "{to}"
            );
        }
        let nobody = good.replace("\"user\": \"bob\"", "\"user\": \"\"").replace(
            "\"groups\": [\n      \"dev-team\",\n      \"system:authenticated\"\n    ]",
            "\"groups\": []",
        );
        assert_eq!(decode(nobody.as_bytes()).unwrap_err(), DecodeError::NoSubject);
        let err = decode(good.replace("\"db-pass\"", "42").as_bytes()).unwrap_err();
        assert!(matches!(err, DecodeError::Shape(_)), "{err}");
        let err = decode(b"{\"apiVersion\": canary-XYZ").unwrap_err().to_string();
        assert!(!err.contains("canary-XYZ"), "{err}");
    }

    #[test]
    fn jitgate_never_answers_allowed() {
        let review = serde_json::to_value(AccessStatus::no_opinion().into_review()).unwrap();
        assert_eq!(
            review,
            serde_json::json!({"apiVersion": API_VERSION, "kind": KIND, "status": {"allowed": false}})
        );
        let review = serde_json::to_value(AccessStatus::deny("no".into()).into_review()).unwrap();
        assert_eq!(
            review["status"],
            serde_json::json!({"allowed": false, "denied": true, "reason": "no"})
        );
    }
}
