//! The shutdown signal every binary waits on.

/// Resolves on Ctrl-C or SIGTERM, whichever comes first.
pub async fn signal() {
    let ctrl_c = async {
        // Without a handler the process would still stop on Ctrl-C, just not gracefully.
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
