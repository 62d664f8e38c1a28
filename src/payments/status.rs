//! The states of orders, refunds and payouts as enums: parsed from the database once (its CHECK
//! constraints name the same values), compared as enums everywhere, and written back (and to
//! JSON) as the same lower-case words.

use std::{fmt, str::FromStr};

use serde::{Serialize, Serializer};

/// `enum Name { Variant => "text", ... }` with `as_str`, `FromStr`, `Display` and `Serialize`
/// as that text.
macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStatus(s.to_string())),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

/// A status the database holds but this build does not know (its CHECK constraint makes this
/// unreachable short of a schema newer than the code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

status_enum! {
    /// An order's state (`orders.status`).
    OrderStatus {
        Pending => "pending",
        Paid => "paid",
        Expired => "expired",
        Cancelled => "cancelled",
        Refunded => "refunded",
        PartiallyRefunded => "partially_refunded",
    }
}

impl OrderStatus {
    /// Paid (in part refunded or not): what can be refunded.
    pub fn is_refundable(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::PartiallyRefunded)
    }
    /// From the database; an unknown value counts as cancelled (closed to payment and refund).
    pub fn from_db(s: &str) -> OrderStatus {
        s.parse().unwrap_or_else(|e: UnknownStatus| {
            tracing::error!(error = %e, "order status unknown to this build");
            OrderStatus::Cancelled
        })
    }
}

status_enum! {
    /// A refund's state (`refunds.status`).
    RefundStatus {
        Pending => "pending",
        Succeeded => "succeeded",
        Failed => "failed",
    }
}

impl RefundStatus {
    /// From the database; an unknown value counts as failed (final, nothing more to do).
    pub fn from_db(s: &str) -> RefundStatus {
        s.parse().unwrap_or_else(|e: UnknownStatus| {
            tracing::error!(error = %e, "refund status unknown to this build");
            RefundStatus::Failed
        })
    }
}

status_enum! {
    /// A payout request's state (`payouts.status`).
    PayoutStatus {
        Pending => "pending",
        Approved => "approved",
        Paid => "paid",
        Rejected => "rejected",
        Cancelled => "cancelled",
        Expired => "expired",
    }
}

impl PayoutStatus {
    /// From the database; an unknown value counts as cancelled (final, nothing more to do).
    pub fn from_db(s: &str) -> PayoutStatus {
        s.parse().unwrap_or_else(|e: UnknownStatus| {
            tracing::error!(error = %e, "payout status unknown to this build");
            PayoutStatus::Cancelled
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_text() {
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>().unwrap(), *s);
        }
        for s in RefundStatus::ALL {
            assert_eq!(s.as_str().parse::<RefundStatus>().unwrap(), *s);
        }
        for s in PayoutStatus::ALL {
            assert_eq!(s.as_str().parse::<PayoutStatus>().unwrap(), *s);
        }
        assert_eq!(
            serde_json::to_value(OrderStatus::PartiallyRefunded).unwrap(),
            "partially_refunded"
        );
        assert!("paid_twice".parse::<OrderStatus>().is_err());
    }
}
