//! The `kafka-gateway` command line: its subcommands and how they are parsed.
//!
//! Only `serve` exists today; each subcommand owns its arguments, so client
//! subcommands can join without touching the gateway's configuration.

use crate::config::{self, Config};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;

/// The command line of the `kafka-gateway` binary.
#[derive(Debug, Parser)]
#[command(
    name = "kafka-gateway",
    version,
    about = "A gRPC gateway to Apache Kafka"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The binary's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API.
    Serve(Box<Config>),
}

impl Cli {
    /// Parses the command line and the environment, and for `serve` the `--config`
    /// file beneath them. Validating the configuration is left to the caller, so it
    /// can report every problem at once.
    pub fn load<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = Cli::command().try_get_matches_from(&args)?;
        let cli = Cli::from_arg_matches(&matches)?;
        let (Command::Serve(serve), Some(("serve", serve_matches))) =
            (&cli.command, matches.subcommand())
        else {
            return Ok(cli);
        };
        let Some(path) = &serve.config else {
            return Ok(cli);
        };
        let file_args = config::file::arguments(path, serve_matches).map_err(|e| {
            Cli::command().error(clap::error::ErrorKind::InvalidValue, e.to_string())
        })?;
        // Parse again with the file's settings between the subcommand and its own
        // arguments (no option comes before the subcommand): the file gave only
        // settings still at their defaults.
        let (program_and_subcommand, own) = args.split_at(2);
        let mut merged = program_and_subcommand.to_vec();
        merged.extend(file_args.into_iter().map(OsString::from));
        merged.extend(own.iter().cloned());
        Cli::try_parse_from(merged)
    }
}

#[cfg(test)]
mod tests;
