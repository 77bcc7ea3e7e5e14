//! An instance's metadata: a few short string pairs, kept as one small sorted slice.
//!
//! A `BTreeMap<String, String>` put its two or three pairs in a node of eleven (~550
//! bytes), half of what an instance took at 100,000 instances (docs/performance.md,
//! "Memory at 100,000 instances"). Lookups are a binary search over a handful of keys.

use std::collections::BTreeMap;
use std::fmt;

/// Key → value, sorted by key, keys unique.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata(Box<[(Box<str>, Box<str>)]>);

impl Metadata {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| &*self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `key` to `value`; the value it had, if any.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        let (key, value) = (key.into_boxed_str(), value.into_boxed_str());
        let mut pairs = std::mem::take(&mut self.0).into_vec();
        let old = match pairs.binary_search_by(|(k, _)| (**k).cmp(&*key)) {
            Ok(i) => Some(std::mem::replace(&mut pairs[i].1, value).into()),
            Err(i) => {
                pairs.insert(i, (key, value));
                None
            }
        };
        self.0 = pairs.into_boxed_slice();
        old
    }

    /// Removes `key`; its value, if it had one.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.find(key).ok()?;
        let mut pairs = std::mem::take(&mut self.0).into_vec();
        let (_, value) = pairs.remove(i);
        self.0 = pairs.into_boxed_slice();
        Some(value.into())
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key))
    }
}

/// The last value of a key given twice wins, as in a map.
impl<K: Into<Box<str>>, V: Into<Box<str>>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut pairs: Vec<(Box<str>, Box<str>)> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // Latest first, a stable sort keeps that order among equal keys, and `dedup_by`
        // keeps the first of each run: the last value given.
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, kept| later.0 == kept.0);
        Metadata(pairs.into_boxed_slice())
    }
}

impl From<BTreeMap<String, String>> for Metadata {
    fn from(map: BTreeMap<String, String>) -> Self {
        // Already sorted and unique.
        Metadata(
            map.into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
        )
    }
}

impl<const N: usize> From<[(String, String); N]> for Metadata {
    fn from(pairs: [(String, String); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever is inserted, removed and looked up, it answers as a BTreeMap does.
        #[test]
        fn behaves_as_a_sorted_map(
            ops in proptest::collection::vec((0u8..3, "[a-d]{0,2}", "[x-z]{0,2}"), 0..40),
        ) {
            let mut ours = Metadata::default();
            let mut map: BTreeMap<String, String> = BTreeMap::new();
            for (op, k, v) in ops {
                match op {
                    0 => prop_assert_eq!(ours.insert(k.clone(), v.clone()), map.insert(k, v)),
                    1 => prop_assert_eq!(ours.remove(&k), map.remove(&k)),
                    _ => {
                        prop_assert_eq!(ours.get(&k), map.get(&k).map(String::as_str));
                        prop_assert_eq!(ours.contains_key(&k), map.contains_key(&k));
                    }
                }
                let pairs: Vec<(&str, &str)> = ours.iter().collect();
                let want: Vec<(&str, &str)> =
                    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                prop_assert_eq!(pairs, want);
                prop_assert_eq!(ours.len(), map.len());
                prop_assert_eq!(&ours, &Metadata::from(map.clone()));
                prop_assert_eq!(&ours, &map.clone().into_iter().collect::<Metadata>());
            }
        }
    }

    #[test]
    fn a_key_given_twice_keeps_its_last_value() {
        let m: Metadata = [("b", "1"), ("a", "2"), ("b", "3")].into_iter().collect();
        assert_eq!(m.iter().collect::<Vec<_>>(), [("a", "2"), ("b", "3")]);
        assert_eq!(format!("{m:?}"), r#"{"a": "2", "b": "3"}"#);
    }
}
