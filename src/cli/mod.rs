//! Command-line entry: one subcommand per module, each owning its options and `run`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod events;
pub mod features;
pub mod ort_alone;
pub mod score;
pub mod serve;
pub mod sources;

#[derive(Debug, Parser)]
#[command(name = "ctrbid", version, about = "A real-time bidding engine with ONNX CTR models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve OpenRTB bid requests.
    Serve(Box<serve::Opts>),
    /// Generate a synthetic exchange: catalog, request log, impression log with true probabilities.
    Simulate(crate::simulate::Opts),
    /// Turn simulator logs, Criteo or CSV datasets into training arrays (.npy) with a feature spec.
    Features(features::Opts),
    /// Score training arrays with an ONNX model through the serving scorer (parity checks).
    Score(score::Opts),
    /// Score a corpus's candidate rows with ONNX Runtime alone, in batches, and report rows/s and CPU per request.
    OrtAlone(ort_alone::Opts),
    /// Print the event log (bids and what came back of them) as JSON lines.
    Events(events::Opts),
    /// Send bid requests at a fixed rate (open loop) and report latency from each one's intended send time.
    Loadgen(crate::loadgen::Opts),
    /// Play the simulator as a live exchange against running bidders (simulation clock) and judge them on its own ledger.
    Exchange(crate::exchange::Opts),
}

/// Runs the command line; errors are printed with their causes (and, for a value an
/// environment variable set, which one: [`sources`]) and give exit code 1, or 2 for
/// a command line clap cannot parse.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let _ = e.print();
            for note in sources::parse_error_notes(&text, &args) {
                eprintln!("{note}");
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let serving = matches!(cli.command, Command::Serve(_));
    let result = match cli.command {
        Command::Serve(opts) => serve::run(*opts),
        Command::Simulate(opts) => crate::simulate::run(opts),
        Command::Features(opts) => features::run(opts),
        Command::Score(opts) => score::run(opts),
        Command::OrtAlone(opts) => ort_alone::run(opts),
        Command::Loadgen(opts) => crate::loadgen::run(opts),
        Command::Events(opts) => events::run(opts),
        Command::Exchange(opts) => crate::exchange::run(opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let text = format!("{err:#}");
            eprintln!("error: {text}");
            if serving {
                for note in sources::serve_error_notes(&text, &args) {
                    eprintln!("{note}");
                }
            }
            ExitCode::FAILURE
        }
    }
}
