//! # im-soap
//!
//! The SOAP side of IM: bytes in, typed values out, and back.
//!
//! - [`envelope`]: charset detection (BOM, `Content-Type`, XML declaration,
//!   UTF-8; `gb2312` decodes as GBK) and the tolerant SOAP 1.1 envelope reader.
//! - [`form_xml`]: the `<form>` document ↔ [`im_core::Form`].
//! - [`result_xml`]: [`im_core::Outcome`] ↔ the `<result>` document and the
//!   response envelope (plain ASCII, CDATA, `out` or `EgyptWorkSheetAllReturn`).
//! - [`fault`]: SOAP 1.1 Faults. [`wsdl`]: the WSDL 1.1 document.
//! - [`server`]: the hyper server with its limits, `/health`, `/metrics` and
//!   graceful shutdown; [`config`]: its TOML settings; [`metrics`].
//! - [`client`]: the OM-side client with the `om` retry policy.
//! - [`api`]: the operators' JSON API (`/api/v1/…`) on the same listener.
//!
//! No business rule of the contract lives here: every field rule, code and
//! check order belongs to `im_core`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = im_soap::ServerConfig::default();
//! let im = im_core::Im::open(config.core_config())?;
//! let server = im_soap::Server::bind(config, im).await?;
//! println!("listening on {}", server.url());
//! server.serve(im_soap::server::shutdown_signal()).await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod client;
pub mod config;
pub mod envelope;
pub mod fault;
pub mod form_xml;
pub mod metrics;
pub mod om_guard;
pub mod result_xml;
pub mod server;
pub mod wsdl;
mod xml;

pub use client::{ClientConfig, ClientError, OmClient, WorkItem, WorkOrder};
pub use config::{ApiSettings, ConfigError, Limits, LoginSettings, ServerConfig, SyncSources};
pub use fault::{Fault, FaultCode};
pub use result_xml::ReturnElement;
pub use server::{Server, ServerError};
pub use xml::{LimitError, XmlLimits};
