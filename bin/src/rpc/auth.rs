//! The `auth` check: the presented token against the configured one, in constant time.

use super::dispatch::typed_params;
use super::{RpcError, wire};
use rmpv::Value as Msgpack;
use subtle::ConstantTimeEq;
use switchboard_client::protocol::AuthParams;
use switchboard_core::ErrorCode;

/// Checks `auth` parameters against the configured token in constant time. Without a
/// configured token any `auth` succeeds, so clients may always send one.
pub(crate) fn check_token(expected: &str, params: Msgpack) -> Result<(), RpcError> {
    let params: AuthParams = typed_params(wire::params_map(params)?)?;
    if expected.is_empty() || tokens_match(expected.as_bytes(), params.token.as_bytes()) {
        Ok(())
    } else {
        Err(RpcError::new(ErrorCode::Unauthorized, "wrong token"))
    }
}

/// Compares without an early exit, so response timing reveals neither the token's content
/// nor its length: the work depends on the presented token's length only.
pub(super) fn tokens_match(expected: &[u8], presented: &[u8]) -> bool {
    if expected.is_empty() {
        return presented.is_empty();
    }
    let mut same = (expected.len() as u64).ct_eq(&(presented.len() as u64));
    for (i, byte) in presented.iter().enumerate() {
        same &= byte.ct_eq(&expected[i % expected.len()]);
    }
    same.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        assert!(!tokens_match(b"s3cret", b"s3cre"));
        assert!(!tokens_match(b"s3cret", b"s3cret!"));
        assert!(!tokens_match(b"s3cret", b"s3creT"));
        assert!(!tokens_match(b"s3cret", b""));
        // Repeating the token is not the token.
        assert!(!tokens_match(b"ab", b"abab"));
    }

    #[test]
    fn auth_params_are_checked() {
        let params = |token: &str| Msgpack::Map(vec![("token".into(), token.into())]);
        assert!(check_token("t", params("t")).is_ok());
        assert_eq!(
            check_token("t", params("u")).unwrap_err().code,
            ErrorCode::Unauthorized
        );
        assert!(check_token("", params("anything")).is_ok());
        assert_eq!(
            check_token("t", Msgpack::Nil).unwrap_err().code,
            ErrorCode::InvalidParams
        );
    }
}
