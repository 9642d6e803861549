//! # im-core
//!
//! The embeddable core of IM, the inventory system between a telecom
//! operator's Order Management (OM) and its access network. It knows nothing
//! of HTTP, SOAP or XML: it takes typed work orders ([`Form`]), judges them
//! by the EgyptWorkSheetAll contract, stores them durably as tasks, registers
//! customers, services and the resources they hold, and queues activation
//! commands for AM, all through one handle, [`Im`].
//!
//! ```no_run
//! use im_core::{CoreConfig, Form, FormItem, Im};
//! # fn main() -> Result<(), im_core::CoreError> {
//! let im = Im::open(CoreConfig::new("im.db"))?;
//! im_core::demo::install_if_empty(&im)?; // demo inventory + demo OM account
//! let form = Form::default()
//!     .field("authusername", "OM_webservice")
//!     .field("authpassword", "om-demo-secret")
//!     .field("flowId", "F-0001")
//!     .field("popid", "19601")
//!     .item(FormItem::default()
//!         .field("opertype", "Install").field("coverType", "ADSL")
//!         .field("serviceType", "ADSL").field("UserName", "u1@example.net")
//!         .field("AccountNumber", "1001").field("CustomerName", "Ahmed")
//!         .attr("ExchangeID", "EX01").attr("Speed", "16M"));
//! let outcome = im.submit_blocking(form);
//! assert_eq!(outcome.return_code(), 0);
//! # Ok(()) }
//! ```

pub mod access;
#[cfg(feature = "ad")]
mod ad;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod codes;
pub mod config;
pub mod demo;
mod engine;
pub mod form;
pub mod intake;
pub mod inventory_admin;
pub mod lifecycle;
pub mod login;
pub mod model;
pub mod names;
pub mod operator;
pub mod outcome;
pub mod query;
pub mod retry;
pub mod secrets;
pub mod store;
pub mod sync;
pub mod task_actions;

pub use codes::ErrorCode;
pub use config::{CoreConfig, Synchronous};
pub use engine::{CoreError, Im, WriterStats};
pub use form::{Field, Form, FormItem};
pub use outcome::{DuplicateContent, ItemResult, Outcome, ServiceView};
