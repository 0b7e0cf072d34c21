//! The short fault suite (`skyhose faults --quick`) through the built binary:
//! SIGKILLs of ingest, of the index and of `run`, Redis restarted and wiped,
//! PostgreSQL crashed mid-batch, relay faults and a flood, each ending with
//! the database compared to the simulator's ground truth. The long suite is
//! `skyhose faults` (see docs/reliability.md).

use std::process::Command;
use std::time::Instant;

#[test]
fn the_quick_fault_suite_passes() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_skyhose"))
        .args(["faults", "--quick"])
        .env_remove("SKYHOSE_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("the skyhose binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "skyhose faults --quick failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for scenario in [
        "kill-ingest",
        "kill-index",
        "kill-run",
        "redis-wipe",
        "flood",
    ] {
        assert!(
            stdout.contains(scenario),
            "no row for {scenario}:\n{stdout}"
        );
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
    eprintln!("{stdout}(in {:.0} s)", started.elapsed().as_secs_f64());
}
