//! Which per-thread shard this thread counts in: the answer, query and guard counters are
//! split into [`SHARDS`] shards so that the UDP workers never contend on one cache line.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Shards of the per-thread counters.
pub const SHARDS: usize = 16;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Shards given to threads that never called [`set_counter_shard`] (the tokio runtime's
/// threads: TCP and the hickory UDP engine), one each in turn in the upper half.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// Make this thread count in its own shard (UDP workers call it once).
pub fn set_counter_shard(i: usize) {
    SHARD.with(|s| s.set(i % SHARDS));
}

/// This thread's counter shard, `0..SHARDS`: the one set by [`set_counter_shard`], else one
/// assigned on first use, so that threads rarely share a shard.
#[inline]
pub fn counter_shard() -> usize {
    SHARD.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let n = SHARDS / 2 + NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % (SHARDS / 2);
        s.set(n);
        n
    })
}
