//! TLS for `tcp://` daemons, with the docker CLI's flags: `--tls` (encrypt, no verification),
//! `--tlsverify` (verify the daemon against `--tlscacert`), `--tlscert`/`--tlskey` (client
//! certificate), defaults from `DOCKER_CERT_PATH` or `~/.docker/{ca,cert,key}.pem`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// TLS settings from the command line and environment.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Use TLS without verifying the daemon.
    pub tls: bool,
    /// Use TLS and verify the daemon.
    pub verify: bool,
    /// CA bundle.
    pub ca: Option<PathBuf>,
    /// Client certificate chain.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
    /// Directory with ca.pem/cert.pem/key.pem defaults.
    pub cert_dir: PathBuf,
}

/// Accepts any server certificate (`--tls` without `--tlsverify`, as the docker CLI does);
/// handshake signatures are still checked.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn certs(p: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let v = CertificateDer::pem_file_iter(p)
        .with_context(|| format!("read certificates from {}", p.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse certificates in {}", p.display()))?;
    if v.is_empty() {
        anyhow::bail!("no certificate found in {}", p.display());
    }
    Ok(v)
}

/// Build the client configuration, or None when TLS is off.
pub fn client_config(o: &TlsOptions) -> anyhow::Result<Option<Arc<ClientConfig>>> {
    if !o.tls && !o.verify {
        return Ok(None);
    }
    let pick = |flag: &Option<PathBuf>, name: &str| -> Option<PathBuf> {
        flag.clone().or_else(|| {
            let p = o.cert_dir.join(name);
            p.exists().then_some(p)
        })
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if o.verify {
        let ca = pick(&o.ca, "ca.pem").ok_or_else(|| {
            anyhow::anyhow!(
                "--tlsverify needs a CA: pass --tlscacert or put ca.pem in {}",
                o.cert_dir.display()
            )
        })?;
        let mut roots = RootCertStore::empty();
        for c in certs(&ca)? {
            roots
                .add(c)
                .with_context(|| format!("add CA from {}", ca.display()))?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    };
    let cfg = match (pick(&o.cert, "cert.pem"), pick(&o.key, "key.pem")) {
        (Some(c), Some(k)) => {
            let key = PrivateKeyDer::from_pem_file(&k)
                .with_context(|| format!("read private key {}", k.display()))?;
            builder
                .with_client_auth_cert(certs(&c)?, key)
                .context("client certificate and key do not match")?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(cfg)))
}
