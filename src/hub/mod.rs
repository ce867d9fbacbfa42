//! Hub mode's threads: the links this hub opens to its `BOOTSTRAP_HUBS`, and the mesh timer.
//! What travels over links, and what the mesh remembers, is `registry::mesh`.

pub(crate) mod links;
