//! The client and server ends of a connectivity check. The runner starts them as processes
//! (`meshward conformance probe|serve`, hidden commands) inside the case's namespace and the
//! workload's cgroup, so the kernel hooks see an ordinary process connecting.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    time::Duration,
};

use anyhow::{Context, Result};
use clap::Args;
use socket2::{Domain, Protocol as SockProtocol, SockAddr, Socket, Type};

const PAYLOAD: &[u8] = b"meshward-conformance\n";
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Args, Debug)]
pub struct ProbeArgs {
    #[arg(long)]
    pub src: IpAddr,
    #[arg(long)]
    pub dst: Option<IpAddr>,
    #[arg(long)]
    pub port: u16,
    #[arg(long, default_value = "tcp")]
    pub proto: String,
    /// Resolve this name first (A or AAAA by the source's family) at --dns.
    #[arg(long)]
    pub resolve: Option<String>,
    #[arg(long)]
    pub dns: Option<IpAddr>,
}

/// Prints one word: `ok` (connected and echoed), or what failed (`EPERM`, `ECONNREFUSED`,
/// `no-echo`, `NXDOMAIN`, …).
pub fn probe(args: &ProbeArgs) -> Result<()> {
    let outcome = match resolve_target(args) {
        Ok(dst) => {
            let dst = SocketAddr::new(dst, args.port);
            if args.proto == "udp" {
                udp_probe(args.src, dst)
            } else {
                tcp_probe(args.src, dst)
            }
        }
        Err(word) => word,
    };
    println!("{outcome}");
    Ok(())
}

fn resolve_target(args: &ProbeArgs) -> std::result::Result<IpAddr, String> {
    match (&args.resolve, args.dst) {
        (Some(name), _) => {
            let server = args.dns.ok_or("no-dns-server")?;
            // A failed lookup is never read as a connect verdict.
            resolve(args.src, server, name).map_err(|e| format!("dns-{e}"))
        }
        (None, Some(dst)) => Ok(dst),
        (None, None) => Err("no-destination".into()),
    }
}

fn tcp_probe(src: IpAddr, dst: SocketAddr) -> String {
    let attempt = || -> std::io::Result<String> {
        let s = Socket::new(
            Domain::for_address(dst),
            Type::STREAM,
            Some(SockProtocol::TCP),
        )?;
        s.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
        s.connect_timeout(&SockAddr::from(dst), TIMEOUT)?;
        let mut stream: std::net::TcpStream = s.into();
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.write_all(PAYLOAD)?;
        let mut back = vec![0; PAYLOAD.len()];
        Ok(match stream.read_exact(&mut back) {
            Ok(()) if back == PAYLOAD => "ok".into(),
            _ => "no-echo".into(),
        })
    };
    attempt().unwrap_or_else(|e| errno_name(&e))
}

fn udp_probe(src: IpAddr, dst: SocketAddr) -> String {
    let attempt = || -> std::io::Result<String> {
        let s = UdpSocket::bind(SocketAddr::new(src, 0))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.send_to(PAYLOAD, dst)?;
        let mut back = [0u8; 64];
        Ok(match s.recv_from(&mut back) {
            Ok((n, from)) if from == dst && &back[..n] == PAYLOAD => "ok".into(),
            _ => "no-reply".into(),
        })
    };
    attempt().unwrap_or_else(|e| errno_name(&e))
}

/// One A/AAAA query over UDP from the workload's own address, retried while the server starts.
fn resolve(src: IpAddr, server: IpAddr, name: &str) -> std::result::Result<IpAddr, String> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let qtype = if src.is_ipv6() {
        RecordType::AAAA
    } else {
        RecordType::A
    };
    let qname = Name::from_ascii(name).map_err(|_| "bad-name".to_string())?;
    let sock = UdpSocket::bind(SocketAddr::new(src, 0)).map_err(|e| errno_name(&e))?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| errno_name(&e))?;
    for attempt in 0..6u16 {
        let mut msg = Message::new(0x4d00 + attempt, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(qname.clone(), qtype));
        let wire = msg.to_vec().map_err(|_| "encode".to_string())?;
        sock.send_to(&wire, SocketAddr::new(server, 53))
            .map_err(|e| errno_name(&e))?;
        let mut buf = [0u8; 1500];
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let reply = Message::from_vec(&buf[..n]).map_err(|_| "bad-reply".to_string())?;
        return reply
            .answers
            .iter()
            .find_map(|r| r.data.ip_addr())
            .ok_or_else(|| "NXDOMAIN".to_string());
    }
    Err("dns-timeout".into())
}

fn errno_name(e: &std::io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::ECONNREFUSED) => "ECONNREFUSED",
        Some(libc::ECONNRESET) => "ECONNRESET",
        Some(libc::ETIMEDOUT) => "ETIMEDOUT",
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH",
        Some(libc::ENETUNREACH) => "ENETUNREACH",
        Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL",
        Some(libc::EINPROGRESS) | Some(libc::EAGAIN) => "ETIMEDOUT",
        _ if e.kind() == std::io::ErrorKind::TimedOut => "ETIMEDOUT",
        Some(n) => return format!("errno-{n}"),
        None => return format!("error-{}", e.kind()),
    };
    name.to_string()
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// ADDRESS:PORT to echo TCP on (repeatable).
    #[arg(long)]
    pub tcp: Vec<SocketAddr>,
    /// ADDRESS:PORT to echo UDP on (repeatable).
    #[arg(long)]
    pub udp: Vec<SocketAddr>,
}

/// Echo servers; prints `ready` once every socket is bound, then serves until killed.
pub fn serve(args: &ServeArgs) -> Result<()> {
    let mut threads = Vec::new();
    for addr in &args.tcp {
        let l = TcpListener::bind(addr).with_context(|| format!("bind tcp {addr}"))?;
        threads.push(std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                std::thread::spawn(move || echo_once(conn));
            }
        }));
    }
    for addr in &args.udp {
        let s = UdpSocket::bind(addr).with_context(|| format!("bind udp {addr}"))?;
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        }));
    }
    println!("ready");
    std::io::stdout().flush()?;
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn echo_once(mut conn: std::net::TcpStream) {
    let _ = conn.set_read_timeout(Some(TIMEOUT));
    let mut buf = [0u8; 256];
    if let Ok(n) = conn.read(&mut buf)
        && n > 0
    {
        let _ = conn.write_all(&buf[..n]);
    }
}
