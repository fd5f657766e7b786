//! The command lines of the interop runs' programs (`examples/fault_proxy.rs`,
//! `examples/reference_client.rs`): `--flag value` pairs.

use std::fmt::Display;
use std::str::FromStr;

/// The `--flag value` pairs of this process's arguments, in order; `-h` or `--help` prints
/// `usage` and exits.
pub fn flag_values(usage: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{usage}");
            std::process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        pairs.push((flag, value));
    }
    Ok(pairs)
}

/// `value`, given for `flag`, parsed.
pub fn parse<T>(flag: &str, value: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    value.parse().map_err(|error| invalid(flag, value, error))
}

/// The message for a `value` of `flag` that `error` refused.
pub fn invalid(flag: &str, value: &str, error: impl Display) -> String {
    format!("{flag} {value}: {error}")
}
