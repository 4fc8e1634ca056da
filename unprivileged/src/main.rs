//! `patchman-agent`: thin. Parses arguments, refuses root, drops every
//! capability, sets up logging, runs the command.
#![forbid(unsafe_code)]

use patchman_agent::cli::{self, Command};
use patchman_agent::{commands, privs};

fn main() {
    let args = match cli::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("patchman-agent: {e}");
            std::process::exit(2);
        }
    };
    match args.command {
        Command::Help => {
            print!("{}", cli::USAGE);
            return;
        }
        Command::Version => {
            println!("patchman-agent {}", patchman_agent::VERSION);
            return;
        }
        _ => {}
    }
    if let Err(e) = privs::refuse_root().and_then(|()| privs::drop_all()) {
        eprintln!("patchman-agent: {e}");
        std::process::exit(commands::EXIT_FAILED);
    }
    let code = match args.command {
        Command::Status { json } => commands::status(&args.socket, json),
        Command::Check => commands::check(&args.socket),
        Command::Update => commands::update(&args.socket),
        Command::Run => {
            eprintln!("patchman-agent: the `run` daemon is not in this build yet; use `update` or `check`");
            commands::EXIT_FAILED
        }
        Command::Help | Command::Version => commands::EXIT_OK,
    };
    std::process::exit(code);
}
