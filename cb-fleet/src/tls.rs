//! The Redis client for a fleet's URL: plain `redis://`, or `rediss://` (TLS)
//! with feature `tls`.
//!
//! TLS is redis-rs's own (`tokio-rustls-comp`): rustls with the `ring`
//! crypto provider, so there is no OpenSSL dependency. The server's
//! certificate is checked against Mozilla's root CAs (the `webpki-roots`
//! crate, compiled in, so a container without a CA bundle works), or, when
//! `FleetBuilder::tls_root_ca_pem` is given, against that CA alone. Host
//! names (or IP addresses) are checked: the URL's host must be in the
//! certificate's subject alternative names.
//! A client certificate for servers that ask for one (`tls-auth-clients yes`)
//! is given with `FleetBuilder::tls_client_identity_pem`.
//! `rediss://...#insecure` (no verification) is refused.

use crate::names::redact;
use crate::FleetError;

/// The TLS material given to the builder, as PEM.
#[derive(Clone, Default)]
pub(crate) struct TlsSettings {
    /// The CA certificates to trust instead of the built-in roots.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) root_ca: Option<Vec<u8>>,
    /// The client's certificate chain and private key.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsSettings {
    /// A CA or a client identity was given.
    pub(crate) fn is_set(&self) -> bool {
        self.root_ca.is_some() || self.identity.is_some()
    }
}

/// The client for `url` (checked already by `names::check_url`).
pub(crate) fn client(url: &str, tls: &TlsSettings) -> Result<redis::Client, FleetError> {
    let bad_url = |_| FleetError::invalid("url", redact(url), "a valid redis:// or rediss:// URL");
    let is_tls = url.starts_with("rediss://");
    if tls.is_set() && !is_tls {
        return Err(FleetError::invalid(
            "url",
            redact(url),
            "a rediss:// URL: a TLS CA or client certificate was given",
        ));
    }
    if !is_tls || !tls.is_set() {
        return redis::Client::open(url).map_err(bad_url);
    }
    with_certificates(url, tls)
}

#[cfg(feature = "tls")]
fn with_certificates(url: &str, tls: &TlsSettings) -> Result<redis::Client, FleetError> {
    redis::Client::build_with_tls(url, certificates(tls)?)
        .map_err(|_| FleetError::invalid("url", redact(url), "a rediss:// URL with usable TLS certificates"))
}

/// The TLS material of `tls`, checked: readable PEM certificates, and a
/// private key (never shown).
#[cfg(feature = "tls")]
pub(crate) fn certificates(tls: &TlsSettings) -> Result<redis::TlsCertificates, FleetError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certificates = |field: &'static str, pem: &[u8]| -> Result<(), FleetError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| FleetError::invalid(field, format!("unreadable PEM ({e})"), "PEM certificates"))?;
        if certs.is_empty() {
            return Err(FleetError::invalid(
                field,
                "no `BEGIN CERTIFICATE` block".to_owned(),
                "at least one PEM certificate",
            ));
        }
        Ok(())
    };
    if let Some(ca) = &tls.root_ca {
        certificates("tls_root_ca_pem", ca)?;
    }
    if let Some((chain, key)) = &tls.identity {
        certificates("tls_client_identity_pem", chain)?;
        // Never shows the key, only that it is not one.
        PrivateKeyDer::from_pem_slice(key).map_err(|_| {
            FleetError::invalid(
                "tls_client_identity_pem",
                "a key that is not a PEM private key".to_owned(),
                "a PEM private key (PKCS#8, PKCS#1 or SEC1)",
            )
        })?;
    }
    Ok(redis::TlsCertificates {
        client_tls: tls.identity.as_ref().map(|(chain, key)| redis::ClientTlsConfig {
            client_cert: chain.clone(),
            client_key: key.clone(),
        }),
        root_cert: tls.root_ca.clone(),
    })
}

#[cfg(not(feature = "tls"))]
fn with_certificates(url: &str, _: &TlsSettings) -> Result<redis::Client, FleetError> {
    // `check_url` refuses rediss:// without the feature, and the builder's
    // TLS methods exist only with it.
    Err(FleetError::invalid(
        "url",
        redact(url),
        "redis://...; rediss:// (TLS) needs cb-fleet's feature `tls`",
    ))
}
