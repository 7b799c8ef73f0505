//! A cache of KV records that is trusted only while a watch of the same records invalidates
//! it. The API key checker remembers verified keys in one; the flow registry remembers which
//! names are registered (and which are not) in another, so a submit by name costs a map
//! lookup instead of a KV read.
//!
//! The rules, which make the cache at most one watch delivery behind the bucket: every change
//! the watch sees forgets that key and bumps an epoch; a lookup remembers what it read only if
//! the epoch did not move while it was reading (a change that raced it is not papered over);
//! while the watch is down nothing is remembered and everything is forgotten.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::store::StoreError;

/// Re-watching after a break: 100 ms doubling to 2 s, jittered.
const RETRY: crate::backoff::Backoff =
    crate::backoff::Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(2));

/// Values by key, invalidated by a KV watch (see the module docs).
#[derive(Debug)]
pub struct WatchedCache<V> {
    map: Mutex<HashMap<String, V>>,
    /// Bumped on every change the watch sees.
    epoch: AtomicU64,
    /// True while the watch runs; nothing is remembered otherwise.
    watching: AtomicBool,
    /// Entries beyond this are not added (a bound on memory, never on correctness).
    max: usize,
}

impl<V: Clone> WatchedCache<V> {
    pub fn new(max: usize) -> WatchedCache<V> {
        WatchedCache {
            map: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            watching: AtomicBool::new(false),
            max,
        }
    }

    /// The remembered value of `key`.
    pub fn get(&self, key: &str) -> Option<V> {
        self.map.lock().ok()?.get(key).cloned()
    }

    /// Take this before reading the bucket and hand it to [`WatchedCache::remember`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Remembers what a read that started at `epoch` found, unless a change was seen since,
    /// the watch is down or the cache is full.
    pub fn remember(&self, key: &str, value: V, epoch: u64) {
        if !self.watching.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut map) = self.map.lock() else { return };
        // Under the lock: `forget` bumps the epoch before it takes the lock, so a change seen
        // after this check removes what is inserted here.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if map.len() < self.max || map.contains_key(key) {
            map.insert(key.to_owned(), value);
        }
    }

    /// Forgets `key` (a change to its record), or everything.
    pub fn forget(&self, key: Option<&str>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut map) = self.map.lock() {
            match key {
                Some(k) => {
                    map.remove(k);
                }
                None => map.clear(),
            }
        }
    }

    /// True while the invalidating watch runs.
    pub fn is_watching(&self) -> bool {
        self.watching.load(Ordering::SeqCst)
    }

    /// Runs the invalidating watch until `stop`: `changes` opens a stream of the keys whose
    /// records change from now on; each forgets its key. After a break, everything is
    /// forgotten and the watch reopened. `what` names the bucket in log lines.
    pub async fn follow<S, F, Fut>(&self, what: &'static str, stop: CancellationToken, changes: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<S, StoreError>>,
        S: Stream<Item = Result<String, StoreError>>,
    {
        let mut attempt = 0u32;
        while !stop.is_cancelled() {
            match changes().await {
                Ok(stream) => {
                    attempt = 0;
                    self.watching.store(true, Ordering::SeqCst);
                    let mut stream = std::pin::pin!(stream);
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            change = stream.next() => match change {
                                Some(Ok(key)) => self.forget(Some(&key)),
                                Some(Err(e)) => {
                                    tracing::warn!(error = %e, what, "cache watch broke; re-watching");
                                    break;
                                }
                                None => break,
                            },
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, what, "cannot watch yet"),
            }
            self.watching.store(false, Ordering::SeqCst);
            self.forget(None);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY.jittered(attempt)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watching(max: usize) -> WatchedCache<u32> {
        let c = WatchedCache::new(max);
        c.watching.store(true, Ordering::SeqCst);
        c
    }

    #[test]
    fn nothing_is_remembered_without_the_watch() {
        let c = WatchedCache::new(10);
        c.remember("a", 1, c.epoch());
        assert_eq!(c.get("a"), None);
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_remembered() {
        let c = watching(10);
        let epoch = c.epoch();
        c.forget(Some("other"));
        c.remember("a", 1, epoch);
        assert_eq!(c.get("a"), None);
        c.remember("a", 2, c.epoch());
        assert_eq!(c.get("a"), Some(2));
        c.forget(Some("a"));
        assert_eq!(c.get("a"), None);
    }

    #[test]
    fn a_full_cache_adds_nothing_but_still_updates() {
        let c = watching(1);
        c.remember("a", 1, c.epoch());
        c.remember("b", 1, c.epoch());
        assert_eq!(c.get("b"), None);
        c.remember("a", 3, c.epoch());
        assert_eq!(c.get("a"), Some(3));
    }

    #[tokio::test]
    async fn the_watch_forgets_changed_keys_and_everything_when_it_breaks() {
        let c = std::sync::Arc::new(WatchedCache::<u32>::new(10));
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<String, StoreError>>();
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(rx)));
        let stop = CancellationToken::new();
        let follower = {
            let (c, stop) = (c.clone(), stop.clone());
            tokio::spawn(async move {
                c.follow("test", stop, || {
                    let rx = rx.clone();
                    async move {
                        match rx.lock().await.take() {
                            Some(rx) => Ok(rx),
                            None => Err(StoreError::unavailable("watch", "gone".into())),
                        }
                    }
                })
                .await
            })
        };
        while !c.is_watching() {
            tokio::task::yield_now().await;
        }
        c.remember("a", 1, c.epoch());
        c.remember("b", 2, c.epoch());
        tx.unbounded_send(Ok("a".into())).unwrap();
        while c.get("a").is_some() {
            tokio::task::yield_now().await;
        }
        assert_eq!(c.get("b"), Some(2));
        drop(tx);
        while c.get("b").is_some() {
            tokio::task::yield_now().await;
        }
        assert!(!c.is_watching());
        stop.cancel();
        follower.await.unwrap();
    }
}
