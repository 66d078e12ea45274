//! Where a setting came from, for error messages: a value a user set by environment
//! variable is named by that variable, not only by the flag or config key it stands for.
//!
//! Every flag with an `env = "CTRBID_..."` is found from clap's own description of the
//! command line, so a new one is covered without a list to keep. What is kept here is
//! which config key a `serve` flag sets, where the key's name is not the flag's
//! ([`SERVE_KEYS`]); validation errors name the key.

use clap::CommandFactory as _;
use std::ffi::OsString;

/// `serve` flags and the config key each sets.
pub const SERVE_KEYS: &[(&str, &str)] = &[
    ("listen", "server.listen"),
    ("notice-base-url", "server.notice_base_url"),
    ("model", "model.path"),
    ("spec", "model.spec"),
    ("catalog", "model.catalog"),
    ("onnxruntime-library", "model.onnxruntime_library"),
    ("workers", "server.workers"),
    ("inference-threads", "scoring.threads"),
    ("max-batch-rows", "scoring.max_batch_rows"),
    ("max-wait-us", "scoring.max_wait_us"),
    ("adaptive-wait", "scoring.adaptive_wait"),
    ("inline-scoring", "scoring.inline"),
    ("inline-max-busy", "scoring.inline_max_busy"),
    ("pin-threads", "scoring.pin_threads"),
    ("realtime-inference", "scoring.realtime_inference"),
    ("realtime-max-busy", "scoring.realtime_max_busy"),
    ("score-cache-entries", "scoring.cache_entries"),
    ("debug-ext", "server.debug_ext"),
    ("variant-name", "variants.name"),
    ("mode", "server.mode"),
    ("admin-listen", "admin.listen"),
    ("admin-token", "admin.token"),
    ("notice-key", "notices.hmac_key"),
    ("clock", "server.clock"),
    ("events-dir", "events.dir"),
    ("events-bid-sample", "events.bid_sample"),
    ("explore-share", "bidding.explore_share"),
    ("fleet-backend", "fleet.backend"),
    ("redis-url", "fleet.redis_url"),
    ("fleet-instance", "fleet.instance"),
    ("pacing", "pacing.enabled"),
    ("state-file", "pacing.state_file"),
    ("frequency-caps", "frequency_caps.enabled"),
    ("in-flight-s", "pacing.in_flight_s"),
    ("shading", "shading.mode"),
    ("shading-factor", "bidding.first_price_shading"),
    ("shading-oracle-seed", "shading.oracle_seed"),
];

/// A flag of some subcommand that can also be set by an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFlag {
    pub subcommand: String,
    pub long: String,
    pub env: String,
}

/// Every flag with an environment variable, from the command line's definition.
pub fn env_flags() -> Vec<EnvFlag> {
    let cli = super::Cli::command();
    let mut out = Vec::new();
    for sub in cli.get_subcommands() {
        for arg in sub.get_arguments() {
            if let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) {
                out.push(EnvFlag {
                    subcommand: sub.get_name().to_string(),
                    long: long.to_string(),
                    env: env.to_string_lossy().into_owned(),
                });
            }
        }
    }
    out
}

/// Whether `--long` is on the command line `args` (as `--long V` or `--long=V`).
fn on_command_line(args: &[OsString], long: &str) -> bool {
    let flag = format!("--{long}");
    args.iter().filter_map(|a| a.to_str()).any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

/// The flags of `subcommand` that the environment set (the variable is set and the
/// flag is not on the command line, which would win).
fn from_environment(subcommand: &str, args: &[OsString]) -> Vec<EnvFlag> {
    env_flags()
        .into_iter()
        .filter(|f| f.subcommand == subcommand && std::env::var_os(&f.env).is_some() && !on_command_line(args, &f.long))
        .collect()
}

/// Lines to add to a command-line parse error: for each flag the error names that came
/// from an environment variable, which variable.
pub fn parse_error_notes(error_text: &str, args: &[OsString]) -> Vec<String> {
    let Some(subcommand) = args.get(1).and_then(|a| a.to_str()) else { return Vec::new() };
    from_environment(subcommand, args)
        .into_iter()
        .filter(|f| error_text.contains(&format!("--{} ", f.long)) || error_text.contains(&format!("--{}'", f.long)))
        .map(|f| format!("note: --{} was given by the environment variable {}", f.long, f.env))
        .collect()
}

/// Lines to add to an error of `ctrbid serve`: for each config key the error names that
/// a flag's environment variable set, which variable.
pub fn serve_error_notes(error_text: &str, args: &[OsString]) -> Vec<String> {
    from_environment("serve", args)
        .into_iter()
        .filter_map(|f| {
            let key = SERVE_KEYS.iter().find(|(long, _)| *long == f.long)?.1;
            error_text
                .contains(key)
                .then(|| format!("note: {key} was set by the environment variable {} (--{})", f.env, f.long))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_serve_flag_with_a_variable_has_its_config_key() {
        let serve: Vec<EnvFlag> = env_flags().into_iter().filter(|f| f.subcommand == "serve").collect();
        assert!(serve.len() > 20, "{serve:?}");
        for f in serve.iter().filter(|f| f.long != "config") {
            assert!(SERVE_KEYS.iter().any(|(long, _)| *long == f.long), "--{} ({}) not in SERVE_KEYS", f.long, f.env);
            assert_eq!(f.env, format!("CTRBID_{}", f.long.to_uppercase().replace('-', "_")));
        }
        for (long, _) in SERVE_KEYS {
            assert!(serve.iter().any(|f| f.long == *long), "SERVE_KEYS names --{long}, which serve does not have");
        }
    }

    #[test]
    fn a_flag_on_the_command_line_is_not_from_the_environment() {
        let args: Vec<OsString> =
            ["ctrbid", "serve", "--notice-key=abc", "--debug-ext", "true"].map(Into::into).to_vec();
        assert!(on_command_line(&args, "notice-key"));
        assert!(on_command_line(&args, "debug-ext"));
        assert!(!on_command_line(&args, "notice"));
    }
}
