//! Reading a whole body with a size limit, for JSON messages that pass the chain as one
//! event.

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;

use super::error::BodyError;

/// Collects `body` into memory, refusing more than `limit` bytes without buffering them.
pub async fn read_to_limit<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut parts: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > limit {
            return Err(BodyError::TooLarge { limit });
        }
        parts.push(data);
    }
    Ok(match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().expect("one part"),
        _ => Bytes::from(parts.concat()),
    })
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
