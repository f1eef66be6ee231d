//! How much memory a piece of work holds: an allocator that counts, per thread, the bytes
//! allocated and not yet freed, and the peak since the last [`reset_peak`]. A test binary that
//! wants it includes this file (`#[path]`) and makes [`Counting`] its `#[global_allocator]`.
//!
//! The simulator: a schedule runs start to end on one thread (and frees what it allocated on
//! that thread), so a thread's count is its schedule's; the world ends a schedule that holds
//! more than its bound as a violation (`tests/sim/world.rs`). The decoder tests: what one
//! decode call allocated at most ([`peak_during`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting.
pub struct Counting;

thread_local! {
    /// Bytes this thread allocated and has not freed (frees of another thread's allocations
    /// make it negative for a while: it is signed).
    static HELD: Cell<i64> = const { Cell::new(0) };
    /// The highest `HELD` since the last reset.
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn add(delta: i64) {
    // `try_with`: a thread being torn down has no counters left, and frees nothing we count.
    let _ = HELD.try_with(|held| {
        let now = held.get() + delta;
        held.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every call goes to `System` with the caller's arguments; the counting touches only
// thread-local cells, which allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

/// Bytes this thread holds now.
pub fn held() -> u64 {
    HELD.with(|h| h.get().max(0) as u64)
}

/// Starts measuring this thread's peak again from what it holds now.
pub fn reset_peak() {
    let now = HELD.with(|h| h.get());
    PEAK.with(|p| p.set(now));
}

/// The highest this thread held since the last [`reset_peak`].
pub fn peak() -> u64 {
    PEAK.with(|p| p.get().max(0) as u64)
}

/// Runs `f`; returns its result and the most bytes it held at once on this thread, beyond
/// what the thread held before.
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = HELD.with(|h| h.get());
    PEAK.with(|p| p.set(start));
    let out = f();
    let peak = PEAK.with(|p| p.get()) - start;
    (out, peak.max(0) as usize)
}
