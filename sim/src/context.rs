//! The simulation that is running on this thread, if any.
//!
//! Free functions such as [`crate::spawn`], [`crate::time::sleep`] and
//! [`crate::rand::u64`] find their simulation here. The slot is per thread and is set
//! only while a [`crate::Sim`] drives its tasks (and while it drops them), so two
//! simulations on two threads never see each other, and nesting restores the outer one.

use std::cell::Cell;
use std::ptr;
use std::rc::Rc;

use crate::world::Shared;

thread_local! {
    static CURRENT: Cell<*const Shared> = const { Cell::new(ptr::null()) };
}

/// Marks `shared` as the running simulation until dropped.
#[derive(Debug)]
pub(crate) struct Enter {
    previous: *const Shared,
    // Keeps the pointee alive for as long as the pointer is published.
    _shared: Rc<Shared>,
}

pub(crate) fn enter(shared: &Rc<Shared>) -> Enter {
    let previous = CURRENT.with(|current| current.replace(Rc::as_ptr(shared)));
    Enter { previous, _shared: Rc::clone(shared) }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.previous));
    }
}

/// Runs `f` on the current simulation, or returns `None` outside one.
pub(crate) fn try_with<R>(f: impl FnOnce(&Shared) -> R) -> Option<R> {
    let pointer = CURRENT.with(Cell::get);
    if pointer.is_null() {
        return None;
    }
    // SAFETY: the pointer was published by `enter`, whose guard holds an `Rc` to the
    // pointee and unpublishes it on drop; guards nest in LIFO order on one thread.
    Some(f(unsafe { &*pointer }))
}

/// Runs `f` on the current simulation.
///
/// # Panics
///
/// Outside a running simulation.
#[track_caller]
pub(crate) fn with<R>(f: impl FnOnce(&Shared) -> R) -> R {
    match try_with(f) {
        Some(result) => result,
        None => panic!(
            "called outside a running simulation: this function only works inside a task \
             driven by sim::Sim (block_on, run_for, run_until or step)"
        ),
    }
}

/// A new reference to the current simulation.
///
/// # Panics
///
/// Outside a running simulation.
#[track_caller]
pub(crate) fn current() -> Rc<Shared> {
    let pointer = CURRENT.with(Cell::get);
    assert!(
        !pointer.is_null(),
        "called outside a running simulation: this function only works inside a task \
         driven by sim::Sim (block_on, run_for, run_until or step)"
    );
    // SAFETY: as in `try_with`, the pointee is kept alive by the enclosing guard; the
    // extra strong count we add is released by the `Rc` we return.
    unsafe {
        Rc::increment_strong_count(pointer);
        Rc::from_raw(pointer)
    }
}
