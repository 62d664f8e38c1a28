//! Redis: one multiplexed connection that reconnects by itself (`ConnectionManager`), shared
//! by every request. Used for sessions and revocation, rate limits, pub/sub between nodes and
//! queues (Redis Streams).

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisSettings;

/// A cheap-to-clone Redis handle.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
}

impl Redis {
    /// Connect (bounded by `redis.timeout_s`); later drops are repaired by the manager.
    pub async fn connect(settings: &RedisSettings) -> anyhow::Result<Redis> {
        let client = redis::Client::open(settings.url.expose())
            .context("redis.url is not a valid Redis URL")?;
        let timeout = Duration::from_secs(settings.timeout_s);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(3);
        let conn = tokio::time::timeout(
            timeout,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .context("timed out connecting to Redis (redis.url)")?
        .context("cannot connect to Redis (redis.url)")?;
        Ok(Redis { client, conn })
    }

    /// The shared multiplexed connection (clone it per use; clones share one socket).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The client, for dedicated connections (pub/sub subscribers need their own).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Readiness probe.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut c = self.conn();
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
    }
}
