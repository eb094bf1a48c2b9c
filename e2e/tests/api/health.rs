//! The `--healthcheck` probe the container images rely on, against the real services.

use geoledger_common::health::{ProbeError, probe_status};

use crate::helpers::spawn_app;

#[tokio::test]
async fn each_running_service_passes_the_probe_and_a_stopped_one_fails_it() {
    let mut app = spawn_app().await;
    for (name, addr) in [
        ("command-api", app.command.addr),
        ("query-api", app.query.addr),
        ("projector", app.projector.addr),
    ] {
        let probed = tokio::task::spawn_blocking(move || probe_status(addr))
            .await
            .unwrap();
        assert!(probed.is_ok(), "{name} should pass its probe: {probed:?}");
    }

    let addr = app.query.addr;
    app.query.stop().await;
    let probed = tokio::task::spawn_blocking(move || probe_status(addr))
        .await
        .unwrap();
    assert!(
        matches!(probed, Err(ProbeError::Io { .. })),
        "a stopped query-api should fail the probe: {probed:?}"
    );
}
