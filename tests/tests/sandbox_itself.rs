//! Proves the sandbox itself: real dpkg and apt run inside it against the
//! fixture's repositories over HTTP, and the host never changes.
//!
//! These need root and the Debian packages dpkg-dev, apt-utils, gnupg and
//! util-linux; without them they fail with the reason, never skip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use patchman_tests::sandbox::apt_repo::AptRepo;
use patchman_tests::sandbox::fixture::{CLIENT, CONFFILE, CONFFILE_OLD, POSTINST_LOG};
use patchman_tests::sandbox::{HttpServer, SourceFormat};
use patchman_tests::{apt_fixture, assert_host_unchanged, host_package_state, Sandbox};

fn sandbox() -> Sandbox {
    Sandbox::new().unwrap_or_else(|e| panic!("starting the sandbox: {e:#}"))
}

fn server() -> HttpServer {
    HttpServer::start(&apt_fixture().repos_root).expect("starting the HTTP server")
}

/// A new sandbox whose `patchman` apt source (written in `format`) is
/// `repo`, served by a new HTTP server that lives as long as the sandbox.
fn sandbox_with_source(repo: &AptRepo, format: SourceFormat) -> (HttpServer, Sandbox) {
    let http = server();
    let sb = sandbox();
    sb.add_apt_repo("patchman", repo, &http.url(), format)
        .unwrap();
    (http, sb)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn dpkg_install_inside_leaves_the_host_package_state_unchanged() {
    let fixture = apt_fixture();
    let before = host_package_state();
    {
        let sb = sandbox();
        assert_eq!(sb.dpkg_status(CLIENT).unwrap(), None);
        sb.install_debs(&[fixture.client("1.7.0-1")]).unwrap();
        assert_eq!(
            sb.dpkg_status(CLIENT).unwrap(),
            Some(("install ok installed".to_owned(), "1.7.0-1".to_owned()))
        );
        assert!(sb
            .package_db_snapshot()
            .unwrap()
            .lines()
            .any(|l| l.trim_end() == "patchman-client 1.7.0-1 ii"));
        assert_eq!(sb.read_to_string(CONFFILE).unwrap(), CONFFILE_OLD);
        assert_eq!(
            sb.read_to_string(POSTINST_LOG).unwrap(),
            "patchman-client 1.7.0-1 configure \n"
        );
        sb.add_system_user("patchman").unwrap();
        let id = sb.run_as("patchman", &["id", "-un"]).unwrap();
        assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), "patchman");
        // Nothing of this is on the host.
        assert!(!std::path::Path::new("/usr/share/patchman-client/VERSION").exists());
    }
    assert_host_unchanged(&before);
}

#[test]
fn apt_policy_over_signed_http_shows_the_candidate() {
    let fixture = apt_fixture();
    let (http, sb) = sandbox_with_source(&fixture.patchman, SourceFormat::List);
    sb.run(&["apt-get", "update"]).unwrap();
    let policy = sb.run_stdout(&["apt-cache", "policy", CLIENT]).unwrap();
    assert!(policy.contains("Installed: (none)"), "{policy}");
    assert!(policy.contains("Candidate: 1.7.1-1"), "{policy}");
    let uri = format!("{}/patchman stable/main", http.url());
    assert!(policy.contains(&uri), "{uri} not in:\n{policy}");
    assert!(
        http.requests()
            .iter()
            .any(|r| r.path == "/patchman/dists/stable/InRelease" && r.status == 200),
        "{:?}",
        http.requests()
    );
}

#[test]
fn apt_download_over_http_lands_in_the_archives() {
    let fixture = apt_fixture();
    let (_http, sb) = sandbox_with_source(&fixture.patchman, SourceFormat::Deb822);
    sb.run(&["apt-get", "update"]).unwrap();
    sb.run(&["apt-get", "-d", "-y", "install", "patchman-client=1.7.1-1"])
        .unwrap();
    let archived = "/var/cache/apt/archives/patchman-client_1.7.1-1_all.deb";
    assert!(sb.exists(archived).unwrap(), "{archived} missing");
    assert_eq!(
        sb.read_file(archived).unwrap(),
        std::fs::read(fixture.client("1.7.1-1")).unwrap()
    );
    // Downloaded only: not installed.
    assert_eq!(sb.dpkg_status(CLIENT).unwrap(), None);
}

#[test]
fn apt_keeps_the_epoch_in_the_archive_file_name() {
    let fixture = apt_fixture();
    let http = server();
    let sb = sandbox();
    sb.install_debs(&[fixture.client("1.7.1-1")]).unwrap();
    sb.add_apt_repo("patchman", &fixture.epoch, &http.url(), SourceFormat::List)
        .unwrap();
    sb.run(&["apt-get", "update"]).unwrap();
    let policy = sb.run_stdout(&["apt-cache", "policy", CLIENT]).unwrap();
    assert!(policy.contains("Candidate: 1:1.2.7-1"), "{policy}");
    sb.run(&[
        "apt-get",
        "-d",
        "-y",
        "install",
        "patchman-client=1:1.2.7-1",
    ])
    .unwrap();
    assert!(sb
        .exists("/var/cache/apt/archives/patchman-client_1%3a1.2.7-1_all.deb")
        .unwrap());
}

#[test]
fn flat_repository_works_over_http() {
    let fixture = apt_fixture();
    let (_http, sb) = sandbox_with_source(&fixture.flat, SourceFormat::Deb822);
    sb.run(&["apt-get", "update"]).unwrap();
    let policy = sb
        .run_stdout(&["apt-cache", "policy", "patchman-client-realtime"])
        .unwrap();
    assert!(policy.contains("Candidate: 1.7.1-1"), "{policy}");
}

#[test]
fn unsigned_repository_is_refused_by_apt() {
    let fixture = apt_fixture();
    let (_http, sb) = sandbox_with_source(&fixture.unsigned, SourceFormat::List);
    let out = sb.run_unchecked(&["apt-get", "update"]).unwrap();
    let all = text(&out);
    assert!(!out.status.success(), "apt-get update accepted it:\n{all}");
    assert!(all.contains("is not signed"), "{all}");
}

#[test]
fn wrong_key_fails_verification() {
    let fixture = apt_fixture();
    // `other` is signed by the other key; declare the patchman key instead.
    let mut repo = fixture.other.clone();
    repo.key_name = fixture.patchman.key_name.clone();
    repo.keyring = fixture.patchman.keyring.clone();
    let (_http, sb) = sandbox_with_source(&repo, SourceFormat::List);
    let out = sb.run_unchecked(&["apt-get", "update"]).unwrap();
    let all = text(&out);
    assert!(
        all.contains("NO_PUBKEY") || all.contains("not signed"),
        "{all}"
    );
}

#[test]
fn host_apt_sources_and_docker_clean_are_hidden() {
    let sb = sandbox();
    assert!(!sb.exists("/etc/apt/apt.conf.d/docker-clean").unwrap());
    let listed = sb
        .run_stdout(&["find", "/etc/apt/sources.list.d", "-mindepth", "1"])
        .unwrap();
    assert_eq!(listed, "");
    assert!(!sb.exists("/etc/apt/sources.list").unwrap());
    // With no source, apt-get update contacts nothing and succeeds.
    sb.run(&["apt-get", "update"]).unwrap();
}

#[test]
fn mounts_live_only_in_the_namespace_and_go_with_it() {
    let sb = sandbox();
    let marker = sb.dir().to_string_lossy().into_owned();
    let inside = sb.mountinfo().unwrap();
    assert!(
        inside.contains(" /etc ") && inside.contains("overlay"),
        "{inside}"
    );
    assert!(inside.contains(&marker), "{inside}");
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host.contains(&marker),
        "sandbox mounts visible on the host:\n{host}"
    );
    // Writes inside stay inside.
    sb.write_file("/etc/patchman-tests-probe", "x").unwrap();
    assert!(!std::path::Path::new("/etc/patchman-tests-probe").exists());
    let holder = sb.holder_pid();
    let dir = sb.dir().to_path_buf();
    let sleeper = sb.spawn(&["sleep", "600"]).unwrap();
    drop(sb);
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host.contains(&marker), "{host}");
    assert!(!std::path::Path::new(&format!("/proc/{holder}")).exists());
    assert!(!dir.exists(), "{} left behind", dir.display());
    let mut sleeper = sleeper;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = sleeper.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = sleeper.kill();
            panic!("the process inside survived the sandbox");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(!status.success(), "{status}");
}

#[test]
fn a_panicking_test_leaves_no_holder_behind() {
    let mut holder = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let sb = sandbox();
        holder = sb.holder_pid();
        panic!("a failing scenario");
    }));
    assert!(result.is_err());
    assert_ne!(holder, 0);
    assert!(!std::path::Path::new(&format!("/proc/{holder}")).exists());
}

#[test]
fn workspace_binaries_are_visible_inside() {
    let sb = sandbox();
    let init = patchman_tests::workspace_bin("sandbox-init");
    let path = init.to_string_lossy().into_owned();
    assert!(sb.exists(&path).unwrap(), "{path} not visible inside");
}

#[test]
fn http_server_serves_heads_404s_and_refuses_traversal() {
    let http = server();
    let get = |request: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", http.port())).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    let ok = get("GET /patchman/dists/stable/Release HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(
        ok.contains("Connection: close\r\n") && ok.contains("Origin: patchman"),
        "{ok}"
    );
    let head = get("HEAD /patchman/dists/stable/Release HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    for missing in [
        "/patchman/nope",
        "/../../etc/passwd",
        "/patchman/%2e%2e/%2e%2e/etc/passwd",
    ] {
        let a = get(&format!("GET {missing} HTTP/1.1\r\n\r\n"));
        assert!(a.starts_with("HTTP/1.1 404 "), "{missing}: {a}");
    }
    let post = get("POST /patchman HTTP/1.1\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
}

#[test]
fn hanging_http_server_makes_apt_time_out() {
    let fixture = apt_fixture();
    let (http, sb) = sandbox_with_source(&fixture.patchman, SourceFormat::List);
    http.set_hang(true);
    let started = Instant::now();
    let out = sb
        .run_unchecked(&[
            "apt-get",
            "-o",
            "Acquire::http::Timeout=2",
            "-o",
            "Acquire::Retries=0",
            "update",
        ])
        .unwrap();
    let all = text(&out);
    assert!(started.elapsed() < Duration::from_secs(60), "{all}");
    assert!(
        all.contains("timed out") || all.contains("Failed to fetch"),
        "{all}"
    );
    assert!(http.requests().iter().any(|r| r.status == 0));
}

/// Run by [`a_killed_test_process_leaves_nothing_behind`] in a child test
/// process, which it then SIGKILLs; does nothing in a normal run.
#[test]
fn child_for_the_kill_test() {
    if std::env::var_os("PATCHMAN_SANDBOX_KILL_CHILD").is_none() {
        return;
    }
    let sb = sandbox();
    let mut sleeper = sb.spawn(&["sleep", "600"]).unwrap();
    println!("pids {} {}", sb.holder_pid(), sleeper.id());
    std::io::stdout().flush().unwrap();
    // Killed by the parent test long before this returns.
    let _ = sleeper.wait();
}

/// Gone, or a zombie waiting to be reaped by init.
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[test]
fn a_killed_test_process_leaves_nothing_behind() {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_for_the_kill_test", "--nocapture"])
        .env("PATCHMAN_SANDBOX_KILL_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let pids = loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("the child test ended without starting its sandbox");
        }
        if let Some(rest) = line.strip_prefix("pids ") {
            break rest
                .split_whitespace()
                .map(|p| p.parse::<u32>().unwrap())
                .collect::<Vec<_>>();
        }
    };
    // Killed outright: no Drop runs.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pids.iter().all(|p| is_gone(*p)) {
        assert!(
            Instant::now() < deadline,
            "holder and process inside ({pids:?}) outlived the killed test process"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
