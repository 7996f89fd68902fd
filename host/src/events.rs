//! What happens in the server, on one broadcast channel: adapters swapped, rejected, removed
//! or optimised, models loaded and unloaded, pulls going on, fallbacks taken. `/v1/events`
//! streams it (for the UI), and each event is counted in `/metrics`
//! (`plugboard_events_total{type}`).
//!
//! The channel is the process's own (a global: what publishes — the plugin host, the registry,
//! the store, the chat turns — knows nothing of who listens, and a plugin host built by a CLI
//! command publishes to no one at no cost). A listener that falls behind by more than
//! [`CAPACITY`] events is not given a silent gap: it gets a `resync` event saying how many it
//! missed, and should read the state again (`/v1/models`, `/v1/adapters`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for a listener that is behind, before it must resync.
pub const CAPACITY: usize = 1024;

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    AdapterSwapped {
        adapter: String,
        version: String,
        source: String,
    },
    AdapterRejected {
        adapter: String,
        file: String,
        reason: String,
    },
    AdapterRemoved {
        adapter: String,
    },
    /// A version that served from quick code (Winch's) runs Cranelift's optimised code from
    /// now on; `seconds` is that compile's time.
    AdapterOptimised {
        adapter: String,
        version: String,
        sha256: String,
        seconds: f64,
    },
    ModelLoaded {
        model: String,
        seconds: f64,
    },
    ModelUnloaded {
        model: String,
    },
    /// A download under way (at most one event per percent).
    PullProgress {
        file: String,
        completed: u64,
        total: u64,
    },
    PullDone {
        file: String,
        /// Why it failed; `None` when it succeeded.
        error: Option<String>,
    },
    FallbackTaken {
        from: String,
        to: String,
        reason: String,
    },
    /// The listener missed this many events: read the state again.
    Resync {
        missed: u64,
    },
}

impl Event {
    /// The event's type, as its `type` field and SSE event name give it.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::AdapterSwapped { .. } => "adapter_swapped",
            Event::AdapterRejected { .. } => "adapter_rejected",
            Event::AdapterRemoved { .. } => "adapter_removed",
            Event::AdapterOptimised { .. } => "adapter_optimised",
            Event::ModelLoaded { .. } => "model_loaded",
            Event::ModelUnloaded { .. } => "model_unloaded",
            Event::PullProgress { .. } => "pull_progress",
            Event::PullDone { .. } => "pull_done",
            Event::FallbackTaken { .. } => "fallback_taken",
            Event::Resync { .. } => "resync",
        }
    }
}

/// An event with its place in the sequence and its time.
#[derive(Clone, Debug, Serialize)]
pub struct Stamped {
    pub id: u64,
    /// RFC 3339.
    pub at: String,
    #[serde(flatten)]
    pub event: Event,
}

fn channel() -> &'static broadcast::Sender<Stamped> {
    static CHANNEL: OnceLock<broadcast::Sender<Stamped>> = OnceLock::new();
    CHANNEL.get_or_init(|| broadcast::channel(CAPACITY).0)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Publishes an event to every listener (none: nothing happens but the count).
pub fn publish(event: Event) {
    metrics::counter!("plugboard_events_total", "type" => event.kind()).increment(1);
    let stamped = Stamped {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        event,
    };
    let _ = channel().send(stamped);
}

/// The events from now on; a `resync` where the listener fell behind.
pub fn subscribe() -> impl Stream<Item = Stamped> + Send + 'static {
    listen(channel().subscribe())
}

fn listen(receiver: broadcast::Receiver<Stamped>) -> impl Stream<Item = Stamped> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => Stamped {
                id: 0,
                at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                event: Event::Resync { missed },
            },
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((event, receiver))
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_listener_that_falls_behind_gets_a_resync_not_a_gap() {
        let (tx, rx) = broadcast::channel(4);
        let mut events = Box::pin(listen(rx));
        for i in 0..10 {
            let _ = tx.send(Stamped {
                id: i,
                at: String::new(),
                event: Event::AdapterRemoved {
                    adapter: format!("a{i}"),
                },
            });
        }
        let first = events.next().await.expect("an event");
        assert_eq!(first.event, Event::Resync { missed: 6 });
        // Then the four it still has, in order.
        let ids: Vec<u64> = events.take(4).map(|e| e.id).collect().await;
        assert_eq!(ids, vec![6, 7, 8, 9]);
    }
}
