//! Clients that speak HTTP/2 oddly or not at all: the gateway answers what is valid
//! however it is framed, closes what is not, and keeps serving everyone else.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_gateway::transport::proto::{self, publish_stream_response::Result as Outcome};
use kafka_gateway_test_kit::*;
use prost::Message;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::codegen::http;

/// One gRPC message: the 5-byte prefix and the encoded protobuf.
fn grpc_message(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut framed = BytesMut::with_capacity(5 + body.len());
    framed.put_u8(0);
    framed.put_u32(body.len() as u32);
    framed.put_slice(&body);
    framed.freeze()
}

/// An HTTP/2 connection of a raw h2 client.
async fn raw_client(gw: &TestGateway) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn grpc_request(path: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://gateway{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// The gateway still answers a normal client.
async fn still_serves(gw: &TestGateway) {
    let topic = topic(1).await;
    let mut publisher = gw.publisher().await;
    assert_eq!(publish(&mut publisher, &topic, numbered(1)).await.len(), 1);
}

#[tokio::test]
async fn records_split_into_one_byte_data_frames_are_all_answered() {
    const RECORDS: usize = 300;
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let mut client = raw_client(&gw).await;
    let (response, mut send) = client
        .send_request(
            grpc_request("/kafka_gateway.v1.PublisherService/PublishStream"),
            false,
        )
        .unwrap();
    let sender = tokio::spawn(async move {
        for i in 0..RECORDS {
            let message = grpc_message(&proto::PublishStreamRequest {
                topic: topic.clone(),
                record: Some(record(None, &i.to_string())),
                correlation_id: i.to_string(),
            });
            // Every byte a DATA frame of its own: legal HTTP/2, and the most framing
            // overhead a client can send.
            for byte in message.iter() {
                send.reserve_capacity(1);
                while send.capacity() == 0 {
                    std::future::poll_fn(|cx| send.poll_capacity(cx))
                        .await
                        .expect("capacity")
                        .expect("capacity");
                }
                send.send_data(Bytes::copy_from_slice(&[*byte]), false)
                    .unwrap();
            }
        }
        send.send_data(Bytes::new(), true).unwrap();
    });
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("headers in time")
        .expect("the response starts");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = BytesMut::new();
    while let Some(chunk) = tokio::time::timeout(PATIENCE, body.data())
        .await
        .expect("answers keep coming")
    {
        let chunk = chunk.expect("the stream stays up");
        body.flow_control().release_capacity(chunk.len()).unwrap();
        received.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0", "{trailers:?}");
    sender.await.unwrap();
    let mut answered = 0;
    let mut rest = received.freeze();
    while !rest.is_empty() {
        let length = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let answer = proto::PublishStreamResponse::decode(&rest[5..5 + length]).unwrap();
        assert!(
            matches!(answer.result, Some(Outcome::Ack(_))),
            "record {} not acknowledged: {answer:?}",
            answer.correlation_id
        );
        answered += 1;
        rest = rest.slice(5 + length..);
    }
    assert_eq!(answered, RECORDS);
    still_serves(&gw).await;
    gw.stop().await;
}

/// Reads until the server closes the connection (end of stream or a reset).
async fn closed_by_server(tcp: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the gateway closes the connection");
}

#[tokio::test]
async fn a_connection_that_never_speaks_http2_is_closed() {
    let gw = TestGateway::start(&["--keepalive-timeout", "1s"]).await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let mut garbage = TcpStream::connect(gw.addr).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    closed_by_server(&mut garbage).await;
    closed_by_server(&mut silent).await;
    still_serves(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_flood_of_empty_data_frames_closes_only_its_connection() {
    let gw = TestGateway::start(&[]).await;
    let mut client = raw_client(&gw).await;
    let (response, mut send) = client
        .send_request(
            grpc_request("/kafka_gateway.v1.PublisherService/PublishStream"),
            false,
        )
        .unwrap();
    // Empty frames carry nothing and cost the server work each: h2 closes the
    // connection after 100 of them.
    for _ in 0..1_000 {
        if send.send_data(Bytes::new(), false).is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let ended = tokio::time::timeout(PATIENCE, async {
        // The stream ends with the connection, or is answered and ended first.
        if let Ok(response) = response.await {
            let mut body = response.into_body();
            while let Some(Ok(_)) = body.data().await {}
        }
    })
    .await;
    assert!(ended.is_ok(), "the flooding stream was not ended");
    still_serves(&gw).await;
    gw.stop().await;
}

/// A gRPC message whose bytes are no protobuf message at all.
fn undecodable() -> Bytes {
    let mut bad = BytesMut::new();
    bad.put_u8(0);
    bad.put_u32(4);
    bad.put_slice(&[0xff; 4]);
    bad.freeze()
}

#[tokio::test]
async fn a_consume_whose_first_request_cannot_be_decoded_is_invalid_argument() {
    let gw = TestGateway::start(&[]).await;
    let mut client = raw_client(&gw).await;
    let (response, mut send) = client
        .send_request(
            grpc_request("/kafka_gateway.v1.SubscriberService/Consume"),
            false,
        )
        .unwrap();
    send.send_data(undecodable(), false).unwrap();
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("headers in time")
        .expect("the response starts");
    // Was UNAVAILABLE, blaming Kafka for the client's bytes.
    let status = tonic::Status::from_header_map(&status_headers(response).await).unwrap();
    assert_eq!(status.code() as i32, 3, "{status:?}");
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(
        details.error_info().map(|info| info.reason.as_str()),
        Some("UNDECODABLE_REQUEST"),
        "{status:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_undecodable_unary_request_is_the_clients_fault_not_internal() {
    let gw = TestGateway::start(&[]).await;
    let mut client = raw_client(&gw).await;
    for path in [
        "/kafka_gateway.v1.PublisherService/Publish",
        "/kafka_gateway.v1.SubscriberService/Subscribe",
        "/kafka_gateway.v1.SubscriberService/Ack",
    ] {
        let (response, mut send) = client.send_request(grpc_request(path), false).unwrap();
        send.send_data(undecodable(), true).unwrap();
        let response = tokio::time::timeout(PATIENCE, response)
            .await
            .expect("headers in time")
            .expect("the response starts");
        let status = tonic::Status::from_header_map(&status_headers(response).await).unwrap();
        // tonic's codec says INTERNAL, which tells a client the server is broken.
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{path}: {status:?}"
        );
        let details = tonic_types::StatusExt::get_error_details(&status);
        assert_eq!(
            details.error_info().map(|info| info.reason.as_str()),
            Some("UNDECODABLE_REQUEST"),
            "{path}: {status:?}"
        );
    }
    gw.stop().await;
}

/// Sends a unary Publish on a raw connection and returns its grpc-status.
async fn raw_publish(client: &mut h2::client::SendRequest<Bytes>, topic: &str) -> String {
    let (response, mut send) = client
        .send_request(
            grpc_request("/kafka_gateway.v1.PublisherService/Publish"),
            false,
        )
        .expect("the connection takes a new stream");
    send.send_data(
        grpc_message(&proto::PublishRequest {
            topic: topic.into(),
            records: vec![record(None, "after")],
        }),
        true,
    )
    .unwrap();
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("headers in time")
        .expect("the connection is still up");
    grpc_status(response).await
}

/// The grpc-status of a response, trailers-only or not.
async fn grpc_status(response: http::Response<h2::RecvStream>) -> String {
    status_headers(response)
        .await
        .get("grpc-status")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// The headers that carry a response's status: its trailers, or its headers
/// when it is trailers-only.
async fn status_headers(response: http::Response<h2::RecvStream>) -> http::HeaderMap {
    if response.headers().contains_key("grpc-status") {
        return response.headers().clone();
    }
    let mut body = response.into_body();
    let read = async {
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("the stream stays up");
            body.flow_control().release_capacity(chunk.len()).unwrap();
        }
        body.trailers().await.unwrap().expect("trailers")
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the answer ends")
}

/// Small frames that arrive on a stream the gateway already answered and dropped
/// must not count against the connection for good: h2 charges its small-frame
/// budget for them and never gives it back, and once that budget was gone it
/// closed the whole connection (GOAWAY ENHANCE_YOUR_CALM).
#[tokio::test]
async fn small_frames_after_a_stream_ended_do_not_close_the_connection() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let mut client = raw_client(&gw).await;
    for _ in 0..4 {
        let (response, mut send) = client
            .send_request(
                grpc_request("/kafka_gateway.v1.PublisherService/PublishStream"),
                false,
            )
            .expect("the connection takes a new stream");
        // Not a PublishStreamRequest: the stream fails at once, and its body is
        // dropped while the client goes on sending.
        send.send_data(undecodable(), false).unwrap();
        for _ in 0..20_000 {
            if send.send_data(Bytes::from_static(b"x"), false).is_err() {
                break;
            }
        }
        let response = tokio::time::timeout(PATIENCE, response)
            .await
            .expect("headers in time")
            .expect("the connection is still up");
        // INVALID_ARGUMENT: the client sent something that is not a request.
        assert_eq!(grpc_status(response).await, "3");
        // Let the frames reach the gateway before the next round.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(raw_publish(&mut client, &topic).await, "0");
    gw.stop().await;
}

#[tokio::test]
async fn requests_that_are_not_grpc_are_refused_and_write_nothing() {
    let gw = TestGateway::start(&[]).await;
    let topic = topic(1).await;
    let mut client = raw_client(&gw).await;
    let body = grpc_message(&proto::PublishRequest {
        topic: topic.clone(),
        records: vec![record(None, "not grpc")],
    });
    let path = "http://gateway/kafka_gateway.v1.PublisherService/Publish";
    let cases: [(&str, Option<&str>, u16); 4] = [
        ("POST", Some("text/plain"), 415),
        ("POST", Some("application/json"), 415),
        ("POST", None, 415),
        ("GET", Some("application/grpc"), 405),
    ];
    for (method, content_type, expected) in cases {
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("te", "trailers");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (response, mut send) = client
            .send_request(request.body(()).unwrap(), false)
            .unwrap();
        send.send_data(body.clone(), true).unwrap();
        let response = response.await.expect("an answer");
        assert_eq!(
            response.status().as_u16(),
            expected,
            "{method} with content-type {content_type:?}"
        );
    }
    // Nothing of the refused requests reached Kafka: the first record published
    // now is the topic's first.
    let mut publisher = gw.publisher().await;
    let written = publish(&mut publisher, &topic, numbered(1)).await;
    assert_eq!(written[0].offset, 0);
    still_serves(&gw).await;
}
