use super::*;

#[test]
fn gpu_translation() {
    let none = gpu_access(&[], true, 1);
    assert!(none.cdi_devices.is_empty() && none.device_nodes.is_empty() && none.env.is_empty());

    let cdi = gpu_access(&["0".into(), "1".into()], true, 2);
    assert_eq!(
        cdi.cdi_devices,
        vec!["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
    );
    assert!(cdi.device_nodes.is_empty());
    assert_eq!(
        gpu_access(&["all".into()], true, 2).cdi_devices,
        vec!["nvidia.com/gpu=all"]
    );

    let raw = gpu_access(&["1".into()], false, 2);
    assert!(raw.cdi_devices.is_empty());
    assert!(raw.device_nodes.contains(&"/dev/nvidiactl".to_string()));
    assert!(raw.device_nodes.contains(&"/dev/nvidia1".to_string()));
    assert!(!raw.device_nodes.contains(&"/dev/nvidia0".to_string()));
    assert_eq!(raw.env["NVIDIA_VISIBLE_DEVICES"], "1");

    let all = gpu_access(&["all".into()], false, 2);
    assert!(all.device_nodes.contains(&"/dev/nvidia0".to_string()));
    assert!(all.device_nodes.contains(&"/dev/nvidia1".to_string()));
    assert_eq!(all.env["NVIDIA_VISIBLE_DEVICES"], "all");

    let uuid = gpu_access(&["GPU-abc".into()], false, 1);
    assert_eq!(uuid.env["NVIDIA_VISIBLE_DEVICES"], "GPU-abc");
    assert_eq!(uuid.device_nodes.len(), 3, "control nodes only: {uuid:?}");
}
