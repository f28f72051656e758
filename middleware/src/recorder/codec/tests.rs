use super::*;

/// An SPS written bit by bit: `fields` are (value, width) with width 0 for ue(v).
fn sps_bits(fields: &[(u64, u32)]) -> Vec<u8> {
    let mut bits: Vec<bool> = Vec::new();
    for &(v, width) in fields {
        if width == 0 {
            let code = v + 1;
            let len = 64 - code.leading_zeros();
            bits.extend(std::iter::repeat_n(false, len as usize - 1));
            bits.extend((0..len).rev().map(|i| code >> i & 1 == 1));
        } else {
            bits.extend((0..width).rev().map(|i| v >> i & 1 == 1));
        }
    }
    bits.push(true); // rbsp stop bit
    bits.chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |b, (i, &x)| b | (u8::from(x) << (7 - i)))
        })
        .collect()
}

/// Baseline profile, frame_mbs_only, then the width and height in macroblocks less one.
fn baseline_sps(w_mbs_minus1: u64, h_mbs_minus1: u64, crop: Option<[u64; 4]>) -> Vec<u8> {
    let mut f = vec![
        (66, 8),
        (0, 16),
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (1, 0),
        (0, 1),
    ];
    f.extend([(w_mbs_minus1, 0), (h_mbs_minus1, 0), (1, 1), (1, 1)]);
    match crop {
        Some(c) => {
            f.push((1, 1));
            f.extend(c.iter().map(|&v| (v, 0)));
        }
        None => f.push((0, 1)),
    }
    sps_bits(&f)
}

#[test]
fn h264_sps_gives_the_cropped_picture_size() {
    // 1280x720: 80 x 45 macroblocks, no cropping; 1920x1080: 120 x 68 less 4 rows.
    assert_eq!(
        h264_sps_size(&baseline_sps(79, 44, None)),
        Some((1280, 720))
    );
    assert_eq!(
        h264_sps_size(&baseline_sps(119, 67, Some([0, 0, 0, 4]))),
        Some((1920, 1080))
    );
}

#[test]
fn a_hostile_h264_sps_is_refused_without_overflow() {
    // The largest ue(v) values: the size in 32 bits would overflow (a panic in debug
    // builds, a wrong size in release); it is refused instead.
    let max = (1u64 << 32) - 2;
    assert_eq!(h264_sps_size(&baseline_sps(max, 44, None)), None);
    assert_eq!(h264_sps_size(&baseline_sps(79, max, None)), None);
    assert_eq!(
        h264_sps_size(&baseline_sps(79, 44, Some([max, max, 0, 0]))),
        None
    );
    // A scaling list delta far outside -128..=127 (High profile).
    let mut f = vec![(100, 8), (0, 16), (0, 0), (1, 0), (0, 0), (0, 0), (0, 1)];
    f.extend([(1, 1), (1, 1), ((1u64 << 32) - 3, 0)]);
    assert_eq!(h264_sps_size(&sps_bits(&f)), None);
}

fn vp8_key(w: u16, h: u16) -> Vec<u8> {
    let mut f = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
    f.extend_from_slice(&w.to_le_bytes());
    f.extend_from_slice(&h.to_le_bytes());
    f.extend_from_slice(&[0; 20]);
    f
}

#[test]
fn codec_names() {
    assert_eq!(Codec::from_mime("video/VP8"), Some(Codec::Vp8));
    assert_eq!(Codec::from_mime("audio/opus"), Some(Codec::Opus));
    assert_eq!(Codec::from_mime("video/rtx"), None);
    assert_eq!(Codec::from_mime("bogus"), None);
}

#[test]
fn vp8_frames_from_fragments_and_keyframe_size() {
    let mut asm = FrameAssembler::new(Codec::Vp8);
    let frame = vp8_key(640, 360);
    let (a, b) = frame.split_at(12);
    let mut p1 = vec![0x10];
    p1.extend_from_slice(a);
    let mut p2 = vec![0x00];
    p2.extend_from_slice(b);
    let mut out = Vec::new();
    asm.push(1, 3000, false, &Bytes::from(p1), 0, &mut out);
    assert!(out.is_empty());
    asm.push(1, 3000, true, &Bytes::from(p2), 0, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].data[..], &frame[..]);
    assert!(out[0].keyframe);
    assert_eq!(asm.keyframe_info(&out[0]).size, Some((640, 360)));
}

#[test]
fn a_loss_drops_the_broken_frame_and_its_tail() {
    let mut asm = FrameAssembler::new(Codec::Vp8);
    let mut out = Vec::new();
    asm.push(
        1,
        0,
        false,
        &Bytes::from_static(&[0x10, 1, 0, 0, 0]),
        0,
        &mut out,
    );
    asm.on_loss();
    asm.push(
        1,
        0,
        true,
        &Bytes::from_static(&[0x00, 2, 2, 2, 2]),
        0,
        &mut out,
    );
    assert!(out.is_empty());
    // A frame whose first packet was lost is skipped too.
    asm.on_loss();
    asm.push(
        1,
        90,
        true,
        &Bytes::from_static(&[0x00, 3, 3, 3, 3]),
        0,
        &mut out,
    );
    assert!(out.is_empty());
    asm.push(
        1,
        180,
        true,
        &Bytes::from_static(&[0x10, 1, 4, 4, 4]),
        0,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert!(!out[0].keyframe);
}

#[test]
fn malformed_h264_aggregates_are_errors_not_panics() {
    let mut asm = FrameAssembler::new(Codec::H264);
    let mut out = Vec::new();
    for bad in [&[24u8, 0][..], &[24, 0, 9, 1], &[24, 0, 1, 0x65, 0]] {
        asm.push(1, 0, true, &Bytes::copy_from_slice(bad), 0, &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(asm.malformed, 3);
}

#[test]
fn h264_keyframe_gives_avcc_and_size() {
    // x264's SPS and PPS for 320x240 High profile in a STAP-A, then an IDR slice.
    let sps: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
    ];
    let pps: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    let mut stap = vec![24u8];
    for n in [sps, pps] {
        stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
        stap.extend_from_slice(n);
    }
    let mut asm = FrameAssembler::new(Codec::H264);
    let mut out = Vec::new();
    asm.push(1, 0, false, &Bytes::from(stap), 0, &mut out);
    asm.push(
        1,
        0,
        true,
        &Bytes::from_static(&[0x65, 0x88, 0x84, 0x00]),
        0,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert!(out[0].keyframe);
    let info = asm.keyframe_info(&out[0]);
    assert_eq!(info.size, Some((320, 240)));
    let avcc = info.avcc.unwrap();
    assert_eq!(&avcc[..4], &[1, 0x64, 0x00, 0x0d]);
}

#[test]
fn opus_durations() {
    assert_eq!(opus_samples(&[0x78]), Some(960)); // CELT FB 20 ms
    assert_eq!(opus_samples(&[0x08 | 1]), Some(1920)); // SILK NB 20 ms x2
    assert_eq!(opus_samples(&[0x03, 3]), Some(1440)); // 3 x 10 ms SILK
    assert_eq!(opus_samples(&[0x03]), None);
    assert_eq!(opus_samples(&[0x03, 0x3F]), None, "more than 120 ms");
    assert_eq!(opus_samples(&[]), None);
}

#[test]
fn vp9_keyframe_header_size() {
    // frame_marker=2, profile 0, show_existing=0, key=0, show=1, err_res=0,
    // sync code, color_space=0 (BT601) range=0, width-1=351, height-1=287.
    let mut bits: Vec<u8> = Vec::new();
    let mut push = |v: u32, n: u32| {
        for i in (0..n).rev() {
            bits.push(((v >> i) & 1) as u8);
        }
    };
    push(2, 2);
    push(0, 2);
    push(0, 1);
    push(0, 1);
    push(1, 1);
    push(0, 1);
    push(0x498342, 24);
    push(0, 3);
    push(0, 1);
    push(351, 16);
    push(287, 16);
    let bytes: Vec<u8> = bits
        .chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |a, (i, b)| a | (b << (7 - i)))
        })
        .collect();
    assert_eq!(vp9_size(&bytes), Some((352, 288)));
}
