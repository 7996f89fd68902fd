//! Which local models stay loaded: each is kept for its `keep_alive` after its last request
//! (Ollama's semantics: a duration, `0` unloads right after the request, a negative value keeps
//! it for good), and at most `max_loaded` are loaded at once — to load another, idle models go
//! first, the one expiring earliest, then the least recently used. A model with requests in
//! flight is never chosen; an unloaded model's worker finishes what it runs, then frees the
//! weights.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a model stays loaded after its last request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAlive {
    Forever,
    For(Duration),
}

impl Default for KeepAlive {
    /// Ollama's default.
    fn default() -> Self {
        KeepAlive::For(Duration::from_secs(300))
    }
}

/// Seconds of a duration as Go and Ollama write them: a number of seconds (`"300"`) or
/// numbers with units (`"5m"`, `"1h30m"`, `"90s"`, `"250ms"`).
pub fn seconds_of(text: &str) -> Option<f64> {
    let text = text.trim();
    // Digits and a point only: f64's own parser would also take "inf", "NaN" and "1e3".
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return text.parse::<f64>().ok();
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit..];
    }
    Some(total)
}

impl KeepAlive {
    /// A duration as Ollama takes it: a number of seconds, or a string such as `"5m"`,
    /// `"1h30m"`, `"90s"`, `"300"`; negative means for good.
    pub fn parse(value: &Value) -> Result<KeepAlive, String> {
        match value {
            Value::Number(n) => {
                let seconds = n.as_f64().unwrap_or(0.0);
                Ok(Self::seconds(seconds))
            }
            Value::String(s) => Self::parse_str(s),
            other => Err(format!(
                "keep_alive must be a duration such as \"5m\" or a number of seconds, not {other}"
            )),
        }
    }

    pub fn parse_str(text: &str) -> Result<KeepAlive, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("keep_alive is empty".into());
        }
        let bad =
            || format!("keep_alive '{text}' is not a duration such as \"5m\", \"1h30m\" or \"-1\"");
        if let Some(rest) = text.strip_prefix('-') {
            // Any negative duration keeps the model for good (one sign: "--5" is no duration).
            seconds_of(rest).ok_or_else(bad)?;
            return Ok(KeepAlive::Forever);
        }
        seconds_of(text).map(Self::seconds).ok_or_else(bad)
    }

    fn seconds(seconds: f64) -> KeepAlive {
        if seconds < 0.0 {
            KeepAlive::Forever
        } else {
            KeepAlive::For(Duration::from_secs_f64(seconds.min(1e9)))
        }
    }

    /// Whether the model goes as soon as its requests end (`0`).
    pub fn is_zero(self) -> bool {
        self == KeepAlive::For(Duration::ZERO)
    }

    /// When a model used until `now` expires (`None`: never).
    pub fn expiry(self, now: Instant) -> Option<Instant> {
        match self {
            KeepAlive::Forever => None,
            KeepAlive::For(d) => Some(now + d),
        }
    }
}

/// The server-wide settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Residency {
    /// For models and requests that set none.
    pub keep_alive: KeepAlive,
    /// Models loaded at once; 0 for no limit.
    pub max_loaded: usize,
    /// Bytes the loaded models may take together (weights and KV cache, estimated).
    pub memory_budget: Option<u64>,
}

/// A loaded model's use: requests in flight, last use, expiry.
#[derive(Debug)]
pub struct Usage {
    in_flight: AtomicUsize,
    times: Mutex<Times>,
}

#[derive(Debug, Clone, Copy)]
struct Times {
    last_used: Instant,
    /// `None`: kept for good.
    expires: Option<Instant>,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            in_flight: AtomicUsize::new(0),
            times: Mutex::new(Times {
                last_used: Instant::now(),
                expires: None,
            }),
        }
    }
}

impl Usage {
    /// A request starts.
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.lock().last_used = Instant::now();
    }

    /// A request ends; the model is kept for `keep_alive` from now.
    pub fn end(&self, keep_alive: KeepAlive) {
        let now = Instant::now();
        let mut times = self.lock();
        times.last_used = now;
        times.expires = keep_alive.expiry(now);
        drop(times);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Sets the expiry without a request (a preload).
    pub fn keep(&self, keep_alive: KeepAlive) {
        let now = Instant::now();
        let mut times = self.lock();
        times.last_used = now;
        times.expires = keep_alive.expiry(now);
    }

    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }

    /// When the model expires (`None`: never).
    pub fn expires(&self) -> Option<Instant> {
        self.lock().expires
    }

    pub fn last_used(&self) -> Instant {
        self.lock().last_used
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Times> {
        self.times.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_reads_as_ollama_does() {
        let d = |s: u64| KeepAlive::For(Duration::from_secs(s));
        assert_eq!(KeepAlive::parse_str("5m"), Ok(d(300)));
        assert_eq!(KeepAlive::parse_str("1h30m"), Ok(d(5400)));
        assert_eq!(KeepAlive::parse_str("90s"), Ok(d(90)));
        assert_eq!(KeepAlive::parse_str("300"), Ok(d(300)));
        assert_eq!(KeepAlive::parse_str("0"), Ok(d(0)));
        assert_eq!(KeepAlive::parse_str("-1"), Ok(KeepAlive::Forever));
        assert_eq!(KeepAlive::parse_str("-5m"), Ok(KeepAlive::Forever));
        assert_eq!(KeepAlive::parse(&serde_json::json!(0)), Ok(d(0)));
        assert_eq!(
            KeepAlive::parse(&serde_json::json!(-1)),
            Ok(KeepAlive::Forever)
        );
        assert_eq!(
            KeepAlive::parse(&serde_json::json!(1.5)),
            Ok(KeepAlive::For(Duration::from_millis(1500)))
        );
        for bad in ["soon", "5x", "m", "", "-"] {
            assert!(KeepAlive::parse_str(bad).is_err(), "{bad}");
        }
        assert!(KeepAlive::parse(&serde_json::json!(true)).is_err());
    }
}
