//! A fault-injecting TCP proxy on `127.0.0.1:0`.
//!
//! Each accepted client connection is forwarded to the target. The proxy can
//! cut connections (both sides closed at once, so the client sees a broken
//! body and the server sees its client go away):
//!
//! - after N bytes server->client, N chosen per connection by a [`CutPolicy`]
//!   (exactly N bytes are delivered, wherever they fall: in the headers, in
//!   the middle of an event's line, between events);
//! - immediately, on demand ([`Proxy::cut_all`]).
//!
//! It counts connections and cuts, uses one fixed buffer per direction, and
//! stops (listener and every connection) when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Decides, for the `n`-th accepted connection (0-based), after how many
/// server->client bytes to cut it (`None`: never).
#[derive(Clone)]
pub struct CutPolicy(Arc<dyn Fn(usize) -> Option<u64> + Send + Sync>);

impl CutPolicy {
    /// Never cut on a byte count.
    pub fn never() -> Self {
        Self::from_fn(|_| None)
    }

    /// Any closure of the connection index.
    pub fn from_fn(f: impl Fn(usize) -> Option<u64> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Connection `n` is cut after `limits[n]` bytes; later connections are not cut.
    pub fn schedule(limits: Vec<u64>) -> Self {
        Self::from_fn(move |n| limits.get(n).copied())
    }

    /// The first `cuts` connections are cut after a pseudo-random number of
    /// bytes in `min..=max` (deterministic for a seed); later ones are not.
    pub fn seeded(seed: u64, cuts: usize, min: u64, max: u64) -> Self {
        assert!(min <= max);
        let mut state = seed | 1;
        let limits = (0..cuts)
            .map(|_| {
                // xorshift64*
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
                min + r % (max - min + 1)
            })
            .collect();
        Self::schedule(limits)
    }

    fn limit(&self, n: usize) -> Option<u64> {
        (self.0)(n)
    }
}

struct Counters {
    connections: AtomicUsize,
    cuts: AtomicUsize,
    to_client: AtomicU64,
}

/// The proxy. Dropping it stops the listener and closes every connection.
pub struct Proxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    cut_now: watch::Sender<u64>,
    _tasks: JoinSet<()>,
}

impl Proxy {
    /// A proxy to `target` that never cuts on its own.
    pub async fn new(target: SocketAddr) -> Self {
        Self::with_policy(target, CutPolicy::never()).await
    }

    /// A proxy to `target` that cuts connections per `policy`.
    pub async fn with_policy(target: SocketAddr, policy: CutPolicy) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let counters = Arc::new(Counters {
            connections: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
            to_client: AtomicU64::new(0),
        });
        let (cut_now, cut_rx) = watch::channel(0u64);
        let mut tasks = JoinSet::new();
        let c = counters.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let n = c.connections.fetch_add(1, Ordering::SeqCst);
                let limit = policy.limit(n);
                let counters = c.clone();
                let mut cut_rx = cut_rx.clone();
                // Cut requests made before this connection existed do not apply to it.
                cut_rx.mark_unchanged();
                conns.spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let cut = tokio::select! {
                        cut = pump(client, server, limit, &counters) => cut,
                        _ = cut_rx.changed() => true,
                    };
                    // Both sockets are dropped here: the connection is closed on both sides.
                    if cut {
                        counters.cuts.fetch_add(1, Ordering::SeqCst);
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            counters,
            cut_now,
            _tasks: tasks,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every open connection now.
    pub fn cut_all(&self) {
        self.cut_now.send_modify(|n| *n += 1);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Connections cut so far (by byte count or on demand).
    pub fn cuts(&self) -> usize {
        self.counters.cuts.load(Ordering::SeqCst)
    }

    /// Bytes forwarded server->client so far, over all connections.
    pub fn bytes_to_client(&self) -> u64 {
        self.counters.to_client.load(Ordering::SeqCst)
    }
}

/// Forwards both ways until either side closes (returns false) or the
/// server->client byte limit is reached (returns true: a cut).
async fn pump(
    client: TcpStream,
    server: TcpStream,
    limit: Option<u64>,
    counters: &Counters,
) -> bool {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();

    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        // HTTP clients do not half-close: the client is gone, so is the
        // connection (both sockets are dropped by the caller).
    };

    let downstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        loop {
            let room = match limit {
                Some(limit) if sent >= limit => return true,
                Some(limit) => (limit - sent).min(buf.len() as u64) as usize,
                None => buf.len(),
            };
            match server_read.read(&mut buf[..room]).await {
                Ok(0) | Err(_) => {
                    let _ = client_write.shutdown().await;
                    return false;
                }
                Ok(n) => {
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        return false;
                    }
                    sent += n as u64;
                    counters.to_client.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
    };

    tokio::select! {
        () = upstream => false,
        cut = downstream => cut,
    }
}
