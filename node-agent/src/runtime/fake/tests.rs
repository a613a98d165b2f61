use super::*;

fn spec(name: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: "img:1".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn behaves_like_podman_where_the_manager_relies_on_it() {
    let rt = FakeRuntime::new();
    rt.create("home", &spec("a"), 1).await.unwrap();
    assert_eq!(rt.status("mesh-a").as_deref(), Some("created"));
    rt.start("mesh-a").await.unwrap();
    rt.start("mesh-a").await.unwrap(); // running: a no-op
    assert_eq!(rt.status("mesh-a").as_deref(), Some("running"));
    let listed = rt.list("home").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].owned().unwrap().name, "a");
    assert!(rt.list("other").await.unwrap().is_empty());
    rt.kill("mesh-a").await.unwrap();
    assert_eq!(rt.container("mesh-a").unwrap().exit_code, 137);
    rt.stop("mesh-a", Duration::from_secs(1)).await.unwrap(); // stopped: fine
    assert!(rt.pause("mesh-a").await.is_err());
    rt.remove("mesh-a").await.unwrap();
    rt.remove("mesh-a").await.unwrap();
    assert!(matches!(
        rt.start("mesh-a").await,
        Err(RuntimeError::NotFound { .. })
    ));
    assert_eq!(rt.calls_of(Op::Remove), vec!["mesh-a", "mesh-a"]);
    assert_eq!(rt.writes(), 9);
}

#[tokio::test(start_paused = true)]
async fn scripts_failures_crashes_and_slow_calls() {
    let rt = FakeRuntime::new();
    let missing = RuntimeError::ImageMissing {
        image: "img:1".into(),
    };
    rt.fail_next(Op::Create, "mesh-a", missing.clone());
    assert_eq!(rt.create("home", &spec("a"), 1).await, Err(missing));
    rt.create("home", &spec("a"), 1).await.unwrap();
    rt.crash_on_start("mesh-a", Some(3));
    rt.start("mesh-a").await.unwrap();
    assert_eq!(rt.status("mesh-a").as_deref(), Some("exited"));
    rt.crash_on_start("mesh-a", None);
    rt.start("mesh-a").await.unwrap();
    rt.delay(Op::Stop, "mesh-a", Duration::from_secs(10));
    let before = tokio::time::Instant::now();
    rt.stop("mesh-a", Duration::from_secs(10)).await.unwrap();
    assert_eq!(before.elapsed(), Duration::from_secs(10));
    rt.set_unavailable(true);
    assert!(matches!(
        rt.list("home").await,
        Err(RuntimeError::Unavailable { .. })
    ));
}
