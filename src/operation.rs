//! What a request does: an admission operation (`CREATE`, `UPDATE`, `DELETE`, `CONNECT`)
//! or a read verb (`get`, `list`, `watch`), and sets of them. Policies, approvals, the
//! decision and both wire formats name operations with these types; this module imports
//! nothing of the crate.

use serde::Deserialize;
use std::fmt;

/// What a request does: one of the four operations of an admission request, or one of
/// the read verbs that only an authorization review (`crate::authorization`) carries.
/// Policies and approvals name both in one set ([`OpSet`]), as `operations:` and `verbs:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
    /// Never in an AdmissionReview: admission does not see reads.
    #[serde(skip_deserializing)]
    Get,
    #[serde(skip_deserializing)]
    List,
    #[serde(skip_deserializing)]
    Watch,
    /// Acting as someone else (`kubectl --as`): an authorization review's verb on
    /// `serviceaccounts`, `users` or `groups`. Treated as a read: only the authorization
    /// webhook carries it, and it changes nothing by itself.
    #[serde(skip_deserializing)]
    Impersonate,
}

impl Operation {
    pub const ALL: [Operation; 8] = [
        Operation::Create,
        Operation::Update,
        Operation::Delete,
        Operation::Connect,
        Operation::Get,
        Operation::List,
        Operation::Watch,
        Operation::Impersonate,
    ];

    /// The operations of admission requests, as policies name them (`operations:`).
    pub const ADMISSION: [Operation; 4] = [
        Operation::Create,
        Operation::Update,
        Operation::Delete,
        Operation::Connect,
    ];

    /// The verbs only an authorization review carries, as policies and approvals name
    /// them (`verbs:`): the reads, and `impersonate`.
    pub const READS: [Operation; 4] = [
        Operation::Get,
        Operation::List,
        Operation::Watch,
        Operation::Impersonate,
    ];

    /// `CREATE`… for an admission operation, `get`… for a read verb, as Kubernetes
    /// writes each.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
            Operation::Get => "get",
            Operation::List => "list",
            Operation::Watch => "watch",
            Operation::Impersonate => "impersonate",
        }
    }

    /// True for a read verb.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Operation::Get | Operation::List | Operation::Watch | Operation::Impersonate
        )
    }

    /// The read verb written `text` (`get`, `list`, `watch`).
    pub fn read_verb(text: &str) -> Option<Operation> {
        Self::READS.into_iter().find(|v| v.as_str() == text)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of operations, as a bit mask: cheap to copy and to test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpSet(u8);

impl OpSet {
    /// Every operation and every read verb.
    pub const ALL: OpSet = OpSet(0b1111_1111);
    /// The four admission operations (`operations: ["*"]` in a policy).
    pub const ADMISSION: OpSet = OpSet(0b1111);

    /// The admission operations in this set.
    pub fn admission(self) -> OpSet {
        OpSet(self.0 & Self::ADMISSION.0)
    }

    /// The read verbs in this set.
    pub fn reads(self) -> OpSet {
        OpSet(self.0 & !Self::ADMISSION.0)
    }

    fn bit(op: Operation) -> u8 {
        1 << (op as u8)
    }

    pub fn insert(&mut self, op: Operation) {
        self.0 |= Self::bit(op);
    }

    pub fn contains(self, op: Operation) -> bool {
        self.0 & Self::bit(op) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Operation> {
        Operation::ALL.into_iter().filter(move |op| self.contains(*op))
    }
}

impl FromIterator<Operation> for OpSet {
    fn from_iter<I: IntoIterator<Item = Operation>>(iter: I) -> Self {
        let mut set = OpSet::default();
        for op in iter {
            set.insert(op);
        }
        set
    }
}
