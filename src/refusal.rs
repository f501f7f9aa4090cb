//! Refusals: answers the server gives when it cannot decide, or cannot stand behind a
//! decision. They are not policy outcomes (those are [`crate::decision::Reason`]s); each
//! is rendered as a Kubernetes `Status` in one place ([`crate::respond::status`])
//! and recorded like any other answer.
//!
//! Before a review is read, a refusal is an HTTP 4xx whose body is the `Status`. After,
//! it is a denial carrying it (an AdmissionReview's `status`, a SubjectAccessReview's
//! `reason`): the API server shows its message.

use http::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The body is not the review its path takes; the text says why, and never quotes it.
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body could not be read")]
    UnreadableBody,
    /// Another method than POST on a review's path.
    #[error("only POST is accepted on {0}")]
    WrongMethod(&'static str),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The decision record could not be written, and nothing is allowed without one.
    #[error("the audit record could not be written, and nothing is allowed without one")]
    AuditUnavailable,
    /// The record was not written before the API server's deadline.
    #[error("the audit record could not be written before the API server's deadline")]
    DeadlineExceeded,
    /// `serve --client-ca-file` is set and the caller is not the API server; the text
    /// says what its connection presented.
    #[error("{0}")]
    Unauthenticated(String),
    /// The body did not arrive whole within the deadline for reading one.
    #[error("the request body did not arrive within {seconds} s")]
    BodyTimeout { seconds: u64 },
    /// Too many request bodies are held at once to take this one in time.
    #[error("the server is holding too many request bodies at once to read this one")]
    Overloaded,
    /// A grant's use of a `maxUses` approval could not be recorded.
    #[error(
        "approval {approval:?} allows a limited number of uses, and this use could not be recorded, so it is not granted"
    )]
    UsageUnavailable { approval: String },
}

impl Refusal {
    /// What an engineer reads when a review that was read is refused: the operation or
    /// verb, the resource, the code, and that they may retry.
    pub fn about(&self, req: crate::request::Request<'_, '_>) -> String {
        format!(
            "jitgate: {} of {} refused ({}): {self}. Retry shortly; tell the cluster operators if this persists.",
            req.verb(),
            req.resource(),
            self.code()
        )
    }

    /// The code written in records and metrics. Every refusal of a body that is not a
    /// readable AdmissionReview is `bad_request`; the HTTP status says which kind.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadRequest(_)
            | Refusal::UnreadableBody
            | Refusal::WrongMethod(_)
            | Refusal::UnsupportedMediaType
            | Refusal::TooLarge { .. }
            | Refusal::BodyTimeout { .. } => "bad_request",
            Refusal::Unauthenticated(_) => "unauthenticated",
            Refusal::Overloaded => "overloaded",
            Refusal::AuditUnavailable => "audit_unavailable",
            Refusal::DeadlineExceeded => "deadline_exceeded",
            Refusal::UsageUnavailable { .. } => "usage_unavailable",
        }
    }

    /// The HTTP status of the refusal, and of the `Status` that carries it.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) | Refusal::UnreadableBody => StatusCode::BAD_REQUEST,
            Refusal::WrongMethod(_) => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Refusal::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Refusal::Overloaded
            | Refusal::AuditUnavailable
            | Refusal::DeadlineExceeded
            | Refusal::UsageUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}
