//! Many threads on one store; invariants checked afterwards.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quorra_store::{ExpireFlags, MaxmemoryPolicy, SetExpiry, SetOptions, StoreConfig};

#[test]
fn hundred_threads_mixed_operations_keep_invariants() {
    const THREADS: u64 = 100;
    const OPS: u64 = 1_500;
    let limit = 64 * 1024;
    let (s, clock) = common::store_with(StoreConfig {
        shards: 16,
        maxmemory: limit,
        policy: MaxmemoryPolicy::AllKeysLru,
        tombstone_grace_ms: 500,
        ..StoreConfig::default()
    });
    let s = Arc::new(s);
    let gets = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (s, clock, gets) = (Arc::clone(&s), clock.clone(), Arc::clone(&gets));
            std::thread::spawn(move || {
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..OPS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = format!("k{}", x % 500);
                    let k2 = format!("k{}", (x >> 20) % 500);
                    let n = ((x >> 32) % 400) as usize;
                    match x % 13 {
                        0..=3 => {
                            s.get(k.as_bytes());
                            gets.fetch_add(1, Ordering::Relaxed);
                        }
                        4..=6 => {
                            let expiry = if x % 3 == 0 {
                                SetExpiry::Px(50)
                            } else {
                                SetExpiry::None
                            };
                            s.set(
                                k.as_bytes(),
                                &vec![b'v'; n],
                                SetOptions {
                                    expiry,
                                    ..Default::default()
                                },
                            )
                            .unwrap();
                        }
                        7 => {
                            s.del(&[k.as_bytes()]);
                        }
                        8 => {
                            let _ = s.append(k.as_bytes(), &vec![b'a'; n / 4]);
                        }
                        9 => {
                            let _ = s.incr(k2.as_bytes());
                        }
                        10 => {
                            let _ = s.rename(k.as_bytes(), k2.as_bytes());
                        }
                        11 => {
                            s.mset(&[(k.as_bytes(), &b"m"[..]), (k2.as_bytes(), &b"n"[..])])
                                .unwrap();
                        }
                        _ => {
                            if t == 0 {
                                clock.advance(std::time::Duration::from_millis(10));
                                s.tick(quorra_store::Clock::now_ms(&clock));
                            } else {
                                let _ = s.pexpire(k.as_bytes(), 100, ExpireFlags::NONE);
                            }
                        }
                    }
                    assert!(s.used_memory() <= limit);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    s.check_invariants().unwrap();
    let st = s.stats();
    assert!(st.accounted_bytes <= limit);
    assert_eq!(st.total.used_bytes, st.accounted_bytes);
    assert!(gets.load(Ordering::Relaxed) > 0);
    assert_eq!(st.total.entries, s.dbsize(0));
    assert!(
        st.total.evictions > 0,
        "the limit was small enough to force eviction"
    );
    let shard_sum: u64 = st.shards.iter().map(|x| x.entries).sum();
    assert_eq!(shard_sum, st.total.entries);
}
