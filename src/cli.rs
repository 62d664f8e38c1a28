//! The `wemaster` command line. Every failure ends in one line on stderr and a non-zero exit
//! code: 2 for configuration, 1 for anything else. Never a panic or a backtrace.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{
    auth,
    config::{ConfigError, Settings, Sources},
    db,
    startup::{Application, shutdown_signal},
    telemetry,
    users::{self, DisplayName, Email, Password, Role},
};

#[derive(Parser)]
#[command(
    name = "wemaster",
    version,
    about = "Live teaching server: RTMP/WHIP ingest, HLS, recordings, courses, chat, payments"
)]
struct Cli {
    /// Configuration file layered over the defaults (also WEMASTER_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Administrative tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print the effective configuration (secrets redacted).
    Config,
    /// Check GStreamer and every element the pipeline templates use.
    Doctor,
    /// Print the OpenAPI document (the web app's API types are generated from it).
    Openapi,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user.
    CreateUser {
        #[arg(long)]
        email: String,
        /// The password (or set WEMASTER_ADMIN_PASSWORD to keep it out of the process list).
        #[arg(long, env = "WEMASTER_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        /// One of student, teacher, admin, ops; repeat for several.
        #[arg(long = "role", default_value = "student")]
        roles: Vec<String>,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Back up the database and every stored object into a new folder (see docs/operations.md).
    Backup {
        /// The folder to write (new, or empty).
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Restore a backup into an empty database and the configured storage.
    Restore {
        /// A folder `admin backup` wrote.
        #[arg(long)]
        from: std::path::PathBuf,
    },
}

/// The set-up file `scripts/run` writes.
pub const LOCAL_CONFIG: &str = ".data/wemaster.toml";

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        return match crate::http::openapi().to_pretty_json() {
            Ok(doc) => {
                println!("{doc}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // scripts/run's set-up file, relative to the current folder (the repository's root, where
    // the README's commands run); WEMASTER_LOCAL_CONFIG names another, empty: none.
    let local = match std::env::var_os("WEMASTER_LOCAL_CONFIG") {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(std::path::PathBuf::from(p)),
        None => Some(std::path::PathBuf::from(LOCAL_CONFIG)),
    };
    let sources = Sources {
        local,
        file: cli.config.clone(),
        env: None,
    };
    let settings = match Settings::load(&sources) {
        Ok(s) => s,
        Err(e) => return config_failure(&e),
    };
    telemetry::init_tracing(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = runtime.block_on(run(cli.command, settings));
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_failure(e: &ConfigError) -> ExitCode {
    eprintln!("error: invalid configuration: {e}");
    ExitCode::from(2)
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            let app = Application::build(settings).await?;
            let token = app.shutdown_token();
            tokio::spawn(async move {
                shutdown_signal().await;
                token.cancel();
            });
            app.run_until_stopped().await?;
        }
        Command::Migrate => {
            let pool = db::connect(&settings.database).await?;
            db::migrate(&settings.database, &pool).await?;
            println!("migrations applied");
        }
        Command::Admin {
            command:
                AdminCommand::CreateUser {
                    email,
                    password,
                    roles,
                    display_name,
                },
        } => {
            let email = Email::parse(&email)?;
            let password = Password::parse(password)?;
            let roles = roles
                .iter()
                .map(|r| r.parse::<Role>())
                .collect::<Result<Vec<_>, _>>()?;
            let name = DisplayName::parse(
                display_name
                    .as_deref()
                    .unwrap_or_else(|| email.as_str().split('@').next().unwrap_or("user")),
            )?;
            let pool = db::connect(&settings.database).await?;
            db::migrate(&settings.database, &pool).await?;
            let hash = auth::hash_password(password.expose().to_string()).await?;
            let mut conn = pool.acquire().await?;
            let user = users::create_user(&mut conn, &email, &name, &hash, &roles)
                .await
                .context("cannot create the user")?;
            println!("{}", serde_json::to_string(&user)?);
        }
        Command::Admin {
            command: AdminCommand::Backup { to },
        } => {
            let summary = crate::backup::backup(&settings, &to).await?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Admin {
            command: AdminCommand::Restore { from },
        } => {
            let summary = crate::backup::restore(&settings, &from).await?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Config => print!("{}", settings.to_redacted_toml()),
        Command::Doctor => return crate::doctor::run(&settings).await,
        // Answered in main(), before logging starts (stdout is the document).
        Command::Openapi => {}
    }
    Ok(ExitCode::SUCCESS)
}
