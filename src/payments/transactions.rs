//! Transaction history: the legs of ledger transfers as seen from one account (a wallet, a
//! teacher's earnings and receivable) or from all of them (admins), and their CSV export.

use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Currency, Money};
use crate::domain::{Page, PageLimit};

/// One leg of a transfer, as seen from one account.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Transaction {
    pub id: Uuid,
    pub transfer_id: Uuid,
    pub account_id: Uuid,
    pub account_kind: String,
    pub owner_id: Option<Uuid>,
    pub provider: Option<String>,
    pub kind: String,
    pub state: String,
    /// Signed: positive into the account, negative out of it.
    pub amount: Money,
    pub order_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub reverses: Option<Uuid>,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Which legs: every filter is optional.
#[derive(Debug, Default)]
pub struct Filter {
    /// Transfer kind (`topup`, `purchase`, `refund`, ...).
    pub kind: Option<String>,
    /// Transfer state (`pending`, `posted`, `voided`).
    pub state: Option<String>,
    pub order_id: Option<Uuid>,
    /// The account owner.
    pub owner_id: Option<Uuid>,
    pub account_kind: Option<String>,
    /// Legs older than this one (the cursor).
    pub before: Option<Uuid>,
}

/// Legs of `accounts` (all accounts when `None`) matching `f`, newest first.
pub async fn list(
    conn: &mut PgConnection,
    f: &Filter,
    accounts: Option<&[Uuid]>,
    limit: PageLimit,
) -> Result<Page<Transaction>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT l.id, l.transfer_id, l.account_id, l.amount, a.kind AS account_kind, a.owner_id,
                  a.provider, t.kind, t.state, t.currency, t.order_id, t.refund_id, t.reverses,
                  t.description, t.created_at
             FROM ledger_legs l
             JOIN ledger_transfers t ON t.id = l.transfer_id
             JOIN ledger_accounts a ON a.id = l.account_id
            WHERE ($1::uuid[] IS NULL OR l.account_id = ANY($1))
              AND ($2::text IS NULL OR t.kind = $2) AND ($3::text IS NULL OR t.state = $3)
              AND ($4::uuid IS NULL OR t.order_id = $4) AND ($5::uuid IS NULL OR a.owner_id = $5)
              AND ($6::text IS NULL OR a.kind = $6) AND ($7::uuid IS NULL OR l.id < $7)
            ORDER BY l.id DESC LIMIT $8"#,
        accounts,
        f.kind,
        f.state,
        f.order_id,
        f.owner_id,
        f.account_kind,
        f.before,
        limit.fetch()
    )
    .fetch_all(conn)
    .await?;
    let items = rows
        .into_iter()
        .map(|r| Transaction {
            id: r.id,
            transfer_id: r.transfer_id,
            account_id: r.account_id,
            account_kind: r.account_kind,
            owner_id: r.owner_id,
            provider: r.provider,
            kind: r.kind,
            state: r.state,
            amount: Money::new(r.amount, Currency::from_db(r.currency)),
            order_id: r.order_id,
            refund_id: r.refund_id,
            reverses: r.reverses,
            description: r.description,
            created_at: r.created_at,
        })
        .collect();
    Ok(Page::cut(items, limit, |t: &Transaction| t.id))
}

/// The CSV export of a page of legs (a header line, then one line per leg).
pub fn to_csv(items: &[Transaction]) -> String {
    // `account_kind` last, so the columns before it keep their places: the earnings export
    // mixes the earnings and the receivable.
    let mut out = String::from(
        "id,created_at,kind,state,amount,currency,order_id,refund_id,description,account_kind\n",
    );
    for t in items {
        let created = t
            .created_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let desc = t.description.replace('"', "\"\"");
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},\"{}\",{}\n",
            t.id,
            created,
            t.kind,
            t.state,
            t.amount.amount,
            t.amount.currency.as_str(),
            t.order_id.map(|u| u.to_string()).unwrap_or_default(),
            t.refund_id.map(|u| u.to_string()).unwrap_or_default(),
            desc,
            t.account_kind
        ));
    }
    out
}
