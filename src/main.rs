//! The `steerd` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing::{error, info, warn};

const DEFAULT_CONFIG: &str = "config/steerd.toml";
/// The demo configuration, compiled in: used when the default file is not on disk.
const EMBEDDED_CONFIG: &str = include_str!("../config/steerd.toml");

#[derive(Parser)]
#[command(
    name = "steerd",
    version,
    about = "Multi-CDN traffic steering with its own authoritative DNS server"
)]
struct Cli {
    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the DNS server (the default command).
    Serve(ServeArgs),
    /// Validate a configuration file, open every file `serve` would open (GeoIP database,
    /// nets file, country table, CA files, state file), and print a one-line summary.
    CheckConfig {
        /// Configuration file to check.
        file: PathBuf,
    },
    /// Show what steerd answers a client, where it places the client and the ECS scope,
    /// without starting a server.
    Resolve {
        /// Configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The client: a resolver address (ADDR) or an ECS subnet (ADDR/PREFIX).
        #[arg(long)]
        client: steerd::resolve::ClientSpec,
        /// Name to resolve.
        name: String,
        /// Query type (default A).
        #[arg(default_value = "A")]
        qtype: String,
        /// Also print the policy chain's trace: each step's input, output and reasons.
        #[arg(long)]
        explain: bool,
        /// Simulate: treat this target as down (repeatable), e.g. to see where clients go.
        #[arg(long = "down", value_name = "TARGET")]
        down: Vec<String>,
    },
    /// Run the health checks of every target and print a table per target and level.
    Probe {
        /// Configuration file [default: config/steerd.toml, or the compiled-in demo].
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Run each check once, print the table and exit (status 1 when a check failed).
        /// Without it, checks run on their intervals and each result is printed as it comes.
        #[arg(long)]
        once: bool,
        /// Only these targets (repeatable).
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
    },
    /// Purge the CDNs' caches through a running server's admin API, and follow the purge.
    Purge(steerd::purge::cli::PurgeArgs),
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// Configuration file [default: config/steerd.toml, or the compiled-in demo when that file
    /// does not exist].
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// DNS listen address (UDP and TCP); repeat for several. Overrides `server.dns_listen`.
    #[arg(long = "dns-listen", value_name = "ADDR")]
    dns_listen: Vec<SocketAddr>,
    /// Admin HTTP API listen address. Overrides `server.admin_listen`.
    #[arg(long = "admin-listen", value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Raise the soft open-files limit to the hard one: the prober keeps a connection per target,
/// and the TCP listeners' caps are fitted into what is left after `server.fd_reserve`.
fn raise_nofile_limit() {
    if let Err(e) = steerd::conns::raise_nofile_limit() {
        warn!("cannot raise RLIMIT_NOFILE: {e}");
    }
}

/// glibc malloc: give every allocation of 128 KiB or more its own mapping, unmapped when it
/// is freed. By default glibc raises this threshold to the largest block freed so far (up to
/// 32 MiB), so once the multi-megabyte run tables of a geo reload are freed, the next ones
/// come from the heap, fragment it, and RSS grows with every reload (35 → 99 MB after 15
/// reloads; with the fixed threshold 33 MB). `MALLOC_MMAP_THRESHOLD_` in the environment wins.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes a malloc parameter; called before any other thread runs.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    raise_nofile_limit();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Resolve {
            config,
            client,
            name,
            qtype,
            explain,
            down,
        }) => resolve(config, client, &name, &qtype, explain, &down),
        Some(Command::Probe {
            config,
            once,
            targets,
        }) => probe(config, once, &targets),
        Some(Command::Purge(args)) => match steerd::purge::cli::run(args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("steerd purge: {e:#}");
                ExitCode::from(2)
            }
        },
        None => serve(ServeArgs::default()),
    }
}

/// `FILE:LINE: FIELD: reason` lines for `issues` of `file`, whose text is `text`.
fn config_error(
    file: &std::path::Path,
    text: &str,
    mut issues: Vec<steerd::config::ConfigIssue>,
) -> steerd::config::ConfigError {
    steerd::config::locate_lines(text, &mut issues);
    steerd::config::ConfigError {
        source: file.display().to_string(),
        issues,
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    use steerd::config::ConfigIssue;
    let mut cfg = match steerd::config::load(file) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let issue = |field: &str, message: String| ConfigIssue {
        field: field.into(),
        line: None,
        message,
    };
    // The files validation has not opened: the geo data (as serve loads it) and the state file.
    let mut warnings = Vec::new();
    if let Some(db) = cfg.geo.database.clone()
        && steerd::control::shipped_database_missing(&db)
    {
        warnings.push(issue(
            "geo.database",
            format!(
                "the shipped database {} is not there: serve runs without one (every client \
                 in the default region)",
                db.display()
            ),
        ));
        cfg.geo.database = None;
    }
    if let Err(e) = steerd::control::load_geo(&cfg) {
        eprintln!("{}", config_error(file, &text, e.0));
        return ExitCode::FAILURE;
    }
    if let Some(path) = steerd::persist::path_for(cfg.server.state_file.as_deref(), Some(file))
        && let Err(e) = steerd::persist::load(&path, steerd::control::now_ms())
    {
        warnings.push(issue(
            "server.state_file",
            format!("{e}: serve starts without it"),
        ));
    }
    if !warnings.is_empty() {
        for line in config_error(file, &text, warnings).to_string().lines() {
            eprintln!("warning: {line}");
        }
    }
    let notes: Vec<ConfigIssue> = cfg
        .health
        .notes()
        .into_iter()
        .map(|(field, text)| issue(field, text))
        .collect();
    if !notes.is_empty() {
        for line in config_error(file, &text, notes).to_string().lines() {
            eprintln!("note: {line}");
        }
    }
    println!("{}: OK: {}", file.display(), cfg.summary());
    ExitCode::SUCCESS
}

fn resolve(
    config: PathBuf,
    client: steerd::resolve::ClientSpec,
    name: &str,
    qtype: &str,
    explain: bool,
    down: &[String],
) -> ExitCode {
    use std::str::FromStr;
    let args = ServeArgs {
        config: Some(config),
        ..ServeArgs::default()
    };
    let cfg = match load_for_serve(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let qtype = match hickory_proto::rr::RecordType::from_str(&qtype.to_ascii_uppercase()) {
        Ok(t) => t,
        Err(_) => {
            eprintln!("\"{qtype}\" is not a DNS record type");
            return ExitCode::FAILURE;
        }
    };
    let name = match hickory_proto::rr::Name::from_ascii(name) {
        Ok(mut n) => {
            n.set_fqdn(true);
            n
        }
        Err(e) => {
            eprintln!("\"{name}\" is not a domain name: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut inputs = steerd::policy::PolicyInputs::unknown(&cfg);
    for d in down {
        let Some(i) = cfg.targets.iter().position(|t| &t.name == d) else {
            eprintln!("no target named \"{d}\" in the configuration");
            return ExitCode::FAILURE;
        };
        inputs.targets[i].state = steerd::health::machine::EffectiveStatus::Down;
        inputs.targets[i].reason = "assumed down (--down)".into();
    }
    let geo = match steerd::control::load_geo(&cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let memory = steerd::policy::chain::Memory::default();
    let (table, _) = steerd::policy::compile_with(&cfg, &geo, &inputs, &memory);
    let r = steerd::resolve::resolve(&table, &geo, client, &name, qtype);
    print!("{r}");
    if explain {
        let ip = client.addr;
        match steerd::policy::explain(&cfg, &geo, &inputs, &memory, &name, ip) {
            Some(e) => print!("{e}"),
            None => println!("{name} is not a steered name: no policy chain"),
        }
    }
    ExitCode::SUCCESS
}

fn probe(config: Option<PathBuf>, once: bool, only: &[String]) -> ExitCode {
    let args = ServeArgs {
        config,
        ..ServeArgs::default()
    };
    let cfg = match load_for_serve(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut plan = steerd::probe::ProbePlan::from_config(&cfg);
    for name in only {
        if !cfg.targets.iter().any(|t| &t.name == name) {
            eprintln!("no target named \"{name}\" in the configuration");
            return ExitCode::FAILURE;
        }
    }
    if !only.is_empty() {
        plan.jobs
            .retain(|(n, _)| only.iter().any(|o| o.as_str() == &**n));
    }
    let unchecked: Vec<&str> = cfg
        .targets
        .iter()
        .filter(|t| t.check.is_none() && (only.is_empty() || only.contains(&t.name)))
        .map(|t| t.name.as_str())
        .collect();
    if !unchecked.is_empty() {
        println!("not probed (no [targets.check]): {}", unchecked.join(", "));
    }
    if plan.jobs.is_empty() {
        eprintln!("no target has a health check");
        return ExitCode::FAILURE;
    }
    let Some(runtime) = runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        if once {
            let runs = steerd::probe::run_once(&plan).await;
            print!("{}", steerd::probe::format_table(&runs));
            return if runs.iter().all(|r| r.ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let mut store = steerd::health::HealthStore::new(Default::default());
        let prober = match steerd::probe::Prober::start(plan, tx) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("cannot start the prober: {e}");
                return ExitCode::FAILURE;
            }
        };
        loop {
            tokio::select! {
                r = rx.recv() => {
                    let Some(report) = r else { break };
                    let when = match report.kind {
                        steerd::probe::RunKind::Scheduled => "scheduled".to_string(),
                        steerd::probe::RunKind::Confirm { n, of } => format!("confirmation {n}/{of}"),
                    };
                    let confirmed = if report.confirmed_down { " — CONFIRMED DOWN" } else { "" };
                    println!("# {} ({when}){confirmed}", report.run.target);
                    print!("{}", steerd::probe::format_table(std::slice::from_ref(&report.run)));
                    for o in report.run.observations(&report.vantage) {
                        store.record(&o);
                    }
                    if let Some(t) = store.target(&report.run.target) {
                        let now = steerd::clock::wall_ms();
                        for w in steerd::health::WINDOWS {
                            let s = t.stats(steerd::health::Level::Check, now, w);
                            println!("  {w:>3}: {}", s.summary());
                        }
                    }
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        prober.stop();
        ExitCode::SUCCESS
    })
}

fn load_for_serve(args: &ServeArgs) -> Result<steerd::config::ValidConfig, String> {
    let mut cfg = match &args.config {
        Some(path) => steerd::config::load(path),
        None if !std::path::Path::new(DEFAULT_CONFIG).exists() => {
            info!("{DEFAULT_CONFIG} not found: serving the embedded demo configuration");
            steerd::config::parse_to_serve(EMBEDDED_CONFIG, "<embedded config/steerd.toml>", None)
        }
        None => steerd::config::load(std::path::Path::new(DEFAULT_CONFIG)),
    }
    .map_err(|e| e.to_string())?;
    if !args.dns_listen.is_empty() {
        cfg.server.dns_listen = args.dns_listen.clone();
    }
    if args.admin_listen.is_some() {
        cfg.server.admin_listen = args.admin_listen;
    }
    Ok(cfg)
}

/// The admin API's address when neither the file nor the command line sets one.
const DEFAULT_ADMIN: &str = "127.0.0.1:8053";

/// Where the configuration came from, for the admin API's writes and SIGHUP.
fn config_source(args: &ServeArgs) -> steerd::admin::store::ConfigSource {
    let path = match &args.config {
        Some(p) => Some(p.clone()),
        None if std::path::Path::new(DEFAULT_CONFIG).exists() => {
            Some(PathBuf::from(DEFAULT_CONFIG))
        }
        None => None,
    };
    let dns_listen = args.dns_listen.clone();
    let admin_listen = args.admin_listen;
    let adjust: steerd::admin::store::Adjust = std::sync::Arc::new(move |cfg| {
        if !dns_listen.is_empty() {
            cfg.server.dns_listen = dns_listen.clone();
        }
        if admin_listen.is_some() {
            cfg.server.admin_listen = admin_listen;
        }
        if cfg.server.admin_listen.is_none() {
            cfg.server.admin_listen = DEFAULT_ADMIN.parse().ok();
        }
    });
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(&p).ok();
            steerd::admin::store::ConfigSource {
                path: Some(p),
                text,
                adjust,
            }
        }
        None => steerd::admin::store::ConfigSource {
            path: None,
            text: Some(EMBEDDED_CONFIG.to_string()),
            adjust,
        },
    }
}

/// A runtime from `builder` with every driver on; None (and the reason on stderr) when it
/// cannot start.
fn runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    builder
        .enable_all()
        .build()
        .map_err(|e| eprintln!("cannot start the runtime: {e}"))
        .ok()
}

fn serve(args: ServeArgs) -> ExitCode {
    let cfg = match load_for_serve(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    let mut cfg = cfg;
    if cfg.server.admin_listen.is_none() {
        cfg.server.admin_listen = Some(DEFAULT_ADMIN.parse().expect("valid default"));
    }
    let source = config_source(&args);
    runtime.block_on(async move {
        // Signals are ours before the listeners answer: a SIGHUP or SIGTERM that comes while
        // the server starts waits for it instead of killing the process (the default action).
        let signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                error!("cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut server = match steerd::Server::start_with_source(cfg, source).await {
            Ok(s) => s,
            Err(e) => {
                error!("cannot start: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        run_until_signal(&mut server, signals).await;
        server.shutdown().await;
        info!("stopped");
        ExitCode::SUCCESS
    })
}

/// The signals `serve` handles.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// Wait for SIGTERM/SIGINT; on SIGHUP reload the configuration file (a bad file is logged and
/// the running configuration keeps serving).
async fn run_until_signal(server: &mut steerd::Server, signals: Signals) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); return; }
            _ = int.recv() => { info!("SIGINT: shutting down"); return; }
            _ = hup.recv() => {
                let s = &*server;
                match tokio::task::block_in_place(|| s.reload()) {
                    Ok(v) => info!(config_version = v, "SIGHUP: configuration reloaded"),
                    Err(e) => error!("reload rejected, keeping the running configuration:\n{e}"),
                }
            }
        }
    }
}
