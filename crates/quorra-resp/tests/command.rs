//! Typed commands encode to what the server's parser reads back, and what they encode
//! satisfies the command table: the right name, a legal arity, the keys where the table
//! says they are.

use bytes::BytesMut;
use proptest::prelude::*;
use quorra_resp::command::{
    SetCondition, SetExpiry, SetOptions, TtlUnit, arity_ok, keys_of, lookup,
};
use quorra_resp::{Command, RequestParser};

/// Encodes `command`, parses it back as the server would, and checks it against the
/// table. Returns the arguments as text.
fn round_trip(command: &Command<'_>) -> Vec<String> {
    let mut buf = BytesMut::new();
    command.encode(&mut buf);
    let args = RequestParser::default()
        .next_request(&mut buf)
        .expect("valid RESP")
        .expect("one whole request");
    assert!(buf.is_empty(), "exactly one request");
    let info = command.id().info();
    assert_eq!(lookup(&args[0]), Some(command.id()), "{command:?}");
    assert!(
        arity_ok(info.arity, args.len()),
        "{command:?}: {} arguments break arity {}",
        args.len(),
        info.arity
    );
    args.iter()
        .map(|arg| String::from_utf8(arg.to_vec()).unwrap())
        .collect()
}

fn keys(command: &Command<'_>) -> Vec<String> {
    let mut buf = BytesMut::new();
    command.encode(&mut buf);
    let args = RequestParser::default()
        .next_request(&mut buf)
        .unwrap()
        .unwrap();
    keys_of(&args)
        .map(|key| String::from_utf8(key.to_vec()).unwrap())
        .collect()
}

#[test]
fn every_variant_encodes_the_redis_form() {
    let cases: Vec<(Command<'_>, &str)> = vec![
        (Command::Ping, "ping"),
        (
            Command::Auth {
                username: None,
                password: "pw",
            },
            "auth pw",
        ),
        (
            Command::Auth {
                username: Some("default"),
                password: "pw",
            },
            "auth default pw",
        ),
        (Command::Hello { protover: 3 }, "hello 3"),
        (Command::Get { key: b"k" }, "get k"),
        (Command::GetDel { key: b"k" }, "getdel k"),
        (
            Command::Set {
                key: b"k",
                value: b"v",
                options: SetOptions::default(),
            },
            "set k v",
        ),
        (
            Command::Set {
                key: b"k",
                value: b"v",
                options: SetOptions {
                    condition: SetCondition::IfAbsent,
                    expiry: SetExpiry::Px(1500),
                    get: true,
                },
            },
            "set k v NX GET PX 1500",
        ),
        (
            Command::Set {
                key: b"k",
                value: b"v",
                options: SetOptions {
                    condition: SetCondition::IfPresent,
                    expiry: SetExpiry::KeepTtl,
                    get: false,
                },
            },
            "set k v XX KEEPTTL",
        ),
        (
            Command::MGet {
                keys: &[b"a", b"b"],
            },
            "mget a b",
        ),
        (
            Command::MSet {
                pairs: &[(b"a", b"1"), (b"b", b"2")],
            },
            "mset a 1 b 2",
        ),
        (Command::Del { keys: &[b"a"] }, "del a"),
        (
            Command::Exists {
                keys: &[b"a", b"a"],
            },
            "exists a a",
        ),
        (
            Command::Expire {
                key: b"k",
                ttl: 10,
                unit: TtlUnit::Seconds,
            },
            "expire k 10",
        ),
        (
            Command::Expire {
                key: b"k",
                ttl: 10,
                unit: TtlUnit::Millis,
            },
            "pexpire k 10",
        ),
        (
            Command::Ttl {
                key: b"k",
                unit: TtlUnit::Millis,
            },
            "pttl k",
        ),
        (Command::IncrBy { key: b"n", by: -7 }, "incrby n -7"),
    ];
    for (command, expected) in cases {
        assert_eq!(round_trip(&command).join(" "), expected);
    }
}

#[test]
fn keys_of_an_encoded_command_are_its_keys() {
    assert_eq!(
        keys(&Command::MSet {
            pairs: &[(b"a", b"1"), (b"b", b"2")]
        }),
        ["a", "b"]
    );
    assert_eq!(
        keys(&Command::MGet {
            keys: &[b"x", b"y"]
        }),
        ["x", "y"]
    );
    assert_eq!(keys(&Command::IncrBy { key: b"n", by: 1 }), ["n"]);
    assert!(keys(&Command::Ping).is_empty());
}

fn expiry() -> impl Strategy<Value = SetExpiry> {
    prop_oneof![
        Just(SetExpiry::None),
        any::<i64>().prop_map(SetExpiry::Ex),
        any::<i64>().prop_map(SetExpiry::Px),
        any::<i64>().prop_map(SetExpiry::ExAt),
        any::<i64>().prop_map(SetExpiry::PxAt),
        Just(SetExpiry::KeepTtl),
    ]
}

fn condition() -> impl Strategy<Value = SetCondition> {
    prop_oneof![
        Just(SetCondition::Always),
        Just(SetCondition::IfAbsent),
        Just(SetCondition::IfPresent),
    ]
}

proptest! {
    /// Any key and value bytes, any options: the request parses back with key and value
    /// intact, and the options as Redis spells them.
    #[test]
    fn set_round_trips(
        key in proptest::collection::vec(any::<u8>(), 0..64),
        value in proptest::collection::vec(any::<u8>(), 0..256),
        condition in condition(),
        expiry in expiry(),
        get in any::<bool>(),
    ) {
        let command = Command::Set {
            key: &key,
            value: &value,
            options: SetOptions { condition, expiry, get },
        };
        let mut buf = BytesMut::new();
        command.encode(&mut buf);
        let args = RequestParser::default().next_request(&mut buf).unwrap().unwrap();
        prop_assert_eq!(&args[1][..], &key[..]);
        prop_assert_eq!(&args[2][..], &value[..]);
        let options: Vec<String> = args[3..]
            .iter()
            .map(|arg| String::from_utf8(arg.to_vec()).unwrap())
            .collect();
        let mut expected = Vec::new();
        match condition {
            SetCondition::Always => {}
            SetCondition::IfAbsent => expected.push("NX".to_owned()),
            SetCondition::IfPresent => expected.push("XX".to_owned()),
        }
        if get {
            expected.push("GET".to_owned());
        }
        match expiry {
            SetExpiry::None => {}
            SetExpiry::Ex(n) => expected.extend(["EX".to_owned(), n.to_string()]),
            SetExpiry::Px(n) => expected.extend(["PX".to_owned(), n.to_string()]),
            SetExpiry::ExAt(n) => expected.extend(["EXAT".to_owned(), n.to_string()]),
            SetExpiry::PxAt(n) => expected.extend(["PXAT".to_owned(), n.to_string()]),
            SetExpiry::KeepTtl => expected.push("KEEPTTL".to_owned()),
        }
        prop_assert_eq!(options, expected);
        // And the server's parser reads back exactly the options that were encoded.
        prop_assert_eq!(SetOptions::parse(&args[3..]), Ok(SetOptions { condition, expiry, get }));
    }
}

#[test]
fn set_options_refuse_what_redis_refuses() {
    use quorra_resp::command::OptionError;
    let parse = |text: &str| {
        let words: Vec<&str> = text.split_whitespace().collect();
        SetOptions::parse(&words)
    };
    assert_eq!(parse("nx get ex 10").unwrap().expiry, SetExpiry::Ex(10));
    assert_eq!(parse("NX XX"), Err(OptionError::Syntax));
    assert_eq!(parse("EX 1 PX 2"), Err(OptionError::Syntax));
    assert_eq!(parse("GET GET"), Err(OptionError::Syntax));
    assert_eq!(parse("EX"), Err(OptionError::Syntax));
    assert_eq!(parse("EX ten"), Err(OptionError::NotAnInteger));
    assert_eq!(parse("EX 010"), Err(OptionError::NotAnInteger));
    assert_eq!(parse("KEEPTTL EXAT 5"), Err(OptionError::Syntax));
}
