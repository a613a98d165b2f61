//! `meshctl import compose FILE...`: docker-compose / podman-compose files
//! to a topology. The conversion is mesh_topology::compose; this reads the
//! files, prints the warnings and writes the result (never over an
//! existing file without --force, and nothing at all on an error).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use mesh_topology::compose::{self, ComposeFile, Options};

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Convert compose files into a topology (TOML on stdout, or --out PATH).
    /// Each file becomes one group (its `name:`, else its file name);
    /// warnings name what could not be carried over.
    Compose(ComposeArgs),
}

#[derive(Args, Debug)]
pub struct ComposeArgs {
    /// docker-compose / podman-compose files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Write the topology to PATH instead of stdout.
    // Not --output: that is meshctl's global output format (-o table|json),
    // and clap allows one --output per command.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Replace PATH if it already exists.
    #[arg(long)]
    force: bool,
    /// Make one group per service instead of one per file.
    #[arg(long)]
    group_per_service: bool,
}

pub fn run(command: ImportCommand) -> Result<()> {
    match command {
        ImportCommand::Compose(args) => import_compose(&args),
    }
}

fn import_compose(args: &ComposeArgs) -> Result<()> {
    if let Some(out) = &args.out {
        refuse_overwrite(out, args.force)?;
    }
    let mut files = Vec::new();
    for path in &args.files {
        files.push(read(path)?);
    }
    let imported = compose::import(
        &files,
        Options {
            group_per_service: args.group_per_service,
        },
    )?;
    let mut stderr = std::io::stderr().lock();
    for w in &imported.warnings {
        writeln!(stderr, "warning: {w}")?;
    }
    let n = imported.warnings.len();
    writeln!(
        stderr,
        "{n} warning{}{}",
        if n == 1 { "" } else { "s" },
        if n == 0 {
            ""
        } else {
            ": review them (they are also comments in the topology)"
        }
    )?;
    match &args.out {
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(imported.toml.as_bytes())?;
            stdout.flush()?;
        }
        Some(out) => {
            write(out, &imported.toml, args.force)?;
            writeln!(
                stderr,
                "wrote {}: {} group(s), {} service(s); add [[hosts]] before placing it",
                out.display(),
                imported.groups,
                imported.services
            )?;
        }
    }
    Ok(())
}

fn refuse_overwrite(out: &Path, force: bool) -> Result<()> {
    if !force && out.exists() {
        bail!(
            "{} already exists; nothing was written\n  hint: pass --force to replace it, or choose another --out",
            out.display()
        );
    }
    Ok(())
}

/// The file's text; relative bind mounts resolve against its absolute
/// directory, as compose does.
fn read(path: &Path) -> Result<ComposeFile> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read compose file {}: {e}\n  hint: check the path (e.g. docker-compose.yml in the project's directory)",
            path.display()
        )
    })?;
    let absolute = std::path::absolute(path)
        .with_context(|| format!("cannot make {} an absolute path", path.display()))?;
    let mut file = ComposeFile::new(path, text);
    file.base_dir = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(file)
}

/// Writes `text` to `out`: without `force`, only as a new file (so a file
/// that appeared since the check is not replaced either); with it, through
/// a temporary file and a rename, so a reader never sees half a file.
fn write(out: &Path, text: &str, force: bool) -> Result<()> {
    let context = || format!("cannot write {}", out.display());
    if !force {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(out)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                    "{} already exists; nothing was written\n  hint: pass --force to replace it",
                    out.display()
                ),
                _ => anyhow::Error::new(e).context(context()),
            })?;
        if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.sync_all()) {
            let _ = std::fs::remove_file(out);
            return Err(anyhow::Error::new(e).context(context()));
        }
        return Ok(());
    }
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = out.with_file_name(name);
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, out));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow::Error::new(e).context(context()));
    }
    Ok(())
}
