//! The names the shipped install gives jitgate's own objects, which several layers need.
//! Imports nothing of the crate.

/// The namespace of the approvals ConfigMaps (and of jitgate) unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "jitgate-system";
