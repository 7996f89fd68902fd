//! The `plugboard` command line.

mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    plugboard::engine::limit_allocator_arenas();
    let cli = commands::Cli::parse();
    commands::init_logging(&cli);
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
