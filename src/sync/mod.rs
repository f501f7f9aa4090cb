//! Keeping the approval store in step with where approvals live: a local file
//! ([`file`]), or labelled ConfigMaps in a cluster, followed with a watch ([`cluster`]).
//! Both parse entries with the same code and replace the store's whole state at once.
//! The other things jitgate follows live here too: the policy directory ([`policies`]),
//! the report of unreviewed break-glass entries ([`break_glass`]), the removal of
//! expired entries ([`prune`]), and the trusted signers of offline approvals ([`signers`]). (The serving
//! certificate is followed by `crate::tls`.)

pub mod anchors;
pub mod break_glass;
pub mod cluster;
pub mod file;
pub mod policies;
pub mod prune;
pub mod signers;

pub use cluster::{ClusterError, ClusterSource};
pub use file::FileSync;
