//! Waiting for the operator's stop signal (SIGINT or SIGTERM).

use tracing::warn;

/// Resolves when the process receives SIGINT (Ctrl-C) or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the broker"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        warn!(error = %e, "cannot listen for SIGINT");
        std::future::pending::<()>().await;
    }
}

/// Resolves once the broker's shutdown flag turns true (or its sender is gone).
pub async fn requested(flag: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard returned by wait_for is not Send; drop it before returning.
    let _ = flag.wait_for(|stop| *stop).await.is_ok();
}
