use super::*;
use proptest::prelude::*;
use serde_json::json;

fn encode(value: &Msgpack) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

fn scan_all(bytes: &[u8], max: usize) -> Scan {
    FrameScanner::new(max).scan(bytes)
}

#[test]
fn finds_the_end_of_each_value() {
    let request = Msgpack::Array(vec![
        Msgpack::from(0),
        Msgpack::from(7),
        Msgpack::from("router.list"),
        Msgpack::Array(vec![]),
    ]);
    let bytes = encode(&request);
    let mut twice = bytes.clone();
    twice.extend_from_slice(&bytes);
    assert_eq!(scan_all(&twice, 1024), Scan::Complete(bytes.len()));
    assert_eq!(decode_frame(&bytes), Ok(request));
    for cut in 0..bytes.len() {
        assert_eq!(scan_all(&bytes[..cut], 1024), Scan::Incomplete, "cut {cut}");
    }
}

#[test]
fn resumes_where_it_stopped() {
    let value = Msgpack::Array(vec![Msgpack::from("x".repeat(300)); 20]);
    let bytes = encode(&value);
    let mut scanner = FrameScanner::new(1 << 20);
    for end in 0..bytes.len() {
        assert_eq!(scanner.scan(&bytes[..end]), Scan::Incomplete);
    }
    assert_eq!(scanner.scan(&bytes), Scan::Complete(bytes.len()));
}

#[test]
fn declared_lengths_beyond_the_limit_are_refused_from_the_header() {
    // str32 claiming 4 GiB, then an array32 claiming 4 billion elements: five bytes each.
    assert_eq!(
        scan_all(&[0xdb, 0xff, 0xff, 0xff, 0xff], 1024),
        Scan::TooLarge
    );
    assert_eq!(
        scan_all(&[0xdd, 0xff, 0xff, 0xff, 0xff], 1024),
        Scan::TooLarge
    );
    assert_eq!(
        scan_all(&[0xdf, 0x80, 0x00, 0x00, 0x00], 1 << 20),
        Scan::TooLarge
    );
    // A value exactly at the limit passes; one byte more does not.
    let bytes = encode(&Msgpack::from("y".repeat(100)));
    assert_eq!(scan_all(&bytes, bytes.len()), Scan::Complete(bytes.len()));
    assert_eq!(scan_all(&bytes, bytes.len() - 1), Scan::TooLarge);
}

#[test]
fn a_buffer_reaching_the_limit_without_a_value_is_too_large() {
    // Nested one-element arrays never finish.
    assert_eq!(scan_all(&[0x91; 64], 64), Scan::TooLarge);
    assert_eq!(scan_all(&[0x91; 63], 64), Scan::Incomplete);
}

#[test]
fn the_reserved_marker_is_invalid() {
    assert_eq!(scan_all(&[0xc1], 16), Scan::Invalid);
    assert_eq!(scan_all(&[0x92, 0x01, 0xc1], 16), Scan::Invalid);
}

#[test]
fn deep_nesting_is_refused_by_the_decoder() {
    let mut bytes = vec![0x91; MAX_DEPTH + 1];
    bytes.push(0xc0);
    assert_eq!(scan_all(&bytes, 1024), Scan::Complete(bytes.len()));
    assert!(decode_frame(&bytes).unwrap_err().contains("nested deeper"));
}

/// A request `[0, 7, "m", params]` whose arrays nest `depth` deep in all (the request's
/// own array included), with a string at the bottom.
fn request_nested(depth: usize) -> Vec<u8> {
    let mut params = Msgpack::from("bottom");
    for level in 0..depth - 1 {
        params = if level % 2 == 0 {
            Msgpack::Array(vec![params])
        } else {
            Msgpack::Map(vec![("k".into(), params)])
        };
    }
    encode(&Msgpack::Array(vec![
        0.into(),
        7.into(),
        "m".into(),
        params,
    ]))
}

#[test]
fn the_documented_depth_is_the_depth_decoded() {
    for depth in [1, 2, 32, 33, MAX_DEPTH] {
        let bytes = request_nested(depth);
        let mut scanner = FrameScanner::new(1 << 20);
        assert_eq!(scanner.scan(&bytes), Scan::Complete(bytes.len()));
        assert_eq!(scanner.depth(), depth);
        let decoded = decode_frame(&bytes);
        assert!(decoded.is_ok(), "depth {depth}: {decoded:?}");
    }
    let bytes = request_nested(MAX_DEPTH + 1);
    let err = decode_frame(&bytes).unwrap_err();
    assert_eq!(err, "arrays and maps nested deeper than 64 levels");
    assert_eq!(peek_msgid(&bytes), Some(7));
    // Empty containers count as a level too.
    let mut empty = vec![0x91; MAX_DEPTH];
    empty.push(0x90);
    assert!(decode_frame(&empty).is_err());
    assert!(decode_frame(&empty[1..]).is_ok());
}

#[test]
fn values_are_counted_before_decoding() {
    // [0, 1, "m", [nil; 1000]]: 1000 nils, their array, and the request's 4 values.
    let nils = Msgpack::Array(vec![Msgpack::Nil; 1000]);
    let bytes = encode(&Msgpack::Array(vec![0.into(), 1.into(), "m".into(), nils]));
    let mut scanner = FrameScanner::new(1 << 20);
    assert_eq!(scanner.scan(&bytes), Scan::Complete(bytes.len()));
    assert_eq!(scanner.values(), 1005);
    assert!(decode_frame_with(&bytes, 1005).is_ok());
    let err = decode_frame_with(&bytes, 1004).unwrap_err();
    assert!(err.contains("rpc.max_message_values"), "{err}");
    assert_eq!(peek_msgid(&bytes), Some(1));
}

#[test]
fn msgids_are_peeked_only_from_requests() {
    let bytes = |v: Msgpack| encode(&v);
    let req = |kind: Msgpack, id: Msgpack| {
        bytes(Msgpack::Array(vec![kind, id, "m".into(), Msgpack::Nil]))
    };
    assert_eq!(peek_msgid(&req(0.into(), 5.into())), Some(5));
    assert_eq!(peek_msgid(&req(0.into(), 70_000.into())), Some(70_000));
    assert_eq!(
        peek_msgid(&req(0.into(), u64::from(u32::MAX).into())),
        Some(u32::MAX)
    );
    assert_eq!(peek_msgid(&req(0.into(), (1u64 << 32).into())), None);
    assert_eq!(peek_msgid(&req(0.into(), (-1).into())), None);
    assert_eq!(peek_msgid(&req(1.into(), 5.into())), None);
    assert_eq!(peek_msgid(&req(0.into(), "5".into())), None);
    let three = bytes(Msgpack::Array(vec![0.into(), 5.into(), "m".into()]));
    assert_eq!(peek_msgid(&three), None);
    for cut in 0..4 {
        assert_eq!(peek_msgid(&req(0.into(), 300.into())[..cut]), None);
    }
}

#[test]
fn http_request_lines_are_recognised() {
    assert_eq!(sniff_http(b"GET / HTTP/1.1\r\n"), HttpSniff::Http);
    assert_eq!(sniff_http(b"POST /x"), HttpSniff::Http);
    assert_eq!(sniff_http(b"OPTI"), HttpSniff::Maybe);
    assert_eq!(sniff_http(b"P"), HttpSniff::Maybe);
    assert_eq!(sniff_http(b"GETX"), HttpSniff::No);
    assert_eq!(sniff_http(&[0x94, 0x00]), HttpSniff::No);
}

#[test]
fn requests_and_notifications_are_recognised() {
    let request = Msgpack::Array(vec![
        0.into(),
        5.into(),
        "router.close".into(),
        Msgpack::Array(vec![]),
    ]);
    assert_eq!(
        parse_message(request),
        Ok(Incoming::Request {
            msgid: 5,
            method: "router.close".into(),
            params: Msgpack::Array(vec![]),
        })
    );
    let binary_method = Msgpack::Array(vec![
        2.into(),
        Msgpack::Binary(b"producer.pause".to_vec()),
        Msgpack::Nil,
    ]);
    assert_eq!(
        parse_message(binary_method),
        Ok(Incoming::Notification {
            method: "producer.pause".into(),
            params: Msgpack::Nil,
        })
    );
}

#[test]
fn other_values_are_not_requests() {
    let cases = [
        (Msgpack::from(3), None),
        (Msgpack::Array(vec![]), None),
        (
            Msgpack::Array(vec![1.into(), 1.into(), Msgpack::Nil, Msgpack::Nil]),
            None,
        ),
        (
            Msgpack::Array(vec![0.into(), (-1).into(), "m".into(), Msgpack::Nil]),
            None,
        ),
        (
            Msgpack::Array(vec![
                0.into(),
                (1u64 << 32).into(),
                "m".into(),
                Msgpack::Nil,
            ]),
            None,
        ),
        (
            Msgpack::Array(vec![0.into(), 9.into(), 4.into(), Msgpack::Nil]),
            Some(9),
        ),
        (Msgpack::Array(vec![0.into(), 9.into(), "m".into()]), None),
    ];
    for (value, msgid) in cases {
        let err = parse_message(value.clone()).expect_err("not a request");
        assert_eq!(err.msgid, msgid, "{value}");
    }
}

#[test]
fn params_are_one_map_bare_or_wrapped() {
    let map = Msgpack::Map(vec![("router".into(), "r".into())]);
    let expected = json!({ "router": "r" });
    assert_eq!(params_map(map.clone()).unwrap(), expected);
    assert_eq!(
        params_map(Msgpack::Array(vec![map.clone()])).unwrap(),
        expected
    );
    assert_eq!(params_map(Msgpack::Nil).unwrap(), json!({}));
    assert_eq!(params_map(Msgpack::Array(vec![])).unwrap(), json!({}));
    for bad in [
        Msgpack::from(1),
        Msgpack::Array(vec![map.clone(), map]),
        Msgpack::Array(vec![1.into()]),
    ] {
        assert_eq!(params_map(bad).unwrap_err().code, ErrorCode::InvalidParams);
    }
}

#[test]
fn params_problems_name_their_field() {
    let params = Msgpack::Map(vec![(
        "options".into(),
        Msgpack::Map(vec![(
            "list".into(),
            Msgpack::Array(vec![1.into(), Msgpack::Ext(1, vec![0])]),
        )]),
    )]);
    let err = params_map(params).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParams);
    assert_eq!(err.data, Some(json!({ "field": "options.list[1]" })));
    let keys = Msgpack::Map(vec![(1.into(), 2.into())]);
    assert!(params_map(keys).unwrap_err().message.contains("keys"));
    let nan = Msgpack::Map(vec![("x".into(), Msgpack::F64(f64::NAN))]);
    assert!(params_map(nan).is_err());
}

#[test]
fn responses_and_notifications_have_the_spec_shape() {
    let ok = encode_response(3, &Ok(json!({ "id": "r" })));
    assert_eq!(
        decode_frame(&ok).unwrap(),
        Msgpack::Array(vec![
            1.into(),
            3.into(),
            Msgpack::Nil,
            Msgpack::Map(vec![("id".into(), "r".into())]),
        ])
    );
    let err = encode_response(4, &Err(RpcError::new(ErrorCode::NotFound, "gone")));
    let Msgpack::Array(parts) = decode_frame(&err).unwrap() else {
        panic!("not an array");
    };
    assert_eq!(parts[3], Msgpack::Nil);
    assert_eq!(
        msgpack_to_json(parts[2].clone()).unwrap(),
        json!({ "code": "not_found", "message": "gone" })
    );
    let note = encode_notification("events.lagged", &json!({ "dropped": 2 }));
    assert_eq!(
        msgpack_to_json(decode_frame(&note).unwrap()).unwrap(),
        json!([2, "events.lagged", [{ "dropped": 2 }]])
    );
}

fn any_value() -> impl Strategy<Value = Msgpack> {
    let leaf = prop_oneof![
        Just(Msgpack::Nil),
        any::<bool>().prop_map(Msgpack::from),
        any::<i64>().prop_map(Msgpack::from),
        any::<u64>().prop_map(Msgpack::from),
        any::<f64>().prop_map(Msgpack::F64),
        any::<f32>().prop_map(Msgpack::F32),
        ".{0,40}".prop_map(Msgpack::from),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Msgpack::Binary),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(t, d)| Msgpack::Ext(t, d)),
    ];
    leaf.prop_recursive(8, 256, 10, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..10).prop_map(Msgpack::Array),
            proptest::collection::vec((inner.clone(), inner), 0..10).prop_map(Msgpack::Map),
        ]
    })
}

proptest! {
    #[test]
    fn scanner_agrees_with_the_decoder_on_any_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut reader = &bytes[..];
        let decoded = rmpv::decode::read_value_with_max_depth(&mut reader, 1024);
        let consumed = bytes.len() - reader.len();
        match (scan_all(&bytes, 1 << 20), decoded) {
            (Scan::Complete(n), Ok(_)) => prop_assert_eq!(n, consumed),
            (Scan::Complete(n), Err(e)) => {
                prop_assert!(false, "scanner says {} bytes, decoder fails: {}", n, e)
            }
            // rmpv reads the reserved marker as nil; the spec says it is never used.
            (Scan::Invalid, Ok(_)) => prop_assert!(bytes[..consumed].contains(&0xc1)),
            (Scan::Incomplete, Ok(_)) => {
                prop_assert!(false, "decoder read a value the scanner did not find")
            }
            // Refused early from a declared size, which no 512 bytes can satisfy.
            (Scan::TooLarge, Ok(_)) => prop_assert!(false, "refused a complete value"),
            (Scan::TooLarge | Scan::Incomplete | Scan::Invalid, Err(_)) => {}
        }
        // Whatever the verdict, the rest of the pipeline must not panic.
        if let Scan::Complete(n) = scan_all(&bytes, 1 << 20)
            && let Ok(value) = decode_frame(&bytes[..n])
            && let Ok(Incoming::Request { params, .. } | Incoming::Notification { params, .. }) =
                parse_message(value)
        {
            let _ = params_map(params);
        }
    }

    #[test]
    fn the_scanner_measures_depth_and_values(value in any_value()) {
        fn measure(v: &Msgpack) -> (usize, u64) {
            match v {
                Msgpack::Array(items) => items.iter().map(measure).fold((1, 1), |(d, n), (cd, cn)| {
                    (d.max(cd + 1), n + cn)
                }),
                Msgpack::Map(entries) => entries
                    .iter()
                    .flat_map(|(k, v)| [measure(k), measure(v)])
                    .fold((1, 1), |(d, n), (cd, cn)| (d.max(cd + 1), n + cn)),
                _ => (0, 1),
            }
        }
        let bytes = encode(&value);
        let mut scanner = FrameScanner::new(1 << 20);
        prop_assert_eq!(scanner.scan(&bytes), Scan::Complete(bytes.len()));
        prop_assert_eq!((scanner.depth(), scanner.values()), measure(&value));
    }

    #[test]
    fn every_encoded_value_is_one_frame(value in any_value(), limit in 1usize..4096) {
        let bytes = encode(&value);
        let mut with_next = bytes.clone();
        with_next.push(0xc0);
        match scan_all(&with_next, limit) {
            Scan::Complete(n) => {
                prop_assert_eq!(n, bytes.len());
                prop_assert!(n <= limit);
            }
            Scan::TooLarge => prop_assert!(bytes.len() > limit),
            other => prop_assert!(false, "{:?} for a valid value", other),
        }
        // Byte by byte, the scanner keeps its place and reaches the same end.
        let mut scanner = FrameScanner::new(1 << 20);
        for end in 0..bytes.len() {
            prop_assert_eq!(scanner.scan(&bytes[..end]), Scan::Incomplete);
        }
        prop_assert_eq!(scanner.scan(&with_next), Scan::Complete(bytes.len()));
        let _ = parse_message(value.clone());
        let _ = params_map(value);
    }
}
