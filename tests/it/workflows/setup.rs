//! The setup action's script (`setup/install.sh`), which puts the released binary on
//! `PATH`: a release asset is installed only when its sha256 matches, and nothing is
//! installed otherwise. The releases are served by a local HTTP server in the layout of
//! GitHub's release downloads (`<base>/<tag>/<asset>`). The `image` source needs a Docker
//! daemon, which these machines do not have; the act tests cover the local-run path.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::repo_root;

const ASSET: &str = "jisu-deploy-x86_64-linux";

/// `python3 -m http.server` on a free loopback port, stopped on drop.
struct Releases {
    server: Child,
    url: String,
    /// The served files, removed on drop.
    _dir: tempfile::TempDir,
}

impl Releases {
    /// A release `tag` holding the binary under test and `checksum` as its sha256 file.
    fn serve(tag: &str, checksum: Option<&str>) -> Releases {
        let dir = tempfile::tempdir().unwrap();
        let release = dir.path().join(tag);
        std::fs::create_dir_all(&release).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_jisu-deploy"), release.join(ASSET)).unwrap();
        let actual = sha256(&release.join(ASSET));
        std::fs::write(
            release.join(format!("{ASSET}.sha256")),
            format!("{}  {ASSET}\n", checksum.unwrap_or(&actual)),
        )
        .unwrap();
        let mut server = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("http.server said: {line}"))
            .to_owned();
        Releases {
            server,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Releases {
    fn drop(&mut self) {
        self.server.kill().ok();
        self.server.wait().ok();
    }
}

fn sha256(file: &Path) -> String {
    let out = Command::new("sha256sum").arg(file).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

struct Install {
    code: i32,
    log: String,
    /// What the script added to GITHUB_PATH.
    path_file: String,
    /// Its GITHUB_OUTPUT.
    outputs: String,
    installed: PathBuf,
}

/// The script with `env`, a runner's temporary directory and its command files.
fn install(env: &[(&str, &str)]) -> Install {
    let runner = tempfile::tempdir().unwrap();
    let path_file = runner.path().join("path");
    let output_file = runner.path().join("output");
    std::fs::write(&path_file, "").unwrap();
    std::fs::write(&output_file, "").unwrap();
    let out = Command::new("bash")
        .arg(repo_root().join("setup/install.sh"))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("RUNNER_TEMP", runner.path())
        .env("RUNNER_OS", "Linux")
        .env("RUNNER_ARCH", "X64")
        .env("GITHUB_PATH", &path_file)
        .env("GITHUB_OUTPUT", &output_file)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let installed = runner.path().join("jisu-deploy-bin/jisu-deploy");
    let result = Install {
        code: out.status.code().unwrap_or(-1),
        log: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        path_file: std::fs::read_to_string(&path_file).unwrap(),
        outputs: std::fs::read_to_string(&output_file).unwrap(),
        installed: installed.clone(),
    };
    // Whether it was installed, before the runner's directory goes.
    let downloads = !env.contains(&("ACT", "true"));
    assert_eq!(
        installed.exists(),
        result.code == 0 && downloads,
        "installed: {}",
        result.log
    );
    result
}

#[test]
fn a_release_asset_with_its_published_checksum_is_installed_and_put_on_path() {
    let releases = Releases::serve("v1.4.2", None);
    let run = install(&[
        ("JISU_VERSION", "v1.4.2"),
        ("JISU_SOURCE", "release"),
        ("JISU_RELEASES", &releases.url),
    ]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert!(run.log.contains("matches"), "{}", run.log);
    let version = format!("jisu-deploy {}", env!("CARGO_PKG_VERSION"));
    assert!(
        run.outputs.contains(&format!("version={version}")),
        "{}",
        run.outputs
    );
    assert_eq!(
        run.path_file.trim(),
        run.installed.parent().unwrap().to_str().unwrap()
    );
}

#[test]
fn a_release_asset_whose_sha256_differs_is_refused_and_nothing_is_installed() {
    let wrong = "0".repeat(64);
    // The published checksum file disagrees with the asset.
    let releases = Releases::serve("v1.4.2", Some(&wrong));
    let run = install(&[
        ("JISU_VERSION", "v1.4.2"),
        ("JISU_SOURCE", "release"),
        ("JISU_RELEASES", &releases.url),
    ]);
    assert_eq!(run.code, 1, "{}", run.log);
    assert!(
        run.log
            .contains(&format!("expected {wrong}; nothing was installed")),
        "{}",
        run.log
    );
    assert_eq!(run.path_file, "");
    // The caller's own expectation wins over the published file, and is checked too.
    let releases = Releases::serve("v1.4.2", None);
    let run = install(&[
        ("JISU_VERSION", "v1.4.2"),
        ("JISU_SOURCE", "release"),
        ("JISU_RELEASES", &releases.url),
        ("JISU_SHA256", &"a".repeat(64)),
    ]);
    assert_eq!(run.code, 1, "{}", run.log);
    assert_eq!(run.path_file, "");
}

#[test]
fn versions_and_sources_that_name_no_release_are_refused_before_any_download() {
    for (version, source, expected) in [
        (
            "latest",
            "image",
            "is not a release: write v1, v1.4 or v1.4.2",
        ),
        ("v1;rm -rf /", "release", "is not a release"),
        ("v1", "release", "needs a full version such as v1.4.2"),
        (
            "v1.4.2",
            "tarball",
            "source 'tarball' is neither image nor release",
        ),
    ] {
        let run = install(&[
            ("JISU_VERSION", version),
            ("JISU_SOURCE", source),
            // Nothing listens here: a download attempt would fail differently.
            ("JISU_RELEASES", "http://127.0.0.1:9"),
        ]);
        assert_eq!(run.code, 1, "{version}: {}", run.log);
        assert!(run.log.contains(expected), "{version}: {}", run.log);
        assert!(
            run.log.contains("::error title=jisu-deploy setup::"),
            "{}",
            run.log
        );
    }
}

#[test]
fn under_act_the_binary_on_path_is_used_and_nothing_is_downloaded() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_jisu-deploy"));
    let path = format!("{}:/usr/bin:/bin", binary.parent().unwrap().display());
    let run = install(&[
        ("ACT", "true"),
        ("PATH", &path),
        ("JISU_VERSION", "v1"),
        ("JISU_RELEASES", "http://127.0.0.1:9"),
    ]);
    assert_eq!(run.code, 0, "{}", run.log);
    assert!(run.log.contains("local run under act"), "{}", run.log);
    assert!(
        run.outputs.contains(&format!("path={}", binary.display())),
        "{}",
        run.outputs
    );
}
