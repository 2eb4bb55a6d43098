//! Keys, tags, prefixes, patterns, clear, and the type-erased handle.

use std::time::Duration;

use perfscope::cache::{Cache, CacheKey, Loaded};

use crate::builder;

#[test]
fn invalidating_a_tag_hides_every_tagged_entry_out_of_100_000() {
    let cache: Cache<u64, u64> = builder().max_entries(200_000).build().unwrap();
    for i in 0..100_000_u64 {
        if i.is_multiple_of(100) {
            cache.insert_with_tags(i, i, ["hot", "all"]);
        } else {
            cache.insert_with_tags(i, i, ["all"]);
        }
    }
    assert_eq!(cache.len(), 100_000);
    let tagged = (0..100_000_u64).step_by(100);
    assert_eq!(
        tagged.clone().filter(|i| cache.get(i).is_some()).count(),
        1_000
    );
    cache.invalidate_tag("hot");
    assert_eq!(tagged.clone().filter(|i| cache.get(i).is_some()).count(), 0);
    // Everything else is untouched.
    let others = (0..100_000_u64).filter(|i| !i.is_multiple_of(100));
    assert_eq!(others.filter(|i| cache.get(i).is_some()).count(), 99_000);
    // The reads above removed the dead entries they met.
    assert_eq!(cache.len(), 99_000);
    assert_eq!(cache.stats().evictions.tag, 1_000);
}

#[test]
fn invalidate_removes_one_key() {
    let cache: Cache<String, u32> = builder().build().unwrap();
    cache.insert("a".into(), 1);
    cache.insert("b".into(), 2);
    assert!(cache.invalidate(&"a".to_owned()));
    assert!(!cache.invalidate(&"a".to_owned()));
    assert_eq!(cache.get(&"a".to_owned()), None);
    assert_eq!(cache.get(&"b".to_owned()), Some(2));
}

#[test]
fn a_tag_invalidated_before_its_entry_was_written_does_not_touch_it() {
    let cache: Cache<u8, u8> = builder().build().unwrap();
    cache.invalidate_tag("t");
    cache.insert_with_tags(1, 1, ["t"]);
    assert_eq!(cache.get(&1), Some(1));
    cache.invalidate_tags(["x", "t"]);
    assert_eq!(cache.get(&1), None);
}

#[test]
fn prefixes_cover_the_key_and_everything_under_it() {
    let cache: Cache<CacheKey, u32> = builder().build().unwrap();
    let key = |parts: &[&str]| {
        parts[1..]
            .iter()
            .fold(CacheKey::new(parts[0]), |k, p| k.part(p))
    };
    for parts in [
        &["product", "42"][..],
        &["product", "42", "details"],
        &["product", "42", "price", "eur"],
        &["product", "420"],
        &["product", "7", "details"],
        &["order", "42"],
    ] {
        cache.insert(key(parts), 1);
    }
    cache.invalidate_prefix("product:42");
    let alive = |parts: &[&str]| cache.get(&key(parts)).is_some();
    assert!(!alive(&["product", "42"]));
    assert!(!alive(&["product", "42", "details"]));
    assert!(!alive(&["product", "42", "price", "eur"]));
    assert!(alive(&["product", "420"]));
    assert!(alive(&["product", "7", "details"]));
    assert!(alive(&["order", "42"]));
    cache.invalidate_prefix("product:*");
    assert!(!alive(&["product", "420"]));
    assert!(!alive(&["product", "7", "details"]));
    assert!(alive(&["order", "42"]));
    assert_eq!(cache.stats().invalidations.prefixes, 2);
}

#[test]
fn string_keys_have_prefixes_too() {
    let cache: Cache<String, u32> = builder().build().unwrap();
    cache.insert("customer:9:orders".into(), 1);
    cache.insert("customer:9".into(), 1);
    cache.insert("customer:90".into(), 1);
    cache.invalidate_prefix("customer:9");
    assert_eq!(cache.get(&"customer:9:orders".into()), None);
    assert_eq!(cache.get(&"customer:9".into()), None);
    assert_eq!(cache.get(&"customer:90".into()), Some(1));
}

#[test]
fn glob_invalidation_scans_and_removes_matches() {
    let cache: Cache<CacheKey, u32> = builder().build().unwrap();
    for id in 0..100 {
        cache.insert(CacheKey::new("product").part(id).part("details"), id);
        cache.insert(CacheKey::new("product").part(id).part("price"), id);
    }
    assert_eq!(cache.invalidate_matching("product:*:details"), 100);
    assert_eq!(cache.len(), 100);
    assert!(
        cache
            .get(&CacheKey::new("product").part(3).part("price"))
            .is_some()
    );
    // Integer keys have no text: nothing matches.
    let numbers: Cache<u32, u32> = builder().build().unwrap();
    numbers.insert(1, 1);
    assert_eq!(numbers.invalidate_matching("*"), 0);
    assert_eq!(numbers.get(&1), Some(1));
}

#[test]
fn clear_is_an_epoch_and_the_sweeper_frees_the_entries() {
    let cache: Cache<u32, u32> = builder().build().unwrap();
    for i in 0..1000 {
        cache.insert(i, i);
    }
    cache.clear();
    assert_eq!(cache.get(&5), None);
    assert!(cache.len() >= 999);
    cache.run_pending_tasks();
    assert_eq!(cache.len(), 0);
    cache.insert(5, 6);
    assert_eq!(cache.get(&5), Some(6));
    let stats = cache.stats();
    assert_eq!(stats.evictions.explicit, 1000);
    assert_eq!(stats.invalidations.clears, 1);
}

#[tokio::test]
async fn tags_chosen_by_the_loader() {
    let cache: Cache<CacheKey, String> = builder().build().unwrap();
    let key = CacheKey::new("product").part(1);
    let value = cache
        .get_or_compute(&key, || async {
            Loaded::new("widget".to_owned())
                .tags(["supplier:7"])
                .ttl(Duration::from_secs(60))
        })
        .await
        .unwrap();
    assert_eq!(value, "widget");
    assert_eq!(cache.get(&key).as_deref(), Some("widget"));
    cache.invalidate_tag("supplier:7");
    assert_eq!(cache.get(&key), None);
}

#[test]
fn the_handle_erases_types() {
    let products: Cache<CacheKey, u32> = builder().name("products").build().unwrap();
    let sessions: Cache<String, u32> = builder().name("sessions").build().unwrap();
    let numbers: Cache<u64, u32> = builder().name("numbers").build().unwrap();
    products.insert(CacheKey::new("product").part(1), 1);
    products.insert(CacheKey::new("product").part(2), 2);
    products.insert_with_tags(CacheKey::new("product").part(3), 3, ["t"]);
    sessions.insert("s:1".into(), 1);
    numbers.insert(1, 1);
    let handles = [products.handle(), sessions.handle(), numbers.handle()];
    assert_eq!(
        handles.iter().map(|h| h.name()).collect::<Vec<_>>(),
        ["products", "sessions", "numbers"]
    );
    assert!(handles[0].invalidate_key_str("product:1"));
    assert!(!handles[0].invalidate_key_str(r"bad\key"));
    assert!(handles[1].invalidate_key_str("s:1"));
    assert!(!handles[2].invalidate_key_str("1"));
    handles[0].invalidate_tag("t");
    assert_eq!(products.get(&CacheKey::new("product").part(3)), None);
    handles[0].invalidate_prefix("product:2");
    assert_eq!(products.get(&CacheKey::new("product").part(2)), None);
    assert_eq!(handles[0].stats().name, "products");
    assert_eq!(handles[0].invalidate_matching("*"), 0);
    handles[2].clear();
    assert_eq!(numbers.get(&1), None);
    handles[2].run_pending_tasks();
    assert_eq!(numbers.len(), 0);
    assert!(format!("{:?}", handles[0]).contains("products"));
}

#[test]
fn the_tag_table_is_bounded_and_overflow_stays_correct() {
    let cache: Cache<u32, u32> = builder().max_tags(10).build().unwrap();
    for i in 0..100 {
        cache.insert_with_tags(i, i, [format!("tag{i}")]);
    }
    let stats = cache.stats();
    assert_eq!(stats.tags.interned, 10);
    assert_eq!(stats.tags.overflowed, 90);
    // Every tag still invalidates its entries (overflowed ones may take bucket-mates with them).
    for i in (0..100).step_by(7) {
        cache.invalidate_tag(&format!("tag{i}"));
        assert_eq!(cache.get(&i), None, "tag{i}");
    }
    let survivors = (0..100).filter(|i| cache.get(i).is_some()).count();
    assert!(survivors >= 10 - 2, "{survivors}");
}

#[test]
fn insert_since_is_refused_after_any_invalidation_that_concerns_it() {
    let cache: Cache<CacheKey, u32> = builder().build().unwrap();
    let key = CacheKey::new("product").part(42).part("details");
    let loaded = || Loaded::new(1).tag("products");
    type Invalidate = fn(&Cache<CacheKey, u32>, &CacheKey);
    let cases: [(&str, Invalidate); 6] = [
        ("key", |c, k| {
            c.invalidate(k);
        }),
        ("tag", |c, _| c.invalidate_tag("products")),
        ("prefix", |c, _| c.invalidate_prefix("product:42")),
        ("pattern", |c, _| {
            c.invalidate_matching("product:*:details");
        }),
        ("prefix of the exact key", |c, _| {
            c.invalidate_prefix("product:42:details")
        }),
        ("clear", |c, _| c.clear()),
    ];
    for (name, invalidate) in cases {
        let ticket = cache.ticket();
        invalidate(&cache, &key);
        assert!(
            !cache.insert_since(ticket, key.clone(), loaded()),
            "{name}: refused"
        );
        assert_eq!(cache.get(&key), None, "{name}");
        // A ticket taken after the invalidation stores.
        let ticket = cache.ticket();
        assert!(cache.insert_since(ticket, key.clone(), loaded()), "{name}");
        assert_eq!(cache.get(&key), Some(1), "{name}");
    }
    // Invalidations that do not concern the value leave it alone. An unrelated key shares the key's stamp with
    // probability 1/1,024 (hashes are seeded per run), and then refuses conservatively: so each round takes
    // its own ticket, and a refusal stays a rare event instead of refusing every later round.
    let ticket = cache.ticket();
    cache.invalidate_tag("orders");
    cache.invalidate_prefix("order");
    let unrelated_tag_and_prefix = cache.insert_since(ticket, key.clone(), Loaded::new(0));
    let stored = (0..100_u32)
        .filter(|i| {
            let ticket = cache.ticket();
            cache.invalidate(&CacheKey::new("order").part(*i));
            cache.insert_since(ticket, key.clone(), Loaded::new(*i))
        })
        .count()
        + usize::from(unrelated_tag_and_prefix);
    assert!(stored > 90, "{stored} of 101 stored");
    // A ticket of another cache, and `no_store`, store nothing.
    let other: Cache<CacheKey, u32> = builder().build().unwrap();
    assert!(!cache.insert_since(other.ticket(), key.clone(), loaded()));
    assert!(!cache.insert_since(cache.ticket(), key.clone(), loaded().no_store()));
}

#[tokio::test]
async fn insert_since_takes_the_slot_of_a_load_in_flight() {
    let cache: Cache<u32, u32> = builder().build().unwrap();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let load = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_or_compute(&1, move || async move {
                    let _ = started_tx.send(());
                    let _ = finish_rx.await;
                    10
                })
                .await
        }
    });
    started_rx.await.unwrap();
    assert!(cache.insert_since(cache.ticket(), 1, Loaded::new(20)));
    assert_eq!(cache.get(&1), Some(20));
    finish_tx.send(()).unwrap();
    // The load's caller gets its value; the newer insert stays.
    assert_eq!(load.await.unwrap().unwrap(), 10);
    assert_eq!(cache.get(&1), Some(20));
}
