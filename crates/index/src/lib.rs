//! skyhose-index: the consumer-group workers that turn stream entries into
//! PostgreSQL rows, plus the schema and its migrations. It does not serve HTTP.
