//! A fresh mesh CA and certificates in a temporary directory, laid out as
//! `meshctl certs` lays them out.

use std::path::{Path, PathBuf};

use mesh_certs::{IssueRequest, Role};

pub struct Pki {
    dir: tempfile::TempDir,
    pub mesh: String,
}

impl Pki {
    pub fn new(mesh: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("mesh-pki-")
            .tempdir()
            .expect("temp dir");
        mesh_certs::init_dir(dir.path(), mesh, 30, false).expect("init CA");
        Pki {
            dir,
            mesh: mesh.to_string(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn issue(&self, role: Role, name: &str, sans: &[&str]) -> PathBuf {
        mesh_certs::issue_to_dir(
            self.dir(),
            &IssueRequest {
                role,
                name: name.to_string(),
                sans: sans.iter().map(|s| s.to_string()).collect(),
                days: 30,
                force: false,
            },
        )
        .expect("issue certificate")
        .cert_path
    }

    pub fn tls(&self, role: Role, name: &str) -> mesh_certs::MeshTls {
        mesh_certs::MeshTls::load(&mesh_certs::TlsFiles::in_dir(self.dir(), role, name))
            .expect("load TLS identity")
    }
}
