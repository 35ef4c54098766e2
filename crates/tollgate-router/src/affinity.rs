//! Prompt-cache affinity (`affinity: prefix`): the calls of a group that open with the same
//! system prompt and tools go to the same deployment, their prefix's *home*, so the provider's
//! prompt cache (which matches a prompt's first tokens) is hit.
//!
//! A new prefix is given the home with the fewest prefixes for its weight among the deployments
//! that can take a call now, ties broken by rendezvous rank: prefixes are spread by the weights
//! exactly, whatever order they come in. A home that cannot take a call (cooling down, full,
//! tried by this call, or passing on part of its traffic because its provider's limit runs low)
//! hands it to the prefix's *stand-in*: the open deployment ranked highest for the prefix by
//! weighted rendezvous hashing. Only that home's prefixes move, each to one deployment, and they
//! go back home once it can take them again, where a short cooldown has left the cache warm.
//!
//! The homes are a table in the process, bounded by two generations of [`GENERATION`] prefixes
//! each: a prefix unseen for a whole generation is forgotten, and is given a home again when it
//! comes back. Two gateway processes give a prefix a home each on their own, so a prefix is
//! cached at most once per process, not once per call.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, Hasher},
    sync::{Mutex, PoisonError},
};

use foldhash::fast::FixedState;
use serde_json::Value;
use tollgate_core::{LlmRequest, Message, Role};

use crate::pick::{Skipped, View};

/// Prefixes remembered per generation (so at most twice this many per group).
pub(crate) const GENERATION: usize = 4_096;

/// A call's prefix hash, computed once per call when a group with affinity first needs it:
/// `0` not yet, `1` the call has no prefix, any other value the hash.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PrefixSlot(u64);

impl PrefixSlot {
    fn get_or(&mut self, hash: impl FnOnce() -> Option<u64>) -> Option<u64> {
        if self.0 == 0 {
            // The two values that mean something else are moved aside; two prefixes whose hashes
            // differ only there share a home, as any two whose hashes collide would.
            self.0 = hash().map_or(1, |h| if h < 2 { h + 2 } else { h });
        }
        (self.0 > 1).then_some(self.0)
    }
}

/// A group's homes: which deployment (by position among the group's members) each prefix
/// goes to.
#[derive(Debug)]
pub(crate) struct Homes {
    /// Hashes prompt prefixes; seeded from the router's seed, so a seeded router repeats.
    hasher: FixedState,
    /// Each member's name, hashed: its part in the rendezvous rank.
    salts: Box<[u64]>,
    table: Mutex<Generations>,
}

#[derive(Debug)]
struct Generations {
    current: HashMap<u64, u32, FixedState>,
    previous: HashMap<u64, u32, FixedState>,
    /// Prefixes at home on each member, in both generations.
    counts: Box<[u64]>,
}

impl Generations {
    fn get(&mut self, prefix: u64) -> Option<u32> {
        if let Some(&home) = self.current.get(&prefix) {
            return Some(home);
        }
        let home = self.previous.remove(&prefix)?;
        // Carried over to the current generation: counted once, there.
        self.counts[home as usize] -= 1;
        self.insert(prefix, home);
        Some(home)
    }

    fn insert(&mut self, prefix: u64, home: u32) {
        if self.current.len() >= GENERATION {
            let forgotten =
                std::mem::replace(&mut self.previous, std::mem::take(&mut self.current));
            for home in forgotten.into_values() {
                self.counts[home as usize] -= 1;
            }
        }
        if self.current.insert(prefix, home).is_none() {
            self.counts[home as usize] += 1;
        }
    }
}

impl Homes {
    /// The homes of a group whose members are named `names`, hashing with `seed`.
    pub(crate) fn new<'a>(seed: u64, names: impl ExactSizeIterator<Item = &'a str>) -> Self {
        let hasher = FixedState::with_seed(seed);
        let salts: Box<[u64]> = names.map(|name| hasher.hash_one(name)).collect();
        let table = Mutex::new(Generations {
            current: HashMap::with_hasher(hasher.clone()),
            previous: HashMap::with_hasher(hasher.clone()),
            counts: vec![0; salts.len()].into_boxed_slice(),
        });
        Self {
            hasher,
            salts,
            table,
        }
    }

    /// The deployment for `request` among `members` by affinity, or `None` when the call has no
    /// prefix (no system message, no tools) and the group's strategy chooses.
    pub(crate) fn route(
        &self,
        view: &View<'_>,
        slot: &mut PrefixSlot,
        request: &LlmRequest,
        members: &[usize],
    ) -> Option<Result<usize, Skipped>> {
        let prefix = slot.get_or(|| self.prefix(request))?;
        Some(self.pick(view, prefix, members))
    }

    /// The hash of a call's prompt prefix: the system (or developer) messages it opens with and
    /// its tools; `None` when it has neither.
    pub(crate) fn prefix(&self, request: &LlmRequest) -> Option<u64> {
        let mut hasher = self.hasher.build_hasher();
        let mut any = false;
        let opening = request
            .messages
            .iter()
            .take_while(|m| matches!(m.role, Role::System | Role::Developer));
        for message in opening {
            hash_message(message, &mut hasher);
            any = true;
        }
        if let Some(tools) = request.params.extra.get("tools") {
            hasher.write_u8(b't');
            hash_value(tools, &mut hasher);
            any = true;
        }
        any.then(|| hasher.finish())
    }

    fn pick(&self, view: &View<'_>, prefix: u64, members: &[usize]) -> Result<usize, Skipped> {
        let mut skipped = Skipped::default();
        let home = {
            let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
            match table.get(prefix) {
                Some(home) => home as usize,
                None => {
                    let home = self.assign(view, prefix, members, &table.counts);
                    let Some(home) = home else {
                        // Nothing can take a call now: no home is given, and the pick below
                        // says why.
                        return self.stand_in(view, prefix, members, usize::MAX);
                    };
                    table.insert(prefix, home as u32);
                    home
                }
            }
        };
        let index = members[home];
        let open = view.open(index, &mut skipped);
        if open && view.takes_share(index) {
            return Ok(index);
        }
        match self.stand_in(view, prefix, members, home) {
            Ok(stand_in) => Ok(stand_in),
            // Its home shed the call for a limit running low, but nothing else can take it.
            Err(_) if open => Ok(index),
            Err(mut more) => {
                more.merge(skipped);
                more.on_trial.ok_or(more)
            }
        }
    }

    /// A home for a new prefix: the open member with the fewest prefixes for its weight, ties
    /// broken by rendezvous rank.
    fn assign(
        &self,
        view: &View<'_>,
        prefix: u64,
        members: &[usize],
        counts: &[u64],
    ) -> Option<usize> {
        let mut best: Option<(usize, u64, u64, f64)> = None;
        for (position, &index) in members.iter().enumerate() {
            if !view.open(index, &mut Skipped::default()) {
                continue;
            }
            let weight = u64::from(view.states[index].weight.max(1));
            let count = counts[position];
            let better = match best {
                None => true,
                // count / weight against the best's, without dividing.
                Some((_, least, least_weight, rank)) => {
                    let (here, there) = (
                        u128::from(count) * u128::from(least_weight),
                        u128::from(least) * u128::from(weight),
                    );
                    here < there || (here == there && self.rank(prefix, position, weight) > rank)
                }
            };
            if better {
                best = Some((position, count, weight, self.rank(prefix, position, weight)));
            }
        }
        best.map(|(position, ..)| position)
    }

    /// The open member other than `home` ranked highest for `prefix`, or why there is none.
    fn stand_in(
        &self,
        view: &View<'_>,
        prefix: u64,
        members: &[usize],
        home: usize,
    ) -> Result<usize, Skipped> {
        let mut skipped = Skipped::default();
        let mut best: Option<(usize, f64)> = None;
        for (position, &index) in members.iter().enumerate() {
            if position == home || !view.open(index, &mut skipped) {
                continue;
            }
            let rank = self.rank(prefix, position, u64::from(view.states[index].weight));
            if best.is_none_or(|(_, top)| rank > top) {
                best = Some((index, rank));
            }
        }
        best.map(|(index, _)| index)
            .or(skipped.on_trial)
            .ok_or(skipped)
    }

    /// Weighted rendezvous rank of member `position` for `prefix`: `-weight / ln(u)`, `u` a
    /// uniform draw from the pair's hash, so the highest-ranked member is each one in proportion
    /// to its weight, and taking one member away moves only the prefixes it ranked first for.
    fn rank(&self, prefix: u64, position: usize, weight: u64) -> f64 {
        let draw = self.hasher.hash_one((prefix, self.salts[position]));
        let unit = ((draw >> 11) as f64 + 0.5) / (1_u64 << 53) as f64;
        -(weight.max(1) as f64) / unit.ln()
    }
}

fn hash_message(message: &Message, hasher: &mut impl Hasher) {
    message.role.hash(hasher);
    match &message.content {
        None => hasher.write_u8(0),
        Some(tollgate_core::Content::Text(text)) => text.hash(hasher),
        Some(tollgate_core::Content::Parts(parts)) => {
            hasher.write_usize(parts.len());
            parts.iter().for_each(|part| hash_value(part, hasher));
        }
    }
    hash_object(&message.extra, hasher);
}

/// Hashes a JSON value in the order its fields came: the order the provider reads, and its cache
/// with it. (`Value`'s own `Hash`, with the `preserve_order` feature the workspace uses, sorts
/// each object's keys into a new vector first.)
fn hash_value(value: &Value, hasher: &mut impl Hasher) {
    match value {
        Value::Null => hasher.write_u8(0),
        Value::Bool(b) => hasher.write_u8(1 + u8::from(*b)),
        Value::Number(n) => {
            hasher.write_u8(3);
            n.hash(hasher);
        }
        Value::String(s) => {
            hasher.write_u8(4);
            s.hash(hasher);
        }
        Value::Array(items) => {
            hasher.write_u8(5);
            hasher.write_usize(items.len());
            items.iter().for_each(|item| hash_value(item, hasher));
        }
        Value::Object(map) => {
            hasher.write_u8(6);
            hash_object(map, hasher);
        }
    }
}

fn hash_object(map: &tollgate_core::JsonMap, hasher: &mut impl Hasher) {
    hasher.write_usize(map.len());
    for (key, value) in map {
        key.hash(hasher);
        hash_value(value, hasher);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tollgate_core::Message;

    use super::*;

    fn homes() -> Homes {
        Homes::new(7, ["a", "b"].into_iter())
    }

    fn request(messages: Vec<Message>) -> LlmRequest {
        LlmRequest::new("m", messages)
    }

    #[test]
    fn the_prefix_is_the_opening_system_messages_and_the_tools() {
        let homes = homes();
        let prefix = |r: &LlmRequest| homes.prefix(r);
        let asked = request(vec![Message::system("Be brief."), Message::user("hi")]);
        let other_question = request(vec![Message::system("Be brief."), Message::user("bye")]);
        assert_eq!(prefix(&asked), prefix(&other_question));
        assert!(prefix(&asked).is_some());

        let other_system = request(vec![Message::system("Be long."), Message::user("hi")]);
        assert_ne!(prefix(&asked), prefix(&other_system));
        let developer = request(vec![
            Message::new(Role::Developer, "Be brief."),
            Message::user("hi"),
        ]);
        assert_ne!(prefix(&asked), prefix(&developer));

        // A system message after the conversation began is not part of the prefix.
        let late = request(vec![Message::user("hi"), Message::system("Be brief.")]);
        assert_eq!(prefix(&late), None);

        let mut with_tools = asked.clone();
        with_tools.params.set_extra(
            "tools",
            json!([{ "type": "function", "function": { "name": "f" } }]),
        );
        assert_ne!(prefix(&with_tools), prefix(&asked));
        let mut tools_only = request(vec![Message::user("hi")]);
        tools_only.params.extra = with_tools.params.extra.clone();
        assert!(prefix(&tools_only).is_some());
        assert_ne!(prefix(&tools_only), prefix(&with_tools));
    }

    #[test]
    fn fields_are_hashed_in_the_order_they_came() {
        let homes = homes();
        let with = |tools: Value| {
            let mut r = request(vec![Message::user("hi")]);
            r.params.set_extra("tools", tools);
            homes.prefix(&r)
        };
        let ab = with(serde_json::from_str(r#"[{"a": 1, "b": 2}]"#).unwrap());
        let ba = with(serde_json::from_str(r#"[{"b": 2, "a": 1}]"#).unwrap());
        assert_ne!(ab, ba);
        assert_eq!(
            ab,
            with(serde_json::from_str(r#"[{"a": 1, "b": 2}]"#).unwrap())
        );
        assert_ne!(with(json!([1])), with(json!(["1"])));
    }

    #[test]
    fn a_slot_hashes_once_and_remembers_no_prefix() {
        let mut slot = PrefixSlot::default();
        assert_eq!(slot.get_or(|| Some(0)), Some(2));
        assert_eq!(slot.get_or(|| panic!("hashed twice")), Some(2));
        let mut none = PrefixSlot::default();
        assert_eq!(none.get_or(|| None), None);
        assert_eq!(none.get_or(|| panic!("hashed twice")), None);
    }

    #[test]
    fn generations_forget_the_oldest_prefixes_and_their_counts() {
        let homes = homes();
        let mut table = homes.table.lock().unwrap();
        for prefix in 0..GENERATION as u64 {
            table.insert(prefix, (prefix % 2) as u32);
        }
        assert_eq!(&*table.counts, [2_048, 2_048]);
        // A full generation: the next prefix starts a new one, and a prefix read from the old
        // one is carried over.
        table.insert(u64::MAX, 0);
        assert_eq!(table.get(1), Some(1));
        assert_eq!(table.counts.iter().sum::<u64>(), GENERATION as u64 + 1);
        for prefix in GENERATION as u64..2 * GENERATION as u64 - 2 {
            table.insert(prefix, 0);
        }
        // The third generation begins: what was not read again is forgotten.
        table.insert(u64::MAX - 1, 1);
        assert_eq!(table.get(2), None);
        assert_eq!(table.get(1), Some(1));
        assert_eq!(table.counts.iter().sum::<u64>(), GENERATION as u64 + 1);
    }
}
