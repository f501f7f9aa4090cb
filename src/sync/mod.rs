//! Keeping the approval store in step with where approvals live: a local file
//! ([`file`]), or labelled ConfigMaps in a cluster, followed with a watch ([`cluster`]).
//! Both parse entries with the same code and replace the store's whole state at once.

pub mod cluster;
pub mod file;

pub use cluster::{ClusterError, ClusterSource};
pub use file::FileSync;
