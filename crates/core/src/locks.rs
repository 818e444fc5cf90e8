//! Per-key async locks: calls on the same sandbox are serialised, calls on
//! different sandboxes run in parallel.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Table = Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>;

#[derive(Default, Clone)]
pub struct KeyedLocks {
    table: Table,
}

pub struct KeyedGuard {
    guard: Option<OwnedMutexGuard<()>>,
    mutex: Arc<AsyncMutex<()>>,
    key: String,
    table: Table,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> KeyedGuard {
        let mutex = self
            .table
            .lock()
            .entry(key.to_string())
            .or_default()
            .clone();
        let guard = mutex.clone().lock_owned().await;
        KeyedGuard {
            guard: Some(guard),
            mutex,
            key: key.to_string(),
            table: self.table.clone(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().len()
    }
}

impl Drop for KeyedGuard {
    fn drop(&mut self) {
        self.guard.take();
        let mut table = self.table.lock();
        // The table and this guard hold the only references: nobody waits.
        if Arc::strong_count(&self.mutex) == 2 {
            table.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn same_key_serialises_other_keys_do_not() {
        let locks = KeyedLocks::default();
        let a = locks.lock("a").await;
        let _b = tokio::time::timeout(Duration::from_secs(1), locks.lock("b"))
            .await
            .expect("another key is free");
        let locks2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _a = locks2.lock("a").await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(a);
        waiter.await.unwrap();
    }

    #[tokio::test]
    async fn entries_are_dropped_when_unused() {
        let locks = KeyedLocks::default();
        drop(locks.lock("x").await);
        assert_eq!(locks.len(), 0);
    }
}
