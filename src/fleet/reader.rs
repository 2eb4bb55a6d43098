//! Reading the fleet: every live instance's publish, merged route by route.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;
use redis::Value;

use crate::fleet::codec::{self, PublishedRoute};
use crate::fleet::error::FleetError;
use crate::fleet::publisher::{FleetShared, unix_ms};
use crate::fleet::snapshot::{FleetInstance, FleetRoute, FleetSnapshot};
use crate::monitor::route_entry::percentiles;

/// Reads every instance the index names (the most recent `max_instances`) and merges their histograms.
pub(crate) async fn read(shared: &FleetShared) -> Result<FleetSnapshot, FleetError> {
    let config = &shared.config;
    let index = config.index_key();
    let limit = isize::try_from(config.max_instances).unwrap_or(isize::MAX) - 1;
    let ids: Vec<String> = shared
        .run("list instances", |mut connection| async move {
            redis::cmd("ZREVRANGE")
                .arg(&index)
                .arg(0)
                .arg(limit)
                .query_async(&mut connection)
                .await
        })
        .await?;
    let mut pipe = redis::pipe();
    // One transaction, so each publish and its remaining time are read together. A key of another type under
    // our prefix fails its own GET only: keep the other replies and skip that entry.
    pipe.atomic().ignore_errors();
    for id in &ids {
        let key = config.instance_key(id);
        pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
    }
    let values: Vec<Value> = if ids.is_empty() {
        Vec::new()
    } else {
        shared
            .run("read instances", |mut connection| async move {
                pipe.query_async(&mut connection).await
            })
            .await?
    };

    let mut instances = Vec::new();
    let mut by_route: BTreeMap<(String, String), Vec<PublishedRoute>> = BTreeMap::new();
    let mut skipped_instances = 0u64;
    let mut skipped_routes = 0u64;
    for (id, pair) in ids.iter().zip(values.chunks(2)) {
        let (bytes, pttl) = match pair {
            // Expired since the index named it: the instance aged out.
            [Value::Nil, _] => continue,
            [Value::BulkString(bytes), Value::Int(pttl)] => (bytes, *pttl),
            _ => {
                skipped_instances += 1;
                note_skip(shared, id, "not a string with a time to live");
                continue;
            }
        };
        let publish = match codec::decode(bytes) {
            Ok(publish) => publish,
            Err(error) => {
                skipped_instances += 1;
                note_skip(shared, id, &error.to_string());
                continue;
            }
        };
        skipped_routes += publish.skipped_routes;
        // Redis's own clock: TTL set minus TTL left. Without an expiry (not ours), fall back to our clock.
        let age_ms = match u64::try_from(pttl) {
            Ok(left) => publish.ttl_ms.saturating_sub(left),
            Err(_) => unix_ms().saturating_sub(publish.published_at_unix_ms),
        };
        instances.push(FleetInstance {
            id: id.clone(),
            age_ms,
            published_at_unix_ms: publish.published_at_unix_ms,
            started_at_unix_ms: publish.started_at_unix_ms,
            routes: publish.routes.len(),
            requests: publish.routes.iter().map(|r| r.lifetime.len()).sum(),
            this_instance: *id == config.instance_id,
        });
        for route in publish.routes {
            by_route
                .entry((route.route.clone(), route.method.clone()))
                .or_default()
                .push(route);
        }
    }
    if skipped_routes > 0 {
        shared
            .skipped_entries
            .fetch_add(skipped_routes, Ordering::Relaxed);
    }
    instances.sort_by_key(|instance| instance.age_ms);

    let mut routes = Vec::with_capacity(by_route.len());
    for ((route, method), parts) in by_route {
        match merge(&parts) {
            Some((lifetime, sum_us, max_us, window)) => routes.push(FleetRoute {
                method,
                route,
                instances: parts.len(),
                lifetime: percentiles(&lifetime, Some((sum_us, max_us))),
                window_5m: percentiles(&window, None),
            }),
            None => skipped_routes += 1,
        }
    }
    Ok(FleetSnapshot {
        taken_at_unix_ms: unix_ms(),
        instance_id: config.instance_id.clone(),
        instances,
        routes,
        skipped_instances,
        skipped_routes,
        stats: shared.stats(),
    })
}

/// Counts an unreadable entry and logs it at a rate limit.
fn note_skip(shared: &FleetShared, id: &str, why: &str) {
    shared.skipped_entries.fetch_add(1, Ordering::Relaxed);
    if let Some(suppressed) = shared.read_log.allow() {
        tracing::warn!(
            instance = %id,
            suppressed,
            "perfscope fleet entry skipped: {why}"
        );
    }
}

/// The merged lifetime histogram with its exact sum and maximum, and the merged five-minute window; `None`
/// when the parts cannot be merged.
fn merge(parts: &[PublishedRoute]) -> Option<(Histogram<u64>, u64, u64, Histogram<u64>)> {
    let lifetimes: Vec<&Histogram<u64>> = parts.iter().map(|p| &p.lifetime).collect();
    let windows: Vec<&Histogram<u64>> = parts.iter().map(|p| &p.window_5m).collect();
    let sum_us = parts
        .iter()
        .fold(0u64, |sum, p| sum.saturating_add(p.sum_us));
    let max_us = parts.iter().map(|p| p.max_us).max().unwrap_or(0);
    Some((sum(&lifetimes)?, sum_us, max_us, sum(&windows)?))
}

/// The sum of `histograms`, at the coarsest precision among them: instances configured with different
/// precisions merge into bins that every one of them can fill exactly.
fn sum(histograms: &[&Histogram<u64>]) -> Option<Histogram<u64>> {
    let digits = histograms.iter().map(|h| h.sigfig()).min()?;
    let highest = histograms.iter().map(|h| h.high()).max()?.max(2);
    let mut total = Histogram::<u64>::new_with_bounds(1, highest, digits).ok()?;
    for histogram in histograms {
        total.add(*histogram).ok()?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(values: &[u64], digits: u8) -> PublishedRoute {
        let mut lifetime = Histogram::<u64>::new_with_bounds(1, 60_000_000, digits).unwrap();
        for &value in values {
            lifetime.record(value).unwrap();
        }
        PublishedRoute {
            method: "GET".into(),
            route: "/r".into(),
            sum_us: values.iter().sum(),
            max_us: values.iter().copied().max().unwrap_or(0),
            window_5m: lifetime.clone(),
            lifetime,
        }
    }

    #[test]
    fn merging_gives_the_union() {
        let a: Vec<u64> = (1..=900).map(|v| v * 100).collect();
        let b: Vec<u64> = (1..=100).map(|v| 1_000_000 + v * 1_000).collect();
        let (merged, sum_us, max_us, _) = merge(&[published(&a, 2), published(&b, 2)]).unwrap();
        assert_eq!(merged.len(), 1_000);
        assert_eq!(max_us, 1_100_000);
        assert_eq!(sum_us, a.iter().sum::<u64>() + b.iter().sum::<u64>());
        let mut union = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).unwrap();
        for &value in a.iter().chain(&b) {
            union.record(value).unwrap();
        }
        for quantile in [0.5, 0.95, 0.99, 1.0] {
            assert_eq!(
                merged.value_at_quantile(quantile),
                union.value_at_quantile(quantile)
            );
        }
    }

    #[test]
    fn different_precisions_merge_at_the_coarsest() {
        let merged = sum(&[
            &published(&[1_000], 3).lifetime,
            &published(&[2_000], 1).lifetime,
        ])
        .unwrap();
        assert_eq!(merged.sigfig(), 1);
        assert_eq!(merged.len(), 2);
    }
}
