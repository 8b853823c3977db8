//! The event bus: what `GET /events` streams.
//!
//! A tokio broadcast channel for live subscribers plus a bounded ring of recent events so
//! `since` can replay. Publishers (images, volumes, the containers module) call
//! [`EventBus::publish`]; it never blocks and never fails (slow subscribers lose events, as
//! with Docker).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::filters::Filters;

/// How many recent events are kept for `since`.
pub const RING_CAPACITY: usize = 1024;

/// One event, in the Docker Engine API shape (`Type`, `Action`, `Actor`, `time`, `timeNano`, and
/// the legacy `status`/`id`/`from` for container and image events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `container`, `image`, `volume`, `network`, `daemon`, ...
    pub kind: String,
    /// `create`, `start`, `die`, `tag`, `delete`, `mount`, ...
    pub action: String,
    /// The object's id (container id, image id or name, volume name).
    pub actor_id: String,
    /// Attributes (`name`, `image`, labels, `exitCode`, ...).
    pub attributes: BTreeMap<String, String>,
    /// Nanoseconds since the unix epoch.
    pub time_nano: i64,
}

impl Event {
    /// An event of `kind`/`action` on `actor_id`, stamped now.
    pub fn new(kind: &str, action: &str, actor_id: &str) -> Self {
        Event {
            kind: kind.into(),
            action: action.into(),
            actor_id: actor_id.into(),
            attributes: BTreeMap::new(),
            time_nano: now_nanos(),
        }
    }

    /// Add an attribute.
    pub fn attr(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.attributes.insert(k.into(), v.into());
        self
    }

    /// The JSON object `GET /events` sends.
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Actor<'a> {
            #[serde(rename = "ID")]
            id: &'a str,
            #[serde(rename = "Attributes")]
            attributes: &'a BTreeMap<String, String>,
        }
        let mut v = serde_json::json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": Actor { id: &self.actor_id, attributes: &self.attributes },
            "scope": "local",
            "time": self.time_nano.div_euclid(1_000_000_000),
            "timeNano": self.time_nano,
        });
        if self.kind == "container" || self.kind == "image" {
            v["status"] = self.action.clone().into();
            v["id"] = self.actor_id.clone().into();
            if let Some(from) = self.attributes.get("image") {
                v["from"] = from.clone().into();
            }
        }
        v
    }

    /// Whether the event passes `GET /events` filters (`type`, `event`, `container`, `image`,
    /// `volume`, `network`, `daemon`, `label`, `scope`). Unknown filter keys never match.
    pub fn matches(&self, f: &Filters) -> bool {
        for key in f.keys() {
            let ok = match key {
                "type" => f.contains("type", &self.kind),
                "event" => {
                    // "exec_start: sh" style actions match their prefix too.
                    let base = self.action.split(':').next().unwrap_or("");
                    f.contains("event", &self.action) || f.contains("event", base)
                }
                "container" | "image" | "volume" | "network" | "daemon" => {
                    if self.kind != key {
                        if key == "image" && self.kind == "container" {
                            // docker matches container events by their image too
                            self.attributes
                                .get("image")
                                .is_some_and(|i| f.contains(key, i))
                        } else {
                            false
                        }
                    } else {
                        f.contains(key, &self.actor_id)
                            || self
                                .attributes
                                .get("name")
                                .is_some_and(|n| f.contains(key, n))
                            || f.values(key)
                                .any(|v| v.len() >= 12 && self.actor_id.starts_with(v))
                    }
                }
                "label" => f.values("label").all(|l| match l.split_once('=') {
                    Some((k, v)) => self.attributes.get(k).is_some_and(|x| x == v),
                    None => self.attributes.contains_key(l),
                }),
                "scope" => f.contains("scope", "local"),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Broadcast + replay ring. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    ring: Arc<Mutex<VecDeque<Event>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A new bus.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(RING_CAPACITY);
        EventBus {
            tx,
            ring: Arc::new(Mutex::new(VecDeque::with_capacity(RING_CAPACITY))),
        }
    }

    /// Publish an event to live subscribers and the replay ring.
    pub fn publish(&self, ev: Event) {
        // Ring and send under one lock so a subscriber that takes a snapshot + receiver under
        // the same lock sees each event exactly once.
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == RING_CAPACITY {
            ring.pop_front();
        }
        ring.push_back(ev.clone());
        let _ = self.tx.send(ev);
    }

    /// Past events with `time_nano >= since_nanos` (oldest first) and a receiver for the
    /// events after them, taken atomically.
    pub fn subscribe_since(
        &self,
        since_nanos: Option<i64>,
    ) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let past = match since_nanos {
            Some(s) => ring.iter().filter(|e| e.time_nano >= s).cloned().collect(),
            None => Vec::new(),
        };
        (past, self.tx.subscribe())
    }

    /// A snapshot of the ring (oldest first).
    pub fn recent(&self) -> Vec<Event> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().cloned().collect()
    }
}

/// Parse a Docker `since`/`until` value: unix seconds with optional fraction
/// (`1700000000.123456789`), an RFC 3339 time, or a Go duration relative to `now` (`10m`, `1h30m`).
pub fn parse_time_nanos(s: &str, now_nanos: i64) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some((secs, frac)) = s.split_once('.') {
        if let (Ok(sec), true) = (
            secs.parse::<i64>(),
            frac.bytes().all(|b| b.is_ascii_digit()),
        ) {
            let mut f = frac.to_string();
            f.truncate(9);
            while f.len() < 9 {
                f.push('0');
            }
            return sec
                .checked_mul(1_000_000_000)?
                .checked_add(f.parse::<i64>().ok()?);
        }
    }
    if let Ok(sec) = s.parse::<i64>() {
        return Some(sec.saturating_mul(1_000_000_000));
    }
    if let Some(d) = parse_go_duration(s) {
        return Some(now_nanos.saturating_sub(d));
    }
    berth_image::timefmt::parse_rfc3339(s).map(|x| x.saturating_mul(1_000_000_000))
}

/// Parse a Go duration (`300ms`, `1.5h`, `2h45m`) into nanoseconds.
fn parse_go_duration(s: &str) -> Option<i64> {
    let mut rest = s;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_forms() {
        let now = 2_000_000_000_000_000_000;
        assert_eq!(
            parse_time_nanos("1700000000", now),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_time_nanos("1700000000.5", now),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(parse_time_nanos("10m", now), Some(now - 600_000_000_000));
        assert_eq!(
            parse_time_nanos("1h30m", now),
            Some(now - 5_400_000_000_000)
        );
        assert_eq!(
            parse_time_nanos("2023-11-14T22:13:20Z", now),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(parse_time_nanos("garbage", now), None);
    }

    #[test]
    fn filters_and_shape() {
        let ev = Event::new("container", "start", &"a".repeat(64))
            .attr("name", "web")
            .attr("image", "busybox")
            .attr("com.x", "1");
        let f = |s: &str| Filters::parse(s).unwrap();
        assert!(ev.matches(&f(r#"{"type":["container"]}"#)));
        assert!(!ev.matches(&f(r#"{"type":["image"]}"#)));
        assert!(ev.matches(&f(r#"{"container":{"web":true}}"#)));
        assert!(ev.matches(&f(r#"{"container":["aaaaaaaaaaaa"]}"#)));
        assert!(ev.matches(&f(r#"{"image":["busybox"],"event":["start","stop"]}"#)));
        assert!(!ev.matches(&f(r#"{"event":["die"]}"#)));
        assert!(ev.matches(&f(r#"{"label":["com.x=1"]}"#)));
        assert!(!ev.matches(&f(r#"{"label":["com.x=2"]}"#)));
        let j = ev.to_json();
        assert_eq!(j["Type"], "container");
        assert_eq!(j["status"], "start");
        assert_eq!(j["from"], "busybox");
        assert_eq!(j["Actor"]["Attributes"]["name"], "web");
        let v = Event::new("volume", "create", "v1").to_json();
        assert!(v.get("status").is_none());
    }

    #[test]
    fn replay_since() {
        let bus = EventBus::new();
        let mut e1 = Event::new("volume", "create", "a");
        e1.time_nano = 100;
        let mut e2 = Event::new("volume", "create", "b");
        e2.time_nano = 200;
        bus.publish(e1);
        bus.publish(e2);
        let (past, _rx) = bus.subscribe_since(Some(150));
        assert_eq!(past.len(), 1);
        assert_eq!(past[0].actor_id, "b");
    }
}
