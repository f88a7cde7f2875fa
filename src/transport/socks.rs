//! SOCKS proxies (SOCKS5 with optional username/password, RFC 1928 and 1929; SOCKS4 and
//! 4A), connected and negotiated through [`super::tcp`], so a silent proxy is bounded by
//! the connect timeout and a cancel is seen during the handshake. ureq's own SOCKS step
//! connects and negotiates with blocking calls that a cancel cannot interrupt.

use std::net::SocketAddr;
use std::time::Instant;

use ureq::unversioned::transport::{
    time, ConnectionDetails, Connector, Either, NextTimeout, Transport,
};
use ureq::{Error, Proxy, ProxyProtocol};

use super::tcp::{self, TcpTransport};

#[derive(Debug, Default)]
pub struct SocksConnector;

impl<In: Transport> Connector<In> for SocksConnector {
    type Out = Either<In, TcpTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        let proxy = match details.config.proxy() {
            Some(p) if is_socks(p.protocol()) => p,
            _ => return Ok(chained.map(Either::A)),
        };
        if chained.is_some() {
            return Ok(chained.map(Either::A));
        }
        if proxy.is_no_proxy(details.uri) {
            // Connected directly by the TCP step.
            return Ok(None);
        }
        let started = Instant::now();
        let left = |reason| -> Result<NextTimeout, Error> {
            let mut t = details.timeout;
            if let Some(budget) = details.timeout.not_zero() {
                let left = budget.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(Error::Timeout(reason));
                }
                t.after = time::Duration::from(left);
            }
            Ok(t)
        };
        let reason = details.timeout.reason;
        let proxy_addrs = details
            .resolver
            .resolve(proxy.uri(), details.config, left(reason)?)?;
        let addrs: Vec<SocketAddr> = proxy_addrs.iter().copied().collect();
        let mut transport = tcp::open(&addrs, left(reason)?, details.config)?;
        let target = Target::of(details, proxy)?;
        let mut io = Handshake {
            transport: &mut transport,
            left: &left,
            reason,
        };
        match proxy.protocol() {
            ProxyProtocol::Socks4 | ProxyProtocol::Socks4A => socks4(&mut io, &target)?,
            _ => socks5(&mut io, proxy, &target)?,
        }
        Ok(Some(Either::B(transport)))
    }
}

fn is_socks(protocol: ProxyProtocol) -> bool {
    matches!(
        protocol,
        ProxyProtocol::Socks4
            | ProxyProtocol::Socks4A
            | ProxyProtocol::Socks5
            | ProxyProtocol::Socks5h
    )
}

/// Where the proxy is asked to connect.
enum Target {
    Ip(SocketAddr),
    Domain(String, u16),
}

impl Target {
    fn of(details: &ConnectionDetails, proxy: &Proxy) -> Result<Target, Error> {
        if proxy.resolve_target() {
            let addr = details.addrs.first().ok_or(Error::HostNotFound)?;
            return Ok(Target::Ip(*addr));
        }
        let uri = details.uri;
        let host = uri.host().ok_or(Error::HostNotFound)?;
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        Ok(match bare.parse() {
            Ok(ip) => Target::Ip(SocketAddr::new(ip, port)),
            Err(_) => Target::Domain(bare.to_owned(), port),
        })
    }
}

fn failed(message: impl Into<String>) -> Error {
    Error::ConnectProxyFailed(message.into())
}

/// Reads and writes of the handshake, each within what is left of the connect budget.
struct Handshake<'a> {
    transport: &'a mut TcpTransport,
    left: &'a dyn Fn(ureq::Timeout) -> Result<NextTimeout, Error>,
    reason: ureq::Timeout,
}

impl Handshake<'_> {
    fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let output = self.transport.buffers().output();
        if output.len() < bytes.len() {
            return Err(failed("SOCKS request too long"));
        }
        output[..bytes.len()].copy_from_slice(bytes);
        let timeout = (self.left)(self.reason)?;
        self.transport.transmit_output(bytes.len(), timeout)
    }

    fn receive(&mut self, n: usize) -> Result<Vec<u8>, Error> {
        while self.transport.buffers().input().len() < n {
            let timeout = (self.left)(self.reason)?;
            if !self.transport.await_input(timeout)? {
                return Err(failed("the SOCKS proxy closed the connection"));
            }
        }
        let bytes = self.transport.buffers().input()[..n].to_vec();
        self.transport.buffers().input_consume(n);
        Ok(bytes)
    }
}

fn socks5(io: &mut Handshake<'_>, proxy: &Proxy, target: &Target) -> Result<(), Error> {
    let credentials = proxy
        .username()
        .map(|u| (u, proxy.password().unwrap_or("")));
    let greeting: &[u8] = if credentials.is_some() {
        &[5, 2, 0, 2]
    } else {
        &[5, 1, 0]
    };
    io.send(greeting)?;
    let choice = io.receive(2)?;
    if choice[0] != 5 {
        return Err(failed("the proxy does not speak SOCKS5"));
    }
    match (choice[1], credentials) {
        (0, _) => {}
        (2, Some((user, password))) => {
            if user.len() > 255 || password.len() > 255 {
                return Err(failed("SOCKS5 user name or password longer than 255 bytes"));
            }
            let mut auth = vec![1, user.len() as u8];
            auth.extend_from_slice(user.as_bytes());
            auth.push(password.len() as u8);
            auth.extend_from_slice(password.as_bytes());
            io.send(&auth)?;
            if io.receive(2)?[1] != 0 {
                return Err(failed(
                    "the SOCKS5 proxy refused the user name and password",
                ));
            }
        }
        (2, None) => return Err(failed("the SOCKS5 proxy requires a user name and password")),
        _ => {
            return Err(failed(
                "the SOCKS5 proxy accepts none of the offered methods",
            ))
        }
    }
    let mut request = vec![5, 1, 0];
    let port = match target {
        Target::Ip(SocketAddr::V4(a)) => {
            request.push(1);
            request.extend_from_slice(&a.ip().octets());
            a.port()
        }
        Target::Ip(SocketAddr::V6(a)) => {
            request.push(4);
            request.extend_from_slice(&a.ip().octets());
            a.port()
        }
        Target::Domain(host, port) => {
            if host.len() > 255 {
                return Err(failed("host name too long for SOCKS5"));
            }
            request.push(3);
            request.push(host.len() as u8);
            request.extend_from_slice(host.as_bytes());
            *port
        }
    };
    request.extend_from_slice(&port.to_be_bytes());
    io.send(&request)?;
    let reply = io.receive(4)?;
    if reply[0] != 5 {
        return Err(failed("invalid SOCKS5 reply"));
    }
    if reply[1] != 0 {
        let why = match reply[1] {
            1 => "general failure",
            2 => "connection not allowed by ruleset",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused",
            6 => "TTL expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => "unknown error",
        };
        return Err(failed(format!("the SOCKS5 proxy could not connect: {why}")));
    }
    // The bound address, unused for CONNECT.
    let rest = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => io.receive(1)?[0] as usize + 2,
        _ => return Err(failed("invalid SOCKS5 reply address type")),
    };
    io.receive(rest)?;
    Ok(())
}

fn socks4(io: &mut Handshake<'_>, target: &Target) -> Result<(), Error> {
    let mut request = vec![4, 1];
    match target {
        Target::Ip(SocketAddr::V4(a)) => {
            request.extend_from_slice(&a.port().to_be_bytes());
            request.extend_from_slice(&a.ip().octets());
            request.push(0);
        }
        Target::Ip(SocketAddr::V6(_)) => return Err(failed("SOCKS4 cannot reach IPv6")),
        Target::Domain(host, port) => {
            request.extend_from_slice(&port.to_be_bytes());
            request.extend_from_slice(&[0, 0, 0, 1, 0]);
            request.extend_from_slice(host.as_bytes());
            request.push(0);
        }
    }
    io.send(&request)?;
    let reply = io.receive(8)?;
    if reply[0] != 0 || reply[1] != 90 {
        return Err(failed("the SOCKS4 proxy refused the connection"));
    }
    Ok(())
}
