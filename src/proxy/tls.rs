//! TLS both ways: [`UpstreamTls`] verifies `https://` upstreams, and
//! [`ListenerTls`] serves clients over TLS with a certificate that is
//! reloaded when its files change.
//!
//! Both use rustls with the `ring` provider. Verification of an upstream's
//! certificate cannot be turned off: an upstream whose certificate does not
//! verify is answered `502 Bad Gateway`, saying why.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The one crypto provider of both sides: `ring`, named here rather than
/// taken from the process-wide default, which another crate may have set
/// (or left unset). rustls deprecates it for want of post-quantum key
/// exchange, which only its `aws-lc-rs` provider has; that one needs cmake
/// and nasm to build, which the crate does not ask of its users.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS could not be set up: a file that cannot be read or holds no
/// usable certificate or key, or no root certificates on the system. Every
/// message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM file cannot be read or parsed.
    #[error("cannot read the {what} `{}`: {source}", path.display())]
    Read {
        /// What the file should hold: "CA bundle", "certificate", "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file holds no certificate (a CA bundle, a certificate chain).
    #[error("the {what} `{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// rustls refused what the files hold: a CA certificate it cannot
    /// parse, a key of a kind it does not support, a key that does not
    /// belong to the certificate.
    #[error("unusable TLS {what} in `{}`: {source}", path.display())]
    Rejected {
        /// What was refused.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// No root certificate could be loaded from the system's store.
    #[error(
        "no root certificates found on this system{errors}; install the CA certificates \
         (e.g. the ca-certificates package), or name a CA bundle for the upstream"
    )]
    NoSystemRoots {
        /// What failed while looking, as `: error; error`, or empty.
        errors: String,
    },
}

/// Which certificate authorities an `https://` upstream's certificate must
/// chain to: the system's root certificates
/// ([`system_roots`](Self::system_roots), what
/// [`ReverseProxy::new`](super::ReverseProxy::new) uses), or those of a PEM
/// bundle instead ([`from_ca_file`](Self::from_ca_file), for a private CA).
///
/// There is no setting that skips verification: a certificate that has
/// expired, is not valid for the upstream's host name or was not issued by
/// a trusted authority fails the request with `502 Bad Gateway`, whose
/// JSON-RPC error says which, as the log does.
///
/// ```no_run
/// use mcp_resume::proxy::{ReverseProxy, UpstreamTls};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = UpstreamTls::from_ca_file("/etc/mcp/private-ca.pem")?;
/// let proxy = ReverseProxy::new("https://mcp.internal:8443/mcp".parse()?).upstream_tls(tls);
/// # let _ = proxy;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct UpstreamTls {
    config: Arc<ClientConfig>,
    trusted: Arc<str>,
}

impl UpstreamTls {
    /// Trusts the system's root certificates (on Linux, the files named by
    /// `SSL_CERT_FILE`/`SSL_CERT_DIR`, or the distribution's bundle).
    /// Fails when none can be loaded; certificates that cannot be parsed
    /// are skipped, with a warning.
    pub fn system_roots() -> Result<Self, TlsConfigError> {
        let found = rustls_native_certs::load_native_certs();
        let errors: String = found.errors.iter().map(|e| format!("; {e}")).collect();
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(TlsConfigError::NoSystemRoots {
                errors: errors
                    .strip_prefix(';')
                    .map_or(String::new(), |e| format!(":{e}")),
            });
        }
        if ignored > 0 || !errors.is_empty() {
            tracing::warn!(
                added,
                ignored,
                errors = errors.trim_start_matches("; "),
                "some of the system's root certificates could not be loaded"
            );
        }
        Ok(Self::trusting(
            roots,
            "the system's root certificates".into(),
        ))
    }

    /// Trusts the certificates of the PEM bundle at `path`, and only those:
    /// for an upstream whose certificate a private CA issued.
    pub fn from_ca_file(path: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
        const WHAT: &str = "CA bundle";
        let path = path.as_ref();
        let certs = read_certificates(WHAT, path)?;
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|source| TlsConfigError::Rejected {
                what: "CA certificate",
                path: path.to_owned(),
                source,
            })?;
        }
        let trusted = format!("the CA bundle {}", path.display());
        Ok(Self::trusting(roots, trusted.into()))
    }

    fn trusting(roots: RootCertStore, trusted: Arc<str>) -> Self {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls's default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            config: Arc::new(config),
            trusted,
        }
    }

    /// The client configuration: what the upstream connector wraps.
    pub(crate) fn client_config(&self) -> ClientConfig {
        (*self.config).clone()
    }

    /// A configuration that trusts nothing: for `http://` upstreams, whose
    /// connector never starts a TLS handshake, and for an `https://` one
    /// when the system has no root certificates (every handshake fails).
    pub(crate) fn trusting_nothing() -> Self {
        Self::trusting(RootCertStore::empty(), "nothing".into())
    }
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

/// Why an upstream's TLS handshake failed, in words a client's operator can
/// act on, or `None` when `error` is not a TLS failure.
pub(crate) fn handshake_failure(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(describe(tls));
        }
        // tokio-rustls reports rustls's error inside an `io::Error`, and
        // hyper-rustls wraps that in another; `io::Error::source` skips the
        // error it wraps, so step into it instead.
        next = match error.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => error.source(),
        };
    }
    None
}

fn describe(error: &rustls::Error) -> String {
    let why = match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "its TLS certificate has expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "its TLS certificate is not valid yet"
            }
            CertificateError::UnknownIssuer => {
                "its TLS certificate was not issued by a trusted certificate authority \
                 (unknown issuer)"
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "its TLS certificate is not valid for the upstream's host name"
            }
            CertificateError::Revoked => "its TLS certificate has been revoked",
            _ => "its TLS certificate does not verify",
        },
        _ => "the TLS handshake failed",
    };
    format!("{why} ({error})")
}

/// The listener's TLS: a certificate chain and private key read from PEM
/// files, offered with ALPN `h2` and `http/1.1` so that clients may speak
/// HTTP/2 or HTTP/1.1 over it. Pass it to [`serve_tls`](super::serve_tls).
///
/// [`reload`](Self::reload) reads the files again; connections accepted
/// after it use the new certificate, open ones keep theirs.
/// [`reload_when_changed`](Self::reload_when_changed) does so on `SIGHUP`
/// and whenever the files' modification times change. A reload that fails
/// (a key that does not match the new certificate, a file half written)
/// keeps the certificate in use, and says why in the log.
///
/// ```no_run
/// use mcp_resume::proxy::ListenerTls;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = ListenerTls::from_pem_files("cert.pem", "key.pem")?;
/// # let _ = tls;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ListenerTls {
    acceptor: TlsAcceptor,
    current: Arc<CurrentCertificate>,
}

impl ListenerTls {
    /// How often [`reload_when_changed`](Self::reload_when_changed) looks
    /// at the files' modification times unless told otherwise: 5 seconds.
    pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

    /// The ALPN protocols offered, preferred first.
    const ALPN: [&'static [u8]; 2] = [b"h2", b"http/1.1"];

    /// Reads the certificate chain (leaf first) and its private key (PKCS#8,
    /// PKCS#1 or SEC1) from PEM files.
    pub fn from_pem_files(
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Result<Self, TlsConfigError> {
        let cert_path = cert_path.into();
        let key_path = key_path.into();
        let modified = modification_times(&cert_path, &key_path);
        let key = load_certified_key(&cert_path, &key_path)?;
        let current = Arc::new(CurrentCertificate {
            cert_path,
            key_path,
            key: RwLock::new(key),
            modified: Mutex::new(modified),
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls's default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = Self::ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            current,
        })
    }

    /// Reads the files again and, if they hold a usable certificate and
    /// key, serves new connections with them. On error the certificate in
    /// use stays.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        let current = &self.current;
        *current
            .modified
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            modification_times(&current.cert_path, &current.key_path);
        let key = load_certified_key(&current.cert_path, &current.key_path)?;
        *current.key.write().unwrap_or_else(PoisonError::into_inner) = key;
        Ok(())
    }

    /// Spawns a task that reloads the certificate (as [`reload`](Self::reload)
    /// does) when the process gets `SIGHUP` (on Unix) and when either file's
    /// modification time changes, looked at every `poll_interval`
    /// ([`DEFAULT_RELOAD_INTERVAL`](Self::DEFAULT_RELOAD_INTERVAL) for the
    /// command). Each reload is logged, and so is a failed one; a failed
    /// reload is tried again when the files change again. Abort the handle
    /// to stop. Must be called within a Tokio runtime.
    pub fn reload_when_changed(&self, poll_interval: Duration) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut hangups = hangups();
            let mut poll = tokio::time::interval(poll_interval);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let trigger = tokio::select! {
                    _ = poll.tick() => {
                        let current = &tls.current;
                        let now = modification_times(&current.cert_path, &current.key_path);
                        let before = *current.modified.lock().unwrap_or_else(PoisonError::into_inner);
                        if now == before {
                            continue;
                        }
                        "the files changed"
                    }
                    Some(()) = next_hangup(&mut hangups) => "SIGHUP",
                };
                let cert = tls.current.cert_path.display();
                match tls.reload() {
                    Ok(()) => tracing::info!(%cert, trigger, "TLS certificate reloaded"),
                    Err(error) => tracing::error!(
                        %cert,
                        trigger,
                        %error,
                        "TLS certificate not reloaded; still serving the previous one"
                    ),
                }
            }
        })
    }

    /// The TLS handshake on an accepted connection.
    pub(crate) async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.acceptor.accept(stream).await
    }
}

impl fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerTls")
            .field("cert_path", &self.current.cert_path)
            .field("key_path", &self.current.key_path)
            .finish_non_exhaustive()
    }
}

/// The certificate served to new connections, replaced by reloads.
struct CurrentCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    key: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when last read (or tried).
    modified: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentCertificate")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.key
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn modification_times(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let read_error = |source| TlsConfigError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, TlsConfigError> {
    let chain = read_certificates("certificate", cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|source| TlsConfigError::Read {
        what: "private key",
        path: key_path.to_owned(),
        source,
    })?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|source| {
        TlsConfigError::Rejected {
            what: "private key",
            path: key_path.to_owned(),
            source,
        }
    })?;
    Ok(Arc::new(key))
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup())
            .inspect_err(|error| {
                tracing::warn!(%error, "cannot listen for SIGHUP; TLS reloads follow file changes only");
            })
            .ok()
    }
}

/// The next `SIGHUP`; never, where there are none.
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangups {
        return signal.recv().await;
    }
    let _ = hangups;
    std::future::pending().await
}

/// In a request's extensions: the client connected over TLS
/// ([`serve_tls`](super::serve_tls)), so its scheme is `https`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ArrivedOverTls;
