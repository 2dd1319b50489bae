//! A node's configuration: every setting with a checked value ([`Config`]), whatever
//! it was read from — the binary's flags, environment and file (quorra-server's
//! `Settings`), or a test. [`Config::default`] holds every default.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use quorra_cluster::replication::Consistency;
use quorra_cluster::tls::{ClientCertificates, TlsFiles};
use quorra_origin::Catalog;
use quorra_store::MaxmemoryPolicy;

/// Default RESP port. Not Redis's 6379, so quorra and a local Redis can run side by side.
pub const DEFAULT_PORT: u16 = 7379;
/// Default admin HTTP port.
pub const DEFAULT_HTTP_PORT: u16 = 7380;
/// Default most simultaneous clients, as Redis's `maxclients`.
pub const DEFAULT_MAXCLIENTS: usize = 10_000;

/// A resolved configuration: every setting has a value that has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The TOML file the settings came from, if any.
    pub config_file: Option<PathBuf>,
    /// Listen address.
    pub bind: IpAddr,
    /// RESP port (0 = any).
    pub port: u16,
    /// HTTP port (0 = any).
    pub http_port: u16,
    /// Memory limit, bytes; 0 = unlimited.
    pub maxmemory: u64,
    /// Eviction policy.
    pub maxmemory_policy: MaxmemoryPolicy,
    /// Client password.
    pub requirepass: Option<String>,
    /// HTTP bearer token.
    pub http_token: Option<String>,
    /// TLS; `None` when no certificate is configured.
    pub tls: Option<TlsConfig>,
    /// Idle client timeout; `None` = never.
    pub timeout: Option<Duration>,
    /// Most simultaneous clients (lowered at start to fit the file-descriptor limit).
    pub maxclients: usize,
    /// Failed AUTH attempts after which a connection is closed; 0 = never.
    pub max_auth_failures: u32,
    /// Most commands one transaction may queue, and keys one connection may watch.
    pub max_transaction_commands: usize,
    /// Databases a client may SELECT: 0 to `databases - 1`.
    pub databases: usize,
    /// Above these shares of maxmemory or of the CPUs the node reports itself degraded.
    pub degraded_thresholds: crate::health::Thresholds,
    /// A script running longer than this makes the node answer other clients `BUSY`
    /// (and SCRIPT KILL may stop it).
    pub busy_reply_threshold: Duration,
    /// Most scripts the node caches (SCRIPT LOAD, EVAL).
    pub max_scripts: usize,
    /// Most bytes one worker thread's Lua interpreter may allocate.
    pub lua_max_memory: u64,
    /// Most bytes of client buffers, all clients together; 0 = no limit.
    pub maxmemory_clients: u64,
    /// Most simultaneous admin HTTP connections.
    pub http_max_connections: usize,
    /// Time an HTTP request's headers, then its body, may take to arrive.
    pub http_request_timeout: Duration,
    /// Protected mode.
    pub protected_mode: bool,
    /// Longest argument, bytes.
    pub proto_max_bulk_len: u64,
    /// Most arguments per command.
    pub proto_max_multibulk_len: usize,
    /// When a key is hot (`hot-key-min-ops-per-sec`, `hot-key-min-share-permille`).
    pub hot_key_thresholds: crate::hot_keys::Thresholds,
    /// Most accounted bytes of hot-key copies ([`crate::hot_cache`]); 0 turns the
    /// mitigation off.
    pub hot_cache_max_memory: u64,
    /// Most keys pinned hot by hand on a node (`QUORRA HOT key ON`).
    pub hot_key_max_pinned: usize,
    /// Most keys the client-tracking table holds ([`crate::tracking`]).
    pub tracking_table_max_keys: usize,
    /// Most bytes per command in flight.
    pub client_query_buffer_limit: u64,
    /// Most bytes of undelivered messages one subscriber may hold before it is
    /// disconnected; also the bound of each peer's relay queue (0: no limit).
    pub client_output_buffer_limit_pubsub: u64,
    /// The keyspace notification classes enabled at start
    /// ([`crate::notifications::parse`] of `notify-keyspace-events`).
    pub notify_keyspace_events: u32,
    /// Store shards.
    pub shards: usize,
    /// Active expiry cycles per second.
    pub hz: u32,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Cluster settings; `None` runs a single node.
    pub cluster: Option<ClusterConfig>,
    /// Namespaces and their origins; empty: every key is a plain cache key.
    pub namespaces: Catalog,
}

/// TLS settings (`--tls-cert-file` and `--tls-key-file` given).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// Port for RESP over TLS; `None`: no TLS RESP port.
    pub port: Option<u16>,
    /// The certificate, key and CA files.
    pub files: TlsFiles,
    /// Whether RESP clients over TLS must present a certificate.
    pub client_certificates: ClientCertificates,
    /// No plaintext RESP port.
    pub only: bool,
    /// HTTPS on the admin port.
    pub http: bool,
    /// Mutual TLS between nodes.
    pub cluster: bool,
}

/// Settings of cluster mode (`--cluster-port` given).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// Node-to-node port (0 = any).
    pub port: u16,
    /// Cluster ports of nodes to join through.
    pub seeds: Vec<String>,
    /// The shared secret.
    pub secret: String,
    /// The node id, if given; otherwise it is read from or generated into `data_dir`.
    pub node_id: Option<String>,
    /// Where a generated node id is kept.
    pub data_dir: PathBuf,
    /// Zone.
    pub zone: Option<String>,
    /// Address published to peers and clients.
    pub advertise: IpAddr,
    /// Virtual nodes per node.
    pub vnodes: u32,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// How long gossip keeps a dead node's state (the roster counts it after that too).
    pub dead_node_grace: Duration,
    /// Bound on one forwarded command.
    pub timeout: Duration,
    /// Copies per key and the default write and read levels.
    pub consistency: Consistency,
    /// Most hints kept for unreachable replicas.
    pub max_hints: usize,
    /// Time between anti-entropy passes; `None` = off.
    pub anti_entropy_interval: Option<Duration>,
}

impl Default for Config {
    /// Every default: loopback, ports 7379 and 7380, no memory limit, LRU eviction,
    /// protected mode, Redis's limits on arguments and queries, one worker thread per
    /// core, a single node.
    fn default() -> Self {
        Config {
            config_file: None,
            bind: IpAddr::from([127, 0, 0, 1]),
            port: DEFAULT_PORT,
            http_port: DEFAULT_HTTP_PORT,
            maxmemory: 0,
            maxmemory_policy: MaxmemoryPolicy::default(),
            requirepass: None,
            http_token: None,
            tls: None,
            timeout: None,
            maxclients: DEFAULT_MAXCLIENTS,
            max_auth_failures: 10,
            max_transaction_commands: 100_000,
            databases: 16,
            degraded_thresholds: crate::health::Thresholds::default(),
            busy_reply_threshold: Duration::from_secs(5),
            max_scripts: 10_000,
            lua_max_memory: 256 * 1024 * 1024,
            // A quarter of maxmemory, and there is none.
            maxmemory_clients: 0,
            http_max_connections: 256,
            http_request_timeout: Duration::from_secs(10),
            protected_mode: true,
            proto_max_bulk_len: 512 * 1024 * 1024,
            proto_max_multibulk_len: 1024 * 1024,
            hot_key_thresholds: crate::hot_keys::Thresholds::default(),
            // Writes settle the copies before they are acknowledged, so mitigation is
            // on unless turned off.
            hot_cache_max_memory: 64 << 20,
            hot_key_max_pinned: 64,
            tracking_table_max_keys: 1_000_000,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            // Redis's hard limit for the pubsub class.
            client_output_buffer_limit_pubsub: 32 * 1024 * 1024,
            notify_keyspace_events: 0,
            shards: quorra_store::store::DEFAULT_SHARDS,
            hz: 10,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cluster: None,
            namespaces: Catalog::default(),
        }
    }
}

/// A node id is 1 to 255 bytes of letters, digits, `-`, `_`, `.` and `:` — it appears in
/// replies, logs, metric labels and file names.
pub fn check_node_id(id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if id.is_empty() || id.len() > quorra_cluster::rpc::MAX_NODE_ID_BYTES {
        Err("must be 1 to 255 bytes long".to_owned())
    } else if !id.chars().all(allowed) {
        Err("may hold only letters, digits, '-', '_', '.' and ':'".to_owned())
    } else {
        Ok(())
    }
}

/// Parses a memory size as Redis's `memtoull`: a number with an optional unit `b`,
/// `k`/`kb`, `m`/`mb`, `g`/`gb` (case-insensitive; `k` = 1000, `kb` = 1024).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown unit in {text:?}; use b, k, kb, m, mb, g or gb"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is not a size such as 100mb or 1gb"))
}

/// Parses `allkeys-lru` or `noeviction`.
pub fn parse_policy(text: &str) -> Result<MaxmemoryPolicy, String> {
    match text.to_ascii_lowercase().as_str() {
        "allkeys-lru" => Ok(MaxmemoryPolicy::AllKeysLru),
        "noeviction" => Ok(MaxmemoryPolicy::NoEviction),
        _ => Err(format!(
            "{text:?} is not a supported policy (allkeys-lru, noeviction)"
        )),
    }
}

/// The name of a policy as CONFIG GET and INFO show it.
pub fn policy_name(policy: MaxmemoryPolicy) -> &'static str {
    match policy {
        MaxmemoryPolicy::AllKeysLru => "allkeys-lru",
        MaxmemoryPolicy::NoEviction => "noeviction",
    }
}
