//! Budget-aware degradation: a calendar budget written with `degrade: { below: "20%", to: cheap }`
//! sends calls to the role `cheap` once less than a fifth of its period is left, instead of
//! refusing them all once it is spent. The budgets that govern a call are its role's, its team's
//! (tenant's) and its key's, from the records or the configuration file; the first one low enough
//! moves the call. The limiter still keeps every budget: a moved call is counted as any other,
//! and at 0 % it is refused.

use std::sync::Arc;

use tollgate::{
    Limits, Switch,
    ratelimit::{BudgetConfig, DEFAULT_TENANT, PRINCIPAL_SCOPE, ROLE_SCOPE, TENANT_SCOPE},
};

use crate::{keys::VirtualKey, records::Records, state::Live};

/// A scope, the call's name in it, and the budgets there that degrade.
type Candidate<'a> = (&'static str, &'a str, Option<Arc<[BudgetConfig]>>);

/// The role a call to `role` by `key` goes to instead, when a budget that governs it is low.
pub(crate) async fn moved_to(
    live: &Live,
    records: Option<&Records>,
    key: &VirtualKey,
    role: &str,
) -> Option<String> {
    let limiter = live.stack.limiter()?;
    let file = match &live.stack_limits {
        Switch::On(limiting) => Some(limiting),
        Switch::Off => None,
    };
    let own = |scope: &'static str, name: &str| records.and_then(|r| r.degrading(scope, name));
    let from_file = |entries: Option<&std::collections::BTreeMap<String, Limits>>, name: &str| {
        entries
            .and_then(|entries| entries.get(name))
            .map(|limits| crate::records::degrading(&limits.budgets))
    };
    let candidates: [Candidate<'_>; 3] = [
        (ROLE_SCOPE, role, from_file(file.map(|f| &f.roles), role)),
        (
            TENANT_SCOPE,
            &key.tenant,
            own(TENANT_SCOPE, &key.tenant).or_else(|| {
                let tenants = file.map(|f| &f.tenants);
                from_file(tenants, &key.tenant).or_else(|| from_file(tenants, DEFAULT_TENANT))
            }),
        ),
        (
            PRINCIPAL_SCOPE,
            &key.name,
            own(PRINCIPAL_SCOPE, &key.name)
                .or_else(|| from_file(file.map(|f| &f.principals), &key.name)),
        ),
    ];
    for (scope_name, name, budgets) in candidates {
        let Some(budgets) = budgets.filter(|b| !b.is_empty()) else {
            continue;
        };
        let Some(scope) = limiter.scope(scope_name) else {
            continue;
        };
        let Ok(status) = limiter.status(scope, name).await else {
            // What is left cannot be read now: the limiter still decides the call.
            continue;
        };
        for budget in budgets.iter() {
            let (Some(degrade), Ok(tier)) = (&budget.degrade, budget.to_tier()) else {
                continue;
            };
            // The limiter's tier, by what it counts (its own carries derived figures too).
            let left = status.tiers.iter().find(|t| {
                t.tier.dimension() == tier.dimension()
                    && t.tier.limit() == tier.limit()
                    && t.tier.calendar_period() == tier.calendar_period()
            });
            if left.is_some_and(|t| degrade.below.is_reached(t.remaining, tier.limit()))
                && degrade.to != role
            {
                // A role the key may not use, or one a reload took away, is no place to go: the
                // call stays where it is, under the budget that still holds it.
                if !key.may_use_role(&degrade.to)
                    || !live.config.stack.roles.contains_key(&degrade.to)
                {
                    tracing::debug!(target: "tollgate::degrade", role, to = %degrade.to, "a low budget's role is not one this call may go to");
                    continue;
                }
                return Some(degrade.to.clone());
            }
        }
    }
    None
}
