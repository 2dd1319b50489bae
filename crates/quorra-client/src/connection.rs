//! One pipelined RESP3 connection to a node: requests are written as soon as they are
//! made, many in flight at once, and their replies matched in order.
//!
//! A writer task takes requests from a channel and writes every one waiting in a single
//! write; a reader task parses frames and answers the oldest request with each reply.
//! Pushes are not replies: an `invalidate` push drops keys from the near cache (a null,
//! everything). A tracked read's value is put in the near cache by the reader itself,
//! before it reads on, so an invalidation that follows the reply cannot be overtaken
//! ([`crate::near_cache`]). When the connection ends, every request still waiting fails
//! and the near cache is emptied.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use quorra_resp::{Frame, Limits, parse_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::near_cache::NearCache;

/// A reply on its way to its caller; with the key to keep its value under in the near
/// cache, for a tracked read.
struct Waiting {
    reply: oneshot::Sender<Result<Frame, Error>>,
    cache_as: Option<Bytes>,
}

/// A request: its RESP bytes, and who waits for the reply.
struct Request {
    bytes: Bytes,
    waiting: Waiting,
}

/// A connection to one node.
pub struct Connection {
    requests: mpsc::UnboundedSender<Request>,
    open: Arc<AtomicBool>,
}

impl Connection {
    /// Connects to `addr` in RESP3; with a near cache, turns tracking on so that the
    /// node tells it of changes to the keys read through this connection.
    pub async fn open(addr: SocketAddr, near: Option<Arc<NearCache>>) -> Result<Connection, Error> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = stream.into_split();
        let mut input = BytesMut::with_capacity(16 * 1024);
        let mut handshake = vec![vec![&b"HELLO"[..], b"3"]];
        if near.is_some() {
            handshake.push(vec![&b"CLIENT"[..], b"TRACKING", b"ON"]);
        }
        for command in handshake {
            let mut out = BytesMut::new();
            quorra_resp::encode::command(&mut out, &command);
            writer.write_all(&out).await?;
            if let Frame::Error(text) = read_frame(&mut reader, &mut input).await? {
                return Err(Error::Server(String::from_utf8_lossy(&text).into_owned()));
            }
        }
        let (requests, received) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicBool::new(true));
        let waiting = Arc::new(Mutex::new(VecDeque::new()));
        tokio::spawn(write_requests(
            writer,
            received,
            waiting.clone(),
            open.clone(),
        ));
        tokio::spawn(read_replies(reader, input, waiting, near, open.clone()));
        Ok(Connection { requests, open })
    }

    /// True until the connection ends.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Sends the command `bytes` and waits for its reply; with `cache_as`, a bulk reply
    /// is kept in the near cache under that key.
    pub async fn call(&self, bytes: Bytes, cache_as: Option<Bytes>) -> Result<Frame, Error> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            bytes,
            waiting: Waiting { reply, cache_as },
        };
        self.requests.send(request).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

/// Reads one whole frame (for the handshake).
async fn read_frame(reader: &mut OwnedReadHalf, input: &mut BytesMut) -> Result<Frame, Error> {
    loop {
        if let Some((frame, used)) = parse_frame(input, &Limits::default())? {
            let _ = input.split_to(used);
            return Ok(frame);
        }
        if reader.read_buf(input).await? == 0 {
            return Err(Error::Closed);
        }
    }
}

/// Writes requests as they come, all those waiting in one write; each one's caller is
/// queued for its reply before its bytes leave.
async fn write_requests(
    mut writer: OwnedWriteHalf,
    mut requests: mpsc::UnboundedReceiver<Request>,
    waiting: Arc<Mutex<VecDeque<Waiting>>>,
    open: Arc<AtomicBool>,
) {
    let mut out = BytesMut::new();
    while let Some(first) = requests.recv().await {
        {
            // Under the lock the reader takes to close: a caller is either queued before
            // the reader fails them all, or failed here.
            let mut waiting = waiting.lock();
            let mut next = Some(first);
            while let Some(request) = next {
                if open.load(Ordering::Relaxed) {
                    out.extend_from_slice(&request.bytes);
                    waiting.push_back(request.waiting);
                } else {
                    let _ = request.waiting.reply.send(Err(Error::Closed));
                }
                next = requests.try_recv().ok();
            }
        }
        if out.is_empty() {
            continue;
        }
        if writer.write_all(&out).await.is_err() {
            open.store(false, Ordering::Relaxed);
        }
        out.clear();
    }
}

/// Reads replies and pushes until the connection ends, then fails what still waits and
/// empties the near cache.
async fn read_replies(
    mut reader: OwnedReadHalf,
    mut input: BytesMut,
    waiting: Arc<Mutex<VecDeque<Waiting>>>,
    near: Option<Arc<NearCache>>,
    open: Arc<AtomicBool>,
) {
    'connection: loop {
        loop {
            let (frame, used) = match parse_frame(&input, &Limits::default()) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(_) => break 'connection,
            };
            let _ = input.split_to(used);
            match frame {
                Frame::Push(items) => invalidate(near.as_deref(), &items),
                reply => {
                    let Some(caller) = waiting.lock().pop_front() else {
                        break 'connection;
                    };
                    if let (Some(near), Some(key), Frame::Bulk(value)) =
                        (&near, caller.cache_as, &reply)
                    {
                        near.insert(key, value.clone());
                    }
                    let _ = caller.reply.send(Ok(reply));
                }
            }
        }
        match reader.read_buf(&mut input).await {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    // Invalidations this connection would have carried are lost with it.
    if let Some(near) = &near {
        near.clear();
    }
    let mut waiting = waiting.lock();
    open.store(false, Ordering::Relaxed);
    for caller in waiting.drain(..) {
        let _ = caller.reply.send(Err(Error::Closed));
    }
}

/// An `invalidate` push: its keys leave the near cache; a null empties it.
fn invalidate(near: Option<&NearCache>, push: &[Frame]) {
    let (Some(near), [Frame::Bulk(kind), keys]) = (near, push) else {
        return;
    };
    if &kind[..] != b"invalidate" {
        return;
    }
    match keys {
        Frame::Array(keys) => {
            for key in keys {
                if let Frame::Bulk(key) = key {
                    near.invalidate(key);
                }
            }
        }
        _ => near.clear(),
    }
}
