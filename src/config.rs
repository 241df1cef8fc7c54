//! Configuration and command line (API.md, "Running it").
//!
//! Each setting comes from, in order of precedence: a command-line flag, an
//! `ORDERCORE_*` environment variable, a key of the optional TOML file
//! (`./ordercore.toml`, or the file named by `--config` / `ORDERCORE_CONFIG`),
//! and the documented default. Every source is read into the same
//! [`Settings`] layer, the layers are merged field by field, and the merged
//! layer is checked once into a typed [`Config`], so a bad value gets the
//! same message whichever source set it.
//!
//! The environment is passed in as a map rather than read inside, so tests
//! can exercise precedence without touching the process environment. An
//! empty environment variable counts as unset (container tooling often
//! exports empty ones).

use clap::{Args, Parser, Subcommand, ValueEnum};
use ordercore_domain::{Money, PricingRules, RiskRules, UserId};
use ordercore_storage::{Durability, StoreConfig};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration file looked for in the working directory.
pub const CONFIG_FILE: &str = "ordercore.toml";
/// Where generated development secrets are kept, inside the data directory.
pub const SECRETS_FILE: &str = "secrets.toml";
/// The prefix of every environment variable ordercore reads.
pub const ENV_PREFIX: &str = "ORDERCORE_";
/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "ORDERCORE_CONFIG";

/// Default HTTP address.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:8080";
/// Default data (sled) directory.
pub const DATA_DIR_DEFAULT: &str = "./data";
/// Most shards a process runs (each has its own actors and timers).
pub const SHARDS_MAX: usize = 1_024;
/// Default payment deadline after creation (seconds).
pub const PAY_TIMEOUT_SECS_DEFAULT: u64 = 1_800;
/// Longest payment deadline accepted (seconds): 7 days.
pub const PAY_TIMEOUT_SECS_MAX: u64 = 7 * 24 * 3_600;
/// Idle time after which an order actor keeps only its compact state
/// (`ordercore_actors::config::COMPACT_AFTER`), and its bounds: at most the
/// 60 s after which an idle actor passivates altogether.
pub const COMPACT_AFTER_MS_DEFAULT: u64 = 5_000;
pub const COMPACT_AFTER_MS_MAX: u64 = 60_000;
/// Default cap on an order's real pay amount (minor units).
pub const RISK_MAX_ORDER_AMOUNT_DEFAULT: i64 = 10_000_000;
/// Default orders per user per minute.
pub const RISK_MAX_ORDERS_PER_USER_PER_MIN_DEFAULT: u32 = 60;
/// Shortest secret accepted (bytes): an HS256 or HMAC key much shorter than
/// this can be guessed.
pub const SECRET_LEN_MIN: usize = 16;
/// Longest secret accepted (bytes).
pub const SECRET_LEN_MAX: usize = 1_024;
/// Random bytes in a generated secret (hex-encoded, so 64 characters).
pub const GENERATED_SECRET_BYTES: usize = 32;
/// Default lifetime of a token printed by `ordercore token` (seconds).
pub const TOKEN_TTL_SECS_DEFAULT: u64 = 24 * 3_600;
/// Longest lifetime `ordercore token` mints (seconds): 365 days.
pub const TOKEN_TTL_SECS_MAX: u64 = 365 * 24 * 3_600;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `durable` or `relaxed` as written in flags, variables and the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DurabilityName {
    Durable,
    Relaxed,
}

impl From<DurabilityName> for Durability {
    fn from(name: DurabilityName) -> Durability {
        match name {
            DurabilityName::Durable => Durability::Durable,
            DurabilityName::Relaxed => Durability::Relaxed,
        }
    }
}

/// The checked configuration of the server.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// HTTP address (port 0 picks one).
    pub listen: SocketAddr,
    /// The sled directory; also holds the journal segments (`journal/`)
    /// and generated secrets.
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub shards: usize,
    /// Payment deadline after creation.
    pub pay_timeout_secs: u64,
    /// Idle time before an order actor keeps only its compact state.
    pub compact_after_ms: u64,
    /// HS256 key for bearer tokens; `None` until [`resolve_secrets`].
    pub jwt_secret: Option<String>,
    /// HMAC key for provider callbacks; `None` until [`resolve_secrets`].
    pub payment_secret: Option<String>,
    /// Largest real pay amount accepted; zero means no cap.
    pub risk_max_order_amount: Money,
    /// Orders one user may create per minute; zero means no limit.
    pub risk_max_orders_per_user_per_min: u32,
    pub risk_blocked_users: Vec<UserId>,
    pub shipping_fee: Money,
    /// Shipping is free when origin − discount reaches this.
    pub free_shipping_threshold: Money,
    pub log_format: LogFormat,
    /// Seed the demo catalog: `Some(true)` always, `Some(false)` never,
    /// `None` when the store is empty.
    pub demo: Option<bool>,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
}

impl fmt::Debug for Config {
    // Secrets never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("durability", &self.durability)
            .field("shards", &self.shards)
            .field("pay_timeout_secs", &self.pay_timeout_secs)
            .field("compact_after_ms", &self.compact_after_ms)
            .field("jwt_secret", &redact(&self.jwt_secret))
            .field("payment_secret", &redact(&self.payment_secret))
            .field("risk_max_order_amount", &self.risk_max_order_amount)
            .field(
                "risk_max_orders_per_user_per_min",
                &self.risk_max_orders_per_user_per_min,
            )
            .field("risk_blocked_users", &self.risk_blocked_users)
            .field("shipping_fee", &self.shipping_fee)
            .field("free_shipping_threshold", &self.free_shipping_threshold)
            .field("log_format", &self.log_format)
            .field("demo", &self.demo)
            .field("config_file", &self.config_file)
            .finish()
    }
}

impl Default for Config {
    /// The documented defaults (no file, no flags, no variables).
    fn default() -> Config {
        let pricing = PricingRules::default();
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(DATA_DIR_DEFAULT),
            durability: Durability::Durable,
            shards: default_shards(),
            pay_timeout_secs: PAY_TIMEOUT_SECS_DEFAULT,
            compact_after_ms: COMPACT_AFTER_MS_DEFAULT,
            jwt_secret: None,
            payment_secret: None,
            risk_max_order_amount: Money::from_minor(RISK_MAX_ORDER_AMOUNT_DEFAULT),
            risk_max_orders_per_user_per_min: RISK_MAX_ORDERS_PER_USER_PER_MIN_DEFAULT,
            risk_blocked_users: Vec::new(),
            shipping_fee: pricing.shipping_fee,
            free_shipping_threshold: pricing.free_shipping_threshold,
            log_format: LogFormat::Text,
            demo: None,
            config_file: None,
        }
    }
}

impl Config {
    /// The domain's pricing rules.
    pub fn pricing_rules(&self) -> PricingRules {
        PricingRules {
            shipping_fee: self.shipping_fee,
            free_shipping_threshold: self.free_shipping_threshold,
        }
    }

    /// The domain's risk rules.
    pub fn risk_rules(&self) -> RiskRules {
        RiskRules {
            max_order_amount: self.risk_max_order_amount,
            max_orders_per_user_per_min: self.risk_max_orders_per_user_per_min,
            blocked_users: self.risk_blocked_users.clone(),
        }
    }

    /// The payment deadline after creation.
    pub fn pay_timeout(&self) -> Duration {
        Duration::from_secs(self.pay_timeout_secs)
    }

    /// Idle time before an order actor keeps only its compact state.
    pub fn compact_after(&self) -> Duration {
        Duration::from_millis(self.compact_after_ms)
    }

    /// The payment deadline in milliseconds, as the domain takes it.
    pub fn pay_timeout_ms(&self) -> i64 {
        // Bounded by PAY_TIMEOUT_SECS_MAX, far inside i64.
        i64::try_from(self.pay_timeout_secs.saturating_mul(1_000)).unwrap_or(i64::MAX)
    }

    /// The store's configuration: its defaults, in `data_dir`, with this
    /// durability.
    pub fn store_config(&self) -> StoreConfig {
        let mut store = StoreConfig::new(&self.data_dir);
        store.durability = self.durability;
        store
    }

    /// Where generated development secrets are kept.
    pub fn secrets_path(&self) -> PathBuf {
        self.data_dir.join(SECRETS_FILE)
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// `ordercore [serve]`: run the server.
    Serve(Config),
    /// `ordercore token --user U [--admin]`: print a bearer token.
    Token(TokenRequest),
}

/// `ordercore token`: whom to mint a token for, and the configuration whose
/// JWT secret signs it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRequest {
    pub config: Config,
    pub user: UserId,
    pub admin: bool,
    pub ttl: Duration,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A command-line error, or `--help` / `--version`: `main` calls
    /// [`clap::Error::exit`], which prints it and exits with the right code.
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML of the expected keys.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// An environment variable does not parse.
    #[error("{name}: {message}")]
    Env { name: String, message: String },
    /// A setting is out of its range, whichever source set it.
    #[error(
        "invalid {key} (--{flag}, {env} or `{key}` in the config file): {message}",
        flag = .key.replace('_', "-"),
        env = env_name(.key)
    )]
    Invalid { key: &'static str, message: String },
    /// An argument of a subcommand is invalid.
    #[error("invalid --{name}: {message}")]
    Arg { name: &'static str, message: String },
    /// The development secrets could not be loaded or generated.
    #[error("secrets {}: {message}", path.display())]
    Secrets { path: PathBuf, message: String },
}

fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The actor-core command line.
#[derive(Debug, Parser)]
#[command(
    name = "ordercore",
    version,
    about = "Actor-based, in-memory order core for e-commerce",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<CliCommand>,
    /// `serve`'s flags, accepted without the subcommand (its default).
    #[command(flatten)]
    flags: Flags,
}

#[derive(Debug, Subcommand)]
enum CliCommand {
    /// Run the server (the default when no subcommand is given).
    Serve(Flags),
    /// Print a bearer token signed with the configured JWT secret.
    Token(TokenArgs),
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The token's subject: a user id, or an operator id with --admin.
    #[arg(long, value_name = "USER")]
    user: String,
    /// Mint an admin token (`role: "admin"`).
    #[arg(long)]
    admin: bool,
    /// Lifetime of the token in seconds [default: 86400].
    #[arg(long, value_name = "SECS")]
    ttl_secs: Option<i64>,
    #[command(flatten)]
    flags: Flags,
}

/// The settings flags. Defaults are applied after merging with the
/// environment and the file, so none is given to clap.
#[derive(Debug, Default, Args)]
struct Flags {
    /// Read this TOML file instead of ./ordercore.toml [env: ORDERCORE_CONFIG]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// HTTP address; port 0 picks one and prints it [env: ORDERCORE_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// sled directory [env: ORDERCORE_DATA_DIR] [default: ./data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// When a write is acknowledged [env: ORDERCORE_DURABILITY] [default: durable]
    #[arg(long, value_enum)]
    durability: Option<DurabilityName>,
    /// Shard count [env: ORDERCORE_SHARDS] [default: number of cores]
    #[arg(long, value_name = "N")]
    shards: Option<i64>,
    /// Payment deadline after creation, seconds [env: ORDERCORE_PAY_TIMEOUT_SECS] [default: 1800]
    #[arg(long, value_name = "SECS")]
    pay_timeout_secs: Option<i64>,
    /// Idle time after which an order actor keeps only its compact state, ms [env: ORDERCORE_COMPACT_AFTER_MS] [default: 5000]
    #[arg(long, value_name = "MS")]
    compact_after_ms: Option<i64>,
    /// HS256 key for bearer tokens [env: ORDERCORE_JWT_SECRET] [default: generated, stored in the data dir, printed once]
    #[arg(long, value_name = "SECRET")]
    jwt_secret: Option<String>,
    /// HMAC key for provider callbacks [env: ORDERCORE_PAYMENT_SECRET] [default: generated likewise]
    #[arg(long, value_name = "SECRET")]
    payment_secret: Option<String>,
    /// Largest real pay amount accepted, minor units; 0 = no cap [env: ORDERCORE_RISK_MAX_ORDER_AMOUNT] [default: 10000000]
    #[arg(long, value_name = "AMOUNT")]
    risk_max_order_amount: Option<i64>,
    /// Orders one user may create per minute; 0 = no limit [env: ORDERCORE_RISK_MAX_ORDERS_PER_USER_PER_MIN] [default: 60]
    #[arg(long, value_name = "N")]
    risk_max_orders_per_user_per_min: Option<i64>,
    /// Comma-separated user ids refused with RISK_REJECTED [env: ORDERCORE_RISK_BLOCKED_USERS]
    #[arg(long, value_name = "USERS", value_delimiter = ',')]
    risk_blocked_users: Option<Vec<String>>,
    /// Shipping fee, minor units [env: ORDERCORE_SHIPPING_FEE] [default: 1000]
    #[arg(long, value_name = "AMOUNT")]
    shipping_fee: Option<i64>,
    /// Shipping is free when origin − discount reaches this [env: ORDERCORE_FREE_SHIPPING_THRESHOLD] [default: 9900]
    #[arg(long, value_name = "AMOUNT")]
    free_shipping_threshold: Option<i64>,
    /// Log line format [env: ORDERCORE_LOG_FORMAT] [default: text]
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Seed the demo catalog [env: ORDERCORE_DEMO=true|false] [default: when the store is empty]
    #[arg(long, overrides_with = "no_demo")]
    demo: bool,
    /// Never seed the demo catalog
    #[arg(long, overrides_with = "demo")]
    no_demo: bool,
}

/// One source's settings; `None` where the source is silent. The TOML file
/// is read straight into it, so its keys are these field names.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    durability: Option<DurabilityName>,
    shards: Option<i64>,
    pay_timeout_secs: Option<i64>,
    compact_after_ms: Option<i64>,
    jwt_secret: Option<String>,
    payment_secret: Option<String>,
    risk_max_order_amount: Option<i64>,
    risk_max_orders_per_user_per_min: Option<i64>,
    #[serde(default, deserialize_with = "user_list")]
    risk_blocked_users: Option<Vec<String>>,
    shipping_fee: Option<i64>,
    free_shipping_threshold: Option<i64>,
    log_format: Option<LogFormat>,
    demo: Option<bool>,
}

/// `risk_blocked_users` in the file: an array of ids or one comma-separated
/// string, like the flag and the variable.
fn user_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match List::deserialize(d)? {
        List::One(s) => split_list(&s),
        List::Many(v) => v,
    }))
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',').map(str::to_owned).collect()
}

impl Settings {
    /// Each field from `self`, else from `lower`.
    fn or(self, lower: Settings) -> Settings {
        Settings {
            listen: self.listen.or(lower.listen),
            data_dir: self.data_dir.or(lower.data_dir),
            durability: self.durability.or(lower.durability),
            shards: self.shards.or(lower.shards),
            pay_timeout_secs: self.pay_timeout_secs.or(lower.pay_timeout_secs),
            compact_after_ms: self.compact_after_ms.or(lower.compact_after_ms),
            jwt_secret: self.jwt_secret.or(lower.jwt_secret),
            payment_secret: self.payment_secret.or(lower.payment_secret),
            risk_max_order_amount: self.risk_max_order_amount.or(lower.risk_max_order_amount),
            risk_max_orders_per_user_per_min: self
                .risk_max_orders_per_user_per_min
                .or(lower.risk_max_orders_per_user_per_min),
            risk_blocked_users: self.risk_blocked_users.or(lower.risk_blocked_users),
            shipping_fee: self.shipping_fee.or(lower.shipping_fee),
            free_shipping_threshold: self
                .free_shipping_threshold
                .or(lower.free_shipping_threshold),
            log_format: self.log_format.or(lower.log_format),
            demo: self.demo.or(lower.demo),
        }
    }

    fn from_flags(flags: Flags) -> Settings {
        let demo = match (flags.demo, flags.no_demo) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        Settings {
            listen: flags.listen,
            data_dir: flags.data_dir,
            durability: flags.durability,
            shards: flags.shards,
            pay_timeout_secs: flags.pay_timeout_secs,
            compact_after_ms: flags.compact_after_ms,
            jwt_secret: flags.jwt_secret,
            payment_secret: flags.payment_secret,
            risk_max_order_amount: flags.risk_max_order_amount,
            risk_max_orders_per_user_per_min: flags.risk_max_orders_per_user_per_min,
            risk_blocked_users: flags.risk_blocked_users,
            shipping_fee: flags.shipping_fee,
            free_shipping_threshold: flags.free_shipping_threshold,
            log_format: flags.log_format,
            demo,
        }
    }

    fn from_env(env: &HashMap<String, String>) -> Result<Settings, ConfigError> {
        let reader = EnvReader { env };
        Ok(Settings {
            listen: reader.parse("listen", |s| s.parse().map_err(|e| format!("{e}")))?,
            data_dir: reader.parse("data_dir", |s| Ok(PathBuf::from(s)))?,
            durability: reader.parse("durability", value_enum)?,
            shards: reader.parse("shards", integer)?,
            pay_timeout_secs: reader.parse("pay_timeout_secs", integer)?,
            compact_after_ms: reader.parse("compact_after_ms", integer)?,
            jwt_secret: reader.parse("jwt_secret", |s| Ok(s.to_owned()))?,
            payment_secret: reader.parse("payment_secret", |s| Ok(s.to_owned()))?,
            risk_max_order_amount: reader.parse("risk_max_order_amount", integer)?,
            risk_max_orders_per_user_per_min: reader
                .parse("risk_max_orders_per_user_per_min", integer)?,
            risk_blocked_users: reader.parse("risk_blocked_users", |s| Ok(split_list(s)))?,
            shipping_fee: reader.parse("shipping_fee", integer)?,
            free_shipping_threshold: reader.parse("free_shipping_threshold", integer)?,
            log_format: reader.parse("log_format", value_enum)?,
            demo: reader.parse("demo", boolean)?,
        })
    }

    fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Checks the merged settings and fills in the defaults.
    fn build(self, config_file: Option<PathBuf>) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let shards = match self.shards {
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=SHARDS_MAX).contains(n))
                .ok_or_else(|| invalid("shards", format!("must be 1..={SHARDS_MAX}, got {n}")))?,
            None => defaults.shards,
        };
        let pay_timeout_secs = match self.pay_timeout_secs {
            Some(n) => u64::try_from(n)
                .ok()
                .filter(|n| (1..=PAY_TIMEOUT_SECS_MAX).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "pay_timeout_secs",
                        format!("must be 1..={PAY_TIMEOUT_SECS_MAX}, got {n}"),
                    )
                })?,
            None => defaults.pay_timeout_secs,
        };
        let compact_after_ms = match self.compact_after_ms {
            Some(n) => u64::try_from(n)
                .ok()
                .filter(|n| (1..=COMPACT_AFTER_MS_MAX).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "compact_after_ms",
                        format!("must be 1..={COMPACT_AFTER_MS_MAX}, got {n}"),
                    )
                })?,
            None => defaults.compact_after_ms,
        };
        let per_min = match self.risk_max_orders_per_user_per_min {
            Some(n) => u32::try_from(n).map_err(|_| {
                invalid(
                    "risk_max_orders_per_user_per_min",
                    format!("must be 0..={}, got {n}", u32::MAX),
                )
            })?,
            None => defaults.risk_max_orders_per_user_per_min,
        };
        let blocked = self
            .risk_blocked_users
            .unwrap_or_default()
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                UserId::parse(s).map_err(|_| {
                    invalid(
                        "risk_blocked_users",
                        format!("{s:?} is not a user id (1..=64 of A-Z a-z 0-9 _ - .)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config = Config {
            listen: self.listen.unwrap_or(defaults.listen),
            data_dir: self.data_dir.unwrap_or(defaults.data_dir),
            durability: self
                .durability
                .map_or(defaults.durability, Durability::from),
            shards,
            pay_timeout_secs,
            compact_after_ms,
            jwt_secret: self
                .jwt_secret
                .map(|s| check_secret("jwt_secret", s))
                .transpose()?,
            payment_secret: self
                .payment_secret
                .map(|s| check_secret("payment_secret", s))
                .transpose()?,
            risk_max_order_amount: money(
                "risk_max_order_amount",
                self.risk_max_order_amount,
                defaults.risk_max_order_amount,
            )?,
            risk_max_orders_per_user_per_min: per_min,
            risk_blocked_users: blocked,
            shipping_fee: money("shipping_fee", self.shipping_fee, defaults.shipping_fee)?,
            free_shipping_threshold: money(
                "free_shipping_threshold",
                self.free_shipping_threshold,
                defaults.free_shipping_threshold,
            )?,
            log_format: self.log_format.unwrap_or(defaults.log_format),
            demo: self.demo,
            config_file,
        };
        Ok(config)
    }
}

struct EnvReader<'a> {
    env: &'a HashMap<String, String>,
}

impl EnvReader<'_> {
    /// The variable of `key`, parsed; `None` when unset or empty.
    fn parse<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let name = env_name(key);
        match self.env.get(&name).map(|v| v.trim()) {
            None | Some("") => Ok(None),
            Some(raw) => parse(raw)
                .map(Some)
                .map_err(|message| ConfigError::Env { name, message }),
        }
    }
}

fn integer(raw: &str) -> Result<i64, String> {
    raw.parse()
        .map_err(|e| format!("{raw:?} is not an integer ({e})"))
}

fn boolean(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{raw:?} is not true or false")),
    }
}

fn value_enum<T: ValueEnum>(raw: &str) -> Result<T, String> {
    T::from_str(raw, true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_owned()))
            .collect();
        format!("{raw:?} is not one of {}", names.join(", "))
    })
}

fn money(key: &'static str, value: Option<i64>, default: Money) -> Result<Money, ConfigError> {
    value.map_or(Ok(default), |minor| {
        Money::parse(minor, key).map_err(|e| invalid(key, reason(&e)))
    })
}

fn check_secret(key: &'static str, secret: String) -> Result<String, ConfigError> {
    if (SECRET_LEN_MIN..=SECRET_LEN_MAX).contains(&secret.len()) {
        Ok(secret)
    } else {
        Err(invalid(
            key,
            format!(
                "must be {SECRET_LEN_MIN}..={SECRET_LEN_MAX} bytes, got {}",
                secret.len()
            ),
        ))
    }
}

/// A domain error's reason without its field name (the caller names it).
fn reason(err: &ordercore_domain::DomainError) -> String {
    match err {
        ordercore_domain::DomainError::Invalid { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(SHARDS_MAX)
}

/// Parses the command line `args` (the program name first) with the
/// `ORDERCORE_*` variables of `env`, reading `ordercore.toml` from `cwd`
/// when no other file is named.
pub fn load<I, T>(
    args: I,
    env: &HashMap<String, String>,
    cwd: &Path,
) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    let (flags, token) = match cli.command {
        None => (cli.flags, None),
        Some(CliCommand::Serve(flags)) => (flags, None),
        Some(CliCommand::Token(args)) => {
            let user = UserId::parse(&args.user).map_err(|e| ConfigError::Arg {
                name: "user",
                message: reason(&e),
            })?;
            let ttl = match args.ttl_secs {
                None => TOKEN_TTL_SECS_DEFAULT,
                Some(n) => u64::try_from(n)
                    .ok()
                    .filter(|n| (1..=TOKEN_TTL_SECS_MAX).contains(n))
                    .ok_or_else(|| ConfigError::Arg {
                        name: "ttl-secs",
                        message: format!("must be 1..={TOKEN_TTL_SECS_MAX}, got {n}"),
                    })?,
            };
            (args.flags, Some((user, args.admin, ttl)))
        }
    };
    let named_file = flags.config.clone().or_else(|| {
        env.get(CONFIG_ENV)
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    });
    let config_file = match named_file {
        Some(path) => Some(path),
        None => Some(cwd.join(CONFIG_FILE)).filter(|p| p.is_file()),
    };
    let file = match &config_file {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let settings = Settings::from_flags(flags)
        .or(Settings::from_env(env)?)
        .or(file);
    let config = settings.build(config_file)?;
    Ok(match token {
        None => Invocation::Serve(config),
        Some((user, admin, ttl_secs)) => Invocation::Token(TokenRequest {
            config,
            user,
            admin,
            ttl: Duration::from_secs(ttl_secs),
        }),
    })
}

/// [`load`] with this process's arguments, `ORDERCORE_*` variables and
/// working directory.
pub fn load_from_process() -> Result<Invocation, ConfigError> {
    let mut env = HashMap::new();
    // `vars_os`, not `vars`: a variable that is not UTF-8 must be an error,
    // not a panic, and only ours matter.
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError::Env {
            name: name.to_owned(),
            message: "is not valid UTF-8".to_owned(),
        })?;
        env.insert(name.to_owned(), value);
    }
    let cwd = std::env::current_dir().map_err(|source| ConfigError::Io {
        path: PathBuf::from("."),
        source,
    })?;
    load(std::env::args_os(), &env, &cwd)
}

/// The development secrets kept in the data directory.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredSecrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwt_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payment_secret: Option<String>,
}

/// Fills in the secrets the configuration does not set: from
/// `<data_dir>/secrets.toml` when an earlier start generated them, else
/// freshly generated (32 random bytes, hex) and written there (mode 0600 on
/// Unix). Answers a message to print once when it generated any; configured
/// secrets are used as they are and never written to disk.
pub fn resolve_secrets(config: &mut Config) -> Result<Option<String>, ConfigError> {
    if config.jwt_secret.is_some() && config.payment_secret.is_some() {
        return Ok(None);
    }
    let path = config.secrets_path();
    let secrets_error = |message: String| ConfigError::Secrets {
        path: path.clone(),
        message,
    };
    let mut stored = match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str::<StoredSecrets>(&text).map_err(|e| secrets_error(e.to_string()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoredSecrets::default(),
        Err(e) => return Err(secrets_error(e.to_string())),
    };
    let mut generated = Vec::new();
    for (key, configured, kept) in [
        ("jwt_secret", &mut config.jwt_secret, &mut stored.jwt_secret),
        (
            "payment_secret",
            &mut config.payment_secret,
            &mut stored.payment_secret,
        ),
    ] {
        if configured.is_some() {
            continue;
        }
        let secret = match kept {
            Some(secret) => {
                check_secret(key, secret.clone()).map_err(|e| secrets_error(e.to_string()))?
            }
            None => {
                let secret = generate_secret().map_err(secrets_error)?;
                *kept = Some(secret.clone());
                generated.push(format!("  {key} = {secret}"));
                secret
            }
        };
        *configured = Some(secret);
    }
    if generated.is_empty() {
        return Ok(None);
    }
    let text = toml::to_string(&stored).map_err(|e| secrets_error(e.to_string()))?;
    write_private(&path, text.as_bytes()).map_err(|e| secrets_error(e.to_string()))?;
    Ok(Some(format!(
        "generated development secrets, stored in {} (set --jwt-secret / --payment-secret or \
         ORDERCORE_JWT_SECRET / ORDERCORE_PAYMENT_SECRET to use your own):\n{}",
        path.display(),
        generated.join("\n")
    )))
}

fn generate_secret() -> Result<String, String> {
    let mut bytes = [0u8; GENERATED_SECRET_BYTES];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Writes `bytes` to `path` readable by its owner only, replacing it
/// atomically (a crash leaves the old file or the new one, never half).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("toml.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn serve(args: &[&str], env: &HashMap<String, String>, cwd: &Path) -> Config {
        let args = std::iter::once("ordercore").chain(args.iter().copied());
        match load(args, env, cwd).unwrap() {
            Invocation::Serve(config) => config,
            other => panic!("not serve: {other:?}"),
        }
    }

    fn error(args: &[&str], env: &HashMap<String, String>, cwd: &Path) -> String {
        let args = std::iter::once("ordercore").chain(args.iter().copied());
        load(args, env, cwd).unwrap_err().to_string()
    }

    fn dir_with_file(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), text).unwrap();
        dir
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let config = serve(&[], &env(&[]), dir.path());
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.to_string(), LISTEN_DEFAULT);
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.durability, Durability::Durable);
        assert!(config.shards >= 1);
        assert_eq!(config.pay_timeout_ms(), 1_800_000);
        assert_eq!(config.risk_rules().max_order_amount.minor(), 10_000_000);
        assert_eq!(config.risk_rules().max_orders_per_user_per_min, 60);
        assert_eq!(config.pricing_rules(), PricingRules::default());
        assert_eq!(config.pricing_rules().shipping_fee.minor(), 1_000);
        assert_eq!(
            config.pricing_rules().free_shipping_threshold.minor(),
            9_900
        );
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.demo, None);
        assert_eq!(config.config_file, None);
        assert_eq!(config.store_config().durability, Durability::Durable);
    }

    #[test]
    fn flags_beat_variables_beat_the_file_beat_defaults() {
        let dir = dir_with_file(
            "shards = 2\npay_timeout_secs = 60\nshipping_fee = 500\nlog_format = \"json\"\n",
        );
        let vars = env(&[
            ("ORDERCORE_SHARDS", "3"),
            ("ORDERCORE_PAY_TIMEOUT_SECS", "90"),
        ]);
        let config = serve(&["--shards", "4"], &vars, dir.path());
        assert_eq!(config.shards, 4);
        assert_eq!(config.pay_timeout_secs, 90);
        assert_eq!(config.shipping_fee.minor(), 500);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.free_shipping_threshold.minor(), 9_900);
        assert_eq!(config.config_file, Some(dir.path().join(CONFIG_FILE)));

        assert_eq!(serve(&[], &vars, dir.path()).shards, 3);
        assert_eq!(serve(&[], &env(&[]), dir.path()).shards, 2);
        // An empty variable is unset.
        assert_eq!(
            serve(&[], &env(&[("ORDERCORE_SHARDS", "")]), dir.path()).shards,
            2
        );
        // `serve` spelled out takes the same flags.
        assert_eq!(
            serve(&["serve", "--shards", "5"], &vars, dir.path()).shards,
            5
        );
    }

    #[test]
    fn every_setting_is_read_from_each_source() {
        let dir = tempfile::tempdir().unwrap();
        let flags = serve(
            &[
                "--listen=0.0.0.0:0",
                "--data-dir=/tmp/oc",
                "--durability=relaxed",
                "--shards=3",
                "--pay-timeout-secs=5",
                "--jwt-secret=jwt-secret-of-16+",
                "--payment-secret=pay-secret-of-16+",
                "--risk-max-order-amount=0",
                "--risk-max-orders-per-user-per-min=0",
                "--risk-blocked-users=bad1,bad2",
                "--shipping-fee=1",
                "--free-shipping-threshold=2",
                "--log-format=json",
                "--no-demo",
            ],
            &env(&[]),
            dir.path(),
        );
        let vars = serve(
            &[],
            &env(&[
                ("ORDERCORE_LISTEN", "0.0.0.0:0"),
                ("ORDERCORE_DATA_DIR", "/tmp/oc"),
                ("ORDERCORE_DURABILITY", "RELAXED"),
                ("ORDERCORE_SHARDS", "3"),
                ("ORDERCORE_PAY_TIMEOUT_SECS", "5"),
                ("ORDERCORE_JWT_SECRET", "jwt-secret-of-16+"),
                ("ORDERCORE_PAYMENT_SECRET", "pay-secret-of-16+"),
                ("ORDERCORE_RISK_MAX_ORDER_AMOUNT", "0"),
                ("ORDERCORE_RISK_MAX_ORDERS_PER_USER_PER_MIN", "0"),
                ("ORDERCORE_RISK_BLOCKED_USERS", "bad1, bad2"),
                ("ORDERCORE_SHIPPING_FEE", "1"),
                ("ORDERCORE_FREE_SHIPPING_THRESHOLD", "2"),
                ("ORDERCORE_LOG_FORMAT", "json"),
                ("ORDERCORE_DEMO", "false"),
            ]),
            dir.path(),
        );
        let file_dir = dir_with_file(
            r#"
            listen = "0.0.0.0:0"
            data_dir = "/tmp/oc"
            durability = "relaxed"
            shards = 3
            pay_timeout_secs = 5
            jwt_secret = "jwt-secret-of-16+"
            payment_secret = "pay-secret-of-16+"
            risk_max_order_amount = 0
            risk_max_orders_per_user_per_min = 0
            risk_blocked_users = ["bad1", "bad2"]
            shipping_fee = 1
            free_shipping_threshold = 2
            log_format = "json"
            demo = false
            "#,
        );
        let mut file = serve(&[], &env(&[]), file_dir.path());
        assert_eq!(file.config_file, Some(file_dir.path().join(CONFIG_FILE)));
        file.config_file = None;
        assert_eq!(flags, vars);
        assert_eq!(flags, file);
        assert_eq!(flags.durability, Durability::Relaxed);
        assert_eq!(flags.risk_rules().blocked_users.len(), 2);
        assert_eq!(flags.demo, Some(false));
        assert_eq!(serve(&["--demo"], &env(&[]), dir.path()).demo, Some(true));
        // The last of --demo / --no-demo wins.
        assert_eq!(
            serve(&["--demo", "--no-demo"], &env(&[]), dir.path()).demo,
            Some(false)
        );
    }

    #[test]
    fn a_named_file_replaces_the_working_directory_file() {
        let cwd = dir_with_file("shards = 2\n");
        let other = dir_with_file("shards = 7\n");
        let named = other.path().join(CONFIG_FILE);
        let named = named.to_str().unwrap();
        assert_eq!(serve(&["--config", named], &env(&[]), cwd.path()).shards, 7);
        assert_eq!(
            serve(&[], &env(&[(CONFIG_ENV, named)]), cwd.path()).shards,
            7
        );
        let missing = error(
            &["--config", "/nonexistent/ordercore.toml"],
            &env(&[]),
            cwd.path(),
        );
        assert!(missing.contains("/nonexistent/ordercore.toml"), "{missing}");
    }

    #[test]
    fn compact_after_is_layered_and_bounded() {
        let dir = dir_with_file("compact_after_ms = 700\n");
        assert_eq!(
            serve(&[], &env(&[]), dir.path()).compact_after(),
            Duration::from_millis(700)
        );
        let vars = env(&[("ORDERCORE_COMPACT_AFTER_MS", "900")]);
        assert_eq!(serve(&[], &vars, dir.path()).compact_after_ms, 900);
        let flag = serve(&["--compact-after-ms", "20"], &vars, dir.path());
        assert_eq!(flag.compact_after_ms, 20);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            serve(&[], &env(&[]), empty.path()).compact_after_ms,
            COMPACT_AFTER_MS_DEFAULT
        );
        for bad in ["0", "60001", "-1"] {
            let flag = format!("--compact-after-ms={bad}");
            let message = error(&[&flag], &env(&[]), empty.path());
            assert!(message.contains("compact_after_ms"), "{message}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let none = env(&[]);
        let message = error(&["--shards", "0"], &none, dir.path());
        assert!(
            message.contains("--shards") && message.contains("ORDERCORE_SHARDS"),
            "{message}"
        );
        let message = error(&[], &env(&[("ORDERCORE_SHARDS", "many")]), dir.path());
        assert!(message.starts_with("ORDERCORE_SHARDS"), "{message}");
        let message = error(&["--risk-blocked-users", "ok,not ok"], &none, dir.path());
        assert!(message.contains("\"not ok\""), "{message}");
        let message = error(&["--jwt-secret", "short"], &none, dir.path());
        assert!(message.contains("jwt_secret"), "{message}");
        let message = error(&["--shipping-fee=-1"], &none, dir.path());
        assert!(message.contains("shipping_fee"), "{message}");
        let message = error(&["--pay-timeout-secs", "0"], &none, dir.path());
        assert!(message.contains("pay_timeout_secs"), "{message}");
        let message = error(&[], &env(&[("ORDERCORE_DEMO", "maybe")]), dir.path());
        assert!(message.contains("ORDERCORE_DEMO"), "{message}");
        let message = error(&[], &env(&[("ORDERCORE_DURABILITY", "fast")]), dir.path());
        assert!(message.contains("durable, relaxed"), "{message}");
        let message = error(&["--durability", "fast"], &none, dir.path());
        assert!(message.contains("fast"), "{message}");
        assert!(matches!(
            load(["ordercore", "--bogus"], &none, dir.path()),
            Err(ConfigError::Cli(_))
        ));

        let typo = dir_with_file("shard = 3\n");
        let message = error(&[], &none, typo.path());
        assert!(message.contains("shard"), "{message}");
        let wrong_type = dir_with_file("shards = \"three\"\n");
        assert!(load(["ordercore"], &none, wrong_type.path()).is_err());
    }

    #[test]
    fn the_token_subcommand_names_a_user() {
        let dir = tempfile::tempdir().unwrap();
        let vars = env(&[("ORDERCORE_JWT_SECRET", "jwt-secret-from-env")]);
        let request = match load(
            ["ordercore", "token", "--user", "u1", "--admin"],
            &vars,
            dir.path(),
        )
        .unwrap()
        {
            Invocation::Token(request) => request,
            other => panic!("not token: {other:?}"),
        };
        assert_eq!(request.user.as_str(), "u1");
        assert!(request.admin);
        assert_eq!(request.ttl, Duration::from_secs(TOKEN_TTL_SECS_DEFAULT));
        assert_eq!(
            request.config.jwt_secret.as_deref(),
            Some("jwt-secret-from-env")
        );

        let args = ["ordercore", "token", "--user", "u2", "--ttl-secs", "60"];
        let Invocation::Token(request) = load(args, &vars, dir.path()).unwrap() else {
            panic!("not token");
        };
        assert!(!request.admin);
        assert_eq!(request.ttl, Duration::from_secs(60));

        assert!(load(["ordercore", "token"], &vars, dir.path()).is_err());
        assert!(load(["ordercore", "token", "--user", "a b"], &vars, dir.path()).is_err());
        let args = ["ordercore", "token", "--user", "u", "--ttl-secs", "0"];
        assert!(load(args, &vars, dir.path()).is_err());
    }

    #[test]
    fn secrets_are_generated_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let message = resolve_secrets(&mut config).unwrap().unwrap();
        let jwt = config.jwt_secret.clone().unwrap();
        let payment = config.payment_secret.clone().unwrap();
        assert_eq!(jwt.len(), 2 * GENERATED_SECRET_BYTES);
        assert_ne!(jwt, payment);
        assert!(
            message.contains(&jwt) && message.contains(&payment),
            "{message}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(config.secrets_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // The next start reads the same secrets and prints nothing.
        let mut again = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        assert_eq!(resolve_secrets(&mut again).unwrap(), None);
        assert_eq!(again.jwt_secret.as_deref(), Some(jwt.as_str()));
        assert_eq!(again.payment_secret.as_deref(), Some(payment.as_str()));

        // A configured secret wins and is never written.
        let mut own = Config {
            data_dir: dir.path().join("other"),
            jwt_secret: Some("configured-jwt-secret".into()),
            ..Config::default()
        };
        let message = resolve_secrets(&mut own).unwrap().unwrap();
        assert!(!message.contains("jwt_secret"), "{message}");
        assert_eq!(own.jwt_secret.as_deref(), Some("configured-jwt-secret"));
        let stored = std::fs::read_to_string(own.secrets_path()).unwrap();
        assert!(!stored.contains("configured") && stored.contains("payment_secret"));

        // Nothing to do when both are configured.
        let mut both = Config {
            data_dir: dir.path().join("none"),
            jwt_secret: Some("configured-jwt-secret".into()),
            payment_secret: Some("configured-pay-secret".into()),
            ..Config::default()
        };
        assert_eq!(resolve_secrets(&mut both).unwrap(), None);
        assert!(!both.secrets_path().exists());
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        // Help is an "error" for `main` to print and exit 0 with.
        let help = load(["ordercore", "--help"], &env(&[]), Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(help.contains("--risk-max-orders-per-user-per-min"));
        assert!(help.contains("ORDERCORE_RISK_MAX_ORDERS_PER_USER_PER_MIN"));
        let help = load(["ordercore", "token", "--help"], &env(&[]), Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(help.contains("--user <USER>"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = Config {
            jwt_secret: Some("super-secret-value".into()),
            ..Config::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("super-secret-value") && printed.contains("<redacted>"));
    }
}
