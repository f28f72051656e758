//! H.264 `profile-level-id` handling (RFC 6184 §8.1), following the rules libwebrtc applies.
//!
//! Browsers describe an H.264 stream with three hex bytes: `profile_idc`, `profile-iop` (the
//! constraint-set flags) and `level_idc`. The same profile can be written several ways
//! (`42e01f` and `4de01f` are both Constrained Baseline), so codecs must be compared by the
//! *parsed* profile, never by string. Levels only bound resolution and frame rate; an SFU that
//! forwards payloads untouched matches on profile and packetization mode and leaves levels to
//! the offer/answer rules in [`answer_level`].

use crate::rtp_parameters::{CodecParameters, ParamValue};
use std::fmt;

/// The fmtp key carrying the profile and level.
pub const PROFILE_LEVEL_ID: &str = "profile-level-id";
/// The fmtp key selecting single NAL unit (0), non-interleaved (1) or interleaved (2) mode.
pub const PACKETIZATION_MODE: &str = "packetization-mode";
/// The fmtp key allowing each direction to use a different level (RFC 6184 §8.1).
pub const LEVEL_ASYMMETRY_ALLOWED: &str = "level-asymmetry-allowed";

/// constraint_set3_flag: with `level_idc` 11 in the Baseline/Main/Extended family it turns
/// level 1.1 into level 1b (H.264 §A.3.1).
const CONSTRAINT_SET3: u8 = 0x10;

/// An H.264 profile as WebRTC stacks distinguish them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Constrained Baseline: what every WebRTC encoder produces by default (`42e0..`).
    ConstrainedBaseline,
    /// Baseline (`4200..`).
    Baseline,
    /// Main (`4d00..`).
    Main,
    /// Constrained High (`640c..`), Safari's hardware profile.
    ConstrainedHigh,
    /// High (`6400..`).
    High,
    /// Predictive High 4:4:4 (`f400..`), offered by Chromium for receiving only.
    PredictiveHigh444,
}

impl Profile {
    /// The canonical `profile_idc` and `profile-iop` bytes written for this profile.
    fn canonical_bytes(self) -> (u8, u8) {
        match self {
            Profile::ConstrainedBaseline => (0x42, 0xe0),
            Profile::Baseline => (0x42, 0x00),
            Profile::Main => (0x4d, 0x00),
            Profile::ConstrainedHigh => (0x64, 0x0c),
            Profile::High => (0x64, 0x00),
            Profile::PredictiveHigh444 => (0xf4, 0x00),
        }
    }

    /// Whether level 1b is signalled with `level_idc` 9 (High family) rather than with
    /// `level_idc` 11 plus constraint_set3 (Baseline/Main family), per H.264 §A.3.
    fn uses_level_idc_9_for_1b(self) -> bool {
        matches!(
            self,
            Profile::ConstrainedHigh | Profile::High | Profile::PredictiveHigh444
        )
    }

    /// The class used to decide whether two peers can exchange a stream. Baseline and
    /// Constrained Baseline share one: every stack offers both (SDP-NOTES), WebRTC and
    /// hardware encoders emit Constrained-Baseline-conformant streams under either label
    /// (none uses the FMO/ASO/redundant-slice tools that separate them), and refusing the
    /// pair would fail subscriptions that work in practice. libwebrtc itself keeps them
    /// apart, which is why [`ProfileLevelId::parse`] still reports them separately.
    fn interop_class(self) -> Profile {
        match self {
            Profile::Baseline => Profile::ConstrainedBaseline,
            other => other,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::ConstrainedBaseline => "constrained baseline",
            Profile::Baseline => "baseline",
            Profile::Main => "main",
            Profile::ConstrainedHigh => "constrained high",
            Profile::High => "high",
            Profile::PredictiveHigh444 => "predictive high 4:4:4",
        })
    }
}

/// An H.264 level (H.264 Table A-1). The variant order is the capability order, so `Ord`
/// puts 1b between 1 and 1.1 as the standard does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Level 1.
    L1,
    /// Level 1b.
    L1b,
    /// Level 1.1.
    L1_1,
    /// Level 1.2.
    L1_2,
    /// Level 1.3.
    L1_3,
    /// Level 2.
    L2,
    /// Level 2.1.
    L2_1,
    /// Level 2.2.
    L2_2,
    /// Level 3.
    L3,
    /// Level 3.1 (1280×720 at 30 fps), the level browsers offer.
    L3_1,
    /// Level 3.2.
    L3_2,
    /// Level 4.
    L4,
    /// Level 4.1.
    L4_1,
    /// Level 4.2.
    L4_2,
    /// Level 5.
    L5,
    /// Level 5.1.
    L5_1,
    /// Level 5.2.
    L5_2,
    /// Level 6.
    L6,
    /// Level 6.1.
    L6_1,
    /// Level 6.2.
    L6_2,
}

impl Level {
    /// The level for a `level_idc` that is not 1b's ambiguous encodings; 11 means 1.1 here.
    fn from_plain_idc(idc: u8) -> Option<Level> {
        Some(match idc {
            10 => Level::L1,
            11 => Level::L1_1,
            12 => Level::L1_2,
            13 => Level::L1_3,
            20 => Level::L2,
            21 => Level::L2_1,
            22 => Level::L2_2,
            30 => Level::L3,
            31 => Level::L3_1,
            32 => Level::L3_2,
            40 => Level::L4,
            41 => Level::L4_1,
            42 => Level::L4_2,
            50 => Level::L5,
            51 => Level::L5_1,
            52 => Level::L5_2,
            60 => Level::L6,
            61 => Level::L6_1,
            62 => Level::L6_2,
            _ => return None,
        })
    }

    /// The `level_idc` byte, ten times the level number. Level 1b has no value of its own;
    /// its encoding depends on the profile, see [`ProfileLevelId::to_hex`].
    fn plain_idc(self) -> u8 {
        match self {
            Level::L1 => 10,
            Level::L1b | Level::L1_1 => 11,
            Level::L1_2 => 12,
            Level::L1_3 => 13,
            Level::L2 => 20,
            Level::L2_1 => 21,
            Level::L2_2 => 22,
            Level::L3 => 30,
            Level::L3_1 => 31,
            Level::L3_2 => 32,
            Level::L4 => 40,
            Level::L4_1 => 41,
            Level::L4_2 => 42,
            Level::L5 => 50,
            Level::L5_1 => 51,
            Level::L5_2 => 52,
            Level::L6 => 60,
            Level::L6_1 => 61,
            Level::L6_2 => 62,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Level::L1b {
            return f.write_str("1b");
        }
        let idc = self.plain_idc();
        write!(f, "{}.{}", idc / 10, idc % 10)
    }
}

/// A parsed `profile-level-id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProfileLevelId {
    /// The profile.
    pub profile: Profile,
    /// The level.
    pub level: Level,
}

/// What a `profile-level-id` means when the fmtp line has none.
///
/// RFC 6184 §8.1 says Baseline level 1 (`42000a`). libwebrtc deliberately uses Constrained
/// Baseline level 3.1 (`42e01f`) instead (crbug.com/webrtc/6337), because older WebRTC
/// endpoints and external encoders omit the parameter while sending 720p Constrained
/// Baseline. We follow libwebrtc: the peers we must interoperate with are WebRTC stacks, the
/// profile class is the same either way (see [`is_same_profile`]), and level 1 would make
/// [`answer_level`] cap a parameterless peer at 176×144.
pub const DEFAULT_PROFILE_LEVEL_ID: ProfileLevelId = ProfileLevelId {
    profile: Profile::ConstrainedBaseline,
    level: Level::L3_1,
};

/// `profile-iop` patterns per `profile_idc` (RFC 6184 §8.1 table 5, as libwebrtc reads it).
/// Each entry is (profile_idc, bits that must match, their required values, profile). The
/// reserved low bits must be zero in every pattern, which rejects values no stack writes.
const PROFILE_PATTERNS: [(u8, u8, u8, Profile); 9] = [
    // Baseline with constraint_set1: decodable by a Main decoder, hence "constrained".
    (0x42, 0b0100_1111, 0b0100_0000, Profile::ConstrainedBaseline),
    // Main with constraint_set0: also conforms to Baseline, i.e. Constrained Baseline.
    (0x4d, 0b1000_1111, 0b1000_0000, Profile::ConstrainedBaseline),
    // Extended with constraint_set0 and 1.
    (0x58, 0b1100_1111, 0b1100_0000, Profile::ConstrainedBaseline),
    (0x42, 0b0100_1111, 0b0000_0000, Profile::Baseline),
    (0x58, 0b1100_1111, 0b1000_0000, Profile::Baseline),
    (0x4d, 0b1010_1111, 0b0000_0000, Profile::Main),
    (0x64, 0b1111_1111, 0b0000_0000, Profile::High),
    // High with constraint_set4 and 5: no B-frames, Safari's hardware encoder.
    (0x64, 0b1111_1111, 0b0000_1100, Profile::ConstrainedHigh),
    (0xf4, 0b1111_1111, 0b0000_0000, Profile::PredictiveHigh444),
];

impl ProfileLevelId {
    /// Parses six hex digits (either case). Returns `None` for anything else, including
    /// profile or level combinations WebRTC stacks do not recognise.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 6 || !bytes.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let hex_byte = |i: usize| u8::from_str_radix(s.get(i..i + 2)?, 16).ok();
        let profile_idc = hex_byte(0)?;
        let profile_iop = hex_byte(2)?;
        let level_idc = hex_byte(4)?;

        let profile = PROFILE_PATTERNS
            .iter()
            .find(|(idc, mask, value, _)| *idc == profile_idc && profile_iop & mask == *value)
            .map(|(_, _, _, profile)| *profile)?;

        let level = match level_idc {
            11 if profile_iop & CONSTRAINT_SET3 != 0 => Level::L1b,
            // The High profiles spell 1b as level_idc 9; libwebrtc does not parse it, but
            // it is valid H.264 and costs nothing to understand.
            9 if profile.uses_level_idc_9_for_1b() => Level::L1b,
            other => Level::from_plain_idc(other)?,
        };
        Some(Self { profile, level })
    }

    /// The canonical six lowercase hex digits for this profile and level, e.g. `42e01f`.
    ///
    /// Canonical means one fixed spelling per profile, so `4de01f` comes back as `42e01f`.
    /// Level 1b is written as the profile requires: constraint_set3 plus `level_idc` 11 for
    /// the Baseline/Main family (`42f00b`), `level_idc` 9 for the High family (`640009`).
    pub fn to_hex(&self) -> String {
        let (profile_idc, mut profile_iop) = self.profile.canonical_bytes();
        let level_idc = match self.level {
            Level::L1b if self.profile.uses_level_idc_9_for_1b() => 9,
            Level::L1b => {
                profile_iop |= CONSTRAINT_SET3;
                11
            }
            other => other.plain_idc(),
        };
        format!("{profile_idc:02x}{profile_iop:02x}{level_idc:02x}")
    }
}

impl fmt::Display for ProfileLevelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The profile and level a codec's fmtp parameters describe.
///
/// An absent `profile-level-id` means [`DEFAULT_PROFILE_LEVEL_ID`] (libwebrtc's choice; see
/// there why it is not the RFC's). A present but unreadable one gives `None`, so callers
/// treat the codec as matching nothing rather than guessing.
pub fn profile_level_id_of(params: &CodecParameters) -> Option<ProfileLevelId> {
    match params.get(PROFILE_LEVEL_ID) {
        None => Some(DEFAULT_PROFILE_LEVEL_ID),
        // A generic fmtp parser may have read an all-digit value such as 640032 as a number;
        // its decimal text is the original hex text again.
        Some(value) => ProfileLevelId::parse(&value.as_text()),
    }
}

/// Whether two H.264 codecs carry the same profile, so that one side can decode what the
/// other sends. Levels are ignored: they are settled by [`answer_level`].
///
/// Baseline and Constrained Baseline count as the same (`42001f` matches `42e01f`, as
/// SDP-NOTES requires); this is looser than libwebrtc, and the reason is given on
/// [`Profile`]'s private `interop_class`: in practice every encoder sends Constrained
/// Baseline under both labels. All other profiles must be equal. An unreadable
/// `profile-level-id` on either side matches nothing.
pub fn is_same_profile(a: &CodecParameters, b: &CodecParameters) -> bool {
    match (profile_level_id_of(a), profile_level_id_of(b)) {
        (Some(a), Some(b)) => a.profile.interop_class() == b.profile.interop_class(),
        _ => false,
    }
}

/// The packetization mode: `Some(0)` when absent (RFC 6184 §8.1, and Firefox relies on it
/// for its mode-0 entries), `None` when present but not a number, so that malformed values
/// never pass for mode 0.
pub fn packetization_mode(params: &CodecParameters) -> Option<u32> {
    match params.get(PACKETIZATION_MODE) {
        None => Some(0),
        Some(value) => value.as_u32(),
    }
}

/// Whether the parameters allow level asymmetry (`level-asymmetry-allowed=1`). Absent means
/// not allowed (RFC 6184 §8.1).
pub fn is_level_asymmetry_allowed(params: &CodecParameters) -> bool {
    params
        .get(LEVEL_ASYMMETRY_ALLOWED)
        .and_then(ParamValue::as_u32)
        == Some(1)
}

/// The level to write in an answer (RFC 6184 §8.2.2), for a local codec answering a remote
/// offer of the same profile.
///
/// When both sides allow level asymmetry, each direction may use its own level, so the
/// answer states the level the local side can receive. Otherwise the answer may not upgrade
/// the offer's level and states the lower of the two. Returns `None` when either
/// `profile-level-id` is unreadable or the profiles differ (see [`is_same_profile`]).
pub fn answer_level(local: &CodecParameters, remote: &CodecParameters) -> Option<Level> {
    if !is_same_profile(local, remote) {
        return None;
    }
    let local_level = profile_level_id_of(local)?.level;
    let remote_level = profile_level_id_of(remote)?.level;
    if is_level_asymmetry_allowed(local) && is_level_asymmetry_allowed(remote) {
        Some(local_level)
    } else {
        Some(local_level.min(remote_level))
    }
}

/// The `profile-level-id` to write in an answer: the local profile at [`answer_level`].
///
/// When neither side wrote a `profile-level-id`, libwebrtc leaves it out of the answer too;
/// callers writing SDP may do the same. This function still returns the equivalent default.
pub fn answer_profile_level_id(
    local: &CodecParameters,
    remote: &CodecParameters,
) -> Option<ProfileLevelId> {
    let level = answer_level(local, remote)?;
    let profile = profile_level_id_of(local)?.profile;
    Some(ProfileLevelId { profile, level })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(entries: &[(&str, ParamValue)]) -> CodecParameters {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn plid(hex: &str) -> CodecParameters {
        params(&[(PROFILE_LEVEL_ID, hex.into())])
    }

    fn plid_asym(hex: &str) -> CodecParameters {
        params(&[
            (PROFILE_LEVEL_ID, hex.into()),
            (LEVEL_ASYMMETRY_ALLOWED, 1.into()),
        ])
    }

    fn parsed(hex: &str) -> (Profile, Level) {
        let p = ProfileLevelId::parse(hex).unwrap_or_else(|| panic!("{hex} should parse"));
        (p.profile, p.level)
    }

    #[test]
    fn parses_what_browsers_offer() {
        // Chromium, Firefox, aiortc, Safari (SDP-NOTES).
        assert_eq!(parsed("42001f"), (Profile::Baseline, Level::L3_1));
        assert_eq!(
            parsed("42e01f"),
            (Profile::ConstrainedBaseline, Level::L3_1)
        );
        assert_eq!(parsed("4d001f"), (Profile::Main, Level::L3_1));
        assert_eq!(parsed("f4001f"), (Profile::PredictiveHigh444, Level::L3_1));
        assert_eq!(parsed("640c1f"), (Profile::ConstrainedHigh, Level::L3_1));
        assert_eq!(parsed("640032"), (Profile::High, Level::L5));
        assert_eq!(
            parsed("42E01F"),
            (Profile::ConstrainedBaseline, Level::L3_1)
        );
    }

    #[test]
    fn constraint_flags_select_the_profile() {
        // Main and Extended with the right constraint sets are Constrained Baseline.
        assert_eq!(parsed("4de01f").0, Profile::ConstrainedBaseline);
        assert_eq!(parsed("4d801f").0, Profile::ConstrainedBaseline);
        assert_eq!(parsed("58c01f").0, Profile::ConstrainedBaseline);
        assert_eq!(parsed("58801f").0, Profile::Baseline);
        // constraint_set1 alone on Main is still Main; set2 is not allowed for Main.
        assert_eq!(parsed("4d401f").0, Profile::Main);
        assert_eq!(ProfileLevelId::parse("4d201f"), None);
        // Baseline with only constraint_set2 is not constrained.
        assert_eq!(parsed("42201f").0, Profile::Baseline);
        assert_eq!(parsed("42a01f").0, Profile::Baseline);
    }

    #[test]
    fn level_1b_in_both_spellings() {
        assert_eq!(parsed("42f00b"), (Profile::ConstrainedBaseline, Level::L1b));
        assert_eq!(parsed("42100b"), (Profile::Baseline, Level::L1b));
        assert_eq!(parsed("4d100b"), (Profile::Main, Level::L1b));
        assert_eq!(parsed("640009"), (Profile::High, Level::L1b));
        // Without constraint_set3, 11 is plain level 1.1.
        assert_eq!(
            parsed("42e00b"),
            (Profile::ConstrainedBaseline, Level::L1_1)
        );
        // level_idc 9 means nothing for Baseline.
        assert_eq!(ProfileLevelId::parse("42e009"), None);
    }

    #[test]
    fn rejects_malformed_and_unknown_values() {
        for bad in [
            "", "42e01", "42e01f0", "zzzzzz", "+2e01f", "42e0 f", "000000", // shape
            "42e0ff", "42e00f", "42e000", // levels that do not exist
            "6e001f", "7a001f", // High 10, High 4:2:2: not WebRTC profiles
            "42e11f", "4d0c1f", "640400", "f4e01f", // reserved or unexpected iop bits
            "é2e01",  // six bytes but not ASCII: must not panic on slicing
        ] {
            assert_eq!(ProfileLevelId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn to_hex_is_canonical_and_round_trips() {
        assert_eq!(parsed_plid("4de01f").to_hex(), "42e01f");
        assert_eq!(parsed_plid("42E01F").to_hex(), "42e01f");
        let profiles = [
            Profile::ConstrainedBaseline,
            Profile::Baseline,
            Profile::Main,
            Profile::ConstrainedHigh,
            Profile::High,
            Profile::PredictiveHigh444,
        ];
        let levels = [
            Level::L1,
            Level::L1b,
            Level::L1_1,
            Level::L1_2,
            Level::L1_3,
            Level::L2,
            Level::L2_1,
            Level::L2_2,
            Level::L3,
            Level::L3_1,
            Level::L3_2,
            Level::L4,
            Level::L4_1,
            Level::L4_2,
            Level::L5,
            Level::L5_1,
            Level::L5_2,
            Level::L6,
            Level::L6_1,
            Level::L6_2,
        ];
        for profile in profiles {
            for level in levels {
                let id = ProfileLevelId { profile, level };
                assert_eq!(ProfileLevelId::parse(&id.to_hex()), Some(id), "{id:?}");
            }
        }
        let cb_1b = ProfileLevelId {
            profile: Profile::ConstrainedBaseline,
            level: Level::L1b,
        };
        assert_eq!(cb_1b.to_hex(), "42f00b");
        assert_eq!(cb_1b.to_string(), "42f00b");
    }

    fn parsed_plid(hex: &str) -> ProfileLevelId {
        ProfileLevelId::parse(hex).unwrap_or_else(|| panic!("{hex} should parse"))
    }

    #[test]
    fn levels_order_1b_between_1_and_1_1() {
        assert!(Level::L1 < Level::L1b);
        assert!(Level::L1b < Level::L1_1);
        assert!(Level::L3_1 < Level::L5);
        assert_eq!(Level::L1b.to_string(), "1b");
        assert_eq!(Level::L3_1.to_string(), "3.1");
        assert_eq!(Level::L5.to_string(), "5.0");
    }

    #[test]
    fn absent_profile_level_id_is_libwebrtcs_default() {
        assert_eq!(
            profile_level_id_of(&CodecParameters::new()),
            Some(DEFAULT_PROFILE_LEVEL_ID)
        );
        assert_eq!(DEFAULT_PROFILE_LEVEL_ID.to_hex(), "42e01f");
        assert_eq!(profile_level_id_of(&plid("nothex")), None);
        // An fmtp parser that read 640032 as a number must not lose the profile.
        let numeric = params(&[(PROFILE_LEVEL_ID, ParamValue::Number(640032))]);
        assert_eq!(profile_level_id_of(&numeric), Some(parsed_plid("640032")));
    }

    #[test]
    fn same_profile_ignores_level_and_joins_the_baselines() {
        assert!(is_same_profile(&plid("42e01f"), &plid("42001f")));
        assert!(is_same_profile(&plid("42001f"), &plid("42e01f")));
        assert!(is_same_profile(&plid("42e00a"), &plid("42e034")));
        assert!(is_same_profile(&plid("4de01f"), &plid("42e01f")));
        assert!(is_same_profile(&CodecParameters::new(), &plid("42e01f")));
        assert!(is_same_profile(&CodecParameters::new(), &plid("42001f")));
        assert!(!is_same_profile(&plid("42e01f"), &plid("4d001f")));
        assert!(!is_same_profile(&plid("640c1f"), &plid("640032")));
        assert!(!is_same_profile(&plid("640032"), &plid("f4001f")));
        assert!(!is_same_profile(&plid("bogus"), &plid("bogus")));
        assert!(!is_same_profile(&CodecParameters::new(), &plid("4d001f")));
    }

    #[test]
    fn packetization_mode_defaults_to_zero() {
        assert_eq!(packetization_mode(&CodecParameters::new()), Some(0));
        let mode = |v: ParamValue| packetization_mode(&params(&[(PACKETIZATION_MODE, v)]));
        assert_eq!(mode(1.into()), Some(1));
        assert_eq!(mode("1".into()), Some(1));
        assert_eq!(mode("one".into()), None);
    }

    #[test]
    fn answer_level_honours_asymmetry() {
        // Both allow asymmetry: the answer states what the local side receives.
        assert_eq!(
            answer_level(&plid_asym("42e01f"), &plid_asym("42e034")),
            Some(Level::L3_1)
        );
        assert_eq!(
            answer_level(&plid_asym("42e034"), &plid_asym("42e01f")),
            Some(Level::L5_2)
        );
        // Either side without it: never above the offer.
        assert_eq!(
            answer_level(&plid_asym("42e034"), &plid("42e01f")),
            Some(Level::L3_1)
        );
        assert_eq!(
            answer_level(&plid("42e01f"), &plid_asym("42e034")),
            Some(Level::L3_1)
        );
        assert_eq!(
            answer_level(&plid("42f00b"), &plid("42e00a")),
            Some(Level::L1)
        );
        assert_eq!(
            answer_level(&plid("42f00b"), &plid("42e00b")),
            Some(Level::L1b)
        );
        // The remote's default (absent) is level 3.1.
        assert_eq!(
            answer_level(&plid("42e034"), &CodecParameters::new()),
            Some(Level::L3_1)
        );
        assert_eq!(answer_level(&plid("42e01f"), &plid("4d001f")), None);
        assert_eq!(answer_level(&plid("42e01f"), &plid("zz")), None);
    }

    #[test]
    fn answer_profile_level_id_keeps_the_local_profile() {
        let answer = answer_profile_level_id(&plid("42e01f"), &plid("42000a"));
        assert_eq!(answer.map(|a| a.to_hex()), Some("42e00a".to_owned()));
        assert_eq!(
            answer_profile_level_id(&plid("640c1f"), &plid("42e01f")),
            None
        );
    }
}
