//! The two ends of every scenario, run as child processes of the bench (the bench binary
//! re-executed with a role in the environment): a load generator (one thread: a blocking socket
//! for one connection, several multiplexed on epoll through a tokio current-thread runtime) and
//! an echo/sink server (one tokio thread, like one Envoy worker).
use std::{
    io::{BufRead, Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

/// Echoes every byte back.
pub const ECHO_PORT: u16 = 18400;
/// Reads and discards.
pub const SINK_PORT: u16 = 18401;
/// No policy allows it: a governed client's connect() there must fail with EPERM.
pub const DENIED_PORT: u16 = 18402;

const BULK_CHUNK: usize = 64 << 10;

/// What the client does for one measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Load {
    /// `conns` connections, each writing `size` bytes and reading them back in a loop.
    RequestResponse { size: usize, conns: usize },
    /// New connection, one 1-byte request/response, close (RST), in a loop.
    ConnectRequestClose,
    /// One connection writing 64 KiB chunks to the sink.
    Bulk,
}

impl Load {
    /// The client's command line: `<mode> <size> <conns>`.
    pub fn to_arg(self) -> String {
        match self {
            Load::RequestResponse { size, conns } => format!("rr {size} {conns}"),
            Load::ConnectRequestClose => "crr 1 1".into(),
            Load::Bulk => "bulk 0 1".into(),
        }
    }

    fn parse(mode: &str, size: usize, conns: usize) -> Option<Self> {
        match mode {
            "rr" => Some(Load::RequestResponse { size, conns }),
            "crr" => Some(Load::ConnectRequestClose),
            "bulk" => Some(Load::Bulk),
            _ => None,
        }
    }

    /// Bulk goes to the sink port, the others to the echo port.
    pub fn uses_sink(self) -> bool {
        self == Load::Bulk
    }
}

/// Client role. `spec` is `<mode> <size> <conns> <target> <secs>`, or `ping <target>` (wait up
/// to 15 s until one request/response through the whole path works), or `probe <target>` (print
/// "ok" or the connect() errno). Prints `<operations> <seconds>` for a measurement.
pub fn client_main(spec: &str) {
    let words: Vec<&str> = spec.split_whitespace().collect();
    match words.as_slice() {
        ["ping", target] => ping(parse_addr(target)),
        ["probe", target] => println!("{}", probe(parse_addr(target))),
        [mode, size, conns, target, secs] => {
            let load = Load::parse(mode, parse_num(size), parse_num(conns)).expect("load mode");
            let run = Duration::from_secs_f64(secs.parse().expect("seconds"));
            let (ops, secs) = run_load(load, parse_addr(target), run);
            println!("{ops} {secs:.6}");
        }
        _ => panic!("bad client spec {spec:?}"),
    }
}

fn parse_addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn parse_num(s: &str) -> usize {
    s.parse().expect("number")
}

fn run_load(load: Load, target: SocketAddr, run: Duration) -> (u64, f64) {
    match load {
        Load::RequestResponse { size, conns } => request_response(target, size, conns, run),
        Load::ConnectRequestClose => connect_request_close(target, run),
        Load::Bulk => bulk_stream(target, run),
    }
}

fn connect(target: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(target).unwrap_or_else(|e| panic!("connect to {target}: {e}"));
    s.set_nodelay(true).expect("TCP_NODELAY");
    s
}

/// All connections are opened first, then driven until the deadline. One connection blocks in
/// read(); several share one thread and epoll, as neper and wrk do — a thread per connection
/// would spend most of each transaction switching between the client's own threads, a cost
/// that every setup would pay alike and that would hide the path under test.
fn request_response(target: SocketAddr, size: usize, conns: usize, run: Duration) -> (u64, f64) {
    let streams: Vec<TcpStream> = (0..conns).map(|_| connect(target)).collect();
    let start = Instant::now();
    let deadline = start + run;
    let total = match <[TcpStream; 1]>::try_from(streams) {
        Ok([single]) => request_response_loop(single, size, deadline),
        Err(streams) => request_response_multiplexed(streams, size, deadline),
    };
    (total, start.elapsed().as_secs_f64())
}

fn request_response_loop(mut s: TcpStream, size: usize, deadline: Instant) -> u64 {
    let request = vec![0x5au8; size];
    let mut response = vec![0u8; size];
    let mut done = 0;
    while Instant::now() < deadline {
        s.write_all(&request).expect("write request");
        s.read_exact(&mut response).expect("read response");
        done += 1;
    }
    done
}

fn request_response_multiplexed(streams: Vec<TcpStream>, size: usize, deadline: Instant) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let loops: Vec<_> = streams
            .into_iter()
            .map(|s| tokio::spawn(request_response_task(s, size, deadline)))
            .collect();
        let mut total = 0;
        for task in loops {
            total += task.await.expect("request/response task");
        }
        total
    })
}

async fn request_response_task(s: TcpStream, size: usize, deadline: Instant) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.set_nonblocking(true).expect("O_NONBLOCK");
    let mut s = tokio::net::TcpStream::from_std(s).expect("register with epoll");
    let request = vec![0x5au8; size];
    let mut response = vec![0u8; size];
    let mut done = 0;
    while Instant::now() < deadline {
        s.write_all(&request).await.expect("write request");
        s.read_exact(&mut response).await.expect("read response");
        done += 1;
    }
    done
}

fn connect_request_close(target: SocketAddr, run: Duration) -> (u64, f64) {
    let start = Instant::now();
    let mut done = 0;
    while start.elapsed() < run {
        let mut s = connect(target);
        s.write_all(&[1]).expect("write request");
        s.read_exact(&mut [0]).expect("read response");
        close_with_reset(s);
        done += 1;
    }
    (done, start.elapsed().as_secs_f64())
}

/// SO_LINGER 0: the close sends RST, so tens of thousands of connections leave no TIME_WAIT
/// sockets behind on the client.
fn close_with_reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on our own open socket with a valid option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as u32,
        );
    }
}

fn bulk_stream(target: SocketAddr, run: Duration) -> (u64, f64) {
    let mut s = connect(target);
    let chunk = vec![0x5au8; BULK_CHUNK];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < run {
        s.write_all(&chunk).expect("write");
        sent += chunk.len() as u64;
    }
    (sent, start.elapsed().as_secs_f64())
}

fn ping(target: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match one_request_response(target) {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("no request/response through {target} within 15 s: {e}"),
        }
    }
}

fn one_request_response(target: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(&[7])?;
    let mut b = [0u8];
    s.read_exact(&mut b)?;
    Ok(())
}

fn probe(target: SocketAddr) -> String {
    match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
        Ok(_) => "ok".into(),
        Err(e) => match e.raw_os_error() {
            Some(libc::EPERM) => "EPERM".into(),
            Some(libc::ECONNREFUSED) => "ECONNREFUSED".into(),
            _ => e.to_string(),
        },
    }
}

/// Server role: echo on ECHO_PORT, sink on SINK_PORT, all on one thread; prints "listening".
pub fn serve_main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let echo = listen(ECHO_PORT);
        let sink = listen(SINK_PORT);
        println!("listening");
        std::io::stdout().flush().expect("stdout");
        tokio::spawn(accept_each(sink, drain));
        accept_each(echo, echo_back).await;
    });
}

/// A listener with a deep accept queue: a full queue drops SYNs (1 s retransmit) and would
/// measure the accept loop instead of the path.
fn listen(port: u16) -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .expect("bind");
    socket.listen(4096).expect("listen")
}

async fn accept_each<F, Fut>(listener: tokio::net::TcpListener, handle: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        if let Ok((s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(handle(s));
        }
    }
}

async fn echo_back(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 << 10];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn drain(mut s: tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 1 << 20];
    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Waits for the server's "listening" line on its stdout.
pub fn wait_listening(out: impl Read) {
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("read server stdout");
    assert_eq!(line.trim(), "listening", "server did not start");
}
