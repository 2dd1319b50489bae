//! The connection driver: one tokio task per connection, a writer and a reader inside it.
//!
//! Each task owns one TCP connection (to target `index mod targets`, so connections are
//! spread round-robin) and runs two futures joined together:
//!
//! - the **writer** draws requests from the workload, encodes them as typed
//!   [`quorra_resp::Command`]s, and writes them in batches. It may have at most `--pipeline`
//!   requests in flight (a semaphore of that many permits; the reader returns a permit per
//!   reply). In closed loop it sends whenever a permit is free; in open loop it first
//!   waits for the request's intended time (a token from the [`Pacer`]), then for a
//!   permit.
//!   Before it waits for anything it flushes what it has encoded, so the reader never
//!   waits for a reply to a request that is still in the writer's buffer.
//! - the **reader** takes the in-flight records in order from an unbounded channel (RESP
//!   replies come back in request order), parses one reply each with
//!   `quorra_resp::parse_frame`, classifies it (hit, miss, ok, error reply) and records the
//!   latency: `reply time − start`, where start is the send time in closed loop and the
//!   intended time in open loop.
//!
//! Sending and receiving in separate futures means a large pipeline of large values cannot
//! deadlock (the writer blocked on a full socket while the server is blocked writing
//! replies nobody reads). A connection that fails (refused, reset, a malformed reply, no
//! reply for [`REPLY_TIMEOUT`]) ends the whole run with an error: a benchmark with a
//! silently missing connection would report a different load than was asked for.
//!
//! Stopping: in duration mode the writer stops sending when the measured window ends
//! (closed loop: by the clock; open loop: when the next intended time is past it); in
//! `--requests` mode closed-loop connections draw tickets from a shared counter, and
//! open-loop connections send exactly their share of the global request numbers. The
//! reader then drains the replies still in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use quorra_resp::command::{SetExpiry, SetOptions};
use quorra_resp::{Command, Frame, Limits, parse_frame};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::BenchError;
use crate::report::Stats;
use crate::schedule::{Pacer, Schedule};
use crate::workload::{KeyPermutation, KeySampler, OpKind, OpMix, ValueSize};

/// How long a reader waits for one reply before it gives up on the connection.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Encoded bytes the writer gathers before it writes them out, even if more requests are
/// due.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Read buffer growth step, in bytes.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// SETs per round trip while preloading.
pub(crate) const PRELOAD_BATCH: u64 = 64;

/// When the run stops.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    /// After this long past the warm-up.
    After(Duration),
    /// After this many measured requests in total.
    Requests(u64),
}

/// Everything the connections share, fixed for the run.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) targets: Vec<String>,
    pub(crate) password: Option<String>,
    pub(crate) connections: u32,
    pub(crate) pipeline: u32,
    pub(crate) rate: Option<u64>,
    pub(crate) stop: Stop,
    pub(crate) warmup: Duration,
    pub(crate) keys: u64,
    pub(crate) sampler: KeySampler,
    pub(crate) permutation: KeyPermutation,
    pub(crate) mix: OpMix,
    pub(crate) mget: u32,
    /// Each request inside its own MULTI ... EXEC.
    pub(crate) transaction: bool,
    pub(crate) value_size: ValueSize,
    /// `EX` seconds on every write.
    pub(crate) ttl: Option<u64>,
    /// Random printable bytes, as long as the largest value; values are prefixes of it.
    pub(crate) payload: Bytes,
    pub(crate) key_prefix: Vec<u8>,
    pub(crate) seed: u64,
}

impl Plan {
    /// Open loop: the global request number at which the run stops (exclusive).
    pub(crate) fn open_loop_end(&self, schedule: Schedule) -> u64 {
        match self.stop {
            Stop::Requests(n) => schedule
                .first_global_at_or_after(self.warmup)
                .saturating_add(n),
            Stop::After(duration) => schedule.first_global_at_or_after(self.warmup + duration),
        }
    }

    /// The target of connection `index`.
    pub(crate) fn target(&self, index: u32) -> &str {
        &self.targets[index as usize % self.targets.len()]
    }

    fn rng(&self, index: u32, purpose: u64) -> StdRng {
        StdRng::seed_from_u64(
            self.seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(u64::from(index) << 8 | purpose),
        )
    }

    fn write_key(&self, id: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.key_prefix);
        out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    }

    fn encode_set(&self, buf: &mut BytesMut, key: &[u8], len: usize) {
        let options = SetOptions {
            expiry: self.ttl.map_or(SetExpiry::None, |ttl| {
                SetExpiry::Ex(ttl.min(i64::MAX as u64) as i64)
            }),
            ..SetOptions::default()
        };
        Command::Set {
            key,
            value: &self.payload[..len],
            options,
        }
        .encode(buf);
    }
}

/// Opens a connection to `addr` and authenticates if a password is set.
pub(crate) async fn connect(addr: &str, password: Option<&str>) -> Result<TcpStream, BenchError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| BenchError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    stream.set_nodelay(true).map_err(|source| BenchError::Io {
        addr: addr.to_owned(),
        source,
    })?;
    if let Some(password) = password {
        let mut buf = BytesMut::new();
        Command::Auth {
            username: None,
            password,
        }
        .encode(&mut buf);
        let (read, mut write) = stream.split();
        write
            .write_all(&buf)
            .await
            .map_err(|source| BenchError::Io {
                addr: addr.to_owned(),
                source,
            })?;
        let mut reader = ReplyReader::new(read, addr);
        match reader.next().await? {
            Frame::Simple(_) => {}
            Frame::Error(message) => {
                return Err(BenchError::Auth {
                    addr: addr.to_owned(),
                    message: String::from_utf8_lossy(&message).into_owned(),
                });
            }
            other => {
                return Err(BenchError::Auth {
                    addr: addr.to_owned(),
                    message: format!("unexpected reply {other:?}"),
                });
            }
        }
    }
    Ok(stream)
}

/// Reads whole RESP replies from a stream.
struct ReplyReader<'a, R> {
    read: R,
    buf: BytesMut,
    limits: Limits,
    addr: &'a str,
}

impl<'a, R: tokio::io::AsyncRead + Unpin> ReplyReader<'a, R> {
    fn new(read: R, addr: &'a str) -> Self {
        ReplyReader {
            read,
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            limits: Limits::default(),
            addr,
        }
    }

    /// The next reply; an error if the connection closes, fails, sends garbage, or is
    /// silent for [`REPLY_TIMEOUT`].
    async fn next(&mut self) -> Result<Frame, BenchError> {
        loop {
            match parse_frame(&self.buf, &self.limits) {
                Ok(Some((frame, used))) => {
                    self.buf.advance(used);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(BenchError::Protocol {
                        addr: self.addr.to_owned(),
                        source,
                    });
                }
            }
            self.buf.reserve(READ_CHUNK_BYTES);
            let read = tokio::time::timeout(REPLY_TIMEOUT, self.read.read_buf(&mut self.buf))
                .await
                .map_err(|_| BenchError::Timeout {
                    addr: self.addr.to_owned(),
                    after: REPLY_TIMEOUT,
                })?
                .map_err(|source| BenchError::Io {
                    addr: self.addr.to_owned(),
                    source,
                })?;
            if read == 0 {
                return Err(BenchError::Closed {
                    addr: self.addr.to_owned(),
                });
            }
        }
    }
}

/// One request on its way: what the reader needs to account for its reply.
#[derive(Debug)]
struct InFlight {
    kind: OpKind,
    /// Send time (closed loop) or intended send time (open loop).
    start: Instant,
    /// Open loop: when it was actually encoded for sending (at or after `start`).
    sent: Option<Instant>,
    /// Whether it falls in the measured window.
    measured: bool,
}

/// What one connection measured.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) stats: Stats,
    /// When the last measured reply arrived.
    pub(crate) last_reply: Option<Instant>,
    /// Replies to warm-up requests (not measured).
    pub(crate) warmup_replies: u64,
}

/// Shared between the connections of a run.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Closed loop, `--requests` mode: measured requests not yet claimed.
    pub(crate) tickets: AtomicU64,
    /// Measured replies so far (for the progress bar).
    pub(crate) completed: AtomicU64,
}

/// Runs connection `index` on `stream` until the plan's stop condition; `start` is the
/// common start of the run (the warm-up begins there).
pub(crate) async fn run_connection(
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    index: u32,
    stream: TcpStream,
    start: Instant,
    pacer: Option<Arc<Pacer>>,
) -> Result<Outcome, BenchError> {
    let addr = plan.target(index).to_owned();
    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let permits = Semaphore::new(plan.pipeline as usize);
    let writer = write_requests(
        &plan,
        &shared,
        index,
        write,
        start,
        pacer.as_deref(),
        &permits,
        tx,
        &addr,
    );
    let reader = read_replies(&shared, read, rx, &permits, &addr, plan.transaction);
    let ((), outcome) = tokio::try_join!(writer, reader)?;
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)]
async fn write_requests(
    plan: &Plan,
    shared: &Shared,
    index: u32,
    mut write: OwnedWriteHalf,
    start: Instant,
    pacer: Option<&Pacer>,
    permits: &Semaphore,
    tx: mpsc::UnboundedSender<InFlight>,
    addr: &str,
) -> Result<(), BenchError> {
    let io_error = |source| BenchError::Io {
        addr: addr.to_owned(),
        source,
    };
    let mut rng = plan.rng(index, 0);
    let measure_start = start + plan.warmup;
    let schedule = plan
        .rate
        .map(|rate| Schedule::new(rate, u64::from(plan.connections), u64::from(index)));
    let mut buf = BytesMut::with_capacity(WRITE_BATCH_BYTES);
    let mut key = Vec::with_capacity(plan.key_prefix.len() + 20);
    // The keys of one MGET, reused from request to request.
    let mut mget_keys: Vec<Vec<u8>> = Vec::new();
    let mut k = 0u64;
    tokio::time::sleep_until(start).await;
    loop {
        // When is this request due, and does it count?
        let due = match schedule {
            Some(schedule) => {
                let global = schedule.global_index(k);
                if global >= plan.open_loop_end(schedule) {
                    break;
                }
                let pacer = pacer.expect("open loop has a pacer");
                if !pacer.try_take(index as usize) {
                    flush(&mut write, &mut buf).await.map_err(io_error)?;
                    pacer.take(index as usize).await;
                }
                let offset = schedule.offset_of_global(global);
                Some((start + offset, offset >= plan.warmup))
            }
            None => None,
        };
        k += 1;
        // A free slot in the pipeline.
        match permits.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(_) => {
                flush(&mut write, &mut buf).await.map_err(io_error)?;
                permits
                    .acquire()
                    .await
                    .expect("the semaphore is never closed")
                    .forget();
            }
        }
        let (start_at, measured) = match due {
            Some(due) => due,
            None => {
                let now = Instant::now();
                if let Stop::After(duration) = plan.stop
                    && now >= measure_start + duration
                {
                    break;
                }
                let measured = now >= measure_start;
                if measured
                    && matches!(plan.stop, Stop::Requests(_))
                    && shared
                        .tickets
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(1))
                        .is_err()
                {
                    break;
                }
                (now, measured)
            }
        };
        let kind = plan.mix.sample(&mut rng);
        if plan.transaction {
            buf.extend_from_slice(MULTI);
        }
        match kind {
            OpKind::Get | OpKind::Del => {
                let rank = plan.sampler.sample(&mut rng);
                plan.write_key(plan.permutation.apply(rank), &mut key);
                let command = if kind == OpKind::Get {
                    Command::Get { key: &key }
                } else {
                    Command::Del { keys: &[&key] }
                };
                command.encode(&mut buf);
            }
            OpKind::Mget => {
                mget_keys.resize_with(plan.mget as usize, Vec::new);
                for key in &mut mget_keys {
                    let rank = plan.sampler.sample(&mut rng);
                    plan.write_key(plan.permutation.apply(rank), key);
                }
                let keys: Vec<&[u8]> = mget_keys.iter().map(Vec::as_slice).collect();
                Command::MGet { keys: &keys }.encode(&mut buf);
            }
            OpKind::Set => {
                let rank = plan.sampler.sample(&mut rng);
                plan.write_key(plan.permutation.apply(rank), &mut key);
                let len = plan.value_size.sample(&mut rng);
                plan.encode_set(&mut buf, &key, len);
            }
        }
        if plan.transaction {
            buf.extend_from_slice(EXEC);
        }
        // The reader only goes away on error, and then try_join! drops this future too.
        let _ = tx.send(InFlight {
            kind,
            start: start_at,
            sent: schedule.map(|_| Instant::now()),
            measured,
        });
        if buf.len() >= WRITE_BATCH_BYTES {
            flush(&mut write, &mut buf).await.map_err(io_error)?;
        }
    }
    flush(&mut write, &mut buf).await.map_err(io_error)?;
    Ok(())
}

async fn flush(write: &mut OwnedWriteHalf, buf: &mut BytesMut) -> std::io::Result<()> {
    if !buf.is_empty() {
        write.write_all(buf).await?;
        buf.clear();
    }
    Ok(())
}

async fn read_replies(
    shared: &Shared,
    read: OwnedReadHalf,
    mut rx: mpsc::UnboundedReceiver<InFlight>,
    permits: &Semaphore,
    addr: &str,
    transaction: bool,
) -> Result<Outcome, BenchError> {
    let mut reader = ReplyReader::new(read, addr);
    let mut outcome = Outcome::default();
    while let Some(request) = rx.recv().await {
        let frame = match transaction {
            false => reader.next().await?,
            true => transaction_reply(&mut reader).await?,
        };
        let now = Instant::now();
        permits.add_permits(1);
        if !request.measured {
            outcome.warmup_replies += 1;
            continue;
        }
        let latency = now.saturating_duration_since(request.start);
        if let Some(sent) = request.sent {
            outcome
                .stats
                .record_send_lag(sent.saturating_duration_since(request.start));
        }
        let op = outcome.stats.op_mut(request.kind);
        match (request.kind, frame) {
            (_, Frame::Error(_)) => op.record_error(),
            (OpKind::Get, Frame::Bulk(_)) => {
                op.hits += 1;
                op.record(latency);
            }
            (OpKind::Get, Frame::Null) => {
                op.misses += 1;
                op.record(latency);
            }
            (OpKind::Mget, Frame::Array(items)) => {
                for item in &items {
                    match item {
                        Frame::Bulk(_) => op.hits += 1,
                        _ => op.misses += 1,
                    }
                }
                op.record(latency);
            }
            (OpKind::Set, Frame::Simple(_)) | (OpKind::Del, Frame::Integer(_)) => {
                op.record(latency);
            }
            // A reply of the wrong type: the server does not implement the command as
            // Redis does. Count it as an error rather than guess.
            _ => op.record_error(),
        }
        outcome.last_reply = Some(now);
        shared.completed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(outcome)
}

/// MULTI, as it goes on the wire.
const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
/// EXEC, as it goes on the wire.
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";

/// The replies to MULTI, the queued command and EXEC: the command's own reply from
/// EXEC's array, or the error that ended the transaction.
async fn transaction_reply<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut ReplyReader<'_, R>,
) -> Result<Frame, BenchError> {
    let multi = reader.next().await?;
    let queued = reader.next().await?;
    let exec = reader.next().await?;
    Ok(match (multi, queued, exec) {
        (Frame::Simple(_), Frame::Simple(_), Frame::Array(mut replies)) if replies.len() == 1 => {
            replies.pop().expect("one reply")
        }
        (Frame::Error(error), _, _) | (_, Frame::Error(error), _) | (_, _, Frame::Error(error)) => {
            Frame::Error(error)
        }
        _ => Frame::Error(Bytes::from_static(b"ERR unexpected transaction replies")),
    })
}

/// Writes every key id `index, index + connections, ...` below `keys` once, in batches of
/// [`PRELOAD_BATCH`] SETs per round trip. Returns (keys written, error replies, first
/// error text); `written` is bumped as batches complete, for the progress bar.
pub(crate) async fn preload(
    plan: &Plan,
    index: u32,
    mut stream: TcpStream,
    written: &AtomicU64,
) -> Result<(u64, Option<String>), BenchError> {
    let addr = plan.target(index);
    let mut rng = plan.rng(index, 1);
    let (read, mut write) = stream.split();
    let mut reader = ReplyReader::new(read, addr);
    let mut buf = BytesMut::new();
    let mut key = Vec::new();
    let mut errors = 0u64;
    let mut first_error = None;
    let stride = u64::from(plan.connections);
    let mut id = u64::from(index);
    while id < plan.keys {
        let mut batch = 0u64;
        while batch < PRELOAD_BATCH && id < plan.keys {
            plan.write_key(id, &mut key);
            let len = plan.value_size.sample(&mut rng);
            plan.encode_set(&mut buf, &key, len);
            batch += 1;
            id += stride;
        }
        write
            .write_all(&buf)
            .await
            .map_err(|source| BenchError::Io {
                addr: addr.to_owned(),
                source,
            })?;
        buf.clear();
        for _ in 0..batch {
            if let Frame::Error(message) = reader.next().await? {
                errors += 1;
                first_error.get_or_insert_with(|| String::from_utf8_lossy(&message).into_owned());
            }
        }
        written.fetch_add(batch, Ordering::Relaxed);
    }
    Ok((errors, first_error))
}

/// Random printable bytes for values.
pub(crate) fn payload(len: usize, seed: u64) -> Bytes {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED);
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect::<Vec<u8>>()
        .into()
}
