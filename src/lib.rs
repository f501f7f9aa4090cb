//! jitgate: a Kubernetes validating admission webhook that denies gated operations unless
//! a live, just-in-time approval matches them.
//!
//! The request path: [`admission`] decodes the review, [`decision`] decides it from the
//! [`policy`] set and the [`approvals`] index (pure, no I/O), [`explain`] words the answer,
//! [`audit`] records it, [`server`] carries it over TLS. Edits of the approvals ConfigMaps
//! themselves are judged by the [`ledger`]. [`sync`] keeps the approvals
//! current; [`app`] wires it all together; [`cli`] and [`check`] are the command line.

pub mod admission;
pub mod app;
pub mod approvals;
pub mod audit;
pub mod change;
pub mod check;
pub mod cli;
pub mod decision;
mod digest;
pub mod explain;
pub mod ledger;
pub mod manifests;
pub mod metrics;
pub mod pattern;
pub mod policy;
mod redact;
pub mod refusal;
pub mod server;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub mod usage;
pub mod watch;
mod yaml;
