//! Settings of the `quorra` binary: a TOML file, overridden by `QUORRA_*` environment
//! variables, overridden by command-line flags.
//!
//! One struct, [`Settings`], is all three sources at once: clap reads flags and their
//! environment variables into it, serde reads the file into another instance, and
//! [`Settings::over`] lays the first over the second. Every field is optional there;
//! [`Settings::resolve`] fills in the defaults ([`Config::default`]) and checks values,
//! giving the node's [`Config`].
//! A setting has the same name everywhere: `--maxmemory-policy` is `QUORRA_MAXMEMORY_POLICY`
//! and `maxmemory-policy = "noeviction"` in the file.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use quorra_cluster::replication::{Consistency, DEFAULT_MAX_HINTS, DEFAULT_REPLICAS, Level};
use quorra_cluster::tls::{ClientCertificates, TlsFiles, TlsMaterial};
use quorra_node::config::{
    ClusterConfig, Config, TlsConfig, check_node_id, parse_bytes, parse_policy,
};
use quorra_origin::{NamespaceSpec, OriginSpec};
use quorra_store::MaxmemoryPolicy;
use serde::Deserialize;

/// Most bytes of hot-key copies a node keeps unless told otherwise (and at most a
/// sixteenth of `maxmemory`).
pub const DEFAULT_HOT_CACHE_MAX_MEMORY: u64 = 64 << 20;

/// Settings of `quorra server`, from any source. Every flag can also be given as a
/// `QUORRA_*` environment variable or in the `--config` TOML file (same name).
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// TOML file with settings; flags and environment variables override it.
    #[arg(long, env = "QUORRA_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on, for both the RESP and the HTTP port [default: 127.0.0.1].
    /// On an address other than loopback, a password (--requirepass) is needed unless
    /// --protected-mode is turned off.
    #[arg(long, env = "QUORRA_BIND")]
    pub bind: Option<IpAddr>,

    /// RESP (Redis protocol) port; 0 picks a free one [default: 7379].
    #[arg(long, env = "QUORRA_PORT")]
    pub port: Option<u16>,

    /// Admin HTTP port (API, /metrics, /healthz); 0 picks a free one [default: 7380].
    #[arg(long, env = "QUORRA_HTTP_PORT")]
    pub http_port: Option<u16>,

    /// Memory limit for data, e.g. `100mb`, `1gb`, or bytes; 0 means unlimited
    /// [default: 0]. Units as Redis: k/m/g are powers of 1000, kb/mb/gb of 1024.
    #[arg(long, env = "QUORRA_MAXMEMORY", value_parser = parse_bytes)]
    #[serde(default, deserialize_with = "deserialize_bytes")]
    pub maxmemory: Option<u64>,

    /// What a write does when maxmemory is reached: `allkeys-lru` evicts the least
    /// recently used keys, `noeviction` refuses the write [default: allkeys-lru].
    #[arg(long, env = "QUORRA_MAXMEMORY_POLICY", value_parser = parse_policy)]
    #[serde(default, deserialize_with = "deserialize_policy")]
    pub maxmemory_policy: Option<MaxmemoryPolicy>,

    /// Password clients must give with AUTH or HELLO before other commands
    /// [default: none].
    #[arg(long, env = "QUORRA_REQUIREPASS")]
    pub requirepass: Option<String>,

    /// Bearer token the admin HTTP API requires, except /healthz and /readyz
    /// [default: none].
    #[arg(long, env = "QUORRA_HTTP_TOKEN")]
    pub http_token: Option<String>,

    /// Port for RESP over TLS (needs --tls-cert-file and --tls-key-file); 0 picks a
    /// free one [default: none].
    #[arg(long, env = "QUORRA_TLS_PORT", help_heading = "TLS")]
    pub tls_port: Option<u16>,

    /// The node's certificate chain (PEM), for every TLS port; reloaded on SIGHUP.
    #[arg(long, env = "QUORRA_TLS_CERT_FILE", help_heading = "TLS")]
    pub tls_cert_file: Option<PathBuf>,

    /// The node's private key (PEM); reloaded on SIGHUP.
    #[arg(long, env = "QUORRA_TLS_KEY_FILE", help_heading = "TLS")]
    pub tls_key_file: Option<PathBuf>,

    /// CA certificates (PEM) that client certificates, and peers' with --tls-cluster,
    /// must chain to; reloaded on SIGHUP.
    #[arg(long, env = "QUORRA_TLS_CA_CERT_FILE", help_heading = "TLS")]
    pub tls_ca_cert_file: Option<PathBuf>,

    /// Whether RESP clients over TLS must present a certificate signed by the CA:
    /// `yes`, `optional` or `no`, as Redis's tls-auth-clients [default: yes].
    #[arg(long, env = "QUORRA_TLS_AUTH_CLIENTS", value_parser = parse_client_certificates, help_heading = "TLS")]
    #[serde(default, deserialize_with = "deserialize_client_certificates")]
    pub tls_auth_clients: Option<ClientCertificates>,

    /// Serve only RESP over TLS: no plaintext RESP port (needs --tls-port)
    /// [default: false].
    #[arg(long, env = "QUORRA_TLS_ONLY", help_heading = "TLS")]
    pub tls_only: Option<bool>,

    /// Serve the admin HTTP port over TLS (HTTPS); HTTP clients are not asked for
    /// certificates, they authenticate with --http-token [default: false].
    #[arg(long, env = "QUORRA_TLS_HTTP", help_heading = "TLS")]
    pub tls_http: Option<bool>,

    /// Mutual TLS between nodes on the cluster port: each node presents its certificate
    /// and accepts only peers whose certificate chains to the CA [default: false].
    #[arg(long, env = "QUORRA_TLS_CLUSTER", help_heading = "TLS")]
    pub tls_cluster: Option<bool>,

    /// Close a client connection after this many idle seconds; 0 never does
    /// [default: 0].
    #[arg(long, env = "QUORRA_TIMEOUT")]
    pub timeout: Option<u64>,

    /// Most simultaneous client connections; more are refused with an error
    /// [default: 10000].
    #[arg(long, env = "QUORRA_MAXCLIENTS")]
    pub maxclients: Option<usize>,

    /// Close a connection after this many failed AUTH attempts on it; 0 never does
    /// [default: 10].
    #[arg(long, env = "QUORRA_MAX_AUTH_FAILURES")]
    pub max_auth_failures: Option<u32>,

    /// Most commands one transaction (MULTI ... EXEC) may queue, and most keys one
    /// connection may WATCH; past it the transaction is refused (EXECABORT)
    /// [default: 100000].
    #[arg(long, env = "QUORRA_MAX_TRANSACTION_COMMANDS")]
    pub max_transaction_commands: Option<usize>,

    /// Databases a client may SELECT, numbered from 0; at most 256 [default: 16].
    #[arg(long, env = "QUORRA_DATABASES")]
    pub databases: Option<usize>,

    /// The node reports itself degraded while its store uses more than this percentage
    /// of maxmemory (no effect without maxmemory) [default: 90].
    #[arg(long, env = "QUORRA_DEGRADED_MEMORY_PERCENT")]
    pub degraded_memory_percent: Option<u8>,

    /// The node reports itself degraded while it uses more than this percentage of the
    /// machine's CPUs [default: 90].
    #[arg(long, env = "QUORRA_DEGRADED_CPU_PERCENT")]
    pub degraded_cpu_percent: Option<u8>,

    /// Milliseconds a Lua script may run before other clients are answered BUSY and
    /// SCRIPT KILL may stop it, as Redis's busy-reply-threshold [default: 5000].
    #[arg(long, env = "QUORRA_BUSY_REPLY_THRESHOLD")]
    pub busy_reply_threshold: Option<u64>,

    /// Most Lua scripts the node keeps for EVALSHA (SCRIPT LOAD and EVAL add them)
    /// [default: 10000].
    #[arg(long, env = "QUORRA_MAX_SCRIPTS")]
    pub max_scripts: Option<usize>,

    /// Most memory the Lua interpreter of each worker thread may allocate, e.g. `256mb`;
    /// a script that needs more fails with an error [default: 256mb].
    #[arg(long, env = "QUORRA_LUA_MAX_MEMORY", value_parser = parse_bytes)]
    #[serde(default, deserialize_with = "deserialize_bytes")]
    pub lua_max_memory: Option<u64>,

    /// Most bytes all clients' buffers may hold together beyond the first 64 KiB of
    /// each (requests still arriving, replies not yet sent), e.g. `64mb`, or a share of
    /// maxmemory, e.g. `25%`; past it the client holding the most is disconnected, as
    /// Redis's maxmemory-clients does; 0 turns it off [default: 25%, off when maxmemory
    /// is unlimited].
    #[arg(long, env = "QUORRA_MAXMEMORY_CLIENTS", value_parser = parse_bytes_or_percent)]
    #[serde(default, deserialize_with = "deserialize_bytes_or_percent")]
    pub maxmemory_clients: Option<BytesOrPercent>,

    /// Most simultaneous connections to the admin HTTP port; more wait in the
    /// listen queue [default: 256].
    #[arg(long, env = "QUORRA_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,

    /// Milliseconds an HTTP request's headers, and then its body, may take to arrive
    /// before the connection is closed [default: 10000].
    #[arg(long, env = "QUORRA_HTTP_REQUEST_TIMEOUT_MS")]
    pub http_request_timeout_ms: Option<u64>,

    /// Refuse clients on a non-loopback address when no password is set, as Redis's
    /// protected mode does [default: true].
    #[arg(long, env = "QUORRA_PROTECTED_MODE")]
    pub protected_mode: Option<bool>,

    /// Longest single argument a client may send, e.g. `512mb` [default: 512mb].
    #[arg(long, env = "QUORRA_PROTO_MAX_BULK_LEN", value_parser = parse_bytes)]
    #[serde(default, deserialize_with = "deserialize_bytes")]
    pub proto_max_bulk_len: Option<u64>,

    /// Most arguments one client command may have (its name included); a longer one is
    /// refused as Redis refuses an invalid multibulk length [default: 1048576].
    #[arg(long, env = "QUORRA_PROTO_MAX_MULTIBULK_LEN")]
    pub proto_max_multibulk_len: Option<usize>,

    /// A key is hot when it takes at least this many accesses per second on a node
    /// (and the share below) [default: 1000].
    #[arg(long, env = "QUORRA_HOT_KEY_MIN_OPS_PER_SEC")]
    pub hot_key_min_ops_per_sec: Option<u64>,

    /// A key is hot when it takes at least this share of a node's accesses, per mille
    /// (and the rate above) [default: 10].
    #[arg(long, env = "QUORRA_HOT_KEY_MIN_SHARE_PERMILLE")]
    pub hot_key_min_share_permille: Option<u64>,

    /// Most bytes of copies of the cluster's hot keys a node keeps to answer their GETs
    /// locally, without a hop or a quorum read (writes drop the copies before they are
    /// acknowledged); 0 turns hot-key mitigation off [default: 64mb, or a sixteenth of
    /// maxmemory when that is less].
    #[arg(long, env = "QUORRA_HOT_CACHE_MAX_MEMORY", value_parser = parse_bytes)]
    #[serde(default, deserialize_with = "deserialize_bytes")]
    pub hot_cache_max_memory: Option<u64>,

    /// Most keys pinned hot by hand on a node (QUORRA HOT key ON) [default: 64].
    #[arg(long, env = "QUORRA_HOT_KEY_MAX_PINNED")]
    pub hot_key_max_pinned: Option<usize>,

    /// Most keys the client-tracking table holds (CLIENT TRACKING); a key pushed out is
    /// invalidated for the clients that cached it [default: 1000000].
    #[arg(long, env = "QUORRA_TRACKING_TABLE_MAX_KEYS")]
    pub tracking_table_max_keys: Option<usize>,

    /// Most bytes one client command may occupy while it arrives [default: 1gb].
    #[arg(long, env = "QUORRA_CLIENT_QUERY_BUFFER_LIMIT", value_parser = parse_bytes)]
    #[serde(default, deserialize_with = "deserialize_bytes")]
    pub client_query_buffer_limit: Option<u64>,

    /// Most bytes of published messages one subscriber may have waiting before it is
    /// disconnected, and most bytes queued for one peer node; 0 for no limit
    /// [default: 32mb].
    #[arg(long, env = "QUORRA_CLIENT_OUTPUT_BUFFER_LIMIT_PUBSUB", value_parser = parse_bytes)]
    #[serde(default, deserialize_with = "deserialize_bytes")]
    pub client_output_buffer_limit_pubsub: Option<u64>,

    /// Keyspace notification classes, as Redis's `notify-keyspace-events` (e.g. `KEA`;
    /// empty: off) [default: ""].
    #[arg(long, env = "QUORRA_NOTIFY_KEYSPACE_EVENTS")]
    pub notify_keyspace_events: Option<String>,

    /// Store shards (rounded up to a power of two); more shards, less lock contention
    /// [default: 16].
    #[arg(long, env = "QUORRA_SHARDS")]
    pub shards: Option<usize>,

    /// Active expiry cycles per second, as Redis's `hz` [default: 10].
    #[arg(long, env = "QUORRA_HZ")]
    pub hz: Option<u32>,

    /// Worker threads serving clients; 0 means one per CPU core [default: 0].
    #[arg(long, env = "QUORRA_THREADS")]
    pub threads: Option<usize>,

    /// Node-to-node port: RPC over TCP and gossip over UDP, same number; 0 picks a free
    /// one. Setting it turns cluster mode on [default: none, a single node].
    #[arg(long, env = "QUORRA_CLUSTER_PORT", help_heading = "Cluster")]
    pub cluster_port: Option<u16>,

    /// Cluster ports of nodes to join through, `host:port,host:port` (any live member
    /// will do) [default: none, start a new cluster].
    #[arg(
        long,
        env = "QUORRA_SEEDS",
        value_delimiter = ',',
        help_heading = "Cluster"
    )]
    #[serde(default)]
    pub seeds: Option<Vec<String>>,

    /// Secret shared by every node of the cluster; peers without it are refused. Needed
    /// in cluster mode; prefer the environment variable (flags show in `ps`).
    #[arg(long, env = "QUORRA_CLUSTER_SECRET", help_heading = "Cluster")]
    pub cluster_secret: Option<String>,

    /// This node's id, unique in the cluster [default: generated on first start and kept
    /// in the file node-id of --data-dir].
    #[arg(long, env = "QUORRA_NODE_ID", help_heading = "Cluster")]
    pub node_id: Option<String>,

    /// Where the generated node id is kept [default: quorra-data].
    #[arg(long, env = "QUORRA_DATA_DIR", help_heading = "Cluster")]
    pub data_dir: Option<PathBuf>,

    /// This node's zone (rack, availability zone); replicas spread over zones
    /// [default: none].
    #[arg(long, env = "QUORRA_ZONE", help_heading = "Cluster")]
    pub zone: Option<String>,

    /// Address peers and clients are told to use for this node [default: --bind; needed
    /// when --bind is 0.0.0.0 or ::].
    #[arg(long, env = "QUORRA_ADVERTISE", help_heading = "Cluster")]
    pub advertise: Option<IpAddr>,

    /// Virtual nodes per node on the consistent-hash ring; every node of a cluster must
    /// use the same number [default: 150].
    #[arg(long, env = "QUORRA_VNODES", help_heading = "Cluster")]
    pub vnodes: Option<u32>,

    /// Milliseconds between gossip rounds; a killed node is marked down after about
    /// five of them, a second at the default [default: 200].
    #[arg(long, env = "QUORRA_GOSSIP_INTERVAL_MS", help_heading = "Cluster")]
    pub gossip_interval_ms: Option<u64>,

    /// Milliseconds gossip keeps a dead node's state before dropping it. The node stays
    /// counted after that (down) until it leaves or QUORRA FORGET removes it
    /// [default: 60000].
    #[arg(long, env = "QUORRA_DEAD_NODE_GRACE_MS", help_heading = "Cluster")]
    pub dead_node_grace_ms: Option<u64>,

    /// Milliseconds a forwarded command may take before the client gets an error naming
    /// the node [default: 1000].
    #[arg(long, env = "QUORRA_CLUSTER_TIMEOUT_MS", help_heading = "Cluster")]
    pub cluster_timeout_ms: Option<u64>,

    /// Copies of each key (N), on distinct nodes, capped by the members the cluster
    /// counts (up or down; see QUORRA FORGET); every node of a cluster must use the same
    /// number [default: 3].
    #[arg(long, env = "QUORRA_REPLICAS", help_heading = "Cluster")]
    pub replicas: Option<usize>,

    /// Replicas that must store a write before it is acknowledged (W): `one`, `quorum`,
    /// `all` or a number; a connection may override it with QUORRA CONSISTENCY
    /// [default: quorum].
    #[arg(long, env = "QUORRA_WRITE_QUORUM", value_parser = parse_level, help_heading = "Cluster")]
    #[serde(default, deserialize_with = "deserialize_level")]
    pub write_quorum: Option<Level>,

    /// Replicas that must answer a read (R); the newest version wins: `one`, `quorum`,
    /// `all` or a number [default: quorum].
    #[arg(long, env = "QUORRA_READ_QUORUM", value_parser = parse_level, help_heading = "Cluster")]
    #[serde(default, deserialize_with = "deserialize_level")]
    pub read_quorum: Option<Level>,

    /// Most writes kept for unreachable replicas until they return (hinted handoff);
    /// beyond it a returning replica is repaired by reads and anti-entropy instead
    /// [default: 100000].
    #[arg(long, env = "QUORRA_MAX_HINTS", help_heading = "Cluster")]
    pub max_hints: Option<usize>,

    /// Milliseconds between anti-entropy passes, which compare replicas and copy what
    /// differs; 0 turns them off [default: 30000].
    #[arg(
        long,
        env = "QUORRA_ANTI_ENTROPY_INTERVAL_MS",
        help_heading = "Cluster"
    )]
    pub anti_entropy_interval_ms: Option<u64>,

    /// `[origins.NAME]` tables: databases namespaces load from (file only; see
    /// docs/namespaces.md).
    #[arg(skip)]
    #[serde(default)]
    pub origins: BTreeMap<String, OriginSpec>,

    /// `[[namespaces]]` entries: key prefixes with a policy (file only; see
    /// docs/namespaces.md).
    #[arg(skip)]
    #[serde(default)]
    pub namespaces: Vec<NamespaceSpec>,
}

/// A setting that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, from the TOML parser.
        message: String,
    },
    /// A namespace or origin of the file is wrong.
    #[error("invalid config: {0}")]
    Namespace(#[from] quorra_origin::ConfigError),
    /// A value is out of its range.
    #[error("invalid value for {setting}: {reason}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// Why.
        reason: String,
    },
}

impl Settings {
    /// Reads flags and environment variables as given, then the file they name (if any)
    /// underneath them.
    pub fn with_file(self) -> Result<Settings, ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let file: Settings = toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.clone(),
            message: error.message().to_owned(),
        })?;
        Ok(self.over(file))
    }

    /// Every setting of `self` that is set, and `lower`'s for the rest.
    pub fn over(self, lower: Settings) -> Settings {
        Settings {
            config: self.config.or(lower.config),
            bind: self.bind.or(lower.bind),
            port: self.port.or(lower.port),
            http_port: self.http_port.or(lower.http_port),
            maxmemory: self.maxmemory.or(lower.maxmemory),
            maxmemory_policy: self.maxmemory_policy.or(lower.maxmemory_policy),
            requirepass: self.requirepass.or(lower.requirepass),
            http_token: self.http_token.or(lower.http_token),
            tls_port: self.tls_port.or(lower.tls_port),
            tls_cert_file: self.tls_cert_file.or(lower.tls_cert_file),
            tls_key_file: self.tls_key_file.or(lower.tls_key_file),
            tls_ca_cert_file: self.tls_ca_cert_file.or(lower.tls_ca_cert_file),
            tls_auth_clients: self.tls_auth_clients.or(lower.tls_auth_clients),
            tls_only: self.tls_only.or(lower.tls_only),
            tls_http: self.tls_http.or(lower.tls_http),
            tls_cluster: self.tls_cluster.or(lower.tls_cluster),
            timeout: self.timeout.or(lower.timeout),
            maxclients: self.maxclients.or(lower.maxclients),
            max_auth_failures: self.max_auth_failures.or(lower.max_auth_failures),
            max_transaction_commands: self
                .max_transaction_commands
                .or(lower.max_transaction_commands),
            databases: self.databases.or(lower.databases),
            degraded_memory_percent: self
                .degraded_memory_percent
                .or(lower.degraded_memory_percent),
            degraded_cpu_percent: self.degraded_cpu_percent.or(lower.degraded_cpu_percent),
            busy_reply_threshold: self.busy_reply_threshold.or(lower.busy_reply_threshold),
            max_scripts: self.max_scripts.or(lower.max_scripts),
            lua_max_memory: self.lua_max_memory.or(lower.lua_max_memory),
            maxmemory_clients: self.maxmemory_clients.or(lower.maxmemory_clients),
            http_max_connections: self.http_max_connections.or(lower.http_max_connections),
            http_request_timeout_ms: self
                .http_request_timeout_ms
                .or(lower.http_request_timeout_ms),
            protected_mode: self.protected_mode.or(lower.protected_mode),
            proto_max_bulk_len: self.proto_max_bulk_len.or(lower.proto_max_bulk_len),
            proto_max_multibulk_len: self
                .proto_max_multibulk_len
                .or(lower.proto_max_multibulk_len),
            hot_key_min_ops_per_sec: self
                .hot_key_min_ops_per_sec
                .or(lower.hot_key_min_ops_per_sec),
            hot_cache_max_memory: self.hot_cache_max_memory.or(lower.hot_cache_max_memory),
            hot_key_max_pinned: self.hot_key_max_pinned.or(lower.hot_key_max_pinned),
            tracking_table_max_keys: self
                .tracking_table_max_keys
                .or(lower.tracking_table_max_keys),
            hot_key_min_share_permille: self
                .hot_key_min_share_permille
                .or(lower.hot_key_min_share_permille),
            client_query_buffer_limit: self
                .client_query_buffer_limit
                .or(lower.client_query_buffer_limit),
            client_output_buffer_limit_pubsub: self
                .client_output_buffer_limit_pubsub
                .or(lower.client_output_buffer_limit_pubsub),
            notify_keyspace_events: self.notify_keyspace_events.or(lower.notify_keyspace_events),
            shards: self.shards.or(lower.shards),
            hz: self.hz.or(lower.hz),
            threads: self.threads.or(lower.threads),
            cluster_port: self.cluster_port.or(lower.cluster_port),
            seeds: self.seeds.or(lower.seeds),
            cluster_secret: self.cluster_secret.or(lower.cluster_secret),
            node_id: self.node_id.or(lower.node_id),
            data_dir: self.data_dir.or(lower.data_dir),
            zone: self.zone.or(lower.zone),
            advertise: self.advertise.or(lower.advertise),
            vnodes: self.vnodes.or(lower.vnodes),
            gossip_interval_ms: self.gossip_interval_ms.or(lower.gossip_interval_ms),
            dead_node_grace_ms: self.dead_node_grace_ms.or(lower.dead_node_grace_ms),
            cluster_timeout_ms: self.cluster_timeout_ms.or(lower.cluster_timeout_ms),
            replicas: self.replicas.or(lower.replicas),
            write_quorum: self.write_quorum.or(lower.write_quorum),
            read_quorum: self.read_quorum.or(lower.read_quorum),
            max_hints: self.max_hints.or(lower.max_hints),
            anti_entropy_interval_ms: self
                .anti_entropy_interval_ms
                .or(lower.anti_entropy_interval_ms),
            // Only the file sets these.
            origins: if self.origins.is_empty() {
                lower.origins
            } else {
                self.origins
            },
            namespaces: if self.namespaces.is_empty() {
                lower.namespaces
            } else {
                self.namespaces
            },
        }
    }

    /// Fills in defaults and checks ranges.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let invalid = |setting, reason: &str| ConfigError::Invalid {
            setting,
            reason: reason.to_owned(),
        };
        let defaults = Config::default();
        let hz = self.hz.unwrap_or(defaults.hz);
        if !(1..=500).contains(&hz) {
            return Err(invalid("hz", "must be between 1 and 500, as in Redis"));
        }
        let maxclients = self.maxclients.unwrap_or(defaults.maxclients);
        if maxclients == 0 {
            return Err(invalid("maxclients", "must be at least 1"));
        }
        let http_max_connections = self
            .http_max_connections
            .unwrap_or(defaults.http_max_connections);
        if !(1..=65_536).contains(&http_max_connections) {
            return Err(invalid(
                "http-max-connections",
                "must be between 1 and 65536",
            ));
        }
        let http_request_timeout_ms = self
            .http_request_timeout_ms
            .unwrap_or(defaults.http_request_timeout.as_millis() as u64);
        if !(100..=3_600_000).contains(&http_request_timeout_ms) {
            return Err(invalid(
                "http-request-timeout-ms",
                "must be between 100 and 3600000",
            ));
        }
        let maxmemory = self.maxmemory.unwrap_or(defaults.maxmemory);
        let maxmemory_clients = match self
            .maxmemory_clients
            .unwrap_or(BytesOrPercent::Percent(25))
        {
            BytesOrPercent::Bytes(bytes) => bytes,
            BytesOrPercent::Percent(percent) => maxmemory / 100 * u64::from(percent),
        };
        let proto_max_bulk_len = self
            .proto_max_bulk_len
            .unwrap_or(defaults.proto_max_bulk_len);
        if proto_max_bulk_len < 1024 * 1024 {
            return Err(invalid(
                "proto-max-bulk-len",
                "must be at least 1mb, as in Redis",
            ));
        }
        let proto_max_multibulk_len = self
            .proto_max_multibulk_len
            .unwrap_or(defaults.proto_max_multibulk_len);
        if !(1024..=i32::MAX as usize).contains(&proto_max_multibulk_len) {
            return Err(invalid(
                "proto-max-multibulk-len",
                "must be between 1024 and 2147483647",
            ));
        }
        let hot_key_thresholds = quorra_node::hot_keys::Thresholds {
            min_ops_per_sec: self
                .hot_key_min_ops_per_sec
                .unwrap_or(defaults.hot_key_thresholds.min_ops_per_sec),
            min_share_permille: self
                .hot_key_min_share_permille
                .unwrap_or(defaults.hot_key_thresholds.min_share_permille),
        };
        if hot_key_thresholds.min_ops_per_sec == 0 || hot_key_thresholds.min_share_permille > 1000 {
            return Err(invalid(
                "hot-key-min-ops-per-sec/hot-key-min-share-permille",
                "the rate must be at least 1 and the share at most 1000",
            ));
        }
        let shards = self.shards.unwrap_or(defaults.shards);
        if !(1..=quorra_store::store::MAX_SHARDS).contains(&shards) {
            return Err(invalid("shards", "must be between 1 and 65536"));
        }
        let threads = match self.threads.unwrap_or(0) {
            0 => defaults.threads,
            n if n > 1024 => return Err(invalid("threads", "must be at most 1024")),
            n => n,
        };
        let databases = self.databases.unwrap_or(defaults.databases);
        if !(1..=quorra_ring::database::MAX_DATABASES).contains(&databases) {
            return Err(invalid("databases", "must be between 1 and 256"));
        }
        let degraded_thresholds = quorra_node::health::Thresholds {
            memory_percent: self
                .degraded_memory_percent
                .unwrap_or(defaults.degraded_thresholds.memory_percent),
            cpu_percent: self
                .degraded_cpu_percent
                .unwrap_or(defaults.degraded_thresholds.cpu_percent),
        };
        if degraded_thresholds.memory_percent > 100 || degraded_thresholds.cpu_percent > 100 {
            return Err(invalid(
                "degraded-memory-percent/degraded-cpu-percent",
                "must be between 0 and 100",
            ));
        }
        let notify_keyspace_events = match &self.notify_keyspace_events {
            None => defaults.notify_keyspace_events,
            Some(classes) => {
                quorra_node::notifications::parse(classes.as_bytes()).ok_or_else(|| {
                    invalid(
                        "notify-keyspace-events",
                        "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.",
                    )
                })?
            }
        };
        let bind = self.bind.unwrap_or(defaults.bind);
        let cluster = self.cluster_config(bind)?;
        let tls = self.tls_config()?;
        let namespaces = quorra_origin::config::check(&self.origins, &self.namespaces)?;
        Ok(Config {
            namespaces,
            threads,
            cluster,
            config_file: self.config,
            bind,
            port: self.port.unwrap_or(defaults.port),
            http_port: self.http_port.unwrap_or(defaults.http_port),
            maxmemory,
            maxmemory_policy: self.maxmemory_policy.unwrap_or(defaults.maxmemory_policy),
            requirepass: self.requirepass.filter(|password| !password.is_empty()),
            http_token: self.http_token.filter(|token| !token.is_empty()),
            tls,
            timeout: self
                .timeout
                .filter(|&secs| secs > 0)
                .map(Duration::from_secs),
            maxclients,
            max_auth_failures: self.max_auth_failures.unwrap_or(defaults.max_auth_failures),
            max_transaction_commands: self
                .max_transaction_commands
                .unwrap_or(defaults.max_transaction_commands),
            databases,
            degraded_thresholds,
            busy_reply_threshold: self
                .busy_reply_threshold
                .map_or(defaults.busy_reply_threshold, Duration::from_millis),
            max_scripts: self.max_scripts.unwrap_or(defaults.max_scripts),
            lua_max_memory: self.lua_max_memory.unwrap_or(defaults.lua_max_memory),
            maxmemory_clients,
            http_max_connections,
            http_request_timeout: Duration::from_millis(http_request_timeout_ms),
            protected_mode: self.protected_mode.unwrap_or(defaults.protected_mode),
            proto_max_bulk_len,
            proto_max_multibulk_len,
            hot_key_thresholds,
            hot_cache_max_memory: self.hot_cache_max_memory.unwrap_or(match maxmemory {
                0 => DEFAULT_HOT_CACHE_MAX_MEMORY,
                limited => DEFAULT_HOT_CACHE_MAX_MEMORY.min(limited / 16),
            }),
            hot_key_max_pinned: self
                .hot_key_max_pinned
                .unwrap_or(defaults.hot_key_max_pinned),
            tracking_table_max_keys: self
                .tracking_table_max_keys
                .unwrap_or(defaults.tracking_table_max_keys),
            client_query_buffer_limit: self
                .client_query_buffer_limit
                .unwrap_or(defaults.client_query_buffer_limit),
            client_output_buffer_limit_pubsub: self
                .client_output_buffer_limit_pubsub
                .unwrap_or(defaults.client_output_buffer_limit_pubsub),
            notify_keyspace_events,
            shards,
            hz,
        })
    }
}

impl Settings {
    /// The TLS part of [`resolve`](Self::resolve): `None` without a certificate.
    fn tls_config(&self) -> Result<Option<TlsConfig>, ConfigError> {
        let invalid = |setting, reason: &str| ConfigError::Invalid {
            setting,
            reason: reason.to_owned(),
        };
        let (cert_file, key_file) = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            (Some(_), None) => return Err(invalid("tls-cert-file", "needs --tls-key-file")),
            (None, Some(_)) => return Err(invalid("tls-key-file", "needs --tls-cert-file")),
            (None, None) => {
                let asked = [
                    ("tls-port", self.tls_port.is_some()),
                    ("tls-only", self.tls_only == Some(true)),
                    ("tls-http", self.tls_http == Some(true)),
                    ("tls-cluster", self.tls_cluster == Some(true)),
                ];
                return match asked.iter().find(|(_, set)| *set) {
                    Some((setting, _)) => {
                        Err(invalid(setting, "needs --tls-cert-file and --tls-key-file"))
                    }
                    None => Ok(None),
                };
            }
        };
        let only = self.tls_only.unwrap_or(false);
        if only && self.tls_port.is_none() {
            return Err(invalid("tls-only", "needs --tls-port"));
        }
        let cluster = self.tls_cluster.unwrap_or(false);
        if cluster && self.cluster_port.is_none() {
            return Err(invalid(
                "tls-cluster",
                "needs --cluster-port (cluster mode)",
            ));
        }
        let config = TlsConfig {
            port: self.tls_port,
            files: TlsFiles {
                cert_file,
                key_file,
                ca_cert_file: self.tls_ca_cert_file.clone(),
            },
            client_certificates: self
                .tls_auth_clients
                .unwrap_or(ClientCertificates::Required),
            only,
            http: self.tls_http.unwrap_or(false),
            cluster,
        };
        // Read the files now, so that a missing or broken one is a start-up error with
        // its name rather than a failure at the first connection.
        TlsMaterial::load(
            config.files.clone(),
            config.client_certificates,
            config.cluster,
        )
        .map_err(|error| invalid("tls-cert-file", &error.to_string()))?;
        Ok(Some(config))
    }

    /// The cluster part of [`resolve`](Self::resolve): `None` without a cluster port.
    fn cluster_config(&self, bind: IpAddr) -> Result<Option<ClusterConfig>, ConfigError> {
        let invalid = |setting, reason: &str| ConfigError::Invalid {
            setting,
            reason: reason.to_owned(),
        };
        let Some(port) = self.cluster_port else {
            let needs_port = if self.seeds.as_ref().is_some_and(|s| !s.is_empty()) {
                Some("seeds")
            } else if self.cluster_secret.is_some() {
                Some("cluster-secret")
            } else {
                None
            };
            return match needs_port {
                Some(setting) => Err(invalid(setting, "needs --cluster-port (cluster mode)")),
                None => Ok(None),
            };
        };
        let secret = self
            .cluster_secret
            .clone()
            .filter(|secret| !secret.is_empty())
            .ok_or_else(|| {
                invalid(
                    "cluster-secret",
                    "cluster mode needs a secret shared by every node (QUORRA_CLUSTER_SECRET)",
                )
            })?;
        let advertise = self.advertise.unwrap_or(bind);
        if advertise.is_unspecified() {
            return Err(invalid(
                "advertise",
                "give the address peers should use when --bind is a wildcard address",
            ));
        }
        if let Some(id) = &self.node_id {
            check_node_id(id).map_err(|reason| invalid("node-id", &reason))?;
        }
        let vnodes = self.vnodes.unwrap_or(quorra_ring::DEFAULT_VNODES);
        if !(1..=quorra_ring::MAX_VNODES_PER_NODE).contains(&vnodes) {
            return Err(invalid("vnodes", "must be between 1 and 65536"));
        }
        let gossip_interval_ms = self.gossip_interval_ms.unwrap_or(200);
        if !(10..=10_000).contains(&gossip_interval_ms) {
            return Err(invalid(
                "gossip-interval-ms",
                "must be between 10 and 10000",
            ));
        }
        let dead_node_grace_ms = self.dead_node_grace_ms.unwrap_or(60_000);
        if !(1000..=86_400_000).contains(&dead_node_grace_ms) {
            return Err(invalid(
                "dead-node-grace-ms",
                "must be between 1000 and 86400000",
            ));
        }
        let timeout_ms = self.cluster_timeout_ms.unwrap_or(1000);
        if !(1..=600_000).contains(&timeout_ms) {
            return Err(invalid(
                "cluster-timeout-ms",
                "must be between 1 and 600000",
            ));
        }
        let replicas = self.replicas.unwrap_or(DEFAULT_REPLICAS);
        if !(1..=16).contains(&replicas) {
            return Err(invalid("replicas", "must be between 1 and 16"));
        }
        let consistency = Consistency {
            replicas,
            write: self.write_quorum.unwrap_or(Level::Quorum),
            read: self.read_quorum.unwrap_or(Level::Quorum),
        };
        let anti_entropy_interval = match self.anti_entropy_interval_ms {
            None => Some(quorra_cluster::antientropy::DEFAULT_ANTI_ENTROPY_INTERVAL),
            Some(0) => None,
            Some(ms) if ms < 100 => {
                return Err(invalid(
                    "anti-entropy-interval-ms",
                    "must be 0 (off) or at least 100",
                ));
            }
            Some(ms) => Some(Duration::from_millis(ms)),
        };
        Ok(Some(ClusterConfig {
            anti_entropy_interval,
            consistency,
            max_hints: self.max_hints.unwrap_or(DEFAULT_MAX_HINTS),
            port,
            seeds: self.seeds.clone().unwrap_or_default(),
            secret,
            node_id: self.node_id.clone(),
            data_dir: self
                .data_dir
                .clone()
                .unwrap_or_else(|| "quorra-data".into()),
            zone: self.zone.clone().filter(|zone| !zone.is_empty()),
            advertise,
            vnodes,
            gossip_interval: Duration::from_millis(gossip_interval_ms),
            dead_node_grace: Duration::from_millis(dead_node_grace_ms),
            timeout: Duration::from_millis(timeout_ms),
        }))
    }
}

/// A size given in bytes or as a share of another size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BytesOrPercent {
    /// A number of bytes.
    Bytes(u64),
    /// A percentage, 0 to 100.
    Percent(u8),
}

/// Parses a size (see [`parse_bytes`]) or a percentage such as `25%`.
pub fn parse_bytes_or_percent(text: &str) -> Result<BytesOrPercent, String> {
    match text.trim().strip_suffix('%') {
        Some(digits) => match digits.trim().parse::<u8>() {
            Ok(percent) if percent <= 100 => Ok(BytesOrPercent::Percent(percent)),
            _ => Err(format!("{text:?} is not a percentage from 0% to 100%")),
        },
        None => parse_bytes(text).map(BytesOrPercent::Bytes),
    }
}

/// Parses Redis's `tls-auth-clients` values: `yes`, `optional`, `no`.
pub fn parse_client_certificates(text: &str) -> Result<ClientCertificates, String> {
    match text.to_ascii_lowercase().as_str() {
        "yes" => Ok(ClientCertificates::Required),
        "optional" => Ok(ClientCertificates::Optional),
        "no" => Ok(ClientCertificates::NotAsked),
        _ => Err(format!("{text:?} is not yes, optional or no")),
    }
}

fn deserialize_client_certificates<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<ClientCertificates>, D::Error> {
    let text = String::deserialize(de)?;
    parse_client_certificates(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Parses a replication level: `one`, `quorum`, `all` or a number of replicas.
pub fn parse_level(text: &str) -> Result<Level, String> {
    Level::parse(text).ok_or_else(|| {
        format!("{text:?} is not a level (one, quorum, all, or a number from 1 to 255)")
    })
}

fn deserialize_level<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Level>, D::Error> {
    let text = String::deserialize(de)?;
    parse_level(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A size in the file may be a number of bytes or a string such as "100mb".
fn deserialize_bytes<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(de)? {
        Size::Bytes(bytes) => Ok(Some(bytes)),
        Size::Text(text) => parse_bytes(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn deserialize_bytes_or_percent<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<BytesOrPercent>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(de)? {
        Size::Bytes(bytes) => Ok(Some(BytesOrPercent::Bytes(bytes))),
        Size::Text(text) => parse_bytes_or_percent(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn deserialize_policy<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Option<MaxmemoryPolicy>, D::Error> {
    let text = String::deserialize(de)?;
    parse_policy(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_redis() {
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("1k"), Ok(1000));
        assert_eq!(parse_bytes("1kb"), Ok(1024));
        assert_eq!(parse_bytes("100mb"), Ok(100 << 20));
        assert_eq!(parse_bytes("1GB"), Ok(1 << 30));
        assert!(parse_bytes("1tb").is_err());
        assert!(parse_bytes("mb").is_err());
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("99999999999999999999gb").is_err());
        assert_eq!(
            parse_bytes_or_percent("25%"),
            Ok(BytesOrPercent::Percent(25))
        );
        assert_eq!(
            parse_bytes_or_percent("64mb"),
            Ok(BytesOrPercent::Bytes(64 << 20))
        );
        assert!(parse_bytes_or_percent("101%").is_err());
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let file: Settings = toml::from_str(
            "port = 9000\nmaxmemory = \"1mb\"\nmaxmemory-policy = \"noeviction\"\nhttp-port = 9001\n",
        )
        .unwrap();
        let flags = Settings {
            port: Some(9100),
            ..Settings::default()
        };
        let config = flags.over(file).resolve().unwrap();
        assert_eq!(config.port, 9100);
        assert_eq!(config.http_port, 9001);
        assert_eq!(config.maxmemory, 1 << 20);
        assert_eq!(config.maxmemory_policy, MaxmemoryPolicy::NoEviction);
        assert_eq!(config.bind, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(config.timeout, None);
    }

    #[test]
    fn bad_files_and_values_are_clear_errors() {
        let unknown = toml::from_str::<Settings>("prot = 1\n").unwrap_err();
        assert!(
            unknown.message().contains("unknown field `prot`"),
            "{unknown}"
        );
        let policy = toml::from_str::<Settings>("maxmemory-policy = \"lfu\"\n").unwrap_err();
        assert!(
            policy.message().contains("not a supported policy"),
            "{policy}"
        );
        let hz = Settings {
            hz: Some(0),
            ..Settings::default()
        };
        assert!(hz.resolve().unwrap_err().to_string().contains("hz"));
        for databases in [0, 257] {
            let settings = Settings {
                databases: Some(databases),
                ..Settings::default()
            };
            let error = settings.resolve().unwrap_err().to_string();
            assert!(error.contains("databases"), "{error}");
        }
    }

    #[test]
    fn cluster_mode_needs_a_port_and_a_secret() {
        assert_eq!(Settings::default().resolve().unwrap().cluster, None);
        let seeds_alone = Settings {
            seeds: Some(vec!["127.0.0.1:9000".into()]),
            ..Settings::default()
        };
        assert!(
            seeds_alone
                .resolve()
                .unwrap_err()
                .to_string()
                .contains("cluster-port")
        );
        let no_secret = Settings {
            cluster_port: Some(9000),
            ..Settings::default()
        };
        assert!(
            no_secret
                .resolve()
                .unwrap_err()
                .to_string()
                .contains("secret")
        );
        let file: Settings = toml::from_str(
            "cluster-port = 9000\nseeds = [\"10.0.0.2:9000\"]\ncluster-secret = \"s\"\nzone = \"a\"\n",
        )
        .unwrap();
        let cluster = file.resolve().unwrap().cluster.unwrap();
        assert_eq!(cluster.seeds, ["10.0.0.2:9000"]);
        assert_eq!(cluster.zone.as_deref(), Some("a"));
        assert_eq!(cluster.gossip_interval, Duration::from_millis(200));
        let wildcard = Settings {
            bind: Some(IpAddr::from([0, 0, 0, 0])),
            cluster_port: Some(9000),
            cluster_secret: Some("s".into()),
            ..Settings::default()
        };
        assert!(
            wildcard
                .resolve()
                .unwrap_err()
                .to_string()
                .contains("advertise")
        );
        let bad_id = Settings {
            node_id: Some("a b".into()),
            cluster_port: Some(9000),
            cluster_secret: Some("s".into()),
            ..Settings::default()
        };
        assert!(
            bad_id
                .resolve()
                .unwrap_err()
                .to_string()
                .contains("node-id")
        );
    }
}
