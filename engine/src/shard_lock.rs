//! A sharded reader-writer lock whose readers write only a cache line of their own thread.
//!
//! Why: every packet of an established flow reads its mapping, and almost never changes it
//! (what a packet changes, the idle timer and TCP flags, are atomics in the session). With
//! one lock word per shard (DashMap, or `std::sync::RwLock`) every packet writes that word,
//! and two worker threads translating different flows bounce it between their cores. Here a
//! reader marks the shard in its *slot*: one word in cache lines that only its thread
//! writes (a [`crate::Worker`] owns a slot). A writer marks the shard as being written,
//! then waits until no slot has it marked. Readers pay one atomic swap on their own line
//! (plus a plain store to leave); writers pay a mutex and a look at every active slot.
//!
//! The protocol is Dekker's: a reader stores its mark then loads the shard's `writing`
//! flag; a writer stores `writing` then loads the marks; all four are `SeqCst`, so at least
//! one of the two sees the other, and never both proceed. Threads without a slot of their
//! own (callers of `Nat::handle_packet`, the timer, the control plane) count themselves in
//! a reader counter in the shard's own cache line instead (as a DashMap shard lock would:
//! they contend per shard, not all on one line).
//!
//! Rules for callers (the table keeps them): a thread never takes a shard it already holds
//! (read or write) a second time, and a slot is used by one thread at a time (a `Worker`
//! is `&mut` for every packet).

#![allow(unsafe_code)]

use core::cell::{Cell, UnsafeCell};
use core::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};

use crossbeam_utils::{Backoff, CachePadded};
use parking_lot::{Mutex, MutexGuard};

/// Shards per table.
pub(crate) const SHARDS: usize = 64;
/// Reader slots per table: slot 0 means "none" (the shard's shared counter), the others are
/// owned by one worker each.
const SLOTS: usize = 64;
const SHARED: usize = 0;

thread_local! {
    /// The slot the current thread reads with (set by a worker around each packet).
    static CURRENT_SLOT: Cell<usize> = const { Cell::new(SHARED) };
}

/// Runs `f` with the current thread reading through `slot` (restored after, also when `f`
/// panics: a later caller on this thread must not use a slot it does not own).
#[inline]
pub(crate) fn with_slot<R>(slot: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        #[inline]
        fn drop(&mut self) {
            CURRENT_SLOT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT_SLOT.with(|c| c.replace(slot)));
    f()
}

struct Shard<T> {
    /// Set while a writer holds the shard or waits for its readers to leave.
    writing: AtomicBool,
    /// Readers without a slot of their own reading this shard now.
    shared_readers: AtomicU32,
    /// Serialises writers.
    writer: Mutex<()>,
    data: UnsafeCell<T>,
}

/// `SHARDS` values of `T`, each behind the lock described in the module doc.
pub(crate) struct ShardedLock<T> {
    shards: Box<[CachePadded<Shard<T>>]>,
    /// `marks[slot][shard]`: 256 bytes per slot, written only by that slot's thread (slot 0's
    /// are unused: its readers count in `Shard::shared_readers`).
    marks: Box<[CachePadded<[AtomicU32; SHARDS]>]>,
    /// Bit per slot in use (slot 0's bit always set, so it is never claimed); writers look at
    /// these slots only.
    active: AtomicU64,
}

// SAFETY: the data of a shard is reached only through the guards below: shared references
// while a mark is held and no writer proceeds, a unique reference while a writer holds the
// shard's mutex and no mark is held (module doc). So `T` is shared between threads as by
// `RwLock<T>`, which is `Sync` when `T: Send + Sync`.
unsafe impl<T: Send + Sync> Sync for ShardedLock<T> {}
// SAFETY: owning the lock is owning the `T`s.
unsafe impl<T: Send> Send for ShardedLock<T> {}

impl<T> ShardedLock<T> {
    pub(crate) fn new(mut make: impl FnMut() -> T) -> ShardedLock<T> {
        ShardedLock {
            shards: (0..SHARDS)
                .map(|_| {
                    CachePadded::new(Shard {
                        writing: AtomicBool::new(false),
                        shared_readers: AtomicU32::new(0),
                        writer: Mutex::new(()),
                        data: UnsafeCell::new(make()),
                    })
                })
                .collect(),
            marks: (0..SLOTS).map(|_| CachePadded::new(core::array::from_fn(|_| AtomicU32::new(0)))).collect(),
            active: AtomicU64::new(1 << SHARED),
        }
    }

    /// Takes a slot of its own for a worker thread; `None` when all are taken (the worker
    /// then reads as threads without a slot do).
    pub(crate) fn claim_slot(&self) -> Option<usize> {
        let mut active = self.active.load(Relaxed);
        loop {
            let free = (!active).trailing_zeros() as usize;
            if free >= SLOTS {
                return None;
            }
            match self.active.compare_exchange_weak(active, active | 1 << free, SeqCst, Relaxed) {
                Ok(_) => return Some(free),
                Err(now) => active = now,
            }
        }
    }

    /// Gives a slot back (its owner holds no shard).
    pub(crate) fn release_slot(&self, slot: usize) {
        debug_assert_ne!(slot, SHARED);
        self.active.fetch_and(!(1 << slot), SeqCst);
    }

    /// Reads shard `i`.
    #[inline(always)]
    pub(crate) fn read(&self, i: usize) -> ReadGuard<'_, T> {
        let slot = CURRENT_SLOT.with(Cell::get);
        let shard = &self.shards[i];
        let mark = self.mark(slot, i);
        loop {
            if slot == SHARED {
                mark.fetch_add(1, SeqCst);
            } else {
                mark.store(1, SeqCst);
            }
            if !shard.writing.load(SeqCst) {
                return ReadGuard { data: &shard.data, mark, shared: slot == SHARED };
            }
            unmark(mark, slot == SHARED);
            let backoff = Backoff::new();
            while shard.writing.load(Relaxed) {
                backoff.snooze();
            }
        }
    }

    /// Writes shard `i`.
    pub(crate) fn write(&self, i: usize) -> WriteGuard<'_, T> {
        let shard = &self.shards[i];
        let held = shard.writer.lock();
        shard.writing.store(true, SeqCst);
        let backoff = Backoff::new();
        while shard.shared_readers.load(SeqCst) != 0 {
            backoff.snooze();
        }
        let mut active = self.active.load(SeqCst) & !(1 << SHARED);
        while active != 0 {
            let slot = active.trailing_zeros() as usize;
            active &= active - 1;
            let backoff = Backoff::new();
            while self.marks[slot][i].load(SeqCst) != 0 {
                backoff.snooze();
            }
        }
        WriteGuard { shard, _held: held }
    }

    /// Where a reader of shard `i` through `slot` marks itself.
    #[inline(always)]
    fn mark(&self, slot: usize, i: usize) -> &AtomicU32 {
        if slot == SHARED {
            &self.shards[i].shared_readers
        } else {
            &self.marks[slot][i]
        }
    }
}

/// Undoes a reader's mark: the shard's shared counter, or a slot's own word.
#[inline]
fn unmark(mark: &AtomicU32, shared: bool) {
    if shared {
        mark.fetch_sub(1, Release);
    } else {
        mark.store(0, Release);
    }
}

/// Shared access to one shard.
pub(crate) struct ReadGuard<'a, T> {
    data: &'a UnsafeCell<T>,
    /// The mark to undo on drop.
    mark: &'a AtomicU32,
    /// The mark is the shard's shared counter, not a slot's own word.
    shared: bool,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard's mark is set and the shard's writer saw it or had not started
        // (module doc), so no unique reference exists while the guard lives.
        unsafe { &*self.data.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        unmark(self.mark, self.shared);
    }
}

/// Unique access to one shard.
pub(crate) struct WriteGuard<'a, T> {
    shard: &'a Shard<T>,
    _held: MutexGuard<'a, ()>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the shard's writer mutex and every mark was clear after
        // `writing` was set, so no other reference to the data exists.
        unsafe { &*self.shard.data.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and `&mut self` makes this the only reference from here.
        unsafe { &mut *self.shard.data.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        // Readers may mark the shard again; the mutex (dropped after this) lets the next
        // writer in.
        self.shard.writing.store(false, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn slots_are_claimed_once_and_given_back() {
        let lock = ShardedLock::new(|| 0u32);
        let slots: Vec<usize> = (0..SLOTS - 1).map(|_| lock.claim_slot().expect("free slot")).collect();
        assert!(!slots.contains(&SHARED));
        assert_eq!(lock.claim_slot(), None);
        lock.release_slot(slots[3]);
        assert_eq!(lock.claim_slot(), Some(slots[3]));
    }

    /// Writers keep two counters equal under the lock; readers (own slots and the shared
    /// one) must never see them differ, and no increment may be lost.
    #[test]
    fn readers_never_see_a_write_in_progress() {
        let lock = Arc::new(ShardedLock::new(|| (0u64, 0u64)));
        const ROUNDS: u64 = 200_000;
        std::thread::scope(|scope| {
            for t in 0..3 {
                let lock = &lock;
                scope.spawn(move || {
                    let slot = (t < 2).then(|| lock.claim_slot().expect("free slot"));
                    let mut seen = 0u64;
                    for n in 0..ROUNDS {
                        let i = (n as usize * 7 + t) % SHARDS;
                        let (a, b) = with_slot(slot.unwrap_or(SHARED), || *lock.read(i));
                        assert_eq!(a, b, "torn read of shard {i}");
                        seen = seen.wrapping_add(a);
                    }
                    if let Some(s) = slot {
                        lock.release_slot(s);
                    }
                    seen
                });
            }
            for t in 0..2 {
                let lock = &lock;
                scope.spawn(move || {
                    for n in 0..ROUNDS {
                        let mut g = lock.write((n as usize + t) % SHARDS);
                        g.0 += 1;
                        std::hint::spin_loop();
                        g.1 += 1;
                    }
                });
            }
        });
        let total: u64 = (0..SHARDS).map(|i| lock.read(i).0).sum();
        assert_eq!(total, 2 * ROUNDS);
    }
}
