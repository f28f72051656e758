use super::*;
use switchboard_core::rtp_parameters::extension_uri;

const CHROMIUM_OFFER: &str = include_str!("../tests/sdp/chromium_offer.sdp");
const CHROMIUM_ANSWER: &str = include_str!("../tests/sdp/chromium_answer.sdp");
const CHROMIUM_SIMULCAST_OFFER: &str = include_str!("../tests/sdp/chromium_simulcast_offer.sdp");
const CHROMIUM_SIMULCAST_ANSWER: &str = include_str!("../tests/sdp/chromium_simulcast_answer.sdp");
const FIREFOX_OFFER: &str = include_str!("../tests/sdp/firefox_offer.sdp");
const FIREFOX_ANSWER: &str = include_str!("../tests/sdp/firefox_answer.sdp");
const WEBRTCBIN_OFFER: &str = include_str!("../tests/sdp/webrtcbin_offer.sdp");
const WEBRTCBIN_ANSWER: &str = include_str!("../tests/sdp/webrtcbin_answer.sdp");
const AIORTC_OFFER: &str = include_str!("../tests/sdp/aiortc_offer.sdp");
const AIORTC_ANSWER: &str = include_str!("../tests/sdp/aiortc_answer.sdp");

const ALL: [&str; 10] = [
    CHROMIUM_OFFER,
    CHROMIUM_ANSWER,
    CHROMIUM_SIMULCAST_OFFER,
    CHROMIUM_SIMULCAST_ANSWER,
    FIREFOX_OFFER,
    FIREFOX_ANSWER,
    WEBRTCBIN_OFFER,
    WEBRTCBIN_ANSWER,
    AIORTC_OFFER,
    AIORTC_ANSWER,
];

const CHROMIUM_CNAME: &str = "q7Lv2yXb0nT4Hs1e";
const CHROMIUM_STREAM: &str = "3f6c1b2e-8d4a-4c1e-9a7b-5e2d0c9f1a44";
const FIREFOX_CNAME: &str = "{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}";
const WEBRTCBIN_USER: &str = "user1850124877@host-6a1f0c3e";

// ---- helpers -------------------------------------------------------------------

fn sections(text: &str) -> Vec<MediaSection> {
    media_sections(&parse(text).expect("fixture parses"))
}

/// The publisher's m-line `index` with the server's answer to it.
fn produce(offer: &str, answer: &str, index: usize) -> Result<RtpParameters> {
    let offer = sections(offer);
    let answer = sections(answer);
    producer_parameters(&offer[index], &answer[index])
}

fn codec(section: &MediaSection, pt: u8) -> &RtpCodecParameters {
    section
        .codecs
        .iter()
        .find(|c| c.payload_type == pt)
        .unwrap_or_else(|| panic!("{} has no payload type {pt}", section.label()))
}

fn pts(codecs: &[RtpCodecParameters]) -> Vec<u8> {
    codecs.iter().map(|c| c.payload_type).collect()
}

fn params(entries: &[(&str, ParamValue)]) -> CodecParameters {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn fb(entries: &[(&str, &str)]) -> Vec<RtcpFeedback> {
    entries
        .iter()
        .map(|(kind, parameter)| RtcpFeedback::new(kind, parameter))
        .collect()
}

fn ext_ids(list: &[RtpHeaderExtensionParameters]) -> Vec<(u8, &str)> {
    list.iter().map(|e| (e.id, e.uri.as_str())).collect()
}

fn ext(id: u8, uri: &str) -> RtpHeaderExtensionParameters {
    RtpHeaderExtensionParameters {
        uri: uri.to_owned(),
        id,
        encrypt: false,
    }
}

fn h264(plid: &str, mode: Option<u32>) -> CodecParameters {
    let mut p = params(&[
        ("level-asymmetry-allowed", 1.into()),
        ("profile-level-id", plid.into()),
    ]);
    if let Some(mode) = mode {
        p.insert("packetization-mode".to_owned(), mode.into());
    }
    p
}

fn apt(pt: u32) -> CodecParameters {
    params(&[("apt", pt.into())])
}

/// Drops every line starting with `prefix`.
fn without_lines(text: &str, prefix: &str) -> String {
    text.split_inclusive('\n')
        .filter(|l| !l.starts_with(prefix))
        .collect()
}

// ---- Chromium --------------------------------------------------------------------

#[test]
fn chromium_offer_sections() {
    let sdp = parse(CHROMIUM_OFFER).expect("parses");
    assert_eq!(sdp.bundle_mids(), ["0", "1"]);
    assert!(!sdp.ice_lite());
    assert_eq!(sdp.media_count(), 2);
    let s = media_sections(&sdp);
    let (audio, video) = (&s[0], &s[1]);

    assert_eq!((audio.index, audio.line), (0, 8));
    assert_eq!(audio.mid.as_deref(), Some("0"));
    assert_eq!(audio.kind, Some(MediaKind::Audio));
    assert_eq!(audio.protocol, "UDP/TLS/RTP/SAVPF");
    assert_eq!(audio.port, 51820);
    assert!(!audio.rejected && !audio.bundle_only);
    assert_eq!(audio.direction, Direction::SendOnly);
    assert_eq!(pts(&audio.codecs), [111, 63, 9, 0, 8, 13, 110, 126]);
    assert_eq!(
        codec(audio, 111),
        &RtpCodecParameters {
            mime_type: mime::OPUS.to_owned(),
            payload_type: 111,
            clock_rate: 48_000,
            channels: Some(2),
            parameters: params(&[("minptime", 10.into()), ("useinbandfec", 1.into())]),
            rtcp_feedback: fb(&[("transport-cc", "")]),
        }
    );
    // RED's parameter is a bare payload-type list, kept as a key.
    assert_eq!(codec(audio, 63).mime_type, "audio/red");
    assert_eq!(
        codec(audio, 63).parameters,
        params(&[("111/111", "".into())])
    );
    assert_eq!(codec(audio, 9).mime_type, "audio/G722");
    assert_eq!(codec(audio, 9).channels, None);
    assert_eq!(codec(audio, 126).clock_rate, 8_000);
    assert_eq!(
        ext_ids(&audio.header_extensions),
        [
            (1, extension_uri::AUDIO_LEVEL),
            (2, extension_uri::ABS_SEND_TIME),
            (3, extension_uri::TRANSPORT_WIDE_CC),
            (4, extension_uri::MID),
        ]
    );
    assert!(audio.extension_directions.is_empty());
    assert_eq!((audio.ssrc, audio.rtx_ssrc), (Some(1_870_473_418), None));
    assert_eq!(
        audio.msid,
        Some((
            CHROMIUM_STREAM.to_owned(),
            "b7d1e0c2-6a3f-4f8e-a1c9-2d4b6e8f0a13".to_owned()
        ))
    );
    assert_eq!(audio.cname.as_deref(), Some(CHROMIUM_CNAME));
    assert_eq!(audio.ice_ufrag.as_deref(), Some("Xk3v"));
    assert_eq!(audio.ice_pwd.as_deref(), Some("Zq1bH0Lr8aUe6sPk3mQ9wYt2"));
    assert_eq!(audio.setup, Some(Setup::ActPass));
    assert_eq!(audio.fingerprints.len(), 1);
    assert_eq!(audio.fingerprints[0].algorithm, "sha-256");
    assert!(audio.fingerprints[0].value.starts_with("A5:4D:CA:18"));
    assert_eq!(audio.candidates.len(), 3);
    assert_eq!(
        audio.candidates[0],
        "candidate:1467250027 1 udp 2122260223 192.168.1.23 51820 typ host generation 0 \
         network-id 1 network-cost 10"
    );
    assert!(!audio.end_of_candidates);
    assert!(audio.rtcp_mux && audio.rtcp_rsize);

    assert_eq!(video.mid.as_deref(), Some("1"));
    assert_eq!(video.kind, Some(MediaKind::Video));
    assert_eq!(
        pts(&video.codecs),
        [
            96, 97, 103, 104, 107, 108, 109, 114, 115, 116, 117, 118, 39, 40, 98, 99, 100, 101, 45,
            46, 123, 124, 125
        ]
    );
    let vp8 = codec(video, 96);
    assert_eq!(
        (vp8.mime_type.as_str(), vp8.clock_rate),
        (mime::VP8, 90_000)
    );
    assert_eq!(vp8.channels, None);
    assert!(vp8.parameters.is_empty());
    assert_eq!(
        vp8.rtcp_feedback,
        fb(&[
            ("goog-remb", ""),
            ("transport-cc", ""),
            ("ccm", "fir"),
            ("nack", ""),
            ("nack", "pli")
        ])
    );
    let rtx = codec(video, 97);
    assert!(rtx.is_rtx());
    assert_eq!(rtx.mime_type, mime::RTX);
    assert_eq!(rtx.apt(), Some(96));
    assert_eq!(rtx.parameters, apt(96));
    assert_eq!(codec(video, 103).parameters, h264("42001f", Some(1)));
    assert_eq!(codec(video, 107).parameters, h264("42001f", Some(0)));
    assert_eq!(codec(video, 109).parameters, h264("42e01f", Some(1)));
    assert_eq!(codec(video, 115).parameters, h264("42e01f", Some(0)));
    assert_eq!(codec(video, 117).parameters, h264("4d001f", Some(1)));
    assert_eq!(codec(video, 39).parameters, h264("4d001f", Some(0)));
    assert_eq!(codec(video, 39).mime_type, mime::H264);
    assert_eq!(codec(video, 40).apt(), Some(39));
    assert_eq!(codec(video, 98).mime_type, mime::VP9);
    assert_eq!(
        codec(video, 98).parameters,
        params(&[("profile-id", 0.into())])
    );
    assert_eq!(
        codec(video, 100).parameters,
        params(&[("profile-id", 2.into())])
    );
    assert_eq!(codec(video, 45).mime_type, mime::AV1);
    assert_eq!(codec(video, 125).mime_type, "video/ulpfec");
    let ids = ext_ids(&video.header_extensions);
    assert!(ids.contains(&(4, extension_uri::MID)));
    assert!(ids.contains(&(3, extension_uri::TRANSPORT_WIDE_CC)));
    assert!(ids.contains(&(10, extension_uri::RID)));
    assert!(ids.contains(&(11, extension_uri::REPAIRED_RID)));
    assert!(ids.contains(&(13, extension_uri::VIDEO_ORIENTATION)));
    assert_eq!(ids.len(), 11);
    assert_eq!(video.ssrc, Some(2_231_067_811));
    assert_eq!(video.rtx_ssrc, Some(3_460_128_871));
    assert_eq!(
        video.ssrcs,
        [SsrcStream {
            ssrc: 2_231_067_811,
            rtx_ssrc: Some(3_460_128_871)
        }]
    );
    assert!(video.rids.is_empty());
    assert_eq!(
        video.msid.as_ref().map(|(_, track)| track.as_str()),
        Some("9a0e5c7d-1b3f-4d2e-8c6a-0f7e9d1b3a5c")
    );
}

#[test]
fn legacy_ssrc_msid_is_used_without_a_msid() {
    let text = without_lines(CHROMIUM_OFFER, "a=msid:");
    let s = sections(&text);
    assert_eq!(
        s[1].msid,
        Some((
            CHROMIUM_STREAM.to_owned(),
            "9a0e5c7d-1b3f-4d2e-8c6a-0f7e9d1b3a5c".to_owned()
        ))
    );
}

#[test]
fn chromium_audio_producer() {
    let rtp = produce(CHROMIUM_OFFER, CHROMIUM_ANSWER, 0).expect("accepted");
    assert_eq!(
        rtp,
        RtpParameters {
            mid: Some("0".to_owned()),
            codecs: vec![RtpCodecParameters {
                mime_type: mime::OPUS.to_owned(),
                payload_type: 111,
                clock_rate: 48_000,
                channels: Some(2),
                parameters: params(&[("minptime", 10.into()), ("useinbandfec", 1.into())]),
                rtcp_feedback: fb(&[("transport-cc", "")]),
            }],
            header_extensions: vec![
                ext(1, extension_uri::AUDIO_LEVEL),
                ext(3, extension_uri::TRANSPORT_WIDE_CC),
                ext(4, extension_uri::MID),
            ],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(1_870_473_418),
                ..RtpEncodingParameters::default()
            }],
            rtcp: RtcpParameters {
                cname: Some(CHROMIUM_CNAME.to_owned()),
                reduced_size: true,
            },
        }
    );
    assert!(rtp.media_codec().is_some_and(|c| c.payload_type == 111));
}

#[test]
fn chromium_video_producer() {
    let rtp = produce(CHROMIUM_OFFER, CHROMIUM_ANSWER, 1).expect("accepted");
    assert_eq!(rtp.mid.as_deref(), Some("1"));
    // Media codecs first, each RTX after them.
    assert_eq!(pts(&rtp.codecs), [96, 109, 97, 114]);
    assert_eq!(rtp.media_codec().map(|c| c.payload_type), Some(96));
    assert_eq!(rtp.rtx_codec_for(109).map(|c| c.payload_type), Some(114));
    // Feedback and parameters come from the answer.
    assert_eq!(
        rtp.codecs[0].rtcp_feedback,
        fb(&[
            ("goog-remb", ""),
            ("ccm", "fir"),
            ("nack", ""),
            ("nack", "pli"),
            ("transport-cc", "")
        ])
    );
    assert_eq!(rtp.codecs[1].parameters, h264("42e01f", Some(1)));
    assert_eq!(
        ext_ids(&rtp.header_extensions),
        [
            (3, extension_uri::TRANSPORT_WIDE_CC),
            (4, extension_uri::MID),
            (10, extension_uri::RID),
            (11, extension_uri::REPAIRED_RID),
        ]
    );
    assert_eq!(rtp.extension_id(extension_uri::MID), Some(4));
    assert_eq!(
        rtp.encodings,
        [RtpEncodingParameters {
            ssrc: Some(2_231_067_811),
            rtx: Some(RtxParameters {
                ssrc: 3_460_128_871
            }),
            ..RtpEncodingParameters::default()
        }]
    );
    assert_eq!(rtp.rtcp.cname.as_deref(), Some(CHROMIUM_CNAME));
}

#[test]
fn answer_without_rtx_gives_no_rtx_ssrc() {
    let answer = CHROMIUM_ANSWER.replace(
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 109 114",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 109",
    );
    let rtp = produce(CHROMIUM_OFFER, &answer, 1).expect("accepted");
    assert_eq!(pts(&rtp.codecs), [96, 109]);
    assert_eq!(rtp.encodings[0].ssrc, Some(2_231_067_811));
    assert_eq!(rtp.encodings[0].rtx, None);
}

#[test]
fn rtx_whose_codec_was_dropped_is_dropped() {
    let answer = CHROMIUM_ANSWER.replace(
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 109 114",
        "m=video 9 UDP/TLS/RTP/SAVPF 109 97",
    );
    let rtp = produce(CHROMIUM_OFFER, &answer, 1).expect("accepted");
    assert_eq!(pts(&rtp.codecs), [109]);
    assert_eq!(rtp.encodings[0].rtx, None);
}

#[test]
fn rejected_video_is_an_unsupported_codec_naming_the_m_line() {
    let answer = CHROMIUM_ANSWER.replace(
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 109 114",
        "m=video 0 UDP/TLS/RTP/SAVPF 96 97 109 114",
    );
    let e = produce(CHROMIUM_OFFER, &answer, 1).expect_err("rejected");
    assert_eq!(e.code, ErrorCode::UnsupportedCodec);
    assert!(e.message.contains("m-line 1 (mid 1, video)"), "{e}");
    assert!(e.message.contains("rejected"), "{e}");
}

#[test]
fn answer_with_only_rtx_is_an_unsupported_codec() {
    let answer = CHROMIUM_ANSWER.replace(
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 109 114",
        "m=video 9 UDP/TLS/RTP/SAVPF 97",
    );
    let e = produce(CHROMIUM_OFFER, &answer, 1).expect_err("no media codec");
    assert_eq!(e.code, ErrorCode::UnsupportedCodec);
    assert_eq!(
        e.message,
        "m-line 1 (mid 1, video): the answer accepted no media codec"
    );
}

#[test]
fn inactive_answer_is_an_unsupported_codec() {
    let answer = CHROMIUM_ANSWER.replace("a=recvonly", "a=inactive");
    let e = produce(CHROMIUM_OFFER, &answer, 0).expect_err("inactive");
    assert_eq!(e.code, ErrorCode::UnsupportedCodec);
    assert!(
        e.message.starts_with("m-line 0 (mid 0, audio) is inactive"),
        "{e}"
    );
}

#[test]
fn answer_payload_type_not_offered_is_invalid_sdp() {
    let answer = CHROMIUM_ANSWER.replace("a=rtpmap:109 H264/90000", "a=rtpmap:109 VP9/90000");
    let e = produce(CHROMIUM_OFFER, &answer, 1).expect_err("not offered");
    assert_eq!(e.code, ErrorCode::InvalidSdp);
    assert!(
        e.message
            .contains("payload type 109 (video/VP9/90000) was not offered"),
        "{e}"
    );
}

#[test]
fn mismatched_m_lines_are_refused() {
    let offer = sections(CHROMIUM_OFFER);
    let answer = sections(CHROMIUM_ANSWER);
    let e = producer_parameters(&offer[1], &answer[0]).expect_err("different m-lines");
    assert_eq!(e.code, ErrorCode::InvalidSdp);
    assert!(e.message.contains("m-line 0 (mid 0, audio)"), "{e}");
}

#[test]
fn chromium_simulcast_trickle_offer() {
    let s = sections(CHROMIUM_SIMULCAST_OFFER);
    let video = &s[0];
    // Trickle: sent before gathering, so port 9 and no candidates.
    assert_eq!(video.port, 9);
    assert!(!video.rejected);
    assert!(video.candidates.is_empty());
    assert!(!video.end_of_candidates);
    // Chromium writes no SSRCs for simulcast.
    assert_eq!(video.ssrc, None);
    assert!(video.ssrcs.is_empty());
    assert_eq!(video.rids, ["q", "h", "f"]);
    assert!(video.recv_rids.is_empty());

    let rtp = produce(CHROMIUM_SIMULCAST_OFFER, CHROMIUM_SIMULCAST_ANSWER, 0).expect("ok");
    let rids: Vec<_> = rtp.encodings.iter().map(|e| e.rid.as_deref()).collect();
    assert_eq!(rids, [Some("q"), Some("h"), Some("f")]);
    assert!(
        rtp.encodings
            .iter()
            .all(|e| e.ssrc.is_none() && e.rtx.is_none())
    );
    assert_eq!(rtp.extension_id(extension_uri::RID), Some(10));
    assert_eq!(pts(&rtp.codecs), [96, 97]);
}

#[test]
fn simulcast_declined_by_the_answer_gives_one_encoding() {
    let answer = without_lines(CHROMIUM_SIMULCAST_ANSWER, "a=rid:");
    let rtp = produce(CHROMIUM_SIMULCAST_OFFER, &answer, 0).expect("ok");
    assert_eq!(rtp.encodings, [RtpEncodingParameters::default()]);

    // Only the layers the answer accepts are produced.
    let answer = without_lines(CHROMIUM_SIMULCAST_ANSWER, "a=rid:h");
    let rtp = produce(CHROMIUM_SIMULCAST_OFFER, &answer, 0).expect("ok");
    let rids: Vec<_> = rtp.encodings.iter().map(|e| e.rid.as_deref()).collect();
    assert_eq!(rids, [Some("q"), Some("f")]);
}

// ---- Firefox ---------------------------------------------------------------------

#[test]
fn firefox_offer_sections() {
    let sdp = parse(FIREFOX_OFFER).expect("parses");
    assert_eq!(sdp.bundle_mids(), ["0", "1", "2"]);
    let s = media_sections(&sdp);
    let (audio, video, recv) = (&s[0], &s[1], &s[2]);

    // Direction and fingerprint are written once, at session level.
    assert_eq!(audio.direction, Direction::SendOnly);
    assert_eq!(video.direction, Direction::SendOnly);
    assert_eq!(recv.direction, Direction::RecvOnly);
    assert!(audio.fingerprints[0].value.starts_with("34:60:BE:31"));
    assert_eq!(recv.fingerprints, audio.fingerprints);
    assert_eq!(audio.ice_ufrag.as_deref(), Some("3b9e1f2a"));
    assert_eq!(
        audio.ice_pwd.as_deref(),
        Some("6a1f0c3e9b2d4a8e7f5c1b0d3e2a9f84")
    );

    // fmtp written before rtpmap.
    assert_eq!(pts(&audio.codecs), [109, 9, 0, 8, 101]);
    let opus = codec(audio, 109);
    assert_eq!(
        (opus.mime_type.as_str(), opus.channels),
        (mime::OPUS, Some(2))
    );
    assert_eq!(
        opus.parameters,
        params(&[
            ("maxplaybackrate", 48_000.into()),
            ("stereo", 1.into()),
            ("useinbandfec", 1.into())
        ])
    );
    assert_eq!(codec(audio, 9).channels, Some(1));
    assert_eq!(codec(audio, 101).mime_type, "audio/telephone-event");
    assert_eq!(codec(audio, 101).parameters, params(&[("0-15", "".into())]));

    assert_eq!(
        ext_ids(&audio.header_extensions),
        [
            (1, extension_uri::AUDIO_LEVEL),
            (2, "urn:ietf:params:rtp-hdrext:csrc-audio-level"),
            (3, extension_uri::MID),
        ]
    );
    assert_eq!(audio.extension_direction(2), ExtensionDirection::RecvOnly);
    assert_eq!(audio.extension_direction(3), ExtensionDirection::SendRecv);
    assert_eq!(video.extension_direction(6), ExtensionDirection::RecvOnly);
    assert_eq!(
        video.header_extensions[4].uri,
        extension_uri::TRANSPORT_WIDE_CC
    );
    assert_eq!(video.header_extensions[4].id, 7);

    // Braces removed from msid; the CNAME keeps them, since RTCP carries it verbatim.
    assert_eq!(
        audio.msid,
        Some((
            "5a8c3e1f-2b4d-4e6a-9c7b-1d3f5e7a9b2c".to_owned(),
            "e1d2c3b4-a596-4788-9a0b-1c2d3e4f5a6b".to_owned()
        ))
    );
    assert_eq!(audio.cname.as_deref(), Some(FIREFOX_CNAME));

    // Component-2 candidates are kept as written.
    assert_eq!(audio.candidates.len(), 4);
    assert!(audio.candidates[2].starts_with("candidate:0 2 UDP 2122252542"));
    assert!(audio.end_of_candidates);

    // rtcp-fb lines for 121 and 103 are left over from removed codecs and ignored.
    assert_eq!(pts(&video.codecs), [120, 124, 126, 127, 97, 98, 105, 106]);
    assert_eq!(
        codec(video, 120).parameters,
        params(&[("max-fs", 12_288.into()), ("max-fr", 60.into())])
    );
    assert_eq!(codec(video, 126).parameters, h264("42e01f", Some(1)));
    // Firefox's mode-0 entry has no packetization-mode at all.
    assert_eq!(codec(video, 97).parameters, h264("42e01f", None));
    assert_eq!(codec(video, 105).parameters, h264("42001f", Some(1)));
    assert_eq!(codec(video, 126).rtcp_feedback.len(), 5);
    assert_eq!(codec(video, 98).apt(), Some(97));

    // The FID group follows the ssrc lines; its first SSRC is still the primary.
    assert_eq!(video.ssrc, Some(3_735_928_559));
    assert_eq!(video.rtx_ssrc, Some(305_419_896));
    assert_eq!(video.ssrcs.len(), 1);

    // Firefox declares an SSRC even on a recvonly m-line.
    assert_eq!(recv.ssrc, Some(1_122_334_455));
    assert_eq!(recv.msid, None);
}

#[test]
fn firefox_producers() {
    let audio = produce(FIREFOX_OFFER, FIREFOX_ANSWER, 0).expect("audio accepted");
    assert_eq!(pts(&audio.codecs), [109]);
    // The csrc-audio-level extension is recvonly for Firefox: it never sends it.
    assert_eq!(
        ext_ids(&audio.header_extensions),
        [(1, extension_uri::AUDIO_LEVEL), (3, extension_uri::MID)]
    );
    assert_eq!(audio.encodings[0].ssrc, Some(2_957_318_864));
    assert_eq!(audio.rtcp.cname.as_deref(), Some(FIREFOX_CNAME));
    // Firefox writes no rtcp-rsize on audio.
    assert!(!audio.rtcp.reduced_size);

    let video = produce(FIREFOX_OFFER, FIREFOX_ANSWER, 1).expect("video accepted");
    assert_eq!(pts(&video.codecs), [120, 126, 124, 127]);
    assert_eq!(
        ext_ids(&video.header_extensions),
        [
            (3, extension_uri::MID),
            (7, extension_uri::TRANSPORT_WIDE_CC)
        ]
    );
    assert_eq!(
        video.encodings,
        [RtpEncodingParameters {
            ssrc: Some(3_735_928_559),
            rtx: Some(RtxParameters { ssrc: 305_419_896 }),
            ..RtpEncodingParameters::default()
        }]
    );

    // The third m-line only receives: nothing to produce.
    let e = produce(FIREFOX_OFFER, FIREFOX_ANSWER, 2).expect_err("recvonly");
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert!(
        e.message.starts_with("m-line 2 (mid 2, video) is recvonly"),
        "{e}"
    );

    let answer = parse(FIREFOX_ANSWER).expect("parses");
    assert!(answer.ice_lite());
    assert_eq!(
        accepted_mids(&answer),
        [
            ("0".to_owned(), true),
            ("1".to_owned(), true),
            ("2".to_owned(), false)
        ]
    );
}

/// Firefox simulcast: three rids and three FID pairs, no SIM group.
const FIREFOX_SIMULCAST: &str = "v=0\r\n\
    o=mozilla...THIS_IS_SDPARTA-153.0.1 8423145396847321544 0 IN IP4 0.0.0.0\r\n\
    s=-\r\n\
    t=0 0\r\n\
    a=sendonly\r\n\
    a=group:BUNDLE 0\r\n\
    m=video 9 UDP/TLS/RTP/SAVPF 120 124\r\n\
    c=IN IP4 0.0.0.0\r\n\
    a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
    a=extmap:8 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
    a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n\
    a=fmtp:124 apt=120\r\n\
    a=mid:0\r\n\
    a=msid:{5a8c3e1f-2b4d-4e6a-9c7b-1d3f5e7a9b2c} {0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e}\r\n\
    a=rid:q send\r\n\
    a=rid:h send\r\n\
    a=rid:f send\r\n\
    a=rtcp-mux\r\n\
    a=rtpmap:120 VP8/90000\r\n\
    a=rtpmap:124 rtx/90000\r\n\
    a=setup:actpass\r\n\
    a=simulcast:send q;h;f\r\n\
    a=ssrc:1001 cname:{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}\r\n\
    a=ssrc:1002 cname:{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}\r\n\
    a=ssrc:1003 cname:{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}\r\n\
    a=ssrc:2001 cname:{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}\r\n\
    a=ssrc:2002 cname:{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}\r\n\
    a=ssrc:2003 cname:{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}\r\n\
    a=ssrc-group:FID 1001 2001\r\n\
    a=ssrc-group:FID 1002 2002\r\n\
    a=ssrc-group:FID 1003 2003\r\n";

#[test]
fn firefox_simulcast_ssrcs() {
    let s = sections(FIREFOX_SIMULCAST);
    let video = &s[0];
    assert_eq!((video.ssrc, video.rtx_ssrc), (Some(1001), Some(2001)));
    assert_eq!(
        video.ssrcs,
        [
            SsrcStream {
                ssrc: 1001,
                rtx_ssrc: Some(2001)
            },
            SsrcStream {
                ssrc: 1002,
                rtx_ssrc: Some(2002)
            },
            SsrcStream {
                ssrc: 1003,
                rtx_ssrc: Some(2003)
            },
        ]
    );
    assert_eq!(video.rids, ["q", "h", "f"]);

    let answer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 120 124\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
        a=rtpmap:120 VP8/90000\r\na=rtpmap:124 rtx/90000\r\na=fmtp:124 apt=120\r\n\
        a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
        a=extmap:8 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
        a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n\
        a=recvonly\r\n";
    let rtp = producer_parameters(&s[0], &sections(answer)[0]).expect("ok");
    let rids: Vec<_> = rtp.encodings.iter().map(|e| e.rid.as_deref()).collect();
    assert_eq!(rids, [Some("q"), Some("h"), Some("f")]);
    assert!(rtp.encodings.iter().all(|e| e.ssrc.is_none()));
    assert_eq!(
        ext_ids(&rtp.header_extensions),
        [(3, extension_uri::MID), (8, extension_uri::RID)]
    );
}

// ---- webrtcbin -------------------------------------------------------------------

#[test]
fn webrtcbin_offer_sections() {
    let sdp = parse(WEBRTCBIN_OFFER).expect("parses");
    assert_eq!(sdp.bundle_mids(), ["video0", "audio1"]);
    let s = media_sections(&sdp);
    let (video, audio) = (&s[0], &s[1]);

    assert_eq!(video.mid.as_deref(), Some("video0"));
    assert_eq!(video.kind, Some(MediaKind::Video));
    assert_eq!(audio.mid.as_deref(), Some("audio1"));
    assert_eq!(audio.kind, Some(MediaKind::Audio));

    // Port 9 despite candidates; take addresses from the candidates.
    assert_eq!(video.port, 9);
    assert_eq!(video.candidates.len(), 5);
    assert!(video.candidates[3].contains("fe80::3c1e:7aff:fe2b:9d41"));
    assert!(video.candidates[4].ends_with("tcptype passive"));
    // max-bundle: port 0 plus bundle-only is not a rejection.
    assert_eq!(audio.port, 0);
    assert!(audio.bundle_only);
    assert!(!audio.rejected);
    assert!(audio.candidates.is_empty());

    let ufrag = "Hq9+Zt3/Lp0aXw7Rb2+Vc5/Nd8Ke1Gm4";
    assert_eq!(video.ice_ufrag.as_deref(), Some(ufrag));
    assert_eq!(audio.ice_ufrag.as_deref(), Some(ufrag));
    assert_eq!(ufrag.len(), 32);

    assert!(video.header_extensions.is_empty());
    assert_eq!(pts(&video.codecs), [96, 97]);
    // msid only as a legacy ssrc attribute.
    assert_eq!(
        video.msid,
        Some((WEBRTCBIN_USER.to_owned(), "webrtctransceiver0".to_owned()))
    );
    assert_eq!(
        audio.msid,
        Some((WEBRTCBIN_USER.to_owned(), "webrtctransceiver1".to_owned()))
    );
    assert_eq!(video.cname.as_deref(), Some(WEBRTCBIN_USER));
    assert_eq!(
        (video.ssrc, video.rtx_ssrc),
        (Some(1_509_887_211), Some(2_712_905_433))
    );

    // GStreamer writes OPUS in capitals; the MIME type is the canonical spelling.
    let opus = codec(audio, 111);
    assert_eq!(opus.mime_type, mime::OPUS);
    assert_eq!(opus.channels, Some(2));
    assert_eq!(
        opus.parameters,
        params(&[
            ("sprop-maxcapturerate", 48_000.into()),
            ("sprop-stereo", 0.into())
        ])
    );
}

#[test]
fn webrtcbin_producers() {
    let video = produce(WEBRTCBIN_OFFER, WEBRTCBIN_ANSWER, 0).expect("video accepted");
    assert_eq!(video.mid.as_deref(), Some("video0"));
    assert_eq!(pts(&video.codecs), [96, 97]);
    assert!(video.header_extensions.is_empty());
    assert_eq!(
        video.encodings,
        [RtpEncodingParameters {
            ssrc: Some(1_509_887_211),
            rtx: Some(RtxParameters {
                ssrc: 2_712_905_433
            }),
            ..RtpEncodingParameters::default()
        }]
    );
    assert_eq!(video.rtcp.cname.as_deref(), Some(WEBRTCBIN_USER));

    // The bundle-only m-line produces like any other.
    let audio = produce(WEBRTCBIN_OFFER, WEBRTCBIN_ANSWER, 1).expect("audio accepted");
    assert_eq!(audio.mid.as_deref(), Some("audio1"));
    assert_eq!(pts(&audio.codecs), [111]);
    assert_eq!(audio.encodings[0].ssrc, Some(3_094_017_365));
    assert_eq!(audio.encodings[0].rtx, None);
}

#[test]
fn webrtcbin_subscriber_answer() {
    // webrtcbin answering a server offer: no extmaps, the second bundled m-line at port
    // 0 with bundle-only (accepted), the third refused with a bare port 0.
    let answer = "v=0\r\n\
        o=- 3116493740587244510 0 IN IP4 0.0.0.0\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=ice-options:trickle\r\n\
        a=group:BUNDLE 0 1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=setup:active\r\n\
        a=ice-ufrag:Pz4/Wq8+Rt1eYu5iOp9aSd2fGh6jKl3z\r\n\
        a=ice-pwd:Xc7+Vb0nM4qWe8/rTy2uIo6pAs1dFg5h\r\n\
        a=rtcp-mux\r\n\
        a=rtcp-rsize\r\n\
        a=recvonly\r\n\
        a=rtpmap:96 VP8/90000\r\n\
        a=rtcp-fb:96 nack pli\r\n\
        a=mid:0\r\n\
        m=audio 0 UDP/TLS/RTP/SAVPF 111\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=bundle-only\r\n\
        a=recvonly\r\n\
        a=rtpmap:111 OPUS/48000/2\r\n\
        a=mid:1\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 96\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=inactive\r\n\
        a=mid:2\r\n";
    let sdp = parse(answer).expect("parses");
    assert_eq!(
        accepted_mids(&sdp),
        [
            ("0".to_owned(), true),
            ("1".to_owned(), true),
            ("2".to_owned(), false)
        ]
    );
    let s = media_sections(&sdp);
    assert!(s.iter().all(|m| m.header_extensions.is_empty()));
    assert_eq!(s[0].setup, Some(Setup::Active));
    assert_eq!(s[0].direction, Direction::RecvOnly);
}

// ---- aiortc ----------------------------------------------------------------------

#[test]
fn aiortc_offer_sections() {
    let s = sections(AIORTC_OFFER);
    let (audio, video) = (&s[0], &s[1]);
    assert_eq!(audio.direction, Direction::SendRecv);
    assert_eq!(pts(&audio.codecs), [96, 0, 8]);
    let opus = codec(audio, 96);
    assert_eq!(
        (opus.mime_type.as_str(), opus.clock_rate, opus.channels),
        (mime::OPUS, 48_000, Some(2))
    );
    assert!(opus.parameters.is_empty());
    assert!(opus.rtcp_feedback.is_empty());
    assert_eq!(codec(audio, 0).mime_type, "audio/PCMU");
    assert_eq!(audio.extension_id_of(extension_uri::MID), Some(1));
    assert_eq!(video.extension_id_of(extension_uri::MID), Some(1));
    assert_eq!(
        audio.extension_id_of(extension_uri::TRANSPORT_WIDE_CC),
        None
    );
    assert_eq!(
        video.extension_id_of(extension_uri::TRANSPORT_WIDE_CC),
        None
    );
    let algorithms: Vec<_> = audio
        .fingerprints
        .iter()
        .map(|f| f.algorithm.as_str())
        .collect();
    assert_eq!(algorithms, ["sha-256", "sha-384", "sha-512"]);
    assert_eq!(audio.ice_ufrag.as_deref(), Some("oQ3n"));
    assert_eq!(audio.ice_pwd.as_ref().map(String::len), Some(22));
    assert!(audio.end_of_candidates);
    assert_eq!(audio.candidates.len(), 2);
    assert_eq!(audio.ssrc, Some(2_403_915_126));
    assert_eq!(
        audio.msid.as_ref().map(|(stream, _)| stream.as_str()),
        Some("8e0a3c1d-5b7f-4e2a-9d6c-0f1e2d3c4b5a")
    );

    assert_eq!(pts(&video.codecs), [97, 98, 99, 100, 101, 102]);
    assert_eq!(codec(video, 99).parameters, h264("42001f", Some(1)));
    assert_eq!(codec(video, 101).parameters, h264("42e01f", Some(1)));
    assert_eq!(
        codec(video, 97).rtcp_feedback,
        fb(&[("nack", ""), ("nack", "pli"), ("goog-remb", "")])
    );
    assert_eq!(
        (video.ssrc, video.rtx_ssrc),
        (Some(1_096_452_871), Some(3_581_766_203))
    );
}

#[test]
fn aiortc_producers() {
    let audio = produce(AIORTC_OFFER, AIORTC_ANSWER, 0).expect("audio accepted");
    assert_eq!(pts(&audio.codecs), [96]);
    assert_eq!(
        ext_ids(&audio.header_extensions),
        [(1, extension_uri::MID), (2, extension_uri::AUDIO_LEVEL)]
    );
    assert_eq!(audio.extension_id(extension_uri::TRANSPORT_WIDE_CC), None);

    let video = produce(AIORTC_OFFER, AIORTC_ANSWER, 1).expect("video accepted");
    assert_eq!(pts(&video.codecs), [101, 102]);
    assert_eq!(video.codecs[0].parameters, h264("42e01f", Some(1)));
    assert_eq!(
        video.encodings[0].rtx,
        Some(RtxParameters {
            ssrc: 3_581_766_203
        })
    );
    assert_eq!(
        video.rtcp.cname.as_deref(),
        Some("7d1e5a3c-9f0b-4c2d-8e6a-1b3c5d7e9f0a")
    );
}

// ---- details ---------------------------------------------------------------------

impl MediaSection {
    fn extension_id_of(&self, uri: &str) -> Option<u8> {
        self.header_extensions
            .iter()
            .find(|e| e.uri == uri)
            .map(|e| e.id)
    }
}

#[test]
fn line_endings_do_not_matter() {
    for text in ALL {
        let lf = text.replace("\r\n", "\n");
        assert_ne!(lf, text);
        assert_eq!(sections(&lf), sections(text));
    }
}

#[test]
fn fmtp_values() {
    let mut p = CodecParameters::new();
    fmtp_parameters(
        "packetization-mode=1; profile-level-id=420029 ;sprop-parameter-sets=Z0IAH5WoFAFuQA==,aM48gA==;x=007;;flag",
        &mut p,
    );
    assert_eq!(
        p,
        params(&[
            ("packetization-mode", 1.into()),
            // Hexadecimal even when it has only digits.
            ("profile-level-id", "420029".into()),
            // Base64 keeps its '=' padding.
            ("sprop-parameter-sets", "Z0IAH5WoFAFuQA==,aM48gA==".into()),
            // Leading zeros would be lost as a number.
            ("x", "007".into()),
            ("flag", "".into()),
        ])
    );
}

#[test]
fn static_payload_types_session_extmaps_and_wildcard_feedback() {
    let text = "v=0\r\n\
        o=- 1 1 IN IP4 0.0.0.0\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=extmap:5 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
        m=audio 5004 RTP/AVPF 0 8 97\r\n\
        c=IN IP4 198.51.100.7\r\n\
        a=extmap:1 urn:ietf:params:rtp-hdrext:encrypt urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
        a=rtcp-fb:* nack\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=mid:data\r\n\
        a=sctp-port:5000\r\n\
        a=max-message-size:262144\r\n";
    let s = sections(text);
    let audio = &s[0];
    // 97 has no rtpmap and is not static: it is left out.
    assert_eq!(pts(&audio.codecs), [0, 8]);
    assert_eq!(
        (
            codec(audio, 0).mime_type.as_str(),
            codec(audio, 0).clock_rate
        ),
        ("audio/PCMU", 8_000)
    );
    assert_eq!(codec(audio, 8).rtcp_feedback, fb(&[("nack", "")]));
    assert_eq!(
        audio.header_extensions,
        [
            RtpHeaderExtensionParameters {
                uri: extension_uri::AUDIO_LEVEL.to_owned(),
                id: 1,
                encrypt: true
            },
            ext(5, extension_uri::MID),
        ]
    );
    assert_eq!(audio.mid, None);
    assert_eq!(audio.label(), "m-line 0 (audio)");
    assert_eq!(audio.direction, Direction::SendRecv);

    let data = &s[1];
    assert_eq!(data.kind, None);
    assert!(data.codecs.is_empty());
    assert_eq!(data.mid.as_deref(), Some("data"));
    let e = producer_parameters(data, data).expect_err("not media");
    assert_eq!(e.code, ErrorCode::InvalidParams);
}

#[test]
fn direction_helpers() {
    assert!(Direction::SendRecv.sends() && Direction::SendRecv.receives());
    assert!(Direction::SendOnly.sends() && !Direction::SendOnly.receives());
    assert!(!Direction::RecvOnly.sends() && Direction::RecvOnly.receives());
    assert!(!Direction::Inactive.sends() && !Direction::Inactive.receives());
    assert_eq!(Direction::RecvOnly.to_string(), "recvonly");
}

// ---- errors ----------------------------------------------------------------------

const BASE: [&str; 16] = [
    "v=0",
    "o=- 1 1 IN IP4 0.0.0.0",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "a=ice-options:trickle",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
    "c=IN IP4 0.0.0.0",
    "a=mid:0",
    "a=rtpmap:96 VP8/90000",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtcp-fb:96 nack pli",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=ssrc-group:FID 1 2",
    "a=ssrc:1 cname:x",
];

/// BASE with line `number` (from 1) replaced.
fn with_line(number: usize, text: &str) -> String {
    let mut lines = BASE.to_vec();
    lines[number - 1] = text;
    lines.join("\r\n") + "\r\n"
}

fn parse_error(text: &str) -> Error {
    let e = parse(text).expect_err("must be rejected");
    assert_eq!(e.code, ErrorCode::InvalidSdp, "{e}");
    e
}

/// Replacing line `number` with `text` fails naming that line and `reason`.
fn assert_line_error(number: usize, text: &str, reason: &str) {
    let e = parse_error(&with_line(number, text));
    let prefix = format!("line {number}: {text:?}: ");
    assert!(e.message.starts_with(&prefix), "{e}");
    assert!(e.message.contains(reason), "{e}");
}

#[test]
fn base_is_valid() {
    let s = sections(&with_line(1, "v=0"));
    assert_eq!(s[0].ssrc, Some(1));
}

#[test]
fn bad_port_names_its_line() {
    let e = parse_error(&with_line(7, "m=video x UDP/TLS/RTP/SAVPF 96 97"));
    assert_eq!(
        e.message,
        "line 7: \"m=video x UDP/TLS/RTP/SAVPF 96 97\": invalid port \"x\""
    );
    assert_eq!(e.to_string(), format!("invalid_sdp: {}", e.message));
}

#[test]
fn line_level_mistakes_name_their_line() {
    let cases: &[(usize, &str, &str)] = &[
        (1, "v=1", "version 0"),
        (2, "hello world", "expected <type>=<value>"),
        (2, "O=- 1 1 IN IP4 0.0.0.0", "expected <type>=<value>"),
        (6, " a=ice-options:trickle", "expected <type>=<value>"),
        (
            7,
            "m=video 9 UDP/TLS/RTP/SAVPF 96 abc",
            "invalid payload type \"abc\"",
        ),
        (
            7,
            "m=video 9 UDP/TLS/RTP/SAVPF 96 128",
            "invalid payload type \"128\"",
        ),
        (7, "m=video 9", "expected \"m=<media>"),
        (7, "m=video 70000 UDP/TLS/RTP/SAVPF 96 97", "invalid port"),
        (
            7,
            "m=video 9/x UDP/TLS/RTP/SAVPF 96 97",
            "invalid port count",
        ),
        (
            7,
            "m=telepathy 9 UDP/TLS/RTP/SAVPF 96 97",
            "unknown media \"telepathy\"",
        ),
        (7, "m=video 9 UDP//SAVPF 96 97", "invalid protocol"),
        (9, "a=mid:", "empty mid"),
        (
            10,
            "a=rtpmap:96 VP8/ninety",
            "invalid clock rate \"ninety\"",
        ),
        (10, "a=rtpmap:96 VP8", "invalid clock rate"),
        (10, "a=rtpmap:300 VP8/90000", "invalid payload type \"300\""),
        (10, "a=rtpmap:96 /90000", "missing encoding name"),
        (12, "a=fmtp:x apt=96", "invalid payload type \"x\""),
        (13, "a=rtcp-fb:9x nack", "invalid payload type \"9x\""),
        (13, "a=rtcp-fb:96", "missing feedback type"),
        (
            14,
            "a=extmap:0 urn:ietf:params:rtp-hdrext:sdes:mid",
            "invalid extension id",
        ),
        (
            14,
            "a=extmap:256 urn:ietf:params:rtp-hdrext:sdes:mid",
            "invalid extension id",
        ),
        (
            14,
            "a=extmap:4/sideways urn:ietf:params:rtp-hdrext:sdes:mid",
            "unknown extension direction",
        ),
        (14, "a=extmap:4", "missing URI"),
        (15, "a=ssrc-group:FID 1", "exactly two"),
        (15, "a=ssrc-group:FID 1 two", "invalid SSRC \"two\""),
        (16, "a=ssrc:-1 cname:x", "invalid SSRC \"-1\""),
        (16, "a=ssrc:4294967296 cname:x", "invalid SSRC"),
        (16, "a=rid:q sideways", "direction must be send or recv"),
        (16, "a=setup:sometimes", "unknown setup role"),
        (
            16,
            "a=candidate:1 1 udp 2130706431 192.0.2.1 port typ host",
            "invalid port",
        ),
        (16, "a=candidate:1 1 udp", "too few fields"),
        (5, "a=extmap:15/bogus urn:x", "unknown extension direction"),
    ];
    for (number, text, reason) in cases {
        assert_line_error(*number, text, reason);
    }
}

#[test]
fn audio_channel_count_is_checked() {
    let mut lines = BASE.to_vec();
    lines[6] = "m=audio 9 UDP/TLS/RTP/SAVPF 96 97";
    lines[9] = "a=rtpmap:96 opus/48000/two";
    let e = parse_error(&lines.join("\n"));
    assert!(
        e.message.starts_with(
            "line 10: \"a=rtpmap:96 opus/48000/two\": payload type 96: invalid channel count"
        ),
        "{e}"
    );
}

#[test]
fn duplicate_mid_names_both_lines() {
    let text = with_line(16, "a=mid:0");
    let e = parse_error(&text);
    assert_eq!(
        e.message,
        "line 16: \"a=mid:0\": duplicate mid \"0\" (already on line 9)"
    );
}

#[test]
fn parser_errors_name_their_line() {
    // These pass the line check and are refused by rtc-sdp; the line it stopped on
    // is named.
    let e = parse_error(&with_line(8, "c=IN IP9 0.0.0.0"));
    assert!(
        e.message.starts_with("line 8: \"c=IN IP9 0.0.0.0\": "),
        "{e}"
    );
    let e = parse_error(&with_line(8, "x=unknown"));
    assert!(e.message.starts_with("line 8: \"x=unknown\": "), "{e}");
    let e = parse_error(&with_line(2, "o=- one 1 IN IP4 0.0.0.0"));
    assert!(e.message.starts_with("line 2: "), "{e}");
    // Without t=, the first attribute is out of place.
    let e = parse_error(&with_line(4, "b=AS:30"));
    assert!(
        e.message.starts_with("line 5: \"a=group:BUNDLE 0\": "),
        "{e}"
    );
    // The same with \n endings.
    let e = parse_error(&with_line(8, "x=unknown").replace("\r\n", "\n"));
    assert!(e.message.starts_with("line 8: \"x=unknown\": "), "{e}");
}

#[test]
fn truncated_sdp_names_its_last_line() {
    let e = parse_error("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n\r\n");
    assert!(
        e.message
            .starts_with("line 3: \"s=-\": the SDP ends after this line"),
        "{e}"
    );
}

#[test]
fn non_sdp_input_is_invalid_sdp() {
    for text in [
        "",
        "   \r\n\n",
        "hello world",
        "{\"type\":\"offer\",\"sdp\":\"v=0\"}",
        "o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\n",
        "v=0",
        "\u{0}\u{1}\u{ff}binary\u{7f}",
    ] {
        let e = parse_error(text);
        assert!(!e.message.is_empty());
    }
    assert_eq!(parse_error("").message, "the SDP is empty");
    assert!(
        parse_error("hello")
            .message
            .starts_with("line 1: \"hello\"")
    );
}

#[test]
fn long_lines_are_quoted_briefly() {
    let long = format!("a=rtpmap:96 VP8/{}", "9".repeat(500));
    let e = parse_error(&with_line(10, &long));
    assert!(
        e.message.starts_with("line 10: \"a=rtpmap:96 VP8/999"),
        "{e}"
    );
    assert!(e.message.contains('…'), "{e}");
    assert!(e.message.len() < 300, "{e}");
}

// ---- robustness ------------------------------------------------------------------

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

/// Makes a plausible mistake in `text`.
#[test]
fn oversized_offers_are_refused_before_parsing() {
    let limits = SdpLimits {
        max_bytes: 64 * 1024,
        max_media_sections: 4,
        max_ssrc_lines: 8,
    };
    assert!(check_limits(CHROMIUM_OFFER, limits).is_ok());
    assert!(check_limits(FIREFOX_OFFER, limits).is_ok());
    let big = format!("{CHROMIUM_OFFER}{}", "a=x\r\n".repeat(20_000));
    let err = check_limits(&big, limits).unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    assert!(err.message.contains("limits.max_sdp_bytes"), "{err}");
    let many_m = format!(
        "{CHROMIUM_OFFER}{}",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".repeat(5)
    );
    let err = check_limits(&many_m, limits).unwrap_err();
    assert!(
        err.message.contains("limits.max_sdp_media_sections"),
        "{err}"
    );
    let many_ssrc = format!("{CHROMIUM_OFFER}{}", "a=ssrc:1 cname:x\r\n".repeat(9));
    let err = check_limits(&many_ssrc, limits).unwrap_err();
    assert!(err.message.contains("limits.max_sdp_ssrc_lines"), "{err}");
    assert!(err.message.starts_with("line "), "{err}");
}

#[test]
fn real_stacks_offers_pass_the_webrtc_offer_check() {
    for (stack, offer) in [
        ("chromium", CHROMIUM_OFFER),
        ("chromium simulcast", CHROMIUM_SIMULCAST_OFFER),
        ("firefox", FIREFOX_OFFER),
        ("webrtcbin", WEBRTCBIN_OFFER),
        ("aiortc", AIORTC_OFFER),
    ] {
        let sdp = parse(offer).unwrap();
        assert!(
            check_webrtc_offer(&sdp).is_ok(),
            "{stack}: {:?}",
            check_webrtc_offer(&sdp)
        );
    }
}

#[test]
fn broken_offers_are_refused_naming_the_m_line() {
    let without = |prefix: &str| -> String {
        CHROMIUM_OFFER
            .split_inclusive('\n')
            .filter(|l| !l.starts_with(prefix))
            .collect()
    };
    for (broken, expected) in [
        (without("a=rtpmap:"), "has no a=rtpmap"),
        (without("a=ice-ufrag:"), "no a=ice-ufrag"),
        (without("a=ice-pwd:"), "no a=ice-pwd"),
        (without("a=fingerprint:"), "no a=fingerprint"),
        (without("a=mid:"), "no a=mid"),
    ] {
        let err = check_webrtc_offer(&parse(&broken).unwrap()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidSdp);
        assert!(err.message.contains(expected), "{err}");
        assert!(err.message.starts_with("line "), "{err}");
    }
}

#[test]
fn bundled_m_lines_with_different_ice_credentials_are_refused() {
    // The second m-line's credentials differ from the first's in the same BUNDLE group.
    let mut seen = 0;
    let conflicting: String = CHROMIUM_OFFER
        .split_inclusive('\n')
        .map(|l| {
            if l.starts_with("a=ice-ufrag:") {
                seen += 1;
                if seen == 2 {
                    return "a=ice-ufrag:other\r\n".to_owned();
                }
            }
            l.to_owned()
        })
        .collect();
    assert_eq!(seen, 2, "the fixture has an ice-ufrag per m-line");
    let err = check_webrtc_offer(&parse(&conflicting).unwrap()).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSdp);
    assert!(err.message.contains("ICE credentials differ"), "{err}");
}

fn mutate(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    const BYTES: &[u8] = b"0123456789 :=/-*;{}\r\n\t\0\xffam";
    let mut out = text.to_vec();
    match rng.below(7) {
        0 if !out.is_empty() => {
            let at = rng.below(out.len());
            out[at] = BYTES[rng.below(BYTES.len())];
        }
        1 => out.truncate(rng.below(out.len() + 1)),
        2..=4 => {
            let mut lines: Vec<Vec<u8>> = out.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
            let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
            match rng.below(3) {
                0 => {
                    lines.remove(a);
                }
                1 => {
                    let copy = lines[a].clone();
                    lines.insert(b, copy);
                }
                _ => lines.swap(a, b),
            }
            out = lines.join(&b'\n');
        }
        5 => {
            let at = rng.below(out.len() + 1);
            let junk: Vec<u8> = (0..rng.below(8) + 1)
                .map(|_| BYTES[rng.below(BYTES.len())])
                .collect();
            out.splice(at..at, junk);
        }
        _ => {
            // Grow a number past its type's range.
            if let Some(at) = out.iter().position(|b| b.is_ascii_digit()) {
                let skip = rng.below(out.len() - at);
                let at = at + skip;
                out.splice(at..at, b"99999999999".iter().copied());
            }
        }
    }
    out
}

/// Runs everything on `text`; returns whether it parsed.
fn exercise(text: &str) -> bool {
    match parse(text) {
        Ok(sdp) => {
            let s = media_sections(&sdp);
            for offer in &s {
                for answer in &s {
                    let _ = producer_parameters(offer, answer);
                }
            }
            let _ = accepted_mids(&sdp);
            let _ = (sdp.bundle_mids(), sdp.ice_lite());
            true
        }
        Err(e) => {
            assert_eq!(e.code, ErrorCode::InvalidSdp, "{e}");
            assert!(
                e.message.starts_with("line ") || e.message == "the SDP is empty",
                "{e}"
            );
            false
        }
    }
}

#[test]
fn mutated_and_random_input_never_panics() {
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let (mut parsed, mut refused) = (0, 0);
    for fixture in ALL.iter().chain([&FIREFOX_SIMULCAST]) {
        for _ in 0..300 {
            let mut bytes = fixture.as_bytes().to_vec();
            for _ in 0..=rng.below(3) {
                bytes = mutate(&mut rng, &bytes);
            }
            if exercise(&String::from_utf8_lossy(&bytes)) {
                parsed += 1;
            } else {
                refused += 1;
            }
        }
    }
    // Both paths must be exercised for the loop to mean anything.
    assert!(
        parsed > 300 && refused > 300,
        "{parsed} parsed, {refused} refused"
    );
    for _ in 0..500 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xff) as u8).collect();
        exercise(&String::from_utf8_lossy(&bytes));
        // Random text that at least looks like SDP lines.
        let lines: Vec<String> = (0..rng.below(12))
            .map(|_| {
                let kind = b"vostcmab"[rng.below(8)] as char;
                let value: String = (0..rng.below(20))
                    .map(|_| b"0123456789 :/=abcxRTPSAVF"[rng.below(25)] as char)
                    .collect();
                format!("{kind}={value}")
            })
            .collect();
        exercise(&format!("v=0\r\n{}", lines.join("\r\n")));
    }
}
