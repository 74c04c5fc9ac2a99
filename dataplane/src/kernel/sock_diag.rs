//! TCP sockets of the calling thread's network namespace, through `NETLINK_SOCK_DIAG`: each
//! with its state, addresses and the cgroup that created it (`INET_DIAG_CGROUP_ID`), and
//! `SOCK_DESTROY` (`CONFIG_INET_DIAG_DESTROY`) to reset one — the peer sees ECONNRESET, the
//! owner's next call fails with ECONNABORTED.

use std::{
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

/// `1 << TCP state` masks for [`SockDiag::tcp_sockets`].
pub mod states {
    pub const ESTABLISHED: u32 = 1 << 1;
    pub const CLOSE_WAIT: u32 = 1 << 8;
    pub const LISTEN: u32 = 1 << 10;
}

/// The TCP state number of a listening socket.
pub const TCP_LISTEN: u8 = 10;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const INET_DIAG_CGROUP_ID: u16 = 21;
const NLMSG_HDR: usize = 16;
/// `struct inet_diag_sockid`: ports, addresses, interface, cookie.
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_req_v2`.
const REQ_LEN: usize = 8 + SOCKID_LEN;
/// `struct inet_diag_msg`.
const MSG_LEN: usize = 4 + SOCKID_LEN + 20;

/// One TCP socket as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub family: u8,
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The cgroup of the process that created the socket (0: not reported).
    pub cgroup_id: u64,
    /// The socket's inode (`socket:[inode]` in /proc/PID/fd).
    pub inode: u32,
    /// `inet_diag_sockid` as reported, cookie included: what SOCK_DESTROY names.
    id: [u8; SOCKID_LEN],
}

pub struct SockDiag {
    fd: OwnedFd,
    seq: u32,
}

impl SockDiag {
    /// A sock_diag socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, seq: 0 })
    }

    /// Every TCP socket (IPv4 and IPv6) in one of `states`.
    pub fn tcp_sockets(&mut self, states: u32) -> io::Result<Vec<TcpSocket>> {
        let mut all = Vec::new();
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            let req = request(family, states, &[0; SOCKID_LEN]);
            self.send(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, &req)?;
            self.receive(|msg| {
                if let Some(s) = parse_socket(msg) {
                    all.push(s);
                }
            })?;
        }
        Ok(all)
    }

    /// Resets `socket`. A socket that is already gone is not an error.
    pub fn destroy(&mut self, socket: &TcpSocket) -> io::Result<()> {
        let req = request(socket.family, u32::MAX, &socket.id);
        self.send(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, &req)?;
        match self.receive(|_| {}) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    fn send(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = Vec::with_capacity(NLMSG_HDR + body.len());
        msg.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: sends `msg.len()` bytes from a live buffer; the kernel is the default peer of a
        // netlink socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads replies to the last request until its end (NLMSG_DONE, or the ACK/error of a
    /// non-dump request); `each` gets the body of every data message.
    fn receive(&mut self, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: receives into a live buffer of `buf.len()` bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= NLMSG_HDR {
                let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
                let kind = u16::from_ne_bytes(rest[4..6].try_into().expect("2 bytes"));
                let seq = u32::from_ne_bytes(rest[8..12].try_into().expect("4 bytes"));
                if len < NLMSG_HDR || len > rest.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink message",
                    ));
                }
                let body = &rest[NLMSG_HDR..len];
                rest = &rest[align4(len).min(rest.len())..];
                if seq != self.seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = body
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                            .unwrap_or(0);
                        return match code {
                            0 => Ok(()),
                            c => Err(io::Error::from_raw_os_error(-c)),
                        };
                    }
                    _ => each(body),
                }
            }
        }
    }
}

/// Runs `f` on a thread that entered the network namespace at `netns` (a /proc/PID/ns/net or
/// bind-mounted namespace file); the caller's threads stay where they are.
pub fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let ns = File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on this thread only, with a descriptor we own.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("netns worker panicked"))?
    })
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn request(family: u8, states: u32, id: &[u8; SOCKID_LEN]) -> [u8; REQ_LEN] {
    let mut req = [0u8; REQ_LEN];
    req[0] = family;
    req[1] = libc::IPPROTO_TCP as u8;
    req[4..8].copy_from_slice(&states.to_ne_bytes());
    req[8..].copy_from_slice(id);
    req
}

/// An `inet_diag_msg` and its attributes.
fn parse_socket(body: &[u8]) -> Option<TcpSocket> {
    let head = body.get(..MSG_LEN)?;
    let family = head[0];
    let state = head[1];
    let id: [u8; SOCKID_LEN] = head[4..4 + SOCKID_LEN].try_into().ok()?;
    let sport = u16::from_be_bytes([id[0], id[1]]);
    let dport = u16::from_be_bytes([id[2], id[3]]);
    let addr = |bytes: &[u8]| -> Option<IpAddr> {
        Some(match i32::from(family) {
            libc::AF_INET => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
            libc::AF_INET6 => {
                let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
                // A dual-stack socket's IPv4 peer: decided as the IPv4 address it is.
                v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
            }
            _ => return None,
        })
    };
    let local = SocketAddr::new(addr(&id[4..20])?, sport);
    let remote = SocketAddr::new(addr(&id[20..36])?, dport);
    let inode = u32::from_ne_bytes(head[MSG_LEN - 4..].try_into().ok()?);
    let mut cgroup_id = 0;
    let mut attrs = &body[MSG_LEN..];
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        if kind == INET_DIAG_CGROUP_ID && len >= 12 {
            cgroup_id = u64::from_ne_bytes(attrs[4..12].try_into().ok()?);
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    Some(TcpSocket {
        family,
        state,
        local,
        remote,
        cgroup_id,
        inode,
        id,
    })
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
        os::unix::fs::MetadataExt,
    };

    use super::*;

    /// This process's own loopback connection, seen and reset through sock_diag (as root:
    /// SOCK_DESTROY needs CAP_NET_ADMIN).
    #[test]
    fn lists_own_connection_with_cgroup_and_resets_it() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let mut diag = SockDiag::open().expect("sock_diag");
        let all = diag
            .tcp_sockets(states::ESTABLISHED | states::LISTEN)
            .expect("dump");
        let ours = all
            .iter()
            .find(|s| s.local == client.local_addr().unwrap())
            .expect("the client socket is listed");
        assert_eq!(ours.remote, listener.local_addr().unwrap());
        assert_eq!(ours.state, 1, "established");
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").expect("cgroup");
        let rel = cgroup.trim().rsplit("::").next().unwrap_or("/").to_string();
        let mount = super::super::cgroup::cgroup2_mount().expect("cgroup2");
        let id = std::fs::metadata(mount.join(rel.trim_start_matches('/')))
            .expect("own cgroup")
            .ino();
        assert_eq!(ours.cgroup_id, id, "the creating process's cgroup");
        assert!(
            all.iter()
                .any(|s| s.state == TCP_LISTEN && s.local == listener.local_addr().unwrap())
        );
        diag.destroy(ours).expect("destroy");
        let mut byte = [0u8; 1];
        let err = server.read(&mut byte).expect_err("the peer was reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert!(
            client.write_all(b"x").is_err(),
            "the owner's socket is dead"
        );
        diag.destroy(ours)
            .expect("a socket already gone is not an error");
    }
}
