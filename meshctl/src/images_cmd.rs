//! `meshctl images copy IMAGE --from HOST --to HOST`: one host's image into another's Podman
//! through the agents' tunnel, with progress (bytes, rate, ETA) on stderr and the outcome on
//! stdout (or as JSON).

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use mesh_proto::v1::{CopyImageRequest, ImageCopyProgress};
use serde::Serialize;
use tonic::transport::Channel;

use crate::Output;

#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// Copy IMAGE from one host's Podman to another's (podman save there, podman load here,
    /// through the mutual-TLS tunnel; checked by SHA-256 before it is loaded).
    Copy(CopyArgs),
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    pub image: String,
    /// The host that holds the image.
    #[arg(long)]
    pub from: String,
    /// The host to copy it to.
    #[arg(long)]
    pub to: String,
    /// Give up when no data came for this many seconds.
    #[arg(long, default_value_t = 15)]
    pub stall_timeout_s: u32,
}

#[derive(Serialize)]
struct CopyJson<'a> {
    schema: &'static str,
    image: &'a str,
    from: &'a str,
    to: &'a str,
    bytes: u64,
    seconds: f64,
    mib_per_s: f64,
    sha256: &'a str,
    loaded: &'a [String],
    already_present: bool,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One progress line: "312.0 / 1024.0 MiB  30%  85.2 MiB/s  ETA 8 s".
pub fn progress_line(p: &ImageCopyProgress) -> String {
    let rate = if p.seconds > 0.0 {
        mib(p.bytes) / p.seconds
    } else {
        0.0
    };
    match p.phase.as_str() {
        "connecting" => "connecting to the source agent".to_string(),
        "loading" => format!(
            "{:.1} MiB received and checked; loading into Podman",
            mib(p.bytes)
        ),
        _ if p.total_bytes > 0 => {
            let pct = (p.bytes as f64 * 100.0 / p.total_bytes as f64).min(100.0);
            let eta = if rate > 0.0 {
                format!(
                    "ETA {:.0} s",
                    mib(p.total_bytes.saturating_sub(p.bytes)) / rate
                )
            } else {
                "ETA -".to_string()
            };
            format!(
                "{:.1} / {:.1} MiB  {pct:.0}%  {rate:.1} MiB/s  {eta}",
                mib(p.bytes),
                mib(p.total_bytes)
            )
        }
        _ => format!("{:.1} MiB  {rate:.1} MiB/s", mib(p.bytes)),
    }
}

pub async fn copy(
    client: &mut AdminServiceClient<Channel>,
    args: &CopyArgs,
    output: Output,
) -> Result<()> {
    let mut stream = client
        .copy_image(CopyImageRequest {
            image: args.image.clone(),
            from_node: args.from.clone(),
            to_node: args.to.clone(),
            stall_timeout_ms: args.stall_timeout_s.saturating_mul(1000),
        })
        .await
        .map_err(crate::admin::call_error)?
        .into_inner();
    let tty = output == Output::Table && std::io::IsTerminal::is_terminal(&std::io::stderr());
    loop {
        let Some(p) = stream.message().await.map_err(crate::admin::call_error)? else {
            bail!(
                "the coordinator ended the copy without a result; see `meshctl images {}`",
                args.to
            );
        };
        if !p.error.is_empty() {
            if tty {
                eprintln!();
            }
            bail!(
                "copying {} from {} to {}: {}",
                args.image,
                args.from,
                args.to,
                p.error
            );
        }
        if !p.done {
            if output == Output::Table {
                if tty {
                    eprint!("\r\x1b[K{}", progress_line(&p));
                } else {
                    eprintln!("{}", progress_line(&p));
                }
            }
            continue;
        }
        if tty {
            eprintln!();
        }
        let rate = if p.seconds > 0.0 {
            mib(p.bytes) / p.seconds
        } else {
            0.0
        };
        match output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(&CopyJson {
                    schema: "meshctl.image-copy.v1",
                    image: &args.image,
                    from: &args.from,
                    to: &args.to,
                    bytes: p.bytes,
                    seconds: p.seconds,
                    mib_per_s: rate,
                    sha256: &p.sha256,
                    loaded: &p.loaded,
                    already_present: p.already_present,
                })?
            ),
            Output::Table if p.already_present => println!(
                "{} already holds {}: nothing copied",
                args.to, args.image
            ),
            Output::Table => println!(
                "copied {} from {} to {}: {:.1} MiB in {:.1} s ({rate:.1} MiB/s), sha256 {} checked; loaded as {}",
                args.image,
                args.from,
                args.to,
                mib(p.bytes),
                p.seconds,
                p.sha256,
                p.loaded.join(", ")
            ),
        }
        return Ok(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_says_bytes_rate_and_eta() {
        let p = ImageCopyProgress {
            phase: "receiving".into(),
            bytes: 256 << 20,
            total_bytes: 1024 << 20,
            seconds: 2.0,
            ..Default::default()
        };
        assert_eq!(
            progress_line(&p),
            "256.0 / 1024.0 MiB  25%  128.0 MiB/s  ETA 6 s"
        );
        let p = ImageCopyProgress {
            phase: "loading".into(),
            bytes: 1 << 20,
            ..Default::default()
        };
        assert!(progress_line(&p).contains("loading into Podman"));
    }
}
