//! The container image: the repository's Dockerfile built with buildah (no Docker engine; no
//! image registry either, so on a local `debian:bookworm-slim` made by it/image/base.sh), taking
//! this build's xipgate binary through its `prebuilt` stage; then the image's config (user,
//! ports, entrypoint) and the binary run inside it (libssl present, the default config valid).
//!
//! Storage is a temporary directory under target/tmp (buildah's vfs driver: plain copies,
//! no mounts), removed with the containers and images in it when the test ends.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The name the Dockerfile's runtime stage starts `FROM`.
const BASE: &str = "docker.io/library/debian:bookworm-slim";
const IMAGE: &str = "localhost/xipgate-image-test:latest";
/// The uid/gid the image runs as (k8s/deployment.yaml's runAsUser).
const USER: &str = "10001:10001";
/// Proxy, HTTPS, console, DNS over UDP and TCP (Dockerfile's EXPOSE).
const PORTS: [&str; 5] = ["8080/tcp", "8443/tcp", "9080/tcp", "5353/udp", "5353/tcp"];
/// k8s/xipgate.yaml sets console.host, which needs a token: the Deployment gives it from a
/// Secret through this variable, and so does the test.
const TOKEN_ENV: &str = "XIPGATE_CONSOLE_TOKEN=image-test-token-0123456789abcdef";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// buildah with its own storage, chroot isolation and the vfs driver (what works here: no
/// Docker engine, no overlay mounts needed).
struct Buildah {
    dir: tempfile::TempDir,
}

impl Buildah {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("image-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("a storage directory");
        Self { dir }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("buildah");
        cmd.env("BUILDAH_ISOLATION", "chroot")
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(["--storage-driver", "vfs"]);
        cmd
    }

    /// Runs buildah and returns its standard output; fails the test with its stderr.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().unwrap_or_else(|e| {
            panic!("buildah does not run ({e}): the image test needs Debian's buildah (./dev deps)")
        });
        assert!(
            out.status.success(),
            "buildah {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Imports the debootstrapped root file system as `debian:bookworm-slim`.
    fn import_base(&self, tarball: &Path) {
        let ctr = self.run(&["from", "scratch"]);
        self.run(&["add", &ctr, path_str(tarball), "/"]);
        self.run(&["config", "--cmd", "bash", &ctr]);
        self.run(&["commit", "--rm", "-q", &ctr, BASE]);
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        // Best effort: the directory goes with the TempDir either way.
        let _ = self.command().args(["rm", "--all"]).output();
        let _ = self.command().args(["rmi", "--all", "--force"]).output();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The base tarball it/image/base.sh builds (./dev deps and ./dev test run it).
fn base_tarball() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("it/image/base.sh"))
        .arg("--path")
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "it/image/base.sh --path failed");
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        path.is_file(),
        "the image test needs the local Debian base {}: bash it/image/base.sh (./dev deps does)",
        path.display()
    );
    path
}

/// A build context with what the runtime and prebuilt stages copy: dist/xipgate (this build's
/// binary, without its debug sections: the image is not for debugging) and k8s/xipgate.yaml;
/// and the repository's .dockerignore, so that it cannot exclude either.
fn context(dir: &Path) -> PathBuf {
    let ctx = dir.join("context");
    std::fs::create_dir_all(ctx.join("dist")).expect("context/dist");
    std::fs::create_dir_all(ctx.join("k8s")).expect("context/k8s");
    let binary = Path::new(env!("CARGO_BIN_EXE_xipgate"));
    let dest = ctx.join("dist/xipgate");
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&dest)
        .arg(binary)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(binary, &dest).expect("copy the binary");
    }
    for f in ["k8s/xipgate.yaml", ".dockerignore"] {
        std::fs::copy(root().join(f), ctx.join(f)).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    ctx
}

/// The container ports k8s/deployment.yaml declares for xipgate, as `port/protocol`.
fn deployment_ports() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("k8s/deployment.yaml")).expect("deployment");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("deployment.yaml is YAML");
    let containers = doc["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    let xipgate = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("xipgate"))
        .expect("a container named xipgate");
    xipgate["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            let port = p["containerPort"].as_u64().expect("containerPort");
            let proto = p["protocol"].as_str().unwrap_or("TCP").to_lowercase();
            format!("{port}/{proto}")
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_image_builds_and_its_entrypoint_runs() {
    let tarball = base_tarball();
    let buildah = Buildah::new();
    buildah.import_base(&tarball);
    let ctx = context(buildah.dir.path());
    let dockerfile = root().join("Dockerfile");
    buildah.run(&[
        "bud",
        "--pull=never",
        "--build-arg",
        "BINARY_FROM=prebuilt",
        "-f",
        path_str(&dockerfile),
        "-t",
        IMAGE,
        path_str(&ctx),
    ]);

    // The image's config.
    let inspect: Value =
        serde_json::from_str(&buildah.run(&["inspect", "--type", "image", IMAGE])).expect("JSON");
    let config = &inspect["OCIv1"]["config"];
    assert_eq!(config["User"].as_str(), Some(USER), "{config}");
    let exposed: BTreeSet<String> = config["ExposedPorts"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let want: BTreeSet<String> = PORTS.iter().map(|p| p.to_string()).collect();
    assert_eq!(exposed, want, "EXPOSE");
    let deployed = deployment_ports();
    assert!(
        deployed.is_subset(&exposed),
        "k8s/deployment.yaml's containerPorts {deployed:?} are not all exposed: {exposed:?}"
    );
    assert_eq!(config["StopSignal"].as_str(), Some("SIGTERM"));
    let entrypoint = strings(&config["Entrypoint"]);
    let cmd = strings(&config["Cmd"]);
    assert_eq!(entrypoint, ["/usr/local/bin/xipgate"]);
    assert_eq!(cmd, ["-c", "/etc/xipgate/xipgate.yaml"]);

    // The binary inside it, as the image's user.
    let ctr = buildah.run(&["from", "-q", IMAGE]);
    let in_ctr = |extra: &[&str], args: &[String]| {
        let mut all: Vec<&str> = vec!["run"];
        all.extend_from_slice(extra);
        all.push(&ctr);
        all.push("--");
        all.extend(args.iter().map(String::as_str));
        buildah.run(&all)
    };
    let argv = |extra: &[&str]| -> Vec<String> {
        entrypoint
            .iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    // What a command prints is read from a file it writes in the container, through the
    // container's mounted root: buildah 1.28's chroot isolation can lose a short-lived
    // process's stdout when the machine is loaded (seen once in CI: `--version` ran, exit 0,
    // and its line never reached the pipe).
    let root_fs = PathBuf::from(buildah.run(&["mount", &ctr]));
    let printed = |args: &[String]| -> String {
        let mut cmd: Vec<String> = vec![
            "sh".into(),
            "-c".into(),
            "\"$@\" > /tmp/printed".into(),
            "sh".into(),
        ];
        cmd.extend(args.iter().cloned());
        in_ctr(&[], &cmd);
        std::fs::read_to_string(root_fs.join("tmp/printed"))
            .expect("the command's output file")
            .trim()
            .to_string()
    };
    assert_eq!(printed(&["id".into(), "-u".into()]), "10001");
    let version = printed(&argv(&["--version"]));
    assert_eq!(version, format!("xipgate {}", env!("CARGO_PKG_VERSION")));
    // The default command with -t: the whole baked-in config checked, as the pod gets it.
    let check: Vec<String> = argv(&["-t"]).into_iter().chain(cmd.clone()).collect();
    in_ctr(&["--env", TOKEN_ENV], &check);
    // pid_file and upgrade_sock go to /run/xipgate: the image's user can write there.
    in_ctr(&[], &["test".into(), "-w".into(), "/run/xipgate".into()]);
}
