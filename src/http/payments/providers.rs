//! `GET /payments/providers`: the payment providers this server takes, so that a checkout
//! offers only those (the wallet, which needs no provider, is always there for course orders).

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{http::extract::Json, payments::providers::Provider, state::AppState};

#[derive(Serialize, ToSchema)]
pub struct PaymentProviderList {
    /// Enabled providers, among `sandbox`, `stripe`, `alipay`, `wechatpay`.
    items: Vec<&'static str>,
    /// Stripe's card form, when configured: the page loads Stripe.js from `js_url` and confirms
    /// the order's PaymentIntent (`payment.instructions.client_secret`) with the card. Absent:
    /// no card form (a Stripe order then waits for a payment made elsewhere).
    stripe: Option<StripeCardForm>,
}

#[derive(Serialize, ToSchema)]
pub struct StripeCardForm {
    /// The publishable key (`pk_…`) for `Stripe(…)`.
    publishable_key: String,
    /// The Stripe.js script to load.
    js_url: String,
}

/// The enabled payment providers.
#[utoipa::path(get, path = "/payments/providers", tag = "payments", operation_id = "list_payment_providers", security(()),
    responses((status = 200, body = PaymentProviderList)))]
pub(super) async fn list_providers(State(state): State<AppState>) -> Json<PaymentProviderList> {
    let settings = &state.settings.payments;
    Json(PaymentProviderList {
        items: Provider::ALL
            .into_iter()
            .filter(|p| p.enabled(settings))
            .map(Provider::as_str)
            .collect(),
        stripe: settings.stripe.card_form().then(|| StripeCardForm {
            publishable_key: settings.stripe.publishable_key.clone(),
            js_url: settings.stripe.js_url.clone(),
        }),
    })
}
