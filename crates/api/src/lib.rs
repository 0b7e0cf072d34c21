//! skyhose-api: the XRPC read API over the PostgreSQL index (views, hydration,
//! service-auth, health, metrics). It reads the index; it never writes to it.
