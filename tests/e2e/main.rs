//! End-to-end scenarios against the real service, a real Postgres and a real OpenBao.

mod authentication;
mod clients;
mod concurrency;
mod contract;
mod dev_services;
mod event_store;
mod failures;
mod fake_provider;
mod family_a;
mod family_b;
mod family_c;
mod family_d;
mod family_e;
mod harness;
mod history;
mod idempotency;
mod input;
mod jwks_url;
mod keyring;
mod operations;
mod resolve;
mod rotation;
mod shredding;
mod round_trips;
mod telemetry;
mod upgrade;
