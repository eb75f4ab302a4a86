//! The `retryd` command: parses the command line, loads the configuration, and hands over to
//! `app` for the chosen subcommand.

use std::process::ExitCode;

use clap::Parser;
use retryd::config::{Cli, Command, Config, KeysCommand, LogFormat, RoleArg};
use retryd::core::auth::Role;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.overrides) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("retryd: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("retryd: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The simulator's devices use the broker the server would (flag or RETRYD_MQTT_URL).
    let mqtt_url = cli.overrides.mqtt_url.clone();
    let outcome = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => retryd::app::serve(config).await,
            Command::Migrate => retryd::app::migrate(config).await,
            Command::Config => {
                print!("{}", config.to_toml());
                Ok(())
            }
            Command::Keys(KeysCommand::Create { role }) => {
                retryd::app::create_key(config, role_of(role)).await
            }
            Command::Worker(args) => retryd::tools::worker::run(args).await,
            Command::Bench(args) => retryd::tools::bench::run(args).await,
            Command::SimulateDevices(args) => retryd::tools::simulate::run(args, mqtt_url).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("retryd: {err}");
            ExitCode::FAILURE
        }
    }
}

fn role_of(role: RoleArg) -> Role {
    match role {
        RoleArg::Admin => Role::Admin,
        RoleArg::Service => Role::Service,
        RoleArg::Worker => Role::Worker,
        RoleArg::Reader => Role::Reader,
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RETRYD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in files and log collectors.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_ansi(colours)
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
