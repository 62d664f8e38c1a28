//! The teacher's share of a course sale or refund (the price less the platform fee), split
//! between their earnings and their receivable (what they owe the platform).
//!
//! - A refund takes the share back from the earnings up to what is *available* there (posted
//!   less what payout requests and other refunds hold); the rest is debited to the receivable,
//!   which goes below zero: a debt. The student's refund never fails for lack of earnings.
//! - A sale first repays the settled debt: min(share, debt) is credited to the receivable, the
//!   rest to the earnings.
//!
//! Both read the balances with the account rows locked ([`ledger::lock`]), in the same
//! transaction that records the transfer, so a concurrent payout request (which holds earnings
//! on the same row) or a concurrent sale (which repays the same debt) waits instead of racing:
//! the earnings never go below zero (PostgreSQL's CHECK would refuse it anyway) and the
//! receivable never above zero (likewise). Each movement is one transfer, so a refund hold
//! that is voided restores the earnings and the receivable together.

use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    Currency,
    ledger::{self, AccountRef},
};

/// How a sale's share is credited: `(to the receivable, to the earnings)`. At most the settled
/// debt is repaid (a debt is a negative receivable balance).
pub fn split_sale(share: i64, receivable_posted: i64) -> (i64, i64) {
    let debt = (-receivable_posted).max(0);
    let repay = share.clamp(0, debt);
    (repay, share - repay)
}

/// How a refund's share is taken back: `(from the earnings, from the receivable)`. The earnings
/// give at most what is available on them.
pub fn split_refund(share: i64, earnings_available: i64) -> (i64, i64) {
    let from_earnings = share.clamp(0, earnings_available.max(0));
    (from_earnings, share - from_earnings)
}

/// Legs adding nothing are left out (the ledger refuses zero legs).
fn push(legs: &mut Vec<(Uuid, i64)>, account: Uuid, amount: i64) {
    if amount != 0 {
        legs.push((account, amount));
    }
}

/// The legs crediting a sale's `share` to `payee`: repay their debt first, the rest to their
/// earnings. `others` are the transfer's other accounts: they are locked with the teacher's,
/// in id order, before anything is read (see [`ledger::lock`]).
pub async fn sale_legs(
    conn: &mut PgConnection,
    payee: Uuid,
    currency: &Currency,
    share: i64,
    others: &[Uuid],
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    let earnings = ledger::account(conn, &AccountRef::TeacherEarnings(payee), currency).await?;
    let receivable = ledger::account(conn, &AccountRef::TeacherReceivable(payee), currency).await?;
    let locked = ledger::lock(conn, &[&[earnings, receivable][..], others].concat()).await?;
    let owed = locked.get(&receivable).map_or(0, |b| b.posted);
    let (repay, keep) = split_sale(share, owed);
    let mut legs = Vec::with_capacity(2);
    push(&mut legs, receivable, repay);
    push(&mut legs, earnings, keep);
    Ok(legs)
}

/// The legs taking a refund's `share` back from `payee`: from the available earnings, the rest
/// from the receivable. `others` as in [`sale_legs`].
pub async fn refund_legs(
    conn: &mut PgConnection,
    payee: Uuid,
    currency: &Currency,
    share: i64,
    others: &[Uuid],
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    let earnings = ledger::account(conn, &AccountRef::TeacherEarnings(payee), currency).await?;
    let receivable = ledger::account(conn, &AccountRef::TeacherReceivable(payee), currency).await?;
    let locked = ledger::lock(conn, &[&[earnings, receivable][..], others].concat()).await?;
    let available = locked.get(&earnings).map_or(0, |b| b.available());
    let (from_earnings, owed) = split_refund(share, available);
    let mut legs = Vec::with_capacity(2);
    push(&mut legs, earnings, -from_earnings);
    push(&mut legs, receivable, -owed);
    Ok(legs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sale_repays_at_most_the_settled_debt() {
        assert_eq!(split_sale(8910, 0), (0, 8910));
        assert_eq!(split_sale(8910, -5000), (5000, 3910));
        assert_eq!(split_sale(8910, -8910), (8910, 0));
        assert_eq!(split_sale(8910, -20_000), (8910, 0));
        assert_eq!(split_sale(0, -20_000), (0, 0));
    }

    #[test]
    fn a_refund_takes_what_is_available_and_owes_the_rest() {
        assert_eq!(split_refund(8910, 10_000), (8910, 0));
        assert_eq!(split_refund(8910, 3910), (3910, 5000));
        assert_eq!(split_refund(8910, 0), (0, 8910));
        assert_eq!(split_refund(8910, -1), (0, 8910));
    }
}
