//! The AdmissionReview `admission.k8s.io/v1` wire format: what the API server sends, and
//! the response jitgate returns.
//!
//! Only the fields a decision needs are parsed into typed values. `object`, `oldObject`
//! and `options` stay raw JSON borrowed from the request body: a Secret's data lives there,
//! and building a tree for it would cost half the CPU of a request. Only the change
//! fingerprint (`crate::change`) reads them, for denials and for approvals pinned to a
//! change, and it keeps nothing of them but paths and a hash.

pub use crate::operation::{OpSet, Operation};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";
/// The longest `request.uid` taken. The API server sends a UUID (36 characters); the uid is
/// echoed in the answer and written in the record and in log lines, so a caller that
/// forges a review cannot make those megabytes long through it.
pub const MAX_UID: usize = 128;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    pub resource: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The part of an AdmissionRequest that jitgate reads. Unknown fields are ignored, as the
/// API server adds fields over time.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest<'a> {
    pub uid: String,
    /// The object's kind (for an Event about it); absent in some hand-made reviews.
    #[serde(default)]
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    pub operation: Operation,
    pub user_info: UserInfo,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(borrow, default)]
    pub object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub old_object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub options: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewEnvelope<'a> {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(borrow)]
    request: Option<AdmissionRequest<'a>>,
}

/// Why a body is not an AdmissionReview v1. The text is safe to return and log: it never
/// carries any part of the body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    #[error("the body is not an AdmissionReview: {0}")]
    Shape(String),
    #[error("apiVersion must be {API_VERSION:?}{0}")]
    ApiVersion(String),
    #[error("kind must be {KIND:?}")]
    Kind(String),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("request.uid is empty")]
    EmptyUid,
    #[error("request.uid is longer than {MAX_UID} bytes (the API server sends a UUID)")]
    LongUid,
}

/// Decodes an AdmissionReview v1 body. The returned request borrows from `body`.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest<'_>, DecodeError> {
    let envelope: ReviewEnvelope<'_> = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            // A review of another version fails on its request's shape first; the wrong
            // version is the more useful thing to say.
            if let Ok(outer) = serde_json::from_slice::<TypeMeta>(body) {
                check_type(outer.api_version.as_deref(), outer.kind.as_deref())?;
            }
            return Err(DecodeError::Shape(describe_json_error(&e)));
        }
        Err(e) => return Err(DecodeError::Syntax(describe_json_error(&e))),
    };
    check_type(envelope.api_version.as_deref(), envelope.kind.as_deref())?;
    let request = envelope.request.ok_or(DecodeError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(DecodeError::EmptyUid);
    }
    if request.uid.len() > MAX_UID {
        return Err(DecodeError::LongUid);
    }
    Ok(request)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

/// Checks the review's type. What a client sent there is not echoed, but another known
/// version of the review is named, as a hint.
fn check_type(api_version: Option<&str>, kind: Option<&str>) -> Result<(), DecodeError> {
    if api_version != Some(API_VERSION) {
        let hint = match api_version {
            Some("admission.k8s.io/v1beta1") => {
                ", not admission.k8s.io/v1beta1 (set admissionReviewVersions: [v1])"
            }
            None => " (missing)",
            Some(_) => "",
        };
        return Err(DecodeError::ApiVersion(hint.to_string()));
    }
    if kind != Some(KIND) {
        return Err(DecodeError::Kind(String::new()));
    }
    Ok(())
}

/// Best effort: the uid of a body that failed to decode, so an error can still be tied to
/// the request in the record.
pub fn salvage_uid(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Uid {
        uid: String,
    }
    #[derive(Deserialize)]
    struct Env {
        request: Uid,
    }
    serde_json::from_slice::<Env>(body)
        .ok()
        .map(|e| short(&e.request.uid))
        .filter(|u| !u.is_empty())
}

/// serde_json's message, with the input's values taken out.
fn describe_json_error(e: &serde_json::Error) -> String {
    crate::redact::values(&e.to_string())
}

/// Caps a client-supplied string before it is echoed in an error.
fn short(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A Kubernetes `Status`: the body of every refusal before a review is read, and the
/// `status` of every denial in a response. kubectl prints it as `Error from server
/// (<reason>): ... <message>`. The one shape of it in jitgate.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub status: &'static str,
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Status {
    /// A failure with `code` (an HTTP status) and the `reason` Kubernetes gives it.
    pub fn failure(code: http::StatusCode, message: String) -> Self {
        let reason = match code {
            http::StatusCode::BAD_REQUEST => "BadRequest",
            http::StatusCode::FORBIDDEN => "Forbidden",
            http::StatusCode::NOT_FOUND => "NotFound",
            http::StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
            http::StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
            http::StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
            _ => "InternalError",
        };
        Status {
            api_version: "v1",
            kind: "Status",
            status: "Failure",
            code: code.as_u16(),
            reason,
            message,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Written into the API server's audit event for the request, each key prefixed with
    /// the webhook's name (`gate.jitgate.dev/decision`): see [`crate::respond::audit_annotations`].
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub audit_annotations: std::collections::BTreeMap<&'static str, String>,
}

impl AdmissionResponse {
    pub fn allow(uid: &str) -> Self {
        AdmissionResponse {
            uid: uid.to_string(),
            allowed: true,
            status: None,
            warnings: Vec::new(),
            audit_annotations: Default::default(),
        }
    }

    /// A denial with `code: 403` and `reason: Forbidden`, which kubectl shows as
    /// "Error from server (Forbidden)" followed by the message.
    pub fn deny(uid: &str, message: String) -> Self {
        AdmissionResponse {
            uid: uid.to_string(),
            allowed: false,
            status: Some(Status::failure(http::StatusCode::FORBIDDEN, message)),
            warnings: Vec::new(),
            audit_annotations: Default::default(),
        }
    }

    /// The whole AdmissionReview that carries this response.
    pub fn into_review(self) -> ReviewResponse {
        ReviewResponse {
            api_version: API_VERSION,
            kind: KIND,
            response: self,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub response: AdmissionResponse,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(request: &str) -> String {
        format!(r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{request}}}"#)
    }

    const SECRET_UPDATE: &str = r#"{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Secret"},
        "resource":{"group":"","version":"v1","resource":"secrets"},"name":"db","namespace":"prod",
        "operation":"UPDATE","userInfo":{"username":"alice","groups":["dev"]},
        "object":{"data":{"password":"c2VjcmV0"}},"oldObject":null,"dryRun":true}"#;

    #[test]
    fn a_review_decodes_with_its_objects_left_raw() {
        let body = review(SECRET_UPDATE);
        let req = decode(body.as_bytes()).unwrap();
        assert_eq!(req.uid, "u-1");
        assert_eq!(req.operation, Operation::Update);
        assert_eq!(req.resource.resource, "secrets");
        assert_eq!(req.user_info.groups, vec!["dev"]);
        assert!(req.dry_run);
        assert_eq!(req.object.unwrap().get(), r#"{"data":{"password":"c2VjcmV0"}}"#);
        assert!(req.old_object.is_none());
    }

    #[test]
    fn every_captured_review_decodes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission/captured");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            panic!("fixtures missing at {}", dir.display());
        };
        let mut decoded = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            if file.starts_with('_') || !file.ends_with(".json") {
                continue;
            }
            let body = std::fs::read(&path).unwrap();
            let req = decode(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(!req.uid.is_empty(), "{file}");
            decoded += 1;
        }
        assert!(decoded >= 20, "only {decoded} captured reviews found");
    }

    #[test]
    fn a_wrong_api_version_is_named() {
        let body = review(SECRET_UPDATE).replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
        let err = decode(body.as_bytes()).unwrap_err();
        assert!(matches!(err, DecodeError::ApiVersion(_)));
        assert!(err.to_string().contains("not admission.k8s.io/v1beta1"), "{err}");
    }

    #[test]
    fn another_version_is_named_even_when_its_request_does_not_fit() {
        let body = r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#;
        assert!(matches!(decode(body.as_bytes()), Err(DecodeError::ApiVersion(_))));
    }

    #[test]
    fn a_review_without_request_or_uid_is_refused() {
        let body = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
        assert_eq!(decode(body.as_bytes()).unwrap_err(), DecodeError::NoRequest);
        let body = review(&SECRET_UPDATE.replace("\"u-1\"", "\"\""));
        assert_eq!(decode(body.as_bytes()).unwrap_err(), DecodeError::EmptyUid);
        let long = "u".repeat(MAX_UID + 1);
        let body = review(&SECRET_UPDATE.replace("\"u-1\"", &format!("\"{long}\"")));
        assert_eq!(decode(body.as_bytes()).unwrap_err(), DecodeError::LongUid);
        let longest = "u".repeat(MAX_UID);
        let body = review(&SECRET_UPDATE.replace("\"u-1\"", &format!("\"{longest}\"")));
        assert_eq!(decode(body.as_bytes()).unwrap().uid, longest);
    }

    #[test]
    fn an_unknown_operation_is_a_shape_error() {
        let body = review(&SECRET_UPDATE.replace("\"UPDATE\"", "\"PATCH\""));
        assert!(matches!(decode(body.as_bytes()), Err(DecodeError::Shape(_))));
        // A read verb is an authorization review's, never an admission operation.
        for verb in ["\"GET\"", "\"get\"", "\"WATCH\""] {
            let body = review(&SECRET_UPDATE.replace("\"UPDATE\"", verb));
            assert!(
                matches!(decode(body.as_bytes()), Err(DecodeError::Shape(_))),
                "{verb}"
            );
        }
    }

    #[test]
    fn decode_errors_never_quote_the_input() {
        let body = review(&SECRET_UPDATE.replace("\"dryRun\":true", "\"dryRun\":\"canary-XYZ\""));
        let err = decode(body.as_bytes()).unwrap_err().to_string();
        assert!(!err.contains("canary-XYZ"), "{err}");
        assert!(err.contains("expected a boolean"), "{err}");
    }

    #[test]
    fn a_denial_carries_code_403_and_reason_forbidden() {
        let json = serde_json::to_value(AdmissionResponse::deny("u-9", "no".into()).into_review()).unwrap();
        assert_eq!(json["apiVersion"], API_VERSION);
        assert_eq!(json["response"]["uid"], "u-9");
        assert_eq!(json["response"]["allowed"], false);
        assert_eq!(json["response"]["status"]["code"], 403);
        assert_eq!(json["response"]["status"]["reason"], "Forbidden");
        assert!(json["response"].get("warnings").is_none());
    }
}
