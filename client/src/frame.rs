//! Kafka framing: every request and response is a big-endian i32 length followed by that
//! many bytes; a request is its header then its body, a response its header then its body.
//! The header versions follow the API and version (`ApiKey::request_header_version`).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt};

/// What a request is, apart from its body.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta<'a> {
    pub api_key: i16,
    pub version: i16,
    /// Version of the request header (1, or 2 for flexible versions).
    pub header_version: i16,
    pub correlation_id: i32,
    pub client_id: &'a StrBytes,
}

/// Appends `[length][header][body]` of `request` to `buf`. On error `buf` is left as it was.
pub fn encode_request(
    buf: &mut BytesMut,
    meta: RequestMeta<'_>,
    request: &impl Encodable,
) -> Result<(), String> {
    let start = buf.len();
    buf.put_i32(0);
    let header = RequestHeader::default()
        .with_request_api_key(meta.api_key)
        .with_request_api_version(meta.version)
        .with_correlation_id(meta.correlation_id)
        .with_client_id(Some(meta.client_id.clone()));
    let encoded = header
        .encode(buf, meta.header_version)
        .and_then(|()| request.encode(buf, meta.version));
    let len = i32::try_from(buf.len() - start - 4);
    match (encoded, len) {
        (Ok(()), Ok(len)) => {
            buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        (Err(e), _) => {
            buf.truncate(start);
            Err(format!("{e:#}"))
        }
        (Ok(()), Err(_)) => {
            buf.truncate(start);
            Err("request longer than 2 GiB".to_string())
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    Io(std::io::Error),
    /// Negative or above the limit; nothing was allocated for it.
    Length(i32),
}

/// Reads one length-prefixed frame of at most `max_len` bytes. The buffer is filled
/// straight from the reader (no zeroing pass over a large fetch response).
pub async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    max_len: usize,
) -> Result<Bytes, FrameError> {
    let len = reader.read_i32().await.map_err(FrameError::Io)?;
    let size = usize::try_from(len)
        .ok()
        .filter(|l| *l <= max_len)
        .ok_or(FrameError::Length(len))?;
    let mut body = BytesMut::with_capacity(size);
    while body.len() < size {
        let want = (size - body.len()) as u64;
        if (&mut *reader)
            .take(want)
            .read_buf(&mut body)
            .await
            .map_err(FrameError::Io)?
            == 0
        {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(body.freeze())
}

/// A decoded response frame.
#[derive(Debug)]
pub struct DecodedResponse<R> {
    pub correlation_id: i32,
    pub response: R,
    /// Bytes of the frame after the response (0 when both sides agree on the layout).
    pub trailing: usize,
}

/// Decodes a response frame: header at `header_version`, body at `version`.
pub fn decode_response<R: Decodable>(
    mut frame: Bytes,
    header_version: i16,
    version: i16,
) -> Result<DecodedResponse<R>, String> {
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| format!("response header: {e:#}"))?;
    let response = R::decode(&mut frame, version).map_err(|e| format!("{e:#}"))?;
    Ok(DecodedResponse {
        correlation_id: header.correlation_id,
        response,
        trailing: frame.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataResponse};

    #[test]
    fn a_request_is_length_header_body() {
        let mut buf = BytesMut::from(&b"xx"[..]);
        let meta = RequestMeta {
            api_key: ApiKey::ApiVersions as i16,
            version: 0,
            header_version: 1,
            correlation_id: 7,
            client_id: &StrBytes::from_static_str("c"),
        };
        encode_request(&mut buf, meta, &ApiVersionsRequest::default()).unwrap();
        // Kept what was there; length 11 = key 2 + version 2 + correlation 4 + client id 3.
        assert_eq!(&buf[..], b"xx\0\0\0\x0b\0\x12\0\0\0\0\0\x07\0\x01c");
    }

    #[tokio::test]
    async fn frame_length_is_checked_before_allocating() {
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut huge, 1 << 20).await,
            Err(FrameError::Length(i32::MAX))
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(
            read_frame(&mut negative, 1 << 20).await,
            Err(FrameError::Length(-2))
        ));
        let mut short: &[u8] = &[0, 0, 0, 4, 1, 2];
        assert!(matches!(
            read_frame(&mut short, 1 << 20).await,
            Err(FrameError::Io(_))
        ));
        let mut ok: &[u8] = &[0, 0, 0, 2, 1, 2, 9];
        assert_eq!(&read_frame(&mut ok, 2).await.unwrap()[..], &[1, 2]);
    }

    #[test]
    fn trailing_bytes_are_counted() {
        let mut frame = BytesMut::new();
        frame.put_i32(5); // correlation id, header v0
        MetadataResponse::default().encode(&mut frame, 1).unwrap();
        frame.put_u8(0);
        let decoded = decode_response::<MetadataResponse>(frame.freeze(), 0, 1).unwrap();
        assert_eq!((decoded.correlation_id, decoded.trailing), (5, 1));
    }
}
