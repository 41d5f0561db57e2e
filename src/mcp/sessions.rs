//! The Streamable HTTP endpoint's sessions, counted against the server's
//! session limit (CCX_MAX_SESSIONS) together with WebSocket sessions: the
//! SDK's session manager, with one permit of the server's session semaphore
//! held by every open session. The permit is taken when `initialize`
//! creates the session and given back when the session ends, however it
//! ends (DELETE, 5 minutes idle, shutdown): the SDK closes every session
//! through [`SessionManager::close_session`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::{
    EventStore, ServerSseMessage, SessionId, SessionManager,
};
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `M`'s sessions, at most as many at once as `permits` allows.
pub struct CappedSessions<M> {
    inner: M,
    permits: Arc<Semaphore>,
    held: Mutex<HashMap<SessionId, OwnedSemaphorePermit>>,
}

#[derive(Debug, Error)]
pub enum CappedError<E: std::error::Error + 'static> {
    #[error("session limit reached: every session the server allows is open")]
    Full,
    #[error(transparent)]
    Inner(E),
}

impl<M: SessionManager> CappedSessions<M> {
    pub fn new(inner: M, permits: Arc<Semaphore>) -> Self {
        CappedSessions {
            inner,
            permits,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, OwnedSemaphorePermit>> {
        // A panic elsewhere cannot leave the map half-changed: insert and
        // remove are single calls.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<M: SessionManager> SessionManager for CappedSessions<M> {
    type Error = CappedError<M::Error>;
    type Transport = M::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| CappedError::Full)?;
        let (id, transport) = self
            .inner
            .create_session()
            .await
            .map_err(CappedError::Inner)?;
        self.held().insert(id.clone(), permit);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner
            .initialize_session(id, message)
            .await
            .map_err(CappedError::Inner)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await.map_err(CappedError::Inner)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.inner.close_session(id).await;
        self.held().remove(id);
        closed.map_err(CappedError::Inner)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner
            .create_stream(id, message)
            .await
            .map_err(CappedError::Inner)
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner
            .accept_message(id, message)
            .await
            .map_err(CappedError::Inner)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner
            .create_standalone_stream(id)
            .await
            .map_err(CappedError::Inner)
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner
            .resume(id, last_event_id)
            .await
            .map_err(CappedError::Inner)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}
