//! How many plugin sandboxes are alive at once, and who waits for the next free one.
//!
//! wasmtime's instance pool refuses an instance past its size outright. This gate in front of
//! it turns a burst past `--plugin-sandboxes` into a short wait instead of an error, and
//! gives a plugin's load checks (its first instance and its fixtures, on a hot swap) the next
//! free sandbox ahead of requests, so that a new version lands while streams hold every
//! sandbox as soon as one of them ends, instead of being refused for it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Who asks for a sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// A request: waits up to [`super::Limits::sandbox_wait`].
    Request,
    /// A plugin's load checks: served before any waiting request, and waits thirty times
    /// longer, since a check refused for lack of a sandbox must be run again later.
    Check,
}

/// How many times a request's wait a load check waits before its load is put off (and
/// retried by the watcher): a minute by default.
const CHECK_WAITS: u32 = 30;

pub(super) struct Sandboxes {
    capacity: u32,
    request_wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    in_use: u32,
    checks_waiting: u32,
}

/// One sandbox taken from the gate; given back when dropped (after the store that used it,
/// so that the pool has the slot back before anyone else may ask for it).
pub(super) struct Sandbox {
    gate: Arc<Sandboxes>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.gate.lock().in_use -= 1;
        // Everyone wakes: a waiting check must see the sandbox before requests do.
        self.gate.freed.notify_all();
    }
}

impl Sandboxes {
    pub(super) fn new(capacity: u32, request_wait: Duration) -> Arc<Sandboxes> {
        Arc::new(Sandboxes {
            capacity: capacity.max(1),
            request_wait,
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free sandbox, waiting for one as long as `priority` may; `None` if none came free.
    pub(super) fn take(self: &Arc<Self>, priority: Priority) -> Option<Sandbox> {
        let deadline = Instant::now()
            + match priority {
                Priority::Request => self.request_wait,
                Priority::Check => self.request_wait * CHECK_WAITS,
            };
        let mut state = self.lock();
        if priority == Priority::Check {
            state.checks_waiting += 1;
        }
        let taken = loop {
            let free = state.in_use < self.capacity
                && (priority == Priority::Check || state.checks_waiting == 0);
            if free {
                state.in_use += 1;
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        if priority == Priority::Check {
            state.checks_waiting -= 1;
            drop(state);
            // Requests held back for this check may go on.
            self.freed.notify_all();
        }
        taken.then(|| Sandbox {
            gate: Arc::clone(self),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_past_capacity_waits_then_gives_up() {
        let gate = Sandboxes::new(1, Duration::from_millis(50));
        let held = gate.take(Priority::Request).expect("one is free");
        let started = Instant::now();
        assert!(gate.take(Priority::Request).is_none());
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(held);
        assert!(gate.take(Priority::Request).is_some());
    }

    #[test]
    fn a_waiting_request_gets_the_sandbox_freed_meanwhile() {
        let gate = Sandboxes::new(1, Duration::from_secs(30));
        let held = gate.take(Priority::Request).expect("one is free");
        let waiter = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || gate.take(Priority::Request).is_some())
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn a_check_goes_before_waiting_requests() {
        let gate = Sandboxes::new(1, Duration::from_secs(30));
        let held = gate.take(Priority::Request).expect("one is free");
        let order = Arc::new(Mutex::new(Vec::new()));
        let spawn = |priority: Priority, name: &'static str| {
            let (gate, order) = (Arc::clone(&gate), Arc::clone(&order));
            std::thread::spawn(move || {
                let sandbox = gate.take(priority).expect("served in the end");
                order.lock().unwrap().push(name);
                std::thread::sleep(Duration::from_millis(20));
                drop(sandbox);
            })
        };
        let request = spawn(Priority::Request, "request");
        std::thread::sleep(Duration::from_millis(50));
        let check = spawn(Priority::Check, "check");
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        request.join().unwrap();
        check.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["check", "request"]);
    }
}
