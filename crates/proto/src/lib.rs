//! skyhose-proto: the AT Protocol wire format. It owns DAG-CBOR, CIDs, CAR v1,
//! subscribeRepos frames, the data model's JSON form, typed records and identifier
//! syntax. It does no I/O and knows nothing of Redis, PostgreSQL or HTTP.
