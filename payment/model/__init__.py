"""Payment domain: the aggregate, its statuses and events, and the provider-neutral view of a processor."""
