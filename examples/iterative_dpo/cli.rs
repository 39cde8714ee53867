//! The command line (clap): every [`LoopConfig`] field is a flag (declared on the field itself);
//! `--config FILE.json` supplies a base configuration, and flags given anywhere on the line
//! override it.

use super::config::LoopConfig;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Online iterative DPO / RRHF (RLHFlow, arXiv 2405.07863) with Kiln.
///
/// With no options, runs the whole loop on the built-in tiny task on CPU: SFT, a proxy reward
/// model, T online iterations and an offline baseline, then prints an evaluation table. Rerun
/// with the same --out to resume after the last finished stage.
#[derive(Debug, Parser)]
// Negative numbers are values, not flags (`--temperature -1` reaches the validation that names
// the option instead of "unexpected argument"); float options also take `allow_hyphen_values`,
// since clap does not read `-1e-5` as a number.
#[command(name = "iterative_dpo", version, allow_negative_numbers = true)]
#[command(
    after_help = "Real models: --policy DIR alone runs the built-in task on that Hugging Face \
policy (its own samples train a proxy reward model on its backbone); --policy DIR --reward-model \
DIR --prompts FILE.jsonl runs the loop on your checkpoints and prompts (prompts as \
{\"prompt\": ...} or {\"messages\": [...]}, multi-turn with system messages). Logging: \
RUST_LOG (warnings are shown by default)."
)]
pub struct Args {
    /// JSON file with settings (keys as in <out>/config.json); flags override it.
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
    /// Skip the offline baseline.
    #[arg(long, overrides_with = "offline")]
    pub no_offline: bool,
    /// Built-in task: only train the SFT policy and the proxy reward model into --out, with
    /// `manifest.json` (settings and SHA-256 digests) beside them; `--out assets/builtin`
    /// refreshes the shipped ones.
    #[arg(long)]
    pub setup_only: bool,
    /// The run's settings, one flag per `LoopConfig` field.
    #[command(flatten)]
    pub run: LoopConfig,
}

impl Args {
    /// The configuration: `--config`'s file (or the defaults), then every flag given on the
    /// command line on top, whatever their order; validated. `matches` are the parsed arguments
    /// (they say which flags were given).
    pub fn into_config(self, matches: &ArgMatches) -> Result<LoopConfig, String> {
        let mut cfg = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--config {}: {e}", path.display()))?;
                serde_json::from_str::<Value>(&text)
                    .map_err(|e| format!("--config {}: {e}", path.display()))?
            }
            None => Value::Object(Default::default()),
        };
        let flags = serde_json::to_value(&self.run).map_err(|e| e.to_string())?;
        if let (Value::Object(cfg), Value::Object(flags)) = (&mut cfg, flags) {
            for (key, value) in flags {
                if matches.value_source(&key) == Some(ValueSource::CommandLine) {
                    cfg.insert(key, value);
                }
            }
            if self.no_offline {
                cfg.insert("offline".into(), Value::Bool(false));
            }
        }
        let path = self.config.as_deref().unwrap_or(Path::new("<flags>"));
        let cfg: LoopConfig =
            serde_json::from_value(cfg).map_err(|e| format!("--config {}: {e}", path.display()))?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Parses a command line (without the program name) into a validated configuration; `Err` holds
/// clap's error (which prints help and version too).
pub fn parse(args: &[&str]) -> Result<LoopConfig, clap::Error> {
    Ok(parse_command(args)?.0)
}

/// [`parse`], and whether `--setup-only` was given.
pub fn parse_command(args: &[&str]) -> Result<(LoopConfig, bool), clap::Error> {
    let argv = std::iter::once("iterative_dpo").chain(args.iter().copied());
    let matches = Args::command().try_get_matches_from(argv)?;
    let args = Args::from_arg_matches(&matches)?;
    let setup_only = args.setup_only;
    let cfg = args
        .into_config(&matches)
        .map_err(|m| clap::Error::raw(clap::error::ErrorKind::ValueValidation, m + "\n"))?;
    Ok((cfg, setup_only))
}
