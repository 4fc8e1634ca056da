//! The EL sandbox itself: Debian's real dnf and rpm, inside a private mount
//! namespace made into AlmaLinux 8 / CentOS 7 / CentOS 6, resolve and
//! download from a local rpm repository over HTTP, check signatures and
//! install — and the host never changes.
//!
//! Needs root and the Debian packages dnf, rpm, createrepo-c, gnupg: each
//! test FAILS with a clear message without them, never skips.

use std::process::Output;

use patchman_tests::sandbox::el::{ElRelease, ElSandbox};
use patchman_tests::sandbox::fixture::{CLIENT, POSTINST_LOG, REALTIME};
use patchman_tests::sandbox::HttpServer;
use patchman_tests::{assert_host_unchanged, el_fixture, host_package_state, Sandbox};

const DL: &str = "/var/cache/patchman-dl";

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A sandbox made `release`, with `repo` of the fixture as `patchman`.
fn el_sandbox(
    release: ElRelease,
    repo: &patchman_tests::sandbox::RpmRepo,
) -> (Sandbox, HttpServer) {
    let fx = el_fixture();
    let server = HttpServer::start(&fx.repos_root).expect("starting the HTTP server");
    let sb = Sandbox::new().expect("starting the sandbox (needs root)");
    sb.make_el(release, fx).expect("making the sandbox EL");
    sb.add_rpm_repo("patchman", repo, &server.url())
        .expect("adding the repository");
    (sb, server)
}

/// Installs client 1.7.0-1, then dnf's download of the update must fail
/// (exit 1); returns its stderr.
fn client_download_fails(sb: &Sandbox) -> String {
    sb.install_rpms(&[el_fixture().client("1.7.0-1")]).unwrap();
    let out = download(sb, "dnf");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The sandbox's `/etc/os-release` names the distribution `id`.
fn assert_os_release_id(sb: &Sandbox, id: &str) {
    let os_release = sb.read_to_string("/etc/os-release").unwrap();
    assert!(os_release.contains(&format!("ID=\"{id}\"")), "{os_release}");
}

fn download(sb: &Sandbox, tool: &str) -> Output {
    sb.run(&["sh", "-c", &format!("rm -rf {DL} && mkdir -m 0700 {DL}")])
        .unwrap();
    let mut argv = vec![
        tool,
        "install",
        "-y",
        "--downloadonly",
        "--downloaddir",
        DL,
        "--disablerepo=*",
        "--enablerepo=patchman",
    ];
    if tool == "dnf" {
        argv.push("--verbose");
    }
    argv.push(CLIENT);
    sb.run_unchecked(&argv).unwrap()
}

fn listing(sb: &Sandbox) -> Vec<String> {
    sb.run_stdout(&["ls", "-1", DL])
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_fixture_builds_quickly_and_names_its_files() {
    let fx = el_fixture();
    eprintln!("EL fixture built in {:?}", fx.build_time);
    assert!(fx
        .client("1.7.1-1")
        .ends_with("patchman-client-1.7.1-1.noarch.rpm"));
    assert!(fx
        .client("1:1.2.7-1")
        .ends_with("patchman-client-1.2.7-1.noarch.rpm"));
    assert!(fx.patchman.dir.join("repodata/repomd.xml").is_file());
    assert_eq!(
        fx.patchman.files,
        vec![
            "patchman-client-1.6.9-1.noarch.rpm",
            "patchman-client-1.7.0-1.noarch.rpm",
            "patchman-client-1.7.1-1.noarch.rpm",
            "patchman-client-realtime-1.7.0-1.noarch.rpm",
            "patchman-client-realtime-1.7.1-1.noarch.rpm",
        ]
    );
}

#[test]
fn dnf_on_almalinux_8_downloads_the_update_over_http_and_rpm_installs_it() {
    let host_before = host_package_state();
    {
        let fx = el_fixture();
        let (sb, server) = el_sandbox(ElRelease::AlmaLinux8, &fx.patchman);
        assert_os_release_id(&sb, "almalinux");
        assert_eq!(sb.rpm_query(CLIENT).unwrap(), None);
        sb.install_rpms(&[fx.client("1.7.0-1")]).unwrap();
        assert_eq!(sb.rpm_query(CLIENT).unwrap().as_deref(), Some("1.7.0-1"));
        let before = sb.rpm_db_snapshot().unwrap();
        assert!(
            before.contains("patchman-tests-el-base 0:8-1.noarch"),
            "{before}"
        );
        assert!(before.contains("gpg-pubkey "), "{before}");

        let clean = sb
            .run_unchecked(&[
                "dnf",
                "clean",
                "all",
                "--disablerepo=*",
                "--enablerepo=patchman",
            ])
            .unwrap();
        assert!(clean.status.success(), "{}", text(&clean));

        let out = download(&sb, "dnf");
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("---> Package patchman-client.noarch 1.7.1-1 will be an upgrade"),
            "{stdout}"
        );
        assert_eq!(listing(&sb), vec!["patchman-client-1.7.1-1.noarch.rpm"]);
        assert!(
            server
                .requests()
                .iter()
                .any(|r| r.path.ends_with("repomd.xml") && r.status == 200),
            "dnf fetched the metadata over HTTP: {:?}",
            server.requests()
        );
        // Download only: nothing installed yet.
        assert_eq!(sb.rpm_db_snapshot().unwrap(), before);

        let file = format!("{DL}/patchman-client-1.7.1-1.noarch.rpm");
        let sig = sb.run_unchecked(&["rpmkeys", "--checksig", &file]).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&sig.stdout),
            format!("{file}: digests signatures OK\n"),
            "{}",
            text(&sig)
        );
        let qp = sb
            .run_stdout(&[
                "rpm",
                "-qp",
                "--queryformat",
                "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\n",
                &file,
            ])
            .unwrap();
        assert_eq!(qp, "patchman-client\t0:1.7.1-1\tnoarch\n");

        let up = sb.run_unchecked(&["rpm", "-U", &file]).unwrap();
        assert!(up.status.success(), "{}", text(&up));
        assert_eq!(sb.rpm_query(CLIENT).unwrap().as_deref(), Some("1.7.1-1"));
        let log = sb.read_to_string(POSTINST_LOG).unwrap();
        assert_eq!(
            log,
            "patchman-client 1.7.0-1 1\npatchman-client 1.7.1-1 2\n"
        );
        let after = sb.rpm_db_snapshot().unwrap();
        assert_eq!(
            after.replace("patchman-client 0:1.7.1-1", "patchman-client 0:1.7.0-1"),
            before,
            "nothing but the client changed"
        );

        // Up to date now: nothing downloaded.
        let out = download(&sb, "dnf");
        assert!(out.status.success(), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Nothing to do."));
        assert!(listing(&sb).is_empty());
    }
    assert_host_unchanged(&host_before);
}

#[test]
fn a_missing_new_dependency_fails_with_el_defaults() {
    let fx = el_fixture();
    let (sb, _server) = el_sandbox(ElRelease::AlmaLinux8, &fx.newdep);
    let stderr = client_download_fails(&sb);
    assert!(
        stderr.contains(
            "nothing provides libpatchman-new >= 1.0 needed by patchman-client-1.7.2-1.noarch"
        ),
        "{stderr}"
    );
    assert!(listing(&sb).is_empty());
    // rpm itself refuses the file: it cannot fetch dependencies.
    let out = sb.install_rpms(&[fx.client("1.7.2-1")]);
    let err = format!("{:#}", out.unwrap_err());
    assert!(err.contains("libpatchman-new >= 1.0 is needed by"), "{err}");
    assert_eq!(sb.rpm_query(CLIENT).unwrap().as_deref(), Some("1.7.0-1"));
}

#[test]
fn rpmkeys_trusts_only_intact_files_signed_by_the_imported_key() {
    let fx = el_fixture();
    let (sb, _server) = el_sandbox(ElRelease::AlmaLinux8, &fx.patchman);
    let check = |host: &std::path::Path, inside: &str| {
        sb.copy_in(host, inside).unwrap();
        let out = sb
            .run_unchecked(&["rpmkeys", "--checksig", inside])
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout)
                .trim_start_matches(&format!("{inside}:"))
                .trim()
                .to_owned(),
        )
    };
    assert_eq!(
        check(fx.client("1.7.1-1"), "/var/tmp/signed.rpm"),
        (Some(0), "digests signatures OK".into())
    );
    assert_eq!(
        check(fx.unsigned_rpm(CLIENT, "1.7.1-1"), "/var/tmp/unsigned.rpm"),
        (Some(0), "digests OK".into())
    );
    assert_eq!(
        check(fx.foreign_rpm("1.7.1-1"), "/var/tmp/foreign.rpm"),
        (Some(1), "digests SIGNATURES NOT OK".into())
    );
    let mut tampered = std::fs::read(fx.client("1.7.1-1")).unwrap();
    let at = tampered.len() - 64;
    tampered[at] ^= 0xff;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tampered.rpm");
    std::fs::write(&path, tampered).unwrap();
    let (code, status) = check(&path, "/var/tmp/tampered.rpm");
    assert_eq!(code, Some(1));
    assert!(
        status.starts_with("DIGESTS") && status.ends_with("NOT OK"),
        "{status}"
    );
}

#[test]
fn realtime_moves_in_one_rpm_transaction() {
    let fx = el_fixture();
    let (sb, _server) = el_sandbox(ElRelease::AlmaLinux8, &fx.patchman);
    sb.install_rpms(&[fx.client("1.7.0-1"), fx.realtime("1.7.0-1")])
        .unwrap();
    // The client alone would break realtime's `=` dependency.
    assert!(sb.install_rpms(&[fx.client("1.7.1-1")]).is_err());
    sb.install_rpms(&[fx.client("1.7.1-1"), fx.realtime("1.7.1-1")])
        .unwrap();
    assert_eq!(sb.rpm_query(REALTIME).unwrap().as_deref(), Some("1.7.1-1"));
}

#[test]
fn yum_is_dnf_on_centos_7_and_centos_6_has_no_os_release() {
    let fx = el_fixture();
    let (sb, _server) = el_sandbox(ElRelease::CentOS7, &fx.epoch);
    assert_os_release_id(&sb, "centos");
    assert!(sb
        .rpm_db_snapshot()
        .unwrap()
        .contains("patchman-tests-el-base 0:7-1.noarch"));
    sb.install_rpms(&[fx.client("1.7.1-1")]).unwrap();
    let out = download(&sb, "yum");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(listing(&sb), vec!["patchman-client-1.2.7-1.noarch.rpm"]);
    let file = format!("{DL}/patchman-client-1.2.7-1.noarch.rpm");
    sb.run(&["rpm", "-U", &file]).unwrap();
    assert_eq!(sb.rpm_query(CLIENT).unwrap().as_deref(), Some("1:1.2.7-1"));
    drop(sb);

    let (sb, _server) = el_sandbox(ElRelease::CentOS6, &fx.patchman);
    assert!(!sb.exists("/etc/os-release").unwrap());
    assert!(!sb.exists("/usr/lib/os-release").unwrap());
    assert_eq!(
        sb.read_to_string("/etc/redhat-release").unwrap(),
        "CentOS release 6.10 (Final)\n"
    );
}

#[test]
fn unsigned_packages_fail_dnfs_gpg_check_but_stay_in_the_download_dir() {
    let fx = el_fixture();
    let (sb, _server) = el_sandbox(ElRelease::AlmaLinux8, &fx.unsigned_repo);
    assert!(client_download_fails(&sb).contains("is not signed"));
    assert_eq!(listing(&sb), vec!["patchman-client-1.7.1-1.noarch.rpm"]);
    assert_eq!(sb.rpm_query(CLIENT).unwrap().as_deref(), Some("1.7.0-1"));
}
