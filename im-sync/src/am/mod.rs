//! Delivery of the activation outbox to AM.
