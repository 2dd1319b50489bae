//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH, with Redis's replies and error
//! texts.
//!
//! After MULTI, [`super::run`] checks each command as it checks any (name, arity,
//! authentication) and then [`queue`]s it instead of running it: the client gets
//! `+QUEUED`, or the refusal, which marks the transaction so that EXEC answers
//! `EXECABORT` and runs nothing. MULTI, EXEC, DISCARD, WATCH, QUIT and RESET run at
//! once, as in Redis. SELECT is refused inside MULTI (a quorra difference): select the
//! database before it.
//!
//! EXEC ([`take_for_exec`], then the queued commands back to back) runs inside the
//! store's exclusive section: no other command of this node, and no replica read or
//! apply, runs between two of its commands or sees part of them. This handler runs a
//! transaction whose writes have no copies to make; with copies,
//! [`crate::transaction`] runs it at its keys' primary and copies its writes as one
//! batch.
//!
//! WATCH records each key's version — every write stamps a new one, whichever node it
//! came through — or that the key has no entry. EXEC runs only if every watched key
//! still has what was recorded: a write, a delete, an expiry or an eviction since the
//! WATCH makes it answer a null array. (A key that was missing, then created and gone
//! again, reads as unchanged; Redis would abort there.)

use bytes::Bytes;
use quorra_resp::encode;

use super::{CommandError, CommandId, Ctx, keys_of, lookup, run};
use crate::accounting::Outcome;
use crate::session::{Session, Transaction, Watched};
use crate::shared::Shared;

/// EXEC's answer after a command was refused while queuing.
pub const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// `MULTI`
pub fn multi(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Result<(), CommandError> {
    if ctx.session.transaction.is_some() {
        return Err(CommandError::new("ERR MULTI calls can not be nested"));
    }
    ctx.session.transaction = Some(Transaction::default());
    ctx.ok();
    Ok(())
}

/// `DISCARD`
pub fn discard(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Result<(), CommandError> {
    if ctx.session.transaction.take().is_none() {
        return Err(CommandError::new("ERR DISCARD without MULTI"));
    }
    ctx.session.watched.clear();
    ctx.ok();
    Ok(())
}

/// `UNWATCH`
pub fn unwatch(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Result<(), CommandError> {
    ctx.session.watched.clear();
    ctx.ok();
    Ok(())
}

/// `WATCH key [key ...]`, for keys whose primary is this node (or on a single node):
/// records each key's version here.
pub fn watch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Result<(), CommandError> {
    let versions: Vec<_> = args[1..]
        .iter()
        .map(|key| {
            ctx.shared
                .store
                .get_versioned(key)
                .map(|entry| entry.version)
        })
        .collect();
    record_watch(ctx.shared, ctx.session, &args[1..], versions)?;
    ctx.ok();
    Ok(())
}

/// Records that `keys` had `versions` (`None`: no entry) for the session's WATCH: the
/// refusal inside MULTI, or past `max-transaction-commands` watched keys.
pub fn record_watch(
    shared: &Shared,
    session: &mut Session,
    keys: &[Bytes],
    versions: Vec<Option<quorra_store::Version>>,
) -> Result<(), CommandError> {
    if session.transaction.is_some() {
        return Err(CommandError::new("ERR WATCH inside MULTI is not allowed"));
    }
    let limit = shared.config.max_transaction_commands;
    if session.watched.len() + keys.len() > limit {
        return Err(CommandError::new(format!(
            "ERR too many watched keys: at most {limit} per connection (max-transaction-commands)"
        )));
    }
    session
        .watched
        .extend(keys.iter().zip(versions).map(|(key, version)| Watched {
            key: key.clone(),
            version,
        }));
    Ok(())
}

/// `EXEC`, for a transaction whose writes have no copies to make (a single node, or a
/// cluster with one copy per key, at the keys' owner).
pub fn exec(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Result<(), CommandError> {
    if ctx.session.transaction.is_none() {
        return Err(no_multi());
    }
    let shared = ctx.shared;
    let _section = super::enter_exclusive(shared)?;
    let queued = match take_for_exec(shared, ctx.session) {
        Ok(queued) => queued,
        Err(refusal) => return refusal.answer(ctx.out, ctx.session.protocol),
    };
    ctx.array(queued.len());
    let (out, lookups) = (&mut *ctx.out, &mut ctx.lookups);
    ctx.session.inside_exclusive_section(|session| {
        for args in &queued {
            lookups.add(run(shared, session, out, args).lookups);
        }
    });
    Ok(())
}

/// `ERR EXEC without MULTI`.
pub fn no_multi() -> CommandError {
    CommandError::new("ERR EXEC without MULTI")
}

/// Why an EXEC runs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecRefusal {
    /// There was no MULTI.
    NoMulti,
    /// A command was refused while queuing.
    Aborted,
    /// A watched key changed.
    WatchedKeyChanged,
}

impl ExecRefusal {
    /// Writes EXEC's answer: an error, or a null array for a watched key that changed.
    pub fn answer(
        self,
        out: &mut bytes::BytesMut,
        protocol: quorra_resp::Protocol,
    ) -> Result<(), CommandError> {
        match self {
            ExecRefusal::NoMulti => Err(no_multi()),
            ExecRefusal::Aborted => Err(CommandError::new(EXECABORT)),
            ExecRefusal::WatchedKeyChanged => {
                encode::null_array(out, protocol);
                Ok(())
            }
        }
    }
}

/// Ends the session's transaction and its watch for EXEC: the queued commands if they
/// may run now. Call inside the store's exclusive section, so that nothing can change
/// a watched key between this check and the commands.
///
/// A write of a namespace key in the transaction overtakes a load of that key in
/// flight and forgets a cached "missing", as a write outside a transaction does, so
/// that a value loaded before it cannot land after it.
pub fn take_for_exec(
    shared: &Shared,
    session: &mut Session,
) -> Result<Vec<Vec<Bytes>>, ExecRefusal> {
    let transaction = session.transaction.take().ok_or(ExecRefusal::NoMulti)?;
    let watched = std::mem::take(&mut session.watched);
    if transaction.refused {
        return Err(ExecRefusal::Aborted);
    }
    let changed = watched.iter().any(|watched| {
        shared
            .store
            .get_versioned(&watched.key)
            .map(|entry| entry.version)
            != watched.version
    });
    if changed {
        return Err(ExecRefusal::WatchedKeyChanged);
    }
    if let Some(origins) = &shared.origins {
        let catalog = origins.catalog();
        for args in transaction.queued.iter().filter(|args| writes(args)) {
            for key in keys_of(args).filter(|key| catalog.namespace_of(key).is_some()) {
                origins.flights.overtake(key);
                origins.negative.forget(key);
            }
        }
    }
    Ok(transaction.queued)
}

/// True if the command `args` writes (the table's `write` flag).
fn writes(args: &[Bytes]) -> bool {
    lookup(&args[0]).is_some_and(|id| id.info().writes())
}

/// Queues the checked command `args` in the session's open transaction, answering
/// `+QUEUED`; or refuses it — past `max-transaction-commands` or
/// `client-query-buffer-limit`, or a write of a key whose namespace writes to its
/// origin (that write cannot wait for the origin inside the exclusive section) — and
/// marks the transaction refused.
pub fn queue(
    shared: &Shared,
    session: &mut Session,
    out: &mut bytes::BytesMut,
    args: &[Bytes],
) -> Outcome {
    match check_queued(shared, session, args) {
        Ok(()) => {
            let transaction = session.transaction.as_mut().expect("queued inside MULTI");
            transaction.bytes += args.iter().map(Bytes::len).sum::<usize>();
            transaction.queued.push(args.to_vec());
            encode::simple(out, "QUEUED");
            Outcome::Ok
        }
        Err(refusal) => {
            refuse(session);
            encode::error(out, &refusal.0);
            Outcome::Rejected
        }
    }
}

/// Marks the session's open transaction, if any, as refused: its EXEC will answer
/// `EXECABORT`.
pub fn refuse(session: &mut Session) {
    if let Some(transaction) = &mut session.transaction {
        transaction.refused = true;
    }
}

fn check_queued(shared: &Shared, session: &Session, args: &[Bytes]) -> Result<(), CommandError> {
    let transaction = session.transaction.as_ref().expect("queued inside MULTI");
    if lookup(&args[0]) == Some(CommandId::Select) {
        // The commands queued after it have been scoped to the database the session
        // had when they arrived ([`crate::databases`]).
        return Err(CommandError::new(
            "ERR SELECT inside MULTI is not supported: select the database before MULTI",
        ));
    }
    let limit = shared.config.max_transaction_commands;
    if transaction.queued.len() >= limit {
        return Err(CommandError::new(format!(
            "ERR transaction too long: at most {limit} queued commands (max-transaction-commands)"
        )));
    }
    let bytes = transaction.bytes + args.iter().map(Bytes::len).sum::<usize>();
    if bytes as u64 > shared.config.client_query_buffer_limit {
        return Err(CommandError::new(
            "ERR transaction too large: its commands exceed client-query-buffer-limit",
        ));
    }
    if let Some(origins) = shared.origins.as_ref().filter(|_| writes(args)) {
        let catalog = origins.catalog();
        for key in keys_of(args) {
            if let Some(namespace) = catalog.namespace_of(key) {
                let namespace = &catalog.namespaces()[namespace];
                if namespace.write != quorra_origin::WriteMode::None {
                    return Err(CommandError::new(format!(
                        "ERR namespace {} writes to its origin: its keys cannot be written \
                         inside a transaction",
                        namespace.name
                    )));
                }
            }
        }
    }
    Ok(())
}
