//! The HTTP/2 channel to the control plane: address, TLS, keepalive.

use std::time::Duration;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::Error;
use super::options::{Options, TlsOptions};

/// The endpoint to dial; every file it needs is read now, so that mistakes show at start.
pub(crate) fn endpoint(options: &Options) -> Result<Endpoint, Error> {
    let bad = |reason: String| Error::Address {
        address: options.address.clone(),
        reason,
    };
    let uri: tonic::transport::Uri = options
        .address
        .parse()
        .map_err(|e| bad(format!("not a URL: {e}")))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad("the scheme must be http:// or https://".into())),
    };
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    if !tls && !is_loopback(host) {
        tracing::warn!(
            address = %options.address,
            "xDS over plaintext to a non-loopback address: policy can be read and altered on the way"
        );
    }
    let mut endpoint = Endpoint::from_shared(options.address.clone())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(options.keepalive_interval)
        .keep_alive_timeout(options.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .tcp_nodelay(true);
    if tls {
        endpoint = endpoint
            .tls_config(tls_config(&options.tls)?)
            .map_err(Error::Tls)?;
    }
    Ok(endpoint)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn tls_config(options: &TlsOptions) -> Result<ClientTlsConfig, Error> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| Error::TlsFile {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut config = ClientTlsConfig::new().with_native_roots();
    if let Some(ca) = &options.ca_file {
        config = config.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let Some(name) = &options.server_name {
        config = config.domain_name(name.clone());
    }
    if let Some((cert, key)) = &options.client_cert {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(config)
}

/// The stream's gRPC metadata.
pub(crate) fn headers(options: &Options) -> Result<MetadataMap, Error> {
    let mut map = MetadataMap::new();
    for (k, v) in &options.headers {
        let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|_| Error::Options(format!("header name `{k}` is not valid gRPC metadata")))?;
        let value: AsciiMetadataValue = v
            .parse()
            .map_err(|_| Error::Options(format!("the value of header `{k}` is not ASCII")))?;
        map.append(key, value);
    }
    Ok(map)
}
