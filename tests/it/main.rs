//! The integration tests, one binary for all: each module is one story of the server as
//! the API server, a person at kubectl, or an auditor meets it, over real TLS. One binary
//! links kube, rustls and axum once rather than once per file. `support` starts the real
//! server, talks to it as the API server does, and serves a small Kubernetes API.

mod support;

mod api_server_config;
mod approvals_file;
mod approver_cli;
mod audit;
mod authorization;
mod bypass;
mod cli;
mod cluster;
mod events;
mod hardening;
mod impersonation;
mod ledger;
mod ledger_properties;
mod mail;
mod metrics;
mod mtls;
mod notifications;
mod offline;
mod openshift;
mod operations;
mod precise;
mod properties;
mod realk8s;
mod signers;
mod uses_signed;
mod webhook;
mod zsp;
mod zsp_rbac;
