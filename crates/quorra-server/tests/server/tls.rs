//! TLS on every port: RESP over TLS with client certificates (through rustls, redis-cli
//! and redis-py), HTTPS on the admin port, mutual TLS between the nodes of a cluster,
//! and certificates reloaded on SIGHUP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use quorra_cluster::tls::test_pki::TestCa;
use quorra_cluster::tls::{ClientCertificates, TlsFiles};
use quorra_node::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::*;
use crate::common::*;

/// A directory of test certificates: a CA, the node's certificate, a client's, and one
/// from a CA the node does not trust.
struct Pki {
    dir: PathBuf,
    node: TlsFiles,
    client: TlsFiles,
    stranger: TlsFiles,
}

impl Pki {
    fn new() -> Pki {
        let dir = fresh_data_dir();
        let ca = TestCa::new(&dir, "cluster");
        let other = TestCa::new(&dir, "other");
        Pki {
            node: ca.issue("node", &["localhost", "127.0.0.1"]),
            client: ca.issue("client", &["client"]),
            stranger: other.issue("stranger", &["stranger"]),
            dir,
        }
    }

    fn tls_config(&self, port: u16) -> TlsConfig {
        TlsConfig {
            port: Some(port),
            files: self.node.clone(),
            client_certificates: ClientCertificates::Required,
            only: false,
            http: false,
            cluster: false,
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A rustls client trusting the CA of `ca_file`, presenting `identity` if given.
fn connector(ca_file: &Path, identity: Option<&TlsFiles>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(files) => {
            let chain = CertificateDer::pem_file_iter(&files.cert_file)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(&files.key_file).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Sends `request` over TLS to `addr` and returns the reply, or the error that stopped
/// it (handshake refused, connection closed).
async fn tls_exchange(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    request: &[u8],
) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    let mut reply = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut reply)).await;
    match read {
        Ok(Ok(0)) => Err("closed".into()),
        Ok(Ok(n)) => Ok(String::from_utf8_lossy(&reply[..n]).into_owned()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

#[tokio::test]
async fn resp_over_tls_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let server = start_with(|config| config.tls = Some(pki.tls_config(0))).await;
    let tls_addr = server.tls_addr.expect("a TLS port");
    let ca = pki.node.ca_cert_file.clone().unwrap();
    let trusted = connector(&ca, Some(&pki.client));
    let reply = tls_exchange(tls_addr, &trusted, b"SET k v\r\nGET k\r\n").await;
    assert_eq!(reply.unwrap(), "+OK\r\n$1\r\nv\r\n");
    // No certificate, or one of another CA: refused.
    assert!(
        tls_exchange(tls_addr, &connector(&ca, None), b"PING\r\n")
            .await
            .is_err()
    );
    let stranger = connector(&ca, Some(&pki.stranger));
    assert!(
        tls_exchange(tls_addr, &stranger, b"PING\r\n")
            .await
            .is_err()
    );
    // The plaintext port still serves (tls-only is off), and sees the same data.
    let mut plain = connect(&server).await;
    assert_eq!(ok(&mut plain, &["GET", "k"]).await, bulk("v"));
}

#[tokio::test]
async fn tls_only_closes_the_plaintext_port_and_https_serves_the_api() {
    let pki = Pki::new();
    let server = start_with(|config| {
        config.tls = Some(TlsConfig {
            only: true,
            http: true,
            client_certificates: ClientCertificates::NotAsked,
            ..pki.tls_config(0)
        })
    })
    .await;
    assert_eq!(Some(server.resp_addr), server.tls_addr);
    let ca = pki.node.ca_cert_file.clone().unwrap();
    let anonymous = connector(&ca, None);
    let reply = tls_exchange(server.resp_addr, &anonymous, b"PING\r\n").await;
    assert_eq!(reply.unwrap(), "+PONG\r\n");
    // HTTPS on the admin port.
    let reply = tls_exchange(
        server.http_addr,
        &anonymous,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Plain HTTP to it gets no answer.
    let mut plain = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut response)).await;
    assert!(!String::from_utf8_lossy(&response).contains("200 OK"));
}

#[tokio::test]
async fn a_three_node_cluster_runs_with_mutual_tls_between_nodes() {
    let pki = Pki::new();
    let tls = TlsConfig {
        port: None,
        cluster: true,
        ..pki.tls_config(0)
    };
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut cluster = cluster_config(&format!("n{i}"), nodes.first().map(cluster_addr), SECRET);
        cluster.consistency.replicas = 3;
        let tls = tls.clone();
        nodes.push(
            start_with(move |config| {
                config.cluster = Some(cluster);
                config.tls = Some(tls);
            })
            .await,
        );
    }
    for node in &nodes {
        until(node, "every node serving", |view| {
            serving_ids(view) == ["n0", "n1", "n2"]
        })
        .await;
    }
    // Writes forwarded and replicated over mutual TLS reach all three copies.
    let mut first = connect(&nodes[0]).await;
    for i in 0..30 {
        ok(&mut first, &["SET", &format!("k:{i}"), &i.to_string()]).await;
    }
    let mut last = connect(&nodes[2]).await;
    for i in 0..30 {
        assert_eq!(
            ok(&mut last, &["GET", &format!("k:{i}")]).await,
            bulk(&i.to_string())
        );
    }
    // A peer with the secret but no certificate cannot call a node.
    let impostor = quorra_cluster::rpc::RpcClient::new(quorra_cluster::rpc::RpcConfig::new(
        "impostor",
        quorra_cluster::rpc::ClusterSecret::new(SECRET),
    ));
    let request = quorra_cluster::message::Request::KeyspaceCounts {
        primary_only: false,
    };
    assert!(
        impostor
            .call(cluster_addr(&nodes[0]), request.encode())
            .await
            .is_err()
    );
}

/// The certificate a TLS server at `addr` presents, in DER.
async fn served_certificate(addr: SocketAddr, ca: &Path, identity: &TlsFiles) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = connector(ca, Some(identity))
        .connect(name, tcp)
        .await
        .unwrap();
    let (_, session) = stream.get_ref();
    session.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_a_broken_file_keeps_the_old_one() {
    let pki = Pki::new();
    let ca = TestCa::new(&pki.dir, "rotation");
    let first = ca.issue("served", &["localhost"]);
    let client = ca.issue("rotation-client", &["client"]);
    let ca_file = ca.ca_path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quorra"))
        .args([
            "server",
            "--port",
            "0",
            "--http-port",
            "0",
            "--tls-port",
            "0",
        ])
        .arg("--tls-cert-file")
        .arg(&first.cert_file)
        .arg("--tls-key-file")
        .arg(&first.key_file)
        .arg("--tls-ca-cert-file")
        .arg(&ca_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let tls_addr: SocketAddr = line
        .split_whitespace()
        .skip_while(|word| *word != "TLS")
        .nth(1)
        .unwrap_or_else(|| panic!("no TLS address in {line:?}"))
        .parse()
        .unwrap();
    let before = served_certificate(tls_addr, &ca_file, &client).await;
    // Rotate: new files in place of the old, then SIGHUP.
    let second = ca.issue("served", &["localhost"]);
    assert_eq!(second.cert_file, first.cert_file);
    let hangup = |pid: u32| {
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
    };
    assert!(hangup(child.id()).success());
    let mut after = before.clone();
    for _ in 0..100 {
        after = served_certificate(tls_addr, &ca_file, &client).await;
        if after != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(after, before, "the new certificate is served after SIGHUP");
    // A broken key: the reload fails and the node keeps serving the last good one.
    std::fs::write(&second.key_file, "not a key").unwrap();
    assert!(hangup(child.id()).success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served_certificate(tls_addr, &ca_file, &client).await, after);
    assert!(child.try_wait().unwrap().is_none(), "still running");
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `program` with `args` and returns what it printed; fails the test with a clear
/// message if the program is missing (`scripts/test` installs redis-tools and redis-py).
fn run_tool(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("{program} cannot run ({error}); ./scripts/test installs it")
        });
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_and_redis_py_work_against_a_tls_node() {
    let pki = Pki::new();
    let server = start_with(|config| config.tls = Some(pki.tls_config(0))).await;
    let port = server.tls_addr.unwrap().port().to_string();
    let ca = pki.node.ca_cert_file.clone().unwrap();
    let (ca, cert, key) = (
        ca.to_str().unwrap().to_owned(),
        pki.client.cert_file.to_str().unwrap().to_owned(),
        pki.client.key_file.to_str().unwrap().to_owned(),
    );
    let cli = {
        let (ca, cert, key, port) = (ca.clone(), cert.clone(), key.clone(), port.clone());
        move |args: &[&str]| {
            let mut all = vec![
                "--tls",
                "--cacert",
                &ca,
                "--cert",
                &cert,
                "--key",
                &key,
                "-h",
                "127.0.0.1",
                "-p",
                &port,
            ];
            all.extend_from_slice(args);
            run_tool("redis-cli", &all)
        }
    };
    let replies = tokio::task::spawn_blocking(move || {
        (
            cli(&["PING"]),
            cli(&["SET", "tls:cli", "yes"]),
            cli(&["GET", "tls:cli"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        (replies.0.trim(), replies.1.trim(), replies.2.trim()),
        ("PONG", "OK", "yes")
    );
    let script = format!(
        "import redis\n\
         r = redis.Redis(host='127.0.0.1', port={port}, ssl=True, ssl_ca_certs='{ca}', \
         ssl_certfile='{cert}', ssl_keyfile='{key}', ssl_check_hostname=False)\n\
         r.set('tls:py', 'from python')\n\
         print(r.get('tls:cli').decode(), r.get('tls:py').decode(), sep='|')\n"
    );
    let printed = tokio::task::spawn_blocking(move || run_tool("python3", &["-c", &script]))
        .await
        .unwrap();
    assert_eq!(printed.trim(), "yes|from python", "{printed}");
    assert_eq!(
        server.shared.store.get(b"tls:py"),
        Some("from python".into())
    );
}
