//! The `ctrbid` binary: parses the command line and hands over to [`ctrbid::cli`].

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    ctrbid::cli::main()
}
