//! Marks the mount's own store writes, so the observer does not react to them from inside the
//! very request that made them (the mount already shows its own changes, and the state lock is
//! held).

use std::cell::Cell;

thread_local! {
    static IN_MOUNT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `body` marked as the mount's own write.
pub fn as_mount<T>(body: impl FnOnce() -> T) -> T {
    let before = IN_MOUNT.with(|flag| flag.replace(true));
    let out = body();
    IN_MOUNT.with(|flag| flag.set(before));
    out
}

/// True inside [`as_mount`].
pub fn in_mount() -> bool {
    IN_MOUNT.with(Cell::get)
}
