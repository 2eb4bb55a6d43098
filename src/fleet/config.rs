//! [`FleetConfig`]: where and how often an instance publishes, checked once when publishing starts.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::fleet::error::FleetError;

/// Longest accepted key prefix and instance id.
const MAX_NAME_LEN: usize = 128;

/// Settings of fleet publishing: the Redis server, the key prefix, this instance's id, the publish interval and
/// the time to live of a publish.
///
/// ```
/// use std::time::Duration;
/// use perfscope::fleet::FleetConfig;
///
/// let config = FleetConfig::new("redis://127.0.0.1:6379/")
///     .prefix("erp:perfscope:fleet")
///     .instance_id("api-1")
///     .interval(Duration::from_secs(5))
///     .ttl(Duration::from_secs(15));
/// assert_eq!(config.get_instance_id(), "api-1");
/// ```
#[must_use = "a configuration does nothing until passed to `Perfscope::publish_fleet`"]
#[derive(Clone)]
pub struct FleetConfig {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) instance_id: String,
    pub(crate) interval: Duration,
    pub(crate) ttl: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_instances: usize,
}

impl fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("FleetConfig")
            .field("prefix", &self.prefix)
            .field("instance_id", &self.instance_id)
            .field("interval", &self.interval)
            .field("ttl", &self.ttl)
            .field("timeout", &self.timeout)
            .field("max_instances", &self.max_instances)
            .finish_non_exhaustive()
    }
}

impl FleetConfig {
    /// Publishing to the Redis server at `url` (`redis://[user:password@]host:port/[db]`), with the defaults:
    /// prefix `perfscope:fleet`, an instance id made of the host name, the process id and a random suffix,
    /// a publish every 5 s that lives 15 s, a 1 s timeout per Redis operation, at most 256 instances read.
    pub fn new(url: impl Into<String>) -> Self {
        FleetConfig {
            url: url.into(),
            prefix: "perfscope:fleet".to_owned(),
            instance_id: default_instance_id(),
            interval: Duration::from_secs(5),
            ttl: Duration::from_secs(15),
            timeout: Duration::from_secs(1),
            max_instances: 256,
        }
    }

    /// Prefix of the keys this fleet uses (default `perfscope:fleet`): `{prefix}:instance:{id}` per instance and
    /// the index `{prefix}:instances`. Instances that share a prefix form one fleet; give each service its own.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// This instance's id, shown in the fleet snapshot (default `{hostname}-{pid}-{random}`). Letters, digits,
    /// `.`, `_`, `:` and `-`, at most 128. Two live instances with one id overwrite each other's publishes.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// How often the histograms are published (default 5 s, at least 10 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long a publish stays in Redis (default 15 s; longer than the interval). An instance that stops
    /// publishing leaves the fleet snapshot at most this long after its last publish.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Longest wait for one Redis operation, connecting included (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Most instances a fleet snapshot reads, the most recently published first (default 256).
    pub fn max_instances(mut self, max: usize) -> Self {
        self.max_instances = max;
        self
    }

    /// The instance id publishes go under.
    pub fn get_instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Checks every setting; the error names the setting and what it accepts.
    pub(crate) fn validate(&self) -> Result<(), FleetError> {
        let invalid = |setting: &'static str, reason: String| {
            Err(FleetError::InvalidConfig { setting, reason })
        };
        if !valid_prefix(&self.prefix) {
            return invalid(
                "prefix",
                format!(
                    "{:?}: use 1 to {MAX_NAME_LEN} characters without spaces or control characters",
                    self.prefix
                ),
            );
        }
        if !valid_id(&self.instance_id) {
            return invalid(
                "instance_id",
                format!(
                    "{:?}: use 1 to {MAX_NAME_LEN} characters among a-z, A-Z, 0-9, '.', '_', ':' and '-'",
                    self.instance_id
                ),
            );
        }
        if self.interval < Duration::from_millis(10) {
            return invalid(
                "interval",
                format!("must be at least 10ms, got {:?}", self.interval),
            );
        }
        if self.ttl <= self.interval {
            return invalid(
                "ttl",
                format!(
                    "must be longer than the interval ({:?}), got {:?}; three intervals is a good choice",
                    self.interval, self.ttl
                ),
            );
        }
        if self.timeout.is_zero() {
            return invalid("timeout", "must not be zero".to_owned());
        }
        if self.max_instances == 0 {
            return invalid("max_instances", "must be at least 1".to_owned());
        }
        Ok(())
    }

    /// The key of `instance`'s publish.
    pub(crate) fn instance_key(&self, instance: &str) -> String {
        format!("{}:instance:{instance}", self.prefix)
    }

    /// The sorted set of instance ids, scored by their last publish time.
    pub(crate) fn index_key(&self) -> String {
        format!("{}:instances", self.prefix)
    }
}

fn valid_prefix(prefix: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&prefix.len())
        && prefix
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control())
}

pub(crate) fn valid_id(id: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// `{hostname}-{pid}-{random}`: readable in a listing, unique across restarts of the same process id.
fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let host = if host.is_empty() {
        "host".to_owned()
    } else {
        host
    };
    // RandomState is seeded from the OS per process: enough to tell two runs with one pid apart.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{host}-{}-{:06x}", std::process::id(), random & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = FleetConfig::new("redis://127.0.0.1/");
        config.validate().unwrap();
        assert!(
            valid_id(config.get_instance_id()),
            "{}",
            config.get_instance_id()
        );
        assert_ne!(
            FleetConfig::new("x").instance_id,
            FleetConfig::new("x").instance_id
        );
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let bad = [
            FleetConfig::new("u").prefix(""),
            FleetConfig::new("u").prefix("a b"),
            FleetConfig::new("u").instance_id("a/b"),
            FleetConfig::new("u").interval(Duration::from_millis(1)),
            FleetConfig::new("u").ttl(Duration::from_secs(5)),
            FleetConfig::new("u").timeout(Duration::ZERO),
            FleetConfig::new("u").max_instances(0),
        ];
        let settings: Vec<_> = bad
            .iter()
            .map(|config| match config.validate() {
                Err(FleetError::InvalidConfig { setting, .. }) => setting,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            settings,
            [
                "prefix",
                "prefix",
                "instance_id",
                "interval",
                "ttl",
                "timeout",
                "max_instances"
            ]
        );
    }

    #[test]
    fn debug_hides_the_url() {
        let config = FleetConfig::new("redis://:secret@host/");
        assert!(!format!("{config:?}").contains("secret"));
    }
}
