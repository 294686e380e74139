//! TLS for the public listener (`tls-cert`, `tls-key`): `wss://` and
//! `https://` with rustls, ALPN `h2` and `http/1.1`, so that WebSockets over
//! HTTP/2 (RFC 8441) work over TLS too.

use anyhow::{Context as _, bail};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// A TLS acceptor for the certificate chain in `cert` and the private key
/// in `key` (PEM files). Each failure names the file and what is wrong.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let (cert_shown, key_shown) = (cert.display(), key.display());
    let chain = certificates(cert)?;
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|error| match error {
        rustls::pki_types::pem::Error::Io(io) => {
            anyhow::Error::new(io).context(format!("cannot read TLS key file {key_shown}"))
        }
        other => anyhow::anyhow!("{key_shown} holds no PEM private key: {other}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .with_context(|| format!("the key in {key_shown} does not fit the certificate in {cert_shown}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The certificates in the PEM file at `path`: at least one, else an error
/// naming the file (`wsplug talk --ca` reads its file with this too).
pub fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read TLS certificate file {shown}"))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{shown} is not a PEM certificate file"))?;
    if certificates.is_empty() {
        bail!("{shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    }
    Ok(certificates)
}
