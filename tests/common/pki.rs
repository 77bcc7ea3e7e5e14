//! A test certificate authority (rcgen): a CA and leaf certificates it signs, written as
//! PEM files the way cert-manager mounts them (`tls.crt` chain, `tls.key`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
    /// The CA certificate's file (for curl --cacert, openssl -CAfile, ca_file keys).
    pub file: PathBuf,
}

pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed CA");
        let pem = cert.pem();
        let file = dir.join(format!("{name}.ca.pem"));
        std::fs::write(&file, &pem).expect("write CA");
        Ca {
            issuer: Issuer::new(params, key),
            pem,
            file,
        }
    }

    /// A leaf for `names`, with `serial`, written to `<dir>/<file>.crt` (leaf then CA,
    /// as a chain file holds it) and `<dir>/<file>.key`.
    pub fn leaf(&self, dir: &Path, file: &str, names: &[&str], serial: u64) -> Leaf {
        self.leaf_with(dir, file, names, serial, |_| {})
    }

    /// Like [`Ca::leaf`], valid only during 2020: expired.
    pub fn expired_leaf(&self, dir: &Path, file: &str, names: &[&str], serial: u64) -> Leaf {
        self.leaf_with(dir, file, names, serial, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }

    fn leaf_with(
        &self,
        dir: &Path,
        file: &str,
        names: &[&str],
        serial: u64,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
        edit(&mut params);
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        let leaf = Leaf {
            cert: dir.join(format!("{file}.crt")),
            key: dir.join(format!("{file}.key")),
        };
        // Written to temporary names and renamed: a reader never sees half a file, as
        // with the atomic symlink swap of a Kubernetes Secret volume.
        let write = |path: &Path, text: String| {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).expect("write PEM");
            std::fs::rename(&tmp, path).expect("rename PEM");
        };
        write(&leaf.key, key.serialize_pem());
        write(&leaf.cert, format!("{}{}", cert.pem(), self.pem));
        leaf
    }
}

/// YAML under `xipgate:` for an HTTPS listener at the harness's `HTTPS_ADDR` serving
/// `certs` (files looked at every 100 ms), followed by `extra`.
pub fn tls_yaml(certs: &[&Leaf], extra: &str) -> String {
    let mut y = String::from(
        "  tls:\n    listen: [\"HTTPS_ADDR\"]\n    reload_interval: 100ms\n    certificates:\n",
    );
    for c in certs {
        y.push_str(&format!(
            "      - cert: {}\n        key: {}\n",
            c.cert.display(),
            c.key.display()
        ));
    }
    y.push_str(extra);
    y
}
