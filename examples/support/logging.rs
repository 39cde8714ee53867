//! The examples' logging: `tracing` to stderr, filtered by `RUST_LOG` (warnings by default),
//! coloured only on a terminal.

/// Installs the subscriber once; later calls (tests that run several mains) are no-ops.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
