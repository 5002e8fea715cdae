//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert` (in the URL, or `PGSSLROOTCERT`)
//! turned into a rustls connector (`tokio-postgres-rustls`) that every connection llmgate
//! makes to PostgreSQL uses.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `prefer` (default) | when the server offers it, else plain | verified as below; a failure fails the connection (never plain, never unverified) |
//! | `require`, `verify-ca`, `verify-full` | always (a server without TLS is refused) | verified as below |
//!
//! Verified: with `sslrootcert=/path/ca.pem`, the chain must end at a certificate of that
//! file, and the server's name (the URL's host) must match only under `verify-full` (as
//! libpq does with a root file); without one (or `sslrootcert=system`), against the
//! bundled public roots (`webpki-roots`, as reqwest uses here) and always with the name
//! checked. `verify-ca` without a CA file is refused: with public roots, any site's
//! certificate would pass.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The URL parameters this module reads (tokio-postgres never sees them).
const OURS: [&str; 2] = ["sslmode", "sslrootcert"];

/// libpq's `sslmode`, as far as llmgate honours it (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Plain text only.
    Disable,
    /// TLS if the server offers it, plain text if it does not.
    Prefer,
    /// TLS or no connection.
    Require,
    /// TLS, the chain verified against the CA file, the name not checked.
    VerifyCa,
    /// TLS, the chain and the server's name verified.
    VerifyFull,
}

impl Mode {
    /// `sslmode=value`.
    fn parse(value: &str) -> Result<Mode, String> {
        Ok(match value {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow (plain text first) is not supported: use prefer, \
                     require, verify-ca or verify-full (or disable)"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "sslmode={other}: expected disable, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }

    /// What tokio-postgres is told: whether TLS is tried, and whether it is required.
    fn driver(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// The bundled public roots (no `sslrootcert`, or `sslrootcert=system`).
    Public,
    /// The certificates of a PEM file.
    File(PathBuf),
}

/// A URL's TLS settings, read and checked: the connector, and what the driver is told.
#[derive(Clone)]
pub(super) struct Tls {
    /// The `sslmode` asked for.
    pub(super) mode: Mode,
    roots: Roots,
    connector: MakeRustlsConnect,
}

impl Tls {
    /// The settings of `url` (`root_env`: `PGSSLROOTCERT`, used when the URL names no
    /// CA file) and the URL without the parameters read here. Reads the CA file now, so a
    /// missing or empty one fails at config load. Errors never repeat the URL.
    pub(super) fn from_url(url: &str, root_env: Option<&str>) -> Result<(String, Tls), String> {
        let (rest, ours) = split(url)?;
        let param = |key: &str| {
            ours.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let mode = param("sslmode").map_or(Ok(Mode::Prefer), Mode::parse)?;
        let roots = match param("sslrootcert").or(root_env.filter(|r| !r.is_empty())) {
            None | Some("system") => Roots::Public,
            Some(path) => Roots::File(PathBuf::from(path)),
        };
        if mode == Mode::VerifyCa && roots == Roots::Public {
            return Err(
                "sslmode=verify-ca needs the server's CA (sslrootcert=/path/ca.pem or \
                 PGSSLROOTCERT): with public roots any site's certificate would pass; use \
                 verify-full"
                    .into(),
            );
        }
        let connector = MakeRustlsConnect::new(client_config(mode, &roots)?);
        Ok((
            rest,
            Tls {
                mode,
                roots,
                connector,
            },
        ))
    }

    /// The driver's `sslmode` for these settings.
    pub(super) fn driver_mode(&self) -> SslMode {
        self.mode.driver()
    }

    /// The connector (cheap: the rustls config is shared).
    pub(super) fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }
}

impl PartialEq for Tls {
    fn eq(&self, other: &Self) -> bool {
        self.mode == other.mode && self.roots == other.roots
    }
}

/// `url` without [`OURS`], and the decoded values of those (in order).
fn split(url: &str) -> Result<(String, Vec<(String, String)>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut ours = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key)?;
        if OURS.contains(&key.as_str()) {
            ours.push((key, decode(value)?));
        } else {
            kept.push(pair);
        }
    }
    let rest = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Ok((rest, ours))
}

/// A percent-decoded URL component.
fn decode(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "a URL parameter is not valid UTF-8 once decoded".to_owned())
}

/// The rustls client config for `mode` and `roots` (ring, TLS 1.2 and 1.3).
fn client_config(mode: Mode, roots: &Roots) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let store = match roots {
        Roots::Public => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        Roots::File(path) => read_roots(path)?,
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS to PostgreSQL: {e}"))?;
    let name_checked = mode == Mode::VerifyFull || matches!(roots, Roots::Public);
    let config = match name_checked {
        true => builder.with_root_certificates(store).with_no_client_auth(),
        false => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly::new(store, provider)?))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// The certificates of the PEM file at `path` (at least one).
fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("sslrootcert={shown}: {e}"))?;
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| format!("sslrootcert={shown}: not a PEM certificate: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("sslrootcert={shown}: {e}"))?;
    }
    if store.is_empty() {
        return Err(format!("sslrootcert={shown}: no certificate in the file"));
    }
    Ok(store)
}

/// `verify-ca` (and `prefer`/`require` with a CA file): the chain must end at one of the
/// roots and every signature is checked, but the certificate may name another host (as
/// libpq does; the roots are the operator's own CA).
#[derive(Debug)]
struct ChainOnly {
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
    /// For the handshake signatures, which are checked as usual.
    inner: Arc<WebPkiServerVerifier>,
}

impl ChainOnly {
    /// A verifier over `roots`.
    fn new(roots: RootCertStore, provider: Arc<CryptoProvider>) -> Result<ChainOnly, String> {
        let inner =
            WebPkiServerVerifier::builder_with_provider(roots.clone().into(), provider.clone())
                .build()
                .map_err(|e| format!("TLS to PostgreSQL: {e}"))?;
        Ok(ChainOnly {
            roots,
            provider,
            inner,
        })
    }
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A TLS failure that waiting cannot mend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The certificate does not name the host the URL connects to.
    Name,
    /// The certificate does not chain to a trusted root (or is expired, malformed...).
    Untrusted,
    /// The server does not do TLS, and the `sslmode` requires it.
    NoTls,
}

/// The TLS failure `e` (or one of its causes) is, if any.
fn failure(e: &(dyn std::error::Error + 'static)) -> Option<Failure> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        let tls = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(why)) = tls {
            return Some(match why {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Failure::Name,
                _ => Failure::Untrusted,
            });
        }
        if c.to_string() == "server does not support TLS" {
            return Some(Failure::NoTls);
        }
        cause = c.source();
    }
    None
}

/// Whether `e` (or a cause) is a TLS failure that waiting cannot mend: the server's
/// certificate is not trusted or names another host, or the server does not do TLS while
/// it was required.
pub(super) fn permanent(e: &(dyn std::error::Error + 'static)) -> bool {
    failure(e).is_some()
}

/// What to add to a TLS failure so the reader knows what to change.
pub(super) fn hint(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    Some(match failure(e)? {
        Failure::Name => {
            "the server's TLS certificate does not name the URL's host: connect by a name \
             it carries, or use sslmode=verify-ca with your own CA in sslrootcert"
        }
        Failure::Untrusted => {
            "the server's TLS certificate is not trusted: give its CA with \
             sslrootcert=/path/ca.pem in the URL (or PGSSLROOTCERT)"
        }
        Failure::NoTls => "the URL's sslmode requires TLS, which this server does not offer",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_parameters_are_taken_out_and_the_rest_kept() {
        let (rest, ours) =
            split("postgresql://u:p@h/db?connect_timeout=3&sslmode=require&sslrootcert=%2Ftmp%2Fca.pem&application_name=x")
                .unwrap();
        assert_eq!(
            rest,
            "postgresql://u:p@h/db?connect_timeout=3&application_name=x"
        );
        assert_eq!(
            ours,
            [
                ("sslmode".to_owned(), "require".to_owned()),
                ("sslrootcert".to_owned(), "/tmp/ca.pem".to_owned())
            ]
        );
        let (rest, ours) = split("postgresql://u@h/db?sslmode=disable").unwrap();
        assert_eq!(rest, "postgresql://u@h/db");
        assert_eq!(ours.len(), 1);
        assert_eq!(
            split("postgresql://u@h/db").unwrap().0,
            "postgresql://u@h/db"
        );
    }

    #[test]
    fn modes_and_roots_are_checked() {
        let tls = |u: &str| Tls::from_url(u, None).map(|(_, t)| t);
        assert_eq!(tls("postgresql://h/db").unwrap().mode, Mode::Prefer);
        assert_eq!(
            tls("postgresql://h/db?sslmode=verify-full")
                .unwrap()
                .driver_mode(),
            SslMode::Require
        );
        assert_eq!(
            tls("postgresql://h/db?sslmode=disable")
                .unwrap()
                .driver_mode(),
            SslMode::Disable
        );
        let err = tls("postgresql://h/db?sslmode=verify-ca").err().unwrap();
        assert!(err.contains("needs the server's CA"), "{err}");
        let err = tls("postgresql://h/db?sslmode=allow").err().unwrap();
        assert!(err.contains("not supported"), "{err}");
        let err = tls("postgresql://h/db?sslmode=bogus").err().unwrap();
        assert!(err.contains("sslmode=bogus"), "{err}");
        let err = tls("postgresql://h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap();
        assert!(err.contains("sslrootcert=/nonexistent/ca.pem"), "{err}");
        let empty = tempfile::NamedTempFile::new().unwrap();
        let err = Tls::from_url("postgresql://h/db?sslmode=require", empty.path().to_str())
            .err()
            .unwrap();
        assert!(
            err.contains("no certificate"),
            "PGSSLROOTCERT is read: {err}"
        );
    }
}
