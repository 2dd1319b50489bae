//! Integration tests: whole nodes started in-process on free ports, driven through the
//! `redis` crate (a real client library), raw sockets and HTTP.

mod admin_api;
mod client;
mod cluster;
mod common;
mod compat;
mod connection;
mod dashboard;
mod databases;
mod deploy;
mod failover;
mod gossip;
mod hot_keys;
mod http;
mod keyspace;
mod memory;
mod namespaces;
mod netns;
mod netns_cluster;
mod pg;
mod postgres;
mod process;
mod protocol;
mod pubsub;
mod replication;
mod scripting;
mod strings;
mod tls;
mod tracking;
mod transactions;
mod up;
