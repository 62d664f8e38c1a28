//! Where a webhook may be sent: the internet, and of the internal networks only those ops allow
//! (`webhooks.allow_internal_networks`).
//!
//! An endpoint's URL is chosen by an admin, but the requests come from the server, from inside
//! the school's network: without a rule, whoever holds an admin account (or steals one) can make
//! the server POST to its own loopback services, the cloud's metadata address (169.254.169.254,
//! where instance credentials live) or any machine of the private network, and read the first
//! kilobyte of the answer in the delivery log. So, as GitLab and others do, internal addresses
//! (loopback, private, link-local, carrier-grade NAT, unique-local, multicast, unspecified) are
//! refused unless their network is listed. An LMS inside the school's network is allowed by
//! listing its network.
//!
//! Checked twice: a URL naming an internal IP address is refused when the endpoint is saved; and
//! at each delivery the host name is resolved by this module ([`Targets`] is the HTTP client's
//! resolver), which keeps only the allowed addresses — a name that resolves to an internal
//! address (or starts to, DNS rebinding) gets no connection.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use ipnet::IpNet;

/// Internal addresses: this machine, private and special-purpose networks.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        // Carrier-grade NAT (100.64.0.0/10) and benchmarking (198.18.0.0/15).
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 198 && (b & 0xfe) == 18)
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local (fc00::/7), link-local (fe80::/10), the old site-local (fec0::/10).
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
}

/// The rule, with the internal networks ops allow.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    allowed: Arc<Vec<IpNet>>,
}

impl Targets {
    pub fn new(allowed: Vec<IpNet>) -> Targets {
        Targets {
            allowed: Arc::new(allowed),
        }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allowed.iter().any(|n| n.contains(&ip))
    }

    /// The IP address a URL names directly, when it is one this rule refuses.
    pub fn refused_literal(&self, url: &url::Url) -> Option<IpAddr> {
        let ip = match url.host()? {
            url::Host::Ipv4(v4) => IpAddr::V4(v4),
            url::Host::Ipv6(v6) => IpAddr::V6(v6),
            url::Host::Domain(_) => return None,
        };
        (!self.permits(ip)).then_some(ip)
    }
}

/// A host name that resolves only to refused addresses.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} resolves only to internal addresses (allow their network in webhooks.allow_internal_networks)",
            self.0
        )
    }
}

impl std::error::Error for Refused {}

impl reqwest::dns::Resolve for Targets {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let rule = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> =
                found.into_iter().filter(|a| rule.permits(a.ip())).collect();
            if kept.is_empty() {
                return Err(Box::new(Refused(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The [`Refused`] behind a failed request, if that is why it failed.
pub fn refusal(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.to_string());
        }
        source = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_unless_their_network_is_allowed() {
        let none = Targets::default();
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!none.permits(ip(internal)), "{internal}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(none.permits(ip(public)), "{public}");
        }
        let lms = Targets::new(vec!["10.0.0.0/24".parse().unwrap()]);
        assert!(lms.permits(ip("10.0.0.5")));
        assert!(!lms.permits(ip("10.0.1.5")), "only the listed network");
        assert!(!lms.permits(ip("169.254.169.254")));
    }

    #[test]
    fn a_url_naming_an_internal_address_is_caught_before_any_lookup() {
        let none = Targets::default();
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            none.refused_literal(&url("http://169.254.169.254/latest/meta-data/")),
            Some(ip("169.254.169.254"))
        );
        assert_eq!(
            none.refused_literal(&url("http://[::1]:8080/hook")),
            Some(ip("::1"))
        );
        assert_eq!(
            none.refused_literal(&url("https://lms.example.com/hook")),
            None
        );
        assert_eq!(
            none.refused_literal(&url("https://93.184.216.34/hook")),
            None
        );
    }
}
