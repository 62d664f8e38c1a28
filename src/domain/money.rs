//! Money: an integer amount of minor units and an ISO 4217 currency. One type for course
//! prices, orders, wallets, refunds, payouts and ledger records (it was three), so the API
//! documents one `Money` schema and a price can be compared with an order's amount directly.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::InvalidInput;

/// An ISO 4217 currency code (three upper-case letters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "CNY")]
pub struct Currency(String);

impl Currency {
    pub fn cny() -> Currency {
        Currency("CNY".into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A code read back from the database (checked there by a CHECK constraint).
    pub fn from_db(s: String) -> Currency {
        Currency(s)
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(s))
        } else {
            Err(InvalidInput {
                field: "currency",
                reason: "must be an ISO 4217 code such as CNY",
            })
        }
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.0
    }
}

/// An amount of money: integer minor units (fen for CNY, cents) and a currency, never a float
/// (`{"amount": 9900, "currency": "CNY"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// Integer minor units (fen, cents). A price of 0 means free; ledger records may be
    /// negative.
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Money {
        Money { amount, currency }
    }

    /// A course price as a teacher sets it: 0 (free) up to 10⁹ major units.
    pub fn price(amount: i64, currency: &str) -> Result<Money, InvalidInput> {
        if !(0..=1_000_000_000_00).contains(&amount) {
            return Err(InvalidInput {
                field: "price.amount",
                reason: "must be an integer of minor units between 0 and 100000000000",
            });
        }
        let currency = Currency::try_from(currency.to_string()).map_err(|_| InvalidInput {
            field: "price.currency",
            reason: "must be an ISO 4217 code such as CNY",
        })?;
        Ok(Money { amount, currency })
    }

    pub fn is_free(&self) -> bool {
        self.amount == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_checked_and_currencies_are_codes() {
        assert!(Money::price(0, "CNY").unwrap().is_free());
        assert_eq!(Money::price(-1, "CNY").unwrap_err().field, "price.amount");
        assert_eq!(
            Money::price(100, "cny").unwrap_err().field,
            "price.currency"
        );
        assert!(Currency::try_from("CN".to_string()).is_err());
        let m: Money = serde_json::from_str(r#"{"amount": 9900, "currency": "CNY"}"#).unwrap();
        assert_eq!(m, Money::new(9900, Currency::cny()));
        assert!(serde_json::from_str::<Money>(r#"{"amount": 1, "currency": "yuan"}"#).is_err());
    }
}
