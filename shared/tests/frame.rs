//! Round trips of every message and hostile input to the decoder.

use std::io::Cursor;

use patchman_shared::frame::{decode_payload, encode_frame};
use patchman_shared::*;
use proptest::prelude::*;

fn evr() -> impl Strategy<Value = Evr> {
    (0u32..5, "[0-9][0-9a-z.+~]{0,12}", "[0-9a-z.+~]{0,8}").prop_map(|(epoch, version, release)| {
        Evr {
            epoch,
            version,
            release,
        }
    })
}

fn package() -> impl Strategy<Value = Package> {
    prop_oneof![Just(Package::Client), Just(Package::Realtime)]
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::Apt), Just(Family::Dnf), Just(Family::Yum)]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::FinishInterrupted),
        Just(Step::ReadAptConfig),
        Just(Step::RefreshMetadata),
        Just(Step::QueryCandidate),
        Just(Step::CheckDependencies),
        Just(Step::Download),
        Just(Step::LocateFile),
        Just(Step::Verify),
        Just(Step::Install),
        Just(Step::Confirm),
        Just(Step::Cleanup),
    ]
}

fn installed() -> impl Strategy<Value = Option<Installed>> {
    proptest::option::of(
        (evr(), any::<bool>()).prop_map(|(evr, complete)| Installed { evr, complete }),
    )
}

fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn verification() -> impl Strategy<Value = VerificationFailure> {
    prop_oneof![
        Just(VerificationFailure::Missing),
        Just(VerificationFailure::NotRegularFile),
        Just(VerificationFailure::UnsafeOwnerOrMode),
        (text(), text()).prop_map(|(expected, found)| VerificationFailure::MetadataMismatch {
            expected,
            found
        }),
        (evr(), evr())
            .prop_map(|(installed, offered)| VerificationFailure::NotNewer { installed, offered }),
        Just(VerificationFailure::ChecksumMismatch),
        Just(VerificationFailure::BadSignature),
        Just(VerificationFailure::Changed),
        text().prop_map(|key_id| VerificationFailure::KeyNotImported { key_id }),
    ]
}

fn failure() -> impl Strategy<Value = Failure> {
    prop_oneof![
        (family(), text()).prop_map(|(family, request)| Failure::NotSupported { family, request }),
        Just(Failure::NotInstalled),
        (text(), text())
            .prop_map(|(detail, command)| Failure::DependencyProblem { detail, command }),
        proptest::option::of(any::<u32>()).prop_map(|pid| Failure::LockHeld { pid }),
        step().prop_map(|step| Failure::Timeout { step }),
        (package(), verification())
            .prop_map(|(package, reason)| Failure::Verification { package, reason }),
        (step(), proptest::option::of(any::<i32>()), text()).prop_map(
            |(step, exit_code, excerpt)| Failure::CommandFailed {
                step,
                exit_code,
                excerpt
            }
        ),
        package().prop_map(|package| Failure::WrongSource { package }),
        text().prop_map(|repository| Failure::RepositoryMissing { repository }),
        text().prop_map(|detail| Failure::Config { detail }),
        text().prop_map(|detail| Failure::Protocol { detail }),
        (step(), text()).prop_map(|(step, detail)| Failure::UnexpectedOutput { step, detail }),
        text().prop_map(|detail| Failure::Internal { detail }),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    let candidate = (package(), evr(), proptest::option::of(evr())).prop_map(
        |(package, installed, candidate)| Candidate {
            package,
            installed,
            candidate,
        },
    );
    let change =
        (package(), evr(), evr()).prop_map(|(package, from, to)| Change { package, from, to });
    prop_oneof![
        (any::<u32>(), text(), family()).prop_map(|(protocol, helper_version, family)| {
            Reply::Welcome {
                protocol,
                helper_version,
                family,
            }
        }),
        any::<u32>().prop_map(|helper_protocol| Reply::Unsupported { helper_protocol }),
        Just(Reply::Denied),
        Just(Reply::Busy),
        (
            family(),
            installed(),
            installed(),
            proptest::option::of(any::<u32>()),
            any::<bool>(),
            text()
        )
            .prop_map(|(family, client, realtime, pid, held, helper_version)| {
                Reply::Status(StatusReport {
                    family,
                    client,
                    realtime,
                    lock: if held {
                        LockState::Held { pid }
                    } else {
                        LockState::Free
                    },
                    helper_version,
                    rollback: Default::default(),
                })
            }),
        (
            proptest::collection::vec(candidate, 0..3),
            any::<bool>(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(
                |(packages, cached, metadata_age_secs)| Reply::Check(CheckReport {
                    packages,
                    cached,
                    metadata_age_secs
                })
            ),
        step().prop_map(Reply::Progress),
        (proptest::collection::vec(change, 0..3), any::<bool>()).prop_map(
            |(changes, helper_restarting)| Reply::Updated(UpdateReport {
                changes,
                helper_restarting
            })
        ),
        failure().prop_map(Reply::Failed),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        any::<u32>().prop_map(|protocol| Request::Hello { protocol }),
        Just(Request::Status),
        Just(Request::Check),
        Just(Request::Update),
        Just(Request::Confirm),
    ]
}

proptest! {
    #[test]
    fn every_reply_round_trips(r in reply()) {
        let bytes = encode_frame(&r).unwrap();
        let back: Reply = read_frame(&mut Cursor::new(bytes)).unwrap();
        prop_assert_eq!(back, r);
    }

    #[test]
    fn every_request_round_trips(r in request()) {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &r).unwrap();
        let back: Request = read_frame(&mut Cursor::new(bytes)).unwrap();
        prop_assert_eq!(back, r);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_frame::<Request, _>(&mut Cursor::new(&bytes));
        let _ = read_frame::<Reply, _>(&mut Cursor::new(&bytes));
        let _ = decode_payload::<Reply>(&bytes);
    }

    #[test]
    fn evr_display_parses_back(e in evr()) {
        let e = Evr { release: e.release.replace('-', ""), ..e };
        prop_assert_eq!(Evr::parse(&e.to_string()).unwrap(), e);
    }
}

/// A reader that fails the test if more than `limit` bytes are requested
/// from it in total: proves the decoder never reads (or sizes a buffer
/// from) a hostile length.
struct Guard<'a> {
    inner: Cursor<&'a [u8]>,
    read: usize,
    limit: usize,
}

impl std::io::Read for Guard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n;
        assert!(self.read <= self.limit, "decoder read {} bytes", self.read);
        Ok(n)
    }
}

#[test]
fn length_prefix_of_4_gib_is_refused_before_reading() {
    let mut bytes = vec![0xff, 0xff, 0xff, 0xff];
    bytes.extend_from_slice(&[0u8; 128]);
    let mut r = Guard {
        inner: Cursor::new(&bytes),
        read: 0,
        limit: 4,
    };
    match read_frame::<Request, _>(&mut r) {
        Err(FrameError::TooLarge(0xffff_ffff)) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(r.read, 4);
}

#[test]
fn length_one_past_the_cap_is_refused_and_the_cap_is_accepted() {
    let over = (MAX_FRAME as u32 + 1).to_le_bytes();
    assert!(matches!(
        read_frame::<Request, _>(&mut Cursor::new(over)),
        Err(FrameError::TooLarge(n)) if n as usize == MAX_FRAME + 1
    ));
    // Exactly MAX_FRAME is read in full (then fails to decode as trailing bytes).
    let mut bytes = (MAX_FRAME as u32).to_le_bytes().to_vec();
    bytes.push(2); // Request::Check
    bytes.resize(4 + MAX_FRAME, 0);
    assert!(matches!(
        read_frame::<Request, _>(&mut Cursor::new(bytes)),
        Err(FrameError::TrailingBytes { used: 1, len }) if len == MAX_FRAME
    ));
}

#[test]
fn zero_length_is_refused() {
    assert!(matches!(
        read_frame::<Request, _>(&mut Cursor::new([0u8, 0, 0, 0])),
        Err(FrameError::Empty)
    ));
}

#[test]
fn truncated_frames_are_errors_not_hangs() {
    let full = encode_frame(&Request::Hello { protocol: 1 }).unwrap();
    for cut in 1..full.len() {
        let r = read_frame::<Request, _>(&mut Cursor::new(&full[..cut]));
        assert!(matches!(r, Err(FrameError::Io(_))), "cut at {cut}: {r:?}");
    }
    assert!(matches!(
        read_frame::<Request, _>(&mut Cursor::new(&[] as &[u8])),
        Err(FrameError::Closed)
    ));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut frame = encode_frame(&Request::Status).unwrap();
    frame[0] += 1;
    frame.push(0);
    assert!(matches!(
        read_frame::<Request, _>(&mut Cursor::new(frame)),
        Err(FrameError::TrailingBytes { used: 1, len: 2 })
    ));
}

#[test]
fn unknown_variant_tag_is_refused() {
    for tag in [5u8, 9, 0xfa, 0xff] {
        let frame = [1, 0, 0, 0, tag];
        let r = read_frame::<Request, _>(&mut Cursor::new(frame));
        assert!(
            matches!(r, Err(FrameError::Malformed(_))),
            "tag {tag}: {r:?}"
        );
    }
}

#[test]
fn huge_inner_length_is_refused_without_allocating() {
    // Reply::Welcome { protocol: 1, helper_version: <len u64::MAX>, .. }:
    // bincode varint 0xff = u64 follows.
    let mut payload = vec![0u8, 1, 0xff];
    payload.extend_from_slice(&u64::MAX.to_le_bytes());
    payload.extend_from_slice(b"abc");
    let r = decode_payload::<Reply>(&payload);
    assert!(matches!(r, Err(FrameError::Malformed(_))), "{r:?}");
    // A claimed length just under the frame cap but beyond the bytes present.
    let mut payload = vec![0u8, 1, 0xfc];
    payload.extend_from_slice(&60_000u32.to_le_bytes());
    payload.extend_from_slice(b"abc");
    assert!(matches!(
        decode_payload::<Reply>(&payload),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn hello_and_welcome_keep_their_wire_shape() {
    // Old and new peers meet during self-updates: these bytes must never change.
    assert_eq!(
        encode_frame(&Request::Hello { protocol: 1 }).unwrap(),
        [2, 0, 0, 0, 0, 1]
    );
    assert_eq!(
        encode_frame(&Reply::Unsupported { helper_protocol: 7 }).unwrap(),
        [2, 0, 0, 0, 1, 7]
    );
    let welcome = encode_frame(&Reply::Welcome {
        protocol: 1,
        helper_version: "v".into(),
        family: Family::Apt,
    })
    .unwrap();
    assert_eq!(welcome, [5, 0, 0, 0, 0, 1, 1, b'v', 0]);
}

#[test]
fn evr_parsing() {
    assert_eq!(
        Evr::parse("1:1.2.7-1").unwrap(),
        Evr {
            epoch: 1,
            version: "1.2.7".into(),
            release: "1".into()
        }
    );
    assert_eq!(
        Evr::parse("1.2-3-4").unwrap(),
        Evr {
            epoch: 0,
            version: "1.2-3".into(),
            release: "4".into()
        }
    );
    assert_eq!(Evr::parse("2.0").unwrap().release, "");
    assert_eq!(Evr::parse("1.7.0-1").unwrap().to_string(), "1.7.0-1");
    assert!(matches!(Evr::parse(""), Err(EvrError::Empty)));
    assert!(matches!(Evr::parse("x:1"), Err(EvrError::BadEpoch(_))));
    assert!(matches!(Evr::parse("1:"), Err(EvrError::EmptyVersion)));
    assert!(matches!(Evr::parse("-1"), Err(EvrError::EmptyVersion)));
    assert!(matches!(Evr::parse("1.0-"), Err(EvrError::EmptyRelease)));
    assert!(matches!(Evr::parse("--"), Err(EvrError::EmptyRelease)));
    assert!(matches!(
        Evr::parse("--x"),
        Err(EvrError::BadCharacter('-'))
    ));
    assert!(matches!(Evr::parse("~1"), Err(EvrError::BadCharacter('~'))));
    assert!(matches!(
        Evr::parse("1.0 -o"),
        Err(EvrError::BadCharacter(' '))
    ));
    assert!(matches!(
        Evr::parse("1.0/../x"),
        Err(EvrError::BadCharacter('/'))
    ));
    assert!(matches!(
        Evr::parse(&"1".repeat(300)),
        Err(EvrError::TooLong(300))
    ));
}
