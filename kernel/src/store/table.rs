//! Tables owned by the modules that use them. A module declares each of its tables as a
//! private [`TableDef`] (its name in the LMDB environment, its slot, its key and value codecs)
//! and publishes only the [`Declared`] name and slot; the registry (`crate::tables`) lists every
//! module's declarations, and the store opens exactly those. Because the typed
//! definition is private to its module, no other module can read or write the table by hand: it
//! goes through the owner's functions.

use std::marker::PhantomData;

use heed::types::Bytes;
use heed::Database;

/// A module's table: name, slot in the registry, key and value codecs.
pub struct TableDef<K, V> {
    name: &'static str,
    slot: usize,
    codecs: PhantomData<fn() -> (K, V)>,
}

impl<K: 'static, V: 'static> TableDef<K, V> {
    /// The table named `name` in the registry's slot `slot`.
    pub const fn new(name: &'static str, slot: usize) -> Self {
        TableDef {
            name,
            slot,
            codecs: PhantomData,
        }
    }

    /// Its name and slot, for the registry.
    pub const fn declared(&self) -> Declared {
        Declared {
            name: self.name,
            slot: self.slot,
        }
    }

    /// Its slot.
    pub(crate) const fn slot(&self) -> usize {
        self.slot
    }
}

/// A table's name and slot: what the registry knows of it (no access).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared {
    /// Its name in the environment.
    pub name: &'static str,
    /// Its index in the registry's list.
    pub slot: usize,
}

/// The untyped handle of a slot (the store keeps these; [`TableDef::of`] types them).
pub(super) type Untyped = Database<Bytes, Bytes>;
