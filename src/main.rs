//! `ordercore [serve]` runs the server; `ordercore token --user U [--admin]`
//! prints a bearer token signed with the configured secret.

use ordercore::auth;
use ordercore::config::{self, Config, ConfigError, Invocation, LogFormat};
use std::io::Write;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: the core allocates many small,
/// short-lived values on several threads, where glibc's arenas spend a
/// large share of the CPU (measured with `--bench core`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match config::load_from_process() {
        Ok(Invocation::Serve(config)) => serve(config),
        Ok(Invocation::Token(request)) => {
            let mut config = request.config;
            if let Err(e) = resolve_secrets(&mut config) {
                return fail(&e);
            }
            let secret = config.jwt_secret.unwrap_or_default();
            match auth::mint(&secret, &request.user, request.admin, request.ttl) {
                Ok(token) => {
                    let _ = writeln!(std::io::stdout(), "{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(e) => fail(&e),
    }
}

/// Resolves the secrets; secrets generated now are printed once, on
/// stderr — by `token` on a fresh data dir as well, whose stdout carries
/// only the token for scripts — since the callback secret is needed to sign.
fn resolve_secrets(config: &mut Config) -> Result<(), ConfigError> {
    if let Some(message) = config::resolve_secrets(config)? {
        let _ = writeln!(std::io::stderr(), "{message}");
    }
    Ok(())
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "ordercore: {e}");
    ExitCode::from(2)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORDERCORE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(mut config: Config) -> ExitCode {
    init_tracing(config.log_format);
    if let Err(e) = ordercore::tune_allocator() {
        tracing::warn!(error = %e, "the allocator keeps its default purge delay: more CPU per request");
    }
    if let Err(e) = ordercore::disable_transparent_huge_pages() {
        tracing::warn!(error = %e, "transparent huge pages stay on: slower latency tails");
    }
    if let Err(e) = resolve_secrets(&mut config) {
        return fail(&e);
    }
    tracing::info!(?config, "starting");
    let result = actix_web::rt::System::new().block_on(ordercore::server::run(config, |addr| {
        // The one line scripts and tests wait for.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}
