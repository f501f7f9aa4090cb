//! jitgate: a Kubernetes validating admission webhook that denies gated operations unless
//! a live, just-in-time approval matches them.
//!
//! The request path, layer by layer (each imports only the layers under it; `.ci/cycles.py`
//! checks): [`server`] checks the transport and runs one pipeline for both reviews;
//! [`admission`] and [`authorization`] decode the two wire formats into a [`request`];
//! [`decision::decide`] decides it from the [`policy`] set and the [`approvals`] (pure, no
//! I/O; edits of the approvals ConfigMaps are judged by the [`ledger`] there too);
//! [`respond`] turns the decision, or a [`refusal::Refusal`] of the server's own, into the
//! response (words from [`explain`]); [`audit`] records what is answered before it is sent.
//! [`sync`] follows the approvals, policies and signers; [`app`] wires it all together;
//! [`cli`] and [`check`] are the command line. [`operation`], [`duration`] and
//! [`program`] are leaves that everything may use.

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
pub mod duration;
pub mod explain;
pub mod grants;
pub mod ledger;
pub mod manifests;
mod memory;
pub mod metrics;
pub mod mtls;
pub mod names;
pub mod news;
pub mod notices;
pub mod operation;
pub mod pattern;
pub mod policy;
pub mod program;
pub mod rbac;
mod redact;
pub mod refusal;
pub mod request;
pub mod respond;
pub mod server;
pub mod signing;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub mod usage;
pub mod watch;
mod yaml;
