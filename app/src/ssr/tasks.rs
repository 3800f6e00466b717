//! Tasks spawned for one request's work in the background (a streamed answer, a feedback
//! forwarded to MLflow). A panic in one is caught and logged with its message and the
//! task's name instead of vanishing; the process goes on. (The process's long-running
//! loops are supervised by the server, which stops the process when one dies.)

use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// Spawns `work`, logging a panic in it as an error naming `task`.
pub fn spawn<F>(task: &'static str, work: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(panic) = AssertUnwindSafe(work).catch_unwind().await {
            tracing::error!(task, panic = %panic_message(panic.as_ref()), "a background task panicked");
        }
    })
}

/// The text of a panic payload (a `&str` or `String` message; anything else is unnamed).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_panicking_task_is_caught() {
        let h = super::spawn("test", async { panic!("boom") });
        assert!(h.await.is_ok(), "the panic did not escape the task");
    }
}
