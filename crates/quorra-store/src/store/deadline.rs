//! TTL options as absolute deadlines, with Redis's rules, in one place: a relative
//! amount is added to now, an absolute one taken as is, in its unit; SET's and GETEX's
//! options must be > 0; arithmetic that overflows is an invalid expire time. A deadline
//! at or before now, given to a write, deletes the key (Redis's `checkAlreadyExpired`);
//! a stored deadline is past only once now is beyond it (the store's one expiry rule,
//! [`expired`](crate::entry::expired)).

use quorra_resp::command::{GetExExpiry, SetExpiry};

use crate::error::StoreError;

/// A time given as an option: an amount in a unit, relative to now or absolute.
#[derive(Clone, Copy)]
pub(super) struct TimeOption {
    amount: i64,
    unit_ms: i64,
    relative: bool,
}

impl TimeOption {
    /// SET's EX, PX, EXAT or PXAT; `None` for no option or KEEPTTL.
    pub(super) fn of_set(expiry: SetExpiry) -> Option<TimeOption> {
        let (amount, unit_ms, relative) = match expiry {
            SetExpiry::None | SetExpiry::KeepTtl => return None,
            SetExpiry::Ex(t) => (t, 1000, true),
            SetExpiry::Px(t) => (t, 1, true),
            SetExpiry::ExAt(t) => (t, 1000, false),
            SetExpiry::PxAt(t) => (t, 1, false),
        };
        Some(TimeOption {
            amount,
            unit_ms,
            relative,
        })
    }

    /// GETEX's EX, PX, EXAT or PXAT; `None` for no option or PERSIST.
    pub(super) fn of_getex(expiry: GetExExpiry) -> Option<TimeOption> {
        let (amount, unit_ms, relative) = match expiry {
            GetExExpiry::Keep | GetExExpiry::Persist => return None,
            GetExExpiry::Ex(t) => (t, 1000, true),
            GetExExpiry::Px(t) => (t, 1, true),
            GetExExpiry::ExAt(t) => (t, 1000, false),
            GetExExpiry::PxAt(t) => (t, 1, false),
        };
        Some(TimeOption {
            amount,
            unit_ms,
            relative,
        })
    }

    /// The absolute deadline, ms, for `command` at `now`: the amount must be > 0.
    pub(super) fn deadline(self, now: u64, command: &'static str) -> Result<i64, StoreError> {
        let invalid = StoreError::InvalidExpireTime { command };
        if self.amount <= 0 {
            return Err(invalid);
        }
        absolute_ms(self.amount, self.unit_ms, self.relative.then_some(now)).ok_or(invalid)
    }
}

/// The absolute deadline, ms, of `amount` units of `unit_ms`, added to `base_ms` if
/// given (a relative time); `None` on overflow. May be ≤ 0 (in the past).
pub(super) fn absolute_ms(amount: i64, unit_ms: i64, base_ms: Option<u64>) -> Option<i64> {
    let ms = amount.checked_mul(unit_ms)?;
    match base_ms {
        Some(now) => ms.checked_add(i64::try_from(now).ok()?),
        None => Some(ms),
    }
}

/// Whether a deadline given to a write is already due at `now`: the key is deleted
/// instead of written.
pub(super) fn already_due(at: i64, now: u64) -> bool {
    at <= i64::try_from(now).unwrap_or(i64::MAX)
}
