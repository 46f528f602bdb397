"""Request handlers: parse, call storage, shape the response."""
