//! What a decision is asked about, whichever review it came in: a view over an admission
//! request or an authorization request, with the accessors the decision, its words and
//! its records read. It imports only the wire formats' request types and the policy
//! target.

use crate::admission::AdmissionRequest;
use crate::authorization::AccessRequest;
use crate::operation::Operation;
use crate::policy::Target;

/// What a decision is asked about.
#[derive(Debug, Clone, Copy)]
pub enum Request<'r, 'a> {
    /// An AdmissionReview's request: a write or a CONNECT, with its objects.
    Admission(&'r AdmissionRequest<'a>),
    /// A SubjectAccessReview: a read, or something jitgate has no opinion on.
    Access(&'r AccessRequest),
}

impl<'r, 'a> From<&'r AdmissionRequest<'a>> for Request<'r, 'a> {
    fn from(req: &'r AdmissionRequest<'a>) -> Self {
        Request::Admission(req)
    }
}

impl<'r> From<&'r AccessRequest> for Request<'r, 'static> {
    fn from(req: &'r AccessRequest) -> Self {
        Request::Access(req)
    }
}

impl<'r> Request<'r, '_> {
    pub fn user(&self) -> &'r str {
        match *self {
            Request::Admission(r) => &r.user_info.username,
            Request::Access(r) => &r.user.username,
        }
    }

    pub fn groups(&self) -> &'r [String] {
        match *self {
            Request::Admission(r) => &r.user_info.groups,
            Request::Access(r) => &r.user.groups,
        }
    }

    pub fn api_group(&self) -> &'r str {
        match *self {
            Request::Admission(r) => &r.resource.group,
            Request::Access(r) => &r.resource.group,
        }
    }

    pub fn resource(&self) -> &'r str {
        match *self {
            Request::Admission(r) => &r.resource.resource,
            Request::Access(r) => &r.resource.resource,
        }
    }

    pub fn sub_resource(&self) -> &'r str {
        match *self {
            Request::Admission(r) => &r.sub_resource,
            Request::Access(r) => &r.sub_resource,
        }
    }

    pub fn namespace(&self) -> &'r str {
        match *self {
            Request::Admission(r) => &r.namespace,
            Request::Access(r) => &r.namespace,
        }
    }

    /// The object's name; empty for a create without one, and for a list or watch.
    pub fn name(&self) -> &'r str {
        match *self {
            Request::Admission(r) => &r.name,
            Request::Access(r) => &r.name,
        }
    }

    /// The operation or read verb a policy can gate; `None` for an authorization review
    /// that is not a read of a resource.
    pub fn operation(&self) -> Option<Operation> {
        match *self {
            Request::Admission(r) => Some(r.operation),
            Request::Access(r) => r.operation(),
        }
    }

    /// `resource` or `resource/subresource`, as policies and approvals write it.
    pub fn resource_path(&self) -> String {
        if self.sub_resource().is_empty() {
            self.resource().to_string()
        } else {
            format!("{}/{}", self.resource(), self.sub_resource())
        }
    }

    /// The operation or verb as the request named it.
    pub fn verb(&self) -> &'r str {
        match *self {
            Request::Admission(r) => r.operation.as_str(),
            Request::Access(r) => &r.verb,
        }
    }

    /// The object the request writes, or for a DELETE the one it deletes; `None` for a
    /// CONNECT (whose object is its options) and for a read.
    pub fn object(&self) -> Option<&'r serde_json::value::RawValue> {
        match *self {
            Request::Admission(r) => match r.operation {
                Operation::Delete => r.old_object,
                Operation::Connect => None,
                _ => r.object,
            },
            Request::Access(_) => None,
        }
    }

    /// What policies match against; `None` when nothing could gate the request.
    pub fn target(&self) -> Option<Target<'r>> {
        Some(Target {
            api_group: self.api_group(),
            resource: self.resource(),
            sub_resource: self.sub_resource(),
            namespace: self.namespace(),
            operation: self.operation()?,
            object: self.object(),
        })
    }
}
