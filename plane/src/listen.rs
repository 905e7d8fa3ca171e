//! Which `--listen` endpoints the plane accepts. Anyone who reaches a plane endpoint can read and
//! write the universe, so a plain (non-TLS) endpoint must be on loopback or a Unix socket; one
//! reachable from other machines is refused unless the owner forces it (`--insecure-listen`),
//! and then it is loudly warned about.

use std::net::IpAddr;

use jit_kernel::{Error, Result};

/// Refuses (code `insecure_listen`) a plain endpoint off loopback unless `insecure` is set, in
/// which case it is only warned about.
pub fn check(endpoints: &[String], insecure: bool) -> Result<()> {
    for endpoint in endpoints {
        if is_private(endpoint) {
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
            "refusing to listen on {endpoint}: it is not loopback and not TLS, so anyone who reaches it could read and write this universe (use a tcp/127.0.0.1 or tls/ endpoint, or --insecure-listen to do it anyway)"
        )));
    }
    Ok(())
}

/// Whether the endpoint is a Unix socket, TLS, or bound to loopback only.
fn is_private(endpoint: &str) -> bool {
    let endpoint = endpoint.split(['?', '#']).next().unwrap_or_default();
    let Some((protocol, address)) = endpoint.split_once('/') else {
        return false;
    };
    match protocol {
        "unixsock-stream" | "unixpipe" | "vsock" => true,
        "tls" | "quic" => true,
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
            "tls/0.0.0.0:7447",
        ] {
            assert!(is_private(ok), "{ok}");
        }
        for bad in [
            "tcp/0.0.0.0:7447",
            "tcp/[::]:7447",
            "tcp/192.168.1.5:7447",
            "tcp/example.org:7447",
            "udp/0.0.0.0:7447",
            "garbage",
        ] {
            assert!(!is_private(bad), "{bad}");
        }
        assert!(check(&["tcp/0.0.0.0:1".into()], false).is_err());
        assert!(check(&["tcp/0.0.0.0:1".into()], true).is_ok());
    }
}
