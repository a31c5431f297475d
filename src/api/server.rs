//! The HTTP side of `vpclab serve`: hyper reads a request (at most 1 MiB of body), the
//! signature is checked here, and the call goes to the one thread that owns the account,
//! which runs calls one after another: a change of a lab is a kernel apply, and two
//! applies to one lab must not interleave.

use super::account::random_chars;
use super::actions;
use super::error::ApiError;
use super::query::Params;
use super::service::Service;
use super::sigv4;
use super::xml;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A checked, parsed call on its way to the account thread.
struct Call {
    params: Params,
    region: String,
    reply: oneshot::Sender<Result<String, ApiError>>,
    request_id: String,
}

/// What the HTTP side needs to check a signature without the account thread.
struct Keys {
    access_key: String,
    secret: String,
}

/// Serves the EC2 API on `listener` until the process ends. Calls are logged to stderr.
pub fn run(service: Service, listener: std::net::TcpListener) -> anyhow::Result<()> {
    let keys = Arc::new(Keys {
        access_key: service.account.credentials.access_key.clone(),
        secret: service.account.credentials.secret.clone(),
    });
    let (calls, inbox) = mpsc::channel::<Call>();
    std::thread::Builder::new()
        .name("account".into())
        .spawn(move || account_thread(service, inbox))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(a) => a,
                // A shortage of file descriptors under a flood passes; back off briefly.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let keys = keys.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let keys = keys.clone();
                    let calls = calls.clone();
                    async move { Ok::<_, Infallible>(handle(req, &keys, &calls).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn account_thread(mut service: Service, inbox: mpsc::Receiver<Call>) {
    for call in inbox {
        let started = Instant::now();
        let action = call.params.get("Action").unwrap_or("(none)").to_string();
        // A handler that panics loses its own call, never the account: the answer is an
        // internal error and the next call finds the state as the last save left it.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            actions::dispatch(&mut service, &call.params, &call.region)
        }))
        .unwrap_or_else(|_| Err(ApiError::internal(format!("{action} failed unexpectedly"))));
        let answer = outcome.map(|body| xml::response(&action, &call.request_id, body));
        eprintln!(
            "{action} {} {:.1} ms",
            match &answer {
                Ok(_) => "ok".to_string(),
                Err(e) => e.code.clone(),
            },
            started.elapsed().as_secs_f64() * 1000.0
        );
        let _ = call.reply.send(answer);
    }
}

async fn handle(
    req: Request<Incoming>,
    keys: &Keys,
    calls: &mpsc::Sender<Call>,
) -> Response<Full<Bytes>> {
    let request_id = request_id();
    match answer(req, keys, calls, &request_id).await {
        Ok(body) => reply(StatusCode::OK, body),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            reply(status, e.to_xml(&request_id))
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    keys: &Keys,
    calls: &mpsc::Sender<Call>,
    request_id: &str,
) -> Result<String, ApiError> {
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| ApiError {
            status: 413,
            ..ApiError::invalid(format!("The request body is over {MAX_BODY} bytes"))
        })?
        .to_bytes();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let query = parts.uri.query().unwrap_or("");
    let signed = sigv4::verify(
        &sigv4::Request {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query,
            headers: &headers,
            body: &body,
        },
        |k| (k == keys.access_key).then(|| keys.secret.clone()),
        crate::lab::state::now() as i64,
    )?;
    if signed.service != "ec2" {
        return Err(ApiError::auth(format!(
            "Credential should be scoped to correct service: 'ec2', not '{}'",
            signed.service
        )));
    }
    // The Query protocol's parameters come in the form body (POST, what the SDKs send)
    // or in the query string (GET).
    let params = if body.is_empty() {
        Params::parse(query.as_bytes())?
    } else {
        Params::parse(&body)?
    };
    let (reply, answer) = oneshot::channel();
    calls
        .send(Call {
            params,
            region: signed.region,
            reply,
            request_id: request_id.to_string(),
        })
        .map_err(|_| {
            ApiError::internal("the account thread has stopped; restart `vpclab serve`")
        })?;
    answer
        .await
        .map_err(|_| ApiError::internal("the call was lost; restart `vpclab serve`"))?
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    r
}

/// A request ID in the shape AWS uses (a UUID).
fn request_id() -> String {
    let h = random_chars(32, b"0123456789abcdef").unwrap_or_else(|_| "0".repeat(32));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
