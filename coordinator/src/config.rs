//! Coordinator configuration: a TOML file, overridden by flags and
//! environment variables. Parsing is pure; bad values name the field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_certs::{Role, TlsFiles};
pub use mesh_topology::ConfigError;
use serde::Deserialize;

use crate::decide::liveness::LivenessPolicy;
use crate::rpc::server::Settings;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:7443";
pub const DEFAULT_JOIN_PORT: u16 = 7445;
pub const DEFAULT_STATE_DIR: &str = "mesh-coordinator-state";

/// The file format (`coordinator.toml`). Every field is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    /// Where hosts without a certificate join with a token ("off": no
    /// joining) [the listen address's IP, port 7445]. Served only when
    /// the certificate directory holds a signing CA.
    pub join_listen: Option<String>,
    /// Lifetime of agent and coordinator certificates this coordinator
    /// issues and renews, in seconds [86400].
    pub member_cert_lifetime_s: Option<u64>,
    /// Lifetime of admin certificates it issues, in seconds [2592000].
    pub admin_cert_lifetime_s: Option<u64>,
    /// Where `/metrics` is served ("off": nowhere) [127.0.0.1:9464].
    pub metrics_listen: Option<String>,
    /// Serve `/metrics` and the dashboard over mutual TLS with the mesh
    /// certificates, for scrapers on other hosts [false].
    pub metrics_tls: Option<bool>,
    /// Where the applied topology is kept; default `mesh-coordinator-state`
    /// in the working directory.
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub liveness: LivenessSection,
    #[serde(default)]
    pub events: EventsSection,
}

/// `[events]`: how much of the event history the state database keeps.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// The newest this many events [100000].
    pub keep: Option<u64>,
    /// And none older than this many days [no age bound].
    pub keep_days: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// A directory laid out by `meshctl certs` (ca.crt, coordinator-NAME.crt/.key).
    pub certs_dir: Option<PathBuf>,
    /// The NAME in coordinator-NAME.crt; default "coordinator".
    pub name: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LivenessSection {
    pub suspect_after: Option<u32>,
    pub down_after: Option<u32>,
    pub tick_ms: Option<u64>,
}

/// Values given on the command line or in the environment; they win over the file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub join_listen: Option<String>,
    pub member_cert_lifetime_s: Option<u64>,
    pub metrics_listen: Option<String>,
    pub metrics_tls: Option<bool>,
    pub state_dir: Option<PathBuf>,
    pub tls: TlsSection,
    pub liveness: LivenessSection,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// None: joining is off.
    pub join_listen: Option<SocketAddr>,
    /// Where the signing CA is looked for (the certificate directory).
    pub signing_dir: Option<PathBuf>,
    pub member_cert_lifetime: Duration,
    pub admin_cert_lifetime: Duration,
    pub tls: TlsFiles,
    pub settings: Settings,
}

pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    mesh_topology::parse_toml(path, text)
}

pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    mesh_topology::load_toml(path)
}

/// Merges file and overrides into a checked configuration.
pub fn resolve(file: FileConfig, over: Overrides) -> Result<Config, ConfigError> {
    let listen_text = over
        .listen
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen: SocketAddr = listen_text.parse().map_err(|e| {
        ConfigError::field(
            "listen",
            format!("'{listen_text}' is not an address and port ({e}); e.g. 0.0.0.0:7443"),
        )
    })?;
    let join_listen = match over.join_listen.or(file.join_listen).as_deref() {
        Some("off") => None,
        None => Some(SocketAddr::new(listen.ip(), DEFAULT_JOIN_PORT)),
        Some(text) => Some(text.parse::<SocketAddr>().map_err(|e| {
            ConfigError::field(
                "join_listen",
                format!("'{text}' is not an address and port ({e}); e.g. 0.0.0.0:7445, or \"off\""),
            )
        })?),
    };
    let lifetime = |field: &'static str, v: Option<u64>, default: u64| match v {
        None => Ok(Duration::from_secs(default)),
        Some(s @ 10..=31_536_000) => Ok(Duration::from_secs(s)),
        Some(s) => Err(ConfigError::field(
            field,
            format!("{s} s is outside 10..=31536000 (10 seconds to a year)"),
        )),
    };
    let member_cert_lifetime = lifetime(
        "member_cert_lifetime_s",
        over.member_cert_lifetime_s.or(file.member_cert_lifetime_s),
        86_400,
    )?;
    let admin_cert_lifetime = lifetime(
        "admin_cert_lifetime_s",
        file.admin_cert_lifetime_s,
        30 * 86_400,
    )?;
    let signing_dir = over.tls.certs_dir.clone().or(file.tls.certs_dir.clone());
    let name = over
        .tls
        .name
        .or(file.tls.name)
        .unwrap_or_else(|| "coordinator".into());
    let tls = TlsFiles::resolve(
        over.tls.certs_dir.or(file.tls.certs_dir).as_deref(),
        Role::Coordinator,
        &name,
        over.tls.ca.or(file.tls.ca),
        over.tls.cert.or(file.tls.cert),
        over.tls.key.or(file.tls.key),
    )
    .map_err(|message| ConfigError::field("tls", message))?;
    let defaults = Settings::default();
    let liveness = LivenessPolicy {
        suspect_after: over
            .liveness
            .suspect_after
            .or(file.liveness.suspect_after)
            .unwrap_or(defaults.liveness.suspect_after),
        down_after: over
            .liveness
            .down_after
            .or(file.liveness.down_after)
            .unwrap_or(defaults.liveness.down_after),
    };
    liveness
        .validate()
        .map_err(|message| ConfigError::field("liveness", message))?;
    let tick_ms = over
        .liveness
        .tick_ms
        .or(file.liveness.tick_ms)
        .unwrap_or(100);
    if !(10..=10_000).contains(&tick_ms) {
        return Err(ConfigError::field(
            "liveness.tick_ms",
            format!("{tick_ms} is outside 10..=10000"),
        ));
    }
    let metrics_listen = match over.metrics_listen.or(file.metrics_listen).as_deref() {
        None => defaults.metrics_listen,
        Some("off") => None,
        Some(text) => Some(text.parse::<SocketAddr>().map_err(|e| {
            ConfigError::field(
                "metrics_listen",
                format!(
                    "'{text}' is not an address and port ({e}); e.g. 127.0.0.1:9464, or \"off\""
                ),
            )
        })?),
    };
    let keep = file.events.keep.unwrap_or(crate::state::store::EVENTS_KEPT);
    if !(100..=100_000_000).contains(&keep) {
        return Err(ConfigError::field(
            "events.keep",
            format!("{keep} is outside 100..=100000000"),
        ));
    }
    let keep_for = match file.events.keep_days {
        None => None,
        Some(d @ 1..=36_500) => Some(Duration::from_secs(u64::from(d) * 86_400)),
        Some(d) => {
            return Err(ConfigError::field(
                "events.keep_days",
                format!("{d} is outside 1..=36500"),
            ))
        }
    };
    Ok(Config {
        listen,
        join_listen,
        signing_dir,
        member_cert_lifetime,
        admin_cert_lifetime,
        tls,
        settings: Settings {
            events: crate::state::events::Retention { keep, keep_for },
            liveness,
            tick: Duration::from_millis(tick_ms),
            state_dir: Some(
                over.state_dir
                    .or(file.state_dir)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            ),
            metrics_listen,
            metrics_tls: over.metrics_tls.or(file.metrics_tls).unwrap_or(false),
            ..defaults
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let err =
            parse_file(Path::new("c.toml"), "listen = \"0.0.0.0:1\"\nlisen = 2\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("c.toml") && text.contains("lisen"), "{text}");
    }

    #[test]
    fn flags_override_file_and_dir_layout_is_used() {
        let file = parse_file(
            Path::new("c.toml"),
            "listen = \"0.0.0.0:1\"\n[tls]\ncerts_dir = \"/certs\"\n[liveness]\nsuspect_after = 2\ndown_after = 4\n",
        )
        .unwrap();
        let over = Overrides {
            listen: Some("127.0.0.1:9".into()),
            ..Default::default()
        };
        let c = resolve(file, over).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9");
        assert_eq!(
            c.tls.cert,
            PathBuf::from("/certs/coordinator-coordinator.crt")
        );
        assert_eq!(c.tls.ca, PathBuf::from("/certs/ca.crt"));
        assert_eq!(c.settings.liveness.suspect_after, 2);
        assert_eq!(c.settings.liveness.down_after, 4);
        assert_eq!(
            c.settings.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9464"),
            "/metrics on localhost by default"
        );
    }

    #[test]
    fn metrics_listen_is_an_address_or_off() {
        let file = parse_file(Path::new("c.toml"), "[tls]\ncerts_dir = \"/c\"\n").unwrap();
        let over = |v: &str| Overrides {
            metrics_listen: Some(v.into()),
            ..Default::default()
        };
        let c = resolve(file.clone(), over("0.0.0.0:9100")).unwrap();
        assert_eq!(
            c.settings.metrics_listen.unwrap().to_string(),
            "0.0.0.0:9100"
        );
        assert!(resolve(file.clone(), over("off"))
            .unwrap()
            .settings
            .metrics_listen
            .is_none());
        let err = resolve(file, over("here")).unwrap_err().to_string();
        assert!(
            err.starts_with("metrics_listen:") && err.contains("\"off\""),
            "{err}"
        );
    }

    #[test]
    fn event_retention_is_a_count_and_an_age() {
        let file = parse_file(
            Path::new("c.toml"),
            "[tls]\ncerts_dir = \"/c\"\n[events]\nkeep = 5000\nkeep_days = 7\n",
        )
        .unwrap();
        let c = resolve(file, Overrides::default()).unwrap();
        assert_eq!(c.settings.events.keep, 5000);
        assert_eq!(
            c.settings.events.keep_for,
            Some(Duration::from_secs(7 * 86_400))
        );
        let file = parse_file(
            Path::new("c.toml"),
            "[tls]\ncerts_dir = \"/c\"\n[events]\nkeep_days = 0\n",
        )
        .unwrap();
        let err = resolve(file, Overrides::default()).unwrap_err().to_string();
        assert!(err.starts_with("events.keep_days:"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let over = Overrides {
            listen: Some("nowhere".into()),
            ..Default::default()
        };
        let err = resolve(FileConfig::default(), over)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("listen:"), "{err}");
        let err = resolve(FileConfig::default(), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("tls:"), "{err}");
        let file = parse_file(
            Path::new("c.toml"),
            "[tls]\ncerts_dir = \"/c\"\n[liveness]\nsuspect_after = 5\ndown_after = 3\n",
        )
        .unwrap();
        let err = resolve(file, Overrides::default()).unwrap_err().to_string();
        assert!(err.starts_with("liveness:"), "{err}");
    }
}
