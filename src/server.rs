//! Starting and stopping the server: open the store (recovery), start the
//! core, seed the demo catalog, serve HTTP until SIGTERM/SIGINT, then drain,
//! flush the writer and write everything behind.

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::error::{self, ApiError};
use crate::metrics::Metrics;
use crate::routes::{self, AppState};
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App, HttpMessage, HttpServer};
use ordercore_actors::{CoreConfig, OrderCore};
use ordercore_domain::ids::RequestId;
use ordercore_domain::{AlertLevel, ErrorCode};
use ordercore_storage::{Store, SystemClock};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time in-flight requests get to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections waiting to be accepted.
pub const LISTEN_BACKLOG: u32 = 2_048;
/// Open connections per HTTP worker before new ones wait: bounds memory
/// under a connection flood.
pub const MAX_CONNECTIONS_PER_WORKER: usize = 25_000;
/// How long an idle keep-alive connection stays open (actix-web's default
/// is 5 s). Longer than the idle timeout of common HTTP client pools and
/// load balancers (60 s), so the client closes an idle connection, not the
/// server: a server closing one just as the client reuses it fails that
/// request on the client (seen as transport errors in load runs, ~6 s in).
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store in {path}: {source}")]
    Store {
        path: String,
        source: ordercore_storage::StorageError,
    },
    #[error("cannot start the core: {0}")]
    Core(#[from] ordercore_actors::CoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the store, starts the core and seeds the demo catalog when asked
/// (or when the store is empty and nothing was said).
pub async fn start_core(config: &Config) -> Result<OrderCore, StartError> {
    let store = Store::open(config.store_config()).map_err(|source| StartError::Store {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let core_config = CoreConfig {
        shards: config.shards,
        pay_timeout: config.pay_timeout(),
        compact_after: config.compact_after(),
        pricing: config.pricing_rules(),
        risk: config.risk_rules(),
        clock: Arc::new(SystemClock),
        ..CoreConfig::default()
    };
    let core = OrderCore::start(store, core_config)?;
    let empty = core.skus()?.is_empty();
    if config.demo.unwrap_or(empty) {
        let (skus, coupons) = crate::demo::seed(&core).await?;
        tracing::info!(skus, coupons, "seeded the demo catalog");
    }
    Ok(core)
}

/// Runs the server until SIGTERM/SIGINT; `on_listening` hears the bound
/// address once it is ready to serve.
pub async fn run(
    config: Config,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), StartError> {
    let jwt_secret = config
        .jwt_secret
        .clone()
        .ok_or_else(|| StartError::Config("no JWT secret".into()))?;
    let payment_secret = config
        .payment_secret
        .clone()
        .ok_or_else(|| StartError::Config("no payment secret".into()))?;
    let core = start_core(&config).await?;
    let metrics = Metrics::new().map_err(|e| StartError::Config(e.to_string()))?;
    let state = web::Data::new(AppState {
        core: core.clone(),
        tokens: TokenKeys::new(&jwt_secret),
        payment_secret,
        metrics,
        started_at: core.now(),
        draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        streams: Arc::default(),
    });
    let draining = Arc::clone(&state.draining);
    // The signal handlers go in before the port is announced: actix polls
    // its shutdown future only once the server runs, and a signal arriving
    // in between would kill the process with the default action.
    let stop = stop_signal()?;
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(web::JsonConfig::default().error_handler(error::json_error_handler))
            .app_data(web::QueryConfig::default().error_handler(error::query_error_handler))
            .app_data(web::PathConfig::default().error_handler(error::path_error_handler))
            .configure(routes::configure)
            .default_service(web::to(not_found))
            .wrap_fn(observe)
    })
    .backlog(LISTEN_BACKLOG)
    .max_connections(MAX_CONNECTIONS_PER_WORKER)
    .keep_alive(KEEP_ALIVE)
    .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
    // Our own signal handling: actix's stops at once (not gracefully) on
    // SIGINT, and open event streams must hear of the stop to end.
    .shutdown_signal(async move {
        stop.await;
        tracing::info!("stop signal received; draining");
        draining.store(true, Ordering::SeqCst);
    })
    .bind(config.listen)
    .map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let addr = server.addrs().first().copied().unwrap_or(config.listen);
    let running = server.run();
    on_listening(addr);
    // actix-web stops accepting on SIGTERM/SIGINT and waits for in-flight
    // requests; then the writer is flushed and everything written behind.
    let served = running.await;
    tracing::info!("HTTP drained; flushing the store");
    let closed = core.shutdown();
    served?;
    closed?;
    tracing::info!("stopped");
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on
/// either, and both stop gracefully (API.md, "Running it").
#[cfg(unix)]
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, StartError> {
    use actix_web::rt::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let term = std::pin::pin!(term.recv());
        let int = std::pin::pin!(int.recv());
        futures_util::future::select(term, int).await;
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, StartError> {
    Ok(async {
        let _ = actix_web::rt::signal::ctrl_c().await;
    })
}

async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(routes::unmatched(&req))
}

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// A request id for a request that brought none: unique in this process
/// and unlikely to repeat across restarts (start time in the prefix).
fn new_request_id() -> Option<RequestId> {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("{ms:x}")
    });
    let n = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed);
    RequestId::parse(&format!("req-{prefix}-{n:x}")).ok()
}

/// Every request: its id (from `X-Request-Id` or generated, echoed on the
/// response), a tracing span, metrics by route and status, and error
/// counts and logs by code at the level of the code's alert.
fn observe<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| RequestId::parse(v).ok())
        .or_else(new_request_id);
    if let Some(id) = &id {
        req.extensions_mut().insert(id.clone());
    }
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let call = srv.call(req);
    async move {
        let mut res = call.await?;
        if let Some(v) = id
            .as_ref()
            .and_then(|id| HeaderValue::from_str(id.as_str()).ok())
        {
            res.headers_mut().insert(REQUEST_ID, v);
        }
        let id = id.map(|id| id.as_str().to_owned()).unwrap_or_default();
        let status = res.status().as_u16();
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        let code = res.response().extensions().get::<ErrorCode>().copied();
        if let Some(state) = state {
            state
                .metrics
                .observe(&route, status, started.elapsed().as_secs_f64());
            if let Some(code) = code {
                state.metrics.error(code, state.core.now());
            }
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match code.map(ErrorCode::alert_level) {
            Some(AlertLevel::High) => {
                tracing::error!(request_id = %id, %method, %path, status, code = ?code, micros, "request failed");
            }
            Some(AlertLevel::Medium) => {
                tracing::warn!(request_id = %id, %method, %path, status, code = ?code, micros, "request refused");
            }
            Some(AlertLevel::Low) => {
                tracing::info!(request_id = %id, %method, %path, status, code = ?code, micros, "request refused");
            }
            None => {
                tracing::debug!(request_id = %id, %method, %path, status, micros, "request");
            }
        }
        Ok(res)
    }
}
