//! Which `--listen` endpoints the plane accepts. Anyone who reaches a plane endpoint can read and
//! write the universe, so an endpoint must be on loopback or a Unix socket, or TLS that asks
//! every client for a certificate signed by the configured authority (mutual TLS: Zenoh's
//! `transport/link/tls/enable_mtls` with a `root_ca_certificate`). Anything else reachable from
//! other machines is refused unless the owner forces it (`--insecure-listen`), and then it is
//! loudly warned about.

use std::net::IpAddr;

use jit_kernel::{Error, Result};

/// Whether the Zenoh configuration makes TLS listeners demand client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutualTls {
    /// `enable_mtls` is on and a root CA is set: only clients with a certificate it signed
    /// get in.
    Required,
    /// Anyone may connect (server-authenticated TLS at most).
    Off,
}

impl MutualTls {
    /// What `config` says.
    pub fn of(config: &zenoh::Config) -> MutualTls {
        let on = config
            .get_json("transport/link/tls/enable_mtls")
            .is_ok_and(|v| v.trim() == "true");
        let ca = config
            .get_json("transport/link/tls/root_ca_certificate")
            .is_ok_and(|v| v.trim() != "null");
        if on && ca {
            MutualTls::Required
        } else {
            MutualTls::Off
        }
    }
}

/// Refuses (code `insecure_listen`) an endpoint off loopback that is not TLS with client
/// certificates, unless `insecure` is set, in which case it is only warned about.
pub fn check(endpoints: &[String], mtls: MutualTls, insecure: bool) -> Result<()> {
    for endpoint in endpoints {
        if is_private(endpoint) {
            continue;
        }
        if is_tls(endpoint) && mtls == MutualTls::Required {
            continue;
        }
        if insecure {
            tracing::warn!(
                %endpoint,
                "listening without TLS on an address other machines may reach: anyone who reaches it can read and write this universe"
            );
            continue;
        }
        return Err(Error::InsecureListen(format!(
            "refusing to listen on {endpoint}: it is not loopback, and not TLS that requires client certificates, so anyone who reaches it could read and write this universe (use tcp/127.0.0.1, or tls/ with a Zenoh configuration that sets transport/link/tls/enable_mtls and root_ca_certificate — docs/deploy.md — or --insecure-listen to do it anyway)"
        )));
    }
    Ok(())
}

/// [`check`] before anything starts: reads the Zenoh configuration the plane will use
/// (`zenoh_config`, else `JIT_ZENOH_CONFIG`'s) to learn whether TLS requires client
/// certificates.
pub fn preflight(
    endpoints: &[String],
    zenoh_config: Option<&std::path::Path>,
    insecure: bool,
) -> crate::Result<()> {
    let config = crate::base_config("peer", zenoh_config)?;
    Ok(check(endpoints, MutualTls::of(&config), insecure)?)
}

/// Whether the endpoint is a TLS one.
fn is_tls(endpoint: &str) -> bool {
    endpoint.starts_with("tls/") || endpoint.starts_with("quic/")
}

/// Whether the endpoint is a Unix socket, or bound to loopback only.
fn is_private(endpoint: &str) -> bool {
    let endpoint = endpoint.split(['?', '#']).next().unwrap_or_default();
    let Some((protocol, address)) = endpoint.split_once('/') else {
        return false;
    };
    match protocol {
        "unixsock-stream" | "unixpipe" | "vsock" => true,
        _ => {
            let host = match address.rsplit_once(':') {
                Some((host, _port)) => host,
                None => address,
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_unix_and_tls_pass_others_do_not() {
        for ok in [
            "tcp/127.0.0.1:7447",
            "tcp/[::1]:7447",
            "tcp/localhost:7447",
            "unixsock-stream//tmp/x.sock",
            "tls/127.0.0.1:7447",
        ] {
            assert!(is_private(ok), "{ok}");
        }
        for bad in [
            "tcp/0.0.0.0:7447",
            "tcp/[::]:7447",
            "tcp/192.168.1.5:7447",
            "tcp/example.org:7447",
            "udp/0.0.0.0:7447",
            "tls/0.0.0.0:7447",
            "garbage",
        ] {
            assert!(!is_private(bad), "{bad}");
        }
        assert!(check(&["tcp/0.0.0.0:1".into()], MutualTls::Off, false).is_err());
        assert!(check(&["tcp/0.0.0.0:1".into()], MutualTls::Off, true).is_ok());
        // TLS off loopback needs client certificates; plain TCP never passes without the force.
        assert!(check(&["tls/0.0.0.0:1".into()], MutualTls::Off, false).is_err());
        assert!(check(&["tls/0.0.0.0:1".into()], MutualTls::Required, false).is_ok());
        assert!(check(&["tcp/0.0.0.0:1".into()], MutualTls::Required, false).is_err());
    }
}
