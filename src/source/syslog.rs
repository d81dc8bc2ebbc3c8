//! A syslog receiver: RFC 3164 and RFC 5424 messages over UDP and TCP.
//!
//! [`bind`] opens the configured sockets (so that port 0 can be used and the real port read
//! back with [`SyslogListener::udp_addr`] / [`SyslogListener::tcp_addr`]); [`SyslogListener::run`]
//! receives until shutdown. [`run`] does both.
//!
//! # Addresses
//!
//! `udp` and `tcp` take `IP:PORT` (`127.0.0.1:5514`, `[::1]:5514`, `0.0.0.0:514`). A bare port
//! (`5514` or `:5514`) or `localhost:PORT` binds the loopback address: syslog over the network
//! is unauthenticated (anyone who can reach the port can write any line, including forged
//! `sshd` failures), so listening beyond the host must be asked for explicitly.
//!
//! # Line shape
//!
//! Every message becomes one line the detectors' syslog header guard understands:
//!
//! - RFC 5424 `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG` becomes
//!   `TIMESTAMP HOST APP[PROCID]: MSG` (`APP: MSG` when PROCID is `-`). The timestamp is kept
//!   as the sender wrote it (RFC 3339 with its offset, which the engine reads); a nil (`-`)
//!   timestamp is replaced by the receive time in UTC and a nil host by the peer address. MSGID
//!   and structured data are dropped, and a UTF-8 BOM at the start of MSG is removed. Header
//!   fields are printable ASCII by the RFC; other bytes, `[`, `]` and a trailing `:` are replaced
//!   by `_` so a field cannot break the header.
//! - RFC 3164 `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG` (also with an RFC 3339 timestamp, as
//!   rsyslog forwards it) is kept as is after removing the PRI. When the HOST is missing, as
//!   some senders (busybox, network gear) do, the token after the timestamp is a tag (it ends in
//!   `:` or holds `[`) and the peer address is inserted as the host, as RFC 3164 section 4.3.2
//!   asks of a relay; `host.name` and asset matching then see the sender's address.
//! - A message with a PRI but no recognisable timestamp gets `RECEIVE-TIME PEER ` in front
//!   (RFC 3164 section 4.3.3).
//! - A message without a valid PRI (garbage, binary, a sender that forgot it) is counted as
//!   `no_pri` and still delivered, shaped like the previous case. Dropping it would let a
//!   sender hide a line from the detectors just by omitting the PRI, and the line costs no more
//!   than any other: it is bounded by `max_message_bytes` and most bytes never reach a regex.
//!
//! The facility and severity in the PRI are not kept. Trailing LF, CR and NUL bytes are
//! removed and a newline inside a message is replaced by a space, so one message is one line
//! (a multi-line message cannot forge a second line with its own header).
//!
//! # Transport
//!
//! - UDP: one datagram is one message. Datagrams longer than `max_message_bytes` are cut
//!   (counted).
//! - TCP (RFC 6587): each frame is either octet-counted (`LEN SP MSG`, chosen when the frame
//!   starts with a non-zero digit followed by at most 10 digits and a space) or non-transparent
//!   (terminated by LF); the choice is made per frame, as rsyslog does, so a PRI-less message
//!   starting with `12 ` is read as octet-counted. A frame longer than `max_message_bytes` is cut
//!   (counted) and the rest of it skipped. At most `max_connections` connections are served;
//!   extra connections are closed at once (counted). A connection idle for
//!   [`DEFAULT_IDLE_TIMEOUT`] is closed (counted). An unterminated frame at end of connection
//!   is delivered.
//!
//! # Batching
//!
//! Lines are collected from all connections into one stream of batches, sent when they reach
//! [`BATCH_BYTES`] or [`BATCH_LINES`], or [`FLUSH_DELAY`] after their first line. Syslog cannot
//! be replayed, so batches carry no position. When the pipeline is slow, TCP senders are held
//! back by TCP flow control and UDP datagrams are dropped by the kernel once the socket buffer
//! is full.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::Batch;
use crate::config::SyslogSourceConfig;

/// A TCP connection that sends nothing for this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest time a received line waits for more lines to share its batch.
pub const FLUSH_DELAY: Duration = Duration::from_millis(20);
/// A batch is sent once it holds this many bytes.
pub const BATCH_BYTES: usize = 256 * 1024;
/// A batch is sent once it holds this many lines.
pub const BATCH_LINES: u64 = 2048;

/// Counters of one syslog source, shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct SyslogStats {
    /// Messages delivered as lines (all kinds below).
    pub messages: AtomicU64,
    /// Bytes of messages received (before reshaping).
    pub bytes: AtomicU64,
    /// UDP datagrams received.
    pub udp_datagrams: AtomicU64,
    /// TCP frames received.
    pub tcp_frames: AtomicU64,
    /// Well-formed RFC 5424 messages.
    pub rfc5424: AtomicU64,
    /// RFC 3164 (or RFC 3339-stamped legacy) messages.
    pub rfc3164: AtomicU64,
    /// Messages with a PRI but no recognisable timestamp (receive time and peer added).
    pub no_timestamp: AtomicU64,
    /// Messages without a valid PRI: garbage or sloppy senders, delivered with receive time
    /// and peer added.
    pub no_pri: AtomicU64,
    /// `<PRI>1 ` messages whose RFC 5424 header was invalid (then read as legacy syslog).
    pub malformed_rfc5424: AtomicU64,
    /// Empty messages (ignored).
    pub empty: AtomicU64,
    /// Messages cut at `max_message_bytes`.
    pub truncated: AtomicU64,
    /// TCP connections accepted.
    pub connections_accepted: AtomicU64,
    /// TCP connections closed at once because `max_connections` were open.
    pub connections_rejected: AtomicU64,
    /// TCP connections closed because they were idle.
    pub connections_timed_out: AtomicU64,
    /// TCP connections open now (a gauge).
    pub connections_open: AtomicU64,
    /// Receive, accept and read errors.
    pub errors: AtomicU64,
    /// Batches sent to the pipeline.
    pub batches: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Why a syslog source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    /// Neither `udp` nor `tcp` is set.
    #[error("syslog source {name:?}: set `udp` or `tcp` (or both) to an address such as \"127.0.0.1:5514\"")]
    NoListener {
        /// Source name.
        name: String,
    },
    /// An address that is not `IP:PORT`, `PORT` or `localhost:PORT`.
    #[error("syslog source {name:?}: invalid {proto} address {address:?}: expected IP:PORT such as \"127.0.0.1:5514\" or \"[::1]:5514\", or a port")]
    Address {
        /// Source name.
        name: String,
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The configured text.
        address: String,
    },
    /// The socket could not be bound.
    #[error("syslog source {name:?}: cannot listen on {proto} {address}: {source}")]
    Bind {
        /// Source name.
        name: String,
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Parses a listen address: `IP:PORT`, `[IPv6]:PORT`, `PORT`, `:PORT` or `localhost:PORT`
/// (the last three on loopback). Used by [`bind`]; public so config validation can report a
/// bad address before start-up.
pub fn parse_listen_address(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let port = s
        .strip_prefix(':')
        .or_else(|| s.strip_prefix("localhost:"))
        .unwrap_or(s);
    port.parse::<u16>()
        .ok()
        .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
}

/// Bound sockets of a syslog source, ready to [`run`](SyslogListener::run).
#[derive(Debug)]
pub struct SyslogListener {
    name: String,
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
    max_message: usize,
    max_connections: usize,
    idle_timeout: Duration,
    stats: Arc<SyslogStats>,
}

/// Binds the sockets configured in `cfg`.
pub async fn bind(
    cfg: &SyslogSourceConfig,
    stats: Arc<SyslogStats>,
) -> Result<SyslogListener, SyslogError> {
    let addr = |proto: &'static str, v: &Option<toml::Spanned<String>>| {
        v.as_ref()
            .map(|s| {
                parse_listen_address(s.get_ref()).ok_or_else(|| SyslogError::Address {
                    name: cfg.name.clone(),
                    proto,
                    address: s.get_ref().clone(),
                })
            })
            .transpose()
    };
    let udp_addr = addr("udp", &cfg.udp)?;
    let tcp_addr = addr("tcp", &cfg.tcp)?;
    if udp_addr.is_none() && tcp_addr.is_none() {
        return Err(SyslogError::NoListener {
            name: cfg.name.clone(),
        });
    }
    let bind_err = |proto, address, source| SyslogError::Bind {
        name: cfg.name.clone(),
        proto,
        address,
        source,
    };
    let udp = match udp_addr {
        Some(a) => Some(
            UdpSocket::bind(a)
                .await
                .map_err(|e| bind_err("udp", a, e))?,
        ),
        None => None,
    };
    let tcp = match tcp_addr {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(|e| bind_err("tcp", a, e))?,
        ),
        None => None,
    };
    Ok(SyslogListener {
        name: cfg.name.clone(),
        udp,
        tcp,
        max_message: cfg.max_message_bytes.max(1),
        max_connections: cfg.max_connections,
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
        stats,
    })
}

/// Binds the sockets of `cfg` and receives until `shutdown` turns true (or its sender is
/// dropped) or the pipeline's receiver is gone.
pub async fn run(
    cfg: SyslogSourceConfig,
    tx: mpsc::Sender<Batch>,
    shutdown: watch::Receiver<bool>,
    stats: Arc<SyslogStats>,
) -> Result<(), SyslogError> {
    bind(&cfg, stats).await?.run(tx, shutdown).await;
    Ok(())
}

/// Lines from one read or a few datagrams, on their way to the batcher.
#[derive(Debug, Default)]
struct Chunk {
    data: Vec<u8>,
    lines: u64,
    truncated: u64,
}

/// What the receiving tasks share.
#[derive(Debug)]
struct Ctx {
    max_message: usize,
    stats: Arc<SyslogStats>,
}

impl Ctx {
    /// Reshapes one message into `chunk` and counts it.
    fn message(&self, msg: &[u8], truncated: bool, peer: IpAddr, chunk: &mut Chunk) {
        let s = &self.stats;
        s.bytes.fetch_add(msg.len() as u64, Ordering::Relaxed);
        let kind = normalize(msg, Some(peer), &mut chunk.data);
        match kind {
            MessageKind::Empty => {
                inc(&s.empty);
                return;
            }
            MessageKind::Rfc5424 => inc(&s.rfc5424),
            MessageKind::Rfc3164 => inc(&s.rfc3164),
            MessageKind::NoTimestamp => inc(&s.no_timestamp),
            MessageKind::NoPri => inc(&s.no_pri),
            MessageKind::MalformedRfc5424 => inc(&s.malformed_rfc5424),
        }
        inc(&s.messages);
        chunk.lines += 1;
        if truncated {
            inc(&s.truncated);
            chunk.truncated += 1;
        }
    }

    fn datagram(&self, d: &[u8], peer: SocketAddr, chunk: &mut Chunk) {
        inc(&self.stats.udp_datagrams);
        let cut = d.len() > self.max_message;
        let d = &d[..d.len().min(self.max_message)];
        self.message(d, cut, peer.ip(), chunk);
    }
}

impl SyslogListener {
    /// The bound UDP address (with the real port when 0 was configured).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The bound TCP address (with the real port when 0 was configured).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Changes how long a silent TCP connection is kept ([`DEFAULT_IDLE_TIMEOUT`]).
    pub fn set_idle_timeout(&mut self, timeout: Duration) {
        self.idle_timeout = timeout;
    }

    /// Receives until `shutdown` turns true (or its sender is dropped) or `tx`'s receiver is
    /// gone. Lines still waiting for their batch at shutdown are sent if the channel has room.
    pub async fn run(self, tx: mpsc::Sender<Batch>, mut shutdown: watch::Receiver<bool>) {
        let ctx = Arc::new(Ctx {
            max_message: self.max_message,
            stats: self.stats.clone(),
        });
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<Chunk>(64);
        let mut tasks = JoinSet::new();
        if let Some(sock) = self.udp {
            tasks.spawn(udp_loop(
                sock,
                ctx.clone(),
                chunk_tx.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(listener) = self.tcp {
            tasks.spawn(accept_loop(
                listener,
                ctx.clone(),
                chunk_tx.clone(),
                shutdown.clone(),
                self.max_connections,
                self.idle_timeout,
            ));
        }
        drop(chunk_tx);

        let id = format!("syslog:{}", self.name);
        let new_batch = || Batch {
            stream: id.clone(),
            name: id.clone(),
            data: Vec::new(),
            lines: 0,
            position: None,
            labels: Vec::new(),
            truncated_lines: 0,
        };
        let mut batch = new_batch();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let flush = tokio::select! {
                biased;
                _ = shutdown_requested(&mut shutdown) => break,
                c = chunk_rx.recv() => match c {
                    Some(c) => {
                        batch.data.extend_from_slice(&c.data);
                        batch.lines += c.lines;
                        batch.truncated_lines += c.truncated;
                        if deadline.is_none() {
                            deadline = Some(tokio::time::Instant::now() + FLUSH_DELAY);
                        }
                        batch.data.len() >= BATCH_BYTES || batch.lines >= BATCH_LINES
                    }
                    None => break,
                },
                _ = sleep_until(deadline) => true,
            };
            if flush && batch.lines > 0 {
                deadline = None;
                let full = std::mem::replace(&mut batch, new_batch());
                tokio::select! {
                    biased;
                    _ = shutdown_requested(&mut shutdown) => break,
                    r = tx.send(full) => {
                        if r.is_err() {
                            break;
                        }
                        inc(&self.stats.batches);
                    }
                }
            }
        }
        // Stopping: keep what fits, without waiting for a pipeline that may be gone.
        while let Ok(c) = chunk_rx.try_recv() {
            batch.data.extend_from_slice(&c.data);
            batch.lines += c.lines;
            batch.truncated_lines += c.truncated;
        }
        if batch.lines > 0 && tx.try_send(batch).is_ok() {
            inc(&self.stats.batches);
        }
        tasks.shutdown().await;
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves once shutdown is requested or its sender is gone.
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn udp_loop(
    sock: UdpSocket,
    ctx: Arc<Ctx>,
    chunks: mpsc::Sender<Chunk>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Large enough for any datagram, so none is cut by the receive call itself.
    let mut buf = vec![0u8; 65536];
    loop {
        let mut chunk = Chunk::default();
        tokio::select! {
            biased;
            _ = shutdown_requested(&mut shutdown) => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, peer)) => ctx.datagram(&buf[..n], peer, &mut chunk),
                Err(e) => {
                    inc(&ctx.stats.errors);
                    tracing::warn!(error = %e, "syslog: UDP receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        }
        // Take what is already queued without waiting: one chunk per burst.
        while chunk.data.len() < BATCH_BYTES && chunk.lines < BATCH_LINES {
            match sock.try_recv_from(&mut buf) {
                Ok((n, peer)) => ctx.datagram(&buf[..n], peer, &mut chunk),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    inc(&ctx.stats.errors);
                    tracing::warn!(error = %e, "syslog: UDP receive failed");
                    break;
                }
            }
        }
        if chunk.lines > 0 && chunks.send(chunk).await.is_err() {
            return;
        }
    }
}

/// Holds a connection slot; frees it (and the gauge) however the connection task ends.
struct Slot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<SyslogStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    chunks: mpsc::Sender<Chunk>,
    mut shutdown: watch::Receiver<bool>,
    max_connections: usize,
    idle: Duration,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown_requested(&mut shutdown) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => match r {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        inc(&ctx.stats.connections_accepted);
                        inc(&ctx.stats.connections_open);
                        let slot = Slot { _permit: permit, stats: ctx.stats.clone() };
                        conns.spawn(serve(
                            stream,
                            peer,
                            ctx.clone(),
                            chunks.clone(),
                            shutdown.clone(),
                            idle,
                            slot,
                        ));
                    }
                    Err(_) => {
                        inc(&ctx.stats.connections_rejected);
                        tracing::debug!(%peer, "syslog: too many connections, closing");
                        drop(stream);
                    }
                },
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    inc(&ctx.stats.errors);
                    tracing::warn!(error = %e, "syslog: TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    conns.shutdown().await;
}

async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    chunks: mpsc::Sender<Chunk>,
    mut shutdown: watch::Receiver<bool>,
    idle: Duration,
    _slot: Slot,
) {
    let ip = peer.ip();
    let mut framer = Framer::new(ctx.max_message);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let read = tokio::select! {
            biased;
            _ = shutdown_requested(&mut shutdown) => return,
            r = tokio::time::timeout(idle, stream.read_buf(&mut buf)) => r,
        };
        let eof = match read {
            Err(_) => {
                inc(&ctx.stats.connections_timed_out);
                tracing::debug!(%peer, "syslog: idle connection closed");
                return;
            }
            Ok(Err(e)) => {
                inc(&ctx.stats.errors);
                tracing::debug!(%peer, error = %e, "syslog: connection read failed");
                true
            }
            Ok(Ok(0)) => true,
            Ok(Ok(_)) => false,
        };
        let mut chunk = Chunk::default();
        let consumed = framer.feed(&buf, eof, |frame, cut| {
            inc(&ctx.stats.tcp_frames);
            ctx.message(frame, cut, ip, &mut chunk);
        });
        buf.drain(..consumed);
        if chunk.lines > 0 && chunks.send(chunk).await.is_err() {
            return;
        }
        if eof {
            return;
        }
    }
}

/// RFC 6587 frame splitter for one TCP connection.
#[derive(Debug)]
struct Framer {
    max: usize,
    state: FrameState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameState {
    /// At the start of a frame.
    Start,
    /// Discarding the rest of an over-long octet-counted frame.
    Skip(u64),
    /// Discarding the rest of an over-long LF-terminated frame.
    SkipToLf,
}

/// At most this many digits in an octet count (up to 9,999,999,999 bytes, all but
/// `max_message_bytes` of which are skipped).
const MAX_COUNT_DIGITS: usize = 10;

impl Framer {
    fn new(max: usize) -> Framer {
        Framer {
            max: max.max(1),
            state: FrameState::Start,
        }
    }

    /// Passes each complete frame in `buf` to `emit` (with whether it was cut) and returns the
    /// bytes consumed. At `eof`, an unfinished frame is passed too (as cut when its octet count
    /// promised more). Unconsumed bytes never exceed `max + MAX_COUNT_DIGITS + 1`.
    fn feed(&mut self, buf: &[u8], eof: bool, mut emit: impl FnMut(&[u8], bool)) -> usize {
        let mut pos = 0;
        loop {
            let avail = &buf[pos..];
            match self.state {
                FrameState::Skip(n) => {
                    let take = (avail.len() as u64).min(n);
                    pos += take as usize;
                    if take == n {
                        self.state = FrameState::Start;
                    } else {
                        self.state = FrameState::Skip(n - take);
                        return pos;
                    }
                }
                FrameState::SkipToLf => match memchr::memchr(b'\n', avail) {
                    Some(i) => {
                        pos += i + 1;
                        self.state = FrameState::Start;
                    }
                    None => return buf.len(),
                },
                FrameState::Start => {
                    let Some(&first) = avail.first() else {
                        return pos;
                    };
                    if first == b'\n' {
                        pos += 1;
                        continue;
                    }
                    if (b'1'..=b'9').contains(&first) {
                        let digits = avail
                            .iter()
                            .take(MAX_COUNT_DIGITS + 1)
                            .take_while(|b| b.is_ascii_digit())
                            .count();
                        match avail.get(digits) {
                            Some(b' ') if digits <= MAX_COUNT_DIGITS => {
                                let len: u64 = avail[..digits]
                                    .iter()
                                    .fold(0, |n, &d| n * 10 + (d - b'0') as u64);
                                let body = &avail[digits + 1..];
                                let want = len.min(self.max as u64) as usize;
                                if body.len() >= want {
                                    emit(&body[..want], len > want as u64);
                                    pos += digits + 1 + want;
                                    if len > want as u64 {
                                        self.state = FrameState::Skip(len - want as u64);
                                    }
                                    continue;
                                }
                                if eof {
                                    emit(body, true);
                                    return buf.len();
                                }
                                return pos;
                            }
                            None if !eof && digits <= MAX_COUNT_DIGITS => return pos,
                            // Not a count: a LF-terminated frame that starts with digits.
                            _ => {}
                        }
                    }
                    match memchr::memchr(b'\n', &avail[..avail.len().min(self.max + 1)]) {
                        Some(i) => {
                            emit(&avail[..i], false);
                            pos += i + 1;
                        }
                        None if avail.len() > self.max => {
                            emit(&avail[..self.max], true);
                            pos += self.max;
                            self.state = FrameState::SkipToLf;
                        }
                        None if eof => {
                            emit(avail, false);
                            return buf.len();
                        }
                        None => return pos,
                    }
                }
            }
        }
    }
}

/// How a message was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// RFC 5424.
    Rfc5424,
    /// RFC 3164, or legacy framing with an RFC 3339 timestamp.
    Rfc3164,
    /// A PRI but no timestamp: receive time and peer were added.
    NoTimestamp,
    /// No valid PRI: receive time and peer were added (unless it had a timestamp).
    NoPri,
    /// `<PRI>1 ` with an invalid RFC 5424 header, read as legacy syslog.
    MalformedRfc5424,
    /// Nothing but line terminators: no line was written.
    Empty,
}

/// Appends the line for syslog message `msg` (one datagram or TCP frame, without framing) to
/// `out`, terminated by `\n`, and says how it was read. `peer` fills in a missing host
/// (`-` when `None`). See the module documentation for the shapes.
pub fn normalize(msg: &[u8], peer: Option<IpAddr>, out: &mut Vec<u8>) -> MessageKind {
    let mut msg = msg;
    while let Some((&last, rest)) = msg.split_last() {
        if matches!(last, b'\n' | b'\r' | 0) {
            msg = rest;
        } else {
            break;
        }
    }
    if msg.is_empty() {
        return MessageKind::Empty;
    }
    let start = out.len();
    let pri = pri_len(msg);
    let body = &msg[pri.unwrap_or(0)..];
    let mut kind = if pri.is_some() {
        MessageKind::Rfc3164
    } else {
        MessageKind::NoPri
    };
    if pri.is_some() {
        if let Some(rest) = body.strip_prefix(b"1 ") {
            if rfc5424(rest, peer, out) {
                finish_line(out, start);
                return MessageKind::Rfc5424;
            }
            out.truncate(start);
            kind = MessageKind::MalformedRfc5424;
        }
    }
    match legacy_timestamp_len(body) {
        Some(ts) => {
            out.extend_from_slice(&body[..ts]);
            let after = &body[ts..];
            let next = after.get(1..).unwrap_or(b"");
            let token = &next[..memchr::memchr(b' ', next).unwrap_or(next.len())];
            let tag_first = token.len() > 1 && (token.ends_with(b":") || token.contains(&b'['));
            if after.first() == Some(&b' ') && tag_first {
                out.push(b' ');
                push_peer(out, peer);
            }
            out.extend_from_slice(after);
        }
        None => {
            push_now(out);
            out.push(b' ');
            push_peer(out, peer);
            out.push(b' ');
            out.extend_from_slice(body);
            if kind == MessageKind::Rfc3164 {
                kind = MessageKind::NoTimestamp;
            }
        }
    }
    finish_line(out, start);
    kind
}

/// Replaces newlines inside the line written from `start` and terminates it.
fn finish_line(out: &mut Vec<u8>, start: usize) {
    for b in &mut out[start..] {
        if *b == b'\n' {
            *b = b' ';
        }
    }
    out.push(b'\n');
}

/// Length of a valid `<PRI>` (0..=191, no leading zeros except `<0>`).
fn pri_len(m: &[u8]) -> Option<usize> {
    if m.first() != Some(&b'<') {
        return None;
    }
    let end = m.iter().take(5).position(|&b| b == b'>')?;
    let digits = &m[1..end];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    let v: u32 = digits.iter().fold(0, |n, &d| n * 10 + (d - b'0') as u32);
    (v <= 191).then_some(end + 1)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Length of a leading RFC 3164 timestamp (`Mmm dd hh:mm:ss`, day space- or zero-padded or a
/// single digit, optional fraction) or RFC 3339 timestamp token.
fn legacy_timestamp_len(s: &[u8]) -> Option<usize> {
    if s.len() >= 14 && MONTHS.iter().any(|m| s.starts_with(&m[..])) && s[3] == b' ' {
        let d = |i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
        // Day: " 1", "01", "11" or "1".
        let clock = if (s[4] == b' ' || d(4)) && d(5) && s.get(6) == Some(&b' ') {
            7
        } else if d(4) && s.get(5) == Some(&b' ') {
            6
        } else {
            return None;
        };
        let c = s.get(clock..clock + 8)?;
        let ok = c[2] == b':'
            && c[5] == b':'
            && [0, 1, 3, 4, 6, 7].iter().all(|&i| c[i].is_ascii_digit());
        if !ok {
            return None;
        }
        let mut i = clock + 8;
        if s.get(i) == Some(&b'.') && d(i + 1) {
            i += 1;
            while d(i) {
                i += 1;
            }
        }
        return Some(i);
    }
    let end = memchr::memchr(b' ', s).unwrap_or(s.len());
    valid_rfc3339(&s[..end]).then_some(end)
}

fn valid_rfc3339(t: &[u8]) -> bool {
    t.len() >= 20
        && t.len() <= 40
        && std::str::from_utf8(t).is_ok_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
}

/// RFC 5424 after `<PRI>1 `: writes `TIMESTAMP HOST APP[PROCID]: MSG` (without terminator) and
/// returns true, or returns false (leaving garbage in `out` for the caller to cut) when the
/// header is invalid.
fn rfc5424(s: &[u8], peer: Option<IpAddr>, out: &mut Vec<u8>) -> bool {
    let mut rest = s;
    let mut field = || -> Option<&[u8]> {
        let end = memchr::memchr(b' ', rest)?;
        let f = &rest[..end];
        rest = &rest[end + 1..];
        (!f.is_empty()).then_some(f)
    };
    let (Some(ts), Some(host), Some(app), Some(procid), Some(_msgid)) =
        (field(), field(), field(), field(), field())
    else {
        return false;
    };
    let Some(sd) = structured_data_len(rest) else {
        return false;
    };
    let msg = match &rest[sd..] {
        [] => &[][..],
        [b' ', m @ ..] => m,
        _ => return false,
    };
    if ts == b"-" {
        push_now(out);
    } else if valid_rfc3339(ts) {
        out.extend_from_slice(ts);
    } else {
        return false;
    }
    out.push(b' ');
    if host == b"-" {
        push_peer(out, peer);
    } else {
        push_field(out, host);
    }
    out.push(b' ');
    push_field(out, app);
    if procid != b"-" {
        out.push(b'[');
        push_field(out, procid);
        out.push(b']');
    }
    out.extend_from_slice(b": ");
    out.extend_from_slice(msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg));
    true
}

/// Length of the STRUCTURED-DATA at the start of `s`: `-` or `[...]` elements, with `\"`,
/// `\\` and `\]` escapes inside quoted values.
fn structured_data_len(s: &[u8]) -> Option<usize> {
    if s.first() == Some(&b'-') {
        return Some(1);
    }
    let mut i = 0;
    while s.get(i) == Some(&b'[') {
        i += 1;
        let mut quoted = false;
        loop {
            match *s.get(i)? {
                b'\\' if quoted => i += 2,
                b'"' => {
                    quoted = !quoted;
                    i += 1;
                }
                b']' if !quoted => {
                    i += 1;
                    break;
                }
                _ => i += 1,
            }
        }
    }
    (i > 0).then_some(i)
}

/// A header field: printable ASCII except `[` and `]`, not ending in `:`.
fn push_field(out: &mut Vec<u8>, f: &[u8]) {
    let start = out.len();
    out.extend(f.iter().map(|&b| {
        if (0x21..=0x7e).contains(&b) && b != b'[' && b != b']' {
            b
        } else {
            b'_'
        }
    }));
    if out.len() > start && out.last() == Some(&b':') {
        if let Some(last) = out.last_mut() {
            *last = b'_';
        }
    }
}

/// The peer as a host token (`-` when unknown); an IPv6 address ending in `::` gets a `0` so
/// the token does not end in `:`.
fn push_peer(out: &mut Vec<u8>, peer: Option<IpAddr>) {
    match peer {
        Some(ip) => {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            let s = ip.to_string();
            out.extend_from_slice(s.as_bytes());
            if s.ends_with(':') {
                out.push(b'0');
            }
        }
        None => out.push(b'-'),
    }
}

/// The receive time, RFC 3339 UTC with microseconds.
fn push_now(out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(
        out,
        "{}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(m: &str) -> (String, MessageKind) {
        let mut out = Vec::new();
        let k = normalize(m.as_bytes(), "192.0.2.7".parse().ok(), &mut out);
        (String::from_utf8_lossy(&out).into_owned(), k)
    }

    #[test]
    fn shapes() {
        let cases = [
            (
                "<38>1 2026-03-01T10:00:00.123+01:00 web1 sshd 4242 - [timeQuality tzKnown=\"1\"][x@1 a=\"b\\]c\"] \u{feff}Failed password",
                "2026-03-01T10:00:00.123+01:00 web1 sshd[4242]: Failed password\n",
                MessageKind::Rfc5424,
            ),
            (
                "<13>1 2026-03-01T10:00:00Z web1 app - - -",
                "2026-03-01T10:00:00Z web1 app: \n",
                MessageKind::Rfc5424,
            ),
            (
                "<13>Mar  1 10:00:00 web1 sshd[4242]: Failed x\n",
                "Mar  1 10:00:00 web1 sshd[4242]: Failed x\n",
                MessageKind::Rfc3164,
            ),
            (
                "<13>Mar  1 10:00:00 sshd[4242]: no host",
                "Mar  1 10:00:00 192.0.2.7 sshd[4242]: no host\n",
                MessageKind::Rfc3164,
            ),
            (
                "<13>2026-03-01T10:00:00+00:00 web1 app: a\nb\r\n",
                "2026-03-01T10:00:00+00:00 web1 app: a b\n",
                MessageKind::Rfc3164,
            ),
            (
                "<13>1 2026-03-01T10:00:00Z web1 app 1 - bad-sd x",
                "",
                MessageKind::MalformedRfc5424,
            ),
        ];
        for (input, want, kind) in cases {
            let (got, k) = norm(input);
            assert_eq!(k, kind, "{input}");
            if !want.is_empty() {
                assert_eq!(got, want, "{input}");
            }
        }
        let (got, k) = norm("<13>1 - - app - - - nil");
        assert_eq!(k, MessageKind::Rfc5424);
        assert!(got.ends_with(" 192.0.2.7 app: nil\n"), "{got}");
        let (got, k) = norm("\x00\x01binary\nstuff");
        assert_eq!(k, MessageKind::NoPri);
        assert!(
            got.ends_with(" 192.0.2.7 \x00\x01binary stuff\n"),
            "{got:?}"
        );
        assert_eq!(norm("\n\r\n").1, MessageKind::Empty);
        assert_eq!(norm("<999>x").1, MessageKind::NoPri);
        assert_eq!(norm("<13>just text").1, MessageKind::NoTimestamp);
    }

    #[test]
    fn framer_auto_detects_and_bounds() {
        let mut f = Framer::new(8);
        let mut got = Vec::new();
        let input = b"5 hello\nline\n12 0123456789ab<13>toolongline\nok\n3 ab";
        let n = f.feed(input, false, |m, cut| {
            got.push((String::from_utf8_lossy(m).into_owned(), cut))
        });
        assert_eq!(
            got,
            [
                ("hello".into(), false),
                ("line".into(), false),
                ("01234567".into(), true),
                ("<13>tool".into(), true),
                ("ok".into(), false),
            ]
        );
        assert_eq!(&input[n..], b"3 ab");
        got.clear();
        let n2 = f.feed(&input[n..], true, |m, cut| {
            got.push((String::from_utf8_lossy(m).into_owned(), cut))
        });
        assert_eq!(n2, 4);
        assert_eq!(got, [("ab".into(), true)]);
    }
}
