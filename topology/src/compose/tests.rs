mod keys;

use proptest::prelude::*;

use super::*;
use crate::service::ServiceSpec;

const FILE: &str = "/srv/ai/docker-compose.yml";

fn import_one(text: &str) -> Imported {
    match import(&[ComposeFile::new(FILE, text)], Options::default()) {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    }
}

/// The output, parsed and validated by the topology's own reader.
fn services(i: &Imported) -> Vec<ServiceSpec> {
    let t = crate::validate::parse(Path::new("t.toml"), &i.toml)
        .unwrap_or_else(|d| panic!("{d:?}\n{}", i.toml));
    t.groups
        .iter()
        .flat_map(|g| g.services.iter().map(|s| s.get_ref().clone()))
        .collect()
}

fn service(i: &Imported, name: &str) -> ServiceSpec {
    services(i)
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no service {name} in\n{}", i.toml))
}

fn deps(s: &ServiceSpec) -> Vec<String> {
    s.depends_on.iter().map(|d| d.get_ref().clone()).collect()
}

/// Whether a warning about `service` and `key` mentions `needle`.
fn warned(i: &Imported, service: &str, key: &str, needle: &str) -> bool {
    i.warnings.iter().any(|w| {
        w.service.as_deref() == Some(service) && w.key == key && w.message.contains(needle)
    })
}

fn error(text: &str) -> String {
    match import(&[ComposeFile::new(FILE, text)], Options::default()) {
        Ok(i) => panic!("imported:\n{}", i.toml),
        Err(e) => e.to_string(),
    }
}

#[test]
fn smallest_file_gives_exact_text_and_is_deterministic() {
    let text = "services:\n  web:\n    image: nginx:1.27\n    ports: [\"8080:80\"]\n";
    let i = import_one(text);
    assert!(i.toml.starts_with(
        "# Topology imported from compose files by `meshctl import compose`:\n#   /srv/ai/docker-compose.yml -> group 'ai'\n"
    ), "{}", i.toml);
    assert!(i.toml.contains("# [[hosts]]\n"), "{}", i.toml);
    assert!(!i.toml.contains("\n[[hosts]]"), "no real hosts: {}", i.toml);
    assert!(
        i.toml.ends_with(
            "\n[[groups]]\nname = \"ai\"\n\n[[groups.services]]\nname = \"web\"\nimage = \"nginx:1.27\"\nports = [\"8080:80\"]\n"
        ),
        "{}",
        i.toml
    );
    assert!(i.warnings.is_empty(), "{:?}", i.warnings);
    assert_eq!((i.groups, i.services), (1, 1));
    assert_eq!(import_one(text), i);
}

#[test]
fn groups_per_file_or_per_service() {
    let core = ComposeFile::new(
        "/srv/ai/docker-compose.core-services.yml",
        "services:\n  registry: { image: i }\n  twin: { image: i, depends_on: [registry] }\n",
    );
    let named = ComposeFile::new(
        "/srv/ai/pc2.yml",
        "name: PC2_Memory\nservices:\n  memory: { image: i }\n",
    );
    let again = ComposeFile::new(
        "/srv/other/core-services-compose.yaml",
        "services:\n  other: { image: i }\n",
    );
    let i = import(&[core.clone(), named.clone(), again], Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let t =
        crate::validate::parse(Path::new("t.toml"), &i.toml).unwrap_or_else(|d| panic!("{d:?}"));
    let names: Vec<&str> = t.groups.iter().map(|g| g.name.get_ref().as_str()).collect();
    assert_eq!(names, ["core-services", "pc2-memory", "core-services-2"]);
    assert!(i
        .warnings
        .iter()
        .any(|w| w.key == "name" && w.message.contains("'core-services-2'")));

    let i = import(
        &[core, named],
        Options {
            group_per_service: true,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let t =
        crate::validate::parse(Path::new("t.toml"), &i.toml).unwrap_or_else(|d| panic!("{d:?}"));
    let names: Vec<&str> = t.groups.iter().map(|g| g.name.get_ref().as_str()).collect();
    assert_eq!(names, ["registry", "twin", "memory"]);
    // depends_on across groups is allowed by the topology.
    assert_eq!(deps(t.groups[1].services[0].get_ref()), ["registry"]);
}

#[test]
fn names_are_made_valid_and_clashes_are_refused() {
    let i = import_one("services:\n  Session_Memory: { image: i }\n  b: { image: i, depends_on: [Session_Memory] }\n");
    assert_eq!(deps(&service(&i, "b")), ["session-memory"]);
    assert!(warned(
        &i,
        "Session_Memory",
        "service name",
        "renamed to 'session-memory'"
    ));
    let e = error("services:\n  a_b: { image: i }\n  a-b: { image: i }\n");
    assert!(
        e.contains("service 'a-b'") && e.contains("the same as service 'a_b'"),
        "{e}"
    );
    let a = ComposeFile::new("/srv/a.yml", "services:\n  registry: { image: i }\n");
    let b = ComposeFile::new("/srv/b.yml", "services:\n  registry: { image: j }\n");
    let e = import(&[a, b], Options::default())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'registry' is defined in both /srv/a.yml and /srv/b.yml"),
        "{e}"
    );
    // With the port clash dropped, one group's services still validate.
    let i = import_one("services:\n  a: { image: i, ports: ['7000:1'] }\n  b: { image: i, ports: ['7000:2', '7001:2'] }\n");
    assert_eq!(service(&i, "b").ports, ["7001:2"]);
    assert!(warned(&i, "b", "ports", "already published by 'a'"));
}

#[test]
fn errors_name_the_file_and_the_fix() {
    let e = error("services:\n  a:\n    image: i\n   ports: [1]\n");
    assert!(e.starts_with("/srv/ai/docker-compose.yml:4:"), "{e}");
    assert!(
        e.contains("YAML syntax error") && e.contains("hint:"),
        "{e}"
    );
    let e = error("services:\n  a: {image: [}\n");
    assert!(e.starts_with("/srv/ai/docker-compose.yml:2:"), "{e}");
    for (text, needle) in [
        ("", "the file is empty"),
        ("- a\n- b\n", "the top level is a list"),
        ("version: '3'\n", "no top-level `services:` key"),
        ("services: {}\n", "lists no services"),
        ("services: [a]\n", "`services:` is a list"),
    ] {
        let e = error(text);
        assert!(
            e.contains("not a compose file") && e.contains(needle),
            "{text:?}: {e}"
        );
        assert!(e.contains("hint: pass a docker-compose"), "{e}");
    }
    let e = error("services:\n  a: 5\n");
    assert!(e.contains("service 'a': the service is a number"), "{e}");
    let e = error("services:\n  a: { ports: ['1:1'] }\n");
    assert!(
        e.contains("service 'a': it has neither image: nor build:"),
        "{e}"
    );
    let e = error(
        "services:\n  a: { image: i, depends_on: [b] }\n  b: { image: i, depends_on: [a] }\n",
    );
    assert!(
        e.contains("does not validate") && e.contains("dependency cycle"),
        "{e}"
    );
    assert!(import(&[], Options::default()).is_err());
}

/// The seed's docker-compose.core-services.yml, as our users wrote it.
#[test]
fn users_core_services_file() {
    let text = r#"
version: '3.8'

services:
  system-digital-twin:
    build:
      context: .
      dockerfile: Dockerfile.core-services
    container_name: system-digital-twin
    networks:
      core-services-network:
        ipv4_address: 172.21.0.10
    ports:
      - "7120:7120"
      - "7121:7121"
    environment:
      - AGENT_NAME=SystemDigitalTwin
      - PORT=7120
      - HEALTH_CHECK_PORT=7121
    volumes:
      - ./logs:/app/logs
      - ./config:/app/config
    command: ["python3", "main_pc_code/agents/system_digital_twin.py"]

  coordinator-agent:
    build:
      context: .
      dockerfile: Dockerfile.core-services
    container_name: coordinator-agent
    ports:
      - "26002:26002"
      - "26003:26003"
    environment:
      - AGENT_NAME=CoordinatorAgent
    command: ["python3", "main_pc_code/agents/coordinator_agent.py"]
    depends_on:
      - system-digital-twin

networks:
  core-services-network:
    external: true
"#;
    let f = ComposeFile::new("/srv/ai/docker-compose.core-services.yml", text);
    let i = import(&[f], Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let t =
        crate::validate::parse(Path::new("t.toml"), &i.toml).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(t.groups[0].name.get_ref(), "core-services");
    let twin = service(&i, "system-digital-twin");
    assert_eq!(twin.image, "localhost/system-digital-twin:latest");
    assert_eq!(twin.ports, ["7120:7120", "7121:7121"]);
    assert_eq!(
        twin.volumes,
        ["/srv/ai/logs:/app/logs", "/srv/ai/config:/app/config"]
    );
    assert_eq!(
        twin.env.get("HEALTH_CHECK_PORT").map(String::as_str),
        Some("7121")
    );
    assert_eq!(
        deps(&service(&i, "coordinator-agent")),
        ["system-digital-twin"]
    );
    // container_name equal to the service name is not worth a warning.
    assert!(!i.warnings.iter().any(|w| w.key == "container_name"));
    assert!(warned(
        &i,
        "system-digital-twin",
        "networks",
        "creates no networks"
    ));
}

/// A YAML double-quoted string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the values, the importer answers (a topology that
    /// validates, or an error) and never panics.
    #[test]
    fn any_values_import_or_fail_cleanly(
        port in "[0-9a-z:./\\[\\]-]{0,16}",
        volume in "[a-z./~:,]{0,16}",
        duration in "[0-9a-z.]{0,6}",
        size in "[0-9a-zA-Z.]{0,6}",
        command in "[ a-z'\"$|&;()\\\\]{0,20}",
        name in "[A-Za-z0-9_.-]{1,12}",
        count in "[0-9a-z-]{0,4}",
    ) {
        let text = format!(
            "services:\n  {name}:\n    image: i\n    ports: [{}]\n    volumes: [{}]\n    command: {}\n    mem_limit: {}\n    healthcheck: {{ test: [CMD, x], interval: {} }}\n    deploy: {{ resources: {{ reservations: {{ devices: [{{ capabilities: [gpu], count: {} }}] }} }} }}\n",
            quoted(&port), quoted(&volume), quoted(&command), quoted(&size), quoted(&duration), quoted(&count),
        );
        if let Ok(i) = import(&[ComposeFile::new(FILE, text)], Options::default()) {
            prop_assert!(crate::validate::parse(Path::new("t.toml"), &i.toml).is_ok());
        }
    }

    /// Any text at all: an answer, never a panic.
    #[test]
    fn any_text_imports_or_fails_cleanly(text in "[ -~\n]{0,200}") {
        let _ = import(&[ComposeFile::new(FILE, text)], Options::default());
    }
}
