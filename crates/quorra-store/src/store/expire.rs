//! The EXPIRE family (EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT with NX, XX, GT, LT) and
//! PERSIST: changing a live key's deadline, with Redis's rules.

use super::Store;
use super::deadline::{absolute_ms, already_due};
use crate::entry::{AccessKind, ExpireFlags};
use crate::error::StoreError;

impl Store {
    /// EXPIRE key seconds with NX/XX/GT/LT. See [`Store::pexpireat`].
    pub fn expire(&self, key: &[u8], seconds: i64, flags: ExpireFlags) -> Result<bool, StoreError> {
        let now = self.now();
        let at = absolute_ms(seconds, 1000, Some(now))
            .ok_or(StoreError::InvalidExpireTime { command: "expire" })?;
        self.expire_generic(key, at, flags, now)
    }

    /// PEXPIRE key milliseconds. See [`Store::pexpireat`].
    pub fn pexpire(&self, key: &[u8], ms: i64, flags: ExpireFlags) -> Result<bool, StoreError> {
        let now = self.now();
        let at = absolute_ms(ms, 1, Some(now))
            .ok_or(StoreError::InvalidExpireTime { command: "pexpire" })?;
        self.expire_generic(key, at, flags, now)
    }

    /// EXPIREAT key unix-seconds. See [`Store::pexpireat`].
    pub fn expireat(
        &self,
        key: &[u8],
        unix_seconds: i64,
        flags: ExpireFlags,
    ) -> Result<bool, StoreError> {
        let at = absolute_ms(unix_seconds, 1000, None).ok_or(StoreError::InvalidExpireTime {
            command: "expireat",
        })?;
        self.expire_generic(key, at, flags, self.now())
    }

    /// PEXPIREAT key unix-ms with Redis's rules: false when the key is missing or a
    /// condition fails (NX: has a TTL; XX: has none; GT: new ≤ current or no TTL, since
    /// no TTL counts as infinite; LT: new ≥ current with a TTL); a deadline at or before
    /// now deletes the key (and answers true).
    pub fn pexpireat(
        &self,
        key: &[u8],
        unix_ms: i64,
        flags: ExpireFlags,
    ) -> Result<bool, StoreError> {
        self.expire_generic(key, unix_ms, flags, self.now())
    }

    fn expire_generic(
        &self,
        key: &[u8],
        at: i64,
        flags: ExpireFlags,
        now: u64,
    ) -> Result<bool, StoreError> {
        if (flags.nx && (flags.xx || flags.gt || flags.lt)) || (flags.gt && flags.lt) {
            return Err(StoreError::IncompatibleExpireFlags);
        }
        let (h, s) = self.locate(key, AccessKind::Write);
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        let Some(i) = self.find(&mut sh, cell, h, key, || now).live else {
            return Ok(false);
        };
        let current = sh.deadline(i).map(|c| i64::try_from(c).unwrap_or(i64::MAX));
        if flags.nx && current.is_some() {
            return Ok(false);
        }
        if flags.xx && current.is_none() {
            return Ok(false);
        }
        if flags.gt && current.is_none_or(|c| at <= c) {
            return Ok(false);
        }
        if flags.lt && current.is_some_and(|c| at >= c) {
            return Ok(false);
        }
        if already_due(at, now) {
            self.delete_slot(&mut sh, cell, i, now);
            return Ok(true);
        }
        sh.set_deadline(i, Some(at as u64));
        sh.set_version(i, self.hlc.next(now));
        sh.touch(i);
        Self::sync_stats(&sh, cell);
        Ok(true)
    }

    /// PERSIST: removes the TTL; whether there was one.
    pub fn persist(&self, key: &[u8]) -> bool {
        let (h, s) = self.locate(key, AccessKind::Write);
        let now = self.now();
        let cell = &self.cells[s];
        let mut sh = cell.shard.lock();
        match self.find(&mut sh, cell, h, key, || now).live {
            Some(i) if sh.deadline(i).is_some() => {
                sh.set_deadline(i, None);
                sh.set_version(i, self.hlc.next(now));
                Self::sync_stats(&sh, cell);
                true
            }
            _ => false,
        }
    }
}
