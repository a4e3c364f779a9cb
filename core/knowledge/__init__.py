"""The channel knowledge base: files people upload, extracted, chunked and searchable."""
