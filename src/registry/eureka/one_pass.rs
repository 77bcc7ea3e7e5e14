//! The one-pass parse of a Jackson-shaped `/apps` document (see
//! [`super::parse::parse_apps_json_in_one_pass`]), which converts each instance as soon as
//! it is read: the wire form of every instance (~1.4 KB each with its metadata map) is
//! never held all at once next to the instances made from it.
//!
//! Stricter than a derived `Deserialize` where that is cheaper to write (a struct given
//! as an array, a repeated field: the document is declined, and the isolated path takes
//! it); wherever it accepts, the result is the isolated path's.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::model::{Known, Snapshot};
use super::parse::{add_instance, RawInstance, Scalar};

/// `{"applications": {...}}` as the snapshot it lists.
pub(super) struct OnePass(pub(super) Snapshot);

impl<'de> Deserialize<'de> for OnePass {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(Root { known: None })
    }
}

/// Parses from `reader`, comparing each instance with `known` as it is read.
pub(super) fn parse_from(
    reader: impl std::io::Read,
    known: Option<&dyn Known>,
) -> Option<Snapshot> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let snap = de.deserialize_map(Root { known }).ok()?;
    de.end().ok()?;
    Some(snap.0)
}

#[derive(Clone, Copy)]
struct Root<'k> {
    known: Option<&'k dyn Known>,
}

impl<'de> Visitor<'de> for Root<'_> {
    type Value = OnePass;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Eureka registry document")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OnePass, A::Error> {
        let mut snap = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "applications" if snap.is_none() => {
                    snap = Some(map.next_value_seed(ApplicationsSeed { known: self.known })?);
                }
                "applications" => return Err(de::Error::duplicate_field("applications")),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        snap.map(OnePass)
            .ok_or_else(|| de::Error::missing_field("applications"))
    }
}

/// `{"apps__hashcode": ..., "application": [...]}`.
struct ApplicationsSeed<'k> {
    known: Option<&'k dyn Known>,
}

impl<'de> DeserializeSeed<'de> for ApplicationsSeed<'_> {
    type Value = Snapshot;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Snapshot, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ApplicationsSeed<'_> {
    type Value = Snapshot;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the \"applications\" object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Snapshot, A::Error> {
        let mut snap = Snapshot::default();
        let (mut hashcode_seen, mut application_seen) = (false, false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "apps__hashcode" if !hashcode_seen => {
                    hashcode_seen = true;
                    snap.apps_hashcode = map.next_value::<Option<Scalar>>()?.map(|s| s.0);
                }
                "application" if !application_seen => {
                    application_seen = true;
                    map.next_value_seed(ListSeed {
                        each: ApplicationSeed { known: self.known },
                        snap: &mut snap,
                    })?;
                }
                "apps__hashcode" | "application" => {
                    return Err(de::Error::custom(format!("duplicate field `{key}`")))
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(snap)
    }
}

/// What each element of a list adds to the snapshot.
trait AddEach: Copy {
    fn add<'de, A: SeqAccess<'de>>(
        self,
        seq: &mut A,
        snap: &mut Snapshot,
    ) -> Result<bool, A::Error>;
}

/// `null` (nothing) or an array whose elements `each` adds. A single object is declined:
/// that is the XStream shape, which the isolated path reads.
struct ListSeed<'s, E> {
    each: E,
    snap: &'s mut Snapshot,
}

impl<'de, E: AddEach> DeserializeSeed<'de> for ListSeed<'_, E> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, E: AddEach> Visitor<'de> for ListSeed<'_, E> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array or null")
    }
    fn visit_none<Er>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_unit<Er>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while self.each.add(&mut seq, self.snap)? {}
        Ok(())
    }
}

/// One application: `{"name": ..., "instance": [...]}`.
#[derive(Clone, Copy)]
struct ApplicationSeed<'k> {
    known: Option<&'k dyn Known>,
}

impl AddEach for ApplicationSeed<'_> {
    fn add<'de, A: SeqAccess<'de>>(
        self,
        seq: &mut A,
        snap: &mut Snapshot,
    ) -> Result<bool, A::Error> {
        Ok(seq
            .next_element_seed(ApplicationInto {
                snap,
                known: self.known,
            })?
            .is_some())
    }
}

struct ApplicationInto<'s, 'k> {
    snap: &'s mut Snapshot,
    known: Option<&'k dyn Known>,
}

impl<'de> DeserializeSeed<'de> for ApplicationInto<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ApplicationInto<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an application object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // The name usually comes first; when the instances come before it, they wait.
        let mut name: Option<Option<Scalar>> = None;
        let mut waiting: Option<Vec<RawInstance>> = None;
        let mut instances_seen = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" if name.is_none() => name = Some(map.next_value()?),
                "instance" if !instances_seen => {
                    instances_seen = true;
                    match &name {
                        Some(n) => {
                            let name = n.as_ref().map_or("", |s| s.0.as_str());
                            map.next_value_seed(ListSeed {
                                each: InstanceSeed {
                                    app: name,
                                    known: self.known,
                                },
                                snap: self.snap,
                            })?;
                        }
                        None => waiting = map.next_value::<Option<Vec<RawInstance>>>()?,
                    }
                }
                "name" | "instance" => {
                    return Err(de::Error::custom(format!("duplicate field `{key}`")))
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let name = name.flatten().map(|s| s.0).unwrap_or_default();
        for raw in waiting.unwrap_or_default() {
            let before = self.snap.instances.len();
            add_instance(raw, &name, self.snap);
            if self.snap.instances.len() > before {
                self.snap.dedupe_last(self.known);
            }
        }
        Ok(())
    }
}

/// One instance, added as soon as it is read.
#[derive(Clone, Copy)]
struct InstanceSeed<'n, 'k> {
    app: &'n str,
    known: Option<&'k dyn Known>,
}

impl AddEach for InstanceSeed<'_, '_> {
    fn add<'de, A: SeqAccess<'de>>(
        self,
        seq: &mut A,
        snap: &mut Snapshot,
    ) -> Result<bool, A::Error> {
        match seq.next_element::<RawInstance>()? {
            Some(raw) => {
                let before = snap.instances.len();
                add_instance(raw, self.app, snap);
                if snap.instances.len() > before {
                    snap.dedupe_last(self.known);
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
