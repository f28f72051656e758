//! Summing speakers: the full mix, each participant's mix-minus, and the limiter that keeps
//! a sum of loud speakers inside 16 bits without the harshness of hard clipping.

/// Where the limiter's knee starts: samples below pass unchanged.
const KNEE: i32 = 24_576;
/// Headroom above the knee, approached asymptotically.
const HEADROOM: i32 = i16::MAX as i32 - KNEE;

/// Adds one speaker's frame into an accumulator.
pub fn accumulate(acc: &mut [i32], frame: &[i16]) {
    for (a, &s) in acc.iter_mut().zip(frame) {
        *a += i32::from(s);
    }
}

/// Subtracts one speaker's frame from an accumulator (the mix-minus of that speaker).
pub fn subtract(acc: &mut [i32], frame: &[i16]) {
    for (a, &s) in acc.iter_mut().zip(frame) {
        *a -= i32::from(s);
    }
}

/// Converts a sum to 16-bit samples through a soft knee: unchanged up to the knee, then
/// compressed smoothly so that no sum, however loud, wraps or clips hard.
pub fn limit(acc: &[i32], out: &mut [i16]) {
    for (o, &a) in out.iter_mut().zip(acc) {
        *o = soft_knee(a);
    }
}

fn soft_knee(x: i32) -> i16 {
    let magnitude = x.unsigned_abs().min(i32::MAX as u32) as i32;
    let limited = if magnitude <= KNEE {
        magnitude
    } else {
        let over = i64::from(magnitude - KNEE);
        let h = i64::from(HEADROOM);
        KNEE + (over * h / (over + h)) as i32
    };
    let limited = limited.min(i16::MAX as i32) as i16;
    if x < 0 { -limited } else { limited }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_sums_pass_unchanged_and_loud_ones_stay_in_range_and_ordered() {
        let mut acc = vec![0i32; 6];
        accumulate(&mut acc, &[100, -100, 20_000, -20_000, 30_000, i16::MIN]);
        accumulate(&mut acc, &[50, -50, 20_000, -20_000, 30_000, i16::MIN]);
        let mut out = vec![0i16; 6];
        limit(&acc, &mut out);
        assert_eq!(&out[..2], &[150, -150]);
        assert!(out[2] > KNEE as i16 && out[4] > out[2], "{out:?}");
        assert_eq!(out[3], -out[2]);
        assert!(out[5] < -(KNEE as i16));
        subtract(&mut acc, &[50, -50, 20_000, -20_000, 30_000, i16::MIN]);
        limit(&acc, &mut out);
        assert_eq!(&out[..4], &[100, -100, 20_000, -20_000]);
    }

    #[test]
    fn the_knee_is_continuous_and_monotonic() {
        let mut last = soft_knee(KNEE - 1000);
        for x in (KNEE - 999)..(KNEE * 4) {
            let y = soft_knee(x);
            assert!(y >= last && y - last <= 1, "jump at {x}: {last} -> {y}");
            last = y;
        }
        // The extremes approach full scale without wrapping around.
        assert!(soft_knee(i32::MAX) > i16::MAX - 10);
        assert!(soft_knee(i32::MIN) < -i16::MAX + 10);
    }
}
