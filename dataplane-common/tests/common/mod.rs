//! Shared test harness for the TLS parser: feeding streams in chunks, summarising what the
//! parser saw, and an independent reading of the same bytes with tls-parser.
#![allow(dead_code)]

use dataplane_common::tls::{
    ClientHello, Direction, Events, ServerHello, dir_flags, feed_all, is_grease, note_hello_retry,
    parse_client_hello, parse_server_hello, state,
};

/// What one direction showed: everything a caller of the parser would act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub events: u32,
    pub state: u8,
    pub flags: u32,
    pub client_hellos: Vec<(bool, ClientHello)>,
    pub server_hellos: Vec<(bool, ServerHello)>,
    pub server_version: u16,
}

impl Seen {
    pub fn client_hello(&self) -> Option<&ClientHello> {
        self.client_hellos
            .iter()
            .rev()
            .find(|(ok, _)| *ok)
            .map(|(_, c)| c)
    }
    /// The real ServerHello (not a HelloRetryRequest).
    pub fn server_hello(&self) -> Option<&ServerHello> {
        self.server_hellos
            .iter()
            .rev()
            .find(|(ok, s)| *ok && s.hello_retry == 0)
            .map(|(_, s)| s)
    }
}

/// Feeds `data` to a fresh direction in chunks of the given sizes (the last chunk takes the
/// rest), parsing hellos after every call as the kernel would.
pub fn feed_chunks(
    dir: &mut Direction,
    data: &[u8],
    sizes: &mut dyn Iterator<Item = usize>,
) -> Seen {
    feed_chunks_hrr(dir, data, sizes, false)
}

/// Like `feed_chunks`; with `hrr`, announces the server's HelloRetryRequest to this (client)
/// direction right after its first ClientHello, as the kernel would on receiving the HRR.
pub fn feed_chunks_hrr(
    dir: &mut Direction,
    data: &[u8],
    sizes: &mut dyn Iterator<Item = usize>,
    hrr: bool,
) -> Seen {
    let mut seen = Seen {
        events: 0,
        state: 0,
        flags: 0,
        client_hellos: vec![],
        server_hellos: vec![],
        server_version: 0,
    };
    let mut pos = 0usize;
    let mut ch = Box::new(ClientHello::ZERO);
    let mut sh = Box::new(ServerHello::ZERO);
    while pos < data.len() {
        let n = sizes
            .next()
            .unwrap_or(data.len() - pos)
            .max(1)
            .min(data.len() - pos);
        // The chunk alone, as the kernel sees it: offsets relative to the chunk.
        let chunk = &data[pos..pos + n];
        feed_all(dir, chunk, 0, n as u32, |d, ev| {
            seen.events |= ev.0 & !Events::MORE.0;
            if ev.contains(Events::CLIENT_HELLO) {
                let ok = parse_client_hello(d, &mut ch);
                seen.client_hellos.push((ok, *ch));
                if hrr && seen.client_hellos.len() == 1 {
                    note_hello_retry(d);
                }
            }
            if ev.contains(Events::SERVER_HELLO) {
                let ok = parse_server_hello(d, &mut sh);
                seen.server_hellos.push((ok, *sh));
            }
        });
        pos += n;
    }
    seen.state = dir.state;
    seen.flags = dir.flags;
    seen.server_version = dir.server_version;
    seen
}

pub fn fresh() -> Box<Direction> {
    Box::new(Direction::ZERO)
}

/// Both directions of a connection: the server's first (so that a HelloRetryRequest can be
/// announced to the client's direction before its compatibility ChangeCipherSpec).
pub fn conversation(
    c2s: &[u8],
    s2c: &[u8],
    sizes: &mut dyn FnMut() -> Box<dyn Iterator<Item = usize>>,
) -> (Seen, Seen) {
    let mut sdir = fresh();
    let server = feed_chunks(&mut sdir, s2c, &mut *sizes());
    let mut cdir = fresh();
    let hrr = server.events & Events::HELLO_RETRY.0 != 0;
    let client = feed_chunks_hrr(&mut cdir, c2s, &mut *sizes(), hrr);
    (client, server)
}

/// mTLS state as the kernel would report it from the two directions.
pub fn mtls(client: &Seen, server: &Seen) -> &'static str {
    if server.flags & dir_flags::TLS13 != 0 {
        return "unknown";
    }
    if client.flags & dir_flags::CERTIFICATE != 0 {
        "cert"
    } else if client.flags & dir_flags::CERTIFICATE_EMPTY != 0 {
        "empty"
    } else if server.flags & dir_flags::CERT_REQUEST != 0 {
        "requested"
    } else {
        "none"
    }
}

pub fn is_done_or_ok(s: &Seen) -> bool {
    s.state == state::DONE || s.state == state::ACTIVE
}

/// Tiny deterministic PRNG (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What tls-parser reads from the plaintext handshake of one direction.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reference {
    pub client_hello: bool,
    pub sni: Option<Vec<u8>>,
    pub client_max_version: u16,
    pub ciphers: Vec<u16>,
    pub alpn_first: Option<Vec<u8>>,
    pub server_hello: bool,
    pub server_version: u16,
    pub server_cipher: u16,
    pub hello_retry: bool,
}

const HRR: [u8; 32] = dataplane_common::tls::HRR_RANDOM;

/// Reads the records of a stream with tls-parser, concatenates the plaintext handshake
/// fragments (until ChangeCipherSpec or application data) and parses the messages.
pub fn reference(stream: &[u8]) -> Option<Reference> {
    use tls_parser::{
        TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions,
        parse_tls_message_handshake, parse_tls_raw_record, parse_tls_server_hello_extensions,
    };
    let mut rest = stream;
    let mut hs = Vec::new();
    let mut first = true;
    let mut hrr_seen = false;
    while !rest.is_empty() {
        let Ok((r, rec)) = parse_tls_raw_record(rest) else {
            break;
        };
        if first && rec.hdr.record_type.0 != 22 {
            return None;
        }
        first = false;
        match rec.hdr.record_type.0 {
            22 => hs.extend_from_slice(rec.data),
            20 if hrr_seen => {}
            20 | 23 => break,
            _ => {}
        }
        // A HelloRetryRequest in what we have so far lets one CCS through (TLS 1.3 compat).
        if !hrr_seen && hs.len() >= 38 && hs[0] == 2 && hs[6..38] == HRR {
            hrr_seen = true;
        }
        rest = r;
    }
    let mut out = Reference::default();
    let mut msgs = hs.as_slice();
    while !msgs.is_empty() {
        let Ok((r, msg)) = parse_tls_message_handshake(msgs) else {
            break;
        };
        msgs = r;
        let TlsMessage::Handshake(h) = msg else {
            continue;
        };
        match h {
            TlsMessageHandshake::ClientHello(c) => {
                out.client_hello = true;
                out.client_max_version = c.version.0;
                out.ciphers = c
                    .ciphers
                    .iter()
                    .map(|c| c.0)
                    .filter(|c| !is_grease(*c))
                    .collect();
                out.sni = None;
                out.alpn_first = None;
                if let Some(ext) = c.ext
                    && let Ok((_, exts)) = parse_tls_client_hello_extensions(ext)
                {
                    for e in exts {
                        match e {
                            TlsExtension::SNI(names) => {
                                out.sni = names.first().map(|(_, n)| n.to_vec());
                            }
                            TlsExtension::ALPN(protos) => {
                                out.alpn_first = protos.first().map(|p| p.to_vec());
                            }
                            TlsExtension::SupportedVersions(vs) => {
                                if let Some(m) =
                                    vs.iter().map(|v| v.0).filter(|v| !is_grease(*v)).max()
                                {
                                    out.client_max_version = m;
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            TlsMessageHandshake::ServerHello(s) => {
                let hrr = s.random == HRR;
                let mut version = s.version.0;
                if let Some(ext) = s.ext
                    && let Ok((_, exts)) = parse_tls_server_hello_extensions(ext)
                {
                    for e in exts {
                        if let TlsExtension::SupportedVersions(vs) = e
                            && let Some(v) = vs.first()
                        {
                            version = v.0;
                        }
                    }
                }
                if hrr {
                    out.hello_retry = true;
                } else {
                    out.server_hello = true;
                    out.server_version = version;
                    out.server_cipher = s.cipher.0;
                }
            }
            _ => {}
        }
    }
    Some(out)
}

/// Compares our reading of a direction with tls-parser's. Returns the fields that disagree.
pub fn disagreements(ours: &Seen, theirs: &Reference) -> Vec<String> {
    let mut d = vec![];
    if theirs.client_hello {
        match ours.client_hello() {
            None => d.push("client hello missing".to_string()),
            Some(c) => {
                let sni = (c.flags & dataplane_common::tls::hello_flags::HAS_SNI != 0)
                    .then(|| c.sni().to_vec());
                if sni != theirs.sni {
                    d.push(format!("sni {:?} vs {:?}", sni, theirs.sni));
                }
                // Cut before supported_versions: unknown (0), not a wrong value.
                let unknown = c.max_supported_version == 0
                    && c.flags & dataplane_common::tls::hello_flags::TRUNCATED != 0;
                if !unknown && c.max_supported_version != theirs.client_max_version {
                    d.push(format!(
                        "client version {:#06x} vs {:#06x}",
                        c.max_supported_version, theirs.client_max_version
                    ));
                }
                let n = theirs.ciphers.len().min(32);
                if c.ciphers() != &theirs.ciphers[..n] {
                    d.push(format!(
                        "ciphers {:x?} vs {:x?}",
                        c.ciphers(),
                        theirs.ciphers
                    ));
                }
            }
        }
    }
    if theirs.server_hello {
        match ours.server_hello() {
            None => d.push("server hello missing".to_string()),
            Some(s) => {
                if s.version != theirs.server_version {
                    d.push(format!(
                        "server version {:#06x} vs {:#06x}",
                        s.version, theirs.server_version
                    ));
                }
                if s.cipher != theirs.server_cipher {
                    d.push(format!(
                        "cipher {:#06x} vs {:#06x}",
                        s.cipher, theirs.server_cipher
                    ));
                }
            }
        }
    }
    d
}
