use super::capabilities::{extension, is_dynamic_pt, video_feedback};
use super::*;
use crate::error::ErrorCode;

// ---- helpers -------------------------------------------------------------------

fn codec(mime_type: &str, pt: u8, clock_rate: u32, p: &[(&str, ParamValue)]) -> RtpCodecParameters {
    RtpCodecParameters {
        mime_type: mime_type.to_owned(),
        payload_type: pt,
        clock_rate,
        channels: if mime_type.starts_with("audio/") {
            Some(2)
        } else {
            None
        },
        parameters: params(p),
        rtcp_feedback: video_feedback(),
    }
}

fn rtx(pt: u8, apt: u8) -> RtpCodecParameters {
    codec(mime::RTX, pt, 90_000, &[(APT, u32::from(apt).into())])
}

fn h264_params(plid: &str, mode: u32) -> Vec<(&str, ParamValue)> {
    vec![
        (h264::LEVEL_ASYMMETRY_ALLOWED, 1.into()),
        (h264::PACKETIZATION_MODE, mode.into()),
        (h264::PROFILE_LEVEL_ID, plid.into()),
    ]
}

fn ext(uri: &str, id: u8) -> RtpHeaderExtensionParameters {
    RtpHeaderExtensionParameters {
        uri: uri.to_owned(),
        id,
        encrypt: false,
    }
}

fn cap(
    kind: MediaKind,
    mime_type: &str,
    pt: Option<u8>,
    p: &[(&str, ParamValue)],
) -> RtpCodecCapability {
    RtpCodecCapability {
        kind,
        mime_type: mime_type.to_owned(),
        preferred_payload_type: pt,
        clock_rate: if kind == MediaKind::Audio {
            48_000
        } else {
            90_000
        },
        channels: (kind == MediaKind::Audio).then_some(2),
        parameters: params(p),
        rtcp_feedback: Vec::new(),
    }
}

fn router() -> RtpCapabilities {
    router_capabilities(&default_router_codecs()).expect("defaults are valid")
}

fn router_pt(router: &RtpCapabilities, mime_type: &str, p: &[(&str, ParamValue)]) -> u8 {
    let probe = codec(
        mime_type,
        0,
        if mime_type == mime::OPUS {
            48_000
        } else {
            90_000
        },
        p,
    );
    router
        .codecs
        .iter()
        .find(|c| codecs_match(&probe, *c, MatchMode::Strict))
        .and_then(|c| c.preferred_payload_type)
        .expect("router has the codec")
}

fn router_rtx_pt(router: &RtpCapabilities, apt: u8) -> u8 {
    router
        .codecs
        .iter()
        .find(|c| is_rtx_mime(&c.mime_type) && apt_of(&c.parameters) == Some(apt))
        .and_then(|c| c.preferred_payload_type)
        .expect("router has an rtx for it")
}

/// What Chromium publishes for video: VP8 96 + rtx 97, H264 42e01f pm1 102 + rtx 103,
/// with its extension ids, one encoding with an RTX SSRC.
fn chromium_video_producer() -> RtpParameters {
    RtpParameters {
        mid: Some("1".into()),
        codecs: vec![
            codec(mime::VP8, 96, 90_000, &[]),
            rtx(97, 96),
            codec(mime::H264, 102, 90_000, &h264_params("42e01f", 1)),
            rtx(103, 102),
        ],
        header_extensions: vec![
            ext(extension_uri::ABS_SEND_TIME, 2),
            ext(extension_uri::TRANSPORT_WIDE_CC, 3),
            ext(extension_uri::MID, 4),
            ext(extension_uri::RID, 10),
            ext(extension_uri::REPAIRED_RID, 11),
            ext(extension_uri::VIDEO_ORIENTATION, 13),
            // Something the router does not know: must be dropped.
            ext("urn:ietf:params:rtp-hdrext:toffset", 14),
        ],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(1111),
            rid: None,
            rtx: Some(RtxParameters { ssrc: 2222 }),
            max_bitrate: Some(1_500_000),
        }],
        rtcp: RtcpParameters {
            cname: Some("chromium-cname".into()),
            reduced_size: true,
        },
    }
}

fn consumable_of(producer: &RtpParameters) -> (RtpCapabilities, RtpMapping, RtpParameters) {
    let router = router();
    let mapping = producer_mapping(&router, producer).expect("producer maps");
    let consumable = consumable_parameters(producer, &router, &mapping);
    (router, mapping, consumable)
}

/// A publisher sending H.264 labelled Baseline (aiortc lists 42001f first).
fn h264_baseline_producer() -> RtpParameters {
    RtpParameters {
        mid: Some("0".into()),
        codecs: vec![
            codec(mime::H264, 99, 90_000, &h264_params("42001f", 1)),
            rtx(100, 99),
        ],
        header_extensions: vec![ext(extension_uri::MID, 1)],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(42),
            ..Default::default()
        }],
        rtcp: RtcpParameters {
            cname: Some("aiortc".into()),
            reduced_size: true,
        },
    }
}

/// What Firefox can receive for video: H264 42e01f pm1 at 126 with rtx 127, VP8 120 with
/// rtx 124, and its own extension ids (mid 3, transport-cc 7).
fn firefox_video_receiver() -> RtpCapabilities {
    let mut h264 = cap(
        MediaKind::Video,
        "video/H264",
        Some(126),
        &h264_params("42e01f", 1),
    );
    h264.rtcp_feedback = video_feedback();
    let mut vp8 = cap(MediaKind::Video, "video/VP8", Some(120), &[]);
    vp8.rtcp_feedback = video_feedback();
    RtpCapabilities {
        codecs: vec![
            vp8,
            cap(
                MediaKind::Video,
                "video/rtx",
                Some(124),
                &[(APT, 120.into())],
            ),
            h264,
            cap(
                MediaKind::Video,
                "video/rtx",
                Some(127),
                &[(APT, 126.into())],
            ),
        ],
        header_extensions: vec![
            extension(MediaKind::Video, extension_uri::MID, 3),
            extension(MediaKind::Video, extension_uri::ABS_SEND_TIME, 4),
            extension(MediaKind::Video, extension_uri::TRANSPORT_WIDE_CC, 7),
            extension(MediaKind::Video, extension_uri::RID, 10),
        ],
    }
}

// ---- matching ------------------------------------------------------------------

#[test]
fn matching_basics() {
    let opus = codec(mime::OPUS, 111, 48_000, &[]);
    let mut opus_upper = opus.clone();
    opus_upper.mime_type = "AUDIO/OPUS".into();
    assert!(codecs_match(&opus, &opus_upper, MatchMode::Strict));

    let mut mono = opus.clone();
    mono.channels = Some(1);
    assert!(!codecs_match(&opus, &mono, MatchMode::Loose));
    let mut unstated = opus.clone();
    unstated.channels = None;
    assert!(
        codecs_match(&mono, &unstated, MatchMode::Strict),
        "absent = 1 channel"
    );

    let mut other_clock = opus.clone();
    other_clock.clock_rate = 16_000;
    assert!(!codecs_match(&opus, &other_clock, MatchMode::Loose));

    // Works across the two types.
    let capability = super::capabilities::opus();
    assert!(codecs_match(&opus, &capability, MatchMode::Strict));
    assert!(codecs_match(&capability, &opus, MatchMode::Strict));
}

#[test]
fn strict_matching_checks_h264_profile_and_mode() {
    let cb = codec(mime::H264, 102, 90_000, &h264_params("42e01f", 1));
    let baseline = codec(mime::H264, 104, 90_000, &h264_params("42001f", 1));
    let main = codec(mime::H264, 127, 90_000, &h264_params("4d001f", 1));
    let cb_mode0 = codec(mime::H264, 108, 90_000, &h264_params("42e01f", 0));
    // Firefox writes no packetization-mode for mode 0.
    let cb_firefox_mode0 = codec(
        mime::H264,
        97,
        90_000,
        &[(h264::PROFILE_LEVEL_ID, "42e01f".into())],
    );

    assert!(codecs_match(&cb, &baseline, MatchMode::Strict));
    assert!(!codecs_match(&cb, &main, MatchMode::Strict));
    assert!(codecs_match(&cb, &main, MatchMode::Loose));
    assert!(!codecs_match(&cb, &cb_mode0, MatchMode::Strict));
    assert!(codecs_match(
        &cb_mode0,
        &cb_firefox_mode0,
        MatchMode::Strict
    ));
    let broken_mode = codec(
        mime::H264,
        96,
        90_000,
        &[(h264::PACKETIZATION_MODE, "x".into())],
    );
    assert!(!codecs_match(&broken_mode, &broken_mode, MatchMode::Strict));
}

#[test]
fn strict_matching_checks_vp9_and_av1_profiles() {
    let vp9_absent = codec(mime::VP9, 98, 90_000, &[]);
    let vp9_p0 = codec(mime::VP9, 98, 90_000, &[(VP9_PROFILE_ID, 0.into())]);
    let vp9_p2 = codec(mime::VP9, 100, 90_000, &[(VP9_PROFILE_ID, "2".into())]);
    assert!(codecs_match(&vp9_absent, &vp9_p0, MatchMode::Strict));
    assert!(!codecs_match(&vp9_p0, &vp9_p2, MatchMode::Strict));
    assert!(codecs_match(&vp9_p0, &vp9_p2, MatchMode::Loose));

    let av1_chrome = codec(
        mime::AV1,
        45,
        90_000,
        &[
            ("level-idx", 5.into()),
            (AV1_PROFILE, 0.into()),
            ("tier", 0.into()),
        ],
    );
    let av1_plain = codec(mime::AV1, 41, 90_000, &[]);
    let av1_high = codec(mime::AV1, 41, 90_000, &[(AV1_PROFILE, 1.into())]);
    assert!(codecs_match(&av1_chrome, &av1_plain, MatchMode::Strict));
    assert!(!codecs_match(&av1_plain, &av1_high, MatchMode::Strict));
}

// ---- supported and router capabilities -----------------------------------------

#[test]
fn supported_capabilities_use_chromium_extension_ids() {
    let caps = supported_capabilities();
    let id = |kind: MediaKind, uri: &str| {
        caps.header_extensions
            .iter()
            .find(|e| e.kind == kind && e.uri == uri)
            .map(|e| e.preferred_id)
    };
    assert_eq!(id(MediaKind::Audio, extension_uri::AUDIO_LEVEL), Some(1));
    assert_eq!(id(MediaKind::Video, extension_uri::AUDIO_LEVEL), None);
    assert_eq!(id(MediaKind::Video, extension_uri::ABS_SEND_TIME), Some(2));
    assert_eq!(
        id(MediaKind::Audio, extension_uri::TRANSPORT_WIDE_CC),
        Some(3)
    );
    assert_eq!(id(MediaKind::Audio, extension_uri::MID), Some(4));
    assert_eq!(id(MediaKind::Video, extension_uri::MID), Some(4));
    assert_eq!(id(MediaKind::Video, extension_uri::RID), Some(10));
    assert_eq!(id(MediaKind::Audio, extension_uri::RID), None);
    assert_eq!(id(MediaKind::Video, extension_uri::REPAIRED_RID), Some(11));
    assert_eq!(
        id(MediaKind::Video, extension_uri::VIDEO_ORIENTATION),
        Some(13)
    );
    // Every default codec is routable.
    for c in default_router_codecs() {
        assert!(
            caps.codecs
                .iter()
                .any(|s| codecs_match(&c, s, MatchMode::Strict)),
            "{}",
            describe(&c)
        );
    }
}

#[test]
fn router_caps_from_defaults_have_unique_pts_and_an_rtx_per_video_codec() {
    let caps = router();
    let pts: Vec<u8> = caps
        .codecs
        .iter()
        .map(|c| {
            c.preferred_payload_type
                .expect("every codec gets a payload type")
        })
        .collect();
    let unique: BTreeSet<u8> = pts.iter().copied().collect();
    assert_eq!(unique.len(), pts.len(), "{pts:?}");
    assert!(pts.iter().all(|pt| is_dynamic_pt(*pt)));

    // Given order, each video codec immediately followed by its RTX.
    let media: Vec<&RtpCodecCapability> = caps
        .codecs
        .iter()
        .filter(|c| !is_rtx_mime(&c.mime_type))
        .collect();
    let expected: Vec<String> = default_router_codecs()
        .iter()
        .map(|c| c.mime_type.clone())
        .collect();
    assert_eq!(
        media
            .iter()
            .map(|c| c.mime_type.clone())
            .collect::<Vec<_>>(),
        expected
    );
    for (i, c) in caps.codecs.iter().enumerate() {
        if c.kind == MediaKind::Video && !is_rtx_mime(&c.mime_type) {
            let next = caps.codecs.get(i + 1).expect("an rtx follows");
            assert_eq!(next.mime_type, mime::RTX);
            assert_eq!(next.clock_rate, 90_000);
            assert_eq!(apt_of(&next.parameters), c.preferred_payload_type);
        }
    }
    assert_eq!(
        caps.codecs
            .iter()
            .filter(|c| is_rtx_mime(&c.mime_type))
            .count(),
        5
    );
    // Audio gets no RTX; video feedback and Opus fmtp come from the supported entries.
    assert_eq!(
        caps.codecs.first().map(|c| c.mime_type.as_str()),
        Some(mime::OPUS)
    );
    assert_ne!(
        caps.codecs.get(1).map(|c| c.mime_type.as_str()),
        Some(mime::RTX)
    );
    assert_eq!(
        caps.codecs[0].parameters.get("useinbandfec"),
        Some(&ParamValue::Number(1))
    );
    assert_eq!(caps.codecs[1].rtcp_feedback, video_feedback());
    assert_eq!(
        caps.header_extensions,
        supported_capabilities().header_extensions
    );
}

#[test]
fn router_keeps_free_preferred_pts_and_fills_the_gaps() {
    let caps = router_capabilities(&[
        // No preference: must not take 96, which a later codec wants.
        cap(MediaKind::Video, "video/vp8", None, &[]),
        cap(MediaKind::Audio, "audio/opus", Some(96), &[]),
        // Taken already by Opus: falls back to the lowest free type.
        cap(MediaKind::Video, "video/VP9", Some(96), &[]),
        // Not dynamic: ignored.
        cap(MediaKind::Video, "video/AV1", Some(35), &[]),
    ])
    .expect("valid");
    let summary: Vec<(String, u8)> = caps
        .codecs
        .iter()
        .map(|c| (c.mime_type.clone(), c.preferred_payload_type.unwrap_or(0)))
        .collect();
    let expected = [
        (mime::VP8, 97),
        (mime::RTX, 98),
        (mime::OPUS, 96),
        (mime::VP9, 99),
        (mime::RTX, 100),
        (mime::AV1, 101),
        (mime::RTX, 102),
    ];
    let expected: Vec<(String, u8)> = expected
        .iter()
        .map(|(m, pt)| ((*m).to_owned(), *pt))
        .collect();
    assert_eq!(summary, expected);
    // The configured spelling is normalised and missing channels inherited.
    assert_eq!(caps.codecs[2].channels, Some(2));
    // VP9 with no parameters takes the supported profile-0 entry's.
    assert_eq!(
        caps.codecs[3].parameters.get(VP9_PROFILE_ID),
        Some(&ParamValue::Number(0))
    );
}

#[test]
fn router_keeps_configured_parameters_and_feedback() {
    let mut h264 = cap(
        MediaKind::Video,
        mime::H264,
        Some(125),
        &h264_params("42001f", 1),
    );
    h264.rtcp_feedback = vec![RtcpFeedback::new("nack", "pli")];
    let caps = router_capabilities(&[h264]).expect("baseline is routable");
    assert_eq!(caps.codecs[0].preferred_payload_type, Some(125));
    assert_eq!(
        caps.codecs[0].parameters.get(h264::PROFILE_LEVEL_ID),
        Some(&ParamValue::Text("42001f".into()))
    );
    assert_eq!(
        caps.codecs[0].rtcp_feedback,
        vec![RtcpFeedback::new("nack", "pli")]
    );
    assert_eq!(apt_of(&caps.codecs[1].parameters), Some(125));
}

#[test]
fn router_rejects_unsupported_codecs() {
    let err = router_capabilities(&[RtpCodecCapability {
        kind: MediaKind::Audio,
        mime_type: "audio/PCMU".into(),
        preferred_payload_type: Some(0),
        clock_rate: 8000,
        channels: Some(1),
        parameters: CodecParameters::new(),
        rtcp_feedback: Vec::new(),
    }])
    .expect_err("PCMU is not routed");
    assert_eq!(err.code, ErrorCode::UnsupportedCodec);
    assert!(err.message.contains("audio/PCMU"), "{}", err.message);

    // Known codec, unknown variant: H.264 mode 0, High 10, VP9 profile 1, Opus mono.
    for bad in [
        cap(
            MediaKind::Video,
            mime::H264,
            None,
            &h264_params("42e01f", 0),
        ),
        cap(
            MediaKind::Video,
            mime::H264,
            None,
            &h264_params("6e001f", 1),
        ),
        cap(
            MediaKind::Video,
            mime::VP9,
            None,
            &[(VP9_PROFILE_ID, 1.into())],
        ),
        RtpCodecCapability {
            channels: Some(1),
            ..cap(MediaKind::Audio, mime::OPUS, None, &[])
        },
    ] {
        let err = router_capabilities(std::slice::from_ref(&bad)).expect_err("unsupported variant");
        assert_eq!(err.code, ErrorCode::UnsupportedCodec, "{}", describe(&bad));
        assert!(
            err.message.contains("with this clock rate"),
            "{}",
            err.message
        );
    }
}

#[test]
fn router_rejects_duplicates_rtx_and_wrong_kinds() {
    let err = router_capabilities(&[
        cap(
            MediaKind::Video,
            mime::H264,
            None,
            &h264_params("42e01f", 1),
        ),
        cap(
            MediaKind::Video,
            mime::H264,
            None,
            &h264_params("42001f", 1),
        ),
    ])
    .expect_err("same profile twice");
    assert_eq!(err.code, ErrorCode::InvalidParams);
    assert!(err.message.contains("twice"), "{}", err.message);

    let err = router_capabilities(&[
        cap(MediaKind::Video, mime::VP8, None, &[]),
        cap(MediaKind::Video, "video/vp8", None, &[]),
    ])
    .expect_err("VP8 twice");
    assert_eq!(err.code, ErrorCode::InvalidParams);

    // Different VP9 profiles are not duplicates.
    assert!(
        router_capabilities(&[
            cap(
                MediaKind::Video,
                mime::VP9,
                None,
                &[(VP9_PROFILE_ID, 0.into())]
            ),
            cap(
                MediaKind::Video,
                mime::VP9,
                None,
                &[(VP9_PROFILE_ID, 2.into())]
            ),
        ])
        .is_ok()
    );

    let err = router_capabilities(&[cap(MediaKind::Video, mime::RTX, None, &[])]).expect_err("rtx");
    assert_eq!(err.code, ErrorCode::InvalidParams);
    let err =
        router_capabilities(&[cap(MediaKind::Audio, mime::VP8, None, &[])]).expect_err("kind");
    assert_eq!(err.code, ErrorCode::InvalidParams);
}

#[test]
fn payload_types_run_out_with_an_error() {
    let mut pts = PayloadTypes::default();
    for _ in FIRST_DYNAMIC_PT..=LAST_DYNAMIC_PT {
        pts.next_free().expect("32 dynamic types");
    }
    let err = pts.next_free().expect_err("exhausted");
    assert_eq!(err.code, ErrorCode::InvalidParams);
}

// ---- producers -----------------------------------------------------------------

#[test]
fn chromium_producer_maps_onto_router_pts() {
    let router = router();
    let producer = chromium_video_producer();
    let mapping = producer_mapping(&router, &producer).expect("maps");

    let vp8 = router_pt(&router, mime::VP8, &[]);
    let h264 = router_pt(&router, mime::H264, &h264_params("42e01f", 1));
    let expected = vec![
        CodecMapping {
            producer_pt: 96,
            router_pt: vp8,
        },
        CodecMapping {
            producer_pt: 102,
            router_pt: h264,
        },
        CodecMapping {
            producer_pt: 97,
            router_pt: router_rtx_pt(&router, vp8),
        },
        CodecMapping {
            producer_pt: 103,
            router_pt: router_rtx_pt(&router, h264),
        },
    ];
    assert_eq!(mapping.codecs, expected);
    assert_eq!(mapping.encodings.len(), 1);
    assert_eq!(mapping.encodings[0].ssrc, Some(1111));
    assert_ne!(mapping.encodings[0].mapped_ssrc, 0);

    let audio = RtpParameters {
        codecs: vec![codec(
            mime::OPUS,
            111,
            48_000,
            &[("minptime", 10.into()), ("useinbandfec", 1.into())],
        )],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(5),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mapping = producer_mapping(&router, &audio).expect("opus maps");
    assert_eq!(
        mapping.codecs,
        vec![CodecMapping {
            producer_pt: 111,
            router_pt: router_pt(&router, mime::OPUS, &[])
        }]
    );
}

#[test]
fn simulcast_encodings_get_distinct_mapped_ssrcs() {
    let mut producer = chromium_video_producer();
    producer.encodings = ["q", "h", "f"]
        .iter()
        .map(|rid| RtpEncodingParameters {
            rid: Some((*rid).into()),
            ..Default::default()
        })
        .collect();
    let mapping = producer_mapping(&router(), &producer).expect("maps");
    let rids: Vec<Option<String>> = mapping.encodings.iter().map(|e| e.rid.clone()).collect();
    assert_eq!(
        rids,
        vec![Some("q".into()), Some("h".into()), Some("f".into())]
    );
    let ssrcs: BTreeSet<u32> = mapping.encodings.iter().map(|e| e.mapped_ssrc).collect();
    assert_eq!(ssrcs.len(), 3);
}

#[test]
fn producer_with_an_unrouted_codec_is_refused() {
    let mut producer = chromium_video_producer();
    producer
        .codecs
        .push(codec(mime::H264, 112, 90_000, &h264_params("640032", 1)));
    let err = producer_mapping(&router(), &producer).expect_err("High is not in the defaults");
    assert_eq!(err.code, ErrorCode::UnsupportedCodec);
    assert!(
        err.message.contains("video/H264") && err.message.contains("112"),
        "{}",
        err.message
    );
}

#[test]
fn producer_validation() {
    let router = router();
    let mut no_encodings = chromium_video_producer();
    no_encodings.encodings.clear();
    assert_eq!(
        producer_mapping(&router, &no_encodings).map_err(|e| e.code),
        Err(ErrorCode::InvalidParams)
    );

    let mut orphan_rtx = chromium_video_producer();
    orphan_rtx.codecs.push(rtx(110, 109));
    assert_eq!(
        producer_mapping(&router, &orphan_rtx).map_err(|e| e.code),
        Err(ErrorCode::InvalidParams)
    );

    let mut only_rtx = chromium_video_producer();
    only_rtx.codecs.retain(|c| c.is_rtx());
    assert_eq!(
        producer_mapping(&router, &only_rtx).map_err(|e| e.code),
        Err(ErrorCode::InvalidParams)
    );

    let mut dup_pt = chromium_video_producer();
    dup_pt.codecs.push(codec(mime::VP8, 96, 90_000, &[]));
    assert_eq!(
        producer_mapping(&router, &dup_pt).map_err(|e| e.code),
        Err(ErrorCode::InvalidParams)
    );

    let mut anonymous_layers = chromium_video_producer();
    anonymous_layers.encodings = vec![
        RtpEncodingParameters::default(),
        RtpEncodingParameters::default(),
    ];
    assert_eq!(
        producer_mapping(&router, &anonymous_layers).map_err(|e| e.code),
        Err(ErrorCode::InvalidParams)
    );

    let mut dup_rid = chromium_video_producer();
    dup_rid.encodings = vec![
        RtpEncodingParameters {
            rid: Some("h".into()),
            ..Default::default()
        },
        RtpEncodingParameters {
            rid: Some("h".into()),
            ..Default::default()
        },
    ];
    assert_eq!(
        producer_mapping(&router, &dup_rid).map_err(|e| e.code),
        Err(ErrorCode::InvalidParams)
    );

    // A lone encoding without ssrc or rid is fine (matched by mid).
    let mut by_mid = chromium_video_producer();
    by_mid.encodings = vec![RtpEncodingParameters::default()];
    assert!(producer_mapping(&router, &by_mid).is_ok());
}

// ---- consumable ----------------------------------------------------------------

#[test]
fn consumable_uses_router_numbering() {
    let producer = chromium_video_producer();
    let (router, mapping, consumable) = consumable_of(&producer);
    let vp8 = router_pt(&router, mime::VP8, &[]);
    let h264 = router_pt(&router, mime::H264, &h264_params("42e01f", 1));

    let pts: Vec<(String, u8)> = consumable
        .codecs
        .iter()
        .map(|c| (c.mime_type.clone(), c.payload_type))
        .collect();
    let expected: Vec<(String, u8)> = vec![
        (mime::VP8.into(), vp8),
        (mime::RTX.into(), router_rtx_pt(&router, vp8)),
        (mime::H264.into(), h264),
        (mime::RTX.into(), router_rtx_pt(&router, h264)),
    ];
    assert_eq!(pts, expected);
    assert_eq!(consumable.codecs[1].apt(), Some(vp8));
    assert_eq!(consumable.codecs[3].apt(), Some(h264));
    // The bitstream's own fmtp survives.
    assert_eq!(
        consumable.codecs[2].parameters,
        params(&h264_params("42e01f", 1))
    );

    let exts: Vec<(&str, u8)> = consumable
        .header_extensions
        .iter()
        .map(|e| (e.uri.as_str(), e.id))
        .collect();
    assert_eq!(
        exts,
        vec![
            (extension_uri::ABS_SEND_TIME, 2),
            (extension_uri::TRANSPORT_WIDE_CC, 3),
            (extension_uri::MID, 4),
            (extension_uri::RID, 10),
            (extension_uri::REPAIRED_RID, 11),
            (extension_uri::VIDEO_ORIENTATION, 13),
        ]
    );

    assert_eq!(
        consumable.encodings,
        vec![RtpEncodingParameters {
            ssrc: Some(mapping.encodings[0].mapped_ssrc),
            rid: None,
            rtx: None,
            max_bitrate: Some(1_500_000),
        }]
    );
    assert_eq!(consumable.rtcp.cname.as_deref(), Some("chromium-cname"));
    assert_eq!(consumable.mid, None);
}

#[test]
fn consumable_re_ids_extensions_and_keeps_only_the_kinds_own() {
    // A Firefox-numbered audio producer, plus a video-only extension.
    let producer = RtpParameters {
        codecs: vec![codec(mime::OPUS, 109, 48_000, &[])],
        header_extensions: vec![
            ext(extension_uri::AUDIO_LEVEL, 1),
            ext(extension_uri::MID, 3),
            ext(extension_uri::TRANSPORT_WIDE_CC, 7),
            ext(extension_uri::VIDEO_ORIENTATION, 9),
        ],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(9),
            ..Default::default()
        }],
        ..Default::default()
    };
    let (router, _, consumable) = consumable_of(&producer);
    let exts: Vec<(&str, u8)> = consumable
        .header_extensions
        .iter()
        .map(|e| (e.uri.as_str(), e.id))
        .collect();
    assert_eq!(
        exts,
        vec![
            (extension_uri::AUDIO_LEVEL, 1),
            (extension_uri::MID, 4),
            (extension_uri::TRANSPORT_WIDE_CC, 3),
        ]
    );
    // Audio gets no RTX; Opus carries the router's feedback (transport-cc only).
    assert_eq!(consumable.codecs.len(), 1);
    assert_eq!(
        consumable.codecs[0].payload_type,
        router_pt(&router, mime::OPUS, &[])
    );
    assert_eq!(
        consumable.codecs[0].rtcp_feedback,
        vec![RtcpFeedback::new("transport-cc", "")]
    );
}

// ---- consumers -----------------------------------------------------------------

#[test]
fn firefox_constrained_baseline_subscriber_gets_a_baseline_stream() {
    let (_, _, consumable) = consumable_of(&h264_baseline_producer());
    let firefox = firefox_video_receiver();
    assert!(can_consume(&consumable, &firefox));

    let consumer = consumer_parameters(&consumable, &firefox, false).expect("compatible");
    assert_eq!(consumer.codecs.len(), 2);
    let media = &consumer.codecs[0];
    assert_eq!(media.mime_type, mime::H264);
    assert_eq!(media.payload_type, 126, "the subscriber's own payload type");
    // Labelled as the subscriber knows it, at the stream's level.
    assert_eq!(
        media.parameters.get(h264::PROFILE_LEVEL_ID),
        Some(&ParamValue::Text("42e01f".into()))
    );
    assert_eq!(h264::packetization_mode(&media.parameters), Some(1));
    let rtx = &consumer.codecs[1];
    assert_eq!(
        (rtx.mime_type.as_str(), rtx.payload_type, rtx.apt()),
        (mime::RTX, 127, Some(126))
    );

    let exts: Vec<(&str, u8)> = consumer
        .header_extensions
        .iter()
        .map(|e| (e.uri.as_str(), e.id))
        .collect();
    assert_eq!(exts, vec![(extension_uri::MID, 3)]);

    assert_eq!(consumer.encodings.len(), 1);
    let enc = &consumer.encodings[0];
    let (ssrc, rtx_ssrc) = (enc.ssrc.expect("ssrc"), enc.rtx.expect("rtx ssrc").ssrc);
    assert_ne!(ssrc, rtx_ssrc);
    assert_ne!(
        Some(ssrc),
        consumable.encodings[0].ssrc,
        "consumers get their own ssrc"
    );
    assert_eq!(enc.rid, None);
    assert_eq!(consumer.rtcp.cname.as_deref(), Some("aiortc"));
    assert_eq!(consumer.mid, None);
}

#[test]
fn exact_h264_profile_is_preferred_when_the_remote_lists_both() {
    let producer = chromium_video_producer();
    let (_, _, mut consumable) = consumable_of(&producer);
    consumable.codecs.drain(..2); // keep only H264 42e01f + rtx
    // Chromium's order: 42001f at 102 before 42e01f at 106.
    let remote = RtpCapabilities {
        codecs: vec![
            cap(
                MediaKind::Video,
                mime::H264,
                Some(102),
                &h264_params("42001f", 1),
            ),
            cap(
                MediaKind::Video,
                mime::H264,
                Some(106),
                &h264_params("42e01f", 1),
            ),
        ],
        header_extensions: Vec::new(),
    };
    let consumer = consumer_parameters(&consumable, &remote, false).expect("compatible");
    assert_eq!(consumer.codecs[0].payload_type, 106);
    assert_eq!(
        consumer.codecs[0].parameters.get(h264::PROFILE_LEVEL_ID),
        Some(&ParamValue::Text("42e01f".into()))
    );
}

#[test]
fn subscriber_with_its_own_numbering_gets_it() {
    let (router, _, consumable) = consumable_of(&chromium_video_producer());
    let firefox = firefox_video_receiver();
    let consumer = consumer_parameters(&consumable, &firefox, false).expect("compatible");
    // VP8 comes first in the consumable, so it is chosen, at Firefox's 120 and rtx 124.
    let pts: Vec<(String, u8)> = consumer
        .codecs
        .iter()
        .map(|c| (c.mime_type.clone(), c.payload_type))
        .collect();
    assert_eq!(
        pts,
        vec![(mime::VP8.to_owned(), 120), (mime::RTX.to_owned(), 124)]
    );
    assert_eq!(consumer.codecs[1].apt(), Some(120));
    let exts: Vec<(&str, u8)> = consumer
        .header_extensions
        .iter()
        .map(|e| (e.uri.as_str(), e.id))
        .collect();
    // Firefox's ids; rid never reaches a consumer; orientation unsupported by Firefox here.
    assert_eq!(
        exts,
        vec![
            (extension_uri::ABS_SEND_TIME, 4),
            (extension_uri::TRANSPORT_WIDE_CC, 7),
            (extension_uri::MID, 3),
        ]
    );

    // A remote without preferred payload types gets the router's.
    let mut anonymous = firefox.clone();
    for c in &mut anonymous.codecs {
        c.preferred_payload_type = None;
    }
    let consumer = consumer_parameters(&consumable, &anonymous, false).expect("compatible");
    let vp8 = router_pt(&router, mime::VP8, &[]);
    assert_eq!(consumer.codecs[0].payload_type, vp8);
    assert_eq!(consumer.codecs[1].payload_type, router_rtx_pt(&router, vp8));
    assert_eq!(consumer.codecs[1].apt(), Some(vp8));
}

#[test]
fn rtx_payload_type_never_collides_with_the_media_one() {
    let (router, _, consumable) = consumable_of(&chromium_video_producer());
    let vp8 = router_pt(&router, mime::VP8, &[]);
    let router_rtx = router_rtx_pt(&router, vp8);
    // The remote puts VP8 on the router's RTX type and names no RTX type for it.
    let remote = RtpCapabilities {
        codecs: vec![
            cap(MediaKind::Video, mime::VP8, Some(router_rtx), &[]),
            cap(MediaKind::Video, mime::RTX, Some(120), &[(APT, 121.into())]),
        ],
        header_extensions: Vec::new(),
    };
    let consumer = consumer_parameters(&consumable, &remote, false).expect("compatible");
    assert_eq!(consumer.codecs[0].payload_type, router_rtx);
    assert_ne!(consumer.codecs[1].payload_type, router_rtx);
    assert_eq!(consumer.codecs[1].apt(), Some(router_rtx));
}

#[test]
fn remote_without_rtx_gets_no_rtx() {
    let (_, _, consumable) = consumable_of(&chromium_video_producer());
    let mut remote = firefox_video_receiver();
    remote.codecs.retain(|c| !is_rtx_mime(&c.mime_type));
    let consumer = consumer_parameters(&consumable, &remote, false).expect("compatible");
    assert_eq!(consumer.codecs.len(), 1);
    assert_eq!(consumer.encodings[0].rtx, None);
}

#[test]
fn rtcp_feedback_is_the_intersection() {
    let (_, _, consumable) = consumable_of(&chromium_video_producer());
    let mut remote = firefox_video_receiver();
    remote.codecs[0].rtcp_feedback = vec![
        RtcpFeedback::new("nack", "pli"),
        RtcpFeedback::new("nack", ""),
        RtcpFeedback::new("goog-lntf", ""),
    ];
    let consumer = consumer_parameters(&consumable, &remote, false).expect("compatible");
    assert_eq!(
        consumer.codecs[0].rtcp_feedback,
        vec![
            RtcpFeedback::new("nack", ""),
            RtcpFeedback::new("nack", "pli")
        ]
    );
}

#[test]
fn no_common_codec_is_an_error() {
    let (_, _, consumable) = consumable_of(&h264_baseline_producer());
    let vp8_only = RtpCapabilities {
        codecs: vec![cap(MediaKind::Video, mime::VP8, Some(96), &[])],
        header_extensions: Vec::new(),
    };
    assert!(!can_consume(&consumable, &vp8_only));
    let err = consumer_parameters(&consumable, &vp8_only, false).expect_err("nothing in common");
    assert_eq!(err.code, ErrorCode::UnsupportedCodec);
    assert!(err.message.contains("video/H264"), "{}", err.message);
    assert_eq!(
        consumer_parameters(&consumable, &vp8_only, true).map_err(|e| e.code),
        Err(ErrorCode::UnsupportedCodec)
    );

    // Same MIME type, other profile: still nothing in common.
    let main_only = RtpCapabilities {
        codecs: vec![cap(
            MediaKind::Video,
            mime::H264,
            Some(96),
            &h264_params("4d001f", 1),
        )],
        header_extensions: Vec::new(),
    };
    assert!(!can_consume(&consumable, &main_only));
}

#[test]
fn pipe_consumers_relay_the_consumable_unchanged() {
    let mut producer = chromium_video_producer();
    producer.encodings = ["q", "h"]
        .iter()
        .map(|rid| RtpEncodingParameters {
            rid: Some((*rid).into()),
            ..Default::default()
        })
        .collect();
    let (router, _, consumable) = consumable_of(&producer);
    let consumer = consumer_parameters(&consumable, &router, true).expect("same router caps");
    assert_eq!(consumer.codecs, consumable.codecs);
    assert_eq!(consumer.encodings, consumable.encodings);
    assert_eq!(consumer.header_extensions, consumable.header_extensions);
    assert_eq!(consumer.rtcp, consumable.rtcp);
}
