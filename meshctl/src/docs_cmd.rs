//! `meshctl completions SHELL` and `meshctl man`: shell completions and man pages generated
//! from the same clap definition the command line is parsed with, so they never drift from it.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Command;
use clap_complete::Shell;

/// Writes the completion script for `shell` to `out`.
pub fn completions(mut cmd: Command, shell: Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Without `dir`: the top-level page (`meshctl.1`) on `out`. With `dir`: `meshctl.1` and one
/// page per subcommand (`meshctl-place.1`, `meshctl-certs-issue.1`, ...) written there; existing
/// pages are replaced (they are generated). Returns the files written.
pub fn man(cmd: Command, dir: Option<&Path>, out: &mut dyn Write) -> Result<Vec<String>> {
    let Some(dir) = dir else {
        clap_mangen::Man::new(cmd)
            .render(out)
            .context("cannot write the man page")?;
        return Ok(Vec::new());
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {} for the man pages", dir.display()))?;
    let mut written = Vec::new();
    write_pages(cmd, &[], dir, &mut written)?;
    Ok(written)
}

fn write_pages(
    cmd: Command,
    parents: &[String],
    dir: &Path,
    written: &mut Vec<String>,
) -> Result<()> {
    let mut words = parents.to_vec();
    words.push(cmd.get_name().to_string());
    let file = dir.join(format!("{}.1", words.join("-")));
    let mut buf = Vec::new();
    // Sub-pages carry their full name in the title (`meshctl-place`), as git's do, and the
    // whole command in the synopsis (`meshctl place`).
    clap_mangen::Man::new(cmd.clone().bin_name(words.join(" ")))
        .title(words.join("-"))
        .render(&mut buf)
        .context("cannot render a man page")?;
    std::fs::write(&file, buf).with_context(|| format!("cannot write {}", file.display()))?;
    written.push(file.display().to_string());
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" || sub.is_hide_set() {
            continue;
        }
        write_pages(sub.clone(), &words, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn cli() -> Command {
        Command::new("meshctl")
            .about("Control a container mesh")
            .subcommand(
                Command::new("place")
                    .about("Plan a topology")
                    .arg(Arg::new("apply").long("apply").num_args(0)),
            )
            .subcommand(Command::new("certs").subcommand(Command::new("issue")))
    }

    #[test]
    fn bash_completion_names_every_subcommand_and_flag() {
        let mut out = Vec::new();
        completions(cli(), Shell::Bash, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("complete -F _meshctl"), "{text}");
        assert!(text.contains("place"));
        assert!(text.contains("--apply"));
        assert!(text.contains("issue"));
    }

    #[test]
    fn man_pages_one_per_subcommand_with_full_names() {
        let dir = tempfile::tempdir().unwrap();
        let written = man(cli(), Some(dir.path()), &mut Vec::new()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| {
                Path::new(p)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "meshctl.1",
                "meshctl-place.1",
                "meshctl-certs.1",
                "meshctl-certs-issue.1"
            ]
        );
        let page = std::fs::read_to_string(dir.path().join("meshctl-place.1")).unwrap();
        assert!(page.starts_with(".ie"), "roff: {page}");
        assert!(page.contains(".TH meshctl-place 1"), "{page}");
        assert!(
            page.contains("meshctl place"),
            "synopsis names the whole command: {page}"
        );
        assert!(page.contains("apply"));
    }

    #[test]
    fn top_page_goes_to_stdout_without_a_dir() {
        let mut out = Vec::new();
        assert!(man(cli(), None, &mut out).unwrap().is_empty());
        let page = String::from_utf8(out).unwrap();
        assert!(page.contains(".TH meshctl"), "{page}");
    }
}
