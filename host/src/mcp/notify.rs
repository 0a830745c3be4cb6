//! Live MCP peers and the `list_changed` notifications they get when plugins are hot-loaded
//! or removed. One registry per server (stdio, or the gateway's `/mcp` with all its sessions);
//! closed peers are pruned whenever a notification goes out.

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use rmcp::service::{Peer, RoleServer};
use tokio::sync::broadcast::error::RecvError;

use crate::runtime::{Runtime, RuntimeEvent};

/// How long one peer may take to accept a notification before it is skipped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The initialized peers of one MCP server.
#[derive(Default)]
pub struct PeerRegistry {
    peers: Mutex<Vec<Peer<RoleServer>>>,
}

impl PeerRegistry {
    /// Remember a peer that finished `initialize` (dropped again once its transport closes).
    pub fn add(&self, peer: Peer<RoleServer>) {
        let mut peers = self.peers.lock();
        peers.retain(|p| !p.is_transport_closed());
        peers.push(peer);
    }

    /// Peers whose transport is still open.
    pub fn live(&self) -> Vec<Peer<RoleServer>> {
        let mut peers = self.peers.lock();
        peers.retain(|p| !p.is_transport_closed());
        peers.clone()
    }

    /// Tell every live peer that the tool list (and the connector resources) changed.
    pub async fn notify_list_changed(&self) {
        let sends = self.live().into_iter().map(|peer| async move {
            let sent = tokio::time::timeout(SEND_TIMEOUT, async {
                peer.notify_tool_list_changed().await?;
                peer.notify_resource_list_changed().await
            })
            .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!("MCP peer gone while notifying: {error}"),
                Err(_) => {
                    tracing::warn!("MCP peer did not take a list_changed notification in time")
                }
            }
        });
        futures::future::join_all(sends).await;
    }
}

/// Forward the runtime's load and remove events to the peers of `registry` until the registry
/// is dropped.
pub fn forward_runtime_events(runtime: &Runtime, registry: &Arc<PeerRegistry>) {
    let mut events = runtime.subscribe();
    let registry: Weak<PeerRegistry> = Arc::downgrade(registry);
    tokio::spawn(async move {
        loop {
            let changed = match events.recv().await {
                Ok(RuntimeEvent::Loaded { plugin, .. } | RuntimeEvent::Removed { plugin }) => {
                    tracing::debug!(plugin = %plugin, "plugin set changed; notifying MCP peers");
                    true
                }
                Ok(RuntimeEvent::Rejected { .. }) => false,
                // Missed events: something changed, say so once.
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            };
            let Some(registry) = registry.upgrade() else {
                return;
            };
            if changed {
                registry.notify_list_changed().await;
            }
        }
    });
}
