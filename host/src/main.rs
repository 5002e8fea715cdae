//! The `llmgate` binary: parse the command line, set up logging, run the gateway.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use clap::Parser;

/// mimalloc: the request path allocates many small, short-lived buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use llmgate::config::Overrides;
use llmgate::{RunOptions, run};

/// An LLM gateway: OpenAI/Anthropic-compatible API, WASM provider and routing plugins.
#[derive(Debug, Parser)]
#[command(name = "llmgate", version, about)]
struct Cli {
    /// Instead of serving: database maintenance (`llmgate db --help`).
    #[command(subcommand)]
    command: Option<Command>,
    /// LiteLLM-compatible config.yaml.
    #[arg(
        short,
        long,
        env = "LLMGATE_CONFIG",
        alias = "config_file_path",
        global = true
    )]
    config: Option<PathBuf>,
    /// Serve this model (provider/model, e.g. openai/gpt-4o), like `litellm --model`.
    /// Repeatable; the first one also answers for any model name.
    #[arg(short, long)]
    model: Vec<String>,
    /// Name clients use for the first --model.
    #[arg(long)]
    alias: Option<String>,
    /// api_base for the --model deployments.
    #[arg(long = "api_base", alias = "api-base")]
    api_base: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "LLMGATE_HOST", default_value = "0.0.0.0")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(short, long, env = "LLMGATE_PORT", default_value_t = 4000)]
    port: u16,
    /// Folder with the plugin .wasm files (default: plugins/dist, else plugins).
    #[arg(
        long = "plugins-dir",
        alias = "plugins_dir",
        env = "LLMGATE_PLUGINS_DIR"
    )]
    plugins_dir: Option<PathBuf>,
    /// Event loops (default: one per core). Each runs on a thread of its own and serves the
    /// connections it accepts start to end, like LiteLLM's worker processes.
    #[arg(long = "num_workers", alias = "num-workers")]
    num_workers: Option<usize>,
    /// How the workers share work: `per-worker` (default: one single-threaded event loop
    /// per worker, no task moves between threads) or `shared` (one work-stealing runtime
    /// with that many threads).
    #[arg(long, value_enum, default_value_t = Scheduler::PerWorker)]
    scheduler: Scheduler,
    /// Debug logging.
    #[arg(long, alias = "detailed_debug")]
    debug: bool,
    /// Logs as JSON lines.
    #[arg(long = "json-logs", alias = "json_logs")]
    json_logs: bool,
}

/// What to do instead of serving.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Database maintenance on the database the config names; then exit.
    #[command(subcommand)]
    Db(DbCommand),
}

/// `llmgate db ...`.
#[derive(Debug, clap::Subcommand)]
enum DbCommand {
    /// Apply pending schema migrations and exit, printing the version before and after.
    /// Refused while a gateway serves from the database.
    Migrate {
        /// Change nothing: exit 1 if migrations are pending (or the database is missing).
        #[arg(long)]
        check: bool,
    },
    /// Write a consistent copy of the database to FILE (which must not exist), also while
    /// a gateway serves from it.
    Backup {
        /// The new file.
        file: PathBuf,
    },
    /// Copy every key and spend log row of the SQLite database into a PostgreSQL database
    /// (migrated first); refused while a gateway serves from the file. Safe to repeat.
    Copy {
        /// The target: `postgresql://user:password@host:port/db` or `os.environ/VAR`.
        #[arg(long)]
        to: String,
    },
}

/// `--scheduler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scheduler {
    /// One single-threaded event loop per worker thread.
    PerWorker,
    /// One work-stealing runtime over all worker threads.
    Shared,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default = if cli.debug {
        "llmgate=debug,info"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LLMGATE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // LiteLLM's three switches for JSON logs: the flag, `JSON_LOGS=true`, and
    // `litellm_settings.json_logs: true` in the config.
    let json_logs = cli.json_logs
        || std::env::var("JSON_LOGS").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || cli
            .config
            .as_deref()
            .is_some_and(llmgate::config::wants_json_logs);
    // Colour only for a person at a terminal (https://no-color.org: any non-empty NO_COLOR
    // turns it off); a pipe or a file gets plain text.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
    let overrides = Overrides {
        models: cli.model,
        alias: cli.alias,
        api_base: cli.api_base,
        plugins_dir: cli.plugins_dir,
        config_dir: None,
    };
    if let Some(Command::Db(action)) = cli.command {
        return db(cli.config.as_deref(), &overrides, action);
    }

    let workers = cli
        .num_workers
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let shared = cli.scheduler == Scheduler::Shared && workers > 1;
    let mut rt = if shared {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    rt.enable_all();
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("llmgate: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let opts = RunOptions {
        config: cli.config,
        overrides,
        host: cli.host,
        port: cli.port,
        event_loops: if shared { 1 } else { workers },
    };
    match rt.block_on(run(opts)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llmgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `llmgate db ...`: run it, print its answer on stdout.
fn db(
    config: Option<&std::path::Path>,
    overrides: &Overrides,
    action: DbCommand,
) -> std::process::ExitCode {
    let action = match action {
        DbCommand::Migrate { check } => llmgate::db::Action::Migrate { check },
        DbCommand::Backup { file } => llmgate::db::Action::Backup { file },
        DbCommand::Copy { to } => llmgate::db::Action::Copy { to },
    };
    match llmgate::db::run(config, overrides, &action) {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("llmgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
