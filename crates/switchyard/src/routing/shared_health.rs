//! Cooldowns shared by replicas (with `shared:`): a replica that cools a deployment says so in
//! Redis (the deployment's key, holding the cooldown's end in Unix milliseconds and expiring
//! with it), and every
//! replica reads the keys of its deployments twice a second and cools them as long. So a
//! provider that fails is left alone by every replica after the first one saw it fail, instead
//! of each replica paying its own failed attempts. Only the start of a cooldown travels: each
//! replica still probes a deployment itself when its cooldown ends.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Deployment, RoutingTable, now_ms};
use crate::governance::shared::Shared;

/// How often a replica reads the cooldowns the others set.
const READ_EVERY: Duration = Duration::from_millis(500);

/// Cooldowns waiting to be written; a full queue drops one (the next failure announces again).
const QUEUE: usize = 256;

static ANNOUNCE: OnceLock<mpsc::Sender<(String, u64)>> = OnceLock::new();

/// Tells the other replicas that deployment `id` cools until `until_ms` (nothing without
/// shared state). Never waits.
pub fn announce(id: &str, until_ms: u64) {
    if let Some(tx) = ANNOUNCE.get() {
        let _ = tx.try_send((id.to_owned(), until_ms));
    }
}

/// Unix milliseconds: what replicas' cooldown ends are written in (each one's `now_ms` counts
/// from its own start).
fn wall_now_ms() -> u64 {
    u64::try_from(crate::governance::now_unix_ms()).unwrap_or(0)
}

/// Starts writing this replica's cooldowns and reading the others', for the process's life.
pub fn start(table: &RoutingTable, shared: Arc<Shared>) {
    let (tx, mut rx) = mpsc::channel::<(String, u64)>(QUEUE);
    if ANNOUNCE.set(tx).is_err() {
        // One table per process; a second start (tests building several apps) shares the first.
        return;
    }
    let mut deployments: Vec<(String, Arc<Deployment>)> = table
        .deployments()
        .map(|(_, d)| (d.id.to_string(), d.clone()))
        .collect();
    deployments.sort_by(|a, b| a.0.cmp(&b.0));
    let writer = shared.clone();
    tokio::spawn(async move {
        while let Some((id, until_ms)) = rx.recv().await {
            let left = until_ms.saturating_sub(now_ms());
            if left == 0 {
                continue;
            }
            // In Redis as wall-clock time: each replica's own clock counts from its start.
            let until_wall = wall_now_ms() + left;
            if let Err(e) = writer.cooldown_put(&id, until_wall, left).await {
                tracing::warn!(deployment = %id, "cannot share a cooldown: {e}");
            }
        }
    });
    if deployments.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut ids: Vec<&str> = deployments.iter().map(|(id, _)| id.as_str()).collect();
        ids.dedup();
        let ids: Vec<String> = ids.into_iter().map(str::to_owned).collect();
        loop {
            tokio::time::sleep(READ_EVERY).await;
            match shared.cooldowns(&ids).await {
                Ok(ends) => {
                    let (now, wall) = (now_ms(), wall_now_ms());
                    for (id, until_wall) in ids.iter().zip(ends) {
                        let Some(until_wall) = until_wall.filter(|&u| u > wall) else {
                            continue;
                        };
                        let until_ms = now + (until_wall - wall);
                        for (_, d) in deployments.iter().filter(|(d_id, _)| d_id == id) {
                            d.health.cool_until(until_ms);
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot read the cooldowns other replicas set: {e}"),
            }
        }
    });
}
