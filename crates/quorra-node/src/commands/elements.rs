//! What the hash, set and sorted-set commands share: reading a collection into the
//! reply, the random picks of HRANDFIELD / SRANDMEMBER / ZRANDMEMBER / SPOP, the
//! element scans (HSCAN, SSCAN, ZSCAN) and the growth bound an update reserves.

use bytes::Bytes;
use quorra_store::collection::{CollectionType, Element};
use quorra_store::glob::glob_match;

use super::{CommandError, Ctx, int_arg, is};

/// The most elements a negative count may ask a random pick for (the reply repeats
/// elements, so the collection's size does not bound it), as Redis bounds it by its
/// reply buffer limits.
pub const MAX_RANDOM_COUNT: i64 = 1 << 24;

/// Reads the collection of type `C` at `key`, counting a keyspace hit or miss; `f`
/// writes the reply into the output buffer for a present key, `missing` for a missing
/// one. `WRONGTYPE` for a key of another type.
pub fn read<C: CollectionType>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    f: impl FnOnce(&C, u64, &mut bytes::BytesMut, quorra_resp::Protocol),
    missing: impl FnOnce(&mut Ctx<'_>),
) -> Result<(), CommandError> {
    let protocol = ctx.protocol();
    let out = &mut *ctx.out;
    let found = ctx
        .shared
        .store
        .read_collection::<C, _>(key, |c, now| f(c, now, out, protocol))?;
    ctx.lookups.found(found.is_some());
    if found.is_none() {
        missing(ctx);
    }
    Ok(())
}

/// Runs a write on the collection of type `C` at `key` (created if `create`); `f`
/// returns its result and whether it changed the collection. `None` when the key is
/// missing and not created. See [`quorra_store::Store::update_collection`].
pub fn update<C: CollectionType, R>(
    ctx: &Ctx<'_>,
    key: &[u8],
    create: bool,
    growth: u64,
    f: impl FnOnce(&mut C, u64) -> (R, bool),
) -> Result<Option<R>, CommandError> {
    Ok(ctx
        .shared
        .store
        .update_collection::<C, R>(key, create, growth, f)?)
}

/// Raises `event` of `class` on `key`, and `del` if the write emptied the collection
/// (its key is then gone), as Redis does.
pub fn notify_write(ctx: &Ctx<'_>, class: u32, key: &[u8], event: &str) {
    ctx.notify(class, event, key);
    if ctx.shared.store.key_type(key) == quorra_store::KeyType::None {
        ctx.notify(crate::notifications::GENERIC, "del", key);
    }
}

/// `SREM` / `ZREM key member [member ...]`: removes the members with `remove`, raises
/// `event` of `class`, answers how many went.
pub fn remove<C: CollectionType>(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    class: u32,
    event: &str,
    remove: fn(&mut C, &[u8]) -> bool,
) -> Result<(), CommandError> {
    let removed = update::<C, _>(ctx, &args[1], false, 0, |collection, _| {
        let removed = args[2..].iter().filter(|m| remove(collection, m)).count();
        (removed as i64, removed > 0)
    })?
    .unwrap_or(0);
    if removed > 0 {
        notify_write(ctx, class, &args[1], event);
    }
    ctx.int(removed);
    Ok(())
}

/// The accounted bytes new elements can add at most: each named element with its value
/// (and room for an expiry), for an update's reservation.
pub fn growth<'a>(elements: impl Iterator<Item = (&'a Bytes, usize)>) -> u64 {
    elements
        .map(|(name, value_len)| Element::accounted_for(name.len(), value_len, true))
        .sum()
}

/// The optional count of the pops (LPOP, RPOP, ZPOPMIN, ZPOPMAX, SPOP): `args[2]`, with
/// nothing after it; `None` without one, Redis's error for a negative one.
pub fn pop_count(args: &[Bytes]) -> Result<Option<usize>, CommandError> {
    if args.len() > 3 {
        return Err(CommandError::syntax());
    }
    let Some(count) = args.get(2) else {
        return Ok(None);
    };
    match int_arg(count)? {
        count if count < 0 => Err(CommandError::new(
            "ERR value is out of range, must be positive",
        )),
        count => Ok(Some(count as usize)),
    }
}

/// How many elements a random pick returns, and whether they may repeat, from its
/// optional count argument: none (one element, not an array), positive (distinct, up
/// to the size), negative (that many, repeats allowed).
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    /// No count: one element or null.
    One,
    /// Distinct elements.
    Distinct(usize),
    /// Elements that may repeat.
    Repeating(usize),
}

impl Pick {
    /// Parses a random pick's count argument.
    pub fn parse(count: Option<&Bytes>) -> Result<Pick, CommandError> {
        let Some(count) = count else {
            return Ok(Pick::One);
        };
        let count = int_arg(count)?;
        if count < -MAX_RANDOM_COUNT {
            return Err(CommandError::new("ERR value is out of range"));
        }
        Ok(match count >= 0 {
            true => Pick::Distinct(count as usize),
            false => Pick::Repeating(count.unsigned_abs() as usize),
        })
    }

    /// The elements picked: without a count, the one `random` gives (O(1): see
    /// [`quorra_store::collection::table::Table::random`]); with a count, drawn from
    /// `all()`'s list (O(size), as the reply may be).
    pub fn choose<T: Copy>(
        self,
        random: impl FnOnce(&mut dyn FnMut() -> u64) -> Option<T>,
        all: impl FnOnce() -> Vec<T>,
    ) -> Vec<T> {
        if let Pick::One = self {
            return random(&mut rand::random::<u64>).into_iter().collect();
        }
        let all = all();
        self.positions(all.len())
            .into_iter()
            .map(|at| all[at])
            .collect()
    }

    /// Positions to take from a collection of `len` elements.
    fn positions(self, len: usize) -> Vec<usize> {
        if len == 0 {
            return Vec::new();
        }
        match self {
            Pick::One => vec![rand::random_range(0..len)],
            Pick::Repeating(n) => (0..n).map(|_| rand::random_range(0..len)).collect(),
            Pick::Distinct(n) if n >= len => (0..len).collect(),
            Pick::Distinct(n) => {
                let mut chosen = rand::seq::index::sample(&mut rand::rng(), len, n).into_vec();
                chosen.sort_unstable();
                chosen
            }
        }
    }
}

/// HSCAN / SSCAN / ZSCAN options: `cursor [MATCH pattern] [COUNT count] [NOVALUES]`.
pub struct ScanOptions {
    /// Only elements whose name matches.
    pub pattern: Option<Bytes>,
    /// HSCAN's NOVALUES: fields only.
    pub no_values: bool,
    /// A cursor quorra never gave out (its scans end in one reply): nothing is returned.
    unknown_cursor: bool,
}

impl ScanOptions {
    /// Parses the cursor and options (`args` from the cursor on). quorra returns a
    /// collection's whole scan in one reply, with cursor 0 (what Redis does for its
    /// small encodings; COUNT is a hint, as in Redis), so the cursor must be 0 — any
    /// other is one quorra never gave out.
    pub fn parse(args: &[Bytes], allow_no_values: bool) -> Result<ScanOptions, CommandError> {
        let cursor = std::str::from_utf8(&args[0])
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| CommandError::new("ERR invalid cursor"))?;
        let mut options = ScanOptions {
            pattern: None,
            no_values: false,
            unknown_cursor: false,
        };
        let mut rest = args[1..].iter();
        while let Some(option) = rest.next() {
            if allow_no_values && is(option, "NOVALUES") {
                options.no_values = true;
                continue;
            }
            let value = rest.next().ok_or_else(CommandError::syntax)?;
            if is(option, "MATCH") {
                options.pattern = Some(value.clone());
            } else if is(option, "COUNT") {
                if int_arg(value)? < 1 {
                    return Err(CommandError::syntax());
                }
            } else {
                return Err(CommandError::syntax());
            }
        }
        options.unknown_cursor = cursor != 0;
        Ok(options)
    }

    /// True if an element called `name` is returned.
    pub fn wants(&self, name: &[u8]) -> bool {
        !self.unknown_cursor
            && self
                .pattern
                .as_ref()
                .is_none_or(|pattern| glob_match(pattern, name))
    }
}
