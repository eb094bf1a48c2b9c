//! Schemathesis, from `PyPI`, reads the OpenAPI document query-api serves at `/api` and sends
//! what it generates from it (valid and invalid parameters and bodies) to the live services:
//! the read operations to query-api, the write operations to command-api, as HAProxy routes
//! them. Every check it knows must pass: no server error, and every answer's status, content
//! type, headers and body as the document declares them.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{TestApp, client_program, loopback_only, sample_places, spawn_app};

/// Examples per operation and phase: enough to reach every parameter's edges in a run that
/// takes well under a minute on a busy machine. `GEOLEDGER_SCHEMATHESIS_EXAMPLES` raises it.
const DEFAULT_EXAMPLES: u32 = 15;

/// Longest one schemathesis run may take before the test gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Read operations: every GET but a point's history, which command-api serves.
const READS: &str = r"^GET /(?!points/\{id\}/history)";
/// Write operations, and the history, which command-api serves.
const WRITES: &str = r"^(POST|PATCH|DELETE) |^GET /points/\{id\}/history$";

/// The served document with two of its statements taken out, each true of the service but
/// unfit for a generator that checks every answer against the schema alone:
/// - the read-your-writes token: a token ahead of the projection makes a read wait 5 s and
///   then answer 503 `not-yet-projected`, as documented, a server error by design and most of
///   what Schemathesis would generate for it (pinning its value instead makes Schemathesis
///   report the pinned cases as accepted invalid data); `read_your_writes` tests it;
/// - the `maximum` (and int32 format) of `limit`: advertised as OGC API Features Part 1 does, while a larger
///   limit is lowered to it (as Part 1 permits and the README says) rather than refused,
///   which Schemathesis would count as accepted invalid data; `reads` tests the lowering.
async fn document_for_schemathesis(app: &TestApp) -> tempfile::NamedTempFile {
    let mut document: Value = app
        .http
        .get(app.query.url("/api"))
        .send()
        .await
        .expect("query-api answers")
        .json()
        .await
        .expect("/api is JSON");
    let paths = document["paths"]
        .as_object_mut()
        .expect("the document has paths");
    for operation in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in operation.values_mut() {
            if let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
            {
                parameters.retain(|p| {
                    !matches!(
                        p["name"].as_str(),
                        Some("consistency_token" | "Consistency-Token")
                    )
                });
                for limit in parameters.iter_mut().filter(|p| p["name"] == "limit") {
                    if let Some(schema) = limit["schema"].as_object_mut() {
                        schema.remove("maximum");
                        // int32 is a maximum too, and lowered the same way.
                        schema.remove("format");
                    }
                }
            }
        }
    }
    let file = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("a temporary file");
    std::fs::write(file.path(), document.to_string()).expect("the document is written");
    file
}

async fn schemathesis(document: &Path, base: &str, operations: &str) -> Output {
    let program = client_program("GEOLEDGER_TEST_SCHEMATHESIS", "st");
    let examples = std::env::var("GEOLEDGER_SCHEMATHESIS_EXAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_EXAMPLES)
        .to_string();
    let mut command = tokio::process::Command::new(&program);
    command
        .args(["--no-color", "run"])
        .arg(document)
        .args(["--url", base])
        .args(["--include-name-regex", operations])
        .args(["--checks", "all"])
        // Two checks cannot hold for this document, by design rather than by mistake:
        // - positive_data_acceptance expects every schema-valid request to succeed, but a
        //   `cursor` is opaque (only one this service issued is valid) and `near` needs
        //   `radius`, a dependency OpenAPI 3.0 cannot state;
        // - allow_header_conformance compares `Allow` with every method the document lists
        //   for a path, which describes both services behind HAProxy, while each run here
        //   reaches one service, which allows only its own methods.
        .args([
            "--exclude-checks",
            "positive_data_acceptance,allow_header_conformance",
        ])
        .args(["--max-examples", &examples])
        .args(["--workers", "1"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--request-timeout", "15"])
        .args(["--seed", "9"])
        .args(["--suppress-health-check", "all"])
        // Its report directory and caches go to a temporary place, not the source tree.
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true);
    loopback_only(&mut command);
    // Awaited, not blocked on: the services answering it run on this runtime.
    tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish in {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{program} could not be started: {e}"))
}

/// The number of test cases a run says it generated: the first number on the line after
/// "Test cases:" in its summary.
fn generated(stdout: &str) -> u64 {
    stdout
        .lines()
        .skip_while(|line| !line.contains("Test cases:"))
        .nth(1)
        .and_then(|line| line.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of test cases in:\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_unlike_the_document() {
    let app = spawn_app().await;
    let mut last = 0;
    for place in sample_places().iter().take(20) {
        last = app.create_point(&place.to_json()).await.sequence;
    }
    app.wait_projected(last).await;

    let document = document_for_schemathesis(&app).await;
    let mut total = 0;
    for (side, base, operations) in [
        ("reads", app.query.url(""), READS),
        ("writes", app.command.url(""), WRITES),
    ] {
        let output = schemathesis(document.path(), &base, operations).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "schemathesis found problems in the {side}:\n{stdout}\n{stderr}"
        );
        let cases = generated(&stdout);
        eprintln!("schemathesis, {side}: {cases} test cases generated");
        total += cases;
    }
    eprintln!("schemathesis: {total} test cases generated in all");
}
