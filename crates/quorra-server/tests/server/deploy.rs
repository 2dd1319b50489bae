//! The deployment recipe in `deploy/`, checked against the real programs it names:
//!
//! - a real Prometheus (Debian's `/usr/bin/prometheus`, installed by `scripts/test`),
//!   running the compose file's scrape job (bearer token read from a file), scrapes a
//!   three-node cluster started in-process that wants that token, and every query of
//!   the Grafana dashboard returns data from it — so a renamed metric or a PromQL typo
//!   fails here rather than as an empty panel;
//! - every metric name the dashboard uses is one a node exposes;
//! - every YAML file parses (PyYAML, see [`load_yaml`]) and the compose file, the
//!   Kubernetes manifest and the Prometheus and Grafana provisioning agree with each
//!   other and with quorra's defaults;
//! - the systemd unit passes `systemd-analyze verify` and keeps its hardening score
//!   (`systemd-analyze security`), and its sample config is accepted by quorra's own
//!   settings parser;
//! - the Dockerfile's static build (`+crt-static` on the gnu target) really gives a
//!   static binary, and three processes of it form a cluster, seeded by host name as the
//!   Kubernetes StatefulSet seeds them (each node with all three names, its own too).
//!
//! Docker and Kubernetes themselves are not available to the tests; docs/deploy.md says
//! what that leaves unexercised.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quorra_origin::Catalog;
use quorra_server::RunningServer;
use serde_json::Value as Json;

use crate::common::*;
use crate::http::http;
use crate::namespaces::{items_catalog, items_database, start_cluster_with_catalog};

/// The repository's `deploy/` directory.
fn deploy_dir() -> PathBuf {
    workspace_root().join("deploy")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = fresh_dir(&format!("deploy-{what}"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) when dropped, also when the test panics.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Three nodes with three copies per key and the `items` namespace over SQLite,
/// writing behind: a cluster in which every metric family the dashboard draws has
/// samples (replication and RPC figures need a cluster, origin figures a namespace,
/// the write-behind lag a write-behind namespace). Returns the nodes and the directory
/// of the database, which must outlive them. With `http_token`, the admin API (and
/// /metrics) want it as a bearer token, as the compose file's nodes do.
async fn cluster_with_origin(http_token: Option<&str>) -> (Vec<RunningServer>, TempDir) {
    let dir = TempDir::new("origin");
    let database = items_database(&dir.0, 100);
    let catalog: Catalog = items_catalog(
        &format!("sqlite://{}", database.display()),
        |namespace, _| {
            namespace.write = Some("behind".into());
            namespace.store = Some(
                "INSERT INTO items (k, v) VALUES ($1, $2) \
                 ON CONFLICT (k) DO UPDATE SET v = excluded.v"
                    .into(),
            );
        },
    );
    let nodes = start_cluster_with_catalog(3, 3, &catalog, |config| {
        config.http_token = http_token.map(str::to_owned);
    })
    .await;
    (nodes, dir)
}

/// Commands through every node: plain writes and reads (hits and misses), loads from
/// the origin, and writes behind to it.
async fn traffic(nodes: &[RunningServer], round: usize) {
    for (n, node) in nodes.iter().enumerate() {
        let mut con = connect(node).await;
        for i in 0..50 {
            let key = format!("deploy:{round}:{n}:{i}");
            ok(&mut con, &["SET", &key, "value"]).await;
            ok(&mut con, &["GET", &key]).await;
            ok(&mut con, &["GET", &format!("{key}:missing")]).await;
        }
        for i in 1..=10 {
            ok(&mut con, &["GET", &format!("item:k{}", n * 10 + i)]).await;
        }
        ok(&mut con, &["SET", &format!("item:new-{round}-{n}"), "x"]).await;
    }
}

/// Every sample name in a node's `/metrics` (OpenMetrics text): `quorra_commands_total`,
/// `quorra_command_duration_seconds_bucket`, ... — the names Prometheus stores.
async fn sample_names(node: &RunningServer) -> BTreeSet<String> {
    let (status, body) = http(node.http_addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    String::from_utf8(body)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            line.split(['{', ' '])
                .next()
                .expect("a sample line starts with its name")
                .to_owned()
        })
        .collect()
}

/// The dashboard, parsed.
fn dashboard() -> Json {
    let text = std::fs::read_to_string(deploy_dir().join("grafana/quorra.json")).unwrap();
    serde_json::from_str(&text).expect("deploy/grafana/quorra.json is JSON")
}

/// Every panel's queries, with the panel's title; rows' nested panels included.
fn dashboard_queries(dashboard: &Json) -> Vec<(String, String)> {
    fn walk(panels: &Json, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_owned()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut queries = Vec::new();
    walk(&dashboard["panels"], &mut queries);
    // The node picker's query is a query too.
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            queries.push((format!("variable {}", variable["name"]), query.to_owned()));
        }
    }
    queries
}

/// The `quorra_*` identifiers of a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while let Some(found) = expr[i..].find("quorra_") {
        let start = i + found;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        // Part of a longer identifier (a label value like "my_quorra_x" is not a metric).
        let inside =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !inside {
            names.push(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// A dashboard query as Grafana would send it with every node selected: its variables
/// replaced by what Grafana puts there.
fn as_grafana_sends(expr: &str) -> String {
    // A variable's `label_values(metric, label)` is Grafana's, not PromQL: Grafana asks
    // Prometheus for the series of `metric`.
    if let Some(inner) = expr.strip_prefix("label_values(") {
        let metric = inner.split([',', ')']).next().unwrap_or(inner);
        return metric.trim().to_owned();
    }
    expr.replace("$__rate_interval", "15s")
        .replace("$__interval", "5s")
        .replace("$instance", ".*")
}

#[tokio::test]
async fn every_metric_the_dashboard_draws_is_exported_by_a_node() {
    let (nodes, _dir) = cluster_with_origin(None).await;
    traffic(&nodes, 0).await;
    let exposed = sample_names(&nodes[0]).await;
    let queries = dashboard_queries(&dashboard());
    assert!(
        queries.len() >= 20,
        "the dashboard has {} queries; expected its panels",
        queries.len()
    );
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for (title, expr) in &queries {
        let names = metric_names(expr);
        // Prometheus's own `up` series is the one query that needs no quorra metric.
        assert!(
            !names.is_empty() || expr.starts_with("up{"),
            "panel {title:?} draws no quorra metric: {expr}"
        );
        for name in names {
            if !exposed.contains(&name) {
                unknown.push(format!("{name} (panel {title:?})"));
            }
            used.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "the dashboard uses metrics no node exports: {unknown:#?}\nexported: {exposed:#?}"
    );
    // The brief of the dashboard: these must each be drawn somewhere.
    for required in [
        "quorra_commands_total",
        "quorra_keyspace_hits_total",
        "quorra_keyspace_misses_total",
        "quorra_command_duration_seconds_bucket",
        "quorra_used_memory_bytes",
        "quorra_maxmemory_bytes",
        "quorra_evicted_keys_total",
        "quorra_expired_keys_total",
        "quorra_replication_total",
        "quorra_hints_pending",
        "quorra_origin_loads_total",
        "quorra_singleflight_dedup_total",
        "quorra_stale_served_total",
        "quorra_write_behind_lag_seconds",
        "quorra_cpu_seconds_total",
        "quorra_resident_memory_bytes",
        "quorra_degraded",
    ] {
        assert!(used.contains(required), "no panel draws {required}");
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// Percent-encodes a query-string value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// One instant query to Prometheus's HTTP API: the `data.result` array, or the error
/// Prometheus gave (a PromQL syntax error is a 400 with `errorType: bad_data`).
async fn query(prometheus: SocketAddr, promql: &str) -> Result<Vec<Json>, String> {
    let path = format!("/api/v1/query?query={}", encode(promql));
    let (status, body) = http(prometheus, "GET", &path, &[], b"").await;
    let answer: Json = serde_json::from_slice(&body)
        .map_err(|error| format!("HTTP {status}, not JSON ({error})"))?;
    if status != 200 || answer["status"] != "success" {
        return Err(format!("HTTP {status}: {answer}"));
    }
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Polls `check` every 250 ms for at most `limit`; returns its last failure otherwise.
async fn poll<T>(
    limit: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[tokio::test]
async fn prometheus_scrapes_a_cluster_and_answers_every_dashboard_query() {
    let binary = Path::new("/usr/bin/prometheus");
    assert!(
        binary.exists(),
        "Prometheus is not installed; ./scripts/test installs Debian's prometheus package"
    );
    // The nodes want a token on the admin port, as the compose file's do.
    const TOKEN: &str = "deploy test token";
    let (nodes, _origin_dir) = cluster_with_origin(Some(TOKEN)).await;
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (status, _) = http(nodes[0].http_addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 401, "/metrics without the token is refused");
    let dir = TempDir::new("prometheus");
    // The scrape job of deploy/prometheus/prometheus-compose.yml (path, bearer token
    // from a file) with this cluster's addresses, the token file here, and a 1 s
    // interval so that rates have samples within seconds. Written as JSON, which is
    // YAML too.
    let compose_config = deploy_dir().join("prometheus/prometheus-compose.yml");
    let mut job = load_yaml(std::slice::from_ref(&compose_config))
        ["prometheus/prometheus-compose.yml"][0]["scrape_configs"][0]
        .clone();
    // Only the file's path changes: the job must already send a token from a file.
    assert!(
        job["authorization"]["credentials_file"].is_string(),
        "the compose scrape job sends the nodes' token: {job}"
    );
    let token_file = dir.0.join("http_token");
    std::fs::write(&token_file, TOKEN).unwrap();
    job["authorization"]["credentials_file"] = Json::from(token_file.to_str().unwrap());
    job["static_configs"] = serde_json::json!([{
        "targets": nodes.iter().map(|node| node.http_addr.to_string()).collect::<Vec<_>>(),
    }]);
    let config = serde_json::json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [job],
    });
    std::fs::write(dir.0.join("prometheus.yml"), config.to_string()).unwrap();
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
    let prometheus = Killed(
        Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.0.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts"),
    );
    let log = || std::fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default();

    // Ready, then every target scraped: `up` is 1 for the three nodes.
    let ready = poll(Duration::from_secs(60), async || {
        let socket = tokio::net::TcpStream::connect(listen).await;
        if socket.is_err() {
            return Err("not listening".to_owned());
        }
        drop(socket);
        let (status, _) = http(listen, "GET", "/-/ready", &[], b"").await;
        if status == 200 {
            Ok(())
        } else {
            Err(format!("/-/ready answered {status}"))
        }
    })
    .await;
    ready.unwrap_or_else(|error| panic!("prometheus never became ready: {error}\n{}", log()));
    let expected: BTreeSet<String> = nodes.iter().map(|n| n.http_addr.to_string()).collect();
    let up = poll(Duration::from_secs(30), async || {
        let result = query(listen, "up{job=\"quorra\"} == 1").await?;
        let instances: BTreeSet<String> = result
            .iter()
            .filter_map(|sample| sample["metric"]["instance"].as_str().map(str::to_owned))
            .collect();
        if instances == expected {
            Ok(())
        } else {
            Err(format!("up: {instances:?}"))
        }
    })
    .await;
    up.unwrap_or_else(|error| panic!("targets not all up: {error}\n{}", log()));

    traffic(&nodes, 0).await;
    // Keys stored on each node, as scraped, are what the node itself reports: a series
    // per node, labelled with its address. (Traffic has stopped, so the figures are
    // still; loads and writes behind settle within the polling.)
    let stored = poll(Duration::from_secs(30), async || {
        let result = query(listen, "quorra_keys").await?;
        let scraped: BTreeMap<String, f64> = result
            .iter()
            .map(|sample| {
                let instance = sample["metric"]["instance"].as_str().unwrap_or("?");
                (instance.to_owned(), value_of(sample))
            })
            .collect();
        let mut reported = BTreeMap::new();
        for node in &nodes {
            let (_, body) = http(node.http_addr, "GET", "/v1/stats", &[&bearer], b"").await;
            let stats: Json = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            let keys = stats["keys"].as_f64().ok_or("no keys in /v1/stats")?;
            reported.insert(node.http_addr.to_string(), keys);
        }
        if scraped == reported && reported.values().all(|keys| *keys > 0.0) {
            Ok(())
        } else {
            Err(format!("quorra_keys {scraped:?}, /v1/stats {reported:?}"))
        }
    })
    .await;
    stored.unwrap_or_else(|error| panic!("{error}"));
    // Commands per second from scraped counters: the SETs just sent show in the rate.
    let rates = poll(Duration::from_secs(30), async || {
        let result = query(
            listen,
            "sum by (instance) (rate(quorra_commands_total{command=\"set\"}[10s])) > 0",
        )
        .await?;
        if result.len() == 3 {
            Ok(())
        } else {
            Err(format!("SET rates: {result:?}"))
        }
    })
    .await;
    rates.unwrap_or_else(|error| panic!("{error}"));

    // Every dashboard query parses and returns data, with every node selected. Traffic
    // goes on meanwhile so that rates over the last seconds are defined.
    let queries = dashboard_queries(&dashboard());
    let mut round = 1;
    let answered = poll(Duration::from_secs(45), async || {
        traffic(&nodes, round).await;
        round += 1;
        let mut empty = Vec::new();
        for (title, expr) in &queries {
            let promql = as_grafana_sends(expr);
            match query(listen, &promql).await {
                Ok(result) if result.is_empty() => empty.push(format!("{title}: {promql}")),
                Ok(_) => {}
                // Not retried: a query Prometheus refuses stays refused.
                Err(error) => panic!("panel {title:?}: {promql}\n{error}"),
            }
        }
        if empty.is_empty() {
            Ok(())
        } else {
            Err(format!("no data: {empty:#?}"))
        }
    })
    .await;
    answered.unwrap_or_else(|error| panic!("{error}"));

    drop(prometheus);
    for node in nodes {
        node.shutdown().await;
    }
}

/// A sample's value (`value: [time, "text"]`).
fn value_of(sample: &Json) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Every `*.yml` / `*.yaml` under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yml" || ext == "yaml")
        {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every document of each YAML file, as JSON, keyed by its path under `deploy/`.
///
/// PyYAML (`python3 -c 'import yaml'`, installed by `scripts/test`) rather than a Rust
/// crate: serde_yaml is deprecated and unmaintained, and its forks are young; PyYAML is
/// the parser of record for YAML 1.1, which is what docker compose (merge keys `<<:`)
/// and Kubernetes manifests are written in. It is loaded with `safe_load_all`, so a
/// file with several documents (the Kubernetes manifest) yields each.
fn load_yaml(files: &[PathBuf]) -> BTreeMap<String, Vec<Json>> {
    let script = "import json, sys, yaml\n\
                  out = {}\n\
                  for path in sys.argv[1:]:\n\
                  \x20   with open(path) as f:\n\
                  \x20       out[path] = list(yaml.safe_load_all(f))\n\
                  json.dump(out, sys.stdout)\n";
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(files)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "PyYAML could not load the files (./scripts/test installs PyYAML):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: BTreeMap<String, Vec<Json>> = serde_json::from_slice(&output.stdout).unwrap();
    let deploy = deploy_dir();
    parsed
        .into_iter()
        .map(|(path, documents)| {
            let relative = Path::new(&path)
                .strip_prefix(&deploy)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (relative, documents)
        })
        .collect()
}

/// A compose `environment` entry, as a map.
fn env_of(service: &Json) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .expect("environment is a map")
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect()
}

#[test]
fn the_yaml_files_parse_and_agree_with_each_other() {
    let files = yaml_files(&deploy_dir());
    let yaml = load_yaml(&files);
    for expected in [
        "docker-compose.yml",
        "kubernetes/quorra.yaml",
        "prometheus/prometheus.yml",
        "prometheus/prometheus-compose.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/quorra.yml",
    ] {
        let documents = yaml
            .get(expected)
            .unwrap_or_else(|| panic!("no deploy/{expected}"));
        assert!(
            documents.iter().all(|document| document.is_object()),
            "deploy/{expected} holds something other than mappings"
        );
    }

    // prometheus.yml scrapes `quorra up`'s default cluster: its nodes' HTTP ports are
    // the base RESP port + 1000 + i, for its default three nodes.
    let local = &yaml["prometheus/prometheus.yml"][0];
    assert_eq!(local["global"]["scrape_interval"], "5s");
    let job = &local["scrape_configs"][0];
    assert_eq!(job["metrics_path"], "/metrics");
    let targets: Vec<&str> = job["static_configs"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let base = quorra_node::config::DEFAULT_PORT;
    let up_ports: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", base + 1000 + i))
        .collect();
    assert_eq!(targets, up_ports);

    // The compose file: three quorra nodes built from deploy/Dockerfile, Prometheus and
    // Grafana.
    let compose = &yaml["docker-compose.yml"][0];
    let services = compose["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["quorra-0", "quorra-1", "quorra-2", "prometheus", "grafana"])
    );
    let quorra: Vec<(&String, &Json)> = services
        .iter()
        .filter(|(name, _)| name.starts_with("quorra-"))
        .collect();
    let addresses: Vec<String> = quorra
        .iter()
        .map(|(_, service)| {
            service["networks"]["quorra"]["ipv4_address"]
                .as_str()
                .expect("each node has a fixed address")
                .to_owned()
        })
        .collect();
    let mut http_ports = BTreeSet::new();
    for (name, service) in &quorra {
        assert_eq!(
            service["build"]["dockerfile"], "deploy/Dockerfile",
            "{name}"
        );
        assert!(deploy_dir().join("Dockerfile").exists());
        let env = env_of(service);
        assert_eq!(env["QUORRA_NODE_ID"], **name, "node id is the service name");
        assert!(
            addresses.contains(&env["QUORRA_ADVERTISE"]),
            "{name} advertises its address"
        );
        assert!(env["QUORRA_CLUSTER_SECRET"].contains("QUORRA_CLUSTER_SECRET"));
        // On 0.0.0.0, protected mode needs a password and the admin API a token.
        assert_eq!(env["QUORRA_BIND"], "0.0.0.0");
        assert!(env.contains_key("QUORRA_REQUIREPASS") && env.contains_key("QUORRA_HTTP_TOKEN"));
        http_ports.insert(env["QUORRA_HTTP_PORT"].clone());
        // Seeded with every node's cluster port.
        let command: Vec<&str> = service["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|arg| arg.as_str().unwrap())
            .collect();
        let seeds = command[command.iter().position(|arg| *arg == "--seeds").unwrap() + 1];
        let expected: Vec<String> = addresses
            .iter()
            .map(|address| format!("{address}:{}", env["QUORRA_CLUSTER_PORT"]))
            .collect();
        assert_eq!(seeds, expected.join(","), "{name}");
    }
    assert_eq!(http_ports.len(), 1, "one HTTP port inside every container");
    let http_port = http_ports.pop_first().unwrap();
    // Prometheus's compose config scrapes those services on that port with the token.
    let prometheus = &services["prometheus"];
    let mount = prometheus["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|volume| volume.as_str())
        .find(|volume| volume.ends_with(":/etc/prometheus/prometheus.yml:ro"))
        .expect("prometheus.yml mounted");
    let source = mount.split(':').next().unwrap().trim_start_matches("./");
    let scrape = &yaml[source][0]["scrape_configs"][0];
    let targets: BTreeSet<String> = scrape["static_configs"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = quorra
        .iter()
        .map(|(name, _)| format!("{name}:{http_port}"))
        .collect();
    assert_eq!(targets, expected);
    let secret = scrape["authorization"]["credentials_file"]
        .as_str()
        .unwrap();
    let secret_name = secret.strip_prefix("/run/secrets/").unwrap();
    assert!(
        prometheus["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == secret_name)
    );
    assert_eq!(
        compose["secrets"][secret_name]["environment"], "QUORRA_HTTP_TOKEN",
        "the scrape token is the nodes' http-token"
    );
    // Grafana: what it mounts exists, the dashboards land where the provider looks, and
    // the datasource is the one the dashboard selects by default.
    let grafana_mounts: Vec<(String, String)> = services["grafana"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|volume| volume.as_str())
        .filter(|volume| volume.starts_with("./"))
        .map(|volume| {
            let mut parts = volume.split(':');
            (
                parts.next().unwrap().trim_start_matches("./").to_owned(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect();
    for (source, _) in &grafana_mounts {
        assert!(
            deploy_dir().join(source).exists(),
            "deploy/{source} missing"
        );
    }
    let dashboard_target = &grafana_mounts
        .iter()
        .find(|(source, _)| source == "grafana/quorra.json")
        .expect("the dashboard is mounted")
        .1;
    let provider = &yaml["grafana/provisioning/dashboards/quorra.yml"][0]["providers"][0];
    assert_eq!(
        Path::new(dashboard_target).parent().unwrap(),
        Path::new(provider["options"]["path"].as_str().unwrap())
    );
    let datasource = &yaml["grafana/provisioning/datasources/prometheus.yml"][0]["datasources"][0];
    assert_eq!(datasource["type"], "prometheus");
    assert_eq!(datasource["url"], "http://prometheus:9090");
    let dashboard = dashboard();
    let picker = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|variable| variable["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(picker["current"]["value"], datasource["uid"]);

    // Kubernetes: a headless Service and a StatefulSet governed by it, seeded with its
    // pods' DNS names on the cluster port.
    let manifest = &yaml["kubernetes/quorra.yaml"];
    let of_kind = |kind: &str| -> Vec<&Json> {
        manifest
            .iter()
            .filter(|document| document["kind"] == kind)
            .collect()
    };
    let statefulsets = of_kind("StatefulSet");
    assert_eq!(statefulsets.len(), 1);
    let statefulset = statefulsets[0];
    let service_name = statefulset["spec"]["serviceName"].as_str().unwrap();
    let headless = of_kind("Service")
        .into_iter()
        .find(|service| service["metadata"]["name"] == service_name)
        .expect("the StatefulSet's service");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    let container = &statefulset["spec"]["template"]["spec"]["containers"][0];
    let env: BTreeMap<&str, &Json> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|var| (var["name"].as_str().unwrap(), var))
        .collect();
    let cluster_port = env["QUORRA_CLUSTER_PORT"]["value"].as_str().unwrap();
    let replicas = statefulset["spec"]["replicas"].as_u64().unwrap();
    let sts_name = statefulset["metadata"]["name"].as_str().unwrap();
    let seeds: Vec<String> = (0..replicas)
        .map(|i| {
            format!(
                "{sts_name}-{i}.{service_name}.$(POD_NAMESPACE).svc.cluster.local:{cluster_port}"
            )
        })
        .collect();
    assert_eq!(env["QUORRA_SEEDS"]["value"], seeds.join(","));
    // `$(POD_NAMESPACE)` is expanded only from a variable defined before it.
    let names: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|var| var["name"].as_str().unwrap())
        .collect();
    let position = |name: &str| names.iter().position(|n| *n == name).unwrap();
    assert!(position("POD_NAMESPACE") < position("QUORRA_SEEDS"));
    assert_eq!(
        env["QUORRA_ADVERTISE"]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    // Gossip is UDP on the cluster port, RPC TCP: both must be open, on the headless
    // service too.
    for ports in [&container["ports"], &headless["spec"]["ports"]] {
        let protocols: BTreeSet<&str> = ports
            .as_array()
            .unwrap()
            .iter()
            .filter(|port| {
                port["containerPort"].as_u64().or(port["port"].as_u64())
                    == cluster_port.parse().ok()
            })
            .map(|port| port["protocol"].as_str().unwrap_or("TCP"))
            .collect();
        assert_eq!(protocols, BTreeSet::from(["TCP", "UDP"]));
    }
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
}

#[test]
fn the_systemd_unit_verifies_and_its_sample_config_is_accepted() {
    let systemd = deploy_dir().join("systemd");
    // The sample config and secrets, as the unit hands them to quorra: the TOML file,
    // with the environment file's QUORRA_* variables over it.
    let file: quorra_server::Settings =
        toml::from_str(&std::fs::read_to_string(systemd.join("quorra.toml")).unwrap())
            .expect("deploy/systemd/quorra.toml is a valid settings file");
    let env = std::fs::read_to_string(systemd.join("quorra.env")).unwrap();
    let variable = |name: &str| {
        env.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in quorra.env"))
            .to_owned()
    };
    let secrets = quorra_server::Settings {
        cluster_secret: Some(variable("QUORRA_CLUSTER_SECRET")),
        requirepass: Some(variable("QUORRA_REQUIREPASS")),
        http_token: Some(variable("QUORRA_HTTP_TOKEN")),
        ..quorra_server::Settings::default()
    };
    let config = secrets
        .over(file)
        .resolve()
        .expect("the sample settings resolve");
    assert!(config.cluster.is_some(), "the sample is a cluster node");

    let unit = std::fs::read_to_string(systemd.join("quorra.service")).unwrap();
    for hardening in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|line| line == hardening), "{hardening}");
    }
    let Some(analyze) = which("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed; the unit was not verified");
        return;
    };
    // `verify` checks that ExecStart's program exists and is executable: the unit names
    // /usr/local/bin/quorra, where the recipe installs it, so the copy verified here
    // names the quorra binary this test run built instead.
    let dir = TempDir::new("systemd");
    let exec_start = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let program = exec_start.split_whitespace().next().unwrap();
    assert_eq!(program, "/usr/local/bin/quorra");
    let copy = unit.replace(
        &format!("ExecStart={program}"),
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_quorra")),
    );
    let path = dir.0.join("quorra.service");
    std::fs::write(&path, copy).unwrap();
    let output = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("systemd-analyze verify: {}\n{stderr}", output.status);
    assert!(
        output.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // verify exits 0 on some warnings (an unknown setting is only logged); any line
    // about our unit is a finding.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("quorra.service"))
        .collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify: {about_unit:#?}"
    );
    // The hardening, as systemd scores it (0 = fully locked down, 10 = unprotected; the
    // unit scores 1.4): `--threshold` makes the command fail above 2.0, so a lost
    // protection shows here. `--offline` reads the file without a running systemd.
    let output = Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    let exposure = report
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or("no overall exposure level");
    eprintln!("systemd-analyze security: {exposure}");
    assert!(
        output.status.success(),
        "exposure above 2.0: {exposure}\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The path of a program on `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Whether the ELF file `bytes` needs a dynamic loader or shared libraries: its
/// `PT_INTERP` program header, and the `DT_NEEDED` entries of its dynamic section
/// (a static-pie binary has a dynamic section, for its own relocations, but needs
/// nothing). 64-bit little-endian only, which is what the build produces here.
fn dynamic_dependencies(bytes: &[u8]) -> (bool, usize) {
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(bytes[4], 2, "not a 64-bit ELF file");
    assert_eq!(bytes[5], 1, "not little-endian");
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    const DT_NEEDED: u64 = 1;
    let mut interp = false;
    let mut needed = 0;
    for i in 0..phnum {
        let header = phoff + i * phentsize;
        match u32_at(header) {
            PT_INTERP => interp = true,
            PT_DYNAMIC => {
                let (offset, size) = (u64_at(header + 8) as usize, u64_at(header + 32) as usize);
                needed += bytes[offset..offset + size]
                    .chunks_exact(16)
                    .filter(|entry| u64::from_le_bytes(entry[..8].try_into().unwrap()) == DT_NEEDED)
                    .count();
            }
            _ => {}
        }
    }
    (interp, needed)
}

/// A process of the static binary in cluster mode; killed on drop.
struct StaticNode {
    _process: Killed,
    resp: SocketAddr,
}

impl StaticNode {
    /// Starts node `id` on cluster port `cluster_port`, seeded with `seeds`.
    fn start(
        binary: &Path,
        id: &str,
        data_dir: &Path,
        cluster_port: u16,
        seeds: &str,
    ) -> StaticNode {
        let mut child = Command::new(binary)
            .args(["server", "--node-id", id, "--port", "0", "--http-port", "0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--cluster-port", &cluster_port.to_string()])
            .args(["--gossip-interval-ms", "100", "--seeds", seeds])
            .env("QUORRA_CLUSTER_SECRET", "deploy test secret")
            // Errors only: the nodes are killed at the end, and their peers' warnings
            // about it would be noise in the test's output.
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the static quorra starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let process = Killed(child);
        let (resp, _http, cluster) =
            quorra_server::up::parse_listening(&line).unwrap_or_else(|| panic!("{line:?}"));
        assert_eq!(cluster.port(), cluster_port);
        StaticNode {
            _process: process,
            resp,
        }
    }
}

/// A loopback port free now for both TCP and UDP, as a cluster port needs (RPC and
/// gossip on the same number).
fn free_cluster_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `quorra_cluster_nodes_up` of `INFO cluster`.
async fn nodes_up(con: &mut redis::aio::MultiplexedConnection) -> Option<usize> {
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(con)
        .await
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("quorra_cluster_nodes_up:"))?
        .trim()
        .parse()
        .ok()
}

#[tokio::test]
async fn the_static_build_is_static_and_its_processes_form_a_cluster() {
    // The Dockerfile's build: the gnu target with +crt-static, into a target directory
    // of its own so that it neither waits for nor invalidates the tests' builds. Built
    // here, not cached from elsewhere: a fresh machine builds it from scratch.
    let root = workspace_root();
    let target_dir = root.join("target/static");
    let triple = "x86_64-unknown-linux-gnu";
    let started = Instant::now();
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--release", "--locked", "-p", "quorra-server"])
        .args(["--target", triple])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // The outer `cargo test` may set flags for its own (debug, dynamic) build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cargo runs");
    eprintln!("static release build: {:.1?}", started.elapsed());
    assert!(status.success(), "the static build failed");
    let binary = target_dir.join(triple).join("release/quorra");
    let bytes = std::fs::read(&binary).unwrap();
    let (interp, needed) = dynamic_dependencies(&bytes);
    assert!(!interp, "{} asks for a dynamic loader", binary.display());
    assert_eq!(needed, 0, "{} needs shared libraries", binary.display());
    // The same, in the words of ldd (where installed), and the contrast that shows
    // both checks can tell: the ordinary (dynamic) quorra this test run built needs a
    // loader and libc. (Not the test binary itself: a concurrent build may replace its
    // file while it runs.)
    let dynamic = Path::new(env!("CARGO_BIN_EXE_quorra"));
    let (interp, needed) = dynamic_dependencies(&std::fs::read(dynamic).unwrap());
    assert!(
        interp && needed > 0,
        "the ELF reader sees a dynamic binary's dependencies"
    );
    if let Some(ldd) = which("ldd") {
        let said = |program: &Path| {
            let output = Command::new(&ldd).arg(program).output().unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        };
        let of_dynamic = said(dynamic);
        assert!(
            of_dynamic.contains("libc.so"),
            "ldd {}: {of_dynamic}",
            dynamic.display()
        );
        let of_static = said(&binary);
        assert!(
            of_static.contains("not a dynamic executable")
                || of_static.contains("statically linked"),
            "ldd {}: {of_static}",
            binary.display()
        );
    }

    // Three processes of it, seeded as the Kubernetes StatefulSet seeds its pods: every
    // node with the same list of all three, by host name (`localhost:PORT`), its own
    // among them. The static binary resolves the names with glibc's built-in files and
    // dns modules, without loading any library. (Ports are picked before the nodes
    // start, since each node's list names the others'.)
    let data = TempDir::new("static");
    let ports: Vec<u16> = (0..3).map(|_| free_cluster_port()).collect();
    let seeds: Vec<String> = ports
        .iter()
        .map(|port| format!("localhost:{port}"))
        .collect();
    let seeds = seeds.join(",");
    let nodes: Vec<StaticNode> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let id = format!("s{i}");
            StaticNode::start(&binary, &id, &data.0.join(&id), *port, &seeds)
        })
        .collect();
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(connect_url(&format!("redis://{}/", node.resp)).await);
    }
    for (node, client) in nodes.iter().zip(&mut clients) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while nodes_up(client).await != Some(3) {
            assert!(
                Instant::now() < deadline,
                "{} never saw three nodes up",
                node.resp
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for i in 0..20 {
        let key = format!("static:{i}");
        let value = format!("value {i}");
        ok(&mut clients[i % 3], &["SET", &key, &value]).await;
        assert_eq!(
            ok(&mut clients[(i + 1) % 3], &["GET", &key]).await,
            bulk(&value)
        );
    }
    drop(clients);
    drop(nodes);
}
