//! `xipgate.acme.store`: a directory every replica mounts (the default), or the Kubernetes
//! API server. The object names of the Kubernetes store are made here, so the checks and
//! the store agree on them.

use std::path::PathBuf;
use std::time::Duration;

use super::file::{AcmeStoreFile, KubeStoreFile};
use super::validate::{is_dns_label, Checker};

/// Where the ACME account, certificates and pending challenges are kept.
pub const DEFAULT_ACME_STORE: &str = "/var/lib/xipgate/acme";
/// The Kubernetes store's object names start with this.
pub const DEFAULT_ACME_SECRET_PREFIX: &str = "xipgate-acme";
/// How long the order Lease holds without renewal: client-go's leader-election default
/// (15 s) doubled, as one check is a few requests to the API server and to the CA.
pub const DEFAULT_ACME_LEASE_DURATION: Duration = Duration::from_secs(30);
/// Object names are DNS-1123 subdomains: at most this long.
const MAX_OBJECT_NAME: usize = 253;

/// `xipgate.acme.store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeStoreConfig {
    Directory(PathBuf),
    Kubernetes(KubeStoreConfig),
}

/// `xipgate.acme.store.kubernetes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeStoreConfig {
    /// `None`: the pod's, read at start from the service account's mount.
    pub namespace: Option<String>,
    pub api_url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub secret_prefix: String,
    pub lease_duration: Duration,
}

impl KubeStoreConfig {
    /// The Secret (Opaque) holding the ACME account.
    pub fn account_secret(&self) -> String {
        format!("{}-account", self.secret_prefix)
    }

    /// The Secret (`kubernetes.io/tls`) holding `domain`'s certificate.
    pub fn cert_secret(&self, domain: &str) -> String {
        format!("{}-{}", self.secret_prefix, domain.replace('.', "-"))
    }

    /// The ConfigMap every replica watches: pending challenge values.
    pub fn challenges_config_map(&self) -> String {
        format!("{}-challenges", self.secret_prefix)
    }

    /// The Lease that decides which replica orders.
    pub fn lease(&self) -> String {
        self.secret_prefix.clone()
    }
}

fn file_path(raw: Option<&String>) -> Option<PathBuf> {
    raw.map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

pub(super) fn check_store(
    c: &mut Checker,
    raw: Option<&AcmeStoreFile>,
    domains: &[String],
) -> AcmeStoreConfig {
    let dir = |p: &str| {
        let p = p.trim();
        AcmeStoreConfig::Directory(if p.is_empty() { DEFAULT_ACME_STORE } else { p }.into())
    };
    let spec = match raw {
        None => return dir(""),
        Some(AcmeStoreFile::Path(p)) => return dir(p),
        Some(AcmeStoreFile::Spec(s)) => s,
    };
    match (&spec.directory, &spec.kubernetes) {
        (Some(p), None) => dir(p),
        (None, Some(k)) => AcmeStoreConfig::Kubernetes(check_kube(c, k, domains)),
        (Some(_), Some(_)) => {
            c.err(
                "xipgate.acme.store",
                "names both `directory` and `kubernetes`: choose one",
            );
            dir("")
        }
        (None, None) => {
            c.err(
                "xipgate.acme.store",
                "is empty: give a directory path, or `kubernetes: {}` for the API server",
            );
            dir("")
        }
    }
}

fn check_kube(c: &mut Checker, k: &KubeStoreFile, domains: &[String]) -> KubeStoreConfig {
    const KEY: &str = "xipgate.acme.store.kubernetes";
    let namespace = k
        .namespace
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from);
    if let Some(ns) = &namespace {
        if !is_dns_label(ns) {
            c.err(
                &format!("{KEY}.namespace"),
                format!("'{ns}' is not a namespace name (lower-case letters, digits and '-', at most 63)"),
            );
        }
    }
    let api_url = k
        .api_url
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from);
    if let Some(u) = &api_url {
        match url::Url::parse(u) {
            Ok(p) if matches!(p.scheme(), "https" | "http") && p.host_str().is_some() => {}
            _ => c.err(
                &format!("{KEY}.api_url"),
                format!("'{u}' must be the https:// URL of the API server"),
            ),
        }
    }
    let token_file = file_path(k.token_file.as_ref());
    if let Some(p) = &token_file {
        if let Err(e) = std::fs::metadata(p) {
            c.err(
                &format!("{KEY}.token_file"),
                format!("cannot read {}: {e}", p.display()),
            );
        }
    }
    let ca_file = file_path(k.ca_file.as_ref());
    if let Some(p) = &ca_file {
        if let Err(e) = crate::tls::load_ca_bundle(p) {
            c.err(&format!("{KEY}.ca_file"), e.to_string());
        }
    }
    let secret_prefix = k
        .secret_prefix
        .as_deref()
        .map(str::trim)
        .unwrap_or(DEFAULT_ACME_SECRET_PREFIX)
        .to_string();
    if !is_dns_label(&secret_prefix) {
        c.err(
            &format!("{KEY}.secret_prefix"),
            format!("'{secret_prefix}' must be lower-case letters, digits and '-' (it starts every object name), at most 63"),
        );
    }
    let lease_key = format!("{KEY}.lease_duration");
    let lease_duration = c.duration(
        &lease_key,
        k.lease_duration.as_ref(),
        DEFAULT_ACME_LEASE_DURATION,
    );
    let lease_duration = if lease_duration.subsec_nanos() != 0 {
        c.err(
            &lease_key,
            format!("{lease_duration:?} must be whole seconds (a Lease counts in seconds)"),
        );
        DEFAULT_ACME_LEASE_DURATION
    } else {
        lease_duration
    };
    let cfg = KubeStoreConfig {
        namespace,
        api_url,
        token_file,
        ca_file,
        secret_prefix,
        lease_duration,
    };
    // Each domain's Secret is its own: `a-b.c` and `a.b-c` would share one.
    let mut names = vec![
        (cfg.account_secret(), "the account".to_string()),
        (cfg.challenges_config_map(), "the challenges".to_string()),
    ];
    for (i, d) in domains.iter().enumerate() {
        let name = cfg.cert_secret(d);
        let key = format!("xipgate.acme.domains[{i}]");
        if name.len() > MAX_OBJECT_NAME {
            c.err(
                &key,
                format!("its Secret name '{name}' is longer than {MAX_OBJECT_NAME} characters"),
            );
        }
        if let Some((_, other)) = names.iter().find(|(n, _)| *n == name) {
            c.err(
                &key,
                format!("its Secret name '{name}' is also {other}'s: the Kubernetes store names a certificate's Secret after its domain with '.' as '-'"),
            );
        }
        names.push((name, format!("'{d}'")));
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kube(yaml: &str, domains: &[&str]) -> (AcmeStoreConfig, Vec<String>) {
        let file: AcmeStoreFile = serde_yaml::from_str(yaml).expect("yaml");
        let mut c = Checker::default();
        let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
        let cfg = check_store(&mut c, Some(&file), &domains);
        (
            cfg,
            c.into_errors()
                .into_iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect(),
        )
    }

    #[test]
    fn a_path_is_the_directory_store_as_before() {
        let (cfg, errors) = kube("/srv/acme", &[]);
        assert_eq!(cfg, AcmeStoreConfig::Directory("/srv/acme".into()));
        assert!(errors.is_empty(), "{errors:?}");
        let (cfg, _) = kube("directory: /srv/other", &[]);
        assert_eq!(cfg, AcmeStoreConfig::Directory("/srv/other".into()));
        let mut c = Checker::default();
        assert_eq!(
            check_store(&mut c, None, &[]),
            AcmeStoreConfig::Directory(DEFAULT_ACME_STORE.into())
        );
    }

    #[test]
    fn the_kubernetes_store_has_defaults_and_names_its_objects() {
        let (cfg, errors) = kube("kubernetes: {}", &["10-0-0-5.example.com"]);
        assert!(errors.is_empty(), "{errors:?}");
        let AcmeStoreConfig::Kubernetes(k) = cfg else {
            panic!("{cfg:?}")
        };
        assert_eq!(k.namespace, None);
        assert_eq!(k.lease_duration, DEFAULT_ACME_LEASE_DURATION);
        assert_eq!(k.account_secret(), "xipgate-acme-account");
        assert_eq!(
            k.cert_secret("10-0-0-5.example.com"),
            "xipgate-acme-10-0-0-5-example-com"
        );
        assert_eq!(k.challenges_config_map(), "xipgate-acme-challenges");
        assert_eq!(k.lease(), "xipgate-acme");
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let cases = [
            (
                "kubernetes: {namespace: Edge}",
                "xipgate.acme.store.kubernetes.namespace",
            ),
            (
                "kubernetes: {secret_prefix: 'a_b'}",
                "xipgate.acme.store.kubernetes.secret_prefix",
            ),
            (
                "kubernetes: {lease_duration: 1500ms}",
                "xipgate.acme.store.kubernetes.lease_duration",
            ),
            (
                "kubernetes: {lease_duration: soon}",
                "xipgate.acme.store.kubernetes.lease_duration",
            ),
            (
                "kubernetes: {api_url: 'ftp://x'}",
                "xipgate.acme.store.kubernetes.api_url",
            ),
            (
                "kubernetes: {token_file: /nonexistent/token}",
                "xipgate.acme.store.kubernetes.token_file",
            ),
            (
                "kubernetes: {ca_file: /nonexistent/ca.crt}",
                "xipgate.acme.store.kubernetes.ca_file",
            ),
            ("{directory: /a, kubernetes: {}}", "xipgate.acme.store"),
            ("{}", "xipgate.acme.store"),
        ];
        for (yaml, key) in cases {
            let (_, errors) = kube(yaml, &[]);
            assert_eq!(errors.len(), 1, "{yaml}: {errors:?}");
            assert!(
                errors[0].starts_with(&format!("{key}: ")),
                "{yaml}: {errors:?}"
            );
        }
        let (_, errors) = kube("kubernetes: {}", &["a-b.example.com", "a.b-example.com"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("xipgate.acme.domains[1]: "),
            "{errors:?}"
        );
        assert!(
            errors[0].contains("xipgate-acme-a-b-example-com"),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_keys_in_the_kubernetes_form_are_refused() {
        let e = serde_yaml::from_str::<AcmeStoreFile>("kubernetes: {namespce: x}")
            .expect_err("unknown key");
        assert!(e.to_string().contains("namespce"), "{e}");
        let e = serde_yaml::from_str::<AcmeStoreFile>("[a]").expect_err("a list");
        assert!(e.to_string().contains("directory path"), "{e}");
    }
}
