//! What a Redis Cluster asks of the limits: one call's keys in one slot.

/// The refusal of scopes whose keys one call could name together, in different Redis Cluster
/// slots, with the fix (`redis.hash_tag_scope`). The limiter's builder and the facade's
/// configuration check both refuse with it.
pub fn cross_slot_error(scopes: &[&str]) -> tollgate_core::ConfigError {
    tollgate_core::ConfigError::new(
        "redis.hash_tag_scope",
        format!(
            "on Redis Cluster, one call's keys must share a slot, but a call limited by the scopes {} \
             would check keys in different slots (CROSSSLOT); set redis.hash_tag_scope to the scope \
             every call names (e.g. tenant), so each call's keys are stored in its key's slot (the \
             other scopes' quotas then count per key of that scope)",
            scopes
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}
