//! `-H tcp://` with mutual TLS: the docker CLI with client certificates gets in, a client
//! without them does not. Certificates are made with openssl for each run.

mod common;

use std::path::Path;
use std::process::Command;

use berth_engine::config::TlsConfig;
use berth_engine::daemon::Daemon;
use berth_engine::Config;

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=berthtest-ca",
    ]);
    openssl(dir, &ca);
    for (name, eku, san) in [
        (
            "server",
            "serverAuth",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ),
        (
            "client",
            "clientAuth",
            "subjectAltName=DNS:berthtest-client",
        ),
    ] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let eku = format!("extendedKeyUsage={eku}");
        let mut r = vec!["req"];
        r.extend(ec);
        r.extend([
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=berthtest",
            "-addext",
            san,
            "-addext",
            &eku,
        ]);
        openssl(dir, &r);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "1",
                "-copy_extensions",
                "copy",
            ],
        );
    }
}

#[test]
fn tcp_requires_client_certificates() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIP: openssl not installed");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap();
    let p = dir.path();
    make_certs(p);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = Config::with_roots(p.join("data"), p.join("exec"));
    let sock = p.join("d.sock");
    cfg.hosts = vec![
        format!("unix://{}", sock.display()),
        format!("tcp://127.0.0.1:{port}"),
    ];
    cfg.tls = TlsConfig {
        verify: true,
        ca_cert: Some(p.join("ca.pem")),
        cert: Some(p.join("server.pem")),
        key: Some(p.join("server.key")),
    };
    let d = Daemon::start(cfg).expect("daemon with tls");
    if !common::have_docker() {
        return;
    }
    let host = format!("tcp://127.0.0.1:{port}");
    let o = Command::new("docker")
        .args(["--tlsverify", "--tlscacert"])
        .arg(p.join("ca.pem"))
        .arg("--tlscert")
        .arg(p.join("client.pem"))
        .arg("--tlskey")
        .arg(p.join("client.key"))
        .args(["-H", &host, "version", "--format", "{{.Server.APIVersion}}"])
        .env("DOCKER_CONFIG", p.join("docker-config"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1.44");
    // no client certificate: refused during the handshake
    let o = Command::new("docker")
        .args(["--tls", "--tlscacert"])
        .arg(p.join("ca.pem"))
        .args(["-H", &host, "version", "--format", "{{.Server.APIVersion}}"])
        .env("DOCKER_CONFIG", p.join("docker-config"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "served without a client certificate");
    // the unix socket keeps working beside it
    let o = Command::new("docker")
        .args([
            "-H",
            &format!("unix://{}", sock.display()),
            "version",
            "--format",
            "{{.Server.APIVersion}}",
        ])
        .env("DOCKER_CONFIG", p.join("docker-config"))
        .output()
        .unwrap();
    assert!(o.status.success());
    d.stop().unwrap();
}

#[test]
fn tls_with_missing_files_fails_clearly() {
    let dir = tempfile::Builder::new()
        .prefix("berthtest")
        .tempdir()
        .unwrap();
    let p = dir.path();
    let mut cfg = Config::with_roots(p.join("data"), p.join("exec"));
    cfg.hosts = vec!["tcp://127.0.0.1:0".into()];
    cfg.tls = TlsConfig {
        verify: true,
        ca_cert: Some(p.join("nope-ca.pem")),
        cert: Some(p.join("nope.pem")),
        key: Some(p.join("nope.key")),
    };
    let e = Daemon::start(cfg).unwrap_err();
    assert!(e.to_string().contains("nope.pem"), "{e}");
}
