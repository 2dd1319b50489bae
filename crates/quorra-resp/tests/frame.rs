//! The reply parser: round trips, incomplete input, and hostile input.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use quorra_resp::{Frame, Limits, MAX_FRAME_DEPTH, ProtocolError, parse_frame};

fn arb_frame() -> impl Strategy<Value = Frame> {
    let blob = prop::collection::vec(any::<u8>(), 0..20).prop_map(Bytes::from);
    let line = "[a-zA-Z0-9 ]{0,12}".prop_map(Bytes::from);
    let leaf = prop_oneof![
        line.clone().prop_map(Frame::Simple),
        blob.clone().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        blob.clone().prop_map(Frame::Bulk),
        Just(Frame::Null),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        "-?[1-9][0-9]{0,30}".prop_map(|digits| Frame::BigNumber(Bytes::from(digits))),
        blob.prop_map(|text| Frame::Verbatim {
            format: *b"txt",
            text
        }),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Array),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
            prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

proptest! {
    #[test]
    fn frames_round_trip_and_every_prefix_is_incomplete(frame in arb_frame()) {
        let mut wire = BytesMut::new();
        frame.write_to(&mut wire);
        let parsed = parse_frame(&wire, &Limits::default()).unwrap();
        prop_assert_eq!(parsed, Some((frame.clone(), wire.len())));
        for cut in 0..wire.len() {
            prop_assert_eq!(parse_frame(&wire[..cut], &Limits::default()).unwrap(), None);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_frame(&input, &Limits::default());
    }
}

#[test]
fn resp2_nulls_are_null() {
    let limits = Limits::default();
    assert_eq!(
        parse_frame(b"$-1\r\n", &limits).unwrap(),
        Some((Frame::Null, 5))
    );
    assert_eq!(
        parse_frame(b"*-1\r\n", &limits).unwrap(),
        Some((Frame::Null, 5))
    );
    assert!(parse_frame(b"$-2\r\n", &limits).is_err());
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let limits = Limits::default();
    let mut ok = b"*1\r\n".repeat(MAX_FRAME_DEPTH);
    ok.extend_from_slice(b":1\r\n");
    assert!(parse_frame(&ok, &limits).unwrap().is_some());
    let hostile = b"*1\r\n".repeat(1_000_000);
    assert_eq!(parse_frame(&hostile, &limits), Err(ProtocolError::TooDeep));
}

#[test]
fn announced_lengths_are_bounded_by_limits() {
    let limits = Limits {
        max_bulk_len: 4,
        max_args: 2,
        ..Limits::default()
    };
    assert!(parse_frame(b"$5\r\n", &limits).is_err());
    assert!(parse_frame(b"*3\r\n", &limits).is_err());
    // A bulk whose body is not followed by CRLF is malformed, not incomplete.
    assert!(parse_frame(b"$2\r\nabcd\r\n", &limits).is_err());
}
