//! Cost model for the cost-cap policy step: per target, the spend so far this calendar
//! month, its projection to month end, and whether that projection is over the target's cap or
//! under its commit.
//!
//! Pure: no I/O and no clock. The caller passes `now_ms` (Unix milliseconds, UTC) along with the
//! inputs, so the same inputs and time always give the same figures.
//!
//! Rules:
//! - **Month**: the calendar month in UTC that contains `now_ms` (leap years handled).
//! - **Spend so far**, first that applies:
//!   1. the billing report's `spend_usd` ("reported spend");
//!   2. the billing report's `bytes` × price per GB ("reported bytes"); the price is the
//!      answer-weighted average of the region prices (from steerd's own answer counts), or the
//!      flat price when no answers were counted;
//!   3. Σ answers × `bytes_per_answer` / 1e9 × region price ("estimated from N answers").
//!
//!   A billing report is used only when its `as_of_ms` falls in the current month; one from an
//!   earlier (or later) month is ignored and the estimate is used instead.
//! - **Projection**: `spend_so_far × month_length / elapsed`, where `elapsed` runs from the
//!   month start to the time the figure describes (the report's `as_of_ms`, at most `now_ms`, for
//!   reported figures; `now_ms` for the estimate), and is at least one hour, so that a few cents
//!   spent in the first minutes of a month do not project to an absurd figure.
//! - **Over cap**: `projected > monthly_cap` (strictly). **Under commit**: `projected < commit`.
//! - GB are decimal (10⁹ bytes), as CDNs bill.

mod caps;
mod month;
mod spend;
#[cfg(test)]
mod tests;

pub use caps::{Commit, CostMode, CostPlace, apply_cost, cost_place};
pub use month::Month;
pub use spend::{
    CostInputs, CostModel, CostStatus, DEFAULT_BYTES_PER_ANSWER, Source, Usage, evaluate,
};
