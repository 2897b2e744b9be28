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
//! A slot belongs to one lock: [`ShardedLock::claim_slot`] hands out a [`Slot`] token that
//! borrows the lock, [`with_slot`] takes it `&mut` (one thread at a time) and records the
//! (lock, slot) pair for the thread, and a read uses the slot only on that lock; any other
//! lock the thread reads meanwhile (a worker's filtering policy reading another NAT) is
//! read through its shared counter. A slot's mark is a count, so a thread may read a shard
//! it already reads (a policy listing its own NAT's sessions); such a nested read does not
//! wait for a waiting writer, which cannot proceed before the outer read leaves anyway.
//!
//! What is left to callers is liveness, not soundness: a thread that writes a shard it
//! holds, or reads through the shared counter a shard it holds while a writer waits for it,
//! waits for itself.

#![allow(unsafe_code)]

use core::cell::{Cell, UnsafeCell};
use core::ops::{Deref, DerefMut};
use core::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};

use crossbeam_utils::{Backoff, CachePadded};
use parking_lot::{Mutex, MutexGuard};

/// Shards per table.
pub(crate) const SHARDS: usize = 64;
/// Reader slots per table: slot 0 means "none" (the shard's shared counter), the others are
/// owned by one worker each.
const SLOTS: usize = 64;
const SHARED: usize = 0;

/// The lock and slot the current thread reads with (set by a worker around each packet).
#[derive(Clone, Copy)]
struct Current {
    /// The lock the slot belongs to (its address: a lock cannot move or go while a [`Slot`]
    /// of it is borrowed by `with_slot`, and two live locks never share an address).
    lock: *const (),
    slot: usize,
}

thread_local! {
    static CURRENT: Cell<Current> = const { Cell::new(Current { lock: ptr::null(), slot: SHARED }) };
}

/// A reader slot of one [`ShardedLock`], claimed by a worker and given back on drop.
pub(crate) struct Slot<'a, T> {
    lock: &'a ShardedLock<T>,
    index: usize,
}

impl<T> Drop for Slot<'_, T> {
    fn drop(&mut self) {
        // Every caller of `with_slot` drops its guards inside `f` (a guard borrows the lock,
        // not the slot), so the slot holds no shard now.
        debug_assert!(self.lock.marks[self.index].iter().all(|m| m.load(Relaxed) == 0));
        self.lock.active.fetch_and(!(1 << self.index), SeqCst);
    }
}

/// Runs `f` with the current thread reading `slot`'s lock through `slot` (the previous pair
/// is restored after, also when `f` panics: a later caller on this thread must not use a
/// slot it does not hold). Reads of other locks inside `f` do not use it.
#[inline]
pub(crate) fn with_slot<T, R>(slot: &mut Slot<'_, T>, f: impl FnOnce() -> R) -> R {
    struct Restore(Current);
    impl Drop for Restore {
        #[inline]
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let now = Current { lock: slot.lock.id(), slot: slot.index };
    let _restore = Restore(CURRENT.with(|c| c.replace(now)));
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

    /// This lock's identity in [`Current`].
    #[inline(always)]
    fn id(&self) -> *const () {
        ptr::from_ref(self).cast()
    }

    /// Takes a slot of its own for a worker thread; `None` when all are taken (the worker
    /// then reads as threads without a slot do).
    pub(crate) fn claim_slot(&self) -> Option<Slot<'_, T>> {
        let mut active = self.active.load(Relaxed);
        loop {
            let free = (!active).trailing_zeros() as usize;
            if free >= SLOTS {
                return None;
            }
            match self.active.compare_exchange_weak(active, active | 1 << free, SeqCst, Relaxed) {
                Ok(_) => return Some(Slot { lock: self, index: free }),
                Err(now) => active = now,
            }
        }
    }

    /// Reads shard `i`.
    #[inline(always)]
    pub(crate) fn read(&self, i: usize) -> ReadGuard<'_, T> {
        let current = CURRENT.with(Cell::get);
        // The thread's slot is this lock's only if it was claimed on this lock.
        let slot = if ptr::eq(current.lock, self.id()) { current.slot } else { SHARED };
        let shard = &self.shards[i];
        let mark = self.mark(slot, i);
        let shared = slot == SHARED;
        loop {
            let held = if shared {
                mark.fetch_add(1, SeqCst);
                0
            } else {
                // Only this thread writes its slot's marks: a load and a store count it.
                let held = mark.load(Relaxed);
                mark.store(held + 1, SeqCst);
                held
            };
            // A nested read (`held != 0`) need not wait for a writer: while the outer read
            // holds the shard, no writer proceeds.
            if !shard.writing.load(SeqCst) || held != 0 {
                return ReadGuard { data: &shard.data, mark, shared };
            }
            unmark(mark, shared);
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
        while self.has_readers(i) {
            backoff.snooze();
        }
        WriteGuard { shard, _held: held }
    }

    /// Whether a reader holds (or is entering) shard `i`, as a writer looks: the shard's
    /// shared counter and the marks of the slots in use.
    fn has_readers(&self, i: usize) -> bool {
        if self.shards[i].shared_readers.load(SeqCst) != 0 {
            return true;
        }
        let mut active = self.active.load(SeqCst) & !(1 << SHARED);
        while active != 0 {
            let slot = active.trailing_zeros() as usize;
            active &= active - 1;
            if self.marks[slot][i].load(SeqCst) != 0 {
                return true;
            }
        }
        false
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

/// Undoes a reader's mark: the shard's shared counter, or a slot's own count (written only
/// by its thread, so a load and a store).
#[inline]
fn unmark(mark: &AtomicU32, shared: bool) {
    if shared {
        mark.fetch_sub(1, Release);
    } else {
        mark.store(mark.load(Relaxed) - 1, Release);
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
        let mut slots: Vec<Slot<'_, u32>> = (0..SLOTS - 1).map(|_| lock.claim_slot().expect("free slot")).collect();
        assert!(!slots.iter().any(|s| s.index == SHARED));
        assert!(lock.claim_slot().is_none());
        let third = slots.swap_remove(3).index;
        assert_eq!(lock.claim_slot().map(|s| s.index), Some(third));
    }

    /// Writers keep two counters equal under the lock; readers (own slots and the shared
    /// one) must never see them differ, and no increment may be lost.
    #[test]
    fn readers_never_see_a_write_in_progress() {
        let lock = Arc::new(ShardedLock::new(|| (0u64, 0u64)));
        const ROUNDS: u64 = if cfg!(miri) { 100 } else { 200_000 };
        std::thread::scope(|scope| {
            for t in 0..3 {
                let lock = &lock;
                scope.spawn(move || {
                    let mut slot = (t < 2).then(|| lock.claim_slot().expect("free slot"));
                    let mut seen = 0u64;
                    for n in 0..ROUNDS {
                        let i = (n as usize * 7 + t) % SHARDS;
                        let (a, b) = match &mut slot {
                            Some(slot) => with_slot(slot, || *lock.read(i)),
                            None => *lock.read(i),
                        };
                        assert_eq!(a, b, "torn read of shard {i}");
                        seen = seen.wrapping_add(a);
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

    /// A thread reading lock `b` while it reads lock `a` through a slot of `a` (a worker's
    /// filtering policy reading another NAT): `b`'s writer must wait for that reader too.
    #[test]
    fn a_slot_of_one_lock_does_not_hide_readers_of_another() {
        let a = ShardedLock::new(|| ());
        let b = ShardedLock::new(|| (0u64, 0u64));
        let rounds: u64 = if cfg!(miri) { 50 } else { 200_000 };
        std::thread::scope(|scope| {
            let (a, b) = (&a, &b);
            scope.spawn(move || {
                let mut slot = a.claim_slot().expect("free slot");
                for n in 0..rounds {
                    let i = n as usize % SHARDS;
                    let (x, y) = with_slot(&mut slot, || {
                        let _a = a.read(i);
                        *b.read(i)
                    });
                    assert_eq!(x, y, "torn read of shard {i}");
                }
            });
            scope.spawn(move || {
                for n in 0..rounds {
                    let mut g = b.write(n as usize % SHARDS);
                    g.0 += 1;
                    std::hint::spin_loop();
                    g.1 += 1;
                }
            });
        });
        assert_eq!((0..SHARDS).map(|i| b.read(i).0).sum::<u64>(), rounds);
    }

    /// Two locks read from one thread with slots: a read of each is seen by that lock's
    /// writers, whichever lock's slot the thread is in, and a slot of `b` with the same
    /// index as `a`'s does not share its marks.
    #[test]
    fn two_locks_read_from_one_thread_with_slots() {
        let a = ShardedLock::new(|| ());
        let b = ShardedLock::new(|| ());
        let mut in_a = a.claim_slot().expect("free slot");
        with_slot(&mut in_a, || {
            let _a = a.read(3);
            let _b = b.read(3);
            assert!(a.has_readers(3) && b.has_readers(3));
        });
        assert!(!a.has_readers(3) && !b.has_readers(3));

        let mut in_b = b.claim_slot().expect("free slot");
        assert_eq!(in_a.index, in_b.index, "the same index on both locks");
        with_slot(&mut in_a, || {
            let _b = b.read(5);
            with_slot(&mut in_b, || drop(b.read(5)));
            assert!(b.has_readers(5), "the read through `a`'s slot still holds `b`'s shard");
        });
        assert!(!b.has_readers(5));
    }

    /// A shard read again by the thread that reads it (a policy listing its own NAT's
    /// sessions) stays held until the outer read leaves, and the inner read does not wait
    /// for a writer that is waiting for the outer one.
    #[test]
    fn nested_reads_through_a_slot_hold_the_shard_until_the_outer_leaves() {
        let lock = ShardedLock::new(|| 0u64);
        let mut slot = lock.claim_slot().expect("free slot");
        std::thread::scope(|scope| {
            with_slot(&mut slot, || {
                let outer = lock.read(7);
                drop(lock.read(7));
                assert!(lock.has_readers(7));
                let writer = scope.spawn(|| *lock.write(7) += 1);
                // Wait (bounded) until the writer waits for the outer read.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !lock.shards[7].writing.load(SeqCst) {
                    assert!(std::time::Instant::now() < deadline, "the writer never started");
                    std::thread::yield_now();
                }
                let inner = lock.read(7);
                assert_eq!((*outer, *inner), (0, 0), "the writer waits for both");
                drop(inner);
                assert!(!writer.is_finished(), "the writer waits for the outer read");
                drop(outer);
                writer.join().expect("writer");
            });
        });
        assert_eq!(*lock.read(7), 1);
    }
}
