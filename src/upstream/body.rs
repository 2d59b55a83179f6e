//! Reading a whole body with a size limit, for JSON messages that pass the chain as one
//! event.

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::BodyError;

/// Collects `body` into memory, refusing more than `limit` bytes without buffering them.
pub async fn read_to_limit<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge { limit })
        }
        Err(e) => Err(BodyError::Read(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn a_body_within_the_limit_is_returned_whole() {
        let body = Full::new(Bytes::from_static(b"hello"));
        assert_eq!(read_to_limit(body, 5).await.unwrap(), "hello");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let body = Full::new(Bytes::from_static(b"hello!"));
        assert!(matches!(
            read_to_limit(body, 5).await,
            Err(BodyError::TooLarge { limit: 5 })
        ));
    }
}
