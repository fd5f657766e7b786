//! The relay: accepts connections, forwards both directions unchanged, and cuts a connection
//! where its [`Connection`] says, or on demand.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::CutPolicy;

/// Each direction reads through one buffer of this size.
const BUFFER_BYTES: usize = 16 * 1024;

/// Where a proxy cuts: one [`Connection`] per accepted client connection.
pub trait Faults: Send + Sync + 'static {
    /// What watches one connection.
    type Connection: Connection;

    /// The watcher of the `index`-th accepted connection (0-based), before the proxy connects
    /// to the target. Whatever it waits for, the client waits for (an outage).
    fn connection(&self, index: usize) -> impl Future<Output = Self::Connection> + Send;
}

/// Watches the bytes of one connection and decides where to cut it.
pub trait Connection: Send + 'static {
    /// Client->server bytes, seen before they are forwarded (so a response always finds the
    /// request it answers).
    fn request(&mut self, _bytes: &[u8]) {}

    /// Server->client bytes, about to be forwarded: how many of them to forward.
    fn response(&mut self, bytes: &[u8]) -> Relay;

    /// The connection is over, both sides closed.
    fn ended(&mut self, _ending: Ending) {}
}

/// What to do with server->client bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// Forward them all.
    All,
    /// Forward the first `n` (at most all of them), then cut the connection: the client gets
    /// exactly those bytes and then its connection closed (FIN), the server loses its client.
    CutAfter(usize),
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ending {
    /// The server closed its side (or failed); the client's side was closed after it.
    ServerClosed,
    /// The client closed its side (or a write to it failed); the server's side was closed.
    ClientClosed,
    /// Cut by [`Relay::CutAfter`].
    Cut,
    /// Cut by [`Proxy::cut_all`].
    CutOnDemand,
    /// The proxy could not connect to the target; the client's connection was closed.
    ConnectFailed(std::io::Error),
}

#[derive(Default)]
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
    /// A proxy on `127.0.0.1:0` to `target` that never cuts on its own.
    pub async fn new(target: SocketAddr) -> Self {
        Self::with_policy(target, CutPolicy::never()).await
    }

    /// A proxy on `127.0.0.1:0` to `target` that cuts connections after the byte counts of
    /// `policy`.
    pub async fn with_policy(target: SocketAddr, policy: CutPolicy) -> Self {
        Self::start("127.0.0.1:0".parse().expect("an address"), target, policy)
            .await
            .expect("bind the proxy")
    }

    /// A proxy listening on `listen`, to `target`, cutting where `faults` says.
    pub async fn start(
        listen: SocketAddr,
        target: SocketAddr,
        faults: impl Faults,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let (cut_now, cut_rx) = watch::channel(0u64);
        let mut tasks = JoinSet::new();
        tasks.spawn(accept(
            listener,
            target,
            Arc::new(faults),
            counters.clone(),
            cut_rx,
        ));
        Ok(Self {
            addr,
            counters,
            cut_now,
            _tasks: tasks,
        })
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

    /// Connections cut so far ([`Relay::CutAfter`] or [`Proxy::cut_all`]).
    pub fn cuts(&self) -> usize {
        self.counters.cuts.load(Ordering::SeqCst)
    }

    /// Bytes forwarded server->client so far, over all connections.
    pub fn bytes_to_client(&self) -> u64 {
        self.counters.to_client.load(Ordering::SeqCst)
    }
}

async fn accept<F: Faults>(
    listener: TcpListener,
    target: SocketAddr,
    faults: Arc<F>,
    counters: Arc<Counters>,
    cut_rx: watch::Receiver<u64>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors, or the like: try again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let index = counters.connections.fetch_add(1, Ordering::SeqCst);
        let mut cut_rx = cut_rx.clone();
        // Cut requests made before this connection existed do not apply to it.
        cut_rx.mark_unchanged();
        let faults = faults.clone();
        let counters = counters.clone();
        connections.spawn(async move {
            let connection = Mutex::new(faults.connection(index).await);
            let ending = match TcpStream::connect(target).await {
                Ok(server) => {
                    tokio::select! {
                        ending = relay(client, server, &connection, &counters) => ending,
                        _ = cut_rx.changed() => Ending::CutOnDemand,
                    }
                }
                Err(error) => Ending::ConnectFailed(error),
            };
            // Both sockets are dropped by now: the connection is closed on both sides.
            if matches!(ending, Ending::Cut | Ending::CutOnDemand) {
                counters.cuts.fetch_add(1, Ordering::SeqCst);
            }
            lock(&connection).ended(ending);
        });
        while connections.try_join_next().is_some() {}
    }
}

fn lock<C>(connection: &Mutex<C>) -> std::sync::MutexGuard<'_, C> {
    connection
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Forwards both ways until either side closes or the connection is cut.
async fn relay<C: Connection>(
    client: TcpStream,
    server: TcpStream,
    connection: &Mutex<C>,
    counters: &Counters,
) -> Ending {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();

    let upstream = async {
        let mut buf = vec![0u8; BUFFER_BYTES];
        loop {
            match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    lock(connection).request(&buf[..n]);
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        // HTTP clients do not half-close: the client is gone, so is the connection.
        Ending::ClientClosed
    };

    let downstream = async {
        let mut buf = vec![0u8; BUFFER_BYTES];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = client_write.shutdown().await;
                    return Ending::ServerClosed;
                }
                Ok(n) => n,
            };
            let relay = lock(connection).response(&buf[..n]);
            let forward = match relay {
                Relay::All => n,
                Relay::CutAfter(after) => after.min(n),
            };
            if client_write.write_all(&buf[..forward]).await.is_err() {
                return Ending::ClientClosed;
            }
            counters
                .to_client
                .fetch_add(forward as u64, Ordering::SeqCst);
            if let Relay::CutAfter(_) = relay {
                // FIN after the forwarded bytes, so the client reads all of them first.
                let _ = client_write.flush().await;
                let _ = client_write.shutdown().await;
                return Ending::Cut;
            }
        }
    };

    tokio::select! {
        ending = upstream => ending,
        ending = downstream => ending,
    }
}
