//! The OM-side client: builds the request from a typed work order (gb2312
//! by default, the form in CDATA with `]]>` split, numeric references for
//! what the charset cannot carry), posts it over a keep-alive connection
//! pool, reads the result into an [`Outcome`], and retries with the `om`
//! retry policy — on -9999, on HTTP 5xx that is not a SOAP Fault, on
//! connection errors and time-outs, always with the same flowId — and never
//! on anything else.
//!
//! ```no_run
//! use im_core::model::{CoverType, OperType, ServiceType};
//! use im_soap::{ClientConfig, OmClient, WorkItem, WorkOrder};
//! # async fn run() -> Result<(), im_soap::ClientError> {
//! let client = OmClient::new(ClientConfig::new("http://127.0.0.1:8080/services/EgyptWorkSheetAll"))?;
//! let order = WorkOrder::new("OM_webservice", "om-demo-secret", "F-0001", "19601").item(
//!     WorkItem::new(OperType::Install, Some(CoverType::Adsl), Some(ServiceType::Adsl), "u1@example.net")
//!         .field("AccountNumber", "1001")
//!         .field("CustomerName", "أحمد Hassan")
//!         .attr("ExchangeID", "EX01")
//!         .attr("Speed", "16M"),
//! );
//! let outcome = client.send(&order).await?;
//! println!("{} {}", outcome.error_code, outcome.error_desc);
//! # Ok(()) }
//! ```

use crate::envelope::{SERVICE_NS, SOAP11_NS, encoding_for_label};
use crate::fault::Fault;
use crate::form_xml::write_form;
use crate::result_xml::{ReadError, parse_response};
use crate::xml;
use bytes::Bytes;
use encoding_rs::Encoding;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use im_core::model::{CoverType, OperType, ServiceType};
use im_core::names::same;
use im_core::retry::{Interface, RetryPolicy};
use im_core::{Field, Form, FormItem, Outcome};
use std::fmt;
use std::time::Duration;
use tracing::warn;

/// Settings of an [`OmClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The service URL (`http://host:port/services/EgyptWorkSheetAll`).
    pub url: String,
    /// Request charset label (`gb2312` by default; `gbk`, `gb18030`,
    /// `utf-8` and other ASCII-compatible charsets work too).
    pub charset: String,
    /// Time allowed for one attempt (connect, send, answer). Default 30 s.
    pub timeout: Duration,
    /// Time allowed to connect. Default 5 s.
    pub connect_timeout: Duration,
    /// The retry policy. Default: the built-in `om` policy.
    pub retry: RetryPolicy,
    /// Largest response accepted, in bytes. Default 16 MiB.
    pub max_response_bytes: usize,
    /// How long an idle pooled connection is kept; keep it below the
    /// server's keep-alive time. Default 5 s.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host. Default 64.
    pub pool_max_idle_per_host: usize,
}

impl ClientConfig {
    /// Defaults for a service URL.
    pub fn new(url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            charset: "gb2312".into(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default_for(Interface::Om),
            max_response_bytes: 16 * 1024 * 1024,
            pool_idle_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: 64,
        }
    }
}

/// Why a call gave no [`Outcome`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client settings are unusable (URL, charset).
    #[error("client configuration: {0}")]
    Config(String),
    /// The work order cannot be written as a request.
    #[error("cannot build the request: {0}")]
    Request(String),
    /// The server answered with a SOAP Fault (not retried).
    #[error("{0}")]
    Fault(Fault),
    /// The server answered with an HTTP status other than a result or a
    /// Fault (5xx ones after the retries ran out).
    #[error("HTTP {status} from the server")]
    Http {
        /// The status.
        status: StatusCode,
    },
    /// Connection failure or time-out (after the retries ran out).
    #[error("transport: {0}")]
    Transport(String),
    /// A 200 answer that is not a readable result.
    #[error("{0}")]
    Malformed(String),
}

impl ClientError {
    /// Whether an attempt that failed this way is retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            ClientError::Http { status } => status.is_server_error(),
            _ => false,
        }
    }
}

/// One item of a [`WorkOrder`]: the fields that identify it, the other
/// `bussItem` fields, and the `attrList` entries.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// `Install`, `Modify`, `Delete` or `Query`.
    pub opertype: OperType,
    /// `coverType` (empty when `None`, as a Query may leave it).
    pub cover_type: Option<CoverType>,
    /// `serviceType` (empty when `None`).
    pub service_type: Option<ServiceType>,
    /// The subscriber's `UserName`.
    pub user_name: String,
    /// Other `bussItem` fields (`AccountNumber`, `CustomerName`, …).
    pub fields: Vec<Field>,
    /// `attrList` entries (`ExchangeID`, `Speed`, …).
    pub attrs: Vec<Field>,
}

impl WorkItem {
    /// An item with its identifying fields.
    pub fn new(
        opertype: OperType,
        cover_type: Option<CoverType>,
        service_type: Option<ServiceType>,
        user_name: impl Into<String>,
    ) -> WorkItem {
        WorkItem {
            opertype,
            cover_type,
            service_type,
            user_name: user_name.into(),
            fields: Vec::new(),
            attrs: Vec::new(),
        }
    }

    /// Adds a `bussItem` field (builder style).
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push(Field::new(name, value));
        self
    }

    /// Adds an `attrList` entry (builder style).
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attrs.push(Field::new(name, value));
        self
    }

    fn to_form_item(&self) -> FormItem {
        let mut item = FormItem::default()
            .field("opertype", self.opertype.as_str())
            .field("coverType", self.cover_type.map_or("", CoverType::as_str))
            .field(
                "serviceType",
                self.service_type.map_or("", ServiceType::as_str),
            )
            .field("UserName", self.user_name.clone());
        item.fields.extend(self.fields.iter().cloned());
        item.attrs.extend(self.attrs.iter().cloned());
        item
    }
}

/// A typed work order, as OM sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkOrder {
    /// `authusername`.
    pub auth_user: String,
    /// `authpassword` (never printed by `Debug`).
    pub auth_password: String,
    /// `flowId`: the idempotency key, kept across retries.
    pub flow_id: String,
    /// `popid`.
    pub popid: String,
    /// The `bussItem`s.
    pub items: Vec<WorkItem>,
}

impl WorkOrder {
    /// A work order without items.
    pub fn new(
        auth_user: impl Into<String>,
        auth_password: impl Into<String>,
        flow_id: impl Into<String>,
        popid: impl Into<String>,
    ) -> WorkOrder {
        WorkOrder {
            auth_user: auth_user.into(),
            auth_password: auth_password.into(),
            flow_id: flow_id.into(),
            popid: popid.into(),
            items: Vec::new(),
        }
    }

    /// Adds an item (builder style).
    pub fn item(mut self, item: WorkItem) -> Self {
        self.items.push(item);
        self
    }

    /// The form this work order is sent as.
    pub fn to_form(&self) -> Form {
        let mut form = Form::default()
            .field("authusername", self.auth_user.clone())
            .field("authpassword", self.auth_password.clone())
            .field("flowId", self.flow_id.clone())
            .field("popid", self.popid.clone());
        form.buss_info_present = true;
        form.items = self.items.iter().map(WorkItem::to_form_item).collect();
        form
    }
}

/// Names whose values `Debug` never prints.
fn is_secret(name: &str) -> bool {
    ["authpassword", "Password", "IPTVPassword"]
        .iter()
        .any(|s| same(s, name))
}

struct Redacted<'a>(&'a [Field]);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for field in self.0 {
            if is_secret(&field.name) {
                m.entry(&field.name, &"<redacted>");
            } else {
                m.entry(&field.name, &field.value);
            }
        }
        m.finish()
    }
}

impl fmt::Debug for WorkItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkItem")
            .field("opertype", &self.opertype)
            .field("cover_type", &self.cover_type)
            .field("service_type", &self.service_type)
            .field("user_name", &self.user_name)
            .field("fields", &Redacted(&self.fields))
            .field("attrs", &Redacted(&self.attrs))
            .finish()
    }
}

impl fmt::Debug for WorkOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkOrder")
            .field("auth_user", &self.auth_user)
            .field("auth_password", &"<redacted>")
            .field("flow_id", &self.flow_id)
            .field("popid", &self.popid)
            .field("items", &self.items)
            .finish()
    }
}

/// Writes the request envelope for `form` in `encoding` (declared as
/// `label`): the form in CDATA (a `]]>` split), characters the charset
/// cannot carry as numeric character references inside the form.
pub fn encode_request(
    form: &Form,
    encoding: &'static Encoding,
    label: &str,
) -> Result<Vec<u8>, ClientError> {
    let form_xml = write_form(form).map_err(|e| ClientError::Request(e.to_string()))?;
    let mut env = String::with_capacity(form_xml.len() + 400);
    env.push_str("<?xml version=\"1.0\" encoding=\"");
    env.push_str(label);
    env.push_str("\"?>\n<soapenv:Envelope xmlns:soapenv=\"");
    env.push_str(SOAP11_NS);
    env.push_str("\" xmlns:ser=\"");
    env.push_str(SERVICE_NS);
    env.push_str("\"><soapenv:Header/><soapenv:Body><ser:EgyptWorkSheetAll><ser:in0>");
    xml::push_cdata(&mut env, &form_xml);
    env.push_str("</ser:in0></ser:EgyptWorkSheetAll></soapenv:Body></soapenv:Envelope>");
    // Unmappable characters become decimal references; they only occur in
    // the form (the envelope itself is ASCII), where the inner parse reads them.
    let (bytes, _, _) = encoding.encode(&env);
    Ok(bytes.into_owned())
}

/// A client for the EgyptWorkSheetAll service (cheap to clone).
#[derive(Clone)]
pub struct OmClient {
    http: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    encoding: &'static Encoding,
    content_type: HeaderValue,
    label: String,
    config: ClientConfig,
}

impl fmt::Debug for OmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OmClient")
            .field("uri", &self.uri)
            .field("charset", &self.label)
            .finish()
    }
}

impl OmClient {
    /// A client for `config.url` (plain `http://` only).
    pub fn new(config: ClientConfig) -> Result<OmClient, ClientError> {
        let uri: Uri = config
            .url
            .parse()
            .map_err(|e| ClientError::Config(format!("URL {:?}: {e}", config.url)))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ClientError::Config(format!(
                "URL {:?}: only http://host[:port]/path URLs are supported",
                config.url
            )));
        }
        let label = config.charset.trim().to_ascii_lowercase();
        let encoding = encoding_for_label(label.as_bytes())
            .filter(|e| e.output_encoding() == *e)
            .ok_or_else(|| {
                ClientError::Config(format!(
                    "charset {:?} is unknown or cannot be written",
                    config.charset
                ))
            })?;
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(ClientError::Config(format!(
                "charset {:?} is not a plain label",
                config.charset
            )));
        }
        let content_type = HeaderValue::from_str(&format!("text/xml; charset={label}"))
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(OmClient {
            http,
            uri,
            encoding,
            content_type,
            label,
            config,
        })
    }

    /// The settings of this client.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Sends a work order (with retries) and reads its outcome. A -9999
    /// that outlasts the retries is returned as the outcome.
    pub async fn send(&self, order: &WorkOrder) -> Result<Outcome, ClientError> {
        self.send_form(&order.to_form()).await
    }

    /// Sends a form (with retries) and reads its outcome.
    pub async fn send_form(&self, form: &Form) -> Result<Outcome, ClientError> {
        let body = Bytes::from(self.encode(form)?);
        let flow_id = form.get("flowId").to_string();
        self.send_encoded(body, &flow_id).await
    }

    /// The request bytes for a form in this client's charset.
    pub fn encode(&self, form: &Form) -> Result<Vec<u8>, ClientError> {
        encode_request(form, self.encoding, &self.label)
    }

    /// Sends request bytes made by [`OmClient::encode`], retrying by the
    /// policy; `flow_id` is for log lines only.
    pub async fn send_encoded(&self, body: Bytes, flow_id: &str) -> Result<Outcome, ClientError> {
        let mut waits = self.config.retry.intervals();
        let mut attempt = 1u32;
        loop {
            let result = self.send_once(body.clone()).await;
            let reason = match &result {
                Ok(o) if o.error_code.is_retryable() => format!("errorCode {}", o.error_code),
                Err(e) if e.is_retryable() => e.to_string(),
                _ => return result,
            };
            let Some(wait) = waits.next() else {
                return result;
            };
            warn!(
                flow_id,
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                reason = %reason,
                "retrying the work order with the same flowId"
            );
            tokio::time::sleep(wait).await;
            attempt = attempt.saturating_add(1);
        }
    }

    /// One attempt, without retries.
    pub async fn send_once(&self, body: Bytes) -> Result<Outcome, ClientError> {
        match tokio::time::timeout(self.config.timeout, self.attempt(body)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Transport(format!(
                "no answer within {:?}",
                self.config.timeout
            ))),
        }
    }

    async fn attempt(&self, body: Bytes) -> Result<Outcome, ClientError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        req.headers_mut()
            .insert(CONTENT_TYPE, self.content_type.clone());
        req.headers_mut()
            .insert("SOAPAction", HeaderValue::from_static("\"\""));
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| ClientError::Transport(error_chain(&e)))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = Limited::new(resp.into_body(), self.config.max_response_bytes)
            .collect()
            .await
            .map_err(|e| ClientError::Transport(format!("reading the answer: {e}")))?
            .to_bytes();
        if status != StatusCode::OK && status != StatusCode::INTERNAL_SERVER_ERROR {
            return Err(ClientError::Http { status });
        }
        match parse_response(&bytes, content_type.as_deref()) {
            Ok(outcome) if status == StatusCode::OK => Ok(outcome),
            Ok(_) => Err(ClientError::Http { status }),
            Err(ReadError::Fault(f)) => Err(ClientError::Fault(f)),
            Err(ReadError::Malformed(m)) if status == StatusCode::OK => {
                Err(ClientError::Malformed(m))
            }
            Err(ReadError::Malformed(_)) => Err(ClientError::Http { status }),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;
    use crate::envelope::{decode_body, parse_request};
    use crate::form_xml::parse_form;

    fn order() -> WorkOrder {
        WorkOrder::new("OM_webservice", "s3cret", "F-1", "19601").item(
            WorkItem::new(
                OperType::Install,
                Some(CoverType::Adsl),
                Some(ServiceType::Adsl),
                "u1@x",
            )
            .field("CustomerName", "أحمد 工单 ]]> <&>")
            .field("Password", "pppoe-secret")
            .attr("ExchangeID", "EX01"),
        )
    }

    #[test]
    fn gb2312_request_round_trips_through_the_server_reader() {
        let form = order().to_form();
        let bytes = encode_request(&form, encoding_rs::GBK, "gb2312").expect("encodable");
        // Chinese travels as GBK bytes, Arabic as references.
        assert!(bytes.windows(7).any(|w| w == b"&#1571;"));
        assert!(!bytes.is_ascii());
        let (text, enc) = decode_body(&bytes, Some("text/xml; charset=gb2312")).expect("decodable");
        assert_eq!(enc, encoding_rs::GBK);
        let limits = Limits::default();
        let req = parse_request(&text, &limits.envelope).expect("envelope");
        let back = parse_form(&req.payload, &limits.form).expect("form");
        assert_eq!(back, form);
    }

    #[test]
    fn utf8_request_has_no_references() {
        let form = order().to_form();
        let bytes = encode_request(&form, encoding_rs::UTF_8, "utf-8").expect("encodable");
        assert!(!bytes.windows(2).any(|w| w == b"&#"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let s = format!("{:?}", order());
        assert!(!s.contains("s3cret"), "{s}");
        assert!(!s.contains("pppoe-secret"), "{s}");
        assert!(s.contains("u1@x"));
    }

    #[test]
    fn configuration_is_checked() {
        assert!(OmClient::new(ClientConfig::new("https://x/")).is_err());
        assert!(OmClient::new(ClientConfig::new("not a url")).is_err());
        let mut c = ClientConfig::new("http://127.0.0.1:1/services/EgyptWorkSheetAll");
        c.charset = "utf-16".into();
        assert!(OmClient::new(c.clone()).is_err());
        c.charset = "GB18030".into();
        assert!(OmClient::new(c).is_ok());
    }

    #[test]
    fn retryable_errors() {
        assert!(ClientError::Transport("x".into()).is_retryable());
        assert!(
            ClientError::Http {
                status: StatusCode::BAD_GATEWAY
            }
            .is_retryable()
        );
        assert!(
            !ClientError::Http {
                status: StatusCode::PAYLOAD_TOO_LARGE
            }
            .is_retryable()
        );
        assert!(!ClientError::Fault(Fault::client("x")).is_retryable());
        assert!(!ClientError::Malformed("x".into()).is_retryable());
    }
}
