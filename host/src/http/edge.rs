//! At the edge: who may open a WebSocket, from where and how often, decided
//! before any handler runs.
//!
//! - **Origin**: a browser says which page opened the socket. By default
//!   only a page of the host itself may (same origin), so that no other site
//!   can use a visitor's browser against a route (cross-site WebSocket
//!   hijacking); a route's `allowed-origins` lists others. Clients that are
//!   not browsers send no `Origin` and are not affected.
//! - **Per client address**: open connections and upgrades per second, with
//!   a token bucket. Behind a reverse proxy the address comes from
//!   `X-Forwarded-For` or `Forwarded`, but only from a peer listed in
//!   `trusted-proxies`.

use hyper::Request;
use hyper::header::{self, HeaderMap};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which pages may open a WebSocket on a route.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Empty: same origin only.
    allowed: Vec<AllowedOrigin>,
}

#[derive(Debug, Clone, PartialEq)]
enum AllowedOrigin {
    /// `*`: any page.
    Any,
    /// `https://app.example.com` (with its port, if not the scheme's own).
    Exact(Origin),
    /// `https://*.example.com`: any subdomain, on that scheme and port.
    Subdomains { scheme: String, suffix: String, port: u16 },
}

/// A serialized origin, `scheme://host[:port]`, taken apart.
#[derive(Debug, Clone, PartialEq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (lower-cased, port defaulted).
    fn parse(text: &str) -> Option<Self> {
        let (scheme, authority) = text.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" | "ws" => 80,
            "https" | "wss" => 443,
            _ => return None,
        };
        let (host, port) = split_port(authority.trim_end_matches('/'), default_port)?;
        Some(Self { scheme, host, port })
    }
}

/// `host[:port]` as a lower-cased host and a port (`default` if absent).
fn split_port(authority: &str, default: u16) -> Option<(String, u16)> {
    if authority.is_empty() || authority.contains(['/', '@', ' ']) {
        return None;
    }
    // An IPv6 literal keeps its brackets: `[::1]:8080`.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port.parse().ok()?)),
        _ => (authority, None),
    };
    Some((host.to_ascii_lowercase(), port.unwrap_or(default)))
}

impl OriginPolicy {
    /// The policy of `allowed-origins`; an entry that is not an origin, a
    /// subdomain pattern or `*` is an error naming it.
    pub fn new(allowed: &[String]) -> Result<Self, String> {
        let allowed = allowed
            .iter()
            .map(|entry| {
                if entry == "*" {
                    return Ok(AllowedOrigin::Any);
                }
                let origin = Origin::parse(entry)
                    .ok_or_else(|| format!("`{entry}` is not an origin such as https://app.example.com"))?;
                Ok(match origin.host.strip_prefix("*.") {
                    Some(domain) if !domain.is_empty() && !domain.contains('*') => AllowedOrigin::Subdomains {
                        scheme: origin.scheme,
                        suffix: format!(".{domain}"),
                        port: origin.port,
                    },
                    _ if origin.host.contains('*') => return Err(format!("`{entry}`: `*` only as `*.domain`")),
                    _ => AllowedOrigin::Exact(origin),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { allowed })
    }

    /// Whether `request` may open a WebSocket: a request without `Origin`
    /// may; one with it needs an origin the policy allows, by default the
    /// host the client asked for (`public`, see [`public_authority`]).
    pub fn allows<B>(&self, request: &Request<B>, public: &PublicAuthority) -> bool {
        let mut origins = request.headers().get_all(header::ORIGIN).iter();
        let Some(origin) = origins.next() else { return true };
        // One origin per request (RFC 6454 7.3): with two, which one would
        // the check be about?
        if origins.next().is_some() {
            return false;
        }
        let Some(origin) = origin.to_str().ok().and_then(Origin::parse) else { return false };
        if self.allowed.is_empty() {
            // Same origin: the page came from the host this request is for.
            let default_port = if public.secure { 443 } else { 80 };
            return public.authority.as_deref().and_then(|authority| split_port(authority, default_port))
                == Some((origin.host, origin.port));
        }
        self.allowed.iter().any(|allowed| match allowed {
            AllowedOrigin::Any => true,
            AllowedOrigin::Exact(exact) => *exact == origin,
            AllowedOrigin::Subdomains { scheme, suffix, port } => {
                *scheme == origin.scheme && *port == origin.port && origin.host.ends_with(suffix.as_str())
            }
        })
    }
}

/// The host a client asked for and whether over TLS, as its browser saw it.
#[derive(Debug)]
pub struct PublicAuthority {
    /// `host[:port]`.
    pub authority: Option<String>,
    /// Whether the client spoke TLS (to this host or to the proxy).
    pub secure: bool,
}

/// The host and scheme the client used: the request's own (`Host` or
/// HTTP/2's `:authority`; TLS if this host serves it), or, from a trusted
/// proxy that terminates TLS or rewrites `Host`, what it forwards
/// (`X-Forwarded-Host`, `X-Forwarded-Proto`).
pub fn public_authority<B>(request: &Request<B>, tls: bool, from_trusted_proxy: bool) -> PublicAuthority {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    let own = request
        .uri()
        .authority()
        .map(|authority| authority.as_str().to_owned())
        .or_else(|| text(header::HOST.as_str()).map(str::to_owned));
    if !from_trusted_proxy {
        return PublicAuthority { authority: own, secure: tls };
    }
    let authority = text("x-forwarded-host").map(|host| host.split(',').next().unwrap_or(host).trim().to_owned());
    let secure = match text("x-forwarded-proto") {
        Some(proto) => ["https", "wss"].iter().any(|secure| proto.eq_ignore_ascii_case(secure)),
        None => tls,
    };
    PublicAuthority { authority: authority.or(own), secure }
}

/// Whether `peer` is one of the `trusted` proxies.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&peer))
}

/// The client's address: the peer's, or, if the peer is a trusted proxy,
/// the one it forwards (`X-Forwarded-For`, else `Forwarded`), read from the
/// right past every trusted proxy. An entry that is not an address
/// (`unknown`, an obfuscated `_name`) ends the walk: what lies left of it
/// came from the client and proves nothing, so the peer counts.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let entries: Vec<String> = if headers.contains_key("x-forwarded-for") {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|entry| entry.trim().to_owned())
            .collect()
    } else {
        headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.eq_ignore_ascii_case("for").then(|| value.trim_matches('"').to_owned())
                })
            })
            .collect()
    };
    for entry in entries.iter().rev() {
        match parse_address(entry) {
            Some(address) if is_trusted(address, trusted) => continue,
            Some(address) => return address,
            None => return peer,
        }
    }
    peer
}

/// The key a client is counted under: its address, or for IPv6 its /64
/// (one subscriber's network: anyone holds a /64's worth of addresses).
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `[::1]:5678`,
/// `::1`.
fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|address| address.ip()))
        .or_else(|| text.trim_start_matches('[').trim_end_matches(']').parse().ok())
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst, tokens: burst, updated: Instant::now() }
    }

    /// Takes a token, or says how long until there is one.
    pub fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.updated).as_secs_f64() * self.rate).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Whether it has been full long enough to be forgotten.
    fn is_idle(&self, now: Instant) -> bool {
        self.tokens + now.duration_since(self.updated).as_secs_f64() * self.rate >= self.burst
    }
}

/// The upgrades per second and open connections of each client address.
#[derive(Debug)]
pub struct Clients {
    upgrades: Option<(f64, f64)>,
    buckets: Mutex<Buckets>,
    open: OpenCounts,
}

/// The upgrade buckets, and when to look for idle ones next.
#[derive(Debug, Default)]
struct Buckets {
    by_client: HashMap<IpAddr, TokenBucket>,
    sweep_at: usize,
}

/// Open connections by scope (the host, `None`, or a route) and client.
type OpenCounts = Arc<Mutex<HashMap<(Option<String>, IpAddr), usize>>>;

/// Tokens buckets kept before the idle ones are forgotten.
const BUCKETS_KEPT: usize = 4096;

impl Clients {
    /// Upgrades limited to `rate` a second with `burst` saved up (`None`:
    /// no limit).
    pub fn new(upgrades: Option<(f64, f64)>) -> Self {
        Self {
            upgrades,
            buckets: Mutex::new(Buckets { sweep_at: BUCKETS_KEPT, ..Buckets::default() }),
            open: Arc::default(),
        }
    }

    /// Takes an upgrade from `client`'s allowance, or says how long until
    /// it has one again.
    pub fn upgrade(&self, client: IpAddr) -> Result<(), Duration> {
        let Some((rate, burst)) = self.upgrades else { return Ok(()) };
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.by_client.len() >= buckets.sweep_at {
            // Forget the full buckets; sweep again once the map has doubled,
            // so that sweeping costs little per upgrade.
            let now = Instant::now();
            buckets.by_client.retain(|_, bucket| !bucket.is_idle(now));
            buckets.sweep_at = (2 * buckets.by_client.len()).max(BUCKETS_KEPT);
        }
        buckets.by_client.entry(client_key(client)).or_insert_with(|| TokenBucket::new(rate, burst)).take()
    }

    /// Counts a connection of `client` against `limit` for the host (`route`
    /// `None`) or for a route; the slot frees it when dropped. `None`: the
    /// client has as many open as it may.
    pub fn open(&self, route: Option<&str>, client: IpAddr, limit: usize) -> Option<ClientSlot> {
        let key = (route.map(str::to_owned), client_key(client));
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(key.clone()).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot { open: self.open.clone(), key })
    }
}

/// One open connection of a client, counted until dropped.
#[derive(Debug)]
pub struct ClientSlot {
    open: OpenCounts,
    key: (Option<String>, IpAddr),
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Test(Request<()>, bool);

    impl OriginPolicy {
        fn check(&self, request: Test) -> bool {
            self.allows(&request.0, &public_authority(&request.0, request.1, false))
        }
    }

    fn request(origin: Option<&str>, host: &str, tls: bool) -> Test {
        let mut builder = Request::get("/chat").header("host", host);
        if let Some(origin) = origin {
            builder = builder.header("origin", origin);
        }
        Test(builder.body(()).unwrap(), tls)
    }

    #[test]
    fn same_origin_by_default() {
        let policy = OriginPolicy::new(&[]).unwrap();
        assert!(policy.check(request(None, "chat.example.com", false)));
        assert!(policy.check(request(Some("http://chat.example.com"), "chat.example.com", false)));
        assert!(policy.check(request(Some("https://chat.example.com"), "chat.example.com", true)));
        assert!(policy.check(request(Some("http://127.0.0.1:8080"), "127.0.0.1:8080", false)));
        assert!(!policy.check(request(Some("http://127.0.0.1:8081"), "127.0.0.1:8080", false)));
        assert!(!policy.check(request(Some("https://evil.example"), "chat.example.com", true)));
        assert!(!policy.check(request(Some("null"), "chat.example.com", false)));
    }

    #[test]
    fn listed_origins_and_subdomains() {
        let allowed = ["https://app.example.com".to_owned(), "https://*.example.org".to_owned()];
        let policy = OriginPolicy::new(&allowed).unwrap();
        assert!(policy.check(request(Some("https://app.example.com"), "ws.example.com", true)));
        assert!(policy.check(request(Some("https://APP.example.com:443"), "ws.example.com", true)));
        assert!(!policy.check(request(Some("http://app.example.com"), "ws.example.com", true)));
        assert!(policy.check(request(Some("https://a.b.example.org"), "ws.example.com", true)));
        assert!(!policy.check(request(Some("https://example.org"), "ws.example.com", true)));
        assert!(!policy.check(request(Some("https://evilexample.org"), "ws.example.com", true)));
        assert!(OriginPolicy::new(&["*".to_owned()]).unwrap().check(request(Some("https://x.y"), "z", true)));
        assert!(OriginPolicy::new(&["example.com".to_owned()]).is_err());
        assert!(OriginPolicy::new(&["https://a*.example.com".to_owned()]).is_err());
    }

    #[test]
    fn behind_a_trusted_proxy_the_forwarded_host_and_scheme_count() {
        let request = Request::get("/chat")
            .header("host", "backend:8080")
            .header("origin", "https://chat.example.com")
            .header("x-forwarded-host", "chat.example.com")
            .header("x-forwarded-proto", "https")
            .body(())
            .unwrap();
        let policy = OriginPolicy::new(&[]).unwrap();
        assert!(policy.allows(&request, &public_authority(&request, false, true)));
        assert!(!policy.allows(&request, &public_authority(&request, false, false)));
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.7, 10.1.2.3".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_address(proxy, &headers, &trusted), "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_address(stranger, &headers, &trusted), stranger);
        let mut forwarded = HeaderMap::new();
        forwarded.insert(header::FORWARDED, "for=\"[2001:db8::1]:4711\";proto=https".parse().unwrap());
        assert_eq!(client_address(proxy, &forwarded, &trusted), "2001:db8::1".parse::<IpAddr>().unwrap());
        // What a client wrote left of an entry the proxy could not name
        // proves nothing.
        let mut hidden = HeaderMap::new();
        hidden.insert("x-forwarded-for", "203.0.113.7, unknown".parse().unwrap());
        assert_eq!(client_address(proxy, &hidden, &trusted), proxy);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b), "one /64, one client");
    }

    #[test]
    fn a_token_bucket_allows_its_burst_then_its_rate() {
        let mut bucket = TokenBucket::new(10.0, 3.0);
        for _ in 0..3 {
            bucket.take().unwrap();
        }
        let wait = bucket.take().unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
    }
}
