//! jitgate: a Kubernetes validating admission webhook that denies gated operations unless
//! a live, just-in-time approval matches them.
//!
//! The request path: [`server`] checks the transport, [`admission`] decodes the review,
//! [`decision::decide`] decides it from the [`policy`] set and the [`approvals`] (pure, no
//! I/O; edits of the approvals ConfigMaps are judged by the [`ledger`] there too),
//! [`admission::respond`] turns the decision into the response (words from [`explain`]),
//! [`audit`] records what is answered, and a failure of the server's own is a
//! [`refusal::Refusal`]. [`sync`] follows the approvals and policies; [`app`] wires it all
//! together; [`cli`] and [`check`] are the command line.

pub mod admission;
pub mod app;
pub mod approvals;
pub mod audit;
pub mod authorization;
pub mod change;
pub mod check;
pub mod cli;
pub mod decision;
mod digest;
pub mod explain;
pub mod ledger;
pub mod manifests;
mod memory;
pub mod metrics;
pub mod mtls;
pub mod notify;
pub mod pattern;
pub mod policy;
mod redact;
pub mod refusal;
pub mod server;
pub mod signing;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub mod usage;
pub mod watch;
mod yaml;
